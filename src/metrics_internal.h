/* What the metrics files (metrics.c, metrics_roc.c, metrics_threshold.c,
 * metrics_bootstrap.c, metrics_report.c) share: numpy's summation, sklearn's zero division,
 * argument checks, and the ranked scores and curves that ROC, threshold choice and the
 * bootstrap are built on. Not part of the engine's API (metrics.h is). */
#ifndef RB_METRICS_INTERNAL_H
#define RB_METRICS_INTERNAL_H

#include "metrics.h"

#include <stdint.h>

/* numpy's pairwise summation of a contiguous float64 array (np.sum / np.add.reduce):
 * below 8 values a plain loop, up to 128 values 8 interleaved accumulators, above that the
 * halves (split at a multiple of 8) summed recursively. */
double metrics_np_sum(const double *a, int64_t n);

/* num / den with sklearn's zero_division="warn": 0.0 when den is 0 */
static inline double ratio(int64_t num, int64_t den)
{
    return den ? (double)num / (double)den : 0.0;
}

static inline int check_k(int32_t k, rb_error *err)
{
    if (k < 1)
        return rb_fail(err, "the model must have at least one class",
                       "metrics: %d classes", (int)k);
    return 0;
}

static inline int check_positive(int32_t k, int32_t positive, rb_error *err)
{
    if (check_k(k, err))
        return -1;
    if (positive < 0 || positive >= k)
        return rb_fail(err, "the positive class is a class index of the model (0-based)",
                       "metrics: positive class %d outside [0, %d)", (int)positive, (int)k);
    return 0;
}

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

/* Group the labelled samples (label in [0, k)) by distinct score score[i * stride]; with
 * per_sample, also each sample's group and label. A non-finite score is an error. */
int metrics_ranked_build(ranked *r, const int32_t *y_true, const float *score, int64_t stride, int64_t n,
                         int32_t k, int32_t positive, int per_sample, rb_error *err);
void metrics_ranked_free(ranked *r);

/* Workspace for curves of up to g groups. */
typedef struct curve_ws {
    int64_t *cf, *ct; /* [g] cumulative fps / tps over non-empty groups */
    double *cv;       /* [g] their thresholds */
    int64_t *fps, *tps; /* [g + 1] the kept points, start included */
    double *thr;      /* [g + 1] */
    double *term;     /* [g + 1] trapezoid terms */
} curve_ws;

int metrics_curve_ws_alloc(curve_ws *w, int64_t g, rb_error *err);
void metrics_curve_ws_free(curve_ws *w);
/* sklearn's roc_curve on grouped counts (metrics_roc.c); the number of points in w->fps /
 * w->tps / w->thr. */
int64_t metrics_curve_build(curve_ws *w, const double *value, const int64_t *pos, const int64_t *neg,
                            int64_t g);
/* sklearn.metrics.auc over the first p points of the curve; NaN unless both classes are
 * present. */
double metrics_curve_auc(curve_ws *w, int64_t p, int64_t n_pos, int64_t n_neg);

#endif
