/* Decoder tests: JPEG, PNG and TIFF variants generated here with libjpeg, libpng and libtiff
 * from known pixel patterns, decoded through io/image.h and checked pixel by pixel (exact for
 * the lossless formats, with a tolerance for JPEG); DCT-scaled output sizes; channel
 * conversions; the decode+resize path; PNG export round trip; and, when the shared data and
 * fixture are present, bit-exact decoding of six chest X-rays against the reference pixels. */
#include "image.h"
#include "test_util.h"

#include <dirent.h>
#include <hdf5.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>

#include <jpeglib.h>

static rb_error err;

/* ---------- helpers ---------- */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A smooth RGB pattern (JPEG-friendly), h x w x 3. */
static uint8_t *pattern_rgb(int h, int w)
{
    uint8_t *p = malloc((size_t)h * w * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = p + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 255 / (w - 1));
            q[1] = (uint8_t)(y * 255 / (h - 1));
            q[2] = (uint8_t)((x + y) * 255 / (w + h - 2));
        }
    return p;
}

static uint8_t *pattern_gray(int h, int w)
{
    uint8_t *p = malloc((size_t)h * w);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            p[(size_t)y * w + x] = (uint8_t)(20 + (x * 200 / (w - 1) + y * 30 / (h - 1)) % 216);
    return p;
}

static uint8_t luma(int r, int g, int b)
{
    return (uint8_t)((r * 19595u + g * 38470u + b * 7471u + 0x8000u) >> 16);
}

static uint8_t u16to8(unsigned v)
{
    return (uint8_t)((v * 255u + 32767u) / 65535u);
}

/* max and mean absolute difference */
static int maxdiff(const uint8_t *a, const uint8_t *b, size_t n, double *mean)
{
    int m = 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m)
            m = d;
        s += d;
    }
    if (mean)
        *mean = n ? s / n : 0;
    return m;
}

/* ---------- JPEG ---------- */

/* in_cs: JCS_RGB, JCS_GRAYSCALE or JCS_CMYK; file_cs: colour space in the file. */
static uint8_t *jpeg_encode(const uint8_t *px, int h, int w, J_COLOR_SPACE in_cs,
                            J_COLOR_SPACE file_cs, int quality, int progressive, size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long outlen = 0;
    jpeg_mem_dest(&c, &out, &outlen);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.in_color_space = in_cs;
    c.input_components = in_cs == JCS_GRAYSCALE ? 1 : in_cs == JCS_CMYK ? 4 : 3;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, file_cs);
    jpeg_set_quality(&c, quality, TRUE);
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * c.input_components);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = outlen;
    return out;
}

