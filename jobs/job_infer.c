/* radbatch infer: bulk, resumable, incremental inference over an archive (docs/infer.md).
 *
 * Rank 0 streams the listing of the input into chunk files (a thread: rank 0 computes too);
 * every rank takes chunk numbers from a shared atomic counter (mpi/rb_work.h), waits for
 * that chunk file to be listed, decodes and predicts its images in batches, and commits a
 * part file per chunk (temp + fsync + rename). A chunk whose part file exists is done, so a
 * killed run, rerun, only does the rest; the listing is persisted and reused, so the chunks
 * and therefore the rows are the same. Rank 0 then merges the sorted parts into the
 * outputs (jobs/infer_merge.c). With --since, files whose (size, mtime) or content hash
 * match the previous run's index keep their earlier prediction and are not decoded. */
#include "test_hooks.h"
#include "commands.h"
#include "fsutil.h"
#include "image.h"
#include "infer_index.h"
#include "infer_list.h"
#include "infer_merge.h"
#include "infer_work.h"
#include "job_marker.h"
#include "job_run.h"
#include "rb_buf.h"
#include "rb_log.h"
#include "rb_mpi.h"
#include "rb_work.h"
#include "shard.h"
#include "trained_model.h"

#include <cblas.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static const opt_spec infer_opts[] = {
    {"model", OPT_STRING, "", NULL,
     "model file written by radbatch train; several comma-separated files are an ensemble (probabilities averaged)"},
    {"input", OPT_STRING, "", NULL,
     "archive folder, file list (.txt/.csv, one path per line) or shards folder; a positional argument works too"},
    {"out", OPT_STRING, "", NULL,
     "run folder: predictions.csv, flagged.csv, errors.csv, index.csv, summary.json, report.html, work/"},
    {"since", OPT_STRING, "", NULL,
     "folder of a previous infer run: predict only files that are new or changed since its index (nightly screening)"},
    {"change_detection", OPT_CHOICE, "stat", "stat|hash",
     "with since: a file changed when its size or mtime differ (stat), or when its XXH3 content hash differs "
     "(hash: every file is read)"},
    {"chunk", OPT_INT, "256", NULL, "files per chunk: the unit that ranks take, commit and resume"},
    {"batch", OPT_INT, "32", NULL, "images per forward pass"},
    {"tta", OPT_INT, "0", NULL, "test-time augmentation: 0 off, 1 horizontal flip, 2 flip and 4 small shifts (averaged)"},
    {"threads", OPT_INT, "0", NULL, "compute threads per rank (0: SLURM_CPUS_PER_TASK or cores / ranks on the node)"},
    {"max_file_mb", OPT_FLOAT, "512", NULL, "files larger than this are errors, not read"},
    {"max_megapixels", OPT_FLOAT, "50", NULL, "images with more source pixels than this are errors (decompression bombs)"},
    {"max_error_fraction", OPT_FLOAT, "0.1", NULL,
     "exit 1 (outputs still written) when more than this share of the listed files are errors, or none is usable"},
    {"quiet", OPT_BOOL, "false", NULL, "no progress lines"},
    {NULL, 0, NULL, NULL, NULL},
};

static volatile sig_atomic_t g_term = 0;
static void on_term(int sig)
{
    (void)sig;
    g_term = 1;
}

#define INFER_MAX_THREADS 64
#define INFER_MAX_BATCH 1024

/* One compute thread of a rank: its own copy of the models (single-threaded engine). */
typedef struct infer_worker {
    trained_model *tm;
    uint8_t *images; /* [batch, H, W, C] */
    float *probs;    /* [batch, nclasses] */
} infer_worker;

typedef struct infer_ctx {
    job_config cfg;
    rb_world w;
    trained_model tm;
    int have_tm;
    char *model_list;      /* comma-separated */
    char *input;           /* absolute */
    infer_input_kind kind;
    char *out, *work;
    char *since;           /* absolute, or NULL */
    int hash_mode;
    int64_t chunk;
    int batch, tta, threads;
    image_limits lim;
    char fingerprint[17];
    infer_prev prev;
    int have_prev;
    infer_lister lister;   /* rank 0 */
    infer_worker wk[INFER_MAX_THREADS]; /* wk[0].tm is &tm */
    int nworkers;
    rb_work_counter *wc;
    size_t rec_bytes;
    atomic_llong images_done; /* by this rank in this invocation */
    int64_t chunks_done;
    /* shards: the open shard of the current chunk */
    shard_reader shard;
    char *shard_path;
} infer_ctx;

/* ---- one chunk ------------------------------------------------------------------------- */
typedef struct slot {
    char *rec;             /* the chunk row (owned); fields point into it */
    infer_entry e;
    int64_t order;         /* position in the chunk */
    const char *status;    /* "new", "changed", "unchanged"; NULL = error */
    char *reason;          /* error (owned) */
    char hash[17];
    char label[256];
    char *probs_text;      /* "p0,p1,...": unchanged rows copy the previous run's text (owned) */
    int flagged;
    uint8_t *bytes;        /* file read for the hash check (hash mode), owned */
    size_t len;
    int ok;                /* decoded into the batch */
} slot;

static void slot_error(slot *s, const char *reason)
{
    free(s->reason);
    s->reason = strdup(reason);
    s->status = NULL;
}

/* The message of an rb_error without a leading "path: ". */
static const char *reason_of(const rb_error *e, const char *path)
{
    size_t l = strlen(path);
    if (strncmp(e->msg, path, l) == 0 && e->msg[l] == ':' && e->msg[l + 1] == ' ')
        return e->msg + l + 2;
    return e->msg;
}

static void read_error(slot *s, const rb_error *e)
{
    const char *why = reason_of(e, s->e.ref);
    if (strstr(why, "No such file"))
        slot_error(s, "file vanished after the listing (No such file or directory)");
    else
        slot_error(s, why);
}

