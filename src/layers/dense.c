/* Dense: out (n, nout) = in (n, nin) @ w (nin, nout) + b, Keras kernel layout [in, out].
 *
 * The forward is a loop kernel rather than sgemm: every output is summed over the inputs
 * in one fixed order (k = 0, 1, ..., nin-1, then + b), whatever the number of rows and
 * wherever a row sits in the batch, so a sample's output never depends on its batch
 * companions (layers.h, "Per-image results"; OpenBLAS would round a row differently at
 * another position). Rows are taken DENSE_ROWS at a time so each weight is read once per
 * group; the heads are small (MobileNetV2's 1280 -> 128, the seed-001 CNN's 6272 -> 512),
 * so this costs little against the convolutions (docs/engine.md). */
#include "layers.h"
#include "layers_internal.h"

#include <cblas.h>

#define DENSE_ROWS 4  /* rows sharing one pass over the weights */
#define DENSE_COLS 64 /* outputs per pass: DENSE_ROWS x DENSE_COLS accumulators */

/* out[r][j] = b[j] + sum_k in[r][k] w[k][j] for r < nr, j < nc; nr, nc at most the maxima */
RB_HOT static void dense_block(float *restrict out, int64_t ldo, const float *restrict in,
                               int nin, const float *restrict w, int64_t ldw,
                               const float *restrict b, int nr, int nc)
{
    float acc[DENSE_ROWS][DENSE_COLS];
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < nc; j++)
            acc[r][j] = 0.0f;
    for (int k = 0; k < nin; k++) {
        const float *restrict wk = w + (int64_t)k * ldw;
        for (int r = 0; r < nr; r++) {
            const float a = in[(int64_t)r * nin + k];
            for (int j = 0; j < nc; j++)
                acc[r][j] += a * wk[j];
        }
    }
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < nc; j++)
            out[(int64_t)r * ldo + j] = b ? acc[r][j] + b[j] : acc[r][j];
}

/* out: (n,nout)  in: (n,nin)  w: (nin,nout)  b: (nout) or NULL */
void dense_forward(float *out, const float *in, const float *w, const float *b, int n, int nin,
                   int nout)
{
    for (int i0 = 0; i0 < n; i0 += DENSE_ROWS) {
        int nr = n - i0 < DENSE_ROWS ? n - i0 : DENSE_ROWS;
        for (int j0 = 0; j0 < nout; j0 += DENSE_COLS) {
            int nc = nout - j0 < DENSE_COLS ? nout - j0 : DENSE_COLS;
            dense_block(out + (int64_t)i0 * nout + j0, nout, in + (int64_t)i0 * nin, nin,
                        w + j0, nout, b ? b + j0 : NULL, nr, nc);
        }
    }
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
