/* radbatch evaluate, steps 3 to 5 (docs/evaluate.md): this rank's forward passes and the
 * gather to rank 0.
 *
 * Records are cut into batches of batch_size at fixed global positions; rank r of P takes
 * the contiguous run of batches [nb*r/P, nb*(r+1)/P). A forward pass gives every model
 * thread of the rank one batch, the last one padded with blank images, so a record is
 * computed with the same rows around it whatever the rank and thread counts. An image that
 * cannot be read keeps its reason and stays out of the pass. Each record is then packed
 * (label, probabilities or reason, path) and rank 0 unpacks them all in record order. */
#include "evaluate.h"
#include "rb_log.h"
#include "test_hooks.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* This rank's run of records [lo, hi) and its arrays; -1 when out of memory. */
static int alloc_mine(eval_ctx *x, int64_t S)
{
    int64_t nb = (x->n + S - 1) / S, P = x->w.size, r = x->w.rank;
    eval_mine *m = &x->mine;
    m->lo = nb * r / P * S;
    m->hi = nb * (r + 1) / P * S;
    if (m->hi > x->n)
        m->hi = x->n;
    if (m->lo > m->hi)
        m->lo = m->hi;
    size_t cnt = (size_t)(m->hi - m->lo > 0 ? m->hi - m->lo : 1);
    m->probs = calloc(cnt * x->k, sizeof *m->probs);
    m->labels = calloc(cnt, sizeof *m->labels);
    m->ok = calloc(cnt, 1);
    m->reason = calloc(cnt, sizeof *m->reason);
    return m->probs && m->labels && m->ok && m->reason ? 0 : -1;
}

/* Fill rows [S, H, W, C] with the nbat records from b0 (blank padding after the readable
 * ones); sl[i] = slot0 + the row of record b0+i, or -1 when it could not be read. */
static int load_batch(eval_ctx *x, int64_t b0, int nbat, int64_t S, uint8_t *rows, int *sl, int slot0,
                      int64_t *idx, rb_error *err)
{
    size_t rec = (size_t)x->tm.height * x->tm.width * x->tm.channels;
    eval_mine *m = &x->mine;
    int rc = 0, nok = 0;
    if (x->is_shards && nbat > 0) {
        for (int i = 0; i < nbat; i++)
            idx[i] = b0 + i;
        rc = shard_dataset_read(&x->ds, idx, nbat, rows, m->labels + (b0 - m->lo), err);
        for (int i = 0; i < nbat; i++) {
            sl[i] = slot0 + i;
            m->ok[b0 - m->lo + i] = 1;
        }
        nok = nbat;
    } else
        for (int i = 0; i < nbat; i++) {
            plan_entry *e = &x->in.e[b0 + i];
            if (x->shift_severity > 0 && !m->ok[b0 - m->lo + i]) { /* a stress pass: known unreadable */
                sl[i] = -1;
                continue;
            }
            m->labels[b0 - m->lo + i] = e->label;
            rb_error fe;
            image_info info;
            if (trained_model_load_image(&x->tm, e->abs, rows + (size_t)nok * rec, &info, &fe) < 0) {
                const char *why = rb_error_reason(&fe, e->abs);
                sl[i] = -1;
                m->reason[b0 - m->lo + i] = strdup(why);
                if (!x->keys.quiet)
                    rb_warn("%s: %s", e->rel, why);
                continue;
            }
            sl[i] = slot0 + nok++;
            m->ok[b0 - m->lo + i] = 1;
        }
    if (x->stress_pass) /* the stress test's shift of every image read, keyed to its record index */
        for (int i = 0; i < nbat; i++)
            if (sl[i] >= 0)
                rb_shift_apply(rows + (size_t)(sl[i] - slot0) * rec, x->tm.height, x->tm.width, x->tm.channels,
                               (rb_shift)x->shift, x->shift_severity, (uint64_t)x->keys.seed, (uint64_t)(b0 + i),
                               x->shift_tmp);
    memset(rows + (size_t)nok * rec, 0, (size_t)(S - nok) * rec); /* blank padding */
    return rc;
}

/* Pack: label int32, ok int8, probabilities (readable) or reason (unreadable), path. */
static int pack_mine(eval_ctx *x, rb_buf *pack, rb_error *err)
{
    const eval_mine *m = &x->mine;
    for (int64_t j = 0; j < m->hi - m->lo; j++) {
        int64_t i = m->lo + j;
        rb_buf_put(pack, &m->labels[j], sizeof(int32_t));
        rb_buf_put(pack, &m->ok[j], 1);
        if (m->ok[j])
            rb_buf_put(pack, m->probs + j * x->k, (size_t)x->k * sizeof(float));
        else
            rb_buf_put_str(pack, m->reason[j] ? m->reason[j] : "unreadable");
        if (x->is_shards) {
            char *p = NULL;
            if (shard_dataset_path(&x->ds, i, &p, err) < 0)
                return -1;
            rb_buf_put_str(pack, p);
            free(p);
        } else
            rb_buf_put_str(pack, x->in.e[i].rel);
    }
    return pack->failed ? rb_fail(err, NULL, "out of memory") : 0;
}

int evaluate_my_records(eval_ctx *x, rb_buf *pack, rb_error *err)
{
    if (alloc_mine(x, x->keys.batch_size) < 0)
        return rb_fail(err, NULL, "out of memory for %lld records", (long long)x->n);
    if (evaluate_forward(x, x->mine.probs, "evaluating (rank 0's share)", err) < 0)
        return -1;
    return pack_mine(x, pack, err);
}

