/* radbatch evaluate: how good is a trained model (or an ensemble) on labelled data
 * (docs/evaluate.md).
 *
 * Every rank loads the model. The records (a split of a shards folder, or the images of
 * class folders listed by rank 0 and broadcast) are cut into batches of `batch_size` at
 * fixed global positions, and rank r of P takes the contiguous run of batches
 * [nb*r/P, nb*(r+1)/P): a batch holds the same records on any number of ranks, so the
 * probabilities are the same bytes. Each rank gathers its records (label, probabilities,
 * path, or the reason an image could not be read) to rank 0 in record order. Rank 0 fixes
 * the screening threshold (from the model card, a rule on these scores, or a given value)
 * and broadcasts it; every rank decides its records and counts its confusion matrix, which
 * is summed over the ranks. Rank 0 computes the metrics (src/metrics.h) on all records in
 * record order, checks them against the summed counts, and writes metrics.json,
 * classification_report.txt, confusion_matrix.csv, predictions.csv, roc.csv, errors.csv
 * and report.html, each to a temporary name renamed into place. */
#include "commands.h"
#include "convert_inputs.h"
#include "csv.h"
#include "fsutil.h"
#include "job_marker.h"
#include "job_run.h"
#include "metrics.h"
#include "rb_buf.h"
#include "rb_log.h"
#include "rb_mpi.h"
#include "report_html.h"
#include "shard_dataset.h"
#include "trained_model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const opt_spec evaluate_opts[] = {
    {"model", OPT_STRING, "", NULL,
     "model file(s) written by radbatch train; several comma-separated files form an ensemble (probabilities "
     "averaged); a positional argument ending in .h5 is added"},
    {"data", OPT_STRING, "", NULL,
     "a shards folder (holding index.json), or comma-separated image folders with one sub-folder per class; "
     "other positional arguments are added"},
    {"shards", OPT_STRING, "", NULL,
     "the pipeline's shards folder (as in train): evaluated when data is empty, so one job file drives "
     "convert, train and evaluate"},
    {"run_dir", OPT_STRING, "", NULL,
     "the training run folder (as in train): model = run_dir/model.h5 when model is empty, out = "
     "run_dir/evaluate when out is empty"},
    {"split", OPT_STRING, "val", NULL,
     "split of a shards folder, or of image folders laid out as train/val/test (train, val, test, all)"},
    {"layout", OPT_CHOICE, "auto", "auto|classes|splits",
     "layout of image folders: class folders, or train/val/test folders of class folders (auto: detect)"},
    {"out", OPT_STRING, "", NULL,
     "output folder: metrics.json, classification_report.txt, confusion_matrix.csv, predictions.csv, roc.csv, "
     "errors.csv, report.html"},
    {"tta", OPT_INT, "0", NULL,
     "test-time augmentation: 0 none, 1 adds a horizontal flip, 2 also four shifts by 4% (views averaged)"},
    {"threshold", OPT_CHOICE, "model", "model|youden|sensitivity|specificity|fixed",
     "screening threshold on the positive class's probability: the model card's (chosen on val at training), "
     "Youden's J or a target sensitivity/specificity on this data, or threshold_value"},
    {"target", OPT_FLOAT, "0.95", NULL, "target sensitivity or specificity for threshold = sensitivity|specificity"},
    {"threshold_value", OPT_FLOAT, "0.5", NULL, "the threshold for threshold = fixed"},
    {"positive_class", OPT_STRING, "", NULL,
     "class of the screening metrics (default: the model card's, e.g. PNEUMONIA; with more than two classes "
     "none unless given)"},
    {"bootstrap", OPT_INT, "1000", NULL, "bootstrap resamples for the 95% confidence intervals (0: none)"},
    {"seed", OPT_INT, "123", NULL, "seed of the bootstrap"},
    {"digits", OPT_INT, "2", NULL, "digits of classification_report.txt (scikit-learn's default 2)"},
    {"history", OPT_STRING, "", NULL,
     "history.csv whose training curves go into report.html (default: history.csv next to the first model "
     "file, when present; none: no curves)"},
    {"batch_size", OPT_INT, "16", NULL,
     "images per model thread in a forward pass (results do not depend on ranks or threads, only on this)"},
    {"threads", OPT_INT, "0", NULL, "compute threads per rank (0: SLURM_CPUS_PER_TASK or cores / ranks on the node)"},
    {"quiet", OPT_BOOL, "false", NULL, "no progress lines"},
    {NULL, 0, NULL, NULL, NULL},
};

#define MAX_LISTED_ERRORS 200

typedef enum { THR_MODEL, THR_YOUDEN, THR_SENSITIVITY, THR_SPECIFICITY, THR_FIXED } thr_choice;

typedef struct eval_ctx {
    job_config cfg;
    rb_world w;
    char *models;   /* comma-separated model files */
    char *data;     /* comma-separated data paths */
    const char *out;
    char *out_owned; /* out when derived from run_dir */
    int model_from_run; /* model = run_dir/model.h5: the training run must be finished */
    trained_model tm;
    int k;
    int positive;   /* screening class, -1 none */
    /* data: one of the two */
    int is_shards;
    shard_dataset ds;
    input_set in;
    int64_t n;      /* records */
    int threads;    /* model threads of this rank */
    /* this rank */
    int64_t lo, hi;
    float *my_probs; /* [(hi-lo) * k] */
    int32_t *my_labels;
    int8_t *my_ok;
    char **my_reason; /* [(hi-lo)] why an image could not be read, or NULL */
    /* rank 0, all records */
    int32_t *labels;
    int8_t *ok;
    float *probs;   /* [n * k], zero for failed records */
    char **paths;
    char **reasons; /* NULL for readable records */
    int img_splits; /* image folders laid out as train/val/test */
    /* rank 0: every row of errors.csv (listing problems, then unreadable images) */
    int64_t nerr;
    const char **err_path, **err_reason;
    double threshold;
    thr_choice thr_rule;
    char thr_source[256];
    int64_t counts[4]; /* evaluated, failed, unlabelled (evaluated without label), records */
    int64_t *cm;       /* [k * k], summed over the ranks */
    double seconds;
} eval_ctx;

