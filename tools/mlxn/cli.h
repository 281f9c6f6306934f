/* The subcommands of the mlxn tool. */
#ifndef MLXN_CLI_H
#define MLXN_CLI_H

int cmd_inspect(int argc, char **argv);

#endif
