/* JPEG decoding with libjpeg-turbo's classic libjpeg API.
 *
 * Default IDCT (JDCT_ISLOW) and fancy upsampling, so pixels equal Pillow's and djpeg's
 * defaults. DCT-domain scaling (M/8) decodes straight to near the target size. Errors go
 * through a setjmp error manager; warnings that mean damaged image data (premature end of
 * file, bad Huffman code, premature end of a data segment, ...) are turned into errors,
 * as `djpeg -strict` does, so a truncated file is never returned as a gray-filled image. */
#include "image_internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

/* A progressive file needs a few scans; thousands of tiny scans are a known way to make
 * a small file take a very long time to decode. */
#define JPEG_MAX_SCANS 500

typedef struct jpeg_ctx {
    struct jpeg_error_mgr pub; /* first: cinfo->err points here */
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    int code;       /* libjpeg message code that stopped us */
    int is_warning; /* stopped by a warning turned into an error */
    int too_many_scans;
    char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void jpeg_ctx_error_exit(j_common_ptr cinfo)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    c->code = c->pub.msg_code;
    c->pub.format_message(cinfo, c->msg);
    longjmp(c->jb, 1);
}

/* Warnings that only concern metadata; everything else means damaged image data. */
static int warning_is_benign(int code)
{
    return code == JWRN_ADOBE_XFORM || code == JWRN_JFIF_MAJOR || code == JWRN_BOGUS_ICC;
}

static void jpeg_ctx_emit_message(j_common_ptr cinfo, int level)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    if (level >= 0) /* trace messages: ignored, never printed */
        return;
    c->pub.num_warnings++;
    if (warning_is_benign(c->pub.msg_code))
        return;
    c->is_warning = 1;
    jpeg_ctx_error_exit(cinfo);
}

static void jpeg_ctx_output_message(j_common_ptr cinfo)
{
    (void)cinfo; /* never print */
}

