/* Optimizers with Keras 3's defaults and update rules, on flat float buffers.
 *
 * The model keeps all parameters in one buffer and all gradients in one buffer; an
 * optimizer owns one state buffer laid out per kind (below) with the same indexing, so a
 * parameter's moments sit at the same offset in each block. Only the ranges given to
 * optim_step (the trainable parameters) change; the state of frozen ranges stays as it was.
 * All ranks run the same step on the same (allreduced) gradients and get the same bits.
 *
 * Update rules (keras/src/optimizers/{adam,sgd,rmsprop}.py, Keras 3.15), computed in
 * float32 like Keras, with t = step + 1:
 *   Adam:    alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
 *            m += (g - m) * (1 - b1);  v += (g^2 - v) * (1 - b2)
 *            p -= m * alpha / (sqrt(v) + eps)            (eps outside the sqrt)
 *   SGD:     no momentum: p -= lr * g
 *            momentum mu: m = mu * m - lr * g;  p += m   (Nesterov: p += mu * m - lr * g)
 *   RMSprop: v = rho * v + (1 - rho) * g^2
 *            centered: a = rho * a + (1 - rho) * g;  d = v - a^2 + eps, else d = v + eps
 *            inc = lr * g / sqrt(d)                       (eps INSIDE the sqrt, unlike Adam)
 *            momentum mu > 0: s = mu * s + inc;  p -= s;  else p -= inc
 * State layout (floats, n = parameters): Adam [m | v]; SGD [m] when momentum > 0, else
 * nothing; RMSprop [v | s when momentum > 0 | a when centered]. All start at zero. */
#ifndef OPTIM_H
#define OPTIM_H

#include "rb_error.h"

#include <stdint.h>

typedef enum {
    OPTIM_ADAM = 0,
    OPTIM_SGD,
    OPTIM_RMSPROP,
} optim_kind;

const char *optim_kind_name(optim_kind k);           /* "adam", "sgd", "rmsprop" */
int optim_kind_parse(const char *s, optim_kind *k);  /* 0, or -1 for an unknown name */

typedef struct optim_config {
    optim_kind kind;
    float learning_rate; /* Keras defaults: Adam 0.001, SGD 0.01, RMSprop 0.001 */
    float beta_1;        /* Adam 0.9 */
    float beta_2;        /* Adam 0.999 */
    float epsilon;       /* Adam, RMSprop 1e-7 */
    float momentum;      /* SGD 0, RMSprop 0 */
    int nesterov;        /* SGD 0 */
    float rho;           /* RMSprop 0.9 */
    int centered;        /* RMSprop 0 */
} optim_config;

/* Keras' defaults for kind. */
void optim_config_default(optim_config *c, optim_kind kind);

/* Floats of state for n parameters. */
int64_t optim_state_size(const optim_config *c, int64_t n);

/* A run of parameters in the flat buffer: [offset, offset + count). */
typedef struct optim_range {
    int64_t offset, count;
} optim_range;

typedef struct optim {
    optim_config cfg;
    int64_t n;     /* parameters the state covers (the whole parameter buffer) */
    float *state;  /* optim_state_size(cfg, n) floats, owned */
    int64_t step;  /* steps taken: Keras' optimizer.iterations */
} optim;

/* Allocate zeroed state. Checks the hyperparameters (ranges Keras accepts). */
int optim_init(optim *o, const optim_config *c, int64_t n, rb_error *err);
void optim_free(optim *o);

/* Copy the state of n parameters at src_off of src to dst_off of dst, for every kind of
 * state the optimizer keeps per parameter (moments, velocities), e.g. between the
 * parameter layouts of a model and a model cut out of it. Both have the same config. */
void optim_state_copy_range(optim *dst, int64_t dst_off, const optim *src, int64_t src_off,
                            int64_t n);

/* One step on params[r] from grads[r] for every range r, then step++. lr is this step's
 * learning rate (a schedule's value); lr < 0 means cfg.learning_rate. */
void optim_step(optim *o, float *params, const float *grads, const optim_range *ranges,
                int n_ranges, float lr);

/* L2 kernel regularization as Keras' regularizers.L2(l2): the loss gains
 * l2 * sum(w^2) over the given ranges (the kernels that carry a regularizer), not divided
 * by the batch size; the gradient gains 2 * l2 * w. Add it after the gradient allreduce and
 * the division by the global batch, on every rank alike. */
double optim_l2_penalty(const float *params, const optim_range *ranges, int n_ranges, float l2);
void optim_l2_grad(float *grads, const float *params, const optim_range *ranges, int n_ranges,
                   float l2);

#endif
