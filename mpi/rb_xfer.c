#include "rb_xfer.h"

#include <mpi.h>
#include <stdlib.h>

typedef struct pending {
    MPI_Request req;
    void *owned; /* freed on completion */
} pending;

struct rb_xfer {
    pending *p;
    int n, cap;
};

rb_xfer *rb_xfer_new(void) { return calloc(1, sizeof(rb_xfer)); }

void rb_xfer_free(rb_xfer *x)
{
    if (!x)
        return;
    rb_xfer_wait(x);
    free(x->p);
    free(x);
}

static pending *push(rb_xfer *x, rb_error *err)
{
    if (x->n == x->cap) {
        int cap = x->cap ? 2 * x->cap : 16;
        pending *p = realloc(x->p, (size_t)cap * sizeof *p);
        if (!p) {
            rb_fail(err, NULL, "out of memory");
            return NULL;
        }
        x->p = p;
        x->cap = cap;
    }
    pending *e = &x->p[x->n++];
    e->req = MPI_REQUEST_NULL;
    e->owned = NULL;
    return e;
}

static int record_type(size_t rec_bytes, int64_t count, MPI_Datatype *t, rb_error *err)
{
    if (rec_bytes == 0 || rec_bytes > (size_t)INT32_MAX || count < 0 || count > INT32_MAX)
        return rb_fail(err, NULL, "internal error: transfer of %lld records of %zu bytes", (long long)count,
                       rec_bytes);
    MPI_Type_contiguous((int)rec_bytes, MPI_BYTE, t);
    MPI_Type_commit(t);
    return 0;
}

/* Post one non-blocking send or receive of count records of rec_bytes. */
static int post(rb_xfer *x, int send, int peer, int tag, void *buf, int64_t count, size_t rec_bytes, void *owned,
                rb_error *err)
{
    MPI_Datatype t;
    pending *e = push(x, err);
    if (!e || record_type(rec_bytes, count, &t, err) < 0) {
        if (e)
            x->n--;
        return -1;
    }
    if (send)
        MPI_Isend(buf, (int)count, t, peer, tag, MPI_COMM_WORLD, &e->req);
    else
        MPI_Irecv(buf, (int)count, t, peer, tag, MPI_COMM_WORLD, &e->req);
    MPI_Type_free(&t); /* released by MPI once the transfer no longer needs it */
    e->owned = owned;
    return 0;
}

int rb_xfer_send(rb_xfer *x, int dest, int tag, void *buf, int64_t count, size_t rec_bytes, int give,
                 rb_error *err)
{
    return post(x, 1, dest, tag, buf, count, rec_bytes, give ? buf : NULL, err);
}

int rb_xfer_recv(rb_xfer *x, int src, int tag, void *buf, int64_t count, size_t rec_bytes, rb_error *err)
{
    return post(x, 0, src, tag, buf, count, rec_bytes, NULL, err);
}

int rb_xfer_test(rb_xfer *x)
{
    int keep = 0;
    for (int i = 0; i < x->n; i++) {
        int done = 0;
        MPI_Test(&x->p[i].req, &done, MPI_STATUS_IGNORE);
        if (done)
            free(x->p[i].owned);
        else
            x->p[keep++] = x->p[i];
    }
    x->n = keep;
    return keep;
}

void rb_xfer_wait(rb_xfer *x)
{
    for (int i = 0; i < x->n; i++) {
        MPI_Wait(&x->p[i].req, MPI_STATUS_IGNORE);
        free(x->p[i].owned);
    }
    x->n = 0;
}
