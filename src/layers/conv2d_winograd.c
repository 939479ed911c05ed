/* Winograd F(2x2, 3x3) for 3x3 stride-1 Conv2D (float32 NHWC, Keras HWIO kernels).
 *
 * Each 2x2 block of output pixels ("tile") of one image is computed from the 4x4 input
 * window under it as  Y = A^T [ (G g G^T) .* (B^T d B) ] A  per (input, output) channel
 * pair; summed over input channels, the 16 element-wise products become 16 independent
 * matrix products, one per position k of the 4x4 transformed tile:
 *     M[k] (tiles, cout) = V[k] (tiles, cin) @ U[k] (cin, cout)
 * with V = B^T d B (input transform), U = G g G^T (kernel transform). That is 16 multiplies
 * per 4 outputs instead of 36 (2.25x fewer), done by cblas_sgemm; the transforms are
 * additions only (and halvings in U), vectorized over channels.
 *  - Tiles are numbered over (image, tile row, tile column) and processed in blocks, so the
 *    transformed input and the 16 products of one block (16 * tiles * (cin + cout) floats)
 *    stay about the size of one im2col block of conv2d.c and in cache between the passes.
 *  - U is recomputed at every call (weights change every training step): 16*cin*cout
 *    floats, tens of microseconds, against milliseconds for the products.
 *  - The input gradient of a 3x3 stride-1 convolution is itself one: din is dout convolved
 *    with the kernel rotated by 180 degrees and its channel axes swapped, with padding
 *    2 - pad on the top/left (the bottom/right ones follow from the sizes). The rotated
 *    kernel's transform is computed by reading w rotated and writing it transposed.
 *  - The weight gradient is the adjoint of the forward in g: dw = G^T M G with
 *    M[k] (cin, cout) = sum over tiles of V[k]^T E[k], E = A e A^T the transformed 2x2
 *    output-gradient tiles: the same V, 16 GEMMs whose inner dimension is the tiles of a
 *    block, accumulated block after block into M (beta = 1).
 * Forward and din of a pixel depend only on its own image: its tiles go through GEMMs of
 * that image alone, in blocks fixed by the image's shape (OpenBLAS rounds a GEMM row
 * differently at different positions on some CPUs, e.g. its Haswell kernels), so neither
 * the batch size, nor the companions, nor splitting a batch across threads changes a bit
 * (tested under every OpenBLAS core type CI runs).
 * Accuracy: the transforms add a few roundings to every product (B and A have entries 0,
 * +-1, G 0, +-1/2: no rounding in the coefficients), but sum transformed values that can
 * be larger than the direct terms and cancel. tests/unit/test_conv2d_winograd.c checks the
 * rounding-error bound of this chain and measures errors of at most 2 (forward), 4 (din)
 * and 3 (dw) u * sum|terms| of the direct sum on images of a few tiles or more (u = 2^-24;
 * im2col + GEMM: about 1), up to 50 u for a dw that sums 2 pixels through partial tiles. */
#include "layers.h"
#include "layers_internal.h"

#include <cblas.h>
#include <string.h>

/* Target floats of one tile block's V and M together; 1 MiB like CONV2D_BLOCK_FLOATS
 * (measured in bench/kernels.c, see docs/engine.md). */
#ifndef CONV2D_WINO_BLOCK_FLOATS
#define CONV2D_WINO_BLOCK_FLOATS (1 << 18)
#endif
#define WINO_MIN_TILES 64 /* at least this many tiles (GEMM rows) per block */
#define WINO_CCHUNK 256   /* channels per pass of the transforms (bounds the stack use) */

/* Use Winograd for 3x3 stride-1 convolutions with at least this many input and output
 * channels: with fewer, the GEMMs' inner dimension is too short for the saved multiplies
 * to pay for the transforms (measured, docs/engine.md). */
#ifndef CONV2D_WINO_MIN_CHANNELS
#define CONV2D_WINO_MIN_CHANNELS 8
#endif

/* Geometry of one Winograd convolution: in (n,h,w,cin) -> out (n,ho,wo,cout), out pixel
 * (oy,ox) reads in rows oy - pad_top .. oy - pad_top + 2 (zeros outside the image). */
