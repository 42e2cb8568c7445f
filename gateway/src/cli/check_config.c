/* tbgw check-config: the same complete check `serve` does at start, without
 * starting anything: the file, then (unless --no-load) every key, the
 * partner TLS files and every adapter, loaded and initialised exactly as
 * `serve` would, then unloaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/config.h"
#include "crypto/crypto.h"
#include "plugin/registry.h"
#include "tbgw/error.h"

static void print_loaded(const struct tb_plugin_keys *keys, const struct tb_plugin_registry *reg) {
  int64_t now = (int64_t)time(NULL);
  for (size_t i = 0; i < keys->count; i++) {
    const struct tb_plugin_key *k = &keys->keys[i];
    printf("  key %s (%s): sha256 %s", k->name, k->kind, k->fingerprint);
    if (k->not_after) {
      time_t t = (time_t)k->not_after;
      struct tm tm;
      char until[32] = "?";
      if (gmtime_r(&t, &tm) != NULL) strftime(until, sizeof until, "%Y-%m-%dT%H:%M:%SZ", &tm);
      printf(", certificate %s until %s", k->not_after < now ? "EXPIRED" : "valid", until);
    }
    putchar('\n');
  }
  for (size_t i = 0; i < reg->lib_count; i++)
    printf("  adapter %s %s (ABI %u.%u) from %s\n", reg->libs[i].name,
           reg->libs[i].ops->version ? reg->libs[i].ops->version : "", reg->libs[i].ops->abi_major,
           reg->libs[i].ops->abi_minor, reg->libs[i].path);
  for (size_t i = 0; i < reg->partner_count; i++)
    printf("  partner %s: adapter %s initialised, %zu inbound route(s)\n",
           reg->partners[i].cfg->name, reg->partners[i].lib->name,
           reg->partners[i].inst.route_count);
}

static void print_summary(const char *path, const struct tb_config *cfg, int no_load) {
  size_t regions = 0;
  for (size_t i = 0; i < cfg->partner_count; i++) regions += cfg->partners[i].region_count;
  printf("%s: ok (local API on %s:%d, %zu partner(s) serving %zu region(s), %zu key(s), "
         "store %s%s)\n",
         path, cfg->local_api_host, cfg->local_api_port, cfg->partner_count, regions,
         cfg->key_count, cfg->store_path, no_load ? "; keys and adapters not loaded" : "");
}

/* Loads keys and adapters as serve does; 0 or 1 (message printed). */
static int load_all(const char *path, const struct tb_config *cfg) {
  char err[TB_ERRMSG_MAX] = "";
  struct tb_plugin_keys *keys = NULL;
  struct tb_plugin_registry *reg = NULL;
  int rc = tb_crypto_global_init(err);
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", path, err);
    return 1;
  }
  rc = tb_plugin_keys_load(cfg, &keys, err);
  if (rc == 0) rc = tb_plugin_registry_load(cfg, keys->store, &reg, err);
  if (rc != 0) {
    fprintf(stderr, "%s: %s\n", path, err);
  } else {
    print_summary(path, cfg, 0);
    print_loaded(keys, reg);
  }
  tb_plugin_registry_free(reg);
  tb_plugin_keys_free(keys);
  tb_crypto_global_fini();
  return rc != 0;
}

int tb_cli_check_config(int argc, char **argv) {
  if (tb_cli_wants_help(argc, argv)) {
    puts("usage: tbgw check-config -c FILE [--no-load]\n\n"
         "Checks the configuration FILE completely and lists every problem found,\n"
         "one per line as 'key.path: what is wrong'. Then, as `tbgw serve` does at\n"
         "start, loads every key, checks the partner TLS files and loads and\n"
         "initialises every partner's adapter, and reports the first failure (it\n"
         "names the key, adapter or partner and the reason).\n\n"
         "  --no-load   check the file only; load no key and no adapter\n\n"
         "Exit status 0 if everything is valid, 1 if not.");
    return 0;
  }
  const char *path = tb_cli_config_arg(argc, argv);
  if (path == NULL) {
    fputs("tbgw check-config: missing -c FILE (see --help)\n", stderr);
    return 2;
  }
  int no_load = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--no-load") == 0) {
      no_load = 1;
    } else if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
      i++;
    } else if (strncmp(argv[i], "--config=", 9) != 0) {
      fprintf(stderr, "tbgw check-config: unknown argument '%s' (see --help)\n", argv[i]);
      return 2;
    }
  }
  struct tb_config cfg;
  char *problems = NULL;
  int rc = tb_config_load(path, &cfg, &problems);
  if (rc != 0) {
    fprintf(stderr, "%s: configuration is not valid:\n%s%s", path,
            problems ? problems : tb_strerror(rc), problems ? "" : "\n");
    free(problems);
    return 1;
  }
  int failed = 0;
  if (no_load)
    print_summary(path, &cfg, 1);
  else
    failed = load_all(path, &cfg);
  tb_config_free(&cfg);
  return failed;
}
