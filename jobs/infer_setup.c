/* radbatch infer: setup (docs/infer.md): the settings, the run folder made ready for this
 * attempt, work/run.json and --since checked against earlier runs, and the models loaded
 * once per compute thread. */
#include "json_number.h"
#include "fsutil.h"
#include "infer_ctx.h"
#include "infer_merge.h"
#include "job_marker.h"
#include "rb_buf.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

static char *abs_path(const char *p)
{
    char *r = realpath(p, NULL);
    return r ? r : strdup(p);
}

/* XXH3-64 over the bytes of every model file, in order. */
static int model_fingerprint(const char *list, char out[17], rb_error *err)
{
    XXH3_state_t *s = XXH3_createState();
    XXH3_64bits_reset(s);
    char *copy = strdup(list), *save = NULL;
    int rc = 0;
    for (char *t = strtok_r(copy, ",", &save); t && rc == 0; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (!*t)
            continue;
        uint8_t *b;
        size_t n;
        if (fs_read_file(t, (size_t)1 << 34, &b, &n, err) < 0)
            rc = -1;
        else {
            XXH3_64bits_update(s, b, n);
            free(b);
        }
    }
    free(copy);
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits_digest(s));
    XXH3_freeState(s);
    return rc;
}

/* work/run.json: the settings that shape the parts; a rerun into the same folder must match. */
static int check_run_json(infer_ctx *x, rb_error *err)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "radbatch-infer-run");
    cJSON_AddStringToObject(j, "input", x->set.input);
    cJSON_AddStringToObject(j, "kind", infer_input_kind_name(x->set.kind));
    json_add_exact_number(j, "chunk", (double)x->set.chunk);
    cJSON_AddStringToObject(j, "model_fingerprint", x->fingerprint);
    json_add_exact_number(j, "tta", x->set.tta);
    json_add_exact_number(j, "threshold", x->set.threshold_value);
    cJSON_AddStringToObject(j, "since", x->set.since ? x->set.since : "");
    cJSON_AddStringToObject(j, "change_detection", x->keys.change_detection);
    char *text = cJSON_Print(j);
    char *p = fs_join(x->set.work, "run.json");
    int rc = 0;
    if (!text || !p)
        rc = rb_fail(err, NULL, "out of memory");
    else if (fs_is_file(p)) {
        uint8_t *b;
        size_t n;
        cJSON *old = NULL;
        if (fs_read_file(p, 1 << 20, &b, &n, err) == 0) {
            old = cJSON_ParseWithLength((const char *)b, n);
            free(b);
        }
        /* compare parsed with parsed: the built tree holds raw number items (json_number.h) */
        cJSON *now = cJSON_Parse(text);
        if (!now)
            rc = rb_fail(err, NULL, "out of memory");
        for (cJSON *it = now ? now->child : NULL; rc == 0 && it; it = it->next) {
            cJSON *o = old ? cJSON_GetObjectItemCaseSensitive(old, it->string) : NULL;
            if (!o || !cJSON_Compare(o, it, 1)) {
                char *was = o ? cJSON_PrintUnformatted(o) : strdup("(missing)"), *now = cJSON_PrintUnformatted(it);
                rc = rb_fail(err, "rerun with the settings of the first attempt, or give a new --out",
                             "infer: %s was started with other settings: %s was %s, now %s", x->set.out, it->string,
                             was ? was : "?", now ? now : "?");
                free(was);
                free(now);
            }
        }
        cJSON_Delete(old);
        cJSON_Delete(now);
    } else {
        size_t n = strlen(text);
        text[n] = '\n';
        rc = infer_write_atomic(p, text, n + 1, err);
    }
    cJSON_Delete(j);
    free(text);
    free(p);
    return rc;
}

