/*
 * The local API's front door: metrics registration, authentication and the
 * route table. Handlers live in cases.c, events.c and health.c.
 */
#include "api/api.h"

#include <jansson.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "core/metrics.h"
#include "delivery/engine.h"
#include "http/problem.h"
#include "tbgw/error.h"

static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                        0.05,   0.1,   0.25,   0.5,   1,    2.5, 5, 10};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

static void on_store_commit(int64_t last_seq, size_t batch_ops, uint64_t commit_ns, void *ud) {
  struct tb_api *api = ud;
  tb_metric_observe(api->metrics.store_commit, NULL, (double)commit_ns / 1e9);
  tb_metric_observe(api->metrics.store_batch, NULL, (double)batch_ops);
  tb__api_events_on_commit(api, last_seq);
  /* The audit trail rides the group commit: what was appended before this
   * batch's commit is written with one write + one fdatasync. The store has
   * one hook, so it is called from here (not tb_audit_on_store_commit). */
  if (api->audit) {
    char err[TB_ERRMSG_MAX] = "";
    if (tb_audit_flush(api->audit, err) != 0)
      tb_log_msg(TB_LOG_ERROR, "audit.flush_failed",
                 "%s (the records stay buffered and are written at the next flush)", err);
  }
}

int tb_api_init(struct tb_api *api, uv_loop_t *loop, const struct tb_config *cfg,
                struct tb_store *store, char *err) {
  memset(api, 0, sizeof *api);
  api->loop = loop;
  api->cfg = cfg;
  api->store = store;
  struct tb_api_metrics *m = &api->metrics;
  m->build_info = tb_metric_gauge("tbgw_build_info", "Build information; the value is always 1.",
                                  "version", NULL);
  m->http_requests = tb_metric_counter("tbgw_http_requests_total",
                                       "HTTP requests answered on the local API, by route and status.",
                                       "route", "status");
  m->http_duration = tb_metric_histogram(
      "tbgw_http_request_duration_seconds",
      "Time from a request's first byte to its answer being queued, by route.", "route",
      latency_bounds, sizeof latency_bounds / sizeof *latency_bounds);
  m->cases_accepted = tb_metric_counter("tbgw_cases_accepted_total",
                                        "Cases durably accepted, by routed partner.", "partner",
                                        NULL);
  m->cases_refused = tb_metric_counter("tbgw_cases_refused_total",
                                       "Cases refused at the local API, by reason.", "reason",
                                       NULL);
  m->store_commit = tb_metric_histogram(
      "tbgw_store_commit_duration_seconds",
      "Duration of one store commit (group commit, fsync included).", NULL, latency_bounds,
      sizeof latency_bounds / sizeof *latency_bounds);
  m->store_batch = tb_metric_histogram("tbgw_store_commit_batch_ops",
                                       "Operations committed together in one store transaction.",
                                       NULL, batch_bounds, sizeof batch_bounds / sizeof *batch_bounds);
  m->store_pending = tb_metric_gauge("tbgw_store_pending_ops",
                                     "Store operations queued and not yet answered.", NULL, NULL);
  m->http_connections = tb_metric_gauge("tbgw_http_connections",
                                        "Open HTTP connections, by listener.", "listener", NULL);
  m->queue_messages = tb_metric_gauge(
      "tbgw_queue_messages",
      "Outbound messages by partner and state (queued, sending, failed = dead letters).",
      "partner", "state");
  m->queue_oldest_age = tb_metric_gauge(
      "tbgw_queue_oldest_age_seconds",
      "Age of the oldest message still queued for a partner (0 when none is).", "partner", NULL);
  m->cert_expiry = tb_metric_gauge(
      "tbgw_certificate_expiry_seconds",
      "Seconds until the certificate of each configured key expires (negative: expired).", "key",
      NULL);
  if (!m->build_info || !m->http_requests || !m->http_duration || !m->cases_accepted ||
      !m->cases_refused || !m->store_commit || !m->store_batch || !m->store_pending ||
      !m->http_connections || !m->queue_messages || !m->queue_oldest_age || !m->cert_expiry)
    return tb_errf(err, TB_ENOMEM, "api: cannot register metrics: out of memory");
  tb_metric_set(m->build_info, TB_VERSION, NULL, 1);
  tb_ratelimit_init(&api->ratelimit,
                    cfg->rate_limit_burst == 0 ? 0 : cfg->rate_limit_per_s,
                    cfg->rate_limit_burst, TB_RATELIMIT_MAX_ENTRIES);
  tb_store_on_commit(store, on_store_commit, api);
  return 0;
}

