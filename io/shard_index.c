#include "json_number.h"
#include "shard_index.h"
#include "fsutil.h"
#include "rb_log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#ifndef RADBATCH_VERSION
#define RADBATCH_VERSION "dev"
#endif

static const char *split_names[SHARD_INDEX_SPLITS] = {"train", "val", "test", "all"};

/* index.json's own checksum: the member "index_checksum": "<16 hex digits>", the XXH3-64 of
 * the file's bytes with those 16 digits written as '0'. Finds the digits in text[0..len):
 * their offset, or -1 when the member is absent or malformed. */
#define INDEX_CHECKSUM_KEY "\"index_checksum\":"
static long find_index_checksum(const char *text, size_t len)
{
    size_t k = strlen(INDEX_CHECKSUM_KEY);
    long at = -1;
    for (size_t i = 0; i + k <= len; i++)
        if (memcmp(text + i, INDEX_CHECKSUM_KEY, k) == 0)
            at = (long)i; /* the last one */
    if (at < 0)
        return -1;
    size_t i = (size_t)at + k;
    while (i < len && (text[i] == ' ' || text[i] == '\t'))
        i++;
    if (i + 18 > len || text[i] != '"' || text[i + 17] != '"')
        return -1;
    for (size_t j = i + 1; j < i + 17; j++)
        if (!((text[j] >= '0' && text[j] <= '9') || (text[j] >= 'a' && text[j] <= 'f')))
            return -1;
    return (long)(i + 1);
}

static uint64_t index_text_hash(const char *text, size_t len, long digits)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return 0;
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, text, (size_t)digits);
    XXH3_64bits_update(st, "0000000000000000", 16);
    XXH3_64bits_update(st, text + digits + 16, len - (size_t)digits - 16);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

int shard_index_split_id(const char *name)
{
    for (int i = 0; i < SHARD_INDEX_SPLITS; i++)
        if (strcmp(name, split_names[i]) == 0)
            return i;
    return -1;
}

static cJSON *counts_obj(const int64_t *per_class, char **names, int n)
{
    cJSON *o = cJSON_CreateObject();
    for (int c = 0; c < n; c++)
        json_add_exact_number(o, names[c], (double)per_class[c]);
    return o;
}

int shard_index_write(const char *dir, const shard_index *x, rb_error *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "format", SHARD_INDEX_FORMAT);
    json_add_exact_number(root, "format_version", SHARD_INDEX_VERSION);
    cJSON_AddStringToObject(root, "tool_version", "radbatch " RADBATCH_VERSION);
    json_add_exact_number(root, "height", x->height);
    json_add_exact_number(root, "width", x->width);
    json_add_exact_number(root, "channels", x->channels);
    cJSON_AddStringToObject(root, "resize", x->resize);
    cJSON_AddBoolToObject(root, "dct_scaling", x->dct_scaling);
    cJSON_AddItemToObject(root, "class_names", cJSON_CreateStringArray((const char *const *)x->class_names, x->nclasses));
    cJSON_AddItemToObject(root, "sources", cJSON_CreateStringArray((const char *const *)x->sources, x->nsources));
    cJSON *split = cJSON_CreateObject();
    json_add_exact_number(split, "seed", (double)x->seed);
    json_add_exact_number(split, "val_fraction", x->val_fraction);
    json_add_exact_number(split, "test_fraction", x->test_fraction);
    cJSON_AddStringToObject(split, "group_regex", x->group_regex ? x->group_regex : "");
    json_add_exact_number(split, "group_files", (double)x->group_files);
    json_add_exact_number(split, "group_regex_matched", (double)x->group_matched);
    json_add_exact_number(split, "groups", (double)x->groups);
    if (x->group_warning)
        cJSON_AddStringToObject(split, "group_warning", x->group_warning);
    cJSON_AddItemToObject(root, "split", split);
    cJSON *splits = cJSON_CreateObject();
    for (int s = 0; s < SHARD_INDEX_SPLITS; s++) {
        if (x->split_records[s] == 0)
            continue;
        cJSON *o = cJSON_CreateObject();
        json_add_exact_number(o, "records", (double)x->split_records[s]);
        cJSON_AddItemToObject(o, "per_class", counts_obj(x->split_class + s * x->nclasses, x->class_names, x->nclasses));
        cJSON *files = cJSON_CreateArray();
        for (int k = 0; k < x->nshards; k++)
            if (x->shards[k].split == s)
                cJSON_AddItemToArray(files, cJSON_CreateString(x->shards[k].file));
        cJSON_AddItemToObject(o, "shards", files);
        cJSON_AddItemToObject(splits, split_names[s], o);
    }
    cJSON_AddItemToObject(root, "splits", splits);
    cJSON *shards = cJSON_CreateArray();
    for (int k = 0; k < x->nshards; k++) {
        const shard_index_entry *e = &x->shards[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "file", e->file);
        cJSON_AddStringToObject(o, "split", split_names[e->split]);
        json_add_exact_number(o, "index", e->index);
        json_add_exact_number(o, "count", e->count);
        json_add_exact_number(o, "records", (double)e->records);
        cJSON_AddItemToObject(o, "per_class", counts_obj(e->per_class, x->class_names, x->nclasses));
        cJSON_AddStringToObject(o, "checksum", e->checksum);
        cJSON_AddStringToObject(o, "plan_hash", e->plan_hash);
        cJSON_AddItemToArray(shards, o);
    }
    cJSON_AddItemToObject(root, "shards", shards);
    cJSON *st = cJSON_CreateObject();
    json_add_exact_number(st, "input_files", (double)x->input_files);
    json_add_exact_number(st, "errors", (double)x->errors);
    json_add_exact_number(st, "duplicate_groups", (double)x->duplicate_groups);
    json_add_exact_number(st, "dropped_duplicates", (double)x->dropped_duplicates);
    cJSON_AddItemToObject(root, "stats", st);
    if (x->config)
        cJSON_AddStringToObject(root, "config", x->config);
    cJSON_AddStringToObject(root, "index_checksum", "0000000000000000");
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return rb_fail(err, NULL, "out of memory writing index.json");
    char *path = fs_join(dir, "index.json");
    size_t len = strlen(text);
    text[len] = 0;
    char *withnl = malloc(len + 2);
    int rc = -1;
    if (path && withnl) {
        memcpy(withnl, text, len);
        withnl[len] = '\n';
        /* the checksum covers the bytes as written, newline included */
        long digits = find_index_checksum(withnl, len + 1);
        if (digits < 0)
            rb_fail(err, NULL, "%s: cannot place its checksum", path);
        else {
            char hex[17];
            snprintf(hex, sizeof hex, "%016llx", (unsigned long long)index_text_hash(withnl, len + 1, digits));
            memcpy(withnl + digits, hex, 16);
            rc = fs_write_file_atomic(path, withnl, len + 1, err);
        }
    } else
        rb_fail(err, NULL, "out of memory");
    free(withnl);
    free(text);
    free(path);
    return rc;
}

