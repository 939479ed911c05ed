/* ONNX export: walk the model description (nodes in topological order) and emit one or a
 * few ONNX nodes per layer. Everything the graph needs (messages, names, tensor bytes) is
 * allocated through the builder below and freed at once after serialization. */
#include "onnx_export.h"
#include "fsutil.h"

#include "onnx.pb-c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct builder {
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t ninits, cap_inits;
    void **allocs; /* everything to free */
    size_t nallocs, cap_allocs;
    int failed;    /* out of memory */
} builder;

static int grow(void ***arr, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 256;
    while (ncap < need)
        ncap *= 2;
    void **p = realloc(*arr, ncap * sizeof *p);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* zeroed memory owned by the builder (NULL after a failure; b->failed is then set) */
static void *b_alloc(builder *b, size_t size)
{
    if (b->failed)
        return NULL;
    void *p = calloc(1, size ? size : 1);
    if (!p || grow(&b->allocs, &b->cap_allocs, b->nallocs + 1)) {
        free(p);
        b->failed = 1;
        return NULL;
    }
    b->allocs[b->nallocs++] = p;
    return p;
}

static char *b_str(builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *b_str(builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = b_alloc(b, (size_t)n + 1);
    if (!s)
        return (char *)"";
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void b_free(builder *b)
{
    for (size_t i = 0; i < b->nallocs; i++)
        free(b->allocs[i]);
    free(b->allocs);
    free(b->nodes);
    free(b->inits);
    memset(b, 0, sizeof *b);
}

/* A node op(inputs...) -> output, named after its output. */
static Onnx__NodeProto *b_node(builder *b, const char *op, const char *output, int ninputs, ...)
{
    Onnx__NodeProto *n = b_alloc(b, sizeof *n);
    char **in = b_alloc(b, (size_t)(ninputs > 0 ? ninputs : 1) * sizeof *in);
    char **out = b_alloc(b, sizeof *out);
    if (!n || !in || !out || grow((void ***)&b->nodes, &b->cap_nodes, b->nnodes + 1)) {
        b->failed = 1;
        static Onnx__NodeProto dummy;
        return &dummy;
    }
    onnx__node_proto__init(n);
    va_list ap;
    va_start(ap, ninputs);
    for (int k = 0; k < ninputs; k++)
        in[k] = (char *)va_arg(ap, const char *);
    va_end(ap);
    out[0] = (char *)output;
    n->n_input = (size_t)ninputs;
    n->input = in;
    n->n_output = 1;
    n->output = out;
    n->name = (char *)output;
    n->op_type = (char *)op;
    b->nodes[b->nnodes++] = n;
    return n;
}

static Onnx__AttributeProto *b_attr(builder *b, Onnx__NodeProto *n, const char *name)
{
    Onnx__AttributeProto *a = b_alloc(b, sizeof *a);
    Onnx__AttributeProto **list = b_alloc(b, (n->n_attribute + 1) * sizeof *list);
    if (!a || !list)
        return NULL;
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    if (n->n_attribute)
        memcpy(list, n->attribute, n->n_attribute * sizeof *list);
    list[n->n_attribute++] = a;
    n->attribute = list;
    return a;
}

static void attr_int(builder *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = b_attr(b, n, name);
    if (!a)
        return;
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1, a->i = v;
}

static void attr_float(builder *b, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = b_attr(b, n, name);
    if (!a)
        return;
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1, a->f = v;
}

static void attr_ints(builder *b, Onnx__NodeProto *n, const char *name, int count, const int64_t *v)
{
    Onnx__AttributeProto *a = b_attr(b, n, name);
    int64_t *copy = b_alloc(b, (size_t)count * sizeof *copy);
    if (!a || !copy)
        return;
    memcpy(copy, v, (size_t)count * sizeof *copy);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)count, a->ints = copy;
}

/* An initializer of `bytes` raw little-endian bytes (copied). */
static const char *b_init(builder *b, const char *name, int32_t dtype, int ndims, const int64_t *dims,
                          const void *data, size_t bytes)
{
    Onnx__TensorProto *t = b_alloc(b, sizeof *t);
    int64_t *d = b_alloc(b, (size_t)(ndims > 0 ? ndims : 1) * sizeof *d);
    uint8_t *raw = b_alloc(b, bytes);
    if (!t || !d || !raw || grow((void ***)&b->inits, &b->cap_inits, b->ninits + 1)) {
        b->failed = 1;
        return name;
    }
    onnx__tensor_proto__init(t);
    memcpy(d, dims, (size_t)ndims * sizeof *d);
    memcpy(raw, data, bytes);
    t->n_dims = (size_t)ndims, t->dims = d;
    t->has_data_type = 1, t->data_type = dtype;
    t->name = (char *)name;
    t->has_raw_data = 1, t->raw_data.len = bytes, t->raw_data.data = raw;
    b->inits[b->ninits++] = t;
    return name;
}

static const char *init_f32(builder *b, const char *name, int ndims, const int64_t *dims, const float *v)
{
    size_t n = 1;
    for (int k = 0; k < ndims; k++)
        n *= (size_t)dims[k];
    return b_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndims, dims, v, n * sizeof *v);
}

static const char *scalar_f32(builder *b, const char *name, float v)
{
    return b_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 0, NULL, &v, sizeof v);
}

