/* Micro benchmark of the layer kernels (src/layers/) on MobileNetV2 and seed-001 CNN
 * shapes, batch 32, at 1 and 2 OpenBLAS threads in one run, next to this machine's plain
 * cblas_sgemm rate for a large square GEMM. Build and run:
 *
 *   bench/build-kernels.sh [BUILD_DIR]        # needs BUILD_DIR/libradbatch_core.a
 *   BUILD_DIR/bench_kernels [--batch N] [--reps N] [--threads 1,2] [--only SUBSTRING]
 *
 * Each row: min and median time over reps (after one warm-up; at 1 thread CPU time of the
 * calling thread, else wall time), GFLOP/s at the min, and
 * the fraction of the sgemm rate at the same thread count. Conv backward counts both
 * GEMMs (dw and din, 4*M*K*N); depthwise counts 2 flops per tap. Memory-bound kernels
 * (BN, ReLU6, pooling) also print GB/s of their compulsory traffic. The machine is
 * shared: compare rows of one run, and repeat. */
#include "layers.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void openblas_set_num_threads(int num_threads);

static int g_batch = 32, g_reps = 5;
static const char *g_only = NULL;

/* At 1 thread the clock is this thread's CPU time, so time the scheduler gives to other
 * processes on a shared machine is not counted (cache and memory contention still are);
 * at more threads it is wall time. */
