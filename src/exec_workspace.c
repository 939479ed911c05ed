/* The workspace once planned (exec_plan.c): each thread's own buffers, teardown, the
 * accessors of model.h, and the per-layer profile. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_internal.h"

/* ---- per-thread buffers -------------------------------------------------------------- */

int exec_thread_alloc(rb_workspace *ws, int t)
{
    exec_thread *th = &ws->thr[t];
    const int64_t cmax = ws->cmax;
    th->scratch = aligned_alloc(64, (size_t)exec_align16((int64_t)ws->scratch_floats + 16) *
                                        sizeof(float));
    th->fz = malloc((size_t)(6 * cmax) * sizeof(float));
    th->bn = calloc((size_t)(2 * cmax + 1), sizeof(double));
    th->save = malloc((size_t)(2 * cmax) * sizeof(float));
    if (!th->scratch || !th->fz || !th->bn || !th->save)
        return -1;
    if (ws->K > 0) {
        th->micro = aligned_alloc(64, ws->micro_floats * sizeof(float));
        if (!th->micro)
            return -1;
        memset(th->micro, 0, ws->micro_floats * sizeof(float));
    }
    if (t > 0 && (ws->flags & RB_WS_TRAIN)) {
        const size_t n = (size_t)exec_align16(ws->m->nparams + 16);
        th->grads = aligned_alloc(64, n * sizeof(float));
        if (!th->grads)
            return -1;
        memset(th->grads, 0, n * sizeof(float));
    }
    return 0;
}

void exec_thread_free(rb_workspace *ws, int t)
{
    exec_thread *th = &ws->thr[t];
    free(th->scratch);
    free(th->micro);
    free(th->fz);
    free(th->bn);
    free(th->save);
    free(th->grads);
    memset(th, 0, sizeof *th);
}

/* ---- the workspace ------------------------------------------------------------------- */

void rb_workspace_free(rb_workspace *ws)
{
    if (!ws)
        return;
    exec_pool_stop(ws);
    exec_thread_free(ws, 0);
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
    free(ws->argmax);
    free(ws->mask);
    free(ws->bn_mean);
    free(ws->bn_invstd);
    free(ws->bn_count);
    free(ws->bn_batch);
    free(ws->bnbuf);
    free(ws->arena);
    free(ws->zstart);
    free(ws->zptr);
    free(ws->zlen);
    free(ws->zrow);
    free(ws->logits);
    free(ws->prof);
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

const float *rb_workspace_input_grad(const rb_workspace *ws)
{
    if (!(ws->flags & RB_WS_INPUT_GRAD) || !ws->have_forward)
        return NULL;
    return ws->dact[0];
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

/* ---- the per-layer profile (RADBATCH_PROFILE=1) ---------------------------------------- */

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