static const char *init_i64(builder *b, const char *name, int count, const int64_t *v)
{
    int64_t dims[1] = {count};
    return b_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, dims, v, (size_t)count * sizeof *v);
}

/* ---- layers ------------------------------------------------------------------------------ */

typedef struct exporter {
    builder b;
    const rb_model *m;
    const char **tensor; /* [nnodes] name of each node's output tensor */
    rb_error *err;
} exporter;

/* Activation `act` of tensor x, output named out (x itself for linear when out is NULL). */
static const char *emit_act(exporter *x, rb_act act, const char *in, const char *out, int spatial)
{
    builder *b = &x->b;
    switch (act) {
    case RB_ACT_LINEAR:
        b_node(b, "Identity", out, 1, in);
        break;
    case RB_ACT_RELU:
        b_node(b, "Relu", out, 1, in);
        break;
    case RB_ACT_RELU6: {
        const char *lo = scalar_f32(b, b_str(b, "%s/clip_min", out), 0.0f);
        const char *hi = scalar_f32(b, b_str(b, "%s/clip_max", out), 6.0f);
        b_node(b, "Clip", out, 3, in, lo, hi);
        break;
    }
    case RB_ACT_SIGMOID:
        b_node(b, "Sigmoid", out, 1, in);
        break;
    case RB_ACT_SOFTMAX: { /* over channels: the last axis in NHWC, axis 1 in NCHW */
        Onnx__NodeProto *n = b_node(b, "Softmax", out, 1, in);
        attr_int(b, n, "axis", spatial ? 1 : -1);
        break;
    }
    }
    return out;
}

/* Keras kernel HWIO [kh,kw,ci,co] -> ONNX OIHW [co,ci,kh,kw] */
static float *kernel_oihw(builder *b, const float *w, int kh, int kw, int ci, int co)
{
    float *o = b_alloc(b, (size_t)kh * kw * ci * co * sizeof *o);
    if (!o)
        return NULL;
    for (int y = 0; y < kh; y++)
        for (int xx = 0; xx < kw; xx++)
            for (int i = 0; i < ci; i++)
                for (int c = 0; c < co; c++)
                    o[(((size_t)c * ci + i) * kh + y) * kw + xx] = w[(((size_t)y * kw + xx) * ci + i) * co + c];
    return o;
}

/* Keras depthwise kernel [kh,kw,c,1] -> ONNX grouped conv weight [c,1,kh,kw] */
static float *kernel_depthwise(builder *b, const float *w, int kh, int kw, int c)
{
    float *o = b_alloc(b, (size_t)kh * kw * c * sizeof *o);
    if (!o)
        return NULL;
    for (int y = 0; y < kh; y++)
        for (int xx = 0; xx < kw; xx++)
            for (int k = 0; k < c; k++)
                o[((size_t)k * kh + y) * kw + xx] = w[((size_t)y * kw + xx) * c + k];
    return o;
}

