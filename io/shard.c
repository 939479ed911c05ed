#define _GNU_SOURCE /* sync_file_range */
#include "shard.h"
#include "fsutil.h"
#include "h5util.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#ifndef RADBATCH_VERSION
#define RADBATCH_VERSION "dev"
#endif

uint32_t shard_record_crc(const uint8_t *pixels, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);
    /* zlib takes uInt lengths */
    while (len) {
        uInt part = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, pixels, part);
        pixels += part;
        len -= part;
    }
    return (uint32_t)c;
}

/* HDF5 prints its own error stack by default; radbatch reports errors itself. */
static void h5_errors_off(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static int attr_int(hid_t obj, const char *name, int64_t value)
{
    return h5_attr_write_scalar(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

static int attr_str_array(hid_t obj, const char *name, char *const *values, int n)
{
    hid_t t = h5_vlen_str(H5T_CSET_UTF8);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = n ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_NULL);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : (n ? H5Awrite(a, t, values) : 0);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc < 0 ? -1 : 0;
}

static int ds_describe(hid_t ds, const char *text) { return h5_attr_write_str(ds, "description", text); }

/* dataset creation properties: no timestamps, so identical inputs give identical bytes */
static hid_t dcpl_plain(void)
{
    hid_t p = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(p, 0);
    return p;
}

static int write_1d(hid_t file, const char *name, hid_t ftype, hid_t mtype, int64_t n, int cols,
                    const void *data, const char *desc)
{
    hsize_t dims[2] = {(hsize_t)n, (hsize_t)cols};
    hid_t sp = H5Screate_simple(cols > 1 ? 2 : 1, dims, NULL);
    hid_t p = dcpl_plain();
    hid_t ds = H5Dcreate2(file, name, ftype, sp, H5P_DEFAULT, p, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : (n ? H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) : 0);
    if (ds >= 0) {
        if (rc >= 0 && ds_describe(ds, desc) < 0)
            rc = -1;
        H5Dclose(ds);
    }
    H5Pclose(p);
    H5Sclose(sp);
    return rc < 0 || ds < 0 ? -1 : 0;
}

/* /images: uint8 [N, H, W, C] in chunks of whole images, ~1 MiB, deflated when asked */
static int write_images(hid_t f, const shard_meta *m, const shard_records *r)
{
    const int64_t rec_bytes = (int64_t)m->height * m->width * m->channels;
    int64_t rows = rec_bytes > 0 ? (1 << 20) / rec_bytes : 1;
    if (rows < 1)
        rows = 1;
    if (r->n > 0 && rows > r->n)
        rows = r->n;
    hsize_t dims[4] = {(hsize_t)r->n, (hsize_t)m->height, (hsize_t)m->width, (hsize_t)m->channels};
    hsize_t chunk[4] = {(hsize_t)rows, dims[1], dims[2], dims[3]};
    hid_t sp = H5Screate_simple(4, dims, NULL);
    hid_t p = dcpl_plain();
    if (r->n > 0) {
        H5Pset_chunk(p, 4, chunk);
        if (m->compression > 0) {
            H5Pset_shuffle(p);
            H5Pset_deflate(p, (unsigned)m->compression);
        }
    }
    int bad = 0;
    hid_t ds = H5Dcreate2(f, "images", H5T_STD_U8LE, sp, H5P_DEFAULT, p, H5P_DEFAULT);
    if (ds < 0 || (r->n && H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->images) < 0) ||
        ds_describe(ds, "decoded, resized pixels: uint8 [N, height, width, channels], row-major HWC per record") < 0)
        bad = 1;
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(p);
    H5Sclose(sp);
    return bad ? -1 : 0;
}

/* /source_hash: fixed-length 32-character hex strings, packed */
static int write_source_hash(hid_t f, const shard_records *r)
{
    char *packed = malloc((size_t)(r->n ? r->n : 1) * 32);
    if (!packed)
        return -1;
    for (int64_t i = 0; i < r->n; i++)
        memcpy(packed + i * 32, r->source_hash[i], 32);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 32);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    int rc = write_1d(f, "source_hash", t, t, r->n, 1, packed, "XXH3-128 of the source file bytes, 32 hex digits");
    H5Tclose(t);
    free(packed);
    return rc;
}

