#include "json_number.h"
#include "test_hooks.h"
#include "infer_merge.h"
#include "csv.h"
#include "fsutil.h"
#include "infer_index.h"
#include "infer_work.h"
#include "job_marker.h"
#include "rb_buf.h"
#include "report_html.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const infer_outputs[] = {"errors.csv", "predictions.csv", "flagged.csv", "index.csv", "index.idx",
                                     "report.html", NULL};


/* ---- k-way merge of files sorted by their first field ---------------------------------- */
typedef int (*merge_sink)(void *ctx, const char *rec, size_t len, rb_error *err);
typedef char *(*level0_name)(const void *ctx, int64_t i); /* malloc'd path of input i */

typedef struct mreader {
    FILE *f;
    rb_buf rec, key;
    int live;
} mreader;

static int reader_next(mreader *r, rb_error *err)
{
    int rc = csvrec_read(r->f, &r->rec);
    if (rc < 0)
        return rb_fail(err, NULL, "out of memory");
    r->live = rc == 1;
    if (r->live && csvrec_key((const char *)r->rec.data, &r->key) < 0)
        return rb_fail(err, NULL, "out of memory");
    return 0;
}

/* Merge n sorted files (n <= FANIN) into sink; ties go to the lower input index. */
static int merge_files(char **paths, int n, merge_sink sink, void *ctx, rb_error *err)
{
    mreader rd[INFER_MERGE_FANIN];
    memset(rd, 0, sizeof rd);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rd[i].f = fopen(paths[i], "r");
        if (!rd[i].f)
            rc = rb_fail(err, "rerun the same command to redo the missing chunk", "%s: cannot open: %s", paths[i],
                         strerror(errno));
        else
            rc = reader_next(&rd[i], err);
    }
    while (rc == 0) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (rd[i].live && (best < 0 || strcmp((const char *)rd[i].key.data, (const char *)rd[best].key.data) < 0))
                best = i;
        if (best < 0)
            break;
        rc = sink(ctx, (const char *)rd[best].rec.data, rd[best].rec.len, err);
        if (rc == 0)
            rc = reader_next(&rd[best], err);
    }
    for (int i = 0; i < n; i++) {
        if (rd[i].f)
            fclose(rd[i].f);
        rb_buf_free(&rd[i].rec);
        rb_buf_free(&rd[i].key);
    }
    return rc;
}

static int sink_file(void *ctx, const char *rec, size_t len, rb_error *err)
{
    (void)err;
    fwrite(rec, 1, len, (FILE *)ctx);
    return 0;
}

typedef struct tree_names {
    const char *work, *tag;
    level0_name l0;
    const void *l0ctx;
} tree_names;

static char *tree_name(const tree_names *t, int level, int64_t i)
{
    if (level == 0)
        return t->l0(t->l0ctx, i);
    size_t n = strlen(t->work) + strlen(t->tag) + 64;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/merge/%s-L%d-%06lld.csv", t->work, t->tag, level, (long long)i);
    return s;
}

