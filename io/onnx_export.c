/* ONNX export: walk the model description (nodes in topological order) and emit one or a
 * few ONNX nodes per layer. Everything the graph needs (messages, names, tensor bytes) is
 * allocated through the builder (onnx_builder.h) and freed at once after serialization. */
#include "onnx_export.h"
#include "fsutil.h"

#include "onnx_builder.h"
#include "onnx.pb-c.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- layers ------------------------------------------------------------------------------ */

typedef struct exporter {
    onnx_builder b;
    const rb_model *m;
    const char **tensor; /* [nnodes] name of each node's output tensor */
    rb_error *err;
    const onnx_quant *q; /* NULL: float32 */
    int *fold;           /* [nnodes] int8: Conv i -> the BatchNormalization folded into it, or -1 */
    int *relu;           /* [nnodes] int8: Conv i -> the ReLU/ReLU6 its output quantization applies, or -1 */
    int *pad;            /* [nnodes] int8: Conv i -> the ZeroPadding2D folded into its pads, or -1 */
    uint8_t *skip;       /* [nnodes] int8: layers folded into a Conv (emitted with it) */
    float *scale;        /* [nnodes] int8: scale of the node's quantized output, 0 when not quantized */
} exporter;

/* ---- int8 QDQ ------------------------------------------------------------------------------ */

/* QuantizeLinear + DequantizeLinear of tensor `in` to uint8 over [lo, hi] (widened to hold
 * 0, so zero padding is exact); returns the dequantized tensor, *scale its scale */
static const char *emit_qdq(exporter *x, const char *in, float lo, float hi, float *scale)
{
    onnx_builder *b = &x->b;
    lo = lo < 0 ? lo : 0;
    hi = hi > 0 ? hi : 0;
    float s = (hi - lo) / 255.0f;
    if (!(s > 0) || !isfinite(s))
        s = 1.0f;
    float zf = nearbyintf(-lo / s);
    uint8_t zp = (uint8_t)(zf < 0 ? 0 : zf > 255 ? 255 : zf);
    const char *sn = ob_scalar_f32(b, ob_str(b, "%s/act_scale", in), s);
    const char *zn = ob_init(b, ob_str(b, "%s/act_zero_point", in), ONNX__TENSOR_PROTO__DATA_TYPE__UINT8, 0, NULL,
                            &zp, 1);
    const char *qn = ob_str(b, "%s/quantized", in), *dq = ob_str(b, "%s/dequantized", in);
    ob_node(b, "QuantizeLinear", qn, 3, in, sn, zn);
    ob_node(b, "DequantizeLinear", dq, 3, qn, sn, zn);
    *scale = s;
    return dq;
}

/* int8 symmetric per-channel weights w (channel c of element e: (e / inner) % nch) ->
 * DequantizeLinear(axis); scales out in ws[nch] */
static const char *emit_qweight(exporter *x, const char *name, const float *w, int ndims, const int64_t *dims,
                                int axis, float *ws)
{
    onnx_builder *b = &x->b;
    int64_t total = 1, inner = 1;
    for (int k = 0; k < ndims; k++)
        total *= dims[k];
    for (int k = axis + 1; k < ndims; k++)
        inner *= dims[k];
    int nch = (int)dims[axis];
    int8_t *q = ob_alloc(b, (size_t)total);
    int8_t *zp = ob_alloc(b, (size_t)nch);
    if (!q || !zp)
        return name;
    for (int c = 0; c < nch; c++)
        ws[c] = 0;
    for (int64_t e = 0; e < total; e++) {
        int c = (int)((e / inner) % nch);
        float a = fabsf(w[e]);
        ws[c] = a > ws[c] ? a : ws[c];
    }
    for (int c = 0; c < nch; c++)
        ws[c] = ws[c] > 0 ? ws[c] / 127.0f : 1.0f;
    for (int64_t e = 0; e < total; e++) {
        float v = nearbyintf(w[e] / ws[(e / inner) % nch]);
        q[e] = (int8_t)(v < -127 ? -127 : v > 127 ? 127 : v);
    }
    int64_t cd[1] = {nch};
    const char *qn = ob_init(b, ob_str(b, "%s_int8", name), ONNX__TENSOR_PROTO__DATA_TYPE__INT8, ndims, dims, q,
                            (size_t)total);
    const char *sn = ob_init_f32(b, ob_str(b, "%s_scale", name), 1, cd, ws);
    const char *zn = ob_init(b, ob_str(b, "%s_zero_point", name), ONNX__TENSOR_PROTO__DATA_TYPE__INT8, 1, cd, zp,
                            (size_t)nch);
    Onnx__NodeProto *n = ob_node(b, "DequantizeLinear", name, 3, qn, sn, zn);
    ob_attr_int(b, n, "axis", axis);
    return name;
}

