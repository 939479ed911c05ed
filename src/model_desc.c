/* Network description text: parse (rb_model_from_desc) and print (rb_model_desc).
 *
 * A description is a list of sections, darknet-style, with Keras class and layer names:
 *
 *   # radbatch network description v1
 *   [model] name=mobilenetv2_1.00_224 backbone=mobilenetv2 base_layers=155 base_training=false
 *   [InputLayer] name=input_1 shape=224,224,3 preprocess=tf
 *   [ZeroPadding2D] name=Conv1_pad padding=0,1,0,1 inputs=input_1
 *   [Conv2D] name=Conv1 filters=32 kernel=3 strides=2 padding=valid use_bias=false inputs=Conv1_pad
 *
 * A section is `[Class]` followed by `key=value` tokens separated by blanks or newlines, up
 * to the next `[`; `#` starts a comment. `inputs` defaults to the previous layer. The
 * format is documented key by key in docs/engine.md. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rb_buf.h"


static const char *const OP_CLASS[RB_OP__COUNT] = {
    [RB_OP_INPUT] = "InputLayer",
    [RB_OP_CONV2D] = "Conv2D",
    [RB_OP_DEPTHWISE] = "DepthwiseConv2D",
    [RB_OP_ZEROPAD] = "ZeroPadding2D",
    [RB_OP_BATCHNORM] = "BatchNormalization",
    [RB_OP_RELU] = "ReLU",
    [RB_OP_ACTIVATION] = "Activation",
    [RB_OP_SOFTMAX] = "Softmax",
    [RB_OP_ADD] = "Add",
    [RB_OP_CONCAT] = "Concatenate",
    [RB_OP_MAXPOOL] = "MaxPooling2D",
    [RB_OP_AVGPOOL] = "AveragePooling2D",
    [RB_OP_GAP] = "GlobalAveragePooling2D",
    [RB_OP_FLATTEN] = "Flatten",
    [RB_OP_DENSE] = "Dense",
    [RB_OP_DROPOUT] = "Dropout",
};

const char *rb_op_class(rb_op op)
{
    return (op >= 0 && op < RB_OP__COUNT) ? OP_CLASS[op] : "?";
}

int rb_op_from_class(const char *k)
{
    for (int i = 0; i < RB_OP__COUNT; i++)
        if (strcmp(k, OP_CLASS[i]) == 0)
            return i;
    /* Keras aliases */
    if (strcmp(k, "MaxPool2D") == 0)
        return RB_OP_MAXPOOL;
    if (strcmp(k, "AvgPool2D") == 0 || strcmp(k, "AveragePool2D") == 0)
        return RB_OP_AVGPOOL;
    if (strcmp(k, "GlobalAvgPool2D") == 0)
        return RB_OP_GAP;
    return -1;
}

static const char *const ACT_NAME[] = {"linear", "relu", "relu6", "sigmoid", "softmax"};

const char *rb_act_name(rb_act a)
{
    return (a >= 0 && a <= RB_ACT_SOFTMAX) ? ACT_NAME[a] : "?";
}

static const char *const PRE_NAME[] = {
    [RESCALE_MINUS1_1] = "tf", [RESCALE_0_1] = "div255", [RESCALE_NONE] = "none",
    [RESCALE_MINMAX] = "minmax"};

/* ---- printing -------------------------------------------------------------------------- */

/* shortest decimal that reads back as the same float */
static void fmt_float(char *out, size_t n, float v)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(out, n, "%.*g", prec, (double)v);
        if (strtof(out, NULL) == v)
            return;
    }
}

/* " key=A" when a == c (kernel=3), else " key=A,C" (kernel=1,7) */
static void put_pair(rb_buf *b, const char *key, int a, int c)
{
    if (a == c)
        rb_buf_printf(b, " %s=%d", key, a);
    else
        rb_buf_printf(b, " %s=%d,%d", key, a, c);
}