static void jpeg_ctx_progress(j_common_ptr cinfo)
{
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    if (cinfo->is_decompressor &&
        ((j_decompress_ptr)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
        c->too_many_scans = 1;
        snprintf(c->msg, sizeof c->msg, "more than %d scans", JPEG_MAX_SCANS);
        longjmp(c->jb, 1);
    }
}

static void fill_info(const struct jpeg_decompress_struct *cinfo, image_info *info);

/* After a longjmp: the header fields read so far go to info; the message names the cause. */
static int jpeg_ctx_fail(const jpeg_ctx *c, const struct jpeg_decompress_struct *cinfo,
                         const image_limits *lim, image_info *info, const char *path,
                         rb_error *err)
{
    if (cinfo->image_width > 0 || cinfo->image_height > 0)
        fill_info(cinfo, info);
    if (c->code == JERR_IMAGE_TOO_BIG && !c->is_warning) {
        /* libjpeg's own ceiling (65500) is above ours: report it the same way */
        image_limits strict = *lim;
        if (strict.max_side > 65500)
            strict.max_side = 65500;
        if (image_check_size(cinfo->image_width, cinfo->image_height, &strict, "JPEG", path,
                             err) < 0)
            return -1;
    }
    if (c->too_many_scans)
        return rb_fail(err, "the file is damaged or hostile",
                       "%s: corrupt JPEG data (%s)", path, c->msg);
    if (c->code == JWRN_JPEG_EOF || c->code == JERR_INPUT_EOF)
        return rb_fail(err, "the file is truncated; re-copy it from the source",
                       "%s: truncated JPEG data (premature end of file)", path);
    if (c->is_warning)
        return rb_fail(err, "the file is damaged; re-copy it from the source",
                       "%s: corrupt JPEG data (%s)", path, c->msg);
    if (c->code == JERR_BAD_PRECISION || c->code == JERR_NOT_COMPILED ||
        c->code == JERR_CONVERSION_NOTIMPL || c->code == JERR_BAD_J_COLORSPACE)
        return rb_fail(err, "convert it to an 8-bit baseline or progressive JPEG",
                       "%s: unsupported JPEG (%s)", path, c->msg);
    return rb_fail(err, "the file is damaged or not a JPEG", "%s: invalid JPEG (%s)", path,
                   c->msg);
}

static void jpeg_ctx_init(jpeg_ctx *c, struct jpeg_decompress_struct *cinfo)
{
    memset(c, 0, sizeof *c);
    memset(cinfo, 0, sizeof *cinfo);
    cinfo->err = jpeg_std_error(&c->pub);
    c->pub.error_exit = jpeg_ctx_error_exit;
    c->pub.emit_message = jpeg_ctx_emit_message;
    c->pub.output_message = jpeg_ctx_output_message;
}

static void fill_info(const struct jpeg_decompress_struct *cinfo, image_info *info)
{
    info->format = IMAGE_FORMAT_JPEG;
    info->width = (int)cinfo->image_width;
    info->height = (int)cinfo->image_height;
    info->channels = cinfo->num_components;
    info->bits = cinfo->data_precision;
}

/* After jpeg_read_header: sizes against the limits, and a file too small to hold its
 * declared size (Huffman coding spends at least one bit per 8x8 block of every component,
 * so fewer bytes than blocks/8 of the first component cannot be a whole image). */
static int check_header(const struct jpeg_decompress_struct *cinfo, size_t len,
                        const image_limits *lim, const char *path, rb_error *err)
{
    if (image_check_size(cinfo->image_width, cinfo->image_height, lim, "JPEG", path, err) < 0)
        return -1;
    if (cinfo->data_precision != 8)
        return rb_fail(err, "convert it to an 8-bit JPEG",
                       "%s: unsupported JPEG (%d-bit samples)", path, cinfo->data_precision);
    if (!cinfo->arith_code && cinfo->num_components > 0) {
        const jpeg_component_info *c0 = &cinfo->comp_info[0];
        uint64_t blocks = (uint64_t)c0->width_in_blocks * (uint64_t)c0->height_in_blocks;
        if ((uint64_t)len * 8 < blocks)
            return rb_fail(err, "the file is truncated; re-copy it from the source",
                           "%s: truncated JPEG data (%zu bytes cannot hold a %ux%u image)",
                           path, len, cinfo->image_width, cinfo->image_height);
    }
    return 0;
}

int image_jpeg_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                     const char *path, rb_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_ctx ctx;
    jpeg_ctx_init(&ctx, &cinfo);
    if (setjmp(ctx.jb)) {
        int rc = jpeg_ctx_fail(&ctx, &cinfo, lim, info, path, err);
        jpeg_destroy_decompress(&cinfo);
        return rc;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    fill_info(&cinfo, info);
    int rc = check_header(&cinfo, len, lim, path, err);
    jpeg_destroy_decompress(&cinfo);
    return rc;
}

/* Smallest M in {1, 2, 4, 8} with ceil(w*M/8) >= min_w and ceil(h*M/8) >= min_h.
 * Only these scales: libjpeg-turbo has SIMD inverse DCTs for them (1/8 is DC only), while
 * 3/8, 5/8, 6/8 and 7/8 run plain C IDCTs of odd sizes (and 12x12 for 4:2:0 chroma) and are
 * slower than decoding at full size (224x224 X-rays, one core: 1/2 ~6500/s, 8/8 ~3400/s,
 * 6/8 ~2800/s, 7/8 ~2000/s). */
static int pick_scale(int w, int h, int min_w, int min_h)
{
    if (min_w <= 0 && min_h <= 0)
        return 8;
    for (int m = 1; m < 8; m *= 2) {
        int64_t sw = ((int64_t)w * m + 7) / 8, sh = ((int64_t)h * m + 7) / 8;
        if (sw >= min_w && sh >= min_h)
            return m;
    }
    return 8;
}

static inline uint8_t muldiv255(uint32_t a, uint32_t b)
{
    uint32_t t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

/* One row of CMYK (as stored; Adobe files store inverted values) to RGB or gray, with
 * Pillow's arithmetic: R = (255-K) - (C*(255-K))/255, rounded. */
static void cmyk_row(uint8_t *dst, const uint8_t *src, int w, int channels, int inverted)
{
    for (int x = 0; x < w; x++) {
        uint32_t c = src[4 * x], m = src[4 * x + 1], y = src[4 * x + 2], k = src[4 * x + 3];
        if (inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        uint32_t nk = 255 - k;
        uint8_t r = (uint8_t)(nk - muldiv255(c, nk));
        uint8_t g = (uint8_t)(nk - muldiv255(m, nk));
        uint8_t b = (uint8_t)(nk - muldiv255(y, nk));
        if (channels == 3) {
            dst[3 * x] = r;
            dst[3 * x + 1] = g;
            dst[3 * x + 2] = b;
        } else {
            dst[x] = image_luma(r, g, b);
        }
    }
}

int image_jpeg_decode(const uint8_t *buf, size_t len, const image_request *req,
                      const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                      rb_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_ctx ctx;
    uint8_t *volatile rowbuf = NULL;
    memset(out, 0, sizeof *out);
    jpeg_ctx_init(&ctx, &cinfo);
    if (setjmp(ctx.jb)) {
        int rc = jpeg_ctx_fail(&ctx, &cinfo, lim, info, path, err);
        jpeg_destroy_decompress(&cinfo);
        free(rowbuf);
        image_u8_free(out);
        return rc;
    }
    jpeg_create_decompress(&cinfo);
    ctx.progress.progress_monitor = jpeg_ctx_progress;
    cinfo.progress = &ctx.progress;
    cinfo.mem->max_memory_to_use = 1L << 30;
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    fill_info(&cinfo, info);
    if (check_header(&cinfo, len, lim, path, err) < 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }

    int channels = req->channels, cmyk = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
        cinfo.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        if (channels == 0)
            channels = 3;
        cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        if (channels == 0)
            channels = 3;
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        jpeg_destroy_decompress(&cinfo);
        return rb_fail(err, "convert it to a gray, RGB or CMYK JPEG",
                       "%s: unsupported JPEG color space (%d components)", path,
                       cinfo.num_components);
    }
    int decoded_gray = cinfo.out_color_space == JCS_GRAYSCALE;
    if (channels == 0) /* gray source, native channels */
        channels = 1;

    int min_h = req->min_height, min_w = req->min_width;
    if (req->fit_height > 0 && req->fit_width > 0)
        image_resize_min_source((int)cinfo.image_height, (int)cinfo.image_width,
                                req->fit_height, req->fit_width, req->fit_mode, &min_h, &min_w);
    cinfo.scale_num = (unsigned)pick_scale((int)cinfo.image_width, (int)cinfo.image_height,
                                           min_w, min_h);
    cinfo.scale_denom = 8;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);

    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    int expect = cmyk ? 4 : decoded_gray ? 1 : 3;
    if (cinfo.output_components != expect) {
        jpeg_destroy_decompress(&cinfo);
        return rb_fail(err, NULL, "%s: unsupported JPEG (decoder gave %d components)", path,
                       cinfo.output_components);
    }
    if (image_u8_alloc(out, h, w, channels, req->scratch, path, err) < 0) {
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    if (cmyk) {
        rowbuf = malloc((size_t)w * 4);
        if (!rowbuf) {
            jpeg_destroy_decompress(&cinfo);
            image_u8_free(out);
            return rb_fail(err, NULL, "%s: out of memory", path);
        }
        int inverted = cinfo.saw_Adobe_marker;
        while (cinfo.output_scanline < cinfo.output_height) {
            JSAMPROW row = rowbuf;
            int y = (int)cinfo.output_scanline;
            jpeg_read_scanlines(&cinfo, &row, 1);
            cmyk_row(out->data + (size_t)y * w * channels, rowbuf, w, channels, inverted);
        }
    } else {
        /* gray decoded for 3 channels: rows packed at the start, replicated at the end */
        size_t stride = (size_t)w * (size_t)expect;
        JSAMPROW rows[16];
        while (cinfo.output_scanline < cinfo.output_height) {
            int y = (int)cinfo.output_scanline, n = 0;
            while (n < 16 && y + n < h) {
                rows[n] = out->data + (size_t)(y + n) * stride;
                n++;
            }
            jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)n);
        }
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(rowbuf);
    if (decoded_gray && channels == 3)
        image_gray_to_rgb_inplace(out->data, (size_t)w * (size_t)h);
    return 0;
}
