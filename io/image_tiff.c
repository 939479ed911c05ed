/* TIFF decoding with libtiff, from memory (TIFFClientOpenExt with read/seek/size callbacks).
 *
 * Errors and warnings go to per-handle handlers (TIFFOpenOptionsSetErrorHandlerExtR), which
 * record the first message and never print; the process-wide handlers are switched off once
 * so nothing reaches stderr from code paths without a handle. Only the first page is read.
 *
 * 8/16-bit unsigned gray (MinIsBlack/MinIsWhite) and RGB, contiguous or planar, strips or
 * tiles, any codec libtiff has, are read here sample by sample (16-bit rounded to 8 bits as
 * image.h documents). Everything else (palette, bilevel and 2/4-bit gray, CMYK, YCbCr/JPEG,
 * ...) goes through libtiff's TIFFRGBAImage, with the file's row order kept (orientation
 * tags are not applied, as for the other formats). */
#include "image_internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

typedef struct tiff_ctx {
    const uint8_t *buf;
    uint64_t len, pos;
    int short_read; /* a read ran past the end of the data */
    char msg[256];
} tiff_ctx;

static tmsize_t t_read(thandle_t h, void *dst, tmsize_t n)
{
    tiff_ctx *c = (tiff_ctx *)h;
    if (n <= 0)
        return 0;
    uint64_t avail = c->pos < c->len ? c->len - c->pos : 0;
    if ((uint64_t)n > avail) {
        c->short_read = 1;
        n = (tmsize_t)avail;
    }
    if (n > 0)
        memcpy(dst, c->buf + c->pos, (size_t)n);
    c->pos += (uint64_t)n;
    return n;
}

static tmsize_t t_write(thandle_t h, void *src, tmsize_t n)
{
    (void)h;
    (void)src;
    (void)n;
    return -1;
}

static toff_t t_seek(thandle_t h, toff_t off, int whence)
{
    tiff_ctx *c = (tiff_ctx *)h;
    uint64_t base = whence == SEEK_CUR ? c->pos : whence == SEEK_END ? c->len : 0;
    uint64_t pos = base + (uint64_t)off; /* wraps for negative offsets, as libtiff expects */
    if (pos > ((uint64_t)1 << 62))
        return (toff_t)-1;
    c->pos = pos;
    return pos;
}

static int t_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t t_size(thandle_t h)
{
    return ((tiff_ctx *)h)->len;
}

static int t_map(thandle_t h, void **base, toff_t *size)
{
    (void)h;
    (void)base;
    (void)size;
    return 0;
}

static void t_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

static int t_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    tiff_ctx *c = user;
    if (c && !c->msg[0]) {
        char m[200];
        vsnprintf(m, sizeof m, fmt, ap);
        if (module && *module)
            snprintf(c->msg, sizeof c->msg, "%s: %s", module, m);
        else
            snprintf(c->msg, sizeof c->msg, "%s", m);
    }
    return 1; /* handled: no other handler runs */
}

static int t_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap)
{
    (void)tif;
    (void)user;
    (void)module;
    (void)fmt;
    (void)ap;
    return 1;
}

static pthread_once_t t_once = PTHREAD_ONCE_INIT;
static void t_silence_globals(void)
{
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
}

static TIFF *tiff_open(tiff_ctx *c, const uint8_t *buf, size_t len, const image_limits *lim)
{
    pthread_once(&t_once, t_silence_globals);
    memset(c, 0, sizeof *c);
    c->buf = buf;
    c->len = len;
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts)
        return NULL;
    /* libtiff's own buffers (raw strips, whole-strip buffers of the RGBA path): bounded by
     * the largest image the limits allow, 16-bit RGBA. */
    int64_t cap = lim->max_pixels * 8;
    if (cap < ((int64_t)64 << 20))
        cap = (int64_t)64 << 20;
    if (cap > ((int64_t)1 << 30))
        cap = (int64_t)1 << 30;
    TIFFOpenOptionsSetMaxSingleMemAlloc(opts, (tmsize_t)cap);
    TIFFOpenOptionsSetErrorHandlerExtR(opts, t_error, c);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, t_warning, c);
    /* "m": no memory mapping (reads go through t_read); "r" reads the first directory */
    TIFF *tif = TIFFClientOpenExt("tiff", "rm", (thandle_t)c, t_read, t_write, t_seek, t_close,
                                  t_size, t_map, t_unmap, opts);
    TIFFOpenOptionsFree(opts);
    return tif;
}

