/* Calibration of one class's probability: reliability diagram (10 equal-width bins),
 * expected calibration error and Brier score; see metrics.h and docs/metrics.md
 * "Calibration". Sums run in record order in double, as numpy's bincount does, so the bin
 * means are those of scikit-learn's calibration_curve. */
#include "metrics.h"

#include <math.h>
#include <string.h>

int metrics_calibration_bin(double p)
{
    /* searchsorted(linspace(0, 1, 11)[1:-1], p, side="left"): the number of inner edges
     * j * 0.1 (as numpy's linspace computes them) strictly below p */
    int b = 0;
    for (int j = 1; j < METRICS_CALIB_BINS; j++)
        b += (double)j * (1.0 / METRICS_CALIB_BINS) < p;
    return b;
}

int metrics_calibration_compute(metrics_calibration *c, const int32_t *y_true, const float *score,
                                int64_t stride, int64_t n, int32_t k, int32_t positive,
                                rb_error *err)
{
    memset(c, 0, sizeof *c);
    c->positive = positive;
    c->ece = c->brier = NAN;
    if (k < 1 || positive < 0 || positive >= k)
        return rb_fail(err, "the positive class is a class index of the model (0-based)",
                       "metrics: positive class %d outside [0, %d)", (int)positive, (int)k);
    double sum_p[METRICS_CALIB_BINS] = {0}, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || y_true[i] >= k) {
            c->n_ignored++;
            continue;
        }
        double p = (double)score[i * stride];
        if (!isfinite(p))
            return rb_fail(err, "the model produced a non-finite probability; check the model file",
                           "metrics: sample %lld has score %g", (long long)i, p);
        int y = y_true[i] == positive;
        int b = metrics_calibration_bin(p);
        c->count[b]++;
        c->positives[b] += y;
        sum_p[b] += p;
        sq += (p - y) * (p - y);
        c->n++;
    }
    if (c->n == 0) {
        for (int b = 0; b < METRICS_CALIB_BINS; b++)
            c->mean_predicted[b] = c->observed[b] = NAN;
        return 0;
    }
    double ece = 0;
    for (int b = 0; b < METRICS_CALIB_BINS; b++) {
        if (!c->count[b]) {
            c->mean_predicted[b] = c->observed[b] = NAN;
            continue;
        }
        c->mean_predicted[b] = sum_p[b] / (double)c->count[b];
        c->observed[b] = (double)c->positives[b] / (double)c->count[b];
        ece += (double)c->count[b] / (double)c->n * fabs(c->observed[b] - c->mean_predicted[b]);
    }
    c->ece = ece;
    c->brier = sq / (double)c->n;
    return 0;
}
