/* Workspace planning, forward and backward of an rb_model.
 *
 * Planning (rb_workspace_create), once per batch size:
 *  1. bw[i]: backward runs through node i iff it has trainable weights or some input has
 *     bw. A frozen base therefore costs no backward work.
 *  2. Buffer groups (union-find): Flatten aliases its input; an elementwise activation
 *     after a single-consumer BN/Add/linear layer runs in place (its backward uses its
 *     output); Dropout aliases its input in inference-only workspaces; Conv/Depthwise ->
 *     BN (-> ReLU) whose BN always uses moving statistics and gets no backward is folded:
 *     the convolution runs with BN-scaled weights and writes the BN (ReLU) output directly.
 *  3. Lifetimes on a timeline: forward of node i at time i, backward of node i at time
 *     2N-1-i. An activation lives from its producer to its last reader (forward consumers,
 *     and in training the backward steps that read it: weight gradients read the layer
 *     input, activations read their output); an activation gradient lives from the
 *     backward of its last consumer (where it is zeroed) to its own node's backward.
 *  4. Greedy first-fit placement of all groups on one arena (largest first).
 * Forward and backward then only index precomputed pointers: no allocation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#include "model.h"
#include "model_fused.h"
#include "rb_rng.h"

/* thread CPU time: layer costs stay meaningful on a machine shared with other jobs */
static double prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { FUSE_NONE = 0, FUSE_SKIP, FUSE_CONV_BN };

struct rb_workspace {
    const rb_model *m;
    int batch, flags, nn;
    unsigned generation;
    float **act, **dact;
    uint8_t *bw, *fuse;
    int8_t *fuse_act;
    int *fuse_bn;
    float **fold_w, **fold_b;
    int K, mb;           /* nodes [0, K) run mb samples at a time (micro-batched prefix) */
    int64_t *moff;       /* offset of a node's output in the micro arena, or -1 */
    float *tmicro[64];   /* per-thread micro arenas */
    size_t micro_floats;
    int *bnact;          /* training BN whose single ReLU consumer runs inside it, or -1 */
    float **tfz;         /* per thread: 6*cmax floats for fused BN coefficients */
    int *src;            /* fused depthwise: node it reads (a skipped ZeroPadding2D's input) */
    conv2d_shape *fshape; /* fused depthwise: geometry on that input (padding absorbed) */
    int32_t **argmax;
    uint8_t **mask;
    float **bn_mean, **bn_invstd;
    double *bn_count;
    uint8_t *bn_batch;
    double *bnbuf;
    float *scratch;
    size_t scratch_floats;
    float *arena;
    size_t arena_floats;
    int *zstart; /* zeroing plan: before node i's backward zero zptr/zlen[zstart[i]..zstart[i+1]) */
    float **zptr;
    int64_t *zlen;
    float *logits; /* pre-activation of a softmax/sigmoid output */
    double *prof;  /* RADBATCH_PROFILE=1: seconds per node, [0,N) forward, [N,2N) backward */
    int64_t *zrow; /* floats per sample of each zeroed gradient group */
    double *bnpart; /* thread 0's partial BN sums */
    int cmax;
    optim_range *ranges; /* trainable runs of m->params */
    int nranges;
    /* threads (rb_workspace_set_threads) */
    int nthreads;
    pthread_t *th;
    struct worker *workers;
    float **tscratch, **tsave, **tgrads;
    double **tbn;
    pthread_mutex_t mu;
    pthread_cond_t cv, cv_done;
    atomic_int bcount, bsense;
    int tsense[64];
    unsigned gen;
    int done, quit;
    struct job *job;
    int last_n, last_training, have_forward;
    size_t bytes;
};

/* ---- small helpers ------------------------------------------------------------------- */

static int has_trainable(const rb_node *n)
{
    return n->nweights > 0 && n->trainable;
}

static int is_weighted_op(rb_op op)
{
    return op == RB_OP_CONV2D || op == RB_OP_DEPTHWISE || op == RB_OP_DENSE;
}

/* backward of node n reads n's own output */
static int needs_out_bw(const rb_node *n)
{
    switch (n->op) {
    case RB_OP_RELU:
    case RB_OP_SOFTMAX:
        return 1;
    case RB_OP_ACTIVATION:
        return n->act != RB_ACT_LINEAR;
    case RB_OP_CONV2D:
    case RB_OP_DEPTHWISE:
    case RB_OP_DENSE:
        return n->act != RB_ACT_LINEAR;
    default:
        return 0;
    }
}

/* backward of n reads its input 0 */
static int needs_in_bw(const rb_node *n)
{
    if (is_weighted_op(n->op) || n->op == RB_OP_BATCHNORM)
        return n->trainable;
    return 0;
}

static int uf_find(int *p, int x)
{
    while (p[x] != x) {
        p[x] = p[p[x]];
        x = p[x];
    }
    return x;
}

static void uf_union(int *p, int a, int b)
{
    a = uf_find(p, a);
    b = uf_find(p, b);
    if (a != b)
        p[b] = a;
}