static int tiff_fail(const tiff_ctx *c, const char *what, const char *path, rb_error *err)
{
    const char *m = c->msg[0] ? c->msg : what;
    if (c->short_read)
        return rb_fail(err, "the file is truncated; re-copy it from the source",
                       "%s: truncated TIFF data (%s)", path, m);
    return rb_fail(err, "the file is damaged; re-copy it from the source", "%s: invalid TIFF (%s)",
                   path, m);
}

typedef struct tiff_fields {
    uint32_t w, h;
    uint16_t spp, bps, photometric, planar, sampleformat;
} tiff_fields;

static int read_fields(TIFF *tif, tiff_ctx *c, tiff_fields *f, image_info *info,
                       const image_limits *lim, const char *path, rb_error *err)
{
    memset(f, 0, sizeof *f);
    info->format = IMAGE_FORMAT_TIFF;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &f->w) ||
        !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &f->h))
        return tiff_fail(c, "missing ImageWidth or ImageLength tag", path, err);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &f->spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &f->bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &f->planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &f->sampleformat);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &f->photometric))
        return tiff_fail(c, "missing Photometric tag", path, err);
    info->width = (int)(f->w > INT32_MAX ? INT32_MAX : f->w);
    info->height = (int)(f->h > INT32_MAX ? INT32_MAX : f->h);
    info->bits = f->bps;
    switch (f->photometric) {
    case PHOTOMETRIC_MINISBLACK:
    case PHOTOMETRIC_MINISWHITE: info->channels = f->spp >= 2 ? 2 : 1; break;
    case PHOTOMETRIC_PALETTE: info->channels = 3; break;
    case PHOTOMETRIC_SEPARATED: info->channels = f->spp >= 4 ? 4 : f->spp; break;
    default: info->channels = f->spp >= 4 ? 4 : 3; break;
    }
    if (image_check_size(f->w, f->h, lim, "TIFF", path, err) < 0)
        return -1;
    if (f->spp == 0 || f->spp > 16 || f->bps == 0 || f->bps > 64)
        return rb_fail(err, "the file is damaged", "%s: invalid TIFF (%u samples of %u bits)",
                       path, f->spp, f->bps);
    return 0;
}

int image_tiff_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                     const char *path, rb_error *err)
{
    tiff_ctx c;
    TIFF *tif = tiff_open(&c, buf, len, lim);
    if (!tif)
        return tiff_fail(&c, "cannot open", path, err);
    tiff_fields f;
    int rc = read_fields(tif, &c, &f, info, lim, path, err);
    TIFFClose(tif);
    return rc;
}

/* n pixels: `take` samples each from src (pixel stride sstride samples, 8 or 16 bits,
 * host order) to dst (pixel stride dstride bytes). */
static void put_run(uint8_t *dst, int dstride, const uint8_t *src, int sstride, int take, int n,
                    int bits, int invert)
{
    if (bits == 8) {
        for (int x = 0; x < n; x++)
            for (int s = 0; s < take; s++) {
                uint8_t v = src[(size_t)x * sstride + s];
                dst[(size_t)x * dstride + s] = invert ? (uint8_t)(255 - v) : v;
            }
    } else {
        const uint16_t *s16 = (const uint16_t *)src;
        for (int x = 0; x < n; x++)
            for (int s = 0; s < take; s++) {
                uint32_t v = s16[(size_t)x * sstride + s];
                dst[(size_t)x * dstride + s] = image_u16_to_u8(invert ? 65535 - v : v);
            }
    }
}

