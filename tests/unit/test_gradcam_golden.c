/* Grad-CAM against a reference implementation: tests/data/gradcam/golden_cnn96.h5 holds, for
 * six images, what TensorFlow/Keras (tf.GradientTape) computes on the same seed-001 CNN with
 * the same weights (tests/data/gradcam/cnn96_gray.h5, a radbatch model file; made by
 * tests/data/gradcam/make_golden.py): the logits, the explained layer's activations A, the
 * gradient dScore/dA, the coarse map and the upsampled, normalised map. radbatch's must agree
 * within the bounds derived in docs/engine.md ("Grad-CAM against Keras"):
 *   logits, A, G: max |difference| <= 1e-4 x (1 + max |value|)  (float32 through 4 blocks)
 *   map:          max |difference| <= 2 e kappa + 1e-6, e = 1e-4 the relative bound above and
 *                 kappa = max over pixels of sum_k |alpha_k A_k| / max(coarse map) (the
 *                 cancellation the channel sum can amplify errors by). */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcam.h"
#include "model.h"
#include "model_file.h"
#include "test_util.h"

static float *read_f32(hid_t f, const char *name, int64_t n)
{
    float *v = malloc((size_t)n * sizeof(float));
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        free(v);
        v = NULL;
    }
    if (d >= 0)
        H5Dclose(d);
    return v;
}

static double maxdiff(const float *a, const float *b, int64_t n, double *amax)
{
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        d = e > d ? e : d;
        m = fabs((double)b[i]) > m ? fabs((double)b[i]) : m;
    }
    if (amax)
        *amax = m;
    return d;
}

