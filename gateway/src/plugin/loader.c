/* Adapter loading, ABI checks and instance lifecycle (see loader.h). */
#include "plugin/loader.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 32) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return 0;
  }
  return 1;
}

static int find_file(const char *dir, const char *name, char *path, size_t size) {
  static const char *const prefixes[] = {"", "lib"};
  struct stat st;
  for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
    snprintf(path, size, "%s/%s%s.so", dir, prefixes[i], name);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return 1;
  }
  snprintf(path, size, "%s/%s.so", dir, name);
  return 0;
}

int tb_adapter_lib_open(const char *dir, const char *name, struct tb_adapter_lib *lib, char *err) {
  memset(lib, 0, sizeof *lib);
  if (!name_ok(name))
    return tb_errf(err, TB_EINVAL, "adapter \"%s\": not a valid adapter name ([a-z0-9_-]{1,32})",
                   name);
  if (dir == NULL)
    return tb_errf(err, TB_ECONFIG,
                   "adapter \"%s\": no adapters.dir configured to load it from", name);
  snprintf(lib->name, sizeof lib->name, "%s", name);
  if (!find_file(dir, name, lib->path, sizeof lib->path))
    return tb_errf(err, TB_EIO, "adapter \"%s\": %s not found (is adapters.dir right? is it built?)",
                   name, lib->path);
  dlerror();
  lib->handle = dlopen(lib->path, RTLD_NOW | RTLD_LOCAL);
  if (lib->handle == NULL) {
    const char *why = dlerror();
    return tb_errf(err, TB_EIO, "adapter \"%s\": cannot load %s: %s", name, lib->path,
                   why ? why : "unknown dlopen error");
  }
  /* POSIX guarantees a function pointer round-trips through dlsym's void *. */
  void *sym = dlsym(lib->handle, TB_ADAPTER_ENTRY_SYMBOL);
  int rc = 0;
  if (sym == NULL) {
    rc = tb_errf(err, TB_EABI, "adapter \"%s\": %s does not export %s()", name, lib->path,
                 TB_ADAPTER_ENTRY_SYMBOL);
  } else {
    tb_adapter_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry);
    const struct tb_adapter *ops = entry();
    if (ops == NULL) {
      rc = tb_errf(err, TB_EABI, "adapter \"%s\": %s() returned NULL", name,
                   TB_ADAPTER_ENTRY_SYMBOL);
    } else if (ops->abi_major != TB_ADAPTER_ABI_MAJOR) {
      rc = tb_errf(err, TB_EABI,
                   "adapter \"%s\": built for ABI %u.%u, this gateway has ABI %u.%u (major "
                   "versions must match: rebuild the adapter against this gateway's headers)",
                   name, ops->abi_major, ops->abi_minor, TB_ADAPTER_ABI_MAJOR,
                   TB_ADAPTER_ABI_MINOR);
    } else if (ops->abi_minor > TB_ADAPTER_ABI_MINOR) {
      rc = tb_errf(err, TB_EABI,
                   "adapter \"%s\": needs ABI %u.%u but this gateway has only %u.%u (upgrade "
                   "the gateway or use an older adapter)",
                   name, ops->abi_major, ops->abi_minor, TB_ADAPTER_ABI_MAJOR,
                   TB_ADAPTER_ABI_MINOR);
    } else if (ops->name == NULL || strcmp(ops->name, name) != 0) {
      rc = tb_errf(err, TB_EABI, "adapter \"%s\": %s calls itself \"%s\"", name, lib->path,
                   ops->name ? ops->name : "(null)");
    } else {
      const char *missing = !ops->init       ? "init"
                            : !ops->fini     ? "fini"
                            : !ops->routes   ? "routes"
                            : !ops->encode   ? "encode"
                            : !ops->classify ? "classify"
                            : !ops->decode   ? "decode"
                            : !ops->answer   ? "answer"
                            : !ops->release  ? "release"
                                             : NULL;
      if (missing)
        rc = tb_errf(err, TB_EABI, "adapter \"%s\": operation %s is missing (NULL)", name,
                     missing);
      else
        lib->ops = ops;
    }
  }
  if (rc != 0) {
    dlclose(lib->handle);
    lib->handle = NULL;
  }
  return rc;
}

void tb_adapter_lib_close(struct tb_adapter_lib *lib) {
  if (lib->handle) dlclose(lib->handle);
  lib->handle = NULL;
  lib->ops = NULL;
}

int tb_adapter_instance_init(struct tb_adapter_instance *inst, const struct tb_adapter_lib *lib,
                             const struct tb_host *host, const char *settings_json,
                             size_t settings_len, char *err) {
  memset(inst, 0, sizeof *inst);
  char why[TB_ERRMSG_MAX] = "";
  int rc = lib->ops->init(host, settings_json, settings_len, &inst->state, why);
  if (rc != 0)
    return tb_errf(err, rc < 0 ? rc : TB_EINTERNAL, "adapter \"%s\" refused partner \"%s\": %s",
                   lib->name, host->partner, why[0] ? why : tb_strerror(rc));
  inst->lib = lib;
  inst->host = host;
  inst->routes = lib->ops->routes(inst->state, &inst->route_count);
  return 0;
}

void tb_adapter_instance_fini(struct tb_adapter_instance *inst) {
  if (inst->lib && inst->lib->ops) inst->lib->ops->fini(inst->state);
  inst->state = NULL;
  inst->lib = NULL;
}
