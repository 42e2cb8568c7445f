/*
 * cli/cli.h — the tbgw subcommands. Each returns the process exit status:
 * 0 success, 1 the command failed (message on stderr), 2 usage error.
 */
#ifndef TB_CLI_CLI_H
#define TB_CLI_CLI_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

int tb_cli_serve(int argc, char **argv);
int tb_cli_check_config(int argc, char **argv);
int tb_cli_send(int argc, char **argv);
int tb_cli_dlq(int argc, char **argv);
int tb_cli_audit(int argc, char **argv);
int tb_cli_cases(int argc, char **argv);    /* cases.c */
int tb_cli_partners(int argc, char **argv); /* partners.c */
int tb_cli_partner(int argc, char **argv);  /* partners.c: partner ping */
int tb_cli_version(int argc, char **argv);

/* True if argv holds -h or --help. */
int tb_cli_wants_help(int argc, char **argv);

/* Finds "-c FILE" / "--config FILE" / "--config=FILE"; NULL if absent. */
const char *tb_cli_config_arg(int argc, char **argv);

/* Operator read-out helpers, defined in cases.c, shared with partners.c. */
struct tb_config;
struct tb_store;
#define TB_CLI_TIME_MAX 32
/* "2024-05-06 10:00:00" in Beijing time ("-" for ms <= 0); out holds
 * TB_CLI_TIME_MAX bytes. */
char *tb_cli_time_short(int64_t ms, char *out);
/* Prints rows (array of objects) as an aligned table with a header line:
 * column c is the string member keys[c] (non-strings and "" print "-"). */
void tb_cli_print_table(json_t *rows, const char *const *keys, const char *const *heads,
                        size_t ncols);
/* Prints doc indented; 0, or 1 when out of memory. */
int tb_cli_print_json(json_t *doc);
/* "15m", "2h", "1d", "30s" ago, or an RFC 3339 time -> Unix ms; -1 if neither. */
int tb_cli_parse_since(const char *s, int64_t now_ms, int64_t *out_ms);
/* Loads the configuration at path, inits *loop and opens its store (safe
 * next to a running daemon: see dlq.c). 1 with a message naming cmd on
 * stderr (nothing left to free), 0 when the caller must call
 * tb_cli_store_close. */
int tb_cli_store_open(const char *cmd, const char *path, struct tb_config *cfg, uv_loop_t *loop,
                      struct tb_store **st);
void tb_cli_store_close(uv_loop_t *loop, struct tb_store *st, struct tb_config *cfg);

#endif