void shard_index_free(shard_index *x)
{
    for (int i = 0; i < x->nclasses; i++)
        free(x->class_names[i]);
    free(x->class_names);
    for (int k = 0; k < x->nshards; k++)
        free(x->shards[k].per_class);
    free(x->shards);
    free(x->split_class);
    free(x->group_regex);
    free(x->group_warning);
    for (int i = 0; i < x->nsources; i++)
        free(x->sources[i]);
    free(x->sources);
    free(x->config);
    memset(x, 0, sizeof *x);
}

static int get_int(const cJSON *o, const char *k, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v))
        return -1;
    *out = (int64_t)v->valuedouble;
    return 0;
}

static const char *get_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char INDEX_REWRITE_HINT[] = "rerun 'radbatch convert' to rewrite it";

/* format and format_version, and for version 2 the index_checksum over the file's bytes */
static int index_check_format(const cJSON *root, const uint8_t *buf, size_t len, const char *path,
                              rb_error *err)
{
    const char *fmt = get_str(root, "format");
    int64_t ver = 0;
    if (!fmt || strcmp(fmt, SHARD_INDEX_FORMAT) != 0 || get_int(root, "format_version", &ver) < 0 ||
        (ver != SHARD_INDEX_VERSION && ver != SHARD_INDEX_VERSION_NO_CHECKSUM))
        return rb_fail(err, INDEX_REWRITE_HINT, "%s: not a radbatch shard index of version %d or %d", path,
                       SHARD_INDEX_VERSION_NO_CHECKSUM, SHARD_INDEX_VERSION);
    if (ver < SHARD_INDEX_VERSION) {
        if (rb_log_rank() == 0)
            rb_warn("%s: a format_version 1 index.json carries no checksum; only its agreement with the shards "
                    "is checked (rerun convert to add one)",
                    path);
        return 0;
    }
    long digits = find_index_checksum((const char *)buf, len);
    const char *parsed = get_str(root, "index_checksum");
    if (digits < 0 || !parsed)
        return rb_fail(err, "the file was edited or damaged; rerun 'radbatch convert' to rewrite it",
                       "%s: no index_checksum member (16 hex digits)", path);
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)index_text_hash((const char *)buf, len, digits));
    if (memcmp(hex, buf + digits, 16) != 0 || strcmp(parsed, hex) != 0)
        return rb_fail(err,
                       "index.json was edited or damaged after convert wrote it; rerun 'radbatch convert' to "
                       "rewrite it",
                       "%s: checksum mismatch: index_checksum says %.16s, the file's bytes give %s", path,
                       (const char *)buf + digits, hex);
    return 0;
}

