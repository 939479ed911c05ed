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

/* Same bytes whatever the build: no fused multiply-add contraction, even with -march=native
 * (a fused a*b+c rounds once, so ties at .5 could round the other way on some CPUs). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#elif defined(__clang__)
#pragma clang fp contract(off)
#endif

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Weights of one axis, two views of the same numbers:
 *  - fixed window (horizontal pass): output i reads the ksize taps start[i] ..
 *    start[i]+ksize-1 (always inside the source) with weights w[i*ksize + k], zero where
 *    the filter is zero; ksize is the largest number of non-zero taps of any output;
 *  - exact run (vertical pass): first[i] .. first[i]+count[i]-1 are the non-zero taps, their
 *    weights at w[i*ksize + first[i]-start[i]] onwards. */
typedef struct resize_axis {
    int in, out, ksize;
    int *start, *first, *count;
    float *w;
    float *w4; /* w with each weight repeated 4 times (16-byte aligned), for 3-channel rows */
} resize_axis;

static void axis_free(resize_axis *a)
{
    free(a->start);
    free(a->first);
    free(a->count);
    free(a->w);
    free(a->w4);
    memset(a, 0, sizeof *a);
}

/* Non-zero taps [*lo, *hi) of output i and their weights (normalised) into tmp. */
static void axis_taps(int in, int out, int i, double *tmp, int *lo, int *hi)
{
    double scale = (double)in / out, fs = scale > 1.0 ? scale : 1.0, support = fs;
    double centre = (i + 0.5) * scale;
    int a = (int)floor(centre - support + 0.5), b = (int)floor(centre + support + 0.5);
    if (a < 0)
        a = 0;
    if (b > in)
        b = in;
    /* drop taps where the triangle is zero */
    while (a < b && 1.0 - fabs((a + 0.5 - centre) / fs) <= 0.0)
        a++;
    while (b > a && 1.0 - fabs((b - 1 + 0.5 - centre) / fs) <= 0.0)
        b--;
    if (a >= b) { /* cannot happen for in, out >= 1; nearest pixel as a safe fallback */
        a = (int)floor(centre);
        a = a < 0 ? 0 : a >= in ? in - 1 : a;
        b = a + 1;
        tmp[0] = 1.0;
        *lo = a;
        *hi = b;
        return;
    }
    double sum = 0.0;
    for (int j = a; j < b; j++) {
        tmp[j - a] = 1.0 - fabs((j + 0.5 - centre) / fs);
        sum += tmp[j - a];
    }
    for (int j = a; j < b; j++)
        tmp[j - a] /= sum;
    *lo = a;
    *hi = b;
}

static int axis_build(resize_axis *a, int in, int out)
{
    memset(a, 0, sizeof *a);
    double scale = (double)in / out, fs = scale > 1.0 ? scale : 1.0;
    size_t maxtaps = (size_t)(2.0 * fs) + 4;
    double *tmp = malloc(sizeof(double) * maxtaps);
    a->start = malloc(sizeof(int) * (size_t)out);
    a->first = malloc(sizeof(int) * (size_t)out);
    a->count = malloc(sizeof(int) * (size_t)out);
    if (!tmp || !a->start || !a->first || !a->count)
        goto fail;
    int ksize = 1;
    for (int i = 0; i < out; i++) {
        int lo, hi;
        if (in == out) {
            lo = i;
            hi = i + 1;
        } else {
            axis_taps(in, out, i, tmp, &lo, &hi);
        }
        a->first[i] = lo;
        a->count[i] = hi - lo;
        if (hi - lo > ksize)
            ksize = hi - lo;
    }
    a->in = in;
    a->out = out;
    a->ksize = ksize;
    a->w = calloc((size_t)out * ksize, sizeof(float));
    if (!a->w)
        goto fail;
    for (int i = 0; i < out; i++) {
        int lo = a->first[i], st = lo;
        if (st + ksize > in)
            st = in - ksize;
        a->start[i] = st;
        float *wi = a->w + (size_t)i * ksize + (lo - st);
        if (in == out) {
            wi[0] = 1.0f;
            continue;
        }
        int l2, h2;
        axis_taps(in, out, i, tmp, &l2, &h2);
        for (int j = 0; j < h2 - l2; j++)
            wi[j] = (float)tmp[j];
    }
    if (posix_memalign((void **)&a->w4, 16, sizeof(float) * 4 * (size_t)out * ksize) != 0) {
        a->w4 = NULL;
        goto fail;
    }
    for (size_t i = 0; i < (size_t)out * ksize; i++)
        for (int k = 0; k < 4; k++)
            a->w4[4 * i + k] = a->w[i];
    free(tmp);
    return 0;
fail:
    free(tmp);
    axis_free(a);
    return -1;
}

