/* job_config: file + section + flags precedence, unknown keys, type errors. */
#include "commands.h"
#include "job_config.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

static int dummy_run(int argc, char **argv) { return 0; }
#define DEMO_KEYS(X)                                                                                                   \
    X(size, INT, "160", NULL, (1, 8192, 0, "an integer in 1..8192"), "image side")                                    \
    X(rate, FLOAT, "0.5", NULL, NO_RANGE, "a number")                                                                  \
    X(name, STRING, "", NULL, NO_RANGE, "a text")                                                                      \
    X(flag, BOOL, "false", NULL, NO_RANGE, "a switch")                                                                 \
    X(mode, CHOICE, "stretch", "stretch|pad|center-crop", NO_RANGE, "resize mode")
OPT_KEYS_STRUCT(DEMO_KEYS, demo_keys);
#define DEMO_ROW(...) OPT_SPEC_ROW(demo_keys, __VA_ARGS__)
static const opt_spec demo_opts[] = {DEMO_KEYS(DEMO_ROW){NULL, 0, NULL, NULL, NULL, {0, 0, 0, NULL}, 0}};
/* job_commands is defined in jobs/commands.c; this test uses its own table through it */
static const command_spec demo = {"convert", "demo", "demo", demo_opts, dummy_run};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

int main(void)
{
    const char *dir = test_tmpdir("test_config");
    char ini[4200];
    snprintf(ini, sizeof ini, "%s/job.ini", dir);
    write_file(ini, "size = 224\nname = top\n[convert]\nname = section\nmode = pad\n[inspect]\nverify = true\n");

    job_config c;
    rb_error err;
    char *argv1[] = {"convert", ini, "in1", "--rate", "0.25", "in2", "--flag", NULL};
    int rc = job_config_parse(&c, &demo, 7, argv1, &err);
    CHECK(rc == 0, "parse failed: %s", err.msg);
    if (rc == 0) {
        CHECK(job_int(&c, "size") == 224, "size %lld", (long long)job_int(&c, "size"));
        CHECK(strcmp(job_str(&c, "name"), "section") == 0, "section overrides top level: %s", job_str(&c, "name"));
        CHECK(strcmp(job_str(&c, "mode"), "pad") == 0, "mode");
        CHECK(job_float(&c, "rate") == 0.25, "rate");
        CHECK(job_bool(&c, "flag") == 1, "flag");
        CHECK(c.npositional == 2 && strcmp(c.positional[0], "in1") == 0 && strcmp(c.positional[1], "in2") == 0,
              "positionals %d", c.npositional);
        CHECK(job_is_set(&c, "size") && job_is_set(&c, "rate"), "is_set");
        /* the same values, typed */
        demo_keys k;
        memset(&k, 0, sizeof k);
        job_config_fill_keys(&c, &k);
        CHECK(k.size == 224 && k.rate == 0.25 && k.flag == 1 && !strcmp(k.name, "section") && !strcmp(k.mode, "pad"),
              "typed keys: size %lld rate %g flag %d name %s mode %s", (long long)k.size, k.rate, k.flag, k.name,
              k.mode);
    }
    job_config_free(&c);
    /* a shell glob may give thousands of inputs: every one is kept, in order */
    {
        enum { MANY = 5000 };
        char **argv_many = calloc(MANY + 2, sizeof *argv_many);
        char(*names)[16] = calloc(MANY, sizeof *names);
        argv_many[0] = "convert";
        for (int i = 0; i < MANY; i++) {
            snprintf(names[i], sizeof names[i], "img%04d.png", i);
            argv_many[i + 1] = names[i];
        }
        rc = job_config_parse(&c, &demo, MANY + 1, argv_many, &err);
        int in_order = rc == 0 && c.npositional == MANY;
        for (int i = 0; in_order && i < MANY; i++)
            in_order = strcmp(c.positional[i], names[i]) == 0;
        CHECK(in_order, "%d positional arguments: rc %d, kept %d (%s)", MANY, rc, c.npositional, rc ? err.msg : "");
        job_config_free(&c);
        free(argv_many);
        free(names);
    }
    char *argv_range[] = {"convert", "--size", "0", NULL};
    rc = job_config_parse(&c, &demo, 3, argv_range, &err);
    CHECK(rc == -1 && strstr(err.msg, "out of range") && strstr(err.msg, "1..8192"), "own range: %s", err.msg);
    job_config_free(&c);

    /* unknown key on the command line names the key and the accepted keys */
    char *argv2[] = {"convert", "--sise", "3", NULL};
    rc = job_config_parse(&c, &demo, 3, argv2, &err);
    CHECK(rc == -1 && strstr(err.msg, "sise") && strstr(err.msg, "size"), "unknown flag message: %s", err.msg);
    job_config_free(&c);

    /* type errors */
    char *argv3[] = {"convert", "--size", "abc", NULL};
    rc = job_config_parse(&c, &demo, 3, argv3, &err);
    CHECK(rc == -1 && strstr(err.msg, "size") && strstr(err.msg, "abc"), "int type error: %s", err.msg);
    job_config_free(&c);
    char *argv4[] = {"convert", "--mode=squash", NULL};
    rc = job_config_parse(&c, &demo, 2, argv4, &err);
    CHECK(rc == -1 && strstr(err.msg, "squash") && strstr(err.msg, "center-crop"), "choice error: %s", err.msg);
    job_config_free(&c);

    /* unknown key inside the command's own section */
    write_file(ini, "[convert]\nbogus = 1\n");
    char *argv5[] = {"convert", ini, NULL};
    rc = job_config_parse(&c, &demo, 2, argv5, &err);
    CHECK(rc == -1 && strstr(err.msg, "bogus") && strstr(err.msg, "[convert]"), "section unknown key: %s", err.msg);
    job_config_free(&c);

    /* unknown section */
    write_file(ini, "[convrt]\nsize = 1\n");
    rc = job_config_parse(&c, &demo, 2, argv5, &err);
    CHECK(rc == -1 && strstr(err.msg, "convrt"), "unknown section: %s", err.msg);
    job_config_free(&c);

    /* missing job file */
    char *argv6[] = {"convert", "/nonexistent/job.ini", NULL};
    rc = job_config_parse(&c, &demo, 2, argv6, &err);
    CHECK(rc == -1 && strstr(err.msg, "/nonexistent/job.ini"), "missing file: %s", err.msg);
    job_config_free(&c);

    /* booleans: true/false/yes/no/1/0 in any case; a word after --flag is its value, never an
     * input path; anything else is a bad value */
    const char *truthy[] = {"true", "YES", "1", "True"}, *falsy[] = {"false", "No", "0", "FALSE"};
    for (int i = 0; i < 4; i++) {
        char *a1[] = {"convert", "--flag", (char *)truthy[i], NULL}, *a0[] = {"convert", "--flag", (char *)falsy[i], NULL};
        rc = job_config_parse(&c, &demo, 3, a1, &err);
        CHECK(rc == 0 && job_bool(&c, "flag") == 1 && c.npositional == 0, "--flag %s", truthy[i]);
        job_config_free(&c);
        rc = job_config_parse(&c, &demo, 3, a0, &err);
        CHECK(rc == 0 && job_bool(&c, "flag") == 0 && c.npositional == 0, "--flag %s", falsy[i]);
        job_config_free(&c);
    }
    const char *bad_bools[] = {"maybe", "on", "off", "2", "some/input/folder"};
    for (int i = 0; i < 5; i++) {
        char *a[] = {"convert", "--flag", (char *)bad_bools[i], NULL};
        rc = job_config_parse(&c, &demo, 3, a, &err);
        CHECK(rc == -1 && strstr(err.msg, "flag") && strstr(err.msg, bad_bools[i]), "--flag %s: %s", bad_bools[i],
              rc ? err.msg : "accepted");
        job_config_free(&c);
        char kv[64];
        snprintf(kv, sizeof kv, "--flag=%s", bad_bools[i]);
        char *b[] = {"convert", kv, NULL};
        rc = job_config_parse(&c, &demo, 2, b, &err);
        CHECK(rc == -1, "%s accepted", kv);
        job_config_free(&c);
    }
    char *argv7[] = {"convert", "in1", "--flag", "--rate", "0.1", NULL};
    rc = job_config_parse(&c, &demo, 5, argv7, &err);
    CHECK(rc == 0 && job_bool(&c, "flag") == 1 && c.npositional == 1, "bare --flag before another option");
    job_config_free(&c);
    write_file(ini, "[convert]\nflag = perhaps\n");
    rc = job_config_parse(&c, &demo, 2, argv5, &err);
    CHECK(rc == -1 && strstr(err.msg, "perhaps") && strstr(err.msg, ini), "job file bad boolean: %s", err.msg);
    job_config_free(&c);

    /* ranges of the real commands: every row names a key of a command with a number type,
     * every default is accepted, a value out of range names key, value and what is accepted */
    for (int k = 0; job_commands[k]; k++)
        for (const opt_spec *o = job_commands[k]->opts; o->key; o++) {
            CHECK(o->field > 0, "%s: key %s has no typed field (declare it in the command's X-macro)",
                  job_commands[k]->name, o->key);
            CHECK(!job_key_range(o) || o->type == OPT_INT || o->type == OPT_FLOAT, "%s: range of non-numeric key %s",
                  job_commands[k]->name, o->key);
        }
    for (int k = 0; job_commands[k]; k++)
        for (const opt_spec *o = job_commands[k]->opts; o->key; o++) {
            if (!o->def || !*o->def)
                continue;
            char kv[300];
            snprintf(kv, sizeof kv, "--%s=%s", o->key, o->def);
            char *a[] = {(char *)job_commands[k]->name, kv, NULL};
            rc = job_config_parse(&c, job_commands[k], 2, a, &err);
            CHECK(rc == 0, "%s: the default %s is rejected: %s", job_commands[k]->name, kv, err.msg);
            job_config_free(&c);
        }
    struct {
        const char *cmd, *key, *value;
    } bad[] = {{"train", "batch_size", "-3"},   {"train", "batch_size", "0"},  {"convert", "height", "0"},
               {"convert", "channels", "2"},    {"infer", "chunk", "0"},       {"convert", "val_fraction", "1"},
               {"train", "learning_rate", "0"}, {"train", "crop", "0.01"},     {"evaluate", "digits", "13"},
               {"infer", "max_error_fraction", "-0.1"}, {"train", "momentum", "nan"}, {"predict", "tta", "3"},
               {"train", "head_dropout", "-0.5"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const command_spec *cmd = NULL;
        for (int k = 0; job_commands[k]; k++)
            if (!strcmp(job_commands[k]->name, bad[i].cmd))
                cmd = job_commands[k];
        char kv[300];
        snprintf(kv, sizeof kv, "--%s", bad[i].key);
        char *a[] = {(char *)bad[i].cmd, kv, (char *)bad[i].value, NULL};
        rc = cmd ? job_config_parse(&c, cmd, 3, a, &err) : 0;
        CHECK(rc == -1 && strstr(err.msg, bad[i].key) && strstr(err.msg, bad[i].value) && strstr(err.msg, "accepted"),
              "%s %s %s: %s", bad[i].cmd, kv, bad[i].value, rc ? err.msg : "accepted");
        job_config_free(&c);
    }
    char *argv8[] = {"train", "--head_dropout", "-1", "--crop", "0", "--batch_size", "1", NULL};
    rc = job_config_parse(&c, &command_train, 7, argv8, &err);
    CHECK(rc == 0, "special values of ranges: %s", err.msg);
    job_config_free(&c);
    return TEST_DONE();
}
