/* rb_model: graph checks, shapes, the parameter/gradient/state layout, the views io/ uses,
 * trainable flags and initialization. The workspace, forward and backward are in exec_*.c,
 * the description text in model_desc.c, builders in model_build.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "init.h"


#define ALIGN_FLOATS 16 /* every tensor starts on a 64-byte boundary */

static int64_t align_up(int64_t x)
{
    return (x + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
}

int rb_model_find(const rb_model *m, const char *name)
{
    for (int i = 0; i < m->nnodes; i++)
        if (strcmp(m->nodes[i].name, name) == 0)
            return i;
    return -1;
}

static int shape_err(rb_error *err, const rb_node *n, const char *hint, const char *what)
{
    return rb_fail(err, hint, "layer %s (%s): %s", n->name, rb_op_class(n->op), what);
}

static void set_rank3(rb_node *n, int h, int w, int c)
{
    n->rank = 3, n->h = h, n->w = w, n->c = c;
    n->size = (int64_t)h * w * c;
}

static void set_rank1(rb_node *n, int c)
{
    n->rank = 1, n->h = 1, n->w = 1, n->c = c;
    n->size = c;
}

/* shapes of node i from its inputs */
static int node_shape(rb_model *m, int i, rb_error *err)
{
    rb_node *n = &m->nodes[i];
    if (n->op == RB_OP_INPUT) {
        if (n->rank == 1) /* shape=C: a feature vector */
            set_rank1(n, n->c);
        else
            set_rank3(n, n->h, n->w, n->c);
        return 0;
    }
    const rb_node *a = &m->nodes[n->inputs[0]];
    n->in_h = a->h, n->in_w = a->w, n->in_c = a->c;
    switch (n->op) {
    case RB_OP_CONV2D:
    case RB_OP_DEPTHWISE:
    case RB_OP_MAXPOOL:
    case RB_OP_AVGPOOL: {
        if (a->rank != 3)
            return shape_err(err, n, "put it after a 4-D (image-like) layer", "input is not 4-D");
        int cout = n->op == RB_OP_CONV2D ? n->filters : a->c;
        if (conv2d_shape_init(&n->cs, 1, a->h, a->w, a->c, n->kh, n->kw, n->sh, n->sw,
                              n->padding, cout) != 0) {
            char what[160];
            snprintf(what, sizeof what, "input %dx%d is too small for kernel %dx%d (padding %s)",
                     a->h, a->w, n->kh, n->kw, n->padding == PADDING_SAME ? "same" : "valid");
            return shape_err(err, n, "use a larger input size", what);
        }
        set_rank3(n, n->cs.ho, n->cs.wo, cout);
        return 0;
    }
    case RB_OP_ZEROPAD:
        if (a->rank != 3)
            return shape_err(err, n, NULL, "input is not 4-D");
        pad_shape_init(&n->ps, 1, a->h, a->w, a->c, n->pad_t, n->pad_b, n->pad_l, n->pad_r);
        set_rank3(n, a->h + n->pad_t + n->pad_b, a->w + n->pad_l + n->pad_r, a->c);
        return 0;
    case RB_OP_BATCHNORM:
    case RB_OP_RELU:
    case RB_OP_ACTIVATION:
    case RB_OP_SOFTMAX:
    case RB_OP_DROPOUT:
        if (a->rank == 3)
            set_rank3(n, a->h, a->w, a->c);
        else
            set_rank1(n, a->c);
        return 0;
    case RB_OP_ADD:
        for (int k = 1; k < n->ninputs; k++) {
            const rb_node *b = &m->nodes[n->inputs[k]];
            if (b->rank != a->rank || b->h != a->h || b->w != a->w || b->c != a->c) {
                char what[256];
                snprintf(what, sizeof what, "inputs %s (%dx%dx%d) and %s (%dx%dx%d) differ in shape",
                         a->name, a->h, a->w, a->c, b->name, b->h, b->w, b->c);
                return shape_err(err, n, NULL, what);
            }
        }
        if (a->rank == 3)
            set_rank3(n, a->h, a->w, a->c);
        else
            set_rank1(n, a->c);
        return 0;
    case RB_OP_CONCAT: {
        int c = 0;
        for (int k = 0; k < n->ninputs; k++) {
            const rb_node *b = &m->nodes[n->inputs[k]];
            if (b->rank != a->rank || b->h != a->h || b->w != a->w)
                return shape_err(err, n, NULL, "inputs differ in spatial shape");
            c += b->c;
        }
        if (a->rank == 3)
            set_rank3(n, a->h, a->w, c);
        else
            set_rank1(n, c);
        return 0;
    }
    case RB_OP_GAP:
        if (a->rank != 3)
            return shape_err(err, n, NULL, "input is not 4-D");
        set_rank1(n, a->c);
        return 0;
    case RB_OP_FLATTEN:
        if (a->size > 0x7fffffff)
            return shape_err(err, n, NULL, "too many features");
        set_rank1(n, (int)a->size);
        return 0;
    case RB_OP_DENSE:
        if (a->rank != 1)
            return shape_err(err, n, "put Flatten or GlobalAveragePooling2D before Dense",
                             "input is 4-D");
        set_rank1(n, n->units);
        return 0;
    default:
        return shape_err(err, n, NULL, "unknown op");
    }
}

static const char *const W_NAMES[RB_OP__COUNT][4] = {
    [RB_OP_CONV2D] = {"kernel", "bias"},
    [RB_OP_DEPTHWISE] = {"depthwise_kernel", "bias"},
    [RB_OP_BATCHNORM] = {"gamma", "beta", "moving_mean", "moving_variance"},
    [RB_OP_DENSE] = {"kernel", "bias"},
};

/* weight shapes in Keras layout; returns the count */
static int node_weights(const rb_node *n, int ndim[4], int64_t shape[4][4])
{
    memset(shape, 0, sizeof(int64_t) * 16);
    switch (n->op) {
    case RB_OP_CONV2D:
        ndim[0] = 4;
        shape[0][0] = n->kh, shape[0][1] = n->kw, shape[0][2] = n->in_c, shape[0][3] = n->filters;
        ndim[1] = 1, shape[1][0] = n->filters;
        return n->use_bias ? 2 : 1;
    case RB_OP_DEPTHWISE:
        ndim[0] = 4;
        shape[0][0] = n->kh, shape[0][1] = n->kw, shape[0][2] = n->in_c, shape[0][3] = 1;
        ndim[1] = 1, shape[1][0] = n->in_c;
        return n->use_bias ? 2 : 1;
    case RB_OP_BATCHNORM:
        for (int k = 0; k < 4; k++)
            ndim[k] = 1, shape[k][0] = n->c;
        return 4;
    case RB_OP_DENSE:
        ndim[0] = 2, shape[0][0] = n->in_c, shape[0][1] = n->units;
        ndim[1] = 1, shape[1][0] = n->units;
        return n->use_bias ? 2 : 1;
    default:
        return 0;
    }
}

static void views_update_trainable(rb_model *m)
{
    for (int v = 0; v < m->nviews; v++) {
        rb_param_view *pv = &m->views[v];
        pv->trainable = !pv->is_state && m->nodes[m->view_node[v]].trainable;
    }
}

int rb_model_finalize(rb_model *m, rb_error *err)
{
    int64_t poff = 0, soff = 0;
    int nviews = 0;
    for (int i = 0; i < m->nnodes; i++) {
        rb_node *n = &m->nodes[i];
        if (node_shape(m, i, err))
            return -1;
        n->in_base = i < m->base_layers;
        int ndim[4];
        int64_t shape[4][4];
        n->nweights = node_weights(n, ndim, shape);
        n->nparams = 0;
        for (int k = 0; k < n->nweights; k++) {
            int64_t sz = 1;
            for (int d = 0; d < ndim[k]; d++)
                sz *= shape[k][d];
            n->wsize[k] = sz;
            n->nparams += sz;
            n->is_state[k] = n->op == RB_OP_BATCHNORM && k >= 2;
            if (n->is_state[k]) {
                n->woff[k] = soff;
                soff = align_up(soff + sz);
            } else {
                n->woff[k] = poff;
                poff = align_up(poff + sz);
            }
        }
        nviews += n->nweights;
    }
    m->output = m->nnodes - 1;
    m->nparams = poff;
    m->nstate = soff;
    m->params = aligned_alloc(64, (size_t)(poff ? poff : ALIGN_FLOATS) * sizeof(float));
    m->grads = aligned_alloc(64, (size_t)(poff ? poff : ALIGN_FLOATS) * sizeof(float));
    m->state = aligned_alloc(64, (size_t)(soff ? soff : ALIGN_FLOATS) * sizeof(float));
    m->views = calloc((size_t)(nviews ? nviews : 1), sizeof *m->views);
    m->layers = calloc((size_t)m->nnodes, sizeof *m->layers);
    m->view_node = calloc((size_t)(nviews ? nviews : 1), sizeof *m->view_node);
    if (!m->params || !m->grads || !m->state || !m->views || !m->layers || !m->view_node)
        return rb_fail(err, NULL, "out of memory for %lld parameters",
                       (long long)(poff + soff));
    memset(m->params, 0, (size_t)(poff ? poff : ALIGN_FLOATS) * sizeof(float));
    memset(m->grads, 0, (size_t)(poff ? poff : ALIGN_FLOATS) * sizeof(float));
    memset(m->state, 0, (size_t)(soff ? soff : ALIGN_FLOATS) * sizeof(float));
    m->nviews = nviews;
    int v = 0;
    for (int i = 0; i < m->nnodes; i++) {
        rb_node *n = &m->nodes[i];
        m->layers[i].name = n->name;
        m->layers[i].klass = rb_op_class(n->op);
        int ndim[4];
        int64_t shape[4][4];
        node_weights(n, ndim, shape);
        for (int k = 0; k < n->nweights; k++, v++) {
            rb_param_view *pv = &m->views[v];
            pv->layer = n->name;
            m->view_node[v] = i;
            pv->weight = W_NAMES[n->op][k];
            pv->ndim = ndim[k];
            memcpy(pv->shape, shape[k], sizeof pv->shape);
            pv->offset = n->woff[k];
            pv->is_state = n->is_state[k];
            pv->data = (n->is_state[k] ? m->state : m->params) + n->woff[k];
        }
        /* BatchNorm defaults as Keras builds them: gamma 1, moving_variance 1 */
        if (n->op == RB_OP_BATCHNORM) {
            for (int64_t j = 0; j < n->c; j++) {
                m->params[n->woff[0] + j] = 1.0f;
                m->state[n->woff[3] + j] = 1.0f;
            }
        }
    }
    views_update_trainable(m);
    return 0;
}

void rb_model_free(rb_model *m)
{
    if (!m)
        return;
    free(m->nodes);
    free(m->params);
    free(m->grads);
    free(m->state);
    free(m->views);
    free(m->layers);
    free(m->view_node);
    free(m);
}

const rb_param_view *rb_model_params(const rb_model *m, int *n)
{
    *n = m->nviews;
    return m->views;
}

const rb_layer_view *rb_model_layers(const rb_model *m, int *n)
{
    *n = m->nnodes;
    return m->layers;
}

float *rb_model_weight(const rb_model *m, int node, int k)
{
    const rb_node *n = &m->nodes[node];
    if (k < 0 || k >= n->nweights)
        return NULL;
    return (n->is_state[k] ? m->state : m->params) + n->woff[k];
}

float *rb_model_weight_grad(const rb_model *m, int node, int k)
{
    const rb_node *n = &m->nodes[node];
    if (k < 0 || k >= n->nweights || n->is_state[k])
        return NULL;
    return m->grads + n->woff[k];
}

/* Keras defaults (init.h): glorot_uniform kernels, zeros bias/beta/moving_mean, ones
 * gamma/moving_variance; each tensor keyed by its "layer/weight" name. */
void rb_model_init(rb_model *m, uint64_t seed)
{
    for (int v = 0; v < m->nviews; v++) {
        const rb_param_view *pv = &m->views[v];
        init_fill(pv->data, pv->ndim, pv->shape, init_default_for(pv->weight), seed,
                  init_tensor_id(pv->layer, pv->weight));
    }
}

void rb_model_set_trainable(rb_model *m, int node, int trainable)
{
    if (node < 0 || node >= m->nnodes)
        return;
    if (m->nodes[node].trainable != (trainable != 0)) {
        m->nodes[node].trainable = trainable != 0;
        m->generation++;
    }
    views_update_trainable(m);
}

void rb_model_set_all_trainable(rb_model *m, int trainable)
{
    for (int i = 0; i < m->nnodes; i++)
        rb_model_set_trainable(m, i, trainable);
}

void rb_model_freeze_base(rb_model *m)
{
    for (int i = 0; i < m->base_layers; i++)
        rb_model_set_trainable(m, i, 0);
}

int rb_model_unfreeze_top(rb_model *m, double fraction)
{
    if (fraction < 0)
        fraction = 0;
    if (fraction > 1)
        fraction = 1;
    /* Keras: fine_tune_at = int(len(base_model.layers) * (1 - fraction)) */
    int at = (int)((double)m->base_layers * (1.0 - fraction) + 1e-9);
    for (int i = 0; i < m->base_layers; i++)
        rb_model_set_trainable(m, i, i >= at);
    return at;
}

void rb_model_count(const rb_model *m, int64_t *total, int64_t *trainable, int64_t *frozen)
{
    int64_t t = 0, tr = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *n = &m->nodes[i];
        for (int k = 0; k < n->nweights; k++) {
            t += n->wsize[k];
            if (n->trainable && !n->is_state[k])
                tr += n->wsize[k];
        }
    }
    if (total)
        *total = t;
    if (trainable)
        *trainable = tr;
    if (frozen)
        *frozen = t - tr;
}