static void decode_one(infer_ctx *x, slot *s, uint8_t *dst)
{
    rb_error e;
    if (!s->bytes && fs_read_file(s->e.ref, x->lim.max_file_bytes, &s->bytes, &s->len, &e) < 0) {
        read_error(s, &e);
        return;
    }
    infer_hash_hex(s->bytes, s->len, s->hash);
    image_info info;
    if (image_load_resized(s->bytes, s->len, x->tm.height, x->tm.width, x->tm.channels, x->tm.resize,
                           x->tm.dct_scaling, &x->lim, dst, &info, s->e.path, &e) < 0)
        slot_error(s, reason_of(&e, s->e.path));
    else
        s->ok = 1;
    free(s->bytes);
    s->bytes = NULL;
}

/* A shard record, converted to the model's size and channels when they differ. */
static void shard_one_locked(infer_ctx *x, slot *s, uint8_t *dst)
{
    const char *hash = strrchr(s->e.ref, '#');
    if (!hash) {
        slot_error(s, "bad shard reference");
        return;
    }
    char *file = strndup(s->e.ref, (size_t)(hash - s->e.ref));
    int64_t i = strtoll(hash + 1, NULL, 10);
    rb_error e;
    if (!x->shard_path || strcmp(x->shard_path, file) != 0) {
        if (x->shard_path)
            shard_close(&x->shard);
        free(x->shard_path);
        x->shard_path = NULL;
        if (shard_open(&x->shard, file, &e) < 0) {
            slot_error(s, reason_of(&e, file));
            free(file);
            return;
        }
        x->shard_path = file;
        file = NULL;
    }
    free(file);
    shard_reader *r = &x->shard;
    size_t rb = (size_t)r->height * r->width * r->channels;
    uint8_t *px = malloc(rb);
    if (!px) {
        slot_error(s, "out of memory");
        return;
    }
    if (i < 0 || i >= r->n || shard_read(r, i, 1, px, NULL, &e) < 0) {
        slot_error(s, i < 0 || i >= r->n ? "record number beyond the shard" : reason_of(&e, r->path));
        free(px);
        return;
    }
    infer_hash_hex(px, rb, s->hash);
    int H = x->tm.height, W = x->tm.width, C = x->tm.channels;
    if (r->height == H && r->width == W && r->channels == C)
        memcpy(dst, px, rb);
    else {
        image_u8 in = {r->height, r->width, C, px};
        uint8_t *conv = NULL;
        if (r->channels != C) { /* gray <-> RGB as image.h does: replicate, or BT.601 luma */
            size_t np = (size_t)r->height * r->width;
            conv = malloc(np * (size_t)C);
            for (size_t p = 0; conv && p < np; p++) {
                if (C == 3)
                    conv[3 * p] = conv[3 * p + 1] = conv[3 * p + 2] = px[p];
                else
                    conv[p] = (uint8_t)((299 * px[3 * p] + 587 * px[3 * p + 1] + 114 * px[3 * p + 2] + 500) / 1000);
            }
            in.data = conv;
        }
        if (!in.data || image_resize(&in, H, W, x->tm.resize, dst, &e) < 0) {
            slot_error(s, in.data ? e.msg : "out of memory");
            free(conv);
            free(px);
            return;
        }
        free(conv);
    }
    free(px);
    s->ok = 1;
}

/* HDF5 is not thread-safe, and the open shard is shared: one caller at a time. */
static pthread_mutex_t g_hdf5_lock = PTHREAD_MUTEX_INITIALIZER;
static void shard_one(infer_ctx *x, slot *s, uint8_t *dst)
{
    pthread_mutex_lock(&g_hdf5_lock);
    shard_one_locked(x, s, dst);
    pthread_mutex_unlock(&g_hdf5_lock);
}

static int format_prediction(infer_ctx *x, slot *s, const float *p)
{
    int k = x->tm.nclasses;
    rb_buf b = {0};
    for (int c = 0; c < k; c++)
        rb_buf_printf(&b, "%s%.6f", c ? "," : "", (double)p[c]);
    rb_buf_put(&b, "", 1);
    if (b.failed)
        return -1;
    free(s->probs_text);
    s->probs_text = (char *)b.data;
    snprintf(s->label, sizeof s->label, "%s", x->tm.class_names[trained_model_decide(&x->tm, p)]);
    s->flagged = p[x->tm.positive] >= x->tm.threshold;
    return 0;
}

static int cmp_slot(const void *a, const void *b)
{
    const slot *x = *(slot *const *)a, *y = *(slot *const *)b;
    int c = strcmp(x->e.path, y->e.path);
    return c ? c : (x->order < y->order ? -1 : x->order > y->order);
}

/* --since: decide new / changed / unchanged from the previous index. */
static int compare_with_prev(infer_ctx *x, slot *s, rb_error *err)
{
    int found = infer_prev_find(&x->prev, s->e.path, err);
    if (found < 0)
        return -1;
    if (!found) {
        s->status = "new";
        return 0;
    }
    char **f = x->prev.fields; /* path,size,mtime,hash,label,probs...,flagged */
    int k = x->tm.nclasses, same;
    if (x->hash_mode) {
        rb_error e;
        char h[17] = "";
        if (x->kind == INFER_INPUT_SHARDS) {
            /* the record's pixels are hashed; read into a scratch image, predicted again if changed */
            uint8_t *scratch = malloc(x->rec_bytes);
            if (!scratch)
                return rb_fail(err, NULL, "out of memory");
            shard_one(x, s, scratch);
            free(scratch);
            if (!s->ok)
                return 0; /* an error row */
            s->ok = 0;
            same = !strcmp(s->hash, f[3]);
        } else if (fs_read_file(s->e.ref, x->lim.max_file_bytes, &s->bytes, &s->len, &e) < 0) {
            read_error(s, &e);
            return 0;
        } else {
            infer_hash_hex(s->bytes, s->len, h);
            same = !strcmp(h, f[3]);
        }
    } else
        same = strtoll(f[1], NULL, 10) == s->e.size && !strcmp(f[2], s->e.mtime);
    if (!same) {
        s->status = "changed";
        return 0;
    }
    s->status = "unchanged";
    snprintf(s->hash, sizeof s->hash, "%s", f[3]);
    snprintf(s->label, sizeof s->label, "%s", f[4]);
    rb_buf b = {0};
    for (int c = 0; c < k; c++) {
        if (c)
            rb_buf_put(&b, ",", 1);
        rb_buf_put(&b, f[5 + c], strlen(f[5 + c]));
    }
    rb_buf_put(&b, "", 1);
    if (b.failed)
        return rb_fail(err, NULL, "out of memory");
    s->probs_text = (char *)b.data;
    s->flagged = !strcmp(f[5 + k], "1");
    free(s->bytes);
    s->bytes = NULL;
    return 0;
}

