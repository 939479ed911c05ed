/* The model executor's thread pool.
 *
 * With T threads (rb_workspace_set_threads) a forward or backward runs as T parts over
 * row ranges of the batch (sample-parallel): every layer is computed by all threads on
 * their own samples with single-threaded BLAS, so loop kernels (depthwise, BN, pooling)
 * use every core and nothing waits per layer. Batch-coupled steps synchronize: training
 * BatchNorm sums its statistics over the threads (two barriers per layer), and weight
 * gradients of threads > 0 go to private buffers added to m->grads at the end. */
#include <cblas.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "exec_internal.h"

typedef struct worker {
    rb_workspace *ws;
    int t;
} worker;

static void run_part(job *j, int t)
{
    if (j->backward)
        exec_backward_part(j, t);
    else
        exec_forward_part(j, t);
}

/* sense-reversing spin barrier: the threads run on their own cores and reach each layer
 * within microseconds of each other */
void exec_barrier(rb_workspace *ws, int T, int t)
{
    if (T <= 1)
        return;
    int s = !ws->thr[t].sense;
    ws->thr[t].sense = s;
    if (atomic_fetch_add(&ws->bcount, 1) == T - 1) {
        atomic_store(&ws->bcount, 0);
        atomic_store(&ws->bsense, s);
    } else {
        int spins = 0;
        while (atomic_load_explicit(&ws->bsense, memory_order_acquire) != s) {
            if (++spins > 2000)
                sched_yield();
            else
                __builtin_ia32_pause();
        }
    }
}

static void *worker_main(void *p)
{
    worker *w = p;
    rb_workspace *ws = w->ws;
    unsigned seen = 0;
    for (;;) {
        pthread_mutex_lock(&ws->mu);
        while (ws->gen == seen && !ws->quit)
            pthread_cond_wait(&ws->cv, &ws->mu);
        if (ws->quit) {
            pthread_mutex_unlock(&ws->mu);
            return NULL;
        }
        seen = ws->gen;
        job *j = ws->job;
        pthread_mutex_unlock(&ws->mu);
        if (w->t < j->T)
            run_part(j, w->t);
        pthread_mutex_lock(&ws->mu);
        ws->done++;
        pthread_cond_broadcast(&ws->cv_done);
        pthread_mutex_unlock(&ws->mu);
    }
}

void exec_pool_stop(rb_workspace *ws)
{
    if (ws->nthreads <= 1)
        return;
    pthread_mutex_lock(&ws->mu);
    ws->quit = 1;
    pthread_cond_broadcast(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    for (int t = 1; t < ws->nthreads; t++)
        pthread_join(ws->th[t], NULL);
    pthread_mutex_destroy(&ws->mu);
    pthread_cond_destroy(&ws->cv);
    pthread_cond_destroy(&ws->cv_done);
    for (int t = 1; t < ws->nthreads; t++)
        exec_thread_free(ws, t);
    free(ws->th);
    free(ws->workers);
    ws->th = NULL;
    ws->workers = NULL;
    ws->nthreads = 1;
    ws->quit = 0;
}

int rb_workspace_set_threads(rb_workspace *ws, int threads, rb_error *err)
{
    if (threads < 1)
        threads = 1;
    if (threads > EXEC_MAX_THREADS)
        threads = EXEC_MAX_THREADS;
    if (threads == ws->nthreads)
        return 0;
    exec_pool_stop(ws);
    if (threads == 1)
        return 0;
    const int T = threads;
    ws->th = calloc((size_t)T, sizeof(pthread_t));
    ws->workers = calloc((size_t)T, sizeof(worker));
    if (!ws->th || !ws->workers)
        goto oom;
    for (int t = 1; t < T; t++)
        if (exec_thread_alloc(ws, t)) {
            for (int u = 1; u <= t; u++)
                exec_thread_free(ws, u);
            goto oom;
        }
    pthread_mutex_init(&ws->mu, NULL);
    pthread_cond_init(&ws->cv, NULL);
    pthread_cond_init(&ws->cv_done, NULL);
    ws->nthreads = T;
    for (int t = 1; t < T; t++) {
        ws->workers[t].ws = ws;
        ws->workers[t].t = t;
        if (pthread_create(&ws->th[t], NULL, worker_main, &ws->workers[t]) != 0) {
            for (int u = t; u < T; u++)
                exec_thread_free(ws, u);
            ws->nthreads = t; /* stop the ones started */
            exec_pool_stop(ws);
            return rb_fail(err, "run with fewer threads", "cannot start model thread %d", t);
        }
    }
    return 0;
oom:
    free(ws->th);
    free(ws->workers);
    ws->th = NULL;
    ws->workers = NULL;
    ws->nthreads = 1;
    return rb_fail(err, NULL, "out of memory for %d model threads", threads);
}

void exec_run_job(rb_workspace *ws, job *j)
{
    int T = ws->nthreads < j->n ? ws->nthreads : j->n;
    j->T = T;
    /* BLAS is single-threaded inside the engine, also on one thread: OpenBLAS' own threads
     * split a product at places that depend on their count, and a row rounds differently
     * at another place (layers.h, "Per-image results") */
    int blas = openblas_get_num_threads();
    openblas_set_num_threads(1);
    if (T <= 1) {
        run_part(j, 0);
        openblas_set_num_threads(blas);
        return;
    }
    atomic_store(&ws->bcount, 0);
    atomic_store(&ws->bsense, 0);
    for (int t = 0; t < T; t++)
        ws->thr[t].sense = 0;
    pthread_mutex_lock(&ws->mu);
    ws->job = j;
    ws->done = 0;
    ws->gen++;
    pthread_cond_broadcast(&ws->cv);
    pthread_mutex_unlock(&ws->mu);
    run_part(j, 0);
    pthread_mutex_lock(&ws->mu);
    while (ws->done < ws->nthreads - 1)
        pthread_cond_wait(&ws->cv_done, &ws->mu);
    pthread_mutex_unlock(&ws->mu);
    openblas_set_num_threads(blas);
}
