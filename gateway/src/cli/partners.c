/*
 * tbgw partners, tbgw partner ping: the partners' side of operations.
 *
 * `partners` joins the configuration (adapter, endpoint) with two reads of
 * the store file (queue counts and the oldest queued message; the last
 * delivery and the last failed attempt), opened as `tbgw dlq` does: safe next
 * to a running gateway. The circuit breaker's state lives only in the
 * daemon's memory, so it is not guessed here: the output points at
 * tbgw_circuit_state on the daemon's /metrics.
 *
 * `partner ping` makes one fresh TCP + TLS connection with the partner's TLS
 * settings (tb_client_probe, on a short-lived loop of its own) and says which
 * stage works: DNS, TCP, TLS, client certificate, and with --http one empty
 * POST for the HTTP layer (and for a client certificate refused after a
 * TLS 1.3 handshake). Nothing is sent to the partner without --http.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cli/cli.h"
#include "client/client.h"
#include "core/config.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "store/store.h"
#include "tbgw/error.h"

static const char partners_usage[] =
    "usage: tbgw partners -c FILE [--json]\n"
    "\n"
    "One line per configured partner (and per partner the store still has\n"
    "messages for): adapter, endpoint, messages queued / sending / failed (dead\n"
    "letters), age of the oldest queued message, the last successful delivery\n"
    "and the last failed attempt with its code (Beijing time).\n"
    "\n"
    "Last success is the delivery time of the newest delivered message among the\n"
    "newest 100000 messages; last failure is the latest failed attempt of a\n"
    "message that is still queued or dead-lettered (a delivery clears it).\n"
    "The circuit breaker's state is known only to the running gateway: read\n"
    "tbgw_circuit_state{partner} on its GET /metrics (0 closed, 1 open, 2 half-open).\n"
    "\n"
    "The store named by the configuration FILE is opened directly; this is safe\n"
    "while the gateway runs. Exit status: 0 done, 1 failure, 2 usage error.\n";

static const char ping_usage[] =
    "usage: tbgw partner ping NAME -c FILE [--http] [--json]\n"
    "\n"
    "Checks that partner NAME is reachable with its configured endpoint and TLS\n"
    "settings (partners[].tls: ca, client_certificate, client_key), stage by stage:\n"
    "  dns          the endpoint's host name resolves\n"
    "  tcp          a TCP connection opens (within delivery.connect_timeout_ms)\n"
    "  tls          the TLS handshake completes and the partner's certificate\n"
    "               verifies against tls.ca\n"
    "  client_cert  the partner accepts our client certificate\n"
    "  http         (--http only) the partner answers an HTTP request\n"
    "Without --http nothing is sent: one connection is opened and closed. With\n"
    "--http one empty POST goes to the endpoint; the partner will refuse it (any\n"
    "HTTP status counts as working). Under TLS 1.3 a partner refuses a client\n"
    "certificate only after the handshake, so only --http can prove it accepted.\n"
    "\n"
    "Exit status: 0 every checked stage works, 1 a stage failed (or the settings\n"
    "are wrong), 2 usage error.\n";

/* ---- tbgw partners ------------------------------------------------------------ */

struct run {
  int done, rc;
  char err[TB_ERRMSG_MAX];
  struct tb_store *st;
  json_t *by_name; /* partner name -> object */
  int64_t now_ms;
};

static void fail(struct run *r, int rc, const char *errmsg) {
  r->done = 1;
  r->rc = rc;
  snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : tb_strerror(rc));
}

static json_t *time_json(int64_t ms) {
  char at[TB_TIME_RFC3339_MAX];
  return ms > 0 ? json_string(tb_time_format_bj(ms, at)) : json_null();
}

/* The partner's object, made for a partner only the store knows. */
static json_t *partner_obj(struct run *r, const char *name) {
  json_t *o = json_object_get(r->by_name, name);
  if (o) return o;
  o = json_pack("{s:s, s:n, s:n, s:b}", "name", name, "adapter", "endpoint", "configured", 0);
  json_object_set_new(r->by_name, name, o);
  return o;
}

