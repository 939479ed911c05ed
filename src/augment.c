/* Random augmentation: draw (augment_draw), one composed affine map sampled with fixed-point
 * bilinear interpolation (warp_*), then a per-channel lookup for brightness/contrast.
 *
 * Sampling: the map from output pixel (x, y) to input position is affine, so along a row the
 * input position advances by a constant step. Positions are int64 in units of 2^-32 pixel,
 * row starts computed from the matrix (no drift across rows); each position is rounded to
 * 1/2048 pixel, so a position that is an integer up to float noise samples that pixel
 * exactly. Bilinear weights are 11-bit integers: a pixel is
 *   (((p00*(S-fx) + p01*fx) * (S-fy) + (p10*(S-fx) + p11*fx) * fy) + S*S/2) >> 22,   S = 2048
 * which is exact for whole-pixel positions and within 0.5 + 2^-7 gray levels of the real
 * bilinear value otherwise. Interior pixels take a fast path (3 channels at once with
 * SSE4.1 when the build has it, the same integers as the scalar loop); positions whose 2x2
 * neighbourhood leaves the image go through the fill mode (scipy's rules for order=1:
 * nearest clamps indices, reflect mirrors indices half-sample symmetric, constant returns
 * fill_value when the position is outside [0, n-1]). Maps with integer coefficients (flips,
 * rot90, whole-pixel shifts) are copied pixel by pixel (remap), the same bytes warp gives. */

/* The same bits on every machine and build: no FMA contraction of the float math (GCC and
 * clang contract by default in GNU C mode, and -march=native adds FMA), and sin/cos below
 * instead of libm's, whose CPU-specific variants may differ in the last bit. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "augment.h"

#include "rb_rng.h"

#include <math.h>
#include <stddef.h>
#include <string.h>
#if defined(__SSE4_1__)
#include <smmintrin.h>
#endif

#define FRAC_BITS 11
#define FRAC_ONE (1 << FRAC_BITS)
#define POS_BITS 32                            /* positions: int64 in 2^-32 pixel */
#define POS_ROUND (1LL << (POS_BITS - FRAC_BITS - 1))
#define POS_LIMIT 1048576.0                    /* +-2^20 pixels: beyond it params are refused */

static const char *const fill_names[] = {"nearest", "constant", "reflect"};

const char *augment_fill_mode_name(int mode)
{
    return mode >= 0 && mode < 3 ? fill_names[mode] : "?";
}

int augment_fill_mode_parse(const char *name, int *mode)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, fill_names[i]) == 0) {
            *mode = i;
            return 0;
        }
    return -1;
}

void augment_config_default(augment_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->fill_mode = AUGMENT_FILL_NEAREST;
}

/* ------------------------------------------------------------------ config ranges */

static int in_range(float v, float lo, float hi)
{
    return isfinite(v) && v >= lo && v <= hi;
}

