/* radbatch train's run folder (docs/train.md "Outputs", "Checkpoints, resume, faults"):
 * history.csv, the model card, model files, checkpoints with the loop's resume state,
 * train_log.jsonl. Rank 0 writes; every rank agrees on the outcome where the others wait. */
#include "fsutil.h"
#include "json_number.h"
#include "job_marker.h"
#include "job_run.h"
#include "metrics.h"
#include "model_file.h"
#include "rb_log.h"
#include "train_checkpoint.h"
#include "train_ctx.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- files ---------------------------------------------------------------------------- */
void train_history_add(train_ctx *x, double seconds)
{
    rb_buf_printf(&x->history, "%lld,%d", (long long)x->epoch + 1, x->stage);
    for (int i = 0; i < M_COUNT; i++) {
        if (isnan(x->metrics[i]))
            rb_buf_printf(&x->history, ",");
        else
            rb_buf_printf(&x->history, ",%.6f", x->metrics[i]);
    }
    rb_buf_printf(&x->history, ",%.3g,%.1f\n", x->lr, seconds);
}

int train_history_write(train_ctx *x, rb_error *err)
{
    rb_buf b = {0};
    rb_buf_printf(&b, "epoch,stage");
    for (int i = 0; i < M_COUNT; i++)
        rb_buf_printf(&b, ",%s", train_metric_names[i]);
    rb_buf_printf(&b, ",lr,seconds\n");
    rb_buf_put(&b, x->history.data, x->history.len);
    char *p = fs_join(x->run_dir, "history.csv");
    int rc = fs_write_file_atomic(p, b.data, b.len, err);
    free(p);
    rb_buf_free(&b);
    return rc;
}

static cJSON *metrics_json(const double *v)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < M_COUNT; i++)
        if (!isnan(v[i]))
            json_add_exact_number(o, train_metric_names[i], v[i]);
    return o;
}

/* The time now, UTC, as 2026-12-07T19:45:00Z. */
static void utc_now(char *buf, size_t cap)
{
    time_t now = time(NULL);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
}

