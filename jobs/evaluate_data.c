/* radbatch evaluate, step 2 (docs/evaluate.md): the data. A shards folder (it holds
 * index.json) is opened and checked against the model's size and classes; image folders
 * are listed by rank 0 (sorted, as convert lists them), the list broadcast, and the chosen
 * split kept. */
#include "evaluate.h"
#include "fsutil.h"
#include "job_run.h"
#include "rb_log.h"

#include <stdlib.h>
#include <string.h>

static int join_names(char **names, int n, char **out)
{
    rb_buf b = {0};
    for (int i = 0; i < n; i++)
        rb_buf_printf(&b, "%s%s", i ? "," : "", names[i]);
    rb_buf_put(&b, "", 1);
    if (b.failed) {
        rb_buf_free(&b);
        return -1;
    }
    *out = (char *)b.data;
    return 0;
}

/* A shards folder: the records of the split, at the model's size and with its classes. */
static int open_shards(eval_ctx *x, const char *split, rb_error *err)
{
    if (strchr(x->data, ','))
        return rb_fail(err, "evaluate one shards folder at a time", "evaluate: data '%s' lists several inputs "
                                                                     "and the first is a shards folder",
                       x->data);
    if (shard_dataset_open(&x->ds, x->data, split, 0, err) < 0)
        return -1;
    shard_dataset *d = &x->ds;
    if (d->height != x->tm.height || d->width != x->tm.width || d->channels != x->tm.channels)
        return rb_fail(err, "convert the data at the model's size, or evaluate on the image folders",
                       "%s: records are %dx%dx%d, the model takes %dx%dx%d", x->data, d->height, d->width,
                       d->channels, x->tm.height, x->tm.width, x->tm.channels);
    if (d->index.nclasses != x->k)
        return rb_fail(err, "evaluate on data with the model's classes", "%s: %d classes, the model has %d",
                       x->data, d->index.nclasses, x->k);
    for (int i = 0; i < x->k; i++)
        if (strcmp(d->index.class_names[i], x->tm.class_names[i]) != 0)
            return rb_fail(err, "the shards must list the model's classes in the model's order",
                           "%s: class %d is '%s', the model's is '%s'", x->data, i, d->index.class_names[i],
                           x->tm.class_names[i]);
    if (strcmp(d->index.resize, resize_mode_name(x->tm.resize)) != 0 && x->w.rank == 0)
        rb_warn("%s: records were resized with '%s', the model was trained with '%s'", x->data, d->index.resize,
                resize_mode_name(x->tm.resize));
    x->n = d->n;
    return 0;
}

/* Image folders: rank 0 lists them and broadcasts the list. */
static int list_images(eval_ctx *x, rb_error *err)
{
    int ok = 1;
    rb_buf packed = {0};
    if (x->w.rank == 0) {
        char *roots[256];
        int nroots = 0;
        char *list = strdup(x->data), *save = NULL;
        for (char *t = strtok_r(list, ",", &save); t && nroots < 256; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            if (*t)
                roots[nroots++] = t;
        }
        input_layout lay;
        input_layout_parse(x->keys.layout, &lay);
        char *classes = NULL;
        ok = join_names(x->tm.class_names, x->k, &classes) == 0;
        if (!ok)
            rb_fail(err, NULL, "out of memory");
        ok = ok && inputs_scan(&x->in, roots, nroots, lay, classes, err) == 0;
        free(classes);
        free(list);
        ok = ok && inputs_pack(&x->in, &packed) == 0;
    }
    if (!rb_mpi_agree_ok(ok)) {
        rb_buf_free(&packed);
        return job_failed_where(ok);
    }
    return inputs_share(&x->in, &packed, x->w.rank, err);
}

/* Keep the images of the chosen split. */
static int keep_split(eval_ctx *x, const char *split, rb_error *err)
{
    /* split folders: keep the chosen split (class folders have no split: keep all) */
    int sp = shard_index_split_id(split);
    int64_t m = 0;
    for (int64_t i = 0; i < x->in.n; i++) {
        plan_entry *e = &x->in.e[i];
        if (e->given_split >= 0)
            x->img_splits = 1;
        if (e->given_split >= 0 && sp != SHARD_INDEX_SPLITS - 1 && e->given_split != sp) {
            free(e->rel);
            free(e->abs);
            continue;
        }
        x->in.e[m++] = *e;
    }
    x->in.n = m;
    x->n = m;
    if (m == 0)
        return rb_fail(err, "check the folders: one sub-folder per class, named like the model's classes",
                       "evaluate: no images found in %s%s%s", x->data, x->in.nroots ? " for split " : "",
                       x->in.nroots ? split : "");
    return 0;
}

/* The data: a shards folder, or image folders listed by rank 0 and broadcast. */
int evaluate_open_data(eval_ctx *x, rb_error *err)
{
    const char *split = x->keys.split;
    char *first = strdup(x->data);
    char *comma = strchr(first, ',');
    if (comma)
        *comma = '\0';
    char *idx = fs_join(first, "index.json");
    x->is_shards = fs_is_file(idx);
    free(idx);
    free(first);
    if (x->is_shards)
        return open_shards(x, split, err);
    int rc = list_images(x, err);
    return rc < 0 ? rc : keep_split(x, split, err);
}