void rb_model_trainable_span(const rb_model *m, int64_t *off, int64_t *len)
{
    int64_t lo = -1, hi = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *n = &m->nodes[i];
        if (!n->trainable)
            continue;
        for (int k = 0; k < n->nweights; k++) {
            if (n->is_state[k])
                continue;
            if (lo < 0 || n->woff[k] < lo)
                lo = n->woff[k];
            if (n->woff[k] + n->wsize[k] > hi)
                hi = n->woff[k] + n->wsize[k];
        }
    }
    *off = lo < 0 ? 0 : lo;
    *len = lo < 0 ? 0 : hi - lo;
}

void rb_model_trainable_mask(const rb_model *m, uint8_t *mask)
{
    memset(mask, 0, (size_t)m->nparams);
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *n = &m->nodes[i];
        if (!n->trainable)
            continue;
        for (int k = 0; k < n->nweights; k++)
            if (!n->is_state[k])
                memset(mask + n->woff[k], 1, (size_t)n->wsize[k]);
    }
}

void rb_model_zero_grads(rb_model *m)
{
    memset(m->grads, 0, (size_t)m->nparams * sizeof(float));
}

void rb_model_set_bn_reduce(rb_model *m, rb_bn_reduce_fn fn, void *ctx)
{
    m->bn_reduce = fn;
    m->bn_reduce_ctx = ctx;
}

