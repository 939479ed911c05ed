/* labels: invariance */
/* Every backward kernel of src/layers/ against central finite differences.
 *
 * Method: the loss is L = sum(r * f(inputs)) with a fixed random r (r is also the dout
 * given to the kernel), and f is the double-precision reference forward of layers_ref.h,
 * so dL/dx is exactly what the backward must return. Differences are taken in double:
 * step h = 1e-4; for the linear layers (conv, depthwise, dense, pools, pad, add, concat,
 * dropout with its mask) the central difference is exact up to double rounding,
 * ~1e-16*|L|/h ~ 1e-11; for the smooth ones (BN, softmax, sigmoid) the truncation error
 * h^2/6*|f'''| is ~1e-9. Piecewise layers (ReLU, ReLU6, max pooling) get inputs at least
 * 0.01 >> h away from their kinks and ties.
 *
 * Tolerance: the float32 kernels round each of at most a few hundred terms (u = 6e-8), so
 * their error is below ~1e-5 of the gradient's scale; we accept |got - fd| <= 1e-4 *
 * max|fd| (per tensor) + 1e-6*|prior content|. A wrong tap, padding offset, stride or
 * missing term is an O(1) relative error and fails it by orders of magnitude.
 *
 * Accumulation: every gradient buffer is first filled with random "prior" values; after
 * one backward call it must hold prior + g, after a second prior + 2g (the += contract),
 * and a third call with the other gradients NULL must still add to the one requested.
 * Large tensors are checked on a sample of elements (always including both ends) to keep
 * the test fast; the sample covers borders because it is spread uniformly. */
#include "layers.h"
#include "layers_ref.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-4
#define FD_MAX_SAMPLES 400

typedef double (*loss_fn)(void *ctx);

static double fd_one(double *x, int64_t j, loss_fn f, void *ctx)
{
    double save = x[j];
    x[j] = save + FD_H;
    double lp = f(ctx);
    x[j] = save - FD_H;
    double lm = f(ctx);
    x[j] = save;
    return (lp - lm) / (2 * FD_H);
}

/* fd[i] = dL/dx[i] by central differences: all i for small tensors, else a sample spread
 * over the tensor plus the last element (others NAN) */
static void fd_grad(double *fd, double *x, int64_t n, loss_fn f, void *ctx)
{
    int64_t step = n > FD_MAX_SAMPLES ? n / FD_MAX_SAMPLES : 1;
    for (int64_t i = 0; i < n; i++)
        fd[i] = NAN;
    for (int64_t i = 0; i < n; i += step) {
        /* jitter the sample so it does not alias with channel counts */
        int64_t j = step > 1 ? i + (int64_t)ref_rand(0, (double)step) : i;
        fd[j < n ? j : n - 1] = fd_one(x, j < n ? j : n - 1, f, ctx);
    }
    fd[n - 1] = fd_one(x, n - 1, f, ctx);
}

/* got == prior + mult*fd where fd is defined; returns the number of violations */
static int64_t grad_bad(const char *what, const float *got, const float *prior, const double *fd,
                        double mult, int64_t n)
{
    double scale = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(fd[i]) && fabs(fd[i]) > scale)
            scale = fabs(fd[i]);
    int64_t bad = 0, worst = -1, cmp = 0;
    double worst_d = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(fd[i]))
            continue;
        cmp++;
        double want = (double)prior[i] + mult * fd[i];
        double tol = 1e-4 * mult * scale + 1e-6 * fabs(prior[i]) + 1e-12;
        double d = fabs((double)got[i] - want);
        if (!(d <= tol)) {
            bad++;
            if (!(d <= worst_d))
                worst_d = d, worst = i;
        }
    }
    if (bad)
        fprintf(stderr, "  %s (x%g): %lld of %lld bad, worst [%lld] got %.9g want %.9g (scale %.3g)\n",
                what, mult, (long long)bad, (long long)cmp, (long long)worst, got[worst],
                prior[worst] + mult * fd[worst], scale);
    if (cmp == 0)
        bad = 1;
    return bad;
}

static float *falloc(int64_t n) { return malloc(sizeof(float) * (n > 0 ? n : 1)); }
static float *fcopy(const float *x, int64_t n)
{
    float *y = falloc(n);
    memcpy(y, x, sizeof(float) * n);
    return y;
}
static double dot(const double *a, const float *r, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * r[i];
    return s;
}

