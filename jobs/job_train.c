/* radbatch train: synchronous data-parallel training over MPI ranks (docs/train.md).
 *
 * Every rank holds the whole model. Each step, rank r computes the gradient sum of its
 * slice of the global batch (loss normalised by the global batch size), one allreduce
 * (SUM) over the single contiguous gradient span gives the mean gradient everywhere, and
 * every rank applies the same optimizer step. Randomness (shuffle, augmentation, dropout)
 * is keyed by (seed, epoch, epoch position), so the run does not depend on the number of
 * ranks beyond float summation order. Rank 0 prints, validates, writes history.csv,
 * checkpoints and model files.
 *
 * This file is the command: its keys and the run as the steps of docs/train.md "What a run
 * does"; the parts are in train_setup.c, train_loop.c, train_cache.c and train_files.c
 * (train_ctx.h). */
#include "commands.h"
#include "fsutil.h"
#include "job_marker.h"
#include "job_run.h"
#include "metrics.h"
#include "rb_log.h"
#include "train_checkpoint.h"
#include "train_ctx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const opt_spec train_opts[] = {
    /* data */
    {"shards", OPT_STRING, "", NULL, "shards folder written by radbatch convert"},
    {"train_split", OPT_STRING, "train", NULL, "split to train on (never test)"},
    {"val_split", OPT_STRING, "val", NULL, "split to validate on every epoch (empty: none; never test)"},
    {"run_dir", OPT_STRING, "", NULL, "output folder: model.h5, best.h5, history.csv, checkpoints/"},
    {"cache_mb", OPT_INT, "4096", NULL, "keep a split in memory when its pixels fit in this many MiB per rank"},
    /* model */
    {"backbone", OPT_CHOICE, "mobilenetv2", "mobilenetv2|cnn", "base network (cnn = the seed-001 CNN)"},
    {"weights", OPT_STRING, "", NULL,
     "pretrained Keras weights for the base (.h5, .weights.h5 or .keras), matched by layer name"},
    {"weights_partial", OPT_BOOL, "false", NULL,
     "accept a weight file that fits only part of the base (the rest stays random); false: that is an error"},
    {"init_model", OPT_STRING, "", NULL, "start from this radbatch model file instead (same architecture)"},
    {"head_pooling", OPT_CHOICE, "auto", "auto|gap|flatten", "after the base (auto: gap for mobilenetv2, flatten for cnn)"},
    {"head_dropout", OPT_FLOAT, "-1", NULL, "dropout after pooling (-1: 0.3 for mobilenetv2, 0 for cnn)"},
    {"head_units", OPT_STRING, "auto", NULL, "hidden Dense units, comma-separated (auto: 128 for mobilenetv2, 512 for cnn)"},
    {"head_activation", OPT_CHOICE, "relu", "relu|relu6|linear", "activation of the hidden Dense layers"},
    {"head_dense_dropout", OPT_FLOAT, "0", NULL, "dropout after each hidden Dense layer"},
    {"output", OPT_CHOICE, "softmax", "softmax|sigmoid", "softmax over the classes, or one sigmoid unit (two classes)"},
    {"freeze_base", OPT_BOOL, "true", NULL, "train only the head in the first stage (mobilenetv2)"},
    {"base_training", OPT_BOOL, "false", NULL,
     "base BatchNorms use batch statistics when trainable (Keras base_model(x, training=True))"},
    /* optimisation */
    {"epochs", OPT_INT, "3", NULL, "epochs of the first stage"},
    {"batch_size", OPT_INT, "32", NULL, "global batch size (split over the ranks)"},
    {"optimizer", OPT_CHOICE, "adam", "adam|sgd|rmsprop", "optimizer with Keras' defaults"},
    {"learning_rate", OPT_FLOAT, "1e-4", NULL, "learning rate of the first stage"},
    {"momentum", OPT_FLOAT, "0", NULL, "SGD/RMSprop momentum"},
    {"nesterov", OPT_BOOL, "false", NULL, "SGD Nesterov momentum"},
    {"loss", OPT_CHOICE, "auto", "auto|sparse_categorical_crossentropy|binary_crossentropy",
     "auto: sparse categorical CE for softmax, binary CE for sigmoid"},
    {"class_weight", OPT_STRING, "none", NULL, "none, balanced (n/(k*n_c) as sklearn), or one weight per class, comma-separated"},
    {"label_smoothing", OPT_FLOAT, "0", NULL, "label smoothing of the loss"},
    {"l2", OPT_FLOAT, "0", NULL, "L2 on trainable Conv2D/Dense kernels (loss += l2*sum(w^2))"},
    {"seed", OPT_INT, "123", NULL, "seed of initialisation, shuffle, augmentation and dropout"},
    {"shuffle", OPT_BOOL, "true", NULL, "shuffle the training records every epoch"},
    /* augmentation (docs/augment.md) */
    {"rotation", OPT_FLOAT, "0", NULL, "random rotation range, degrees"},
    {"width_shift", OPT_FLOAT, "0", NULL, "random horizontal shift range, fraction of the width"},
    {"height_shift", OPT_FLOAT, "0", NULL, "random vertical shift range, fraction of the height"},
    {"shear", OPT_FLOAT, "0", NULL, "random shear range, degrees"},
    {"zoom", OPT_FLOAT, "0", NULL, "random zoom range z: scale in [1-z, 1+z]"},
    {"horizontal_flip", OPT_BOOL, "false", NULL, "random horizontal flips"},
    {"vertical_flip", OPT_BOOL, "false", NULL, "random vertical flips"},
    {"rot90", OPT_BOOL, "false", NULL, "random multiples of 90 degrees"},
    {"crop", OPT_FLOAT, "0", NULL, "random crop keeping this share of each side, resized back (0: none)"},
    {"brightness", OPT_FLOAT, "0", NULL, "random brightness change range (fraction)"},
    {"contrast", OPT_FLOAT, "0", NULL, "random contrast change range (fraction)"},
    {"fill_mode", OPT_CHOICE, "nearest", "nearest|constant|reflect", "how pixels outside the image are filled"},
    {"fill_value", OPT_FLOAT, "0", NULL, "pixel value for fill_mode = constant (Keras cval)"},
    /* callbacks */
    {"best_metric", OPT_CHOICE, "val_loss", "val_loss|val_accuracy|val_auc|loss",
     "metric that picks the best model (min for losses, max otherwise)"},
    {"early_stopping_patience", OPT_INT, "0", NULL, "stop after this many epochs without improvement (0: off)"},
    {"restore_best", OPT_BOOL, "true", NULL, "the final model gets the best epoch's weights"},
    {"reduce_lr_patience", OPT_INT, "0", NULL, "reduce the learning rate after this many epochs without improvement (0: off)"},
    {"reduce_lr_factor", OPT_FLOAT, "0.2", NULL, "factor of the reduction"},
    {"min_lr", OPT_FLOAT, "0", NULL, "learning rate floor of the reduction"},
    /* fine-tuning stage (seed 003) */
    {"fine_tune_epochs", OPT_INT, "0", NULL, "epochs of a second stage with the top of the base unfrozen (0: none)"},
    {"fine_tune_fraction", OPT_FLOAT, "0.3", NULL, "share of the base's layers (from the top) trained in the second stage"},
    {"fine_tune_learning_rate", OPT_FLOAT, "1e-5", NULL, "learning rate of the second stage (fresh optimizer state)"},
    /* distributed, checkpoints */
    {"sync_bn", OPT_BOOL, "false", NULL, "trainable BatchNorm uses statistics of the global batch (sum over ranks)"},
    {"threads", OPT_INT, "0", NULL, "compute threads per rank (0: SLURM_CPUS_PER_TASK or cores / ranks on the node)"},
    {"checkpoint_every_steps", OPT_INT, "0", NULL, "also checkpoint every N steps (0: only at epoch ends)"},
    {"resume", OPT_BOOL, "false", NULL, "continue from the newest complete checkpoint in run_dir"},
    {"overwrite", OPT_BOOL, "false", NULL,
     "start afresh in a run_dir that holds an earlier run (false: such a run_dir is refused unless resume = true)"},
    {"feature_cache", OPT_CHOICE, "auto", "auto|true|false",
     "with a frozen base and no augmentation, compute base features once and train the head on them"},
    {"positive_class", OPT_STRING, "", NULL, "class whose sensitivity is reported (default: the last class, e.g. PNEUMONIA)"},
    {"max_steps", OPT_INT, "0", NULL, "stop after this many steps in total (0: no limit; for tests and smoke runs)"},
    {"model_summary", OPT_CHOICE, "short", "short|full",
     "the model in the log: one line (layers, params, trainable), or Keras' full per-layer table"},
    {"quiet", OPT_BOOL, "false", NULL, "no progress lines"},
    {NULL, 0, NULL, NULL, NULL},
};

