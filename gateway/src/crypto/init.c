/*
 * Process-wide set-up of the XML stack used by XML-DSig: libxml2's parser
 * globals, xmlsec and its OpenSSL backend. OpenSSL 3 itself initialises on
 * first use and needs nothing here.
 *
 * Must run on the main thread before workers start: libxml2 and xmlsec
 * initialise global tables that are then only read. Deliberately NOT done
 * here, though xmlsec's examples do it: xmlSubstituteEntitiesDefault(1) and
 * xmlLoadExtDtdDefaultValue — we never substitute entities or load DTDs.
 */
#include "crypto/crypto.h"

#include <libxml/parser.h>
#include <openssl/err.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/xmlsec.h>

#include "crypto/crypto_internal.h"

static int init_count; /* guarded by "main thread only" */

int tb__crypto_initialised(void) {
  return init_count > 0;
}

int tb_crypto_global_init(char *err) {
  if (init_count > 0) {
    init_count++;
    return 0;
  }
  xmlInitParser();
  if (xmlSecInit() < 0) return tb_errf(err, TB_ECRYPTO, "xmlsec: initialisation failed");
  if (xmlSecCheckVersion() != 1) {
    xmlSecShutdown();
    return tb_errf(err, TB_ECRYPTO,
                   "xmlsec: the loaded library is not compatible with the headers "
                   "the gateway was built with (%s)", XMLSEC_VERSION);
  }
  if (xmlSecCryptoAppInit(NULL) < 0) {
    xmlSecShutdown();
    return tb_errf(err, TB_ECRYPTO, "xmlsec: OpenSSL backend initialisation failed");
  }
  if (xmlSecCryptoInit() < 0) {
    xmlSecCryptoAppShutdown();
    xmlSecShutdown();
    return tb_errf(err, TB_ECRYPTO, "xmlsec: crypto initialisation failed");
  }
  /* Last: the init calls above install xmlsec's default (stderr) callback. */
  tb__xmlsec_errors_install();
  ERR_clear_error();
  init_count = 1;
  return 0;
}

void tb_crypto_global_fini(void) {
  if (init_count == 0 || --init_count > 0) return;
  xmlSecCryptoShutdown();
  xmlSecCryptoAppShutdown();
  xmlSecShutdown();
  /* Frees libxml2's globals: nothing may parse XML after this (exit only). */
  xmlCleanupParser();
}