char *rb_model_desc(const rb_model *m)
{
    rb_buf b = {0};
    char f1[32], f2[32];
    rb_buf_printf(&b, "# radbatch network description v1\n");
    rb_buf_printf(&b, "[model] name=%s backbone=%s base_layers=%d base_training=%s\n", m->name,
                  m->backbone[0] ? m->backbone : "custom", m->base_layers, m->base_training ? "true" : "false");
    for (int i = 0; i < m->nnodes; i++) {
        const rb_node *n = &m->nodes[i];
        rb_buf_printf(&b, "[%s] name=%s", rb_op_class(n->op), n->name);
        switch (n->op) {
        case RB_OP_INPUT:
            if (n->rank == 1)
                rb_buf_printf(&b, " shape=%d preprocess=%s", n->c, PRE_NAME[n->preprocess]);
            else
                rb_buf_printf(&b, " shape=%d,%d,%d preprocess=%s", n->h, n->w, n->c, PRE_NAME[n->preprocess]);
            break;
        case RB_OP_CONV2D:
        case RB_OP_DEPTHWISE:
            if (n->op == RB_OP_CONV2D)
                rb_buf_printf(&b, " filters=%d", n->filters);
            put_pair(&b, "kernel", n->kh, n->kw);
            put_pair(&b, "strides", n->sh, n->sw);
            rb_buf_printf(&b, " padding=%s use_bias=%s", n->padding == PADDING_SAME ? "same" : "valid",
                          n->use_bias ? "true" : "false");
            if (n->act != RB_ACT_LINEAR)
                rb_buf_printf(&b, " activation=%s", rb_act_name(n->act));
            break;
        case RB_OP_ZEROPAD:
            rb_buf_printf(&b, " padding=%d,%d,%d,%d", n->pad_t, n->pad_b, n->pad_l, n->pad_r);
            break;
        case RB_OP_BATCHNORM:
            fmt_float(f1, sizeof f1, n->momentum);
            fmt_float(f2, sizeof f2, n->eps);
            rb_buf_printf(&b, " momentum=%s epsilon=%s", f1, f2);
            break;
        case RB_OP_RELU:
            if (n->act == RB_ACT_RELU6)
                rb_buf_printf(&b, " max_value=6");
            break;
        case RB_OP_ACTIVATION:
            rb_buf_printf(&b, " activation=%s", rb_act_name(n->act));
            break;
        case RB_OP_MAXPOOL:
        case RB_OP_AVGPOOL:
            put_pair(&b, "pool", n->kh, n->kw);
            put_pair(&b, "strides", n->sh, n->sw);
            rb_buf_printf(&b, " padding=%s", n->padding == PADDING_SAME ? "same" : "valid");
            break;
        case RB_OP_DENSE:
            rb_buf_printf(&b, " units=%d", n->units);
            if (n->act != RB_ACT_LINEAR)
                rb_buf_printf(&b, " activation=%s", rb_act_name(n->act));
            if (!n->use_bias)
                rb_buf_printf(&b, " use_bias=false");
            break;
        case RB_OP_DROPOUT:
            fmt_float(f1, sizeof f1, n->rate);
            rb_buf_printf(&b, " rate=%s", f1);
            break;
        default:
            break;
        }
        if (i > 0) {
            rb_buf_printf(&b, " inputs=");
            for (int k = 0; k < n->ninputs; k++)
                rb_buf_printf(&b, "%s%s", k ? "," : "", m->nodes[n->inputs[k]].name);
        }
        if (n->nweights > 0 && !n->trainable)
            rb_buf_printf(&b, " trainable=false");
        rb_buf_printf(&b, "\n");
    }
    if (b.failed)
        abort(); /* out of memory while printing a few KB: nothing sensible to do */
    return (char *)b.data;
}

/* ---- parsing --------------------------------------------------------------------------- */

typedef struct parser {
    const char *p;
    int line;
    rb_model *m;
    int cap;
    rb_error *err;
} parser;

static int perr(parser *ps, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(parser *ps, const char *hint, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rb_fail(ps->err, hint, "network description line %d: %s", ps->line, msg);
}

/* next token into tok (section "[X]" or key=value); 0 at end, 1 token, -1 error */
static int next_token(parser *ps, char *tok, size_t cap)
{
    for (;;) {
        while (*ps->p && isspace((unsigned char)*ps->p)) {
            if (*ps->p == '\n')
                ps->line++;
            ps->p++;
        }
        if (*ps->p == '#') {
            while (*ps->p && *ps->p != '\n')
                ps->p++;
            continue;
        }
        break;
    }
    if (!*ps->p)
        return 0;
    size_t k = 0;
    if (*ps->p == '[') {
        while (*ps->p && *ps->p != ']' && *ps->p != '\n') {
            if (k + 1 < cap)
                tok[k++] = *ps->p;
            ps->p++;
        }
        if (*ps->p != ']')
            return perr(ps, "a section looks like [Conv2D]", "unterminated section header");
        tok[k++] = ']';
        ps->p++;
        tok[k] = 0;
        return 1;
    }
    while (*ps->p && !isspace((unsigned char)*ps->p) && *ps->p != '#') {
        if (k + 1 >= cap)
            return perr(ps, NULL, "token too long");
        tok[k++] = *ps->p++;
    }
    tok[k] = 0;
    return 1;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "1")) {
        *out = 1;
        return 0;
    }
    if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "0")) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* comma-separated ints; returns count, -1 on junk */
