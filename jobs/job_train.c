/* radbatch train: synchronous data-parallel training over MPI ranks (docs/train.md).
 *
 * Every rank holds the whole model. Each step, rank r computes the gradient sum of its
 * slice of the global batch (loss normalised by the global batch size), one allreduce
 * (SUM) over the single contiguous gradient span gives the mean gradient everywhere, and
 * every rank applies the same optimizer step. Randomness (shuffle, augmentation, dropout)
 * is keyed by (seed, epoch, epoch position), so the run does not depend on the number of
 * ranks beyond float summation order. Rank 0 prints, validates, writes history.csv,
 * checkpoints and model files. */
#include "test_hooks.h"
#include "commands.h"
#include "fsutil.h"
#include "job_marker.h"
#include "job_run.h"
#include "keras_import.h"
#include "loss.h"
#include "metrics.h"
#include "model.h"
#include "model_file.h"
#include "optim.h"
#include "rb_buf.h"
#include "rb_log.h"
#include "rb_mpi.h"
#include "shard_dataset.h"
#include "train_checkpoint.h"
#include "train_data.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static const opt_spec train_opts[] = {
    /* data */
    {"shards", OPT_STRING, "", NULL, "shards folder written by radbatch convert"},
    {"train_split", OPT_STRING, "train", NULL, "split to train on"},
    {"val_split", OPT_STRING, "val", NULL, "split to validate on every epoch (empty: none)"},
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
    {"feature_cache", OPT_CHOICE, "auto", "auto|true|false",
     "with a frozen base and no augmentation, compute base features once and train the head on them"},
    {"positive_class", OPT_STRING, "", NULL, "class whose sensitivity is reported (default: the last class, e.g. PNEUMONIA)"},
    {"max_steps", OPT_INT, "0", NULL, "stop after this many steps in total (0: no limit; for tests and smoke runs)"},
    {"quiet", OPT_BOOL, "false", NULL, "no progress lines"},
    {NULL, 0, NULL, NULL, NULL},
};

static volatile sig_atomic_t g_term = 0;
static void on_term(int sig) { (void)sig; g_term = 1; }

enum { M_LOSS, M_ACC, M_VLOSS, M_VACC, M_VSENS, M_VSPEC, M_VAUC, M_COUNT };
static const char *metric_names[M_COUNT] = {"loss", "accuracy", "val_loss", "val_accuracy",
                                            "val_sensitivity", "val_specificity", "val_auc"};

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

typedef struct train_ctx {
    job_config cfg;
    rb_world w;
    const char *run_dir;
    shard_dataset tr, va;
    int have_val;
    int nclasses;
    char **class_names;
    int positive;
    train_net net;         /* the whole model */
    train_net head;        /* the head alone, during a feature-cached stage */
    train_net *a;          /* the one being trained: &net, or &head with the cache */
    int cached;            /* this stage trains the head on cached base features */
    float *feat_train, *feat_val; /* [n, feat_dim] base features of every record */
    int64_t feat_dim;
    float *class_weight;   /* [nclasses] or NULL */
    float *dlogits;
    int sigmoid;
    float *targets;        /* binary targets for sigmoid */
    /* progress */
    int stage;             /* 1 or 2 */
    int64_t epoch;         /* current epoch (0-based, over both stages) */
    int64_t step;          /* optimizer steps taken */
    int64_t next_batch;    /* first batch of the epoch still to do (resume) */
    float lr;
    double best;
    int64_t best_epoch;
    int wait_es, wait_lr;
    double metrics[M_COUNT];
    double best_metrics[M_COUNT];
    float *best_params, *best_state; /* restore_best copy */
    rb_buf history;        /* CSV rows so far (without header) */
    double t_epoch;
    /* epoch accumulators (this rank) */
    double loss_sum, correct, seen;
    char index_checksum[17];
    char *job_text;
    float *val_scores;     /* rank 0: positive-class probability of every val record */
    int32_t *val_labels;   /* rank 0: label of every val record */
    int64_t nval;
    int stop_requested;    /* SIGTERM seen by some rank, agreed at the last step */
    int64_t step_start;    /* x->step when this invocation began training (after a resume) */
    double t_allreduce;    /* seconds in the gradient allreduce this epoch (rank 0) */
} train_ctx;

static void net_free(train_net *n)
{
    rb_workspace_free(n->ws);
    rb_workspace_free(n->ws_eval);
    optim_free(&n->opt);
    if (n->m)
        rb_model_free(n->m);
    free(n->ranges);
    free(n->kernels);
    memset(n, 0, sizeof *n);
}

static int metric_is_loss(const char *name) { return strstr(name, "loss") != NULL; }

static int metric_id(const char *name)
{
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(metric_names[i], name) == 0)
            return i;
    return -1;
}

/* ---- setup ---------------------------------------------------------------------------- */