static void test_jpeg(void)
{
    const int H = 48, W = 64;
    uint8_t *rgb = pattern_rgb(H, W);
    size_t blen, plen, glen;
    uint8_t *base = jpeg_encode(rgb, H, W, JCS_RGB, JCS_YCbCr, 95, 0, &blen);
    uint8_t *prog = jpeg_encode(rgb, H, W, JCS_RGB, JCS_YCbCr, 95, 1, &plen);

    image_info info;
    CHECK(image_sniff(base, blen) == IMAGE_FORMAT_JPEG, "sniff jpeg");
    CHECK(image_probe(base, blen, NULL, &info, "b.jpg", &err) == 0, "probe: %s", err.msg);
    CHECK(info.format == IMAGE_FORMAT_JPEG && info.width == W && info.height == H &&
              info.channels == 3 && info.bits == 8,
          "probe info %dx%d c%d b%d", info.width, info.height, info.channels, info.bits);

    image_u8 a = {0}, b = {0};
    CHECK(image_decode(base, blen, 3, 0, 0, NULL, &a, "b.jpg", &err) == 0, "baseline: %s",
          err.msg);
    CHECK(a.height == H && a.width == W && a.channels == 3, "baseline size");
    double mean;
    int md = maxdiff(a.data, rgb, (size_t)H * W * 3, &mean);
    CHECK(md <= 12 && mean < 1.5, "baseline vs pattern: max %d mean %.2f", md, mean);

    /* progressive re-orders the same quantised coefficients: identical pixels */
    CHECK(image_decode(prog, plen, 3, 0, 0, NULL, &b, "p.jpg", &err) == 0, "progressive: %s",
          err.msg);
    CHECK(b.data && memcmp(a.data, b.data, (size_t)H * W * 3) == 0,
          "progressive decodes like baseline");
    image_u8_free(&b);

    /* RGB JPEG to 1 channel: the Y channel, close to the luma of the RGB decode */
    CHECK(image_decode(base, blen, 1, 0, 0, NULL, &b, "b.jpg", &err) == 0, "to gray: %s",
          err.msg);
    CHECK(b.channels == 1, "gray channels");
    int worst = 0;
    for (int i = 0; i < H * W; i++) {
        int d = abs((int)b.data[i] - luma(a.data[3 * i], a.data[3 * i + 1], a.data[3 * i + 2]));
        if (d > worst)
            worst = d;
    }
    CHECK(worst <= 3, "Y vs luma(RGB): %d", worst);
    image_u8_free(&b);
    image_u8_free(&a);

    /* gray JPEG: 1 channel close to the pattern, 3 channels replicate exactly */
    uint8_t *gray = pattern_gray(H, W);
    uint8_t *gj = jpeg_encode(gray, H, W, JCS_GRAYSCALE, JCS_GRAYSCALE, 95, 0, &glen);
    CHECK(image_probe(gj, glen, NULL, &info, "g.jpg", &err) == 0 && info.channels == 1,
          "gray probe");
    CHECK(image_decode(gj, glen, 1, 0, 0, NULL, &a, "g.jpg", &err) == 0, "gray: %s", err.msg);
    md = maxdiff(a.data, gray, (size_t)H * W, &mean);
    CHECK(md <= 12 && mean < 1.5, "gray vs pattern: max %d mean %.2f", md, mean);
    CHECK(image_decode(gj, glen, 3, 0, 0, NULL, &b, "g.jpg", &err) == 0, "gray->rgb: %s",
          err.msg);
    int rep = b.channels == 3;
    for (int i = 0; rep && i < H * W; i++)
        rep = b.data[3 * i] == a.data[i] && b.data[3 * i + 1] == a.data[i] &&
              b.data[3 * i + 2] == a.data[i];
    CHECK(rep, "gray JPEG as RGB replicates the gray decode");
    image_u8_free(&a);
    image_u8_free(&b);

    /* progressive gray */
    size_t pglen;
    uint8_t *pgj = jpeg_encode(gray, H, W, JCS_GRAYSCALE, JCS_GRAYSCALE, 90, 1, &pglen);
    CHECK(image_decode(pgj, pglen, 1, 0, 0, NULL, &a, "pg.jpg", &err) == 0, "prog gray: %s",
          err.msg);
    md = maxdiff(a.data, gray, (size_t)H * W, &mean);
    CHECK(md <= 16 && mean < 2.0, "prog gray vs pattern: max %d mean %.2f", md, mean);
    image_u8_free(&a);
    free(pgj);

    /* CMYK and YCCK, Adobe convention (stored inverted): flat patches of known colour */
    static const uint8_t cmyk[4][4] = {
        {0, 0, 0, 0}, {255, 0, 0, 0}, {30, 120, 200, 60}, {0, 0, 0, 255}};
    uint8_t *cm = malloc((size_t)H * W * 4);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const uint8_t *v = cmyk[(y / 24) * 2 + x / 32];
            for (int k = 0; k < 4; k++)
                cm[((size_t)y * W + x) * 4 + k] = (uint8_t)(255 - v[k]); /* inverted */
        }
    J_COLOR_SPACE spaces[2] = {JCS_CMYK, JCS_YCCK};
    for (int s = 0; s < 2; s++) {
        size_t clen;
        uint8_t *cj = jpeg_encode(cm, H, W, JCS_CMYK, spaces[s], 98, s, &clen);
        CHECK(image_probe(cj, clen, NULL, &info, "c.jpg", &err) == 0 && info.channels == 4,
              "cmyk probe");
        CHECK(image_decode(cj, clen, 3, 0, 0, NULL, &a, "c.jpg", &err) == 0, "cmyk: %s",
              err.msg);
        CHECK(image_decode(cj, clen, 1, 0, 0, NULL, &b, "c.jpg", &err) == 0, "cmyk gray: %s",
              err.msg);
        int bad = 0;
        for (int p = 0; p < 4 && a.data && b.data; p++) {
            int y = (p / 2) * 24 + 12, x = (p % 2) * 32 + 16;
            const uint8_t *v = cmyk[p];
            int nk = 255 - v[3], e[3];
            for (int k = 0; k < 3; k++)
                e[k] = (255 - v[k]) * nk / 255;
            const uint8_t *got = a.data + ((size_t)y * W + x) * 3;
            for (int k = 0; k < 3; k++)
                if (abs(got[k] - e[k]) > 4)
                    bad++;
            if (abs(b.data[(size_t)y * W + x] - luma(got[0], got[1], got[2])) > 0)
                bad++;
        }
        CHECK(bad == 0, "%s colours (Adobe inverted): %d off",
              s ? "YCCK" : "CMYK", bad);
        image_u8_free(&a);
        image_u8_free(&b);
        free(cj);
    }
    free(cm);

    /* DCT scaling: smallest M/8, M in {1, 2, 4, 8}, with the output still >= the minimum */
    {
        const int h = 120, w = 200;
        uint8_t *big = pattern_rgb(h, w);
        size_t len;
        uint8_t *j = jpeg_encode(big, h, w, JCS_RGB, JCS_YCbCr, 95, 0, &len);
        struct {
            int mh, mw, eh, ew;
        } cases[] = {{0, 0, 120, 200},     {30, 50, 30, 50},     {31, 50, 60, 100},
                     {15, 1, 15, 25},      {1, 1, 15, 25},       {60, 100, 60, 100},
                     {61, 0, 120, 200},    {0, 101, 120, 200},   {500, 500, 120, 200},
                     {0, 100, 60, 100},    {16, 0, 30, 50}};
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            CHECK(image_decode(j, len, 3, cases[i].mh, cases[i].mw, NULL, &a, "s.jpg", &err) ==
                      0,
                  "scaled: %s", err.msg);
            CHECK(a.height == cases[i].eh && a.width == cases[i].ew,
                  "min %dx%d -> %dx%d, want %dx%d", cases[i].mh, cases[i].mw, a.height, a.width,
                  cases[i].eh, cases[i].ew);
            image_u8_free(&a);
        }
        /* a 1/4-scaled decode looks like the full decode shrunk with the resize filter */
        image_u8 full = {0};
        CHECK(image_decode(j, len, 3, 0, 0, NULL, &full, "s.jpg", &err) == 0, "full");
        CHECK(image_decode(j, len, 3, 30, 50, NULL, &a, "s.jpg", &err) == 0, "quarter");
        uint8_t *shr = malloc(30 * 50 * 3);
        CHECK(image_resize(&full, 30, 50, RESIZE_STRETCH, shr, &err) == 0, "resize");
        md = maxdiff(a.data, shr, 30 * 50 * 3, &mean);
        CHECK(md <= 10 && mean < 2.0, "DCT 1/4 vs resized full: max %d mean %.2f", md, mean);
        free(shr);
        image_u8_free(&full);
        image_u8_free(&a);

        /* image_load_resized with DCT scaling: 200x120 -> 40x25 decodes at 2/8 (50x30) */
        uint8_t out1[25 * 40 * 3], out2[25 * 40 * 3];
        image_info li;
        CHECK(image_load_resized(j, len, 25, 40, 3, RESIZE_STRETCH, 1, NULL, out1, &li, "s.jpg",
                                 &err) == 0,
              "load_resized: %s", err.msg);
        CHECK(li.width == 200 && li.height == 120 && li.format == IMAGE_FORMAT_JPEG,
              "load_resized info");
        CHECK(image_decode(j, len, 3, 25, 40, NULL, &a, "s.jpg", &err) == 0 && a.width == 50,
              "decode 2/8");
        CHECK(image_resize(&a, 25, 40, RESIZE_STRETCH, out2, &err) == 0, "resize 2/8");
        CHECK(memcmp(out1, out2, sizeof out1) == 0, "load_resized = decode at 2/8 + resize");
        image_u8_free(&a);
        CHECK(image_load_resized(j, len, 25, 40, 3, RESIZE_STRETCH, 0, NULL, out1, &li, "s.jpg",
                                 &err) == 0,
              "load_resized no dct");
        md = maxdiff(out1, out2, sizeof out1, &mean);
        CHECK(md <= 10 && mean < 2.0, "DCT path vs full path: max %d mean %.2f", md, mean);
        free(j);
        free(big);
    }

    /* gray JPEG through load_resized as RGB: resized in gray, replicated */
    {
        uint8_t o3[20 * 30 * 3], o1[20 * 30];
        CHECK(image_load_resized(gj, glen, 20, 30, 3, RESIZE_PAD, 1, NULL, o3, NULL, "g.jpg",
                                 &err) == 0,
              "gray load 3: %s", err.msg);
        CHECK(image_load_resized(gj, glen, 20, 30, 1, RESIZE_PAD, 1, NULL, o1, NULL, "g.jpg",
                                 &err) == 0,
              "gray load 1: %s", err.msg);
        int ok = 1;
        for (int i = 0; i < 20 * 30; i++)
            ok &= o3[3 * i] == o1[i] && o3[3 * i + 1] == o1[i] && o3[3 * i + 2] == o1[i];
        CHECK(ok, "gray load_resized RGB = gray replicated");
    }

    /* truncated */
    CHECK(image_decode(base, blen / 2, 3, 0, 0, NULL, &a, "t.jpeg", &err) == -1 &&
              strstr(err.msg, "t.jpeg") && strstr(err.msg, "truncated"),
          "truncated: %s", err.msg);
    CHECK(a.data == NULL, "no pixels on failure");

    free(rgb);
    free(gray);
    free(base);
    free(prog);
    free(gj);
}

