/* Classification metrics with scikit-learn's semantics; see metrics.h and docs/metrics.md.
 *
 * Where sklearn's value is a float64 expression of integer counts, the same expression is
 * evaluated here in the same order, so results are bitwise equal (integers below 2^53 are
 * exact in a double). Sums of several doubles follow numpy's pairwise summation.
 *
 * This file: numpy's summation, the confusion matrix, per-class scores and averages, binary
 * screening. ROC and AUC: metrics_roc.c; threshold choice: metrics_threshold.c; bootstrap
 * intervals: metrics_bootstrap.c; everything for a report: metrics_report.c. */
#include "metrics_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* numpy's pairwise summation of a contiguous float64 array (np.sum / np.add.reduce):
 * below 8 values a plain loop, up to 128 values 8 interleaved accumulators, above that the
 * halves (split at a multiple of 8) summed recursively. */
double metrics_np_sum(const double *a, int64_t n)
{
    if (n < 8) {
        double res = -0.0;
        for (int64_t i = 0; i < n; i++)
            res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8];
        int64_t i;
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return metrics_np_sum(a, n2) + metrics_np_sum(a + n2, n - n2);
}

/* ------------------------------------------------------------------ confusion matrix */

int64_t metrics_confusion_add(int64_t *cm, int32_t k, const int32_t *y_true,
                              const int32_t *y_pred, int64_t n)
{
    int64_t skipped = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t t = y_true[i], p = y_pred[i];
        if (t < 0 || t >= k || p < 0 || p >= k) {
            skipped++;
            continue;
        }
        cm[(int64_t)t * k + p]++;
    }
    return skipped;
}

void metrics_argmax(int32_t *y_pred, const float *probs, int64_t n, int32_t k)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = probs + i * k;
        int32_t best = 0;
        if (!isnan(row[0]))
            for (int32_t j = 1; j < k; j++) {
                if (isnan(row[j])) { /* numpy: the first NaN wins */
                    best = j;
                    break;
                }
                if (row[j] > row[best])
                    best = j;
            }
        y_pred[i] = best;
    }
}

void metrics_predict_threshold(int32_t *y_pred, const float *probs, int64_t n, int32_t k,
                               int32_t positive, double threshold)
{
    for (int64_t i = 0; i < n; i++) {
        const float *row = probs + i * k;
        if ((double)row[positive] >= threshold) {
            y_pred[i] = positive;
            continue;
        }
        int32_t best = -1;
        for (int32_t j = 0; j < k; j++)
            if (j != positive && (best < 0 || row[j] > row[best]))
                best = j;
        y_pred[i] = best < 0 ? positive : best; /* k == 1: nothing else to predict */
    }
}

/* --------------------------------------------------------- per-class and averages */

int metrics_classification_compute(metrics_classification *c, const int64_t *cm, int32_t k,
                                   rb_error *err)
{
    memset(c, 0, sizeof *c);
    if (check_k(k, err))
        return -1;
    c->k = k;
    c->per_class = calloc((size_t)k, sizeof *c->per_class);
    double *tmp = calloc((size_t)k * 2, sizeof *tmp);
    if (!c->per_class || !tmp) {
        free(tmp);
        metrics_classification_free(c);
        return rb_fail(err, NULL, "metrics: out of memory for %d classes", (int)k);
    }
    for (int32_t i = 0; i < k; i++) {
        metrics_prf *r = &c->per_class[i];
        int64_t tp = cm[(int64_t)i * k + i];
        for (int32_t j = 0; j < k; j++) {
            r->support += cm[(int64_t)i * k + j];
            r->predicted += cm[(int64_t)j * k + i];
        }
        r->precision = ratio(tp, r->predicted);
        r->recall = ratio(tp, r->support);
        /* sklearn: (1 + b^2) tp / (b^2 true_sum + pred_sum) with b = 1 */
        double den = (double)r->support + (double)r->predicted;
        r->f1 = den != 0.0 ? (2.0 * (double)tp) / den : 0.0;
        c->total += r->support;
        c->correct += tp;
    }
    /* micro average = accuracy: every pair counted is in [0, k) on both sides */
    c->accuracy = ratio(c->correct, c->total);

    /* macro: numpy.nanmean = pairwise sum / k; weighted: sum(a * w) / sum(w), or the plain
     * mean when every weight is 0 (sklearn's _nanaverage) */
    double *a = tmp, *w = tmp + k;
    for (int32_t i = 0; i < k; i++)
        w[i] = (double)c->per_class[i].support;
    double wsum = metrics_np_sum(w, k);
    for (int f = 0; f < 3; f++) {
        for (int32_t i = 0; i < k; i++) {
            const metrics_prf *r = &c->per_class[i];
            a[i] = f == 0 ? r->precision : f == 1 ? r->recall : r->f1;
        }
        double mean = metrics_np_sum(a, k) / (double)k, wmean = mean;
        if (wsum != 0.0) {
            for (int32_t i = 0; i < k; i++)
                a[i] *= w[i];
            wmean = metrics_np_sum(a, k) / wsum;
        }
        double *m = f == 0 ? &c->macro.precision : f == 1 ? &c->macro.recall : &c->macro.f1;
        double *wm = f == 0   ? &c->weighted.precision
                     : f == 1 ? &c->weighted.recall
                              : &c->weighted.f1;
        *m = mean;
        *wm = wmean;
    }
    c->macro.support = c->weighted.support = c->total;
    c->macro.predicted = c->weighted.predicted = c->total;
    free(tmp);
    return 0;
}

