/* <shards>/index.json: what a shards folder holds (docs/formats.md). Written by rank 0 of
 * `radbatch convert` after every shard is finished; read by train/evaluate/inspect. */
#ifndef SHARD_INDEX_H
#define SHARD_INDEX_H

#include "rb_error.h"

#include <stdint.h>

#define SHARD_INDEX_FORMAT "radbatch-shards"
#define SHARD_INDEX_VERSION 2               /* written: carries index_checksum */
#define SHARD_INDEX_VERSION_NO_CHECKSUM 1   /* still read, with a warning */
#define SHARD_INDEX_SPLITS 4 /* train, val, test, all */

typedef struct shard_index_entry {
    char file[64];       /* "train-00003-of-00016.h5" */
    int split;           /* 0 train, 1 val, 2 test, 3 all */
    int index, count;
    int64_t records;
    int64_t *per_class;  /* [nclasses] */
    char checksum[17];   /* XXH3-64 of the shard's /checksums array, hex */
    char plan_hash[33];
} shard_index_entry;

typedef struct shard_index {
    int height, width, channels;
    char resize[32];
    int dct_scaling;
    int nclasses;
    char **class_names;
    int nshards;
    shard_index_entry *shards;
    int64_t split_records[SHARD_INDEX_SPLITS];
    int64_t *split_class;   /* [SHARD_INDEX_SPLITS * nclasses] */
    int64_t input_files, errors, duplicate_groups, dropped_duplicates;
    int64_t seed;
    double val_fraction;
    double test_fraction;
    char *group_regex;      /* may be NULL */
    int64_t group_files;    /* usable files the regex was applied to (-1: not recorded) */
    int64_t group_matched;  /* of those, the ones whose name it matched */
    int64_t groups;         /* patient groups found */
    char *group_warning;    /* may be NULL */
    char **sources;
    int nsources;
    char *config;           /* effective configuration, "key = value" lines; may be NULL */
} shard_index;

int shard_index_write(const char *dir, const shard_index *idx, rb_error *err);
/* Reads <dir>/index.json. Checks its index_checksum (version 2) and that its per-split
 * summary (records, per_class, shard list) agrees with its shards array; an error names
 * the file and what disagrees. */
int shard_index_read(const char *dir, shard_index *idx, rb_error *err);
void shard_index_free(shard_index *idx);
/* XXH3-64 of index.json's bytes, hex: identifies the data a model was trained on. */
int shard_index_checksum(const char *dir, char out[17], rb_error *err);
int shard_index_split_id(const char *name); /* "train" -> 0 ... or -1 */

#endif
