/* Streaming recursive directory walk in bounded memory, for archives of millions of files.
 *
 * Order: depth-first, the names of each folder sorted by bytes (strcmp), so the same tree
 * always gives the same sequence whatever the file system returns. Symbolic links are
 * followed (to files and to folders), each folder only once by (device, inode), so link
 * loops and second links end; names starting with '.' are skipped (as fs_walk does).
 * Problems are entries of kind DIR_STREAM_ERROR with a reason, and the walk goes on:
 * unreadable folders, broken links, FIFOs/devices/sockets, folders seen before (loops).
 *
 * Memory: only the folders on the current path are open, each holding at most
 * `max_names` of its names in memory; a folder with more names is sorted in runs of
 * `max_names` spilled to unlinked temporary files in `spill_dir` and merged while walking
 * (an external sort), one name per run in memory. So memory is about
 *     depth x max_names x name length  +  16 bytes x folders visited (the loop guard),
 * and does not grow with the number of files. */
#ifndef DIR_STREAM_H
#define DIR_STREAM_H

#include "rb_error.h"

#include <stdint.h>

typedef enum {
    DIR_STREAM_FILE = 1,  /* a regular file (possibly through a link) */
    DIR_STREAM_ERROR = 2, /* something that could not be listed; `reason` says why */
} dir_stream_kind;

typedef struct dir_stream_entry {
    dir_stream_kind kind;
    const char *rel;    /* '/'-separated path relative to the root; valid until the next call */
    const char *abs;    /* root joined with rel */
    int64_t size;       /* bytes (files) */
    int64_t mtime_sec;  /* modification time (files) */
    int32_t mtime_nsec;
    const char *reason; /* errors */
} dir_stream_entry;

typedef struct dir_stream_opts {
    const char *spill_dir; /* where big folders spill sorted runs; NULL = "/tmp" */
    int max_names;         /* names of one folder held in memory; 0 = 16384 */
} dir_stream_opts;

typedef struct dir_stream dir_stream;

/* root must be a folder. opts may be NULL. */
int dir_stream_open(dir_stream **s, const char *root, const dir_stream_opts *opts, rb_error *err);
/* Never enter this folder (e.g. the output folder when it lies inside the input). */
void dir_stream_exclude(dir_stream *s, const char *folder);
/* 1: *e holds the next entry; 0: the walk is complete; -1: fatal (out of memory, cannot
 * spill), err set. */
int dir_stream_next(dir_stream *s, dir_stream_entry *e, rb_error *err);
/* Folders entered so far (for progress lines). */
int64_t dir_stream_folders(const dir_stream *s);
void dir_stream_close(dir_stream *s);

#endif
