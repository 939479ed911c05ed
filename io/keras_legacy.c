/* Legacy Keras .h5 files (save_weights() and model.save() of Keras 2, tf-keras and Keras 3):
 * layer_names, per-layer weight_names, nested models split into their inner layers (see
 * docs/formats-model.md, "Legacy .h5" and "Nested models are flattened"). */
#include "keras_internal.h"
#include "h5util.h"

#include <hdf5.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "conv/conv2d/kernel:0" -> owner "conv2d", short "kernel"; "kernel:0" -> owner "", short
 * "kernel". The ":0" (TF variable output index) is dropped. */
static void split_weight_name(const char *w, char *owner, size_t ocap, char *shrt, size_t scap)
{
    const char *slash = strrchr(w, '/');
    const char *s = slash ? slash + 1 : w;
    snprintf(shrt, scap, "%s", s);
    char *colon = strrchr(shrt, ':');
    if (colon && colon[1]) {
        char *q = colon + 1;
        while (*q && isdigit((unsigned char)*q))
            q++;
        if (!*q)
            *colon = 0;
    }
    owner[0] = 0;
    if (slash) {
        const char *end = slash, *beg = slash;
        while (beg > w && beg[-1] != '/')
            beg--;
        snprintf(owner, ocap, "%.*s", (int)(end - beg), beg);
    }
}

/* One group G of layer_names (at gpath): one entry, or one per inner layer of a nested
 * model. */
static int index_group(keras_file *kf, const char *G, const char *gpath, keras_layer_list *out,
                       const keras_cfg_map *cfg, rb_error *err)
{
    const char *path = kf->path;
    hid_t lg = H5Gopen2((hid_t)kf->h5, gpath, H5P_DEFAULT);
    if (lg < 0)
        return rb_fail(err, NULL, "%s: cannot open group %s", path, gpath);
    char **wn = NULL;
    int nw = 0;
    int r = keras_attr_strings(lg, "weight_names", &wn, &nw, path, gpath, err);
    H5Gclose(lg);
    if (r < 0)
        return -1;
    /* the owner of each weight: the layer named inside the weight name */
    char (*owner)[256] = nw ? calloc((size_t)nw, sizeof *owner) : NULL;
    char (*shrt)[256] = nw ? calloc((size_t)nw, sizeof *shrt) : NULL;
    if (nw && (!owner || !shrt)) {
        free(owner);
        free(shrt);
        h5_strings_free(wn, nw);
        return rb_fail(err, NULL, "out of memory");
    }
    int all_self = 1, one_other = 1;
    for (int j = 0; j < nw; j++) {
        split_weight_name(wn[j], owner[j], sizeof owner[j], shrt[j], sizeof shrt[j]);
        if (!owner[j][0])
            snprintf(owner[j], sizeof owner[j], "%s", G);
        if (strcmp(owner[j], G) != 0)
            all_self = 0;
        if (strcmp(owner[j], owner[0]) != 0)
            one_other = 0;
    }
    /* Plain layer: every weight is named after the group. Nested model: weights named
     * after the inner layers ("Conv1/kernel:0"), one entry per inner layer. A single
     * other owner may be either (a renamed layer); it answers to both names. */
    int n_ent = 0;
    const char *owners[1024];
    if (nw == 0 || all_self) {
        owners[n_ent++] = G;
    } else {
        for (int j = 0; j < nw; j++) {
            int seen = 0;
            for (int k = 0; k < n_ent; k++)
                seen |= strcmp(owners[k], owner[j]) == 0;
            if (!seen && n_ent < 1024)
                owners[n_ent++] = owner[j];
        }
    }
    int fail = 0;
    for (int k = 0; k < n_ent && !fail; k++) {
        keras_layer_info *e = keras_layer_list_add(out);
        if (!e) {
            fail = rb_fail(err, NULL, "%s: too many layers", path);
            break;
        }
        e->name = keras_strdup(owners[k]);
        e->where = (nw == 0 || all_self) ? keras_strdup(gpath)
                                         : keras_asprintf("%s/%s", gpath, owners[k]);
        if (nw && !all_self && one_other)
            e->alias = keras_strdup(G);
        const keras_cfg_layer *c = cfg ? keras_cfg_by_name(cfg, owners[k]) : NULL;
        if (c && c->klass[0])
            e->klass = keras_strdup(c->klass);
        int cnt = 0;
        for (int j = 0; j < nw; j++)
            cnt += (nw == 0 || all_self) || strcmp(owner[j], owners[k]) == 0;
        e->t = cnt ? calloc((size_t)cnt, sizeof *e->t) : NULL;
        if (!e->name || !e->where || (cnt && !e->t)) {
            fail = rb_fail(err, NULL, "out of memory");
            break;
        }
        for (int j = 0; j < nw && !fail; j++) {
            if (!(all_self || strcmp(owner[j], owners[k]) == 0))
                continue;
            keras_tensor_info *t = &e->t[e->n++];
            t->name = keras_strdup(shrt[j]);
            char dpath[4096];
            snprintf(dpath, sizeof dpath, "%s/%s", gpath, wn[j]);
            if (!t->name || keras_tensor_probe((hid_t)kf->h5, dpath, t, path, err) < 0)
                fail = -1;
        }
    }
    free(owner);
    free(shrt);
    h5_strings_free(wn, nw);
    return fail ? -1 : 0;
}

int keras_index_legacy(keras_file *kf, const char *root, keras_layer_list *out,
                       const keras_cfg_map *cfg, rb_error *err)
{
    const char *path = kf->path;
    hid_t g = H5Gopen2((hid_t)kf->h5, root, H5P_DEFAULT);
    if (g < 0)
        return rb_fail(err, NULL, "%s: cannot open group %s", path, root);
    char **lnames = NULL;
    int nl = 0, rc = -1;
    int r = keras_attr_strings(g, "layer_names", &lnames, &nl, path, root, err);
    if (r != 0) {
        if (r == 1)
            rb_fail(err, NULL, "%s: group %s has no layer_names attribute", path, root);
        H5Gclose(g);
        return -1;
    }
    if (keras_attr_string(g, "keras_version", kf->keras_version, sizeof kf->keras_version, path,
                          err) < 0)
        goto done;
    if (!kf->keras_version[0] &&
        keras_attr_string((hid_t)kf->h5, "keras_version", kf->keras_version,
                          sizeof kf->keras_version, path, err) < 0)
        goto done;
    const char *sep = strcmp(root, "/") == 0 ? "" : "/";
    for (int i = 0; i < nl; i++) {
        const char *G = lnames[i];
        char gpath[4096];
        snprintf(gpath, sizeof gpath, "%s%s%s", root, sep, G);
        if (!h5_exists((hid_t)kf->h5, gpath)) {
            rb_fail(err, "the file is incomplete or not written by Keras",
                    "%s: layer_names lists '%s' but there is no group %s", path, G, gpath);
            goto done;
        }
        if (index_group(kf, G, gpath, out, cfg, err) < 0)
            goto done;
    }
    rc = 0;
done:
    h5_strings_free(lnames, nl);
    H5Gclose(g);
    return rc;
}
