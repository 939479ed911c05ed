/* Resizing 8-bit HWC images with a separable triangle filter (Pillow's BILINEAR resample):
 *
 *   scale = in/out, fs = max(scale, 1), support = fs (the triangle's radius 1, widened by
 *   the shrink factor, so shrinking averages every source pixel: antialiased).
 *   Output pixel i is centred at (i + 0.5) * scale in source coordinates; taps are the source
 *   pixels j with centre within the support, weight tri((j + 0.5 - centre) / fs),
 *   tri(x) = max(0, 1 - |x|), normalised to sum 1 (so edges renormalise, no padding).
 *
 * Weights are computed per axis once and cached per thread (sizes repeat across a data set);
 * the vertical pass runs first, accumulating whole source rows into one float row (a loop the
 * compiler vectorises), then the horizontal pass makes the output row; values are rounded
 * to nearest and clamped once, at the end. An axis whose size does not change is an exact
 * copy (weight 1 on one tap). Geometry of the modes: docs/images.md. */
#include "image.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Weights of one axis: output i reads taps start[i] .. start[i]+ksize-1 (all inside the
 * source) with weights w[i*ksize + k]; unused taps have weight 0. */
typedef struct resize_axis {
    int in, out, ksize;
    int *start;
    float *w;
} resize_axis;

static void axis_free(resize_axis *a)
{
    free(a->start);
    free(a->w);
    memset(a, 0, sizeof *a);
}

static int axis_build(resize_axis *a, int in, int out)
{
    double scale = (double)in / out, fs = scale > 1.0 ? scale : 1.0, support = fs;
    int ksize = (int)ceil(support) * 2 + 1;
    if (in == out)
        ksize = 1;
    if (ksize > in)
        ksize = in;
    a->in = in;
    a->out = out;
    a->ksize = ksize;
    a->start = malloc(sizeof(int) * (size_t)out);
    a->w = calloc((size_t)out * ksize, sizeof(float));
    double *tmp = malloc(sizeof(double) * (size_t)(2 * ceil(support) + 3));
    if (!a->start || !a->w || !tmp) {
        free(tmp);
        axis_free(a);
        return -1;
    }
    for (int i = 0; i < out; i++) {
        float *wi = a->w + (size_t)i * ksize;
        if (in == out) {
            a->start[i] = i;
            wi[0] = 1.0f;
            continue;
        }
        double centre = (i + 0.5) * scale;
        int lo = (int)floor(centre - support + 0.5), hi = (int)floor(centre + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in)
            hi = in;
        double sum = 0.0;
        for (int j = lo; j < hi; j++) {
            double x = (j + 0.5 - centre) / fs;
            double t = 1.0 - fabs(x);
            tmp[j - lo] = t > 0.0 ? t : 0.0;
            sum += tmp[j - lo];
        }
        int st = lo;
        if (st + ksize > in)
            st = in - ksize;
        a->start[i] = st;
        for (int j = lo; j < hi; j++)
            wi[j - st] = sum > 0.0 ? (float)(tmp[j - lo] / sum) : 0.0f;
    }
    free(tmp);
    return 0;
}

/* Per-thread cache of axis weights, freed when the thread ends. */
#define AXIS_CACHE 8
typedef struct resize_cache {
    resize_axis axes[AXIS_CACHE];
    int next;
    float *row; /* vertical-pass accumulator */
    size_t row_cap;
} resize_cache;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_destroy(void *p)
{
    resize_cache *c = p;
    if (!c)
        return;
    for (int i = 0; i < AXIS_CACHE; i++)
        axis_free(&c->axes[i]);
    free(c->row);
    free(c);
}

static void cache_key_make(void)
{
    pthread_key_create(&cache_key, cache_destroy);
}

static resize_cache *cache_get(void)
{
    pthread_once(&cache_once, cache_key_make);
    resize_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (c && pthread_setspecific(cache_key, c) != 0) {
            free(c);
            c = NULL;
        }
    }
    return c;
}

static const resize_axis *cache_axis(resize_cache *c, int in, int out)
{
    for (int i = 0; i < AXIS_CACHE; i++)
        if (c->axes[i].w && c->axes[i].in == in && c->axes[i].out == out)
            return &c->axes[i];
    resize_axis *a = &c->axes[c->next];
    c->next = (c->next + 1) % AXIS_CACHE;
    axis_free(a);
    return axis_build(a, in, out) == 0 ? a : NULL;
}