typedef struct wino_geom {
    int n, h, w, cin;
    int ho, wo, cout;
    int pad_top, pad_left;
    int tw;             /* tiles per row: ceil(wo/2) */
    int64_t tiles_img;  /* tiles per image */
} wino_geom;

int conv2d_winograd_applies(const conv2d_shape *s)
{
    return s->kh == 3 && s->kw == 3 && s->sh == 1 && s->sw == 1 &&
           s->cin >= CONV2D_WINO_MIN_CHANNELS && s->cout >= CONV2D_WINO_MIN_CHANNELS;
}

static wino_geom geom_forward(const conv2d_shape *s)
{
    wino_geom g = {s->n, s->h, s->w, s->cin, s->ho, s->wo, s->cout, s->pad_top, s->pad_left,
                   0, 0};
    g.tw = (g.wo + 1) / 2;
    g.tiles_img = (int64_t)((g.ho + 1) / 2) * g.tw;
    return g;
}

/* din as a convolution of dout: input dout (n,ho,wo,cout), output (n,h,w,cin) */
static wino_geom geom_din(const conv2d_shape *s)
{
    wino_geom g = {s->n, s->ho, s->wo, s->cout, s->h, s->w, s->cin, 2 - s->pad_top,
                   2 - s->pad_left, 0, 0};
    g.tw = (g.wo + 1) / 2;
    g.tiles_img = (int64_t)((g.ho + 1) / 2) * g.tw;
    return g;
}

/* tiles per block: a function of the channels and of the tile count only */
static int64_t block_tiles(int64_t tiles, int cin, int cout)
{
    int64_t tb = CONV2D_WINO_BLOCK_FLOATS / (16 * ((int64_t)cin + cout));
    if (tb < WINO_MIN_TILES)
        tb = WINO_MIN_TILES;
    return tb < tiles ? tb : tiles;
}

/* tiles per block of forward and din: blocks of one image only, fixed by its shape
 * (layers.h, "Per-image results"); never more than block_tiles() of the batch */
static int64_t image_block_tiles(const wino_geom *g)
{
    return rb_image_block_rows(g->tiles_img, block_tiles(g->tiles_img, g->cin, g->cout));
}

size_t conv2d_winograd_scratch_floats(const conv2d_shape *s)
{
    /* forward and din have the same channel sum; din has at least as many tiles unless
     * the padding exceeds 1 */
    wino_geom f = geom_forward(s), d = geom_din(s);
    int64_t tf = f.tiles_img * s->n, td = d.tiles_img * s->n;
    int64_t tb = block_tiles(tf > td ? tf : td, s->cin, s->cout);
    return (size_t)16 * s->cin * s->cout + (size_t)16 * tb * (s->cin + s->cout);
}

/* U[16][cin][cout] = G g G^T for every (ci, co), g = w[ky][kx][ci][co] (HWIO); or, with
 * flip, U[16][cout][cin] for the kernel rotated by 180 degrees with its channel axes
 * swapped, g = w[2-ky][2-kx][ci][co] (the kernel of din).
 * G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]. */
RB_HOT static void kernel_transform(float *restrict U, const float *restrict w, int cin,
                                    int cout, int flip)
{
    const int64_t cc = (int64_t)cin * cout;
    for (int ci = 0; ci < cin; ci++) {
        const float *wk[9];
        for (int k = 0; k < 9; k++)
            wk[k] = w + (int64_t)(flip ? 8 - k : k) * cc + (int64_t)ci * cout;
        /* destination of (ci, co): U[k * cc + ci * cout + co], or U[k * cc + co * cin + ci] */
        float *u = U + (flip ? ci : (int64_t)ci * cout);
        const int64_t step = flip ? cin : 1;
        for (int co = 0; co < cout; co++) {
            float g[3][3], t[4][3];
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++)
                    g[ky][kx] = wk[ky * 3 + kx][co];
            for (int kx = 0; kx < 3; kx++) {
                t[0][kx] = g[0][kx];
                t[1][kx] = 0.5f * (g[0][kx] + g[1][kx] + g[2][kx]);
                t[2][kx] = 0.5f * (g[0][kx] - g[1][kx] + g[2][kx]);
                t[3][kx] = g[2][kx];
            }
            float *d = u + co * step;
            for (int i = 0; i < 4; i++) {
                d[(4 * i + 0) * cc] = t[i][0];
                d[(4 * i + 1) * cc] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                d[(4 * i + 2) * cc] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                d[(4 * i + 3) * cc] = t[i][2];
            }
        }
    }
}

