/* radbatch infer: bulk, resumable, incremental inference over an archive (docs/infer.md).
 *
 * Rank 0 streams the listing of the input into chunk files (a thread: rank 0 computes too);
 * every rank takes chunk numbers from a shared atomic counter (mpi/rb_work.h), waits for
 * that chunk file to be listed, decodes and predicts its images in batches, and commits a
 * part file per chunk (temp + fsync + rename). A chunk whose part file exists is done, so a
 * killed run, rerun, only does the rest; the listing is persisted and reused, so the chunks
 * and therefore the rows are the same. Rank 0 then merges the sorted parts into the
 * outputs (jobs/infer_merge.c). With --since, files whose (size, mtime) or content hash
 * match the previous run's index keep their earlier prediction and are not decoded.
 *
 * The steps below follow docs/infer.md; the context and the files that do each step are in
 * jobs/infer_ctx.h. */
#include "commands.h"
#include "infer_keys.h"
#include "fsutil.h"
#include "infer_ctx.h"
#include "explain.h"
#include "infer_merge.h"
#include "job_run.h"
#include "rb_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFER_SPEC_ROW(...) OPT_SPEC_ROW(infer_keys, __VA_ARGS__)
static const opt_spec infer_opts[] = {INFER_KEYS(INFER_SPEC_ROW){NULL, 0, NULL, NULL, NULL, {0, 0, 0, NULL}, 0}};

volatile sig_atomic_t infer_term_requested = 0;
static void on_term(int sig)
{
    (void)sig;
    infer_term_requested = 1;
}

/* Rank 0: what is screened, with what, and the listing thread started. */
static int start_listing(infer_ctx *x, rb_error *err)
{
    rb_info("infer: %s (%s) with %d model(s) at %dx%dx%d, %s, threshold %.4f on %s (%s); %d rank(s) x %d thread(s)",
            x->set.input, infer_input_kind_name(x->set.kind), x->tm.nmembers, x->tm.height, x->tm.width,
            x->tm.channels, x->set.tta ? (x->set.tta == 1 ? "tta flip" : "tta flip+shifts") : "no tta", x->tm.threshold,
            x->tm.class_names[x->tm.positive], x->tm.threshold_source, x->w.size, x->set.threads);
    if (x->set.since)
        rb_info("incremental: only files new or changed since %s (%s)", x->set.since,
                x->set.hash_mode ? "content hash" : "size and mtime");
    if (x->lister.reused)
        rb_info("reusing the complete listing in %s (%lld chunks)", x->set.work,
                (long long)atomic_load(&x->lister.chunks));
    return infer_list_start(&x->lister, err);
}

/* Rank 0, in the merge: the heatmap of one flagged image, read again from its file (the
 * path as listed: relative to the archive folder, or to the list's folder) */
typedef struct infer_explain_ctx {
    infer_ctx *x;
    explainer ex;
    int ready;
    uint8_t *px;
} infer_explain_ctx;

static int infer_explain_one(void *ctx, const char *path, uint8_t **png, size_t *len, rb_error *err)
{
    infer_explain_ctx *e = ctx;
    infer_ctx *x = e->x;
    if (!e->ready) {
        e->px = malloc((size_t)x->tm.height * x->tm.width * x->tm.channels);
        if (!e->px || explainer_create(&e->ex, &x->tm, x->set.threads, err) < 0)
            return e->px ? -1 : rb_fail(err, NULL, "out of memory");
        e->ready = 1;
    }
    char *full = NULL;
    if (path[0] == '/')
        full = strdup(path);
    else if (x->set.kind == INFER_INPUT_FOLDER)
        full = fs_join(x->set.input, path);
    else {
        char *dir = strdup(x->set.input), *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash)
            *slash = 0;
        full = dir ? fs_join(slash ? dir : ".", path) : NULL;
        free(dir);
    }
    if (!full)
        return rb_fail(err, NULL, "out of memory");
    image_info info;
    int rc = trained_model_load_image(&x->tm, full, e->px, &info, err) < 0 ? 1 : 0;
    free(full);
    if (rc == 0)
        rc = explain_encode_png(&e->ex, e->px, x->tm.positive, png, len, err);
    return rc;
}

