/* Small CSV helpers (RFC 4180 quoting): writing rows to a temp file that is renamed into
 * place when complete, and reading `path,label` lists. */
#ifndef CSV_H
#define CSV_H

#include "rb_error.h"

#include <stdio.h>

typedef struct csv_writer {
    FILE *f;
    char *path, *tmp;
    int ncols, col;
} csv_writer;

/* Opens <path>.tmp.<pid>; csv_writer_close renames it to path. */
int csv_writer_open(csv_writer *w, const char *path, rb_error *err);
void csv_field(csv_writer *w, const char *s); /* quoted when needed */
void csv_field_int(csv_writer *w, long long v);
void csv_field_float(csv_writer *w, double v, int digits);
void csv_end_row(csv_writer *w);
/* flush, fsync, rename; on failure removes the temp file */
int csv_writer_close(csv_writer *w, rb_error *err);
void csv_writer_abort(csv_writer *w);

/* Split one CSV line into at most maxf fields (in place, unquoting). Returns field count. */
int csv_split_line(char *line, char **fields, int maxf);

#endif
