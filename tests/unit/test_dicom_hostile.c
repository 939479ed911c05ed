/* labels: dicom */
/* DICOM files built byte by byte: a valid 16-bit file decodes to the values docs/dicom.md
 * defines (window, Modality LUT, signed values, MONOCHROME1, unused high bits); hostile
 * headers are refused by name BEFORE GDCM allocates or decodes: Rows x Columns above the
 * limits, lengths larger than the file (0xFFFFFFF0-byte values, explicit and implicit VR),
 * sequences nested 10000 deep, frames beyond the size limit, a NumberOfFrames of 0, -1 or
 * "x", pixel data shorter than a frame, deflated, unknown and undecodable transfer syntaxes,
 * no pixel data, a JPEG fragment without SOI, a JPEG frame header declaring another size
 * than Rows/Columns, stray bytes between JPEG header markers. Every truncation of a valid
 * file and 600 random header mutations (DICOM_FUZZ_N to change) give a clean error or an
 * image, never a crash, a hang or a line on stderr (run under the sanitizer build too).
 * With file arguments it decodes those files and prints each result (fuzzing by hand). */
#include "dicom.h"
#include "image.h"
#include "test_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rb_error err;

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u16(bytes *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    put(b, x, 2);
}
static void u32(bytes *b, uint32_t v)
{
    u16(b, (uint16_t)v);
    u16(b, (uint16_t)(v >> 16));
}
/* explicit VR little endian element */
static void el(bytes *b, uint16_t g, uint16_t e, const char *vr, const void *v, uint32_t n)
{
    u16(b, g);
    u16(b, e);
    put(b, vr, 2);
    static const char *const longs[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                        "SV", "UC", "UN", "UR", "UT", "UV"};
    int lng = 0;
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++)
        lng |= memcmp(vr, longs[i], 2) == 0;
    if (lng) {
        u16(b, 0);
        u32(b, n);
    } else
        u16(b, (uint16_t)n);
    if (v)
        put(b, v, n);
}
static void us(bytes *b, uint16_t e, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    el(b, 0x0028, e, "US", x, 2);
}
static void str(bytes *b, uint16_t g, uint16_t e, const char *vr, const char *s)
{
    char t[80];
    size_t n = strlen(s);
    memcpy(t, s, n);
    if (n % 2)
        t[n++] = vr[0] == 'U' && vr[1] == 'I' ? 0 : ' ';
    el(b, g, e, vr, t, (uint32_t)n);
}

static void preamble(bytes *b, const char *ts)
{
    uint8_t z[128] = {0};
    put(b, z, 128);
    put(b, "DICM", 4);
    str(b, 0x0002, 0x0010, "UI", ts);
}

typedef struct {
    const char *ts, *pi;
    int rows, cols, bits_stored, signed_, frames;
    const char *slope, *intercept, *wc, *ww;
    const char *frames_text; /* NumberOfFrames as written, instead of frames */
    const uint16_t *px; /* rows*cols*frames values; NULL: no pixel data */
    uint32_t px_len;    /* 0: the real length */
} spec;

static bytes build(const spec *s)
{
    bytes b = {0};
    preamble(&b, s->ts ? s->ts : "1.2.840.10008.1.2.1");
    str(&b, 0x0008, 0x0060, "CS", "DX");
    us(&b, 0x0002, 1);
    str(&b, 0x0028, 0x0004, "CS", s->pi ? s->pi : "MONOCHROME2");
    if (s->frames_text)
        str(&b, 0x0028, 0x0008, "IS", s->frames_text);
    else if (s->frames > 1) {
        char f[16];
        snprintf(f, sizeof f, "%d", s->frames);
        str(&b, 0x0028, 0x0008, "IS", f);
    }
    us(&b, 0x0010, (uint16_t)s->rows);
    us(&b, 0x0011, (uint16_t)s->cols);
    us(&b, 0x0100, 16);
    us(&b, 0x0101, (uint16_t)s->bits_stored);
    us(&b, 0x0102, (uint16_t)(s->bits_stored - 1));
    us(&b, 0x0103, (uint16_t)s->signed_);
    if (s->wc) {
        str(&b, 0x0028, 0x1050, "DS", s->wc);
        str(&b, 0x0028, 0x1051, "DS", s->ww);
    }
    if (s->slope) {
        str(&b, 0x0028, 0x1052, "DS", s->intercept);
        str(&b, 0x0028, 0x1053, "DS", s->slope);
    }
    if (s->px) {
        uint32_t n = (uint32_t)s->rows * s->cols * (s->frames > 1 ? s->frames : 1) * 2;
        u16(&b, 0x7FE0);
        u16(&b, 0x0010);
        put(&b, "OW", 2);
        u16(&b, 0);
        u32(&b, s->px_len ? s->px_len : n);
        for (uint32_t i = 0; i < n / 2; i++)
            u16(&b, s->px[i]);
    }
    return b;
}

