/* Hostile inputs: every one must give an error naming the file and the reason, never a
 * crash, a hang, a huge allocation or a line on stderr. Zero-byte, tiny and text files;
 * unsupported formats; JPEG and PNG truncated at many points; a JPEG SOF of 65535x65535;
 * declared sizes a tiny file cannot hold; a progressive JPEG of 636 scans; a PNG
 * decompression bomb (20000x20000 IHDR) and a PNG with corrupted IDAT; hand-built TIFFs with
 * broken tags; the limits; and ~200 random mutations of each of nine generated files (run
 * this under the sanitizer build too). */
#include "image.h"
#include "test_util.h"

#include <fcntl.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <tiffio.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>

static rb_error err;

static uint32_t rng = 2463534242u;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* Decode must fail, with the path and `reason` (if given) in the message. */
static void expect_fail(const uint8_t *buf, size_t len, const char *path, const char *reason)
{
    image_u8 im = {0};
    rb_error_clear(&err);
    int rc = image_decode(buf, len, 3, 0, 0, NULL, &im, path, &err);
    CHECK(rc == -1, "%s: decode should fail", path);
    CHECK(im.data == NULL, "%s: no pixels after a failure", path);
    CHECK(strstr(err.msg, path) != NULL, "%s: message names the file: %s", path, err.msg);
    if (reason)
        CHECK(strstr(err.msg, reason) != NULL, "%s: message says '%s': %s", path, reason, err.msg);
    image_u8_free(&im);
    uint8_t out[16 * 16 * 3];
    rb_error_clear(&err);
    CHECK(image_load_resized(buf, len, 16, 16, 3, RESIZE_STRETCH, 1, NULL, out, NULL, path,
                             &err) == -1 &&
              strstr(err.msg, path),
          "%s: load_resized should fail too: %s", path, err.msg);
}

/* ---------- generated valid files ---------- */

static uint8_t *noise_rgb(int h, int w, int smooth)
{
    uint8_t *p = malloc((size_t)h * w * 3);
    for (int i = 0; i < h * w * 3; i++)
        p[i] = smooth ? (uint8_t)((i % (w * 3)) * 2 + (i / (w * 3)) * 3) : (uint8_t)rnd();
    return p;
}

static uint8_t *jpeg_make(int h, int w, int gray, int progressive, size_t *len)
{
    uint8_t *px = noise_rgb(h, w, 1);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long outlen = 0;
    jpeg_mem_dest(&c, &out, &outlen);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = gray ? 1 : 3;
    c.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = px + (size_t)c.next_scanline * w * c.input_components;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(px);
    *len = outlen;
    return out;
}

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void mb_put(membuf *m, const void *d, size_t n)
{
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2 + 64;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, d, n);
    m->n += n;
}

static void png_mem_write(png_structp png, png_bytep d, size_t n)
{
    mb_put(png_get_io_ptr(png), d, n);
}
static void png_mem_flush(png_structp png)
{
    (void)png;
}

/* ct: PNG color type; depth 8 or 16 (palette: 8) */
static uint8_t *png_make(int h, int w, int ct, int depth, int interlace, size_t *len)
{
    membuf m = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(m.p);
        return NULL;
    }
    png_set_write_fn(png, &m, png_mem_write, png_mem_flush);
    png_set_IHDR(png, info, w, h, depth, ct, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (ct == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[256];
        png_byte trns[256];
        for (int i = 0; i < 256; i++) {
            pal[i].red = (png_byte)i;
            pal[i].green = (png_byte)(i * 3);
            pal[i].blue = (png_byte)(255 - i);
            trns[i] = (png_byte)(i * 7);
        }
        png_set_PLTE(png, info, pal, 256);
        png_set_tRNS(png, info, trns, 256, NULL);
    }
    png_write_info(png, info);
    int nch = ct == PNG_COLOR_TYPE_RGB ? 3 : ct == PNG_COLOR_TYPE_RGB_ALPHA ? 4 : 1;
    size_t rowbytes = (size_t)w * nch * depth / 8;
    uint8_t *row = malloc(rowbytes);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < h; y++) {
            for (size_t i = 0; i < rowbytes; i++)
                row[i] = (uint8_t)(i * 5 + y * 3 + (rnd() & 7));
            png_write_row(png, row);
        }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(row);
    *len = m.n;
    return m.p;
}

