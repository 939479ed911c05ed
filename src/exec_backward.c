/* The backward pass of the model executor: part t of a job walks the planned nodes in
 * reverse on its rows of the batch, zeroing each gradient group where its lifetime starts
 * (exec_plan.c); weight gradients of threads > 0 go to private buffers added to m->grads
 * at the end. */
#include <string.h>

#include "exec_internal.h"
#include "model_fused.h"

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
    float *fz = ws->thr[t].fz, *A = fz, *B = fz + c, *C = fz + 2 * c;
    const float *mean, *invstd;
    if (ws->bn_batch[i]) {
        mean = ws->bn_mean[i];
        invstd = ws->bn_invstd[i];
    } else {
        float *mw = fz + 3 * c, *iw = fz + 4 * c;
        exec_bn_coeffs(nd, NULL, 0, m->state + nd->woff[2], m->state + nd->woff[3], mw, iw);
        mean = mw;
        invstd = iw;
    }
    double *part = exec_bn_partial(ws, t, T);
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
    exec_barrier(ws, T, t);
    double *sum = ws->bnbuf;
    if (t == 0) {
        exec_bn_sum_threads(ws, T, 2 * c);
        float *dg = m->grads + nd->woff[0], *dbt = m->grads + nd->woff[1];
        for (int j = 0; j < c; j++) {
            dg[j] += (float)sum[c + j];
            dbt[j] += (float)sum[j];
        }
        if (din && m->bn_reduce)
            m->bn_reduce(sum, 2 * c, m->bn_reduce_ctx);
    }
    exec_barrier(ws, T, t);
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

/* What the backward of one node on one thread's rows works on */
typedef struct node_rows {
    rb_model *m;
    rb_workspace *ws;
    int t, T, i, r0, n;
    int64_t rows;     /* n * h * w of the node's output */
    float *dy;        /* gradient of its output (this thread's rows) */
    const float *y;   /* its output */
    const float *x;   /* its input 0 (NULL for the InputLayer) */
    float *din;       /* gradient of input 0, or NULL when no backward runs there */
    float *grads;     /* this thread's weight gradients */
    int skip_act;     /* output node whose dout is already w.r.t. the pre-activation */
} node_rows;

/* gradient of input k of the node (NULL when no backward runs there) */
static float *din_of(const node_rows *r, int k)
{
    const rb_node *nd = &r->m->nodes[r->i];
    int ik = nd->inputs[k];
    return r->ws->bw[ik] ? r->ws->dact[ik] + (int64_t)r->r0 * r->m->nodes[ik].size : NULL;
}

/* Conv2D, DepthwiseConv2D, Dense: the fused activation, then weights and input */
static void backward_weighted(const node_rows *r)
{
    const rb_node *nd = &r->m->nodes[r->i];
    if (nd->act != RB_ACT_LINEAR && !r->skip_act)
        act_backward_inplace(r->dy, r->y, r->rows, nd->c, nd->act);
    float *dw = nd->trainable ? r->grads + nd->woff[0] : NULL;
    float *db = nd->trainable && nd->use_bias ? r->grads + nd->woff[1] : NULL;
    const float *w = r->m->params + nd->woff[0];
    if (!r->din && !dw)
        return;
    if (nd->op == RB_OP_DENSE) {
        dense_backward(r->din, dw, db, r->dy, r->x, w, r->n, nd->in_c, nd->units);
        return;
    }
    conv2d_shape s = r->ws->fshape[r->i];
    s.n = r->n;
    if (nd->op == RB_OP_CONV2D)
        conv2d_backward(r->din, dw, db, r->dy, r->x, w, &s, r->ws->thr[r->t].scratch);
    else
        depthwise_backward(r->din, dw, db, r->dy, r->x, w, &s);
}

/* BatchNormalization: with batch statistics the sums over every thread's (and, for sync
 * BN, every rank's) rows; with moving statistics per thread */
