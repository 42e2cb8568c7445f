/* tbgw version: our version and the versions of the libraries we run on, as
 * loaded at run time (what an operator needs for a bug report). */
#include <curl/curl.h>
#include <jansson.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <sqlite3.h>
#include <stdio.h>
#include <uv.h>

#include "cli/cli.h"

int tb_cli_version(int argc, char **argv) {
  if (tb_cli_wants_help(argc, argv)) {
    puts("usage: tbgw version\n\nPrints the gateway's version and its libraries' versions.");
    return 0;
  }
  printf("tbgw %s\n", TB_VERSION);
  printf("  libuv    %s\n", uv_version_string());
  printf("  llhttp   %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
  printf("  openssl  %s\n", OpenSSL_version(OPENSSL_VERSION));
  printf("  sqlite   %s\n", sqlite3_libversion());
  printf("  jansson  %s\n", jansson_version_str());
  printf("  libcurl  %s\n", curl_version_info(CURLVERSION_NOW)->version);
  return 0;
}
