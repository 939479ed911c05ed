#include "rb_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int g_rank = 0, g_nranks = 1, g_quiet = 0;

void rb_log_set_rank(int rank, int nranks)
{
    g_rank = rank;
    g_nranks = nranks;
}
int rb_log_rank(void) { return g_rank; }
void rb_log_set_quiet(int quiet) { g_quiet = quiet; }

void rb_info(const char *fmt, ...)
{
    if (g_rank != 0 || g_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

void rb_warn(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (g_nranks > 1)
        fprintf(stderr, "warning [rank %d]: %s\n", g_rank, line);
    else
        fprintf(stderr, "warning: %s\n", line);
    fflush(stderr);
}

double rb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rb_progress_start(rb_progress *p, const char *label, int64_t total)
{
    p->label = label;
    p->total = total;
    p->t_start = p->t_last = rb_now();
    p->printed = 0;
}

static void progress_print(rb_progress *p, int64_t done, int final)
{
    double el = rb_now() - p->t_start;
    double rate = el > 0 ? (double)done / el : 0.0;
    double eta = (rate > 0 && p->total > done) ? (double)(p->total - done) / rate : 0.0;
    double pct = p->total > 0 ? 100.0 * (double)done / (double)p->total : 100.0;
    int tty = isatty(1);
    fprintf(stdout, "%s%s: %lld/%lld (%.0f%%) %.1f/s %s %02d:%02d%s", tty ? "\r" : "", p->label,
            (long long)done, (long long)p->total, pct, rate, final ? "took" : "ETA",
            (int)((final ? el : eta) / 60), (int)(final ? el : eta) % 60,
            (tty && !final) ? "" : "\n");
    fflush(stdout);
}

void rb_progress_update(rb_progress *p, int64_t done)
{
    if (g_rank != 0 || g_quiet)
        return;
    double now = rb_now();
    /* at most once a second on a terminal, every 10 s in a log file */
    double every = isatty(1) ? 1.0 : 10.0;
    if (now - p->t_last < every)
        return;
    p->t_last = now;
    p->printed = 1;
    progress_print(p, done, 0);
}

void rb_progress_finish(rb_progress *p, int64_t done)
{
    if (g_rank != 0 || g_quiet)
        return;
    progress_print(p, done, 1);
}
