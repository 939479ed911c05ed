/* Keras weight import (see keras_import.h and docs/formats-model.md): the file's layer list
 * (keras_file.c) matched against the model's views by layer name, and the report. Nothing is
 * read from a dataset until a whole layer has matched (every shape checked), so a skipped
 * layer stays untouched. */
#include "keras_internal.h"
#include "h5util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void keras_import_report_free(keras_import_report *r)
{
    if (!r)
        return;
    h5_strings_free(r->skipped, r->n_skipped);
    h5_strings_free(r->unused, r->n_unused);
    h5_strings_free(r->skipped_layer, r->n_skipped);
    memset(r, 0, sizeof *r);
}

static int push_string(char ***v, int *n, char *s)
{
    if (!s)
        return -1;
    char **g = realloc(*v, (size_t)(*n + 1) * sizeof *g);
    if (!g) {
        free(s);
        return -1;
    }
    g[(*n)++] = s;
    *v = g;
    return 0;
}

static int levenshtein(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 255 || nb > 255)
        return 1 << 20;
    int row[256];
    for (size_t j = 0; j <= nb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int cur = row[j];
            int sub = prev + (a[i - 1] != b[j - 1]);
            int del = row[j] + 1, ins = row[j - 1] + 1;
            row[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = cur;
        }
    }
    return row[nb];
}

/* "near names in the file: 'dense_1', 'dense_2'" or a sample of the file's layers. */
static void near_names(const keras_file *kf, const char *name, char *buf, size_t cap)
{
    int best[5], bestd[5], nb = 0;
    int limit = (int)strlen(name) / 2;
    if (limit < 2)
        limit = 2;
    for (int i = 0; i < kf->n_layers; i++) {
        const char *c = kf->layers[i].name;
        int d = levenshtein(name, c);
        if (strstr(c, name) || strstr(name, c))
            d = d < limit ? d : limit;
        if (d > limit)
            continue;
        int dup = 0;
        for (int k = 0; k < nb; k++)
            dup |= strcmp(kf->layers[best[k]].name, c) == 0;
        if (dup)
            continue;
        int pos = nb < 5 ? nb++ : 5;
        if (pos == 5) {
            if (d >= bestd[4])
                continue;
            pos = 4;
        }
        while (pos > 0 && bestd[pos - 1] > d) {
            best[pos] = best[pos - 1];
            bestd[pos] = bestd[pos - 1];
            pos--;
        }
        best[pos] = i;
        bestd[pos] = d;
    }
    size_t o = 0;
    if (nb > 0) {
        o += (size_t)snprintf(buf, cap, "near names in the file: ");
        for (int k = 0; k < nb && o < cap; k++)
            o += (size_t)snprintf(buf + o, cap - o, "%s'%s'", k ? ", " : "",
                                  kf->layers[best[k]].name);
        return;
    }
    int with_w = 0;
    for (int i = 0; i < kf->n_layers; i++)
        with_w += kf->layers[i].n > 0;
    o += (size_t)snprintf(buf, cap, "no similar name; the file has %d layers with weights", with_w);
    int shown = 0;
    for (int i = 0; i < kf->n_layers && shown < 4 && o < cap; i++)
        if (kf->layers[i].n > 0)
            o += (size_t)snprintf(buf + o, cap - o, "%s'%s'", shown++ ? ", " : ", e.g. ",
                                  kf->layers[i].name);
}

/* Keras 3 calls DepthwiseConv2D's kernel "kernel", Keras 2 "depthwise_kernel". */
static const char *canon(const char *w)
{
    return w && strcmp(w, "depthwise_kernel") == 0 ? "kernel" : w;
}

static void names_str(char *buf, size_t cap, const keras_layer_info *e,
                      const rb_param_view *views, const int *vi, int nv)
{
    size_t o = 0;
    buf[0] = 0;
    if (e) {
        for (int i = 0; i < e->n && o < cap; i++)
            o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? ", " : "",
                                  e->t[i].name ? e->t[i].name : "?");
    } else {
        for (int i = 0; i < nv && o < cap; i++)
            o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", views[vi[i]].weight);
    }
}

/* Pair the file layer's tensors with the model layer's views: by weight name when the file
 * names them, else by position (what Keras itself does). perm[i]: file tensor of view vi[i].
 * Returns 0, or 1 with a mismatch description in why. */