/* Merge n0 level-0 files in passes of FANIN into `final`. */
static int merge_tree(const tree_names *t, int64_t n0, merge_sink final, void *ctx, rb_error *err)
{
    int level = 0;
    int64_t n = n0;
    char *paths[INFER_MERGE_FANIN];
    int rc = 0;
    while (rc == 0 && n > INFER_MERGE_FANIN) {
        int64_t groups = (n + INFER_MERGE_FANIN - 1) / INFER_MERGE_FANIN;
        for (int64_t g = 0; g < groups && rc == 0; g++) {
            int m = 0;
            for (int64_t i = g * INFER_MERGE_FANIN; i < n && m < INFER_MERGE_FANIN; i++)
                paths[m++] = tree_name(t, level, i);
            char *out = tree_name(t, level + 1, g);
            FILE *f = out ? fopen(out, "w") : NULL;
            if (!f)
                rc = rb_fail(err, "is the disk full?", "%s: cannot create: %s", out ? out : "merge file",
                             strerror(errno));
            else {
                rc = merge_files(paths, m, sink_file, f, err);
                long size = ftell(f);
                errno = 0;
                int bad = fflush(f) != 0 || ferror(f);
                int e = errno ? errno : EIO;
                if (fclose(f) != 0 && !bad) {
                    bad = 1;
                    e = errno ? errno : EIO;
                }
                if (bad && rc == 0)
                    rc = fs_write_fail(err, out, e, size > 0 ? (uint64_t)size : 0);
            }
            for (int k = 0; k < m; k++) {
                if (level > 0 && rc == 0)
                    unlink(paths[k]);
                free(paths[k]);
            }
            free(out);
        }
        level++;
        n = groups;
    }
    if (rc == 0) {
        for (int64_t i = 0; i < n; i++)
            paths[i] = tree_name(t, level, i);
        rc = merge_files(paths, (int)n, final, ctx, err);
        for (int64_t i = 0; i < n; i++) {
            if (level > 0 && rc == 0)
                unlink(paths[i]);
            free(paths[i]);
        }
    }
    return rc;
}

static char *part_name(const void *ctx, int64_t i) { return infer_chunk_path((const char *)ctx, "part", i); }
static char *error_name(const void *ctx, int64_t i)
{
    return i == 0 ? fs_join((const char *)ctx, "list-errors.csv") : infer_chunk_path((const char *)ctx, "errors", i - 1);
}

/* ---- the highest-probability flagged images, for the report ---------------------------- */
typedef struct top_item {
    double p;
    char *path;
} top_item;
typedef struct top_list {
    top_item *it;
    int n, cap;
} top_list;

/* a is worse than b: lower probability, or equal and later path */
static int top_worse(const top_item *a, const top_item *b)
{
    return a->p < b->p || (a->p == b->p && strcmp(a->path, b->path) > 0);
}
static void top_sift_down(top_list *t, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && top_worse(&t->it[l], &t->it[m]))
            m = l;
        if (r < t->n && top_worse(&t->it[r], &t->it[m]))
            m = r;
        if (m == i)
            return;
        top_item x = t->it[i];
        t->it[i] = t->it[m];
        t->it[m] = x;
        i = m;
    }
}
static void top_add(top_list *t, double p, const char *path)
{
    top_item c = {.p = p};
    if (t->n == t->cap) {
        c.path = (char *)path;
        if (!top_worse(&t->it[0], &c))
            return;
        free(t->it[0].path);
        t->it[0].p = p;
        t->it[0].path = strdup(path);
        top_sift_down(t, 0);
        return;
    }
    int i = t->n++;
    t->it[i].p = p;
    t->it[i].path = strdup(path);
    while (i > 0) {
        int par = (i - 1) / 2;
        if (!top_worse(&t->it[i], &t->it[par]))
            break;
        top_item x = t->it[i];
        t->it[i] = t->it[par];
        t->it[par] = x;
        i = par;
    }
}
static int cmp_top_desc(const void *a, const void *b)
{
    const top_item *x = a, *y = b;
    return top_worse(x, y) ? 1 : top_worse(y, x) ? -1 : 0;
}

/* ---- the final pass over the parts ---------------------------------------------------- */
typedef struct final_ctx {
    const infer_merge_cfg *c;
    infer_merge_result *r;
    csv_writer pred, flag;
    infer_index_writer index;
    rb_buf scratch, row;
    char **fields;
    int nfields;
    FILE *prev;       /* previous index.csv, read along for the removed count */
    rb_buf prev_rec, prev_key;
    int prev_live;
    top_list top;
} final_ctx;

static int prev_advance(final_ctx *x, rb_error *err)
{
    int rc = csvrec_read(x->prev, &x->prev_rec);
    if (rc < 0)
        return rb_fail(err, NULL, "out of memory");
    x->prev_live = rc == 1;
    if (x->prev_live)
        csvrec_key((const char *)x->prev_rec.data, &x->prev_key);
    return 0;
}

