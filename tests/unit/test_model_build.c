/* Builders, description text and summary: Keras parameter counts, layer names and shapes
 * of MobileNetV2 against the fixture's layer table, description round trip, parse errors,
 * head options, unfreeze-top. */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "test_util.h"


static rb_model *build_desc(const char *desc)
{
    rb_error err = {0};
    rb_model *m = NULL;
    if (rb_model_from_desc(&m, desc, &err)) {
        rb_error_print(&err, "test");
        return NULL;
    }
    return m;
}

/* description -> model -> description -> model -> description: stable text */
static void check_roundtrip(rb_model *m, const char *what)
{
    char *d1 = rb_model_desc(m);
    rb_model *m2 = build_desc(d1);
    CHECK(m2 != NULL, "%s: printed description does not parse", what);
    if (!m2) {
        free(d1);
        return;
    }
    char *d2 = rb_model_desc(m2);
    CHECK(strcmp(d1, d2) == 0, "%s: description not stable", what);
    CHECK(m2->nparams == m->nparams && m2->nnodes == m->nnodes, "%s: rebuilt differs", what);
    free(d1);
    free(d2);
    rb_model_free(m2);
}

static void test_mobilenetv2_224(void)
{
    rb_error err = {0};
    char *desc = rb_desc_mobilenetv2(224, 224, NULL, &err);
    CHECK(desc != NULL, "mobilenetv2 desc");
    if (!desc)
        return;
    rb_model *m = build_desc(desc);
    free(desc);
    CHECK(m != NULL, "mobilenetv2 build");
    if (!m)
        return;
    int64_t total, trainable, frozen;
    rb_model_count(m, &total, &trainable, &frozen);
    CHECK(total == 2257984, "MobileNetV2 notop 224 total %lld != 2,257,984", (long long)total);
    CHECK(trainable == 0 && frozen == total, "frozen base: trainable %lld", (long long)trainable);
    CHECK(m->nnodes == 155, "layers %d", m->nnodes);
    rb_model_set_all_trainable(m, 1);
    rb_model_count(m, &total, &trainable, &frozen);
    CHECK(trainable == 2223872 && frozen == 34112, "trainable %lld non-trainable %lld",
          (long long)trainable, (long long)frozen);

    /* every layer as in the fixture table: index, name, class, inbound, shape, weights */
    char path[1024];
    FILE *f = NULL;
    if (test_fixture_path(path, sizeof path, "mobilenetv2_layers_224.tsv") == 0)
        f = fopen(path, "r");
    CHECK(f != NULL, "%s: cannot open (tests/data/mobilenetv2 holds a copy)", path);
    if (f) {
        char line[4096];
        int rows = 0;
        if (!fgets(line, sizeof line, f))
            line[0] = 0;
        while (fgets(line, sizeof line, f)) {
            char *save = NULL;
            char *idx = strtok_r(line, "\t", &save);
            char *name = strtok_r(NULL, "\t", &save);
            char *klass = strtok_r(NULL, "\t", &save);
            char *rest = save; /* inbound may be empty: split by hand */
            char *tab = strchr(rest, '\t');
            if (!idx || !name || !klass || !tab)
                break;
            *tab = 0;
            char *inbound = rest;
            char *shape = strtok_r(tab + 1, "\t", &save);
            int i = atoi(idx);
            rows++;
            CHECK(i < m->nnodes, "row %d beyond model", i);
            if (i >= m->nnodes)
                continue;
            const rb_node *n = &m->nodes[i];
            CHECK(strcmp(n->name, name) == 0, "layer %d: %s vs fixture %s", i, n->name, name);
            CHECK(strcmp(rb_op_class(n->op), klass) == 0, "layer %s: class %s vs %s", name,
                  rb_op_class(n->op), klass);
            char ours[64];
            snprintf(ours, sizeof ours, "%dx%dx%d", n->h, n->w, n->c);
            CHECK(shape && strcmp(ours, shape) == 0, "layer %s: shape %s vs %s", name, ours,
                  shape ? shape : "?");
            char in_ours[256] = "";
            for (int k = 0; k < n->ninputs; k++) {
                size_t l = strlen(in_ours);
                snprintf(in_ours + l, sizeof in_ours - l, "%s%s", k ? "," : "",
                         m->nodes[n->inputs[k]].name);
            }
            CHECK(strcmp(in_ours, inbound) == 0, "layer %s: inputs %s vs %s", name, in_ours,
                  inbound);
        }
        fclose(f);
        CHECK(rows == 155, "fixture rows %d", rows);
    }
    /* views: Keras order, shapes */
    int nv;
    const rb_param_view *v = rb_model_params(m, &nv);
    CHECK(nv == 260, "260 weight tensors, got %d", nv);
    CHECK(!strcmp(v[0].layer, "Conv1") && !strcmp(v[0].weight, "kernel") && v[0].ndim == 4 &&
              v[0].shape[0] == 3 && v[0].shape[1] == 3 && v[0].shape[2] == 3 && v[0].shape[3] == 32,
          "first view Conv1/kernel [3,3,3,32]");
    CHECK(!strcmp(v[4].weight, "moving_variance") && v[4].is_state && v[4].data[0] == 1.0f,
          "bn_Conv1/moving_variance is state, initialized to 1");
    int nl;
    const rb_layer_view *lv = rb_model_layers(m, &nl);
    CHECK(nl == 155 && !strcmp(lv[1].name, "Conv1_pad") && !strcmp(lv[1].klass, "ZeroPadding2D"),
          "layer views");
    /* unfreeze the top 30%: Keras int(155 * 0.7) = 108 = block_12_expand */
    int at = rb_model_unfreeze_top(m, 0.3);
    CHECK(at == 108 && !strcmp(m->nodes[at].name, "block_12_expand"), "unfreeze_top at %d (%s)",
          at, m->nodes[at].name);
    CHECK(!m->nodes[107].trainable && m->nodes[108].trainable && m->nodes[154].trainable,
          "trainable flags after unfreeze");
    int64_t off, len;
    rb_model_trainable_span(m, &off, &len);
    CHECK(off == m->nodes[108].woff[0] && off + len <= m->nparams && len > 0, "span");
    check_roundtrip(m, "mobilenetv2 224");
    printf("--- summary of MobileNetV2 (include_top=False) at 224, top 30%% unfrozen ---\n");
    rb_model_summary(m, stdout);
    rb_model_free(m);
}

