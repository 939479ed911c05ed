/* Shared between io/image*.c only: the per-format decoders behind image_probe/image_decode,
 * the limit checks and the small pixel conversions every decoder uses. */
#ifndef IMAGE_INTERNAL_H
#define IMAGE_INTERNAL_H

#include "image.h"

#include <stdint.h>

/* A pixel buffer kept between calls on one thread (image_load_resized): decoders take it
 * for their output when it is large enough, the caller gives it back after use. Reusing it
 * avoids a fresh large allocation, and the page faults that come with it, per image. */
typedef struct image_scratch {
    uint8_t *buf; /* NULL while lent out */
    size_t cap;   /* capacity of buf (or of the buffer lent out) */
} image_scratch;

/* What a decoder is asked for.
 * channels: 1 or 3, or 0 = "native": 1 for a gray source, else 3 (the caller replicates
 *           gray later, which is cheaper than decoding or resizing three equal planes).
 * min_height/min_width: JPEG DCT scaling target (0 = full size).
 * fit_height/fit_width > 0: instead of min_*, the JPEG decoder derives the target from the
 *           header with image_resize_min_source(..., fit_mode) (one header parse only). */
typedef struct image_request {
    int channels;
    int min_height, min_width;
    int fit_height, fit_width;
    resize_mode fit_mode;
    image_scratch *scratch; /* NULL: plain malloc */
} image_request;

/* Each fills info (always, as far as the header was read) and, for decode, out. */
int image_jpeg_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                     const char *path, rb_error *err);
int image_jpeg_decode(const uint8_t *buf, size_t len, const image_request *req,
                      const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                      rb_error *err);
int image_png_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                    const char *path, rb_error *err);
int image_png_decode(const uint8_t *buf, size_t len, const image_request *req,
                     const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                     rb_error *err);
int image_tiff_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                     const char *path, rb_error *err);
int image_tiff_decode(const uint8_t *buf, size_t len, const image_request *req,
                      const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                      rb_error *err);

int image_dicom_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                      const char *path, rb_error *err);
int image_dicom_decode(const uint8_t *buf, size_t len, const image_request *req,
                       const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                       rb_error *err);

/* Width/height against the limits (and > 0). what: "JPEG", "PNG", "TIFF", "DICOM". */
int image_check_size(int64_t width, int64_t height, const image_limits *lim, const char *what,
                     const char *path, rb_error *err);

/* Allocate out->data for h x w x c (sizes already checked), from the scratch buffer when
 * one is given and large enough. out->data is always freeable with free(). */
int image_u8_alloc(image_u8 *out, int height, int width, int channels, image_scratch *scratch,
                   const char *path, rb_error *err);

/* 16-bit sample to 8 bits, rounding: (v*255 + 32767) / 65535 (exact for every v). */
static inline uint8_t image_u16_to_u8(uint32_t v)
{
    return (uint8_t)((v * 255u + 32767u) / 65535u);
}

/* ITU-R BT.601 luma, 16-bit fixed point, rounded (as Pillow's "L" conversion). */
static inline uint8_t image_luma(uint32_t r, uint32_t g, uint32_t b)
{
    return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

/* In place, back to front: n gray pixels at px[0..n) become n RGB pixels at px[0..3n). */
void image_gray_to_rgb_inplace(uint8_t *px, size_t n);

/* Name of a known but unsupported format from the magic ("gif", "bmp", "webp", ...), or NULL. */
const char *image_sniff_unsupported(const uint8_t *buf, size_t len);

#endif