/* A gradient target: the kernel's buffer, its prior content and the FD reference. */
typedef struct gbuf {
    const char *name;
    int64_t n;
    float *g, *prior;
    double *fd;
} gbuf;
static void gbuf_init(gbuf *b, const char *name, double *x, int64_t n, loss_fn f, void *ctx)
{
    b->name = name, b->n = n;
    b->g = falloc(n);
    ref_fill(b->g, n, -1, 1);
    b->prior = fcopy(b->g, n);
    b->fd = malloc(sizeof(double) * n);
    fd_grad(b->fd, x, n, f, ctx);
}
static void gbuf_check(gbuf *b, const char *what, double mult)
{
    char w[200];
    snprintf(w, sizeof w, "%s d%s", what, b->name);
    CHECK(grad_bad(w, b->g, b->prior, b->fd, mult, b->n) == 0, "%s after %g call(s)", w, mult);
}
static void gbuf_free(gbuf *b)
{
    free(b->g), free(b->prior), free(b->fd);
}

/* ---------------------------------------------------------------- conv2d / depthwise */
typedef struct conv_ctx {
    ref_geom g;
    int depthwise;
    double *in, *w, *b, *out;
    const float *r;
    int64_t nout;
} conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    if (c->depthwise)
        ref_depthwise(c->out, NULL, c->in, c->w, c->b, &c->g);
    else
        ref_conv(c->out, NULL, c->in, c->w, c->b, &c->g);
    return dot(c->out, c->r, c->nout);
}

static void run_conv_grad(int depthwise, int n, int h, int w, int cin, int kh, int kw, int sh,
                          int sw, int same, int cout, int bias)
{
    if (depthwise)
        cout = cin;
    conv2d_shape s;
    if (conv2d_shape_init(&s, n, h, w, cin, kh, kw, sh, sw, same ? PADDING_SAME : PADDING_VALID,
                          cout) != 0) {
        CHECK(0, "shape");
        return;
    }
    char what[160];
    snprintf(what, sizeof what, "%s n%d %dx%dx%d k%dx%d s%d,%d %s co%d%s",
             depthwise ? "depthwise" : "conv", n, h, w, cin, kh, kw, sh, sw,
             same ? "same" : "valid", cout, bias ? " bias" : "");
    int64_t nin = (int64_t)n * h * w * cin;
    int64_t nw = depthwise ? (int64_t)kh * kw * cin : (int64_t)kh * kw * cin * cout;
    int64_t nout = (int64_t)n * s.ho * s.wo * cout;
    float *in = falloc(nin), *wt = falloc(nw), *b = falloc(cout), *r = falloc(nout);
    ref_fill(in, nin, -1, 1);
    ref_fill(wt, nw, -1, 1);
    ref_fill(b, cout, -1, 1);
    ref_fill(r, nout, -1, 1);
    conv_ctx c = {ref_geom_make(n, h, w, cin, kh, kw, sh, sw, same, cout), depthwise,
                  ref_dup(in, nin), ref_dup(wt, nw), bias ? ref_dup(b, cout) : NULL,
                  malloc(sizeof(double) * nout), r, nout};
    gbuf gi, gw, gb;
    gbuf_init(&gi, "in", c.in, nin, conv_loss, &c);
    gbuf_init(&gw, "w", c.w, nw, conv_loss, &c);
    if (bias)
        gbuf_init(&gb, "b", c.b, cout, conv_loss, &c);
    size_t ns = depthwise ? 0 : conv2d_scratch_floats(&s);
    float *scratch = falloc((int64_t)ns);
    for (int call = 1; call <= 2; call++) {
        if (depthwise)
            depthwise_backward(gi.g, gw.g, bias ? gb.g : NULL, r, in, wt, &s);
        else
            conv2d_backward(gi.g, gw.g, bias ? gb.g : NULL, r, in, wt, &s, scratch);
        gbuf_check(&gi, what, call);
        gbuf_check(&gw, what, call);
        if (bias)
            gbuf_check(&gb, what, call);
    }
    /* only din, then only dw (frozen layer / first layer) */
    if (depthwise) {
        depthwise_backward(gi.g, NULL, NULL, r, in, wt, &s);
        depthwise_backward(NULL, gw.g, NULL, r, in, wt, &s);
    } else {
        conv2d_backward(gi.g, NULL, NULL, r, in, wt, &s, scratch);
        conv2d_backward(NULL, gw.g, NULL, r, in, wt, &s, scratch);
    }
    gbuf_check(&gi, what, 3);
    gbuf_check(&gw, what, 3);
    gbuf_free(&gi), gbuf_free(&gw);
    if (bias)
        gbuf_free(&gb);
    free(in), free(wt), free(b), free(r), free(c.in), free(c.w), free(c.b), free(c.out);
    free(scratch);
}

