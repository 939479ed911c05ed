/* radbatch convert: the reports (docs/convert.md, "What it does", step 5). Rank 0 gathers
 * every rank's shard results and error rows and writes errors.csv, duplicates.csv,
 * index.json and, last, the marker that says the folder is finished. */
#include "json_number.h"
#include "convert_ctx.h"
#include "csv.h"
#include "fsutil.h"
#include "job_marker.h"
#include "job_run.h"
#include "rb_log.h"
#include "shard.h"
#include "shard_index.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct err_row {
    const char *path, *reason;
} err_row;
static int cmp_err_row(const void *a, const void *b)
{
    const err_row *x = a, *y = b;
    int c = strcmp(x->path, y->path);
    return c ? c : strcmp(x->reason, y->reason);
}

static int write_errors_csv(convert_ctx *x, const uint8_t *blob, size_t len, int64_t *nerr, rb_error *err)
{
    /* rank errors blob + scan errors */
    int64_t cap = 1024, n = 0;
    err_row *rows = malloc((size_t)cap * sizeof *rows);
    rb_buf parts[2] = {{(uint8_t *)blob, len, len, 0, 0},
                       {x->in.errors.data, x->in.errors.len, x->in.errors.len, 0, 0}};
    for (int k = 0; k < 2 && rows; k++) {
        const char *p, *r;
        while ((p = rb_buf_get_str(&parts[k])) && (r = rb_buf_get_str(&parts[k]))) {
            if (n == cap) {
                cap *= 2;
                err_row *t = realloc(rows, (size_t)cap * sizeof *t);
                if (!t)
                    break;
                rows = t;
            }
            rows[n++] = (err_row){p, r};
        }
    }
    if (!rows)
        return rb_fail(err, NULL, "out of memory");
    qsort(rows, (size_t)n, sizeof *rows, cmp_err_row);
    char *path = fs_join(x->out, "errors.csv");
    csv_writer w;
    int rc = csv_writer_open(&w, path, err);
    if (rc == 0) {
        csv_field(&w, "path");
        csv_field(&w, "reason");
        csv_end_row(&w);
        for (int64_t i = 0; i < n; i++) {
            csv_field(&w, rows[i].path);
            csv_field(&w, rows[i].reason);
            csv_end_row(&w);
        }
        rc = csv_writer_close(&w, err);
    }
    *nerr = n;
    free(rows);
    free(path);
    return rc;
}

