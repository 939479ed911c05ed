/* Keras import against files written by Keras 3 and tf-keras (tests/golden/keras/, made by
 * tests/golden/make_keras_files.py) and against the MobileNetV2 fixture: every value must
 * come out bit-exact, and every failure must name the layer/weight involved. */
#include "keras_import.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <hdf5.h>
#include <zip.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A hand-built model: views into one buffer, plus the expected values. */
typedef struct {
    int n;
    rb_param_view v[400];
    char layer[400][64], weight[400][64];
    float *buf;
    float *expect; /* NULL for the fixture */
    int64_t total;
} model;

static int64_t numel(const rb_param_view *v)
{
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++)
        n *= v->shape[i];
    return n;
}

static void model_add(model *m, const char *layer, const char *weight, int ndim,
                      const int64_t *shape)
{
    rb_param_view *v = &m->v[m->n];
    snprintf(m->layer[m->n], 64, "%s", layer);
    snprintf(m->weight[m->n], 64, "%s", weight);
    v->layer = m->layer[m->n];
    v->weight = m->weight[m->n];
    v->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        v->shape[i] = shape[i];
    v->is_state = strncmp(weight, "moving_", 7) == 0;
    v->trainable = !v->is_state;
    m->n++;
}

/* Allocate the buffer, fill it with a NaN sentinel (a value never loaded shows). */
static void model_alloc(model *m)
{
    m->total = 0;
    for (int i = 0; i < m->n; i++) {
        m->v[i].offset = m->total;
        m->total += numel(&m->v[i]);
    }
    m->buf = malloc((size_t)m->total * sizeof(float));
    for (int i = 0; i < m->n; i++)
        m->v[i].data = m->buf + m->v[i].offset;
}

static void model_reset(model *m)
{
    uint32_t sentinel = 0x7fc0dead;
    for (int64_t i = 0; i < m->total; i++)
        memcpy(&m->buf[i], &sentinel, 4);
}

static void model_free(model *m)
{
    free(m->buf);
    free(m->expect);
    free(m);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        fclose(f);
        return NULL;
    }
    s[n] = 0;
    fclose(f);
    return s;
}

/* From expected.json: the model's tensors (the view list) and their values. */
static model *model_from_expected(const cJSON *root, const char *which)
{
    const cJSON *list = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "models"), which);
    if (!cJSON_IsArray(list))
        return NULL;
    model *m = calloc(1, sizeof *m);
    const cJSON *t;
    cJSON_ArrayForEach(t, list)
    {
        int64_t shape[4];
        int nd = 0;
        const cJSON *d;
        cJSON_ArrayForEach(d, cJSON_GetObjectItem(t, "shape")) shape[nd++] = (int64_t)d->valuedouble;
        model_add(m, cJSON_GetObjectItem(t, "layer")->valuestring,
                  cJSON_GetObjectItem(t, "weight")->valuestring, nd, shape);
    }
    model_alloc(m);
    m->expect = malloc((size_t)m->total * sizeof(float));
    int64_t k = 0;
    cJSON_ArrayForEach(t, list)
    {
        const cJSON *h;
        cJSON_ArrayForEach(h, cJSON_GetObjectItem(t, "hex"))
        {
            /* hex floats parse exactly; the double holds a float32 value exactly */
            m->expect[k++] = (float)strtod(h->valuestring, NULL);
        }
    }
    CHECK(k == m->total, "%s: %lld values for %lld elements", which, (long long)k,
          (long long)m->total);
    return m;
}

static int64_t bit_mismatches(const model *m, int skip_view)
{
    int64_t bad = 0;
    for (int i = 0; i < m->n; i++) {
        if (i == skip_view)
            continue;
        const rb_param_view *v = &m->v[i];
        if (memcmp(v->data, m->expect + v->offset, (size_t)numel(v) * sizeof(float)) != 0) {
            fprintf(stderr, "  values differ: %s/%s\n", v->layer, v->weight);
            bad++;
        }
    }
    return bad;
}

