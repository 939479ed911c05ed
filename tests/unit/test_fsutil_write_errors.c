/* Write errors of io/fsutil: the message names the file, the bytes it needed and the reason;
 * the hint fits a full disk (ENOSPC), an exceeded quota (EDQUOT) and an I/O error (EIO); a
 * stream that cannot be flushed (/dev/full: every write fails with ENOSPC) is reported, its
 * temp file removed and the file under the final name left as it was. Runs without root. */
#include "fsutil.h"
#include "test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *read_all(const char *path)
{
    uint8_t *b;
    size_t n;
    rb_error e;
    if (fs_read_file(path, 1 << 20, &b, &n, &e) < 0)
        return NULL;
    char *s = realloc(b, n + 1);
    if (s)
        s[n] = 0;
    return s;
}

int main(void)
{
    const char *dir = test_tmpdir("fsutil_write_errors");
    char path[4096];
    snprintf(path, sizeof path, "%s/report.csv", dir);
    rb_error err;

    /* messages and hints */
    CHECK(fs_write_fail(&err, path, ENOSPC, 1234) == -1, "returns -1");
    CHECK(strstr(err.msg, path) == err.msg, "names the file first: %s", err.msg);
    CHECK(strstr(err.msg, "cannot write 1234 bytes: No space left on device (") != NULL, "bytes and reason: %s",
          err.msg);
    CHECK(strstr(err.msg, " bytes free on that file system)") != NULL, "space left: %s", err.msg);
    CHECK(strstr(err.hint, "the disk is full") == err.hint && strstr(err.hint, "rerun the same command"), "hint: %s",
          err.hint);
    fs_write_fail(&err, path, EDQUOT, 10);
    CHECK(strstr(err.msg, "cannot write 10 bytes: Disk quota exceeded (") != NULL, "quota: %s", err.msg);
    CHECK(strstr(err.hint, "quota") != NULL, "quota hint: %s", err.hint);
    fs_write_fail(&err, path, EIO, 0);
    CHECK(strstr(err.msg, ": cannot write: Input/output error") != NULL && !strstr(err.msg, "free"),
          "I/O error, size unknown: %s", err.msg);
    CHECK(strstr(err.hint, "I/O error") != NULL, "EIO hint: %s", err.hint);

    /* a stream that cannot be flushed: /dev/full */
    CHECK(fs_write_file_atomic(path, "old,complete\n", 13, &err) == 0, "first version: %s", err.msg);
    FILE *f = fopen("/dev/full", "w");
    CHECK(f != NULL, "/dev/full");
    if (f) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp.test", path);
        FILE *t = fopen(tmp, "w"); /* stands for the temp file the stream was writing */
        CHECK(t != NULL, "temp file");
        if (t)
            fclose(t);
        for (int i = 0; i < 100; i++)
            fputs("a,row,of,a,report\n", f);
        rb_error_clear(&err);
        CHECK(fs_commit_stream(f, tmp, path, &err) == -1, "a failed flush is an error");
        CHECK(strstr(err.msg, path) == err.msg && strstr(err.msg, "cannot write 1800 bytes: No space left on device"),
              "names the file and the bytes: %s", err.msg);
        CHECK(access(tmp, F_OK) != 0, "temp file removed");
        char *s = read_all(path);
        CHECK(s && strcmp(s, "old,complete\n") == 0, "the file under the final name is unchanged: %s", s ? s : "");
        free(s);
    }
    return TEST_DONE();
}
