/* PNG decoding with libpng (classic API, reading from memory, errors through setjmp).
 *
 * Every PNG type is read: 1/2/4/8/16-bit gray, gray+alpha, palette (tRNS ignored along with
 * alpha), RGB, RGBA, interlaced or not. libpng expands low-depth gray and palettes to 8 bits
 * and strips alpha; 16-bit samples and gray<->RGB are converted here with the rounding
 * documented in image.h. Sizes are checked against the limits right after IHDR, before any
 * pixel buffer exists; libpng's own user limits and chunk limits bound everything else. */
#include "image_internal.h"
#include "image_png_msg.h"

#include <png.h>
#include <stdlib.h>
#include <string.h>

/* Deflate cannot expand more than ~1032:1, so a file holding fewer compressed bytes than
 * raw bytes / 1100 is missing data; refuse it before allocating for its declared size. */
#define PNG_MAX_INFLATE_RATIO 1100

typedef struct png_ctx {
    const uint8_t *buf;
    size_t len, pos;
    char msg[IMAGE_PNG_MSG];
} png_ctx;

void image_png_error(png_structp png, png_const_charp msg)
{
    char *keep = png_get_error_ptr(png);
    if (keep && !keep[0])
        snprintf(keep, IMAGE_PNG_MSG, "%s", msg ? msg : "unknown error");
    png_longjmp(png, 1);
}

void image_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* never print */
}

static void png_ctx_read(png_structp png, png_bytep data, size_t n)
{
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        snprintf(c->msg, sizeof c->msg, "premature end of file");
        png_error(png, "premature end of file");
    }
    memcpy(data, c->buf + c->pos, n);
    c->pos += n;
}

static int png_ctx_fail(const png_ctx *c, const char *path, rb_error *err)
{
    if (strcmp(c->msg, "premature end of file") == 0)
        return rb_fail(err, "the file is truncated; re-copy it from the source",
                       "%s: truncated PNG data (premature end of file)", path);
    return rb_fail(err, "the file is damaged; re-copy it from the source",
                   "%s: invalid PNG (%s)", path, c->msg[0] ? c->msg : "unknown error");
}

/* Common setup: structs, limits, and chunks we never need skipped unparsed. */
static png_structp png_ctx_create(png_ctx *c, const uint8_t *buf, size_t len,
                                  const image_limits *lim, png_infop *info)
{
    memset(c, 0, sizeof *c);
    c->buf = buf;
    c->len = len;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c->msg, image_png_error,
                                             image_png_warning);
    if (!png)
        return NULL;
    *info = png_create_info_struct(png);
    if (!*info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return NULL;
    }
    png_set_read_fn(png, c, png_ctx_read);
    png_set_user_limits(png, (png_uint_32)lim->max_side, (png_uint_32)lim->max_side);
    png_set_chunk_malloc_max(png, (png_alloc_size_t)8 << 20);
    png_set_chunk_cache_max(png, 256);
    /* Skip every ancillary chunk (text, ICC profiles, ...) unparsed: pixels are all we need
     * and fewer parsers see hostile bytes. IHDR, PLTE, tRNS, IDAT, IEND are still read. */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    return png;
}

static void fill_info(png_structp png, png_infop pinfo, image_info *info)
{
    info->format = IMAGE_FORMAT_PNG;
    info->width = (int)png_get_image_width(png, pinfo);
    info->height = (int)png_get_image_height(png, pinfo);
    int ct = png_get_color_type(png, pinfo);
    info->channels = ct == PNG_COLOR_TYPE_GRAY         ? 1
                     : ct == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                     : ct == PNG_COLOR_TYPE_RGB_ALPHA  ? 4
                                                       : 3; /* RGB, palette */
    info->bits = png_get_bit_depth(png, pinfo);
}

static int check_header(png_structp png, png_infop pinfo, size_t len, const image_limits *lim,
                        const char *path, rb_error *err)
{
    uint64_t w = png_get_image_width(png, pinfo), h = png_get_image_height(png, pinfo);
    if (image_check_size((int64_t)w, (int64_t)h, lim, "PNG", path, err) < 0)
        return -1;
    uint64_t raw = (png_get_rowbytes(png, pinfo) + 1) * h;
    if ((uint64_t)len * PNG_MAX_INFLATE_RATIO < raw)
        return rb_fail(err, "the file is truncated; re-copy it from the source",
                       "%s: truncated PNG data (%zu bytes cannot hold a %llux%llu image)", path,
                       len, (unsigned long long)w, (unsigned long long)h);
    return 0;
}

int image_png_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                    const char *path, rb_error *err)
{
    png_ctx c;
    png_infop pinfo = NULL;
    png_structp png = png_ctx_create(&c, buf, len, lim, &pinfo);
    if (!png)
        return rb_fail(err, NULL, "%s: out of memory (libpng)", path);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &pinfo, NULL);
        return png_ctx_fail(&c, path, err);
    }
    png_read_info(png, pinfo);
    fill_info(png, pinfo, info);
    int rc = check_header(png, pinfo, len, lim, path, err);
    png_destroy_read_struct(&png, &pinfo, NULL);
    return rc;
}

