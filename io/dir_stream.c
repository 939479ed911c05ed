#include "dir_stream.h"
#include "fsutil.h"
#include "inode_set.h"

#include <dirent.h>
#include <pthread.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- one open folder: its names, sorted, in memory or in spilled runs -------------- */
typedef struct name_run {
    FILE *f;
    char *cur; /* current (smallest unread) name of this run, NULL when exhausted */
    size_t cap;
} name_run;

typedef struct frame {
    char *rel;            /* "" for the root */
    char *arena;          /* names, NUL-terminated, back to back */
    size_t arena_len, arena_cap;
    size_t *off;          /* sorted offsets into arena */
    int64_t n, cap, next;
    name_run *runs;       /* spilled: every name is in a run */
    int nruns;
} frame;

struct dir_stream {
    char *root;
    char *spill_dir;
    int max_names;
    frame *stack;
    int depth, cap;
    inode_set seen; /* loop guard */
    uint64_t *ex_dev, *ex_ino;
    int nex;
    int64_t folders;
    char *rel, *abs, *name; /* current entry's strings */
    size_t rel_cap, abs_cap, name_cap;
    char pending_path[4096];
    char pending_reason[512];
    int has_pending;
};

static const char *g_sort_arena;
static int cmp_off(const void *a, const void *b)
{
    return strcmp(g_sort_arena + *(const size_t *)a, g_sort_arena + *(const size_t *)b);
}
/* qsort has no context argument in C11; the walk is single-threaded per stream, and a
 * stream is used by one thread, but two streams could sort at once: serialize sorting. */

static pthread_mutex_t g_sort_lock = PTHREAD_MUTEX_INITIALIZER;
static void sort_names(frame *f)
{
    if (f->n < 2) /* an empty folder has no arrays to sort (qsort must not get NULL) */
        return;
    pthread_mutex_lock(&g_sort_lock);
    g_sort_arena = f->arena;
    qsort(f->off, (size_t)f->n, sizeof *f->off, cmp_off);
    pthread_mutex_unlock(&g_sort_lock);
}

static void frame_free(frame *f)
{
    free(f->rel);
    free(f->arena);
    free(f->off);
    for (int i = 0; i < f->nruns; i++) {
        if (f->runs[i].f)
            fclose(f->runs[i].f);
        free(f->runs[i].cur);
    }
    free(f->runs);
    memset(f, 0, sizeof *f);
}

static int run_advance(name_run *r)
{
    ssize_t l = getdelim(&r->cur, &r->cap, '\0', r->f);
    if (l <= 0) {
        free(r->cur);
        r->cur = NULL;
        r->cap = 0;
        fclose(r->f);
        r->f = NULL;
    }
    return 0;
}

static FILE *spill_file(dir_stream *s, rb_error *err)
{
    size_t pl = strlen(s->spill_dir) + 40;
    char *tmpl = malloc(pl);
    if (!tmpl) {
        rb_fail(err, NULL, "out of memory");
        return NULL;
    }
    snprintf(tmpl, pl, "%s/.radbatch-names-XXXXXX", s->spill_dir);
    int fd = mkstemp(tmpl);
    if (fd < 0) {
        int e = errno;
        rb_fail(err, "set a writable spill folder", "%s: cannot create a temporary file for a large folder's names: %s",
                s->spill_dir, strerror(e));
        free(tmpl);
        return NULL;
    }
    unlink(tmpl); /* gone when closed, also after a crash */
    free(tmpl);
    FILE *fp = fdopen(fd, "w+");
    if (!fp) {
        close(fd);
        rb_fail(err, NULL, "out of memory");
    }
    return fp;
}

