/* labels: invariance */
/* An image's output depends on the image and the model only: never on its batch
 * companions, its position in the batch, the batch size, the workspace's capacity or the
 * thread count (docs/engine.md, "Same answer for an image"). Checked bit for bit on the
 * whole models the drivers run, in inference: MobileNetV2 with the pretrained weights
 * shipped in tests/data (fused Conv+BN path, 1x1 GEMMs, depthwise, the head's Dense
 * layers) and the seed-001 CNN (im2col and Winograd convolutions, Flatten -> Dense 512),
 * each image run alone being the reference. OpenBLAS picks other GEMM kernels on other
 * CPUs (OPENBLAS_CORETYPE=Haswell, Sandybridge reproduce them); CI runs this test under
 * each. */
#include <stdlib.h>
#include <string.h>

#include "keras_import.h"
#include "model.h"
#include "test_util.h"

#define NIMG 7

static uint8_t *random_images(int n, int64_t per, uint64_t seed)
{
    uint8_t *x = malloc((size_t)(n * per));
    uint64_t s = seed;
    for (int64_t i = 0; i < n * per; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (uint8_t)(s >> 56);
    }
    return x;
}

/* outputs of images `order[0..n)` of `pool` run as one batch (out: n x nout, in that
 * order) in a workspace of capacity `cap` with `threads` threads */
static int run_batch(rb_model *m, int flags, const uint8_t *pool, int64_t per,
                     const int *order, int n, int cap, int threads, float *out, int nout)
{
    rb_error err = {0};
    rb_workspace *ws = rb_workspace_create(m, cap, flags, &err);
    if (!ws) {
        rb_error_print(&err, "workspace");
        return -1;
    }
    if (threads > 1 && rb_workspace_set_threads(ws, threads, &err)) {
        rb_error_print(&err, "threads");
        rb_workspace_free(ws);
        return -1;
    }
    uint8_t *x = malloc((size_t)(n * per));
    for (int i = 0; i < n; i++)
        memcpy(x + i * per, pool + order[i] * per, (size_t)per);
    rb_forward_args a = {.input = x, .type = RB_INPUT_U8, .n = n};
    int rc = rb_model_forward(m, ws, &a, &err);
    if (rc)
        rb_error_print(&err, "forward");
    else
        memcpy(out, rb_workspace_output(ws, m->output), sizeof(float) * (size_t)(n * nout));
    free(x);
    rb_workspace_free(ws);
    return rc;
}

static void check_model(const char *label, rb_model *m, int h, int w, int flags)
{
    const int64_t per = (int64_t)h * w * 3;
    const int nout = 2;
    uint8_t *pool = random_images(NIMG, per, 0x5eed + (uint64_t)h);
    float *ref = malloc(sizeof(float) * NIMG * nout), *got = malloc(sizeof(float) * NIMG * nout);
    /* the reference: every image alone, in a workspace of one */
    for (int i = 0; i < NIMG; i++)
        CHECK(run_batch(m, flags, pool, per, &i, 1, 1, 1, ref + i * nout, nout) == 0,
              "%s: image %d alone", label, i);
    int forward[NIMG], reverse[NIMG], shuffled[NIMG] = {3, 6, 0, 5, 1, 4, 2};
    for (int i = 0; i < NIMG; i++)
        forward[i] = i, reverse[i] = NIMG - 1 - i;
    struct {
        const char *what;
        const int *order;
        int n, cap, threads;
    } runs[] = {
        {"batch of 7, 1 thread", forward, NIMG, NIMG, 1},
        {"batch of 7, 2 threads", forward, NIMG, NIMG, 2},
        {"batch of 7, 3 threads", forward, NIMG, NIMG, 3},
        {"reversed, 2 threads", reverse, NIMG, NIMG, 2},
        {"shuffled, 1 thread", shuffled, NIMG, NIMG, 1},
        {"5 of a workspace of 8, 2 threads", shuffled + 2, 5, 8, 2},
        {"one in a workspace of 8, 2 threads", shuffled + 1, 1, 8, 2},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        if (run_batch(m, flags, pool, per, runs[r].order, runs[r].n, runs[r].cap,
                      runs[r].threads, got, nout)) {
            CHECK(0, "%s: %s failed", label, runs[r].what);
            continue;
        }
        int differ = 0;
        for (int i = 0; i < runs[r].n; i++)
            differ += memcmp(got + i * nout, ref + runs[r].order[i] * nout,
                             sizeof(float) * nout) != 0;
        CHECK(differ == 0, "%s: %s: %d of %d images differ from the image run alone", label,
              runs[r].what, differ, runs[r].n);
    }
    /* the outputs are not degenerate (a test on constant outputs would prove nothing) */
    int distinct = 0;
    for (int i = 1; i < NIMG; i++)
        distinct += ref[i * nout] != ref[0];
    CHECK(distinct > 0, "%s: every image gives the same output", label);
    printf("%-40s p(class 0) of image 0 = %.9g\n", label, (double)ref[0]);
    free(pool), free(ref), free(got);
}

static rb_model *mobilenetv2(int size)
{
    rb_error err = {0};
    rb_head_opts head = rb_head_seed000(2);
    rb_model *m = NULL;
    if (rb_model_build(&m, "mobilenetv2", size, size, 3, &head, &err)) {
        rb_error_print(&err, "build");
        return NULL;
    }
    rb_model_init(m, 11);
    char path[1200];
    snprintf(path, sizeof path, "%s/tests/data/mobilenetv2/mobilenetv2_keras_notop.h5",
             test_srcdir());
    int nv, nl;
    const rb_param_view *v = rb_model_params(m, &nv);
    const rb_layer_view *l = rb_model_layers(m, &nl);
    keras_import_report rep = {0};
    int rc = keras_import_load(path, v, nv, l, nl, KERAS_IMPORT_SKIP_MISSING, &rep, &err);
    if (rc)
        rb_error_print(&err, "weights");
    CHECK(rc == 0 && rep.n_tensors > 0, "pretrained weights from %s", path);
    keras_import_report_free(&rep);
    return m;
}

int main(void)
{
    rb_error err = {0};
    rb_model *m = mobilenetv2(96);
    CHECK(m != NULL, "MobileNetV2 96");
    if (m) {
        check_model("MobileNetV2 96, fused inference", m, 96, 96, 0);
        check_model("MobileNetV2 96, unfused", m, 96, 96, RB_WS_NO_FUSE);
        check_model("MobileNetV2 96, training workspace", m, 96, 96, RB_WS_TRAIN);
        rb_model_free(m);
    }
    m = NULL;
    CHECK(rb_model_build(&m, "cnn", 70, 70, 3, NULL, &err) == 0, "CNN build");
    if (m) {
        rb_model_init(m, 5);
        check_model("seed-001 CNN 70", m, 70, 70, 0);
        check_model("seed-001 CNN 70, training workspace", m, 70, 70, RB_WS_TRAIN);
        rb_model_free(m);
    }
    return TEST_DONE();
}