/* One decoded row (nch = 1 or 3 samples per pixel, 8 or 16 bits, big-endian) to the
 * requested channels. */
static void convert_row(uint8_t *dst, const uint8_t *src, int w, int nch, int bits,
                        int channels)
{
    if (bits == 16) {
        for (int x = 0; x < w; x++) {
            const uint8_t *p = src + (size_t)x * nch * 2;
            uint8_t v0 = image_u16_to_u8((uint32_t)p[0] << 8 | p[1]);
            if (nch == 1) {
                if (channels == 1) {
                    dst[x] = v0;
                } else {
                    dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = v0;
                }
            } else {
                uint8_t v1 = image_u16_to_u8((uint32_t)p[2] << 8 | p[3]);
                uint8_t v2 = image_u16_to_u8((uint32_t)p[4] << 8 | p[5]);
                if (channels == 1) {
                    dst[x] = image_luma(v0, v1, v2);
                } else {
                    dst[3 * x] = v0;
                    dst[3 * x + 1] = v1;
                    dst[3 * x + 2] = v2;
                }
            }
        }
        return;
    }
    if (nch == channels) {
        memcpy(dst, src, (size_t)w * nch);
    } else if (nch == 1) { /* gray -> RGB */
        for (int x = 0; x < w; x++)
            dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = src[x];
    } else { /* RGB -> gray */
        for (int x = 0; x < w; x++)
            dst[x] = image_luma(src[3 * x], src[3 * x + 1], src[3 * x + 2]);
    }
}

int image_png_decode(const uint8_t *buf, size_t len, const image_request *req,
                     const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                     rb_error *err)
{
    png_ctx c;
    png_infop pinfo = NULL;
    uint8_t *volatile tmp = NULL;
    png_bytep *volatile rows = NULL;
    memset(out, 0, sizeof *out);
    png_structp png = png_ctx_create(&c, buf, len, lim, &pinfo);
    if (!png)
        return rb_fail(err, NULL, "%s: out of memory (libpng)", path);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &pinfo, NULL);
        free(tmp);
        free(rows);
        image_u8_free(out);
        return png_ctx_fail(&c, path, err);
    }
    png_read_info(png, pinfo);
    fill_info(png, pinfo, info);
    if (check_header(png, pinfo, len, lim, path, err) < 0) {
        png_destroy_read_struct(&png, &pinfo, NULL);
        return -1;
    }
    int ct = png_get_color_type(png, pinfo), depth = png_get_bit_depth(png, pinfo);
    if (ct == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (ct == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if ((ct & PNG_COLOR_MASK_ALPHA) || ct == PNG_COLOR_TYPE_PALETTE)
        png_set_strip_alpha(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, pinfo);

    int w = (int)png_get_image_width(png, pinfo), h = (int)png_get_image_height(png, pinfo);
    int nch = png_get_channels(png, pinfo), bits = png_get_bit_depth(png, pinfo);
    size_t rowbytes = png_get_rowbytes(png, pinfo);
    if ((nch != 1 && nch != 3) || (bits != 8 && bits != 16) ||
        rowbytes != (size_t)w * nch * (bits / 8)) {
        png_destroy_read_struct(&png, &pinfo, NULL);
        return rb_fail(err, NULL, "%s: unsupported PNG layout (%d channels, %d bits)", path, nch,
                       bits);
    }
    int channels = req->channels ? req->channels : nch;
    if (image_u8_alloc(out, h, w, channels, req->scratch, path, err) < 0) {
        png_destroy_read_struct(&png, &pinfo, NULL);
        return -1;
    }
    size_t ostride = (size_t)w * channels;
    int direct = bits == 8 && nch == channels;
    if (direct) {
        rows = malloc(sizeof(png_bytep) * (size_t)h);
        if (!rows)
            png_error(png, "out of memory");
        for (int y = 0; y < h; y++)
            rows[y] = out->data + (size_t)y * ostride;
        png_read_image(png, rows);
    } else if (passes > 1) { /* interlaced: whole image, then convert */
        tmp = malloc(rowbytes * (size_t)h);
        rows = malloc(sizeof(png_bytep) * (size_t)h);
        if (!tmp || !rows)
            png_error(png, "out of memory");
        for (int y = 0; y < h; y++)
            rows[y] = tmp + (size_t)y * rowbytes;
        png_read_image(png, rows);
        for (int y = 0; y < h; y++)
            convert_row(out->data + (size_t)y * ostride, rows[y], w, nch, bits, channels);
    } else { /* one row at a time */
        tmp = malloc(rowbytes);
        if (!tmp)
            png_error(png, "out of memory");
        for (int y = 0; y < h; y++) {
            png_read_row(png, tmp, NULL);
            convert_row(out->data + (size_t)y * ostride, tmp, w, nch, bits, channels);
        }
    }
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &pinfo, NULL);
    free(tmp);
    free(rows);
    return 0;
}
