#include "rb_mpi.h"
#include "rb_log.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether every rank of this launch runs on this node, judged from what the launcher put
 * in the environment before MPI_Init: mpirun's OMPI_COMM_WORLD_{SIZE,LOCAL_SIZE}, srun's
 * SLURM_STEP_NUM_NODES, or no launcher at all (a singleton). Unknown launchers: no. */
static int launch_is_single_node(void)
{
    const char *size = getenv("OMPI_COMM_WORLD_SIZE"), *local = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (size && local)
        return strcmp(size, local) == 0;
    const char *nodes = getenv("SLURM_STEP_NUM_NODES");
    if (nodes)
        return strcmp(nodes, "1") == 0;
    return !getenv("PMIX_RANK") && !getenv("PMI_RANK") && !getenv("OMPI_COMM_WORLD_RANK");
}

/* Open MPI's default point-to-point layer on this kind of machine is UCX, whose start-up
 * probes every network transport: 0.2 s of MPI_Init per command here, a fifth of a whole
 * convert of 5,216 images. Ranks that all share one node need nothing but shared memory,
 * which the ob1 layer (with its shared-memory and self transports) gives at once. So a
 * single-node launch asks for ob1, unless the user chose a layer (OMPI_MCA_pml).
 *
 * Multi-node launches keep Open MPI's choice of point-to-point layer and network (over
 * Ethernet: ob1 and its TCP transport on every interface that reaches the other nodes), but
 * infer's work counter is a one-sided window (rb_work.c), and Debian's Open MPI 4.1 excludes
 * the one component that does one-sided over any network (/etc/openmpi/openmpi-mca-params.conf:
 * "osc = ^ucx,pt2pt"): osc/sm is one node only and osc/rdma needs an RDMA transport, so
 * across TCP nodes MPI_Win_allocate fails. A multi-node launch therefore allows pt2pt
 * (OMPI_MCA_osc=^ucx: every component but UCX's, as that file), unless the user set
 * OMPI_MCA_osc. RADBATCH_MPI_DEFAULTS=1 leaves both choices to Open MPI. */
static void choose_transport(void)
{
    const char *keep = getenv("RADBATCH_MPI_DEFAULTS");
    if (keep && *keep && strcmp(keep, "0"))
        return;
    if (launch_is_single_node())
        setenv("OMPI_MCA_pml", "ob1", 0);
    else
        setenv("OMPI_MCA_osc", "^ucx", 0);
}

/* A duplicate of MPI_COMM_WORLD for the end-of-command error report only. */
static MPI_Comm g_report = MPI_COMM_NULL;

/* Every rank's host name (gethostname), in rank order, gathered once at start-up. */
#define RB_HOST_MAX 64
static char (*g_hosts)[RB_HOST_MAX];
static int g_nhosts;

static void gather_hosts(int size)
{
    char mine[RB_HOST_MAX] = {0};
    if (gethostname(mine, sizeof mine - 1) != 0)
        strcpy(mine, "?");
    free(g_hosts);
    g_nhosts = 0;
    g_hosts = calloc((size_t)size, sizeof *g_hosts);
    char(*recv)[RB_HOST_MAX] = g_hosts ? g_hosts : malloc((size_t)size * sizeof *recv);
    MPI_Allgather(mine, RB_HOST_MAX, MPI_CHAR, recv, RB_HOST_MAX, MPI_CHAR, MPI_COMM_WORLD);
    if (g_hosts)
        g_nhosts = size;
    else
        free(recv); /* no memory: the names are left out of the reports, the job goes on */
}

int rb_mpi_host_count(void) { return g_nhosts; }
const char *rb_mpi_host(int rank) { return rank >= 0 && rank < g_nhosts ? g_hosts[rank] : NULL; }

int rb_mpi_init(int *argc, char ***argv, rb_world *w)
{
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided;
        choose_transport();
        MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &w->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &w->size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &w->local_rank);
    MPI_Comm_size(node, &w->local_size);
    MPI_Comm_free(&node);
    w->threads = rb_threads_per_rank(w);
    gather_hosts(w->size);
    if (g_report == MPI_COMM_NULL)
        MPI_Comm_dup(MPI_COMM_WORLD, &g_report);
    rb_log_set_rank(w->rank, w->size);
    return 0;
}

void rb_mpi_finalize(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin)
        return;
    if (g_report != MPI_COMM_NULL)
        MPI_Comm_free(&g_report);
    MPI_Finalize();
}

