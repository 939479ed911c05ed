/* radbatch evaluate, step 7 (docs/evaluate.md "report.html"): one self-contained page
 * (io/report_html.h) with the models, data and counts, the metrics with their bootstrap
 * intervals, the per-class table and classification report, the confusion-matrix heatmap
 * and ROC curve, the training curves of history.csv, the model card and the errors. */
#include "csv.h"
#include "evaluate.h"
#include "fsutil.h"
#include "report_html.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* history.csv -> columns by name; NaN for empty cells. Returns rows, or -1. */
typedef struct history {
    int64_t n;
    double *epoch, *loss, *val_loss, *acc, *val_acc, *val_auc;
} history;

static void history_free(history *h)
{
    free(h->epoch);
    free(h->loss);
    free(h->val_loss);
    free(h->acc);
    free(h->val_acc);
    free(h->val_auc);
    memset(h, 0, sizeof *h);
}

static int history_read(const char *path, history *h)
{
    memset(h, 0, sizeof *h);
    uint8_t *buf;
    size_t len;
    rb_error e;
    if (fs_read_file(path, 64u << 20, &buf, &len, &e) < 0)
        return -1;
    char *text = realloc(buf, len + 1);
    if (!text) {
        free(buf);
        return -1;
    }
    text[len] = '\0';
    int64_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    size_t cap = (size_t)lines + 1;
    double **cols[6] = {&h->epoch, &h->loss, &h->val_loss, &h->acc, &h->val_acc, &h->val_auc};
    static const char *want[6] = {"epoch", "loss", "val_loss", "accuracy", "val_accuracy", "val_auc"};
    int where[6] = {-1, -1, -1, -1, -1, -1};
    for (int c = 0; c < 6; c++)
        *cols[c] = malloc(cap * sizeof(double));
    int rc = 0, header = 1;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line && rc == 0; line = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r')
            line[--l] = '\0';
        if (!l)
            continue;
        char *f[64];
        int nf = csv_split_line(line, f, 64);
        if (header) {
            for (int i = 0; i < nf; i++)
                for (int c = 0; c < 6; c++)
                    if (!strcmp(f[i], want[c]))
                        where[c] = i;
            header = 0;
            if (where[0] < 0 || where[1] < 0)
                rc = -1;
            continue;
        }
        if ((size_t)h->n >= cap)
            break;
        for (int c = 0; c < 6; c++) {
            double v = NAN;
            if (where[c] >= 0 && where[c] < nf && *f[where[c]]) {
                char *end;
                v = strtod(f[where[c]], &end);
                if (end == f[where[c]])
                    v = NAN;
            }
            (*cols[c])[h->n] = v;
        }
        h->n++;
    }
    free(text);
    for (int c = 0; c < 6; c++)
        if (!*cols[c])
            rc = -1;
    if (rc < 0 || h->n == 0) {
        history_free(h);
        return -1;
    }
    /* epochs restart in a fine-tuning stage on some runs: plot the row number then */
    for (int64_t i = 1; i < h->n; i++)
        if (!(h->epoch[i] > h->epoch[i - 1])) {
            for (int64_t j = 0; j < h->n; j++)
                h->epoch[j] = (double)(j + 1);
            break;
        }
    return 0;
}

static char *history_path(const eval_ctx *x)
{
    const char *h = x->keys.history;
    if (!strcmp(h, "none"))
        return NULL;
    if (*h)
        return strdup(h);
    char *dir = strdup(x->tm.path[0]);
    char *slash = strrchr(dir, '/');
    char *p;
    if (slash) {
        *slash = '\0';
        p = fs_join(dir, "history.csv");
    } else
        p = strdup("history.csv");
    free(dir);
    if (p && !fs_is_file(p)) {
        free(p);
        return NULL;
    }
    return p;
}

/* The models, data, counts and TTA. */
static void html_overview(html_doc *d, const eval_ctx *x)
{
    rb_buf mlist = {0};
    for (int i = 0; i < x->tm.nmembers; i++)
        rb_buf_printf(&mlist, "%s%s", i ? ", " : "", x->tm.path[i]);
    rb_buf_put(&mlist, "", 1);
    html_para(d, "Model%s: %s", x->tm.nmembers > 1 ? "s (ensemble, probabilities averaged)" : "",
              mlist.data ? (const char *)mlist.data : "");
    rb_buf_free(&mlist);
    if (x->is_shards)
        html_para(d, "Data: %s, split %s (shards).", x->data, x->keys.split);
    else
        html_para(d, "Data: %s (image folders).", x->data);
    int64_t tta = x->keys.tta;
    html_para(d, "Records: %lld; evaluated: %lld; unlabelled: %lld; unreadable: %lld. Test-time augmentation: %s.",
              (long long)x->counts[3], (long long)(x->counts[0] - x->counts[2]), (long long)x->counts[2],
              (long long)x->counts[1], tta == 0 ? "none" : tta == 1 ? "flip (2 views)" : "flip and shifts (6 views)");
}