/* ---------- PNG ---------- */

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void mem_write(png_structp png, png_bytep d, size_t n)
{
    membuf *m = png_get_io_ptr(png);
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, d, n);
    m->n += n;
}
static void mem_flush(png_structp png)
{
    (void)png;
}

/* Sample value of channel c at (x, y) for a depth-bit PNG (palette: index). */
static unsigned png_sample(int x, int y, int c, int depth)
{
    unsigned maxv = (1u << depth) - 1;
    unsigned v = (unsigned)(x * 7 + y * 13 + c * 101 + (x * y) % 17);
    return v * (depth == 16 ? 257u : 1u) % (maxv + 1);
}

static uint8_t *png_encode(int h, int w, int color_type, int depth, int interlace,
                           png_color *pal, int npal, size_t *len)
{
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m.p);
        return NULL;
    }
    png_set_write_fn(png, &m, mem_write, mem_flush);
    png_set_IHDR(png, info, w, h, depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_PLTE(png, info, pal, npal);
        png_byte trns[4] = {0, 128, 255, 7};
        png_set_tRNS(png, info, trns, npal < 4 ? npal : 4, NULL);
    }
    png_write_info(png, info);
    int nch = color_type == PNG_COLOR_TYPE_GRAY         ? 1
              : color_type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
              : color_type == PNG_COLOR_TYPE_RGB        ? 3
              : color_type == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                                                        : 1;
    size_t rowbytes = ((size_t)w * nch * depth + 7) / 8;
    uint8_t *img = calloc((size_t)h, rowbytes);
    for (int y = 0; y < h; y++) {
        uint8_t *row = img + (size_t)y * rowbytes;
        for (int x = 0; x < w; x++)
            for (int c = 0; c < nch; c++) {
                unsigned v = png_sample(x, y, c, depth);
                if (color_type == PNG_COLOR_TYPE_PALETTE)
                    v %= (unsigned)npal;
                size_t s = (size_t)x * nch + c;
                if (depth == 16) {
                    row[2 * s] = (uint8_t)(v >> 8);
                    row[2 * s + 1] = (uint8_t)v;
                } else if (depth == 8) {
                    row[s] = (uint8_t)v;
                } else {
                    size_t bit = s * depth;
                    row[bit / 8] |= (uint8_t)(v << (8 - depth - bit % 8));
                }
            }
    }
    png_bytep *rows = malloc(sizeof(png_bytep) * h);
    for (int y = 0; y < h; y++)
        rows[y] = img + (size_t)y * rowbytes;
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(rows);
    free(img);
    *len = m.n;
    return m.p;
}

