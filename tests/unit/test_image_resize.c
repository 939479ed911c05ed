/* Resize tests: image_resize against a double-precision reference of the same filter written
 * here from its definition (separable triangle, support widened by the shrink factor, taps
 * normalised, round half up), for shrinking, enlarging, mixed and degenerate sizes and 1..4
 * channels; exact copies for equal sizes; pad and center-crop geometry; the minimum source
 * size used for DCT scaling; many sizes through the weight cache; two threads at once. */
#include "image.h"
#include "test_util.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static rb_error err;

static uint32_t rng = 12345;
static uint8_t rnd8(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return (uint8_t)(rng >> 24);
}

/* Reference weights of output i: taps lo .. lo+n-1. */
static int ref_weights(int in, int out, int i, double *w, int *lo)
{
    double scale = (double)in / out, fs = scale > 1 ? scale : 1, support = fs;
    double centre = (i + 0.5) * scale;
    int a = (int)floor(centre - support + 0.5), b = (int)floor(centre + support + 0.5);
    if (a < 0)
        a = 0;
    if (b > in)
        b = in;
    double sum = 0;
    for (int j = a; j < b; j++) {
        double t = 1 - fabs((j + 0.5 - centre) / fs);
        w[j - a] = t > 0 ? t : 0;
        sum += w[j - a];
    }
    for (int j = a; j < b; j++)
        w[j - a] /= sum;
    *lo = a;
    return b - a;
}

/* Reference resize of a box (sh x sw, row stride sst) to dh x dw, unrounded, into dst
 * (dh*dw*C doubles). */
static void ref_resize_d(const uint8_t *src, int sh, int sw, size_t sst, int C, double *dst,
                         int dh, int dw)
{
    int maxy = (int)(2 * fmax((double)sh / dh, 1) + 4);
    int maxx = (int)(2 * fmax((double)sw / dw, 1) + 4);
    double *wy = malloc(sizeof(double) * maxy), *wx = malloc(sizeof(double) * maxx);
    for (int y = 0; y < dh; y++) {
        int ylo, ny = sh == dh ? 1 : ref_weights(sh, dh, y, wy, &ylo);
        if (sh == dh) {
            ylo = y;
            wy[0] = 1;
        }
        for (int x = 0; x < dw; x++) {
            int xlo, nx = sw == dw ? 1 : ref_weights(sw, dw, x, wx, &xlo);
            if (sw == dw) {
                xlo = x;
                wx[0] = 1;
            }
            for (int c = 0; c < C; c++) {
                double v = 0;
                for (int j = 0; j < ny; j++)
                    for (int i = 0; i < nx; i++)
                        v += wy[j] * wx[i] *
                             src[(size_t)(ylo + j) * sst + (size_t)(xlo + i) * C + c];
                dst[((size_t)y * dw + x) * C + c] = v;
            }
        }
    }
    free(wy);
    free(wx);
}

/* The same, rounded half up to bytes (row stride dst_stride). */
static void ref_resize(const uint8_t *src, int sh, int sw, size_t sst, int C, uint8_t *dst,
                       int dh, int dw, size_t dst_stride)
{
    double *v = malloc(sizeof(double) * (size_t)dh * dw * C);
    ref_resize_d(src, sh, sw, sst, C, v, dh, dw);
    for (int y = 0; y < dh; y++)
        for (size_t i = 0; i < (size_t)dw * C; i++) {
            double r = floor(v[(size_t)y * dw * C + i] + 0.5);
            dst[y * dst_stride + i] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
        }
    free(v);
}

/* every value within 1 of the reference */
static int maxdiff_ok(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (abs((int)a[i] - (int)b[i]) > 1)
            return 0;
    return 1;
}

static image_u8 make_image(int h, int w, int C, int smooth)
{
    image_u8 im = {h, w, C, malloc((size_t)h * w * C)};
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < C; c++)
                im.data[((size_t)y * w + x) * C + c] =
                    smooth ? (uint8_t)((x * 3 + y * 5 + c * 40) & 255) : rnd8();
    return im;
}