static uint8_t *tiff_make(const char *dir, const char *name, int h, int w, int spp, int bps,
                          int compression, int tile, size_t *len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.tif", dir, name);
    TIFF *t = TIFFOpen(path, "w");
    if (!t)
        return NULL;
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, bps);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, spp == 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(t, TIFFTAG_COMPRESSION, compression);
    if (tile) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, tile);
        TIFFSetField(t, TIFFTAG_TILELENGTH, tile);
        tmsize_t ts = TIFFTileSize(t);
        uint8_t *b = malloc((size_t)ts);
        for (int y = 0; y < h; y += tile)
            for (int x = 0; x < w; x += tile) {
                for (tmsize_t i = 0; i < ts; i++)
                    b[i] = (uint8_t)(i + x + y);
                TIFFWriteTile(t, b, (uint32_t)x, (uint32_t)y, 0, 0);
            }
        free(b);
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 5);
        tmsize_t sl = TIFFScanlineSize(t);
        uint8_t *row = malloc((size_t)sl);
        for (int y = 0; y < h; y++) {
            for (tmsize_t i = 0; i < sl; i++)
                row[i] = (uint8_t)(i * 3 + y);
            TIFFWriteScanline(t, row, (uint32_t)y, 0);
        }
        free(row);
    }
    TIFFClose(t);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---------- simple cases ---------- */

static void test_not_images(void)
{
    static const uint8_t one = 0xFF;
    expect_fail(NULL, 0, "empty.jpeg", "empty file");
    expect_fail(&one, 1, "one.jpeg", "not an image");
    const char *text = "name,label\nperson1_virus_6.jpeg,1\nperson2_virus_7.jpeg,1\n";
    expect_fail((const uint8_t *)text, strlen(text), "labels.jpeg",
                "not an image (looks like text");
    uint8_t gif[64] = "GIF89a";
    gif[6] = 10;
    expect_fail(gif, sizeof gif, "anim.gif", "unsupported image format gif");
    uint8_t bmp[64] = {'B', 'M', 64, 0, 0, 0, 0, 0, 0, 0, 54};
    expect_fail(bmp, sizeof bmp, "scan.bmp", "unsupported image format bmp");
    uint8_t dcm[200] = {0};
    memcpy(dcm + 128, "DICM", 4);
    expect_fail(dcm, sizeof dcm, "ct.dcm", "invalid DICOM");
    uint8_t bin[64];
    for (int i = 0; i < 64; i++)
        bin[i] = (uint8_t)(i * 37 + 1);
    bin[0] = 0x01;
    expect_fail(bin, sizeof bin, "blob.png", "not an image");
    static const uint8_t just_magic[3] = {0xFF, 0xD8, 0xFF};
    expect_fail(just_magic, 3, "magic.jpeg", "JPEG");
    image_info info;
    CHECK(image_probe(gif, sizeof gif, NULL, &info, "anim.gif", &err) == -1 &&
              strstr(err.msg, "unsupported image format gif"),
          "probe gif: %s", err.msg);
}