/* Expected 8-bit RGB of pixel (x, y). */
static void png_expect(int x, int y, int color_type, int depth, const png_color *pal, int npal,
                       uint8_t rgb[3])
{
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        unsigned i = png_sample(x, y, 0, depth) % (unsigned)npal;
        rgb[0] = pal[i].red;
        rgb[1] = pal[i].green;
        rgb[2] = pal[i].blue;
        return;
    }
    int color = color_type & PNG_COLOR_MASK_COLOR;
    for (int c = 0; c < 3; c++) {
        unsigned v = png_sample(x, y, color ? c : 0, depth);
        rgb[c] = depth == 16 ? u16to8(v) : (uint8_t)(v * 255u / ((1u << depth) - 1));
    }
}

static void test_png(void)
{
    png_color pal[16];
    for (int i = 0; i < 16; i++) {
        pal[i].red = (png_byte)(i * 16 + 3);
        pal[i].green = (png_byte)(255 - i * 11);
        pal[i].blue = (png_byte)(i * i);
    }
    struct {
        int ct, depth, chans;
    } kinds[] = {
        {PNG_COLOR_TYPE_GRAY, 1, 1},       {PNG_COLOR_TYPE_GRAY, 2, 1},
        {PNG_COLOR_TYPE_GRAY, 4, 1},       {PNG_COLOR_TYPE_GRAY, 8, 1},
        {PNG_COLOR_TYPE_GRAY, 16, 1},      {PNG_COLOR_TYPE_GRAY_ALPHA, 8, 2},
        {PNG_COLOR_TYPE_GRAY_ALPHA, 16, 2}, {PNG_COLOR_TYPE_RGB, 8, 3},
        {PNG_COLOR_TYPE_RGB, 16, 3},       {PNG_COLOR_TYPE_RGB_ALPHA, 8, 4},
        {PNG_COLOR_TYPE_RGB_ALPHA, 16, 4}, {PNG_COLOR_TYPE_PALETTE, 1, 3},
        {PNG_COLOR_TYPE_PALETTE, 2, 3},    {PNG_COLOR_TYPE_PALETTE, 4, 3},
        {PNG_COLOR_TYPE_PALETTE, 8, 3},
    };
    const int H = 23, W = 37;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
        for (int il = 0; il < 2; il++) {
            int ct = kinds[k].ct, depth = kinds[k].depth;
            int npal = ct == PNG_COLOR_TYPE_PALETTE ? (depth >= 4 ? 16 : 1 << depth) : 0;
            size_t len;
            uint8_t *p = png_encode(H, W, ct, depth, il, pal, npal, &len);
            CHECK(p != NULL, "encode png ct %d depth %d", ct, depth);
            if (!p)
                continue;
            image_info info;
            CHECK(image_probe(p, len, NULL, &info, "x.png", &err) == 0, "probe: %s", err.msg);
            CHECK(info.format == IMAGE_FORMAT_PNG && info.width == W && info.height == H &&
                      info.channels == kinds[k].chans && info.bits == depth,
                  "png probe ct %d depth %d: %dx%d c%d b%d", ct, depth, info.width, info.height,
                  info.channels, info.bits);
            image_u8 a = {0}, g = {0};
            CHECK(image_decode(p, len, 3, 0, 0, NULL, &a, "x.png", &err) == 0,
                  "png ct %d depth %d il %d: %s", ct, depth, il, err.msg);
            CHECK(image_decode(p, len, 1, 0, 0, NULL, &g, "x.png", &err) == 0,
                  "png gray ct %d depth %d il %d: %s", ct, depth, il, err.msg);
            int bad = 0;
            for (int y = 0; y < H && a.data && g.data; y++)
                for (int x = 0; x < W; x++) {
                    uint8_t e[3];
                    png_expect(x, y, ct, depth, pal, npal, e);
                    const uint8_t *q = a.data + ((size_t)y * W + x) * 3;
                    if (q[0] != e[0] || q[1] != e[1] || q[2] != e[2])
                        bad++;
                    uint8_t eg = (ct & PNG_COLOR_MASK_COLOR) ? luma(e[0], e[1], e[2]) : e[0];
                    if (g.data[(size_t)y * W + x] != eg)
                        bad++;
                }
            CHECK(bad == 0, "png ct %d depth %d interlace %d: %d pixels differ", ct, depth, il,
                  bad);
            image_u8_free(&a);
            image_u8_free(&g);
            free(p);
        }
}

