/* labels: invariance */
/* Forward kernels of src/layers/ against the naive double-precision references of
 * layers_ref.h (Keras/TensorFlow semantics: 'same'/'valid' geometry, valid-cell average
 * pooling, batch statistics, stable softmax, exact input rescaling).
 *
 * Tolerances: a float dot product of K terms computed in any order (blocked GEMM, FMA or
 * not) is within K*u*sum|terms| of the exact value (u = 2^-24, the classic bound
 * gamma_K), so sums are compared with (K+2)*u*sum|terms| from the reference: it cannot
 * fail for a correct kernel, and a wrong tap, pad or stride changes a result by about the
 * size of one term, far above it. Element-wise maps are compared with a few ulps. */
#include "layers.h"
#include "layers_ref.h"
#include "test_util.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U (1.0 / 16777216.0) /* float32 unit roundoff 2^-24 */

/* count elements with |got - ref| > tol[i] (or tol0 when tol is NULL); report the worst */
static int64_t n_bad(const float *got, const double *ref, const double *tol, double tol0,
                     int64_t n, const char *what)
{
    int64_t bad = 0, worst = -1;
    double worst_ratio = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double t = tol ? tol[i] : tol0, d = fabs((double)got[i] - ref[i]);
        if (!(d <= t)) {
            bad++;
            double ratio = t > 0 ? d / t : INFINITY;
            if (!(ratio <= worst_ratio)) {
                worst_ratio = ratio;
                worst = i;
            }
        }
    }
    if (bad)
        fprintf(stderr, "  %s: %lld bad, worst at %lld: got %.9g want %.9g (tol %.3g)\n", what,
                (long long)bad, (long long)worst, got[worst], ref[worst],
                tol ? tol[worst] : tol0);
    return bad;
}

/* ---------------------------------------------------------------- geometry */
static void test_shape_init(void)
{
    int checked = 0;
    for (int same = 0; same <= 1; same++)
        for (int h = 1; h <= 12; h++)
            for (int k = 1; k <= 5; k++)
                for (int s = 1; s <= 3; s++) {
                    conv2d_shape cs;
                    int rc = conv2d_shape_init(&cs, 2, h, h + 1, 3, k, k, s, s,
                                               same ? PADDING_SAME : PADDING_VALID, 4);
                    ref_geom g = ref_geom_make(2, h, h + 1, 3, k, k, s, s, same, 4);
                    if (g.ho <= 0 || g.wo <= 0) {
                        CHECK(rc == -1, "h=%d k=%d s=%d same=%d: empty output accepted", h, k,
                              s, same);
                        continue;
                    }
                    int tot_h = (g.ho - 1) * s + k - h, tot_w = (g.wo - 1) * s + k - (h + 1);
                    tot_h = same && tot_h > 0 ? tot_h : 0;
                    tot_w = same && tot_w > 0 ? tot_w : 0;
                    CHECK(rc == 0 && cs.ho == g.ho && cs.wo == g.wo && cs.pad_top == g.pt &&
                              cs.pad_left == g.pl && cs.pad_bottom == tot_h - g.pt &&
                              cs.pad_right == tot_w - g.pl,
                          "h=%d k=%d s=%d same=%d: got ho=%d wo=%d pads %d/%d %d/%d", h, k, s,
                          same, cs.ho, cs.wo, cs.pad_top, cs.pad_bottom, cs.pad_left,
                          cs.pad_right);
                    checked++;
                }
    /* a few cases spelled out (TensorFlow's documented results) */
    conv2d_shape cs;
    conv2d_shape_init(&cs, 1, 224, 224, 3, 3, 3, 2, 2, PADDING_SAME, 32);
    CHECK(cs.ho == 112 && cs.pad_top == 0 && cs.pad_bottom == 1, "224 3x3/2 same");
    conv2d_shape_init(&cs, 1, 7, 7, 3, 3, 3, 2, 2, PADDING_SAME, 32);
    CHECK(cs.ho == 4 && cs.pad_top == 1 && cs.pad_bottom == 1, "7 3x3/2 same");
    conv2d_shape_init(&cs, 1, 150, 150, 3, 3, 3, 1, 1, PADDING_VALID, 32);
    CHECK(cs.ho == 148 && cs.pad_top == 0 && cs.pad_bottom == 0, "150 3x3 valid");
    conv2d_shape_init(&cs, 1, 6, 6, 3, 4, 4, 1, 1, PADDING_SAME, 1);
    CHECK(cs.ho == 6 && cs.pad_top == 1 && cs.pad_bottom == 2, "even kernel: extra at bottom");
    CHECK(conv2d_shape_init(&cs, 1, 2, 2, 3, 3, 3, 1, 1, PADDING_VALID, 1) == -1, "empty");
    CHECK(checked > 300, "geometry cases checked: %d", checked);
}