int evaluate_forward(eval_ctx *x, float *out, const char *what, rb_error *err)
{
    /* S records per global batch; a forward pass takes T batches, one per model thread */
    int64_t S = x->keys.batch_size, T = x->threads;
    int k = x->k;
    size_t rec = (size_t)x->tm.height * x->tm.width * x->tm.channels;
    eval_mine *m = &x->mine;
    int64_t mine = m->hi - m->lo;
    uint8_t *images = malloc((size_t)(T * S) * rec);
    int64_t *idx = malloc((size_t)S * sizeof *idx);
    int *slot = malloc((size_t)(T * S) * sizeof *slot);
    float *probs = malloc((size_t)(T * S) * k * sizeof *probs);
    if (!images || !idx || !slot || !probs) {
        free(images);
        free(idx);
        free(slot);
        free(probs);
        return rb_fail(err, NULL, "out of memory for %lld images", (long long)(T * S));
    }
    rb_progress prog;
    rb_progress_start(&prog, what, mine);
    int rc = 0;
    long long passes = 0;
    for (int64_t c0 = m->lo; c0 < m->hi && rc == 0; c0 += T * S) {
        int64_t c1 = c0 + T * S < m->hi ? c0 + T * S : m->hi;
        for (int64_t b = 0; b < T && rc == 0; b++) {
            int64_t b0 = c0 + b * S;
            int nbat = (int)(b0 >= c1 ? 0 : c1 - b0 < S ? c1 - b0 : S);
            rc = load_batch(x, b0, nbat, S, images + (size_t)(b * S) * rec, slot + b * S, (int)(b * S), idx, err);
        }
        if (rc == 0)
            rc = trained_model_predict(&x->tm, images, (int)(T * S), probs, err);
        for (int64_t b = 0; rc == 0 && b < T; b++)
            for (int64_t i = 0; i < S && c0 + b * S + i < c1; i++) {
                int64_t j = c0 + b * S + i - m->lo;
                int sidx = slot[b * S + i];
                if (sidx >= 0)
                    memcpy(out + j * k, probs + (size_t)sidx * k, (size_t)k * sizeof *probs);
            }
        if (rc == 0)
            rb_progress_update(&prog, c1 - m->lo);
        if (rc == 0 && ++passes == test_hook_int(HOOK_TERM_AFTER_PASSES))
            raise(SIGTERM); /* the stop test: as Slurm's signal before the time limit */
    }
    free(images);
    free(idx);
    free(slot);
    free(probs);
    if (rc < 0)
        return -1;
    rb_progress_finish(&prog, mine);
    return 0;
}

/* Rank 0: unpack every rank's records, in record order. */
int evaluate_unpack_all(eval_ctx *x, const uint8_t *data, size_t len, rb_error *err)
{
    int64_t n = x->n;
    int k = x->k;
    x->all.labels = calloc((size_t)(n ? n : 1), sizeof *x->all.labels);
    x->all.ok = calloc((size_t)(n ? n : 1), 1);
    x->all.probs = calloc((size_t)(n ? n : 1) * k, sizeof *x->all.probs);
    x->all.paths = calloc((size_t)(n ? n : 1), sizeof *x->all.paths);
    x->all.reasons = calloc((size_t)(n ? n : 1), sizeof *x->all.reasons);
    if (!x->all.labels || !x->all.ok || !x->all.probs || !x->all.paths || !x->all.reasons)
        return rb_fail(err, NULL, "out of memory for %lld records", (long long)n);
    rb_buf b = rb_buf_reader(data, len);
    int64_t nbad = 0;
    for (int64_t i = 0; i < n; i++) {
        const char *p, *r = NULL;
        if (rb_buf_get(&b, &x->all.labels[i], sizeof(int32_t)) < 0 || rb_buf_get(&b, &x->all.ok[i], 1) < 0 ||
            (x->all.ok[i] ? rb_buf_get(&b, x->all.probs + i * k, (size_t)k * sizeof(float)) < 0
                          : !(r = rb_buf_get_str(&b))) ||
            !(p = rb_buf_get_str(&b)))
            return rb_fail(err, NULL, "internal: gathered records end at %lld of %lld", (long long)i, (long long)n);
        x->all.paths[i] = strdup(p);
        if (r) {
            x->all.reasons[i] = strdup(r);
            nbad++;
        }
    }
    /* errors.csv rows: what the listing could not use, then the unreadable images */
    int64_t nlist = x->is_shards ? 0 : x->in.nerrors;
    x->all.err_path = calloc((size_t)(nlist + nbad + 1), sizeof *x->all.err_path);
    x->all.err_reason = calloc((size_t)(nlist + nbad + 1), sizeof *x->all.err_reason);
    if (!x->all.err_path || !x->all.err_reason)
        return rb_fail(err, NULL, "out of memory");
    rb_buf eb = x->in.errors;
    eb.pos = 0;
    for (int64_t i = 0; i < nlist; i++) {
        const char *p = rb_buf_get_str(&eb), *r = rb_buf_get_str(&eb);
        if (!p || !r)
            break;
        x->all.err_path[x->all.nerr] = p;
        x->all.err_reason[x->all.nerr++] = r;
    }
    for (int64_t i = 0; i < n; i++)
        if (!x->all.ok[i]) {
            x->all.err_path[x->all.nerr] = x->all.paths[i];
            x->all.err_reason[x->all.nerr++] = x->all.reasons[i] ? x->all.reasons[i] : "unreadable";
        }
    return 0;
}
