/* Grad-CAM heatmaps of a trained model for predict, infer and evaluate (docs/evaluate.md,
 * "Heatmaps"): the map of the explained class (the positive class of a two-class model,
 * else the decided class) over the preprocessed image, and the overlay written as PNG. */
#ifndef EXPLAIN_H
#define EXPLAIN_H

#include "gradcam.h"
#include "trained_model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct explainer {
    const trained_model *t;
    int n;
    rb_gradcam *g[TRAINED_MAX_MEMBERS];
    float *tmp; /* H x W */
} explainer;

int explainer_create(explainer *e, const trained_model *t, int threads, rb_error *err);
void explainer_free(explainer *e);
/* Class a heatmap explains for an image with probabilities probs. */
int explainer_class(const explainer *e, const float *probs);
/* The heatmap (H x W of the model input, in [0, 1]) of one preprocessed image for class
 * cls: an ensemble's is the mean of its members' maps, divided by its maximum. */
int explainer_map(explainer *e, const uint8_t *image, int cls, float *map, rb_error *err);
/* Overlay (H x W x 3 RGB) of the map on the image (H x W x C, C = 1 or 3): colour jet(m)
 * blended with weight 0.5 * m, so a pixel without evidence shows the image unchanged. */
void explain_overlay(uint8_t *rgb, const uint8_t *image, int channels, const float *map, int h, int w);
/* The overlay of an image as a PNG file, or as PNG bytes (*png malloc'd). */
int explain_write_png(explainer *e, const uint8_t *image, int cls, const char *path, rb_error *err);
int explain_encode_png(explainer *e, const uint8_t *image, int cls, uint8_t **png, size_t *len,
                       rb_error *err);

#endif
