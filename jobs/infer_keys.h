/* The keys of radbatch infer, declared once (docs' key table is generated from them): the
 * struct of typed keys the command reads (x->keys.<key>) and the key table --help prints and the
 * job file is checked against (jobs/job_config.h, OPT_KEYS_STRUCT). */
#ifndef INFER_KEYS_H
#define INFER_KEYS_H

#include "job_config.h"

/* X(name, type, default, choices, range (lo, hi, flags, what) or NO_RANGE, help) */
#define INFER_KEYS(X) \
    X(model, STRING, "", NULL, NO_RANGE, "model file written by `radbatch train`; several comma-separated files are an ensemble whose probabilities are averaged (same classes and input size). Preprocessing (size, resize mode, DCT scaling), positive class and threshold come from the first model's card") \
    X(input, STRING, "", NULL, NO_RANGE, "an archive folder, a file list (`.txt`: one path per line, `#` comments; `.csv`: the first column, an optional header `path`/`file`/`filename`; relative paths are relative to the list's folder), or a shards folder made by `radbatch convert` (it has an `index.json`)") \
    X(out, STRING, "", NULL, NO_RANGE, "the run folder (created); see *Outputs*") \
    X(since, STRING, "", NULL, NO_RANGE, "folder of an earlier finished infer run: predict only files that are new or changed since its `index.csv` (see *Incremental runs*)") \
    X(change_detection, CHOICE, "stat", "stat|hash", NO_RANGE, "with `since`: `stat` = a file changed when its size or mtime differ; `hash` = when the XXH3-64 hash of its bytes differs (every file is read; a touched or restored file with the same bytes keeps its prediction, a rewrite that kept size and mtime is caught)") \
    X(chunk, INT, "256", NULL, (1, 1000000, 0, "an integer in 1..1000000"), "files per chunk: the unit that ranks take, commit and resume") \
    X(batch, INT, "32", NULL, (1, 1024, 0, "an integer in 1..1024"), "images per forward pass (each pass is one group of consecutive files of a chunk)") \
    X(tta, INT, "0", NULL, OPT_RANGE_TTA, OPT_HELP_TTA) \
    X(threads, INT, "0", NULL, OPT_RANGE_THREADS, "compute threads per rank; `0` = `SLURM_CPUS_PER_TASK`, else `OPENBLAS_NUM_THREADS`/`OMP_NUM_THREADS`, else cores / ranks on the node") \
    X(max_file_mb, FLOAT, "512", NULL, OPT_RANGE_FILE_MB, "larger files are errors, never read") \
    X(max_megapixels, FLOAT, "50", NULL, OPT_RANGE_MEGAPIXELS, "images with more source pixels are errors (decompression bombs)") \
    X(max_error_fraction, FLOAT, "0.1", NULL, OPT_RANGE_ERROR_FRACTION, "exit 1 (outputs still written) when more than this share of the files are errors, or none is usable") \
    X(threshold, STRING, "model", NULL, NO_RANGE, "flagging threshold on the positive class's probability: `model` (the model card's), a probability in [0, 1] such as `0.3`, or `youden`, `sensitivity:<target>`, `specificity:<target>` when the card stores that operating point (`radbatch evaluate --set_threshold`)") \
    X(explain, INT, "0", NULL, (0, 500, 0, "an integer in 0..500"), "Grad-CAM heatmaps of the N most probable flagged images: PNG files in `explain/` of the run folder and inline in `report.html` (image files only, not shards; see *Heatmaps*)") \
    X(quiet, BOOL, "false", NULL, NO_RANGE, "no progress lines")

OPT_KEYS_STRUCT(INFER_KEYS, infer_keys);

#endif