void metrics_classification_free(metrics_classification *c)
{
    if (!c)
        return;
    free(c->per_class);
    c->per_class = NULL;
}

/* ---------------------------------------------------------------- binary screening */

int64_t metrics_binary_counts_add(int64_t counts[4], const int32_t *y_true, const float *score,
                                  int64_t stride, int64_t n, int32_t k, int32_t positive,
                                  double threshold)
{
    int64_t skipped = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || y_true[i] >= k) {
            skipped++;
            continue;
        }
        int called = (double)score[i * stride] >= threshold;
        int is_pos = y_true[i] == positive;
        if (called)
            counts[is_pos ? 0 : 1]++; /* tp : fp */
        else
            counts[is_pos ? 3 : 2]++; /* fn : tn */
    }
    return skipped;
}

void metrics_screening_from_counts(metrics_screening *s, int64_t tp, int64_t fp, int64_t tn,
                                   int64_t fn)
{
    s->tp = tp;
    s->fp = fp;
    s->tn = tn;
    s->fn = fn;
    s->sensitivity = ratio(tp, tp + fn);
    s->specificity = ratio(tn, tn + fp);
    s->ppv = ratio(tp, tp + fp);
    s->npv = ratio(tn, tn + fn);
    double fden = 2.0 * (double)tp + (double)fp + (double)fn;
    s->f1 = fden != 0.0 ? 2.0 * (double)tp / fden : 0.0;
    int64_t n = tp + fp + tn + fn;
    s->accuracy = ratio(tp + tn, n);

    /* sklearn's matthews_corrcoef, in float64 as it computes it */
    double N = (double)n, t0 = (double)(tn + fp), t1 = (double)(tp + fn);
    double p0 = (double)(tn + fn), p1 = (double)(tp + fp);
    double cov_ytyp = (double)(tp + tn) * N - (t0 * p0 + t1 * p1);
    double cov_ypyp = N * N - (p0 * p0 + p1 * p1);
    double cov_ytyt = N * N - (t0 * t0 + t1 * t1);
    double prod = cov_ypyp * cov_ytyt;
    s->mcc = prod == 0.0 ? 0.0 : cov_ytyp / sqrt(prod);

    /* balanced_accuracy_score: mean recall over the classes present in y_true */
    if (tp + fn > 0 && tn + fp > 0)
        s->balanced_accuracy = (s->specificity + s->sensitivity) / 2.0;
    else if (tp + fn > 0)
        s->balanced_accuracy = s->sensitivity;
    else if (tn + fp > 0)
        s->balanced_accuracy = s->specificity;
    else
        s->balanced_accuracy = 0.0;
}

void metrics_screening_from_confusion(metrics_screening *s, const int64_t *cm, int32_t k,
                                      int32_t positive)
{
    int64_t tp = 0, fp = 0, tn = 0, fn = 0;
    for (int32_t t = 0; t < k; t++)
        for (int32_t p = 0; p < k; p++) {
            int64_t c = cm[(int64_t)t * k + p];
            if (t == positive)
                *(p == positive ? &tp : &fn) += c;
            else
                *(p == positive ? &fp : &tn) += c;
        }
    metrics_screening_from_counts(s, tp, fp, tn, fn);
    s->positive = positive;
}

int metrics_screening_compute(metrics_screening *s, const int32_t *y_true, const float *score,
                              int64_t stride, int64_t n, int32_t k, int32_t positive,
                              double threshold, rb_error *err)
{
    memset(s, 0, sizeof *s);
    if (check_positive(k, positive, err))
        return -1;
    if (isnan(threshold))
        return rb_fail(err, "give a number, e.g. 0.5", "metrics: the threshold is NaN");
    for (int64_t i = 0; i < n; i++)
        if (y_true[i] >= 0 && y_true[i] < k && !isfinite(score[i * stride]))
            return rb_fail(err,
                           "the model produced a non-finite probability; check the model "
                           "file and the training log for divergence",
                           "metrics: score of sample %lld is %g", (long long)i,
                           (double)score[i * stride]);
    int64_t c[4] = {0, 0, 0, 0};
    int64_t skipped = metrics_binary_counts_add(c, y_true, score, stride, n, k, positive,
                                                threshold);
    metrics_screening_from_counts(s, c[0], c[1], c[2], c[3]);
    s->positive = positive;
    s->threshold = threshold;
    s->n_ignored = skipped;
    return 0;
}

