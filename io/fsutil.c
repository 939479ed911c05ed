#include "fsutil.h"
#include "inode_set.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

char *fs_temp_name(const char *path)
{
    size_t n = strlen(path) + 32;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s.tmp.%ld", path, (long)getpid());
    return s;
}

int fs_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, rb_error *err)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return rb_fail(err, NULL, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return rb_fail(err, NULL, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return rb_fail(err, NULL, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return rb_fail(err, "raise max_file_mb if such files are expected", "%s: file too large (%lld bytes, limit %zu)",
                       path, (long long)st.st_size, max_bytes);
    }
    size_t cap = (size_t)st.st_size + 1, got = 0;
    uint8_t *b = malloc(cap);
    if (!b) {
        close(fd);
        return rb_fail(err, NULL, "%s: out of memory reading %zu bytes", path, cap);
    }
    for (;;) {
        if (got == cap) { /* file grew while reading: take what fits the cap */
            if (cap > max_bytes) {
                free(b);
                close(fd);
                return rb_fail(err, NULL, "%s: file grew beyond the size limit while reading", path);
            }
            size_t ncap = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            uint8_t *nb = realloc(b, ncap);
            if (!nb) {
                free(b);
                close(fd);
                return rb_fail(err, NULL, "%s: out of memory", path);
            }
            b = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, b + got, cap - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(b);
            close(fd);
            return rb_fail(err, NULL, "%s: read error: %s", path, strerror(e));
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *buf = b;
    *len = got;
    return 0;
}

/* Free bytes for unprivileged writers on the file system holding path (its folder when path
 * does not exist yet), or -1. */
static long long fs_free_bytes(const char *path)
{
    struct statvfs v;
    if (statvfs(path, &v) == 0)
        return (long long)v.f_bavail * (long long)v.f_frsize;
    char *d = strdup(path);
    if (!d)
        return -1;
    char *slash = strrchr(d, '/');
    long long r = -1;
    if (slash) {
        if (slash == d)
            slash[1] = 0;
        else
            *slash = 0;
    } else
        strcpy(d, ".");
    if (statvfs(d, &v) == 0)
        r = (long long)v.f_bavail * (long long)v.f_frsize;
    free(d);
    return r;
}

int fs_write_fail_at(rb_error *err, const char *file, int line, const char *path, int e, uint64_t need)
{
    char needs[64] = "", avail[64] = "";
    if (need > 0)
        snprintf(needs, sizeof needs, " %llu bytes", (unsigned long long)need);
    long long fr = e == ENOSPC || e == EDQUOT ? fs_free_bytes(path) : -1;
    if (fr >= 0)
        snprintf(avail, sizeof avail, " (%lld bytes free on that file system)", fr);
    const char *hint;
    if (e == ENOSPC)
        hint = "the disk is full: free space on the output file system (or write elsewhere), then rerun the "
               "same command: what was finished is kept and the run resumes from there";
    else if (e == EDQUOT)
        hint = "the disk quota is exceeded: free space or raise the quota, then rerun the same command: what "
               "was finished is kept and the run resumes from there";
    else if (e == EIO)
        hint = "the storage reported an I/O error: check the device or mount, then rerun the same command";
    else
        hint = "check the output folder and its file system, then rerun the same command";
    return rb_fail_at(err, file, line, hint, "%s: cannot write%s: %s%s", path, needs, strerror(e), avail);
}

/* Write all of data to fd; 0, or -1 with errno set. */
static int write_all(int fd, const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) {
            errno = ENOSPC;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int fs_write_temp(const char *path, const void *data, size_t len, char **tmpp, rb_error *err)
{
    *tmpp = NULL;
    char *tmp = fs_temp_name(path);
    if (!tmp)
        return rb_fail(err, NULL, "%s: out of memory", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        if (e == ENOSPC || e == EDQUOT || e == EIO)
            return fs_write_fail(err, path, e, len);
        return rb_fail(err, "check that the folder exists and is writable", "%s: cannot create: %s", path,
                       strerror(e));
    }
    if (write_all(fd, data, len) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return fs_write_fail(err, path, e, len);
    }
    if (close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        free(tmp);
        return fs_write_fail(err, path, e, len);
    }
    *tmpp = tmp;
    return 0;
}

static void fsync_parent(const char *path)
{
    char *d = strdup(path);
    if (!d)
        return;
    char *slash = strrchr(d, '/');
    if (slash == d)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    int fd = open(slash ? d : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(d);
}

int fs_commit_temp(const char *tmp, const char *path, rb_error *err)
{
    int fd = open(tmp, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        struct stat st;
        uint64_t need = fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        return fs_write_fail(err, path, e, need);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return rb_fail(err, "check permissions of the output folder", "%s: cannot rename %s into place: %s", path,
                       tmp, strerror(e));
    }
    fsync_parent(path);
    return 0;
}

int fs_commit_stream(FILE *f, const char *tmp, const char *path, rb_error *err)
{
    long size = ftell(f);
    uint64_t need = size > 0 ? (uint64_t)size : 0;
    int e = 0;
    errno = 0;
    if (fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0)
        e = errno ? errno : EIO;
    if (fclose(f) != 0 && !e)
        e = errno ? errno : EIO;
    if (e) {
        unlink(tmp);
        return fs_write_fail(err, path, e, need);
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return rb_fail(err, "check permissions of the output folder", "%s: cannot rename %s into place: %s", path,
                       tmp, strerror(e));
    }
    fsync_parent(path);
    return 0;
}

int fs_write_file_atomic(const char *path, const void *data, size_t len, rb_error *err)
{
    char *tmp;
    if (fs_write_temp(path, data, len, &tmp, err) < 0)
        return -1;
    int rc = fs_commit_temp(tmp, path, err);
    free(tmp);
    return rc;
}

int fs_mkdirs(const char *path, rb_error *err)
{
    char *p = strdup(path);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            rb_fail(err, NULL, "%s: cannot create folder: %s", p, strerror(e));
            free(p);
            return -1;
        }
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        rb_fail(err, NULL, "%s: cannot create folder: %s", p, strerror(e));
        free(p);
        return -1;
    }
    free(p);
    if (!fs_is_dir(path))
        return rb_fail(err, NULL, "%s: exists and is not a folder", path);
    return 0;
}

int fs_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int fs_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

char *fs_join(const char *a, const char *b)
{
    if (!a || !*a)
        return strdup(b);
    size_t la = strlen(a), n = la + strlen(b) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, (la && a[la - 1] == '/') ? "" : "/", b);
    return s;
}

/* ---- recursive walk ------------------------------------------------------------------ */

static int list_push(fs_list *l, const char *rel)
{
    if (l->n == l->cap) {
        int64_t nc = l->cap ? l->cap * 2 : 1024;
        char **nr = realloc(l->rel, (size_t)nc * sizeof *nr);
        if (!nr)
            return -1;
        l->rel = nr;
        l->cap = nc;
    }
    l->rel[l->n] = strdup(rel);
    if (!l->rel[l->n])
        return -1;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk_dir(const char *root, const char *rel, inode_set *seen, fs_list *out,
                    fs_error_fn on_error, void *user, rb_error *err)
{
    char *abs = rel[0] ? fs_join(root, rel) : strdup(root);
    if (!abs)
        return rb_fail(err, NULL, "out of memory");
    DIR *d = opendir(abs);
    if (!d) {
        if (on_error)
            on_error(user, abs, strerror(errno));
        free(abs);
        return 0;
    }
    /* collect and sort names so the walk order never depends on the file system */
    char **names = NULL;
    int64_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) {
                closedir(d);
                rb_fail(err, NULL, "out of memory listing %s", abs);
                for (int64_t k = 0; k < n; k++)
                    free(names[k]);
                free(names);
                free(abs);
                return -1;
            }
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n > 1) /* an empty folder leaves names NULL, which qsort must not get */
        qsort(names, (size_t)n, sizeof *names, cmp_str);
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        if (names[i][0] == '.') /* hidden files and folders (.DS_Store, .git) */
            continue;
        char *crel = rel[0] ? fs_join(rel, names[i]) : strdup(names[i]);
        char *cabs = fs_join(abs, names[i]);
        struct stat st;
        if (stat(cabs, &st) != 0) {
            if (on_error)
                on_error(user, cabs, errno == ENOENT ? "broken symbolic link" : strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            int fresh = inode_set_add(seen, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
            if (fresh < 0)
                rc = rb_fail(err, NULL, "out of memory");
            else if (fresh == 0) {
                if (on_error)
                    on_error(user, cabs, "folder already visited (symbolic link loop or second link), skipped");
            } else
                rc = walk_dir(root, crel, seen, out, on_error, user, err);
        } else if (S_ISREG(st.st_mode)) {
            if (list_push(out, crel) < 0)
                rc = rb_fail(err, NULL, "out of memory");
        } else if (on_error)
            on_error(user, cabs, "not a regular file (device, FIFO or socket), skipped");
        free(crel);
        free(cabs);
    }
    for (int64_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(abs);
    return rc;
}

int fs_walk(const char *root, fs_list *out, fs_error_fn on_error, void *user, rb_error *err)
{
    memset(out, 0, sizeof *out);
    struct stat st;
    if (stat(root, &st) != 0)
        return rb_fail(err, "check the input path", "%s: %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rb_fail(err, NULL, "%s: not a folder", root);
    inode_set seen = {0};
    inode_set_add(&seen, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
    int rc = walk_dir(root, "", &seen, out, on_error, user, err);
    inode_set_free(&seen);
    if (rc == 0 && out->n > 1) /* sorted per folder already; a global sort makes "a/b" vs "a.b" order explicit */
        qsort(out->rel, (size_t)out->n, sizeof *out->rel, cmp_str);
    return rc;
}

void fs_list_free(fs_list *l)
{
    for (int64_t i = 0; i < l->n; i++)
        free(l->rel[i]);
    free(l->rel);
    memset(l, 0, sizeof *l);
}

/* Create and remove a probe file in existing folder d. */
static int probe_write(const char *d, const char *for_dir, rb_error *err)
{
    char name[64];
    snprintf(name, sizeof name, ".radbatch-write-probe.%ld", (long)getpid());
    char *p = fs_join(d, name);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    int e = errno;
    if (fd >= 0) {
        close(fd);
        unlink(p);
    }
    free(p);
    if (fd < 0) {
        if (strcmp(d, for_dir) == 0)
            return rb_fail(err, "choose an output folder this job may write to (permissions, read-only mount?)",
                           "%s: output folder is not writable: %s", for_dir, strerror(e));
        return rb_fail(err, "create the output folder first, or choose one under a writable folder",
                       "%s: cannot create the output folder: %s is not writable: %s", for_dir, d, strerror(e));
    }
    return 0;
}

int fs_check_out_dir(const char *dir, rb_error *err)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return rb_fail(err, "give a folder for the outputs", "%s: output path exists and is not a folder", dir);
        return probe_write(dir, dir, err);
    }
    if (errno != ENOENT && errno != ENOTDIR)
        return rb_fail(err, NULL, "%s: output folder: %s", dir, strerror(errno));
    /* walk up to the nearest existing ancestor */
    char *a = strdup(dir);
    if (!a)
        return rb_fail(err, NULL, "out of memory");
    int rc = 0;
    for (;;) {
        size_t l = strlen(a);
        while (l > 1 && a[l - 1] == '/')
            a[--l] = 0;
        char *slash = strrchr(a, '/');
        if (!slash) {
            strcpy(a, ".");
        } else if (slash == a) {
            a[1] = 0;
        } else {
            *slash = 0;
        }
        if (stat(a, &st) == 0) {
            if (!S_ISDIR(st.st_mode))
                rc = rb_fail(err, "give a folder for the outputs", "%s: cannot create the output folder: %s is not a folder",
                             dir, a);
            else
                rc = probe_write(a, dir, err);
            break;
        }
        if ((errno != ENOENT && errno != ENOTDIR) || strcmp(a, ".") == 0 || strcmp(a, "/") == 0) {
            rc = rb_fail(err, NULL, "%s: cannot create the output folder: %s: %s", dir, a, strerror(errno));
            break;
        }
    }
    free(a);
    return rc;
}

char *fs_first_missing(const char *dir)
{
    struct stat st;
    if (!dir || !*dir || stat(dir, &st) == 0)
        return NULL;
    char *a = strdup(dir), *last = NULL;
    while (a) {
        size_t l = strlen(a);
        while (l > 1 && a[l - 1] == '/')
            a[--l] = 0;
        if (stat(a, &st) == 0)
            break;
        free(last);
        last = strdup(a);
        char *slash = strrchr(a, '/');
        if (!slash || slash == a)
            break;
        *slash = 0;
    }
    free(a);
    return last;
}

int fs_remove_empty_dirs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = fs_join(dir, e->d_name);
        struct stat st;
        if (p && lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            fs_remove_empty_dirs(p);
        free(p);
    }
    closedir(d);
    return rmdir(dir) == 0;
}