static int parse_head(train_ctx *x, rb_head_opts *h, rb_error *err)
{
    const job_config *c = &x->cfg;
    int cnn = strcmp(job_str(c, "backbone"), "cnn") == 0;
    *h = cnn ? rb_head_seed001(x->nclasses) : rb_head_seed000(x->nclasses);
    const char *pool = job_str(c, "head_pooling");
    if (!strcmp(pool, "gap"))
        h->pooling = RB_POOL_GAP;
    else if (!strcmp(pool, "flatten"))
        h->pooling = RB_POOL_FLATTEN;
    if (job_float(c, "head_dropout") >= 0)
        h->dropout = (float)job_float(c, "head_dropout");
    const char *units = job_str(c, "head_units");
    if (strcmp(units, "auto") != 0) {
        h->nunits = 0;
        char *s = strdup(units), *save = NULL;
        if (!s)
            return rb_fail(err, NULL, "out of memory");
        for (char *t = strtok_r(s, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            if (h->nunits == RB_HEAD_MAX_UNITS || atoi(t) <= 0) {
                free(s);
                return rb_fail(err, "head_units is a comma-separated list of positive integers (at most 8), or none",
                               "train: bad head_units '%s'", units);
            }
            h->units[h->nunits++] = atoi(t);
        }
        free(s);
    }
    const char *act = job_str(c, "head_activation");
    h->activation = !strcmp(act, "relu6") ? RB_ACT_RELU6 : !strcmp(act, "linear") ? RB_ACT_LINEAR : RB_ACT_RELU;
    h->dense_dropout = (float)job_float(c, "head_dense_dropout");
    h->sigmoid = strcmp(job_str(c, "output"), "sigmoid") == 0;
    if (h->sigmoid && x->nclasses != 2)
        return rb_fail(err, "use output = softmax for more than two classes", "train: sigmoid output needs 2 classes, the shards have %d",
                       x->nclasses);
    x->sigmoid = h->sigmoid;
    return 0;
}

static int parse_class_weight(train_ctx *x, rb_error *err)
{
    const char *cw = job_str(&x->cfg, "class_weight");
    if (!strcmp(cw, "none") || !*cw)
        return 0;
    x->class_weight = calloc((size_t)x->nclasses, sizeof *x->class_weight);
    if (!x->class_weight)
        return rb_fail(err, NULL, "out of memory");
    if (!strcmp(cw, "balanced")) {
        /* sklearn compute_class_weight('balanced'): n / (k * n_c) */
        for (int c = 0; c < x->nclasses; c++)
            x->class_weight[c] = x->tr.per_class[c] ? (float)((double)x->tr.n / ((double)x->nclasses * (double)x->tr.per_class[c])) : 0.0f;
    } else {
        char *s = strdup(cw), *save = NULL;
        if (!s)
            return rb_fail(err, NULL, "out of memory");
        int k = 0;
        for (char *t = strtok_r(s, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            char *end;
            double v = strtod(t, &end);
            if (*end || v < 0 || k >= x->nclasses) {
                free(s);
                return rb_fail(err, "class_weight is none, balanced, or one non-negative number per class",
                               "train: bad class_weight '%s'", cw);
            }
            x->class_weight[k++] = (float)v;
        }
        free(s);
        if (k != x->nclasses)
            return rb_fail(err, "give one weight per class, in class order", "train: class_weight has %d values for %d classes",
                           k, x->nclasses);
    }
    char line[512];
    int l = snprintf(line, sizeof line, "class weights:");
    for (int c = 0; c < x->nclasses && l < 480; c++)
        l += snprintf(line + l, sizeof line - (size_t)l, " %s %.4f", x->class_names[c], x->class_weight[c]);
    rb_info("%s", line);
    return 0;
}

static void bn_reduce(double *buf, int64_t len, void *ctx)
{
    (void)ctx;
    rb_mpi_sum_f64(buf, (int)len);
}

/* Optimizer for the current stage (fresh state, as Keras' compile()). */
static int setup_stage_optim(train_ctx *x, float lr, rb_error *err)
{
    optim_free(&x->a->opt);
    optim_kind k;
    optim_kind_parse(job_str(&x->cfg, "optimizer"), &k);
    optim_config_default(&x->a->ocfg, k);
    x->a->ocfg.learning_rate = lr;
    x->a->ocfg.momentum = (float)job_float(&x->cfg, "momentum");
    x->a->ocfg.nesterov = job_bool(&x->cfg, "nesterov");
    x->lr = lr;
    if (optim_init(&x->a->opt, &x->a->ocfg, x->a->m->nparams, err) < 0)
        return -1;
    free(x->a->ranges);
    free(x->a->kernels);
    int n1 = rb_model_ranges(x->a->m, RB_RANGES_TRAINABLE, NULL, 0);
    int n2 = rb_model_ranges(x->a->m, RB_RANGES_KERNELS, NULL, 0);
    x->a->ranges = malloc(((size_t)n1 + 1) * sizeof *x->a->ranges);
    x->a->kernels = malloc(((size_t)n2 + 1) * sizeof *x->a->kernels);
    if (!x->a->ranges || !x->a->kernels)
        return rb_fail(err, NULL, "out of memory");
    x->a->nranges = rb_model_ranges(x->a->m, RB_RANGES_TRAINABLE, x->a->ranges, n1);
    x->a->nkernels = rb_model_ranges(x->a->m, RB_RANGES_KERNELS, x->a->kernels, n2);
    rb_model_trainable_span(x->a->m, &x->a->span_off, &x->a->span_len);
    return 0;
}

/* Compute threads of this rank: the `threads` key, else the world's default; at most 64
 * (what a workspace runs, rb_workspace_set_threads). The banner prints this number. */
static int train_threads(const train_ctx *x)
{
    int64_t threads = job_int(&x->cfg, "threads");
    if (threads <= 0)
        threads = x->w.threads;
    return threads > 64 ? 64 : threads < 1 ? 1 : (int)threads;
}

/* (Re)make the workspaces after the trainable flags changed. */
static int setup_workspaces(train_ctx *x, rb_error *err)
{
    rb_workspace_free(x->a->ws);
    rb_workspace_free(x->a->ws_eval);
    x->a->ws = x->a->ws_eval = NULL;
    int B = (int)job_int(&x->cfg, "batch_size");
    int local = (B + x->w.size - 1) / x->w.size;
    x->a->ws = rb_workspace_create(x->a->m, local, RB_WS_TRAIN, err);
    if (!x->a->ws)
        return -1;
    x->a->ws_eval = rb_workspace_create(x->a->m, local > 8 ? local : 8, 0, err);
    if (!x->a->ws_eval)
        return -1;
    int threads = train_threads(x);
    if (rb_workspace_set_threads(x->a->ws, threads, err) < 0 || rb_workspace_set_threads(x->a->ws_eval, threads, err) < 0)
        return -1;
    return 0;
}

static int setup_stage(train_ctx *x, int stage, rb_error *err)
{
    x->stage = stage;
    if (stage == 2) {
        int first = rb_model_unfreeze_top(x->a->m, job_float(&x->cfg, "fine_tune_fraction"));
        rb_info("fine-tuning: base layers from index %d (%s) on are trainable", first,
                first < x->a->m->nnodes ? x->a->m->nodes[first].name : "-");
    }
    int64_t total, trainable, frozen;
    rb_model_count(x->a->m, &total, &trainable, &frozen);
    rb_info("stage %d: %lld params, %lld trainable, %lld non-trainable", stage, (long long)total,
            (long long)trainable, (long long)frozen);
    float lr = (float)job_float(&x->cfg, stage == 1 ? "learning_rate" : "fine_tune_learning_rate");
    if (setup_stage_optim(x, lr, err) < 0)
        return -1;
    return setup_workspaces(x, err);
}

/* "a: why; b: why" of the entries i of rep->skipped with pick[i], at most `max` of them,
 * then "; ... and N more". */
static void skipped_list(const keras_import_report *rep, const char *pick, int max, char *buf, size_t cap)
{
    size_t o = 0;
    int shown = 0, total = 0;
    buf[0] = 0;
    for (int i = 0; i < rep->n_skipped; i++) {
        if (pick && !pick[i])
            continue;
        total++;
        if (shown < max && o < cap)
            o += (size_t)snprintf(buf + o, cap - o, "%s%s", shown++ ? "; " : "", rep->skipped[i]);
    }
    if (total > shown && o < cap)
        snprintf(buf + o, cap - o, "; ... and %d more", total - shown);
}

/* Pretrained Keras weights into the model, by layer name. What the file must provide: every
 * layer of the pretrained base (MobileNetV2), or, for a model without one (the CNN), every
 * layer but the output layer. Head layers the file lacks or holds in another shape (a new
 * head, another class count, a sigmoid head for a softmax model) stay at their initial
 * values and are named. A base layer that is missing or of another shape (another
 * architecture or width) is an error naming the layers, unless weights_partial = true; a file
 * that gives no tensor at all is always an error. */
static int load_pretrained(train_ctx *x, const char *path, rb_error *err)
{
    const rb_model *m = x->a->m;
    int nv, nl;
    const rb_param_view *views = rb_model_params(x->a->m, &nv);
    const rb_layer_view *layers = rb_model_layers(x->a->m, &nl);
    keras_import_report rep;
    memset(&rep, 0, sizeof rep);
    if (keras_import_load(path, views, nv, layers, nl, KERAS_IMPORT_SKIP_MISSING | KERAS_IMPORT_SKIP_MISMATCH, &rep,
                          err) < 0) {
        keras_import_report_free(&rep);
        return rb_error_prefix(err, "weights: ");
    }
    char *required = calloc((size_t)rep.n_skipped + 1, 1);
    char *head = calloc((size_t)rep.n_skipped + 1, 1);
    char *list = malloc(4096);
    if (!required || !head || !list) {
        free(required);
        free(head);
        free(list);
        keras_import_report_free(&rep);
        return rb_fail(err, NULL, "out of memory");
    }
    int n_required = 0;
    for (int i = 0; i < rep.n_skipped; i++) {
        int node = -1;
        for (int k = 0; k < m->nnodes && node < 0; k++)
            if (!strcmp(m->nodes[k].name, rep.skipped_layer[i]))
                node = k;
        int req = node < 0 || (m->base_layers > 0 ? m->nodes[node].in_base : node != m->output);
        required[i] = (char)req;
        head[i] = (char)!req;
        n_required += req;
    }
    skipped_list(&rep, NULL, 4, list, 4096);
    rb_info("weights: loaded %d of %d tensors from %s (%d skipped%s%s)", rep.n_tensors, rep.n_tensors_model, path,
            rep.n_tensors_skipped, rep.n_skipped ? ": " : "", list);
    if (rep.n_unused > 0) {
        size_t o = 0;
        list[0] = 0;
        for (int i = 0; i < rep.n_unused && i < 6 && o < 4096; i++)
            o += (size_t)snprintf(list + o, 4096 - o, "%s%s", i ? ", " : "", rep.unused[i]);
        if (rep.n_unused > 6 && o < 4096)
            snprintf(list + o, 4096 - o, ", ... and %d more", rep.n_unused - 6);
        rb_info("weights: %d layer(s) of the file are not in the model: %s", rep.n_unused, list);
    }
    int rc = 0;
    const char *part = m->base_layers > 0 ? "base" : "model (all layers but the output layer)";
    if (rep.n_tensors == 0) {
        skipped_list(&rep, NULL, 6, list, 4096);
        rc = rb_fail(err, "the file belongs to another architecture; radbatch inspect lists its layers",
                     "weights: %s: no tensor of the file fits the %s model (loaded 0 of %d tensors): %s", path,
                     job_str(&x->cfg, "backbone"), rep.n_tensors_model, list);
    } else if (n_required > 0 && !job_bool(&x->cfg, "weights_partial")) {
        skipped_list(&rep, required, 6, list, 4096);
        rc = rb_fail(err,
                     "the file was saved from another architecture or width (e.g. MobileNetV2 alpha 0.5, "
                     "ResNet50); weights_partial = true keeps what fits and leaves these layers random",
                     "weights: %s: %d layer(s) of the %s do not fit (loaded %d of %d tensors): %s", path, n_required,
                     part, rep.n_tensors, rep.n_tensors_model, list);
    } else {
        if (n_required > 0 && x->w.rank == 0) {
            skipped_list(&rep, required, 6, list, 4096);
            rb_warn("weights_partial: %d layer(s) of the %s stay at their initial values: %s", n_required, part,
                    list);
        }
        if (rep.n_skipped - n_required > 0) {
            skipped_list(&rep, head, 6, list, 4096);
            rb_info("weights: %d head layer(s) stay at their initial values: %s", rep.n_skipped - n_required, list);
        }
    }
    free(required);
    free(head);
    free(list);
    keras_import_report_free(&rep);
    return rc;
}

static int build_model(train_ctx *x, rb_error *err)
{
    rb_head_opts head;
    if (parse_head(x, &head, err) < 0)
        return -1;
    const char *bb = job_str(&x->cfg, "backbone");
    if (strcmp(bb, "mobilenetv2") == 0 && x->tr.channels != 3)
        return rb_fail(err, "convert with channels = 3", "train: mobilenetv2 needs 3-channel images, the shards have %d",
                       x->tr.channels);
    if (rb_model_build(&x->a->m, bb, x->tr.height, x->tr.width, x->tr.channels, &head, err) < 0)
        return -1;
    x->a->m->base_training = job_bool(&x->cfg, "base_training");
    uint64_t seed = (uint64_t)job_int(&x->cfg, "seed");
    rb_model_init(x->a->m, seed);
    x->a->m->seed = seed;
    if (strcmp(bb, "mobilenetv2") == 0) {
        if (job_bool(&x->cfg, "freeze_base"))
            rb_model_freeze_base(x->a->m);
        else
            rb_model_set_all_trainable(x->a->m, 1);
    } else
        rb_model_set_all_trainable(x->a->m, 1);
    int nv;
    const rb_param_view *views = rb_model_params(x->a->m, &nv);
    const char *init_model = job_str(&x->cfg, "init_model");
    const char *weights = job_str(&x->cfg, "weights");
    if (*init_model) {
        if (model_file_load_weights(init_model, views, nv, err) < 0)
            return rb_error_prefix(err, "init_model: ");
        rb_info("weights from %s", init_model);
    } else if (*weights) {
        if (load_pretrained(x, weights, err) < 0)
            return -1;
    } else if (strcmp(bb, "mobilenetv2") == 0)
        if (x->w.rank == 0) /* every rank knows it: said once */
            rb_warn("no pretrained weights (key 'weights'): the MobileNetV2 base starts from random values");
    if (job_bool(&x->cfg, "sync_bn"))
        rb_model_set_bn_reduce(x->a->m, bn_reduce, NULL);
    return 0;
}

/* Without sync_bn each rank's trainable BatchNorms update their moving statistics from
 * their own rows, so ranks would drift apart; averaging them after every step (a few
 * hundred floats) keeps one model on every rank, so a checkpoint written by rank 0 holds
 * the whole state and a resumed run continues exactly. */
static void average_bn_statistics(train_ctx *x)
{
    if (x->w.size < 2 || job_bool(&x->cfg, "sync_bn"))
        return;
    for (int i = 0; i < x->a->m->nnodes; i++) {
        const rb_node *nd = &x->a->m->nodes[i];
        if (nd->op != RB_OP_BATCHNORM || !nd->trainable || (nd->in_base && !x->a->m->base_training))
            continue; /* moving statistics unchanged by training: identical everywhere */
        for (int k = 0; k < nd->nweights; k++) {
            if (!nd->is_state[k])
                continue;
            float *v = x->a->m->state + nd->woff[k];
            rb_mpi_sum_f32(v, nd->wsize[k]);
            for (int64_t j = 0; j < nd->wsize[k]; j++)
                v[j] /= (float)x->w.size;
        }
    }
}

/* ---- one training step ------------------------------------------------------------ */
static int train_step(train_ctx *x, const train_batch *b, rb_error *err)
{
    rb_model_zero_grads(x->a->m);
    double loss_sum = 0, correct = 0;
    int k = x->sigmoid ? 1 : x->nclasses;
    if (b->n > 0) {
        rb_forward_args a = {.input = b->features ? (const void *)b->features : (const void *)b->images,
                             .type = b->features ? RB_INPUT_F32 : RB_INPUT_U8, .n = b->n, .training = 1,
                             .rng_key = (uint64_t)x->epoch, .sample_base = b->sample_base};
        if (rb_model_forward(x->a->m, x->a->ws, &a, err) < 0)
            return -1;
        const float *logits = rb_workspace_logits(x->a->ws);
        const float *out = rb_workspace_output(x->a->ws, x->a->m->output);
        loss_spec ls = {.n = b->n, .classes = k, .global_n = b->global_n, .class_weight = x->class_weight,
                        .label_smoothing = (float)job_float(&x->cfg, "label_smoothing")};
        int rc;
        if (x->sigmoid) {
            for (int i = 0; i < b->n; i++)
                x->targets[i] = b->labels[i] == x->positive ? 1.0f : 0.0f;
            rc = loss_bce_logits(&ls, logits, x->targets, &loss_sum, x->dlogits, err);
        } else
            rc = loss_sparse_ce_logits(&ls, logits, b->labels, &loss_sum, x->dlogits, err);
        if (rc < 0)
            return -1;
        for (int i = 0; i < b->n; i++) {
            int pred;
            if (x->sigmoid)
                pred = out[i] >= 0.5f ? x->positive : 1 - x->positive;
            else {
                pred = 0;
                for (int c = 1; c < k; c++)
                    if (out[(size_t)i * k + c] > out[(size_t)i * k + pred])
                        pred = c;
            }
            correct += pred == b->labels[i];
        }
        if (rb_model_backward(x->a->m, x->a->ws, x->dlogits, 1, err) < 0)
            return -1;
    } else if (job_bool(&x->cfg, "sync_bn")) {
        /* a rank without rows must still join the BatchNorm reductions: not supported */
        return rb_fail(err, "use a global batch of at least the number of ranks", "train: a batch with fewer rows than ranks and sync_bn");
    }
    /* the one allreduce of the step: mean gradient (losses are already divided by the
     * global batch) over the span holding every trainable weight */
    double t_ar = rb_now();
    rb_mpi_sum_f32(x->a->m->grads + x->a->span_off, x->a->span_len);
    x->t_allreduce += rb_now() - t_ar;
    double l2 = job_float(&x->cfg, "l2");
    double stats[4] = {loss_sum, correct, (double)b->n, (double)g_term};
    rb_mpi_sum_f64(stats, 4);
    if (l2 > 0) {
        optim_l2_grad(x->a->m->grads, x->a->m->params, x->a->kernels, x->a->nkernels, (float)l2);
        stats[0] += (double)b->global_n * optim_l2_penalty(x->a->m->params, x->a->kernels, x->a->nkernels, (float)l2);
    }
    if (!isfinite(stats[0]))
        return rb_fail(err, "lower the learning rate; the last good checkpoint is kept in run_dir/checkpoints",
                       "train: the loss became %f at epoch %lld step %lld", stats[0], (long long)x->epoch + 1,
                       (long long)x->step + 1);
    optim_step(&x->a->opt, x->a->m->params, x->a->m->grads, x->a->ranges, x->a->nranges, x->lr);
    average_bn_statistics(x);
    x->step++;
    x->loss_sum += stats[0];
    x->correct += stats[1];
    x->seen += stats[2];
    if (stats[3] > 0)
        x->stop_requested = 1; /* some rank got SIGTERM: all stop after the same step */
    return 0;
}

/* ---- validation ---------------------------------------------------------------------- */
static int validate(train_ctx *x, rb_error *err)
{
    for (int i = M_VLOSS; i < M_COUNT; i++)
        x->metrics[i] = NAN;
    if (!x->have_val)
        return 0;
    shard_dataset *d = &x->va;
    int P = x->w.size, r = x->w.rank;
    int64_t lo = d->n * r / P, hi = d->n * (r + 1) / P;
    int k = x->sigmoid ? 1 : x->nclasses;
    int bs = rb_workspace_batch(x->a->ws_eval);
    uint8_t *img = malloc((size_t)bs * d->record_bytes + 1);
    int64_t *idx = malloc((size_t)bs * sizeof *idx);
    int32_t *lab = malloc((size_t)bs * sizeof *lab);
    float *scores = malloc((size_t)(hi - lo + 1) * sizeof *scores); /* positive-class prob */
    int32_t *labels = malloc((size_t)(hi - lo + 1) * sizeof *labels);
    float *prob = malloc((size_t)bs * (size_t)x->nclasses * sizeof *prob);
    float *dummy = malloc((size_t)bs * (size_t)x->nclasses * sizeof *dummy);
    int32_t *pred = malloc((size_t)bs * sizeof *pred);
    int rc = 0;
    double loss_sum = 0;
    int64_t *cm = calloc((size_t)x->nclasses * (size_t)x->nclasses, sizeof *cm);
    if (!img || !idx || !lab || !scores || !labels || !prob || !dummy || !pred || !cm)
        rc = rb_fail(err, NULL, "out of memory in validation");
    for (int64_t s = lo; rc == 0 && s < hi; s += bs) {
        int n = (int)(hi - s < bs ? hi - s : bs);
        for (int i = 0; i < n; i++)
            idx[i] = s + i;
        rb_forward_args a = {.input = img, .type = RB_INPUT_U8, .n = n, .sample_base = s};
        if (x->cached) { /* base features computed once: run the head alone */
            memcpy(lab, d->labels + s, (size_t)n * sizeof *lab);
            a.input = x->feat_val + s * x->feat_dim;
            a.type = RB_INPUT_F32;
        } else if ((rc = shard_dataset_read(d, idx, n, img, lab, err)) < 0)
            break;
        if ((rc = rb_model_forward(x->a->m, x->a->ws_eval, &a, err)) < 0)
            break;
        const float *out = rb_workspace_output(x->a->ws_eval, x->a->m->output);
        const float *logits = rb_workspace_logits(x->a->ws_eval);
        double part = 0;
        loss_spec ls = {.n = n, .classes = k, .global_n = n}; /* only the sum is used */
        if (x->sigmoid) {
            for (int i = 0; i < n; i++)
                x->targets[i] = lab[i] == x->positive ? 1.0f : 0.0f;
            rc = loss_bce_logits(&ls, logits, x->targets, &part, dummy, err);
        } else
            rc = loss_sparse_ce_logits(&ls, logits, lab, &part, dummy, err);
        loss_sum += part;
        for (int i = 0; i < n; i++) {
            if (x->sigmoid) {
                float p1 = out[i];
                prob[(size_t)i * 2 + x->positive] = p1;
                prob[(size_t)i * 2 + 1 - x->positive] = 1 - p1;
            } else
                memcpy(prob + (size_t)i * k, out + (size_t)i * k, (size_t)k * sizeof *prob);
            scores[s - lo + i] = prob[(size_t)i * x->nclasses + x->positive];
            labels[s - lo + i] = lab[i];
        }
        metrics_argmax(pred, prob, n, x->nclasses);
        metrics_confusion_add(cm, x->nclasses, lab, pred, n);
    }
    if (!rb_mpi_agree_ok(rc == 0)) {
        free(img); free(idx); free(lab); free(scores); free(labels); free(prob); free(dummy); free(pred); free(cm);
        return rc == 0 ? rb_fail(err, NULL, "validation failed on another rank") : -1;
    }
    /* counts reduce; scores gather to rank 0 for the AUC */
    double tot[2] = {loss_sum, (double)(hi - lo)};
    rb_mpi_sum_f64(tot, 2);
    rb_mpi_sum_i64(cm, x->nclasses * x->nclasses);
    void *all_s = NULL, *all_l = NULL;
    size_t ls1, ls2;
    rc = rb_mpi_gather_bytes(scores, (size_t)(hi - lo) * sizeof *scores, &all_s, &ls1, err);
    if (rc == 0)
        rc = rb_mpi_gather_bytes(labels, (size_t)(hi - lo) * sizeof *labels, &all_l, &ls2, err);
    double v[M_COUNT];
    for (int i = 0; i < M_COUNT; i++)
        v[i] = NAN;
    if (rc == 0 && x->w.rank == 0) {
        int64_t n = (int64_t)(ls1 / sizeof(float));
        v[M_VLOSS] = tot[0] / (tot[1] > 0 ? tot[1] : 1);
        /* positive class vs the rest, at the argmax decision; NaN where undefined */
        metrics_screening sc;
        metrics_screening_from_confusion(&sc, cm, x->nclasses, x->positive);
        int64_t total = sc.tp + sc.fp + sc.tn + sc.fn, right = 0;
        for (int c = 0; c < x->nclasses; c++)
            right += cm[c * x->nclasses + c];
        v[M_VACC] = total ? (double)right / (double)total : NAN;
        v[M_VSENS] = sc.tp + sc.fn ? sc.sensitivity : NAN;
        v[M_VSPEC] = sc.tn + sc.fp ? sc.specificity : NAN;
        rb_error aerr;
        if (metrics_auc(&v[M_VAUC], (const int32_t *)all_l, (const float *)all_s, 1, n, x->nclasses, x->positive,
                        &aerr) < 0)
            v[M_VAUC] = NAN;
        free(x->val_scores);
        free(x->val_labels);
        x->val_scores = all_s;
        x->val_labels = all_l;
        x->nval = n;
        all_s = all_l = NULL;
    }
    free(all_s);
    free(all_l);
    rb_mpi_bcast_f64(v, M_COUNT); /* callbacks decide alike on every rank */
    for (int i = M_VLOSS; i < M_COUNT; i++)
        x->metrics[i] = v[i];
    free(img); free(idx); free(lab); free(scores); free(labels); free(prob); free(dummy); free(pred); free(cm);
    return rc;
}

/* ---- files ---------------------------------------------------------------------------- */
static void history_add(train_ctx *x, double seconds)
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

static int history_write(train_ctx *x, rb_error *err)
{
    rb_buf b = {0};
    rb_buf_printf(&b, "epoch,stage");
    for (int i = 0; i < M_COUNT; i++)
        rb_buf_printf(&b, ",%s", metric_names[i]);
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
            cJSON_AddNumberToObject(o, metric_names[i], v[i]);
    return o;
}

/* The model card (JSON): what a model file says about how it was made. */
static char *model_card(train_ctx *x, int final, double threshold)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "radbatch_version", RADBATCH_VERSION " (" RADBATCH_GIT ")");
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(c, "created", when);
    cJSON_AddStringToObject(c, "backbone", job_str(&x->cfg, "backbone"));
    cJSON *data = cJSON_AddObjectToObject(c, "data");
    cJSON_AddStringToObject(data, "shards", job_str(&x->cfg, "shards"));
    cJSON_AddStringToObject(data, "index_checksum", x->index_checksum);
    cJSON_AddStringToObject(data, "train_split", job_str(&x->cfg, "train_split"));
    cJSON_AddNumberToObject(data, "train_records", (double)x->tr.n);
    if (x->have_val) {
        cJSON_AddStringToObject(data, "val_split", job_str(&x->cfg, "val_split"));
        cJSON_AddNumberToObject(data, "val_records", (double)x->va.n);
    }
    cJSON_AddNumberToObject(data, "split_seed", (double)x->tr.index.seed);
    cJSON_AddNumberToObject(data, "val_fraction", x->tr.index.val_fraction);
    cJSON_AddStringToObject(data, "group_regex", x->tr.index.group_regex ? x->tr.index.group_regex : "");
    cJSON_AddItemToObject(c, "class_names", cJSON_CreateStringArray((const char *const *)x->class_names, x->nclasses));
    cJSON_AddStringToObject(c, "positive_class", x->class_names[x->positive]);
    cJSON *pre = cJSON_AddObjectToObject(c, "preprocessing");
    cJSON_AddNumberToObject(pre, "height", x->tr.height);
    cJSON_AddNumberToObject(pre, "width", x->tr.width);
    cJSON_AddNumberToObject(pre, "channels", x->tr.channels);
    cJSON_AddStringToObject(pre, "resize", x->tr.index.resize);
    cJSON_AddBoolToObject(pre, "dct_scaling", x->tr.index.dct_scaling);
    cJSON_AddStringToObject(pre, "rescale", x->a->m->nodes[0].preprocess == RESCALE_MINUS1_1 ? "x/127.5-1" :
                                            x->a->m->nodes[0].preprocess == RESCALE_0_1 ? "x/255" : "none");
    cJSON_AddNumberToObject(c, "seed", (double)job_int(&x->cfg, "seed"));
    cJSON_AddNumberToObject(c, "epochs_run", (double)x->epoch);
    cJSON_AddNumberToObject(c, "steps", (double)x->step);
    cJSON_AddNumberToObject(c, "ranks", x->w.size);
    cJSON_AddItemToObject(c, "final_metrics", metrics_json(x->metrics));
    if (!isnan(x->best)) { /* no best epoch when none ran (epochs = 0) */
        cJSON *best = cJSON_AddObjectToObject(c, "best");
        cJSON_AddStringToObject(best, "metric", job_str(&x->cfg, "best_metric"));
        cJSON_AddNumberToObject(best, "epoch", (double)x->best_epoch + 1);
        cJSON_AddItemToObject(best, "metrics", metrics_json(x->best_metrics));
    }
    if (final && isfinite(threshold)) {
        cJSON *th = cJSON_AddObjectToObject(c, "threshold");
        cJSON_AddNumberToObject(th, "value", threshold);
        cJSON_AddStringToObject(th, "method", "youden (max sensitivity + specificity - 1 on the val split)");
        cJSON_AddStringToObject(th, "applies_to", "probability of positive_class");
    }
    cJSON_AddStringToObject(c, "job", x->job_text ? x->job_text : "");
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    return s;
}

