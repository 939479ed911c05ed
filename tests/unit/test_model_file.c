/* radbatch model/checkpoint files: bit-exact round trip (NaN payloads, -0, denormals,
 * infinities), header fields, atomic write, every refusal with its message, and the
 * integrity checks: a changed byte in a tensor, the model card, the class names or the
 * optimizer state, a NaN weight, a truncated file, and an older file without checksums;
 * model_file_verify finds each of them without a model to load into. */
#include "keras_import.h"
#include "model_file.h"
#include "rb_rng.h"
#include "test_util.h"

#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NV 7

typedef struct {
    rb_param_view v[NV];
    float *buf;
    int64_t total;
} toy;

static void toy_init(toy *t, int dense_out)
{
    static const struct {
        const char *layer, *weight;
        int ndim;
        int64_t shape[4];
        int state;
    } spec[NV] = {
        {"Conv1", "kernel", 4, {3, 3, 3, 8}, 0},
        {"bn_Conv1", "gamma", 1, {8}, 0},
        {"bn_Conv1", "beta", 1, {8}, 0},
        {"bn_Conv1", "moving_mean", 1, {8}, 1},
        {"bn_Conv1", "moving_variance", 1, {8}, 1},
        {"dense", "kernel", 2, {8, 3}, 0},
        {"dense", "bias", 1, {3}, 0},
    };
    t->total = 0;
    for (int i = 0; i < NV; i++) {
        rb_param_view *v = &t->v[i];
        memset(v, 0, sizeof *v);
        v->layer = spec[i].layer;
        v->weight = spec[i].weight;
        v->ndim = spec[i].ndim;
        memcpy(v->shape, spec[i].shape, sizeof v->shape);
        if (i >= 5)
            v->shape[v->ndim - 1] = dense_out;
        v->is_state = spec[i].state;
        v->trainable = !spec[i].state;
        v->offset = t->total;
        int64_t n = 1;
        for (int d = 0; d < v->ndim; d++)
            n *= v->shape[d];
        t->total += n;
    }
    t->buf = calloc((size_t)t->total, sizeof(float));
    for (int i = 0; i < NV; i++)
        t->v[i].data = t->buf + t->v[i].offset;
}

/* Arbitrary bit patterns, including NaNs with payloads and the special values. */
static void fill_bits(float *x, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)rb_rng_u64(seed, (uint64_t)i, 0, 0);
        memcpy(&x[i], &b, 4);
    }
    const uint32_t special[] = {0x80000000u /* -0 */, 0x00000001u /* denormal */,
                                0x7f800000u /* inf */, 0xff800000u /* -inf */,
                                0x7fc12345u /* NaN payload */, 0xffbfffffu /* sNaN */};
    for (size_t k = 0; k < sizeof special / sizeof special[0] && (int64_t)k < n; k++)
        memcpy(&x[k], &special[k], 4);
}

static int contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) {
        fprintf(stderr, "  message: %s\n  lacks:   %s\n", hay, needle);
        return 0;
    }
    return 1;
}

static int leftover_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strstr(e->d_name, ".tmp-") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* Flip one bit of byte `off` of the file. */
static void flip_byte(const char *path, long off)
{
    FILE *f = fopen(path, "r+b");
    if (!f || fseek(f, off, SEEK_SET) != 0) {
        if (f)
            fclose(f);
        return;
    }
    int c = fgetc(f);
    fseek(f, off, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
}

/* File offset of a contiguous dataset's first byte. */
static long data_offset(const char *path, const char *dataset)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, dataset, H5P_DEFAULT);
    haddr_t a = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    return (long)a;
}

/* Offset of the first occurrence of `needle` in the file, -1 if none. */
static long find_bytes(const char *path, const char *needle)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    long at = -1;
    if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
        size_t k = strlen(needle);
        for (long i = 0; i + (long)k <= n && at < 0; i++)
            if (memcmp(buf + i, needle, k) == 0)
                at = i;
    }
    free(buf);
    fclose(f);
    return at;
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, n, b);
    if (a)
        fclose(a);
    if (b)
        fclose(b);
}

static void set_version(const char *path, int32_t v)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &v);
    H5Aclose(a);
    H5Fclose(f);
}