static void free_strs(char **v, int64_t n)
{
    for (int64_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* "path: reason" -> "reason" */
static const char *reason_of(const char *msg, const char *path)
{
    size_t l = strlen(path);
    if (strncmp(msg, path, l) == 0 && msg[l] == ':' && msg[l + 1] == ' ')
        return msg + l + 2;
    return msg;
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
    x->models = strdup(job_str(c, "model"));
    x->data = strdup(job_str(c, "data"));
    for (int i = 0; i < c->npositional; i++) {
        const char *p = c->positional[i];
        if (ends_with(p, ".h5") && fs_is_file(p) && !fs_is_dir(p))
            x->models = list_add(x->models, p);
        else
            x->data = list_add(x->data, p);
    }
    const char *run_dir = job_str(c, "run_dir");
    if (!*x->models && *run_dir) {
        free(x->models);
        x->models = fs_join(run_dir, "model.h5");
        x->model_from_run = 1;
    }
    if (!*x->data && *job_str(c, "shards")) {
        free(x->data);
        x->data = strdup(job_str(c, "shards"));
    }
    x->out = job_str(c, "out");
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
    /* tta, target, threshold_value, digits, bootstrap, batch_size, threads: ranges checked with
     * the options (job_config.c) */
    const char *split = job_str(c, "split");
    if (shard_index_split_id(split) < 0)
        return rb_fail(err, "accepted: train, val, test, all", "evaluate: split = '%s'", split);
    const char *t = job_str(c, "threshold");
    x->thr_rule = !strcmp(t, "youden")        ? THR_YOUDEN
                  : !strcmp(t, "sensitivity") ? THR_SENSITIVITY
                  : !strcmp(t, "specificity") ? THR_SPECIFICITY
                  : !strcmp(t, "fixed")       ? THR_FIXED
                                              : THR_MODEL;
    return 0;
}

static int join_names(char **names, int n, char **out)
{
    rb_buf b = {0};
    for (int i = 0; i < n; i++)
        rb_buf_printf(&b, "%s%s", i ? "," : "", names[i]);
    rb_buf_put(&b, "", 1);
    if (b.failed) {
        rb_buf_free(&b);
        return -1;
    }
    *out = (char *)b.data;
    return 0;
}

/* The data: a shards folder, or image folders listed by rank 0 and broadcast. */
static int open_data(eval_ctx *x, rb_error *err)
{
    const char *split = job_str(&x->cfg, "split");
    char *first = strdup(x->data);
    char *comma = strchr(first, ',');
    if (comma)
        *comma = '\0';
    char *idx = fs_join(first, "index.json");
    x->is_shards = fs_is_file(idx);
    free(idx);
    free(first);
    int ok = 1;
    if (x->is_shards) {
        if (strchr(x->data, ','))
            return rb_fail(err, "evaluate one shards folder at a time", "evaluate: data '%s' lists several inputs "
                                                                         "and the first is a shards folder",
                           x->data);
        if (shard_dataset_open(&x->ds, x->data, split, 0, err) < 0)
            return -1;
        shard_dataset *d = &x->ds;
        if (d->height != x->tm.height || d->width != x->tm.width || d->channels != x->tm.channels)
            return rb_fail(err, "convert the data at the model's size, or evaluate on the image folders",
                           "%s: records are %dx%dx%d, the model takes %dx%dx%d", x->data, d->height, d->width,
                           d->channels, x->tm.height, x->tm.width, x->tm.channels);
        if (d->index.nclasses != x->k)
            return rb_fail(err, "evaluate on data with the model's classes", "%s: %d classes, the model has %d",
                           x->data, d->index.nclasses, x->k);
        for (int i = 0; i < x->k; i++)
            if (strcmp(d->index.class_names[i], x->tm.class_names[i]) != 0)
                return rb_fail(err, "the shards must list the model's classes in the model's order",
                               "%s: class %d is '%s', the model's is '%s'", x->data, i, d->index.class_names[i],
                               x->tm.class_names[i]);
        if (strcmp(d->index.resize, resize_mode_name(x->tm.resize)) != 0 && x->w.rank == 0)
            rb_warn("%s: records were resized with '%s', the model was trained with '%s'", x->data, d->index.resize,
                    resize_mode_name(x->tm.resize));
        x->n = d->n;
        return 0;
    }
    rb_buf packed = {0};
    if (x->w.rank == 0) {
        char *roots[256];
        int nroots = 0;
        char *list = strdup(x->data), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t && nroots < 256; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            if (*t)
                roots[nroots++] = t;
        }
        input_layout lay;
        input_layout_parse(job_str(&x->cfg, "layout"), &lay);
        char *classes = NULL;
        ok = join_names(x->tm.class_names, x->k, &classes) == 0;
        if (!ok)
            rb_fail(err, NULL, "out of memory");
        ok = ok && inputs_scan(&x->in, roots, nroots, lay, classes, err) == 0;
        free(classes);
        free(list);
        ok = ok && inputs_pack(&x->in, &packed) == 0;
    }
    if (!rb_mpi_agree_ok(ok)) {
        rb_buf_free(&packed);
        return job_failed_where(ok);
    }
    void *data = packed.data;
    size_t len = packed.len;
    if (rb_mpi_bcast_bytes(&data, &len, err) < 0)
        return -1;
    if (x->w.rank != 0) {
        ok = inputs_unpack(&x->in, data, len, err) == 0;
        free(data);
    }
    rb_buf_free(&packed);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    /* split folders: keep the chosen split (class folders have no split: keep all) */
    int sp = shard_index_split_id(split);
    int64_t m = 0;
    for (int64_t i = 0; i < x->in.n; i++) {
        plan_entry *e = &x->in.e[i];
        if (e->given_split >= 0)
            x->img_splits = 1;
        if (e->given_split >= 0 && sp != SHARD_INDEX_SPLITS - 1 && e->given_split != sp) {
            free(e->rel);
            free(e->abs);
            continue;
        }
        x->in.e[m++] = *e;
    }
    x->in.n = m;
    x->n = m;
    if (m == 0)
        return rb_fail(err, "check the folders: one sub-folder per class, named like the model's classes",
                       "evaluate: no images found in %s%s%s", x->data, x->in.nroots ? " for split " : "",
                       x->in.nroots ? split : "");
    return 0;
}

/* Evaluate this rank's batches; keep the probabilities and pack each record for rank 0. */
static int run_my_records(eval_ctx *x, rb_buf *pack, rb_error *err)
{
    /* S records per global batch; a forward pass takes T batches, one per model thread,
     * each padded with blank images to S rows: a record is computed with the same rows
     * around it whatever the rank and thread counts. */
    int64_t S = job_int(&x->cfg, "batch_size"), T = x->threads;
    int64_t nb = (x->n + S - 1) / S, P = x->w.size, r = x->w.rank;
    x->lo = nb * r / P * S;
    x->hi = nb * (r + 1) / P * S;
    if (x->hi > x->n)
        x->hi = x->n;
    if (x->lo > x->hi)
        x->lo = x->hi;
    int64_t mine = x->hi - x->lo;
    int k = x->k;
    size_t rec = (size_t)x->tm.height * x->tm.width * x->tm.channels;
    x->my_probs = calloc((size_t)(mine > 0 ? mine : 1) * k, sizeof *x->my_probs);
    x->my_labels = calloc((size_t)(mine > 0 ? mine : 1), sizeof *x->my_labels);
    x->my_ok = calloc((size_t)(mine > 0 ? mine : 1), 1);
    x->my_reason = calloc((size_t)(mine > 0 ? mine : 1), sizeof *x->my_reason);
    uint8_t *images = malloc((size_t)(T * S) * rec);
    int64_t *idx = malloc((size_t)S * sizeof *idx);
    int *slot = malloc((size_t)(T * S) * sizeof *slot);
    float *probs = malloc((size_t)(T * S) * k * sizeof *probs);
    if (!x->my_probs || !x->my_labels || !x->my_ok || !x->my_reason || !images || !idx || !slot || !probs) {
        free(images);
        free(idx);
        free(slot);
        free(probs);
        return rb_fail(err, NULL, "out of memory for %lld images", (long long)(T * S));
    }
    rb_progress prog;
    rb_progress_start(&prog, "evaluating (rank 0's share)", mine);
    int rc = 0;
    for (int64_t c0 = x->lo; c0 < x->hi && rc == 0; c0 += T * S) {
        int64_t c1 = c0 + T * S < x->hi ? c0 + T * S : x->hi;
        for (int64_t b = 0; b < T && rc == 0; b++) {
            int64_t b0 = c0 + b * S;
            int nbat = (int)(b0 >= c1 ? 0 : c1 - b0 < S ? c1 - b0 : S);
            uint8_t *rows = images + (size_t)(b * S) * rec;
            int *sl = slot + b * S;
            int nok = 0;
            if (x->is_shards && nbat > 0) {
                for (int i = 0; i < nbat; i++)
                    idx[i] = b0 + i;
                rc = shard_dataset_read(&x->ds, idx, nbat, rows, x->my_labels + (b0 - x->lo), err);
                for (int i = 0; i < nbat; i++) {
                    sl[i] = (int)(b * S) + i;
                    x->my_ok[b0 - x->lo + i] = 1;
                }
                nok = nbat;
            } else
                for (int i = 0; i < nbat; i++) {
                    plan_entry *e = &x->in.e[b0 + i];
                    x->my_labels[b0 - x->lo + i] = e->label;
                    rb_error fe;
                    image_info info;
                    if (trained_model_load_image(&x->tm, e->abs, rows + (size_t)nok * rec, &info, &fe) < 0) {
                        sl[i] = -1;
                        x->my_reason[b0 - x->lo + i] = strdup(reason_of(fe.msg, e->abs));
                        if (!job_bool(&x->cfg, "quiet"))
                            rb_warn("%s: %s", e->rel, reason_of(fe.msg, e->abs));
                        continue;
                    }
                    sl[i] = (int)(b * S) + nok++;
                    x->my_ok[b0 - x->lo + i] = 1;
                }
            memset(rows + (size_t)nok * rec, 0, (size_t)(S - nok) * rec); /* blank padding */
        }
        if (rc == 0)
            rc = trained_model_predict(&x->tm, images, (int)(T * S), probs, err);
        for (int64_t b = 0; rc == 0 && b < T; b++)
            for (int64_t i = 0; i < S && c0 + b * S + i < c1; i++) {
                int64_t j = c0 + b * S + i - x->lo;
                int sidx = slot[b * S + i];
                if (sidx >= 0)
                    memcpy(x->my_probs + j * k, probs + (size_t)sidx * k, (size_t)k * sizeof *probs);
            }
        if (rc == 0)
            rb_progress_update(&prog, c1 - x->lo);
    }
    free(images);
    free(idx);
    free(slot);
    free(probs);
    if (rc < 0)
        return -1;
    rb_progress_finish(&prog, mine);
    /* pack: label int32, ok int8, probabilities (readable) or reason (unreadable), path */
    for (int64_t j = 0; j < mine; j++) {
        int64_t i = x->lo + j;
        rb_buf_put(pack, &x->my_labels[j], sizeof(int32_t));
        rb_buf_put(pack, &x->my_ok[j], 1);
        if (x->my_ok[j])
            rb_buf_put(pack, x->my_probs + j * k, (size_t)k * sizeof(float));
        else
            rb_buf_put_str(pack, x->my_reason[j] ? x->my_reason[j] : "unreadable");
        if (x->is_shards) {
            char *p = NULL;
            if (shard_dataset_path(&x->ds, i, &p, err) < 0)
                return -1;
            rb_buf_put_str(pack, p);
            free(p);
        } else
            rb_buf_put_str(pack, x->in.e[i].rel);
    }
    return pack->failed ? rb_fail(err, NULL, "out of memory") : 0;
}

/* Rank 0: unpack every rank's records, in record order. */
static int unpack_all(eval_ctx *x, const uint8_t *data, size_t len, rb_error *err)
{
    int64_t n = x->n;
    int k = x->k;
    x->labels = calloc((size_t)(n ? n : 1), sizeof *x->labels);
    x->ok = calloc((size_t)(n ? n : 1), 1);
    x->probs = calloc((size_t)(n ? n : 1) * k, sizeof *x->probs);
    x->paths = calloc((size_t)(n ? n : 1), sizeof *x->paths);
    x->reasons = calloc((size_t)(n ? n : 1), sizeof *x->reasons);
    if (!x->labels || !x->ok || !x->probs || !x->paths || !x->reasons)
        return rb_fail(err, NULL, "out of memory for %lld records", (long long)n);
    rb_buf b = {(uint8_t *)data, len, len, 0, 0};
    int64_t nbad = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *p, *r = NULL;
        if (rb_buf_get(&b, &x->labels[i], sizeof(int32_t)) < 0 || rb_buf_get(&b, &x->ok[i], 1) < 0 ||
            (x->ok[i] ? rb_buf_get(&b, x->probs + i * k, (size_t)k * sizeof(float)) < 0 : !(r = rb_buf_get_str(&b))) ||
            !(p = rb_buf_get_str(&b)))
            return rb_fail(err, NULL, "internal: gathered records end at %lld of %lld", (long long)i, (long long)n);
        x->paths[i] = strdup(p);
        if (r) {
            x->reasons[i] = strdup(r);
            nbad++;
        }
    }
    /* errors.csv rows: what the listing could not use, then the unreadable images */
    int64_t nlist = x->is_shards ? 0 : x->in.nerrors;
    x->err_path = calloc((size_t)(nlist + nbad + 1), sizeof *x->err_path);
    x->err_reason = calloc((size_t)(nlist + nbad + 1), sizeof *x->err_reason);
    if (!x->err_path || !x->err_reason)
        return rb_fail(err, NULL, "out of memory");
    rb_buf eb = x->in.errors;
    eb.pos = 0;
    for (int64_t i = 0; i < nlist; i++) {
        const char *p = rb_buf_get_str(&eb), *r = rb_buf_get_str(&eb);
        if (!p || !r)
            break;
        x->err_path[x->nerr] = p;
        x->err_reason[x->nerr++] = r;
    }
    for (int64_t i = 0; i < n; i++)
        if (!x->ok[i]) {
            x->err_path[x->nerr] = x->paths[i];
            x->err_reason[x->nerr++] = x->reasons[i] ? x->reasons[i] : "unreadable";
        }
    return 0;
}

