/* Workspace planning of the model executor, once per batch size (rb_workspace_create):
 *  1. bw[i]: backward runs through node i iff it has trainable weights or some input has
 *     bw. A frozen base therefore costs no backward work.
 *  2. Buffer groups (union-find): Flatten aliases its input; an elementwise activation
 *     after a single-consumer BN/Add/linear layer runs in place (its backward uses its
 *     output); Dropout aliases its input in inference-only workspaces; Conv/Depthwise ->
 *     BN (-> ReLU) whose BN always uses moving statistics and gets no backward is folded:
 *     the convolution runs with BN-scaled weights and writes the BN (ReLU) output directly.
 *     A ZeroPadding2D feeding only a convolution disappears into it; a trainable BN whose
 *     only reader is a ReLU runs both in one pass. The leading layers without backward
 *     whose outputs are large run a few samples at a time in a small per-thread arena.
 *  3. Lifetimes on a timeline: forward of node i at time i, backward of node i at time
 *     2N-1-i. An activation lives from its producer to its last reader (forward consumers,
 *     and in training the backward steps that read it: weight gradients read the layer
 *     input, activations read their output); an activation gradient lives from the
 *     backward of its last consumer (where it is zeroed) to its own node's backward.
 *  4. Greedy first-fit placement of all groups on one arena (largest first).
 * Forward and backward then only index precomputed pointers: no allocation. */
#include <stdlib.h>
#include <string.h>

#include "exec_internal.h"
#include "rb_union_find.h"

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


/* ---- planning ------------------------------------------------------------------------ */

/* What the planning steps share; freed when the workspace is made */
typedef struct plan {
    const rb_model *m;
    rb_workspace *ws;
    int N, train, keep, fuse; /* RB_WS_TRAIN, RB_WS_KEEP_ALL, and neither KEEP nor NO_FUSE */
    int *ncons, *maxcons;     /* per node: readers, last reader (-1: none) */
    int *extra_end;           /* per node: last time read by a convolution that absorbed a padding */
    int *extra_cons;          /* per node: that convolution when it runs backward */
    int64_t *uf;              /* buffer groups: [0, N) outputs, [N, 2N) output gradients */
    int *gid;                 /* group -> index in bufs */
    uint8_t *micro_ok;        /* group lives in the micro arenas */
    plan_buf *bufs;
    int ng;
} plan;

static void plan_free(plan *p)
{
    free(p->ncons);
    free(p->maxcons);
    free(p->extra_end);
    free(p->extra_cons);
    free(p->uf);
    free(p->gid);
    free(p->micro_ok);
    free(p->bufs);
}

#define OOM(p)                                                                              \
    do {                                                                                    \
        if (!(p))                                                                           \
            return -1;                                                                      \
    } while (0)

static int alloc_node_arrays(rb_workspace *ws, int N)
{
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
    OOM(ws->src = malloc((size_t)N * sizeof(int)));
    OOM(ws->fshape = calloc((size_t)N, sizeof(conv2d_shape)));
    OOM(ws->bnact = malloc((size_t)N * sizeof(int)));
    OOM(ws->moff = malloc((size_t)N * sizeof(int64_t)));
    for (int i = 0; i < N; i++) {
        const rb_node *n = &ws->m->nodes[i];
        ws->bnact[i] = -1;
        ws->src[i] = n->ninputs ? n->inputs[0] : -1;
        ws->fshape[i] = n->cs;
        ws->moff[i] = -1;
    }
    return 0;
}

static int plan_init(plan *p)
{
    const int N = p->N;
    OOM(p->ncons = calloc((size_t)N, sizeof(int)));
    OOM(p->maxcons = malloc((size_t)N * sizeof(int)));
    OOM(p->extra_end = malloc((size_t)N * sizeof(int)));
    OOM(p->extra_cons = malloc((size_t)N * sizeof(int)));
    OOM(p->uf = malloc((size_t)2 * N * sizeof(int64_t)));
    OOM(p->gid = malloc((size_t)2 * N * sizeof(int)));
    OOM(p->micro_ok = calloc((size_t)2 * N, 1));
    OOM(p->bufs = calloc((size_t)2 * N, sizeof *p->bufs));
    for (int i = 0; i < N; i++)
        p->maxcons[i] = p->extra_end[i] = p->extra_cons[i] = -1;
    for (int i = 0; i < 2 * N; i++)
        p->uf[i] = i, p->gid[i] = -1;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < p->m->nodes[i].ninputs; k++) {
            int q = p->m->nodes[i].inputs[k];
            p->ncons[q]++;
            p->maxcons[q] = i;
        }
    return 0;
}

