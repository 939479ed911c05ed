/* Choosing a screening threshold: fixed, Youden's J, or a target sensitivity or
 * specificity (see metrics.h and docs/metrics.md). */
#include "metrics_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    if (metrics_ranked_build(&r, y_true, score, stride, n, k, positive, 0, err))
        return -1;
    int need_pos = rule != METRICS_THRESHOLD_SPECIFICITY;
    int need_neg = rule != METRICS_THRESHOLD_SENSITIVITY;
    if ((need_pos && r.n_pos == 0) || (need_neg && r.n_neg == 0)) {
        metrics_ranked_free(&r);
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
        if (metrics_curve_ws_alloc(&w, r.g, err)) {
            metrics_ranked_free(&r);
            return -1;
        }
        int64_t p = metrics_curve_build(&w, r.value, r.pos, r.neg, r.g);
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
        metrics_curve_ws_free(&w);
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
    metrics_ranked_free(&r);
    return 0;
}