int main(void)
{
    const char *dir = test_tmpdir("model_file");
    char path[4096];
    snprintf(path, sizeof path, "%s/model.h5", dir);

    toy a, b;
    toy_init(&a, 3);
    toy_init(&b, 3);
    fill_bits(a.buf, a.total, 42);

    /* an architecture text larger than HDF5's 64 KiB compact attribute limit */
    size_t arch_len = 300000;
    char *arch = malloc(arch_len + 1);
    for (size_t i = 0; i < arch_len; i++)
        arch[i] = (i % 80 == 79) ? '\n' : (char)('a' + i % 26);
    arch[arch_len] = 0;
    const char *classes[] = {"NORMAL", "PNEUMONIA", "\xc3\x9c" "bersicht \xe2\x9c\x93"};
    const char *card = "{\"task\": \"chest x-ray\", \"input\": [160, 160, 3]}";
    int64_t n_opt = 2 * a.total + 1;
    float *opt = malloc((size_t)n_opt * sizeof(float));
    float *opt_back = malloc((size_t)n_opt * sizeof(float));
    fill_bits(opt, n_opt, 7);
    model_file_optimizer o = {.kind = "adam", .step = 1234, .config = "{\"lr\": 0.0001}",
                              .n = n_opt, .state = opt};
    model_file_train_state ts = {.epoch = 3, .step = 1234, .data_position = 320,
                                 .rng_seed = 0xfedcba9876543210ull, .best_metric = 0.1875,
                                 .best_metric_name = "val_loss"};
    model_file_contents c = {.architecture = arch, .model_card = card, .class_names = classes,
                             .n_classes = 3, .views = a.v, .n_views = NV, .optimizer = &o,
                             .train_state = &ts};
    rb_error err = {0};
    for (int pass = 0; pass < 2; pass++) /* the second save replaces the first */
        CHECK(model_file_save(path, &c, &err) == 0, "save: %s", err.msg);
    CHECK(leftover_tmp(dir) == 0, "no temporary file left behind");

    model_file_header h;
    CHECK(model_file_read_header(path, &h, &err) == 0, "header: %s", err.msg);
    CHECK(h.format_version == MODEL_FILE_VERSION && h.format_version == 2 && h.has_checksums,
          "version 2 with checksums");
    CHECK(h.architecture && strcmp(h.architecture, arch) == 0, "architecture round trip");
    CHECK(h.model_card && strcmp(h.model_card, card) == 0, "model card");
    CHECK(h.n_classes == 3 && strcmp(h.class_names[2], classes[2]) == 0, "class names (UTF-8)");
    CHECK(h.n_tensors == NV && h.n_values == a.total, "tensor count %lld values %lld",
          (long long)h.n_tensors, (long long)h.n_values);
    CHECK(h.has_optimizer && strcmp(h.optimizer_kind, "adam") == 0 && h.optimizer_step == 1234 &&
              h.optimizer_state_len == n_opt && strcmp(h.optimizer_config, o.config) == 0,
          "optimizer header");
    CHECK(h.has_train_state && h.train_state.epoch == 3 && h.train_state.step == 1234 &&
              h.train_state.data_position == 320 &&
              h.train_state.rng_seed == 0xfedcba9876543210ull &&
              h.train_state.best_metric == 0.1875 &&
              strcmp(h.train_state.best_metric_name, "val_loss") == 0,
          "train state");
    model_file_header_free(&h);

    /* the weights hold NaN and Inf (fill_bits): refused by a normal load, naming the tensor */
    CHECK(model_file_load_weights(path, b.v, NV, &err) < 0 &&
              contains(err.msg, "model.h5: tensor 'Conv1/kernel' (/weights/Conv1/kernel) holds non-finite values") &&
              contains(err.msg, "(first at index 2)"),
          "non-finite weights refused: %s", err.msg);
    /* ... and loaded bit for bit when allowed (inspect --diff) */
    int8_t ok[NV];
    CHECK(model_file_load_weights_opt(path, b.v, NV, MODEL_FILE_ALLOW_NONFINITE, ok, &err) == 0, "load: %s",
          err.msg);
    CHECK(memcmp(a.buf, b.buf, (size_t)a.total * sizeof(float)) == 0, "weights bit-exact");
    for (int i = 0; i < NV; i++)
        CHECK(ok[i] == 1, "checksum of tensor %d matches", i);
    CHECK(model_file_load_optimizer(path, opt_back, n_opt, &err) == 0, "optimizer: %s", err.msg);
    CHECK(memcmp(opt, opt_back, (size_t)n_opt * sizeof(float)) == 0, "optimizer bit-exact");
    char want[128];
    snprintf(want, sizeof want, "holds %lld floats, the optimizer needs %lld", (long long)n_opt,
             (long long)n_opt - 1);
    CHECK(model_file_load_optimizer(path, opt_back, n_opt - 1, &err) < 0 &&
              contains(err.msg, want),
          "optimizer length check");

    /* views in another order load the same (by name) */
    toy r;
    toy_init(&r, 3);
    rb_param_view rev[NV];
    for (int i = 0; i < NV; i++)
        rev[i] = r.v[NV - 1 - i];
    CHECK(model_file_load_weights_opt(path, rev, NV, MODEL_FILE_ALLOW_NONFINITE, NULL, &err) == 0, "reordered: %s",
          err.msg);
    CHECK(memcmp(a.buf, r.buf, (size_t)a.total * sizeof(float)) == 0, "reordered bit-exact");
    free(r.buf);

    /* a plain model: no optimizer, no train state, no classes, SGD without state */
    char plain[4200];
    snprintf(plain, sizeof plain, "%s/plain.h5", dir);
    model_file_optimizer sgd = {.kind = "sgd", .step = 5, .n = 0, .state = NULL};
    model_file_contents c2 = {.architecture = "net v1", .views = a.v, .n_views = NV};
    CHECK(model_file_save(plain, &c2, &err) == 0, "plain save: %s", err.msg);
    CHECK(model_file_read_header(plain, &h, &err) == 0, "plain header: %s", err.msg);
    CHECK(!h.has_optimizer && !h.has_train_state && h.n_classes == 0, "plain header fields");
    model_file_header_free(&h);
    CHECK(model_file_load_optimizer(plain, opt_back, 1, &err) < 0 &&
              contains(err.msg, "no optimizer state"),
          "no optimizer in a plain file");
    c2.optimizer = &sgd;
    CHECK(model_file_save(plain, &c2, &err) == 0, "empty optimizer state: %s", err.msg);
    CHECK(model_file_read_header(plain, &h, &err) == 0 && h.has_optimizer &&
              h.optimizer_state_len == 0,
          "empty optimizer header: %s", err.msg);
    model_file_header_free(&h);

    /* refusals */
    toy wrong;
    toy_init(&wrong, 2);
    CHECK(model_file_load_weights(path, wrong.v, NV, &err) < 0 &&
              contains(err.msg, "weight 'dense/kernel' has shape [8, 3] in the file "
                                "(/weights/dense/kernel) but [8, 2] in the model"),
          "shape mismatch");
    free(wrong.buf);
    CHECK(model_file_load_weights(path, b.v, NV - 1, &err) < 0 &&
              contains(err.msg, "the file has 1 tensor the model lacks, first 'dense/bias'"),
          "extra tensor");
    b.v[3].weight = "running_mean";
    CHECK(model_file_load_weights(path, b.v, NV, &err) < 0 &&
              contains(err.msg, "the model's weight 'bn_Conv1/running_mean' is not in the file"),
          "missing tensor");
    b.v[3].weight = "moving_mean";

    set_version(path, 3);
    CHECK(model_file_read_header(path, &h, &err) < 0 &&
              contains(err.msg, "format_version 3, this radbatch reads versions 1 and 2") &&
              contains(err.hint, "newer radbatch"),
          "newer version refused");
    CHECK(model_file_load_weights(path, b.v, NV, &err) < 0, "newer version refused (weights)");
    set_version(path, 2);

    /* ---- integrity: a model of finite weights, then one changed byte at a time */
    for (int64_t i = 0; i < a.total; i++)
        a.buf[i] = (float)((i % 17) - 8) * 0.125f;
    char good[4200], damaged[4200];
    snprintf(good, sizeof good, "%s/good.h5", dir);
    snprintf(damaged, sizeof damaged, "%s/damaged.h5", dir);
    for (int64_t i = 0; i < n_opt; i++)
        opt[i] = (float)i;
    CHECK(model_file_save(good, &c, &err) == 0, "save: %s", err.msg);
    CHECK(model_file_load_weights(good, b.v, NV, &err) == 0, "finite weights load: %s", err.msg);
    CHECK(model_file_load_optimizer(good, opt_back, n_opt, &err) == 0, "optimizer loads: %s", err.msg);
    CHECK(model_file_verify(good, &err) == 0, "an intact file verifies: %s", err.msg);
    c2.optimizer = NULL;
    CHECK(model_file_save(plain, &c2, &err) == 0 && model_file_verify(plain, &err) == 0,
          "a model without optimizer state verifies: %s", err.msg);
    c2.optimizer = &sgd;
    CHECK(model_file_save(plain, &c2, &err) == 0 && model_file_verify(plain, &err) == 0,
          "a checkpoint with an empty optimizer state verifies: %s", err.msg);

    /* a flipped byte in a weight dataset: the error names the file and the tensor */
    copy_file(good, damaged);
    flip_byte(damaged, data_offset(damaged, "/weights/dense/kernel") + 5);
    CHECK(model_file_read_header(damaged, &h, &err) == 0, "the header is intact: %s", err.msg);
    model_file_header_free(&h);
    CHECK(model_file_load_weights(damaged, b.v, NV, &err) < 0 &&
              contains(err.msg, "damaged.h5: checksum mismatch in tensor 'dense/kernel' (/weights/dense/kernel): stored "),
          "flipped weight byte");
    CHECK(model_file_verify(damaged, &err) < 0 &&
              contains(err.msg, "damaged.h5: checksum mismatch in tensor 'dense/kernel' (/weights/dense/kernel): stored "),
          "verify: flipped weight byte: %s", err.msg);
    CHECK(model_file_load_weights_opt(damaged, b.v, NV, MODEL_FILE_ALLOW_NONFINITE, ok, &err) == 0 && ok[5] == 0 &&
              ok[0] == 1 && ok[6] == 1,
          "diagnostic load names only the damaged tensor");

    /* a weight that is NaN although its checksum matches (saved that way) */
    a.buf[a.v[6].offset + 1] = NAN;
    CHECK(model_file_save(damaged, &c, &err) == 0, "save: %s", err.msg);
    CHECK(model_file_load_weights(damaged, b.v, NV, &err) < 0 &&
              contains(err.msg, "damaged.h5: tensor 'dense/bias' (/weights/dense/bias) holds non-finite values: 1 NaN, "
                                "0 Inf (first at index 1)"),
          "NaN weight: %s", err.msg);
    CHECK(model_file_verify(damaged, &err) < 0 &&
              contains(err.msg, "damaged.h5: tensor 'dense/bias' (/weights/dense/bias) holds non-finite values: 1 NaN, 0 Inf (first at index 1)"),
          "verify: NaN weight: %s", err.msg);
    a.buf[a.v[6].offset + 1] = 0.5f;

    /* a flipped byte in the model card's text */
    copy_file(good, damaged);
    long at = find_bytes(damaged, "chest x-ray");
    CHECK(at > 0, "card text found in the file");
    flip_byte(damaged, at + 2);
    CHECK(model_file_read_header(damaged, &h, &err) < 0 &&
              contains(err.msg, "damaged.h5: checksum mismatch in the model card: stored "),
          "flipped card byte: %s", err.msg);
    CHECK(model_file_verify(damaged, &err) < 0 && contains(err.msg, "checksum mismatch in the model card"),
          "verify: flipped card byte: %s", err.msg);
    CHECK(model_file_load_weights(damaged, b.v, NV, &err) == 0, "the tensors are intact");

    /* a flipped byte in a class name */
    copy_file(good, damaged);
    at = find_bytes(damaged, "PNEUMONIA");
    CHECK(at > 0, "class name found in the file");
    flip_byte(damaged, at + 1);
    CHECK(model_file_read_header(damaged, &h, &err) < 0 &&
              contains(err.msg, "damaged.h5: checksum mismatch in the class names: stored "),
          "flipped class-name byte: %s", err.msg);

    /* a flipped byte in the optimizer state of a checkpoint */
    copy_file(good, damaged);
    flip_byte(damaged, data_offset(damaged, "/optimizer/state") + 9);
    CHECK(model_file_load_optimizer(damaged, opt_back, n_opt, &err) < 0 &&
              contains(err.msg, "damaged.h5: checksum mismatch in the optimizer state (/optimizer/state)"),
          "flipped optimizer byte: %s", err.msg);
    CHECK(model_file_verify(damaged, &err) < 0 &&
              contains(err.msg, "damaged.h5: checksum mismatch in the optimizer state (/optimizer/state)"),
          "verify: flipped optimizer byte: %s", err.msg);

    /* a version-2 file that lost a checksum attribute: an error, not an unverified load */
    copy_file(good, damaged);
    {
        hid_t f = H5Fopen(damaged, H5F_ACC_RDWR, H5P_DEFAULT);
        hid_t d = H5Dopen2(f, "/weights/bn_Conv1/beta", H5P_DEFAULT);
        H5Adelete(d, "xxh3");
        H5Dclose(d);
        H5Adelete(f, "model_card_xxh3");
        H5Fclose(f);
    }
    CHECK(model_file_read_header(damaged, &h, &err) < 0 &&
              contains(err.msg, "damaged.h5: no readable checksum for the model card (attribute model_card_xxh3)"),
          "missing card checksum: %s", err.msg);
    CHECK(model_file_load_weights(damaged, b.v, NV, &err) < 0 &&
              contains(err.msg, "damaged.h5: no readable checksum for tensor 'bn_Conv1/beta' (/weights/bn_Conv1/beta) "
                                "(attribute xxh3)"),
          "missing tensor checksum: %s", err.msg);

    /* a truncated file (a copy cut short): refused on open */
    copy_file(good, damaged);
    FILE *tf = fopen(damaged, "r+b");
    fseek(tf, 0, SEEK_END);
    long size = ftell(tf);
    fclose(tf);
    CHECK(truncate(damaged, size - 100) == 0, "truncate");
    CHECK(model_file_read_header(damaged, &h, &err) < 0 &&
              contains(err.msg, "damaged.h5: cannot open as HDF5 (truncated or damaged?)"),
          "truncated file: %s", err.msg);
    CHECK(model_file_load_weights(damaged, b.v, NV, &err) < 0 && contains(err.msg, "cannot open as HDF5"),
          "truncated file (weights)");
    CHECK(model_file_verify(damaged, &err) < 0 && contains(err.msg, "cannot open as HDF5"), "verify: truncated file");

    /* an older file (format_version 1) carries no checksums: it loads, unverified */
    copy_file(good, damaged);
    flip_byte(damaged, data_offset(damaged, "/weights/dense/kernel") + 5);
    set_version(damaged, 1);
    CHECK(model_file_read_header(damaged, &h, &err) == 0 && h.format_version == 1 && !h.has_checksums,
          "version 1 header: %s", err.msg);
    model_file_header_free(&h);
    CHECK(model_file_load_weights(damaged, b.v, NV, &err) == 0, "version 1 loads unverified: %s", err.msg);

    char keras[4200];
    snprintf(keras, sizeof keras, "%s/tests/golden/keras/tfkeras_mnv2mini_weights.h5",
             test_srcdir());
    CHECK(model_file_read_header(keras, &h, &err) < 0 &&
              contains(err.msg, "not a radbatch model file") && contains(err.hint, "Keras"),
          "a Keras file is told apart");
    keras_file *kf = NULL;
    CHECK(keras_file_open(path, &kf, &err) < 0 &&
              contains(err.msg, "this is a radbatch model file, not a Keras weight file"),
          "and the other way round");
    char json[4200];
    snprintf(json, sizeof json, "%s/tests/golden/keras/expected.json", test_srcdir());
    CHECK(model_file_read_header(json, &h, &err) < 0 && contains(err.msg, "not an HDF5 file"),
          "non-HDF5");

    char nodir[4200];
    snprintf(nodir, sizeof nodir, "%s/no/such/dir/model.h5", dir);
    CHECK(model_file_save(nodir, &c, &err) < 0 && contains(err.msg, "cannot create"),
          "save into a missing folder");
    rb_param_view bad = a.v[0];
    bad.layer = "a/b";
    model_file_contents c3 = {.architecture = "x", .views = &bad, .n_views = 1};
    char badp[4200];
    snprintf(badp, sizeof badp, "%s/bad.h5", dir);
    CHECK(model_file_save(badp, &c3, &err) < 0 && contains(err.msg, "layer name 'a/b'"),
          "unstorable name");
    CHECK(leftover_tmp(dir) == 0, "failed saves leave no temporary file");

    free(a.buf);
    free(b.buf);
    free(arch);
    free(opt);
    free(opt_back);
    return TEST_DONE();
}
