#include "rb_work.h"

#include <mpi.h>
#include <stdlib.h>

#define STOP_FLAG ((int64_t)1 << 52)

struct rb_work_counter {
    MPI_Win win;
    int64_t *base; /* the counter (rank 0) */
};

int rb_work_create(rb_work_counter **out, int64_t first, rb_error *err)
{
    *out = NULL;
    rb_work_counter *c = calloc(1, sizeof *c);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    int ok = c != NULL, all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all) {
        free(c);
        return rb_fail(err, NULL, "out of memory");
    }
    MPI_Aint size = rank == 0 ? (MPI_Aint)sizeof(int64_t) : 0;
    if (MPI_Win_allocate(size, sizeof(int64_t), MPI_INFO_NULL, MPI_COMM_WORLD, &c->base, &c->win) != MPI_SUCCESS) {
        free(c);
        return rb_fail(err, NULL, "cannot create the MPI window of the work counter");
    }
    if (rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, c->win);
        *c->base = first;
        MPI_Win_unlock(0, c->win);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Win_lock_all(0, c->win);
    *out = c;
    return 0;
}

int64_t rb_work_take(rb_work_counter *c)
{
    int64_t one = 1, got = 0;
    MPI_Fetch_and_op(&one, &got, MPI_INT64_T, 0, 0, MPI_SUM, c->win);
    MPI_Win_flush(0, c->win);
    return got >= STOP_FLAG ? RB_WORK_STOP : got;
}

void rb_work_poke(rb_work_counter *c)
{
    (void)c;
    int flag = 0;
    MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
}

void rb_work_stop(rb_work_counter *c)
{
    int64_t flag = STOP_FLAG, got = 0;
    MPI_Fetch_and_op(&flag, &got, MPI_INT64_T, 0, 0, MPI_SUM, c->win);
    MPI_Win_flush(0, c->win);
}

int rb_work_stopped(rb_work_counter *c)
{
    int64_t none = 0, got = 0;
    MPI_Fetch_and_op(&none, &got, MPI_INT64_T, 0, 0, MPI_NO_OP, c->win);
    MPI_Win_flush(0, c->win);
    return got >= STOP_FLAG;
}

void rb_work_free(rb_work_counter **cp)
{
    rb_work_counter *c = *cp;
    if (!c)
        return;
    MPI_Win_unlock_all(c->win);
    MPI_Win_free(&c->win);
    free(c);
    *cp = NULL;
}
