/* augment: random image augmentation for training, Keras ImageDataGenerator semantics.
 *
 * Rotation, width/height shift, shear and zoom follow Keras' apply_affine_transform
 * (keras/src/legacy/preprocessing/image.py, identical in tf_keras): one affine map about the
 * image centre, sampled once with bilinear interpolation (scipy.ndimage.affine_transform,
 * order=1) and Keras' fill modes. The random crop ("zoom in on a random window, resize back"),
 * flips and rot90 are folded into the same map, so an image is resampled exactly once; flips
 * and rot90 alone move whole pixels and are bit-exact index remaps. Brightness and contrast
 * are then one 256-entry lookup per channel. docs/augment.md lists every job-file key.
 *
 * Randomness: every parameter is rb_rng_uniform(seed, epoch, global sample index, purpose)
 * with its own AUGMENT_RNG_* purpose, so an augmented image depends only on
 * (seed, epoch, sample index) and never on the rank or thread that makes it.
 *
 * Thread safety: no global state; every function may run in several threads at once.
 * Images are uint8, channels-last: src, dst (h, w, c), row-major. */
#ifndef AUGMENT_H
#define AUGMENT_H

#include "rb_error.h"

#include <stdint.h>

typedef enum {
    AUGMENT_FILL_NEAREST = 0, /* aaaa|abcd|dddd (Keras default) */
    AUGMENT_FILL_CONSTANT,    /* kkkk|abcd|kkkk, k = fill_value */
    AUGMENT_FILL_REFLECT,     /* dcba|abcd|dcba */
} augment_fill_mode;

const char *augment_fill_mode_name(int mode);               /* "nearest", ... */
int augment_fill_mode_parse(const char *name, int *mode);   /* 0, or -1 for an unknown name */

/* What to draw. All zero (augment_config_default) = no augmentation. Ranges are checked by
 * augment_config_check; augment_image clamps out-of-range values instead of failing. */
typedef struct augment_config {
    float rotation_deg;  /* degrees, theta ~ U[-r, r]                       [0, 180] */
    float width_shift;   /* < 1: fraction of the width, >= 1: pixels; U[-s, s]  >= 0 */
    float height_shift;  /* the same for the height                            >= 0 */
    float shear_deg;     /* DEGREES (Keras 2 shear_range), U[-s, s]          [0, 80] */
    float zoom;          /* zx, zy ~ U[1 - z, 1 + z] independently; > 1 zooms out [0, 0.95] */
    int hflip;           /* 0/1: mirror left-right with p 0.5 */
    int vflip;           /* 0/1: mirror top-bottom with p 0.5 */
    int rot90;           /* 0/1: k * 90 deg counter-clockwise, k uniform in 0..3 (square
                          * images; non-square images draw k in {0, 2}) */
    float crop_fraction; /* 0 or 1: off; else a window of this share of each side at a
                          * uniform random position, resized back to (h, w)   [0.05, 1] */
    float brightness;    /* factor ~ U[1 - b, 1 + b] multiplies pixel values     [0, 1] */
    float contrast;      /* factor ~ U[1 - c, 1 + c] about each channel's mean   [0, 1] */
    int fill_mode;       /* augment_fill_mode, for points outside the input */
    float fill_value;    /* AUGMENT_FILL_CONSTANT's value, 0..255 (Keras cval) */
} augment_config;

/* Everything off, fill nearest, fill value 0. */
void augment_config_default(augment_config *cfg);

/* 0, or -1 naming the job-file key (rotation, width_shift, ..., fill_mode) that is out of
 * range and what is accepted. */
int augment_config_check(const augment_config *cfg, rb_error *err);

/* 1 when cfg changes images, 0 when augment_image is the identity (the frozen-base feature
 * cache may then compute features once). */
int augment_config_active(const augment_config *cfg);

/* RNG purposes (the last key of rb_rng_uniform): one per drawn value, tagged "aug" in the
 * high bytes so they never meet dropout's element indices or the initializers' keys. */
