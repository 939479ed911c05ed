/* The screening threshold's key, the model card's operating point and the choice without
 * labelled data (jobs/threshold.h). */
#include "threshold.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char ACCEPTED[] = "accepted: model, a probability in [0, 1] (e.g. 0.3), youden, "
                               "sensitivity:<target> or specificity:<target> with a target in [0, 1] "
                               "(e.g. sensitivity:0.95)";

/* A number in [0, 1], the whole text. */
static int parse_unit(const char *s, double *v)
{
    if (!*s)
        return -1;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || *end || !isfinite(d) || d < 0 || d > 1)
        return -1;
    *v = d;
    return 0;
}

int threshold_spec_parse(const char *cmd, const char *text, threshold_spec *s, rb_error *err)
{
    s->kind = THRESHOLD_MODEL;
    s->arg = 0;
    if (!strcmp(text, "model"))
        return 0;
    if (!strcmp(text, "youden")) {
        s->kind = THRESHOLD_YOUDEN;
        return 0;
    }
    const char *colon = strchr(text, ':');
    if (colon) {
        size_t l = (size_t)(colon - text);
        threshold_kind k = l == 11 && !strncmp(text, "sensitivity", l)   ? THRESHOLD_SENSITIVITY
                           : l == 11 && !strncmp(text, "specificity", l) ? THRESHOLD_SPECIFICITY
                                                                         : THRESHOLD_MODEL;
        if (k != THRESHOLD_MODEL && parse_unit(colon + 1, &s->arg) == 0) {
            s->kind = k;
            return 0;
        }
        if (k != THRESHOLD_MODEL)
            return rb_fail(err, ACCEPTED, "%s: key 'threshold' = '%s': the target must be a rate in [0, 1]", cmd,
                           text);
    } else if (parse_unit(text, &s->arg) == 0) {
        s->kind = THRESHOLD_VALUE;
        return 0;
    }
    if (!strcmp(text, "sensitivity") || !strcmp(text, "specificity"))
        return rb_fail(err, ACCEPTED, "%s: key 'threshold' = '%s' needs a target, e.g. %s:0.95", cmd, text, text);
    return rb_fail(err, ACCEPTED, "%s: key 'threshold' = '%s' is not a threshold", cmd, text);
}

static const char *kind_word(threshold_kind k)
{
    switch (k) {
    case THRESHOLD_MODEL: return "model";
    case THRESHOLD_VALUE: return "value";
    case THRESHOLD_YOUDEN: return "youden";
    case THRESHOLD_SENSITIVITY: return "sensitivity";
    case THRESHOLD_SPECIFICITY: return "specificity";
    }
    return "?";
}

void threshold_spec_format(threshold_kind kind, double arg, char *buf, size_t cap)
{
    if (kind == THRESHOLD_VALUE)
        snprintf(buf, cap, "%g", arg);
    else if (kind == THRESHOLD_SENSITIVITY || kind == THRESHOLD_SPECIFICITY)
        snprintf(buf, cap, "%s:%g", kind_word(kind), arg);
    else
        snprintf(buf, cap, "%s", kind_word(kind));
}

static void copy_str(char *dst, size_t cap, const cJSON *v)
{
    if (cJSON_IsString(v) && strlen(v->valuestring) < cap)
        snprintf(dst, cap, "%s", v->valuestring);
}

static double num_or_nan(const cJSON *v) { return cJSON_IsNumber(v) ? v->valuedouble : NAN; }