void tb_api_observe(const char *route, int status, uint64_t duration_ns, void *ud) {
  struct tb_api *api = ud;
  char code[8];
  snprintf(code, sizeof code, "%d", status);
  tb_metric_add(api->metrics.http_requests, route, code, 1);
  tb_metric_observe(api->metrics.http_duration, route, (double)duration_ns / 1e9);
}

int tb__api_is_json(const char *content_type) {
  if (content_type == NULL) return 0;
  size_t n = strlen("application/json");
  return strncasecmp(content_type, "application/json", n) == 0 &&
         (content_type[n] == '\0' || content_type[n] == ';' || content_type[n] == ' ');
}

void tb__api_respond_unavailable(struct tb_http_exchange *ex, int rc) {
  if (rc == TB_ECLOSED)
    tb_http_respond_problem(ex, 503, "shutting-down", "Shutting down",
                            "the gateway is stopping; retry shortly", "Retry-After: 5\r\n");
  else
    tb_http_respond_problem(ex, 503, "store-unavailable", "Store unavailable",
                            "the store could not be read or written; nothing was kept, retry",
                            "Retry-After: 1\r\n");
}

void tb__api_respond_json(struct tb_http_exchange *ex, int status, const void *json_value,
                          const char *extra_headers) {
  char *text = json_dumps((const json_t *)json_value, JSON_COMPACT);
  if (text == NULL) {
    tb_http_respond_problem(ex, 500, "internal", "Internal error",
                            "the answer could not be encoded (out of memory)", NULL);
    return;
  }
  tb_http_respond_owned(ex, status, "application/json", text, strlen(text), extra_headers);
}

void tb__api_kick(struct tb_api *api, const char *partner) {
  tb_delivery_kick(api->delivery, partner);
}

const char *tb__api_authenticate(const struct tb_api *api, const struct tb_http_request *req) {
  const char *h = tb_http_request_header(req, "authorization");
  if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
  const char *tok = h + 7;
  while (*tok == ' ') tok++;
  size_t len = strlen(tok);
  const char *client = NULL;
  /* Compare against every token, always the whole length, so the time taken
   * does not tell which token (or which prefix) was close. */
  for (size_t i = 0; i < api->cfg->token_count; i++) {
    const char *want = api->cfg->tokens[i].token;
    size_t wlen = strlen(want);
    int same = len == wlen && CRYPTO_memcmp(tok, want, wlen) == 0;
    if (same && client == NULL) client = api->cfg->tokens[i].client;
  }
  return client;
}

unsigned tb__api_json_depth(const char *text, size_t len, unsigned limit) {
  unsigned depth = 0, max = 0;
  int in_string = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = text[i];
    if (in_string) {
      if (ch == '\\') i++; /* the escaped character cannot end the string */
      else if (ch == '"') in_string = 0;
      continue;
    }
    if (ch == '"') {
      in_string = 1;
    } else if (ch == '[' || ch == '{') {
      if (++depth > max) {
        max = depth;
        if (max > limit) return max;
      }
    } else if ((ch == ']' || ch == '}') && depth > 0) {
      depth--;
    }
  }
  return max;
}

/* ---- rate limit ------------------------------------------------------- */

/* Takes a token for this request's client (or, unauthenticated, its peer IP).
 * Answers 429 and returns 1 when over the limit. */
