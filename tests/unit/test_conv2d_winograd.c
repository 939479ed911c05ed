/* labels: invariance */
/* Winograd F(2x2,3x3) Conv2D (src/layers/conv2d_winograd.c), through the public
 * conv2d_forward / conv2d_backward, against double-precision direct references:
 * forward (with and without bias), din (accumulated into a non-zero din), and dw
 * (computed in the same call), on odd sizes, images smaller than a tile,
 * edge tiles, valid and same padding, batches > 1, channel counts that are not multiples
 * of 16, more than one tile block and more than one channel chunk. Then: a batch gives
 * bit-identical forward and din to its samples run one at a time (so splitting a batch
 * across threads changes nothing; dw is a sum over the batch, which threads split anyway).
 *
 * Tolerance. Winograd does not sum the direct terms w*x: it sums products of transformed
 * values, which can be larger than those terms (and cancel), so the direct-sum bound of
 * test_layers_forward.c does not apply. Its own rounding-error bound, from the standard
 * gamma_k analysis of the chain of operations, is
 *     |err| <= (cin + 11) * u * mag_w,   u = 2^-24,
 *     mag_w = sum over ci of |A^T| ( (|G| |g| |G^T|) .* (|B^T| |d| |B|) ) |A|
 * (every matrix and value taken in absolute value): the input transform is 2 levels of
 * additions (gamma_2), the kernel transform 4 (gamma_4; halvings are exact), one product,
 * cin terms summed by the GEMM in any order (gamma_cin), and the output transform 4 levels
 * (gamma_4); 2 + 4 + 1 + cin + 4. Adding the bias, or adding into din, is one more
 * rounding of the result: + u * |result|. With the 1D coefficient tables
 * c1[i][k][a] = sum_j |A^T[i][j]| |G[j][k]| |B^T[j][a]| the bound is computed here in double
 * for every output (dw: its own chain and bound, below wino_mag_dw), so the check cannot
 * fail for a correct kernel, while a wrong tap,
 * padding or tile position moves a result by about one term, far above it. The measured
 * worst errors (printed) are a small fraction of the bound. */
#include "layers.h"
#include "layers_internal.h"
#include "layers_ref.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define U (1.0 / 16777216.0) /* float32 unit roundoff 2^-24 */

static const double AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
static const double G3[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
static const double BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
static double c1[2][3][4];

static void init_c1(void)
{
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 3; k++)
            for (int a = 0; a < 4; a++) {
                double s = 0;
                for (int j = 0; j < 4; j++)
                    s += fabs(AT[i][j]) * fabs(G3[j][k]) * fabs(BT[j][a]);
                c1[i][k][a] = s;
            }
}

/* mag_w of every output of the stride-1 3x3 convolution in (n,h,w,ci) -> (n,ho,wo,co)
 * with kernel k (3,3,ci,co) HWIO and top/left padding pt/pl: each output is in a 2x2
 * tile whose 4x4 input window starts at (2*(oy/2) - pt, 2*(ox/2) - pl). */
static void wino_mag(double *mag, const double *in, const double *k, int n, int h, int w,
                     int ci, int ho, int wo, int co, int pt, int pl)
{
    for (int i = 0; i < n; i++)
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++) {
                int iy0 = 2 * (oy / 2) - pt, ix0 = 2 * (ox / 2) - pl, ty = oy & 1, tx = ox & 1;
                double *m = mag + (((int64_t)i * ho + oy) * wo + ox) * co;
                for (int o = 0; o < co; o++)
                    m[o] = 0;
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) {
                        int iy = iy0 + a, ix = ix0 + b;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                            continue;
                        const double *x = in + (((int64_t)i * h + iy) * w + ix) * ci;
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                double cf = c1[ty][ky][a] * c1[tx][kx][b];
                                if (cf == 0)
                                    continue;
                                const double *kk = k + (int64_t)(ky * 3 + kx) * ci * co;
                                for (int c = 0; c < ci; c++)
                                    for (int o = 0; o < co; o++)
                                        m[o] += cf * fabs(x[c]) * fabs(kk[(int64_t)c * co + o]);
                            }
                    }
            }
}