/* The model card (JSON): what a model file says about how it was made. */
char *train_model_card(train_ctx *x, int final, double threshold)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "radbatch_version", RADBATCH_VERSION " (" RADBATCH_GIT ")");
    char when[64];
    utc_now(when, sizeof when);
    cJSON_AddStringToObject(c, "created", when);
    cJSON_AddStringToObject(c, "backbone", x->keys.backbone);
    cJSON *data = cJSON_AddObjectToObject(c, "data");
    cJSON_AddStringToObject(data, "shards", x->keys.shards);
    cJSON_AddStringToObject(data, "index_checksum", x->index_checksum);
    cJSON_AddStringToObject(data, "train_split", x->keys.train_split);
    json_add_exact_number(data, "train_records", (double)x->tr.n);
    if (x->have_val) {
        cJSON_AddStringToObject(data, "val_split", x->keys.val_split);
        json_add_exact_number(data, "val_records", (double)x->va.n);
    }
    json_add_exact_number(data, "split_seed", (double)x->tr.index.seed);
    json_add_exact_number(data, "val_fraction", x->tr.index.val_fraction);
    /* the held-out split train never read: what a final report on it may count on */
    json_add_exact_number(data, "test_fraction", x->tr.index.test_fraction);
    json_add_exact_number(data, "test_records_held_out", (double)x->tr.index.split_records[2]);
    cJSON_AddStringToObject(data, "group_regex", x->tr.index.group_regex ? x->tr.index.group_regex : "");
    cJSON_AddItemToObject(c, "class_names", cJSON_CreateStringArray((const char *const *)x->class_names, x->nclasses));
    cJSON_AddStringToObject(c, "positive_class", x->class_names[x->positive]);
    cJSON *pre = cJSON_AddObjectToObject(c, "preprocessing");
    json_add_exact_number(pre, "height", x->tr.height);
    json_add_exact_number(pre, "width", x->tr.width);
    json_add_exact_number(pre, "channels", x->tr.channels);
    cJSON_AddStringToObject(pre, "resize", x->tr.index.resize);
    cJSON_AddBoolToObject(pre, "dct_scaling", x->tr.index.dct_scaling);
    cJSON_AddStringToObject(pre, "rescale", x->a->m->nodes[0].preprocess == RESCALE_MINUS1_1 ? "x/127.5-1" :
                                            x->a->m->nodes[0].preprocess == RESCALE_0_1 ? "x/255" : "none");
    json_add_exact_number(c, "seed", (double)x->keys.seed);
    json_add_exact_number(c, "epochs_run", (double)x->epoch);
    json_add_exact_number(c, "steps", (double)x->step);
    json_add_exact_number(c, "ranks", x->w.size);
    cJSON_AddItemToObject(c, "final_metrics", metrics_json(x->metrics));
    if (!isnan(x->best.value)) { /* no best epoch when none ran (epochs = 0) */
        cJSON *best = cJSON_AddObjectToObject(c, "best");
        cJSON_AddStringToObject(best, "metric", x->keys.best_metric);
        json_add_exact_number(best, "epoch", (double)x->best.epoch + 1);
        cJSON_AddItemToObject(best, "metrics", metrics_json(x->best.metrics));
    }
    if (final && isfinite(threshold)) {
        cJSON *th = cJSON_AddObjectToObject(c, "threshold");
        json_add_exact_number(th, "value", threshold);
        cJSON_AddStringToObject(th, "method", "youden");
        cJSON_AddStringToObject(th, "positive_class", x->class_names[x->positive]);
        cJSON_AddStringToObject(th, "applies_to", "probability of positive_class; positive when >= value");
        cJSON *on = cJSON_AddObjectToObject(th, "chosen_on");
        cJSON_AddStringToObject(on, "data", x->keys.shards);
        cJSON_AddStringToObject(on, "kind", "shards");
        cJSON_AddStringToObject(on, "split", x->keys.val_split);
        cJSON_AddStringToObject(on, "index_checksum", x->index_checksum);
        json_add_exact_number(on, "records", (double)x->val.n);
        metrics_screening sc;
        rb_error serr;
        if (x->val.n > 0 && metrics_screening_compute(&sc, x->val.labels, x->val.scores, 1, x->val.n, x->nclasses,
                                                      x->positive, threshold, &serr) == 0) {
            json_add_exact_number(th, "sensitivity", sc.sensitivity);
            json_add_exact_number(th, "specificity", sc.specificity);
        }
        cJSON_AddStringToObject(th, "set_by", "train");
    }
    if (final && x->calib.fitted) {
        const train_calibration *k = &x->calib;
        cJSON *cal = cJSON_AddObjectToObject(c, "calibration");
        cJSON_AddStringToObject(cal, "method", "temperature");
        json_add_exact_number(cal, "temperature", k->temperature);
        cJSON_AddStringToObject(cal, "applies_to", "probabilities = softmax(logits / temperature), or sigmoid");
        cJSON *on = cJSON_AddObjectToObject(cal, "fitted_on");
        cJSON_AddStringToObject(on, "data", x->keys.shards);
        cJSON_AddStringToObject(on, "split", x->keys.val_split);
        json_add_exact_number(on, "records", (double)x->val.n);
        cJSON *b = cJSON_AddObjectToObject(cal, "before");
        json_add_exact_number(b, "nll", k->nll_before);
        json_add_exact_number(b, "ece", k->ece_before);
        json_add_exact_number(b, "brier", k->brier_before);
        cJSON *a = cJSON_AddObjectToObject(cal, "after");
        json_add_exact_number(a, "nll", k->nll_after);
        json_add_exact_number(a, "ece", k->ece_after);
        json_add_exact_number(a, "brier", k->brier_after);
    }
    cJSON_AddStringToObject(c, "job", x->job_text ? x->job_text : "");
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    return s;
}

/* Resume state of the training loop, stored in a checkpoint's card under "resume". */
static char *checkpoint_card(train_ctx *x)
{
    char *card = train_model_card(x, 0, NAN);
    cJSON *c = cJSON_Parse(card);
    free(card);
    cJSON *r = cJSON_AddObjectToObject(c, "resume");
    json_add_exact_number(r, "stage", x->stage);
    json_add_exact_number(r, "lr", x->lr);
    json_add_exact_number(r, "best", x->best.value);
    json_add_exact_number(r, "best_epoch", (double)x->best.epoch);
    json_add_exact_number(r, "wait_es", x->best.wait_es);
    json_add_exact_number(r, "wait_lr", x->best.wait_lr);
    /* the epoch's running sums, as exact doubles (hex) so the epoch line repeats */
    char hx[3][40];
    snprintf(hx[0], 40, "%a", x->sums.loss);
    snprintf(hx[1], 40, "%a", x->sums.correct);
    snprintf(hx[2], 40, "%a", x->sums.seen);
    cJSON_AddStringToObject(r, "loss_sum", hx[0]);
    cJSON_AddStringToObject(r, "correct", hx[1]);
    cJSON_AddStringToObject(r, "seen", hx[2]);
    cJSON_AddItemToObject(r, "best_metrics", metrics_json(x->best.metrics));
    rb_buf_put(&x->history, "", 1);
    cJSON_AddStringToObject(r, "history", (const char *)x->history.data);
    x->history.len--;
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    return s;
}