/* ---------- TIFF ---------- */

typedef struct tiff_spec {
    const char *name;
    int h, w, spp, bps, photometric, planar, compression, tile, rps, pages, bigendian;
} tiff_spec;

static unsigned tiff_sample(int x, int y, int c, int bps, int page)
{
    unsigned v = (unsigned)(x * 5 + y * 11 + c * 77 + page * 50 + (x ^ y) * 3);
    return bps == 16 ? (v * 263u + 11u) & 0xFFFF : bps == 1 ? ((x / 3 + y / 2) & 1) : v & 0xFF;
}

static int tiff_write(const char *path, const tiff_spec *s)
{
    TIFF *t = TIFFOpen(path, s->bigendian ? "wb" : "wl");
    if (!t)
        return -1;
    for (int page = 0; page < s->pages; page++) {
        int spp = page == 0 ? s->spp : 3, photo = page == 0 ? s->photometric : PHOTOMETRIC_RGB;
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, s->w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, s->h);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, s->bps);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, photo);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, s->planar);
        TIFFSetField(t, TIFFTAG_COMPRESSION, s->compression);
        if ((photo == PHOTOMETRIC_MINISBLACK && spp == 2) ||
            (photo == PHOTOMETRIC_RGB && spp == 4)) {
            uint16_t extra = EXTRASAMPLE_UNASSALPHA;
            TIFFSetField(t, TIFFTAG_EXTRASAMPLES, 1, &extra);
        }
        if (photo == PHOTOMETRIC_PALETTE) {
            uint16_t r[256], g[256], b[256];
            for (int i = 0; i < 256; i++) {
                r[i] = (uint16_t)(i * 257);
                g[i] = (uint16_t)((255 - i) * 257);
                b[i] = (uint16_t)(((i * 7) & 255) * 257);
            }
            TIFFSetField(t, TIFFTAG_COLORMAP, r, g, b);
        }
        if (s->pages > 1) {
            TIFFSetField(t, TIFFTAG_SUBFILETYPE, FILETYPE_PAGE);
            TIFFSetField(t, TIFFTAG_PAGENUMBER, page, s->pages);
        }
        int planes = s->planar == PLANARCONFIG_SEPARATE ? spp : 1;
        int ps = s->planar == PLANARCONFIG_SEPARATE ? 1 : spp;
        int bytes = s->bps == 16 ? 2 : 1;
        if (s->tile) {
            TIFFSetField(t, TIFFTAG_TILEWIDTH, s->tile);
            TIFFSetField(t, TIFFTAG_TILELENGTH, s->tile);
            tmsize_t tsz = TIFFTileSize(t);
            uint8_t *tb = malloc((size_t)tsz);
            for (int p = 0; p < planes; p++)
                for (int ty = 0; ty < s->h; ty += s->tile)
                    for (int tx = 0; tx < s->w; tx += s->tile) {
                        memset(tb, 0, (size_t)tsz);
                        for (int r = 0; r < s->tile; r++)
                            for (int cx = 0; cx < s->tile; cx++)
                                for (int c = 0; c < ps; c++) {
                                    int x = tx + cx, y = ty + r;
                                    if (x >= s->w || y >= s->h)
                                        continue;
                                    unsigned v = tiff_sample(x, y, p * ps + c, s->bps, page);
                                    size_t i = ((size_t)r * s->tile + cx) * ps + c;
                                    if (bytes == 2)
                                        ((uint16_t *)tb)[i] = (uint16_t)v;
                                    else
                                        tb[i] = (uint8_t)v;
                                }
                        TIFFWriteTile(t, tb, (uint32_t)tx, (uint32_t)ty, 0, (uint16_t)p);
                    }
            free(tb);
        } else {
            TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, s->rps);
            tmsize_t sl = TIFFScanlineSize(t);
            uint8_t *row = malloc((size_t)sl);
            for (int p = 0; p < planes; p++)
                for (int y = 0; y < s->h; y++) {
                    memset(row, 0, (size_t)sl);
                    for (int x = 0; x < s->w; x++)
                        for (int c = 0; c < ps; c++) {
                            unsigned v = tiff_sample(x, y, p * ps + c, s->bps, page);
                            size_t i = (size_t)x * ps + c;
                            if (s->bps == 1)
                                row[x / 8] |= (uint8_t)(v << (7 - x % 8));
                            else if (bytes == 2)
                                ((uint16_t *)row)[i] = (uint16_t)v;
                            else
                                row[i] = (uint8_t)v;
                        }
                    TIFFWriteScanline(t, row, (uint32_t)y, (uint16_t)p);
                }
            free(row);
        }
        TIFFWriteDirectory(t);
    }
    TIFFClose(t);
    return 0;
}

