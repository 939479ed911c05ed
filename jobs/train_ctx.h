/* The state of one `radbatch train` run (docs/train.md) and the functions of its parts:
 * job_train.c (the command: options and the run as named steps), train_setup.c (model,
 * stages, optimizer), train_loop.c (epochs, steps, validation, callbacks), train_cache.c
 * (the frozen-base feature cache), train_files.c (the run folder's files: model cards,
 * model and checkpoint files, history.csv, train_log.jsonl). Internal to those files. */
#ifndef TRAIN_CTX_H
#define TRAIN_CTX_H

#include "augment.h"
#include "job_config.h"
#include "train_keys.h"
#include "model.h"
#include "optim.h"
#include "rb_buf.h"
#include "rb_error.h"
#include "rb_mpi.h"
#include "shard_dataset.h"

#include <stdint.h>

/* The metrics of an epoch, in history.csv's column order. */
enum { M_LOSS, M_ACC, M_VLOSS, M_VACC, M_VSENS, M_VSPEC, M_VAUC, M_COUNT };
extern const char *const train_metric_names[M_COUNT];

/* A model with what training it needs: workspaces, optimizer, trainable ranges. */
typedef struct train_net {
    rb_model *m;
    rb_workspace *ws;      /* training, local batch */
    rb_workspace *ws_eval; /* inference */
    optim opt;
    optim_config ocfg;
    optim_range *ranges, *kernels;
    int nranges, nkernels;
    int64_t span_off, span_len;
} train_net;

/* The frozen-base feature cache of a stage (train_cache.c). */
typedef struct train_cache {
    int on;                /* this stage trains the head on cached base features */
    train_net head;        /* the head alone */
    float *train, *val;    /* [n, dim] base features of every record of each split */
    int64_t dim;
} train_cache;

/* The best epoch so far and the callbacks' counters (best model, early stopping, reduce LR). */
typedef struct train_best {
    double value;          /* of best_metric; NAN before the first epoch */
    int64_t epoch;
    int wait_es, wait_lr;  /* epochs without improvement */
    double metrics[M_COUNT];
    float *params, *state; /* restore_best copy of the weights and BatchNorm statistics */
} train_best;

/* The current epoch's running sums over all ranks, and this rank's allreduce time. */
typedef struct train_epoch_sums {
    double loss, correct, seen;
    double t_allreduce;    /* seconds in the gradient allreduce this epoch */
} train_epoch_sums;

/* Rank 0: the last validation's scores, for the decision threshold. */
typedef struct train_val_scores {
    float *scores;         /* positive-class probability of every val record */
    int32_t *labels;       /* label of every val record */
    float *logits;         /* [n * m] the output's logits of every val record */
    int m;                 /* logits per record: 1 (sigmoid) or the number of classes */
    int64_t n;
} train_val_scores;

/* calibrate = temperature: the fitted temperature and what it did on val (rank 0). */
typedef struct train_calibration {
    int fitted;
    double temperature;
    double nll_before, nll_after, ece_before, ece_after, brier_before, brier_after;
} train_calibration;

typedef struct train_ctx {
    job_config cfg;
    train_keys keys;       /* the keys, typed (train_keys.h); filled before any work */
    int rank_batch;        /* the most records of a global batch one rank holds: ceil(batch_size / ranks) */
    rb_world w;
    const char *run_dir;
    char *job_text;        /* the configuration, for model cards */
    /* data */
    shard_dataset tr, va;
    int have_val;
    int nclasses;
    char **class_names;
    int positive;
    char index_checksum[17];
    int64_t *perm;         /* [tr.n] the epoch's order of the training records */
    /* model and step */
    train_net net;         /* the whole model */
    train_net *a;          /* the one being trained: &net, or &cache.head */
    train_cache cache;
    float *class_weight;   /* [nclasses] or NULL */
    int sigmoid;
    float *dlogits;
    float *targets;        /* binary targets for sigmoid */
    /* progress: what a checkpoint stores to continue exactly */
    int stage;             /* 1 or 2 */
    int64_t epoch;         /* current epoch (0-based, over both stages) */
    int64_t step;          /* optimizer steps taken */
    int64_t next_batch;    /* first batch of the epoch still to do (resume) */
    float lr;
    int64_t step_start;    /* x->step when this invocation began training (after a resume) */
    int stop_requested;    /* SIGTERM seen by some rank, agreed at the last step */
    train_epoch_sums sums;
    double metrics[M_COUNT];
    train_best best;
    rb_buf history;        /* CSV rows so far (without header) */
    train_val_scores val;
    train_calibration calib;
} train_ctx;