static const char *threshold_rule_text(const eval_ctx *x)
{
    static const char *names[] = {"model", "youden", "sensitivity", "specificity", "fixed"};
    return names[x->thr_rule];
}

/* Rank 0: the screening threshold on all records. */
static int choose_threshold(eval_ctx *x, rb_error *err)
{
    x->threshold = 0.5;
    if (x->positive < 0) {
        snprintf(x->thr_source, sizeof x->thr_source, "none (no screening class)");
        return 0;
    }
    const job_config *c = &x->cfg;
    if (x->thr_rule == THR_MODEL) {
        x->threshold = x->tm.has_threshold && x->positive == x->tm.positive ? x->tm.threshold : 0.5;
        if (x->tm.has_threshold && x->positive != x->tm.positive)
            snprintf(x->thr_source, sizeof x->thr_source, "default 0.5 (the model card's threshold is for %s)",
                     x->tm.class_names[x->tm.positive]);
        else if (x->tm.has_threshold)
            snprintf(x->thr_source, sizeof x->thr_source, "model card (chosen on the validation split at training)");
        else
            snprintf(x->thr_source, sizeof x->thr_source, "default 0.5 (the model card stores none)");
        return 0;
    }
    if (x->thr_rule == THR_FIXED) {
        x->threshold = job_float(c, "threshold_value");
        snprintf(x->thr_source, sizeof x->thr_source, "fixed by threshold_value");
        return 0;
    }
    /* a rule on this data's scores: readable records only, in record order */
    int64_t m = 0;
    int32_t *y = malloc((size_t)(x->n ? x->n : 1) * sizeof *y);
    float *s = malloc((size_t)(x->n ? x->n : 1) * sizeof *s);
    if (!y || !s) {
        free(y);
        free(s);
        return rb_fail(err, NULL, "out of memory");
    }
    for (int64_t i = 0; i < x->n; i++)
        if (x->ok[i]) {
            y[m] = x->labels[i];
            s[m++] = x->probs[i * x->k + x->positive];
        }
    metrics_threshold_rule rule = x->thr_rule == THR_YOUDEN        ? METRICS_THRESHOLD_YOUDEN
                                  : x->thr_rule == THR_SENSITIVITY ? METRICS_THRESHOLD_SENSITIVITY
                                                                   : METRICS_THRESHOLD_SPECIFICITY;
    double target = job_float(c, "target");
    int rc = metrics_threshold_choose(&x->threshold, rule, target, y, s, 1, m, x->k, x->positive, err);
    free(y);
    free(s);
    if (rc < 0)
        return rb_error_prefix(err, "evaluate: threshold = %s: ", threshold_rule_text(x));
    if (x->thr_rule == THR_YOUDEN)
        snprintf(x->thr_source, sizeof x->thr_source, "youden: max sensitivity + specificity - 1 on this data");
    else
        snprintf(x->thr_source, sizeof x->thr_source, "%s threshold with %s >= %g on this data",
                 x->thr_rule == THR_SENSITIVITY ? "largest" : "smallest",
                 x->thr_rule == THR_SENSITIVITY ? "sensitivity" : "specificity", target);
    return 0;
}

