/* Grad-CAM (src/gradcam.c): dScore/dA agrees with central finite differences of the score
 * through the head, on the seed-001 CNN and on MobileNetV2 (the default explained layer is
 * the input of Flatten / GlobalAveragePooling2D); the map of a model whose score reads only
 * one image region peaks in that region and is zero where the image has the other feature;
 * maps span [0, 1]; the bilinear resize matches hand-computed values; a layer that a skip
 * connection goes around is refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcam.h"
#include "model.h"
#include "test_util.h"

static void fill(float *x, int64_t n, uint64_t seed, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = lo + (hi - lo) * (float)((double)(seed >> 40) / (double)(1 << 24));
    }
}

/* random BatchNorm moving statistics, so inference BN is not the identity */
static void random_bn(rb_model *m, uint64_t seed)
{
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *nd = &m->nodes[i];
        if (nd->op != RB_OP_BATCHNORM)
            continue;
        fill(m->state + nd->woff[2], nd->c, seed + 2 * (uint64_t)i, -0.2f, 0.2f);
        fill(m->state + nd->woff[3], nd->c, seed + 2 * (uint64_t)i + 1, 0.5f, 1.5f);
        fill(m->params + nd->woff[0], nd->c, seed + 7 * (uint64_t)i, 0.8f, 1.2f);
    }
}

/* score (pre-activation of `unit`) of the head at A (one sample) */
static double head_score(rb_model *head, rb_workspace *ws, const float *A, int unit)
{
    rb_error err = {0};
    rb_forward_args a = {.input = A, .type = RB_INPUT_F32, .n = 1};
    if (rb_model_forward(head, ws, &a, &err))
        return NAN;
    const float *z = rb_workspace_logits(ws);
    if (!z)
        z = rb_workspace_output(ws, head->output);
    return z[unit];
}

/* dScore/dA of rb_gradcam against central differences at `probes` entries of A */
static void check_fd(rb_model *m, const char *what, int unit, uint64_t seed)
{
    rb_error err = {0};
    int layer = rb_gradcam_default_layer(m, &err);
    rb_gradcam *g = rb_gradcam_create(m, -1, 2, &err);
    CHECK(g != NULL, "%s: create: %s", what, err.msg);
    if (!g)
        return;
    int h, w, c;
    CHECK(rb_gradcam_layer(g, &h, &w, &c) == layer, "%s: layer", what);
    const rb_node *in = &m->nodes[0];
    int64_t isz = in->size;
    uint8_t *px = malloc((size_t)(2 * isz));
    for (int64_t i = 0; i < 2 * isz; i++)
        px[i] = (uint8_t)((i * 7919 + seed) % 251);
    int64_t HW = (int64_t)in->h * in->w, asz = (int64_t)h * w * c;
    float *maps = malloc((size_t)(2 * HW) * sizeof(float));
    float out[2 * 8], score[2];
    CHECK(rb_gradcam_run(g, px, RB_INPUT_U8, 2, unit, maps, out, score, &err) == 0, "%s: run: %s",
          what, err.msg);
    /* the outputs are the whole model's */
    rb_workspace *wm = rb_workspace_create(m, 2, 0, &err);
    rb_forward_args fa = {.input = px, .type = RB_INPUT_U8, .n = 2};
    CHECK(wm && rb_model_forward(m, wm, &fa, &err) == 0, "%s: forward", what);
    const float *ref = rb_workspace_output(wm, m->output);
    for (int k = 0; k < 2 * (int)m->nodes[m->output].size; k++)
        CHECK(fabsf(ref[k] - out[k]) <= 1e-5f, "%s: output %d %g vs %g", what, k, ref[k], out[k]);

    rb_model *head = NULL;
    CHECK(rb_model_cut(&head, m, layer + 1, m->nnodes, &err) == 0, "%s: cut", what);
    rb_model_copy_weights(head, m);
    rb_workspace *wh = rb_workspace_create(head, 1, 0, &err);
    float *A = malloc((size_t)asz * sizeof(float));
    int bad = 0, probes = 0;
    double gmax = 0;
    for (int s = 0; s < 2; s++) {
        memcpy(A, rb_gradcam_activations(g) + s * asz, (size_t)asz * sizeof(float));
        const float *G = rb_gradcam_gradients(g) + s * asz;
        double z0 = head_score(head, wh, A, unit);
        CHECK(fabs(z0 - score[s]) <= 1e-4 * (1 + fabs(z0)), "%s: score %g vs %g", what, z0,
              (double)score[s]);
        int64_t step = asz > 300 ? asz / 300 : 1;
        for (int64_t e = s; e < asz; e += step) {
            const float eps = 1e-2f;
            float a0 = A[e];
            A[e] = a0 + eps;
            double zp = head_score(head, wh, A, unit);
            A[e] = a0 - eps;
            double zm = head_score(head, wh, A, unit);
            A[e] = a0;
            double fd = (zp - zm) / (2.0 * eps);
            gmax = fabs(G[e]) > gmax ? fabs(G[e]) : gmax;
            probes++;
            if (fabs(fd - G[e]) > 2e-3 + 2e-2 * fabs(fd)) {
                if (bad < 5)
                    fprintf(stderr, "%s: sample %d entry %lld: fd %g, backward %g\n", what, s,
                            (long long)e, fd, (double)G[e]);
                bad++;
            }
        }
        /* the map: ReLU(sum_k alpha_k A_k), resized, over its maximum */
        float mx = 0, mn = 1;
        for (int64_t p = 0; p < HW; p++) {
            mx = maps[s * HW + p] > mx ? maps[s * HW + p] : mx;
            mn = maps[s * HW + p] < mn ? maps[s * HW + p] : mn;
        }
        const float *cm = rb_gradcam_coarse(g) + s * (int64_t)h * w;
        float cmax = 0;
        for (int p = 0; p < h * w; p++)
            cmax = cm[p] > cmax ? cm[p] : cmax;
        CHECK(mn >= 0.0f && (cmax > 0 ? mx == 1.0f : mx == 0.0f), "%s: map spans [%g, %g]", what,
              mn, mx);
    }
    /* a kink of a ReLU within eps of an entry may break one difference, not many */
    CHECK(bad <= probes / 50, "%s: %d of %d finite differences disagree", what, bad, probes);
    CHECK(gmax > 0, "%s: gradient not all zero", what);
    printf("%s: layer %s (%dx%dx%d), %d probes, %d off\n", what, m->nodes[layer].name, h, w, c,
           probes, bad);
    free(A);
    free(px);
    free(maps);
    rb_workspace_free(wh);
    rb_workspace_free(wm);
    rb_model_free(head);
    rb_gradcam_free(g);
}

