#include "json_number.h"
#include "test_hooks.h"
#include "infer_list.h"
#include "dir_stream.h"
#include "fsutil.h"
#include "shard.h"
#include "shard_dataset.h"
#include "shard_index.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

int infer_input_detect(const char *input, infer_input_kind *kind, rb_error *err)
{
    struct stat st;
    if (stat(input, &st) != 0)
        return rb_fail(err, "give an archive folder, a .txt/.csv file list or a shards folder", "infer: input %s: %s",
                       input, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        char *idx = fs_join(input, "index.json");
        int shards = 0;
        if (idx && fs_is_file(idx)) {
            uint8_t *b;
            size_t n;
            rb_error e;
            if (fs_read_file(idx, 64 << 20, &b, &n, &e) == 0) {
                char *t = malloc(n + 1);
                if (t) {
                    memcpy(t, b, n);
                    t[n] = 0;
                    shards = strstr(t, "\"" SHARD_INDEX_FORMAT "\"") != NULL;
                    free(t);
                }
                free(b);
            }
        }
        free(idx);
        *kind = shards ? INFER_INPUT_SHARDS : INFER_INPUT_FOLDER;
        return 0;
    }
    size_t l = strlen(input);
    if (S_ISREG(st.st_mode) && l > 4 && (!strcasecmp(input + l - 4, ".txt") || !strcasecmp(input + l - 4, ".csv"))) {
        *kind = INFER_INPUT_LIST;
        return 0;
    }
    return rb_fail(err, "give an archive folder, a .txt/.csv file list (one path per line) or a shards folder",
                   "infer: input %s is neither a folder nor a .txt/.csv list", input);
}

/* ---- listing.json ---------------------------------------------------------------------- */
static char *listing_path(const char *work) { return fs_join(work, "listing.json"); }

static int listing_write(const infer_lister *l, int complete, uint64_t chunk_digest, rb_error *err)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "radbatch-infer-listing");
    json_add_exact_number(j, "version", 1);
    cJSON_AddBoolToObject(j, "complete", complete);
    cJSON_AddStringToObject(j, "input", l->input);
    cJSON_AddStringToObject(j, "kind", infer_input_kind_name(l->kind));
    json_add_exact_number(j, "chunk", (double)l->chunk);
    json_add_exact_number(j, "chunks", (double)atomic_load(&l->chunks));
    json_add_exact_number(j, "entries", (double)atomic_load(&l->entries));
    json_add_exact_number(j, "list_errors", (double)atomic_load(&l->errors));
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)chunk_digest);
    cJSON_AddStringToObject(j, "chunks_xxh3", hex);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text)
        return rb_fail(err, NULL, "out of memory");
    char *p = listing_path(l->work);
    size_t n = strlen(text);
    text[n] = '\n'; /* replace the NUL: written with its length */
    int rc = p ? infer_write_atomic(p, text, n + 1, err) : rb_fail(err, NULL, "out of memory");
    free(text);
    free(p);
    return rc;
}

static int listing_read_json(const char *work, cJSON **out)
{
    *out = NULL;
    char *p = listing_path(work);
    uint8_t *b;
    size_t n;
    rb_error e;
    int rc = p && fs_is_file(p) ? 1 : 0;
    if (rc == 1) {
        if (fs_read_file(p, 16 << 20, &b, &n, &e) < 0)
            rc = -1;
        else {
            *out = cJSON_ParseWithLength((const char *)b, n);
            free(b);
            rc = *out ? 1 : -1;
        }
    }
    free(p);
    return rc;
}

static int64_t jnum(const cJSON *j, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : -1;
}

int infer_listing_read(const char *work, int64_t *chunks, int64_t *entries, int64_t *list_errors, int *complete)
{
    cJSON *j;
    int rc = listing_read_json(work, &j);
    if (rc != 1)
        return rc;
    *chunks = jnum(j, "chunks");
    if (entries)
        *entries = jnum(j, "entries");
    if (list_errors)
        *list_errors = jnum(j, "list_errors");
    if (complete)
        *complete = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "complete"));
    cJSON_Delete(j);
    return *chunks >= 0 ? 1 : -1;
}

