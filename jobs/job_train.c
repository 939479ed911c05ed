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
#include "train_keys.h"
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

#define TRAIN_SPEC_ROW(...) OPT_SPEC_ROW(train_keys, __VA_ARGS__)
static const opt_spec train_opts[] = {TRAIN_KEYS(TRAIN_SPEC_ROW){NULL, 0, NULL, NULL, NULL, {0, 0, 0, NULL}, 0}};

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
static int check_splits(const train_keys *keys, rb_error *err)
{
    const char *names[] = {"train_split", "val_split"}, *values[] = {keys->train_split, keys->val_split};
    for (int k = 0; k < 2; k++) {
        const char *v = values[k];
        if (*v && shard_index_split_id(v) == 2) { /* test */
            rb_fail(err, "the test split is held out for the final report (radbatch evaluate --split test); "
                    "train on train and validate on val",
                    "train: key '%s' = '%s': training never reads the test split", names[k], v);
            return JOB_BAD_CONFIG;
        }
    }
    return 0;
}

/* 1. The shards' index checksum, the run folder made and marked unfinished (summary.json
 *    removed), the train and val splits opened, the classes and the positive class. */
static int train_open_data(train_ctx *x, rb_error *err)
{
    x->run_dir = x->keys.run_dir;
    x->rank_batch = (int)((x->keys.batch_size + x->w.size - 1) / x->w.size);
    if (!*x->keys.shards)
        return rb_fail(err, "set shards = <folder written by radbatch convert>", "train: no shards folder");
    if (!*x->run_dir)
        return rb_fail(err, "set run_dir = <output folder>", "train: no run_dir");
    /* batch_size, epochs and the other numbers: ranges checked when parsed (train_keys.h) */
    int rc = check_splits(&x->keys, err);
    if (rc != 0)
        return rc;
    /* an earlier run in run_dir is continued (resume) or replaced (overwrite), never silently */
    int64_t held = 0;
    if (x->w.rank == 0 && !x->keys.resume && !x->keys.overwrite) {
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
        ok = shard_index_checksum(x->keys.shards, x->index_checksum, err) == 0 && fs_mkdirs(x->run_dir, err) == 0 &&
             job_marker_clear(x->run_dir, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    int64_t cache = x->keys.cache_mb * 1048576;
    ok = shard_dataset_open(&x->tr, x->keys.shards, x->keys.train_split, cache, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    x->have_val = *x->keys.val_split != 0;
    if (!x->have_val && !strcmp(x->keys.calibrate, "temperature"))
        return rb_fail(err, "set val_split, or calibrate = none",
                       "train: calibrate = temperature fits the temperature on the val split, and val_split is empty");
    if (x->have_val) {
        ok = shard_dataset_open(&x->va, x->keys.shards, x->keys.val_split, cache, err) == 0;
        if (!rb_mpi_agree_ok(ok))
            return job_failed_where(ok);
    }
    x->nclasses = x->tr.index.nclasses;
    x->class_names = x->tr.index.class_names;
    if (x->nclasses < 2)
        return rb_fail(err, "convert labelled class folders", "train: the shards have %d class(es)", x->nclasses);
    x->positive = x->nclasses - 1;
    const char *pc = x->keys.positive_class;
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
    rb_info("train: %lld records, val: %lld records, %d classes, %d rank(s) x %d thread(s)", (long long)x->tr.n,
            (long long)(x->have_val ? x->va.n : 0), x->nclasses, x->w.size, train_threads(x));
    augment_config aug;
    train_aug_from_config(x, &aug);
    if (augment_config_check(&aug, err) < 0)
        return rb_error_prefix(err, "train: ");
    if (train_parse_class_weight(x, err) < 0 || train_build_model(x, err) < 0)
        return -1;
    int local = x->rank_batch;
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
    if (x->w.rank == 0 && !x->keys.quiet) {
        if (strcmp(x->keys.model_summary, "full") == 0)
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
    if (x->keys.restore_best && !isnan(x->best.value)) {
        memcpy(x->a->m->params, x->best.params, (size_t)x->a->m->nparams * sizeof(float));
        memcpy(x->a->m->state, x->best.state, (size_t)x->a->m->nstate * sizeof(float));
        memcpy(x->metrics, x->best.metrics, sizeof x->metrics);
        rb_info("final model: weights of epoch %lld (best %s %.4f)", (long long)x->best.epoch + 1,
                x->keys.best_metric, x->best.value);
    }
}

/* 7a. calibrate = temperature (rank 0): the T minimising the val NLL of the final model's
 *     logits / T, its effect on the val NLL, ECE and Brier score, and the val scores
 *     replaced by the calibrated ones so that the threshold is chosen on what readers see. */
static int train_fit_temperature(train_ctx *x, rb_error *err)
{
    train_val_scores *v = &x->val;
    train_calibration *c = &x->calib;
    if (metrics_temperature_fit(&c->temperature, &c->nll_before, &c->nll_after, v->logits, v->m, v->labels, v->n,
                                x->nclasses, x->positive, err) < 0) {
        rb_error_prefix(err, "calibrate = temperature: ");
        return -1;
    }
    float *probs = malloc((size_t)(v->n ? v->n : 1) * (size_t)x->nclasses * sizeof *probs);
    if (!probs)
        return rb_fail(err, NULL, "out of memory");
    metrics_calibration before, after;
    int rc = metrics_calibration_compute(&before, v->labels, v->scores, 1, v->n, x->nclasses, x->positive, err);
    metrics_temperature_probs(probs, v->logits, v->m, v->n, x->nclasses, x->positive, c->temperature);
    for (int64_t i = 0; i < v->n; i++)
        v->scores[i] = probs[i * x->nclasses + x->positive];
    free(probs);
    if (rc == 0)
        rc = metrics_calibration_compute(&after, v->labels, v->scores, 1, v->n, x->nclasses, x->positive, err);
    if (rc < 0)
        return -1;
    c->ece_before = before.ece;
    c->ece_after = after.ece;
    c->brier_before = before.brier;
    c->brier_after = after.brier;
    c->fitted = 1;
    rb_info("calibration: temperature %.4f fitted on %s (%lld records): NLL %.4f -> %.4f, ECE %.4f -> %.4f, "
            "Brier score %.4f -> %.4f",
            c->temperature, x->keys.val_split, (long long)v->n, c->nll_before, c->nll_after, c->ece_before,
            c->ece_after, c->brier_before, c->brier_after);
    return 0;
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
    if (x->w.rank == 0 && !strcmp(x->keys.calibrate, "temperature") && train_fit_temperature(x, err) < 0)
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
    free(x->val.logits);
    free(x->job_text);
    free(x->perm);
    rb_buf_free(&x->history);
}

static int run_train(int argc, char **argv)
{
    train_ctx x;
    memset(&x, 0, sizeof x);
    x.a = &x.net;
    job_driver d = {.cmd = &command_train, .ctx = &x, .cfg = &x.cfg, .keys = &x.keys, .world = &x.w,
                    .on_sigterm = train_on_sigterm,
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
