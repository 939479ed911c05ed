/* Keras weight import (see keras_import.h and docs/formats-model.md).
 *
 * The file is first indexed into a flat list of layers (name, class, tensors with shapes
 * and dataset paths), whatever the format; matching against the model's views then works
 * on that list only. Nothing is read from a dataset until a whole layer has matched. */
#include "keras_import.h"
#include "h5util.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <zip.h>

#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "keras_file stores hid_t as int64_t");

/* Limits against hostile or broken files: nobody has a 4 GiB weight file or a 256 MiB
 * config.json, and a model with more than 100k layers is not a Keras model. */
#define MAX_WEIGHTS_BYTES ((zip_uint64_t)4 << 30)
#define MAX_CONFIG_BYTES ((zip_uint64_t)256 << 20)
#define MAX_LAYERS 100000
#define MAX_DEPTH 64

const char *keras_format_name(keras_format f)
{
    switch (f) {
    case KERAS_FORMAT_H5: return "keras-h5 (save_weights)";
    case KERAS_FORMAT_H5_MODEL: return "keras-h5 (model.save, /model_weights)";
    case KERAS_FORMAT_WEIGHTS_H5: return "keras3 .weights.h5";
    case KERAS_FORMAT_ARCHIVE: return "keras .keras archive";
    default: return "unknown";
    }
}

/* ---------------------------------------------------------------- small helpers */

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Does `path` (absolute or relative to loc) name an existing object? Checks every
 * component, since H5Lexists fails on a missing intermediate group. */
static int h5_exists(hid_t loc, const char *path)
{
    char buf[4096];
    if (strlen(path) >= sizeof buf)
        return 0;
    strcpy(buf, path);
    for (char *p = buf + (buf[0] == '/'); *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        htri_t e = H5Lexists(loc, buf, H5P_DEFAULT);
        *p = '/';
        if (e <= 0)
            return 0;
    }
    return H5Lexists(loc, buf, H5P_DEFAULT) > 0;
}

/* A string attribute as Keras writes it (scalar or 1-D array, fixed or variable length, ASCII
 * or UTF-8) into a malloc'd array of malloc'd strings. Keras writes an empty list as a float64
 * array of shape (0,); that reads as zero strings. Returns 1 when the attribute is absent. */
static int h5_attr_strings_one(hid_t obj, const char *attr, char ***out, int *n_out,
                               const char *file, const char *objname, rb_error *err)
{
    const h5_strs_spec spec = {
        .file = file,
        .object = objname,
        .max_n = MAX_LAYERS * 16,
        .max_fixed = 65536,
        .flags = H5_STRS_FILE_CSET | H5_STRS_EMPTY_NUMERIC | H5_STRS_STRIP_SPACEPAD,
    };
    return h5_attr_read_strs(obj, attr, &spec, out, n_out, err);
}

/* Keras splits attributes above HDF5's 64 KiB header limit into `name0`, `name1`, ...
 * (saving_utils.save_attributes_to_hdf5_group); read either form. 1 when absent. */
static int h5_attr_strings(hid_t obj, const char *attr, char ***out, int *n_out,
                           const char *file, const char *objname, rb_error *err)
{
    int rc = h5_attr_strings_one(obj, attr, out, n_out, file, objname, err);
    if (rc != 1)
        return rc;
    char **all = NULL;
    int n_all = 0;
    for (int chunk = 0;; chunk++) {
        char name[160];
        snprintf(name, sizeof name, "%s%d", attr, chunk);
        char **part;
        int n_part;
        rc = h5_attr_strings_one(obj, name, &part, &n_part, file, objname, err);
        if (rc < 0) {
            h5_strings_free(all, n_all);
            return -1;
        }
        if (rc == 1)
            break;
        char **grown = realloc(all, (size_t)(n_all + n_part + 1) * sizeof *grown);
        if (!grown) {
            h5_strings_free(part, n_part);
            h5_strings_free(all, n_all);
            return rb_fail(err, NULL, "out of memory reading %s:%s", file, attr);
        }
        all = grown;
        memcpy(all + n_all, part, (size_t)n_part * sizeof *part);
        n_all += n_part;
        free(part);
    }
    if (!all)
        return 1;
    *out = all;
    *n_out = n_all;
    return 0;
}

/* A scalar string attribute into buf ("" when absent). */
static int h5_attr_string(hid_t obj, const char *attr, char *buf, size_t cap, const char *file,
                          rb_error *err)
{
    buf[0] = 0;
    char **v;
    int n;
    int rc = h5_attr_strings_one(obj, attr, &v, &n, file, attr, err);
    if (rc < 0)
        return -1;
    if (rc == 0 && n >= 1)
        snprintf(buf, cap, "%s", v[0]);
    if (rc == 0)
        h5_strings_free(v, n);
    return 0;
}

