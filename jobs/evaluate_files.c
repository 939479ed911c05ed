/* radbatch evaluate, steps 6 and 7 (docs/evaluate.md "Outputs", "Printed output"): rank 0
 * computes the metrics on the gathered records in record order (src/metrics.h), checks
 * them against the counts summed over the ranks, writes metrics.json,
 * classification_report.txt, confusion_matrix.csv, predictions.csv, roc.csv, errors.csv
 * and report.html, each to a temporary name renamed into place, then summary.json last,
 * and prints the report. */
#include "csv.h"
#include "json_number.h"
#include "evaluate.h"
#include "fsutil.h"
#include "job_marker.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cJSON *prf_json(const metrics_prf *p)
{
    cJSON *o = cJSON_CreateObject();
    json_add_exact_number(o, "precision", p->precision);
    json_add_exact_number(o, "recall", p->recall);
    json_add_exact_number(o, "f1", p->f1);
    json_add_exact_number(o, "support", (double)p->support);
    return o;
}

static cJSON *ci_json(const metrics_ci *c)
{
    cJSON *o = cJSON_CreateObject();
    json_add_exact_number(o, "estimate", c->estimate);
    json_add_exact_number(o, "lo", c->lo);
    json_add_exact_number(o, "hi", c->hi);
    json_add_exact_number(o, "n_defined", (double)c->n_defined);
    return o;
}

/* The screening class's reliability diagram, ECE and Brier score (docs/metrics.md). */
static cJSON *calibration_json(const metrics_calibration *c)
{
    cJSON *o = cJSON_CreateObject();
    json_add_exact_number(o, "bins", METRICS_CALIB_BINS);
    json_add_exact_number(o, "ece", c->ece);
    json_add_exact_number(o, "brier", c->brier);
    cJSON *r = cJSON_AddArrayToObject(o, "reliability");
    for (int b = 0; b < METRICS_CALIB_BINS; b++) {
        cJSON *e = cJSON_CreateObject();
        json_add_exact_number(e, "lo", b / (double)METRICS_CALIB_BINS);
        json_add_exact_number(e, "hi", (b + 1) / (double)METRICS_CALIB_BINS);
        json_add_exact_number(e, "count", (double)c->count[b]);
        json_add_exact_number(e, "positives", (double)c->positives[b]);
        json_add_exact_number(e, "mean_predicted", c->mean_predicted[b]);
        json_add_exact_number(e, "observed", c->observed[b]);
        cJSON_AddItemToArray(r, e);
    }
    return o;
}

/* The stress test's rows (docs/evaluate.md "Stress test"). */
static cJSON *stress_json(const eval_ctx *x)
{
    cJSON *o = cJSON_CreateObject();
    json_add_exact_number(o, "seed", (double)x->keys.seed);
    json_add_exact_number(o, "threshold", x->thr.value);
    cJSON_AddStringToObject(o, "positive_class", x->tm.class_names[x->positive]);
    cJSON *rows = cJSON_AddArrayToObject(o, "results");
    for (int i = 0; i < x->nstress; i++) {
        const eval_stress_row *r = &x->stress[i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "shift", r->shift < 0 ? "none" : rb_shift_name((rb_shift)r->shift));
        json_add_exact_number(e, "severity", r->severity);
        if (r->shift >= 0) {
            cJSON_AddStringToObject(e, "parameter_name", rb_shift_parameter_name((rb_shift)r->shift));
            json_add_exact_number(e, "parameter", r->parameter);
        }
        json_add_exact_number(e, "images", (double)r->n);
        json_add_exact_number(e, "roc_auc", r->auc);
        json_add_exact_number(e, "sensitivity", r->sensitivity);
        json_add_exact_number(e, "specificity", r->specificity);
        json_add_exact_number(e, "accuracy", r->accuracy);
        cJSON_AddItemToArray(rows, e);
    }
    return o;
}