/* ---------------------------------------------------------------- conv2d */
typedef struct conv_case {
    int n, h, w, cin, kh, kw, sh, sw, same, cout, bias;
} conv_case;

static void run_conv_case(const conv_case *t)
{
    conv2d_shape s;
    if (conv2d_shape_init(&s, t->n, t->h, t->w, t->cin, t->kh, t->kw, t->sh, t->sw,
                          t->same ? PADDING_SAME : PADDING_VALID, t->cout) != 0) {
        CHECK(0, "shape init failed");
        return;
    }
    ref_geom g = ref_geom_make(t->n, t->h, t->w, t->cin, t->kh, t->kw, t->sh, t->sw, t->same,
                               t->cout);
    int64_t nin = (int64_t)t->n * t->h * t->w * t->cin, nw = (int64_t)t->kh * t->kw * t->cin * t->cout;
    int64_t nout = (int64_t)t->n * s.ho * s.wo * t->cout;
    float *in = malloc(sizeof(float) * nin), *w = malloc(sizeof(float) * nw);
    float *b = malloc(sizeof(float) * t->cout), *out = malloc(sizeof(float) * nout);
    size_t ns = conv2d_scratch_floats(&s);
    float *scratch = malloc(sizeof(float) * (ns ? ns : 1));
    ref_fill(in, nin, -1, 1);
    ref_fill(w, nw, -1, 1);
    ref_fill(b, t->cout, -1, 1);
    for (int64_t i = 0; i < nout; i++)
        out[i] = NAN; /* every output must be written */
    conv2d_forward(out, in, w, t->bias ? b : NULL, &s, scratch);
    double *din = ref_dup(in, nin), *dw = ref_dup(w, nw), *db = ref_dup(b, t->cout);
    double *ref = malloc(sizeof(double) * nout), *tol = malloc(sizeof(double) * nout);
    ref_conv(ref, tol, din, dw, t->bias ? db : NULL, &g);
    const double K = (double)t->kh * t->kw * t->cin + 2;
    for (int64_t i = 0; i < nout; i++)
        tol[i] = K * U * tol[i] * 1.01 + 1e-30;
    char what[160];
    snprintf(what, sizeof what, "conv n%d %dx%dx%d k%dx%d s%d,%d %s co%d%s", t->n, t->h, t->w,
             t->cin, t->kh, t->kw, t->sh, t->sw, t->same ? "same" : "valid", t->cout,
             t->bias ? " bias" : "");
    CHECK(n_bad(out, ref, tol, 0, nout, what) == 0, "%s (scratch %zu floats)", what, ns);
    free(in), free(w), free(b), free(out), free(scratch), free(din), free(dw), free(db);
    free(ref), free(tol);
}

