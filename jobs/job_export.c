/* radbatch export: a trained model.h5 as an ONNX file that onnxruntime, Triton, OpenVINO
 * or TensorRT load (docs/export.md). One process, no MPI. The graph (io/onnx_export.c)
 * takes the uint8 image the shards hold and gives the class probabilities predict prints;
 * the metadata carries the class names, the decision threshold and the model card. An
 * ensemble (several comma-separated model files) becomes one ONNX file per member plus a
 * JSON note saying how predict combines them (the mean of the members' probabilities). */
#include "json_number.h"
#include "commands.h"
#include "export_keys.h"
#include "fsutil.h"
#include "job_run.h"
#include "onnx_export.h"
#include "rb_mpi.h"
#include "shard_dataset.h"
#include "trained_model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT_SPEC_ROW(...) OPT_SPEC_ROW(export_keys, __VA_ARGS__)
static const opt_spec export_opts[] = {EXPORT_KEYS(EXPORT_SPEC_ROW){NULL, 0, NULL, NULL, NULL, {0, 0, 0, NULL}, 0}};

#define CALIB_BATCH 16

/* lo/hi[i]: range of node i's output over up to max_images records of the split, evenly
 * spaced (record k * n / count); *used: how many */
static int calibrate(rb_model *m, const char *dir, const char *split, int64_t max_images, int threads, float *lo,
                     float *hi, int64_t *used, rb_error *err)
{
    shard_dataset d;
    if (shard_dataset_open(&d, dir, split, 0, err) < 0)
        return rb_error_prefix(err, "calibration: ");
    const rb_node *in = &m->nodes[0];
    int rc = 0;
    if (d.height != in->h || d.width != in->w || d.channels != in->c)
        rc = rb_fail(err, "calibrate with shards converted at the model's input size",
                     "calibration %s: images are %dx%dx%d, the model takes %dx%dx%d", dir, d.height, d.width,
                     d.channels, in->h, in->w, in->c);
    else if (d.n == 0)
        rc = rb_fail(err, "choose another calibration_split", "calibration %s: split %s has no images", dir, split);
    int64_t n = d.n < max_images ? d.n : max_images;
    rb_workspace *ws = rc == 0 ? rb_workspace_create(m, CALIB_BATCH, RB_WS_KEEP_ALL, err) : NULL;
    uint8_t *px = malloc((size_t)CALIB_BATCH * d.record_bytes);
    if (rc == 0 && (!ws || rb_workspace_set_threads(ws, threads, err) < 0))
        rc = -1;
    if (rc == 0 && !px)
        rc = rb_fail(err, NULL, "out of memory");
    for (int i = 0; i < m->nnodes; i++)
        lo[i] = INFINITY, hi[i] = -INFINITY;
    for (int64_t k0 = 0; rc == 0 && k0 < n; k0 += CALIB_BATCH) {
        int nb = (int)(n - k0 < CALIB_BATCH ? n - k0 : CALIB_BATCH);
        int64_t idx[CALIB_BATCH];
        for (int k = 0; k < nb; k++)
            idx[k] = (k0 + k) * d.n / n;
        if ((rc = shard_dataset_read(&d, idx, nb, px, NULL, err)) < 0)
            break;
        rb_forward_args a = {.input = px, .type = RB_INPUT_U8, .n = nb};
        if ((rc = rb_model_forward(m, ws, &a, err)) < 0)
            break;
        for (int i = 0; i < m->nnodes; i++) {
            const float *o = rb_workspace_output(ws, i);
            int64_t len = (int64_t)nb * m->nodes[i].size;
            for (int64_t e = 0; o && e < len; e++) {
                lo[i] = o[e] < lo[i] ? o[e] : lo[i];
                hi[i] = o[e] > hi[i] ? o[e] : hi[i];
            }
        }
    }
    *used = n;
    rb_workspace_free(ws);
    free(px);
    shard_dataset_close(&d);
    return rc;
}

static const char *preprocess_name(rescale_mode r)
{
    switch (r) {
    case RESCALE_MINUS1_1:
        return "tf: x = float(p) / 127.5 - 1";
    case RESCALE_0_1:
        return "div255: x = float(p) * float32(1/255)";
    case RESCALE_MINMAX:
        return "minmax: x = (p - min) / (max - min) per image, 0 for a constant image";
    default:
        return "none: x = float(p)";
    }
}

