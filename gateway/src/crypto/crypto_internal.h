/*
 * crypto/crypto_internal.h — what the crypto files share and nothing outside
 * gateway/src/crypto/ may use: the keystore's entries and OpenSSL error
 * translation.
 */
#ifndef TB_CRYPTO_INTERNAL_H
#define TB_CRYPTO_INTERNAL_H

#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "crypto/keystore.h"

/* One loaded key: immutable once added to a keystore. */
struct tb_key {
  char *name;
  enum tb_key_kind kind;
  EVP_PKEY *pkey;   /* private (with public) when has_private, else public */
  int has_private;
  X509 *cert;       /* NULL without a certificate */
  char *sm2_id;     /* SM2 only; never NULL for SM2 */
  struct tb_key_info info;
};

struct tb_ca {
  char *name;
  STACK_OF(X509) *certs; /* at least one */
  /* Built once at load: exactly these certificates, no default paths, no
   * lookups (nothing is ever read from the system). Read-only afterwards,
   * so any thread may pass it to X509_STORE_CTX_init/X509_verify_cert. */
  X509_STORE *store;
};

/* Lookups; TB_ENOTFOUND with a message naming what is missing. */
int tb__keystore_find_key(const struct tb_keystore *ks, const char *name,
                          const struct tb_key **out, char *err);
int tb__keystore_find_ca(const struct tb_keystore *ks, const char *name,
                         const struct tb_ca **out, char *err);

/* Drains this thread's OpenSSL error queue into err as "what: detail" and
 * returns code. Always leaves the queue empty. */
int tb__ossl_err(char *err, int code, const char *what);

/* Subject/issuer as RFC 2253 UTF-8 text, truncated to cap. */
void tb__x509_name_text(const X509_NAME *name, char *out, size_t cap);

/* Routes xmlsec's process-wide error callback into per-thread capture
 * (xmldsig.c); called by tb_crypto_global_init(). */
void tb__xmlsec_errors_install(void);

/* 1 once tb_crypto_global_init() succeeded. */
int tb__crypto_initialised(void);

#endif