/* The datasets: images, labels, paths, checksums, source_hash, source_size. */
static int write_datasets(hid_t f, const shard_meta *m, const shard_records *r)
{
    if (write_images(f, m, r) < 0)
        return -1;
    if (write_1d(f, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, r->n, 1, r->labels,
                 "class index into the class_names attribute; -1 = unlabelled") < 0)
        return -1;
    hid_t t = h5_vlen_str(H5T_CSET_UTF8);
    int bad = write_1d(f, "paths", t, t, r->n, 1, r->paths, "source file path relative to its input root") < 0;
    H5Tclose(t);
    if (bad)
        return -1;
    if (write_1d(f, "checksums", H5T_STD_U32LE, H5T_NATIVE_UINT32, r->n, 1, r->checksums,
                 "CRC-32 (zlib) of each record's height*width*channels pixel bytes") < 0)
        return -1;
    if (write_source_hash(f, r) < 0)
        return -1;
    return write_1d(f, "source_size", H5T_STD_I32LE, H5T_NATIVE_INT32, r->n, 2, r->source_size,
                    "height, width of the source image before resizing");
}

/* The root attributes that make the file explain itself (docs/formats.md). */
static int write_root_attrs(hid_t root, const shard_meta *m, const shard_records *r)
{
    int bad = 0;
    bad |= h5_attr_write_str(root, "format", SHARD_FORMAT) < 0;
    bad |= attr_int(root, "format_version", SHARD_FORMAT_VERSION) < 0;
    bad |= attr_str_array(root, "class_names", m->class_names, m->nclasses) < 0;
    bad |= attr_int(root, "height", m->height) < 0;
    bad |= attr_int(root, "width", m->width) < 0;
    bad |= attr_int(root, "channels", m->channels) < 0;
    bad |= h5_attr_write_str(root, "split", m->split) < 0;
    bad |= attr_int(root, "shard_index", m->shard_index) < 0;
    bad |= attr_int(root, "shard_count", m->shard_count) < 0;
    bad |= attr_int(root, "num_records", r->n) < 0;
    bad |= h5_attr_write_str(root, "source_roots", m->source_roots) < 0;
    bad |= h5_attr_write_str(root, "resize", m->resize) < 0;
    bad |= h5_attr_write_str(root, "resize_filter", m->resize_filter) < 0;
    bad |= attr_int(root, "dct_scaling", m->dct_scaling) < 0;
    bad |= h5_attr_write_str(root, "plan_hash", m->plan_hash) < 0;
    char meta[SHARD_METADATA_CHECKSUM_LEN + 1];
    bad |= shard_metadata_checksum(r, meta) < 0 || h5_attr_write_str(root, "metadata_checksum", meta) < 0;
    bad |= h5_attr_write_str(root, "tool_version", "radbatch " RADBATCH_VERSION) < 0;
    return bad ? -1 : 0;
}

/* The whole shard built in memory (h5util.h), so that a full disk is our write error later,
 * never HDF5's: *mem holds the file's image_len bytes. */
static int build_in_memory(const char *path, const shard_meta *m, const shard_records *r, h5_mem_file *mem,
                           size_t *image_len, rb_error *err)
{
    char *tmp = fs_temp_name(path);
    if (!tmp)
        return rb_fail(err, NULL, "%s: out of memory", path);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    hid_t fapl = h5_mem_fapl(mem);
    H5Pset_obj_track_times(fcpl, 0);
    hid_t f = fcpl < 0 || fapl < 0 ? -1 : H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (fcpl >= 0)
        H5Pclose(fcpl);
    if (fapl >= 0)
        H5Pclose(fapl);
    free(tmp);
    if (f < 0) {
        h5_mem_free(mem);
        return rb_fail(err, "is the machine out of memory?", "%s: cannot create the HDF5 file in memory", path);
    }
    int bad = write_datasets(f, m, r) < 0 || write_root_attrs(f, m, r) < 0;
    if (H5Fclose(f) < 0 || h5_mem_bytes(mem, image_len) < 0)
        bad = 1;
    if (bad) {
        h5_mem_free(mem);
        return rb_fail(err, "is the machine out of memory?", "%s: building the shard in memory failed", path);
    }
    return 0;
}

