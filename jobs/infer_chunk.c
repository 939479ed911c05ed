/* radbatch infer: one chunk (docs/infer.md, "How the work is spread", step 3). Its rows are
 * read and, with --since, looked up in the previous run's index; the files to predict are
 * decoded and predicted in groups of `batch` by the compute threads; the rows are then
 * committed sorted by path. */
#include "fsutil.h"
#include "image.h"
#include "infer_ctx.h"
#include "rb_buf.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void slot_error(slot *s, const char *reason)
{
    free(s->reason);
    s->reason = strdup(reason);
    s->status = NULL;
}

static void read_error(slot *s, const rb_error *e)
{
    const char *why = rb_error_reason(e, s->e.ref);
    if (strstr(why, "No such file"))
        slot_error(s, "file vanished after the listing (No such file or directory)");
    else
        slot_error(s, why);
}

static void decode_one(infer_ctx *x, slot *s, uint8_t *dst)
{
    rb_error e;
    if (!s->bytes && fs_read_file(s->e.ref, x->set.lim.max_file_bytes, &s->bytes, &s->len, &e) < 0) {
        read_error(s, &e);
        return;
    }
    infer_hash_hex(s->bytes, s->len, s->hash);
    image_info info;
    if (image_load_resized(s->bytes, s->len, x->tm.height, x->tm.width, x->tm.channels, x->tm.resize,
                           x->tm.dct_scaling, &x->set.lim, dst, &info, s->e.path, &e) < 0)
        slot_error(s, rb_error_reason(&e, s->e.path));
    else
        s->ok = 1;
    free(s->bytes);
    s->bytes = NULL;
}

/* A shard record, converted to the model's size and channels when they differ. */
static void shard_one_locked(infer_ctx *x, slot *s, uint8_t *dst)
{
    const char *hash = strrchr(s->e.ref, '#');
    if (!hash) {
        slot_error(s, "bad shard reference");
        return;
    }
    char *file = strndup(s->e.ref, (size_t)(hash - s->e.ref));
    int64_t i = strtoll(hash + 1, NULL, 10);
    rb_error e;
    if (!x->shard_path || strcmp(x->shard_path, file) != 0) {
        if (x->shard_path)
            shard_close(&x->shard);
        free(x->shard_path);
        x->shard_path = NULL;
        if (shard_open(&x->shard, file, &e) < 0) {
            slot_error(s, rb_error_reason(&e, file));
            free(file);
            return;
        }
        x->shard_path = file;
        file = NULL;
    }
    free(file);
    shard_reader *r = &x->shard;
    size_t rb = (size_t)r->height * r->width * r->channels;
    uint8_t *px = malloc(rb);
    if (!px) {
        slot_error(s, "out of memory");
        return;
    }
    if (i < 0 || i >= r->n || shard_read(r, i, 1, px, NULL, &e) < 0) {
        slot_error(s, i < 0 || i >= r->n ? "record number beyond the shard" : rb_error_reason(&e, r->path));
        free(px);
        return;
    }
    infer_hash_hex(px, rb, s->hash);
    int H = x->tm.height, W = x->tm.width, C = x->tm.channels;
    if (r->height == H && r->width == W && r->channels == C)
        memcpy(dst, px, rb);
    else {
        image_u8 in = {r->height, r->width, C, px};
        uint8_t *conv = NULL;
        if (r->channels != C) { /* gray <-> RGB as image.h does: replicate, or BT.601 luma */
            size_t np = (size_t)r->height * r->width;
            conv = malloc(np * (size_t)C);
            for (size_t p = 0; conv && p < np; p++) {
                if (C == 3)
                    conv[3 * p] = conv[3 * p + 1] = conv[3 * p + 2] = px[p];
                else
                    conv[p] = (uint8_t)((299 * px[3 * p] + 587 * px[3 * p + 1] + 114 * px[3 * p + 2] + 500) / 1000);
            }
            in.data = conv;
        }
        if (!in.data || image_resize(&in, H, W, x->tm.resize, dst, &e) < 0) {
            slot_error(s, in.data ? e.msg : "out of memory");
            free(conv);
            free(px);
            return;
        }
        free(conv);
    }
    free(px);
    s->ok = 1;
}

/* HDF5 is not thread-safe, and the open shard is shared: one caller at a time. */
static pthread_mutex_t g_hdf5_lock = PTHREAD_MUTEX_INITIALIZER;
static void shard_one(infer_ctx *x, slot *s, uint8_t *dst)
{
    pthread_mutex_lock(&g_hdf5_lock);
    shard_one_locked(x, s, dst);
    pthread_mutex_unlock(&g_hdf5_lock);
}