static int parse_ints(const char *v, int *out, int max)
{
    int n = 0;
    const char *s = v;
    while (*s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < -1000000000L || x > 1000000000L || n >= max)
            return -1;
        out[n++] = (int)x;
        if (*end == ',')
            s = end + 1;
        else if (*end == 0)
            s = end;
        else
            return -1;
    }
    return n;
}

static int parse_float(const char *v, float *out)
{
    char *end;
    errno = 0;
    float x = strtof(v, &end);
    if (end == v || *end || errno || !isfinite(x))
        return -1;
    *out = x;
    return 0;
}

static int parse_act(const char *v, rb_act *a)
{
    for (int i = 0; i <= RB_ACT_SOFTMAX; i++)
        if (!strcmp(v, ACT_NAME[i])) {
            *a = (rb_act)i;
            return 0;
        }
    return -1;
}

static int parse_padding_mode(const char *v, padding_mode *p)
{
    if (!strcmp(v, "valid")) {
        *p = PADDING_VALID;
        return 0;
    }
    if (!strcmp(v, "same")) {
        *p = PADDING_SAME;
        return 0;
    }
    return -1;
}

static int set_pair(const char *v, int *a, int *b)
{
    int x[2];
    int k = parse_ints(v, x, 2);
    if (k == 1) {
        *a = *b = x[0];
        return 0;
    }
    if (k == 2) {
        *a = x[0];
        *b = x[1];
        return 0;
    }
    return -1;
}

static int bad_value(parser *ps, const char *cls, const char *key, const char *v,
                     const char *accepted)
{
    return perr(ps, accepted, "[%s] %s=%s: bad value", cls, key, v);
}

/* What the per-class key readers below return for a key that is not one of theirs (0: read,
 * -1: a bad value, error filled in). */
enum { KEY_NOT_MINE = 1 };

static const char ACT_ACCEPTED[] = "linear, relu, relu6, sigmoid, softmax";

static int key_name(parser *ps, rb_node *n, const char *v)
{
    rb_model *m = ps->m;
    if (strlen(v) >= RB_NAME_MAX || !*v)
        return perr(ps, NULL, "layer name '%s' is empty or longer than %d characters", v,
                    RB_NAME_MAX - 1);
    for (int i = 0; i < m->nnodes - 1; i++)
        if (!strcmp(m->nodes[i].name, v))
            return perr(ps, "every layer needs its own name", "layer name '%s' used twice", v);
    strcpy(n->name, v);
    return 0;
}

static int key_inputs(parser *ps, rb_node *n, const char *cls, const char *v)
{
    rb_model *m = ps->m;
    char buf[RB_NAME_MAX * RB_MAX_INPUTS + RB_MAX_INPUTS];
    if (strlen(v) >= sizeof buf)
        return perr(ps, NULL, "inputs list too long");
    strcpy(buf, v);
    n->ninputs = 0;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n->ninputs >= RB_MAX_INPUTS)
            return perr(ps, NULL, "more than %d inputs", RB_MAX_INPUTS);
        int j = rb_model_find(m, t);
        if (j < 0 || j >= m->nnodes - 1)
            return perr(ps, "inputs name layers defined above this one",
                        "[%s] %s: unknown input layer '%s'", cls, n->name, t);
        n->inputs[n->ninputs++] = j;
    }
    return 0;
}

