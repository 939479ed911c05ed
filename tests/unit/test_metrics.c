/* Metrics: hand-computed examples, then every golden case written by scikit-learn
 * (tests/golden/make_metrics_golden.py -> tests/golden/metrics/): confusion matrix,
 * precision/recall/F1 and averages, classification_report text byte for byte, ROC curve
 * and AUC with ties, one-vs-rest AUC, screening metrics, threshold choice and the seeded
 * bootstrap. Numbers within 1e-12 relative. */
#include "metrics.h"
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int close_rel(double a, double b, double rel)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b))
        return a == b;
    double scale = fabs(b) > 1e-300 ? fabs(b) : 1e-300;
    return a == b || fabs(a - b) <= rel * scale || fabs(a - b) <= 1e-15;
}
#define TOL 1e-12

static int64_t report(char *buf, size_t cap, const metrics_classification *c,
                      const char *const *names, int digits)
{
    return metrics_report_text(NULL, buf, cap, c, names, digits);
}

/* ---------------------------------------------------------------- hand-computed */

/* A 2x2 example worked by hand. 10 samples, confusion matrix (rows true, columns pred):
 *            pred 0  pred 1
 *   true 0      3       1        tn 3, fp 1
 *   true 1      2       4        fn 2, tp 4
 * class 0: support 4, predicted 5: precision 3/5 = 0.6, recall 3/4 = 0.75,
 *          f1 = 2*3 / (4 + 5) = 2/3
 * class 1: support 6, predicted 5: precision 4/5 = 0.8, recall 4/6 = 2/3,
 *          f1 = 2*4 / (6 + 5) = 8/11
 * accuracy 7/10; macro: precision 0.7, recall (0.75 + 2/3)/2 = 17/24,
 *          f1 (2/3 + 8/11)/2 = 23/33;
 * weighted (4, 6)/10: precision (2.4 + 4.8)/10 = 0.72, recall 0.7,
 *          f1 (4*2/3 + 6*8/11)/10 = 116/165
 * Screening with class 1 positive: sensitivity 4/6, specificity 3/4, PPV 4/5, NPV 3/5,
 * F1 8/11, MCC (4*3 - 1*2)/sqrt(5*6*4*5) = 10/sqrt(600), balanced accuracy 17/24. */
