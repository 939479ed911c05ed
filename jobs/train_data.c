#include "train_data.h"
#include "rb_rng.h"

#include <stdlib.h>
#include <string.h>

void train_epoch_order(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch, int shuffle)
{
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    if (shuffle)
        rb_shuffle_i64(perm, n, seed, 0xe90c0000ULL + (uint64_t)epoch);
}

void train_batch_slice(int64_t n, int B, int64_t b, int rank, int nranks, int64_t *lo, int64_t *hi,
                       int *global_n)
{
    int64_t s = b * B, e = s + B < n ? s + B : n;
    int64_t gn = e - s;
    *lo = s + gn * rank / nranks;
    *hi = s + gn * (rank + 1) / nranks;
    *global_n = (int)gn;
}

static int fill(train_loader *l, train_batch *tb, int64_t b)
{
    int64_t lo, hi;
    int gn;
    train_batch_slice(l->n, l->global_batch, b, l->rank, l->nranks, &lo, &hi, &gn);
    tb->n = (int)(hi - lo);
    tb->global_n = gn;
    tb->index = b;
    tb->sample_base = lo;
    size_t rec = l->ds->record_bytes;
    uint8_t *dst = l->augment ? l->raw : tb->images;
    if (shard_dataset_read(l->ds, l->perm + lo, tb->n, dst, tb->labels, &l->err) < 0)
        return -1;
    if (l->augment)
        for (int i = 0; i < tb->n; i++)
            augment_image(tb->images + (size_t)i * rec, l->raw + (size_t)i * rec, l->ds->height, l->ds->width,
                          l->ds->channels, &l->aug, l->seed, (uint64_t)l->epoch, (uint64_t)(lo + i));
    return 0;
}

static void *loader_main(void *arg)
{
    train_loader *l = arg;
    for (int64_t b = l->first_batch; b < l->nbatches; b++) {
        train_batch *tb = &l->slot[b & 1];
        pthread_mutex_lock(&l->mu);
        while (tb->ready && !l->stop)
            pthread_cond_wait(&l->cv, &l->mu);
        int stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop)
            break;
        int rc = fill(l, tb, b);
        pthread_mutex_lock(&l->mu);
        if (rc < 0)
            l->failed = 1;
        else
            tb->ready = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        if (rc < 0)
            break;
    }
    return NULL;
}

int train_loader_start(train_loader *l, shard_dataset *ds, const int64_t *perm, int64_t first_batch,
                       int global_batch, int rank, int nranks, const augment_config *aug, uint64_t seed,
                       int64_t epoch, rb_error *err)
{
    memset(l, 0, sizeof *l);
    l->ds = ds;
    l->perm = perm;
    l->n = ds->n;
    l->global_batch = global_batch;
    l->rank = rank;
    l->nranks = nranks;
    l->nbatches = train_batches(ds->n, global_batch);
    l->first_batch = first_batch;
    l->next_take = first_batch;
    l->seed = seed;
    l->epoch = epoch;
    if (aug) {
        l->aug = *aug;
        l->augment = augment_config_active(aug);
    }
    int local_max = (global_batch + nranks - 1) / nranks;
    size_t rec = ds->record_bytes;
    for (int s = 0; s < 2; s++) {
        l->slot[s].images = malloc((size_t)local_max * rec + 1);
        l->slot[s].labels = malloc((size_t)local_max * sizeof(int32_t) + 4);
        if (!l->slot[s].images || !l->slot[s].labels) {
            train_loader_stop(l);
            return rb_fail(err, "lower batch_size", "out of memory for input batches");
        }
    }
    if (l->augment && !(l->raw = malloc((size_t)local_max * rec + 1))) {
        train_loader_stop(l);
        return rb_fail(err, "lower batch_size", "out of memory for input batches");
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, loader_main, l) != 0) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        train_loader_stop(l);
        return rb_fail(err, NULL, "cannot start the data loader thread");
    }
    l->running = 1;
    return 0;
}

train_batch *train_loader_next(train_loader *l, rb_error *err)
{
    if (l->next_take >= l->nbatches)
        return NULL;
    train_batch *tb = &l->slot[l->next_take & 1];
    pthread_mutex_lock(&l->mu);
    while (!tb->ready && !l->failed)
        pthread_cond_wait(&l->cv, &l->mu);
    int failed = l->failed && !tb->ready;
    pthread_mutex_unlock(&l->mu);
    if (failed) {
        if (err)
            *err = l->err;
        return NULL;
    }
    l->next_take++;
    return tb;
}

void train_loader_release(train_loader *l, train_batch *b)
{
    pthread_mutex_lock(&l->mu);
    b->ready = 0;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void train_loader_stop(train_loader *l)
{
    if (l->running) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        l->running = 0;
    }
    for (int s = 0; s < 2; s++) {
        free(l->slot[s].images);
        free(l->slot[s].labels);
        l->slot[s].images = NULL;
        l->slot[s].labels = NULL;
    }
    free(l->raw);
    l->raw = NULL;
}
