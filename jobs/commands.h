/* The command table: one driver per command, each in jobs/job_<name>.c. */
#ifndef COMMANDS_H
#define COMMANDS_H

#include "job_config.h"

extern const command_spec command_convert;
extern const command_spec command_inspect;
extern const command_spec command_train;
extern const command_spec command_infer;
extern const command_spec command_evaluate, command_predict;
extern const command_spec command_export;

#endif
