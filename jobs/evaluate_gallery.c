/* radbatch evaluate, report.html: galleries of the false positives and false negatives at
 * the operating point (docs/evaluate.md, "Error galleries"): per image the thumbnail the
 * model saw, its Grad-CAM heatmap of the positive class (explain.h), the probability and the
 * path, inline. Rank 0, after the metrics; the images are read again (shard records by
 * index, image files by path). */
#include "evaluate.h"
#include "explain.h"
#include "image.h"
#include "report_html.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct gitem {
    int64_t i;
    float p; /* probability of the positive class */
} gitem;

static int by_p_desc(const void *a, const void *b)
{
    const gitem *x = a, *y = b;
    return x->p > y->p ? -1 : x->p < y->p ? 1 : (x->i > y->i) - (x->i < y->i);
}
static int by_p_asc(const void *a, const void *b)
{
    const gitem *x = a, *y = b;
    return x->p < y->p ? -1 : x->p > y->p ? 1 : (x->i > y->i) - (x->i < y->i);
}

/* record i as the model's input; 1 when it cannot be read any more (reason in err) */
static int read_record(eval_ctx *x, int64_t i, uint8_t *px, rb_error *err)
{
    if (x->is_shards)
        return shard_dataset_read(&x->ds, &i, 1, px, NULL, err) < 0 ? 1 : 0;
    image_info info;
    return trained_model_load_image(&x->tm, x->in.e[i].abs, px, &info, err) < 0 ? 1 : 0;
}

static int gallery(html_doc *d, eval_ctx *x, explainer *ex, const char *title, const char *what, const char *cmp,
                   gitem *it, int64_t n, int limit, uint8_t *px, rb_error *err)
{
    html_h2(d, title);
    const char *pos = x->tm.class_names[x->positive];
    if (n == 0) {
        html_para(d, "None: no %s at the threshold %.4f.", what, x->thr.value);
        return 0;
    }
    int shown = n < limit ? (int)n : limit;
    html_para(d, "%lld %s at %s probability %s %.4f; %s%d shown: the image the model saw, and the Grad-CAM "
                 "heatmap of the %s score (jet colour map: red where the evidence for %s is strongest).",
              (long long)n, what, pos, cmp, x->thr.value,
              shown < n ? "the most confident " : "", shown, pos, pos);
    const int H = x->tm.height, W = x->tm.width, C = x->tm.channels;
    for (int j = 0; j < shown; j++) {
        int64_t i = it[j].i;
        rb_error fe = {0};
        char l0[96];
        snprintf(l0, sizeof l0, "p(%s) = %.4f", pos, it[j].p);
        if (read_record(x, i, px, &fe) != 0) {
            html_para(d, "%s %s: no images (%s)", l0, x->all.paths[i], fe.msg);
            continue;
        }
        uint8_t *png[2] = {NULL, NULL};
        size_t len[2] = {0, 0};
        if (image_encode_png(px, H, W, C, &png[0], &len[0], err) < 0 ||
            explain_encode_png(ex, px, x->positive, &png[1], &len[1], err) < 0) {
            free(png[0]);
            free(png[1]);
            return -1;
        }
        char a0[600], a1[600];
        snprintf(a0, sizeof a0, "image %s", x->all.paths[i]);
        snprintf(a1, sizeof a1, "heatmap of %s", x->all.paths[i]);
        const char *alt[2] = {a0, a1}, *cap[2] = {l0, x->all.paths[i]};
        html_figure_png(d, 2, (const uint8_t *const *)png, len, alt, 160, 2, cap);
        free(png[0]);
        free(png[1]);
    }
    return 0;
}

int evaluate_html_galleries(html_doc *d, eval_ctx *x, rb_error *err)
{
    int limit = (int)x->keys.gallery;
    if (limit <= 0)
        return 0;
    if (x->k != 2 || x->positive < 0) {
        html_h2(d, "False positives and false negatives");
        html_para(d, "Error galleries are drawn for two-class screening only.");
        return 0;
    }
    const int64_t n = x->n;
    int32_t *pred = malloc((size_t)(n > 0 ? n : 1) * sizeof *pred);
    gitem *fp = malloc((size_t)(n > 0 ? n : 1) * sizeof *fp), *fn = malloc((size_t)(n > 0 ? n : 1) * sizeof *fn);
    uint8_t *px = malloc((size_t)x->tm.height * x->tm.width * x->tm.channels);
    if (!pred || !fp || !fn || !px) {
        free(pred);
        free(fp);
        free(fn);
        free(px);
        return rb_fail(err, NULL, "out of memory");
    }
    evaluate_decide(x, x->all.probs, n, pred);
    int64_t nfp = 0, nfn = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!x->all.ok[i] || x->all.labels[i] < 0)
            continue;
        float p = x->all.probs[i * x->k + x->positive];
        int truth = x->all.labels[i] == x->positive, said = pred[i] == x->positive;
        if (said && !truth)
            fp[nfp++] = (gitem){i, p};
        else if (!said && truth)
            fn[nfn++] = (gitem){i, p};
    }
    qsort(fp, (size_t)nfp, sizeof *fp, by_p_desc);
    qsort(fn, (size_t)nfn, sizeof *fn, by_p_asc);
    explainer ex;
    int rc = explainer_create(&ex, &x->tm, x->threads, err);
    if (rc == 0) {
        rc = gallery(d, x, &ex, "False positives at the operating point", "false positive(s) (predicted positive)", ">=", fp,
                     nfp, limit, px, err);
        if (rc == 0)
            rc = gallery(d, x, &ex, "False negatives at the operating point", "false negative(s) (predicted negative)",
                         "<", fn, nfn, limit, px, err);
        explainer_free(&ex);
    }
    free(pred);
    free(fp);
    free(fn);
    free(px);
    return rc;
}
