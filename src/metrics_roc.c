/* ROC curves and AUC with sklearn's semantics (see metrics.h and docs/metrics.md): the
 * labelled samples ranked by score, the curve built on them, its area. */
#include "metrics_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- ranked scores (ROC's core) */

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

void metrics_ranked_free(ranked *r)
{
    free(r->value);
    free(r->pos);
    free(r->neg);
    free(r->group);
    free(r->is_pos);
    memset(r, 0, sizeof *r);
}

int metrics_ranked_build(ranked *r, const int32_t *y_true, const float *score, int64_t stride,
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
        metrics_ranked_free(r);
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


void metrics_curve_ws_free(curve_ws *w)
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

int metrics_curve_ws_alloc(curve_ws *w, int64_t g, rb_error *err)
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
        metrics_curve_ws_free(w);
        return rb_fail(err, NULL, "metrics: out of memory for a ROC curve of %lld points",
                       (long long)g);
    }
    return 0;
}

/* sklearn's roc_curve on grouped counts: cumulative counts at each distinct score (groups
 * with no sample skipped: a resample may leave some empty), drop_intermediate (keep the
 * ends and every point where the second difference of fps or tps is non-zero), then the
 * (0, 0) start at +inf. Returns the number of points in w->fps / w->tps / w->thr. */
int64_t metrics_curve_build(curve_ws *w, const double *value, const int64_t *pos,
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
double metrics_curve_auc(curve_ws *w, int64_t p, int64_t n_pos, int64_t n_neg)
{
    if (n_pos <= 0 || n_neg <= 0)
        return NAN;
    double P = (double)n_pos, N = (double)n_neg;
    for (int64_t i = 0; i + 1 < p; i++) {
        double x0 = (double)w->fps[i] / N, x1 = (double)w->fps[i + 1] / N;
        double y0 = (double)w->tps[i] / P, y1 = (double)w->tps[i + 1] / P;
        w->term[i] = (x1 - x0) * (y1 + y0) / 2.0;
    }
    return metrics_np_sum(w->term, p - 1);
}

/* --------------------------------------------------------------------- ROC and AUC */

/* The samples ranked and their curve (*p points in w); on failure nothing is left to free. */
static int roc_build(ranked *r, curve_ws *w, int64_t *p, const int32_t *y_true, const float *score,
                     int64_t stride, int64_t n, int32_t k, int32_t positive, rb_error *err)
{
    if (metrics_ranked_build(r, y_true, score, stride, n, k, positive, 0, err))
        return -1;
    if (metrics_curve_ws_alloc(w, r->g, err)) {
        metrics_ranked_free(r);
        return -1;
    }
    *p = metrics_curve_build(w, r->value, r->pos, r->neg, r->g);
    return 0;
}

int metrics_roc_compute(metrics_roc *roc, const int32_t *y_true, const float *score,
                        int64_t stride, int64_t n, int32_t k, int32_t positive, rb_error *err)
{
    memset(roc, 0, sizeof *roc);
    ranked r;
    curve_ws w;
    int64_t p;
    if (roc_build(&r, &w, &p, y_true, score, stride, n, k, positive, err))
        return -1;
    roc->n_pos = r.n_pos;
    roc->n_neg = r.n_neg;
    roc->n_ignored = r.n_ignored;
    roc->auc = metrics_curve_auc(&w, p, r.n_pos, r.n_neg);
    roc->fpr = malloc((size_t)p * sizeof *roc->fpr);
    roc->tpr = malloc((size_t)p * sizeof *roc->tpr);
    roc->thresholds = malloc((size_t)p * sizeof *roc->thresholds);
    if (!roc->fpr || !roc->tpr || !roc->thresholds) {
        metrics_ranked_free(&r);
        metrics_curve_ws_free(&w);
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
    metrics_ranked_free(&r);
    metrics_curve_ws_free(&w);
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
    curve_ws w;
    int64_t p;
    if (roc_build(&r, &w, &p, y_true, score, stride, n, k, positive, err))
        return -1;
    *auc = metrics_curve_auc(&w, p, r.n_pos, r.n_neg);
    metrics_ranked_free(&r);
    metrics_curve_ws_free(&w);
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
        *macro = metrics_np_sum(auc, k) / (double)k; /* NaN if any class is undefined */
    if (weighted) {
        /* sklearn: 0 when there is no sample at all; classes of weight 0 are set to 0 so
         * that their NaN does not spread; then sum(a * w) / sum(w) */
        double wsum = metrics_np_sum(w, k);
        if (wsum == 0.0) {
            *weighted = 0.0;
        } else {
            for (int32_t c = 0; c < k; c++)
                aw[c] = (w[c] == 0.0 ? 0.0 : auc[c]) * w[c];
            *weighted = metrics_np_sum(aw, k) / wsum;
        }
    }
    free(buf);
    return 0;
}
