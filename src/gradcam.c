/* Grad-CAM: the model cut at the explained layer, the base's forward giving A, the head's
 * forward and input-gradient backward giving dScore/dA (gradcam.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcam.h"

struct rb_gradcam {
    rb_model *base, *head;
    rb_workspace *wb, *wh;
    int layer, batch;
    int h, w, c;  /* grid of A */
    int H, W;     /* model input */
    int nout;     /* model output size */
    float *dout;  /* batch x nout */
    float *coarse; /* batch x h x w */
    float *grad;  /* batch x h x w x c: copy of dScore/dA */
    double *alpha; /* c */
    int last_n;
};

int rb_gradcam_default_layer(const rb_model *m, rb_error *err)
{
    for (int i = 1; i < m->nnodes; i++) {
        const rb_node *nd = &m->nodes[i];
        if ((nd->op == RB_OP_GAP || nd->op == RB_OP_FLATTEN) && nd->ninputs == 1 &&
            m->nodes[nd->inputs[0]].rank == 3 && nd->inputs[0] > 0)
            return nd->inputs[0];
    }
    int last = -1;
    for (int i = 1; i < m->nnodes; i++)
        if (m->nodes[i].rank == 3 && i != m->output)
            last = i;
    if (last < 0)
        rb_fail(err, "Grad-CAM explains a convolutional layer",
                "model %s has no layer with a 4-D output to explain", m->name);
    return last;
}

void rb_gradcam_free(rb_gradcam *g)
{
    if (!g)
        return;
    rb_workspace_free(g->wb);
    rb_workspace_free(g->wh);
    rb_model_free(g->base);
    rb_model_free(g->head);
    free(g->dout);
    free(g->coarse);
    free(g->grad);
    free(g->alpha);
    free(g);
}

rb_gradcam *rb_gradcam_create(const rb_model *m, int layer, int batch, rb_error *err)
{
    if (layer < 0 && (layer = rb_gradcam_default_layer(m, err)) < 0)
        return NULL;
    if (layer <= 0 || layer >= m->output || m->nodes[layer].rank != 3) {
        rb_fail(err, NULL, "model %s: node %d is not a 4-D layer before the output", m->name,
                layer);
        return NULL;
    }
    /* the head must read A only (no skip connection around it) */
    for (int j = layer + 1; j < m->nnodes; j++)
        for (int q = 0; q < m->nodes[j].ninputs; q++)
            if (m->nodes[j].inputs[q] < layer) {
                rb_fail(err, "explain a layer that every later layer depends on through",
                        "model %s: layer %s reads %s, which lies before the explained layer %s",
                        m->name, m->nodes[j].name, m->nodes[m->nodes[j].inputs[q]].name,
                        m->nodes[layer].name);
                return NULL;
            }
    rb_gradcam *g = calloc(1, sizeof *g);
    if (!g) {
        rb_fail(err, NULL, "out of memory");
        return NULL;
    }
    const rb_node *a = &m->nodes[layer];
    g->layer = layer;
    g->batch = batch;
    g->h = a->h;
    g->w = a->w;
    g->c = a->c;
    g->H = m->nodes[0].h;
    g->W = m->nodes[0].w;
    g->nout = (int)m->nodes[m->output].size;
    if (rb_model_cut(&g->base, m, 0, layer + 1, err) ||
        rb_model_cut(&g->head, m, layer + 1, m->nnodes, err))
        goto fail;
    rb_model_copy_weights(g->base, m);
    rb_model_copy_weights(g->head, m);
    /* no weight gradients anywhere: the head's backward only carries dScore down to A */
    rb_model_set_all_trainable(g->head, 0);
    g->wb = rb_workspace_create(g->base, batch, 0, err);
    if (!g->wb)
        goto fail;
    g->wh = rb_workspace_create(g->head, batch, RB_WS_INPUT_GRAD, err);
    if (!g->wh)
        goto fail;
    int64_t asz = (int64_t)g->h * g->w * g->c;
    g->dout = calloc((size_t)batch * (size_t)g->nout, sizeof(float));
    g->coarse = calloc((size_t)batch * (size_t)g->h * (size_t)g->w, sizeof(float));
    g->grad = calloc((size_t)batch * (size_t)asz, sizeof(float));
    g->alpha = calloc((size_t)g->c, sizeof(double));
    if (!g->dout || !g->coarse || !g->grad || !g->alpha) {
        rb_fail(err, NULL, "out of memory for Grad-CAM buffers");
        goto fail;
    }
    return g;
fail:
    rb_error_prefix(err, "Grad-CAM: ");
    rb_gradcam_free(g);
    return NULL;
}

int rb_gradcam_set_threads(rb_gradcam *g, int threads, rb_error *err)
{
    if (rb_workspace_set_threads(g->wb, threads, err))
        return -1;
    return rb_workspace_set_threads(g->wh, threads, err);
}

int rb_gradcam_layer(const rb_gradcam *g, int *h, int *w, int *c)
{
    if (h)
        *h = g->h;
    if (w)
        *w = g->w;
    if (c)
        *c = g->c;
    return g->layer;
}

