/* Optimizers (see optim.h for the update rules, taken from Keras 3). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *optim_kind_name(optim_kind k)
{
    switch (k) {
    case OPTIM_ADAM: return "adam";
    case OPTIM_SGD: return "sgd";
    case OPTIM_RMSPROP: return "rmsprop";
    }
    return "unknown";
}

int optim_kind_parse(const char *s, optim_kind *k)
{
    static const optim_kind all[] = {OPTIM_ADAM, OPTIM_SGD, OPTIM_RMSPROP};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (s && strcmp(s, optim_kind_name(all[i])) == 0) {
            *k = all[i];
            return 0;
        }
    return -1;
}

void optim_config_default(optim_config *c, optim_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->beta_1 = 0.9f;
    c->beta_2 = 0.999f;
    c->epsilon = 1e-7f;
    c->rho = 0.9f;
    c->learning_rate = kind == OPTIM_SGD ? 0.01f : 0.001f;
}

int64_t optim_state_size(const optim_config *c, int64_t n)
{
    switch (c->kind) {
    case OPTIM_ADAM: return 2 * n;
    case OPTIM_SGD: return c->momentum != 0.0f ? n : 0;
    case OPTIM_RMSPROP: return n * (1 + (c->momentum > 0.0f) + (c->centered != 0));
    }
    return 0;
}

/* The state is blocks of n floats laid out like the parameters, one block per kind of
 * state (optim_state_size) */
void optim_state_copy_range(optim *dst, int64_t dst_off, const optim *src, int64_t src_off,
                            int64_t n)
{
    int64_t blocks = dst->n ? optim_state_size(&dst->cfg, dst->n) / dst->n : 0;
    for (int64_t k = 0; k < blocks; k++)
        memcpy(dst->state + k * dst->n + dst_off, src->state + k * src->n + src_off,
               (size_t)n * sizeof(float));
}

int optim_init(optim *o, const optim_config *c, int64_t n, rb_error *err)
{
    memset(o, 0, sizeof *o);
    if (c->kind != OPTIM_ADAM && c->kind != OPTIM_SGD && c->kind != OPTIM_RMSPROP)
        return rb_fail(err, "accepted: adam, sgd, rmsprop", "optimizer: unknown kind %d",
                       (int)c->kind);
    if (!(c->learning_rate > 0.0f) || !isfinite(c->learning_rate))
        return rb_fail(err, NULL, "optimizer %s: learning rate %g must be > 0",
                       optim_kind_name(c->kind), (double)c->learning_rate);
    if (c->kind == OPTIM_ADAM && !(c->beta_1 >= 0.0f && c->beta_1 < 1.0f && c->beta_2 >= 0.0f &&
                                   c->beta_2 < 1.0f && c->epsilon > 0.0f))
        return rb_fail(err, "Keras defaults: beta_1 0.9, beta_2 0.999, epsilon 1e-7",
                       "optimizer adam: beta_1 %g, beta_2 %g, epsilon %g out of range",
                       (double)c->beta_1, (double)c->beta_2, (double)c->epsilon);
    if (c->kind == OPTIM_SGD && !(c->momentum >= 0.0f && c->momentum <= 1.0f))
        return rb_fail(err, "Keras accepts momentum in [0, 1]", "optimizer sgd: momentum %g",
                       (double)c->momentum);
    if (c->kind == OPTIM_RMSPROP && !(c->rho >= 0.0f && c->rho < 1.0f && c->epsilon > 0.0f &&
                                      c->momentum >= 0.0f && c->momentum <= 1.0f))
        return rb_fail(err, "Keras defaults: rho 0.9, momentum 0, epsilon 1e-7",
                       "optimizer rmsprop: rho %g, momentum %g, epsilon %g out of range",
                       (double)c->rho, (double)c->momentum, (double)c->epsilon);
    if (n < 0)
        return rb_fail(err, NULL, "optimizer: %lld parameters", (long long)n);
    o->cfg = *c;
    o->n = n;
    int64_t ns = optim_state_size(c, n);
    if (ns > 0) {
        o->state = calloc((size_t)ns, sizeof(float));
        if (!o->state)
            return rb_fail(err, NULL, "optimizer: out of memory for %lld floats of state",
                           (long long)ns);
    }
    return 0;
}

void optim_free(optim *o)
{
    free(o->state);
    memset(o, 0, sizeof *o);
}