/* One tile, channels [0, nc): v[k * ldv + c] = (B^T d B)[k] with d[a][b] = p[4a+b][c].
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
RB_HOT static void input_tile(float *restrict v, int64_t ldv, const float *const *p, int nc)
{
    const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3], *p4 = p[4], *p5 = p[5],
                *p6 = p[6], *p7 = p[7], *p8 = p[8], *p9 = p[9], *p10 = p[10], *p11 = p[11],
                *p12 = p[12], *p13 = p[13], *p14 = p[14], *p15 = p[15];
#pragma GCC ivdep
    for (int c = 0; c < nc; c++) {
        /* rows: r[i][b] = (B^T d)[i][b] */
        float r00 = p0[c] - p8[c], r01 = p1[c] - p9[c], r02 = p2[c] - p10[c],
              r03 = p3[c] - p11[c];
        float r10 = p4[c] + p8[c], r11 = p5[c] + p9[c], r12 = p6[c] + p10[c],
              r13 = p7[c] + p11[c];
        float r20 = p8[c] - p4[c], r21 = p9[c] - p5[c], r22 = p10[c] - p6[c],
              r23 = p11[c] - p7[c];
        float r30 = p4[c] - p12[c], r31 = p5[c] - p13[c], r32 = p6[c] - p14[c],
              r33 = p7[c] - p15[c];
        v[0 * ldv + c] = r00 - r02, v[1 * ldv + c] = r01 + r02;
        v[2 * ldv + c] = r02 - r01, v[3 * ldv + c] = r01 - r03;
        v[4 * ldv + c] = r10 - r12, v[5 * ldv + c] = r11 + r12;
        v[6 * ldv + c] = r12 - r11, v[7 * ldv + c] = r11 - r13;
        v[8 * ldv + c] = r20 - r22, v[9 * ldv + c] = r21 + r22;
        v[10 * ldv + c] = r22 - r21, v[11 * ldv + c] = r21 - r23;
        v[12 * ldv + c] = r30 - r32, v[13 * ldv + c] = r31 + r32;
        v[14 * ldv + c] = r32 - r31, v[15 * ldv + c] = r31 - r33;
    }
}

static const float wino_zeros[WINO_CCHUNK];

/* V[16][t1-t0][cin] = the transformed input windows of tiles t0..t1-1 */
static void input_transform(float *restrict V, const float *restrict in, const wino_geom *g,
                            int64_t t0, int64_t t1)
{
    const int C = g->cin;
    const int64_t ldv = (t1 - t0) * C;
    for (int64_t t = t0; t < t1; t++) {
        int64_t img = t / g->tiles_img, rem = t - img * g->tiles_img;
        int ty = (int)(rem / g->tw), tx = (int)(rem - (int64_t)ty * g->tw);
        int iy0 = 2 * ty - g->pad_top, ix0 = 2 * tx - g->pad_left;
        const float *base = in + img * (int64_t)g->h * g->w * C;
        const float *p[16];
        int inside = 1;
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) {
                int iy = iy0 + a, ix = ix0 + b;
                int ok = iy >= 0 && iy < g->h && ix >= 0 && ix < g->w;
                p[4 * a + b] = ok ? base + ((int64_t)iy * g->w + ix) * C : NULL;
                inside &= ok;
            }
        float *v = V + (t - t0) * C;
        if (inside) {
            input_tile(v, ldv, p, C);
            continue;
        }
        for (int c0 = 0; c0 < C; c0 += WINO_CCHUNK) {
            int nc = C - c0 < WINO_CCHUNK ? C - c0 : WINO_CCHUNK;
            const float *q[16];
            for (int k = 0; k < 16; k++)
                q[k] = p[k] ? p[k] + c0 : wino_zeros;
            input_tile(v + c0, ldv, q, nc);
        }
    }
}