/* Our resize against the reference: every value is the correctly rounded reference value,
 * except where that value lies within float precision of a .5 tie (where float and double
 * sums may round either way). */
static void compare(int ih, int iw, int oh, int ow, int C, int smooth)
{
    image_u8 im = make_image(ih, iw, C, smooth);
    size_t n = (size_t)oh * ow * C;
    uint8_t *a = malloc(n);
    double *v = malloc(n * sizeof(double));
    CHECK(image_resize(&im, oh, ow, RESIZE_STRETCH, a, &err) == 0, "resize: %s", err.msg);
    ref_resize_d(im.data, ih, iw, (size_t)iw * C, C, v, oh, ow);
    size_t bad = 0, ties = 0;
    for (size_t i = 0; i < n; i++) {
        double want = floor(v[i] + 0.5);
        if (a[i] == want)
            continue;
        double tie = fabs(v[i] - floor(v[i]) - 0.5);
        if (tie < 1e-3 && fabs(a[i] - v[i]) < 0.5 + 1e-3)
            ties++;
        else if (bad++ < 3)
            fprintf(stderr, "  %dx%d->%dx%d C%d [%zu]: got %d, reference %.6f\n", ih, iw, oh, ow,
                    C, i, a[i], v[i]);
    }
    CHECK(bad == 0, "%dx%dx%d -> %dx%d (%s): %zu of %zu values off the reference (%zu ties)",
          ih, iw, C, oh, ow, smooth ? "smooth" : "noise", bad, n, ties);
    free(a);
    free(v);
    free(im.data);
}

static void test_against_reference(void)
{
    static const int sizes[][4] = {
        {224, 224, 160, 160}, {168, 168, 160, 160}, {250, 250, 224, 224}, {300, 200, 64, 50},
        {1000, 37, 17, 5},    {17, 5, 1, 1},        {10, 13, 33, 29},     {50, 100, 80, 40},
        {1, 40, 1, 7},        {40, 1, 9, 1},        {1, 1, 5, 6},         {100, 100, 100, 37},
        {100, 100, 31, 100},  {3000, 20, 7, 20},    {20, 3000, 20, 11},   {64, 64, 32, 32},
        {63, 65, 127, 129},   {2, 2, 1, 1},         {5, 7, 4, 6},
    };
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (int C = 1; C <= 4; C++) {
            compare(sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], C, 0);
            if (C == 3)
                compare(sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], C, 1);
        }
    /* many sizes: more than the weight cache holds */
    for (int k = 1; k <= 24; k++)
        compare(50 + k, 61 - k, 10 + k, 7 + 2 * k, 3, 0);
}

static void test_exact_copy(void)
{
    for (int C = 1; C <= 3; C += 2) {
        image_u8 im = make_image(37, 53, C, 0);
        uint8_t *o = malloc((size_t)37 * 53 * C);
        for (int m = 0; m < 3; m++) {
            CHECK(image_resize(&im, 37, 53, (resize_mode)m, o, &err) == 0, "copy: %s", err.msg);
            CHECK(memcmp(o, im.data, (size_t)37 * 53 * C) == 0, "equal size copies (mode %d)", m);
        }
        free(o);
        free(im.data);
    }
    /* one axis unchanged: rows (or columns) pass through the identity exactly */
    image_u8 im = make_image(40, 30, 3, 0);
    uint8_t *o = malloc(40 * 15 * 3), *r = malloc(40 * 15 * 3);
    CHECK(image_resize(&im, 40, 15, RESIZE_STRETCH, o, &err) == 0, "h only");
    ref_resize(im.data, 40, 30, 90, 3, r, 40, 15, 45);
    CHECK(maxdiff_ok(o, r, 40 * 15 * 3), "width-only resize vs reference");
    free(o);
    free(r);
    free(im.data);
}