static void test_conv2d(void)
{
    static const conv_case cases[] = {
        {2, 5, 7, 13, 1, 1, 1, 1, 1, 11, 1},  /* 1x1: direct GEMM */
        {3, 4, 4, 8, 1, 1, 1, 1, 0, 16, 0},
        {2, 6, 5, 7, 1, 1, 2, 2, 1, 5, 1},    /* 1x1 stride 2, even/odd */
        {2, 7, 5, 5, 3, 3, 1, 1, 1, 6, 1},    /* 3x3 same odd */
        {2, 7, 5, 5, 3, 3, 1, 1, 1, 6, 0},
        {2, 7, 7, 3, 3, 3, 2, 2, 1, 9, 0},    /* 3x3/2 same odd: pad 1 top, 1 bottom */
        {2, 8, 6, 3, 3, 3, 2, 2, 1, 9, 1},    /* 3x3/2 same even: pad 0 top, 1 bottom */
        {2, 9, 9, 3, 3, 3, 2, 2, 0, 32, 0},   /* MobileNetV2 stem after ZeroPadding */
        {1, 9, 8, 4, 5, 5, 1, 1, 1, 3, 1},    /* 5x5 same */
        {2, 9, 8, 4, 5, 5, 2, 2, 1, 3, 0},    /* 5x5/2 same, odd and even */
        {2, 10, 9, 3, 3, 3, 1, 1, 0, 7, 1},   /* 3x3 valid (seed-001 CNN) */
        {1, 3, 3, 2, 5, 5, 1, 1, 1, 2, 1},    /* kernel larger than the input */
        {2, 5, 6, 3, 3, 2, 1, 2, 1, 4, 1},    /* non-square kernel and strides */
        {2, 40, 40, 16, 3, 3, 1, 1, 1, 8, 1}, /* several im2col blocks */
        {1, 20, 20, 64, 5, 5, 1, 1, 1, 4, 0}, /* minimum block rows, several blocks */
        {1, 1, 1, 3, 3, 3, 2, 2, 1, 2, 1},    /* 1x1 image, all padding */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_conv_case(&cases[i]);
}

/* ---------------------------------------------------------------- depthwise */
static void run_dw_case(int n, int h, int w, int c, int k, int st, int same, int bias)
{
    conv2d_shape s;
    if (conv2d_shape_init(&s, n, h, w, c, k, k, st, st, same ? PADDING_SAME : PADDING_VALID,
                          c) != 0) {
        CHECK(0, "dw shape init failed");
        return;
    }
    ref_geom g = ref_geom_make(n, h, w, c, k, k, st, st, same, c);
    int64_t nin = (int64_t)n * h * w * c, nw = (int64_t)k * k * c,
            nout = (int64_t)n * s.ho * s.wo * c;
    float *in = malloc(sizeof(float) * nin), *wt = malloc(sizeof(float) * nw);
    float *b = malloc(sizeof(float) * c), *out = malloc(sizeof(float) * nout);
    ref_fill(in, nin, -1, 1);
    ref_fill(wt, nw, -1, 1);
    ref_fill(b, c, -1, 1);
    for (int64_t i = 0; i < nout; i++)
        out[i] = NAN;
    depthwise_forward(out, in, wt, bias ? b : NULL, &s);
    double *din = ref_dup(in, nin), *dw = ref_dup(wt, nw), *db = ref_dup(b, c);
    double *ref = malloc(sizeof(double) * nout), *tol = malloc(sizeof(double) * nout);
    ref_depthwise(ref, tol, din, dw, bias ? db : NULL, &g);
    for (int64_t i = 0; i < nout; i++)
        tol[i] = (k * k + 2) * U * tol[i] * 1.01 + 1e-30;
    char what[128];
    snprintf(what, sizeof what, "depthwise n%d %dx%dx%d k%d s%d %s%s", n, h, w, c, k, st,
             same ? "same" : "valid", bias ? " bias" : "");
    CHECK(n_bad(out, ref, tol, 0, nout, what) == 0, "%s", what);
    free(in), free(wt), free(b), free(out), free(din), free(dw), free(db), free(ref), free(tol);
}

static void test_depthwise(void)
{
    run_dw_case(2, 7, 6, 5, 3, 1, 1, 1);   /* stride 1 same, odd/even */
    run_dw_case(2, 7, 7, 13, 3, 2, 1, 0);  /* stride 2 same odd: pads 1/1 */
    run_dw_case(2, 8, 6, 13, 3, 2, 1, 1);  /* stride 2 same even: pads 0/1 */
    run_dw_case(2, 9, 9, 20, 3, 2, 0, 0);  /* MobileNetV2: ZeroPadding then 3x3/2 valid */
    run_dw_case(1, 12, 11, 32, 3, 1, 1, 0);/* vector body plus interior path */
    run_dw_case(1, 12, 11, 37, 3, 1, 0, 1);
    run_dw_case(2, 9, 8, 6, 5, 1, 1, 1);   /* 5x5: generic path */
    run_dw_case(2, 9, 8, 6, 5, 2, 1, 0);
    run_dw_case(1, 1, 1, 7, 3, 1, 1, 1);   /* 1x1 image, all border */
    run_dw_case(1, 2, 2, 7, 3, 2, 1, 1);
    run_dw_case(3, 3, 3, 1, 3, 1, 0, 1);   /* one channel */
}

/* ---------------------------------------------------------------- zeropad */
static void test_zeropad(void)
{
    pad_shape s;
    pad_shape_init(&s, 2, 3, 4, 5, 0, 1, 2, 1);
    CHECK(s.ho == 4 && s.wo == 7, "pad shape %dx%d", s.ho, s.wo);
    int64_t nin = 2 * 3 * 4 * 5, nout = 2LL * s.ho * s.wo * 5;
    float *in = malloc(sizeof(float) * nin), *out = malloc(sizeof(float) * nout);
    ref_fill(in, nin, 1, 2);
    for (int64_t i = 0; i < nout; i++)
        out[i] = NAN;
    zeropad_forward(out, in, &s);
    int64_t bad = 0;
    for (int i = 0; i < 2; i++)
        for (int y = 0; y < s.ho; y++)
            for (int x = 0; x < s.wo; x++)
                for (int c = 0; c < 5; c++) {
                    int iy = y - 0, ix = x - 2;
                    float want = (iy >= 0 && iy < 3 && ix >= 0 && ix < 4)
                                     ? in[((i * 3 + iy) * 4 + ix) * 5 + c]
                                     : 0.0f;
                    bad += out[((i * s.ho + y) * s.wo + x) * 5 + c] != want;
                }
    CHECK(bad == 0, "zeropad: %lld wrong", (long long)bad);
    free(in), free(out);
}

/* ---------------------------------------------------------------- batchnorm */
static void test_batchnorm(void)
{
    const int64_t m = 37;
    const int c = 1030; /* more than one RB_CHUNK of channels, not a multiple of 8 */
    const float eps = 1e-3f;
    float *x = malloc(sizeof(float) * m * c), *y = malloc(sizeof(float) * m * c);
    float *gamma = malloc(sizeof(float) * c), *beta = malloc(sizeof(float) * c);
    float *mean = malloc(sizeof(float) * c), *var = malloc(sizeof(float) * c);
    ref_fill(x, m * c, -3, 5);
    ref_fill(gamma, c, 0.5, 2);
    ref_fill(beta, c, -1, 1);
    ref_fill(mean, c, -1, 2);
    ref_fill(var, c, 0, 3);
    var[0] = 0.0f; /* the fixture has zero moving variances: eps goes under the sqrt */
    double *dx = ref_dup(x, m * c), *dg = ref_dup(gamma, c), *dbt = ref_dup(beta, c);
    double *dm = ref_dup(mean, c), *dv = ref_dup(var, c);
    double *ref = malloc(sizeof(double) * m * c), *tol = malloc(sizeof(double) * m * c);

    /* inference: y = x*a + (beta - mean*a), a = gamma/sqrt(var+eps): about 6 roundings of
     * terms no larger than |x*a| + |beta| + |mean*a|; 16u of that bounds them. */
    ref_bn_infer(ref, dx, dg, dbt, dm, dv, (double)eps, m, c);
    for (int64_t r = 0; r < m; r++)
        for (int j = 0; j < c; j++) {
            double a = fabs(dg[j]) / sqrt(dv[j] + (double)eps);
            tol[r * c + j] = 16 * U * (fabs(dx[r * c + j]) * a + fabs(dbt[j]) + fabs(dm[j]) * a);
        }
    batchnorm_forward_infer(y, x, gamma, beta, mean, var, eps, m, c);
    CHECK(n_bad(y, ref, tol, 0, m * c, "bn infer") == 0, "batchnorm_forward_infer");
    memcpy(y, x, sizeof(float) * m * c); /* in place */
    batchnorm_forward_infer(y, y, gamma, beta, mean, var, eps, m, c);
    CHECK(n_bad(y, ref, tol, 0, m * c, "bn infer in place") == 0, "in place");
    /* scale=False / center=False */
    double *ones = malloc(sizeof(double) * c), *zeros = calloc(c, sizeof(double));
    for (int j = 0; j < c; j++)
        ones[j] = 1.0;
    ref_bn_infer(ref, dx, ones, zeros, dm, dv, (double)eps, m, c);
    batchnorm_forward_infer(y, x, NULL, NULL, mean, var, eps, m, c);
    CHECK(n_bad(y, ref, NULL, 1e-5 * 8, m * c, "bn infer no gamma/beta") == 0, "NULL gamma/beta");

    /* training: batch statistics over all m rows, biased variance */
    double *sum = malloc(sizeof(double) * c), *sumsq = malloc(sizeof(double) * c);
    double *s2 = malloc(sizeof(double) * c), *q2 = malloc(sizeof(double) * c);
    float *smean = malloc(sizeof(float) * c), *sinv = malloc(sizeof(float) * c);
    double *rmean = malloc(sizeof(double) * c), *rvar = malloc(sizeof(double) * c);
    batchnorm_stats(sum, sumsq, x, m, c);
    /* split into two "ranks" and add: the sync-BN path must give the same statistics */
    batchnorm_stats(s2, q2, x, 20, c);
    {
        double *s3 = malloc(sizeof(double) * c), *q3 = malloc(sizeof(double) * c);
        batchnorm_stats(s3, q3, x + 20 * c, m - 20, c);
        int64_t bad = 0;
        for (int j = 0; j < c; j++)
            bad += fabs(s2[j] + s3[j] - sum[j]) > 1e-12 * (1 + fabs(sum[j])) ||
                   fabs(q2[j] + q3[j] - sumsq[j]) > 1e-12 * sumsq[j];
        CHECK(bad == 0, "split statistics differ in %lld channels", (long long)bad);
        free(s3), free(q3);
    }
    batchnorm_forward_train(y, smean, sinv, x, gamma, beta, sum, sumsq, (double)m, eps, m, c);
    ref_bn_train(ref, rmean, rvar, dx, dg, dbt, (double)eps, m, c);
    int64_t bad = 0;
    for (int j = 0; j < c; j++) {
        double is = 1.0 / sqrt(rvar[j] + (double)eps);
        bad += fabs(smean[j] - rmean[j]) > 4 * U * fabs(rmean[j]) + 1e-12 ||
               fabs(sinv[j] - is) > 4 * U * is;
        for (int64_t r = 0; r < m; r++) {
            double a = fabs(dg[j]) * is;
            tol[r * c + j] = 16 * U * (fabs(dx[r * c + j]) * a + fabs(dbt[j]) + fabs(rmean[j]) * a);
        }
    }
    CHECK(bad == 0, "saved mean/invstd wrong in %lld channels", (long long)bad);
    CHECK(n_bad(y, ref, tol, 0, m * c, "bn train") == 0, "batchnorm_forward_train");

    /* moving statistics, Keras 3: moving*0.99f + batch*float32(1 - 0.99), float32 ops,
     * BIASED batch variance. With m = 37 the unbiased one is 2.8 % larger: caught. */
    float *mm = malloc(sizeof(float) * c), *mv = malloc(sizeof(float) * c);
    memcpy(mm, mean, sizeof(float) * c);
    memcpy(mv, var, sizeof(float) * c);
    batchnorm_update_moving(mm, mv, sum, sumsq, (double)m, 0.99f, c);
    int64_t bad_m = 0, bad_v = 0;
    for (int j = 0; j < c; j++) {
        volatile float om = 0.01f; /* float32(1.0 - 0.99) in Python: 0.01f exactly */
        volatile float t1 = mean[j] * 0.99f, t2 = (float)rmean[j] * om;
        volatile float want_m = t1 + t2;
        volatile float v1 = var[j] * 0.99f, v2 = (float)rvar[j] * om;
        volatile float want_v = v1 + v2;
        /* the batch mean/var may differ from the double reference in the last bit of the
         * float conversion; allow 2 ulps of the result */
        bad_m += fabsf(mm[j] - want_m) > 2 * FLT_EPSILON * fabsf(want_m) + 1e-30f;
        bad_v += fabsf(mv[j] - want_v) > 2 * FLT_EPSILON * fabsf(want_v);
    }
    CHECK(bad_m == 0 && bad_v == 0, "moving update: %lld means, %lld variances off",
          (long long)bad_m, (long long)bad_v);
    /* exactness of the momentum arithmetic itself: batch = 1.0 exactly, moving = 0 */
    {
        double s1 = 37.0, q1 = 37.0 * 1.0 + 37.0 * 4.0; /* mean 1, E[x^2] 5: var 4 */
        float m0 = 0.0f, v0 = 0.0f;
        batchnorm_update_moving(&m0, &v0, &s1, &q1, 37.0, 0.99f, 1);
        CHECK(m0 == 0.01f && v0 == 4.0f * 0.01f, "1-momentum not float32(0.01): %.9g %.9g", m0,
              v0);
    }

    free(x), free(y), free(gamma), free(beta), free(mean), free(var), free(dx), free(dg);
    free(dbt), free(dm), free(dv), free(ref), free(tol), free(ones), free(zeros), free(sum);
    free(sumsq), free(s2), free(q2), free(smean), free(sinv), free(rmean), free(rvar);
    free(mm), free(mv);
}

/* ---------------------------------------------------------------- activations */
static void test_activations(void)
{
    const int64_t n = 1003;
    float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n);
    ref_fill(x, n, -10, 10);
    x[0] = 0.0f, x[1] = 6.0f, x[2] = -0.0f, x[3] = 5.9999995f, x[4] = 6.0000005f;
    relu_forward(y, x, n);
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += y[i] != (x[i] > 0 ? x[i] : 0.0f);
    CHECK(bad == 0, "relu: %lld wrong", (long long)bad);
    relu6_forward(y, x, n);
    bad = 0;
    for (int64_t i = 0; i < n; i++)
        bad += y[i] != (x[i] > 6 ? 6.0f : x[i] > 0 ? x[i] : 0.0f);
    CHECK(bad == 0, "relu6: %lld wrong", (long long)bad);
    memcpy(y, x, sizeof(float) * n);
    relu6_forward(y, y, n); /* in place */
    CHECK(y[1] == 6.0f && y[4] == 6.0f && y[3] == 5.9999995f && y[0] == 0.0f, "relu6 in place");

    /* sigmoid: a few ulps, including saturated ends */
    x[5] = 100.0f, x[6] = -100.0f, x[7] = -88.0f, x[8] = 30.0f;
    sigmoid_forward(y, x, n);
    bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = 1.0 / (1.0 + exp(-(double)x[i]));
        /* below FLT_MIN a float has no relative precision left (and expf(100) overflows
         * to inf, giving exactly 0): absolute 1e-38 there */
        bad += !(fabs(y[i] - r) <= 8 * U * r + 1e-38);
    }
    CHECK(bad == 0, "sigmoid: %lld wrong", (long long)bad);

    /* softmax: huge logits must neither overflow nor lose the distribution */
    const int rows = 5, k = 7;
    float lg[5 * 7];
    ref_fill(lg, rows * k, -5, 5);
    for (int j = 0; j < k; j++) {
        lg[0 * k + j] = 1000.0f + j;       /* exp(1000) overflows without the shift */
        lg[1 * k + j] = -1000.0f - 3 * j;  /* and underflows to 0/0 */
        lg[2 * k + j] = j == 3 ? 89.0f : 88.0f;
    }
    float sm[5 * 7];
    softmax_forward(sm, lg, rows, k);
    double *dl = ref_dup(lg, rows * k), rs[5 * 7];
    ref_softmax(rs, dl, rows, k);
    bad = 0;
    for (int i = 0; i < rows * k; i++)
        bad += !(fabs(sm[i] - rs[i]) <= 8 * k * U * rs[i] + 1e-37) || !isfinite(sm[i]);
    CHECK(bad == 0, "softmax: %lld wrong", (long long)bad);
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int j = 0; j < k; j++)
            s += sm[r * k + j];
        CHECK(fabs(s - 1.0) < 1e-6, "softmax row %d sums to %.9g", r, s);
    }
    memcpy(sm, lg, sizeof sm);
    softmax_forward(sm, sm, rows, k); /* in place */
    bad = 0;
    for (int i = 0; i < rows * k; i++)
        bad += !(fabs(sm[i] - rs[i]) <= 8 * k * U * rs[i] + 1e-37);
    CHECK(bad == 0, "softmax in place: %lld wrong", (long long)bad);
    free(dl), free(x), free(y);
}

