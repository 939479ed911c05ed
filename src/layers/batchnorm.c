/* BatchNormalization over the channel (last) axis: x is (m, c) with m = n*h*w rows.
 *
 * Forward (both modes) is evaluated as TensorFlow's tf.nn.batch_normalization does, the op
 * Keras 3 calls: inv = gamma / sqrt(var + eps); y = x*inv + (beta - mean*inv). That is one
 * multiply-add per element and the same rounding as the framework the seeds use (the
 * textbook (x-mean)/sqrt(var+eps)*gamma+beta differs only in the last bits).
 *
 * Training statistics are summed in double (x*x of a float is exact in double), so
 * var = E[x^2] - E[x]^2 has no harmful cancellation even when |mean| >> std, and the
 * sums can be allreduced between ranks before use (sync BN).
 *
 * Moving variance: Keras 3 (keras 3.x, keras/src/layers/normalization/batch_normalization.py)
 * updates moving_variance with the BIASED batch variance, the same one that normalizes the
 * batch: `moving_variance * momentum + variance * (1 - momentum)` where variance comes from
 * ops.moments (tf.nn.moments, divides by m). We follow that. tf-keras / Keras 2 with the
 * fused kernel (the default for 4-D inputs) instead feeds the moving average with the
 * Bessel-corrected variance m/(m-1)*var that tf.compat.v1.nn.fused_batch_norm returns
 * (its `_bessels_correction_test_only` flag leaves the correction in). For m = 32*7*7
 * rows the two differ by 0.06 %; for small m (a Dense-layer BN, batch 8) by 14 %.
 *
 * gamma may be NULL (scale=False, acts as 1) and beta NULL (center=False, acts as 0).
 * Channels are processed RB_CHUNK at a time so per-channel temporaries live on the stack. */
#include "layers.h"
#include "layers_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* for batchnorm_update_moving (clang: whole file) */
#endif

/* out (m,c) = x*a[j] + b[j] for the channel chunk [c0, c0+cc) */
RB_HOT static void bn_affine(float *restrict out, const float *restrict in,
                             const float *restrict a, const float *restrict b, int64_t m,
                             int c, int c0, int cc)
{
    for (int64_t r = 0; r < m; r++) {
        const float *x = in + r * c + c0;
        float *y = out + r * c + c0;
        for (int j = 0; j < cc; j++)
            y[j] = x[j] * a[j] + b[j];
    }
}

/* The in-place case (out == in) cannot use restrict pointers. */
RB_HOT static void bn_affine_inplace(float *io, const float *restrict a,
                                     const float *restrict b, int64_t m, int c, int c0, int cc)
{
    for (int64_t r = 0; r < m; r++) {
        float *y = io + r * c + c0;
        for (int j = 0; j < cc; j++)
            y[j] = y[j] * a[j] + b[j];
    }
}

static void bn_apply(float *out, const float *in, const float *a, const float *b, int64_t m,
                     int c, int c0, int cc)
{
    if (out == in)
        bn_affine_inplace(out, a, b, m, c, c0, cc);
    else
        bn_affine(out, in, a, b, m, c, c0, cc);
}

/* out: (m,c)  in: (m,c)  gamma, beta, mean, var: (c) */
void batchnorm_forward_infer(float *out, const float *in, const float *gamma, const float *beta,
                             const float *mean, const float *var, float eps, int64_t m, int c)
{
    float a[RB_CHUNK], b[RB_CHUNK];
    for (int c0 = 0; c0 < c; c0 += RB_CHUNK) {
        int cc = c - c0 < RB_CHUNK ? c - c0 : RB_CHUNK;
        for (int j = 0; j < cc; j++) {
            float inv = 1.0f / sqrtf(var[c0 + j] + eps);
            if (gamma)
                inv *= gamma[c0 + j];
            a[j] = inv;
            b[j] = (beta ? beta[c0 + j] : 0.0f) - mean[c0 + j] * inv;
        }
        bn_apply(out, in, a, b, m, c, c0, cc);
    }
}

/* din += dout*k[j];  s_dy[j] += sum dout;  s_dyx[j] += sum dout*(x - mu[j]) (chunk c0..)
 * Sums go to double per 64-row block (float inside a block, vectorized). */