static void on_activity(int rc, const struct tb_store_partner_activity *a, size_t n,
                        const char *errmsg, void *ud) {
  struct run *r = ud;
  if (rc != 0) {
    fail(r, rc, errmsg);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *o = partner_obj(r, a[i].partner);
    json_object_set_new(o, "last_success_at", time_json(a[i].last_delivered_ms));
    json_object_set_new(o, "last_failure_at", time_json(a[i].last_failure_ms));
    json_object_set_new(o, "last_failure_code",
                        a[i].last_failure_code ? json_string(a[i].last_failure_code) : json_null());
    json_object_set_new(o, "last_failure_error", a[i].last_failure_error
                                                     ? json_string(a[i].last_failure_error)
                                                     : json_null());
  }
  r->done = 1;
}

static void on_stats(int rc, const struct tb_store_queue_stat *q, size_t n, const char *errmsg,
                     void *ud) {
  struct run *r = ud;
  if (rc != 0) {
    fail(r, rc, errmsg);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    json_t *o = partner_obj(r, q[i].partner);
    json_object_set_new(o, "queued", json_integer((json_int_t)q[i].queued));
    json_object_set_new(o, "sending", json_integer((json_int_t)q[i].sending));
    json_object_set_new(o, "failed", json_integer((json_int_t)q[i].failed));
    json_object_set_new(o, "oldest_queued_at", time_json(q[i].oldest_queued_ms));
    json_object_set_new(o, "oldest_queued_age_s",
                        q[i].oldest_queued_ms > 0
                            ? json_integer((json_int_t)((r->now_ms - q[i].oldest_queued_ms) / 1000))
                            : json_null());
  }
  rc = tb_store_partner_activity(r->st, on_activity, r);
  if (rc != 0) fail(r, rc, NULL);
}

