/* Reading radbatch model and checkpoint files (see model_file.h, docs/formats-model.md):
 * the header, the weights and the optimizer state, every checksum verified. Writing is in
 * model_file_save.c, the checksums in model_file_hash.c. */
#include "model_file_internal.h"
#include "fsutil.h"
#include "h5util.h"
#include "rb_log.h"

#include <hdf5.h>
#include <xxhash.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_TENSORS 1000000

/* ---------------------------------------------------------------- HDF5 helpers */

/* A string attribute (scalar or 1-D; variable or fixed length) as malloc'd strings: UTF-8
 * variable-length or fixed-length strings, at most MAX_TENSORS. Returns 1 when absent. */
static int attr_read_strs(hid_t obj, const char *name, char ***out, int *n_out, const char *path,
                          rb_error *err)
{
    const h5_strs_spec spec = {.file = path, .max_n = MAX_TENSORS};
    return h5_attr_read_strs(obj, name, &spec, out, n_out, err);
}

/* A required scalar string attribute, malloc'd. */
static int attr_read_str(hid_t obj, const char *name, char **out, int required, const char *path,
                         rb_error *err)
{
    *out = NULL;
    char **v;
    int n;
    int r = attr_read_strs(obj, name, &v, &n, path, err);
    if (r < 0)
        return -1;
    if (r == 1) {
        if (required)
            return rb_fail(err, "the file is incomplete", "%s: attribute %s is missing", path,
                           name);
        return 0;
    }
    if (n != 1) {
        h5_strings_free(v, n);
        return rb_fail(err, NULL, "%s: attribute %s should hold one string, holds %d", path, name,
                       n);
    }
    *out = v[0];
    free(v);
    return 0;
}