/* Decisions of n probability rows: the threshold for two classes, else the argmax. */
static void decide(const eval_ctx *x, const float *probs, int64_t n, int32_t *y_pred)
{
    if (x->k == 2 && x->positive >= 0)
        metrics_predict_threshold(y_pred, probs, n, x->k, x->positive, x->threshold);
    else
        metrics_argmax(y_pred, probs, n, x->k);
}

/* ------------------------------------------------------------------------------ outputs */

static cJSON *prf_json(const metrics_prf *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "precision", p->precision);
    cJSON_AddNumberToObject(o, "recall", p->recall);
    cJSON_AddNumberToObject(o, "f1", p->f1);
    cJSON_AddNumberToObject(o, "support", (double)p->support);
    return o;
}

static cJSON *ci_json(const metrics_ci *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "estimate", c->estimate);
    cJSON_AddNumberToObject(o, "lo", c->lo);
    cJSON_AddNumberToObject(o, "hi", c->hi);
    cJSON_AddNumberToObject(o, "n_defined", (double)c->n_defined);
    return o;
}

static char *metrics_json_text(const eval_ctx *x, const metrics_eval *ev)
{
    const job_config *c = &x->cfg;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "radbatch_version", RADBATCH_VERSION);
    cJSON *models = cJSON_AddArrayToObject(j, "models");
    for (int i = 0; i < x->tm.nmembers; i++)
        cJSON_AddItemToArray(models, cJSON_CreateString(x->tm.path[i]));
    cJSON *data = cJSON_AddObjectToObject(j, "data");
    cJSON_AddStringToObject(data, "path", x->data);
    cJSON_AddStringToObject(data, "kind", x->is_shards ? "shards" : "images");
    if (x->is_shards || x->img_splits)
        cJSON_AddStringToObject(data, "split", job_str(c, "split"));
    cJSON_AddNumberToObject(j, "tta", (double)job_int(c, "tta"));
    cJSON_AddItemToObject(j, "class_names", cJSON_CreateStringArray((const char *const *)x->tm.class_names, x->k));
    cJSON *cnt = cJSON_AddObjectToObject(j, "counts");
    cJSON_AddNumberToObject(cnt, "records", (double)x->counts[3]);
    cJSON_AddNumberToObject(cnt, "evaluated", (double)(x->counts[0] - x->counts[2]));
    cJSON_AddNumberToObject(cnt, "unlabelled", (double)x->counts[2]);
    cJSON_AddNumberToObject(cnt, "unreadable", (double)x->counts[1]);
    cJSON_AddNumberToObject(cnt, "errors", (double)x->nerr);
    cJSON *sup = cJSON_AddObjectToObject(cnt, "per_class");
    for (int i = 0; i < x->k; i++)
        cJSON_AddNumberToObject(sup, x->tm.class_names[i], (double)ev->cls.per_class[i].support);
    cJSON_AddNumberToObject(j, "accuracy", ev->cls.accuracy);
    cJSON *pc = cJSON_AddObjectToObject(j, "per_class");
    for (int i = 0; i < x->k; i++) {
        cJSON *o = prf_json(&ev->cls.per_class[i]);
        cJSON_AddNumberToObject(o, "auc_ovr", ev->auc_ovr ? ev->auc_ovr[i] : NAN);
        cJSON_AddItemToObject(pc, x->tm.class_names[i], o);
    }
    cJSON_AddItemToObject(j, "macro_avg", prf_json(&ev->cls.macro));
    cJSON_AddItemToObject(j, "weighted_avg", prf_json(&ev->cls.weighted));
    cJSON *auc = cJSON_AddObjectToObject(j, "auc_ovr");
    cJSON_AddNumberToObject(auc, "macro", ev->auc_macro);
    cJSON_AddNumberToObject(auc, "weighted", ev->auc_weighted);
    cJSON *cm = cJSON_AddArrayToObject(j, "confusion_matrix");
    for (int i = 0; i < x->k; i++) {
        cJSON *row = cJSON_CreateArray();
        for (int jj = 0; jj < x->k; jj++)
            cJSON_AddItemToArray(row, cJSON_CreateNumber((double)ev->confusion[i * x->k + jj]));
        cJSON_AddItemToArray(cm, row);
    }
    if (ev->has_screening) {
        const metrics_screening *s = &ev->screening;
        cJSON *sc = cJSON_AddObjectToObject(j, "screening");
        cJSON_AddStringToObject(sc, "positive_class", x->tm.class_names[x->positive]);
        cJSON *th = cJSON_AddObjectToObject(sc, "threshold");
        cJSON_AddNumberToObject(th, "value", s->threshold);
        cJSON_AddStringToObject(th, "rule", threshold_rule_text(x));
        cJSON_AddStringToObject(th, "source", x->thr_source);
        if (x->thr_rule == THR_SENSITIVITY || x->thr_rule == THR_SPECIFICITY)
            cJSON_AddNumberToObject(th, "target", job_float(c, "target"));
        cJSON_AddStringToObject(th, "applies_to", "probability of positive_class; positive when >= value");
        cJSON_AddNumberToObject(sc, "tp", (double)s->tp);
        cJSON_AddNumberToObject(sc, "fp", (double)s->fp);
        cJSON_AddNumberToObject(sc, "tn", (double)s->tn);
        cJSON_AddNumberToObject(sc, "fn", (double)s->fn);
        cJSON_AddNumberToObject(sc, "sensitivity", s->sensitivity);
        cJSON_AddNumberToObject(sc, "specificity", s->specificity);
        cJSON_AddNumberToObject(sc, "ppv", s->ppv);
        cJSON_AddNumberToObject(sc, "npv", s->npv);
        cJSON_AddNumberToObject(sc, "f1", s->f1);
        cJSON_AddNumberToObject(sc, "mcc", s->mcc);
        cJSON_AddNumberToObject(sc, "balanced_accuracy", s->balanced_accuracy);
        cJSON_AddNumberToObject(sc, "accuracy", s->accuracy);
        cJSON_AddNumberToObject(sc, "roc_auc", ev->roc.auc);
        if (ev->has_bootstrap) {
            const metrics_bootstrap *b = &ev->bootstrap;
            cJSON *bo = cJSON_AddObjectToObject(sc, "bootstrap");
            cJSON_AddNumberToObject(bo, "resamples", (double)b->resamples);
            cJSON_AddNumberToObject(bo, "seed", (double)b->seed);
            cJSON_AddNumberToObject(bo, "level", b->level);
            cJSON_AddItemToObject(bo, "accuracy", ci_json(&b->accuracy));
            cJSON_AddItemToObject(bo, "sensitivity", ci_json(&b->sensitivity));
            cJSON_AddItemToObject(bo, "specificity", ci_json(&b->specificity));
            cJSON_AddItemToObject(bo, "roc_auc", ci_json(&b->auc));
        }
    }
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