/* 1. where backward runs */
static void plan_backward(plan *p)
{
    for (int i = 0; p->train && i < p->N; i++) {
        const rb_node *n = &p->m->nodes[i];
        int b = has_trainable(n) || (i == 0 && (p->ws->flags & RB_WS_INPUT_GRAD));
        for (int k = 0; k < n->ninputs; k++)
            b |= p->ws->bw[n->inputs[k]];
        p->ws->bw[i] = (uint8_t)b;
    }
}

/* 2a. Flatten, inference Dropout and single-reader elementwise activations share their
 * input's buffer */
static void plan_aliases(plan *p)
{
    const rb_model *m = p->m;
    for (int i = 1; i < p->N; i++) {
        const rb_node *n = &m->nodes[i];
        int q = n->inputs[0];
        const rb_node *pn = &m->nodes[q];
        if (n->op == RB_OP_FLATTEN || (n->op == RB_OP_DROPOUT && !p->train)) {
            rb_uf_union(p->uf, q, i);
            continue;
        }
        int elementwise = n->op == RB_OP_RELU ||
                          (n->op == RB_OP_ACTIVATION && n->act != RB_ACT_SOFTMAX);
        int owner = pn->op == RB_OP_BATCHNORM || pn->op == RB_OP_ADD ||
                    (is_weighted_op(pn->op) && pn->act == RB_ACT_LINEAR);
        if (!p->keep && elementwise && owner && p->ncons[q] == 1)
            rb_uf_union(p->uf, q, i);
    }
    /* gradient groups: Flatten shares its input's gradient */
    for (int i = 1; i < p->N && p->train; i++)
        if (m->nodes[i].op == RB_OP_FLATTEN && p->ws->bw[i])
            rb_uf_union(p->uf, p->N + m->nodes[i].inputs[0], p->N + i);
}

/* 2b. Conv/Depthwise -> BatchNorm (moving statistics, no backward) [-> ReLU]: one node */
static int plan_fold_conv_bn(plan *p)
{
    const rb_model *m = p->m;
    rb_workspace *ws = p->ws;
    for (int i = 0; i < p->N && p->fuse; i++) {
        const rb_node *n = &m->nodes[i];
        if ((n->op != RB_OP_CONV2D && n->op != RB_OP_DEPTHWISE) || n->act != RB_ACT_LINEAR ||
            p->ncons[i] != 1)
            continue;
        int b = p->maxcons[i];
        const rb_node *bn = &m->nodes[b];
        if (bn->op != RB_OP_BATCHNORM || bn->inputs[0] != i || ws->bw[b])
            continue;
        ws->fuse[i] = FUSE_CONV_BN;
        ws->fuse_bn[i] = b;
        ws->fuse[b] = FUSE_SKIP;
        ws->fuse_act[i] = RB_ACT_LINEAR;
        rb_uf_union(p->uf, b, i);
        if (p->ncons[b] == 1) {
            int r = p->maxcons[b];
            const rb_node *rn = &m->nodes[r];
            if ((rn->op == RB_OP_RELU ||
                 (rn->op == RB_OP_ACTIVATION &&
                  (rn->act == RB_ACT_RELU || rn->act == RB_ACT_RELU6))) &&
                rb_uf_find(p->uf, r) == rb_uf_find(p->uf, b)) {
                ws->fuse_act[i] = (int8_t)rn->act;
                ws->fuse[r] = FUSE_SKIP;
            }
        }
        int64_t wsz = n->wsize[0];
        OOM(ws->fold_w[i] = aligned_alloc(64, (size_t)exec_align16(wsz) * sizeof(float)));
        OOM(ws->fold_b[i] = aligned_alloc(64, (size_t)exec_align16(n->c) * sizeof(float)));
        ws->bytes += (size_t)(exec_align16(wsz) + exec_align16(n->c)) * sizeof(float);
    }
    return 0;
}

