/* .keras archives: a zip of config.json, metadata.json and model.weights.h5, read with
 * libzip; the weights are opened from memory (see docs/formats-model.md, ".keras archives"). */
#include "keras_internal.h"
#include "h5util.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <zip.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Nobody has a 4 GiB weight file or a 256 MiB config.json. */
#define MAX_WEIGHTS_BYTES ((zip_uint64_t)4 << 30)
#define MAX_CONFIG_BYTES ((zip_uint64_t)256 << 20)

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
int keras_open_archive(keras_file *kf, cJSON **config, rb_error *err)
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
        const char *v = keras_json_str(m, "keras_version");
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