int shard_write_begin(const char *path, const shard_meta *m, const shard_records *r, shard_pending *pend,
                      rb_error *err)
{
    h5_errors_off();
    pend->tmp = pend->path = NULL;
    h5_mem_file mem = {0};
    size_t image_len = 0;
    if (build_in_memory(path, m, r, &mem, &image_len, err) < 0)
        return -1;
    char *tmp = NULL;
    int rc = fs_write_temp(path, mem.buf, image_len, &tmp, err);
    h5_mem_free(&mem);
    if (rc < 0)
        return -1;
    /* Start writing the file back to disk now; shard_write_finish() waits for the rest. */
    int fd = open(tmp, O_RDONLY);
    if (fd >= 0) {
        sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        close(fd);
    }
    pend->tmp = tmp;
    pend->path = strdup(path);
    if (!pend->path) {
        unlink(tmp);
        free(tmp);
        pend->tmp = NULL;
        return rb_fail(err, NULL, "%s: out of memory", path);
    }
    return 0;
}

int shard_write_finish(shard_pending *pend, rb_error *err)
{
    if (!pend->tmp)
        return 0;
    /* fsync the temp file before the rename so a crash cannot leave a short file */
    int rc = fs_commit_temp(pend->tmp, pend->path, err);
    free(pend->tmp);
    free(pend->path);
    pend->tmp = pend->path = NULL;
    return rc;
}

int shard_write(const char *path, const shard_meta *m, const shard_records *r, rb_error *err)
{
    shard_pending pend;
    if (shard_write_begin(path, m, r, &pend, err) < 0)
        return -1;
    return shard_write_finish(&pend, err);
}

/* ---- reading ------------------------------------------------------------------------ */