static int attr_read_num(hid_t obj, const char *name, hid_t mem_type, void *v, const char *path,
                         rb_error *err)
{
    if (H5Aexists(obj, name) <= 0)
        return rb_fail(err, "the file is incomplete", "%s: attribute %s is missing", path, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return rb_fail(err, NULL, "%s: cannot open attribute %s", path, name);
    herr_t r = H5Aread(a, mem_type, v);
    H5Aclose(a);
    if (r < 0)
        return rb_fail(err, NULL, "%s: cannot read attribute %s as a number", path, name);
    return 0;
}

/* ---------------------------------------------------------------- loading */

static hid_t open_checked(const char *path, int *version_out, rb_error *err)
{
    if (access(path, R_OK) != 0)
        return rb_fail(err, "check the path", "%s: cannot open: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return rb_fail(err, "a radbatch model file is an HDF5 file written by radbatch train",
                       "%s: not an HDF5 file", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return rb_fail(err, "the file is truncated or damaged (or locked: HDF5_USE_FILE_LOCKING=FALSE); use another copy",
                       "%s: cannot open as HDF5 (truncated or damaged?)", path);
    char *fmt = NULL;
    if (attr_read_str(f, "format", &fmt, 0, path, err) < 0) {
        H5Fclose(f);
        return -1;
    }
    if (!fmt || strcmp(fmt, MODEL_FILE_FORMAT) != 0) {
        int keras = H5Aexists(f, "layer_names") > 0 || H5Lexists(f, "model_weights", H5P_DEFAULT) > 0 ||
                    H5Lexists(f, "layers", H5P_DEFAULT) > 0;
        rb_fail(err,
                keras ? "this is a Keras weight file: import it (keras_import) into a model "
                        "built from a description"
                      : "a radbatch model file has the root attribute format = \"radbatch-model\"",
                "%s: not a radbatch model file (format attribute %s%s%s)", path,
                fmt ? "'" : "", fmt ? fmt : "missing", fmt ? "'" : "");
        free(fmt);
        H5Fclose(f);
        return -1;
    }
    free(fmt);
    int32_t version = 0;
    if (attr_read_num(f, "format_version", H5T_NATIVE_INT32, &version, path, err) < 0) {
        H5Fclose(f);
        return -1;
    }
    if (version != MODEL_FILE_VERSION && version != MODEL_FILE_VERSION_NO_CHECKSUMS) {
        H5Fclose(f);
        return rb_fail(err,
                       version > MODEL_FILE_VERSION ? "written by a newer radbatch; upgrade to read it"
                                                    : "the file is damaged",
                       "%s: format_version %d, this radbatch reads versions %d and %d", path, (int)version,
                       MODEL_FILE_VERSION_NO_CHECKSUMS, MODEL_FILE_VERSION);
    }
    *version_out = version;
    return f;
}

/* Tensors listed in /weights (layer_names, weight_names): count and values. */
static int count_tensors(hid_t f, const char *path, int64_t *n_tensors, int64_t *n_values,
                         char ***names_out, int *n_names, rb_error *err)
{
    *n_tensors = *n_values = 0;
    hid_t w = H5Gopen2(f, "weights", H5P_DEFAULT);
    if (w < 0)
        return rb_fail(err, "the file is incomplete", "%s: no /weights group", path);
    char **ln = NULL, **all = NULL;
    int nl = 0, na = 0, rc = -1;
    int r0 = attr_read_strs(w, "layer_names", &ln, &nl, path, err);
    if (r0 != 0) {
        if (r0 == 1)
            rb_fail(err, "the file is incomplete", "%s: /weights has no layer_names", path);
        goto done;
    }
    for (int i = 0; i < nl; i++) {
        char gp[4096];
        snprintf(gp, sizeof gp, "/weights/%s", ln[i]);
        hid_t g = H5Lexists(w, ln[i], H5P_DEFAULT) > 0 ? H5Gopen2(w, ln[i], H5P_DEFAULT) : -1;
        if (g < 0) {
            rb_fail(err, "the file is incomplete", "%s: layer_names lists '%s' but %s is missing",
                    path, ln[i], gp);
            goto done;
        }
        char **wn = NULL;
        int nw = 0;
        int r = attr_read_strs(g, "weight_names", &wn, &nw, path, err);
        if (r != 0) {
            H5Gclose(g);
            if (r == 1)
                rb_fail(err, "the file is incomplete", "%s: %s has no weight_names", path, gp);
            goto done;
        }
        for (int j = 0; j < nw; j++) {
            hid_t d = H5Lexists(g, wn[j], H5P_DEFAULT) > 0 ? H5Dopen2(g, wn[j], H5P_DEFAULT) : -1;
            if (d < 0) {
                rb_fail(err, "the file is incomplete", "%s: dataset %s/%s is missing", path, gp,
                        wn[j]);
                h5_strings_free(wn, nw);
                H5Gclose(g);
                goto done;
            }
            hid_t s = H5Dget_space(d);
            hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
            if (s >= 0)
                H5Sclose(s);
            H5Dclose(d);
            (*n_tensors)++;
            *n_values += np > 0 ? np : 0;
            if (names_out) {
                char **g2 = realloc(all, (size_t)(na + 1) * sizeof *g2);
                if (!g2) {
                    h5_strings_free(wn, nw);
                    H5Gclose(g);
                    rb_fail(err, NULL, "out of memory");
                    goto done;
                }
                all = g2;
                size_t len = strlen(ln[i]) + strlen(wn[j]) + 2;
                all[na] = malloc(len);
                if (all[na])
                    snprintf(all[na], len, "%s/%s", ln[i], wn[j]);
                na++;
            }
        }
        h5_strings_free(wn, nw);
        H5Gclose(g);
    }
    if (names_out) {
        *names_out = all;
        *n_names = na;
        all = NULL;
    }
    rc = 0;
done:
    h5_strings_free(all, na);
    h5_strings_free(ln, nl);
    H5Gclose(w);
    return rc;
}

void model_file_header_free(model_file_header *h)
{
    if (!h)
        return;
    free(h->architecture);
    free(h->model_card);
    free(h->optimizer_config);
    h5_strings_free(h->class_names, h->n_classes);
    memset(h, 0, sizeof *h);
}

static int read_header(hid_t f, const char *path, int version, model_file_header *h, rb_error *err)
{
    h->format_version = version;
    h->has_checksums = version >= MODEL_FILE_VERSION;
    if (attr_read_str(f, "architecture", &h->architecture, 1, path, err) < 0 ||
        attr_read_str(f, "model_card", &h->model_card, h->has_checksums, path, err) < 0)
        return -1;
    int r = attr_read_strs(f, "class_names", &h->class_names, &h->n_classes, path, err);
    if (r < 0)
        return -1;
    if (h->has_checksums &&
        (mf_attr_check_hash(f, "architecture_xxh3", mf_text_hash(h->architecture), path, "the architecture text", err) < 0 ||
         mf_attr_check_hash(f, "model_card_xxh3", mf_text_hash(h->model_card), path, "the model card", err) < 0 ||
         mf_attr_check_hash(f, "class_names_xxh3", mf_names_hash((const char *const *)h->class_names, h->n_classes), path,
                         "the class names", err) < 0))
        return -1;
    char *ver = NULL;
    if (attr_read_str(f, "radbatch_version", &ver, 0, path, err) < 0)
        return -1;
    snprintf(h->radbatch_version, sizeof h->radbatch_version, "%s", ver ? ver : "");
    free(ver);
    if (count_tensors(f, path, &h->n_tensors, &h->n_values, NULL, NULL, err) < 0)
        return -1;
    if (H5Lexists(f, "optimizer", H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
        if (g < 0)
            return rb_fail(err, NULL, "%s: cannot open /optimizer", path);
        char *kind = NULL;
        int fail = attr_read_str(g, "kind", &kind, 1, path, err) < 0 ||
                   attr_read_num(g, "step", H5T_NATIVE_INT64, &h->optimizer_step, path, err) < 0 ||
                   attr_read_str(g, "config", &h->optimizer_config, 0, path, err) < 0;
        if (!fail && h->has_checksums)
            fail = mf_attr_check_hash(g, "xxh3", mf_optimizer_hash(kind, h->optimizer_step, h->optimizer_config), path,
                                   "/optimizer (kind, step, config)", err) < 0;
        if (!fail) {
            snprintf(h->optimizer_kind, sizeof h->optimizer_kind, "%s", kind);
            hid_t d = H5Lexists(g, "state", H5P_DEFAULT) > 0 ? H5Dopen2(g, "state", H5P_DEFAULT)
                                                            : -1;
            if (d < 0) {
                fail = rb_fail(err, "the checkpoint is incomplete", "%s: /optimizer/state is missing",
                               path);
            } else {
                hid_t s = H5Dget_space(d);
                h->optimizer_state_len = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
                if (s >= 0)
                    H5Sclose(s);
                H5Dclose(d);
                h->has_optimizer = h->optimizer_state_len >= 0;
            }
        }
        free(kind);
        H5Gclose(g);
        if (fail)
            return -1;
    }
    if (H5Lexists(f, "train_state", H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(f, "train_state", H5P_DEFAULT);
        if (g < 0)
            return rb_fail(err, NULL, "%s: cannot open /train_state", path);
        model_file_train_state *t = &h->train_state;
        char *name = NULL;
        int fail =
            attr_read_num(g, "epoch", H5T_NATIVE_INT64, &t->epoch, path, err) < 0 ||
            attr_read_num(g, "step", H5T_NATIVE_INT64, &t->step, path, err) < 0 ||
            attr_read_num(g, "data_position", H5T_NATIVE_INT64, &t->data_position, path, err) < 0 ||
            attr_read_num(g, "rng_seed", H5T_NATIVE_UINT64, &t->rng_seed, path, err) < 0 ||
            attr_read_num(g, "best_metric", H5T_NATIVE_DOUBLE, &t->best_metric, path, err) < 0 ||
            attr_read_str(g, "best_metric_name", &name, 0, path, err) < 0;
        if (!fail) {
            snprintf(t->best_metric_name, sizeof t->best_metric_name, "%s", name ? name : "");
            h->has_train_state = 1;
            if (h->has_checksums)
                fail = mf_attr_check_hash(g, "xxh3", mf_train_state_hash(t), path, "/train_state", err) < 0;
        }
        free(name);
        H5Gclose(g);
        if (fail)
            return -1;
    }
    return 0;
}

int model_file_read_header(const char *path, model_file_header *h, rb_error *err)
{
    memset(h, 0, sizeof *h);
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = -1;
    int version = 0;
    hid_t f = open_checked(path, &version, err);
    if (f >= 0) {
        rc = read_header(f, path, version, h, err);
        H5Fclose(f);
    }
    h5_quiet_end(&q);
    if (rc < 0)
        model_file_header_free(h);
    return rc;
}

/* The dataset of view v (want = "layer/weight") has the view's shape and is float32. */
static int check_dataset(hid_t f, const char *path, const rb_param_view *v, const char *want,
                         rb_error *err)
{
    char dp[600];
    snprintf(dp, sizeof dp, "/weights/%s", want);
    hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
    hid_t s = d >= 0 ? H5Dget_space(d) : -1;
    hid_t t = d >= 0 ? H5Dget_type(d) : -1;
    int nd = s >= 0 ? H5Sget_simple_extent_ndims(s) : -1;
    hsize_t dims[8] = {0};
    int same = nd == v->ndim && nd >= 0 && nd <= 8;
    if (same) {
        H5Sget_simple_extent_dims(s, dims, NULL);
        for (int k = 0; k < nd; k++)
            same &= (int64_t)dims[k] == v->shape[k];
    }
    int is_f32 = t >= 0 && H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
    if (t >= 0)
        H5Tclose(t);
    if (s >= 0)
        H5Sclose(s);
    if (d >= 0)
        H5Dclose(d);
    if (d < 0)
        return rb_fail(err, "the file may be damaged", "%s: cannot open %s", path, dp);
    if (!same) {
        char a[128], b[128];
        int64_t fs[8];
        for (int k = 0; k < nd && k < 8; k++)
            fs[k] = (int64_t)dims[k];
        h5_shape_str(a, sizeof a, nd > 0 && nd <= 8 ? nd : 0, fs);
        h5_shape_str(b, sizeof b, v->ndim, v->shape);
        return rb_fail(err, "the model built from the file's architecture should have the same "
                       "shapes; the file or the architecture text was changed",
                       "%s: weight '%s' has shape %s in the file (%s) but %s in the model",
                       path, want, a, dp, b);
    }
    if (!is_f32)
        return rb_fail(err, NULL, "%s: %s is not float32", path, dp);
    return 0;
}

/* The n values of a tensor (`what`: "tensor 'layer/weight' (/weights/...)") are all finite. */
static int check_finite(const char *path, const char *what, const float *x, int64_t n, rb_error *err)
{
    int64_t nan = 0, inf = 0, first = -1;
    for (int64_t j = 0; j < n; j++)
        if (!isfinite(x[j])) {
            nan += isnan(x[j]) != 0;
            inf += isinf(x[j]) != 0;
            if (first < 0)
                first = j;
        }
    if (first >= 0)
        return rb_fail(err, "the model diverged or the file was damaged; use an earlier checkpoint or retrain",
                       "%s: %s holds non-finite values: %lld NaN, %lld Inf (first at index %lld)", path, what,
                       (long long)nan, (long long)inf, (long long)first);
    return 0;
}

static int load_weights(hid_t f, const char *path, int version, const rb_param_view *views, int n_views,
                        unsigned flags, int8_t *sum_ok, rb_error *err)
{
    char **names = NULL;
    int nn = 0;
    int64_t nt, nv;
    if (count_tensors(f, path, &nt, &nv, &names, &nn, err) < 0)
        return -1;
    int rc = -1;
    char *taken = calloc((size_t)(nn ? nn : 1), 1);
    if (!taken) {
        rb_fail(err, NULL, "out of memory");
        goto done;
    }
    /* check everything before reading anything */
    for (int i = 0; i < n_views; i++) {
        const rb_param_view *v = &views[i];
        char want[512];
        snprintf(want, sizeof want, "%s/%s", v->layer, v->weight);
        int hit = -1;
        for (int k = 0; k < nn; k++)
            if (names[k] && strcmp(names[k], want) == 0)
                hit = k;
        if (hit < 0) {
            rb_fail(err, "the model built from the file's architecture should have the same "
                    "tensors; was the file written by another radbatch version?",
                    "%s: the model's weight '%s' is not in the file (/weights/%s)", path, want,
                    want);
            goto done;
        }
        if (taken[hit]) {
            rb_fail(err, NULL, "%s: the model lists weight '%s' twice", path, want);
            goto done;
        }
        taken[hit] = 1;
        if (check_dataset(f, path, v, want, err) < 0)
            goto done;
    }
    for (int k = 0; k < nn; k++)
        if (!taken[k]) {
            int extra = 0;
            for (int j = 0; j < nn; j++)
                extra += !taken[j];
            rb_fail(err, "the model built from the file's architecture should have the same "
                    "tensors; was the file written by another radbatch version?",
                    "%s: the file has %d tensor%s the model lacks, first '%s'", path, extra,
                    extra == 1 ? "" : "s", names[k]);
            goto done;
        }
    for (int i = 0; i < n_views; i++) {
        const rb_param_view *v = &views[i];
        char dp[600];
        snprintf(dp, sizeof dp, "/weights/%s/%s", v->layer, v->weight);
        hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
        herr_t r = d >= 0 ? H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v->data)
                          : -1;
        if (r < 0) {
            if (d >= 0)
                H5Dclose(d);
            rb_fail(err, "the file may be truncated or damaged", "%s: cannot read %s", path, dp);
            goto done;
        }
        int64_t n = 1;
        for (int k = 0; k < v->ndim; k++)
            n *= v->shape[k];
        char what[700];
        snprintf(what, sizeof what, "tensor '%s/%s' (%s)", v->layer, v->weight, dp);
        r = version >= MODEL_FILE_VERSION
                ? mf_attr_check_hash(d, "xxh3", XXH3_64bits(v->data, (size_t)n * sizeof(float)), path, what, err)
                : 0;
        H5Dclose(d);
        if (sum_ok) { /* recorded, not an error */
            sum_ok[i] = (int8_t)(r == 0);
            r = 0;
        }
        if (r < 0)
            goto done;
        if (!(flags & MODEL_FILE_ALLOW_NONFINITE) && check_finite(path, what, v->data, n, err) < 0)
            goto done;
    }
    if (version < MODEL_FILE_VERSION && rb_log_rank() == 0)
        rb_warn("%s: a format_version %d model file carries no checksums; its weights were loaded unverified "
                "(saving it again with this radbatch adds them)", path, version);
    rc = 0;
done:
    free(taken);
    h5_strings_free(names, nn);
    return rc;
}

int model_file_load_weights(const char *path, const rb_param_view *views, int n_views,
                            rb_error *err)
{
    return model_file_load_weights_opt(path, views, n_views, 0, NULL, err);
}

int model_file_load_weights_opt(const char *path, const rb_param_view *views, int n_views, unsigned flags,
                                int8_t *checksum_ok, rb_error *err)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = -1, version = 0;
    hid_t f = open_checked(path, &version, err);
    if (f >= 0) {
        rc = load_weights(f, path, version, views, n_views, flags, checksum_ok, err);
        H5Fclose(f);
    }
    h5_quiet_end(&q);
    return rc;
}

int model_file_load_optimizer(const char *path, float *state, int64_t n, rb_error *err)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = -1, version = 0;
    hid_t f = open_checked(path, &version, err);
    if (f >= 0) {
        hid_t d = H5Lexists(f, "optimizer", H5P_DEFAULT) > 0
                      ? H5Dopen2(f, "/optimizer/state", H5P_DEFAULT)
                      : -1;
        if (d < 0) {
            rb_fail(err, "the file is a model, not a checkpoint; start the optimizer afresh",
                    "%s: no optimizer state (/optimizer/state)", path);
        } else {
            hid_t s = H5Dget_space(d);
            hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
            if (s >= 0)
                H5Sclose(s);
            if (np != n)
                rb_fail(err, "the optimizer kind or the trainable layers changed since the "
                        "checkpoint",
                        "%s: /optimizer/state holds %lld floats, the optimizer needs %lld", path,
                        (long long)np, (long long)n);
            else if (np > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, state) < 0)
                rb_fail(err, "the file may be truncated", "%s: cannot read /optimizer/state",
                        path);
            else if (version >= MODEL_FILE_VERSION &&
                     mf_attr_check_hash(d, "xxh3", XXH3_64bits(np > 0 ? (const void *)state : "", (size_t)np * sizeof(float)),
                                     path, "the optimizer state (/optimizer/state)", err) < 0)
                ;
            else
                rc = 0;
            H5Dclose(d);
        }
        H5Fclose(f);
    }
    h5_quiet_end(&q);
    return rc;
}