/* XXH3-64 of a whole file, streaming; -1 when unreadable. */
static int file_xxh3(const char *path, uint64_t *h)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    XXH3_state_t *s = XXH3_createState();
    XXH3_64bits_reset(s);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        XXH3_64bits_update(s, buf, n);
    int bad = ferror(f);
    fclose(f);
    *h = XXH3_64bits_digest(s);
    XXH3_freeState(s);
    return bad ? -1 : 0;
}

/* A complete listing of the same input whose chunk files are all intact. */
static int listing_reusable(infer_lister *l)
{
    cJSON *j;
    if (listing_read_json(l->work, &j) != 1)
        return 0;
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
    const cJSON *kd = cJSON_GetObjectItemCaseSensitive(j, "kind");
    const cJSON *dg = cJSON_GetObjectItemCaseSensitive(j, "chunks_xxh3");
    int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "complete")) && cJSON_IsString(in) &&
             !strcmp(in->valuestring, l->input) && cJSON_IsString(kd) &&
             !strcmp(kd->valuestring, infer_input_kind_name(l->kind)) && jnum(j, "chunk") == l->chunk &&
             cJSON_IsString(dg);
    int64_t n = jnum(j, "chunks");
    char want[17] = "";
    if (ok)
        snprintf(want, sizeof want, "%s", dg->valuestring);
    if (ok) {
        XXH3_state_t *s = XXH3_createState();
        XXH3_64bits_reset(s);
        for (int64_t k = 0; k < n && ok; k++) {
            char *p = infer_chunk_path(l->work, "chunk", k);
            uint64_t h;
            ok = p && file_xxh3(p, &h) == 0;
            free(p);
            if (ok)
                XXH3_64bits_update(s, &h, sizeof h);
        }
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)XXH3_64bits_digest(s));
        XXH3_freeState(s);
        ok = ok && !strcmp(hex, want);
    }
    char *le = fs_join(l->work, "list-errors.csv");
    ok = ok && le && fs_is_file(le);
    free(le);
    if (ok) {
        atomic_store(&l->chunks, n);
        atomic_store(&l->entries, jnum(j, "entries"));
        atomic_store(&l->errors, jnum(j, "list_errors"));
    }
    cJSON_Delete(j);
    return ok;
}

/* chunk number of "<prefix>-000123.csv", or -1 */
static int64_t chunk_number(const char *name, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0 || name[pl] != '-')
        return -1;
    const char *d = name + pl + 1;
    char *end;
    long long k = strtoll(d, &end, 10);
    if (end == d || strcmp(end, ".csv") != 0 || k < 0)
        return -1;
    return k;
}

static void unlink_numbered(const char *work, const char *prefix, int64_t k)
{
    char *p = infer_chunk_path(work, prefix, k);
    if (p)
        unlink(p);
    free(p);
}

int infer_list_prepare(infer_lister *l, rb_error *err)
{
    atomic_store(&l->stop, 0);
    atomic_store(&l->chunks, 0);
    atomic_store(&l->entries, 0);
    atomic_store(&l->errors, 0);
    if (listing_reusable(l)) {
        l->reused = 1;
        atomic_store(&l->state, 1);
        return 0;
    }
    l->reused = 0;
    atomic_store(&l->state, 0);
    char *lp = listing_path(l->work);
    if (lp)
        unlink(lp);
    free(lp);
    /* chunk files of an earlier attempt become prev-chunk files, compared when relisted */
    DIR *d = opendir(l->work);
    if (!d)
        return rb_fail(err, NULL, "%s: cannot open: %s", l->work, strerror(errno));
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL && rc == 0) {
        int64_t k = chunk_number(de->d_name, "chunk");
        if (k < 0)
            continue;
        char *from = fs_join(l->work, de->d_name), *to = infer_chunk_path(l->work, "prev-chunk", k);
        if (!from || !to || rename(from, to) != 0)
            rc = rb_fail(err, NULL, "%s: cannot rename %s: %s", l->work, de->d_name, strerror(errno));
        free(from);
        free(to);
    }
    closedir(d);
    return rc;
}

/* ---- the listing thread ----------------------------------------------------------------- */
typedef struct list_state {
    infer_lister *l;
    rb_buf chunk;      /* rows of the chunk being filled */
    int64_t in_chunk;
    FILE *errors;      /* list-errors.csv temporary */
    char *errors_tmp;
    XXH3_state_t *digest;
} list_state;

