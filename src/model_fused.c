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
                      int64_t rows_img, int K, int N, int act)
{
    /* blocks of ~256 KB of output: GEMM, then the epilogue on cache-hot rows; blocks never
     * span two images (layers.h, "Per-image results") */
    int64_t target = (256 * 1024 / 4) / (N > 0 ? N : 1);
    const int64_t blk = rb_image_block_rows(rows_img, target < 64 ? 64 : target);
    for (int64_t r0 = 0, r1; r0 < rows; r0 = r1) {
        int64_t img_end = (r0 / rows_img + 1) * rows_img;
        r1 = r0 + blk < img_end ? r0 + blk : img_end;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(r1 - r0), N, K, 1.0f,
                    in + r0 * K, K, w, N, 0.0f, out + r0 * N, N);
        if (b)
            rb_fused_bias_act(out + r0 * N, b, r1 - r0, N, act);
    }
}

/* ---- BatchNormalization + ReLU/ReLU6 in one pass (training workspaces) ---------------- */
/* Forward: y = act(x*a + b) per channel (a = gamma*invstd, b = beta - mean*a), batch or
 * moving statistics alike. Backward, with dy = dout * act'(y) formed on the fly (the ReLU's
 * own backward and the BN output gradient buffer disappear):
 *   sums:  s_dy[c] += sum dy,  s_dyx[c] += sum dy*(x - mu)
 *   din:   din += A*dy + B*(x - mu) + C */

CLONES void rb_fused_bn_act_forward(float *restrict y, const float *restrict x,
                                    const float *restrict a, const float *restrict b,
                                    int64_t rows, int c, int act)
{
    const float hi = act == RB_ACT_RELU6 ? 6.0f : 3.4e38f;
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * c;
        float *restrict yr = y + r * c;
        for (int j = 0; j < c; j++) {
            float v = xr[j] * a[j] + b[j];
            v = v > 0.0f ? v : 0.0f;
            yr[j] = v < hi ? v : hi;
        }
    }
}

#include <immintrin.h>

static int have_avx512(void)
{
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512f") != 0;
    }
    return have;
}

/* rows streamed in order (hardware prefetch friendly); per-channel float partials for a
 * block of 64 rows stay in L1, then go to double */
__attribute__((target("avx512f"))) static void
bn_act_sums_avx512(double *s_dy, double *s_dyx, const float *dout, const float *y,
                   const float *x, const float *mu, int64_t rows, int c, float hi)
{
    const __m512 zero = _mm512_setzero_ps(), vhi = _mm512_set1_ps(hi);
    float a1[1024] __attribute__((aligned(64))), a2[1024] __attribute__((aligned(64)));
    for (int c0 = 0; c0 < c; c0 += 1024) {
        int cc = c - c0 < 1024 ? c - c0 : 1024;
        for (int64_t r0 = 0; r0 < rows; r0 += 64) {
            int64_t r1 = r0 + 64 < rows ? r0 + 64 : rows;
            memset(a1, 0, sizeof(float) * (size_t)((cc + 15) & ~15));
            memset(a2, 0, sizeof(float) * (size_t)((cc + 15) & ~15));
            for (int64_t r = r0; r < r1; r++) {
                const int64_t o = r * c + c0;
                for (int j = 0; j < cc; j += 16) {
                    int left = cc - j;
                    __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
                    __m512 yy = _mm512_maskz_loadu_ps(mk, y + o + j);
                    __m512 g = _mm512_maskz_loadu_ps(mk, dout + o + j);
                    __m512 xx = _mm512_maskz_loadu_ps(mk, x + o + j);
                    __mmask16 on = _mm512_cmp_ps_mask(yy, zero, _CMP_GT_OQ) &
                                   _mm512_cmp_ps_mask(yy, vhi, _CMP_LT_OQ);
                    __m512 d = _mm512_maskz_mov_ps(on, g);
                    __m512 m = _mm512_maskz_loadu_ps(mk, mu + c0 + j);
                    _mm512_store_ps(a1 + j, _mm512_add_ps(_mm512_load_ps(a1 + j), d));
                    _mm512_store_ps(a2 + j, _mm512_fmadd_ps(d, _mm512_sub_ps(xx, m),
                                                            _mm512_load_ps(a2 + j)));
                }
            }
            for (int j = 0; j < cc; j++) {
                s_dy[c0 + j] += a1[j];
                s_dyx[c0 + j] += a2[j];
            }
        }
    }
}