static void test_conv_grads(void)
{
    /*            dw n  h  w  ci kh kw sh sw same co bias */
    run_conv_grad(0, 2, 5, 7, 13, 1, 1, 1, 1, 1, 11, 1); /* 1x1 direct GEMM, dw^T path */
    run_conv_grad(0, 2, 4, 5, 6, 1, 1, 1, 1, 0, 20, 1);  /* 1x1 direct, cout > cin */
    run_conv_grad(0, 2, 6, 5, 7, 1, 1, 2, 2, 1, 5, 0);   /* 1x1 stride 2 */
    run_conv_grad(0, 2, 7, 7, 3, 3, 3, 2, 2, 1, 5, 1);   /* 3x3/2 same odd: 1 top, 1 bottom */
    run_conv_grad(0, 2, 8, 6, 3, 3, 3, 2, 2, 1, 5, 0);   /* 3x3/2 same even: 0 top, 1 bottom */
    run_conv_grad(0, 2, 9, 9, 3, 3, 3, 2, 2, 0, 6, 0);   /* stem: 3x3/2 valid after the pad */
    run_conv_grad(0, 2, 7, 6, 5, 3, 3, 1, 1, 1, 6, 1);   /* 3x3 same */
    run_conv_grad(0, 2, 8, 7, 3, 3, 3, 1, 1, 0, 4, 1);   /* 3x3 valid (seed-001 CNN) */
    run_conv_grad(0, 2, 9, 8, 3, 5, 5, 2, 2, 1, 4, 1);   /* 5x5/2 same odd/even */
    run_conv_grad(0, 1, 7, 7, 2, 5, 5, 1, 1, 1, 3, 0);   /* 5x5 same */
    run_conv_grad(0, 2, 5, 6, 3, 3, 2, 1, 2, 1, 4, 1);   /* non-square */
    run_conv_grad(0, 1, 17, 17, 64, 5, 5, 1, 1, 1, 2, 1);/* several im2col blocks */

    run_conv_grad(1, 2, 7, 6, 5, 3, 3, 1, 1, 1, 0, 1);   /* depthwise 3x3 same */
    run_conv_grad(1, 2, 7, 7, 13, 3, 3, 2, 2, 1, 0, 0);  /* 3x3/2 same odd */
    run_conv_grad(1, 2, 8, 6, 13, 3, 3, 2, 2, 1, 0, 1);  /* 3x3/2 same even */
    run_conv_grad(1, 2, 9, 9, 6, 3, 3, 2, 2, 0, 0, 0);   /* MobileNetV2 3x3/2 valid */
    run_conv_grad(1, 1, 9, 10, 37, 3, 3, 1, 1, 1, 0, 0); /* interior path, c % 8 != 0 */
    run_conv_grad(1, 2, 8, 9, 32, 3, 3, 1, 1, 0, 0, 1);  /* valid: din gather pads 2 */
    run_conv_grad(1, 1, 8, 7, 48, 3, 3, 2, 2, 1, 0, 0);  /* channel tiles, stride 2 */
    run_conv_grad(1, 2, 7, 8, 3, 5, 5, 1, 1, 1, 0, 1);   /* 5x5 generic path */
    run_conv_grad(1, 2, 7, 8, 3, 5, 5, 1, 1, 0, 0, 1);
    run_conv_grad(1, 2, 2, 3, 4, 3, 3, 2, 2, 1, 0, 1);   /* tiny: every pixel is a border */
}

/* ---------------------------------------------------------------- zeropad */
typedef struct pad_ctx {
    pad_shape s;
    double *in, *out;
    const float *r;
} pad_ctx;
static double pad_loss(void *p)
{
    pad_ctx *c = p;
    const pad_shape *s = &c->s;
    int64_t no = (int64_t)s->n * s->ho * s->wo * s->c;
    for (int64_t i = 0; i < no; i++)
        c->out[i] = 0;
    for (int i = 0; i < s->n; i++)
        for (int y = 0; y < s->h; y++)
            for (int x = 0; x < s->w; x++)
                for (int ch = 0; ch < s->c; ch++)
                    c->out[(((int64_t)i * s->ho + y + s->top) * s->wo + x + s->left) * s->c + ch] =
                        c->in[(((int64_t)i * s->h + y) * s->w + x) * s->c + ch];
    return dot(c->out, c->r, no);
}
static void test_zeropad_grad(void)
{
    pad_ctx c;
    pad_shape_init(&c.s, 2, 5, 4, 3, 0, 1, 2, 1);
    int64_t nin = 2 * 5 * 4 * 3, no = 2LL * c.s.ho * c.s.wo * 3;
    float *in = falloc(nin), *r = falloc(no);
    ref_fill(in, nin, -1, 1);
    ref_fill(r, no, -1, 1);
    c.in = ref_dup(in, nin), c.out = malloc(sizeof(double) * no), c.r = r;
    gbuf gi;
    gbuf_init(&gi, "in", c.in, nin, pad_loss, &c);
    for (int call = 1; call <= 2; call++) {
        zeropad_backward(gi.g, r, &c.s);
        gbuf_check(&gi, "zeropad", call);
    }
    gbuf_free(&gi), free(in), free(r), free(c.in), free(c.out);
}

