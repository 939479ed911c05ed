/* Building an ONNX graph with protobuf-c for io/onnx_export.c: nodes, attributes and
 * initializers, every allocation owned by the builder and freed at once after serialization
 * (ob_free). Out of memory sets `failed` and the calls go on harmlessly; the exporter checks
 * it once at the end. */
#ifndef ONNX_BUILDER_H
#define ONNX_BUILDER_H

#include "onnx.pb-c.h"

#include <stddef.h>
#include <stdint.h>

typedef struct onnx_builder {
    Onnx__NodeProto **nodes;
    size_t nnodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t ninits, cap_inits;
    void **allocs; /* everything to free */
    size_t nallocs, cap_allocs;
    int failed;    /* out of memory */
} onnx_builder;

void *ob_alloc(onnx_builder *b, size_t size);
char *ob_str(onnx_builder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ob_free(onnx_builder *b);
Onnx__NodeProto *ob_node(onnx_builder *b, const char *op, const char *output, int ninputs, ...);
Onnx__AttributeProto *ob_attr(onnx_builder *b, Onnx__NodeProto *n, const char *name);
void ob_attr_int(onnx_builder *b, Onnx__NodeProto *n, const char *name, int64_t v);
void ob_attr_float(onnx_builder *b, Onnx__NodeProto *n, const char *name, float v);
void ob_attr_ints(onnx_builder *b, Onnx__NodeProto *n, const char *name, int count, const int64_t *v);
const char *ob_init(onnx_builder *b, const char *name, int32_t dtype, int ndims, const int64_t *dims, const void *data, size_t bytes);
const char *ob_init_f32(onnx_builder *b, const char *name, int ndims, const int64_t *dims, const float *v);
const char *ob_scalar_f32(onnx_builder *b, const char *name, float v);
const char *ob_init_i64(onnx_builder *b, const char *name, int count, const int64_t *v);

#endif
