/* Fused inference kernels used by the model executor (model_fused.c); see there. */
#ifndef MODEL_FUSED_H
#define MODEL_FUSED_H

#include <stdint.h>

#include "layers.h"

/* x (rows, c) = act(x + b); act is an rb_act (linear, relu, relu6) */
void rb_fused_bias_act(float *x, const float *b, int64_t rows, int c, int act);
/* out (rows, N) = act(in (rows, K) @ w (K, N) + b), GEMM in row blocks */
void rb_fused_conv1x1(float *out, const float *in, const float *w, const float *b, int64_t rows,
                      int K, int N, int act);
#endif
