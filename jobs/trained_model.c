#include "trained_model.h"
#include "augment.h"
#include "fsutil.h"
#include "metrics.h"
#include "model_file.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_card(trained_model *t, const char *card, rb_error *err)
{
    t->threshold = 0.5;
    t->has_threshold = 0;
    t->resize = RESIZE_STRETCH;
    t->dct_scaling = 1;
    t->positive = t->nclasses - 1;
    if (!card)
        return 0;
    cJSON *c = cJSON_Parse(card);
    if (!c)
        return 0; /* a card we cannot read leaves the defaults */
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(c, "preprocessing");
    const cJSON *v;
    if (pre) {
        if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(pre, "resize")))
            resize_mode_parse(v->valuestring, &t->resize);
        if ((v = cJSON_GetObjectItemCaseSensitive(pre, "dct_scaling")))
            t->dct_scaling = cJSON_IsTrue(v);
    }
    if (cJSON_IsString(v = cJSON_GetObjectItemCaseSensitive(c, "positive_class")))
        for (int i = 0; i < t->nclasses; i++)
            if (!strcmp(t->class_names[i], v->valuestring))
                t->positive = i;
    card_threshold_read(&t->op, card);
    if (t->op.present) {
        t->threshold = t->op.value;
        t->has_threshold = 1;
    }
    cJSON_Delete(c);
    (void)err;
    return 0;
}

/* The card's calibration temperature (1 when the card has none); -1 for a bad value. */
static int card_temperature(const char *card, const char *path, double *T, rb_error *err)
{
    *T = 1.0;
    cJSON *c = card ? cJSON_Parse(card) : NULL;
    const cJSON *cal = c ? cJSON_GetObjectItemCaseSensitive(c, "calibration") : NULL;
    int rc = 0;
    if (cal) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(cal, "method");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cal, "temperature");
        if (!cJSON_IsString(m) || strcmp(m->valuestring, "temperature") != 0)
            rc = rb_fail(err, "the model card's calibration.method must be \"temperature\"",
                         "%s: model card: unknown calibration method", path);
        else if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble <= 0)
            rc = rb_fail(err, "the model card's calibration.temperature must be a positive number",
                         "%s: model card: calibration temperature is not a positive number", path);
        else
            *T = v->valuedouble;
    }
    cJSON_Delete(c);
    return rc;
}

static int load_member(trained_model *t, const char *path, int threads, rb_error *err)
{
    int k = t->nmembers;
    model_file_header h;
    if (model_file_read_header(path, &h, err) < 0)
        return -1;
    int rc = rb_model_from_desc(&t->m[k], h.architecture, err);
    if (rc < 0) {
        rb_error_prefix(err, "%s: ", path);
        model_file_header_free(&h);
        return -1;
    }
    t->nmembers++;
    t->path[k] = strdup(path);
    int nv;
    const rb_param_view *views = rb_model_params(t->m[k], &nv);
    rc = model_file_load_weights(path, views, nv, err);
    const rb_node *in = &t->m[k]->nodes[0];
    const rb_node *out = &t->m[k]->nodes[t->m[k]->output];
    int ncls = out->c == 1 ? 2 : out->c;
    if (rc == 0)
        rc = card_temperature(h.model_card, path, &t->temperature[k], err);
    if (rc == 0 && k == 0) {
        t->nclasses = h.n_classes > 0 ? h.n_classes : ncls;
        t->class_names = calloc((size_t)t->nclasses, sizeof *t->class_names);
        for (int i = 0; i < t->nclasses; i++) {
            char dflt[16];
            snprintf(dflt, sizeof dflt, "class_%d", i);
            t->class_names[i] = strdup(i < h.n_classes ? h.class_names[i] : dflt);
        }
        t->height = in->h;
        t->width = in->w;
        t->channels = in->c;
        t->card = h.model_card ? strdup(h.model_card) : NULL;
        rc = read_card(t, h.model_card, err);
        threshold_spec model = {THRESHOLD_MODEL, 0};
        if (rc == 0)
            rc = trained_model_apply_threshold(t, "", &model, "", err);
    } else if (rc == 0) {
        if (ncls != t->nclasses || in->h != t->height || in->w != t->width || in->c != t->channels)
            rc = rb_fail(err, "an ensemble's models must share classes and input size",
                         "%s: %d classes at %dx%dx%d, the first model has %d at %dx%dx%d", path, ncls, in->h, in->w,
                         in->c, t->nclasses, t->height, t->width, t->channels);
        for (int i = 0; rc == 0 && i < h.n_classes && i < t->nclasses; i++)
            if (strcmp(h.class_names[i], t->class_names[i]) != 0)
                rc = rb_fail(err, "an ensemble's models must share the class names and order",
                             "%s: class %d is '%s', the first model's is '%s'", path, i, h.class_names[i],
                             t->class_names[i]);
    }
    if (rc == 0) {
        t->ws[k] = rb_workspace_create(t->m[k], t->batch, 0, err);
        if (!t->ws[k] || rb_workspace_set_threads(t->ws[k], threads, err) < 0)
            rc = -1;
    }
    model_file_header_free(&h);
    return rc;
}