/* [InputLayer]: shape, preprocess */
static int input_key(parser *ps, rb_node *n, const char *cls, const char *key, const char *v)
{
    if (!strcmp(key, "shape")) {
        int x[3];
        int cnt = parse_ints(v, x, 3);
        if (cnt == 1 && x[0] >= 1) { /* a feature vector (a head trained on cached features) */
            n->h = 1, n->w = 1, n->c = x[0], n->rank = 1;
            return 0;
        }
        if (cnt != 3 || x[0] < 1 || x[1] < 1 || x[2] < 1)
            return bad_value(ps, cls, key, v, "shape=H,W,C, e.g. shape=224,224,3 (or shape=C for a vector)");
        n->h = x[0], n->w = x[1], n->c = x[2];
        return 0;
    }
    if (!strcmp(key, "preprocess")) {
        for (int i = 0; i <= RESCALE_MINMAX; i++)
            if (!strcmp(v, PRE_NAME[i])) {
                n->preprocess = (rescale_mode)i;
                return 0;
            }
        return bad_value(ps, cls, key, v,
                         "tf (x/127.5-1), div255 (x/255), none, minmax (per image to [0,1])");
    }
    return KEY_NOT_MINE;
}

/* [Conv2D], [DepthwiseConv2D]: filters (Conv2D), depth_multiplier (depthwise), kernel,
 * strides, padding, use_bias, activation */
static int conv_key(parser *ps, rb_node *n, const char *cls, const char *key, const char *v)
{
    if (!strcmp(key, "filters") && n->op == RB_OP_CONV2D) {
        int x;
        if (parse_ints(v, &x, 1) != 1 || x < 1)
            return bad_value(ps, cls, key, v, "a positive integer");
        n->filters = x;
        return 0;
    }
    if (!strcmp(key, "depth_multiplier") && n->op == RB_OP_DEPTHWISE) {
        if (strcmp(v, "1"))
            return bad_value(ps, cls, key, v, "only depth_multiplier=1 is supported");
        return 0;
    }
    if (!strcmp(key, "kernel") || !strcmp(key, "kernel_size"))
        return set_pair(v, &n->kh, &n->kw) || n->kh < 1 || n->kw < 1
                   ? bad_value(ps, cls, key, v, "kernel=K or kernel=KH,KW")
                   : 0;
    if (!strcmp(key, "strides"))
        return set_pair(v, &n->sh, &n->sw) || n->sh < 1 || n->sw < 1
                   ? bad_value(ps, cls, key, v, "strides=S or strides=SH,SW")
                   : 0;
    if (!strcmp(key, "padding"))
        return parse_padding_mode(v, &n->padding) ? bad_value(ps, cls, key, v, "valid or same") : 0;
    if (!strcmp(key, "use_bias"))
        return parse_bool(v, &n->use_bias) ? bad_value(ps, cls, key, v, "true or false") : 0;
    if (!strcmp(key, "activation"))
        return parse_act(v, &n->act) ? bad_value(ps, cls, key, v, ACT_ACCEPTED) : 0;
    return KEY_NOT_MINE;
}

/* [ZeroPadding2D]: padding=P, PH,PW or top,bottom,left,right */
static int zeropad_key(parser *ps, rb_node *n, const char *cls, const char *key, const char *v)
{
    if (strcmp(key, "padding"))
        return KEY_NOT_MINE;
    int x[4];
    int k = parse_ints(v, x, 4);
    if (k == 1)
        n->pad_t = n->pad_b = n->pad_l = n->pad_r = x[0];
    else if (k == 2)
        n->pad_t = n->pad_b = x[0], n->pad_l = n->pad_r = x[1];
    else if (k == 4)
        n->pad_t = x[0], n->pad_b = x[1], n->pad_l = x[2], n->pad_r = x[3];
    else
        return bad_value(ps, cls, key, v, "padding=P, padding=PH,PW or padding=top,bottom,left,right");
    if (n->pad_t < 0 || n->pad_b < 0 || n->pad_l < 0 || n->pad_r < 0)
        return bad_value(ps, cls, key, v, "paddings are >= 0");
    return 0;
}

/* [BatchNormalization]: momentum, epsilon; axis, center, scale only as Keras' defaults */
static int batchnorm_key(parser *ps, rb_node *n, const char *cls, const char *key, const char *v)
{
    if (!strcmp(key, "momentum"))
        return parse_float(v, &n->momentum) || n->momentum < 0 || n->momentum > 1
                   ? bad_value(ps, cls, key, v, "a number in [0, 1]")
                   : 0;
    if (!strcmp(key, "epsilon"))
        return parse_float(v, &n->eps) || n->eps <= 0 ? bad_value(ps, cls, key, v, "a positive number")
                                                       : 0;
    if (!strcmp(key, "axis") || !strcmp(key, "center") || !strcmp(key, "scale")) {
        if (strcmp(v, "-1") && strcmp(v, "3") && strcmp(v, "true") && strcmp(v, "True"))
            return bad_value(ps, cls, key, v, "only axis=-1, center=true, scale=true");
        return 0;
    }
    return KEY_NOT_MINE;
}

