/* convert plan: patient groups never straddle splits, identical files share a split,
 * stratified val share, dedupe, given splits, determinism across rank counts. */
#include "convert_plan.h"
#include "test_util.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_PATIENTS 120

static plan_entry *make_entries(int64_t *n_out)
{
    plan_entry *e = calloc(1000, sizeof *e);
    int64_t n = 0;
    for (int p = 0; p < N_PATIENTS; p++) {
        int nimg = 1 + (p * 7) % 5;
        int label = p % 3 == 0 ? 0 : 1; /* imbalanced, like the X-rays */
        for (int k = 0; k < nimg; k++) {
            char rel[128];
            snprintf(rel, sizeof rel, "%s/person%d_x_%d.jpeg", label ? "PNEUMONIA" : "NORMAL", p, k);
            e[n].rel = strdup(rel);
            e[n].abs = strdup(rel);
            e[n].label = label;
            e[n].given_split = -1;
            e[n].ok = 1;
            memset(e[n].hash, 0, 16);
            e[n].hash[0] = (uint8_t)(n & 255);
            e[n].hash[1] = (uint8_t)(n >> 8);
            e[n].hash[2] = 0x11;
            n++;
        }
    }
    /* an identical copy of person3's first image under another patient's name */
    e[n] = e[5];
    e[n].rel = strdup("PNEUMONIA/person999_x_0.jpeg");
    e[n].abs = strdup(e[n].rel);
    e[n].label = 1;
    int64_t copy = n++;
    /* one unreadable file: must not appear anywhere */
    e[n].rel = strdup("NORMAL/broken.jpeg");
    e[n].abs = strdup(e[n].rel);
    e[n].label = 0;
    e[n].given_split = -1;
    e[n].ok = 0;
    n++;
    (void)copy;
    *n_out = n;
    return e;
}

static void free_entries(plan_entry *e, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        free(e[i].rel);
        free(e[i].abs);
    }
    free(e);
}

static int patient_of(const char *rel)
{
    const char *p = strstr(rel, "person");
    return p ? atoi(p + 6) : -1;
}