/* ---- chunks in flight and the rank's compute threads ----------------------------------------
 * The main thread takes chunk numbers, loads a chunk (its rows, the --since look-ups) and
 * commits it when its last group is predicted; the rank's compute threads take groups of
 * `batch` consecutive files of the chunks in flight, in order, each thread decoding its
 * group and running it through its own single-threaded copy of the models. Up to
 * INFER_INFLIGHT chunks are in flight, so the threads go on with the next chunk while one
 * is committed or the next is being listed. A group is always one forward pass of the same
 * images, so the probabilities do not depend on how the work was spread over ranks and
 * threads (the engine's results depend on the rows of a pass only through the pass). */
#define INFER_INFLIGHT 2

typedef struct chunk_job {
    int64_t k;
    slot *slots;
    int n;
    slot **todo;         /* slots to decode and predict */
    int ntodo, ngroups;
    int next_group;      /* next group to hand out (pool lock) */
    int groups_left;     /* groups not finished (pool lock) */
    int failed;
    rb_error err;
} chunk_job;

typedef struct infer_pool {
    infer_ctx *x;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    chunk_job *inflight[INFER_INFLIGHT]; /* in take order; NULL = free */
    int quit;
    pthread_t th[INFER_MAX_THREADS];
    int nthreads;
} infer_pool;

typedef struct pool_arg {
    infer_pool *p;
    int t;
} pool_arg;
static pool_arg g_pool_args[INFER_MAX_THREADS];

static void run_group(infer_ctx *x, infer_worker *w, chunk_job *c, int g)
{
    int B = x->batch, i0 = g * B;
    int m = c->ntodo - i0 < B ? c->ntodo - i0 : B;
    slot **bs = c->todo + i0;
    slot *packed[INFER_MAX_BATCH];
    int q = 0;
    for (int i = 0; i < m; i++) {
        uint8_t *dst = w->images + (size_t)q * x->rec_bytes;
        if (x->kind == INFER_INPUT_SHARDS)
            shard_one(x, bs[i], dst);
        else
            decode_one(x, bs[i], dst);
        if (bs[i]->ok)
            packed[q++] = bs[i];
    }
    if (q == 0)
        return;
    rb_error e;
    if (trained_model_predict(w->tm, w->images, q, w->probs, &e) < 0) {
        c->err = e; /* read by the main thread after groups_left reaches 0 */
        c->failed = 1;
        return;
    }
    for (int i = 0; i < q; i++)
        if (format_prediction(x, packed[i], w->probs + (size_t)i * x->tm.nclasses) < 0) {
            rb_fail(&c->err, NULL, "out of memory");
            c->failed = 1;
            return;
        }
    atomic_fetch_add(&x->images_done, q);
}