static void age_text(json_t *v, char *out, size_t size) {
  if (!json_is_integer(v)) {
    snprintf(out, size, "-");
    return;
  }
  long long s = json_integer_value(v);
  if (s < 0) s = 0;
  if (s < 60)
    snprintf(out, size, "%llds", s);
  else if (s < 3600)
    snprintf(out, size, "%lldm%02llds", s / 60, s % 60);
  else if (s < 86400)
    snprintf(out, size, "%lldh%02lldm", s / 3600, s % 3600 / 60);
  else
    snprintf(out, size, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

static void short_time(json_t *row, const char *key) {
  const char *v = json_string_value(json_object_get(row, key));
  if (v && strlen(v) >= 19) {
    char s[TB_CLI_TIME_MAX];
    snprintf(s, sizeof s, "%.10s %.8s", v, v + 11);
    json_object_set_new(row, key, json_string(s));
  }
}

static void print_partners(json_t *arr) {
  if (json_array_size(arr) == 0) {
    puts("no partners configured and none in the store");
    return;
  }
  json_t *t = json_deep_copy(arr);
  size_t i;
  json_t *row;
  json_array_foreach(t, i, row) {
    char n[32];
    const char *k[] = {"queued", "sending", "failed"};
    for (int j = 0; j < 3; j++) {
      snprintf(n, sizeof n, "%lld", (long long)json_integer_value(json_object_get(row, k[j])));
      json_object_set_new(row, k[j], json_string(n));
    }
    age_text(json_object_get(row, "oldest_queued_age_s"), n, sizeof n);
    json_object_set_new(row, "oldest", json_string(n));
    short_time(row, "last_success_at");
    short_time(row, "last_failure_at");
    if (!json_is_true(json_object_get(row, "configured")))
      json_object_set_new(row, "adapter", json_string("(not configured)"));
  }
  static const char *const keys[] = {"name",   "adapter", "endpoint", "queued",
                                     "sending", "failed", "oldest",   "last_success_at",
                                     "last_failure_at", "last_failure_code"};
  static const char *const heads[] = {"PARTNER", "ADAPTER", "ENDPOINT", "QUEUED",
                                      "SENDING", "FAILED",  "OLDEST",   "LAST_SUCCESS (+08:00)",
                                      "LAST_FAILURE (+08:00)", "CODE"};
  tb_cli_print_table(t, keys, heads, 10);
  json_decref(t);
  puts("circuit state: only the running gateway knows it; see tbgw_circuit_state on its "
       "/metrics");
}

int tb_cli_partners(int argc, char **argv) {
  if (tb_cli_wants_help(argc, argv)) {
    fputs(partners_usage, stdout);
    return 0;
  }
  const char *path = tb_cli_config_arg(argc, argv);
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
      i++;
    } else if (strncmp(a, "--config=", 9) == 0) {
    } else if (strcmp(a, "--json") == 0) {
      json = 1;
    } else {
      fprintf(stderr, "tbgw partners: unexpected argument '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (path == NULL) {
    fputs("tbgw partners: missing -c FILE (see --help)\n", stderr);
    return 2;
  }
  struct tb_config cfg;
  uv_loop_t loop;
  struct tb_store *st = NULL;
  if (tb_cli_store_open("tbgw partners", path, &cfg, &loop, &st) != 0) return 1;

  struct run r = {.st = st, .by_name = json_object(), .now_ms = tb_time_now_ms()};
  json_t *order = json_array(); /* configured order first, then store-only partners */
  for (size_t i = 0; i < cfg.partner_count; i++) {
    const struct tb_config_partner *p = &cfg.partners[i];
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:i, s:i, s:i, s:n, s:n, s:n, s:n, s:n, s:n}",
                          "name", p->name, "adapter", p->adapter ? p->adapter : "", "endpoint",
                          p->endpoint ? p->endpoint : "", "configured", 1, "queued", 0,
                          "sending", 0, "failed", 0, "oldest_queued_at", "oldest_queued_age_s",
                          "last_success_at", "last_failure_at", "last_failure_code",
                          "last_failure_error");
    json_object_set_new(r.by_name, p->name, o);
    json_array_append_new(order, json_string(p->name));
  }
  int rc = tb_store_queue_stats(st, on_stats, &r);
  if (rc == 0) {
    while (!r.done) uv_run(&loop, UV_RUN_ONCE);
  } else {
    fail(&r, rc, NULL);
  }
  tb_cli_store_close(&loop, st, &cfg);
  int status = 0;
  if (r.rc != 0) {
    fprintf(stderr, "tbgw partners: %s\n", r.err);
    status = 1;
  } else {
    json_t *arr = json_array();
    size_t i;
    json_t *name;
    json_array_foreach(order, i, name) {
      json_t *o = json_object_get(r.by_name, json_string_value(name));
      json_array_append(arr, o);
      json_object_del(r.by_name, json_string_value(name));
    }
    const char *k;
    json_t *o;
    json_object_foreach(r.by_name, k, o) {
      for (const char *const *f = (const char *const[]){"queued", "sending", "failed", NULL};
           *f; f++)
        if (!json_object_get(o, *f)) json_object_set_new(o, *f, json_integer(0));
      json_array_append(arr, o);
    }
    if (json) {
      json_t *doc = json_pack("{s:o, s:s}", "partners", arr, "circuit_state",
                              "known only to the running gateway: tbgw_circuit_state on /metrics");
      status = tb_cli_print_json(doc);
      json_decref(doc);
    } else {
      print_partners(arr);
      json_decref(arr);
    }
  }
  json_decref(order);
  json_decref(r.by_name);
  return status;
}

/* ---- tbgw partner ping --------------------------------------------------------- */

enum { ST_DNS, ST_TCP, ST_TLS, ST_CERT, ST_HTTP, ST__N };
static const char *const stage_names[ST__N] = {"dns", "tcp", "tls", "client_cert", "http"};

struct ping {
  struct tb_client *client;
  struct tb_client_pool *pool;
  int http, has_cert, done, closed;
  uint64_t connect_timeout_ms;
  const char *state[ST__N]; /* "ok", "failed", "skipped", "not configured", "not checked" */
  char why[ST__N][TB_ERRMSG_MAX];
};

static void set_stage(struct ping *p, int s, const char *state, const char *why) {
  p->state[s] = state;
  snprintf(p->why[s], sizeof p->why[s], "%s", why ? why : "");
}

/* Marks every stage from s on that has no state yet as skipped. */
static void skip_from(struct ping *p, int s) {
  for (; s < ST__N; s++)
    if (p->state[s] == NULL) set_stage(p, s, "skipped", "an earlier stage failed");
}

/* A TLS failure caused by the partner refusing our certificate carries an
 * alert; one caused by theirs is "SSL certificate problem" / verify text. */
static int looks_like_cert_refused(const char *text) {
  return strstr(text, "alert") != NULL &&
         (strstr(text, "certificate") != NULL || strstr(text, "handshake failure") != NULL ||
          strstr(text, "unknown ca") != NULL);
}

