/* Seeded image shifts of the stress test; see stress.h and docs/evaluate.md. Contrast and
 * crop/zoom are the augmentation engine's transforms (src/augment.h) with fixed
 * parameters; the others are written here. */
#include "stress.h"
#include "augment.h"
#include "rb_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Purpose key of the noise stream: rb_rng_uniform(seed, index, pixel, key + ...) */
#define STRESS_RNG_NOISE 0x57E55000ULL

static const char *const NAMES[RB_SHIFT_COUNT] = {"contrast", "gamma", "blur", "noise", "resolution", "zoom", "invert"};
static const char *const PNAMES[RB_SHIFT_COUNT] = {"factor", "gamma", "sigma_px", "sigma_gray", "factor", "kept_share",
                                                   "none"};
static const double PARAM[RB_SHIFT_COUNT][RB_SHIFT_MAX_SEVERITY] = {
    {0.8, 0.6, 0.4},    /* contrast factor */
    {1.3, 1.7, 2.2},    /* gamma */
    {0.5, 1.0, 2.0},    /* blur sigma, pixels */
    {4, 8, 16},         /* noise sigma, gray levels */
    {2, 3, 4},          /* down-sampling factor */
    {0.9, 0.8, 0.7},    /* crop: kept share of each side */
    {1, 1, 1},          /* invert */
};

const char *rb_shift_name(rb_shift s) { return s >= 0 && s < RB_SHIFT_COUNT ? NAMES[s] : "?"; }
const char *rb_shift_parameter_name(rb_shift s) { return s >= 0 && s < RB_SHIFT_COUNT ? PNAMES[s] : "?"; }
int rb_shift_severities(rb_shift s) { return s == RB_SHIFT_INVERT ? 1 : RB_SHIFT_MAX_SEVERITY; }

double rb_shift_parameter(rb_shift s, int severity)
{
    if (s < 0 || s >= RB_SHIFT_COUNT || severity <= 0)
        return NAN;
    int n = rb_shift_severities(s);
    return PARAM[s][(severity > n ? n : severity) - 1];
}

size_t rb_shift_scratch_bytes(int h, int w, int c)
{
    return (size_t)h * w * c * sizeof(float) + (size_t)h * w * c;
}

static uint8_t clamp_u8(double v)
{
    v = floor(v + 0.5);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* separable Gaussian blur, radius ceil(3 sigma), edges clamped */
static void blur(uint8_t *img, int h, int w, int c, double sigma, float *buf)
{
    int r = (int)ceil(3 * sigma);
    double kern[64];
    if (r > 31)
        r = 31;
    double sum = 0;
    for (int i = -r; i <= r; i++)
        sum += kern[i + r] = exp(-0.5 * i * i / (sigma * sigma));
    for (int i = 0; i <= 2 * r; i++)
        kern[i] /= sum;
    for (int y = 0; y < h; y++) /* rows -> buf */
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                double a = 0;
                for (int i = -r; i <= r; i++) {
                    int xx = x + i < 0 ? 0 : x + i >= w ? w - 1 : x + i;
                    a += kern[i + r] * img[((size_t)y * w + xx) * c + ch];
                }
                buf[((size_t)y * w + x) * c + ch] = (float)a;
            }
    for (int y = 0; y < h; y++) /* columns -> img */
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                double a = 0;
                for (int i = -r; i <= r; i++) {
                    int yy = y + i < 0 ? 0 : y + i >= h ? h - 1 : y + i;
                    a += kern[i + r] * buf[((size_t)yy * w + x) * c + ch];
                }
                img[((size_t)y * w + x) * c + ch] = clamp_u8(a);
            }
}

/* f x f box average (partial blocks at the edges average what they hold), then bilinear
 * back to (h, w) with pixel centres aligned */
