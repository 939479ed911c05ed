/* radbatch train's training loop (docs/train.md "How a step works", "Validation and
 * history", "Callbacks and stages"): the epochs of both stages, one step (forward,
 * backward, the one gradient allreduce, the optimizer step), validation after every epoch,
 * the epoch-end callbacks (best model, early stopping, reduce LR on plateau) and the
 * cross-rank weight check. */
#include "fsutil.h"
#include "job_run.h"
#include "loss.h"
#include "metrics.h"
#include "rb_log.h"
#include "test_hooks.h"
#include "train_ctx.h"
#include "train_data.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

const char *const train_metric_names[M_COUNT] = {"loss", "accuracy", "val_loss", "val_accuracy",
                                                 "val_sensitivity", "val_specificity", "val_auc"};

static volatile sig_atomic_t g_term = 0;
void train_on_sigterm(int sig) { (void)sig; g_term = 1; }

static int metric_is_loss(const char *name) { return strstr(name, "loss") != NULL; }

static int metric_id(const char *name)
{
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(train_metric_names[i], name) == 0)
            return i;
    return -1;
}

/* Without sync_bn each rank's trainable BatchNorms update their moving statistics from
 * their own rows, so ranks would drift apart; averaging them after every step (a few
 * hundred floats) keeps one model on every rank, so a checkpoint written by rank 0 holds
 * the whole state and a resumed run continues exactly. */
static void average_bn_statistics(train_ctx *x)
{
    if (x->w.size < 2 || x->keys.sync_bn)
        return;
    for (int i = 0; i < x->a->m->nnodes; i++) {
        const rb_node *nd = &x->a->m->nodes[i];
        if (nd->op != RB_OP_BATCHNORM || !nd->trainable || (nd->in_base && !x->a->m->base_training))
            continue; /* moving statistics unchanged by training: identical everywhere */
        for (int k = 0; k < nd->nweights; k++) {
            if (!nd->is_state[k])
                continue;
            float *v = x->a->m->state + nd->woff[k];
            rb_mpi_sum_f32(v, nd->wsize[k]);
            for (int64_t j = 0; j < nd->wsize[k]; j++)
                v[j] /= (float)x->w.size;
        }
    }
}

/* ---- one training step ------------------------------------------------------------ */
static int train_step(train_ctx *x, const train_batch *b, rb_error *err)
{
    rb_model_zero_grads(x->a->m);
    double loss_sum = 0, correct = 0;
    int k = x->sigmoid ? 1 : x->nclasses;
    if (b->n > 0) {
        rb_forward_args a = {.input = b->features ? (const void *)b->features : (const void *)b->images,
                             .type = b->features ? RB_INPUT_F32 : RB_INPUT_U8, .n = b->n, .training = 1,
                             .rng_key = (uint64_t)x->epoch, .sample_base = b->sample_base};
        if (rb_model_forward(x->a->m, x->a->ws, &a, err) < 0)
            return -1;
        const float *logits = rb_workspace_logits(x->a->ws);
        const float *out = rb_workspace_output(x->a->ws, x->a->m->output);
        loss_spec ls = {.n = b->n, .classes = k, .global_n = b->global_n, .class_weight = x->class_weight,
                        .label_smoothing = (float)x->keys.label_smoothing};
        int rc;
        if (x->sigmoid) {
            for (int i = 0; i < b->n; i++)
                x->targets[i] = b->labels[i] == x->positive ? 1.0f : 0.0f;
            rc = loss_bce_logits(&ls, logits, x->targets, &loss_sum, x->dlogits, err);
        } else
            rc = loss_sparse_ce_logits(&ls, logits, b->labels, &loss_sum, x->dlogits, err);
        if (rc < 0)
            return -1;
        for (int i = 0; i < b->n; i++) {
            int pred;
            if (x->sigmoid)
                pred = out[i] >= 0.5f ? x->positive : 1 - x->positive;
            else {
                pred = 0;
                for (int c = 1; c < k; c++)
                    if (out[(size_t)i * k + c] > out[(size_t)i * k + pred])
                        pred = c;
            }
            correct += pred == b->labels[i];
        }
        if (rb_model_backward(x->a->m, x->a->ws, x->dlogits, 1, err) < 0)
            return -1;
    } else if (x->keys.sync_bn) {
        /* a rank without rows must still join the BatchNorm reductions: not supported */
        return rb_fail(err, "use a global batch of at least the number of ranks", "train: a batch with fewer rows than ranks and sync_bn");
    }
    /* the one allreduce of the step: mean gradient (losses are already divided by the
     * global batch) over the span holding every trainable weight */
    double t_ar = rb_now();
    rb_mpi_sum_f32(x->a->m->grads + x->a->span_off, x->a->span_len);
    x->sums.t_allreduce += rb_now() - t_ar;
    double l2 = x->keys.l2;
    double stats[4] = {loss_sum, correct, (double)b->n, (double)g_term};
    rb_mpi_sum_f64(stats, 4);
    if (l2 > 0) {
        optim_l2_grad(x->a->m->grads, x->a->m->params, x->a->kernels, x->a->nkernels, (float)l2);
        stats[0] += (double)b->global_n * optim_l2_penalty(x->a->m->params, x->a->kernels, x->a->nkernels, (float)l2);
    }
    if (!isfinite(stats[0]))
        return rb_fail(err, "lower the learning rate; the last good checkpoint is kept in run_dir/checkpoints",
                       "train: the loss became %f at epoch %lld step %lld", stats[0], (long long)x->epoch + 1,
                       (long long)x->step + 1);
    optim_step(&x->a->opt, x->a->m->params, x->a->m->grads, x->a->ranges, x->a->nranges, x->lr);
    average_bn_statistics(x);
    x->step++;
    x->sums.loss += stats[0];
    x->sums.correct += stats[1];
    x->sums.seen += stats[2];
    if (stats[3] > 0)
        x->stop_requested = 1; /* some rank got SIGTERM: all stop after the same step */
    return 0;
}

