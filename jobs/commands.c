#include "commands.h"

#include <stddef.h>

const command_spec *const job_commands[] = {
    &command_convert,
    &command_inspect,
    &command_train,
    &command_infer,
    &command_evaluate,
    &command_predict,
    &command_export,
    NULL,
};