static void *pool_thread(void *arg)
{
    infer_pool *p = ((pool_arg *)arg)->p;
    infer_worker *w = &p->x->wk[((pool_arg *)arg)->t];
    pthread_mutex_lock(&p->mu);
    for (;;) {
        chunk_job *c = NULL;
        for (int i = 0; i < INFER_INFLIGHT && !c; i++)
            if (p->inflight[i] && p->inflight[i]->next_group < p->inflight[i]->ngroups)
                c = p->inflight[i];
        if (!c) {
            if (p->quit)
                break;
            pthread_cond_wait(&p->cv_work, &p->mu);
            continue;
        }
        int g = c->next_group++;
        if (c->next_group == c->ngroups) /* the main thread may take the next chunk */
            pthread_cond_broadcast(&p->cv_done);
        pthread_mutex_unlock(&p->mu);
        run_group(p->x, w, c, g);
        pthread_mutex_lock(&p->mu);
        if (--c->groups_left == 0)
            pthread_cond_broadcast(&p->cv_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int pool_start(infer_pool *p, infer_ctx *x, rb_error *err)
{
    memset(p, 0, sizeof *p);
    p->x = x;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    for (int t = 0; t < x->nworkers; t++) {
        g_pool_args[t] = (pool_arg){p, t};
        if (pthread_create(&p->th[t], NULL, pool_thread, &g_pool_args[t]) != 0)
            break;
        p->nthreads = t + 1;
    }
    if (p->nthreads == 0)
        return rb_fail(err, "lower threads", "cannot start the compute threads");
    return 0;
}

static void pool_stop(infer_pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int t = 0; t < p->nthreads; t++)
        pthread_join(p->th[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
}

static void chunk_free(chunk_job *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++) {
        free(c->slots[i].rec);
        free(c->slots[i].reason);
        free(c->slots[i].probs_text);
        free(c->slots[i].bytes);
    }
    free(c->slots);
    free(c->todo);
    free(c);
}

/* Read chunk k and decide, per file, what must be predicted. */
static int chunk_load(infer_ctx *x, int64_t k, chunk_job **out, rb_error *err)
{
    *out = NULL;
    char *cpath = infer_chunk_path(x->work, "chunk", k);
    FILE *f = cpath ? fopen(cpath, "r") : NULL;
    if (!f) {
        rb_fail(err, "rerun the command", "%s: cannot open: %s", cpath ? cpath : "chunk", strerror(errno));
        free(cpath);
        return -1;
    }
    chunk_job *c = calloc(1, sizeof *c);
    if (c) {
        c->slots = calloc((size_t)x->chunk, sizeof *c->slots);
        c->todo = calloc((size_t)x->chunk, sizeof *c->todo);
    }
    int rc = c && c->slots && c->todo ? 0 : rb_fail(err, NULL, "out of memory");
    if (c)
        c->k = k;
    rb_buf rec = {0};
    while (rc == 0 && c->n < x->chunk) {
        int r = csvrec_read(f, &rec);
        if (r <= 0) {
            if (r < 0)
                rc = rb_fail(err, NULL, "out of memory");
            break;
        }
        slot *s = &c->slots[c->n];
        s->rec = strndup((const char *)rec.data, rec.len);
        char *fld[6];
        int nf = s->rec ? csv_split_line(s->rec, fld, 6) : 0;
        if (!s->rec || infer_entry_parse(fld, nf, &s->e) < 0) {
            rc = rb_fail(err, "delete the run's work/ folder to list the input again", "%s: bad row %d", cpath,
                         c->n + 1);
            free(s->rec);
            s->rec = NULL;
            break;
        }
        s->order = c->n++;
    }
    fclose(f);
    rb_buf_free(&rec);
    free(cpath);
    for (int i = 0; rc == 0 && i < c->n; i++) {
        slot *s = &c->slots[i];
        if (x->have_prev)
            rc = compare_with_prev(x, s, err);
        else
            s->status = "new";
        if (rc == 0 && s->status && strcmp(s->status, "unchanged") != 0)
            c->todo[c->ntodo++] = s;
    }
    if (rc < 0) {
        chunk_free(c);
        return -1;
    }
    c->ngroups = (c->ntodo + x->batch - 1) / x->batch;
    c->groups_left = c->ngroups;
    *out = c;
    return 0;
}

/* Write the chunk's rows sorted by path (ties in listing order): errors first, the part last. */
static int chunk_commit(infer_ctx *x, chunk_job *c, rb_error *err)
{
    if (c->failed) {
        *err = c->err;
        return -1;
    }
    slot **order = calloc((size_t)c->n + 1, sizeof *order);
    if (!order)
        return rb_fail(err, NULL, "out of memory");
    for (int i = 0; i < c->n; i++)
        order[i] = &c->slots[i];
    if (c->n > 1)
        qsort(order, (size_t)c->n, sizeof *order, cmp_slot);
    rb_buf part = {0}, errs = {0};
    for (int i = 0; i < c->n; i++) {
        slot *s = order[i];
        if (s->status && !s->probs_text && !s->reason)
            slot_error(s, "internal: no prediction");
        if (!s->status || s->reason) {
            csvrow_field(&errs, s->e.path, 1);
            csvrow_field(&errs, s->reason ? s->reason : "unknown error", 0);
            rb_buf_put(&errs, "\n", 1);
            continue;
        }
        char num[32];
        snprintf(num, sizeof num, "%" PRId64, s->e.size);
        csvrow_field(&part, s->e.path, 1);
        csvrow_field(&part, num, 0);
        csvrow_field(&part, s->e.mtime, 0);
        csvrow_field(&part, s->hash, 0);
        csvrow_field(&part, s->status, 0);
        csvrow_field(&part, s->label, 0);
        rb_buf_put(&part, ",", 1);
        rb_buf_put(&part, s->probs_text, strlen(s->probs_text));
        rb_buf_put(&part, s->flagged ? ",1\n" : ",0\n", 3);
    }
    free(order);
    int rc = part.failed || errs.failed ? rb_fail(err, NULL, "out of memory") : 0;
    char *ep = infer_chunk_path(x->work, "errors", c->k), *pp = infer_chunk_path(x->work, "part", c->k);
    if (rc == 0 && (!ep || !pp))
        rc = rb_fail(err, NULL, "out of memory");
    if (rc == 0)
        rc = infer_write_atomic(ep, errs.data ? (const void *)errs.data : "", errs.len, err);
    if (rc == 0)
        rc = infer_write_atomic(pp, part.data ? (const void *)part.data : "", part.len, err);
    free(ep);
    free(pp);
    rb_buf_free(&part);
    rb_buf_free(&errs);
    return rc;
}

/* ---- waiting for a chunk to be listed --------------------------------------------------- */
/* 1: chunk k is listed; 0: the listing ended before k, or another rank stopped the work
 * (failed or SIGTERM: chunks not listed by then are left to the rerun); -1: error (the
 * listing failed, e.g. its disk is full: listing.json, which tells the waiting workers, may
 * then be missing too); -2: SIGTERM */
static int wait_chunk(infer_ctx *x, int64_t k, rb_error *err)
{
    char *p = infer_chunk_path(x->work, "chunk", k);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    useconds_t pause = 1000;
    int rc;
    for (;;) {
        if (fs_is_file(p)) {
            rc = 1;
            break;
        }
        int64_t n;
        int complete;
        int lr = infer_listing_read(x->work, &n, NULL, NULL, &complete);
        if (lr == 1) {
            if (k >= n)
                rc = 0;
            else
                rc = fs_is_file(p) ? 1
                                   : rb_fail(err, "delete the run's work/ folder to list the input again",
                                             "%s: listed but missing", p);
            break;
        }
        if (g_term) {
            rc = -2;
            break;
        }
        if (x->w.rank == 0 && atomic_load(&x->lister.state) == -1) {
            rc = fs_is_file(p) ? 1 : -1;
            if (rc < 0) {
                *err = x->lister.err;
                if (!err->msg[0])
                    rb_fail(err, NULL, "infer: the listing of %s stopped", x->input);
            }
            break;
        }
        if (rb_work_stopped(x->wc)) {
            rc = fs_is_file(p) ? 1 : 0;
            break;
        }
        usleep(pause);
        if (pause < 100000)
            pause *= 2;
    }
    free(p);
    return rc;
}

/* ---- setup ------------------------------------------------------------------------------ */
static char *abs_path(const char *p)
{
    char *r = realpath(p, NULL);
    return r ? r : strdup(p);
}

/* XXH3-64 over the bytes of every model file, in order. */
static int model_fingerprint(const char *list, char out[17], rb_error *err)
{
    XXH3_state_t *s = XXH3_createState();
    XXH3_64bits_reset(s);
    char *copy = strdup(list), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t)
            continue;
        uint8_t *b;
        size_t n;
        if (fs_read_file(t, (size_t)1 << 34, &b, &n, err) < 0)
            rc = -1;
        else {
            XXH3_64bits_update(s, b, n);
            free(b);
        }
    }
    free(copy);
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits_digest(s));
    XXH3_freeState(s);
    return rc;
}

