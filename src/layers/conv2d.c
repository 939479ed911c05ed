/* Conv2D, float32 NHWC, Keras HWIO kernels, as GEMMs on OpenBLAS.
 *
 * A convolution is out (M, cout) = col (M, K) @ w (K, cout) with M = n*ho*wo output pixels
 * and K = kh*kw*cin; the kernel in HWIO order is already that (K, cout) row-major matrix,
 * and a row of col ("im2col") lists the window of one output pixel in (ky, kx, ci) order.
 *  - 1x1 stride 1: the NHWC input IS col (no padding is possible), so one sgemm, no copy.
 *  - otherwise col is built in blocks of about CONV2D_BLOCK_FLOATS in the scratch buffer
 *    (one block stays in L2/L3 between being written and being packed by sgemm, and the
 *    scratch stays small: the seed-001 CNN's second conv would need 190 MB unblocked).
 *  - Every product covers rows of one image only, in blocks fixed by the image's shape
 *    (layers.h, "Per-image results"), so forward and din of an image never depend on the
 *    other images of the batch; dw sums over all of them.
 * Backward per block: dw += col^T @ dout_blk; then the same buffer receives
 * dcol = dout_blk @ w^T, which col2im adds into din. So one buffer serves both passes.
 * 3x3 stride-1 convolutions with enough channels run forward, din and dw with Winograd
 * F(2x2,3x3) instead (conv2d_winograd.c). */
#include "layers.h"
#include "layers_internal.h"

#include <cblas.h>
#include <string.h>

/* Target size of one im2col block in floats (256 Ki floats = 1 MiB, about one L2): measured
 * with bench/kernels.c at 1 thread, blocks of 0.25 and 1 MiB run within 2 % of each other;
 * 4 MiB blocks are 3-15 % slower and 16 MiB blocks up to 35 % slower (the seed-001 CNN's
 * 74x74x32 -> 64 conv: 87 vs 57 GFLOP/s), as the block no longer stays in cache between
 * being written and being packed by sgemm. Override with -DCONV2D_BLOCK_FLOATS=... */
#ifndef CONV2D_BLOCK_FLOATS
#define CONV2D_BLOCK_FLOATS (1 << 18)
#endif
#define CONV2D_MIN_BLOCK_ROWS 256
#define CONV2D_DWT_MAX 16384 /* floats of the transposed weight gradient kept on the stack */

int conv2d_shape_init(conv2d_shape *s, int n, int h, int w, int cin, int kh, int kw, int sh,
                      int sw, padding_mode pad, int cout)
{
    memset(s, 0, sizeof *s);
    if (n <= 0 || h <= 0 || w <= 0 || cin <= 0 || kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 ||
        cout <= 0)
        return -1;
    s->n = n, s->h = h, s->w = w, s->cin = cin;
    s->kh = kh, s->kw = kw, s->sh = sh, s->sw = sw, s->cout = cout;
    if (pad == PADDING_SAME) {
        /* TensorFlow's rule: output ceil(size/stride); the padding total needed for that,
         * the odd pixel going to the bottom/right. */
        s->ho = (h + sh - 1) / sh;
        s->wo = (w + sw - 1) / sw;
        int th = (s->ho - 1) * sh + kh - h, tw = (s->wo - 1) * sw + kw - w;
        th = th > 0 ? th : 0;
        tw = tw > 0 ? tw : 0;
        s->pad_top = th / 2, s->pad_bottom = th - th / 2;
        s->pad_left = tw / 2, s->pad_right = tw - tw / 2;
    } else {
        s->ho = h >= kh ? (h - kh) / sh + 1 : 0;
        s->wo = w >= kw ? (w - kw) / sw + 1 : 0;
    }
    return s->ho > 0 && s->wo > 0 ? 0 : -1;
}

static int conv2d_is_direct(const conv2d_shape *s)
{
    return s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->pad_top == 0 &&
           s->pad_left == 0 && s->pad_bottom == 0 && s->pad_right == 0;
}

