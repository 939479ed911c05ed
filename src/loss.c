/* Losses (see loss.h for the Keras semantics followed). */
#include "loss.h"

#include <math.h>
#include <stdlib.h>

static int check_spec(const loss_spec *s, int binary, rb_error *err)
{
    if (s->n < 0 || s->classes < 1 || s->global_n < 1 || s->global_n < s->n)
        return rb_fail(err, NULL,
                       "loss: bad sizes (n %lld, classes %lld, global batch %lld)",
                       (long long)s->n, (long long)s->classes, (long long)s->global_n);
    if (!(s->label_smoothing >= 0.0f && s->label_smoothing <= 1.0f))
        return rb_fail(err, "label smoothing is a fraction in [0, 1]",
                       "loss: label smoothing %g out of range", (double)s->label_smoothing);
    if (binary && s->class_weight && s->classes != 1)
        return rb_fail(err, "class weights need one binary output (Keras maps the target 0/1 "
                       "to a weight)", "loss: class weights with %lld binary outputs",
                       (long long)s->classes);
    return 0;
}

static int check_labels(const loss_spec *s, const int32_t *labels, rb_error *err)
{
    for (int64_t i = 0; i < s->n; i++)
        if (labels[i] < 0 || labels[i] >= s->classes)
            return rb_fail(err, "unlabelled (-1) or out-of-range samples cannot be trained on",
                           "loss: sample %lld has label %d, expected 0..%lld", (long long)i,
                           (int)labels[i], (long long)s->classes - 1);
    return 0;
}

/* Keras clips a float32 tensor, so the bounds are float32: 1e-7f and 1 - 1e-7 rounded to
 * 0.99999988f. It matters: 1 - 0.99999988f is 1.19e-7, not 1e-7, and -log of it is 15.94,
 * not 16.12 (the loss of a saturated wrong binary prediction). */
#define CLIP_LO ((double)(float)LOSS_EPSILON)
#define CLIP_HI ((double)(float)(1.0 - LOSS_EPSILON))

static double clip(double p) { return p < CLIP_LO ? CLIP_LO : (p > CLIP_HI ? CLIP_HI : p); }

/* TF's clip_by_value passes the gradient where lo <= x <= hi */
static int inside(double p) { return p >= CLIP_LO && p <= CLIP_HI; }

int loss_sparse_ce_probs(const loss_spec *s, const float *probs, const int32_t *labels,
                         double *sum, float *dprobs, rb_error *err)
{
    if (check_spec(s, 0, err) < 0 || check_labels(s, labels, err) < 0)
        return -1;
    const int64_t C = s->classes;
    const double ls = s->label_smoothing, inv_n = 1.0 / (double)s->global_n;
    double total = 0.0;
    for (int64_t i = 0; i < s->n; i++) {
        const float *p = probs + i * C;
        const int y = labels[i];
        const double w = s->class_weight ? s->class_weight[y] : 1.0;
        double loss;
        if (ls == 0.0) {
            /* Keras' sparse path: log-softmax of log(clip(p)) */
            double csum = 0.0;
            for (int64_t j = 0; j < C; j++)
                csum += clip(p[j]);
            loss = -log(clip(p[y])) + log(csum);
            if (dprobs) {
                float *d = dprobs + i * C;
                for (int64_t j = 0; j < C; j++) {
                    double g = inside(p[j]) ? 1.0 / csum - (j == y ? 1.0 / clip(p[y]) : 0.0) : 0.0;
                    d[j] = (float)(w * g * inv_n);
                }
            }
        } else {
            /* Keras' categorical path: q = p / sum(p), clip, -sum t log q */
            double S = 0.0;
            for (int64_t j = 0; j < C; j++)
                S += p[j];
            double gq_dot_q = 0.0;
            loss = 0.0;
            for (int64_t j = 0; j < C; j++) {
                double t = (j == y ? 1.0 - ls : 0.0) + ls / (double)C;
                double q = p[j] / S;
                loss -= t * log(clip(q));
                gq_dot_q += (inside(q) ? -t / clip(q) : 0.0) * q;
            }
            if (dprobs) {
                float *d = dprobs + i * C;
                for (int64_t j = 0; j < C; j++) {
                    double t = (j == y ? 1.0 - ls : 0.0) + ls / (double)C;
                    double q = p[j] / S;
                    double gq = inside(q) ? -t / clip(q) : 0.0;
                    d[j] = (float)(w * (gq - gq_dot_q) / S * inv_n);
                }
            }
        }
        total += w * loss;
    }
    *sum = total;
    return 0;
}