/* ---- validation ---------------------------------------------------------------------- */
int train_validate(train_ctx *x, rb_error *err)
{
    for (int i = M_VLOSS; i < M_COUNT; i++)
        x->metrics[i] = NAN;
    if (!x->have_val)
        return 0;
    shard_dataset *d = &x->va;
    int P = x->w.size, r = x->w.rank;
    int64_t lo = d->n * r / P, hi = d->n * (r + 1) / P;
    int k = x->sigmoid ? 1 : x->nclasses;
    int bs = rb_workspace_batch(x->a->ws_eval);
    uint8_t *img = malloc((size_t)bs * d->record_bytes + 1);
    int64_t *idx = malloc((size_t)bs * sizeof *idx);
    int32_t *lab = malloc((size_t)bs * sizeof *lab);
    float *scores = malloc((size_t)(hi - lo + 1) * sizeof *scores); /* positive-class prob */
    float *lgts = malloc((size_t)(hi - lo + 1) * (size_t)k * sizeof *lgts); /* the output's logits */
    int32_t *labels = malloc((size_t)(hi - lo + 1) * sizeof *labels);
    float *prob = malloc((size_t)bs * (size_t)x->nclasses * sizeof *prob);
    float *dummy = malloc((size_t)bs * (size_t)x->nclasses * sizeof *dummy);
    int32_t *pred = malloc((size_t)bs * sizeof *pred);
    int rc = 0;
    double loss_sum = 0;
    int64_t *cm = calloc((size_t)x->nclasses * (size_t)x->nclasses, sizeof *cm);
    if (!img || !idx || !lab || !scores || !lgts || !labels || !prob || !dummy || !pred || !cm)
        rc = rb_fail(err, NULL, "out of memory in validation");
    for (int64_t s = lo; rc == 0 && s < hi; s += bs) {
        int n = (int)(hi - s < bs ? hi - s : bs);
        for (int i = 0; i < n; i++)
            idx[i] = s + i;
        rb_forward_args a = {.input = img, .type = RB_INPUT_U8, .n = n, .sample_base = s};
        if (x->cache.on) { /* base features computed once: run the head alone */
            memcpy(lab, d->labels + s, (size_t)n * sizeof *lab);
            a.input = x->cache.val + s * x->cache.dim;
            a.type = RB_INPUT_F32;
        } else if ((rc = shard_dataset_read(d, idx, n, img, lab, err)) < 0)
            break;
        if ((rc = rb_model_forward(x->a->m, x->a->ws_eval, &a, err)) < 0)
            break;
        const float *out = rb_workspace_output(x->a->ws_eval, x->a->m->output);
        const float *logits = rb_workspace_logits(x->a->ws_eval);
        double part = 0;
        loss_spec ls = {.n = n, .classes = k, .global_n = n}; /* only the sum is used */
        if (x->sigmoid) {
            for (int i = 0; i < n; i++)
                x->targets[i] = lab[i] == x->positive ? 1.0f : 0.0f;
            rc = loss_bce_logits(&ls, logits, x->targets, &part, dummy, err);
        } else
            rc = loss_sparse_ce_logits(&ls, logits, lab, &part, dummy, err);
        loss_sum += part;
        for (int i = 0; i < n; i++) {
            if (x->sigmoid) {
                float p1 = out[i];
                prob[(size_t)i * 2 + x->positive] = p1;
                prob[(size_t)i * 2 + 1 - x->positive] = 1 - p1;
            } else
                memcpy(prob + (size_t)i * k, out + (size_t)i * k, (size_t)k * sizeof *prob);
            scores[s - lo + i] = prob[(size_t)i * x->nclasses + x->positive];
            if (logits)
                memcpy(lgts + (s - lo + i) * k, logits + (size_t)i * k, (size_t)k * sizeof *lgts);
            else
                rc = rb_fail(err, NULL, "train: the model's output has no logits");
            labels[s - lo + i] = lab[i];
        }
        metrics_argmax(pred, prob, n, x->nclasses);
        metrics_confusion_add(cm, x->nclasses, lab, pred, n);
    }
    if (!rb_mpi_agree_ok(rc == 0)) {
        free(img); free(idx); free(lab); free(scores); free(lgts); free(labels); free(prob); free(dummy); free(pred); free(cm);
        return rc == 0 ? rb_fail(err, NULL, "validation failed on another rank") : -1;
    }
    /* counts reduce; scores gather to rank 0 for the AUC */
    double tot[2] = {loss_sum, (double)(hi - lo)};
    rb_mpi_sum_f64(tot, 2);
    rb_mpi_sum_i64(cm, x->nclasses * x->nclasses);
    void *all_s = NULL, *all_l = NULL, *all_z = NULL;
    size_t ls1, ls2, ls3;
    rc = rb_mpi_gather_bytes(scores, (size_t)(hi - lo) * sizeof *scores, &all_s, &ls1, err);
    if (rc == 0)
        rc = rb_mpi_gather_bytes(labels, (size_t)(hi - lo) * sizeof *labels, &all_l, &ls2, err);
    if (rc == 0)
        rc = rb_mpi_gather_bytes(lgts, (size_t)(hi - lo) * (size_t)k * sizeof *lgts, &all_z, &ls3, err);
    double v[M_COUNT];
    for (int i = 0; i < M_COUNT; i++)
        v[i] = NAN;
    if (rc == 0 && x->w.rank == 0) {
        int64_t n = (int64_t)(ls1 / sizeof(float));
        v[M_VLOSS] = tot[0] / (tot[1] > 0 ? tot[1] : 1);
        /* positive class vs the rest, at the argmax decision; NaN where undefined */
        metrics_screening sc;
        metrics_screening_from_confusion(&sc, cm, x->nclasses, x->positive);
        int64_t total = sc.tp + sc.fp + sc.tn + sc.fn, right = 0;
        for (int c = 0; c < x->nclasses; c++)
            right += cm[c * x->nclasses + c];
        v[M_VACC] = total ? (double)right / (double)total : NAN;
        v[M_VSENS] = sc.tp + sc.fn ? sc.sensitivity : NAN;
        v[M_VSPEC] = sc.tn + sc.fp ? sc.specificity : NAN;
        rb_error aerr;
        if (metrics_auc(&v[M_VAUC], (const int32_t *)all_l, (const float *)all_s, 1, n, x->nclasses, x->positive,
                        &aerr) < 0)
            v[M_VAUC] = NAN;
        free(x->val.scores);
        free(x->val.labels);
        free(x->val.logits);
        x->val.scores = all_s;
        x->val.labels = all_l;
        x->val.logits = all_z;
        x->val.m = k;
        x->val.n = n;
        all_s = all_l = all_z = NULL;
    }
    free(all_s);
    free(all_l);
    free(all_z);
    rb_mpi_bcast_f64(v, M_COUNT); /* callbacks decide alike on every rank */
    for (int i = M_VLOSS; i < M_COUNT; i++)
        x->metrics[i] = v[i];
    free(img); free(idx); free(lab); free(scores); free(lgts); free(labels); free(prob); free(dummy); free(pred); free(cm);
    return rc;
}

