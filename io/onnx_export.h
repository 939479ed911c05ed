/* ONNX export of a radbatch model (docs/export.md): the model description walked node by
 * node into an ONNX graph (opset ONNX_EXPORT_OPSET), serialized with protobuf-c from the
 * onnx.proto of the onnx package (io/onnx/).
 *
 * The graph takes what the shards hold and gives what `radbatch predict` prints:
 *   input  "image"          uint8 [batch, H, W, C] (NHWC, batch dynamic)
 *   output "probabilities"  float [batch, K], one column per class in class_names order
 * The InputLayer's preprocessing (tf, div255, minmax, none) is inside the graph with the
 * engine's exact arithmetic; the layers run channels-first (one Transpose after the
 * preprocessing; Keras kernels HWIO become ONNX OIHW); a model ending in one sigmoid unit
 * gets both class columns (1 - p and p, p at the positive class), as predict reports them. */
#ifndef ONNX_EXPORT_H
#define ONNX_EXPORT_H

#include "model.h"
#include "rb_error.h"

#define ONNX_EXPORT_OPSET 17
#define ONNX_EXPORT_IR_VERSION 8

typedef struct onnx_meta {
    const char *key, *value;
} onnx_meta;

/* int8 QDQ export (docs/export.md, "Int8"): the range [lo, hi] of every node's output over
 * the calibration images (min/max; engine layout, any order of elements). Activations become
 * uint8 with a zero point (QuantizeLinear + DequantizeLinear after each layer's output),
 * Conv/Gemm weights int8 symmetric per output channel, biases int32 at the input scale
 * times the weight scale; BatchNormalization after a Conv is folded into it first. */
typedef struct onnx_quant {
    const float *lo, *hi; /* [nnodes] */
} onnx_quant;

typedef struct onnx_export_opts {
    const char *const *class_names; /* nclasses names, the output's columns */
    int nclasses;
    int positive;           /* one sigmoid unit: the class its probability belongs to */
    const onnx_meta *meta;  /* metadata_props (model card, class names, ...) */
    int nmeta;
    const char *graph_name; /* NULL: the model's name */
    const onnx_quant *quant; /* NULL: float32 */
} onnx_export_opts;

/* Write m as an ONNX file at path (temp name, fsync, rename). Nodes the exporter cannot
 * express are an error naming the layer. */
int onnx_export_model(const rb_model *m, const onnx_export_opts *o, const char *path, rb_error *err);

#endif