void rb_resize_bilinear(float *dst, int H, int W, const float *src, int h, int w)
{
    const float sy = (float)h / (float)H, sx = (float)w / (float)W;
    for (int y = 0; y < H; y++) {
        float iy = ((float)y + 0.5f) * sy - 0.5f, fy = floorf(iy);
        int y0 = fy < 0 ? 0 : (int)fy, y1 = (int)ceilf(iy);
        y1 = y1 > h - 1 ? h - 1 : y1;
        y0 = y0 > h - 1 ? h - 1 : y0;
        float ly = iy - fy;
        for (int x = 0; x < W; x++) {
            float ix = ((float)x + 0.5f) * sx - 0.5f, fx = floorf(ix);
            int x0 = fx < 0 ? 0 : (int)fx, x1 = (int)ceilf(ix);
            x1 = x1 > w - 1 ? w - 1 : x1;
            x0 = x0 > w - 1 ? w - 1 : x0;
            float lx = ix - fx;
            float top = src[y0 * w + x0] + (src[y0 * w + x1] - src[y0 * w + x0]) * lx;
            float bot = src[y1 * w + x0] + (src[y1 * w + x1] - src[y1 * w + x0]) * lx;
            dst[(int64_t)y * W + x] = top + (bot - top) * ly;
        }
    }
}

int rb_gradcam_run(rb_gradcam *g, const void *input, rb_input_type type, int n, int unit,
                   float *maps, float *out, float *score, rb_error *err)
{
    if (n < 1 || n > g->batch)
        return rb_fail(err, NULL, "Grad-CAM of %d images on a runner for %d", n, g->batch);
    if (unit < 0 || unit >= g->nout)
        return rb_fail(err, NULL, "Grad-CAM of output unit %d of a model with %d", unit, g->nout);
    rb_forward_args fa = {.input = input, .type = type, .n = n};
    if (rb_model_forward(g->base, g->wb, &fa, err))
        return rb_error_prefix(err, "Grad-CAM (base): ");
    const float *A = rb_workspace_output(g->wb, g->base->output);
    rb_forward_args fh = {.input = A, .type = RB_INPUT_F32, .n = n};
    if (rb_model_forward(g->head, g->wh, &fh, err))
        return rb_error_prefix(err, "Grad-CAM (head): ");
    const float *probs = rb_workspace_output(g->wh, g->head->output);
    const float *logits = rb_workspace_logits(g->wh);
    if (out)
        memcpy(out, probs, (size_t)n * (size_t)g->nout * sizeof(float));
    memset(g->dout, 0, (size_t)n * (size_t)g->nout * sizeof(float));
    for (int s = 0; s < n; s++) {
        g->dout[(int64_t)s * g->nout + unit] = 1.0f;
        if (score)
            score[s] = (logits ? logits : probs)[(int64_t)s * g->nout + unit];
    }
    if (rb_model_backward(g->head, g->wh, g->dout, 1, err))
        return rb_error_prefix(err, "Grad-CAM (backward): ");
    const float *G = rb_workspace_input_grad(g->wh);
    const int64_t hw = (int64_t)g->h * g->w, asz = hw * g->c;
    memcpy(g->grad, G, (size_t)(n * asz) * sizeof(float));
    for (int s = 0; s < n; s++) {
        const float *As = A + s * asz, *Gs = G + s * asz;
        for (int k = 0; k < g->c; k++)
            g->alpha[k] = 0.0;
        for (int64_t p = 0; p < hw; p++)
            for (int k = 0; k < g->c; k++)
                g->alpha[k] += (double)Gs[p * g->c + k];
        for (int k = 0; k < g->c; k++)
            g->alpha[k] /= (double)hw;
        float *cm = g->coarse + s * hw;
        for (int64_t p = 0; p < hw; p++) {
            double v = 0.0;
            for (int k = 0; k < g->c; k++)
                v += g->alpha[k] * (double)As[p * g->c + k];
            cm[p] = v > 0.0 ? (float)v : 0.0f;
        }
        if (!maps)
            continue;
        const int64_t HW = (int64_t)g->H * g->W;
        float *ms = maps + s * HW;
        rb_resize_bilinear(ms, g->H, g->W, cm, g->h, g->w);
        float mx = 0.0f;
        for (int64_t p = 0; p < HW; p++)
            mx = ms[p] > mx ? ms[p] : mx;
        for (int64_t p = 0; p < HW; p++)
            ms[p] = mx > 0.0f ? ms[p] / mx : 0.0f;
    }
    g->last_n = n;
    return 0;
}

const float *rb_gradcam_activations(const rb_gradcam *g)
{
    return g->last_n ? rb_workspace_output(g->wb, g->base->output) : NULL;
}

const float *rb_gradcam_gradients(const rb_gradcam *g)
{
    return g->last_n ? g->grad : NULL;
}

const float *rb_gradcam_coarse(const rb_gradcam *g)
{
    return g->last_n ? g->coarse : NULL;
}
