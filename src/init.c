/* Weight initializers (see init.h). */
#include "init.h"

#include "rb_rng.h"

#include <math.h>
#include <string.h>

/* RNG purpose key, so initializer draws never coincide with dropout/augmentation ones */
#define INIT_PURPOSE 0x696e6974ULL /* "init" */

static const char *const NAMES[] = {"zeros", "ones", "glorot_uniform", "he_normal"};

const char *init_kind_name(init_kind k)
{
    return (unsigned)k < sizeof NAMES / sizeof NAMES[0] ? NAMES[k] : "unknown";
}

int init_kind_parse(const char *s, init_kind *k)
{
    for (unsigned i = 0; s && i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strcmp(s, NAMES[i]) == 0) {
            *k = (init_kind)i;
            return 0;
        }
    return -1;
}

void init_fans(int ndim, const int64_t *shape, double *fan_in, double *fan_out)
{
    if (ndim <= 0) {
        *fan_in = *fan_out = 1.0;
    } else if (ndim == 1) {
        *fan_in = *fan_out = (double)shape[0];
    } else if (ndim == 2) {
        *fan_in = (double)shape[0];
        *fan_out = (double)shape[1];
    } else {
        double receptive = 1.0;
        for (int i = 0; i < ndim - 2; i++)
            receptive *= (double)shape[i];
        *fan_in = (double)shape[ndim - 2] * receptive;
        *fan_out = (double)shape[ndim - 1] * receptive;
    }
}

init_kind init_default_for(const char *w)
{
    if (!w)
        return INIT_ZEROS;
    if (!strcmp(w, "kernel") || !strcmp(w, "depthwise_kernel") || !strcmp(w, "pointwise_kernel"))
        return INIT_GLOROT_UNIFORM;
    if (!strcmp(w, "gamma") || !strcmp(w, "moving_variance"))
        return INIT_ONES;
    return INIT_ZEROS;
}

uint64_t init_tensor_id(const char *layer, const char *weight)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = layer; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    h = (h ^ '/') * 0x100000001b3ULL;
    for (const char *p = weight; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return h;
}

/* Uniform in (0, 1): 53 random bits, never 0 (for the log in Box-Muller). */
static double uniform_open(uint64_t seed, uint64_t id, uint64_t i, uint64_t c)
{
    return ((double)(rb_rng_u64(seed, id, i, c) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

void init_fill(float *data, int ndim, const int64_t *shape, init_kind kind, uint64_t seed,
               uint64_t tensor_id)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    double fan_in, fan_out;
    init_fans(ndim, shape, &fan_in, &fan_out);
    switch (kind) {
    case INIT_ZEROS:
    case INIT_ONES:
        for (int64_t i = 0; i < n; i++)
            data[i] = kind == INIT_ONES ? 1.0f : 0.0f;
        break;
    case INIT_GLOROT_UNIFORM: {
        const double limit = sqrt(6.0 / (fan_in + fan_out));
        for (int64_t i = 0; i < n; i++) {
            double u = uniform_open(seed, tensor_id, (uint64_t)i, INIT_PURPOSE);
            data[i] = (float)((2.0 * u - 1.0) * limit);
        }
        break;
    }
    case INIT_HE_NORMAL: {
        /* Keras: VarianceScaling(2, fan_in, truncated_normal): a normal truncated at two
         * standard deviations, scaled so the variance is 2 / fan_in (.8796 is the stddev
         * of a standard normal truncated to [-2, 2]) */
        const double sd = sqrt(2.0 / fan_in) / 0.87962566103423978;
        for (int64_t i = 0; i < n; i++) {
            double z = 0.0;
            for (uint64_t attempt = 0; attempt < 64; attempt++) {
                double u1 = uniform_open(seed, tensor_id, (uint64_t)i, INIT_PURPOSE + 1 + 2 * attempt);
                double u2 = uniform_open(seed, tensor_id, (uint64_t)i, INIT_PURPOSE + 2 + 2 * attempt);
                z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
                if (fabs(z) <= 2.0)
                    break;
                z = 0.0; /* 64 rejections in a row (p ~ 0.05^64) never happen */
            }
            data[i] = (float)(z * sd);
        }
        break;
    }
    }
}