/* Accuracy, the screening metrics with their intervals and the threshold, the averages. */
static void html_metrics(html_doc *d, const eval_ctx *x, const metrics_eval *ev)
{
    char **names = x->tm.class_names;
    int k = x->k;
    html_h2(d, "Metrics");
    const char *hdr[3] = {"metric", "value", "95% CI (bootstrap)"};
    char cell[16][3][64];
    const char *cells[16 * 3];
    int rows = 0;
    const metrics_bootstrap *b = ev->has_bootstrap ? &ev->bootstrap : NULL;
#define ROW(name, v, ci)                                                                                             \
    do {                                                                                                             \
        snprintf(cell[rows][0], 64, "%s", name);                                                                     \
        evaluate_fmt4(cell[rows][1], 64, v);                                                                         \
        if (ci)                                                                                                      \
            evaluate_fmt_ci(cell[rows][2], 64, ci);                                                                  \
        else                                                                                                         \
            cell[rows][2][0] = '\0';                                                                                 \
        rows++;                                                                                                      \
    } while (0)
    ROW("accuracy", ev->cls.accuracy, b ? &b->accuracy : NULL);
    if (ev->has_screening) {
        const metrics_screening *s = &ev->screening;
        ROW("sensitivity (recall)", s->sensitivity, b ? &b->sensitivity : NULL);
        ROW("specificity", s->specificity, b ? &b->specificity : NULL);
        ROW("PPV (precision)", s->ppv, NULL);
        ROW("NPV", s->npv, NULL);
        ROW("F1", s->f1, NULL);
        ROW("MCC", s->mcc, NULL);
        ROW("balanced accuracy", s->balanced_accuracy, NULL);
        ROW("ROC AUC", ev->roc.auc, b ? &b->auc : NULL);
        ROW("threshold", s->threshold, NULL);
    }
    ROW("macro avg F1", ev->cls.macro.f1, NULL);
    ROW("weighted avg F1", ev->cls.weighted.f1, NULL);
    if (k > 2 || !ev->has_screening) {
        ROW("AUC one-vs-rest, macro", ev->auc_macro, NULL);
        ROW("AUC one-vs-rest, weighted", ev->auc_weighted, NULL);
    }
#undef ROW
    int nc = b && ev->has_screening ? 3 : 2; /* intervals only with screening and bootstrap */
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < nc; j++)
            cells[i * nc + j] = cell[i][j];
    html_table(d, nc, hdr, rows, cells);
    if (ev->has_screening) {
        const metrics_screening *s = &ev->screening;
        html_para(d, "Screening class %s: positive when its probability >= %.4f (threshold %s: %s). tp %lld, fp %lld, "
                     "tn %lld, fn %lld.",
                  names[x->positive], s->threshold, x->thr.rule, x->thr.source, (long long)s->tp,
                  (long long)s->fp, (long long)s->tn, (long long)s->fn);
        if (x->thr.same_split)
            html_para(d, "Warning: %s.", x->thr.warning);
        if (b)
            html_para(d, "Confidence intervals: percentile bootstrap, %lld resamples, seed %llu.",
                      (long long)b->resamples, (unsigned long long)b->seed);
    }
}

/* Precision, recall, F1, support and AUC of each class, and the classification report. */
static void html_per_class(html_doc *d, const eval_ctx *x, const metrics_eval *ev, const char *report_text)
{
    char **names = x->tm.class_names;
    int k = x->k;
    html_h2(d, "Per class");
    {
        const char *ph[6] = {"class", "precision", "recall", "f1-score", "support", "AUC (one-vs-rest)"};
        int nr = k + 2;
        char(*pc)[6][48] = calloc((size_t)nr, sizeof *pc);
        const char **pcells = calloc((size_t)nr * 6, sizeof *pcells);
        if (pc && pcells) {
            for (int i = 0; i < nr; i++) {
                const metrics_prf *p = i < k ? &ev->cls.per_class[i] : i == k ? &ev->cls.macro : &ev->cls.weighted;
                snprintf(pc[i][0], 48, "%s", i < k ? names[i] : i == k ? "macro avg" : "weighted avg");
                snprintf(pc[i][1], 48, "%.4f", p->precision);
                snprintf(pc[i][2], 48, "%.4f", p->recall);
                snprintf(pc[i][3], 48, "%.4f", p->f1);
                snprintf(pc[i][4], 48, "%lld", (long long)p->support);
                evaluate_fmt4(pc[i][5], 48, i < k ? (ev->auc_ovr ? ev->auc_ovr[i] : NAN) : i == k ? ev->auc_macro
                                                                                          : ev->auc_weighted);
                for (int j = 0; j < 6; j++)
                    pcells[i * 6 + j] = pc[i][j];
            }
            html_table(d, 6, ph, nr, pcells);
        }
        free(pc);
        free(pcells);
    }
    html_para(d, "Classification report (scikit-learn's layout):");
    html_pre(d, report_text);
}