static void window_attrs(builder *b, Onnx__NodeProto *o, const rb_node *n)
{
    int64_t ks[2] = {n->kh, n->kw}, st[2] = {n->sh, n->sw};
    int64_t pads[4] = {n->cs.pad_top, n->cs.pad_left, n->cs.pad_bottom, n->cs.pad_right};
    attr_ints(b, o, "kernel_shape", 2, ks);
    attr_ints(b, o, "strides", 2, st);
    attr_ints(b, o, "pads", 4, pads);
}

static int emit_conv(exporter *x, int i)
{
    builder *b = &x->b;
    const rb_node *n = &x->m->nodes[i];
    const float *w = rb_model_weight(x->m, i, 0);
    int dw = n->op == RB_OP_DEPTHWISE;
    int co = dw ? n->in_c : n->filters;
    float *wt = dw ? kernel_depthwise(b, w, n->kh, n->kw, n->in_c) : kernel_oihw(b, w, n->kh, n->kw, n->in_c, co);
    if (!wt)
        return -1;
    int64_t wd[4] = {co, dw ? 1 : n->in_c, n->kh, n->kw};
    const char *wname = init_f32(b, b_str(b, "%s/%s", n->name, dw ? "depthwise_kernel" : "kernel"), 4, wd, wt);
    const char *out = n->act == RB_ACT_LINEAR ? n->name : b_str(b, "%s/preact", n->name);
    Onnx__NodeProto *o;
    if (n->use_bias) {
        int64_t bd[1] = {co};
        const char *bname = init_f32(b, b_str(b, "%s/bias", n->name), 1, bd, rb_model_weight(x->m, i, 1));
        o = b_node(b, "Conv", out, 3, x->tensor[n->inputs[0]], wname, bname);
    } else
        o = b_node(b, "Conv", out, 2, x->tensor[n->inputs[0]], wname);
    window_attrs(b, o, n);
    if (dw)
        attr_int(b, o, "group", co);
    if (n->act != RB_ACT_LINEAR)
        emit_act(x, n->act, out, n->name, 1);
    x->tensor[i] = n->name;
    return 0;
}

static int emit_dense(exporter *x, int i)
{
    builder *b = &x->b;
    const rb_node *n = &x->m->nodes[i];
    int64_t wd[2] = {n->in_c, n->units};
    const char *wname = init_f32(b, b_str(b, "%s/kernel", n->name), 2, wd, rb_model_weight(x->m, i, 0));
    const char *out = n->act == RB_ACT_LINEAR ? n->name : b_str(b, "%s/preact", n->name);
    if (n->use_bias) {
        int64_t bd[1] = {n->units};
        const char *bname = init_f32(b, b_str(b, "%s/bias", n->name), 1, bd, rb_model_weight(x->m, i, 1));
        b_node(b, "Gemm", out, 3, x->tensor[n->inputs[0]], wname, bname);
    } else
        b_node(b, "MatMul", out, 2, x->tensor[n->inputs[0]], wname);
    if (n->act != RB_ACT_LINEAR)
        emit_act(x, n->act, out, n->name, 0);
    x->tensor[i] = n->name;
    return 0;
}