static int decode(const bytes *b, const char *path, image_u8 *im)
{
    rb_error_clear(&err);
    if (getenv("DBG")) fprintf(stderr, "decode %s\n", path);
    return image_decode(b->p, b->n, 1, 0, 0, NULL, im, path, &err);
}

static void expect_fail_at(const bytes *b, const char *path, const char *reason, int probe_too)
{
    image_u8 im = {0};
    int rc = decode(b, path, &im);
    CHECK(rc == -1, "%s: decode should fail", path);
    CHECK(im.data == NULL, "%s: no pixels after a failure", path);
    CHECK(strstr(err.msg, path) != NULL, "%s: message names the file: %s", path, err.msg);
    CHECK(strstr(err.msg, reason) != NULL, "%s: message says '%s': %s", path, reason, err.msg);
    image_info info;
    rb_error_clear(&err);
    if (probe_too) /* structural: the probe sees it too */
        CHECK(image_probe(b->p, b->n, NULL, &info, path, &err) == -1 && strstr(err.msg, reason),
              "%s: probe should fail with '%s': %s", path, reason, err.msg);
    image_u8_free(&im);
}

static void expect_fail(const bytes *b, const char *path, const char *reason)
{
    expect_fail_at(b, path, reason, 1);
}

static uint16_t ramp[4 * 4 * 2];