static int view_index(const model *m, const char *layer, const char *weight)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->v[i].layer, layer) && !strcmp(m->v[i].weight, weight))
            return i;
    return -1;
}

static int contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        fprintf(stderr, "  message: %s\n  lacks:   %s\n", hay, needle);
        return 0;
    }
    return 1;
}

static void golden_file(model *m, const char *dir, const char *file, keras_format fmt,
                        const char *version)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    rb_error err = {0};
    keras_import_report rep;
    model_reset(m);
    int rc = keras_import_load(path, m->v, m->n, NULL, 0, KERAS_IMPORT_STRICT, &rep, &err);
    CHECK(rc == 0, "%s: %s", file, err.msg);
    if (rc == 0) {
        CHECK(rep.n_tensors == m->n, "%s: %d tensors loaded, %d expected", file, rep.n_tensors,
              m->n);
        CHECK(rep.n_values == m->total, "%s: %lld values", file, (long long)rep.n_values);
        CHECK(rep.n_skipped == 0 && rep.n_unused == 0, "%s: skipped %d unused %d", file,
              rep.n_skipped, rep.n_unused);
        CHECK(rep.format == fmt, "%s: format %s", file, keras_format_name(rep.format));
        CHECK(strcmp(rep.keras_version, version) == 0, "%s: keras_version '%s', expected '%s'",
              file, rep.keras_version, version);
        CHECK(bit_mismatches(m, -1) == 0, "%s: values differ", file);
    }
    keras_import_report_free(&rep);
    printf("ok %s (%s)\n", file, keras_format_name(fmt));
}