/* [ReLU]: max_value=6 or none */
static int relu_key(parser *ps, rb_node *n, const char *cls, const char *key, const char *v)
{
    if (strcmp(key, "max_value"))
        return KEY_NOT_MINE;
    float x;
    if (!strcmp(v, "none") || !strcmp(v, "None")) {
        n->act = RB_ACT_RELU;
        return 0;
    }
    if (parse_float(v, &x) || x != 6.0f)
        return bad_value(ps, cls, key, v, "max_value=6 or none");
    n->act = RB_ACT_RELU6;
    return 0;
}

/* [Activation], [Dense]: activation; units and use_bias (Dense) */
static int dense_key(parser *ps, rb_node *n, const char *cls, const char *key, const char *v)
{
    if (!strcmp(key, "activation"))
        return parse_act(v, &n->act) ? bad_value(ps, cls, key, v, ACT_ACCEPTED) : 0;
    if (n->op == RB_OP_DENSE && !strcmp(key, "units")) {
        int x;
        if (parse_ints(v, &x, 1) != 1 || x < 1)
            return bad_value(ps, cls, key, v, "a positive integer");
        n->units = x;
        return 0;
    }
    if (n->op == RB_OP_DENSE && !strcmp(key, "use_bias"))
        return parse_bool(v, &n->use_bias) ? bad_value(ps, cls, key, v, "true or false") : 0;
    return KEY_NOT_MINE;
}

/* [MaxPooling2D], [AveragePooling2D]: pool (strides default to it unless set), strides,
 * padding */
static int pool_key(parser *ps, rb_node *n, int *pool_strides_set, const char *cls, const char *key,
                    const char *v)
{
    if (!strcmp(key, "pool") || !strcmp(key, "pool_size")) {
        if (set_pair(v, &n->kh, &n->kw) || n->kh < 1 || n->kw < 1)
            return bad_value(ps, cls, key, v, "pool=P or pool=PH,PW");
        if (!*pool_strides_set)
            n->sh = n->kh, n->sw = n->kw;
        return 0;
    }
    if (!strcmp(key, "strides")) {
        *pool_strides_set = 1;
        return set_pair(v, &n->sh, &n->sw) || n->sh < 1 || n->sw < 1
                   ? bad_value(ps, cls, key, v, "strides=S or strides=SH,SW")
                   : 0;
    }
    if (!strcmp(key, "padding"))
        return parse_padding_mode(v, &n->padding) ? bad_value(ps, cls, key, v, "valid or same") : 0;
    return KEY_NOT_MINE;
}

/* [Dropout]: rate in [0, 1) */
static int dropout_key(parser *ps, rb_node *n, const char *cls, const char *key, const char *v)
{
    if (strcmp(key, "rate"))
        return KEY_NOT_MINE;
    return parse_float(v, &n->rate) || n->rate < 0 || n->rate >= 1
               ? bad_value(ps, cls, key, v, "a number in [0, 1)")
               : 0;
}

/* [Softmax], [Concatenate]: axis=-1 only */
static int axis_key(parser *ps, const char *cls, const char *key, const char *v)
{
    if (strcmp(key, "axis"))
        return KEY_NOT_MINE;
    if (strcmp(v, "-1"))
        return bad_value(ps, cls, key, v, "only axis=-1");
    return 0;
}

/* One key=value line of a layer section: the keys every layer has (name, inputs, trainable),
 * then those of its class. 0 or -1 (error filled in, also for a key the class has not). */