/* Rank 0: the parts merged into the outputs; *entries is the number of files listed. */
static int merge_parts(infer_ctx *x, const infer_run_stats *st, infer_merge_result *res, int64_t *entries,
                       rb_error *err)
{
    int64_t nchunks = 0, lerr = 0;
    int complete = 0;
    *entries = 0;
    infer_listing_read(x->set.work, &nchunks, entries, &lerr, &complete);
    infer_merge_cfg mc = {
        .out = x->set.out, .work = x->set.work, .nchunks = nchunks, .nclasses = x->tm.nclasses,
        .class_names = x->tm.class_names, .positive = x->tm.positive, .threshold = x->tm.threshold,
        .threshold_rule = x->tm.threshold_rule, .threshold_source = x->tm.threshold_source,
        .since = x->set.since, .input = x->set.input, .kind = infer_input_kind_name(x->set.kind),
        .change_detection = x->keys.change_detection, .files_listed = *entries, .list_errors = lerr,
        .tta = x->set.tta, .batch = x->set.batch, .ranks = x->w.size, .threads = x->set.threads, .chunk = x->set.chunk,
        .nmodels = x->tm.nmembers, .model_paths = x->tm.path, .model_fingerprint = x->fingerprint,
        .card = x->tm.card, .infer_seconds = st->seconds, .images_this_run = st->images,
        .peak_rss_mb = st->peak_rss_mb, .resumed = st->resumed,
    };
    infer_explain_ctx ec = {.x = x};
    if (x->keys.explain > 0) {
        mc.explain = (int)x->keys.explain;
        mc.explain_fn = infer_explain_one;
        mc.explain_ctx = &ec;
    }
    int rc = infer_merge_outputs(&mc, res, err);
    if (ec.ready)
        explainer_free(&ec.ex);
    free(ec.px);
    return rc;
}

/* Rank 0: the summary lines; 1 when too many files are errors (the outputs are complete
 * either way; the exit code tells a pipeline or a nightly job that the archive, or its
 * mount, needs a look). */
static int report_run(infer_ctx *x, const infer_run_stats *st, const infer_merge_result *res, int64_t entries,
                      double merge_seconds, rb_error *err)
{
    if (x->set.since && res->predicted == 0)
        rb_info("nothing new or changed since %s (%lld files unchanged, %lld removed)", x->set.since,
                (long long)res->unchanged, (long long)res->removed);
    rb_info("infer: %lld files listed, %lld predicted%s, %lld flagged at %s >= %.4f, %lld errors",
            (long long)entries, (long long)res->predicted,
            x->set.since ? "" : "", (long long)res->flagged, x->tm.class_names[x->tm.positive], x->tm.threshold,
            (long long)res->errors);
    if (x->set.since)
        rb_info("  since %s: %lld new, %lld changed, %lld unchanged, %lld removed", x->set.since,
                (long long)res->new_files, (long long)res->changed, (long long)res->unchanged,
                (long long)res->removed);
    char line[1024];
    int l = snprintf(line, sizeof line, " ");
    for (int c = 0; c < x->tm.nclasses && l < (int)sizeof line - 64; c++)
        l += snprintf(line + l, sizeof line - (size_t)l, " %s %lld", x->tm.class_names[c],
                      (long long)res->per_class[c]);
    rb_info("%s", line);
    double t = st->seconds;
    rb_info("  %lld images decoded and predicted in %.1f s (%.1f images/s), merge %.1f s, peak RSS %.0f MiB",
            (long long)st->images, t, t > 0 ? (double)st->images / t : 0.0, merge_seconds, st->peak_rss_mb);
    char *rp = fs_join(x->set.out, "report.html");
    rb_info("report: %s", rp ? rp : "report.html");
    free(rp);
    int64_t usable = res->predicted + res->unchanged, seen = usable + res->errors;
    double frac = seen ? (double)res->errors / (double)seen : 0.0, limit = x->keys.max_error_fraction;
    if (res->errors && !usable) {
        rb_fail(err, "see errors.csv for the reason of each file", "infer: none of the %lld files could be used",
                (long long)res->errors);
        return 1;
    }
    if (frac > limit) {
        rb_fail(err, "see errors.csv; raise max_error_fraction if these files are expected",
                "infer: %lld of %lld files are errors (%.1f%% > max_error_fraction %.1f%%)",
                (long long)res->errors, (long long)seen, 100 * frac, 100 * limit);
        return 1;
    }
    return 0;
}