/* One tile, channels [0, nc): the 2x2 outputs y = A^T m A, m[k] = mk[k * ldm + c],
 * A^T = [1 1 1 0; 0 1 -1 -1]; o[i] = b + y[i] (b may be NULL: 0), or o[i] += y[i]. */
RB_HOT static void output_tile(float *const *o, const float *restrict mk, int64_t ldm,
                               const float *restrict b, int accumulate, int nc)
{
    float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3];
    const float *m0 = mk, *m1 = mk + ldm, *m2 = mk + 2 * ldm, *m3 = mk + 3 * ldm,
                *m4 = mk + 4 * ldm, *m5 = mk + 5 * ldm, *m6 = mk + 6 * ldm, *m7 = mk + 7 * ldm,
                *m8 = mk + 8 * ldm, *m9 = mk + 9 * ldm, *m10 = mk + 10 * ldm,
                *m11 = mk + 11 * ldm, *m12 = mk + 12 * ldm, *m13 = mk + 13 * ldm,
                *m14 = mk + 14 * ldm, *m15 = mk + 15 * ldm;
#define WINO_OUT_Y                                                                          \
    float s00 = m0[c] + m4[c] + m8[c], s01 = m1[c] + m5[c] + m9[c],                         \
          s02 = m2[c] + m6[c] + m10[c], s03 = m3[c] + m7[c] + m11[c];                       \
    float s10 = m4[c] - m8[c] - m12[c], s11 = m5[c] - m9[c] - m13[c],                       \
          s12 = m6[c] - m10[c] - m14[c], s13 = m7[c] - m11[c] - m15[c];                     \
    float y00 = s00 + s01 + s02, y01 = s01 - s02 - s03;                                     \
    float y10 = s10 + s11 + s12, y11 = s11 - s12 - s13;
    if (accumulate) {
#pragma GCC ivdep
        for (int c = 0; c < nc; c++) {
            WINO_OUT_Y
            o0[c] += y00, o1[c] += y01, o2[c] += y10, o3[c] += y11;
        }
    } else if (b) {
#pragma GCC ivdep
        for (int c = 0; c < nc; c++) {
            WINO_OUT_Y
            o0[c] = b[c] + y00, o1[c] = b[c] + y01, o2[c] = b[c] + y10, o3[c] = b[c] + y11;
        }
    } else {
#pragma GCC ivdep
        for (int c = 0; c < nc; c++) {
            WINO_OUT_Y
            o0[c] = y00, o1[c] = y01, o2[c] = y10, o3[c] = y11;
        }
    }
#undef WINO_OUT_Y
}

/* out pixels of tiles t0..t1-1 from M[16][t1-t0][cout] */
static void output_transform(float *out, const float *M, const float *b, int accumulate,
                             const wino_geom *g, int64_t t0, int64_t t1)
{
    const int C = g->cout;
    const int64_t ldm = (t1 - t0) * C;
    for (int64_t t = t0; t < t1; t++) {
        int64_t img = t / g->tiles_img, rem = t - img * g->tiles_img;
        int ty = (int)(rem / g->tw), tx = (int)(rem - (int64_t)ty * g->tw);
        int oy = 2 * ty, ox = 2 * tx;
        float *base = out + ((img * g->ho + oy) * (int64_t)g->wo + ox) * C;
        const float *mk = M + (t - t0) * C;
        if (oy + 1 < g->ho && ox + 1 < g->wo) {
            float *o[4] = {base, base + C, base + (int64_t)g->wo * C,
                           base + ((int64_t)g->wo + 1) * C};
            output_tile(o, mk, ldm, b, accumulate, C);
            continue;
        }
        /* edge tile: the missing pixels go to a scratch row on the stack */
        float dump[WINO_CCHUNK] = {0};
        for (int c0 = 0; c0 < C; c0 += WINO_CCHUNK) {
            int nc = C - c0 < WINO_CCHUNK ? C - c0 : WINO_CCHUNK;
            float *o[4];
            for (int a = 0; a < 2; a++)
                for (int d = 0; d < 2; d++)
                    o[2 * a + d] = oy + a < g->ho && ox + d < g->wo
                                       ? base + ((int64_t)a * g->wo + d) * C + c0
                                       : dump;
            output_tile(o, mk + c0, ldm, b ? b + c0 : NULL, accumulate, nc);
        }
    }
}