static char *metrics_json_text(const eval_ctx *x, const metrics_eval *ev)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "radbatch_version", RADBATCH_VERSION);
    cJSON *models = cJSON_AddArrayToObject(j, "models");
    for (int i = 0; i < x->tm.nmembers; i++)
        cJSON_AddItemToArray(models, cJSON_CreateString(x->tm.path[i]));
    cJSON *data = cJSON_AddObjectToObject(j, "data");
    cJSON_AddStringToObject(data, "path", x->data);
    cJSON_AddStringToObject(data, "kind", x->is_shards ? "shards" : "images");
    if (x->is_shards || x->img_splits)
        cJSON_AddStringToObject(data, "split", x->keys.split);
    json_add_exact_number(j, "tta", (double)x->keys.tta);
    cJSON_AddItemToObject(j, "class_names", cJSON_CreateStringArray((const char *const *)x->tm.class_names, x->k));
    cJSON *cnt = cJSON_AddObjectToObject(j, "counts");
    json_add_exact_number(cnt, "records", (double)x->counts[3]);
    json_add_exact_number(cnt, "evaluated", (double)(x->counts[0] - x->counts[2]));
    json_add_exact_number(cnt, "unlabelled", (double)x->counts[2]);
    json_add_exact_number(cnt, "unreadable", (double)x->counts[1]);
    json_add_exact_number(cnt, "errors", (double)x->all.nerr);
    cJSON *sup = cJSON_AddObjectToObject(cnt, "per_class");
    for (int i = 0; i < x->k; i++)
        json_add_exact_number(sup, x->tm.class_names[i], (double)ev->cls.per_class[i].support);
    json_add_exact_number(j, "accuracy", ev->cls.accuracy);
    cJSON *pc = cJSON_AddObjectToObject(j, "per_class");
    for (int i = 0; i < x->k; i++) {
        cJSON *o = prf_json(&ev->cls.per_class[i]);
        json_add_exact_number(o, "auc_ovr", ev->auc_ovr ? ev->auc_ovr[i] : NAN);
        cJSON_AddItemToObject(pc, x->tm.class_names[i], o);
    }
    cJSON_AddItemToObject(j, "macro_avg", prf_json(&ev->cls.macro));
    cJSON_AddItemToObject(j, "weighted_avg", prf_json(&ev->cls.weighted));
    cJSON *auc = cJSON_AddObjectToObject(j, "auc_ovr");
    json_add_exact_number(auc, "macro", ev->auc_macro);
    json_add_exact_number(auc, "weighted", ev->auc_weighted);
    cJSON *cm = cJSON_AddArrayToObject(j, "confusion_matrix");
    for (int i = 0; i < x->k; i++) {
        cJSON *row = cJSON_CreateArray();
        for (int jj = 0; jj < x->k; jj++)
            cJSON_AddItemToArray(row, json_exact_number((double)ev->confusion[i * x->k + jj]));
        cJSON_AddItemToArray(cm, row);
    }
    if (ev->has_screening) {
        const metrics_screening *s = &ev->screening;
        cJSON *sc = cJSON_AddObjectToObject(j, "screening");
        cJSON_AddStringToObject(sc, "positive_class", x->tm.class_names[x->positive]);
        cJSON *th = cJSON_AddObjectToObject(sc, "threshold");
        json_add_exact_number(th, "value", s->threshold);
        cJSON_AddStringToObject(th, "rule", x->thr.rule);
        cJSON_AddStringToObject(th, "source", x->thr.source);
        if (x->thr.spec.kind == THRESHOLD_SENSITIVITY || x->thr.spec.kind == THRESHOLD_SPECIFICITY)
            json_add_exact_number(th, "target", x->thr.spec.arg);
        cJSON_AddBoolToObject(th, "chosen_on_reported_split", x->thr.same_split);
        if (x->thr.same_split)
            cJSON_AddStringToObject(th, "warning", x->thr.warning);
        else
            cJSON_AddNullToObject(th, "warning");
        cJSON_AddStringToObject(th, "applies_to", "probability of positive_class; positive when >= value");
        json_add_exact_number(sc, "tp", (double)s->tp);
        json_add_exact_number(sc, "fp", (double)s->fp);
        json_add_exact_number(sc, "tn", (double)s->tn);
        json_add_exact_number(sc, "fn", (double)s->fn);
        json_add_exact_number(sc, "sensitivity", s->sensitivity);
        json_add_exact_number(sc, "specificity", s->specificity);
        json_add_exact_number(sc, "ppv", s->ppv);
        json_add_exact_number(sc, "npv", s->npv);
        json_add_exact_number(sc, "f1", s->f1);
        json_add_exact_number(sc, "mcc", s->mcc);
        json_add_exact_number(sc, "balanced_accuracy", s->balanced_accuracy);
        json_add_exact_number(sc, "accuracy", s->accuracy);
        json_add_exact_number(sc, "roc_auc", ev->roc.auc);
        if (ev->has_calibration)
            cJSON_AddItemToObject(sc, "calibration", calibration_json(&ev->calibration));
        if (ev->has_bootstrap) {
            const metrics_bootstrap *b = &ev->bootstrap;
            cJSON *bo = cJSON_AddObjectToObject(sc, "bootstrap");
            json_add_exact_number(bo, "resamples", (double)b->resamples);
            json_add_exact_number(bo, "seed", (double)b->seed);
            json_add_exact_number(bo, "level", b->level);
            cJSON_AddItemToObject(bo, "accuracy", ci_json(&b->accuracy));
            cJSON_AddItemToObject(bo, "sensitivity", ci_json(&b->sensitivity));
            cJSON_AddItemToObject(bo, "specificity", ci_json(&b->specificity));
            cJSON_AddItemToObject(bo, "roc_auc", ci_json(&b->auc));
        }
    }
    if (x->nstress)
        cJSON_AddItemToObject(j, "stress", stress_json(x));
    char *s = cJSON_Print(j);
    cJSON_Delete(j);
    return s;
}

