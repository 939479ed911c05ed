/* fsutil: output folder checks before compute, the outermost folder a run creates, removal
 * of empty folders only, and walks of empty folders (no qsort of a NULL array: the
 * sanitizer build runs this too). */
#include "fsutil.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);
}

int main(void)
{
    const char *dir = test_tmpdir("test_fsutil");
    char p[4096], q[4096];
    rb_error err;

    /* an existing writable folder; a missing one under it, several levels deep */
    CHECK(fs_check_out_dir(dir, &err) == 0, "existing folder: %s", err.msg);
    snprintf(p, sizeof p, "%s/a/b/c", dir);
    CHECK(fs_check_out_dir(p, &err) == 0, "missing nested folder: %s", err.msg);
    snprintf(q, sizeof q, "%s/a", dir);
    char *first = fs_first_missing(p);
    CHECK(first && strcmp(first, q) == 0, "first missing of %s: %s", p, first ? first : "NULL");
    free(first);
    CHECK(fs_first_missing(dir) == NULL, "an existing folder has no missing part");
    /* nothing was created by the checks */
    struct stat st;
    CHECK(stat(q, &st) != 0, "fs_check_out_dir created %s", q);
    snprintf(q, sizeof q, "%s/.radbatch-write-probe.%ld", dir, (long)getpid());
    CHECK(stat(q, &st) != 0, "the probe file was left behind");

    /* a file where a folder is wanted, and a file as a parent */
    snprintf(q, sizeof q, "%s/plain", dir);
    touch(q);
    CHECK(fs_check_out_dir(q, &err) < 0 && strstr(err.msg, "not a folder") && strstr(err.msg, q), "file as out: %s",
          err.msg);
    snprintf(p, sizeof p, "%s/plain/sub", dir);
    CHECK(fs_check_out_dir(p, &err) < 0 && strstr(err.msg, "not a folder"), "file as parent: %s", err.msg);

    /* removal: empty folders go, a folder with a file stays with its parents */
    snprintf(p, sizeof p, "%s/r/x/y", dir);
    CHECK(fs_mkdirs(p, &err) == 0, "mkdirs");
    snprintf(p, sizeof p, "%s/r/z", dir);
    CHECK(fs_mkdirs(p, &err) == 0, "mkdirs");
    snprintf(q, sizeof q, "%s/r/z/keep.txt", dir);
    touch(q);
    snprintf(p, sizeof p, "%s/r", dir);
    CHECK(fs_remove_empty_dirs(p) == 0, "a folder holding a file was removed");
    snprintf(q, sizeof q, "%s/r/x", dir);
    CHECK(stat(q, &st) != 0, "the empty subtree r/x stayed");
    snprintf(q, sizeof q, "%s/r/z/keep.txt", dir);
    CHECK(stat(q, &st) == 0, "a file was removed");
    unlink(q);
    CHECK(fs_remove_empty_dirs(p) == 1 && stat(p, &st) != 0, "an empty tree stayed");

    /* walking an empty folder and a tree of empty folders */
    snprintf(p, sizeof p, "%s/empty/e1/e2", dir);
    CHECK(fs_mkdirs(p, &err) == 0, "mkdirs");
    snprintf(p, sizeof p, "%s/empty", dir);
    fs_list l = {0};
    CHECK(fs_walk(p, &l, NULL, NULL, &err) == 0 && l.n == 0, "walk of empty folders: n=%lld", (long long)l.n);
    fs_list_free(&l);
    return TEST_DONE();
}
