/* Input rescaling: uint8 pixels to the float32 the network expects, bit for bit what the
 * Keras pipelines of the seeds compute:
 *  - RESCALE_MINUS1_1: mobilenet_v2.preprocess_input ('tf' mode): x = float32(p);
 *    x /= 127.5; x -= 1.0 (a float32 division then a subtraction; multiplying by 1/127.5
 *    differs in the last bit for some p).
 *  - RESCALE_0_1: Rescaling(1./255) and ImageDataGenerator(rescale=1./255) both compute
 *    x * float32(1/255) (+ 0.0): a multiplication by the rounded reciprocal, which is NOT
 *    p/255 for every p (the MobileNetV2 fixture's nsfwjs_x255 set divides instead; the
 *    difference is 1 ulp, far inside its tolerance).
 *  - RESCALE_NONE: float32(p).
 *  - RESCALE_MINMAX: per image, (p - min)/(max - min) in float32 (0 for a constant image).
 * Nothing here may be contracted to FMA or reassociated, hence no clones and the
 * fp-contract attribute. */
#include "layers.h"
#include "layers_internal.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* out: (n_images, per_image) float  in: (n_images, per_image) uint8 */
RB_EXACT void
rescale_forward(float *out, const uint8_t *in, int64_t n_images, int64_t per_image,
                rescale_mode mode)
{
    const int64_t total = n_images * per_image;
    switch (mode) {
    case RESCALE_MINUS1_1: {
        float lut[256];
        for (int p = 0; p < 256; p++)
            lut[p] = (float)p / 127.5f - 1.0f;
        for (int64_t i = 0; i < total; i++)
            out[i] = lut[in[i]];
        break;
    }
    case RESCALE_0_1: {
        const float scale = (float)(1.0 / 255.0);
        for (int64_t i = 0; i < total; i++)
            out[i] = (float)in[i] * scale + 0.0f;
        break;
    }
    case RESCALE_NONE:
        for (int64_t i = 0; i < total; i++)
            out[i] = (float)in[i];
        break;
    case RESCALE_MINMAX:
        for (int64_t img = 0; img < n_images; img++) {
            const uint8_t *p = in + img * per_image;
            float *o = out + img * per_image;
            int lo = 255, hi = 0;
            for (int64_t i = 0; i < per_image; i++) {
                lo = p[i] < lo ? p[i] : lo;
                hi = p[i] > hi ? p[i] : hi;
            }
            const float range = (float)(hi - lo);
            for (int64_t i = 0; i < per_image; i++)
                o[i] = hi > lo ? (float)(p[i] - lo) / range : 0.0f;
        }
        break;
    }
}