/* A JSON array of strings as a malloc'd, NULL-terminated array (a non-string entry reads as
 * ""); *n entries. NULL when out of memory. */
static char **str_array(const cJSON *a, int *n)
{
    *n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    char **v = calloc((size_t)*n + 1, sizeof *v);
    if (!v)
        *n = 0;
    for (int i = 0; v && i < *n; i++) {
        const cJSON *s = cJSON_GetArrayItem(a, i);
        if (!(v[i] = strdup(cJSON_IsString(s) ? s->valuestring : ""))) {
            while (i > 0)
                free(v[--i]);
            free(v);
            v = NULL;
            *n = 0;
        }
    }
    return v;
}

/* image size, resize method, class names, source roots and the split settings; -1 when a
 * required field is missing or malformed */
static int index_read_header(const cJSON *root, shard_index *x)
{
    int64_t v;
    if (get_int(root, "height", &v) < 0)
        return -1;
    x->height = (int)v;
    if (get_int(root, "width", &v) < 0)
        return -1;
    x->width = (int)v;
    if (get_int(root, "channels", &v) < 0)
        return -1;
    x->channels = (int)v;
    snprintf(x->resize, sizeof x->resize, "%s", get_str(root, "resize") ? get_str(root, "resize") : "");
    x->dct_scaling = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "dct_scaling"));
    const cJSON *cn = cJSON_GetObjectItemCaseSensitive(root, "class_names");
    if (!cJSON_IsArray(cn))
        return -1;
    x->class_names = str_array(cn, &x->nclasses);
    x->sources = str_array(cJSON_GetObjectItemCaseSensitive(root, "sources"), &x->nsources);
    if (!x->class_names || !x->sources)
        return -1;
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(root, "split");
    x->group_files = x->group_matched = x->groups = -1; /* older index.json: not recorded */
    if (sp) {
        get_int(sp, "seed", &x->seed);
        const cJSON *vf = cJSON_GetObjectItemCaseSensitive(sp, "val_fraction");
        x->val_fraction = cJSON_IsNumber(vf) ? vf->valuedouble : 0;
        const cJSON *tf = cJSON_GetObjectItemCaseSensitive(sp, "test_fraction");
        x->test_fraction = cJSON_IsNumber(tf) ? tf->valuedouble : 0;
        const char *g = get_str(sp, "group_regex");
        x->group_regex = g ? strdup(g) : NULL;
        get_int(sp, "group_files", &x->group_files);
        get_int(sp, "group_regex_matched", &x->group_matched);
        get_int(sp, "groups", &x->groups);
        const char *gw = get_str(sp, "group_warning");
        x->group_warning = gw ? strdup(gw) : NULL;
    }
    return 0;
}

/* The shards array, summed per split and per split and class; -1 when malformed. */
static int index_read_shards(const cJSON *root, shard_index *x)
{
    x->split_class = calloc((size_t)SHARD_INDEX_SPLITS * (size_t)(x->nclasses + 1), sizeof *x->split_class);
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(root, "shards");
    if (!cJSON_IsArray(shards) || !x->split_class)
        return -1;
    x->nshards = cJSON_GetArraySize(shards);
    x->shards = calloc((size_t)x->nshards + 1, sizeof *x->shards);
    if (!x->shards) {
        x->nshards = 0;
        return -1;
    }
    for (int k = 0; k < x->nshards; k++) {
        const cJSON *o = cJSON_GetArrayItem(shards, k);
        shard_index_entry *e = &x->shards[k];
        const char *file = get_str(o, "file"), *spl = get_str(o, "split");
        int64_t v;
        if (!file || !spl || (e->split = shard_index_split_id(spl)) < 0 || get_int(o, "records", &e->records) < 0)
            return -1;
        snprintf(e->file, sizeof e->file, "%s", file);
        if (get_int(o, "index", &v) == 0)
            e->index = (int)v;
        if (get_int(o, "count", &v) == 0)
            e->count = (int)v;
        snprintf(e->checksum, sizeof e->checksum, "%s", get_str(o, "checksum") ? get_str(o, "checksum") : "");
        snprintf(e->plan_hash, sizeof e->plan_hash, "%s", get_str(o, "plan_hash") ? get_str(o, "plan_hash") : "");
        e->per_class = calloc((size_t)x->nclasses + 1, sizeof *e->per_class);
        const cJSON *pc = cJSON_GetObjectItemCaseSensitive(o, "per_class");
        for (int c = 0; c < x->nclasses && e->per_class; c++)
            get_int(pc, x->class_names[c], &e->per_class[c]);
        x->split_records[e->split] += e->records;
        for (int c = 0; c < x->nclasses && e->per_class; c++)
            x->split_class[e->split * x->nclasses + c] += e->per_class[c];
    }
    return 0;
}