static inline uint8_t clamp_round(float v)
{
    v += 0.5f;
    return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)v;
}

/* Vertical pass: acc[0..n) = sum_k w[k] * src rows (start+k). */
static void vpass(float *restrict acc, const uint8_t *src, size_t stride, int start,
                  const float *w, int ksize, size_t n)
{
    const uint8_t *r0 = src + (size_t)start * stride;
    float w0 = w[0];
    for (size_t i = 0; i < n; i++)
        acc[i] = w0 * (float)r0[i];
    for (int k = 1; k < ksize; k++) {
        float wk = w[k];
        if (wk == 0.0f)
            continue;
        const uint8_t *restrict r = src + (size_t)(start + k) * stride;
        for (size_t i = 0; i < n; i++)
            acc[i] += wk * (float)r[i];
    }
}

/* Horizontal pass on one accumulated row, C channels known at compile time. */
#define HPASS(C)                                                                           \
    static void hpass_##C(uint8_t *restrict dst, const float *restrict acc,                \
                          const resize_axis *ax)                                           \
    {                                                                                      \
        const int ks = ax->ksize;                                                          \
        for (int x = 0; x < ax->out; x++) {                                                \
            const float *w = ax->w + (size_t)x * ks;                                       \
            const float *p = acc + (size_t)ax->start[x] * C;                               \
            float s[C];                                                                    \
            for (int c = 0; c < C; c++)                                                    \
                s[c] = 0.0f;                                                               \
            for (int k = 0; k < ks; k++)                                                   \
                for (int c = 0; c < C; c++)                                                \
                    s[c] += w[k] * p[k * C + c];                                           \
            for (int c = 0; c < C; c++)                                                    \
                dst[x * C + c] = clamp_round(s[c]);                                        \
        }                                                                                  \
    }
HPASS(1)
HPASS(3)

static void hpass_n(uint8_t *dst, const float *acc, const resize_axis *ax, int C)
{
    for (int x = 0; x < ax->out; x++) {
        const float *w = ax->w + (size_t)x * ax->ksize;
        const float *p = acc + (size_t)ax->start[x] * C;
        for (int c = 0; c < C; c++) {
            float s = 0.0f;
            for (int k = 0; k < ax->ksize; k++)
                s += w[k] * p[k * C + c];
            dst[x * C + c] = clamp_round(s);
        }
    }
}

/* Resample the src box (sh x sw, row stride sstride bytes) to dh x dw at dst (row stride
 * dstride bytes), C channels. */
static int resample(const uint8_t *src, int sh, int sw, size_t sstride, uint8_t *dst, int dh,
                    int dw, size_t dstride, int C, rb_error *err)
{
    if (sh == dh && sw == dw) {
        for (int y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * dstride, src + (size_t)y * sstride, (size_t)dw * C);
        return 0;
    }
    resize_cache *c = cache_get();
    if (!c)
        return rb_fail(err, NULL, "out of memory for resize weights");
    const resize_axis *ay = cache_axis(c, sh, dh);
    const resize_axis *ax = ay ? cache_axis(c, sw, dw) : NULL;
    if (!ay || !ax)
        return rb_fail(err, NULL, "out of memory for resize weights (%dx%d -> %dx%d)", sh, sw,
                       dh, dw);
    size_t n = (size_t)sw * C;
    if (c->row_cap < n) {
        free(c->row);
        c->row = malloc(n * sizeof(float));
        c->row_cap = c->row ? n : 0;
        if (!c->row)
            return rb_fail(err, NULL, "out of memory for a resize row");
    }
    float *acc = c->row;
    for (int y = 0; y < dh; y++) {
        vpass(acc, src, sstride, ay->start[y], ay->w + (size_t)y * ay->ksize, ay->ksize, n);
        uint8_t *d = dst + (size_t)y * dstride;
        if (C == 3)
            hpass_3(d, acc, ax);
        else if (C == 1)
            hpass_1(d, acc, ax);
        else
            hpass_n(d, acc, ax, C);
    }
    /* a huge source row (very wide image) is not kept for the life of the thread */
    if (c->row_cap > ((size_t)4 << 20)) {
        free(c->row);
        c->row = NULL;
        c->row_cap = 0;
    }
    return 0;
}

