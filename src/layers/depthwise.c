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
 * origin (pixel x reads r?[x*step + kx*C + c]); w: (3,3,C); b: (C) or NULL. */
RB_HOT static void dw3x3_fwd_row(float *restrict o, const float *restrict r0,
                                 const float *restrict r1, const float *restrict r2,
                                 const float *restrict w, const float *restrict b, int C,
                                 int nx, int step)
{
    const float *w0 = w, *w1 = w + C, *w2 = w + 2 * C, *w3 = w + 3 * C, *w4 = w + 4 * C,
                *w5 = w + 5 * C, *w6 = w + 6 * C, *w7 = w + 7 * C, *w8 = w + 8 * C;
    for (int x = 0; x < nx; x++) {
        const float *a = r0 + (int64_t)x * step, *p = r1 + (int64_t)x * step,
                    *q = r2 + (int64_t)x * step;
        float *oo = o + (int64_t)x * C;
        for (int c = 0; c < C; c++) {
            float acc = a[c] * w0[c];
            acc += a[c + C] * w1[c];
            acc += a[c + 2 * C] * w2[c];
            acc += p[c] * w3[c];
            acc += p[c + C] * w4[c];
            acc += p[c + 2 * C] * w5[c];
            acc += q[c] * w6[c];
            acc += q[c + C] * w7[c];
            acc += q[c + 2 * C] * w8[c];
            oo[c] = b ? acc + b[c] : acc;
        }
    }
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

/* Backward of one output row segment of the interior, 3x3:
 * d0, d1, d2: din rows at the first pixel's window origin (+=); g: (nx, C) dout;
 * r0, r1, r2: the input rows likewise; dw: (3,3,C) +=, either of din/dw may be NULL. */
RB_HOT static void dw3x3_bwd_row(float *restrict d0, float *restrict d1, float *restrict d2,
                                 float *restrict dw, const float *restrict g,
                                 const float *restrict r0, const float *restrict r1,
                                 const float *restrict r2, const float *restrict w, int C,
                                 int nx, int step)
{
    for (int x = 0; x < nx; x++) {
        const float *gg = g + (int64_t)x * C;
        int64_t off = (int64_t)x * step;
        if (dw) {
            const float *a = r0 + off, *p = r1 + off, *q = r2 + off;
            for (int c = 0; c < C; c++) {
                float gc = gg[c];
                dw[c] += gc * a[c];
                dw[C + c] += gc * a[C + c];
                dw[2 * C + c] += gc * a[2 * C + c];
                dw[3 * C + c] += gc * p[c];
                dw[4 * C + c] += gc * p[C + c];
                dw[5 * C + c] += gc * p[2 * C + c];
                dw[6 * C + c] += gc * q[c];
                dw[7 * C + c] += gc * q[C + c];
                dw[8 * C + c] += gc * q[2 * C + c];
            }
        }
        if (d0) {
            float *a = d0 + off, *p = d1 + off, *q = d2 + off;
            for (int c = 0; c < C; c++) {
                float gc = gg[c];
                a[c] += gc * w[c];
                a[C + c] += gc * w[C + c];
                a[2 * C + c] += gc * w[2 * C + c];
                p[c] += gc * w[3 * C + c];
                p[C + c] += gc * w[4 * C + c];
                p[2 * C + c] += gc * w[5 * C + c];
                q[c] += gc * w[6 * C + c];
                q[C + c] += gc * w[7 * C + c];
                q[2 * C + c] += gc * w[8 * C + c];
            }
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