static void hand_2x2(void)
{
    rb_error err = {0};
    int32_t yt[10] = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
    int32_t yp[10] = {0, 0, 0, 1, 0, 0, 1, 1, 1, 1};
    int64_t cm[4] = {0};
    CHECK(metrics_confusion_add(cm, 2, yt, yp, 10) == 0, "no pair skipped");
    CHECK(cm[0] == 3 && cm[1] == 1 && cm[2] == 2 && cm[3] == 4, "cm %lld %lld %lld %lld",
          (long long)cm[0], (long long)cm[1], (long long)cm[2], (long long)cm[3]);
    metrics_classification c;
    CHECK(metrics_classification_compute(&c, cm, 2, &err) == 0, "%s", err.msg);
    CHECK(close_rel(c.per_class[0].precision, 0.6, TOL), "p0 %.17g", c.per_class[0].precision);
    CHECK(close_rel(c.per_class[0].recall, 0.75, TOL), "r0");
    CHECK(close_rel(c.per_class[0].f1, 2.0 / 3.0, TOL), "f0 %.17g", c.per_class[0].f1);
    CHECK(close_rel(c.per_class[1].precision, 0.8, TOL), "p1");
    CHECK(close_rel(c.per_class[1].recall, 4.0 / 6.0, TOL), "r1");
    CHECK(close_rel(c.per_class[1].f1, 8.0 / 11.0, TOL), "f1");
    CHECK(c.per_class[0].support == 4 && c.per_class[1].support == 6, "support");
    CHECK(c.total == 10 && c.correct == 7 && close_rel(c.accuracy, 0.7, TOL), "accuracy");
    CHECK(close_rel(c.macro.precision, 0.7, TOL), "macro p %.17g", c.macro.precision);
    CHECK(close_rel(c.macro.recall, 17.0 / 24.0, TOL), "macro r");
    CHECK(close_rel(c.macro.f1, 23.0 / 33.0, TOL), "macro f1");
    CHECK(close_rel(c.weighted.precision, 0.72, TOL), "weighted p %.17g", c.weighted.precision);
    CHECK(close_rel(c.weighted.recall, 0.7, TOL), "weighted r");
    CHECK(close_rel(c.weighted.f1, 116.0 / 165.0, TOL), "weighted f1 %.17g", c.weighted.f1);

    /* sklearn: classification_report([0,0,0,0,1,1,1,1,1,1], [0,0,0,1,0,0,1,1,1,1]) */
    const char *want = "              precision    recall  f1-score   support\n"
                       "\n"
                       "           0       0.60      0.75      0.67         4\n"
                       "           1       0.80      0.67      0.73         6\n"
                       "\n"
                       "    accuracy                           0.70        10\n"
                       "   macro avg       0.70      0.71      0.70        10\n"
                       "weighted avg       0.72      0.70      0.70        10\n";
    char buf[2048];
    int64_t len = report(buf, sizeof buf, &c, NULL, 2);
    CHECK(len == (int64_t)strlen(want) && strcmp(buf, want) == 0, "report:\n%s", buf);
    /* snprintf semantics: truncated, NUL-terminated, full length returned */
    char small[20];
    CHECK(report(small, sizeof small, &c, NULL, 2) == len && strlen(small) == 19 &&
              strncmp(small, want, 19) == 0,
          "truncated report");
    CHECK(report(NULL, 0, &c, NULL, 2) == len, "length only");
    CHECK(report(buf, sizeof buf, &c, NULL, -1) == -1, "negative digits refused");
    /* to a FILE* */
    FILE *f = tmpfile();
    CHECK(f != NULL, "tmpfile");
    if (f) {
        CHECK(metrics_report_text(f, NULL, 0, &c, NULL, 2) == len, "FILE length");
        rewind(f);
        char back[2048] = {0};
        size_t got = fread(back, 1, sizeof back - 1, f);
        CHECK(got == (size_t)len && strcmp(back, want) == 0, "FILE text");
        fclose(f);
    }
    const char *names[2] = {"NORMAL", "PNEUMONIA"};
    len = metrics_confusion_text(NULL, buf, sizeof buf, cm, 2, names);
    CHECK(len > 0 && strcmp(buf, "true \\ predicted  NORMAL  PNEUMONIA\n"
                                 "NORMAL                 3          1\n"
                                 "PNEUMONIA              2          4\n") == 0,
          "confusion text:\n%s", buf);
    metrics_classification_free(&c);

    metrics_screening s;
    metrics_screening_from_counts(&s, 4, 1, 3, 2);
    CHECK(close_rel(s.sensitivity, 4.0 / 6.0, TOL), "sens");
    CHECK(close_rel(s.specificity, 0.75, TOL), "spec");
    CHECK(close_rel(s.ppv, 0.8, TOL) && close_rel(s.npv, 0.6, TOL), "ppv npv");
    CHECK(close_rel(s.f1, 8.0 / 11.0, TOL), "f1");
    CHECK(close_rel(s.mcc, 10.0 / sqrt(600.0), TOL), "mcc %.17g", s.mcc);
    CHECK(close_rel(s.balanced_accuracy, 17.0 / 24.0, TOL), "bacc");
    CHECK(close_rel(s.accuracy, 0.7, TOL), "acc");
    /* the same from scores: positive when p1 >= 0.5 */
    float probs[20];
    for (int i = 0; i < 10; i++) {
        probs[2 * i + 1] = yp[i] ? 0.75f : 0.25f;
        probs[2 * i] = 1.0f - probs[2 * i + 1];
    }
    metrics_screening s2;
    CHECK(metrics_screening_compute(&s2, yt, probs + 1, 2, 10, 2, 1, 0.5, &err) == 0, "%s",
          err.msg);
    CHECK(s2.tp == 4 && s2.fp == 1 && s2.tn == 3 && s2.fn == 2, "counts from scores");
    int32_t pred[10];
    metrics_predict_threshold(pred, probs, 10, 2, 1, 0.5);
    CHECK(memcmp(pred, yp, sizeof pred) == 0, "predict at threshold");
    metrics_argmax(pred, probs, 10, 2);
    CHECK(memcmp(pred, yp, sizeof pred) == 0, "argmax");

    /* undefined ratios are 0 (zero_division="warn"), MCC 0 when undefined */
    metrics_screening_from_counts(&s, 0, 0, 5, 0);
    CHECK(s.sensitivity == 0.0 && s.ppv == 0.0 && s.f1 == 0.0 && s.mcc == 0.0 &&
              s.specificity == 1.0 && s.balanced_accuracy == 1.0,
          "no positive at all");
}

/* ROC with ties, by hand. y = 1 0 1 0 1 0, scores 0.9 0.8 0.8 0.4 0.4 0.1 (3 positives,
 * 3 negatives). Cumulative (fps, tps) at the distinct scores: 0.9 (0,1), 0.8 (1,2),
 * 0.4 (2,3), 0.1 (3,3). (1,2) lies on the line from (0,1) to (2,3): dropped. Curve:
 * (0,0)@inf, (0,1/3)@0.9, (2/3,1)@0.4, (1,1)@0.1. AUC = 0 + (2/3)(1/3 + 1)/2 + (1/3)(2)/2
 * = 4/9 + 3/9 = 7/9; by pairs: 0.9 beats 3 negatives, the 0.8 positive beats 2 and ties
 * 1 (half), the 0.4 positive beats 1 and ties 1: (3 + 2.5 + 1.5)/9 = 7/9.
 * Youden J = tpr - fpr: 0, 1/3, 1/3, 0 -> the first maximum, 0.9.
 * Sensitivity >= 0.5: thresholds inf (0), 0.9 (1/3), 0.8 (2/3): 0.8 (a dropped point).
 * Specificity >= 0.6: from the smallest, 0.1 (0), 0.4 (1/3), 0.8 (2/3): 0.8. */
