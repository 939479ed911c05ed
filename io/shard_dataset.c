#include "shard_dataset.h"
#include "fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const char *split_name(int s)
{
    static const char *nm[SHARD_INDEX_SPLITS] = {"train", "val", "test", "all"};
    return s >= 0 && s < SHARD_INDEX_SPLITS ? nm[s] : "?";
}

static void names_text(char *buf, size_t cap, char *const *v, int n)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? ", " : "", v[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

int shard_check_index(shard_reader *r, const char *dir, const shard_index *x, const shard_index_entry *e,
                      rb_error *err)
{
    const char *hint = "the shard and index.json disagree: one was changed or damaged after convert; rerun convert";
    char *ip = fs_join(dir, "index.json");
    const char *idx = ip ? ip : "index.json";
    int rc = -1;
    if (r->height != x->height || r->width != x->width || r->channels != x->channels) {
        rb_fail(err, hint, "%s: images are %dx%dx%d, %s says %dx%dx%d", r->path, r->height, r->width, r->channels, idx,
                x->height, x->width, x->channels);
        goto out;
    }
    int same = r->nclasses == x->nclasses;
    for (int c = 0; same && c < x->nclasses; c++)
        same = strcmp(r->class_names[c], x->class_names[c]) == 0;
    if (!same) {
        char a[512], b[512];
        names_text(a, sizeof a, r->class_names, r->nclasses);
        names_text(b, sizeof b, x->class_names, x->nclasses);
        rb_fail(err, hint, "%s: class_names %s, %s says %s", r->path, a, idx, b);
        goto out;
    }
    if (strcmp(r->split, split_name(e->split)) != 0 || r->shard_index != e->index || r->shard_count != e->count) {
        rb_fail(err, hint, "%s: split %s shard %d of %d, %s says split %s shard %d of %d", r->path, r->split,
                r->shard_index, r->shard_count, idx, split_name(e->split), e->index, e->count);
        goto out;
    }
    if (r->n != e->records) {
        rb_fail(err, hint, "%s: %lld records, %s says %lld", r->path, (long long)r->n, idx, (long long)e->records);
        goto out;
    }
    if (e->plan_hash[0] && strcmp(r->plan_hash, e->plan_hash) != 0) {
        rb_fail(err, hint, "%s: plan_hash %s, %s says %s", r->path, r->plan_hash, idx, e->plan_hash);
        goto out;
    }
    char ck[17];
    snprintf(ck, sizeof ck, "%016llx", (unsigned long long)XXH3_64bits(r->crc, (size_t)r->n * sizeof *r->crc));
    if (e->checksum[0] && strcmp(ck, e->checksum) != 0) {
        rb_fail(err, hint, "%s: the XXH3-64 of its /checksums is %s, %s says %s", r->path, ck, idx, e->checksum);
        goto out;
    }
    int32_t *labels = malloc((size_t)(r->n + 1) * sizeof *labels);
    int64_t *count = calloc((size_t)x->nclasses + 1, sizeof *count);
    if (!labels || !count) {
        free(labels);
        free(count);
        rb_fail(err, NULL, "out of memory");
        goto out;
    }
    rc = shard_read_labels(r, labels, err);
    for (int64_t i = 0; rc == 0 && i < r->n; i++) {
        if (labels[i] < -1 || labels[i] >= x->nclasses)
            rc = rb_fail(err, hint, "%s: record %lld has label %d, outside -1..%d", r->path, (long long)i, labels[i],
                         x->nclasses - 1);
        else if (labels[i] >= 0)
            count[labels[i]]++;
    }
    for (int c = 0; rc == 0 && c < x->nclasses; c++)
        if (count[c] != e->per_class[c])
            rc = rb_fail(err, hint, "%s: %lld records of class %s, %s says %lld", r->path, (long long)count[c],
                         x->class_names[c], idx, (long long)e->per_class[c]);
    free(labels);
    free(count);
out:
    free(ip);
    return rc;
}

void shard_dataset_close(shard_dataset *d)
{
    for (int k = 0; k < d->nshards; k++)
        shard_close(&d->shards[k]);
    free(d->shards);
    free(d->first);
    free(d->cache);
    free(d->labels);
    free(d->per_class);
    free(d->dir);
    shard_index_free(&d->index);
    memset(d, 0, sizeof *d);
}

int shard_dataset_open(shard_dataset *d, const char *dir, const char *split_name, int64_t cache_bytes,
                       rb_error *err)
{
    memset(d, 0, sizeof *d);
    d->dir = strdup(dir);
    if (shard_index_read(dir, &d->index, err) < 0)
        return -1;
    d->split = shard_index_split_id(split_name);
    if (d->split < 0) {
        shard_dataset_close(d);
        return rb_fail(err, "splits are train, val, test or all", "%s: unknown split '%s'", dir, split_name);
    }
    const shard_index *x = &d->index;
    for (int k = 0; k < x->nshards; k++)
        d->nshards += x->shards[k].split == d->split;
    if (d->nshards == 0) {
        int test = d->split == 2;
        shard_dataset_close(d);
        return rb_fail(err,
                       test ? "convert with test_fraction > 0 (a held-out test split), or point to another split"
                            : "convert with val_fraction > 0, or point to another split",
                       "%s: no '%s' split in index.json", dir, split_name);
    }
    d->height = x->height;
    d->width = x->width;
    d->channels = x->channels;
    d->record_bytes = (size_t)x->height * x->width * x->channels;
    d->shards = calloc((size_t)d->nshards, sizeof *d->shards);
    d->first = calloc((size_t)d->nshards + 1, sizeof *d->first);
    d->per_class = calloc((size_t)x->nclasses + 1, sizeof *d->per_class);
    if (!d->shards || !d->first || !d->per_class) {
        shard_dataset_close(d);
        return rb_fail(err, NULL, "out of memory");
    }
    int j = 0, opened = 0;
    for (int k = 0; k < x->nshards; k++) {
        const shard_index_entry *e = &x->shards[k];
        if (e->split != d->split)
            continue;
        char *p = fs_join(dir, e->file);
        int rc = shard_open(&d->shards[j], p, err);
        free(p);
        if (rc < 0) {
            d->nshards = opened;
            shard_dataset_close(d);
            return -1;
        }
        opened++;
        shard_reader *r = &d->shards[j];
        if (shard_check_index(r, dir, x, e, err) < 0) {
            d->nshards = opened;
            shard_dataset_close(d);
            return -1;
        }
        d->first[j + 1] = d->first[j] + r->n;
        j++;
    }
    d->n = d->first[d->nshards];
    d->labels = malloc((size_t)(d->n + 1) * sizeof *d->labels);
    int cache = (int64_t)d->record_bytes * d->n <= cache_bytes;
    if (cache)
        d->cache = malloc((size_t)d->n * d->record_bytes + 1);
    if (!d->labels || (cache && !d->cache)) {
        shard_dataset_close(d);
        return rb_fail(err, "lower cache_mb", "out of memory for %lld records", (long long)d->n);
    }
    for (int k = 0; k < d->nshards; k++) {
        shard_reader *r = &d->shards[k];
        int rc = shard_read_labels(r, d->labels + d->first[k], err);
        if (rc == 0 && cache)
            rc = shard_read(r, 0, r->n, d->cache + (size_t)d->first[k] * d->record_bytes, NULL, err);
        if (rc < 0) {
            shard_dataset_close(d);
            return -1;
        }
    }
    for (int64_t i = 0; i < d->n; i++)
        if (d->labels[i] >= 0 && d->labels[i] < x->nclasses)
            d->per_class[d->labels[i]]++;
    return 0;
}

static int locate(const shard_dataset *d, int64_t i)
{
    int lo = 0, hi = d->nshards - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->first[mid] <= i)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

int shard_dataset_read(shard_dataset *d, const int64_t *idx, int n, uint8_t *images, int32_t *labels,
                       rb_error *err)
{
    for (int k = 0; k < n; k++) {
        int64_t i = idx[k];
        if (i < 0 || i >= d->n)
            return rb_fail(err, NULL, "%s: record %lld out of range (%lld)", d->dir, (long long)i, (long long)d->n);
        if (labels)
            labels[k] = d->labels[i];
        uint8_t *dst = images + (size_t)k * d->record_bytes;
        if (d->cache) {
            memcpy(dst, d->cache + (size_t)i * d->record_bytes, d->record_bytes);
            continue;
        }
        int s = locate(d, i);
        if (shard_read(&d->shards[s], i - d->first[s], 1, dst, NULL, err) < 0)
            return -1;
    }
    return 0;
}

int shard_dataset_path(shard_dataset *d, int64_t i, char **out, rb_error *err)
{
    if (i < 0 || i >= d->n)
        return rb_fail(err, NULL, "record %lld out of range", (long long)i);
    int s = locate(d, i);
    return shard_read_path(&d->shards[s], i - d->first[s], out, err);
}