static void backward_batchnorm(const node_rows *r)
{
    rb_model *m = r->m;
    rb_workspace *ws = r->ws;
    const int i = r->i, t = r->t, T = r->T;
    const rb_node *nd = &m->nodes[i];
    const int c = nd->c;
    const float *gamma = m->params + nd->woff[0];
    if (!ws->bn_batch[i]) {
        float *dg = nd->trainable ? r->grads + nd->woff[0] : NULL;
        float *dbt = nd->trainable ? r->grads + nd->woff[1] : NULL;
        if (r->din || dg)
            batchnorm_backward_infer(r->din, dg, dbt, r->dy, r->x, gamma, m->state + nd->woff[2],
                                     m->state + nd->woff[3], nd->eps, r->rows, c);
        return;
    }
    double *part = exec_bn_partial(ws, t, T);
    batchnorm_backward_sums(part, part + c, r->dy, r->x, ws->bn_mean[i], ws->bn_invstd[i],
                            r->rows, c);
    exec_barrier(ws, T, t);
    double *sum = ws->bnbuf;
    if (t == 0) {
        exec_bn_sum_threads(ws, T, 2 * c);
        /* this rank's sums into the gradients (the gradient allreduce adds the ranks);
         * then, for sync BN, the global sums for din */
        if (nd->trainable) {
            float *dg = m->grads + nd->woff[0], *dbt = m->grads + nd->woff[1];
            for (int k = 0; k < c; k++) {
                dg[k] += (float)sum[c + k];
                dbt[k] += (float)sum[k];
            }
        }
        if (r->din && m->bn_reduce)
            m->bn_reduce(sum, 2 * c, m->bn_reduce_ctx);
    }
    exec_barrier(ws, T, t);
    if (r->din)
        batchnorm_backward_train(r->din, NULL, NULL, r->dy, r->x, gamma, ws->bn_mean[i],
                                 ws->bn_invstd[i], sum, sum + c, ws->bn_count[i], r->rows, c);
}

/* an activation layer: din += dy * act'(y) */
static void backward_activation(const node_rows *r)
{
    const rb_node *nd = &r->m->nodes[r->i];
    const int64_t len = r->rows * nd->c;
    if (r->skip_act || nd->act == RB_ACT_LINEAR)
        exec_axpy1(r->din, r->dy, len);
    else if (nd->act == RB_ACT_RELU)
        relu_backward(r->din, r->dy, r->y, len);
    else if (nd->act == RB_ACT_RELU6)
        relu6_backward(r->din, r->dy, r->y, len);
    else if (nd->act == RB_ACT_SIGMOID)
        sigmoid_backward(r->din, r->dy, r->y, len);
    else
        softmax_backward(r->din, r->dy, r->y, r->rows, nd->c);
}