static void test_pad(void)
{
    /* wide white image into a square: black bands top and bottom, white centre */
    image_u8 im = {50, 100, 3, malloc(50 * 100 * 3)};
    memset(im.data, 255, 50 * 100 * 3);
    uint8_t o[64 * 64 * 3];
    CHECK(image_resize(&im, 64, 64, RESIZE_PAD, o, &err) == 0, "pad: %s", err.msg);
    int bad = 0;
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            for (int c = 0; c < 3; c++) {
                int want = (y >= 16 && y < 48) ? 255 : 0;
                bad += o[(y * 64 + x) * 3 + c] != want;
            }
    CHECK(bad == 0, "pad wide: %d wrong values (rows 16..47 white, rest black)", bad);
    free(im.data);

    /* tall image: bands left and right; inner box equals the reference resize */
    image_u8 t = make_image(90, 41, 1, 0);
    uint8_t p[30 * 40], ref[30 * 40];
    CHECK(image_resize(&t, 30, 40, RESIZE_PAD, p, &err) == 0, "pad tall");
    /* fitted size: 30 x round(41*30/90) = 30 x 14, placed at x = (40-14)/2 = 13 */
    memset(ref, 0, sizeof ref);
    ref_resize(t.data, 90, 41, 41, 1, ref + 13, 30, 14, 40);
    int off = 0, border = 0;
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 40; x++) {
            off += abs(p[y * 40 + x] - ref[y * 40 + x]) > 1;
            if (x < 13 || x >= 27)
                border += p[y * 40 + x] != 0;
        }
    CHECK(off == 0 && border == 0, "pad tall: %d off reference, %d non-black border", off,
          border);
    free(t.data);
}

static void test_center_crop(void)
{
    /* three vertical thirds red | green | blue, 100 x 300 into 50 x 50: the middle third */
    image_u8 im = {100, 300, 3, calloc(100 * 300 * 3, 1)};
    for (int y = 0; y < 100; y++)
        for (int x = 0; x < 300; x++)
            im.data[(y * 300 + x) * 3 + x / 100] = 255;
    uint8_t o[50 * 50 * 3];
    CHECK(image_resize(&im, 50, 50, RESIZE_CENTER_CROP, o, &err) == 0, "crop: %s", err.msg);
    int bad = 0;
    for (int i = 0; i < 50 * 50; i++)
        bad += o[3 * i] != 0 || o[3 * i + 1] != 255 || o[3 * i + 2] != 0;
    CHECK(bad == 0, "center-crop keeps only the green middle third: %d pixels off", bad);
    free(im.data);

    /* tall noise image: the crop box is the centred 61 x 61 (rows 14..74), then resized */
    image_u8 t = make_image(90, 61, 3, 0);
    uint8_t c[32 * 32 * 3], ref[32 * 32 * 3];
    CHECK(image_resize(&t, 32, 32, RESIZE_CENTER_CROP, c, &err) == 0, "crop tall");
    ref_resize(t.data + 14 * 61 * 3, 61, 61, 61 * 3, 3, ref, 32, 32, 32 * 3);
    CHECK(maxdiff_ok(c, ref, sizeof c), "center-crop = reference resize of the centred box");
    free(t.data);

    /* a 1-pixel-high strip to a square: crop box 1 x 1 in the middle */
    image_u8 s = make_image(1, 9, 1, 0);
    uint8_t q[4];
    CHECK(image_resize(&s, 2, 2, RESIZE_CENTER_CROP, q, &err) == 0, "crop strip");
    CHECK(q[0] == s.data[4] && q[3] == s.data[4], "strip crop takes the middle pixel");
    free(s.data);
}

