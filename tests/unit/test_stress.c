/* The stress test's image shifts (src/stress.h): severity 0 leaves the image unchanged,
 * every shift at every severity is a pure function of (image, seed, record index) and
 * changes the image, noise differs between seeds and records, and each shift does what its
 * name says (contrast lowers the spread, gamma darkens, blur and down-then-up sampling
 * smooth, a constant image survives resampling, zoom magnifies the centre, inverting
 * twice is the identity). */
#include "stress.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { H = 32, W = 24, C = 3, N = H * W * C };

static void test_image(uint8_t *img)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++) /* a gradient, a bright square and a checker edge */
                img[(y * W + x) * C + c] = (uint8_t)(40 + 4 * y + 2 * x + (x > 8 && x < 16 && y > 10 && y < 20 ? 60 : 0) +
                                                     ((x / 2 + y / 2) % 2 ? 10 : 0));
}

static double stddev(const uint8_t *a)
{
    double m = 0, v = 0;
    for (int i = 0; i < N; i++)
        m += a[i];
    m /= N;
    for (int i = 0; i < N; i++)
        v += (a[i] - m) * (a[i] - m);
    return sqrt(v / N);
}

static double roughness(const uint8_t *a) /* mean |horizontal difference| */
{
    double r = 0;
    for (int y = 0; y < H; y++)
        for (int x = 1; x < W; x++)
            r += fabs((double)a[(y * W + x) * C] - a[(y * W + x - 1) * C]);
    return r / (H * (W - 1));
}

static double mean(const uint8_t *a)
{
    double m = 0;
    for (int i = 0; i < N; i++)
        m += a[i];
    return m / N;
}

int main(void)
{
    uint8_t src[N], a[N], b[N];
    void *tmp = malloc(rb_shift_scratch_bytes(H, W, C));
    test_image(src);
    CHECK(rb_shift_severities(RB_SHIFT_INVERT) == 1 && rb_shift_severities(RB_SHIFT_BLUR) == 3, "severities");
    for (int s = 0; s < RB_SHIFT_COUNT; s++) {
        const char *name = rb_shift_name((rb_shift)s);
        memcpy(a, src, N);
        rb_shift_apply(a, H, W, C, (rb_shift)s, 0, 1, 5, tmp);
        CHECK(memcmp(a, src, N) == 0, "%s: severity 0 changes the image", name);
        for (int v = 1; v <= rb_shift_severities((rb_shift)s); v++) {
            memcpy(a, src, N);
            memcpy(b, src, N);
            rb_shift_apply(a, H, W, C, (rb_shift)s, v, 1, 5, tmp);
            rb_shift_apply(b, H, W, C, (rb_shift)s, v, 1, 5, tmp);
            CHECK(memcmp(a, b, N) == 0, "%s %d: not deterministic", name, v);
            CHECK(memcmp(a, src, N) != 0, "%s %d: the image is unchanged", name, v);
            CHECK(isfinite(rb_shift_parameter((rb_shift)s, v)), "%s %d: parameter", name, v);
        }
    }
    /* noise: another seed or record gives other noise; the same (seed, record) the same */
    memcpy(a, src, N);
    memcpy(b, src, N);
    rb_shift_apply(a, H, W, C, RB_SHIFT_NOISE, 2, 1, 5, tmp);
    rb_shift_apply(b, H, W, C, RB_SHIFT_NOISE, 2, 2, 5, tmp);
    CHECK(memcmp(a, b, N) != 0, "noise: seeds 1 and 2 agree");
    memcpy(b, src, N);
    rb_shift_apply(b, H, W, C, RB_SHIFT_NOISE, 2, 1, 6, tmp);
    CHECK(memcmp(a, b, N) != 0, "noise: records 5 and 6 agree");
    double dev = 0;
    for (int i = 0; i < N; i++)
        dev += ((double)a[i] - src[i]) * ((double)a[i] - src[i]);
    dev = sqrt(dev / N);
    CHECK(fabs(dev - 8) < 1, "noise severity 2: rms %.3f, want about 8 gray levels", dev);
    /* contrast lowers the spread, more at each severity */
    double prev = stddev(src);
    for (int v = 1; v <= 3; v++) {
        memcpy(a, src, N);
        rb_shift_apply(a, H, W, C, RB_SHIFT_CONTRAST, v, 1, 0, tmp);
        double sd = stddev(a);
        CHECK(sd < prev, "contrast %d: spread %.3f not below %.3f", v, sd, prev);
        CHECK(fabs(sd / stddev(src) - rb_shift_parameter(RB_SHIFT_CONTRAST, v)) < 0.03, "contrast %d: spread ratio %.3f",
              v, sd / stddev(src));
        prev = sd;
    }
    /* gamma > 1 darkens; blur and resolution smooth, more at each severity */
    prev = mean(src);
    double rb = roughness(src), rr = roughness(src);
    for (int v = 1; v <= 3; v++) {
        memcpy(a, src, N);
        rb_shift_apply(a, H, W, C, RB_SHIFT_GAMMA, v, 1, 0, tmp);
        CHECK(mean(a) < prev, "gamma %d does not darken", v);
        prev = mean(a);
        memcpy(a, src, N);
        rb_shift_apply(a, H, W, C, RB_SHIFT_BLUR, v, 1, 0, tmp);
        CHECK(roughness(a) < rb, "blur %d: roughness %.3f not below %.3f", v, roughness(a), rb);
        rb = roughness(a);
        memcpy(a, src, N);
        rb_shift_apply(a, H, W, C, RB_SHIFT_RESOLUTION, v, 1, 0, tmp);
        CHECK(roughness(a) < rr, "resolution %d: roughness %.3f not below %.3f", v, roughness(a), rr);
        rr = roughness(a);
    }
    /* a constant image stays constant under blur, resolution and zoom */
    uint8_t flat[N];
    for (int s = RB_SHIFT_BLUR; s <= RB_SHIFT_ZOOM; s++) {
        if (s == RB_SHIFT_NOISE)
            continue;
        memset(flat, 77, N);
        rb_shift_apply(flat, H, W, C, (rb_shift)s, 3, 1, 0, tmp);
        int same = 1;
        for (int i = 0; i < N; i++)
            same &= flat[i] == 77;
        CHECK(same, "%s: a constant image changes", rb_shift_name((rb_shift)s));
    }
    /* zoom keeps the centre: the bright square grows */
    int before = 0, after = 0;
    memcpy(a, src, N);
    rb_shift_apply(a, H, W, C, RB_SHIFT_ZOOM, 3, 1, 0, tmp);
    for (int i = 0; i < N; i += C) {
        before += src[i] > 150;
        after += a[i] > 150;
    }
    CHECK(after > before, "zoom: bright pixels %d -> %d", before, after);
    /* inverted polarity: 255 - v, twice the identity */
    memcpy(a, src, N);
    rb_shift_apply(a, H, W, C, RB_SHIFT_INVERT, 1, 1, 0, tmp);
    CHECK(a[0] == 255 - src[0] && a[N - 1] == 255 - src[N - 1], "invert");
    rb_shift_apply(a, H, W, C, RB_SHIFT_INVERT, 1, 1, 0, tmp);
    CHECK(memcmp(a, src, N) == 0, "invert twice");
    free(tmp);
    return TEST_DONE();
}
