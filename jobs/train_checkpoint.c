#include "train_checkpoint.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

char *checkpoint_path(const char *run_dir, int64_t step)
{
    char name[64];
    snprintf(name, sizeof name, "checkpoints/ckpt-%010lld.h5", (long long)step);
    return fs_join(run_dir, name);
}

int64_t *checkpoint_list_complete(const char *run_dir, int *n)
{
    *n = 0;
    char *dir = fs_join(run_dir, "checkpoints");
    DIR *d = dir ? opendir(dir) : NULL;
    int64_t *steps = NULL;
    int cap = 0;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            long long s;
            char tail[16];
            if (sscanf(e->d_name, "ckpt-%lld.%15s", &s, tail) != 2 || strcmp(tail, "DONE") != 0)
                continue;
            char *h5 = checkpoint_path(run_dir, s);
            int have = h5 && fs_is_file(h5);
            free(h5);
            if (!have)
                continue;
            if (*n == cap) {
                cap = cap ? cap * 2 : 16;
                int64_t *t = realloc(steps, (size_t)cap * sizeof *t);
                if (!t)
                    break;
                steps = t;
            }
            steps[(*n)++] = s;
        }
        closedir(d);
    }
    free(dir);
    for (int i = 1; i < *n; i++)
        for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
            int64_t t = steps[j];
            steps[j] = steps[j - 1];
            steps[j - 1] = t;
        }
    return steps;
}

char *checkpoint_find_latest(const char *run_dir)
{
    int n;
    int64_t *steps = checkpoint_list_complete(run_dir, &n);
    char *p = n ? checkpoint_path(run_dir, steps[n - 1]) : NULL;
    free(steps);
    return p;
}

/* The DONE marker's path of checkpoint file h5 (".h5" -> ".DONE"; malloc'd), NULL when out
 * of memory. */
static char *done_path(const char *h5)
{
    size_t l = strlen(h5);
    char *done = l >= 3 ? malloc(l + 8) : NULL;
    if (done) {
        memcpy(done, h5, l - 3);
        strcpy(done + l - 3, ".DONE");
    }
    return done;
}

int checkpoint_commit(const char *run_dir, const char *path, int keep, rb_error *err)
{
    char *done = done_path(path);
    if (!done)
        return rb_fail(err, NULL, "out of memory");
    int rc = fs_write_file_atomic(done, "complete\n", 9, err);
    free(done);
    if (rc < 0)
        return -1;
    int n;
    int64_t *steps = checkpoint_list_complete(run_dir, &n);
    for (int i = 0; i + keep < n; i++) {
        char *h5 = checkpoint_path(run_dir, steps[i]);
        if (h5) {
            char *dn = done_path(h5);
            if (dn)
                unlink(dn); /* marker first: a half-deleted checkpoint is never "complete" */
            free(dn);
            unlink(h5);
        }
        free(h5);
    }
    free(steps);
    return 0;
}

int checkpoint_set_aside(const char *run_dir, int64_t step, char **aside, rb_error *err)
{
    char name[64];
    snprintf(name, sizeof name, "checkpoints/ckpt-%010lld.damaged.h5", (long long)step);
    char *h5 = checkpoint_path(run_dir, step), *to = fs_join(run_dir, name);
    char *done = h5 ? done_path(h5) : NULL;
    int rc = -1;
    if (!h5 || !to || !done) {
        rb_fail(err, NULL, "out of memory");
    } else {
        /* the marker first: the checkpoint stops counting before it moves */
        if (unlink(done) != 0 && errno != ENOENT)
            rb_fail(err, NULL, "%s: cannot remove: %s", done, strerror(errno));
        else if (rename(h5, to) != 0)
            rb_fail(err, NULL, "%s: cannot rename to %s: %s", h5, to, strerror(errno));
        else
            rc = 0;
    }
    if (rc == 0 && aside) {
        *aside = to;
        to = NULL;
    }
    free(h5);
    free(to);
    free(done);
    return rc;
}

void checkpoint_clear(const char *run_dir)
{
    char *dir = fs_join(run_dir, "checkpoints");
    DIR *d = dir ? opendir(dir) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strncmp(e->d_name, "ckpt-", 5) != 0)
                continue;
            char *p = fs_join(dir, e->d_name);
            if (p)
                unlink(p);
            free(p);
        }
        closedir(d);
    }
    free(dir);
}