static int format_prediction(infer_ctx *x, slot *s, const float *p)
{
    int k = x->tm.nclasses;
    rb_buf b = {0};
    for (int c = 0; c < k; c++)
        rb_buf_printf(&b, "%s%.6f", c ? "," : "", (double)p[c]);
    rb_buf_put(&b, "", 1);
    if (b.failed)
        return -1;
    free(s->probs_text);
    s->probs_text = (char *)b.data;
    snprintf(s->label, sizeof s->label, "%s", x->tm.class_names[trained_model_decide(&x->tm, p)]);
    s->flagged = p[x->tm.positive] >= x->tm.threshold;
    return 0;
}

static int cmp_slot(const void *a, const void *b)
{
    const slot *x = *(slot *const *)a, *y = *(slot *const *)b;
    int c = strcmp(x->e.path, y->e.path);
    return c ? c : (x->order < y->order ? -1 : x->order > y->order);
}

/* --since: decide new / changed / unchanged from the previous index. */
static int compare_with_prev(infer_ctx *x, slot *s, rb_error *err)
{
    int found = infer_prev_find(&x->prev, s->e.path, err);
    if (found < 0)
        return -1;
    if (!found) {
        s->status = "new";
        return 0;
    }
    char **f = x->prev.fields; /* path,size,mtime,hash,label,probs...,flagged */
    int k = x->tm.nclasses, same;
    if (x->set.hash_mode) {
        rb_error e;
        char h[17] = "";
        if (x->set.kind == INFER_INPUT_SHARDS) {
            /* the record's pixels are hashed; read into a scratch image, predicted again if changed */
            uint8_t *scratch = malloc(x->rec_bytes);
            if (!scratch)
                return rb_fail(err, NULL, "out of memory");
            shard_one(x, s, scratch);
            free(scratch);
            if (!s->ok)
                return 0; /* an error row */
            s->ok = 0;
            same = !strcmp(s->hash, f[3]);
        } else if (fs_read_file(s->e.ref, x->set.lim.max_file_bytes, &s->bytes, &s->len, &e) < 0) {
            read_error(s, &e);
            return 0;
        } else {
            infer_hash_hex(s->bytes, s->len, h);
            same = !strcmp(h, f[3]);
        }
    } else
        same = strtoll(f[1], NULL, 10) == s->e.size && !strcmp(f[2], s->e.mtime);
    if (!same) {
        s->status = "changed";
        return 0;
    }
    s->status = "unchanged";
    snprintf(s->hash, sizeof s->hash, "%s", f[3]);
    snprintf(s->label, sizeof s->label, "%s", f[4]);
    rb_buf b = {0};
    for (int c = 0; c < k; c++) {
        if (c)
            rb_buf_put(&b, ",", 1);
        rb_buf_put(&b, f[5 + c], strlen(f[5 + c]));
    }
    rb_buf_put(&b, "", 1);
    if (b.failed)
        return rb_fail(err, NULL, "out of memory");
    s->probs_text = (char *)b.data;
    s->flagged = !strcmp(f[5 + k], "1");
    free(s->bytes);
    s->bytes = NULL;
    return 0;
}

void infer_chunk_run_group(infer_ctx *x, infer_worker *w, chunk_job *c, int g)
{
    int B = x->set.batch, i0 = g * B;
    int m = c->ntodo - i0 < B ? c->ntodo - i0 : B;
    slot **bs = c->todo + i0;
    slot *packed[INFER_MAX_BATCH];
    int q = 0;
    for (int i = 0; i < m; i++) {
        uint8_t *dst = w->images + (size_t)q * x->rec_bytes;
        if (x->set.kind == INFER_INPUT_SHARDS)
            shard_one(x, bs[i], dst);
        else
            decode_one(x, bs[i], dst);
        if (bs[i]->ok)
            packed[q++] = bs[i];
    }
    if (q == 0)
        return;
    rb_error e;
    if (trained_model_predict(w->tm, w->images, q, w->probs, &e) < 0) {
        c->err = e; /* read by the main thread after groups_left reaches 0 */
        c->failed = 1;
        return;
    }
    for (int i = 0; i < q; i++)
        if (format_prediction(x, packed[i], w->probs + (size_t)i * x->tm.nclasses) < 0) {
            rb_fail(&c->err, NULL, "out of memory");
            c->failed = 1;
            return;
        }
    atomic_fetch_add(&x->images_done, q);
}

void infer_chunk_free(chunk_job *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++) {
        free(c->slots[i].rec);
        free(c->slots[i].reason);
        free(c->slots[i].probs_text);
        free(c->slots[i].bytes);
    }
    free(c->slots);
    free(c->todo);
    free(c);
}