int augment_config_check(const augment_config *cfg, rb_error *err)
{
    static const char hint[] = "see docs/augment.md for every augmentation key and its range";
    struct {
        const char *key;
        float v, lo, hi;
        const char *what;
    } f[] = {
        {"rotation", cfg->rotation_deg, 0, 180, "degrees in [0, 180]"},
        {"width_shift", cfg->width_shift, 0, 10000,
         "a fraction of the width in [0, 1) or pixels >= 1"},
        {"height_shift", cfg->height_shift, 0, 10000,
         "a fraction of the height in [0, 1) or pixels >= 1"},
        {"shear", cfg->shear_deg, 0, 80, "degrees in [0, 80]"},
        {"zoom", cfg->zoom, 0, 0.95f, "z in [0, 0.95] (zoom factors drawn in [1-z, 1+z])"},
        {"brightness", cfg->brightness, 0, 1, "b in [0, 1] (factor drawn in [1-b, 1+b])"},
        {"contrast", cfg->contrast, 0, 1, "c in [0, 1] (factor drawn in [1-c, 1+c])"},
        {"fill_value", cfg->fill_value, 0, 255, "a gray level in [0, 255]"},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (!in_range(f[i].v, f[i].lo, f[i].hi))
            return rb_fail(err, hint, "augmentation key %s = %g: expected %s", f[i].key,
                           (double)f[i].v, f[i].what);
    if (!(cfg->crop_fraction == 0 || in_range(cfg->crop_fraction, 0.05f, 1)))
        return rb_fail(err, hint,
                       "augmentation key crop = %g: expected 0 (off) or the share of each "
                       "side kept, in [0.05, 1]", (double)cfg->crop_fraction);
    struct {
        const char *key;
        int v;
    } b[] = {{"horizontal_flip", cfg->hflip}, {"vertical_flip", cfg->vflip},
             {"rot90", cfg->rot90}};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (b[i].v != 0 && b[i].v != 1)
            return rb_fail(err, hint, "augmentation key %s = %d: expected 0/1 (false/true)",
                           b[i].key, b[i].v);
    if (cfg->fill_mode < 0 || cfg->fill_mode > 2)
        return rb_fail(err, hint,
                       "augmentation key fill_mode = %d: expected nearest, constant or reflect",
                       cfg->fill_mode);
    return 0;
}

static int crop_active(float crop)
{
    return crop > 0 && crop < 1;
}

int augment_config_active(const augment_config *cfg)
{
    return cfg->rotation_deg > 0 || cfg->width_shift > 0 || cfg->height_shift > 0 ||
           cfg->shear_deg > 0 || cfg->zoom > 0 || cfg->hflip || cfg->vflip || cfg->rot90 ||
           crop_active(cfg->crop_fraction) || cfg->brightness > 0 || cfg->contrast > 0;
}

/* ------------------------------------------------------------------ drawing */

void augment_params_identity(augment_params *p)
{
    memset(p, 0, sizeof *p);
    p->zx = p->zy = 1;
    p->crop = 1;
    p->brightness = p->contrast = 1;
}

/* v clamped to [lo, hi], NaN -> 0 (off) */
static float clampf(float v, float lo, float hi)
{
    if (!(v == v))
        return 0;
    return v < lo ? lo : v > hi ? hi : v;
}

void augment_draw(augment_params *p, const augment_config *cfg, int h, int w, uint64_t seed,
                  uint64_t epoch, uint64_t sample_index)
{
#define U(purpose) rb_rng_uniform(seed, epoch, sample_index, (purpose))
#define SYM(r, purpose) ((2.0f * U(purpose) - 1.0f) * (r)) /* U[-r, r) */
    augment_params_identity(p);
    float rot = clampf(cfg->rotation_deg, 0, 180);
    float ws = clampf(cfg->width_shift, 0, 10000), hs = clampf(cfg->height_shift, 0, 10000);
    float shear = clampf(cfg->shear_deg, 0, 80), zoom = clampf(cfg->zoom, 0, 0.95f);
    float crop = clampf(cfg->crop_fraction, 0, 1);
    float bright = clampf(cfg->brightness, 0, 1), contrast = clampf(cfg->contrast, 0, 1);
    if (rot > 0)
        p->theta_deg = SYM(rot, AUGMENT_RNG_ROTATION);
    /* Keras: a range < 1 is a fraction of the size, >= 1 is pixels. Unlike Keras 2 (whose
     * get_random_transform scales tx, applied along columns, by height_shift_range and the
     * height), width_shift moves columns and height_shift moves rows. */
    if (ws > 0)
        p->tx = SYM(ws, AUGMENT_RNG_SHIFT_X) * (ws < 1 ? (float)w : 1.0f);
    if (hs > 0)
        p->ty = SYM(hs, AUGMENT_RNG_SHIFT_Y) * (hs < 1 ? (float)h : 1.0f);
    if (shear > 0)
        p->shear_deg = SYM(shear, AUGMENT_RNG_SHEAR);
    if (zoom > 0) {
        p->zx = 1.0f + SYM(zoom, AUGMENT_RNG_ZOOM_X);
        p->zy = 1.0f + SYM(zoom, AUGMENT_RNG_ZOOM_Y);
    }
    if (cfg->hflip)
        p->hflip = U(AUGMENT_RNG_HFLIP) < 0.5f;
    if (cfg->vflip)
        p->vflip = U(AUGMENT_RNG_VFLIP) < 0.5f;
    if (cfg->rot90) {
        int k = (int)(U(AUGMENT_RNG_ROT90) * 4.0f);
        k = k > 3 ? 3 : k;
        p->rot90_k = h == w ? k : (k & 2); /* non-square: 0 or 180 degrees keep the shape */
    }
    if (crop_active(crop)) {
        crop = crop < 0.05f ? 0.05f : crop;
        p->crop = crop;
        p->crop_x = U(AUGMENT_RNG_CROP_X) * (1.0f - crop) * (float)w;
        p->crop_y = U(AUGMENT_RNG_CROP_Y) * (1.0f - crop) * (float)h;
    }
    if (bright > 0)
        p->brightness = 1.0f + SYM(bright, AUGMENT_RNG_BRIGHTNESS);
    if (contrast > 0)
        p->contrast = 1.0f + SYM(contrast, AUGMENT_RNG_CONTRAST);
#undef SYM
#undef U
}

/* ------------------------------------------------------------------ the composed map */

/* 2x3 affine map in pixel coordinates (x = column, y = row):
 * x' = m[0] x + m[1] y + m[2],  y' = m[3] x + m[4] y + m[5] */
typedef struct {
    double m[6];
} affine2;

static affine2 affine_mul(affine2 a, affine2 b) /* a after b: a(b(p)) */
{
    affine2 r = {{
        a.m[0] * b.m[0] + a.m[1] * b.m[3],
        a.m[0] * b.m[1] + a.m[1] * b.m[4],
        a.m[0] * b.m[2] + a.m[1] * b.m[5] + a.m[2],
        a.m[3] * b.m[0] + a.m[4] * b.m[3],
        a.m[3] * b.m[1] + a.m[4] * b.m[4],
        a.m[3] * b.m[2] + a.m[4] * b.m[5] + a.m[5],
    }};
    return r;
}

/* sin and cos of deg degrees from + - * / only (correctly rounded in IEEE 754, so the same
 * everywhere): reduced to |x| <= pi/4 about the nearest multiple of 90 degrees (exact
 * there: 90 degrees is a pixel permutation), Taylor series to x^17, error < 1e-16. */
static void sincos_deg(double deg, double *s, double *c)
{
    double q = nearbyint(deg / 90.0);
    double x = (deg - 90.0 * q) * (3.14159265358979323846 / 180.0), x2 = x * x;
    /* Horner in x^2 with 1/n! coefficients */
    static const double sin_c[] = {-1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880,
                                   -1.0 / 39916800, 1.0 / 6227020800.0,
                                   -1.0 / 1307674368000.0, 1.0 / 355687428096000.0};
    static const double cos_c[] = {-1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320,
                                   -1.0 / 3628800, 1.0 / 479001600,
                                   -1.0 / 87178291200.0, 1.0 / 20922789888000.0};
    double sn = 0, cs = 0;
    for (int i = 7; i >= 0; i--) {
        sn = (sn + sin_c[i]) * x2;
        cs = (cs + cos_c[i]) * x2;
    }
    sn = x + x * sn;
    cs = 1 + cs;
    long k = ((long)fmod(q, 4.0) + 4) % 4;
    *s = k == 0 ? sn : k == 1 ? cs : k == 2 ? -sn : -cs;
    *c = k == 0 ? cs : k == 1 ? -sn : k == 2 ? -cs : sn;
}

/* Output pixel -> input position for p: crop o affine o flip o rot90 (applied right to
 * left to the output pixel). Returns -1 for unusable parameters. */
static int params_map(affine2 *out, const augment_params *p, int h, int w)
{
    const double W1 = w - 1, H1 = h - 1;
    double vals[] = {p->theta_deg, p->tx, p->ty, p->shear_deg, p->zx, p->zy,
                     p->crop, p->crop_x, p->crop_y};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        if (!isfinite(vals[i]))
            return -1;
    if (!(p->zx > 0 && p->zy > 0 && p->crop > 0) || p->rot90_k < 0 || p->rot90_k > 3 ||
        ((p->rot90_k & 1) && h != w))
        return -1;

    /* rot90: dst[i][j] = m[j][n-1-i] (k=1), m[h-1-i][w-1-j] (k=2), m[n-1-j][i] (k=3) */
    static const affine2 rot_lin[4] = {{{1, 0, 0, 0, 1, 0}}, {{0, -1, 0, 1, 0, 0}},
                                       {{-1, 0, 0, 0, -1, 0}}, {{0, 1, 0, -1, 0, 0}}};
    affine2 m = rot_lin[p->rot90_k];
    if (p->rot90_k == 1)
        m.m[2] = W1;
    else if (p->rot90_k == 2)
        m.m[2] = W1, m.m[5] = H1;
    else if (p->rot90_k == 3)
        m.m[5] = H1;

    affine2 flip = {{p->hflip ? -1 : 1, 0, p->hflip ? W1 : 0, 0, p->vflip ? -1 : 1,
                     p->vflip ? H1 : 0}};
    m = affine_mul(flip, m);

    /* Keras: in = c + R (S Z (q - c) + t) */
    double ct, st, ssh, csh;
    sincos_deg(p->theta_deg, &st, &ct);
    sincos_deg(p->shear_deg, &ssh, &csh);
    /* L = R S Z with S = [1 -ssh; 0 csh], Z = diag(zx, zy) */
    double l00 = ct * p->zx, l01 = (-ct * ssh - st * csh) * p->zy;
    double l10 = st * p->zx, l11 = (-st * ssh + ct * csh) * p->zy;
    double cx = W1 / 2, cy = H1 / 2;
    double ox = cx + ct * p->tx - st * p->ty - (l00 * cx + l01 * cy);
    double oy = cy + st * p->tx + ct * p->ty - (l10 * cx + l11 * cy);
    affine2 keras = {{l00, l01, ox, l10, l11, oy}};
    m = affine_mul(keras, m);

    /* crop window resized back, pixel centres aligned: in = x0 + (u + 0.5) * s - 0.5 */
    if (p->crop != 1 || p->crop_x != 0 || p->crop_y != 0) {
        double s = p->crop;
        affine2 crop = {{s, 0, p->crop_x + 0.5 * s - 0.5, 0, s, p->crop_y + 0.5 * s - 0.5}};
        m = affine_mul(crop, m);
    }

    /* every sampling point within +-2^20 pixels (the int64 positions have room to spare) */
    for (int cy2 = 0; cy2 < 2; cy2++)
        for (int cx2 = 0; cx2 < 2; cx2++) {
            double x = cx2 * W1, y = cy2 * H1;
            double u = m.m[0] * x + m.m[1] * y + m.m[2], v = m.m[3] * x + m.m[4] * y + m.m[5];
            if (!(fabs(u) < POS_LIMIT && fabs(v) < POS_LIMIT))
                return -1;
        }
    for (int i = 0; i < 6; i++)
        if (!(fabs(m.m[i]) < POS_LIMIT))
            return -1;
    *out = m;
    return 0;
}

/* ------------------------------------------------------------------ sampling */

/* index i mapped into [0, n) by the fill mode (nearest or reflect) */
static int64_t axis_index(int64_t i, int64_t n, int mode)
{
    if (mode == AUGMENT_FILL_REFLECT) {
        int64_t period = 2 * n;
        i %= period;
        if (i < 0)
            i += period;
        return i < n ? i : period - 1 - i;
    }
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

/* One output pixel whose neighbourhood leaves the image. xq, yq: position in 1/FRAC_ONE. */
static __attribute__((noinline)) void sample_border(uint8_t *out, const uint8_t *src, int h,
                                                    int w, int c, int64_t xq, int64_t yq,
                                                    int mode, uint8_t fill)
{
    if (mode == AUGMENT_FILL_CONSTANT &&
        (xq < 0 || yq < 0 || xq > (int64_t)(w - 1) * FRAC_ONE ||
         yq > (int64_t)(h - 1) * FRAC_ONE)) {
        memset(out, fill, (size_t)c);
        return;
    }
    int64_t x0 = xq >> FRAC_BITS, y0 = yq >> FRAC_BITS;
    uint32_t fx = (uint32_t)(xq & (FRAC_ONE - 1)), fy = (uint32_t)(yq & (FRAC_ONE - 1));
    int m = mode == AUGMENT_FILL_REFLECT ? mode : AUGMENT_FILL_NEAREST; /* constant: inside */
    int64_t xa = axis_index(x0, w, m), xb = axis_index(x0 + 1, w, m);
    int64_t ya = axis_index(y0, h, m), yb = axis_index(y0 + 1, h, m);
    const uint8_t *p00 = src + ((size_t)ya * (size_t)w + (size_t)xa) * (size_t)c;
    const uint8_t *p01 = src + ((size_t)ya * (size_t)w + (size_t)xb) * (size_t)c;
    const uint8_t *p10 = src + ((size_t)yb * (size_t)w + (size_t)xa) * (size_t)c;
    const uint8_t *p11 = src + ((size_t)yb * (size_t)w + (size_t)xb) * (size_t)c;
    for (int k = 0; k < c; k++) {
        uint32_t top = p00[k] * (FRAC_ONE - fx) + p01[k] * fx;
        uint32_t bot = p10[k] * (FRAC_ONE - fx) + p11[k] * fx;
        out[k] = (uint8_t)((top * (FRAC_ONE - fy) + bot * fy + (1u << (2 * FRAC_BITS - 1))) >>
                           (2 * FRAC_BITS));
    }
}

/* One interior pixel: all four neighbours inside. p0: the top-left neighbour, row: bytes
 * per image row, fx, fy in [0, 2048]. Weights w00..w11 sum to 2^22; the result is the
 * two-stage bilinear value above (the same integers, summed in one step). */
static inline __attribute__((always_inline)) void sample_inside(uint8_t *out, const uint8_t *p0,
                                                                size_t row, int c, uint32_t fx,
                                                                uint32_t fy, int last)
{
    const uint32_t w00 = (FRAC_ONE - fx) * (FRAC_ONE - fy), w01 = fx * (FRAC_ONE - fy);
    const uint32_t w10 = (FRAC_ONE - fx) * fy, w11 = fx * fy;
    const uint8_t *p1 = p0 + row;
#if defined(__SSE4_1__)
    if (c == 3) {
        /* 4-byte loads of each neighbour; the bottom-right one is read ending at its last
         * byte, so nothing past the image is touched */
        uint32_t a, b, d, e;
        memcpy(&a, p0, 4), memcpy(&b, p0 + 3, 4), memcpy(&d, p1, 4), memcpy(&e, p1 + 2, 4);
        __m128i acc = _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)a)),
                                      _mm_set1_epi32((int)w00));
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)b)),
                                                 _mm_set1_epi32((int)w01)));
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(_mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)d)),
                                                 _mm_set1_epi32((int)w10)));
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(
                                     _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)(e >> 8))),
                                     _mm_set1_epi32((int)w11)));
        acc = _mm_srli_epi32(_mm_add_epi32(acc, _mm_set1_epi32(1 << (2 * FRAC_BITS - 1))),
                             2 * FRAC_BITS);
        acc = _mm_packus_epi16(_mm_packus_epi32(acc, acc), acc);
        uint32_t v = (uint32_t)_mm_cvtsi128_si32(acc);
        if (last)
            memcpy(out, &v, 3);
        else
            memcpy(out, &v, 4); /* the 4th byte is the next pixel's, written after this */
        return;
    }
