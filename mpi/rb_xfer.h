/* Non-blocking point-to-point transfers of records between ranks (radbatch convert: a rank
 * that decodes records of a shard another rank writes sends them there).
 *
 * A transfer set owns a list of pending MPI requests. Sends may hand over their buffer, which
 * is freed once MPI is done with it; rb_xfer_test() frees what has completed and keeps
 * transfers moving while the caller computes; rb_xfer_wait() blocks until all are done.
 * Counts are in records of `rec_bytes` bytes each (a contiguous MPI datatype), so a message
 * may hold more than 2 GiB. Messages between two ranks with the same tag arrive in the order
 * they were sent (MPI's non-overtaking rule), which is how receivers match them. */
#ifndef RB_XFER_H
#define RB_XFER_H

#include "rb_error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct rb_xfer rb_xfer;

rb_xfer *rb_xfer_new(void);
void rb_xfer_free(rb_xfer *x); /* waits for pending transfers first */

/* Send count records of rec_bytes from buf to rank dest. With give = 1 the set frees buf
 * (malloc'd) when the send has completed. */
int rb_xfer_send(rb_xfer *x, int dest, int tag, void *buf, int64_t count, size_t rec_bytes, int give,
                 rb_error *err);
/* Receive up to count records of rec_bytes from rank src into buf. */
int rb_xfer_recv(rb_xfer *x, int src, int tag, void *buf, int64_t count, size_t rec_bytes, rb_error *err);
/* Progress: frees the buffers of completed sends; returns the number still pending. */
int rb_xfer_test(rb_xfer *x);
/* Block until every pending transfer has completed. */
void rb_xfer_wait(rb_xfer *x);

#endif
