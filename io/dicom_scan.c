/* DICOM structure check before any decoding (step 1 of io/dicom.h).
 *
 * This is not a decoder: it reads tags and lengths only, so that a hostile header cannot
 * make GDCM allocate for a length the file does not hold, recurse through thousands of
 * nested sequences, or decode a frame larger than the image limits. Every element of every
 * level is visited once (cost linear in the file size); item and delimiter tags are checked
 * as PS3.5 section 7.5 defines them. */
#include "dicom.h"
#include "image_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNDEFINED 0xFFFFFFFFu

typedef struct scan {
    const uint8_t *buf;
    size_t len;
    int explicit_vr, big_endian;
    int rle; /* RLE transfer syntax: every fragment's segment header is checked */
    int codestream;  /* 1 JPEG or JPEG-LS, 2 JPEG 2000: frame headers are checked */
    int nframes_hdr; /* codestream headers (JPEG SOF, JPEG 2000 SIZ) seen in fragments */
    int64_t cs_w, cs_h, cs_c, cs_bits; /* the first one's sizes; -1 when one disagreed */
    dicom_header *h;
    const char *path;
    rb_error *err;
} scan;

int dicom_sniff(const uint8_t *buf, size_t len)
{
    return buf && len >= 132 && memcmp(buf + 128, "DICM", 4) == 0;
}

static uint16_t rd16(const scan *s, size_t p, int be)
{
    const uint8_t *b = s->buf + p;
    return be ? (uint16_t)(b[0] << 8 | b[1]) : (uint16_t)(b[1] << 8 | b[0]);
}

