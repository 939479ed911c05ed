/* job_config: file + section + flags precedence, unknown keys, type errors. */
#include "job_config.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>

static int dummy_run(int argc, char **argv) { return 0; }
static const opt_spec demo_opts[] = {
    {"size", OPT_INT, "160", NULL, "image side"},
    {"rate", OPT_FLOAT, "0.5", NULL, "a number"},
    {"name", OPT_STRING, "", NULL, "a text"},
    {"flag", OPT_BOOL, "false", NULL, "a switch"},
    {"mode", OPT_CHOICE, "stretch", "stretch|pad|center-crop", "resize mode"},
    {NULL},
};
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
    char *argv1[] = {"convert", ini, "in1", "--rate", "0.25", "--flag", "in2", NULL};
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
    }
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
    return TEST_DONE();
}
