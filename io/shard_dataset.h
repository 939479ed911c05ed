/* One split of a shards folder as a random-access dataset of records: what training and
 * evaluation read. Records are numbered 0..n-1 in shard order (the order of index.json).
 * With `cache_bytes` large enough the whole split is read once into memory (Keras'
 * dataset.cache()); otherwise records are read from the shards on demand through HDF5's
 * chunk cache. Not thread-safe: one reader thread per dataset. */
#ifndef SHARD_DATASET_H
#define SHARD_DATASET_H

#include "rb_error.h"
#include "shard.h"
#include "shard_index.h"

#include <stdint.h>

typedef struct shard_dataset {
    char *dir;
    shard_index index;       /* the whole folder's index.json */
    int split;               /* 0 train, 1 val, 2 test, 3 all */
    int nshards;
    shard_reader *shards;    /* open readers of the split's shards */
    int64_t *first;          /* [nshards+1] first record of each shard */
    int64_t n;               /* records in the split */
    int height, width, channels;
    size_t record_bytes;
    uint8_t *cache;          /* [n, H, W, C] when cached, else NULL */
    int32_t *labels;         /* [n], always in memory */
    int64_t *per_class;      /* [nclasses] */
} shard_dataset;

/* Open split `split_name` ("train", "val", "test", "all") of a shards folder. Checks that
 * every listed shard exists and agrees with index.json (shard_check_index). Records are
 * CRC-checked as they are read (all of them here when the split is cached in memory). */
int shard_dataset_open(shard_dataset *d, const char *dir, const char *split_name, int64_t cache_bytes,
                       rb_error *err);
void shard_dataset_close(shard_dataset *d);

/* Does shard r (opened from `dir`) agree with its index.json entry e? Compares image size,
 * class names, split, shard index and count, record count, plan hash, the records per
 * class (from /labels) and the XXH3-64 of /checksums. An error names the shard, index.json
 * and what disagrees. */
int shard_check_index(shard_reader *r, const char *dir, const shard_index *x, const shard_index_entry *e,
                      rb_error *err);

/* Copy records idx[0..n) into images [n,H,W,C] (labels [n] may be NULL). A record failing
 * its CRC-32 check is an error naming the shard file and the record's row. */
int shard_dataset_read(shard_dataset *d, const int64_t *idx, int n, uint8_t *images, int32_t *labels,
                       rb_error *err);
/* Source path of record i (malloc'd). */
int shard_dataset_path(shard_dataset *d, int64_t i, char **out, rb_error *err);

#endif
