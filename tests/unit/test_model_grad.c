/* labels: invariance */
/* Whole-model backward against finite differences of the loss (loss.h, from logits and
 * from probabilities), batch 3: a tiny MobileNetV2-like graph (ZeroPadding2D, stride-2
 * Conv2D, DepthwiseConv2D, ReLU6, residual Add, BN, GAP, Dropout, Dense) in training-mode
 * BN, with a frozen stem, with base_training=false, and a tiny seed-001-like CNN (bias,
 * MaxPool, Flatten) with a sigmoid output. Also: the planned (memory-reusing) workspace
 * gives the same bits as one that keeps everything; frozen weights get no gradient; the
 * folded inference path equals the unfolded one; sync BN over two simulated ranks equals
 * one rank with the whole batch. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "loss.h"
#include "model.h"
#include "test_util.h"

#define B 3

static const char *TINY_MNV2 =
    "[model] name=tiny_mnv2 backbone=custom base_layers=12 base_training=true\n"
    "[InputLayer] name=input_1 shape=9,9,3 preprocess=none\n"
    "[ZeroPadding2D] name=Conv1_pad padding=0,1,0,1\n"
    "[Conv2D] name=Conv1 filters=4 kernel=3 strides=2 padding=valid use_bias=false\n"
    "[BatchNormalization] name=bn_Conv1 momentum=0.999 epsilon=0.001\n"
    "[ReLU] name=Conv1_relu max_value=6\n"
    "[DepthwiseConv2D] name=dw kernel=3 strides=1 padding=same use_bias=false\n"
    "[BatchNormalization] name=dw_BN momentum=0.999 epsilon=0.001\n"
    "[ReLU] name=dw_relu max_value=6\n"
    "[Conv2D] name=project filters=4 kernel=1 strides=1 padding=same use_bias=false\n"
    "[BatchNormalization] name=project_BN momentum=0.999 epsilon=0.001\n"
    "[Add] name=add inputs=Conv1_relu,project_BN\n"
    "[ReLU] name=out_relu max_value=6\n"
    "[GlobalAveragePooling2D] name=global_average_pooling2d\n"
    "[Dropout] name=dropout rate=0.3\n"
    "[Dense] name=dense units=5 activation=relu\n"
    "[Dense] name=dense_1 units=3 activation=softmax\n";

static const char *TINY_CNN =
    "[model] name=tiny_cnn backbone=custom base_layers=0 base_training=true\n"
    "[InputLayer] name=input_1 shape=10,10,2 preprocess=none\n"
    "[Conv2D] name=conv2d filters=3 kernel=3 padding=valid use_bias=true\n"
    "[BatchNormalization] name=batch_normalization\n"
    "[ReLU] name=re_lu\n"
    "[MaxPooling2D] name=max_pooling2d pool=2\n"
    "[Conv2D] name=conv2d_1 filters=4 kernel=2 strides=1 padding=same use_bias=true\n"
    "[BatchNormalization] name=batch_normalization_1\n"
    "[ReLU] name=re_lu_1\n"
    "[AveragePooling2D] name=average_pooling2d pool=2\n"
    "[Flatten] name=flatten\n"
    "[Dense] name=dense units=6 activation=relu\n"
    "[Dense] name=dense_1 units=1 activation=sigmoid\n";

/* the less common classes: Concatenate, Activation (in place after BN), pooling with
 * 'same' padding, BatchNormalization on a vector, a separate Softmax output layer */
static const char *TINY_MISC =
    "[model] name=tiny_misc\n"
    "[InputLayer] name=in shape=7,7,3 preprocess=none\n"
    "[Conv2D] name=a filters=4 kernel=3 padding=same activation=sigmoid inputs=in\n"
    "[DepthwiseConv2D] name=b kernel=3 strides=2 padding=same use_bias=true inputs=in\n"
    "[MaxPooling2D] name=pa pool=3 strides=2 padding=same inputs=a\n"
    "[Concatenate] name=cat inputs=pa,b\n"
    "[BatchNormalization] name=bn inputs=cat\n"
    "[Activation] name=act activation=relu6 inputs=bn\n"
    "[AveragePooling2D] name=ap pool=2 strides=1 padding=same inputs=act\n"
    "[Flatten] name=f inputs=ap\n"
    "[Dense] name=d units=6 inputs=f\n"
    "[BatchNormalization] name=bn2 inputs=d\n"
    "[Activation] name=s inputs=bn2 activation=sigmoid\n"
    "[Dense] name=logits units=3 inputs=s\n"
    "[Softmax] name=probs inputs=logits\n";

