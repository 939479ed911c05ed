/* DepthwiseConv2D (depth multiplier 1), float32 NHWC, Keras kernel (kh, kw, c, 1).
 *
 * Direct loops: in NHWC the channels of one pixel are contiguous and every channel has its
 * own filter, so the innermost loop runs over c and vectorizes without shuffles. Output
 * pixels whose whole window lies inside the input (the interior) take an unrolled 3x3 path
 * with no bounds checks; border pixels and other kernel sizes take a generic path that
 * clips the window. Single-threaded (see layers.h). */
#include "layers.h"
#include "layers_internal.h"

/* valid tap range [k0, k1) of a window starting at input coordinate i0 in an axis of size n */
static inline void tap_range(int i0, int k, int n, int *k0, int *k1)
{
    *k0 = i0 < 0 ? -i0 : 0;
    *k1 = n - i0 < k ? n - i0 : k;
}

/* One output row segment of the interior, 3x3 kernel:
 * o: (nx, C) output pixels; r0, r1, r2: the three input rows at the first pixel's window
 * origin (pixel x reads r?[x*step + kx*C + c]); w: (3,3,C); b: (C) or NULL.
 * The bias test is hoisted out of the loops by hand (a branch inside stops vectorization). */
static inline __attribute__((always_inline)) void
dw3x3_fwd_row_impl(float *restrict o, const float *restrict r0, const float *restrict r1,
                   const float *restrict r2, const float *restrict w, const float *restrict b,
                   int C, int nx, int step, int has_bias)
{
    const float *restrict w0 = w, *restrict w1 = w + C, *restrict w2 = w + 2 * C;
    const float *restrict w3 = w + 3 * C, *restrict w4 = w + 4 * C, *restrict w5 = w + 5 * C;
    const float *restrict w6 = w + 6 * C, *restrict w7 = w + 7 * C, *restrict w8 = w + 8 * C;
    for (int x = 0; x < nx; x++) {
        const int64_t off = (int64_t)x * step;
        const float *restrict a0 = r0 + off, *restrict a1 = a0 + C, *restrict a2 = a0 + 2 * C;
        const float *restrict p0 = r1 + off, *restrict p1 = p0 + C, *restrict p2 = p0 + 2 * C;
        const float *restrict q0 = r2 + off, *restrict q1 = q0 + C, *restrict q2 = q0 + 2 * C;
        float *restrict oo = o + (int64_t)x * C;
        for (int c = 0; c < C; c++) {
            /* three independent chains, one per kernel row: one chain of nine dependent
             * multiply-adds would be bound by their latency */
            float va = a0[c] * w0[c], vp = p0[c] * w3[c], vq = q0[c] * w6[c];
            va += a1[c] * w1[c];
            vp += p1[c] * w4[c];
            vq += q1[c] * w7[c];
            va += a2[c] * w2[c];
            vp += p2[c] * w5[c];
            vq += q2[c] * w8[c];
            float acc = va + vp + vq;
            oo[c] = has_bias ? acc + b[c] : acc;
        }
    }
}

RB_HOT static void dw3x3_fwd_row(float *restrict o, const float *restrict r0,
                                 const float *restrict r1, const float *restrict r2,
                                 const float *restrict w, const float *restrict b, int C,
                                 int nx, int step)
{
    if (b)
        dw3x3_fwd_row_impl(o, r0, r1, r2, w, b, C, nx, step, 1);
    else
        dw3x3_fwd_row_impl(o, r0, r1, r2, w, NULL, C, nx, step, 0);
}

/* generic pixel: o: (C) = b + sum over taps [ky0,ky1) x [kx0,kx1) of input * w
 * img: (H, W, C) the image; org: element offset of the window origin in img (negative or
 * past the row end at borders: only the valid taps are read) */
RB_HOT static void dw_fwd_pixel(float *restrict o, const float *img, int64_t org,
                                const float *restrict w, const float *restrict b, int C,
                                int kw, int64_t row_stride, int ky0, int ky1, int kx0, int kx1)
{
    for (int c = 0; c < C; c++)
        o[c] = b ? b[c] : 0.0f;
    for (int ky = ky0; ky < ky1; ky++)
        for (int kx = kx0; kx < kx1; kx++) {
            const float *restrict p = img + org + ky * row_stride + (int64_t)kx * C;
            const float *restrict wp = w + (int64_t)(ky * kw + kx) * C;
            for (int c = 0; c < C; c++)
                o[c] += p[c] * wp[c];
        }
}

