/*
 * plugin/loader.h — loading adapter shared objects and their instances.
 *
 * An adapter library is found by name in the configured directory as
 * "<name>.so" (or "lib<name>.so"), opened with dlopen(RTLD_NOW | RTLD_LOCAL)
 * so a missing symbol fails at load, not in the middle of a delivery, and so
 * two adapters cannot see each other's symbols. Before anything else the
 * loader checks the ABI version (major equal, adapter minor <= host minor),
 * then that the library's name matches and every operation is present. A
 * refused library is fully unloaded. Every refusal names the adapter, the
 * file and the reason.
 *
 * Loop thread only.
 */
#ifndef TB_PLUGIN_LOADER_H
#define TB_PLUGIN_LOADER_H

#include <stddef.h>

#include "tbgw/adapter.h"

struct tb_adapter_lib {
  char name[64];
  char path[4096];
  void *handle;                 /* dlopen handle */
  const struct tb_adapter *ops; /* the adapter's static description */
};

/* Opens and checks adapter `name` from `dir`. On failure returns TB_EIO
 * (not found / dlopen error), TB_EABI (version, name, missing operation) with
 * err saying which; lib is left closed. */
int tb_adapter_lib_open(const char *dir, const char *name, struct tb_adapter_lib *lib, char *err);
void tb_adapter_lib_close(struct tb_adapter_lib *lib);

/* One adapter instance serving one partner. */
struct tb_adapter_instance {
  const struct tb_adapter_lib *lib; /* borrowed; outlives the instance */
  const struct tb_host *host;       /* borrowed; outlives the instance */
  void *state;
  const struct tb_inbound_route *routes;
  size_t route_count;
};

/* Calls the adapter's init with the partner's settings JSON; err names the
 * adapter and repeats the adapter's own message. */
int tb_adapter_instance_init(struct tb_adapter_instance *inst, const struct tb_adapter_lib *lib,
                             const struct tb_host *host, const char *settings_json,
                             size_t settings_len, char *err);
void tb_adapter_instance_fini(struct tb_adapter_instance *inst);

#endif