/* ---------------------------------------------------------------- batchnorm */
typedef struct bn_ctx {
    int train;
    int64_t m;
    int c;
    double eps;
    double *x, *gamma, *beta, *mean, *var, *out;
    const float *r;
} bn_ctx;
static double bn_loss(void *p)
{
    bn_ctx *c = p;
    if (c->train)
        ref_bn_train(c->out, NULL, NULL, c->x, c->gamma, c->beta, c->eps, c->m, c->c);
    else
        ref_bn_infer(c->out, c->x, c->gamma, c->beta, c->mean, c->var, c->eps, c->m, c->c);
    return dot(c->out, c->r, c->m * c->c);
}

static void run_bn_grad(int train, int64_t m, int c, double xshift)
{
    const float eps = 1e-3f;
    int64_t nx = m * c;
    float *x = falloc(nx), *r = falloc(nx), *gamma = falloc(c), *beta = falloc(c);
    float *mean = falloc(c), *var = falloc(c);
    ref_fill(x, nx, -2 + xshift, 2 + xshift);
    ref_fill(r, nx, -1, 1);
    ref_fill(gamma, c, 0.5, 2);
    ref_fill(beta, c, -1, 1);
    ref_fill(mean, c, -1, 1);
    ref_fill(var, c, 0.1, 2);
    bn_ctx ctx = {train, m, c, (double)eps, ref_dup(x, nx), ref_dup(gamma, c), ref_dup(beta, c),
                  ref_dup(mean, c), ref_dup(var, c), malloc(sizeof(double) * nx), r};
    char what[96];
    snprintf(what, sizeof what, "batchnorm %s m%lld c%d shift %g", train ? "train" : "infer",
             (long long)m, c, xshift);
    gbuf gx, gg, gb;
    gbuf_init(&gx, "in", ctx.x, nx, bn_loss, &ctx);
    gbuf_init(&gg, "gamma", ctx.gamma, c, bn_loss, &ctx);
    gbuf_init(&gb, "beta", ctx.beta, c, bn_loss, &ctx);
    double *sum = malloc(sizeof(double) * c), *sumsq = malloc(sizeof(double) * c);
    double *sdy = malloc(sizeof(double) * c), *sdyx = malloc(sizeof(double) * c);
    float *smean = falloc(c), *sinv = falloc(c), *y = falloc(nx);
    for (int call = 1; call <= 2; call++) {
        if (train) {
            /* the full pipeline: statistics -> forward -> backward sums -> backward */
            batchnorm_stats(sum, sumsq, x, m, c);
            batchnorm_forward_train(y, smean, sinv, x, gamma, beta, sum, sumsq, (double)m, eps,
                                    m, c);
            batchnorm_backward_sums(sdy, sdyx, r, x, smean, sinv, m, c);
            batchnorm_backward_train(gx.g, gg.g, gb.g, r, x, gamma, smean, sinv, sdy, sdyx,
                                     (double)m, m, c);
        } else {
            batchnorm_backward_infer(gx.g, gg.g, gb.g, r, x, gamma, mean, var, eps, m, c);
        }
        gbuf_check(&gx, what, call);
        gbuf_check(&gg, what, call);
        gbuf_check(&gb, what, call);
    }
    /* frozen parameters: din only */
    if (train)
        batchnorm_backward_train(gx.g, NULL, NULL, r, x, gamma, smean, sinv, sdy, sdyx,
                                 (double)m, m, c);
    else
        batchnorm_backward_infer(gx.g, NULL, NULL, r, x, gamma, mean, var, eps, m, c);
    gbuf_check(&gx, what, 3);
    gbuf_free(&gx), gbuf_free(&gg), gbuf_free(&gb);
    free(x), free(r), free(gamma), free(beta), free(mean), free(var), free(ctx.x);
    free(ctx.gamma), free(ctx.beta), free(ctx.mean), free(ctx.var), free(ctx.out), free(sum);
    free(sumsq), free(sdy), free(sdyx), free(smean), free(sinv), free(y);
}