static int same_file_bytes(const char *path, const void *data, size_t len)
{
    uint8_t *b;
    size_t n;
    rb_error e;
    if (!fs_is_file(path) || fs_read_file(path, len + 1, &b, &n, &e) < 0)
        return 0;
    int same = n == len && memcmp(b, data, len) == 0;
    free(b);
    return same;
}

static int publish_chunk(list_state *s, rb_error *err)
{
    infer_lister *l = s->l;
    int64_t k = atomic_load(&l->chunks);
    char *path = infer_chunk_path(l->work, "chunk", k), *prev = infer_chunk_path(l->work, "prev-chunk", k);
    if (!path || !prev) {
        free(path);
        free(prev);
        return rb_fail(err, NULL, "out of memory");
    }
    if (!same_file_bytes(prev, s->chunk.data, s->chunk.len)) {
        /* new or different contents: results of the old chunk k no longer apply */
        unlink_numbered(l->work, "part", k);
        unlink_numbered(l->work, "errors", k);
    }
    unlink(prev);
    int rc = infer_write_atomic(path, s->chunk.data, s->chunk.len, err);
    uint64_t h = XXH3_64bits(s->chunk.data, s->chunk.len);
    XXH3_64bits_update(s->digest, &h, sizeof h);
    free(path);
    free(prev);
    if (rc == 0) {
        atomic_fetch_add(&l->chunks, 1);
        s->chunk.len = 0;
        s->in_chunk = 0;
        /* test hook: die (SIGKILL) in the middle of the listing */
        long long kill_at = test_hook_int(HOOK_KILL_IN_LISTING);
        if (kill_at >= 0 && atomic_load(&l->chunks) >= kill_at)
            raise(SIGKILL);
    }
    return rc;
}

static int add_entry(list_state *s, const char *path, int64_t size, const char *mtime, const char *hash,
                     const char *ref, rb_error *err)
{
    infer_entry_format(&s->chunk, path, size, mtime, hash, ref);
    if (s->chunk.failed)
        return rb_fail(err, NULL, "out of memory");
    atomic_fetch_add(&s->l->entries, 1);
    if (++s->in_chunk == s->l->chunk)
        return publish_chunk(s, err);
    return 0;
}

static void add_error(list_state *s, const char *path, const char *reason)
{
    rb_buf row = {0};
    csvrow_field(&row, path, 1);
    csvrow_field(&row, reason, 0);
    rb_buf_put(&row, "\n", 1);
    if (!row.failed)
        fwrite(row.data, 1, row.len, s->errors);
    rb_buf_free(&row);
    atomic_fetch_add(&s->l->errors, 1);
}

/* A shard none of whose records can be used: one row per record (shard#i, as index.json
 * counts them), so errors.csv and max_error_fraction count the images lost, not the file. */
static void add_shard_error(list_state *s, const char *file, int64_t records, const char *reason)
{
    if (records <= 0) {
        add_error(s, file, reason);
        return;
    }
    for (int64_t i = 0; i < records; i++) {
        char where[600];
        snprintf(where, sizeof where, "%s#%" PRId64, file, i);
        add_error(s, where, reason);
    }
}

static int list_folder(list_state *s, rb_error *err)
{
    infer_lister *l = s->l;
    dir_stream *ds;
    dir_stream_opts o = {.spill_dir = l->work};
    if (dir_stream_open(&ds, l->input, &o, err) < 0)
        return -1;
    if (l->exclude)
        dir_stream_exclude(ds, l->exclude);
    dir_stream_entry e;
    int rc;
    while (!atomic_load(&l->stop) && (rc = dir_stream_next(ds, &e, err)) == 1) {
        if (e.kind == DIR_STREAM_ERROR) {
            add_error(s, e.rel, e.reason);
            continue;
        }
        char mt[32];
        infer_mtime_text(mt, e.mtime_sec, e.mtime_nsec);
        if (add_entry(s, e.rel, e.size, mt, "", e.abs, err) < 0) {
            rc = -1;
            break;
        }
    }
    dir_stream_close(ds);
    return rc < 0 ? -1 : 0;
}