void card_threshold_read(card_threshold *t, const char *card)
{
    memset(t, 0, sizeof *t);
    t->sensitivity = t->specificity = t->target = NAN;
    cJSON *c = card ? cJSON_Parse(card) : NULL;
    const cJSON *th = c ? cJSON_GetObjectItemCaseSensitive(c, "threshold") : NULL;
    const cJSON *v = th ? cJSON_GetObjectItemCaseSensitive(th, "value") : NULL;
    if (!cJSON_IsNumber(v)) {
        cJSON_Delete(c);
        return;
    }
    t->present = 1;
    t->value = v->valuedouble;
    t->method = THRESHOLD_YOUDEN; /* cards of earlier versions: Youden's J on val at training */
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(th, "method");
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring;
        t->method = !strncmp(s, "sensitivity", 11)   ? THRESHOLD_SENSITIVITY
                    : !strncmp(s, "specificity", 11) ? THRESHOLD_SPECIFICITY
                    : !strncmp(s, "value", 5)        ? THRESHOLD_VALUE
                                                     : THRESHOLD_YOUDEN;
    }
    t->target = num_or_nan(cJSON_GetObjectItemCaseSensitive(th, "target"));
    t->sensitivity = num_or_nan(cJSON_GetObjectItemCaseSensitive(th, "sensitivity"));
    t->specificity = num_or_nan(cJSON_GetObjectItemCaseSensitive(th, "specificity"));
    copy_str(t->positive_class, sizeof t->positive_class, cJSON_GetObjectItemCaseSensitive(c, "positive_class"));
    copy_str(t->positive_class, sizeof t->positive_class, cJSON_GetObjectItemCaseSensitive(th, "positive_class"));
    snprintf(t->set_by, sizeof t->set_by, "train");
    copy_str(t->set_by, sizeof t->set_by, cJSON_GetObjectItemCaseSensitive(th, "set_by"));
    /* the data it was chosen on: the threshold's own fields, else (a training card) the
     * training data's val split */
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(c, "data");
    if (data) {
        copy_str(t->split, sizeof t->split, cJSON_GetObjectItemCaseSensitive(data, "val_split"));
        copy_str(t->shards, sizeof t->shards, cJSON_GetObjectItemCaseSensitive(data, "shards"));
        copy_str(t->index_checksum, sizeof t->index_checksum, cJSON_GetObjectItemCaseSensitive(data, "index_checksum"));
    }
    const cJSON *on = cJSON_GetObjectItemCaseSensitive(th, "chosen_on");
    if (on) {
        t->split[0] = t->shards[0] = t->index_checksum[0] = 0;
        copy_str(t->split, sizeof t->split, cJSON_GetObjectItemCaseSensitive(on, "split"));
        copy_str(t->shards, sizeof t->shards, cJSON_GetObjectItemCaseSensitive(on, "data"));
        copy_str(t->index_checksum, sizeof t->index_checksum, cJSON_GetObjectItemCaseSensitive(on, "index_checksum"));
    }
    cJSON_Delete(c);
}

void card_threshold_describe(const card_threshold *t, char *buf, size_t cap)
{
    char rule[64];
    threshold_spec_format(t->method, t->method == THRESHOLD_VALUE ? t->value : t->target, rule, sizeof rule);
    if (t->method == THRESHOLD_VALUE)
        snprintf(rule, sizeof rule, "value given");
    if (*t->split && *t->shards)
        snprintf(buf, cap, "%s on %s of %s", rule, t->split, t->shards);
    else if (*t->shards)
        snprintf(buf, cap, "%s on %s", rule, t->shards);
    else
        snprintf(buf, cap, "%s", rule);
}

const char *threshold_key_origin(const job_config *c)
{
    return job_precedence(c, "threshold") >= 3 ? "command line" : "job file";
}

int threshold_without_data(const char *cmd, const threshold_spec *s, const card_threshold *card,
                           const char *positive_name, const char *origin, double *value, char *source,
                           size_t cap, rb_error *err)
{
    int card_fits = card->present && (!*card->positive_class || !strcmp(card->positive_class, positive_name));
    char desc[1200];
    card_threshold_describe(card, desc, sizeof desc);
    switch (s->kind) {
    case THRESHOLD_VALUE:
        *value = s->arg;
        snprintf(source, cap, "%s", origin);
        return 0;
    case THRESHOLD_MODEL:
        if (card_fits) {
            *value = card->value;
            snprintf(source, cap, "model card: %s", desc);
        } else if (card->present) {
            *value = 0.5;
            snprintf(source, cap, "default 0.5 (the model card's threshold is for %s)", card->positive_class);
        } else {
            *value = 0.5;
            snprintf(source, cap, "default 0.5 (the model card stores none)");
        }
        return 0;
    default:
        break;
    }
    char want[64];
    threshold_spec_format(s->kind, s->arg, want, sizeof want);
    int same_rule = card_fits && card->method == s->kind &&
                    (s->kind == THRESHOLD_YOUDEN || fabs(card->target - s->arg) < 1e-9);
    if (same_rule) {
        *value = card->value;
        snprintf(source, cap, "model card: %s", desc);
        return 0;
    }
    char has[1300];
    if (card_fits)
        snprintf(has, sizeof has, "its card stores %s", desc);
    else
        snprintf(has, sizeof has, "its card stores no operating point for %s", positive_name);
    char hint[512];
    snprintf(hint, sizeof hint,
             "store one with: radbatch evaluate --model model.h5 --data <shards> --split val --threshold %s "
             "--set_threshold model-op.h5, then use model-op.h5 (or give threshold = model, or a value such as 0.3)",
             want);
    return rb_fail(err, hint,
                   "%s: key 'threshold' = '%s' needs labelled data to choose on, or a model whose card stores "
                   "that operating point; %s",
                   cmd, want, has);
}