static void on_http(const struct tb_client_result *res, void *ud) {
  struct ping *p = ud;
  char why[TB_ERRMSG_MAX];
  if (res->transport_error == 0) {
    snprintf(why, sizeof why, "HTTP %d to an empty POST (any status means HTTP works)",
             res->http_status);
    set_stage(p, ST_HTTP, "ok", why);
    if (p->has_cert) set_stage(p, ST_CERT, "ok", "accepted (an HTTP answer came back)");
  } else {
    snprintf(why, sizeof why, "%s: %.400s", tb_client_error_name(res->transport_error),
             res->error_text);
    if (res->transport_error == TB_CLIENT_ETLS && looks_like_cert_refused(res->error_text)) {
      set_stage(p, ST_CERT, "failed",
                p->has_cert ? why : "the partner wants a client certificate; configure "
                                    "tls.client_certificate and tls.client_key");
      set_stage(p, ST_HTTP, "skipped", "the partner refused the client certificate");
    } else {
      set_stage(p, ST_HTTP, "failed", why);
    }
  }
  p->done = 1;
}

static void on_probe(const struct tb_client_result *res, void *ud) {
  struct ping *p = ud;
  char why[TB_ERRMSG_MAX];
  snprintf(why, sizeof why, "%s", res->error_text && *res->error_text
                                      ? res->error_text
                                      : tb_client_error_name(res->transport_error));
  switch (res->transport_error) {
  case 0:
    set_stage(p, ST_DNS, "ok", NULL);
    set_stage(p, ST_TCP, "ok", NULL);
    set_stage(p, ST_TLS, "ok", "handshake done, the partner's certificate verified");
    if (!p->has_cert)
      set_stage(p, ST_CERT, "not configured", "no tls.client_certificate for this partner");
    else if (!p->http)
      set_stage(p, ST_CERT, "ok",
                "not refused in the handshake (under TLS 1.3 only --http can prove it)");
    break;
  case TB_CLIENT_EDNS:
    set_stage(p, ST_DNS, "failed", why);
    break;
  case TB_CLIENT_ECONNECT:
    set_stage(p, ST_DNS, "ok", NULL);
    set_stage(p, ST_TCP, "failed", why);
    break;
  case TB_CLIENT_ETIMEOUT: {
    char t[TB_ERRMSG_MAX];
    snprintf(t, sizeof t, "no TCP connection and TLS handshake within %llu ms: %.300s",
             (unsigned long long)p->connect_timeout_ms, why);
    set_stage(p, ST_DNS, "ok", NULL);
    set_stage(p, ST_TCP, "failed", t);
    break;
  }
  case TB_CLIENT_ETLS:
    set_stage(p, ST_DNS, "ok", NULL);
    set_stage(p, ST_TCP, "ok", NULL);
    if (looks_like_cert_refused(why)) {
      set_stage(p, ST_TLS, "failed", "the partner ended the handshake with an alert");
      set_stage(p, ST_CERT, "failed", why);
    } else {
      set_stage(p, ST_TLS, "failed", why);
    }
    break;
  default:
    set_stage(p, ST_DNS, "ok", NULL);
    set_stage(p, ST_TCP, "failed", why);
    break;
  }
  if (res->transport_error == 0 && p->http) {
    char err[TB_ERRMSG_MAX] = "";
    int rc = tb_client_post(p->pool, "/", "application/octet-stream", NULL, "", 0, on_http, p,
                            err);
    if (rc == 0) return;
    set_stage(p, ST_HTTP, "failed", err[0] ? err : tb_strerror(rc));
  } else if (!p->http && p->state[ST_HTTP] == NULL) {
    set_stage(p, ST_HTTP, "not checked", "add --http to send one empty POST");
  }
  p->done = 1;
}

static void on_client_closed(void *ud) { ((struct ping *)ud)->closed = 1; }

