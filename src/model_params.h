/* The view of a model's weights that file code (io/: Keras import, radbatch model files,
 * checkpoints) works with, so io/ never needs to know how layers compute.
 *
 * Every weight and every non-trained state tensor (BatchNorm moving statistics) of a model
 * is one rb_param_view, in the model's layer order and, within a layer, in Keras'
 * `weight_names` order (Conv2D: kernel[, bias]; DepthwiseConv2D: depthwise_kernel[, bias];
 * BatchNormalization: gamma, beta, moving_mean, moving_variance; Dense: kernel, bias). */
#ifndef MODEL_PARAMS_H
#define MODEL_PARAMS_H

#include <stdint.h>

typedef struct rb_param_view {
    const char *layer;  /* Keras layer name: "block_1_expand_BN" */
    const char *weight; /* Keras weight name without layer prefix and ":0": "kernel", "gamma" */
    int ndim;
    int64_t shape[4];   /* Keras shape (Conv2D kernel HWIO, Dense [in, out]) */
    float *data;        /* into the model's parameter buffer (or state buffer) */
    int64_t offset;     /* element offset of data in that buffer */
    int is_state;       /* 1: moving statistics (state buffer, never gets gradients) */
    int trainable;      /* 1: gets gradients in the current training stage */
} rb_param_view;

/* A model (src/model.h) hands io/ an array of these: rb_model_params(m, &n) and the list of
 * its layer names/classes in model order (Keras `layer_names`, weightless layers included).
 * io/ functions take the array, never the model, so they are testable with hand-made views. */
typedef struct rb_layer_view {
    const char *name;  /* "block_1_pad" */
    const char *klass; /* Keras class name: "ZeroPadding2D" */
} rb_layer_view;

#endif
