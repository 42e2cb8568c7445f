/*
 * tbgw cases list|show: our cases, straight from the store file.
 *
 * Like `tbgw dlq`, the store named by the configuration is opened directly;
 * with SQLite in WAL mode that is safe while a gateway runs (readers do not
 * block the writer; each read is one short, index-served transaction, and
 * busy_timeout covers the moment the daemon commits). Every answer is first
 * built as one JSON document; --json prints it, otherwise it is rendered as
 * aligned tables with times in Beijing time. Personal data never leaves this
 * command: `list` shows case metadata only, `show` adds the timeline, the
 * outbound messages and an evidence summary (raw evidence with --raw). The
 * case body is not read at all: the store API has no body read-out (the
 * daemon's GET /v1/cases/{id} is the place for it).
 *
 * This file also holds the small helpers partners.c shares (cli.h).
 */
#include <ctype.h>
#include <jansson.h>
#include <openssl/evp.h>
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
    "usage: tbgw cases list -c FILE [--status S] [--partner P] [--since T] [--limit N] [--json]\n"
    "       tbgw cases show -c FILE CASE_ID [--raw] [--json]\n"
    "\n"
    "  list   our cases, most recently changed first: case id, status, partner,\n"
    "         regions, receipt number, created and updated time (Beijing time).\n"
    "         --status keeps one status (queued, delivering, delivered, failed,\n"
    "         accepted, ...), --partner one partner, --since the cases changed at\n"
    "         or after T: RFC 3339 (2024-05-06T10:00:00+08:00) or an age such as\n"
    "         30s, 15m, 2h, 1d. --limit defaults to 1000. No personal data.\n"
    "  show   one case: status, partner, regions, receipt, times, last error, the\n"
    "         timeline (seq, time, status, detail), its outbound messages (type,\n"
    "         message id, attempts, state) and a summary of its evidence (direction,\n"
    "         type, time, verified, code). --raw also prints each piece of evidence\n"
    "         exactly as received (JSON: base64). The case body is never printed.\n"
    "\n"
    "--json prints one JSON document instead of tables. The store named by the\n"
    "configuration FILE is opened directly; this is safe while the gateway runs.\n"
    "Exit status: 0 done, 1 failure (e.g. no such case), 2 usage error.\n";

/* ---- helpers shared with partners.c --------------------------------------- */

char *tb_cli_time_short(int64_t ms, char *out) {
  if (ms <= 0) {
    snprintf(out, TB_CLI_TIME_MAX, "-");
    return out;
  }
  char full[TB_TIME_RFC3339_MAX];
  tb_time_format_bj(ms, full);
  /* "2024-05-06T10:00:00.123+08:00" -> "2024-05-06 10:00:00" */
  snprintf(out, TB_CLI_TIME_MAX, "%.10s %.8s", full, full + 11);
  return out;
}

void tb_cli_print_table(json_t *rows, const char *const *keys, const char *const *heads,
                        size_t ncols) {
  size_t w[16] = {0};
  if (ncols > 16) ncols = 16;
  for (size_t c = 0; c < ncols; c++) w[c] = strlen(heads[c]);
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    for (size_t c = 0; c < ncols; c++) {
      const char *v = json_string_value(json_object_get(row, keys[c]));
      size_t n = v ? strlen(v) : 1;
      if (n > w[c]) w[c] = n;
    }
  }
  for (size_t c = 0; c < ncols; c++)
    printf("%-*s%s", c + 1 < ncols ? (int)w[c] : 0, heads[c], c + 1 < ncols ? "  " : "\n");
  json_array_foreach(rows, i, row) {
    for (size_t c = 0; c < ncols; c++) {
      const char *v = json_string_value(json_object_get(row, keys[c]));
      printf("%-*s%s", c + 1 < ncols ? (int)w[c] : 0, v && *v ? v : "-",
             c + 1 < ncols ? "  " : "\n");
    }
  }
}

int tb_cli_print_json(json_t *doc) {
  char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
  if (text == NULL) {
    fputs("tbgw: out of memory\n", stderr);
    return 1;
  }
  puts(text);
  free(text);
  return 0;
}

