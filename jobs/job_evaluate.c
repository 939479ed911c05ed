/* radbatch evaluate: how good is a trained model (or an ensemble) on labelled data
 * (docs/evaluate.md). evaluate_main runs the numbered steps of that page's "What evaluate
 * does"; each step lives in its own file (jobs/evaluate.h lists them). This file holds the
 * options, the configuration check, step 1 (the model), the steps' agreement across the
 * ranks and the driver. */
#include "commands.h"
#include "evaluate_keys.h"
#include "evaluate.h"
#include "fsutil.h"
#include "job_marker.h"
#include "job_run.h"
#include "rb_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EVALUATE_SPEC_ROW(...) OPT_SPEC_ROW(evaluate_keys, __VA_ARGS__)
static const opt_spec evaluate_opts[] = {EVALUATE_KEYS(EVALUATE_SPEC_ROW){NULL, 0, NULL, NULL, NULL, {0, 0, 0, NULL}, 0}};

static void free_strs(char **v, int64_t n)
{
    for (int64_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Append a to a comma list (malloc'd). */
static char *list_add(char *list, const char *a)
{
    size_t l = list ? strlen(list) : 0;
    char *r = realloc(list, l + strlen(a) + 2);
    if (!r)
        return list;
    if (l)
        r[l++] = ',';
    strcpy(r + l, a);
    return r;
}

/* Check keys and gather models and data from keys and positionals. Same on every rank. */
static int check_config(eval_ctx *x, rb_error *err)
{
    const job_config *c = &x->cfg;
    x->models = strdup(x->keys.model);
    x->data = strdup(x->keys.data);
    for (int i = 0; i < c->npositional; i++) {
        const char *p = c->positional[i];
        if (ends_with(p, ".h5") && fs_is_file(p) && !fs_is_dir(p))
            x->models = list_add(x->models, p);
        else
            x->data = list_add(x->data, p);
    }
    const char *run_dir = x->keys.run_dir;
    if (!*x->models && *run_dir) {
        free(x->models);
        x->models = fs_join(run_dir, "model.h5");
        x->model_from_run = 1;
    }
    if (!*x->data && *x->keys.shards) {
        free(x->data);
        x->data = strdup(x->keys.shards);
    }
    x->out = x->keys.out;
    if (!*x->out && *run_dir)
        x->out = x->out_owned = fs_join(run_dir, "evaluate");
    if (!x->models || !x->data || !x->out)
        return rb_fail(err, NULL, "out of memory");
    if (!*x->models)
        return rb_fail(err, "give --model run/model.h5 (several comma-separated files form an ensemble) or run_dir",
                       "evaluate: no model file given");
    if (!*x->data)
        return rb_fail(err, "give --data <shards folder | image folder(s)> (or shards)", "evaluate: no data given");
    if (!*x->out)
        return rb_fail(err, "give --out <folder> for the reports (or run_dir)", "evaluate: key 'out' is empty");
    /* tta, digits, bootstrap, batch_size, threads: ranges checked with
     * the options (job_config.c) */
    const char *split = x->keys.split;
    if (shard_index_split_id(split) < 0)
        return rb_fail(err, "accepted: train, val, test, all", "evaluate: split = '%s'", split);
    const char *t = x->keys.threshold;
    if (threshold_spec_parse("evaluate", t, &x->thr.spec, err) < 0)
        return -1;
    threshold_spec_format(x->thr.spec.kind, x->thr.spec.arg, x->thr.rule, sizeof x->thr.rule);
    const char *st = x->keys.set_threshold;
    if (*st) {
        if (strchr(x->models, ','))
            return rb_fail(err, "store an operating point for one model file at a time",
                           "evaluate: key 'set_threshold' with an ensemble (%s)", x->models);
        if (x->thr.spec.kind == THRESHOLD_MODEL)
            return rb_fail(err, "give the rule to store, e.g. --threshold sensitivity:0.95 (or a value such as 0.3)",
                           "evaluate: key 'set_threshold' with threshold = model: the card already holds that");
        char *a = realpath(x->models, NULL), *b = realpath(st, NULL);
        int same = a && b && !strcmp(a, b);
        free(a);
        free(b);
        if (same)
            return rb_fail(err, "give another file name: the model itself stays as it is",
                           "evaluate: key 'set_threshold' = '%s' is the model file", st);
    }
    return 0;
}

/* After a step every rank ran: 0 when it succeeded everywhere, else JOB_FAILED on the ranks
 * that print their error and JOB_FAILED_ELSEWHERE on the others. When rank 0 failed, it
 * alone prints (the ranks usually failed alike: a missing model or shards file). rc: this
 * rank's result. */
static int agree_step(const eval_ctx *x, int rc)
{
    int ok = rc == 0;
    if (rb_mpi_agree_ok(ok))
        return 0;
    int64_t r0 = x->w.rank == 0 && rc == JOB_FAILED;
    rb_mpi_max_i64(&r0, 1);
    if (rc == JOB_FAILED && (x->w.rank == 0 || !r0))
        return JOB_FAILED;
    return JOB_FAILED_ELSEWHERE;
}

/* Step 1: every rank loads the model (or ensemble) and its preprocessing; the screening
 * class is the card's for two classes, or positive_class. */
static int load_model(eval_ctx *x, rb_error *err)
{
    int rc = 0;
    if (x->model_from_run && !job_marker_done(x->keys.run_dir, "train"))
        rc = rb_fail(err, "finish the training run first (rerun train with --resume true), or give --model",
                     "evaluate: %s is not a finished training run (no complete %s)", x->keys.run_dir,
                     JOB_MARKER_FILE);
    if (rc == 0)
        rc = trained_model_load(&x->tm, x->models, x->threads * (int)x->keys.batch_size, x->threads, err);
    if ((rc = agree_step(x, rc)) < 0)
        return rc;
    x->k = x->tm.nclasses;
    trained_model_set_tta(&x->tm, (int)x->keys.tta);
    const char *pc = x->keys.positive_class;
    x->positive = x->k == 2 ? x->tm.positive : -1;
    if (*pc) {
        x->positive = -1;
        for (int i = 0; i < x->k; i++)
            if (!strcmp(x->tm.class_names[i], pc))
                x->positive = i;
        if (x->positive < 0) {
            rb_buf b = {0};
            for (int i = 0; i < x->k; i++)
                rb_buf_printf(&b, "%s%s", i ? ", " : "", x->tm.class_names[i]);
            rb_buf_put(&b, "", 1);
            rb_fail(err, NULL, "evaluate: positive_class '%s' is not a class of the model (%s)", pc,
                    b.data ? (char *)b.data : "");
            rb_buf_free(&b);
            return JOB_BAD_CONFIG;
        }
    }
    if (x->keys.stress && x->positive < 0) {
        rb_fail(err, "give positive_class: the stress test reports a screening class's AUC, sensitivity and specificity",
                "evaluate: key 'stress': a model with %d classes has no screening class", x->k);
        return JOB_BAD_CONFIG;
    }
    if (x->w.rank == 0) {
        rb_info("model: %s (%d classes, %dx%dx%d input, %s)", x->models, x->k, x->tm.height, x->tm.width,
                x->tm.channels, x->tm.nmembers > 1 ? "ensemble" : "one member");
    }
    return 0;
}

/* Step 2: the data; then the output folder, unfinished from here until summary.json is
 * written last. */
static int open_data_and_out(eval_ctx *x, rb_error *err)
{
    int rc = agree_step(x, evaluate_open_data(x, err));
    if (rc < 0)
        return rc;
    int ok = x->w.rank != 0 || (fs_mkdirs(x->out, err) == 0 && job_marker_clear(x->out, err) == 0);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    if (x->w.rank == 0)
        rb_info("%s: %lld records (%s)", x->data, (long long)x->n, x->is_shards ? x->keys.split : "images");
    return 0;
}

/* Steps 3 to 5: this rank's forward passes, gathered to rank 0, which fixes the threshold
 * and broadcasts it. */
static int predict_and_gather(eval_ctx *x, rb_error *err)
{
    rb_buf pack = {0};
    int ok = evaluate_my_records(x, &pack, err) == 0;
    if (!rb_mpi_agree_ok(ok)) {
        rb_buf_free(&pack);
        return job_failed_where(ok);
    }
    void *all = NULL;
    size_t alen = 0;
    int rc = rb_mpi_gather_bytes(pack.data, pack.len, &all, &alen, err);
    rb_buf_free(&pack);
    if (rc < 0)
        return JOB_FAILED;
    ok = x->w.rank != 0 || (evaluate_unpack_all(x, all, alen, err) == 0 && evaluate_choose_threshold(x, err) == 0);
    free(all);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    rb_mpi_bcast_f64(&x->thr.value, 1);
    return 0;
}

/* Step 6: every rank decides its records and counts its confusion matrix and records
 * (evaluated, unreadable, unlabelled, listed); both are summed over the ranks. */
static int decide_and_count(eval_ctx *x, rb_error *err)
{
    int k = x->k;
    int64_t mine = x->mine.hi - x->mine.lo;
    int64_t *sums = calloc((size_t)k * k + 4, sizeof *sums);
    int32_t *yp = malloc((size_t)(mine > 0 ? mine : 1) * sizeof *yp);
    if (!sums || !yp) {
        free(sums);
        free(yp);
        return rb_fail(err, NULL, "out of memory");
    }
    evaluate_decide(x, x->mine.probs, mine, yp);
    for (int64_t j = 0; j < mine; j++) {
        if (!x->mine.ok[j]) {
            sums[k * k + 1]++;
            continue;
        }
        sums[k * k + 0]++;
        int32_t y = x->mine.labels[j];
        if (y >= 0 && y < k)
            sums[y * k + yp[j]]++;
        else
            sums[k * k + 2]++;
    }
    sums[k * k + 3] = mine;
    free(yp);
    rb_mpi_sum_i64(sums, k * k + 4);
    x->cm = sums;
    memcpy(x->counts, sums + k * k, sizeof x->counts);
    return 0;
}

/* Step 7: rank 0 computes the metrics, writes the outputs and prints the report. */
static int write_outputs(eval_ctx *x, rb_error *err)
{
    int ok = 1;
    if (x->w.rank == 0) {
        if (x->counts[0] - x->counts[2] == 0)
            ok = rb_fail(err, "see errors.csv for the reason of each file",
                         "evaluate: no labelled image could be evaluated") == 0;
        ok = ok && evaluate_report(x, err) == 0;
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
}

/* 0, or JOB_FAILED, JOB_FAILED_ELSEWHERE, JOB_BAD_CONFIG (job_run.h) */
static int evaluate_main(eval_ctx *x, rb_error *err)
{
    if (check_config(x, err) < 0)
        return JOB_BAD_CONFIG;
    int64_t threads = x->keys.threads;
    x->threads = threads > 0 ? (int)threads : x->w.threads > 0 ? x->w.threads : 1;
    double t0 = rb_now();
    int rc;
    if ((rc = load_model(x, err)) < 0) /* 1. model */
        return rc;
    if ((rc = open_data_and_out(x, err)) < 0) /* 2. data */
        return rc;
    if ((rc = predict_and_gather(x, err)) < 0) /* 3-5. work split, unreadable images, gather and threshold */
        return rc;
    if ((rc = decide_and_count(x, err)) < 0) /* 6. decisions and counts */
        return rc;
    x->seconds = rb_now() - t0;
    if ((rc = evaluate_stress(x, err)) < 0) /* stress = true: the shifted passes */
        return rc;
    return write_outputs(x, err); /* 7. outputs */
}

static int eval_run(void *ctx, rb_error *err) { return evaluate_main(ctx, err); }

static void eval_free(void *ctx)
{
    eval_ctx *x = ctx;
    trained_model_free(&x->tm);
    if (x->is_shards && x->ds.dir)
        shard_dataset_close(&x->ds);
    if (!x->is_shards)
        inputs_free(&x->in);
    free(x->models);
    free(x->data);
    free(x->out_owned);
    free(x->mine.probs);
    free(x->mine.labels);
    free(x->mine.ok);
    free_strs(x->mine.reason, x->mine.reason ? x->mine.hi - x->mine.lo : 0);
    free(x->all.err_path);
    free(x->all.err_reason);
    free(x->all.labels);
    free(x->all.ok);
    free(x->all.probs);
    free_strs(x->all.paths, x->all.paths ? x->n : 0);
    free_strs(x->all.reasons, x->all.reasons ? x->n : 0);
    free(x->cm);
}

static int run_evaluate(int argc, char **argv)
{
    eval_ctx x;
    memset(&x, 0, sizeof x);
    job_driver d = {.cmd = &command_evaluate,
                    .ctx = &x,
                    .cfg = &x.cfg,
                    .keys = &x.keys,
                    .world = &x.w,
                    .on_sigterm = NULL,
                    .main = eval_run,
                    .cleanup = eval_free};
    return job_run(&d, argc, argv);
}

const command_spec command_evaluate = {
    .name = "evaluate",
    .summary = "metrics, classification report, confusion matrix, ROC and an HTML report of a model (or ensemble) on "
    "shards or image folders",
    .usage = "usage: radbatch evaluate [job.ini] --model run/model.h5[,run2/model.h5] --data <shards folder | image "
    "folder(s)> --out <folder> [--key value ...]",
    .opts = evaluate_opts,
    .run = run_evaluate,
};
