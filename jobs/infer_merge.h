/* radbatch infer, rank 0: merge the part files into the run's outputs, in bounded memory.
 *
 * Part files are sorted by path; a k-way merge (at most INFER_MERGE_FANIN files open at a
 * time; more parts are merged in passes through work/merge/) streams every row once, in
 * path order, ties in chunk order, and writes:
 *   predictions.csv  rows predicted in this run (new or changed)
 *   flagged.csv      those at or above the threshold on the positive class
 *   index.csv/.idx   every listed file with its latest prediction (the cumulative index)
 *   errors.csv       listing errors and per-chunk errors, merged the same way
 *   summary.json, report.html
 *   explain/         Grad-CAM heatmaps of the most probable flagged images (explain > 0)
 * All of them are written complete into work/merge/ first, then renamed into the run folder
 * together, then summary.json (the marker of a finished run) is written last; a kill at any
 * point leaves no summary.json, and rerunning the command merges again. */
#ifndef INFER_MERGE_H
#define INFER_MERGE_H

#include "rb_error.h"

#include <stddef.h>
#include <stdint.h>

#define INFER_MERGE_FANIN 64
#define INFER_HIST_BINS 20
#define INFER_REPORT_ROWS 500

typedef struct infer_merge_cfg {
    const char *out, *work;
    int64_t nchunks;
    int nclasses;
    char *const *class_names;
    int positive;
    double threshold;
    const char *threshold_rule;   /* the `threshold` key: "model", "0.3", "sensitivity:0.95" */
    const char *threshold_source; /* where the value came from */
    const char *since;          /* previous run folder, or NULL */
    /* for summary.json and the report */
    const char *input, *kind, *change_detection;
    int64_t files_listed, list_errors;
    int tta, batch, ranks, threads;
    int64_t chunk;
    int nmodels;
    char *const *model_paths;
    const char *model_fingerprint;
    const char *card;           /* JSON text or NULL */
    double infer_seconds;       /* wall time of this invocation's inference phase */
    int64_t images_this_run;    /* images decoded and predicted by this invocation */
    double peak_rss_mb;         /* max over ranks */
    int resumed;                /* some chunks were done by an earlier invocation */
    /* Grad-CAM heatmaps of the `explain` most probable flagged images (0: none), made here,
     * in the merge, by explain_fn: 0 with *png (malloc'd PNG bytes), 1 when the image
     * cannot be read any more (reason in err; skipped), -1 on failure */
    int explain;
    int (*explain_fn)(void *ctx, const char *path, uint8_t **png, size_t *len, rb_error *err);
    void *explain_ctx;
} infer_merge_cfg;

/* The heatmaps' folder in the run folder (and in work/merge/ while the merge writes it). */
#define INFER_EXPLAIN_DIR "explain"
/* Remove the files of a folder without subfolders, then the folder (0 also when absent). */
int infer_remove_flat_dir(const char *dir);

typedef struct infer_merge_result {
    int64_t predicted, unchanged, new_files, changed, removed, flagged, errors;
    int64_t *per_class;         /* [nclasses], malloc'd */
    int64_t hist[INFER_HIST_BINS];
} infer_merge_result;

/* The run folder's outputs besides summary.json, in the order they are published. */
extern const char *const infer_outputs[];

int infer_merge_outputs(const infer_merge_cfg *c, infer_merge_result *r, rb_error *err);
void infer_merge_result_free(infer_merge_result *r);

#endif