static int cmp_pair(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

static int write_duplicates_csv(convert_ctx *x, rb_error *err)
{
    char *path = fs_join(x->out, "duplicates.csv");
    csv_writer w;
    int rc = csv_writer_open(&w, path, err);
    free(path);
    if (rc < 0)
        return -1;
    csv_field(&w, "content_hash");
    csv_field(&w, "path");
    csv_field(&w, "label");
    csv_field(&w, "split");
    csv_field(&w, "first_copy");
    csv_field(&w, "kept");
    csv_end_row(&w);
    /* (first copy, copy) pairs sorted, so each group is written together: O(n log n) */
    int64_t nd = 0;
    for (int64_t j = 0; j < x->in.n; j++)
        nd += x->pl.dup_of[j] >= 0;
    int64_t (*pairs)[2] = malloc((size_t)(nd ? nd : 1) * sizeof *pairs);
    if (!pairs) {
        csv_writer_abort(&w);
        return rb_fail(err, NULL, "out of memory");
    }
    nd = 0;
    for (int64_t j = 0; j < x->in.n; j++)
        if (x->pl.dup_of[j] >= 0) {
            pairs[nd][0] = x->pl.dup_of[j];
            pairs[nd++][1] = j;
        }
    if (nd > 1)
        qsort(pairs, (size_t)nd, sizeof *pairs, cmp_pair);
    for (int64_t k = 0; k < nd; k++) {
        int64_t first = pairs[k][0];
        int64_t rows[2] = {first, pairs[k][1]};
        for (int q = (k > 0 && pairs[k - 1][0] == first) ? 1 : 0; q < 2; q++) {
            int64_t j = rows[q];
            const plan_entry *d = &x->in.e[j];
            char hex[33];
            convert_hex128(d->hash, hex);
            csv_field(&w, hex);
            csv_field(&w, d->rel);
            csv_field(&w, d->label >= 0 ? x->in.class_names[d->label] : "");
            csv_field(&w, x->pl.split_of[j] >= 0 ? split_name(x->pl.split_of[j]) : "");
            csv_field(&w, x->in.e[first].rel);
            csv_field(&w, x->pl.split_of[j] >= 0 ? "yes" : "no");
            csv_end_row(&w);
        }
    }
    free(pairs);
    return csv_writer_close(&w, err);
}

void convert_clean_out_dir(convert_ctx *x, int after)
{
    DIR *d = opendir(x->out);
    if (!d)
        return;
    regex_t re;
    regcomp(&re, "^(train|val|test|all)-[0-9]{5}-of-[0-9]{5}\\.h5$", REG_EXTENDED | REG_NOSUB);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        int remove_it = 0;
        if (!after && strstr(nm, ".tmp.") && (strstr(nm, ".h5.tmp.") || strstr(nm, ".csv.tmp.") || strstr(nm, ".json.tmp.")))
            remove_it = 1; /* a temp file left by a killed run */
        else if (regexec(&re, nm, 0, NULL, 0) == 0) {
            if (!after && x->keys.overwrite)
                remove_it = 1;
            else if (after) {
                remove_it = 1;
                for (int k = 0; k < x->pl.nshards && remove_it; k++) {
                    char name[64];
                    convert_shard_file_name(&x->pl.shards[k], name, sizeof name);
                    remove_it = strcmp(name, nm) != 0;
                }
            }
        }
        if (remove_it) {
            char *p = fs_join(x->out, nm);
            if (p && unlink(p) == 0 && after)
                rb_info("removed %s (not part of this conversion)", nm);
            free(p);
        }
    }
    regfree(&re);
    closedir(d);
}

char *convert_group_warning(const convert_ctx *x)
{
    const char *re = x->keys.group_regex;
    int64_t n = x->pl.nusable, m = x->pl.regex_matched;
    if (!*re || n == 0 || (double)m >= GROUP_REGEX_MIN_SHARE * (double)n)
        return NULL;
    rb_buf b = {0};
    rb_buf_printf(&b,
                  "group_regex '%s' matched only %lld of %lld files (%.1f%% < %.0f%%): each unmatched file is its "
                  "own group, so one patient's images can land in several splits",
                  re, (long long)m, (long long)n, 100.0 * (double)m / (double)n, 100.0 * GROUP_REGEX_MIN_SHARE);
    return (char *)b.data;
}

void convert_report_groups(convert_ctx *x)
{
    const char *re = x->keys.group_regex;
    if (!*re) {
        rb_info("groups: no group_regex, every file is its own group (%lld files)", (long long)x->pl.nusable);
        return;
    }
    rb_info("groups: group_regex '%s' matched %lld of %lld files, %lld patient group(s)", re,
            (long long)x->pl.regex_matched, (long long)x->pl.nusable, (long long)x->pl.ngroups);
    char *w = convert_group_warning(x);
    if (w) {
        rb_warn("%s; check the regex against the file names (e.g. ^(person[0-9]+|NORMAL2-IM-[0-9]+|IM-[0-9]+) "
                "for the Kermany chest X-rays)", w);
        free(w);
    }
}

/* index.json's contents: the settings, and each shard's results placed at its plan position
 * so index.json lists shards in plan order; *reused counts shards kept from an earlier run. */