/* Rank 0 merges and reports; every rank returns the agreed exit code. */
static int merge_and_report(infer_ctx *x, const infer_run_stats *st, rb_error *err)
{
    int64_t exit_state = 0;
    if (x->w.rank == 0) {
        infer_merge_result res;
        int64_t entries;
        double tm0 = rb_now();
        if (merge_parts(x, st, &res, &entries, err) < 0)
            exit_state = 1;
        else
            exit_state = report_run(x, st, &res, entries, rb_now() - tm0, err);
        infer_merge_result_free(&res);
    }
    rb_mpi_max_i64(&exit_state, 1);
    if (exit_state)
        return x->w.rank == 0 ? JOB_FAILED : JOB_FAILED_ELSEWHERE;
    return 0;
}

/* Setup, then the steps of docs/infer.md, "How the work is spread"; after each, the ranks
 * agree before going on. */
static int infer_main(infer_ctx *x, rb_error *err)
{
    int rank0 = x->w.rank == 0;
    /* setup: settings; rank 0 readies the run folder and prepares the listing; the models */
    if (threshold_spec_parse("infer", x->keys.threshold, &x->set.threshold, err) < 0)
        return JOB_BAD_CONFIG;
    int ok = infer_parse_settings(x, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    /* the threshold from the first model's card, before the run folder is touched */
    if (trained_model_peek_threshold(x->set.model_list, "infer", &x->set.threshold, threshold_key_origin(&x->cfg),
                                     &x->set.threshold_value, x->set.threshold_source,
                                     sizeof x->set.threshold_source, err) < 0)
        return JOB_BAD_CONFIG;
    ok = !rank0 || infer_prepare_run(x, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    if (infer_share_fingerprint(x, err) < 0)
        return -1;
    ok = infer_load_models(x, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    /* 1. listing: a thread of rank 0 */
    ok = !rank0 || start_listing(x, err) == 0;
    if (!rb_mpi_agree_ok(ok))
        return job_failed_where(ok);
    /* 2. hand-out and 3. chunks: the work loop, chunks from the shared counter predicted by
     * the compute threads */
    infer_run_stats st = {0};
    int rc = infer_work_loop(x, &st, err);
    if (rc != 0)
        return rc;
    /* 4. merge (rank 0), and the summary */
    return merge_and_report(x, &st, err);
}

static int infer_run(void *ctx, rb_error *err) { return infer_main(ctx, err); }

static void infer_free(void *ctx)
{
    infer_ctx *x = ctx;
    if (x->w.rank == 0)
        infer_list_free(&x->lister);
    if (x->have_prev)
        infer_prev_close(&x->prev);
    if (x->shard_path) {
        shard_close(&x->shard);
        free(x->shard_path);
    }
    for (int t = 0; t < x->nworkers; t++) {
        if (t > 0 && x->wk[t].tm) {
            trained_model_free(x->wk[t].tm);
            free(x->wk[t].tm);
        }
        free(x->wk[t].images);
        free(x->wk[t].probs);
    }
    if (x->have_tm)
        trained_model_free(&x->tm);
    free(x->set.model_list);
    free(x->set.input);
    free(x->set.out);
    free(x->set.work);
    free(x->set.since);
}

static int run_infer(int argc, char **argv)
{
    infer_ctx x;
    memset(&x, 0, sizeof x);
    job_driver d = {.cmd = &command_infer, .ctx = &x, .cfg = &x.cfg, .keys = &x.keys, .world = &x.w,
                    .on_sigterm = on_term, .main = infer_run, .cleanup = infer_free};
    return job_run(&d, argc, argv);
}

const command_spec command_infer = {
    "infer",
    "bulk inference over an archive folder, file list or shards: resumable, incremental (--since), screening report",
    "usage: radbatch infer [job.ini] --model m.h5[,m2.h5] --input <folder|list.txt|shards> --out <run folder> "
    "[--since <previous run>] [--key value ...]   (mpirun -n N / srun for N ranks)",
    infer_opts,
    run_infer,
};

