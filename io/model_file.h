/* radbatch's own model and checkpoint file (HDF5; layout in docs/formats-model.md).
 *
 * One file holds what is needed to rebuild and run a model: the architecture (an opaque
 * text the model code writes and parses: its model description), a model card (JSON), the
 * class names and every weight and state tensor by layer name with its Keras shape. A
 * checkpoint adds the optimizer state and the training position, so a resumed run
 * continues exactly. Loading is two calls, because the model must exist before its
 * weights can be read:
 *
 *     model_file_header h;
 *     model_file_read_header(path, &h, &err);      // architecture, classes, ...
 *     ... build the model from h.architecture ...
 *     model_file_load_weights(path, views, n, &err);
 *     if (h.has_optimizer) model_file_load_optimizer(path, state, h.optimizer_state_len, &err);
 *
 * Saving writes `<path>.tmp-<pid>`, fsyncs it and renames it over `path`, so a crash never
 * leaves a half-written file under the real name. Values round-trip bit for bit. */
#ifndef MODEL_FILE_H
#define MODEL_FILE_H

#include "model_params.h"
#include "rb_error.h"

#include <stdint.h>

#define MODEL_FILE_FORMAT "radbatch-model"
#define MODEL_FILE_VERSION 2              /* written: every tensor and the card carry an XXH3-64 */
#define MODEL_FILE_VERSION_NO_CHECKSUMS 1 /* still read, with a warning: no checksums to verify */

/* Where a training run stands; enough, with the job file, to resume it exactly (the data
 * order and every random draw are functions of rng_seed, epoch and sample index). */
typedef struct model_file_train_state {
    int64_t epoch;             /* epochs completed */
    int64_t step;              /* optimizer steps (global batches) taken in total */
    int64_t data_position;     /* samples of epoch `epoch` already consumed: resume point */
    uint64_t rng_seed;         /* the run's seed */
    double best_metric;        /* best value so far of best_metric_name; NaN when none */
    char best_metric_name[64]; /* "val_loss", "" when none */
} model_file_train_state;

/* The optimizer part of a checkpoint: opaque to this file (src/optim.h knows the layout). */
typedef struct model_file_optimizer {
    char kind[32];      /* "adam", "sgd", "rmsprop" */
    int64_t step;       /* the optimizer's own iteration counter */
    const char *config; /* its hyperparameters as JSON text, or NULL */
    int64_t n;          /* floats of state */
    const float *state;
} model_file_optimizer;

typedef struct model_file_contents {
    const char *architecture;       /* required: the model description text */
    const char *model_card;         /* JSON text, or NULL */
    const char *const *class_names; /* n_classes UTF-8 names (may be 0) */
    int n_classes;
    const rb_param_view *views;     /* every weight and state tensor, model order */
    int n_views;
    const model_file_optimizer *optimizer;     /* NULL: a plain model file */
    const model_file_train_state *train_state; /* NULL: none */
} model_file_contents;

int model_file_save(const char *path, const model_file_contents *c, rb_error *err);

typedef struct model_file_header {
    int format_version;
    int has_checksums;         /* version 2: every checksum was present and verified */
    char *architecture;        /* malloc'd */
    char *model_card;          /* malloc'd, NULL when absent */
    int n_classes;
    char **class_names;        /* malloc'd */
    char radbatch_version[64]; /* of the writer */
    int64_t n_tensors;         /* weight + state tensors in the file */
    int64_t n_values;          /* their floats */
    int has_optimizer;
    char optimizer_kind[32];
    int64_t optimizer_step;
    int64_t optimizer_state_len;
    char *optimizer_config; /* malloc'd JSON text, NULL when absent */
    int has_train_state;
    model_file_train_state train_state;
} model_file_header;

/* Validates the magic and the version, reads everything but the tensors, and verifies the
 * checksums of the architecture, the model card, the class names and (checkpoints) the
 * optimizer and train-state attributes. */
int model_file_read_header(const char *path, model_file_header *h, rb_error *err);
void model_file_header_free(model_file_header *h);

/* Reads every view's tensor; the file must hold exactly these tensors (same layer and
 * weight names, same shapes), or the error names the first difference. Each tensor's
 * XXH3-64 is checked against its xxh3 attribute, and a NaN or Inf in a tensor is an error
 * naming it. A version-1 file (no checksums) loads with a warning. */
int model_file_load_weights(const char *path, const rb_param_view *views, int n_views,
                            rb_error *err);

/* The same for diagnostics (inspect --diff). flags: MODEL_FILE_ALLOW_NONFINITE loads NaN
 * and Inf values. checksum_ok: NULL, or [n_views] set to 1 where the tensor's checksum
 * matches (or the file has none) and 0 where it does not; a mismatch is then not an error. */
#define MODEL_FILE_ALLOW_NONFINITE 1u
int model_file_load_weights_opt(const char *path, const rb_param_view *views, int n_views, unsigned flags,
                                int8_t *checksum_ok, rb_error *err);

/* Reads the optimizer state (n floats, as the header's optimizer_state_len) and checks its
 * XXH3-64 (values are not checked for finiteness). */
int model_file_load_optimizer(const char *path, float *state, int64_t n, rb_error *err);

/* Checks a whole file without a model to load it into: the header's checksums, every
 * tensor's checksum and finiteness, and (checkpoints) the optimizer state's checksum. The
 * error names the file and the first damaged part. */
int model_file_verify(const char *path, rb_error *err);

#endif
