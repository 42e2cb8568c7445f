/*
 * /healthz (liveness: the loop answers), /readyz (readiness: the store can
 * commit right now) and /metrics (Prometheus text). None of them needs a
 * token: probes and scrapers run without one, and none reveals case data.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/metrics.h"
#include "http/problem.h"

void tb__api_healthz(struct tb_api *api, struct tb_http_exchange *ex) {
  (void)api;
  static const char body[] = "{\"status\":\"ok\"}";
  tb_http_respond(ex, 200, "application/json", body, sizeof body - 1, NULL);
}

struct ready_ctx {
  struct tb_http_exchange *ex;
};

static void on_ping(int rc, const char *errmsg, void *ud) {
  struct ready_ctx *ctx = ud;
  json_t *checks = json_object();
  json_object_set_new(checks, "store", json_string(rc == 0 ? "ok" : errmsg ? errmsg : "failed"));
  /* Adapters and signing keys join these checks when they exist (later
   * issues); until then readiness is the store alone. */
  json_t *o = json_pack("{s:s, s:o}", "status", rc == 0 ? "ready" : "not-ready", "checks", checks);
  tb__api_respond_json(ctx->ex, rc == 0 ? 200 : 503, o, rc == 0 ? NULL : "Retry-After: 5\r\n");
  json_decref(o);
  free(ctx);
}

void tb__api_readyz(struct tb_api *api, struct tb_http_exchange *ex) {
  struct ready_ctx *ctx = malloc(sizeof *ctx);
  if (ctx == NULL || api->shutting_down) {
    free(ctx);
    static const char body[] = "{\"status\":\"not-ready\",\"checks\":{\"gateway\":\"shutting down\"}}";
    tb_http_respond(ex, 503, "application/json", body, sizeof body - 1, NULL);
    return;
  }
  ctx->ex = ex;
  if (tb_store_ping(api->store, on_ping, ctx) != 0) {
    ctx->ex = NULL;
    free(ctx);
    static const char body[] = "{\"status\":\"not-ready\",\"checks\":{\"store\":\"closed\"}}";
    tb_http_respond(ex, 503, "application/json", body, sizeof body - 1, NULL);
  }
}

void tb__api_metrics(struct tb_api *api, struct tb_http_exchange *ex) {
  tb_metric_set(api->metrics.store_pending, NULL, NULL, (double)tb_store_pending(api->store));
  if (api->server)
    tb_metric_set(api->metrics.http_connections, "local_api", NULL,
                  (double)tb_http_server_connections(api->server));
  size_t len = 0;
  char *text = tb_metrics_render(&len);
  if (text == NULL) {
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
    return;
  }
  tb_http_respond_owned(ex, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
}