static void axpy1(float *restrict y, const float *restrict x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* x (rows, c) += b, then activation, in place; b may be NULL */
static void bias_act(float *restrict x, const float *restrict b, int64_t rows, int c, rb_act act)
{
    if (act == RB_ACT_SOFTMAX || act == RB_ACT_SIGMOID) {
        if (b)
            for (int64_t r = 0; r < rows; r++)
                axpy1(x + r * c, b, c);
        if (act == RB_ACT_SOFTMAX)
            softmax_forward(x, x, rows, c);
        else
            sigmoid_forward(x, x, rows * c);
        return;
    }
    if (!b) {
        if (act == RB_ACT_RELU)
            relu_forward(x, x, rows * c);
        else if (act == RB_ACT_RELU6)
            relu6_forward(x, x, rows * c);
        return;
    }
    for (int64_t r = 0; r < rows; r++) {
        float *restrict xr = x + r * c;
        if (act == RB_ACT_RELU6) {
            for (int j = 0; j < c; j++) {
                float v = xr[j] + b[j];
                v = v > 0.0f ? v : 0.0f;
                xr[j] = v < 6.0f ? v : 6.0f;
            }
        } else if (act == RB_ACT_RELU) {
            for (int j = 0; j < c; j++) {
                float v = xr[j] + b[j];
                xr[j] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int j = 0; j < c; j++)
                xr[j] += b[j];
        }
    }
}

/* d (rows, c) := d * act'(at output y), in place (fused activations of Conv/Dense) */
static void act_backward_inplace(float *restrict d, const float *restrict y, int64_t rows, int c,
                                 rb_act act)
{
    int64_t n = rows * c;
    switch (act) {
    case RB_ACT_RELU:
        for (int64_t i = 0; i < n; i++)
            d[i] = y[i] > 0.0f ? d[i] : 0.0f;
        break;
    case RB_ACT_RELU6:
        for (int64_t i = 0; i < n; i++)
            d[i] = (y[i] > 0.0f && y[i] < 6.0f) ? d[i] : 0.0f;
        break;
    case RB_ACT_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            d[i] = d[i] * y[i] * (1.0f - y[i]);
        break;
    case RB_ACT_SOFTMAX:
        for (int64_t r = 0; r < rows; r++) {
            float *dr = d + r * c;
            const float *yr = y + r * c;
            double s = 0;
            for (int j = 0; j < c; j++)
                s += (double)dr[j] * yr[j];
            for (int j = 0; j < c; j++)
                dr[j] = yr[j] * (dr[j] - (float)s);
        }
        break;
    default:
        break;
    }
}

/* ---- planning ------------------------------------------------------------------------ */

typedef struct plan_buf {
    int64_t size; /* floats */
    int start, end;
    int64_t off;
} plan_buf;

static int cmp_size_desc(const void *a, const void *b)
{
    const plan_buf *x = *(const plan_buf *const *)a, *y = *(const plan_buf *const *)b;
    if (x->size != y->size)
        return x->size > y->size ? -1 : 1;
    return x->start - y->start;
}

static int cmp_off(const void *a, const void *b)
{
    const plan_buf *x = *(const plan_buf *const *)a, *y = *(const plan_buf *const *)b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* first-fit placement; returns arena size in floats */
static int64_t place_buffers(plan_buf *bufs, int nb)
{
    plan_buf **order = malloc((size_t)(nb ? nb : 1) * sizeof *order);
    plan_buf **live = malloc((size_t)(nb ? nb : 1) * sizeof *live);
    if (!order || !live) {
        free(order);
        free(live);
        return -1;
    }
    for (int i = 0; i < nb; i++)
        order[i] = &bufs[i];
    qsort(order, (size_t)nb, sizeof *order, cmp_size_desc);
    int64_t total = 0;
    for (int k = 0; k < nb; k++) {
        plan_buf *b = order[k];
        int nl = 0;
        for (int j = 0; j < k; j++) {
            plan_buf *o = order[j];
            if (o->start <= b->end && b->start <= o->end)
                live[nl++] = o;
        }
        qsort(live, (size_t)nl, sizeof *live, cmp_off);
        int64_t off = 0;
        for (int j = 0; j < nl; j++) {
            if (live[j]->off >= off + b->size)
                break;
            if (live[j]->off + live[j]->size > off)
                off = live[j]->off + live[j]->size;
        }
        b->off = off;
        if (off + b->size > total)
            total = off + b->size;
    }
    free(order);
    free(live);
    return total;
}

static int64_t align16(int64_t x)
{
    return (x + 15) / 16 * 16;
}

static void pool_stop(rb_workspace *ws);

void rb_workspace_free(rb_workspace *ws)
{
    if (!ws)
        return;
    pool_stop(ws);
    for (int i = 0; i < ws->nn; i++) {
        if (ws->fold_w)
            free(ws->fold_w[i]);
        if (ws->fold_b)
            free(ws->fold_b[i]);
        if (ws->argmax)
            free(ws->argmax[i]);
        if (ws->mask)
            free(ws->mask[i]);
        if (ws->bn_mean)
            free(ws->bn_mean[i]);
        if (ws->bn_invstd)
            free(ws->bn_invstd[i]);
    }
    free(ws->act);
    free(ws->dact);
    free(ws->bw);
    free(ws->fuse);
    free(ws->fuse_act);
    free(ws->fuse_bn);
    free(ws->fold_w);
    free(ws->fold_b);
    free(ws->src);
    free(ws->fshape);
    free(ws->bnact);
    free(ws->moff);
    for (int t = 0; t < 64; t++)
        free(ws->tmicro[t]);
    if (ws->tfz)
        for (int t = 0; t < 64; t++)
            free(ws->tfz[t]);
    free(ws->tfz);
    free(ws->argmax);
    free(ws->mask);
    free(ws->bn_mean);
    free(ws->bn_invstd);
    free(ws->bn_count);
    free(ws->bn_batch);
    free(ws->bnbuf);
    free(ws->scratch);
    free(ws->arena);
    free(ws->zstart);
    free(ws->zptr);
    free(ws->zlen);
    free(ws->logits);
    free(ws->prof);
    free(ws->zrow);
    free(ws->bnpart);
    free(ws->ranges);
    free(ws);
}

size_t rb_workspace_bytes(const rb_workspace *ws)
{
    return ws->bytes;
}

int rb_workspace_batch(const rb_workspace *ws)
{
    return ws->batch;
}

const float *rb_workspace_logits(const rb_workspace *ws)
{
    return ws->have_forward ? ws->logits : NULL;
}

const float *rb_workspace_output(const rb_workspace *ws, int node)
{
    if (node < 0 || node >= ws->nn || !ws->have_forward)
        return NULL;
    const rb_model *m = ws->m;
    if (ws->flags & RB_WS_KEEP_ALL || node == m->output)
        return ws->act[node];
    return NULL;
}

#define OOM(p)                                                                              \
    do {                                                                                    \
        if (!(p))                                                                           \
            goto oom;                                                                       \
    } while (0)

rb_workspace *rb_workspace_create(const rb_model *m, int batch, int flags, rb_error *err)
{
    if (batch < 1) {
        rb_fail(err, NULL, "workspace batch size %d", batch);
        return NULL;
    }
    const int N = m->nnodes;
    const int TRAIN = (flags & RB_WS_TRAIN) != 0, KEEP = (flags & RB_WS_KEEP_ALL) != 0;
    const int INF = 2 * N + 1;
    rb_workspace *ws = calloc(1, sizeof *ws);
    int *ncons = NULL, *maxcons = NULL, *uf = NULL, *gid = NULL, *extra_end = NULL;
    int *extra_cons = NULL;
    plan_buf *bufs = NULL;
    if (!ws)
        goto oom;
    ws->m = m;
    ws->batch = batch;
    ws->flags = flags;
    ws->nn = N;
    ws->generation = m->generation;
    OOM(ws->act = calloc((size_t)N, sizeof *ws->act));
    OOM(ws->dact = calloc((size_t)N, sizeof *ws->dact));
    OOM(ws->bw = calloc((size_t)N, 1));
    OOM(ws->fuse = calloc((size_t)N, 1));
    OOM(ws->fuse_act = calloc((size_t)N, 1));
    OOM(ws->fuse_bn = calloc((size_t)N, sizeof(int)));
    OOM(ws->fold_w = calloc((size_t)N, sizeof(float *)));
    OOM(ws->fold_b = calloc((size_t)N, sizeof(float *)));
    OOM(ws->argmax = calloc((size_t)N, sizeof(int32_t *)));
    OOM(ws->mask = calloc((size_t)N, sizeof(uint8_t *)));
    OOM(ws->bn_mean = calloc((size_t)N, sizeof(float *)));
    OOM(ws->bn_invstd = calloc((size_t)N, sizeof(float *)));
    OOM(ws->bn_count = calloc((size_t)N, sizeof(double)));
    OOM(ws->bn_batch = calloc((size_t)N, 1));
    OOM(ncons = calloc((size_t)N, sizeof(int)));
    OOM(extra_end = malloc((size_t)N * sizeof(int)));
    OOM(extra_cons = malloc((size_t)N * sizeof(int)));
    OOM(ws->src = malloc((size_t)N * sizeof(int)));
    OOM(ws->fshape = calloc((size_t)N, sizeof(conv2d_shape)));
    OOM(ws->bnact = malloc((size_t)N * sizeof(int)));
    OOM(ws->tfz = calloc(64, sizeof(float *)));
    for (int i = 0; i < N; i++) {
        ws->bnact[i] = -1;
        extra_end[i] = -1;
        extra_cons[i] = -1;
        ws->src[i] = m->nodes[i].ninputs ? m->nodes[i].inputs[0] : -1;
        ws->fshape[i] = m->nodes[i].cs;
    }
    OOM(maxcons = calloc((size_t)N, sizeof(int)));
    OOM(uf = malloc((size_t)2 * N * sizeof(int)));
    OOM(gid = malloc((size_t)2 * N * sizeof(int)));
    for (int i = 0; i < N; i++)
        maxcons[i] = -1;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < m->nodes[i].ninputs; k++) {
            int p = m->nodes[i].inputs[k];
            ncons[p]++;
            maxcons[p] = i;
        }
    /* 1. where backward runs */
    for (int i = 0; TRAIN && i < N; i++) {
        const rb_node *n = &m->nodes[i];
        int b = has_trainable(n);
        for (int k = 0; k < n->ninputs; k++)
            b |= ws->bw[n->inputs[k]];
        ws->bw[i] = (uint8_t)b;
    }
    /* 2. aliasing and folding */
    for (int i = 0; i < 2 * N; i++)
        uf[i] = i;
    for (int i = 1; i < N; i++) {
        const rb_node *n = &m->nodes[i];
        int p = n->inputs[0];
        const rb_node *pn = &m->nodes[p];
        if (n->op == RB_OP_FLATTEN || (n->op == RB_OP_DROPOUT && !TRAIN)) {
            uf_union(uf, p, i);
            continue;
        }
        int elementwise = n->op == RB_OP_RELU ||
                          (n->op == RB_OP_ACTIVATION && n->act != RB_ACT_SOFTMAX);
        int owner = pn->op == RB_OP_BATCHNORM || pn->op == RB_OP_ADD ||
                    (is_weighted_op(pn->op) && pn->act == RB_ACT_LINEAR);
        if (!KEEP && elementwise && owner && ncons[p] == 1)
            uf_union(uf, p, i);
    }
    for (int i = 0; i < N && !KEEP && !(flags & RB_WS_NO_FUSE); i++) {
        const rb_node *n = &m->nodes[i];
        if ((n->op != RB_OP_CONV2D && n->op != RB_OP_DEPTHWISE) || n->act != RB_ACT_LINEAR ||
            ncons[i] != 1)
            continue;
        int b = maxcons[i];
        const rb_node *bn = &m->nodes[b];
        if (bn->op != RB_OP_BATCHNORM || bn->inputs[0] != i || ws->bw[b])
            continue;
        ws->fuse[i] = FUSE_CONV_BN;
        ws->fuse_bn[i] = b;
        ws->fuse[b] = FUSE_SKIP;
        ws->fuse_act[i] = RB_ACT_LINEAR;
        uf_union(uf, b, i);
        if (ncons[b] == 1) {
            int r = maxcons[b];
            const rb_node *rn = &m->nodes[r];
            if ((rn->op == RB_OP_RELU ||
                 (rn->op == RB_OP_ACTIVATION &&
                  (rn->act == RB_ACT_RELU || rn->act == RB_ACT_RELU6))) &&
                uf_find(uf, r) == uf_find(uf, b)) {
                ws->fuse_act[i] = (int8_t)rn->act;
                ws->fuse[r] = FUSE_SKIP;
            }
        }
        int64_t wsz = n->wsize[0];
        OOM(ws->fold_w[i] = aligned_alloc(64, (size_t)align16(wsz) * sizeof(float)));
        OOM(ws->fold_b[i] = aligned_alloc(64, (size_t)align16(n->c) * sizeof(float)));
        ws->bytes += (size_t)(align16(wsz) + align16(n->c)) * sizeof(float);
    }
    /* a ZeroPadding2D feeding only a convolution: the convolution reads (and in backward
     * writes the gradient of) the unpadded input, the padding being implicit zeros */
    for (int i = 0; i < N && !KEEP && !(flags & RB_WS_NO_FUSE); i++) {
        const rb_node *n = &m->nodes[i];
        if (n->op != RB_OP_DEPTHWISE && n->op != RB_OP_CONV2D)
            continue;
        int p = n->inputs[0];
        const rb_node *pn = &m->nodes[p];
        if (pn->op != RB_OP_ZEROPAD || ncons[p] != 1 || p == 0)
            continue;
        int q = pn->inputs[0];
        ws->fuse[p] = FUSE_SKIP;
        ws->src[i] = q;
        int end = i;
        if (TRAIN && ws->bw[i] && needs_in_bw(n))
            end = 2 * N - 1 - i;
        extra_end[q] = end > extra_end[q] ? end : extra_end[q];
        if (TRAIN && ws->bw[i])
            extra_cons[q] = i > extra_cons[q] ? i : extra_cons[q];
        conv2d_shape *fs = &ws->fshape[i];
        fs->h = pn->in_h;
        fs->w = pn->in_w;
        fs->pad_top += pn->pad_t;
        fs->pad_left += pn->pad_l;
        fs->pad_bottom += pn->pad_b;
        fs->pad_right += pn->pad_r;
    }
    /* training: a trainable BatchNorm whose only consumer is an in-place ReLU/ReLU6 runs
     * both in one pass forward and backward (no BN output gradient buffer at all) */
    for (int b = 0; b < N && TRAIN && !KEEP && !(flags & RB_WS_NO_FUSE); b++) {
        const rb_node *bn = &m->nodes[b];
        if (bn->op != RB_OP_BATCHNORM || !ws->bw[b] || !bn->trainable || ncons[b] != 1 ||
            ws->fuse[b] != FUSE_NONE)
            continue;
        int r = maxcons[b];
        const rb_node *rn = &m->nodes[r];
        int relu = rn->op == RB_OP_RELU ||
                   (rn->op == RB_OP_ACTIVATION && (rn->act == RB_ACT_RELU || rn->act == RB_ACT_RELU6));
        if (!relu || r == m->output || uf_find(uf, r) != uf_find(uf, b))
            continue;
        ws->bnact[b] = r;
        ws->fuse[r] = FUSE_SKIP;
    }
    /* gradient groups: Flatten shares its input's gradient */
    for (int i = 1; i < N && TRAIN; i++)
        if (m->nodes[i].op == RB_OP_FLATTEN && ws->bw[i])
            uf_union(uf, N + m->nodes[i].inputs[0], N + i);

    /* 2b. micro-batched prefix: the leading layers without backward whose outputs are
     * large run a few samples at a time, their activations in a small per-thread arena
     * that stays in cache (the early MobileNetV2 layers are memory-bound otherwise) */
    OOM(ws->moff = malloc((size_t)N * sizeof(int64_t)));
    for (int i = 0; i < N; i++)
        ws->moff[i] = -1;
    uint8_t *micro_ok = NULL;
    OOM(micro_ok = malloc((size_t)2 * N));
    memset(micro_ok, 0, (size_t)2 * N);
    if (!KEEP && !(flags & RB_WS_NO_FUSE) && batch > 1) {
        int lead = 0;
        while (lead < N && !ws->bw[lead] && lead != m->output)
            lead++;
        int K = 0;
        int64_t big = 0;
        for (int i = 0; i < lead; i++)
            if (m->nodes[i].size >= 20000) /* 80 KB per sample and more */
                K = i + 1;
        for (int i = 0; i < K; i++)
            big = m->nodes[i].size > big ? m->nodes[i].size : big;
        if (K > 1) {
            for (int i = 0; i < N; i++)
                micro_ok[uf_find(uf, i)] = 1;
            for (int i = 0; i < N; i++)
                if (i >= K || maxcons[i] >= K || extra_end[i] >= K || i == m->output)
                    micro_ok[uf_find(uf, i)] = 0;
            ws->K = K;
            ws->mb = (int)((1 << 19) / (big > 0 ? big : 1));
            ws->mb = ws->mb < 1 ? 1 : ws->mb;
        }
    }
    if (ws->K > 0) {
        plan_buf *mbufs = calloc((size_t)N, sizeof *mbufs);
        int *mg = malloc((size_t)N * sizeof(int));
        if (!mbufs || !mg) {
            free(mbufs);
            free(mg);
            free(micro_ok);
            goto oom;
        }
        int nm = 0;
        for (int i = 0; i < N; i++)
            mg[i] = -1;
        for (int i = 0; i < ws->K; i++) {
            int r = uf_find(uf, i);
            if (!micro_ok[r])
                continue;
            int end = maxcons[i] > i ? maxcons[i] : i;
            end = extra_end[i] > end ? extra_end[i] : end;
            if (mg[r] < 0) {
                mg[r] = nm++;
                mbufs[mg[r]].start = i;
                mbufs[mg[r]].end = end;
            }
            plan_buf *b = &mbufs[mg[r]];
            b->start = i < b->start ? i : b->start;
            b->end = end > b->end ? end : b->end;
            int64_t sz = align16(m->nodes[i].size * ws->mb);
            b->size = sz > b->size ? sz : b->size;
        }
        int64_t mt = place_buffers(mbufs, nm);
        for (int i = 0; i < ws->K && mt >= 0; i++) {
            int r = uf_find(uf, i);
            if (micro_ok[r])
                ws->moff[i] = mbufs[mg[r]].off;
        }
        free(mbufs);
        free(mg);
        if (mt < 0) {
            free(micro_ok);
            goto oom;
        }
        ws->micro_floats = (size_t)mt + 16;
        ws->tmicro[0] = aligned_alloc(64, ws->micro_floats * sizeof(float));
        if (!ws->tmicro[0]) {
            free(micro_ok);
            goto oom;
        }
        memset(ws->tmicro[0], 0, ws->micro_floats * sizeof(float));
        ws->bytes += ws->micro_floats * sizeof(float);
    }

    /* 3. lifetimes per group */
    int ng = 0;
    for (int i = 0; i < 2 * N; i++)
        gid[i] = -1;
    OOM(bufs = calloc((size_t)2 * N, sizeof *bufs));
    for (int i = 0; i < N; i++) {
        const rb_node *n = &m->nodes[i];
        int start = i, end = i;
        for (int j = i + 1; j < N; j++)
            for (int k = 0; k < m->nodes[j].ninputs; k++)
                if (m->nodes[j].inputs[k] == i) {
                    end = j > end ? j : end;
                    if (TRAIN && ws->bw[j] && k == 0 && needs_in_bw(&m->nodes[j])) {
                        int t = 2 * N - 1 - j;
                        end = t > end ? t : end;
                    }
                }
        if (TRAIN && ws->bw[i] && needs_out_bw(n)) {
            int t = 2 * N - 1 - i;
            end = t > end ? t : end;
        }
        end = extra_end[i] > end ? extra_end[i] : end;
        if (TRAIN && ws->bnact[i] >= 0) { /* the fused BN's backward reads y */
            int t = 2 * N - 1 - i;
            end = t > end ? t : end;
        }
        if (i == m->output || KEEP) {
            end = INF;
            if (KEEP)
                start = 0;
        }
        int r = uf_find(uf, i);
        if (micro_ok[r])
            continue; /* lives in the micro arenas */
        if (gid[r] < 0) {
            gid[r] = ng++;
            bufs[gid[r]].start = start;
            bufs[gid[r]].end = end;
        }
        plan_buf *b = &bufs[gid[r]];
        b->start = start < b->start ? start : b->start;
        b->end = end > b->end ? end : b->end;
        int64_t sz = align16(n->size * batch);
        b->size = sz > b->size ? sz : b->size;
    }
    for (int i = 0; i < N && TRAIN; i++) {
        if (!ws->bw[i] || ws->bnact[i] >= 0 ||
            (ws->fuse[i] == FUSE_SKIP && m->nodes[i].op == RB_OP_ZEROPAD))
            continue;
        const rb_node *n = &m->nodes[i];
        int lastw = maxcons[i] > extra_cons[i] ? maxcons[i] : extra_cons[i];
        int start = i == m->output ? N : 2 * N - 1 - lastw;
        int end = 2 * N - 1 - i;
        if (ws->fuse[i] == FUSE_SKIP && n->ninputs && ws->bnact[n->inputs[0]] == i)
            end = 2 * N - 1 - n->inputs[0]; /* read by the fused BN's backward */
        int r = uf_find(uf, N + i);
        if (gid[r] < 0) {
            gid[r] = ng++;
            bufs[gid[r]].start = start;
            bufs[gid[r]].end = end;
        }
        plan_buf *b = &bufs[gid[r]];
        b->start = start < b->start ? start : b->start;
        b->end = end > b->end ? end : b->end;
        int64_t sz = align16(n->size * batch);
        b->size = sz > b->size ? sz : b->size;
    }
    /* 4. placement */
    int64_t total = place_buffers(bufs, ng);
    if (total < 0)
        goto oom;
    ws->arena_floats = (size_t)(total ? total : 16);
    OOM(ws->arena = aligned_alloc(64, ws->arena_floats * sizeof(float)));
    memset(ws->arena, 0, ws->arena_floats * sizeof(float));
    ws->bytes += ws->arena_floats * sizeof(float);
    for (int i = 0; i < N; i++) {
        ws->act[i] = micro_ok[uf_find(uf, i)] ? NULL : ws->arena + bufs[gid[uf_find(uf, i)]].off;
        if (TRAIN && ws->bw[i] && ws->bnact[i] < 0 &&
            !(ws->fuse[i] == FUSE_SKIP && m->nodes[i].op == RB_OP_ZEROPAD))
            ws->dact[i] = ws->arena + bufs[gid[uf_find(uf, N + i)]].off;
    }
    /* zeroing plan: each gradient group at its start */
    OOM(ws->zstart = calloc((size_t)N + 1, sizeof(int)));
    OOM(ws->zptr = calloc((size_t)N + 1, sizeof(float *)));
    OOM(ws->zlen = calloc((size_t)N + 1, sizeof(int64_t)));
    OOM(ws->zrow = calloc((size_t)N + 1, sizeof(int64_t)));
    {
        /* count per node, then fill */
        int *cnt = calloc((size_t)N + 1, sizeof(int));
        OOM(cnt);
        uint8_t *seen = calloc((size_t)2 * N, 1);
        if (!seen) {
            free(cnt);
            goto oom;
        }
        for (int i = 0; i < N && TRAIN; i++) {
            if (!ws->bw[i] || ws->bnact[i] >= 0 ||
                (ws->fuse[i] == FUSE_SKIP && m->nodes[i].op == RB_OP_ZEROPAD))
                continue;
            int r = uf_find(uf, N + i);
            if (seen[r])
                continue;
            seen[r] = 1;
            int node = 2 * N - 1 - bufs[gid[r]].start;
            cnt[node]++;
        }
        ws->zstart[0] = 0;
        for (int i = 0; i < N; i++)
            ws->zstart[i + 1] = ws->zstart[i] + cnt[i];
        memset(cnt, 0, (size_t)(N + 1) * sizeof(int));
        memset(seen, 0, (size_t)2 * N);
        for (int i = 0; i < N && TRAIN; i++) {
            if (!ws->bw[i] || ws->bnact[i] >= 0 ||
                (ws->fuse[i] == FUSE_SKIP && m->nodes[i].op == RB_OP_ZEROPAD))
                continue;
            int r = uf_find(uf, N + i);
            if (seen[r])
                continue;
            seen[r] = 1;
            int node = 2 * N - 1 - bufs[gid[r]].start;
            int slot = ws->zstart[node] + cnt[node]++;
            ws->zptr[slot] = ws->arena + bufs[gid[r]].off;
            ws->zlen[slot] = bufs[gid[r]].size;
            ws->zrow[slot] = m->nodes[i].size;
        }
        free(cnt);
        free(seen);
    }
    /* per-node extras */
    size_t scratch = 0;
    int cmax = 1;
    for (int i = 0; i < N; i++) {
        const rb_node *n = &m->nodes[i];
        if (n->op == RB_OP_CONV2D) {
            conv2d_shape s = n->cs;
            s.n = batch;
            size_t f = conv2d_scratch_floats(&s);
            scratch = f > scratch ? f : scratch;
        }
        if (n->op == RB_OP_BATCHNORM) {
            cmax = n->c > cmax ? n->c : cmax;
            if (TRAIN) {
                OOM(ws->bn_mean[i] = malloc((size_t)n->c * sizeof(float)));
                OOM(ws->bn_invstd[i] = malloc((size_t)n->c * sizeof(float)));
            }
        }
        if (n->op == RB_OP_MAXPOOL) {
            OOM(ws->argmax[i] = malloc((size_t)(n->size * batch) * sizeof(int32_t)));
            ws->bytes += (size_t)(n->size * batch) * sizeof(int32_t);
        }
        if (n->op == RB_OP_DROPOUT && TRAIN) {
            OOM(ws->mask[i] = malloc((size_t)(n->size * batch)));
            ws->bytes += (size_t)(n->size * batch);
        }
    }
    {
        const rb_node *o = &m->nodes[m->output];
        if (o->act == RB_ACT_SOFTMAX || o->act == RB_ACT_SIGMOID)
            OOM(ws->logits = malloc((size_t)(o->size * batch) * sizeof(float)));
    }
    {
        const char *pe = getenv("RADBATCH_PROFILE");
        if (pe && *pe && strcmp(pe, "0"))
            OOM(ws->prof = calloc((size_t)2 * N, sizeof(double)));
    }
    ws->scratch_floats = scratch;
    OOM(ws->scratch = aligned_alloc(64, (size_t)align16((int64_t)scratch + 16) * sizeof(float)));
    ws->bytes += (size_t)align16((int64_t)scratch + 16) * sizeof(float);
    OOM(ws->bnbuf = calloc((size_t)(2 * cmax + 1), sizeof(double)));
    OOM(ws->bnpart = calloc((size_t)(2 * cmax + 1), sizeof(double)));
    ws->cmax = cmax;
    ws->nthreads = 1;
    OOM(ws->tfz[0] = malloc((size_t)(6 * cmax) * sizeof(float)));
    if (TRAIN) {
        ws->nranges = rb_model_ranges(m, RB_RANGES_TRAINABLE, NULL, 0);
        OOM(ws->ranges = calloc((size_t)(ws->nranges + 1), sizeof(optim_range)));
        rb_model_ranges(m, RB_RANGES_TRAINABLE, ws->ranges, ws->nranges);
    }
    free(ncons);
    free(maxcons);
    free(uf);
    free(gid);
    free(bufs);
    free(extra_end);
    free(extra_cons);
    free(micro_ok);
    return ws;
oom:
    free(extra_end);
    free(extra_cons);
    free(ncons);
    free(maxcons);
    free(uf);
    free(gid);
    free(bufs);
    rb_workspace_free(ws);
    rb_fail(err, "use a smaller batch or input size", "out of memory for a workspace of batch %d",
            batch);
    return NULL;
}

/* ---- threads ------------------------------------------------------------------------- */
/* With T threads (rb_workspace_set_threads) a forward or backward runs as T parts over
 * row ranges of the batch (sample-parallel): every layer is computed by all threads on
 * their own samples with single-threaded BLAS, so loop kernels (depthwise, BN, pooling)
 * use every core and nothing waits per layer. Batch-coupled steps synchronize: training
 * BatchNorm sums its statistics over the threads (two barriers per layer), and weight
 * gradients of threads > 0 go to private buffers added to m->grads at the end. */

typedef struct job {
    rb_model *m;
    rb_workspace *ws;
    const rb_forward_args *a;
    const float *dout;
    int preact;
    int backward;
    int T, n;
} job;

static void run_part(job *j, int t);

typedef struct worker {
    rb_workspace *ws;
    int t;
} worker;

/* sense-reversing spin barrier: the threads run on their own cores and reach each layer
 * within microseconds of each other */
static void barrier_t(rb_workspace *ws, int T, int t)
{
    if (T <= 1)
        return;
    int s = !ws->tsense[t];
    ws->tsense[t] = s;
    if (atomic_fetch_add(&ws->bcount, 1) == T - 1) {
        atomic_store(&ws->bcount, 0);
        atomic_store(&ws->bsense, s);
    } else {
        int spins = 0;
        while (atomic_load_explicit(&ws->bsense, memory_order_acquire) != s) {
            if (++spins > 2000)
                sched_yield();
            else
                __builtin_ia32_pause();
        }
    }
}
#define barrier(ws, T) barrier_t(ws, T, t)

static void *worker_main(void *p)
{
    worker *w = p;
    rb_workspace *ws = w->ws;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&ws->mu);
        while (ws->gen == seen && !ws->quit)
            pthread_cond_wait(&ws->cv, &ws->mu);
        if (ws->quit) {
            pthread_mutex_unlock(&ws->mu);
            return NULL;
        }
        seen = ws->gen;
        job *j = ws->job;
        pthread_mutex_unlock(&ws->mu);
        if (w->t < j->T)
            run_part(j, w->t);
        pthread_mutex_lock(&ws->mu);
        ws->done++;
        pthread_cond_broadcast(&ws->cv_done);
        pthread_mutex_unlock(&ws->mu);
    }
}

