/* The subcommands of the mlxn tool. */
#ifndef MLXN_CLI_H
#define MLXN_CLI_H

#include "mlxn.h"

int cmd_inspect(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench_model(int argc, char **argv);
int cmd_test(int argc, char **argv);
/* "cpu", "cuda", "cuda:N"; NULL = the best device present. Prints the error; returns an exit code. */
int open_device(const char *spec, mlxn_device **dev);
/* The KV cache dtype of a --kv value: f32, f16, bf16 or q8_0. Prints the error (naming cmd);
 * returns an exit code. */
int parse_kv_dtype(const char *cmd, const char *spec, mlxn_dtype *out);

#endif
