/* radbatch convert: image folders -> sharded HDF5 records (docs/convert.md).
 *
 * Rank 0 lists the inputs and broadcasts the list. Pass 1 (all ranks, contiguous slices):
 * read each file, hash its bytes (XXH3-128), check its header. Every rank then computes the
 * same plan (splits, duplicates, shuffle, shard contents, who writes each shard). A shard
 * that already exists with the planned contents is kept, so a killed run resumes. Pass 2:
 * each rank decodes an equal share of the remaining records and writes the shards it owns
 * (temp name, rename), receiving the records of those shards that other ranks decoded.
 * Rank 0 gathers the results and writes index.json, errors.csv and duplicates.csv.
 *
 * convert_main below is the steps of docs/convert.md in order; the files that do each step
 * are listed in jobs/convert_ctx.h. */
#include "commands.h"
#include "convert_keys.h"
#include "convert_ctx.h"
#include "fsutil.h"
#include "job_marker.h"
#include "job_run.h"
#include "rb_log.h"
#include "shard.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define CONVERT_SPEC_ROW(...) OPT_SPEC_ROW(convert_keys, __VA_ARGS__)
static const opt_spec convert_opts[] = {CONVERT_KEYS(CONVERT_SPEC_ROW){NULL, 0, NULL, NULL, NULL, {0, 0, 0, NULL}, 0}};

/* Keys whose values are fine alone but not together, and the group regex: checked on every
 * rank before any file is read, a bad one is an options error (exit 2) naming the key. */
static int check_split_keys(convert_ctx *x, rb_error *err)
{
    double vf = x->keys.val_fraction, tf = x->keys.test_fraction;
    if (vf + tf >= 1) {
        rb_fail(err, "lower val_fraction or test_fraction: some records must stay in train",
                "convert: val_fraction %g + test_fraction %g = %g leaves nothing to train on (must be < 1)", vf, tf,
                vf + tf);
        return JOB_BAD_CONFIG;
    }
    const char *re = x->keys.group_regex;
    if (*re) {
        regex_t r;
        int rc = regcomp(&r, re, REG_EXTENDED);
        if (rc != 0) {
            char msg[256];
            regerror(rc, &r, msg, sizeof msg);
            rb_fail(err, "group_regex is a POSIX extended regex applied to the file name; its first group is the "
                    "patient id, e.g. ^(person[0-9]+|NORMAL2-IM-[0-9]+|IM-[0-9]+)",
                    "convert: key 'group_regex' = '%s' is not a valid regex: %s", re, msg);
            return JOB_BAD_CONFIG;
        }
        regfree(&r);
    }
    return 0;
}

static int parse_settings(convert_ctx *x, rb_error *err)
{
    job_config *c = &x->cfg;
    x->H = (int)x->keys.height;
    x->W = (int)x->keys.width;
    x->C = (int)x->keys.channels;
    /* the ranges of numeric keys are checked when parsed (convert_keys.h) */
    if (resize_mode_parse(x->keys.resize, &x->mode) < 0)
        return rb_fail(err, NULL, "convert: bad resize '%s'", x->keys.resize);
    x->dct = x->keys.dct_scaling;
    int64_t lvl = x->keys.compression;
    image_limits_default(&x->lim);
    x->lim.max_pixels = (int64_t)(x->keys.max_megapixels * 1e6);
    x->lim.max_file_bytes = (size_t)(x->keys.max_file_mb * 1048576.0);
    /* one folder, one key: a job file names its shards folder once (top-level shards, read
     * by train and evaluate too); out, where given at the same or a higher level, wins */
    x->out = job_str_either(c, "out", "shards");
    if (!*x->out)
        return rb_fail(err, "set shards = <folder> in the job file (train and evaluate read it too) or give --out <folder>",
                       "convert: no output folder");
    /* everything that shapes a shard's bytes besides its records */
    rb_buf b = {0};
    rb_buf_printf(&b, "radbatch-shard v%d|%dx%dx%d|%s|dct=%d|z=%lld|", SHARD_FORMAT_VERSION, x->H, x->W, x->C,
                  resize_mode_name(x->mode), x->dct, (long long)lvl);
    for (int i = 0; i < x->in.nclasses; i++)
        rb_buf_printf(&b, "%s|", x->in.class_names[i]);
    XXH128_hash_t h = XXH3_128bits(b.data, b.len);
    snprintf(x->settings_hash, sizeof x->settings_hash, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
    rb_buf_free(&b);
    return 0;
}

/* Inputs: positional arguments plus the comma-separated `inputs` key. */
static int collect_roots(convert_ctx *x, char ***roots, int *n)
{
    *n = 0;
    size_t listed = 1;
    for (const char *c = x->keys.inputs; *c; c++)
        listed += *c == ',';
    *roots = calloc(listed + (size_t)x->cfg.npositional + 1, sizeof **roots);
    char *list = strdup(x->keys.inputs), *save = NULL;
    if (!*roots || !list) {
        free(list);
        return -1;
    }
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (*t)
            (*roots)[(*n)++] = strdup(t);
    }
    free(list);
    for (int i = 0; i < x->cfg.npositional; i++)
        (*roots)[(*n)++] = strdup(x->cfg.positional[i]);
    return 0;
}