/* 2c. a ZeroPadding2D feeding only a convolution: the convolution reads (and in backward
 * writes the gradient of) the unpadded input, the padding being implicit zeros */
static void plan_absorb_padding(plan *p)
{
    const rb_model *m = p->m;
    rb_workspace *ws = p->ws;
    const int N = p->N;
    for (int i = 0; i < N && p->fuse; i++) {
        const rb_node *n = &m->nodes[i];
        if (n->op != RB_OP_DEPTHWISE && n->op != RB_OP_CONV2D)
            continue;
        int q = n->inputs[0];
        const rb_node *pn = &m->nodes[q];
        if (pn->op != RB_OP_ZEROPAD || p->ncons[q] != 1 || q == 0)
            continue;
        int src = pn->inputs[0];
        ws->fuse[q] = FUSE_SKIP;
        ws->src[i] = src;
        int end = i;
        if (p->train && ws->bw[i] && needs_in_bw(n))
            end = 2 * N - 1 - i;
        p->extra_end[src] = end > p->extra_end[src] ? end : p->extra_end[src];
        if (p->train && ws->bw[i])
            p->extra_cons[src] = i > p->extra_cons[src] ? i : p->extra_cons[src];
        conv2d_shape *fs = &ws->fshape[i];
        fs->h = pn->in_h;
        fs->w = pn->in_w;
        fs->pad_top += pn->pad_t;
        fs->pad_left += pn->pad_l;
        fs->pad_bottom += pn->pad_b;
        fs->pad_right += pn->pad_r;
    }
}

/* 2d. training: a trainable BatchNorm whose only consumer is an in-place ReLU/ReLU6 runs
 * both in one pass forward and backward (no BN output gradient buffer at all) */
static void plan_bn_relu(plan *p)
{
    const rb_model *m = p->m;
    rb_workspace *ws = p->ws;
    for (int b = 0; b < p->N && p->train && p->fuse; b++) {
        const rb_node *bn = &m->nodes[b];
        if (bn->op != RB_OP_BATCHNORM || !ws->bw[b] || !bn->trainable || p->ncons[b] != 1 ||
            ws->fuse[b] != FUSE_NONE)
            continue;
        int r = p->maxcons[b];
        const rb_node *rn = &m->nodes[r];
        int relu = rn->op == RB_OP_RELU ||
                   (rn->op == RB_OP_ACTIVATION && (rn->act == RB_ACT_RELU || rn->act == RB_ACT_RELU6));
        if (!relu || r == m->output || rb_uf_find(p->uf, r) != rb_uf_find(p->uf, b))
            continue;
        ws->bnact[b] = r;
        ws->fuse[r] = FUSE_SKIP;
    }
}

/* 2e. micro-batched prefix: the leading layers without backward whose outputs are large
 * run a few samples at a time, their activations in a small per-thread arena that stays in
 * cache (the early MobileNetV2 layers are memory-bound otherwise) */
