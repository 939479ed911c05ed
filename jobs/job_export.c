/* radbatch export: a trained model.h5 as an ONNX file that onnxruntime, Triton, OpenVINO
 * or TensorRT load (docs/export.md). One process, no MPI. The graph (io/onnx_export.c)
 * takes the uint8 image the shards hold and gives the class probabilities predict prints;
 * the metadata carries the class names, the decision threshold and the model card. An
 * ensemble (several comma-separated model files) becomes one ONNX file per member plus a
 * JSON note saying how predict combines them (the mean of the members' probabilities). */
#include "commands.h"
#include "fsutil.h"
#include "job_run.h"
#include "onnx_export.h"
#include "trained_model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const opt_spec export_opts[] = {
    {"model", OPT_STRING, "", NULL,
     "model file(s) written by radbatch train; several comma-separated files (an ensemble) give one ONNX file "
     "per member"},
    {"out", OPT_STRING, "", NULL,
     "the ONNX file to write (model.onnx); an ensemble writes <stem>-1.onnx ... <stem>-N.onnx and "
     "<stem>.ensemble.json next to it"},
    {NULL, 0, NULL, NULL, NULL},
};

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
    cJSON_AddNumberToObject(o, "members", t->nmembers);
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

static int export_member(const trained_model *t, int k, const char *path, const char *classes,
                         const char *ensemble, rb_error *err)
{
    const rb_model *m = t->m[k];
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
    onnx_export_opts o = {.class_names = (const char *const *)t->class_names,
                          .nclasses = t->nclasses,
                          .positive = t->positive,
                          .meta = meta,
                          .nmeta = nm};
    if (onnx_export_model(m, &o, path, err) < 0)
        return rb_error_prefix(err, "export %s: ", t->path[k]);
    printf("wrote %s (from %s)\n", path, t->path[k]);
    return 0;
}

static int export_main(void *ctx, rb_error *err)
{
    job_config *cfg = ctx;
    const char *models = job_str(cfg, "model"), *out = job_str(cfg, "out");
    if (!*models && cfg->npositional > 0)
        models = cfg->positional[0];
    if (!*models || !*out) {
        rb_fail(err, "radbatch export --model run/model.h5 --out model.onnx",
                "export: %s", !*models ? "no model file given (--model)" : "no output file given (--out)");
        return JOB_BAD_CONFIG;
    }
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
        rc = export_member(&t, k, files[k], classes, ens, err);
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
    job_config cfg;
    memset(&cfg, 0, sizeof cfg);
    job_driver d = {.cmd = &command_export, .ctx = &cfg, .cfg = &cfg, .main = export_main};
    return job_run(&d, argc, argv);
}

const command_spec command_export = {
    .name = "export",
    .summary = "write a trained model as ONNX (uint8 image in, class probabilities out) for onnxruntime, Triton, ...",
    .usage = "usage: radbatch export [job.ini] --model run/model.h5[,more.h5] --out model.onnx",
    .opts = export_opts,
    .run = run_export,
};
