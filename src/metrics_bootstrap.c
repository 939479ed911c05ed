/* Bootstrap confidence intervals of the screening metrics and the AUC (see metrics.h and
 * docs/metrics.md). */
#include "metrics_internal.h"
#include "rb_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ bootstrap */

static int cmp_double(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* numpy.quantile(x, q) (method "linear") of the sorted x[m]:
 * h = (m - 1) q, lerp between x[floor h] and the next as numpy's _lerp does. */
static double quantile_sorted(const double *x, int64_t m, double q)
{
    double h = (double)(m - 1) * q;
    if (h >= (double)(m - 1))
        return x[m - 1];
    if (h < 0)
        return x[0];
    double fl = floor(h);
    int64_t i = (int64_t)fl;
    double t = h - fl, a = x[i], b = x[i + 1], d = b - a;
    return t >= 0.5 ? b - d * (1.0 - t) : a + d * t;
}

static void ci_finish(metrics_ci *ci, double *vals, int64_t nv, double level)
{
    ci->n_defined = nv;
    if (nv == 0) {
        ci->lo = ci->hi = NAN;
        return;
    }
    qsort(vals, (size_t)nv, sizeof *vals, cmp_double);
    double a = (1.0 - level) / 2.0;
    ci->lo = quantile_sorted(vals, nv, a);
    ci->hi = quantile_sorted(vals, nv, 1.0 - a);
}

int metrics_bootstrap_compute(metrics_bootstrap *b, const int32_t *y_true, const float *score,
                              int64_t stride, int64_t n, int32_t k, int32_t positive,
                              double threshold, int64_t resamples, uint64_t seed, double level,
                              rb_error *err)
{
    memset(b, 0, sizeof *b);
    if (resamples < 1)
        return rb_fail(err, "use at least 1 resample (1000 or more for a usable interval)",
                       "metrics: %lld bootstrap resamples", (long long)resamples);
    if (!(level > 0.0 && level < 1.0))
        return rb_fail(err, "a confidence level is in (0, 1), e.g. 0.95",
                       "metrics: bootstrap level %g", level);
    if (isnan(threshold))
        return rb_fail(err, "give a number, e.g. 0.5", "metrics: the threshold is NaN");
    b->resamples = resamples;
    b->seed = seed;
    b->level = level;

    ranked r;
    if (metrics_ranked_build(&r, y_true, score, stride, n, k, positive, 1, err))
        return -1;
    if (r.m >= ((int64_t)1 << 32)) {
        metrics_ranked_free(&r);
        return rb_fail(err, NULL, "metrics: %lld samples is too many for the bootstrap",
                       (long long)r.m);
    }
    int64_t m = r.m, g = r.g;
    /* groups at or above the threshold form a prefix (scores decrease) */
    int64_t gthr = 0;
    while (gthr < g && r.value[gthr] >= threshold)
        gthr++;

    /* estimates on the full data */
    {
        int64_t tp = 0, fp = 0;
        for (int64_t i = 0; i < gthr; i++) {
            tp += r.pos[i];
            fp += r.neg[i];
        }
        int64_t tn = r.n_neg - fp;
        b->accuracy.estimate = ratio(tp + tn, m);
        b->sensitivity.estimate = ratio(tp, r.n_pos);
        b->specificity.estimate = ratio(tn, r.n_neg);
    }

    curve_ws w;
    if (metrics_curve_ws_alloc(&w, g, err)) {
        metrics_ranked_free(&r);
        return -1;
    }
    {
        int64_t p = metrics_curve_build(&w, r.value, r.pos, r.neg, g);
        b->auc.estimate = metrics_curve_auc(&w, p, r.n_pos, r.n_neg);
    }
    size_t gc = (size_t)(g > 0 ? g : 1);
    int64_t *pb = malloc(gc * sizeof *pb), *nb = malloc(gc * sizeof *nb);
    double *vals = malloc((size_t)resamples * 4 * sizeof *vals);
    if (!pb || !nb || !vals) {
        free(pb);
        free(nb);
        free(vals);
        metrics_ranked_free(&r);
        metrics_curve_ws_free(&w);
        return rb_fail(err, NULL, "metrics: out of memory for %lld bootstrap resamples",
                       (long long)resamples);
    }
    double *v_acc = vals, *v_sens = vals + resamples, *v_spec = vals + 2 * resamples,
           *v_auc = vals + 3 * resamples;
    int64_t n_acc = 0, n_sens = 0, n_spec = 0, n_auc = 0;
    for (int64_t bi = 0; bi < resamples && m > 0; bi++) {
        memset(pb, 0, gc * sizeof *pb);
        memset(nb, 0, gc * sizeof *nb);
        int64_t P = 0;
        for (int64_t j = 0; j < m; j++) {
            uint64_t s = rb_rng_below(seed, (uint64_t)bi, (uint64_t)j, METRICS_RNG_BOOTSTRAP,
                                      (uint64_t)m);
            int64_t gi = r.group[s];
            if (r.is_pos[s]) {
                pb[gi]++;
                P++;
            } else {
                nb[gi]++;
            }
        }
        int64_t N = m - P, tp = 0, fp = 0;
        for (int64_t i = 0; i < gthr; i++) {
            tp += pb[i];
            fp += nb[i];
        }
        int64_t tn = N - fp;
        v_acc[n_acc++] = (double)(tp + tn) / (double)m;
        if (P > 0)
            v_sens[n_sens++] = (double)tp / (double)P;
        if (N > 0)
            v_spec[n_spec++] = (double)tn / (double)N;
        if (P > 0 && N > 0) {
            int64_t p = metrics_curve_build(&w, r.value, pb, nb, g);
            v_auc[n_auc++] = metrics_curve_auc(&w, p, P, N);
        }
    }
    ci_finish(&b->accuracy, v_acc, n_acc, level);
    ci_finish(&b->sensitivity, v_sens, n_sens, level);
    ci_finish(&b->specificity, v_spec, n_spec, level);
    ci_finish(&b->auc, v_auc, n_auc, level);
    free(pb);
    free(nb);
    free(vals);
    metrics_ranked_free(&r);
    metrics_curve_ws_free(&w);
    return 0;
}
