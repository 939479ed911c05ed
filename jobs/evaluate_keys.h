/* The keys of radbatch evaluate, declared once (docs' key table is generated from them): the
 * struct of typed keys the command reads (x->keys.<key>) and the key table --help prints and the
 * job file is checked against (jobs/job_config.h, OPT_KEYS_STRUCT). */
#ifndef EVALUATE_KEYS_H
#define EVALUATE_KEYS_H

#include "job_config.h"

/* X(name, type, default, choices, range (lo, hi, flags, what) or NO_RANGE, help) */
#define EVALUATE_KEYS(X) \
    X(model, STRING, "", NULL, NO_RANGE, "model file(s) from `radbatch train`; comma-separated files form an ensemble; a positional argument ending in `.h5` is added") \
    X(data, STRING, "", NULL, NO_RANGE, "a shards folder, or comma-separated image folders; other positional arguments are added") \
    X(shards, STRING, "", NULL, NO_RANGE, "the pipeline's shards folder (the key `convert` and `train` use): evaluated when `data` is empty") \
    X(run_dir, STRING, "", NULL, NO_RANGE, "the training run folder (as in `train`): `model` defaults to `run_dir/model.h5`, `out` to `run_dir/evaluate`") \
    X(split, STRING, "val", NULL, NO_RANGE, "split of a shards folder (train, val, test, or all for a folder converted without splits), or of `train/val/test` image folders (`all`: every split)") \
    X(layout, CHOICE, "auto", "auto|classes|splits", NO_RANGE, "image folders: `classes` (class folders), `splits` (train/val/test folders of class folders), `auto` (detect)") \
    X(out, STRING, "", NULL, NO_RANGE, "output folder (created)") \
    X(tta, INT, "0", NULL, OPT_RANGE_TTA, OPT_HELP_TTA) \
    X(threshold, STRING, "model", NULL, NO_RANGE, "screening threshold on the positive class's probability: `model` (the model card's operating point), a probability in [0, 1] such as `0.3`, or a rule on this data: `youden`, `sensitivity:<target>` (largest threshold with sensitivity >= target), `specificity:<target>`") \
    X(set_threshold, STRING, "", NULL, NO_RANGE, "write a copy of the model to this file whose card records the threshold used here, how and on which data and split it was chosen, and the sensitivity and specificity measured there") \
    X(positive_class, STRING, "", NULL, NO_RANGE, "screening class (default: the card's for two classes; none for more)") \
    X(bootstrap, INT, "1000", NULL, (0, 1000000, 0, "0 (none) or a number of resamples, e.g. 1000"), "bootstrap resamples for the 95% confidence intervals (0: none)") \
    X(seed, INT, "123", NULL, NO_RANGE, "seed of the bootstrap resamples and of the stress test's noise") \
    X(stress, BOOL, "false", NULL, NO_RANGE, "re-score the data under seeded shifts (contrast, gamma, blur, noise, resolution, zoom, inverted polarity) at several severities and report AUC, sensitivity and specificity for each (needs a screening class; one more pass over the data per shift and severity)") \
    X(digits, INT, "2", NULL, (0, 12, 0, "0 to 12 (scikit-learn's default is 2)"), "digits of classification_report.txt (scikit-learn's default 2)") \
    X(history, STRING, "", NULL, NO_RANGE, "`history.csv` for the training curves (default: next to the first model file; `none`: no curves)") \
    X(batch_size, INT, "16", NULL, (1, 1024, 0, "an integer in 1..1024"), "images per model thread in a forward pass; results depend on it in the last float digits, not on ranks or threads") \
    X(threads, INT, "0", NULL, OPT_RANGE_THREADS, "compute threads per rank (0: `SLURM_CPUS_PER_TASK`, else cores / ranks on the node)") \
    X(gallery, INT, "12", NULL, (0, 100, 0, "an integer in 0..100"), "report.html: at most this many false positives and as many false negatives at the operating point, each with its thumbnail, Grad-CAM heatmap, probability and path (two classes; 0: no galleries)") \
    X(quiet, BOOL, "false", NULL, NO_RANGE, "no progress lines or per-image warnings")

OPT_KEYS_STRUCT(EVALUATE_KEYS, evaluate_keys);

#endif