static uint32_t rd32(const scan *s, size_t p, int be)
{
    const uint8_t *b = s->buf + p;
    return be ? (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]
              : (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

static int bad(scan *s, uint16_t g, uint16_t e, const char *what, size_t p)
{
    return rb_fail(s->err, "the file is damaged or truncated; re-copy it from the archive",
                   "%s: invalid DICOM: %s at tag (%04X,%04X), byte %zu", s->path, what, g, e, p);
}

/* VRs with a 2-byte reserved field and a 4-byte length in explicit VR (PS3.5 7.1.2) */
static int long_vr(const char vr[2])
{
    static const char *const l[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV",
                                    "UC", "UN", "UR", "UT", "UV"};
    for (size_t i = 0; i < sizeof l / sizeof l[0]; i++)
        if (vr[0] == l[i][0] && vr[1] == l[i][1])
            return 1;
    return 0;
}

/* one of the VRs of PS3.5 6.2 (GDCM reads anything else as implicit VR, and aborts on some) */
static int known_vr(const char vr[2])
{
    static const char all[] = "AEASATCSDADSDTFLFDISLOLTOBODOFOLOVOWPNSHSLSQSSSTSVTMUCUIULUNURUSUTUV";
    for (size_t i = 0; i + 1 < sizeof all; i += 2)
        if (vr[0] == all[i] && vr[1] == all[i + 1])
            return 1;
    return 0;
}

/* Tags GDCM interprets with a fixed VR (its Attribute<> templates assert on another one):
 * in an explicit VR file they must carry this VR; US ones of one value exactly 2 bytes. */
static const struct {
    uint16_t g, e;
    char vr[3];
    int one; /* single-valued binary: fixed length */
} fixed_vr[] = {
    {0x0028, 0x0002, "US", 1}, {0x0028, 0x0003, "US", 1}, {0x0028, 0x0006, "US", 1},
    {0x0028, 0x0010, "US", 1}, {0x0028, 0x0011, "US", 1}, {0x0028, 0x0100, "US", 1},
    {0x0028, 0x0101, "US", 1}, {0x0028, 0x0102, "US", 1}, {0x0028, 0x0103, "US", 1},
    {0x0028, 0x0004, "CS", 0}, {0x0028, 0x0008, "IS", 0}, {0x0028, 0x0030, "DS", 0},
    {0x0028, 0x0034, "IS", 0}, {0x0028, 0x1050, "DS", 0}, {0x0028, 0x1051, "DS", 0},
    {0x0028, 0x1052, "DS", 0}, {0x0028, 0x1053, "DS", 0}, {0x0028, 0x1054, "LO", 0},
    {0x0028, 0x2110, "CS", 0}, {0x0028, 0x2112, "DS", 0}, {0x0028, 0x0009, "AT", 0},
    {0x0008, 0x0016, "UI", 0}, {0x0008, 0x0060, "CS", 0}, {0x0018, 0x1164, "DS", 0},
    {0x0018, 0x0050, "DS", 0}, {0x0018, 0x0088, "DS", 0}, {0x0020, 0x0032, "DS", 0},
    {0x0020, 0x0037, "DS", 0}, {0x0020, 0x0013, "IS", 0}, {0x0028, 0x0106, "US", 0},
    {0x0028, 0x0107, "US", 0}, {0x0028, 0x1101, "US", 0}, {0x0028, 0x1102, "US", 0},
    {0x0028, 0x1103, "US", 0}, {0x0028, 0x3002, "US", 0}, {0x0028, 0x1056, "CS", 0},
};

/* 0 when (g,e) with this VR and length is what GDCM expects, else -1 */
static int check_fixed_vr(uint16_t g, uint16_t e, const char vr[2], uint32_t vl, int explicit_vr)
{
    for (size_t i = 0; i < sizeof fixed_vr / sizeof fixed_vr[0]; i++) {
        if (fixed_vr[i].g != g || fixed_vr[i].e != e)
            continue;
        if (explicit_vr && (vr[0] != fixed_vr[i].vr[0] || vr[1] != fixed_vr[i].vr[1]) &&
            !(fixed_vr[i].vr[0] == 'U' && fixed_vr[i].vr[1] == 'S' && vr[0] == 'S' && vr[1] == 'S' &&
              (e == 0x0106 || e == 0x0107 || e == 0x1101 || e == 0x1102 || e == 0x1103 ||
               e == 0x3002)))
            return -1;
        if (fixed_vr[i].one && vl != 2)
            return -1;
        return 0;
    }
    return 0;
}

static int scan_dataset(scan *s, size_t *pos, size_t end, int depth, int in_item, int top);

/* PS3.5 G.5: an RLE frame starts with 16 little-endian 32-bit words: the segment count (one
 * per byte of each sample) and the segment offsets, the first 64, increasing, inside the
 * frame. GDCM's RLE decoder trusts them (a damaged header crashes it), so they are checked
 * here; one frame per fragment, as the standard requires. */
static int check_rle_frame(scan *s, size_t p, uint32_t n)
{
    if (n < 64)
        return bad(s, 0x7FE0, 0x0010, "RLE frame shorter than its 64-byte header", p);
    uint32_t nseg = rd32(s, p, 0), prev = 0;
    if (nseg < 1 || nseg > 15)
        return bad(s, 0x7FE0, 0x0010, "RLE header with an invalid segment count", p);
    for (uint32_t i = 0; i < 15; i++) {
        uint32_t off = rd32(s, p + 4 + 4 * i, 0);
        if (i < nseg && (i == 0 ? off != 64 : off <= prev || off >= n))
            return bad(s, 0x7FE0, 0x0010, "RLE header with invalid segment offsets", p);
        if (i >= nseg && off != 0)
            return bad(s, 0x7FE0, 0x0010, "RLE header with offsets beyond its segment count", p);
        prev = off;
    }
    s->h->rle_segments = (int)nseg;
    return 0;
}

static uint32_t be16(const uint8_t *b) { return (uint32_t)b[0] << 8 | b[1]; }
static uint32_t be32(const uint8_t *b) { return be16(b) << 16 | be16(b + 2); }

/* Record a codestream's size; any disagreement between fragments marks it (-1). */
static void note_size(scan *s, int64_t w, int64_t h, int64_t c, int64_t bits)
{
    if (s->nframes_hdr++ == 0) {
        s->cs_w = w;
        s->cs_h = h;
        s->cs_c = c;
        s->cs_bits = bits;
    } else if (s->cs_w != w || s->cs_h != h || s->cs_c != c || s->cs_bits != bits) {
        s->cs_w = -1;
    }
}

/* A fragment that starts a JPEG / JPEG-LS (SOI) or JPEG 2000 (SOC, or a JP2 file) codestream:
 * read the frame header (SOF / SIZ) only. GDCM's codecs write the decoded codestream into a
 * buffer sized from Rows x Columns, so a codestream declaring another size must not reach
 * them; the sizes are compared with the data set's once the whole file is scanned. */
static int check_codestream(scan *s, size_t p, uint32_t n)
{
    const uint8_t *b = s->buf + p;
    if (n >= 2 && b[0] == 0xFF && b[1] == 0xD8) { /* JPEG family: header markers up to SOS */
        size_t q = 2;
        int seen_sof = 0;
        while (q + 4 <= n) {
            if (b[q] != 0xFF)
                return bad(s, 0x7FE0, 0x0010, "JPEG fragment with a damaged marker before its frame header", p + q);
            uint8_t m = b[q + 1];
            if (m == 0xFF) { /* fill byte */
                q++;
                continue;
            }
            uint32_t l = be16(b + q + 2);
            if (l < 2 || q + 2 + l > n)
                return bad(s, 0x7FE0, 0x0010, "JPEG marker segment longer than its fragment", p + q);
            int sof = (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) || m == 0xF7;
            if (sof) {
                if (l < 8 || seen_sof)
                    return bad(s, 0x7FE0, 0x0010, "JPEG frame header too short or repeated", p + q);
                note_size(s, be16(b + q + 7), be16(b + q + 5), b[q + 9], b[q + 4]);
                seen_sof = 1;
            }
            /* what libjpeg would only warn about while reading the header: GDCM's JPEG
             * codec aborts on any such warning, so they are errors here */
            if (m == 0xE0 && l >= 9 && memcmp(b + q + 4, "JFIF\0", 5) == 0 && b[q + 9] != 1)
                return bad(s, 0x7FE0, 0x0010, "JPEG with an unknown JFIF version", p + q);
            if (m == 0xEE && l >= 14 && memcmp(b + q + 4, "Adobe", 5) == 0 && b[q + 15] > 2)
                return bad(s, 0x7FE0, 0x0010, "JPEG with an unknown Adobe transform", p + q);
            if (m == 0xDA)
                return seen_sof ? 0 : bad(s, 0x7FE0, 0x0010, "JPEG scan before its frame header", p + q);
            if (m == 0xD9 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01 || m == 0x00)
                return bad(s, 0x7FE0, 0x0010, "JPEG marker out of place in the header", p + q);
            q += 2 + l;
        }
        return bad(s, 0x7FE0, 0x0010, "JPEG fragment without a complete header", p);
    }
    size_t q = 0;
    if (n >= 12 && memcmp(b, "\0\0\0\x0cjP  ", 8) == 0) { /* JP2 file: find the jp2c box */
        while (q + 8 <= n && memcmp(b + q + 4, "jp2c", 4) != 0) {
            uint32_t l = be32(b + q);
            if (l < 8 || l > n - q)
                return bad(s, 0x7FE0, 0x0010, "JPEG 2000 box longer than its fragment", p + q);
            q += l;
        }
        q += 8;
    }
    if (q + 4 <= n && b[q] == 0xFF && b[q + 1] == 0x4F && b[q + 2] == 0xFF && b[q + 3] == 0x51) {
        const uint8_t *z = b + q + 4; /* SIZ */
        if (q + 4 + 38 > n)
            return bad(s, 0x7FE0, 0x0010, "JPEG 2000 SIZ header truncated", p + q);
        uint32_t lsiz = be16(z), csiz = be16(z + 36);
        if (csiz < 1 || csiz > 4 || lsiz != 38 + 3 * csiz || q + 4 + lsiz > n)
            return bad(s, 0x7FE0, 0x0010, "JPEG 2000 SIZ header with an invalid component count", p + q);
        int64_t w = (int64_t)be32(z + 4) - be32(z + 12), h = (int64_t)be32(z + 8) - be32(z + 16);
        int64_t bits = 0;
        for (uint32_t c = 0; c < csiz; c++) {
            const uint8_t *cc = z + 38 + 3 * c;
            if (cc[1] != 1 || cc[2] != 1)
                return bad(s, 0x7FE0, 0x0010, "JPEG 2000 component with subsampling", p + q);
            if ((cc[0] & 0x7F) + 1 > bits)
                bits = (cc[0] & 0x7F) + 1;
        }
        note_size(s, w, h, csiz, bits);
        return 0;
    }
    return bad(s, 0x7FE0, 0x0010,
               s->codestream == 2 ? "JPEG 2000 fragment without a codestream header"
                                  : "JPEG fragment without a start-of-image marker",
               p);
}

/* Items of a sequence or fragments of encapsulated pixel data, from *pos. Undefined length:
 * up to the Sequence Delimitation Item; else exactly up to end. */
static int scan_items(scan *s, size_t *pos, size_t end, int undefined, int depth, int fragments,
                      uint16_t g, uint16_t e)
{
    if (depth > DICOM_MAX_DEPTH)
        return rb_fail(s->err, "the file is hostile or damaged",
                       "%s: invalid DICOM: sequences nested more than %d deep at tag (%04X,%04X)",
                       s->path, DICOM_MAX_DEPTH, g, e);
    if (depth > s->h->max_depth)
        s->h->max_depth = depth;
    int be = s->big_endian;
    int nitem = 0; /* fragments: the first item is the basic offset table */
    for (;;) {
        size_t p = *pos;
        if (!undefined && p == end)
            return 0;
        if (p + 8 > end)
            return bad(s, g, e, undefined ? "sequence without its delimiter (file ends)"
                                          : "item header runs past its sequence", p);
        uint16_t ig = rd16(s, p, be), ie = rd16(s, p + 2, be);
        uint32_t il = rd32(s, p + 4, be);
        s->h->elements++;
        if (ig != 0xFFFE)
            return bad(s, g, e, "an element where an item was expected", p);
        if (ie == 0xE0DD) { /* sequence delimiter */
            *pos = p + 8;
            if (!undefined)
                return bad(s, g, e, "sequence delimiter in a sequence of defined length", p);
            return 0;
        }
        if (ie != 0xE000)
            return bad(s, g, e, "unexpected delimiter inside a sequence", p);
        p += 8;
        if (il == UNDEFINED) {
            if (fragments)
                return bad(s, g, e, "pixel data fragment of undefined length", p - 8);
            *pos = p;
            if (scan_dataset(s, pos, end, depth, 1, 0) < 0)
                return -1;
            continue;
        }
        if (il > end - p)
            return bad(s, g, e, "item length larger than the bytes left", p - 8);
        if (fragments && nitem++ > 0) {
            if (s->rle && check_rle_frame(s, p, il) < 0)
                return -1;
            /* a frame's first fragment starts a codestream; later ones continue it */
            const uint8_t *f = s->buf + p;
            int starts = il >= 4 && ((f[0] == 0xFF && f[1] == 0xD8) ||
                                     (f[0] == 0xFF && f[1] == 0x4F && f[2] == 0xFF && f[3] == 0x51) ||
                                     (il >= 12 && memcmp(f, "\0\0\0\x0cjP  ", 8) == 0));
            if (s->codestream && (starts || nitem == 2) && check_codestream(s, p, il) < 0)
                return -1;
        }
        if (!fragments) {
            size_t q = p;
            if (scan_dataset(s, &q, p + il, depth, 0, 0) < 0)
                return -1;
        }
        *pos = p + il;
    }
}

/* Elements from *pos up to end (defined length) or, inside an item of undefined length, up to
 * the Item Delimitation Item. top: the file's top level (records the sizing tags). */
static int scan_dataset(scan *s, size_t *pos, size_t end, int depth, int in_item, int top)
{
    while (*pos < end) {
        size_t p = *pos;
        int be = s->big_endian;
        if (end - p < 8)
            return bad(s, 0, 0, "element header runs past the end", p);
        uint16_t g = rd16(s, p, be), e = rd16(s, p + 2, be);
        s->h->elements++;
        if (g == 0xFFFE) {
            if (e == 0xE00D && in_item) {
                *pos = p + 8;
                return 0;
            }
            return bad(s, g, e, "misplaced item or delimiter", p);
        }
        char vr[2] = {0, 0};
        uint32_t vl;
        if (s->explicit_vr) {
            vr[0] = (char)s->buf[p + 4];
            vr[1] = (char)s->buf[p + 5];
            if (!known_vr(vr))
                return bad(s, g, e, "invalid value representation", p);
            if (long_vr(vr)) {
                if (end - p < 12)
                    return bad(s, g, e, "element header runs past the end", p);
                vl = rd32(s, p + 8, be);
                p += 12;
            } else {
                vl = rd16(s, p + 6, be);
                p += 8;
            }
        } else {
            vl = rd32(s, p + 4, be);
            p += 8;
        }
        if (vl != UNDEFINED && check_fixed_vr(g, e, vr, vl, s->explicit_vr) < 0)
            return bad(s, g, e, "unexpected value representation or length", p);
        int is_pixel = g == 0x7FE0 && e == 0x0010 && top;
        int is_sq = s->explicit_vr ? (vr[0] == 'S' && vr[1] == 'Q') : 0;
        if (vl == UNDEFINED) {
            int un = s->explicit_vr && vr[0] == 'U' && vr[1] == 'N';
            if (!(is_sq || un || !s->explicit_vr || (g == 0x7FE0 && e == 0x0010)))
                return bad(s, g, e, "undefined length on a value that cannot have one", p);
            if (is_pixel) {
                s->h->encapsulated = 1;
                s->h->pixel_offset = (int64_t)p;
                s->h->pixel_length = -1;
            }
            *pos = p;
            if (scan_items(s, pos, end, 1, depth + 1, g == 0x7FE0 && e == 0x0010, g, e) < 0)
                return -1;
            continue;
        }
        if (vl > end - p)
            return bad(s, g, e, "value length larger than the bytes left", p);
        /* a sequence of defined length (or, implicit VR / UN, a value that starts with an
         * item tag) holds data sets: check them too */
        int items = is_sq;
        if (!items && vl >= 8 && (!s->explicit_vr || (vr[0] == 'U' && vr[1] == 'N')) &&
            !(g == 0x7FE0 && e == 0x0010) && rd16(s, p, be) == 0xFFFE && rd16(s, p + 2, be) == 0xE000)
            items = 1;
        if (items) {
            size_t q = p;
            if (scan_items(s, &q, p + vl, 0, depth + 1, 0, g, e) < 0)
                return -1;
        }
        if (top) {
            int64_t v = vl == 2 ? rd16(s, p, be) : -1;
            if (g == 0x0028 && e == 0x0002)
                s->h->samples = v;
            else if (g == 0x0028 && e == 0x0010)
                s->h->rows = v;
            else if (g == 0x0028 && e == 0x0011)
                s->h->columns = v;
            else if (g == 0x0028 && e == 0x0100)
                s->h->bits_allocated = v;
            else if (g == 0x0028 && e == 0x0101)
                s->h->bits_stored = v;
            else if (g == 0x0028 && e == 0x0008) { /* NumberOfFrames, IS */
                char t[16];
                size_t n = vl < sizeof t - 1 ? vl : sizeof t - 1;
                memcpy(t, s->buf + p, n);
                t[n] = 0;
                char *endp;
                long long f = strtoll(t, &endp, 10);
                s->h->frames = endp == t || f <= 0 ? -2 : f; /* -2: present but invalid */
            } else if (is_pixel) {
                s->h->pixel_offset = (int64_t)p;
                s->h->pixel_length = vl;
            }
        }
        *pos = p + vl;
    }
    if (in_item)
        return bad(s, 0xFFFE, 0xE00D, "item without its delimiter (file ends)", *pos);
    return 0;
}

/* decoded: whether GDCM 3.0 reads it (anything else is refused before GDCM sees the file) */
static const struct {
    const char *uid, *name;
    int decoded;
} ts_names[] = {
    {"1.2.840.10008.1.2", "implicit VR little endian", 1},
    {"1.2.840.10008.1.2.1", "explicit VR little endian", 1},
    {"1.2.840.10008.1.2.1.99", "deflated explicit VR little endian", 0},
    {"1.2.840.10008.1.2.2", "explicit VR big endian", 1},
    {"1.2.840.10008.1.2.4.50", "JPEG baseline", 1},
    {"1.2.840.10008.1.2.4.51", "JPEG extended", 1},
    {"1.2.840.10008.1.2.4.57", "JPEG lossless", 1},
    {"1.2.840.10008.1.2.4.70", "JPEG lossless, first-order prediction", 1},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS lossless", 1},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS near-lossless", 1},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 (lossless only)", 1},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000", 1},
    {"1.2.840.10008.1.2.4.100", "MPEG2", 0},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264", 0},
    {"1.2.840.10008.1.2.4.110", "JPEG XL lossless", 0},
    {"1.2.840.10008.1.2.4.201", "HTJ2K (lossless only)", 0},
    {"1.2.840.10008.1.2.4.203", "HTJ2K", 0},
    {"1.2.840.10008.1.2.5", "RLE lossless", 1},
};

