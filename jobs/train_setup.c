/* radbatch train's setup (docs/train.md "Pretrained weights", "Callbacks and stages"): the
 * model the job describes (head keys, freezing, pretrained Keras weights or init_model),
 * class weights, the augmentation keys, and each stage's trainable layers, optimizer and
 * workspaces. */
#include "keras_import.h"
#include "model_file.h"
#include "rb_log.h"
#include "train_ctx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void train_net_free(train_net *n)
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

/* ---- setup ---------------------------------------------------------------------------- */

static int parse_head(train_ctx *x, rb_head_opts *h, rb_error *err)
{
    int cnn = strcmp(x->keys.backbone, "cnn") == 0;
    *h = cnn ? rb_head_seed001(x->nclasses) : rb_head_seed000(x->nclasses);
    const char *pool = x->keys.head_pooling;
    if (!strcmp(pool, "gap"))
        h->pooling = RB_POOL_GAP;
    else if (!strcmp(pool, "flatten"))
        h->pooling = RB_POOL_FLATTEN;
    if (x->keys.head_dropout >= 0)
        h->dropout = (float)x->keys.head_dropout;
    const char *units = x->keys.head_units;
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
    const char *act = x->keys.head_activation;
    h->activation = !strcmp(act, "relu6") ? RB_ACT_RELU6 : !strcmp(act, "linear") ? RB_ACT_LINEAR : RB_ACT_RELU;
    h->dense_dropout = (float)x->keys.head_dense_dropout;
    h->sigmoid = strcmp(x->keys.output, "sigmoid") == 0;
    if (h->sigmoid && x->nclasses != 2)
        return rb_fail(err, "use output = softmax for more than two classes", "train: sigmoid output needs 2 classes, the shards have %d",
                       x->nclasses);
    x->sigmoid = h->sigmoid;
    return 0;
}

int train_parse_class_weight(train_ctx *x, rb_error *err)
{
    const char *cw = x->keys.class_weight;
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

void train_bn_reduce(double *buf, int64_t len, void *ctx)
{
    (void)ctx;
    rb_mpi_sum_f64(buf, (int)len);
}

/* Optimizer for the current stage (fresh state, as Keras' compile()). */
int train_setup_stage_optim(train_ctx *x, float lr, rb_error *err)
{
    optim_free(&x->a->opt);
    optim_kind k;
    optim_kind_parse(x->keys.optimizer, &k);
    optim_config_default(&x->a->ocfg, k);
    x->a->ocfg.learning_rate = lr;
    x->a->ocfg.momentum = (float)x->keys.momentum;
    x->a->ocfg.nesterov = x->keys.nesterov;
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
int train_threads(const train_ctx *x)
{
    int64_t threads = x->keys.threads;
    if (threads <= 0)
        threads = x->w.threads;
    return threads > 64 ? 64 : threads < 1 ? 1 : (int)threads;
}

/* (Re)make the workspaces after the trainable flags changed. */
int train_setup_workspaces(train_ctx *x, rb_error *err)
{
    rb_workspace_free(x->a->ws);
    rb_workspace_free(x->a->ws_eval);
    x->a->ws = x->a->ws_eval = NULL;
    int local = x->rank_batch;
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

int train_setup_stage(train_ctx *x, int stage, rb_error *err)
{
    x->stage = stage;
    if (stage == 2) {
        int first = rb_model_unfreeze_top(x->a->m, x->keys.fine_tune_fraction);
        rb_info("fine-tuning: base layers from index %d (%s) on are trainable", first,
                first < x->a->m->nnodes ? x->a->m->nodes[first].name : "-");
    }
    int64_t total, trainable, frozen;
    rb_model_count(x->a->m, &total, &trainable, &frozen);
    rb_info("stage %d: %lld params, %lld trainable, %lld non-trainable", stage, (long long)total,
            (long long)trainable, (long long)frozen);
    float lr = (float)(stage == 1 ? x->keys.learning_rate : x->keys.fine_tune_learning_rate);
    if (train_setup_stage_optim(x, lr, err) < 0)
        return -1;
    return train_setup_workspaces(x, err);
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
                     x->keys.backbone, rep.n_tensors_model, list);
    } else if (n_required > 0 && !x->keys.weights_partial) {
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

int train_build_model(train_ctx *x, rb_error *err)
{
    rb_head_opts head;
    if (parse_head(x, &head, err) < 0)
        return -1;
    const char *bb = x->keys.backbone;
    if (strcmp(bb, "mobilenetv2") == 0 && x->tr.channels != 3)
        return rb_fail(err, "convert with channels = 3", "train: mobilenetv2 needs 3-channel images, the shards have %d",
                       x->tr.channels);
    if (rb_model_build(&x->a->m, bb, x->tr.height, x->tr.width, x->tr.channels, &head, err) < 0)
        return -1;
    x->a->m->base_training = x->keys.base_training;
    uint64_t seed = (uint64_t)x->keys.seed;
    rb_model_init(x->a->m, seed);
    x->a->m->seed = seed;
    if (strcmp(bb, "mobilenetv2") == 0) {
        if (x->keys.freeze_base)
            rb_model_freeze_base(x->a->m);
        else
            rb_model_set_all_trainable(x->a->m, 1);
    } else
        rb_model_set_all_trainable(x->a->m, 1);
    int nv;
    const rb_param_view *views = rb_model_params(x->a->m, &nv);
    const char *init_model = x->keys.init_model;
    const char *weights = x->keys.weights;
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
    if (x->keys.sync_bn)
        rb_model_set_bn_reduce(x->a->m, train_bn_reduce, NULL);
    return 0;
}


void train_aug_from_config(train_ctx *x, augment_config *out)
{
    augment_config_default(out);
    out->rotation_deg = (float)x->keys.rotation;
    out->width_shift = (float)x->keys.width_shift;
    out->height_shift = (float)x->keys.height_shift;
    out->shear_deg = (float)x->keys.shear;
    out->zoom = (float)x->keys.zoom;
    out->hflip = x->keys.horizontal_flip;
    out->vflip = x->keys.vertical_flip;
    out->rot90 = x->keys.rot90;
    out->crop_fraction = (float)x->keys.crop;
    out->brightness = (float)x->keys.brightness;
    out->contrast = (float)x->keys.contrast;
    augment_fill_mode_parse(x->keys.fill_mode, &out->fill_mode);
    out->fill_value = (float)x->keys.fill_value;
}
