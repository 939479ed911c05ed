/* The keys of radbatch inspect, declared once (docs' key table is generated from them): the
 * struct of typed keys the command reads (x->keys.<key>) and the key table --help prints and the
 * job file is checked against (jobs/job_config.h, OPT_KEYS_STRUCT). */
#ifndef INSPECT_KEYS_H
#define INSPECT_KEYS_H

#include "job_config.h"

/* X(name, type, default, choices, range (lo, hi, flags, what) or NO_RANGE, help) */
#define INSPECT_KEYS(X) \
    X(verify, BOOL, "false", NULL, NO_RANGE, "shards: recompute every record's CRC-32 and compare with the shard and index.json") \
    X(export_image, INT, "-1", NULL, (-1, OPT_NOLIMIT, 0, "-1 (none) or a record number >= 0"), "write record N as PNG (a shard, or the split's shards of a folder in order); a DICOM file: any N >= 0 writes its decoded 8-bit image") \
    X(list, BOOL, "false", NULL, NO_RANGE, "print every record: split, shard, row, label, path") \
    X(diff, STRING, "", NULL, NO_RANGE, "model files: compare every weight with this second model file (max absolute and relative difference; " "NaN/Inf counted per tensor and an error)") \
    X(split, STRING, "train", NULL, NO_RANGE, "split used by export_image on a shards folder") \
    X(image_out, STRING, "record.png", NULL, NO_RANGE, "where export_image writes the PNG")

OPT_KEYS_STRUCT(INSPECT_KEYS, inspect_keys);

#endif
