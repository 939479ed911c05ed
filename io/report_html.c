/* Self-contained HTML reports (report_html.h): the page is built in memory, every text
 * HTML-escaped, plots drawn as inline SVG with fixed geometry and numbers printed with
 * fixed formats, so the same inputs give the same bytes. */
#include "report_html.h"
#include "fsutil.h"
#include "rb_buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct html_doc {
    rb_buf b;
    int nfig; /* figures so far, for unique SVG ids */
};

static const char *const PALETTE[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define NPALETTE ((int)(sizeof PALETTE / sizeof PALETTE[0]))

static const char CSS[] =
    "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;"
    "color:#1f2328;background:#fff;max-width:1180px;margin:24px auto;padding:0 20px;line-height:1.45}\n"
    "h1{font-size:1.6em;border-bottom:2px solid #1f77b4;padding-bottom:6px}\n"
    "h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #d0d7de;padding-bottom:4px}\n"
    "table{border-collapse:collapse;margin:8px 0 16px;font-size:0.92em}\n"
    "th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left}\n"
    "th{background:#f3f6fa;font-weight:600}\n"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}\n"
    "tr:nth-child(even) td{background:#fafbfc}\n"
    "pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px 12px;"
    "overflow:auto;font-size:0.85em;max-height:560px;tab-size:4;white-space:pre-wrap;overflow-wrap:anywhere}\n"
    "figure{display:inline-block;vertical-align:top;margin:8px 18px 12px 0}\n"
    "figure svg{max-width:100%;height:auto}\n"
    "figcaption{font-size:0.9em;color:#57606a;text-align:center}\n"
    "figure.img{max-width:340px}\n"
    "figure.img img{image-rendering:auto;margin:0 2px;border:1px solid #d0d7de}\n"
    "figure.img figcaption{text-align:left;overflow-wrap:anywhere}\n"
    "p{margin:6px 0}\n"
    "footer{margin-top:3em;color:#8c959f;font-size:0.8em}\n";

/* ------------------------------------------------------------------------- text helpers */

static void put(html_doc *d, const char *s) { rb_buf_put(&d->b, s, strlen(s)); }

__attribute__((format(printf, 2, 3))) static void putf(html_doc *d, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        d->b.failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        rb_buf_put(&d->b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        d->b.failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    rb_buf_put(&d->b, big, (size_t)n);
    free(big);
}

/* Escaped text: & < > " ' (safe in element content and in quoted attributes). */
static void put_esc(html_doc *d, const char *s)
{
    if (!s)
        return;
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: break;
        }
        if (rep) {
            rb_buf_put(&d->b, run, (size_t)(s - run));
            put(d, rep);
            run = s + 1;
        }
    }
    rb_buf_put(&d->b, run, (size_t)(s - run));
}

/* A number as it reads best in a label: up to `dec` decimals, trailing zeros dropped. */
static void fmt_num(char *out, size_t cap, double v, int dec)
{
    if (isnan(v)) {
        snprintf(out, cap, "n/a");
        return;
    }
    if (isinf(v)) {
        snprintf(out, cap, v > 0 ? "inf" : "-inf");
        return;
    }
    double a = fabs(v);
    if (a != 0 && (a >= 1e6 || a < 1e-4)) {
        snprintf(out, cap, "%.3g", v);
        return;
    }
    snprintf(out, cap, "%.*f", dec, v);
    if (strchr(out, '.')) {
        char *e = out + strlen(out) - 1;
        while (*e == '0')
            *e-- = '\0';
        if (*e == '.')
            *e = '\0';
    }
    if (!strcmp(out, "-0"))
        snprintf(out, cap, "0");
}

/* Whether a table cell reads as a number (right-aligned): "12", "0.93", "-1e-3", "45.2%",
 * "0.91 (0.88-0.94)". */
static int looks_numeric(const char *s)
{
    if (!s || !*s)
        return 0;
    char *end;
    strtod(s, &end);
    if (end == s)
        return 0;
    return *end == '\0' || *end == '%' || *end == ' ';
}