static rb_model *build(const char *desc, uint64_t seed)
{
    rb_error err = {0};
    rb_model *m = NULL;
    if (rb_model_from_desc(&m, desc, &err)) {
        rb_error_print(&err, "grad");
        return NULL;
    }
    rb_model_init(m, seed);
    /* non-trivial BN parameters and moving statistics */
    for (int i = 0; i < m->nnodes; i++) {
        if (m->nodes[i].op != RB_OP_BATCHNORM)
            continue;
        for (int j = 0; j < m->nodes[i].c; j++) {
            rb_model_weight(m, i, 0)[j] = 0.8f + 0.1f * (float)((i + j) % 5);
            rb_model_weight(m, i, 1)[j] = 0.05f * (float)((i * 3 + j) % 7) - 0.15f;
            rb_model_weight(m, i, 2)[j] = 0.02f * (float)(j % 3);
            rb_model_weight(m, i, 3)[j] = 0.5f + 0.25f * (float)(j % 4);
        }
    }
    /* non-zero biases */
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].op != RB_OP_BATCHNORM && m->nodes[i].nweights > 1)
            for (int64_t j = 0; j < m->nodes[i].wsize[1]; j++)
                rb_model_weight(m, i, 1)[j] = 0.03f * (float)(j % 5) - 0.05f;
    return m;
}

typedef struct objective {
    int sigmoid;  /* bce on one output */
    int use_probs; /* gradient w.r.t. probabilities (through the activation backward) */
} objective;

static const int32_t LABELS[B] = {2, 0, 1};
static const float TARGETS[B] = {1.0f, 0.0f, 1.0f};

/* forward (training), loss; with dout != NULL also the gradient w.r.t. the output */
static double loss_of(rb_model *m, rb_workspace *ws, const float *x, const objective *o,
                      float *dout)
{
    rb_error err = {0};
    rb_forward_args a = {.input = x, .type = RB_INPUT_F32, .n = B, .training = 1,
                         .no_stat_update = 1, .rng_key = 7, .sample_base = 100};
    if (rb_model_forward(m, ws, &a, &err)) {
        rb_error_print(&err, "grad");
        return NAN;
    }
    const rb_node *out = &m->nodes[m->output];
    loss_spec s = {.n = B, .classes = out->c, .global_n = B};
    double sum = 0;
    int rc;
    if (o->sigmoid)
        rc = o->use_probs ? loss_bce_probs(&s, rb_workspace_output(ws, m->output), TARGETS, &sum,
                                           dout, &err)
                          : loss_bce_logits(&s, rb_workspace_logits(ws), TARGETS, &sum, dout, &err);
    else
        rc = o->use_probs ? loss_sparse_ce_probs(&s, rb_workspace_output(ws, m->output), LABELS,
                                                 &sum, dout, &err)
                          : loss_sparse_ce_logits(&s, rb_workspace_logits(ws), LABELS, &sum, dout,
                                                  &err);
    if (rc)
        rb_error_print(&err, "loss");
    return sum / B;
}

static void make_input(float *x, int64_t n, uint64_t salt)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)sin(0.37 * (double)i + (double)salt) * 1.5f + 0.2f * (float)((i * 7) % 3);
}

/* analytic gradients of m (from a fresh zero) with a workspace made with flags */
static float *analytic_t(rb_model *m, int flags, const float *x, const objective *o, int threads)
{
    rb_error err = {0};
    rb_workspace *ws = rb_workspace_create(m, B, RB_WS_TRAIN | flags, &err);
    CHECK(ws != NULL, "workspace");
    if (!ws)
        return NULL;
    CHECK(rb_workspace_set_threads(ws, threads, &err) == 0, "threads");
    float dout[64];
    rb_model_zero_grads(m);
    loss_of(m, ws, x, o, dout);
    CHECK(rb_model_backward(m, ws, dout, !o->use_probs, &err) == 0, "backward");
    float *g = malloc((size_t)m->nparams * sizeof(float));
    memcpy(g, m->grads, (size_t)m->nparams * sizeof(float));
    rb_workspace_free(ws);
    return g;
}

static float *analytic(rb_model *m, int flags, const float *x, const objective *o)
{
    return analytic_t(m, flags, x, o, 1);
}