/* ---------------------------------------------------------------- the layer list */

typedef struct {
    keras_layer_info *v;
    int n, cap;
} layer_list;

static keras_layer_info *layer_list_add(layer_list *l)
{
    if (l->n >= MAX_LAYERS)
        return NULL;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        keras_layer_info *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    keras_layer_info *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static void layer_info_free(keras_layer_info *e)
{
    for (int i = 0; i < e->n; i++) {
        free(e->t[i].name);
        free(e->t[i].dataset);
    }
    free(e->t);
    free(e->name);
    free(e->alias);
    free(e->klass);
    free(e->where);
}

/* Shape and type of a dataset; fails naming it when absent. */
static int tensor_probe(hid_t file, const char *dset, keras_tensor_info *t, const char *path,
                        rb_error *err)
{
    t->dataset = xstrdup(dset);
    if (!t->dataset)
        return rb_fail(err, NULL, "out of memory");
    if (!h5_exists(file, dset))
        return rb_fail(err, "the file is incomplete or not written by Keras",
                       "%s: dataset %s is listed but missing", path, dset);
    hid_t d = H5Dopen2(file, dset, H5P_DEFAULT);
    if (d < 0)
        return rb_fail(err, "the file may be damaged", "%s: cannot open dataset %s", path, dset);
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    int rc = 0;
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (nd < 0 || nd > 8 || ty < 0) {
        rc = rb_fail(err, NULL, "%s: dataset %s has an unsupported shape (rank %d)", path, dset,
                     nd);
    } else {
        hsize_t dims[8];
        H5Sget_simple_extent_dims(sp, dims, NULL);
        t->ndim = nd;
        for (int i = 0; i < nd; i++)
            t->shape[i] = (int64_t)dims[i];
        H5T_class_t c = H5Tget_class(ty);
        t->is_float = c == H5T_FLOAT;
        /* Keras 3 stores bfloat16 variables as uint16 with attribute dtype="bfloat16" */
        if (c == H5T_INTEGER && H5Tget_size(ty) == 2 && H5Aexists(d, "dtype") > 0) {
            char dt[32];
            if (h5_attr_string(d, "dtype", dt, sizeof dt, path, err) == 0 &&
                strcmp(dt, "bfloat16") == 0)
                t->is_float = 2;
        }
    }
    if (ty >= 0)
        H5Tclose(ty);
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

/* ---------------------------------------------------------------- config.json */

/* Every layer of a Keras config, with the path Keras 3 gives its weights in the
 * .weights.h5 (layers/<snake_case(class)>[_k], nested models recursively). */
typedef struct {
    char *path, *name, *klass;
    const cJSON *config;
} cfg_layer;

typedef struct {
    cfg_layer *v;
    int n, cap;
} cfg_map;

static void cfg_map_free(cfg_map *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->v[i].path);
        free(m->v[i].name);
        free(m->v[i].klass);
    }
    free(m->v);
    memset(m, 0, sizeof *m);
}

/* keras.src.utils.naming.to_snake_case: drop non-word characters, then
 * re.sub("(.)([A-Z][a-z]+)", r"\1_\2"), re.sub("([a-z])([A-Z])", r"\1_\2"), lower(). */