static int read_attr_int(hid_t obj, const char *name, int64_t *out)
{
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    herr_t rc = H5Aread(a, H5T_NATIVE_INT64, out);
    H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

static int read_class_names(hid_t obj, char ***names, int *n)
{
    *names = NULL;
    *n = 0;
    hid_t a = H5Aopen(obj, "class_names", H5P_DEFAULT);
    if (a < 0)
        return -1;
    hid_t sp = H5Aget_space(a);
    hssize_t cnt = H5Sget_simple_extent_npoints(sp);
    int rc = 0;
    if (cnt > 0 && cnt < 100000) {
        hid_t t = h5_vlen_str(H5T_CSET_UTF8);
        char **v = calloc((size_t)cnt, sizeof *v);
        if (v && H5Aread(a, t, v) >= 0) {
            *names = calloc((size_t)cnt, sizeof **names);
            for (hssize_t i = 0; i < cnt && *names; i++)
                (*names)[i] = strdup(v[i] ? v[i] : "");
            *n = (int)cnt;
            H5Dvlen_reclaim(t, sp, H5P_DEFAULT, v);
        } else
            rc = -1;
        free(v);
        H5Tclose(t);
    }
    H5Sclose(sp);
    H5Aclose(a);
    return rc;
}

void shard_close(shard_reader *r)
{
    if (r->images > 0)
        H5Dclose((hid_t)r->images);
    if (r->labels > 0)
        H5Dclose((hid_t)r->labels);
    if (r->file > 0)
        H5Fclose((hid_t)r->file);
    free(r->crc);
    for (int i = 0; i < r->nclasses; i++)
        free(r->class_names[i]);
    free(r->class_names);
    free(r->path);
    memset(r, 0, sizeof *r);
}

int shard_open(shard_reader *r, const char *path, rb_error *err)
{
    h5_errors_off();
    memset(r, 0, sizeof *r);
    r->path = strdup(path);
    const char *hint = "rerun convert to rebuild it";
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        int exists = fs_is_file(path);
        shard_close(r);
        return rb_fail(err, exists ? hint : "check the shards folder", "%s: %s", path,
                       exists ? "not a readable HDF5 file (truncated or corrupt?)" : "no such file");
    }
    r->file = f;
    char fmt[64] = "";
    int64_t ver = 0, v;
    if (h5_attr_read_str(f, "format", fmt, sizeof fmt) < 0 || strcmp(fmt, SHARD_FORMAT) != 0) {
        shard_close(r);
        return rb_fail(err, "pass a folder written by 'radbatch convert'", "%s: not a radbatch shard (format attribute '%s')",
                       path, fmt);
    }
    if (read_attr_int(f, "format_version", &ver) < 0 || ver != SHARD_FORMAT_VERSION) {
        shard_close(r);
        return rb_fail(err, hint, "%s: shard format version %lld, this radbatch reads version %d%s", path,
                       (long long)ver, SHARD_FORMAT_VERSION,
                       ver == 1 ? " (version 1 has no metadata_checksum over labels and paths)" : "");
    }
    int ok = 1;
    ok &= read_attr_int(f, "height", &v) == 0; r->height = (int)v;
    ok &= read_attr_int(f, "width", &v) == 0; r->width = (int)v;
    ok &= read_attr_int(f, "channels", &v) == 0; r->channels = (int)v;
    ok &= read_attr_int(f, "shard_index", &v) == 0; r->shard_index = (int)v;
    ok &= read_attr_int(f, "shard_count", &v) == 0; r->shard_count = (int)v;
    ok &= read_attr_int(f, "num_records", &r->num_records) == 0;
    ok &= h5_attr_read_str(f, "split", r->split, sizeof r->split) == 0;
    ok &= h5_attr_read_str(f, "plan_hash", r->plan_hash, sizeof r->plan_hash) == 0;
    ok &= read_class_names(f, &r->class_names, &r->nclasses) == 0;
    if (!ok) {
        shard_close(r);
        return rb_fail(err, hint, "%s: missing or unreadable root attributes", path);
    }
    r->images = H5Dopen2(f, "images", H5P_DEFAULT);
    r->labels = H5Dopen2(f, "labels", H5P_DEFAULT);
    if (r->images < 0 || r->labels < 0) {
        shard_close(r);
        return rb_fail(err, hint, "%s: missing /images or /labels", path);
    }
    hid_t sp = H5Dget_space((hid_t)r->images);
    hsize_t dims[4] = {0};
    int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if (nd != 4 || (int)dims[1] != r->height || (int)dims[2] != r->width || (int)dims[3] != r->channels) {
        shard_close(r);
        return rb_fail(err, hint, "%s: /images shape does not match the height/width/channels attributes", path);
    }
    r->n = (int64_t)dims[0];
    r->chunk_rows = 1;
    hid_t p = H5Dget_create_plist((hid_t)r->images);
    if (H5Pget_layout(p) == H5D_CHUNKED) {
        hsize_t ch[4];
        if (H5Pget_chunk(p, 4, ch) == 4)
            r->chunk_rows = (int64_t)ch[0];
    }
    H5Pclose(p);
    if (r->num_records != r->n) {
        int64_t n = r->n, attr = r->num_records;
        shard_close(r);
        return rb_fail(err, hint, "%s: /images holds %lld records, the num_records attribute says %lld", path,
                       (long long)n, (long long)attr);
    }
    /* the records' CRC-32s: every read is checked against them */
    r->crc = malloc((size_t)(r->n + 1) * sizeof *r->crc);
    hid_t cs = H5Dopen2(f, "checksums", H5P_DEFAULT);
    hid_t csp = cs >= 0 ? H5Dget_space(cs) : -1;
    hssize_t ncs = csp >= 0 ? H5Sget_simple_extent_npoints(csp) : -1;
    if (csp >= 0)
        H5Sclose(csp);
    int crc_ok = r->crc && cs >= 0 && ncs == r->n &&
                 (r->n == 0 || H5Dread(cs, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, r->crc) >= 0);
    if (cs >= 0)
        H5Dclose(cs);
    if (!crc_ok) {
        shard_close(r);
        return rb_fail(err, hint, "%s: /checksums is missing, unreadable or not one CRC-32 per record", path);
    }
    /* labels, paths and source hashes: the CRC-32s above cover the pixels only */
    if (shard_check_metadata(r->file, path, r->n, err) < 0) {
        shard_close(r);
        return -1;
    }
    return 0;
}

static int read_rows(shard_reader *r, int64_t lo, int64_t count, uint8_t *images, int32_t *labels,
                     rb_error *err);

int shard_read(shard_reader *r, int64_t lo, int64_t count, uint8_t *images, int32_t *labels,
               rb_error *err)
{
    if (read_rows(r, lo, count, images, labels, err) < 0)
        return -1;
    size_t rec = (size_t)r->height * (size_t)r->width * (size_t)r->channels;
    for (int64_t i = 0; i < count; i++) {
        uint32_t c = shard_record_crc(images + (size_t)i * rec, rec);
        if (c != r->crc[lo + i])
            return rb_fail(err,
                           "the shard is damaged: rerun convert to rebuild it ('radbatch inspect --verify' lists "
                           "every damaged record)",
                           "%s: record %lld fails its CRC-32 check (stored %08x, computed %08x)", r->path,
                           (long long)(lo + i), (unsigned)r->crc[lo + i], (unsigned)c);
    }
    return 0;
}

