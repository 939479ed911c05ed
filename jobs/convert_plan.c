#define _GNU_SOURCE
#include "convert_plan.h"
#include "rb_union_find.h"
#include "rb_rng.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

void plan_rank_range(const plan *p, int rank, int64_t *lo, int64_t *hi)
{
    *lo = p->norder * rank / p->nranks;
    *hi = p->norder * (rank + 1) / p->nranks;
}

int64_t plan_shard_part(const plan *p, const plan_shard *s, int rank, int64_t *a, int64_t *b)
{
    int64_t lo, hi;
    plan_rank_range(p, rank, &lo, &hi);
    *a = s->first > lo ? s->first : lo;
    *b = s->first + s->n < hi ? s->first + s->n : hi;
    if (*b < *a)
        *b = *a;
    return *b - *a;
}

const char *split_name(int s)
{
    static const char *names[] = {"train", "val", "test", "all"};
    return s >= 0 && s < SPLIT_COUNT ? names[s] : "?";
}

int split_parse(const char *s)
{
    if (!strcasecmp(s, "train") || !strcasecmp(s, "training"))
        return SPLIT_TRAIN;
    if (!strcasecmp(s, "val") || !strcasecmp(s, "validation") || !strcasecmp(s, "valid"))
        return SPLIT_VAL;
    if (!strcasecmp(s, "test") || !strcasecmp(s, "testing"))
        return SPLIT_TEST;
    if (!strcasecmp(s, "all"))
        return SPLIT_ALL;
    return -1;
}

int plan_group_key(const char *rel, const void *re, char *out, size_t cap)
{
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    if (re) {
        regmatch_t m[2];
        if (regexec((const regex_t *)re, base, 2, m, 0) == 0) {
            int g = (m[1].rm_so >= 0) ? 1 : 0;
            size_t len = (size_t)(m[g].rm_eo - m[g].rm_so);
            if (len >= cap)
                len = cap - 1;
            memcpy(out, base + m[g].rm_so, len);
            out[len] = 0;
            return 1;
        }
    }
    snprintf(out, cap, "%s", rel);
    return 0;
}


typedef struct keyed {
    const char *key;
    int64_t idx;
} keyed;
static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

typedef struct hashed {
    const uint8_t *h;
    int64_t idx;
} hashed;
static int cmp_hashed(const void *a, const void *b)
{
    const hashed *x = a, *y = b;
    int c = memcmp(x->h, y->h, 16);
    return c ? c : (x->idx < y->idx ? -1 : x->idx > y->idx);
}

static int cmp_rel_idx(const void *a, const void *b, void *ctx)
{
    const plan_entry *e = ctx;
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int c = strcmp(e[x].rel, e[y].rel);
    return c ? c : (x < y ? -1 : x > y);
}

void plan_free(plan *p)
{
    free(p->order);
    free(p->shards);
    free(p->dup_of);
    free(p->split_of);
    memset(p, 0, sizeof *p);
}

/* Scratch of one plan_make: union-find parents (records that must share a split), the
 * records sorted by hash and by group key, and per group root its size and split. */
typedef struct plan_scratch {
    int64_t *par;
    hashed *hs;
    keyed *ks;
    char **keys;
    int64_t *gsize;
    int8_t *gsplit;
    regex_t re;
    int have_re;
} plan_scratch;

/* 1. exact duplicates by content hash: the first copy is kept, copies join its group */
static void mark_duplicates(plan *p, const plan_entry *e, int64_t n, plan_scratch *w)
{
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        p->dup_of[i] = -1;
        p->split_of[i] = -1;
        w->par[i] = i;
        if (e[i].ok)
            w->hs[m++] = (hashed){e[i].hash, i};
    }
    if (m > 1)
        qsort(w->hs, (size_t)m, sizeof *w->hs, cmp_hashed);
    for (int64_t a = 0; a < m;) {
        int64_t b = a + 1;
        while (b < m && memcmp(w->hs[b].h, w->hs[a].h, 16) == 0)
            b++;
        if (b - a > 1) {
            p->ndup_groups++;
            for (int64_t k = a + 1; k < b; k++) {
                p->dup_of[w->hs[k].idx] = w->hs[a].idx;
                rb_uf_union(w->par, w->hs[a].idx, w->hs[k].idx); /* copies stay in one split */
            }
        }
        a = b;
    }
}

