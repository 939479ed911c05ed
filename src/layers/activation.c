/* Element-wise activations and softmax. Forwards may run in place (out == in), so their
 * pointers are not restrict; backwards read the forward's OUTPUT (what the model keeps).
 * ReLU and ReLU6 backward pass the gradient where the output lies strictly inside the
 * linear piece (TensorFlow's ReluGrad/Relu6Grad: 0 < x, and x < 6 for ReLU6). */
#include "layers.h"
#include "layers_internal.h"

#include <math.h>

/* out, in: (n) */
RB_HOT void relu_forward(float *out, const float *in, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

/* din: (n) +=  dout, out: (n) */
RB_HOT void relu_backward(float *restrict din, const float *restrict dout,
                          const float *restrict out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        din[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

RB_HOT void relu6_forward(float *out, const float *in, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float v = in[i] > 0.0f ? in[i] : 0.0f;
        out[i] = v < 6.0f ? v : 6.0f;
    }
}

RB_HOT void relu6_backward(float *restrict din, const float *restrict dout,
                           const float *restrict out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        din[i] += (out[i] > 0.0f && out[i] < 6.0f) ? dout[i] : 0.0f;
}

/* out, in: (rows, k). exp(x - rowmax) so large logits cannot overflow; the row max gives
 * exp(0) = 1, so the sum is >= 1 and the division is safe. */
void softmax_forward(float *out, const float *in, int64_t rows, int k)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *x = in + r * k;
        float *y = out + r * k;
        float mx = x[0];
        for (int j = 1; j < k; j++)
            mx = x[j] > mx ? x[j] : mx;
        float sum = 0.0f;
        for (int j = 0; j < k; j++) {
            y[j] = expf(x[j] - mx);
            sum += y[j];
        }
        for (int j = 0; j < k; j++)
            y[j] /= sum;
    }
}

/* din: (rows,k) += out * (dout - sum_j dout_j*out_j)  dout, out: (rows,k) */
void softmax_backward(float *din, const float *dout, const float *out, int64_t rows, int k)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *g = dout + r * k, *y = out + r * k;
        float *d = din + r * k;
        double dot = 0.0;
        for (int j = 0; j < k; j++)
            dot += (double)g[j] * y[j];
        for (int j = 0; j < k; j++)
            d[j] += y[j] * (g[j] - (float)dot);
    }
}

/* out, in: (n). 1/(1+exp(-x)): exp overflows to inf for x < -88 and gives exactly 0. */
void sigmoid_forward(float *out, const float *in, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = 1.0f / (1.0f + expf(-in[i]));
}

/* din: (n) += dout * out * (1 - out) */
void sigmoid_backward(float *din, const float *dout, const float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        din[i] += dout[i] * out[i] * (1.0f - out[i]);
}
