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

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    OPT_STRING,
    OPT_INT,
    OPT_FLOAT,
    OPT_BOOL,
    OPT_CHOICE, /* one of the '|'-separated words in `choices` */
} opt_type;

/* The accepted range of a numeric key; `what` is printed in errors and --help. */
enum { RANGE_LO_OPEN = 1, RANGE_HI_OPEN = 2, RANGE_OR_ZERO = 4, RANGE_OR_MINUS_ONE = 8, RANGE_ONE_OR_THREE = 16 };
typedef struct opt_range {
    double lo, hi;
    unsigned flags;
    const char *what; /* NULL: any value of the type */
} opt_range;

typedef struct opt_spec {
    const char *key;
    opt_type type;
    const char *def;     /* default as text; NULL or "" = empty */
    const char *choices; /* OPT_CHOICE: "stretch|pad|center-crop" */
    const char *help;
    opt_range range;
    /* Typed settings: 1 + the offset of the key's field in the command's settings struct
     * (0: none). The field's C type follows the key's type: OPT_STRING and OPT_CHOICE
     * const char * (the text, owned by the job_config), OPT_INT int64_t, OPT_FLOAT double,
     * OPT_BOOL int. job_config_fill_keys() fills the struct once after parsing. */
    size_t field;
} opt_spec;

/* Typed settings declared once. A command lists its keys in an X-macro, one row per key:
 *   X(batch_size, INT, "32", NULL, (1, 1 << 20, 0, "an integer in 1..1048576"), "global batch size")
 * (name, type, default, choices, range as (lo, hi, flags, what) or NO_RANGE, help), and gets
 * from it both its settings struct (OPT_KEYS_STRUCT) and its key table (OPT_SPEC_ROW):
 * the code reads x->set.batch_size, and a key typo is a compile error. */
#define OPT_CTYPE_STRING const char *
#define OPT_CTYPE_CHOICE const char *
#define OPT_CTYPE_INT int64_t
#define OPT_CTYPE_FLOAT double
#define OPT_CTYPE_BOOL int
#define NO_RANGE (0, 0, 0, NULL)
#define OPT_NOLIMIT 1e300
#define OPT_RANGE_INIT(lo, hi, flags, what) {(lo), (hi), (flags), (what)}
#define OPT_RANGE(r) OPT_RANGE_INIT r
/* ranges of keys several commands share */
#define OPT_RANGE_THREADS (0, 4096, 0, "0 (automatic) or a thread count up to 4096")
#define OPT_RANGE_TTA (0, 2, 0, "0 (none), 1 (flip) or 2 (flip and shifts)")
#define OPT_RANGE_ERROR_FRACTION (0, 1, 0, "a fraction in [0, 1]")
#define OPT_RANGE_MEGAPIXELS (0, OPT_NOLIMIT, RANGE_LO_OPEN, "a positive number of megapixels")
/* help lines of keys several commands share */
#define OPT_HELP_TTA                                                                                                   \
    "test-time augmentation: `0` off, `1` horizontal flip, `2` flip and four shifts of 4% (the views' probabilities "  \
    "are averaged)"
#define OPT_RANGE_FILE_MB (0, OPT_NOLIMIT, RANGE_LO_OPEN, "a positive number of MiB")
#define OPT_KEYS_FIELD(name, type, def, choices, range, help) OPT_CTYPE_##type name;
#define OPT_KEYS_STRUCT(KEYS, tname) typedef struct tname { KEYS(OPT_KEYS_FIELD) } tname
#define OPT_SPEC_ROW(tname, name, type, def, choices, range, help)                                                     \
    {#name, OPT_##type, def, choices, help, OPT_RANGE_INIT range, offsetof(tname, name) + 1},

typedef struct command_spec {
    const char *name;
    const char *summary;
    const char *usage;      /* "radbatch convert [job.ini] [--key value ...]" */
    const opt_spec *opts;   /* terminated by {NULL} */
    int (*run)(int argc, char **argv);
} command_spec;

typedef struct job_config {
    const command_spec *cmd;
    int nopts;
    char **value;      /* [nopts] current value text (owned) */
    const char **source; /* [nopts] "default", "job.ini", "command line" (static strings) */
    char *job_file;    /* owned, or NULL */
    int npositional;   /* any number: a shell glob may give thousands of images */
    char **positional; /* [npositional] owned */
    int help;          /* --help was given */
} job_config;

/* The range of a key (NULL: any value of its type). */
const opt_range *job_key_range(const opt_spec *o);

/* All commands, for cross-command validation of top-level job-file keys. NULL-terminated. */
extern const command_spec *const job_commands[];

/* Parse argv (argv[0] = command name) for `cmd`. Returns 0 or -1 with err naming the key. */
int job_config_parse(job_config *c, const command_spec *cmd, int argc, char **argv, rb_error *err);
void job_config_free(job_config *c);
/* Fill a command's typed settings struct from the parsed values (every key with a field). */
void job_config_fill_keys(const job_config *c, void *settings);

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
/* The key table as the Markdown rows of docs/ (`radbatch <command> --help=markdown`). */
void job_config_print_markdown(const command_spec *cmd);
/* Write "key = value" lines of the effective configuration (for run records). */
char *job_config_dump(const job_config *c); /* malloc'd */

#endif