static void test_limits(void)
{
    size_t len;
    uint8_t *j = jpeg_make(48, 64, 0, 0, &len);
    image_limits lim;
    image_limits_default(&lim);
    lim.max_pixels = 1000;
    image_info info;
    image_u8 im = {0};
    CHECK(image_probe(j, len, &lim, &info, "small.jpeg", &err) == -1 &&
              strstr(err.msg, "too large") && info.width == 64,
          "max_pixels in probe: %s", err.msg);
    CHECK(image_decode(j, len, 3, 0, 0, &lim, &im, "small.jpeg", &err) == -1 &&
              strstr(err.msg, "too large"),
          "max_pixels in decode: %s", err.msg);
    image_limits_default(&lim);
    lim.max_side = 50;
    CHECK(image_decode(j, len, 3, 0, 0, &lim, &im, "small.jpeg", &err) == -1 &&
              strstr(err.msg, "too large"),
          "max_side: %s", err.msg);
    image_limits_default(&lim);
    lim.max_file_bytes = 100;
    CHECK(image_decode(j, len, 3, 0, 0, &lim, &im, "small.jpeg", &err) == -1 &&
              strstr(err.msg, "file too large"),
          "max_file_bytes: %s", err.msg);
    CHECK(image_decode(j, len, 2, 0, 0, NULL, &im, "small.jpeg", &err) == -1,
          "2 output channels rejected");
    free(j);

    size_t plen;
    uint8_t *p = png_make(40, 30, PNG_COLOR_TYPE_RGB, 8, 0, &plen);
    image_limits_default(&lim);
    lim.max_pixels = 1000;
    CHECK(image_decode(p, plen, 3, 0, 0, &lim, &im, "small.png", &err) == -1 &&
              strstr(err.msg, "too large"),
          "png max_pixels: %s", err.msg);
    free(p);
    const char *dir = test_tmpdir("test_image_hostile_limits");
    size_t tlen;
    uint8_t *t = tiff_make(dir, "lim", 40, 30, 1, 8, COMPRESSION_NONE, 0, &tlen);
    CHECK(t && image_decode(t, tlen, 3, 0, 0, &lim, &im, "small.tif", &err) == -1 &&
              strstr(err.msg, "too large"),
          "tiff max_pixels: %s", err.msg);
    free(t);
}

/* ---------- JPEG ---------- */

static size_t find_sof(const uint8_t *b, size_t len)
{
    for (size_t i = 2; i + 9 < len; i++)
        if (b[i] == 0xFF && (b[i + 1] == 0xC0 || b[i + 1] == 0xC2))
            return i;
    return 0;
}

static void put16be(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void test_jpeg(void)
{
    for (int prog = 0; prog < 2; prog++) {
        size_t len;
        uint8_t *j = jpeg_make(48, 64, 0, prog, &len);
        /* truncated at many points, down to the missing EOI */
        size_t cuts[] = {2, 3, 4, 11, 20, 60, 150, len / 4, len / 2, len * 3 / 4, len - 10, len - 2,
                         len - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "cut%zu.jpeg", cuts[i]);
            expect_fail(j, cuts[i], name, cuts[i] > 200 ? "truncated JPEG data" : NULL);
        }
        size_t sof = find_sof(j, len);
        CHECK(sof > 0, "found SOF");
        uint8_t *m = malloc(len);
        /* 65535 x 65535 */
        memcpy(m, j, len);
        put16be(m + sof + 5, 65535);
        put16be(m + sof + 7, 65535);
        expect_fail(m, len, "huge.jpeg", "too large");
        image_info info;
        CHECK(image_probe(m, len, NULL, &info, "huge.jpeg", &err) == -1 && info.width == 65535,
              "probe huge: %s", err.msg);
        /* within the limits, but a few KB cannot hold 20000 x 2000 pixels */
        memcpy(m, j, len);
        put16be(m + sof + 5, 2000);
        put16be(m + sof + 7, 20000);
        expect_fail(m, len, "claims.jpeg", "truncated JPEG data");
        /* zero height */
        memcpy(m, j, len);
        put16be(m + sof + 5, 0);
        expect_fail(m, len, "zero.jpeg", NULL);
        /* 12-bit precision */
        memcpy(m, j, len);
        m[sof + 4] = 12;
        expect_fail(m, len, "p12.jpeg", NULL);
        /* garbage in the middle of the entropy-coded data */
        memcpy(m, j, len);
        for (size_t k = len / 2; k < len / 2 + 40; k++)
            m[k] = (uint8_t)rnd();
        image_u8 im = {0};
        int rc = image_decode(m, len, 3, 0, 0, NULL, &im, "garbage.jpeg", &err);
        CHECK(rc == -1 || (im.data && im.width == 64), "garbage: clean outcome");
        image_u8_free(&im);
        free(m);
        free(j);
    }
}

/* A valid progressive gray JPEG with 636 scans: every AC coefficient sent on its own, one
 * bit at a time (a known way to make a small file decode very slowly). */