/* Compare a checksum of the weights across ranks: every rank must hold the same model. */
int train_check_consistency(train_ctx *x, rb_error *err)
{
    uint64_t mine = XXH3_64bits(x->a->m->params, (size_t)x->a->m->nparams * sizeof(float)) ^
                    XXH3_64bits(x->a->m->state, (size_t)x->a->m->nstate * sizeof(float));
    void *all = NULL;
    size_t len;
    if (rb_mpi_allgather_bytes(&mine, sizeof mine, &all, &len, err) < 0)
        return -1;
    int bad = -1;
    for (int r = 0; r < x->w.size; r++)
        if (((uint64_t *)all)[r] != ((uint64_t *)all)[0])
            bad = r;
    free(all);
    if (bad >= 0)
        return rb_fail(err, "a rank computed differently (hardware fault, or different library builds on different nodes)",
                       "train: the weights of rank %d differ from rank 0's (epoch %lld, step %lld)", bad, (long long)x->epoch,
                       (long long)x->step);
    return 0;
}

/* ---- callbacks ------------------------------------------------------------------------ */
static int run_callbacks(train_ctx *x, int *stop_stage, rb_error *err)
{
    const char *bm = x->keys.best_metric;
    int id = metric_id(bm);
    double v = x->metrics[id];
    if (isnan(v) && id >= M_VLOSS) {
        id = M_LOSS; /* no validation split: the training loss decides */
        v = x->metrics[M_LOSS];
    }
    int minimize = metric_is_loss(train_metric_names[id]);
    int improved = isnan(x->best.value) || (minimize ? v < x->best.value : v > x->best.value);
    if (improved) {
        x->best.value = v;
        x->best.epoch = x->epoch;
        memcpy(x->best.metrics, x->metrics, sizeof x->metrics);
        x->best.wait_es = x->best.wait_lr = 0;
        memcpy(x->best.params, x->a->m->params, (size_t)x->a->m->nparams * sizeof(float));
        memcpy(x->best.state, x->a->m->state, (size_t)x->a->m->nstate * sizeof(float));
        int ok = 1;
        if (x->w.rank == 0) {
            char *p = fs_join(x->run_dir, "best.h5");
            char *card = train_model_card(x, 0, NAN);
            ok = p && card && train_save_model(x, p, card, 0, err) == 0;
            free(p);
            free(card);
        }
        if (!rb_mpi_agree_ok(ok))
            return job_failed_where(ok);
    } else {
        x->best.wait_es++;
        x->best.wait_lr++;
    }
    int64_t pat = x->keys.reduce_lr_patience;
    if (pat > 0 && x->best.wait_lr >= pat) {
        float nlr = (float)(x->lr * x->keys.reduce_lr_factor);
        float minlr = (float)x->keys.min_lr;
        if (nlr < minlr)
            nlr = minlr;
        if (nlr < x->lr)
            rb_info("reducing the learning rate to %.3g (%s did not improve for %lld epochs)", nlr, train_metric_names[id],
                    (long long)pat);
        x->lr = nlr;
        x->best.wait_lr = 0;
    }
    int64_t es = x->keys.early_stopping_patience;
    *stop_stage = es > 0 && x->best.wait_es >= es;
    if (*stop_stage)
        rb_info("early stopping: %s did not improve for %lld epochs (best %.4f at epoch %lld)", train_metric_names[id],
                (long long)es, x->best.value, (long long)x->best.epoch + 1);
    return 0;
}