static int sink_final(void *ctx, const char *rec, size_t len, rb_error *err)
{
    final_ctx *x = ctx;
    const infer_merge_cfg *c = x->c;
    x->scratch.len = 0;
    rb_buf_put(&x->scratch, rec, len);
    rb_buf_put(&x->scratch, "", 1);
    if (x->scratch.failed)
        return rb_fail(err, NULL, "out of memory");
    char **f = x->fields;
    int nf = csv_split_line((char *)x->scratch.data, f, x->nfields + 1);
    if (nf != x->nfields)
        return rb_fail(err, "delete the damaged part file and rerun the command", "a part file row has %d fields, expected %d: %.200s",
                       nf, x->nfields, rec);
    const char *status = f[4];
    int k = c->nclasses;
    /* cumulative index: path,size,mtime,hash,predicted_label,probs,flagged */
    x->row.len = 0;
    for (int i = 0; i < nf; i++)
        if (i != 4)
            csvrow_field(&x->row, f[i], i == 0);
    rb_buf_put(&x->row, "\n", 1);
    if (x->row.failed)
        return rb_fail(err, NULL, "out of memory");
    infer_index_add(&x->index, (const char *)x->row.data, x->row.len);
    if (x->prev) {
        while (x->prev_live && strcmp((const char *)x->prev_key.data, f[0]) < 0) {
            x->r->removed++;
            if (prev_advance(x, err) < 0)
                return -1;
        }
        if (x->prev_live && strcmp((const char *)x->prev_key.data, f[0]) == 0 && prev_advance(x, err) < 0)
            return -1;
    }
    if (!strcmp(status, "unchanged")) {
        x->r->unchanged++;
        return 0;
    }
    if (!strcmp(status, "changed"))
        x->r->changed++;
    else
        x->r->new_files++;
    x->r->predicted++;
    /* predictions.csv: path,size,mtime,predicted_label,probs,flagged */
    for (int i = 0; i < nf; i++)
        if (i != 3 && i != 4)
            csv_field(&x->pred, f[i]);
    csv_end_row(&x->pred);
    for (int cl = 0; cl < k; cl++)
        if (!strcmp(f[5], c->class_names[cl]))
            x->r->per_class[cl]++;
    double p = strtod(f[6 + c->positive], NULL);
    int bin = (int)floor(p * INFER_HIST_BINS);
    bin = bin < 0 ? 0 : bin >= INFER_HIST_BINS ? INFER_HIST_BINS - 1 : bin;
    x->r->hist[bin]++;
    if (!strcmp(f[6 + k], "1")) {
        x->r->flagged++;
        for (int i = 0; i < nf; i++)
            if (i != 3 && i != 4)
                csv_field(&x->flag, f[i]);
        csv_end_row(&x->flag);
        top_add(&x->top, p, f[0]);
    }
    /* test hook: die (SIGKILL) in the middle of the merge */
    if (x->r->predicted == test_hook_int(HOOK_KILL_IN_MERGE))
        raise(SIGKILL);
    return 0;
}

static void header_row(csv_writer *w, const infer_merge_cfg *c, int with_hash)
{
    csv_field(w, "path");
    csv_field(w, "size");
    csv_field(w, "mtime");
    if (with_hash)
        csv_field(w, "hash");
    csv_field(w, "predicted_label");
    for (int k = 0; k < c->nclasses; k++) {
        char h[300];
        snprintf(h, sizeof h, "prob_%s", c->class_names[k]);
        csv_field(w, h);
    }
    csv_field(w, "flagged");
    csv_end_row(w);
}

static int sink_errors(void *ctx, const char *rec, size_t len, rb_error *err)
{
    (void)err;
    int64_t *cnt = ((int64_t **)ctx)[1];
    fwrite(rec, 1, len, ((csv_writer *)((void **)ctx)[0])->f);
    (*cnt)++;
    return 0;
}