/* ---------------------------------------------------------------- merge */
static void test_merge(void)
{
    const int64_t rows = 11;
    const int c[3] = {3, 8, 5};
    float a[11 * 3], b[11 * 8], d[11 * 5], out[11 * 16], sum[11 * 3];
    ref_fill(a, rows * 3, -1, 1);
    ref_fill(b, rows * 8, -1, 1);
    ref_fill(d, rows * 5, -1, 1);
    add_forward(sum, a, b, rows * 3);
    int bad = 0;
    for (int i = 0; i < rows * 3; i++)
        bad += sum[i] != a[i] + b[i];
    CHECK(bad == 0, "add");
    const float *ins[3] = {a, b, d};
    concat_forward(out, ins, c, 3, rows);
    bad = 0;
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < 3; j++)
            bad += out[r * 16 + j] != a[r * 3 + j];
        for (int j = 0; j < 8; j++)
            bad += out[r * 16 + 3 + j] != b[r * 8 + j];
        for (int j = 0; j < 5; j++)
            bad += out[r * 16 + 11 + j] != d[r * 5 + j];
    }
    CHECK(bad == 0, "concat: %d wrong", bad);
}

/* ---------------------------------------------------------------- pooling */
static void run_pool_case(int n, int h, int w, int c, int k, int st, int same)
{
    conv2d_shape s;
    if (conv2d_shape_init(&s, n, h, w, c, k, k, st, st, same ? PADDING_SAME : PADDING_VALID,
                          c) != 0) {
        CHECK(0, "pool shape");
        return;
    }
    ref_geom g = ref_geom_make(n, h, w, c, k, k, st, st, same, c);
    int64_t nin = (int64_t)n * h * w * c, nout = (int64_t)n * s.ho * s.wo * c;
    float *in = malloc(sizeof(float) * nin), *out = malloc(sizeof(float) * nout);
    int32_t *am = malloc(sizeof(int32_t) * nout);
    ref_fill(in, nin, -5, 5); /* negative values: padding must not act as a 0 */
    double *din = ref_dup(in, nin), *ref = malloc(sizeof(double) * nout);
    char what[96];
    snprintf(what, sizeof what, "pool n%d %dx%dx%d k%d s%d %s", n, h, w, c, k, st,
             same ? "same" : "valid");
    maxpool_forward(out, am, in, &s);
    ref_pool(ref, din, &g, 1);
    CHECK(n_bad(out, ref, NULL, 0.0, nout, what) == 0, "max %s", what); /* max is exact */
    int64_t bad = 0, per = (int64_t)h * w * c;
    for (int64_t i = 0; i < nout; i++) {
        int64_t img = i / ((int64_t)s.ho * s.wo * c);
        bad += am[i] < 0 || am[i] >= per || in[img * per + am[i]] != out[i] ||
               am[i] % c != i % c;
    }
    CHECK(bad == 0, "argmax %s: %lld wrong", what, (long long)bad);
    avgpool_forward(out, in, &s);
    ref_pool(ref, din, &g, 0);
    /* sum of <= k*k terms of |x| <= 5, then one division */
    CHECK(n_bad(out, ref, NULL, (k * k + 2) * U * 5.0 * 1.01, nout, what) == 0, "avg %s", what);
    free(in), free(out), free(am), free(din), free(ref);
}