static void backward_node(const node_rows *r)
{
    const rb_node *nd = &r->m->nodes[r->i];
    const int64_t len = r->rows * nd->c;
    switch (nd->op) {
    case RB_OP_CONV2D:
    case RB_OP_DEPTHWISE:
    case RB_OP_DENSE:
        backward_weighted(r);
        return;
    case RB_OP_BATCHNORM:
        backward_batchnorm(r);
        return;
    case RB_OP_ADD:
        for (int k = 0; k < nd->ninputs; k += 2)
            add_backward(din_of(r, k), k + 1 < nd->ninputs ? din_of(r, k + 1) : NULL, r->dy,
                         len);
        return;
    case RB_OP_CONCAT: {
        float *dins[RB_MAX_INPUTS];
        int cs[RB_MAX_INPUTS];
        for (int k = 0; k < nd->ninputs; k++) {
            dins[k] = din_of(r, k);
            cs[k] = r->m->nodes[nd->inputs[k]].c;
        }
        concat_backward(dins, r->dy, cs, nd->ninputs, r->rows);
        return;
    }
    default:
        break;
    }
    if (!r->din)
        return; /* the rest only propagate to their input */
    switch (nd->op) {
    case RB_OP_ZEROPAD: {
        pad_shape s = nd->ps;
        s.n = r->n;
        zeropad_backward(r->din, r->dy, &s);
        break;
    }
    case RB_OP_RELU:
        if (nd->act == RB_ACT_RELU6)
            relu6_backward(r->din, r->dy, r->y, len);
        else
            relu_backward(r->din, r->dy, r->y, len);
        break;
    case RB_OP_ACTIVATION:
    case RB_OP_SOFTMAX:
        backward_activation(r);
        break;
    case RB_OP_MAXPOOL: {
        conv2d_shape s = nd->cs;
        s.n = r->n;
        maxpool_backward(r->din, r->dy, r->ws->argmax[r->i] + (int64_t)r->r0 * nd->size, &s);
        break;
    }
    case RB_OP_AVGPOOL: {
        conv2d_shape s = nd->cs;
        s.n = r->n;
        avgpool_backward(r->din, r->dy, &s);
        break;
    }
    case RB_OP_GAP:
        gap_backward(r->din, r->dy, r->n, nd->in_h * nd->in_w, nd->c);
        break;
    case RB_OP_DROPOUT:
        if (r->ws->last_training && nd->rate > 0)
            dropout_backward(r->din, r->dy, r->ws->mask[r->i] + (int64_t)r->r0 * nd->size,
                             nd->rate, len);
        else
            exec_axpy1(r->din, r->dy, len);
        break;
    default:
        break; /* InputLayer; Flatten shares its input's gradient buffer */
    }
}

void exec_backward_part(job *j, int t)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const int T = j->T;
    int r0, r1;
    exec_part_rows(j->n, T, t, &r0, &r1);
    const int n = r1 - r0;
    float *grads = t ? ws->thr[t].grads : m->grads;
    if (t)
        for (int k = 0; k < ws->nranges; k++)
            memset(grads + ws->ranges[k].offset, 0, (size_t)ws->ranges[k].count * sizeof(float));
    for (int i = m->nnodes - 1; i >= 0; i--) {
        if (!ws->bw[i])
            continue;
        exec_barrier(ws, T, t);
        for (int z = ws->zstart[i]; z < ws->zstart[i + 1]; z++)
            memset(ws->zptr[z] + (int64_t)r0 * ws->zrow[z], 0,
                   (size_t)((int64_t)n * ws->zrow[z]) * sizeof(float));
        if (ws->fuse[i] == FUSE_SKIP)
            continue; /* computed inside the fused BatchNorm */
        const rb_node *nd = &m->nodes[i];
        double t0 = ws->prof && t == 0 ? exec_prof_now() : 0;
        if (ws->bnact[i] >= 0) {
            bn_act_backward(m, ws, i, t, T, r0, n, grads);
        } else {
            node_rows r = {.m = m, .ws = ws, .t = t, .T = T, .i = i, .r0 = r0, .n = n,
                           .rows = (int64_t)n * nd->h * nd->w, .grads = grads,
                           .skip_act = i == m->output && j->preact};
            r.dy = ws->dact[i] + (int64_t)r0 * nd->size;
            r.y = ws->act[i] + (int64_t)r0 * nd->size;
            if (i == m->output)
                exec_axpy1(r.dy, j->dout + (int64_t)r0 * nd->size, r.rows * nd->c);
            int p = nd->ninputs ? ws->src[i] : -1;
            if (p >= 0) {
                int64_t psz = m->nodes[p].size;
                r.x = ws->act[p] + (int64_t)r0 * psz;
                r.din = ws->bw[p] ? ws->dact[p] + (int64_t)r0 * psz : NULL;
            }
            backward_node(&r);
        }
        if (ws->prof && t == 0)
            ws->prof[m->nnodes + i] += exec_prof_now() - t0;
    }
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
    exec_run_job(ws, &j);
    /* weight gradients of the other threads */
    for (int t = 1; t < j.T; t++)
        for (int k = 0; k < ws->nranges; k++)
            exec_axpy1(m->grads + ws->ranges[k].offset, ws->thr[t].grads + ws->ranges[k].offset,
                  ws->ranges[k].count);
    return 0;
}