static void pool_stop(rb_workspace *ws)
{
    if (ws->nthreads <= 1)
        return;
    pthread_mutex_lock(&ws->mu);
    ws->quit = 1;
    pthread_cond_broadcast(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    for (int t = 1; t < ws->nthreads; t++)
        pthread_join(ws->th[t], NULL);
    pthread_mutex_destroy(&ws->mu);
    pthread_cond_destroy(&ws->cv);
    pthread_cond_destroy(&ws->cv_done);
    for (int t = 1; t < ws->nthreads; t++) {
        free(ws->tscratch[t]);
        free(ws->tbn[t]);
        free(ws->tsave[t]);
        free(ws->tgrads[t]);
    }
    free(ws->tscratch);
    free(ws->tbn);
    free(ws->tsave);
    free(ws->tgrads);
    free(ws->th);
    free(ws->workers);
    ws->tscratch = NULL;
    ws->tbn = NULL;
    ws->tsave = NULL;
    ws->tgrads = NULL;
    ws->th = NULL;
    ws->workers = NULL;
    ws->nthreads = 1;
    ws->quit = 0;
}

int rb_workspace_set_threads(rb_workspace *ws, int threads, rb_error *err)
{
    if (threads < 1)
        threads = 1;
    if (threads > 64)
        threads = 64;
    if (threads == ws->nthreads)
        return 0;
    pool_stop(ws);
    if (threads == 1)
        return 0;
    const rb_model *m = ws->m;
    int T = threads;
    ws->tscratch = calloc((size_t)T, sizeof(float *));
    ws->tbn = calloc((size_t)T, sizeof(double *));
    ws->tsave = calloc((size_t)T, sizeof(float *));
    ws->tgrads = calloc((size_t)T, sizeof(float *));
    ws->th = calloc((size_t)T, sizeof(pthread_t));
    ws->workers = calloc((size_t)T, sizeof(worker));
    if (!ws->tscratch || !ws->tbn || !ws->tsave || !ws->tgrads || !ws->th || !ws->workers)
        goto oom;
    ws->tscratch[0] = ws->scratch;
    ws->tbn[0] = ws->bnpart;
    ws->tsave[0] = NULL;
    ws->tgrads[0] = m->grads;
    for (int t = 1; t < T; t++) {
        ws->tscratch[t] = aligned_alloc(64, (size_t)align16((int64_t)ws->scratch_floats + 16) *
                                                sizeof(float));
        ws->tbn[t] = calloc((size_t)(2 * ws->cmax + 1), sizeof(double));
        ws->tsave[t] = malloc((size_t)(2 * ws->cmax) * sizeof(float));
        if (!ws->tfz[t])
            ws->tfz[t] = malloc((size_t)(6 * ws->cmax) * sizeof(float));
        if (ws->K > 0 && !ws->tmicro[t]) {
            ws->tmicro[t] = aligned_alloc(64, ws->micro_floats * sizeof(float));
            if (!ws->tmicro[t])
                goto oom;
            memset(ws->tmicro[t], 0, ws->micro_floats * sizeof(float));
        }
        if (!ws->tscratch[t] || !ws->tbn[t] || !ws->tsave[t] || !ws->tfz[t])
            goto oom;
        if (ws->flags & RB_WS_TRAIN) {
            ws->tgrads[t] = aligned_alloc(64, (size_t)align16(m->nparams + 16) * sizeof(float));
            if (!ws->tgrads[t])
                goto oom;
            memset(ws->tgrads[t], 0, (size_t)align16(m->nparams + 16) * sizeof(float));
        }
    }
    pthread_mutex_init(&ws->mu, NULL);
    pthread_cond_init(&ws->cv, NULL);
    pthread_cond_init(&ws->cv_done, NULL);
    ws->nthreads = T;
    for (int t = 1; t < T; t++) {
        ws->workers[t].ws = ws;
        ws->workers[t].t = t;
        if (pthread_create(&ws->th[t], NULL, worker_main, &ws->workers[t]) != 0) {
            ws->nthreads = t; /* stop the ones started */
            pool_stop(ws);
            return rb_fail(err, "run with fewer threads", "cannot start model thread %d", t);
        }
    }
    return 0;
oom:
    ws->nthreads = T;
    for (int t = 1; t < T; t++)
        if (ws->tscratch) {
            free(ws->tscratch[t]);
            free(ws->tbn[t]);
            free(ws->tsave[t]);
            free(ws->tgrads[t]);
        }
    free(ws->tscratch);
    free(ws->tbn);
    free(ws->tsave);
    free(ws->tgrads);
    free(ws->th);
    free(ws->workers);
    ws->tscratch = NULL;
    ws->tbn = NULL;
    ws->tsave = NULL;
    ws->tgrads = NULL;
    ws->th = NULL;
    ws->workers = NULL;
    ws->nthreads = 1;
    return rb_fail(err, NULL, "out of memory for %d model threads", threads);
}

static void run_job(rb_workspace *ws, job *j)
{
    int T = ws->nthreads < j->n ? ws->nthreads : j->n;
    j->T = T;
    /* BLAS is single-threaded inside the engine, also on one thread: OpenBLAS' own threads
     * split a product at places that depend on their count, and a row rounds differently
     * at another place (layers.h, "Per-image results") */
    int blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
    if (T <= 1) {
        run_part(j, 0);
        openblas_set_num_threads(blas);
        return;
    }
    atomic_store(&ws->bcount, 0);
    atomic_store(&ws->bsense, 0);
    for (int t = 0; t < T; t++)
        ws->tsense[t] = 0;
    pthread_mutex_lock(&ws->mu);
    ws->job = j;
    ws->done = 0;
    ws->gen++;
    pthread_cond_broadcast(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    run_part(j, 0);
    pthread_mutex_lock(&ws->mu);
    while (ws->done < ws->nthreads - 1)
        pthread_cond_wait(&ws->cv_done, &ws->mu);
    pthread_mutex_unlock(&ws->mu);
    openblas_set_num_threads(blas);
}

/* ---- forward ------------------------------------------------------------------------- */

static void input_forward(float *out, const rb_node *n, const rb_forward_args *a, int r0, int nt)
{
    int64_t per = n->size, total = per * nt;
    if (a->type == RB_INPUT_F32) {
        memcpy(out, (const float *)a->input + r0 * per, (size_t)total * sizeof(float));
        return;
    }
    if (a->type == RB_INPUT_U8) {
        rescale_forward(out, (const uint8_t *)a->input + r0 * per, nt, per, n->preprocess);
        return;
    }
    const float *in = (const float *)a->input + r0 * per;
    switch (n->preprocess) {
    case RESCALE_MINUS1_1:
        for (int64_t i = 0; i < total; i++)
            out[i] = in[i] / 127.5f - 1.0f;
        break;
    case RESCALE_0_1:
        for (int64_t i = 0; i < total; i++)
            out[i] = in[i] / 255.0f;
        break;
    case RESCALE_MINMAX:
        for (int s = 0; s < nt; s++) {
            const float *x = in + s * per;
            float lo = x[0], hi = x[0];
            for (int64_t i = 1; i < per; i++) {
                lo = x[i] < lo ? x[i] : lo;
                hi = x[i] > hi ? x[i] : hi;
            }
            float scale = hi > lo ? 1.0f / (hi - lo) : 0.0f;
            for (int64_t i = 0; i < per; i++)
                out[s * per + i] = (x[i] - lo) * scale;
        }
        break;
    default:
        memcpy(out, in, (size_t)total * sizeof(float));
        break;
    }
}

/* folded weights of conv node i with BN node b: w' = w*g, b' = beta + (b0 - mean)*g */
static void fold_bn(const rb_model *m, rb_workspace *ws, int i)
{
    const rb_node *n = &m->nodes[i];
    const rb_node *bn = &m->nodes[ws->fuse_bn[i]];
    const float *w = m->params + n->woff[0];
    const float *b0 = n->use_bias ? m->params + n->woff[1] : NULL;
    const float *gamma = m->params + bn->woff[0], *beta = m->params + bn->woff[1];
    const float *mean = m->state + bn->woff[2], *var = m->state + bn->woff[3];
    float *wf = ws->fold_w[i], *bf = ws->fold_b[i];
    int c = n->c;
    for (int j = 0; j < c; j++)
        bf[j] = gamma[j] / sqrtf(var[j] + bn->eps);
    int64_t rows = n->wsize[0] / c;
    for (int64_t r = 0; r < rows; r++)
        for (int j = 0; j < c; j++)
            wf[r * c + j] = w[r * c + j] * bf[j];
    for (int j = 0; j < c; j++)
        bf[j] = beta[j] + ((b0 ? b0[j] : 0.0f) - mean[j]) * bf[j];
}

static int bn_uses_batch(const rb_model *m, const rb_node *n, int training)
{
    return training && n->trainable && !(n->in_base && !m->base_training);
}

/* ---- BatchNormalization + ReLU fused (training workspaces) ---------------------------- */

/* coefficients of channel j: mean, invstd from batch sums or moving statistics */
static void bn_coeffs(const rb_node *nd, const double *sum, double count, const float *mm,
                      const float *mv, float *mean, float *invstd)
{
    for (int j = 0; j < nd->c; j++) {
        if (sum) {
            double mu = sum[j] / count, v = sum[nd->c + j] / count - mu * mu;
            v = v > 0.0 ? v : 0.0;
            mean[j] = (float)mu;
            invstd[j] = (float)(1.0 / sqrt(v + (double)nd->eps));
        } else {
            mean[j] = mm[j];
            invstd[j] = 1.0f / sqrtf(mv[j] + nd->eps);
        }
    }
}

static void bn_act_forward(rb_model *m, rb_workspace *ws, const rb_forward_args *a, int i, int t,
                           int T, float *out, const float *in, int64_t rows)
{
    const rb_node *nd = &m->nodes[i];
    const int c = nd->c;
    const float *gamma = m->params + nd->woff[0], *beta = m->params + nd->woff[1];
    float *mm = m->state + nd->woff[2], *mv = m->state + nd->woff[3];
    float *fz = ws->tfz[t], *ca = fz, *cb = fz + c;
    float *mean = t ? fz + 2 * c : ws->bn_mean[i], *invstd = t ? fz + 3 * c : ws->bn_invstd[i];
    if (bn_uses_batch(m, nd, a->training)) {
        double *part = T > 1 ? ws->tbn[t] : ws->bnbuf;
        batchnorm_stats(part, part + c, in, rows, c);
        part[2 * c] = (double)rows;
        barrier_t(ws, T, t);
        double *sum = ws->bnbuf;
        if (t == 0) {
            for (int u = 1; u < T; u++)
                for (int k = 0; k <= 2 * c; k++)
                    sum[k] = (u == 1 ? ws->tbn[0][k] : sum[k]) + ws->tbn[u][k];
            if (m->bn_reduce)
                m->bn_reduce(sum, 2 * c + 1, m->bn_reduce_ctx);
            ws->bn_count[i] = sum[2 * c];
        }
        barrier_t(ws, T, t);
        bn_coeffs(nd, sum, sum[2 * c], NULL, NULL, mean, invstd);
        if (t == 0) {
            if (!a->no_stat_update)
                batchnorm_update_moving(mm, mv, sum, sum + c, sum[2 * c], nd->momentum, c);
            ws->bn_batch[i] = 1;
        }
    } else {
        bn_coeffs(nd, NULL, 0, mm, mv, mean, invstd);
        if (t == 0)
            ws->bn_batch[i] = 0;
    }
    for (int j = 0; j < c; j++) {
        ca[j] = invstd[j] * gamma[j];
        cb[j] = beta[j] - mean[j] * ca[j];
    }
    rb_fused_bn_act_forward(out, in, ca, cb, rows, c, m->nodes[ws->bnact[i]].act);
}

static void bn_act_backward(rb_model *m, rb_workspace *ws, int i, int t, int T, int r0, int n,
                            float *grads)
{
    const rb_node *nd = &m->nodes[i];
    const int c = nd->c, r = ws->bnact[i], p = nd->inputs[0];
    const int act = m->nodes[r].act;
    const int64_t rows = (int64_t)n * nd->h * nd->w;
    const float *dout = ws->dact[r] + (int64_t)r0 * nd->size;
    const float *y = ws->act[r] + (int64_t)r0 * nd->size;
    const float *x = ws->act[p] + (int64_t)r0 * m->nodes[p].size;
    float *din = ws->bw[p] ? ws->dact[p] + (int64_t)r0 * m->nodes[p].size : NULL;
    const float *gamma = m->params + nd->woff[0];
    float *fz = ws->tfz[t], *A = fz, *B = fz + c, *C = fz + 2 * c;
    const float *mean, *invstd;
    if (ws->bn_batch[i]) {
        mean = ws->bn_mean[i];
        invstd = ws->bn_invstd[i];
    } else {
        float *mw = fz + 3 * c, *iw = fz + 4 * c;
        bn_coeffs(nd, NULL, 0, m->state + nd->woff[2], m->state + nd->woff[3], mw, iw);
        mean = mw;
        invstd = iw;
    }
    double *part = T > 1 ? ws->tbn[t] : ws->bnbuf;
    memset(part, 0, (size_t)(2 * c) * sizeof(double));
    rb_fused_bn_act_sums(part, part + c, dout, y, x, mean, rows, c, act);
    for (int j = 0; j < c; j++)
        part[c + j] *= invstd[j]; /* sum dy * xhat */
    if (!ws->bn_batch[i]) {
        /* moving statistics: per-thread gradients, din = gamma*invstd*dy */
        float *dg = grads + nd->woff[0], *dbt = grads + nd->woff[1];
        for (int j = 0; j < c; j++) {
            dg[j] += (float)part[c + j];
            dbt[j] += (float)part[j];
            A[j] = gamma[j] * invstd[j];
            B[j] = 0.0f;
            C[j] = 0.0f;
        }
        if (din)
            rb_fused_bn_act_din(din, dout, y, x, mean, A, B, C, rows, c, act);
        return;
    }
    barrier_t(ws, T, t);
    double *sum = ws->bnbuf;
    if (t == 0) {
        for (int u = 1; u < T; u++)
            for (int k = 0; k < 2 * c; k++)
                sum[k] = (u == 1 ? ws->tbn[0][k] : sum[k]) + ws->tbn[u][k];
        float *dg = m->grads + nd->woff[0], *dbt = m->grads + nd->woff[1];
        for (int j = 0; j < c; j++) {
            dg[j] += (float)sum[c + j];
            dbt[j] += (float)sum[j];
        }
        if (din && m->bn_reduce)
            m->bn_reduce(sum, 2 * c, m->bn_reduce_ctx);
    }
    barrier_t(ws, T, t);
    if (!din)
        return;
    double count = ws->bn_count[i];
    for (int j = 0; j < c; j++) {
        double is = invstd[j], aa = (double)gamma[j] * is;
        A[j] = (float)aa;
        B[j] = (float)(-aa * is * (sum[c + j] / count));
        C[j] = (float)(-aa * (sum[j] / count));
    }
    rb_fused_bn_act_din(din, dout, y, x, mean, A, B, C, rows, c, act);
}

/* pointer to row `rabs` of node x's output: the thread's micro-batch arena for nodes that
 * live there during the micro-batched prefix, else the workspace arena */
static inline float *fptr(rb_workspace *ws, int t, int x, int rabs, int micro)
{
    if (micro && ws->moff[x] >= 0)
        return ws->tmicro[t] + ws->moff[x];
    return ws->act[x] + (int64_t)rabs * ws->m->nodes[x].size;
}
#define FP(x) fptr(ws, t, (x), rabs, micro)

/* forward of node i for rows [rabs, rabs + n) on thread t */
static void forward_node(job *j, int t, int i, int rabs, int n, int micro)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const rb_forward_args *a = j->a;
    const int T = j->T;
    float *scratch = t ? ws->tscratch[t] : ws->scratch;
    const rb_node *nd = &m->nodes[i];
    float *out = FP(i);
    const float *in = NULL;
    if (nd->ninputs) /* src: input 0, or a skipped ZeroPadding2D's input */
        in = FP(ws->src[i]);
    const int64_t rows = (int64_t)n * nd->h * nd->w;
    double t0 = ws->prof && t == 0 ? prof_now() : 0;
    switch (nd->op) {
    case RB_OP_INPUT:
        input_forward(out, nd, a, rabs, n);
        break;
    case RB_OP_CONV2D:
    case RB_OP_DEPTHWISE: {
        conv2d_shape s = ws->fshape[i];
        s.n = n;
        const float *w = m->params + nd->woff[0];
        const float *b = nd->use_bias ? m->params + nd->woff[1] : NULL;
        rb_act act = nd->act;
        if (ws->fuse[i] == FUSE_CONV_BN) {
            w = ws->fold_w[i];
            b = ws->fold_b[i];
            act = (rb_act)ws->fuse_act[i];
            if (nd->op == RB_OP_CONV2D && nd->kh == 1 && nd->kw == 1 && nd->sh == 1 &&
                nd->sw == 1 && s.pad_top == 0 && s.pad_left == 0 && s.pad_bottom == 0 &&
                s.pad_right == 0 && i != m->output) {
                rb_fused_conv1x1(out, in, w, b, rows, (int64_t)nd->h * nd->w, nd->in_c, nd->c, act);
                break;
            }
            if (nd->op == RB_OP_DEPTHWISE && i != m->output) {
                depthwise_forward(out, in, w, NULL, &s);
                rb_fused_bias_act(out, b, rows, nd->c, act);
                break;
            }
        }
        if (nd->op == RB_OP_CONV2D)
            conv2d_forward(out, in, w, NULL, &s, scratch);
        else
            depthwise_forward(out, in, w, NULL, &s);
        if (i == m->output && ws->logits) {
            bias_act(out, b, rows, nd->c, RB_ACT_LINEAR);
            memcpy(ws->logits + (int64_t)rabs * nd->c, out, (size_t)(rows * nd->c) * sizeof(float));
            b = NULL;
        }
        if (b && (act == RB_ACT_LINEAR || act == RB_ACT_RELU || act == RB_ACT_RELU6))
            rb_fused_bias_act(out, b, rows, nd->c, act);
        else
            bias_act(out, b, rows, nd->c, act);
        break;
    }
    case RB_OP_ZEROPAD: {
        pad_shape s = nd->ps;
        s.n = n;
        zeropad_forward(out, in, &s);
        break;
    }
    case RB_OP_BATCHNORM: {
        const float *gamma = m->params + nd->woff[0], *beta = m->params + nd->woff[1];
        float *mm = m->state + nd->woff[2], *mv = m->state + nd->woff[3];
        int c = nd->c;
        if (ws->bnact[i] >= 0) {
            bn_act_forward(m, ws, a, i, t, T, out, in, rows);
            break;
        }
        if (bn_uses_batch(m, nd, a->training)) {
            double *part = T > 1 ? ws->tbn[t] : ws->bnbuf;
            batchnorm_stats(part, part + c, in, rows, c);
            part[2 * c] = (double)rows;
            barrier(ws, T);
            double *sum = ws->bnbuf;
            if (t == 0) {
                for (int u = 1; u < T; u++)
                    for (int k = 0; k <= 2 * c; k++)
                        sum[k] = (u == 1 ? ws->tbn[0][k] : sum[k]) + ws->tbn[u][k];
                if (m->bn_reduce)
                    m->bn_reduce(sum, 2 * c + 1, m->bn_reduce_ctx);
                ws->bn_count[i] = sum[2 * c];
            }
            barrier(ws, T);
            float *smean = t ? ws->tsave[t] : ws->bn_mean[i];
            float *sinv = t ? ws->tsave[t] + c : ws->bn_invstd[i];
            batchnorm_forward_train(out, smean, sinv, in, gamma, beta, sum, sum + c, sum[2 * c],
                                    nd->eps, rows, c);
            if (t == 0) {
                if (!a->no_stat_update)
                    batchnorm_update_moving(mm, mv, sum, sum + c, sum[2 * c], nd->momentum, c);
                ws->bn_batch[i] = 1;
            }
        } else {
            batchnorm_forward_infer(out, in, gamma, beta, mm, mv, nd->eps, rows, c);
            if (t == 0)
                ws->bn_batch[i] = 0;
        }
        break;
    }
    case RB_OP_RELU:
        if (nd->act == RB_ACT_RELU6)
            relu6_forward(out, in, rows * nd->c);
        else
            relu_forward(out, in, rows * nd->c);
        break;
    case RB_OP_ACTIVATION:
    case RB_OP_SOFTMAX:
        if (i == m->output && ws->logits)
            memcpy(ws->logits + (int64_t)rabs * nd->c, in, (size_t)(rows * nd->c) * sizeof(float));
        if (out != in)
            memcpy(out, in, (size_t)(rows * nd->c) * sizeof(float));
        bias_act(out, NULL, rows, nd->c, nd->act);
        break;
    case RB_OP_ADD: {
        add_forward(out, in, FP(nd->inputs[1]), rows * nd->c);
        for (int k = 2; k < nd->ninputs; k++)
            add_forward(out, out,
                        FP(nd->inputs[k]),
                        rows * nd->c);
        break;
    }
    case RB_OP_CONCAT: {
        const float *ins[RB_MAX_INPUTS];
        int cs[RB_MAX_INPUTS];
        for (int k = 0; k < nd->ninputs; k++) {
            const rb_node *src = &m->nodes[nd->inputs[k]];
            ins[k] = FP(nd->inputs[k]);
            cs[k] = src->c;
        }
        concat_forward(out, ins, cs, nd->ninputs, rows);
        break;
    }
    case RB_OP_MAXPOOL: {
        conv2d_shape s = nd->cs;
        s.n = n;
        maxpool_forward(out, ws->argmax[i] + (int64_t)rabs * nd->size, in, &s);
        break;
    }
    case RB_OP_AVGPOOL: {
        conv2d_shape s = nd->cs;
        s.n = n;
        avgpool_forward(out, in, &s);
        break;
    }
    case RB_OP_GAP:
        gap_forward(out, in, n, nd->in_h * nd->in_w, nd->c);
        break;
    case RB_OP_FLATTEN:
        break; /* aliased */
    case RB_OP_DENSE:
        dense_forward(out, in, m->params + nd->woff[0],
                      nd->use_bias ? m->params + nd->woff[1] : NULL, n, nd->in_c, nd->units);
        if (i == m->output && ws->logits)
            memcpy(ws->logits + (int64_t)rabs * nd->c, out, (size_t)(rows * nd->c) * sizeof(float));
        bias_act(out, NULL, n, nd->c, nd->act);
        break;
    case RB_OP_DROPOUT:
        if (a->training && nd->rate > 0) {
            /* keyed by the layer's name, not its index, so the same layer draws the same
             * mask in a model cut out of this one (the training feature cache) */
            uint64_t name_key = 0xcbf29ce484222325ULL; /* FNV-1a */
            for (const char *c = nd->name; *c; c++)
                name_key = (name_key ^ (uint8_t)*c) * 0x100000001b3ULL;
            uint64_t key = rb_mix64(a->rng_key) ^ rb_mix64(name_key);
            dropout_forward(out, ws->mask[i] + (int64_t)rabs * nd->size, in, nd->rate, n,
                            nd->size, m->seed, key, a->sample_base + rabs);
        } else if (out != in) {
            memcpy(out, in, (size_t)(rows * nd->c) * sizeof(float));
        }
        break;
    default:
        break;
    }
    if (ws->prof && t == 0)
        ws->prof[i] += prof_now() - t0;
}
#undef FP

static void forward_part(job *j, int t)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const int T = j->T;
    const int r0 = (int)((int64_t)j->n * t / T), r1 = (int)((int64_t)j->n * (t + 1) / T);
    int first = 0;
    if (ws->K > 0) {
        /* micro-batched prefix: a few samples at a time through the high-resolution
         * layers, their activations in this thread's cache-sized arena */
        for (int c0 = r0; c0 < r1; c0 += ws->mb) {
            int cn = r1 - c0 < ws->mb ? r1 - c0 : ws->mb;
            for (int i = 0; i < ws->K; i++)
                if (ws->fuse[i] != FUSE_SKIP)
                    forward_node(j, t, i, c0, cn, 1);
        }
        first = ws->K;
    }
    for (int i = first; i < m->nnodes; i++) {
        if (ws->fuse[i] == FUSE_SKIP)
            continue;
        /* buffers are reused across layers with other row sizes: a thread may only
         * start a layer when every thread is done with the previous one */
        barrier(ws, T);
        forward_node(j, t, i, r0, r1 - r0, 0);
    }
}

