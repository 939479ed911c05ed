/* radbatch convert: image folders -> sharded HDF5 records (docs/convert.md).
 *
 * Rank 0 lists the inputs and broadcasts the list. Pass 1 (all ranks, contiguous slices):
 * read each file, hash its bytes (XXH3-128), check its header. Every rank then computes the
 * same plan (splits, duplicates, shuffle, shard contents, who writes each shard). A shard
 * that already exists with the planned contents is kept, so a killed run resumes. Pass 2:
 * each rank decodes an equal share of the remaining records and writes the shards it owns
 * (temp name, rename), receiving the records of those shards that other ranks decoded.
 * Rank 0 gathers the results and writes index.json, errors.csv and duplicates.csv. */
#include "test_hooks.h"
#include "commands.h"
#include "convert_inputs.h"
#include "convert_plan.h"
#include "csv.h"
#include "fsutil.h"
#include "image.h"
#include "job_marker.h"
#include "job_run.h"
#include "rb_buf.h"
#include "rb_log.h"
#include "rb_mpi.h"
#include "rb_xfer.h"
#include "shard.h"
#include "shard_index.h"

#include <dirent.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
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

/* Pass-1 result of one entry, exchanged between ranks. */
typedef struct probe_result {
    uint8_t hash[16];
    int32_t h, w;
    int8_t ok;
    int8_t pad[7];
} probe_result;