static int plan_micro_prefix(plan *p)
{
    const rb_model *m = p->m;
    rb_workspace *ws = p->ws;
    const int N = p->N;
    if (!p->fuse || ws->batch <= 1)
        return 0;
    int lead = 0;
    while (lead < N && !ws->bw[lead] && lead != m->output)
        lead++;
    int K = 0;
    int64_t big = 0;
    for (int i = 0; i < lead; i++)
        if (m->nodes[i].size >= 20000) /* 80 KB per sample and more */
            K = i + 1;
    if (K <= 1)
        return 0;
    for (int i = 0; i < K; i++)
        big = m->nodes[i].size > big ? m->nodes[i].size : big;
    for (int i = 0; i < N; i++)
        p->micro_ok[rb_uf_find(p->uf, i)] = 1;
    for (int i = 0; i < N; i++)
        if (i >= K || p->maxcons[i] >= K || p->extra_end[i] >= K || i == m->output)
            p->micro_ok[rb_uf_find(p->uf, i)] = 0;
    ws->K = K;
    ws->mb = (int)((1 << 19) / (big > 0 ? big : 1));
    ws->mb = ws->mb < 1 ? 1 : ws->mb;

    plan_buf *mbufs = calloc((size_t)N, sizeof *mbufs);
    int *mg = malloc((size_t)N * sizeof(int));
    if (!mbufs || !mg) {
        free(mbufs);
        free(mg);
        return -1;
    }
    int nm = 0;
    for (int i = 0; i < N; i++)
        mg[i] = -1;
    for (int i = 0; i < K; i++) {
        int r = rb_uf_find(p->uf, i);
        if (!p->micro_ok[r])
            continue;
        int end = p->maxcons[i] > i ? p->maxcons[i] : i;
        end = p->extra_end[i] > end ? p->extra_end[i] : end;
        if (mg[r] < 0) {
            mg[r] = nm++;
            mbufs[mg[r]].start = i;
            mbufs[mg[r]].end = end;
        }
        plan_buf *b = &mbufs[mg[r]];
        b->start = i < b->start ? i : b->start;
        b->end = end > b->end ? end : b->end;
        int64_t sz = exec_align16(m->nodes[i].size * ws->mb);
        b->size = sz > b->size ? sz : b->size;
    }
    int64_t mt = place_buffers(mbufs, nm);
    for (int i = 0; i < K && mt >= 0; i++) {
        int r = rb_uf_find(p->uf, i);
        if (p->micro_ok[r])
            ws->moff[i] = mbufs[mg[r]].off;
    }
    free(mbufs);
    free(mg);
    if (mt < 0)
        return -1;
    ws->micro_floats = (size_t)mt + 16;
    return 0;
}

/* widen buffer group r to [start, end] and size floats */
static void group_add(plan *p, int r, int start, int end, int64_t size)
{
    if (p->gid[r] < 0) {
        p->gid[r] = p->ng++;
        p->bufs[p->gid[r]].start = start;
        p->bufs[p->gid[r]].end = end;
    }
    plan_buf *b = &p->bufs[p->gid[r]];
    b->start = start < b->start ? start : b->start;
    b->end = end > b->end ? end : b->end;
    b->size = size > b->size ? size : b->size;
}

/* node i has its own output gradient buffer */
static int has_grad_buffer(const plan *p, int i)
{
    const rb_workspace *ws = p->ws;
    return p->train && ws->bw[i] && ws->bnact[i] < 0 &&
           !(ws->fuse[i] == FUSE_SKIP && p->m->nodes[i].op == RB_OP_ZEROPAD);
}

/* 3. lifetimes of the output and output-gradient groups */
static void plan_lifetimes(plan *p)
{
    const rb_model *m = p->m;
    rb_workspace *ws = p->ws;
    const int N = p->N, INF = 2 * N + 1;
    for (int i = 0; i < N; i++) {
        const rb_node *n = &m->nodes[i];
        int start = i, end = i;
        for (int j = i + 1; j < N; j++)
            for (int k = 0; k < m->nodes[j].ninputs; k++)
                if (m->nodes[j].inputs[k] == i) {
                    end = j > end ? j : end;
                    if (p->train && ws->bw[j] && k == 0 && needs_in_bw(&m->nodes[j])) {
                        int t = 2 * N - 1 - j;
                        end = t > end ? t : end;
                    }
                }
        if (p->train && ws->bw[i] && needs_out_bw(n)) {
            int t = 2 * N - 1 - i;
            end = t > end ? t : end;
        }
        end = p->extra_end[i] > end ? p->extra_end[i] : end;
        if (p->train && ws->bnact[i] >= 0) { /* the fused BN's backward reads y */
            int t = 2 * N - 1 - i;
            end = t > end ? t : end;
        }
        if (i == m->output || p->keep) {
            end = INF;
            if (p->keep)
                start = 0;
        }
        int r = rb_uf_find(p->uf, i);
        if (p->micro_ok[r])
            continue; /* lives in the micro arenas */
        group_add(p, r, start, end, exec_align16(n->size * ws->batch));
    }
    for (int i = 0; i < N; i++) {
        if (!has_grad_buffer(p, i))
            continue;
        const rb_node *n = &m->nodes[i];
        int lastw = p->maxcons[i] > p->extra_cons[i] ? p->maxcons[i] : p->extra_cons[i];
        int start = i == m->output ? N : 2 * N - 1 - lastw;
        int end = 2 * N - 1 - i;
        if (ws->fuse[i] == FUSE_SKIP && n->ninputs && ws->bnact[n->inputs[0]] == i)
            end = 2 * N - 1 - n->inputs[0]; /* read by the fused BN's backward */
        group_add(p, rb_uf_find(p->uf, N + i), start, end, exec_align16(n->size * ws->batch));
    }
}

