/* Fused inference kernels the model executor uses where BatchNormalization is folded into
 * the preceding convolution (frozen layers, inference): one pass per layer instead of
 * three, ZeroPadding2D absorbed into the depthwise window, and 1x1 convolutions as GEMM in
 * row blocks whose bias + ReLU6 epilogue runs while the block is in cache.
 *
 * Compiled for AVX-512, AVX2 and baseline x86-64 and picked at run time (the project
 * builds for x86-64-v2 by default). */
#include <cblas.h>
#include <string.h>

#include "model.h"
#include "model_fused.h"

#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/* ---- bias + activation epilogue -------------------------------------------------------- */

CLONES void rb_fused_bias_act(float *restrict x, const float *restrict b, int64_t rows, int c,
                              int act)
{
    for (int64_t r = 0; r < rows; r++) {
        float *restrict xr = x + r * c;
        if (act == RB_ACT_RELU6) {
            for (int j = 0; j < c; j++) {
                float v = xr[j] + b[j];
                v = v > 0.0f ? v : 0.0f;
                xr[j] = v < 6.0f ? v : 6.0f;
            }
        } else if (act == RB_ACT_RELU) {
            for (int j = 0; j < c; j++) {
                float v = xr[j] + b[j];
                xr[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int j = 0; j < c; j++)
                xr[j] += b[j];
        }
    }
}

/* ---- 1x1 convolution: out (rows, N) = act(in (rows, K) @ w (K, N) + b) ---------------- */

void rb_fused_conv1x1(float *out, const float *in, const float *w, const float *b, int64_t rows,
                      int K, int N, int act)
{
    /* blocks of ~256 KB of output: GEMM, then the epilogue on cache-hot rows */
    int64_t blk = (256 * 1024 / 4) / (N > 0 ? N : 1);
    blk = blk < 64 ? 64 : blk;
    for (int64_t r0 = 0; r0 < rows; r0 += blk) {
        int64_t r1 = r0 + blk < rows ? r0 + blk : rows;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), N, K, 1.0f,
                    in + r0 * K, K, w, N, 0.0f, out + r0 * N, N);
        if (b)
            rb_fused_bias_act(out + r0 * N, b, r1 - r0, N, act);
    }
}
