/* radbatch infer: the cumulative index of a run (index.csv + index.idx) and look-ups in
 * the index of a previous run (--since).
 *
 *   index.csv  header, then one row per file listed and predicted, sorted by path:
 *              path,size,mtime,hash,predicted_label,prob_<class>...,flagged
 *   index.idx  "RBINFIDX", uint32 version 1, uint32 0, uint64 rows, then rows x uint64:
 *              the byte offset of each data row of index.csv (native byte order)
 * A look-up is a binary search over index.idx with pread: nothing of the index is held in
 * memory, so a nightly run over millions of unchanged files stays small. */
#ifndef INFER_INDEX_H
#define INFER_INDEX_H

#include "rb_buf.h"
#include "rb_error.h"

#include <stdint.h>
#include <stdio.h>

#define INFER_INDEX_MAGIC "RBINFIDX"
#define INFER_INDEX_MAX_FIELDS 80

typedef struct infer_prev {
    int fd_csv, fd_idx;
    int64_t n;
    int nfields;       /* columns of a row */
    rb_buf rec, key;
    char *fields[INFER_INDEX_MAX_FIELDS];
} infer_prev;

/* Open <run>/index.csv and index.idx; the header must name the same classes. */
int infer_prev_open(infer_prev *p, const char *run_dir, int nclasses, char *const *class_names, rb_error *err);
/* 1: found, p->fields[0..nfields) hold the row (valid until the next call); 0: not in the
 * index; -1: read error. */
int infer_prev_find(infer_prev *p, const char *path, rb_error *err);
void infer_prev_close(infer_prev *p);

/* Writing index.csv + index.idx (temporary names, renamed by close). */
typedef struct infer_index_writer {
    FILE *csv, *idx;
    char *csv_path, *idx_path, *csv_tmp, *idx_tmp;
    uint64_t offset, rows;
} infer_index_writer;

int infer_index_open(infer_index_writer *w, const char *out_dir, const char *header, rb_error *err);
int infer_index_add(infer_index_writer *w, const char *row, size_t len); /* row ends in '\n' */
int infer_index_close(infer_index_writer *w, rb_error *err);
void infer_index_abort(infer_index_writer *w);

#endif
