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
#include "convert_ctx.h"
#include "fsutil.h"
#include "job_marker.h"
#include "job_run.h"
#include "rb_log.h"
#include "shard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

static const opt_spec convert_opts[] = {
    {"inputs", OPT_STRING, "", NULL,
     "comma-separated input folders or CSV lists (path,label[,split]); positional arguments are added"},
    {"out", OPT_STRING, "", NULL,
     "output folder for the shards, index.json, errors.csv, duplicates.csv (empty: the shards key)"},
    {"shards", OPT_STRING, "", NULL,
     "the pipeline's shards folder, the key train and evaluate read: the output folder when out is not given "
     "at the same or a higher level"},
    {"layout", OPT_CHOICE, "auto", "auto|classes|splits|unlabelled|csv",
     "input layout: class folders, train/val/test subtrees of class folders, unlabelled archive, CSV list"},
    {"classes", OPT_STRING, "", NULL,
     "comma-separated class names in label order (default: sorted class folder names, as Keras)"},
    {"height", OPT_INT, "224", NULL, "output image height"},
    {"width", OPT_INT, "224", NULL, "output image width"},
    {"channels", OPT_INT, "3", NULL, "output channels: 1 (gray) or 3 (RGB; gray is replicated)"},
    {"resize", OPT_CHOICE, "stretch", "stretch|pad|center-crop",
     "stretch to the size (Keras image_dataset_from_directory), pad to keep aspect, or crop the centre"},
    {"dct_scaling", OPT_BOOL, "true", NULL,
     "decode large JPEGs straight to near the target size with libjpeg-turbo's DCT scaling"},
    {"val_fraction", OPT_FLOAT, "0.2", NULL,
     "share of the records put in the val split (ignored when the input gives train/val/test folders)"},
    {"seed", OPT_INT, "123", NULL, "seed of the split and of the record shuffle"},
    {"group_regex", OPT_STRING, "", NULL,
     "POSIX extended regex on the file name; its first group is the patient id, and one patient's "
     "images stay in one split (e.g. ^(person[0-9]+|NORMAL2-IM-[0-9]+|IM-[0-9]+))"},
    {"stratify", OPT_BOOL, "true", NULL, "split each class separately so both splits keep the class balance"},
    {"dedupe", OPT_BOOL, "false", NULL, "drop all but the first of byte-identical files (always listed in duplicates.csv)"},
    {"shard_size_mb", OPT_FLOAT, "64", NULL, "target size of a shard's pixel data in MiB"},
    {"min_shards", OPT_INT, "1", NULL, "at least this many shards per split (when there are enough records)"},
    {"compression", OPT_INT, "0", NULL, "deflate level 0-9 for /images (0 = none: fastest to read)"},
    {"max_error_fraction", OPT_FLOAT, "0.1", NULL,
     "exit non-zero when more than this share of the input files could not be converted"},
    {"max_megapixels", OPT_FLOAT, "50", NULL, "reject images with more source pixels than this (decompression bombs)"},
    {"max_file_mb", OPT_FLOAT, "512", NULL, "reject files larger than this"},
    {"overwrite", OPT_BOOL, "false", NULL, "rebuild every shard, even finished ones that match the plan"},
    {"quiet", OPT_BOOL, "false", NULL, "no progress lines"},
    {NULL, 0, NULL, NULL, NULL},
};

static int parse_settings(convert_ctx *x, rb_error *err)
{
    job_config *c = &x->cfg;
    x->H = (int)job_int(c, "height");
    x->W = (int)job_int(c, "width");
    x->C = (int)job_int(c, "channels");
    /* the ranges of numeric keys are checked with the options (job_config.c) */
    if (resize_mode_parse(job_str(c, "resize"), &x->mode) < 0)
        return rb_fail(err, NULL, "convert: bad resize '%s'", job_str(c, "resize"));
    x->dct = job_bool(c, "dct_scaling");
    int64_t lvl = job_int(c, "compression");
    image_limits_default(&x->lim);
    x->lim.max_pixels = (int64_t)(job_float(c, "max_megapixels") * 1e6);
    x->lim.max_file_bytes = (size_t)(job_float(c, "max_file_mb") * 1048576.0);
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
    *roots = calloc((size_t)JOB_MAX_POSITIONAL + 256, sizeof **roots);
    if (!*roots)
        return -1;
    char *list = strdup(job_str(&x->cfg, "inputs")), *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t && *n < 256; t = strtok_r(NULL, ",", &save)) {
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
        input_layout_parse(job_str(&x->cfg, "layout"), &lay);
        ok = collect_roots(x, &roots, &nroots) == 0 &&
             inputs_scan(&x->in, roots, nroots, lay, job_str(&x->cfg, "classes"), err) == 0;
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
        .val_fraction = job_float(&x->cfg, "val_fraction"),
        .seed = (uint64_t)job_int(&x->cfg, "seed"),
        .group_regex = job_str(&x->cfg, "group_regex"),
        .stratify = job_bool(&x->cfg, "stratify"),
        .dedupe = job_bool(&x->cfg, "dedupe"),
        .record_bytes = (int64_t)x->H * x->W * x->C,
        .shard_bytes = (int64_t)(job_float(&x->cfg, "shard_size_mb") * 1048576.0),
        .min_shards = (int)job_int(&x->cfg, "min_shards"),
    };
    int ok = plan_make(&x->pl, x->in.e, x->in.n, &ps, x->settings_hash, x->world.size, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    if (x->world.rank == 0) {
        for (int s = 0; s < SPLIT_COUNT; s++)
            if (x->pl.split_count[s])
                rb_info("%-5s: %lld records", split_name(s), (long long)x->pl.split_count[s]);
        rb_info("%d shard(s) of about %g MiB; %lld group(s) of identical files%s", x->pl.nshards,
                job_float(&x->cfg, "shard_size_mb"), (long long)x->pl.ndup_groups,
                x->pl.ndropped ? " (extra copies dropped)" : " (see duplicates.csv)");
        convert_clean_out_dir(x, 0);
    }
    rb_mpi_barrier();
    return 0;
}

static int convert_main(convert_ctx *x, rb_error *err)
{
    convert_times t = {.start = rb_now()};
    /* 1. rank 0 lists the inputs and broadcasts the list */
    int rc = list_inputs(x, err);
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
    job_driver d = {.cmd = &command_convert, .ctx = &x, .cfg = &x.cfg, .world = &x.world, .main = convert_run,
                    .cleanup = convert_free};
    return job_run(&d, argc, argv);
}

const command_spec command_convert = {
    "convert",
    "image folders (JPEG/PNG/TIFF) -> sharded HDF5 records with splits, checksums and an index",
    "usage: radbatch convert [job.ini] [input folder or list.csv ...] [--out <folder>] [--key value ...]",
    convert_opts,
    run_convert,
};
