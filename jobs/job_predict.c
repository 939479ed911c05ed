/* radbatch predict: the seeds' single-image prediction for any number of image files
 * (docs/evaluate.md). One process, no MPI: start-up must stay cheap, so a model load plus
 * one MobileNetV2 image takes a fraction of a second. Each image is read and preprocessed
 * as the model's training data was (model card), then: the decided class, its probability
 * as a percentage (the seeds' confidence), every class's probability, and for two-class
 * models the threshold decision; with `explain`, a Grad-CAM heatmap overlay per image (PNG,
 * explain.h). A file that cannot be read prints an error naming it and the others go on;
 * the exit code is then 1. */
#include "commands.h"
#include "json_number.h"
#include "predict_keys.h"
#include "fsutil.h"
#include "job_run.h"
#include "rb_log.h"
#include "rb_mpi.h"
#include "trained_model.h"
#include "explain.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREDICT_SPEC_ROW(...) OPT_SPEC_ROW(predict_keys, __VA_ARGS__)
static const opt_spec predict_opts[] = {PREDICT_KEYS(PREDICT_SPEC_ROW){NULL, 0, NULL, NULL, NULL, {0, 0, 0, NULL}, 0}};

#define PREDICT_BATCH 8

/* Under mpirun/srun with several tasks only the first prints (this command is not split). */
static int launched_rank(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return atoi(v);
    }
    return 0;
}

static double round6(float v) { return round((double)v * 1e6) / 1e6; }

static void print_error(const char *path, const char *reason, int json)
{
    fprintf(stderr, "error: %s: %s\n", path, reason);
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", path);
        cJSON_AddStringToObject(o, "error", reason);
        char *s = cJSON_PrintUnformatted(o);
        if (s)
            printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    }
}

static void print_result(const trained_model *t, const char *path, const float *p, const char *heat,
                         int json)
{
    int k = t->nclasses;
    int cls = trained_model_decide(t, p);
    int binary = k == 2;
    const char *pos = t->class_names[t->positive];
    const char *src = t->threshold_source;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", path);
        cJSON_AddStringToObject(o, "class", t->class_names[cls]);
        json_add_exact_number(o, "confidence", round6(p[cls]));
        cJSON *pr = cJSON_AddObjectToObject(o, "probabilities");
        for (int c = 0; c < k; c++)
            json_add_exact_number(pr, t->class_names[c], round6(p[c]));
        if (binary) {
            cJSON *th = cJSON_AddObjectToObject(o, "threshold");
            cJSON_AddStringToObject(th, "positive_class", pos);
            json_add_exact_number(th, "value", t->threshold);
            cJSON_AddStringToObject(th, "rule", t->threshold_rule);
            cJSON_AddStringToObject(th, "source", src);
            cJSON_AddBoolToObject(th, "positive", cls == t->positive);
        }
        if (heat)
            cJSON_AddStringToObject(o, "heatmap", heat);
        char *s = cJSON_PrintUnformatted(o);
        if (s)
            printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    printf("%s: %s (%.2f%%)\n", path, t->class_names[cls], 100.0 * p[cls]);
    int w = 0;
    for (int c = 0; c < k; c++)
        if ((int)strlen(t->class_names[c]) > w)
            w = (int)strlen(t->class_names[c]);
    for (int c = 0; c < k; c++)
        printf("  %-*s %7.2f%%\n", w, t->class_names[c], 100.0 * p[c]);
    if (binary)
        printf("  decision: %s (probability of %s %.4f %s threshold %.4f, %s)\n", t->class_names[cls], pos,
               (double)p[t->positive], p[t->positive] >= t->threshold ? ">=" : "<", t->threshold, src);
    if (heat)
        printf("  heatmap: %s\n", heat);
}

/* Where the heatmap of image i (0-based) of nimg goes: the `explain` value itself for one
 * image, else <folder>/<i+1>-<file name without extension>.png (malloc'd). */
static char *heatmap_path(const char *explain, int folder, const char *image, int i)
{
    if (!folder)
        return strdup(explain);
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    const char *dot = strrchr(base, '.');
    int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    size_t n = strlen(explain) + strlen(base) + 32;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%d-%.*s.png", explain, i + 1, len, base);
    return out;
}

