/* The layer kernels of the radbatch engine: plain functions on float32 NHWC arrays.
 *
 * Conventions (docs/engine.md, "The layer files"):
 *  - Every forward writes its output (=); every backward ACCUMULATES (+=) into din, dw, db,
 *    so a tensor feeding two consumers gets both contributions. Any of din/dw/db may be NULL
 *    when not needed (frozen layer: no dw/db; first layer: no din).
 *  - Shapes come in small structs filled once at model build time by *_shape_init, which
 *    validates them; kernels never allocate. Scratch needs are given by *_scratch_floats.
 *  - Weights use Keras layouts: Conv2D kernel HWIO [kh,kw,ci,co]; DepthwiseConv2D
 *    [kh,kw,c,1]; Dense [in,out]. So Keras import is a copy.
 *  - Threads: kernels that call cblas_sgemm use OpenBLAS threads; loop kernels are
 *    single-threaded and written for the compiler to vectorize.
 *  - Per-image results: whatever an output row of one image is (forward, and din), it is
 *    computed by GEMMs over that image's rows alone, cut into blocks that depend on the
 *    image's shape only (rb_image_block_rows). OpenBLAS rounds a row differently at
 *    different positions of a product (its edge micro-kernels sum in another order, e.g.
 *    the Haswell and Zen kernels), so a product spanning several images would make an
 *    image's result depend on its batch companions. Sums over the batch (dw, db) are the
 *    only batch-dependent results.
 * Each layer lives in its own file src/layers/<layer>.c. */
#ifndef LAYERS_H
#define LAYERS_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PADDING_VALID = 0, PADDING_SAME = 1 } padding_mode;

/* Rows per block when `rows_img` GEMM rows of one image are processed in blocks of about
 * `target` rows: ceil(rows_img / target) blocks of equal size (the last may be shorter),
 * a function of the image's shape only, never of the batch. */
static inline int64_t rb_image_block_rows(int64_t rows_img, int64_t target)
{
    if (target < 1)
        target = 1;
    if (rows_img <= target)
        return rows_img;
    int64_t nblocks = (rows_img + target - 1) / target;
    return (rows_img + nblocks - 1) / nblocks;
}

/* ---- Conv2D (conv2d.c) and DepthwiseConv2D (depthwise.c) ----------------------------- */
typedef struct conv2d_shape {
    int n, h, w, cin;               /* input */
    int kh, kw, sh, sw;             /* kernel, strides */
    int pad_top, pad_left;          /* Keras 'same': total = max((ceil(h/s)-1)*s + k - h, 0),
                                       top = total/2, bottom = total - top (extra at bottom/right) */
    int pad_bottom, pad_right;
    int ho, wo, cout;               /* output; depthwise: cout == cin */
} conv2d_shape;

/* Fill s; returns 0, or -1 when the output would be empty. */
int conv2d_shape_init(conv2d_shape *s, int n, int h, int w, int cin, int kh, int kw, int sh,
                      int sw, padding_mode pad, int cout);
size_t conv2d_scratch_floats(const conv2d_shape *s); /* im2col or Winograd; 0 for 1x1 stride 1 */

/* out: (n,ho,wo,cout)  in: (n,h,w,cin)  w: (kh,kw,cin,cout)  b: (cout) or NULL */
void conv2d_forward(float *out, const float *in, const float *w, const float *b,
                    const conv2d_shape *s, float *scratch);
/* din: (n,h,w,cin) += ; dw: (kh,kw,cin,cout) += ; db: (cout) += ; dout: (n,ho,wo,cout) */
void conv2d_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                     const float *w, const conv2d_shape *s, float *scratch);

/* depthwise, multiplier 1: out: (n,ho,wo,c)  w: (kh,kw,c,1)  b: (c) or NULL */
void depthwise_forward(float *out, const float *in, const float *w, const float *b,
                       const conv2d_shape *s);
void depthwise_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                        const float *w, const conv2d_shape *s);

/* ---- ZeroPadding2D (zeropad.c) ------------------------------------------------------- */
typedef struct pad_shape {
    int n, h, w, c;
    int top, bottom, left, right;
    int ho, wo;
} pad_shape;
void pad_shape_init(pad_shape *s, int n, int h, int w, int c, int top, int bottom, int left,
                    int right);
void zeropad_forward(float *out, const float *in, const pad_shape *s);
void zeropad_backward(float *din, const float *dout, const pad_shape *s);

/* ---- BatchNormalization (batchnorm.c); rows m = n*h*w, channels c -------------------- */
/* Inference: y = (x - mean) / sqrt(var + eps) * gamma + beta (eps added before the sqrt). */
void batchnorm_forward_infer(float *out, const float *in, const float *gamma, const float *beta,
                             const float *mean, const float *var, float eps, int64_t m, int c);
/* Backward of the inference form (frozen statistics, e.g. fine-tuning with training=False):
 * din += dout*gamma*invstd; dgamma += sum dout*xhat; dbeta += sum dout. */
void batchnorm_backward_infer(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *gamma, const float *mean,
                              const float *var, float eps, int64_t m, int c);
