/* The model executor's shared state: the workspace a plan fills once (exec_plan.c), the
 * thread pool that runs a forward or backward as parts (exec_threads.c), the forward
 * (exec_forward.c) and the backward (exec_backward.c). Private to those files; drivers and
 * tests use model.h. */
#ifndef EXEC_INTERNAL_H
#define EXEC_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "model.h"

#define EXEC_MAX_THREADS 64

/* How a node runs after planning */
enum { FUSE_NONE = 0, FUSE_SKIP, FUSE_CONV_BN };

/* What one thread of the pool owns (thread 0 included) */
typedef struct exec_thread {
    float *scratch; /* Conv2D scratch (im2col blocks or Winograd tiles) */
    float *micro;   /* arena of the micro-batched prefix, or NULL without one */
    float *fz;      /* 6*cmax floats: fused BatchNorm coefficients */
    double *bn;     /* 2*cmax+1: this thread's partial BatchNorm sums (T > 1) */
    float *save;    /* 2*cmax: batch mean and invstd seen by threads > 0 */
    float *grads;   /* threads > 0: private weight gradients (training workspaces) */
    int sense;      /* spin barrier */
} exec_thread;

struct rb_workspace {
    const rb_model *m;
    int batch, flags, nn;
    unsigned generation; /* m->generation at planning time */
    size_t bytes;

    /* ---- the plan (exec_plan.c) */
    float **act, **dact;  /* per node: output and output gradient (NULL: none / micro) */
    uint8_t *bw;          /* backward runs through the node */
    uint8_t *fuse;        /* FUSE_* */
    int8_t *fuse_act;     /* FUSE_CONV_BN: activation written with the folded output */
    int *fuse_bn;         /* FUSE_CONV_BN: the BatchNorm folded into it */
    float **fold_w, **fold_b; /* FUSE_CONV_BN: weights and bias with the BN folded in */
    int *src;             /* node whose output is read as input 0 (a skipped padding's input) */
    conv2d_shape *fshape; /* convolution geometry on that input (padding absorbed) */
    int *bnact;           /* training BN whose single ReLU consumer runs inside it, or -1 */
    int K, mb;            /* nodes [0, K) run mb samples at a time (micro-batched prefix) */
    int64_t *moff;        /* offset of a node's output in the micro arena, or -1 */
    size_t micro_floats;
    float *arena;         /* every planned activation and gradient */
    size_t arena_floats;
    int *zstart;          /* before node i's backward zero zptr/zlen[zstart[i]..zstart[i+1]) */
    float **zptr;
    int64_t *zlen;
    int64_t *zrow;        /* floats per sample of each zeroed gradient group */
    int32_t **argmax;     /* MaxPooling2D: winners for backward */
    uint8_t **mask;       /* Dropout masks (training) */
    size_t scratch_floats;
    int cmax;             /* most channels of a BatchNorm */
    optim_range *ranges;  /* trainable runs of m->params */
    int nranges;

    /* ---- state of the last forward */
    float **bn_mean, **bn_invstd; /* training BN: the batch statistics used */
    double *bn_count;             /* samples behind them (all ranks) */
    uint8_t *bn_batch;            /* the BN used batch statistics */
    double *bnbuf;                /* BN sums over the threads (and ranks) */
    float *logits;                /* pre-activation of a softmax/sigmoid output */
    double *prof;                 /* RADBATCH_PROFILE=1: seconds per node, [0,N) fwd, [N,2N) bwd */
    int last_n, last_training, have_forward;

    /* ---- threads (exec_threads.c) */
    int nthreads;
    exec_thread thr[EXEC_MAX_THREADS];
    pthread_t *th;
    struct worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t cv, cv_done;
    atomic_int bcount, bsense;
    unsigned gen;
    int done, quit;
    struct job *job;
};

/* One forward or backward, run as T parts over row ranges of the batch */
typedef struct job {
    rb_model *m;
    rb_workspace *ws;
    const rb_forward_args *a;
    const float *dout;
    int preact;
    int backward;
    int T, n;
} job;

/* ---- exec_threads.c */
void exec_run_job(rb_workspace *ws, job *j);
void exec_pool_stop(rb_workspace *ws);
void exec_barrier(rb_workspace *ws, int T, int t);
/* rows [r0, r1) of a batch of n split into T parts: part t */
static inline void exec_part_rows(int n, int T, int t, int *r0, int *r1)
{
    *r0 = (int)((int64_t)n * t / T);
    *r1 = (int)((int64_t)n * (t + 1) / T);
}

/* ---- exec_workspace.c: per-thread buffers (thread 0's at planning, the others' on demand) */
int exec_thread_alloc(rb_workspace *ws, int t);
void exec_thread_free(rb_workspace *ws, int t);

/* ---- exec_forward.c / exec_backward.c: part t of a job */
void exec_forward_part(job *j, int t);
void exec_backward_part(job *j, int t);
/* BatchNorm mean and invstd per channel from batch sums (sum, count) or, with sum NULL,
 * from the moving statistics mm, mv */
void exec_bn_coeffs(const rb_node *nd, const double *sum, double count, const float *mm,
                    const float *mv, float *mean, float *invstd);

/* ---- BatchNorm sums over the threads: each thread's partial, then thread 0 adds them up
 * in ws->bnbuf (T == 1: the partial is bnbuf itself), in thread order */
static inline double *exec_bn_partial(rb_workspace *ws, int t, int T)
{
    return T > 1 ? ws->thr[t].bn : ws->bnbuf;
}
static inline void exec_bn_sum_threads(rb_workspace *ws, int T, int len)
{
    double *sum = ws->bnbuf;
    for (int u = 1; u < T; u++)
        for (int k = 0; k < len; k++)
            sum[k] = (u == 1 ? ws->thr[0].bn[k] : sum[k]) + ws->thr[u].bn[k];
}

/* ---- small shared helpers */
static inline void exec_axpy1(float *restrict y, const float *restrict x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

static inline int64_t exec_align16(int64_t x)
{
    return (x + 15) / 16 * 16;
}

/* thread CPU time: layer costs stay meaningful on a machine shared with other jobs */
static inline double exec_prof_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* BatchNorm uses batch statistics in this forward */
static inline int exec_bn_uses_batch(const rb_model *m, const rb_node *n, int training)
{
    return training && n->trainable && !(n->in_base && !m->base_training);
}

#endif