static int list_file_list(list_state *s, rb_error *err)
{
    infer_lister *l = s->l;
    FILE *f = fopen(l->input, "r");
    if (!f)
        return rb_fail(err, "check the path of the list", "%s: cannot open: %s", l->input, strerror(errno));
    size_t il = strlen(l->input);
    int is_csv = il > 4 && !strcasecmp(l->input + il - 4, ".csv");
    char *dir = strdup(l->input);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash)
        *slash = 0;
    rb_buf rec = {0};
    int rc = 0;
    int64_t lineno = 0;
    while (rc == 0 && !atomic_load(&l->stop)) {
        char *name;
        char *line = NULL;
        size_t cap = 0;
        if (is_csv) {
            int r = csvrec_read(f, &rec);
            if (r <= 0) {
                if (r < 0)
                    rc = rb_fail(err, NULL, "out of memory");
                break;
            }
            char *fld[2];
            int nf = csv_split_line((char *)rec.data, fld, 2);
            name = nf > 0 ? fld[0] : (char *)"";
            lineno++;
            if (lineno == 1 && (!strcasecmp(name, "path") || !strcasecmp(name, "file") ||
                                !strcasecmp(name, "filename")))
                continue; /* header */
        } else {
            ssize_t n = getline(&line, &cap, f);
            if (n < 0) {
                free(line);
                break;
            }
            while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
                line[--n] = 0;
            name = line;
        }
        if (name[0] && name[0] != '#') {
            char *abs = name[0] == '/' || !dir ? strdup(name) : fs_join(dir, name);
            struct stat st;
            if (!abs)
                rc = rb_fail(err, NULL, "out of memory");
            else if (stat(abs, &st) != 0) {
                char reason[300];
                snprintf(reason, sizeof reason, "listed file %s", errno == ENOENT ? "does not exist" : strerror(errno));
                add_error(s, name, reason);
            } else if (S_ISDIR(st.st_mode))
                add_error(s, name, "a folder, not a file (give the folder itself as the input to list it)");
            else if (!S_ISREG(st.st_mode))
                add_error(s, name, "not a regular file (FIFO, device or socket), skipped");
            else {
                char mt[32];
                infer_mtime_text(mt, (int64_t)st.st_mtim.tv_sec, (int32_t)st.st_mtim.tv_nsec);
                rc = add_entry(s, name, (int64_t)st.st_size, mt, "", abs, err);
            }
            free(abs);
        }
        free(line);
    }
    if (rc == 0 && ferror(f))
        rc = rb_fail(err, NULL, "%s: read error", l->input);
    rb_buf_free(&rec);
    free(dir);
    fclose(f);
    return rc;
}

static int list_shards(list_state *s, rb_error *err)
{
    infer_lister *l = s->l;
    shard_index idx;
    if (shard_index_read(l->input, &idx, err) < 0)
        return -1;
    int rc = 0;
    for (int k = 0; k < idx.nshards && rc == 0 && !atomic_load(&l->stop); k++) {
        char *p = fs_join(l->input, idx.shards[k].file);
        shard_reader r;
        rb_error e;
        struct stat st;
        if (!p)
            rc = rb_fail(err, NULL, "out of memory");
        else if (stat(p, &st) != 0) {
            char reason[300];
            snprintf(reason, sizeof reason, "shard %s", errno == ENOENT ? "does not exist" : strerror(errno));
            add_shard_error(s, idx.shards[k].file, idx.shards[k].records, reason);
        } else if (shard_open(&r, p, &e) < 0) {
            add_shard_error(s, idx.shards[k].file, idx.shards[k].records, e.msg); /* damaged or edited */
        } else if (shard_check_index(&r, l->input, &idx, &idx.shards[k], &e) < 0) {
            /* disagrees with index.json: none of its records is used */
            add_shard_error(s, idx.shards[k].file, idx.shards[k].records, e.msg);
            shard_close(&r);
        } else {
            char mt[32];
            infer_mtime_text(mt, (int64_t)st.st_mtim.tv_sec, (int32_t)st.st_mtim.tv_nsec);
            int64_t rec = (int64_t)r.height * r.width * r.channels;
            for (int64_t i = 0; i < r.n && rc == 0 && !atomic_load(&l->stop); i++) {
                char *path = NULL;
                char ref[4200];
                snprintf(ref, sizeof ref, "%s#%" PRId64, p, i);
                if (shard_read_path(&r, i, &path, &e) < 0) {
                    char where[128];
                    snprintf(where, sizeof where, "%s#%" PRId64, idx.shards[k].file, i);
                    add_error(s, where, "cannot read the record's path");
                } else
                    rc = add_entry(s, path, rec, mt, "", ref, err);
                free(path);
            }
            shard_close(&r);
        }
        free(p);
    }
    shard_index_free(&idx);
    return rc;
}