static void adam_range(const optim_config *c, float *restrict p, const float *restrict g,
                       float *restrict m, float *restrict v, int64_t count, float alpha)
{
    const float one_b1 = 1.0f - c->beta_1, one_b2 = 1.0f - c->beta_2, eps = c->epsilon;
    for (int64_t i = 0; i < count; i++) {
        m[i] += (g[i] - m[i]) * one_b1;
        v[i] += (g[i] * g[i] - v[i]) * one_b2;
        p[i] -= (m[i] * alpha) / (sqrtf(v[i]) + eps);
    }
}

static void sgd_range(const optim_config *c, float *restrict p, const float *restrict g,
                      float *restrict m, int64_t count, float lr)
{
    const float mu = c->momentum;
    if (!m) {
        for (int64_t i = 0; i < count; i++)
            p[i] -= g[i] * lr;
    } else if (c->nesterov) {
        for (int64_t i = 0; i < count; i++) {
            m[i] = m[i] * mu - g[i] * lr;
            p[i] += m[i] * mu - g[i] * lr;
        }
    } else {
        for (int64_t i = 0; i < count; i++) {
            m[i] = m[i] * mu - g[i] * lr;
            p[i] += m[i];
        }
    }
}

static void rmsprop_range(const optim_config *c, float *restrict p, const float *restrict g,
                          float *restrict v, float *restrict s, float *restrict a,
                          int64_t count, float lr)
{
    const float rho = c->rho, one_rho = 1.0f - c->rho, eps = c->epsilon, mu = c->momentum;
    for (int64_t i = 0; i < count; i++) {
        v[i] = rho * v[i] + one_rho * (g[i] * g[i]);
        float d;
        if (a) {
            a[i] = rho * a[i] + one_rho * g[i];
            d = v[i] - a[i] * a[i] + eps;
        } else {
            d = v[i] + eps;
        }
        float inc = (lr * g[i]) / sqrtf(d);
        if (s) {
            s[i] = mu * s[i] + inc;
            p[i] -= s[i];
        } else {
            p[i] -= inc;
        }
    }
}

void optim_step(optim *o, float *params, const float *grads, const optim_range *ranges,
                int n_ranges, float lr)
{
    const optim_config *c = &o->cfg;
    if (lr < 0.0f)
        lr = c->learning_rate;
    const int64_t n = o->n;
    float alpha = 0.0f;
    if (c->kind == OPTIM_ADAM) {
        /* float32 like Keras: 1 - 0.999f^1 is 0.00099998713, not 0.001 */
        const float t = (float)(o->step + 1);
        const float b1p = powf(c->beta_1, t), b2p = powf(c->beta_2, t);
        alpha = lr * sqrtf(1.0f - b2p) / (1.0f - b1p);
    }
    for (int r = 0; r < n_ranges; r++) {
        const int64_t off = ranges[r].offset, cnt = ranges[r].count;
        if (off < 0 || cnt <= 0 || off + cnt > n)
            continue; /* the model builds the ranges; an empty one is a frozen layer */
        float *p = params + off;
        const float *g = grads + off;
        switch (c->kind) {
        case OPTIM_ADAM:
            adam_range(c, p, g, o->state + off, o->state + n + off, cnt, alpha);
            break;
        case OPTIM_SGD:
            sgd_range(c, p, g, c->momentum != 0.0f ? o->state + off : NULL, cnt, lr);
            break;
        case OPTIM_RMSPROP: {
            float *v = o->state, *s = NULL, *a = NULL;
            int64_t next = n;
            if (c->momentum > 0.0f) {
                s = o->state + next;
                next += n;
            }
            if (c->centered)
                a = o->state + next;
            rmsprop_range(c, p, g, v + off, s ? s + off : NULL, a ? a + off : NULL, cnt, lr);
            break;
        }
        }
    }
    o->step++;
}

double optim_l2_penalty(const float *params, const optim_range *ranges, int n_ranges, float l2)
{
    double s = 0.0;
    for (int r = 0; r < n_ranges; r++)
        for (int64_t i = 0; i < ranges[r].count; i++) {
            double w = params[ranges[r].offset + i];
            s += w * w;
        }
    return (double)l2 * s;
}

void optim_l2_grad(float *grads, const float *params, const optim_range *ranges, int n_ranges,
                   float l2)
{
    const float k = 2.0f * l2;
    for (int r = 0; r < n_ranges; r++) {
        float *g = grads + ranges[r].offset;
        const float *w = params + ranges[r].offset;
        for (int64_t i = 0; i < ranges[r].count; i++)
            g[i] += k * w[i];
    }
}
