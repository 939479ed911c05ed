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

void exec_backward_part(job *j, int t)
{
    rb_model *m = j->m;
    rb_workspace *ws = j->ws;
    const int T = j->T;
    int r0, r1;
    exec_part_rows(j->n, T, t, &r0, &r1);
    const int n = r1 - r0;
    float *scratch = ws->thr[t].scratch;
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
        const int64_t rows = (int64_t)n * nd->h * nd->w;
        if (ws->bnact[i] >= 0) {
            double t0 = ws->prof && t == 0 ? exec_prof_now() : 0;
            bn_act_backward(m, ws, i, t, T, r0, n, grads);
            if (ws->prof && t == 0)
                ws->prof[m->nnodes + i] += exec_prof_now() - t0;
            continue;
        }
        float *dy = ws->dact[i] + (int64_t)r0 * nd->size;
        if (i == m->output)
            exec_axpy1(dy, j->dout + (int64_t)r0 * nd->size, rows * nd->c);
        const float *y = ws->act[i] + (int64_t)r0 * nd->size;
        int p = nd->ninputs ? ws->src[i] : -1;
        int64_t psz = p >= 0 ? m->nodes[p].size : 0;
        float *din = (p >= 0 && ws->bw[p]) ? ws->dact[p] + (int64_t)r0 * psz : NULL;
        const float *x = p >= 0 ? ws->act[p] + (int64_t)r0 * psz : NULL;
        int tr = nd->trainable;
        int skip_act = i == m->output && j->preact;
        double t0 = ws->prof && t == 0 ? exec_prof_now() : 0;
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
                double *part = exec_bn_partial(ws, t, T);
                batchnorm_backward_sums(part, part + c, dy, x, ws->bn_mean[i], ws->bn_invstd[i],
                                        rows, c);
                exec_barrier(ws, T, t);
                double *sum = ws->bnbuf;
                if (t == 0) {
                    exec_bn_sum_threads(ws, T, 2 * c);
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
                exec_barrier(ws, T, t);
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
                exec_axpy1(din, dy, rows * nd->c);
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
                    exec_axpy1(din, dy, rows * nd->c);
            }
            break;
        default:
            break; /* InputLayer; Flatten shares its input's gradient buffer */
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
