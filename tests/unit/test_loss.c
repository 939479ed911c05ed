/* Losses: hand-computed values, finite differences in double for every loss (class weights
 * and label smoothing included), the data-parallel split, and Keras' own values and
 * gradients (tests/golden/optim_golden.txt, written with tf.keras). */
#include "loss.h"
#include "rb_rng.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { KIND_CE_PROBS, KIND_CE_LOGITS, KIND_BCE_PROBS, KIND_BCE_LOGITS };
static const char *KIND_NAME[] = {"sparse_ce_probs", "sparse_ce_logits", "bce_probs",
                                  "bce_logits"};

/* One call of the loss `kind`; labels for CE, targets for BCE. */
static int run(int kind, const loss_spec *s, const float *x, const int32_t *labels,
               const float *targets, double *sum, float *dx, rb_error *err)
{
    switch (kind) {
    case KIND_CE_PROBS: return loss_sparse_ce_probs(s, x, labels, sum, dx, err);
    case KIND_CE_LOGITS: return loss_sparse_ce_logits(s, x, labels, sum, dx, err);
    case KIND_BCE_PROBS: return loss_bce_probs(s, x, targets, sum, dx, err);
    default: return loss_bce_logits(s, x, targets, sum, dx, err);
    }
}

static int close_abs_rel(double a, double b, double abs_tol, double rel)
{
    return fabs(a - b) <= abs_tol + rel * fabs(b);
}

/* ---------------------------------------------------------------- hand-computed */

static void hand_values(void)
{
    rb_error err = {0};
    double sum;
    float d[4];
    /* logits [0, 0], label 0: log 2; class weight 3 -> 3 log 2; d = 3 (0.5 - 1) / 2 */
    float z[2] = {0.0f, 0.0f};
    int32_t y0 = 0, y1 = 1;
    float cw[2] = {3.0f, 1.0f};
    loss_spec s = {.n = 1, .classes = 2, .global_n = 2, .class_weight = cw};
    CHECK(loss_sparse_ce_logits(&s, z, &y0, &sum, d, &err) == 0, "%s", err.msg);
    CHECK(fabs(sum - 3.0 * log(2.0)) < 1e-12, "weighted CE %.12g", sum);
    CHECK(fabs(d[0] + 0.75) < 1e-7 && fabs(d[1] - 0.75) < 1e-7, "CE grad %g %g", d[0], d[1]);
    /* smoothing cannot change the loss of equal logits: still log 2 */
    loss_spec s2 = {.n = 1, .classes = 2, .global_n = 1, .label_smoothing = 0.1f};
    CHECK(loss_sparse_ce_logits(&s2, z, &y0, &sum, d, &err) == 0 && fabs(sum - log(2.0)) < 1e-12,
          "smoothed equal logits %.12g", sum);
    /* with smoothing 0.1, C 2: targets 0.95 / 0.05, d = softmax - t = -0.45, 0.45 */
    CHECK(fabs(d[0] + 0.45f) < 1e-7 && fabs(d[1] - 0.45f) < 1e-7, "smoothed grad %g %g", d[0],
          d[1]);
    /* probabilities [0.25, 0.75], label 1: -log 0.75 = 0.2876821 */
    float p[2] = {0.25f, 0.75f};
    loss_spec s3 = {.n = 1, .classes = 2, .global_n = 1};
    CHECK(loss_sparse_ce_probs(&s3, p, &y1, &sum, d, &err) == 0 &&
              fabs(sum - 0.28768207245178) < 1e-9,
          "CE probs %.12g", sum);
    /* clipping (float32 bounds, as Keras): p [1, 0], label 1:
     * -log(1e-7f) + log(0.99999988f + 1e-7f) = 16.1180956 */
    float pc[2] = {1.0f, 0.0f};
    CHECK(loss_sparse_ce_probs(&s3, pc, &y1, &sum, d, &err) == 0 &&
              fabs(sum - (-log((double)1e-7f) + log((double)0.99999988f + (double)1e-7f))) < 1e-12 &&
              fabs(sum - 16.1180956) < 1e-6,
          "clipped CE %.12g", sum);
    CHECK(d[0] == 0.0f && d[1] == 0.0f, "no gradient through the clip: %g %g", d[0], d[1]);
    /* binary from logits, z 0, t 1: log 2, d = (0.5 - 1) / global_n */
    float zb = 0.0f, tb = 1.0f, db;
    loss_spec sb = {.n = 1, .classes = 1, .global_n = 4};
    CHECK(loss_bce_logits(&sb, &zb, &tb, &sum, &db, &err) == 0 && fabs(sum - log(2.0)) < 1e-12 &&
              fabs(db + 0.125f) < 1e-8,
          "bce logits %.12g %g", sum, db);
    /* binary from probs 0.8, t 1, class weights [1, 2]: 2 * -log 0.8 */
    float pb = 0.8f, cwb[2] = {1.0f, 2.0f};
    loss_spec sbw = {.n = 1, .classes = 1, .global_n = 1, .class_weight = cwb};
    CHECK(loss_bce_probs(&sbw, &pb, &tb, &sum, &db, &err) == 0 &&
              fabs(sum - 2.0 * -log((double)0.8f)) < 1e-12,
          "weighted bce probs %.12g", sum);
    /* a huge logit stays finite */
    float zh = 1000.0f, th = 0.0f;
    CHECK(loss_bce_logits(&sb, &zh, &th, &sum, &db, &err) == 0 && fabs(sum - 1000.0) < 1e-9,
          "bce stable %.12g", sum);
    float zc[2] = {1000.0f, -1000.0f};
    CHECK(loss_sparse_ce_logits(&s3, zc, &y1, &sum, d, &err) == 0 && fabs(sum - 2000.0) < 1e-9,
          "ce stable %.12g", sum);

    /* refusals */
    int32_t bad = 2;
    CHECK(loss_sparse_ce_logits(&s3, z, &bad, &sum, d, &err) < 0 &&
              strstr(err.msg, "sample 0 has label 2, expected 0..1"),
          "label out of range: %s", err.msg);
    int32_t unl = -1;
    CHECK(loss_sparse_ce_probs(&s3, p, &unl, &sum, d, &err) < 0, "unlabelled sample refused");
    loss_spec sg = {.n = 3, .classes = 2, .global_n = 2};
    CHECK(loss_sparse_ce_logits(&sg, z, &y0, &sum, d, &err) < 0 && strstr(err.msg, "bad sizes"),
          "global batch smaller than the part");
    float t3[3] = {0, 1, 0}, z3[3] = {0};
    loss_spec s3b = {.n = 1, .classes = 3, .global_n = 1, .class_weight = cwb};
    CHECK(loss_bce_logits(&s3b, z3, t3, &sum, NULL, &err) < 0 && strstr(err.msg, "class weights"),
          "binary class weights need one output");
}