/* work/run.json: the settings that shape the parts; a rerun into the same folder must match. */
static int check_run_json(infer_ctx *x, rb_error *err)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "radbatch-infer-run");
    cJSON_AddStringToObject(j, "input", x->input);
    cJSON_AddStringToObject(j, "kind", infer_input_kind_name(x->kind));
    cJSON_AddNumberToObject(j, "chunk", (double)x->chunk);
    cJSON_AddStringToObject(j, "model_fingerprint", x->fingerprint);
    cJSON_AddNumberToObject(j, "tta", x->tta);
    cJSON_AddStringToObject(j, "since", x->since ? x->since : "");
    cJSON_AddStringToObject(j, "change_detection", job_str(&x->cfg, "change_detection"));
    char *text = cJSON_Print(j);
    char *p = fs_join(x->work, "run.json");
    int rc = 0;
    if (!text || !p)
        rc = rb_fail(err, NULL, "out of memory");
    else if (fs_is_file(p)) {
        uint8_t *b;
        size_t n;
        cJSON *old = NULL;
        if (fs_read_file(p, 1 << 20, &b, &n, err) == 0) {
            old = cJSON_ParseWithLength((const char *)b, n);
            free(b);
        }
        for (cJSON *it = j->child; rc == 0 && it; it = it->next) {
            cJSON *o = old ? cJSON_GetObjectItemCaseSensitive(old, it->string) : NULL;
            if (!o || !cJSON_Compare(o, it, 1)) {
                char *was = o ? cJSON_PrintUnformatted(o) : strdup("(missing)"), *now = cJSON_PrintUnformatted(it);
                rc = rb_fail(err, "rerun with the settings of the first attempt, or give a new --out",
                             "infer: %s was started with other settings: %s was %s, now %s", x->out, it->string,
                             was ? was : "?", now ? now : "?");
                free(was);
                free(now);
            }
        }
        cJSON_Delete(old);
    } else {
        size_t n = strlen(text);
        text[n] = '\n';
        rc = infer_write_atomic(p, text, n + 1, err);
    }
    cJSON_Delete(j);
    free(text);
    free(p);
    return rc;
}

/* --since: the previous run must be finished and made with the same models and TTA. */
static int check_since(infer_ctx *x, rb_error *err)
{
    char *p = fs_join(x->since, "summary.json");
    uint8_t *b = NULL;
    size_t n;
    cJSON *j = NULL;
    int rc = 0;
    if (!p || !fs_is_file(p) || fs_read_file(p, 64 << 20, &b, &n, err) < 0 ||
        !(j = cJSON_ParseWithLength((const char *)b, n)))
        rc = rb_fail(err, "--since takes the folder of a finished infer run", "infer: %s: no readable summary.json",
                     x->since);
    const cJSON *fp = j ? cJSON_GetObjectItemCaseSensitive(j, "model_fingerprint") : NULL;
    const cJSON *tt = j ? cJSON_GetObjectItemCaseSensitive(j, "tta") : NULL;
    if (rc == 0 && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "complete")))
        rc = rb_fail(err, "finish the previous run first (rerun its command)", "infer: %s did not finish", x->since);
    if (rc == 0 && (!cJSON_IsString(fp) || strcmp(fp->valuestring, x->fingerprint) != 0 || !cJSON_IsNumber(tt) ||
                    (int)tt->valuedouble != x->tta))
        rc = rb_fail(err, "run without --since to screen the whole archive with this model",
                     "infer: %s was made with other models or another tta; its predictions cannot be carried over",
                     x->since);
    cJSON_Delete(j);
    free(b);
    free(p);
    return rc;
}

/* Remove temporary files of killed runs and the merge scratch. */
static void clean_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".tmp."))
            continue;
        char *p = fs_join(dir, de->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    closedir(d);
}