/* rows of col per block: blocks never span two images (layers.h, "Per-image results") */
static int64_t conv2d_block_rows(const conv2d_shape *s)
{
    int64_t k = (int64_t)s->kh * s->kw * s->cin;
    int64_t rows = CONV2D_BLOCK_FLOATS / k;
    if (rows < CONV2D_MIN_BLOCK_ROWS)
        rows = CONV2D_MIN_BLOCK_ROWS;
    return rb_image_block_rows((int64_t)s->ho * s->wo, rows);
}

size_t conv2d_scratch_floats(const conv2d_shape *s)
{
    if (conv2d_is_direct(s))
        return 0;
    if (conv2d_winograd_applies(s))
        return conv2d_winograd_scratch_floats(s);
    return (size_t)conv2d_block_rows(s) * (size_t)s->kh * s->kw * s->cin;
}

/* col: (r1-r0, kh*kw*cin) = the windows of output pixels r0..r1-1 (flat over n, ho, wo);
 * in: (n,h,w,cin). Padding cells are zeros. Along kx the window of one input row is
 * kw*cin contiguous floats, so each (pixel, ky) is one memcpy plus zeroed edges. */
static void im2col_rows(float *restrict col, const float *restrict in, const conv2d_shape *s,
                        int64_t r0, int64_t r1)
{
    const int C = s->cin, KW = s->kw;
    const int64_t K = (int64_t)s->kh * KW * C, hw_o = (int64_t)s->ho * s->wo;
    for (int64_t r = r0; r < r1; r++) {
        int64_t img = r / hw_o, rem = r - img * hw_o;
        int oy = (int)(rem / s->wo), ox = (int)(rem - (int64_t)oy * s->wo);
        int iy0 = oy * s->sh - s->pad_top, ix0 = ox * s->sw - s->pad_left;
        int kx0 = ix0 < 0 ? -ix0 : 0;                               /* first valid kx */
        int kx1 = s->w - ix0 < KW ? s->w - ix0 : KW;                /* end of valid kx */
        float *dst = col + (r - r0) * K;
        const float *src_img = in + img * (int64_t)s->h * s->w * C;
        for (int ky = 0; ky < s->kh; ky++, dst += (int64_t)KW * C) {
            int iy = iy0 + ky;
            if (iy < 0 || iy >= s->h || kx1 <= kx0) {
                memset(dst, 0, sizeof(float) * KW * C);
                continue;
            }
            if (kx0 > 0)
                memset(dst, 0, sizeof(float) * kx0 * C);
            memcpy(dst + (int64_t)kx0 * C, src_img + ((int64_t)iy * s->w + ix0 + kx0) * C,
                   sizeof(float) * (kx1 - kx0) * C);
            if (kx1 < KW)
                memset(dst + (int64_t)kx1 * C, 0, sizeof(float) * (KW - kx1) * C);
        }
    }
}

/* din += the windows in dcol: the adjoint of im2col_rows (padding cells dropped).
 * din: (n,h,w,cin)  dcol: (r1-r0, kh*kw*cin) */
static void col2im_rows_add(float *restrict din, const float *restrict dcol,
                            const conv2d_shape *s, int64_t r0, int64_t r1)
{
    const int C = s->cin, KW = s->kw;
    const int64_t K = (int64_t)s->kh * KW * C, hw_o = (int64_t)s->ho * s->wo;
    for (int64_t r = r0; r < r1; r++) {
        int64_t img = r / hw_o, rem = r - img * hw_o;
        int oy = (int)(rem / s->wo), ox = (int)(rem - (int64_t)oy * s->wo);
        int iy0 = oy * s->sh - s->pad_top, ix0 = ox * s->sw - s->pad_left;
        int kx0 = ix0 < 0 ? -ix0 : 0;
        int kx1 = s->w - ix0 < KW ? s->w - ix0 : KW;
        if (kx1 <= kx0)
            continue;
        const float *src = dcol + (r - r0) * K;
        float *dst_img = din + img * (int64_t)s->h * s->w * C;
        int64_t len = (int64_t)(kx1 - kx0) * C;
        for (int ky = 0; ky < s->kh; ky++, src += (int64_t)KW * C) {
            int iy = iy0 + ky;
            if (iy < 0 || iy >= s->h)
                continue;
            float *d = dst_img + ((int64_t)iy * s->w + ix0 + kx0) * C;
            const float *g = src + (int64_t)kx0 * C;
            for (int64_t j = 0; j < len; j++)
                d[j] += g[j];
        }
    }
}

