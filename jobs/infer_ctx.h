/* radbatch infer: the context shared by its files (docs/infer.md, "How the work is spread").
 *
 *   job_infer.c     the command: its steps in order, the merge and the report
 *   infer_setup.c   settings, the run folder, run.json and --since checks, the models
 *   infer_chunk.c   one chunk: its rows, the --since look-ups, decoding and predicting a
 *                   group of files, committing the sorted part file
 *   infer_work_loop.c  the work loop: chunk numbers from the shared counter, the rank's
 *                   compute threads, chunks in flight
 * Helpers of the other phases: infer_list.c (listing), infer_merge.c (merge),
 * infer_index.c (--since index), infer_work.c (work/ files). */
#ifndef INFER_CTX_H
#define INFER_CTX_H

#include "image.h"
#include "infer_index.h"
#include "infer_list.h"
#include "infer_work.h"
#include "job_config.h"
#include "infer_keys.h"
#include "rb_error.h"
#include "rb_mpi.h"
#include "rb_work.h"
#include "shard.h"
#include "trained_model.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#define INFER_MAX_THREADS 64
#define INFER_MAX_BATCH 1024

/* One compute thread of a rank: its own copy of the models (single-threaded engine). */
typedef struct infer_worker {
    trained_model *tm;
    uint8_t *images; /* [batch, H, W, C] */
    float *probs;    /* [batch, nclasses] */
} infer_worker;

/* What the keys and arguments say (infer_setup.c). */
typedef struct infer_settings {
    char *model_list;      /* comma-separated */
    char *input;           /* absolute */
    infer_input_kind kind;
    char *out, *work;
    threshold_spec threshold;   /* the key */
    double threshold_value;     /* resolved against the first model's card */
    char threshold_source[1400];
    char *since;           /* absolute, or NULL */
    int hash_mode;
    int64_t chunk;
    int batch, tta, threads;
    image_limits lim;
} infer_settings;

typedef struct infer_ctx {
    job_config cfg;
    infer_keys keys; /* the keys, typed (infer_keys.h); filled before any work */
    rb_world w;
    infer_settings set;
    /* the models: tm, and one copy per further compute thread in wk */
    trained_model tm;
    int have_tm;
    char fingerprint[17];
    infer_worker wk[INFER_MAX_THREADS]; /* wk[0].tm is &tm */
    int nworkers;
    size_t rec_bytes;
    /* --since: the previous run's index */
    infer_prev prev;
    int have_prev;
    infer_lister lister;   /* rank 0 */
    rb_work_counter *wc;
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

/* A chunk in flight: its rows and the groups of `batch` files still to predict. */
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

/* SIGTERM seen: stop after the chunks in flight (set by job_infer.c's handler). */
extern volatile sig_atomic_t infer_term_requested;

/* ---- infer_setup.c ---- */
/* The keys and positional arguments into x (every rank). */
int infer_parse_settings(infer_ctx *x, rb_error *err);
/* Rank 0: the models' fingerprint, the run folder made ready (outputs of an earlier run and
 * temporary files removed), run.json and --since checked, the listing prepared. */
int infer_prepare_run(infer_ctx *x, rb_error *err);
/* Rank 0's fingerprint to every rank. */
int infer_share_fingerprint(infer_ctx *x, rb_error *err);
/* Every rank: the models (one copy per compute thread), their buffers, the previous index. */
int infer_load_models(infer_ctx *x, rb_error *err);

/* ---- infer_chunk.c ---- */
/* Read chunk k and decide, per file, what must be predicted. */
int infer_chunk_load(infer_ctx *x, int64_t k, chunk_job **out, rb_error *err);
/* Decode and predict group g of chunk c with worker w (a compute thread). */
void infer_chunk_run_group(infer_ctx *x, infer_worker *w, chunk_job *c, int g);
/* Write the chunk's rows sorted by path: errors file first, the part file last. */
int infer_chunk_commit(infer_ctx *x, chunk_job *c, rb_error *err);
void infer_chunk_free(chunk_job *c);

/* ---- infer_work_loop.c ---- */
typedef struct infer_run_stats {
    int resumed;          /* some chunk was already done by an earlier attempt (any rank) */
    double seconds;       /* the work loop's wall time */
    int64_t images;       /* decoded and predicted in this invocation, all ranks */
    double peak_rss_mb;   /* largest over the ranks */
} infer_run_stats;
/* Take chunks until none is left, with the rank's compute threads; then the listing thread
 * is joined and the ranks agree. 0, or the exit code (failure, JOB_PREEMPTED on SIGTERM). */
int infer_work_loop(infer_ctx *x, infer_run_stats *st, rb_error *err);

#endif