/* Per-thread cache of axis weights, freed when the thread ends. */
#define AXIS_CACHE 8
typedef struct resize_cache {
    resize_axis axes[AXIS_CACHE];
    int next;
    float *row; /* vertical-pass accumulator (+1 float of slack for 4-wide loads) */
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

/* `keep`: an axis already handed out for this resize, which must not be evicted to make
 * room (otherwise the vertical weights could be overwritten by the horizontal ones). */
static const resize_axis *cache_axis(resize_cache *c, int in, int out, const resize_axis *keep)
{
    for (int i = 0; i < AXIS_CACHE; i++)
        if (c->axes[i].w && c->axes[i].in == in && c->axes[i].out == out)
            return &c->axes[i];
    if (&c->axes[c->next] == keep)
        c->next = (c->next + 1) % AXIS_CACHE;
    resize_axis *a = &c->axes[c->next];
    c->next = (c->next + 1) % AXIS_CACHE;
    axis_free(a);
    return axis_build(a, in, out) == 0 ? a : NULL;
}

/* The passes are plain streaming arithmetic: compiled twice on x86-64, 8-wide for CPUs with
 * AVX2 and for the baseline, picked at load time. No FMA, no reassociation: both give the
 * same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define RESIZE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RESIZE_CLONES
#endif

/* Weights are >= 0 and sum to 1, so sums stay within [0, 255] up to float rounding; the
 * clamp only guards that rounding. */
static inline uint8_t round_u8(float v)
{
    v += 0.5f;
    v = v > 0.0f ? v : 0.0f;
    v = v < 255.0f ? v : 255.0f;
    return (uint8_t)v;
}

/* Vertical pass: acc[0..n) = sum over the count taps of w[k] * row(first + k), rows fused
 * (one pass over acc for up to four taps; the compiler vectorises each loop). */
RESIZE_CLONES static void vpass(float *restrict acc, const uint8_t *src, size_t stride, int first,
                  const float *w, int count, size_t n)
{
    const uint8_t *r0 = src + (size_t)first * stride;
    const uint8_t *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
    switch (count) {
    case 1: {
        float w0 = w[0];
        for (size_t i = 0; i < n; i++)
            acc[i] = w0 * (float)r0[i];
        return;
    }
    case 2: {
        float w0 = w[0], w1 = w[1];
        for (size_t i = 0; i < n; i++)
            acc[i] = w0 * (float)r0[i] + w1 * (float)r1[i];
        return;
    }
    case 3: {
        float w0 = w[0], w1 = w[1], w2 = w[2];
        for (size_t i = 0; i < n; i++)
            acc[i] = w0 * (float)r0[i] + w1 * (float)r1[i] + w2 * (float)r2[i];
        return;
    }
    default: {
        float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
        for (size_t i = 0; i < n; i++)
            acc[i] = w0 * (float)r0[i] + w1 * (float)r1[i] + w2 * (float)r2[i] +
                     w3 * (float)r3[i];
        int k = 4;
        for (; k + 2 <= count; k += 2) {
            const uint8_t *a = src + (size_t)(first + k) * stride, *b = a + stride;
            float wa = w[k], wb = w[k + 1];
            for (size_t i = 0; i < n; i++)
                acc[i] += wa * (float)a[i] + wb * (float)b[i];
        }
        if (k < count) {
            const uint8_t *a = src + (size_t)(first + k) * stride;
            float wa = w[k];
            for (size_t i = 0; i < n; i++)
                acc[i] += wa * (float)a[i];
        }
        return;
    }
    }
}

/* Horizontal pass, 3 channels: each pixel is summed as one 4-float vector (the 4th lane
 * reads the next pixel's first value and is thrown away; acc has one float of slack), then
 * converted and written as 4 bytes, the 4th overwritten by the next pixel. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint8_t v16b __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) v4f hsum3(const float *p, const v4f *w,
                                                        const int ks)
{
    v4f s = load4(p) * w[0];
    for (int k = 1; k < ks; k++)
        s += load4(p + 3 * k) * w[k];
    return s;
}

static inline __attribute__((always_inline)) void
hpass3_k(uint8_t *restrict dst, const float *restrict acc, const resize_axis *ax, const int ks)
{
    const int out = ax->out;
    const v4f *w = (const v4f *)ax->w4;
    const int *start = ax->start;
    int x = 0;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; x + 1 < out; x++, w += ks) {
        v4f s = hsum3(acc + (size_t)start[x] * 3, w, ks) + 0.5f;
        v4i iv = __builtin_convertvector(s, v4i); /* in [0, 255]: weights are convex */
        /* the low byte of each 32-bit lane, packed into the first 4 bytes */
#if defined(__clang__)
        v16b b = __builtin_shufflevector((v16b)iv, (v16b)iv, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8,
                                         12, 0, 4, 8, 12);
#else
        const v16b pick = {0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12};
        v16b b = __builtin_shuffle((v16b)iv, pick);
#endif
        uint32_t word = (uint32_t)((v4i)b)[0];
        memcpy(dst + 3 * (size_t)x, &word, 4);
    }
