/* DICOM: stored values to 8-bit pixels (step 3 of io/dicom.h) and the probe/decode entries
 * the image dispatch (io/image.c) calls. Gray images go through one table of 2^BitsStored
 * entries (stored value -> Modality LUT -> VOI -> MONOCHROME1 inversion -> 8 bits), so the
 * per-pixel cost is one lookup whatever the transforms. See docs/dicom.md. */
#include "dicom.h"
#include "image_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void dicom_pixels_free(dicom_pixels *p)
{
    if (!p)
        return;
    free(p->data);
    free(p->voi_lut);
    p->data = NULL;
    p->voi_lut = NULL;
}

const char *dicom_voi_name(dicom_voi v)
{
    switch (v) {
    case DICOM_VOI_WINDOW: return "window from the file";
    case DICOM_VOI_LUT: return "VOI LUT from the file";
    case DICOM_VOI_PERCENTILE: return "percentile window";
    case DICOM_VOI_AS_STORED: return "as stored";
    default: return "colour";
    }
}

static uint8_t round_u8(double y)
{
    if (!(y > 0)) /* also NaN */
        return 0;
    if (y >= 255)
        return 255;
    return (uint8_t)(y + 0.5);
}

/* PS3.3 C.11.2.1.2: window of the file to 0..255 (before rounding) */
static double window_apply(double x, double c, double w, const char *fn)
{
    if (strcmp(fn, "SIGMOID") == 0)
        return 255.0 / (1.0 + exp(-4.0 * (x - c) / w));
    if (strcmp(fn, "LINEAR_EXACT") == 0) {
        if (x <= c - w / 2)
            return 0;
        if (x > c + w / 2)
            return 255;
        return ((x - c) / w + 0.5) * 255.0;
    }
    double cc = c - 0.5, ww = w - 1; /* LINEAR */
    if (x <= cc - ww / 2)
        return 0;
    if (x > cc + ww / 2)
        return 255;
    return ((x - cc) / ww + 0.5) * 255.0;
}

/* stored sample i of a gray frame as a table index 0..2^bits_stored-1, ordered by value */
static inline uint32_t gray_index(const dicom_pixels *px, size_t i, uint32_t mask, uint32_t flip)
{
    uint32_t u = px->bits_allocated == 8 ? px->data[i] : ((const uint16_t *)px->data)[i];
    return ((u & mask) ^ flip);
}

