/* The marker of a finished output folder: every command (convert, train, evaluate, infer)
 * writes its outputs under temporary names and, last, `summary.json` (temp name, fsync,
 * rename) with "complete": true and "format": "radbatch-<command>-summary". A folder without
 * it is unfinished, whatever else it holds: consumers (slurm/ scripts, nightly-screen,
 * infer --since, evaluate --run_dir) look for the marker, never for other files. A run
 * removes the marker of an earlier run before it writes anything into the folder. */
#ifndef JOB_MARKER_H
#define JOB_MARKER_H

#include "rb_error.h"

#include <cjson/cJSON.h>

#define JOB_MARKER_FILE "summary.json"

/* Remove <dir>/summary.json (missing is fine). */
int job_marker_clear(const char *dir, rb_error *err);
/* Write <dir>/summary.json: format, version 1, complete true, radbatch version, "hosts"
 * (each rank's host name, in rank order), then the items of `fields` (an object, taken
 * over; may be NULL). */
int job_marker_write(const char *dir, const char *command, cJSON *fields, rb_error *err);
/* Add "hosts" to a summary: each rank's host name in rank order (rb_mpi_host), which shows
 * where a run really ran; nothing before rb_mpi_init. */
void job_marker_add_hosts(cJSON *j);
/* 1 when <dir>/summary.json is complete and (when command is not NULL) that command's. */
int job_marker_done(const char *dir, const char *command);

#endif