/* ---- train_setup.c: model, stages, optimizer ---- */
/* Compute threads of this rank (the `threads` key, else the world's default, 1..64). */
int train_threads(const train_ctx *x);
/* The weights of the classes from class_weight (none: x->class_weight stays NULL). */
int train_parse_class_weight(train_ctx *x, rb_error *err);
/* Build the model of the job (head keys, freezing, pretrained weights or init_model). */
int train_build_model(train_ctx *x, rb_error *err);
/* Enter stage 1 or 2 (fine-tuning: the top of the base unfrozen): fresh optimizer, workspaces. */
int train_setup_stage(train_ctx *x, int stage, rb_error *err);
/* Fresh optimizer state at lr for x->a, and its trainable ranges. */
int train_setup_stage_optim(train_ctx *x, float lr, rb_error *err);
/* (Re)make x->a's workspaces after the trainable flags changed. */
int train_setup_workspaces(train_ctx *x, rb_error *err);
/* The BatchNorm reduction of sync_bn (a sum over ranks). */
void train_bn_reduce(double *buf, int64_t len, void *ctx);
/* The augmentation keys of the job. */
void train_aug_from_config(train_ctx *x, augment_config *out);
void train_net_free(train_net *n);

/* ---- train_loop.c: epochs, steps, validation, callbacks ---- */
/* The SIGTERM handler: the run stops after the same step on every rank. */
void train_on_sigterm(int sig);
/* Epochs of both stages from x->epoch on; *preempted when SIGTERM stopped them. */
int train_run_epochs(train_ctx *x, int *preempted, rb_error *err);
/* Metrics of the val split into x->metrics (rank 0 also keeps the scores). */
int train_validate(train_ctx *x, rb_error *err);
/* Every rank must hold the same weights: a checksum compared across ranks. */
int train_check_consistency(train_ctx *x, rb_error *err);

/* ---- train_cache.c: the frozen-base feature cache ---- */
int train_cache_begin(train_ctx *x, const augment_config *aug, rb_error *err);
/* The head's weights and optimizer state into the whole model. */
void train_cache_push(train_ctx *x);
void train_cache_end(train_ctx *x);
/* A checkpoint of the whole model, also during a cached stage. */
int train_save_checkpoint_full(train_ctx *x, rb_error *err);

/* ---- train_files.c: the run folder's files ---- */
void train_history_add(train_ctx *x, double seconds);
int train_history_write(train_ctx *x, rb_error *err);
/* The model card (JSON, malloc'd); final: with the decision threshold when finite. */
char *train_model_card(train_ctx *x, int final, double threshold);
int train_save_model(train_ctx *x, const char *path, const char *card, int with_optim, rb_error *err);
int train_save_checkpoint(train_ctx *x, rb_error *err);
int train_load_checkpoint(train_ctx *x, const char *path, rb_error *err);
/* <run_dir>/train_log.jsonl: one "start" or "end" line (rank 0). */
int train_log(train_ctx *x, const char *event, const char *status, const char *ckpt, rb_error *err);
/* resume = true: load the newest complete checkpoint (*resumed_from) and best.h5. */
int train_resume(train_ctx *x, char **resumed_from, rb_error *err);
/* model.h5, the "end" line of train_log.jsonl, then summary.json (rank 0). */
int train_write_final(train_ctx *x, double threshold, rb_error *err);

#endif
