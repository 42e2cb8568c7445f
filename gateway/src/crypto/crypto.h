/*
 * crypto/crypto.h — the host's cryptographic services: signatures with named
 * keys, the SM2/SM4 digital envelope primitives, digests and encodings.
 *
 * Everything goes through OpenSSL 3 EVP (no low-level APIs). Functions that
 * take a keystore use a key by name, so adapters never touch key material.
 * All functions are thread-safe once tb_crypto_global_init() has run (which
 * is only required for XML-DSig, see xmldsig.h): each call makes its own
 * contexts, the keystore is read-only, and OpenSSL's error queue (which is
 * per thread) is drained into err and cleared before returning.
 *
 * Ownership: inputs are borrowed for the call. Variable-length outputs are
 * returned as `unsigned char **out, size_t *out_len`, allocated with malloc;
 * the caller frees them with free(). On error *out is NULL.
 */
#ifndef TB_CRYPTO_CRYPTO_H
#define TB_CRYPTO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/keystore.h"
#include "tbgw/error.h"

/* Process-wide setup of libxml2 and xmlsec (OpenSSL needs none). Call once
 * from the main thread before any worker thread starts; fini once at exit,
 * after every worker stopped. Idempotent in pairs. */
int tb_crypto_global_init(char *err);
void tb_crypto_global_fini(void);

/* ---- signatures --------------------------------------------------------- */

enum tb_sig_alg {
  TB_SIG_RSA_PKCS1_SHA256 = 1, /* RSASSA-PKCS1-v1_5, SHA-256 */
  TB_SIG_RSA_PSS_SHA256,       /* RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32 */
  TB_SIG_ECDSA_P256_SHA256,    /* DER ECDSA-Sig-Value */
  TB_SIG_ED25519,              /* 64 bytes, pure Ed25519 (no pre-hash) */
  TB_SIG_SM2_SM3,              /* DER SEQUENCE{r,s}, Z computed with signer ID */
};

/* Enough for any signature we make (RSA up to 16384 bits). */
#define TB_CRYPTO_SIG_MAX 2048

/* "rsa-pkcs1-sha256", "rsa-pss-sha256", "ecdsa-p256-sha256", "ed25519",
 * "sm2-sm3" ⇄ enum; parse returns TB_EINVAL for unknown names. */
int tb_sig_alg_parse(const char *name, enum tb_sig_alg *out, char *err);
const char *tb_sig_alg_name(enum tb_sig_alg alg);

/*
 * Signs data with the private key named key_name. sig is the caller's
 * buffer; *sig_len is its capacity on entry and the signature length on
 * return. TB_ENOTFOUND (no such key), TB_EINVAL (the key cannot make this
 * algorithm, or has no private part), TB_ELIMIT (buffer too small),
 * TB_ECRYPTO (OpenSSL failure). SM2 uses the entry's signer ID.
 */
int tb_crypto_sign(const struct tb_keystore *ks, const char *key_name,
                   enum tb_sig_alg alg, const void *data, size_t len,
                   unsigned char *sig, size_t *sig_len, char *err);

/* Verifies with a named key (private or public-only entry). Returns 0 if the
 * signature is valid, TB_EAUTH if it is not (wrong key, tampered data,
 * malformed signature), other codes as tb_crypto_sign. */
int tb_crypto_verify(const struct tb_keystore *ks, const char *key_name,
                     enum tb_sig_alg alg, const void *data, size_t len,
                     const unsigned char *sig, size_t sig_len, char *err);

/* As tb_crypto_verify, against a key given as PEM text: a SubjectPublicKeyInfo
 * ("PUBLIC KEY") or a certificate ("CERTIFICATE"; not chain-checked here).
 * sm2_id: NULL for TB_SM2_DEFAULT_ID. TB_EPARSE if the PEM does not parse. */
int tb_crypto_verify_pem(const char *pem, size_t pem_len, const char *sm2_id,
                         enum tb_sig_alg alg, const void *data, size_t len,
                         const unsigned char *sig, size_t sig_len, char *err);

/* ---- SM2 public-key encryption (GM/T 0009 DER ciphertext) --------------- */

/*
 * Encrypts to the SM2 key named key_name (public part suffices) with SM3 as
 * the KDF/C3 digest. *out is the DER SEQUENCE{x INTEGER, y INTEGER,
 * hash OCTET STRING(32), ciphertext OCTET STRING}. TB_ENOTFOUND, TB_EINVAL
 * (not an SM2 key, empty input), TB_ECRYPTO, TB_ENOMEM.
 */