static int write_text(const char *dir, const char *name, const char *text, rb_error *err)
{
    char *p = fs_join(dir, name);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    int rc = fs_write_file_atomic(p, text, strlen(text), err);
    free(p);
    return rc;
}

static int open_csv(csv_writer *w, const char *dir, const char *name, rb_error *err)
{
    char *p = fs_join(dir, name);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    int rc = csv_writer_open(w, p, err);
    free(p);
    return rc;
}

/* Probabilities in predictions.csv: 6 decimals, like Keras' printed values and enough to
 * reproduce every decision at a 4-decimal threshold. */
static void csv_prob(csv_writer *w, float v)
{
    char b[32];
    snprintf(b, sizeof b, "%.6f", (double)v);
    csv_field(w, b);
}

static int write_csvs(const eval_ctx *x, const metrics_eval *ev, const int32_t *y_pred_all, rb_error *err)
{
    int k = x->k;
    char **names = x->tm.class_names;
    csv_writer w;
    /* confusion_matrix.csv */
    if (open_csv(&w, x->out, "confusion_matrix.csv", err) < 0)
        return -1;
    csv_field(&w, "true\\predicted");
    for (int j = 0; j < k; j++)
        csv_field(&w, names[j]);
    csv_end_row(&w);
    for (int i = 0; i < k; i++) {
        csv_field(&w, names[i]);
        for (int j = 0; j < k; j++)
            csv_field_int(&w, (long long)ev->confusion[i * k + j]);
        csv_end_row(&w);
    }
    if (csv_writer_close(&w, err) < 0)
        return -1;
    /* predictions.csv */
    if (open_csv(&w, x->out, "predictions.csv", err) < 0)
        return -1;
    csv_field(&w, "path");
    csv_field(&w, "true_label");
    csv_field(&w, "predicted_label");
    for (int j = 0; j < k; j++) {
        char h[512];
        snprintf(h, sizeof h, "prob_%s", names[j]);
        csv_field(&w, h);
    }
    csv_end_row(&w);
    for (int64_t i = 0; i < x->n; i++) {
        if (!x->ok[i])
            continue;
        csv_field(&w, x->paths[i]);
        csv_field(&w, x->labels[i] >= 0 && x->labels[i] < k ? names[x->labels[i]] : "");
        csv_field(&w, names[y_pred_all[i]]);
        for (int j = 0; j < k; j++)
            csv_prob(&w, x->probs[i * k + j]);
        csv_end_row(&w);
    }
    if (csv_writer_close(&w, err) < 0)
        return -1;
    /* roc.csv: the positive class's curve (binary screening) */
    if (ev->has_screening) {
        if (open_csv(&w, x->out, "roc.csv", err) < 0)
            return -1;
        csv_field(&w, "fpr");
        csv_field(&w, "tpr");
        csv_field(&w, "threshold");
        csv_end_row(&w);
        for (int64_t i = 0; i < ev->roc.n_points; i++) {
            char b[64];
            snprintf(b, sizeof b, "%.17g", ev->roc.fpr[i]);
            csv_field(&w, b);
            snprintf(b, sizeof b, "%.17g", ev->roc.tpr[i]);
            csv_field(&w, b);
            snprintf(b, sizeof b, "%.17g", ev->roc.thresholds[i]);
            csv_field(&w, b);
            csv_end_row(&w);
        }
        if (csv_writer_close(&w, err) < 0)
            return -1;
    }
    else { /* no curve: no roc.csv from an earlier run in this folder either */
        char *p = fs_join(x->out, "roc.csv");
        if (p && fs_is_file(p))
            unlink(p);
        free(p);
    }
    /* errors.csv: listing problems, then unreadable images in record order */
    if (open_csv(&w, x->out, "errors.csv", err) < 0)
        return -1;
    csv_field(&w, "path");
    csv_field(&w, "reason");
    csv_end_row(&w);
    for (int64_t i = 0; i < x->nerr; i++) {
        csv_field(&w, x->err_path[i]);
        csv_field(&w, x->err_reason[i]);
        csv_end_row(&w);
    }
    return csv_writer_close(&w, err);
}

/* history.csv -> columns by name; NaN for empty cells. Returns rows, or -1. */
typedef struct history {
    int64_t n;
    double *epoch, *loss, *val_loss, *acc, *val_acc, *val_auc;
} history;

static void history_free(history *h)
{
    free(h->epoch);
    free(h->loss);
    free(h->val_loss);
    free(h->acc);
    free(h->val_acc);
    free(h->val_auc);
    memset(h, 0, sizeof *h);
}

static int history_read(const char *path, history *h)
{
    memset(h, 0, sizeof *h);
    uint8_t *buf;
    size_t len;
    rb_error e;
    if (fs_read_file(path, 64u << 20, &buf, &len, &e) < 0)
        return -1;
    char *text = realloc(buf, len + 1);
    if (!text) {
        free(buf);
        return -1;
    }
    text[len] = '\0';
    int64_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    size_t cap = (size_t)lines + 1;
    double **cols[6] = {&h->epoch, &h->loss, &h->val_loss, &h->acc, &h->val_acc, &h->val_auc};
    static const char *want[6] = {"epoch", "loss", "val_loss", "accuracy", "val_accuracy", "val_auc"};
    int where[6] = {-1, -1, -1, -1, -1, -1};
    for (int c = 0; c < 6; c++)
        *cols[c] = malloc(cap * sizeof(double));
    int rc = 0, header = 1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && rc == 0; line = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[--l] = '\0';
        if (!l)
            continue;
        char *f[64];
        int nf = csv_split_line(line, f, 64);
        if (header) {
            for (int i = 0; i < nf; i++)
                for (int c = 0; c < 6; c++)
                    if (!strcmp(f[i], want[c]))
                        where[c] = i;
            header = 0;
            if (where[0] < 0 || where[1] < 0)
                rc = -1;
            continue;
        }
        if ((size_t)h->n >= cap)
            break;
        for (int c = 0; c < 6; c++) {
            double v = NAN;
            if (where[c] >= 0 && where[c] < nf && *f[where[c]]) {
                char *end;
                v = strtod(f[where[c]], &end);
                if (end == f[where[c]])
                    v = NAN;
            }
            (*cols[c])[h->n] = v;
        }
        h->n++;
    }
    free(text);
    for (int c = 0; c < 6; c++)
        if (!*cols[c])
            rc = -1;
    if (rc < 0 || h->n == 0) {
        history_free(h);
        return -1;
    }
    /* epochs restart in a fine-tuning stage on some runs: plot the row number then */
    for (int64_t i = 1; i < h->n; i++)
        if (!(h->epoch[i] > h->epoch[i - 1])) {
            for (int64_t j = 0; j < h->n; j++)
                h->epoch[j] = (double)(j + 1);
            break;
        }
    return 0;
}

