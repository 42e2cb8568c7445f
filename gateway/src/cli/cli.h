/*
 * cli/cli.h — the tbgw subcommands. Each returns the process exit status:
 * 0 success, 1 the command failed (message on stderr), 2 usage error.
 */
#ifndef TB_CLI_CLI_H
#define TB_CLI_CLI_H

int tb_cli_serve(int argc, char **argv);
int tb_cli_check_config(int argc, char **argv);
int tb_cli_send(int argc, char **argv);
int tb_cli_dlq(int argc, char **argv);
int tb_cli_audit(int argc, char **argv);
int tb_cli_version(int argc, char **argv);

/* True if argv holds -h or --help. */
int tb_cli_wants_help(int argc, char **argv);

/* Finds "-c FILE" / "--config FILE" / "--config=FILE"; NULL if absent. */
const char *tb_cli_config_arg(int argc, char **argv);

#endif