/* out (n,ho,wo,cout) = b + conv(in), or += conv(in); U: [16][cin][cout] of this geometry.
 * (All GEMMs are NoTrans: OpenBLAS 0.3.21's small-matrix kernel for a transposed B rounds
 * differently from its large one, which would make results depend on the block size.) */
static void wino_run(float *out, int accumulate, const float *in, const float *b,
                     const wino_geom *g, const float *U, float *scratch)
{
    const int64_t tiles = g->tiles_img * g->n;
    const int64_t tb = image_block_tiles(g);
    const int64_t cc = (int64_t)g->cin * g->cout;
    float *V = scratch, *M = scratch + 16 * tb * g->cin;
    for (int64_t t0 = 0, t1; t0 < tiles; t0 = t1) {
        int64_t img_end = (t0 / g->tiles_img + 1) * g->tiles_img;
        t1 = t0 + tb < img_end ? t0 + tb : img_end;
        const int nt = (int)(t1 - t0);
        input_transform(V, in, g, t0, t1);
        for (int k = 0; k < 16; k++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nt, g->cout, g->cin, 1.0f,
                        V + (int64_t)k * nt * g->cin, g->cin, U + k * cc, g->cout, 0.0f,
                        M + (int64_t)k * nt * g->cout, g->cout);
        output_transform(out, M, b, accumulate, g, t0, t1);
    }
}

void conv2d_winograd_forward(float *out, const float *in, const float *w, const float *b,
                             const conv2d_shape *s, float *scratch)
{
    wino_geom g = geom_forward(s);
    float *U = scratch;
    kernel_transform(U, w, s->cin, s->cout, 0);
    wino_run(out, 0, in, b, &g, U, scratch + (size_t)16 * s->cin * s->cout);
}

void conv2d_winograd_backward_din(float *din, const float *dout, const float *w,
                                  const conv2d_shape *s, float *scratch)
{
    wino_geom g = geom_din(s);
    float *U = scratch;
    kernel_transform(U, w, s->cin, s->cout, 1);
    wino_run(din, 1, dout, NULL, &g, U, scratch + (size_t)16 * s->cin * s->cout);
}

/* One tile, channels [0, nc): v[k * ldv + c] = (A e A^T)[k], the 4x4 transform of the 2x2
 * output gradient e[a][b] = p[2a+b][c] (A = [1 0; 1 1; 1 -1; 0 -1], the adjoint of the
 * output transform). */
RB_HOT static void dout_tile(float *restrict v, int64_t ldv, const float *const *p, int nc)
{
    const float *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
#pragma GCC ivdep
    for (int c = 0; c < nc; c++) {
        float r00 = p0[c], r01 = p1[c];                   /* row 0: e[0] */
        float r10 = p0[c] + p2[c], r11 = p1[c] + p3[c]; /* row 1: e[0] + e[1] */
        float r20 = p0[c] - p2[c], r21 = p1[c] - p3[c]; /* row 2: e[0] - e[1] */
        float r30 = -p2[c], r31 = -p3[c];                 /* row 3: -e[1] */
        v[0 * ldv + c] = r00, v[1 * ldv + c] = r00 + r01;
        v[2 * ldv + c] = r00 - r01, v[3 * ldv + c] = -r01;
        v[4 * ldv + c] = r10, v[5 * ldv + c] = r10 + r11;
        v[6 * ldv + c] = r10 - r11, v[7 * ldv + c] = -r11;
        v[8 * ldv + c] = r20, v[9 * ldv + c] = r20 + r21;
        v[10 * ldv + c] = r20 - r21, v[11 * ldv + c] = -r21;
        v[12 * ldv + c] = r30, v[13 * ldv + c] = r30 + r31;
        v[14 * ldv + c] = r30 - r31, v[15 * ldv + c] = -r31;
    }
}

/* E[16][t1-t0][cout] = the transformed output gradients of tiles t0..t1-1 (pixels beyond
 * the output are zeros) */