static void snake_case(const char *in, char *out, size_t cap)
{
    char a[256], b[512];
    size_t na = 0, nb = 0;
    for (const char *p = in; *p && na + 1 < sizeof a; p++)
        if (isalnum((unsigned char)*p) || *p == '_')
            a[na++] = *p;
    a[na] = 0;
    for (size_t i = 0; i < na && nb + 3 < sizeof b;) {
        if (i + 2 < na + 1 && isupper((unsigned char)a[i + 1]) &&
            islower((unsigned char)a[i + 2])) {
            size_t j = i + 2;
            while (j < na && islower((unsigned char)a[j]))
                j++;
            b[nb++] = a[i];
            b[nb++] = '_';
            for (size_t k = i + 1; k < j && nb + 1 < sizeof b; k++)
                b[nb++] = a[k];
            i = j;
        } else {
            b[nb++] = a[i++];
        }
    }
    b[nb] = 0;
    size_t o = 0;
    for (size_t i = 0; i < nb && o + 3 < cap;) {
        if (i + 1 < nb && islower((unsigned char)b[i]) && isupper((unsigned char)b[i + 1])) {
            out[o++] = b[i];
            out[o++] = '_';
            out[o++] = (char)tolower((unsigned char)b[i + 1]);
            i += 2;
        } else {
            out[o++] = (char)tolower((unsigned char)b[i]);
            i++;
        }
    }
    out[o] = 0;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int cfg_add(cfg_map *m, const char *path, const char *name, const char *klass,
                   const cJSON *config)
{
    if (m->n >= MAX_LAYERS)
        return -1;
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        cfg_layer *v = realloc(m->v, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        m->v = v;
        m->cap = cap;
    }
    cfg_layer *c = &m->v[m->n];
    c->path = xstrdup(path);
    c->name = xstrdup(name ? name : "");
    c->klass = xstrdup(klass ? klass : "");
    c->config = config;
    if (!c->path || !c->name || !c->klass) {
        free(c->path);
        free(c->name);
        free(c->klass);
        return -1;
    }
    m->n++;
    return 0;
}

/* obj: {"class_name": ..., "config": {"name": ..., "layers": [...]}} of a model. */
static int cfg_walk(cfg_map *m, const cJSON *obj, const char *path, int depth)
{
    if (depth > MAX_DEPTH)
        return 0;
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(obj, "config");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(config, "layers");
    if (!cJSON_IsArray(layers))
        return 0;
    const char *cls = json_str(obj, "class_name");
    /* Sequential.layers (what Keras 3 saves) leaves out the InputLayer its config lists */
    int sequential = cls && strcmp(cls, "Sequential") == 0;
    struct {
        char snake[128];
        int count;
    } used[512];
    int n_used = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, layers)
    {
        const char *lcls = json_str(l, "class_name");
        const cJSON *lcfg = cJSON_GetObjectItemCaseSensitive(l, "config");
        const char *lname = json_str(lcfg, "name");
        if (!lname)
            lname = json_str(l, "name");
        if (!lcls)
            continue;
        if (sequential && strcmp(lcls, "InputLayer") == 0)
            continue;
        char snake[128], unique[160];
        snake_case(lcls, snake, sizeof snake);
        int k = -1;
        for (int i = 0; i < n_used; i++)
            if (strcmp(used[i].snake, snake) == 0)
                k = i;
        if (k < 0 && n_used < (int)(sizeof used / sizeof used[0])) {
            k = n_used++;
            snprintf(used[k].snake, sizeof used[k].snake, "%s", snake);
            used[k].count = -1;
        }
        if (k < 0)
            continue;
        int c = ++used[k].count;
        if (c == 0)
            snprintf(unique, sizeof unique, "%s", snake);
        else
            snprintf(unique, sizeof unique, "%s_%d", snake, c);
        char child[4096];
        snprintf(child, sizeof child, "%s%slayers/%s", path, path[0] ? "/" : "", unique);
        if (cfg_add(m, child, lname, lcls, lcfg) < 0)
            return -1;
        if (cfg_walk(m, l, child, depth + 1) < 0)
            return -1;
    }
    return 0;
}

static const cfg_layer *cfg_by_path(const cfg_map *m, const char *path)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->v[i].path, path) == 0)
            return &m->v[i];
    return NULL;
}

/* By layer name, only when the name is unique in the config. */
static const cfg_layer *cfg_by_name(const cfg_map *m, const char *name)
{
    const cfg_layer *hit = NULL;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->v[i].name, name) == 0) {
            if (hit)
                return NULL;
            hit = &m->v[i];
        }
    return hit;
}