/* ---------------------------------------------------------------- finite differences */

static void finite_differences(void)
{
    enum { N = 5, C = 4 };
    float cw[C] = {1.0f, 2.5f, 0.5f, 4.0f}, cwb[2] = {0.7f, 2.0f};
    int32_t labels[N] = {0, 3, 2, 1, 1};
    for (int kind = 0; kind < 4; kind++) {
        const int binary = kind >= KIND_BCE_PROBS;
        const int probs = kind == KIND_CE_PROBS || kind == KIND_BCE_PROBS;
        const int K = binary ? (kind == KIND_BCE_PROBS ? 1 : 3) : C;
        for (int variant = 0; variant < 4; variant++) {
            const int weighted = variant & 1;
            const float smooth = (variant & 2) ? 0.1f : 0.0f;
            if (binary && weighted && K != 1)
                continue;
            loss_spec s = {.n = N, .classes = K, .global_n = 7 /* a larger global batch */,
                           .class_weight = weighted ? (binary ? cwb : cw) : NULL,
                           .label_smoothing = smooth};
            float x[N * C], t[N * C], d[N * C];
            for (int i = 0; i < N * K; i++) {
                double u = rb_rng_uniform(11, (uint64_t)kind, (uint64_t)variant, (uint64_t)i);
                /* probabilities kept away from the clip (a kink); logits spread */
                x[i] = probs ? (float)(0.05 + 0.85 * u) : (float)(6.0 * u - 3.0);
                t[i] = (float)((i * 7 + kind) % 3 == 0);
            }
            if (kind == KIND_CE_PROBS) /* rows that are not normalized on purpose */
                for (int i = 0; i < N; i++) {
                    double sr = 0;
                    for (int j = 0; j < K; j++)
                        sr += x[i * K + j];
                    for (int j = 0; j < K; j++)
                        x[i * K + j] = (float)(x[i * K + j] / sr * (i == 2 ? 1.05 : 1.0));
                }
            rb_error err = {0};
            double sum;
            CHECK(run(kind, &s, x, labels, t, &sum, d, &err) == 0, "%s: %s", KIND_NAME[kind],
                  err.msg);
            double worst = 0.0;
            for (int i = 0; i < N * K; i++) {
                float xp[N * C], xm[N * C];
                memcpy(xp, x, sizeof x);
                memcpy(xm, x, sizeof x);
                float h = probs ? 1e-4f : 1e-2f;
                xp[i] = x[i] + h;
                xm[i] = x[i] - h;
                double sp, sm;
                run(kind, &s, xp, labels, t, &sp, NULL, &err);
                run(kind, &s, xm, labels, t, &sm, NULL, &err);
                /* d(sum / global_n)/dx by central differences on the exact float steps */
                double fd = (sp - sm) / ((double)xp[i] - (double)xm[i]) / (double)s.global_n;
                double e = fabs(d[i] - fd) / (fabs(fd) > 1e-2 ? fabs(fd) : 1e-2);
                worst = e > worst ? e : worst;
            }
            CHECK(worst < 1e-4, "%s weighted=%d smoothing=%g: gradient vs finite differences %.3g",
                  KIND_NAME[kind], weighted, (double)smooth, worst);
        }
    }
}

