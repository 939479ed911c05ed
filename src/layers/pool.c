/* MaxPooling2D, AveragePooling2D and GlobalAveragePooling2D, float32 NHWC, with the window
 * geometry of conv2d_shape (kh, kw, strides, Keras 'same'/'valid' padding; cout == cin).
 * Padding cells never take part: max pooling ignores them (TensorFlow pads with -inf) and
 * average pooling divides by the number of valid cells in the window (TensorFlow's 'same'
 * AvgPool), not by kh*kw. Loops run over channels innermost (contiguous in NHWC). */
#include "layers.h"
#include "layers_internal.h"

static inline void win_range(int i0, int k, int n, int *k0, int *k1)
{
    *k0 = i0 < 0 ? -i0 : 0;
    *k1 = n - i0 < k ? n - i0 : k;
}

/* o, am: (C) for one output pixel; img: (H, W, C) image; the window's valid taps start at
 * element offset `first` with rows `row_stride` apart. The first maximum in scan order
 * (ky, then kx) wins ties, like TensorFlow's MaxPoolGrad, which sends the whole gradient
 * there. argmax is the element offset within the image: ((iy*W + ix)*C + c). */
RB_HOT static void maxpool_pixel(float *restrict o, int32_t *restrict am,
                                 const float *restrict img, int64_t first, int C,
                                 int64_t row_stride, int ny, int nx)
{
    for (int c = 0; c < C; c++) {
        o[c] = img[first + c];
        am[c] = (int32_t)(first + c);
    }
    for (int ky = 0; ky < ny; ky++)
        for (int kx = 0; kx < nx; kx++) {
            if (ky == 0 && kx == 0)
                continue;
            int64_t off = first + ky * row_stride + (int64_t)kx * C;
            const float *p = img + off;
            for (int c = 0; c < C; c++) {
                int better = p[c] > o[c];
                o[c] = better ? p[c] : o[c];
                am[c] = better ? (int32_t)(off + c) : am[c];
            }
        }
}

/* out: (n,ho,wo,c)  argmax: (n,ho,wo,c) int32 offsets into the sample's (h,w,c) input
 * (for backward)  in: (n,h,w,c) */
void maxpool_forward(float *out, int32_t *argmax, const float *in, const conv2d_shape *s)
{
    const int C = s->cin;
    const int64_t row_stride = (int64_t)s->w * C, img_size = (int64_t)s->h * row_stride;
    for (int img = 0; img < s->n; img++)
        for (int oy = 0; oy < s->ho; oy++) {
            int iy0 = oy * s->sh - s->pad_top, ky0, ky1;
            win_range(iy0, s->kh, s->h, &ky0, &ky1);
            for (int ox = 0; ox < s->wo; ox++) {
                int ix0 = ox * s->sw - s->pad_left, kx0, kx1;
                win_range(ix0, s->kw, s->w, &kx0, &kx1);
                int64_t o = (((int64_t)img * s->ho + oy) * s->wo + ox) * C;
                maxpool_pixel(out + o, argmax + o, in + img * img_size,
                              (int64_t)(iy0 + ky0) * row_stride + (int64_t)(ix0 + kx0) * C, C,
                              row_stride, ky1 - ky0, kx1 - kx0);
            }
        }
}

/* din: (n,h,w,c) +=  dout, argmax: (n,ho,wo,c) */
void maxpool_backward(float *din, const float *dout, const int32_t *argmax, const conv2d_shape *s)
{
    const int64_t per_out = (int64_t)s->ho * s->wo * s->cin;
    const int64_t img_size = (int64_t)s->h * s->w * s->cin;
    for (int img = 0; img < s->n; img++) {
        float *d = din + img * img_size;
        const float *g = dout + img * per_out;
        const int32_t *am = argmax + img * per_out;
        for (int64_t i = 0; i < per_out; i++)
            d[am[i]] += g[i];
    }
}

