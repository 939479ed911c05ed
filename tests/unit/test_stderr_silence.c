/* The stderr gate (src/rb_log.c): inside rb_stderr_silence_begin/end, what a library writes
 * to fd 2 is dropped, while radbatch's own warnings and errors still reach the real stderr;
 * nested and concurrent windows from several threads restore fd 2 only when the last ends. */
#include "fsutil.h"
#include "rb_error.h"
#include "rb_log.h"
#include "test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { THREADS = 4, ROUNDS = 2000 };

static void *noisy_library_calls(void *arg)
{
    (void)arg;
    for (int i = 0; i < ROUNDS; i++) {
        rb_stderr_silence_begin();
        (void)!write(2, "NOISE\n", 6); /* what libjpeg's output_message does */
        rb_stderr_silence_end();
    }
    return NULL;
}

static void *radbatch_warnings(void *arg)
{
    int *n = arg;
    for (int i = 0; i < *n; i++)
        rb_warn("kept %d", i);
    return NULL;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

int main(void)
{
    const char *dir = test_tmpdir("stderr_silence");
    char path[4096];
    snprintf(path, sizeof path, "%s/stderr.txt", dir);
    /* the test's own report goes to stdout; fd 2 becomes a file to read back */
    int real = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && dup2(fd, 2) == 2, "stderr to %s", path);
    close(fd);

    /* one window: the library's line dropped, a warning and an error kept */
    rb_stderr_silence_begin();
    (void)!write(2, "NOISE\n", 6);
    fprintf(stderr, "NOISE via stdio\n");
    rb_warn("a warning inside the window");
    rb_error e;
    rb_fail(&e, "a hint", "x.dcm: an error inside the window");
    rb_error_print(&e, NULL);
    /* nested: still silent after the inner end */
    rb_stderr_silence_begin();
    rb_stderr_silence_end();
    (void)!write(2, "NOISE after the inner end\n", 26);
    rb_stderr_silence_end();
    (void)!write(2, "after the window\n", 17);

    /* several threads opening and closing windows while others warn */
    pthread_t th[THREADS + 1];
    int warnings = 500;
    for (int t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, noisy_library_calls, NULL);
    pthread_create(&th[THREADS], NULL, radbatch_warnings, &warnings);
    for (int t = 0; t <= THREADS; t++)
        pthread_join(th[t], NULL);
    (void)!write(2, "the end\n", 8);

    dup2(real, 2);
    close(real);
    uint8_t *buf = NULL;
    size_t len = 0;
    rb_error rerr;
    CHECK(fs_read_file(path, 1u << 24, &buf, &len, &rerr) == 0, "read %s: %s", path, rerr.msg);
    char *s = buf ? calloc(len + 1, 1) : NULL; /* as a string */
    if (s)
        memcpy(s, buf, len);
    if (s) {
        CHECK(count(s, "NOISE") == 0, "%d library lines got through", count(s, "NOISE"));
        CHECK(strstr(s, "warning: a warning inside the window\n") != NULL, "the warning in the window is kept");
        CHECK(strstr(s, "error: x.dcm: an error inside the window\n  hint: a hint\n") != NULL,
              "the error in the window is kept whole");
        CHECK(strstr(s, "after the window\n") != NULL, "fd 2 restored after the window");
        CHECK(count(s, "warning: kept ") == warnings, "%d of %d concurrent warnings kept", count(s, "warning: kept "),
              warnings);
        CHECK(strstr(s, "the end\n") != NULL, "fd 2 restored after the threads");
    }
    free(s);
    free(buf);
    return TEST_DONE();
}
