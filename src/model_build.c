/* Builders: they write network description text (model_desc.c parses it), so every built
 * model has a description that rebuilds it exactly and a job file can swap the head.
 *
 * MobileNetV2 follows keras_applications 1.0.8 mobilenet_v2.py for alpha 1.0 (the layout
 * of ../shared/fixtures/mobilenetv2/mobilenetv2_layers_224.tsv): Conv1_pad + Conv1 (3x3/2
 * valid), 17 inverted-residual blocks (block 0 named expanded_conv_*), a ZeroPadding2D
 * from correct_pad before each stride-2 depthwise, ReLU(6), BN epsilon 1e-3 momentum
 * 0.999, residual Adds when stride 1 and channels match, then Conv_1 (1280) and out_relu.
 * (tf.keras 2.x dropped Conv1_pad and pads Conv1 'same'; the result is identical and its
 * weights load by name.) */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rb_buf.h"

static char *sb_done(rb_buf *b, rb_error *err)
{
    if (b->failed) {
        rb_buf_free(b);
        rb_fail(err, NULL, "out of memory writing a network description");
        return NULL;
    }
    return (char *)b->data;
}

rb_head_opts rb_head_seed000(int n_classes)
{
    rb_head_opts h = {0};
    h.n_classes = n_classes;
    h.pooling = RB_POOL_GAP;
    h.dropout = 0.3f;
    h.nunits = 1;
    h.units[0] = 128;
    h.activation = RB_ACT_RELU;
    return h;
}

rb_head_opts rb_head_seed001(int n_classes)
{
    rb_head_opts h = {0};
    h.n_classes = n_classes;
    h.pooling = RB_POOL_FLATTEN;
    h.nunits = 1;
    h.units[0] = 512;
    h.activation = RB_ACT_RELU;
    return h;
}

static int head_check(const rb_head_opts *h, rb_error *err)
{
    if (h->nunits < 0 || h->nunits > RB_HEAD_MAX_UNITS)
        return rb_fail(err, "head_units takes at most 8 numbers", "head: %d hidden layers",
                       h->nunits);
    for (int i = 0; i < h->nunits; i++)
        if (h->units[i] < 1)
            return rb_fail(err, "head_units are positive integers", "head: hidden layer %d has %d units",
                           i + 1, h->units[i]);
    if (!h->sigmoid && h->n_classes < 2)
        return rb_fail(err, "a softmax head needs 2 or more classes (or use a sigmoid output)",
                       "head: %d classes", h->n_classes);
    if (h->dropout < 0 || h->dropout >= 1 || h->dense_dropout < 0 || h->dense_dropout >= 1)
        return rb_fail(err, "dropout rates are in [0, 1)", "head: dropout %g / %g",
                       (double)h->dropout, (double)h->dense_dropout);
    if (h->activation == RB_ACT_SOFTMAX)
        return rb_fail(err, "head_activation: relu, relu6, sigmoid or linear",
                       "head: softmax as hidden activation");
    return 0;
}

/* Keras auto-names: dense, dense_1, ...; dropout, dropout_1, ... */
static void keras_name(char *out, size_t n, const char *base, int k)
{
    if (k == 0)
        snprintf(out, n, "%s", base);
    else
        snprintf(out, n, "%s_%d", base, k);
}

static void head_append(rb_buf *b, const char *prev, const rb_head_opts *h)
{
    char nm[RB_NAME_MAX], last[RB_NAME_MAX];
    int ndense = 0, ndrop = 0;
    snprintf(last, sizeof last, "%s", prev);
    if (h->pooling == RB_POOL_GAP) {
        rb_buf_printf(b, "[GlobalAveragePooling2D] name=global_average_pooling2d inputs=%s\n", last);
        snprintf(last, sizeof last, "global_average_pooling2d");
    } else {
        rb_buf_printf(b, "[Flatten] name=flatten inputs=%s\n", last);
        snprintf(last, sizeof last, "flatten");
    }
    if (h->dropout > 0) {
        keras_name(nm, sizeof nm, "dropout", ndrop++);
        rb_buf_printf(b, "[Dropout] name=%s rate=%g inputs=%s\n", nm, (double)h->dropout, last);
        snprintf(last, sizeof last, "%s", nm);
    }
    for (int i = 0; i < h->nunits; i++) {
        keras_name(nm, sizeof nm, "dense", ndense++);
        rb_buf_printf(b, "[Dense] name=%s units=%d activation=%s inputs=%s\n", nm, h->units[i],
            rb_act_name(h->activation), last);
        snprintf(last, sizeof last, "%s", nm);
        if (h->dense_dropout > 0) {
            keras_name(nm, sizeof nm, "dropout", ndrop++);
            rb_buf_printf(b, "[Dropout] name=%s rate=%g inputs=%s\n", nm, (double)h->dense_dropout, last);
            snprintf(last, sizeof last, "%s", nm);
        }
    }
    keras_name(nm, sizeof nm, "dense", ndense++);
    if (h->sigmoid)
        rb_buf_printf(b, "[Dense] name=%s units=1 activation=sigmoid inputs=%s\n", nm, last);
    else
        rb_buf_printf(b, "[Dense] name=%s units=%d activation=softmax inputs=%s\n", nm, h->n_classes, last);
}