/* finite differences of every trainable weight; returns checked count */
static int fd_check(rb_model *m, const float *x, const objective *o, const char *what)
{
    rb_error err = {0};
    float *g = analytic(m, RB_WS_NO_FUSE, x, o);
    float *g_keep = analytic(m, RB_WS_KEEP_ALL, x, o);
    float *g_fused = analytic(m, 0, x, o);
    if (!g || !g_keep || !g_fused) {
        free(g);
        free(g_keep);
        free(g_fused);
        return 0;
    }
    /* memory reuse and in-place activations must not change a bit */
    CHECK(memcmp(g, g_keep, (size_t)m->nparams * sizeof(float)) == 0,
          "%s: planned workspace gradients differ from keep-all ones", what);
    /* folding frozen Conv+BN changes rounding only */
    double fmd = 0, fgmax = 0;
    for (int64_t j = 0; j < m->nparams; j++) {
        fmd = fmax(fmd, fabs((double)g[j] - g_fused[j]));
        fgmax = fmax(fgmax, fabs((double)g[j]));
    }
    CHECK(fmd <= 1e-5 * fgmax, "%s: folded-path gradients differ by %g", what, fmd);
    free(g_fused);
    /* sample-parallel threads (2 and 3: uneven row splits, one row each) */
    for (int th = 2; th <= 3; th++) {
        float *g_t = analytic_t(m, 0, x, o, th);
        double tmd = 0;
        for (int64_t j = 0; g_t && j < m->nparams; j++)
            tmd = fmax(tmd, fabs((double)g[j] - g_t[j]));
        CHECK(g_t && tmd <= 1e-5 * fgmax, "%s: %d threads: gradients differ by %g", what, th, tmd);
        free(g_t);
    }
    rb_workspace *ws = rb_workspace_create(m, B, RB_WS_TRAIN, &err);
    int checked = 0, kinks = 0, bad = 0;
    double gmax = 0;
    for (int64_t j = 0; j < m->nparams; j++)
        gmax = fabs(g[j]) > gmax ? fabs(g[j]) : gmax;
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *n = &m->nodes[i];
        for (int k = 0; k < n->nweights; k++) {
            if (n->is_state[k])
                continue;
            float *p = rb_model_weight(m, i, k);
            const float *gk = g + n->woff[k];
            for (int64_t j = 0; j < n->wsize[k]; j++) {
                if (!n->trainable) {
                    CHECK(gk[j] == 0.0f, "%s: frozen %s/%d got a gradient", what, n->name, k);
                    continue;
                }
                float save = p[j];
                double fd[2];
                for (int r = 0; r < 2; r++) {
                    float h = r == 0 ? 2e-3f : 1e-3f;
                    p[j] = save + h;
                    double lp = loss_of(m, ws, x, o, NULL);
                    p[j] = save - h;
                    double lm = loss_of(m, ws, x, o, NULL);
                    p[j] = save;
                    fd[r] = (lp - lm) / (2.0 * (double)h);
                }
                double tol = 5e-4 * gmax + 2e-5;
                if (fabs(fd[0] - fd[1]) > tol) { /* a ReLU kink within the step */
                    kinks++;
                    continue;
                }
                checked++;
                if (fabs(fd[1] - gk[j]) > tol + 2e-2 * fabs(fd[1])) {
                    if (bad++ < 8)
                        fprintf(stderr, "  %s: %s weight %d [%lld]: analytic %.6g fd %.6g\n", what,
                                n->name, k, (long long)j, (double)gk[j], fd[1]);
                }
            }
        }
    }
    printf("%s: %d weights checked, %d skipped at kinks, %d mismatches, max|g| %.3g\n", what,
           checked, kinks, bad, gmax);
    CHECK(bad == 0, "%s: %d gradient mismatches", what, bad);
    CHECK(kinks * 20 <= checked + 20, "%s: too many kinks (%d)", what, kinks);
    rb_workspace_free(ws);
    free(g);
    free(g_keep);
    return checked;
}

