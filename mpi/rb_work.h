/* Dynamic work distribution for bulk jobs (radbatch infer): items 0, 1, 2, ... are handed
 * out one at a time, in order, to whichever rank asks first, so a fast rank takes more and
 * a slow rank or a slow folder never holds the job.
 *
 * The counter is one int64 in an MPI window on rank 0, incremented with MPI_Fetch_and_op
 * (passive-target one-sided, under MPI_Win_lock_all for the counter's whole life): taking
 * an item is one atomic operation that needs nothing from rank 0's main thread, which can
 * be busy computing. On one node Open MPI does it in shared memory (osc/sm); across nodes
 * with UCX/InfiniBand it is a network atomic. (Transports that emulate atomics in software
 * progress them whenever the target enters MPI; rank 0 does so at every item it takes, and
 * its waiting main thread calls rb_work_poke every 20 ms.)
 *
 * Stopping: any rank may ask every rank to stop (SIGTERM); the request adds a large flag
 * to the counter, so every later take returns RB_WORK_STOP and nothing is handed out twice
 * or lost: items taken before the request are finished by their ranks. */
#ifndef RB_WORK_H
#define RB_WORK_H

#include "rb_error.h"

#include <stdint.h>

#define RB_WORK_STOP (-1)

typedef struct rb_work_counter rb_work_counter;

/* Collective: a counter whose first item is `first`. */
int rb_work_create(rb_work_counter **c, int64_t first, rb_error *err);
/* The next item number (>= 0), or RB_WORK_STOP after some rank called rb_work_stop. */
int64_t rb_work_take(rb_work_counter *c);
/* Let MPI make progress (for transports that emulate the atomics in software and need the
 * target to enter MPI): call it now and then while waiting for local work. Cheap. */
void rb_work_poke(rb_work_counter *c);
/* Ask every rank to stop taking items (non-collective, any rank, any time). */
void rb_work_stop(rb_work_counter *c);
/* 1 once some rank called rb_work_stop (non-collective, one atomic read): a rank waiting for
 * an item to become ready polls it, so it learns that another rank failed or stopped. */
int rb_work_stopped(rb_work_counter *c);
/* Collective. */
void rb_work_free(rb_work_counter **c);

#endif
