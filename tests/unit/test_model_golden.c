/* Whole models against tf.keras: tests/golden/make_model_golden.py (run by hand) built the
 * seed-000 MobileNetV2 (32x32, frozen base, head GAP -> Dropout(0) -> Dense 128 relu ->
 * Dense 2 softmax) and the seed-001 CNN (64x64, BatchNorm in training mode) in Keras 3 with
 * seeded weights, saved the weights (Keras 3 .weights.h5) and dumped, for 3 images:
 * the inference-mode probabilities, the mean sparse categorical cross-entropy of the
 * training-mode forward (from logits, as model.fit), every trainable weight gradient
 * (sampled at a stride, plus float64 sums over all values) and, for the CNN, the BatchNorm
 * moving statistics after that training forward. This test builds the same models with
 * radbatch's builders, loads the weights with keras_import_load (STRICT: every layer by
 * name and shape), and compares.
 *
 * Tolerance: float32 with other summation orders (TF/oneDNN vs im2col + sgemm) and, for the
 * CNN, four training-mode BatchNorms whose backward subtracts near-equal sums: differences
 * are a few float32 ulps of the largest value of a tensor. Every check is
 * |a - b| <= TOL * max(|golden tensor|) (TOL 1e-5 for outputs, loss and moving statistics;
 * 1e-4 for gradients, whose error is amplified through the backward of the BatchNorms);
 * the sums (sum, sum |g|, sqrt(sum g^2)) over every value of a gradient tensor use the
 * same relative bound of their scale. The CNN's Conv2D biases (followed by training-mode
 * BatchNorm) have an exactly-zero gradient: only rounding noise on both sides, checked
 * against TOL_GRAD * max |kernel gradient| of the layer. */
#include "keras_import.h"
#include "loss.h"
#include "model.h"
#include "test_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_OUT 1e-5
#define TOL_GRAD 1e-4

static char g_dir[1024];

static void find_dir(void)
{
    snprintf(g_dir, sizeof g_dir, "%s/tests/golden/model", test_srcdir());
    char p[1100];
    snprintf(p, sizeof p, "%s/cnn.txt", g_dir);
    FILE *f = fopen(p, "r");
    if (f) {
        fclose(f);
        return;
    }
    /* run by hand without RADBATCH_SRC: next to this source file */
    snprintf(g_dir, sizeof g_dir, "%s", __FILE__);
    char *s = strrchr(g_dir, '/');
    if (s)
        snprintf(s, sizeof g_dir - (size_t)(s - g_dir), "/../golden/model");
}

/* the script's pixels(): integer arithmetic, the same bytes */
static uint8_t *pixels(int n, int h, int w, int c, int salt)
{
    int64_t tot = (int64_t)n * h * w * c;
    uint8_t *p = malloc((size_t)tot);
    for (int64_t i = 0; i < tot; i++) {
        int64_t img = i / ((int64_t)h * w * c);
        p[i] = (uint8_t)((i * 37 + (i / c) * 11 + salt * 101 + (i * i) % 7 + img * img * 71 +
                          (i * img) % 13) %
                         256);
    }
    return p;
}

static double max_abs(const double *v, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    return m;
}