void rb_mpi_gather_errors(const rb_error *mine, double timeout, void (*late)(const rb_error *e),
                          rb_error **all)
{
    int rank, size;
    MPI_Comm_rank(g_report, &rank);
    MPI_Comm_size(g_report, &size);
    rb_error none;
    rb_error_clear(&none);
    const rb_error *send = mine ? mine : &none;
    rb_error *recv = NULL;
    if (rank == 0 && !(recv = calloc((size_t)size, sizeof *recv))) {
        /* no room to collect (a few KiB per rank): say what this rank knows and end the job */
        if (send->msg[0] && late)
            late(send);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Request req;
    MPI_Igather(send, (int)sizeof *send, MPI_BYTE, recv, (int)sizeof *send, MPI_BYTE, 0, g_report, &req);
    int done = 0;
    if (send->msg[0]) {
        double t0 = MPI_Wtime();
        while (!done && MPI_Wtime() - t0 < timeout) {
            MPI_Test(&req, &done, MPI_STATUS_IGNORE);
            if (!done)
                usleep(1000);
        }
        if (!done && late)
            late(send);
    }
    if (!done)
        MPI_Wait(&req, MPI_STATUS_IGNORE);
    *all = recv;
}

void rb_mpi_abort(int code)
{
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code); /* not reached */
}

void rb_mpi_barrier(void) { MPI_Barrier(MPI_COMM_WORLD); }

int rb_mpi_agree_ok(int ok)
{
    int mine = ok ? 1 : 0, all = 0;
    MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return all;
}

void rb_mpi_sum_i64(int64_t *v, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
}
void rb_mpi_max_i64(int64_t *v, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
}
void rb_mpi_sum_f64(double *v, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}
void rb_mpi_sum_f32(float *v, int64_t n)
{
    /* MPI counts are int: send huge buffers in pieces */
    const int64_t step = 1 << 30;
    for (int64_t off = 0; off < n; off += step) {
        int cnt = (int)(n - off < step ? n - off : step);
        MPI_Allreduce(MPI_IN_PLACE, v + off, cnt, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

void rb_mpi_bcast_f64(double *v, int n) { MPI_Bcast(v, n, MPI_DOUBLE, 0, MPI_COMM_WORLD); }

int rb_mpi_bcast_bytes(void **buf, size_t *len, rb_error *err)
{
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    uint64_t n = rank == 0 ? (uint64_t)*len : 0;
    MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    if (n > (uint64_t)1 << 31)
        return rb_fail(err, NULL, "broadcast of %llu bytes is too large", (unsigned long long)n);
    if (rank != 0) {
        *buf = malloc(n ? n : 1);
        if (!*buf)
            return rb_fail(err, NULL, "out of memory receiving %llu bytes", (unsigned long long)n);
        *len = n;
    }
    MPI_Bcast(*buf, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
    return 0;
}

static int gather_common(const void *mine, size_t len, void **out, size_t *outlen, int all,
                         rb_error *err)
{
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (len > (size_t)1 << 30)
        return rb_fail(err, NULL, "gather of %zu bytes from one rank is too large", len);
    int n = (int)len;
    int *counts = calloc((size_t)size, sizeof(int)), *displs = calloc((size_t)size, sizeof(int));
    if (!counts || !displs) {
        free(counts);
        free(displs);
        return rb_fail(err, NULL, "out of memory");
    }
    if (all)
        MPI_Allgather(&n, 1, MPI_INT, counts, 1, MPI_INT, MPI_COMM_WORLD);
    else
        MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD);
    int64_t total = 0;
    for (int r = 0; r < size; r++) {
        displs[r] = (int)total;
        total += counts[r];
    }
    int ok = total < ((int64_t)1 << 31);
    *out = NULL;
    *outlen = 0;
    if ((all || rank == 0) && ok) {
        *out = malloc(total ? (size_t)total : 1);
        ok = *out != NULL;
        *outlen = (size_t)total;
    }
    /* every rank must take part in the collective, so decide together */
    if (!rb_mpi_agree_ok(ok)) {
        free(*out);
        *out = NULL;
        free(counts);
        free(displs);
        return rb_fail(err, NULL, "gather of %lld bytes failed (too large or out of memory)", (long long)total);
    }
    if (all)
        MPI_Allgatherv(mine, n, MPI_BYTE, *out, counts, displs, MPI_BYTE, MPI_COMM_WORLD);
    else
        MPI_Gatherv(mine, n, MPI_BYTE, *out, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD);
    free(counts);
    free(displs);
    return 0;
}

int rb_mpi_gather_bytes(const void *mine, size_t len, void **out, size_t *outlen, rb_error *err)
{
    return gather_common(mine, len, out, outlen, 0, err);
}

int rb_mpi_allgather_bytes(const void *mine, size_t len, void **out, size_t *outlen, rb_error *err)
{
    return gather_common(mine, len, out, outlen, 1, err);
}

int rb_threads_per_rank(const rb_world *w)
{
    const char *names[] = {"SLURM_CPUS_PER_TASK", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(names[i]);
        if (v && atoi(v) > 0)
            return atoi(v);
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(cores / (w->local_size > 0 ? w->local_size : 1));
    return t > 0 ? t : 1;
}
