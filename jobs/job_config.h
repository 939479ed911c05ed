/* Job configuration: one format for every command.
 *
 *   radbatch <command> [job.ini] [positional ...] [--key value | --key=value | --flag] ...
 *
 * A job file is INI. Keys before any section apply to every command that knows them; keys
 * in the section named like the command ([convert], [train], ...) apply to that command
 * only and override the top-level ones. So one job file can drive a whole pipeline.
 * Command-line --key value overrides both. A key no command knows, or a key in the
 * command's own section that this command does not know, is an error that names the key
 * and lists the accepted keys. Every key has a type, a default and a help line; `radbatch
 * <command> --help` prints them, and docs/ documents them. */
#ifndef JOB_CONFIG_H
#define JOB_CONFIG_H

#include "rb_error.h"

#include <stdio.h>

#include <stdint.h>

typedef enum {
    OPT_STRING,
    OPT_INT,
    OPT_FLOAT,
    OPT_BOOL,
    OPT_CHOICE, /* one of the '|'-separated words in `choices` */
} opt_type;

typedef struct opt_spec {
    const char *key;
    opt_type type;
    const char *def;     /* default as text; NULL or "" = empty */
    const char *choices; /* OPT_CHOICE: "stretch|pad|center-crop" */
    const char *help;
} opt_spec;

typedef struct command_spec {
    const char *name;
    const char *summary;
    const char *usage;      /* "radbatch convert [job.ini] [--key value ...]" */
    const opt_spec *opts;   /* terminated by {NULL} */
    int (*run)(int argc, char **argv);
} command_spec;

#define JOB_MAX_POSITIONAL 64

typedef struct job_config {
    const command_spec *cmd;
    int nopts;
    char **value;      /* [nopts] current value text (owned) */
    const char **source; /* [nopts] "default", "job.ini", "command line" (static strings) */
    char *job_file;    /* owned, or NULL */
    int npositional;
    char *positional[JOB_MAX_POSITIONAL]; /* owned */
    int help;          /* --help was given */
} job_config;

/* The accepted range of a numeric key (see job_config.c for the table). `what` is printed in
 * errors and --help. */
typedef struct job_range {
    const char *cmd; /* NULL: every command that has the key */
    const char *key;
    double lo, hi;
    unsigned flags;
    const char *what;
} job_range;
const job_range *job_range_find(const char *cmd, const char *key); /* NULL: any value of the type */
const job_range *job_range_table(void);                             /* terminated by key = NULL */

/* All commands, for cross-command validation of top-level job-file keys. NULL-terminated. */
extern const command_spec *const job_commands[];

/* Parse argv (argv[0] = command name) for `cmd`. Returns 0 or -1 with err naming the key. */
int job_config_parse(job_config *c, const command_spec *cmd, int argc, char **argv, rb_error *err);
void job_config_free(job_config *c);

const char *job_str(const job_config *c, const char *key); /* "" when empty */
int64_t job_int(const job_config *c, const char *key);
double job_float(const job_config *c, const char *key);
int job_bool(const job_config *c, const char *key);
int job_is_set(const job_config *c, const char *key); /* not the default */
/* Where the value comes from, by precedence: 0 default, 1 job file top level, 2 the
 * command's job-file section, 3 command line. Decides between two keys naming one thing. */
int job_precedence(const job_config *c, const char *key);
/* The value of key a or, when b is set at a higher level (or a is empty), of key b: one
 * setting with two names, e.g. convert's out and the pipeline's shards folder. */
const char *job_str_either(const job_config *c, const char *a, const char *b);

/* Print usage, summary and the key table (key, type, default, help). */
void job_config_print_help(const command_spec *cmd);
/* Write "key = value" lines of the effective configuration (for run records). */
char *job_config_dump(const job_config *c); /* malloc'd */

#endif
