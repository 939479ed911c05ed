/* The forward pass of the model executor: part t of a job runs every planned node on its
 * rows of the batch (exec_threads.c), through the micro-batched prefix first when the plan
 * has one (exec_plan.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "exec_internal.h"
#include "model_fused.h"
#include "rb_rng.h"

/* x (rows, c) += b, then activation, in place; b may be NULL */
static void bias_act(float *restrict x, const float *restrict b, int64_t rows, int c, rb_act act)
{
    if (act == RB_ACT_SOFTMAX || act == RB_ACT_SIGMOID) {
        if (b)
            for (int64_t r = 0; r < rows; r++)
                exec_axpy1(x + r * c, b, c);
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
    rb_fused_bias_act(x, b, rows, c, act);
}


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

/* ---- BatchNormalization + ReLU fused (training workspaces) ---------------------------- */

/* coefficients of channel j: mean, invstd from batch sums or moving statistics */
void exec_bn_coeffs(const rb_node *nd, const double *sum, double count, const float *mm,
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

/* Training BatchNorm i: the batch sums (per channel sum, sum of squares, count) of every
 * thread's rows, then of every rank's (m->bn_reduce), into ws->bnbuf; returns it. Thread 0
 * also records the count and updates the moving statistics. */
static const double *bn_batch_sums(rb_model *m, rb_workspace *ws, const rb_forward_args *a,
                                   int i, int t, int T, const float *in, int64_t rows)
{
    const rb_node *nd = &m->nodes[i];
    const int c = nd->c;
    double *part = exec_bn_partial(ws, t, T);
    batchnorm_stats(part, part + c, in, rows, c);
    part[2 * c] = (double)rows;
    exec_barrier(ws, T, t);
    double *sum = ws->bnbuf;
    if (t == 0) {
        exec_bn_sum_threads(ws, T, 2 * c + 1);
        if (m->bn_reduce)
            m->bn_reduce(sum, 2 * c + 1, m->bn_reduce_ctx);
        ws->bn_count[i] = sum[2 * c];
    }
    exec_barrier(ws, T, t);
    return sum;
}

/* thread 0, after the statistics are used: moving averages, and what backward reads */
static void bn_after_forward(rb_model *m, rb_workspace *ws, const rb_forward_args *a, int i,
                             const double *sum)
{
    const rb_node *nd = &m->nodes[i];
    const int c = nd->c;
    if (sum && !a->no_stat_update)
        batchnorm_update_moving(m->state + nd->woff[2], m->state + nd->woff[3], sum, sum + c,
                                sum[2 * c], nd->momentum, c);
    ws->bn_batch[i] = sum != NULL;
}

static void bn_act_forward(rb_model *m, rb_workspace *ws, const rb_forward_args *a, int i, int t,
                           int T, float *out, const float *in, int64_t rows)
{
    const rb_node *nd = &m->nodes[i];
    const int c = nd->c;
    const float *gamma = m->params + nd->woff[0], *beta = m->params + nd->woff[1];
    float *mm = m->state + nd->woff[2], *mv = m->state + nd->woff[3];
    float *fz = ws->thr[t].fz, *ca = fz, *cb = fz + c;
    float *mean = t ? fz + 2 * c : ws->bn_mean[i], *invstd = t ? fz + 3 * c : ws->bn_invstd[i];
    const double *sum = NULL;
    if (exec_bn_uses_batch(m, nd, a->training)) {
        sum = bn_batch_sums(m, ws, a, i, t, T, in, rows);
        exec_bn_coeffs(nd, sum, sum[2 * c], NULL, NULL, mean, invstd);
    } else {
        exec_bn_coeffs(nd, NULL, 0, mm, mv, mean, invstd);
    }
    if (t == 0)
        bn_after_forward(m, ws, a, i, sum);
    for (int j = 0; j < c; j++) {
        ca[j] = invstd[j] * gamma[j];
        cb[j] = beta[j] - mean[j] * ca[j];
    }
    rb_fused_bn_act_forward(out, in, ca, cb, rows, c, m->nodes[ws->bnact[i]].act);
}

/* Conv2D or DepthwiseConv2D i (folded with its BatchNorm and activation when planned so)
 * for rows [rabs, rabs + n) */
static void forward_conv(job *j, int t, int i, int rabs, int n, float *out, const float *in)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const rb_node *nd = &m->nodes[i];
    const int64_t rows = (int64_t)n * nd->h * nd->w;
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
            return;
        }
        if (nd->op == RB_OP_DEPTHWISE && i != m->output) {
            depthwise_forward(out, in, w, NULL, &s);
            rb_fused_bias_act(out, b, rows, nd->c, act);
            return;
        }
    }
    if (nd->op == RB_OP_CONV2D)
        conv2d_forward(out, in, w, NULL, &s, ws->thr[t].scratch);
    else
        depthwise_forward(out, in, w, NULL, &s);
    if (i == m->output && ws->logits) {
        bias_act(out, b, rows, nd->c, RB_ACT_LINEAR);
        memcpy(ws->logits + (int64_t)rabs * nd->c, out, (size_t)(rows * nd->c) * sizeof(float));
        b = NULL;
    }
    bias_act(out, b, rows, nd->c, act);
}

