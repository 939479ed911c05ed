#include "job_config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int spec_count(const opt_spec *o)
{
    int n = 0;
    while (o[n].key)
        n++;
    return n;
}

static int spec_find(const command_spec *cmd, const char *key)
{
    for (int i = 0; cmd->opts[i].key; i++)
        if (strcmp(cmd->opts[i].key, key) == 0)
            return i;
    return -1;
}

static const char *type_name(opt_type t)
{
    switch (t) {
    case OPT_STRING: return "text";
    case OPT_INT: return "integer";
    case OPT_FLOAT: return "number";
    case OPT_BOOL: return "true|false";
    case OPT_CHOICE: return "choice";
    }
    return "?";
}

static int accepted_keys(const command_spec *cmd, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; cmd->opts[i].key && used + 2 < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", cmd->opts[i].key);
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    static const char *yes[] = {"1", "true", "yes"}, *no[] = {"0", "false", "no"};
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

const opt_range *job_key_range(const opt_spec *o) { return o->range.what ? &o->range : NULL; }

static int range_ok(const opt_range *r, double v)
{
    if ((r->flags & RANGE_OR_ZERO) && v == 0)
        return 1;
    if ((r->flags & RANGE_OR_MINUS_ONE) && v == -1)
        return 1;
    if ((r->flags & RANGE_ONE_OR_THREE) && v != 1 && v != 3)
        return 0;
    if (v < r->lo || v > r->hi)
        return 0;
    if ((r->flags & RANGE_LO_OPEN) && v == r->lo)
        return 0;
    if ((r->flags & RANGE_HI_OPEN) && v == r->hi)
        return 0;
    return 1;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t lv = strlen(v);
    const char *p = choices;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == lv && strncmp(p, v, l) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

/* Check the text of a value against its type and its range. */
static int validate(const command_spec *cmd, int i, const char *v, const char *from, rb_error *err)
{
    const opt_spec *o = &cmd->opts[i];
    const opt_range *r = job_key_range(o);
    char *end;
    double num = 0;
    switch (o->type) {
    case OPT_STRING:
        return 0;
    case OPT_INT:
        errno = 0;
        num = (double)strtoll(v, &end, 10);
        if (!*v || *end || errno)
            return rb_fail(err, o->help, "%s: key '%s' = '%s' is not an integer; accepted: %s", from, o->key, v,
                           r ? r->what : "an integer");
        break;
    case OPT_FLOAT:
        errno = 0;
        num = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(num))
            return rb_fail(err, o->help, "%s: key '%s' = '%s' is not a finite number; accepted: %s", from, o->key,
                           v, r ? r->what : "a number");
        break;
    case OPT_BOOL: {
        int b;
        if (parse_bool(v, &b) < 0)
            return rb_fail(err, "write --key=true to set a switch right before an input path",
                           "%s: key '%s' = '%s' is not a boolean; accepted: true|false, yes|no, 1|0 (any case)",
                           from, o->key, v);
        return 0;
    }
    case OPT_CHOICE:
        if (!choice_ok(o->choices, v))
            return rb_fail(err, NULL, "%s: key '%s' = '%s' is not a choice of the key; accepted: %s", from, o->key, v,
                           o->choices);
        return 0;
    }
    if (r && !range_ok(r, num))
        return rb_fail(err, o->help, "%s: key '%s' = '%s' is out of range; accepted: %s", from, o->key, v, r->what);
    return 0;
}

static int set_value(job_config *c, int i, const char *v, const char *from, rb_error *err)
{
    if (validate(c->cmd, i, v, from, err) < 0)
        return -1;
    free(c->value[i]);
    c->value[i] = strdup(v);
    c->source[i] = from;
    return 0;
}

struct ini_ctx {
    job_config *c;
    rb_error *err;
    int failed;
    const char *path;
};

static int known_to_any_command(const char *key)
{
    for (int k = 0; job_commands[k]; k++)
        if (spec_find(job_commands[k], key) >= 0)
            return 1;
    return 0;
}

static int is_command_name(const char *s)
{
    for (int k = 0; job_commands[k]; k++)
        if (strcmp(job_commands[k]->name, s) == 0)
            return 1;
    return 0;
}

static int job_ini_line(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *x = user;
    if (x->failed)
        return 0;
    job_config *c = x->c;
    char from[600];
    snprintf(from, sizeof from, "%s", x->path);
    int own = strcmp(section, c->cmd->name) == 0;
    int global = section[0] == 0;
    if (!own && !global) {
        /* Another command's section: validated when that command runs. Unknown section
         * names are a typo worth reporting now. */
        if (!is_command_name(section)) {
            rb_fail(x->err, "sections are named after commands: [convert], [train], [evaluate], [infer], ...",
                    "%s: unknown section [%s]", x->path, section);
            x->failed = 1;
            return 0;
        }
        return 1;
    }
    int i = spec_find(c->cmd, name);
    if (i < 0) {
        if (global && known_to_any_command(name))
            return 1; /* a top-level key meant for another command */
        char keys[4096];
        accepted_keys(c->cmd, keys, sizeof keys);
        rb_fail(x->err, "fix the spelling, or move the key to the section of the command that uses it",
                "%s: unknown key '%s'%s%s%s. %s accepts: %s", x->path, name,
                own ? " in section [" : "", own ? section : "", own ? "]" : "", c->cmd->name, keys);
        x->failed = 1;
        return 0;
    }
    /* section keys override top-level ones regardless of order in the file */
    if (global && c->source[i] && strcmp(c->source[i], "job file section") == 0)
        return 1;
    if (set_value(c, i, value, own ? "job file section" : "job file", x->err) < 0) {
        rb_error_prefix(x->err, "%s: ", x->path);
        x->failed = 1;
        return 0;
    }
    return 1;
}

int job_config_parse(job_config *c, const command_spec *cmd, int argc, char **argv, rb_error *err)
{
    memset(c, 0, sizeof *c);
    c->cmd = cmd;
    c->nopts = spec_count(cmd->opts);
    c->value = calloc((size_t)c->nopts + 1, sizeof *c->value);
    c->source = calloc((size_t)c->nopts + 1, sizeof *c->source);
    if (!c->value || !c->source)
        return rb_fail(err, NULL, "out of memory parsing options");
    for (int i = 0; i < c->nopts; i++) {
        c->value[i] = strdup(cmd->opts[i].def ? cmd->opts[i].def : "");
        c->source[i] = "default";
    }

    /* first pass: find the job file (first positional ending in .ini) and --help */
    for (int a = 1; a < argc; a++) {
        const char *s = argv[a];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 || strcmp(s, "--help=markdown") == 0) {
            c->help = strcmp(s, "--help=markdown") == 0 ? 2 : 1;
            return 0;
        }
        if (strncmp(s, "--", 2) == 0) {
            /* skip the value of --key value */
            int i = strchr(s, '=') ? -1 : spec_find(cmd, s + 2);
            if (i >= 0 && cmd->opts[i].type != OPT_BOOL && a + 1 < argc)
                a++;
            else if (i >= 0 && cmd->opts[i].type == OPT_BOOL && a + 1 < argc && argv[a + 1][0] != '-')
                a++;
            continue;
        }
        size_t l = strlen(s);
        if (!c->job_file && l > 4 && strcmp(s + l - 4, ".ini") == 0)
            c->job_file = strdup(s);
    }

    if (c->job_file) {
        struct ini_ctx x = {c, err, 0, c->job_file};
        int rc = ini_parse(c->job_file, job_ini_line, &x);
        if (x.failed)
            return -1;
        if (rc == -1)
            return rb_fail(err, "check the path of the job file", "%s: cannot open job file: %s",
                           c->job_file, strerror(errno));
        if (rc != 0)
            return rb_fail(err, "job files are INI: 'key = value' lines, optional [command] sections, '#' or ';' comments",
                           "%s:%d: cannot parse this line", c->job_file, rc);
    }

    /* second pass: flags and positionals */
    for (int a = 1; a < argc; a++) {
        const char *s = argv[a];
        if (strncmp(s, "--", 2) == 0) {
            char key[256];
            const char *eq = strchr(s + 2, '=');
            size_t kl = eq ? (size_t)(eq - (s + 2)) : strlen(s + 2);
            if (kl >= sizeof key)
                kl = sizeof key - 1;
            memcpy(key, s + 2, kl);
            key[kl] = 0;
            for (char *p = key; *p; p++)
                if (*p == '-')
                    *p = '_'; /* --val-fraction == --val_fraction */
            int i = spec_find(cmd, key);
            if (i < 0) {
                char keys[4096];
                accepted_keys(cmd, keys, sizeof keys);
                return rb_fail(err, "run 'radbatch <command> --help' for the key table",
                               "command line: unknown option '--%s'. %s accepts: %s", key, cmd->name, keys);
            }
            const char *v;
            if (eq)
                v = eq + 1;
            else if (cmd->opts[i].type == OPT_BOOL) {
                /* a bare --flag is true; a word after it is its value and must be a
                 * boolean (never taken as an input path) */
                if (a + 1 < argc && argv[a + 1][0] != '-')
                    v = argv[++a];
                else
                    v = "true";
            } else {
                if (a + 1 >= argc)
                    return rb_fail(err, cmd->opts[i].help, "command line: option '--%s' needs a value", key);
                v = argv[++a];
            }
            if (set_value(c, i, v, "command line", err) < 0)
                return -1;
            continue;
        }
        if (c->job_file && strcmp(s, c->job_file) == 0)
            continue;
        char **grown = realloc(c->positional, ((size_t)c->npositional + 1) * sizeof *grown);
        char *copy = strdup(s);
        if (grown)
            c->positional = grown;
        if (!grown || !copy) {
            free(copy);
            return rb_fail(err, NULL, "command line: out of memory");
        }
        c->positional[c->npositional++] = copy;
    }
    return 0;
}