static void tiff_expect(const tiff_spec *s, int x, int y, uint8_t rgb[3])
{
    if (s->photometric == PHOTOMETRIC_PALETTE) {
        unsigned i = tiff_sample(x, y, 0, 8, 0);
        rgb[0] = (uint8_t)i;
        rgb[1] = (uint8_t)(255 - i);
        rgb[2] = (uint8_t)((i * 7) & 255);
        return;
    }
    int color = s->photometric == PHOTOMETRIC_RGB;
    for (int c = 0; c < 3; c++) {
        unsigned v = tiff_sample(x, y, color ? c : 0, s->bps, 0);
        uint8_t o = s->bps == 16 ? u16to8(v) : s->bps == 1 ? (uint8_t)(v ? 255 : 0) : (uint8_t)v;
        if (s->photometric == PHOTOMETRIC_MINISWHITE)
            o = (uint8_t)(255 - o);
        rgb[c] = o;
    }
}

static void test_tiff(void)
{
    const char *dir = test_tmpdir("test_image_decode");
    const int PB = PHOTOMETRIC_MINISBLACK, PR = PHOTOMETRIC_RGB, C = PLANARCONFIG_CONTIG,
              S = PLANARCONFIG_SEPARATE;
    tiff_spec specs[] = {
        {"gray8", 29, 41, 1, 8, PB, C, COMPRESSION_NONE, 0, 5, 1, 0},
        {"gray16", 29, 41, 1, 16, PB, C, COMPRESSION_NONE, 0, 4, 1, 0},
        {"gray16-be", 29, 41, 1, 16, PB, C, COMPRESSION_LZW, 0, 7, 1, 1},
        {"rgb8", 29, 41, 3, 8, PR, C, COMPRESSION_NONE, 0, 3, 1, 0},
        {"rgb16", 29, 41, 3, 16, PR, C, COMPRESSION_ADOBE_DEFLATE, 0, 8, 1, 0},
        {"rgb8-lzw", 29, 41, 3, 8, PR, C, COMPRESSION_LZW, 0, 29, 1, 0},
        {"rgb8-tiles", 37, 40, 3, 8, PR, C, COMPRESSION_NONE, 16, 0, 1, 0},
        {"rgb16-tiles", 37, 40, 3, 16, PR, C, COMPRESSION_LZW, 16, 0, 1, 1},
        {"gray8-tiles", 37, 40, 1, 8, PB, C, COMPRESSION_ADOBE_DEFLATE, 32, 0, 1, 0},
        {"gray16-tiles", 37, 40, 1, 16, PB, C, COMPRESSION_NONE, 16, 0, 1, 0},
        {"rgb8-planar", 29, 41, 3, 8, PR, S, COMPRESSION_NONE, 0, 6, 1, 0},
        {"rgb16-planar-tiles", 37, 40, 3, 16, PR, S, COMPRESSION_LZW, 16, 0, 1, 0},
        {"rgba16", 29, 41, 4, 16, PR, C, COMPRESSION_NONE, 0, 5, 1, 0},
        {"graya8", 29, 41, 2, 8, PB, C, COMPRESSION_NONE, 0, 5, 1, 0},
        {"miniswhite8", 29, 41, 1, 8, PHOTOMETRIC_MINISWHITE, C, COMPRESSION_NONE, 0, 5, 1, 0},
        {"palette8", 29, 41, 1, 8, PHOTOMETRIC_PALETTE, C, COMPRESSION_NONE, 0, 5, 1, 0},
        {"bilevel", 29, 41, 1, 1, PB, C, COMPRESSION_NONE, 0, 5, 1, 0},
        {"two-pages", 29, 41, 1, 8, PB, C, COMPRESSION_NONE, 0, 5, 2, 0},
        {"two-pages-16", 29, 41, 1, 16, PB, C, COMPRESSION_LZW, 0, 10, 2, 1},
    };
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        const tiff_spec *s = &specs[k];
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.tif", dir, s->name);
        CHECK(tiff_write(path, s) == 0, "write %s", path);
        size_t len;
        uint8_t *b = read_file(path, &len);
        CHECK(b != NULL, "read %s", path);
        if (!b)
            continue;
        image_info info;
        CHECK(image_probe(b, len, NULL, &info, path, &err) == 0, "probe %s: %s", s->name,
              err.msg);
        CHECK(info.format == IMAGE_FORMAT_TIFF && info.width == s->w && info.height == s->h &&
                  info.bits == s->bps,
              "tiff probe %s: %dx%d b%d", s->name, info.width, info.height, info.bits);
        image_u8 a = {0}, g = {0};
        CHECK(image_decode(b, len, 3, 0, 0, NULL, &a, path, &err) == 0, "%s: %s", s->name,
              err.msg);
        CHECK(image_decode(b, len, 1, 0, 0, NULL, &g, path, &err) == 0, "%s gray: %s", s->name,
              err.msg);
        int bad = 0;
        for (int y = 0; y < s->h && a.data && g.data; y++)
            for (int x = 0; x < s->w; x++) {
                uint8_t e[3];
                tiff_expect(s, x, y, e);
                const uint8_t *q = a.data + ((size_t)y * s->w + x) * 3;
                if (q[0] != e[0] || q[1] != e[1] || q[2] != e[2]) {
                    if (bad < 3)
                        fprintf(stderr, "  %s (%d,%d): got %d %d %d want %d %d %d\n", s->name,
                                x, y, q[0], q[1], q[2], e[0], e[1], e[2]);
                    bad++;
                }
                int colorful = s->photometric == PR || s->photometric == PHOTOMETRIC_PALETTE;
                if (g.data[(size_t)y * s->w + x] != (colorful ? luma(e[0], e[1], e[2]) : e[0]))
                    bad++;
            }
        CHECK(bad == 0, "tiff %s: %d pixel mismatches", s->name, bad);
        image_u8_free(&a);
        image_u8_free(&g);
        free(b);
    }
}