/* Training mode is split so statistics can be summed across ranks (sync_bn) in between:
 * 1. batchnorm_stats: sum[c] = sum_x, sumsq[c] = sum_x^2 (double) over this rank's rows.
 * 2. (optional allreduce of sum/sumsq/count)
 * 3. batchnorm_forward_train: mean = sum/count, var = sumsq/count - mean^2 (biased),
 *    out = xhat*gamma + beta with xhat = (x-mean)*invstd, invstd = 1/sqrt(var+eps);
 *    saves mean/invstd (c floats each) for backward.
 * 4. batchnorm_update_moving: moving = moving*momentum + batch*(1-momentum) (Keras), using
 *    the variance Keras uses (see batchnorm.c for which correction and why).
 * Backward likewise: batchnorm_backward_sums gives per-channel sum(dout) and
 * sum(dout*xhat) (allreduce them for sync_bn), then batchnorm_backward_train applies
 * din += gamma*invstd*(dout - sum_dy/count - xhat*sum_dy_xhat/count), and adds the sums to
 * dgamma/dbeta. */
void batchnorm_stats(double *sum, double *sumsq, const float *in, int64_t m, int c);
void batchnorm_forward_train(float *out, float *save_mean, float *save_invstd, const float *in,
                             const float *gamma, const float *beta, const double *sum,
                             const double *sumsq, double count, float eps, int64_t m, int c);
void batchnorm_update_moving(float *moving_mean, float *moving_var, const double *sum,
                             const double *sumsq, double count, float momentum, int c);
void batchnorm_backward_sums(double *sum_dy, double *sum_dy_xhat, const float *dout,
                             const float *in, const float *save_mean, const float *save_invstd,
                             int64_t m, int c);
void batchnorm_backward_train(float *din, float *dgamma, float *dbeta, const float *dout,
                              const float *in, const float *gamma, const float *save_mean,
                              const float *save_invstd, const double *sum_dy,
                              const double *sum_dy_xhat, double count, int64_t m, int c);

/* ---- activations (activation.c); n elements, in-place allowed (out == in) ------------ */
void relu_forward(float *out, const float *in, int64_t n);
void relu_backward(float *din, const float *dout, const float *out, int64_t n); /* uses output */
void relu6_forward(float *out, const float *in, int64_t n);
void relu6_backward(float *din, const float *dout, const float *out, int64_t n);
/* softmax over the last axis of (rows, k); sigmoid element-wise */
void softmax_forward(float *out, const float *in, int64_t rows, int k);
void softmax_backward(float *din, const float *dout, const float *out, int64_t rows, int k);
void sigmoid_forward(float *out, const float *in, int64_t n);
void sigmoid_backward(float *din, const float *dout, const float *out, int64_t n);

/* ---- Add / Concatenate (merge.c) ----------------------------------------------------- */
void add_forward(float *out, const float *a, const float *b, int64_t n);
/* backward of add: da += dout, db += dout (call axpy-like helper for each input) */
void add_backward(float *da, float *db, const float *dout, int64_t n);
/* concat along channels: inputs k tensors of (rows, c_i) -> (rows, sum c_i) */
void concat_forward(float *out, const float *const *in, const int *c, int k, int64_t rows);
void concat_backward(float *const *din, const float *dout, const int *c, int k, int64_t rows);

/* ---- pooling (pool.c) ---------------------------------------------------------------- */
/* Max/Average pooling with conv2d_shape geometry (kh,kw,sh,sw,padding; cout == cin).
 * Keras AveragePooling2D 'same' divides by the count of valid (unpadded) cells. */
void maxpool_forward(float *out, int32_t *argmax, const float *in, const conv2d_shape *s);
void maxpool_backward(float *din, const float *dout, const int32_t *argmax, const conv2d_shape *s);
void avgpool_forward(float *out, const float *in, const conv2d_shape *s);
void avgpool_backward(float *din, const float *dout, const conv2d_shape *s);
/* GlobalAveragePooling2D: (n,h,w,c) -> (n,c) */
void gap_forward(float *out, const float *in, int n, int hw, int c);
void gap_backward(float *din, const float *dout, int n, int hw, int c);

/* ---- Dense (dense.c) ----------------------------------------------------------------- */
/* out: (n,out) = in (n,in) @ w (in,out) + b */
void dense_forward(float *out, const float *in, const float *w, const float *b, int n, int nin,
                   int nout);
void dense_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                    const float *w, int n, int nin, int nout);

/* ---- Dropout (dropout.c) ------------------------------------------------------------- */
/* Inverted dropout (Keras): kept values scaled by 1/(1-rate). The mask is a pure function
 * of (seed, key, global sample index, element index) so it does not depend on ranks:
 * sample_base is the global index of row 0 of this call. mask: (n*per_sample) bytes. */
void dropout_forward(float *out, uint8_t *mask, const float *in, float rate, int n,
                     int64_t per_sample, uint64_t seed, uint64_t key, int64_t sample_base);
void dropout_backward(float *din, const float *dout, const uint8_t *mask, float rate,
                      int64_t n);

/* ---- input rescaling (rescale.c) ----------------------------------------------------- */
/* uint8 HWC pixels -> float: out = pixel*scale + offset, in float32 exactly as Keras:
 * MobileNetV2 'tf' mode computes (float)p / 127.5f - 1.0f (divide, then subtract), which
 * differs in the last bit from multiplying; rescale_mode selects the exact formula. */
typedef enum {
    RESCALE_MINUS1_1 = 0, /* p/127.5 - 1   (mobilenet_v2.preprocess_input) */
    RESCALE_0_1,          /* p/255         (Rescaling(1./255)) */
    RESCALE_NONE,         /* p             */
    RESCALE_MINMAX,       /* (p - min)/(max - min) per image, to [0,1] */
} rescale_mode;
void rescale_forward(float *out, const uint8_t *in, int64_t n_images, int64_t per_image,
                     rescale_mode mode);

/* ---- Flatten is a no-op on contiguous NHWC memory (the model aliases the buffer). ---- */

#endif