int tb_cli_partner(int argc, char **argv) {
  if (argc < 2 || tb_cli_wants_help(argc, argv)) {
    fputs(ping_usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "ping") != 0) {
    fprintf(stderr, "tbgw partner: unknown subcommand '%s'\n\n%s", argv[1], ping_usage);
    return 2;
  }
  const char *path = tb_cli_config_arg(argc, argv), *name = NULL;
  int json = 0, http = 0;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
      i++;
    } else if (strncmp(a, "--config=", 9) == 0) {
    } else if (strcmp(a, "--json") == 0) {
      json = 1;
    } else if (strcmp(a, "--http") == 0) {
      http = 1;
    } else if (a[0] != '-' && name == NULL) {
      name = a;
    } else {
      fprintf(stderr, "tbgw partner ping: unexpected argument '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (path == NULL || name == NULL) {
    fprintf(stderr, "tbgw partner ping: missing %s (see --help)\n",
            path == NULL ? "-c FILE" : "the partner NAME");
    return 2;
  }
  struct tb_config cfg;
  char *problems = NULL;
  int rc = tb_config_load(path, &cfg, &problems);
  if (rc != 0) {
    fprintf(stderr, "tbgw: %s: configuration is not valid (run tbgw check-config -c %s):\n%s%s",
            path, path, problems ? problems : tb_strerror(rc), problems ? "" : "\n");
    free(problems);
    return 1;
  }
  const struct tb_config_partner *pc = tb_config_partner_find(&cfg, name);
  if (pc == NULL) {
    fprintf(stderr, "tbgw partner ping: no partner \"%s\" in %s (`tbgw partners -c %s` lists them)\n",
            name, path, path);
    tb_config_free(&cfg);
    return 1;
  }
  tb_log_setup(2, TB_LOG_WARN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct ping p = {.http = http, .has_cert = pc->tls.client_certificate != NULL};
  struct tb_config_delivery dd;
  tb_config_delivery_default(&dd);
  p.connect_timeout_ms = pc->delivery.connect_timeout_ms ? pc->delivery.connect_timeout_ms
                                                         : dd.connect_timeout_ms;
  char err[TB_ERRMSG_MAX] = "";
  int setup_failed = 0;
  rc = tb_client_new(&loop, &p.client, err);
  if (rc == 0) {
    /* The same pool settings as the delivery engine (delivery/engine.c). */
    struct tb_client_pool_config cc = {
        .name = pc->name,
        .base_url = pc->endpoint,
        .ca_file = pc->tls.ca ? pc->tls.ca : X509_get_default_cert_file(),
        .cert_file = pc->tls.client_certificate,
        .key_file = pc->tls.client_key,
        .connect_timeout_ms = p.connect_timeout_ms,
        .timeout_ms = pc->delivery.timeout_ms,
        .max_in_flight = 1,
    };
    rc = tb_client_pool_add(p.client, &cc, &p.pool, err);
    if (rc == 0) rc = tb_client_probe(p.pool, on_probe, &p, err);
    if (rc != 0) setup_failed = 1;
    if (rc == 0)
      while (!p.done) uv_run(&loop, UV_RUN_ONCE);
    tb_client_close(p.client, on_client_closed, &p);
  } else {
    setup_failed = 1;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (setup_failed) {
    fprintf(stderr,
            "tbgw partner ping %s: cannot set up the connection: %s\n"
            "(check partners[].endpoint and partners[].tls in %s)\n",
            name, err[0] ? err : tb_strerror(rc), path);
    tb_config_free(&cfg);
    return 1;
  }
  skip_from(&p, 0);
  int any_failed = 0;
  json_t *stages = json_array();
  for (int s = 0; s < ST__N; s++) {
    if (strcmp(p.state[s], "failed") == 0) any_failed = 1;
    json_array_append_new(stages, json_pack("{s:s, s:s, s:s}", "stage", stage_names[s], "result",
                                            p.state[s], "detail", p.why[s]));
  }
  int status = any_failed ? 1 : 0;
  if (json) {
    json_t *doc = json_pack("{s:s, s:s, s:b, s:o}", "partner", name, "endpoint", pc->endpoint,
                            "ok", !any_failed, "stages", stages);
    if (tb_cli_print_json(doc) != 0) status = 1;
    json_decref(doc);
  } else {
    printf("partner %s  %s\n", name, pc->endpoint);
    for (int s = 0; s < ST__N; s++)
      printf("  %-12s %-15s %s\n", stage_names[s], p.state[s], p.why[s]);
    printf("%s\n", any_failed ? "FAILED" : "OK");
    json_decref(stages);
  }
  tb_config_free(&cfg);
  return status;
}