/* 2. patient groups: records with the same group key join one group */
static int group_patients(plan *p, const plan_entry *e, int64_t n, plan_scratch *w, rb_error *err)
{
    int64_t nk = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!e[i].ok)
            continue;
        char k[1024];
        p->regex_matched += plan_group_key(e[i].rel, w->have_re ? &w->re : NULL, k, sizeof k);
        w->keys[i] = strdup(k);
        if (!w->keys[i])
            return rb_fail(err, NULL, "out of memory");
        w->ks[nk++] = (keyed){w->keys[i], i};
    }
    if (nk > 1)
        qsort(w->ks, (size_t)nk, sizeof *w->ks, cmp_keyed);
    p->nusable = nk;
    for (int64_t a = 0; a < nk;) {
        int64_t b = a + 1;
        p->ngroups++;
        while (b < nk && strcmp(w->ks[b].key, w->ks[a].key) == 0) {
            rb_uf_union(w->par, w->ks[a].idx, w->ks[b].idx);
            b++;
        }
        a = b;
    }
    return 0;
}

/* roots = groups; per stratum (class, or one stratum), shuffle groups by (seed, stratum)
 * and move whole groups to test, then to val, until the stratum's test and val shares are
 * reached (a group goes to a split when that brings its count closer to the target). With
 * test_fraction 0 no group goes to test and the split is the one of val alone. */
static int split_by_strata(const plan_entry *e, int64_t n, const plan_settings *s, plan_scratch *w, rb_error *err)
{
    int maxlab = 0;
    for (int64_t i = 0; i < n; i++)
        if (e[i].ok && e[i].label > maxlab)
            maxlab = e[i].label;
    int nstrata = s->stratify ? maxlab + 1 : 1;
    int64_t *roots = malloc((size_t)(n ? n : 1) * sizeof *roots);
    if (!roots)
        return rb_fail(err, NULL, "out of memory");
    for (int st = 0; st < nstrata; st++) {
        int64_t nr = 0, total = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!e[i].ok || rb_uf_find(w->par, i) != i)
                continue;
            int lab = e[i].label < 0 ? 0 : e[i].label;
            if (s->stratify && lab != st)
                continue;
            roots[nr++] = i; /* ascending index = sorted input order */
            total += w->gsize[i];
        }
        rb_shuffle_i64(roots, nr, s->seed, 0x5e17 + (uint64_t)st);
        double target = s->val_fraction * (double)total, test_target = s->test_fraction * (double)total;
        int64_t val = 0, test = 0;
        for (int64_t k = 0; k < nr; k++) {
            int64_t g = roots[k];
            if ((double)test + 0.5 * (double)w->gsize[g] <= test_target) {
                w->gsplit[g] = SPLIT_TEST;
                test += w->gsize[g];
            } else if ((double)val + 0.5 * (double)w->gsize[g] <= target) {
                w->gsplit[g] = SPLIT_VAL;
                val += w->gsize[g];
            } else
                w->gsplit[g] = SPLIT_TRAIN;
        }
    }
    free(roots);
    return 0;
}

/* 3. split per group. A group's class (for stratification) is its root's label; a group
 * with a given split keeps it (the first member's). *given: the input gave splits. */