static void run(const char *tag)
{
    char path[1200], wpath[1200];
    snprintf(path, sizeof path, "%s/%s.txt", g_dir, tag);
    snprintf(wpath, sizeof wpath, "%s/%s.weights.h5", g_dir, tag);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "open %s", path);
    if (!f)
        return;
    printf("%s:\n", tag);
    rb_error err = {0};
    int n, h, w, c, salt;
    CHECK(fscanf(f, " input %d %d %d %d %d", &n, &h, &w, &c, &salt) == 5, "input header");
    int nl;
    CHECK(fscanf(f, " labels %d", &nl) == 1 && nl == n, "labels header");
    int32_t labels[8];
    for (int i = 0; i < n; i++)
        CHECK(fscanf(f, "%d", &labels[i]) == 1, "label");

    char *desc;
    if (!strcmp(tag, "mnv2")) {
        rb_head_opts head = rb_head_seed000(2);
        head.dropout = 0; /* the golden head has Dropout(0.0): no randomness */
        desc = rb_desc_mobilenetv2(h, w, &head, &err);
    } else {
        desc = rb_desc_cnn001(h, w, c, NULL, &err);
    }
    rb_model *m = NULL;
    CHECK(desc && rb_model_from_desc(&m, desc, &err) == 0, "build %s: %s", tag, err.msg);
    free(desc);
    if (!m) {
        fclose(f);
        return;
    }
    int nv, nlay;
    const rb_param_view *views = rb_model_params(m, &nv);
    const rb_layer_view *lays = rb_model_layers(m, &nlay);
    keras_import_report rep = {0};
    int rc = keras_import_load(wpath, views, nv, lays, nlay, KERAS_IMPORT_STRICT, &rep, &err);
    CHECK(rc == 0, "keras_import_load %s: %s", wpath, err.msg);
    CHECK(rc || rep.n_skipped == 0, "skipped layers");
    printf("  loaded %d tensors (%lld values) from %s\n", rep.n_tensors,
           (long long)rep.n_values, keras_format_name(rep.format));
    keras_import_report_free(&rep);

    uint8_t *px = pixels(n, h, w, c, salt);
    rb_workspace *ws = rb_workspace_create(m, n, RB_WS_TRAIN, &err);
    CHECK(ws != NULL, "workspace: %s", err.msg);
    if (!ws || rc) {
        free(px);
        rb_model_free(m);
        fclose(f);
        return;
    }

    /* 1. inference-mode probabilities */
    int pn, pc;
    CHECK(fscanf(f, " probs %d %d", &pn, &pc) == 2 && pn == n, "probs header");
    double gp[64];
    for (int i = 0; i < pn * pc; i++)
        CHECK(fscanf(f, "%lf", &gp[i]) == 1, "probs value");
    rb_forward_args a = {.input = px, .type = RB_INPUT_U8, .n = n, .training = 0};
    CHECK(rb_model_forward(m, ws, &a, &err) == 0, "forward: %s", err.msg);
    const float *out = rb_workspace_output(ws, m->output);
    double d = 0;
    for (int i = 0; i < pn * pc; i++)
        d = fmax(d, fabs(out[i] - gp[i]));
    printf("  probs (inference)    max |diff| %.3g (max |golden| %.3g)\n", d, max_abs(gp, pn * pc));
    CHECK(d <= TOL_OUT * max_abs(gp, pn * pc), "%s probs differ by %g", tag, d);

    /* 2. training-mode forward, loss from logits, backward */
    double gloss;
    CHECK(fscanf(f, " loss %lf", &gloss) == 1, "loss");
    a.training = 1;
    CHECK(rb_model_forward(m, ws, &a, &err) == 0, "train forward: %s", err.msg);
    const float *logits = rb_workspace_logits(ws);
    CHECK(logits != NULL, "logits");
    float dlogits[64];
    double sum = 0;
    loss_spec ls = {.n = n, .classes = pc, .global_n = n};
    CHECK(loss_sparse_ce_logits(&ls, logits, labels, &sum, dlogits, &err) == 0, "loss: %s",
          err.msg);
    double loss = sum / n;
    double zmax = 0;
    for (int i = 0; i < n * pc; i++)
        zmax = fmax(zmax, fabs(logits[i]));
    printf("  loss (training)      %.9g vs %.9g, rel diff %.3g (max |logit| %.3g)\n", loss, gloss,
           fabs(loss - gloss) / fabs(gloss), zmax);
    /* The loss of confident predictions is about 1 - p (the CNN's: 0.008), and a logit
     * error dz moves it by about (1 - p) dz = loss * dz: its relative error is the
     * ABSOLUTE error of the logits, so the bound is relative to the logits' scale
     * (max |logit| 5.97 for the CNN, 0.31 for MobileNetV2, where the plain relative bound
     * stays). Measured on the CNN: rel diff 5.4e-6 with im2col convolutions, 1.14e-5 with
     * Winograd (conv2d_winograd.c: about twice the rounding error of a direct sum), i.e.
     * logits within 2e-6 of their scale; the bound here is 6e-5. */
    CHECK(fabs(loss - gloss) <= TOL_OUT * fabs(gloss) * fmax(1.0, zmax), "%s loss %.9g vs %.9g",
          tag, loss, gloss);
    rb_model_zero_grads(m);
    CHECK(rb_model_backward(m, ws, dlogits, 1, &err) == 0, "backward: %s", err.msg);
    /* The backward starts from dL/dz = p - y, which for confident predictions is small
     * (about 1 - p) and moves by p(1 - p) dz: like the loss, its relative error is the
     * logits' ABSOLUTE error, and every weight gradient inherits it. So the gradient bounds
     * are scaled by max(1, max |logit|) as the loss bound is (x6 for the CNN, x1 for
     * MobileNetV2). Measured on the CNN with Winograd convolutions: the output bias gradient
     * (max |g| 0.0013) differs by 8.3e-5 of its scale (5.0e-5 with im2col), against 6e-4. */
    const double gtol = TOL_GRAD * fmax(1.0, zmax);

    /* 3. gradients of every trainable weight */
    int ntrain = 0, ngrad = 0;
    for (int i = 0; i < m->nnodes; i++)
        if (m->nodes[i].trainable)
            for (int k = 0; k < m->nodes[i].nweights; k++)
                ntrain += !m->nodes[i].is_state[k];
    double worst_grad = 0, kernel_gmax = 0;
    char line[256];
    for (;;) {
        char layer[RB_NAME_MAX + 1];
        int k, count;
        long long size, stride;
        double gmax, gsum, gl1, gl2;
        long pos = ftell(f);
        if (fscanf(f, " grad %64s %d %lld %lld %d %lf %lf %lf %lf", layer, &k, &size, &stride,
                   &count, &gmax, &gsum, &gl1, &gl2) != 9) {
            fseek(f, pos, SEEK_SET);
            break;
        }
        ngrad++;
        double *gv = malloc(sizeof(double) * (size_t)count);
        for (int i = 0; i < count; i++)
            CHECK(fscanf(f, "%lf", &gv[i]) == 1, "grad value");
        int node = rb_model_find(m, layer);
        CHECK(node >= 0 && k < m->nodes[node].nweights && m->nodes[node].wsize[k] == size,
              "%s/%d: not in the model or another size", layer, k);
        if (node < 0 || m->nodes[node].wsize[k] != size) {
            free(gv);
            continue;
        }
        CHECK(m->nodes[node].trainable, "%s is not trainable in radbatch", layer);
        const float *g = rb_model_weight_grad(m, node, k);
        double dm = 0, s = 0, l1 = 0, l2 = 0, mx = 0;
        for (int i = 0; i < count; i++)
            dm = fmax(dm, fabs(g[(int64_t)i * stride] - gv[i]));
        for (int64_t i = 0; i < size; i++) {
            s += g[i];
            l1 += fabs(g[i]);
            l2 += (double)g[i] * g[i];
            mx = fmax(mx, fabs(g[i]));
        }
        if (k == 0)
            kernel_gmax = gmax;
        /* a Conv2D bias in front of a training-mode BatchNorm: its gradient is exactly 0
         * in exact arithmetic (the batch mean removes it); both sides hold rounding noise
         * (1e-7 .. 1e-9 here), compared on the scale of the layer's kernel gradient */
        int zero = k == 1 && m->nodes[node].op == RB_OP_CONV2D && gmax < 1e-5 * kernel_gmax;
        double scale = zero ? kernel_gmax : gmax;
        double rel = scale > 0 ? dm / scale : dm;
        worst_grad = fmax(worst_grad, rel);
        snprintf(line, sizeof line, "%s/%d [%lld]", layer, k, size);
        printf("  grad %-34s max|g| %.3g  max|diff| %.3g (rel %.2g)  sum %.3g/%.3g  "
               "|g|_1 rel %.2g  |g|_2 rel %.2g\n",
               line, gmax, dm, rel, s, gsum, fabs(l1 - gl1) / fmax(gl1, 1e-30),
               fabs(sqrt(l2) - sqrt(gl2)) / fmax(sqrt(gl2), 1e-30));
        CHECK(dm <= gtol * scale, "%s grad differs by %g (max |g| %g)", line, dm, scale);
        if (zero) {
            printf("    (analytically zero: max|diff| / max|kernel grad| = %.2g)\n", rel);
            free(gv);
            continue;
        }
        CHECK(fabs(mx - gmax) <= gtol * gmax, "%s max |g| %g vs %g", line, mx, gmax);
        CHECK(fabs(s - gsum) <= gtol * gl1, "%s sum %g vs %g", line, s, gsum);
        CHECK(fabs(l1 - gl1) <= gtol * gl1, "%s sum |g| %g vs %g", line, l1, gl1);
        CHECK(fabs(sqrt(l2) - sqrt(gl2)) <= gtol * sqrt(gl2), "%s |g|_2", line);
        free(gv);
    }
    CHECK(ngrad == ntrain, "%s: %d golden gradients, %d trainable tensors in radbatch", tag,
          ngrad, ntrain);
    printf("  %d gradient tensors, worst max|diff| / max|g| = %.3g\n", ngrad, worst_grad);

    /* 4. moving statistics after the training forward (cnn) */
    for (;;) {
        char layer[RB_NAME_MAX + 1];
        int k, size;
        if (fscanf(f, " moving %64s %d %d", layer, &k, &size) != 3)
            break;
        double *gv = malloc(sizeof(double) * (size_t)size);
        for (int i = 0; i < size; i++)
            CHECK(fscanf(f, "%lf", &gv[i]) == 1, "moving value");
        int node = rb_model_find(m, layer);
        CHECK(node >= 0 && m->nodes[node].wsize[k] == size, "%s/%d size", layer, k);
        if (node >= 0 && m->nodes[node].wsize[k] == size) {
            const float *v = rb_model_weight(m, node, k);
            double dm = 0;
            for (int i = 0; i < size; i++)
                dm = fmax(dm, fabs(v[i] - gv[i]));
            printf("  moving %s/%d max|diff| %.3g (max %.3g)\n", layer, k, dm,
                   max_abs(gv, size));
            CHECK(dm <= TOL_OUT * max_abs(gv, size), "%s/%d moving statistic differs by %g",
                  layer, k, dm);
        }
        free(gv);
    }
    rb_workspace_free(ws);
    rb_model_free(m);
    free(px);
    fclose(f);
}

int main(void)
{
    find_dir();
    run("mnv2");
    run("cnn");
    return TEST_DONE();
}