/* --since: the previous run must be finished and made with the same models and TTA. */
static int check_since(infer_ctx *x, rb_error *err)
{
    char *p = fs_join(x->set.since, "summary.json");
    uint8_t *b = NULL;
    size_t n;
    cJSON *j = NULL;
    int rc = 0;
    if (!p || !fs_is_file(p) || fs_read_file(p, 64 << 20, &b, &n, err) < 0 ||
        !(j = cJSON_ParseWithLength((const char *)b, n)))
        rc = rb_fail(err, "--since takes the folder of a finished infer run", "infer: %s: no readable summary.json",
                     x->set.since);
    const cJSON *fp = j ? cJSON_GetObjectItemCaseSensitive(j, "model_fingerprint") : NULL;
    const cJSON *tt = j ? cJSON_GetObjectItemCaseSensitive(j, "tta") : NULL;
    if (rc == 0 && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "complete")))
        rc = rb_fail(err, "finish the previous run first (rerun its command)", "infer: %s did not finish", x->set.since);
    if (rc == 0 && (!cJSON_IsString(fp) || strcmp(fp->valuestring, x->fingerprint) != 0 || !cJSON_IsNumber(tt) ||
                    (int)tt->valuedouble != x->set.tta))
        rc = rb_fail(err, "run without --since to screen the whole archive with this model",
                     "infer: %s was made with other models or another tta; its predictions cannot be carried over",
                     x->set.since);
    /* flagged rows are carried over as they were flagged: the threshold must be the same */
    const cJSON *th = j ? cJSON_GetObjectItemCaseSensitive(j, "threshold") : NULL;
    if (rc == 0 && (!cJSON_IsNumber(th) || th->valuedouble != x->set.threshold_value))
        rc = rb_fail(err, "run without --since to screen the whole archive at this threshold, or give the previous "
                          "run's threshold",
                     "infer: %s flagged at threshold %g, this run's is %g (%s); its flags cannot be carried over",
                     x->set.since, cJSON_IsNumber(th) ? th->valuedouble : NAN, x->set.threshold_value,
                     x->set.threshold_source);
    cJSON_Delete(j);
    free(b);
    free(p);
    return rc;
}

/* Remove temporary files of killed runs and the merge scratch. */
static void clean_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strstr(de->d_name, ".tmp."))
            continue;
        char *p = fs_join(dir, de->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    closedir(d);
}

int infer_parse_settings(infer_ctx *x, rb_error *err)
{
    job_config *c = &x->cfg;
    rb_buf models = {0};
    rb_buf_printf(&models, "%s", x->keys.model);
    const char *input = x->keys.input;
    for (int i = 0; i < c->npositional; i++) {
        const char *a = c->positional[i];
        size_t l = strlen(a);
        if (l > 3 && !strcmp(a + l - 3, ".h5") && !job_is_set(c, "model"))
            rb_buf_printf(&models, "%s%s", models.len ? "," : "", a);
        else if (!*input)
            input = a;
        else {
            rb_buf_free(&models);
            return rb_fail(err, "give one input (a folder, a list or a shards folder)",
                           "infer: unexpected argument '%s'", a);
        }
    }
    rb_buf_put(&models, "", 1);
    x->set.model_list = (char *)models.data;
    if (!x->set.model_list || !x->set.model_list[0])
        return rb_fail(err, "--model model.h5 (or several, comma-separated, for an ensemble)", "infer: no model given");
    if (!*input)
        return rb_fail(err, "--input <archive folder | list.txt/.csv | shards folder>", "infer: no input given");
    const char *out = x->keys.out;
    if (!*out)
        return rb_fail(err, "--out <run folder>", "infer: no output folder given");
    /* chunk, batch, tta, threads, limits: ranges checked when parsed (the command's _keys.h) */
    x->set.chunk = x->keys.chunk;
    x->set.batch = (int)x->keys.batch;
    x->set.tta = (int)x->keys.tta;
    x->set.threads = (int)x->keys.threads;
    if (x->set.threads <= 0)
        x->set.threads = x->w.threads;
    x->set.hash_mode = !strcmp(x->keys.change_detection, "hash");
    image_limits_default(&x->set.lim);
    x->set.lim.max_pixels = (int64_t)(x->keys.max_megapixels * 1e6);
    x->set.lim.max_file_bytes = (size_t)(x->keys.max_file_mb * 1048576.0);
    if (x->set.lim.max_pixels < 1)
        x->set.lim.max_pixels = 1;
    if (x->set.lim.max_file_bytes < 1)
        x->set.lim.max_file_bytes = 1;
    x->set.input = abs_path(input);
    x->set.out = strdup(out);
    x->set.work = fs_join(out, "work");
    if (*x->keys.since) {
        x->set.since = abs_path(x->keys.since);
        char *o = abs_path(out);
        int same = o && x->set.since && !strcmp(o, x->set.since);
        free(o);
        if (same)
            return rb_fail(err, "give each night's run its own --out", "infer: --since is the output folder itself");
    }
    if (!x->set.input || !x->set.out || !x->set.work)
        return rb_fail(err, NULL, "out of memory");
    if (infer_input_detect(x->set.input, &x->set.kind, err) < 0)
        return -1;
    if (x->keys.explain > 0 && x->set.kind == INFER_INPUT_SHARDS)
        return rb_fail(err, "explain reads the flagged images back from their files: give the archive folder or a file list",
                       "infer: explain = %lld with a shards folder (%s)", (long long)x->keys.explain, x->set.input);
    return 0;
}

/* The run folder is unfinished from here until the merge writes summary.json last: the
 * marker and the outputs of an earlier run go (the merge makes them again). */