static void test_pool(void)
{
    run_pool_case(2, 8, 8, 5, 2, 2, 0);   /* seed-001 CNN MaxPool 2 */
    run_pool_case(2, 7, 9, 5, 2, 2, 0);   /* odd: last row/column dropped */
    run_pool_case(2, 7, 9, 5, 2, 2, 1);   /* odd 'same': extra cell at bottom/right */
    run_pool_case(2, 7, 7, 13, 3, 2, 1);
    run_pool_case(2, 8, 6, 13, 3, 2, 1);
    run_pool_case(1, 6, 5, 3, 3, 1, 1);   /* avg 'same': corner windows count 4 cells */
    run_pool_case(2, 7, 7, 9, 7, 7, 0);   /* nsfw head: AveragePooling2D 7x7/7 */

    /* explicit Keras check: 3x3 'same' stride 1 average on a 3x3 ones-and-index image:
     * the corner output is the mean of 4 cells, not their sum / 9 */
    conv2d_shape s;
    conv2d_shape_init(&s, 1, 3, 3, 1, 3, 3, 1, 1, PADDING_SAME, 1);
    float in[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, out[9];
    avgpool_forward(out, in, &s);
    CHECK(out[0] == 3.0f && out[4] == 5.0f && out[1] == 3.5f,
          "avg same corner %g center %g edge %g", out[0], out[4], out[1]);

    /* global average pooling */
    const int n = 3, hw = 49, c = 21;
    float *x = malloc(sizeof(float) * n * hw * c), g[3 * 21];
    ref_fill(x, (int64_t)n * hw * c, 0, 6);
    gap_forward(g, x, n, hw, c);
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < c; j++) {
            double r = 0;
            for (int p = 0; p < hw; p++)
                r += x[((int64_t)i * hw + p) * c + j];
            r /= hw;
            bad += !(fabs(g[i * c + j] - r) <= (hw + 2) * U * r);
        }
    CHECK(bad == 0, "gap: %d wrong", bad);
    free(x);
}