/* Step 1: rank 0 lists the inputs; everyone gets the same list. */
static int list_inputs(convert_ctx *x, rb_error *err)
{
    int rank = x->world.rank;
    int ok = 1;
    rb_buf packed = {0};
    if (rank == 0) {
        char **roots;
        int nroots;
        input_layout lay;
        input_layout_parse(x->keys.layout, &lay);
        ok = collect_roots(x, &roots, &nroots) == 0 &&
             inputs_scan(&x->in, roots, nroots, lay, x->keys.classes, err) == 0;
        for (int i = 0; i < nroots; i++)
            free(roots[i]);
        free(roots);
        if (ok && x->in.n == 0) {
            ok = 0;
            rb_fail(err, "check the input folders and the layout key", "convert: no files found in the inputs");
        }
        if (ok)
            ok = inputs_pack(&x->in, &packed) == 0;
        if (ok) {
            rb_info("found %lld files in %d input(s), %d classes:", (long long)x->in.n, x->in.nroots,
                    x->in.nclasses);
            for (int i = 0; i < x->in.nclasses; i++)
                rb_info("  %d %s", i, x->in.class_names[i]);
        }
    }
    if (!rb_mpi_agree_ok(ok)) {
        rb_buf_free(&packed);
        return rank == 0 ? JOB_FAILED : JOB_FAILED_ELSEWHERE;
    }
    return inputs_share(&x->in, &packed, rank, err);
}

/* The settings (they need the class names), and the output folder marked unfinished. */
static int open_output(convert_ctx *x, rb_error *err)
{
    int ok = parse_settings(x, err) == 0;
    if (ok && x->world.rank == 0) /* the folder is unfinished from here until summary.json is written last */
        ok = fs_mkdirs(x->out, err) == 0 && job_marker_clear(x->out, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
}

/* Step 3: the plan, identical everywhere; rank 0 prints it and clears the output folder. */
static int make_plan(convert_ctx *x, rb_error *err)
{
    plan_settings ps = {
        .val_fraction = x->keys.val_fraction,
        .test_fraction = x->keys.test_fraction,
        .seed = (uint64_t)x->keys.seed,
        .group_regex = x->keys.group_regex,
        .stratify = x->keys.stratify,
        .dedupe = x->keys.dedupe,
        .record_bytes = (int64_t)x->H * x->W * x->C,
        .shard_bytes = (int64_t)(x->keys.shard_size_mb * 1048576.0),
        .min_shards = (int)x->keys.min_shards,
    };
    int ok = plan_make(&x->pl, x->in.e, x->in.n, &ps, x->settings_hash, x->world.size, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    if (x->world.rank == 0) {
        for (int s = 0; s < SPLIT_COUNT; s++)
            if (x->pl.split_count[s])
                rb_info("%-5s: %lld records", split_name(s), (long long)x->pl.split_count[s]);
        convert_report_groups(x);
        rb_info("%d shard(s); %lld group(s) of identical files%s", x->pl.nshards, (long long)x->pl.ndup_groups,
                x->pl.ndropped ? " (extra copies dropped)" : " (see duplicates.csv)");
        convert_clean_out_dir(x, 0);
    }
    rb_mpi_barrier();
    return 0;
}

static int convert_main(convert_ctx *x, rb_error *err)
{
    convert_times t = {.start = rb_now()};
    int rc = check_split_keys(x, err);
    if (rc != 0)
        return rc;
    /* 1. rank 0 lists the inputs and broadcasts the list */
    rc = list_inputs(x, err);
    if (rc == 0)
        rc = open_output(x, err);
    if (rc != 0)
        return rc;
    t.listed = rb_now();
    /* 2. pass 1: hash and probe */
    if (convert_pass1(x, err) < 0)
        return -1;
    t.probed = rb_now();
    /* 3. the plan */
    if ((rc = make_plan(x, err)) != 0)
        return rc;
    t.planned = rb_now();
    /* 4. pass 2: my share of the records; the shards I write */
    rb_buf stats = {0};
    rc = convert_write_shards(x, &stats, err);
    if (rc == 0) {
        t.written = rb_now();
        /* 5. rank 0 gathers shard stats and errors, writes the reports */
        rc = convert_report(x, &stats, &t, err);
    }
    rb_buf_free(&stats);
    return rc;
}

static int convert_run(void *ctx, rb_error *err) { return convert_main(ctx, err); }

static void convert_free(void *ctx)
{
    convert_ctx *x = ctx;
    plan_free(&x->pl);
    inputs_free(&x->in);
    rb_buf_free(&x->errors);
}

static int run_convert(int argc, char **argv)
{
    convert_ctx x;
    memset(&x, 0, sizeof x);
    job_driver d = {.cmd = &command_convert, .ctx = &x, .cfg = &x.cfg, .keys = &x.keys, .world = &x.world,
                    .main = convert_run, .cleanup = convert_free};
    return job_run(&d, argc, argv);
}

const command_spec command_convert = {
    "convert",
    "image folders (JPEG/PNG/TIFF) -> sharded HDF5 records with splits, checksums and an index",
    "usage: radbatch convert [job.ini] [input folder or list.csv ...] [--out <folder>] [--key value ...]",
    convert_opts,
    run_convert,
};