/* the same for the weight gradient: dw[ky][kx][c][o] = G^T (sum over tiles of
 * (B^T d B) .* (A e A^T)) G with e the 2x2 output-gradient tile; its magnitude
 * mag_dw = sum over tiles of |G^T| (|B^T| |d| |B| .* |A| |e| |A^T|) |G| uses the same c1 */
static void wino_mag_dw(double *mag, const double *in, const double *e, int n, int h, int w,
                        int ci, int ho, int wo, int co, int pt, int pl)
{
    memset(mag, 0, sizeof(double) * 9 * ci * co);
    for (int i = 0; i < n; i++)
        for (int ty = 0; ty < (ho + 1) / 2; ty++)
            for (int tx = 0; tx < (wo + 1) / 2; tx++)
                for (int a = 0; a < 4; a++)
                    for (int b = 0; b < 4; b++) {
                        int iy = 2 * ty - pt + a, ix = 2 * tx - pl + b;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                            continue;
                        const double *x = in + (((int64_t)i * h + iy) * w + ix) * ci;
                        for (int p = 0; p < 2; p++)
                            for (int q = 0; q < 2; q++) {
                                int oy = 2 * ty + p, ox = 2 * tx + q;
                                if (oy >= ho || ox >= wo)
                                    continue;
                                const double *g = e + (((int64_t)i * ho + oy) * wo + ox) * co;
                                for (int ky = 0; ky < 3; ky++)
                                    for (int kx = 0; kx < 3; kx++) {
                                        double cf = c1[p][ky][a] * c1[q][kx][b];
                                        if (cf == 0)
                                            continue;
                                        double *m = mag + (int64_t)(ky * 3 + kx) * ci * co;
                                        for (int c = 0; c < ci; c++)
                                            for (int o = 0; o < co; o++)
                                                m[(int64_t)c * co + o] +=
                                                    cf * fabs(x[c]) * fabs(g[o]);
                                    }
                            }
                    }
}

/* count |got - ref| > tol; print the worst error in units of the bound and of
 * u * (direct magnitude), for the record */
static int64_t compare(const float *got, const double *ref, const double *tol,
                       const double *dmag, int64_t n, const char *what, double *worst_ratio)
{
    int64_t bad = 0;
    double wr = 0, wu = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= tol[i]))
            bad++;
        if (d / tol[i] > wr)
            wr = d / tol[i];
        if (dmag && dmag[i] > 0 && d / (U * dmag[i]) > wu)
            wu = d / (U * dmag[i]);
    }
    printf("  %-48s worst error %.3f of the bound, %.2f u*sum|terms|%s\n", what, wr, wu,
           bad ? "  FAILED" : "");
    if (worst_ratio && wu > *worst_ratio)
        *worst_ratio = wu;
    return bad;
}

static double g_worst_fwd = 0, g_worst_din = 0, g_worst_dw = 0;