int tb_cli_store_open(const char *cmd, const char *path, struct tb_config *cfg,
                      uv_loop_t *loop, struct tb_store **st) {
  char *problems = NULL;
  int rc = tb_config_load(path, cfg, &problems);
  if (rc != 0) {
    fprintf(stderr, "tbgw: %s: configuration is not valid (run tbgw check-config -c %s):\n%s%s",
            path, path, problems ? problems : tb_strerror(rc), problems ? "" : "\n");
    free(problems);
    return 1;
  }
  tb_log_setup(2, TB_LOG_WARN);
  uv_loop_init(loop);
  char err[TB_ERRMSG_MAX] = "";
  *st = NULL;
  if (tb_store_open(loop, &cfg->store, st, err) != 0) {
    fprintf(stderr, "%s: %s\n(check store.path in %s and that this user may read it)\n", cmd,
            err, path);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    tb_config_free(cfg);
    return 1;
  }
  return 0;
}

static void on_closed(void *ud) { (void)ud; }

void tb_cli_store_close(uv_loop_t *loop, struct tb_store *st, struct tb_config *cfg) {
  if (st) tb_store_close(st, on_closed, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  tb_config_free(cfg);
}

/* ---- --since ------------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil); timegm() is not POSIX. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static int parse_rfc3339(const char *s, int64_t *out_ms) {
  int Y, M, D, h, m, sec, n = 0;
  if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &Y, &M, &D, &h, &m, &sec, &n) != 6 || n != 19)
    return -1;
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60) return -1;
  const char *p = s + n;
  int64_t frac_ms = 0;
  if (*p == '.') {
    int digits = 0;
    for (p++; isdigit((unsigned char)*p); p++, digits++)
      if (digits < 3) frac_ms = frac_ms * 10 + (*p - '0');
    if (digits == 0) return -1;
    for (; digits < 3; digits++) frac_ms *= 10;
  }
  int64_t off_s;
  if (*p == 'Z' || *p == 'z') {
    off_s = 0;
    p++;
  } else if (*p == '+' || *p == '-') {
    int oh, om, k = 0;
    if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &k) != 2 || k != 5 || oh > 23 || om > 59) return -1;
    off_s = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    p += 6;
  } else {
    return -1;
  }
  if (*p != '\0') return -1;
  int64_t t = days_from_civil(Y, (unsigned)M, (unsigned)D) * 86400 + h * 3600 + m * 60 + sec;
  *out_ms = (t - off_s) * 1000 + frac_ms;
  return 0;
}

int tb_cli_parse_since(const char *s, int64_t now_ms, int64_t *out_ms) {
  char *end = NULL;
  if (isdigit((unsigned char)s[0])) {
    long long v = strtoll(s, &end, 10);
    int64_t unit = 0;
    if (end && end[0] && end[1] == '\0') {
      switch (end[0]) {
      case 's': unit = 1000; break;
      case 'm': unit = 60 * 1000; break;
      case 'h': unit = 3600 * 1000; break;
      case 'd': unit = 86400 * 1000; break;
      default: break;
      }
    }
    if (unit && v >= 0 && v <= 100LL * 365 * 86400) {
      *out_ms = now_ms - (int64_t)v * unit;
      if (*out_ms < 1) *out_ms = 1;
      return 0;
    }
  }
  if (parse_rfc3339(s, out_ms) == 0 && *out_ms > 0) return 0;
  return -1;
}

/* ---- cases list ------------------------------------------------------------------ */

struct run {
  int done, rc;
  char err[TB_ERRMSG_MAX];
  json_t *doc;
  struct tb_store *st;
  const char *case_id;
  int raw;
};

static void set_err(struct run *r, int rc, const char *errmsg) {
  r->done = 1;
  r->rc = rc;
  snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : tb_strerror(rc));
}

static json_t *str_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *time_json(int64_t ms) {
  char at[TB_TIME_RFC3339_MAX];
  return ms > 0 ? json_string(tb_time_format_bj(ms, at)) : json_null();
}