/* The error paths, on one Keras 3 archive and one tf-keras .h5. */
static void golden_errors(model *m, const char *dir)
{
    char archive[4096], h5[4096];
    snprintf(archive, sizeof archive, "%s/keras3_mnv2mini.keras", dir);
    snprintf(h5, sizeof h5, "%s/tfkeras_mnv2mini_weights.h5", dir);
    rb_error err;
    keras_import_report rep;
    int k = view_index(m, "dense_1", "kernel"), b = view_index(m, "dense_1", "bias");
    CHECK(k >= 0 && b >= 0, "dense_1 views");
    if (k < 0 || b < 0)
        return;

    /* a head with 2 classes instead of 3: shape mismatch named exactly */
    int64_t saved_k = m->v[k].shape[1];
    m->v[k].shape[1] = 2;
    for (int f = 0; f < 2; f++) {
        const char *path = f ? h5 : archive;
        memset(&err, 0, sizeof err);
        CHECK(keras_import_load(path, m->v, m->n, NULL, 0, 0, &rep, &err) < 0, "shape mismatch");
        CHECK(contains(err.msg, "layer 'dense_1'") &&
                  contains(err.msg, "weight 'kernel': shape [7, 3] in the file") &&
                  contains(err.msg, "[7, 2] in the model"),
              "shape message");
        CHECK(err.hint[0] != 0, "a hint is given");
        keras_import_report_free(&rep);
    }
    /* skip_mismatch: the layer stays at its initial values, the rest loads */
    model_reset(m);
    memset(&err, 0, sizeof err);
    int rc = keras_import_load(archive, m->v, m->n, NULL, 0, KERAS_IMPORT_SKIP_MISMATCH, &rep,
                               &err);
    CHECK(rc == 0, "skip_mismatch: %s", err.msg);
    CHECK(rep.n_skipped == 1 && contains(rep.skipped[0], "dense_1:"), "skipped dense_1");
    CHECK(rep.n_tensors == m->n - 2, "tensors %d", rep.n_tensors);
    CHECK(rep.n_tensors_model == m->n && rep.n_tensors_skipped == 2, "tensors: model %d, skipped %d",
          rep.n_tensors_model, rep.n_tensors_skipped);
    CHECK(rep.skipped_layer && strcmp(rep.skipped_layer[0], "dense_1") == 0, "skipped layer named");
    uint32_t bits;
    memcpy(&bits, m->v[k].data, 4);
    CHECK(bits == 0x7fc0dead, "skipped layer untouched");
    memcpy(&bits, m->v[b].data, 4);
    CHECK(bits == 0x7fc0dead, "skipped layer's bias untouched (layer checked before writing)");
    keras_import_report_free(&rep);
    m->v[k].shape[1] = saved_k;

    /* a layer missing from the file: named, with near names */
    snprintf(m->layer[k], 64, "dense_2");
    snprintf(m->layer[b], 64, "dense_2");
    for (int f = 0; f < 2; f++) {
        const char *path = f ? h5 : archive;
        memset(&err, 0, sizeof err);
        CHECK(keras_import_load(path, m->v, m->n, NULL, 0, 0, &rep, &err) < 0, "missing layer");
        CHECK(contains(err.msg, "layer 'dense_2' of the model is not in the file") &&
                  contains(err.msg, "near names in the file: 'dense_1'"),
              "missing message");
        keras_import_report_free(&rep);
    }
    model_reset(m);
    memset(&err, 0, sizeof err);
    rc = keras_import_load(h5, m->v, m->n, NULL, 0, KERAS_IMPORT_SKIP_MISSING, &rep, &err);
    CHECK(rc == 0, "skip_missing: %s", err.msg);
    CHECK(rep.n_skipped == 1 && contains(rep.skipped[0], "dense_2: not in the file"),
          "skipped dense_2");
    CHECK(rep.n_unused == 1 && strcmp(rep.unused[0], "dense_1") == 0, "unused dense_1");
    keras_import_report_free(&rep);
    /* strict refuses the file's extra layer */
    memset(&err, 0, sizeof err);
    rc = keras_import_load(h5, m->v, m->n, NULL, 0,
                           KERAS_IMPORT_SKIP_MISSING | KERAS_IMPORT_STRICT, &rep, &err);
    CHECK(rc < 0 && contains(err.msg, "not in the model: 'dense_1'"), "strict unused: %s",
          err.msg);
    keras_import_report_free(&rep);
    snprintf(m->layer[k], 64, "dense_1");
    snprintf(m->layer[b], 64, "dense_1");

    /* a model layer with another weight count (no bias) */
    rb_param_view saved = m->v[b];
    memmove(&m->v[b], &m->v[b + 1], (size_t)(m->n - b - 1) * sizeof m->v[0]);
    m->n--;
    memset(&err, 0, sizeof err);
    CHECK(keras_import_load(archive, m->v, m->n, NULL, 0, 0, &rep, &err) < 0, "count mismatch");
    CHECK(contains(err.msg, "layer 'dense_1'") &&
              contains(err.msg, "the file has 2 weights (kernel, bias), the model 1 (kernel)"),
          "count message");
    keras_import_report_free(&rep);
    memmove(&m->v[b + 1], &m->v[b], (size_t)(m->n - b) * sizeof m->v[0]);
    m->v[b] = saved;
    m->n++;

    /* strict with the model's classes: the archive's config.json knows them */
    rb_layer_view lv[] = {{"Conv1", "Conv2D"}, {"dense", "Dense"}, {"dense_1", "Conv2D"}};
    memset(&err, 0, sizeof err);
    CHECK(keras_import_load(archive, m->v, m->n, lv, 3, KERAS_IMPORT_STRICT, &rep, &err) < 0,
          "class mismatch");
    CHECK(contains(err.msg, "layer 'dense_1' is a Dense in the file but a Conv2D in the model"),
          "class message");
    keras_import_report_free(&rep);
    lv[2].klass = "Dense";
    memset(&err, 0, sizeof err);
    CHECK(keras_import_load(archive, m->v, m->n, lv, 3, KERAS_IMPORT_STRICT, &rep, &err) == 0,
          "classes agree: %s", err.msg);
    keras_import_report_free(&rep);

    /* not a Keras file at all */
    char json[4096];
    snprintf(json, sizeof json, "%s/expected.json", dir);
    memset(&err, 0, sizeof err);
    CHECK(keras_import_load(json, m->v, m->n, NULL, 0, 0, &rep, &err) < 0 &&
              contains(err.msg, "neither an HDF5 file nor a .keras (zip) archive"),
          "non-Keras file");
    keras_import_report_free(&rep);
    memset(&err, 0, sizeof err);
    CHECK(keras_import_load("/nonexistent/x.h5", m->v, m->n, NULL, 0, 0, &rep, &err) < 0 &&
              contains(err.msg, "/nonexistent/x.h5: cannot open"),
          "missing file");
    keras_import_report_free(&rep);
    printf("ok error messages\n");
}

