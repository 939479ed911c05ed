/* Shard and index.json integrity: a record failing its CRC-32 is an error naming the shard
 * and the record; a shard that disagrees with its index.json entry (image size, class
 * names, split position, record count, plan hash, records per class, labels out of range,
 * the checksum of /checksums) is an error naming both files and what differs; a
 * num_records attribute that disagrees with /images; a shard whose labels, paths or source
 * sizes no longer give its metadata_checksum, and a format_version 1 shard; index.json's own
 * checksum and its split summary. */
#include "shard.h"
#include "shard_dataset.h"
#include "shard_index.h"
#include "test_util.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define N 6
#define H 4
#define W 4

static int contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        fprintf(stderr, "  message: %s\n  lacks:   %s\n", hay, needle);
        return 0;
    }
    return 1;
}

static char *class_names[2] = {"NORMAL", "PNEUMONIA"};
static char *swapped_names[2] = {"PNEUMONIA", "NORMAL"};
static const char *PLAN = "0123456789abcdef0123456789abcdef";

/* A 6-record 4x4x1 shard; labels[2] and the CRC of record `bad_crc` (-1: none) as given. */
static void write_test_shard(const char *path, int32_t label2, int bad_crc)
{
    uint8_t images[N * H * W];
    for (int i = 0; i < N * H * W; i++)
        images[i] = (uint8_t)(i * 7 + 3);
    int32_t labels[N] = {0, 1, label2, 0, 1, -1};
    uint32_t crc[N];
    const char *paths[N] = {"a", "b", "c", "d", "e", "f"};
    const char *hash[N];
    int32_t sizes[2 * N];
    for (int i = 0; i < N; i++) {
        crc[i] = shard_record_crc(images + i * H * W, H * W) ^ (i == bad_crc ? 1u : 0u);
        hash[i] = "00000000000000000000000000000000";
        sizes[2 * i] = sizes[2 * i + 1] = 10;
    }
    shard_meta m = {H, W, 1, 2, class_names, "train", 0, 1, "src", "stretch", "triangle", 1, PLAN, 0};
    shard_records r = {N, images, labels, paths, crc, hash, sizes};
    rb_error err = {0};
    CHECK(shard_write(path, &m, &r, &err) == 0, "write %s: %s", path, err.msg);
}

/* overwrite an existing integer root attribute of a file */
static void set_root_int(const char *path, const char *name, int64_t value)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, name, H5P_DEFAULT);
    CHECK(f >= 0 && a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &value) >= 0, "set %s in %s", name, path);
    H5Aclose(a);
    H5Fclose(f);
}

