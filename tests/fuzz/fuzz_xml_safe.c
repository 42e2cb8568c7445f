/*
 * fuzz_xml_safe — tb_xml_parse_safe, the one entry for untrusted XML
 * (lu-xml messages and acknowledgements), with the default limits and with
 * tiny ones (256 bytes, depth 4) so the caps are reached. Checks: 0 gives a
 * document with a root element, anything else gives no document and one of
 * the documented codes (TB_EPARSE, TB_ELIMIT; TB_ENOMEM) with a message.
 * Entity expansion, DTD loading and network access would show up as time or
 * memory blow-ups (libFuzzer -timeout / -rss_limit_mb).
 */
#include <libxml/parser.h>
#include <string.h>

#include "crypto/crypto.h"
#include "crypto/xmldsig.h"
#include "fuzz.h"
#include "tbgw/error.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char err[TB_ERRMSG_MAX];
  tb_fuzz_quiet_logs();
  if (tb_crypto_global_init(err) != 0) {
    fprintf(stderr, "fuzz_xml_safe: %s\n", err);
    abort();
  }
  return 0;
}

static void parse(const uint8_t *data, size_t size, const struct tb_xml_limits *lim) {
  xmlDocPtr doc = NULL;
  char err[TB_ERRMSG_MAX] = "";
  int rc = tb_xml_parse_safe(data, size, lim, &doc, err);
  if (rc == 0) {
    TB_FUZZ_CHECK(doc != NULL);
    TB_FUZZ_CHECK(xmlDocGetRootElement(doc) != NULL);
    /* Nothing from a DOCTYPE may survive. */
    TB_FUZZ_CHECK(doc->intSubset == NULL && doc->extSubset == NULL);
    xmlFreeDoc(doc);
  } else {
    TB_FUZZ_CHECK(doc == NULL);
    TB_FUZZ_CHECK(rc == TB_EPARSE || rc == TB_ELIMIT || rc == TB_ENOMEM);
    TB_FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL && err[0] != '\0');
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct tb_xml_limits tiny = {.max_bytes = 256, .max_depth = 4};
  parse(data, size, NULL);
  parse(data, size, &tiny);
  return 0;
}