/* 4. placement on the arena, and the nodes' pointers into it */
static int plan_place(plan *p)
{
    rb_workspace *ws = p->ws;
    int64_t total = place_buffers(p->bufs, p->ng);
    if (total < 0)
        return -1;
    ws->arena_floats = (size_t)(total ? total : 16);
    OOM(ws->arena = aligned_alloc(64, ws->arena_floats * sizeof(float)));
    memset(ws->arena, 0, ws->arena_floats * sizeof(float));
    ws->bytes += ws->arena_floats * sizeof(float);
    for (int i = 0; i < p->N; i++) {
        int r = rb_uf_find(p->uf, i);
        ws->act[i] = p->micro_ok[r] ? NULL : ws->arena + p->bufs[p->gid[r]].off;
        if (has_grad_buffer(p, i))
            ws->dact[i] = ws->arena + p->bufs[p->gid[rb_uf_find(p->uf, p->N + i)]].off;
    }
    return 0;
}

/* zeroing plan: each gradient group is zeroed before the backward of the node where its
 * lifetime starts; counted per node, then filled */
static int plan_zeroing(plan *p)
{
    rb_workspace *ws = p->ws;
    const int N = p->N;
    OOM(ws->zstart = calloc((size_t)N + 1, sizeof(int)));
    OOM(ws->zptr = calloc((size_t)N + 1, sizeof(float *)));
    OOM(ws->zlen = calloc((size_t)N + 1, sizeof(int64_t)));
    OOM(ws->zrow = calloc((size_t)N + 1, sizeof(int64_t)));
    int *cnt = calloc((size_t)N + 1, sizeof(int));
    uint8_t *seen = calloc((size_t)2 * N, 1);
    if (!cnt || !seen) {
        free(cnt);
        free(seen);
        return -1;
    }
    for (int pass = 0; pass < 2; pass++) {
        memset(cnt, 0, (size_t)(N + 1) * sizeof(int));
        memset(seen, 0, (size_t)2 * N);
        for (int i = 0; i < N; i++) {
            if (!has_grad_buffer(p, i))
                continue;
            int r = rb_uf_find(p->uf, N + i);
            if (seen[r])
                continue;
            seen[r] = 1;
            const plan_buf *b = &p->bufs[p->gid[r]];
            int node = 2 * N - 1 - b->start;
            if (pass == 0) {
                cnt[node]++;
                continue;
            }
            int slot = ws->zstart[node] + cnt[node]++;
            ws->zptr[slot] = ws->arena + b->off;
            ws->zlen[slot] = b->size;
            ws->zrow[slot] = p->m->nodes[i].size;
        }
        if (pass == 0)
            for (int i = 0; i < N; i++)
                ws->zstart[i + 1] = ws->zstart[i] + cnt[i];
    }
    free(cnt);
    free(seen);
    return 0;
}

/* per-node extras (scratch size, BN statistics, pooling winners, dropout masks, logits,
 * profile) and thread 0's buffers */