static int rate_limited(struct tb_api *api, struct tb_http_exchange *ex,
                        const struct tb_http_request *req, const char *client,
                        const char *label) {
  if (api->ratelimit.rate_per_s == 0) return 0;
  char key[TB_RATELIMIT_KEY_MAX];
  if (client != NULL) {
    snprintf(key, sizeof key, "c:%s", client);
  } else {
    /* peer is "1.2.3.4:port" or "[::1]:port": keep the address only */
    const char *p = req->peer ? req->peer : "-";
    size_t n = strlen(p);
    const char *colon = strrchr(p, ':');
    if (colon != NULL) n = (size_t)(colon - p);
    if (n >= 2 && p[0] == '[' && p[n - 1] == ']') {
      p++;
      n -= 2;
    }
    snprintf(key, sizeof key, "ip:%.*s", (int)(n > 64 ? 64 : n), p);
  }
  uint32_t retry = tb_ratelimit_take(&api->ratelimit, key, uv_now(api->loop));
  if (retry == 0) return 0;
  tb_http_exchange_set_route(ex, label);
  char hdr[48], detail[200];
  snprintf(hdr, sizeof hdr, "Retry-After: %u\r\n", retry);
  snprintf(detail, sizeof detail,
           "more than %u requests a second (burst %u) from this %s; retry in %u s",
           api->ratelimit.rate_per_s, api->ratelimit.burst, client ? "client" : "address",
           retry);
  tb_http_respond_problem(ex, 429, "rate-limited", "Too many requests", detail, hdr);
  return 1;
}

/* ---- routing ---------------------------------------------------------- */

enum route_id {
  R_HEALTHZ, R_READYZ, R_METRICS, R_CASES, R_CASE, R_EVENTS,
  R_CASE_WITHDRAW, R_CASE_SUPPLEMENT, R_CASE_EVIDENCE, R_INBOUND, R_INBOUND_STATUS,
  R_ADMIN_DLQ, R_ADMIN_REPLAY,
};

struct route {
  enum route_id id;
  const char *label;    /* metrics label */
  const char *pattern;  /* '*' matches one path segment (a case id) */
  const char *allow;    /* allowed methods, for 405 */
  int auth;             /* needs a bearer token */
};

static const struct route routes[] = {
    {R_HEALTHZ, "/healthz", "/healthz", "GET, HEAD", 0},
    {R_READYZ, "/readyz", "/readyz", "GET, HEAD", 0},
    {R_METRICS, "/metrics", "/metrics", "GET, HEAD", 0},
    {R_CASES, "/v1/cases", "/v1/cases", "POST", 1},
    {R_CASE, "/v1/cases/{id}", "/v1/cases/*", "GET, HEAD", 1},
    {R_CASE_WITHDRAW, "/v1/cases/{id}/withdraw", "/v1/cases/*/withdraw", "POST", 1},
    {R_CASE_SUPPLEMENT, "/v1/cases/{id}/supplement", "/v1/cases/*/supplement", "POST", 1},
    {R_CASE_EVIDENCE, "/v1/cases/{id}/evidence", "/v1/cases/*/evidence", "GET, HEAD", 1},
    {R_EVENTS, "/v1/events", "/v1/events", "GET, HEAD", 1},
    {R_INBOUND, "/v1/inbound/{id}", "/v1/inbound/*", "GET, HEAD", 1},
    {R_INBOUND_STATUS, "/v1/inbound/{id}/status", "/v1/inbound/*/status", "POST", 1},
    {R_ADMIN_DLQ, "/v1/admin/dead-letters", "/v1/admin/dead-letters", "GET, HEAD", 1},
    {R_ADMIN_REPLAY, "/v1/admin/dead-letters/replay", "/v1/admin/dead-letters/replay", "POST", 1},
};

/* Matches path against pattern; on a '*' segment, copies it (at most 64
 * chars of [0-9A-Za-z_-], the case_id alphabet) into seg. */
