/*
 * delivery/engine.h — the reliable delivery engine: drains the store's
 * outbound queue to the partners (SPEC §7).
 *
 * Per partner the engine keeps a client pool (through a transport, below), a
 * circuit breaker (circuit.h), a back-off policy (backoff.h), the number of
 * messages in flight and one timer for the next time there is something to
 * do. A message goes: claim (store: 'sending', attempt counted) → encode (the
 * partner's adapter, on the worker pool) → POST (the transport, on the loop)
 * → classify (the adapter, on the worker pool: it verifies the answer's
 * signature) → finish (store: delivered, retry at a time, or dead letter).
 * The message id never changes between attempts, so a partner de-duplicates
 * our retries and a crash at any point is repaired by tb_store_outbox_recover
 * at the next start (docs/delivery.md has the whole argument).
 *
 * Before the first claim of a partner, and before the probe message that may
 * close an open circuit, the engine checks the partner is reachable with a
 * connection-only probe (TCP + TLS, no request): a partner that is down
 * costs no message any attempt, and its cases stay 'queued'.
 *
 * Threading: every function here is called on the loop thread; adapters'
 * encode/classify run on the worker pool (they are thread-safe after init).
 */
#ifndef TB_DELIVERY_ENGINE_H
#define TB_DELIVERY_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "client/client.h"
#include "core/config.h"
#include "core/workers.h"
#include "store/store.h"
#include "tbgw/adapter.h"

/* One partner the engine delivers to. Everything is borrowed and must
 * outlive the engine. */
struct tb_delivery_partner {
  const struct tb_config_partner *cfg; /* name, endpoint, tls, delivery settings */
  const struct tb_adapter *ops;        /* the adapter's operations ... */
  void *state;                         /* ... and its instance for this partner */
  const struct tb_host *host;          /* its free() releases what encode allocated */
};

/*
 * How the engine talks HTTPS. The real one (tb_delivery_transport_client)
 * is tb_client; tests put a scripted fake here. The semantics are those of
 * the tb_client functions of the same names (client/client.h): a call that
 * returns 0 runs its callback exactly once, later, on the loop thread; one
 * that fails never runs it. close cancels what is in flight (callbacks with
 * TB_CLIENT_ECANCELLED), then runs on_closed.
 */
struct tb_delivery_transport {
  void *ctx;
  int (*pool_add)(void *ctx, const struct tb_client_pool_config *pc, void **pool, char *err);
  int (*post)(void *pool, const char *path, const char *content_type, const char *headers,
              const void *body, size_t len, tb_client_done_fn cb, void *ud, char *err);
  int (*probe)(void *pool, tb_client_done_fn cb, void *ud, char *err);
  void (*stats)(const void *pool, struct tb_client_stats *out);
  void (*close)(void *ctx, void (*on_closed)(void *ud), void *ud);
};

struct tb_audit;

struct tb_delivery_options {
  uv_loop_t *loop;
  struct tb_store *store;                     /* borrowed; close it after the engine stopped */
  const char *node_region;                    /* ours: sender of STATUS_NOTIFY */
  const struct tb_delivery_partner *partners; /* copied (the pointers inside are borrowed) */
  size_t partner_count;
  /* NULL: the engine makes a tb_client and closes it when it stops. A given
   * transport is closed by the engine too (its close is called once). */
  const struct tb_delivery_transport *transport;
  struct tb_workers *workers; /* NULL: the engine starts (and closes) its own */
  size_t worker_threads;      /* own pool's threads; 0: 2 */
  int64_t poll_ms;            /* safety poll when idle (another process's dlq replay); 0: 1000 */
  int64_t fresh_retry_ms;     /* RETRY_FRESH delay (plus up to as much jitter); 0: 200 */
  int64_t stop_grace_ms;      /* how long stop waits for in-flight transfers; 0: 10000 */
  int64_t circuit_max_open_ms; /* cap of the doubling open period; 0: max(10 x open, 5 min) */
  uint64_t seed;              /* jitter PRNG seed; 0: from RAND_bytes */
  /* Borrowed, loop thread; NULL: no audit trail. Gets message.sent (request
   * handed to the transport) and ack.received (answer, its signature check
   * and the verdict, just before the store records the attempt). */
  struct tb_audit *audit;
};

struct tb_delivery;

/*
 * Starts the engine: registers its metrics, makes every partner's pool
 * (checking the TLS files now, so a bad one refuses the start), recovers
 * messages a crash left 'sending', then probes and claims for every partner.
 * Errors: TB_EINVAL, TB_ENOMEM, the transport's codes for a pool (TB_ECONFIG,
 * TB_ENOTFOUND, ...) with err naming the partner; *out is NULL then and
 * nothing is left running.
 */
int tb_delivery_start(const struct tb_delivery_options *opt, struct tb_delivery **out, char *err);

/* New work for partner (NULL: every partner), e.g. a case just committed:
 * claim soon (coalesced: several kicks in one loop turn make one claim).
 * Harmless while stopping and for an unknown partner; d may be NULL. */
void tb_delivery_kick(struct tb_delivery *d, const char *partner);

/*
 * Stops: no more claims; in-flight messages finish (their answers are
 * recorded) for up to stop_grace_ms, then the rest is cancelled and recorded
 * as retries due at once; then the transport and the engine's own workers
 * are closed and the engine is freed; on_stopped (may be NULL) runs last, on
 * the loop. The store must stay open until then. Call once.
 */
void tb_delivery_stop(struct tb_delivery *d, void (*on_stopped)(void *ud), void *ud);

/* Messages claimed and not yet finished (all partners). */
size_t tb_delivery_in_flight(const struct tb_delivery *d);

struct tb_plugin_registry;

/* The daemon's start: one engine partner per ready partner of reg (its
 * adapter instance and host table), the real transport, its own workers,
 * default timings; audit as in the options (may be NULL). Errors as
 * tb_delivery_start. */
int tb_delivery_start_registry(uv_loop_t *loop, struct tb_store *store,
                               const struct tb_config *cfg, const struct tb_plugin_registry *reg,
                               struct tb_audit *audit, struct tb_delivery **out, char *err);

/* The real transport over a new tb_client on loop. *out is freed by its
 * close. TB_ENOMEM / tb_client_new's codes. */
int tb_delivery_transport_client(uv_loop_t *loop, struct tb_delivery_transport **out, char *err);

#endif
