/* Training checkpoints (docs/train.md, docs/formats-model.md): <run>/checkpoints/ckpt-<step>.h5 holds weights, BN
 * statistics, optimizer state and the train state; <run>/checkpoints/ckpt-<step>.DONE is
 * written after it, so only checkpoints with a DONE marker count. Rank 0 writes them (temp
 * name, then rename); the two newest complete ones are kept. */
#ifndef TRAIN_CHECKPOINT_H
#define TRAIN_CHECKPOINT_H

#include "rb_error.h"

#include <stdint.h>

/* Path of the newest complete checkpoint in run_dir (malloc'd), or NULL when none. */
char *checkpoint_find_latest(const char *run_dir);
/* Steps of the complete checkpoints in run_dir, ascending (malloc'd; *n = 0 when none). */
int64_t *checkpoint_list_complete(const char *run_dir, int *n);
/* Set a damaged checkpoint aside: its DONE marker goes, then ckpt-<step>.h5 becomes
 * ckpt-<step>.damaged.h5 (kept for inspection, never used again; *aside: its path, malloc'd,
 * or pass NULL). */
int checkpoint_set_aside(const char *run_dir, int64_t step, char **aside, rb_error *err);
/* Path for step (malloc'd). */
char *checkpoint_path(const char *run_dir, int64_t step);
/* Write the DONE marker of `path` and delete complete checkpoints older than the newest
 * `keep` ones. */
int checkpoint_commit(const char *run_dir, const char *path, int keep, rb_error *err);

/* Remove every checkpoint of an earlier run (a fresh start in an existing run_dir). */
void checkpoint_clear(const char *run_dir);

#endif
