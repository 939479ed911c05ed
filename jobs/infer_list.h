/* radbatch infer, rank 0: the listing of the input streamed into chunk files.
 *
 * A thread of rank 0 walks the input (a folder through dir_stream, a file list line by
 * line, or a shards folder record by record) and cuts the entries, in listing order, into
 * work/chunk-000000.csv, chunk-000001.csv, ... of `chunk` entries each (temporary name,
 * fsync, rename: a chunk file that exists is complete and final). Workers take chunk
 * numbers from the shared counter and wait until that chunk file appears, or until
 * work/listing.json says the listing ended before it. Nothing of the listing is kept in
 * memory beyond the chunk being filled.
 *
 * Resume: a complete listing (listing.json with complete = true, and every chunk file
 * matching the checksum recorded there) is reused as is. Otherwise the input is listed
 * again; chunk files of the earlier attempt are first renamed prev-chunk-*.csv, and as
 * each new chunk is written it is compared with the old one: equal, its part file (work
 * already done) is kept; different or absent, the part and errors files of that number are
 * deleted before the new chunk is published. So a part file always belongs to the chunk
 * file of the same number. */
#ifndef INFER_LIST_H
#define INFER_LIST_H

#include "infer_work.h"
#include "rb_error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct infer_lister {
    /* settings */
    char *input;            /* absolute path */
    infer_input_kind kind;
    char *work;             /* <out>/work */
    char *exclude;          /* folder never entered (the output folder), may be NULL */
    int64_t chunk;
    /* progress, read by the main thread */
    atomic_int stop;        /* set by the main thread: end the listing early */
    atomic_int state;       /* 0 running, 1 complete, -1 failed or stopped */
    atomic_llong chunks;    /* chunk files published */
    atomic_llong entries;   /* files listed */
    atomic_llong errors;    /* list errors */
    rb_error err;           /* state -1 after a failure */
    int reused;             /* the listing of an earlier run was complete and is reused */
    pthread_t thread;
    int started;
} infer_lister;

/* Kind of an input path: shards folder (index.json of radbatch-shards), folder, or a
 * .txt/.csv list. */
int infer_input_detect(const char *input, infer_input_kind *kind, rb_error *err);

/* Rank 0, before the workers start: reuse a complete listing (sets reused, state 1) or
 * prepare a new one (earlier chunks renamed prev-chunk-*). */
int infer_list_prepare(infer_lister *l, rb_error *err);
/* Start the listing thread (does nothing when reused). */
int infer_list_start(infer_lister *l, rb_error *err);
/* Wait for the thread to end (after setting stop, it ends at the next entry). */
void infer_list_join(infer_lister *l);
void infer_list_free(infer_lister *l);

/* Any rank: read work/listing.json. Returns 1 when present (chunks, entries, complete
 * filled), 0 when absent, -1 when unreadable. */
int infer_listing_read(const char *work, int64_t *chunks, int64_t *entries, int64_t *list_errors, int *complete);

#endif
