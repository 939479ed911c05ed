/* The driver every command shares: start MPI, parse the flags and job file (types and
 * ranges of values: the command's <command>_keys.h), fill its typed keys, print --help, check the output folder (convert out,
 * train run_dir, evaluate out, infer out: given, and writable, before any compute), run the
 * command, print its error, remove the output folders a failed run created while they are
 * still empty, free, end MPI, and turn the outcome into the exit code.
 *
 * Exit codes: 0 done; 1 failed; 2 bad flags, keys or values, or no output folder; 75
 * stopped by SIGTERM, rerun the same command to finish (train checkpoints and infer finishes
 * its chunk first; the other commands stop at once, their outputs published by rename). */
#ifndef JOB_RUN_H
#define JOB_RUN_H

#include "job_config.h"
#include "rb_error.h"
#include "rb_mpi.h"

/* What a command's main returns. Any other negative value is a failure already reported. */
#define JOB_FAILED (-1)           /* this rank failed and prints err: exit 1 */
#define JOB_FAILED_ELSEWHERE (-2) /* another rank reported the failure: exit 1 */
#define JOB_BAD_CONFIG (-3)       /* rank 0 prints err: exit 2 */
#define JOB_PREEMPTED 75          /* stopped by SIGTERM, rerun to finish (EX_TEMPFAIL): exit 75 */

/* This rank's code once rb_mpi_agree_ok(ok) said that some rank failed: JOB_FAILED when it
 * was this one (ok == 0: it reports err), else JOB_FAILED_ELSEWHERE. */
static inline int job_failed_where(int ok)
{
    return ok ? JOB_FAILED_ELSEWHERE : JOB_FAILED;
}

typedef struct job_driver {
    const command_spec *cmd;
    void *ctx;       /* the command's state, zeroed by the caller; passed to main and cleanup */
    job_config *cfg; /* where the configuration is parsed to (usually inside ctx) */
    void *keys;      /* the command's typed keys (<command>_keys.h), filled from cfg before main */
    rb_world *world; /* filled by rb_mpi_init; NULL: no MPI, this process is rank 0 */
    void (*on_sigterm)(int); /* installed once MPI is up; NULL: stop at once with exit 75 */
    /* Runs after a successful parse without --help; commands with a `quiet` key have it
     * applied to the log first. Returns 0, JOB_PREEMPTED or one of the negative codes. */
    int (*main)(void *ctx, rb_error *err);
    /* Frees ctx's contents after any outcome (also after --help or bad flags), or NULL.
     * job_run frees cfg itself afterwards. */
    void (*cleanup)(void *ctx);
} job_driver;

/* argv[0] is the command name. Returns the exit code. */
int job_run(const job_driver *d, int argc, char **argv);

#endif
