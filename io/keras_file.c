/* Keras weight files (keras_import.h): which layout a file has, opening and indexing it into
 * the flat layer list, reading one tensor, and the small helpers the layouts share (the
 * layer list, Keras' string attributes, a dataset's shape and type). The layouts themselves
 * are read in keras_legacy.c, keras_v3.c and keras_archive.c; config.json in
 * keras_config.c. Opening reads no weight values. */
#include "keras_internal.h"
#include "h5util.h"

#include <cjson/cJSON.h>
#include <hdf5.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "keras_file stores hid_t as int64_t");

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

char *keras_strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

char *keras_asprintf(const char *fmt, ...)
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

/* A string attribute as Keras writes it (scalar or 1-D array, fixed or variable length, ASCII
 * or UTF-8) into a malloc'd array of malloc'd strings. Keras writes an empty list as a float64
 * array of shape (0,); that reads as zero strings. Returns 1 when the attribute is absent. */
static int attr_strings_one(hid_t obj, const char *attr, char ***out, int *n_out,
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
int keras_attr_strings(hid_t obj, const char *attr, char ***out, int *n_out,
                       const char *file, const char *objname, rb_error *err)
{
    int rc = attr_strings_one(obj, attr, out, n_out, file, objname, err);
    if (rc != 1)
        return rc;
    char **all = NULL;
    int n_all = 0;
    for (int chunk = 0;; chunk++) {
        char name[160];
        snprintf(name, sizeof name, "%s%d", attr, chunk);
        char **part;
        int n_part;
        rc = attr_strings_one(obj, name, &part, &n_part, file, objname, err);
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
int keras_attr_string(hid_t obj, const char *attr, char *buf, size_t cap, const char *file,
                      rb_error *err)
{
    buf[0] = 0;
    char **v;
    int n;
    int rc = attr_strings_one(obj, attr, &v, &n, file, attr, err);
    if (rc < 0)
        return -1;
    if (rc == 0 && n >= 1)
        snprintf(buf, cap, "%s", v[0]);
    if (rc == 0)
        h5_strings_free(v, n);
    return 0;
}

/* ---------------------------------------------------------------- the layer list */

keras_layer_info *keras_layer_list_add(keras_layer_list *l)
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

void keras_layer_info_free(keras_layer_info *e)
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
int keras_tensor_probe(hid_t file, const char *dset, keras_tensor_info *t, const char *path,
                       rb_error *err)
{
    t->dataset = keras_strdup(dset);
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
            if (keras_attr_string(d, "dtype", dt, sizeof dt, path, err) == 0 &&
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

/* ---------------------------------------------------------------- opening */

void keras_file_close(keras_file *kf)
{
    if (!kf)
        return;
    for (int i = 0; i < kf->n_layers; i++)
        keras_layer_info_free(&kf->layers[i]);
    free(kf->layers);
    if (kf->h5 > 0)
        H5Fclose((hid_t)kf->h5);
    free(kf->path);
    free(kf);
}

/* Which layout an HDF5 file has: legacy files carry layer_names (at the root, or under
 * /model_weights: *legacy_root), Keras 3 ones a layers/ (or vars/) tree. A radbatch model
 * file is told apart to give a useful hint. */
static int detect_layout(keras_file *kf, const char *path, const char **legacy_root,
                         rb_error *err)
{
    hid_t f = (hid_t)kf->h5;
    if (H5Aexists(f, "layer_names") > 0 || H5Aexists(f, "layer_names0") > 0) {
        kf->format = KERAS_FORMAT_H5;
        *legacy_root = "/";
    } else if (h5_exists(f, "/model_weights")) {
        kf->format = KERAS_FORMAT_H5_MODEL;
        *legacy_root = "/model_weights";
    } else if (h5_exists(f, "/layers") || h5_exists(f, "/vars") ||
               h5_exists(f, "/_layer_checkpoint_dependencies")) {
        kf->format = KERAS_FORMAT_WEIGHTS_H5;
    } else {
        char fmt[64] = "";
        if (H5Aexists(f, "format") > 0)
            keras_attr_string(f, "format", fmt, sizeof fmt, path, NULL);
        if (strcmp(fmt, "radbatch-model") == 0)
            rb_fail(err, "load it as a radbatch model (model_file_read_header)",
                    "%s: this is a radbatch model file, not a Keras weight file", path);
        else
            rb_fail(err, "accepted: Keras .h5 (save_weights or model.save), .weights.h5, .keras",
                    "%s: HDF5 but not a Keras weight file (no layer_names attribute, no "
                    "/model_weights, no layers/ group)", path);
        return -1;
    }
    return 0;
}

/* A model.save() .h5's model_config attribute (JSON) into *config, when there is one. */
static int read_model_config(hid_t f, const char *path, cJSON **config, rb_error *err)
{
    char **mc = NULL;
    int nmc = 0;
    if (keras_attr_strings(f, "model_config", &mc, &nmc, path, "/", err) < 0)
        return -1;
    if (nmc >= 1)
        *config = cJSON_Parse(mc[0]);
    h5_strings_free(mc, nmc);
    return 0;
}

int keras_file_open_quiet(const char *path, keras_file **out, rb_error *err)
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
    kf->path = keras_strdup(path);
    kf->h5 = -1;
    cJSON *config = NULL;
    keras_cfg_map cfg = {0};
    keras_layer_list list = {0};
    int rc = -1;
    if (!kf->path) {
        rb_fail(err, NULL, "out of memory");
        goto done;
    }
    if (got >= 4 && memcmp(magic, "PK\003\004", 4) == 0) {
        kf->format = KERAS_FORMAT_ARCHIVE;
        if (keras_open_archive(kf, &config, err) < 0)
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
    /* which layout? */
    const char *legacy_root = NULL;
    if (kf->format != KERAS_FORMAT_ARCHIVE && detect_layout(kf, path, &legacy_root, err) < 0)
        goto done;
    /* the model's config gives the classes (all formats) and, for Keras 3 files without
     * `name` attributes, the layer names */
    if (!config && kf->format == KERAS_FORMAT_H5_MODEL && H5Aexists(f, "model_config") > 0 &&
        read_model_config(f, path, &config, err) < 0)
        goto done;
    if (config && keras_cfg_walk(&cfg, config, "", 0) < 0) {
        rb_fail(err, NULL, "%s: out of memory indexing the model config", path);
        goto done;
    }
    if (legacy_root) {
        if (keras_index_legacy(kf, legacy_root, &list, config ? &cfg : NULL, err) < 0)
            goto done;
    } else {
        if (!kf->keras_version[0])
            keras_attr_string(f, "keras_version", kf->keras_version, sizeof kf->keras_version,
                              path, NULL);
        if (keras_walk_v3(kf, "", &list, config ? &cfg : NULL, 0, err) < 0)
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
        keras_layer_info_free(&list.v[i]);
    free(list.v);
    keras_cfg_free(&cfg);
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

int64_t keras_numel(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

int keras_file_read_quiet(const keras_file *kf, const keras_tensor_info *t, float *dst,
                                 int64_t n, rb_error *err)
{
    if (keras_numel(t->ndim, t->shape) != n)
        return rb_fail(err, NULL, "%s: dataset %s holds %lld values, %lld expected", kf->path,
                       t->dataset, (long long)keras_numel(t->ndim, t->shape), (long long)n);
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