/* The index of a nested model: the backbone's layers appear by their own names. */
static void golden_index(const char *dir)
{
    const char *files[] = {"keras3_mnv2mini.keras", "keras3_mnv2mini_full.h5",
                           "tfkeras_mnv2mini_weights.h5", "tfkeras_mnv2mini.keras"};
    for (int f = 0; f < 4; f++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[f]);
        keras_file *kf;
        rb_error err = {0};
        CHECK(keras_file_open(path, &kf, &err) == 0, "%s: %s", files[f], err.msg);
        if (!kf)
            continue;
        int found = 0;
        for (int i = 0; i < kf->n_layers; i++) {
            const keras_layer_info *e = &kf->layers[i];
            if (strcmp(e->name, "expanded_conv_depthwise") == 0) {
                found = 1;
                CHECK(e->n == 1 && e->t[0].ndim == 4 && e->t[0].shape[2] == 6 &&
                          e->t[0].shape[3] == 1,
                      "%s: depthwise kernel shape", files[f]);
                CHECK(strstr(e->where, "mobilenetv2_1.00_160") || strstr(e->where, "functional"),
                      "%s: nested location %s", files[f], e->where);
                if (kf->format == KERAS_FORMAT_ARCHIVE || kf->format == KERAS_FORMAT_H5_MODEL)
                    CHECK(e->klass && strcmp(e->klass, "DepthwiseConv2D") == 0,
                          "%s: class from the config", files[f]);
            }
        }
        CHECK(found, "%s: backbone layer expanded_conv_depthwise indexed", files[f]);
        keras_file_close(kf);
    }
}

/* ---------------------------------------------------------------- damaged files */

static void write_prefix(const char *src, const char *dst, double frac)
{
    FILE *f = fopen(src, "rb"), *g = fopen(dst, "wb");
    if (!f || !g) {
        if (f)
            fclose(f);
        if (g)
            fclose(g);
        return;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    long keep = (long)(n * frac);
    char *buf = malloc((size_t)n);
    if (fread(buf, 1, (size_t)n, f) == (size_t)n)
        fwrite(buf, 1, (size_t)keep, g);
    free(buf);
    fclose(f);
    fclose(g);
}

static void zip_with(const char *path, const char *member, const char *data, size_t len)
{
    int e;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &e);
    if (!z)
        return;
    zip_source_t *s = zip_source_buffer(z, data, len, 0);
    if (s && zip_file_add(z, member, s, ZIP_FL_OVERWRITE) < 0)
        zip_source_free(s);
    zip_close(z);
}

