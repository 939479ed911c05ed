#include "job_run.h"

#include "fsutil.h"
#include "rb_log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* The key naming each command's output folder. */
static const struct {
    const char *cmd, *key;
} out_keys[] = {{"convert", "out"}, {"train", "run_dir"}, {"evaluate", "out"}, {"infer", "out"}};

/* The output folder this run will write (malloc'd), or NULL (a command without one, or
 * evaluate without out and run_dir: it reports that itself). *missing names the key when
 * the command needs the folder and none is given (a bad configuration: exit 2). */
static char *out_dir(const job_driver *d, const char **missing)
{
    *missing = NULL;
    for (size_t i = 0; i < sizeof out_keys / sizeof out_keys[0]; i++) {
        if (strcmp(out_keys[i].cmd, d->cmd->name) != 0)
            continue;
        const char *v = job_str(d->cfg, out_keys[i].key);
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

int job_run(const job_driver *d, int argc, char **argv)
{
    int rank = 0;
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
    if (rc == 0 && d->cfg->help) {
        if (rank == 0)
            job_config_print_help(d->cmd);
    } else if (rc < 0) {
        if (rank == 0)
            rb_error_print(&err, "");
        code = 2;
    } else {
        if (has_key(d->cmd, "quiet"))
            rb_log_set_quiet(job_bool(d->cfg, "quiet"));
        /* the output folder must be writable before any compute; what this run creates of
         * it is removed again when the run fails while it is still empty */
        const char *missing;
        char *out = out_dir(d, &missing), *created = NULL;
        int ok = 1;
        if (missing) {
            rb_fail(&err, "give the output folder in the job file or on the command line",
                    "%s: key '%s' is empty: no output folder (set %s = <folder>, or --%s <folder>)", d->cmd->name,
                    missing, missing, missing);
            ok = -2;
        } else if (out && rank == 0) {
            ok = fs_check_out_dir(out, &err) == 0;
            created = fs_first_missing(out);
        }
        if (d->world && !rb_mpi_agree_ok(ok) && ok)
            ok = -1; /* rank 0 failed the check and prints it */
        if (ok != 1) {
            if (ok == 0 || (ok == -2 && rank == 0))
                rb_error_print(&err, "");
            code = ok == -2 ? 2 : 1;
        } else {
            rc = d->main(d->ctx, &err);
            if (rc == JOB_FAILED || (rc == JOB_BAD_CONFIG && rank == 0))
                rb_error_print(&err, "");
            code = rc == 0 ? 0 : rc == JOB_PREEMPTED ? 75 : rc == JOB_BAD_CONFIG ? 2 : 1;
        }
        if (code != 0 && code != 75 && created && fs_remove_empty_dirs(created))
            rb_info("removed the empty output folder %s that this failed run had created", created);
        free(created);
        free(out);
    }
    if (d->cleanup)
        d->cleanup(d->ctx);
    job_config_free(d->cfg);
    if (d->world)
        rb_mpi_finalize();
    return code;
}
