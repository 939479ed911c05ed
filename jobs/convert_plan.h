/* The convert plan: from the list of input files (with labels, optional given splits and
 * content hashes) to the exact contents of every shard. Pure and deterministic: the same
 * inputs and settings give the same plan on any number of ranks, which is what makes
 * shards identical on 1, 2 or 3 ranks and lets a re-run recognise finished shards. */
#ifndef CONVERT_PLAN_H
#define CONVERT_PLAN_H

#include "rb_error.h"

#include <stddef.h>
#include <stdint.h>

enum { SPLIT_TRAIN = 0, SPLIT_VAL = 1, SPLIT_TEST = 2, SPLIT_ALL = 3, SPLIT_COUNT = 4 };
const char *split_name(int split);
int split_parse(const char *s); /* "train"|"val"|"validation"|"test"|"all" or -1 */

typedef struct plan_entry {
    char *rel;          /* stored path (relative to its root) */
    char *abs;          /* path to read */
    int32_t label;      /* class index, -1 unlabelled */
    int8_t given_split; /* -1, or SPLIT_* from the folder layout / CSV */
    int8_t ok;          /* header probe and read succeeded */
    uint8_t hash[16];   /* XXH3-128 of the file bytes */
    int32_t src_h, src_w;
} plan_entry;

typedef struct plan_settings {
    double val_fraction;
    double test_fraction;    /* share of each stratum held out in `test` (0: none) */
    uint64_t seed;
    const char *group_regex; /* "" = every file its own group */
    int stratify;            /* keep the class balance in each split */
    int dedupe;              /* drop all but the first copy of identical files */
    int64_t record_bytes;    /* H*W*C */
    int64_t shard_bytes;     /* target shard size */
    int min_shards;          /* per split */
} plan_settings;

typedef struct plan_shard {
    int split, index, count; /* index-of-count within its split */
    int64_t first, n;        /* range in plan.order */
    char hash[33];           /* plan hash of this shard's contents (hex) */
    int rank;                /* who writes it (the rank that decodes most of its records) */
} plan_shard;

typedef struct plan {
    int64_t *order;          /* entry indices, shard after shard */
    int64_t norder;
    plan_shard *shards;
    int nshards;
    int64_t split_count[SPLIT_COUNT];
    int64_t *dup_of;         /* [nentries]: index of the first identical file, or -1 */
    int64_t ndup_groups, ndropped;
    int8_t *split_of;        /* [nentries]: split assigned (-1: not used) */
    int64_t regex_matched;   /* usable files whose name group_regex matched */
    int64_t ngroups;         /* patient groups (distinct group keys) among usable files */
    int64_t nusable;         /* usable files (header probe and read succeeded) */
    int nranks;              /* ranks the decoding is split over */
} plan;

/* The plan positions [lo, hi) of order that `rank` decodes: an equal share for every rank. */
void plan_rank_range(const plan *p, int rank, int64_t *lo, int64_t *hi);
/* The plan positions [*a, *b) of a shard that `rank` decodes; returns *b - *a (0: none). */
int64_t plan_shard_part(const plan *p, const plan_shard *s, int rank, int64_t *a, int64_t *b);

/* settings_hash: a hex digest of everything besides the records that shapes a shard
 * (size, channels, resize, class names, ...), mixed into every shard's plan hash. */
int plan_make(plan *p, const plan_entry *e, int64_t n, const plan_settings *s,
              const char *settings_hash, int nranks, rb_error *err);
void plan_free(plan *p);

/* convert warns when group_regex matches fewer than this share of the usable files
 * (docs/convert.md): the unmatched files are each their own group. */
#define GROUP_REGEX_MIN_SHARE 0.95

/* Patient/group key of a path: first capture group (or whole match) of the regex applied
 * to the file's base name; the base name itself when the regex does not match. */
int plan_group_key(const char *rel, const void *compiled_regex, char *out, size_t cap);

#endif
