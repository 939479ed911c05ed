/* File-system helpers: whole-file reads with a size cap, atomic writes (temp + fsync +
 * rename), directory creation, deterministic recursive listing. */
#ifndef FSUTIL_H
#define FSUTIL_H

#include "rb_error.h"

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* "<path>.tmp.<pid>" (malloc'd): the name a file is written under before its rename. */
char *fs_temp_name(const char *path);

/* Read a whole file into *buf (malloc'd). Fails when larger than max_bytes. */
int fs_read_file(const char *path, size_t max_bytes, uint8_t **buf, size_t *len, rb_error *err);
/* Write bytes to path atomically (temp, fsync, rename). On failure the temp file is removed
 * and a file already at path is left as it was. */
int fs_write_file_atomic(const char *path, const void *data, size_t len, rb_error *err);
/* The first half of that: write bytes to a new temp file (fs_temp_name(path), returned in
 * *tmp, malloc'd) without fsync; the caller fsyncs and renames it later (fs_commit_temp).
 * On failure nothing is left behind. */
int fs_write_temp(const char *path, const void *data, size_t len, char **tmp, rb_error *err);
/* fsync tmp, rename it to path and fsync the folder; on failure tmp is removed. */
int fs_commit_temp(const char *tmp, const char *path, rb_error *err);

/* Finish a file written through stdio to tmp: fflush, fsync, fclose, rename to path (and
 * fsync the folder). f is closed either way; on failure tmp is removed and err names path,
 * the bytes written so far and the reason (fs_write_fail). */
int fs_commit_stream(FILE *f, const char *tmp, const char *path, rb_error *err);

/* A failed write (write, fsync, fclose) of `path` with errno e as an error: the reason, the
 * bytes the file needed when known (need > 0) and the space left on its file system; for a
 * full disk (ENOSPC), an exceeded quota (EDQUOT) or an I/O error (EIO) the hint says what
 * to do and that a rerun of the same command resumes. Returns -1. */
int fs_write_fail_at(rb_error *err, const char *file, int line, const char *path, int e, uint64_t need);
#define fs_write_fail(err, path, e, need) fs_write_fail_at((err), __FILE__, __LINE__, (path), (e), (need))
/* mkdir -p */
int fs_mkdirs(const char *path, rb_error *err);
int fs_is_dir(const char *path);
/* Before any compute: can this run write its outputs to folder `dir`? An existing `dir` must
 * be a folder where a file can be created (tried with a probe file, so read-only mounts,
 * immutable folders and permissions all count, also for root); a missing one must have a
 * nearest existing ancestor that is such a folder. Leaves nothing behind. */
int fs_check_out_dir(const char *dir, rb_error *err);
/* The outermost folder that fs_mkdirs(dir) would create (malloc'd), or NULL when dir exists. */
char *fs_first_missing(const char *dir);
/* Remove `dir` and the folders under it when they hold no file (bottom up); anything that
 * holds a file stays. Returns 1 when dir itself was removed. */
int fs_remove_empty_dirs(const char *dir);
int fs_is_file(const char *path);
/* a/b joined (malloc'd) */
char *fs_join(const char *a, const char *b);

/* Recursive listing of regular files under root, sorted by relative path (byte order),
 * following symbolic links to files and directories but each directory only once (by
 * device and inode), so link loops end. Unreadable directories and broken links are
 * reported through on_error and the walk goes on. */
typedef struct fs_list {
    char **rel;   /* paths relative to root, '/'-separated */
    int64_t n, cap;
} fs_list;
typedef void (*fs_error_fn)(void *user, const char *path, const char *reason);
int fs_walk(const char *root, fs_list *out, fs_error_fn on_error, void *user, rb_error *err);
void fs_list_free(fs_list *l);

#endif