static void run_case(int n, int h, int w, int ci, int co, int same, int bias)
{
    conv2d_shape s;
    if (conv2d_shape_init(&s, n, h, w, ci, 3, 3, 1, 1, same ? PADDING_SAME : PADDING_VALID,
                          co) != 0) {
        CHECK(0, "shape init failed");
        return;
    }
    char what[128];
    snprintf(what, sizeof what, "n%d %dx%dx%d ->%d %s%s", n, h, w, ci, co,
             same ? "same" : "valid", bias ? " bias" : "");
    CHECK(conv2d_winograd_applies(&s), "%s: Winograd not selected", what);
    const int ho = s.ho, wo = s.wo;
    const int64_t nin = (int64_t)n * h * w * ci, nout = (int64_t)n * ho * wo * co,
                  nw = 9LL * ci * co;
    float *in = malloc(sizeof(float) * nin), *wt = malloc(sizeof(float) * nw);
    float *b = malloc(sizeof(float) * co), *out = malloc(sizeof(float) * nout);
    float *dout = malloc(sizeof(float) * nout), *din = malloc(sizeof(float) * nin);
    float *dw = malloc(sizeof(float) * nw), *din0 = malloc(sizeof(float) * nin);
    size_t ns = conv2d_scratch_floats(&s);
    float *scratch = malloc(sizeof(float) * ns);
    ref_fill(in, nin, -1, 1);
    ref_fill(wt, nw, -1, 1);
    ref_fill(b, co, -1, 1);
    ref_fill(dout, nout, -1, 1);
    ref_fill(din0, nin, -1, 1);
    for (int64_t i = 0; i < nout; i++)
        out[i] = NAN; /* every output must be written */
    double *xd = ref_dup(in, nin), *wd = ref_dup(wt, nw), *gd = ref_dup(dout, nout);

    /* ---- forward */
    conv2d_forward(out, in, wt, bias ? b : NULL, &s, scratch);
    ref_geom g = ref_geom_make(n, h, w, ci, 3, 3, 1, 1, same, co);
    double *ref = malloc(sizeof(double) * nout), *dmag = malloc(sizeof(double) * nout);
    double *tol = malloc(sizeof(double) * nout);
    double *bd = ref_dup(b, co);
    ref_conv(ref, dmag, xd, wd, bias ? bd : NULL, &g);
    wino_mag(tol, xd, wd, n, h, w, ci, ho, wo, co, s.pad_top, s.pad_left);
    for (int64_t i = 0; i < nout; i++)
        tol[i] = (ci + 11) * U * tol[i] * 1.01 + (bias ? U * fabs(ref[i]) * 1.01 : 0) + 1e-30;
    char row[160];
    snprintf(row, sizeof row, "fwd %s", what);
    CHECK(compare(out, ref, tol, dmag, nout, row, &g_worst_fwd) == 0, "%s", row);

    /* ---- backward: din (accumulated onto din0) and dw */
    memcpy(din, din0, sizeof(float) * nin);
    memset(dw, 0, sizeof(float) * nw);
    conv2d_backward(din, dw, NULL, dout, in, wt, &s, scratch);
    double *rdin = malloc(sizeof(double) * nin), *rmag = calloc((size_t)nin, sizeof(double));
    double *rdw = calloc((size_t)nw, sizeof(double)), *rdwmag = calloc((size_t)nw, sizeof(double));
    for (int64_t i = 0; i < nin; i++)
        rdin[i] = 0;
    for (int i = 0; i < n; i++) /* the adjoint, by scattering every term */
        for (int oy = 0; oy < ho; oy++)
            for (int ox = 0; ox < wo; ox++)
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = oy - g.pt + ky, ix = ox - g.pl + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                            continue;
                        for (int c = 0; c < ci; c++)
                            for (int o = 0; o < co; o++) {
                                double gv = gd[(((int64_t)i * ho + oy) * wo + ox) * co + o];
                                double wv = wd[((int64_t)(ky * 3 + kx) * ci + c) * co + o];
                                double xv = xd[(((int64_t)i * h + iy) * w + ix) * ci + c];
                                int64_t di = (((int64_t)i * h + iy) * w + ix) * ci + c;
                                int64_t wi = ((int64_t)(ky * 3 + kx) * ci + c) * co + o;
                                rdin[di] += gv * wv, rmag[di] += fabs(gv * wv);
                                rdw[wi] += gv * xv, rdwmag[wi] += fabs(gv * xv);
                            }
                    }
    /* bound of din: the Winograd magnitude of dout convolved with the rotated, swapped
     * kernel wr[ky][kx][o][c] = w[2-ky][2-kx][c][o], padding 2 - pad */
    double *wr = malloc(sizeof(double) * nw), *dtol = malloc(sizeof(double) * nin);
    for (int k = 0; k < 9; k++)
        for (int c = 0; c < ci; c++)
            for (int o = 0; o < co; o++)
                wr[((int64_t)k * co + o) * ci + c] = wd[((int64_t)(8 - k) * ci + c) * co + o];
    wino_mag(dtol, gd, wr, n, ho, wo, co, h, w, ci, 2 - s.pad_top, 2 - s.pad_left);
    for (int64_t i = 0; i < nin; i++) {
        rdin[i] += din0[i];
        dtol[i] = (co + 11) * U * dtol[i] * 1.01 + U * fabs(rdin[i]) * 1.01 + 1e-30;
        rmag[i] += fabs(din0[i]);
    }
    snprintf(row, sizeof row, "din %s", what);
    CHECK(compare(din, rdin, dtol, rmag, nin, row, &g_worst_din) == 0, "%s", row);
    /* dw: input transform (gamma_2), output-gradient transform (gamma_2), product, T tiles
     * summed (gamma_T), kernel-gradient transform (gamma_4): (T + 9) u mag_dw */
    double *wtol = malloc(sizeof(double) * nw);
    wino_mag_dw(wtol, xd, gd, n, h, w, ci, ho, wo, co, s.pad_top, s.pad_left);
    const double T = (double)n * ((ho + 1) / 2) * ((wo + 1) / 2);
    for (int64_t i = 0; i < nw; i++)
        wtol[i] = (T + 9) * U * wtol[i] * 1.01 + U * fabs(rdw[i]) + 1e-30;
    snprintf(row, sizeof row, "dw %s", what);
    CHECK(compare(dw, rdw, wtol, rdwmag, nw, row, &g_worst_dw) == 0, "%s", row);
    free(wtol);

    /* ---- a batch equals its samples run one at a time, bit for bit */
    if (n > 1) {
        conv2d_shape s1;
        conv2d_shape_init(&s1, 1, h, w, ci, 3, 3, 1, 1, same ? PADDING_SAME : PADDING_VALID, co);
        float *o1 = malloc(sizeof(float) * nout), *d1 = malloc(sizeof(float) * nin);
        memcpy(d1, din0, sizeof(float) * nin);
        for (int i = 0; i < n; i++) {
            conv2d_forward(o1 + (int64_t)i * ho * wo * co, in + (int64_t)i * h * w * ci, wt,
                           bias ? b : NULL, &s1, scratch);
            conv2d_backward(d1 + (int64_t)i * h * w * ci, NULL, NULL,
                            dout + (int64_t)i * ho * wo * co, in + (int64_t)i * h * w * ci, wt,
                            &s1, scratch);
        }
        CHECK(!memcmp(o1, out, sizeof(float) * nout), "%s: forward per sample differs", what);
        CHECK(!memcmp(d1, din, sizeof(float) * nin), "%s: din per sample differs", what);
        free(o1), free(d1);
    }
    free(in), free(wt), free(b), free(out), free(dout), free(din), free(dw), free(din0);
    free(scratch), free(xd), free(wd), free(gd), free(ref), free(dmag), free(tol), free(bd);
    free(rdin), free(rmag), free(rdw), free(rdwmag), free(wr), free(dtol);
}

