/*
 * core/config.h — the gateway's one JSON configuration file.
 *
 * tb_config_load() reads and checks the whole file at once and reports every
 * problem it finds, each naming the key path and what is wrong
 * (`local_api.listen: "127.0.0.1:99999" is not a valid port`), so an operator
 * fixes a file in one pass. Unknown keys are errors (a typo must not be
 * silently ignored). Relative paths in the file are resolved against the
 * directory of the config file. Every key is documented in
 * docs/configuration.md.
 *
 * The loaded struct owns all its strings; tb_config_free() releases them.
 */
#ifndef TB_CORE_CONFIG_H
#define TB_CORE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "case/validate.h"
#include "http/server.h"
#include "store/store.h"

struct tb_config_token {
  char *client;        /* name of the local client, for logs */
  char *token;         /* bearer token (>= 16 characters) */
};

/* One entry of the top-level "keys" object: a named key or CA for the
 * keystore (crypto/keystore.h). Paths are absolute (resolved against the
 * config file's directory); unset ones are NULL. */
struct tb_config_key {
  char *name;          /* ^[a-z0-9-]{1,64}$ */
  char *kind;          /* "rsa", "ec-p256", "ed25519", "sm2" or "ca" */
  char *private_key;   /* PEM private key (never for "ca") */
  char *public_key;    /* PEM SubjectPublicKeyInfo (never for "ca") */
  char *certificate;   /* PEM certificate of the key; for "ca" the trusted bundle */
  char *sm2_id;        /* kind "sm2" only: the signer ID, default TB_CONFIG_SM2_DEFAULT_ID */
};

#define TB_CONFIG_SM2_DEFAULT_ID "1234567812345678"

/* A partner's TLS material, owned by the gateway (not by the adapter). */
struct tb_config_partner_tls {
  char *ca;                 /* verifies the partner's server certificate; NULL: system CAs */
  char *client_certificate; /* our client certificate towards the partner (mTLS) ... */
  char *client_key;         /* ... and its private key; both or neither */
  char *client_ca;          /* verifies the partner's client certificate on our partner listener */
};

/* How the delivery worker treats one partner (SPEC §7). */
struct tb_config_delivery {
  uint32_t max_in_flight;       /* concurrent requests to the partner */
  uint64_t connect_timeout_ms;  /* TCP + TLS handshake */
  uint64_t timeout_ms;          /* a whole request, connect included */
  uint32_t max_attempts;        /* then the message is a dead letter */
  uint64_t backoff_initial_ms;  /* first retry delay (doubled each time, with jitter) */
  uint64_t backoff_max_ms;      /* cap of the retry delay */
  uint32_t circuit_failures;    /* consecutive failures that open the circuit */
  uint64_t circuit_open_ms;     /* how long it stays open before one trial request */
};

struct tb_config_partner {
  char *name;          /* [a-z0-9-]{1,32}, unique; used in paths and metrics */
  char *adapter;       /* adapter plugin name, e.g. "lu-xml" */
  char *endpoint;      /* http(s) base URL of the partner platform, trailing '/' removed */
  char **regions;      /* 6-digit division codes this partner serves */
  size_t region_count;
  struct tb_config_partner_tls tls;   /* partners[].tls */
  struct tb_config_delivery delivery; /* partners[].delivery (defaults when absent) */
  uint32_t replay_window_s;           /* partners[].replay_window_s: inbound timestamp tolerance */
  char *settings_json; /* the partner's whole object as JSON text, handed to its adapter's init */
};

struct tb_config {
  char *path;                       /* absolute path of the file loaded */
  char *node_region;                /* node.region: our own division code */
  char *node_name;                  /* node.name: free text for logs */

  char *local_api_host;             /* local_api.listen, split */
  int local_api_port;
  struct tb_http_limits local_api_limits;
  struct tb_config_token *tokens;   /* local_api.tokens */
  size_t token_count;
  uint32_t events_max_wait_s;       /* local_api.events_max_wait_s: cap for ?wait= */
  /* local_api.rate_limit: a token bucket per client (per peer IP when not
   * authenticated) for /v1/ paths. Either value 0: no rate limit. */
  uint32_t rate_limit_per_s;        /* local_api.rate_limit.requests_per_s (default 500) */
  uint32_t rate_limit_burst;        /* local_api.rate_limit.burst (default 1000) */

  struct tb_case_limits case_limits; /* cases.* (max_materials_bytes, max_materials, max_string_chars) */
  uint32_t cases_max_json_depth;     /* cases.max_json_depth: nesting of POST /v1/cases bodies */

  struct tb_store_options store;     /* store.* (store.path owned here) */
  char *store_path;

  int log_level;                     /* log.level */
  char *log_file;                    /* log.file: NULL or "-" for stderr */

  char *adapters_dir;                /* adapters.dir; NULL when not configured (only
                                        allowed without partners) */

  /* audit: the tamper-evident audit trail (audit/audit.h). audit_path is NULL
   * when the section is absent (no audit trail). */
  char *audit_path;                  /* audit.path, resolved */
  uint64_t audit_rotate_bytes;       /* audit.rotate_bytes; 0: never rotate */

  struct tb_config_key *keys;        /* keys.<name>, in file order */
  size_t key_count;

  /* partner_api: the partner-facing HTTPS listener (parsed and checked; not
   * served yet). partner_api_set is 0 when the section is absent. */
  int partner_api_set;
  char *partner_api_host;
  int partner_api_port;
  char *partner_api_tls_certificate;
  char *partner_api_tls_private_key;
  struct tb_http_limits partner_api_limits;

  struct tb_config_partner *partners;
  size_t partner_count;
};

/* Loads and checks path. On success returns 0 and fills *out. On failure
 * returns TB_ECONFIG and *problems is a malloc'd text (caller frees) with one
 * problem per line, each "key.path: what is wrong"; other codes for I/O or
 * memory. Every line ends with '\n'. TB_EIO (unreadable file) also sets
 * *problems ("cannot read PATH: strerror"); TB_ENOMEM leaves it NULL. On any
 * failure *out is left zeroed (tb_config_free() on it is harmless). */
int tb_config_load(const char *path, struct tb_config *out, char **problems);

/* Same, from text in memory (for tests); base_dir resolves relative paths
 * (NULL: the current directory). cfg->path stays NULL. */
int tb_config_load_text(const char *text, size_t len, const char *base_dir,
                        struct tb_config *out, char **problems);

/* Frees every string and array and zeroes *cfg; NULL and a second call are
 * harmless. */
void tb_config_free(struct tb_config *cfg);

/* The partner serving a target region, or NULL. */
const struct tb_config_partner *tb_config_route(const struct tb_config *cfg,
                                                const char *target_region);

/* The partner named name, or NULL. */
const struct tb_config_partner *tb_config_partner_find(const struct tb_config *cfg,
                                                       const char *name);

/* The key named name, or NULL. */
const struct tb_config_key *tb_config_key_find(const struct tb_config *cfg, const char *name);

/* Fills d with the documented delivery defaults. */
void tb_config_delivery_default(struct tb_config_delivery *d);

#endif
