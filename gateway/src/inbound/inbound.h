/*
 * inbound/inbound.h — the partner-facing listener (SPEC §5, §10).
 *
 * A second HTTP server ("partner_api", HTTPS only, client certificates
 * required) serves /partners/{partner}/<route> for every route the partner's
 * adapter declares. For each request: the client certificate must chain to
 * THAT partner's tls.client_ca (403 otherwise); the adapter decodes it on
 * the CPU worker pool (signature checks, decryption); on the loop the host
 * applies the replay window (partners[].replay_window_s) and records the
 * message durably with the message-id / nonce store (store/store.h,
 * tb_store_inbound_record); only after that commit does the adapter build
 * the answer (on the worker pool: it signs), which is sent exactly as the
 * adapter made it. docs/inbound.md has the whole story.
 *
 * Lifetimes: the loop, configuration, store, plugin registry and the worker
 * pool (when one is passed) are borrowed and must outlive the listener, i.e.
 * stay open until tb_inbound_close's on_closed has run. Loop thread only.
 */
#ifndef TB_INBOUND_INBOUND_H
#define TB_INBOUND_INBOUND_H

#include <stddef.h>
#include <uv.h>

#include "core/config.h"
#include "core/workers.h"
#include "plugin/registry.h"
#include "store/store.h"

struct tb_audit;

struct tb_inbound_options {
  uv_loop_t *loop;
  const struct tb_config *cfg;               /* partner_api_set must be 1 */
  struct tb_store *store;
  const struct tb_plugin_registry *plugins;  /* every partner's adapter instance */
  /* CPU pool for decode and answer; NULL: the listener starts its own
   * (one thread per CPU, at most 8) and closes it after the server. */
  struct tb_workers *workers;
  /* Borrowed, loop thread; NULL: no audit trail. Gets inbound.accepted /
   * inbound.refused (with the reason) for every answered request. */
  struct tb_audit *audit;
};

struct tb_inbound;

/*
 * Builds one X509_STORE per partner from its tls.client_ca, registers the
 * tbgw_inbound_* metrics (once per process) and starts the HTTPS listener
 * on partner_api.listen with partner_api.tls, every partner's client_ca
 * trusted for the handshake. Errors: TB_ECONFIG (no partner_api section, no
 * partner with tls.client_ca), the file errors of tb_http_tls_ca_store_new,
 * the listener's errors of tb_http_server_start (each naming the file or
 * address), TB_ENOMEM. *out is NULL on failure and nothing is left open.
 */
int tb_inbound_start(const struct tb_inbound_options *opt, struct tb_inbound **out, char *err);

/* The bound port (after partner_api.listen with port 0). */
int tb_inbound_port(const struct tb_inbound *ib);

/* Open connections of the partner listener (metrics). */
size_t tb_inbound_connections(const struct tb_inbound *ib);

/*
 * Graceful close: stops accepting; requests already being handled finish
 * (decode, store, answer) and are answered; then the server, the worker
 * pool it started itself and the per-partner CA stores are freed and
 * on_closed (may be NULL) runs on the loop thread. The store must stay open
 * until then.
 */
void tb_inbound_close(struct tb_inbound *ib, void (*on_closed)(void *ud), void *ud);

#endif