/* One tensor of /weights (name = "layer/weight"): read, its checksum and finiteness checked.
 * buf grows to fit. */
static int verify_tensor(hid_t f, const char *path, int version, const char *name, float **buf, size_t *cap,
                         rb_error *err)
{
    char dp[600], what[700];
    snprintf(dp, sizeof dp, "/weights/%s", name);
    snprintf(what, sizeof what, "tensor '%s' (%s)", name, dp);
    hid_t d = H5Dopen2(f, dp, H5P_DEFAULT);
    hid_t s = d >= 0 ? H5Dget_space(d) : -1;
    hssize_t np = s >= 0 ? H5Sget_simple_extent_npoints(s) : -1;
    if (s >= 0)
        H5Sclose(s);
    int rc = -1;
    if (np < 0) {
        rb_fail(err, "the file may be truncated or damaged", "%s: cannot open %s", path, dp);
        goto done;
    }
    if ((size_t)np > *cap) {
        float *t = realloc(*buf, (size_t)np * sizeof(float));
        if (!t) {
            rb_fail(err, NULL, "out of memory");
            goto done;
        }
        *buf = t;
        *cap = (size_t)np;
    }
    if (np > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *buf) < 0) {
        rb_fail(err, "the file may be truncated or damaged", "%s: cannot read %s", path, dp);
        goto done;
    }
    if (version >= MODEL_FILE_VERSION &&
        mf_attr_check_hash(d, "xxh3", XXH3_64bits(np > 0 ? (const void *)*buf : "", (size_t)np * sizeof(float)), path,
                           what, err) < 0)
        goto done;
    if (check_finite(path, what, *buf, np, err) < 0)
        goto done;
    rc = 0;