static int plan_layer(const keras_layer_info *e, const rb_param_view *views, const int *vi,
                      int nv, int *perm, char *why, size_t cap)
{
    char a[512], b[512];
    if (e->n != nv) {
        names_str(a, sizeof a, e, NULL, NULL, 0);
        names_str(b, sizeof b, NULL, views, vi, nv);
        snprintf(why, cap, "the file has %d weight%s (%s), the model %d (%s)", e->n,
                 e->n == 1 ? "" : "s", a, nv, b);
        return 1;
    }
    int named = 1;
    for (int i = 0; i < e->n; i++)
        named &= e->t[i].name != NULL;
    for (int i = 0; i < nv; i++) {
        perm[i] = i;
        if (!named)
            continue;
        int hit = -1, hits = 0;
        for (int j = 0; j < e->n; j++)
            if (strcmp(canon(e->t[j].name), canon(views[vi[i]].weight)) == 0) {
                hit = j;
                hits++;
            }
        if (hits != 1) {
            names_str(a, sizeof a, e, NULL, NULL, 0);
            names_str(b, sizeof b, NULL, views, vi, nv);
            snprintf(why, cap, "weight '%s' %s in the file (file: %s; model: %s)",
                     views[vi[i]].weight, hits ? "is not unique" : "is not", a, b);
            return 1;
        }
        perm[i] = hit;
    }
    for (int i = 0; i < nv; i++) {
        const keras_tensor_info *t = &e->t[perm[i]];
        const rb_param_view *v = &views[vi[i]];
        int same = t->ndim == v->ndim;
        for (int d = 0; same && d < t->ndim; d++)
            same = t->shape[d] == v->shape[d];
        if (!same) {
            h5_shape_str(a, sizeof a, t->ndim, t->shape);
            h5_shape_str(b, sizeof b, v->ndim, v->shape);
            snprintf(why, cap, "weight '%s': shape %s in the file (%s), %s in the model",
                     v->weight, a, t->dataset, b);
            return 1;
        }
        if (!t->is_float) {
            snprintf(why, cap, "weight '%s': dataset %s is not floating point", v->weight,
                     t->dataset);
            return 1;
        }
    }
    return 0;
}

/* Record a skipped model layer of nv tensors with its reason (why is owned, may be NULL). */
static int report_skip(keras_import_report *rep, const char *layer, int nv, char *why)
{
    int n = rep->n_skipped;
    if (push_string(&rep->skipped, &rep->n_skipped, why) < 0)
        return -1;
    int m = n;
    if (push_string(&rep->skipped_layer, &m, keras_strdup(layer)) < 0) {
        free(rep->skipped[--rep->n_skipped]); /* keep both lists the same length */
        return -1;
    }
    rep->n_tensors_skipped += nv;
    return 0;
}

/* The file layer answering to model layer L (by name, else by alias) into *cand, -1 when
 * there is none; an error when more than one answers. */
static int find_file_layer(const keras_file *kf, const char *path, const char *L, int *cand,
                           rb_error *err)
{
    int n_cand = 0;
    *cand = -1;
    for (int pass = 0; pass < 2 && n_cand == 0; pass++)
        for (int j = 0; j < kf->n_layers; j++) {
            const char *nm = pass == 0 ? kf->layers[j].name : kf->layers[j].alias;
            if (nm && strcmp(nm, L) == 0) {
                if (n_cand == 0)
                    *cand = j;
                n_cand++;
            }
        }
    if (n_cand <= 1)
        return 0;
    char where[1024];
    size_t o = 0;
    for (int j = 0, k = 0; j < kf->n_layers && o < sizeof where; j++)
        if (strcmp(kf->layers[j].name, L) == 0 ||
            (kf->layers[j].alias && strcmp(kf->layers[j].alias, L) == 0))
            o += (size_t)snprintf(where + o, sizeof where - o, "%s%s", k++ ? ", " : "",
                                  kf->layers[j].where);
    return rb_fail(err, "the file's layer names are not unique (a file written without layer "
                   "names); save it with Keras 3 or with save_weights() to an .h5",
                   "%s: layer '%s' is ambiguous: %d layers of the file answer to it (%s)", path,
                   L, n_cand, where);
}

/* STRICT with the model's layer list: the class the file names must be the model's. */
static int check_class(const keras_layer_info *e, const rb_layer_view *layers, int n_layers,
                       const char *path, const char *L, rb_error *err)
{
    if (!layers || !e->klass)
        return 0;
    for (int k = 0; k < n_layers; k++)
        if (strcmp(layers[k].name, L) == 0 && layers[k].klass &&
            strcmp(layers[k].klass, e->klass) != 0)
            return rb_fail(err, "the file belongs to another architecture",
                           "%s: layer '%s' is a %s in the file but a %s in the model", path, L,
                           e->klass, layers[k].klass);
    return 0;
}

/* What one import needs to hand from step to step. */
typedef struct {
    const char *path;
    const keras_file *kf;
    const rb_param_view *views;
    const rb_layer_view *layers;
    int n_layers;
    unsigned flags;
    keras_import_report *rep;
    int *perm; /* [n_views] file tensor of each view of the layer */
    char *used; /* [kf->n_layers] file layers taken */
} import_run;

