/* Tiny test harness: CHECK(cond, fmt, ...) records a failure and goes on; TEST_DONE()
 * prints the summary and returns the exit code. */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <stdio.h>

extern int t_failures, t_checks;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        t_checks++;                                                                       \
        if (!(cond)) {                                                                    \
            t_failures++;                                                                 \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

#define TEST_DONE()                                                                       \
    (printf("%d checks, %d failures\n", t_checks, t_failures), t_failures ? 1 : 0)

/* A fresh scratch directory for this test under $RADBATCH_TEST_TMP (or /tmp). */
const char *test_tmpdir(const char *name);
/* $RADBATCH_SRC or "." */
const char *test_srcdir(void);
/* Path of the shared data set ($RADBATCH_DATA or <src>/../shared/data), or NULL when
 * absent, after printing a clear SKIP line naming what is missing. */
const char *test_shared_data(const char *what);

#endif