static int write_text(const char *dir, const char *name, const char *text, rb_error *err)
{
    char *p = fs_join(dir, name);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    int rc = fs_write_file_atomic(p, text, strlen(text), err);
    free(p);
    return rc;
}

static int open_csv(csv_writer *w, const char *dir, const char *name, rb_error *err)
{
    char *p = fs_join(dir, name);
    if (!p)
        return rb_fail(err, NULL, "out of memory");
    int rc = csv_writer_open(w, p, err);
    free(p);
    return rc;
}

/* Probabilities in predictions.csv: 6 decimals, like Keras' printed values and enough to
 * reproduce every decision at a 4-decimal threshold. */
static void csv_prob(csv_writer *w, float v)
{
    char b[32];
    snprintf(b, sizeof b, "%.6f", (double)v);
    csv_field(w, b);
}

/* A file an earlier run left in this folder that this run does not write. */
static void remove_stale(const char *dir, const char *name)
{
    char *p = fs_join(dir, name);
    if (p && fs_is_file(p))
        unlink(p);
    free(p);
}

static int write_csvs(const eval_ctx *x, const metrics_eval *ev, const int32_t *y_pred_all, rb_error *err)
{
    int k = x->k;
    char **names = x->tm.class_names;
    csv_writer w;
    /* confusion_matrix.csv */
    if (open_csv(&w, x->out, "confusion_matrix.csv", err) < 0)
        return -1;
    csv_field(&w, "true\\predicted");
    for (int j = 0; j < k; j++)
        csv_field(&w, names[j]);
    csv_end_row(&w);
    for (int i = 0; i < k; i++) {
        csv_field(&w, names[i]);
        for (int j = 0; j < k; j++)
            csv_field_int(&w, (long long)ev->confusion[i * k + j]);
        csv_end_row(&w);
    }
    if (csv_writer_close(&w, err) < 0)
        return -1;
    /* predictions.csv */
    if (open_csv(&w, x->out, "predictions.csv", err) < 0)
        return -1;
    csv_field(&w, "path");
    csv_field(&w, "true_label");
    csv_field(&w, "predicted_label");
    for (int j = 0; j < k; j++) {
        char h[512];
        snprintf(h, sizeof h, "prob_%s", names[j]);
        csv_field(&w, h);
    }
    csv_end_row(&w);
    for (int64_t i = 0; i < x->n; i++) {
        if (!x->all.ok[i])
            continue;
        csv_field(&w, x->all.paths[i]);
        csv_field(&w, x->all.labels[i] >= 0 && x->all.labels[i] < k ? names[x->all.labels[i]] : "");
        csv_field(&w, names[y_pred_all[i]]);
        for (int j = 0; j < k; j++)
            csv_prob(&w, x->all.probs[i * k + j]);
        csv_end_row(&w);
    }
    if (csv_writer_close(&w, err) < 0)
        return -1;
    /* roc.csv: the positive class's curve (binary screening) */
    if (ev->has_screening) {
        if (open_csv(&w, x->out, "roc.csv", err) < 0)
            return -1;
        csv_field(&w, "fpr");
        csv_field(&w, "tpr");
        csv_field(&w, "threshold");
        csv_end_row(&w);
        for (int64_t i = 0; i < ev->roc.n_points; i++) {
            char b[64];
            snprintf(b, sizeof b, "%.17g", ev->roc.fpr[i]);
            csv_field(&w, b);
            snprintf(b, sizeof b, "%.17g", ev->roc.tpr[i]);
            csv_field(&w, b);
            snprintf(b, sizeof b, "%.17g", ev->roc.thresholds[i]);
            csv_field(&w, b);
            csv_end_row(&w);
        }
        if (csv_writer_close(&w, err) < 0)
            return -1;
    }
    else /* no curve: no roc.csv from an earlier run in this folder either */
        remove_stale(x->out, "roc.csv");
    /* calibration.csv: the screening class's reliability diagram */
    if (ev->has_calibration) {
        const metrics_calibration *c = &ev->calibration;
        if (open_csv(&w, x->out, "calibration.csv", err) < 0)
            return -1;
        static const char *hdr[] = {"bin", "lo", "hi", "count", "positives", "mean_predicted", "observed"};
        for (size_t i = 0; i < sizeof hdr / sizeof hdr[0]; i++)
            csv_field(&w, hdr[i]);
        csv_end_row(&w);
        for (int b = 0; b < METRICS_CALIB_BINS; b++) {
            char v[64];
            csv_field_int(&w, b);
            snprintf(v, sizeof v, "%.1f", b / (double)METRICS_CALIB_BINS);
            csv_field(&w, v);
            snprintf(v, sizeof v, "%.1f", (b + 1) / (double)METRICS_CALIB_BINS);
            csv_field(&w, v);
            csv_field_int(&w, (long long)c->count[b]);
            csv_field_int(&w, (long long)c->positives[b]);
            snprintf(v, sizeof v, "%.17g", c->mean_predicted[b]);
            csv_field(&w, c->count[b] ? v : "");
            snprintf(v, sizeof v, "%.17g", c->observed[b]);
            csv_field(&w, c->count[b] ? v : "");
            csv_end_row(&w);
        }
        if (csv_writer_close(&w, err) < 0)
            return -1;
    } else
        remove_stale(x->out, "calibration.csv");
    /* errors.csv: listing problems, then unreadable images in record order */
    if (open_csv(&w, x->out, "errors.csv", err) < 0)
        return -1;
    csv_field(&w, "path");
    csv_field(&w, "reason");
    csv_end_row(&w);
    for (int64_t i = 0; i < x->all.nerr; i++) {
        csv_field(&w, x->all.err_path[i]);
        csv_field(&w, x->all.err_reason[i]);
        csv_end_row(&w);
    }
    return csv_writer_close(&w, err);
}
void evaluate_fmt4(char *b, size_t cap, double v)
{
    if (isnan(v))
        snprintf(b, cap, "n/a");
    else if (isinf(v))
        snprintf(b, cap, v > 0 ? "inf" : "-inf");
    else
        snprintf(b, cap, "%.4f", v);
}

