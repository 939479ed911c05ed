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

/* radbatch's own stderr lines (warnings, errors), whole lines at a time; they reach the real
 * stderr also while another thread silences it. */
void rb_log_stderr(const char *text);
/* Silence file descriptor 2 for a call into a library that prints there on its own (GDCM's
 * JPEG codec: libjpeg's "Unsupported JPEG data precision 12" each time GDCM tries 8-bit
 * samples on a 12-bit stream before the right codec). Nested and concurrent calls from
 * several threads are counted; the last end restores fd 2. */
void rb_stderr_silence_begin(void);
void rb_stderr_silence_end(void);

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