#endif
    for (; x + 1 < out; x++, w += ks) {
        v4f s = hsum3(acc + (size_t)start[x] * 3, w, ks);
        for (int c = 0; c < 3; c++)
            dst[3 * (size_t)x + c] = round_u8(s[c]);
    }
    v4f s = hsum3(acc + (size_t)start[x] * 3, w, ks);
    for (int c = 0; c < 3; c++)
        dst[3 * (size_t)x + c] = round_u8(s[c]);
}

RESIZE_CLONES static void hpass_3(uint8_t *dst, const float *acc, const resize_axis *ax)
{
    switch (ax->ksize) {
    case 1: hpass3_k(dst, acc, ax, 1); break;
    case 2: hpass3_k(dst, acc, ax, 2); break;
    case 3: hpass3_k(dst, acc, ax, 3); break;
    case 4: hpass3_k(dst, acc, ax, 4); break;
    case 5: hpass3_k(dst, acc, ax, 5); break;
    case 6: hpass3_k(dst, acc, ax, 6); break;
    default: hpass3_k(dst, acc, ax, ax->ksize); break;
    }
}

static inline __attribute__((always_inline)) void
hpass1_k(uint8_t *restrict dst, const float *restrict acc, const resize_axis *ax, const int ks)
{
    const float *w = ax->w;
    for (int x = 0; x < ax->out; x++, w += ks) {
        const float *p = acc + ax->start[x];
        float s = 0.0f;
        for (int k = 0; k < ks; k++)
            s += w[k] * p[k];
        dst[x] = round_u8(s);
    }
}

static void hpass_1(uint8_t *dst, const float *acc, const resize_axis *ax)
{
    switch (ax->ksize) {
    case 1: hpass1_k(dst, acc, ax, 1); break;
    case 2: hpass1_k(dst, acc, ax, 2); break;
    case 3: hpass1_k(dst, acc, ax, 3); break;
    case 4: hpass1_k(dst, acc, ax, 4); break;
    case 5: hpass1_k(dst, acc, ax, 5); break;
    default: hpass1_k(dst, acc, ax, ax->ksize); break;
    }
}

static void hpass_n(uint8_t *dst, const float *acc, const resize_axis *ax, int C)
{
    for (int x = 0; x < ax->out; x++) {
        const float *w = ax->w + (size_t)x * ax->ksize;
        const float *p = acc + (size_t)ax->start[x] * C;
        for (int c = 0; c < C; c++) {
            float s = 0.0f;
            for (int k = 0; k < ax->ksize; k++)
                s += w[k] * p[k * C + c];
            dst[x * C + c] = round_u8(s);
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
    const resize_axis *ay = cache_axis(c, sh, dh, NULL);
    const resize_axis *ax = ay ? cache_axis(c, sw, dw, ay) : NULL;
    if (!ay || !ax)
        return rb_fail(err, NULL, "out of memory for resize weights (%dx%d -> %dx%d)", sh, sw,
                       dh, dw);
    size_t n = (size_t)sw * C;
    if (c->row_cap < n + 1) {
        free(c->row);
        c->row = malloc((n + 1) * sizeof(float));
        c->row_cap = c->row ? n + 1 : 0;
        if (!c->row)
            return rb_fail(err, NULL, "out of memory for a resize row");
    }
    float *acc = c->row;
    acc[n] = 0.0f;
    for (int y = 0; y < dh; y++) {
        const float *wy = ay->w + (size_t)y * ay->ksize + (ay->first[y] - ay->start[y]);
        vpass(acc, src, sstride, ay->first[y], wy, ay->count[y], n);
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
