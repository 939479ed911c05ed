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

/* ---------------------------------------------------------------- temperature scaling */

/* -log of the label's probability at temperature T for one sample (m = 1: sigmoid of the
 * positive class's logit; else softmax over m = k logits), computed stably. */
static double sample_nll(const float *z, int m, int32_t label, int32_t positive, double T)
{
    if (m == 1) {
        double s = (double)z[0] / T;
        double t = label == positive ? -s : s; /* -log sigmoid(-t) = softplus(t) */
        return t > 0 ? t + log1p(exp(-t)) : log1p(exp(t));
    }
    double mx = -INFINITY;
    for (int c = 0; c < m; c++)
        mx = fmax(mx, (double)z[c] / T);
    double sum = 0;
    for (int c = 0; c < m; c++)
        sum += exp((double)z[c] / T - mx);
    return mx + log(sum) - (double)z[label] / T;
}

double metrics_temperature_nll(const float *logits, int m, const int32_t *y_true, int64_t n, int32_t k,
                               int32_t positive, double T)
{
    double sum = 0;
    int64_t used = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || y_true[i] >= k)
            continue;
        sum += sample_nll(logits + i * m, m, y_true[i], positive, T);
        used++;
    }
    return used ? sum / (double)used : NAN;
}

int metrics_temperature_fit(double *T, double *nll_before, double *nll_after, const float *logits, int m,
                            const int32_t *y_true, int64_t n, int32_t k, int32_t positive, rb_error *err)
{
    *T = 1.0;
    if ((m != 1 && m != k) || (m == 1 && k != 2))
        return rb_fail(err, NULL, "temperature: %d logits per sample for %d classes", m, (int)k);
    if (positive < 0 || positive >= k)
        return rb_fail(err, NULL, "temperature: positive class %d outside [0, %d)", (int)positive, (int)k);
    int64_t used = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || y_true[i] >= k)
            continue;
        used++;
        for (int c = 0; c < m; c++)
            if (!isfinite(logits[i * m + c]))
                return rb_fail(err, "the model produced a non-finite output; check the model file",
                               "temperature: sample %lld has a non-finite logit", (long long)i);
    }
    if (!used)
        return rb_fail(err, "give a validation split with labelled records",
                       "temperature: no labelled sample to fit the temperature on");
    /* golden-section search for the minimum on [log Tmin, log Tmax] */
    const double g = (sqrt(5.0) - 1) / 2;
    double a = log(METRICS_TEMPERATURE_MIN), b = log(METRICS_TEMPERATURE_MAX);
    double c = b - g * (b - a), d = a + g * (b - a);
    double fc = metrics_temperature_nll(logits, m, y_true, n, k, positive, exp(c));
    double fd = metrics_temperature_nll(logits, m, y_true, n, k, positive, exp(d));
    for (int it = 0; it < METRICS_TEMPERATURE_ITERS; it++) {
        if (fc <= fd) {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = metrics_temperature_nll(logits, m, y_true, n, k, positive, exp(c));
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = metrics_temperature_nll(logits, m, y_true, n, k, positive, exp(d));
        }
    }
    *T = exp((a + b) / 2);
    if (nll_before)
        *nll_before = metrics_temperature_nll(logits, m, y_true, n, k, positive, 1.0);
    if (nll_after)
        *nll_after = metrics_temperature_nll(logits, m, y_true, n, k, positive, *T);
    return 0;
}

void metrics_temperature_probs(float *probs, const float *logits, int m, int64_t n, int32_t k, int32_t positive,
                               double T)
{
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * m;
        float *p = probs + i * k;
        if (m == 1) {
            double s = (double)z[0] / T;
            double p1 = s >= 0 ? 1 / (1 + exp(-s)) : exp(s) / (1 + exp(s));
            p[positive] = (float)p1;
            p[1 - positive] = (float)(s >= 0 ? exp(-s) / (1 + exp(-s)) : 1 / (1 + exp(s)));
            continue;
        }
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < k; c++)
            mx = fmax(mx, (double)z[c] / T);
        for (int c = 0; c < k; c++)
            sum += exp((double)z[c] / T - mx);
        for (int c = 0; c < k; c++)
            p[c] = (float)(exp((double)z[c] / T - mx) / sum);
    }
}