static int json_bool(const cJSON *config, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Keras 3 saves a layer's variables positionally (vars/0, vars/1, ...), in the order its
 * build() creates them. For the classes radbatch has, that order is known; the names are
 * those of Keras 2's weight_names, so both formats match a model the same way. */
static int var_names_for_class(const char *klass, const cJSON *config, const char **names,
                               int cap)
{
    int n = 0;
    if (!klass)
        return -1;
    if (!strcmp(klass, "Conv1D") || !strcmp(klass, "Conv2D") || !strcmp(klass, "Conv3D") ||
        !strcmp(klass, "Conv2DTranspose") || !strcmp(klass, "Dense")) {
        names[n++] = "kernel";
        if (json_bool(config, "use_bias", 1))
            names[n++] = "bias";
    } else if (!strcmp(klass, "DepthwiseConv2D")) {
        names[n++] = "depthwise_kernel";
        if (json_bool(config, "use_bias", 1))
            names[n++] = "bias";
    } else if (!strcmp(klass, "SeparableConv2D")) {
        names[n++] = "depthwise_kernel";
        names[n++] = "pointwise_kernel";
        if (json_bool(config, "use_bias", 1))
            names[n++] = "bias";
    } else if (!strcmp(klass, "BatchNormalization")) {
        if (json_bool(config, "scale", 1))
            names[n++] = "gamma";
        if (json_bool(config, "center", 1))
            names[n++] = "beta";
        names[n++] = "moving_mean";
        names[n++] = "moving_variance";
    } else {
        return -1;
    }
    return n <= cap ? n : -1;
}

/* ---------------------------------------------------------------- legacy .h5 */

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

static int index_legacy(keras_file *kf, const char *root, layer_list *out, const cfg_map *cfg,
                        rb_error *err)
{
    const char *path = kf->path;
    hid_t g = H5Gopen2((hid_t)kf->h5, root, H5P_DEFAULT);
    if (g < 0)
        return rb_fail(err, NULL, "%s: cannot open group %s", path, root);
    char **lnames = NULL;
    int nl = 0, rc = -1;
    int r = h5_attr_strings(g, "layer_names", &lnames, &nl, path, root, err);
    if (r != 0) {
        if (r == 1)
            rb_fail(err, NULL, "%s: group %s has no layer_names attribute", path, root);
        H5Gclose(g);
        return -1;
    }
    if (h5_attr_string(g, "keras_version", kf->keras_version, sizeof kf->keras_version, path,
                       err) < 0)
        goto done;
    if (!kf->keras_version[0] &&
        h5_attr_string((hid_t)kf->h5, "keras_version", kf->keras_version,
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
        hid_t lg = H5Gopen2((hid_t)kf->h5, gpath, H5P_DEFAULT);
        if (lg < 0) {
            rb_fail(err, NULL, "%s: cannot open group %s", path, gpath);
            goto done;
        }
        char **wn = NULL;
        int nw = 0;
        r = h5_attr_strings(lg, "weight_names", &wn, &nw, path, gpath, err);
        H5Gclose(lg);
        if (r < 0)
            goto done;
        /* the owner of each weight: the layer named inside the weight name */
        char (*owner)[256] = nw ? calloc((size_t)nw, sizeof *owner) : NULL;
        char (*shrt)[256] = nw ? calloc((size_t)nw, sizeof *shrt) : NULL;
        if (nw && (!owner || !shrt)) {
            free(owner);
            free(shrt);
            h5_strings_free(wn, nw);
            rb_fail(err, NULL, "out of memory");
            goto done;
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
            keras_layer_info *e = layer_list_add(out);
            if (!e) {
                fail = rb_fail(err, NULL, "%s: too many layers", path);
                break;
            }
            e->name = xstrdup(owners[k]);
            e->where = (nw == 0 || all_self) ? xstrdup(gpath) : xasprintf("%s/%s", gpath, owners[k]);
            if (nw && !all_self && one_other)
                e->alias = xstrdup(G);
            const cfg_layer *c = cfg ? cfg_by_name(cfg, owners[k]) : NULL;
            if (c && c->klass[0])
                e->klass = xstrdup(c->klass);
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
                t->name = xstrdup(shrt[j]);
                char dpath[4096];
                snprintf(dpath, sizeof dpath, "%s/%s", gpath, wn[j]);
                if (!t->name || tensor_probe((hid_t)kf->h5, dpath, t, path, err) < 0)
                    fail = -1;
            }
        }
        free(owner);
        free(shrt);
        h5_strings_free(wn, nw);
        if (fail)
            goto done;
    }
    rc = 0;
done:
    h5_strings_free(lnames, nl);
    H5Gclose(g);
    return rc;
}

/* ---------------------------------------------------------------- Keras 3 .weights.h5 */

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
    l->v[l->n] = xstrdup(name);
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
static int walk_v3(keras_file *kf, const char *p, layer_list *out, const cfg_map *cfg, int depth,
                   rb_error *err)
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
        rc = walk_v3(kf, cp, out, cfg, depth + 1, err);
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
    const cfg_layer *c = cfg ? cfg_by_path(cfg, norm) : NULL;
    char name[512] = "";
    hid_t vg = H5Gopen2(file, vpath, H5P_DEFAULT);
    if (vg < 0)
        return rb_fail(err, NULL, "%s: cannot open group %s", kf->path, vpath);
    rc = h5_attr_string(vg, "name", name, sizeof name, kf->path, err);
    H5Gclose(vg);
    if (rc < 0)
        return -1;
    if (!c && name[0] && cfg)
        c = cfg_by_name(cfg, name);
    if (!name[0] && c && c->name[0])
        snprintf(name, sizeof name, "%s", c->name);
    if (!name[0]) { /* no name in the file: the group's own (automatic) name */
        const char *b = strrchr(p, '/');
        snprintf(name, sizeof name, "%s", b ? b + 1 : p);
    }

    keras_layer_info *e = layer_list_add(out);
    if (!e)
        return rb_fail(err, NULL, "%s: too many layers", kf->path);
    e->name = xstrdup(name);
    e->where = xstrdup(p);
    e->klass = c && c->klass[0] ? xstrdup(c->klass) : NULL;
    e->t = n ? calloc((size_t)n, sizeof *e->t) : NULL;
    if (!e->name || !e->where || (n && !e->t))
        return rb_fail(err, NULL, "out of memory");
    const char *vn[16];
    int nvn = c ? var_names_for_class(c->klass, c->config, vn, 16) : -1;
    for (int i = 0; i < n; i++) {
        keras_tensor_info *t = &e->t[e->n++];
        char dpath[4300];
        snprintf(dpath, sizeof dpath, "/%s/vars/%d", p, i);
        if (tensor_probe(file, dpath, t, kf->path, err) < 0)
            return -1;
        if (nvn == n) {
            t->name = xstrdup(vn[i]);
            if (!t->name)
                return rb_fail(err, NULL, "out of memory");
        }
    }
    /* integer-only variables are RNG states (seed generators), not weights */
    int any_float = 0;
    for (int i = 0; i < e->n; i++)
        any_float |= e->t[i].is_float != 0;
    if (e->n > 0 && !any_float) {
        layer_info_free(e);
        out->n--;
    }
    return 0;
}