/* Truncated and malformed inputs: an error naming the file, never a crash. */
static void damaged_files(model *m, const char *dir)
{
    const char *tmp = test_tmpdir("keras_import");
    const char *srcs[] = {"keras3_mnv2mini_full.h5", "tfkeras_mnv2mini_weights.h5",
                          "keras3_mnv2mini.keras", "keras3_cnn.weights.h5"};
    const double fracs[] = {0.1, 0.5, 0.9};
    int refused = 0, tried = 0;
    for (int s = 0; s < 4; s++)
        for (int f = 0; f < 3; f++) {
            char src[4200], dst[4200];
            snprintf(src, sizeof src, "%s/%s", dir, srcs[s]);
            snprintf(dst, sizeof dst, "%s/cut%d_%s", tmp, f, srcs[s]);
            write_prefix(src, dst, fracs[f]);
            rb_error err = {0};
            keras_import_report rep;
            int rc = keras_import_load(dst, m->v, m->n, NULL, 0, 0, &rep, &err);
            keras_import_report_free(&rep);
            tried++;
            refused += rc < 0;
            CHECK(rc < 0 ? strstr(err.msg, dst) != NULL : 1, "%s: error names the file: %s", dst,
                  err.msg);
        }
    /* HDF5 keeps its metadata at the end; every cut file is refused */
    CHECK(refused == tried, "%d of %d truncated files refused", refused, tried);

    char zp[4200];
    rb_error err = {0};
    keras_import_report rep;
    snprintf(zp, sizeof zp, "%s/noweights.keras", tmp);
    zip_with(zp, "config.json", "{}", 2);
    CHECK(keras_import_load(zp, m->v, m->n, NULL, 0, 0, &rep, &err) < 0 &&
              contains(err.msg, "no model.weights.h5 in the archive"),
          "archive without weights");
    keras_import_report_free(&rep);
    snprintf(zp, sizeof zp, "%s/garbage.keras", tmp);
    zip_with(zp, "model.weights.h5", "not hdf5 at all", 15);
    CHECK(keras_import_load(zp, m->v, m->n, NULL, 0, 0, &rep, &err) < 0 &&
              contains(err.msg, "model.weights.h5 in the archive is not a readable HDF5 file"),
          "archive with a broken weight file");
    keras_import_report_free(&rep);
    snprintf(zp, sizeof zp, "%s/sharded.keras", tmp);
    zip_with(zp, "model.weights.json", "{}", 2);
    CHECK(keras_import_load(zp, m->v, m->n, NULL, 0, 0, &rep, &err) < 0 &&
              contains(err.msg, "sharded weights"),
          "sharded archive");
    keras_import_report_free(&rep);
    printf("ok damaged files\n");
}

/* ---------------------------------------------------------------- the fixture */

/* The TSV's weights column: "gamma[32] beta[32] moving_mean[32] moving_variance[32]". */
static int views_from_tsv(model *m, const char *tsv_path)
{
    char *text = slurp(tsv_path);
    if (!text)
        return -1;
    int line_no = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), line_no++) {
        if (line_no == 0)
            continue; /* header */
        char *col[8] = {0};
        int nc = 0;
        char *p = line;
        col[nc++] = p;
        while ((p = strchr(p, '\t')) && nc < 8) {
            *p++ = 0;
            col[nc++] = p;
        }
        if (nc < 7 || !col[6][0])
            continue;
        const char *layer = col[1];
        char *w = col[6];
        while (*w) {
            while (*w == ' ')
                w++;
            char *br = strchr(w, '[');
            char *end = br ? strchr(br, ']') : NULL;
            if (!br || !end)
                break;
            char name[64];
            snprintf(name, sizeof name, "%.*s", (int)(br - w), w);
            int64_t shape[4];
            int nd = 0;
            for (char *q = br + 1; q < end && nd < 4;) {
                shape[nd++] = strtoll(q, &q, 10);
                while (q < end && (*q == ',' || *q == ' '))
                    q++;
            }
            model_add(m, layer, name, nd, shape);
            w = end + 1;
        }
    }
    free(text);
    return 0;
}

/* One element straight from the file with plain HDF5 calls (not through the importer). */
static float h5_element(const char *file, const char *dset, const hsize_t *idx)
{
    float v = NAN;
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hsize_t one[4] = {1, 1, 1, 1};
    int nd = H5Sget_simple_extent_ndims(sp);
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, idx, NULL, one, NULL);
    hid_t mem = H5Screate_simple(1, one, NULL);
    (void)nd;
    if (H5Dread(d, H5T_NATIVE_FLOAT, mem, sp, H5P_DEFAULT, &v) < 0)
        v = NAN;
    H5Sclose(mem);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return v;
}

