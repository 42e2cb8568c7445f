/*
 * /healthz (liveness: the loop answers), /readyz (readiness: the store can
 * commit right now, every partner's adapter is initialised, every key is
 * loaded and no configured certificate has expired) and /metrics
 * (Prometheus text). None of them needs a token: probes and scrapers run
 * without one, and none reveals case data.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "core/metrics.h"
#include "http/problem.h"
#include "plugin/registry.h"

void tb__api_healthz(struct tb_api *api, struct tb_http_exchange *ex) {
  (void)api;
  static const char body[] = "{\"status\":\"ok\"}";
  tb_http_respond(ex, 200, "application/json", body, sizeof body - 1, NULL);
}

struct ready_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
};

/* "ok (N partners)" when every configured partner has an initialised
 * adapter instance; otherwise names the first partner that has none. */
static int check_adapters(const struct tb_api *api, char *out, size_t size) {
  const struct tb_config *cfg = api->cfg;
  for (size_t i = 0; i < cfg->partner_count; i++) {
    const struct tb_plugin_partner *p =
        tb_plugin_registry_find_partner(api->plugins, cfg->partners[i].name);
    if (p == NULL || !p->ready) {
      snprintf(out, size, "partner \"%s\": adapter \"%s\" is not initialised",
               cfg->partners[i].name, cfg->partners[i].adapter);
      return 0;
    }
  }
  snprintf(out, size, "ok (%zu partner%s)", cfg->partner_count,
           cfg->partner_count == 1 ? "" : "s");
  return 1;
}

/* "ok (N keys)" when every configured key is loaded and no certificate
 * configured with one has expired; otherwise names the key. */
static int check_keys(const struct tb_api *api, char *out, size_t size) {
  const struct tb_config *cfg = api->cfg;
  size_t loaded = api->keys ? api->keys->count : 0;
  if (loaded != cfg->key_count) {
    snprintf(out, size, "%zu of %zu configured keys are loaded", loaded, cfg->key_count);
    return 0;
  }
  const struct tb_plugin_key *k = tb_plugin_keys_expired(api->keys, (int64_t)time(NULL));
  if (k != NULL) {
    time_t t = (time_t)k->not_after;
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&t, &tm) != NULL) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(out, size, "key \"%s\": certificate expired at %s", k->name, when);
    return 0;
  }
  snprintf(out, size, "ok (%zu key%s)", cfg->key_count, cfg->key_count == 1 ? "" : "s");
  return 1;
}

static void on_ping(int rc, const char *errmsg, void *ud) {
  struct ready_ctx *ctx = ud;
  char adapters[320], keys[320];
  int ready = rc == 0;
  ready &= check_adapters(ctx->api, adapters, sizeof adapters);
  ready &= check_keys(ctx->api, keys, sizeof keys);
  json_t *checks = json_object();
  json_object_set_new(checks, "store", json_string(rc == 0 ? "ok" : errmsg ? errmsg : "failed"));
  json_object_set_new(checks, "adapters", json_string(adapters));
  json_object_set_new(checks, "keys", json_string(keys));
  json_t *o = json_pack("{s:s, s:o}", "status", ready ? "ready" : "not-ready", "checks", checks);
  tb__api_respond_json(ctx->ex, ready ? 200 : 503, o, ready ? NULL : "Retry-After: 5\r\n");
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
  ctx->api = api;
  ctx->ex = ex;
  if (tb_store_ping(api->store, on_ping, ctx) != 0) {
    ctx->ex = NULL;
    free(ctx);
    static const char body[] = "{\"status\":\"not-ready\",\"checks\":{\"store\":\"closed\"}}";
    tb_http_respond(ex, 503, "application/json", body, sizeof body - 1, NULL);
  }
}

struct metrics_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
};

static void metrics_render_and_respond(struct tb_http_exchange *ex) {
  size_t len = 0;
  char *text = tb_metrics_render(&len);
  if (text == NULL) {
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
    return;
  }
  tb_http_respond_owned(ex, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
}

/* Queue gauges are read from the store at scrape time (the counts are kept
 * by triggers, so this is a few index probes), then everything renders. */
static void on_queue_stats(int rc, const struct tb_store_queue_stat *stats, size_t n,
                           const char *errmsg, void *ud) {
  struct metrics_ctx *ctx = ud;
  struct tb_api *api = ctx->api;
  (void)errmsg;
  if (rc == 0) {
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    /* Partners that never had a message still get their zeros. */
    for (size_t i = 0; i < api->cfg->partner_count; i++) {
      const char *p = api->cfg->partners[i].name;
      tb_metric_set(api->metrics.queue_messages, p, "queued", 0);
      tb_metric_set(api->metrics.queue_messages, p, "sending", 0);
      tb_metric_set(api->metrics.queue_messages, p, "failed", 0);
      tb_metric_set(api->metrics.queue_oldest_age, p, NULL, 0);
    }
    for (size_t i = 0; i < n; i++) {
      tb_metric_set(api->metrics.queue_messages, stats[i].partner, "queued",
                    (double)stats[i].queued);
      tb_metric_set(api->metrics.queue_messages, stats[i].partner, "sending",
                    (double)stats[i].sending);
      tb_metric_set(api->metrics.queue_messages, stats[i].partner, "failed",
                    (double)stats[i].failed);
      double age = stats[i].oldest_queued_ms > 0
                       ? (double)(now_ms - stats[i].oldest_queued_ms) / 1000.0
                       : 0.0;
      tb_metric_set(api->metrics.queue_oldest_age, stats[i].partner, NULL, age > 0 ? age : 0);
    }
  }
  metrics_render_and_respond(ctx->ex);
  free(ctx);
}

void tb__api_metrics(struct tb_api *api, struct tb_http_exchange *ex) {
  tb_metric_set(api->metrics.store_pending, NULL, NULL, (double)tb_store_pending(api->store));
  if (api->server)
    tb_metric_set(api->metrics.http_connections, "local_api", NULL,
                  (double)tb_http_server_connections(api->server));
  if (api->keys) {
    int64_t now_s = (int64_t)time(NULL);
    for (size_t i = 0; i < api->keys->count; i++)
      if (api->keys->keys[i].not_after > 0)
        tb_metric_set(api->metrics.cert_expiry, api->keys->keys[i].name, NULL,
                      (double)(api->keys->keys[i].not_after - now_s));
  }
  struct metrics_ctx *ctx = malloc(sizeof *ctx);
  if (ctx != NULL) {
    ctx->api = api;
    ctx->ex = ex;
    if (tb_store_queue_stats(api->store, on_queue_stats, ctx) == 0) return;
    free(ctx);
  }
  /* No store (closing) or no memory: the rest of the metrics still render. */
  metrics_render_and_respond(ex);
}
