/*
 * plugin/host.h — the host services table handed to adapters (tbgw/adapter.h).
 *
 * One struct tb_plugin_host per partner: it binds the services to that
 * partner's name (for logs) and to the gateway's keystore (for named keys).
 * The keystore and the strings are borrowed and must outlive the adapter
 * instance that received the table.
 */
#ifndef TB_PLUGIN_HOST_H
#define TB_PLUGIN_HOST_H

#include "crypto/keystore.h"
#include "tbgw/adapter.h"

struct tb_plugin_host {
  struct tb_host table;             /* what the adapter sees; table.ctx points here */
  const struct tb_keystore *keys;   /* borrowed */
  char partner[64];
  char node_region[8];
};

/* Fills h for one partner. Never fails. */
void tb_plugin_host_init(struct tb_plugin_host *h, const struct tb_keystore *keys,
                         const char *partner, const char *node_region);

#endif