/* Own reader for 8/16-bit gray/RGB: fills img (w*h*need, need = 1 or 3). */
static int read_samples(TIFF *tif, tiff_ctx *c, const tiff_fields *f, int need, uint8_t *img,
                        const char *path, rb_error *err)
{
    int separate = f->planar == PLANARCONFIG_SEPARATE;
    int planes = separate ? need : 1;
    int take = separate ? 1 : need, sstride = separate ? 1 : f->spp;
    int invert = f->photometric == PHOTOMETRIC_MINISWHITE;
    int bytes = f->bps / 8;
    uint64_t w = f->w, h = f->h;
    uint8_t *tbuf = NULL;
    int rc = -1;

    if (TIFFIsTiled(tif)) {
        uint32_t tw = 0, th = 0;
        if (!TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw) ||
            !TIFFGetField(tif, TIFFTAG_TILELENGTH, &th) || tw == 0 || th == 0 || tw > 65536 ||
            th > 65536 || (uint64_t)tw * th > (w * h > (1u << 20) ? w * h : (1u << 20)))
            return rb_fail(err, "the file is damaged", "%s: invalid TIFF tile size %ux%u",
                           path, tw, th);
        tmsize_t tsize = TIFFTileSize(tif);
        uint64_t trow = (uint64_t)tw * sstride * bytes;
        if (tsize <= 0 || (uint64_t)tsize < trow * th)
            return tiff_fail(c, "inconsistent tile size", path, err);
        tbuf = malloc((size_t)tsize);
        if (!tbuf)
            return rb_fail(err, NULL, "%s: out of memory for a TIFF tile", path);
        for (int p = 0; p < planes; p++)
            for (uint32_t ty = 0; ty < h; ty += th)
                for (uint32_t tx = 0; tx < w; tx += tw) {
                    uint32_t tile = TIFFComputeTile(tif, tx, ty, 0, (uint16_t)p);
                    if (TIFFReadEncodedTile(tif, tile, tbuf, tsize) < 0) {
                        tiff_fail(c, "cannot read a tile", path, err);
                        goto done;
                    }
                    uint32_t nr = th < h - ty ? th : (uint32_t)(h - ty);
                    uint32_t nc = tw < w - tx ? tw : (uint32_t)(w - tx);
                    for (uint32_t r = 0; r < nr; r++)
                        put_run(img + ((ty + r) * w + tx) * need + p, need, tbuf + r * trow,
                                sstride, take, (int)nc, f->bps, invert);
                }
    } else {
        uint32_t rps = 0;
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
        if (rps == 0 || rps > h)
            rps = (uint32_t)h;
        uint64_t srow = w * sstride * bytes;
        tmsize_t ssize = TIFFStripSize(tif);
        if (ssize <= 0 || (uint64_t)TIFFScanlineSize64(tif) != srow ||
            (uint64_t)ssize < srow * (rps < h ? rps : h))
            return tiff_fail(c, "inconsistent strip size", path, err);
        tbuf = malloc((size_t)ssize);
        if (!tbuf)
            return rb_fail(err, NULL, "%s: out of memory for a TIFF strip", path);
        for (int p = 0; p < planes; p++)
            for (uint32_t y = 0; y < h; y += rps) {
                uint32_t nr = rps < h - y ? rps : (uint32_t)(h - y);
                uint32_t strip = TIFFComputeStrip(tif, y, (uint16_t)p);
                tmsize_t want = (tmsize_t)(srow * nr);
                if (TIFFReadEncodedStrip(tif, strip, tbuf, want) != want) {
                    tiff_fail(c, "cannot read a strip", path, err);
                    goto done;
                }
                for (uint32_t r = 0; r < nr; r++)
                    put_run(img + (y + r) * w * need + p, need, tbuf + r * srow, sstride, take,
                            (int)w, f->bps, invert);
            }
    }
    rc = 0;
done:
    free(tbuf);
    return rc;
}

