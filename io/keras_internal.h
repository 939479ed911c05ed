/* Inside the Keras importer: what its files share (keras_file.c, keras_config.c,
 * keras_legacy.c, keras_v3.c, keras_archive.c, keras_import.c). Not for other callers. */
#ifndef KERAS_INTERNAL_H
#define KERAS_INTERNAL_H

#include "keras_import.h"

#include <cjson/cJSON.h>

#include <stddef.h>

/* Limits against hostile or broken files: a model with more than 100k layers is not a Keras
 * model. */
#define MAX_LAYERS 100000
#define MAX_DEPTH 64

/* keras_file.c: small helpers */
char *keras_strdup(const char *s); /* NULL stays NULL */
char *keras_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int64_t keras_numel(int ndim, const int64_t *shape);

/* A string attribute as Keras writes it into a malloc'd array of malloc'd strings, chunked
 * attributes (`name0`, `name1`, ...) joined; objname names the object in messages. 1 when
 * absent, 0, or -1. */
int keras_attr_strings(int64_t obj, const char *attr, char ***out, int *n_out, const char *file,
                       const char *objname, rb_error *err);
/* A scalar string attribute into buf ("" when absent). 0 or -1. */
int keras_attr_string(int64_t obj, const char *attr, char *buf, size_t cap, const char *file,
                      rb_error *err);

/* The file's layers as they are indexed. */
typedef struct {
    keras_layer_info *v;
    int n, cap;
} keras_layer_list;

/* A new zeroed entry, or NULL (out of memory, or more than MAX_LAYERS). */
keras_layer_info *keras_layer_list_add(keras_layer_list *l);
void keras_layer_info_free(keras_layer_info *e);
/* Shape and type of dataset dset into t (t->dataset set); fails naming it when absent. */
int keras_tensor_probe(int64_t file, const char *dset, keras_tensor_info *t, const char *path,
                       rb_error *err);

/* keras_file.c: open and read without touching HDF5's error printing (the callers' job) */
int keras_file_open_quiet(const char *path, keras_file **out, rb_error *err);
int keras_file_read_quiet(const keras_file *kf, const keras_tensor_info *t, float *dst,
                          int64_t n, rb_error *err);

/* keras_config.c: every layer of a Keras config, with the path Keras 3 gives its weights in the
 * .weights.h5 (layers/<snake_case(class)>[_k], nested models recursively). */
typedef struct {
    char *path, *name, *klass;
    const cJSON *config;
} keras_cfg_layer;

typedef struct {
    keras_cfg_layer *v;
    int n, cap;
} keras_cfg_map;

void keras_cfg_free(keras_cfg_map *m);
/* obj: {"class_name": ..., "config": {"name": ..., "layers": [...]}} of a model. 0, or -1
 * when out of memory. */
int keras_cfg_walk(keras_cfg_map *m, const cJSON *obj, const char *path, int depth);
const keras_cfg_layer *keras_cfg_by_path(const keras_cfg_map *m, const char *path);
/* By layer name, only when the name is unique in the config. */
const keras_cfg_layer *keras_cfg_by_name(const keras_cfg_map *m, const char *name);
/* The variable names of a layer of class klass in the order Keras 3 saves them, or -1 for a
 * class radbatch does not know. */
int keras_var_names(const char *klass, const cJSON *config, const char **names, int cap);
/* o[key] when it is a string, else NULL. */
const char *keras_json_str(const cJSON *o, const char *key);

/* The layouts: each appends the file's layers to out (cfg may be NULL).
 * keras_legacy.c: the legacy .h5 layout under group root ("/" or "/model_weights"). */
int keras_index_legacy(keras_file *kf, const char *root, keras_layer_list *out,
                       const keras_cfg_map *cfg, rb_error *err);
/* keras_v3.c: group p ("" = the root) of a Keras 3 weights file, recursively. */
int keras_walk_v3(keras_file *kf, const char *p, keras_layer_list *out, const keras_cfg_map *cfg,
                  int depth, rb_error *err);
/* keras_archive.c: opens the archive's model.weights.h5 from memory into kf->h5; *config:
 * its config.json (NULL when absent). */
int keras_open_archive(keras_file *kf, cJSON **config, rb_error *err);

#endif