static uint8_t *jpeg_many_scans(size_t *len)
{
    static jpeg_scan_info scans[700];
    int n = 0;
    scans[n++] = (jpeg_scan_info){1, {0}, 0, 0, 0, 5};
    for (int a = 5; a > 0; a--)
        scans[n++] = (jpeg_scan_info){1, {0}, 0, 0, a, a - 1};
    for (int k = 1; k < 64; k++) {
        scans[n++] = (jpeg_scan_info){1, {0}, k, k, 0, 9};
        for (int a = 9; a > 0; a--)
            scans[n++] = (jpeg_scan_info){1, {0}, k, k, a, a - 1};
    }
    uint8_t px[16 * 16];
    for (int i = 0; i < 256; i++)
        px[i] = (uint8_t)rnd();
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    unsigned char *out = NULL;
    unsigned long outlen = 0;
    jpeg_mem_dest(&c, &out, &outlen);
    c.image_width = 16;
    c.image_height = 16;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    c.scan_info = scans;
    c.num_scans = n;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = px + c.next_scanline * 16;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    *len = outlen;
    return out;
}

static void test_jpeg_scans(void)
{
    size_t len;
    uint8_t *j = jpeg_many_scans(&len);
    expect_fail(j, len, "scans.jpeg", "more than 500 scans");
    free(j);
}

/* ---------- PNG ---------- */

static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void chunk(membuf *m, const char *type, const uint8_t *data, uint32_t n)
{
    uint8_t hdr[8];
    put32be(hdr, n);
    memcpy(hdr + 4, type, 4);
    mb_put(m, hdr, 8);
    if (n)
        mb_put(m, data, n);
    uLong crc = crc32(0, (const Bytef *)type, 4);
    if (n)
        crc = crc32(crc, data, n);
    uint8_t c[4];
    put32be(c, (uint32_t)crc);
    mb_put(m, c, 4);
}

/* A gray 8-bit PNG declaring w x h whose IDAT holds `rows` all-zero rows. */
static uint8_t *png_declaring(uint32_t w, uint32_t h, uint32_t rows, size_t *len)
{
    membuf m = {0};
    mb_put(&m, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0};
    put32be(ihdr, w);
    put32be(ihdr + 4, h);
    ihdr[8] = 8; /* depth */
    ihdr[9] = 0; /* gray */
    chunk(&m, "IHDR", ihdr, 13);
    size_t raw = (size_t)(w + 1) * rows;
    uint8_t *zero = calloc(raw ? raw : 1, 1);
    uLongf zl = compressBound(raw);
    uint8_t *z = malloc(zl);
    compress2(z, &zl, zero, raw, 9);
    chunk(&m, "IDAT", z, (uint32_t)zl);
    chunk(&m, "IEND", NULL, 0);
    free(zero);
    free(z);
    *len = m.n;
    return m.p;
}

static size_t find_chunk(const uint8_t *b, size_t len, const char *type)
{
    size_t p = 8;
    while (p + 12 <= len) {
        uint32_t n = (uint32_t)b[p] << 24 | b[p + 1] << 16 | b[p + 2] << 8 | b[p + 3];
        if (memcmp(b + p + 4, type, 4) == 0)
            return p;
        p += 12 + n;
    }
    return 0;
}