RB_HOT static void bn_bwd_core(float *restrict din, double *restrict s_dy,
                               double *restrict s_dyx, const float *restrict dout,
                               const float *restrict in, const float *restrict mu,
                               const float *restrict k, int64_t m, int c, int c0, int cc)
{
    float p_dy[RB_CHUNK], p_dyx[RB_CHUNK];
    for (int64_t r0 = 0; r0 < m; r0 += 64) {
        int64_t r1 = r0 + 64 < m ? r0 + 64 : m;
        for (int j = 0; j < cc; j++)
            p_dy[j] = p_dyx[j] = 0.0f;
        for (int64_t r = r0; r < r1; r++) {
            const float *g = dout + r * c + c0, *x = in + r * c + c0;
            for (int j = 0; j < cc; j++) {
                p_dy[j] += g[j];
                p_dyx[j] += g[j] * (x[j] - mu[j]);
            }
            if (din) {
                float *d = din + r * c + c0;
                for (int j = 0; j < cc; j++)
                    d[j] += g[j] * k[j];
            }
        }
        for (int j = 0; j < cc; j++) {
            s_dy[j] += p_dy[j];
            s_dyx[j] += p_dyx[j];
        }
    }
}

/* din: (m,c) +=  dgamma, dbeta: (c) +=  dout, in: (m,c)  gamma, mean, var: (c) */
void batchnorm_backward_infer(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *gamma, const float *mean,
                              const float *var, float eps, int64_t m, int c)
{
    float k[RB_CHUNK], invstd[RB_CHUNK];
    double s_dy[RB_CHUNK], s_dyx[RB_CHUNK];
    for (int c0 = 0; c0 < c; c0 += RB_CHUNK) {
        int cc = c - c0 < RB_CHUNK ? c - c0 : RB_CHUNK;
        for (int j = 0; j < cc; j++) {
            invstd[j] = 1.0f / sqrtf(var[c0 + j] + eps);
            k[j] = gamma ? gamma[c0 + j] * invstd[j] : invstd[j];
            s_dy[j] = s_dyx[j] = 0.0;
        }
        bn_bwd_core(din, s_dy, s_dyx, dout, in, mean + c0, k, m, c, c0, cc);
        for (int j = 0; j < cc; j++) {
            if (dgamma)
                dgamma[c0 + j] += (float)(s_dyx[j] * invstd[j]);
            if (dbeta)
                dbeta[c0 + j] += (float)s_dy[j];
        }
    }
}

/* sum, sumsq: (c) =  in: (m,c) */
RB_HOT static void bn_stats_chunk(double *restrict sum, double *restrict sumsq,
                                  const float *restrict in, int64_t m, int c, int c0, int cc)
{
    for (int j = 0; j < cc; j++)
        sum[j] = sumsq[j] = 0.0;
    for (int64_t r = 0; r < m; r++) {
        const float *x = in + r * c + c0;
        for (int j = 0; j < cc; j++) {
            double v = x[j];
            sum[j] += v;
            sumsq[j] += v * v;
        }
    }
}

void batchnorm_stats(double *sum, double *sumsq, const float *in, int64_t m, int c)
{
    for (int c0 = 0; c0 < c; c0 += RB_CHUNK) {
        int cc = c - c0 < RB_CHUNK ? c - c0 : RB_CHUNK;
        bn_stats_chunk(sum + c0, sumsq + c0, in, m, c, c0, cc);
    }
}

/* biased batch variance from the sums, clamped at 0 against rounding (as Keras' synced
 * moments do) */
static inline double bn_var(double sum, double sumsq, double count, double *mean)
{
    double mu = sum / count, v = sumsq / count - mu * mu;
    *mean = mu;
    return v > 0.0 ? v : 0.0;
}

/* out: (m,c)  save_mean, save_invstd: (c) =  in: (m,c)  gamma, beta: (c)  sum, sumsq: (c)
 * from batchnorm_stats (possibly allreduced), count = rows they cover. */
void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, const float *in,
                             const float *gamma, const float *beta, const double *sum,
                             const double *sumsq, double count, float eps, int64_t m, int c)
{
    float a[RB_CHUNK], b[RB_CHUNK];
    for (int c0 = 0; c0 < c; c0 += RB_CHUNK) {
        int cc = c - c0 < RB_CHUNK ? c - c0 : RB_CHUNK;
        for (int j = 0; j < cc; j++) {
            double mu, v = bn_var(sum[c0 + j], sumsq[c0 + j], count, &mu);
            float mean = (float)mu, invstd = (float)(1.0 / sqrt(v + (double)eps));
            save_mean[c0 + j] = mean;
            save_invstd[c0 + j] = invstd;
            float inv = gamma ? invstd * gamma[c0 + j] : invstd;
            a[j] = inv;
            b[j] = (beta ? beta[c0 + j] : 0.0f) - mean * inv;
        }
        bn_apply(out, in, a, b, m, c, c0, cc);
    }
}