/* The splits summary of split s agrees with the shards listed: records, per class counts and
 * the list of shard files. */
static int index_check_split(const cJSON *splits, const shard_index *x, int s, const char *path, rb_error *err)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(splits, split_names[s]);
    int nsh = 0;
    for (int k = 0; k < x->nshards; k++)
        nsh += x->shards[k].split == s;
    if (!o) {
        if (nsh)
            return rb_fail(err, INDEX_REWRITE_HINT, "%s: splits has no '%s' entry, but %d %s shard(s) are listed",
                           path, split_names[s], nsh, split_names[s]);
        return 0;
    }
    int64_t rec = -1;
    if (get_int(o, "records", &rec) < 0 || rec != x->split_records[s])
        return rb_fail(err, INDEX_REWRITE_HINT, "%s: splits.%s.records says %lld, its shards' records add up to %lld",
                       path, split_names[s], (long long)rec, (long long)x->split_records[s]);
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(o, "per_class");
    for (int c = 0; c < x->nclasses; c++) {
        int64_t n = -1;
        if (get_int(pc, x->class_names[c], &n) < 0 || n != x->split_class[s * x->nclasses + c])
            return rb_fail(err, INDEX_REWRITE_HINT, "%s: splits.%s.per_class.%s says %lld, its shards add up to %lld",
                           path, split_names[s], x->class_names[c], (long long)n,
                           (long long)x->split_class[s * x->nclasses + c]);
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "shards");
    int j = 0, same = cJSON_IsArray(files) && cJSON_GetArraySize(files) == nsh;
    for (int k = 0; k < x->nshards && same; k++)
        if (x->shards[k].split == s) {
            const cJSON *f = cJSON_GetArrayItem(files, j++);
            same = cJSON_IsString(f) && strcmp(f->valuestring, x->shards[k].file) == 0;
        }
    if (!same)
        return rb_fail(err, INDEX_REWRITE_HINT, "%s: splits.%s.shards does not list the %s shards of the shards array",
                       path, split_names[s], split_names[s]);
    return 0;
}

/* convert's counts (stats) and the job file it ran with (config); both optional */
static void index_read_stats(const cJSON *root, shard_index *x)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stats");
    if (st) {
        get_int(st, "input_files", &x->input_files);
        get_int(st, "errors", &x->errors);
        get_int(st, "duplicate_groups", &x->duplicate_groups);
        get_int(st, "dropped_duplicates", &x->dropped_duplicates);
    }
    const char *cfg = get_str(root, "config");
    x->config = cfg ? strdup(cfg) : NULL;
}

/* The parsed index.json: format and checksum, header, shards, the splits summary checked
 * against the shards, stats. */
static int index_parse(const cJSON *root, const uint8_t *buf, size_t len, const char *path, shard_index *x,
                       rb_error *err)
{
    if (index_check_format(root, buf, len, path, err) < 0)
        return -1;
    if (index_read_header(root, x) < 0 || index_read_shards(root, x) < 0)
        return rb_fail(err, INDEX_REWRITE_HINT, "%s: missing or malformed fields", path);
    const cJSON *splits = cJSON_GetObjectItemCaseSensitive(root, "splits");
    for (int s = 0; s < SHARD_INDEX_SPLITS; s++)
        if (index_check_split(splits, x, s, path, err) < 0)
            return -1;
    index_read_stats(root, x);
    return 0;
}

int shard_index_read(const char *dir, shard_index *x, rb_error *err)
{
    memset(x, 0, sizeof *x);
    char *path = fs_join(dir, "index.json");
    uint8_t *buf;
    size_t len;
    if (!path)
        return rb_fail(err, NULL, "out of memory");
    if (fs_read_file(path, 1u << 30, &buf, &len, err) < 0) {
        rb_error_prefix(err, "shards folder: ");
        snprintf(err->hint, sizeof err->hint, "run 'radbatch convert' first, or check the shards path");
        free(path);
        return -1;
    }
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    int rc = root ? index_parse(root, buf, len, path, x, err)
                  : rb_fail(err, INDEX_REWRITE_HINT, "%s: not valid JSON", path);
    if (rc != 0)
        shard_index_free(x);
    cJSON_Delete(root);
    free(buf);
    free(path);
    return rc;
}

int shard_index_checksum(const char *dir, char out[17], rb_error *err)
{
    char *path = fs_join(dir, "index.json");
    uint8_t *buf;
    size_t len;
    int rc = fs_read_file(path, 1u << 30, &buf, &len, err);
    free(path);
    if (rc < 0)
        return -1;
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits(buf, len));
    free(buf);
    return 0;
}