int trained_model_load(trained_model *t, const char *paths, int batch, int threads, rb_error *err)
{
    memset(t, 0, sizeof *t);
    t->batch = batch > 0 ? batch : 16;
    char *list = strdup(paths), *save = NULL;
    int rc = 0;
    for (char *p = strtok_r(list, ",", &save); p && rc == 0; p = strtok_r(NULL, ",", &save)) {
        while (*p == ' ')
            p++;
        if (!*p)
            continue;
        if (t->nmembers == TRAINED_MAX_MEMBERS)
            rc = rb_fail(err, NULL, "at most %d models in an ensemble", TRAINED_MAX_MEMBERS);
        else
            rc = load_member(t, p, threads, err);
    }
    free(list);
    if (rc == 0 && t->nmembers == 0)
        rc = rb_fail(err, "give a model file written by radbatch train", "no model file given");
    if (rc == 0) {
        t->acc = malloc((size_t)t->batch * (size_t)t->nclasses * sizeof *t->acc);
        t->tmp = malloc((size_t)t->batch * (size_t)t->height * t->width * t->channels);
        t->cal = malloc((size_t)t->batch * (size_t)t->nclasses * sizeof *t->cal);
        if (!t->acc || !t->tmp || !t->cal)
            rc = rb_fail(err, NULL, "out of memory");
    }
    if (rc < 0)
        trained_model_free(t);
    return rc;
}

void trained_model_free(trained_model *t)
{
    for (int k = 0; k < t->nmembers; k++) {
        rb_workspace_free(t->ws[k]);
        if (t->m[k])
            rb_model_free(t->m[k]);
        free(t->path[k]);
    }
    for (int i = 0; i < t->nclasses && t->class_names; i++)
        free(t->class_names[i]);
    free(t->class_names);
    free(t->card);
    free(t->acc);
    free(t->cal);
    free(t->tmp);
    memset(t, 0, sizeof *t);
}

void trained_model_set_tta(trained_model *t, int tta) { t->tta = tta < 0 ? 0 : tta > 2 ? 2 : tta; }

/* TTA view v of an image: 0 identity, 1 horizontal flip, 2..5 shifts by 4% of the size. */
static void tta_params(augment_params *p, int v, int h, int w)
{
    augment_params_identity(p);
    if (v == 1)
        p->hflip = 1;
    else if (v >= 2) {
        float dx = 0.04f * (float)w, dy = 0.04f * (float)h;
        static const float sx[4] = {1, -1, 0, 0}, sy[4] = {0, 0, 1, -1};
        p->tx = sx[v - 2] * dx;
        p->ty = sy[v - 2] * dy;
    }
}

int trained_model_predict(trained_model *t, const uint8_t *images, int n, float *probs, rb_error *err)
{
    if (n > t->batch)
        return rb_fail(err, NULL, "internal: %d images for a batch of %d", n, t->batch);
    int k = t->nclasses;
    int views = t->tta == 0 ? 1 : t->tta == 1 ? 2 : 6;
    size_t rec = (size_t)t->height * t->width * t->channels;
    memset(t->acc, 0, (size_t)n * k * sizeof *t->acc);
    for (int v = 0; v < views; v++) {
        const uint8_t *in = images;
        if (v > 0) {
            augment_params p;
            tta_params(&p, v, t->height, t->width);
            for (int i = 0; i < n; i++)
                augment_apply_params(t->tmp + i * rec, images + i * rec, t->height, t->width, t->channels, &p,
                                     AUGMENT_FILL_NEAREST, 0);
            in = t->tmp;
        }
        for (int mi = 0; mi < t->nmembers; mi++) {
            rb_forward_args a = {.input = in, .type = RB_INPUT_U8, .n = n};
            if (rb_model_forward(t->m[mi], t->ws[mi], &a, err) < 0)
                return -1;
            const float *out = rb_workspace_output(t->ws[mi], t->m[mi]->output);
            int oc = t->m[mi]->nodes[t->m[mi]->output].c;
            if (t->temperature[mi] != 1.0) { /* calibrated: softmax(logits / T), or the sigmoid */
                const float *z = rb_workspace_logits(t->ws[mi]);
                if (!z)
                    return rb_fail(err, "a calibration temperature needs a softmax or sigmoid output",
                                   "%s: the model card has a calibration temperature, the model's output no logits",
                                   t->path[mi]);
                metrics_temperature_probs(t->cal, z, oc, n, k, t->positive, t->temperature[mi]);
                for (int i = 0; i < n * k; i++)
                    t->acc[i] += t->cal[i];
                continue;
            }
            for (int i = 0; i < n; i++) {
                if (oc == 1) { /* one sigmoid unit: probability of the positive class */
                    t->acc[i * k + t->positive] += out[i];
                    t->acc[i * k + 1 - t->positive] += 1.0f - out[i];
                } else
                    for (int c = 0; c < k; c++)
                        t->acc[i * k + c] += out[i * oc + c];
            }
        }
    }
    float scale = 1.0f / (float)(views * t->nmembers);
    for (int i = 0; i < n * k; i++)
        probs[i] = t->acc[i] * scale;
    return 0;
}