int tb_crypto_sm2_encrypt(const struct tb_keystore *ks, const char *key_name,
                          const void *pt, size_t len, unsigned char **out,
                          size_t *out_len, char *err);

/* Decrypts a DER ciphertext with the SM2 private key named key_name.
 * TB_ECRYPTO for anything that does not decrypt (malformed, wrong key, C3
 * mismatch) — callers answer all of them the same way (yue-json 4020). */
int tb_crypto_sm2_decrypt(const struct tb_keystore *ks, const char *key_name,
                          const unsigned char *der, size_t der_len,
                          unsigned char **out, size_t *out_len, char *err);

/* DER ⇄ raw C1C3C2 = 04 || x(32) || y(32) || C3(32) || C2, the form other
 * languages' GM/T libraries exchange (some omit the 04: prepend it first).
 * The DER side must be canonical DER with non-negative x, y < 2^256 and a
 * 32-byte hash; TB_EPARSE otherwise. */
int tb_crypto_sm2_der_to_c1c3c2(const unsigned char *der, size_t der_len,
                                unsigned char **out, size_t *out_len, char *err);
int tb_crypto_sm2_c1c3c2_to_der(const unsigned char *raw, size_t raw_len,
                                unsigned char **out, size_t *out_len, char *err);

/* ---- SM4-CBC with PKCS#7 padding ---------------------------------------- */

#define TB_SM4_KEY_LEN 16
#define TB_SM4_IV_LEN 16

/* Output is len rounded up to the next multiple of 16 (a full padding block
 * when len already is one). TB_ENOMEM, TB_ECRYPTO. */
int tb_crypto_sm4_cbc_encrypt(const unsigned char key[TB_SM4_KEY_LEN],
                              const unsigned char iv[TB_SM4_IV_LEN],
                              const void *pt, size_t len, unsigned char **out,
                              size_t *out_len, char *err);
/* TB_ECRYPTO for a length that is not a positive multiple of 16, and for bad
 * padding (which is what a wrong key or IV usually produces). */
int tb_crypto_sm4_cbc_decrypt(const unsigned char key[TB_SM4_KEY_LEN],
                              const unsigned char iv[TB_SM4_IV_LEN],
                              const void *ct, size_t len, unsigned char **out,
                              size_t *out_len, char *err);

/* Cryptographically secure random bytes (RAND_bytes). TB_ECRYPTO. */
int tb_crypto_random(void *buf, size_t len, char *err);

/* ---- digests ------------------------------------------------------------ */

#define TB_DIGEST_LEN 32       /* SM3 and SHA-256 */
#define TB_DIGEST_HEX_LEN 65   /* 64 lowercase hex digits + NUL */

int tb_crypto_sm3(const void *data, size_t len, unsigned char out[TB_DIGEST_LEN],
                  char *err);
int tb_crypto_sha256(const void *data, size_t len,
                     unsigned char out[TB_DIGEST_LEN], char *err);
int tb_crypto_sm3_hex(const void *data, size_t len, char out[TB_DIGEST_HEX_LEN],
                      char *err);
int tb_crypto_sha256_hex(const void *data, size_t len,
                         char out[TB_DIGEST_HEX_LEN], char *err);

/* ---- encodings ---------------------------------------------------------- */

/* Lowercase hex of len bytes into out (2*len+1 bytes, NUL-terminated). */
void tb_crypto_hex(const void *data, size_t len, char *out);

/* Standard base64 (RFC 4648 §4) with padding; *out is NUL-terminated and
 * *out_len excludes the NUL. TB_ENOMEM, TB_ELIMIT (len beyond SIZE_MAX/2). */
int tb_crypto_base64_encode(const void *data, size_t len, char **out,
                            size_t *out_len, char *err);
/* Strict decoder: the exact output of the encoder above and nothing else —
 * no whitespace or line breaks, no URL-safe alphabet, length a multiple of 4,
 * '=' only as 1 or 2 final characters, unused bits zero. TB_EPARSE names the
 * offset of the first bad character. "" decodes to 0 bytes (*out non-NULL). */
int tb_crypto_base64_decode(const char *text, size_t len, unsigned char **out,
                            size_t *out_len, char *err);

/* A random (version 4) UUID, lowercase, 36 characters + NUL. TB_ECRYPTO. */
#define TB_UUID_STR_LEN 37
int tb_crypto_uuid4(char out[TB_UUID_STR_LEN], char *err);

#endif
