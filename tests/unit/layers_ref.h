/* Naive double-precision reference layers for test_layers_forward.c and
 * test_layers_grad.c. Written from the Keras/TensorFlow definitions, independently of
 * src/layers/ (own padding geometry, plain loops over output pixels and taps), so a bug
 * would have to be made twice in two different shapes to go unnoticed. */
#ifndef LAYERS_REF_H
#define LAYERS_REF_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* deterministic test values in [lo, hi) */
static uint64_t ref_state = 0x1234567887654321ULL;
static inline double ref_rand(double lo, double hi)
{
    ref_state ^= ref_state << 13;
    ref_state ^= ref_state >> 7;
    ref_state ^= ref_state << 17;
    return lo + (hi - lo) * (double)(ref_state >> 11) / 9007199254740992.0;
}
static inline void ref_fill(float *x, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)ref_rand(lo, hi);
}
/* values in [lo, hi) whose magnitude is at least gap (away from a kink at 0) */
static inline void ref_fill_away0(float *x, int64_t n, double lo, double hi, double gap)
{
    for (int64_t i = 0; i < n; i++) {
        double v;
        do
            v = ref_rand(lo, hi);
        while (fabs(v) < gap);
        x[i] = (float)v;
    }
}
static inline double *ref_dup(const float *x, int64_t n)
{
    double *d = malloc(sizeof(double) * (n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* Window geometry, TensorFlow's documented rule:
 * VALID: out = ceil((in - k + 1) / s), no padding.
 * SAME:  out = ceil(in / s), pad_total = max((out - 1)*s + k - in, 0), pad_before =
 *        floor(pad_total / 2) (the extra one goes after). */
typedef struct ref_geom {
    int n, h, w, c, kh, kw, sh, sw, co;
    int ho, wo, pt, pl;
} ref_geom;

static inline void ref_axis(int in, int k, int s, int same, int *out, int *before)
{
    if (same) {
        *out = (in + s - 1) / s;
        int total = (*out - 1) * s + k - in;
        if (total < 0)
            total = 0;
        *before = total / 2;
    } else {
        *out = in - k + 1 > 0 ? (in - k + 1 + s - 1) / s : 0;
        *before = 0;
    }
}

static inline ref_geom ref_geom_make(int n, int h, int w, int c, int kh, int kw, int sh, int sw,
                                     int same, int co)
{
    ref_geom g = {n, h, w, c, kh, kw, sh, sw, co, 0, 0, 0, 0};
    ref_axis(h, kh, sh, same, &g.ho, &g.pt);
    ref_axis(w, kw, sw, same, &g.wo, &g.pl);
    return g;
}

#define REF_IN(g, i, y, x, ch) ((((int64_t)(i) * (g)->h + (y)) * (g)->w + (x)) * (g)->c + (ch))
#define REF_OUT(g, i, y, x, ch, C) ((((int64_t)(i) * (g)->ho + (y)) * (g)->wo + (x)) * (C) + (ch))

/* out: (n,ho,wo,co)  in: (n,h,w,c)  w: (kh,kw,c,co)  b: (co) or NULL
 * mag (optional): sum of |terms| of each output, for rounding-error bounds */
static inline void ref_conv(double *out, double *mag, const double *in, const double *w,
                            const double *b, const ref_geom *g)
{
    for (int i = 0; i < g->n; i++)
        for (int oy = 0; oy < g->ho; oy++)
            for (int ox = 0; ox < g->wo; ox++)
                for (int co = 0; co < g->co; co++) {
                    double acc = b ? b[co] : 0.0, m = b ? fabs(b[co]) : 0.0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh - g->pt + ky, ix = ox * g->sw - g->pl + kx;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                continue;
                            for (int ci = 0; ci < g->c; ci++) {
                                double t = in[REF_IN(g, i, iy, ix, ci)] *
                                           w[((int64_t)(ky * g->kw + kx) * g->c + ci) * g->co + co];
                                acc += t;
                                m += fabs(t);
                            }
                        }
                    out[REF_OUT(g, i, oy, ox, co, g->co)] = acc;
                    if (mag)
                        mag[REF_OUT(g, i, oy, ox, co, g->co)] = m;
                }
}

/* depthwise, multiplier 1: out: (n,ho,wo,c)  w: (kh,kw,c)  b: (c) or NULL */
static inline void ref_depthwise(double *out, double *mag, const double *in, const double *w,
                                 const double *b, const ref_geom *g)
{
    for (int i = 0; i < g->n; i++)
        for (int oy = 0; oy < g->ho; oy++)
            for (int ox = 0; ox < g->wo; ox++)
                for (int c = 0; c < g->c; c++) {
                    double acc = b ? b[c] : 0.0, m = b ? fabs(b[c]) : 0.0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh - g->pt + ky, ix = ox * g->sw - g->pl + kx;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                continue;
                            double t = in[REF_IN(g, i, iy, ix, c)] *
                                       w[(int64_t)(ky * g->kw + kx) * g->c + c];
                            acc += t;
                            m += fabs(t);
                        }
                    out[REF_OUT(g, i, oy, ox, c, g->c)] = acc;
                    if (mag)
                        mag[REF_OUT(g, i, oy, ox, c, g->c)] = m;
                }
}

/* max (is_max) or average pooling over the valid cells of each window */
static inline void ref_pool(double *out, const double *in, const ref_geom *g, int is_max)
{
    for (int i = 0; i < g->n; i++)
        for (int oy = 0; oy < g->ho; oy++)
            for (int ox = 0; ox < g->wo; ox++)
                for (int c = 0; c < g->c; c++) {
                    double acc = is_max ? -INFINITY : 0.0;
                    int cnt = 0;
                    for (int ky = 0; ky < g->kh; ky++)
                        for (int kx = 0; kx < g->kw; kx++) {
                            int iy = oy * g->sh - g->pt + ky, ix = ox * g->sw - g->pl + kx;
                            if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                                continue;
                            double v = in[REF_IN(g, i, iy, ix, c)];
                            if (is_max)
                                acc = v > acc ? v : acc;
                            else
                                acc += v;
                            cnt++;
                        }
                    out[REF_OUT(g, i, oy, ox, c, g->c)] = is_max ? acc : acc / cnt;
                }
}

/* batch-statistics BN (training mode, biased variance over all m rows):
 * out: (m,c)  in: (m,c)  gamma, beta: (c); mean/var (optional): (c) */
static inline void ref_bn_train(double *out, double *mean, double *var, const double *in,
                                const double *gamma, const double *beta, double eps, int64_t m,
                                int c)
{
    for (int j = 0; j < c; j++) {
        double mu = 0.0, v = 0.0;
        for (int64_t r = 0; r < m; r++)
            mu += in[r * c + j];
        mu /= (double)m;
        for (int64_t r = 0; r < m; r++)
            v += (in[r * c + j] - mu) * (in[r * c + j] - mu);
        v /= (double)m;
        for (int64_t r = 0; r < m; r++)
            out[r * c + j] = (in[r * c + j] - mu) / sqrt(v + eps) * gamma[j] + beta[j];
        if (mean)
            mean[j] = mu;
        if (var)
            var[j] = v;
    }
}

static inline void ref_bn_infer(double *out, const double *in, const double *gamma,
                                const double *beta, const double *mean, const double *var,
                                double eps, int64_t m, int c)
{
    for (int64_t r = 0; r < m; r++)
        for (int j = 0; j < c; j++)
            out[r * c + j] = (in[r * c + j] - mean[j]) / sqrt(var[j] + eps) * gamma[j] + beta[j];
}

static inline void ref_softmax(double *out, const double *in, int64_t rows, int k)
{
    for (int64_t r = 0; r < rows; r++) {
        double mx = in[r * k];
        for (int j = 1; j < k; j++)
            mx = in[r * k + j] > mx ? in[r * k + j] : mx;
        double s = 0.0;
        for (int j = 0; j < k; j++)
            s += exp(in[r * k + j] - mx);
        for (int j = 0; j < k; j++)
            out[r * k + j] = exp(in[r * k + j] - mx) / s;
    }
}

/* out: (n,nout) = in (n,nin) @ w (nin,nout) + b */
static inline void ref_dense(double *out, double *mag, const double *in, const double *w,
                             const double *b, int n, int nin, int nout)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < nout; o++) {
            double acc = b ? b[o] : 0.0, m = b ? fabs(b[o]) : 0.0;
            for (int k = 0; k < nin; k++) {
                double t = in[(int64_t)i * nin + k] * w[(int64_t)k * nout + o];
                acc += t;
                m += fabs(t);
            }
            out[(int64_t)i * nout + o] = acc;
            if (mag)
                mag[(int64_t)i * nout + o] = m;
        }
}

#endif