/* Model layer L, whose views are vi[0..nv): skipped (reported) or loaded. */
static int import_layer(import_run *r, const char *L, const int *vi, int nv, rb_error *err)
{
    const keras_file *kf = r->kf;
    keras_import_report *rep = r->rep;
    int cand;
    if (find_file_layer(kf, r->path, L, &cand, err) < 0)
        return -1;
    if (cand < 0) {
        char near[600];
        near_names(kf, L, near, sizeof near);
        if (r->flags & KERAS_IMPORT_SKIP_MISSING) {
            if (report_skip(rep, L, nv, keras_asprintf("%s: not in the file", L)) < 0)
                return rb_fail(err, NULL, "out of memory");
            return 0;
        }
        return rb_fail(err, "check the layer names (radbatch inspect lists a file's layers); "
                       "skip_missing leaves the model's new layers at their initial values",
                       "%s: layer '%s' of the model is not in the file; %s", r->path, L, near);
    }
    const keras_layer_info *e = &kf->layers[cand];
    r->used[cand] = 1;
    if ((r->flags & KERAS_IMPORT_STRICT) &&
        check_class(e, r->layers, r->n_layers, r->path, L, err) < 0)
        return -1;
    char why[1500];
    if (plan_layer(e, r->views, vi, nv, r->perm, why, sizeof why)) {
        if (r->flags & KERAS_IMPORT_SKIP_MISMATCH) {
            if (report_skip(rep, L, nv, keras_asprintf("%s: %s", L, why)) < 0)
                return rb_fail(err, NULL, "out of memory");
            return 0;
        }
        return rb_fail(err, "the file was saved from another architecture or head; "
                       "skip_mismatch leaves such layers at their initial values",
                       "%s: layer '%s' (file: %s): %s", r->path, L, e->where, why);
    }
    for (int i = 0; i < nv; i++) {
        const rb_param_view *v = &r->views[vi[i]];
        int64_t n = keras_numel(v->ndim, v->shape);
        if (keras_file_read_quiet(kf, &e->t[r->perm[i]], v->data, n, err) < 0)
            return rb_error_prefix(err, "layer '%s' weight '%s': ", L, v->weight);
        rep->n_tensors++;
        rep->n_values += n;
    }
    rep->n_layers_loaded++;
    return 0;
}

/* The file layers with weights that no model layer took; with STRICT, an error. */
static int report_unused(const import_run *r, rb_error *err)
{
    const keras_file *kf = r->kf;
    keras_import_report *rep = r->rep;
    for (int j = 0; j < kf->n_layers; j++) {
        if (r->used[j] || kf->layers[j].n == 0)
            continue;
        if (push_string(&rep->unused, &rep->n_unused, keras_strdup(kf->layers[j].name)) < 0)
            return rb_fail(err, NULL, "out of memory");
    }
    if (!(r->flags & KERAS_IMPORT_STRICT) || rep->n_unused == 0)
        return 0;
    char list[800];
    size_t o = 0;
    for (int i = 0; i < rep->n_unused && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s'%s'", i ? ", " : "", rep->unused[i]);
    return rb_fail(err, "drop strict to load a file holding more layers than the model (by name)",
                   "%s: %d layer%s with weights in the file %s not in the model: %s", r->path,
                   rep->n_unused, rep->n_unused == 1 ? "" : "s",
                   rep->n_unused == 1 ? "is" : "are", list);
}

static int keras_import_load_quiet(const char *path, const rb_param_view *views, int n_views,
                                   const rb_layer_view *layers, int n_layers, unsigned flags,
                                   keras_import_report *rep, rb_error *err)
{
    keras_file *kf = NULL;
    if (keras_file_open_quiet(path, &kf, err) < 0)
        return -1;
    rep->format = kf->format;
    snprintf(rep->keras_version, sizeof rep->keras_version, "%s", kf->keras_version);
    rep->n_tensors_model = n_views;

    int rc = -1;
    import_run r = {
        .path = path,
        .kf = kf,
        .views = views,
        .layers = layers,
        .n_layers = n_layers,
        .flags = flags,
        .rep = rep,
        .perm = malloc((size_t)(n_views ? n_views : 1) * sizeof *r.perm),
        .used = calloc((size_t)(kf->n_layers ? kf->n_layers : 1), 1),
    };
    int *vi = malloc((size_t)(n_views ? n_views : 1) * sizeof *vi);
    char *done_view = calloc((size_t)(n_views ? n_views : 1), 1);
    if (!vi || !r.perm || !done_view || !r.used) {
        rb_fail(err, NULL, "out of memory");
        goto done;
    }
    for (int first = 0; first < n_views; first++) {
        if (done_view[first])
            continue;
        /* the model layer of views[first]: all its views, in the model's order */
        const char *L = views[first].layer;
        int nv = 0;
        for (int i = first; i < n_views; i++)
            if (!done_view[i] && strcmp(views[i].layer, L) == 0) {
                vi[nv++] = i;
                done_view[i] = 1;
            }
        if (import_layer(&r, L, vi, nv, err) < 0)
            goto done;
    }
    if (report_unused(&r, err) < 0)
        goto done;
    rc = 0;
done:
    free(vi);
    free(r.perm);
    free(done_view);
    free(r.used);
    keras_file_close(kf);
    return rc;
}

int keras_import_load(const char *path, const rb_param_view *views, int n_views,
                      const rb_layer_view *layers, int n_layers, unsigned flags,
                      keras_import_report *report, rb_error *err)
{
    keras_import_report local;
    keras_import_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = keras_import_load_quiet(path, views, n_views, layers, n_layers, flags, rep, err);
    h5_quiet_end(&q);
    if (!report)
        keras_import_report_free(&local);
    return rc;
}
