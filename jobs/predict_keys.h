/* The keys of radbatch predict, declared once (docs' key table is generated from them): the
 * struct of typed keys the command reads (x->keys.<key>) and the key table --help prints and the
 * job file is checked against (jobs/job_config.h, OPT_KEYS_STRUCT). */
#ifndef PREDICT_KEYS_H
#define PREDICT_KEYS_H

#include "job_config.h"

/* X(name, type, default, choices, range (lo, hi, flags, what) or NO_RANGE, help) */
#define PREDICT_KEYS(X) \
    X(model, STRING, "", NULL, NO_RANGE, "model file(s); comma-separated files form an ensemble; else the first positional argument ending in `.h5`") \
    X(json, BOOL, "false", NULL, NO_RANGE, "one JSON object per image per line instead of text") \
    X(tta, INT, "0", NULL, OPT_RANGE_TTA, OPT_HELP_TTA) \
    X(explain, STRING, "", NULL, NO_RANGE, "write a Grad-CAM heatmap overlay (PNG) of each image: with one image the PNG file to write, with several (or when it names a folder) the folder that gets `<n>-<name>.png` per image (n: its place on the command line, name: its file name without extension)") \
    X(threads, INT, "0", NULL, OPT_RANGE_THREADS, "compute threads (0: `SLURM_CPUS_PER_TASK`, else all cores)") \
    X(threshold, STRING, "model", NULL, NO_RANGE, "decision threshold on the positive class's probability (two classes): `model` (the model card's), a probability in [0, 1] such as `0.3`, or `youden`, `sensitivity:<target>`, `specificity:<target>` when the card stores that operating point (`radbatch evaluate --set_threshold`)")

OPT_KEYS_STRUCT(PREDICT_KEYS, predict_keys);

#endif
