/* Training batches: one global shuffle per epoch from (seed, epoch); global batch b is
 * positions [b*B, min((b+1)*B, N)) of that order; rank r takes the contiguous slice
 * [gn*r/P, gn*(r+1)/P) of it (gn = records in the batch), so the union over ranks is the
 * same whatever P is. A background thread reads and augments the next batches while the
 * current one computes (double buffering). Augmentation randomness is keyed by (seed,
 * epoch, epoch position), never by rank. */
#ifndef TRAIN_DATA_H
#define TRAIN_DATA_H

#include "augment.h"
#include "rb_error.h"
#include "shard_dataset.h"

#include <pthread.h>
#include <stdint.h>

/* The epoch order: perm[0..n) of record indices. */
void train_epoch_order(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch, int shuffle);

typedef struct train_batch {
    uint8_t *images;     /* [n, H, W, C] this rank's rows */
    int32_t *labels;     /* [n] */
    int n;               /* this rank's rows (may be 0 for a tiny last batch) */
    int global_n;        /* rows of the global batch */
    int64_t index;       /* batch number in the epoch */
    int64_t sample_base; /* epoch position of this rank's first row */
    const float *features; /* feature-cached stage: [n, dim] base outputs instead of images */
    int ready;
} train_batch;

typedef struct train_loader {
    shard_dataset *ds;
    const int64_t *perm;
    int64_t n, first_batch, nbatches;
    int global_batch, rank, nranks;
    augment_config aug;
    int augment;
    uint64_t seed;
    int64_t epoch;
    train_batch slot[2];
    int64_t next_take; /* batch the consumer takes next */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, failed, running;
    rb_error err;
    uint8_t *raw;      /* decode buffer before augmentation */
} train_loader;

/* Start producing batches first_batch..nbatches-1 of this epoch. */
int train_loader_start(train_loader *l, shard_dataset *ds, const int64_t *perm, int64_t first_batch,
                       int global_batch, int rank, int nranks, const augment_config *aug, uint64_t seed,
                       int64_t epoch, rb_error *err);
/* The next batch (blocks until ready); NULL when the epoch is done or reading failed
 * (then l->failed and err are set). Call train_loader_release when done with it. */
train_batch *train_loader_next(train_loader *l, rb_error *err);
void train_loader_release(train_loader *l, train_batch *b);
/* Stop the thread and free the buffers (safe at any point). */
void train_loader_stop(train_loader *l);

/* Batches in an epoch of n records with global batch B. */
static inline int64_t train_batches(int64_t n, int B) { return (n + B - 1) / B; }
/* This rank's rows of global batch b: [*lo, *hi) in epoch positions. */
void train_batch_slice(int64_t n, int B, int64_t b, int rank, int nranks, int64_t *lo, int64_t *hi,
                       int *global_n);

#endif