int rb_model_forward(rb_model *m, rb_workspace *ws, const rb_forward_args *a, rb_error *err)
{
    if (ws->m != m)
        return rb_fail(err, NULL, "workspace belongs to another model");
    if (ws->generation != m->generation)
        return rb_fail(err, "create a new workspace after changing trainable layers",
                       "model %s: trainable layers changed since the workspace was made", m->name);
    if (a->n < 1 || a->n > ws->batch)
        return rb_fail(err, NULL, "forward of %d samples on a workspace for %d", a->n, ws->batch);
    if (a->training && !(ws->flags & RB_WS_TRAIN))
        return rb_fail(err, "create the workspace with RB_WS_TRAIN",
                       "training forward on an inference workspace");
    for (int i = 0; i < m->nnodes; i++)
        if (ws->fuse[i] == FUSE_CONV_BN)
            fold_bn(m, ws, i);
    job j = {.m = m, .ws = ws, .a = a, .n = a->n};
    run_job(ws, &j);
    ws->last_n = a->n;
    ws->last_training = a->training;
    ws->have_forward = 1;
    return 0;
}

/* ---- backward ------------------------------------------------------------------------ */

static void backward_part(job *j, int t)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const int T = j->T;
    const int r0 = (int)((int64_t)j->n * t / T), r1 = (int)((int64_t)j->n * (t + 1) / T);
    const int n = r1 - r0;
    float *scratch = t ? ws->tscratch[t] : ws->scratch;
    float *grads = t ? ws->tgrads[t] : m->grads;
    if (t)
        for (int k = 0; k < ws->nranges; k++)
            memset(grads + ws->ranges[k].offset, 0, (size_t)ws->ranges[k].count * sizeof(float));
    for (int i = m->nnodes - 1; i >= 0; i--) {
        if (!ws->bw[i])
            continue;
        barrier(ws, T);
        for (int z = ws->zstart[i]; z < ws->zstart[i + 1]; z++)
            memset(ws->zptr[z] + (int64_t)r0 * ws->zrow[z], 0,
                   (size_t)((int64_t)n * ws->zrow[z]) * sizeof(float));
        if (ws->fuse[i] == FUSE_SKIP)
            continue; /* computed inside the fused BatchNorm */
        const rb_node *nd = &m->nodes[i];
        const int64_t rows = (int64_t)n * nd->h * nd->w;
        if (ws->bnact[i] >= 0) {
            double t0 = ws->prof && t == 0 ? prof_now() : 0;
            bn_act_backward(m, ws, i, t, T, r0, n, grads);
            if (ws->prof && t == 0)
                ws->prof[m->nnodes + i] += prof_now() - t0;
            continue;
        }
        float *dy = ws->dact[i] + (int64_t)r0 * nd->size;
        if (i == m->output)
            axpy1(dy, j->dout + (int64_t)r0 * nd->size, rows * nd->c);
        const float *y = ws->act[i] + (int64_t)r0 * nd->size;
        int p = nd->ninputs ? ws->src[i] : -1;
        int64_t psz = p >= 0 ? m->nodes[p].size : 0;
        float *din = (p >= 0 && ws->bw[p]) ? ws->dact[p] + (int64_t)r0 * psz : NULL;
        const float *x = p >= 0 ? ws->act[p] + (int64_t)r0 * psz : NULL;
        int tr = nd->trainable;
        int skip_act = i == m->output && j->preact;
        double t0 = ws->prof && t == 0 ? prof_now() : 0;
        switch (nd->op) {
        case RB_OP_CONV2D:
        case RB_OP_DEPTHWISE:
        case RB_OP_DENSE: {
            if (nd->act != RB_ACT_LINEAR && !skip_act)
                act_backward_inplace(dy, y, rows, nd->c, nd->act);
            float *dw = tr ? grads + nd->woff[0] : NULL;
            float *db = tr && nd->use_bias ? grads + nd->woff[1] : NULL;
            const float *w = m->params + nd->woff[0];
            if (!din && !dw)
                break;
            if (nd->op == RB_OP_DENSE) {
                dense_backward(din, dw, db, dy, x, w, n, nd->in_c, nd->units);
            } else {
                conv2d_shape s = ws->fshape[i];
                s.n = n;
                if (nd->op == RB_OP_CONV2D)
                    conv2d_backward(din, dw, db, dy, x, w, &s, scratch);
                else
                    depthwise_backward(din, dw, db, dy, x, w, &s);
            }
            break;
        }
        case RB_OP_ZEROPAD:
            if (din) {
                pad_shape s = nd->ps;
                s.n = n;
                zeropad_backward(din, dy, &s);
            }
            break;
        case RB_OP_BATCHNORM: {
            int c = nd->c;
            const float *gamma = m->params + nd->woff[0];
            if (ws->bn_batch[i]) {
                double *part = T > 1 ? ws->tbn[t] : ws->bnbuf;
                batchnorm_backward_sums(part, part + c, dy, x, ws->bn_mean[i], ws->bn_invstd[i],
                                        rows, c);
                barrier(ws, T);
                double *sum = ws->bnbuf;
                if (t == 0) {
                    for (int u = 1; u < T; u++)
                        for (int k = 0; k < 2 * c; k++)
                            sum[k] = (u == 1 ? ws->tbn[0][k] : sum[k]) + ws->tbn[u][k];
                    /* this rank's sums into the gradients (the gradient allreduce adds
                     * the ranks); then, for sync BN, the global sums for din */
                    if (tr) {
                        float *dg = m->grads + nd->woff[0], *dbt = m->grads + nd->woff[1];
                        for (int k = 0; k < c; k++) {
                            dg[k] += (float)sum[c + k];
                            dbt[k] += (float)sum[k];
                        }
                    }
                    if (din && m->bn_reduce)
                        m->bn_reduce(sum, 2 * c, m->bn_reduce_ctx);
                }
                barrier(ws, T);
                if (din)
                    batchnorm_backward_train(din, NULL, NULL, dy, x, gamma, ws->bn_mean[i],
                                             ws->bn_invstd[i], sum, sum + c, ws->bn_count[i], rows,
                                             c);
            } else {
                float *dg = tr ? grads + nd->woff[0] : NULL;
                float *dbt = tr ? grads + nd->woff[1] : NULL;
                if (din || dg)
                    batchnorm_backward_infer(din, dg, dbt, dy, x, gamma, m->state + nd->woff[2],
                                             m->state + nd->woff[3], nd->eps, rows, c);
            }
            break;
        }
        case RB_OP_RELU:
            if (din) {
                if (nd->act == RB_ACT_RELU6)
                    relu6_backward(din, dy, y, rows * nd->c);
                else
                    relu_backward(din, dy, y, rows * nd->c);
            }
            break;
        case RB_OP_ACTIVATION:
        case RB_OP_SOFTMAX:
            if (!din)
                break;
            if (skip_act || nd->act == RB_ACT_LINEAR)
                axpy1(din, dy, rows * nd->c);
            else if (nd->act == RB_ACT_RELU)
                relu_backward(din, dy, y, rows * nd->c);
            else if (nd->act == RB_ACT_RELU6)
                relu6_backward(din, dy, y, rows * nd->c);
            else if (nd->act == RB_ACT_SIGMOID)
                sigmoid_backward(din, dy, y, rows * nd->c);
            else
                softmax_backward(din, dy, y, rows, nd->c);
            break;
        case RB_OP_ADD:
            for (int k = 0; k < nd->ninputs; k += 2) {
                int ia = nd->inputs[k], ib = k + 1 < nd->ninputs ? nd->inputs[k + 1] : -1;
                float *da = ws->bw[ia] ? ws->dact[ia] + (int64_t)r0 * m->nodes[ia].size : NULL;
                float *dbb = ib >= 0 && ws->bw[ib] ? ws->dact[ib] + (int64_t)r0 * m->nodes[ib].size
                                                   : NULL;
                add_backward(da, dbb, dy, rows * nd->c);
            }
            break;
        case RB_OP_CONCAT: {
            float *dins[RB_MAX_INPUTS];
            int cs[RB_MAX_INPUTS];
            for (int k = 0; k < nd->ninputs; k++) {
                int ik = nd->inputs[k];
                dins[k] = ws->bw[ik] ? ws->dact[ik] + (int64_t)r0 * m->nodes[ik].size : NULL;
                cs[k] = m->nodes[ik].c;
            }
            concat_backward(dins, dy, cs, nd->ninputs, rows);
            break;
        }
        case RB_OP_MAXPOOL:
            if (din) {
                conv2d_shape s = nd->cs;
                s.n = n;
                maxpool_backward(din, dy, ws->argmax[i] + (int64_t)r0 * nd->size, &s);
            }
            break;
        case RB_OP_AVGPOOL:
            if (din) {
                conv2d_shape s = nd->cs;
                s.n = n;
                avgpool_backward(din, dy, &s);
            }
            break;
        case RB_OP_GAP:
            if (din)
                gap_backward(din, dy, n, nd->in_h * nd->in_w, nd->c);
            break;
        case RB_OP_DROPOUT:
            if (din) {
                if (ws->last_training && nd->rate > 0)
                    dropout_backward(din, dy, ws->mask[i] + (int64_t)r0 * nd->size, nd->rate,
                                     rows * nd->c);
                else
                    axpy1(din, dy, rows * nd->c);
            }
            break;
        default:
            break; /* InputLayer; Flatten shares its input's gradient buffer */
        }
        if (ws->prof && t == 0)
            ws->prof[m->nnodes + i] += prof_now() - t0;
    }
}

