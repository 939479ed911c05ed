/* Add and Concatenate (channel axis). Add's output may alias an input. */
#include "layers.h"
#include "layers_internal.h"

#include <string.h>

/* out, a, b: (n) */
RB_HOT void add_forward(float *out, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

/* da, db: (n) += dout (either may be NULL; they must not alias each other) */
RB_HOT void add_backward(float *da, float *db, const float *dout, int64_t n)
{
    if (da)
        for (int64_t i = 0; i < n; i++)
            da[i] += dout[i];
    if (db)
        for (int64_t i = 0; i < n; i++)
            db[i] += dout[i];
}

/* out: (rows, sum c[i])  in[i]: (rows, c[i]) */
void concat_forward(float *out, const float *const *in, const int *c, int k, int64_t rows)
{
    int ct = 0;
    for (int i = 0; i < k; i++)
        ct += c[i];
    for (int64_t r = 0; r < rows; r++) {
        float *o = out + r * ct;
        for (int i = 0; i < k; i++) {
            memcpy(o, in[i] + r * c[i], sizeof(float) * c[i]);
            o += c[i];
        }
    }
}

/* din[i]: (rows, c[i]) += its slice of dout: (rows, sum c[i]); din[i] may be NULL */
void concat_backward(float *const *din, const float *dout, const int *c, int k, int64_t rows)
{
    int ct = 0;
    for (int i = 0; i < k; i++)
        ct += c[i];
    for (int64_t r = 0; r < rows; r++) {
        const float *g = dout + r * ct;
        for (int i = 0; i < k; i++) {
            if (din[i]) {
                float *restrict d = din[i] + r * c[i];
                for (int j = 0; j < c[i]; j++)
                    d[j] += g[j];
            }
            g += c[i];
        }
    }
}