static void print_epoch(train_ctx *x, int64_t nb, double secs, double train_secs)
{
    char line[1024];
    int l = snprintf(line, sizeof line, "%lld/%lld - %.0fs - %.0f img/s", (long long)nb, (long long)nb, secs,
                     train_secs > 0 ? x->sums.seen / train_secs : 0.0);
    for (int i = 0; i < M_COUNT; i++)
        if (!isnan(x->metrics[i]))
            l += snprintf(line + l, sizeof line - (size_t)l, " - %s: %.4f", train_metric_names[i], x->metrics[i]);
    l += snprintf(line + l, sizeof line - (size_t)l, " - lr: %.3g", x->lr);
    if (x->w.size > 1 && train_secs > 0)
        snprintf(line + l, sizeof line - (size_t)l, " - allreduce: %.1f%% of training time", 100.0 * x->sums.t_allreduce / train_secs);
    rb_info("%s", line);
}

/* ---- the run ------------------------------------------------------------------------- */
/* Feature-cached stage: batches of cached base features instead of images. */
static train_batch *cached_next(train_ctx *x, train_batch *tb, float *feat, int64_t b, int64_t nb,
                                const int64_t *perm)
{
    if (b >= nb)
        return NULL;
    int64_t lo, hi;
    int gn;
    train_batch_slice(x->tr.n, (int)x->keys.batch_size, b, x->w.rank, x->w.size, &lo, &hi, &gn);
    tb->n = (int)(hi - lo);
    tb->global_n = gn;
    tb->index = b;
    tb->sample_base = lo;
    for (int i = 0; i < tb->n; i++) {
        memcpy(feat + (size_t)i * x->cache.dim, x->cache.train + perm[lo + i] * x->cache.dim,
               (size_t)x->cache.dim * sizeof(float));
        tb->labels[i] = x->tr.labels[perm[lo + i]];
    }
    tb->features = feat;
    return tb;
}

