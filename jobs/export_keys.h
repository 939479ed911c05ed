/* The keys of radbatch export, declared once (docs' key table is generated from them): the
 * struct of typed keys the command reads (x->keys.<key>) and the key table --help prints and
 * the job file is checked against (jobs/job_config.h, OPT_KEYS_STRUCT). */
#ifndef EXPORT_KEYS_H
#define EXPORT_KEYS_H

#include "job_config.h"

/* X(name, type, default, choices, range (lo, hi, flags, what) or NO_RANGE, help) */
#define EXPORT_KEYS(X) \
    X(model, STRING, "", NULL, NO_RANGE, "the model file written by `radbatch train`; several comma-separated files form an ensemble (below). The first positional argument is taken when the key is empty.") \
    X(out, STRING, "", NULL, NO_RANGE, "the ONNX file to write. It is written under a temporary name and renamed, so a failed export leaves no file that looks whole. The folder must exist.") \
    X(quantize, CHOICE, "none", "none|int8", NO_RANGE, "`none` (default): float32 weights and arithmetic. `int8`: a QDQ model ([Int8](#int8)).") \
    X(calibration, STRING, "", NULL, NO_RANGE, "`int8`: the shards folder whose images set the activation ranges; its images must have the model's input size.") \
    X(calibration_split, CHOICE, "train", "train|val|test|all", NO_RANGE, "`int8`: the split of `calibration` to use: `train` (default), `val`, `test` or `all`.") \
    X(calibration_images, INT, "512", NULL, (1, 1e9, 0, "a positive number of images"), "`int8`: at most this many images (default 512), evenly spaced over the split (record `k * n / count`), so the choice is deterministic.")

OPT_KEYS_STRUCT(EXPORT_KEYS, export_keys);

#endif
