/*
 * Signatures with named keys (and verification against PEM text): RSA PKCS#1
 * v1.5 and PSS with SHA-256, ECDSA P-256, Ed25519, SM2 with SM3 and a signer
 * ID. One EVP_MD_CTX per call; keys are shared read-only.
 */
#include "crypto/crypto.h"

#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "crypto/crypto_internal.h"

static const char *const alg_names[] = {"?", "rsa-pkcs1-sha256", "rsa-pss-sha256",
                                        "ecdsa-p256-sha256", "ed25519", "sm2-sm3"};

const char *tb_sig_alg_name(enum tb_sig_alg alg) {
  if (alg < TB_SIG_RSA_PKCS1_SHA256 || alg > TB_SIG_SM2_SM3) return "?";
  return alg_names[alg];
}

int tb_sig_alg_parse(const char *name, enum tb_sig_alg *out, char *err) {
  for (int a = TB_SIG_RSA_PKCS1_SHA256; a <= TB_SIG_SM2_SM3; a++) {
    if (name != NULL && strcmp(name, alg_names[a]) == 0) {
      *out = (enum tb_sig_alg)a;
      return 0;
    }
  }
  return tb_errf(err, TB_EINVAL,
                 "signature algorithm \"%s\" is not one of rsa-pkcs1-sha256, "
                 "rsa-pss-sha256, ecdsa-p256-sha256, ed25519, sm2-sm3",
                 name ? name : "(null)");
}

static enum tb_key_kind alg_kind(enum tb_sig_alg alg) {
  switch (alg) {
  case TB_SIG_RSA_PKCS1_SHA256:
  case TB_SIG_RSA_PSS_SHA256: return TB_KEY_RSA;
  case TB_SIG_ECDSA_P256_SHA256: return TB_KEY_EC_P256;
  case TB_SIG_ED25519: return TB_KEY_ED25519;
  case TB_SIG_SM2_SM3: return TB_KEY_SM2;
  }
  return 0;
}

/* Kind of a key that did not come from the keystore (verify_pem). */
static enum tb_key_kind pkey_kind(const EVP_PKEY *pk) {
  char group[64] = "";
  size_t glen = 0;
  if (EVP_PKEY_is_a(pk, "SM2")) return TB_KEY_SM2;
  if (EVP_PKEY_is_a(pk, "ED25519")) return TB_KEY_ED25519;
  if (EVP_PKEY_is_a(pk, "RSA")) return TB_KEY_RSA;
  if (EVP_PKEY_is_a(pk, "EC") && EVP_PKEY_get_group_name(pk, group, sizeof group, &glen) == 1 &&
      strcmp(group, "prime256v1") == 0)
    return TB_KEY_EC_P256;
  ERR_clear_error();
  return 0;
}

/*
 * Prepares mctx for signing (sign=1) or verifying with pk. SM2 needs its
 * signer ID set on a PKEY_CTX that is attached before the DigestSign/Verify
 * init (OpenSSL folds Z = SM3(ENTL||ID||a||b||G||P) into the digest there);
 * that ctx stays owned by us (*pctx_own), not by mctx. Ed25519 takes no
 * digest. PSS parameters are set on the ctx the init created.
 */
static int setup(EVP_MD_CTX *mctx, EVP_PKEY *pk, enum tb_sig_alg alg, const char *sm2_id,
                 int sign, EVP_PKEY_CTX **pctx_own, char *err) {
  EVP_PKEY_CTX *pctx = NULL;
  const EVP_MD *md = NULL;
  *pctx_own = NULL;
  switch (alg) {
  case TB_SIG_RSA_PKCS1_SHA256:
  case TB_SIG_RSA_PSS_SHA256:
  case TB_SIG_ECDSA_P256_SHA256: md = EVP_sha256(); break;
  case TB_SIG_ED25519: md = NULL; break;
  case TB_SIG_SM2_SM3: md = EVP_sm3(); break;
  }
  if (alg == TB_SIG_SM2_SM3) {
    const char *id = sm2_id ? sm2_id : TB_SM2_DEFAULT_ID;
    size_t idlen = strlen(id);
    if (idlen == 0 || idlen > 1024)
      return tb_errf(err, TB_EINVAL, "sm2: the signer ID must be 1 to 1024 bytes");
    pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pk, NULL);
    if (pctx == NULL || EVP_PKEY_CTX_set1_id(pctx, id, (int)idlen) <= 0) {
      EVP_PKEY_CTX_free(pctx);
      return tb__ossl_err(err, TB_ECRYPTO, "sm2: cannot set the signer ID");
    }
    EVP_MD_CTX_set_pkey_ctx(mctx, pctx);
    *pctx_own = pctx;
  }
  int ok = sign ? EVP_DigestSignInit(mctx, &pctx, md, NULL, pk)
                : EVP_DigestVerifyInit(mctx, &pctx, md, NULL, pk);
  if (ok != 1) return tb__ossl_err(err, TB_ECRYPTO, "signature: cannot initialise");
  if (alg == TB_SIG_RSA_PSS_SHA256) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0)
      return tb__ossl_err(err, TB_ECRYPTO, "rsa-pss: cannot set parameters");
  } else if (alg == TB_SIG_RSA_PKCS1_SHA256) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)
      return tb__ossl_err(err, TB_ECRYPTO, "rsa: cannot set padding");
  }
  return 0;
}