static void test_png(void)
{
    size_t len;
    /* decompression bomb: 20000 x 20000 declared, rejected from the header */
    uint8_t *b = png_declaring(20000, 20000, 2000, &len);
    expect_fail(b, len, "bomb.png", "too large");
    free(b);
    /* within the limits (49 Mpixel) but only a few hundred bytes: missing data */
    b = png_declaring(7000, 7000, 10, &len);
    expect_fail(b, len, "short.png", "truncated PNG data");
    free(b);
    /* high but genuine compression: 3000 x 3000 zeros in ~9 KB decodes */
    b = png_declaring(3000, 3000, 3000, &len);
    image_u8 im = {0};
    int rc = image_decode(b, len, 1, 0, 0, NULL, &im, "zeros.png", &err);
    CHECK(rc == 0 && im.width == 3000 && im.data[0] == 0 && im.data[3000 * 3000 - 1] == 0,
          "%zu-byte 3000x3000 PNG decodes: %s", len, err.msg);
    image_u8_free(&im);
    free(b);
    /* a 24-row IDAT for a 300 x 300 image: libpng runs out of data */
    b = png_declaring(300, 300, 24, &len);
    expect_fail(b, len, "rows.png", NULL);
    free(b);

    uint8_t *p = png_make(64, 64, PNG_COLOR_TYPE_RGB, 8, 0, &len);
    size_t idat = find_chunk(p, len, "IDAT");
    CHECK(idat > 0, "IDAT found");
    uint32_t n = (uint32_t)p[idat] << 24 | p[idat + 1] << 16 | p[idat + 2] << 8 | p[idat + 3];
    uint8_t *m = malloc(len);
    /* corrupted IDAT with a valid CRC: zlib or libpng must notice */
    memcpy(m, p, len);
    for (uint32_t k = n / 3; k < n / 3 + 16; k++)
        m[idat + 8 + k] ^= 0x5A;
    uLong crc = crc32(crc32(0, (const Bytef *)"IDAT", 4), m + idat + 8, n);
    put32be(m + idat + 8 + n, (uint32_t)crc);
    expect_fail(m, len, "idat.png", "invalid PNG");
    /* the same bytes without fixing the CRC */
    memcpy(m, p, len);
    m[idat + 8 + n / 2] ^= 0xFF;
    expect_fail(m, len, "crc.png", "invalid PNG");
    /* IHDR: zero width, bad depth, bad colour type */
    memcpy(m, p, len);
    put32be(m + 16, 0);
    expect_fail(m, len, "w0.png", NULL);
    memcpy(m, p, len);
    m[24] = 7;
    expect_fail(m, len, "depth7.png", NULL);
    /* truncated at many points */
    size_t cuts[] = {8, 12, 20, 33, 40, idat + 20, len / 2, len - 12, len - 4, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "cut%zu.png", cuts[i]);
        expect_fail(p, cuts[i], name, NULL);
    }
    free(m);
    free(p);
}

/* ---------- TIFF with broken tags, built by hand ---------- */

typedef struct tent {
    uint16_t tag, type;
    uint32_t count, value;
} tent;

#define PIXOFF 0xFFFFFFFFu /* placeholder: offset of the pixel data */

/* Little-endian classic TIFF: header, IFD at 8, then `npix` pixel bytes. */
static uint8_t *tiff_build(const tent *e, int n, size_t npix, uint32_t ifd_off, size_t *len)
{
    size_t ifd_size = 2 + 12 * (size_t)n + 4, pix = 8 + ifd_size;
    *len = pix + npix;
    uint8_t *b = calloc(*len, 1);
    memcpy(b, "II*\0", 4);
    uint32_t io = ifd_off ? ifd_off : 8;
    memcpy(b + 4, &io, 4);
    uint16_t cnt = (uint16_t)n;
    memcpy(b + 8, &cnt, 2);
    for (int i = 0; i < n; i++) {
        uint8_t *q = b + 10 + 12 * i;
        uint32_t v = e[i].value == PIXOFF ? (uint32_t)pix : e[i].value;
        memcpy(q, &e[i].tag, 2);
        memcpy(q + 2, &e[i].type, 2);
        memcpy(q + 4, &e[i].count, 4);
        if (e[i].type == 3 && e[i].count == 1) {
            uint16_t s = (uint16_t)v;
            memcpy(q + 8, &s, 2);
        } else {
            memcpy(q + 8, &v, 4);
        }
    }
    for (size_t i = 0; i < npix; i++)
        b[pix + i] = (uint8_t)(i * 7);
    return b;
}

enum { T_W, T_H, T_BPS, T_COMP, T_PHOTO, T_OFF, T_SPP, T_RPS, T_CNT, T_N };

static void base_entries(tent *e)
{
    const tent base[T_N] = {
        {256, 4, 1, 8},      /* ImageWidth */
        {257, 4, 1, 8},      /* ImageLength */
        {258, 3, 1, 8},      /* BitsPerSample */
        {259, 3, 1, 1},      /* Compression: none */
        {262, 3, 1, 1},      /* Photometric: min-is-black */
        {273, 4, 1, PIXOFF}, /* StripOffsets */
        {277, 3, 1, 1},      /* SamplesPerPixel */
        {278, 4, 1, 8},      /* RowsPerStrip */
        {279, 4, 1, 64},     /* StripByteCounts */
    };
    memcpy(e, base, sizeof base);
}

