/* Image decoding and resizing: bytes of a JPEG, PNG or TIFF file -> 8-bit pixels, HWC.
 *
 * Format is found from magic bytes, never the extension. Decoding uses the system libraries
 * (libjpeg-turbo, libpng, libtiff); nothing here is a hand-written codec. Every limit is
 * checked before any large allocation, so hostile files (zero bytes, truncated data, huge
 * headers, decompression bombs, broken TIFF tags) give an error naming the file and reason,
 * never a crash, a hang or a huge allocation. */
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
} image_format;

const char *image_format_name(image_format f); /* "jpeg", "png", "tiff", "unknown" */

/* Format from the first bytes (needs at most 8). */
image_format image_sniff(const uint8_t *buf, size_t len);

typedef struct image_limits {
    int64_t max_pixels;    /* width*height of the source, default 100e6 */
    int max_side;          /* default 32768 */
    size_t max_file_bytes; /* default 512 MiB */
} image_limits;

void image_limits_default(image_limits *l);

typedef struct image_info {
    image_format format;
    int width, height;
    int channels; /* in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA or CMYK */
    int bits;     /* per sample: 8 or 16 (1/2/4 for palette or low-depth gray) */
} image_info;

/* Read the header only (cheap): format, size, channels. Fails on non-image, truncated
 * header, zero size, or sizes above the limits. */
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
 * (scale M/8, M = 1..8) to the smallest size that is still >= min_height x min_width;
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

#endif
