/* rb_model: a static DAG of named layers (Keras layer names), built once from a network
 * description text, with all parameters in one float buffer, all their gradients in one
 * buffer of the same layout, and BatchNormalization moving statistics in a state buffer.
 *
 *   rb_model *m;
 *   char *desc = rb_desc_mobilenetv2(160, 160, &head, &err);   // builders give text
 *   rb_model_from_desc(&m, desc, &err);                       // one path to a model
 *   rb_workspace *ws = rb_workspace_create(m, 32, RB_WS_TRAIN, &err);  // per batch size
 *   rb_model_forward(m, ws, &in);                             // no allocation
 *   rb_model_backward(m, ws, dlogits, 1);                     // grads += ...
 *
 * Nodes are in topological order (a node's inputs come before it); node 0 is the
 * InputLayer, which also applies the input preprocessing (its `preprocess` key), and the
 * last node is the output. The description format is documented in docs/engine.md.
 *
 * Training semantics (docs/engine.md, "Training semantics"; as Keras):
 *  - trainable = 0 on a node: no weight gradient, and BatchNormalization runs in inference
 *    mode (moving statistics), as Keras does for a frozen BN layer.
 *  - base_training = 0 on the model (Keras `base_model(x, training=False)`, the seeds'
 *    default): every BatchNormalization of the base uses moving statistics even when
 *    trainable, so fine-tuning the top of the base trains gamma/beta but keeps the moving
 *    statistics (the Keras fine-tuning guide's choice).
 *  - Backward runs only through nodes that have trainable parameters or a trainable node
 *    upstream: a frozen base costs no backward work at all.
 *
 * Memory: the workspace plans every activation and activation-gradient buffer on one arena
 * by lifetime (forward temporaries are reused, backward gradients reuse forward memory),
 * keeps only what backward reads, aliases Flatten and in-place activations, and (inference
 * or frozen parts) folds Conv/Depthwise + BatchNormalization (+ ReLU) into one pass. */
#ifndef MODEL_H
#define MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "layers.h"
#include "model_params.h"
#include "optim.h"
#include "rb_error.h"

#define RB_NAME_MAX 64
#define RB_MAX_INPUTS 16

typedef enum rb_op {
    RB_OP_INPUT = 0,  /* InputLayer (+ preprocessing) */
    RB_OP_CONV2D,     /* Conv2D */
    RB_OP_DEPTHWISE,  /* DepthwiseConv2D (depth_multiplier 1) */
    RB_OP_ZEROPAD,    /* ZeroPadding2D */
    RB_OP_BATCHNORM,  /* BatchNormalization (axis -1, center, scale) */
    RB_OP_RELU,       /* ReLU (max_value none or 6) */
    RB_OP_ACTIVATION, /* Activation */
    RB_OP_SOFTMAX,    /* Softmax (last axis) */
    RB_OP_ADD,        /* Add */
    RB_OP_CONCAT,     /* Concatenate (last axis) */
    RB_OP_MAXPOOL,    /* MaxPooling2D */
    RB_OP_AVGPOOL,    /* AveragePooling2D */
    RB_OP_GAP,        /* GlobalAveragePooling2D */
    RB_OP_FLATTEN,    /* Flatten */
    RB_OP_DENSE,      /* Dense */
    RB_OP_DROPOUT,    /* Dropout */
    RB_OP__COUNT
} rb_op;

typedef enum rb_act {
    RB_ACT_LINEAR = 0,
    RB_ACT_RELU,
    RB_ACT_RELU6,
    RB_ACT_SIGMOID,
    RB_ACT_SOFTMAX,
} rb_act;

/* Keras class name of an op ("Conv2D") and back (-1 when unknown). */
const char *rb_op_class(rb_op op);
int rb_op_from_class(const char *klass);
const char *rb_act_name(rb_act a);

typedef struct rb_node {
    char name[RB_NAME_MAX]; /* Keras layer name */
    rb_op op;
    int ninputs;
    int inputs[RB_MAX_INPUTS]; /* node indices, all < this node's index */
    /* output shape per sample: rank 3 (h, w, c) or rank 1 (c, with h = w = 1) */
    int rank, h, w, c;
    int64_t size; /* h*w*c */

    /* configuration (what the description holds) */
    int filters;              /* Conv2D */
    int units;                /* Dense */
    int kh, kw, sh, sw;       /* Conv2D, DepthwiseConv2D, pooling */
    padding_mode padding;     /* Conv2D, DepthwiseConv2D, pooling */
    int use_bias;             /* Conv2D, DepthwiseConv2D, Dense */
    rb_act act;               /* Conv2D, DepthwiseConv2D, Dense, Activation, ReLU */
    int pad_t, pad_b, pad_l, pad_r; /* ZeroPadding2D */
    float eps, momentum;      /* BatchNormalization */
    float rate;               /* Dropout */
    rescale_mode preprocess;  /* InputLayer */

    /* parameters: Keras weight order (kernel, bias | gamma, beta, moving_mean,
     * moving_variance); woff into m->params, or m->state for moving statistics */
    int nweights;
    int64_t woff[4], wsize[4];
    int is_state[4];
    int64_t nparams; /* elements, trainable kind and state together (Keras count) */

    int trainable; /* 1: gets gradients (only meaningful for nodes with weights) */
    int in_base;   /* 1: part of the pretrained base (nodes [0, m->base_layers)) */

    /* kernel geometry at batch 1 (the workspace sets n) */
    conv2d_shape cs; /* Conv2D, DepthwiseConv2D, pooling */
    pad_shape ps;    /* ZeroPadding2D */
    int in_h, in_w, in_c; /* shape of input 0 */
} rb_node;

