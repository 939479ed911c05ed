/* Weight initializers as Keras defines them, drawn from the counter-based RNG (rb_rng.h).
 *
 * Element i of a tensor is a pure function of (seed, tensor id, i): the same on any number
 * of ranks or threads, and independent of the order tensors are initialized in. The values
 * are not Keras' own random streams (those depend on TensorFlow's generator); the
 * distributions, fans and limits are Keras'. */
#ifndef INIT_H
#define INIT_H

#include <stdint.h>

typedef enum {
    INIT_ZEROS = 0,
    INIT_ONES,
    INIT_GLOROT_UNIFORM, /* U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)) */
    INIT_HE_NORMAL,      /* truncated normal (at 2 sd), stddev sqrt(2 / fan_in) / .8796 */
} init_kind;

const char *init_kind_name(init_kind k);          /* "zeros", "glorot_uniform", ... */
int init_kind_parse(const char *s, init_kind *k); /* Keras names; 0 or -1 */

/* Keras' compute_fans: rank 0: 1, 1; rank 1: n, n; rank 2 [in, out]; rank >= 3 (conv
 * kernels [kh, kw, in, out], depthwise [kh, kw, C, mult]): receptive field = product of
 * all but the last two, fan_in = in * receptive, fan_out = out * receptive. */
void init_fans(int ndim, const int64_t *shape, double *fan_in, double *fan_out);

/* Keras' default for a weight name: kernel / depthwise_kernel -> glorot_uniform; gamma,
 * moving_variance -> ones; bias, beta, moving_mean and anything else -> zeros. */
init_kind init_default_for(const char *weight);

/* A stable id for a tensor from its names (FNV-1a of "layer/weight"). */
uint64_t init_tensor_id(const char *layer, const char *weight);

/* Fill data (prod(shape) floats). */
void init_fill(float *data, int ndim, const int64_t *shape, init_kind kind, uint64_t seed,
               uint64_t tensor_id);

#endif