int loss_sparse_ce_logits(const loss_spec *s, const float *logits, const int32_t *labels,
                          double *sum, float *dlogits, rb_error *err)
{
    if (check_spec(s, 0, err) < 0 || check_labels(s, labels, err) < 0)
        return -1;
    const int64_t C = s->classes;
    const double ls = s->label_smoothing, inv_n = 1.0 / (double)s->global_n;
    double total = 0.0;
    for (int64_t i = 0; i < s->n; i++) {
        const float *z = logits + i * C;
        const int y = labels[i];
        const double w = s->class_weight ? s->class_weight[y] : 1.0;
        double m = z[0];
        for (int64_t j = 1; j < C; j++)
            m = z[j] > m ? z[j] : m;
        double se = 0.0;
        for (int64_t j = 0; j < C; j++)
            se += exp(z[j] - m);
        const double lse = m + log(se);
        /* -sum_j t_j (z_j - lse) = lse - sum_j t_j z_j, since sum_j t_j = 1 */
        double tz = 0.0;
        for (int64_t j = 0; j < C; j++)
            tz += ((j == y ? 1.0 - ls : 0.0) + ls / (double)C) * z[j];
        total += w * (lse - tz);
        if (dlogits) {
            float *d = dlogits + i * C;
            for (int64_t j = 0; j < C; j++) {
                double t = (j == y ? 1.0 - ls : 0.0) + ls / (double)C;
                d[j] = (float)(w * (exp(z[j] - lse) - t) * inv_n);
            }
        }
    }
    *sum = total;
    return 0;
}

static int check_targets(const loss_spec *s, const float *t, rb_error *err)
{
    for (int64_t i = 0; i < s->n * s->classes; i++)
        if (!(t[i] >= 0.0f && t[i] <= 1.0f))
            return rb_fail(err, NULL, "loss: binary target %g at %lld is not in [0, 1]",
                           (double)t[i], (long long)i);
    return 0;
}

/* Keras maps a binary target to class_weight[int(target)]. */
static double binary_weight(const loss_spec *s, const float *targets, int64_t i)
{
    if (!s->class_weight)
        return 1.0;
    return s->class_weight[targets[i] >= 0.5f ? 1 : 0];
}

int loss_bce_probs(const loss_spec *s, const float *probs, const float *targets, double *sum,
                   float *dprobs, rb_error *err)
{
    if (check_spec(s, 1, err) < 0 || check_targets(s, targets, err) < 0)
        return -1;
    const int64_t K = s->classes;
    const double ls = s->label_smoothing, inv = 1.0 / ((double)s->global_n * (double)K);
    double total = 0.0;
    for (int64_t i = 0; i < s->n; i++) {
        const double w = binary_weight(s, targets, i);
        double l = 0.0;
        for (int64_t k = 0; k < K; k++) {
            const int64_t e = i * K + k;
            const double t = targets[e] * (1.0 - ls) + 0.5 * ls;
            const double c = clip(probs[e]);
            l -= t * log(c) + (1.0 - t) * log(1.0 - c);
            if (dprobs)
                dprobs[e] = (float)(inside(probs[e]) ? w * (-t / c + (1.0 - t) / (1.0 - c)) * inv
                                                      : 0.0);
        }
        total += w * l / (double)K;
    }
    *sum = total;
    return 0;
}

int loss_bce_logits(const loss_spec *s, const float *logits, const float *targets, double *sum,
                    float *dlogits, rb_error *err)
{
    if (check_spec(s, 1, err) < 0 || check_targets(s, targets, err) < 0)
        return -1;
    const int64_t K = s->classes;
    const double ls = s->label_smoothing, inv = 1.0 / ((double)s->global_n * (double)K);
    double total = 0.0;
    for (int64_t i = 0; i < s->n; i++) {
        const double w = binary_weight(s, targets, i);
        double l = 0.0;
        for (int64_t k = 0; k < K; k++) {
            const int64_t e = i * K + k;
            const double t = targets[e] * (1.0 - ls) + 0.5 * ls;
            const double z = logits[e];
            /* TF's sigmoid_cross_entropy_with_logits: stable for any z */
            l += (z > 0 ? z : 0.0) - z * t + log1p(exp(-fabs(z)));
            if (dlogits) {
                const double sg = z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
                dlogits[e] = (float)(w * (sg - t) * inv);
            }
        }
        total += w * l / (double)K;
    }
    *sum = total;
    return 0;
}
