/* Text forms of the metrics: sklearn's classification_report byte for byte, the confusion
 * matrix as a table and a screening summary for the log. Each writes to a FILE* or to a
 * caller's buffer (snprintf semantics); see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

typedef struct text_out {
    FILE *f;
    char *buf;
    size_t cap;
    int64_t len; /* full length so far, even past cap */
    int bad;
} text_out;

static void text_init(text_out *o, FILE *f, char *buf, size_t cap)
{
    o->f = f;
    o->buf = f ? NULL : buf;
    o->cap = f ? 0 : cap;
    o->len = 0;
    o->bad = 0;
    if (o->buf && o->cap)
        o->buf[0] = '\0';
}

__attribute__((format(printf, 2, 3))) static void text_put(text_out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r;
    if (o->f) {
        r = vfprintf(o->f, fmt, ap);
    } else {
        size_t off = (size_t)o->len;
        char *dst = NULL;
        size_t room = 0;
        if (o->buf && off < o->cap) {
            dst = o->buf + off;
            room = o->cap - off;
        }
        r = vsnprintf(dst, room, fmt, ap);
    }
    va_end(ap);
    if (r < 0)
        o->bad = 1;
    else
        o->len += r;
}

static int64_t text_end(text_out *o)
{
    if (o->f && (fflush(o->f) != 0 || ferror(o->f)))
        o->bad = 1;
    return o->bad ? -1 : o->len;
}