/* Sync BN as the API intends it: each "rank" holds part of the rows; the statistics and
 * the backward sums are added over ranks (the allreduce) and count is the global row
 * count. The input gradient of each part must equal the corresponding rows of the
 * single-process gradient (the sums differ only by rounding order: 1e-5 relative). */
static void test_bn_sync_split(void)
{
    const int64_t m = 26, m0 = 11; /* rank 0 rows [0, 11), rank 1 rows [11, 26) */
    const int c = 19;
    const float eps = 1e-3f;
    float *x = falloc(m * c), *r = falloc(m * c), *gamma = falloc(c), *beta = falloc(c);
    float *y = falloc(m * c), *din_full = falloc(m * c), *din_split = falloc(m * c);
    float *sm = falloc(c), *si = falloc(c);
    ref_fill(x, m * c, -1, 3), ref_fill(r, m * c, -1, 1);
    ref_fill(gamma, c, 0.5, 2), ref_fill(beta, c, -1, 1);
    double s[19], q[19], a[19], b[19], s1[19], q1[19], a1[19], b1[19];
    memset(din_full, 0, sizeof(float) * m * c);
    memset(din_split, 0, sizeof(float) * m * c);
    batchnorm_stats(s, q, x, m, c);
    batchnorm_forward_train(y, sm, si, x, gamma, beta, s, q, (double)m, eps, m, c);
    batchnorm_backward_sums(a, b, r, x, sm, si, m, c);
    batchnorm_backward_train(din_full, NULL, NULL, r, x, gamma, sm, si, a, b, (double)m, m, c);

    const int64_t lo[2] = {0, m0}, n[2] = {m0, m - m0};
    for (int j = 0; j < c; j++)
        s[j] = q[j] = a[j] = b[j] = 0.0;
    for (int k = 0; k < 2; k++) { /* statistics, then "allreduce" */
        batchnorm_stats(s1, q1, x + lo[k] * c, n[k], c);
        for (int j = 0; j < c; j++)
            s[j] += s1[j], q[j] += q1[j];
    }
    for (int k = 0; k < 2; k++)
        batchnorm_forward_train(y + lo[k] * c, sm, si, x + lo[k] * c, gamma, beta, s, q,
                                (double)m, eps, n[k], c);
    for (int k = 0; k < 2; k++) { /* backward sums, then "allreduce" */
        batchnorm_backward_sums(a1, b1, r + lo[k] * c, x + lo[k] * c, sm, si, n[k], c);
        for (int j = 0; j < c; j++)
            a[j] += a1[j], b[j] += b1[j];
    }
    for (int k = 0; k < 2; k++)
        batchnorm_backward_train(din_split + lo[k] * c, NULL, NULL, r + lo[k] * c,
                                 x + lo[k] * c, gamma, sm, si, a, b, (double)m, n[k], c);
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < m * c; i++) {
        scale = fabs(din_full[i]) > scale ? fabs(din_full[i]) : scale;
        double d = fabs(din_full[i] - din_split[i]);
        worst = d > worst ? d : worst;
    }
    CHECK(worst <= 1e-5 * scale, "sync-BN split din differs by %.3g (scale %.3g)", worst, scale);
    free(x), free(r), free(gamma), free(beta), free(y), free(din_full), free(din_split);
    free(sm), free(si);
}

static void test_bn_grads(void)
{
    test_bn_sync_split();
    run_bn_grad(0, 30, 13, 0.0);
    run_bn_grad(1, 30, 13, 0.0);
    run_bn_grad(1, 2 * 3 * 3, 11, 5.0); /* mean far from 0: (x - mean) form matters */
    run_bn_grad(1, 4, 9, 0.0);         /* tiny batch: every term of the formula counts */
}

/* ---------------------------------------------------------------- activations */
typedef struct act_ctx {
    int kind; /* 0 relu, 1 relu6, 2 sigmoid, 3 softmax */
    int64_t n;
    int k;
    double *x, *out;
    const float *r;
} act_ctx;
static double act_loss(void *p)
{
    act_ctx *c = p;
    if (c->kind == 3)
        ref_softmax(c->out, c->x, c->n / c->k, c->k);
    else
        for (int64_t i = 0; i < c->n; i++) {
            double v = c->x[i];
            c->out[i] = c->kind == 0   ? (v > 0 ? v : 0)
                        : c->kind == 1 ? (v > 6 ? 6 : v > 0 ? v : 0)
                                       : 1 / (1 + exp(-v));
        }
    return dot(c->out, c->r, c->n);
}