__attribute__((target("avx512f"))) static void
bn_act_din_avx512(float *din, const float *dout, const float *y, const float *x,
                  const float *mu, const float *A, const float *B, const float *C, int64_t rows,
                  int c, float hi)
{
    const __m512 zero = _mm512_setzero_ps(), vhi = _mm512_set1_ps(hi);
    for (int64_t r = 0; r < rows; r++) {
        for (int j0 = 0; j0 < c; j0 += 16) {
            int left = c - j0;
            __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
            int64_t o = r * c + j0;
            __m512 yy = _mm512_maskz_loadu_ps(mk, y + o);
            __m512 g = _mm512_maskz_loadu_ps(mk, dout + o);
            __m512 xx = _mm512_maskz_loadu_ps(mk, x + o);
            __mmask16 on = _mm512_cmp_ps_mask(yy, zero, _CMP_GT_OQ) &
                           _mm512_cmp_ps_mask(yy, vhi, _CMP_LT_OQ);
            __m512 d = _mm512_maskz_mov_ps(on, g);
            __m512 v = _mm512_maskz_loadu_ps(mk, din + o);
            v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, A + j0), d, v);
            v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mk, B + j0),
                                _mm512_sub_ps(xx, _mm512_maskz_loadu_ps(mk, mu + j0)), v);
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, C + j0));
            _mm512_mask_storeu_ps(din + o, mk, v);
        }
    }
}

CLONES void rb_fused_bn_act_sums(double *s_dy, double *s_dyx, const float *restrict dout,
                                 const float *restrict y, const float *restrict x,
                                 const float *restrict mu, int64_t rows, int c, int act)
{
    /* 64-row blocks (in L1), 16 channels of accumulators in registers; float within a
     * block, double across blocks */
    const float hi = act == RB_ACT_RELU6 ? 6.0f : 3.4e38f;
    if (have_avx512()) {
        bn_act_sums_avx512(s_dy, s_dyx, dout, y, x, mu, rows, c, hi);
        return;
    }
    for (int64_t r0 = 0; r0 < rows; r0 += 64) {
        int64_t r1 = r0 + 64 < rows ? r0 + 64 : rows;
        int j0 = 0;
        for (; j0 + 16 <= c; j0 += 16) {
            float a1[16], a2[16], mk[16];
            for (int k = 0; k < 16; k++) {
                a1[k] = a2[k] = 0.0f;
                mk[k] = mu[j0 + k];
            }
            for (int64_t r = r0; r < r1; r++) {
                const float *restrict g = dout + r * c + j0, *restrict yy = y + r * c + j0;
                const float *restrict xx = x + r * c + j0;
                for (int k = 0; k < 16; k++) {
                    float d = (yy[k] > 0.0f && yy[k] < hi) ? g[k] : 0.0f;
                    a1[k] += d;
                    a2[k] += d * (xx[k] - mk[k]);
                }
            }
            for (int k = 0; k < 16; k++) {
                s_dy[j0 + k] += a1[k];
                s_dyx[j0 + k] += a2[k];
            }
        }
        for (; j0 < c; j0++) {
            float a1 = 0.0f, a2 = 0.0f;
            for (int64_t r = r0; r < r1; r++) {
                float yy = y[r * c + j0];
                float d = (yy > 0.0f && yy < hi) ? dout[r * c + j0] : 0.0f;
                a1 += d;
                a2 += d * (x[r * c + j0] - mu[j0]);
            }
            s_dy[j0] += a1;
            s_dyx[j0] += a2;
        }
    }
}

CLONES void rb_fused_bn_act_din(float *restrict din, const float *restrict dout,
                                const float *restrict y, const float *restrict x,
                                const float *restrict mu, const float *restrict A,
                                const float *restrict B, const float *restrict C, int64_t rows,
                                int c, int act)
{
    const float hi = act == RB_ACT_RELU6 ? 6.0f : 3.4e38f;
    if (have_avx512()) {
        bn_act_din_avx512(din, dout, y, x, mu, A, B, C, rows, c, hi);
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict g = dout + r * c, *restrict yy = y + r * c, *restrict xx = x + r * c;
        float *restrict d = din + r * c;
        for (int j = 0; j < c; j++) {
            float dy = (yy[j] > 0.0f && yy[j] < hi) ? g[j] : 0.0f;
            d[j] += A[j] * dy + B[j] * (xx[j] - mu[j]) + C[j];
        }
    }
}