static void fixture_tests(void)
{
    /* the weights and the layer table are in tests/data; the full nsfwjs file only in the
     * fixtures folder */
    char tsv[4200], notop[4200], full[4200];
    CHECK(test_fixture_path(tsv, sizeof tsv, "mobilenetv2_layers_224.tsv") == 0 &&
              test_fixture_path(notop, sizeof notop, "mobilenetv2_keras_notop.h5") == 0,
          "%s or %s missing (tests/data/mobilenetv2 holds copies)", tsv, notop);
    if (t_failures)
        return;
    int have_full = test_fixture_path(full, sizeof full, "mobilenetv2_keras_full_nsfw.h5") == 0;
    model *m = calloc(1, sizeof *m);
    CHECK(views_from_tsv(m, tsv) == 0, "read %s", tsv);
    CHECK(m->n == 260, "%d views from the TSV, 260 expected", m->n);
    model_alloc(m);
    CHECK(m->total == 2257984, "%lld parameters, 2,257,984 expected", (long long)m->total);
    model_reset(m);

    rb_error err = {0};
    keras_import_report rep;
    int rc = keras_import_load(notop, m->v, m->n, NULL, 0, KERAS_IMPORT_STRICT, &rep, &err);
    CHECK(rc == 0, "fixture: %s", err.msg);
    CHECK(rep.n_tensors == 260 && rep.n_values == 2257984, "fixture: %d tensors, %lld values",
          rep.n_tensors, (long long)rep.n_values);
    CHECK(rep.format == KERAS_FORMAT_H5 && strcmp(rep.keras_version, "2.2.4") == 0,
          "fixture format %s version %s", keras_format_name(rep.format), rep.keras_version);
    keras_import_report_free(&rep);
    /* no NaN sentinel left */
    int64_t left = 0;
    for (int64_t i = 0; i < m->total; i++)
        left += isnan(m->buf[i]);
    CHECK(left == 0, "%lld values not loaded", (long long)left);
    /* a few values read independently */
    struct {
        const char *layer, *weight, *dset;
        int nd;
        hsize_t idx[4];
    } probes[] = {
        {"Conv1", "kernel", "/Conv1/Conv1/kernel:0", 4, {1, 2, 0, 5}},
        {"expanded_conv_depthwise", "depthwise_kernel",
         "/expanded_conv_depthwise/expanded_conv_depthwise/depthwise_kernel:0", 4, {2, 0, 17, 0}},
        {"block_16_project_BN", "moving_variance",
         "/block_16_project_BN/block_16_project_BN/moving_variance:0", 1, {319}},
        {"Conv_1", "kernel", "/Conv_1/Conv_1/kernel:0", 4, {0, 0, 319, 1279}},
    };
    for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
        int vi = view_index(m, probes[p].layer, probes[p].weight);
        CHECK(vi >= 0, "view %s/%s", probes[p].layer, probes[p].weight);
        if (vi < 0)
            continue;
        const rb_param_view *v = &m->v[vi];
        int64_t off = 0;
        for (int d = 0; d < v->ndim; d++)
            off = off * v->shape[d] + (int64_t)probes[p].idx[d];
        float want = h5_element(notop, probes[p].dset, probes[p].idx);
        CHECK(!isnan(want) && memcmp(&want, &v->data[off], 4) == 0, "%s: %g vs %g",
              probes[p].dset, want, v->data[off]);
    }
    /* the README's count of exact-zero variances in bn_Conv1 */
    int vz = view_index(m, "bn_Conv1", "moving_variance"), zeros = 0;
    for (int i = 0; vz >= 0 && i < 32; i++)
        zeros += m->v[vz].data[i] == 0.0f;
    CHECK(zeros == 9, "bn_Conv1 moving_variance zeros: %d, README says 9", zeros);

    /* the full nsfwjs file holds the same backbone plus a head: loads by name, the head
     * is reported unused, strict refuses it */
    if (!have_full)
        test_skip("%s not found (set RADBATCH_FIXTURES to the folder holding mobilenetv2/); "
                  "full nsfwjs file not checked", full);
    float *copy = have_full ? malloc((size_t)m->total * sizeof(float)) : NULL;
    if (copy) {
        memcpy(copy, m->buf, (size_t)m->total * sizeof(float));
        model_reset(m);
        memset(&err, 0, sizeof err);
        rc = keras_import_load(full, m->v, m->n, NULL, 0, 0, &rep, &err);
        CHECK(rc == 0, "full file: %s", err.msg);
        CHECK(rep.n_unused == 3, "unused head layers: %d", rep.n_unused);
        CHECK(memcmp(copy, m->buf, (size_t)m->total * sizeof(float)) == 0,
              "backbone bit-identical in both files");
        keras_import_report_free(&rep);
        memset(&err, 0, sizeof err);
        CHECK(keras_import_load(full, m->v, m->n, NULL, 0, KERAS_IMPORT_STRICT, &rep, &err) < 0 &&
                  contains(err.msg, "3 layers with weights in the file are not in the model") &&
                  contains(err.msg, "'dense_1'"),
              "strict on the full file");
        keras_import_report_free(&rep);
        free(copy);
    }

    /* error messages on the real file */
    int ck = view_index(m, "Conv1", "kernel");
    m->v[ck].shape[3] = 16;
    memset(&err, 0, sizeof err);
    CHECK(keras_import_load(notop, m->v, m->n, NULL, 0, 0, &rep, &err) < 0 &&
              contains(err.msg, "layer 'Conv1'") &&
              contains(err.msg, "shape [3, 3, 3, 32] in the file (/Conv1/Conv1/kernel:0), "
                                "[3, 3, 3, 16] in the model"),
          "fixture shape message");
    keras_import_report_free(&rep);
    m->v[ck].shape[3] = 32;
    int e0 = -1;
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->v[i].layer, "block_5_expand") == 0) {
            snprintf(m->layer[i], 64, "block_5_expnad");
            e0 = i;
        }
    memset(&err, 0, sizeof err);
    CHECK(e0 >= 0 && keras_import_load(notop, m->v, m->n, NULL, 0, 0, &rep, &err) < 0 &&
              contains(err.msg, "layer 'block_5_expnad' of the model is not in the file") &&
              contains(err.msg, "'block_5_expand'"),
          "fixture missing-layer message");
    keras_import_report_free(&rep);
    printf("ok fixture %s (260 tensors, 2,257,984 values)\n", notop);
    model_free(m);
}