/* ---- summary.json and report.html ------------------------------------------------------ */
static int write_summary(const infer_merge_cfg *c, const infer_merge_result *r, rb_error *err)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "radbatch-infer-summary");
    json_add_exact_number(j, "version", 1);
    cJSON_AddBoolToObject(j, "complete", 1);
    cJSON_AddStringToObject(j, "input", c->input);
    cJSON_AddStringToObject(j, "input_kind", c->kind);
    if (c->since)
        cJSON_AddStringToObject(j, "since", c->since);
    else
        cJSON_AddNullToObject(j, "since");
    cJSON_AddStringToObject(j, "change_detection", c->change_detection);
    json_add_exact_number(j, "files", (double)c->files_listed);
    json_add_exact_number(j, "predicted", (double)r->predicted);
    json_add_exact_number(j, "new", (double)r->new_files);
    json_add_exact_number(j, "changed", (double)r->changed);
    json_add_exact_number(j, "unchanged", (double)r->unchanged);
    json_add_exact_number(j, "removed", (double)r->removed);
    json_add_exact_number(j, "errors", (double)r->errors);
    json_add_exact_number(j, "list_errors", (double)c->list_errors);
    cJSON *counts = cJSON_AddObjectToObject(j, "counts");
    for (int k = 0; k < c->nclasses; k++)
        json_add_exact_number(counts, c->class_names[k], (double)r->per_class[k]);
    cJSON_AddStringToObject(j, "positive_class", c->class_names[c->positive]);
    json_add_exact_number(j, "threshold", c->threshold);
    cJSON_AddStringToObject(j, "threshold_rule", c->threshold_rule ? c->threshold_rule : "model");
    cJSON_AddStringToObject(j, "threshold_source", c->threshold_source ? c->threshold_source : "");
    json_add_exact_number(j, "flagged", (double)r->flagged);
    cJSON *h = cJSON_AddObjectToObject(j, "histogram");
    json_add_exact_number(h, "bins", INFER_HIST_BINS);
    json_add_exact_number(h, "lo", 0);
    json_add_exact_number(h, "hi", 1);
    cJSON *hc = cJSON_AddArrayToObject(h, "counts");
    for (int b = 0; b < INFER_HIST_BINS; b++)
        cJSON_AddItemToArray(hc, json_exact_number((double)r->hist[b]));
    cJSON *m = cJSON_AddArrayToObject(j, "models");
    for (int i = 0; i < c->nmodels; i++)
        cJSON_AddItemToArray(m, cJSON_CreateString(c->model_paths[i]));
    cJSON_AddStringToObject(j, "model_fingerprint", c->model_fingerprint);
    cJSON *card = c->card ? cJSON_Parse(c->card) : NULL;
    if (card)
        cJSON_AddItemToObject(j, "model_card", card);
    else
        cJSON_AddNullToObject(j, "model_card");
    json_add_exact_number(j, "tta", c->tta);
    json_add_exact_number(j, "chunk", (double)c->chunk);
    json_add_exact_number(j, "batch", c->batch);
    json_add_exact_number(j, "ranks", c->ranks);
    job_marker_add_hosts(j);
    json_add_exact_number(j, "threads_per_rank", c->threads);
    cJSON_AddBoolToObject(j, "resumed", c->resumed);
    json_add_exact_number(j, "images_this_run", (double)c->images_this_run);
    json_add_exact_number(j, "seconds", round(c->infer_seconds * 1000) / 1000);
    json_add_exact_number(j, "images_per_second",
                            c->infer_seconds > 0 ? round(10 * (double)c->images_this_run / c->infer_seconds) / 10 : 0);
    json_add_exact_number(j, "peak_rss_mb", round(c->peak_rss_mb * 10) / 10);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text)
        return rb_fail(err, NULL, "out of memory");
    size_t n = strlen(text);
    text[n] = '\n';
    char *p = fs_join(c->out, "summary.json");
    int rc = p ? infer_write_atomic(p, text, n + 1, err) : rb_fail(err, NULL, "out of memory");
    free(p);
    free(text);
    return rc;
}

