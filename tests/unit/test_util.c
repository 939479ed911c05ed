#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int t_failures = 0, t_checks = 0;

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
        printf("SKIP: %s not found (set RADBATCH_DATA to the folder holding %s)\n", probe, what);
        return NULL;
    }
    return path;
}