static void dout_transform(float *restrict E, const float *restrict dout, const wino_geom *g,
                           int64_t t0, int64_t t1)
{
    const int C = g->cout;
    const int64_t lde = (t1 - t0) * C;
    for (int64_t t = t0; t < t1; t++) {
        int64_t img = t / g->tiles_img, rem = t - img * g->tiles_img;
        int ty = (int)(rem / g->tw), tx = (int)(rem - (int64_t)ty * g->tw);
        int oy = 2 * ty, ox = 2 * tx;
        const float *base = dout + ((img * g->ho + oy) * (int64_t)g->wo + ox) * C;
        float *e = E + (t - t0) * C;
        if (oy + 1 < g->ho && ox + 1 < g->wo) {
            const float *p[4] = {base, base + C, base + (int64_t)g->wo * C,
                                 base + ((int64_t)g->wo + 1) * C};
            dout_tile(e, lde, p, C);
            continue;
        }
        for (int c0 = 0; c0 < C; c0 += WINO_CCHUNK) {
            int nc = C - c0 < WINO_CCHUNK ? C - c0 : WINO_CCHUNK;
            const float *p[4];
            for (int a = 0; a < 2; a++)
                for (int d = 0; d < 2; d++)
                    p[2 * a + d] = oy + a < g->ho && ox + d < g->wo
                                       ? base + ((int64_t)a * g->wo + d) * C + c0
                                       : wino_zeros;
            dout_tile(e + c0, lde, p, nc);
        }
    }
}

/* dw[ky][kx][j] += (G^T M G)[ky][kx] for j < cc, M[k] = Mk[k * cc + j] (the adjoint of
 * the kernel transform; G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]) */
RB_HOT static void kernel_grad_transform(float *restrict dw, const float *restrict Mk,
                                         int64_t cc)
{
    for (int64_t j = 0; j < cc; j++) {
        float m[4][4], s[3][4];
        for (int i = 0; i < 4; i++)
            for (int q = 0; q < 4; q++)
                m[i][q] = Mk[(int64_t)(4 * i + q) * cc + j];
        for (int q = 0; q < 4; q++) {
            float h = 0.5f * (m[1][q] + m[2][q]);
            s[0][q] = m[0][q] + h;
            s[1][q] = 0.5f * (m[1][q] - m[2][q]);
            s[2][q] = h + m[3][q];
        }
        for (int ky = 0; ky < 3; ky++) {
            float h = 0.5f * (s[ky][1] + s[ky][2]);
            dw[(int64_t)(3 * ky + 0) * cc + j] += s[ky][0] + h;
            dw[(int64_t)(3 * ky + 1) * cc + j] += 0.5f * (s[ky][1] - s[ky][2]);
            dw[(int64_t)(3 * ky + 2) * cc + j] += h + s[ky][3];
        }
    }
}

void conv2d_winograd_backward_dw(float *dw, const float *dout, const float *in,
                                 const conv2d_shape *s, float *scratch)
{
    wino_geom g = geom_forward(s);
    const int64_t tiles = g.tiles_img * g.n;
    const int64_t tb = block_tiles(tiles, g.cin, g.cout);
    const int64_t cc = (int64_t)g.cin * g.cout;
    float *Mk = scratch, *V = scratch + 16 * cc, *E = V + 16 * tb * g.cin;
    /* M[k] (cin, cout) = sum over tiles of V[k]^T E[k], block after block */
    for (int64_t t0 = 0; t0 < tiles; t0 += tb) {
        int64_t t1 = t0 + tb < tiles ? t0 + tb : tiles;
        const int nt = (int)(t1 - t0);
        input_transform(V, in, &g, t0, t1);
        dout_transform(E, dout, &g, t0, t1);
        for (int k = 0; k < 16; k++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g.cin, g.cout, nt, 1.0f,
                        V + (int64_t)k * nt * g.cin, g.cin, E + (int64_t)k * nt * g.cout,
                        g.cout, t0 ? 1.0f : 0.0f, Mk + k * cc, g.cout);
    }
    kernel_grad_transform(dw, Mk, cc);
}