static void hand_roc(void)
{
    rb_error err = {0};
    int32_t y[6] = {1, 0, 1, 0, 1, 0};
    float s[6] = {0.9f, 0.8f, 0.8f, 0.4f, 0.4f, 0.1f};
    metrics_roc roc;
    CHECK(metrics_roc_compute(&roc, y, s, 1, 6, 2, 1, &err) == 0, "%s", err.msg);
    CHECK(roc.n_points == 4, "points %lld", (long long)roc.n_points);
    if (roc.n_points == 4) {
        double fpr[4] = {0, 0, 2.0 / 3.0, 1}, tpr[4] = {0, 1.0 / 3.0, 1, 1};
        double thr[4] = {INFINITY, (double)0.9f, (double)0.4f, (double)0.1f};
        for (int i = 0; i < 4; i++)
            CHECK(close_rel(roc.fpr[i], fpr[i], TOL) && close_rel(roc.tpr[i], tpr[i], TOL) &&
                      roc.thresholds[i] == thr[i],
                  "point %d: %g %g %g", i, roc.fpr[i], roc.tpr[i], roc.thresholds[i]);
    }
    CHECK(close_rel(roc.auc, 7.0 / 9.0, TOL), "auc %.17g", roc.auc);
    CHECK(roc.n_pos == 3 && roc.n_neg == 3 && roc.n_ignored == 0, "class counts");
    metrics_roc_free(&roc);
    double t;
    CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_YOUDEN, 0, y, s, 1, 6, 2, 1, &err) ==
                  0 && t == (double)0.9f,
          "youden %g", t);
    CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_SENSITIVITY, 0.5, y, s, 1, 6, 2, 1,
                                   &err) == 0 && t == (double)0.8f,
          "sensitivity target %g", t);
    CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_SPECIFICITY, 0.6, y, s, 1, 6, 2, 1,
                                   &err) == 0 && t == (double)0.8f,
          "specificity target %g", t);
    CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_SENSITIVITY, 0.0, y, s, 1, 6, 2, 1,
                                   &err) == 0 && isinf(t) && t > 0,
          "sensitivity 0 reached at +inf");
    CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_SPECIFICITY, 1.0, y, s, 1, 6, 2, 1,
                                   &err) == 0 && t == (double)0.9f,
          "specificity 1 at 0.9: %g", t);
    CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_FIXED, 0.3, y, s, 1, 6, 2, 1, &err) ==
                  0 && t == 0.3,
          "fixed");
    /* the other class as positive: scores 1 - s would give 1 - 7/9; with s itself 2/9 */
    double auc;
    CHECK(metrics_auc(&auc, y, s, 1, 6, 2, 0, &err) == 0 && close_rel(auc, 2.0 / 9.0, TOL),
          "auc of class 0 on class 1's score %.17g", auc);

    /* unlabelled samples are skipped, wherever they are */
    int32_t y2[8] = {1, -1, 0, 1, 0, 7, 1, 0};
    float s2[8] = {0.9f, 0.0f, 0.8f, 0.8f, 0.4f, 1.0f, 0.4f, 0.1f};
    CHECK(metrics_roc_compute(&roc, y2, s2, 1, 8, 2, 1, &err) == 0 && roc.n_ignored == 2 &&
              close_rel(roc.auc, 7.0 / 9.0, TOL),
          "skipped labels: auc %g ignored %lld", roc.auc, (long long)roc.n_ignored);
    metrics_roc_free(&roc);
    int64_t cm[4] = {0};
    int32_t p2[8] = {1, 1, 1, 1, 0, 0, 2, 0};
    CHECK(metrics_confusion_add(cm, 2, y2, p2, 8) == 3, "pairs with a label outside [0,2)");

    /* errors, named */
    float bad[3] = {0.5f, NAN, 0.2f};
    int32_t yb[3] = {0, 1, 0};
    CHECK(metrics_roc_compute(&roc, yb, bad, 1, 3, 2, 1, &err) == -1 &&
              strstr(err.msg, "sample 1"),
          "NaN score refused: %s", err.msg);
    CHECK(metrics_auc(&auc, yb, s, 1, 3, 2, 2, &err) == -1 && strstr(err.msg, "positive"),
          "positive class out of range: %s", err.msg);
    CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_SENSITIVITY, 1.5, y, s, 1, 6, 2, 1,
                                   &err) == -1,
          "target > 1 refused");
    int32_t only1[2] = {1, 1};
    CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_YOUDEN, 0, only1, s, 1, 2, 2, 1,
                                   &err) == -1 && strstr(err.msg, "youden"),
          "youden needs both classes: %s", err.msg);
    metrics_classification c;
    CHECK(metrics_classification_compute(&c, cm, 0, &err) == -1, "k = 0 refused");
    metrics_threshold_rule rule;
    CHECK(metrics_threshold_rule_parse("specificity", &rule) == 0 &&
              rule == METRICS_THRESHOLD_SPECIFICITY &&
              strcmp(metrics_threshold_rule_name(METRICS_THRESHOLD_YOUDEN), "youden") == 0 &&
              metrics_threshold_rule_parse("best", &rule) == -1,
          "rule names");
}