static void test_values(void)
{
    for (int i = 0; i < 32; i++)
        ramp[i] = (uint16_t)(i * 100); /* 0..3100 */
    image_u8 im;
    /* window c=1000 w=1001 (LINEAR): x <= 499.5-500 -> 0; x > 499.5+500 -> 255 */
    spec s = {.rows = 4, .cols = 4, .bits_stored = 12, .wc = "1000", .ww = "1001", .px = ramp};
    bytes b = build(&s);
    CHECK(decode(&b, "win.dcm", &im) == 0, "window: %s", err.msg);
    if (im.data) {
        CHECK(im.height == 4 && im.width == 4 && im.channels == 1, "size");
        for (int i = 0; i < 16; i++) {
            /* c' = c - 0.5 = 999.5, w' = w - 1 = 1000 (PS3.3 C.11.2.1.2.1) */
            double x = ramp[i], y = x <= 499.5 ? 0 : x > 1499.5 ? 255 : ((x - 999.5) / 1000 + 0.5) * 255;
            CHECK(im.data[i] == (uint8_t)(y + 0.5), "window pixel %d: %d vs %.2f", i, im.data[i], y);
        }
    }
    image_u8_free(&im);
    free(b.p);
    /* MONOCHROME1 inverts the same window */
    s.pi = "MONOCHROME1";
    b = build(&s);
    CHECK(decode(&b, "mono1.dcm", &im) == 0, "mono1: %s", err.msg);
    if (im.data)
        CHECK(im.data[0] == 255 && im.data[15] == 0, "MONOCHROME1: %d %d", im.data[0], im.data[15]);
    image_u8_free(&im);
    free(b.p);
    /* signed 16-bit with rescale: stored -1000 * 2 + 1000 = -1000 -> below window */
    uint16_t sv[4] = {(uint16_t)-1000, 0, 1000, (uint16_t)-32768};
    spec t = {.rows = 2, .cols = 2, .bits_stored = 16, .signed_ = 1, .slope = "2", .intercept = "1000",
              .wc = "1000", .ww = "4001", .px = sv};
    b = build(&t);
    CHECK(decode(&b, "signed.dcm", &im) == 0, "signed: %s", err.msg);
    if (im.data) {
        /* m = -1000, 1000, 3000, -64536; LINEAR c=1000 w=4001 */
        double m[4] = {-1000, 1000, 3000, -64536};
        for (int i = 0; i < 4; i++) {
            double y = m[i] <= 999.5 - 2000 ? 0 : m[i] > 999.5 + 2000 ? 255 : ((m[i] - 999.5) / 4000 + 0.5) * 255;
            CHECK(im.data[i] == (uint8_t)(y + 0.5), "signed pixel %d: %d vs %.2f", i, im.data[i], y);
        }
    }
    image_u8_free(&im);
    free(b.p);
    /* BitsStored 12 with garbage in the 4 unused high bits: masked away */
    uint16_t hb[4] = {0xF000 | 100, 0xF000 | 4095, 0, 2000};
    spec u = {.rows = 2, .cols = 2, .bits_stored = 12, .wc = "2048", .ww = "4096", .px = hb};
    bytes c = build(&u);
    spec u2 = u;
    uint16_t clean[4] = {100, 4095, 0, 2000};
    u2.px = clean;
    bytes c2 = build(&u2);
    image_u8 a, a2;
    CHECK(decode(&c, "highbits.dcm", &a) == 0 && decode(&c2, "clean.dcm", &a2) == 0, "%s", err.msg);
    if (a.data && a2.data)
        CHECK(memcmp(a.data, a2.data, 4) == 0, "unused high bits must be ignored");
    image_u8_free(&a);
    image_u8_free(&a2);
    free(c.p);
    free(c2.p);
}

