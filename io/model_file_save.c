/* Writing radbatch model and checkpoint files (see model_file.h, docs/formats-model.md): the
 * file is built in memory in named steps and written out atomically. */
#include "model_file_internal.h"
#include "fsutil.h"
#include "h5util.h"
#include "rb_log.h"

#include <hdf5.h>
#include <xxhash.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef RADBATCH_VERSION
#define RADBATCH_VERSION "dev"
#endif

static const char *ROOT_DESCRIPTION =
    "radbatch model file. Root attributes: architecture (the model description radbatch "
    "builds the network from), model_card (JSON), class_names (index = class id). "
    "/weights/<layer>/<weight>: float32 tensors with Keras shapes (Conv2D kernel "
    "[kh, kw, in, out], Dense kernel [in, out]); layer order in /weights@layer_names, weight "
    "order in each layer's weight_names; kind = weight (trained) or state (BatchNorm moving "
    "statistics). Checkpoints add /optimizer (state as one float32 vector) and /train_state "
    "(epoch, step, data position, seed, best metric). Integrity: every tensor has an "
    "attribute xxh3 (XXH3-64 of its float32 little-endian bytes, 16 hex digits); the root "
    "has architecture_xxh3, model_card_xxh3 and class_names_xxh3, /optimizer and "
    "/train_state an xxh3 of their attributes; all are checked on load. "
    "Format: docs/formats-model.md.";

/* A layer or weight name becomes an HDF5 link name: no '/', not "." or empty. */
static int bad_name(const char *s)
{
    return !s || !s[0] || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0;
}