static void test_min_source(void)
{
    int h, w;
    image_resize_min_source(224, 224, 160, 160, RESIZE_STRETCH, &h, &w);
    CHECK(h == 160 && w == 160, "stretch min %dx%d", h, w);
    image_resize_min_source(100, 120, 160, 160, RESIZE_STRETCH, &h, &w);
    CHECK(h == 100 && w == 120, "no upscaling needed from a small source: %dx%d", h, w);
    image_resize_min_source(1000, 2000, 224, 224, RESIZE_PAD, &h, &w);
    CHECK(h == 112 && w == 224, "pad min %dx%d", h, w);
    image_resize_min_source(1000, 2000, 224, 224, RESIZE_CENTER_CROP, &h, &w);
    CHECK(h == 224 && w == 448, "crop min %dx%d", h, w);
    image_resize_min_source(2000, 1000, 224, 224, RESIZE_CENTER_CROP, &h, &w);
    CHECK(h == 448 && w == 224, "crop min tall %dx%d", h, w);
    image_resize_min_source(2000, 2000, 224, 224, RESIZE_STRETCH, &h, &w);
    CHECK(h == 224 && w == 224, "square %dx%d", h, w);
}

static void test_names_and_errors(void)
{
    resize_mode m;
    const char *names[3] = {"stretch", "pad", "center-crop"};
    for (int i = 0; i < 3; i++) {
        CHECK(resize_mode_parse(names[i], &m) == 0 && (int)m == i, "parse %s", names[i]);
        CHECK(strcmp(resize_mode_name((resize_mode)i), names[i]) == 0, "name %d", i);
    }
    CHECK(resize_mode_parse("bilinear", &m) == -1, "unknown mode rejected");
    image_u8 im = make_image(4, 4, 3, 0);
    uint8_t o[48];
    CHECK(image_resize(&im, 0, 4, RESIZE_STRETCH, o, &err) == -1, "zero height rejected");
    CHECK(image_resize(&im, 4, -1, RESIZE_STRETCH, o, &err) == -1, "negative width rejected");
    image_u8 empty = {0};
    CHECK(image_resize(&empty, 4, 4, RESIZE_STRETCH, o, &err) == -1, "empty input rejected");
    free(im.data);
}

/* two threads resizing at once (per-thread weight caches) give the single-thread answer */
typedef struct job {
    const image_u8 *im;
    int oh, ow;
    uint8_t *out;
    int rc;
} job;

static void *run_job(void *p)
{
    job *j = p;
    rb_error e;
    for (int i = 0; i < 50 && j->rc == 0; i++)
        j->rc = image_resize(j->im, j->oh, j->ow, RESIZE_STRETCH, j->out, &e);
    return NULL;
}

static void test_threads(void)
{
    image_u8 im = make_image(120, 90, 3, 0);
    uint8_t *want1 = malloc(50 * 40 * 3), *want2 = malloc(33 * 70 * 3);
    image_resize(&im, 50, 40, RESIZE_STRETCH, want1, &err);
    image_resize(&im, 33, 70, RESIZE_STRETCH, want2, &err);
    job a = {&im, 50, 40, malloc(50 * 40 * 3), 0}, b = {&im, 33, 70, malloc(33 * 70 * 3), 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run_job, &a);
    pthread_create(&tb, NULL, run_job, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.rc == 0 && b.rc == 0 && memcmp(a.out, want1, 50 * 40 * 3) == 0 &&
              memcmp(b.out, want2, 33 * 70 * 3) == 0,
          "threaded resizes match");
    free(a.out);
    free(b.out);
    free(want1);
    free(want2);
    free(im.data);
}

/* Many source sizes in a row on one thread, as DCT-scaled decodes of a folder of differently
 * sized originals give: the per-thread weight cache rotates, and the vertical weights of a
 * resize must never be evicted to make room for its horizontal ones. */
static void test_cache_rotation(void)
{
    /* one height, new widths: the height's weights stay cached while the ring of 8 slots
     * fills with widths, until the slot to reuse is the height's own */
    for (int k = 0; k < 20; k++)
        compare(244, 250 + k, 224, 224, 1 + 2 * (k & 1), 1);
    for (int k = 0; k < 24; k++)
        compare(240 + (k * 7) % 13, 250 + (k * 5) % 11 + k, 224, 224, 1 + 2 * (k & 1), 1);
}

int main(void)
{
    test_cache_rotation();
    test_against_reference();
    test_exact_copy();
    test_pad();
    test_center_crop();
    test_min_source();
    test_names_and_errors();
    test_threads();
    return TEST_DONE();
}