/* What in run_dir shows an earlier run (finished or started), or NULL: a fresh start there
 * without resume or overwrite would replace it silently. */
static const char *earlier_run_file(const char *run_dir)
{
    static const char *files[] = {"summary.json", "model.h5", "best.h5", "train_log.jsonl", "history.csv"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *p = fs_join(run_dir, files[i]);
        int there = p && access(p, F_OK) == 0;
        free(p);
        if (there)
            return files[i];
    }
    char *ck = checkpoint_find_latest(run_dir);
    const char *what = ck ? "checkpoints/" : NULL;
    free(ck);
    return what;
}

/* The splits train reads: never the held-out test split (docs/train.md). */
static int check_splits(const job_config *c, rb_error *err)
{
    static const char *keys[] = {"train_split", "val_split"};
    for (int k = 0; k < 2; k++) {
        const char *v = job_str(c, keys[k]);
        if (*v && shard_index_split_id(v) == 2) { /* test */
            rb_fail(err, "the test split is held out for the final report (radbatch evaluate --split test); "
                    "train on train and validate on val",
                    "train: key '%s' = '%s': training never reads the test split", keys[k], v);
            return JOB_BAD_CONFIG;
        }
    }
    return 0;
}

/* 1. The shards' index checksum, the run folder made and marked unfinished (summary.json
 *    removed), the train and val splits opened, the classes and the positive class. */