int main(void)
{
    char dir[4096], json_path[4200];
    snprintf(dir, sizeof dir, "%s/tests/golden/keras", test_srcdir());
    snprintf(json_path, sizeof json_path, "%s/expected.json", dir);
    char *text = slurp(json_path);
    CHECK(text != NULL, "cannot read %s (set RADBATCH_SRC)", json_path);
    cJSON *root = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (root) {
        const cJSON *ver = cJSON_GetObjectItem(root, "versions");
        const char *k3 = cJSON_GetObjectItem(cJSON_GetObjectItem(ver, "keras3"), "keras")->valuestring;
        const char *k2 = cJSON_GetObjectItem(cJSON_GetObjectItem(ver, "tfkeras"), "keras")->valuestring;
        model *mini = model_from_expected(root, "mnv2mini");
        model *cnn = model_from_expected(root, "cnn");
        CHECK(mini && cnn, "expected.json models");
        if (mini && cnn) {
            golden_file(mini, dir, "keras3_mnv2mini.keras", KERAS_FORMAT_ARCHIVE, k3);
            golden_file(mini, dir, "keras3_mnv2mini_full.h5", KERAS_FORMAT_H5_MODEL, k3);
            golden_file(mini, dir, "tfkeras_mnv2mini_weights.h5", KERAS_FORMAT_H5, k2);
            golden_file(mini, dir, "tfkeras_mnv2mini.keras", KERAS_FORMAT_ARCHIVE, k2);
            golden_file(cnn, dir, "keras3_cnn.weights.h5", KERAS_FORMAT_WEIGHTS_H5, "");
            golden_file(cnn, dir, "tfkeras_cnn_full.h5", KERAS_FORMAT_H5_MODEL, k2);
            golden_index(dir);
            golden_errors(mini, dir);
            damaged_files(mini, dir);
        }
        if (mini)
            model_free(mini);
        if (cnn)
            model_free(cnn);
        cJSON_Delete(root);
    }
    fixture_tests();
    return TEST_DONE();
}
