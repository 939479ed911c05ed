/* HDF5 record shards (docs/formats.md): the TFRecord analogue.
 *
 *   /images      uint8  [N,H,W,C]  chunks of ~1 MiB (whole images), optional deflate
 *   /labels      int32  [N]        class index, -1 = unlabelled
 *   /paths       UTF-8 strings [N] source path relative to its input root
 *   /checksums   uint32 [N]        CRC-32 (zlib) of each record's H*W*C pixel bytes
 *   /source_hash fixed strings [N] XXH3-128 of the source file bytes, 32 hex digits
 *   /source_size int32  [N,2]      height, width of the source image
 * Root attributes: format "radbatch-shard", format_version 2, class_names, height, width,
 * channels, split, shard_index, shard_count, num_records, source_roots, resize,
 * resize_filter, dct_scaling, plan_hash, metadata_checksum (XXH3-64 of /labels,
 * /source_size, /source_hash and /paths: io/shard_metadata.c), tool_version. A shard is written whole to a
 * temporary name and renamed, so a file with the final name is complete. */
#ifndef SHARD_H
#define SHARD_H

#include "rb_error.h"

#include <stddef.h>
#include <stdint.h>

#define SHARD_FORMAT "radbatch-shard"
/* 2: metadata_checksum added (version 1 shards are refused: rerun convert) */
#define SHARD_FORMAT_VERSION 2
#define SHARD_METADATA_CHECKSUM_LEN 16

typedef struct shard_meta {
    int height, width, channels;
    int nclasses;
    char **class_names;      /* [nclasses] */
    const char *split;       /* "train", "val", "test", "all" */
    int shard_index, shard_count;
    const char *source_roots;/* ';'-joined */
    const char *resize;      /* "stretch" ... */
    const char *resize_filter;
    int dct_scaling;
    const char *plan_hash;   /* 32 hex digits: what this shard must contain */
    int compression;         /* 0 none, 1..9 deflate level */
} shard_meta;

typedef struct shard_records {
    int64_t n;
    const uint8_t *images;       /* [n,H,W,C] */
    const int32_t *labels;       /* [n] */
    const char *const *paths;    /* [n] */
    const uint32_t *checksums;   /* [n] */
    const char *const *source_hash; /* [n] 32 hex digits each */
    const int32_t *source_size;  /* [n,2] */
} shard_records;

/* Write a complete shard to `path` (via temp, fsync, rename). */
int shard_write(const char *path, const shard_meta *meta, const shard_records *rec, rb_error *err);

/* The same in two steps, so the disk write of one shard overlaps other work: begin writes
 * the temp file and starts its write-back; finish waits for the disk (fsync) and renames
 * the file into place. Until finish, the shard does not exist under its name. */
typedef struct shard_pending {
    char *tmp, *path;
} shard_pending;
int shard_write_begin(const char *path, const shard_meta *meta, const shard_records *rec, shard_pending *pend,
                      rb_error *err);
int shard_write_finish(shard_pending *pend, rb_error *err); /* no-op when nothing is pending */

/* Reading. */
typedef struct shard_reader {
    int64_t file, images, labels; /* hid_t */
    char *path;
    int64_t n;
    int height, width, channels;
    int nclasses;
    char **class_names;
    char split[16];
    int shard_index, shard_count;
    char plan_hash[40];
    int64_t chunk_rows; /* images per HDF5 chunk: read in multiples of this */
    uint32_t *crc;      /* [n] /checksums, read by shard_open */
    int64_t num_records; /* the num_records attribute */
} shard_reader;

int shard_open(shard_reader *r, const char *path, rb_error *err);
void shard_close(shard_reader *r);
/* rows [lo, lo+count) of /images into out ([count,H,W,C]) and labels (may be NULL). Every
 * record's CRC-32 is checked against /checksums: a mismatch is an error naming the shard
 * file and the record (its row in the shard). */
int shard_read(shard_reader *r, int64_t lo, int64_t count, uint8_t *images, int32_t *labels,
               rb_error *err);
int shard_read_labels(shard_reader *r, int32_t *out, rb_error *err);    /* [n] */
int shard_read_checksums(shard_reader *r, uint32_t *out, rb_error *err); /* [n] */
/* path of record i (malloc'd) */
int shard_read_path(shard_reader *r, int64_t i, char **out, rb_error *err);
/* Recompute every record's CRC-32 and compare with /checksums; *bad = mismatches. */
int shard_verify(shard_reader *r, int64_t *bad, rb_error *err);
/* The same, with the first max_which damaged records' rows in which[]. */
int shard_verify_list(shard_reader *r, int64_t *bad, int64_t *which, int max_which, rb_error *err);

/* The metadata_checksum of a shard's records (16 hex digits), and the check of a file's
 * attribute against its datasets (file: the hid_t), done by shard_open. */
int shard_metadata_checksum(const shard_records *r, char out[SHARD_METADATA_CHECKSUM_LEN + 1]);
int shard_check_metadata(int64_t file, const char *path, int64_t n, rb_error *err);

/* CRC-32 of a record's pixels. */
uint32_t shard_record_crc(const uint8_t *pixels, size_t len);

#endif