static void run_part(job *j, int t)
{
    if (j->backward)
        backward_part(j, t);
    else
        forward_part(j, t);
}

int rb_model_backward(rb_model *m, rb_workspace *ws, const float *dout, int dout_is_preact,
                      rb_error *err)
{
    if (!(ws->flags & RB_WS_TRAIN))
        return rb_fail(err, "create the workspace with RB_WS_TRAIN", "backward on an inference workspace");
    if (!ws->have_forward)
        return rb_fail(err, NULL, "backward before forward");
    if (ws->generation != m->generation)
        return rb_fail(err, "create a new workspace after changing trainable layers",
                       "model %s: trainable layers changed since the workspace was made", m->name);
    job j = {.m = m, .ws = ws, .dout = dout, .preact = dout_is_preact, .backward = 1,
             .n = ws->last_n};
    run_job(ws, &j);
    /* weight gradients of the other threads */
    for (int t = 1; t < j.T; t++)
        for (int k = 0; k < ws->nranges; k++)
            axpy1(m->grads + ws->ranges[k].offset, ws->tgrads[t] + ws->ranges[k].offset,
                  ws->ranges[k].count);
    return 0;
}

void rb_workspace_profile_print(const rb_workspace *ws, FILE *f)
{
    if (!ws->prof) {
        fprintf(f, "profile: set RADBATCH_PROFILE=1 before creating the workspace\n");
        return;
    }
    const rb_model *m = ws->m;
    double by_op[2][RB_OP__COUNT] = {{0}}, total = 0;
    for (int i = 0; i < m->nnodes; i++)
        for (int d = 0; d < 2; d++) {
            by_op[d][m->nodes[i].op] += ws->prof[d * m->nnodes + i];
            total += ws->prof[d * m->nnodes + i];
        }
    fprintf(f, "profile by layer class (thread-0 CPU seconds forward / backward, share of %.3f s):\n",
            total);
    for (int o = 0; o < RB_OP__COUNT; o++)
        if (by_op[0][o] + by_op[1][o] > 0)
            fprintf(f, "  %-24s %9.4f %9.4f  %5.1f%%\n", rb_op_class((rb_op)o), by_op[0][o],
                    by_op[1][o], 100.0 * (by_op[0][o] + by_op[1][o]) / total);
    fprintf(f, "slowest layers:\n");
    for (int k = 0; k < 12; k++) {
        int best = -1;
        double bt = 0;
        for (int i = 0; i < 2 * m->nnodes; i++)
            if (ws->prof[i] > bt) {
                int seen = 0;
                (void)seen;
                bt = ws->prof[i];
                best = i;
            }
        if (best < 0)
            break;
        int node = best % m->nnodes;
        fprintf(f, "  %-28s %-10s %s %9.4f s\n", m->nodes[node].name, rb_op_class(m->nodes[node].op),
                best < m->nnodes ? "fwd" : "bwd", bt);
        ((double *)ws->prof)[best] = -ws->prof[best] - 1e-30; /* mark; restored below */
    }
    for (int i = 0; i < 2 * m->nnodes; i++)
        if (ws->prof[i] < 0)
            ((double *)ws->prof)[i] = -ws->prof[i] - 1e-30;
}
