/* The metadata checksum of a shard (docs/formats.md): the per-record CRC-32s in /checksums
 * cover the pixels only, so a changed byte in /labels that keeps every class count (two
 * labels swapped), in /paths, /source_hash or /source_size would otherwise be read without
 * notice. The root attribute metadata_checksum is the XXH3-64 of those four datasets, in
 * this order:
 *   /labels       N int32, little-endian
 *   /source_size  N x 2 int32, little-endian
 *   /source_hash  N x 32 bytes
 *   /paths        each path's UTF-8 bytes followed by one 0 byte
 * printed as 16 lowercase hex digits. shard_open checks it. */
#include "shard.h"
#include "h5util.h"

#include <hdf5.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* int32 values as little-endian bytes, whatever the host */
static void hash_i32(XXH3_state_t *st, const int32_t *v, int64_t n)
{
    unsigned char b[4];
    for (int64_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)v[i];
        b[0] = (unsigned char)u;
        b[1] = (unsigned char)(u >> 8);
        b[2] = (unsigned char)(u >> 16);
        b[3] = (unsigned char)(u >> 24);
        XXH3_64bits_update(st, b, 4);
    }
}

/* The hash over arrays in memory; source_hash is n x 32 packed bytes. */
static int metadata_hash(int64_t n, const int32_t *labels, const int32_t *source_size, const char *source_hash,
                         const char *const *paths, char out[SHARD_METADATA_CHECKSUM_LEN + 1])
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return -1;
    XXH3_64bits_reset(st);
    hash_i32(st, labels, n);
    hash_i32(st, source_size, 2 * n);
    if (n > 0)
        XXH3_64bits_update(st, source_hash, (size_t)n * 32);
    for (int64_t i = 0; i < n; i++) {
        const char *p = paths[i] ? paths[i] : "";
        XXH3_64bits_update(st, p, strlen(p) + 1);
    }
    snprintf(out, SHARD_METADATA_CHECKSUM_LEN + 1, "%016" PRIx64, (uint64_t)XXH3_64bits_digest(st));
    XXH3_freeState(st);
    return 0;
}

int shard_metadata_checksum(const shard_records *r, char out[SHARD_METADATA_CHECKSUM_LEN + 1])
{
    char *packed = malloc((size_t)(r->n ? r->n : 1) * 32);
    if (!packed)
        return -1;
    for (int64_t i = 0; i < r->n; i++)
        memcpy(packed + i * 32, r->source_hash[i], 32);
    int rc = metadata_hash(r->n, r->labels, r->source_size, packed, r->paths, out);
    free(packed);
    return rc;
}

/* all n rows of a dataset into buf; an absent dataset or another row count is an error */
static int read_whole(hid_t f, const char *name, hid_t mtype, int64_t n, void *buf)
{
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[2] = {0, 0};
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
    int rc = nd >= 1 && (int64_t)dims[0] == n ? 0 : -1;
    if (rc == 0 && n > 0 && H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        rc = -1;
    if (sp >= 0)
        H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

/* /paths as n malloc'd-by-HDF5 strings; *paths_out is freed with free_paths */
static int read_paths(hid_t f, int64_t n, char ***paths_out)
{
    *paths_out = calloc((size_t)(n ? n : 1), sizeof **paths_out);
    if (!*paths_out)
        return -1;
    hid_t t = h5_vlen_str(H5T_CSET_UTF8);
    int rc = read_whole(f, "paths", t, n, *paths_out);
    H5Tclose(t);
    return rc;
}

static void free_paths(char **paths, int64_t n)
{
    if (!paths)
        return;
    for (int64_t i = 0; i < n; i++)
        if (paths[i])
            H5free_memory(paths[i]);
    free(paths);
}

int shard_check_metadata(int64_t file, const char *path, int64_t n, rb_error *err)
{
    const char *hint = "the shard is damaged or was edited after convert: rerun convert to rebuild it";
    hid_t f = (hid_t)file;
    char stored[64] = "";
    if (h5_attr_read_str(f, "metadata_checksum", stored, sizeof stored) < 0)
        return rb_fail(err, hint, "%s: no metadata_checksum attribute", path);
    size_t rows = (size_t)(n ? n : 1);
    int32_t *labels = malloc(rows * sizeof *labels);
    int32_t *size = malloc(rows * 2 * sizeof *size);
    char *hash = malloc(rows * 32);
    char **paths = NULL;
    char computed[SHARD_METADATA_CHECKSUM_LEN + 1];
    hid_t t = -1;
    int rc = -1;
    const char *what = "/labels";
    if (!labels || !size || !hash) {
        rc = rb_fail(err, NULL, "%s: out of memory reading the record metadata", path);
        goto done;
    }
    if (read_whole(f, "labels", H5T_NATIVE_INT32, n, labels) < 0)
        goto unreadable;
    what = "/source_size";
    if (read_whole(f, "source_size", H5T_NATIVE_INT32, n, size) < 0)
        goto unreadable;
    what = "/source_hash";
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 32);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    int hrc = read_whole(f, "source_hash", t, n, hash);
    H5Tclose(t);
    if (hrc < 0)
        goto unreadable;
    what = "/paths";
    if (read_paths(f, n, &paths) < 0)
        goto unreadable;
    if (metadata_hash(n, labels, size, hash, (const char *const *)paths, computed) < 0) {
        rc = rb_fail(err, NULL, "%s: out of memory hashing the record metadata", path);
        goto done;
    }
    if (strcmp(stored, computed) != 0) {
        rc = rb_fail(err, hint,
                     "%s: metadata_checksum mismatch: the records' labels, paths or source hashes were changed "
                     "(stored %s, computed %s)",
                     path, stored, computed);
        goto done;
    }
    rc = 0;
    goto done;
unreadable:
    rc = rb_fail(err, hint, "%s: %s is missing, unreadable or not one row per record", path, what);
done:
    free_paths(paths, n);
    free(labels);
    free(size);
    free(hash);
    return rc;
}