/* Width as Python's len() counts it: code points of the UTF-8 text. */
static int64_t text_width(const char *s)
{
    int64_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void text_spaces(text_out *o, int64_t n)
{
    static const char sp[] = "                                ";
    while (n > 0) {
        int c = n > 32 ? 32 : (int)n;
        text_put(o, "%.*s", c, sp);
        n -= c;
    }
}

/* Python's "{:>{width}s}" */
static void text_right(text_out *o, const char *s, int64_t width)
{
    text_spaces(o, width - text_width(s));
    text_put(o, "%s", s);
}

static void text_left(text_out *o, const char *s, int64_t width)
{
    text_put(o, "%s", s);
    text_spaces(o, width - text_width(s));
}

/* names[i], or sklearn's default "%s" % label */
static const char *class_name(const char *const *names, int32_t i, char tmp[16])
{
    if (names && names[i])
        return names[i];
    snprintf(tmp, 16, "%d", (int)i);
    return tmp;
}

/* " {:>9}" of the support: an int, or (w = 7) a float64 holding an integer, "%lld.0" */
static void text_support(text_out *o, int64_t v, int w)
{
    text_put(o, w == 9 ? " %*lld\n" : " %*lld.0\n", w, (long long)v);
}

/* sklearn.metrics.classification_report, _classification.py (output_dict=False):
 *   width = max(max(len(cn) for cn in target_names), len("weighted avg"), digits)
 *   head_fmt = "{:>{width}s} " + " {:>9}" * 4          + "\n\n"
 *   row_fmt  = "{:>{width}s} " + " {:>9.{digits}f}" * 3 + " {:>9}\n"
 *   "\n", then accuracy: "{:>{width}s} " + " {:>9.{digits}}" * 2 (empty strings)
 *                        + " {:>9.{digits}f}" + " {:>9}\n"
 *   then "macro avg" and "weighted avg" with row_fmt, support = the total. */
int64_t metrics_report_text(FILE *f, char *buf, size_t cap, const metrics_classification *c,
                            const char *const *names, int digits)
{
    text_out o;
    text_init(&o, f, buf, cap);
    if (!c || c->k < 1 || !c->per_class || digits < 0)
        return -1;
    char tmp[16];
    int64_t width = (int64_t)strlen("weighted avg");
    for (int32_t i = 0; i < c->k; i++) {
        int64_t w = text_width(class_name(names, i, tmp));
        if (w > width)
            width = w;
    }
    if (digits > width)
        width = digits;

    /* sklearn quirk (multilabel_confusion_matrix's "pathological case"): when no sample
     * is classified correctly its counts are float64 zeros, so the supports become floats
     * and print as Python's str(float): "1.0", "30.0" */
    int sup_w = c->correct == 0 ? 7 : 9;

    static const char *const headers[4] = {"precision", "recall", "f1-score", "support"};
    text_spaces(&o, width);
    text_put(&o, " ");
    for (int h = 0; h < 4; h++)
        text_put(&o, " %9s", headers[h]);
    text_put(&o, "\n\n");

    for (int32_t i = 0; i < c->k; i++) {
        const metrics_prf *r = &c->per_class[i];
        text_right(&o, class_name(names, i, tmp), width);
        text_put(&o, "  %9.*f %9.*f %9.*f", digits, r->precision, digits, r->recall, digits,
                 r->f1);
        text_support(&o, r->support, sup_w);
    }
    text_put(&o, "\n");

    text_right(&o, "accuracy", width);
    text_put(&o, "  %9s %9s %9.*f", "", "", digits, c->accuracy);
    text_support(&o, c->total, sup_w);
    const metrics_prf *avg[2] = {&c->macro, &c->weighted};
    static const char *const avg_names[2] = {"macro avg", "weighted avg"};
    for (int a = 0; a < 2; a++) {
        text_right(&o, avg_names[a], width);
        text_put(&o, "  %9.*f %9.*f %9.*f", digits, avg[a]->precision, digits, avg[a]->recall,
                 digits, avg[a]->f1);
        text_support(&o, c->total, sup_w);
    }
    return text_end(&o);
}

int64_t metrics_confusion_text(FILE *f, char *buf, size_t cap, const int64_t *cm, int32_t k,
                               const char *const *names)
{
    text_out o;
    text_init(&o, f, buf, cap);
    if (!cm || k < 1)
        return -1;
    static const char corner[] = "true \\ predicted";
    char tmp[16], num[32];
    int64_t w0 = text_width(corner);
    for (int32_t i = 0; i < k; i++) {
        int64_t w = text_width(class_name(names, i, tmp));
        if (w > w0)
            w0 = w;
    }
    text_left(&o, corner, w0);
    for (int32_t j = 0; j < k; j++) {
        const char *nm = class_name(names, j, tmp);
        int64_t wj = text_width(nm);
        for (int32_t i = 0; i < k; i++) {
            int64_t w = snprintf(num, sizeof num, "%lld", (long long)cm[(int64_t)i * k + j]);
            if (w > wj)
                wj = w;
        }
        text_put(&o, "  ");
        text_right(&o, nm, wj);
    }
    text_put(&o, "\n");
    for (int32_t i = 0; i < k; i++) {
        text_left(&o, class_name(names, i, tmp), w0);
        for (int32_t j = 0; j < k; j++) {
            int64_t wj = text_width(class_name(names, j, tmp));
            for (int32_t r = 0; r < k; r++) {
                int64_t w = snprintf(num, sizeof num, "%lld", (long long)cm[(int64_t)r * k + j]);
                if (w > wj)
                    wj = w;
            }
            snprintf(num, sizeof num, "%lld", (long long)cm[(int64_t)i * k + j]);
            text_put(&o, "  ");
            text_right(&o, num, wj);
        }
        text_put(&o, "\n");
    }
    return text_end(&o);
}

static void summary_line(text_out *o, const char *label, double v, const metrics_ci *ci,
                         double level)
{
    text_put(o, "  %-19s %.4f", label, v);
    if (ci && ci->n_defined > 0)
        text_put(o, "   %g%% CI [%.4f, %.4f]", 100.0 * level, ci->lo, ci->hi);
    text_put(o, "\n");
}

int64_t metrics_summary_text(FILE *f, char *buf, size_t cap, const metrics_eval *ev,
                             const char *const *names)
{
    text_out o;
    text_init(&o, f, buf, cap);
    if (!ev || ev->k < 1)
        return -1;
    char tmp[16];
    text_put(&o, "samples: %lld (%lld without a label skipped)\n",
             (long long)(ev->n - ev->n_ignored), (long long)ev->n_ignored);
    if (ev->has_probs) {
        text_put(&o, "ROC AUC one-vs-rest:");
        for (int32_t c = 0; c < ev->k; c++)
            text_put(&o, " %s %.4f", class_name(names, c, tmp), ev->auc_ovr[c]);
        text_put(&o, "; macro %.4f, weighted %.4f\n", ev->auc_macro, ev->auc_weighted);
    }
    if (!ev->has_screening)
        return text_end(&o);
    const metrics_screening *s = &ev->screening;
    const metrics_bootstrap *b = ev->has_bootstrap ? &ev->bootstrap : NULL;
    text_put(&o, "screening: %s positive when its probability >= %.6g (%s)\n",
             class_name(names, s->positive, tmp), s->threshold,
             metrics_threshold_rule_name(ev->threshold_rule));
    text_put(&o, "  tp %lld  fp %lld  tn %lld  fn %lld\n", (long long)s->tp, (long long)s->fp,
             (long long)s->tn, (long long)s->fn);
    double level = b ? b->level : 0.0;
    summary_line(&o, "sensitivity", s->sensitivity, b ? &b->sensitivity : NULL, level);
    summary_line(&o, "specificity", s->specificity, b ? &b->specificity : NULL, level);
    summary_line(&o, "PPV", s->ppv, NULL, level);
    summary_line(&o, "NPV", s->npv, NULL, level);
    summary_line(&o, "F1", s->f1, NULL, level);
    summary_line(&o, "MCC", s->mcc, NULL, level);
    summary_line(&o, "balanced accuracy", s->balanced_accuracy, NULL, level);
    summary_line(&o, "accuracy", s->accuracy, b ? &b->accuracy : NULL, level);
    summary_line(&o, "ROC AUC", ev->roc.auc, b ? &b->auc : NULL, level);
    if (b)
        text_put(&o, "  (percentile bootstrap, %lld resamples, seed %llu)\n",
                 (long long)b->resamples, (unsigned long long)b->seed);
    return text_end(&o);
}