/* ---------- PNG export ---------- */

static void test_write_png(void)
{
    const char *dir = test_tmpdir("test_image_decode_png");
    char path[4200];
    snprintf(path, sizeof path, "%s/out.png", dir);
    for (int ch = 1; ch <= 3; ch += 2) {
        const int h = 19, w = 27;
        uint8_t *px = ch == 3 ? pattern_rgb(h, w) : pattern_gray(h, w);
        CHECK(image_write_png(path, px, h, w, ch, &err) == 0, "write png: %s", err.msg);
        size_t len;
        uint8_t *b = read_file(path, &len);
        image_u8 a = {0};
        CHECK(b && image_decode(b, len, ch, 0, 0, NULL, &a, path, &err) == 0, "reread: %s",
              err.msg);
        CHECK(a.data && memcmp(a.data, px, (size_t)h * w * ch) == 0, "png round trip %d ch", ch);
        image_u8_free(&a);
        free(b);
        free(px);
    }
    char bad[4300];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.png", dir);
    uint8_t one = 0;
    CHECK(image_write_png(bad, &one, 1, 1, 1, &err) == -1 && strstr(err.msg, "no/such"),
          "write to missing dir: %s", err.msg);
}

/* ---------- names ---------- */

static void test_names(void)
{
    CHECK(strcmp(image_format_name(IMAGE_FORMAT_JPEG), "jpeg") == 0, "jpeg name");
    CHECK(strcmp(image_format_name(IMAGE_FORMAT_PNG), "png") == 0, "png name");
    CHECK(strcmp(image_format_name(IMAGE_FORMAT_TIFF), "tiff") == 0, "tiff name");
    CHECK(strcmp(image_format_name(IMAGE_FORMAT_UNKNOWN), "unknown") == 0, "unknown name");
    CHECK(image_sniff((const uint8_t *)"II*\0", 4) == IMAGE_FORMAT_TIFF, "sniff II");
    CHECK(image_sniff((const uint8_t *)"MM\0*", 4) == IMAGE_FORMAT_TIFF, "sniff MM");
    CHECK(image_sniff((const uint8_t *)"\xff\xd8", 2) == IMAGE_FORMAT_UNKNOWN, "short jpeg");
    image_limits l;
    image_limits_default(&l);
    CHECK(l.max_pixels == 50000000 && l.max_side == 30000 && l.max_file_bytes == 512u << 20,
          "default limits");
}