/* ---- Grad-CAM heatmaps of the most probable flagged images ---------------------------- */
int infer_remove_flat_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char *q = fs_join(dir, de->d_name);
        if (!q || (unlink(q) != 0 && errno != ENOENT))
            rc = -1;
        free(q);
    }
    closedir(d);
    if (rc == 0 && rmdir(dir) != 0 && errno != ENOENT)
        rc = -1;
    return rc;
}

/* "<rank>-<file name without extension>.png" */
static void heatmap_name(char *out, size_t cap, int rank, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    int len = dot && dot != base ? (int)(dot - base) : (int)strlen(base);
    snprintf(out, cap, "%d-%.*s.png", rank, len, base);
}

/* The heatmaps into <mdir>/explain/ and the report's section; top is sorted. */
static int write_heatmaps(const infer_merge_cfg *c, html_doc *d, const char *mdir, const top_list *top,
                          int64_t flagged, rb_error *err)
{
    if (c->explain <= 0 || !c->explain_fn)
        return 0;
    html_h2(d, "Heatmaps of the most probable flagged images");
    int n = c->explain < top->n ? c->explain : top->n;
    char *dir = fs_join(mdir, INFER_EXPLAIN_DIR);
    if (!dir || infer_remove_flat_dir(dir) < 0 || fs_mkdirs(dir, err) < 0) {
        free(dir);
        return dir ? rb_error_prefix(err, "infer explain: ") : rb_fail(err, NULL, "out of memory");
    }
    html_para(d, "Grad-CAM of the %s score (jet colour map: red where the evidence is strongest, the image "
                 "unchanged where there is none) for the %d most probable of %lld flagged image(s); the PNG "
                 "files are in %s/.",
              c->class_names[c->positive], n, (long long)flagged, INFER_EXPLAIN_DIR);
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        uint8_t *png = NULL;
        size_t len = 0;
        rb_error e = {0};
        int r = c->explain_fn(c->explain_ctx, top->it[i].path, &png, &len, &e);
        if (r < 0) {
            *err = e;
            rc = rb_error_prefix(err, "infer explain: ");
            break;
        }
        if (r > 0) {
            html_para(d, "#%d %s: no heatmap (%s)", i + 1, top->it[i].path, e.msg);
            continue;
        }
        char name[600], l0[64];
        heatmap_name(name, sizeof name, i + 1, top->it[i].path);
        char *fp = fs_join(dir, name);
        if (!fp)
            rc = rb_fail(err, NULL, "out of memory");
        else if (fs_write_file_atomic(fp, png, len, err) < 0)
            rc = -1;
        if (rc == 0) {
            snprintf(l0, sizeof l0, "#%d  p = %.4f", i + 1, top->it[i].p);
            const char *cap[3] = {l0, top->it[i].path, name};
            const uint8_t *pp[1] = {png};
            char alt[700];
            snprintf(alt, sizeof alt, "heatmap of %s", top->it[i].path);
            const char *alts[1] = {alt};
            html_figure_png(d, 1, pp, &len, alts, 224, 3, cap);
        }
        free(fp);
        free(png);
    }
    if (rc == 0 && n == 0)
        html_para(d, "None (no image flagged).");
    free(dir);
    return rc;
}