#endif
    (void)last;
    for (int k = 0; k < c; k++)
        out[k] = (uint8_t)((p0[k] * w00 + p0[k + c] * w01 + p1[k] * w10 + p1[k + c] * w11 +
                            (1u << (2 * FRAC_BITS - 1))) >> (2 * FRAC_BITS));
}

/* All rows. Inlined with a constant c for the common channel counts. Positions whose 2x2
 * neighbourhood leaves the image: fill nearest clamps the position to [0, n-1] (x = n-1 as
 * x0 = n-2, fx = 2048: the same integers as clamped indices), fill constant writes the fill
 * outside [0, n-1], the rest goes through sample_border. */
static inline __attribute__((always_inline)) void warp(uint8_t *dst, const uint8_t *src,
                                                       int h, int w, int c, const affine2 *m,
                                                       int mode, uint8_t fill)
{
    const double one = (double)(1LL << POS_BITS);
    const int64_t dxx = llround(m->m[0] * one), dyx = llround(m->m[3] * one);
    const int64_t xmax = (int64_t)(w - 1) * FRAC_ONE, ymax = (int64_t)(h - 1) * FRAC_ONE;
    const int clamp = mode == AUGMENT_FILL_NEAREST && w > 1 && h > 1;
    const size_t row = (size_t)w * (size_t)c;
    for (int i = 0; i < h; i++) {
        int64_t x = llround((m->m[1] * i + m->m[2]) * one) + POS_ROUND;
        int64_t y = llround((m->m[4] * i + m->m[5]) * one) + POS_ROUND;
        uint8_t *out = dst + (size_t)i * row;
        for (int j = 0; j < w; j++, x += dxx, y += dyx, out += c) {
            int64_t xq = x >> (POS_BITS - FRAC_BITS), yq = y >> (POS_BITS - FRAC_BITS);
            int64_t x0 = xq >> FRAC_BITS, y0 = yq >> FRAC_BITS;
            if ((uint64_t)x0 < (uint64_t)(w - 1) && (uint64_t)y0 < (uint64_t)(h - 1)) {
                sample_inside(out, src + ((size_t)y0 * (size_t)w + (size_t)x0) * (size_t)c,
                              row, c, (uint32_t)(xq & (FRAC_ONE - 1)),
                              (uint32_t)(yq & (FRAC_ONE - 1)), j == w - 1);
            } else if (clamp) {
                xq = xq < 0 ? 0 : xq > xmax ? xmax : xq;
                yq = yq < 0 ? 0 : yq > ymax ? ymax : yq;
                x0 = xq >> FRAC_BITS, y0 = yq >> FRAC_BITS;
                x0 -= x0 == w - 1;
                y0 -= y0 == h - 1;
                sample_inside(out, src + ((size_t)y0 * (size_t)w + (size_t)x0) * (size_t)c,
                              row, c, (uint32_t)(xq - x0 * FRAC_ONE),
                              (uint32_t)(yq - y0 * FRAC_ONE), j == w - 1);
            } else if (mode == AUGMENT_FILL_CONSTANT &&
                       (xq < 0 || yq < 0 || xq > xmax || yq > ymax)) {
                memset(out, fill, (size_t)c);
            } else {
                sample_border(out, src, h, w, c, xq, yq, mode, fill);
            }
        }
    }
}