int trained_model_apply_threshold(trained_model *t, const char *cmd, const threshold_spec *s, const char *origin,
                                  rb_error *err)
{
    double v;
    if (threshold_without_data(cmd, s, &t->op, t->class_names[t->positive], origin, &v, t->threshold_source,
                               sizeof t->threshold_source, err) < 0)
        return -1;
    t->threshold = v;
    threshold_spec_format(s->kind, s->arg, t->threshold_rule, sizeof t->threshold_rule);
    return 0;
}

int trained_model_peek_threshold(const char *paths, const char *cmd, const threshold_spec *s, const char *origin,
                                 double *value, char *source, size_t cap, rb_error *err)
{
    source[0] = 0;
    char *first = strdup(paths);
    if (!first)
        return rb_fail(err, NULL, "out of memory");
    char *comma = strchr(first, ',');
    if (comma)
        *comma = 0;
    model_file_header h;
    rb_error herr;
    if (model_file_read_header(first, &h, &herr) < 0) {
        free(first);
        return 0;
    }
    free(first);
    card_threshold op;
    card_threshold_read(&op, h.model_card);
    /* the screening class as read_card finds it: the card's positive_class, else the last */
    const char *pos = h.n_classes > 0 ? h.class_names[h.n_classes - 1] : "";
    cJSON *c = h.model_card ? cJSON_Parse(h.model_card) : NULL;
    const cJSON *pc = c ? cJSON_GetObjectItemCaseSensitive(c, "positive_class") : NULL;
    for (int i = 0; cJSON_IsString(pc) && i < h.n_classes; i++)
        if (!strcmp(h.class_names[i], pc->valuestring))
            pos = h.class_names[i];
    int rc = threshold_without_data(cmd, s, &op, pos, origin, value, source, cap, err);
    cJSON_Delete(c);
    model_file_header_free(&h);
    return rc;
}

int trained_model_save_copy(const trained_model *t, const char *path, const char *card, rb_error *err)
{
    model_file_header h;
    if (model_file_read_header(t->path[0], &h, err) < 0)
        return -1;
    int nv;
    const rb_param_view *views = rb_model_params(t->m[0], &nv);
    model_file_contents c = {.architecture = h.architecture,
                             .model_card = card,
                             .class_names = (const char *const *)h.class_names,
                             .n_classes = h.n_classes,
                             .views = views,
                             .n_views = nv};
    int rc = model_file_save(path, &c, err);
    model_file_header_free(&h);
    return rc;
}

int trained_model_decide(const trained_model *t, const float *p)
{
    if (t->nclasses == 2)
        return p[t->positive] >= t->threshold ? t->positive : 1 - t->positive;
    int best = 0;
    for (int c = 1; c < t->nclasses; c++)
        if (p[c] > p[best])
            best = c;
    return best;
}

int trained_model_load_image(const trained_model *t, const char *path, uint8_t *out, image_info *info,
                             rb_error *err)
{
    image_limits lim;
    image_limits_default(&lim);
    uint8_t *buf;
    size_t len;
    if (fs_read_file(path, lim.max_file_bytes, &buf, &len, err) < 0)
        return -1;
    int rc = image_load_resized(buf, len, t->height, t->width, t->channels, t->resize, t->dct_scaling, &lim, out,
                                info, path, err);
    free(buf);
    return rc;
}