static void run_act_grad(int kind)
{
    static const char *names[] = {"relu", "relu6", "sigmoid", "softmax"};
    const int k = 7;
    const int64_t n = 7 * 29;
    float *x = falloc(n), *y = falloc(n), *r = falloc(n);
    ref_fill_away0(x, n, -9, 12, 0.01);
    for (int64_t i = 0; i < n; i++)
        if (fabs(x[i] - 6.0) < 0.01) /* away from the ReLU6 cap too */
            x[i] += 0.05f;
    if (kind == 3)
        for (int j = 0; j < k; j++)
            x[j] = 500.0f + (float)j; /* large logits in the first row */
    ref_fill(r, n, -1, 1);
    act_ctx c = {kind, n, k, ref_dup(x, n), malloc(sizeof(double) * n), r};
    gbuf gi;
    gbuf_init(&gi, "in", c.x, n, act_loss, &c);
    switch (kind) {
    case 0: relu_forward(y, x, n); break;
    case 1: relu6_forward(y, x, n); break;
    case 2: sigmoid_forward(y, x, n); break;
    default: softmax_forward(y, x, n / k, k);
    }
    for (int call = 1; call <= 2; call++) {
        switch (kind) {
        case 0: relu_backward(gi.g, r, y, n); break;
        case 1: relu6_backward(gi.g, r, y, n); break;
        case 2: sigmoid_backward(gi.g, r, y, n); break;
        default: softmax_backward(gi.g, r, y, n / k, k);
        }
        gbuf_check(&gi, names[kind], call);
    }
    gbuf_free(&gi), free(x), free(y), free(r), free(c.x), free(c.out);
}

/* ---------------------------------------------------------------- add / concat */
typedef struct merge_ctx {
    double *a, *b, *d, *out;
    int64_t rows;
    const float *r;
} merge_ctx;
static double add_loss(void *p)
{
    merge_ctx *c = p;
    double s = 0;
    for (int64_t i = 0; i < c->rows; i++)
        s += (c->a[i] + c->b[i]) * c->r[i];
    return s;
}
static const int cc[3] = {3, 9, 5};
static double concat_loss(void *p)
{
    merge_ctx *c = p;
    double s = 0;
    for (int64_t i = 0; i < c->rows; i++) {
        const float *rr = c->r + i * 17;
        for (int j = 0; j < 3; j++)
            s += c->a[i * 3 + j] * rr[j];
        for (int j = 0; j < 9; j++)
            s += c->b[i * 9 + j] * rr[3 + j];
        for (int j = 0; j < 5; j++)
            s += c->d[i * 5 + j] * rr[12 + j];
    }
    return s;
}
static void test_merge_grads(void)
{
    const int64_t n = 50;
    float a[50], b[50], r[50];
    ref_fill(a, n, -1, 1), ref_fill(b, n, -1, 1), ref_fill(r, n, -1, 1);
    merge_ctx c = {ref_dup(a, n), ref_dup(b, n), NULL, NULL, n, r};
    gbuf ga, gb;
    gbuf_init(&ga, "a", c.a, n, add_loss, &c);
    gbuf_init(&gb, "b", c.b, n, add_loss, &c);
    for (int call = 1; call <= 2; call++) {
        add_backward(ga.g, gb.g, r, n);
        gbuf_check(&ga, "add", call), gbuf_check(&gb, "add", call);
    }
    add_backward(ga.g, NULL, r, n);
    gbuf_check(&ga, "add", 3);
    gbuf_free(&ga), gbuf_free(&gb), free(c.a), free(c.b);

    const int64_t rows = 6;
    float x0[18], x1[54], x2[30], rc[6 * 17];
    ref_fill(x0, 18, -1, 1), ref_fill(x1, 54, -1, 1), ref_fill(x2, 30, -1, 1);
    ref_fill(rc, 6 * 17, -1, 1);
    merge_ctx m = {ref_dup(x0, 18), ref_dup(x1, 54), ref_dup(x2, 30), NULL, rows, rc};
    gbuf g0, g1, g2;
    gbuf_init(&g0, "in0", m.a, 18, concat_loss, &m);
    gbuf_init(&g1, "in1", m.b, 54, concat_loss, &m);
    gbuf_init(&g2, "in2", m.d, 30, concat_loss, &m);
    for (int call = 1; call <= 2; call++) {
        float *const din[3] = {g0.g, g1.g, g2.g};
        concat_backward(din, rc, cc, 3, rows);
        gbuf_check(&g0, "concat", call), gbuf_check(&g1, "concat", call);
        gbuf_check(&g2, "concat", call);
    }
    float *const din1[3] = {NULL, g1.g, NULL};
    concat_backward(din1, rc, cc, 3, rows);
    gbuf_check(&g1, "concat", 3);
    gbuf_free(&g0), gbuf_free(&g1), gbuf_free(&g2), free(m.a), free(m.b), free(m.d);
}