static void test_tiny_mnv2(void)
{
    float x[B * 9 * 9 * 3];
    make_input(x, B * 9 * 9 * 3, 1);
    objective o = {0};
    rb_model *m = build(TINY_MNV2, 11);
    if (!m)
        return;
    CHECK(fd_check(m, x, &o, "mnv2 all trainable, BN batch stats") > 100, "checked");
    o.use_probs = 1;
    fd_check(m, x, &o, "mnv2 all trainable, loss from probabilities");
    o.use_probs = 0;

    /* frozen stem: BN in inference mode, no gradients, backward stops above it */
    rb_model_set_trainable(m, rb_model_find(m, "Conv1"), 0);
    rb_model_set_trainable(m, rb_model_find(m, "bn_Conv1"), 0);
    fd_check(m, x, &o, "mnv2 frozen stem");

    /* Keras fine-tuning: base trainable but called with training=False (moving stats) */
    m->base_training = 0;
    rb_model_unfreeze_top(m, 0.5); /* base_layers 12: nodes >= 6 trainable */
    fd_check(m, x, &o, "mnv2 top half of base, base_training=false");

    /* frozen base entirely: only the head; forward of base folded in training workspace */
    rb_model_freeze_base(m);
    fd_check(m, x, &o, "mnv2 frozen base");

    /* the folded inference path equals the plain one */
    rb_error err = {0};
    rb_workspace *w1 = rb_workspace_create(m, B, 0, &err);
    rb_workspace *w2 = rb_workspace_create(m, B, RB_WS_NO_FUSE, &err);
    rb_forward_args a = {.input = x, .type = RB_INPUT_F32, .n = B};
    rb_model_forward(m, w1, &a, &err);
    rb_model_forward(m, w2, &a, &err);
    const float *p1 = rb_workspace_output(w1, m->output), *p2 = rb_workspace_output(w2, m->output);
    double md = 0;
    for (int i = 0; i < B * 3; i++)
        md = fmax(md, fabs((double)p1[i] - p2[i]));
    CHECK(md < 1e-5, "folded vs plain inference differ by %g", md);
    /* uneven batch: n = 2 on a workspace for 3 gives the first two rows */
    a.n = 2;
    rb_model_forward(m, w2, &a, &err);
    md = 0;
    for (int i = 0; i < 2 * 3; i++)
        md = fmax(md, fabs((double)p1[i] - p2[i]));
    CHECK(md < 1e-5, "n=2 forward differs by %g", md);
    rb_workspace_free(w1);
    rb_workspace_free(w2);
    /* workspace made before a trainable change is refused */
    rb_workspace *w3 = rb_workspace_create(m, B, RB_WS_TRAIN, &err);
    rb_model_set_trainable(m, 2, 1);
    a.n = B;
    CHECK(rb_model_forward(m, w3, &a, &err) != 0, "stale workspace accepted");
    rb_workspace_free(w3);
    rb_model_free(m);
}

static void test_tiny_misc(void)
{
    float x[B * 7 * 7 * 3];
    make_input(x, B * 7 * 7 * 3, 5);
    rb_model *m = build(TINY_MISC, 21);
    if (!m)
        return;
    objective o = {0};
    CHECK(fd_check(m, x, &o, "misc (Concatenate, Activation, same pooling, Softmax layer)") > 100,
          "checked");
    o.use_probs = 1;
    fd_check(m, x, &o, "misc, probabilities");
    /* frozen first branch: Concatenate with one input needing no gradient */
    rb_model_set_trainable(m, rb_model_find(m, "a"), 0);
    o.use_probs = 0;
    fd_check(m, x, &o, "misc, frozen branch");
    rb_model_free(m);
}

static void test_tiny_cnn(void)
{
    float x[B * 10 * 10 * 2];
    make_input(x, B * 10 * 10 * 2, 3);
    rb_model *m = build(TINY_CNN, 5);
    if (!m)
        return;
    objective o = {.sigmoid = 1};
    CHECK(fd_check(m, x, &o, "cnn sigmoid, logits") > 100, "checked");
    o.use_probs = 1;
    fd_check(m, x, &o, "cnn sigmoid, probabilities");
    rb_model_free(m);
}

/* ---- sync BN: two simulated ranks (threads) vs one ----------------------------------- */

typedef struct sync_ctx {
    pthread_barrier_t bar;
    double *slot[2];
    int64_t len;
} sync_ctx;

typedef struct rank_arg {
    sync_ctx *sc;
    int rank;
    rb_model *m;
    const float *x; /* this rank's rows */
    int n;
    double *lbuf;
} rank_arg;

static __thread int tl_rank;

