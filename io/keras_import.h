/* Keras weight import: load the weights of a Keras model file into a radbatch model's
 * parameter views (src/model_params.h), matched by layer name, every shape checked.
 *
 * Accepted files (the format is found from the content, never the extension):
 *   - Keras 2 / tf-keras `save_weights('x.h5')` and keras-applications files: root
 *     attribute `layer_names`, per-layer `weight_names`, datasets `<layer>/<layer>/<w>:0`;
 *   - `model.save('x.h5')` (Keras 2 or Keras 3): the same layout under /model_weights
 *     (Keras 3 writes weight names without ":0");
 *   - Keras 3 `.weights.h5`: `layers/<path>/vars/<i>` (positional), the layer's name in the
 *     `name` attribute of `vars` when the writer stored it;
 *   - the `.keras` archive (zip of config.json + model.weights.h5), read with libzip; its
 *     config.json names the layers and the positional variables.
 * Nested models (a Functional backbone used as one layer) are flattened: the backbone's
 * layers match by their own names ("Conv1", "bn_Conv1", ...), as if the model were flat.
 * See docs/formats-model.md for the layouts and the matching rules. */
#ifndef KERAS_IMPORT_H
#define KERAS_IMPORT_H

#include "model_params.h"
#include "rb_error.h"

#include <stdint.h>

typedef enum {
    KERAS_FORMAT_UNKNOWN = 0,
    KERAS_FORMAT_H5,         /* save_weights() .h5: layer_names at the root */
    KERAS_FORMAT_H5_MODEL,   /* model.save() .h5: the same under /model_weights */
    KERAS_FORMAT_WEIGHTS_H5, /* Keras 3 .weights.h5 */
    KERAS_FORMAT_ARCHIVE,    /* Keras 3 / tf-keras .keras zip */
} keras_format;

const char *keras_format_name(keras_format f); /* "keras-h5", "keras-h5-model", ... */

/* One weight tensor in the file. */
typedef struct keras_tensor_info {
    char *name;         /* "kernel", "moving_mean"; NULL when the file does not say
                         * (Keras 3 vars/<i> of a layer whose class is unknown) */
    char *dataset;      /* HDF5 path of the dataset inside the weight file */
    int ndim;
    int64_t shape[8];
    int is_float;       /* 0: integer state (RNG seeds), never a weight */
} keras_tensor_info;

/* One layer of the file, nested models flattened. */
typedef struct keras_layer_info {
    char *name;   /* Keras layer name: "bn_Conv1" */
    char *alias;  /* a second name it answers to, or NULL (see docs: legacy groups whose
                   * weight names carry another layer name) */
    char *klass;  /* Keras class name when the file says ("BatchNormalization"), or NULL */
    char *where;  /* where it sits in the file, for messages: "mobilenetv2_1.00_160/Conv1" */
    int n;        /* weight tensors (0 for ReLU, Add, ...) */
    keras_tensor_info *t;
} keras_layer_info;

typedef struct keras_file {
    char *path;
    keras_format format;
    char keras_version[32]; /* "2.2.4", "3.15.1"; "" when the file does not say */
    int n_layers;
    keras_layer_info *layers; /* in file order (name order of HDF5 groups for Keras 3) */
    int64_t h5;               /* hid_t of the open weight file (or in-memory image);
                               * dataset paths are absolute in it */
} keras_file;

/* Open and index a Keras weight file (any format above). Reads no weight values. */
int keras_file_open(const char *path, keras_file **out, rb_error *err);
void keras_file_close(keras_file *kf);

/* Read one tensor (n values, converted to float32) into dst. */
int keras_file_read(const keras_file *kf, const keras_tensor_info *t, float *dst, int64_t n,
                    rb_error *err);

/* Options of keras_import_load (bit flags). */
enum {
    /* A model layer with weights that the file lacks is left at its initial values and
     * listed in the report (a new head) instead of failing. */
    KERAS_IMPORT_SKIP_MISSING = 1u << 0,
    /* A layer whose weights differ in count or shape from the file's is left at its
     * initial values and reported (a head with another number of classes). */
    KERAS_IMPORT_SKIP_MISMATCH = 1u << 1,
    /* The file must hold exactly the model's weighted layers: a file layer with weights
     * that the model does not take, or a known class that differs, is an error. */
    KERAS_IMPORT_STRICT = 1u << 2,
};

typedef struct keras_import_report {
    keras_format format;
    char keras_version[32];
    int n_tensors;        /* tensors loaded */
    int64_t n_values;     /* float values loaded */
    int n_layers_loaded;  /* model layers that received weights */
    int n_skipped;        /* model layers left at their initial values */
    char **skipped;       /* "dense_1: not in the file", "dense_1: kernel [7, 3] in the
                           * file, [7, 2] in the model" */
    int n_unused;         /* file layers with weights that no model layer took */
    char **unused;        /* their names */
    int n_tensors_model;  /* the model's tensors (n_views): "loaded n_tensors of these" */
    int n_tensors_skipped; /* tensors of the skipped layers */
    char **skipped_layer; /* [n_skipped] the model layer of each skipped[] entry */
} keras_import_report;

void keras_import_report_free(keras_import_report *r);

/* Load `path` into views[0..n_views) by layer name. layers[0..n_layers) (the model's layer
 * list with Keras class names) may be NULL; when given, STRICT also checks classes. On
 * error nothing is guaranteed about the views' contents (some layers may be loaded): the
 * caller treats the model as unusable. report may be NULL. Tensors are checked for every
 * layer before any value of that layer is written, so a skipped layer stays untouched. */
int keras_import_load(const char *path, const rb_param_view *views, int n_views,
                      const rb_layer_view *layers, int n_layers, unsigned flags,
                      keras_import_report *report, rb_error *err);

#endif
