/* Parts of a model (model_cut.c): the head start of a frozen MobileNetV2 with a head, the
 * base and the head cut out of it, weights copied by name, and the base's output fed to
 * the head gives the whole model's output; optimizer state moves between the whole model
 * and its head and back unchanged. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

static void fill(float *x, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)((double)(seed >> 40) / (double)(1 << 24) - 0.5);
    }
}

static const float *forward(rb_model *m, rb_workspace *ws, const void *in, rb_input_type type,
                            int n)
{
    rb_error err = {0};
    rb_forward_args a = {.input = in, .type = type, .n = n};
    if (rb_model_forward(m, ws, &a, &err)) {
        rb_error_print(&err, "forward");
        return NULL;
    }
    return rb_workspace_output(ws, m->output);
}

int main(void)
{
    rb_error err = {0};
    rb_head_opts head = rb_head_seed000(2);
    rb_model *m = NULL, *base = NULL, *top = NULL;
    CHECK(rb_model_build(&m, "mobilenetv2", 64, 64, 3, &head, &err) == 0, "build");
    if (!m)
        return TEST_DONE();
    rb_model_init(m, 3);
    int f = rb_model_head_start(m);
    CHECK(f > 1 && !strcmp(m->nodes[f - 1].name, "global_average_pooling2d"),
          "head starts after the pooling: node %d", f);
    CHECK(rb_model_cut(&base, m, 0, f, &err) == 0, "cut base");
    CHECK(rb_model_cut(&top, m, f, m->nnodes, &err) == 0, "cut head");
    CHECK(rb_model_cut(&top, m, 5, 5, &err) != 0 && top == NULL, "empty range refused");
    CHECK(rb_model_cut(&top, m, f, m->nnodes, &err) == 0, "cut head again");
    if (!base || !top) {
        rb_model_free(m);
        return TEST_DONE();
    }
    CHECK(base->nnodes == f && top->nnodes == m->nnodes - f + 1, "node counts %d %d",
          base->nnodes, top->nnodes);
    CHECK(!strcmp(top->nodes[0].name, m->nodes[f - 1].name), "head input named after the cut");
    int nb = rb_model_copy_weights(base, m), nt = rb_model_copy_weights(top, m);
    int nall;
    rb_model_params(m, &nall);
    CHECK(nb + nt == nall, "every tensor copied once: %d + %d of %d", nb, nt, nall);

    /* base then head = whole model, bit for bit */
    enum { N = 3 };
    uint8_t *img = malloc((size_t)N * 64 * 64 * 3);
    for (int i = 0; i < N * 64 * 64 * 3; i++)
        img[i] = (uint8_t)(i * 37 + i / 7);
    rb_workspace *wm = rb_workspace_create(m, N, 0, &err);
    rb_workspace *wb = rb_workspace_create(base, N, 0, &err);
    rb_workspace *wt = rb_workspace_create(top, N, 0, &err);
    CHECK(wm && wb && wt, "workspaces");
    if (wm && wb && wt) {
        const float *whole = forward(m, wm, img, RB_INPUT_U8, N);
        const float *feat = forward(base, wb, img, RB_INPUT_U8, N);
        const float *parts = feat ? forward(top, wt, feat, RB_INPUT_F32, N) : NULL;
        CHECK(whole && parts && !memcmp(whole, parts, sizeof(float) * N * 2),
              "base + head differs from the whole model");
    }
    rb_workspace_free(wm);
    rb_workspace_free(wb);
    rb_workspace_free(wt);
    free(img);

    /* optimizer state: head -> whole -> a fresh head is the identity (Adam: two blocks) */
    optim_config oc;
    optim_config_default(&oc, OPTIM_ADAM);
    optim ot, om, ot2;
    CHECK(optim_init(&ot, &oc, top->nparams, &err) == 0, "optim head");
    CHECK(optim_init(&om, &oc, m->nparams, &err) == 0, "optim whole");
    CHECK(optim_init(&ot2, &oc, top->nparams, &err) == 0, "optim head 2");
    int64_t ns = optim_state_size(&oc, top->nparams);
    fill(ot.state, ns, 9);
    ot.step = 42;
    rb_model_copy_optim(&om, m, &ot, top);
    rb_model_copy_optim(&ot2, top, &om, m);
    CHECK(om.step == 42 && ot2.step == 42, "step count moves");
    /* only trainable weights carry state; BN moving statistics (state tensors) do not */
    int np;
    const rb_param_view *v = rb_model_params(top, &np);
    int64_t differ = 0, moved = 0;
    for (int i = 0; i < np; i++) {
        if (v[i].is_state)
            continue;
        int64_t n = 1;
        for (int d = 0; d < v[i].ndim; d++)
            n *= v[i].shape[d];
        for (int64_t b = 0; b < 2; b++)
            for (int64_t k = 0; k < n; k++) {
                int64_t at = b * top->nparams + v[i].offset + k;
                differ += ot.state[at] != ot2.state[at];
                moved++;
            }
    }
    CHECK(moved > 0 && differ == 0, "%lld of %lld state values differ after the round trip",
          (long long)differ, (long long)moved);
    optim_free(&ot);
    optim_free(&om);
    optim_free(&ot2);
    rb_model_free(base);
    rb_model_free(top);
    rb_model_free(m);
    return TEST_DONE();
}