static void test_hostile(void)
{
    static uint16_t px[64 * 64 * 2];
    spec ok = {.rows = 64, .cols = 64, .bits_stored = 16, .px = px};
    bytes b;
    /* 65535 x 65535 declared in a tiny file: refused by size before anything is decoded */
    spec huge = ok;
    huge.rows = huge.cols = 65535;
    huge.px = NULL;
    b = build(&huge);
    uint8_t tail[] = {0xE0, 0x7F, 0x10, 0x00, 'O', 'W', 0, 0, 0, 0, 0, 0}; /* empty pixel data */
    put(&b, tail, sizeof tail);
    expect_fail(&b, "huge.dcm", "too large");
    free(b.p);
    /* pixel data declaring 4 GiB - 16 bytes */
    spec lie = ok;
    lie.px_len = 0xFFFFFFF0u;
    b = build(&lie);
    expect_fail(&b, "lying.dcm", "value length larger than the bytes left at tag (7FE0,0010)");
    free(b.p);
    /* a string element whose 16-bit length runs past the end */
    b = (bytes){0};
    preamble(&b, "1.2.840.10008.1.2.1");
    u16(&b, 0x0010);
    u16(&b, 0x0010);
    put(&b, "PN", 2);
    u16(&b, 60000);
    put(&b, "Doe^J", 5);
    expect_fail(&b, "shortname.dcm", "at tag (0010,0010)");
    free(b.p);
    /* implicit VR: a 0xFFFFFFF0 length on an ordinary tag */
    b = (bytes){0};
    preamble(&b, "1.2.840.10008.1.2");
    u16(&b, 0x0008);
    u16(&b, 0x0060);
    u32(&b, 0xFFFFFFF0u);
    put(&b, "DX", 2);
    expect_fail(&b, "implicit-lie.dcm", "at tag (0008,0060)");
    free(b.p);
    /* sequences nested 10000 deep (undefined lengths): refused, no deep recursion in GDCM */
    b = (bytes){0};
    preamble(&b, "1.2.840.10008.1.2.1");
    for (int i = 0; i < 10000; i++) {
        u16(&b, 0x0040);
        u16(&b, 0xA730);
        put(&b, "SQ", 2);
        u16(&b, 0);
        u32(&b, 0xFFFFFFFFu);
        u16(&b, 0xFFFE);
        u16(&b, 0xE000);
        u32(&b, 0xFFFFFFFFu);
    }
    expect_fail(&b, "deep.dcm", "nested more than");
    free(b.p);
    /* NumberOfFrames so large all frames would decode to > max_file_bytes */
    spec fr = ok;
    fr.frames = 100000;
    fr.px = NULL;
    b = build(&fr);
    put(&b, tail, sizeof tail);
    expect_fail(&b, "frames.dcm", "NumberOfFrames");
    free(b.p);
    /* NumberOfFrames of 0, negative or not a number */
    const char *badframes[] = {"0", "-1", "x"};
    for (int i = 0; i < 3; i++) {
        spec bf = ok;
        bf.frames_text = badframes[i];
        b = build(&bf);
        expect_fail(&b, "badframes.dcm", "invalid DICOM NumberOfFrames (0028,0008)");
        free(b.p);
    }
    /* pixel data shorter than one frame */
    spec sh = ok;
    sh.px_len = 512;
    b = build(&sh);
    b.n = b.n - 64 * 64 * 2 + 512;
    expect_fail(&b, "short.dcm", "one 64x64 frame needs 8192");
    free(b.p);
    /* deflate: not read (a decompression bomb could not be bounded before inflating) */
    spec df = ok;
    df.ts = "1.2.840.10008.1.2.1.99";
    b = build(&df);
    expect_fail(&b, "deflated.dcm", "unsupported DICOM transfer syntax 1.2.840.10008.1.2.1.99");
    free(b.p);
    /* no pixel data: a report or presentation state */
    spec np = ok;
    np.px = NULL;
    b = build(&np);
    expect_fail(&b, "sr.dcm", "without pixel data (7FE0,0010)");
    free(b.p);
    /* encapsulated pixel data under a transfer syntax GDCM does not know: refused by name
     * before GDCM sees it (GDCM guesses the encoding of unknown ones and can abort) */
    b = (bytes){0};
    spec en = ok;
    en.ts = "1.2.3.4.5.6";
    en.px = NULL;
    b = build(&en);
    uint8_t enc[] = {0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
                     0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0, /* empty offset table */
                     0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4,
                     0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0};
    put(&b, enc, sizeof enc);
    expect_fail(&b, "unknown-ts.dcm", "unsupported DICOM transfer syntax 1.2.3.4.5.6");
    free(b.p);
    /* a known transfer syntax GDCM 3.0 has no decoder for (HTJ2K) */
    en.ts = "1.2.840.10008.1.2.4.201";
    b = build(&en);
    put(&b, enc, sizeof enc);
    expect_fail(&b, "htj2k.dcm", "1.2.840.10008.1.2.4.201 (HTJ2K (lossless only))");
    free(b.p);
    /* a JPEG-LS transfer syntax whose only fragment is 4 bytes of garbage */
    en.ts = "1.2.840.10008.1.2.4.80";
    b = build(&en);
    put(&b, enc, sizeof enc);
    expect_fail(&b, "garbage-jls.dcm", "JPEG fragment without a start-of-image marker at tag (7FE0,0010)");
    free(b.p);
    /* a JPEG lossless codestream declaring 65x64 in a 64x64 data set: GDCM's decoder would
     * write past its buffer; refused with both sizes */
    en.ts = "1.2.840.10008.1.2.4.70";
    b = build(&en);
    uint8_t jl[] = {0xE0, 0x7F, 0x10, 0x00, 'O', 'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
                    0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0,
                    0xFE, 0xFF, 0x00, 0xE0, 26, 0, 0, 0, /* SOI, SOF3, SOS, 1 byte of data */
                    0xFF, 0xD8, 0xFF, 0xC3, 0x00, 0x0B, 16, 0x00, 0x41, 0x00, 0x40, 1, 1, 0x11, 0,
                    0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 1, 0, 0, 0,
                    0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0};
    put(&b, jl, sizeof jl);
    expect_fail(&b, "jpeg-size.dcm", "declares 64x65 x 1 samples of 16 bits, the data set 64x64");
    free(b.p);
    /* extraneous bytes between JPEG header markers (libjpeg only warns; GDCM aborts on it) */
    b = build(&en);
    uint8_t extra[sizeof jl + 2];
    memcpy(extra, jl, 43); /* up to the end of SOF */
    extra[43] = 0x12;
    extra[44] = 0x34;
    memcpy(extra + 45, jl + 43, sizeof jl - 43);
    extra[24] = 28;
    extra[35] = 0x40; /* the right size this time: only the two stray bytes are wrong */
    put(&b, extra, sizeof extra);
    expect_fail(&b, "jpeg-extraneous.dcm", "JPEG fragment with a damaged marker");
    free(b.p);
    /* the old "DICM only" 200-byte file */
    uint8_t z[200] = {0};
    memcpy(z + 128, "DICM", 4);
    bytes zb = {z, sizeof z, sizeof z};
    expect_fail(&zb, "empty-meta.dcm", "invalid DICOM");
}