/* BatchNormalization i: batch statistics in training (summed over threads and ranks),
 * moving statistics otherwise; with a ReLU fused into it when planned so */
static void forward_batchnorm(job *j, int t, int i, float *out, const float *in, int64_t rows)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const rb_forward_args *a = j->a;
    const rb_node *nd = &m->nodes[i];
    const float *gamma = m->params + nd->woff[0], *beta = m->params + nd->woff[1];
    const float *mm = m->state + nd->woff[2], *mv = m->state + nd->woff[3];
    const int c = nd->c;
    if (ws->bnact[i] >= 0) {
        bn_act_forward(m, ws, a, i, t, j->T, out, in, rows);
        return;
    }
    const double *sum = NULL;
    if (exec_bn_uses_batch(m, nd, a->training)) {
        sum = bn_batch_sums(m, ws, a, i, t, j->T, in, rows);
        float *smean = t ? ws->thr[t].save : ws->bn_mean[i];
        float *sinv = t ? ws->thr[t].save + c : ws->bn_invstd[i];
        batchnorm_forward_train(out, smean, sinv, in, gamma, beta, sum, sum + c, sum[2 * c],
                                nd->eps, rows, c);
    } else {
        batchnorm_forward_infer(out, in, gamma, beta, mm, mv, nd->eps, rows, c);
    }
    if (t == 0)
        bn_after_forward(m, ws, a, i, sum);
}

/* pointer to row `rabs` of node x's output: the thread's micro-batch arena for nodes that
 * live there during the micro-batched prefix, else the workspace arena */
static inline float *fptr(rb_workspace *ws, int t, int x, int rabs, int micro)
{
    if (micro && ws->moff[x] >= 0)
        return ws->thr[t].micro + ws->moff[x];
    return ws->act[x] + (int64_t)rabs * ws->m->nodes[x].size;
}
#define FP(x) fptr(ws, t, (x), rabs, micro)

/* forward of node i for rows [rabs, rabs + n) on thread t */
static void forward_node(job *j, int t, int i, int rabs, int n, int micro)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const rb_forward_args *a = j->a;
    const rb_node *nd = &m->nodes[i];
    float *out = FP(i);
    const float *in = NULL;
    if (nd->ninputs) /* src: input 0, or a skipped ZeroPadding2D's input */
        in = FP(ws->src[i]);
    const int64_t rows = (int64_t)n * nd->h * nd->w;
    double t0 = ws->prof && t == 0 ? exec_prof_now() : 0;
    switch (nd->op) {
    case RB_OP_INPUT:
        input_forward(out, nd, a, rabs, n);
        break;
    case RB_OP_CONV2D:
    case RB_OP_DEPTHWISE:
        forward_conv(j, t, i, rabs, n, out, in);
        break;
    case RB_OP_ZEROPAD: {
        pad_shape s = nd->ps;
        s.n = n;
        zeropad_forward(out, in, &s);
        break;
    }
    case RB_OP_BATCHNORM:
        forward_batchnorm(j, t, i, out, in, rows);
        break;
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
        ws->prof[i] += exec_prof_now() - t0;
}
#undef FP

void exec_forward_part(job *j, int t)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const int T = j->T;
    int r0, r1;
    exec_part_rows(j->n, T, t, &r0, &r1);
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
        exec_barrier(ws, T, t);
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
    exec_run_job(ws, &j);
    ws->last_n = a->n;
    ws->last_training = a->training;
    ws->have_forward = 1;
    return 0;
}
