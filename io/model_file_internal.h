/* Inside the model file code (model_file.c reads, model_file_save.c writes,
 * model_file_hash.c checksums). Not for other callers. */
#ifndef MODEL_FILE_INTERNAL_H
#define MODEL_FILE_INTERNAL_H

#include "model_file.h"

#include <hdf5.h>

#include <stdint.h>

/* Checksums are XXH3-64 of the bytes as stored (float32 little-endian for tensors). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the model file code hashes tensors in memory order, which is the file order only on little-endian hosts"
#endif

uint64_t mf_text_hash(const char *s);
/* each name followed by a NUL byte, so ["ab","c"] and ["a","bc"] differ */
uint64_t mf_names_hash(const char *const *v, int n);
/* /optimizer's attributes as one text: "kind\nstep\nconfig" */
uint64_t mf_optimizer_hash(const char *kind, int64_t step, const char *config);
/* /train_state's attributes as one text (best_metric in hexadecimal float notation) */
uint64_t mf_train_state_hash(const model_file_train_state *t);
/* obj@name = h as 16 hex digits. 0 or -1. */
int mf_attr_write_hash(hid_t obj, const char *name, uint64_t h);
/* Compare obj@name (16 hex digits) with h. 0 when equal; otherwise -1 with an error that
 * names the file and `what`. */
int mf_attr_check_hash(hid_t obj, const char *name, uint64_t h, const char *path,
                       const char *what, rb_error *err);

#endif