int main(void)
{
    char mpath[4096], gpath[4096];
    snprintf(mpath, sizeof mpath, "%s/tests/data/gradcam/cnn96_gray.h5", test_srcdir());
    snprintf(gpath, sizeof gpath, "%s/tests/data/gradcam/golden_cnn96.h5", test_srcdir());
    rb_error err = {0};
    model_file_header h;
    CHECK(model_file_read_header(mpath, &h, &err) == 0, "header: %s", err.msg);
    rb_model *m = NULL;
    CHECK(rb_model_from_desc(&m, h.architecture, &err) == 0, "model: %s", err.msg);
    model_file_header_free(&h);
    if (!m)
        return TEST_DONE();
    int nv;
    const rb_param_view *views = rb_model_params(m, &nv);
    CHECK(model_file_load_weights(mpath, views, nv, &err) == 0, "weights: %s", err.msg);

    hid_t f = H5Fopen(gpath, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "open %s", gpath);
    if (f < 0)
        return TEST_DONE();
    hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[4];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    const int N = (int)dims[0], H = (int)dims[1], W = (int)dims[2], C = (int)dims[3];
    CHECK(H == m->nodes[0].h && W == m->nodes[0].w && C == m->nodes[0].c, "image shape");
    uint8_t *img = malloc((size_t)N * H * W * C);
    H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, img);
    H5Dclose(d);
    int unit = 1;
    hid_t at = H5Aopen(f, "unit", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_INT, &unit);
    H5Aclose(at);

    rb_gradcam *g = rb_gradcam_create(m, -1, N, &err);
    CHECK(g != NULL, "create: %s", err.msg);
    if (!g)
        return TEST_DONE();
    int gh, gw, gc;
    rb_gradcam_layer(g, &gh, &gw, &gc);
    const int nout = (int)m->nodes[m->output].size;
    const int64_t asz = (int64_t)gh * gw * gc, HW = (int64_t)H * W;
    float *logits_ref = read_f32(f, "logits", (int64_t)N * nout);
    float *A_ref = read_f32(f, "A", N * asz), *G_ref = read_f32(f, "G", N * asz);
    float *coarse_ref = read_f32(f, "coarse", (int64_t)N * gh * gw);
    float *maps_ref = read_f32(f, "maps", N * HW);
    H5Fclose(f);
    CHECK(logits_ref && A_ref && G_ref && coarse_ref && maps_ref, "golden datasets (layer %dx%dx%d)",
          gh, gw, gc);
    if (!logits_ref || !A_ref || !G_ref || !coarse_ref || !maps_ref)
        return TEST_DONE();

    float *maps = malloc((size_t)(N * HW) * sizeof(float));
    float *score = malloc((size_t)N * sizeof(float));
    CHECK(rb_gradcam_run(g, img, RB_INPUT_U8, N, unit, maps, NULL, score, &err) == 0, "run: %s",
          err.msg);
    const double e = 1e-4;
    double worst_map = 0, worst_ratio = 0;
    for (int s = 0; s < N; s++) {
        double mx, dz = fabs((double)score[s] - logits_ref[s * nout + unit]);
        double dA = maxdiff(rb_gradcam_activations(g) + s * asz, A_ref + s * asz, asz, &mx);
        CHECK(dA <= e * (1 + mx), "image %d: A differs by %g (max |A| %g)", s, dA, mx);
        double bA = mx;
        double dG = maxdiff(rb_gradcam_gradients(g) + s * asz, G_ref + s * asz, asz, &mx);
        CHECK(dG <= e * (1 + mx), "image %d: dScore/dA differs by %g (max %g)", s, dG, mx);
        CHECK(dz <= e * (1 + fabs(logits_ref[s * nout + unit])), "image %d: score %g vs %g", s,
              (double)score[s], (double)logits_ref[s * nout + unit]);
        /* kappa from the reference's A and alpha */
        const float *Ar = A_ref + s * asz, *Gr = G_ref + s * asz;
        double *alpha = calloc((size_t)gc, sizeof(double)), sabs = 0, cmax = 0;
        for (int64_t p = 0; p < (int64_t)gh * gw; p++)
            for (int k = 0; k < gc; k++)
                alpha[k] += Gr[p * gc + k] / (double)(gh * gw);
        for (int64_t p = 0; p < (int64_t)gh * gw; p++) {
            double v = 0;
            for (int k = 0; k < gc; k++)
                v += fabs(alpha[k] * Ar[p * gc + k]);
            sabs = v > sabs ? v : sabs;
            cmax = coarse_ref[s * gh * gw + p] > cmax ? coarse_ref[s * gh * gw + p] : cmax;
        }
        free(alpha);
        double kappa = cmax > 0 ? sabs / cmax : 0;
        double dc;
        double dmap = maxdiff(maps + s * HW, maps_ref + s * HW, HW, NULL);
        dc = maxdiff(rb_gradcam_coarse(g) + s * gh * gw, coarse_ref + s * gh * gw, gh * gw, NULL);
        double bound = 2 * e * kappa + 1e-6;
        CHECK(cmax > 0, "image %d: the reference map is not all zero", s);
        CHECK(dmap <= bound, "image %d: map differs by %g > bound %g (kappa %g)", s, dmap, bound,
              kappa);
        printf("image %d: score %.6f (ref %.6f), max|dA| %.2e (max|A| %.3g), max|dG| %.2e (max|G| "
               "%.3g), max|dcoarse| %.2e (max %.3g), max|dmap| %.2e, kappa %.2f, bound %.2e\n",
               s, (double)score[s], (double)logits_ref[s * nout + unit], dA, bA, dG, mx, dc, cmax,
               dmap, kappa, bound);
        worst_map = dmap > worst_map ? dmap : worst_map;
        worst_ratio = dmap / bound > worst_ratio ? dmap / bound : worst_ratio;
    }
    printf("largest map difference %.3g (%.3g of its bound)\n", worst_map, worst_ratio);
    free(maps);
    free(score);
    free(img);
    free(logits_ref);
    free(A_ref);
    free(G_ref);
    free(coarse_ref);
    free(maps_ref);
    rb_gradcam_free(g);
    rb_model_free(m);
    return TEST_DONE();
}
