/* Dense: out (n, nout) = in (n, nin) @ w (nin, nout) + b, Keras kernel layout [in, out]. */
#include "layers.h"
#include "layers_internal.h"

#include <cblas.h>

/* out: (n,nout)  in: (n,nin)  w: (nin,nout)  b: (nout) or NULL */
void dense_forward(float *out, const float *in, const float *w, const float *b, int n, int nin,
                   int nout)
{
    if (b)
        rb_fill_rows(out, b, n, nout);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, nout, nin, 1.0f, in, nin, w, nout,
                b ? 1.0f : 0.0f, out, nout);
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
