/* The screening threshold (operating point) of evaluate, predict and infer: one key,
 * `threshold`, one parser and one chooser shared by the three (docs/evaluate.md
 * "Operating points").
 *
 *   threshold = model                 the model card's operating point (0.5 when it has none)
 *             | <value>               a probability in [0, 1], e.g. 0.3
 *             | youden                Youden's J
 *             | sensitivity:<target>  the largest threshold with sensitivity >= target
 *             | specificity:<target>  the smallest threshold with specificity >= target
 *
 * The three rules need labelled data: evaluate computes them on the data it evaluates;
 * predict and infer, which have no labels, take the operating point stored in the model
 * card when it was chosen by the same rule and target (`evaluate --set_threshold` stores
 * one), and otherwise stop with exit 2 and a hint how to store one. */
#ifndef THRESHOLD_H
#define THRESHOLD_H

#include "job_config.h"
#include "rb_error.h"

#include <stddef.h>

typedef enum {
    THRESHOLD_MODEL,
    THRESHOLD_VALUE,
    THRESHOLD_YOUDEN,
    THRESHOLD_SENSITIVITY,
    THRESHOLD_SPECIFICITY,
} threshold_kind;

typedef struct threshold_spec {
    threshold_kind kind;
    double arg; /* VALUE: the threshold; SENSITIVITY / SPECIFICITY: the target rate */
} threshold_spec;

/* The operating point a model card records ("threshold" object, docs/formats-model.md). */
typedef struct card_threshold {
    int present;
    double value;
    threshold_kind method;  /* YOUDEN, SENSITIVITY, SPECIFICITY or VALUE */
    double target;          /* SENSITIVITY / SPECIFICITY */
    char positive_class[128];
    char split[64];         /* the split it was chosen on ("" unknown) */
    char shards[1024];      /* the shards folder (or data) it was chosen on */
    char index_checksum[17];/* that folder's index.json checksum ("" unknown) */
    double sensitivity, specificity; /* measured there (NaN unknown) */
    char set_by[32];        /* "train", "evaluate" */
} card_threshold;

/* Parse the text of `threshold` for `cmd` ("evaluate", "predict", "infer"); -1 with err
 * naming the key and listing the accepted forms. */
int threshold_spec_parse(const char *cmd, const char *text, threshold_spec *s, rb_error *err);
/* "model", "0.3", "youden", "sensitivity:0.95" */
void threshold_spec_format(threshold_kind kind, double arg, char *buf, size_t cap);

/* Read the card's "threshold" object (card: JSON text of the whole card, may be NULL).
 * Older cards (method "youden (...)", no split) fall back to the card's data section. */
void card_threshold_read(card_threshold *t, const char *card);

/* "youden on val of shards/" (method, split and data of a card's operating point). */
void card_threshold_describe(const card_threshold *t, char *buf, size_t cap);

/* Where the key's value came from: "command line" or "job file". */
const char *threshold_key_origin(const job_config *c);

/* The threshold without labelled data (predict, infer; evaluate for `model` and a value).
 * positive_name: the class screened for. *value and source (cap bytes) are set; -1 with
 * err (exit 2) when the card holds no operating point of the rule asked for. */
int threshold_without_data(const char *cmd, const threshold_spec *s, const card_threshold *card,
                           const char *positive_name, const char *origin, double *value, char *source,
                           size_t cap, rb_error *err);

#endif
