/* The keys of radbatch train, declared once (docs/train.md "Keys" is generated from them):
 * the struct of typed keys every part of train reads (x->keys.batch_size) and the key table
 * --help prints and the job file is checked against (jobs/job_config.h, OPT_KEYS_STRUCT). */
#ifndef TRAIN_KEYS_H
#define TRAIN_KEYS_H

#include "job_config.h"

/* X(name, type, default, choices, range (lo, hi, flags, what) or NO_RANGE, help) */
#define TRAIN_KEYS(X) \
    /* data */ \
    X(shards, STRING, "", NULL, NO_RANGE, "shards folder written by radbatch convert") \
    X(train_split, STRING, "train", NULL, NO_RANGE, "split to train on (never test)") \
    X(val_split, STRING, "val", NULL, NO_RANGE, "split to validate on every epoch (empty: none; never test)") \
    X(run_dir, STRING, "", NULL, NO_RANGE, "output folder: model.h5, best.h5, history.csv, checkpoints/") \
    X(cache_mb, INT, "4096", NULL, (0, 1 << 30, 0, "0 or a positive number of MiB"), "keep a split in memory when its pixels fit in this many MiB per rank") \
    /* model */ \
    X(backbone, CHOICE, "mobilenetv2", "mobilenetv2|cnn", NO_RANGE, "base network (cnn = the seed-001 CNN)") \
    X(weights, STRING, "", NULL, NO_RANGE, "pretrained Keras weights for the base (.h5, .weights.h5 or .keras), matched by layer name") \
    X(weights_partial, BOOL, "false", NULL, NO_RANGE, "accept a weight file that fits only part of the base (the rest stays random); false: that is an error") \
    X(init_model, STRING, "", NULL, NO_RANGE, "start from this radbatch model file instead (same architecture)") \
    X(head_pooling, CHOICE, "auto", "auto|gap|flatten", NO_RANGE, "after the base (auto: gap for mobilenetv2, flatten for cnn)") \
    X(head_dropout, FLOAT, "-1", NULL, (0, 1, RANGE_HI_OPEN | RANGE_OR_MINUS_ONE, "-1 (the backbone's default) or a rate in [0, 1)"), "dropout after pooling (-1: 0.3 for mobilenetv2, 0 for cnn)") \
    X(head_units, STRING, "auto", NULL, NO_RANGE, "hidden Dense units, comma-separated (auto: 128 for mobilenetv2, 512 for cnn)") \
    X(head_activation, CHOICE, "relu", "relu|relu6|linear", NO_RANGE, "activation of the hidden Dense layers") \
    X(head_dense_dropout, FLOAT, "0", NULL, (0, 1, RANGE_HI_OPEN, "a rate in [0, 1)"), "dropout after each hidden Dense layer") \
    X(output, CHOICE, "softmax", "softmax|sigmoid", NO_RANGE, "softmax over the classes, or one sigmoid unit (two classes)") \
    X(freeze_base, BOOL, "true", NULL, NO_RANGE, "train only the head in the first stage (mobilenetv2)") \
    X(base_training, BOOL, "false", NULL, NO_RANGE, "base BatchNorms use batch statistics when trainable (Keras base_model(x, training=True))") \
    /* optimisation */ \
    X(epochs, INT, "3", NULL, (0, 1000000, 0, "an integer in 0..1000000"), "epochs of the first stage") \
    X(batch_size, INT, "32", NULL, (1, 1 << 20, 0, "an integer in 1..1048576"), "global batch size (split over the ranks)") \
    X(optimizer, CHOICE, "adam", "adam|sgd|rmsprop", NO_RANGE, "optimizer with Keras' defaults") \
    X(learning_rate, FLOAT, "1e-4", NULL, (0, OPT_NOLIMIT, RANGE_LO_OPEN, "a positive number"), "learning rate of the first stage") \
    X(momentum, FLOAT, "0", NULL, (0, 1, RANGE_HI_OPEN, "a number in [0, 1)"), "SGD/RMSprop momentum") \
    X(nesterov, BOOL, "false", NULL, NO_RANGE, "SGD Nesterov momentum") \
    X(loss, CHOICE, "auto", "auto|sparse_categorical_crossentropy|binary_crossentropy", NO_RANGE, "auto: sparse categorical CE for softmax, binary CE for sigmoid") \
    X(class_weight, STRING, "none", NULL, NO_RANGE, "none, balanced (n/(k*n_c) as sklearn), or one weight per class, comma-separated") \
    X(label_smoothing, FLOAT, "0", NULL, (0, 1, RANGE_HI_OPEN, "a number in [0, 1)"), "label smoothing of the loss") \
    X(l2, FLOAT, "0", NULL, (0, OPT_NOLIMIT, 0, "a number >= 0"), "L2 on trainable Conv2D/Dense kernels (loss += l2*sum(w^2))") \
    X(seed, INT, "123", NULL, NO_RANGE, "seed of initialisation, shuffle, augmentation and dropout") \
    X(shuffle, BOOL, "true", NULL, NO_RANGE, "shuffle the training records every epoch") \
    /* augmentation (docs/augment.md) */ \
    X(rotation, FLOAT, "0", NULL, (0, 180, 0, "degrees in [0, 180]"), "random rotation range, degrees") \
    X(width_shift, FLOAT, "0", NULL, (0, 10000, 0, "a fraction of the width in [0, 1) or pixels >= 1"), "random horizontal shift range, fraction of the width") \
    X(height_shift, FLOAT, "0", NULL, (0, 10000, 0, "a fraction of the height in [0, 1) or pixels >= 1"), "random vertical shift range, fraction of the height") \
    X(shear, FLOAT, "0", NULL, (0, 80, 0, "degrees in [0, 80]"), "random shear range, degrees") \
    X(zoom, FLOAT, "0", NULL, (0, 0.95, 0, "a number in [0, 0.95]"), "random zoom range z: scale in [1-z, 1+z]") \
    X(horizontal_flip, BOOL, "false", NULL, NO_RANGE, "random horizontal flips") \
    X(vertical_flip, BOOL, "false", NULL, NO_RANGE, "random vertical flips") \
    X(rot90, BOOL, "false", NULL, NO_RANGE, "random multiples of 90 degrees") \
    X(crop, FLOAT, "0", NULL, (0.05, 1, RANGE_OR_ZERO, "0 (off) or the share of each side kept, in [0.05, 1]"), "random crop keeping this share of each side, resized back (0: none)") \
    X(brightness, FLOAT, "0", NULL, (0, 1, 0, "a number in [0, 1]"), "random brightness change range (fraction)") \
    X(contrast, FLOAT, "0", NULL, (0, 1, 0, "a number in [0, 1]"), "random contrast change range (fraction)") \
    X(fill_mode, CHOICE, "nearest", "nearest|constant|reflect", NO_RANGE, "how pixels outside the image are filled") \
    X(fill_value, FLOAT, "0", NULL, (0, 255, 0, "a gray level in [0, 255]"), "pixel value for fill_mode = constant (Keras cval)") \
    /* callbacks */ \
    X(best_metric, CHOICE, "val_loss", "val_loss|val_accuracy|val_auc|loss", NO_RANGE, "metric that picks the best model (min for losses, max otherwise)") \
    X(early_stopping_patience, INT, "0", NULL, (0, 1000000, 0, "0 (off) or a number of epochs"), "stop after this many epochs without improvement (0: off)") \
    X(restore_best, BOOL, "true", NULL, NO_RANGE, "the final model gets the best epoch's weights") \
    X(reduce_lr_patience, INT, "0", NULL, (0, 1000000, 0, "0 (off) or a number of epochs"), "reduce the learning rate after this many epochs without improvement (0: off)") \
    X(reduce_lr_factor, FLOAT, "0.2", NULL, (0, 1, RANGE_LO_OPEN | RANGE_HI_OPEN, "a factor in (0, 1)"), "factor of the reduction") \
    X(min_lr, FLOAT, "0", NULL, (0, OPT_NOLIMIT, 0, "a number >= 0"), "learning rate floor of the reduction") \
    /* fine-tuning stage (seed 003) */ \
    X(fine_tune_epochs, INT, "0", NULL, (0, 1000000, 0, "an integer in 0..1000000"), "epochs of a second stage with the top of the base unfrozen (0: none)") \
    X(fine_tune_fraction, FLOAT, "0.3", NULL, (0, 1, 0, "a fraction in [0, 1]"), "share of the base's layers (from the top) trained in the second stage") \
    X(fine_tune_learning_rate, FLOAT, "1e-5", NULL, (0, OPT_NOLIMIT, RANGE_LO_OPEN, "a positive number"), "learning rate of the second stage (fresh optimizer state)") \
    /* distributed, checkpoints */ \
    X(sync_bn, BOOL, "false", NULL, NO_RANGE, "trainable BatchNorm uses statistics of the global batch (sum over ranks)") \
    X(threads, INT, "0", NULL, OPT_RANGE_THREADS, "compute threads per rank (0: SLURM_CPUS_PER_TASK or cores / ranks on the node; at most 64); the start line `N rank(s) x T thread(s)` shows the number used") \
    X(checkpoint_every_steps, INT, "0", NULL, (0, OPT_NOLIMIT, 0, "0 (epoch ends only) or a number of steps"), "also checkpoint every N steps (0: only at epoch ends)") \
    X(resume, BOOL, "false", NULL, NO_RANGE, "continue from the newest complete checkpoint in run_dir") \
    X(overwrite, BOOL, "false", NULL, NO_RANGE, "start afresh in a run_dir that holds an earlier run (false: such a run_dir is refused unless resume = true)") \
    X(feature_cache, CHOICE, "auto", "auto|true|false", NO_RANGE, "with a frozen base and no augmentation, compute base features once and train the head on them") \
    X(calibrate, CHOICE, "none", "none|temperature", NO_RANGE, "after training, fit one temperature T on the val split (the T minimising the val NLL of softmax(logits / T), or of the sigmoid); stored in the model card, applied by evaluate, predict and infer") \
    X(positive_class, STRING, "", NULL, NO_RANGE, "class whose sensitivity is reported (default: the last class, e.g. PNEUMONIA)") \
    X(max_steps, INT, "0", NULL, (0, OPT_NOLIMIT, 0, "0 (no limit) or a number of steps"), "stop after this many steps in total (0: no limit; for tests and smoke runs)") \
    X(model_summary, CHOICE, "short", "short|full", NO_RANGE, "the model in the log: one line (layers, params, trainable), or Keras' full per-layer table") \
    X(quiet, BOOL, "false", NULL, NO_RANGE, "no progress lines")

OPT_KEYS_STRUCT(TRAIN_KEYS, train_keys);

#endif
