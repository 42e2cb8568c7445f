/*
 * plugin/registry.h — everything the partner side needs at run time, built
 * from the configuration at start (and, later, on reload): the named keys
 * (tb_plugin_keys) and, per partner, its host services table and its
 * initialised adapter instance (tb_plugin_registry).
 *
 * Building is all or nothing: the first failure unwinds what was built
 * (instances finished, libraries unloaded, keys freed) and returns one
 * message that names the key, adapter or partner and the reason, ready to
 * print ("adapter \"lu-xml\": built for ABI 2.0, ...",
 * "key \"gw-rsa\": private key file ... run: chmod 600 ...").
 *
 * Lifetimes: the registry borrows the configuration (partner objects) and
 * the keystore; both must outlive it. Reload (a later step) builds a new
 * pair and swaps it, freeing the old one when nothing uses it any more.
 * Build and free on the loop thread; after that the registry is read-only and
 * adapter operations may run on any thread (tbgw/adapter.h).
 */
#ifndef TB_PLUGIN_REGISTRY_H
#define TB_PLUGIN_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "crypto/keystore.h"
#include "plugin/host.h"
#include "plugin/loader.h"

/* What may be shown about one configured key or CA (logs, readiness,
 * check-config). */
struct tb_plugin_key {
  const char *name;      /* borrowed from the configuration */
  const char *kind;      /* "rsa", "ec-p256", "ed25519", "sm2" or "ca" */
  char fingerprint[65];  /* lowercase hex SHA-256: of the public key (SPKI DER) for keys, of
                            the first certificate (DER) for a CA */
  int64_t not_after;     /* certificate expiry, Unix seconds (for a CA bundle the earliest);
                            0 when no certificate is configured */
  char subject[256];     /* certificate subject (RFC 2253), "" without one */
};

struct tb_plugin_keys {
  struct tb_keystore *store; /* owned */
  struct tb_plugin_key *keys;
  size_t count;
};

/* Loads every entry of cfg->keys into a new keystore. TB_ENOMEM, or the
 * keystore's code (TB_ENOTFOUND, TB_EIO, TB_ECONFIG — e.g. a private key
 * readable by group/others —, TB_EPARSE, TB_EEXISTS) with its message, which
 * names the key. *out is NULL on failure. */
int tb_plugin_keys_load(const struct tb_config *cfg, struct tb_plugin_keys **out, char *err);
void tb_plugin_keys_free(struct tb_plugin_keys *keys); /* NULL is fine */

/* The first key whose certificate has expired at now_s (Unix seconds), or
 * NULL. */
const struct tb_plugin_key *tb_plugin_keys_expired(const struct tb_plugin_keys *keys,
                                                   int64_t now_s);

/* One partner: its host table (bound to its name and the keystore) and its
 * adapter instance. Never moves once built (the table's ctx points at it). */
struct tb_plugin_partner {
  const struct tb_config_partner *cfg; /* borrowed */
  const struct tb_adapter_lib *lib;    /* owned by the registry */
  struct tb_plugin_host host;
  struct tb_adapter_instance inst;
  int ready;                           /* 1 once the adapter's init succeeded */
};

struct tb_plugin_registry {
  const struct tb_keystore *keys;    /* borrowed */
  struct tb_adapter_lib *libs;       /* one per distinct adapter name, in order of first use */
  size_t lib_count;
  struct tb_plugin_partner *partners; /* in configuration order */
  size_t partner_count;
};

/*
 * Checks the partner-side TLS files (partner_api.tls and every partner's
 * tls: readable, PEM of the right kind, private keys 0600 or stricter, each
 * certificate matching its key), opens every adapter the partners name from
 * cfg->adapters_dir, and initialises one instance per partner with the
 * partner's settings_json. Errors: TB_EIO/TB_EABI from the loader, the
 * adapter's own code from init, TB_ECONFIG/TB_ENOTFOUND/TB_EPARSE for TLS
 * files, TB_ENOMEM. *out is NULL on failure and nothing stays loaded.
 */
int tb_plugin_registry_load(const struct tb_config *cfg, const struct tb_keystore *keys,
                            struct tb_plugin_registry **out, char *err);

/* Finishes every instance, then unloads every library. NULL is fine. */
void tb_plugin_registry_free(struct tb_plugin_registry *reg);

/* The partner named name, or NULL. */
struct tb_plugin_partner *tb_plugin_registry_find_partner(const struct tb_plugin_registry *reg,
                                                          const char *name);

/* Number of partners whose adapter instance is initialised. */
size_t tb_plugin_registry_ready_count(const struct tb_plugin_registry *reg);

#endif