void evaluate_fmt_ci(char *b, size_t cap, const metrics_ci *c)
{
    if (isnan(c->lo) || isnan(c->hi))
        snprintf(b, cap, "n/a");
    else
        snprintf(b, cap, "%.4f - %.4f", c->lo, c->hi);
}
static void print_screening(const eval_ctx *x, const metrics_eval *ev)
{
    const metrics_screening *s = &ev->screening;
    const metrics_bootstrap *b = ev->has_bootstrap ? &ev->bootstrap : NULL;
    char t[32];
    evaluate_fmt4(t, sizeof t, s->threshold);
    printf("Screening (%s positive when its probability >= %s; threshold %s: %s):\n", x->tm.class_names[x->positive],
           t, x->thr.rule, x->thr.source);
    struct {
        const char *name;
        double v;
        const metrics_ci *ci;
    } m[] = {{"sensitivity", s->sensitivity, b ? &b->sensitivity : NULL},
             {"specificity", s->specificity, b ? &b->specificity : NULL},
             {"PPV", s->ppv, NULL},
             {"NPV", s->npv, NULL},
             {"F1", s->f1, NULL},
             {"MCC", s->mcc, NULL},
             {"balanced accuracy", s->balanced_accuracy, NULL},
             {"accuracy", s->accuracy, b ? &b->accuracy : NULL},
             {"ROC AUC", ev->roc.auc, b ? &b->auc : NULL}};
    printf(" ");
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        evaluate_fmt4(t, sizeof t, m[i].v);
        printf(" %s %s", m[i].name, t);
        if (m[i].ci && !isnan(m[i].ci->lo))
            printf(" [%.4f, %.4f]", m[i].ci->lo, m[i].ci->hi);
        printf(i + 1 < sizeof m / sizeof m[0] ? "," : "\n");
    }
    printf("  tp %lld  fp %lld  tn %lld  fn %lld", (long long)s->tp, (long long)s->fp, (long long)s->tn,
           (long long)s->fn);
    if (b)
        printf("  (95%% CI: percentile bootstrap, %lld resamples, seed %llu)", (long long)b->resamples,
               (unsigned long long)b->seed);
    printf("\n");
    if (ev->has_calibration) {
        char e[32], br[32];
        evaluate_fmt4(e, sizeof e, ev->calibration.ece);
        evaluate_fmt4(br, sizeof br, ev->calibration.brier);
        printf("Calibration of P(%s): ECE %s (10 equal-width bins), Brier score %s\n", x->tm.class_names[x->positive],
               e, br);
    }
}