static void test_mobilenetv2_sizes(void)
{
    rb_error err = {0};
    /* odd sizes use correct_pad ((1,1),(1,1)); all sizes >= 32 build */
    static const int sizes[][2] = {{160, 160}, {32, 32}, {33, 47}, {97, 100}, {225, 225}};
    static const int out[][2] = {{5, 5}, {1, 1}, {2, 2}, {4, 4}, {8, 8}};
    for (int k = 0; k < 5; k++) {
        rb_head_opts h = rb_head_seed000(2);
        char *desc = rb_desc_mobilenetv2(sizes[k][0], sizes[k][1], &h, &err);
        CHECK(desc != NULL, "desc %dx%d", sizes[k][0], sizes[k][1]);
        if (!desc)
            continue;
        rb_model *m = build_desc(desc);
        free(desc);
        CHECK(m != NULL, "build %dx%d", sizes[k][0], sizes[k][1]);
        if (!m)
            continue;
        int o = rb_model_find(m, "out_relu");
        CHECK(m->nodes[o].h == out[k][0] && m->nodes[o].w == out[k][1],
              "%dx%d: out_relu %dx%d, want %dx%d", sizes[k][0], sizes[k][1], m->nodes[o].h,
              m->nodes[o].w, out[k][0], out[k][1]);
        if (sizes[k][0] == 33) {
            int p = rb_model_find(m, "Conv1_pad");
            CHECK(m->nodes[p].pad_t == 1 && m->nodes[p].pad_b == 1 && m->nodes[p].pad_l == 1,
                  "odd size pads ((1,1),(1,1))");
        }
        /* seed-000 head: GAP, dropout 0.3, dense 128 relu, dense 2 softmax */
        int g = rb_model_find(m, "global_average_pooling2d"), d = rb_model_find(m, "dropout"),
            d0 = rb_model_find(m, "dense"), d1 = rb_model_find(m, "dense_1");
        CHECK(g == 155 && d == 156 && d0 == 157 && d1 == 158 && m->nnodes == 159, "head names");
        if (d1 == 158) {
            CHECK(m->nodes[d].rate == 0.3f && m->nodes[d0].units == 128 &&
                      m->nodes[d0].act == RB_ACT_RELU && m->nodes[d1].units == 2 &&
                      m->nodes[d1].act == RB_ACT_SOFTMAX && m->nodes[d1].trainable,
                  "head config");
        }
        rb_model_free(m);
    }
    CHECK(rb_desc_mobilenetv2(31, 64, NULL, &err) == NULL, "31 rejected");
}