/* Read chunk k and decide, per file, what must be predicted. */
int infer_chunk_load(infer_ctx *x, int64_t k, chunk_job **out, rb_error *err)
{
    *out = NULL;
    char *cpath = infer_chunk_path(x->set.work, "chunk", k);
    FILE *f = cpath ? fopen(cpath, "r") : NULL;
    if (!f) {
        rb_fail(err, "rerun the command", "%s: cannot open: %s", cpath ? cpath : "chunk", strerror(errno));
        free(cpath);
        return -1;
    }
    chunk_job *c = calloc(1, sizeof *c);
    if (c) {
        c->slots = calloc((size_t)x->set.chunk, sizeof *c->slots);
        c->todo = calloc((size_t)x->set.chunk, sizeof *c->todo);
    }
    int rc = c && c->slots && c->todo ? 0 : rb_fail(err, NULL, "out of memory");
    if (c)
        c->k = k;
    rb_buf rec = {0};
    while (rc == 0 && c->n < x->set.chunk) {
        int r = csvrec_read(f, &rec);
        if (r <= 0) {
            if (r < 0)
                rc = rb_fail(err, NULL, "out of memory");
            break;
        }
        slot *s = &c->slots[c->n];
        s->rec = strndup((const char *)rec.data, rec.len);
        char *fld[6];
        int nf = s->rec ? csv_split_line(s->rec, fld, 6) : 0;
        if (!s->rec || infer_entry_parse(fld, nf, &s->e) < 0) {
            rc = rb_fail(err, "delete the run's work/ folder to list the input again", "%s: bad row %d", cpath,
                         c->n + 1);
            free(s->rec);
            s->rec = NULL;
            break;
        }
        s->order = c->n++;
    }
    fclose(f);
    rb_buf_free(&rec);
    free(cpath);
    for (int i = 0; rc == 0 && i < c->n; i++) {
        slot *s = &c->slots[i];
        if (x->have_prev)
            rc = compare_with_prev(x, s, err);
        else
            s->status = "new";
        if (rc == 0 && s->status && strcmp(s->status, "unchanged") != 0)
            c->todo[c->ntodo++] = s;
    }
    if (rc < 0) {
        infer_chunk_free(c);
        return -1;
    }
    c->ngroups = (c->ntodo + x->set.batch - 1) / x->set.batch;
    c->groups_left = c->ngroups;
    *out = c;
    return 0;
}

/* Write the chunk's rows sorted by path (ties in listing order): errors first, the part last. */
int infer_chunk_commit(infer_ctx *x, chunk_job *c, rb_error *err)
{
    if (c->failed) {
        *err = c->err;
        return -1;
    }
    slot **order = calloc((size_t)c->n + 1, sizeof *order);
    if (!order)
        return rb_fail(err, NULL, "out of memory");
    for (int i = 0; i < c->n; i++)
        order[i] = &c->slots[i];
    if (c->n > 1)
        qsort(order, (size_t)c->n, sizeof *order, cmp_slot);
    rb_buf part = {0}, errs = {0};
    for (int i = 0; i < c->n; i++) {
        slot *s = order[i];
        if (s->status && !s->probs_text && !s->reason)
            slot_error(s, "internal: no prediction");
        if (!s->status || s->reason) {
            csvrow_field(&errs, s->e.path, 1);
            csvrow_field(&errs, s->reason ? s->reason : "unknown error", 0);
            rb_buf_put(&errs, "\n", 1);
            continue;
        }
        char num[32];
        snprintf(num, sizeof num, "%" PRId64, s->e.size);
        csvrow_field(&part, s->e.path, 1);
        csvrow_field(&part, num, 0);
        csvrow_field(&part, s->e.mtime, 0);
        csvrow_field(&part, s->hash, 0);
        csvrow_field(&part, s->status, 0);
        csvrow_field(&part, s->label, 0);
        rb_buf_put(&part, ",", 1);
        rb_buf_put(&part, s->probs_text, strlen(s->probs_text));
        rb_buf_put(&part, s->flagged ? ",1\n" : ",0\n", 3);
    }
    free(order);
    int rc = part.failed || errs.failed ? rb_fail(err, NULL, "out of memory") : 0;
    char *ep = infer_chunk_path(x->set.work, "errors", c->k), *pp = infer_chunk_path(x->set.work, "part", c->k);
    if (rc == 0 && (!ep || !pp))
        rc = rb_fail(err, NULL, "out of memory");
    if (rc == 0)
        rc = infer_write_atomic(ep, errs.data ? (const void *)errs.data : "", errs.len, err);
    if (rc == 0)
        rc = infer_write_atomic(pp, part.data ? (const void *)part.data : "", part.len, err);
    free(ep);
    free(pp);
    rb_buf_free(&part);
    rb_buf_free(&errs);
    return rc;
}