static int train_open_data(train_ctx *x, rb_error *err)
{
    job_config *c = &x->cfg;
    x->run_dir = job_str(c, "run_dir");
    if (!*job_str(c, "shards"))
        return rb_fail(err, "set shards = <folder written by radbatch convert>", "train: no shards folder");
    if (!*x->run_dir)
        return rb_fail(err, "set run_dir = <output folder>", "train: no run_dir");
    /* batch_size, epochs and the other numbers: ranges checked with the options (job_config.c) */
    int rc = check_splits(c, err);
    if (rc != 0)
        return rc;
    /* an earlier run in run_dir is continued (resume) or replaced (overwrite), never silently */
    int64_t held = 0;
    if (x->w.rank == 0 && !job_bool(c, "resume") && !job_bool(c, "overwrite")) {
        const char *f = earlier_run_file(x->run_dir);
        if (f) {
            held = 1;
            rb_fail(err, "continue it with --resume true, start afresh there with --overwrite true, or choose a new run_dir",
                    "train: %s holds an earlier run (%s)", x->run_dir, f);
        }
    }
    rb_mpi_max_i64(&held, 1);
    if (held)
        return JOB_BAD_CONFIG;
    int ok = 1;
    if (x->w.rank == 0)
        /* the run folder is unfinished from here until summary.json is written last */
        ok = shard_index_checksum(job_str(c, "shards"), x->index_checksum, err) == 0 && fs_mkdirs(x->run_dir, err) == 0 &&
             job_marker_clear(x->run_dir, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    int64_t cache = job_int(c, "cache_mb") * 1048576;
    ok = shard_dataset_open(&x->tr, job_str(c, "shards"), job_str(c, "train_split"), cache, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    x->have_val = *job_str(c, "val_split") != 0;
    if (x->have_val) {
        ok = shard_dataset_open(&x->va, job_str(c, "shards"), job_str(c, "val_split"), cache, err) == 0;
        if (!rb_mpi_agree_ok(ok))
            return job_failed_where(ok);
    }
    x->nclasses = x->tr.index.nclasses;
    x->class_names = x->tr.index.class_names;
    if (x->nclasses < 2)
        return rb_fail(err, "convert labelled class folders", "train: the shards have %d class(es)", x->nclasses);
    x->positive = x->nclasses - 1;
    const char *pc = job_str(c, "positive_class");
    if (*pc) {
        x->positive = -1;
        for (int i = 0; i < x->nclasses; i++)
            if (!strcmp(x->class_names[i], pc))
                x->positive = i;
        if (x->positive < 0)
            return rb_fail(err, "name one of the shards' classes", "train: positive_class '%s' is not a class", pc);
    }
    return 0;
}

/* 2. The banner line, the augmentation and class_weight keys checked, the model built,
 *    the step's buffers, stage 1 set up and the model summary printed. */
static int train_prepare(train_ctx *x, rb_error *err)
{
    job_config *c = &x->cfg;
    rb_info("train: %lld records, val: %lld records, %d classes, %d rank(s) x %d thread(s)", (long long)x->tr.n,
            (long long)(x->have_val ? x->va.n : 0), x->nclasses, x->w.size, train_threads(x));
    augment_config aug;
    train_aug_from_config(x, &aug);
    if (augment_config_check(&aug, err) < 0)
        return rb_error_prefix(err, "train: ");
    if (train_parse_class_weight(x, err) < 0 || train_build_model(x, err) < 0)
        return -1;
    int B = (int)job_int(c, "batch_size");
    int local = (B + x->w.size - 1) / x->w.size;
    x->dlogits = malloc((size_t)local * (size_t)x->nclasses * sizeof(float) + 4);
    x->targets = malloc((size_t)(local > 64 ? local : 64) * sizeof(float) + 4);
    x->best.params = malloc((size_t)x->a->m->nparams * sizeof(float) + 4);
    x->best.state = malloc((size_t)x->a->m->nstate * sizeof(float) + 4);
    x->perm = malloc((size_t)x->tr.n * sizeof *x->perm + 8);
    if (!x->dlogits || !x->targets || !x->best.params || !x->best.state || !x->perm)
        return rb_fail(err, "lower batch_size", "out of memory");
    x->best.value = NAN;
    for (int i = 0; i < M_COUNT; i++)
        x->best.metrics[i] = x->metrics[i] = NAN;
    if (train_setup_stage(x, 1, err) < 0)
        return -1;
    if (x->w.rank == 0 && !job_bool(c, "quiet")) {
        if (strcmp(job_str(c, "model_summary"), "full") == 0)
            rb_model_summary(x->a->m, stdout);
        else
            rb_model_summary_short(x->a->m, stdout);
    }
    return 0;
}

/* 4. A fresh start clears older checkpoints; the initial weights are checked identical on
 *    every rank (same seed and files: checked, not assumed); train_log.jsonl gets "start". */
static int train_start(train_ctx *x, const char *resumed_from, rb_error *err)
{
    if (x->step == 0 && x->w.rank == 0)
        checkpoint_clear(x->run_dir); /* a fresh start: older checkpoints would shadow the new ones */
    x->step_start = x->step;
    int ok = train_check_consistency(x, err) == 0 && train_log(x, "start", NULL, resumed_from, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
}

/* 6. restore_best: the final model gets the best epoch's weights and metrics. */
static void train_restore_best(train_ctx *x)
{
    if (job_bool(&x->cfg, "restore_best") && !isnan(x->best.value)) {
        memcpy(x->a->m->params, x->best.params, (size_t)x->a->m->nparams * sizeof(float));
        memcpy(x->a->m->state, x->best.state, (size_t)x->a->m->nstate * sizeof(float));
        memcpy(x->metrics, x->best.metrics, sizeof x->metrics);
        rb_info("final model: weights of epoch %lld (best %s %.4f)", (long long)x->best.epoch + 1,
                job_str(&x->cfg, "best_metric"), x->best.value);
    }
}

/* 7. The final model on the val split once more, and the decision threshold that
 *    maximises Youden's J there (NAN: none, when there is no val split or J is 0). */
static int train_choose_threshold(train_ctx *x, double *threshold, rb_error *err)
{
    *threshold = NAN;
    if (!x->have_val)
        return 0;
    if (train_validate(x, err) < 0)
        return -1;
    rb_error terr;
    if (x->w.rank == 0 && x->val.n > 0 &&
        metrics_threshold_choose(threshold, METRICS_THRESHOLD_YOUDEN, 0, x->val.labels, x->val.scores, 1,
                                 x->val.n, x->nclasses, x->positive, &terr) < 0)
        *threshold = NAN;
    /* Youden's J is 0 at every threshold (scores that do not separate the classes, e.g.
     * an untrained head after --epochs 0): the rule gives +inf, "nothing is positive".
     * Such a threshold is no decision rule: the card gets none, so readers keep 0.5. */
    if (x->w.rank == 0 && isinf(*threshold)) {
        rb_info("no decision threshold: the val scores do not separate the classes (Youden's J = 0); "
                "the model keeps the default rule (probability >= 0.5 for two classes)");
        *threshold = NAN;
    }
    return 0;
}

static int train_main(train_ctx *x, rb_error *err)
{
    int rc;
    if ((rc = train_open_data(x, err)) < 0)
        return rc;
    if ((rc = train_prepare(x, err)) < 0)
        return rc;
    char *resumed_from = NULL; /* 3. resume = true: the newest complete checkpoint */
    rc = train_resume(x, &resumed_from, err);
    if (rc == 0)
        rc = train_start(x, resumed_from, err);
    free(resumed_from);
    if (rc < 0)
        return rc;
    int preempted = 0; /* 5. the epochs of both stages */
    rc = train_run_epochs(x, &preempted, err);
    train_cache_end(x);
    if (rc < 0)
        return rc == JOB_FAILED_ELSEWHERE ? rc : JOB_FAILED;
    if (preempted) { /* a checkpoint is written, the run is incomplete */
        int ok = train_log(x, "end", "preempted", NULL, err) == 0;
        if (!rb_mpi_agree_ok(ok))
            return job_failed_where(ok);
        return JOB_PREEMPTED;
    }
    train_restore_best(x);
    double threshold;
    if (train_choose_threshold(x, &threshold, err) < 0)
        return -1;
    return train_write_final(x, threshold, err); /* 8. model.h5, then summary.json */
}

static int train_run(void *ctx, rb_error *err)
{
    train_ctx *x = ctx;
    x->job_text = job_config_dump(&x->cfg);
    int rc = train_main(x, err);
    /* a full disk (io/fsutil.h's hint): here the rerun that resumes needs resume = true */
    if (rc == JOB_FAILED && (strstr(err->hint, "the disk is full") == err->hint ||
                             strstr(err->hint, "the disk quota is exceeded") == err->hint)) {
        char *cut = strstr(err->hint, ", then rerun");
        if (cut)
            snprintf(cut, sizeof err->hint - (size_t)(cut - err->hint),
                     ", then rerun with --resume true: training continues from the newest complete checkpoint");
    }
    return rc;
}

static void train_free(void *ctx)
{
    train_ctx *x = ctx;
    train_net_free(&x->cache.head);
    train_net_free(&x->net);
    free(x->cache.train);
    free(x->cache.val);
    if (x->have_val)
        shard_dataset_close(&x->va);
    if (x->tr.dir)
        shard_dataset_close(&x->tr);
    free(x->class_weight);
    free(x->dlogits);
    free(x->targets);
    free(x->best.params);
    free(x->best.state);
    free(x->val.scores);
    free(x->val.labels);
    free(x->job_text);
    free(x->perm);
    rb_buf_free(&x->history);
}

static int run_train(int argc, char **argv)
{
    train_ctx x;
    memset(&x, 0, sizeof x);
    x.a = &x.net;
    job_driver d = {.cmd = &command_train, .ctx = &x, .cfg = &x.cfg, .world = &x.w, .on_sigterm = train_on_sigterm,
                    .main = train_run, .cleanup = train_free};
    return job_run(&d, argc, argv);
}

const command_spec command_train = {
    .name = "train",
    .summary = "synchronous data-parallel training on HDF5 shards (MobileNetV2 transfer learning, the seed-001 CNN)",
    .usage = "usage: radbatch train [job.ini] [--key value ...]      (mpirun -n N / srun for N ranks)",
    .opts = train_opts,
    .run = run_train,
};