/* The results go to standard output, often redirected to a file: a failed write there (a
 * full disk) is an error naming that file, not a silently short result. */
static int stdout_fail(int e, rb_error *err)
{
    char target[4096];
    ssize_t n = readlink("/proc/self/fd/1", target, sizeof target - 1);
    if (n > 0)
        target[n] = 0;
    else
        snprintf(target, sizeof target, "standard output");
    fs_write_fail(err, target, e ? e : EIO, 0);
    return rb_error_prefix(err, "predict (standard output): ");
}

/* Some image could not be read: each was reported as met, exit 1 (job_run.h: a failure
 * already reported). */
#define PREDICT_UNREADABLE (-4)

/* The model files (the key, else the first positional .h5) and the images (the other
 * positionals). 0, or JOB_BAD_CONFIG with err set; *models is malloc'd, *images too. */
static int gather_inputs(const job_config *cfg, const predict_keys *k, char **models_out, const char ***images_out, int *nimg_out,
                         rb_error *err)
{
    char *models = strdup(k->model);
    const char **images = calloc((size_t)cfg->npositional + 1, sizeof *images);
    int nimg = 0;
    if (!models || !images) {
        free(models);
        free(images);
        return rb_fail(err, NULL, "out of memory");
    }
    for (int i = 0; i < cfg->npositional; i++) {
        const char *p = cfg->positional[i];
        size_t l = strlen(p);
        if (!*models && l > 3 && strcmp(p + l - 3, ".h5") == 0) {
            free(models);
            models = strdup(p);
        } else
            images[nimg++] = p;
    }
    int rc = 0;
    if (!models || !*models)
        rc = rb_fail(err, "radbatch predict --model run/model.h5 image.jpeg ...", "predict: no model file given");
    else if (nimg == 0)
        rc = rb_fail(err, "radbatch predict --model run/model.h5 image.jpeg ...", "predict: no image given");
    /* tta and threads: ranges checked with the options (job_config.c) */
    threshold_spec ts;
    if (rc == 0)
        rc = threshold_spec_parse("predict", k->threshold, &ts, err);
    if (rc < 0) {
        free(models);
        free(images);
        return JOB_BAD_CONFIG;
    }
    *models_out = models;
    *images_out = images;
    *nimg_out = nimg;
    return 0;
}

/* Read, predict and print the images in batches of `batch` (<= PREDICT_BATCH, the model's
 * workspace); *failed counts the images that could not be read. */
static int predict_images(trained_model *t, int batch, const char **images, int nimg, int json,
                          explainer *ex, const char *explain, int *failed, rb_error *err)
{
    int folder = ex && (nimg > 1 || fs_is_dir(explain));
    size_t rec = (size_t)t->height * t->width * t->channels;
    uint8_t *px = malloc((size_t)batch * rec);
    float *probs = malloc((size_t)batch * t->nclasses * sizeof *probs);
    int slot[PREDICT_BATCH];
    int rc = 0;
    if (!px || !probs)
        rc = rb_fail(err, NULL, "out of memory");
    for (int b0 = 0; rc == 0 && b0 < nimg; b0 += batch) {
        int nb = nimg - b0 < batch ? nimg - b0 : batch, nok = 0;
        char *why[PREDICT_BATCH] = {0};
        for (int i = 0; i < nb; i++) {
            rb_error fe;
            image_info info;
            if (trained_model_load_image(t, images[b0 + i], px + (size_t)nok * rec, &info, &fe) < 0) {
                slot[i] = -1;
                why[i] = strdup(rb_error_reason(&fe, images[b0 + i]));
            } else
                slot[i] = nok++;
        }
        if (nok > 0)
            rc = trained_model_predict(t, px, nok, probs, err);
        for (int i = 0; i < nb; i++) {
            if (rc == 0 && slot[i] >= 0) {
                const float *p = probs + (size_t)slot[i] * t->nclasses;
                char *heat = NULL;
                if (ex) {
                    heat = heatmap_path(explain, folder, images[b0 + i], b0 + i);
                    if (!heat)
                        rc = rb_fail(err, NULL, "out of memory");
                    else if (explain_write_png(ex, px + (size_t)slot[i] * rec, explainer_class(ex, p), heat,
                                               err) < 0)
                        rc = rb_error_prefix(err, "predict --explain: ");
                }
                if (rc == 0)
                    print_result(t, images[b0 + i], p, heat, json);
                free(heat);
            } else if (rc == 0) {
                print_error(images[b0 + i], why[i] ? why[i] : "cannot be read", json);
                (*failed)++;
            }
            free(why[i]);
        }
        if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout)))
            rc = stdout_fail(errno, err);
    }
    free(px);
    free(probs);
    return rc;
}