static int write_report(const infer_merge_cfg *c, const char *dir, const infer_merge_result *r, top_list *top,
                        rb_error *err)
{
    char title[600];
    snprintf(title, sizeof title, "radbatch infer: %s", c->input);
    html_doc *d = html_begin(title);
    if (!d)
        return rb_fail(err, NULL, "out of memory");
    html_para(d, "Input %s (%s), %lld file(s) listed. Models: %d (fingerprint %s), TTA %d. Threshold %.4f on %s "
                 "(threshold %s: %s).",
              c->input, c->kind, (long long)c->files_listed, c->nmodels, c->model_fingerprint, c->tta, c->threshold,
              c->class_names[c->positive], c->threshold_rule ? c->threshold_rule : "model",
              c->threshold_source ? c->threshold_source : "");
    if (c->since) {
        html_para(d, "Incremental run since %s (change detection: %s): %lld new, %lld changed, %lld unchanged, %lld removed.",
                  c->since, c->change_detection, (long long)r->new_files, (long long)r->changed,
                  (long long)r->unchanged, (long long)r->removed);
        if (r->predicted == 0)
            html_para(d, "No new or changed files since the previous run.");
    }
    html_h2(d, "Predicted classes");
    int k = c->nclasses;
    const char *hdr[3] = {"class", "images", "share"};
    char **cells = calloc((size_t)(k + 1) * 3, sizeof *cells);
    for (int i = 0; cells && i <= k; i++) {
        int64_t v = i < k ? r->per_class[i] : r->predicted;
        cells[i * 3] = strdup(i < k ? c->class_names[i] : "total");
        cells[i * 3 + 1] = malloc(32);
        cells[i * 3 + 2] = malloc(32);
        if (cells[i * 3 + 1])
            snprintf(cells[i * 3 + 1], 32, "%lld", (long long)v);
        if (cells[i * 3 + 2])
            snprintf(cells[i * 3 + 2], 32, "%.1f%%", r->predicted ? 100.0 * (double)v / (double)r->predicted : 0.0);
    }
    if (cells)
        html_table(d, 3, hdr, k + 1, (const char *const *)cells);
    for (int i = 0; cells && i < (k + 1) * 3; i++)
        free(cells[i]);
    free(cells);
    html_para(d, "%lld image(s) flagged at %s probability >= %.4f; %lld error(s).", (long long)r->flagged,
              c->class_names[c->positive], c->threshold, (long long)r->errors);
    html_h2(d, "Probability of the positive class");
    char xl[300];
    snprintf(xl, sizeof xl, "probability of %s (threshold marked)", c->class_names[c->positive]);
    html_svg_histogram(d, "positive-class probability", xl, r->hist, INFER_HIST_BINS, 0.0, 1.0, c->threshold);

    html_h2(d, "Flagged images");
    qsort(top->it, (size_t)top->n, sizeof *top->it, cmp_top_desc);
    if (r->flagged > top->n)
        html_para(d, "The %d highest of %lld flagged images; flagged.csv lists them all.", top->n, (long long)r->flagged);
    const char *fh[2] = {"path", "probability"};
    char **fc = calloc((size_t)top->n * 2 + 1, sizeof *fc);
    for (int i = 0; fc && i < top->n; i++) {
        fc[2 * i] = top->it[i].path;
        fc[2 * i + 1] = malloc(32);
        if (fc[2 * i + 1])
            snprintf(fc[2 * i + 1], 32, "%.4f", top->it[i].p);
    }
    if (fc && top->n)
        html_table(d, 2, fh, top->n, (const char *const *)fc);
    else if (!top->n)
        html_para(d, "None.");
    for (int i = 0; fc && i < top->n; i++)
        free(fc[2 * i + 1]);
    free(fc);
    if (write_heatmaps(c, d, dir, top, r->flagged, err) < 0) {
        html_discard(d);
        return -1;
    }

    html_h2(d, "Errors");
    char *ep = fs_join(dir, "errors.csv");
    FILE *ef = ep ? fopen(ep, "r") : NULL;
    free(ep);
    if (ef && r->errors) {
        rb_buf rec = {0};
        int cap = INFER_REPORT_ROWS, n = 0;
        char **ec = calloc((size_t)cap * 2, sizeof *ec);
        csvrec_read(ef, &rec); /* header */
        while (ec && n < cap && csvrec_read(ef, &rec) == 1) {
            char *f[2] = {0, 0};
            int nf = csv_split_line((char *)rec.data, f, 2);
            ec[2 * n] = strdup(nf > 0 ? f[0] : "");
            ec[2 * n + 1] = strdup(nf > 1 ? f[1] : "");
            n++;
        }
        if (r->errors > n)
            html_para(d, "The first %d of %lld errors; errors.csv lists them all.", n, (long long)r->errors);
        const char *eh[2] = {"path", "reason"};
        if (ec)
            html_table(d, 2, eh, n, (const char *const *)ec);
        for (int i = 0; ec && i < 2 * n; i++)
            free(ec[i]);
        free(ec);
        rb_buf_free(&rec);
    } else
        html_para(d, "None.");
    if (ef)
        fclose(ef);
    if (c->card) {
        html_h2(d, "Model card");
        html_pre(d, c->card);
    }
    char *rp = fs_join(dir, "report.html");
    int rc = rp ? html_end_write(d, rp, err) : rb_fail(err, NULL, "out of memory");
    free(rp);
    return rc;
}

