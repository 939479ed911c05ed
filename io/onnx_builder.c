/* The ONNX graph builder (onnx_builder.h). */
#include "onnx_builder.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
void *ob_alloc(onnx_builder *b, size_t size)
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

char *ob_str(onnx_builder *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = ob_alloc(b, (size_t)n + 1);
    if (!s)
        return (char *)"";
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void ob_free(onnx_builder *b)
{
    for (size_t i = 0; i < b->nallocs; i++)
        free(b->allocs[i]);
    free(b->allocs);
    free(b->nodes);
    free(b->inits);
    memset(b, 0, sizeof *b);
}

/* A node op(inputs...) -> output, named after its output. */
Onnx__NodeProto *ob_node(onnx_builder *b, const char *op, const char *output, int ninputs, ...)
{
    Onnx__NodeProto *n = ob_alloc(b, sizeof *n);
    char **in = ob_alloc(b, (size_t)(ninputs > 0 ? ninputs : 1) * sizeof *in);
    char **out = ob_alloc(b, sizeof *out);
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

Onnx__AttributeProto *ob_attr(onnx_builder *b, Onnx__NodeProto *n, const char *name)
{
    Onnx__AttributeProto *a = ob_alloc(b, sizeof *a);
    Onnx__AttributeProto **list = ob_alloc(b, (n->n_attribute + 1) * sizeof *list);
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

void ob_attr_int(onnx_builder *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name);
    if (!a)
        return;
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1, a->i = v;
}

void ob_attr_float(onnx_builder *b, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name);
    if (!a)
        return;
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1, a->f = v;
}

void ob_attr_ints(onnx_builder *b, Onnx__NodeProto *n, const char *name, int count, const int64_t *v)
{
    Onnx__AttributeProto *a = ob_attr(b, n, name);
    int64_t *copy = ob_alloc(b, (size_t)count * sizeof *copy);
    if (!a || !copy)
        return;
    memcpy(copy, v, (size_t)count * sizeof *copy);
    a->has_type = 1, a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)count, a->ints = copy;
}

/* An initializer of `bytes` raw little-endian bytes (copied). */
const char *ob_init(onnx_builder *b, const char *name, int32_t dtype, int ndims, const int64_t *dims,
                          const void *data, size_t bytes)
{
    Onnx__TensorProto *t = ob_alloc(b, sizeof *t);
    int64_t *d = ob_alloc(b, (size_t)(ndims > 0 ? ndims : 1) * sizeof *d);
    uint8_t *raw = ob_alloc(b, bytes);
    if (!t || !d || !raw || grow((void ***)&b->inits, &b->cap_inits, b->ninits + 1)) {
        b->failed = 1;
        return name;
    }
    onnx__tensor_proto__init(t);
    if (ndims > 0) /* a scalar has no dims (NULL) */
        memcpy(d, dims, (size_t)ndims * sizeof *d);
    memcpy(raw, data, bytes);
    t->n_dims = (size_t)ndims, t->dims = d;
    t->has_data_type = 1, t->data_type = dtype;
    t->name = (char *)name;
    t->has_raw_data = 1, t->raw_data.len = bytes, t->raw_data.data = raw;
    b->inits[b->ninits++] = t;
    return name;
}

const char *ob_init_f32(onnx_builder *b, const char *name, int ndims, const int64_t *dims, const float *v)
{
    size_t n = 1;
    for (int k = 0; k < ndims; k++)
        n *= (size_t)dims[k];
    return ob_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndims, dims, v, n * sizeof *v);
}

const char *ob_scalar_f32(onnx_builder *b, const char *name, float v)
{
    return ob_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 0, NULL, &v, sizeof v);
}

const char *ob_init_i64(onnx_builder *b, const char *name, int count, const int64_t *v)
{
    int64_t dims[1] = {count};
    return ob_init(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, dims, v, (size_t)count * sizeof *v);
}

