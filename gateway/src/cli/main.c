/* tbgw: one binary, one subcommand per operator task. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char usage[] =
    "usage: tbgw <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve -c FILE          run the gateway with the configuration FILE\n"
    "  check-config -c FILE   check a configuration file without starting\n"
    "  send [options] CASE... submit canonical case files to a running gateway\n"
    "  dlq list|replay -c FILE  list or replay dead letters (undeliverable messages)\n"
    "  cases list|show -c FILE  our cases and one case's history, from the store\n"
    "  partners -c FILE       per partner: queue, last success and failure\n"
    "  partner ping NAME -c FILE  DNS, TCP, TLS and client certificate check\n"
    "  audit verify FILE...   check an audit trail's hash chain; names the first bad record\n"
    "  version                print the version and the library versions\n"
    "\n"
    "'tbgw <command> --help' describes each command.\n";

struct command {
  const char *name;
  int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    {"serve", tb_cli_serve},
    {"check-config", tb_cli_check_config},
    {"send", tb_cli_send},
    {"dlq", tb_cli_dlq},
    {"audit", tb_cli_audit},
    {"cases", tb_cli_cases},
    {"partners", tb_cli_partners},
    {"partner", tb_cli_partner},
    {"version", tb_cli_version},
};

int tb_cli_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) return 1;
  return 0;
}

const char *tb_cli_config_arg(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
      return argv[i + 1];
    if (strncmp(argv[i], "--config=", 9) == 0) return argv[i] + 9;
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(usage, stderr);
    return 2;
  }
  if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
      strcmp(argv[1], "help") == 0) {
    fputs(usage, stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
    return tb_cli_version(1, argv + 1);
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "tbgw: unknown command '%s'\n\n%s", argv[1], usage);
  return 2;
}
