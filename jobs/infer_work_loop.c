/* radbatch infer: the work loop of every rank (docs/infer.md, "How the work is spread",
 * steps 2 and 3). Chunk numbers come from the shared atomic counter (mpi/rb_work.h); a
 * number is waited for until it is listed, loaded unless its part file exists, predicted by
 * the rank's compute threads and committed. */
#include "fsutil.h"
#include "infer_ctx.h"
#include "job_run.h"
#include "rb_log.h"
#include "test_hooks.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

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
        infer_chunk_run_group(p->x, w, c, g);
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

/* ---- waiting for a chunk to be listed --------------------------------------------------- */
/* What wait_chunk returns. */
enum {
    CHUNK_LISTED = 1, /* chunk k is listed */
    CHUNK_NONE = 0,   /* the listing ended before k, or another rank stopped the work (failed
                       * or SIGTERM: chunks not listed by then are left to the rerun) */
    CHUNK_ERROR = -1, /* the listing failed, e.g. its disk is full (listing.json, which tells
                       * the waiting workers, may then be missing too); err filled in */
    CHUNK_SIGTERM = -2,
};

static int wait_chunk(infer_ctx *x, int64_t k, rb_error *err)
{
    char *p = infer_chunk_path(x->set.work, "chunk", k);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    useconds_t pause = 1000;
    int rc;
    for (;;) {
        if (fs_is_file(p)) {
            rc = CHUNK_LISTED;
            break;
        }
        int64_t n;
        int complete;
        int lr = infer_listing_read(x->set.work, &n, NULL, NULL, &complete);
        if (lr == 1) {
            if (k >= n)
                rc = CHUNK_NONE;
            else if (fs_is_file(p))
                rc = CHUNK_LISTED;
            else
                rc = rb_fail(err, "delete the run's work/ folder to list the input again", "%s: listed but missing",
                             p);
            break;
        }
        if (infer_term_requested) {
            rc = CHUNK_SIGTERM;
            break;
        }
        if (x->w.rank == 0 && atomic_load(&x->lister.state) == -1) {
            rc = fs_is_file(p) ? CHUNK_LISTED : CHUNK_ERROR;
            if (rc == CHUNK_ERROR) {
                *err = x->lister.err;
                if (!err->msg[0])
                    rb_fail(err, NULL, "infer: the listing of %s stopped", x->set.input);
            }
            break;
        }
        if (rb_work_stopped(x->wc)) {
            rc = fs_is_file(p) ? CHUNK_LISTED : CHUNK_NONE;
            break;
        }
        usleep(pause);
        if (pause < 100000)
            pause *= 2;
    }
    free(p);
    return rc;
}

static double peak_rss_mb(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
}

/* The loop's state on this rank. */
typedef struct work_loop {
    infer_ctx *x;
    infer_pool pool;
    int ninfl;              /* chunks in flight */
    int ok, taking;         /* taking: more chunk numbers may be taken */
    int stopped, resumed;   /* stopped: SIGTERM or the counter was stopped */
    double t0, t_print;
    long long kill_after, term_after; /* test hooks (test_hooks.h) */
    int hook_rank;
} work_loop;

/* Wait until a chunk is finished (returned), or the threads need another chunk (*take):
 * every group of the chunks in flight handed out (taking earlier would let a rank sit on
 * work that an idle rank could do). NULL and !*take: nothing in flight, nothing to take. */
static chunk_job *next_event(work_loop *l, int *take)
{
    infer_pool *pool = &l->pool;
    chunk_job *c = NULL;
    *take = 0;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        int pending = 0;
        for (int i = 0; i < l->ninfl && !c; i++) {
            if (pool->inflight[i]->groups_left == 0) {
                c = pool->inflight[i];
                memmove(&pool->inflight[i], &pool->inflight[i + 1], (size_t)(l->ninfl - i - 1) * sizeof c);
                pool->inflight[--l->ninfl] = NULL;
            } else if (pool->inflight[i]->next_group < pool->inflight[i]->ngroups)
                pending = 1;
        }
        *take = !c && l->ok && l->taking && l->ninfl < INFER_INFLIGHT && !pending;
        if (c || *take || l->ninfl == 0)
            break;
        /* wake every 20 ms to let MPI progress other ranks' atomics on software transports */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&pool->cv_done, &pool->mu, &ts) != 0) {
            pthread_mutex_unlock(&pool->mu);
            rb_work_poke(l->x->wc);
            pthread_mutex_lock(&pool->mu);
        }
    }
    pthread_mutex_unlock(&pool->mu);
    return c;
}

