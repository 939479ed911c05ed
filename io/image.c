/* Image layer front: format sniffing, limits, probe/decode dispatch to the per-format
 * decoders (image_jpeg.c, image_png.c, image_tiff.c, dicom.c) and the decode+resize path used by
 * convert. See docs/images.md. */
#include "image.h"
#include "image_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Per-thread decode buffer of image_load_resized, freed when the thread ends. Buffers above
 * SCRATCH_KEEP are not kept, so one huge image does not pin its memory. */
#define SCRATCH_KEEP ((size_t)32 << 20)
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *p)
{
    image_scratch *s = p;
    if (s) {
        free(s->buf);
        free(s);
    }
}

static void scratch_key_make(void)
{
    pthread_key_create(&scratch_key, scratch_destroy);
}

static image_scratch *scratch_get(void)
{
    pthread_once(&scratch_once, scratch_key_make);
    image_scratch *s = pthread_getspecific(scratch_key);
    if (!s) {
        s = calloc(1, sizeof *s);
        if (s && pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            s = NULL;
        }
    }
    return s;
}

/* Give a decoded buffer back to the scratch (or free it). */
static void scratch_return(image_scratch *s, image_u8 *im)
{
    if (s && !s->buf && im->data && s->cap <= SCRATCH_KEEP) {
        s->buf = im->data;
        im->data = NULL;
    }
    image_u8_free(im);
}

const char *image_format_name(image_format f)
{
    switch (f) {
    case IMAGE_FORMAT_JPEG: return "jpeg";
    case IMAGE_FORMAT_PNG: return "png";
    case IMAGE_FORMAT_TIFF: return "tiff";
    case IMAGE_FORMAT_DICOM: return "dicom";
    default: return "unknown";
    }
}

image_format image_sniff(const uint8_t *buf, size_t len)
{
    if (!buf)
        return IMAGE_FORMAT_UNKNOWN;
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return IMAGE_FORMAT_JPEG;
    if (len >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0)
        return IMAGE_FORMAT_PNG;
    if (len >= 4 && (memcmp(buf, "II*\0", 4) == 0 || memcmp(buf, "MM\0*", 4) == 0 ||
                     memcmp(buf, "II+\0", 4) == 0 || memcmp(buf, "MM\0+", 4) == 0))
        return IMAGE_FORMAT_TIFF;
    if (len >= 132 && memcmp(buf + 128, "DICM", 4) == 0)
        return IMAGE_FORMAT_DICOM;
    return IMAGE_FORMAT_UNKNOWN;
}

const char *image_sniff_unsupported(const uint8_t *buf, size_t len)
{
    if (!buf)
        return NULL;
    if (len >= 6 && (memcmp(buf, "GIF87a", 6) == 0 || memcmp(buf, "GIF89a", 6) == 0))
        return "gif";
    if (len >= 14 && buf[0] == 'B' && buf[1] == 'M')
        return "bmp";
    if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0)
        return "webp";
    if (len >= 12 && memcmp(buf, "\0\0\0\x0cjP  \r\n\x87\n", 12) == 0)
        return "jpeg2000";
    if (len >= 4 && memcmp(buf, "\xff\x4f\xff\x51", 4) == 0)
        return "jpeg2000";
    if (len >= 2 && buf[0] == 0xFF && buf[1] == 0x0A)
        return "jpegxl";
    if (len >= 12 && memcmp(buf, "\0\0\0\x0cJXL \r\n\x87\n", 12) == 0)
        return "jpegxl";
    if (len >= 12 && memcmp(buf + 4, "ftyp", 4) == 0) {
        if (memcmp(buf + 8, "avif", 4) == 0)
            return "avif";
        if (memcmp(buf + 8, "heic", 4) == 0 || memcmp(buf + 8, "heix", 4) == 0 ||
            memcmp(buf + 8, "mif1", 4) == 0)
            return "heif";
    }
    if (len >= 4 && memcmp(buf, "8BPS", 4) == 0)
        return "psd";
    if (len >= 5 && memcmp(buf, "%PDF-", 5) == 0)
        return "pdf";
    if (len >= 4 && memcmp(buf, "\0\0\1\0", 4) == 0)
        return "ico";
    if (len >= 3 && buf[0] == 'P' && buf[1] >= '1' && buf[1] <= '6' &&
        (buf[2] == ' ' || buf[2] == '\n' || buf[2] == '\r' || buf[2] == '\t'))
        return "pnm";
    return NULL;
}

