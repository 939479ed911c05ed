/* radbatch evaluate, steps 5 and 6 (docs/evaluate.md "Decisions and the screening
 * class", "Operating points"): rank 0 fixes the screening threshold (the model card's, a
 * given value, or a rule on the gathered scores), says where it came from and whether it
 * was chosen on the split this run reports; every rank decides its records with it. After
 * the metrics, rank 0 may store the operating point in a copy of the model
 * (set_threshold). */
#include "evaluate.h"
#include "json_number.h"
#include "rb_log.h"
#include "shard_index.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The split this run reports: the split of a shards folder or of split image folders,
 * else "" (plain class folders). */
static const char *evaluated_split(const eval_ctx *x)
{
    return x->is_shards || x->img_splits ? x->keys.split : "";
}

/* "val of shards/" or "xrays/test/" */
static void describe_data(const eval_ctx *x, char *buf, size_t cap)
{
    const char *split = evaluated_split(x);
    if (*split)
        snprintf(buf, cap, "%s of %s", split, x->data);
    else
        snprintf(buf, cap, "%s", x->data);
}

/* Was the card's operating point chosen on the data this run reports? Same split name,
 * and the same shards: equal index.json checksums when both are known, else the same
 * folder. */
static int card_chose_on_this_data(const eval_ctx *x, const card_threshold *op)
{
    if (!*op->split || strcmp(op->split, evaluated_split(x)) != 0)
        return 0;
    if (x->is_shards && *op->index_checksum) {
        char cs[17];
        rb_error e;
        if (shard_index_checksum(x->data, cs, &e) == 0)
            return strcmp(cs, op->index_checksum) == 0;
    }
    if (!*op->shards)
        return 0;
    char *a = realpath(x->data, NULL), *b = realpath(op->shards, NULL);
    int same = a && b && strcmp(a, b) == 0;
    free(a);
    free(b);
    return same;
}

