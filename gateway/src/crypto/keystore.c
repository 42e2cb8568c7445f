/*
 * The keystore: reads PEM key, certificate and CA files (refusing private
 * keys that others can read), checks each key is of the configured kind and
 * size, and keeps them as immutable named entries.
 */
#include "crypto/keystore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

struct tb_keystore {
  struct tb_key **keys;
  size_t nkeys, cap_keys;
  struct tb_ca **cas;
  size_t ncas, cap_cas;
};

static const char *const kind_names[] = {"?", "rsa", "ec-p256", "ed25519", "sm2"};

const char *tb_key_kind_name(enum tb_key_kind kind) {
  if (kind < TB_KEY_RSA || kind > TB_KEY_SM2) return "?";
  return kind_names[kind];
}

int tb_key_kind_parse(const char *name, enum tb_key_kind *out, char *err) {
  for (int k = TB_KEY_RSA; k <= TB_KEY_SM2; k++) {
    if (name != NULL && strcmp(name, kind_names[k]) == 0) {
      *out = (enum tb_key_kind)k;
      return 0;
    }
  }
  return tb_errf(err, TB_EINVAL,
                 "key kind \"%s\" is not one of rsa, ec-p256, ed25519, sm2",
                 name ? name : "(null)");
}

int tb__ossl_err(char *err, int code, const char *what) {
  unsigned long e = ERR_peek_last_error();
  if (e == 0) {
    tb_errf(err, code, "%s", what);
  } else {
    const char *reason = ERR_reason_error_string(e);
    const char *lib = ERR_lib_error_string(e);
    tb_errf(err, code, "%s (OpenSSL: %s%s%s)", what, lib ? lib : "", lib ? ": " : "",
            reason ? reason : "unknown error");
  }
  ERR_clear_error();
  return code;
}

void tb__x509_name_text(const X509_NAME *name, char *out, size_t cap) {
  out[0] = '\0';
  BIO *b = BIO_new(BIO_s_mem());
  if (b == NULL) {
    ERR_clear_error();
    return;
  }
  /* RFC 2253 but keep UTF-8 (Chinese CNs) readable instead of \XX escapes. */
  unsigned long flags = (XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB);
  if (X509_NAME_print_ex(b, name, 0, flags) >= 0) {
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    if (n > 0 && p != NULL) {
      size_t m = (size_t)n < cap - 1 ? (size_t)n : cap - 1;
      memcpy(out, p, m);
      out[m] = '\0';
    }
  }
  BIO_free(b);
  ERR_clear_error();
}

/* ---- files -------------------------------------------------------------- */

/*
 * Reads a whole file into a NUL-terminated heap buffer. For private keys the
 * mode is checked on the open descriptor (fstat), so the file checked is the
 * file read. The caller cleanses and frees *buf.
 */