static void down_up(uint8_t *img, int h, int w, int c, int f, float *small)
{
    int sh = (h + f - 1) / f, sw = (w + f - 1) / f;
    for (int by = 0; by < sh; by++)
        for (int bx = 0; bx < sw; bx++)
            for (int ch = 0; ch < c; ch++) {
                double a = 0;
                int cnt = 0;
                for (int y = by * f; y < by * f + f && y < h; y++)
                    for (int x = bx * f; x < bx * f + f && x < w; x++) {
                        a += img[((size_t)y * w + x) * c + ch];
                        cnt++;
                    }
                small[((size_t)by * sw + bx) * c + ch] = (float)(a / cnt);
            }
    for (int y = 0; y < h; y++) {
        double sy = (y + 0.5) / f - 0.5;
        sy = sy < 0 ? 0 : sy > sh - 1 ? sh - 1 : sy;
        int y0 = (int)sy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
        double fy = sy - y0;
        for (int x = 0; x < w; x++) {
            double sx = (x + 0.5) / f - 0.5;
            sx = sx < 0 ? 0 : sx > sw - 1 ? sw - 1 : sx;
            int x0 = (int)sx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
            double fx = sx - x0;
            for (int ch = 0; ch < c; ch++) {
                double v00 = small[((size_t)y0 * sw + x0) * c + ch], v01 = small[((size_t)y0 * sw + x1) * c + ch];
                double v10 = small[((size_t)y1 * sw + x0) * c + ch], v11 = small[((size_t)y1 * sw + x1) * c + ch];
                double v = (1 - fy) * ((1 - fx) * v00 + fx * v01) + fy * ((1 - fx) * v10 + fx * v11);
                img[((size_t)y * w + x) * c + ch] = clamp_u8(v);
            }
        }
    }
}

void rb_shift_apply(uint8_t *img, int h, int w, int c, rb_shift s, int severity, uint64_t seed, uint64_t index,
                    void *tmp)
{
    if (severity <= 0 || s < 0 || s >= RB_SHIFT_COUNT)
        return;
    if (severity > rb_shift_severities(s))
        severity = rb_shift_severities(s);
    double p = rb_shift_parameter(s, severity);
    size_t n = (size_t)h * w * c;
    float *fbuf = tmp;
    uint8_t *bbuf = (uint8_t *)tmp + n * sizeof(float);
    augment_params ap;
    switch (s) {
    case RB_SHIFT_CONTRAST:
    case RB_SHIFT_ZOOM:
        augment_params_identity(&ap);
        if (s == RB_SHIFT_CONTRAST)
            ap.contrast = (float)p;
        else {
            ap.crop = (float)p;
            ap.crop_x = (float)((1 - p) * w / 2);
            ap.crop_y = (float)((1 - p) * h / 2);
        }
        augment_apply_params(bbuf, img, h, w, c, &ap, AUGMENT_FILL_NEAREST, 0);
        memcpy(img, bbuf, n);
        break;
    case RB_SHIFT_GAMMA: {
        uint8_t lut[256];
        for (int v = 0; v < 256; v++)
            lut[v] = clamp_u8(255.0 * pow(v / 255.0, p));
        for (size_t i = 0; i < n; i++)
            img[i] = lut[img[i]];
        break;
    }
    case RB_SHIFT_BLUR:
        blur(img, h, w, c, p, fbuf);
        break;
    case RB_SHIFT_NOISE: {
        uint64_t key = STRESS_RNG_NOISE + (uint64_t)severity * 2;
        for (size_t i = 0; i < n; i++) { /* Box-Muller from two uniforms of (seed, index, i) */
            double u1 = rb_rng_uniform(seed, index, i, key), u2 = rb_rng_uniform(seed, index, i, key + 1);
            double g = sqrt(-2 * log(u1 > 0 ? u1 : 1e-12)) * cos(2 * M_PI * u2);
            img[i] = clamp_u8(img[i] + p * g);
        }
        break;
    }
    case RB_SHIFT_RESOLUTION:
        down_up(img, h, w, c, (int)p, fbuf);
        break;
    case RB_SHIFT_INVERT:
        for (size_t i = 0; i < n; i++)
            img[i] = (uint8_t)(255 - img[i]);
        break;
    default:
        break;
    }
}
