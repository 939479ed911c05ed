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

#include "model.h"
#include "rb_rng.h"

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

void rb_workspace_free(rb_workspace *ws)
{
    if (!ws)
        return;
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
    int *ncons = NULL, *maxcons = NULL, *uf = NULL, *gid = NULL;
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
    /* gradient groups: Flatten shares its input's gradient */
    for (int i = 1; i < N && TRAIN; i++)
        if (m->nodes[i].op == RB_OP_FLATTEN && ws->bw[i])
            uf_union(uf, N + m->nodes[i].inputs[0], N + i);

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
        if (i == m->output || KEEP) {
            end = INF;
            if (KEEP)
                start = 0;
        }
        int r = uf_find(uf, i);
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
        if (!ws->bw[i])
            continue;
        const rb_node *n = &m->nodes[i];
        int start = i == m->output ? N : 2 * N - 1 - maxcons[i];
        int end = 2 * N - 1 - i;
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
        ws->act[i] = ws->arena + bufs[gid[uf_find(uf, i)]].off;
        if (TRAIN && ws->bw[i])
            ws->dact[i] = ws->arena + bufs[gid[uf_find(uf, N + i)]].off;
    }
    /* zeroing plan: each gradient group at its start */
    OOM(ws->zstart = calloc((size_t)N + 1, sizeof(int)));
    OOM(ws->zptr = calloc((size_t)N + 1, sizeof(float *)));
    OOM(ws->zlen = calloc((size_t)N + 1, sizeof(int64_t)));
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
            if (!ws->bw[i])
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
            if (!ws->bw[i])
                continue;
            int r = uf_find(uf, N + i);
            if (seen[r])
                continue;
            seen[r] = 1;
            int node = 2 * N - 1 - bufs[gid[r]].start;
            int slot = ws->zstart[node] + cnt[node]++;
            ws->zptr[slot] = ws->arena + bufs[gid[r]].off;
            ws->zlen[slot] = bufs[gid[r]].size;
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
    ws->scratch_floats = scratch;
    OOM(ws->scratch = aligned_alloc(64, (size_t)align16((int64_t)scratch + 16) * sizeof(float)));
    ws->bytes += (size_t)align16((int64_t)scratch + 16) * sizeof(float);
    OOM(ws->bnbuf = calloc((size_t)(2 * cmax + 1), sizeof(double)));
    free(ncons);
    free(maxcons);
    free(uf);
    free(gid);
    free(bufs);
    return ws;
oom:
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

/* ---- forward ------------------------------------------------------------------------- */