/* Resume state of the training loop, stored in a checkpoint's card under "resume". */
static char *checkpoint_card(train_ctx *x)
{
    char *card = model_card(x, 0, NAN);
    cJSON *c = cJSON_Parse(card);
    free(card);
    cJSON *r = cJSON_AddObjectToObject(c, "resume");
    cJSON_AddNumberToObject(r, "stage", x->stage);
    cJSON_AddNumberToObject(r, "lr", x->lr);
    cJSON_AddNumberToObject(r, "best", x->best);
    cJSON_AddNumberToObject(r, "best_epoch", (double)x->best_epoch);
    cJSON_AddNumberToObject(r, "wait_es", x->wait_es);
    cJSON_AddNumberToObject(r, "wait_lr", x->wait_lr);
    /* the epoch's running sums, as exact doubles (hex) so the epoch line repeats */
    char hx[3][40];
    snprintf(hx[0], 40, "%a", x->loss_sum);
    snprintf(hx[1], 40, "%a", x->correct);
    snprintf(hx[2], 40, "%a", x->seen);
    cJSON_AddStringToObject(r, "loss_sum", hx[0]);
    cJSON_AddStringToObject(r, "correct", hx[1]);
    cJSON_AddStringToObject(r, "seen", hx[2]);
    cJSON_AddItemToObject(r, "best_metrics", metrics_json(x->best_metrics));
    rb_buf_put(&x->history, "", 1);
    cJSON_AddStringToObject(r, "history", (const char *)x->history.data);
    x->history.len--;
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    return s;
}

