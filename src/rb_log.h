/* Logging: informational lines from rank 0 only, warnings from any rank (prefixed with the
 * rank when there are several), and a progress line with rate and ETA. */
#ifndef RB_LOG_H
#define RB_LOG_H

#include <stdint.h>

void rb_log_set_rank(int rank, int nranks);
int rb_log_rank(void);
void rb_log_set_quiet(int quiet);

/* rank 0 only, stdout */
void rb_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* any rank, stderr, "warning: " prefix */
void rb_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

double rb_now(void); /* monotonic seconds */

typedef struct rb_progress {
    const char *label;
    int64_t total;
    double t_start, t_last;
    int printed;
} rb_progress;

void rb_progress_start(rb_progress *p, const char *label, int64_t total);
/* Prints "label: done/total (pct%) rate/s ETA mm:ss" at most once a second (rank 0). */
void rb_progress_update(rb_progress *p, int64_t done);
void rb_progress_finish(rb_progress *p, int64_t done);

#endif