static int read_rows(shard_reader *r, int64_t lo, int64_t count, uint8_t *images, int32_t *labels,
                     rb_error *err)
{
    if (lo < 0 || count < 0 || lo + count > r->n)
        return rb_fail(err, NULL, "%s: rows %lld..%lld out of range (%lld records)", r->path, (long long)lo,
                       (long long)(lo + count), (long long)r->n);
    if (count == 0)
        return 0;
    hid_t fs = H5Dget_space((hid_t)r->images);
    hsize_t start[4] = {(hsize_t)lo, 0, 0, 0}, cnt[4] = {(hsize_t)count, (hsize_t)r->height, (hsize_t)r->width,
                                                          (hsize_t)r->channels};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    hid_t ms = H5Screate_simple(4, cnt, NULL);
    herr_t rc = H5Dread((hid_t)r->images, H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, images);
    H5Sclose(ms);
    H5Sclose(fs);
    if (rc >= 0 && labels) {
        fs = H5Dget_space((hid_t)r->labels);
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
        ms = H5Screate_simple(1, cnt, NULL);
        rc = H5Dread((hid_t)r->labels, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, labels);
        H5Sclose(ms);
        H5Sclose(fs);
    }
    if (rc < 0)
        return rb_fail(err, "the shard may be truncated; rerun convert to rebuild it", "%s: cannot read rows %lld..%lld",
                       r->path, (long long)lo, (long long)(lo + count));
    return 0;
}

int shard_read_labels(shard_reader *r, int32_t *out, rb_error *err)
{
    if (r->n == 0)
        return 0;
    if (H5Dread((hid_t)r->labels, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        return rb_fail(err, "rerun convert to rebuild it", "%s: cannot read /labels", r->path);
    return 0;
}

int shard_read_checksums(shard_reader *r, uint32_t *out, rb_error *err)
{
    (void)err;
    if (r->n > 0)
        memcpy(out, r->crc, (size_t)r->n * sizeof *out);
    return 0;
}

int shard_read_path(shard_reader *r, int64_t i, char **out, rb_error *err)
{
    *out = NULL;
    hid_t ds = H5Dopen2((hid_t)r->file, "paths", H5P_DEFAULT);
    if (ds < 0)
        return rb_fail(err, NULL, "%s: no /paths", r->path);
    hid_t fs = H5Dget_space(ds);
    hsize_t start[1] = {(hsize_t)i}, cnt[1] = {1};
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    hid_t ms = H5Screate_simple(1, cnt, NULL);
    hid_t t = h5_vlen_str(H5T_CSET_UTF8);
    char *v = NULL;
    herr_t rc = H5Dread(ds, t, ms, fs, H5P_DEFAULT, &v);
    if (rc >= 0 && v) {
        *out = strdup(v);
        H5free_memory(v);
    }
    H5Tclose(t);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(ds);
    if (rc < 0 || !*out)
        return rb_fail(err, NULL, "%s: cannot read path of record %lld", r->path, (long long)i);
    return 0;
}

int shard_verify(shard_reader *r, int64_t *bad, rb_error *err) { return shard_verify_list(r, bad, NULL, 0, err); }

int shard_verify_list(shard_reader *r, int64_t *bad, int64_t *which, int max_which, rb_error *err)
{
    *bad = 0;
    if (r->n == 0)
        return 0;
    size_t rec = (size_t)r->height * (size_t)r->width * (size_t)r->channels;
    uint32_t *crc = malloc((size_t)r->n * sizeof *crc);
    int64_t step = r->chunk_rows > 0 ? r->chunk_rows : 1;
    while (step * (int64_t)rec < (8 << 20) && step < r->n)
        step += r->chunk_rows;
    uint8_t *buf = malloc((size_t)step * rec);
    if (!crc || !buf) {
        free(crc);
        free(buf);
        return rb_fail(err, NULL, "out of memory verifying %s", r->path);
    }
    int rc = shard_read_checksums(r, crc, err);
    for (int64_t lo = 0; rc == 0 && lo < r->n; lo += step) {
        int64_t cnt = r->n - lo < step ? r->n - lo : step;
        rc = read_rows(r, lo, cnt, buf, NULL, err); /* counts mismatches rather than stopping at one */
        for (int64_t i = 0; rc == 0 && i < cnt; i++)
            if (shard_record_crc(buf + (size_t)i * rec, rec) != crc[lo + i]) {
                if (which && *bad < max_which)
                    which[*bad] = lo + i;
                (*bad)++;
            }
    }
    free(crc);
    free(buf);
    return rc;
}