static void gather_index(convert_ctx *x, void *all_stats, size_t stats_len, shard_index *idx, int *reused)
{
    idx->height = x->H;
    idx->width = x->W;
    idx->channels = x->C;
    snprintf(idx->resize, sizeof idx->resize, "%s", resize_mode_name(x->mode));
    idx->dct_scaling = x->dct;
    idx->nclasses = x->in.nclasses;
    idx->class_names = x->in.class_names;
    idx->sources = x->in.roots;
    idx->nsources = x->in.nroots;
    idx->seed = x->keys.seed;
    idx->val_fraction = x->keys.val_fraction;
    idx->test_fraction = x->keys.test_fraction;
    idx->group_regex = (char *)x->keys.group_regex;
    idx->group_files = x->pl.nusable;
    idx->group_matched = *idx->group_regex ? x->pl.regex_matched : 0;
    idx->groups = x->pl.ngroups;
    idx->group_warning = convert_group_warning(x);
    idx->config = job_config_dump(&x->cfg);
    idx->nshards = x->pl.nshards;
    idx->shards = calloc((size_t)x->pl.nshards + 1, sizeof *idx->shards);
    idx->split_class = calloc((size_t)SHARD_INDEX_SPLITS * (size_t)(idx->nclasses + 1), sizeof *idx->split_class);
    int nc = idx->nclasses;
    *reused = 0;
    rb_buf sb = rb_buf_reader(all_stats, stats_len);
    const char *file;
    while (idx->shards && idx->split_class && (file = rb_buf_get_str(&sb))) {
        int32_t sp, rz;
        int64_t count;
        int64_t *pc = calloc((size_t)nc + 1, sizeof *pc);
        uint64_t ck;
        rb_buf_get(&sb, &sp, sizeof sp);
        rb_buf_get(&sb, &rz, sizeof rz);
        rb_buf_get(&sb, &count, sizeof count);
        rb_buf_get(&sb, pc, (size_t)nc * sizeof *pc);
        rb_buf_get(&sb, &ck, sizeof ck);
        const char *ph = rb_buf_get_str(&sb);
        for (int k = 0; k < x->pl.nshards; k++) {
            char name[64];
            convert_shard_file_name(&x->pl.shards[k], name, sizeof name);
            if (strcmp(name, file) != 0)
                continue;
            shard_index_entry *e = &idx->shards[k];
            snprintf(e->file, sizeof e->file, "%s", file);
            e->split = sp;
            e->index = x->pl.shards[k].index;
            e->count = x->pl.shards[k].count;
            e->records = count;
            e->per_class = pc;
            pc = NULL;
            snprintf(e->checksum, sizeof e->checksum, "%016llx", (unsigned long long)ck);
            snprintf(e->plan_hash, sizeof e->plan_hash, "%s", ph ? ph : "");
            idx->split_records[sp] += count;
            for (int c = 0; c < nc; c++)
                idx->split_class[sp * nc + c] += e->per_class[c];
        }
        *reused += rz;
        free(pc);
    }
}

static void free_index(shard_index *idx)
{
    for (int k = 0; k < idx->nshards && idx->shards; k++)
        free(idx->shards[k].per_class);
    free(idx->shards);
    free(idx->split_class);
    free(idx->config);
    free(idx->group_warning);
}

/* errors.csv, duplicates.csv, index.json, the clean-up, and the marker last (the folder is
 * finished); *total is the number of records in the shards, *elapsed the time until the
 * marker. */
static int write_outputs(convert_ctx *x, shard_index *idx, const void *all_errors, size_t errors_len, int64_t *nerr,
                         int64_t *total, double *elapsed, const convert_times *t, rb_error *err)
{
    *nerr = 0;
    int rc = write_errors_csv(x, all_errors, errors_len, nerr, err);
    if (rc == 0)
        rc = write_duplicates_csv(x, err);
    idx->input_files = x->in.n;
    idx->errors = *nerr;
    idx->duplicate_groups = x->pl.ndup_groups;
    idx->dropped_duplicates = x->pl.ndropped;
    if (rc == 0)
        rc = shard_index_write(x->out, idx, err);
    if (rc == 0)
        convert_clean_out_dir(x, 1);
    *total = 0;
    for (int s = 0; s < SHARD_INDEX_SPLITS; s++)
        *total += idx->split_records[s];
    *elapsed = rb_now() - t->start;
    if (rc == 0) {
        cJSON *f = cJSON_CreateObject();
        json_add_exact_number(f, "records", (double)*total);
        json_add_exact_number(f, "shards", x->pl.nshards);
        json_add_exact_number(f, "input_files", (double)x->in.n);
        json_add_exact_number(f, "errors", (double)*nerr);
        json_add_exact_number(f, "duplicate_groups", (double)x->pl.ndup_groups);
        rc = job_marker_write(x->out, "convert", f, err);
    }
    return rc;
}