static int train_epoch(train_ctx *x, int64_t *perm, rb_error *err)
{
    int B = (int)x->keys.batch_size;
    int64_t nb = train_batches(x->tr.n, B);
    if (x->next_batch == 0)
        x->sums.loss = x->sums.correct = x->sums.seen = 0;
    train_epoch_order(perm, x->tr.n, (uint64_t)x->keys.seed, x->epoch, x->keys.shuffle);
    augment_config aug;
    train_aug_from_config(x, &aug);
    train_loader ld;
    memset(&ld, 0, sizeof ld);
    train_batch cb;
    memset(&cb, 0, sizeof cb);
    float *feat = NULL;
    int local = (B + x->w.size - 1) / x->w.size;
    if (x->cache.on) {
        feat = malloc((size_t)local * (size_t)x->cache.dim * sizeof(float) + 4);
        cb.labels = malloc((size_t)local * sizeof(int32_t) + 4);
        if (!feat || !cb.labels) {
            free(feat);
            free(cb.labels);
            return rb_fail(err, NULL, "out of memory");
        }
    } else if (train_loader_start(&ld, &x->tr, perm, x->next_batch, B, x->w.rank, x->w.size, &aug,
                                  (uint64_t)x->keys.seed, x->epoch, err) < 0)
        return -1;
    rb_progress prog;
    rb_progress_start(&prog, "  batches", nb);
    int rc = 0;
    int64_t every = x->keys.checkpoint_every_steps, max_steps = x->keys.max_steps;
    for (int64_t next = x->next_batch;; next++) {
        train_batch *b = x->cache.on ? cached_next(x, &cb, feat, next, nb, perm) : train_loader_next(&ld, err);
        int ok = b != NULL || !ld.failed;
        if (!rb_mpi_agree_ok(ok)) {
            rc = ok ? rb_fail(err, NULL, "reading training data failed on another rank") : -1;
            break;
        }
        if (!b)
            break;
        rc = train_step(x, b, err);
        int64_t done_batch = b->index + 1;
        if (!x->cache.on)
            train_loader_release(&ld, b);
        if (!rb_mpi_agree_ok(rc == 0)) {
            if (rc == 0)
                rc = rb_fail(err, NULL, "a training step failed on another rank");
            break;
        }
        x->next_batch = done_batch;
        rb_progress_update(&prog, done_batch);
        /* test hook for the resume test: SIGKILL after this many steps in total */
        if (x->step == test_hook_int(HOOK_KILL_AFTER_STEPS))
            raise(SIGKILL);
        /* ... and a SIGTERM as Slurm sends it before the time limit (seen next step) */
        if (x->step == test_hook_int(HOOK_TERM_AFTER_STEPS) && x->w.rank == 0)
            raise(SIGTERM);
        int at_end = done_batch == nb;
        if (x->stop_requested) {
            rb_info("SIGTERM: writing a checkpoint at epoch %lld, batch %lld/%lld", (long long)x->epoch + 1,
                    (long long)done_batch, (long long)nb);
            rc = at_end ? 0 : train_save_checkpoint_full(x, err);
            break;
        }
        if (!at_end && every > 0 && x->step % every == 0 && (rc = train_save_checkpoint_full(x, err)) < 0)
            break;
        if (max_steps > 0 && x->step >= max_steps)
            break;
    }
    if (!x->cache.on)
        train_loader_stop(&ld);
    free(feat);
    free(cb.labels);
    return rc;
}

