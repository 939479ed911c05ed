#include "test_util.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int t_failures = 0, t_checks = 0, t_skips = 0;

void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    t_skips++;
}

const char *test_srcdir(void)
{
    const char *s = getenv("RADBATCH_SRC");
    return s ? s : ".";
}

const char *test_tmpdir(const char *name)
{
    static char path[4096];
    const char *base = getenv("RADBATCH_TEST_TMP");
    if (!base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(path, sizeof path, "%s/%s", base, name);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot make %s\n", path);
    return path;
}

const char *test_shared_data(const char *what)
{
    static char path[4096];
    const char *d = getenv("RADBATCH_DATA");
    if (d)
        snprintf(path, sizeof path, "%s", d);
    else
        snprintf(path, sizeof path, "%s/../shared/data", test_srcdir());
    struct stat st;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/%s", path, what);
    if (stat(probe, &st) != 0) {
        test_skip("%s not found (set RADBATCH_DATA to the folder holding %s)", probe, what);
        return NULL;
    }
    return path;
}

int test_fixture_path(char *out, size_t n, const char *name)
{
    const char *env = getenv("RADBATCH_FIXTURES");
    struct stat st;
    if (env) {
        snprintf(out, n, "%s/mobilenetv2/%s", env, name);
        if (stat(out, &st) == 0)
            return 0;
    }
    snprintf(out, n, "%s/../shared/fixtures/mobilenetv2/%s", test_srcdir(), name);
    if (stat(out, &st) == 0)
        return 0;
    snprintf(out, n, "%s/tests/data/mobilenetv2/%s", test_srcdir(), name);
    return stat(out, &st) == 0 ? 0 : -1;
}
