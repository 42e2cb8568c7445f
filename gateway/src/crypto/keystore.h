/*
 * crypto/keystore.h — named keys and trusted CA bundles, loaded from files.
 *
 * Key custody stays in the core (SPEC §5, §6): adapters name keys, the host
 * signs, verifies, encrypts and decrypts with them. A keystore is built once
 * (at start or on reload, on one thread), then published; after that it is
 * never modified, so any number of threads may use it at once — every
 * operation makes its own EVP_PKEY_CTX / EVP_MD_CTX. Reload builds a new
 * keystore and swaps it; the old one is freed when nothing uses it any more
 * (the caller owns that lifetime).
 *
 * Private key files must be regular files of mode 0600 or stricter: anything
 * readable by group or others is refused with the fix in the message.
 * Replacing files by an HSM later only changes this file's loader: everything
 * else goes through key names.
 */
#ifndef TB_CRYPTO_KEYSTORE_H
#define TB_CRYPTO_KEYSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "tbgw/error.h"

/* The signer ID GB/T 32918 / GM/T 0009 use when none is configured. */
#define TB_SM2_DEFAULT_ID "1234567812345678"

/* Longest accepted file (PEM keys, certificates, CA bundles). */
#define TB_KEYSTORE_FILE_MAX (1024 * 1024)

enum tb_key_kind {
  TB_KEY_RSA = 1,  /* "rsa": 2048 bits or more */
  TB_KEY_EC_P256,  /* "ec-p256": prime256v1 only */
  TB_KEY_ED25519,  /* "ed25519" */
  TB_KEY_SM2,      /* "sm2": GB/T 32918 curve */
};

/* "rsa" → TB_KEY_RSA etc.; TB_EINVAL for anything else (message lists the
 * accepted names). */
int tb_key_kind_parse(const char *name, enum tb_key_kind *out, char *err);
/* The config name of a kind ("rsa", ...); "?" for an invalid value. */
const char *tb_key_kind_name(enum tb_key_kind kind);

/*
 * One named key as configured. Every path is optional, but at least one of
 * private_key_file, public_key_file, cert_file must be set: a private key
 * entry can sign and decrypt; a public-only entry (a peer's SPKI or
 * certificate) can verify and encrypt. When several are given they must be
 * the same key pair. sm2_id is the SM2 signer ID (NULL: TB_SM2_DEFAULT_ID),
 * refused for other kinds. All strings are borrowed for the call.
 */
struct tb_key_spec {
  const char *name;
  enum tb_key_kind kind;
  const char *private_key_file; /* PEM: PKCS#8 or traditional, unencrypted */
  const char *public_key_file;  /* PEM SubjectPublicKeyInfo */
  const char *cert_file;        /* PEM certificate of this key */
  const char *sm2_id;
};

/* What may be shown about a key (metrics, logs, `tbgw check-config`). */
struct tb_key_info {
  enum tb_key_kind kind;
  int has_private;            /* 1 if the entry can sign/decrypt */
  int has_cert;
  char fingerprint[65];       /* lowercase hex SHA-256 of the DER SPKI */
  int64_t cert_not_after;     /* Unix seconds; 0 without a certificate */
  char cert_subject[256];     /* RFC 2253, UTF-8; "" without a certificate */
};

struct tb_keystore;

/* Allocates an empty keystore; free it with tb_keystore_free(). TB_ENOMEM. */
int tb_keystore_new(struct tb_keystore **out, char *err);
void tb_keystore_free(struct tb_keystore *ks); /* NULL is fine */

/*
 * Loads one key entry. Refuses (leaving the keystore unchanged):
 * a duplicate name (TB_EEXISTS); a missing or unreadable file (TB_ENOTFOUND,
 * TB_EIO); a private key file that is not a regular file or is readable by
 * group/others (TB_ECONFIG, message says "chmod 600 FILE"); PEM that does
 * not parse or is encrypted (TB_EPARSE); a key that is not of spec->kind,
 * RSA under 2048 bits, EC not on P-256, files that are not one key pair
 * (TB_ECONFIG). Not thread-safe: build the keystore before publishing it.
 */
int tb_keystore_add_key(struct tb_keystore *ks, const struct tb_key_spec *spec,
                        char *err);

/*
 * Loads a CA bundle (one or more PEM certificates: the trusted roots for a
 * peer) under a name of its own namespace (a CA and a key may share a name).
 * TB_EEXISTS, TB_ENOTFOUND, TB_EIO, TB_EPARSE (no certificate in the file).
 */
int tb_keystore_add_ca(struct tb_keystore *ks, const char *name,
                       const char *pem_file, char *err);

/* Describes a key; TB_ENOTFOUND if no key has that name. Thread-safe. */
int tb_keystore_key_info(const struct tb_keystore *ks, const char *name,
                         struct tb_key_info *out, char *err);

/* Enumeration (for metrics such as seconds until certificate expiry):
 * names are owned by the keystore and live as long as it. */
/* 1 if a CA bundle named name was added with tb_keystore_add_ca. */
int tb_keystore_has_ca(const struct tb_keystore *ks, const char *name);

size_t tb_keystore_key_count(const struct tb_keystore *ks);
const char *tb_keystore_key_name(const struct tb_keystore *ks, size_t i);

#endif
