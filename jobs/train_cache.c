/* radbatch train's frozen-base feature cache (docs/train.md "Frozen-base feature cache"). */
#include "rb_log.h"
#include "train_ctx.h"

#include <stdlib.h>
#include <string.h>

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
void train_cache_push(train_ctx *x)
{
    if (!x->cache.on)
        return;
    rb_model_copy_weights(x->net.m, x->cache.head.m);
    rb_model_copy_optim(&x->net.opt, x->net.m, &x->cache.head.opt, x->cache.head.m);
}

/* Base features of records [lo, hi) of d on this rank, all gathered into *out. */
static int cache_features(train_ctx *x, rb_model *base, rb_workspace *ws, shard_dataset *d, float **out,
                          rb_error *err)
{
    int P = x->w.size, r = x->w.rank;
    int64_t lo = d->n * r / P, hi = d->n * (r + 1) / P, dim = x->cache.dim;
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
int train_cache_begin(train_ctx *x, const augment_config *aug, rb_error *err)
{
    const char *mode = x->keys.feature_cache;
    if (x->cache.on || !strcmp(mode, "false"))
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
    x->cache.dim = cut->size;
    rb_model *base = NULL;
    int rc = rb_model_cut(&base, x->net.m, 0, f, err);
    if (rc == 0)
        rc = rb_model_cut(&x->cache.head.m, x->net.m, f, x->net.m->nnodes, err);
    rb_workspace *ws = NULL;
    if (rc == 0) {
        rb_model_copy_weights(base, x->net.m);
        rb_model_copy_weights(x->cache.head.m, x->net.m);
        x->cache.head.m->seed = x->net.m->seed;
        if (x->keys.sync_bn) /* the cut-out head's BatchNorms sync like the whole model's */
            rb_model_set_bn_reduce(x->cache.head.m, train_bn_reduce, NULL);
        ws = rb_workspace_create(base, 32, 0, err);
        rc = ws && rb_workspace_set_threads(ws, train_threads(x), err) == 0 ? 0 : -1;
    }
    free(x->cache.train);
    free(x->cache.val);
    x->cache.train = x->cache.val = NULL;
    if (rc == 0)
        rc = cache_features(x, base, ws, &x->tr, &x->cache.train, err);
    if (rc == 0 && x->have_val)
        rc = cache_features(x, base, ws, &x->va, &x->cache.val, err);
    rb_workspace_free(ws);
    if (base)
        rb_model_free(base);
    if (rc == 0) {
        /* the head trains with the whole model's optimizer settings and state */
        x->a = &x->cache.head;
        rc = train_setup_stage_optim(x, x->lr, err);
        if (rc == 0)
            rc = train_setup_workspaces(x, err);
        if (rc == 0) {
            rb_model_copy_optim(&x->cache.head.opt, x->cache.head.m, &x->net.opt, x->net.m);
            x->cache.on = 1;
            rb_info("feature cache: %lld base features per image computed once for %lld records in %.1f s; "
                    "training %s onwards", (long long)x->cache.dim,
                    (long long)(x->tr.n + (x->have_val ? x->va.n : 0)), rb_now() - t0, x->net.m->nodes[f].name);
        }
    }
    if (rc < 0) {
        x->a = &x->net;
        train_net_free(&x->cache.head);
    }
    return rc;
}

void train_cache_end(train_ctx *x)
{
    if (!x->cache.on)
        return;
    train_cache_push(x);
    x->a = &x->net;
    x->cache.on = 0;
    train_net_free(&x->cache.head);
    free(x->cache.train);
    free(x->cache.val);
    x->cache.train = x->cache.val = NULL;
}

/* Checkpoints and best-model files always hold the whole model. */
int train_save_checkpoint_full(train_ctx *x, rb_error *err)
{
    train_net *keep = x->a;
    train_cache_push(x);
    x->a = &x->net;
    int rc = train_save_checkpoint(x, err);
    x->a = keep;
    return rc;
}