static int route_match(const char *pattern, const char *path, char seg[65]) {
  while (*pattern && *path) {
    if (*pattern == '*') {
      size_t n = 0;
      while (path[n] && path[n] != '/') n++;
      if (n == 0 || n > 64) return 0;
      for (size_t i = 0; i < n; i++) {
        char c = path[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '-' || c == '_'))
          return 0;
      }
      memcpy(seg, path, n);
      seg[n] = '\0';
      path += n;
      pattern++;
      continue;
    }
    if (*pattern != *path) return 0;
    pattern++;
    path++;
  }
  return *pattern == '\0' && *path == '\0';
}

static int method_allowed(const char *allow, const char *method) {
  size_t ml = strlen(method);
  for (const char *p = allow; (p = strstr(p, method)) != NULL; p += ml)
    if ((p == allow || p[-1] == ' ') && (p[ml] == ',' || p[ml] == '\0')) return 1;
  return 0;
}

void tb_api_handle(struct tb_http_exchange *ex, const struct tb_http_request *req, void *ud) {
  struct tb_api *api = ud;
  const struct route *r = NULL;
  char seg[65] = "";
  for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
    if (route_match(routes[i].pattern, req->path, seg)) {
      r = &routes[i];
      break;
    }
  }
  int v1 = strncmp(req->path, "/v1/", 4) == 0;
  int needs_auth = r ? r->auth : v1;
  const char *client = needs_auth ? tb__api_authenticate(api, req) : NULL;
  /* /healthz, /readyz and /metrics are never limited: probes and scrapes
   * must see an overloaded gateway too. */
  if (v1 && rate_limited(api, ex, req, client, r ? r->label : "unmatched")) return;
  if (needs_auth && client == NULL) {
    tb_http_exchange_set_route(ex, r ? r->label : "unmatched");
    tb_http_respond_problem(ex, 401, "unauthorized", "Unauthorized",
                            "send a configured token as 'Authorization: Bearer <token>'",
                            "WWW-Authenticate: Bearer realm=\"tbgw\"\r\n");
    return;
  }
  if (r == NULL) {
    tb_http_exchange_set_route(ex, "unmatched");
    char detail[160];
    snprintf(detail, sizeof detail, "no resource at %.100s", req->path);
    tb_http_respond_problem(ex, 404, "not-found", "Not found", detail, NULL);
    return;
  }
  tb_http_exchange_set_route(ex, r->label);
  if (!method_allowed(r->allow, req->method_name)) {
    char hdr[96], detail[160];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", r->allow);
    snprintf(detail, sizeof detail, "%s is not allowed here; allowed: %s", req->method_name,
             r->allow);
    tb_http_respond_problem(ex, 405, "method-not-allowed", "Method not allowed", detail, hdr);
    return;
  }
  switch (r->id) {
  case R_HEALTHZ: tb__api_healthz(api, ex); return;
  case R_READYZ: tb__api_readyz(api, ex); return;
  case R_METRICS: tb__api_metrics(api, ex); return;
  case R_CASES: tb__api_cases_post(api, ex, req); return;
  case R_CASE: tb__api_cases_get(api, ex, seg); return;
  case R_EVENTS: tb__api_events_get(api, ex, req); return;
  case R_CASE_WITHDRAW: tb__api_cases_withdraw(api, ex, req, seg); return;
  case R_CASE_SUPPLEMENT: tb__api_cases_supplement(api, ex, req, seg); return;
  case R_CASE_EVIDENCE: tb__api_cases_evidence(api, ex, seg); return;
  case R_ADMIN_DLQ: tb__api_admin_dead_letters(api, ex, req); return;
  case R_ADMIN_REPLAY: tb__api_admin_replay(api, ex, req); return;
  case R_INBOUND: tb__api_inbound_get(api, ex, seg); return;
  case R_INBOUND_STATUS: tb__api_inbound_status(api, ex, req, seg); return;
  }
}