static int parse_settings(infer_ctx *x, rb_error *err)
{
    job_config *c = &x->cfg;
    rb_buf models = {0};
    rb_buf_printf(&models, "%s", job_str(c, "model"));
    const char *input = job_str(c, "input");
    for (int i = 0; i < c->npositional; i++) {
        const char *a = c->positional[i];
        size_t l = strlen(a);
        if (l > 3 && !strcmp(a + l - 3, ".h5") && !job_is_set(c, "model"))
            rb_buf_printf(&models, "%s%s", models.len ? "," : "", a);
        else if (!*input)
            input = a;
        else {
            rb_buf_free(&models);
            return rb_fail(err, "give one input (a folder, a list or a shards folder)",
                           "infer: unexpected argument '%s'", a);
        }
    }
    rb_buf_put(&models, "", 1);
    x->model_list = (char *)models.data;
    if (!x->model_list || !x->model_list[0])
        return rb_fail(err, "--model model.h5 (or several, comma-separated, for an ensemble)", "infer: no model given");
    if (!*input)
        return rb_fail(err, "--input <archive folder | list.txt/.csv | shards folder>", "infer: no input given");
    const char *out = job_str(c, "out");
    if (!*out)
        return rb_fail(err, "--out <run folder>", "infer: no output folder given");
    /* chunk, batch, tta, threads, limits: ranges checked with the options (job_config.c) */
    x->chunk = job_int(c, "chunk");
    x->batch = (int)job_int(c, "batch");
    x->tta = (int)job_int(c, "tta");
    x->threads = (int)job_int(c, "threads");
    if (x->threads <= 0)
        x->threads = x->w.threads;
    x->hash_mode = !strcmp(job_str(c, "change_detection"), "hash");
    image_limits_default(&x->lim);
    x->lim.max_pixels = (int64_t)(job_float(c, "max_megapixels") * 1e6);
    x->lim.max_file_bytes = (size_t)(job_float(c, "max_file_mb") * 1048576.0);
    if (x->lim.max_pixels < 1)
        x->lim.max_pixels = 1;
    if (x->lim.max_file_bytes < 1)
        x->lim.max_file_bytes = 1;
    x->input = abs_path(input);
    x->out = strdup(out);
    x->work = fs_join(out, "work");
    if (*job_str(c, "since")) {
        x->since = abs_path(job_str(c, "since"));
        char *o = abs_path(out);
        int same = o && x->since && !strcmp(o, x->since);
        free(o);
        if (same)
            return rb_fail(err, "give each night's run its own --out", "infer: --since is the output folder itself");
    }
    if (!x->input || !x->out || !x->work)
        return rb_fail(err, NULL, "out of memory");
    return infer_input_detect(x->input, &x->kind, err);
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

static int infer_main(infer_ctx *x, rb_error *err)
{
    int rank = x->w.rank;
    int ok = parse_settings(x, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);

    /* rank 0: folders, the models' fingerprint, run.json, --since checks, listing */
    if (rank == 0) {
        ok = model_fingerprint(x->model_list, x->fingerprint, err) == 0 && fs_mkdirs(x->work, err) == 0;
        if (ok) {
            /* the run folder is unfinished from here until the merge writes summary.json last:
             * the marker and the outputs of an earlier run go (the merge makes them again) */
            ok = job_marker_clear(x->out, err) == 0;
            for (int i = 0; ok && infer_outputs[i]; i++) {
                char *q = fs_join(x->out, infer_outputs[i]);
                if (q && unlink(q) != 0 && errno != ENOENT)
                    ok = rb_fail(err, NULL, "%s: cannot remove the output of an earlier run: %s", q, strerror(errno)) == 0;
                free(q);
            }
        }
        if (ok) {
            clean_temps(x->out);
            clean_temps(x->work);
            char *m = fs_join(x->work, "merge");
            if (m && fs_is_dir(m)) {
                clean_temps(m);
                DIR *d = opendir(m);
                struct dirent *de;
                while (d && (de = readdir(d)) != NULL)
                    if (de->d_name[0] != '.') {
                        char *q = fs_join(m, de->d_name);
                        if (q)
                            unlink(q);
                        free(q);
                    }
                if (d)
                    closedir(d);
            }
            free(m);
        }
        ok = ok && check_run_json(x, err) == 0;
        ok = ok && (!x->since || check_since(x, err) == 0);
        if (ok) {
            x->lister.input = strdup(x->input);
            x->lister.work = strdup(x->work);
            x->lister.exclude = abs_path(x->out);
            x->lister.kind = x->kind;
            x->lister.chunk = x->chunk;
            ok = infer_list_prepare(&x->lister, err) == 0;
        }
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    void *fp = x->fingerprint;
    size_t fl = 17;
    if (rb_mpi_bcast_bytes(&fp, &fl, err) < 0)
        return -1;
    if (rank != 0) {
        memcpy(x->fingerprint, fp, 17);
        free(fp);
    }

    /* every rank: the models, buffers, the previous index */
    if (x->threads > INFER_MAX_THREADS)
        x->threads = INFER_MAX_THREADS;
    openblas_set_num_threads(1); /* every compute thread runs its own single-threaded passes */
    ok = trained_model_load(&x->tm, x->model_list, x->batch, 1, err) == 0;
    x->have_tm = ok;
    if (ok) {
        trained_model_set_tta(&x->tm, x->tta);
        x->rec_bytes = (size_t)x->tm.height * x->tm.width * x->tm.channels;
    }
    for (int t = 0; ok && t < x->threads; t++) {
        infer_worker *w = &x->wk[t];
        if (t == 0)
            w->tm = &x->tm;
        else {
            w->tm = calloc(1, sizeof *w->tm);
            ok = w->tm && trained_model_load(w->tm, x->model_list, x->batch, 1, err) == 0;
            if (!ok) {
                free(w->tm);
                w->tm = NULL;
                break;
            }
            trained_model_set_tta(w->tm, x->tta);
        }
        x->nworkers = t + 1;
        w->images = malloc((size_t)x->batch * x->rec_bytes);
        w->probs = malloc((size_t)x->batch * x->tm.nclasses * sizeof *w->probs);
        if (!w->images || !w->probs)
            ok = rb_fail(err, "lower batch or threads", "out of memory") == 0;
    }
    if (ok && x->since) {
        ok = infer_prev_open(&x->prev, x->since, x->tm.nclasses, x->tm.class_names, err) == 0;
        x->have_prev = ok;
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    if (rank == 0) {
        rb_info("infer: %s (%s) with %d model(s) at %dx%dx%d, %s, threshold %.4f on %s; %d rank(s) x %d thread(s)",
                x->input, infer_input_kind_name(x->kind), x->tm.nmembers, x->tm.height, x->tm.width,
                x->tm.channels, x->tta ? (x->tta == 1 ? "tta flip" : "tta flip+shifts") : "no tta", x->tm.threshold,
                x->tm.class_names[x->tm.positive], x->w.size, x->threads);
        if (x->since)
            rb_info("incremental: only files new or changed since %s (%s)", x->since,
                    x->hash_mode ? "content hash" : "size and mtime");
        if (x->lister.reused)
            rb_info("reusing the complete listing in %s (%lld chunks)", x->work,
                    (long long)atomic_load(&x->lister.chunks));
        ok = infer_list_start(&x->lister, err) == 0;
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);

    /* the work loop: take a chunk number, wait until it is listed, do it unless done */
    if (rb_work_create(&x->wc, 0, err) < 0)
        return -1;
    double t0 = rb_now(), t_print = t0;
    int stopped = 0, resumed = 0;
    ok = 1;
    const long long kill_after = test_hook_int(HOOK_KILL_AFTER_CHUNKS);
    const long long term_after = test_hook_int(HOOK_TERM_AFTER_CHUNKS);
    const int hook_rank = test_hook_int(HOOK_KILL_RANK) < 0 || test_hook_int(HOOK_KILL_RANK) == rank;
    if (test_hook_str(HOOK_WAIT_LISTING)) { /* start work once the listing is complete */
        int64_t n;
        while (infer_listing_read(x->work, &n, NULL, NULL, NULL) != 1)
            usleep(2000);
    }
    infer_pool pool;
    ok = pool_start(&pool, x, err) == 0;
    if (!ok)
        rb_work_stop(x->wc);
    int taking = ok, ninfl = 0;
    for (;;) {
        /* wait until a chunk is finished, or the threads need another chunk: every group of
         * the chunks in flight handed out (taking earlier would let a rank sit on work that
         * an idle rank could do), or nothing is left */
        chunk_job *c = NULL;
        int take = 0;
        pthread_mutex_lock(&pool.mu);
        for (;;) {
            int pending = 0;
            for (int i = 0; i < ninfl && !c; i++) {
                if (pool.inflight[i]->groups_left == 0) {
                    c = pool.inflight[i];
                    memmove(&pool.inflight[i], &pool.inflight[i + 1], (size_t)(ninfl - i - 1) * sizeof c);
                    pool.inflight[--ninfl] = NULL;
                } else if (pool.inflight[i]->next_group < pool.inflight[i]->ngroups)
                    pending = 1;
            }
            take = !c && ok && taking && ninfl < INFER_INFLIGHT && !pending;
            if (c || take || ninfl == 0)
                break;
            /* wake every 20 ms to let MPI progress other ranks' atomics on software transports */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            if (pthread_cond_timedwait(&pool.cv_done, &pool.mu, &ts) != 0) {
                pthread_mutex_unlock(&pool.mu);
                rb_work_poke(x->wc);
                pthread_mutex_lock(&pool.mu);
            }
        }
        pthread_mutex_unlock(&pool.mu);
        if (!c && !take)
            break; /* nothing in flight and nothing more to take */
        if (take) {
            if (g_term) {
                rb_work_stop(x->wc);
                stopped = 1;
                taking = 0;
                continue;
            }
            int64_t k = rb_work_take(x->wc);
            if (k == RB_WORK_STOP) {
                stopped = 1;
                taking = 0;
                continue;
            }
            int r = wait_chunk(x, k, err);
            if (r == -2)
                stopped = 1;
            else if (r < 0)
                ok = 0;
            if (r < 0)
                rb_work_stop(x->wc);
            if (r <= 0) {
                taking = 0;
                continue;
            }
            char *pp = infer_chunk_path(x->work, "part", k);
            int done = pp && fs_is_file(pp);
            free(pp);
            if (done) {
                resumed = 1;
                continue;
            }
            chunk_job *nc;
            if (chunk_load(x, k, &nc, err) < 0) {
                rb_error_prefix(err, "chunk %lld: ", (long long)k);
                ok = 0;
                taking = 0;
                rb_work_stop(x->wc);
                continue;
            }
            pthread_mutex_lock(&pool.mu);
            pool.inflight[ninfl++] = nc;
            pthread_cond_broadcast(&pool.cv_work);
            pthread_mutex_unlock(&pool.mu);
            continue;
        }
        /* commit the finished chunk */
        if (ok && chunk_commit(x, c, err) < 0) {
            rb_error_prefix(err, "chunk %lld: ", (long long)c->k);
            ok = 0;
            taking = 0;
            rb_work_stop(x->wc);
        } else if (ok) {
            x->chunks_done++;
            if (kill_after >= 0 && x->chunks_done >= kill_after && hook_rank)
                raise(SIGKILL);
            if (term_after >= 0 && x->chunks_done == term_after && hook_rank)
                raise(SIGTERM);
            if (rank == 0 && rb_now() - t_print > 5) {
                t_print = rb_now();
                rb_info("infer: chunk %lld done, %lld listed%s; %lld images by rank 0 (%.1f/s)", (long long)c->k,
                        (long long)atomic_load(&x->lister.chunks),
                        atomic_load(&x->lister.state) == 1 ? " (complete)" : "",
                        (long long)atomic_load(&x->images_done),
                        (double)atomic_load(&x->images_done) / (rb_now() - t0));
            }
        }
        chunk_free(c);
    }
    if (pool.nthreads)
        pool_stop(&pool);
    if (rank == 0) {
        if (stopped || !ok)
            atomic_store(&x->lister.stop, 1);
        infer_list_join(&x->lister);
    }
    double t_infer = rb_now() - t0;
    int64_t flags[3] = {stopped, ok ? 0 : 1, resumed};
    rb_mpi_max_i64(flags, 3);
    int64_t imgs = atomic_load(&x->images_done);
    rb_mpi_sum_i64(&imgs, 1);
    double rss = peak_rss_mb();
    double rss_all[1] = {rss};
    {
        int64_t r64 = (int64_t)(rss * 1024);
        rb_mpi_max_i64(&r64, 1);
        rss_all[0] = (double)r64 / 1024.0;
    }
    rb_work_free(&x->wc);
    if (flags[1])
        return job_failed_where(ok);
    if (flags[0]) {
        if (rank == 0)
            rb_info("SIGTERM: stopped after the current chunks (%lld images this run); rerun the same command to finish",
                    (long long)imgs);
        return JOB_PREEMPTED; /* stopped after the current chunk; rerun to finish */
    }
    if (rank == 0 && atomic_load(&x->lister.state) != 1) {
        ok = 0;
        if (!x->lister.err.msg[0])
            rb_fail(err, NULL, "infer: the listing did not finish");
        else
            *err = x->lister.err;
    }
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);

    /* rank 0: merge the parts into the outputs */
    int64_t exit_state = 0;
    if (rank == 0) {
        int64_t nchunks = 0, entries = 0, lerr = 0;
        int complete = 0;
        infer_listing_read(x->work, &nchunks, &entries, &lerr, &complete);
        infer_merge_cfg mc = {
            .out = x->out, .work = x->work, .nchunks = nchunks, .nclasses = x->tm.nclasses,
            .class_names = x->tm.class_names, .positive = x->tm.positive, .threshold = x->tm.threshold,
            .since = x->since, .input = x->input, .kind = infer_input_kind_name(x->kind),
            .change_detection = job_str(&x->cfg, "change_detection"), .files_listed = entries, .list_errors = lerr,
            .tta = x->tta, .batch = x->batch, .ranks = x->w.size, .threads = x->threads, .chunk = x->chunk,
            .nmodels = x->tm.nmembers, .model_paths = x->tm.path, .model_fingerprint = x->fingerprint,
            .card = x->tm.card, .infer_seconds = t_infer, .images_this_run = imgs, .peak_rss_mb = rss_all[0],
            .resumed = (int)flags[2],
        };
        infer_merge_result res;
        double tm0 = rb_now();
        if (infer_merge_outputs(&mc, &res, err) < 0)
            exit_state = 1;
        else {
            if (x->since && res.predicted == 0)
                rb_info("nothing new or changed since %s (%lld files unchanged, %lld removed)", x->since,
                        (long long)res.unchanged, (long long)res.removed);
            rb_info("infer: %lld files listed, %lld predicted%s, %lld flagged at %s >= %.4f, %lld errors",
                    (long long)entries, (long long)res.predicted,
                    x->since ? "" : "", (long long)res.flagged, x->tm.class_names[x->tm.positive], x->tm.threshold,
                    (long long)res.errors);
            if (x->since)
                rb_info("  since %s: %lld new, %lld changed, %lld unchanged, %lld removed", x->since,
                        (long long)res.new_files, (long long)res.changed, (long long)res.unchanged,
                        (long long)res.removed);
            char line[1024];
            int l = snprintf(line, sizeof line, " ");
            for (int c = 0; c < x->tm.nclasses && l < (int)sizeof line - 64; c++)
                l += snprintf(line + l, sizeof line - (size_t)l, " %s %lld", x->tm.class_names[c],
                              (long long)res.per_class[c]);
            rb_info("%s", line);
            rb_info("  %lld images decoded and predicted in %.1f s (%.1f images/s), merge %.1f s, peak RSS %.0f MiB",
                    (long long)imgs, t_infer, t_infer > 0 ? (double)imgs / t_infer : 0.0, rb_now() - tm0, rss_all[0]);
            char *rp = fs_join(x->out, "report.html");
            rb_info("report: %s", rp ? rp : "report.html");
            free(rp);
            /* The outputs are complete either way; the exit code tells a pipeline or a
             * nightly job that the archive (or its mount) needs a look. */
            int64_t usable = res.predicted + res.unchanged, seen = usable + res.errors;
            double frac = seen ? (double)res.errors / (double)seen : 0.0, limit = job_float(&x->cfg, "max_error_fraction");
            if (res.errors && !usable) {
                rb_fail(err, "see errors.csv for the reason of each file", "infer: none of the %lld files could be used",
                        (long long)res.errors);
                exit_state = 1;
            } else if (frac > limit) {
                rb_fail(err, "see errors.csv; raise max_error_fraction if these files are expected",
                        "infer: %lld of %lld files are errors (%.1f%% > max_error_fraction %.1f%%)",
                        (long long)res.errors, (long long)seen, 100 * frac, 100 * limit);
                exit_state = 1;
            }
        }
        infer_merge_result_free(&res);
    }
    rb_mpi_max_i64(&exit_state, 1);
    if (exit_state)
        return rank == 0 ? JOB_FAILED : JOB_FAILED_ELSEWHERE;
    return 0;
}

static int infer_run(void *ctx, rb_error *err) { return infer_main(ctx, err); }

static void infer_free(void *ctx)
{
    infer_ctx *x = ctx;
    if (x->w.rank == 0)
        infer_list_free(&x->lister);
    if (x->have_prev)
        infer_prev_close(&x->prev);
    if (x->shard_path) {
        shard_close(&x->shard);
        free(x->shard_path);
    }
    for (int t = 0; t < x->nworkers; t++) {
        if (t > 0 && x->wk[t].tm) {
            trained_model_free(x->wk[t].tm);
            free(x->wk[t].tm);
        }
        free(x->wk[t].images);
        free(x->wk[t].probs);
    }
    if (x->have_tm)
        trained_model_free(&x->tm);
    free(x->model_list);
    free(x->input);
    free(x->out);
    free(x->work);
    free(x->since);
}

static int run_infer(int argc, char **argv)
{
    infer_ctx x;
    memset(&x, 0, sizeof x);
    job_driver d = {&command_infer, &x, &x.cfg, &x.w, on_term, infer_run, infer_free};
    return job_run(&d, argc, argv);
}

const command_spec command_infer = {
    "infer",
    "bulk inference over an archive folder, file list or shards: resumable, incremental (--since), screening report",
    "usage: radbatch infer [job.ini] --model m.h5[,m2.h5] --input <folder|list.txt|shards> --out <run folder> "
    "[--since <previous run>] [--key value ...]   (mpirun -n N / srun for N ranks)",
    infer_opts,
    run_infer,
};