/* errors.csv: the chunks' error files merged, with the listing's errors (chunk nchunks). */
static int merge_errors(const infer_merge_cfg *c, infer_merge_result *r, const char *mdir, rb_error *err)
{
    csv_writer ew;
    char *ep = fs_join(mdir, "errors.csv");
    int orc = ep ? csv_writer_open(&ew, ep, err) : rb_fail(err, NULL, "out of memory");
    free(ep);
    if (orc < 0)
        return -1;
    csv_field(&ew, "path");
    csv_field(&ew, "reason");
    csv_end_row(&ew);
    tree_names et = {.work = c->work, .tag = "errors", .l0 = error_name, .l0ctx = c->work};
    void *ectx[2] = {&ew, &r->errors};
    if (merge_tree(&et, c->nchunks + 1, sink_errors, ectx, err) < 0) {
        csv_writer_abort(&ew);
        return -1;
    }
    return csv_writer_close(&ew, err);
}

/* predictions.csv, flagged.csv and index.csv opened with their headers in mdir. */
static int open_final_outputs(final_ctx *x, const infer_merge_cfg *c, const char *mdir, rb_error *err)
{
    char *pp = fs_join(mdir, "predictions.csv"), *fp = fs_join(mdir, "flagged.csv");
    int rc = csv_writer_open(&x->pred, pp, err);
    if (rc == 0 && csv_writer_open(&x->flag, fp, err) < 0) {
        csv_writer_abort(&x->pred);
        rc = -1;
    }
    free(pp);
    free(fp);
    if (rc < 0)
        return -1;
    header_row(&x->pred, c, 0);
    header_row(&x->flag, c, 0);
    rb_buf h = {0};
    const char *fixed[5] = {"path", "size", "mtime", "hash", "predicted_label"};
    for (int i = 0; i < 5; i++)
        csvrow_field(&h, fixed[i], i == 0);
    for (int k = 0; k < c->nclasses; k++) {
        char name[300];
        snprintf(name, sizeof name, "prob_%s", c->class_names[k]);
        csvrow_field(&h, name, 0);
    }
    csvrow_field(&h, "flagged", 0);
    rb_buf_put(&h, "\n", 1);
    rb_buf_put(&h, "", 1);
    rc = h.failed ? rb_fail(err, NULL, "out of memory") : infer_index_open(&x->index, mdir, (const char *)h.data, err);
    rb_buf_free(&h);
    if (rc < 0) {
        csv_writer_abort(&x->pred);
        csv_writer_abort(&x->flag);
    }
    return rc;
}

/* The part files merged into the open outputs (with --since, alongside the previous index:
 * its paths not seen any more are counted as removed); the outputs closed, or aborted. */
static int merge_final(final_ctx *x, const infer_merge_cfg *c, infer_merge_result *r, rb_error *err)
{
    int rc;
    if (c->since) {
        char *pi = fs_join(c->since, "index.csv");
        x->prev = pi ? fopen(pi, "r") : NULL;
        free(pi);
        if (x->prev) {
            csvrec_read(x->prev, &x->prev_rec); /* header */
            if (prev_advance(x, err) < 0)
                return -1; /* out of memory: the outputs are left open; the job ends on this error */
        }
    }
    tree_names pt = {.work = c->work, .tag = "part", .l0 = part_name, .l0ctx = c->work};
    rc = merge_tree(&pt, c->nchunks, sink_final, x, err);
    while (rc == 0 && x->prev && x->prev_live) {
        r->removed++;
        rc = prev_advance(x, err);
    }
    if (rc == 0)
        rc = csv_writer_close(&x->pred, err);
    else
        csv_writer_abort(&x->pred);
    if (rc == 0)
        rc = csv_writer_close(&x->flag, err);
    else
        csv_writer_abort(&x->flag);
    if (rc == 0)
        rc = infer_index_close(&x->index, err);
    else
        infer_index_abort(&x->index);
    return rc;
}