/* The confusion-matrix heatmap and, with a screening class, the ROC curve with the
 * operating point of the threshold. */
static void html_plots(html_doc *d, const eval_ctx *x, const metrics_eval *ev)
{
    char **names = x->tm.class_names;
    int k = x->k;
    html_h2(d, ev->has_screening ? "Confusion matrix and ROC curve" : "Confusion matrix");
    html_svg_confusion(d, ev->confusion, k, (const char *const *)names);
    if (ev->has_screening) {
        const metrics_screening *s = &ev->screening;
        double op_fpr = s->tn + s->fp > 0 ? (double)s->fp / (double)(s->tn + s->fp) : NAN;
        double op_tpr = s->tp + s->fn > 0 ? (double)s->tp / (double)(s->tp + s->fn) : NAN;
        html_svg_roc(d, ev->roc.fpr, ev->roc.tpr, ev->roc.n_points, ev->roc.auc, op_fpr, op_tpr);
    }
}

/* The screening class's reliability diagram with its ECE and Brier score. */
static void html_calibration(html_doc *d, const eval_ctx *x, const metrics_eval *ev)
{
    if (!ev->has_calibration)
        return;
    const metrics_calibration *c = &ev->calibration;
    char title[300], e[32], b[32];
    html_h2(d, "Calibration");
    evaluate_fmt4(e, sizeof e, c->ece);
    evaluate_fmt4(b, sizeof b, c->brier);
    html_para(d, "How far the probability of %s can be taken at its word: the images are put in 10 equal-width bins "
                 "of that probability; a calibrated model's bars reach the diagonal. Expected calibration error "
                 "(ECE, the bins' |observed rate - mean predicted| weighted by their share of the images) %s, "
                 "Brier score (mean squared difference between the probability and the 0/1 outcome) %s.",
              x->tm.class_names[x->positive], e, b);
    snprintf(title, sizeof title, "Reliability diagram: P(%s)", x->tm.class_names[x->positive]);
    html_svg_reliability(d, title, METRICS_CALIB_BINS, c->count, c->mean_predicted, c->observed, c->ece, c->brier);
}

/* The stress test: AUC, sensitivity and specificity against severity, one line per shift
 * (severity 0 = the clean score), and the table. */
static void html_stress(html_doc *d, const eval_ctx *x)
{
    if (!x->nstress)
        return;
    html_h2(d, "Stress test");
    html_para(d, "The data re-scored under seeded shifts that differ between hospitals and scanners (docs/evaluate.md "
                 "\"Stress test\"); severity 0 is the clean score, %s positive when its probability >= %.4f, seed %lld.",
              x->tm.class_names[x->positive], x->thr.value, (long long)x->keys.seed);
    double sev[RB_SHIFT_MAX_SEVERITY + 1];
    for (int i = 0; i <= RB_SHIFT_MAX_SEVERITY; i++)
        sev[i] = i;
    double ys[3][RB_SHIFT_COUNT][RB_SHIFT_MAX_SEVERITY + 1];
    const char *names[RB_SHIFT_COUNT];
    const double *ptr[3][RB_SHIFT_COUNT];
    const eval_stress_row *clean = &x->stress[0];
    for (int s = 0; s < RB_SHIFT_COUNT; s++) {
        names[s] = rb_shift_name((rb_shift)s);
        for (int m = 0; m < 3; m++) {
            for (int v = 0; v <= RB_SHIFT_MAX_SEVERITY; v++)
                ys[m][s][v] = NAN;
            ys[m][s][0] = m == 0 ? clean->auc : m == 1 ? clean->sensitivity : clean->specificity;
            ptr[m][s] = ys[m][s];
        }
    }
    for (int i = 1; i < x->nstress; i++) {
        const eval_stress_row *r = &x->stress[i];
        ys[0][r->shift][r->severity] = r->auc;
        ys[1][r->shift][r->severity] = r->sensitivity;
        ys[2][r->shift][r->severity] = r->specificity;
    }
    static const char *titles[3] = {"Stress test: ROC AUC", "Stress test: sensitivity", "Stress test: specificity"};
    for (int m = 0; m < 3; m++)
        html_svg_lines(d, titles[m], "severity", RB_SHIFT_COUNT, names, sev, ptr[m], RB_SHIFT_MAX_SEVERITY + 1);
    const char *hdr[6] = {"shift", "severity", "parameter", "ROC AUC", "sensitivity", "specificity"};
    char(*cell)[6][64] = calloc((size_t)x->nstress, sizeof *cell);
    const char **cells = calloc((size_t)x->nstress * 6, sizeof *cells);
    if (cell && cells) {
        for (int i = 0; i < x->nstress; i++) {
            const eval_stress_row *r = &x->stress[i];
            snprintf(cell[i][0], 64, "%s", r->shift < 0 ? "none" : rb_shift_name((rb_shift)r->shift));
            snprintf(cell[i][1], 64, "%d", r->severity);
            if (r->shift < 0)
                cell[i][2][0] = 0;
            else
                snprintf(cell[i][2], 64, "%s %g", rb_shift_parameter_name((rb_shift)r->shift), r->parameter);
            evaluate_fmt4(cell[i][3], 64, r->auc);
            evaluate_fmt4(cell[i][4], 64, r->sensitivity);
            evaluate_fmt4(cell[i][5], 64, r->specificity);
            for (int j = 0; j < 6; j++)
                cells[i * 6 + j] = cell[i][j];
        }
        html_table(d, 6, hdr, x->nstress, cells);
    }
    free(cell);
    free(cells);
}