/* int32 bias at scale sx * ws[c] (zero point 0) -> DequantizeLinear */
static const char *emit_qbias(exporter *x, const char *name, const float *bias, int n, float sx, const float *ws)
{
    onnx_builder *b = &x->b;
    int32_t *q = ob_alloc(b, (size_t)n * sizeof *q), *zp = ob_alloc(b, (size_t)n * sizeof *zp);
    float *s = ob_alloc(b, (size_t)n * sizeof *s);
    if (!q || !zp || !s)
        return name;
    for (int c = 0; c < n; c++) {
        s[c] = sx * ws[c];
        double v = nearbyint((double)bias[c] / s[c]);
        q[c] = (int32_t)(v < -2147483647.0 ? -2147483647.0 : v > 2147483647.0 ? 2147483647.0 : v);
    }
    int64_t d[1] = {n};
    const char *qn = ob_init(b, ob_str(b, "%s_int32", name), ONNX__TENSOR_PROTO__DATA_TYPE__INT32, 1, d, q,
                            (size_t)n * sizeof *q);
    const char *sn = ob_init_f32(b, ob_str(b, "%s_scale", name), 1, d, s);
    const char *zn = ob_init(b, ob_str(b, "%s_zero_point", name), ONNX__TENSOR_PROTO__DATA_TYPE__INT32, 1, d, zp,
                            (size_t)n * sizeof *zp);
    ob_attr_int(b, ob_node(b, "DequantizeLinear", name, 3, qn, sn, zn), "axis", 0);
    return name;
}

/* Conv/Dense weights and bias as initializers (float32) or QDQ (int8); the layer's input
 * node is `src` (its quantized output scale goes into the bias scale) */
static int emit_params(exporter *x, int src, const char *wname, const float *w, int ndims, const int64_t *dims,
                       int axis, const char *bname, const float *bias, const char **wout, const char **bout)
{
    onnx_builder *b = &x->b;
    int nch = (int)dims[axis];
    if (!x->q) {
        *wout = ob_init_f32(b, wname, ndims, dims, w);
        int64_t bd[1] = {nch};
        *bout = bias ? ob_init_f32(b, bname, 1, bd, bias) : NULL;
        return 0;
    }
    float *ws = ob_alloc(b, (size_t)nch * sizeof *ws);
    if (!ws)
        return -1;
    *wout = emit_qweight(x, wname, w, ndims, dims, axis, ws);
    int64_t bd[1] = {nch};
    *bout = !bias ? NULL
            : x->scale[src] > 0 ? emit_qbias(x, bname, bias, nch, x->scale[src], ws)
                                : ob_init_f32(b, bname, 1, bd, bias);
    return 0;
}

/* Activation `act` of tensor x, output named out (x itself for linear when out is NULL). */
static const char *emit_act(exporter *x, rb_act act, const char *in, const char *out, int spatial)
{
    onnx_builder *b = &x->b;
    switch (act) {
    case RB_ACT_LINEAR:
        ob_node(b, "Identity", out, 1, in);
        break;
    case RB_ACT_RELU:
        ob_node(b, "Relu", out, 1, in);
        break;
    case RB_ACT_RELU6: {
        const char *lo = ob_scalar_f32(b, ob_str(b, "%s/clip_min", out), 0.0f);
        const char *hi = ob_scalar_f32(b, ob_str(b, "%s/clip_max", out), 6.0f);
        ob_node(b, "Clip", out, 3, in, lo, hi);
        break;
    }
    case RB_ACT_SIGMOID:
        ob_node(b, "Sigmoid", out, 1, in);
        break;
    case RB_ACT_SOFTMAX: { /* over channels: the last axis in NHWC, axis 1 in NCHW */
        Onnx__NodeProto *n = ob_node(b, "Softmax", out, 1, in);
        ob_attr_int(b, n, "axis", spatial ? 1 : -1);
        break;
    }
    }
    return out;
}

