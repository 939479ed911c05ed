/* Everything radbatch asks of MPI, in one place. The rest of the code sees ranks, byte
 * buffers and reductions, never mpi.h (only mpi/ and jobs/ include it).
 *
 * Errors: MPI's default handler (MPI_ERRORS_ARE_FATAL) stays in force, so an MPI failure or
 * a rank that dies ends the whole job with a non-zero exit instead of a hang. A rank that
 * hits an ordinary error (bad file, bad config) calls rb_mpi_agree_ok() at the next
 * collective point so every rank stops together with the message printed once. */
#ifndef RB_MPI_H
#define RB_MPI_H

#include "rb_error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct rb_world {
    int rank, size;             /* in MPI_COMM_WORLD */
    int local_rank, local_size; /* on this node */
    int threads;                /* compute threads for this rank */
} rb_world;

int rb_mpi_init(int *argc, char ***argv, rb_world *w);
void rb_mpi_finalize(void);
/* End every rank now with this exit code (MPI_Abort). */
void rb_mpi_abort(int code) __attribute__((noreturn));
void rb_mpi_barrier(void);

/* Collective: returns 1 when `ok` is true on every rank. A rank whose ok is 0 should have
 * printed its error; the others learn they must stop. */
int rb_mpi_agree_ok(int ok);

/* Collective, once at the end of a command: every rank's error (NULL or an empty msg:
 * nothing to report) goes to rank 0, over a communicator of its own so that it can never
 * pair with a command's collectives. Rank 0 gets a malloc'd array of `size` errors in *all
 * (msg[0] == 0 for ranks without one); other ranks get NULL. A rank with an error that is
 * not collected within `timeout` seconds (another rank is stuck elsewhere) hands it to
 * late(), so that it is never lost, and keeps waiting. */
void rb_mpi_gather_errors(const rb_error *mine, double timeout, void (*late)(const rb_error *e),
                          rb_error **all);

/* Collective sums/max over all ranks, in place. */
void rb_mpi_sum_i64(int64_t *v, int n);
void rb_mpi_max_i64(int64_t *v, int n);
void rb_mpi_sum_f64(double *v, int n);
void rb_mpi_sum_f32(float *v, int64_t n);

/* Broadcast doubles from rank 0. */
void rb_mpi_bcast_f64(double *v, int n);

/* Broadcast a byte buffer from rank 0. On other ranks *buf is replaced by a malloc'd copy
 * (any previous pointer there is ignored). */
int rb_mpi_bcast_bytes(void **buf, size_t *len, rb_error *err);
/* Gather every rank's bytes at rank 0, concatenated in rank order into *out (malloc'd,
 * rank 0 only; NULL elsewhere). */
int rb_mpi_gather_bytes(const void *mine, size_t len, void **out, size_t *outlen, rb_error *err);
/* Every rank gets every rank's bytes concatenated in rank order. */
int rb_mpi_allgather_bytes(const void *mine, size_t len, void **out, size_t *outlen, rb_error *err);

/* The host name (gethostname) of each rank, gathered by rb_mpi_init: count 0 before it
 * (or without memory for them); NULL for a rank out of range. summary.json lists them. */
int rb_mpi_host_count(void);
const char *rb_mpi_host(int rank);

/* Threads for BLAS/compute: SLURM_CPUS_PER_TASK, else OMP/OPENBLAS_NUM_THREADS if set,
 * else online cores / ranks on this node (at least 1). */
int rb_threads_per_rank(const rb_world *w);

#endif