/* out: (n,ho,wo,c) = mean of the valid cells of each window  in: (n,h,w,c) */
void avgpool_forward(float *out, const float *in, const conv2d_shape *s)
{
    const int C = s->cin;
    const int64_t row_stride = (int64_t)s->w * C, img_size = (int64_t)s->h * row_stride;
    for (int img = 0; img < s->n; img++)
        for (int oy = 0; oy < s->ho; oy++) {
            int iy0 = oy * s->sh - s->pad_top, ky0, ky1;
            win_range(iy0, s->kh, s->h, &ky0, &ky1);
            for (int ox = 0; ox < s->wo; ox++) {
                int ix0 = ox * s->sw - s->pad_left, kx0, kx1;
                win_range(ix0, s->kw, s->w, &kx0, &kx1);
                float *restrict o = out + (((int64_t)img * s->ho + oy) * s->wo + ox) * C;
                const float *base = in + img * img_size;
                for (int c = 0; c < C; c++)
                    o[c] = 0.0f;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const float *restrict p =
                            base + (int64_t)(iy0 + ky) * row_stride + (int64_t)(ix0 + kx) * C;
                        for (int c = 0; c < C; c++)
                            o[c] += p[c];
                    }
                float cnt = (float)((ky1 - ky0) * (kx1 - kx0));
                for (int c = 0; c < C; c++)
                    o[c] /= cnt;
            }
        }
}

/* din: (n,h,w,c) += dout/count spread over each window's valid cells  dout: (n,ho,wo,c) */
void avgpool_backward(float *din, const float *dout, const conv2d_shape *s)
{
    const int C = s->cin;
    const int64_t row_stride = (int64_t)s->w * C, img_size = (int64_t)s->h * row_stride;
    for (int img = 0; img < s->n; img++)
        for (int oy = 0; oy < s->ho; oy++) {
            int iy0 = oy * s->sh - s->pad_top, ky0, ky1;
            win_range(iy0, s->kh, s->h, &ky0, &ky1);
            for (int ox = 0; ox < s->wo; ox++) {
                int ix0 = ox * s->sw - s->pad_left, kx0, kx1;
                win_range(ix0, s->kw, s->w, &kx0, &kx1);
                const float *restrict g = dout + (((int64_t)img * s->ho + oy) * s->wo + ox) * C;
                float inv = 1.0f / (float)((ky1 - ky0) * (kx1 - kx0));
                float *base = din + img * img_size;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        float *restrict d =
                            base + (int64_t)(iy0 + ky) * row_stride + (int64_t)(ix0 + kx) * C;
                        for (int c = 0; c < C; c++)
                            d[c] += g[c] * inv;
                    }
            }
        }
}

/* out: (n,c) = mean over the hw pixels  in: (n,hw,c) */
void gap_forward(float *out, const float *in, int n, int hw, int c)
{
    for (int img = 0; img < n; img++) {
        float *restrict o = out + (int64_t)img * c;
        const float *x = in + (int64_t)img * hw * c;
        for (int j = 0; j < c; j++)
            o[j] = 0.0f;
        for (int p = 0; p < hw; p++) {
            const float *restrict xp = x + (int64_t)p * c;
            for (int j = 0; j < c; j++)
                o[j] += xp[j];
        }
        for (int j = 0; j < c; j++)
            o[j] /= (float)hw;
    }
}

/* din: (n,hw,c) += dout/hw  dout: (n,c) */
void gap_backward(float *din, const float *dout, int n, int hw, int c)
{
    const float inv = 1.0f / (float)hw;
    for (int img = 0; img < n; img++) {
        const float *restrict g = dout + (int64_t)img * c;
        for (int p = 0; p < hw; p++) {
            float *restrict d = din + ((int64_t)img * hw + p) * c;
            for (int j = 0; j < c; j++)
                d[j] += g[j] * inv;
        }
    }
}