/* Many runs (a folder of millions of names): merge them into one, so open files stay few. */
#define MAX_RUNS 64
static int frame_compact(dir_stream *s, frame *f, rb_error *err)
{
    FILE *fp = spill_file(s, err);
    if (!fp)
        return -1;
    for (;;) {
        int best = -1;
        for (int i = 0; i < f->nruns; i++)
            if (f->runs[i].cur && (best < 0 || strcmp(f->runs[i].cur, f->runs[best].cur) < 0))
                best = i;
        if (best < 0)
            break;
        fwrite(f->runs[best].cur, 1, strlen(f->runs[best].cur) + 1, fp);
        run_advance(&f->runs[best]);
    }
    for (int i = 0; i < f->nruns; i++) {
        if (f->runs[i].f)
            fclose(f->runs[i].f);
        free(f->runs[i].cur);
    }
    errno = 0;
    if (fflush(fp) != 0 || ferror(fp) || fseek(fp, 0, SEEK_SET) != 0) { /* ferror: a write inside fwrite */
        int e = errno ? errno : EIO;
        fclose(fp);
        f->nruns = 0;
        return rb_fail(err, "is the disk full?", "%s: cannot write a large folder's names: %s", s->spill_dir,
                       strerror(e));
    }
    memset(&f->runs[0], 0, sizeof f->runs[0]);
    f->runs[0].f = fp;
    f->nruns = 1;
    run_advance(&f->runs[0]);
    return 0;
}

/* Sort the names in memory and write them as a run to an unlinked temporary file. */
static int frame_spill(dir_stream *s, frame *f, rb_error *err)
{
    sort_names(f);
    if (f->nruns >= MAX_RUNS && frame_compact(s, f, err) < 0)
        return -1;
    FILE *fp = spill_file(s, err);
    if (!fp)
        return -1;
    name_run *nr = realloc(f->runs, (size_t)(f->nruns + 1) * sizeof *nr);
    if (!nr) {
        fclose(fp);
        return rb_fail(err, NULL, "out of memory");
    }
    f->runs = nr;
    for (int64_t i = 0; i < f->n; i++) {
        const char *nm = f->arena + f->off[i];
        fwrite(nm, 1, strlen(nm) + 1, fp);
    }
    errno = 0;
    if (fflush(fp) != 0 || ferror(fp) || fseek(fp, 0, SEEK_SET) != 0) { /* ferror: a write inside fwrite */
        int e = errno ? errno : EIO;
        fclose(fp);
        return rb_fail(err, "is the disk full?", "%s: cannot write a large folder's names: %s", s->spill_dir,
                       strerror(e));
    }
    name_run *r = &f->runs[f->nruns++];
    memset(r, 0, sizeof *r);
    r->f = fp;
    run_advance(r);
    f->n = 0;
    f->arena_len = 0;
    return 0;
}

static int frame_add(dir_stream *s, frame *f, const char *name, rb_error *err)
{
    size_t l = strlen(name) + 1;
    if (f->arena_len + l > f->arena_cap) {
        size_t nc = f->arena_cap ? f->arena_cap * 2 : 4096;
        while (nc < f->arena_len + l)
            nc *= 2;
        char *na = realloc(f->arena, nc);
        if (!na)
            return rb_fail(err, NULL, "out of memory listing a folder");
        f->arena = na;
        f->arena_cap = nc;
    }
    if (f->n == f->cap) {
        int64_t nc = f->cap ? f->cap * 2 : 64;
        size_t *no = realloc(f->off, (size_t)nc * sizeof *no);
        if (!no)
            return rb_fail(err, NULL, "out of memory listing a folder");
        f->off = no;
        f->cap = nc;
    }
    memcpy(f->arena + f->arena_len, name, l);
    f->off[f->n++] = f->arena_len;
    f->arena_len += l;
    if (f->n >= s->max_names)
        return frame_spill(s, f, err);
    return 0;
}

/* Smallest remaining name, or NULL. The pointer is valid until the next call. */
static const char *frame_next(frame *f)
{
    if (f->nruns == 0)
        return f->next < f->n ? f->arena + f->off[f->next++] : NULL;
    int best = -1;
    for (int i = 0; i < f->nruns; i++)
        if (f->runs[i].cur && (best < 0 || strcmp(f->runs[i].cur, f->runs[best].cur) < 0))
            best = i;
    if (best < 0)
        return NULL;
    /* hand out a copy in the arena (reused), then advance that run */
    name_run *r = &f->runs[best];
    size_t l = strlen(r->cur) + 1;
    if (l > f->arena_cap) {
        char *na = realloc(f->arena, l);
        if (!na)
            return NULL;
        f->arena = na;
        f->arena_cap = l;
    }
    memcpy(f->arena, r->cur, l);
    run_advance(r);
    return f->arena;
}

