/*
 * fuzz_config — the configuration loader on arbitrary text
 * (tb_config_load_text, base directory /nonexistent so relative key and
 * certificate paths never resolve to real files). Checks the contract of
 * config.h: 0 with a filled config, or an error with every problem line
 * ending in '\n' (TB_ECONFIG always has problems); tb_config_free is then
 * safe, twice.
 */
#include <string.h>

#include "core/config.h"
#include "fuzz.h"
#include "tbgw/error.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  tb_fuzz_quiet_logs();
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct tb_config cfg;
  char *problems = NULL;
  int rc = tb_config_load_text((const char *)data, size, "/nonexistent", &cfg, &problems);
  if (rc == TB_ECONFIG) TB_FUZZ_CHECK(problems != NULL && problems[0] != '\0');
  if (problems != NULL) {
    size_t n = strlen(problems);
    TB_FUZZ_CHECK(n == 0 || problems[n - 1] == '\n');
  }
  if (rc == 0) {
    /* Lookups on what was loaded must be safe for any name. */
    (void)tb_config_route(&cfg, "370683");
    (void)tb_config_partner_find(&cfg, "laizhou");
    (void)tb_config_key_find(&cfg, "gw-rsa");
  }
  free(problems);
  tb_config_free(&cfg);
  tb_config_free(&cfg);
  return 0;
}
