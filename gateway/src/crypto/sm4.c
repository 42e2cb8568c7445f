/*
 * SM4-CBC with PKCS#7 padding (the yue-json envelope's body cipher) and the
 * random source for keys, IVs and nonces.
 */
#include "crypto/crypto.h"

#include <limits.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "crypto/crypto_internal.h"

#define SM4_BLOCK 16
#define CHUNK (1 << 30) /* EVP_*Update take int lengths */

static int sm4_cbc(int enc, const unsigned char *key, const unsigned char *iv,
                   const unsigned char *in, size_t len, unsigned char **out,
                   size_t *out_len, char *err) {
  *out = NULL;
  *out_len = 0;
  if (key == NULL || iv == NULL || (len > 0 && in == NULL))
    return tb_errf(err, TB_EINVAL, "sm4: missing key, IV or input");
  if (!enc && (len == 0 || len % SM4_BLOCK != 0))
    return tb_errf(err, TB_ECRYPTO,
                   "sm4: ciphertext of %zu bytes is not a positive multiple of 16", len);
  if (len > SIZE_MAX - SM4_BLOCK) return tb_errf(err, TB_ELIMIT, "sm4: input too large");
  size_t cap = len + SM4_BLOCK;
  unsigned char *buf = malloc(cap);
  if (buf == NULL) return tb_errf(err, TB_ENOMEM, "sm4: out of memory");
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int code = TB_ECRYPTO;
  const char *what = enc ? "sm4: encryption failed" : "sm4: cannot decrypt";
  if (c == NULL || EVP_CipherInit_ex2(c, EVP_sm4_cbc(), key, iv, enc, NULL) != 1 ||
      EVP_CIPHER_CTX_set_padding(c, 1) != 1)
    goto fail;
  size_t n = 0;
  for (size_t off = 0; off < len;) {
    int step = len - off > CHUNK ? CHUNK : (int)(len - off), got = 0;
    if (EVP_CipherUpdate(c, buf + n, &got, in + off, step) != 1) goto fail;
    n += (size_t)got;
    off += (size_t)step;
  }
  int last = 0;
  if (EVP_CipherFinal_ex(c, buf + n, &last) != 1) {
    /* Decrypt: the last block's padding is not valid PKCS#7. */
    if (!enc) what = "sm4: bad padding (wrong key or IV, or damaged ciphertext)";
    goto fail;
  }
  n += (size_t)last;
  EVP_CIPHER_CTX_free(c);
  ERR_clear_error();
  *out = buf;
  *out_len = n;
  return 0;
fail:
  EVP_CIPHER_CTX_free(c);
  OPENSSL_clear_free(buf, cap);
  return tb__ossl_err(err, code, what);
}

int tb_crypto_sm4_cbc_encrypt(const unsigned char key[TB_SM4_KEY_LEN],
                              const unsigned char iv[TB_SM4_IV_LEN], const void *pt,
                              size_t len, unsigned char **out, size_t *out_len,
                              char *err) {
  return sm4_cbc(1, key, iv, pt, len, out, out_len, err);
}

int tb_crypto_sm4_cbc_decrypt(const unsigned char key[TB_SM4_KEY_LEN],
                              const unsigned char iv[TB_SM4_IV_LEN], const void *ct,
                              size_t len, unsigned char **out, size_t *out_len,
                              char *err) {
  return sm4_cbc(0, key, iv, ct, len, out, out_len, err);
}

int tb_crypto_random(void *buf, size_t len, char *err) {
  unsigned char *p = buf;
  while (len > 0) {
    int step = len > INT_MAX ? INT_MAX : (int)len;
    if (RAND_bytes(p, step) != 1)
      return tb__ossl_err(err, TB_ECRYPTO, "random: RAND_bytes failed");
    p += step;
    len -= (size_t)step;
  }
  return 0;
}