static char *history_path(const eval_ctx *x)
{
    const char *h = job_str(&x->cfg, "history");
    if (!strcmp(h, "none"))
        return NULL;
    if (*h)
        return strdup(h);
    char *dir = strdup(x->tm.path[0]);
    char *slash = strrchr(dir, '/');
    char *p;
    if (slash) {
        *slash = '\0';
        p = fs_join(dir, "history.csv");
    } else
        p = strdup("history.csv");
    free(dir);
    if (p && !fs_is_file(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static void fmt4(char *b, size_t cap, double v)
{
    if (isnan(v))
        snprintf(b, cap, "n/a");
    else if (isinf(v))
        snprintf(b, cap, v > 0 ? "inf" : "-inf");
    else
        snprintf(b, cap, "%.4f", v);
}

static void fmt_ci(char *b, size_t cap, const metrics_ci *c)
{
    if (isnan(c->lo) || isnan(c->hi))
        snprintf(b, cap, "n/a");
    else
        snprintf(b, cap, "%.4f - %.4f", c->lo, c->hi);
}

static int write_report_html(const eval_ctx *x, const metrics_eval *ev, const char *report_text, rb_error *err)
{
    const job_config *c = &x->cfg;
    char **names = x->tm.class_names;
    int k = x->k;
    char title[512];
    const char *mname = strrchr(x->tm.path[0], '/');
    snprintf(title, sizeof title, "radbatch evaluate: %s%s", mname ? mname + 1 : x->tm.path[0],
             x->tm.nmembers > 1 ? " (ensemble)" : "");
    html_doc *d = html_begin(title);
    if (!d)
        return rb_fail(err, NULL, "out of memory building report.html");
    rb_buf mlist = {0};
    for (int i = 0; i < x->tm.nmembers; i++)
        rb_buf_printf(&mlist, "%s%s", i ? ", " : "", x->tm.path[i]);
    rb_buf_put(&mlist, "", 1);
    html_para(d, "Model%s: %s", x->tm.nmembers > 1 ? "s (ensemble, probabilities averaged)" : "",
              mlist.data ? (const char *)mlist.data : "");
    rb_buf_free(&mlist);
    if (x->is_shards)
        html_para(d, "Data: %s, split %s (shards).", x->data, job_str(c, "split"));
    else
        html_para(d, "Data: %s (image folders).", x->data);
    int64_t tta = job_int(c, "tta");
    html_para(d, "Records: %lld; evaluated: %lld; unlabelled: %lld; unreadable: %lld. Test-time augmentation: %s.",
              (long long)x->counts[3], (long long)(x->counts[0] - x->counts[2]), (long long)x->counts[2],
              (long long)x->counts[1], tta == 0 ? "none" : tta == 1 ? "flip (2 views)" : "flip and shifts (6 views)");

    html_h2(d, "Metrics");
    const char *hdr[3] = {"metric", "value", "95% CI (bootstrap)"};
    char cell[16][3][64];
    const char *cells[16 * 3];
    int rows = 0;
    const metrics_bootstrap *b = ev->has_bootstrap ? &ev->bootstrap : NULL;
#define ROW(name, v, ci)                                                                                             \
    do {                                                                                                             \
        snprintf(cell[rows][0], 64, "%s", name);                                                                     \
        fmt4(cell[rows][1], 64, v);                                                                                  \
        if (ci)                                                                                                      \
            fmt_ci(cell[rows][2], 64, ci);                                                                           \
        else                                                                                                         \
            cell[rows][2][0] = '\0';                                                                                 \
        rows++;                                                                                                      \
    } while (0)
    ROW("accuracy", ev->cls.accuracy, b ? &b->accuracy : NULL);
    if (ev->has_screening) {
        const metrics_screening *s = &ev->screening;
        ROW("sensitivity (recall)", s->sensitivity, b ? &b->sensitivity : NULL);
        ROW("specificity", s->specificity, b ? &b->specificity : NULL);
        ROW("PPV (precision)", s->ppv, NULL);
        ROW("NPV", s->npv, NULL);
        ROW("F1", s->f1, NULL);
        ROW("MCC", s->mcc, NULL);
        ROW("balanced accuracy", s->balanced_accuracy, NULL);
        ROW("ROC AUC", ev->roc.auc, b ? &b->auc : NULL);
        ROW("threshold", s->threshold, NULL);
    }
    ROW("macro avg F1", ev->cls.macro.f1, NULL);
    ROW("weighted avg F1", ev->cls.weighted.f1, NULL);
    if (k > 2 || !ev->has_screening) {
        ROW("AUC one-vs-rest, macro", ev->auc_macro, NULL);
        ROW("AUC one-vs-rest, weighted", ev->auc_weighted, NULL);
    }
#undef ROW
    int nc = b && ev->has_screening ? 3 : 2; /* intervals only with screening and bootstrap */
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < nc; j++)
            cells[i * nc + j] = cell[i][j];
    html_table(d, nc, hdr, rows, cells);
    if (ev->has_screening) {
        const metrics_screening *s = &ev->screening;
        html_para(d, "Screening class %s: positive when its probability >= %.4f (threshold %s: %s). tp %lld, fp %lld, "
                     "tn %lld, fn %lld.",
                  names[x->positive], s->threshold, threshold_rule_text(x), x->thr_source, (long long)s->tp,
                  (long long)s->fp, (long long)s->tn, (long long)s->fn);
        if (b)
            html_para(d, "Confidence intervals: percentile bootstrap, %lld resamples, seed %llu.",
                      (long long)b->resamples, (unsigned long long)b->seed);
    }

    html_h2(d, "Per class");
    {
        const char *ph[6] = {"class", "precision", "recall", "f1-score", "support", "AUC (one-vs-rest)"};
        int nr = k + 2;
        char(*pc)[6][48] = calloc((size_t)nr, sizeof *pc);
        const char **pcells = calloc((size_t)nr * 6, sizeof *pcells);
        if (pc && pcells) {
            for (int i = 0; i < nr; i++) {
                const metrics_prf *p = i < k ? &ev->cls.per_class[i] : i == k ? &ev->cls.macro : &ev->cls.weighted;
                snprintf(pc[i][0], 48, "%s", i < k ? names[i] : i == k ? "macro avg" : "weighted avg");
                snprintf(pc[i][1], 48, "%.4f", p->precision);
                snprintf(pc[i][2], 48, "%.4f", p->recall);
                snprintf(pc[i][3], 48, "%.4f", p->f1);
                snprintf(pc[i][4], 48, "%lld", (long long)p->support);
                fmt4(pc[i][5], 48, i < k ? (ev->auc_ovr ? ev->auc_ovr[i] : NAN) : i == k ? ev->auc_macro
                                                                                          : ev->auc_weighted);
                for (int j = 0; j < 6; j++)
                    pcells[i * 6 + j] = pc[i][j];
            }
            html_table(d, 6, ph, nr, pcells);
        }
        free(pc);
        free(pcells);
    }
    html_para(d, "Classification report (scikit-learn's layout):");
    html_pre(d, report_text);

    html_h2(d, ev->has_screening ? "Confusion matrix and ROC curve" : "Confusion matrix");
    html_svg_confusion(d, ev->confusion, k, (const char *const *)names);
    if (ev->has_screening) {
        const metrics_screening *s = &ev->screening;
        double op_fpr = s->tn + s->fp > 0 ? (double)s->fp / (double)(s->tn + s->fp) : NAN;
        double op_tpr = s->tp + s->fn > 0 ? (double)s->tp / (double)(s->tp + s->fn) : NAN;
        html_svg_roc(d, ev->roc.fpr, ev->roc.tpr, ev->roc.n_points, ev->roc.auc, op_fpr, op_tpr);
    }

    char *hp = history_path(x);
    history h;
    if (hp && history_read(hp, &h) == 0) {
        html_h2(d, "Training curves");
        html_para(d, "From %s.", hp);
        const char *ln[2] = {"loss", "val_loss"};
        const double *ly[2] = {h.loss, h.val_loss};
        html_svg_lines(d, "Loss", "epoch", 2, ln, h.epoch, ly, h.n);
        const char *an[3] = {"accuracy", "val_accuracy", "val_auc"};
        const double *ay[3] = {h.acc, h.val_acc, h.val_auc};
        int na = 3;
        int any_auc = 0;
        for (int64_t i = 0; i < h.n; i++)
            any_auc |= !isnan(h.val_auc[i]);
        if (!any_auc)
            na = 2;
        html_svg_lines(d, na == 3 ? "Accuracy and validation AUC" : "Accuracy", "epoch", na, an, h.epoch, ay, h.n);
        history_free(&h);
    } else if (hp)
        html_para(d, "Training curves: %s could not be read.", hp);
    free(hp);

    html_h2(d, "Model card");
    if (x->tm.card) {
        cJSON *card = cJSON_Parse(x->tm.card);
        char *pretty = card ? cJSON_Print(card) : NULL;
        html_pre(d, pretty ? pretty : x->tm.card);
        free(pretty);
        cJSON_Delete(card);
    } else
        html_para(d, "The model file holds no model card.");

    html_h2(d, "Errors");
    if (x->nerr == 0)
        html_para(d, "None: every image was read.");
    else {
        int64_t shown = x->nerr < MAX_LISTED_ERRORS ? x->nerr : MAX_LISTED_ERRORS;
        const char **ec = calloc((size_t)shown * 2, sizeof *ec);
        for (int64_t i = 0; ec && i < shown; i++) {
            ec[i * 2] = x->err_path[i];
            ec[i * 2 + 1] = x->err_reason[i];
        }
        html_para(d, "%lld file(s) or folder(s) could not be used%s; errors.csv lists them all.", (long long)x->nerr,
                  x->nerr > shown ? " (the first 200 below)" : "");
        const char *eh[2] = {"path", "reason"};
        html_table(d, 2, eh, ec ? (int)shown : 0, ec);
        free(ec);
    }
    char *p = fs_join(x->out, "report.html");
    int rc = html_end_write(d, p, err);
    free(p);
    return rc;
}

static void print_screening(const eval_ctx *x, const metrics_eval *ev)
{
    const metrics_screening *s = &ev->screening;
    const metrics_bootstrap *b = ev->has_bootstrap ? &ev->bootstrap : NULL;
    char t[32];
    fmt4(t, sizeof t, s->threshold);
    printf("Screening (%s positive when its probability >= %s; threshold %s: %s):\n", x->tm.class_names[x->positive],
           t, threshold_rule_text(x), x->thr_source);
    struct {
        const char *name;
        double v;
        const metrics_ci *ci;
    } m[] = {{"sensitivity", s->sensitivity, b ? &b->sensitivity : NULL},
             {"specificity", s->specificity, b ? &b->specificity : NULL},
             {"PPV", s->ppv, NULL},
             {"NPV", s->npv, NULL},
             {"F1", s->f1, NULL},
             {"MCC", s->mcc, NULL},
             {"balanced accuracy", s->balanced_accuracy, NULL},
             {"accuracy", s->accuracy, b ? &b->accuracy : NULL},
             {"ROC AUC", ev->roc.auc, b ? &b->auc : NULL}};
    printf(" ");
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        fmt4(t, sizeof t, m[i].v);
        printf(" %s %s", m[i].name, t);
        if (m[i].ci && !isnan(m[i].ci->lo))
            printf(" [%.4f, %.4f]", m[i].ci->lo, m[i].ci->hi);
        printf(i + 1 < sizeof m / sizeof m[0] ? "," : "\n");
    }
    printf("  tp %lld  fp %lld  tn %lld  fn %lld", (long long)s->tp, (long long)s->fp, (long long)s->tn,
           (long long)s->fn);
    if (b)
        printf("  (95%% CI: percentile bootstrap, %lld resamples, seed %llu)", (long long)b->resamples,
               (unsigned long long)b->seed);
    printf("\n");
}

/* Rank 0: the metrics and every output file. */
static int report_all(eval_ctx *x, rb_error *err)
{
    int k = x->k;
    int64_t n = x->n, m = 0;
    int32_t *y_pred_all = malloc((size_t)(n ? n : 1) * sizeof *y_pred_all);
    int32_t *yt = malloc((size_t)(n ? n : 1) * sizeof *yt);
    int32_t *yp = malloc((size_t)(n ? n : 1) * sizeof *yp);
    float *pr = malloc((size_t)(n ? n : 1) * k * sizeof *pr);
    if (!y_pred_all || !yt || !yp || !pr) {
        free(y_pred_all);
        free(yt);
        free(yp);
        free(pr);
        return rb_fail(err, NULL, "out of memory for %lld records", (long long)n);
    }
    decide(x, x->probs, n, y_pred_all);
    for (int64_t i = 0; i < n; i++)
        if (x->ok[i]) {
            yt[m] = x->labels[i];
            yp[m] = y_pred_all[i];
            memcpy(pr + m * k, x->probs + i * k, (size_t)k * sizeof *pr);
            m++;
        }
    metrics_eval_config cfg;
    metrics_eval_config_default(&cfg);
    cfg.positive = x->positive;
    cfg.rule = METRICS_THRESHOLD_FIXED;
    cfg.threshold = x->threshold;
    cfg.bootstrap = job_int(&x->cfg, "bootstrap");
    cfg.seed = (uint64_t)job_int(&x->cfg, "seed");
    cfg.level = 0.95;
    metrics_eval ev;
    int rc = metrics_eval_compute(&ev, &cfg, yt, yp, pr, m, k, err);
    free(yt);
    free(yp);
    free(pr);
    if (rc < 0) {
        free(y_pred_all);
        return -1;
    }
    /* the summed per-rank counts must be the matrix of the gathered records */
    if (memcmp(ev.confusion, x->cm, (size_t)k * k * sizeof *x->cm) != 0)
        rc = rb_fail(err, "please report this with the command line", "internal: the confusion matrix summed over "
                                                                      "the ranks differs from the gathered one");
    char *report = NULL;
    if (rc == 0) {
        int64_t len = metrics_report_text(NULL, NULL, 0, &ev.cls, (const char *const *)x->tm.class_names,
                                          (int)job_int(&x->cfg, "digits"));
        report = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (!report)
            rc = rb_fail(err, NULL, "out of memory");
        else
            metrics_report_text(NULL, report, (size_t)len + 1, &ev.cls, (const char *const *)x->tm.class_names,
                                (int)job_int(&x->cfg, "digits"));
    }
    char *json = rc == 0 ? metrics_json_text(x, &ev) : NULL;
    if (rc == 0 && !json)
        rc = rb_fail(err, NULL, "out of memory");
    if (rc == 0)
        rc = write_text(x->out, "classification_report.txt", report, err);
    if (rc == 0) {
        size_t l = strlen(json);
        char *j2 = malloc(l + 2);
        if (!j2)
            rc = rb_fail(err, NULL, "out of memory");
        else {
            memcpy(j2, json, l);
            j2[l] = '\n';
            j2[l + 1] = '\0';
            rc = write_text(x->out, "metrics.json", j2, err);
            free(j2);
        }
    }
    if (rc == 0)
        rc = write_csvs(x, &ev, y_pred_all, err);
    if (rc == 0)
        rc = write_report_html(x, &ev, report, err);
    if (rc == 0) { /* the marker last: the folder is finished */
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "models", x->models);
        cJSON_AddStringToObject(f, "data", x->data);
        cJSON_AddNumberToObject(f, "images", (double)x->counts[0]);
        cJSON_AddNumberToObject(f, "unreadable", (double)x->counts[1]);
        rc = job_marker_write(x->out, "evaluate", f, err);
    }
    if (rc == 0) {
        printf("\nClassification Report:\n%s\n", report);
        printf("Confusion matrix (rows: true, columns: predicted):\n");
        metrics_confusion_text(stdout, NULL, 0, ev.confusion, k, (const char *const *)x->tm.class_names);
        printf("\n");
        if (ev.has_screening)
            print_screening(x, &ev);
        if (k > 2 || !ev.has_screening) {
            printf("ROC AUC one-vs-rest:");
            for (int i = 0; i < k; i++)
                printf(" %s %.4f", x->tm.class_names[i], ev.auc_ovr[i]);
            printf("; macro %.4f, weighted %.4f\n", ev.auc_macro, ev.auc_weighted);
        }
        printf("\nevaluated %lld images (%lld unreadable) in %.1f s, %.0f images/s on %d rank(s)\n",
               (long long)(x->counts[0]), (long long)x->counts[1], x->seconds,
               x->seconds > 0 ? (double)x->counts[0] / x->seconds : 0.0, x->w.size);
        if (x->counts[1])
            printf("unreadable images: %s/errors.csv\n", x->out);
        printf("report: %s/report.html\n", x->out);
        fflush(stdout);
    }
    free(report);
    free(json);
    free(y_pred_all);
    metrics_eval_free(&ev);
    return rc;
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

/* 0 ok; -1 this rank failed (err set); -2 another rank failed; -3 bad configuration */
static int evaluate_main(eval_ctx *x, rb_error *err)
{
    if (check_config(x, err) < 0)
        return -3;
    int64_t threads = job_int(&x->cfg, "threads");
    x->threads = threads > 0 ? (int)threads : x->w.threads > 0 ? x->w.threads : 1;
    double t0 = rb_now();
    int rc = 0;
    if (x->model_from_run && !job_marker_done(job_str(&x->cfg, "run_dir"), "train"))
        rc = rb_fail(err, "finish the training run first (rerun train with --resume true), or give --model",
                     "evaluate: %s is not a finished training run (no complete %s)", job_str(&x->cfg, "run_dir"),
                     JOB_MARKER_FILE);
    if (rc == 0)
        rc = trained_model_load(&x->tm, x->models, x->threads * (int)job_int(&x->cfg, "batch_size"), x->threads, err);
    if ((rc = agree_step(x, rc)) < 0)
        return rc;
    x->k = x->tm.nclasses;
    trained_model_set_tta(&x->tm, (int)job_int(&x->cfg, "tta"));
    const char *pc = job_str(&x->cfg, "positive_class");
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
            return -3;
        }
    }
    if (x->w.rank == 0) {
        rb_info("model: %s (%d classes, %dx%dx%d input, %s)", x->models, x->k, x->tm.height, x->tm.width,
                x->tm.channels, x->tm.nmembers > 1 ? "ensemble" : "one member");
    }
    rc = open_data(x, err);
    if ((rc = agree_step(x, rc)) < 0)
        return rc;
    /* the folder is unfinished from here until summary.json is written last */
    int ok = x->w.rank != 0 || (fs_mkdirs(x->out, err) == 0 && job_marker_clear(x->out, err) == 0);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    if (x->w.rank == 0)
        rb_info("%s: %lld records (%s)", x->data, (long long)x->n, x->is_shards ? job_str(&x->cfg, "split") : "images");

    rb_buf pack = {0};
    ok = run_my_records(x, &pack, err) == 0;
    if (!rb_mpi_agree_ok(ok)) {
        rb_buf_free(&pack);
        return job_failed_where(ok);
    }
    void *all = NULL;
    size_t alen = 0;
    rc = rb_mpi_gather_bytes(pack.data, pack.len, &all, &alen, err);
    rb_buf_free(&pack);
    if (rc < 0)
        return -1;
    ok = x->w.rank != 0 || (unpack_all(x, all, alen, err) == 0 && choose_threshold(x, err) == 0);
    free(all);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    rb_mpi_bcast_f64(&x->threshold, 1);

    /* every rank decides its records; counts summed over the ranks */
    int k = x->k;
    int64_t mine = x->hi - x->lo;
    int64_t *sums = calloc((size_t)k * k + 4, sizeof *sums);
    int32_t *yp = malloc((size_t)(mine > 0 ? mine : 1) * sizeof *yp);
    if (!sums || !yp) {
        free(sums);
        free(yp);
        return rb_fail(err, NULL, "out of memory");
    }
    decide(x, x->my_probs, mine, yp);
    for (int64_t j = 0; j < mine; j++) {
        if (!x->my_ok[j]) {
            sums[k * k + 1]++;
            continue;
        }
        sums[k * k + 0]++;
        int32_t y = x->my_labels[j];
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
    x->seconds = rb_now() - t0;

    ok = 1;
    if (x->w.rank == 0) {
        if (x->counts[0] - x->counts[2] == 0)
            ok = rb_fail(err, "see errors.csv for the reason of each file",
                         "evaluate: no labelled image could be evaluated") == 0;
        ok = ok && report_all(x, err) == 0;
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
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
    free(x->my_probs);
    free(x->my_labels);
    free(x->my_ok);
    free_strs(x->my_reason, x->my_reason ? x->hi - x->lo : 0);
    free(x->err_path);
    free(x->err_reason);
    free(x->labels);
    free(x->ok);
    free(x->probs);
    free_strs(x->paths, x->paths ? x->n : 0);
    free_strs(x->reasons, x->reasons ? x->n : 0);
    free(x->cm);
}

static int run_evaluate(int argc, char **argv)
{
    eval_ctx x;
    memset(&x, 0, sizeof x);
    job_driver d = {&command_evaluate, &x, &x.cfg, &x.w, NULL, eval_run, eval_free};
    return job_run(&d, argc, argv);
}

const command_spec command_evaluate = {
    "evaluate",
    "metrics, classification report, confusion matrix, ROC and an HTML report of a model (or ensemble) on "
    "shards or image folders",
    "usage: radbatch evaluate [job.ini] --model run/model.h5[,run2/model.h5] --data <shards folder | image "
    "folder(s)> --out <folder> [--key value ...]",
    evaluate_opts,
    run_evaluate,
};