/* Input 12x12x1 (preprocess none) -> 1x1 conv of 2 filters: channel 0 = relu(x), channel
 * 1 = relu(-x) -> Flatten -> Dense 1 whose weights read channel 0 in rows/cols [2, 5) only.
 * The image holds +1 in that region and -1 in rows/cols [7, 10): the score depends only on
 * the region, and only channel 0 matters, so the map is positive there and zero at the
 * other blob. */
static void check_region(void)
{
    const char *desc = "[model] name=region\n"
                       "[InputLayer] name=in shape=12,12,1\n"
                       "[Conv2D] name=conv filters=2 kernel=1 activation=relu\n"
                       "[Flatten] name=flat\n"
                       "[Dense] name=score units=1 activation=sigmoid\n";
    rb_error err = {0};
    rb_model *m = NULL;
    CHECK(rb_model_from_desc(&m, desc, &err) == 0, "region model: %s", err.msg);
    if (!m)
        return;
    float *k = rb_model_weight(m, 1, 0), *b = rb_model_weight(m, 1, 1);
    k[0] = 1.0f;
    k[1] = -1.0f;
    b[0] = b[1] = 0.0f;
    float *dw = rb_model_weight(m, 3, 0); /* (12*12*2, 1) */
    memset(dw, 0, 12 * 12 * 2 * sizeof(float));
    for (int y = 2; y < 5; y++)
        for (int x = 2; x < 5; x++)
            dw[(y * 12 + x) * 2 + 0] = 0.5f;
    rb_model_weight(m, 3, 1)[0] = -1.0f;
    CHECK(rb_gradcam_default_layer(m, &err) == 1, "default layer is the conv");
    rb_gradcam *g = rb_gradcam_create(m, -1, 1, &err);
    CHECK(g != NULL, "create: %s", err.msg);
    if (!g) {
        rb_model_free(m);
        return;
    }
    float img[144] = {0}, map[144], prob, score;
    for (int y = 2; y < 5; y++)
        for (int x = 2; x < 5; x++)
            img[y * 12 + x] = 1.0f;
    for (int y = 7; y < 10; y++)
        for (int x = 7; x < 10; x++)
            img[y * 12 + x] = -1.0f;
    CHECK(rb_gradcam_run(g, img, RB_INPUT_F32, 1, 0, map, &prob, &score, &err) == 0, "run: %s",
          err.msg);
    CHECK(fabsf(score - 3.5f) < 1e-5f, "score = 9 * 0.5 - 1 = %g", score);
    CHECK(fabsf(prob - 1.0f / (1.0f + expf(-3.5f))) < 1e-6f, "probability %g", prob);
    int peak = 0;
    for (int p = 1; p < 144; p++)
        peak = map[p] > map[peak] ? p : peak;
    int py = peak / 12, px = peak % 12;
    CHECK(py >= 2 && py < 5 && px >= 2 && px < 5, "peak at (%d, %d) inside the region", py, px);
    CHECK(map[peak] == 1.0f, "peak is 1: %g", map[peak]);
    for (int y = 7; y < 10; y++)
        for (int x = 7; x < 10; x++)
            CHECK(map[y * 12 + x] == 0.0f, "zero at the other blob (%d, %d): %g", y, x,
                  map[y * 12 + x]);
    CHECK(map[0] == 0.0f, "zero on the empty background: %g", map[0]);

    /* RB_WS_INPUT_GRAD on the whole (frozen) model: dScore/dx = 0.5 where x > 0 in the
     * region, 0 elsewhere; no weight gradient */
    rb_model_set_all_trainable(m, 0);
    rb_model_zero_grads(m);
    rb_workspace *ws = rb_workspace_create(m, 1, RB_WS_INPUT_GRAD, &err);
    rb_forward_args fa = {.input = img, .type = RB_INPUT_F32, .n = 1};
    float one = 1.0f;
    CHECK(ws && rb_model_forward(m, ws, &fa, &err) == 0 && rb_model_backward(m, ws, &one, 1, &err) == 0,
          "input-gradient workspace: %s", err.msg);
    const float *gx = ws ? rb_workspace_input_grad(ws) : NULL;
    CHECK(gx != NULL, "input gradient available");
    for (int p = 0; gx && p < 144; p++) {
        int y = p / 12, x = p % 12;
        float want = (y >= 2 && y < 5 && x >= 2 && x < 5) ? 0.5f : 0.0f;
        CHECK(gx[p] == want, "dScore/dx at (%d, %d): %g, want %g", y, x, gx[p], want);
    }
    int nz = 0;
    for (int64_t i = 0; i < m->nparams; i++)
        nz += m->grads[i] != 0.0f;
    CHECK(nz == 0, "%d weight gradients written with every layer frozen", nz);
    rb_workspace *wi = rb_workspace_create(m, 1, 0, &err);
    CHECK(wi && rb_workspace_input_grad(wi) == NULL, "no input gradient without the flag");
    rb_workspace_free(wi);
    rb_workspace_free(ws);
    rb_gradcam_free(g);
    rb_model_free(m);
}