static int gray_to_u8(const dicom_pixels *px, uint8_t *out, dicom_voi *voi, double *lo_out,
                      double *hi_out, const char *path, rb_error *err)
{
    int bs = px->bits_stored;
    uint32_t n = 1u << bs, mask = n - 1;
    /* signed: flipping the sign bit orders two's complement values as unsigned indices */
    uint32_t flip = px->pixel_representation ? n >> 1 : 0;
    int64_t offset = px->pixel_representation ? (int64_t)(n >> 1) : 0; /* value = idx - offset */
    size_t npix = (size_t)px->rows * px->columns;
    uint8_t *lut = malloc(n);
    if (!lut)
        return rb_fail(err, NULL, "%s: out of memory", path);
    double lo = 0, hi = 0;
    if (px->has_window) {
        *voi = DICOM_VOI_WINDOW;
        for (uint32_t k = 0; k < n; k++) {
            double m = (double)((int64_t)k - offset) * px->slope + px->intercept;
            lut[k] = round_u8(window_apply(m, px->window_center, px->window_width, px->voi_function));
        }
        lo = px->window_center - px->window_width / 2;
        hi = px->window_center + px->window_width / 2;
    } else if (px->has_voi_lut) {
        *voi = DICOM_VOI_LUT;
        double scale = 255.0 / (double)((1u << px->voi_lut_bits) - 1);
        for (uint32_t k = 0; k < n; k++) {
            double m = (double)((int64_t)k - offset) * px->slope + px->intercept;
            double j = floor(m + 0.5) - (double)px->voi_lut_first;
            int64_t idx = j < 0 ? 0 : j > px->voi_lut_n - 1 ? px->voi_lut_n - 1 : (int64_t)j;
            lut[k] = round_u8(px->voi_lut[idx] * scale);
        }
    } else if (bs == 8 && px->bits_allocated == 8 && !px->pixel_representation &&
               px->slope == 1 && px->intercept == 0) {
        *voi = DICOM_VOI_AS_STORED;
        for (uint32_t k = 0; k < n; k++)
            lut[k] = (uint8_t)k;
        lo = 0;
        hi = 255;
    } else {
        *voi = DICOM_VOI_PERCENTILE;
        uint32_t *hist = calloc(n, sizeof *hist);
        if (!hist) {
            free(lut);
            return rb_fail(err, NULL, "%s: out of memory", path);
        }
        for (size_t i = 0; i < npix; i++)
            hist[gray_index(px, i, mask, flip)]++;
        /* nearest rank in the sorted values s[0..N-1]: s[floor(PLO*(N-1))], s[ceil(PHI*(N-1))] */
        size_t rlo = (size_t)floor(DICOM_PERCENTILE_LO * (double)(npix - 1));
        size_t rhi = (size_t)ceil(DICOM_PERCENTILE_HI * (double)(npix - 1));
        size_t cum = 0;
        int64_t klo = -1, khi = -1;
        for (uint32_t k = 0; k < n && khi < 0; k++) {
            cum += hist[k];
            if (klo < 0 && cum > rlo)
                klo = k;
            if (cum > rhi)
                khi = k;
        }
        free(hist);
        lo = (double)(klo - offset) * px->slope + px->intercept;
        hi = (double)(khi - offset) * px->slope + px->intercept;
        if (lo > hi) { /* negative slope */
            double t = lo;
            lo = hi;
            hi = t;
        }
        for (uint32_t k = 0; k < n; k++) {
            double m = (double)((int64_t)k - offset) * px->slope + px->intercept;
            lut[k] = hi > lo ? round_u8((m - lo) / (hi - lo) * 255.0) : 0;
        }
    }
    if (strcmp(px->photometric, "MONOCHROME1") == 0)
        for (uint32_t k = 0; k < n; k++)
            lut[k] = (uint8_t)(255 - lut[k]);
    for (size_t i = 0; i < npix; i++)
        out[i] = lut[gray_index(px, i, mask, flip)];
    free(lut);
    if (lo_out)
        *lo_out = lo;
    if (hi_out)
        *hi_out = hi;
    return 0;
}

/* colour frame -> interleaved 8-bit RGB */
static int colour_to_rgb(const dicom_pixels *px, uint8_t *rgb, const char *path, rb_error *err)
{
    /* YBR_FULL_422 of a JPEG: GDCM's JPEG decoder upsamples the chroma but keeps YBR */
    const char *ts = px->transfer_syntax;
    int native = strcmp(ts, "1.2.840.10008.1.2") == 0 || strcmp(ts, "1.2.840.10008.1.2.1") == 0 ||
                 strcmp(ts, "1.2.840.10008.1.2.2") == 0;
    int ybr = strcmp(px->photometric, "YBR_FULL") == 0 ||
              (!native && strcmp(px->photometric, "YBR_FULL_422") == 0);
    if (!ybr && strcmp(px->photometric, "RGB") != 0)
        return rb_fail(err, "re-export the image as RGB or MONOCHROME2",
                       "%s: unsupported DICOM PhotometricInterpretation (0028,0004) %s for %d "
                       "samples (transfer syntax %s)",
                       path, px->photometric, px->samples, px->transfer_syntax);
    size_t npix = (size_t)px->rows * px->columns;
    uint32_t max = (1u << px->bits_stored) - 1;
    for (size_t i = 0; i < npix; i++) {
        double s[3];
        for (int c = 0; c < 3; c++) {
            size_t j = px->planar ? (size_t)c * npix + i : 3 * i + (size_t)c;
            uint32_t u = px->bits_allocated == 8 ? px->data[j] : ((const uint16_t *)px->data)[j];
            u &= max;
            s[c] = px->bits_stored == 8 ? (double)u : (double)((u * 255u + max / 2) / max);
        }
        if (ybr) { /* PS3.3 C.7.6.3.1.2, full range BT.601 */
            double y = s[0], cb = s[1] - 128, cr = s[2] - 128;
            s[0] = y + 1.402 * cr;
            s[1] = y - 0.344136 * cb - 0.714136 * cr;
            s[2] = y + 1.772 * cb;
        }
        for (int c = 0; c < 3; c++)
            rgb[3 * i + (size_t)c] = round_u8(s[c]);
    }
    return 0;
}