static int read_file(const char *what, const char *path, int is_private,
                     char **buf, size_t *len, char *err) {
  *buf = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    return tb_errf(err, e == ENOENT ? TB_ENOTFOUND : TB_EIO, "%s: cannot open %s: %s",
                   what, path, strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return tb_errf(err, TB_EIO, "%s: cannot stat %s: %s", what, path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return tb_errf(err, TB_ECONFIG, "%s: %s is not a regular file", what, path);
  }
  if (is_private && (st.st_mode & 077) != 0) {
    close(fd);
    return tb_errf(err, TB_ECONFIG,
                   "%s: private key file %s has mode %04o and is readable by "
                   "group/others; run: chmod 600 %s",
                   what, path, (unsigned)(st.st_mode & 07777), path);
  }
  if (st.st_size > TB_KEYSTORE_FILE_MAX) {
    close(fd);
    return tb_errf(err, TB_ELIMIT, "%s: %s is larger than %d bytes", what, path,
                   TB_KEYSTORE_FILE_MAX);
  }
  size_t cap = (size_t)st.st_size + 1;
  char *p = malloc(cap);
  if (p == NULL) {
    close(fd);
    return tb_errf(err, TB_ENOMEM, "%s: out of memory reading %s", what, path);
  }
  size_t n = 0;
  for (;;) {
    if (n == cap - 1) break; /* the file grew under us: read what stat said */
    ssize_t r = read(fd, p + n, cap - 1 - n);
    if (r < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      OPENSSL_clear_free(p, cap);
      return tb_errf(err, TB_EIO, "%s: cannot read %s: %s", what, path, strerror(e));
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  close(fd);
  p[n] = '\0';
  *buf = p;
  *len = n;
  return 0;
}

static int refuse_password(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1; /* we never prompt: an encrypted key is a configuration error */
}

static int load_private(const char *what, const char *path, EVP_PKEY **out, char *err) {
  char *buf = NULL;
  size_t len = 0;
  int rc = read_file(what, path, 1, &buf, &len, err);
  if (rc != 0) return rc;
  if (strstr(buf, "ENCRYPTED") != NULL) {
    OPENSSL_clear_free(buf, len + 1);
    return tb_errf(err, TB_EPARSE,
                   "%s: %s is an encrypted private key, which is not supported; "
                   "decrypt it (openssl pkey -in %s -out NEW) and chmod 600 the result",
                   what, path, path);
  }
  BIO *b = BIO_new_mem_buf(buf, (int)len);
  EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey_ex(b, NULL, refuse_password, NULL, NULL, NULL)
                   : NULL;
  BIO_free(b);
  OPENSSL_clear_free(buf, len + 1);
  if (pk == NULL) {
    char msg[TB_ERRMSG_MAX / 2];
    snprintf(msg, sizeof msg, "%s: %s holds no PEM private key", what, path);
    return tb__ossl_err(err, TB_EPARSE, msg);
  }
  ERR_clear_error();
  *out = pk;
  return 0;
}

static int load_public(const char *what, const char *path, EVP_PKEY **out, char *err) {
  char *buf = NULL;
  size_t len = 0;
  int rc = read_file(what, path, 0, &buf, &len, err);
  if (rc != 0) return rc;
  BIO *b = BIO_new_mem_buf(buf, (int)len);
  EVP_PKEY *pk = b ? PEM_read_bio_PUBKEY_ex(b, NULL, NULL, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  free(buf);
  if (pk == NULL) {
    char msg[TB_ERRMSG_MAX / 2];
    snprintf(msg, sizeof msg, "%s: %s holds no PEM public key (\"BEGIN PUBLIC KEY\")",
             what, path);
    return tb__ossl_err(err, TB_EPARSE, msg);
  }
  ERR_clear_error();
  *out = pk;
  return 0;
}

static int load_cert(const char *what, const char *path, X509 **out, char *err) {
  char *buf = NULL;
  size_t len = 0;
  int rc = read_file(what, path, 0, &buf, &len, err);
  if (rc != 0) return rc;
  BIO *b = BIO_new_mem_buf(buf, (int)len);
  X509 *c = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  free(buf);
  if (c == NULL) {
    char msg[TB_ERRMSG_MAX / 2];
    snprintf(msg, sizeof msg, "%s: %s holds no PEM certificate", what, path);
    return tb__ossl_err(err, TB_EPARSE, msg);
  }
  ERR_clear_error();
  *out = c;
  return 0;
}

/* ---- kinds -------------------------------------------------------------- */

/* What kind an EVP_PKEY is, or 0. OpenSSL 3.0 loads a key on the SM2 curve
 * (id-ecPublicKey + OID 1.2.156.10197.1.301, what `openssl genpkey
 * -algorithm SM2` writes) as type "SM2", so EVP_PKEY_is_a() is enough; an
 * "EC" key on the SM2 curve would sign ECDSA, not SM2, so it is refused. */
static enum tb_key_kind kind_of(const EVP_PKEY *pk, char *detail, size_t cap) {
  char group[64] = "";
  size_t glen = 0;
  if (EVP_PKEY_is_a(pk, "SM2")) return TB_KEY_SM2;
  if (EVP_PKEY_is_a(pk, "ED25519")) return TB_KEY_ED25519;
  if (EVP_PKEY_is_a(pk, "RSA")) return TB_KEY_RSA;
  if (EVP_PKEY_is_a(pk, "EC")) {
    if (EVP_PKEY_get_group_name(pk, group, sizeof group, &glen) == 1 &&
        strcmp(group, "prime256v1") == 0)
      return TB_KEY_EC_P256;
    snprintf(detail, cap, "an EC key on curve %s", group[0] ? group : "(unknown)");
    ERR_clear_error();
    return 0;
  }
  const char *t = EVP_PKEY_get0_type_name(pk);
  snprintf(detail, cap, "a %s key", t ? t : "(unknown type)");
  return 0;
}

static int check_kind(const char *what, const char *path, const EVP_PKEY *pk,
                      enum tb_key_kind want, char *err) {
  char detail[96] = "";
  enum tb_key_kind got = kind_of(pk, detail, sizeof detail);
  if (got == 0)
    return tb_errf(err, TB_ECONFIG, "%s: %s is %s; kind \"%s\" was configured", what,
                   path, detail, tb_key_kind_name(want));
  if (got != want)
    return tb_errf(err, TB_ECONFIG, "%s: %s is a \"%s\" key but kind \"%s\" was configured",
                   what, path, tb_key_kind_name(got), tb_key_kind_name(want));
  if (got == TB_KEY_RSA && EVP_PKEY_get_bits(pk) < 2048)
    return tb_errf(err, TB_ECONFIG, "%s: %s is RSA-%d; RSA keys must have 2048 bits or more",
                   what, path, EVP_PKEY_get_bits(pk));
  return 0;
}

/* ---- entries ------------------------------------------------------------ */

static void key_free(struct tb_key *k) {
  if (k == NULL) return;
  free(k->name);
  EVP_PKEY_free(k->pkey);
  X509_free(k->cert);
  free(k->sm2_id);
  free(k);
}

static void ca_free(struct tb_ca *ca) {
  if (ca == NULL) return;
  free(ca->name);
  sk_X509_pop_free(ca->certs, X509_free);
  X509_STORE_free(ca->store);
  free(ca);
}

int tb_keystore_new(struct tb_keystore **out, char *err) {
  *out = calloc(1, sizeof **out);
  if (*out == NULL) return tb_errf(err, TB_ENOMEM, "keystore: out of memory");
  return 0;
}

void tb_keystore_free(struct tb_keystore *ks) {
  if (ks == NULL) return;
  for (size_t i = 0; i < ks->nkeys; i++) key_free(ks->keys[i]);
  for (size_t i = 0; i < ks->ncas; i++) ca_free(ks->cas[i]);
  free(ks->keys);
  free(ks->cas);
  free(ks);
}

static const struct tb_key *find_key(const struct tb_keystore *ks, const char *name) {
  for (size_t i = 0; name != NULL && i < ks->nkeys; i++)
    if (strcmp(ks->keys[i]->name, name) == 0) return ks->keys[i];
  return NULL;
}

static const struct tb_ca *find_ca(const struct tb_keystore *ks, const char *name) {
  for (size_t i = 0; name != NULL && i < ks->ncas; i++)
    if (strcmp(ks->cas[i]->name, name) == 0) return ks->cas[i];
  return NULL;
}

int tb__keystore_find_key(const struct tb_keystore *ks, const char *name,
                          const struct tb_key **out, char *err) {
  *out = ks ? find_key(ks, name) : NULL;
  if (*out == NULL)
    return tb_errf(err, TB_ENOTFOUND, "no key named \"%s\" in the keystore",
                   name ? name : "(null)");
  return 0;
}

int tb_keystore_has_ca(const struct tb_keystore *ks, const char *name) {
  return ks != NULL && name != NULL && find_ca(ks, name) != NULL;
}

int tb__keystore_find_ca(const struct tb_keystore *ks, const char *name,
                         const struct tb_ca **out, char *err) {
  *out = ks ? find_ca(ks, name) : NULL;
  if (*out == NULL)
    return tb_errf(err, TB_ENOTFOUND, "no CA named \"%s\" in the keystore",
                   name ? name : "(null)");
  return 0;
}

static int64_t asn1_time_to_unix(const ASN1_TIME *t) {
  int days = 0, secs = 0;
  ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
  int ok = epoch != NULL && ASN1_TIME_diff(&days, &secs, epoch, t) == 1;
  ASN1_TIME_free(epoch);
  ERR_clear_error();
  return ok ? (int64_t)days * 86400 + secs : 0;
}

static int fill_info(struct tb_key *k, char *what, char *err) {
  struct tb_key_info *in = &k->info;
  in->kind = k->kind;
  in->has_private = k->has_private;
  in->has_cert = k->cert != NULL;
  unsigned char *der = NULL;
  int n = i2d_PUBKEY(k->pkey, &der);
  if (n <= 0) return tb__ossl_err(err, TB_ECRYPTO, what);
  unsigned char md[TB_DIGEST_LEN];
  int rc = tb_crypto_sha256(der, (size_t)n, md, err);
  OPENSSL_free(der);
  if (rc != 0) return rc;
  tb_crypto_hex(md, sizeof md, in->fingerprint);
  if (k->cert != NULL) {
    in->cert_not_after = asn1_time_to_unix(X509_get0_notAfter(k->cert));
    tb__x509_name_text(X509_get_subject_name(k->cert), in->cert_subject,
                       sizeof in->cert_subject);
  }
  return 0;
}

static int grow(void **arr, size_t *cap, size_t n) {
  if (n < *cap) return 0;
  size_t ncap = *cap ? *cap * 2 : 8;
  void *p = realloc(*arr, ncap * sizeof(void *));
  if (p == NULL) return -1;
  *arr = p;
  *cap = ncap;
  return 0;
}

int tb_keystore_add_key(struct tb_keystore *ks, const struct tb_key_spec *spec,
                        char *err) {
  if (ks == NULL || spec == NULL || spec->name == NULL || spec->name[0] == '\0')
    return tb_errf(err, TB_EINVAL, "keystore: a key needs a name");
  char what[160];
  snprintf(what, sizeof what, "key \"%s\"", spec->name);
  if (spec->kind < TB_KEY_RSA || spec->kind > TB_KEY_SM2)
    return tb_errf(err, TB_EINVAL, "%s: invalid kind %d", what, (int)spec->kind);
  if (find_key(ks, spec->name) != NULL)
    return tb_errf(err, TB_EEXISTS, "%s: a key with this name is already loaded", what);
  if (spec->private_key_file == NULL && spec->public_key_file == NULL &&
      spec->cert_file == NULL)
    return tb_errf(err, TB_ECONFIG,
                   "%s: set a private key, a public key or a certificate file", what);
  if (spec->sm2_id != NULL && spec->kind != TB_KEY_SM2)
    return tb_errf(err, TB_ECONFIG, "%s: sm2_id is only for kind \"sm2\"", what);
  if (spec->sm2_id != NULL && (spec->sm2_id[0] == '\0' || strlen(spec->sm2_id) > 1024))
    return tb_errf(err, TB_ECONFIG, "%s: sm2_id must be 1 to 1024 bytes", what);

  struct tb_key *k = calloc(1, sizeof *k);
  if (k == NULL) return tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
  k->kind = spec->kind;
  k->name = strdup(spec->name);
  if (spec->kind == TB_KEY_SM2) k->sm2_id = strdup(spec->sm2_id ? spec->sm2_id : TB_SM2_DEFAULT_ID);
  int rc = 0;
  if (k->name == NULL || (spec->kind == TB_KEY_SM2 && k->sm2_id == NULL)) {
    rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
    goto fail;
  }

  EVP_PKEY *pub = NULL;
  if (spec->private_key_file != NULL) {
    if ((rc = load_private(what, spec->private_key_file, &k->pkey, err)) != 0) goto fail;
    if ((rc = check_kind(what, spec->private_key_file, k->pkey, spec->kind, err)) != 0)
      goto fail;
    k->has_private = 1;
  }
  if (spec->public_key_file != NULL) {
    if ((rc = load_public(what, spec->public_key_file, &pub, err)) != 0) goto fail;
    if ((rc = check_kind(what, spec->public_key_file, pub, spec->kind, err)) != 0) {
      EVP_PKEY_free(pub);
      goto fail;
    }
    if (k->pkey == NULL) {
      k->pkey = pub;
    } else {
      int same = EVP_PKEY_eq(k->pkey, pub) == 1;
      EVP_PKEY_free(pub);
      ERR_clear_error();
      if (!same) {
        rc = tb_errf(err, TB_ECONFIG, "%s: public key %s does not belong to private key %s",
                     what, spec->public_key_file, spec->private_key_file);
        goto fail;
      }
    }
  }
  if (spec->cert_file != NULL) {
    if ((rc = load_cert(what, spec->cert_file, &k->cert, err)) != 0) goto fail;
    EVP_PKEY *cpub = X509_get0_pubkey(k->cert);
    if (cpub == NULL) {
      rc = tb__ossl_err(err, TB_EPARSE, what);
      goto fail;
    }
    if ((rc = check_kind(what, spec->cert_file, cpub, spec->kind, err)) != 0) goto fail;
    if (k->pkey == NULL) {
      if (EVP_PKEY_up_ref(cpub) != 1) {
        rc = tb__ossl_err(err, TB_ECRYPTO, what);
        goto fail;
      }
      k->pkey = cpub;
    } else if (EVP_PKEY_eq(k->pkey, cpub) != 1) {
      ERR_clear_error();
      rc = tb_errf(err, TB_ECONFIG, "%s: certificate %s is not for the key in %s", what,
                   spec->cert_file,
                   spec->private_key_file ? spec->private_key_file : spec->public_key_file);
      goto fail;
    }
  }
  if ((rc = fill_info(k, what, err)) != 0) goto fail;
  if (grow((void **)&ks->keys, &ks->cap_keys, ks->nkeys) != 0) {
    rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
    goto fail;
  }
  ks->keys[ks->nkeys++] = k;
  return 0;
fail:
  key_free(k);
  ERR_clear_error();
  return rc;
}

int tb_keystore_add_ca(struct tb_keystore *ks, const char *name, const char *pem_file,
                       char *err) {
  if (ks == NULL || name == NULL || name[0] == '\0' || pem_file == NULL)
    return tb_errf(err, TB_EINVAL, "keystore: a CA needs a name and a file");
  char what[160];
  snprintf(what, sizeof what, "CA \"%s\"", name);
  if (find_ca(ks, name) != NULL)
    return tb_errf(err, TB_EEXISTS, "%s: a CA with this name is already loaded", what);
  char *buf = NULL;
  size_t len = 0;
  int rc = read_file(what, pem_file, 0, &buf, &len, err);
  if (rc != 0) return rc;
  struct tb_ca *ca = calloc(1, sizeof *ca);
  BIO *b = BIO_new_mem_buf(buf, (int)len);
  if (ca == NULL || b == NULL || (ca->name = strdup(name)) == NULL ||
      (ca->certs = sk_X509_new_null()) == NULL) {
    rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
    goto done;
  }
  X509 *c;
  while ((c = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (sk_X509_push(ca->certs, c) <= 0) {
      X509_free(c);
      rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
      goto done;
    }
  }
  /* The loop ends with "no start line" at the end of the file: expected;
   * anything else means a damaged certificate in the middle of the bundle. */
  unsigned long e = ERR_peek_last_error();
  if (e != 0 && ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
    char msg[TB_ERRMSG_MAX / 2];
    snprintf(msg, sizeof msg, "%s: %s: damaged certificate after %d good ones", what,
             pem_file, sk_X509_num(ca->certs));
    rc = tb__ossl_err(err, TB_EPARSE, msg);
    goto done;
  }
  ERR_clear_error();
  if (sk_X509_num(ca->certs) == 0) {
    rc = tb_errf(err, TB_EPARSE, "%s: %s holds no PEM certificate", what, pem_file);
    goto done;
  }
  /* The trust store for this CA alone: X509_STORE_new() has no lookups;
   * X509_STORE_set_default_paths/load_locations are never called. */
  if ((ca->store = X509_STORE_new()) == NULL) {
    rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
    goto done;
  }
  for (int i = 0; i < sk_X509_num(ca->certs); i++) {
    if (X509_STORE_add_cert(ca->store, sk_X509_value(ca->certs, i)) != 1) {
      char msg[TB_ERRMSG_MAX / 2];
      snprintf(msg, sizeof msg, "%s: %s: certificate %d cannot be added to the trust store",
               what, pem_file, i + 1);
      rc = tb__ossl_err(err, TB_EPARSE, msg);
      goto done;
    }
  }
  if (grow((void **)&ks->cas, &ks->cap_cas, ks->ncas) != 0) {
    rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
    goto done;
  }
  ks->cas[ks->ncas++] = ca;
  ca = NULL;
done:
  BIO_free(b);
  free(buf);
  ca_free(ca);
  ERR_clear_error();
  return rc;
}

int tb_keystore_key_info(const struct tb_keystore *ks, const char *name,
                         struct tb_key_info *out, char *err) {
  const struct tb_key *k;
  int rc = tb__keystore_find_key(ks, name, &k, err);
  if (rc != 0) return rc;
  *out = k->info;
  return 0;
}

size_t tb_keystore_key_count(const struct tb_keystore *ks) {
  return ks ? ks->nkeys : 0;
}

const char *tb_keystore_key_name(const struct tb_keystore *ks, size_t i) {
  return ks != NULL && i < ks->nkeys ? ks->keys[i]->name : NULL;
}
