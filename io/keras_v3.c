/* Keras 3 .weights.h5 files (also inside .keras archives): layers/<path>/vars/<i>, walked
 * recursively, names from the vars@name attribute or the model config (see
 * docs/formats-model.md, "Keras 3 files"). */
#include "keras_internal.h"
#include "h5util.h"

#include <hdf5.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char **v;
    int n, cap;
} name_list;

static herr_t collect_child(hid_t g, const char *name, const H5L_info_t *info, void *op)
{
    (void)g;
    (void)info;
    name_list *l = op;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n] = keras_strdup(name);
    if (!l->v[l->n])
        return -1;
    l->n++;
    return 0;
}

static int list_children(hid_t file, const char *gpath, name_list *l, const char *path,
                         rb_error *err)
{
    memset(l, 0, sizeof *l);
    hid_t g = H5Gopen2(file, gpath, H5P_DEFAULT);
    if (g < 0)
        return rb_fail(err, NULL, "%s: cannot open group %s", path, gpath);
    herr_t r = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_child, l);
    H5Gclose(g);
    if (r < 0) {
        h5_strings_free(l->v, l->n);
        memset(l, 0, sizeof *l);
        return rb_fail(err, NULL, "%s: cannot list group %s", path, gpath);
    }
    return 0;
}

static int is_group(hid_t file, const char *p)
{
    H5O_info_t oi;
    return H5Oget_info_by_name(file, p, &oi, H5P_DEFAULT) >= 0 && oi.type == H5O_TYPE_GROUP;
}

/* Normalize the Keras 2.13 spelling of nested paths to the Keras 3 one. */
static void normalize_v3_path(const char *in, char *out, size_t cap)
{
    const char *from = "_layer_checkpoint_dependencies";
    size_t o = 0;
    while (*in && o + 1 < cap) {
        if (strncmp(in, from, strlen(from)) == 0) {
            o += (size_t)snprintf(out + o, cap - o, "layers");
            in += strlen(from);
        } else {
            out[o++] = *in++;
        }
    }
    out[o < cap ? o : cap - 1] = 0;
}

/* One group `p` (relative path, "" = root) of a Keras 3 weights file. */
int keras_walk_v3(keras_file *kf, const char *p, keras_layer_list *out, const keras_cfg_map *cfg,
                  int depth, rb_error *err)
{
    if (depth > MAX_DEPTH)
        return rb_fail(err, NULL, "%s: groups nested deeper than %d", kf->path, MAX_DEPTH);
    hid_t file = (hid_t)kf->h5;
    char gpath[4096];
    snprintf(gpath, sizeof gpath, "/%s", p);
    name_list ch;
    if (list_children(file, gpath, &ch, kf->path, err) < 0)
        return -1;
    int rc = 0, has_vars = 0, has_sub = 0;
    for (int i = 0; i < ch.n && rc == 0; i++) {
        char cp[4096];
        snprintf(cp, sizeof cp, "%s%s%s", p, p[0] ? "/" : "", ch.v[i]);
        char abs[4100];
        snprintf(abs, sizeof abs, "/%s", cp);
        if (!is_group(file, abs))
            continue;
        if (strcmp(ch.v[i], "vars") == 0) {
            has_vars = 1;
            continue;
        }
        /* the optimizer's variables live beside the model's; they are not weights */
        if (depth == 0 && strcmp(ch.v[i], "optimizer") == 0)
            continue;
        has_sub = 1;
        rc = keras_walk_v3(kf, cp, out, cfg, depth + 1, err);
    }
    h5_strings_free(ch.v, ch.n);
    if (rc < 0 || !has_vars || depth == 0)
        return rc; /* the root's own vars are the model object's, empty for Keras models */

    char vpath[4200];
    snprintf(vpath, sizeof vpath, "/%s/vars", p);
    name_list vars;
    if (list_children(file, vpath, &vars, kf->path, err) < 0)
        return -1;
    int n = vars.n;
    h5_strings_free(vars.v, vars.n);
    if (n == 0 && has_sub)
        return 0; /* a container (nested model) without variables of its own */

    char norm[4096];
    normalize_v3_path(p, norm, sizeof norm);
    const keras_cfg_layer *c = cfg ? keras_cfg_by_path(cfg, norm) : NULL;
    char name[512] = "";
    hid_t vg = H5Gopen2(file, vpath, H5P_DEFAULT);
    if (vg < 0)
        return rb_fail(err, NULL, "%s: cannot open group %s", kf->path, vpath);
    rc = keras_attr_string(vg, "name", name, sizeof name, kf->path, err);
    H5Gclose(vg);
    if (rc < 0)
        return -1;
    if (!c && name[0] && cfg)
        c = keras_cfg_by_name(cfg, name);
    if (!name[0] && c && c->name[0])
        snprintf(name, sizeof name, "%s", c->name);
    if (!name[0]) { /* no name in the file: the group's own (automatic) name */
        const char *b = strrchr(p, '/');
        snprintf(name, sizeof name, "%s", b ? b + 1 : p);
    }

    keras_layer_info *e = keras_layer_list_add(out);
    if (!e)
        return rb_fail(err, NULL, "%s: too many layers", kf->path);
    e->name = keras_strdup(name);
    e->where = keras_strdup(p);
    e->klass = c && c->klass[0] ? keras_strdup(c->klass) : NULL;
    e->t = n ? calloc((size_t)n, sizeof *e->t) : NULL;
    if (!e->name || !e->where || (n && !e->t))
        return rb_fail(err, NULL, "out of memory");
    const char *vn[16];
    int nvn = c ? keras_var_names(c->klass, c->config, vn, 16) : -1;
    for (int i = 0; i < n; i++) {
        keras_tensor_info *t = &e->t[e->n++];
        char dpath[4300];
        snprintf(dpath, sizeof dpath, "/%s/vars/%d", p, i);
        if (keras_tensor_probe(file, dpath, t, kf->path, err) < 0)
            return -1;
        if (nvn == n) {
            t->name = keras_strdup(vn[i]);
            if (!t->name)
                return rb_fail(err, NULL, "out of memory");
        }
    }
    /* integer-only variables are RNG states (seed generators), not weights */
    int any_float = 0;
    for (int i = 0; i < e->n; i++)
        any_float |= e->t[i].is_float != 0;
    if (e->n > 0 && !any_float) {
        keras_layer_info_free(e);
        out->n--;
    }
    return 0;
}
