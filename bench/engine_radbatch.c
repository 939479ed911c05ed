/* radbatch side of the engine benchmark: the same flags as bench/engine/peer_tf.py and
 * peer_torch.py, one JSON line out.
 *
 *   engine_radbatch --model mobilenetv2|cnn --size N --batch B
 *                   --mode infer|train-frozen|train-full --iters K --threads T
 *                   [--warmup W] [--bn batch|moving] [--optim adam|sgd]
 *
 *  infer         MobileNetV2 + seed-000 head (or the CNN), inference workspace (BN folded)
 *  train-frozen  base frozen (BN moving statistics, no backward through it), head trained
 *  train-full    everything trained; --bn batch (default): BN with batch statistics,
 *                --bn moving: the base called with training=False (Keras fine-tuning)
 * A training step is forward + sparse CE from the logits (loss.h) + backward + one Adam
 * (lr 1e-4) step over the trainable ranges (optim.h). Input: a fixed batch of floats in
 * [-1, 1) fed as the preprocessed input; labels 0/1. Threads: OpenBLAS threads = T.
 * GFLOP/s counts multiply-adds as 2 in Conv2D, DepthwiseConv2D and Dense: forward F per
 * image; training F + 2 x (flops of the layers with trainable weights).
 * The model runs T sample-parallel threads with single-threaded BLAS
 * (rb_workspace_set_threads); RADBATCH_MODEL_THREADS=1 instead leaves one model thread and
 * T OpenBLAS threads (for comparison). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loss.h"
#include "model.h"
#include "optim.h"

void openblas_set_num_threads(int);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: engine_radbatch --model mobilenetv2|cnn --size N --batch B "
                    "--mode infer|train-frozen|train-full --iters K --threads T "
                    "[--warmup W] [--bn batch|moving] [--optim adam|sgd]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *model = NULL, *mode = NULL, *bn = "batch", *opt = "adam";
    int size = 0, batch = 32, iters = 10, threads = 2, warmup = 3;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(k, "--model"))
            model = v;
        else if (!strcmp(k, "--mode"))
            mode = v;
        else if (!strcmp(k, "--bn"))
            bn = v;
        else if (!strcmp(k, "--optim"))
            opt = v;
        else if (!strcmp(k, "--size"))
            size = atoi(v);
        else if (!strcmp(k, "--batch"))
            batch = atoi(v);
        else if (!strcmp(k, "--iters"))
            iters = atoi(v);
        else if (!strcmp(k, "--threads"))
            threads = atoi(v);
        else if (!strcmp(k, "--warmup"))
            warmup = atoi(v);
        else
            usage();
        i++;
    }
    if (!model || !mode || size < 1 || batch < 1 || iters < 1 || threads < 1)
        usage();
    int infer = !strcmp(mode, "infer"), frozen = !strcmp(mode, "train-frozen"),
        full = !strcmp(mode, "train-full");
    if (!infer && !frozen && !full)
        usage();
    openblas_set_num_threads(threads);

    rb_error err = {0};
    rb_model *m = NULL;
    rb_head_opts head = !strcmp(model, "cnn") ? rb_head_seed001(2) : rb_head_seed000(2);
    if (rb_model_build(&m, model, size, size, 3, &head, &err)) {
        rb_error_print(&err, "engine_radbatch");
        return 1;
    }
    if (frozen && m->base_layers == 0) {
        fprintf(stderr, "engine_radbatch: %s has no base to freeze\n", model);
        return 2;
    }
    rb_model_init(m, 123);
    if (full) {
        rb_model_set_all_trainable(m, 1);
        m->base_training = strcmp(bn, "moving") != 0;
    } else if (frozen) {
        rb_model_freeze_base(m);
    }
    rb_workspace *ws = rb_workspace_create(m, batch, infer ? 0 : RB_WS_TRAIN, &err);
    if (!ws) {
        rb_error_print(&err, "engine_radbatch");
        return 1;
    }
    const char *mt = getenv("RADBATCH_MODEL_THREADS"); /* 0: OpenBLAS threads only */
    int model_threads = mt ? atoi(mt) : threads;
    if (model_threads > 1 && rb_workspace_set_threads(ws, model_threads, &err)) {
        rb_error_print(&err, "engine_radbatch");
        return 1;
    }
    int64_t per = (int64_t)size * size * 3;
    float *x = malloc((size_t)(per * batch) * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    uint64_t s = 123;
    for (int64_t i = 0; i < per * batch; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
    for (int i = 0; i < batch; i++)
        y[i] = i % 2;
    const rb_node *out = &m->nodes[m->output];
    float *dlogits = malloc((size_t)(batch * out->c) * sizeof(float));

    optim o = {0};
    optim_config oc;
    optim_config_default(&oc, !strcmp(opt, "sgd") ? OPTIM_SGD : OPTIM_ADAM);
    oc.learning_rate = 1e-4f;
    int nr = rb_model_ranges(m, RB_RANGES_TRAINABLE, NULL, 0);
    optim_range *ranges = malloc((size_t)(nr ? nr : 1) * sizeof *ranges);
    rb_model_ranges(m, RB_RANGES_TRAINABLE, ranges, nr);
    if (!infer && optim_init(&o, &oc, m->nparams, &err)) {
        rb_error_print(&err, "engine_radbatch");
        return 1;
    }

    double flops_fwd = rb_model_flops(m), flops_step = flops_fwd;
    if (!infer) {
        /* backward: weight and input gradients of the trained layers */
        for (int i = 0; i < m->nnodes; i++) {
            const rb_node *n = &m->nodes[i];
            if (!n->trainable || n->nweights == 0)
                continue;
            if (n->op == RB_OP_CONV2D)
                flops_step += 4.0 * n->h * n->w * n->c * n->kh * n->kw * n->in_c;
            else if (n->op == RB_OP_DEPTHWISE)
                flops_step += 4.0 * n->h * n->w * n->c * n->kh * n->kw;
            else if (n->op == RB_OP_DENSE)
                flops_step += 4.0 * n->in_c * n->units;
        }
    }

    double *times = malloc((size_t)iters * sizeof(double));
    double loss_last = 0;
    for (int it = 0; it < warmup + iters; it++) {
        double t0 = now();
        rb_forward_args a = {.input = x, .type = RB_INPUT_F32, .n = batch, .training = !infer,
                             .rng_key = (uint64_t)it, .sample_base = (int64_t)it * batch};
        if (rb_model_forward(m, ws, &a, &err)) {
            rb_error_print(&err, "engine_radbatch");
            return 1;
        }
        if (!infer) {
            loss_spec ls = {.n = batch, .classes = out->c, .global_n = batch};
            double sum = 0;
            if (loss_sparse_ce_logits(&ls, rb_workspace_logits(ws), y, &sum, dlogits, &err) ||
                (rb_model_zero_grads(m), 0) || rb_model_backward(m, ws, dlogits, 1, &err)) {
                rb_error_print(&err, "engine_radbatch");
                return 1;
            }
            optim_step(&o, m->params, m->grads, ranges, nr, -1.0f);
            loss_last = sum / batch;
        }
        if (it >= warmup)
            times[it - warmup] = now() - t0;
    }
    double total = 0;
    for (int i = 0; i < iters; i++)
        total += times[i];
    double *sorted = malloc((size_t)iters * sizeof(double));
    memcpy(sorted, times, (size_t)iters * sizeof(double));
    qsort(sorted, (size_t)iters, sizeof(double), cmp_d);
    int64_t tot, trn, frz;
    rb_model_count(m, &tot, &trn, &frz);
    printf("{\"framework\": \"radbatch\", \"model\": \"%s\", \"size\": %d, \"batch\": %d, "
           "\"mode\": \"%s\", \"threads\": %d, \"model_threads\": %d, \"bn\": \"%s\", \"iters\": %d, "
           "\"images_per_s\": %.3f, \"median_images_per_s\": %.3f, \"step_s_min\": %.5f, "
           "\"step_s_median\": %.5f, \"gflops\": %.2f, \"gflop_per_image\": %.4f, "
           "\"trainable_params\": %lld, \"workspace_mb\": %.1f, \"loss\": %.5f, \"iter_s\": [",
           model, size, batch, mode, threads, model_threads, bn, iters, batch * iters / total,
           batch / sorted[iters / 2], sorted[0], sorted[iters / 2],
           flops_step * batch * iters / total * 1e-9, flops_step * 1e-9, (long long)trn,
           (double)rb_workspace_bytes(ws) / (1024.0 * 1024.0), loss_last);
    for (int i = 0; i < iters; i++)
        printf("%s%.5f", i ? ", " : "", times[i]);
    printf("]}\n");
    if (getenv("RADBATCH_PROFILE"))
        rb_workspace_profile_print(ws, stderr);
    free(sorted);
    free(times);
    free(x);
    free(y);
    free(dlogits);
    free(ranges);
    if (!infer)
        optim_free(&o);
    rb_workspace_free(ws);
    rb_model_free(m);
    return 0;
}
