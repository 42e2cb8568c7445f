/*
 * SM2 public-key encryption (GB/T 32918.4) with named keys, and conversion
 * between the two ciphertext forms in use: GM/T 0009 DER, which is what
 * OpenSSL produces and what goes on the wire, and raw C1C3C2, which other
 * languages' GM/T libraries exchange.
 */
#include "crypto/crypto.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>

#include "crypto/crypto_internal.h"

#define SM2_COORD 32
#define SM2_HASH 32
/* 04 || x || y || C3 */
#define SM2_RAW_OVERHEAD (1 + 2 * SM2_COORD + SM2_HASH)

static int sm2_key(const struct tb_keystore *ks, const char *key_name, int need_private,
                   const struct tb_key **out, char *err) {
  int rc = tb__keystore_find_key(ks, key_name, out, err);
  if (rc != 0) return rc;
  if ((*out)->kind != TB_KEY_SM2)
    return tb_errf(err, TB_EINVAL, "key \"%s\" is a \"%s\" key, not sm2", key_name,
                   tb_key_kind_name((*out)->kind));
  if (need_private && !(*out)->has_private)
    return tb_errf(err, TB_EINVAL, "key \"%s\" has no private key and cannot decrypt",
                   key_name);
  return 0;
}

/* SM3 is OpenSSL's default for SM2 encryption too; set it anyway so the
 * choice is visible here and survives a change of default. */
static int set_sm3(EVP_PKEY_CTX *pctx) {
  OSSL_PARAM params[2];
  params[0] = OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_DIGEST, (char *)"SM3", 0);
  params[1] = OSSL_PARAM_construct_end();
  return EVP_PKEY_CTX_set_params(pctx, params);
}

static int sm2_crypt(const struct tb_key *k, int enc, const unsigned char *in, size_t len,
                     unsigned char **out, size_t *out_len, char *err) {
  const char *what = enc ? "sm2: encryption failed" : "sm2: cannot decrypt";
  int code = TB_ECRYPTO;
  unsigned char *buf = NULL;
  size_t n = 0;
  EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
  if (pctx == NULL) goto fail;
  if ((enc ? EVP_PKEY_encrypt_init(pctx) : EVP_PKEY_decrypt_init(pctx)) != 1) goto fail;
  if (set_sm3(pctx) != 1) goto fail;
  if ((enc ? EVP_PKEY_encrypt(pctx, NULL, &n, in, len)
           : EVP_PKEY_decrypt(pctx, NULL, &n, in, len)) != 1)
    goto fail;
  buf = malloc(n ? n : 1);
  if (buf == NULL) {
    code = TB_ENOMEM;
    what = "sm2: out of memory";
    goto fail;
  }
  if ((enc ? EVP_PKEY_encrypt(pctx, buf, &n, in, len)
           : EVP_PKEY_decrypt(pctx, buf, &n, in, len)) != 1)
    goto fail;
  EVP_PKEY_CTX_free(pctx);
  ERR_clear_error();
  *out = buf;
  *out_len = n;
  return 0;
fail:
  if (buf != NULL) OPENSSL_clear_free(buf, n);
  EVP_PKEY_CTX_free(pctx);
  return tb__ossl_err(err, code, what);
}

int tb_crypto_sm2_encrypt(const struct tb_keystore *ks, const char *key_name,
                          const void *pt, size_t len, unsigned char **out,
                          size_t *out_len, char *err) {
  *out = NULL;
  *out_len = 0;
  const struct tb_key *k;
  int rc = sm2_key(ks, key_name, 0, &k, err);
  if (rc != 0) return rc;
  if (pt == NULL || len == 0) return tb_errf(err, TB_EINVAL, "sm2: nothing to encrypt");
  return sm2_crypt(k, 1, pt, len, out, out_len, err);
}