/* "<stem>-k.onnx" for member k of an ensemble written to out ("<stem>.onnx") */
static char *member_path(const char *out, int k)
{
    size_t l = strlen(out);
    size_t stem = l > 5 && !strcmp(out + l - 5, ".onnx") ? l - 5 : l;
    char *p = malloc(stem + 32);
    if (p)
        snprintf(p, stem + 32, "%.*s-%d.onnx", (int)stem, out, k + 1);
    return p;
}

static char *note_path(const char *out)
{
    size_t l = strlen(out);
    size_t stem = l > 5 && !strcmp(out + l - 5, ".onnx") ? l - 5 : l;
    char *p = malloc(stem + 32);
    if (p)
        snprintf(p, stem + 32, "%.*s.ensemble.json", (int)stem, out);
    return p;
}

static char *class_names_json(const trained_model *t)
{
    cJSON *a = cJSON_CreateArray();
    for (int c = 0; c < t->nclasses; c++)
        cJSON_AddItemToArray(a, cJSON_CreateString(t->class_names[c]));
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

/* The ensemble note: members, their files and how their outputs combine. */
static char *ensemble_json(const trained_model *t, char **files, int pretty)
{
    cJSON *o = cJSON_CreateObject();
    json_add_exact_number(o, "members", t->nmembers);
    cJSON_AddStringToObject(o, "combine", "mean");
    cJSON_AddStringToObject(o, "note",
                            "run every member on the same uint8 image batch and average their 'probabilities' "
                            "outputs element-wise (equal weights); decide on the mean as radbatch predict does");
    cJSON *f = cJSON_AddArrayToObject(o, "files");
    cJSON *src = cJSON_AddArrayToObject(o, "source_models");
    for (int k = 0; k < t->nmembers; k++) {
        const char *slash = strrchr(files[k], '/');
        cJSON_AddItemToArray(f, cJSON_CreateString(slash ? slash + 1 : files[k]));
        cJSON_AddItemToArray(src, cJSON_CreateString(t->path[k]));
    }
    char *s = pretty ? cJSON_Print(o) : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

typedef struct quant_opts {
    int int8;
    const char *shards, *split;
    int64_t max_images;
    int threads;
} quant_opts;

static int export_member(const trained_model *t, int k, const char *path, const char *classes,
                         const char *ensemble, const quant_opts *qo, rb_error *err)
{
    rb_model *m = t->m[k];
    onnx_quant q = {0};
    float *lo = NULL, *hi = NULL;
    char qnote[1024] = "";
    if (qo->int8) {
        int64_t used = 0;
        lo = malloc((size_t)m->nnodes * sizeof *lo);
        hi = malloc((size_t)m->nnodes * sizeof *hi);
        if (!lo || !hi) {
            free(lo), free(hi);
            return rb_fail(err, NULL, "out of memory");
        }
        if (calibrate(m, qo->shards, qo->split, qo->max_images, qo->threads, lo, hi, &used, err) < 0) {
            free(lo), free(hi);
            return -1;
        }
        q.lo = lo, q.hi = hi;
        snprintf(qnote, sizeof qnote,
                 "int8 QDQ: weights int8 symmetric per output channel, biases int32, activations uint8 "
                 "asymmetric per tensor with min/max ranges over %lld images of split %s of %s; "
                 "BatchNormalization folded into the preceding Conv",
                 (long long)used, qo->split, qo->shards);
    }
    char h[32], w[32], c[32], thr[32], ncls[32];
    snprintf(h, sizeof h, "%d", t->height);
    snprintf(w, sizeof w, "%d", t->width);
    snprintf(c, sizeof c, "%d", t->channels);
    snprintf(thr, sizeof thr, "%.17g", t->threshold);
    snprintf(ncls, sizeof ncls, "%d", t->nclasses);
    onnx_meta meta[16];
    int nm = 0;
    meta[nm++] = (onnx_meta){"class_names", classes};
    meta[nm++] = (onnx_meta){"num_classes", ncls};
    meta[nm++] = (onnx_meta){"input", "image: uint8 [batch, height, width, channels] (NHWC), the shards' pixels"};
    meta[nm++] = (onnx_meta){"input_height", h};
    meta[nm++] = (onnx_meta){"input_width", w};
    meta[nm++] = (onnx_meta){"input_channels", c};
    meta[nm++] = (onnx_meta){"output", "probabilities: float [batch, num_classes] in class_names order"};
    meta[nm++] = (onnx_meta){"preprocessing", preprocess_name(m->nodes[0].preprocess)};
    meta[nm++] = (onnx_meta){"resize", resize_mode_name(t->resize)};
    meta[nm++] = (onnx_meta){"positive_class", t->class_names[t->positive]};
    meta[nm++] = (onnx_meta){"threshold", thr};
    meta[nm++] = (onnx_meta){"threshold_source", t->has_threshold ? "model card" : "default"};
    meta[nm++] = (onnx_meta){"source_model", t->path[k]};
    if (t->card)
        meta[nm++] = (onnx_meta){"model_card", t->card};
    if (ensemble)
        meta[nm++] = (onnx_meta){"ensemble", ensemble};
    meta[nm++] = (onnx_meta){"quantization", qo->int8 ? qnote : "none (float32)"};
    onnx_export_opts o = {.class_names = (const char *const *)t->class_names,
                          .nclasses = t->nclasses,
                          .positive = t->positive,
                          .meta = meta,
                          .nmeta = nm,
                          .quant = qo->int8 ? &q : NULL};
    int rc = onnx_export_model(m, &o, path, err);
    free(lo);
    free(hi);
    if (rc < 0)
        return rb_error_prefix(err, "export %s: ", t->path[k]);
    printf("wrote %s (from %s%s)\n", path, t->path[k], qo->int8 ? ", int8" : "");
    return 0;
}

typedef struct export_ctx {
    job_config cfg;
    export_keys keys;
} export_ctx;

static int export_main(void *ctx, rb_error *err)
{
    export_ctx *x = ctx;
    const job_config *cfg = &x->cfg;
    const char *models = x->keys.model, *out = x->keys.out;
    if (!*models && cfg->npositional > 0)
        models = cfg->positional[0];
    if (!*models || !*out) {
        rb_fail(err, "radbatch export --model run/model.h5 --out model.onnx",
                "export: %s", !*models ? "no model file given (--model)" : "no output file given (--out)");
        return JOB_BAD_CONFIG;
    }
    quant_opts qo = {.int8 = !strcmp(x->keys.quantize, "int8"),
                     .shards = x->keys.calibration,
                     .split = x->keys.calibration_split,
                     .max_images = x->keys.calibration_images};
    if (qo.int8 && !*qo.shards) {
        rb_fail(err, "radbatch export --model run/model.h5 --out model-int8.onnx --quantize int8 --calibration shards/",
                "export: --quantize int8 needs --calibration (a shards folder)");
        return JOB_BAD_CONFIG;
    }
    rb_world w = {.rank = 0, .size = 1, .local_rank = 0, .local_size = 1};
    qo.threads = rb_threads_per_rank(&w);
    trained_model t;
    if (trained_model_load(&t, models, 1, 1, err) < 0)
        return JOB_FAILED;
    char *classes = class_names_json(&t);
    char *files[TRAINED_MAX_MEMBERS] = {0};
    int rc = classes ? 0 : rb_fail(err, NULL, "out of memory");
    for (int k = 0; rc == 0 && k < t.nmembers; k++)
        if (!(files[k] = t.nmembers == 1 ? strdup(out) : member_path(out, k)))
            rc = rb_fail(err, NULL, "out of memory");
    char *ens = rc == 0 && t.nmembers > 1 ? ensemble_json(&t, files, 0) : NULL;
    for (int k = 0; rc == 0 && k < t.nmembers; k++)
        rc = export_member(&t, k, files[k], classes, ens, &qo, err);
    if (rc == 0 && t.nmembers > 1) {
        char *note = note_path(out), *text = ensemble_json(&t, files, 1);
        if (!note || !text)
            rc = rb_fail(err, NULL, "out of memory");
        else if ((rc = fs_write_file_atomic(note, text, strlen(text), err)) == 0)
            printf("wrote %s (%d members, mean of their probabilities)\n", note, t.nmembers);
        free(note);
        free(text);
    }
    for (int k = 0; k < t.nmembers; k++)
        free(files[k]);
    free(ens);
    free(classes);
    trained_model_free(&t);
    return rc < 0 ? JOB_FAILED : 0;
}

static int run_export(int argc, char **argv)
{
    export_ctx x;
    memset(&x, 0, sizeof x);
    job_driver d = {.cmd = &command_export, .ctx = &x, .cfg = &x.cfg, .keys = &x.keys, .main = export_main};
    return job_run(&d, argc, argv);
}

const command_spec command_export = {
    .name = "export",
    .summary = "write a trained model as ONNX (uint8 image in, class probabilities out) for onnxruntime, Triton, ...",
    .usage = "usage: radbatch export [job.ini] --model run/model.h5[,more.h5] --out model.onnx "
             "[--quantize int8 --calibration shards/]",
    .opts = export_opts,
    .run = run_export,
};
