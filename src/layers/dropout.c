/* Inverted dropout as Keras/TensorFlow: keep an element when u >= rate (u uniform in
 * [0,1)) and scale kept values by 1/(1-rate), computed in double and rounded to float as
 * tf.nn.dropout does with a Python scale; dropped ones become 0.
 *
 * u = rb_rng_uniform(seed, key, global sample index, element index): a pure function of
 * the sample, not of its position in this rank's batch, so a batch split over ranks (or
 * into several calls) draws the same mask. key separates dropout layers and epochs/steps
 * (the caller mixes them in). */
#include "layers.h"
#include "layers_internal.h"
#include "rb_rng.h"

#include <string.h>

static float dropout_scale(float rate)
{
    return (float)(1.0 / (1.0 - (double)rate));
}

/* out: (n, per_sample)  mask: (n*per_sample) bytes, 1 = kept  in: (n, per_sample) */
void dropout_forward(float *out, uint8_t *mask, const float *in, float rate, int n,
                     int64_t per_sample, uint64_t seed, uint64_t key, int64_t sample_base)
{
    const int64_t total = (int64_t)n * per_sample;
    if (!(rate > 0.0f)) { /* rate 0 (or NaN): identity */
        memset(mask, 1, (size_t)total);
        if (out != in)
            memmove(out, in, sizeof(float) * total);
        return;
    }
    const float scale = rate < 1.0f ? dropout_scale(rate) : 0.0f;
    for (int i = 0; i < n; i++) {
        uint64_t sample = (uint64_t)(sample_base + i);
        for (int64_t j = 0; j < per_sample; j++) {
            int64_t e = (int64_t)i * per_sample + j;
            uint8_t keep = rb_rng_uniform(seed, key, sample, (uint64_t)j) >= rate;
            mask[e] = keep;
            out[e] = keep ? in[e] * scale : 0.0f;
        }
    }
}

/* din: (n) += dout * mask * scale  dout: (n)  mask: (n) */
void dropout_backward(float *din, const float *dout, const uint8_t *mask, float rate, int64_t n)
{
    if (!(rate > 0.0f)) {
        for (int64_t i = 0; i < n; i++)
            din[i] += dout[i];
        return;
    }
    const float scale = rate < 1.0f ? dropout_scale(rate) : 0.0f;
    for (int64_t i = 0; i < n; i++)
        din[i] += mask[i] ? dout[i] * scale : 0.0f;
}
