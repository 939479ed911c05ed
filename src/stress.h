/* Seeded image shifts for the stress test of `radbatch evaluate --stress` (docs/evaluate.md
 * "Stress test"): the differences between hospitals and scanners a model meets after
 * deployment, each at severities 1..n (0 = the image unchanged). Pure image math on the
 * model's preprocessed uint8 input (h, w, c); the random ones (noise) are a function of
 * (seed, record index, shift, severity, pixel) only, so a shifted image is the same on any
 * rank count, thread count or run. */
#ifndef STRESS_H
#define STRESS_H

#include <stddef.h>
#include <stdint.h>

typedef enum rb_shift {
    RB_SHIFT_CONTRAST = 0, /* contrast around each channel's mean times factor f < 1 */
    RB_SHIFT_GAMMA,        /* v -> 255 (v / 255)^g, g > 1 (darker mid-tones) */
    RB_SHIFT_BLUR,         /* Gaussian blur, sigma in pixels of the model input */
    RB_SHIFT_NOISE,        /* additive Gaussian noise, sigma in gray levels */
    RB_SHIFT_RESOLUTION,   /* f x f box average down, bilinear back up */
    RB_SHIFT_ZOOM,         /* central crop keeping a share s of each side, resized back */
    RB_SHIFT_INVERT,       /* v -> 255 - v (inverted polarity) */
    RB_SHIFT_COUNT
} rb_shift;

#define RB_SHIFT_MAX_SEVERITY 3

const char *rb_shift_name(rb_shift s);     /* "contrast", "gamma", ... */
int rb_shift_severities(rb_shift s);       /* 3, or 1 for invert */
double rb_shift_parameter(rb_shift s, int severity); /* the table in docs/evaluate.md */
const char *rb_shift_parameter_name(rb_shift s);     /* "factor", "gamma", "sigma_px", ... */

/* img: (h, w, c) changed in place; tmp: scratch of rb_shift_scratch_bytes(h, w, c)
 * bytes. severity 0 leaves img unchanged; a severity beyond the
 * shift's count is taken as its highest. index: the record's global index (noise). */
size_t rb_shift_scratch_bytes(int h, int w, int c);
void rb_shift_apply(uint8_t *img, int h, int w, int c, rb_shift s, int severity, uint64_t seed, uint64_t index,
                    void *tmp);

#endif