void depthwise_forward(float *out, const float *in, const float *w, const float *b,
                       const conv2d_shape *s)
{
    const int C = s->cin, H = s->h, W = s->w;
    const int64_t row_stride = (int64_t)W * C;
    /* interior columns: ox with the whole window inside [0, W) */
    int ox_lo = (s->pad_left + s->sw - 1) / s->sw;
    int ox_hi = (W - s->kw + s->pad_left) / s->sw + 1; /* exclusive */
    if (W - s->kw + s->pad_left < 0)
        ox_hi = ox_lo;
    if (ox_hi > s->wo)
        ox_hi = s->wo;
    if (ox_hi < ox_lo)
        ox_hi = ox_lo;
    for (int img = 0; img < s->n; img++) {
        const float *in_img = in + (int64_t)img * H * row_stride;
        for (int oy = 0; oy < s->ho; oy++) {
            float *orow = out + ((int64_t)img * s->ho + oy) * s->wo * C;
            int iy0 = oy * s->sh - s->pad_top, ky0, ky1;
            tap_range(iy0, s->kh, H, &ky0, &ky1);
            int full_y = ky0 == 0 && ky1 == s->kh;
            const int64_t org_row = (int64_t)iy0 * row_stride;
            for (int ox = 0; ox < s->wo; ox++) {
                if (full_y && s->kh == 3 && s->kw == 3 && ox == ox_lo && ox_hi > ox_lo) {
                    const float *r0 =
                        in_img + org_row + (int64_t)(ox_lo * s->sw - s->pad_left) * C;
                    dw3x3_fwd_row(orow + (int64_t)ox_lo * C, r0, r0 + row_stride,
                                  r0 + 2 * row_stride, w, b, C, ox_hi - ox_lo, s->sw * C);
                    ox = ox_hi - 1;
                    continue;
                }
                int ix0 = ox * s->sw - s->pad_left, kx0, kx1;
                tap_range(ix0, s->kw, W, &kx0, &kx1);
                dw_fwd_pixel(orow + (int64_t)ox * C, in_img, org_row + (int64_t)ix0 * C, w, b,
                             C, s->kw, row_stride, ky0, ky1, kx0, kx1);
            }
        }
    }
}

/* e_k[c] += g[c] * a_k[c] for the 9 taps k (dw of one output pixel) */
static inline __attribute__((always_inline)) void
dw_taps9(float *restrict e0, float *restrict e1, float *restrict e2, float *restrict e3,
         float *restrict e4, float *restrict e5, float *restrict e6, float *restrict e7,
         float *restrict e8, const float *restrict g, const float *restrict a0,
         const float *restrict a1, const float *restrict a2, const float *restrict a3,
         const float *restrict a4, const float *restrict a5, const float *restrict a6,
         const float *restrict a7, const float *restrict a8, int C)
{
    for (int c = 0; c < C; c++) {
        float gc = g[c];
        e0[c] += gc * a0[c];
        e1[c] += gc * a1[c];
        e2[c] += gc * a2[c];
        e3[c] += gc * a3[c];
        e4[c] += gc * a4[c];
        e5[c] += gc * a5[c];
        e6[c] += gc * a6[c];
        e7[c] += gc * a7[c];
        e8[c] += gc * a8[c];
    }
}

/* Backward of one output row segment of the interior, 3x3:
 * d0, d1, d2: din rows at the first pixel's window origin (+=); g: (nx, C) dout;
 * r0, r1, r2: the input rows likewise; dw: (3,3,C) +=, either of din/dw may be NULL.
 * The taps go through dw_taps9 with one restrict pointer each: with a single pointer and
 * offsets k*C the compiler must assume taps overlap (C could be smaller than a vector). */