/* Keras kernel HWIO [kh,kw,ci,co] -> ONNX OIHW [co,ci,kh,kw] */
static float *kernel_oihw(onnx_builder *b, const float *w, int kh, int kw, int ci, int co)
{
    float *o = ob_alloc(b, (size_t)kh * kw * ci * co * sizeof *o);
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
static float *kernel_depthwise(onnx_builder *b, const float *w, int kh, int kw, int c)
{
    float *o = ob_alloc(b, (size_t)kh * kw * c * sizeof *o);
    if (!o)
        return NULL;
    for (int y = 0; y < kh; y++)
        for (int xx = 0; xx < kw; xx++)
            for (int k = 0; k < c; k++)
                o[((size_t)k * kh + y) * kw + xx] = w[((size_t)y * kw + xx) * c + k];
    return o;
}

/* p: a ZeroPadding2D folded into the window's own pads, or NULL */
static void window_attrs(onnx_builder *b, Onnx__NodeProto *o, const rb_node *n, const rb_node *p)
{
    int64_t ks[2] = {n->kh, n->kw}, st[2] = {n->sh, n->sw};
    int64_t pads[4] = {n->cs.pad_top, n->cs.pad_left, n->cs.pad_bottom, n->cs.pad_right};
    if (p)
        pads[0] += p->pad_t, pads[1] += p->pad_l, pads[2] += p->pad_b, pads[3] += p->pad_r;
    ob_attr_ints(b, o, "kernel_shape", 2, ks);
    ob_attr_ints(b, o, "strides", 2, st);
    ob_attr_ints(b, o, "pads", 4, pads);
}

static int emit_conv(exporter *x, int i)
{
    onnx_builder *b = &x->b;
    const rb_node *n = &x->m->nodes[i];
    const float *w = rb_model_weight(x->m, i, 0);
    int dw = n->op == RB_OP_DEPTHWISE;
    int co = dw ? n->in_c : n->filters;
    float *wt = dw ? kernel_depthwise(b, w, n->kh, n->kw, n->in_c) : kernel_oihw(b, w, n->kh, n->kw, n->in_c, co);
    if (!wt)
        return -1;
    const float *bias = n->use_bias ? rb_model_weight(x->m, i, 1) : NULL;
    const char *name = n->name;
    int j = x->fold ? x->fold[i] : -1;
    if (j >= 0) { /* int8: BatchNormalization j folded in: w' = w*a, b' = (b - mean)*a + beta */
        const rb_node *bn = &x->m->nodes[j];
        const float *g = rb_model_weight(x->m, j, 0), *be = rb_model_weight(x->m, j, 1);
        const float *mu = rb_model_weight(x->m, j, 2), *var = rb_model_weight(x->m, j, 3);
        float *nb = ob_alloc(b, (size_t)co * sizeof *nb);
        if (!nb)
            return -1;
        int64_t per = (int64_t)(dw ? 1 : n->in_c) * n->kh * n->kw;
        for (int c = 0; c < co; c++) {
            double a = (double)g[c] / sqrt((double)var[c] + (double)bn->eps);
            for (int64_t e = 0; e < per; e++)
                wt[c * per + e] = (float)(wt[c * per + e] * a);
            nb[c] = (float)(((bias ? (double)bias[c] : 0.0) - mu[c]) * a + be[c]);
        }
        bias = nb;
        name = bn->name;
    }
    /* int8: a ZeroPadding2D read only by this Conv becomes the Conv's pads; a ReLU/ReLU6
     * that is the only reader of the output is left to the output's quantization (range
     * [0, max] with zero point 0: QuantizeLinear clamps to it), as onnxruntime's quantizer
     * does, so the runtime sees DequantizeLinear -> Conv -> QuantizeLinear */
    int pi = x->pad ? x->pad[i] : -1, ri = x->relu ? x->relu[i] : -1;
    int src = pi >= 0 ? x->m->nodes[pi].inputs[0] : n->inputs[0];
    if (ri >= 0)
        name = x->m->nodes[ri].name;
    int64_t wd[4] = {co, dw ? 1 : n->in_c, n->kh, n->kw};
    const char *wname, *bname;
    if (emit_params(x, src, ob_str(b, "%s/%s", n->name, dw ? "depthwise_kernel" : "kernel"), wt, 4, wd, 0,
                    ob_str(b, "%s/bias", n->name), bias, &wname, &bname))
        return -1;
    const char *out = n->act == RB_ACT_LINEAR ? name : ob_str(b, "%s/preact", name);
    Onnx__NodeProto *o = bname ? ob_node(b, "Conv", out, 3, x->tensor[src], wname, bname)
                               : ob_node(b, "Conv", out, 2, x->tensor[src], wname);
    window_attrs(b, o, n, pi >= 0 ? &x->m->nodes[pi] : NULL);
    if (dw)
        ob_attr_int(b, o, "group", co);
    if (n->act != RB_ACT_LINEAR)
        emit_act(x, n->act, out, name, 1);
    x->tensor[i] = name;
    if (j >= 0)
        x->tensor[j] = name;
    if (ri >= 0)
        x->tensor[ri] = name;
    return 0;
}

static int emit_dense(exporter *x, int i)
{
    onnx_builder *b = &x->b;
    const rb_node *n = &x->m->nodes[i];
    int64_t wd[2] = {n->in_c, n->units};
    const char *wname, *bname;
    if (emit_params(x, n->inputs[0], ob_str(b, "%s/kernel", n->name), rb_model_weight(x->m, i, 0), 2, wd, 1,
                    ob_str(b, "%s/bias", n->name), n->use_bias ? rb_model_weight(x->m, i, 1) : NULL, &wname, &bname))
        return -1;
    const char *out = n->act == RB_ACT_LINEAR ? n->name : ob_str(b, "%s/preact", n->name);
    if (bname)
        ob_node(b, "Gemm", out, 3, x->tensor[n->inputs[0]], wname, bname);
    else
        ob_node(b, "MatMul", out, 2, x->tensor[n->inputs[0]], wname);
    if (n->act != RB_ACT_LINEAR)
        emit_act(x, n->act, out, n->name, 0);
    x->tensor[i] = n->name;
    return 0;
}

/* uint8 NHWC image -> preprocessed float NCHW, as rescale_forward computes it */
static int emit_input(exporter *x, const rb_node *n)
{
    onnx_builder *b = &x->b;
    ob_node(b, "Cast", "image/float", 1, "image");
    ob_attr_int(b, b->nodes[b->nnodes - 1], "to", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT);
    const char *pre = "image/float";
    switch (n->preprocess) {
    case RESCALE_MINUS1_1: /* float32(p) / 127.5 - 1.0, a division then a subtraction */
        ob_node(b, "Div", "image/div", 2, pre, ob_scalar_f32(b, "preprocess/127.5", 127.5f));
        pre = ob_node(b, "Sub", "image/preprocessed", 2, "image/div", ob_scalar_f32(b, "preprocess/one", 1.0f))->name;
        break;
    case RESCALE_0_1: /* float32(p) * float32(1/255) */
        pre = ob_node(b, "Mul", "image/preprocessed", 2, pre, ob_scalar_f32(b, "preprocess/scale", (float)(1.0 / 255.0)))
                  ->name;
        break;
    case RESCALE_NONE:
        break;
    case RESCALE_MINMAX: { /* per image (p - min) / (max - min), 0 for a constant image */
        int64_t axes[3] = {1, 2, 3};
        Onnx__NodeProto *lo = ob_node(b, "ReduceMin", "image/min", 1, pre);
        ob_attr_ints(b, lo, "axes", 3, axes);
        Onnx__NodeProto *hi = ob_node(b, "ReduceMax", "image/max", 1, pre);
        ob_attr_ints(b, hi, "axes", 3, axes);
        ob_node(b, "Sub", "image/range", 2, "image/max", "image/min");
        ob_node(b, "Sub", "image/shifted", 2, pre, "image/min");
        const char *zero = ob_scalar_f32(b, "preprocess/zero", 0.0f);
        const char *one = ob_scalar_f32(b, "preprocess/one", 1.0f);
        ob_node(b, "Greater", "image/nonconstant", 2, "image/range", zero);
        ob_node(b, "Where", "image/safe_range", 3, "image/nonconstant", "image/range", one);
        ob_node(b, "Div", "image/scaled", 2, "image/shifted", "image/safe_range");
        pre = ob_node(b, "Where", "image/preprocessed", 3, "image/nonconstant", "image/scaled", zero)->name;
        break;
    }
    }
    int64_t perm[4] = {0, 3, 1, 2};
    Onnx__NodeProto *t = ob_node(b, "Transpose", n->name, 1, pre);
    ob_attr_ints(b, t, "perm", 4, perm);
    x->tensor[0] = n->name;
    return 0;
}

static int emit_node(exporter *x, int i)
{
    onnx_builder *b = &x->b;
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
        ob_node(b, "Pad", n->name, 2, in, ob_init_i64(b, ob_str(b, "%s/pads", n->name), 8, pads));
        break;
    }
    case RB_OP_BATCHNORM: {
        int64_t d[1] = {n->c};
        const char *w[4];
        static const char *const names[4] = {"gamma", "beta", "moving_mean", "moving_variance"};
        for (int k = 0; k < 4; k++)
            w[k] = ob_init_f32(b, ob_str(b, "%s/%s", n->name, names[k]), 1, d, rb_model_weight(m, i, k));
        Onnx__NodeProto *o = ob_node(b, "BatchNormalization", n->name, 5, in, w[0], w[1], w[2], w[3]);
        ob_attr_float(b, o, "epsilon", n->eps);
        break;
    }
    case RB_OP_RELU:
    case RB_OP_ACTIVATION:
    case RB_OP_SOFTMAX:
        emit_act(x, n->act, in, n->name, spatial);
        break;
    case RB_OP_ADD:
    case RB_OP_CONCAT: {
        Onnx__NodeProto *o = ob_node(b, n->op == RB_OP_ADD ? (n->ninputs == 2 ? "Add" : "Sum") : "Concat",
                                    n->name, 0);
        char **ins = ob_alloc(b, (size_t)n->ninputs * sizeof *ins);
        if (!ins)
            return -1;
        for (int k = 0; k < n->ninputs; k++)
            ins[k] = (char *)x->tensor[n->inputs[k]];
        o->n_input = (size_t)n->ninputs;
        o->input = ins;
        if (n->op == RB_OP_CONCAT)
            ob_attr_int(b, o, "axis", 1); /* channels: axis 1 in NCHW and in [N, C] */
        break;
    }
    case RB_OP_MAXPOOL:
    case RB_OP_AVGPOOL: {
        /* AveragePool's default count_include_pad=0: padding cells do not count, as in Keras */
        Onnx__NodeProto *o = ob_node(b, n->op == RB_OP_MAXPOOL ? "MaxPool" : "AveragePool", n->name, 1, in);
        window_attrs(b, o, n, NULL);
        break;
    }
    case RB_OP_GAP: {
        const char *g = ob_str(b, "%s/nchw11", n->name);
        ob_node(b, "GlobalAveragePool", g, 1, in);
        ob_attr_int(b, ob_node(b, "Flatten", n->name, 1, g), "axis", 1);
        break;
    }
    case RB_OP_FLATTEN: {
        const rb_node *a = &m->nodes[n->inputs[0]];
        if (a->rank == 3) { /* Keras flattens NHWC: rows in (h, w, c) order */
            int64_t perm[4] = {0, 2, 3, 1};
            const char *t = ob_str(b, "%s/nhwc", n->name);
            ob_attr_ints(b, ob_node(b, "Transpose", t, 1, in), "perm", 4, perm);
            in = t;
        }
        ob_attr_int(b, ob_node(b, "Flatten", n->name, 1, in), "axis", 1);
        break;
    }
    case RB_OP_DROPOUT: /* inference: identity (int8: the quantized input itself) */
        if (x->q) {
            x->tensor[i] = in;
            x->scale[i] = x->scale[n->inputs[0]];
            return 0;
        }
        ob_node(b, "Identity", n->name, 1, in);
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
    onnx_builder *b = &x->b;
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
        ob_node(b, "Sub", "probabilities/complement", 2, ob_scalar_f32(b, "output/one", 1.0f), last);
        const char *first = o->positive == 0 ? last : "probabilities/complement";
        const char *second = o->positive == 0 ? "probabilities/complement" : last;
        ob_attr_int(b, ob_node(b, "Concat", "probabilities", 2, first, second), "axis", 1);
    } else {
        if (out->c != o->nclasses) {
            rb_fail(err, NULL, "the model gives %d outputs for %d class names", out->c, o->nclasses);
            return NULL;
        }
        ob_node(b, "Identity", "probabilities", 1, last);
    }
    return "probabilities";
}