/* Sync BatchNorm hook: sum buf[0..len) over all ranks in place (MPI_Allreduce SUM on
 * doubles). Called, when set, by every BatchNormalization that uses batch statistics:
 * in forward with buf = [sum_x (c) | sum_x^2 (c) | row count (1)], len = 2c+1; in backward
 * with buf = [sum_dy (c) | sum_dy*xhat (c)], len = 2c. Every rank calls it the same number
 * of times in the same order (collective-safe). NULL (default): per-rank statistics. */
typedef void (*rb_bn_reduce_fn)(double *buf, int64_t len, void *ctx);

typedef struct rb_model {
    char name[RB_NAME_MAX];     /* Keras model name: "mobilenetv2_1.00_224" */
    char backbone[RB_NAME_MAX]; /* "mobilenetv2", "cnn001", "custom" */
    int nnodes;
    rb_node *nodes;
    int base_layers;   /* nodes [0, base_layers) are the base (Keras base_model.layers) */
    int base_training; /* 0: base BatchNorms always use moving statistics */
    int output;        /* index of the output node (the last) */

    float *params;     /* all weights that can be trained (kernel, bias, gamma, beta) */
    float *grads;      /* same layout as params; backward accumulates (+=) */
    int64_t nparams;   /* floats in params/grads (tensors start at 16-float boundaries) */
    float *state;      /* BatchNorm moving_mean / moving_variance */
    int64_t nstate;

    rb_param_view *views; /* every weight tensor, model order, Keras weight order */
    int nviews;
    rb_layer_view *layers; /* every node (Keras layer_names order) */
    int *view_node;        /* node index of each view */

    uint64_t seed;        /* dropout masks: key (seed, node, rng_key, sample) */
    rb_bn_reduce_fn bn_reduce;
    void *bn_reduce_ctx;
    unsigned generation;  /* bumped when trainable flags change (workspaces check it) */
} rb_model;

/* ---- building ------------------------------------------------------------------------ */
/* (internal, used by the parser) shapes, parameter layout and views of parsed nodes */
int rb_model_finalize(rb_model *m, rb_error *err);
/* Parse a network description and build the model (weights zero; see rb_model_init). */
int rb_model_from_desc(rb_model **out, const char *text, rb_error *err);
/* The description of m (malloc'd; parse it back to get the same model). */
char *rb_model_desc(const rb_model *m);
void rb_model_free(rb_model *m);

/* Keras default initialization (init.h): kernels Glorot uniform, biases/beta/moving_mean
 * zeros, gamma/moving_variance ones; values a pure function of (seed, "layer/weight",
 * element), the same on every rank. */
void rb_model_init(rb_model *m, uint64_t seed);

/* Node index by Keras layer name, or -1. */
int rb_model_find(const rb_model *m, const char *name);
/* The weights and layers for io/ (Keras import, model files); valid while m lives. */
const rb_param_view *rb_model_params(const rb_model *m, int *n);
const rb_layer_view *rb_model_layers(const rb_model *m, int *n);
/* Weight tensor k of a node (0 kernel/gamma, 1 bias/beta, 2 moving_mean, 3 moving_var). */
float *rb_model_weight(const rb_model *m, int node, int k);
float *rb_model_weight_grad(const rb_model *m, int node, int k); /* NULL for state */

/* ---- training stage ------------------------------------------------------------------ */
void rb_model_set_trainable(rb_model *m, int node, int trainable);
void rb_model_set_all_trainable(rb_model *m, int trainable);
/* Freeze every node of the base (base_model.trainable = False). */
void rb_model_freeze_base(rb_model *m);
/* Seed 003: base layers with Keras index >= int(base_layers * (1 - fraction)) become
 * trainable, the others frozen; the head stays trainable. Returns that first index.
 * BatchNorms keep following m->base_training (default 0: moving statistics). */