static void reduce2(double *buf, int64_t len, void *ctx)
{
    sync_ctx *sc = ctx;
    sc->slot[tl_rank] = buf;
    sc->len = len;
    pthread_barrier_wait(&sc->bar);
    double *o = sc->slot[1 - tl_rank];
    double tmp[512];
    for (int64_t i = 0; i < len; i++)
        tmp[i] = buf[i] + o[i];
    pthread_barrier_wait(&sc->bar);
    memcpy(buf, tmp, (size_t)len * sizeof(double));
    pthread_barrier_wait(&sc->bar);
}

static void *rank_main(void *p)
{
    rank_arg *ra = p;
    tl_rank = ra->rank;
    rb_error err = {0};
    rb_model_set_bn_reduce(ra->m, reduce2, ra->sc);
    rb_workspace *ws = rb_workspace_create(ra->m, ra->n, RB_WS_TRAIN, &err);
    rb_forward_args a = {.input = ra->x, .type = RB_INPUT_F32, .n = ra->n, .training = 1,
                         .rng_key = 7, .sample_base = 100 + ra->rank * 2};
    rb_model_forward(ra->m, ws, &a, &err);
    loss_spec s = {.n = ra->n, .classes = 3, .global_n = 4};
    float dl[16];
    double sum;
    int32_t lab[4] = {2, 0, 1, 1};
    loss_sparse_ce_logits(&s, rb_workspace_logits(ws), lab + ra->rank * 2, &sum, dl, &err);
    rb_model_zero_grads(ra->m);
    rb_model_backward(ra->m, ws, dl, 1, &err);
    rb_workspace_free(ws);
    return NULL;
}

static void test_sync_bn(void)
{
    float x[4 * 9 * 9 * 3];
    make_input(x, 4 * 9 * 9 * 3, 9);
    rb_model *one = build(TINY_MNV2, 11), *r0 = build(TINY_MNV2, 11), *r1 = build(TINY_MNV2, 11);
    if (!one || !r0 || !r1)
        return;
    rb_error err = {0};
    rb_workspace *ws = rb_workspace_create(one, 4, RB_WS_TRAIN, &err);
    rb_forward_args a = {.input = x, .type = RB_INPUT_F32, .n = 4, .training = 1, .rng_key = 7,
                         .sample_base = 100};
    rb_model_forward(one, ws, &a, &err);
    loss_spec s = {.n = 4, .classes = 3, .global_n = 4};
    float dl[16];
    double sum;
    int32_t lab[4] = {2, 0, 1, 1};
    loss_sparse_ce_logits(&s, rb_workspace_logits(ws), lab, &sum, dl, &err);
    rb_model_zero_grads(one);
    rb_model_backward(one, ws, dl, 1, &err);
    rb_workspace_free(ws);

    sync_ctx sc;
    pthread_barrier_init(&sc.bar, NULL, 2);
    rank_arg ra[2] = {{&sc, 0, r0, x, 2, NULL}, {&sc, 1, r1, x + 2 * 9 * 9 * 3, 2, NULL}};
    pthread_t th[2];
    for (int r = 0; r < 2; r++)
        pthread_create(&th[r], NULL, rank_main, &ra[r]);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    pthread_barrier_destroy(&sc.bar);
    double md = 0, gmax = 0, smd = 0;
    for (int64_t j = 0; j < one->nparams; j++) {
        double g2 = (double)r0->grads[j] + r1->grads[j];
        md = fmax(md, fabs(g2 - one->grads[j]));
        gmax = fmax(gmax, fabs(one->grads[j]));
    }
    for (int64_t j = 0; j < one->nstate; j++) {
        smd = fmax(smd, fabs((double)r0->state[j] - one->state[j]));
        smd = fmax(smd, fabs((double)r1->state[j] - one->state[j]));
    }
    printf("sync BN, 2 ranks x 2 vs 1 x 4: max grad diff %.3g (max|g| %.3g), moving stats %.3g\n",
           md, gmax, smd);
    CHECK(md <= 1e-5 * gmax + 1e-7, "sync BN gradients differ by %g", md);
    CHECK(smd <= 1e-6, "sync BN moving statistics differ by %g", smd);
    rb_model_free(one);
    rb_model_free(r0);
    rb_model_free(r1);
}

int main(void)
{
    test_tiny_mnv2();
    test_tiny_cnn();
    test_tiny_misc();
    test_sync_bn();
    return TEST_DONE();
}