static void *list_thread(void *arg)
{
    infer_lister *l = arg;
    list_state s = {0};
    s.l = l;
    s.digest = XXH3_createState();
    XXH3_64bits_reset(s.digest);
    char *ep = fs_join(l->work, "list-errors.csv");
    s.errors_tmp = ep ? fs_temp_name(ep) : NULL;
    int rc = 0;
    if (!ep || !s.errors_tmp || !(s.errors = fopen(s.errors_tmp, "w")))
        rc = rb_fail(&l->err, NULL, "%s: cannot create list-errors.csv", l->work);
    if (rc == 0) {
        if (l->kind == INFER_INPUT_FOLDER)
            rc = list_folder(&s, &l->err);
        else if (l->kind == INFER_INPUT_LIST)
            rc = list_file_list(&s, &l->err);
        else
            rc = list_shards(&s, &l->err);
    }
    int stopped = atomic_load(&l->stop);
    if (rc == 0 && !stopped && s.in_chunk > 0)
        rc = publish_chunk(&s, &l->err);
    if (s.errors) {
        long size = ftell(s.errors);
        if (fflush(s.errors) != 0 || fsync(fileno(s.errors)) != 0)
            rc = rc ? rc : fs_write_fail(&l->err, ep, errno, size > 0 ? (uint64_t)size : 0);
        if (fclose(s.errors) != 0 && rc == 0)
            rc = fs_write_fail(&l->err, ep, errno, size > 0 ? (uint64_t)size : 0);
        if (rc == 0 && !stopped && rename(s.errors_tmp, ep) != 0)
            rc = rb_fail(&l->err, NULL, "%s: cannot rename into place: %s", ep, strerror(errno));
        unlink(s.errors_tmp);
    }
    int complete = rc == 0 && !stopped;
    if (complete) {
        /* chunk numbers beyond the end, from an earlier listing of a changed input */
        DIR *d = opendir(l->work);
        struct dirent *de;
        int64_t n = atomic_load(&l->chunks);
        while (d && (de = readdir(d)) != NULL) {
            int64_t k = chunk_number(de->d_name, "prev-chunk");
            if (k < 0)
                continue;
            unlink_numbered(l->work, "prev-chunk", k);
            if (k >= n) {
                unlink_numbered(l->work, "part", k);
                unlink_numbered(l->work, "errors", k);
            }
        }
        if (d)
            closedir(d);
    }
    /* written also when stopped or failed (complete = false): waiting workers then end */
    rb_error e2;
    if (listing_write(l, complete, XXH3_64bits_digest(s.digest), rc == 0 ? &l->err : &e2) < 0 && rc == 0) {
        rc = -1;
        complete = 0; /* not recorded (a full disk): the main thread reports it, workers stop */
    }
    XXH3_freeState(s.digest);
    rb_buf_free(&s.chunk);
    free(s.errors_tmp);
    free(ep);
    atomic_store(&l->state, complete ? 1 : -1);
    return NULL;
}

int infer_list_start(infer_lister *l, rb_error *err)
{
    if (l->reused)
        return 0;
    if (pthread_create(&l->thread, NULL, list_thread, l) != 0)
        return rb_fail(err, NULL, "cannot start the listing thread");
    l->started = 1;
    return 0;
}

void infer_list_join(infer_lister *l)
{
    if (l->started) {
        pthread_join(l->thread, NULL);
        l->started = 0;
    }
}

void infer_list_free(infer_lister *l)
{
    atomic_store(&l->stop, 1);
    infer_list_join(l);
    free(l->input);
    free(l->work);
    free(l->exclude);
}