/* The metrics of the readable records in record order, and the decision of every record
 * in y_pred_all[n]; checked against the confusion matrix summed over the ranks. */
static int compute_metrics(const eval_ctx *x, metrics_eval *ev, int32_t *y_pred_all, rb_error *err)
{
    int k = x->k;
    int64_t n = x->n, m = 0;
    int32_t *yt = malloc((size_t)(n ? n : 1) * sizeof *yt);
    int32_t *yp = malloc((size_t)(n ? n : 1) * sizeof *yp);
    float *pr = malloc((size_t)(n ? n : 1) * k * sizeof *pr);
    if (!yt || !yp || !pr) {
        free(yt);
        free(yp);
        free(pr);
        return rb_fail(err, NULL, "out of memory for %lld records", (long long)n);
    }
    evaluate_decide(x, x->all.probs, n, y_pred_all);
    for (int64_t i = 0; i < n; i++)
        if (x->all.ok[i]) {
            yt[m] = x->all.labels[i];
            yp[m] = y_pred_all[i];
            memcpy(pr + m * k, x->all.probs + i * k, (size_t)k * sizeof *pr);
            m++;
        }
    metrics_eval_config cfg;
    metrics_eval_config_default(&cfg);
    cfg.positive = x->positive;
    cfg.rule = METRICS_THRESHOLD_FIXED;
    cfg.threshold = x->thr.value;
    cfg.bootstrap = x->keys.bootstrap;
    cfg.seed = (uint64_t)x->keys.seed;
    cfg.level = 0.95;
    int rc = metrics_eval_compute(ev, &cfg, yt, yp, pr, m, k, err);
    free(yt);
    free(yp);
    free(pr);
    if (rc < 0)
        return -1;
    /* the summed per-rank counts must be the matrix of the gathered records */
    if (memcmp(ev->confusion, x->cm, (size_t)k * k * sizeof *x->cm) != 0) {
        metrics_eval_free(ev);
        return rb_fail(err, "please report this with the command line", "internal: the confusion matrix summed over "
                                                                        "the ranks differs from the gathered one");
    }
    return 0;
}

/* classification_report.txt's text (malloc'd), or NULL when out of memory. */
static char *classification_report_text(const eval_ctx *x, const metrics_eval *ev)
{
    int digits = (int)x->keys.digits;
    const char *const *names = (const char *const *)x->tm.class_names;
    int64_t len = metrics_report_text(NULL, NULL, 0, &ev->cls, names, digits);
    char *report = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (report)
        metrics_report_text(NULL, report, (size_t)len + 1, &ev->cls, names, digits);
    return report;
}