/* uint8 NHWC image -> preprocessed float NCHW, as rescale_forward computes it */
static int emit_input(exporter *x, const rb_node *n)
{
    builder *b = &x->b;
    b_node(b, "Cast", "image/float", 1, "image");
    attr_int(b, b->nodes[b->nnodes - 1], "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    const char *pre = "image/float";
    switch (n->preprocess) {
    case RESCALE_MINUS1_1: /* float32(p) / 127.5 - 1.0, a division then a subtraction */
        b_node(b, "Div", "image/div", 2, pre, scalar_f32(b, "preprocess/127.5", 127.5f));
        pre = b_node(b, "Sub", "image/preprocessed", 2, "image/div", scalar_f32(b, "preprocess/one", 1.0f))->name;
        break;
    case RESCALE_0_1: /* float32(p) * float32(1/255) */
        pre = b_node(b, "Mul", "image/preprocessed", 2, pre, scalar_f32(b, "preprocess/scale", (float)(1.0 / 255.0)))
                  ->name;
        break;
    case RESCALE_NONE:
        break;
    case RESCALE_MINMAX: { /* per image (p - min) / (max - min), 0 for a constant image */
        int64_t axes[3] = {1, 2, 3};
        Onnx__NodeProto *lo = b_node(b, "ReduceMin", "image/min", 1, pre);
        attr_ints(b, lo, "axes", 3, axes);
        Onnx__NodeProto *hi = b_node(b, "ReduceMax", "image/max", 1, pre);
        attr_ints(b, hi, "axes", 3, axes);
        b_node(b, "Sub", "image/range", 2, "image/max", "image/min");
        b_node(b, "Sub", "image/shifted", 2, pre, "image/min");
        const char *zero = scalar_f32(b, "preprocess/zero", 0.0f);
        const char *one = scalar_f32(b, "preprocess/one", 1.0f);
        b_node(b, "Greater", "image/nonconstant", 2, "image/range", zero);
        b_node(b, "Where", "image/safe_range", 3, "image/nonconstant", "image/range", one);
        b_node(b, "Div", "image/scaled", 2, "image/shifted", "image/safe_range");
        pre = b_node(b, "Where", "image/preprocessed", 3, "image/nonconstant", "image/scaled", zero)->name;
        break;
    }
    }
    int64_t perm[4] = {0, 3, 1, 2};
    Onnx__NodeProto *t = b_node(b, "Transpose", n->name, 1, pre);
    attr_ints(b, t, "perm", 4, perm);
    x->tensor[0] = n->name;
    return 0;
}

static int emit_node(exporter *x, int i)
{
    builder *b = &x->b;
    const rb_model *m = x->m;
    const rb_node *n = &m->nodes[i];
    const char *in = n->ninputs > 0 ? x->tensor[n->inputs[0]] : NULL;
    int spatial = n->rank == 3;
    switch (n->op) {
    case RB_OP_INPUT:
        return emit_input(x, n);
    case RB_OP_CONV2D:
    case RB_OP_DEPTHWISE:
        return emit_conv(x, i);
    case RB_OP_DENSE:
        return emit_dense(x, i);
    case RB_OP_ZEROPAD: {
        int64_t pads[8] = {0, 0, n->pad_t, n->pad_l, 0, 0, n->pad_b, n->pad_r};
        b_node(b, "Pad", n->name, 2, in, init_i64(b, b_str(b, "%s/pads", n->name), 8, pads));
        break;
    }
    case RB_OP_BATCHNORM: {
        int64_t d[1] = {n->c};
        const char *w[4];
        static const char *const names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
        for (int k = 0; k < 4; k++)
            w[k] = init_f32(b, b_str(b, "%s/%s", n->name, names[k]), 1, d, rb_model_weight(m, i, k));
        Onnx__NodeProto *o = b_node(b, "BatchNormalization", n->name, 5, in, w[0], w[1], w[2], w[3]);
        attr_float(b, o, "epsilon", n->eps);
        break;
    }
    case RB_OP_RELU:
    case RB_OP_ACTIVATION:
    case RB_OP_SOFTMAX:
        emit_act(x, n->act, in, n->name, spatial);
        break;
    case RB_OP_ADD:
    case RB_OP_CONCAT: {
        Onnx__NodeProto *o = b_node(b, n->op == RB_OP_ADD ? (n->ninputs == 2 ? "Add" : "Sum") : "Concat",
                                    n->name, 0);
        char **ins = b_alloc(b, (size_t)n->ninputs * sizeof *ins);
        if (!ins)
            return -1;
        for (int k = 0; k < n->ninputs; k++)
            ins[k] = (char *)x->tensor[n->inputs[k]];
        o->n_input = (size_t)n->ninputs;
        o->input = ins;
        if (n->op == RB_OP_CONCAT)
            attr_int(b, o, "axis", 1); /* channels: axis 1 in NCHW and in [N, C] */
        break;
    }
    case RB_OP_MAXPOOL:
    case RB_OP_AVGPOOL: {
        /* AveragePool's default count_include_pad=0: padding cells do not count, as in Keras */
        Onnx__NodeProto *o = b_node(b, n->op == RB_OP_MAXPOOL ? "MaxPool" : "AveragePool", n->name, 1, in);
        window_attrs(b, o, n);
        break;
    }
    case RB_OP_GAP: {
        const char *g = b_str(b, "%s/nchw11", n->name);
        b_node(b, "GlobalAveragePool", g, 1, in);
        attr_int(b, b_node(b, "Flatten", n->name, 1, g), "axis", 1);
        break;
    }
    case RB_OP_FLATTEN: {
        const rb_node *a = &m->nodes[n->inputs[0]];
        if (a->rank == 3) { /* Keras flattens NHWC: rows in (h, w, c) order */
            int64_t perm[4] = {0, 2, 3, 1};
            const char *t = b_str(b, "%s/nhwc", n->name);
            attr_ints(b, b_node(b, "Transpose", t, 1, in), "perm", 4, perm);
            in = t;
        }
        attr_int(b, b_node(b, "Flatten", n->name, 1, in), "axis", 1);
        break;
    }
    case RB_OP_DROPOUT: /* inference: identity */
        b_node(b, "Identity", n->name, 1, in);
        break;
    default:
        return rb_fail(x->err, "see docs/export.md for the layers export supports",
                       "layer %s (%s) cannot be exported to ONNX", n->name, rb_op_class(n->op));
    }
    x->tensor[i] = n->name;
    return 0;
}

/* "probabilities": [batch, K] in class order; one sigmoid unit p becomes (1 - p, p) with p in
 * the positive class's column */
static const char *emit_output(exporter *x, const onnx_export_opts *o, rb_error *err)
{
    builder *b = &x->b;
    const rb_node *out = &x->m->nodes[x->m->output];
    const char *last = x->tensor[x->m->output];
    if (out->rank != 1) {
        rb_fail(err, "the model's last layer must give one value per class (Dense, Softmax)",
                "output layer %s is 4-D", out->name);
        return NULL;
    }
    if (out->c == 1) {
        if (o->nclasses != 2) {
            rb_fail(err, NULL, "one output unit but %d class names", o->nclasses);
            return NULL;
        }
        b_node(b, "Sub", "probabilities/complement", 2, scalar_f32(b, "output/one", 1.0f), last);
        const char *first = o->positive == 0 ? last : "probabilities/complement";
        const char *second = o->positive == 0 ? "probabilities/complement" : last;
        attr_int(b, b_node(b, "Concat", "probabilities", 2, first, second), "axis", 1);
    } else {
        if (out->c != o->nclasses) {
            rb_fail(err, NULL, "the model gives %d outputs for %d class names", out->c, o->nclasses);
            return NULL;
        }
        b_node(b, "Identity", "probabilities", 1, last);
    }
    return "probabilities";
}

static Onnx__ValueInfoProto *value_info(builder *b, const char *name, int32_t elem, int ndims, const int64_t *dims,
                                        const char *doc)
{
    Onnx__ValueInfoProto *v = b_alloc(b, sizeof *v);
    Onnx__TypeProto *t = b_alloc(b, sizeof *t);
    Onnx__TypeProto__Tensor *tt = b_alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *s = b_alloc(b, sizeof *s);
    Onnx__TensorShapeProto__Dimension **d = b_alloc(b, (size_t)ndims * sizeof *d);
    if (!v || !t || !tt || !s || !d)
        return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(s);
    for (int k = 0; k < ndims; k++) {
        d[k] = b_alloc(b, sizeof *d[k]);
        if (!d[k])
            return NULL;
        onnx__tensor_shape_proto__dimension__init(d[k]);
        if (dims[k] < 0) { /* the dynamic batch */
            d[k]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d[k]->dim_param = (char *)"batch";
        } else {
            d[k]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d[k]->dim_value = dims[k];
        }
    }
    s->n_dim = (size_t)ndims, s->dim = d;
    tt->has_elem_type = 1, tt->elem_type = elem, tt->shape = s;
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, t->tensor_type = tt;
    v->name = (char *)name, v->type = t, v->doc_string = (char *)doc;
    return v;
}

int onnx_export_model(const rb_model *m, const onnx_export_opts *o, const char *path, rb_error *err)
{
    const rb_node *in = &m->nodes[0];
    if (in->rank != 3)
        return rb_fail(err, "export a whole model (model.h5 of radbatch train), not a head trained on features",
                       "%s: the model's input is a feature vector, not an image", path);
    exporter x = {.m = m, .err = err};
    x.tensor = calloc((size_t)m->nnodes, sizeof *x.tensor);
    if (!x.tensor)
        return rb_fail(err, NULL, "out of memory");
    int rc = 0;
    for (int i = 0; rc == 0 && i < m->nnodes; i++)
        rc = emit_node(&x, i);
    const char *out = rc == 0 ? emit_output(&x, o, err) : NULL;
    builder *b = &x.b;
    if (rc == 0 && !out)
        rc = -1;

    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    Onnx__ModelProto mp = ONNX__MODEL_PROTO__INIT;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    if (rc == 0) {
        int64_t idims[4] = {-1, in->h, in->w, in->c}, odims[2] = {-1, o->nclasses};
        Onnx__ValueInfoProto *vi = value_info(b, "image", ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, 4, idims,
                                              "uint8 pixels [batch, height, width, channels] as the shards hold them");
        Onnx__ValueInfoProto *vo = value_info(b, out, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2, odims,
                                              "class probabilities [batch, classes] in class_names order");
        Onnx__ValueInfoProto **ins = b_alloc(b, sizeof *ins), **outs = b_alloc(b, sizeof *outs);
        Onnx__StringStringEntryProto **props = b_alloc(b, (size_t)(o->nmeta > 0 ? o->nmeta : 1) * sizeof *props);
        for (int k = 0; props && k < o->nmeta; k++) {
            props[k] = b_alloc(b, sizeof *props[k]);
            if (!props[k])
                break;
            onnx__string_string_entry_proto__init(props[k]);
            props[k]->key = (char *)o->meta[k].key;
            props[k]->value = (char *)o->meta[k].value;
        }
        if (b->failed || !vi || !vo || !ins || !outs || !props) {
            rc = rb_fail(err, NULL, "out of memory building the ONNX graph");
        } else {
            ins[0] = vi, outs[0] = vo;
            g.name = (char *)(o->graph_name ? o->graph_name : m->name);
            g.n_node = b->nnodes, g.node = b->nodes;
            g.n_initializer = b->ninits, g.initializer = b->inits;
            g.n_input = 1, g.input = ins;
            g.n_output = 1, g.output = outs;
            opset.domain = (char *)"";
            opset.has_version = 1, opset.version = ONNX_EXPORT_OPSET;
            mp.has_ir_version = 1, mp.ir_version = ONNX_EXPORT_IR_VERSION;
            mp.n_opset_import = 1, mp.opset_import = opsets;
            mp.producer_name = (char *)"radbatch";
            mp.producer_version = (char *)RADBATCH_VERSION;
            mp.graph = &g;
            mp.n_metadata_props = (size_t)o->nmeta, mp.metadata_props = props;
        }
    }
    if (rc == 0) {
        size_t len = onnx__model_proto__get_packed_size(&mp);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
            rc = rb_fail(err, NULL, "out of memory (%zu bytes for the ONNX file)", len);
        else {
            size_t packed = onnx__model_proto__pack(&mp, buf);
            if (packed != len)
                rc = rb_fail(err, NULL, "protobuf-c packed %zu of %zu bytes", packed, len);
            else
                rc = fs_write_file_atomic(path, buf, len, err);
            free(buf);
        }
    }
    b_free(b);
    free(x.tensor);
    return rc;
}
