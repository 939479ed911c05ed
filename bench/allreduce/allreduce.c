/* Allreduce (SUM, float32, MPI_IN_PLACE, MPI_COMM_WORLD) of gradient-sized buffers, the one
 * call radbatch train makes per step. Usage: allreduce REPS FLOATS... ; rank 0 prints one
 * line per size: "floats bytes ranks median_ms best_ms hosts". Each size: 2 warm-up calls,
 * then REPS timed calls, each started after a barrier. bench/allreduce/run.sh drives it. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 3) {
        if (rank == 0)
            fprintf(stderr, "usage: allreduce REPS FLOATS...\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int reps = atoi(argv[1]);
    char host[64] = {0}, *hosts = malloc((size_t)size * 64);
    gethostname(host, sizeof host - 1);
    MPI_Gather(host, 64, MPI_CHAR, hosts, 64, MPI_CHAR, 0, MPI_COMM_WORLD);
    double *t = malloc((size_t)reps * sizeof *t);
    for (int a = 2; a < argc; a++) {
        long n = atol(argv[a]);
        float *buf = malloc((size_t)n * sizeof *buf);
        for (long i = 0; i < n; i++)
            buf[i] = (float)((i + rank) % 7) * 1e-3f;
        for (int r = -2; r < reps; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double dt = MPI_Wtime() - t0, worst;
            MPI_Reduce(&dt, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
            if (r >= 0)
                t[r] = worst; /* the slowest rank's time: what a training step waits for */
        }
        if (rank == 0) {
            qsort(t, (size_t)reps, sizeof *t, cmp_double);
            printf("%ld %ld %d %.3f %.3f", n, n * 4, size, 1e3 * t[reps / 2], 1e3 * t[0]);
            for (int r = 0; r < size; r++)
                printf("%s%s", r ? "," : " ", hosts + 64 * r);
            printf("\n");
            fflush(stdout);
        }
        free(buf);
    }
    free(t);
    free(hosts);
    MPI_Finalize();
    return 0;
}