static int plan_extras(plan *p)
{
    const rb_model *m = p->m;
    rb_workspace *ws = p->ws;
    const int batch = ws->batch;
    size_t scratch = 0;
    int cmax = 1;
    for (int i = 0; i < p->N; i++) {
        const rb_node *n = &m->nodes[i];
        if (n->op == RB_OP_CONV2D) {
            conv2d_shape s = n->cs;
            s.n = batch;
            size_t f = conv2d_scratch_floats(&s);
            scratch = f > scratch ? f : scratch;
        }
        if (n->op == RB_OP_BATCHNORM) {
            cmax = n->c > cmax ? n->c : cmax;
            if (p->train) {
                OOM(ws->bn_mean[i] = malloc((size_t)n->c * sizeof(float)));
                OOM(ws->bn_invstd[i] = malloc((size_t)n->c * sizeof(float)));
            }
        }
        if (n->op == RB_OP_MAXPOOL) {
            OOM(ws->argmax[i] = malloc((size_t)(n->size * batch) * sizeof(int32_t)));
            ws->bytes += (size_t)(n->size * batch) * sizeof(int32_t);
        }
        if (n->op == RB_OP_DROPOUT && p->train) {
            OOM(ws->mask[i] = malloc((size_t)(n->size * batch)));
            ws->bytes += (size_t)(n->size * batch);
        }
    }
    const rb_node *o = &m->nodes[m->output];
    if (o->act == RB_ACT_SOFTMAX || o->act == RB_ACT_SIGMOID)
        OOM(ws->logits = malloc((size_t)(o->size * batch) * sizeof(float)));
    const char *pe = getenv("RADBATCH_PROFILE");
    if (pe && *pe && strcmp(pe, "0"))
        OOM(ws->prof = calloc((size_t)2 * p->N, sizeof(double)));
    ws->scratch_floats = scratch;
    ws->cmax = cmax;
    OOM(ws->bnbuf = calloc((size_t)(2 * cmax + 1), sizeof(double)));
    if (exec_thread_alloc(ws, 0))
        return -1;
    ws->bytes += (size_t)exec_align16((int64_t)scratch + 16) * sizeof(float) +
                 ws->micro_floats * sizeof(float);
    if (p->train) {
        ws->nranges = rb_model_ranges(m, RB_RANGES_TRAINABLE, NULL, 0);
        OOM(ws->ranges = calloc((size_t)(ws->nranges + 1), sizeof(optim_range)));
        rb_model_ranges(m, RB_RANGES_TRAINABLE, ws->ranges, ws->nranges);
    }
    return 0;
}
#undef OOM

rb_workspace *rb_workspace_create(const rb_model *m, int batch, int flags, rb_error *err)
{
    if (batch < 1) {
        rb_fail(err, NULL, "workspace batch size %d", batch);
        return NULL;
    }
    rb_workspace *ws = calloc(1, sizeof *ws);
    plan p = {.m = m, .ws = ws, .N = m->nnodes};
    if (!ws)
        goto oom;
    ws->m = m;
    ws->batch = batch;
    if (flags & RB_WS_INPUT_GRAD)
        flags |= RB_WS_TRAIN;
    ws->flags = flags;
    ws->nn = m->nnodes;
    ws->generation = m->generation;
    ws->nthreads = 1;
    p.train = (flags & RB_WS_TRAIN) != 0;
    p.keep = (flags & RB_WS_KEEP_ALL) != 0;
    p.fuse = !p.keep && !(flags & RB_WS_NO_FUSE);
    if (alloc_node_arrays(ws, p.N) || plan_init(&p))
        goto oom;
    plan_backward(&p);
    plan_aliases(&p);
    if (plan_fold_conv_bn(&p))
        goto oom;
    plan_absorb_padding(&p);
    plan_bn_relu(&p);
    if (plan_micro_prefix(&p))
        goto oom;
    plan_lifetimes(&p);
    if (plan_place(&p) || plan_zeroing(&p) || plan_extras(&p))
        goto oom;
    plan_free(&p);
    return ws;
oom:
    plan_free(&p);
    rb_workspace_free(ws);
    rb_fail(err, "use a smaller batch or input size", "out of memory for a workspace of batch %d",
            batch);
    return NULL;
}