static void test_cnn001(void)
{
    rb_error err = {0};
    rb_model *m = NULL;
    CHECK(rb_model_build(&m, "cnn", 150, 150, 3, NULL, &err) == 0, "cnn build");
    if (!m)
        return;
    int64_t total, trainable, frozen;
    rb_model_count(m, &total, &trainable, &frozen);
    CHECK(total == 3455042, "seed-001 CNN total %lld != 3,455,042", (long long)total);
    CHECK(frozen == 704, "non-trainable %lld != 704", (long long)frozen);
    int f = rb_model_find(m, "flatten");
    CHECK(f > 0 && m->nodes[f].c == 7 * 7 * 128, "flatten 6272");
    CHECK(rb_model_find(m, "conv2d_3") > 0 && rb_model_find(m, "batch_normalization_3") > 0 &&
              rb_model_find(m, "re_lu_3") > 0 && rb_model_find(m, "max_pooling2d_3") > 0 &&
              rb_model_find(m, "dense_1") == m->nnodes - 1,
          "Keras names");
    check_roundtrip(m, "cnn001");
    printf("--- summary of the seed-001 CNN at 150x150x3, 2 classes ---\n");
    rb_model_summary(m, stdout);
    rb_model_free(m);
}

static void test_desc_errors(void)
{
    static const char *bad[] = {
        "[Conv2D] name=c filters=3 kernel=3\n",                                 /* no input */
        "[InputLayer] name=i shape=8,8,3\n[Conv2D] name=c kernel=3\n",          /* no filters */
        "[InputLayer] name=i shape=8,8,3\n[Conv3D] name=c\n",                   /* class */
        "[InputLayer] name=i shape=8,8,3\n[Conv2D] name=c filters=2 kernel=3 bogus=1\n",
        "[InputLayer] name=i shape=8,8,3\n[Dense] name=d units=2\n",            /* 4-D */
        "[InputLayer] name=i shape=8,8,3\n[Flatten] name=f inputs=nope\n",      /* input */
        "[InputLayer] name=i shape=8,8,3\n[Flatten] name=i\n",                  /* dup */
        "[InputLayer] name=i shape=2,2,3\n[Conv2D] name=c filters=2 kernel=3\n", /* small */
        "[InputLayer] name=i shape=8,8,3\n[ReLU] name=r max_value=5\n",
        "[InputLayer] name=i shape=8,8,3\n[Dropout] name=d\n",
        "[InputLayer] name=i shape=8,8,3\n[Conv2D] name=a filters=2 kernel=1\n"
        "[Conv2D] name=b filters=3 kernel=1 inputs=i\n[Add] name=s inputs=a,b\n",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rb_error err = {0};
        rb_model *m = NULL;
        int rc = rb_model_from_desc(&m, bad[k], &err);
        CHECK(rc != 0 && m == NULL, "bad description %zu accepted", k);
        CHECK(err.msg[0] != 0, "bad description %zu: no message", k);
        if (k == 3)
            CHECK(strstr(err.msg, "bogus") && strstr(err.msg, "line 2"), "message names key/line: %s",
                  err.msg);
    }
    /* multi-line sections, comments, default inputs */
    const char *ok = "# comment\n[model] name=tiny\n[InputLayer]\n name=in\n shape=6,6,2 # x\n"
                     "[Conv2D] name=c filters=4 kernel=3 padding=same activation=relu\n"
                     "[GlobalAveragePooling2D] name=g\n[Dense] name=d units=3 activation=softmax\n";
    rb_model *m = build_desc(ok);
    CHECK(m && m->nnodes == 4 && m->nodes[1].c == 4 && m->nodes[3].inputs[0] == 2 &&
              m->nodes[1].nparams == 3 * 3 * 2 * 4 + 4,
          "multi-line description");
    if (m)
        check_roundtrip(m, "tiny");
    rb_model_free(m);
}