/* ---------------------------------------------------------------- pooling */
typedef struct pool_ctx {
    ref_geom g;
    int is_max;
    double *in, *out;
    const float *r;
    int64_t nout;
} pool_ctx;
static double pool_loss(void *p)
{
    pool_ctx *c = p;
    ref_pool(c->out, c->in, &c->g, c->is_max);
    return dot(c->out, c->r, c->nout);
}

static void run_pool_grad(int is_max, int n, int h, int w, int ch, int k, int st, int same)
{
    conv2d_shape s;
    if (conv2d_shape_init(&s, n, h, w, ch, k, k, st, st, same ? PADDING_SAME : PADDING_VALID,
                          ch) != 0) {
        CHECK(0, "pool shape");
        return;
    }
    int64_t nin = (int64_t)n * h * w * ch, nout = (int64_t)n * s.ho * s.wo * ch;
    float *in = falloc(nin), *r = falloc(nout), *out = falloc(nout);
    int32_t *am = malloc(sizeof(int32_t) * nout);
    /* distinct values 0.01 apart in shuffled order: no ties, no kink within FD_H */
    for (int64_t i = 0; i < nin; i++)
        in[i] = (float)(0.01 * (double)i - 0.005 * (double)nin);
    for (int64_t i = nin - 1; i > 0; i--) {
        int64_t j = (int64_t)ref_rand(0, (double)(i + 1));
        float t = in[i];
        in[i] = in[j], in[j] = t;
    }
    ref_fill(r, nout, -1, 1);
    pool_ctx c = {ref_geom_make(n, h, w, ch, k, k, st, st, same, ch), is_max, ref_dup(in, nin),
                  malloc(sizeof(double) * nout), r, nout};
    char what[96];
    snprintf(what, sizeof what, "%s n%d %dx%dx%d k%d s%d %s", is_max ? "maxpool" : "avgpool", n,
             h, w, ch, k, st, same ? "same" : "valid");
    gbuf gi;
    gbuf_init(&gi, "in", c.in, nin, pool_loss, &c);
    if (is_max)
        maxpool_forward(out, am, in, &s);
    for (int call = 1; call <= 2; call++) {
        if (is_max)
            maxpool_backward(gi.g, r, am, &s);
        else
            avgpool_backward(gi.g, r, &s);
        gbuf_check(&gi, what, call);
    }
    gbuf_free(&gi), free(in), free(r), free(out), free(am), free(c.in), free(c.out);
}

typedef struct gap_ctx {
    int n, hw, c;
    double *in;
    const float *r;
} gap_ctx;
static double gap_loss(void *p)
{
    gap_ctx *g = p;
    double s = 0;
    for (int i = 0; i < g->n; i++)
        for (int j = 0; j < g->c; j++) {
            double m = 0;
            for (int q = 0; q < g->hw; q++)
                m += g->in[((int64_t)i * g->hw + q) * g->c + j];
            s += m / g->hw * g->r[i * g->c + j];
        }
    return s;
}