int main(void)
{
    init_c1();
    /*       n   h   w   ci   co same bias */
    run_case(2, 7, 5, 16, 17, 0, 1);  /* odd output 5x3: edge tiles on both sides */
    run_case(3, 5, 9, 19, 16, 1, 0);  /* same, odd */
    run_case(2, 8, 6, 24, 40, 1, 1);  /* same, even: full tiles only (forward) */
    run_case(2, 3, 3, 16, 16, 0, 1);  /* valid on 3x3: a 1x1 output, one partial tile */
    run_case(2, 2, 5, 16, 20, 1, 0);  /* h < 4 */
    run_case(1, 1, 1, 17, 16, 1, 1);  /* a 1x1 image: all padding */
    run_case(2, 3, 8, 20, 18, 0, 0);  /* valid, 1 output row */
    run_case(2, 40, 37, 16, 16, 1, 1); /* several tile blocks, blocks across images */
    run_case(1, 4, 5, 300, 16, 1, 0); /* more than one channel chunk (cin > 256) */
    run_case(1, 5, 4, 16, 300, 0, 1); /* cout > 256: chunked edge tiles, din cin > 256 */
    run_case(2, 10, 9, 32, 64, 0, 1); /* seed-001 CNN-like: valid, 32 -> 64 */
    run_case(2, 6, 7, 8, 9, 1, 1);    /* the fewest channels Winograd takes */
    /* below the channel threshold, conv2d keeps im2col */
    conv2d_shape s;
    conv2d_shape_init(&s, 1, 8, 8, 3, 3, 3, 1, 1, PADDING_VALID, 32);
    CHECK(!conv2d_winograd_applies(&s), "cin 3 must stay im2col");
    conv2d_shape_init(&s, 1, 8, 8, 32, 3, 3, 2, 2, PADDING_VALID, 32);
    CHECK(!conv2d_winograd_applies(&s), "stride 2 must stay im2col");
    printf("worst error: forward %.2f, din %.2f, dw %.2f  u*sum|terms| of the direct sum\n",
           g_worst_fwd, g_worst_din, g_worst_dw);
    return TEST_DONE();
}