static int node_key(parser *ps, rb_node *n, int *pool_strides_set, const char *key,
                    const char *v)
{
    const char *cls = rb_op_class(n->op);
    if (!strcmp(key, "name"))
        return key_name(ps, n, v);
    if (!strcmp(key, "inputs"))
        return key_inputs(ps, n, cls, v);
    if (!strcmp(key, "trainable"))
        return parse_bool(v, &n->trainable) ? bad_value(ps, cls, key, v, "true or false") : 0;

    int rc = KEY_NOT_MINE;
    switch (n->op) {
    case RB_OP_INPUT:
        rc = input_key(ps, n, cls, key, v);
        break;
    case RB_OP_CONV2D:
    case RB_OP_DEPTHWISE:
        rc = conv_key(ps, n, cls, key, v);
        break;
    case RB_OP_ZEROPAD:
        rc = zeropad_key(ps, n, cls, key, v);
        break;
    case RB_OP_BATCHNORM:
        rc = batchnorm_key(ps, n, cls, key, v);
        break;
    case RB_OP_RELU:
        rc = relu_key(ps, n, cls, key, v);
        break;
    case RB_OP_ACTIVATION:
    case RB_OP_DENSE:
        rc = dense_key(ps, n, cls, key, v);
        break;
    case RB_OP_MAXPOOL:
    case RB_OP_AVGPOOL:
        rc = pool_key(ps, n, pool_strides_set, cls, key, v);
        break;
    case RB_OP_DROPOUT:
        rc = dropout_key(ps, n, cls, key, v);
        break;
    case RB_OP_SOFTMAX:
    case RB_OP_CONCAT:
        rc = axis_key(ps, cls, key, v);
        break;
    default:
        break;
    }
    if (rc != KEY_NOT_MINE)
        return rc;
    return perr(ps, "see docs/engine.md for the keys of each layer class",
                "[%s] %s: unknown key '%s'", cls, n->name[0] ? n->name : "(unnamed)", key);
}

static int model_key(parser *ps, const char *key, const char *v)
{
    rb_model *m = ps->m;
    if (!strcmp(key, "name")) {
        if (strlen(v) >= RB_NAME_MAX)
            return perr(ps, NULL, "[model] name too long");
        strcpy(m->name, v);
        return 0;
    }
    if (!strcmp(key, "backbone")) {
        if (strlen(v) >= RB_NAME_MAX)
            return perr(ps, NULL, "[model] backbone too long");
        strcpy(m->backbone, v);
        return 0;
    }
    if (!strcmp(key, "base_layers")) {
        int x;
        if (parse_ints(v, &x, 1) != 1 || x < 0)
            return perr(ps, "base_layers=N: the first N layers are the base", "[model] base_layers=%s",
                        v);
        m->base_layers = x;
        return 0;
    }
    if (!strcmp(key, "base_training"))
        return parse_bool(v, &m->base_training)
                   ? perr(ps, "true or false", "[model] base_training=%s: bad value", v)
                   : 0;
    return perr(ps, "[model] keys: name, backbone, base_layers, base_training",
                "[model]: unknown key '%s'", key);
}

static void node_defaults(rb_node *n, rb_op op)
{
    memset(n, 0, sizeof *n);
    n->op = op;
    n->kh = n->kw = 1;
    n->sh = n->sw = 1;
    n->padding = PADDING_VALID;
    n->use_bias = 1;
    n->act = RB_ACT_LINEAR;
    n->eps = 1e-3f;
    n->momentum = 0.99f;
    n->trainable = 1;
    n->preprocess = RESCALE_NONE;
    if (op == RB_OP_MAXPOOL || op == RB_OP_AVGPOOL)
        n->kh = n->kw = n->sh = n->sw = 2;
    if (op == RB_OP_RELU)
        n->act = RB_ACT_RELU;
    if (op == RB_OP_SOFTMAX)
        n->act = RB_ACT_SOFTMAX;
    n->rate = -1.0f; /* required for Dropout */
}