#define AUGMENT_RNG_TAG 0x6175670000000000ULL /* "aug" */
#define AUGMENT_RNG_ROTATION (AUGMENT_RNG_TAG | 0x01)
#define AUGMENT_RNG_SHIFT_X (AUGMENT_RNG_TAG | 0x02)
#define AUGMENT_RNG_SHIFT_Y (AUGMENT_RNG_TAG | 0x03)
#define AUGMENT_RNG_SHEAR (AUGMENT_RNG_TAG | 0x04)
#define AUGMENT_RNG_ZOOM_X (AUGMENT_RNG_TAG | 0x05)
#define AUGMENT_RNG_ZOOM_Y (AUGMENT_RNG_TAG | 0x06)
#define AUGMENT_RNG_HFLIP (AUGMENT_RNG_TAG | 0x07)
#define AUGMENT_RNG_VFLIP (AUGMENT_RNG_TAG | 0x08)
#define AUGMENT_RNG_ROT90 (AUGMENT_RNG_TAG | 0x09)
#define AUGMENT_RNG_CROP_X (AUGMENT_RNG_TAG | 0x0a)
#define AUGMENT_RNG_CROP_Y (AUGMENT_RNG_TAG | 0x0b)
#define AUGMENT_RNG_BRIGHTNESS (AUGMENT_RNG_TAG | 0x0c)
#define AUGMENT_RNG_CONTRAST (AUGMENT_RNG_TAG | 0x0d)

/* One image's drawn transform. Pixel coordinates: x = column (right), y = row (down).
 * The geometric part maps an output pixel to the input position it samples:
 *   dst = rot90_k(flip(affine(crop(src))))
 * where affine is Keras' apply_affine_transform(theta, tx, ty, shear, zx, zy) for a
 * channels-last image about the centre ((w-1)/2, (h-1)/2):
 *   in = centre + R(theta) (S(shear) Z(zx, zy) (out - centre) + (tx, ty))
 *   R = [cos -sin; sin cos], S = [1 -sin(shear); 0 cos(shear)], Z = diag(zx, zy). */
typedef struct augment_params {
    float theta_deg;      /* > 0 turns the content counter-clockwise */
    float tx, ty;         /* pixels, Keras tx/ty: the sampling point moves by (+tx, +ty), the
                           * content by (-tx, -ty) (before rotation) */
    float shear_deg;
    float zx, zy;         /* Keras zx (columns), zy (rows): > 1 zooms out (content smaller) */
    float crop;           /* window side share, 1 = no crop */
    float crop_x, crop_y; /* window's left/top edge in input pixels, in [0, (1-crop)*w] */
    int hflip, vflip;     /* 0/1 */
    int rot90_k;          /* 0..3, counter-clockwise like np.rot90/tf.image.rot90; 1 and 3
                           * need h == w */
    float brightness;     /* factor, 1 = none */
    float contrast;       /* factor, 1 = none */
} augment_params;

/* The identity transform. */
void augment_params_identity(augment_params *p);

/* The parameters augment_image uses for (seed, epoch, sample_index) on an (h, w) image;
 * values that cfg leaves off are the identity's. */
void augment_draw(augment_params *p, const augment_config *cfg, int h, int w, uint64_t seed,
                  uint64_t epoch, uint64_t sample_index);

/* dst: (h, w, c)   src: (h, w, c), dst != src. Applies explicit parameters. Returns 0, or
 * -1 (dst = copy of src) when p is unusable: non-finite, zoom/crop <= 0, odd rot90_k on a
 * non-square image, or sampling points beyond +-2^20 pixels. */
int augment_apply_params(uint8_t *dst, const uint8_t *src, int h, int w, int c,
                         const augment_params *p, int fill_mode, float fill_value);

/* dst: (h, w, c)   src: (h, w, c), dst != src. The augmented image for (seed, epoch, global
 * sample index); a bit-exact copy when augment_config_active(cfg) is 0. */
void augment_image(uint8_t *dst, const uint8_t *src, int h, int w, int c,
                   const augment_config *cfg, uint64_t seed, uint64_t epoch,
                   uint64_t sample_index);

#endif