static int set_str(char **dst, size_t *cap, const char *a, const char *sep, const char *b)
{
    size_t need = strlen(a) + strlen(sep) + strlen(b) + 1;
    if (need > *cap) {
        char *n = realloc(*dst, need * 2);
        if (!n)
            return -1;
        *dst = n;
        *cap = need * 2;
    }
    snprintf(*dst, *cap, "%s%s%s", a, sep, b);
    return 0;
}

static void set_pending(dir_stream *s, const char *path, const char *reason)
{
    snprintf(s->pending_path, sizeof s->pending_path, "%s", path);
    snprintf(s->pending_reason, sizeof s->pending_reason, "%s", reason);
    s->has_pending = 1;
}

/* Open folder rel (abs path given) as a new frame on the stack. An unreadable folder is a
 * pending error entry, not a failure. */
static int push_folder(dir_stream *s, const char *rel, const char *abs, rb_error *err)
{
    DIR *d = opendir(abs);
    if (!d) {
        char reason[300];
        snprintf(reason, sizeof reason, "cannot open folder: %s", strerror(errno));
        set_pending(s, rel[0] ? rel : ".", reason);
        return 0;
    }
    if (s->depth == s->cap) {
        int nc = s->cap ? s->cap * 2 : 16;
        frame *ns = realloc(s->stack, (size_t)nc * sizeof *ns);
        if (!ns) {
            closedir(d);
            return rb_fail(err, NULL, "out of memory");
        }
        s->stack = ns;
        s->cap = nc;
    }
    frame *f = &s->stack[s->depth];
    memset(f, 0, sizeof *f);
    f->rel = strdup(rel);
    if (!f->rel) {
        closedir(d);
        return rb_fail(err, NULL, "out of memory");
    }
    s->depth++;
    s->folders++;
    struct dirent *de;
    int rc = 0;
    errno = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') /* ".", "..", hidden files and folders */
            continue;
        rc = frame_add(s, f, de->d_name, err);
        errno = 0;
    }
    if (rc == 0 && errno != 0) {
        char reason[300];
        snprintf(reason, sizeof reason, "error reading the folder (listed partly): %s", strerror(errno));
        set_pending(s, rel[0] ? rel : ".", reason);
    }
    closedir(d);
    if (rc == 0) {
        if (f->nruns > 0 && f->n > 0)
            rc = frame_spill(s, f, err);
        else if (f->nruns == 0)
            sort_names(f);
    }
    return rc;
}

