/* Helpers shared by the layer kernels in src/layers/ (not part of the layers.h contract). */
#ifndef LAYERS_INTERNAL_H
#define LAYERS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* Hot loop kernels are compiled once per x86-64 level and picked at load time (GCC ifunc):
 * the project builds for x86-64-v2 (SSE4.2) so one binary runs on every cluster node, but
 * the loops run much faster with AVX2/AVX-512 where present, as OpenBLAS (DYNAMIC_ARCH)
 * already does for GEMM. The v3/v4 clones may contract a*b+c into FMA, so results can
 * differ in the last bits between CPU generations (not between ranks of one cluster
 * partition). Define RADBATCH_NO_CLONES to build a single version. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(RADBATCH_NO_CLONES) && !defined(__AVX512F__)
#define RB_HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define RB_HOT
#endif

/* Functions whose float arithmetic must round exactly as written (Keras-exact formulas):
 * no contraction of a*b+c into FMA, which GCC does across statements under -march=native.
 * Clang honours the standard pragma instead (put in the .c file). */
#if defined(__GNUC__) && !defined(__clang__)
#define RB_EXACT __attribute__((optimize("fp-contract=off")))
#else
#define RB_EXACT
#endif

/* Channel chunk for kernels that keep per-channel values on the stack: channels are
 * processed RB_CHUNK at a time so stack use is bounded for any c; rows of MobileNetV2
 * (c <= 1280) are then walked in 4 KiB contiguous pieces, still friendly to prefetching. */
#define RB_CHUNK 1024

/* acc[j] += sum over rows r of x[r*ld + j], j < c (c <= RB_CHUNK): the column sums of a
 * (rows, ld) row-major matrix. Summed in float over blocks of 64 rows (vectorized over j),
 * the block sums in double, so the error does not grow with the number of rows. */
static inline void rb_colsum_add(double *restrict acc, const float *restrict x, int64_t rows,
                                 int c, int64_t ld)
{
    float part[RB_CHUNK];
    for (int64_t r0 = 0; r0 < rows; r0 += 64) {
        int64_t r1 = r0 + 64 < rows ? r0 + 64 : rows;
        for (int j = 0; j < c; j++)
            part[j] = 0.0f;
        for (int64_t r = r0; r < r1; r++) {
            const float *xr = x + r * ld;
            for (int j = 0; j < c; j++)
                part[j] += xr[j];
        }
        for (int j = 0; j < c; j++)
            acc[j] += part[j];
    }
}

/* Winograd F(2x2,3x3) for 3x3 stride-1 Conv2D (conv2d_winograd.c), used by conv2d.c when
 * conv2d_winograd_applies(s). Scratch: conv2d_winograd_scratch_floats(s) floats. Forward
 * writes out = b + conv (b may be NULL); backward_din ADDS the input gradient into din. */
struct conv2d_shape;
int conv2d_winograd_applies(const struct conv2d_shape *s);
size_t conv2d_winograd_scratch_floats(const struct conv2d_shape *s);
void conv2d_winograd_forward(float *out, const float *in, const float *w, const float *b,
                             const struct conv2d_shape *s, float *scratch);
void conv2d_winograd_backward_din(float *din, const float *dout, const float *w,
                                  const struct conv2d_shape *s, float *scratch);
/* dw: (3,3,cin,cout) += the weight gradient */
void conv2d_winograd_backward_dw(float *dw, const float *dout, const float *in,
                                 const struct conv2d_shape *s, float *scratch);

/* db: (c) += column sums of dout: (rows, c) -- the bias gradient. */
static inline void rb_bias_grad(float *restrict db, const float *restrict dout, int64_t rows,
                                int c)
{
    double acc[RB_CHUNK];
    for (int c0 = 0; c0 < c; c0 += RB_CHUNK) {
        int cc = c - c0 < RB_CHUNK ? c - c0 : RB_CHUNK;
        for (int j = 0; j < cc; j++)
            acc[j] = 0.0;
        rb_colsum_add(acc, dout + c0, rows, cc, c);
        for (int j = 0; j < cc; j++)
            db[c0 + j] += (float)acc[j];
    }
}

/* out: (rows, c), every row = b: (c). The bias as GEMM's initial C (then beta = 1). */
static inline void rb_fill_rows(float *restrict out, const float *restrict b, int64_t rows,
                                int c)
{
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++)
            out[r * c + j] = b[j];
}

#endif