static int clear_earlier_outputs(infer_ctx *x, rb_error *err)
{
    int ok = job_marker_clear(x->set.out, err) == 0;
    for (int i = 0; ok && infer_outputs[i]; i++) {
        char *q = fs_join(x->set.out, infer_outputs[i]);
        if (q && unlink(q) != 0 && errno != ENOENT)
            ok = rb_fail(err, NULL, "%s: cannot remove the output of an earlier run: %s", q, strerror(errno)) == 0;
        free(q);
    }
    char *ex = fs_join(x->set.out, INFER_EXPLAIN_DIR);
    if (ok && ex && infer_remove_flat_dir(ex) < 0)
        ok = rb_fail(err, NULL, "%s: cannot remove the heatmaps of an earlier run: %s", ex, strerror(errno)) == 0;
    free(ex);
    return ok ? 0 : -1;
}

/* Temporary files of killed attempts, and the merge scratch. */
static void clean_work_folder(infer_ctx *x)
{
    clean_temps(x->set.out);
    clean_temps(x->set.work);
    char *m = fs_join(x->set.work, "merge");
    if (m && fs_is_dir(m)) {
        char *ex = fs_join(m, INFER_EXPLAIN_DIR);
        if (ex)
            infer_remove_flat_dir(ex);
        free(ex);
        clean_temps(m);
        DIR *d = opendir(m);
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            if (de->d_name[0] != '.') {
                char *q = fs_join(m, de->d_name);
                if (q)
                    unlink(q);
                free(q);
            }
        if (d)
            closedir(d);
    }
    free(m);
}

int infer_prepare_run(infer_ctx *x, rb_error *err)
{
    int ok = model_fingerprint(x->set.model_list, x->fingerprint, err) == 0 && fs_mkdirs(x->set.work, err) == 0;
    ok = ok && clear_earlier_outputs(x, err) == 0;
    if (ok)
        clean_work_folder(x);
    ok = ok && check_run_json(x, err) == 0;
    ok = ok && (!x->set.since || check_since(x, err) == 0);
    if (ok) {
        x->lister.input = strdup(x->set.input);
        x->lister.work = strdup(x->set.work);
        x->lister.exclude = abs_path(x->set.out);
        x->lister.kind = x->set.kind;
        x->lister.chunk = x->set.chunk;
        ok = infer_list_prepare(&x->lister, err) == 0;
    }
    return ok ? 0 : -1;
}

int infer_share_fingerprint(infer_ctx *x, rb_error *err)
{
    void *fp = x->fingerprint;
    size_t fl = 17;
    if (rb_mpi_bcast_bytes(&fp, &fl, err) < 0)
        return -1;
    if (x->w.rank != 0) {
        memcpy(x->fingerprint, fp, 17);
        free(fp);
    }
    return 0;
}

int infer_load_models(infer_ctx *x, rb_error *err)
{
    if (x->set.threads > INFER_MAX_THREADS)
        x->set.threads = INFER_MAX_THREADS;
    openblas_set_num_threads(1); /* every compute thread runs its own single-threaded passes */
    int ok = trained_model_load(&x->tm, x->set.model_list, x->set.batch, 1, err) == 0;
    x->have_tm = ok;
    if (ok) {
        trained_model_set_tta(&x->tm, x->set.tta);
        ok = trained_model_apply_threshold(&x->tm, "infer", &x->set.threshold, threshold_key_origin(&x->cfg), err) == 0;
    }
    if (ok) {
        x->rec_bytes = (size_t)x->tm.height * x->tm.width * x->tm.channels;
    }
    for (int t = 0; ok && t < x->set.threads; t++) {
        infer_worker *w = &x->wk[t];
        if (t == 0)
            w->tm = &x->tm;
        else {
            w->tm = calloc(1, sizeof *w->tm);
            ok = w->tm && trained_model_load(w->tm, x->set.model_list, x->set.batch, 1, err) == 0;
            if (!ok) {
                free(w->tm);
                w->tm = NULL;
                break;
            }
            trained_model_set_tta(w->tm, x->set.tta);
            ok = trained_model_apply_threshold(w->tm, "infer", &x->set.threshold, threshold_key_origin(&x->cfg),
                                               err) == 0;
        }
        x->nworkers = t + 1;
        w->images = malloc((size_t)x->set.batch * x->rec_bytes);
        w->probs = malloc((size_t)x->set.batch * x->tm.nclasses * sizeof *w->probs);
        if (!w->images || !w->probs)
            ok = rb_fail(err, "lower batch or threads", "out of memory") == 0;
    }
    if (ok && x->set.since) {
        ok = infer_prev_open(&x->prev, x->set.since, x->tm.nclasses, x->tm.class_names, err) == 0;
        x->have_prev = ok;
    }
    return ok ? 0 : -1;
}