static int split_groups(const plan_entry *e, int64_t n, const plan_settings *s, plan_scratch *w, int *given,
                        rb_error *err)
{
    for (int64_t i = 0; i < n; i++)
        if (e[i].ok)
            w->gsize[rb_uf_find(w->par, i)]++;
    int labelled = 0;
    *given = 0;
    for (int64_t i = 0; i < n; i++)
        if (e[i].ok) {
            labelled |= e[i].label >= 0;
            *given |= e[i].given_split >= 0;
        }
    for (int64_t i = 0; i < n; i++)
        w->gsplit[i] = -1;
    if (*given)
        return 0; /* the user's folders decide; duplicates across them are only reported */
    if (!labelled || (s->val_fraction <= 0 && s->test_fraction <= 0)) {
        for (int64_t i = 0; i < n; i++)
            if (e[i].ok)
                w->gsplit[rb_uf_find(w->par, i)] = labelled ? SPLIT_TRAIN : SPLIT_ALL;
        return 0;
    }
    return split_by_strata(e, n, s, w, err);
}

/* plan hash: settings + split + index/count + every record's identity */
static void shard_plan_hash(const plan *p, const plan_entry *e, plan_shard *sh, const char *settings_hash)
{
    XXH3_state_t *st = XXH3_createState();
    XXH3_128bits_reset(st);
    XXH3_128bits_update(st, settings_hash, strlen(settings_hash));
    int32_t hdr[3] = {sh->split, (int32_t)sh->index, (int32_t)sh->count};
    XXH3_128bits_update(st, hdr, sizeof hdr);
    for (int64_t r = 0; r < sh->n; r++) {
        const plan_entry *x = &e[p->order[sh->first + r]];
        XXH3_128bits_update(st, x->rel, strlen(x->rel) + 1);
        XXH3_128bits_update(st, &x->label, sizeof x->label);
        XXH3_128bits_update(st, x->hash, 16);
    }
    XXH128_hash_t h = XXH3_128bits_digest(st);
    XXH3_freeState(st);
    snprintf(sh->hash, sizeof sh->hash, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
}

/* The records of split sp, p->order[first, first + cnt), cut into shards. */
static int cut_split(plan *p, const plan_entry *e, const plan_settings *s, const char *settings_hash, int sp,
                     int64_t first, int64_t cnt, int *cap_shards, rb_error *err)
{
    int64_t bytes = cnt * s->record_bytes;
    int64_t ns = s->shard_bytes > 0 ? (bytes + s->shard_bytes - 1) / s->shard_bytes : 1;
    if (ns < s->min_shards)
        ns = s->min_shards;
    if (ns > cnt)
        ns = cnt;
    if (ns < 1)
        ns = 1;
    if (ns > 99999)
        return rb_fail(err, "raise shard_size_mb", "%s split would need %lld shards (limit 99999)", split_name(sp),
                       (long long)ns);
    for (int64_t k = 0; k < ns; k++) {
        if (p->nshards == *cap_shards) {
            *cap_shards *= 2;
            plan_shard *t = realloc(p->shards, (size_t)*cap_shards * sizeof *t);
            if (!t)
                return rb_fail(err, NULL, "out of memory");
            p->shards = t;
        }
        plan_shard *sh = &p->shards[p->nshards++];
        memset(sh, 0, sizeof *sh);
        sh->split = sp;
        sh->index = (int)k;
        sh->count = (int)ns;
        sh->first = first + k * cnt / ns;
        sh->n = first + (k + 1) * cnt / ns - sh->first;
        shard_plan_hash(p, e, sh, settings_hash);
    }
    return 0;
}

/* 4. records per split: sorted by path, shuffled by (seed, split), cut into shards */
static int cut_shards(plan *p, const plan_entry *e, int64_t n, const plan_settings *s, const char *settings_hash,
                      int given, const plan_scratch *w, rb_error *err)
{
    int64_t pos = 0;
    int cap_shards = 16;
    p->shards = malloc((size_t)cap_shards * sizeof *p->shards);
    if (!p->shards)
        return rb_fail(err, NULL, "out of memory");
    for (int sp = 0; sp < SPLIT_COUNT; sp++) {
        int64_t first = pos;
        for (int64_t i = 0; i < n; i++) {
            if (!e[i].ok)
                continue;
            if (s->dedupe && p->dup_of[i] >= 0) {
                if (sp == 0)
                    p->ndropped++;
                continue;
            }
            int esplit = given ? (e[i].given_split >= 0 ? e[i].given_split : SPLIT_TRAIN)
                               : w->gsplit[rb_uf_find(w->par, i)];
            if (esplit == sp) {
                p->order[pos++] = i;
                p->split_of[i] = (int8_t)sp;
            }
        }
        int64_t cnt = pos - first;
        p->split_count[sp] = cnt;
        if (cnt == 0)
            continue;
        qsort_r(p->order + first, (size_t)cnt, sizeof *p->order, cmp_rel_idx, (void *)e);
        rb_shuffle_i64(p->order + first, cnt, s->seed, 0x5a4d + (uint64_t)sp);
        if (cut_split(p, e, s, settings_hash, sp, first, cnt, &cap_shards, err) < 0)
            return -1;
    }
    p->norder = pos;
    return 0;
}

/* 5. who decodes and who writes. Decoding is split by records, not by shards: rank r
 * decodes plan positions [norder*r/P, norder*(r+1)/P), so every rank has the same share
 * however few or uneven the shards are. A shard is written by the rank that decodes most
 * of it (ties: the lower rank); the others send it their records. */
static void assign_writers(plan *p, int nranks)
{
    p->nranks = nranks > 0 ? nranks : 1;
    for (int k = 0; k < p->nshards; k++) {
        plan_shard *sh = &p->shards[k];
        int64_t best = -1;
        for (int r = 0; r < p->nranks; r++) {
            int64_t a, b, m = plan_shard_part(p, sh, r, &a, &b);
            if (m > best) {
                best = m;
                sh->rank = r;
            }
        }
    }
}

static int scratch_init(plan *p, plan_scratch *w, int64_t n, const plan_settings *s, rb_error *err)
{
    size_t cnt = (size_t)(n ? n : 1);
    w->par = malloc(cnt * sizeof *w->par);
    w->hs = malloc(cnt * sizeof *w->hs);
    w->ks = malloc(cnt * sizeof *w->ks);
    w->keys = calloc(cnt, sizeof *w->keys);
    w->gsize = calloc(cnt, sizeof *w->gsize);
    w->gsplit = malloc(cnt);
    p->dup_of = malloc(cnt * sizeof *p->dup_of);
    p->split_of = malloc(cnt);
    p->order = malloc(cnt * sizeof *p->order);
    if (!w->par || !w->hs || !w->ks || !w->keys || !w->gsize || !w->gsplit || !p->dup_of || !p->split_of ||
        !p->order)
        return rb_fail(err, NULL, "out of memory planning %lld records", (long long)n);
    if (s->group_regex && *s->group_regex) {
        int r = regcomp(&w->re, s->group_regex, REG_EXTENDED);
        if (r != 0) {
            char msg[256];
            regerror(r, &w->re, msg, sizeof msg);
            return rb_fail(err, "group_regex is a POSIX extended regex; its first group is the patient id",
                           "group_regex '%s': %s", s->group_regex, msg);
        }
        w->have_re = 1;
    }
    return 0;
}

static void scratch_free(plan_scratch *w, int64_t n)
{
    if (w->have_re)
        regfree(&w->re);
    free(w->par);
    free(w->hs);
    free(w->ks);
    for (int64_t i = 0; w->keys && i < n; i++)
        free(w->keys[i]);
    free(w->keys);
    free(w->gsize);
    free(w->gsplit);
}

int plan_make(plan *p, const plan_entry *e, int64_t n, const plan_settings *s,
              const char *settings_hash, int nranks, rb_error *err)
{
    memset(p, 0, sizeof *p);
    plan_scratch w = {0};
    int given = 0;
    int rc = scratch_init(p, &w, n, s, err);
    if (rc == 0) {
        mark_duplicates(p, e, n, &w);
        rc = group_patients(p, e, n, &w, err);
    }
    if (rc == 0)
        rc = split_groups(e, n, s, &w, &given, err);
    if (rc == 0)
        rc = cut_shards(p, e, n, s, settings_hash, given, &w, err);
    if (rc == 0)
        assign_writers(p, nranks);
    scratch_free(&w, n);
    if (rc != 0)
        plan_free(p);
    return rc;
}