/* ---------------------------------------------------------------- opening */

static atomic_int image_counter;

static int read_zip_entry(zip_t *z, const char *archive, const char *name, zip_uint64_t limit,
                          char **buf, size_t *len, rb_error *err)
{
    *buf = NULL;
    *len = 0;
    zip_int64_t idx = zip_name_locate(z, name, 0);
    if (idx < 0)
        return 1;
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, (zip_uint64_t)idx, 0, &st) < 0 || !(st.valid & ZIP_STAT_SIZE))
        return rb_fail(err, NULL, "%s: cannot stat %s in the archive: %s", archive, name,
                       zip_strerror(z));
    if (st.size > limit)
        return rb_fail(err, NULL, "%s: %s is %llu bytes, more than the %llu accepted", archive,
                       name, (unsigned long long)st.size, (unsigned long long)limit);
    char *b = malloc(st.size ? st.size : 1);
    if (!b)
        return rb_fail(err, NULL, "%s: out of memory for %s (%llu bytes)", archive, name,
                       (unsigned long long)st.size);
    zip_file_t *f = zip_fopen_index(z, (zip_uint64_t)idx, 0);
    if (!f) {
        free(b);
        return rb_fail(err, "the archive may be damaged", "%s: cannot open %s: %s", archive,
                       name, zip_strerror(z));
    }
    zip_uint64_t got = 0;
    while (got < st.size) {
        zip_int64_t r = zip_fread(f, b + got, st.size - got);
        if (r <= 0)
            break;
        got += (zip_uint64_t)r;
    }
    int bad = got != st.size;
    if (bad)
        rb_fail(err, "the archive is truncated or damaged", "%s: short read of %s (%llu of %llu bytes): %s",
                archive, name, (unsigned long long)got, (unsigned long long)st.size,
                zip_file_strerror(f));
    zip_fclose(f);
    if (bad) {
        free(b);
        return -1;
    }
    *buf = b;
    *len = (size_t)st.size;
    return 0;
}

/* The archive's model.weights.h5 is opened from memory (HDF5 core driver with a file
 * image: no temporary file, no libhdf5_hl). */