int rb_model_unfreeze_top(rb_model *m, double fraction);
/* Keras model.summary() counts; trainable = weights of trainable nodes except moving
 * statistics. */
void rb_model_count(const rb_model *m, int64_t *total, int64_t *trainable, int64_t *frozen);
/* Smallest [off, off+len) of m->grads holding every trainable weight (an allreduce or an
 * optimizer may restrict itself to it; everything outside stays zero). */
void rb_model_trainable_span(const rb_model *m, int64_t *off, int64_t *len);
/* Runs of m->params for optim_step / optim_l2_*: RB_RANGES_TRAINABLE = every trainable
 * weight (not moving statistics); RB_RANGES_KERNELS = kernels of trainable Conv2D/Dense
 * layers (Keras kernel_regularizer). Adjacent tensors merge (the alignment padding between
 * them is zero and stays zero). Returns how many runs there are; writes at most max. */
enum { RB_RANGES_TRAINABLE = 0, RB_RANGES_KERNELS = 1 };
int rb_model_ranges(const rb_model *m, int kind, optim_range *out, int max);
/* Mask of m->params: 1 where the float belongs to a trainable weight (n = m->nparams). */
void rb_model_trainable_mask(const rb_model *m, uint8_t *mask);
void rb_model_zero_grads(rb_model *m);
void rb_model_set_bn_reduce(rb_model *m, rb_bn_reduce_fn fn, void *ctx);

/* Print a table like Keras model.summary(): layer (type), output shape, params, trainable,
 * inputs; then the totals. */
void rb_model_summary(const rb_model *m, FILE *f);
/* One line: layers, layers with weights and trainable ones, total/trainable/frozen params. */
void rb_model_summary_short(const rb_model *m, FILE *f);

/* ---- parts of a model (model_cut.c) ----------------------------------------------------- */
/* First node of the trainable head when a frozen part feeds it through a single tensor
 * (so the frozen part's output can be computed once, the training feature cache), or -1. */
int rb_model_head_start(const rb_model *m);
/* Nodes [lo, hi) of m as a model of their own: with lo > 0 its InputLayer carries node
 * lo-1's name and shape; names, trainable flags and BatchNorm modes as in m. Weights are
 * initialized; copy them with rb_model_copy_weights. */
int rb_model_cut(rb_model **out, const rb_model *m, int lo, int hi, rb_error *err);
/* Copy every weight and state tensor of src into dst where layer and weight names match;
 * returns how many tensors were copied. */
int rb_model_copy_weights(rb_model *dst, const rb_model *src);
/* Copy the optimizer state of every weight of dst from its namesake in src (optimizers of
 * the same config over dm's and sm's parameter buffers), and the step count. */
void rb_model_copy_optim(optim *dst, const rb_model *dm, const optim *src, const rb_model *sm);

/* ---- builders (model_build.c): they return description text (malloc'd) --------------- */
#define RB_HEAD_MAX_UNITS 8
typedef enum rb_pooling { RB_POOL_GAP = 0, RB_POOL_FLATTEN } rb_pooling;
typedef struct rb_head_opts {
    int n_classes;        /* outputs of the last Dense (softmax); 2+ */
    int sigmoid;          /* 1: one sigmoid unit instead (binary) */
    rb_pooling pooling;   /* after the base: GAP (seed 000) or Flatten (seed 001) */
    float dropout;        /* Dropout after pooling (0: none); seed 000: 0.3 */
    int nunits;           /* hidden Dense layers */
    int units[RB_HEAD_MAX_UNITS];
    rb_act activation;    /* of the hidden Dense layers */
    float dense_dropout;  /* Dropout after each hidden Dense (0: none) */
} rb_head_opts;

/* Set one head option from a job-file key: head_units (e.g. "128" or "256,128" or
 * "none"), head_dropout, head_dense_dropout, head_activation (relu|relu6|sigmoid|linear),
 * head_output (softmax|sigmoid), head_pooling (gap|flatten), classes. */
int rb_head_set(rb_head_opts *h, const char *key, const char *value, rb_error *err);

/* seed 000 head: GAP -> Dropout 0.3 -> Dense 128 relu -> Dense n softmax */
rb_head_opts rb_head_seed000(int n_classes);
/* seed 001 head: Flatten -> Dense 512 relu -> Dense n softmax */
rb_head_opts rb_head_seed001(int n_classes);

/* MobileNetV2 alpha 1.0 (Keras Applications names and graph, keras_applications 1.0.8:
 * Conv1_pad, correct_pad for odd sizes), input h x w x 3 (h, w >= 32), base frozen,
 * base_training 0, then the head (NULL: no head, the include_top=False base). */
char *rb_desc_mobilenetv2(int h, int w, const rb_head_opts *head, rb_error *err);
/* The seed-001 CNN: 4 x [Conv2D 3x3 valid + bias -> BN -> ReLU -> MaxPool 2] with
 * 32/64/128/128 filters, then the head (NULL: seed 001's own, 2 classes). */
