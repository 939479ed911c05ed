#include "rb_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
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

/* The stderr gate: g_silenced counts the calls inside begin/end; while g_saved_fd >= 0, fd 2
 * points at /dev/null and g_saved_fd is the real stderr (when /dev/null cannot be opened,
 * nothing is silenced). */
static pthread_mutex_t g_stderr_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_silenced = 0, g_saved_fd = -1;

static void write_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* nowhere left to report a failed diagnostic */
        s += w;
        n -= (size_t)w;
    }
}

void rb_log_stderr(const char *text)
{
    pthread_mutex_lock(&g_stderr_lock);
    if (g_saved_fd >= 0) {
        write_all(g_saved_fd, text, strlen(text));
    } else {
        fputs(text, stderr);
        fflush(stderr);
    }
    pthread_mutex_unlock(&g_stderr_lock);
}

void rb_stderr_silence_begin(void)
{
    pthread_mutex_lock(&g_stderr_lock);
    if (g_silenced++ == 0) {
        fflush(stderr);
        int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        int saved = null_fd >= 0 ? fcntl(2, F_DUPFD_CLOEXEC, 3) : -1;
        if (saved >= 0 && dup2(null_fd, 2) >= 0)
            g_saved_fd = saved;
        else if (saved >= 0)
            close(saved);
        if (null_fd >= 0)
            close(null_fd);
    }
    pthread_mutex_unlock(&g_stderr_lock);
}

void rb_stderr_silence_end(void)
{
    pthread_mutex_lock(&g_stderr_lock);
    if (--g_silenced == 0 && g_saved_fd >= 0) {
        fflush(stderr);
        dup2(g_saved_fd, 2);
        close(g_saved_fd);
        g_saved_fd = -1;
    }
    pthread_mutex_unlock(&g_stderr_lock);
}

void rb_warn(const char *fmt, ...)
{
    char line[2048], out[2100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (g_nranks > 1)
        snprintf(out, sizeof out, "warning [rank %d]: %s\n", g_rank, line);
    else
        snprintf(out, sizeof out, "warning: %s\n", line);
    rb_log_stderr(out);
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
