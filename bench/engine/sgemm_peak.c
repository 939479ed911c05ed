/* OpenBLAS sgemm peak of this machine: C = A*B with M = N = K = 2048 (row-major, no
 * transpose), at 1 and at 2 threads (or the thread counts given as arguments).
 * Prints one line per thread count and a JSON line at the end.
 *
 *   cc -O2 sgemm_peak.c -o sgemm_peak $(pkg-config --cflags --libs openblas)
 *   ./sgemm_peak [threads ...]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

void openblas_set_num_threads(int num_threads);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    enum { N = 2048, REPS = 9 };
    int threads[16], nt = 0;
    for (int i = 1; i < argc && nt < 16; i++)
        threads[nt++] = atoi(argv[i]);
    if (nt == 0) {
        threads[0] = 1;
        threads[1] = 2;
        nt = 2;
    }
    float *a = malloc(sizeof(float) * N * N), *b = malloc(sizeof(float) * N * N),
          *c = malloc(sizeof(float) * N * N);
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_peak: out of memory\n");
        return 1;
    }
    for (long i = 0; i < (long)N * N; i++) {
        a[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
        b[i] = (float)((i * 5) % 11) / 11.0f - 0.5f;
        c[i] = 0.0f;
    }
    const double flop = 2.0 * N * N * N;
    double best[16], median[16];
    for (int t = 0; t < nt; t++) {
        openblas_set_num_threads(threads[t]);
        double g[REPS];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
        for (int r = 0; r < REPS; r++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, N, N, 1.0f, a, N, b, N, 0.0f, c, N);
            g[r] = flop / (now() - t0) / 1e9;
        }
        qsort(g, REPS, sizeof g[0], cmp_double);
        best[t] = g[REPS - 1];
        median[t] = g[REPS / 2];
        printf("sgemm %dx%dx%d, %d thread%s: best %.1f GFLOP/s, median %.1f GFLOP/s\n", N, N, N,
               threads[t], threads[t] == 1 ? "" : "s", best[t], median[t]);
    }
    printf("{");
    for (int t = 0; t < nt; t++)
        printf("%s\"%d\": {\"best\": %.2f, \"median\": %.2f}", t ? ", " : "", threads[t], best[t], median[t]);
    printf("}\n");
    free(a);
    free(b);
    free(c);
    return 0;
}
