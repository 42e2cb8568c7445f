/* SM3 and SHA-256, one-shot, raw or lowercase hex. */
#include "crypto/crypto.h"

#include <openssl/err.h>
#include <openssl/evp.h>

#include "crypto/crypto_internal.h"

static int digest(const EVP_MD *md, const char *name, const void *data, size_t len,
                  unsigned char out[TB_DIGEST_LEN], char *err) {
  unsigned int n = 0;
  if (data == NULL && len > 0) return tb_errf(err, TB_EINVAL, "%s: no input", name);
  if (EVP_Digest(data ? data : "", len, out, &n, md, NULL) != 1 || n != TB_DIGEST_LEN)
    return tb__ossl_err(err, TB_ECRYPTO, name);
  return 0;
}

int tb_crypto_sm3(const void *data, size_t len, unsigned char out[TB_DIGEST_LEN],
                  char *err) {
  return digest(EVP_sm3(), "sm3", data, len, out, err);
}

int tb_crypto_sha256(const void *data, size_t len, unsigned char out[TB_DIGEST_LEN],
                     char *err) {
  return digest(EVP_sha256(), "sha256", data, len, out, err);
}

int tb_crypto_sm3_hex(const void *data, size_t len, char out[TB_DIGEST_HEX_LEN],
                      char *err) {
  unsigned char md[TB_DIGEST_LEN];
  int rc = tb_crypto_sm3(data, len, md, err);
  if (rc == 0) tb_crypto_hex(md, sizeof md, out);
  return rc;
}

int tb_crypto_sha256_hex(const void *data, size_t len, char out[TB_DIGEST_HEX_LEN],
                         char *err) {
  unsigned char md[TB_DIGEST_LEN];
  int rc = tb_crypto_sha256(data, len, md, err);
  if (rc == 0) tb_crypto_hex(md, sizeof md, out);
  return rc;
}