/* ---------------------------------------------------------------- dense */
static void test_dense(void)
{
    const int n = 5, nin = 37, nout = 19;
    float *x = malloc(sizeof(float) * n * nin), *w = malloc(sizeof(float) * nin * nout);
    float b[19], *y = malloc(sizeof(float) * n * nout);
    ref_fill(x, n * nin, -1, 1);
    ref_fill(w, nin * nout, -1, 1);
    ref_fill(b, nout, -1, 1);
    double *dx = ref_dup(x, n * nin), *dw = ref_dup(w, nin * nout), *db = ref_dup(b, nout);
    double ref[5 * 19], tol[5 * 19];
    for (int withb = 0; withb <= 1; withb++) {
        dense_forward(y, x, w, withb ? b : NULL, n, nin, nout);
        ref_dense(ref, tol, dx, dw, withb ? db : NULL, n, nin, nout);
        for (int i = 0; i < n * nout; i++)
            tol[i] *= (nin + 2) * U * 1.01;
        CHECK(n_bad(y, ref, tol, 0, n * nout, "dense") == 0, "dense bias=%d", withb);
    }
    free(x), free(w), free(y), free(dx), free(dw), free(db);
}

/* ---------------------------------------------------------------- dropout */
static void test_dropout(void)
{
    const int n = 6;
    const int64_t per = 5000;
    const float rate = 0.3f;
    float *x = malloc(sizeof(float) * n * per), *y = malloc(sizeof(float) * n * per);
    float *y2 = malloc(sizeof(float) * n * per);
    uint8_t *mask = malloc(n * per), *mask2 = malloc(n * per);
    ref_fill(x, n * per, -1, 1);
    dropout_forward(y, mask, x, rate, n, per, 42, 7, 100);
    /* the same global samples in two calls (two ranks, or two micro-batches) */
    dropout_forward(y2, mask2, x, rate, 2, per, 42, 7, 100);
    dropout_forward(y2 + 2 * per, mask2 + 2 * per, x + 2 * per, rate, n - 2, per, 42, 7, 102);
    CHECK(memcmp(mask, mask2, n * per) == 0 && memcmp(y, y2, sizeof(float) * n * per) == 0,
          "dropout mask depends on how the batch is split");
    int64_t kept = 0, bad = 0;
    const float scale = (float)(1.0 / (1.0 - 0.3)); /* Keras: Python 1/(1-rate), to float */
    for (int64_t i = 0; i < n * per; i++) {
        kept += mask[i];
        bad += mask[i] ? y[i] != x[i] * scale : y[i] != 0.0f;
    }
    /* 30000 Bernoulli(0.7) draws: sd of the fraction 0.0026, allow 4 sd */
    double frac = (double)kept / (n * per);
    CHECK(fabs(frac - 0.7) < 0.0106, "kept fraction %.4f", frac);
    CHECK(bad == 0, "dropout values: %lld wrong", (long long)bad);
    /* another key (layer) or sample base gives another mask */
    dropout_forward(y2, mask2, x, rate, n, per, 42, 8, 100);
    CHECK(memcmp(mask, mask2, n * per) != 0, "key ignored");
    dropout_forward(y2, mask2, x, rate, n, per, 42, 7, 101);
    CHECK(memcmp(mask + per, mask2, per) == 0 && memcmp(mask, mask2, per) != 0,
          "sample_base not the global sample index");
    /* rate 0: identity */
    dropout_forward(y2, mask2, x, 0.0f, n, per, 42, 7, 100);
    CHECK(memcmp(y2, x, sizeof(float) * n * per) == 0, "rate 0 not identity");
    free(x), free(y), free(y2), free(mask), free(mask2);
}

