/* Self-contained HTML reports: one file, inline CSS and SVG, no script, nothing fetched, so
 * it opens offline in any browser and can be mailed or archived with the run. Used by
 * evaluate (metrics, confusion matrix, ROC, training curves, model card, errors) and infer
 * (class counts, probability histogram, flagged images, errors). Text is HTML-escaped. */
#ifndef REPORT_HTML_H
#define REPORT_HTML_H

#include "rb_error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct html_doc html_doc;

html_doc *html_begin(const char *title);               /* NULL on out of memory */
void html_h2(html_doc *d, const char *text);
void html_para(html_doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void html_pre(html_doc *d, const char *text);            /* preformatted (reports, cards) */
/* A table: header[ncols], cells[nrows * ncols] (row-major); NULL cells print empty. */
void html_table(html_doc *d, int ncols, const char *const *header, int nrows, const char *const *cells);
/* Confusion-matrix heatmap (rows true, columns predicted) with counts in the cells. */
void html_svg_confusion(html_doc *d, const int64_t *cm, int k, const char *const *names);
/* ROC curve with the diagonal, AUC in the legend; optional operating point (NaN = none). */
void html_svg_roc(html_doc *d, const double *fpr, const double *tpr, int64_t n, double auc, double op_fpr,
                  double op_tpr);
/* Reliability diagram of nbins equal-width bins of [0, 1]: a bar per non-empty bin up to its
 * observed rate, the mean predicted probability against the observed rate as a line of
 * points, the diagonal of perfect calibration, each bin's count, ECE and Brier score in
 * the legend. mean_predicted / observed are NaN for empty bins. */
void html_svg_reliability(html_doc *d, const char *title, int nbins, const int64_t *count,
                          const double *mean_predicted, const double *observed, double ece, double brier);
/* Line chart of nseries series over x[n] (training curves: loss/val_loss, accuracy/...). */
void html_svg_lines(html_doc *d, const char *title, const char *xlabel, int nseries,
                    const char *const *names, const double *x, const double *const *y, int64_t n);
/* Histogram of nbins counts over [lo, hi], optional vertical marker (NaN = none). */
void html_svg_histogram(html_doc *d, const char *title, const char *xlabel, const int64_t *counts, int nbins,
                        double lo, double hi, double marker);
/* A figure of nimg PNG images side by side (inline data: URIs, shown `width` CSS pixels wide,
 * alt texts alt[]) over a caption of ncap lines (Grad-CAM galleries). */
void html_figure_png(html_doc *d, int nimg, const uint8_t *const *png, const size_t *len,
                     const char *const *alt, int width, int ncap, const char *const *caption);
/* Drop an unfinished report. */
void html_discard(html_doc *d);
/* Finish and write to path (temp + rename); frees d in every case. */
int html_end_write(html_doc *d, const char *path, rb_error *err);

#endif