char *rb_desc_cnn001(int h, int w, int c, const rb_head_opts *head, rb_error *err);

/* One call for drivers: backbone "mobilenetv2" | "cnn" (alias "cnn001"). */
int rb_model_build(rb_model **out, const char *backbone, int h, int w, int c,
                   const rb_head_opts *head, rb_error *err);

/* ---- workspace, forward, backward ------------------------------------------------------ */
enum {
    RB_WS_TRAIN = 1,    /* backward possible (keeps what backward reads) */
    RB_WS_KEEP_ALL = 2, /* every node's output kept in its own buffer, no fusion (tests) */
    RB_WS_NO_FUSE = 4,  /* no Conv+BN(+ReLU) folding (checks of the folding itself) */
    RB_WS_INPUT_GRAD = 8, /* with RB_WS_TRAIN: backward also gives the gradient w.r.t. the
                             InputLayer's output (rb_workspace_input_grad), Grad-CAM */
};
typedef struct rb_workspace rb_workspace;

/* Allocate everything a batch of up to `batch` samples needs. */
rb_workspace *rb_workspace_create(const rb_model *m, int batch, int flags, rb_error *err);
void rb_workspace_free(rb_workspace *ws);
/* Run forward/backward on `threads` threads (default 1), each on its own samples of the
 * batch with single-threaded BLAS (OpenBLAS is set to 1 thread during the call and
 * restored after, so no other thread of the process may call BLAS meanwhile). Drivers
 * pass the cores given to the rank (SLURM_CPUS_PER_TASK, else cores / local ranks). */
int rb_workspace_set_threads(rb_workspace *ws, int threads, rb_error *err);
size_t rb_workspace_bytes(const rb_workspace *ws);
int rb_workspace_batch(const rb_workspace *ws);
/* Pre-activation of the output node (n x output size) when the output ends in softmax or
 * sigmoid (fused in Dense, or a Softmax/Activation layer): the logits for the stable
 * loss_*_logits functions, as Keras' model.fit uses them. NULL otherwise. */
const float *rb_workspace_logits(const rb_workspace *ws);
/* RB_WS_INPUT_GRAD: gradient w.r.t. the InputLayer's output (n x its size) after the last
 * backward, or NULL. */
const float *rb_workspace_input_grad(const rb_workspace *ws);
/* Output of node i after the last forward (n x size floats), or NULL when its memory was
 * reused or folded (always available with RB_WS_KEEP_ALL, and for the output node). */
const float *rb_workspace_output(const rb_workspace *ws, int node);

typedef enum rb_input_type {
    RB_INPUT_U8 = 0,  /* uint8 pixels, NHWC: preprocessing of the InputLayer applies */
    RB_INPUT_F32_PIXELS, /* float pixels 0..255: preprocessing applies */
    RB_INPUT_F32,     /* already preprocessed float: taken as the InputLayer's output */
} rb_input_type;

typedef struct rb_forward_args {
    const void *input;   /* n x h x w x c */
    rb_input_type type;
    int n;               /* rows, 1..batch of the workspace (uneven last batch) */
    int training;        /* 1: Dropout active, trainable BN (batch statistics) updates its
                            moving statistics; 0: inference everywhere */
    int no_stat_update;  /* training only: do not update moving statistics (grad checks) */
    uint64_t rng_key;    /* dropout: e.g. the epoch; masks depend on (m->seed, node,
                            rng_key, global sample index) only */
    int64_t sample_base; /* global sample index of row 0 */
} rb_forward_args;

/* Forward pass; output at rb_workspace_output(ws, m->output). Returns 0, or -1 when the
 * arguments do not fit the workspace (wrong n, or trainable flags changed since the
 * workspace was made: create a new one). */
int rb_model_forward(rb_model *m, rb_workspace *ws, const rb_forward_args *a, rb_error *err);
/* Backward of the last forward (needs RB_WS_TRAIN): dout (n x output size) is the
 * gradient of the loss w.r.t. the model output; with `dout_is_preact` = 1 and an output
 * node ending in softmax/sigmoid, dout is taken w.r.t. the pre-activation (the stable
 * cross-entropy shortcut p - y). Accumulates (+=) into m->grads. */
int rb_model_backward(rb_model *m, rb_workspace *ws, const float *dout, int dout_is_preact,
                      rb_error *err);

/* With RADBATCH_PROFILE=1 in the environment when the workspace is made, forward and
 * backward time every layer; this prints the totals per layer class and the slowest. */
void rb_workspace_profile_print(const rb_workspace *ws, FILE *f);

/* FLOPs of one forward of one sample (multiply-add = 2), for benchmarks. */
double rb_model_flops(const rb_model *m);

#endif