static void input_forward(float *out, const rb_node *n, const rb_forward_args *a)
{
    int64_t per = n->size, total = per * a->n;
    if (a->type == RB_INPUT_F32) {
        memcpy(out, a->input, (size_t)total * sizeof(float));
        return;
    }
    if (a->type == RB_INPUT_U8) {
        rescale_forward(out, (const uint8_t *)a->input, a->n, per, n->preprocess);
        return;
    }
    const float *in = (const float *)a->input;
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
        for (int s = 0; s < a->n; s++) {
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
    const int n = a->n;
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *nd = &m->nodes[i];
        if (ws->fuse[i] == FUSE_SKIP)
            continue;
        float *out = ws->act[i];
        const float *in = nd->ninputs ? ws->act[nd->inputs[0]] : NULL;
        const int64_t rows = (int64_t)n * nd->h * nd->w;
        switch (nd->op) {
        case RB_OP_INPUT:
            input_forward(out, nd, a);
            break;
        case RB_OP_CONV2D:
        case RB_OP_DEPTHWISE: {
            conv2d_shape s = nd->cs;
            s.n = n;
            const float *w = m->params + nd->woff[0];
            const float *b = nd->use_bias ? m->params + nd->woff[1] : NULL;
            rb_act act = nd->act;
            if (ws->fuse[i] == FUSE_CONV_BN) {
                fold_bn(m, ws, i);
                w = ws->fold_w[i];
                b = ws->fold_b[i];
                act = (rb_act)ws->fuse_act[i];
            }
            if (nd->op == RB_OP_CONV2D)
                conv2d_forward(out, in, w, NULL, &s, ws->scratch);
            else
                depthwise_forward(out, in, w, NULL, &s);
            if (i == m->output && ws->logits) {
                bias_act(out, b, rows, nd->c, RB_ACT_LINEAR);
                memcpy(ws->logits, out, (size_t)(rows * nd->c) * sizeof(float));
                b = NULL;
            }
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
            if (bn_uses_batch(m, nd, a->training)) {
                double *sum = ws->bnbuf, *sumsq = ws->bnbuf + c;
                batchnorm_stats(sum, sumsq, in, rows, c);
                double count = (double)rows;
                if (m->bn_reduce) {
                    ws->bnbuf[2 * c] = count;
                    m->bn_reduce(ws->bnbuf, 2 * c + 1, m->bn_reduce_ctx);
                    count = ws->bnbuf[2 * c];
                }
                ws->bn_count[i] = count;
                batchnorm_forward_train(out, ws->bn_mean[i], ws->bn_invstd[i], in, gamma, beta,
                                        sum, sumsq, count, nd->eps, rows, c);
                if (!a->no_stat_update)
                    batchnorm_update_moving(mm, mv, sum, sumsq, count, nd->momentum, c);
                ws->bn_batch[i] = 1;
            } else {
                batchnorm_forward_infer(out, in, gamma, beta, mm, mv, nd->eps, rows, c);
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
                memcpy(ws->logits, in, (size_t)(rows * nd->c) * sizeof(float));
            if (out != in)
                memcpy(out, in, (size_t)(rows * nd->c) * sizeof(float));
            bias_act(out, NULL, rows, nd->c, nd->act);
            break;
        case RB_OP_ADD:
            add_forward(out, in, ws->act[nd->inputs[1]], rows * nd->c);
            for (int k = 2; k < nd->ninputs; k++)
                add_forward(out, out, ws->act[nd->inputs[k]], rows * nd->c);
            break;
        case RB_OP_CONCAT: {
            const float *ins[RB_MAX_INPUTS];
            int cs[RB_MAX_INPUTS];
            for (int k = 0; k < nd->ninputs; k++) {
                ins[k] = ws->act[nd->inputs[k]];
                cs[k] = m->nodes[nd->inputs[k]].c;
            }
            concat_forward(out, ins, cs, nd->ninputs, rows);
            break;
        }
        case RB_OP_MAXPOOL: {
            conv2d_shape s = nd->cs;
            s.n = n;
            maxpool_forward(out, ws->argmax[i], in, &s);
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
                memcpy(ws->logits, out, (size_t)(rows * nd->c) * sizeof(float));
            bias_act(out, NULL, n, nd->c, nd->act);
            break;
        case RB_OP_DROPOUT:
            if (a->training && nd->rate > 0) {
                uint64_t key = rb_mix64(a->rng_key) ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ULL);
                dropout_forward(out, ws->mask[i], in, nd->rate, n, nd->size, m->seed, key,
                                a->sample_base);
            } else if (out != in) {
                memcpy(out, in, (size_t)(rows * nd->c) * sizeof(float));
            }
            break;
        default:
            break;
        }
    }
    ws->last_n = n;
    ws->last_training = a->training;
    ws->have_forward = 1;
    return 0;
}

/* ---- backward ------------------------------------------------------------------------ */

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
    const int n = ws->last_n;
    for (int i = m->nnodes - 1; i >= 0; i--) {
        if (!ws->bw[i])
            continue;
        for (int z = ws->zstart[i]; z < ws->zstart[i + 1]; z++)
            memset(ws->zptr[z], 0, (size_t)ws->zlen[z] * sizeof(float));
        const rb_node *nd = &m->nodes[i];
        const int64_t rows = (int64_t)n * nd->h * nd->w;
        float *dy = ws->dact[i];
        if (i == m->output)
            axpy1(dy, dout, rows * nd->c);
        const float *y = ws->act[i];
        int p = nd->ninputs ? nd->inputs[0] : -1;
        float *din = (p >= 0 && ws->bw[p]) ? ws->dact[p] : NULL;
        const float *x = p >= 0 ? ws->act[p] : NULL;
        int tr = nd->trainable;
        int skip_act = i == m->output && dout_is_preact;
        switch (nd->op) {
        case RB_OP_CONV2D:
        case RB_OP_DEPTHWISE:
        case RB_OP_DENSE: {
            if (nd->act != RB_ACT_LINEAR && !skip_act)
                act_backward_inplace(dy, y, rows, nd->c, nd->act);
            float *dw = tr ? m->grads + nd->woff[0] : NULL;
            float *db = tr && nd->use_bias ? m->grads + nd->woff[1] : NULL;
            const float *w = m->params + nd->woff[0];
            if (!din && !dw)
                break;
            if (nd->op == RB_OP_DENSE) {
                dense_backward(din, dw, db, dy, x, w, n, nd->in_c, nd->units);
            } else {
                conv2d_shape s = nd->cs;
                s.n = n;
                if (nd->op == RB_OP_CONV2D)
                    conv2d_backward(din, dw, db, dy, x, w, &s, ws->scratch);
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
            float *dg = tr ? m->grads + nd->woff[0] : NULL;
            float *dbt = tr ? m->grads + nd->woff[1] : NULL;
            if (ws->bn_batch[i]) {
                double *sdy = ws->bnbuf, *sdyx = ws->bnbuf + c;
                batchnorm_backward_sums(sdy, sdyx, dy, x, ws->bn_mean[i], ws->bn_invstd[i], rows, c);
                /* local sums into the gradients (the gradient allreduce adds the ranks) */
                if (dg)
                    for (int j = 0; j < c; j++) {
                        dg[j] += (float)sdyx[j];
                        dbt[j] += (float)sdy[j];
                    }
                if (din) {
                    if (m->bn_reduce)
                        m->bn_reduce(ws->bnbuf, 2 * c, m->bn_reduce_ctx);
                    batchnorm_backward_train(din, NULL, NULL, dy, x, gamma, ws->bn_mean[i],
                                             ws->bn_invstd[i], sdy, sdyx, ws->bn_count[i], rows,
                                             c);
                }
            } else {
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
            if (skip_act || nd->act == RB_ACT_LINEAR) {
                axpy1(din, dy, rows * nd->c);
            } else if (nd->act == RB_ACT_RELU) {
                relu_backward(din, dy, y, rows * nd->c);
            } else if (nd->act == RB_ACT_RELU6) {
                relu6_backward(din, dy, y, rows * nd->c);
            } else if (nd->act == RB_ACT_SIGMOID) {
                sigmoid_backward(din, dy, y, rows * nd->c);
            } else {
                softmax_backward(din, dy, y, rows, nd->c);
            }
            break;
        case RB_OP_ADD:
            for (int k = 0; k < nd->ninputs; k += 2) {
                float *da = ws->bw[nd->inputs[k]] ? ws->dact[nd->inputs[k]] : NULL;
                float *dbb = (k + 1 < nd->ninputs && ws->bw[nd->inputs[k + 1]])
                                 ? ws->dact[nd->inputs[k + 1]]
                                 : NULL;
                add_backward(da, dbb, dy, rows * nd->c);
            }
            break;
        case RB_OP_CONCAT: {
            float *dins[RB_MAX_INPUTS];
            int cs[RB_MAX_INPUTS];
            for (int k = 0; k < nd->ninputs; k++) {
                dins[k] = ws->bw[nd->inputs[k]] ? ws->dact[nd->inputs[k]] : NULL;
                cs[k] = m->nodes[nd->inputs[k]].c;
            }
            concat_backward(dins, dy, cs, nd->ninputs, rows);
            break;
        }
        case RB_OP_MAXPOOL:
            if (din) {
                conv2d_shape s = nd->cs;
                s.n = n;
                maxpool_backward(din, dy, ws->argmax[i], &s);
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
                    dropout_backward(din, dy, ws->mask[i], nd->rate, rows * nd->c);
                else
                    axpy1(din, dy, rows * nd->c);
            }
            break;
        default:
            break; /* InputLayer; Flatten shares its input's gradient buffer */
        }
    }
    return 0;
}