int main(void)
{
    int64_t n;
    plan_entry *e = make_entries(&n);
    plan_settings s = {.val_fraction = 0.2, .seed = 123, .group_regex = "^(person[0-9]+)_", .stratify = 1,
                       .dedupe = 0, .record_bytes = 1000, .shard_bytes = 20000, .min_shards = 1};
    plan p1, p2, p3;
    rb_error err;
    CHECK(plan_make(&p1, e, n, &s, "settings", 1, &err) == 0, "plan: %s", err.msg);
    CHECK(plan_make(&p2, e, n, &s, "settings", 2, &err) == 0, "plan: %s", err.msg);
    CHECK(plan_make(&p3, e, n, &s, "settings", 3, &err) == 0, "plan: %s", err.msg);

    /* the same order and shard contents on any rank count */
    CHECK(p1.norder == p2.norder && p1.norder == p3.norder, "order sizes");
    CHECK(memcmp(p1.order, p3.order, (size_t)p1.norder * sizeof *p1.order) == 0, "order differs with ranks");
    CHECK(p1.nshards == p3.nshards, "shard count differs");
    for (int k = 0; k < p1.nshards && k < p3.nshards; k++)
        CHECK(strcmp(p1.shards[k].hash, p3.shards[k].hash) == 0 && p1.shards[k].n == p3.shards[k].n,
              "shard %d differs", k);
    /* every rank gets work when there are enough shards */
    int used[3] = {0};
    for (int k = 0; k < p3.nshards; k++)
        used[p3.shards[k].rank]++;
    CHECK(p3.nshards < 3 || (used[0] && used[1] && used[2]), "rank without shards");

    /* the broken file is nowhere; every good file exactly once */
    CHECK(p1.norder == n - 1, "norder %lld of %lld", (long long)p1.norder, (long long)n);
    int *seen = calloc((size_t)n, sizeof *seen);
    for (int64_t i = 0; i < p1.norder; i++)
        seen[p1.order[i]]++;
    for (int64_t i = 0; i < n; i++)
        CHECK(seen[i] == (e[i].ok ? 1 : 0), "entry %lld placed %d times", (long long)i, seen[i]);
    free(seen);

    /* patients never on both sides */
    int side[1000];
    for (int i = 0; i < 1000; i++)
        side[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!e[i].ok)
            continue;
        int pt = patient_of(e[i].rel);
        int sp = p1.split_of[i];
        CHECK(sp == SPLIT_TRAIN || sp == SPLIT_VAL, "split %d", sp);
        if (side[pt] >= 0)
            CHECK(side[pt] == sp, "patient %d in both splits", pt);
        side[pt] = sp;
    }
    /* the identical copy follows its original (person3's image 0 is entry 5?) */
    int64_t copy = n - 2;
    CHECK(p1.dup_of[copy] >= 0, "copy not detected");
    CHECK(p1.ndup_groups == 1, "dup groups %lld", (long long)p1.ndup_groups);
    CHECK(p1.split_of[copy] == p1.split_of[p1.dup_of[copy]], "identical files in different splits");

    /* stratified: each class's val share near 20% (whole patients move, so within 8 points) */
    for (int c = 0; c < 2; c++) {
        int64_t tot = 0, val = 0;
        for (int64_t i = 0; i < n; i++)
            if (e[i].ok && e[i].label == c) {
                tot++;
                val += p1.split_of[i] == SPLIT_VAL;
            }
        double share = (double)val / (double)tot;
        CHECK(share > 0.12 && share < 0.28, "class %d val share %.3f", c, share);
    }
    /* shards mix classes: the shuffle happens before sharding */
    for (int k = 0; k < p1.nshards; k++) {
        int64_t c0 = 0;
        for (int64_t r = 0; r < p1.shards[k].n; r++)
            c0 += e[p1.order[p1.shards[k].first + r]].label == 0;
        CHECK(p1.shards[k].n < 10 || (c0 > 0 && c0 < p1.shards[k].n), "shard %d holds one class", k);
    }

    /* another seed gives another split */
    plan_settings s2 = s;
    s2.seed = 7;
    plan q;
    CHECK(plan_make(&q, e, n, &s2, "settings", 1, &err) == 0, "plan");
    int differ = 0;
    for (int64_t i = 0; i < n; i++)
        differ += q.split_of[i] != p1.split_of[i];
    CHECK(differ > 0, "seed has no effect");
    plan_free(&q);

    /* settings enter the shard hashes */
    CHECK(plan_make(&q, e, n, &s, "other settings", 1, &err) == 0, "plan");
    CHECK(strcmp(q.shards[0].hash, p1.shards[0].hash) != 0, "settings hash ignored");
    plan_free(&q);

    /* dedupe drops the copy */
    s2 = s;
    s2.dedupe = 1;
    CHECK(plan_make(&q, e, n, &s2, "settings", 1, &err) == 0, "plan");
    CHECK(q.norder == n - 2 && q.ndropped == 1 && q.split_of[n - 2] == -1, "dedupe: %lld records",
          (long long)q.norder);
    plan_free(&q);

    /* test_fraction: a third split, grouped by patient and stratified like val, the same on
     * any rank count; the group statistics count matched files and distinct groups */
    CHECK(p1.regex_matched == n - 1 && p1.nusable == n - 1, "matched %lld of %lld", (long long)p1.regex_matched,
          (long long)p1.nusable);
    CHECK(p1.ngroups == N_PATIENTS + 1, "groups %lld", (long long)p1.ngroups);
    CHECK(p1.split_count[SPLIT_TEST] == 0, "test records without test_fraction");
    s2 = s;
    s2.test_fraction = 0.15;
    plan t1, t3;
    CHECK(plan_make(&t1, e, n, &s2, "settings", 1, &err) == 0, "plan: %s", err.msg);
    CHECK(plan_make(&t3, e, n, &s2, "settings", 3, &err) == 0, "plan: %s", err.msg);
    CHECK(t1.norder == t3.norder && memcmp(t1.order, t3.order, (size_t)t1.norder * sizeof *t1.order) == 0,
          "test split differs with ranks");
    CHECK(t1.split_count[SPLIT_TEST] > 0 && t1.split_count[SPLIT_VAL] > 0, "test %lld val %lld",
          (long long)t1.split_count[SPLIT_TEST], (long long)t1.split_count[SPLIT_VAL]);
    for (int i = 0; i < 1000; i++)
        side[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!e[i].ok)
            continue;
        int pt = patient_of(e[i].rel), sp = t1.split_of[i];
        if (side[pt] >= 0)
            CHECK(side[pt] == sp, "patient %d in two splits", pt);
        side[pt] = sp;
    }
    CHECK(t1.split_of[copy] == t1.split_of[t1.dup_of[copy]], "identical files in different splits");
    for (int c = 0; c < 2; c++) {
        int64_t tot = 0, val = 0, test = 0;
        for (int64_t i = 0; i < n; i++)
            if (e[i].ok && e[i].label == c) {
                tot++;
                val += t1.split_of[i] == SPLIT_VAL;
                test += t1.split_of[i] == SPLIT_TEST;
            }
        double vs = (double)val / (double)tot, ts = (double)test / (double)tot;
        CHECK(vs > 0.12 && vs < 0.28 && ts > 0.07 && ts < 0.23, "class %d val %.3f test %.3f", c, vs, ts);
    }
    plan_free(&t1);
    plan_free(&t3);
    /* a regex that matches nothing: every file its own group, and the count says so */
    s2 = s;
    s2.group_regex = "^foo";
    CHECK(plan_make(&q, e, n, &s2, "settings", 1, &err) == 0, "plan");
    CHECK(q.regex_matched == 0 && q.ngroups == n - 1, "matched %lld groups %lld", (long long)q.regex_matched,
          (long long)q.ngroups);
    plan_free(&q);

    /* given splits are kept as given */
    for (int64_t i = 0; i < n; i++)
        e[i].given_split = (int8_t)(i % 3 == 0 ? SPLIT_TEST : SPLIT_TRAIN);
    CHECK(plan_make(&q, e, n, &s, "settings", 1, &err) == 0, "plan");
    for (int64_t i = 0; i < n; i++)
        if (e[i].ok)
            CHECK(q.split_of[i] == e[i].given_split, "given split not kept for %lld", (long long)i);
    plan_free(&q);

    /* a bad regex is a clear error */
    s2 = s;
    s2.group_regex = "(unclosed";
    CHECK(plan_make(&q, e, n, &s2, "settings", 1, &err) == -1 && strstr(err.msg, "group_regex"), "bad regex: %s",
          err.msg);

    /* group keys */
    regex_t re;
    regcomp(&re, "^(person[0-9]+|NORMAL2-IM-[0-9]+|IM-[0-9]+)", REG_EXTENDED);
    char key[64];
    plan_group_key("PNEUMONIA/person12_virus_3.jpeg", &re, key, sizeof key);
    CHECK(strcmp(key, "person12") == 0, "key %s", key);
    plan_group_key("NORMAL/NORMAL2-IM-0587-0001-0002.jpeg", &re, key, sizeof key);
    CHECK(strcmp(key, "NORMAL2-IM-0587") == 0, "key %s", key);
    plan_group_key("NORMAL/IM-0115-0001.jpeg", &re, key, sizeof key);
    CHECK(strcmp(key, "IM-0115") == 0, "key %s", key);
    plan_group_key("x/other.png", &re, key, sizeof key);
    CHECK(strcmp(key, "x/other.png") == 0, "unmatched key %s", key);
    regfree(&re);

    plan_free(&p1);
    plan_free(&p2);
    plan_free(&p3);
    free_entries(e, n);
    return TEST_DONE();
}