static int open_archive(keras_file *kf, cJSON **config, rb_error *err)
{
    int zerr = 0;
    zip_t *z = zip_open(kf->path, ZIP_RDONLY, &zerr);
    if (!z) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, zerr);
        rb_fail(err, "a .keras file is a zip archive; this one cannot be read",
                "%s: cannot open the archive: %s", kf->path, zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return -1;
    }
    char *w = NULL, *c = NULL, *meta = NULL;
    size_t wn = 0, cn = 0, mn = 0;
    int rc = -1;
    int r = read_zip_entry(z, kf->path, "model.weights.h5", MAX_WEIGHTS_BYTES, &w, &wn, err);
    if (r != 0) {
        if (r == 1) {
            if (zip_name_locate(z, "model.weights.json", 0) >= 0)
                rb_fail(err, "save the model without max_shard_size, or load it in Keras and "
                        "save_weights() to one file",
                        "%s: sharded weights (model.weights.json) are not supported", kf->path);
            else
                rb_fail(err, "a .keras archive holds config.json and model.weights.h5",
                        "%s: no model.weights.h5 in the archive", kf->path);
        }
        goto done;
    }
    r = read_zip_entry(z, kf->path, "config.json", MAX_CONFIG_BYTES, &c, &cn, err);
    if (r < 0)
        goto done;
    if (c) {
        *config = cJSON_ParseWithLength(c, cn);
        if (!*config) {
            rb_fail(err, "the archive may be damaged", "%s: config.json is not valid JSON",
                    kf->path);
            goto done;
        }
    }
    if (read_zip_entry(z, kf->path, "metadata.json", 1 << 20, &meta, &mn, err) < 0)
        goto done;
    if (meta) {
        cJSON *m = cJSON_ParseWithLength(meta, mn);
        const char *v = json_str(m, "keras_version");
        if (v)
            snprintf(kf->keras_version, sizeof kf->keras_version, "%s", v);
        cJSON_Delete(m);
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 20, 0) < 0 ||
        H5Pset_file_image(fapl, w, wn) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        rb_fail(err, NULL, "%s: cannot set up an in-memory HDF5 image", kf->path);
        goto done;
    }
    /* the core driver identifies open files by name: make each image's name unique */
    char label[4200];
    snprintf(label, sizeof label, "%s#model.weights.h5#%d", kf->path,
             atomic_fetch_add(&image_counter, 1));
    hid_t f = H5Fopen(label, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        rb_fail(err, "the archive may be damaged",
                "%s: model.weights.h5 in the archive is not a readable HDF5 file", kf->path);
        goto done;
    }
    kf->h5 = f;
    rc = 0;
done:
    free(w);
    free(c);
    free(meta);
    zip_discard(z);
    return rc;
}

void keras_file_close(keras_file *kf)
{
    if (!kf)
        return;
    for (int i = 0; i < kf->n_layers; i++)
        layer_info_free(&kf->layers[i]);
    free(kf->layers);
    if (kf->h5 > 0)
        H5Fclose((hid_t)kf->h5);
    free(kf->path);
    free(kf);
}

static int keras_file_open_quiet(const char *path, keras_file **out, rb_error *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return rb_fail(err, "check the path", "%s: cannot open: %m", path);
    unsigned char magic[8] = {0};
    size_t got = fread(magic, 1, sizeof magic, fp);
    fclose(fp);

    keras_file *kf = calloc(1, sizeof *kf);
    if (!kf)
        return rb_fail(err, NULL, "out of memory");
    kf->path = xstrdup(path);
    kf->h5 = -1;
    cJSON *config = NULL;
    cfg_map cfg = {0};
    layer_list list = {0};
    int rc = -1;
    if (!kf->path) {
        rb_fail(err, NULL, "out of memory");
        goto done;
    }
    if (got >= 4 && memcmp(magic, "PK\003\004", 4) == 0) {
        kf->format = KERAS_FORMAT_ARCHIVE;
        if (open_archive(kf, &config, err) < 0)
            goto done;
    } else {
        if (H5Fis_hdf5(path) <= 0) {
            rb_fail(err, "accepted: Keras .h5 (save_weights or model.save), .weights.h5, .keras",
                    "%s: neither an HDF5 file nor a .keras (zip) archive", path);
            goto done;
        }
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) {
            rb_fail(err, "the file may be damaged or locked (HDF5_USE_FILE_LOCKING=FALSE)",
                    "%s: cannot open as HDF5", path);
            goto done;
        }
        kf->h5 = f;
    }
    hid_t f = (hid_t)kf->h5;
    /* Which layout? Legacy files carry layer_names; Keras 3 ones a layers/ (or vars/)
     * tree. A radbatch model file is told apart to give a useful hint. */
    const char *legacy_root = NULL;
    if (kf->format != KERAS_FORMAT_ARCHIVE) {
        if (H5Aexists(f, "layer_names") > 0 || H5Aexists(f, "layer_names0") > 0) {
            kf->format = KERAS_FORMAT_H5;
            legacy_root = "/";
        } else if (h5_exists(f, "/model_weights")) {
            kf->format = KERAS_FORMAT_H5_MODEL;
            legacy_root = "/model_weights";
        } else if (h5_exists(f, "/layers") || h5_exists(f, "/vars") ||
                   h5_exists(f, "/_layer_checkpoint_dependencies")) {
            kf->format = KERAS_FORMAT_WEIGHTS_H5;
        } else {
            char fmt[64] = "";
            if (H5Aexists(f, "format") > 0)
                h5_attr_string(f, "format", fmt, sizeof fmt, path, NULL);
            if (strcmp(fmt, "radbatch-model") == 0)
                rb_fail(err, "load it as a radbatch model (model_file_read_header)",
                        "%s: this is a radbatch model file, not a Keras weight file", path);
            else
                rb_fail(err, "accepted: Keras .h5 (save_weights or model.save), .weights.h5, .keras",
                        "%s: HDF5 but not a Keras weight file (no layer_names attribute, no "
                        "/model_weights, no layers/ group)", path);
            goto done;
        }
    }
    /* the model's config gives the classes (all formats) and, for Keras 3 files without
     * `name` attributes, the layer names */
    if (!config && kf->format == KERAS_FORMAT_H5_MODEL && H5Aexists(f, "model_config") > 0) {
        char **mc = NULL;
        int nmc = 0;
        if (h5_attr_strings(f, "model_config", &mc, &nmc, path, "/", err) < 0)
            goto done;
        if (nmc >= 1)
            config = cJSON_Parse(mc[0]);
        h5_strings_free(mc, nmc);
    }
    if (config && cfg_walk(&cfg, config, "", 0) < 0) {
        rb_fail(err, NULL, "%s: out of memory indexing the model config", path);
        goto done;
    }
    if (legacy_root) {
        if (index_legacy(kf, legacy_root, &list, config ? &cfg : NULL, err) < 0)
            goto done;
    } else {
        if (!kf->keras_version[0])
            h5_attr_string(f, "keras_version", kf->keras_version, sizeof kf->keras_version,
                           path, NULL);
        if (walk_v3(kf, "", &list, config ? &cfg : NULL, 0, err) < 0)
            goto done;
    }
    kf->layers = list.v;
    kf->n_layers = list.n;
    list.v = NULL;
    list.n = 0;
    *out = kf;
    kf = NULL;
    rc = 0;