static void check_resize(void)
{
    /* 2x2 -> 4x4, half-pixel centres: source coords -0.25, 0.25, 0.75, 1.25, clamped */
    const float src[4] = {0, 1, 2, 3};
    float dst[16];
    rb_resize_bilinear(dst, 4, 4, src, 2, 2);
    const float want_row[4] = {0, 0.25f, 0.75f, 1};
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            float want = want_row[x] + 2.0f * want_row[y];
            CHECK(fabsf(dst[y * 4 + x] - want) < 1e-6f, "resize (%d, %d): %g vs %g", y, x,
                  dst[y * 4 + x], want);
        }
    /* 1x1 -> anything: constant */
    float one = 0.7f, d3[6];
    rb_resize_bilinear(d3, 2, 3, &one, 1, 1);
    for (int i = 0; i < 6; i++)
        CHECK(d3[i] == 0.7f, "constant %d: %g", i, d3[i]);
}

int main(void)
{
    rb_error err = {0};
    check_resize();
    check_region();

    rb_head_opts head = rb_head_seed001(2);
    head.units[0] = 16;
    rb_model *cnn = NULL;
    CHECK(rb_model_build(&cnn, "cnn", 64, 64, 1, &head, &err) == 0, "build cnn: %s", err.msg);
    if (cnn) {
        rb_model_init(cnn, 11);
        random_bn(cnn, 5);
        int fl = rb_model_find(cnn, "flatten");
        CHECK(fl > 0 && rb_gradcam_default_layer(cnn, &err) == cnn->nodes[fl].inputs[0],
              "the explained layer feeds Flatten");
        check_fd(cnn, "cnn001", 1, 3);
        check_fd(cnn, "cnn001 unit 0", 0, 9);
        rb_model_free(cnn);
    }
    rb_head_opts h0 = rb_head_seed000(2);
    h0.units[0] = 8;
    rb_model *mb = NULL;
    CHECK(rb_model_build(&mb, "mobilenetv2", 64, 64, 3, &h0, &err) == 0, "build mobilenetv2: %s",
          err.msg);
    if (mb) {
        rb_model_init(mb, 4);
        random_bn(mb, 8);
        CHECK(!strcmp(mb->nodes[rb_gradcam_default_layer(mb, &err)].name, "out_relu"),
              "MobileNetV2 explains out_relu");
        check_fd(mb, "mobilenetv2", 1, 5);
        /* inside a residual block the head reads a tensor from before A: refused */
        rb_gradcam *gr = rb_gradcam_create(mb, rb_model_find(mb, "block_15_project_BN"), 1, &err);
        CHECK(gr == NULL && strstr(err.msg, "block_15_add") && strstr(err.msg, "block_15_project_BN"),
              "skip around the explained layer refused: %s", err.msg);
        rb_gradcam_free(gr);
        rb_model_free(mb);
    }
    /* a sigmoid output: one unit */
    rb_head_opts hs = rb_head_seed001(2);
    hs.units[0] = 8;
    hs.sigmoid = 1;
    rb_model *sg = NULL;
    CHECK(rb_model_build(&sg, "cnn", 64, 64, 3, &hs, &err) == 0, "build sigmoid cnn: %s",
          err.msg);
    if (sg) {
        rb_model_init(sg, 21);
        random_bn(sg, 2);
        check_fd(sg, "cnn001 sigmoid", 0, 4);
        rb_model_free(sg);
    }
    return TEST_DONE();
}