static int save_model(train_ctx *x, const char *path, const char *card, int with_optim, rb_error *err)
{
    int nv;
    const rb_param_view *views = rb_model_params(x->a->m, &nv);
    char *arch = rb_model_desc(x->a->m);
    model_file_optimizer mo = {"", x->a->opt.step, NULL, optim_state_size(&x->a->ocfg, x->a->m->nparams), x->a->opt.state};
    snprintf(mo.kind, sizeof mo.kind, "%s", optim_kind_name(x->a->ocfg.kind));
    model_file_train_state ts = {x->epoch, x->step, x->next_batch * job_int(&x->cfg, "batch_size"),
                                 (uint64_t)job_int(&x->cfg, "seed"), x->best, ""};
    snprintf(ts.best_metric_name, sizeof ts.best_metric_name, "%s", job_str(&x->cfg, "best_metric"));
    model_file_contents mc = {arch, card, (const char *const *)x->class_names, x->nclasses, views, nv,
                              with_optim ? &mo : NULL, with_optim ? &ts : NULL};
    int rc = arch ? model_file_save(path, &mc, err) : rb_fail(err, NULL, "out of memory");
    free(arch);
    return rc;
}

/* Rank 0 writes a checkpoint at the current position; everyone agrees it worked. */
static int save_checkpoint(train_ctx *x, rb_error *err)
{
    int ok = 1;
    if (x->w.rank == 0) {
        char *path = checkpoint_path(x->run_dir, x->step);
        char *dir = fs_join(x->run_dir, "checkpoints");
        char *card = checkpoint_card(x);
        ok = path && dir && card && fs_mkdirs(dir, err) == 0 && save_model(x, path, card, 1, err) == 0 &&
             checkpoint_commit(x->run_dir, path, 2, err) == 0;
        free(path);
        free(dir);
        free(card);
    }
    if (!rb_mpi_agree_ok(ok))
        return ok ? JOB_FAILED_ELSEWHERE : -1; /* rank 0 reports the file (a full disk...) */
    return 0;
}