/* Entries without index `drop` (or all when drop < 0). */
static int without(const tent *e, int drop, tent *out)
{
    int k = 0;
    for (int i = 0; i < T_N; i++)
        if (i != drop)
            out[k++] = e[i];
    return k;
}

static void test_tiff(void)
{
    tent e[T_N], t[T_N];
    size_t len;
    base_entries(e);
    uint8_t *b = tiff_build(e, T_N, 64, 0, &len);
    image_u8 im = {0};
    int ok = image_decode(b, len, 1, 0, 0, NULL, &im, "good.tif", &err) == 0;
    CHECK(ok, "hand-built TIFF decodes: %s", err.msg);
    int same = ok && im.width == 8 && im.height == 8;
    for (int i = 0; same && i < 64; i++)
        same = im.data[i] == (uint8_t)(i * 7);
    CHECK(same, "hand-built TIFF pixels");
    image_u8_free(&im);
    free(b);

    struct {
        const char *name;
        int idx;
        uint32_t value;
        const char *reason;
    } bad[] = {
        {"offset-past-eof.tif", T_OFF, 1000000, NULL},
        {"offset-straddles-eof.tif", T_OFF, 8 + 2 + 12 * T_N + 4 + 32, NULL},
        {"huge-width.tif", T_W, 1000000, "too large"},
        {"wide.tif", T_W, 40000, "too large"},
        {"zero-width.tif", T_W, 0, NULL},
        {"huge-height.tif", T_H, 0xFFFFFFF0u, NULL},
        {"bps3.tif", T_BPS, 3, NULL},
        {"bps0.tif", T_BPS, 0, NULL},
        {"spp0.tif", T_SPP, 0, NULL},
        {"spp200.tif", T_SPP, 200, NULL},
        {"jpeg-garbage.tif", T_COMP, 7, NULL},
        {"lzw-garbage.tif", T_COMP, 5, NULL},
        {"deflate-garbage.tif", T_COMP, 8, NULL},
        {"unknown-compression.tif", T_COMP, 12345, NULL},
        {"photometric-cielab.tif", T_PHOTO, 8, NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(t, e, sizeof t);
        t[bad[i].idx].value = bad[i].value;
        b = tiff_build(t, T_N, 64, 0, &len);
        expect_fail(b, len, bad[i].name, bad[i].reason);
        free(b);
    }
    /* StripByteCounts wrong for an uncompressed strip: libtiff reads the strip's
     * width x rows bytes from its offset; the pixels are all there */
    uint32_t counts[2] = {0x7FFFFFFF, 3};
    for (int i = 0; i < 2; i++) {
        memcpy(t, e, sizeof t);
        t[T_CNT].value = counts[i];
        b = tiff_build(t, T_N, 64, 0, &len);
        int rc = image_decode(b, len, 1, 0, 0, NULL, &im, "bytecount.tif", &err);
        int right = rc == 0 && im.width == 8 && im.height == 8;
        for (int k = 0; right && k < 64; k++)
            right = im.data[k] == (uint8_t)(k * 7);
        CHECK(rc == -1 || right, "StripByteCounts %u: error or the right pixels", counts[i]);
        image_u8_free(&im);
        free(b);
    }
    /* missing tags */
    const char *missing[] = {"no-width.tif", "no-length.tif", NULL, NULL, NULL, "no-offsets.tif"};
    for (int i = 0; i < 6; i++) {
        if (!missing[i])
            continue;
        int n = without(e, i, t);
        b = tiff_build(t, n, 64, 0, &len);
        expect_fail(b, len, missing[i], NULL);
        free(b);
    }
    /* no bytecounts / rows-per-strip / photometric: libtiff may guess; must not crash */
    int guessable[] = {T_CNT, T_RPS, T_PHOTO, T_BPS, T_SPP, T_COMP};
    for (int i = 0; i < 6; i++) {
        int n = without(e, guessable[i], t);
        b = tiff_build(t, n, 64, 0, &len);
        int rc = image_decode(b, len, 3, 0, 0, NULL, &im, "guess.tif", &err);
        CHECK(rc == -1 || (im.data && im.width == 8 && im.height == 8),
              "missing tag %d: clean outcome", guessable[i]);
        image_u8_free(&im);
        free(b);
    }
    /* StripOffsets array (count 100000) far past the end of the file */
    memcpy(t, e, sizeof t);
    t[T_OFF].count = 100000;
    t[T_OFF].value = 500;
    t[T_CNT].count = 100000;
    t[T_CNT].value = 900;
    b = tiff_build(t, T_N, 64, 0, &len);
    expect_fail(b, len, "many-strips.tif", NULL);
    free(b);
    /* IFD offset past the end; IFD entry count far beyond the file */
    b = tiff_build(e, T_N, 64, 1 << 30, &len);
    expect_fail(b, len, "ifd-past-eof.tif", NULL);
    free(b);
    b = tiff_build(e, T_N, 64, 0, &len);
    uint16_t many = 5000;
    memcpy(b + 8, &many, 2);
    expect_fail(b, len, "ifd-count.tif", NULL);
    free(b);
    /* only the 8-byte header */
    b = tiff_build(e, T_N, 64, 0, &len);
    expect_fail(b, 8, "header-only.tif", NULL);
    expect_fail(b, 4, "magic-only.tif", NULL);
    free(b);
}

/* ---------- random mutations ---------- */

/* Recompute every chunk CRC of a (mutated) PNG, so the mutation reaches past the CRC check
 * into libpng's and zlib's parsers. */
static void png_fix_crcs(uint8_t *b, size_t len)
{
    size_t p = 8;
    while (p + 12 <= len) {
        uint32_t n = (uint32_t)b[p] << 24 | b[p + 1] << 16 | b[p + 2] << 8 | b[p + 3];
        if (n > len - p - 12)
            break;
        put32be(b + p + 8 + n, (uint32_t)crc32(0, b + p + 4, n + 4));
        p += 12 + n;
    }
}

typedef struct fuzz_stats {
    int runs, decoded, failed, anomalies;
} fuzz_stats;

static void fuzz_one(const uint8_t *base, size_t len, const char *name, int n, fuzz_stats *st,
                     int is_png)
{
    image_limits lim;
    image_limits_default(&lim);
    lim.max_pixels = 4000000; /* keeps the sanitizer run quick; limits are tested above */
    uint8_t *m = malloc(len + 64);
    for (int i = 0; i < n; i++) {
        size_t ml = len;
        memcpy(m, base, len);
        switch (rnd() % 5) {
        case 0: /* a few random bytes anywhere */
            for (int k = 0, nk = 1 + (int)(rnd() % 4); k < nk; k++)
                m[rnd() % len] = (uint8_t)rnd();
            break;
        case 1: /* headers: the first 160 bytes */
            for (int k = 0, nk = 1 + (int)(rnd() % 3); k < nk; k++)
                m[rnd() % (len < 160 ? len : 160)] = (uint8_t)rnd();
            break;
        case 2: /* single bit flips */
            for (int k = 0, nk = 1 + (int)(rnd() % 8); k < nk; k++)
                m[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 3: /* truncation */
            ml = 1 + rnd() % (len - 1);
            break;
        default: /* a run of 0x00 or 0xFF */
        {
            size_t at = rnd() % len, run = 1 + rnd() % 24;
            if (at + run > len)
                run = len - at;
            memset(m + at, (rnd() & 1) ? 0xFF : 0x00, run);
        }
        }
        if (is_png && (i & 1))
            png_fix_crcs(m, ml);
        char path[96];
        snprintf(path, sizeof path, "%s-mut%03d", name, i);
        image_u8 im = {0};
        rb_error e;
        rb_error_clear(&e);
        int rc = image_decode(m, ml, 3, 0, 0, &lim, &im, path, &e);
        st->runs++;
        if (rc == 0) {
            st->decoded++;
            if (!im.data || im.width <= 0 || im.height <= 0 || im.channels != 3 ||
                (int64_t)im.width * im.height > lim.max_pixels)
                st->anomalies++;
        } else {
            st->failed++;
            if (rc != -1 || im.data || !strstr(e.msg, path))
                st->anomalies++;
        }
        image_u8_free(&im);
        image_info info;
        if (image_probe(m, ml, &lim, &info, path, &e) < -1)
            st->anomalies++;
        uint8_t out[24 * 24 * 3];
        rc = image_load_resized(m, ml, 24, 24, (i & 1) ? 1 : 3, (resize_mode)(i % 3), 1, &lim,
                                out, NULL, path, &e);
        if (rc != 0 && rc != -1)
            st->anomalies++;
    }
    free(m);
}

static void test_fuzz(void)
{
    const char *dir = test_tmpdir("test_image_hostile");
    struct {
        const char *name;
        uint8_t *b;
        size_t len;
    } bases[9];
    bases[0].name = "baseline.jpeg";
    bases[0].b = jpeg_make(40, 56, 0, 0, &bases[0].len);
    bases[1].name = "progressive.jpeg";
    bases[1].b = jpeg_make(40, 56, 0, 1, &bases[1].len);
    bases[2].name = "gray.jpeg";
    bases[2].b = jpeg_make(33, 47, 1, 0, &bases[2].len);
    bases[3].name = "rgb.png";
    bases[3].b = png_make(30, 40, PNG_COLOR_TYPE_RGB, 8, 0, &bases[3].len);
    bases[4].name = "palette-interlaced.png";
    bases[4].b = png_make(30, 40, PNG_COLOR_TYPE_PALETTE, 8, 1, &bases[4].len);
    bases[5].name = "gray16.png";
    bases[5].b = png_make(30, 40, PNG_COLOR_TYPE_GRAY, 16, 0, &bases[5].len);
    bases[6].name = "rgb-lzw.tif";
    bases[6].b = tiff_make(dir, "rgb-lzw", 30, 40, 3, 8, COMPRESSION_LZW, 0, &bases[6].len);
    bases[7].name = "gray16-tiles.tif";
    bases[7].b = tiff_make(dir, "gray16-tiles", 40, 40, 1, 16, COMPRESSION_NONE, 16, &bases[7].len);
    bases[8].name = "gray-deflate.tif";
    bases[8].b = tiff_make(dir, "gray-deflate", 30, 40, 1, 8, COMPRESSION_ADOBE_DEFLATE, 0,
                           &bases[8].len);

    /* nothing may reach stderr while hostile bytes are decoded */
    char errpath[4200];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);

    fuzz_stats st[9];
    memset(st, 0, sizeof st);
    int made = 0;
    for (int i = 0; i < 9; i++) {
        if (!bases[i].b)
            continue;
        made++;
        image_u8 im = {0};
        rb_error e;
        if (image_decode(bases[i].b, bases[i].len, 3, 0, 0, NULL, &im, bases[i].name, &e) != 0)
            st[i].anomalies += 1000; /* the unmutated file must decode */
        image_u8_free(&im);
        fuzz_one(bases[i].b, bases[i].len, bases[i].name, 200, &st[i], i >= 3 && i <= 5);
    }

    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    struct stat sb;
    CHECK(stat(errpath, &sb) == 0 && sb.st_size == 0,
          "decoders wrote %lld bytes to stderr (see %s)", (long long)sb.st_size, errpath);
    CHECK(made == 9, "all nine base files generated");
    for (int i = 0; i < 9; i++) {
        CHECK(st[i].anomalies == 0, "%s: %d anomalies", bases[i].name, st[i].anomalies);
        printf("fuzz %-24s %d variants: %d decoded, %d rejected\n", bases[i].name, st[i].runs,
               st[i].decoded, st[i].failed);
        free(bases[i].b);
    }
}

int main(void)
{
    TIFFSetWarningHandler(NULL); /* the test's own TIFF writer */
    test_not_images();
    test_limits();
    test_jpeg();
    test_jpeg_scans();
    test_png();
    test_tiff();
    test_fuzz();
    return TEST_DONE();
}