static void warp_c1(uint8_t *d, const uint8_t *s, int h, int w, const affine2 *m, int mode,
                    uint8_t fill)
{
    warp(d, s, h, w, 1, m, mode, fill);
}

static void warp_c3(uint8_t *d, const uint8_t *s, int h, int w, const affine2 *m, int mode,
                    uint8_t fill)
{
    warp(d, s, h, w, 3, m, mode, fill);
}

static void warp_any(uint8_t *d, const uint8_t *s, int h, int w, int c, const affine2 *m,
                     int mode, uint8_t fill)
{
    warp(d, s, h, w, c, m, mode, fill);
}

/* Whole-pixel maps (flips, rot90, integer shifts, their products): every output pixel is a
 * copy of one input pixel or the fill, the same bytes warp gives, without the arithmetic. */
static int map_is_integer(const affine2 *m)
{
    for (int i = 0; i < 6; i++)
        if (m->m[i] != nearbyint(m->m[i]))
            return 0;
    return 1;
}

static void remap(uint8_t *dst, const uint8_t *src, int h, int w, int c, const affine2 *m,
                  int mode, uint8_t fill)
{
    const int64_t dxx = (int64_t)m->m[0], dyx = (int64_t)m->m[3];
    for (int i = 0; i < h; i++) {
        int64_t x = (int64_t)(m->m[1] * i + m->m[2]), y = (int64_t)(m->m[4] * i + m->m[5]);
        uint8_t *out = dst + (size_t)i * (size_t)w * (size_t)c;
        for (int j = 0; j < w; j++, x += dxx, y += dyx, out += c) {
            if ((uint64_t)x < (uint64_t)w && (uint64_t)y < (uint64_t)h)
                memcpy(out, src + ((size_t)y * (size_t)w + (size_t)x) * (size_t)c, (size_t)c);
            else
                sample_border(out, src, h, w, c, x * FRAC_ONE, y * FRAC_ONE, mode, fill);
        }
    }
}