typedef struct convert_ctx {
    job_config cfg;
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

static void add_error(convert_ctx *x, const char *path, const char *reason)
{
    rb_buf_put_str(&x->errors, path);
    rb_buf_put_str(&x->errors, reason);
    if (x->cfg.nopts && !job_bool(&x->cfg, "quiet"))
        rb_warn("%s: %s", path, reason);
}

/* Strip "path: " from an rb_error message so errors.csv has the reason alone. */
static const char *reason_of(const rb_error *e, const char *path)
{
    size_t l = strlen(path);
    if (strncmp(e->msg, path, l) == 0 && e->msg[l] == ':' && e->msg[l + 1] == ' ')
        return e->msg + l + 2;
    return e->msg;
}

static void hex128(const uint8_t *h, char *out)
{
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

/* ---- pass 1 --------------------------------------------------------------------------- */
static int probe_all(convert_ctx *x, rb_error *err)
{
    int64_t n = x->in.n, P = x->world.size, r = x->world.rank;
    int64_t lo = n * r / P, hi = n * (r + 1) / P;
    probe_result *mine = calloc((size_t)(hi - lo + 1), sizeof *mine);
    if (!mine)
        return rb_fail(err, NULL, "out of memory");
    rb_progress prog;
    rb_progress_start(&prog, "checking files (rank 0's share)", hi - lo);
    for (int64_t i = lo; i < hi; i++) {
        plan_entry *e = &x->in.e[i];
        probe_result *pr = &mine[i - lo];
        uint8_t *buf;
        size_t len;
        rb_error fe;
        if (fs_read_file(e->abs, x->lim.max_file_bytes, &buf, &len, &fe) < 0) {
            add_error(x, e->rel, reason_of(&fe, e->abs));
            continue;
        }
        XXH128_hash_t h = XXH3_128bits(buf, len);
        XXH128_canonical_t canon;
        XXH128_canonicalFromHash(&canon, h);
        memcpy(pr->hash, canon.digest, 16);
        image_info info;
        if (image_probe(buf, len, &x->lim, &info, e->rel, &fe) < 0)
            add_error(x, e->rel, reason_of(&fe, e->rel));
        else {
            pr->ok = 1;
            pr->h = info.height;
            pr->w = info.width;
        }
        free(buf);
        if (((i - lo) & 255) == 0)
            rb_progress_update(&prog, i - lo);
    }
    void *all = NULL;
    size_t alen = 0;
    int rc = rb_mpi_allgather_bytes(mine, (size_t)(hi - lo) * sizeof *mine, &all, &alen, err);
    free(mine);
    if (rc < 0)
        return -1;
    if (alen != (size_t)n * sizeof(probe_result)) {
        free(all);
        return rb_fail(err, NULL, "internal error: probe results have the wrong size");
    }
    const probe_result *pr = all;
    for (int64_t i = 0; i < n; i++) {
        memcpy(x->in.e[i].hash, pr[i].hash, 16);
        x->in.e[i].ok = pr[i].ok;
        x->in.e[i].src_h = pr[i].h;
        x->in.e[i].src_w = pr[i].w;
    }
    free(all);
    return 0;
}

/* ---- pass 2 --------------------------------------------------------------------------- */
static void shard_file_name(const plan_shard *s, char *out, size_t cap)
{
    snprintf(out, cap, "%s-%05d-of-%05d.h5", split_name(s->split), s->index, s->count);
}

/* Per-shard result sent to rank 0: name, split, count, per-class counts, checksum. */
static void shard_stats_put(rb_buf *b, const char *file, int split, int64_t count, const int64_t *per_class,
                            int nclasses, uint64_t checksum, const char *plan_hash, int reused)
{
    rb_buf_put_str(b, file);
    int32_t sp = split, rz = reused;
    rb_buf_put(b, &sp, sizeof sp);
    rb_buf_put(b, &rz, sizeof rz);
    rb_buf_put(b, &count, sizeof count);
    rb_buf_put(b, per_class, (size_t)nclasses * sizeof *per_class);
    rb_buf_put(b, &checksum, sizeof checksum);
    rb_buf_put_str(b, plan_hash);
}

static uint64_t crc_digest(const uint32_t *crc, int64_t n) { return XXH3_64bits(crc, (size_t)n * sizeof *crc); }

/* A finished shard from an earlier run with the planned contents: keep it. */
static int try_reuse(convert_ctx *x, const plan_shard *s, const char *path, rb_buf *stats)
{
    if (job_bool(&x->cfg, "overwrite") || !fs_is_file(path))
        return 0;
    shard_reader r;
    rb_error e;
    if (shard_open(&r, path, &e) < 0)
        return 0;
    int ok = strcmp(r.plan_hash, s->hash) == 0 && r.height == x->H && r.width == x->W && r.channels == x->C &&
             r.n <= s->n;
    int64_t bad = 0;
    uint32_t *crc = NULL;
    int32_t *labels = NULL;
    if (ok) {
        /* a matching plan hash says what should be inside; the checksums say it is intact */
        ok = shard_verify(&r, &bad, &e) == 0 && bad == 0;
    }
    int nc = x->in.nclasses;
    int64_t *per_class = calloc((size_t)nc + 1, sizeof *per_class);
    if (ok) {
        crc = malloc((size_t)(r.n + 1) * sizeof *crc);
        labels = malloc((size_t)(r.n + 1) * sizeof *labels);
        ok = crc && labels && per_class && shard_read_checksums(&r, crc, &e) == 0;
        if (ok) {
            ok = shard_read_labels(&r, labels, &e) == 0;
        }
    }
    if (ok) {
        for (int64_t i = 0; i < r.n; i++)
            if (labels[i] >= 0 && labels[i] < nc)
                per_class[labels[i]]++;
        char name[64];
        shard_file_name(s, name, sizeof name);
        shard_stats_put(stats, name, s->split, r.n, per_class, nc, crc_digest(crc, r.n), s->hash, 1);
    } else
        rb_warn("%s: does not match the plan or failed verification; rebuilding it", path);
    free(crc);
    free(labels);
    free(per_class);
    shard_close(&r);
    return ok;
}

/* What the decoding rank learnt about one record, sent with its pixels to the shard's
 * writer when that is another rank. */
typedef struct rec_meta {
    int32_t ok; /* 1: pixels valid; 0: failed (the decoding rank reported it) */
    int32_t src_h, src_w;
    uint32_t crc;
} rec_meta;

/* The header of a segment's metadata message: which records follow (a consistency check). */
typedef struct seg_header {
    int64_t shard, first, count;
} seg_header;

enum { TAG_SEG_META = 11, TAG_SEG_PIXELS = 12 };

/* Read, check, decode and resize one planned record into dst. */
static void decode_record(convert_ctx *x, const plan_entry *e, uint8_t *dst, rec_meta *m)
{
    uint8_t *buf;
    size_t len;
    rb_error fe;
    image_info info;
    m->ok = 0;
    if (fs_read_file(e->abs, x->lim.max_file_bytes, &buf, &len, &fe) < 0) {
        add_error(x, e->rel, reason_of(&fe, e->abs)); /* vanished or changed since pass 1 */
        return;
    }
    XXH128_hash_t h = XXH3_128bits(buf, len);
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, h);
    if (memcmp(canon.digest, e->hash, 16) != 0)
        add_error(x, e->rel, "file changed while converting; rerun convert");
    else if (image_load_resized(buf, len, x->H, x->W, x->C, x->mode, x->dct, &x->lim, dst, &info, e->rel, &fe) < 0)
        add_error(x, e->rel, reason_of(&fe, e->rel));
    else {
        m->ok = 1;
        m->src_h = info.height;
        m->src_w = info.width;
        m->crc = shard_record_crc(dst, (size_t)x->H * x->W * x->C);
    }
    free(buf);
}

/* Write shard s from its decoded records (images/meta in plan order, failed ones dropped)
 * to its temp file; *pend then holds it until shard_write_finish() puts it in place. */
static int write_shard_records(convert_ctx *x, const plan_shard *s, uint8_t *images, const rec_meta *meta,
                               rb_buf *stats, shard_pending *pend, rb_error *err)
{
    char name[64];
    shard_file_name(s, name, sizeof name);
    char *path = fs_join(x->out, name);
    const size_t rec = (size_t)x->H * x->W * x->C;
    int64_t n = s->n;
    int32_t *labels = malloc((size_t)(n ? n : 1) * sizeof *labels);
    uint32_t *crc = malloc((size_t)(n ? n : 1) * sizeof *crc);
    const char **paths = malloc((size_t)(n ? n : 1) * sizeof *paths);
    char *hashes = malloc((size_t)(n ? n : 1) * 33);
    const char **hashp = malloc((size_t)(n ? n : 1) * sizeof *hashp);
    int32_t *sizes = malloc((size_t)(n ? n : 1) * 2 * sizeof *sizes);
    int64_t *per_class = calloc((size_t)x->in.nclasses + 1, sizeof *per_class);
    int rc = 0;
    if (!path || !labels || !crc || !paths || !hashes || !hashp || !sizes || !per_class) {
        rc = rb_fail(err, "lower shard_size_mb", "out of memory for a shard of %lld records", (long long)n);
        goto out;
    }
    int64_t kept = 0;
    for (int64_t k = 0; k < n; k++) {
        if (!meta[k].ok)
            continue;
        const plan_entry *e = &x->in.e[x->pl.order[s->first + k]];
        if (kept != k)
            memmove(images + (size_t)kept * rec, images + (size_t)k * rec, rec);
        labels[kept] = e->label;
        crc[kept] = meta[k].crc;
        paths[kept] = e->rel;
        hex128(e->hash, hashes + kept * 33);
        hashp[kept] = hashes + kept * 33;
        sizes[2 * kept] = meta[k].src_h;
        sizes[2 * kept + 1] = meta[k].src_w;
        if (e->label >= 0 && e->label < x->in.nclasses)
            per_class[e->label]++;
        kept++;
    }
    shard_meta m = {
        .height = x->H, .width = x->W, .channels = x->C, .nclasses = x->in.nclasses,
        .class_names = x->in.class_names, .split = split_name(s->split), .shard_index = s->index,
        .shard_count = s->count, .resize = resize_mode_name(x->mode), .resize_filter = "triangle (antialiased bilinear)",
        .dct_scaling = x->dct, .plan_hash = s->hash, .compression = (int)job_int(&x->cfg, "compression"),
    };
    rb_buf roots = {0};
    for (int i = 0; i < x->in.nroots; i++) {
        if (i)
            rb_buf_put(&roots, ";", 1);
        rb_buf_put(&roots, x->in.roots[i], strlen(x->in.roots[i]));
    }
    rb_buf_put(&roots, "", 1);
    m.source_roots = (const char *)roots.data;
    shard_records r = {kept, images, labels, paths, crc, hashp, sizes};
    rc = shard_write_begin(path, &m, &r, pend, err);
    rb_buf_free(&roots);
    if (rc == 0)
        shard_stats_put(stats, name, s->split, kept, per_class, x->in.nclasses, crc_digest(crc, kept), s->hash, 0);
out:
    free(labels);
    free(crc);
    free(paths);
    free(hashes);
    free(hashp);
    free(sizes);
    free(per_class);
    free(path);
    return rc;
}

/* Every rank checks the shards it writes for a finished copy from an earlier run; the
 * flags are then shared, so nobody decodes records of a shard that is kept. */
static int find_reusable(convert_ctx *x, int8_t *reused, rb_buf *stats, rb_error *err)
{
    int64_t *flag = calloc((size_t)x->pl.nshards + 1, sizeof *flag);
    if (!flag)
        return rb_fail(err, NULL, "out of memory");
    for (int k = 0; k < x->pl.nshards; k++) {
        const plan_shard *s = &x->pl.shards[k];
        if (s->rank != x->world.rank)
            continue;
        char name[64];
        shard_file_name(s, name, sizeof name);
        char *path = fs_join(x->out, name);
        if (!path) {
            free(flag);
            return rb_fail(err, NULL, "out of memory");
        }
        flag[k] = try_reuse(x, s, path, stats);
        free(path);
    }
    rb_mpi_max_i64(flag, x->pl.nshards);
    for (int k = 0; k < x->pl.nshards; k++)
        reused[k] = (int8_t)flag[k];
    free(flag);
    return 0;
}

/* Put a written shard in place (fsync, rename); the resume test's hook kills the rank after
 * the given number of finished shards. */
static int finish_shard(shard_pending *pend, int *written, rb_error *err)
{
    if (!pend->tmp)
        return 0;
    if (shard_write_finish(pend, err) < 0)
        return -1;
    long long kill_after = test_hook_int(HOOK_KILL_AFTER_SHARDS);
    if (kill_after >= 0 && ++*written >= kill_after)
        raise(SIGKILL);
    return 0;
}

/* Pass 2. Each rank first decodes its parts of shards that other ranks write, each into a
 * fresh buffer sent at once (non-blocking; freed once delivered): they sit at the ends of
 * its share, and a writer waiting for them would otherwise wait until the sender had done
 * everything else. Then, in plan order, the shards it writes: post receives for the other
 * ranks' parts, decode its own part straight into the shard buffer, wait for the rest
 * (long sent by then), write the shard. Every send is posted before its rank waits for
 * anything, so the waits always end. A rank that fails to write a shard goes on receiving
 * and is reported at the end. */
static int convert_pass2(convert_ctx *x, const int8_t *reused, rb_buf *stats, rb_progress *prog, rb_error *err)
{
    const int me = x->world.rank, P = x->world.size;
    const size_t rec = (size_t)x->H * x->W * x->C;
    int64_t shard_cap = 0;
    for (int k = 0; k < x->pl.nshards; k++)
        if (x->pl.shards[k].rank == me && !reused[k] && x->pl.shards[k].n > shard_cap)
            shard_cap = x->pl.shards[k].n;
    /* one buffer for the shards this rank writes, reused from shard to shard */
    uint8_t *images = malloc((size_t)(shard_cap ? shard_cap : 1) * rec);
    rec_meta *meta = malloc((size_t)(shard_cap ? shard_cap : 1) * sizeof *meta);
    seg_header *hdrs = malloc((size_t)P * sizeof *hdrs);
    rb_xfer *sends = rb_xfer_new(), *recvs = rb_xfer_new();
    if (!images || !meta || !hdrs || !sends || !recvs) {
        free(images);
        free(meta);
        free(hdrs);
        rb_xfer_free(sends);
        rb_xfer_free(recvs);
        return rb_fail(err, "lower shard_size_mb", "out of memory for a shard of %lld records", (long long)shard_cap);
    }
    /* Test hook for the resume test: die by SIGKILL after this many finished shards (per rank). */
    int written = 0, failed = 0;
    int64_t done = 0;
    shard_pending pend = {0};
    /* round 0: the parts other ranks wait for; round 1: the shards this rank writes */
    for (int round = 0; round < 2; round++)
    for (int k = 0; k < x->pl.nshards; k++) {
        const plan_shard *s = &x->pl.shards[k];
        int64_t a, b;
        plan_shard_part(&x->pl, s, me, &a, &b);
        int writer = s->rank == me;
        if (reused[k] || writer != (round == 1) || (!writer && b <= a))
            continue;
        if (writer) {
            /* the other ranks' parts, straight into place */
            for (int q = 0; q < P; q++) {
                int64_t qa, qb;
                if (q == me || plan_shard_part(&x->pl, s, q, &qa, &qb) == 0)
                    continue;
                int64_t off = qa - s->first;
                hdrs[q].shard = -1;
                if (rb_xfer_recv(recvs, q, TAG_SEG_META, &hdrs[q], 1, sizeof *hdrs, err) < 0 ||
                    rb_xfer_recv(recvs, q, TAG_SEG_META, meta + off, qb - qa, sizeof *meta, err) < 0 ||
                    rb_xfer_recv(recvs, q, TAG_SEG_PIXELS, images + (size_t)off * rec, qb - qa, rec, err) < 0)
                    rb_mpi_abort(1); /* cannot happen short of memory; nobody may wait forever */
            }
            for (int64_t pos = a; pos < b; pos++) {
                int64_t off = pos - s->first;
                decode_record(x, &x->in.e[x->pl.order[pos]], images + (size_t)off * rec, meta + off);
                rb_progress_update(prog, ++done);
                rb_xfer_test(sends);
            }
            rb_xfer_wait(recvs);
            for (int q = 0; q < P; q++) {
                int64_t qa, qb;
                if (q != me && plan_shard_part(&x->pl, s, q, &qa, &qb) > 0 &&
                    (hdrs[q].shard != k || hdrs[q].first != qa || hdrs[q].count != qb - qa)) {
                    rb_fail(err, NULL, "internal error: rank %d sent records of the wrong shard", q);
                    rb_mpi_abort(1);
                }
            }
            /* the previous shard's disk write went on while this one was decoded */
            if (!failed && finish_shard(&pend, &written, err) < 0)
                failed = 1;
            if (!failed && write_shard_records(x, s, images, meta, stats, &pend, err) < 0)
                failed = 1;
        } else {
            int64_t m = b - a;
            seg_header *h = malloc(sizeof *h);
            rec_meta *sm = malloc((size_t)m * sizeof *sm);
            uint8_t *px = malloc((size_t)m * rec);
            if (!h || !sm || !px) {
                rb_fail(err, "lower shard_size_mb", "out of memory for %lld records to send", (long long)m);
                rb_error_print(err, "");
                rb_mpi_abort(1);
            }
            for (int64_t pos = a; pos < b; pos++) {
                decode_record(x, &x->in.e[x->pl.order[pos]], px + (size_t)(pos - a) * rec, sm + (pos - a));
                rb_progress_update(prog, ++done);
                rb_xfer_test(sends);
            }
            *h = (seg_header){k, a, m};
            if (rb_xfer_send(sends, s->rank, TAG_SEG_META, h, 1, sizeof *h, 1, err) < 0 ||
                rb_xfer_send(sends, s->rank, TAG_SEG_META, sm, m, sizeof *sm, 1, err) < 0 ||
                rb_xfer_send(sends, s->rank, TAG_SEG_PIXELS, px, m, rec, 1, err) < 0)
                rb_mpi_abort(1);
        }
    }
    if (!failed && finish_shard(&pend, &written, err) < 0)
        failed = 1;
    rb_error ignored;
    shard_write_finish(&pend, &ignored); /* after a failure: nothing half-done stays behind */
    rb_xfer_free(sends);
    rb_xfer_free(recvs);
    free(images);
    free(meta);
    free(hdrs);
    if (!failed)
        rb_progress_finish(prog, done);
    return failed ? -1 : 0;
}

/* ---- rank 0: reports --------------------------------------------------------------- */
typedef struct err_row {
    const char *path, *reason;
} err_row;
static int cmp_err_row(const void *a, const void *b)
{
    const err_row *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : strcmp(x->reason, y->reason);
}

static int write_errors_csv(convert_ctx *x, const uint8_t *blob, size_t len, int64_t *nerr, rb_error *err)
{
    /* rank errors blob + scan errors */
    int64_t cap = 1024, n = 0;
    err_row *rows = malloc((size_t)cap * sizeof *rows);
    rb_buf parts[2] = {{(uint8_t *)blob, len, len, 0, 0},
                       {x->in.errors.data, x->in.errors.len, x->in.errors.len, 0, 0}};
    for (int k = 0; k < 2 && rows; k++) {
        const char *p, *r;
        while ((p = rb_buf_get_str(&parts[k])) && (r = rb_buf_get_str(&parts[k]))) {
            if (n == cap) {
                cap *= 2;
                err_row *t = realloc(rows, (size_t)cap * sizeof *t);
                if (!t)
                    break;
                rows = t;
            }
            rows[n++] = (err_row){p, r};
        }
    }
    if (!rows)
        return rb_fail(err, NULL, "out of memory");
    qsort(rows, (size_t)n, sizeof *rows, cmp_err_row);
    char *path = fs_join(x->out, "errors.csv");
    csv_writer w;
    int rc = csv_writer_open(&w, path, err);
    if (rc == 0) {
        csv_field(&w, "path");
        csv_field(&w, "reason");
        csv_end_row(&w);
        for (int64_t i = 0; i < n; i++) {
            csv_field(&w, rows[i].path);
            csv_field(&w, rows[i].reason);
            csv_end_row(&w);
        }
        rc = csv_writer_close(&w, err);
    }
    *nerr = n;
    free(rows);
    free(path);
    return rc;
}

static int cmp_pair(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

static int write_duplicates_csv(convert_ctx *x, rb_error *err)
{
    char *path = fs_join(x->out, "duplicates.csv");
    csv_writer w;
    int rc = csv_writer_open(&w, path, err);
    free(path);
    if (rc < 0)
        return -1;
    csv_field(&w, "content_hash");
    csv_field(&w, "path");
    csv_field(&w, "label");
    csv_field(&w, "split");
    csv_field(&w, "first_copy");
    csv_field(&w, "kept");
    csv_end_row(&w);
    /* (first copy, copy) pairs sorted, so each group is written together: O(n log n) */
    int64_t nd = 0;
    for (int64_t j = 0; j < x->in.n; j++)
        nd += x->pl.dup_of[j] >= 0;
    int64_t (*pairs)[2] = malloc((size_t)(nd ? nd : 1) * sizeof *pairs);
    if (!pairs) {
        csv_writer_abort(&w);
        return rb_fail(err, NULL, "out of memory");
    }
    nd = 0;
    for (int64_t j = 0; j < x->in.n; j++)
        if (x->pl.dup_of[j] >= 0) {
            pairs[nd][0] = x->pl.dup_of[j];
            pairs[nd++][1] = j;
        }
    if (nd > 1)
        qsort(pairs, (size_t)nd, sizeof *pairs, cmp_pair);
    for (int64_t k = 0; k < nd; k++) {
        int64_t first = pairs[k][0];
        int64_t rows[2] = {first, pairs[k][1]};
        for (int q = (k > 0 && pairs[k - 1][0] == first) ? 1 : 0; q < 2; q++) {
            int64_t j = rows[q];
            const plan_entry *d = &x->in.e[j];
            char hex[33];
            hex128(d->hash, hex);
            csv_field(&w, hex);
            csv_field(&w, d->rel);
            csv_field(&w, d->label >= 0 ? x->in.class_names[d->label] : "");
            csv_field(&w, x->pl.split_of[j] >= 0 ? split_name(x->pl.split_of[j]) : "");
            csv_field(&w, x->in.e[first].rel);
            csv_field(&w, x->pl.split_of[j] >= 0 ? "yes" : "no");
            csv_end_row(&w);
        }
    }
    free(pairs);
    return csv_writer_close(&w, err);
}

/* Remove temp files of killed runs and shard files that are not part of this plan. */
static void clean_out_dir(convert_ctx *x, int after)
{
    DIR *d = opendir(x->out);
    if (!d)
        return;
    regex_t re;
    regcomp(&re, "^(train|val|test|all)-[0-9]{5}-of-[0-9]{5}\\.h5$", REG_EXTENDED | REG_NOSUB);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        int remove_it = 0;
        if (!after && strstr(nm, ".tmp.") && (strstr(nm, ".h5.tmp.") || strstr(nm, ".csv.tmp.") || strstr(nm, ".json.tmp.")))
            remove_it = 1; /* a temp file left by a killed run */
        else if (regexec(&re, nm, 0, NULL, 0) == 0) {
            if (!after && job_bool(&x->cfg, "overwrite"))
                remove_it = 1;
            else if (after) {
                remove_it = 1;
                for (int k = 0; k < x->pl.nshards && remove_it; k++) {
                    char name[64];
                    shard_file_name(&x->pl.shards[k], name, sizeof name);
                    remove_it = strcmp(name, nm) != 0;
                }
            }
        }
        if (remove_it) {
            char *p = fs_join(x->out, nm);
            if (p && unlink(p) == 0 && after)
                rb_info("removed %s (not part of this conversion)", nm);
            free(p);
        }
    }
    regfree(&re);
    closedir(d);
}

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

static int convert_main(convert_ctx *x, rb_error *err)
{
    int rank = x->world.rank;
    double t0 = rb_now();

    /* 1. rank 0 lists the inputs; everyone gets the same list */
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
    void *data = packed.data;
    size_t len = packed.len;
    if (rb_mpi_bcast_bytes(&data, &len, err) < 0)
        return -1;
    if (rank != 0) {
        ok = inputs_unpack(&x->in, data, len, err) == 0;
        free(data);
    }
    rb_buf_free(&packed);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);

    ok = parse_settings(x, err) == 0;
    if (ok && rank == 0) /* the folder is unfinished from here until summary.json is written last */
        ok = fs_mkdirs(x->out, err) == 0 && job_marker_clear(x->out, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);

    double t_listed = rb_now();
    /* 2. pass 1: hash and probe */
    if (probe_all(x, err) < 0)
        return -1;

    double t_probed = rb_now();
    /* 3. the plan, identical everywhere */
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
    ok = plan_make(&x->pl, x->in.e, x->in.n, &ps, x->settings_hash, x->world.size, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    if (rank == 0) {
        for (int s = 0; s < SPLIT_COUNT; s++)
            if (x->pl.split_count[s])
                rb_info("%-5s: %lld records", split_name(s), (long long)x->pl.split_count[s]);
        rb_info("%d shard(s) of about %g MiB; %lld group(s) of identical files%s", x->pl.nshards,
                job_float(&x->cfg, "shard_size_mb"), (long long)x->pl.ndup_groups,
                x->pl.ndropped ? " (extra copies dropped)" : " (see duplicates.csv)");
        clean_out_dir(x, 0);
    }
    rb_mpi_barrier();

    double t_planned = rb_now();
    /* 4. pass 2: my share of the records; the shards I write */
    rb_buf stats = {0};
    int8_t *reused = calloc((size_t)x->pl.nshards + 1, 1);
    ok = reused && find_reusable(x, reused, &stats, err) == 0;
    if (!rb_mpi_agree_ok(ok)) {
        free(reused);
        rb_buf_free(&stats);
        return job_failed_where(ok);
    }
    int64_t mine = 0;
    for (int k = 0; k < x->pl.nshards; k++) {
        int64_t a, b;
        if (!reused[k])
            mine += plan_shard_part(&x->pl, &x->pl.shards[k], rank, &a, &b);
    }
    rb_progress prog;
    rb_progress_start(&prog, "converting (rank 0's share)", mine);
    ok = convert_pass2(x, reused, &stats, &prog, err) == 0;
    free(reused);
    if (!rb_mpi_agree_ok(ok)) {
        rb_buf_free(&stats);
        return job_failed_where(ok);
    }

    double t_written = rb_now();
    /* 5. rank 0 gathers shard stats and errors, writes the reports */
    void *all_stats = NULL, *all_errors = NULL;
    size_t stats_len = 0, errors_len = 0;
    if (rb_mpi_gather_bytes(stats.data, stats.len, &all_stats, &stats_len, err) < 0 ||
        rb_mpi_gather_bytes(x->errors.data, x->errors.len, &all_errors, &errors_len, err) < 0) {
        rb_buf_free(&stats);
        return -1;
    }
    rb_buf_free(&stats);
    int64_t exit_state = 0; /* 0 ok, 1 too many errors */
    if (rank == 0) {
        shard_index idx = {0};
        idx.height = x->H;
        idx.width = x->W;
        idx.channels = x->C;
        snprintf(idx.resize, sizeof idx.resize, "%s", resize_mode_name(x->mode));
        idx.dct_scaling = x->dct;
        idx.nclasses = x->in.nclasses;
        idx.class_names = x->in.class_names;
        idx.sources = x->in.roots;
        idx.nsources = x->in.nroots;
        idx.seed = job_int(&x->cfg, "seed");
        idx.val_fraction = job_float(&x->cfg, "val_fraction");
        idx.group_regex = (char *)job_str(&x->cfg, "group_regex");
        idx.config = job_config_dump(&x->cfg);
        idx.nshards = x->pl.nshards;
        idx.shards = calloc((size_t)x->pl.nshards + 1, sizeof *idx.shards);
        idx.split_class = calloc((size_t)SHARD_INDEX_SPLITS * (size_t)(idx.nclasses + 1), sizeof *idx.split_class);
        int nc = idx.nclasses, reused = 0;
        rb_buf sb = {all_stats, stats_len, stats_len, 0, 0};
        const char *file;
        while (idx.shards && idx.split_class && (file = rb_buf_get_str(&sb))) {
            int32_t sp, rz;
            int64_t count;
            int64_t *pc = calloc((size_t)nc + 1, sizeof *pc);
            uint64_t ck;
            rb_buf_get(&sb, &sp, sizeof sp);
            rb_buf_get(&sb, &rz, sizeof rz);
            rb_buf_get(&sb, &count, sizeof count);
            rb_buf_get(&sb, pc, (size_t)nc * sizeof *pc);
            rb_buf_get(&sb, &ck, sizeof ck);
            const char *ph = rb_buf_get_str(&sb);
            /* place it at its plan position so index.json lists shards in plan order */
            for (int k = 0; k < x->pl.nshards; k++) {
                char name[64];
                shard_file_name(&x->pl.shards[k], name, sizeof name);
                if (strcmp(name, file) != 0)
                    continue;
                shard_index_entry *e = &idx.shards[k];
                snprintf(e->file, sizeof e->file, "%s", file);
                e->split = sp;
                e->index = x->pl.shards[k].index;
                e->count = x->pl.shards[k].count;
                e->records = count;
                e->per_class = pc;
                pc = NULL;
                snprintf(e->checksum, sizeof e->checksum, "%016llx", (unsigned long long)ck);
                snprintf(e->plan_hash, sizeof e->plan_hash, "%s", ph ? ph : "");
                idx.split_records[sp] += count;
                for (int c = 0; c < nc; c++)
                    idx.split_class[sp * nc + c] += e->per_class[c];
            }
            reused += rz;
            free(pc);
        }
        int64_t nerr = 0;
        int rc = write_errors_csv(x, all_errors, errors_len, &nerr, err);
        if (rc == 0)
            rc = write_duplicates_csv(x, err);
        idx.input_files = x->in.n;
        idx.errors = nerr;
        idx.duplicate_groups = x->pl.ndup_groups;
        idx.dropped_duplicates = x->pl.ndropped;
        if (rc == 0)
            rc = shard_index_write(x->out, &idx, err);
        if (rc == 0)
            clean_out_dir(x, 1);
        int64_t total = 0;
        for (int s = 0; s < SHARD_INDEX_SPLITS; s++)
            total += idx.split_records[s];
        double el = rb_now() - t0;
        if (rc == 0) { /* the marker last: the folder is finished */
            cJSON *f = cJSON_CreateObject();
            cJSON_AddNumberToObject(f, "records", (double)total);
            cJSON_AddNumberToObject(f, "shards", x->pl.nshards);
            cJSON_AddNumberToObject(f, "input_files", (double)x->in.n);
            cJSON_AddNumberToObject(f, "errors", (double)nerr);
            cJSON_AddNumberToObject(f, "duplicate_groups", (double)x->pl.ndup_groups);
            rc = job_marker_write(x->out, "convert", f, err);
        }
        if (rc == 0) {
            rb_info("wrote %lld records in %d shards to %s (%d kept from an earlier run) in %.1f s, %.0f images/s",
                    (long long)total, x->pl.nshards, x->out, reused, el, el > 0 ? (double)total / el : 0.0);
            for (int s = 0; s < SHARD_INDEX_SPLITS; s++) {
                if (!idx.split_records[s])
                    continue;
                char line[1024];
                int l = snprintf(line, sizeof line, "  %-5s %6lld:", split_name(s), (long long)idx.split_records[s]);
                for (int c = 0; c < nc && l < (int)sizeof line - 64; c++)
                    l += snprintf(line + l, sizeof line - (size_t)l, " %s %lld", x->in.class_names[c],
                                  (long long)idx.split_class[s * nc + c]);
                rb_info("%s", line);
            }
            rb_info("time: listing %.2f s, reading and hashing %.2f s, plan %.2f s, decoding and writing "
                    "%.2f s, reports %.2f s",
                    t_listed - t0, t_probed - t_listed, t_planned - t_probed, t_written - t_planned,
                    rb_now() - t_written);
            if (nerr)
                rb_info("%lld input(s) could not be used: see %s/errors.csv", (long long)nerr, x->out);
            double frac = x->in.n ? (double)nerr / (double)x->in.n : 0;
            if (total == 0) {
                rb_fail(err, "see errors.csv for the reason of each file", "convert: no usable images");
                exit_state = 2;
            } else if (frac > job_float(&x->cfg, "max_error_fraction")) {
                rb_fail(err, "fix the inputs, or raise max_error_fraction",
                        "convert: %lld of %lld inputs failed (%.1f%% > max_error_fraction %.1f%%)", (long long)nerr,
                        (long long)x->in.n, 100 * frac, 100 * job_float(&x->cfg, "max_error_fraction"));
                exit_state = 1;
            }
        } else
            exit_state = 2;
        for (int k = 0; k < idx.nshards && idx.shards; k++)
            free(idx.shards[k].per_class);
        free(idx.shards);
        free(idx.split_class);
        free(idx.config);
    }
    free(all_stats);
    free(all_errors);
    rb_mpi_max_i64(&exit_state, 1);
    if (exit_state)
        return rank == 0 ? JOB_FAILED : JOB_FAILED_ELSEWHERE;
    return 0;
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
    job_driver d = {&command_convert, &x, &x.cfg, &x.world, NULL, convert_run, convert_free};
    return job_run(&d, argc, argv);
}

const command_spec command_convert = {
    "convert",
    "image folders (JPEG/PNG/TIFF) -> sharded HDF5 records with splits, checksums and an index",
    "usage: radbatch convert [job.ini] [input folder or list.csv ...] [--out <folder>] [--key value ...]",
    convert_opts,
    run_convert,
};