static int looks_like_text(const uint8_t *buf, size_t len)
{
    size_t n = len < 512 ? len : 512;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = buf[i];
        if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f')
            return 0;
        if (c == 0x7F)
            return 0;
    }
    return 1;
}

void image_limits_default(image_limits *l)
{
    l->max_pixels = 50000000;
    l->max_side = 30000;
    l->max_file_bytes = (size_t)512 << 20;
}

int image_check_size(int64_t width, int64_t height, const image_limits *lim, const char *what,
                     const char *path, rb_error *err)
{
    if (width <= 0 || height <= 0)
        return rb_fail(err, "the file is damaged", "%s: invalid %s image size %lldx%lld", path,
                       what, (long long)width, (long long)height);
    if (width > lim->max_side || height > lim->max_side)
        return rb_fail(err, "raise the image size limits if this image is genuine",
                       "%s: %s image too large: %lldx%lld (limit %d pixels per side)", path,
                       what, (long long)width, (long long)height, lim->max_side);
    if (width * height > lim->max_pixels)
        return rb_fail(err, "raise the image size limits if this image is genuine",
                       "%s: %s image too large: %lldx%lld = %lld pixels (limit %lld)", path,
                       what, (long long)width, (long long)height, (long long)(width * height),
                       (long long)lim->max_pixels);
    return 0;
}

int image_u8_alloc(image_u8 *out, int height, int width, int channels, image_scratch *scratch,
                   const char *path, rb_error *err)
{
    size_t n = (size_t)height * (size_t)width * (size_t)channels;
    if (n == 0)
        n = 1;
    if (scratch && scratch->buf && scratch->cap >= n) {
        out->data = scratch->buf;
        scratch->buf = NULL;
    } else {
        if (scratch) {
            free(scratch->buf);
            scratch->buf = NULL;
            scratch->cap = n;
        }
        out->data = malloc(n);
    }
    if (!out->data)
        return rb_fail(err, "free some memory or lower the image size limits",
                       "%s: out of memory for a %dx%dx%d image", path, height, width, channels);
    out->height = height;
    out->width = width;
    out->channels = channels;
    return 0;
}

void image_u8_free(image_u8 *im)
{
    if (!im)
        return;
    free(im->data);
    im->data = NULL;
    im->height = im->width = im->channels = 0;
}

void image_gray_to_rgb_inplace(uint8_t *px, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        uint8_t v = px[i];
        px[3 * i] = v;
        px[3 * i + 1] = v;
        px[3 * i + 2] = v;
    }
}

/* Checks every format shares; on success *fmt is a supported format. */
static int check_bytes(const uint8_t *buf, size_t len, const image_limits *lim, image_format *fmt,
                       const char *path, rb_error *err)
{
    if (!buf || len == 0)
        return rb_fail(err, "the file is empty; re-export or remove it", "%s: empty file (0 bytes)",
                       path);
    if (len > lim->max_file_bytes)
        return rb_fail(err, "raise max_file_bytes if this image is genuine",
                       "%s: file too large (%zu bytes, limit %zu)", path, len,
                       lim->max_file_bytes);
    *fmt = image_sniff(buf, len);
    if (*fmt != IMAGE_FORMAT_UNKNOWN)
        return 0;
    const char *other = image_sniff_unsupported(buf, len);
    if (other)
        return rb_fail(err, "convert it to PNG, JPEG, TIFF or DICOM first",
                       "%s: unsupported image format %s", path, other);
    if (looks_like_text(buf, len))
        return rb_fail(err, "remove non-image files from the input folders",
                       "%s: not an image (looks like text, %zu bytes)", path, len);
    if (len < 8)
        return rb_fail(err, "the file is damaged or not an image",
                       "%s: not an image (only %zu bytes)", path, len);
    return rb_fail(err, "only JPEG, PNG, TIFF and DICOM are read (found by content, not extension)",
                   "%s: not an image (unknown magic bytes %02x %02x %02x %02x)", path, buf[0],
                   buf[1], buf[2], buf[3]);
}

/* lim, or the defaults in *def when lim is NULL */
static const image_limits *limits_or_default(const image_limits *lim, image_limits *def)
{
    if (lim)
        return lim;
    image_limits_default(def);
    return def;
}