static int ts_decoded(const char *uid)
{
    for (size_t i = 0; i < sizeof ts_names / sizeof ts_names[0]; i++)
        if (strcmp(uid, ts_names[i].uid) == 0)
            return ts_names[i].decoded;
    return 0;
}

const char *dicom_ts_name(const char *uid)
{
    for (size_t i = 0; i < sizeof ts_names / sizeof ts_names[0]; i++)
        if (strcmp(uid, ts_names[i].uid) == 0)
            return ts_names[i].name;
    return "unknown transfer syntax";
}

int dicom_scan(const uint8_t *buf, size_t len, const image_limits *lim, dicom_header *h,
               const char *path, rb_error *err)
{
    memset(h, 0, sizeof *h);
    h->rows = h->columns = h->samples = h->bits_allocated = h->bits_stored = h->frames = -1;
    h->pixel_offset = h->pixel_length = -1;
    if (!dicom_sniff(buf, len))
        return rb_fail(err, NULL, "%s: not a DICOM file (no DICM at byte 128)", path);
    scan s = {.buf = buf, .len = len, .explicit_vr = 1, .h = h, .path = path, .err = err};
    /* file meta information: group 0002, always explicit VR little endian */
    size_t p = 132;
    while (p + 8 <= len && rd16(&s, p, 0) == 0x0002) {
        uint16_t e = rd16(&s, p + 2, 0);
        char vr[2] = {(char)buf[p + 4], (char)buf[p + 5]};
        uint32_t vl;
        size_t v;
        if (!known_vr(vr))
            return bad(&s, 2, e, "invalid value representation", p);
        if (long_vr(vr)) {
            if (p + 12 > len)
                return bad(&s, 2, e, "element header runs past the end", p);
            vl = rd32(&s, p + 8, 0);
            v = p + 12;
        } else {
            vl = rd16(&s, p + 6, 0);
            v = p + 8;
        }
        if (vl > len - v)
            return bad(&s, 2, e, "value length larger than the bytes left", p);
        if (e == 0x0010) {
            size_t n = vl < sizeof h->transfer_syntax - 1 ? vl : sizeof h->transfer_syntax - 1;
            memcpy(h->transfer_syntax, buf + v, n);
            while (n > 0 && (h->transfer_syntax[n - 1] == 0 || h->transfer_syntax[n - 1] == ' '))
                n--;
            h->transfer_syntax[n] = 0;
        }
        h->elements++;
        p = v + vl;
    }
    if (!h->transfer_syntax[0])
        return rb_fail(err, "the file is damaged or not a DICOM Part 10 file",
                       "%s: invalid DICOM: no transfer syntax (0002,0010) in the file meta "
                       "information",
                       path);
    const char *ts = h->transfer_syntax;
    if (!ts_decoded(ts))
        return rb_fail(err, "re-export the file uncompressed, or with JPEG, JPEG-LS, JPEG 2000 or RLE compression",
                       "%s: unsupported DICOM transfer syntax %s (%s)", path, ts,
                       dicom_ts_name(ts));
    s.explicit_vr = strcmp(ts, "1.2.840.10008.1.2") != 0;
    s.big_endian = strcmp(ts, "1.2.840.10008.1.2.2") == 0;
    s.rle = strcmp(ts, "1.2.840.10008.1.2.5") == 0;
    s.codestream = strncmp(ts, "1.2.840.10008.1.2.4.9", 21) == 0   ? 2 /* JPEG 2000 */
                   : strncmp(ts, "1.2.840.10008.1.2.4.", 20) == 0 ? 1 /* JPEG, JPEG-LS */
                                                                  : 0;
    h->explicit_vr = s.explicit_vr;
    h->big_endian = s.big_endian;
    if (scan_dataset(&s, &p, len, 0, 0, 1) < 0)
        return -1;

    if (h->pixel_offset < 0)
        return rb_fail(err, "the DICOM object holds no image (a report or a presentation state?)",
                       "%s: DICOM file without pixel data (7FE0,0010)", path);
    if (h->rows < 0 || h->columns < 0)
        return rb_fail(err, "the file is damaged", "%s: invalid DICOM: missing %s", path,
                       h->rows < 0 ? "Rows (0028,0010)" : "Columns (0028,0011)");
    if (image_check_size(h->columns, h->rows, lim, "DICOM", path, err) < 0)
        return -1;
    int64_t spp = h->samples < 0 ? 1 : h->samples;
    int64_t ba = h->bits_allocated;
    if (spp != 1 && spp != 3)
        return rb_fail(err, "only gray and colour images are read",
                       "%s: unsupported DICOM SamplesPerPixel (0028,0002) = %lld", path,
                       (long long)spp);
    if (ba != 8 && ba != 16)
        return rb_fail(err, "only 8- and 16-bit samples are read",
                       "%s: unsupported DICOM BitsAllocated (0028,0100) = %lld", path,
                       (long long)ba);
    if (h->frames == -2)
        return rb_fail(err, "the file is damaged", "%s: invalid DICOM NumberOfFrames (0028,0008)",
                       path);
    int64_t frames = h->frames < 0 ? 1 : h->frames;
    int64_t frame_bytes = h->rows * h->columns * spp * (ba / 8);
    /* GDCM decodes every frame into one buffer: bound it like the file itself */
    if (frames > (int64_t)lim->max_file_bytes / frame_bytes)
        return rb_fail(err, "raise max_file_bytes if this image is genuine",
                       "%s: DICOM NumberOfFrames (0028,0008) = %lld frames of %lld bytes decode to "
                       "more than the limit of %zu bytes",
                       path, (long long)frames, (long long)frame_bytes, lim->max_file_bytes);
    if (s.rle && h->rle_segments != spp * (ba / 8))
        return rb_fail(err, "the file is damaged; re-copy it from the archive",
                       "%s: invalid DICOM: RLE pixel data (7FE0,0010) with %d segments for %lld "
                       "samples of %lld bits",
                       path, h->rle_segments, (long long)spp, (long long)ba);
    if (h->encapsulated && s.codestream &&
        (s.nframes_hdr == 0 || s.cs_w != h->columns || s.cs_h != h->rows || s.cs_c != spp ||
         s.cs_bits > ba))
        return rb_fail(err, "the file is damaged; re-copy it from the archive",
                       "%s: invalid DICOM: the compressed pixel data (7FE0,0010) declares "
                       "%lldx%lld x %lld samples of %lld bits, the data set %lldx%lld x %lld of "
                       "at most %lld bits (transfer syntax %s)",
                       path, (long long)s.cs_w, (long long)s.cs_h, (long long)s.cs_c,
                       (long long)s.cs_bits, (long long)h->columns, (long long)h->rows,
                       (long long)spp, (long long)ba, ts);
    if (h->encapsulated && !s.codestream && !s.rle)
        return rb_fail(err, "the file is damaged", "%s: invalid DICOM: encapsulated pixel data "
                       "(7FE0,0010) under the uncompressed transfer syntax %s", path, ts);
    if (!h->encapsulated && (s.codestream || s.rle))
        return rb_fail(err, "the file is damaged", "%s: invalid DICOM: pixel data (7FE0,0010) of "
                       "defined length under the compressed transfer syntax %s", path, ts);
    if (!h->encapsulated && h->pixel_length < frame_bytes)
        return rb_fail(err, "the file is damaged or truncated; re-copy it from the archive",
                       "%s: invalid DICOM: pixel data (7FE0,0010) holds %lld bytes, one %lldx%lld "
                       "frame needs %lld",
                       path, (long long)h->pixel_length, (long long)h->rows,
                       (long long)h->columns, (long long)frame_bytes);
    return 0;
}
