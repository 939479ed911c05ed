/* Classification metrics with scikit-learn's semantics; see metrics.h and docs/metrics.md.
 *
 * Where sklearn's value is a float64 expression of integer counts, the same expression is
 * evaluated here in the same order, so results are bitwise equal (integers below 2^53 are
 * exact in a double). Sums of several doubles follow numpy's pairwise summation. */
#include "metrics.h"
#include "rb_rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

/* numpy's pairwise summation of a contiguous float64 array (np.sum / np.add.reduce):
 * below 8 values a plain loop, up to 128 values 8 interleaved accumulators, above that the
 * halves (split at a multiple of 8) summed recursively. */
static double np_sum(const double *a, int64_t n)
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
    return np_sum(a, n2) + np_sum(a + n2, n - n2);
}

/* num / den with sklearn's zero_division="warn": 0.0 when den is 0 */
static double ratio(int64_t num, int64_t den)
{
    return den ? (double)num / (double)den : 0.0;
}

static int check_k(int32_t k, rb_error *err)
{
    if (k < 1)
        return rb_fail(err, "the model must have at least one class",
                       "metrics: %d classes", (int)k);
    return 0;
}

static int check_positive(int32_t k, int32_t positive, rb_error *err)
{
    if (check_k(k, err))
        return -1;
    if (positive < 0 || positive >= k)
        return rb_fail(err, "the positive class is a class index of the model (0-based)",
                       "metrics: positive class %d outside [0, %d)", (int)positive, (int)k);
    return 0;
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
    double wsum = np_sum(w, k);
    for (int f = 0; f < 3; f++) {
        for (int32_t i = 0; i < k; i++) {
            const metrics_prf *r = &c->per_class[i];
            a[i] = f == 0 ? r->precision : f == 1 ? r->recall : r->f1;
        }
        double mean = np_sum(a, k) / (double)k, wmean = mean;
        if (wsum != 0.0) {
            for (int32_t i = 0; i < k; i++)
                a[i] *= w[i];
            wmean = np_sum(a, k) / wsum;
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

/* ------------------------------------------------------- ranked scores (ROC's core) */

/* The labelled samples grouped by distinct score, in decreasing score order. */
typedef struct ranked {
    int64_t m;          /* labelled samples */
    int64_t g;          /* distinct scores */
    double *value;      /* [g] decreasing */
    int64_t *pos, *neg; /* [g] samples of the positive class / of the others */
    int64_t *group;     /* [m] group of the j-th labelled sample (when asked for) */
    uint8_t *is_pos;    /* [m] (when asked for) */
    int64_t n_pos, n_neg, n_ignored;
} ranked;

typedef struct score_idx {
    double s;
    int64_t j;
} score_idx;

static int score_idx_cmp(const void *pa, const void *pb)
{
    const score_idx *a = pa, *b = pb;
    if (a->s != b->s)
        return a->s > b->s ? -1 : 1;
    return (a->j > b->j) - (a->j < b->j);
}

static void ranked_free(ranked *r)
{
    free(r->value);
    free(r->pos);
    free(r->neg);
    free(r->group);
    free(r->is_pos);
    memset(r, 0, sizeof *r);
}

static int ranked_build(ranked *r, const int32_t *y_true, const float *score, int64_t stride,
                        int64_t n, int32_t k, int32_t positive, int per_sample, rb_error *err)
{
    memset(r, 0, sizeof *r);
    if (check_positive(k, positive, err))
        return -1;
    if (n < 0)
        return rb_fail(err, NULL, "metrics: negative sample count %lld", (long long)n);
    score_idx *si = malloc((size_t)(n > 0 ? n : 1) * sizeof *si);
    if (!si)
        return rb_fail(err, NULL, "metrics: out of memory for %lld scores", (long long)n);
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || y_true[i] >= k) {
            r->n_ignored++;
            continue;
        }
        double s = (double)score[i * stride];
        if (!isfinite(s)) {
            free(si);
            return rb_fail(err,
                           "the model produced a non-finite probability; check the model "
                           "file and the training log for divergence",
                           "metrics: score of sample %lld is %g", (long long)i, s);
        }
        si[m].s = s;
        si[m].j = m;
        m++;
    }
    r->m = m;
    uint8_t *lab = malloc((size_t)(m > 0 ? m : 1));
    if (!lab) {
        free(si);
        return rb_fail(err, NULL, "metrics: out of memory for %lld labels", (long long)m);
    }
    for (int64_t i = 0, j = 0; i < n; i++)
        if (y_true[i] >= 0 && y_true[i] < k)
            lab[j++] = y_true[i] == positive;
    qsort(si, (size_t)m, sizeof *si, score_idx_cmp);
    int64_t g = 0;
    for (int64_t j = 0; j < m; j++)
        if (j == 0 || si[j].s != si[j - 1].s)
            g++;
    size_t gc = (size_t)(g > 0 ? g : 1), mc = (size_t)(m > 0 ? m : 1);
    r->value = malloc(gc * sizeof *r->value);
    r->pos = calloc(gc, sizeof *r->pos);
    r->neg = calloc(gc, sizeof *r->neg);
    if (per_sample)
        r->group = malloc(mc * sizeof *r->group);
    if (!r->value || !r->pos || !r->neg || (per_sample && !r->group)) {
        free(si);
        free(lab);
        ranked_free(r);
        return rb_fail(err, NULL, "metrics: out of memory for %lld scores", (long long)m);
    }
    r->g = g;
    int64_t gi = -1;
    for (int64_t j = 0; j < m; j++) {
        if (j == 0 || si[j].s != si[j - 1].s)
            r->value[++gi] = si[j].s;
        if (lab[si[j].j]) {
            r->pos[gi]++;
            r->n_pos++;
        } else {
            r->neg[gi]++;
            r->n_neg++;
        }
        if (per_sample)
            r->group[si[j].j] = gi;
    }
    free(si);
    if (per_sample)
        r->is_pos = lab;
    else
        free(lab);
    return 0;
}

/* Workspace for curves of up to g groups. */
typedef struct curve_ws {
    int64_t *cf, *ct; /* [g] cumulative fps / tps over non-empty groups */
    double *cv;       /* [g] their thresholds */
    int64_t *fps, *tps; /* [g + 1] the kept points, start included */
    double *thr;      /* [g + 1] */
    double *term;     /* [g + 1] trapezoid terms */
} curve_ws;

static void curve_ws_free(curve_ws *w)
{
    free(w->cf);
    free(w->ct);
    free(w->cv);
    free(w->fps);
    free(w->tps);
    free(w->thr);
    free(w->term);
    memset(w, 0, sizeof *w);
}

static int curve_ws_alloc(curve_ws *w, int64_t g, rb_error *err)
{
    memset(w, 0, sizeof *w);
    size_t c = (size_t)g + 1;
    w->cf = malloc(c * sizeof *w->cf);
    w->ct = malloc(c * sizeof *w->ct);
    w->cv = malloc(c * sizeof *w->cv);
    w->fps = malloc(c * sizeof *w->fps);
    w->tps = malloc(c * sizeof *w->tps);
    w->thr = malloc(c * sizeof *w->thr);
    w->term = malloc(c * sizeof *w->term);
    if (!w->cf || !w->ct || !w->cv || !w->fps || !w->tps || !w->thr || !w->term) {
        curve_ws_free(w);
        return rb_fail(err, NULL, "metrics: out of memory for a ROC curve of %lld points",
                       (long long)g);
    }
    return 0;
}

/* sklearn's roc_curve on grouped counts: cumulative counts at each distinct score (groups
 * with no sample skipped: a resample may leave some empty), drop_intermediate (keep the
 * ends and every point where the second difference of fps or tps is non-zero), then the
 * (0, 0) start at +inf. Returns the number of points in w->fps / w->tps / w->thr. */
static int64_t curve_build(curve_ws *w, const double *value, const int64_t *pos,
                           const int64_t *neg, int64_t g)
{
    int64_t L = 0, f = 0, t = 0;
    for (int64_t i = 0; i < g; i++) {
        if (pos[i] + neg[i] == 0)
            continue;
        f += neg[i];
        t += pos[i];
        w->cf[L] = f;
        w->ct[L] = t;
        w->cv[L] = value[i];
        L++;
    }
    int64_t p = 0;
    w->fps[p] = 0;
    w->tps[p] = 0;
    w->thr[p] = INFINITY;
    p++;
    for (int64_t i = 0; i < L; i++) {
        int keep = 1;
        if (L > 2 && i > 0 && i < L - 1)
            keep = (w->cf[i + 1] - w->cf[i]) - (w->cf[i] - w->cf[i - 1]) != 0 ||
                   (w->ct[i + 1] - w->ct[i]) - (w->ct[i] - w->ct[i - 1]) != 0;
        if (!keep)
            continue;
        w->fps[p] = w->cf[i];
        w->tps[p] = w->ct[i];
        w->thr[p] = w->cv[i];
        p++;
    }
    return p;
}

/* sklearn.metrics.auc(fpr, tpr) = numpy.trapezoid(tpr, fpr) over the curve's points:
 * sum of (fpr[i+1] - fpr[i]) * (tpr[i+1] + tpr[i]) / 2.0, pairwise. NaN unless both
 * classes are present (roc_auc_score). */
static double curve_auc(curve_ws *w, int64_t p, int64_t n_pos, int64_t n_neg)
{
    if (n_pos <= 0 || n_neg <= 0)
        return NAN;
    double P = (double)n_pos, N = (double)n_neg;
    for (int64_t i = 0; i + 1 < p; i++) {
        double x0 = (double)w->fps[i] / N, x1 = (double)w->fps[i + 1] / N;
        double y0 = (double)w->tps[i] / P, y1 = (double)w->tps[i + 1] / P;
        w->term[i] = (x1 - x0) * (y1 + y0) / 2.0;
    }
    return np_sum(w->term, p - 1);
}

/* --------------------------------------------------------------------- ROC and AUC */

int metrics_roc_compute(metrics_roc *roc, const int32_t *y_true, const float *score,
                        int64_t stride, int64_t n, int32_t k, int32_t positive, rb_error *err)
{
    memset(roc, 0, sizeof *roc);
    ranked r;
    if (ranked_build(&r, y_true, score, stride, n, k, positive, 0, err))
        return -1;
    curve_ws w;
    if (curve_ws_alloc(&w, r.g, err)) {
        ranked_free(&r);
        return -1;
    }
    int64_t p = curve_build(&w, r.value, r.pos, r.neg, r.g);
    roc->n_pos = r.n_pos;
    roc->n_neg = r.n_neg;
    roc->n_ignored = r.n_ignored;
    roc->auc = curve_auc(&w, p, r.n_pos, r.n_neg);
    roc->fpr = malloc((size_t)p * sizeof *roc->fpr);
    roc->tpr = malloc((size_t)p * sizeof *roc->tpr);
    roc->thresholds = malloc((size_t)p * sizeof *roc->thresholds);
    if (!roc->fpr || !roc->tpr || !roc->thresholds) {
        ranked_free(&r);
        curve_ws_free(&w);
        metrics_roc_free(roc);
        return rb_fail(err, NULL, "metrics: out of memory for a ROC curve of %lld points",
                       (long long)p);
    }
    roc->n_points = p;
    double P = (double)r.n_pos, N = (double)r.n_neg;
    for (int64_t i = 0; i < p; i++) {
        roc->fpr[i] = r.n_neg > 0 ? (double)w.fps[i] / N : NAN;
        roc->tpr[i] = r.n_pos > 0 ? (double)w.tps[i] / P : NAN;
        roc->thresholds[i] = w.thr[i];
    }
    ranked_free(&r);
    curve_ws_free(&w);
    return 0;
}

void metrics_roc_free(metrics_roc *roc)
{
    if (!roc)
        return;
    free(roc->fpr);
    free(roc->tpr);
    free(roc->thresholds);
    roc->fpr = roc->tpr = roc->thresholds = NULL;
    roc->n_points = 0;
}

int metrics_auc(double *auc, const int32_t *y_true, const float *score, int64_t stride,
                int64_t n, int32_t k, int32_t positive, rb_error *err)
{
    ranked r;
    if (ranked_build(&r, y_true, score, stride, n, k, positive, 0, err))
        return -1;
    curve_ws w;
    if (curve_ws_alloc(&w, r.g, err)) {
        ranked_free(&r);
        return -1;
    }
    int64_t p = curve_build(&w, r.value, r.pos, r.neg, r.g);
    *auc = curve_auc(&w, p, r.n_pos, r.n_neg);
    ranked_free(&r);
    curve_ws_free(&w);
    return 0;
}

int metrics_auc_ovr(double *per_class, double *macro, double *weighted, const int32_t *y_true,
                    const float *probs, int64_t n, int32_t k, rb_error *err)
{
    if (check_k(k, err))
        return -1;
    double *buf = calloc((size_t)k * 3, sizeof *buf);
    if (!buf)
        return rb_fail(err, NULL, "metrics: out of memory for %d classes", (int)k);
    double *auc = buf, *w = buf + k, *aw = buf + 2 * k;
    for (int32_t c = 0; c < k; c++) {
        if (metrics_auc(&auc[c], y_true, probs + c, k, n, k, c, err)) {
            free(buf);
            return -1;
        }
    }
    for (int64_t i = 0; i < n; i++)
        if (y_true[i] >= 0 && y_true[i] < k)
            w[y_true[i]] += 1.0;
    if (per_class)
        memcpy(per_class, auc, (size_t)k * sizeof *auc);
    if (macro)
        *macro = np_sum(auc, k) / (double)k; /* NaN if any class is undefined */
    if (weighted) {
        /* sklearn: 0 when there is no sample at all; classes of weight 0 are set to 0 so
         * that their NaN does not spread; then sum(a * w) / sum(w) */
        double wsum = np_sum(w, k);
        if (wsum == 0.0) {
            *weighted = 0.0;
        } else {
            for (int32_t c = 0; c < k; c++)
                aw[c] = (w[c] == 0.0 ? 0.0 : auc[c]) * w[c];
            *weighted = np_sum(aw, k) / wsum;
        }
    }
    free(buf);
    return 0;
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

/* ---------------------------------------------------------------- threshold choice */

static const char *const rule_names[] = {"fixed", "youden", "sensitivity", "specificity"};

const char *metrics_threshold_rule_name(metrics_threshold_rule rule)
{
    if ((int)rule < 0 || (int)rule > METRICS_THRESHOLD_SPECIFICITY)
        return "?";
    return rule_names[rule];
}

int metrics_threshold_rule_parse(const char *s, metrics_threshold_rule *rule)
{
    for (int i = 0; i <= METRICS_THRESHOLD_SPECIFICITY; i++)
        if (s && strcmp(s, rule_names[i]) == 0) {
            *rule = (metrics_threshold_rule)i;
            return 0;
        }
    return -1;
}

int metrics_threshold_choose(double *threshold, metrics_threshold_rule rule, double target,
                             const int32_t *y_true, const float *score, int64_t stride,
                             int64_t n, int32_t k, int32_t positive, rb_error *err)
{
    if (rule == METRICS_THRESHOLD_FIXED) {
        if (check_positive(k, positive, err))
            return -1;
        *threshold = target;
        return 0;
    }
    if (rule != METRICS_THRESHOLD_YOUDEN && rule != METRICS_THRESHOLD_SENSITIVITY &&
        rule != METRICS_THRESHOLD_SPECIFICITY)
        return rb_fail(err, "use fixed, youden, sensitivity or specificity",
                       "metrics: unknown threshold rule %d", (int)rule);
    if (rule != METRICS_THRESHOLD_YOUDEN && !(target >= 0.0 && target <= 1.0))
        return rb_fail(err, "a target sensitivity or specificity is in [0, 1], e.g. 0.95",
                       "metrics: threshold target %g outside [0, 1]", target);
    ranked r;
    if (ranked_build(&r, y_true, score, stride, n, k, positive, 0, err))
        return -1;
    int need_pos = rule != METRICS_THRESHOLD_SPECIFICITY;
    int need_neg = rule != METRICS_THRESHOLD_SENSITIVITY;
    if ((need_pos && r.n_pos == 0) || (need_neg && r.n_neg == 0)) {
        ranked_free(&r);
        return rb_fail(err,
                       "choose the threshold on data holding both classes (the validation "
                       "split), or give a fixed threshold",
                       "metrics: cannot choose a %s threshold: %s of class %d in the data",
                       rule_names[rule], r.n_pos == 0 ? "no sample" : "only samples",
                       (int)positive);
    }
    double P = (double)r.n_pos, N = (double)r.n_neg;
    if (rule == METRICS_THRESHOLD_YOUDEN) {
        curve_ws w;
        if (curve_ws_alloc(&w, r.g, err)) {
            ranked_free(&r);
            return -1;
        }
        int64_t p = curve_build(&w, r.value, r.pos, r.neg, r.g);
        /* J = tpr - fpr = (tps N - fps P) / (P N): compared exactly in integers, so that
         * equal J are ties whatever the rounding; the first (largest threshold) wins */
        int64_t best = 0, bestj = 0; /* the start point, J = 0 */
        for (int64_t i = 1; i < p; i++) {
            int64_t j = w.tps[i] * r.n_neg - w.fps[i] * r.n_pos;
            if (j > bestj) {
                best = i;
                bestj = j;
            }
        }
        *threshold = w.thr[best];
        curve_ws_free(&w);
    } else if (rule == METRICS_THRESHOLD_SENSITIVITY) {
        /* decreasing thresholds: +inf (nothing called positive), then each distinct
         * score; the first reaching the target is the largest */
        *threshold = INFINITY;
        int64_t tp = 0;
        if (0.0 / P < target) /* +inf does not reach the target */
            for (int64_t i = 0; i < r.g; i++) {
                tp += r.pos[i];
                if ((double)tp / P >= target) {
                    *threshold = r.value[i];
                    break;
                }
            }
    } else {
        /* increasing thresholds from the smallest score; at value[i] the negatives below
         * it are those of the later groups; +inf when no score reaches the target */
        *threshold = INFINITY;
        int64_t below = 0;
        for (int64_t i = r.g - 1; i >= 0; i--) {
            if ((double)below / N >= target) {
                *threshold = r.value[i];
                break;
            }
            below += r.neg[i];
        }
    }
    ranked_free(&r);
    return 0;
}

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
    if (ranked_build(&r, y_true, score, stride, n, k, positive, 1, err))
        return -1;
    if (r.m >= ((int64_t)1 << 32)) {
        ranked_free(&r);
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
    if (curve_ws_alloc(&w, g, err)) {
        ranked_free(&r);
        return -1;
    }
    {
        int64_t p = curve_build(&w, r.value, r.pos, r.neg, g);
        b->auc.estimate = curve_auc(&w, p, r.n_pos, r.n_neg);
    }
    size_t gc = (size_t)(g > 0 ? g : 1);
    int64_t *pb = malloc(gc * sizeof *pb), *nb = malloc(gc * sizeof *nb);
    double *vals = malloc((size_t)resamples * 4 * sizeof *vals);
    if (!pb || !nb || !vals) {
        free(pb);
        free(nb);
        free(vals);
        ranked_free(&r);
        curve_ws_free(&w);
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
            int64_t p = curve_build(&w, r.value, pb, nb, g);
            v_auc[n_auc++] = curve_auc(&w, p, P, N);
        }
    }
    ci_finish(&b->accuracy, v_acc, n_acc, level);
    ci_finish(&b->sensitivity, v_sens, n_sens, level);
    ci_finish(&b->specificity, v_spec, n_spec, level);
    ci_finish(&b->auc, v_auc, n_auc, level);
    free(pb);
    free(nb);
    free(vals);
    ranked_free(&r);
    curve_ws_free(&w);
    return 0;
}

/* ----------------------------------------------------------- everything for a report */

void metrics_eval_config_default(metrics_eval_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->positive = -1;
    cfg->rule = METRICS_THRESHOLD_FIXED;
    cfg->threshold = 0.5;
    cfg->target = 0.95;
    cfg->bootstrap = 1000;
    cfg->seed = 0;
    cfg->level = 0.95;
}

int metrics_eval_compute(metrics_eval *ev, const metrics_eval_config *cfg,
                         const int32_t *y_true, const int32_t *y_pred, const float *probs,
                         int64_t n, int32_t k, rb_error *err)
{
    memset(ev, 0, sizeof *ev);
    ev->auc_macro = ev->auc_weighted = NAN;
    if (check_k(k, err))
        return -1;
    if (!y_pred && !probs)
        return rb_fail(err, NULL, "metrics: neither predictions nor probabilities given");
    ev->k = k;
    ev->n = n;
    ev->confusion = calloc((size_t)k * (size_t)k, sizeof *ev->confusion);
    int32_t *pred = NULL;
    if (!y_pred)
        pred = malloc((size_t)(n > 0 ? n : 1) * sizeof *pred);
    if (!ev->confusion || (!y_pred && !pred)) {
        free(pred);
        metrics_eval_free(ev);
        return rb_fail(err, NULL, "metrics: out of memory for %lld samples", (long long)n);
    }
    if (!y_pred) {
        metrics_argmax(pred, probs, n, k);
        y_pred = pred;
    }
    ev->n_ignored = metrics_confusion_add(ev->confusion, k, y_true, y_pred, n);
    free(pred);
    if (metrics_classification_compute(&ev->cls, ev->confusion, k, err))
        goto fail;
    if (!probs)
        return 0;

    ev->has_probs = 1;
    ev->auc_ovr = malloc((size_t)k * sizeof *ev->auc_ovr);
    if (!ev->auc_ovr) {
        rb_fail(err, NULL, "metrics: out of memory for %d classes", (int)k);
        goto fail;
    }
    if (metrics_auc_ovr(ev->auc_ovr, &ev->auc_macro, &ev->auc_weighted, y_true, probs, n, k,
                        err))
        goto fail;
    if (cfg->positive < 0)
        return 0;

    int32_t pos = cfg->positive;
    const float *score = probs + (pos < k ? pos : 0);
    double thr = cfg->threshold;
    ev->threshold_rule = cfg->rule;
    if (cfg->rule != METRICS_THRESHOLD_FIXED &&
        metrics_threshold_choose(&thr, cfg->rule, cfg->target, y_true, score, k, n, k, pos,
                                 err))
        goto fail;
    if (metrics_screening_compute(&ev->screening, y_true, score, k, n, k, pos, thr, err) ||
        metrics_roc_compute(&ev->roc, y_true, score, k, n, k, pos, err))
        goto fail;
    ev->has_screening = 1;
    if (metrics_calibration_compute(&ev->calibration, y_true, score, k, n, k, pos, err))
        goto fail;
    ev->has_calibration = 1;
    if (cfg->bootstrap > 0) {
        if (metrics_bootstrap_compute(&ev->bootstrap, y_true, score, k, n, k, pos, thr,
                                      cfg->bootstrap, cfg->seed, cfg->level, err))
            goto fail;
        ev->has_bootstrap = 1;
    }
    return 0;
fail:
    metrics_eval_free(ev);
    return -1;
}

void metrics_eval_free(metrics_eval *ev)
{
    if (!ev)
        return;
    free(ev->confusion);
    ev->confusion = NULL;
    metrics_classification_free(&ev->cls);
    free(ev->auc_ovr);
    ev->auc_ovr = NULL;
    metrics_roc_free(&ev->roc);
    ev->has_probs = ev->has_screening = ev->has_bootstrap = ev->has_calibration = 0;
}
