#include "commands.h"
static const opt_spec inspect_opts[] = {{NULL}};
static int run_inspect(int argc, char **argv) { (void)argc; (void)argv; return 1; }
const command_spec command_inspect = {"inspect", "describe shards or model files", "radbatch inspect", inspect_opts, run_inspect};
