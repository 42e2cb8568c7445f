/*
 * tbgw dlq list|replay: dead letters, straight from the store file.
 *
 * Opening the file while a daemon runs is safe (SQLite WAL: readers do not
 * block the writer; busy_timeout covers the short write of a replay). A
 * replay puts the messages back in the queue, due now, with their message
 * ids; the running daemon's safety poll (about once a second) picks them up.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "store/store.h"
#include "tbgw/error.h"

static const char usage[] =
    "usage: tbgw dlq list   -c FILE [--partner P] [--limit N] [--json]\n"
    "       tbgw dlq replay -c FILE (CASE_ID | --partner P | --all)\n"
    "\n"
    "Dead letters are messages the gateway gave up on: a partner refused them\n"
    "permanently, or every retry failed. They keep their last error.\n"
    "\n"
    "  list     prints them, oldest first: case, partner, type, message id,\n"
    "           attempts, last code and error, when it failed (--json: one JSON\n"
    "           document {\"dead_letters\": [...]}). --limit defaults to 1000.\n"
    "  replay   queues the dead letters of CASE_ID (all of its messages), of one\n"
    "           partner, or all of them (--all) again: same message ids (the\n"
    "           partner de-duplicates), attempts counted from 0, due now. A running\n"
    "           gateway sends them within about a second.\n"
    "\n"
    "The store named by the configuration FILE is opened directly; this is safe\n"
    "while the gateway runs. Exit status: 0 done, 1 failure, 2 usage error.\n";

struct run {
  int done, rc;
  char err[TB_ERRMSG_MAX];
  int json;
  size_t count;
};

static void on_list(int rc, const struct tb_store_dead_letter *dl, size_t n, const char *errmsg,
                    void *ud) {
  struct run *r = ud;
  r->done = 1;
  r->rc = rc;
  if (rc != 0) {
    snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : tb_strerror(rc));
    return;
  }
  r->count = n;
  char at[TB_TIME_RFC3339_MAX];
  if (r->json) {
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++) {
      const char *type = tb_store_msg_type_name(dl[i].msg_type);
      json_array_append_new(
          arr, json_pack("{s:s, s:b, s:s, s:s, s:s, s:I, s:s?, s:s?, s:s}", "case_id",
                         dl[i].case_id, "inbound", dl[i].inbound, "partner", dl[i].partner,
                         "msg_type", type ? type : "UNKNOWN", "message_id", dl[i].message_id,
                         "attempts", (json_int_t)dl[i].attempts, "last_code", dl[i].last_code,
                         "last_error", dl[i].last_error, "failed_at",
                         tb_time_format_bj(dl[i].failed_ms, at)));
    }
    json_t *doc = json_pack("{s:o}", "dead_letters", arr ? arr : json_array());
    char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
    if (text) puts(text);
    free(text);
    json_decref(doc);
    return;
  }
  if (n == 0) {
    puts("no dead letters");
    return;
  }
  for (size_t i = 0; i < n; i++) {
    const char *type = tb_store_msg_type_name(dl[i].msg_type);
    printf("%s  %s%s  %s  %s  %s  attempts=%u  failed_at=%s\n    %s%s%s\n", dl[i].case_id,
           dl[i].partner, dl[i].inbound ? " (their case)" : "", type ? type : "UNKNOWN",
           dl[i].message_id, dl[i].last_code ? dl[i].last_code : "-", dl[i].attempts,
           tb_time_format_bj(dl[i].failed_ms, at), dl[i].last_code ? dl[i].last_code : "",
           dl[i].last_code ? ": " : "", dl[i].last_error ? dl[i].last_error : "(no error kept)");
  }
  printf("%zu dead letter(s)\n", n);
}

static void on_replay(int rc, size_t count, const char *errmsg, void *ud) {
  struct run *r = ud;
  r->done = 1;
  r->rc = rc;
  r->count = count;
  if (rc != 0) snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : tb_strerror(rc));
}

static void on_closed(void *ud) { (void)ud; }

int tb_cli_dlq(int argc, char **argv) {
  if (argc < 2 || tb_cli_wants_help(argc, argv)) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *sub = argv[1];
  int list = strcmp(sub, "list") == 0, replay = strcmp(sub, "replay") == 0;
  if (!list && !replay) {
    fprintf(stderr, "tbgw dlq: unknown subcommand '%s'\n\n%s", sub, usage);
    return 2;
  }
  const char *path = tb_cli_config_arg(argc, argv);
  const char *partner = NULL, *case_id = NULL;
  int json = 0, all = 0;
  long limit = 1000;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
      i++;
    } else if (strncmp(a, "--config=", 9) == 0) {
    } else if (strcmp(a, "--partner") == 0 && i + 1 < argc) {
      partner = argv[++i];
    } else if (strcmp(a, "--limit") == 0 && list && i + 1 < argc) {
      char *end = NULL;
      limit = strtol(argv[++i], &end, 10);
      if (*end != '\0' || limit < 1 || limit > 100000) {
        fputs("tbgw dlq: --limit must be 1..100000\n", stderr);
        return 2;
      }
    } else if (strcmp(a, "--json") == 0 && list) {
      json = 1;
    } else if (strcmp(a, "--all") == 0 && replay) {
      all = 1;
    } else if (a[0] != '-' && replay && case_id == NULL) {
      case_id = a;
    } else {
      fprintf(stderr, "tbgw dlq %s: unexpected argument '%s' (see --help)\n", sub, a);
      return 2;
    }
  }
  if (path == NULL) {
    fprintf(stderr, "tbgw dlq %s: missing -c FILE (see --help)\n", sub);
    return 2;
  }
  if (replay && case_id == NULL && partner == NULL && !all) {
    fputs("tbgw dlq replay: name a CASE_ID, --partner P or --all (see --help)\n", stderr);
    return 2;
  }
  if (replay && all && (case_id || partner)) {
    fputs("tbgw dlq replay: --all replays everything; drop CASE_ID/--partner\n", stderr);
    return 2;
  }
  struct tb_config cfg;
  char *problems = NULL;
  int rc = tb_config_load(path, &cfg, &problems);
  if (rc != 0) {
    fprintf(stderr, "tbgw: %s: configuration is not valid:\n%s%s", path,
            problems ? problems : tb_strerror(rc), problems ? "" : "\n");
    free(problems);
    return 1;
  }
  if (partner && tb_config_partner_find(&cfg, partner) == NULL)
    fprintf(stderr, "tbgw dlq: note: no partner \"%s\" in %s (looking anyway)\n", partner, path);
  tb_log_setup(2, TB_LOG_WARN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct tb_store *st = NULL;
  char err[TB_ERRMSG_MAX] = "";
  struct run r = {.json = json};
  rc = tb_store_open(&loop, &cfg.store, &st, err);
  if (rc != 0) {
    fprintf(stderr, "tbgw dlq: %s\n", err);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    tb_config_free(&cfg);
    return 1;
  }
  if (list) rc = tb_store_dlq_list(st, partner, (size_t)limit, on_list, &r);
  else rc = tb_store_dlq_replay(st, case_id, partner, tb_time_now_ms(), on_replay, &r);
  if (rc == 0) {
    while (!r.done) uv_run(&loop, UV_RUN_ONCE);
  } else {
    r.rc = rc;
    snprintf(r.err, sizeof r.err, "%s", tb_strerror(rc));
  }
  tb_store_close(st, on_closed, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  tb_config_free(&cfg);
  if (r.rc != 0) {
    fprintf(stderr, "tbgw dlq %s: %s\n", sub, r.err);
    return 1;
  }
  if (replay) {
    printf("replayed %zu message(s)%s\n", r.count,
           r.count ? "; a running gateway sends them within about a second" : "");
  }
  return 0;
}
