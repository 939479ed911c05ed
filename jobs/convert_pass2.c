/* radbatch convert: pass 2 (docs/convert.md, "What it does", step 4). A shard that
 * already exists with the planned contents is kept; each rank decodes an equal share of the
 * remaining records and writes the shards it owns (temp name, rename), receiving the
 * records of those shards that other ranks decoded. */
#include "convert_ctx.h"
#include "fsutil.h"
#include "job_run.h"
#include "rb_log.h"
#include "rb_xfer.h"
#include "shard.h"
#include "test_hooks.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void convert_shard_file_name(const plan_shard *s, char *out, size_t cap)
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
    if (x->keys.overwrite || !fs_is_file(path))
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
        convert_shard_file_name(s, name, sizeof name);
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
        convert_add_error(x, e->rel, rb_error_reason(&fe, e->abs)); /* vanished or changed since pass 1 */
        return;
    }
    XXH128_hash_t h = XXH3_128bits(buf, len);
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, h);
    if (memcmp(canon.digest, e->hash, 16) != 0)
        convert_add_error(x, e->rel, "file changed while converting; rerun convert");
    else if (image_load_resized(buf, len, x->H, x->W, x->C, x->mode, x->dct, &x->lim, dst, &info, e->rel, &fe) < 0)
        convert_add_error(x, e->rel, rb_error_reason(&fe, e->rel));
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
    convert_shard_file_name(s, name, sizeof name);
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
        convert_hex128(e->hash, hashes + kept * 33);
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
        .dct_scaling = x->dct, .plan_hash = s->hash, .compression = (int)x->keys.compression,
    };
    rb_buf roots = {0};
    for (int i = 0; i < x->in.nroots; i++) {
        if (i)
            rb_buf_put(&roots, ";", 1);
        rb_buf_put(&roots, x->in.roots[i], strlen(x->in.roots[i]));
    }
    rb_buf_put(&roots, "", 1);
    m.source_roots = (const char *)roots.data;
    shard_records r = {.n = kept,
                       .images = images,
                       .labels = labels,
                       .paths = paths,
                       .checksums = crc,
                       .source_hash = hashp,
                       .source_size = sizes};
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
        convert_shard_file_name(s, name, sizeof name);
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

/* Put a written shard in place (fsync, rename); the resume and stop tests' hooks kill the
 * rank (SIGKILL) or stop it (SIGTERM) after the given number of finished shards. */
static int finish_shard(shard_pending *pend, int *written, rb_error *err)
{
    if (!pend->tmp)
        return 0;
    if (shard_write_finish(pend, err) < 0)
        return -1;
    ++*written;
    long long kill_after = test_hook_int(HOOK_KILL_AFTER_SHARDS), term_after = test_hook_int(HOOK_TERM_AFTER_SHARDS);
    if (kill_after >= 0 && *written >= kill_after)
        raise(SIGKILL);
    if (term_after >= 0 && *written == term_after)
        raise(SIGTERM);
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

int convert_write_shards(convert_ctx *x, rb_buf *stats, rb_error *err)
{
    int8_t *reused = calloc((size_t)x->pl.nshards + 1, 1);
    int ok = reused && find_reusable(x, reused, stats, err) == 0;
    if (!rb_mpi_agree_ok(ok)) {
        free(reused);
        return job_failed_where(ok);
    }
    int64_t mine = 0;
    for (int k = 0; k < x->pl.nshards; k++) {
        int64_t a, b;
        if (!reused[k])
            mine += plan_shard_part(&x->pl, &x->pl.shards[k], x->world.rank, &a, &b);
    }
    rb_progress prog;
    rb_progress_start(&prog, "converting (rank 0's share)", mine);
    ok = convert_pass2(x, reused, stats, &prog, err) == 0;
    free(reused);
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    return 0;
}
