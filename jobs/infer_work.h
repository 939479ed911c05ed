/* radbatch infer: the files under the run folder's "work" subfolder and the small CSV tools every phase uses.
 *
 *   work/run.json              settings that shape the parts (input, kind, chunk, models'
 *                              fingerprint, tta, since, change_detection); a rerun must match
 *   work/chunk-000123.csv      listing chunk 123: path,size,mtime,hash,ref (no header)
 *   work/list-errors.csv       what the listing could not list: path,reason (no header)
 *   work/listing.json          written last by the lister: chunk and entry counts, complete
 *   work/part-000123.csv       results of chunk 123, sorted by path (no header):
 *                              path,size,mtime,hash,status,predicted_label,prob_<c>...,flagged
 *   work/errors-000123.csv     errors of chunk 123, sorted by path: path,reason
 * A chunk is done exactly when its part file exists (written to a temporary name, fsynced,
 * renamed; its errors file is renamed first). */
#ifndef INFER_WORK_H
#define INFER_WORK_H

#include "csv.h"
#include "rb_buf.h"
#include "rb_error.h"

#include <stdint.h>
#include <stdio.h>

#define INFER_CHUNK_DIGITS 6

typedef enum { INFER_INPUT_FOLDER = 0, INFER_INPUT_LIST, INFER_INPUT_SHARDS } infer_input_kind;
const char *infer_input_kind_name(infer_input_kind k);

/* "<work>/<prefix>-000123.csv" (malloc'd) */
char *infer_chunk_path(const char *work, const char *prefix, int64_t k);

/* One CSV record (RFC 4180: quoted fields may hold commas, quotes and newlines) read into
 * rec (its bytes, newline included, NUL-terminated). Returns 1, 0 at end of file, -1 on
 * out of memory. */
int csvrec_read(FILE *f, rb_buf *rec);
/* A record read by csvrec_read is split into fields by csv_split_line (io/csv.h). */
/* The first field of a record, unquoted, into out (malloc'd growth via rb_buf). */
int csvrec_key(const char *rec, rb_buf *out);
/* Append one field to a row being built ("," before all but the first), quoted as needed. */
void csvrow_field(rb_buf *row, const char *s, int first);

/* One listing entry: the row of a chunk file. */
typedef struct infer_entry {
    char *path;   /* as reported in predictions.csv */
    int64_t size;
    char mtime[32]; /* "seconds.nanoseconds" */
    char hash[17];  /* XXH3-64 hex, or "" when not known yet */
    char *ref;    /* what to open: a file path, or "<shard file>#<record>" */
} infer_entry;

/* Parse a chunk row (fields of csv_split_line); pointers point into the record. */
int infer_entry_parse(char **fields, int nf, infer_entry *e);
void infer_entry_format(rb_buf *row, const char *path, int64_t size, const char *mtime, const char *hash,
                        const char *ref);

/* mtime text from seconds + nanoseconds */
void infer_mtime_text(char out[32], int64_t sec, int32_t nsec);
/* XXH3-64 of bytes as 16 hex digits */
void infer_hash_hex(const void *data, size_t len, char out[17]);

/* Write a file atomically and fsync its folder entry. */
int infer_write_atomic(const char *path, const void *data, size_t len, rb_error *err);

#endif