/* Rank 0: the screening threshold on all records. */
int evaluate_choose_threshold(eval_ctx *x, rb_error *err)
{
    x->thr.value = 0.5;
    x->thr.same_split = 0;
    x->thr.warning[0] = 0;
    if (x->positive < 0) {
        snprintf(x->thr.source, sizeof x->thr.source, "none (no screening class)");
        return 0;
    }
    const threshold_spec *sp = &x->thr.spec;
    char where[1100];
    describe_data(x, where, sizeof where);
    if (sp->kind == THRESHOLD_MODEL || sp->kind == THRESHOLD_VALUE) {
        if (threshold_without_data("evaluate", sp, &x->tm.op, x->tm.class_names[x->positive],
                                   threshold_key_origin(&x->cfg), &x->thr.value, x->thr.source,
                                   sizeof x->thr.source, err) < 0)
            return -1;
        if (sp->kind == THRESHOLD_MODEL && x->tm.op.present && x->tm.op.method != THRESHOLD_VALUE &&
            !strcmp(x->tm.op.positive_class, x->tm.class_names[x->positive]) && card_chose_on_this_data(x, &x->tm.op)) {
            x->thr.same_split = 1;
            snprintf(x->thr.warning, sizeof x->thr.warning,
                     "the threshold was chosen on the split this report is on (%s; %s): sensitivity and "
                     "specificity here are optimistic; report on a split the threshold was not chosen on (e.g. test)",
                     where, x->thr.source);
            rb_warn("%s", x->thr.warning);
        }
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
    metrics_threshold_rule rule = sp->kind == THRESHOLD_YOUDEN        ? METRICS_THRESHOLD_YOUDEN
                                  : sp->kind == THRESHOLD_SENSITIVITY ? METRICS_THRESHOLD_SENSITIVITY
                                                                      : METRICS_THRESHOLD_SPECIFICITY;
    int rc = metrics_threshold_choose(&x->thr.value, rule, sp->arg, y, s, 1, m, x->k, x->positive, err);
    free(y);
    free(s);
    if (rc < 0)
        return rb_error_prefix(err, "evaluate: threshold = %s: ", x->thr.rule);
    snprintf(x->thr.source, sizeof x->thr.source, "%s on %s (this data)", x->thr.rule, where);
    x->thr.same_split = 1;
    snprintf(x->thr.warning, sizeof x->thr.warning,
             "the threshold was chosen on the data this report is on (%s): sensitivity and specificity here are "
             "optimistic; store it with --set_threshold and report on a split it was not chosen on (e.g. test)",
             x->thr.source);
    rb_warn("%s", x->thr.warning);
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

static const char *method_word(threshold_kind k)
{
    return k == THRESHOLD_YOUDEN ? "youden" : k == THRESHOLD_SENSITIVITY ? "sensitivity"
                                          : k == THRESHOLD_SPECIFICITY   ? "specificity"
                                                                         : "value";
}

/* Rank 0: a copy of the model whose card records this run's operating point. */
int evaluate_store_threshold(const eval_ctx *x, const metrics_eval *ev, rb_error *err)
{
    const char *path = x->keys.set_threshold;
    if (!*path)
        return 0;
    if (!isfinite(x->thr.value))
        return rb_fail(err, "choose another target (no finite threshold reaches it on this data)",
                       "evaluate: set_threshold: the threshold is %g, no decision rule to store", x->thr.value);
    cJSON *c = x->tm.card ? cJSON_Parse(x->tm.card) : NULL;
    if (!c)
        c = cJSON_CreateObject();
    const char *pos = x->tm.class_names[x->positive];
    cJSON_DeleteItemFromObjectCaseSensitive(c, "positive_class");
    cJSON_AddStringToObject(c, "positive_class", pos);
    cJSON_DeleteItemFromObjectCaseSensitive(c, "threshold");
    cJSON *th = cJSON_AddObjectToObject(c, "threshold");
    json_add_exact_number(th, "value", x->thr.value);
    const threshold_spec *sp = &x->thr.spec;
    cJSON_AddStringToObject(th, "method", method_word(sp->kind));
    if (sp->kind == THRESHOLD_SENSITIVITY || sp->kind == THRESHOLD_SPECIFICITY)
        json_add_exact_number(th, "target", sp->arg);
    cJSON_AddStringToObject(th, "positive_class", pos);
    cJSON_AddStringToObject(th, "applies_to", "probability of positive_class; positive when >= value");
    cJSON *on = cJSON_AddObjectToObject(th, "chosen_on");
    char *abs = realpath(x->data, NULL); /* a path that still names the data from elsewhere */
    cJSON_AddStringToObject(on, "data", abs ? abs : x->data);
    free(abs);
    cJSON_AddStringToObject(on, "kind", x->is_shards ? "shards" : "images");
    cJSON_AddStringToObject(on, "split", evaluated_split(x));
    char cs[17] = "";
    rb_error e;
    if (x->is_shards && shard_index_checksum(x->data, cs, &e) < 0)
        cs[0] = 0;
    if (*cs)
        cJSON_AddStringToObject(on, "index_checksum", cs);
    else
        cJSON_AddNullToObject(on, "index_checksum");
    json_add_exact_number(on, "records", (double)(x->counts[0] - x->counts[2]));
    json_add_exact_number(on, "tta", (double)x->keys.tta);
    json_add_exact_number(th, "sensitivity", ev->screening.sensitivity);
    json_add_exact_number(th, "specificity", ev->screening.specificity);
    cJSON_AddStringToObject(th, "set_by", "evaluate");
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(th, "created", when);
    cJSON_AddStringToObject(th, "source_model", x->tm.path[0]);
    char *card = cJSON_Print(c);
    cJSON_Delete(c);
    if (!card)
        return rb_fail(err, NULL, "out of memory");
    int rc = trained_model_save_copy(&x->tm, path, card, err);
    free(card);
    if (rc < 0)
        return rb_error_prefix(err, "evaluate: set_threshold: ");
    char t[32];
    evaluate_fmt4(t, sizeof t, x->thr.value);
    rb_info("operating point stored: %s (threshold %s for %s, %s; sensitivity %.4f, specificity %.4f there)", path, t,
            pos, x->thr.source, ev->screening.sensitivity, ev->screening.specificity);
    return 0;
}