void job_config_free(job_config *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nopts; i++)
        free(c->value ? c->value[i] : NULL);
    free(c->value);
    free(c->source);
    free(c->job_file);
    for (int i = 0; i < c->npositional; i++)
        free(c->positional[i]);
    free(c->positional);
    memset(c, 0, sizeof *c);
}

static int must_find(const job_config *c, const char *key)
{
    int i = spec_find(c->cmd, key);
    if (i < 0) {
        /* a programming error: the driver asks for a key it did not declare */
        fprintf(stderr, "internal error: command '%s' has no key '%s'\n", c->cmd->name, key);
        abort();
    }
    return i;
}

const char *job_str(const job_config *c, const char *key) { return c->value[must_find(c, key)]; }
int64_t job_int(const job_config *c, const char *key) { return strtoll(job_str(c, key), NULL, 10); }
double job_float(const job_config *c, const char *key) { return strtod(job_str(c, key), NULL); }
int job_bool(const job_config *c, const char *key)
{
    int b = 0;
    const char *v = job_str(c, key);
    if (*v)
        parse_bool(v, &b);
    return b;
}
int job_is_set(const job_config *c, const char *key)
{
    return strcmp(c->source[must_find(c, key)], "default") != 0;
}

int job_precedence(const job_config *c, const char *key)
{
    const char *s = c->source[must_find(c, key)];
    return !strcmp(s, "command line") ? 3 : !strcmp(s, "job file section") ? 2 : !strcmp(s, "job file") ? 1 : 0;
}

