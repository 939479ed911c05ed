#include "job_run.h"

#include "rb_log.h"

#include <signal.h>
#include <string.h>

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
        rc = d->main(d->ctx, &err);
        if (rc == JOB_FAILED || (rc == JOB_BAD_CONFIG && rank == 0))
            rb_error_print(&err, "");
        code = rc == 0 ? 0 : rc == JOB_PREEMPTED ? 75 : rc == JOB_BAD_CONFIG ? 2 : 1;
    }
    if (d->cleanup)
        d->cleanup(d->ctx);
    job_config_free(d->cfg);
    if (d->world)
        rb_mpi_finalize();
    return code;
}