/* Pad: the image fitted inside out_h x out_w keeping its aspect ratio. */
static void pad_inner(int in_h, int in_w, int out_h, int out_w, int *nh, int *nw)
{
    if ((int64_t)in_h * out_w >= (int64_t)in_w * out_h) { /* relatively taller: fit height */
        *nh = out_h;
        *nw = (int)(((int64_t)in_w * out_h * 2 + in_h) / (2 * (int64_t)in_h));
    } else {
        *nw = out_w;
        *nh = (int)(((int64_t)in_h * out_w * 2 + in_w) / (2 * (int64_t)in_w));
    }
    if (*nh < 1)
        *nh = 1;
    if (*nw < 1)
        *nw = 1;
    if (*nh > out_h)
        *nh = out_h;
    if (*nw > out_w)
        *nw = out_w;
}

/* Center-crop: the largest centred box of the output's aspect ratio (Keras smart_resize). */
static void crop_box(int in_h, int in_w, int out_h, int out_w, int *y0, int *x0, int *ch,
                     int *cw)
{
    int64_t h = (int64_t)in_w * out_h / out_w, w = (int64_t)in_h * out_w / out_h;
    *ch = (int)(h < in_h ? h : in_h);
    *cw = (int)(w < in_w ? w : in_w);
    if (*ch < 1)
        *ch = 1;
    if (*cw < 1)
        *cw = 1;
    *y0 = (in_h - *ch) / 2;
    *x0 = (in_w - *cw) / 2;
}

int image_resize(const image_u8 *in, int out_h, int out_w, resize_mode mode, uint8_t *out,
                 rb_error *err)
{
    if (!in || !in->data || in->height <= 0 || in->width <= 0 || in->channels <= 0)
        return rb_fail(err, NULL, "resize: empty input image");
    if (out_h <= 0 || out_w <= 0)
        return rb_fail(err, NULL, "resize: invalid output size %dx%d", out_h, out_w);
    int C = in->channels;
    size_t sstride = (size_t)in->width * C, dstride = (size_t)out_w * C;
    switch (mode) {
    case RESIZE_STRETCH:
        return resample(in->data, in->height, in->width, sstride, out, out_h, out_w, dstride, C,
                        err);
    case RESIZE_PAD: {
        int nh, nw;
        pad_inner(in->height, in->width, out_h, out_w, &nh, &nw);
        int y0 = (out_h - nh) / 2, x0 = (out_w - nw) / 2;
        memset(out, 0, (size_t)out_h * dstride);
        return resample(in->data, in->height, in->width, sstride,
                        out + (size_t)y0 * dstride + (size_t)x0 * C, nh, nw, dstride, C, err);
    }
    case RESIZE_CENTER_CROP: {
        int y0, x0, ch, cw;
        crop_box(in->height, in->width, out_h, out_w, &y0, &x0, &ch, &cw);
        return resample(in->data + (size_t)y0 * sstride + (size_t)x0 * C, ch, cw, sstride, out,
                        out_h, out_w, dstride, C, err);
    }
    default: return rb_fail(err, NULL, "resize: unknown mode %d", (int)mode);
    }
}

void image_resize_min_source(int in_h, int in_w, int out_h, int out_w, resize_mode mode,
                             int *min_h, int *min_w)
{
    int64_t h = out_h, w = out_w;
    if (in_h > 0 && in_w > 0 && out_h > 0 && out_w > 0) {
        if (mode == RESIZE_PAD) {
            int nh, nw;
            pad_inner(in_h, in_w, out_h, out_w, &nh, &nw);
            h = nh;
            w = nw;
        } else if (mode == RESIZE_CENTER_CROP) {
            /* cover: the axis that limits keeps its output size, the other scales along */
            if ((int64_t)in_h * out_w >= (int64_t)in_w * out_h) { /* taller: width limits */
                w = out_w;
                h = ((int64_t)in_h * out_w + in_w - 1) / in_w;
            } else {
                h = out_h;
                w = ((int64_t)in_w * out_h + in_h - 1) / in_h;
            }
        }
    }
    if (h > in_h)
        h = in_h;
    if (w > in_w)
        w = in_w;
    *min_h = (int)h;
    *min_w = (int)w;
}