/* The end of an epoch that started at t0: its metrics, validation and epoch line; then, for
 * the whole model (also in a feature-cached stage), the callbacks (*stop_stage: early
 * stopping), history.csv, the weight check across ranks and a checkpoint. */
static int finish_epoch(train_ctx *x, double t0, int *stop_stage, rb_error *err)
{
    double t_train = rb_now() - t0; /* the training part of the epoch, for the allreduce share */
    x->metrics[M_LOSS] = x->sums.seen > 0 ? x->sums.loss / x->sums.seen : NAN;
    x->metrics[M_ACC] = x->sums.seen > 0 ? x->sums.correct / x->sums.seen : NAN;
    int rc;
    if ((rc = train_validate(x, err)) < 0)
        return rc;
    double secs = rb_now() - t0;
    print_epoch(x, x->next_batch, secs, t_train);
    x->sums.t_allreduce = 0;
    /* epoch-end decisions and files concern the whole model */
    train_net *active = x->a;
    train_cache_push(x);
    x->a = &x->net;
    if ((rc = run_callbacks(x, stop_stage, err)) < 0)
        return rc;
    train_history_add(x, secs);
    x->epoch++;
    x->next_batch = 0;
    x->sums.loss = x->sums.correct = x->sums.seen = 0;
    if ((rc = train_check_consistency(x, err)) < 0)
        return rc;
    int hok = x->w.rank != 0 || train_history_write(x, err) == 0;
    if (!rb_mpi_agree_ok(hok))
        return job_failed_where(hok);
    if ((rc = train_save_checkpoint(x, err)) < 0)
        return rc;
    x->a = active;
    return 0;
}

/* Both stages' epochs from x->epoch on. After each epoch: the metrics, validation, the
 * epoch line, the callbacks, history.csv, the weight check and a checkpoint (all of the
 * whole model, also in a feature-cached stage). Ends early at max_steps, when early
 * stopping ends the last stage, or on SIGTERM (*preempted, a checkpoint written). */
int train_run_epochs(train_ctx *x, int *preempted, rb_error *err)
{
    int64_t e1 = x->keys.epochs, e2 = x->keys.fine_tune_epochs;
    int rc = 0;
    int64_t max_steps = x->keys.max_steps;
    int skip_stage1 = 0;
    *preempted = 0;
    while (rc == 0 && x->epoch < e1 + e2) {
        if (x->epoch >= e1 && x->stage == 1) {
            train_cache_end(x);
            if ((rc = train_setup_stage(x, 2, err)) < 0)
                break;
            x->best.wait_es = x->best.wait_lr = 0;
        }
        if (skip_stage1 && x->stage == 1) {
            x->epoch = e1;
            continue;
        }
        augment_config aug;
        train_aug_from_config(x, &aug);
        if ((rc = train_cache_begin(x, &aug, err)) < 0)
            break;
        rb_info("Epoch %lld/%lld%s", (long long)x->epoch + 1, (long long)(e1 + e2), x->stage == 2 ? " (fine-tuning)" : "");
        double t0 = rb_now();
        if ((rc = train_epoch(x, x->perm, err)) < 0)
            break;
        if (x->stop_requested) {
            *preempted = 1;
            break;
        }
        int64_t nb = train_batches(x->tr.n, (int)x->keys.batch_size);
        int partial = x->next_batch < nb; /* max_steps hit mid-epoch */
        int stop_stage = 0;
        if ((rc = finish_epoch(x, t0, &stop_stage, err)) < 0)
            break;
        if (partial || (max_steps > 0 && x->step >= max_steps))
            break;
        if (stop_stage && x->stage == 1 && e2 > 0)
            skip_stage1 = 1;
        else if (stop_stage)
            break;
    }
    return rc;
}