int train_save_model(train_ctx *x, const char *path, const char *card, int with_optim, rb_error *err)
{
    int nv;
    const rb_param_view *views = rb_model_params(x->a->m, &nv);
    char *arch = rb_model_desc(x->a->m);
    model_file_optimizer mo = {.step = x->a->opt.step, .config = NULL,
                               .n = optim_state_size(&x->a->ocfg, x->a->m->nparams), .state = x->a->opt.state};
    snprintf(mo.kind, sizeof mo.kind, "%s", optim_kind_name(x->a->ocfg.kind));
    model_file_train_state ts = {.epoch = x->epoch, .step = x->step,
                                 .data_position = x->next_batch * x->keys.batch_size,
                                 .rng_seed = (uint64_t)x->keys.seed, .best_metric = x->best.value};
    snprintf(ts.best_metric_name, sizeof ts.best_metric_name, "%s", x->keys.best_metric);
    model_file_contents mc = {.architecture = arch, .model_card = card,
                              .class_names = (const char *const *)x->class_names, .n_classes = x->nclasses,
                              .views = views, .n_views = nv, .optimizer = with_optim ? &mo : NULL,
                              .train_state = with_optim ? &ts : NULL};
    int rc = arch ? model_file_save(path, &mc, err) : rb_fail(err, NULL, "out of memory");
    free(arch);
    return rc;
}

/* Rank 0 writes a checkpoint at the current position; everyone agrees it worked. */
int train_save_checkpoint(train_ctx *x, rb_error *err)
{
    int ok = 1;
    if (x->w.rank == 0) {
        char *path = checkpoint_path(x->run_dir, x->step);
        char *dir = fs_join(x->run_dir, "checkpoints");
        char *card = checkpoint_card(x);
        ok = path && dir && card && fs_mkdirs(dir, err) == 0 && train_save_model(x, path, card, 1, err) == 0 &&
             checkpoint_commit(x->run_dir, path, 2, err) == 0;
        free(path);
        free(dir);
        free(card);
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok); /* rank 0 reports the file (a full disk...) */
    return 0;
}

/* <run_dir>/train_log.jsonl: rank 0 appends one JSON line when this invocation starts
 * training ("start", with "resumed_from": the checkpoint, epoch and step it continues from,
 * or null) and one when it stops ("end": "finished" or "preempted", the step reached and
 * steps_this_run). Written whatever quiet says, for scripts and tests. */
