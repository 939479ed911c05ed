#include "commands.h"
static const opt_spec convert_opts[] = {{NULL}};
static int run_convert(int argc, char **argv) { (void)argc; (void)argv; return 1; }
const command_spec command_convert = {"convert", "image folders -> HDF5 shards", "radbatch convert", convert_opts, run_convert};
