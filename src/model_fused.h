/* Fused inference kernels used by the model executor (model_fused.c); see there. */
#ifndef MODEL_FUSED_H
#define MODEL_FUSED_H

#include <stdint.h>

#include "layers.h"

/* x (rows, c) = act(x + b); act is an rb_act (linear, relu, relu6) */
void rb_fused_bias_act(float *x, const float *b, int64_t rows, int c, int act);
/* out (rows, N) = act(in (rows, K) @ w (K, N) + b), GEMM in row blocks of one image
 * (rows_img rows each) at a time */
void rb_fused_conv1x1(float *out, const float *in, const float *w, const float *b, int64_t rows,
                      int64_t rows_img, int K, int N, int act);
/* BatchNormalization + ReLU/ReLU6 (act) in one pass: y = act(x*a + b) */
void rb_fused_bn_act_forward(float *y, const float *x, const float *a, const float *b,
                             int64_t rows, int c, int act);
/* s_dy += sum dy, s_dyx += sum dy*(x - mu), dy = dout * act'(y) */
void rb_fused_bn_act_sums(double *s_dy, double *s_dyx, const float *dout, const float *y,
                          const float *x, const float *mu, int64_t rows, int c, int act);
/* din += A*dy + B*(x - mu) + C, dy = dout * act'(y) */
void rb_fused_bn_act_din(float *din, const float *dout, const float *y, const float *x,
                         const float *mu, const float *A, const float *B, const float *C,
                         int64_t rows, int c, int act);

#endif
