/* Dense: out (n, nout) = in (n, nin) @ w (nin, nout) + b, Keras kernel layout [in, out].
 *
 * The forward is a loop kernel rather than sgemm: every output is summed over the inputs
 * in one fixed order (k = 0, 1, ..., nin-1, then + b), whatever the number of rows and
 * wherever a row sits in the batch, so a sample's output never depends on its batch
 * companions (layers.h, "Per-image results"; OpenBLAS would round a row differently at
 * another position). The heads are small (MobileNetV2's 1280 -> 128, the seed-001 CNN's
 * 6272 -> 512): against sgemm this costs little next to the convolutions (docs/engine.md). */
#include "layers.h"
#include "layers_internal.h"

#include <cblas.h>

#define DENSE_ROWS 4   /* rows updated together (each weight load serves them all) */
#define DENSE_KSTEP 4  /* inputs applied per pass over a row of outputs */
#define DENSE_KBLOCK 128 /* inputs per block: a block of w (DENSE_KBLOCK x nout) stays in
                            cache while every row group uses it, so w is read once */

/* o_r[j] += sum over the nk (1..DENSE_KSTEP) inputs k of a_r[k] * w[k][j], k in order, for
 * nr (1..DENSE_ROWS) rows r. Every output is updated the same way whatever nr and nk:
 * o = o + a*w per input k, k ascending (one FMA or one multiply and one add per input,
 * the same in every row). */
RB_HOT static void dense_update(float *restrict out, int64_t ldo, const float *restrict in,
                                int64_t ldi, const float *restrict w, int64_t ldw, int nr,
                                int nk, int nout)
{
    if (nr == DENSE_ROWS && nk == DENSE_KSTEP) {
        float *restrict o0 = out, *restrict o1 = out + ldo, *restrict o2 = out + 2 * ldo,
                        *restrict o3 = out + 3 * ldo;
        const float *restrict w0 = w, *restrict w1 = w + ldw, *restrict w2 = w + 2 * ldw,
                              *restrict w3 = w + 3 * ldw;
        float a[DENSE_ROWS][DENSE_KSTEP];
        for (int r = 0; r < DENSE_ROWS; r++)
            for (int k = 0; k < DENSE_KSTEP; k++)
                a[r][k] = in[r * ldi + k];
        for (int j = 0; j < nout; j++) {
            float v0 = o0[j], v1 = o1[j], v2 = o2[j], v3 = o3[j];
            v0 += a[0][0] * w0[j], v1 += a[1][0] * w0[j], v2 += a[2][0] * w0[j], v3 += a[3][0] * w0[j];
            v0 += a[0][1] * w1[j], v1 += a[1][1] * w1[j], v2 += a[2][1] * w1[j], v3 += a[3][1] * w1[j];
            v0 += a[0][2] * w2[j], v1 += a[1][2] * w2[j], v2 += a[2][2] * w2[j], v3 += a[3][2] * w2[j];
            v0 += a[0][3] * w3[j], v1 += a[1][3] * w3[j], v2 += a[2][3] * w3[j], v3 += a[3][3] * w3[j];
            o0[j] = v0, o1[j] = v1, o2[j] = v2, o3[j] = v3;
        }
        return;
    }
    for (int r = 0; r < nr; r++) {
        float *restrict o = out + r * ldo;
        for (int k = 0; k < nk; k++) {
            const float a = in[r * ldi + k];
            const float *restrict wk = w + k * ldw;
            for (int j = 0; j < nout; j++)
                o[j] += a * wk[j];
        }
    }
}

/* out: (n,nout)  in: (n,nin)  w: (nin,nout)  b: (nout) or NULL. out = 0, then
 * out[i][j] += in[i][k] * w[k][j] for k = 0, 1, ..., nin-1, then + b[j]. */
void dense_forward(float *out, const float *in, const float *w, const float *b, int n, int nin,
                   int nout)
{
    for (int64_t i = 0; i < (int64_t)n * nout; i++)
        out[i] = 0.0f;
    for (int k0 = 0; k0 < nin; k0 += DENSE_KBLOCK) {
        const int k1 = k0 + DENSE_KBLOCK < nin ? k0 + DENSE_KBLOCK : nin;
        for (int i0 = 0; i0 < n; i0 += DENSE_ROWS) {
            const int nr = n - i0 < DENSE_ROWS ? n - i0 : DENSE_ROWS;
            for (int k = k0; k < k1; k += DENSE_KSTEP)
                dense_update(out + (int64_t)i0 * nout, nout, in + (int64_t)i0 * nin + k, nin,
                             w + (int64_t)k * nout, nout, nr,
                             k1 - k < DENSE_KSTEP ? k1 - k : DENSE_KSTEP, nout);
        }
    }
    if (b)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < nout; j++)
                out[(int64_t)i * nout + j] += b[j];
}

/* din: (n,nin) += dout @ w^T;  dw: (nin,nout) += in^T @ dout;  db: (nout) += column sums;
 * any may be NULL. dout: (n,nout) */
void dense_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                    const float *w, int n, int nin, int nout)
{
    if (db)
        rb_bias_grad(db, dout, n, nout);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nin, nout, n, 1.0f, in, nin, dout,
                    nout, 1.0f, dw, nout);
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nin, nout, 1.0f, dout, nout, w,
                    nout, 1.0f, din, nin);
}
