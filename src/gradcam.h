/* Grad-CAM (Selvaraju et al. 2017) on any model radbatch builds (docs/engine.md, "Grad-CAM").
 *
 *   rb_gradcam *g = rb_gradcam_create(m, -1, 8, &err);      // -1: the default layer
 *   rb_gradcam_run(g, pixels, RB_INPUT_U8, n, unit, maps, probs, &err);
 *
 * The explained layer A is the last layer with a 4-D output before the global pooling or
 * Flatten (the input of the first GlobalAveragePooling2D / Flatten node): the output of the
 * last convolutional block. The model is cut there into a base (nodes up to A) and a head
 * (the rest, which must read A only); both run in inference mode (BatchNorm with moving
 * statistics, no Dropout). The score is the pre-activation of output unit `unit` (the logit
 * of a softmax output, the pre-sigmoid value of a sigmoid one); the head's backward gives
 * dScore/dA without any weight gradient. Then
 *   alpha_k = mean over (h, w) of dScore/dA[h, w, k]
 *   map     = ReLU(sum_k alpha_k A[:, :, k])          (the layer's h x w grid)
 * upsampled bilinearly to the model's input size (half-pixel centres, edges clamped: what
 * tf.image.resize(method="bilinear") does), then divided by its maximum so it spans [0, 1]
 * (all zeros when the maximum is 0). No files, no MPI. */
#ifndef GRADCAM_H
#define GRADCAM_H

#include "model.h"

typedef struct rb_gradcam rb_gradcam;

/* The default explained node of m (see above), or -1 with err set when m has no 4-D layer
 * before its pooling. */
int rb_gradcam_default_layer(const rb_model *m, rb_error *err);

/* A Grad-CAM runner for m (weights copied: later changes to m are not seen) on batches of up
 * to `batch` images; layer = node index to explain, or -1 for the default. */
rb_gradcam *rb_gradcam_create(const rb_model *m, int layer, int batch, rb_error *err);
void rb_gradcam_free(rb_gradcam *g);
int rb_gradcam_set_threads(rb_gradcam *g, int threads, rb_error *err);
/* The explained node of the model it was made from, and its grid (h, w, channels). */
int rb_gradcam_layer(const rb_gradcam *g, int *h, int *w, int *c);

/* n images (n x H x W x C of the model's input, `type` as for rb_model_forward): maps gets
 * n x H x W floats in [0, 1] (H, W: the model's input size); out (optional) n x the model's
 * output size (its probabilities, as a forward gives them); score (optional) n scores. */
int rb_gradcam_run(rb_gradcam *g, const void *input, rb_input_type type, int n, int unit,
                   float *maps, float *out, float *score, rb_error *err);

/* After a run, for tests: A (n x h x w x c), dScore/dA (same layout), and the coarse map
 * ReLU(sum_k alpha_k A_k) before upsampling and normalisation (n x h x w). */
const float *rb_gradcam_activations(const rb_gradcam *g);
const float *rb_gradcam_gradients(const rb_gradcam *g);
const float *rb_gradcam_coarse(const rb_gradcam *g);

/* Bilinear resize of one single-channel map (h x w -> H x W), half-pixel centres, edges
 * clamped (tf.image.resize's bilinear). */
void rb_resize_bilinear(float *dst, int H, int W, const float *src, int h, int w);

#endif