/* float32 1-D or N-D dataset, contiguous (weights are read whole). */
static int write_tensor(hid_t loc, const char *name, int ndim, const int64_t *shape,
                        const float *data, const char *kind, int trainable)
{
    hsize_t dims[8];
    for (int i = 0; i < ndim; i++)
        dims[i] = (hsize_t)shape[i];
    hid_t s = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    if (s < 0)
        return -1;
    hid_t d = H5Dcreate2(loc, name, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = -1;
    if (d >= 0) {
        rc = 0;
        if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            rc = -1;
        if (rc == 0 && kind && h5_attr_write_str(d, "kind", kind) < 0)
            rc = -1;
        if (rc == 0 && trainable >= 0) {
            int8_t t = (int8_t)trainable;
            rc = h5_attr_write_scalar(d, "trainable", H5T_STD_I8LE, H5T_NATIVE_INT8, &t);
        }
        if (rc == 0) {
            int64_t n = 1;
            for (int i = 0; i < ndim; i++)
                n *= shape[i];
            rc = mf_attr_write_hash(d, "xxh3", XXH3_64bits(data, (size_t)n * sizeof(float)));
        }
        H5Dclose(d);
    }
    H5Sclose(s);
    return rc;
}

/* The hint of every failure to build the file. */
static const char WRITE_HINT[] = "check free space and permissions of the output folder";

/* The root attributes: format, version, architecture, card, classes and their checksums. */
static int write_root_attrs(hid_t f, const char *path, const model_file_contents *c,
                            rb_error *err)
{
    const char *hint = WRITE_HINT;
    int32_t version = MODEL_FILE_VERSION;
    char created[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    if (h5_attr_write_str(f, "format", MODEL_FILE_FORMAT) < 0 ||
        h5_attr_write_scalar(f, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version) < 0 ||
        h5_attr_write_str(f, "description", ROOT_DESCRIPTION) < 0 ||
        h5_attr_write_str(f, "architecture", c->architecture) < 0 ||
        h5_attr_write_str(f, "model_card", c->model_card ? c->model_card : "{}") < 0 ||
        h5_attr_write_strs(f, "class_names", c->class_names, c->n_classes) < 0 ||
        h5_attr_write_str(f, "radbatch_version", RADBATCH_VERSION) < 0 ||
        h5_attr_write_str(f, "created", created) < 0 ||
        mf_attr_write_hash(f, "architecture_xxh3", mf_text_hash(c->architecture)) < 0 ||
        mf_attr_write_hash(f, "model_card_xxh3", mf_text_hash(c->model_card ? c->model_card : "{}")) < 0 ||
        mf_attr_write_hash(f, "class_names_xxh3", mf_names_hash(c->class_names, c->n_classes)) < 0)
        return rb_fail(err, hint, "%s: cannot write the root attributes", path);
    return 0;
}

/* /weights: one group per layer, in model order, one dataset per weight. */
static int write_weights(hid_t f, const char *path, const model_file_contents *c, rb_error *err)
{
    const char *hint = WRITE_HINT;
    hid_t w = H5Gcreate2(f, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (w < 0)
        return rb_fail(err, hint, "%s: cannot create /weights", path);
    int rc = -1;
    const char **lnames = calloc((size_t)(c->n_views ? c->n_views : 1), sizeof *lnames);
    const char **wnames = calloc((size_t)(c->n_views ? c->n_views : 1), sizeof *wnames);
    int nl = 0;
    if (!lnames || !wnames) {
        rb_fail(err, NULL, "%s: out of memory", path);
        goto done;
    }
    if (h5_attr_write_str(w, "description",
                 "one group per layer (model order in layer_names), one float32 dataset per "
                 "weight (order in the group's weight_names), Keras shapes; attribute kind: "
                 "weight or state") < 0) {
        rb_fail(err, hint, "%s: cannot write /weights attributes", path);
        goto done;
    }
    for (int i = 0; i < c->n_views; i++) {
        const char *L = c->views[i].layer;
        int seen = 0;
        for (int k = 0; k < nl; k++)
            seen |= strcmp(lnames[k], L) == 0;
        if (!seen)
            lnames[nl++] = L;
    }
    for (int k = 0; k < nl; k++) {
        if (bad_name(lnames[k])) {
            rb_fail(err, NULL, "%s: layer name '%s' cannot be stored (empty, '.', or has '/')",
                    path, lnames[k]);
            goto done;
        }
        hid_t g = H5Gcreate2(w, lnames[k], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            rb_fail(err, hint, "%s: cannot create /weights/%s", path, lnames[k]);
            goto done;
        }
        int nw = 0, fail = 0;
        for (int i = 0; i < c->n_views && !fail; i++) {
            const rb_param_view *v = &c->views[i];
            if (strcmp(v->layer, lnames[k]) != 0)
                continue;
            if (bad_name(v->weight)) {
                fail = rb_fail(err, NULL, "%s: weight name '%s' of layer '%s' cannot be stored",
                               path, v->weight ? v->weight : "", v->layer);
                break;
            }
            for (int j = 0; j < nw; j++)
                if (strcmp(wnames[j], v->weight) == 0)
                    fail = rb_fail(err, NULL, "%s: layer '%s' lists weight '%s' twice", path,
                                   v->layer, v->weight);
            if (fail)
                break;
            if (v->ndim < 0 || v->ndim > 4 || !v->data) {
                fail = rb_fail(err, NULL, "%s: weight '%s/%s' has rank %d or no data", path,
                               v->layer, v->weight, v->ndim);
                break;
            }
            wnames[nw++] = v->weight;
            if (write_tensor(g, v->weight, v->ndim, v->shape, v->data,
                             v->is_state ? "state" : "weight", v->trainable ? 1 : 0) < 0)
                fail = rb_fail(err, hint, "%s: cannot write /weights/%s/%s", path, v->layer,
                               v->weight);
        }
        if (!fail && h5_attr_write_strs(g, "weight_names", wnames, nw) < 0)
            fail = rb_fail(err, hint, "%s: cannot write /weights/%s@weight_names", path,
                           lnames[k]);
        H5Gclose(g);
        if (fail)
            goto done;
    }
    if (h5_attr_write_strs(w, "layer_names", lnames, nl) < 0) {
        rb_fail(err, hint, "%s: cannot write /weights@layer_names", path);
        goto done;
    }
    rc = 0;
done:
    free(lnames);
    free(wnames);
    H5Gclose(w);
    return rc;
}

/* /optimizer of a checkpoint: the optimizer's state vector and what it needs to go on. */
static int write_optimizer(hid_t f, const char *path, const model_file_optimizer *o,
                           rb_error *err)
{
    const char *hint = WRITE_HINT;
    hid_t g = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int64_t shape[1] = {o->n};
    int fail = g < 0;
    fail = fail || h5_attr_write_str(g, "description",
                            "optimizer state of a checkpoint: one float32 vector whose "
                            "layout belongs to the optimizer kind (src/optim.h)") < 0;
    fail = fail || h5_attr_write_str(g, "kind", o->kind) < 0;
    fail = fail || h5_attr_write_scalar(g, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &o->step) < 0;
    fail = fail || h5_attr_write_str(g, "config", o->config ? o->config : "{}") < 0;
    fail = fail || mf_attr_write_hash(g, "xxh3", mf_optimizer_hash(o->kind, o->step, o->config ? o->config : "{}")) < 0;
    fail = fail || (o->n < 0 || (o->n > 0 && !o->state));
    fail = fail || write_tensor(g, "state", 1, shape, o->state, NULL, -1) < 0;
    if (g >= 0)
        H5Gclose(g);
    if (fail)
        return rb_fail(err, hint, "%s: cannot write /optimizer", path);
    return 0;
}

/* /train_state of a checkpoint: where training stands. */
static int write_train_state(hid_t f, const char *path, const model_file_train_state *t,
                             rb_error *err)
{
    const char *hint = WRITE_HINT;
    hid_t g = H5Gcreate2(f, "train_state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int fail = g < 0;
    fail = fail || h5_attr_write_str(g, "description",
                            "where training stands: epochs completed, optimizer steps, "
                            "samples of the current epoch consumed, seed, best metric") < 0;
    fail = fail || h5_attr_write_scalar(g, "epoch", H5T_STD_I64LE, H5T_NATIVE_INT64, &t->epoch) < 0;
    fail = fail || h5_attr_write_scalar(g, "step", H5T_STD_I64LE, H5T_NATIVE_INT64, &t->step) < 0;
    fail = fail || h5_attr_write_scalar(g, "data_position", H5T_STD_I64LE, H5T_NATIVE_INT64,
                               &t->data_position) < 0;
    fail = fail || h5_attr_write_scalar(g, "rng_seed", H5T_STD_U64LE, H5T_NATIVE_UINT64,
                               &t->rng_seed) < 0;
    fail = fail || h5_attr_write_scalar(g, "best_metric", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                               &t->best_metric) < 0;
    fail = fail || h5_attr_write_str(g, "best_metric_name", t->best_metric_name) < 0;
    fail = fail || mf_attr_write_hash(g, "xxh3", mf_train_state_hash(t)) < 0;
    if (g >= 0)
        H5Gclose(g);
    if (fail)
        return rb_fail(err, hint, "%s: cannot write /train_state", path);
    return 0;
}

static int write_contents(hid_t f, const char *path, const model_file_contents *c, rb_error *err)
{
    if (write_root_attrs(f, path, c, err) < 0 || write_weights(f, path, c, err) < 0)
        return -1;
    if (c->optimizer && write_optimizer(f, path, c->optimizer, err) < 0)
        return -1;
    if (c->train_state && write_train_state(f, path, c->train_state, err) < 0)
        return -1;
    return 0;
}

static int model_file_save_quiet(const char *path, const model_file_contents *c, rb_error *err)
{
    if (!c || !c->architecture)
        return rb_fail(err, NULL, "%s: no architecture text to save", path);
    /* The architecture text and model card can exceed the 64 KiB that compact attribute
     * storage allows: dense attribute storage (HDF5 >= 1.8 file format) lifts the limit.
     * The file is built in memory and written out by fs_write_file_atomic (temp, fsync,
     * rename): a full disk is then our write error, never HDF5's (h5util.h). */
    h5_mem_file mem;
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = h5_mem_fapl(&mem);
    if (fcpl < 0 || fapl < 0 || H5Pset_attr_phase_change(fcpl, 0, 0) < 0 ||
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0) {
        if (fcpl >= 0)
            H5Pclose(fcpl);
        if (fapl >= 0)
            H5Pclose(fapl);
        return rb_fail(err, NULL, "%s: HDF5 property setup failed", path);
    }
    char mem_name[4200]; /* never on disk; a name of its own so it matches no open file */
    snprintf(mem_name, sizeof mem_name, "%s.in-memory.%ld", path, (long)getpid());
    hid_t f = H5Fcreate(mem_name, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (f < 0) {
        h5_mem_free(&mem);
        return rb_fail(err, "is the machine out of memory?", "%s: cannot create the HDF5 file in memory", path);
    }
    int rc = write_contents(f, path, c, err);
    size_t len = 0;
    if (H5Fclose(f) < 0 && rc == 0)
        rc = rb_fail(err, "is the machine out of memory?", "%s: cannot finish the HDF5 file", path);
    if (rc == 0 && h5_mem_bytes(&mem, &len) < 0)
        rc = rb_fail(err, "is the machine out of memory?", "%s: the HDF5 file built in memory is incomplete", path);
    if (rc == 0)
        rc = fs_write_file_atomic(path, mem.buf, len, err);
    h5_mem_free(&mem);
    return rc;
}

int model_file_save(const char *path, const model_file_contents *c, rb_error *err)
{
    h5_quiet q;
    h5_quiet_begin(&q);
    int rc = model_file_save_quiet(path, c, err);
    h5_quiet_end(&q);
    return rc;
}