/* checks after a section's keys */
static int node_check(parser *ps, rb_node *n, int idx)
{
    const char *cls = rb_op_class(n->op);
    if (!n->name[0])
        return perr(ps, "every layer has name=<Keras layer name>", "[%s] without name", cls);
    if (idx == 0 && n->op != RB_OP_INPUT)
        return perr(ps, "the first layer is [InputLayer] name=... shape=H,W,C",
                    "first layer '%s' is not an InputLayer", n->name);
    if (idx > 0 && n->op == RB_OP_INPUT)
        return perr(ps, "only one InputLayer, the first", "second InputLayer '%s'", n->name);
    if (n->op == RB_OP_INPUT && n->h == 0)
        return perr(ps, "shape=H,W,C", "[InputLayer] %s: no shape", n->name);
    if (n->op == RB_OP_CONV2D && n->filters == 0)
        return perr(ps, "filters=N", "[Conv2D] %s: no filters", n->name);
    if (n->op == RB_OP_DENSE && n->units == 0)
        return perr(ps, "units=N", "[Dense] %s: no units", n->name);
    if (n->op == RB_OP_DROPOUT && n->rate < 0)
        return perr(ps, "rate=R", "[Dropout] %s: no rate", n->name);
    if (n->op != RB_OP_DROPOUT)
        n->rate = 0;
    if (idx > 0 && n->ninputs == 0) {
        n->ninputs = 1;
        n->inputs[0] = idx - 1;
    }
    int need = (n->op == RB_OP_ADD || n->op == RB_OP_CONCAT) ? 2 : 1;
    if (idx > 0 && (n->ninputs < need || (need == 1 && n->ninputs != 1)))
        return perr(ps, need == 2 ? "inputs=a,b[,...]" : "inputs=<one layer>",
                    "[%s] %s: %d inputs", cls, n->name, n->ninputs);
    (void)cls;
    return 0;
}

int rb_model_from_desc(rb_model **out, const char *text, rb_error *err)
{
    *out = NULL;
    rb_model *m = calloc(1, sizeof *m);
    if (!m)
        return rb_fail(err, NULL, "out of memory");
    parser ps = {.p = text, .line = 1, .m = m, .err = err};
    strcpy(m->name, "model");
    char tok[4096];
    int in_model = 0, cur = -1, strides_set = 0, rc;
    int section_line = 1;
    while ((rc = next_token(&ps, tok, sizeof tok)) > 0) {
        if (tok[0] == '[') {
            int line_now = ps.line;
            if (cur >= 0) {
                ps.line = section_line;
                if (node_check(&ps, &m->nodes[cur], cur))
                    goto fail;
                ps.line = line_now;
            }
            section_line = ps.line;
            tok[strlen(tok) - 1] = 0;
            const char *cls = tok + 1;
            if (!strcmp(cls, "model")) {
                if (m->nnodes > 0) {
                    perr(&ps, "put [model] first", "[model] after the layers");
                    goto fail;
                }
                in_model = 1;
                cur = -1;
                continue;
            }
            int op = rb_op_from_class(cls);
            if (op < 0) {
                perr(&ps,
                     "supported: InputLayer Conv2D DepthwiseConv2D ZeroPadding2D "
                     "BatchNormalization ReLU Activation Softmax Add Concatenate MaxPooling2D "
                     "AveragePooling2D GlobalAveragePooling2D Flatten Dense Dropout",
                     "unknown layer class [%s]", cls);
                goto fail;
            }
            if (m->nnodes == ps.cap) {
                int ncap = ps.cap ? ps.cap * 2 : 64;
                rb_node *nn = realloc(m->nodes, (size_t)ncap * sizeof *nn);
                if (!nn) {
                    rb_fail(err, NULL, "out of memory");
                    goto fail;
                }
                m->nodes = nn;
                ps.cap = ncap;
            }
            cur = m->nnodes++;
            node_defaults(&m->nodes[cur], (rb_op)op);
            in_model = 0;
            strides_set = 0;
            continue;
        }
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok) {
            perr(&ps, "keys look like key=value", "'%s' is not key=value", tok);
            goto fail;
        }
        *eq = 0;
        const char *v = eq + 1;
        if (in_model) {
            if (model_key(&ps, tok, v))
                goto fail;
        } else if (cur >= 0) {
            if (node_key(&ps, &m->nodes[cur], &strides_set, tok, v))
                goto fail;
        } else {
            perr(&ps, "start with [model] or [InputLayer]", "key '%s' before any section", tok);
            goto fail;
        }
    }
    if (rc < 0)
        goto fail;
    if (cur >= 0) {
        ps.line = section_line;
        if (node_check(&ps, &m->nodes[cur], cur))
            goto fail;
    }
    if (m->nnodes < 2) {
        rb_fail(err, "a network needs an InputLayer and at least one more layer",
                "network description has %d layers", m->nnodes);
        goto fail;
    }
    if (m->base_layers > m->nnodes) {
        rb_fail(err, NULL, "[model] base_layers=%d but the network has %d layers",
                m->base_layers, m->nnodes);
        goto fail;
    }
    if (rb_model_finalize(m, err))
        goto fail;
    *out = m;
    return 0;
fail:
    rb_model_free(m);
    return -1;
}
