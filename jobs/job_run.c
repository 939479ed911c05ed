#include "job_run.h"

#include "fsutil.h"
#include "rb_log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The key naming each command's output folder, and its other name (convert's out is the
 * pipeline's shards folder, job_str_either) */
static const struct {
    const char *cmd, *key, *alias;
} out_keys[] = {{"convert", "out", "shards"}, {"train", "run_dir", NULL}, {"evaluate", "out", NULL},
                {"infer", "out", NULL}};

/* The output folder this run will write (malloc'd), or NULL (a command without one, or
 * evaluate without out and run_dir: it reports that itself). *missing names the key when
 * the command needs the folder and none is given (a bad configuration: exit 2). */
static char *out_dir(const job_driver *d, const char **missing)
{
    *missing = NULL;
    for (size_t i = 0; i < sizeof out_keys / sizeof out_keys[0]; i++) {
        if (strcmp(out_keys[i].cmd, d->cmd->name) != 0)
            continue;
        const char *v = out_keys[i].alias ? job_str_either(d->cfg, out_keys[i].key, out_keys[i].alias)
                                          : job_str(d->cfg, out_keys[i].key);
        if (*v)
            return strdup(v);
        if (!strcmp(d->cmd->name, "evaluate")) {
            if (*job_str(d->cfg, "run_dir")) /* <run_dir>/evaluate */
                return fs_join(job_str(d->cfg, "run_dir"), "evaluate");
        } else
            *missing = out_keys[i].key;
    }
    return NULL;
}

static int has_key(const command_spec *cmd, const char *key)
{
    for (const opt_spec *o = cmd->opts; o->key; o++)
        if (strcmp(o->key, key) == 0)
            return 1;
    return 0;
}

static int same_error(const rb_error *a, const rb_error *b)
{
    return !strcmp(a->msg, b->msg) && !strcmp(a->hint, b->hint) && !strcmp(a->where, b->where);
}

/* An error whose rank could not hand it to rank 0 in time: printed by that rank. */
static void print_late(const rb_error *e)
{
    char prefix[48];
    snprintf(prefix, sizeof prefix, "[rank %d] ", rb_log_rank());
    rb_error_print(e, prefix);
}

/* Print the failures of all ranks once: each distinct error one time, in rank order; an
 * error that rank 0 did not report names the ranks that did ("[rank 1] ", "[ranks 1,3] ").
 * A failure that every rank detects (a bad option, a missing file) is thus one message, not
 * one per rank. */
static void report_errors(const rb_world *w, const rb_error *mine)
{
    if (!w || w->size < 2) {
        if (mine && mine->msg[0])
            rb_error_print(mine, "");
        return;
    }
    rb_error *all = NULL;
    rb_mpi_gather_errors(mine, 30.0, print_late, &all);
    if (!all)
        return;
    for (int r = 0; r < w->size; r++) {
        if (!all[r].msg[0])
            continue;
        int first = 1, count = 0;
        for (int q = 0; q < w->size; q++)
            if (all[q].msg[0] && same_error(&all[q], &all[r])) {
                first &= q >= r;
                count++;
            }
        if (!first)
            continue; /* printed with an earlier rank */
        char prefix[256] = "";
        if (count < w->size && r > 0) { /* rank 0 speaks for the job; others are named */
            size_t o = (size_t)snprintf(prefix, sizeof prefix, "[rank%s ", count > 1 ? "s" : "");
            for (int q = r, k = 0; q < w->size && o + 16 < sizeof prefix; q++)
                if (all[q].msg[0] && same_error(&all[q], &all[r]))
                    o += (size_t)snprintf(prefix + o, sizeof prefix - o, "%s%d", k++ ? "," : "", q);
            snprintf(prefix + o, sizeof prefix - o, "] ");
        }
        rb_error_print(&all[r], prefix);
    }
    free(all);
}

/* SIGTERM for commands without a stop point of their own (convert, evaluate, predict,
 * inspect, export), and for every command until MPI is up: end at once with 75, "stopped,
 * rerun to finish", as train and infer do after their clean stop. Everything radbatch
 * writes is published by rename, so a file under its final name stays whole (a temporary
 * file may stay behind, as after kill -9, and the rerun replaces it), and the same
 * command run again does the work (convert keeps its finished shards). */
static void stop_now(int sig)
{
    (void)sig;
    _exit(75); /* JOB_PREEMPTED; only async-signal-safe calls here */
}

int job_run(const job_driver *d, int argc, char **argv)
{
    int rank = 0;
    signal(SIGTERM, stop_now);
    if (d->world) {
        rb_mpi_init(&argc, &argv, d->world);
        rank = d->world->rank;
    }
    if (d->on_sigterm)
        signal(SIGTERM, d->on_sigterm);
    rb_error err;
    rb_error_clear(&err);
    int code = 0;
    int rc = job_config_parse(d->cfg, d->cmd, argc, argv, &err);
    int report = 0; /* this rank has an error to report */
    if (rc == 0 && d->cfg->help) {
        if (rank == 0 && d->cfg->help == 2)
            job_config_print_markdown(d->cmd);
        else if (rank == 0)
            job_config_print_help(d->cmd);
    } else if (rc < 0) {
        report = 1;
        code = 2;
    } else {
        job_config_fill_keys(d->cfg, d->keys);
        if (has_key(d->cmd, "quiet"))
            rb_log_set_quiet(job_bool(d->cfg, "quiet"));
        /* the output folder must be writable before any compute; what this run creates of
         * it is removed again when the run fails while it is still empty */
        const char *missing;
        char *out = out_dir(d, &missing), *created = NULL;
        /* 1: usable; 0: this rank found it unusable (reports err); OUT_FAILED_ELSEWHERE:
         * rank 0 found it unusable; OUT_NOT_GIVEN: no folder (every rank reports err) */
        enum { OUT_FAILED_ELSEWHERE = -1, OUT_NOT_GIVEN = -2 };
        int ok = 1;
        if (missing) {
            rb_fail(&err, "give the output folder in the job file or on the command line",
                    "%s: key '%s' is empty: no output folder (set %s = <folder>, or --%s <folder>)", d->cmd->name,
                    missing, missing, missing);
            ok = OUT_NOT_GIVEN;
        } else if (out && rank == 0) {
            ok = fs_check_out_dir(out, &err) == 0;
            created = fs_first_missing(out);
        }
        if (d->world && !rb_mpi_agree_ok(ok) && ok)
            ok = OUT_FAILED_ELSEWHERE; /* rank 0 failed the check and reports it */
        if (ok != 1) {
            report = ok == 0 || ok == OUT_NOT_GIVEN; /* every rank has the missing key: one message */
            code = ok == OUT_NOT_GIVEN ? 2 : 1;
        } else {
            rc = d->main(d->ctx, &err);
            report = rc == JOB_FAILED || (rc == JOB_BAD_CONFIG && rank == 0);
            code = rc == 0 ? 0 : rc == JOB_PREEMPTED ? 75 : rc == JOB_BAD_CONFIG ? 2 : 1;
        }
        if (code != 0 && code != 75 && created && fs_remove_empty_dirs(created))
            rb_info("removed the empty output folder %s that this failed run had created", created);
        free(created);
        free(out);
    }
    if (!(rc == 0 && d->cfg->help))
        report_errors(d->world, report ? &err : NULL);
    if (d->cleanup)
        d->cleanup(d->ctx);
    job_config_free(d->cfg);
    if (d->world)
        rb_mpi_finalize();
    return code;
}
