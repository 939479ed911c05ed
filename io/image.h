/* Image decoding and resizing: bytes of a JPEG, PNG, TIFF or DICOM file -> 8-bit pixels, HWC.
 *
 * Format is found from magic bytes, never the extension. Decoding uses the system libraries
 * (libjpeg-turbo, libpng, libtiff); nothing here is a hand-written codec. Every limit is
 * checked before any large allocation, so hostile files (zero bytes, truncated data, huge
 * headers, decompression bombs, broken TIFF tags) give an error naming the file and reason,
 * never a crash, a hang or a huge allocation.
 *
 * In short (details in docs/images.md): JPEG through libjpeg-turbo's libjpeg API with its
 * defaults (islow IDCT, fancy upsampling: the pixels of Pillow and djpeg), gray/YCbCr/RGB/
 * CMYK/YCCK (Adobe inverted CMYK), baseline and progressive; a libjpeg warning about damaged
 * data (premature end of file, bad Huffman code, ...) is an error, never a gray-filled image.
 * PNG through libpng: every bit depth and colour type, interlaced or not. TIFF through libtiff
 * from memory: 8/16-bit gray and RGB (strips, tiles, planar) read directly, other layouts via
 * TIFFRGBAImage; first page only. DICOM through GDCM (io/dicom.h, docs/dicom.md): gray
 * values windowed to 8 bits, first frame only. Output is 1 or 3 channels: gray -> RGB replicates, RGB ->
 * gray is BT.601 luma, alpha is dropped; 16-bit samples become (v*255 + 32767) / 65535.
 * Orientation tags (EXIF, TIFF) are not applied. Resize: separable triangle filter whose
 * support grows with the shrink factor (Pillow's BILINEAR), float sums rounded once. */
#ifndef IMAGE_H
#define IMAGE_H

#include "rb_error.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    IMAGE_FORMAT_UNKNOWN = 0,
    IMAGE_FORMAT_JPEG,
    IMAGE_FORMAT_PNG,
    IMAGE_FORMAT_TIFF,
    IMAGE_FORMAT_DICOM, /* "DICM" at byte 128; io/dicom.h, docs/dicom.md */
} image_format;

const char *image_format_name(image_format f); /* "jpeg", "png", "tiff", "dicom", "unknown" */

/* Format from the first bytes (needs at most 8; 132 for DICOM). */
image_format image_sniff(const uint8_t *buf, size_t len);

typedef struct image_limits {
    int64_t max_pixels;    /* width*height of the source, default 50e6 */
    int max_side;          /* largest width or height, default 30000 */
    size_t max_file_bytes; /* default 512 MiB */
} image_limits;

/* max_pixels 50e6, max_side 30000, max_file_bytes 512 MiB. A NULL limits pointer anywhere
 * below means these defaults. */
void image_limits_default(image_limits *l);

typedef struct image_info {
    image_format format;
    int width, height;
    int channels; /* in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA or CMYK */
    int bits;     /* per sample: 8 or 16 (1/2/4 for palette or low-depth gray) */
} image_info;

/* Read the header only (cheap): format, size, channels. Fails on non-image, truncated
 * header, zero size, or sizes above the limits; info holds what the header declared as far
 * as it could be read, also on failure (to log the size of a rejected file). */
int image_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                const char *path, rb_error *err);

typedef struct image_u8 {
    int height, width, channels; /* channels 1 or 3 */
    uint8_t *data;               /* height*width*channels, row-major HWC, malloc'd */
} image_u8;

void image_u8_free(image_u8 *im);

/* Decode to 8 bits per sample with `channels` (1 or 3) output channels:
 *  gray -> RGB replicates; RGB -> gray uses ITU-R BT.601 luma (JPEG: the Y channel);
 *  alpha is dropped (not composited); CMYK/YCCK JPEG converted to RGB;
 *  16-bit samples scaled to 8 bits by rounding v*255/65535 (i.e. (v*255+32767)/65535).
 * min_height/min_width > 0 let a JPEG be decoded with libjpeg-turbo's DCT-domain scaling
 * (scale M/8, M = 1, 2, 4 or 8: the scales with SIMD inverse DCTs; 3/8, 5/8, 6/8 and 7/8 are
 * slower than full size) to the smallest size that is still >= min_height x min_width;
 * 0 means full size. Other formats always decode at full size. */
int image_decode(const uint8_t *buf, size_t len, int channels, int min_height, int min_width,
                 const image_limits *lim, image_u8 *out, const char *path, rb_error *err);

typedef enum {
    RESIZE_STRETCH = 0, /* scale each axis to fit exactly (Keras image_dataset_from_directory) */
    RESIZE_PAD,         /* keep aspect ratio, fit inside, pad with black, centred */
    RESIZE_CENTER_CROP, /* keep aspect ratio, cover, crop the centre */
} resize_mode;

int resize_mode_parse(const char *s, resize_mode *m); /* "stretch" | "pad" | "center-crop" */
const char *resize_mode_name(resize_mode m);

/* Resize `in` to out_h x out_w (same channels) into `out` (out_h*out_w*in->channels bytes).
 * Filter: separable triangle (bilinear) filter whose support widens by the scale factor when
 * shrinking, so it antialiases (as Pillow's BILINEAR resample), computed in float and
 * rounded; sizes equal to the input copy the pixels exactly. */
int image_resize(const image_u8 *in, int out_h, int out_w, resize_mode mode, uint8_t *out,
                 rb_error *err);

/* For DCT scaling: the smallest source size (h, w) that still gives full quality for a
 * resize of an in_h x in_w image to out_h x out_w under `mode`. */
void image_resize_min_source(int in_h, int in_w, int out_h, int out_w, resize_mode mode,
                             int *min_h, int *min_w);

/* Everything in one call: decode bytes (with DCT scaling when `dct_scaling`), resize to
 * out_h x out_w x channels into `out`. Returns 0, or -1 with err. */
int image_load_resized(const uint8_t *buf, size_t len, int out_h, int out_w, int channels,
                       resize_mode mode, int dct_scaling, const image_limits *lim, uint8_t *out,
                       image_info *info_out, const char *path, rb_error *err);

/* Write 8-bit gray or RGB pixels as PNG (for `inspect --export-image`). temp+rename. */
int image_write_png(const char *path, const uint8_t *pixels, int height, int width, int channels,
                    rb_error *err);
/* The same PNG into memory: *out (malloc'd, *len bytes). */
int image_encode_png(const uint8_t *pixels, int height, int width, int channels, uint8_t **out,
                     size_t *len, rb_error *err);

#endif