int dir_stream_open(dir_stream **out, const char *root, const dir_stream_opts *opts, rb_error *err)
{
    *out = NULL;
    struct stat st;
    if (stat(root, &st) != 0)
        return rb_fail(err, "check the input path", "%s: %s", root, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return rb_fail(err, NULL, "%s: not a folder", root);
    dir_stream *s = calloc(1, sizeof *s);
    if (!s)
        return rb_fail(err, NULL, "out of memory");
    s->root = strdup(root);
    s->spill_dir = strdup(opts && opts->spill_dir ? opts->spill_dir : "/tmp");
    s->max_names = opts && opts->max_names > 0 ? opts->max_names : 16384;
    if (!s->root || !s->spill_dir || inode_set_add(&s->seen, (uint64_t)st.st_dev, (uint64_t)st.st_ino) < 0) {
        dir_stream_close(s);
        return rb_fail(err, NULL, "out of memory");
    }
    if (push_folder(s, "", root, err) < 0) {
        dir_stream_close(s);
        return -1;
    }
    if (s->has_pending) { /* the root itself cannot be read */
        rb_fail(err, "check the permissions of the input folder", "%s: %s", root, s->pending_reason);
        dir_stream_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void dir_stream_exclude(dir_stream *s, const char *folder)
{
    struct stat st;
    if (stat(folder, &st) != 0)
        return;
    uint64_t *d = realloc(s->ex_dev, (size_t)(s->nex + 1) * 8), *i;
    if (!d)
        return;
    s->ex_dev = d;
    i = realloc(s->ex_ino, (size_t)(s->nex + 1) * 8);
    if (!i)
        return;
    s->ex_ino = i;
    s->ex_dev[s->nex] = (uint64_t)st.st_dev;
    s->ex_ino[s->nex] = (uint64_t)st.st_ino;
    s->nex++;
}

static int excluded(const dir_stream *s, const struct stat *st)
{
    for (int k = 0; k < s->nex; k++)
        if (s->ex_dev[k] == (uint64_t)st->st_dev && s->ex_ino[k] == (uint64_t)st->st_ino)
            return 1;
    return 0;
}

static int error_entry(dir_stream *s, dir_stream_entry *e, const char *rel, const char *reason, rb_error *err)
{
    if (set_str(&s->rel, &s->rel_cap, rel, "", "") < 0 ||
        set_str(&s->abs, &s->abs_cap, s->root, strcmp(rel, ".") ? "/" : "", strcmp(rel, ".") ? rel : "") < 0 ||
        set_str(&s->name, &s->name_cap, reason, "", "") < 0)
        return rb_fail(err, NULL, "out of memory");
    memset(e, 0, sizeof *e);
    e->kind = DIR_STREAM_ERROR;
    e->rel = s->rel;
    e->abs = s->abs;
    e->reason = s->name;
    return 1;
}

int dir_stream_next(dir_stream *s, dir_stream_entry *e, rb_error *err)
{
    for (;;) {
        if (s->has_pending) {
            s->has_pending = 0;
            return error_entry(s, e, s->pending_path, s->pending_reason, err);
        }
        if (s->depth == 0)
            return 0;
        frame *f = &s->stack[s->depth - 1];
        const char *nm = frame_next(f);
        if (!nm) {
            frame_free(f);
            s->depth--;
            continue;
        }
        if (set_str(&s->rel, &s->rel_cap, f->rel, f->rel[0] ? "/" : "", nm) < 0 ||
            set_str(&s->abs, &s->abs_cap, s->root, "/", s->rel) < 0)
            return rb_fail(err, NULL, "out of memory");
        struct stat st;
        if (stat(s->abs, &st) != 0) {
            int e1 = errno;
            struct stat lst;
            const char *why = (e1 == ENOENT && lstat(s->abs, &lst) == 0 && S_ISLNK(lst.st_mode)) ? "broken symbolic link"
                              : e1 == ELOOP ? "symbolic link loop"
                                            : strerror(e1);
            char *rel = strdup(s->rel);
            if (!rel)
                return rb_fail(err, NULL, "out of memory");
            int rc = error_entry(s, e, rel, why, err);
            free(rel);
            return rc;
        }
        if (S_ISDIR(st.st_mode)) {
            if (excluded(s, &st))
                continue;
            int fresh = inode_set_add(&s->seen, (uint64_t)st.st_dev, (uint64_t)st.st_ino);
            if (fresh < 0)
                return rb_fail(err, NULL, "out of memory");
            if (fresh == 0) {
                char *rel = strdup(s->rel);
                if (!rel)
                    return rb_fail(err, NULL, "out of memory");
                int rc = error_entry(s, e, rel, "folder already visited (symbolic link loop or second link), skipped",
                                     err);
                free(rel);
                return rc;
            }
            char *rel = strdup(s->rel), *abs = strdup(s->abs);
            int rc = rel && abs ? push_folder(s, rel, abs, err) : rb_fail(err, NULL, "out of memory");
            free(rel);
            free(abs);
            if (rc < 0)
                return -1;
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            char *rel = strdup(s->rel);
            if (!rel)
                return rb_fail(err, NULL, "out of memory");
            int rc = error_entry(s, e, rel,
                                 S_ISFIFO(st.st_mode) ? "not a regular file (FIFO), skipped"
                                 : S_ISSOCK(st.st_mode) ? "not a regular file (socket), skipped"
                                                        : "not a regular file (device), skipped",
                                 err);
            free(rel);
            return rc;
        }
        memset(e, 0, sizeof *e);
        e->kind = DIR_STREAM_FILE;
        e->rel = s->rel;
        e->abs = s->abs;
        e->size = (int64_t)st.st_size;
        e->mtime_sec = (int64_t)st.st_mtim.tv_sec;
        e->mtime_nsec = (int32_t)st.st_mtim.tv_nsec;
        return 1;
    }
}

int64_t dir_stream_folders(const dir_stream *s) { return s->folders; }

void dir_stream_close(dir_stream *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->depth; i++)
        frame_free(&s->stack[i]);
    free(s->stack);
    inode_set_free(&s->seen);
    free(s->ex_dev);
    free(s->ex_ino);
    free(s->root);
    free(s->spill_dir);
    free(s->rel);
    free(s->abs);
    free(s->name);
    free(s);
}