/* Per-rank partial matrices and counts add up to the whole. */
static void mergeable(void)
{
    enum { N = 500, K = 3 };
    int32_t yt[N], yp[N];
    float sc[N];
    for (int i = 0; i < N; i++) {
        yt[i] = (i * 7 + i / 13) % 4 - (i % 17 == 0); /* some -1 and 3: skipped */
        yp[i] = (i * 5 + i / 7) % K;
        sc[i] = (float)((i * 37) % 101) / 100.0f;
    }
    int64_t whole[K * K] = {0}, parts[K * K] = {0};
    int64_t skipped = metrics_confusion_add(whole, K, yt, yp, N);
    int64_t s2 = metrics_confusion_add(parts, K, yt, yp, 123) +
                 metrics_confusion_add(parts, K, yt + 123, yp + 123, 200) +
                 metrics_confusion_add(parts, K, yt + 323, yp + 323, N - 323);
    CHECK(skipped == s2 && skipped > 0 && memcmp(whole, parts, sizeof whole) == 0,
          "confusion parts sum to the whole");
    int64_t c1[4] = {0}, c2[4] = {0};
    metrics_binary_counts_add(c1, yt, sc, 1, N, K, 1, 0.5);
    metrics_binary_counts_add(c2, yt, sc, 1, 250, K, 1, 0.5);
    metrics_binary_counts_add(c2, yt + 250, sc + 250, 1, N - 250, K, 1, 0.5);
    CHECK(memcmp(c1, c2, sizeof c1) == 0 && c1[0] + c1[1] + c1[2] + c1[3] == N - skipped,
          "binary counts parts sum to the whole");
}

/* ---------------------------------------------------------------- golden files */

typedef struct golden {
    char *text;
    int nlines;
    char **key, **rest;
} golden;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) {
        b[sz] = '\0';
        if (len)
            *len = (size_t)sz;
    }
    return b;
}