static uint32_t rng = 88172645u;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* truncations and mutations: errors or images, never a crash */
static void test_fuzz(void)
{
    static uint16_t px[16 * 16];
    for (int i = 0; i < 256; i++)
        px[i] = (uint16_t)(i * 13);
    spec s = {.rows = 16, .cols = 16, .bits_stored = 12, .wc = "1500", .ww = "3000", .px = px};
    bytes b = build(&s);
    int fails = 0, oks = 0;
    for (size_t cut = 0; cut < b.n; cut++) {
        image_u8 im = {0};
        rb_error_clear(&err);
        if (getenv("DBG")) fprintf(stderr, "cut %zu\n", cut);
        int rc = image_decode(b.p, cut, 3, 0, 0, NULL, &im, "cut.dcm", &err);
        rc < 0 ? fails++ : oks++;
        CHECK(rc == 0 || (im.data == NULL && strstr(err.msg, "cut.dcm")), "truncated at %zu: %s", cut,
              err.msg);
        image_u8_free(&im);
    }
    CHECK(fails > 0, "truncations must fail");
    uint8_t *m = malloc(b.n);
    int nmutations = getenv("DICOM_FUZZ_N") ? atoi(getenv("DICOM_FUZZ_N")) : 600;
    for (int k = 0; k < nmutations; k++) {
        memcpy(m, b.p, b.n);
        int nmut = 1 + (int)(rnd() % 4);
        for (int j = 0; j < nmut; j++) {
            size_t at = 132 + rnd() % (b.n - 132 - 512); /* headers, not pixels */
            m[at] = (uint8_t)rnd();
            if (getenv("DBG")) fprintf(stderr, "mut %d at %zu = %02x\n", k, at, m[at]);
        }
        image_u8 im = {0};
        rb_error_clear(&err);
        int rc = image_decode(m, b.n, 1, 0, 0, NULL, &im, "mut.dcm", &err);
        CHECK(rc == 0 || (im.data == NULL && strstr(err.msg, "mut.dcm")), "mutation %d: %s", k, err.msg);
        image_u8_free(&im);
    }
    free(m);
    free(b.p);
    printf("fuzz: %d truncations refused, %d decoded\n", fails, oks);
}

/* test_dicom_hostile FILE...: decode each file and say how it went (for fuzzing by hand) */
static int decode_files(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            continue;
        fprintf(stderr, "%s: ", argv[i]);
        fseek(f, 0, SEEK_END);
        len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc(len + 1);
        len = fread(buf, 1, len, f);
        fclose(f);
        image_u8 im = {0};
        rb_error_clear(&err);
        int rc = image_decode(buf, len, 1, 0, 0, NULL, &im, argv[i], &err);
        fprintf(stderr, "%s\n", rc == 0 ? "ok" : err.msg);
        image_u8_free(&im);
        free(buf);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return decode_files(argc, argv);
    test_values();
    test_hostile();
    test_fuzz();
    return TEST_DONE();
}
