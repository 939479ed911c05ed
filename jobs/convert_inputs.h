/* Finding the input files of `radbatch convert`: class-per-folder trees, trees with
 * train/val/test subtrees, unlabelled archives and CSV lists, in a deterministic order. */
#ifndef CONVERT_INPUTS_H
#define CONVERT_INPUTS_H

#include "convert_plan.h"
#include "rb_buf.h"
#include "rb_error.h"

typedef enum {
    LAYOUT_AUTO = 0,
    LAYOUT_CLASSES,    /* root/<class>/... */
    LAYOUT_SPLITS,     /* root/{train,val,test}/<class>/... */
    LAYOUT_UNLABELLED, /* root/... every file, label -1 */
    LAYOUT_CSV,        /* a CSV file: path,label[,split] */
} input_layout;

int input_layout_parse(const char *s, input_layout *out);

typedef struct input_set {
    plan_entry *e;
    int64_t n, cap;
    char **class_names;
    int nclasses;
    char **roots;   /* as given */
    int nroots;
    rb_buf errors;  /* "path\0reason\0" pairs for files/folders that could not be listed */
    int64_t nerrors;
} input_set;

/* classes: comma-separated names fixing the label order ("" = sorted folder names). */
int inputs_scan(input_set *in, char *const *roots, int nroots, input_layout layout,
                const char *classes, rb_error *err);
void inputs_free(input_set *in);

/* Serialize entries + class names for the broadcast to other ranks, and back. */
int inputs_pack(const input_set *in, rb_buf *out);
int inputs_unpack(input_set *in, const uint8_t *data, size_t len, rb_error *err);
/* Rank 0's input set, packed by inputs_pack, to every rank (collective): afterwards every
 * rank holds the same set. Frees packed. Returns 0, or JOB_FAILED / JOB_FAILED_ELSEWHERE. */
int inputs_share(input_set *in, rb_buf *packed, int rank, rb_error *err);

#endif