/* Loss and accuracy curves of history.csv, when there is one. */
static void html_training_curves(html_doc *d, const eval_ctx *x)
{
    char *hp = history_path(x);
    history h;
    if (hp && history_read(hp, &h) == 0) {
        html_h2(d, "Training curves");
        html_para(d, "From %s.", hp);
        const char *ln[2] = {"loss", "val_loss"};
        const double *ly[2] = {h.loss, h.val_loss};
        html_svg_lines(d, "Loss", "epoch", 2, ln, h.epoch, ly, h.n);
        const char *an[3] = {"accuracy", "val_accuracy", "val_auc"};
        const double *ay[3] = {h.acc, h.val_acc, h.val_auc};
        int na = 3;
        int any_auc = 0;
        for (int64_t i = 0; i < h.n; i++)
            any_auc |= !isnan(h.val_auc[i]);
        if (!any_auc)
            na = 2;
        html_svg_lines(d, na == 3 ? "Accuracy and validation AUC" : "Accuracy", "epoch", na, an, h.epoch, ay, h.n);
        history_free(&h);
    } else if (hp)
        html_para(d, "Training curves: %s could not be read.", hp);
    free(hp);
}

static void html_model_card(html_doc *d, const eval_ctx *x)
{
    html_h2(d, "Model card");
    if (x->tm.card) {
        cJSON *card = cJSON_Parse(x->tm.card);
        char *pretty = card ? cJSON_Print(card) : NULL;
        html_pre(d, pretty ? pretty : x->tm.card);
        free(pretty);
        cJSON_Delete(card);
    } else
        html_para(d, "The model file holds no model card.");
}

/* The count and the first MAX_LISTED_ERRORS rows of errors.csv. */
static void html_errors(html_doc *d, const eval_ctx *x)
{
    html_h2(d, "Errors");
    if (x->all.nerr == 0)
        html_para(d, "None: every image was read.");
    else {
        int64_t shown = x->all.nerr < MAX_LISTED_ERRORS ? x->all.nerr : MAX_LISTED_ERRORS;
        const char **ec = calloc((size_t)shown * 2, sizeof *ec);
        for (int64_t i = 0; ec && i < shown; i++) {
            ec[i * 2] = x->all.err_path[i];
            ec[i * 2 + 1] = x->all.err_reason[i];
        }
        html_para(d, "%lld file(s) or folder(s) could not be used%s; errors.csv lists them all.",
                  (long long)x->all.nerr, x->all.nerr > shown ? " (the first 200 below)" : "");
        const char *eh[2] = {"path", "reason"};
        html_table(d, 2, eh, ec ? (int)shown : 0, ec);
        free(ec);
    }
}

int evaluate_write_report_html(const eval_ctx *x, const metrics_eval *ev, const char *report_text, rb_error *err)
{
    char title[512];
    const char *mname = strrchr(x->tm.path[0], '/');
    snprintf(title, sizeof title, "radbatch evaluate: %s%s", mname ? mname + 1 : x->tm.path[0],
             x->tm.nmembers > 1 ? " (ensemble)" : "");
    html_doc *d = html_begin(title);
    if (!d)
        return rb_fail(err, NULL, "out of memory building report.html");
    html_overview(d, x);
    html_metrics(d, x, ev);
    html_per_class(d, x, ev, report_text);
    html_plots(d, x, ev);
    html_calibration(d, x, ev);
    html_stress(d, x);
    /* the galleries read records again: the dataset handle is not part of the report's state */
    if (evaluate_html_galleries(d, (eval_ctx *)x, err) < 0) {
        html_discard(d);
        return -1;
    }
    html_training_curves(d, x);
    html_model_card(d, x);
    html_errors(d, x);
    char *p = fs_join(x->out, "report.html");
    int rc = html_end_write(d, p, err);
    free(p);
    return rc;
}