/* <run_dir>/train_log.jsonl: rank 0 appends one JSON line when this invocation starts
 * training ("start", with "resumed_from": the checkpoint, epoch and step it continues from,
 * or null) and one when it stops ("end": "finished" or "preempted", the step reached and
 * steps_this_run). Written whatever quiet says, for scripts and tests. */
static int train_log(train_ctx *x, const char *event, const char *status, const char *ckpt, rb_error *err)
{
    if (x->w.rank != 0)
        return 0;
    cJSON *o = cJSON_CreateObject();
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(o, "event", event);
    cJSON_AddStringToObject(o, "time", when);
    cJSON_AddNumberToObject(o, "ranks", x->w.size);
    cJSON_AddNumberToObject(o, "epoch", (double)x->epoch);
    cJSON_AddNumberToObject(o, "step", (double)x->step);
    if (strcmp(event, "start") == 0) {
        if (ckpt) {
            cJSON *r = cJSON_AddObjectToObject(o, "resumed_from");
            cJSON_AddStringToObject(r, "checkpoint", ckpt);
            cJSON_AddNumberToObject(r, "epoch", (double)x->epoch);
            cJSON_AddNumberToObject(r, "step", (double)x->step);
            cJSON_AddNumberToObject(r, "batch_in_epoch", (double)x->next_batch);
        } else
            cJSON_AddNullToObject(o, "resumed_from");
    } else {
        cJSON_AddStringToObject(o, "status", status);
        cJSON_AddNumberToObject(o, "steps_this_run", (double)(x->step - x->step_start));
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

static int load_checkpoint(train_ctx *x, const char *path, rb_error *err)
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
        rc = setup_stage(x, 2, err);
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
        x->next_batch = h.train_state.data_position / job_int(&x->cfg, "batch_size");
        x->best = h.train_state.best_metric;
        x->lr = (float)cJSON_GetObjectItemCaseSensitive(r, "lr")->valuedouble;
        x->best_epoch = (int64_t)cJSON_GetObjectItemCaseSensitive(r, "best_epoch")->valuedouble;
        x->wait_es = (int)cJSON_GetObjectItemCaseSensitive(r, "wait_es")->valuedouble;
        x->wait_lr = (int)cJSON_GetObjectItemCaseSensitive(r, "wait_lr")->valuedouble;
        x->loss_sum = hex_double(r, "loss_sum");
        x->correct = hex_double(r, "correct");
        x->seen = hex_double(r, "seen");
        const cJSON *bm = cJSON_GetObjectItemCaseSensitive(r, "best_metrics");
        for (int i = 0; i < M_COUNT; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(bm, metric_names[i]);
            x->best_metrics[i] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
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

/* Compare a checksum of the weights across ranks: every rank must hold the same model. */
static int check_consistency(train_ctx *x, rb_error *err)
{
    uint64_t mine = XXH3_64bits(x->a->m->params, (size_t)x->a->m->nparams * sizeof(float)) ^
                    XXH3_64bits(x->a->m->state, (size_t)x->a->m->nstate * sizeof(float));
    void *all = NULL;
    size_t len;
    if (rb_mpi_allgather_bytes(&mine, sizeof mine, &all, &len, err) < 0)
        return -1;
    int bad = -1;
    for (int r = 0; r < x->w.size; r++)
        if (((uint64_t *)all)[r] != ((uint64_t *)all)[0])
            bad = r;
    free(all);
    if (bad >= 0)
        return rb_fail(err, "a rank computed differently (hardware fault, or different library builds on different nodes)",
                       "train: the weights of rank %d differ from rank 0's (epoch %lld, step %lld)", bad, (long long)x->epoch,
                       (long long)x->step);
    return 0;
}

/* ---- callbacks ------------------------------------------------------------------------ */
static int end_of_epoch(train_ctx *x, int *stop_stage, rb_error *err)
{
    const char *bm = job_str(&x->cfg, "best_metric");
    int id = metric_id(bm);
    double v = x->metrics[id];
    if (isnan(v) && id >= M_VLOSS) {
        id = M_LOSS; /* no validation split: the training loss decides */
        v = x->metrics[M_LOSS];
    }
    int minimize = metric_is_loss(metric_names[id]);
    int improved = isnan(x->best) || (minimize ? v < x->best : v > x->best);
    if (improved) {
        x->best = v;
        x->best_epoch = x->epoch;
        memcpy(x->best_metrics, x->metrics, sizeof x->metrics);
        x->wait_es = x->wait_lr = 0;
        memcpy(x->best_params, x->a->m->params, (size_t)x->a->m->nparams * sizeof(float));
        memcpy(x->best_state, x->a->m->state, (size_t)x->a->m->nstate * sizeof(float));
        int ok = 1;
        if (x->w.rank == 0) {
            char *p = fs_join(x->run_dir, "best.h5");
            char *card = model_card(x, 0, NAN);
            ok = p && card && save_model(x, p, card, 0, err) == 0;
            free(p);
            free(card);
        }
        if (!rb_mpi_agree_ok(ok))
            return ok ? JOB_FAILED_ELSEWHERE : -1;
    } else {
        x->wait_es++;
        x->wait_lr++;
    }
    int64_t pat = job_int(&x->cfg, "reduce_lr_patience");
    if (pat > 0 && x->wait_lr >= pat) {
        float nlr = (float)(x->lr * job_float(&x->cfg, "reduce_lr_factor"));
        float minlr = (float)job_float(&x->cfg, "min_lr");
        if (nlr < minlr)
            nlr = minlr;
        if (nlr < x->lr)
            rb_info("reducing the learning rate to %.3g (%s did not improve for %lld epochs)", nlr, metric_names[id],
                    (long long)pat);
        x->lr = nlr;
        x->wait_lr = 0;
    }
    int64_t es = job_int(&x->cfg, "early_stopping_patience");
    *stop_stage = es > 0 && x->wait_es >= es;
    if (*stop_stage)
        rb_info("early stopping: %s did not improve for %lld epochs (best %.4f at epoch %lld)", metric_names[id],
                (long long)es, x->best, (long long)x->best_epoch + 1);
    return 0;
}

static void print_epoch(train_ctx *x, int64_t nb, double secs, double train_secs)
{
    char line[1024];
    int l = snprintf(line, sizeof line, "%lld/%lld - %.0fs - %.0f img/s", (long long)nb, (long long)nb, secs,
                     train_secs > 0 ? x->seen / train_secs : 0.0);
    for (int i = 0; i < M_COUNT; i++)
        if (!isnan(x->metrics[i]))
            l += snprintf(line + l, sizeof line - (size_t)l, " - %s: %.4f", metric_names[i], x->metrics[i]);
    l += snprintf(line + l, sizeof line - (size_t)l, " - lr: %.3g", x->lr);
    if (x->w.size > 1 && train_secs > 0)
        snprintf(line + l, sizeof line - (size_t)l, " - allreduce: %.1f%% of training time", 100.0 * x->t_allreduce / train_secs);
    rb_info("%s", line);
}

static void aug_from_config(train_ctx *x, augment_config *out)
{
    augment_config_default(out);
    out->rotation_deg = (float)job_float(&x->cfg, "rotation");
    out->width_shift = (float)job_float(&x->cfg, "width_shift");
    out->height_shift = (float)job_float(&x->cfg, "height_shift");
    out->shear_deg = (float)job_float(&x->cfg, "shear");
    out->zoom = (float)job_float(&x->cfg, "zoom");
    out->hflip = job_bool(&x->cfg, "horizontal_flip");
    out->vflip = job_bool(&x->cfg, "vertical_flip");
    out->rot90 = job_bool(&x->cfg, "rot90");
    out->crop_fraction = (float)job_float(&x->cfg, "crop");
    out->brightness = (float)job_float(&x->cfg, "brightness");
    out->contrast = (float)job_float(&x->cfg, "contrast");
    augment_fill_mode_parse(job_str(&x->cfg, "fill_mode"), &out->fill_mode);
    out->fill_value = (float)job_float(&x->cfg, "fill_value");
}

/* ---- frozen-base feature cache --------------------------------------------------------
 * When nothing before some node f trains or draws random numbers (a frozen base in
 * inference mode, no augmentation), the output of node f-1 is a fixed function of each
 * record. It is computed once (each rank a slice, then allgathered) and the stage trains
 * the head (nodes f..) alone on it: the same computation minus the base's forward pass in
 * every step. The head is a model of its own whose input layer carries node f-1's name;
 * weights and optimizer state move between it and the whole model by layer name before
 * every checkpoint or best-model save and at the end of the stage, so those files always
 * hold the whole model. */

/* Head -> whole model (weights, optimizer state). */
static void cache_push(train_ctx *x)
{
    if (!x->cached)
        return;
    rb_model_copy_weights(x->net.m, x->head.m);
    rb_model_copy_optim(&x->net.opt, x->net.m, &x->head.opt, x->head.m);
}

/* Base features of records [lo, hi) of d on this rank, all gathered into *out. */
static int cache_features(train_ctx *x, rb_model *base, rb_workspace *ws, shard_dataset *d, float **out,
                          rb_error *err)
{
    int P = x->w.size, r = x->w.rank;
    int64_t lo = d->n * r / P, hi = d->n * (r + 1) / P, dim = x->feat_dim;
    int bs = rb_workspace_batch(ws);
    float *mine = malloc((size_t)(hi - lo + 1) * (size_t)dim * sizeof(float));
    uint8_t *img = malloc((size_t)bs * d->record_bytes + 1);
    int64_t *idx = malloc((size_t)bs * sizeof *idx);
    int rc = mine && img && idx ? 0 : rb_fail(err, NULL, "out of memory for cached features");
    for (int64_t s = lo; rc == 0 && s < hi; s += bs) {
        int n = (int)(hi - s < bs ? hi - s : bs);
        for (int i = 0; i < n; i++)
            idx[i] = s + i;
        rb_forward_args a = {.input = img, .type = RB_INPUT_U8, .n = n, .sample_base = s};
        if ((rc = shard_dataset_read(d, idx, n, img, NULL, err)) == 0 && (rc = rb_model_forward(base, ws, &a, err)) == 0)
            memcpy(mine + (s - lo) * dim, rb_workspace_output(ws, base->output), (size_t)n * (size_t)dim * sizeof(float));
    }
    free(img);
    free(idx);
    if (!rb_mpi_agree_ok(rc == 0)) {
        free(mine);
        return rc == 0 ? rb_fail(err, NULL, "computing cached features failed on another rank") : -1;
    }
    size_t len;
    rc = rb_mpi_allgather_bytes(mine, (size_t)(hi - lo) * (size_t)dim * sizeof(float), (void **)out, &len, err);
    free(mine);
    return rc;
}

/* Start a feature-cached stage when the current one allows it. */
static int cache_maybe_begin(train_ctx *x, const augment_config *aug, rb_error *err)
{
    const char *mode = job_str(&x->cfg, "feature_cache");
    if (x->cached || !strcmp(mode, "false"))
        return 0;
    int f = rb_model_head_start(x->net.m);
    if (f < 0 || augment_config_active(aug)) {
        if (!strcmp(mode, "true") && x->w.rank == 0)
            rb_warn("feature_cache: not possible in this stage (%s)",
                    f < 0 ? "no frozen base before the trainable layers" : "augmentation is on");
        return 0;
    }
    double t0 = rb_now();
    const rb_node *cut = &x->net.m->nodes[f - 1];
    x->feat_dim = cut->size;
    rb_model *base = NULL;
    int rc = rb_model_cut(&base, x->net.m, 0, f, err);
    if (rc == 0)
        rc = rb_model_cut(&x->head.m, x->net.m, f, x->net.m->nnodes, err);
    rb_workspace *ws = NULL;
    if (rc == 0) {
        rb_model_copy_weights(base, x->net.m);
        rb_model_copy_weights(x->head.m, x->net.m);
        x->head.m->seed = x->net.m->seed;
        if (job_bool(&x->cfg, "sync_bn")) /* the cut-out head's BatchNorms sync like the whole model's */
            rb_model_set_bn_reduce(x->head.m, bn_reduce, NULL);
        ws = rb_workspace_create(base, 32, 0, err);
        rc = ws && rb_workspace_set_threads(ws, train_threads(x), err) == 0 ? 0 : -1;
    }
    free(x->feat_train);
    free(x->feat_val);
    x->feat_train = x->feat_val = NULL;
    if (rc == 0)
        rc = cache_features(x, base, ws, &x->tr, &x->feat_train, err);
    if (rc == 0 && x->have_val)
        rc = cache_features(x, base, ws, &x->va, &x->feat_val, err);
    rb_workspace_free(ws);
    if (base)
        rb_model_free(base);
    if (rc == 0) {
        /* the head trains with the whole model's optimizer settings and state */
        x->a = &x->head;
        rc = setup_stage_optim(x, x->lr, err);
        if (rc == 0)
            rc = setup_workspaces(x, err);
        if (rc == 0) {
            rb_model_copy_optim(&x->head.opt, x->head.m, &x->net.opt, x->net.m);
            x->cached = 1;
            rb_info("feature cache: %lld base features per image computed once for %lld records in %.1f s; "
                    "training %s onwards", (long long)x->feat_dim,
                    (long long)(x->tr.n + (x->have_val ? x->va.n : 0)), rb_now() - t0, x->net.m->nodes[f].name);
        }
    }
    if (rc < 0) {
        x->a = &x->net;
        net_free(&x->head);
    }
    return rc;
}

static void cache_end(train_ctx *x)
{
    if (!x->cached)
        return;
    cache_push(x);
    x->a = &x->net;
    x->cached = 0;
    net_free(&x->head);
    free(x->feat_train);
    free(x->feat_val);
    x->feat_train = x->feat_val = NULL;
}

/* Checkpoints and best-model files always hold the whole model. */
static int save_checkpoint_full(train_ctx *x, rb_error *err)
{
    train_net *keep = x->a;
    cache_push(x);
    x->a = &x->net;
    int rc = save_checkpoint(x, err);
    x->a = keep;
    return rc;
}


/* ---- the run ------------------------------------------------------------------------- */
/* Feature-cached stage: batches of cached base features instead of images. */
static train_batch *cached_next(train_ctx *x, train_batch *tb, float *feat, int64_t b, int64_t nb,
                                const int64_t *perm)
{
    if (b >= nb)
        return NULL;
    int64_t lo, hi;
    int gn;
    train_batch_slice(x->tr.n, (int)job_int(&x->cfg, "batch_size"), b, x->w.rank, x->w.size, &lo, &hi, &gn);
    tb->n = (int)(hi - lo);
    tb->global_n = gn;
    tb->index = b;
    tb->sample_base = lo;
    for (int i = 0; i < tb->n; i++) {
        memcpy(feat + (size_t)i * x->feat_dim, x->feat_train + perm[lo + i] * x->feat_dim,
               (size_t)x->feat_dim * sizeof(float));
        tb->labels[i] = x->tr.labels[perm[lo + i]];
    }
    tb->features = feat;
    return tb;
}

static int train_epoch(train_ctx *x, int64_t *perm, rb_error *err)
{
    int B = (int)job_int(&x->cfg, "batch_size");
    int64_t nb = train_batches(x->tr.n, B);
    if (x->next_batch == 0)
        x->loss_sum = x->correct = x->seen = 0;
    train_epoch_order(perm, x->tr.n, (uint64_t)job_int(&x->cfg, "seed"), x->epoch, job_bool(&x->cfg, "shuffle"));
    augment_config aug;
    aug_from_config(x, &aug);
    train_loader ld;
    memset(&ld, 0, sizeof ld);
    train_batch cb;
    memset(&cb, 0, sizeof cb);
    float *feat = NULL;
    int local = (B + x->w.size - 1) / x->w.size;
    if (x->cached) {
        feat = malloc((size_t)local * (size_t)x->feat_dim * sizeof(float) + 4);
        cb.labels = malloc((size_t)local * sizeof(int32_t) + 4);
        if (!feat || !cb.labels) {
            free(feat);
            free(cb.labels);
            return rb_fail(err, NULL, "out of memory");
        }
    } else if (train_loader_start(&ld, &x->tr, perm, x->next_batch, B, x->w.rank, x->w.size, &aug,
                                  (uint64_t)job_int(&x->cfg, "seed"), x->epoch, err) < 0)
        return -1;
    rb_progress prog;
    rb_progress_start(&prog, "  batches", nb);
    int rc = 0;
    int64_t every = job_int(&x->cfg, "checkpoint_every_steps"), max_steps = job_int(&x->cfg, "max_steps");
    for (int64_t next = x->next_batch;; next++) {
        train_batch *b = x->cached ? cached_next(x, &cb, feat, next, nb, perm) : train_loader_next(&ld, err);
        int ok = b != NULL || !ld.failed;
        if (!rb_mpi_agree_ok(ok)) {
            rc = ok ? rb_fail(err, NULL, "reading training data failed on another rank") : -1;
            break;
        }
        if (!b)
            break;
        rc = train_step(x, b, err);
        int64_t done_batch = b->index + 1;
        if (!x->cached)
            train_loader_release(&ld, b);
        if (!rb_mpi_agree_ok(rc == 0)) {
            if (rc == 0)
                rc = rb_fail(err, NULL, "a training step failed on another rank");
            break;
        }
        x->next_batch = done_batch;
        rb_progress_update(&prog, done_batch);
        /* test hook for the resume test: SIGKILL after this many steps in total */
        if (x->step == test_hook_int(HOOK_KILL_AFTER_STEPS))
            raise(SIGKILL);
        /* ... and a SIGTERM as Slurm sends it before the time limit (seen next step) */
        if (x->step == test_hook_int(HOOK_TERM_AFTER_STEPS) && x->w.rank == 0)
            raise(SIGTERM);
        int at_end = done_batch == nb;
        if (x->stop_requested) {
            rb_info("SIGTERM: writing a checkpoint at epoch %lld, batch %lld/%lld", (long long)x->epoch + 1,
                    (long long)done_batch, (long long)nb);
            rc = at_end ? 0 : save_checkpoint_full(x, err);
            break;
        }
        if (!at_end && every > 0 && x->step % every == 0 && (rc = save_checkpoint_full(x, err)) < 0)
            break;
        if (max_steps > 0 && x->step >= max_steps)
            break;
    }
    if (!x->cached)
        train_loader_stop(&ld);
    free(feat);
    free(cb.labels);
    return rc;
}

static int train_main(train_ctx *x, rb_error *err)
{
    job_config *c = &x->cfg;
    x->run_dir = job_str(c, "run_dir");
    if (!*job_str(c, "shards"))
        return rb_fail(err, "set shards = <folder written by radbatch convert>", "train: no shards folder");
    if (!*x->run_dir)
        return rb_fail(err, "set run_dir = <output folder>", "train: no run_dir");
    /* batch_size, epochs and the other numbers: ranges checked with the options (job_config.c) */
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
    rb_info("train: %lld records, val: %lld records, %d classes, %d rank(s) x %d thread(s)", (long long)x->tr.n,
            (long long)(x->have_val ? x->va.n : 0), x->nclasses, x->w.size, train_threads(x));
    augment_config aug;
    aug_from_config(x, &aug);
    if (augment_config_check(&aug, err) < 0)
        return rb_error_prefix(err, "train: ");
    if (parse_class_weight(x, err) < 0 || build_model(x, err) < 0)
        return -1;
    int B = (int)job_int(c, "batch_size");
    int local = (B + x->w.size - 1) / x->w.size;
    x->dlogits = malloc((size_t)local * (size_t)x->nclasses * sizeof(float) + 4);
    x->targets = malloc((size_t)(local > 64 ? local : 64) * sizeof(float) + 4);
    x->best_params = malloc((size_t)x->a->m->nparams * sizeof(float) + 4);
    x->best_state = malloc((size_t)x->a->m->nstate * sizeof(float) + 4);
    int64_t *perm = malloc((size_t)x->tr.n * sizeof *perm + 8);
    if (!x->dlogits || !x->targets || !x->best_params || !x->best_state || !perm) {
        free(perm);
        return rb_fail(err, "lower batch_size", "out of memory");
    }
    x->best = NAN;
    for (int i = 0; i < M_COUNT; i++)
        x->best_metrics[i] = x->metrics[i] = NAN;
    if (setup_stage(x, 1, err) < 0) {
        free(perm);
        return -1;
    }
    if (x->w.rank == 0 && !job_bool(c, "quiet"))
        rb_model_summary(x->a->m, stdout);

    int64_t e1 = job_int(c, "epochs"), e2 = job_int(c, "fine_tune_epochs");
    char *resumed_from = NULL;
    if (job_bool(c, "resume")) {
        char *ck = checkpoint_find_latest(x->run_dir);
        if (ck) {
            rb_info("resuming from %s", ck);
            ok = load_checkpoint(x, ck, err) == 0;
            resumed_from = ck;
            if (!rb_mpi_agree_ok(ok)) {
                free(perm);
                free(resumed_from);
                return job_failed_where(ok);
            }
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
                    memcpy(x->best_params, x->a->m->params, (size_t)x->a->m->nparams * sizeof(float));
                    memcpy(x->best_state, x->a->m->state, (size_t)x->a->m->nstate * sizeof(float));
                }
                memcpy(x->a->m->params, saved_p, (size_t)x->a->m->nparams * sizeof(float));
                memcpy(x->a->m->state, saved_s, (size_t)x->a->m->nstate * sizeof(float));
            }
            free(saved_p);
            free(saved_s);
            free(bp);
            if (!rb_mpi_agree_ok(ok)) {
                free(perm);
                return job_failed_where(ok);
            }
        } else
            rb_info("resume: no complete checkpoint in %s, starting fresh", x->run_dir);
    }
    if (x->step == 0 && x->w.rank == 0)
        checkpoint_clear(x->run_dir); /* a fresh start: older checkpoints would shadow the new ones */
    /* initial weights identical everywhere (same seed and files; checked, not assumed) */
    x->step_start = x->step;
    ok = check_consistency(x, err) == 0 && train_log(x, "start", NULL, resumed_from, err) == 0;
    free(resumed_from);
    if (!rb_mpi_agree_ok(ok)) {
        free(perm);
        return job_failed_where(ok);
    }

    int rc = 0, preempted = 0;
    int64_t max_steps = job_int(c, "max_steps");
    int skip_stage1 = 0;
    while (rc == 0 && x->epoch < e1 + e2) {
        if (x->epoch >= e1 && x->stage == 1) {
            cache_end(x);
            if ((rc = setup_stage(x, 2, err)) < 0)
                break;
            x->wait_es = x->wait_lr = 0;
        }
        if (skip_stage1 && x->stage == 1) {
            x->epoch = e1;
            continue;
        }
        augment_config aug;
        aug_from_config(x, &aug);
        if ((rc = cache_maybe_begin(x, &aug, err)) < 0)
            break;
        rb_info("Epoch %lld/%lld%s", (long long)x->epoch + 1, (long long)(e1 + e2), x->stage == 2 ? " (fine-tuning)" : "");
        double t0 = rb_now();
        if ((rc = train_epoch(x, perm, err)) < 0)
            break;
        if (x->stop_requested) {
            preempted = 1;
            break;
        }
        int64_t nb = train_batches(x->tr.n, (int)job_int(c, "batch_size"));
        int partial = x->next_batch < nb; /* max_steps hit mid-epoch */
        double t_train = rb_now() - t0; /* the training part of the epoch, for the allreduce share */
        x->metrics[M_LOSS] = x->seen > 0 ? x->loss_sum / x->seen : NAN;
        x->metrics[M_ACC] = x->seen > 0 ? x->correct / x->seen : NAN;
        if ((rc = validate(x, err)) < 0)
            break;
        double secs = rb_now() - t0;
        print_epoch(x, x->next_batch, secs, t_train);
        x->t_allreduce = 0;
        /* epoch-end decisions and files concern the whole model */
        train_net *active = x->a;
        cache_push(x);
        x->a = &x->net;
        int stop_stage = 0;
        if ((rc = end_of_epoch(x, &stop_stage, err)) < 0)
            break;
        history_add(x, secs);
        x->epoch++;
        x->next_batch = 0;
        x->loss_sum = x->correct = x->seen = 0;
        if ((rc = check_consistency(x, err)) < 0)
            break;
        int hok = x->w.rank != 0 || history_write(x, err) == 0;
        if (!rb_mpi_agree_ok(hok)) {
            rc = hok ? JOB_FAILED_ELSEWHERE : -1;
            break;
        }
        if ((rc = save_checkpoint(x, err)) < 0)
            break;
        x->a = active;
        if (partial || (max_steps > 0 && x->step >= max_steps))
            break;
        if (stop_stage && x->stage == 1 && e2 > 0)
            skip_stage1 = 1;
        else if (stop_stage)
            break;
    }
    free(perm);
    cache_end(x);
    if (rc < 0)
        return rc == JOB_FAILED_ELSEWHERE ? rc : JOB_FAILED;
    if (preempted) {
        ok = train_log(x, "end", "preempted", NULL, err) == 0;
        if (!rb_mpi_agree_ok(ok))
            return ok ? JOB_FAILED_ELSEWHERE : JOB_FAILED;
        return JOB_PREEMPTED; /* checkpoint written, run incomplete */
    }

    /* final model: the best epoch's weights (restore_best), threshold from val */
    if (job_bool(c, "restore_best") && !isnan(x->best)) {
        memcpy(x->a->m->params, x->best_params, (size_t)x->a->m->nparams * sizeof(float));
        memcpy(x->a->m->state, x->best_state, (size_t)x->a->m->nstate * sizeof(float));
        memcpy(x->metrics, x->best_metrics, sizeof x->metrics);
        rb_info("final model: weights of epoch %lld (best %s %.4f)", (long long)x->best_epoch + 1,
                job_str(c, "best_metric"), x->best);
    }
    double threshold = NAN;
    if (x->have_val) {
        if (validate(x, err) < 0)
            return -1;
        rb_error terr;
        if (x->w.rank == 0 && x->nval > 0 &&
            metrics_threshold_choose(&threshold, METRICS_THRESHOLD_YOUDEN, 0, x->val_labels, x->val_scores, 1,
                                     x->nval, x->nclasses, x->positive, &terr) < 0)
            threshold = NAN;
        /* Youden's J is 0 at every threshold (scores that do not separate the classes, e.g.
         * an untrained head after --epochs 0): the rule gives +inf, "nothing is positive".
         * Such a threshold is no decision rule: the card gets none, so readers keep 0.5. */
        if (x->w.rank == 0 && isinf(threshold)) {
            rb_info("no decision threshold: the val scores do not separate the classes (Youden's J = 0); "
                    "the model keeps the default rule (probability >= 0.5 for two classes)");
            threshold = NAN;
        }
    }
    ok = 1;
    if (x->w.rank == 0) {
        char *p = fs_join(x->run_dir, "model.h5");
        char *card = model_card(x, 1, threshold);
        ok = p && card && save_model(x, p, card, 0, err) == 0;
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
            cJSON_AddNumberToObject(f, "epochs", (double)x->epoch);
            cJSON_AddNumberToObject(f, "steps", (double)x->step);
            cJSON_AddNumberToObject(f, "ranks", x->w.size);
            ok = job_marker_write(x->run_dir, "train", f, err) == 0;
        }
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
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
    net_free(&x->head);
    net_free(&x->net);
    free(x->feat_train);
    free(x->feat_val);
    if (x->have_val)
        shard_dataset_close(&x->va);
    if (x->tr.dir)
        shard_dataset_close(&x->tr);
    free(x->class_weight);
    free(x->dlogits);
    free(x->targets);
    free(x->best_params);
    free(x->best_state);
    free(x->val_scores);
    free(x->val_labels);
    free(x->job_text);
    rb_buf_free(&x->history);
}

static int run_train(int argc, char **argv)
{
    train_ctx x;
    memset(&x, 0, sizeof x);
    x.a = &x.net;
    job_driver d = {&command_train, &x, &x.cfg, &x.w, on_term, train_run, train_free};
    return job_run(&d, argc, argv);
}

const command_spec command_train = {
    "train",
    "synchronous data-parallel training on HDF5 shards (MobileNetV2 transfer learning, the seed-001 CNN)",
    "usage: radbatch train [job.ini] [--key value ...]      (mpirun -n N / srun for N ranks)",
    train_opts,
    run_train,
};
