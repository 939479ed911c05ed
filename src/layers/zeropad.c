/* ZeroPadding2D, float32 NHWC: out (n, ho, wo, c) = in (n, h, w, c) framed by zeros,
 * ho = top + h + bottom, wo = left + w + right. Keras' MobileNetV2 pads ((0,1),(0,1))
 * before each stride-2 'valid' convolution. */
#include "layers.h"

#include <string.h>

void pad_shape_init(pad_shape *s, int n, int h, int w, int c, int top, int bottom, int left,
                    int right)
{
    s->n = n, s->h = h, s->w = w, s->c = c;
    s->top = top, s->bottom = bottom, s->left = left, s->right = right;
    s->ho = top + h + bottom;
    s->wo = left + w + right;
}

/* out: (n,ho,wo,c)  in: (n,h,w,c) */
void zeropad_forward(float *out, const float *in, const pad_shape *s)
{
    const int64_t orow = (int64_t)s->wo * s->c, irow = (int64_t)s->w * s->c;
    for (int img = 0; img < s->n; img++) {
        float *o = out + (int64_t)img * s->ho * orow;
        const float *i = in + (int64_t)img * s->h * irow;
        memset(o, 0, sizeof(float) * s->top * orow);
        for (int y = 0; y < s->h; y++) {
            float *r = o + (int64_t)(s->top + y) * orow;
            memset(r, 0, sizeof(float) * s->left * s->c);
            memcpy(r + (int64_t)s->left * s->c, i + (int64_t)y * irow, sizeof(float) * irow);
            memset(r + (int64_t)s->left * s->c + irow, 0, sizeof(float) * s->right * s->c);
        }
        memset(o + (int64_t)(s->top + s->h) * orow, 0, sizeof(float) * s->bottom * orow);
    }
}

/* din: (n,h,w,c) += the interior of dout: (n,ho,wo,c) */
void zeropad_backward(float *din, const float *dout, const pad_shape *s)
{
    const int64_t orow = (int64_t)s->wo * s->c, irow = (int64_t)s->w * s->c;
    for (int img = 0; img < s->n; img++)
        for (int y = 0; y < s->h; y++) {
            float *restrict d = din + ((int64_t)img * s->h + y) * irow;
            const float *restrict g =
                dout + ((int64_t)img * s->ho + s->top + y) * orow + (int64_t)s->left * s->c;
            for (int64_t j = 0; j < irow; j++)
                d[j] += g[j];
        }
}
