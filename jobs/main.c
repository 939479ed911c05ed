/* radbatch: one binary, one command per run.
 *   radbatch <command> [job.ini] [--key value ...]
 * Run alone (one rank) or under mpirun/srun (N ranks). */
#include "commands.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f, "radbatch %s (%s): image archives to trained, evaluated classifiers on HPC clusters\n\n"
               "usage: radbatch <command> [job.ini] [inputs...] [--key value ...]\n"
               "       mpirun -n 4 radbatch <command> ...   (or srun)\n\ncommands:\n",
            RADBATCH_VERSION, RADBATCH_GIT);
    for (int i = 0; job_commands[i]; i++)
        fprintf(f, "  %-10s %s\n", job_commands[i]->name, job_commands[i]->summary);
    fprintf(f, "\n'radbatch <command> --help' lists the command's job-file keys.\n"
               "Documentation: docs/ in the source tree.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("radbatch %s (%s)\n", RADBATCH_VERSION, RADBATCH_GIT);
        return 0;
    }
    for (int i = 0; job_commands[i]; i++)
        if (strcmp(argv[1], job_commands[i]->name) == 0)
            return job_commands[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