static clockid_t g_clock = CLOCK_MONOTONIC;
static double now(void)
{
    struct timespec ts;
    clock_gettime(g_clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static float *buf(size_t n, float v)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    if (!p) {
        fprintf(stderr, "bench_kernels: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = v * (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f * v;
    return p;
}

typedef void (*bench_fn)(void *ctx);
/* run fn reps times; *tmin, *tmed in seconds */
static void timeit(bench_fn fn, void *ctx, double *tmin, double *tmed)
{
    double t[64];
    int reps = g_reps < 64 ? g_reps : 64;
    fn(ctx); /* warm-up: page faults, OpenBLAS thread start */
    for (int i = 0; i < reps; i++) {
        double t0 = now();
        fn(ctx);
        t[i] = now() - t0;
    }
    qsort(t, reps, sizeof(double), cmp_double);
    *tmin = t[0];
    *tmed = t[reps / 2];
}

static double g_peak; /* sgemm GFLOP/s at the current thread count */

static void report(const char *name, double flop, double bytes, double tmin, double tmed)
{
    printf("  %-44s %8.2f ms %8.2f ms %7.1f GFLOP/s %5.0f%%", name, tmin * 1e3, tmed * 1e3,
           flop / tmin * 1e-9, 100.0 * flop / tmin * 1e-9 / g_peak);
    if (bytes > 0)
        printf(" %6.1f GB/s", bytes / tmin * 1e-9);
    printf("\n");
    fflush(stdout);
}

static int selected(const char *name)
{
    return !g_only || strstr(name, g_only);
}

/* ---- sgemm peak */
typedef struct gemm_ctx {
    int m, n, k;
    float *a, *b, *c;
} gemm_ctx;
static void run_gemm(void *p)
{
    gemm_ctx *g = p;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->n, g->k, 1.0f, g->a, g->k,
                g->b, g->n, 0.0f, g->c, g->n);
}
static double bench_sgemm_peak(void)
{
    const int n = 2048;
    gemm_ctx g = {n, n, n, buf((size_t)n * n, 1), buf((size_t)n * n, 1), buf((size_t)n * n, 0)};
    double tmin, tmed;
    timeit(run_gemm, &g, &tmin, &tmed);
    free(g.a), free(g.b), free(g.c);
    double gf = 2.0 * n * n * n / tmin * 1e-9;
    printf("  %-44s %8.2f ms %8.2f ms %7.1f GFLOP/s  (peak reference)\n", "sgemm 2048^3", tmin * 1e3,
           tmed * 1e3, gf);
    return gf;
}

/* ---- conv2d */
typedef struct conv_ctx {
    conv2d_shape s;
    float *in, *w, *out, *din, *dw, *scratch;
    int need_din;
} conv_ctx;
static void run_conv_fwd(void *p)
{
    conv_ctx *c = p;
    conv2d_forward(c->out, c->in, c->w, NULL, &c->s, c->scratch);
}
static void run_conv_bwd(void *p)
{
    conv_ctx *c = p;
    conv2d_backward(c->need_din ? c->din : NULL, c->dw, NULL, c->out, c->in, c->w, &c->s,
                    c->scratch);
}
static void bench_conv(const char *label, int h, int w, int cin, int k, int st, padding_mode pad,
                       int cout, int need_din)
{
    char name[96];
    snprintf(name, sizeof name, "conv %s %dx%dx%d k%d/%d ->%d", label, h, w, cin, k, st, cout);
    if (!selected(name))
        return;
    conv_ctx c;
    if (conv2d_shape_init(&c.s, g_batch, h, w, cin, k, k, st, st, pad, cout) != 0)
        return;
    size_t nin = (size_t)g_batch * h * w * cin, nout = (size_t)g_batch * c.s.ho * c.s.wo * cout;
    size_t nw = (size_t)k * k * cin * cout, ns = conv2d_scratch_floats(&c.s);
    c.in = buf(nin, 1), c.w = buf(nw, 0.1f), c.out = buf(nout, 1), c.din = buf(nin, 0);
    c.dw = buf(nw, 0), c.scratch = buf(ns, 0), c.need_din = need_din;
    double m = (double)g_batch * c.s.ho * c.s.wo, kk = (double)k * k * cin;
    double flop = 2.0 * m * kk * cout, tmin, tmed;
    char row[128];
    timeit(run_conv_fwd, &c, &tmin, &tmed);
    snprintf(row, sizeof row, "%s fwd", name);
    report(row, flop, 0, tmin, tmed);
    timeit(run_conv_bwd, &c, &tmin, &tmed);
    snprintf(row, sizeof row, "%s bwd%s", name, need_din ? "" : " (dw only)");
    report(row, flop * (need_din ? 2 : 1), 0, tmin, tmed);
    free(c.in), free(c.w), free(c.out), free(c.din), free(c.dw), free(c.scratch);
}

/* ---- depthwise */
static void run_dw_fwd(void *p)
{
    conv_ctx *c = p;
    depthwise_forward(c->out, c->in, c->w, NULL, &c->s);
}
static void run_dw_bwd(void *p)
{
    conv_ctx *c = p;
    depthwise_backward(c->din, c->dw, NULL, c->out, c->in, c->w, &c->s);
}
static void bench_depthwise(int h, int w, int ch, int st, padding_mode pad)
{
    char name[96];
    snprintf(name, sizeof name, "depthwise %dx%dx%d 3x3/%d %s", h, w, ch, st,
             pad == PADDING_SAME ? "same" : "valid");
    if (!selected(name))
        return;
    conv_ctx c;
    if (conv2d_shape_init(&c.s, g_batch, h, w, ch, 3, 3, st, st, pad, ch) != 0)
        return;
    size_t nin = (size_t)g_batch * h * w * ch, nout = (size_t)g_batch * c.s.ho * c.s.wo * ch;
    c.in = buf(nin, 1), c.w = buf(9 * (size_t)ch, 0.1f), c.out = buf(nout, 1);
    c.din = buf(nin, 0), c.dw = buf(9 * (size_t)ch, 0), c.scratch = NULL;
    double flop = 2.0 * 9 * (double)nout, tmin, tmed, bytes = 4.0 * (nin + nout);
    char row[128];
    timeit(run_dw_fwd, &c, &tmin, &tmed);
    snprintf(row, sizeof row, "%s fwd", name);
    report(row, flop, bytes, tmin, tmed);
    timeit(run_dw_bwd, &c, &tmin, &tmed);
    snprintf(row, sizeof row, "%s bwd", name);
    /* reads in, dout; reads and writes din */
    report(row, 2 * flop, 4.0 * (3 * nin + nout), tmin, tmed);
    free(c.in), free(c.w), free(c.out), free(c.din), free(c.dw);
}

/* ---- memory-bound kernels: BN (inference, training), ReLU6, max pooling */
typedef struct ew_ctx {
    int64_t m;
    int c;
    float *x, *y, *g, *gamma, *beta, *mean, *var, *din, *smean, *sinv, *dgamma, *dbeta;
    double *sum, *sumsq, *sdy, *sdyx;
} ew_ctx;
static void run_bn_infer(void *p)
{
    ew_ctx *e = p;
    batchnorm_forward_infer(e->y, e->x, e->gamma, e->beta, e->mean, e->var, 1e-3f, e->m, e->c);
}
static void run_bn_train_fwd(void *p)
{
    ew_ctx *e = p;
    batchnorm_stats(e->sum, e->sumsq, e->x, e->m, e->c);
    batchnorm_forward_train(e->y, e->smean, e->sinv, e->x, e->gamma, e->beta, e->sum, e->sumsq,
                            (double)e->m, 1e-3f, e->m, e->c);
}
static void run_bn_train_bwd(void *p)
{
    ew_ctx *e = p;
    batchnorm_backward_sums(e->sdy, e->sdyx, e->g, e->x, e->smean, e->sinv, e->m, e->c);
    batchnorm_backward_train(e->din, e->dgamma, e->dbeta, e->g, e->x, e->gamma, e->smean,
                             e->sinv, e->sdy, e->sdyx, (double)e->m, e->m, e->c);
}
static void run_relu6(void *p)
{
    ew_ctx *e = p;
    relu6_forward(e->y, e->x, e->m * e->c);
}
static void run_relu6_bwd(void *p)
{
    ew_ctx *e = p;
    relu6_backward(e->din, e->g, e->y, e->m * e->c);
}
static void bench_elementwise(int h, int w, int c)
{
    char name[96];
    snprintf(name, sizeof name, "bn/relu6 %dx%dx%d", h, w, c);
    if (!selected(name))
        return;
    ew_ctx e = {0};
    e.m = (int64_t)g_batch * h * w, e.c = c;
    size_t n = (size_t)e.m * c;
    e.x = buf(n, 8), e.y = buf(n, 0), e.g = buf(n, 1), e.din = buf(n, 0);
    e.gamma = buf(c, 1), e.beta = buf(c, 1), e.mean = buf(c, 1), e.var = buf(c, 0);
    for (int j = 0; j < c; j++)
        e.var[j] = 1.0f + (float)j / c;
    e.smean = buf(c, 0), e.sinv = buf(c, 0), e.dgamma = buf(c, 0), e.dbeta = buf(c, 0);
    e.sum = malloc(sizeof(double) * c), e.sumsq = malloc(sizeof(double) * c);
    e.sdy = malloc(sizeof(double) * c), e.sdyx = malloc(sizeof(double) * c);
    double tmin, tmed, B = 4.0 * n;
    char row[128];
    timeit(run_bn_infer, &e, &tmin, &tmed);
    snprintf(row, sizeof row, "%s bn infer", name);
    report(row, 2.0 * n, 2 * B, tmin, tmed);
    timeit(run_bn_train_fwd, &e, &tmin, &tmed);
    snprintf(row, sizeof row, "%s bn train fwd (stats+apply)", name);
    report(row, 5.0 * n, 3 * B, tmin, tmed);
    timeit(run_bn_train_bwd, &e, &tmin, &tmed);
    snprintf(row, sizeof row, "%s bn train bwd (sums+din)", name);
    report(row, 10.0 * n, 6 * B, tmin, tmed);
    timeit(run_relu6, &e, &tmin, &tmed);
    snprintf(row, sizeof row, "%s relu6 fwd", name);
    report(row, 2.0 * n, 2 * B, tmin, tmed);
    timeit(run_relu6_bwd, &e, &tmin, &tmed);
    snprintf(row, sizeof row, "%s relu6 bwd", name);
    report(row, 2.0 * n, 4 * B, tmin, tmed);
    free(e.x), free(e.y), free(e.g), free(e.din), free(e.gamma), free(e.beta), free(e.mean);
    free(e.var), free(e.smean), free(e.sinv), free(e.dgamma), free(e.dbeta), free(e.sum);
    free(e.sumsq), free(e.sdy), free(e.sdyx);
}

static void bench_all(int threads)
{
    openblas_set_num_threads(threads);
    g_clock = threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    printf("\n== %d thread%s, batch %d, %s  (name, min, median, rate, %% of sgemm, GB/s)\n",
           threads, threads > 1 ? "s" : "", g_batch,
           threads == 1 ? "thread CPU time" : "wall time");
    g_peak = bench_sgemm_peak();
    /* MobileNetV2 at 224 (the stem's ZeroPadding makes 225x225, then 3x3/2 valid) */
    bench_conv("224 stem", 225, 225, 3, 3, 2, PADDING_VALID, 32, 0);
    bench_conv("224", 112, 112, 32, 1, 1, PADDING_SAME, 16, 1);
    bench_conv("224", 112, 112, 16, 1, 1, PADDING_SAME, 96, 1);
    bench_conv("224", 56, 56, 24, 1, 1, PADDING_SAME, 144, 1);
    bench_conv("224", 56, 56, 144, 1, 1, PADDING_SAME, 24, 1);
    bench_conv("224", 28, 28, 192, 1, 1, PADDING_SAME, 32, 1);
    bench_conv("224", 14, 14, 384, 1, 1, PADDING_SAME, 64, 1);
    bench_conv("224", 14, 14, 96, 1, 1, PADDING_SAME, 576, 1);
    bench_conv("224", 7, 7, 960, 1, 1, PADDING_SAME, 160, 1);
    bench_conv("224", 7, 7, 320, 1, 1, PADDING_SAME, 1280, 1);
    /* MobileNetV2 at 160 */
    bench_conv("160 stem", 161, 161, 3, 3, 2, PADDING_VALID, 32, 0);
    bench_conv("160", 80, 80, 32, 1, 1, PADDING_SAME, 16, 1);
    bench_conv("160", 40, 40, 24, 1, 1, PADDING_SAME, 144, 1);
    bench_conv("160", 5, 5, 320, 1, 1, PADDING_SAME, 1280, 1);
    /* seed-001 CNN at 150: 3x3 valid convolutions */
    bench_conv("cnn150", 150, 150, 3, 3, 1, PADDING_VALID, 32, 0);
    bench_conv("cnn150", 74, 74, 32, 3, 1, PADDING_VALID, 64, 1);
    bench_conv("cnn150", 36, 36, 64, 3, 1, PADDING_VALID, 128, 1);
    bench_conv("cnn150", 17, 17, 128, 3, 1, PADDING_VALID, 128, 1);
    /* few channels: where Winograd (conv2d_winograd.c) starts to pay */
    bench_conv("3x3", 56, 56, 16, 3, 1, PADDING_SAME, 16, 1);
    bench_conv("3x3", 56, 56, 8, 3, 1, PADDING_SAME, 8, 1);
    /* depthwise (MobileNetV2 224: block_1 stride 2 after ZeroPadding, block_2 stride 1) */
    bench_depthwise(113, 113, 96, 2, PADDING_VALID);
    bench_depthwise(56, 56, 144, 1, PADDING_SAME);
    bench_depthwise(112, 112, 32, 1, PADDING_SAME);
    bench_depthwise(28, 28, 192, 1, PADDING_SAME);
    bench_depthwise(14, 14, 576, 1, PADDING_SAME);
    bench_depthwise(7, 7, 960, 1, PADDING_SAME);
    bench_elementwise(112, 112, 96);
    bench_elementwise(56, 56, 144);
    bench_elementwise(7, 7, 1280);
}

int main(int argc, char **argv)
{
    int threads[8] = {1, 2}, nt = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            g_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            g_reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            g_only = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            nt = 0;
            for (char *t = strtok(argv[++i], ","); t && nt < 8; t = strtok(NULL, ","))
                threads[nt++] = atoi(t);
        } else {
            fprintf(stderr,
                    "usage: %s [--batch N] [--reps N] [--threads 1,2] [--only SUBSTRING]\n",
                    argv[0]);
            return 2;
        }
    }
    if (g_batch <= 0 || g_reps <= 0 || nt == 0) {
        fprintf(stderr, "bench_kernels: --batch, --reps and --threads must be positive\n");
        return 2;
    }
    for (int i = 0; i < nt; i++)
        bench_all(threads[i]);
    return 0;
}