/* Keras computes `1.0 - self.momentum` in Python double from the decimal the user wrote
 * (0.99), then rounds to float32: 0.01f. 1 - 0.99f in float gives 0.0099999905f instead.
 * Recover the shortest decimal that round-trips the float momentum, as Python holds it. */
static float keras_one_minus(float momentum)
{
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)momentum);
        if (strtof(buf, NULL) == momentum)
            break;
    }
    return (float)(1.0 - strtod(buf, NULL));
}

/* moving_mean, moving_var: (c) updated; sum, sumsq: (c) as for forward_train.
 * Float32 arithmetic as Keras: moving*momentum + batch*(1-momentum); no FMA contraction
 * (it would change the last bit under -march=native). */
RB_EXACT void
batchnorm_update_moving(float *moving_mean, float *moving_var, const double *sum,
                        const double *sumsq, double count, float momentum, int c)
{
    float om = keras_one_minus(momentum);
    for (int j = 0; j < c; j++) {
        double mu, v = bn_var(sum[j], sumsq[j], count, &mu);
        float bm = (float)mu, bv = (float)v;
        moving_mean[j] = moving_mean[j] * momentum + bm * om;
        moving_var[j] = moving_var[j] * momentum + bv * om;
    }
}

/* sum_dy, sum_dy_xhat: (c) =  dout, in: (m,c)  save_mean, save_invstd: (c) */
void batchnorm_backward_sums(double *sum_dy, double *sum_dy_xhat, const float *dout,
                             const float *in, const float *save_mean, const float *save_invstd,
                             int64_t m, int c)
{
    for (int c0 = 0; c0 < c; c0 += RB_CHUNK) {
        int cc = c - c0 < RB_CHUNK ? c - c0 : RB_CHUNK;
        for (int j = 0; j < cc; j++)
            sum_dy[c0 + j] = sum_dy_xhat[c0 + j] = 0.0;
        bn_bwd_core(NULL, sum_dy + c0, sum_dy_xhat + c0, dout, in, save_mean + c0, NULL, m, c,
                    c0, cc);
        /* sum dout*xhat = invstd * sum dout*(x - mean) */
        for (int j = 0; j < cc; j++)
            sum_dy_xhat[c0 + j] *= save_invstd[c0 + j];
    }
}

/* din += A*dout + B*(x - mean) + C per channel: the training-mode input gradient,
 * A = gamma*invstd, B = -A*invstd*mean(dy*xhat), C = -A*mean(dy). */
RB_HOT static void bn_bwd_train_din(float *restrict din, const float *restrict dout,
                                    const float *restrict in, const float *restrict mu,
                                    const float *restrict A, const float *restrict B,
                                    const float *restrict C, int64_t m, int c, int c0, int cc)
{
    for (int64_t r = 0; r < m; r++) {
        const float *g = dout + r * c + c0, *x = in + r * c + c0;
        float *d = din + r * c + c0;
        for (int j = 0; j < cc; j++)
            d[j] += A[j] * g[j] + B[j] * (x[j] - mu[j]) + C[j];
    }
}

/* din: (m,c) +=  dgamma, dbeta: (c) +=  dout, in: (m,c)  gamma, save_mean, save_invstd: (c)
 * sum_dy, sum_dy_xhat: (c) from batchnorm_backward_sums over `count` rows. dgamma/dbeta
 * receive the sums given. With sync BN those are the allreduced (global) sums, which the
 * later gradient allreduce would count once per rank: there pass dgamma = dbeta = NULL and
 * add this rank's own sums (kept from before the allreduce) to dgamma/dbeta instead. */
void batchnorm_backward_train(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *gamma, const float *save_mean,
                              const float *save_invstd, const double *sum_dy,
                              const double *sum_dy_xhat, double count, int64_t m, int c)
{
    for (int j = 0; j < c; j++) {
        if (dgamma)
            dgamma[j] += (float)sum_dy_xhat[j];
        if (dbeta)
            dbeta[j] += (float)sum_dy[j];
    }
    if (!din)
        return;
    float A[RB_CHUNK], B[RB_CHUNK], C[RB_CHUNK];
    for (int c0 = 0; c0 < c; c0 += RB_CHUNK) {
        int cc = c - c0 < RB_CHUNK ? c - c0 : RB_CHUNK;
        for (int j = 0; j < cc; j++) {
            double is = save_invstd[c0 + j];
            double a = (gamma ? gamma[c0 + j] : 1.0f) * is;
            A[j] = (float)a;
            B[j] = (float)(-a * is * (sum_dy_xhat[c0 + j] / count));
            C[j] = (float)(-a * (sum_dy[c0 + j] / count));
        }
        bn_bwd_train_din(din, dout, in, save_mean + c0, A, B, C, m, c, c0, cc);
    }
}