static Onnx__ValueInfoProto *value_info(onnx_builder *b, const char *name, int32_t elem, int ndims, const int64_t *dims,
                                        const char *doc)
{
    Onnx__ValueInfoProto *v = ob_alloc(b, sizeof *v);
    Onnx__TypeProto *t = ob_alloc(b, sizeof *t);
    Onnx__TypeProto__Tensor *tt = ob_alloc(b, sizeof *tt);
    Onnx__TensorShapeProto *s = ob_alloc(b, sizeof *s);
    Onnx__TensorShapeProto__Dimension **d = ob_alloc(b, (size_t)ndims * sizeof *d);
    if (!v || !t || !tt || !s || !d)
        return NULL;
    onnx__value_info_proto__init(v);
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(s);
    for (int k = 0; k < ndims; k++) {
        d[k] = ob_alloc(b, sizeof *d[k]);
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

/* the only layer reading node i's output, or -1 (none or several) */
static int only_consumer(const rb_model *m, int i)
{
    int who = -1, uses = 0;
    for (int k = i + 1; k < m->nnodes; k++)
        for (int e = 0; e < m->nodes[k].ninputs; e++)
            if (m->nodes[k].inputs[e] == i)
                who = k, uses++;
    return uses == 1 ? who : -1;
}

static int is_relu(const rb_node *n)
{
    return n->op == RB_OP_RELU ||
           (n->op == RB_OP_ACTIVATION && (n->act == RB_ACT_RELU || n->act == RB_ACT_RELU6));
}

/* int8: what folds into each linear Conv i: fold[i] the BatchNormalization it alone feeds,
 * relu[i] the ReLU/ReLU6 that alone reads the Conv (or its BatchNormalization), pad[i] the
 * ZeroPadding2D only it reads; skip[] marks the folded layers */
static void plan_folds(const rb_model *m, int *fold, int *relu, int *pad, uint8_t *skip)
{
    for (int i = 0; i < m->nnodes; i++) {
        fold[i] = relu[i] = pad[i] = -1;
        skip[i] = 0;
    }
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *c = &m->nodes[i];
        if ((c->op != RB_OP_CONV2D && c->op != RB_OP_DEPTHWISE) || c->act != RB_ACT_LINEAR)
            continue;
        int last = i, k = only_consumer(m, i);
        if (k >= 0 && m->nodes[k].op == RB_OP_BATCHNORM && k != m->output)
            fold[i] = k, skip[k] = 1, last = k;
        k = only_consumer(m, last);
        if (k >= 0 && is_relu(&m->nodes[k]) && k != m->output)
            relu[i] = k, skip[k] = 1;
        int p = c->inputs[0];
        if (m->nodes[p].op == RB_OP_ZEROPAD && only_consumer(m, p) == i)
            pad[i] = p, skip[p] = 1;
    }
}

/* int8: a layer whose output gets QuantizeLinear/DequantizeLinear: everything but the
 * model's output, probabilities (softmax, sigmoid), Dropout (which passes its input on) and
 * a layer whose only reader is a ReLU/ReLU6 (that pair is quantized once, after the
 * activation: the pre-activation range of a MobileNetV2 depthwise layer is a hundred times
 * the [0, 6] after it). r: the node whose output range applies (the ReLU or BatchNorm
 * folded into a Conv) */
static int quantized_output(const rb_model *m, int i, int r)
{
    const rb_node *n = &m->nodes[i];
    int next = only_consumer(m, r);
    if (next >= 0 && is_relu(&m->nodes[next]))
        return 0;
    if (i == m->output || n->op == RB_OP_DROPOUT || n->op == RB_OP_SOFTMAX)
        return 0;
    /* the preprocessed image (and its zero padding) stays float: its 256 values per channel
     * sit half a step off any uint8 grid (p / 127.5 - 1 needs a zero point of 127.5), and
     * that shift of every pixel cost more agreement than the whole rest of the network */
    if (n->op == RB_OP_INPUT || (n->op == RB_OP_ZEROPAD && n->inputs[0] == 0))
        return 0;
    if ((n->op == RB_OP_ACTIVATION || n->op == RB_OP_CONV2D || n->op == RB_OP_DEPTHWISE || n->op == RB_OP_DENSE) &&
        (n->act == RB_ACT_SOFTMAX || n->act == RB_ACT_SIGMOID))
        return 0;
    return 1;
}

int onnx_export_model(const rb_model *m, const onnx_export_opts *o, const char *path, rb_error *err)
{
    const rb_node *in = &m->nodes[0];
    if (in->rank != 3)
        return rb_fail(err, "export a whole model (model.h5 of radbatch train), not a head trained on features",
                       "%s: the model's input is a feature vector, not an image", path);
    exporter x = {.m = m, .err = err, .q = o->quant};
    x.tensor = calloc((size_t)m->nnodes, sizeof *x.tensor);
    x.scale = calloc((size_t)m->nnodes, sizeof *x.scale);
    int rc = 0;
    if (x.q) {
        x.fold = calloc((size_t)m->nnodes, sizeof *x.fold);
        x.relu = calloc((size_t)m->nnodes, sizeof *x.relu);
        x.pad = calloc((size_t)m->nnodes, sizeof *x.pad);
        x.skip = calloc((size_t)m->nnodes, 1);
        if (x.fold && x.relu && x.pad && x.skip)
            plan_folds(m, x.fold, x.relu, x.pad, x.skip);
        else
            rc = -1;
    }
    if (rc < 0 || !x.tensor || !x.scale) {
        free(x.tensor), free(x.scale), free(x.fold), free(x.relu), free(x.pad), free(x.skip);
        return rb_fail(err, NULL, "out of memory");
    }
    for (int i = 0; rc == 0 && i < m->nnodes; i++) {
        if (x.skip && x.skip[i])
            continue;
        rc = emit_node(&x, i);
        /* the node whose range applies: a folded ReLU's, else a folded BatchNorm's, else i's */
        int r = x.relu && x.relu[i] >= 0 ? x.relu[i] : x.fold && x.fold[i] >= 0 ? x.fold[i] : i;
        if (rc == 0 && x.q && quantized_output(m, i, r)) {
            x.tensor[i] = emit_qdq(&x, x.tensor[i], x.q->lo[r], x.q->hi[r], &x.scale[i]);
            int also[2] = {x.fold[i], x.relu[i]};
            for (int k = 0; k < 2; k++)
                if (also[k] >= 0)
                    x.tensor[also[k]] = x.tensor[i], x.scale[also[k]] = x.scale[i];
        }
    }
    const char *out = rc == 0 ? emit_output(&x, o, err) : NULL;
    onnx_builder *b = &x.b;
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
        Onnx__ValueInfoProto **ins = ob_alloc(b, sizeof *ins), **outs = ob_alloc(b, sizeof *outs);
        Onnx__StringStringEntryProto **props = ob_alloc(b, (size_t)(o->nmeta > 0 ? o->nmeta : 1) * sizeof *props);
        for (int k = 0; props && k < o->nmeta; k++) {
            props[k] = ob_alloc(b, sizeof *props[k]);
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
    ob_free(b);
    free(x.tensor);
    free(x.fold);
    free(x.relu);
    free(x.pad);
    free(x.skip);
    free(x.scale);
    return rc;
}
