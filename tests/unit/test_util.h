/* Tiny test harness: CHECK(cond, fmt, ...) records a failure and goes on; test_skip() records
 * a part that cannot run; TEST_DONE() prints the summary and returns the exit code: 1 when a
 * check failed, else 77 (ctest's SKIP_RETURN_CODE: the test reports as skipped, never as
 * passed) when a part was skipped, else 0. */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <stdio.h>

extern int t_failures, t_checks, t_skips;

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
    (printf("%d checks, %d failures%s\n", t_checks, t_failures,                            \
            t_skips ? ", some parts skipped (SKIP lines above)" : ""),                      \
     t_failures ? 1 : t_skips ? 77 : 0)

/* A part of the test cannot run: prints "SKIP: <reason>" and makes TEST_DONE() return 77. */
void test_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A fresh scratch directory for this test under $RADBATCH_TEST_TMP (or /tmp). */
const char *test_tmpdir(const char *name);
/* $RADBATCH_SRC or "." */
const char *test_srcdir(void);
/* Path of the shared data set ($RADBATCH_DATA or <src>/../shared/data), or NULL when
 * absent, after test_skip() naming what is missing. */
const char *test_shared_data(const char *what);
/* Path of a MobileNetV2 fixture file into out: $RADBATCH_FIXTURES/mobilenetv2/<name>, else
 * <src>/../shared/fixtures/mobilenetv2/<name>, else the copy in <src>/tests/data/mobilenetv2
 * (weights and layer table only). Returns 0 when found, -1 (no message) when not. */
int test_fixture_path(char *out, size_t n, const char *name);

#endif