double rb_model_flops(const rb_model *m)
{
    double f = 0;
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *n = &m->nodes[i];
        switch (n->op) {
        case RB_OP_CONV2D:
            f += 2.0 * n->h * n->w * n->c * n->kh * n->kw * n->in_c;
            break;
        case RB_OP_DEPTHWISE:
            f += 2.0 * n->h * n->w * n->c * n->kh * n->kw;
            break;
        case RB_OP_DENSE:
            f += 2.0 * n->in_c * n->units;
            break;
        default:
            break;
        }
    }
    return f;
}

int rb_model_ranges(const rb_model *m, int kind, optim_range *out, int max)
{
    int k = 0;
    int64_t lo = -1, hi = -1;
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *n = &m->nodes[i];
        if (!n->trainable)
            continue;
        for (int w = 0; w < n->nweights; w++) {
            if (n->is_state[w])
                continue;
            if (kind == RB_RANGES_KERNELS &&
                !(w == 0 && (n->op == RB_OP_CONV2D || n->op == RB_OP_DENSE)))
                continue;
            int64_t a = n->woff[w], b = a + n->wsize[w];
            if (lo >= 0 && a <= align_up(hi)) { /* adjacent (padding between is zero) */
                hi = b;
                continue;
            }
            if (lo >= 0) {
                if (k < max)
                    out[k] = (optim_range){lo, hi - lo};
                k++;
            }
            lo = a, hi = b;
        }
    }
    if (lo >= 0) {
        if (k < max)
            out[k] = (optim_range){lo, hi - lo};
        k++;
    }
    return k;
}