static int check_fit(const char *who, enum tb_key_kind kind, enum tb_sig_alg alg, char *err) {
  if (alg < TB_SIG_RSA_PKCS1_SHA256 || alg > TB_SIG_SM2_SM3)
    return tb_errf(err, TB_EINVAL, "signature: invalid algorithm %d", (int)alg);
  if (kind != alg_kind(alg))
    return tb_errf(err, TB_EINVAL, "%s is a \"%s\" key and cannot do %s", who,
                   tb_key_kind_name(kind), tb_sig_alg_name(alg));
  return 0;
}

/* Bounded search: pem is not required to be NUL-terminated. */
static int contains(const char *p, size_t n, const char *needle) {
  size_t m = strlen(needle);
  for (size_t i = 0; m <= n && i <= n - m; i++)
    if (memcmp(p + i, needle, m) == 0) return 1;
  return 0;
}

static int verify_pkey(EVP_PKEY *pk, const char *sm2_id, enum tb_sig_alg alg,
                       const void *data, size_t len, const unsigned char *sig,
                       size_t sig_len, char *err) {
  EVP_MD_CTX *mctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX *own = NULL;
  if (mctx == NULL) return tb_errf(err, TB_ENOMEM, "signature: out of memory");
  int rc = setup(mctx, pk, alg, sm2_id, 0, &own, err);
  if (rc == 0) {
    int v = EVP_DigestVerify(mctx, sig, sig_len, data, len);
    if (v != 1)
      rc = tb__ossl_err(err, TB_EAUTH, v == 0 ? "signature does not verify"
                                              : "signature does not verify (malformed)");
  }
  EVP_MD_CTX_free(mctx);
  EVP_PKEY_CTX_free(own);
  ERR_clear_error();
  return rc;
}

int tb_crypto_sign(const struct tb_keystore *ks, const char *key_name, enum tb_sig_alg alg,
                   const void *data, size_t len, unsigned char *sig, size_t *sig_len,
                   char *err) {
  const struct tb_key *k;
  int rc = tb__keystore_find_key(ks, key_name, &k, err);
  if (rc != 0) return rc;
  char who[160];
  snprintf(who, sizeof who, "key \"%s\"", key_name);
  if ((rc = check_fit(who, k->kind, alg, err)) != 0) return rc;
  if (!k->has_private)
    return tb_errf(err, TB_EINVAL, "%s has no private key and cannot sign", who);
  EVP_MD_CTX *mctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX *own = NULL;
  if (mctx == NULL) return tb_errf(err, TB_ENOMEM, "signature: out of memory");
  if ((rc = setup(mctx, k->pkey, alg, k->sm2_id, 1, &own, err)) != 0) goto done;
  /* Ed25519 is one-shot only, so size and sign through EVP_DigestSign for all;
   * the size query returns the maximum (DER signatures may come out shorter). */
  size_t need = 0;
  if (EVP_DigestSign(mctx, NULL, &need, data, len) != 1) {
    rc = tb__ossl_err(err, TB_ECRYPTO, "signature: cannot size");
    goto done;
  }
  if (need > *sig_len) {
    rc = tb_errf(err, TB_ELIMIT, "signature: buffer of %zu bytes, %zu needed", *sig_len, need);
    goto done;
  }
  size_t n = *sig_len;
  if (EVP_DigestSign(mctx, sig, &n, data, len) != 1) {
    rc = tb__ossl_err(err, TB_ECRYPTO, "signature: signing failed");
    goto done;
  }
  *sig_len = n;
done:
  EVP_MD_CTX_free(mctx);
  EVP_PKEY_CTX_free(own);
  ERR_clear_error();
  return rc;
}

int tb_crypto_verify(const struct tb_keystore *ks, const char *key_name,
                     enum tb_sig_alg alg, const void *data, size_t len,
                     const unsigned char *sig, size_t sig_len, char *err) {
  const struct tb_key *k;
  int rc = tb__keystore_find_key(ks, key_name, &k, err);
  if (rc != 0) return rc;
  char who[160];
  snprintf(who, sizeof who, "key \"%s\"", key_name);
  if ((rc = check_fit(who, k->kind, alg, err)) != 0) return rc;
  return verify_pkey(k->pkey, k->sm2_id, alg, data, len, sig, sig_len, err);
}

int tb_crypto_verify_pem(const char *pem, size_t pem_len, const char *sm2_id,
                         enum tb_sig_alg alg, const void *data, size_t len,
                         const unsigned char *sig, size_t sig_len, char *err) {
  if (pem == NULL || pem_len == 0 || pem_len > TB_KEYSTORE_FILE_MAX)
    return tb_errf(err, TB_EINVAL, "verify: no PEM key given");
  BIO *b = BIO_new_mem_buf(pem, (int)pem_len);
  if (b == NULL) return tb_errf(err, TB_ENOMEM, "verify: out of memory");
  EVP_PKEY *pk = NULL;
  int is_cert = contains(pem, pem_len, "-----BEGIN CERTIFICATE-----");
  if (is_cert) {
    X509 *c = PEM_read_bio_X509(b, NULL, NULL, NULL);
    pk = c ? X509_get_pubkey(c) : NULL;
    X509_free(c);
  } else {
    pk = PEM_read_bio_PUBKEY_ex(b, NULL, NULL, NULL, NULL, NULL);
  }
  BIO_free(b);
  if (pk == NULL)
    return tb__ossl_err(err, TB_EPARSE,
                        is_cert ? "verify: the certificate does not parse"
                                : "verify: no PEM public key (\"BEGIN PUBLIC KEY\") found");
  ERR_clear_error();
  int rc = check_fit("the given public key", pkey_kind(pk), alg, err);
  if (rc == 0) rc = verify_pkey(pk, sm2_id, alg, data, len, sig, sig_len, err);
  EVP_PKEY_free(pk);
  return rc;
}