void conv2d_forward(float *out, const float *in, const float *w, const float *b,
                    const conv2d_shape *s, float *scratch)
{
    const int64_t hw = (int64_t)s->ho * s->wo, m = s->n * hw;
    const int K = s->kh * s->kw * s->cin, N = s->cout;
    const float beta = b ? 1.0f : 0.0f;
    if (conv2d_winograd_applies(s)) {
        conv2d_winograd_forward(out, in, w, b, s, scratch);
        return;
    }
    if (b)
        rb_fill_rows(out, b, m, N);
    if (conv2d_is_direct(s)) {
        for (int img = 0; img < s->n; img++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)hw, N, K, 1.0f,
                        in + img * hw * K, K, w, N, beta, out + img * hw * N, N);
        return;
    }
    const int64_t rows = conv2d_block_rows(s);
    for (int64_t base = 0; base < m; base += hw)
        for (int64_t r0 = base; r0 < base + hw; r0 += rows) {
            int64_t r1 = r0 + rows < base + hw ? r0 + rows : base + hw;
            im2col_rows(scratch, in, s, r0, r1);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), N, K, 1.0f,
                        scratch, K, w, N, beta, out + r0 * N, N);
        }
}

void conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, const conv2d_shape *s, float *scratch)
{
    const int64_t hw = (int64_t)s->ho * s->wo, m = s->n * hw;
    const int K = s->kh * s->kw * s->cin, N = s->cout;
    if (db)
        rb_bias_grad(db, dout, m, N);
    if (!din && !dw)
        return;
    if (conv2d_is_direct(s)) {
        /* dw (cin, cout) += in^T (cin, m) @ dout (m, cout); din (m, cin) += dout @ w^T */
        if (dw && N < K && K * N <= CONV2D_DWT_MAX) {
            /* Projection layers (cout < cin): OpenBLAS (0.3.21, Cooperlake kernels) runs
             * this long-inner-dimension product 15-18 % faster as dw^T = dout^T @ in, e.g.
             * 56x56x144->24: 49 vs 42 GFLOP/s; the other way round it is 13 % slower.
             * The small transpose goes through the stack. */
            float dwt[CONV2D_DWT_MAX];
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, (int)m, 1.0f, dout, N,
                        in, K, 0.0f, dwt, K);
            for (int k = 0; k < K; k++)
                for (int j = 0; j < N; j++)
                    dw[(int64_t)k * N + j] += dwt[(int64_t)j * K + k];
        } else if (dw) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, (int)m, 1.0f, in, K,
                        dout, N, 1.0f, dw, N);
        }
        if (din)
            for (int img = 0; img < s->n; img++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)hw, K, N, 1.0f,
                            dout + img * hw * N, N, w, N, 1.0f, din + img * hw * K, K);
        return;
    }
    if (conv2d_winograd_applies(s)) {
        if (din)
            conv2d_winograd_backward_din(din, dout, w, s, scratch);
        if (dw)
            conv2d_winograd_backward_dw(dw, dout, in, s, scratch);
        return;
    }
    const int64_t rows = conv2d_block_rows(s);
    for (int64_t r0 = 0, r1; r0 < m; r0 = r1) {
        /* blocks restart at every image (its last block may be short) */
        int64_t img_end = (r0 / hw + 1) * hw;
        r1 = r0 + rows < img_end ? r0 + rows : img_end;
        const int mb = (int)(r1 - r0);
        const float *dout_blk = dout + r0 * N;
        if (dw) {
            im2col_rows(scratch, in, s, r0, r1);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, mb, 1.0f, scratch, K,
                        dout_blk, N, 1.0f, dw, N);
        }
        if (din) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mb, K, N, 1.0f, dout_blk, N,
                        w, N, 0.0f, scratch, K);
            col2im_rows_add(din, scratch, s, r0, r1);
        }
    }
}