int tb_crypto_sm2_decrypt(const struct tb_keystore *ks, const char *key_name,
                          const unsigned char *der, size_t der_len, unsigned char **out,
                          size_t *out_len, char *err) {
  *out = NULL;
  *out_len = 0;
  const struct tb_key *k;
  int rc = sm2_key(ks, key_name, 1, &k, err);
  if (rc != 0) return rc;
  if (der == NULL || der_len == 0)
    return tb_errf(err, TB_ECRYPTO, "sm2: empty ciphertext");
  return sm2_crypt(k, 0, der, der_len, out, out_len, err);
}

/* ---- DER ⇄ C1C3C2 --------------------------------------------------------- */

/* Non-negative INTEGER below 2^256 into 32 big-endian bytes, left-padded. */
static int int_to_coord(const ASN1_TYPE *t, unsigned char out[SM2_COORD]) {
  if (t == NULL || t->type != V_ASN1_INTEGER) return -1;
  BIGNUM *bn = ASN1_INTEGER_to_BN(t->value.integer, NULL);
  int ok = bn != NULL && !BN_is_negative(bn) && BN_num_bytes(bn) <= SM2_COORD &&
           BN_bn2binpad(bn, out, SM2_COORD) == SM2_COORD;
  BN_free(bn);
  return ok ? 0 : -1;
}

int tb_crypto_sm2_der_to_c1c3c2(const unsigned char *der, size_t der_len,
                                unsigned char **out, size_t *out_len, char *err) {
  *out = NULL;
  *out_len = 0;
  if (der == NULL || der_len == 0 || der_len > (size_t)(1 << 30))
    return tb_errf(err, TB_EPARSE, "sm2 ciphertext: empty or too large");
  const unsigned char *p = der;
  ASN1_SEQUENCE_ANY *seq = d2i_ASN1_SEQUENCE_ANY(NULL, &p, (long)der_len);
  int rc = 0;
  unsigned char *raw = NULL, *re = NULL;
  if (seq == NULL) {
    rc = tb__ossl_err(err, TB_EPARSE, "sm2 ciphertext: not a DER SEQUENCE");
    goto done;
  }
  if ((size_t)(p - der) != der_len) {
    rc = tb_errf(err, TB_EPARSE, "sm2 ciphertext: %zu trailing bytes after the SEQUENCE",
                 der_len - (size_t)(p - der));
    goto done;
  }
  /* Canonical DER only: re-encoding must give back the input exactly. */
  int relen = i2d_ASN1_SEQUENCE_ANY(seq, &re);
  if (relen <= 0 || (size_t)relen != der_len || memcmp(re, der, der_len) != 0) {
    rc = tb_errf(err, TB_EPARSE, "sm2 ciphertext: not canonical DER");
    goto done;
  }
  if (sk_ASN1_TYPE_num(seq) != 4) {
    rc = tb_errf(err, TB_EPARSE, "sm2 ciphertext: SEQUENCE of %d elements, want 4 "
                 "(x, y, hash, ciphertext)", sk_ASN1_TYPE_num(seq));
    goto done;
  }
  const ASN1_TYPE *h = sk_ASN1_TYPE_value(seq, 2), *c = sk_ASN1_TYPE_value(seq, 3);
  if (h->type != V_ASN1_OCTET_STRING || c->type != V_ASN1_OCTET_STRING ||
      ASN1_STRING_length(h->value.octet_string) != SM2_HASH ||
      ASN1_STRING_length(c->value.octet_string) <= 0) {
    rc = tb_errf(err, TB_EPARSE, "sm2 ciphertext: hash must be a 32-byte OCTET STRING "
                 "and ciphertext a non-empty OCTET STRING");
    goto done;
  }
  size_t clen = (size_t)ASN1_STRING_length(c->value.octet_string);
  raw = malloc(SM2_RAW_OVERHEAD + clen);
  if (raw == NULL) {
    rc = tb_errf(err, TB_ENOMEM, "sm2 ciphertext: out of memory");
    goto done;
  }
  raw[0] = 0x04;
  if (int_to_coord(sk_ASN1_TYPE_value(seq, 0), raw + 1) != 0 ||
      int_to_coord(sk_ASN1_TYPE_value(seq, 1), raw + 1 + SM2_COORD) != 0) {
    rc = tb_errf(err, TB_EPARSE, "sm2 ciphertext: x and y must be INTEGERs in [0, 2^256)");
    goto done;
  }
  memcpy(raw + 1 + 2 * SM2_COORD, ASN1_STRING_get0_data(h->value.octet_string), SM2_HASH);
  memcpy(raw + SM2_RAW_OVERHEAD, ASN1_STRING_get0_data(c->value.octet_string), clen);
  *out = raw;
  *out_len = SM2_RAW_OVERHEAD + clen;
  raw = NULL;
done:
  free(raw);
  OPENSSL_free(re);
  sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
  ERR_clear_error();
  return rc;
}

