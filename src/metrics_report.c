/* Every metric of a report in one call, metrics_eval_compute (see metrics.h and
 * docs/metrics.md). */
#include "metrics_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
