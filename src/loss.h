/* Losses with Keras' exact semantics, for data-parallel training.
 *
 * Each function takes this rank's part of a global batch (n samples) and returns the SUM
 * of the (weighted) per-sample losses over those samples; the gradient it writes is that
 * of the MEAN over the global batch (global_n samples, given by the caller), so the ranks'
 * gradients add up (one allreduce SUM) to exactly the single-process gradient, uneven last
 * batches included. The mean loss to report is (sum over ranks) / global_n.
 *
 * Keras semantics (checked against tf.keras 3.15, see docs/formats-model.md "Losses"):
 *  - class weights multiply each sample's loss by class_weight[label]; the reduction
 *    (sum_over_batch_size) divides by the number of samples, NOT by the sum of weights.
 *  - from probabilities, probabilities are clipped to [1e-7, 1 - 1e-7] in float32, i.e.
 *    [1e-7f, 0.99999988f] (no gradient where clipped). Sparse CE is Keras' sparse path: -log(c_y) + log(sum_j c_j), c = clip(p).
 *  - label smoothing s (Keras' CategoricalCrossentropy on one-hot labels; Keras' sparse
 *    loss has none): target = onehot * (1 - s) + s / C; from probabilities this follows
 *    Keras' categorical path: p / sum(p), clipped, -sum_j t_j log(p_j).
 *  - binary: target * (1 - s) + 0.5 s; the per-sample loss is the mean over the K outputs.
 *  - NOTE: when a Keras model's last layer is a softmax (or sigmoid) activation, model.fit
 *    does not use the probabilities at all: Keras takes the logits it cached on the
 *    activation's output (`_keras_logits`) and computes the loss from logits, without
 *    clipping. To train like Keras, use the *_logits functions on the pre-activation
 *    output; the *_probs functions are for a model whose probabilities come from elsewhere.
 *
 * Gradients are written (=, not +=), in float; sums are accumulated in double. */
#ifndef LOSS_H
#define LOSS_H

#include "rb_error.h"

#include <stdint.h>

#define LOSS_EPSILON 1e-7 /* keras.config.epsilon() */

typedef struct loss_spec {
    int64_t n;                 /* samples in this call */
    int64_t classes;           /* columns of the input: C classes, or K binary outputs */
    int64_t global_n;          /* samples in the global batch: the mean's denominator */
    const float *class_weight; /* NULL, or weights by label: C of them (categorical) or 2
                                * (binary with K == 1, by target 0/1) */
    float label_smoothing;     /* 0: none */
} loss_spec;

/* probs, dprobs: (n, C)   labels: (n) in [0, C)
 * sum: sum_i w_i * loss_i   dprobs (may be NULL): d(sum / global_n)/dprobs */
int loss_sparse_ce_probs(const loss_spec *s, const float *probs, const int32_t *labels,
                         double *sum, float *dprobs, rb_error *err);

/* logits, dlogits: (n, C); stable log-softmax. */
int loss_sparse_ce_logits(const loss_spec *s, const float *logits, const int32_t *labels,
                          double *sum, float *dlogits, rb_error *err);

/* probs, targets, dprobs: (n, K); targets in [0, 1]. */
int loss_bce_probs(const loss_spec *s, const float *probs, const float *targets, double *sum,
                   float *dprobs, rb_error *err);

/* logits, targets, dlogits: (n, K); max(z,0) - z t + log(1 + exp(-|z|)). */
int loss_bce_logits(const loss_spec *s, const float *logits, const float *targets, double *sum,
                    float *dlogits, rb_error *err);

#endif