/* ---------------------------------------------------------------- rescale */
static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_rescale(void)
{
    uint8_t px[256 * 2];
    float out[256 * 2];
    for (int p = 0; p < 256; p++)
        px[p] = (uint8_t)p, px[256 + p] = (uint8_t)(255 - p);

    /* x = float32(p); x /= 127.5; x -= 1.0 in IEEE float32, as numpy/TF evaluate it */
    rescale_forward(out, px, 2, 256, RESCALE_MINUS1_1);
    int bad = 0;
    uint64_t sum = 0;
    for (int p = 0; p < 256; p++) {
        volatile float v = (float)p;
        v /= 127.5f;
        v -= 1.0f;
        bad += bits(out[p]) != bits(v) || bits(out[256 + 255 - p]) != bits(v);
        sum += bits(out[p]);
    }
    CHECK(bad == 0, "p/127.5-1: %d values differ", bad);
    /* the same 256 values from Keras 3.15 mobilenet_v2.preprocess_input (float32 numpy):
     * sum of their bit patterns, and one value where multiplying by 1/127.5 differs */
    CHECK(sum == 544408093184ULL, "p/127.5-1 bit-pattern sum %llu", (unsigned long long)sum);
    CHECK(bits(out[48]) == 0xbf1f9fa0u, "p=48 gives %08x", bits(out[48]));

    /* Rescaling(1./255): x * float32(1/255) */
    rescale_forward(out, px, 1, 256, RESCALE_0_1);
    bad = 0, sum = 0;
    for (int p = 0; p < 256; p++) {
        volatile float sc = (float)(1.0 / 255.0), v = (float)p * sc;
        bad += bits(out[p]) != bits(v);
        sum += bits(out[p]);
    }
    CHECK(bad == 0, "p*(1/255): %d values differ", bad);
    CHECK(sum == 268502433469ULL, "Rescaling(1/255) bit-pattern sum %llu (Keras 3.15)",
          (unsigned long long)sum);
    CHECK(bits(out[3]) == 0x3c40c0c2u, "p=3 gives %08x (p/255 would be 3c40c0c1)", bits(out[3]));

    rescale_forward(out, px, 1, 256, RESCALE_NONE);
    bad = 0;
    for (int p = 0; p < 256; p++)
        bad += out[p] != (float)p;
    CHECK(bad == 0, "none");

    uint8_t mm[8] = {10, 20, 30, 10, 7, 7, 7, 7};
    float mo[8];
    rescale_forward(mo, mm, 2, 4, RESCALE_MINMAX);
    CHECK(mo[0] == 0.0f && mo[1] == 0.5f && mo[2] == 1.0f && mo[3] == 0.0f, "minmax %g %g %g",
          mo[0], mo[1], mo[2]);
    CHECK(mo[4] == 0.0f && mo[7] == 0.0f, "minmax of a constant image must be 0");
}

int main(void)
{
    test_shape_init();
    test_conv2d();
    test_depthwise();
    test_zeropad();
    test_batchnorm();
    test_activations();
    test_merge();
    test_pool();
    test_dense();
    test_dropout();
    test_rescale();
    return TEST_DONE();
}