RB_HOT static void dw3x3_bwd_row(float *d0, float *d1, float *d2, float *dw,
                                 const float *g, const float *r0, const float *r1,
                                 const float *r2, const float *w, int C, int nx, int step)
{
    const int64_t C2 = 2 * (int64_t)C;
    for (int x = 0; x < nx; x++) {
        const float *gg = g + (int64_t)x * C;
        const int64_t off = (int64_t)x * step;
        if (dw) {
            const float *a = r0 + off, *p = r1 + off, *q = r2 + off;
            dw_taps9(dw, dw + C, dw + C2, dw + 3 * C, dw + 4 * C, dw + 5 * C, dw + 6 * C,
                     dw + 7 * C, dw + 8 * C, gg, a, a + C, a + C2, p, p + C, p + C2, q, q + C,
                     q + C2, C);
        }
        if (d0) {
            float *a = d0 + off, *p = d1 + off, *q = d2 + off;
            /* din taps += g * w taps: the same pattern with the roles of a and e swapped */
            dw_taps9(a, a + C, a + C2, p, p + C, p + C2, q, q + C, q + C2, gg, w, w + C, w + C2,
                     w + 3 * C, w + 4 * C, w + 5 * C, w + 6 * C, w + 7 * C, w + 8 * C, C);
        }
    }
}

/* generic pixel backward: g: (C) dout of the pixel; img/dimg: (H, W, C) input and din
 * (dimg may be NULL); org: offset of the window origin as in dw_fwd_pixel; only the valid
 * taps [ky0,ky1) x [kx0,kx1) are touched. */
RB_HOT static void dw_bwd_pixel(float *dimg, float *restrict dw, const float *restrict g,
                                const float *img, int64_t org, const float *restrict w, int C,
                                int kw, int64_t row_stride, int ky0, int ky1, int kx0, int kx1)
{
    for (int ky = ky0; ky < ky1; ky++)
        for (int kx = kx0; kx < kx1; kx++) {
            int64_t off = org + ky * row_stride + (int64_t)kx * C;
            int64_t t = (int64_t)(ky * kw + kx) * C;
            if (dw) {
                const float *restrict p = img + off;
                float *restrict dwt = dw + t;
                for (int c = 0; c < C; c++)
                    dwt[c] += g[c] * p[c];
            }
            if (dimg) {
                float *restrict d = dimg + off;
                const float *restrict wt = w + t;
                for (int c = 0; c < C; c++)
                    d[c] += g[c] * wt[c];
            }
        }
}

void depthwise_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                        const float *w, const conv2d_shape *s)
{
    const int C = s->cin, H = s->h, W = s->w;
    const int64_t row_stride = (int64_t)W * C;
    if (db)
        rb_bias_grad(db, dout, (int64_t)s->n * s->ho * s->wo, C);
    if (!din && !dw)
        return;
    int ox_lo = (s->pad_left + s->sw - 1) / s->sw;
    int ox_hi = (W - s->kw + s->pad_left) / s->sw + 1;
    if (W - s->kw + s->pad_left < 0)
        ox_hi = ox_lo;
    if (ox_hi > s->wo)
        ox_hi = s->wo;
    if (ox_hi < ox_lo)
        ox_hi = ox_lo;
    for (int img = 0; img < s->n; img++) {
        const float *in_img = in + (int64_t)img * H * row_stride;
        float *din_img = din ? din + (int64_t)img * H * row_stride : NULL;
        for (int oy = 0; oy < s->ho; oy++) {
            const float *grow = dout + ((int64_t)img * s->ho + oy) * s->wo * C;
            int iy0 = oy * s->sh - s->pad_top, ky0, ky1;
            tap_range(iy0, s->kh, H, &ky0, &ky1);
            int full_y = ky0 == 0 && ky1 == s->kh;
            const int64_t org_row = (int64_t)iy0 * row_stride;
            for (int ox = 0; ox < s->wo; ox++) {
                if (full_y && s->kh == 3 && s->kw == 3 && ox == ox_lo && ox_hi > ox_lo) {
                    int64_t o0 = org_row + (int64_t)(ox_lo * s->sw - s->pad_left) * C;
                    const float *r0 = in_img + o0;
                    float *d0 = din_img ? din_img + o0 : NULL;
                    dw3x3_bwd_row(d0, d0 ? d0 + row_stride : NULL,
                                  d0 ? d0 + 2 * row_stride : NULL, dw,
                                  grow + (int64_t)ox_lo * C, r0, r0 + row_stride,
                                  r0 + 2 * row_stride, w, C, ox_hi - ox_lo, s->sw * C);
                    ox = ox_hi - 1;
                    continue;
                }
                int ix0 = ox * s->sw - s->pad_left, kx0, kx1;
                tap_range(ix0, s->kw, W, &kx0, &kx1);
                dw_bwd_pixel(din_img, dw, grow + (int64_t)ox * C, in_img,
                             org_row + (int64_t)ix0 * C, w, C, s->kw, row_stride, ky0, ky1,
                             kx0, kx1);
            }
        }
    }
}