/* Pairs print as one number when both are equal, else as two (kernel=1,3), and read back */
static void test_desc_pairs(void)
{
    const char *desc = "[InputLayer] name=i shape=9,9,2\n"
                       "[Conv2D] name=c filters=2 kernel=1,3 strides=2,1 padding=same\n"
                       "[DepthwiseConv2D] name=d kernel=3 strides=1\n"
                       "[MaxPooling2D] name=p pool=2,3 strides=1,2\n"
                       "[AveragePooling2D] name=a pool=2\n";
    rb_model *m = build_desc(desc);
    CHECK(m != NULL, "pairs description");
    if (!m)
        return;
    char *d = rb_model_desc(m);
    CHECK(strstr(d, " kernel=1,3 strides=2,1 padding=same") && strstr(d, " kernel=3 strides=1 padding=valid") &&
              strstr(d, " pool=2,3 strides=1,2 padding=valid") && strstr(d, " pool=2 strides=2 padding=valid"),
          "pairs printed: %s", d);
    free(d);
    check_roundtrip(m, "pairs");
    rb_model_free(m);
}

/* Every key reader of a layer section, fed a bad value: the message names the line, class,
 * key and value, and the hint says what is accepted; a key of another class is unknown. */
static void test_desc_key_errors(void)
{
    static const struct {
        const char *section, *msg, *hint;
    } bad[] = {
        {"[InputLayer] name=x shape=0,4,3", "[InputLayer] shape=0,4,3: bad value",
         "shape=H,W,C, e.g. shape=224,224,3 (or shape=C for a vector)"},
        {"[InputLayer] name=x preprocess=caffe", "[InputLayer] preprocess=caffe: bad value",
         "tf (x/127.5-1), div255 (x/255), none, minmax (per image to [0,1])"},
        {"[Conv2D] name=x filters=0", "[Conv2D] filters=0: bad value", "a positive integer"},
        {"[DepthwiseConv2D] name=x depth_multiplier=2", "[DepthwiseConv2D] depth_multiplier=2: bad value",
         "only depth_multiplier=1 is supported"},
        {"[Conv2D] name=x kernel=0", "[Conv2D] kernel=0: bad value", "kernel=K or kernel=KH,KW"},
        {"[DepthwiseConv2D] name=x strides=a", "[DepthwiseConv2D] strides=a: bad value",
         "strides=S or strides=SH,SW"},
        {"[Conv2D] name=x padding=full", "[Conv2D] padding=full: bad value", "valid or same"},
        {"[Conv2D] name=x use_bias=maybe", "[Conv2D] use_bias=maybe: bad value", "true or false"},
        {"[Conv2D] name=x activation=gelu", "[Conv2D] activation=gelu: bad value",
         "linear, relu, relu6, sigmoid, softmax"},
        {"[ZeroPadding2D] name=x padding=1,2,3", "[ZeroPadding2D] padding=1,2,3: bad value",
         "padding=P, padding=PH,PW or padding=top,bottom,left,right"},
        {"[ZeroPadding2D] name=x padding=-1", "[ZeroPadding2D] padding=-1: bad value", "paddings are >= 0"},
        {"[BatchNormalization] name=x momentum=2", "[BatchNormalization] momentum=2: bad value",
         "a number in [0, 1]"},
        {"[BatchNormalization] name=x epsilon=0", "[BatchNormalization] epsilon=0: bad value",
         "a positive number"},
        {"[BatchNormalization] name=x center=false", "[BatchNormalization] center=false: bad value",
         "only axis=-1, center=true, scale=true"},
        {"[ReLU] name=x max_value=5", "[ReLU] max_value=5: bad value", "max_value=6 or none"},
        {"[Activation] name=x activation=tanh", "[Activation] activation=tanh: bad value",
         "linear, relu, relu6, sigmoid, softmax"},
        {"[Dense] name=x units=0", "[Dense] units=0: bad value", "a positive integer"},
        {"[Dense] name=x use_bias=2", "[Dense] use_bias=2: bad value", "true or false"},
        {"[MaxPooling2D] name=x pool=0", "[MaxPooling2D] pool=0: bad value", "pool=P or pool=PH,PW"},
        {"[AveragePooling2D] name=x strides=0", "[AveragePooling2D] strides=0: bad value",
         "strides=S or strides=SH,SW"},
        {"[MaxPooling2D] name=x padding=full", "[MaxPooling2D] padding=full: bad value", "valid or same"},
        {"[Dropout] name=x rate=1", "[Dropout] rate=1: bad value", "a number in [0, 1)"},
        {"[Softmax] name=x axis=1", "[Softmax] axis=1: bad value", "only axis=-1"},
        {"[Concatenate] name=x axis=0", "[Concatenate] axis=0: bad value", "only axis=-1"},
        {"[Flatten] name=x trainable=perhaps", "[Flatten] trainable=perhaps: bad value", "true or false"},
        {"[Dense] name=x filters=3", "[Dense] x: unknown key 'filters'",
         "see docs/engine.md for the keys of each layer class"},
        {"[DepthwiseConv2D] name=x filters=3", "[DepthwiseConv2D] x: unknown key 'filters'",
         "see docs/engine.md for the keys of each layer class"},
        {"[Activation] name=x units=3", "[Activation] x: unknown key 'units'",
         "see docs/engine.md for the keys of each layer class"},
        {"[Add] name=x axis=-1", "[Add] x: unknown key 'axis'",
         "see docs/engine.md for the keys of each layer class"},
        {"[Flatten] name=i", "layer name 'i' used twice", "every layer needs its own name"},
        {"[Flatten] name=x inputs=nope", "[Flatten] x: unknown input layer 'nope'",
         "inputs name layers defined above this one"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        char desc[256], want[300];
        snprintf(desc, sizeof desc, "[InputLayer] name=i shape=8,8,3\n%s\n", bad[k].section);
        snprintf(want, sizeof want, "network description line 2: %s", bad[k].msg);
        rb_error err = {0};
        rb_model *m = NULL;
        int rc = rb_model_from_desc(&m, desc, &err);
        CHECK(rc != 0 && m == NULL, "'%s' accepted", bad[k].section);
        CHECK(!strcmp(err.msg, want) && !strcmp(err.hint, bad[k].hint),
              "'%s': message '%s' hint '%s', want '%s' hint '%s'", bad[k].section, err.msg, err.hint,
              want, bad[k].hint);
        rb_model_free(m);
    }
}

static void test_head_options(void)
{
    rb_error err = {0};
    rb_head_opts h = rb_head_seed000(3);
    h.nunits = 2;
    h.units[0] = 64;
    h.units[1] = 32;
    h.dense_dropout = 0.2f;
    h.sigmoid = 1;
    rb_model *m = NULL;
    CHECK(rb_model_build(&m, "mobilenetv2", 96, 96, 3, &h, &err) == 0, "custom head");
    if (m) {
        const rb_node *o = &m->nodes[m->output];
        CHECK(o->units == 1 && o->act == RB_ACT_SIGMOID && !strcmp(o->name, "dense_2"),
              "sigmoid output %s", o->name);
        CHECK(rb_model_find(m, "dropout_2") > 0, "dropouts after hidden dense");
        CHECK(!strcmp(m->name, "mobilenetv2_1.00_96"), "name %s", m->name);
        rb_model_free(m);
    }
    /* job-file keys */
    h = rb_head_seed000(2);
    CHECK(rb_head_set(&h, "head_units", "256,64", &err) == 0 && h.nunits == 2 && h.units[1] == 64,
          "head_units");
    CHECK(rb_head_set(&h, "head_dropout", "0.5", &err) == 0 && h.dropout == 0.5f, "head_dropout");
    CHECK(rb_head_set(&h, "head_dense_dropout", "0.2", &err) == 0 && h.dense_dropout == 0.2f,
          "head_dense_dropout");
    CHECK(rb_head_set(&h, "head_output", "sigmoid", &err) == 0 && h.sigmoid, "head_output");
    CHECK(rb_head_set(&h, "head_pooling", "flatten", &err) == 0 && h.pooling == RB_POOL_FLATTEN,
          "head_pooling");
    CHECK(rb_head_set(&h, "head_units", "12x", &err) != 0 && strstr(err.msg, "head_units"),
          "bad head_units rejected");
    CHECK(rb_head_set(&h, "head_dropout", "1.5", &err) != 0, "bad dropout rejected");
    CHECK(rb_head_set(&h, "head_colour", "red", &err) != 0, "unknown key rejected");
    h = rb_head_seed000(1);
    CHECK(rb_model_build(&m, "mobilenetv2", 96, 96, 3, &h, &err) != 0, "softmax 1 class rejected");
    CHECK(rb_model_build(&m, "resnet", 96, 96, 3, &h, &err) != 0, "unknown backbone");
}

int main(void)
{
    test_mobilenetv2_224();
    test_mobilenetv2_sizes();
    test_cnn001();
    test_desc_errors();
    test_desc_pairs();
    test_desc_key_errors();
    test_head_options();
    return TEST_DONE();
}