/* Brightness then contrast, per channel: v -> b * (f * (v - mean) + mean), mean of the
 * channel after the geometric step, rounded and clipped to 0..255 (no clipping in between,
 * unlike Keras' separate PIL brightness step). */
enum { ADJUST_GROUP = 4 };

/* channels k0 .. k0+g-1 (g <= ADJUST_GROUP) of img: one sum pass, one lookup pass */
static inline __attribute__((always_inline)) void adjust_group(uint8_t *img, size_t n, int c,
                                                               int k0, int g, float brightness,
                                                               float contrast)
{
    uint64_t sum[ADJUST_GROUP] = {0};
    if (contrast != 1)
        for (size_t i = 0; i < n; i++)
            for (int k = 0; k < g; k++)
                sum[k] += img[i * (size_t)c + (size_t)(k0 + k)];
    uint8_t lut[ADJUST_GROUP][256];
    for (int k = 0; k < g; k++) {
        double mean = (double)sum[k] / (double)n;
        for (int v = 0; v < 256; v++) {
            double y = brightness * (contrast * (v - mean) + mean);
            y = y < 0 ? 0 : y > 255 ? 255 : y;
            lut[k][v] = (uint8_t)lrint(y);
        }
    }
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < g; k++) {
            uint8_t *v = &img[i * (size_t)c + (size_t)(k0 + k)];
            *v = lut[k][*v];
        }
}

