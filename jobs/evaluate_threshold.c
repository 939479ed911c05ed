/* radbatch evaluate, steps 5 and 6 (docs/evaluate.md "Decisions and the screening
 * class"): rank 0 fixes the screening threshold (the model card's, a rule on the gathered
 * scores, or a given value); every rank decides its records with it. */
#include "evaluate.h"

#include <stdio.h>
#include <stdlib.h>

const char *evaluate_threshold_rule(const eval_ctx *x)
{
    static const char *names[] = {"model", "youden", "sensitivity", "specificity", "fixed"};
    return names[x->thr.rule];
}

/* Rank 0: the screening threshold on all records. */
int evaluate_choose_threshold(eval_ctx *x, rb_error *err)
{
    x->thr.value = 0.5;
    if (x->positive < 0) {
        snprintf(x->thr.source, sizeof x->thr.source, "none (no screening class)");
        return 0;
    }
    if (x->thr.rule == THR_MODEL) {
        x->thr.value = x->tm.has_threshold && x->positive == x->tm.positive ? x->tm.threshold : 0.5;
        if (x->tm.has_threshold && x->positive != x->tm.positive)
            snprintf(x->thr.source, sizeof x->thr.source, "default 0.5 (the model card's threshold is for %s)",
                     x->tm.class_names[x->tm.positive]);
        else if (x->tm.has_threshold)
            snprintf(x->thr.source, sizeof x->thr.source, "model card (chosen on the validation split at training)");
        else
            snprintf(x->thr.source, sizeof x->thr.source, "default 0.5 (the model card stores none)");
        return 0;
    }
    if (x->thr.rule == THR_FIXED) {
        x->thr.value = x->keys.threshold_value;
        snprintf(x->thr.source, sizeof x->thr.source, "fixed by threshold_value");
        return 0;
    }
    /* a rule on this data's scores: readable records only, in record order */
    int64_t m = 0;
    int32_t *y = malloc((size_t)(x->n ? x->n : 1) * sizeof *y);
    float *s = malloc((size_t)(x->n ? x->n : 1) * sizeof *s);
    if (!y || !s) {
        free(y);
        free(s);
        return rb_fail(err, NULL, "out of memory");
    }
    for (int64_t i = 0; i < x->n; i++)
        if (x->all.ok[i]) {
            y[m] = x->all.labels[i];
            s[m++] = x->all.probs[i * x->k + x->positive];
        }
    metrics_threshold_rule rule = x->thr.rule == THR_YOUDEN        ? METRICS_THRESHOLD_YOUDEN
                                  : x->thr.rule == THR_SENSITIVITY ? METRICS_THRESHOLD_SENSITIVITY
                                                                   : METRICS_THRESHOLD_SPECIFICITY;
    double target = x->keys.target;
    int rc = metrics_threshold_choose(&x->thr.value, rule, target, y, s, 1, m, x->k, x->positive, err);
    free(y);
    free(s);
    if (rc < 0)
        return rb_error_prefix(err, "evaluate: threshold = %s: ", evaluate_threshold_rule(x));
    if (x->thr.rule == THR_YOUDEN)
        snprintf(x->thr.source, sizeof x->thr.source, "youden: max sensitivity + specificity - 1 on this data");
    else
        snprintf(x->thr.source, sizeof x->thr.source, "%s threshold with %s >= %g on this data",
                 x->thr.rule == THR_SENSITIVITY ? "largest" : "smallest",
                 x->thr.rule == THR_SENSITIVITY ? "sensitivity" : "specificity", target);
    return 0;
}

/* Decisions of n probability rows: the threshold for two classes, else the argmax. */
void evaluate_decide(const eval_ctx *x, const float *probs, int64_t n, int32_t *y_pred)
{
    if (x->k == 2 && x->positive >= 0)
        metrics_predict_threshold(y_pred, probs, n, x->k, x->positive, x->thr.value);
    else
        metrics_argmax(y_pred, probs, n, x->k);
}