static int golden_load(golden *g, const char *path)
{
    memset(g, 0, sizeof *g);
    g->text = slurp(path, NULL);
    if (!g->text)
        return -1;
    int cap = 64;
    g->key = malloc((size_t)cap * sizeof *g->key);
    g->rest = malloc((size_t)cap * sizeof *g->rest);
    for (char *line = strtok(g->text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' || line[0] == '\0')
            continue;
        if (g->nlines == cap) {
            cap *= 2;
            g->key = realloc(g->key, (size_t)cap * sizeof *g->key);
            g->rest = realloc(g->rest, (size_t)cap * sizeof *g->rest);
        }
        char *sp = strchr(line, ' ');
        g->key[g->nlines] = line;
        g->rest[g->nlines] = sp ? sp + 1 : line + strlen(line);
        if (sp)
            *sp = '\0';
        g->nlines++;
    }
    return 0;
}

static void golden_free(golden *g)
{
    free(g->text);
    free(g->key);
    free(g->rest);
}

/* the from-th line with this key at or after index *from (NULL when none) */
static const char *golden_next(const golden *g, const char *key, int *from)
{
    for (int i = *from; i < g->nlines; i++)
        if (strcmp(g->key[i], key) == 0) {
            *from = i + 1;
            return g->rest[i];
        }
    return NULL;
}

static const char *golden_get(const golden *g, const char *key)
{
    int from = 0;
    return golden_next(g, key, &from);
}

static int parse_doubles(const char *s, double *out, int max)
{
    int n = 0;
    char *end;
    while (s && n < max) {
        double v = strtod(s, &end);
        if (end == s)
            break;
        out[n++] = v;
        s = end;
    }
    return n;
}

static int parse_ints(const char *s, int64_t *out, int max)
{
    int n = 0;
    char *end;
    while (s && n < max) {
        long long v = strtoll(s, &end, 10);
        if (end == s)
            break;
        out[n++] = v;
        s = end;
    }
    return n;
}

static void check_vec(const char *cs, const char *what, const double *got, const double *want,
                      int n)
{
    for (int i = 0; i < n; i++)
        CHECK(close_rel(got[i], want[i], TOL), "%s: %s[%d] = %.17g, sklearn %.17g", cs, what,
              i, got[i], want[i]);
}

static int exact_matches, exact_total;

static void golden_case(const char *dir, const char *cs)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.txt", dir, cs);
    golden g;
    if (golden_load(&g, path) != 0) {
        CHECK(0, "cannot read %s", path);
        return;
    }
    rb_error err = {0};
    int64_t iv[4] = {0};
    CHECK(parse_ints(golden_get(&g, "k"), iv, 1) == 1, "%s: k", cs);
    int32_t k = (int32_t)iv[0];
    CHECK(parse_ints(golden_get(&g, "n"), iv, 1) == 1, "%s: n", cs);
    int n = (int)iv[0];

    char *names_store[64] = {0};
    const char *names[64];
    int has_names = 0, from = 0;
    const char *nl;
    while ((nl = golden_next(&g, "name", &from))) {
        char *end;
        long i = strtol(nl, &end, 10);
        if (i >= 0 && i < 64 && *end == ' ') {
            names_store[i] = end + 1;
            has_names = 1;
        }
    }
    for (int i = 0; i < k && i < 64; i++)
        names[i] = names_store[i];

    int64_t *i64 = malloc(sizeof *i64 * (size_t)(n * k + k * k + 16));
    double *d = malloc(sizeof *d * (size_t)(n * k + k * k + 16));
    int32_t *yt = malloc(sizeof *yt * (size_t)n), *yp = malloc(sizeof *yp * (size_t)n);
    int32_t *am = malloc(sizeof *am * (size_t)n);
    float *probs = malloc(sizeof *probs * (size_t)n * (size_t)k);
    CHECK(parse_ints(golden_get(&g, "y_true"), i64, n) == n, "%s: y_true", cs);
    for (int i = 0; i < n; i++)
        yt[i] = (int32_t)i64[i];
    CHECK(parse_ints(golden_get(&g, "y_pred"), i64, n) == n, "%s: y_pred", cs);
    for (int i = 0; i < n; i++)
        yp[i] = (int32_t)i64[i];
    CHECK(parse_doubles(golden_get(&g, "probs"), d, n * k) == n * k, "%s: probs", cs);
    for (int i = 0; i < n * k; i++)
        probs[i] = (float)d[i];
    int64_t unlabelled = 0;
    for (int i = 0; i < n; i++)
        unlabelled += yt[i] < 0 || yt[i] >= k;

    /* argmax and confusion matrix */
    metrics_argmax(am, probs, n, k);
    CHECK(memcmp(am, yp, sizeof *am * (size_t)n) == 0, "%s: argmax = numpy.argmax", cs);
    int64_t *cm = calloc((size_t)(k * k), sizeof *cm);
    CHECK(metrics_confusion_add(cm, k, yt, yp, n) == unlabelled, "%s: skipped pairs", cs);
    CHECK(parse_ints(golden_get(&g, "cm"), i64, k * k) == k * k &&
              memcmp(cm, i64, sizeof *cm * (size_t)(k * k)) == 0,
          "%s: confusion matrix", cs);

    /* per-class and averages */
    metrics_classification c;
    CHECK(metrics_classification_compute(&c, cm, k, &err) == 0, "%s", err.msg);
    double *got = malloc(sizeof *got * (size_t)(k + 8));
    static const char *const f3[3] = {"precision", "recall", "f1"};
    for (int f = 0; f < 3; f++) {
        for (int i = 0; i < k; i++)
            got[i] = f == 0 ? c.per_class[i].precision
                     : f == 1 ? c.per_class[i].recall
                              : c.per_class[i].f1;
        CHECK(parse_doubles(golden_get(&g, f3[f]), d, k) == k, "%s: %s", cs, f3[f]);
        check_vec(cs, f3[f], got, d, k);
        for (int i = 0; i < k; i++, exact_total++)
            exact_matches += got[i] == d[i];
    }
    CHECK(parse_ints(golden_get(&g, "support"), i64, k) == k, "%s: support", cs);
    for (int i = 0; i < k; i++)
        CHECK(c.per_class[i].support == i64[i], "%s: support[%d]", cs, i);
    CHECK(parse_doubles(golden_get(&g, "accuracy"), d, 1) == 1, "%s: accuracy", cs);
    check_vec(cs, "accuracy", &c.accuracy, d, 1);
    const metrics_prf *avgs[2] = {&c.macro, &c.weighted};
    static const char *const avg_keys[2] = {"macro", "weighted"};
    for (int a = 0; a < 2; a++) {
        double v[3] = {avgs[a]->precision, avgs[a]->recall, avgs[a]->f1};
        CHECK(parse_doubles(golden_get(&g, avg_keys[a]), d, 3) == 3, "%s: %s", cs,
              avg_keys[a]);
        check_vec(cs, avg_keys[a], v, d, 3);
        for (int i = 0; i < 3; i++, exact_total++)
            exact_matches += v[i] == d[i];
    }

    /* classification_report, byte for byte, for every digits written */
    int nd = parse_ints(golden_get(&g, "digits"), i64, 8);
    CHECK(nd >= 2, "%s: digits", cs);
    for (int j = 0; j < nd; j++) {
        int digits = (int)i64[j];
        snprintf(path, sizeof path, "%s/%s.report%d.txt", dir, cs, digits);
        size_t wl = 0;
        char *want = slurp(path, &wl);
        CHECK(want != NULL, "cannot read %s", path);
        if (!want)
            continue;
        int64_t need = metrics_report_text(NULL, NULL, 0, &c, has_names ? names : NULL,
                                           digits);
        char *buf = malloc((size_t)need + 1);
        int64_t len = metrics_report_text(NULL, buf, (size_t)need + 1, &c,
                                          has_names ? names : NULL, digits);
        CHECK(len == (int64_t)wl && memcmp(buf, want, wl) == 0,
              "%s: report digits=%d differs from sklearn's:\n--- ours\n%s--- sklearn\n%s", cs,
              digits, buf, want);
        free(buf);
        free(want);
    }

    /* one-vs-rest AUC */
    double *ovr = malloc(sizeof *ovr * (size_t)k), macro, weighted;
    CHECK(metrics_auc_ovr(ovr, &macro, &weighted, yt, probs, n, k, &err) == 0, "%s", err.msg);
    CHECK(parse_doubles(golden_get(&g, "ovr_auc"), d, k) == k, "%s: ovr_auc", cs);
    check_vec(cs, "ovr_auc", ovr, d, k);
    if (k >= 3) {
        CHECK(parse_doubles(golden_get(&g, "auc_macro"), d, 1) == 1, "%s: auc_macro", cs);
        check_vec(cs, "auc_macro", &macro, d, 1);
        CHECK(parse_doubles(golden_get(&g, "auc_weighted"), d, 1) == 1, "%s: auc_w", cs);
        check_vec(cs, "auc_weighted", &weighted, d, 1);
    }

    /* ROC of the positive class */
    CHECK(parse_ints(golden_get(&g, "positive"), iv, 1) == 1, "%s: positive", cs);
    int32_t pos = (int32_t)iv[0];
    const float *score = probs + pos;
    metrics_roc roc;
    CHECK(metrics_roc_compute(&roc, yt, score, k, n, k, pos, &err) == 0, "%s", err.msg);
    CHECK(roc.n_ignored == unlabelled, "%s: roc ignored", cs);
    static const char *const rk[3] = {"roc_fpr", "roc_tpr", "roc_thr"};
    double *rv[3] = {roc.fpr, roc.tpr, roc.thresholds};
    double *want = malloc(sizeof *want * (size_t)(n + 2));
    for (int a = 0; a < 3; a++) {
        int np = parse_doubles(golden_get(&g, rk[a]), want, n + 2);
        CHECK(np == roc.n_points, "%s: %s has %d points, ours %lld", cs, rk[a], np,
              (long long)roc.n_points);
        if (np == roc.n_points)
            check_vec(cs, rk[a], rv[a], want, np);
    }
    CHECK(parse_doubles(golden_get(&g, "roc_auc"), d, 1) == 1, "%s: roc_auc", cs);
    check_vec(cs, "roc_auc", &roc.auc, d, 1);
    exact_total++;
    exact_matches += roc.auc == d[0] || (isnan(roc.auc) && isnan(d[0]));
    CHECK(close_rel(ovr[pos], roc.auc, 0), "%s: ovr AUC of the positive class = roc AUC", cs);

    /* screening at the case's threshold */
    double thr = 0.5;
    CHECK(parse_doubles(golden_get(&g, "threshold"), &thr, 1) == 1, "%s: threshold", cs);
    metrics_screening s;
    CHECK(metrics_screening_compute(&s, yt, score, k, n, k, pos, thr, &err) == 0, "%s",
          err.msg);
    CHECK(parse_ints(golden_get(&g, "counts"), i64, 4) == 4 && s.tp == i64[0] &&
              s.fp == i64[1] && s.tn == i64[2] && s.fn == i64[3],
          "%s: counts %lld %lld %lld %lld", cs, (long long)s.tp, (long long)s.fp,
          (long long)s.tn, (long long)s.fn);
    double sv[8] = {s.sensitivity, s.specificity, s.ppv, s.npv, s.f1, s.mcc,
                    s.balanced_accuracy, s.accuracy};
    CHECK(parse_doubles(golden_get(&g, "screening"), d, 8) == 8, "%s: screening", cs);
    check_vec(cs, "screening", sv, d, 8);

    /* threshold choice */
    int both = roc.n_pos > 0 && roc.n_neg > 0;
    double t, wt = NAN;
    CHECK(parse_doubles(golden_get(&g, "youden"), &wt, 1) == 1, "%s: youden", cs);
    int rc = metrics_threshold_choose(&t, METRICS_THRESHOLD_YOUDEN, 0, yt, score, k, n, k, pos,
                                      &err);
    if (both)
        CHECK(rc == 0 && t == wt, "%s: youden %.17g, sklearn %.17g", cs, t, wt);
    else
        CHECK(rc == -1, "%s: youden without both classes refused", cs);
    from = 0;
    const char *tl;
    while ((tl = golden_next(&g, "target_sens", &from))) {
        double tv[2];
        CHECK(parse_doubles(tl, tv, 2) == 2, "%s: target_sens", cs);
        rc = metrics_threshold_choose(&t, METRICS_THRESHOLD_SENSITIVITY, tv[0], yt, score, k,
                                      n, k, pos, &err);
        if (isnan(tv[1]))
            CHECK(rc == -1, "%s: sensitivity target without positives refused", cs);
        else
            CHECK(rc == 0 && t == tv[1], "%s: sensitivity >= %g: %.17g, want %.17g", cs,
                  tv[0], t, tv[1]);
    }
    from = 0;
    while ((tl = golden_next(&g, "target_spec", &from))) {
        double tv[2];
        CHECK(parse_doubles(tl, tv, 2) == 2, "%s: target_spec", cs);
        rc = metrics_threshold_choose(&t, METRICS_THRESHOLD_SPECIFICITY, tv[0], yt, score, k,
                                      n, k, pos, &err);
        if (isnan(tv[1]))
            CHECK(rc == -1, "%s: specificity target without negatives refused", cs);
        else
            CHECK(rc == 0 && t == tv[1], "%s: specificity >= %g: %.17g, want %.17g", cs,
                  tv[0], t, tv[1]);
    }

    /* bootstrap, against the same resamples drawn in Python with sklearn's metrics */
    const char *bl = golden_get(&g, "bootstrap");
    metrics_bootstrap b;
    memset(&b, 0, sizeof b);
    if (bl) {
        double bv[3];
        CHECK(parse_doubles(bl, bv, 3) == 3, "%s: bootstrap", cs);
        CHECK(metrics_bootstrap_compute(&b, yt, score, k, n, k, pos, thr, (int64_t)bv[0],
                                        (uint64_t)bv[1], bv[2], &err) == 0,
              "%s", err.msg);
        const metrics_ci *cis[4] = {&b.accuracy, &b.sensitivity, &b.specificity, &b.auc};
        static const char *const cin[4] = {"accuracy", "sensitivity", "specificity", "auc"};
        from = 0;
        for (int a = 0; a < 4; a++) {
            const char *cl = golden_next(&g, "ci", &from);
            CHECK(cl && strncmp(cl, cin[a], strlen(cin[a])) == 0, "%s: ci %s", cs, cin[a]);
            if (!cl)
                continue;
            double cv[3];
            CHECK(parse_doubles(cl + strlen(cin[a]), cv, 3) == 3, "%s: ci values", cs);
            CHECK(close_rel(cis[a]->lo, cv[0], TOL) && close_rel(cis[a]->hi, cv[1], TOL) &&
                      cis[a]->n_defined == (int64_t)cv[2],
                  "%s: %s CI [%.17g, %.17g] (%lld), want [%.17g, %.17g] (%lld)", cs, cin[a],
                  cis[a]->lo, cis[a]->hi, (long long)cis[a]->n_defined, cv[0], cv[1],
                  (long long)cv[2]);
        }
        CHECK(b.accuracy.estimate == s.accuracy && b.sensitivity.estimate == s.sensitivity &&
                  b.specificity.estimate == s.specificity &&
                  close_rel(b.auc.estimate, roc.auc, 0),
              "%s: bootstrap estimates = the point values", cs);
        /* deterministic */
        metrics_bootstrap b2;
        metrics_bootstrap_compute(&b2, yt, score, k, n, k, pos, thr, (int64_t)bv[0],
                                  (uint64_t)bv[1], bv[2], &err);
        CHECK(memcmp(&b, &b2, sizeof b) == 0 || (b.auc.n_defined == 0 &&
                                                 b.accuracy.lo == b2.accuracy.lo),
              "%s: bootstrap repeats exactly", cs);
    }

    /* all of it through metrics_eval_compute */
    metrics_eval_config cfg;
    metrics_eval_config_default(&cfg);
    cfg.positive = pos;
    cfg.threshold = thr;
    cfg.bootstrap = bl ? b.resamples : 0;
    cfg.seed = b.seed;
    cfg.level = bl ? b.level : 0.95;
    metrics_eval ev;
    CHECK(metrics_eval_compute(&ev, &cfg, yt, NULL, probs, n, k, &err) == 0, "%s: eval %s", cs,
          err.msg);
    CHECK(ev.n == n && ev.n_ignored == unlabelled &&
              memcmp(ev.confusion, cm, sizeof *cm * (size_t)(k * k)) == 0,
          "%s: eval confusion", cs);
    CHECK(ev.cls.accuracy == c.accuracy && ev.cls.macro.f1 == c.macro.f1 &&
              ev.cls.weighted.f1 == c.weighted.f1,
          "%s: eval classification", cs);
    CHECK(ev.has_probs && ev.has_screening && ev.has_bootstrap == (bl != NULL), "%s: eval has",
          cs);
    CHECK(memcmp(&ev.screening, &s, sizeof s) == 0, "%s: eval screening", cs);
    CHECK(ev.roc.n_points == roc.n_points && close_rel(ev.roc.auc, roc.auc, 0) &&
              close_rel(ev.auc_macro, macro, 0) && close_rel(ev.auc_weighted, weighted, 0),
          "%s: eval ROC", cs);
    if (bl)
        CHECK(memcmp(&ev.bootstrap, &b, sizeof b) == 0, "%s: eval bootstrap", cs);
    char sum[4096];
    CHECK(metrics_summary_text(NULL, sum, sizeof sum, &ev, has_names ? names : NULL) > 0 &&
              strstr(sum, "sensitivity"),
          "%s: summary text", cs);
    metrics_eval_free(&ev);

    metrics_roc_free(&roc);
    metrics_classification_free(&c);
    free(want);
    free(ovr);
    free(got);
    free(cm);
    free(i64);
    free(d);
    free(yt);
    free(yp);
    free(am);
    free(probs);
    golden_free(&g);
}

