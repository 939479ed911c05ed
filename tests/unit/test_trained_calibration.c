/* The model card's calibration temperature in jobs/trained_model.c (what evaluate, predict
 * and infer load): a tiny softmax and a tiny sigmoid network saved with cards without
 * calibration, with temperature 1 and with temperature 3; the probabilities are the
 * network's own without a temperature (bitwise) and softmax(logits / 3) or sigmoid(logit / 3)
 * with one; a card with another method or a temperature <= 0 is refused naming the file. */
#include "metrics.h"
#include "model.h"
#include "model_file.h"
#include "test_util.h"
#include "trained_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *classes[2] = {"NORMAL", "PNEUMONIA"};

static int save(const char *path, const char *desc, const char *card)
{
    rb_error err = {0};
    rb_model *m = NULL;
    if (rb_model_from_desc(&m, desc, &err) < 0) {
        CHECK(0, "desc: %s", err.msg);
        return -1;
    }
    rb_model_init(m, 7);
    int nv;
    const rb_param_view *v = rb_model_params(m, &nv);
    /* large weights: confident outputs, logits of several units */
    for (int i = 0; i < nv; i++) {
        int64_t size = 1;
        for (int d = 0; d < v[i].ndim; d++)
            size *= v[i].shape[d];
        for (int64_t j = 0; j < size; j++)
            v[i].data[j] *= 40.f;
    }
    model_file_contents c = {.architecture = desc, .model_card = card, .class_names = classes, .n_classes = 2,
                             .views = v, .n_views = nv};
    int rc = model_file_save(path, &c, &err);
    CHECK(rc == 0, "save %s: %s", path, err.msg);
    rb_model_free(m);
    return rc;
}

/* probabilities of 4 fixed 4x4 gray images, or -1 with err */
static int probs_of(const char *path, float *p, rb_error *err)
{
    trained_model t;
    if (trained_model_load(&t, path, 4, 1, err) < 0)
        return -1;
    uint8_t img[4 * 16];
    for (int i = 0; i < 64; i++)
        img[i] = (uint8_t)((i * 37 + 11) % 256);
    int rc = trained_model_predict(&t, img, 4, p, err);
    trained_model_free(&t);
    return rc;
}

static void one_head(const char *dir, const char *name, const char *desc, int sigmoid)
{
    char p_none[1024], p_one[1024], p_three[1024], p_bad[1024], p_neg[1024];
    snprintf(p_none, sizeof p_none, "%s/%s_none.h5", dir, name);
    snprintf(p_one, sizeof p_one, "%s/%s_t1.h5", dir, name);
    snprintf(p_three, sizeof p_three, "%s/%s_t3.h5", dir, name);
    snprintf(p_bad, sizeof p_bad, "%s/%s_bad.h5", dir, name);
    snprintf(p_neg, sizeof p_neg, "%s/%s_neg.h5", dir, name);
    const char *base = "{\"positive_class\": \"PNEUMONIA\"}";
    save(p_none, desc, base);
    save(p_one, desc, "{\"positive_class\": \"PNEUMONIA\", \"calibration\": {\"method\": \"temperature\", "
                      "\"temperature\": 1}}");
    save(p_three, desc, "{\"positive_class\": \"PNEUMONIA\", \"calibration\": {\"method\": \"temperature\", "
                        "\"temperature\": 3}}");
    save(p_bad, desc, "{\"calibration\": {\"method\": \"platt\", \"temperature\": 3}}");
    save(p_neg, desc, "{\"calibration\": {\"method\": \"temperature\", \"temperature\": -2}}");
    rb_error err = {0};
    float a[8], b[8], c[8];
    CHECK(probs_of(p_none, a, &err) == 0, "%s: %s", name, err.msg);
    CHECK(probs_of(p_one, b, &err) == 0, "%s: %s", name, err.msg);
    CHECK(probs_of(p_three, c, &err) == 0, "%s: %s", name, err.msg);
    CHECK(memcmp(a, b, sizeof a) == 0, "%s: temperature 1 changes the probabilities", name);
    int confident = 0;
    for (int i = 0; i < 4; i++) {
        /* the logit of PNEUMONIA against NORMAL from the uncalibrated probabilities */
        double z = log((double)a[i * 2 + 1]) - log((double)a[i * 2]);
        double want = 1 / (1 + exp(-z / 3));
        confident += fabs(z) > 3;
        CHECK(fabs(c[i * 2 + 1] - want) < 1e-5 && fabs(c[i * 2] - (1 - want)) < 1e-5,
              "%s image %d: p %.7g, want sigmoid(%.5g / 3) = %.7g", name, i, c[i * 2 + 1], z, want);
        CHECK(fabs(c[i * 2 + 1] - 0.5) <= fabs(a[i * 2 + 1] - 0.5), "%s image %d: T = 3 does not soften", name, i);
    }
    CHECK(confident >= 1, "%s: no confident output to soften", name);
    (void)sigmoid;
    CHECK(probs_of(p_bad, c, &err) < 0 && strstr(err.msg, p_bad) && strstr(err.msg, "calibration method"),
          "%s: unknown method: %s", name, err.msg);
    CHECK(probs_of(p_neg, c, &err) < 0 && strstr(err.msg, p_neg) && strstr(err.msg, "not a positive number"),
          "%s: negative temperature: %s", name, err.msg);
}

int main(void)
{
    const char *dir = test_tmpdir("trained_calibration");
    one_head(dir, "softmax",
             "[InputLayer] name=in shape=4,4,1 preprocess=none\n[Flatten] name=flat inputs=in\n"
             "[Dense] name=out units=2 activation=softmax inputs=flat\n",
             0);
    one_head(dir, "sigmoid",
             "[InputLayer] name=in shape=4,4,1 preprocess=none\n[Flatten] name=flat inputs=in\n"
             "[Dense] name=out units=1 activation=sigmoid inputs=flat\n",
             1);
    return TEST_DONE();
}