static ASN1_TYPE *coord_to_int(const unsigned char *b) {
  BIGNUM *bn = BN_bin2bn(b, SM2_COORD, NULL);
  ASN1_INTEGER *i = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
  BN_free(bn);
  ASN1_TYPE *t = i ? ASN1_TYPE_new() : NULL;
  if (t == NULL) {
    ASN1_INTEGER_free(i);
    return NULL;
  }
  ASN1_TYPE_set(t, V_ASN1_INTEGER, i);
  return t;
}

static ASN1_TYPE *octets(const unsigned char *b, size_t n) {
  ASN1_OCTET_STRING *s = ASN1_OCTET_STRING_new();
  if (s == NULL || ASN1_OCTET_STRING_set(s, b, (int)n) != 1) {
    ASN1_OCTET_STRING_free(s);
    return NULL;
  }
  ASN1_TYPE *t = ASN1_TYPE_new();
  if (t == NULL) {
    ASN1_OCTET_STRING_free(s);
    return NULL;
  }
  ASN1_TYPE_set(t, V_ASN1_OCTET_STRING, s);
  return t;
}

int tb_crypto_sm2_c1c3c2_to_der(const unsigned char *raw, size_t raw_len,
                                unsigned char **out, size_t *out_len, char *err) {
  *out = NULL;
  *out_len = 0;
  if (raw == NULL || raw_len <= SM2_RAW_OVERHEAD || raw[0] != 0x04 ||
      raw_len > (size_t)(1 << 30))
    return tb_errf(err, TB_EPARSE,
                   "sm2 C1C3C2: want 04 || x(32) || y(32) || C3(32) || C2 (at least %d "
                   "bytes, starting with 04), got %zu bytes", SM2_RAW_OVERHEAD + 1, raw_len);
  int rc = 0;
  ASN1_SEQUENCE_ANY *seq = sk_ASN1_TYPE_new_null();
  ASN1_TYPE *parts[4] = {
      coord_to_int(raw + 1), coord_to_int(raw + 1 + SM2_COORD),
      octets(raw + 1 + 2 * SM2_COORD, SM2_HASH),
      octets(raw + SM2_RAW_OVERHEAD, raw_len - SM2_RAW_OVERHEAD)};
  for (int i = 0; i < 4; i++) {
    if (seq == NULL || parts[i] == NULL || sk_ASN1_TYPE_push(seq, parts[i]) <= 0) {
      for (int j = i; j < 4; j++) ASN1_TYPE_free(parts[j]);
      rc = tb_errf(err, TB_ENOMEM, "sm2 C1C3C2: out of memory");
      goto done;
    }
  }
  unsigned char *der = NULL;
  int n = i2d_ASN1_SEQUENCE_ANY(seq, &der);
  if (n <= 0) {
    rc = tb__ossl_err(err, TB_ECRYPTO, "sm2 C1C3C2: cannot encode DER");
    goto done;
  }
  /* Hand out malloc'd memory, as every other output of this module. */
  *out = malloc((size_t)n);
  if (*out == NULL) {
    OPENSSL_free(der);
    rc = tb_errf(err, TB_ENOMEM, "sm2 C1C3C2: out of memory");
    goto done;
  }
  memcpy(*out, der, (size_t)n);
  *out_len = (size_t)n;
  OPENSSL_free(der);
done:
  sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
  ERR_clear_error();
  return rc;
}
