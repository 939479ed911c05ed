/* The keys of radbatch convert, declared once (docs' key table is generated from them): the
 * struct of typed keys the command reads (x->keys.<key>) and the key table --help prints and the
 * job file is checked against (jobs/job_config.h, OPT_KEYS_STRUCT). */
#ifndef CONVERT_KEYS_H
#define CONVERT_KEYS_H

#include "job_config.h"

/* X(name, type, default, choices, range (lo, hi, flags, what) or NO_RANGE, help) */
#define CONVERT_KEYS(X) \
    X(inputs, STRING, "", NULL, NO_RANGE, "comma-separated input folders or CSV lists; positional arguments are added") \
    X(out, STRING, "", NULL, NO_RANGE, "output folder (created); empty: `shards`") \
    X(shards, STRING, "", NULL, NO_RANGE, "the pipeline's shards folder (the key `train` and `evaluate` read): the output folder unless `out` is given at the same or a higher level") \
    X(layout, CHOICE, "auto", "auto|classes|splits|unlabelled|csv", NO_RANGE, "how the inputs are organised (see Inputs above; `auto`: detected)") \
    X(classes, STRING, "", NULL, NO_RANGE, "comma-separated class names in label order; default: sorted folder names") \
    X(height, INT, "224", NULL, (1, 8192, 0, "an integer in 1..8192"), "output height") \
    X(width, INT, "224", NULL, (1, 8192, 0, "an integer in 1..8192"), "output width") \
    X(channels, INT, "3", NULL, (1, 3, RANGE_ONE_OR_THREE, "1 (gray) or 3 (RGB)"), "output channels: 1 (gray) or 3 (RGB; gray is replicated)") \
    X(resize, CHOICE, "stretch", "stretch|pad|center-crop", NO_RANGE, "`stretch` (each axis to size, as Keras), `pad` (keep aspect, fit inside, black borders, centred), `center-crop` (keep aspect, cover, crop the centre)") \
    X(dct_scaling, BOOL, "true", NULL, NO_RANGE, "decode JPEGs with libjpeg-turbo's DCT-domain scaling (M/8) to the smallest size still ≥ what the resize needs") \
    X(val_fraction, FLOAT, "0.2", NULL, (0, 1, RANGE_HI_OPEN, "a fraction in [0, 1)"), "share of the records put in the val split (ignored when the input gives train/val/test folders)") \
    X(test_fraction, FLOAT, "0", NULL, (0, 1, RANGE_HI_OPEN, "a fraction in [0, 1)"), "share of the records held out in the test split, grouped and stratified like val (0: no test split; ignored when the input gives train/val/test folders)") \
    X(seed, INT, "123", NULL, NO_RANGE, "seed of the split and of the record shuffle") \
    X(group_regex, STRING, "", NULL, NO_RANGE, "POSIX extended regex on the file name; first group = patient id; warned about when it matches under 95 % of the files; invalid: exit 2") \
    X(stratify, BOOL, "true", NULL, NO_RANGE, "split each class separately") \
    X(dedupe, BOOL, "false", NULL, NO_RANGE, "drop all but the first of byte-identical files") \
    X(shard_size_mb, FLOAT, "64", NULL, (0, OPT_NOLIMIT, RANGE_LO_OPEN, "a positive number of MiB"), "target pixel bytes per shard, MiB") \
    X(min_shards, INT, "1", NULL, (1, 1000000, 0, "an integer in 1..1000000"), "at least this many shards per split (given enough records)") \
    X(compression, INT, "0", NULL, (0, 9, 0, "a deflate level 0..9 (0: none)"), "deflate level 0-9 for /images (0 = none: fastest to read)") \
    X(max_error_fraction, FLOAT, "0.1", NULL, OPT_RANGE_ERROR_FRACTION, "exit non-zero above this share of failed inputs") \
    X(max_megapixels, FLOAT, "50", NULL, OPT_RANGE_MEGAPIXELS, "reject larger source images before decoding") \
    X(max_file_mb, FLOAT, "512", NULL, OPT_RANGE_FILE_MB, "reject larger files before reading") \
    X(overwrite, BOOL, "false", NULL, NO_RANGE, "rebuild every shard") \
    X(quiet, BOOL, "false", NULL, NO_RANGE, "no progress or warning lines")

OPT_KEYS_STRUCT(CONVERT_KEYS, convert_keys);

#endif