/* Take a chunk number, wait until it is listed, and put it in flight unless it is done. */
static void take_chunk(work_loop *l, rb_error *err)
{
    infer_ctx *x = l->x;
    if (infer_term_requested) {
        rb_work_stop(x->wc);
        l->stopped = 1;
        l->taking = 0;
        return;
    }
    int64_t k = rb_work_take(x->wc);
    if (k == RB_WORK_STOP) {
        l->stopped = 1;
        l->taking = 0;
        return;
    }
    int r = wait_chunk(x, k, err);
    if (r == CHUNK_SIGTERM)
        l->stopped = 1;
    else if (r == CHUNK_ERROR)
        l->ok = 0;
    if (r == CHUNK_SIGTERM || r == CHUNK_ERROR)
        rb_work_stop(x->wc);
    if (r != CHUNK_LISTED) {
        l->taking = 0;
        return;
    }
    char *pp = infer_chunk_path(x->set.work, "part", k);
    int done = pp && fs_is_file(pp);
    free(pp);
    if (done) {
        l->resumed = 1;
        return;
    }
    chunk_job *nc;
    if (infer_chunk_load(x, k, &nc, err) < 0) {
        rb_error_prefix(err, "chunk %lld: ", (long long)k);
        l->ok = 0;
        l->taking = 0;
        rb_work_stop(x->wc);
        return;
    }
    pthread_mutex_lock(&l->pool.mu);
    l->pool.inflight[l->ninfl++] = nc;
    pthread_cond_broadcast(&l->pool.cv_work);
    pthread_mutex_unlock(&l->pool.mu);
}

/* Commit a finished chunk (progress line on rank 0 every 5 s), then free it. */
static void commit_chunk(work_loop *l, chunk_job *c, rb_error *err)
{
    infer_ctx *x = l->x;
    if (l->ok && infer_chunk_commit(x, c, err) < 0) {
        rb_error_prefix(err, "chunk %lld: ", (long long)c->k);
        l->ok = 0;
        l->taking = 0;
        rb_work_stop(x->wc);
    } else if (l->ok) {
        x->chunks_done++;
        if (l->kill_after >= 0 && x->chunks_done >= l->kill_after && l->hook_rank)
            raise(SIGKILL);
        if (l->term_after >= 0 && x->chunks_done == l->term_after && l->hook_rank)
            raise(SIGTERM);
        if (!l->hook_rank && test_hook_int(HOOK_OTHERS_CHUNK_MS) > 0)
            usleep((useconds_t)(1000 * test_hook_int(HOOK_OTHERS_CHUNK_MS)));
        if (x->w.rank == 0 && rb_now() - l->t_print > 5) {
            l->t_print = rb_now();
            rb_info("infer: chunk %lld done, %lld listed%s; %lld images by rank 0 (%.1f/s)", (long long)c->k,
                    (long long)atomic_load(&x->lister.chunks),
                    atomic_load(&x->lister.state) == 1 ? " (complete)" : "",
                    (long long)atomic_load(&x->images_done),
                    (double)atomic_load(&x->images_done) / (rb_now() - l->t0));
        }
    }
    infer_chunk_free(c);
}

int infer_work_loop(infer_ctx *x, infer_run_stats *st, rb_error *err)
{
    int rank = x->w.rank;
    if (rb_work_create(&x->wc, 0, err) < 0)
        return -1;
    work_loop loop = {
        .x = x,
        .ok = 1,
        .t0 = rb_now(),
        .kill_after = test_hook_int(HOOK_KILL_AFTER_CHUNKS),
        .term_after = test_hook_int(HOOK_TERM_AFTER_CHUNKS),
        .hook_rank = test_hook_int(HOOK_KILL_RANK) < 0 || test_hook_int(HOOK_KILL_RANK) == rank,
    };
    work_loop *l = &loop; /* the pool's threads point into it until pool_stop */
    l->t_print = l->t0;
    if (test_hook_str(HOOK_WAIT_LISTING)) { /* start work once the listing is complete */
        int64_t n;
        while (infer_listing_read(x->set.work, &n, NULL, NULL, NULL) != 1)
            usleep(2000);
    }
    l->ok = pool_start(&l->pool, x, err) == 0;
    if (!l->ok)
        rb_work_stop(x->wc);
    l->taking = l->ok;
    for (;;) {
        int take;
        chunk_job *c = next_event(l, &take);
        if (!c && !take)
            break; /* nothing in flight and nothing more to take */
        if (take)
            take_chunk(l, err);
        else
            commit_chunk(l, c, err);
    }
    if (l->pool.nthreads)
        pool_stop(&l->pool);
    int ok = l->ok;
    if (rank == 0) {
        if (l->stopped || !ok)
            atomic_store(&x->lister.stop, 1);
        infer_list_join(&x->lister);
    }
    /* the run's time is the slowest rank's: a rank that found no chunk left (199 images in
     * one chunk on 2 ranks) ends its loop at once while another still predicts */
    int64_t flags[4] = {l->stopped, ok ? 0 : 1, l->resumed, (int64_t)((rb_now() - l->t0) * 1e6)};
    rb_mpi_max_i64(flags, 4);
    st->seconds = (double)flags[3] / 1e6;
    st->resumed = (int)flags[2];
    st->images = atomic_load(&x->images_done);
    rb_mpi_sum_i64(&st->images, 1);
    int64_t r64 = (int64_t)(peak_rss_mb() * 1024);
    rb_mpi_max_i64(&r64, 1);
    st->peak_rss_mb = (double)r64 / 1024.0;
    rb_work_free(&x->wc);
    if (flags[1])
        return job_failed_where(ok);
    if (flags[0]) {
        if (rank == 0)
            rb_info("SIGTERM: stopped after the current chunks (%lld images this run); rerun the same command to finish",
                    (long long)st->images);
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
    return 0;
}