/* ---------------------------------------------------------------- data-parallel split */

static void split(void)
{
    enum { N = 7, C = 3 };
    float x[N * C], dfull[N * C], dpart[N * C], cw[C] = {2.0f, 1.0f, 0.5f};
    int32_t y[N];
    for (int i = 0; i < N * C; i++)
        x[i] = (float)(rb_rng_uniform(3, 0, (uint64_t)i, 0) * 4.0 - 2.0);
    for (int i = 0; i < N; i++)
        y[i] = i % C;
    rb_error err = {0};
    double full, a, b;
    loss_spec s = {.n = N, .classes = C, .global_n = N, .class_weight = cw};
    loss_sparse_ce_logits(&s, x, y, &full, dfull, &err);
    /* rank 0 takes 4 samples, rank 1 takes 3: uneven parts, the same global mean */
    loss_spec s0 = s, s1 = s;
    s0.n = 4;
    s1.n = 3;
    loss_sparse_ce_logits(&s0, x, y, &a, dpart, &err);
    loss_sparse_ce_logits(&s1, x + 4 * C, y + 4, &b, dpart + 4 * C, &err);
    CHECK(fabs((a + b) - full) < 1e-12, "sums add up: %.15g vs %.15g", a + b, full);
    CHECK(memcmp(dfull, dpart, sizeof dfull) == 0, "gradients identical to the single-process ones");
}

/* ---------------------------------------------------------------- tf.keras golden */

static int parse_floats(char *s, float *v, int cap)
{
    int n = 0;
    for (char *tok = strtok(s, " \n"); tok && n < cap; tok = strtok(NULL, " \n"))
        v[n++] = strtof(tok, NULL);
    return n;
}

static void golden(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/optim_golden.txt", test_srcdir());
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s (set RADBATCH_SRC)", path);
    if (!f)
        return;
    char line[8192], name[64] = "";
    int kind = -1, n = 0, c = 0, cases = 0, ncw = 0;
    float smoothing = 0, cw[16], x[256], yv[256], dx[256], d[256];
    double value = 0;
    double worst_v = 0, worst_d = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "loss ", 5)) {
            char cws[256] = "";
            if (sscanf(line + 5, "%63s n=%d c=%d smoothing=%f cw=%255s", name, &n, &c, &smoothing,
                       cws) != 5)
                continue;
            kind = -1;
            for (int k = 0; k < 4; k++)
                if (!strcmp(name, KIND_NAME[k]))
                    kind = k;
            ncw = 0;
            if (strcmp(cws, "none") != 0)
                for (char *t = strtok(cws, ","); t && ncw < 16; t = strtok(NULL, ","))
                    cw[ncw++] = strtof(t, NULL);
        } else if (!strncmp(line, "x ", 2)) {
            parse_floats(line + 2, x, 256);
        } else if (!strncmp(line, "y ", 2)) {
            parse_floats(line + 2, yv, 256);
        } else if (!strncmp(line, "value ", 6)) {
            value = strtod(line + 6, NULL);
        } else if (!strncmp(line, "dx ", 3) && kind >= 0) {
            parse_floats(line + 3, dx, 256);
            int32_t labels[256];
            for (int i = 0; i < n; i++)
                labels[i] = (int32_t)yv[i];
            loss_spec s = {.n = n, .classes = c, .global_n = n, .class_weight = ncw ? cw : NULL,
                           .label_smoothing = smoothing};
            rb_error err = {0};
            double sum;
            CHECK(run(kind, &s, x, labels, yv, &sum, d, &err) == 0, "%s: %s", name, err.msg);
            double mean = sum / n;
            /* Keras computes in float32: agreement to float32 rounding */
            double ev = fabs(mean - value) / (fabs(value) > 1e-3 ? fabs(value) : 1e-3);
            CHECK(ev < 2e-6, "%s smoothing=%g cw=%d: loss %.9g, Keras %.9g", name,
                  (double)smoothing, ncw, mean, value);
            worst_v = ev > worst_v ? ev : worst_v;
            for (int i = 0; i < n * c; i++) {
                double e = fabs(d[i] - dx[i]);
                CHECK(close_abs_rel(d[i], dx[i], 1e-7, 1e-5), "%s smoothing=%g cw=%d: d[%d] %.9g, "
                      "Keras %.9g", name, (double)smoothing, ncw, i, d[i], dx[i]);
                worst_d = e > worst_d ? e : worst_d;
            }
            cases++;
            kind = -1;
        }
    }
    fclose(f);
    CHECK(cases == 16, "%d loss cases in the golden file, 16 expected", cases);
    printf("ok %d loss cases vs tf.keras: worst loss rel diff %.3g, worst gradient abs diff "
           "%.3g\n", cases, worst_v, worst_d);
}

int main(void)
{
    hand_values();
    finite_differences();
    split();
    golden();
    return TEST_DONE();
}