done:
    for (int i = 0; i < list.n; i++)
        layer_info_free(&list.v[i]);
    free(list.v);
    cfg_map_free(&cfg);
    cJSON_Delete(config);
    keras_file_close(kf);
    return rc;
}

int keras_file_open(const char *path, keras_file **out, rb_error *err)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = keras_file_open_quiet(path, out, err);
    h5_quiet_end(&q);
    return rc;
}

static int64_t numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

static int keras_file_read_quiet(const keras_file *kf, const keras_tensor_info *t, float *dst,
                                 int64_t n, rb_error *err)
{
    if (numel(t->ndim, t->shape) != n)
        return rb_fail(err, NULL, "%s: dataset %s holds %lld values, %lld expected", kf->path,
                       t->dataset, (long long)numel(t->ndim, t->shape), (long long)n);
    if (!t->is_float)
        return rb_fail(err, NULL, "%s: dataset %s is not floating point", kf->path, t->dataset);
    hid_t d = H5Dopen2((hid_t)kf->h5, t->dataset, H5P_DEFAULT);
    if (d < 0)
        return rb_fail(err, NULL, "%s: cannot open dataset %s", kf->path, t->dataset);
    herr_t r;
    if (t->is_float == 2) { /* bfloat16: the high half of a float32 */
        uint16_t *tmp = malloc((size_t)(n ? n : 1) * sizeof *tmp);
        if (!tmp) {
            H5Dclose(d);
            return rb_fail(err, NULL, "out of memory");
        }
        r = H5Dread(d, H5T_NATIVE_UINT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp);
        for (int64_t i = 0; r >= 0 && i < n; i++) {
            uint32_t bits = (uint32_t)tmp[i] << 16;
            memcpy(&dst[i], &bits, sizeof bits);
        }
        free(tmp);
    } else {
        /* HDF5 converts float64/float16 to float32 on the way (round to nearest) */
        r = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
    }
    H5Dclose(d);
    if (r < 0)
        return rb_fail(err, "the file may be truncated or damaged", "%s: cannot read dataset %s",
                       kf->path, t->dataset);
    return 0;
}

int keras_file_read(const keras_file *kf, const keras_tensor_info *t, float *dst, int64_t n,
                    rb_error *err)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = keras_file_read_quiet(kf, t, dst, n, err);
    h5_quiet_end(&q);
    return rc;
}