int main(void)
{
    const char *dir = test_tmpdir("shard_integrity");
    char path[4096], idxpath[4200];
    snprintf(path, sizeof path, "%s/train-00000-of-00001.h5", dir);
    snprintf(idxpath, sizeof idxpath, "%s/index.json", dir);
    write_test_shard(path, 1, -1);
    rb_error err = {0};
    shard_reader r;
    CHECK(shard_open(&r, path, &err) == 0, "open: %s", err.msg);

    /* the index entry that matches */
    int64_t per_class[2] = {2, 3}; /* labels 0,1,1,0,1,-1 */
    shard_index_entry e;
    memset(&e, 0, sizeof e);
    snprintf(e.file, sizeof e.file, "train-00000-of-00001.h5");
    e.split = 0;
    e.index = 0;
    e.count = 1;
    e.records = N;
    e.per_class = per_class;
    snprintf(e.checksum, sizeof e.checksum, "%016llx",
             (unsigned long long)XXH3_64bits(r.crc, (size_t)N * sizeof(uint32_t)));
    snprintf(e.plan_hash, sizeof e.plan_hash, "%s", PLAN);
    int64_t split_records[SHARD_INDEX_SPLITS] = {N, 0, 0, 0};
    int64_t split_class[SHARD_INDEX_SPLITS * 2] = {2, 3, 0, 0, 0, 0, 0, 0};
    shard_index x;
    memset(&x, 0, sizeof x);
    x.height = H;
    x.width = W;
    x.channels = 1;
    snprintf(x.resize, sizeof x.resize, "stretch");
    x.nclasses = 2;
    x.class_names = class_names;
    x.nshards = 1;
    x.shards = &e;
    memcpy(x.split_records, split_records, sizeof split_records);
    x.split_class = split_class;
    x.val_fraction = 0.25;
    CHECK(shard_check_index(&r, dir, &x, &e, &err) == 0, "a matching entry: %s", err.msg);

    char want[8192];
    e.records = 7;
    snprintf(want, sizeof want, "%s: 6 records, %s says 7", path, idxpath);
    CHECK(shard_check_index(&r, dir, &x, &e, &err) < 0 && contains(err.msg, want), "record count");
    e.records = N;
    per_class[0] = 3;
    snprintf(want, sizeof want, "%s: 2 records of class NORMAL, %s says 3", path, idxpath);
    CHECK(shard_check_index(&r, dir, &x, &e, &err) < 0 && contains(err.msg, want), "per class");
    per_class[0] = 2;
    x.class_names = swapped_names;
    snprintf(want, sizeof want, "%s: class_names [NORMAL, PNEUMONIA], %s says [PNEUMONIA, NORMAL]", path, idxpath);
    CHECK(shard_check_index(&r, dir, &x, &e, &err) < 0 && contains(err.msg, want), "swapped class names");
    x.class_names = class_names;
    x.width = 5;
    snprintf(want, sizeof want, "%s: images are 4x4x1, %s says 4x5x1", path, idxpath);
    CHECK(shard_check_index(&r, dir, &x, &e, &err) < 0 && contains(err.msg, want), "image size");
    x.width = W;
    e.index = 1;
    e.count = 2;
    snprintf(want, sizeof want, "%s: split train shard 0 of 1, %s says split train shard 1 of 2", path, idxpath);
    CHECK(shard_check_index(&r, dir, &x, &e, &err) < 0 && contains(err.msg, want), "shard position");
    e.index = 0;
    e.count = 1;
    e.plan_hash[0] = 'f';
    CHECK(shard_check_index(&r, dir, &x, &e, &err) < 0 && contains(err.msg, "plan_hash 0123"), "plan hash");
    e.plan_hash[0] = '0';
    char saved = e.checksum[3];
    e.checksum[3] = saved == '0' ? '1' : '0';
    CHECK(shard_check_index(&r, dir, &x, &e, &err) < 0 && contains(err.msg, "the XXH3-64 of its /checksums is"),
          "checksum of /checksums");
    e.checksum[3] = saved;
    CHECK(shard_check_index(&r, dir, &x, &e, &err) == 0, "restored entry: %s", err.msg);

    /* every record read is CRC-checked */
    uint8_t px[N * H * W];
    CHECK(shard_read(&r, 0, N, px, NULL, &err) == 0, "intact records read: %s", err.msg);
    shard_close(&r);

    char bad[4200];
    snprintf(bad, sizeof bad, "%s/bad-crc.h5", dir);
    write_test_shard(bad, 1, 3);
    CHECK(shard_open(&r, bad, &err) == 0, "open: %s", err.msg);
    CHECK(shard_read(&r, 0, 3, px, NULL, &err) == 0, "records 0..2 are intact: %s", err.msg);
    snprintf(want, sizeof want, "%s: record 3 fails its CRC-32 check (stored ", bad);
    CHECK(shard_read(&r, 2, 3, px, NULL, &err) < 0 && contains(err.msg, want), "record 3");
    int64_t nbad = 0, which[4] = {-1, -1, -1, -1};
    CHECK(shard_verify_list(&r, &nbad, which, 4, &err) == 0 && nbad == 1 && which[0] == 3,
          "verify lists record 3 (%lld bad)", (long long)nbad);
    shard_close(&r);

    /* a label outside the classes */
    write_test_shard(bad, 5, -1);
    CHECK(shard_open(&r, bad, &err) == 0, "open: %s", err.msg);
    snprintf(e.checksum, sizeof e.checksum, "%016llx",
             (unsigned long long)XXH3_64bits(r.crc, (size_t)N * sizeof(uint32_t)));
    snprintf(want, sizeof want, "%s: record 2 has label 5, outside -1..1", bad);
    CHECK(shard_check_index(&r, dir, &x, &e, &err) < 0 && contains(err.msg, want), "label out of range");
    shard_close(&r);

    /* num_records disagreeing with /images */
    write_test_shard(bad, 1, -1);
    set_root_int(bad, "num_records", 5);
    snprintf(want, sizeof want, "%s: /images holds 6 records, the num_records attribute says 5", bad);
    CHECK(shard_open(&r, bad, &err) < 0 && contains(err.msg, want), "num_records");

    /* metadata_checksum: labels swapped (class counts and pixel CRCs unchanged), a path,
     * a source size, or a format_version 1 shard (no metadata_checksum) are refused at open */
    struct {
        const char *dataset, *what;
    } edits[] = {{"labels", "two labels swapped"}, {"paths", "a path"}, {"source_size", "a source size"}};
    for (size_t k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        write_test_shard(bad, 1, -1);
        hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t ds = H5Dopen2(f, edits[k].dataset, H5P_DEFAULT);
        if (k == 0) {
            int32_t l[N] = {1, 0, 1, 0, 1, -1}; /* records 0 and 1 swapped */
            H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, l);
        } else if (k == 1) {
            const char *pv[N] = {"a", "b", "c", "x", "e", "f"};
            hid_t t = H5Dget_type(ds);
            H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, pv);
            H5Tclose(t);
        } else {
            int32_t sz[2 * N] = {10, 10, 10, 10, 10, 11, 10, 10, 10, 10, 10, 10};
            H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, sz);
        }
        H5Dclose(ds);
        H5Fclose(f);
        snprintf(want, sizeof want, "%s: metadata_checksum mismatch: the records' labels, paths or source hashes", bad);
        CHECK(shard_open(&r, bad, &err) < 0 && contains(err.msg, want), "%s", edits[k].what);
    }
    write_test_shard(bad, 1, -1);
    set_root_int(bad, "format_version", 1);
    snprintf(want, sizeof want, "%s: shard format version 1, this radbatch reads version 2", bad);
    CHECK(shard_open(&r, bad, &err) < 0 && contains(err.msg, want), "format_version 1");
    /* the checksum itself: the XXH3-64 of the bytes docs/formats.md lists, in that order */
    {
        unsigned char bytes[4 * N + 8 * N + 32 * N + 2 * N], *q = bytes;
        int32_t l[N] = {0, 1, 1, 0, 1, -1};
        for (int i = 0; i < N; i++, q += 4)
            for (int b = 0; b < 4; b++)
                q[b] = (unsigned char)((uint32_t)l[i] >> (8 * b));
        for (int i = 0; i < 2 * N; i++, q += 4) {
            memset(q, 0, 4);
            q[0] = 10;
        }
        for (int i = 0; i < N; i++, q += 32)
            memset(q, '0', 32);
        for (int i = 0; i < N; i++, q += 2) {
            q[0] = (unsigned char)('a' + i);
            q[1] = 0;
        }
        char expect_hex[17], stored[64] = "";
        snprintf(expect_hex, sizeof expect_hex, "%016llx", (unsigned long long)XXH3_64bits(bytes, sizeof bytes));
        write_test_shard(bad, 1, -1);
        hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
        hid_t a = H5Aopen(f, "metadata_checksum", H5P_DEFAULT);
        hid_t t = H5Aget_type(a);
        char *v = NULL;
        if (H5Tis_variable_str(t) > 0 && H5Aread(a, t, &v) >= 0 && v) {
            snprintf(stored, sizeof stored, "%s", v);
            H5free_memory(v);
        }
        H5Tclose(t);
        H5Aclose(a);
        H5Fclose(f);
        CHECK(strcmp(stored, expect_hex) == 0, "metadata_checksum %s, the documented bytes give %s", stored, expect_hex);
    }

    /* index.json: written with its checksum, read back; a changed byte is refused */
    CHECK(shard_index_write(dir, &x, &err) == 0, "index write: %s", err.msg);
    shard_index y;
    CHECK(shard_index_read(dir, &y, &err) == 0, "index read: %s", err.msg);
    CHECK(y.nclasses == 2 && y.nshards == 1 && y.shards[0].records == N, "index round trip");
    shard_index_free(&y);
    FILE *jf = fopen(idxpath, "rb");
    char text[16384];
    size_t len = jf ? fread(text, 1, sizeof text - 1, jf) : 0;
    if (jf)
        fclose(jf);
    text[len] = 0;
    char *vf = strstr(text, "\"val_fraction\":\t0.25");
    CHECK(vf != NULL, "val_fraction in index.json");
    if (vf) {
        vf[strlen("\"val_fraction\":\t0.2")] = '6'; /* 0.25 -> 0.26: still valid JSON */
        jf = fopen(idxpath, "wb");
        fwrite(text, 1, len, jf);
        fclose(jf);
        snprintf(want, sizeof want, "%s: checksum mismatch: index_checksum says ", idxpath);
        CHECK(shard_index_read(dir, &y, &err) < 0 && contains(err.msg, want), "edited index.json");
    }
    /* a split summary that disagrees with the shards (version 1: no checksum to catch it) */
    split_records[0] = N;
    x.split_records[0] = N + 1;
    CHECK(shard_index_write(dir, &x, &err) == 0, "index write: %s", err.msg);
    jf = fopen(idxpath, "rb");
    len = jf ? fread(text, 1, sizeof text - 1, jf) : 0;
    if (jf)
        fclose(jf);
    text[len] = 0;
    char *ver = strstr(text, "\"format_version\":\t2");
    char *ck = strstr(text, ",\n\t\"index_checksum\"");
    CHECK(ver && ck, "version and checksum members found");
    if (ver && ck) {
        ver[strlen("\"format_version\":\t")] = '1';
        strcpy(ck, "\n}\n");
        jf = fopen(idxpath, "wb");
        fputs(text, jf);
        fclose(jf);
        snprintf(want, sizeof want, "%s: splits.train.records says 7, its shards' records add up to 6", idxpath);
        CHECK(shard_index_read(dir, &y, &err) < 0 && contains(err.msg, want), "split summary: %s", err.msg);
    }
    return TEST_DONE();
}