static void test_pool_grads(void)
{
    run_pool_grad(1, 2, 8, 8, 5, 2, 2, 0);  /* MaxPool 2 of the seed-001 CNN */
    run_pool_grad(1, 2, 7, 9, 5, 2, 2, 0);  /* odd: last row/column unused */
    run_pool_grad(1, 2, 7, 9, 5, 2, 2, 1);  /* odd 'same' */
    run_pool_grad(1, 2, 7, 7, 3, 3, 2, 1);  /* overlapping windows */
    run_pool_grad(1, 1, 6, 5, 3, 3, 1, 1);
    run_pool_grad(0, 2, 7, 9, 5, 2, 2, 1);
    run_pool_grad(0, 2, 7, 7, 3, 3, 2, 1);
    run_pool_grad(0, 1, 6, 5, 3, 3, 1, 1);  /* border windows with 4 and 6 cells */
    run_pool_grad(0, 2, 7, 7, 9, 7, 7, 0);  /* AveragePooling2D 7x7 of the nsfw head */

    gap_ctx g = {3, 10, 11, NULL, NULL};
    float *in = falloc(3 * 10 * 11), r[33];
    ref_fill(in, 330, -1, 1), ref_fill(r, 33, -1, 1);
    g.in = ref_dup(in, 330), g.r = r;
    gbuf gi;
    gbuf_init(&gi, "in", g.in, 330, gap_loss, &g);
    for (int call = 1; call <= 2; call++) {
        gap_backward(gi.g, r, 3, 10, 11);
        gbuf_check(&gi, "gap", call);
    }
    gbuf_free(&gi), free(in), free(g.in);
}

/* ---------------------------------------------------------------- dense */
typedef struct dense_ctx {
    int n, nin, nout;
    double *x, *w, *b, *out;
    const float *r;
} dense_ctx;
static double dense_loss(void *p)
{
    dense_ctx *c = p;
    ref_dense(c->out, NULL, c->x, c->w, c->b, c->n, c->nin, c->nout);
    return dot(c->out, c->r, (int64_t)c->n * c->nout);
}
static void test_dense_grad(void)
{
    const int n = 5, nin = 37, nout = 19;
    float *x = falloc(n * nin), *w = falloc(nin * nout), *b = falloc(nout), *r = falloc(n * nout);
    ref_fill(x, n * nin, -1, 1), ref_fill(w, nin * nout, -1, 1), ref_fill(b, nout, -1, 1);
    ref_fill(r, n * nout, -1, 1);
    dense_ctx c = {n, nin, nout, ref_dup(x, n * nin), ref_dup(w, nin * nout), ref_dup(b, nout),
                   malloc(sizeof(double) * n * nout), r};
    gbuf gx, gw, gb;
    gbuf_init(&gx, "in", c.x, n * nin, dense_loss, &c);
    gbuf_init(&gw, "w", c.w, nin * nout, dense_loss, &c);
    gbuf_init(&gb, "b", c.b, nout, dense_loss, &c);
    for (int call = 1; call <= 2; call++) {
        dense_backward(gx.g, gw.g, gb.g, r, x, w, n, nin, nout);
        gbuf_check(&gx, "dense", call), gbuf_check(&gw, "dense", call);
        gbuf_check(&gb, "dense", call);
    }
    dense_backward(NULL, gw.g, NULL, r, x, w, n, nin, nout);
    gbuf_check(&gw, "dense", 3);
    gbuf_free(&gx), gbuf_free(&gw), gbuf_free(&gb);
    free(x), free(w), free(b), free(r), free(c.x), free(c.w), free(c.b), free(c.out);
}

/* ---------------------------------------------------------------- dropout */
typedef struct drop_ctx {
    int64_t n;
    double *x, scale;
    const uint8_t *mask;
    const float *r;
} drop_ctx;
static double drop_loss(void *p)
{
    drop_ctx *c = p;
    double s = 0;
    for (int64_t i = 0; i < c->n; i++)
        s += (c->mask[i] ? c->x[i] * c->scale : 0.0) * c->r[i];
    return s;
}
static void test_dropout_grad(void)
{
    const int n = 4;
    const int64_t per = 50, tot = n * per;
    float *x = falloc(tot), *y = falloc(tot), *r = falloc(tot);
    uint8_t *mask = malloc(tot);
    ref_fill(x, tot, -1, 1), ref_fill(r, tot, -1, 1);
    dropout_forward(y, mask, x, 0.4f, n, per, 9, 3, 0);
    drop_ctx c = {tot, ref_dup(x, tot), 1.0 / (1.0 - 0.4f), mask, r};
    gbuf gi;
    gbuf_init(&gi, "in", c.x, tot, drop_loss, &c);
    for (int call = 1; call <= 2; call++) {
        dropout_backward(gi.g, r, mask, 0.4f, tot);
        gbuf_check(&gi, "dropout", call);
    }
    gbuf_free(&gi), free(x), free(y), free(r), free(mask), free(c.x);
}

int main(void)
{
    test_conv_grads();
    test_zeropad_grad();
    test_bn_grads();
    for (int k = 0; k < 4; k++)
        run_act_grad(k);
    test_merge_grads();
    test_pool_grads();
    test_dense_grad();
    test_dropout_grad();
    return TEST_DONE();
}
