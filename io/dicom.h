/* DICOM images: the C interface of the DICOM decoder (details in docs/dicom.md).
 *
 * A DICOM file (Part 10: 128-byte preamble, "DICM", file meta group) is found by its magic
 * and decoded in three steps:
 *  1. dicom_scan (io/dicom_scan.c, plain C): walks every data element of the file without
 *     decoding anything, checking that each declared length fits in the bytes that are
 *     there, that sequences nest at most DICOM_MAX_DEPTH deep, and that Rows x Columns and
 *     the decoded size of all frames are within the image limits, BEFORE any library
 *     allocates for them. It also picks up the few tags that size the image.
 *  2. dicom_gdcm_read (io/dicom_gdcm.cc, C++ behind a C interface): GDCM parses the file
 *     from memory and decodes the pixel data of the first frame (uncompressed, RLE, JPEG
 *     baseline/extended/lossless, JPEG-LS, JPEG 2000), and reads the pixel-module tags.
 *     Every C++ exception stops there and becomes an error naming the transfer syntax.
 *  3. dicom_to_u8 (io/dicom.c, plain C): stored values -> Modality LUT (RescaleSlope and
 *     RescaleIntercept) -> VOI (first WindowCenter/Width, else the first VOI LUT, else a
 *     percentile window) -> MONOCHROME1 inverted -> 8 bits; colour (RGB, YBR_FULL) to RGB.
 */
#ifndef DICOM_H
#define DICOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "image.h"
#include "rb_error.h"

#define DICOM_MAX_DEPTH 16        /* nested sequences deeper than this are refused */
#define DICOM_PERCENTILE_LO 0.005 /* the window used without WindowCenter/Width or VOI LUT */
#define DICOM_PERCENTILE_HI 0.995

/* What dicom_scan finds (top-level data set only). Absent integers are -1. */
typedef struct dicom_header {
    char transfer_syntax[68]; /* (0002,0010), trailing padding removed */
    int explicit_vr, big_endian;
    int64_t rows, columns, samples, bits_allocated, bits_stored, frames;
    int encapsulated;             /* pixel data of undefined length (compressed) */
    int64_t pixel_offset;         /* value of (7FE0,0010) in the file */
    int64_t pixel_length;         /* its length; -1 when encapsulated */
    int64_t elements;             /* data elements seen, all levels */
    int max_depth;                /* deepest sequence nesting seen */
    int rle_segments;             /* RLE: segments per frame (0 before a frame was seen) */
} dicom_header;

/* 1 when buf holds a DICOM Part 10 file ("DICM" at offset 128). */
int dicom_sniff(const uint8_t *buf, size_t len);

/* Structure and size checks of step 1. Fails (naming path and the tag at fault) on a file
 * without the DICM magic, a length running past the end of the file, an undefined length
 * where none is allowed, sequences nested deeper than DICOM_MAX_DEPTH, a deflated transfer
 * syntax, missing Rows/Columns/pixel data, sizes beyond lim. */
int dicom_scan(const uint8_t *buf, size_t len, const image_limits *lim, dicom_header *h,
               const char *path, rb_error *err);

/* Name of a transfer syntax UID ("JPEG 2000 (lossless only)"), or "unknown transfer syntax". */
const char *dicom_ts_name(const char *uid);

/* Decoded stored values of the first frame and the tags that give them meaning. */
typedef struct dicom_pixels {
    int rows, columns, samples;  /* samples: 1 gray or 3 colour */
    int bits_allocated;          /* 8 or 16: 1 or 2 bytes per sample in data */
    int bits_stored, high_bit, pixel_representation; /* 0 unsigned, 1 signed */
    int frames;                  /* NumberOfFrames (1 when absent) */
    int planar;                  /* PlanarConfiguration of data: 0 interleaved, 1 planes */
    char photometric[32];        /* of the decoded data: MONOCHROME1, MONOCHROME2, RGB, YBR_FULL */
    char transfer_syntax[68];
    double slope, intercept;     /* Modality LUT; 1 and 0 when absent */
    int has_window;
    double window_center, window_width; /* first values of (0028,1050) / (0028,1051) */
    char voi_function[20];       /* (0028,1056): LINEAR (default), LINEAR_EXACT, SIGMOID */
    int has_voi_lut;             /* first item of the VOI LUT Sequence (0028,3010) */
    int64_t voi_lut_first;       /* LUT Descriptor: first stored value mapped */
    int voi_lut_bits;            /* LUT Descriptor: bits per entry (8..16) */
    int voi_lut_n;
    uint16_t *voi_lut;           /* voi_lut_n entries, malloc'd */
    uint8_t *data;               /* first frame: rows*columns*samples samples, native byte
                                    order, malloc'd (later frames may follow it) */
} dicom_pixels;

void dicom_pixels_free(dicom_pixels *p);

/* Step 2 (GDCM). h comes from a successful dicom_scan of the same bytes. */
int dicom_gdcm_read(const uint8_t *buf, size_t len, const dicom_header *h, dicom_pixels *px,
                    const char *path, rb_error *err);

/* How step 3 mapped stored values to 8 bits (for inspect and the tests). */
typedef enum {
    DICOM_VOI_WINDOW = 0, /* the file's first WindowCenter/Width */
    DICOM_VOI_LUT,        /* the file's first VOI LUT */
    DICOM_VOI_PERCENTILE, /* DICOM_PERCENTILE_LO..HI of the frame's values */
    DICOM_VOI_AS_STORED,  /* 8-bit unsigned, no rescale, no window: values kept */
    DICOM_VOI_COLOUR,     /* RGB or YBR: no VOI, 16-bit samples rounded to 8 bits */
} dicom_voi;

const char *dicom_voi_name(dicom_voi v);

/* Step 3: px -> 8-bit image of `channels` (1, 3, or 0 = 1 for gray and 3 for colour).
 * lo/hi (may be NULL) get the window applied in Modality-LUT units (percentile and window). */
int dicom_to_u8(const dicom_pixels *px, int channels, image_u8 *out, dicom_voi *voi,
                double *lo, double *hi, const char *path, rb_error *err);

#ifdef __cplusplus
}
#endif

#endif
