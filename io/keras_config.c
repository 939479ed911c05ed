/* A Keras model config (config.json of a .keras archive, model_config of a model.save()
 * .h5) as a list of layers with the paths Keras 3 gives their weights, and the positional
 * variable names of the classes radbatch has (see docs/formats-model.md). */
#include "keras_internal.h"
#include "h5util.h"

#include <cjson/cJSON.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void keras_cfg_free(keras_cfg_map *m)
{
    for (int i = 0; i < m->n; i++) {
        free(m->v[i].path);
        free(m->v[i].name);
        free(m->v[i].klass);
    }
    free(m->v);
    memset(m, 0, sizeof *m);
}

/* keras.src.utils.naming.to_snake_case: drop non-word characters, then
 * re.sub("(.)([A-Z][a-z]+)", r"\1_\2"), re.sub("([a-z])([A-Z])", r"\1_\2"), lower(). */
static void snake_case(const char *in, char *out, size_t cap)
{
    char a[256], b[512];
    size_t na = 0, nb = 0;
    for (const char *p = in; *p && na + 1 < sizeof a; p++)
        if (isalnum((unsigned char)*p) || *p == '_')
            a[na++] = *p;
    a[na] = 0;
    for (size_t i = 0; i < na && nb + 3 < sizeof b;) {
        if (i + 2 < na + 1 && isupper((unsigned char)a[i + 1]) &&
            islower((unsigned char)a[i + 2])) {
            size_t j = i + 2;
            while (j < na && islower((unsigned char)a[j]))
                j++;
            b[nb++] = a[i];
            b[nb++] = '_';
            for (size_t k = i + 1; k < j && nb + 1 < sizeof b; k++)
                b[nb++] = a[k];
            i = j;
        } else {
            b[nb++] = a[i++];
        }
    }
    b[nb] = 0;
    size_t o = 0;
    for (size_t i = 0; i < nb && o + 3 < cap;) {
        if (i + 1 < nb && islower((unsigned char)b[i]) && isupper((unsigned char)b[i + 1])) {
            out[o++] = b[i];
            out[o++] = '_';
            out[o++] = (char)tolower((unsigned char)b[i + 1]);
            i += 2;
        } else {
            out[o++] = (char)tolower((unsigned char)b[i]);
            i++;
        }
    }
    out[o] = 0;
}

const char *keras_json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int cfg_add(keras_cfg_map *m, const char *path, const char *name, const char *klass,
                   const cJSON *config)
{
    if (m->n >= MAX_LAYERS)
        return -1;
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        keras_cfg_layer *v = realloc(m->v, (size_t)cap * sizeof *v);
        if (!v)
            return -1;
        m->v = v;
        m->cap = cap;
    }
    keras_cfg_layer *c = &m->v[m->n];
    c->path = keras_strdup(path);
    c->name = keras_strdup(name ? name : "");
    c->klass = keras_strdup(klass ? klass : "");
    c->config = config;
    if (!c->path || !c->name || !c->klass) {
        free(c->path);
        free(c->name);
        free(c->klass);
        return -1;
    }
    m->n++;
    return 0;
}

/* obj: {"class_name": ..., "config": {"name": ..., "layers": [...]}} of a model. */
int keras_cfg_walk(keras_cfg_map *m, const cJSON *obj, const char *path, int depth)
{
    if (depth > MAX_DEPTH)
        return 0;
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(obj, "config");
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(config, "layers");
    if (!cJSON_IsArray(layers))
        return 0;
    const char *cls = keras_json_str(obj, "class_name");
    /* Sequential.layers (what Keras 3 saves) leaves out the InputLayer its config lists */
    int sequential = cls && strcmp(cls, "Sequential") == 0;
    struct {
        char snake[128];
        int count;
    } used[512];
    int n_used = 0;
    const cJSON *l;
    cJSON_ArrayForEach(l, layers)
    {
        const char *lcls = keras_json_str(l, "class_name");
        const cJSON *lcfg = cJSON_GetObjectItemCaseSensitive(l, "config");
        const char *lname = keras_json_str(lcfg, "name");
        if (!lname)
            lname = keras_json_str(l, "name");
        if (!lcls)
            continue;
        if (sequential && strcmp(lcls, "InputLayer") == 0)
            continue;
        char snake[128], unique[160];
        snake_case(lcls, snake, sizeof snake);
        int k = -1;
        for (int i = 0; i < n_used; i++)
            if (strcmp(used[i].snake, snake) == 0)
                k = i;
        if (k < 0 && n_used < (int)(sizeof used / sizeof used[0])) {
            k = n_used++;
            snprintf(used[k].snake, sizeof used[k].snake, "%s", snake);
            used[k].count = -1;
        }
        if (k < 0)
            continue;
        int c = ++used[k].count;
        if (c == 0)
            snprintf(unique, sizeof unique, "%s", snake);
        else
            snprintf(unique, sizeof unique, "%s_%d", snake, c);
        char child[4096];
        snprintf(child, sizeof child, "%s%slayers/%s", path, path[0] ? "/" : "", unique);
        if (cfg_add(m, child, lname, lcls, lcfg) < 0)
            return -1;
        if (keras_cfg_walk(m, l, child, depth + 1) < 0)
            return -1;
    }
    return 0;
}

const keras_cfg_layer *keras_cfg_by_path(const keras_cfg_map *m, const char *path)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->v[i].path, path) == 0)
            return &m->v[i];
    return NULL;
}

/* By layer name, only when the name is unique in the config. */
const keras_cfg_layer *keras_cfg_by_name(const keras_cfg_map *m, const char *name)
{
    const keras_cfg_layer *hit = NULL;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->v[i].name, name) == 0) {
            if (hit)
                return NULL;
            hit = &m->v[i];
        }
    return hit;
}

static int json_bool(const cJSON *config, const char *key, int dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(config, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Keras 3 saves a layer's variables positionally (vars/0, vars/1, ...), in the order its
 * build() creates them. For the classes radbatch has, that order is known; the names are
 * those of Keras 2's weight_names, so both formats match a model the same way. */
int keras_var_names(const char *klass, const cJSON *config, const char **names,
                    int cap)
{
    int n = 0;
    if (!klass)
        return -1;
    if (!strcmp(klass, "Conv1D") || !strcmp(klass, "Conv2D") || !strcmp(klass, "Conv3D") ||
        !strcmp(klass, "Conv2DTranspose") || !strcmp(klass, "Dense")) {
        names[n++] = "kernel";
        if (json_bool(config, "use_bias", 1))
            names[n++] = "bias";
    } else if (!strcmp(klass, "DepthwiseConv2D")) {
        names[n++] = "depthwise_kernel";
        if (json_bool(config, "use_bias", 1))
            names[n++] = "bias";
    } else if (!strcmp(klass, "SeparableConv2D")) {
        names[n++] = "depthwise_kernel";
        names[n++] = "pointwise_kernel";
        if (json_bool(config, "use_bias", 1))
            names[n++] = "bias";
    } else if (!strcmp(klass, "BatchNormalization")) {
        if (json_bool(config, "scale", 1))
            names[n++] = "gamma";
        if (json_bool(config, "center", 1))
            names[n++] = "beta";
        names[n++] = "moving_mean";
        names[n++] = "moving_variance";
    } else {
        return -1;
    }
    return n <= cap ? n : -1;
}
