/*
 * api/api.h — the local API (hall software → gateway), SPEC §4.
 *
 * tb_api owns nothing it did not create: the loop, the config and the store
 * are the caller's and must outlive it. tb_api_handle() is the HTTP server's
 * handler: it authenticates, routes and answers every request of the local
 * listener. Everything runs on the loop thread.
 */
#ifndef TB_API_API_H
#define TB_API_API_H

#include <stdint.h>
#include <uv.h>

#include "api/ratelimit.h"
#include "core/config.h"
#include "http/server.h"
#include "store/store.h"

struct tb_metric;
struct tb_delivery;
struct tb_plugin_keys;
struct tb_plugin_registry;
struct tb_audit;

struct tb_api_metrics {
  struct tb_metric *http_requests;      /* tbgw_http_requests_total{route,status} */
  struct tb_metric *http_duration;      /* tbgw_http_request_duration_seconds{route} */
  struct tb_metric *cases_accepted;     /* tbgw_cases_accepted_total{partner} */
  struct tb_metric *cases_refused;      /* tbgw_cases_refused_total{reason} */
  struct tb_metric *store_commit;       /* tbgw_store_commit_duration_seconds */
  struct tb_metric *store_batch;        /* tbgw_store_commit_batch_ops */
  struct tb_metric *store_pending;      /* tbgw_store_pending_ops */
  struct tb_metric *http_connections;   /* tbgw_http_connections{listener} */
  struct tb_metric *build_info;         /* tbgw_build_info{version} */
  struct tb_metric *queue_messages;     /* tbgw_queue_messages{partner,state} */
  struct tb_metric *queue_oldest_age;   /* tbgw_queue_oldest_age_seconds{partner} */
  struct tb_metric *cert_expiry;        /* tbgw_certificate_expiry_seconds{key} */
};

struct tb_api_waiter; /* a long-poll on the event feed */

struct tb_api {
  uv_loop_t *loop;
  const struct tb_config *cfg;
  struct tb_store *store;
  struct tb_http_server *server;        /* set by the caller after start, for metrics */
  const struct tb_plugin_keys *keys;    /* set by the caller, for /readyz; NULL: none loaded */
  const struct tb_plugin_registry *plugins; /* set by the caller, for /readyz; NULL: none */
  struct tb_api_metrics metrics;
  struct tb_delivery *delivery;         /* set by the caller after start, for kicks; NULL: none */
  struct tb_audit *audit;               /* set by the caller after init; NULL: no audit trail */
  struct tb_api_waiter *waiters;        /* doubly linked list */
  int shutting_down;
  struct tb_ratelimit ratelimit;        /* local_api.rate_limit, per client / peer IP */
};

/* Registers metric families and the store's commit hook. */
int tb_api_init(struct tb_api *api, uv_loop_t *loop, const struct tb_config *cfg,
                struct tb_store *store, char *err);

/* Answers every pending long-poll now (empty result) so a graceful server
 * close is not held up by them, and refuses new long waits. */
void tb_api_shutdown(struct tb_api *api);

/* The local listener's request handler and observer (ud = struct tb_api *). */
void tb_api_handle(struct tb_http_exchange *ex, const struct tb_http_request *req, void *ud);
void tb_api_observe(const char *route, int status, uint64_t duration_ns, void *ud);

/* ---- internal to api/, shared between its files ---------------------- */

void tb__api_cases_post(struct tb_api *api, struct tb_http_exchange *ex,
                        const struct tb_http_request *req);
void tb__api_cases_get(struct tb_api *api, struct tb_http_exchange *ex, const char *case_id);
void tb__api_events_get(struct tb_api *api, struct tb_http_exchange *ex,
                        const struct tb_http_request *req);
void tb__api_events_on_commit(struct tb_api *api, int64_t last_seq);
void tb__api_inbound_get(struct tb_api *api, struct tb_http_exchange *ex, const char *case_id);
void tb__api_inbound_status(struct tb_api *api, struct tb_http_exchange *ex,
                            const struct tb_http_request *req, const char *case_id);
void tb__api_healthz(struct tb_api *api, struct tb_http_exchange *ex);
void tb__api_readyz(struct tb_api *api, struct tb_http_exchange *ex);
void tb__api_metrics(struct tb_api *api, struct tb_http_exchange *ex);

/* New outbound work for partner was committed: wake the delivery engine
 * (no-op without one). */
void tb__api_kick(struct tb_api *api, const char *partner);

void tb__api_cases_withdraw(struct tb_api *api, struct tb_http_exchange *ex,
                            const struct tb_http_request *req, const char *case_id);
void tb__api_cases_supplement(struct tb_api *api, struct tb_http_exchange *ex,
                              const struct tb_http_request *req, const char *case_id);
void tb__api_cases_evidence(struct tb_api *api, struct tb_http_exchange *ex, const char *case_id);
void tb__api_admin_dead_letters(struct tb_api *api, struct tb_http_exchange *ex,
                                const struct tb_http_request *req);
void tb__api_admin_replay(struct tb_api *api, struct tb_http_exchange *ex,
                          const struct tb_http_request *req);

/* Constant-time check of "Authorization: Bearer <token>" against the
 * configured tokens; returns the client name or NULL. */
const char *tb__api_authenticate(const struct tb_api *api, const struct tb_http_request *req);

/* Depth of the deepest [ / { nesting in a JSON text (strings and their
 * escapes skipped), stopping early once it exceeds limit: returns a value
 * > limit then. Malformed text is not diagnosed here (the parser does). */
unsigned tb__api_json_depth(const char *text, size_t len, unsigned limit);

/* True for "application/json" with or without parameters (charset=...). */
int tb__api_is_json(const char *content_type);

/* 503 for a store that is closing (TB_ECLOSED: shutting-down, Retry-After 5)
 * or failing (store-unavailable, Retry-After 1): nothing was kept, retry. */
void tb__api_respond_unavailable(struct tb_http_exchange *ex, int rc);

/* Sends a JSON value (borrowed) as the answer. */
void tb__api_respond_json(struct tb_http_exchange *ex, int status, const void *json_value,
                          const char *extra_headers);

#endif
