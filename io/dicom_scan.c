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

static int scan_dataset(scan *s, size_t *pos, size_t end, int depth, int in_item, int top);

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
            if (vr[0] < 'A' || vr[0] > 'Z' || vr[1] < 'A' || vr[1] > 'Z')
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
                s->h->frames = endp == t ? -2 : f;
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

static const struct {
    const char *uid, *name;
} ts_names[] = {
    {"1.2.840.10008.1.2", "implicit VR little endian"},
    {"1.2.840.10008.1.2.1", "explicit VR little endian"},
    {"1.2.840.10008.1.2.1.99", "deflated explicit VR little endian"},
    {"1.2.840.10008.1.2.2", "explicit VR big endian"},
    {"1.2.840.10008.1.2.4.50", "JPEG baseline"},
    {"1.2.840.10008.1.2.4.51", "JPEG extended"},
    {"1.2.840.10008.1.2.4.57", "JPEG lossless"},
    {"1.2.840.10008.1.2.4.70", "JPEG lossless, first-order prediction"},
    {"1.2.840.10008.1.2.4.80", "JPEG-LS lossless"},
    {"1.2.840.10008.1.2.4.81", "JPEG-LS near-lossless"},
    {"1.2.840.10008.1.2.4.90", "JPEG 2000 (lossless only)"},
    {"1.2.840.10008.1.2.4.91", "JPEG 2000"},
    {"1.2.840.10008.1.2.4.100", "MPEG2"},
    {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264"},
    {"1.2.840.10008.1.2.4.110", "JPEG XL lossless"},
    {"1.2.840.10008.1.2.4.201", "HTJ2K (lossless only)"},
    {"1.2.840.10008.1.2.4.203", "HTJ2K"},
    {"1.2.840.10008.1.2.5", "RLE lossless"},
};

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
    scan s = {buf, len, 1, 0, h, path, err};
    /* file meta information: group 0002, always explicit VR little endian */
    size_t p = 132;
    while (p + 8 <= len && rd16(&s, p, 0) == 0x0002) {
        uint16_t e = rd16(&s, p + 2, 0);
        char vr[2] = {(char)buf[p + 4], (char)buf[p + 5]};
        uint32_t vl;
        size_t v;
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
    if (strcmp(ts, "1.2.840.10008.1.2.1.99") == 0)
        return rb_fail(err, "re-export the file uncompressed or with a JPEG transfer syntax",
                       "%s: unsupported DICOM transfer syntax %s (%s)", path, ts,
                       dicom_ts_name(ts));
    s.explicit_vr = strcmp(ts, "1.2.840.10008.1.2") != 0;
    s.big_endian = strcmp(ts, "1.2.840.10008.1.2.2") == 0;
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
    if (h->frames == -2 || h->frames == 0 || h->frames < -2)
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
    if (!h->encapsulated && h->pixel_length < frame_bytes)
        return rb_fail(err, "the file is damaged or truncated; re-copy it from the archive",
                       "%s: invalid DICOM: pixel data (7FE0,0010) holds %lld bytes, one %lldx%lld "
                       "frame needs %lld",
                       path, (long long)h->pixel_length, (long long)h->rows,
                       (long long)h->columns, (long long)frame_bytes);
    return 0;
}