/* Every output file, summary.json last. */
static int write_files(const eval_ctx *x, const metrics_eval *ev, const int32_t *y_pred_all, const char *report,
                       const char *json, rb_error *err)
{
    int rc = write_text(x->out, "classification_report.txt", report, err);
    if (rc == 0) {
        size_t l = strlen(json);
        char *j2 = malloc(l + 2);
        if (!j2)
            rc = rb_fail(err, NULL, "out of memory");
        else {
            memcpy(j2, json, l);
            j2[l] = '\n';
            j2[l + 1] = '\0';
            rc = write_text(x->out, "metrics.json", j2, err);
            free(j2);
        }
    }
    if (rc == 0)
        rc = write_csvs(x, ev, y_pred_all, err);
    if (rc == 0)
        rc = evaluate_write_report_html(x, ev, report, err);
    if (rc == 0 && ev->has_screening)
        rc = evaluate_store_threshold(x, ev, err);
    else if (rc == 0 && *x->keys.set_threshold)
        rc = rb_fail(err, "give positive_class (a model with more than two classes has no screening class)",
                     "evaluate: set_threshold: no screening class, no threshold to store");
    if (rc == 0) { /* the marker last: the folder is finished */
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "models", x->models);
        cJSON_AddStringToObject(f, "data", x->data);
        json_add_exact_number(f, "images", (double)x->counts[0]);
        json_add_exact_number(f, "unreadable", (double)x->counts[1]);
        rc = job_marker_write(x->out, "evaluate", f, err);
    }
    return rc;
}

/* The classification report, the confusion matrix, the screening line or the one-vs-rest
 * AUCs, the time and rate, and where report.html is. */
static void print_report(const eval_ctx *x, const metrics_eval *ev, const char *report)
{
    int k = x->k;
    if (ev->has_screening) {
        char t[32];
        evaluate_fmt4(t, sizeof t, ev->screening.threshold);
        printf("\nThreshold %s: %s positive when its probability >= %s (%s)\nClassification Report:\n%s\n",
               x->thr.rule, x->tm.class_names[x->positive], t, x->thr.source, report);
    } else
        printf("\nClassification Report:\n%s\n", report);
    printf("Confusion matrix (rows: true, columns: predicted):\n");
    metrics_confusion_text(stdout, NULL, 0, ev->confusion, k, (const char *const *)x->tm.class_names);
    printf("\n");
    if (ev->has_screening)
        print_screening(x, ev);
    if (k > 2 || !ev->has_screening) {
        printf("ROC AUC one-vs-rest:");
        for (int i = 0; i < k; i++)
            printf(" %s %.4f", x->tm.class_names[i], ev->auc_ovr[i]);
        printf("; macro %.4f, weighted %.4f\n", ev->auc_macro, ev->auc_weighted);
    }
    if (x->nstress) {
        printf("\nStress test (%s positive when its probability >= %.4f; seed %lld):\n", x->tm.class_names[x->positive],
               x->thr.value, (long long)x->keys.seed);
        printf("  %-11s %8s %10s %8s %12s %12s\n", "shift", "severity", "parameter", "AUC", "sensitivity", "specificity");
        for (int i = 0; i < x->nstress; i++) {
            const eval_stress_row *r = &x->stress[i];
            char a[32], se[32], sp[32];
            evaluate_fmt4(a, sizeof a, r->auc);
            evaluate_fmt4(se, sizeof se, r->sensitivity);
            evaluate_fmt4(sp, sizeof sp, r->specificity);
            printf("  %-11s %8d %10.4g %8s %12s %12s\n", r->shift < 0 ? "none" : rb_shift_name((rb_shift)r->shift),
                   r->severity, r->shift < 0 ? 0.0 : r->parameter, a, se, sp);
        }
    }
    printf("\nevaluated %lld images (%lld unreadable) in %.1f s, %.0f images/s on %d rank(s)\n",
           (long long)(x->counts[0]), (long long)x->counts[1], x->seconds,
           x->seconds > 0 ? (double)x->counts[0] / x->seconds : 0.0, x->w.size);
    if (x->counts[1])
        printf("unreadable images: %s/errors.csv\n", x->out);
    printf("report: %s/report.html\n", x->out);
    fflush(stdout);
}

int evaluate_report(eval_ctx *x, rb_error *err)
{
    int32_t *y_pred_all = malloc((size_t)(x->n ? x->n : 1) * sizeof *y_pred_all);
    if (!y_pred_all)
        return rb_fail(err, NULL, "out of memory for %lld records", (long long)x->n);
    metrics_eval ev;
    if (compute_metrics(x, &ev, y_pred_all, err) < 0) {
        free(y_pred_all);
        return -1;
    }
    char *report = classification_report_text(x, &ev);
    char *json = report ? metrics_json_text(x, &ev) : NULL;
    int rc = report && json ? write_files(x, &ev, y_pred_all, report, json, err) : rb_fail(err, NULL, "out of memory");
    if (rc == 0)
        print_report(x, &ev, report);
    free(report);
    free(json);
    free(y_pred_all);
    metrics_eval_free(&ev);
    return rc;
}
