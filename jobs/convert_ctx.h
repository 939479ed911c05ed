/* radbatch convert: the context shared by its files (docs/convert.md, "What it does").
 *
 *   job_convert.c     the command: its steps in order, settings, listing the inputs, the plan
 *   convert_pass1.c   pass 1: read and hash every file, check its header; error rows
 *   convert_pass2.c   pass 2: shards kept from an earlier run, decoding, writing the shards
 *   convert_report.c  rank 0: index.json, errors.csv, duplicates.csv, the summary, the
 *                     output folder's clean-up
 * Helpers of the other phases: convert_inputs.c (listing), convert_plan.c (the plan). */
#ifndef CONVERT_CTX_H
#define CONVERT_CTX_H

#include "convert_inputs.h"
#include "convert_plan.h"
#include "image.h"
#include "job_config.h"
#include "convert_keys.h"
#include "rb_buf.h"
#include "rb_error.h"
#include "rb_mpi.h"

#include <stddef.h>
#include <stdint.h>

typedef struct convert_ctx {
    job_config cfg;
    convert_keys keys; /* the keys, typed (convert_keys.h); filled before any work */
    rb_world world;
    input_set in;
    plan pl;
    int H, W, C;
    resize_mode mode;
    int dct;
    image_limits lim;
    const char *out;
    char settings_hash[33];
    rb_buf errors; /* "path\0reason\0" from this rank */
} convert_ctx;

/* ---- convert_pass1.c ---- */
/* An error row of this rank ("path\0reason\0" in x->errors), warned unless quiet. */
void convert_add_error(convert_ctx *x, const char *path, const char *reason);
/* 16 bytes as 32 hex digits and a NUL. */
void convert_hex128(const uint8_t *h, char *out);
/* Pass 1 (every rank, a contiguous slice): hash and probe, results shared with all ranks. */
int convert_pass1(convert_ctx *x, rb_error *err);

/* ---- convert_pass2.c ---- */
/* "<split>-00003-of-00016.h5" */
void convert_shard_file_name(const plan_shard *s, char *out, size_t cap);
/* Pass 2 (every rank): shards kept from an earlier run found, this rank's share of the
 * records decoded, its shards written; the per-shard results for rank 0 into stats.
 * Returns 0, or the agreed exit code on failure. */
int convert_write_shards(convert_ctx *x, rb_buf *stats, rb_error *err);

/* ---- convert_report.c ---- */
/* Rank 0: the group_regex line (files matched, groups found) and, when it matched under
 * GROUP_REGEX_MIN_SHARE of the files, a warning (also recorded in index.json). */
void convert_report_groups(convert_ctx *x);
/* The warning of convert_report_groups as text, or NULL when there is none (malloc'd). */
char *convert_group_warning(const convert_ctx *x);
/* Remove temp files of killed runs and, with overwrite, old shards (before: after == 0), or
 * shard files that are not part of this plan (after: after == 1). */
void convert_clean_out_dir(convert_ctx *x, int after);
/* The times of the steps, for the summary line. */
typedef struct convert_times {
    double start, listed, probed, planned, written;
} convert_times;
/* Rank 0 gathers the shard results and error rows and writes the reports and, last, the
 * marker; every rank returns the agreed exit code. */
int convert_report(convert_ctx *x, rb_buf *stats, const convert_times *t, rb_error *err);

#endif