/* ---------------------------------------------------------------- matching */

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
    if (push_string(&rep->skipped_layer, &m, xstrdup(layer)) < 0) {
        free(rep->skipped[--rep->n_skipped]); /* keep both lists the same length */
        return -1;
    }
    rep->n_tensors_skipped += nv;
    return 0;
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
    int *vi = malloc((size_t)(n_views ? n_views : 1) * sizeof *vi);
    int *perm = malloc((size_t)(n_views ? n_views : 1) * sizeof *perm);
    char *done_view = calloc((size_t)(n_views ? n_views : 1), 1);
    char *used = calloc((size_t)(kf->n_layers ? kf->n_layers : 1), 1);
    if (!vi || !perm || !done_view || !used) {
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
        /* candidates by name, then by alias */
        int cand = -1, n_cand = 0;
        for (int pass = 0; pass < 2 && n_cand == 0; pass++)
            for (int j = 0; j < kf->n_layers; j++) {
                const char *nm = pass == 0 ? kf->layers[j].name : kf->layers[j].alias;
                if (nm && strcmp(nm, L) == 0) {
                    if (n_cand == 0)
                        cand = j;
                    n_cand++;
                }
            }
        if (n_cand > 1) {
            char where[1024];
            size_t o = 0;
            for (int j = 0, k = 0; j < kf->n_layers && o < sizeof where; j++)
                if (strcmp(kf->layers[j].name, L) == 0 ||
                    (kf->layers[j].alias && strcmp(kf->layers[j].alias, L) == 0))
                    o += (size_t)snprintf(where + o, sizeof where - o, "%s%s", k++ ? ", " : "",
                                          kf->layers[j].where);
            rb_fail(err, "the file's layer names are not unique (a file written without layer "
                    "names); save it with Keras 3 or with save_weights() to an .h5",
                    "%s: layer '%s' is ambiguous: %d layers of the file answer to it (%s)", path,
                    L, n_cand, where);
            goto done;
        }
        if (n_cand == 0) {
            char near[600];
            near_names(kf, L, near, sizeof near);
            if (flags & KERAS_IMPORT_SKIP_MISSING) {
                if (report_skip(rep, L, nv, xasprintf("%s: not in the file", L)) < 0) {
                    rb_fail(err, NULL, "out of memory");
                    goto done;
                }
                continue;
            }
            rb_fail(err, "check the layer names (radbatch inspect lists a file's layers); "
                    "skip_missing leaves the model's new layers at their initial values",
                    "%s: layer '%s' of the model is not in the file; %s", path, L, near);
            goto done;
        }
        const keras_layer_info *e = &kf->layers[cand];
        used[cand] = 1;
        if ((flags & KERAS_IMPORT_STRICT) && layers && e->klass) {
            for (int k = 0; k < n_layers; k++)
                if (strcmp(layers[k].name, L) == 0 && layers[k].klass &&
                    strcmp(layers[k].klass, e->klass) != 0) {
                    rb_fail(err, "the file belongs to another architecture",
                            "%s: layer '%s' is a %s in the file but a %s in the model", path, L,
                            e->klass, layers[k].klass);
                    goto done;
                }
        }
        char why[1500];
        if (plan_layer(e, views, vi, nv, perm, why, sizeof why)) {
            if (flags & KERAS_IMPORT_SKIP_MISMATCH) {
                if (report_skip(rep, L, nv, xasprintf("%s: %s", L, why)) < 0) {
                    rb_fail(err, NULL, "out of memory");
                    goto done;
                }
                continue;
            }
            rb_fail(err, "the file was saved from another architecture or head; "
                    "skip_mismatch leaves such layers at their initial values",
                    "%s: layer '%s' (file: %s): %s", path, L, e->where, why);
            goto done;
        }
        for (int i = 0; i < nv; i++) {
            const rb_param_view *v = &views[vi[i]];
            int64_t n = numel(v->ndim, v->shape);
            if (keras_file_read_quiet(kf, &e->t[perm[i]], v->data, n, err) < 0) {
                rb_error_prefix(err, "layer '%s' weight '%s': ", L, v->weight);
                goto done;
            }
            rep->n_tensors++;
            rep->n_values += n;
        }
        rep->n_layers_loaded++;
    }
    for (int j = 0; j < kf->n_layers; j++) {
        if (used[j] || kf->layers[j].n == 0)
            continue;
        if (push_string(&rep->unused, &rep->n_unused, xstrdup(kf->layers[j].name)) < 0) {
            rb_fail(err, NULL, "out of memory");
            goto done;
        }
    }
    if ((flags & KERAS_IMPORT_STRICT) && rep->n_unused > 0) {
        char list[800];
        size_t o = 0;
        for (int i = 0; i < rep->n_unused && o < sizeof list; i++)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s'%s'", i ? ", " : "",
                                  rep->unused[i]);
        rb_fail(err, "drop strict to load a file holding more layers than the model (by name)",
                "%s: %d layer%s with weights in the file %s not in the model: %s", path,
                rep->n_unused, rep->n_unused == 1 ? "" : "s", rep->n_unused == 1 ? "is" : "are",
                list);
        goto done;
    }
    rc = 0;
done:
    free(vi);
    free(perm);
    free(done_view);
    free(used);
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