done:
    if (d >= 0)
        H5Dclose(d);
    return rc;
}

int model_file_verify(const char *path, rb_error *err)
{
    model_file_header h;
    if (model_file_read_header(path, &h, err) < 0)
        return -1;
    h5_quiet q;
    h5_quiet_begin(&q);
    int version = 0, rc = -1, nn = 0;
    char **names = NULL;
    float *buf = NULL;
    size_t cap = 0;
    int64_t nt, nv;
    hid_t f = open_checked(path, &version, err);
    if (f >= 0 && count_tensors(f, path, &nt, &nv, &names, &nn, err) == 0) {
        rc = 0;
        for (int k = 0; k < nn && rc == 0; k++)
            rc = names[k] ? verify_tensor(f, path, version, names[k], &buf, &cap, err) : rb_fail(err, NULL, "out of memory");
    }
    if (f >= 0)
        H5Fclose(f);
    h5_quiet_end(&q);
    if (rc == 0 && h.has_optimizer) {
        float *state = malloc((size_t)(h.optimizer_state_len > 0 ? h.optimizer_state_len : 1) * sizeof(float));
        rc = state ? model_file_load_optimizer(path, state, h.optimizer_state_len, err) : rb_fail(err, NULL, "out of memory");
        free(state);
    }
    free(buf);
    h5_strings_free(names, nn);
    model_file_header_free(&h);
    return rc;
}