static void adjust_values(uint8_t *img, int h, int w, int c, float brightness, float contrast)
{
    const size_t n = (size_t)h * (size_t)w;
    if (c == 1)
        adjust_group(img, n, 1, 0, 1, brightness, contrast);
    else if (c == 3)
        adjust_group(img, n, 3, 0, 3, brightness, contrast);
    else
        for (int k0 = 0; k0 < c; k0 += ADJUST_GROUP)
            adjust_group(img, n, c, k0, c - k0 < ADJUST_GROUP ? c - k0 : ADJUST_GROUP,
                         brightness, contrast);
}

int augment_apply_params(uint8_t *dst, const uint8_t *src, int h, int w, int c,
                         const augment_params *p, int fill_mode, float fill_value)
{
    size_t bytes = (size_t)h * (size_t)w * (size_t)c;
    affine2 m;
    if (h <= 0 || w <= 0 || c <= 0)
        return -1;
    if (params_map(&m, p, h, w) < 0 || !isfinite(p->brightness) || !isfinite(p->contrast) ||
        p->brightness < 0 || p->contrast < 0) {
        memcpy(dst, src, bytes);
        return -1;
    }
    if (m.m[0] == 1 && m.m[1] == 0 && m.m[2] == 0 && m.m[3] == 0 && m.m[4] == 1 &&
        m.m[5] == 0) {
        memcpy(dst, src, bytes);
    } else {
        int mode = fill_mode >= 0 && fill_mode <= 2 ? fill_mode : AUGMENT_FILL_NEAREST;
        float fv = fill_value == fill_value ? fill_value : 0;
        uint8_t fill = (uint8_t)lrintf(fv < 0 ? 0 : fv > 255 ? 255 : fv);
        if (map_is_integer(&m))
            remap(dst, src, h, w, c, &m, mode, fill);
        else if (c == 1)
            warp_c1(dst, src, h, w, &m, mode, fill);
        else if (c == 3)
            warp_c3(dst, src, h, w, &m, mode, fill);
        else
            warp_any(dst, src, h, w, c, &m, mode, fill);
    }
    if (p->brightness != 1 || p->contrast != 1)
        adjust_values(dst, h, w, c, p->brightness, p->contrast);
    return 0;
}

void augment_image(uint8_t *dst, const uint8_t *src, int h, int w, int c,
                   const augment_config *cfg, uint64_t seed, uint64_t epoch,
                   uint64_t sample_index)
{
    if (!augment_config_active(cfg)) {
        memcpy(dst, src, (size_t)h * (size_t)w * (size_t)c);
        return;
    }
    augment_params p;
    augment_draw(&p, cfg, h, w, seed, epoch, sample_index);
    augment_apply_params(dst, src, h, w, c, &p, cfg->fill_mode, cfg->fill_value);
}
