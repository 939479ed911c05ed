/* Grad-CAM heatmaps of a trained model (explain.h): one rb_gradcam per ensemble member, one
 * image at a time (heatmaps are made for a few images: predict's, infer's most probable,
 * evaluate's galleries). */
#include "explain.h"
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int explainer_create(explainer *e, const trained_model *t, int threads, rb_error *err)
{
    memset(e, 0, sizeof *e);
    e->t = t;
    e->tmp = malloc((size_t)t->height * t->width * sizeof(float));
    if (!e->tmp)
        return rb_fail(err, NULL, "out of memory");
    for (int k = 0; k < t->nmembers; k++) {
        e->g[k] = rb_gradcam_create(t->m[k], -1, 1, err);
        if (!e->g[k] || (threads > 1 && rb_gradcam_set_threads(e->g[k], threads, err) < 0)) {
            rb_error_prefix(err, "%s: ", t->path[k]);
            explainer_free(e);
            return -1;
        }
        e->n++;
    }
    return 0;
}

void explainer_free(explainer *e)
{
    for (int k = 0; k < e->n; k++)
        rb_gradcam_free(e->g[k]);
    free(e->tmp);
    memset(e, 0, sizeof *e);
}

int explainer_class(const explainer *e, const float *probs)
{
    const trained_model *t = e->t;
    if (t->nclasses == 2)
        return t->positive;
    int best = 0;
    for (int c = 1; c < t->nclasses; c++)
        best = probs[c] > probs[best] ? c : best;
    return best;
}

int explainer_map(explainer *e, const uint8_t *image, int cls, float *map, rb_error *err)
{
    const trained_model *t = e->t;
    const int64_t HW = (int64_t)t->height * t->width;
    for (int k = 0; k < e->n; k++) {
        const rb_model *m = t->m[k];
        int oc = m->nodes[m->output].c;
        /* one sigmoid unit: the positive class's score is its pre-sigmoid value */
        int unit = oc == 1 ? 0 : cls;
        float *dst = k ? e->tmp : map;
        if (rb_gradcam_run(e->g[k], image, RB_INPUT_U8, 1, unit, dst, NULL, NULL, err) < 0)
            return rb_error_prefix(err, "%s: ", t->path[k]);
        if (k)
            for (int64_t p = 0; p < HW; p++)
                map[p] += dst[p];
    }
    if (e->n > 1) {
        float mx = 0.0f;
        for (int64_t p = 0; p < HW; p++)
            mx = map[p] > mx ? map[p] : mx;
        for (int64_t p = 0; p < HW; p++)
            map[p] = mx > 0.0f ? map[p] / mx : 0.0f;
    }
    return 0;
}

/* jet colour map: blue (0) - cyan - yellow - red (1) */
static float jet(float m, float centre)
{
    float v = 1.5f - fabsf(4.0f * m - centre);
    return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
}

void explain_overlay(uint8_t *rgb, const uint8_t *image, int channels, const float *map, int h, int w)
{
    for (int64_t p = 0; p < (int64_t)h * w; p++) {
        float m = map[p] < 0.0f ? 0.0f : map[p] > 1.0f ? 1.0f : map[p];
        float col[3] = {jet(m, 3.0f), jet(m, 2.0f), jet(m, 1.0f)};
        float a = 0.5f * m;
        for (int c = 0; c < 3; c++) {
            float g = (float)image[p * channels + (channels == 3 ? c : 0)];
            float v = (1.0f - a) * g + a * 255.0f * col[c];
            rgb[p * 3 + c] = (uint8_t)lrintf(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
        }
    }
}

/* the overlay of one image in a malloc'd H x W x 3 buffer */
static uint8_t *overlay_of(explainer *e, const uint8_t *image, int cls, rb_error *err)
{
    const trained_model *t = e->t;
    const int64_t HW = (int64_t)t->height * t->width;
    float *map = malloc((size_t)HW * sizeof(float));
    uint8_t *rgb = malloc((size_t)HW * 3);
    if (!map || !rgb) {
        free(map);
        free(rgb);
        rb_fail(err, NULL, "out of memory");
        return NULL;
    }
    if (explainer_map(e, image, cls, map, err) < 0) {
        free(map);
        free(rgb);
        return NULL;
    }
    explain_overlay(rgb, image, t->channels, map, t->height, t->width);
    free(map);
    return rgb;
}

int explain_write_png(explainer *e, const uint8_t *image, int cls, const char *path, rb_error *err)
{
    uint8_t *rgb = overlay_of(e, image, cls, err);
    if (!rgb)
        return -1;
    int rc = image_write_png(path, rgb, e->t->height, e->t->width, 3, err);
    free(rgb);
    return rc;
}

int explain_encode_png(explainer *e, const uint8_t *image, int cls, uint8_t **png, size_t *len,
                       rb_error *err)
{
    uint8_t *rgb = overlay_of(e, image, cls, err);
    if (!rgb)
        return -1;
    int rc = image_encode_png(rgb, e->t->height, e->t->width, 3, png, len, err);
    free(rgb);
    return rc;
}