/* Only metadata columns: never a field of the case body. */
static json_t *case_meta(const struct tb_store_case_view *v, int with_error) {
  json_t *o = json_object();
  json_object_set_new(o, "case_id", json_string(v->case_id));
  json_object_set_new(o, "status", json_string(v->status));
  json_object_set_new(o, "partner", json_string(v->partner));
  json_object_set_new(o, "origin_region", str_or_null(v->origin_region));
  json_object_set_new(o, "target_region", str_or_null(v->target_region));
  json_object_set_new(o, "receipt_no", str_or_null(v->receipt_no));
  json_object_set_new(o, "created_at", time_json(v->created_ms));
  json_object_set_new(o, "updated_at", time_json(v->updated_ms));
  if (with_error) json_object_set_new(o, "last_error", str_or_null(v->last_error));
  return o;
}

static void on_list(int rc, const struct tb_store_case_view *cases, size_t n, const char *errmsg,
                    void *ud) {
  struct run *r = ud;
  if (rc != 0) {
    set_err(r, rc, errmsg);
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(arr, case_meta(&cases[i], 0));
  r->doc = json_pack("{s:o, s:I}", "cases", arr, "count", (json_int_t)n);
  r->done = 1;
}

static void print_list(json_t *doc) {
  json_t *rows = json_object_get(doc, "cases");
  if (json_array_size(rows) == 0) {
    puts("no cases");
    return;
  }
  /* a table copy with short times */
  json_t *t = json_array();
  size_t i;
  json_t *row;
  json_array_foreach(rows, i, row) {
    json_t *c = json_deep_copy(row);
    const char *k[] = {"created_at", "updated_at"};
    for (int j = 0; j < 2; j++) {
      const char *v = json_string_value(json_object_get(c, k[j]));
      if (v && strlen(v) >= 19) {
        char s[TB_CLI_TIME_MAX];
        snprintf(s, sizeof s, "%.10s %.8s", v, v + 11);
        json_object_set_new(c, k[j], json_string(s));
      }
    }
    json_array_append_new(t, c);
  }
  static const char *const keys[] = {"case_id",    "status",     "partner",   "origin_region",
                                     "target_region", "receipt_no", "created_at", "updated_at"};
  static const char *const heads[] = {"CASE_ID", "STATUS",  "PARTNER",         "ORIGIN",
                                      "TARGET",  "RECEIPT", "CREATED (+08:00)", "UPDATED (+08:00)"};
  tb_cli_print_table(t, keys, heads, 8);
  json_decref(t);
  printf("%zu case(s)\n", json_array_size(rows));
}

/* ---- cases show ------------------------------------------------------------------ */

/* The event detail as one line, at most 80 characters. */
static json_t *detail_summary(const char *detail) {
  json_t *d = json_loads(detail ? detail : "{}", 0, NULL);
  char *s = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(d);
  char buf[84];
  const char *src = s ? s : (detail ? detail : "");
  if (strcmp(src, "{}") == 0) src = "";
  if (strlen(src) > 80)
    snprintf(buf, sizeof buf, "%.77s...", src);
  else
    snprintf(buf, sizeof buf, "%s", src);
  free(s);
  return json_string(buf);
}

static void on_evidence(int rc, const struct tb_store_evidence *ev, size_t n, const char *errmsg,
                        void *ud) {
  struct run *r = ud;
  if (rc != 0) {
    set_err(r, rc, errmsg);
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    const struct tb_store_evidence *e = &ev[i];
    const char *type = tb_store_msg_type_name(e->msg_type);
    json_t *o = json_pack("{s:I, s:s, s:s, s:s?, s:o, s:b, s:s?, s:s?, s:s?, s:I, s:I, s:I}",
                          "id", (json_int_t)e->id, "direction", e->direction, "msg_type",
                          type ? type : "UNKNOWN", "message_id", e->message_id, "at",
                          time_json(e->at_ms), "verified", e->verified, "verify_detail",
                          e->verify_detail, "code", e->code, "content_type", e->content_type,
                          "attempt", (json_int_t)e->attempt, "duration_ms",
                          (json_int_t)e->duration_ms, "bytes", (json_int_t)e->raw_len);
    if (o && r->raw) {
      size_t cap = 4 * ((e->raw_len + 2) / 3) + 1;
      unsigned char *b64 = malloc(cap);
      if (b64) {
        EVP_EncodeBlock(b64, e->raw, (int)e->raw_len);
        json_object_set_new(o, "raw_base64", json_string((const char *)b64));
        free(b64);
      }
    }
    if (o) json_array_append_new(arr, o);
  }
  json_object_set_new(r->doc, "evidence", arr);
  r->done = 1;
}

static void on_outbox(int rc, const struct tb_store_outbox_row *m, size_t n, const char *errmsg,
                      void *ud) {
  struct run *r = ud;
  if (rc != 0) {
    set_err(r, rc, errmsg);
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < n; i++) {
    const char *type = tb_store_msg_type_name(m[i].msg_type);
    json_array_append_new(
        arr, json_pack("{s:s, s:s, s:I, s:s, s:s?, s:s?, s:o, s:o}", "msg_type",
                       type ? type : "UNKNOWN", "message_id", m[i].message_id, "attempts",
                       (json_int_t)m[i].attempts, "state", m[i].state, "last_code",
                       m[i].last_code, "last_error", m[i].last_error, "created_at",
                       time_json(m[i].created_ms), "updated_at", time_json(m[i].updated_ms)));
  }
  json_object_set_new(r->doc, "messages", arr);
  rc = tb_store_evidence_list(r->st, r->case_id, on_evidence, r);
  if (rc != 0) set_err(r, rc, NULL);
}

static void on_case(int rc, const struct tb_store_case_view *v, const char *errmsg, void *ud) {
  struct run *r = ud;
  if (rc == TB_ENOTFOUND) {
    char m[TB_ERRMSG_MAX];
    snprintf(m, sizeof m,
             "no case \"%s\" in this store (check the id; `tbgw cases list` shows them)",
             r->case_id);
    set_err(r, rc, m);
    return;
  }
  if (rc != 0) {
    set_err(r, rc, errmsg);
    return;
  }
  r->doc = case_meta(v, 1);
  json_t *tl = json_array();
  for (size_t i = 0; i < v->timeline_len; i++) {
    const struct tb_store_event *e = &v->timeline[i];
    json_array_append_new(tl, json_pack("{s:I, s:o, s:s, s:o, s:o}", "seq", (json_int_t)e->seq,
                                        "at", time_json(e->at_ms), "kind", e->kind, "status",
                                        str_or_null(e->status), "detail",
                                        detail_summary(e->detail)));
  }
  json_object_set_new(r->doc, "timeline", tl);
  rc = tb_store_outbox_list(r->st, r->case_id, 0, on_outbox, r);
  if (rc != 0) set_err(r, rc, NULL);
}

/* Replaces the RFC 3339 strings under key of every row by short ones. */
static json_t *short_times(json_t *rows, const char *key) {
  json_t *t = json_deep_copy(rows);
  size_t i;
  json_t *row;
  json_array_foreach(t, i, row) {
    const char *v = json_string_value(json_object_get(row, key));
    if (v && strlen(v) >= 19) {
      char s[TB_CLI_TIME_MAX];
      snprintf(s, sizeof s, "%.10s %.8s", v, v + 11);
      json_object_set_new(row, key, json_string(s));
    }
  }
  return t;
}

static const char *jstr(json_t *o, const char *k) {
  const char *v = json_string_value(json_object_get(o, k));
  return v && *v ? v : "-";
}

static void print_show(json_t *doc, int raw, json_t *raw_rows) {
  char t1[TB_CLI_TIME_MAX], t2[TB_CLI_TIME_MAX];
  const char *c = jstr(doc, "created_at"), *u = jstr(doc, "updated_at");
  snprintf(t1, sizeof t1, "%.10s %.8s", c, strlen(c) >= 19 ? c + 11 : "");
  snprintf(t2, sizeof t2, "%.10s %.8s", u, strlen(u) >= 19 ? u + 11 : "");
  printf("case        %s\n", jstr(doc, "case_id"));
  printf("status      %s\n", jstr(doc, "status"));
  printf("partner     %s\n", jstr(doc, "partner"));
  printf("regions     %s -> %s\n", jstr(doc, "origin_region"), jstr(doc, "target_region"));
  printf("receipt     %s\n", jstr(doc, "receipt_no"));
  printf("created     %s (+08:00)\n", t1);
  printf("updated     %s (+08:00)\n", t2);
  printf("last error  %s\n", jstr(doc, "last_error"));

  json_t *tl = short_times(json_object_get(doc, "timeline"), "at");
  size_t i;
  json_t *row;
  json_array_foreach(tl, i, row) {
    char seq[24];
    snprintf(seq, sizeof seq, "%lld", (long long)json_integer_value(json_object_get(row, "seq")));
    json_object_set_new(row, "seq", json_string(seq));
  }
  printf("\ntimeline\n");
  static const char *const tk[] = {"seq", "at", "kind", "status", "detail"};
  static const char *const th[] = {"SEQ", "TIME (+08:00)", "KIND", "STATUS", "DETAIL"};
  tb_cli_print_table(tl, tk, th, 5);
  json_decref(tl);

  json_t *ms = short_times(json_object_get(doc, "messages"), "updated_at");
  json_array_foreach(ms, i, row) {
    char n[24];
    snprintf(n, sizeof n, "%lld",
             (long long)json_integer_value(json_object_get(row, "attempts")));
    json_object_set_new(row, "attempts", json_string(n));
  }
  printf("\noutbound messages\n");
  if (json_array_size(ms) == 0) {
    puts("(none)");
  } else {
    static const char *const mk[] = {"msg_type", "message_id", "attempts", "state",
                                     "updated_at", "last_code", "last_error"};
    static const char *const mh[] = {"TYPE", "MESSAGE_ID", "ATTEMPTS", "STATE",
                                     "UPDATED (+08:00)", "LAST_CODE", "LAST_ERROR"};
    tb_cli_print_table(ms, mk, mh, 7);
  }
  json_decref(ms);

  json_t *ev = short_times(json_object_get(doc, "evidence"), "at");
  json_array_foreach(ev, i, row) {
    char b[24], a[24];
    snprintf(b, sizeof b, "%lld", (long long)json_integer_value(json_object_get(row, "bytes")));
    snprintf(a, sizeof a, "%lld",
             (long long)json_integer_value(json_object_get(row, "attempt")));
    json_object_set_new(row, "bytes", json_string(b));
    json_object_set_new(row, "attempt", json_string(a));
    json_object_set_new(row, "verified",
                        json_string(json_is_true(json_object_get(row, "verified")) ? "yes"
                                                                                   : "no"));
  }
  printf("\nevidence\n");
  if (json_array_size(ev) == 0) {
    puts("(none)");
  } else {
    static const char *const ek[] = {"direction", "msg_type", "at",    "verified",
                                     "code",      "attempt",  "bytes", "verify_detail"};
    static const char *const eh[] = {"DIR",  "TYPE",    "TIME (+08:00)", "VERIFIED",
                                     "CODE", "ATTEMPT", "BYTES",         "VERIFY_DETAIL"};
    tb_cli_print_table(ev, ek, eh, 8);
  }
  json_decref(ev);
  if (raw) {
    json_array_foreach(raw_rows, i, row) {
      printf("\n--- evidence %lld (%s %s, %s) ---\n",
             (long long)json_integer_value(json_object_get(row, "id")), jstr(row, "direction"),
             jstr(row, "msg_type"), jstr(row, "content_type"));
      const char *b64 = json_string_value(json_object_get(row, "raw_base64"));
      size_t len = b64 ? strlen(b64) : 0;
      unsigned char *bytes = malloc(len / 4 * 3 + 4);
      if (bytes && len) {
        int n = EVP_DecodeBlock(bytes, (const unsigned char *)b64, (int)len);
        /* EVP_DecodeBlock counts the padding as bytes; the stored length is exact */
        json_int_t want = json_integer_value(json_object_get(row, "bytes"));
        if (n > 0) fwrite(bytes, 1, (size_t)(want < n ? want : n), stdout);
        putchar('\n');
      }
      free(bytes);
    }
  }
}

/* ---- the command ---------------------------------------------------------------- */

int tb_cli_cases(int argc, char **argv) {
  if (argc < 2 || tb_cli_wants_help(argc, argv)) {
    fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const char *sub = argv[1];
  int list = strcmp(sub, "list") == 0, show = strcmp(sub, "show") == 0;
  if (!list && !show) {
    fprintf(stderr, "tbgw cases: unknown subcommand '%s'\n\n%s", sub, usage);
    return 2;
  }
  const char *path = tb_cli_config_arg(argc, argv);
  struct tb_store_case_filter f = {0};
  const char *case_id = NULL;
  int json = 0, raw = 0;
  long limit = 1000;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
      i++;
    } else if (strncmp(a, "--config=", 9) == 0) {
    } else if (strcmp(a, "--json") == 0) {
      json = 1;
    } else if (list && strcmp(a, "--status") == 0 && i + 1 < argc) {
      f.status = argv[++i];
    } else if (list && strcmp(a, "--partner") == 0 && i + 1 < argc) {
      f.partner = argv[++i];
    } else if (list && strcmp(a, "--since") == 0 && i + 1 < argc) {
      const char *s = argv[++i];
      if (tb_cli_parse_since(s, tb_time_now_ms(), &f.since_ms) != 0) {
        fprintf(stderr,
                "tbgw cases list: --since \"%s\": give an RFC 3339 time "
                "(2024-05-06T10:00:00+08:00) or an age (30s, 15m, 2h, 1d)\n",
                s);
        return 2;
      }
    } else if (list && strcmp(a, "--limit") == 0 && i + 1 < argc) {
      char *end = NULL;
      limit = strtol(argv[++i], &end, 10);
      if (*end != '\0' || limit < 1 || limit > 100000) {
        fputs("tbgw cases list: --limit must be 1..100000\n", stderr);
        return 2;
      }
    } else if (show && strcmp(a, "--raw") == 0) {
      raw = 1;
    } else if (show && a[0] != '-' && case_id == NULL) {
      case_id = a;
    } else {
      fprintf(stderr, "tbgw cases %s: unexpected argument '%s' (see --help)\n", sub, a);
      return 2;
    }
  }
  if (path == NULL) {
    fprintf(stderr, "tbgw cases %s: missing -c FILE (see --help)\n", sub);
    return 2;
  }
  if (show && case_id == NULL) {
    fputs("tbgw cases show: name the CASE_ID (see --help)\n", stderr);
    return 2;
  }
  f.limit = (size_t)limit;

  struct tb_config cfg;
  uv_loop_t loop;
  struct tb_store *st = NULL;
  char cmd[32];
  snprintf(cmd, sizeof cmd, "tbgw cases %s", sub);
  if (tb_cli_store_open(cmd, path, &cfg, &loop, &st) != 0) return 1;
  if (f.partner && tb_config_partner_find(&cfg, f.partner) == NULL)
    fprintf(stderr, "tbgw cases list: note: no partner \"%s\" in %s (looking anyway)\n",
            f.partner, path);

  struct run r = {.st = st, .case_id = case_id, .raw = raw};
  int rc = list ? tb_store_cases_list(st, &f, on_list, &r) : tb_store_case_get(st, case_id, on_case, &r);
  if (rc == 0) {
    while (!r.done) uv_run(&loop, UV_RUN_ONCE);
  } else {
    set_err(&r, rc, NULL);
  }
  tb_cli_store_close(&loop, st, &cfg);
  if (r.rc == 0 && r.doc == NULL) set_err(&r, TB_ENOMEM, "out of memory");
  int status = 0;
  if (r.rc != 0) {
    fprintf(stderr, "%s: %s\n", cmd, r.err);
    status = 1;
  } else if (json) {
    status = tb_cli_print_json(r.doc);
  } else if (list) {
    print_list(r.doc);
  } else {
    print_show(r.doc, raw, json_object_get(r.doc, "evidence"));
  }
  json_decref(r.doc);
  return status;
}