/* Rename every output into the run folder; summary.json last, its presence with
 * complete = true marks a finished run. */
static int publish_outputs(const infer_merge_cfg *c, const infer_merge_result *r, const char *mdir, rb_error *err)
{
    int rc = 0;
    for (int i = 0; rc == 0 && infer_outputs[i]; i++) {
        char *from = fs_join(mdir, infer_outputs[i]), *to = fs_join(c->out, infer_outputs[i]);
        if (!from || !to)
            rc = rb_fail(err, NULL, "out of memory");
        else if (rename(from, to) != 0)
            rc = rb_fail(err, NULL, "%s: cannot rename into place: %s", to, strerror(errno));
        free(from);
        free(to);
    }
    if (rc == 0 && c->explain > 0) {
        char *from = fs_join(mdir, INFER_EXPLAIN_DIR), *to = fs_join(c->out, INFER_EXPLAIN_DIR);
        if (!from || !to)
            rc = rb_fail(err, NULL, "out of memory");
        else if (fs_is_dir(from) && rename(from, to) != 0)
            rc = rb_fail(err, NULL, "%s: cannot rename into place: %s", to, strerror(errno));
        free(from);
        free(to);
    }
    if (rc == 0 && test_hook_is(HOOK_KILL_MERGE, "publish"))
        raise(SIGKILL);
    if (rc == 0)
        rc = write_summary(c, r, err);
    return rc;
}

int infer_merge_outputs(const infer_merge_cfg *c, infer_merge_result *r, rb_error *err)
{
    memset(r, 0, sizeof *r);
    r->per_class = calloc((size_t)c->nclasses + 1, sizeof *r->per_class);
    if (!r->per_class)
        return rb_fail(err, NULL, "out of memory");
    /* Every output is written complete into work/merge/ first and renamed into the run folder
     * only when all of them are, then summary.json, the marker, goes last: a kill at any point
     * leaves no final-named file beside temporary ones (the run folder was emptied of the
     * outputs of any earlier run at the start). */
    char *mdir = fs_join(c->work, "merge");
    if (!mdir || fs_mkdirs(mdir, err) < 0 || merge_errors(c, r, mdir, err) < 0) {
        free(mdir);
        return -1;
    }
    final_ctx x = {
        .c = c,
        .r = r,
        .nfields = 7 + c->nclasses,
        .top.cap = INFER_REPORT_ROWS,
    };
    x.fields = calloc((size_t)x.nfields + 2, sizeof *x.fields);
    x.top.it = calloc((size_t)x.top.cap, sizeof *x.top.it);
    if (!x.fields || !x.top.it) {
        free(x.fields);
        free(x.top.it);
        free(mdir);
        return rb_fail(err, NULL, "out of memory");
    }
    int rc = open_final_outputs(&x, c, mdir, err);
    if (rc == 0)
        rc = merge_final(&x, c, r, err);
    if (x.prev)
        fclose(x.prev);
    rb_buf_free(&x.prev_rec);
    rb_buf_free(&x.prev_key);
    rb_buf_free(&x.scratch);
    rb_buf_free(&x.row);
    free(x.fields);
    if (rc == 0)
        rc = write_report(c, mdir, r, &x.top, err);
    if (rc == 0)
        rc = publish_outputs(c, r, mdir, err);
    free(mdir);
    for (int i = 0; i < x.top.n; i++)
        free(x.top.it[i].path);
    free(x.top.it);
    return rc;
}

void infer_merge_result_free(infer_merge_result *r)
{
    free(r->per_class);
    r->per_class = NULL;
}