int image_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                const char *path, rb_error *err)
{
    image_limits def;
    lim = limits_or_default(lim, &def);
    path = path ? path : "(memory)";
    memset(info, 0, sizeof *info);
    image_format fmt;
    if (check_bytes(buf, len, lim, &fmt, path, err) < 0)
        return -1;
    switch (fmt) {
    case IMAGE_FORMAT_JPEG: return image_jpeg_probe(buf, len, lim, info, path, err);
    case IMAGE_FORMAT_PNG: return image_png_probe(buf, len, lim, info, path, err);
    case IMAGE_FORMAT_DICOM: return image_dicom_probe(buf, len, lim, info, path, err);
    default: return image_tiff_probe(buf, len, lim, info, path, err);
    }
}

static int decode_req(const uint8_t *buf, size_t len, const image_request *req,
                      const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                      rb_error *err)
{
    image_format fmt;
    memset(info, 0, sizeof *info);
    if (check_bytes(buf, len, lim, &fmt, path, err) < 0)
        return -1;
    switch (fmt) {
    case IMAGE_FORMAT_JPEG: return image_jpeg_decode(buf, len, req, lim, out, info, path, err);
    case IMAGE_FORMAT_PNG: return image_png_decode(buf, len, req, lim, out, info, path, err);
    case IMAGE_FORMAT_DICOM: return image_dicom_decode(buf, len, req, lim, out, info, path, err);
    default: return image_tiff_decode(buf, len, req, lim, out, info, path, err);
    }
}

int image_decode(const uint8_t *buf, size_t len, int channels, int min_height, int min_width,
                 const image_limits *lim, image_u8 *out, const char *path, rb_error *err)
{
    image_limits def;
    lim = limits_or_default(lim, &def);
    path = path ? path : "(memory)";
    memset(out, 0, sizeof *out);
    if (channels != 1 && channels != 3)
        return rb_fail(err, NULL, "%s: cannot decode to %d channels (1 or 3)", path, channels);
    image_request req = {.channels = channels,
                         .min_height = min_height > 0 ? min_height : 0,
                         .min_width = min_width > 0 ? min_width : 0};
    image_info info;
    return decode_req(buf, len, &req, lim, out, &info, path, err);
}

int image_load_resized(const uint8_t *buf, size_t len, int out_h, int out_w, int channels,
                       resize_mode mode, int dct_scaling, const image_limits *lim, uint8_t *out,
                       image_info *info_out, const char *path, rb_error *err)
{
    image_limits def;
    lim = limits_or_default(lim, &def);
    path = path ? path : "(memory)";
    if (channels != 1 && channels != 3)
        return rb_fail(err, NULL, "%s: cannot decode to %d channels (1 or 3)", path, channels);
    if (out_h <= 0 || out_w <= 0)
        return rb_fail(err, NULL, "%s: invalid output size %dx%d", path, out_h, out_w);
    /* channels 3: gray sources come back with 1 channel, are resized in gray and replicated
     * at the end (a third of the decode and resize work). */
    image_scratch *scratch = scratch_get();
    image_request req = {.channels = channels == 3 ? 0 : 1, .scratch = scratch};
    if (dct_scaling) {
        req.fit_height = out_h;
        req.fit_width = out_w;
        req.fit_mode = mode;
    }
    image_u8 im = {0};
    image_info info;
    int rc = decode_req(buf, len, &req, lim, &im, &info, path, err);
    if (info_out)
        *info_out = info;
    if (rc < 0)
        return -1;
    rc = image_resize(&im, out_h, out_w, mode, out, err);
    if (rc == 0 && im.channels == 1 && channels == 3)
        image_gray_to_rgb_inplace(out, (size_t)out_h * (size_t)out_w);
    scratch_return(scratch, &im);
    if (rc < 0)
        return rb_error_prefix(err, "%s: ", path);
    return 0;
}

int resize_mode_parse(const char *s, resize_mode *m)
{
    if (!s)
        return -1;
    if (strcmp(s, "stretch") == 0)
        *m = RESIZE_STRETCH;
    else if (strcmp(s, "pad") == 0)
        *m = RESIZE_PAD;
    else if (strcmp(s, "center-crop") == 0)
        *m = RESIZE_CENTER_CROP;
    else
        return -1;
    return 0;
}

const char *resize_mode_name(resize_mode m)
{
    switch (m) {
    case RESIZE_STRETCH: return "stretch";
    case RESIZE_PAD: return "pad";
    case RESIZE_CENTER_CROP: return "center-crop";
    default: return "unknown";
    }
}