int train_log(train_ctx *x, const char *event, const char *status, const char *ckpt, rb_error *err)
{
    if (x->w.rank != 0)
        return 0;
    cJSON *o = cJSON_CreateObject();
    char when[64];
    utc_now(when, sizeof when);
    cJSON_AddStringToObject(o, "event", event);
    cJSON_AddStringToObject(o, "time", when);
    json_add_exact_number(o, "ranks", x->w.size);
    json_add_exact_number(o, "epoch", (double)x->epoch);
    json_add_exact_number(o, "step", (double)x->step);
    if (strcmp(event, "start") == 0) {
        if (ckpt) {
            cJSON *r = cJSON_AddObjectToObject(o, "resumed_from");
            cJSON_AddStringToObject(r, "checkpoint", ckpt);
            json_add_exact_number(r, "epoch", (double)x->epoch);
            json_add_exact_number(r, "step", (double)x->step);
            json_add_exact_number(r, "batch_in_epoch", (double)x->next_batch);
        } else
            cJSON_AddNullToObject(o, "resumed_from");
    } else {
        cJSON_AddStringToObject(o, "status", status);
        json_add_exact_number(o, "steps_this_run", (double)(x->step - x->step_start));
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    char *p = fs_join(x->run_dir, "train_log.jsonl");
    FILE *f = p && line ? fopen(p, "a") : NULL;
    int rc = 0;
    if (!f || fprintf(f, "%s\n", line) < 0 || fclose(f) != 0)
        rc = rb_fail(err, "check that run_dir is writable and the disk not full", "%s: cannot append: %s",
                     p ? p : "train_log.jsonl", strerror(errno));
    free(p);
    free(line);
    return rc;
}

static double hex_double(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? strtod(v->valuestring, NULL) : 0.0;
}

int train_load_checkpoint(train_ctx *x, const char *path, rb_error *err)
{
    model_file_header h;
    if (model_file_read_header(path, &h, err) < 0)
        return -1;
    int rc = 0;
    char *arch = rb_model_desc(x->a->m);
    cJSON *card = h.model_card ? cJSON_Parse(h.model_card) : NULL;
    const cJSON *r = card ? cJSON_GetObjectItemCaseSensitive(card, "resume") : NULL;
    if (!h.has_optimizer || !h.has_train_state || !r)
        rc = rb_fail(err, "pick another run_dir, or resume = false", "%s: not a radbatch training checkpoint", path);
    int stage = r ? (int)cJSON_GetObjectItemCaseSensitive(r, "stage")->valuedouble : 1;
    if (rc == 0 && stage == 2 && x->stage != 2)
        rc = train_setup_stage(x, 2, err);
    /* the architecture text also carries the trainable flags of the stage */
    if (rc == 0 && strcmp(arch, h.architecture) != 0) {
        free(arch);
        arch = rb_model_desc(x->a->m);
        if (strcmp(arch, h.architecture) != 0)
            rc = rb_fail(err, "resume with the job file of the run that wrote it",
                         "%s: the checkpoint's model differs from the one this job builds", path);
    }
    int nv;
    const rb_param_view *views = rb_model_params(x->a->m, &nv);
    if (rc == 0)
        rc = model_file_load_weights(path, views, nv, err);
    if (rc == 0 && (h.optimizer_state_len != optim_state_size(&x->a->ocfg, x->a->m->nparams) ||
                    strcmp(h.optimizer_kind, optim_kind_name(x->a->ocfg.kind)) != 0))
        rc = rb_fail(err, "resume with the job file of the run that wrote it", "%s: optimizer %s does not match this job's %s",
                     path, h.optimizer_kind, optim_kind_name(x->a->ocfg.kind));
    if (rc == 0)
        rc = model_file_load_optimizer(path, x->a->opt.state, h.optimizer_state_len, err);
    if (rc == 0) {
        x->a->opt.step = h.optimizer_step;
        x->epoch = h.train_state.epoch;
        x->step = h.train_state.step;
        x->next_batch = h.train_state.data_position / x->keys.batch_size;
        x->best.value = h.train_state.best_metric;
        x->lr = (float)cJSON_GetObjectItemCaseSensitive(r, "lr")->valuedouble;
        x->best.epoch = (int64_t)cJSON_GetObjectItemCaseSensitive(r, "best_epoch")->valuedouble;
        x->best.wait_es = (int)cJSON_GetObjectItemCaseSensitive(r, "wait_es")->valuedouble;
        x->best.wait_lr = (int)cJSON_GetObjectItemCaseSensitive(r, "wait_lr")->valuedouble;
        x->sums.loss = hex_double(r, "loss_sum");
        x->sums.correct = hex_double(r, "correct");
        x->sums.seen = hex_double(r, "seen");
        const cJSON *bm = cJSON_GetObjectItemCaseSensitive(r, "best_metrics");
        for (int i = 0; i < M_COUNT; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(bm, train_metric_names[i]);
            x->best.metrics[i] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
        }
        const cJSON *hist = cJSON_GetObjectItemCaseSensitive(r, "history");
        x->history.len = 0;
        if (cJSON_IsString(hist))
            rb_buf_put(&x->history, hist->valuestring, strlen(hist->valuestring));
    }
    cJSON_Delete(card);
    free(arch);
    model_file_header_free(&h);
    return rc;
}

/* The newest complete checkpoint that passes model_file_verify on every rank (*ck,
 * malloc'd; NULL when run_dir has none). A damaged one (a changed byte, a NaN, a truncated
 * file) is named in a warning and set aside by rank 0, and the one before it is tried: the
 * run then repeats the steps in between and still ends bit-identical. When every complete
 * checkpoint is damaged the job stops rather than start over. */
static int usable_checkpoint(train_ctx *x, char **ck, rb_error *err)
{
    *ck = NULL;
    int n, rc = 0;
    int64_t *steps = checkpoint_list_complete(x->run_dir, &n);
    rb_error newest = {{0}, {0}, {0}};
    for (int i = n - 1; i >= 0; i--) {
        char *p = checkpoint_path(x->run_dir, steps[i]);
        rb_error e = {{0}, {0}, {0}};
        int ok = p ? model_file_verify(p, &e) == 0 : rb_fail(&e, NULL, "out of memory") == 0;
        /* one warning: rank 0's, or another rank's when rank 0's copy read fine */
        double ok0 = ok;
        rb_mpi_bcast_f64(&ok0, 1);
        int all_ok = rb_mpi_agree_ok(ok);
        if (all_ok) {
            *ck = p;
            break;
        }
        if (i == n - 1)
            newest = e;
        if (!ok && (x->w.rank == 0 || ok0 != 0))
            rb_warn("resume: %s%s; %s", e.msg, ok0 != 0 ? " (on this rank)" : "",
                    i > 0 ? "trying the checkpoint before it" : "no older checkpoint is left");
        if (x->w.rank == 0) {
            char *aside = NULL;
            rb_error se = {{0}, {0}, {0}};
            if (checkpoint_set_aside(x->run_dir, steps[i], &aside, &se) == 0)
                rb_warn("resume: the damaged checkpoint is kept as %s and no longer used", aside);
            else
                rb_warn("resume: %s", se.msg);
            free(aside);
        }
        free(p);
    }
    if (n > 0 && !*ck) {
        rb_fail(err, "they are kept as checkpoints/ckpt-*.damaged.h5; rerun with overwrite = true to train afresh "
                "(resume = true would now start afresh too)",
                "%s: none of the %d complete checkpoint%s is usable; the newest: %s", x->run_dir, n,
                n == 1 ? "" : "s", newest.msg);
        rc = JOB_FAILED;
    }
    free(steps);
    return rc;
}

/* resume = true: the newest usable checkpoint in run_dir (*resumed_from, malloc'd; NULL
 * when there is none and the run starts fresh), and best.h5's weights for restore_best. */
int train_resume(train_ctx *x, char **resumed_from, rb_error *err)
{
    *resumed_from = NULL;
    if (!x->keys.resume)
        return 0;
    char *ck = NULL;
    int rc = usable_checkpoint(x, &ck, err);
    if (rc < 0)
        return x->w.rank == 0 ? JOB_FAILED : JOB_FAILED_ELSEWHERE;
    if (!ck) {
        rb_info("resume: no complete checkpoint in %s, starting fresh", x->run_dir);
        return 0;
    }
    rb_info("resuming from %s", ck);
    int ok = train_load_checkpoint(x, ck, err) == 0;
    *resumed_from = ck;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    /* the best model so far, for restore_best */
    char *bp = fs_join(x->run_dir, "best.h5");
    int nv;
    const rb_param_view *views = rb_model_params(x->a->m, &nv);
    float *saved_p = malloc((size_t)x->a->m->nparams * sizeof(float) + 4);
    float *saved_s = malloc((size_t)x->a->m->nstate * sizeof(float) + 4);
    ok = 1;
    if (bp && saved_p && saved_s && fs_is_file(bp)) {
        memcpy(saved_p, x->a->m->params, (size_t)x->a->m->nparams * sizeof(float));
        memcpy(saved_s, x->a->m->state, (size_t)x->a->m->nstate * sizeof(float));
        /* a damaged best.h5 stops the job rather than leaving restore_best without weights */
        ok = model_file_load_weights(bp, views, nv, err) == 0;
        if (ok) {
            memcpy(x->best.params, x->a->m->params, (size_t)x->a->m->nparams * sizeof(float));
            memcpy(x->best.state, x->a->m->state, (size_t)x->a->m->nstate * sizeof(float));
        }
        memcpy(x->a->m->params, saved_p, (size_t)x->a->m->nparams * sizeof(float));
        memcpy(x->a->m->state, saved_s, (size_t)x->a->m->nstate * sizeof(float));
    }
    free(saved_p);
    free(saved_s);
    free(bp);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
}

/* Rank 0 writes model.h5 (card with the decision threshold when finite), the "end" line of
 * train_log.jsonl, then summary.json last: the run folder is finished. */
int train_write_final(train_ctx *x, double threshold, rb_error *err)
{
    int ok = 1;
    if (x->w.rank == 0) {
        char *p = fs_join(x->run_dir, "model.h5");
        char *card = train_model_card(x, 1, threshold);
        ok = p && card && train_save_model(x, p, card, 0, err) == 0;
        if (ok)
            rb_info("model: %s%s", p, isnan(threshold) ? "" : "");
        if (ok && !isnan(threshold))
            rb_info("decision threshold for %s (Youden on val): %.4f", x->class_names[x->positive], threshold);
        ok = ok && train_log(x, "end", "finished", NULL, err) == 0;
        free(p);
        free(card);
        if (ok) { /* the marker last: the run folder is finished */
            cJSON *f = cJSON_CreateObject();
            cJSON_AddStringToObject(f, "model", "model.h5");
            json_add_exact_number(f, "epochs", (double)x->epoch);
            json_add_exact_number(f, "steps", (double)x->step);
            json_add_exact_number(f, "ranks", x->w.size);
            ok = job_marker_write(x->run_dir, "train", f, err) == 0;
        }
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
}