/* ---- MobileNetV2 ------------------------------------------------------------------------ */

typedef struct mb {
    rb_buf *b;
    int h, w, c;      /* current feature map */
    char last[RB_NAME_MAX];
    int layers;       /* Keras layer count so far */
} mb;

static void mb_layer(mb *s, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void mb_layer(mb *s, const char *name, const char *fmt, ...)
{
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    rb_buf_printf(s->b, "%s inputs=%s trainable=false\n", body, s->last);
    snprintf(s->last, sizeof s->last, "%s", name);
    s->layers++;
}

static void mb_bn(mb *s, const char *name)
{
    mb_layer(s, name, "[BatchNormalization] name=%s momentum=0.999 epsilon=0.001", name);
}

static void mb_relu6(mb *s, const char *name)
{
    mb_layer(s, name, "[ReLU] name=%s max_value=6", name);
}

/* keras_applications correct_pad for a 3x3 kernel: ((1-adj_h, 1), (1-adj_w, 1)) */
static void mb_pad(mb *s, const char *name)
{
    int top = 1 - (1 - s->h % 2), left = 1 - (1 - s->w % 2);
    mb_layer(s, name, "[ZeroPadding2D] name=%s padding=%d,1,%d,1", name, top, left);
    s->h += top + 1;
    s->w += left + 1;
}

static void mb_block(mb *s, int expansion, int stride, int filters, int id)
{
    char pre[32], nm[RB_NAME_MAX], block_in[RB_NAME_MAX];
    int in_c = s->c;
    snprintf(block_in, sizeof block_in, "%s", s->last);
    if (id) {
        snprintf(pre, sizeof pre, "block_%d_", id);
        snprintf(nm, sizeof nm, "%sexpand", pre);
        mb_layer(s, nm,
                 "[Conv2D] name=%s filters=%d kernel=1 strides=1 padding=same use_bias=false", nm,
                 expansion * in_c);
        s->c = expansion * in_c;
        snprintf(nm, sizeof nm, "%sexpand_BN", pre);
        mb_bn(s, nm);
        snprintf(nm, sizeof nm, "%sexpand_relu", pre);
        mb_relu6(s, nm);
    } else {
        snprintf(pre, sizeof pre, "expanded_conv_");
    }
    if (stride == 2) {
        snprintf(nm, sizeof nm, "%spad", pre);
        mb_pad(s, nm);
    }
    snprintf(nm, sizeof nm, "%sdepthwise", pre);
    mb_layer(s, nm, "[DepthwiseConv2D] name=%s kernel=3 strides=%d padding=%s use_bias=false", nm,
             stride, stride == 1 ? "same" : "valid");
    if (stride == 2) {
        s->h = (s->h - 3) / 2 + 1;
        s->w = (s->w - 3) / 2 + 1;
    }
    snprintf(nm, sizeof nm, "%sdepthwise_BN", pre);
    mb_bn(s, nm);
    snprintf(nm, sizeof nm, "%sdepthwise_relu", pre);
    mb_relu6(s, nm);
    snprintf(nm, sizeof nm, "%sproject", pre);
    mb_layer(s, nm, "[Conv2D] name=%s filters=%d kernel=1 strides=1 padding=same use_bias=false",
             nm, filters);
    s->c = filters;
    snprintf(nm, sizeof nm, "%sproject_BN", pre);
    mb_bn(s, nm);
    if (in_c == filters && stride == 1) {
        char proj[RB_NAME_MAX];
        snprintf(proj, sizeof proj, "%s", s->last);
        snprintf(nm, sizeof nm, "%sadd", pre);
        rb_buf_printf(s->b, "[Add] name=%s inputs=%s,%s\n", nm, block_in, proj);
        snprintf(s->last, sizeof s->last, "%s", nm);
        s->layers++;
    }
}

char *rb_desc_mobilenetv2(int h, int w, const rb_head_opts *head, rb_error *err)
{
    if (h < 32 || w < 32)
        return rb_fail(err, "MobileNetV2 needs an input of at least 32x32", "input %dx%d", h, w),
               NULL;
    if (head && head_check(head, err))
        return NULL;
    rb_buf b = {0};
    int rows = (h == w && (h == 96 || h == 128 || h == 160 || h == 192 || h == 224)) ? h : 224;
    /* the base has 155 Keras layers: 1 + 5 + 8 (block 0) + 16 blocks + 10 adds + 3 */
    rb_buf_printf(&b, "# radbatch network description v1\n");
    rb_buf_printf(&b, "# MobileNetV2 alpha 1.0 (Keras Applications layer names)%s\n",
        head ? " with a classification head" : ", include_top=False");
    rb_buf_printf(&b, "[model] name=mobilenetv2_1.00_%d backbone=mobilenetv2 base_layers=155 "
            "base_training=false\n",
        rows);
    rb_buf_printf(&b, "[InputLayer] name=input_1 shape=%d,%d,3 preprocess=tf\n", h, w);
    mb s = {.b = &b, .h = h, .w = w, .c = 3, .last = "input_1", .layers = 1};
    mb_pad(&s, "Conv1_pad");
    mb_layer(&s, "Conv1", "[Conv2D] name=Conv1 filters=32 kernel=3 strides=2 padding=valid use_bias=false");
    s.h = (s.h - 3) / 2 + 1;
    s.w = (s.w - 3) / 2 + 1;
    s.c = 32;
    mb_bn(&s, "bn_Conv1");
    mb_relu6(&s, "Conv1_relu");
    static const int spec[17][3] = {/* expansion, stride, filters */
                                    {1, 1, 16},  {6, 2, 24},  {6, 1, 24},  {6, 2, 32},
                                    {6, 1, 32},  {6, 1, 32},  {6, 2, 64},  {6, 1, 64},
                                    {6, 1, 64},  {6, 1, 64},  {6, 1, 96},  {6, 1, 96},
                                    {6, 1, 96},  {6, 2, 160}, {6, 1, 160}, {6, 1, 160},
                                    {6, 1, 320}};
    for (int i = 0; i < 17; i++)
        mb_block(&s, spec[i][0], spec[i][1], spec[i][2], i);
    mb_layer(&s, "Conv_1",
             "[Conv2D] name=Conv_1 filters=1280 kernel=1 strides=1 padding=valid use_bias=false");
    mb_bn(&s, "Conv_1_bn");
    mb_relu6(&s, "out_relu");
    if (s.layers != 155) {
        rb_buf_free(&b);
        rb_fail(err, NULL, "internal: MobileNetV2 builder made %d layers, not 155", s.layers);
        return NULL;
    }
    if (head)
        head_append(&b, "out_relu", head);
    return sb_done(&b, err);
}

/* ---- seed-001 CNN ----------------------------------------------------------------------- */

char *rb_desc_cnn001(int h, int w, int c, const rb_head_opts *head, rb_error *err)
{
    rb_head_opts def = rb_head_seed001(2);
    if (!head)
        head = &def;
    if (head_check(head, err))
        return NULL;
    /* 4 x (conv 3x3 valid, pool 2): the input must survive it */
    int hh = h, ww = w;
    for (int i = 0; i < 4; i++) {
        hh = (hh - 2) / 2;
        ww = (ww - 2) / 2;
        if (hh < 1 || ww < 1)
            return rb_fail(err, "the seed-001 CNN needs at least 46x46 input",
                           "input %dx%d is too small", h, w),
                   NULL;
    }
    if (c < 1)
        return rb_fail(err, NULL, "input channels %d", c), NULL;
    rb_buf b = {0};
    rb_buf_printf(&b, "# radbatch network description v1\n");
    rb_buf_printf(&b, "# seed 001 CNN: 4 x [Conv2D 3x3 valid -> BatchNormalization -> ReLU -> "
            "MaxPooling2D 2]; Keras nests each group in a model named conv, conv_1, ...\n");
    rb_buf_printf(&b, "[model] name=X-ray_CNN backbone=cnn001 base_layers=0 base_training=true\n");
    rb_buf_printf(&b, "[InputLayer] name=input_1 shape=%d,%d,%d preprocess=div255\n", h, w, c);
    static const int filters[4] = {32, 64, 128, 128};
    char last[RB_NAME_MAX] = "input_1";
    for (int i = 0; i < 4; i++) {
        char sfx[16] = "";
        if (i)
            snprintf(sfx, sizeof sfx, "_%d", i);
        rb_buf_printf(&b, "[Conv2D] name=conv2d%s filters=%d kernel=3 strides=1 padding=valid use_bias=true "
                "inputs=%s\n",
            sfx, filters[i], last);
        rb_buf_printf(&b, "[BatchNormalization] name=batch_normalization%s momentum=0.99 epsilon=0.001 "
                "inputs=conv2d%s\n",
            sfx, sfx);
        rb_buf_printf(&b, "[ReLU] name=re_lu%s inputs=batch_normalization%s\n", sfx, sfx);
        rb_buf_printf(&b, "[MaxPooling2D] name=max_pooling2d%s pool=2 strides=2 padding=valid inputs=re_lu%s\n",
            sfx, sfx);
        snprintf(last, sizeof last, "max_pooling2d%s", sfx);
    }
    head_append(&b, last, head);
    return sb_done(&b, err);
}

int rb_model_build(rb_model **out, const char *backbone, int h, int w, int c,
                   const rb_head_opts *head, rb_error *err)
{
    *out = NULL;
    char *desc = NULL;
    if (!strcmp(backbone, "mobilenetv2")) {
        if (c != 3)
            return rb_fail(err, "MobileNetV2 takes RGB input (grayscale images are converted "
                                "to 3 equal channels)",
                           "mobilenetv2 with %d input channels", c);
        desc = rb_desc_mobilenetv2(h, w, head, err);
    } else if (!strcmp(backbone, "cnn") || !strcmp(backbone, "cnn001")) {
        desc = rb_desc_cnn001(h, w, c, head, err);
    } else {
        return rb_fail(err, "backbone: mobilenetv2 or cnn", "unknown backbone '%s'", backbone);
    }
    if (!desc)
        return -1;
    int rc = rb_model_from_desc(out, desc, err);
    free(desc);
    return rc;
}

/* ---- head options from job-file keys ------------------------------------------------- */

int rb_head_set(rb_head_opts *h, const char *key, const char *value, rb_error *err)
{
    char *end;
    if (!strcmp(key, "head_units")) {
        int n = 0;
        const char *p = value;
        if (!strcmp(value, "none") || !*value) {
            h->nunits = 0;
            return 0;
        }
        while (*p) {
            long u = strtol(p, &end, 10);
            if (end == p || u < 1 || u > 1000000 || n >= RB_HEAD_MAX_UNITS)
                return rb_fail(err, "head_units = comma-separated positive integers (at most 8), or none",
                               "head_units = %s", value);
            h->units[n++] = (int)u;
            p = *end == ',' ? end + 1 : end;
            if (*end && *end != ',')
                return rb_fail(err, "head_units = 128 or head_units = 256,128", "head_units = %s",
                               value);
        }
        h->nunits = n;
        return 0;
    }
    if (!strcmp(key, "head_dropout") || !strcmp(key, "head_dense_dropout")) {
        double r = strtod(value, &end);
        if (end == value || *end || !(r >= 0 && r < 1))
            return rb_fail(err, "a dropout rate in [0, 1)", "%s = %s", key, value);
        if (!strcmp(key, "head_dropout"))
            h->dropout = (float)r;
        else
            h->dense_dropout = (float)r;
        return 0;
    }
    if (!strcmp(key, "head_activation")) {
        static const char *const names[] = {"linear", "relu", "relu6", "sigmoid"};
        for (int i = 0; i < 4; i++)
            if (!strcmp(value, names[i])) {
                h->activation = (rb_act)i;
                return 0;
            }
        return rb_fail(err, "head_activation = relu, relu6, sigmoid or linear", "head_activation = %s",
                       value);
    }
    if (!strcmp(key, "head_output")) {
        if (!strcmp(value, "softmax"))
            h->sigmoid = 0;
        else if (!strcmp(value, "sigmoid"))
            h->sigmoid = 1;
        else
            return rb_fail(err, "head_output = softmax or sigmoid (one unit, binary)",
                           "head_output = %s", value);
        return 0;
    }
    if (!strcmp(key, "head_pooling")) {
        if (!strcmp(value, "gap") || !strcmp(value, "avg"))
            h->pooling = RB_POOL_GAP;
        else if (!strcmp(value, "flatten"))
            h->pooling = RB_POOL_FLATTEN;
        else
            return rb_fail(err, "head_pooling = gap or flatten", "head_pooling = %s", value);
        return 0;
    }
    if (!strcmp(key, "classes") || !strcmp(key, "n_classes")) {
        long n = strtol(value, &end, 10);
        if (end == value || *end || n < 1 || n > 100000)
            return rb_fail(err, "a positive number of classes", "%s = %s", key, value);
        h->n_classes = (int)n;
        return 0;
    }
    return rb_fail(err,
                   "head keys: head_units, head_dropout, head_dense_dropout, head_activation, "
                   "head_output, head_pooling, classes",
                   "unknown head key '%s'", key);
}