static void golden_all(void)
{
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/tests/golden/metrics", test_srcdir());
    snprintf(path, sizeof path, "%s/index.txt", dir);
    char *idx = slurp(path, NULL);
    CHECK(idx != NULL, "cannot read %s (set RADBATCH_SRC to the source tree)", path);
    if (!idx)
        return;
    int cases = 0;
    char *save = NULL;
    for (char *cs = strtok_r(idx, "\n", &save); cs; cs = strtok_r(NULL, "\n", &save)) {
        golden_case(dir, cs);
        cases++;
    }
    CHECK(cases >= 10, "golden cases: %d", cases);
    printf("golden: %d cases; %d of %d precision/recall/f1/AUC values bitwise equal to "
           "sklearn's\n",
           cases, exact_matches, exact_total);
    free(idx);
}

/* Larger data: the bootstrap's AUC and the rule invariants. */
static void bootstrap_props(void)
{
    rb_error err = {0};
    enum { N = 2000 };
    int32_t *y = malloc(sizeof *y * N);
    float *s = malloc(sizeof *s * N);
    for (int i = 0; i < N; i++) {
        y[i] = (i % 3) == 0;
        s[i] = (float)(((i * 7919) % 1000) / 1000.0 * 0.7 + 0.3 * y[i]);
    }
    metrics_bootstrap b1, b2, b3;
    CHECK(metrics_bootstrap_compute(&b1, y, s, 1, N, 2, 1, 0.5, 300, 42, 0.95, &err) == 0,
          "%s", err.msg);
    CHECK(metrics_bootstrap_compute(&b2, y, s, 1, N, 2, 1, 0.5, 300, 42, 0.95, &err) == 0 &&
              memcmp(&b1, &b2, sizeof b1) == 0,
          "same seed, same intervals");
    CHECK(metrics_bootstrap_compute(&b3, y, s, 1, N, 2, 1, 0.5, 300, 43, 0.95, &err) == 0 &&
              b3.auc.lo != b1.auc.lo,
          "another seed, other resamples");
    const metrics_ci *cis[4] = {&b1.accuracy, &b1.sensitivity, &b1.specificity, &b1.auc};
    for (int a = 0; a < 4; a++)
        CHECK(cis[a]->lo <= cis[a]->estimate && cis[a]->estimate <= cis[a]->hi &&
                  cis[a]->hi - cis[a]->lo < 0.1 && cis[a]->n_defined == 300,
              "interval %d [%g, %g] around %g", a, cis[a]->lo, cis[a]->hi, cis[a]->estimate);
    CHECK(metrics_bootstrap_compute(&b1, y, s, 1, N, 2, 1, 0.5, 0, 42, 0.95, &err) == -1,
          "0 resamples refused");
    CHECK(metrics_bootstrap_compute(&b1, y, s, 1, N, 2, 1, 0.5, 10, 42, 1.0, &err) == -1,
          "level 1 refused");

    /* the chosen thresholds honour their targets */
    double t;
    metrics_screening sc;
    for (double target = 0.05; target < 1.0; target += 0.1) {
        CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_SENSITIVITY, target, y, s, 1, N, 2,
                                       1, &err) == 0,
              "%s", err.msg);
        metrics_screening_compute(&sc, y, s, 1, N, 2, 1, t, &err);
        CHECK(sc.sensitivity >= target, "sensitivity %g < target %g", sc.sensitivity, target);
        /* the next larger threshold misses the target */
        double above = INFINITY;
        for (int i = 0; i < N; i++)
            if ((double)s[i] > t && (double)s[i] < above)
                above = s[i];
        metrics_screening_compute(&sc, y, s, 1, N, 2, 1, above, &err);
        CHECK(sc.sensitivity < target, "threshold %g is not the largest for %g", t, target);
        CHECK(metrics_threshold_choose(&t, METRICS_THRESHOLD_SPECIFICITY, target, y, s, 1, N,
                                       2, 1, &err) == 0,
              "%s", err.msg);
        metrics_screening_compute(&sc, y, s, 1, N, 2, 1, t, &err);
        CHECK(sc.specificity >= target, "specificity %g < target %g", sc.specificity, target);
    }
    /* perfect separation: every resample's AUC is 1 */
    for (int i = 0; i < N; i++)
        s[i] = y[i] ? 0.9f : 0.1f;
    CHECK(metrics_bootstrap_compute(&b1, y, s, 1, N, 2, 1, 0.5, 50, 1, 0.95, &err) == 0 &&
              b1.auc.lo == 1.0 && b1.auc.hi == 1.0 && b1.sensitivity.lo == 1.0,
          "perfect: AUC CI [%g, %g]", b1.auc.lo, b1.auc.hi);
    free(y);
    free(s);
}

/* One class against the rest from a 3x3 confusion matrix equals the counts of the
 * labels at that decision. */
static void screening_from_confusion(void)
{
    /* rows: true 0, 1, 2; columns: predicted */
    const int64_t cm[9] = {5, 1, 2, /**/ 3, 7, 0, /**/ 1, 4, 6};
    metrics_screening s;
    metrics_screening_from_confusion(&s, cm, 3, 1);
    CHECK(s.positive == 1 && s.tp == 7 && s.fn == 3 && s.fp == 5 && s.tn == 14,
          "one-vs-rest counts tp %lld fn %lld fp %lld tn %lld", (long long)s.tp,
          (long long)s.fn, (long long)s.fp, (long long)s.tn);
    CHECK(s.sensitivity == 0.7 && s.specificity == 14.0 / 19.0, "sensitivity %g specificity %g",
          s.sensitivity, s.specificity);
    metrics_screening_from_confusion(&s, cm, 3, 0);
    CHECK(s.tp == 5 && s.fn == 3 && s.fp == 4 && s.tn == 17, "class 0 against the rest");
}

int main(void)
{
    hand_2x2();
    hand_roc();
    mergeable();
    golden_all();
    bootstrap_props();
    screening_from_confusion();
    return TEST_DONE();
}
