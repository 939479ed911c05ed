/* A trained radbatch model ready for inference: the network, its class names and the
 * preprocessing it was trained with (from the model card), the decision threshold chosen
 * on validation data, and a workspace. Used by evaluate, predict and infer, so all three
 * preprocess and decide exactly as training did. Several files form an ensemble whose
 * probabilities are averaged; test-time augmentation (TTA) averages over flips/shifts. */
#ifndef TRAINED_MODEL_H
#define TRAINED_MODEL_H

#include "image.h"
#include "model.h"
#include "rb_error.h"
#include "threshold.h"

#include <stdint.h>

#define TRAINED_MAX_MEMBERS 16

typedef struct trained_model {
    int nmembers;
    rb_model *m[TRAINED_MAX_MEMBERS];
    rb_workspace *ws[TRAINED_MAX_MEMBERS];
    char *path[TRAINED_MAX_MEMBERS];
    char *card;            /* first member's model card (JSON text), may be NULL */
    double temperature[TRAINED_MAX_MEMBERS]; /* each member card's calibration temperature (1: none):
                                              * its probabilities are softmax(logits / T) or sigmoid */
    int nclasses;
    char **class_names;
    int positive;          /* index of the positive class (binary screening) */
    double threshold;      /* on the positive-class probability; 0.5 when none stored */
    int has_threshold;
    card_threshold op;     /* the card's operating point: how and where the threshold was chosen */
    char threshold_rule[64];      /* the `threshold` key it was resolved from ("model", "0.3", ...) */
    char threshold_source[1400];  /* where it came from, for reports: "model card: youden on val of s/" */
    int height, width, channels;
    resize_mode resize;
    int dct_scaling;
    int batch;             /* workspace batch */
    int tta;               /* 0 none, else number of views (1 + flips/shifts) */
    float *acc;            /* [batch * nclasses] accumulator */
    float *cal;            /* [batch * nclasses] one member's calibrated probabilities */
    uint8_t *tmp;          /* [batch * H*W*C] augmented views */
} trained_model;

/* Load one or more comma-separated model files (same classes and input size). */
int trained_model_load(trained_model *t, const char *paths, int batch, int threads, rb_error *err);
void trained_model_free(trained_model *t);
/* tta: 0 = off; 1 = flip; 2 = flip + 4 small shifts (views are averaged; the key: OPT_HELP_TTA). */
void trained_model_set_tta(trained_model *t, int tta);

/* Class probabilities probs[n * nclasses] of n preprocessed images [n, H, W, C] (n <= batch). */
int trained_model_predict(trained_model *t, const uint8_t *images, int n, float *probs, rb_error *err);

/* The threshold of predict and infer (no labelled data): the `threshold` key resolved
 * against the card (threshold.h threshold_without_data); sets threshold, threshold_rule
 * and threshold_source. origin: "command line" or "job file". -1 with err: exit 2. */
int trained_model_apply_threshold(trained_model *t, const char *cmd, const threshold_spec *s, const char *origin,
                                  rb_error *err);

/* The same before the models are loaded, from the first file's header alone (cheap: no
 * weights), so a run folder is not touched for a threshold the card cannot serve. 0 with
 * *value and source set, or also 0 with source "" when the header cannot be read (the load
 * reports that); -1 with err: exit 2. */
int trained_model_peek_threshold(const char *paths, const char *cmd, const threshold_spec *s, const char *origin,
                                 double *value, char *source, size_t cap, rb_error *err);

/* A copy of the first member's file with another model card: same architecture, class
 * names and weights (bit for bit), every checksum written anew (model_file_save). */
int trained_model_save_copy(const trained_model *t, const char *path, const char *card, rb_error *err);

/* Decision for one probability vector: argmax, or for two classes the threshold on the
 * positive class. */
int trained_model_decide(const trained_model *t, const float *probs);

/* Read an image file and preprocess it as the model's training data was. */
int trained_model_load_image(const trained_model *t, const char *path, uint8_t *out, image_info *info,
                             rb_error *err);

#endif