/* The summary lines; 0, 1 when too many inputs failed, 2 when no image was usable. */
static int64_t print_summary(convert_ctx *x, const shard_index *idx, int64_t total, int64_t nerr, int reused,
                             double elapsed, const convert_times *t, rb_error *err)
{
    int nc = idx->nclasses;
    /* the bytes really on disk (pixels, labels, paths, checksums and HDF5's own structure) */
    double bytes = 0;
    for (int k = 0; k < idx->nshards; k++) {
        char *f = fs_join(x->out, idx->shards[k].file);
        struct stat st;
        if (f && stat(f, &st) == 0)
            bytes += (double)st.st_size;
        free(f);
    }
    char size[32];
    if (bytes >= 1e9)
        snprintf(size, sizeof size, "%.1f GB", bytes / 1e9);
    else if (bytes >= 1e6)
        snprintf(size, sizeof size, "%.1f MB", bytes / 1e6);
    else
        snprintf(size, sizeof size, "%.1f kB", bytes / 1e3);
    rb_info("wrote %lld records in %d shards (%s) to %s (%d kept from an earlier run) in %.1f s, %.0f images/s",
            (long long)total, x->pl.nshards, size, x->out, reused, elapsed, elapsed > 0 ? (double)total / elapsed : 0.0);
    for (int s = 0; s < SHARD_INDEX_SPLITS; s++) {
        if (!idx->split_records[s])
            continue;
        char line[1024];
        int l = snprintf(line, sizeof line, "  %-5s %6lld:", split_name(s), (long long)idx->split_records[s]);
        for (int c = 0; c < nc && l < (int)sizeof line - 64; c++)
            l += snprintf(line + l, sizeof line - (size_t)l, " %s %lld", x->in.class_names[c],
                          (long long)idx->split_class[s * nc + c]);
        rb_info("%s", line);
    }
    rb_info("time: listing %.2f s, reading and hashing %.2f s, plan %.2f s, decoding and writing "
            "%.2f s, reports %.2f s",
            t->listed - t->start, t->probed - t->listed, t->planned - t->probed, t->written - t->planned,
            rb_now() - t->written);
    if (nerr)
        rb_info("%lld input(s) could not be used: see %s/errors.csv", (long long)nerr, x->out);
    double frac = x->in.n ? (double)nerr / (double)x->in.n : 0;
    if (total == 0) {
        rb_fail(err, "see errors.csv for the reason of each file", "convert: no usable images");
        return 2;
    }
    if (frac > x->keys.max_error_fraction) {
        rb_fail(err, "fix the inputs, or raise max_error_fraction",
                "convert: %lld of %lld inputs failed (%.1f%% > max_error_fraction %.1f%%)", (long long)nerr,
                (long long)x->in.n, 100 * frac, 100 * x->keys.max_error_fraction);
        return 1;
    }
    return 0;
}

int convert_report(convert_ctx *x, rb_buf *stats, const convert_times *t, rb_error *err)
{
    void *all_stats = NULL, *all_errors = NULL;
    size_t stats_len = 0, errors_len = 0;
    if (rb_mpi_gather_bytes(stats->data, stats->len, &all_stats, &stats_len, err) < 0 ||
        rb_mpi_gather_bytes(x->errors.data, x->errors.len, &all_errors, &errors_len, err) < 0)
        return -1;
    int64_t exit_state = 0; /* 0 ok, 1 too many errors, 2 no usable image or a report failed */
    if (x->world.rank == 0) {
        shard_index idx = {0};
        int reused;
        int64_t nerr, total;
        gather_index(x, all_stats, stats_len, &idx, &reused);
        double elapsed;
        if (write_outputs(x, &idx, all_errors, errors_len, &nerr, &total, &elapsed, t, err) == 0)
            exit_state = print_summary(x, &idx, total, nerr, reused, elapsed, t, err);
        else
            exit_state = 2;
        free_index(&idx);
    }
    free(all_stats);
    free(all_errors);
    rb_mpi_max_i64(&exit_state, 1);
    if (exit_state)
        return x->world.rank == 0 ? JOB_FAILED : JOB_FAILED_ELSEWHERE;
    return 0;
}