/* Round tick spacing (1, 2 or 5 times a power of ten) giving about `want` intervals. */
static double nice_step(double span, int want)
{
    if (!(span > 0) || !isfinite(span))
        return 1;
    double raw = span / want;
    double p = pow(10, floor(log10(raw)));
    double f = raw / p;
    double m = f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10;
    return m * p;
}

static int step_decimals(double step)
{
    int dec = 0;
    while (dec < 8 && fabs(step * pow(10, dec) - round(step * pow(10, dec))) > 1e-9)
        dec++;
    return dec;
}

/* --------------------------------------------------------------------------- document */

html_doc *html_begin(const char *title)
{
    html_doc *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    put(d, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>");
    put_esc(d, title);
    put(d, "</title>\n<style>\n");
    put(d, CSS);
    put(d, "</style>\n</head>\n<body>\n<h1>");
    put_esc(d, title);
    put(d, "</h1>\n");
    if (d->b.failed) {
        rb_buf_free(&d->b);
        free(d);
        return NULL;
    }
    return d;
}

void html_h2(html_doc *d, const char *text)
{
    if (!d)
        return;
    put(d, "<h2>");
    put_esc(d, text);
    put(d, "</h2>\n");
}

void html_para(html_doc *d, const char *fmt, ...)
{
    if (!d)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!s) {
        d->b.failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    put(d, "<p>");
    put_esc(d, s);
    put(d, "</p>\n");
    free(s);
}

void html_pre(html_doc *d, const char *text)
{
    if (!d)
        return;
    put(d, "<pre>");
    put_esc(d, text);
    put(d, "</pre>\n");
}

void html_table(html_doc *d, int ncols, const char *const *header, int nrows, const char *const *cells)
{
    if (!d || ncols <= 0)
        return;
    put(d, "<table>\n");
    if (header) {
        put(d, "<thead><tr>");
        for (int j = 0; j < ncols; j++) {
            put(d, "<th>");
            put_esc(d, header[j]);
            put(d, "</th>");
        }
        put(d, "</tr></thead>\n");
    }
    put(d, "<tbody>\n");
    for (int i = 0; i < nrows; i++) {
        put(d, "<tr>");
        for (int j = 0; j < ncols; j++) {
            const char *c = cells ? cells[(size_t)i * ncols + j] : NULL;
            put(d, j > 0 && looks_numeric(c) ? "<td class=\"num\">" : "<td>");
            put_esc(d, c);
            put(d, "</td>");
        }
        put(d, "</tr>\n");
    }
    put(d, "</tbody>\n</table>\n");
}

/* ------------------------------------------------------------------------------- plots */

static void figure_begin(html_doc *d, int w, int h, const char *label)
{
    d->nfig++;
    putf(d, "<figure>\n<svg width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "role=\"img\" aria-label=\"",
         w, h, w, h);
    put_esc(d, label);
    put(d, "\" font-family=\"system-ui,'DejaVu Sans',Arial,sans-serif\" font-size=\"12\">\n");
    putf(d, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", w, h);
}

static void figure_end(html_doc *d, const char *caption)
{
    put(d, "</svg>\n");
    if (caption && *caption) {
        put(d, "<figcaption>");
        put_esc(d, caption);
        put(d, "</figcaption>\n");
    }
    put(d, "</figure>\n");
}

static void svg_text(html_doc *d, double x, double y, const char *anchor, const char *extra, const char *text)
{
    putf(d, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s%s>", x, y, anchor, extra ? " " : "", extra ? extra : "");
    put_esc(d, text);
    put(d, "</text>\n");
}

/* Plot frame: area [x0, x0+w] x [y0, y0+h] (y grows down), axis ranges, grid, ticks. */
typedef struct plot_frame {
    double x0, y0, w, h;
    double xmin, xmax, ymin, ymax;
} plot_frame;

static double px_x(const plot_frame *f, double v) { return f->x0 + (v - f->xmin) / (f->xmax - f->xmin) * f->w; }
static double px_y(const plot_frame *f, double v) { return f->y0 + f->h - (v - f->ymin) / (f->ymax - f->ymin) * f->h; }

static void frame_draw(html_doc *d, const plot_frame *f, double xstep, double ystep, const char *xlabel,
                       const char *ylabel)
{
    char t[64];
    int xdec = step_decimals(xstep), ydec = step_decimals(ystep);
    put(d, "<g stroke=\"#e6e9ed\" stroke-width=\"1\">\n");
    for (double v = ceil(f->ymin / ystep - 1e-9) * ystep; v <= f->ymax + ystep * 1e-9; v += ystep)
        putf(d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", f->x0, px_y(f, v), f->x0 + f->w,
             px_y(f, v));
    for (double v = ceil(f->xmin / xstep - 1e-9) * xstep; v <= f->xmax + xstep * 1e-9; v += xstep)
        putf(d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", px_x(f, v), f->y0, px_x(f, v),
             f->y0 + f->h);
    put(d, "</g>\n");
    putf(d, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#57606a\"/>\n", f->x0,
         f->y0, f->w, f->h);
    put(d, "<g fill=\"#57606a\" font-size=\"11\">\n");
    for (double v = ceil(f->ymin / ystep - 1e-9) * ystep; v <= f->ymax + ystep * 1e-9; v += ystep) {
        fmt_num(t, sizeof t, fabs(v) < ystep * 1e-6 ? 0 : v, ydec);
        svg_text(d, f->x0 - 6, px_y(f, v) + 4, "end", NULL, t);
    }
    for (double v = ceil(f->xmin / xstep - 1e-9) * xstep; v <= f->xmax + xstep * 1e-9; v += xstep) {
        fmt_num(t, sizeof t, fabs(v) < xstep * 1e-6 ? 0 : v, xdec);
        svg_text(d, px_x(f, v), f->y0 + f->h + 16, "middle", NULL, t);
    }
    put(d, "</g>\n");
    if (xlabel && *xlabel)
        svg_text(d, f->x0 + f->w / 2, f->y0 + f->h + 36, "middle", "font-size=\"13\"", xlabel);
    if (ylabel && *ylabel) {
        char tr[96];
        snprintf(tr, sizeof tr, "font-size=\"13\" transform=\"rotate(-90 %.1f %.1f)\"", f->x0 - 44, f->y0 + f->h / 2);
        svg_text(d, f->x0 - 44, f->y0 + f->h / 2, "middle", tr, ylabel);
    }
}

static void plot_title(html_doc *d, double x, const char *title)
{
    if (title && *title)
        svg_text(d, x, 22, "middle", "font-size=\"15\" font-weight=\"600\"", title);
}

/* Blues colormap (matplotlib's, 9 stops) at t in [0, 1]. */
static void blues(double t, int *r, int *g, int *b)
{
    static const int stops[9][3] = {{247, 251, 255}, {222, 235, 247}, {198, 219, 239}, {158, 202, 225}, {107, 174, 214},
                                    {66, 146, 198},  {33, 113, 181},  {8, 81, 156},     {8, 48, 107}};
    if (!(t > 0))
        t = 0;
    if (t > 1)
        t = 1;
    double p = t * 8;
    int i = (int)p;
    if (i >= 8)
        i = 7;
    double f = p - i;
    *r = (int)lround(stops[i][0] + f * (stops[i + 1][0] - stops[i][0]));
    *g = (int)lround(stops[i][1] + f * (stops[i + 1][1] - stops[i][1]));
    *b = (int)lround(stops[i][2] + f * (stops[i + 1][2] - stops[i][2]));
}

/* Approximate width in pixels of text at font size fs (for layout only). */
static double text_px(const char *s, double fs)
{
    int64_t n = 0;
    for (; s && *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            n++;
    return (double)n * fs * 0.6;
}

void html_svg_confusion(html_doc *d, const int64_t *cm, int k, const char *const *names)
{
    if (!d || k <= 0 || !cm)
        return;
    int cell = k <= 2 ? 130 : k <= 4 ? 100 : k <= 8 ? 64 : k <= 16 ? 40 : 24;
    double fs = cell >= 64 ? 16 : cell >= 40 ? 12 : 9;
    char **lab = calloc((size_t)k, sizeof *lab);
    if (!lab) {
        d->b.failed = 1;
        return;
    }
    double maxlab = 0;
    for (int i = 0; i < k; i++) {
        char dflt[24];
        snprintf(dflt, sizeof dflt, "%d", i);
        const char *n = names && names[i] ? names[i] : dflt;
        /* long names are shortened for the axes; the full names stay in the tables */
        lab[i] = strndup(n, 22);
        if (lab[i] && strlen(n) > 22)
            strcpy(lab[i] + 19, "...");
        double w = text_px(lab[i], 12);
        if (w > maxlab)
            maxlab = w;
    }
    double left = 50 + maxlab + 8, top = 48;
    double gw = (double)cell * k;
    /* predicted names under the grid: rotated when they do not fit a cell */
    int rot = maxlab > cell - 6;
    double bottom = rot ? maxlab * 0.75 + 50 : 58;
    double legend_w = 70;
    int W = (int)ceil(left + gw + legend_w + 10), H = (int)ceil(top + gw + bottom);
    if (W < 320)
        W = 320;
    figure_begin(d, W, H, "confusion matrix");
    plot_title(d, left + gw / 2, "Confusion matrix");
    int64_t vmax = 0;
    for (int i = 0; i < k * k; i++)
        if (cm[i] > vmax)
            vmax = cm[i];
    char t[64];
    for (int i = 0; i < k; i++) {
        int64_t row = 0;
        for (int j = 0; j < k; j++)
            row += cm[(size_t)i * k + j];
        for (int j = 0; j < k; j++) {
            int64_t v = cm[(size_t)i * k + j];
            double s = vmax > 0 ? (double)v / (double)vmax : 0;
            int r, g, b;
            blues(s, &r, &g, &b);
            double x = left + (double)j * cell, y = top + (double)i * cell;
            putf(d, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%d\" height=\"%d\" fill=\"#%02x%02x%02x\" stroke=\"#ffffff\">"
                    "<title>",
                 x, y, cell, cell, r, g, b);
            snprintf(t, sizeof t, "%lld", (long long)v);
            put_esc(d, names && names[i] ? names[i] : "?");
            put(d, " predicted as ");
            put_esc(d, names && names[j] ? names[j] : "?");
            putf(d, ": %s</title></rect>\n", t);
            const char *col = s > 0.55 ? "#ffffff" : "#1f2328";
            char attr[96];
            snprintf(attr, sizeof attr, "font-size=\"%.0f\" font-weight=\"600\" fill=\"%s\"", fs, col);
            int two = cell >= 64;
            svg_text(d, x + cell / 2.0, y + cell / 2.0 + (two ? -2 : fs * 0.35), "middle", attr, t);
            if (two) {
                double pct = row > 0 ? 100.0 * (double)v / (double)row : 0;
                snprintf(t, sizeof t, "%.1f%%", pct);
                snprintf(attr, sizeof attr, "font-size=\"11\" fill=\"%s\"", col);
                svg_text(d, x + cell / 2.0, y + cell / 2.0 + 15, "middle", attr, t);
            }
        }
    }
    put(d, "<g fill=\"#1f2328\" font-size=\"12\">\n");
    for (int i = 0; i < k; i++)
        svg_text(d, left - 8, top + (i + 0.5) * cell + 4, "end", NULL, lab[i] ? lab[i] : "");
    for (int j = 0; j < k; j++) {
        double x = left + (j + 0.5) * cell, y = top + gw + 18;
        if (rot) {
            char tr[96];
            snprintf(tr, sizeof tr, "transform=\"rotate(-45 %.1f %.1f)\"", x, y - 4);
            svg_text(d, x, y - 4, "end", tr, lab[j] ? lab[j] : "");
        } else
            svg_text(d, x, y, "middle", NULL, lab[j] ? lab[j] : "");
    }
    put(d, "</g>\n");
    svg_text(d, left + gw / 2, H - 12, "middle", "font-size=\"13\" font-weight=\"600\"", "Predicted");
    char tr[96];
    snprintf(tr, sizeof tr, "font-size=\"13\" font-weight=\"600\" transform=\"rotate(-90 18 %.1f)\"", top + gw / 2);
    svg_text(d, 18, top + gw / 2, "middle", tr, "True");
    /* colour bar */
    double bx = left + gw + 16, bh = gw;
    putf(d, "<defs><linearGradient id=\"rb-cmap-%d\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">", d->nfig);
    for (int s = 0; s <= 8; s++) {
        int r, g, b;
        blues(s / 8.0, &r, &g, &b);
        putf(d, "<stop offset=\"%.3f\" stop-color=\"#%02x%02x%02x\"/>", s / 8.0, r, g, b);
    }
    put(d, "</linearGradient></defs>\n");
    putf(d, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"%.1f\" fill=\"url(#rb-cmap-%d)\"/>\n", bx, top, bh,
         d->nfig);
    putf(d, "<rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"%.1f\" fill=\"none\" stroke=\"#8c959f\"/>\n", bx, top,
         bh);
    snprintf(t, sizeof t, "%lld", (long long)vmax);
    svg_text(d, bx + 18, top + 10, "start", "font-size=\"11\" fill=\"#57606a\"", t);
    svg_text(d, bx + 18, top + bh, "start", "font-size=\"11\" fill=\"#57606a\"", "0");
    figure_end(d, "rows: true class; % of the row");
    for (int i = 0; i < k; i++)
        free(lab[i]);
    free(lab);
}

void html_svg_roc(html_doc *d, const double *fpr, const double *tpr, int64_t n, double auc, double op_fpr,
                  double op_tpr)
{
    if (!d)
        return;
    int W = 460, H = 440;
    plot_frame f = {.x0 = 70, .y0 = 40, .w = 360, .h = 340, .xmin = 0, .xmax = 1, .ymin = 0, .ymax = 1};
    figure_begin(d, W, H, "ROC curve");
    plot_title(d, f.x0 + f.w / 2, "ROC curve");
    frame_draw(d, &f, 0.2, 0.2, "False positive rate (1 - specificity)", "True positive rate (sensitivity)");
    putf(d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#8c959f\" stroke-dasharray=\"5,4\"/>\n",
         px_x(&f, 0), px_y(&f, 0), px_x(&f, 1), px_y(&f, 1));
    int64_t drawn = 0;
    put(d, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2.2\" stroke-linejoin=\"round\" points=\"");
    for (int64_t i = 0; fpr && tpr && i < n; i++) {
        if (!isfinite(fpr[i]) || !isfinite(tpr[i]))
            continue;
        putf(d, "%s%.2f,%.2f", drawn ? " " : "", px_x(&f, fpr[i]), px_y(&f, tpr[i]));
        drawn++;
    }
    put(d, "\"/>\n");
    char t[96], a[32];
    if (drawn == 0)
        svg_text(d, f.x0 + f.w / 2, f.y0 + f.h / 2, "middle", "fill=\"#d62728\"",
                 "undefined: the data hold only one class");
    int have_op = isfinite(op_fpr) && isfinite(op_tpr);
    if (have_op) {
        double cx = px_x(&f, op_fpr), cy = px_y(&f, op_tpr);
        putf(d, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"6\" fill=\"#d62728\" stroke=\"#ffffff\" stroke-width=\"1.5\"/>\n",
             cx, cy);
    }
    /* legend, bottom right inside the frame */
    double lx = f.x0 + f.w - 214, ly = f.y0 + f.h - (have_op ? 52 : 32);
    putf(d, "<rect x=\"%.1f\" y=\"%.1f\" width=\"206\" height=\"%d\" fill=\"#ffffff\" fill-opacity=\"0.9\" "
            "stroke=\"#d0d7de\"/>\n",
         lx, ly, have_op ? 44 : 24);
    putf(d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#1f77b4\" stroke-width=\"2.2\"/>\n", lx + 8,
         ly + 12, lx + 30, ly + 12);
    fmt_num(a, sizeof a, auc, 4);
    snprintf(t, sizeof t, "ROC, AUC = %s", isnan(auc) ? "n/a" : a);
    svg_text(d, lx + 36, ly + 16, "start", NULL, t);
    if (have_op) {
        putf(d, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#d62728\"/>\n", lx + 19, ly + 32);
        char s1[32], s2[32];
        fmt_num(s1, sizeof s1, op_tpr, 3);
        fmt_num(s2, sizeof s2, 1 - op_fpr, 3);
        snprintf(t, sizeof t, "threshold: sens %s, spec %s", s1, s2);
        svg_text(d, lx + 36, ly + 36, "start", "font-size=\"11\"", t);
    }
    figure_end(d, NULL);
}

void html_svg_reliability(html_doc *d, const char *title, int nbins, const int64_t *count,
                          const double *mean_predicted, const double *observed, double ece, double brier)
{
    if (!d || nbins <= 0 || !count || !mean_predicted || !observed)
        return;
    int W = 460, H = 440;
    plot_frame f = {70, 40, 360, 340, 0, 1, 0, 1};
    figure_begin(d, W, H, title ? title : "Reliability diagram");
    plot_title(d, f.x0 + f.w / 2, title ? title : "Reliability diagram");
    frame_draw(d, &f, 0.2, 0.2, "Mean predicted probability (bin)", "Observed rate (fraction positive)");
    putf(d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#8c959f\" stroke-dasharray=\"5,4\"/>\n",
         px_x(&f, 0), px_y(&f, 0), px_x(&f, 1), px_y(&f, 1));
    double bw = 1.0 / nbins;
    for (int b = 0; b < nbins; b++) {
        if (count[b] <= 0 || !isfinite(observed[b]))
            continue;
        double xa = px_x(&f, b * bw), xb = px_x(&f, (b + 1) * bw), yt = px_y(&f, observed[b]);
        char m[32], o[32];
        fmt_num(m, sizeof m, mean_predicted[b], 3);
        fmt_num(o, sizeof o, observed[b], 3);
        putf(d, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#1f77b4\" fill-opacity=\"0.25\" "
                "stroke=\"#1f77b4\" stroke-width=\"0.8\"><title>bin %.1f-%.1f: %lld images, mean predicted %s, "
                "observed %s</title></rect>\n",
             xa, yt, xb - xa, f.y0 + f.h - yt, b * bw, (b + 1) * bw, (long long)count[b], m, o);
        char c[32];
        snprintf(c, sizeof c, "%lld", (long long)count[b]);
        svg_text(d, (xa + xb) / 2, f.y0 + f.h - 4, "middle", "font-size=\"9\" fill=\"#57606a\"", c);
    }
    int drawn = 0;
    put(d, "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"");
    for (int b = 0; b < nbins; b++)
        if (count[b] > 0 && isfinite(mean_predicted[b]) && isfinite(observed[b]))
            putf(d, "%s%.2f,%.2f", drawn++ ? " " : "", px_x(&f, mean_predicted[b]), px_y(&f, observed[b]));
    put(d, "\"/>\n");
    for (int b = 0; b < nbins; b++)
        if (count[b] > 0 && isfinite(mean_predicted[b]) && isfinite(observed[b]))
            putf(d, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4\" fill=\"#d62728\"/>\n", px_x(&f, mean_predicted[b]),
                 px_y(&f, observed[b]));
    if (!drawn)
        svg_text(d, f.x0 + f.w / 2, f.y0 + f.h / 2, "middle", "fill=\"#d62728\"", "no labelled image");
    /* legend, top left inside the frame */
    double lx = f.x0 + 8, ly = f.y0 + 8;
    putf(d, "<rect x=\"%.1f\" y=\"%.1f\" width=\"200\" height=\"44\" fill=\"#ffffff\" fill-opacity=\"0.9\" "
            "stroke=\"#d0d7de\"/>\n",
         lx, ly);
    putf(d, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"/>\n", lx + 14, ly + 13);
    char t[96], a[32], bb[32];
    fmt_num(a, sizeof a, ece, 4);
    fmt_num(bb, sizeof bb, brier, 4);
    snprintf(t, sizeof t, "ECE = %s", isnan(ece) ? "n/a" : a);
    svg_text(d, lx + 26, ly + 17, "start", NULL, t);
    snprintf(t, sizeof t, "Brier score = %s", isnan(brier) ? "n/a" : bb);
    svg_text(d, lx + 26, ly + 35, "start", NULL, t);
    figure_end(d, NULL);
}

void html_svg_lines(html_doc *d, const char *title, const char *xlabel, int nseries, const char *const *names,
                    const double *x, const double *const *y, int64_t n)
{
    if (!d || nseries <= 0 || n <= 0 || !x || !y)
        return;
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(x[i])) {
            xmin = fmin(xmin, x[i]);
            xmax = fmax(xmax, x[i]);
        }
    for (int s = 0; s < nseries; s++)
        for (int64_t i = 0; y[s] && i < n; i++)
            if (isfinite(y[s][i])) {
                ymin = fmin(ymin, y[s][i]);
                ymax = fmax(ymax, y[s][i]);
            }
    if (!isfinite(xmin)) {
        xmin = 0;
        xmax = 1;
    }
    if (!isfinite(ymin)) {
        ymin = 0;
        ymax = 1;
    }
    if (xmax - xmin <= 0) { /* one epoch: centre it */
        xmin -= 1;
        xmax += 1;
    }
    if (ymax - ymin <= 0) {
        double pad = fabs(ymin) > 0 ? fabs(ymin) * 0.1 : 1;
        ymin -= pad;
        ymax += pad;
    }
    double ystep = nice_step(ymax - ymin, 5);
    ymin = floor(ymin / ystep - 1e-9) * ystep;
    ymax = ceil(ymax / ystep + 1e-9) * ystep;
    if (ymax - ymin < ystep * 2.5) { /* at least 3 intervals */
        ystep = nice_step(ymax - ymin, 4);
        ymin = floor(ymin / ystep - 1e-9) * ystep;
        ymax = ceil(ymax / ystep + 1e-9) * ystep;
    }
    double xstep = nice_step(xmax - xmin, 6);
    if (xstep < 1 && xmax - xmin >= 1 && floor(xmin) == xmin && floor(xmax) == xmax)
        xstep = 1; /* epochs: integer ticks */
    int W = 520, H = 330;
    plot_frame f = {.x0 = 70, .y0 = 40, .w = 300, .h = 240,
                    .xmin = xmin, .xmax = xmax, .ymin = ymin, .ymax = ymax};
    figure_begin(d, W, H, title ? title : "chart");
    plot_title(d, f.x0 + f.w / 2, title);
    frame_draw(d, &f, xstep, ystep, xlabel, NULL);
    for (int s = 0; s < nseries; s++) {
        const char *col = PALETTE[s % NPALETTE];
        const char *dash = s >= NPALETTE ? " stroke-dasharray=\"6,3\"" : "";
        int open = 0;
        for (int64_t i = 0; y[s] && i < n; i++) {
            if (!isfinite(x[i]) || !isfinite(y[s][i])) { /* a gap breaks the line */
                if (open)
                    put(d, "\"/>\n");
                open = 0;
                continue;
            }
            if (!open)
                putf(d, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s stroke-linejoin=\"round\" points=\"",
                     col, dash);
            putf(d, "%s%.2f,%.2f", open ? " " : "", px_x(&f, x[i]), px_y(&f, y[s][i]));
            open = 1;
        }
        if (open)
            put(d, "\"/>\n");
        if (n <= 60)
            for (int64_t i = 0; y[s] && i < n; i++)
                if (isfinite(x[i]) && isfinite(y[s][i]))
                    putf(d, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n", px_x(&f, x[i]),
                         px_y(&f, y[s][i]), col);
    }
    /* legend to the right of the frame */
    for (int s = 0; s < nseries; s++) {
        double ly = f.y0 + 8 + s * 20;
        putf(d, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.5\"%s/>\n",
             f.x0 + f.w + 14, ly, f.x0 + f.w + 36, ly, PALETTE[s % NPALETTE],
             s >= NPALETTE ? " stroke-dasharray=\"6,3\"" : "");
        char dflt[24];
        snprintf(dflt, sizeof dflt, "series %d", s + 1);
        svg_text(d, f.x0 + f.w + 42, ly + 4, "start", NULL, names && names[s] ? names[s] : dflt);
    }
    figure_end(d, NULL);
}

void html_svg_histogram(html_doc *d, const char *title, const char *xlabel, const int64_t *counts, int nbins,
                        double lo, double hi, double marker)
{
    if (!d || nbins <= 0 || !counts)
        return;
    if (!(hi > lo)) {
        hi = lo + 1;
    }
    int64_t cmax = 0;
    for (int i = 0; i < nbins; i++)
        if (counts[i] > cmax)
            cmax = counts[i];
    double ystep = nice_step(cmax > 0 ? (double)cmax : 1, 5);
    if (ystep < 1)
        ystep = 1;
    double ymax = ceil((cmax > 0 ? (double)cmax : 1) / ystep) * ystep;
    int W = 520, H = 330;
    plot_frame f = {.x0 = 70, .y0 = 40, .w = 400, .h = 240, .xmin = lo, .xmax = hi, .ymin = 0, .ymax = ymax};
    figure_begin(d, W, H, title ? title : "histogram");
    plot_title(d, f.x0 + f.w / 2, title);
    frame_draw(d, &f, nice_step(hi - lo, 5), ystep, xlabel, "count");
    double bw = (hi - lo) / nbins;
    for (int i = 0; i < nbins; i++) {
        if (counts[i] <= 0)
            continue;
        double xa = px_x(&f, lo + i * bw), xb = px_x(&f, lo + (i + 1) * bw), yt = px_y(&f, (double)counts[i]);
        putf(d, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#1f77b4\" fill-opacity=\"0.85\" "
                "stroke=\"#ffffff\" stroke-width=\"0.5\"><title>%lld</title></rect>\n",
             xa, yt, xb - xa, f.y0 + f.h - yt, (long long)counts[i]);
    }
    if (isfinite(marker) && marker >= lo && marker <= hi) {
        double mx = px_x(&f, marker);
        putf(d, "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#d62728\" stroke-width=\"2\" "
                "stroke-dasharray=\"6,4\"/>\n",
             mx, f.y0, mx, f.y0 + f.h);
        char t[64], v[32];
        fmt_num(v, sizeof v, marker, 4);
        snprintf(t, sizeof t, "threshold %s", v);
        int right = marker < lo + 0.6 * (hi - lo);
        svg_text(d, mx + (right ? 5 : -5), f.y0 + 14, right ? "start" : "end", "font-size=\"11\" fill=\"#d62728\"", t);
    }
    figure_end(d, NULL);
}

/* ------------------------------------------------------------------------ inline images */

static void put_base64(html_doc *d, const uint8_t *p, size_t n)
{
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4];
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? (uint32_t)p[i + 2] : 0);
        q[0] = T[v >> 18 & 63];
        q[1] = T[v >> 12 & 63];
        q[2] = i + 1 < n ? T[v >> 6 & 63] : '=';
        q[3] = i + 2 < n ? T[v & 63] : '=';
        rb_buf_put(&d->b, q, 4);
    }
}

void html_figure_png(html_doc *d, int nimg, const uint8_t *const *png, const size_t *len,
                     const char *const *alt, int width, int ncap, const char *const *caption)
{
    put(d, "<figure class=\"img\">");
    for (int i = 0; i < nimg; i++) {
        putf(d, "<img width=\"%d\" alt=\"", width);
        put_esc(d, alt[i]);
        put(d, "\" src=\"data:image/png;base64,");
        put_base64(d, png[i], len[i]);
        put(d, "\">");
    }
    put(d, "<figcaption>");
    for (int i = 0; i < ncap; i++) {
        if (i)
            put(d, "<br>");
        put_esc(d, caption[i]);
    }
    put(d, "</figcaption></figure>\n");
}

void html_discard(html_doc *d)
{
    if (!d)
        return;
    rb_buf_free(&d->b);
    free(d);
}

int html_end_write(html_doc *d, const char *path, rb_error *err)
{
    if (!d)
        return rb_fail(err, NULL, "%s: out of memory building the report", path);
    put(d, "<footer>Written by radbatch ");
    put_esc(d, RADBATCH_VERSION);
    put(d, ". Self-contained: no scripts, nothing fetched.</footer>\n</body>\n</html>\n");
    int rc;
    if (d->b.failed)
        rc = rb_fail(err, NULL, "%s: out of memory building the report", path);
    else
        rc = fs_write_file_atomic(path, d->b.data, d->b.len, err);
    rb_buf_free(&d->b);
    free(d);
    return rc;
}