/* ---------- the shared chest X-rays against the fixture's reference pixels ---------- */

static int cmpstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* First n names (sorted) of dir into names[]. */
static int first_names(const char *dir, char names[][256], int n)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **all = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 256;
            all = realloc(all, cap * sizeof *all);
        }
        all[cnt++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(all, cnt, sizeof *all, cmpstr);
    int k = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (k < n)
            snprintf(names[k++], 256, "%s", all[i]);
        free(all[i]);
    }
    free(all);
    return k;
}

static void test_fixture(void)
{
    const char *data = test_shared_data("chest_xray/train");
    if (!data)
        return;
    char fix[4200];
    if (test_fixture_path(fix, sizeof fix, "reference_activations.h5") != 0) {
        test_skip("%s not found (set RADBATCH_FIXTURES to the folder holding "
                  "mobilenetv2/reference_activations.h5)", fix);
        return;
    }
    const size_t per = 224 * 224 * 3;
    uint8_t *ref = malloc(6 * per);
    hid_t f = H5Fopen(fix, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = f >= 0 ? H5Dopen2(f, "input_uint8", H5P_DEFAULT) : -1;
    herr_t rr = ds >= 0 ? H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, ref) : -1;
    if (ds >= 0)
        H5Dclose(ds);
    if (f >= 0)
        H5Fclose(f);
    CHECK(rr >= 0, "read input_uint8 from %s", fix);
    if (rr < 0) {
        free(ref);
        return;
    }
    const char *classes[2] = {"NORMAL", "PNEUMONIA"};
    int idx = 0;
    for (int c = 0; c < 2; c++) {
        char dir[4400], names[3][256];
        snprintf(dir, sizeof dir, "%s/chest_xray/train/%s", data, classes[c]);
        int n = first_names(dir, names, 3);
        CHECK(n == 3, "three files in %s", dir);
        for (int i = 0; i < n; i++, idx++) {
            char path[4700];
            snprintf(path, sizeof path, "%s/%s", dir, names[i]);
            size_t len;
            uint8_t *b = read_file(path, &len);
            CHECK(b != NULL, "read %s", path);
            if (!b)
                continue;
            uint8_t *out = malloc(per);
            int rc = image_load_resized(b, len, 224, 224, 3, RESIZE_STRETCH, 1, NULL, out, NULL,
                                        path, &err);
            CHECK(rc == 0, "decode %s: %s", path, err.msg);
            size_t diff = 0;
            for (size_t k = 0; rc == 0 && k < per; k++)
                diff += out[k] != ref[idx * per + k];
            CHECK(rc == 0 && diff == 0, "%s: %zu of %zu values differ from input_uint8[%d]",
                  names[i], diff, per, idx);
            image_u8 a = {0};
            CHECK(image_decode(b, len, 3, 0, 0, NULL, &a, path, &err) == 0 && a.width == 224 &&
                      memcmp(a.data, ref + idx * per, per) == 0,
                  "image_decode %s bit-exact", names[i]);
            image_u8_free(&a);
            free(out);
            free(b);
        }
    }
    printf("fixture: %d chest X-rays decoded bit-exact against input_uint8\n", idx);
    free(ref);
}

int main(void)
{
    TIFFSetWarningHandler(NULL); /* the test's own writer: no noise */
    test_names();
    test_jpeg();
    test_png();
    test_tiff();
    test_write_png();
    test_fixture();
    return TEST_DONE();
}