int dicom_to_u8(const dicom_pixels *px, int channels, image_u8 *out, dicom_voi *voi, double *lo,
                double *hi, const char *path, rb_error *err)
{
    dicom_voi v = DICOM_VOI_COLOUR;
    memset(out, 0, sizeof *out);
    int native = px->samples == 3 ? 3 : 1;
    if (channels == 0)
        channels = native;
    if (image_u8_alloc(out, px->rows, px->columns, channels > native ? channels : native, NULL,
                       path, err) < 0)
        return -1;
    size_t npix = (size_t)px->rows * px->columns;
    int rc;
    if (native == 1) {
        if (strcmp(px->photometric, "MONOCHROME1") != 0 &&
            strcmp(px->photometric, "MONOCHROME2") != 0)
            rc = rb_fail(err, "re-export the image as MONOCHROME2",
                         "%s: unsupported DICOM PhotometricInterpretation (0028,0004) %s for one "
                         "sample per pixel",
                         path, px->photometric);
        else
            rc = gray_to_u8(px, out->data, &v, lo, hi, path, err);
        if (rc == 0 && channels == 3)
            image_gray_to_rgb_inplace(out->data, npix);
    } else {
        rc = colour_to_rgb(px, out->data, path, err);
        if (rc == 0 && channels == 1)
            for (size_t i = 0; i < npix; i++)
                out->data[i] = image_luma(out->data[3 * i], out->data[3 * i + 1],
                                          out->data[3 * i + 2]);
    }
    if (rc < 0) {
        image_u8_free(out);
        return -1;
    }
    out->channels = channels;
    if (voi)
        *voi = v;
    return 0;
}

static void fill_info(const dicom_header *h, image_info *info)
{
    info->format = IMAGE_FORMAT_DICOM;
    info->width = h->columns > 0 && h->columns <= INT32_MAX ? (int)h->columns : 0;
    info->height = h->rows > 0 && h->rows <= INT32_MAX ? (int)h->rows : 0;
    info->channels = h->samples == 3 ? 3 : 1;
    info->bits = h->bits_stored > 0 ? (int)h->bits_stored : 0;
}

int image_dicom_probe(const uint8_t *buf, size_t len, const image_limits *lim, image_info *info,
                      const char *path, rb_error *err)
{
    dicom_header h;
    int rc = dicom_scan(buf, len, lim, &h, path, err);
    fill_info(&h, info);
    return rc;
}

int image_dicom_decode(const uint8_t *buf, size_t len, const image_request *req,
                       const image_limits *lim, image_u8 *out, image_info *info, const char *path,
                       rb_error *err)
{
    dicom_header h;
    memset(out, 0, sizeof *out);
    int rc = dicom_scan(buf, len, lim, &h, path, err);
    fill_info(&h, info);
    if (rc < 0)
        return -1;
    dicom_pixels px;
    if (dicom_gdcm_read(buf, len, &h, &px, path, err) < 0)
        return -1;
    rc = dicom_to_u8(&px, req->channels, out, NULL, NULL, NULL, path, err);
    dicom_pixels_free(&px);
    return rc;
}