/* Everything else through TIFFRGBAImage: fills img as RGB (w*h*3). */
static int read_rgba(TIFF *tif, tiff_ctx *c, const tiff_fields *f, uint8_t *img,
                     const char *path, rb_error *err)
{
    char emsg[1024] = "";
    if (!TIFFRGBAImageOK(tif, emsg))
        return rb_fail(err, "convert it to an 8- or 16-bit gray or RGB TIFF",
                       "%s: unsupported TIFF (%s)", path, emsg);
    TIFFRGBAImage ri;
    if (!TIFFRGBAImageBegin(&ri, tif, 1, emsg))
        return rb_fail(err, "convert it to an 8- or 16-bit gray or RGB TIFF",
                       "%s: unsupported TIFF (%s)", path, emsg);
    ri.req_orientation = ri.orientation; /* keep the file's row order */
    size_t n = (size_t)f->w * f->h;
    uint32_t *raster = malloc(n * 4);
    if (!raster) {
        TIFFRGBAImageEnd(&ri);
        return rb_fail(err, NULL, "%s: out of memory for a %ux%u TIFF", path, f->w, f->h);
    }
    int ok = TIFFRGBAImageGet(&ri, raster, f->w, f->h);
    TIFFRGBAImageEnd(&ri);
    if (!ok) {
        free(raster);
        return tiff_fail(c, "cannot decode the image data", path, err);
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t p = raster[i];
        img[3 * i] = (uint8_t)TIFFGetR(p);
        img[3 * i + 1] = (uint8_t)TIFFGetG(p);
        img[3 * i + 2] = (uint8_t)TIFFGetB(p);
    }
    free(raster);
    return 0;
}

int image_tiff_decode(const uint8_t *buf, size_t len, const image_request *req,
                      const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                      rb_error *err)
{
    memset(out, 0, sizeof *out);
    tiff_ctx c;
    TIFF *tif = tiff_open(&c, buf, len, lim);
    if (!tif)
        return tiff_fail(&c, "cannot open", path, err);
    tiff_fields f;
    if (read_fields(tif, &c, &f, info, lim, path, err) < 0) {
        TIFFClose(tif);
        return -1;
    }
    int gray = f.photometric == PHOTOMETRIC_MINISBLACK || f.photometric == PHOTOMETRIC_MINISWHITE;
    int own = (f.bps == 8 || f.bps == 16) && f.sampleformat == SAMPLEFORMAT_UINT &&
              (f.planar == PLANARCONFIG_CONTIG || f.planar == PLANARCONFIG_SEPARATE) &&
              ((gray && f.spp >= 1) || (f.photometric == PHOTOMETRIC_RGB && f.spp >= 3));
    int need = own ? (gray ? 1 : 3) : 3;
    int channels = req->channels ? req->channels : (gray ? 1 : 3);
    uint8_t *img = NULL;
    int rc;
    if (need == channels) {
        rc = image_u8_alloc(out, (int)f.h, (int)f.w, channels, req->scratch, path, err);
        img = out->data;
    } else {
        img = malloc((size_t)f.w * f.h * need);
        rc = img ? 0 : rb_fail(err, NULL, "%s: out of memory for a %ux%u TIFF", path, f.w, f.h);
    }
    if (rc == 0)
        rc = own ? read_samples(tif, &c, &f, need, img, path, err)
                 : read_rgba(tif, &c, &f, img, path, err);
    TIFFClose(tif);
    if (rc == 0 && need != channels) {
        rc = image_u8_alloc(out, (int)f.h, (int)f.w, channels, req->scratch, path, err);
        if (rc == 0) {
            size_t n = (size_t)f.w * f.h;
            if (channels == 3)
                for (size_t i = 0; i < n; i++)
                    out->data[3 * i] = out->data[3 * i + 1] = out->data[3 * i + 2] = img[i];
            else
                for (size_t i = 0; i < n; i++)
                    out->data[i] = image_luma(img[3 * i], img[3 * i + 1], img[3 * i + 2]);
        }
    }
    if (img != out->data)
        free(img);
    if (rc < 0)
        image_u8_free(out);
    return rc;
}
