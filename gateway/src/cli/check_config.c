/* tbgw check-config: the same complete check `serve` does at start, without
 * starting anything. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "core/config.h"
#include "tbgw/error.h"

int tb_cli_check_config(int argc, char **argv) {
  if (tb_cli_wants_help(argc, argv)) {
    puts("usage: tbgw check-config -c FILE\n\n"
         "Checks the configuration FILE completely and lists every problem found,\n"
         "one per line as 'key.path: what is wrong'. Exit status 0 if the file is\n"
         "valid, 1 if not.");
    return 0;
  }
  const char *path = tb_cli_config_arg(argc, argv);
  if (path == NULL) {
    fputs("tbgw check-config: missing -c FILE (see --help)\n", stderr);
    return 2;
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
  size_t regions = 0;
  for (size_t i = 0; i < cfg.partner_count; i++) regions += cfg.partners[i].region_count;
  printf("%s: ok (local API on %s:%d, %zu partner(s) serving %zu region(s), store %s)\n", path,
         cfg.local_api_host, cfg.local_api_port, cfg.partner_count, regions, cfg.store_path);
  tb_config_free(&cfg);
  return 0;
}