/* 0, JOB_FAILED, JOB_BAD_CONFIG or PREDICT_UNREADABLE */
typedef struct predict_ctx {
    job_config cfg;
    predict_keys keys;
} predict_ctx;

static int predict_main(predict_ctx *x, rb_error *err)
{
    const job_config *cfg = &x->cfg;
    const predict_keys *k = &x->keys;
    char *models = NULL;
    const char **images = NULL;
    int nimg = 0;
    int rc = gather_inputs(cfg, k, &models, &images, &nimg, err);
    if (rc < 0)
        return rc;
    int64_t tta = k->tta, threads = k->threads;
    if (threads == 0) {
        rb_world w = {.rank = 0, .size = 1, .local_rank = 0, .local_size = 1};
        threads = rb_threads_per_rank(&w);
    }
    trained_model t;
    int batch = nimg < PREDICT_BATCH ? nimg : PREDICT_BATCH;
    if (trained_model_load(&t, models, batch, (int)threads, err) < 0) {
        free(models);
        free(images);
        return JOB_FAILED;
    }
    trained_model_set_tta(&t, (int)tta);
    threshold_spec ts;
    threshold_spec_parse("predict", k->threshold, &ts, err); /* checked in gather_inputs */
    if (t.nclasses == 2 && trained_model_apply_threshold(&t, "predict", &ts, threshold_key_origin(cfg), err) < 0) {
        trained_model_free(&t);
        free(models);
        free(images);
        return JOB_BAD_CONFIG;
    }
    int failed = 0;
    explainer ex, *exp = NULL;
    if (*k->explain) {
        if ((nimg > 1 || fs_is_dir(k->explain)) && fs_mkdirs(k->explain, err) < 0)
            rc = rb_error_prefix(err, "predict --explain: ");
        else if (explainer_create(&ex, &t, (int)threads, err) < 0)
            rc = rb_error_prefix(err, "predict --explain: ");
        else
            exp = &ex;
        if (rc < 0) {
            trained_model_free(&t);
            free(models);
            free(images);
            return JOB_FAILED;
        }
    }
    rc = predict_images(&t, batch, images, nimg, k->json, exp, k->explain, &failed, err);
    if (exp)
        explainer_free(exp);
    if (rc == 0 && failed && !k->json)
        fprintf(stderr, "%d of %d image(s) could not be read\n", failed, nimg);
    trained_model_free(&t);
    free(models);
    free(images);
    if (rc < 0)
        return JOB_FAILED;
    return failed ? PREDICT_UNREADABLE : 0;
}

static int predict_run(void *ctx, rb_error *err) { return predict_main(ctx, err); }

static int run_predict(int argc, char **argv)
{
    if (launched_rank() != 0)
        return 0;
    predict_ctx x;
    memset(&x, 0, sizeof x);
    job_driver d = {.cmd = &command_predict,
                    .ctx = &x,
                    .cfg = &x.cfg,
                    .keys = &x.keys,
                    .world = NULL,
                    .on_sigterm = NULL,
                    .main = predict_run,
                    .cleanup = NULL};
    return job_run(&d, argc, argv);
}

const command_spec command_predict = {
    .name = "predict",
    .summary = "class, confidence and class probabilities of single image files (text or JSON lines)",
    .usage = "usage: radbatch predict [job.ini] --model run/model.h5[,more.h5] image... [--json] [--tta 0|1|2] [--explain heat.png|folder]",
    .opts = predict_opts,
    .run = run_predict,
};