const char *job_str_either(const job_config *c, const char *a, const char *b)
{
    const char *va = job_str(c, a), *vb = job_str(c, b);
    return *vb && (!*va || job_precedence(c, b) > job_precedence(c, a)) ? vb : va;
}

void job_config_print_help(const command_spec *cmd)
{
    printf("%s\n\n%s\n\n", cmd->usage, cmd->summary);
    printf("Keys (job file 'key = value', top level or in [%s]; or --key value):\n", cmd->name);
    for (int i = 0; cmd->opts[i].key; i++) {
        const opt_spec *o = &cmd->opts[i];
        const char *t = o->type == OPT_CHOICE ? o->choices : type_name(o->type);
        printf("  %-22s %-28s default: %s\n      %s\n", o->key, t, (o->def && *o->def) ? o->def : "(empty)",
               o->help);
        const opt_range *r = job_key_range(o);
        if (r)
            printf("      accepted: %s\n", r->what);
    }
}

/* What a key accepts, as one phrase: its range, its choices, or its type. */
static void accepted_text(const command_spec *cmd, const opt_spec *o, char *buf, size_t n)
{
    const opt_range *r = job_key_range(o);
    if (r)
        snprintf(buf, n, "%s", r->what);
    else if (o->type == OPT_CHOICE) {
        size_t used = 0;
        buf[0] = 0;
        for (const char *p = o->choices; *p && used + 3 < n; p++)
            used += (size_t)snprintf(buf + used, n - used, *p == '|' ? ", " : "%c", *p);
    } else
        snprintf(buf, n, "%s", o->type == OPT_BOOL ? "true or false" : o->type == OPT_INT ? "an integer"
                               : o->type == OPT_FLOAT                   ? "a number"
                                                                        : "text");
}

void job_config_print_markdown(const command_spec *cmd)
{
    printf("| key | default | accepted | meaning |\n| --- | --- | --- | --- |\n");
    for (const opt_spec *o = cmd->opts; o->key; o++) {
        char acc[512];
        accepted_text(cmd, o, acc, sizeof acc);
        printf("| `%s` | %s | %s | %s |\n", o->key, (o->def && *o->def) ? o->def : "", acc, o->help);
    }
}

void job_config_fill_keys(const job_config *c, void *settings)
{
    if (!settings)
        return;
    for (int i = 0; i < c->nopts; i++) {
        const opt_spec *o = &c->cmd->opts[i];
        if (!o->field)
            continue;
        char *f = (char *)settings + o->field - 1;
        const char *v = c->value[i];
        switch (o->type) {
        case OPT_STRING:
        case OPT_CHOICE: memcpy(f, &v, sizeof v); break;
        case OPT_INT: {
            int64_t n = strtoll(v, NULL, 10);
            memcpy(f, &n, sizeof n);
            break;
        }
        case OPT_FLOAT: {
            double d = strtod(v, NULL);
            memcpy(f, &d, sizeof d);
            break;
        }
        case OPT_BOOL: {
            int b = 0;
            if (*v)
                parse_bool(v, &b);
            memcpy(f, &b, sizeof b);
            break;
        }
        }
    }
}

char *job_config_dump(const job_config *c)
{
    size_t cap = 256, len = 0;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[0] = 0;
    for (int i = 0; i < c->nopts; i++) {
        size_t need = strlen(c->cmd->opts[i].key) + strlen(c->value[i]) + 8;
        if (len + need >= cap) {
            while (len + need >= cap)
                cap *= 2;
            char *t = realloc(s, cap);
            if (!t) {
                free(s);
                return NULL;
            }
            s = t;
        }
        len += (size_t)sprintf(s + len, "%s = %s\n", c->cmd->opts[i].key, c->value[i]);
    }
    return s;
}
