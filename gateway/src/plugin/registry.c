/*
 * Builds the partner side from the configuration (see registry.h): named
 * keys into a keystore, a check of the TLS files the client and the partner
 * listener will use, adapter libraries (one per distinct name) and one
 * initialised adapter instance per partner. Every failure unwinds all that
 * was built, so a refused start or reload leaves nothing loaded.
 */
#include "plugin/registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define PEM_FILE_MAX (1024 * 1024)

/* ---- PEM files ------------------------------------------------------------ */

/* Reads a whole PEM file into a NUL-terminated heap buffer. A private key
 * must be a regular file readable by its owner only (checked on the open
 * descriptor, so the file checked is the file read). what names the key in
 * messages. The caller cleanses and frees *buf. */
static int read_pem(const char *what, const char *path, int is_private, char **buf, size_t *len,
                    char *err) {
  *buf = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    return tb_errf(err, e == ENOENT ? TB_ENOTFOUND : TB_EIO, "%s: cannot open %s: %s", what,
                   path, strerror(e));
  }
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st) != 0) {
    rc = tb_errf(err, TB_EIO, "%s: cannot stat %s: %s", what, path, strerror(errno));
  } else if (!S_ISREG(st.st_mode)) {
    rc = tb_errf(err, TB_ECONFIG, "%s: %s is not a regular file", what, path);
  } else if (is_private && (st.st_mode & 077) != 0) {
    rc = tb_errf(err, TB_ECONFIG,
                 "%s: private key file %s has mode %04o and is readable by group/others; run: "
                 "chmod 600 %s",
                 what, path, (unsigned)(st.st_mode & 07777), path);
  } else if (st.st_size > PEM_FILE_MAX) {
    rc = tb_errf(err, TB_ELIMIT, "%s: %s is larger than %d bytes", what, path, PEM_FILE_MAX);
  }
  if (rc != 0) {
    close(fd);
    return rc;
  }
  size_t cap = (size_t)st.st_size + 1, n = 0;
  char *p = malloc(cap);
  if (p == NULL) {
    close(fd);
    return tb_errf(err, TB_ENOMEM, "%s: out of memory reading %s", what, path);
  }
  while (n < cap - 1) {
    ssize_t r = read(fd, p + n, cap - 1 - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
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
  return -1; /* never prompt: an encrypted key is a configuration error */
}

static int load_private_key(const char *what, const char *path, EVP_PKEY **out, char *err) {
  char *buf;
  size_t len;
  int rc = read_pem(what, path, 1, &buf, &len, err);
  if (rc != 0) return rc;
  BIO *b = BIO_new_mem_buf(buf, (int)len);
  *out = b ? PEM_read_bio_PrivateKey(b, NULL, refuse_password, NULL) : NULL;
  BIO_free(b);
  OPENSSL_clear_free(buf, len + 1);
  ERR_clear_error();
  if (*out == NULL)
    return tb_errf(err, TB_EPARSE, "%s: %s holds no unencrypted PEM private key", what, path);
  return 0;
}

/* Every certificate of a PEM file (at least one). */
static int load_certs(const char *what, const char *path, STACK_OF(X509) **out, char *err) {
  char *buf;
  size_t len;
  int rc = read_pem(what, path, 0, &buf, &len, err);
  if (rc != 0) return rc;
  STACK_OF(X509) *certs = sk_X509_new_null();
  BIO *b = BIO_new_mem_buf(buf, (int)len);
  if (certs == NULL || b == NULL) {
    rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
  } else {
    X509 *c;
    while ((c = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
      if (sk_X509_push(certs, c) <= 0) {
        X509_free(c);
        rc = tb_errf(err, TB_ENOMEM, "%s: out of memory", what);
        break;
      }
    }
    if (rc == 0 && sk_X509_num(certs) == 0)
      rc = tb_errf(err, TB_EPARSE, "%s: %s holds no PEM certificate", what, path);
  }
  ERR_clear_error();
  BIO_free(b);
  free(buf);
  if (rc != 0) {
    sk_X509_pop_free(certs, X509_free);
    return rc;
  }
  *out = certs;
  return 0;
}

static int64_t asn1_time_unix(const ASN1_TIME *t) {
  int days = 0, secs = 0;
  ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
  int ok = epoch != NULL && ASN1_TIME_diff(&days, &secs, epoch, t) == 1;
  ASN1_TIME_free(epoch);
  ERR_clear_error();
  return ok ? (int64_t)days * 86400 + secs : 0;
}

static void hex(const unsigned char *p, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[p[i] >> 4];
    out[2 * i + 1] = digits[p[i] & 15];
  }
  out[2 * n] = '\0';
}

static void subject_text(X509 *cert, char *out, size_t cap) {
  out[0] = '\0';
  BIO *b = BIO_new(BIO_s_mem());
  if (b == NULL) return;
  unsigned long flags = XN_FLAG_RFC2253 & ~(unsigned long)ASN1_STRFLGS_ESC_MSB;
  if (X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, flags) >= 0) {
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

/* ---- keys ------------------------------------------------------------------ */

/* A CA bundle's facts for logs and readiness: the first certificate's
 * fingerprint and subject, the earliest expiry of all. */
static int ca_info(const struct tb_config_key *k, struct tb_plugin_key *info, char *err) {
  char what[128];
  snprintf(what, sizeof what, "CA \"%s\"", k->name);
  STACK_OF(X509) *certs = NULL;
  int rc = load_certs(what, k->certificate, &certs, err);
  if (rc != 0) return rc;
  X509 *first = sk_X509_value(certs, 0);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (X509_digest(first, EVP_sha256(), md, &mdlen) == 1 && mdlen == 32)
    hex(md, 32, info->fingerprint);
  subject_text(first, info->subject, sizeof info->subject);
  for (int i = 0; i < sk_X509_num(certs); i++) {
    int64_t t = asn1_time_unix(X509_get0_notAfter(sk_X509_value(certs, i)));
    if (t != 0 && (info->not_after == 0 || t < info->not_after)) info->not_after = t;
  }
  sk_X509_pop_free(certs, X509_free);
  ERR_clear_error();
  return 0;
}

int tb_plugin_keys_load(const struct tb_config *cfg, struct tb_plugin_keys **out, char *err) {
  *out = NULL;
  struct tb_plugin_keys *ks = calloc(1, sizeof *ks);
  if (ks == NULL) return tb_errf(err, TB_ENOMEM, "keys: out of memory");
  int rc = tb_keystore_new(&ks->store, err);
  if (rc == 0 && cfg->key_count > 0) {
    ks->keys = calloc(cfg->key_count, sizeof *ks->keys);
    if (ks->keys == NULL) rc = tb_errf(err, TB_ENOMEM, "keys: out of memory");
  }
  for (size_t i = 0; rc == 0 && i < cfg->key_count; i++) {
    const struct tb_config_key *k = &cfg->keys[i];
    struct tb_plugin_key *info = &ks->keys[i];
    info->name = k->name;
    info->kind = k->kind;
    if (strcmp(k->kind, "ca") == 0) {
      rc = tb_keystore_add_ca(ks->store, k->name, k->certificate, err);
      if (rc == 0) rc = ca_info(k, info, err);
    } else {
      struct tb_key_spec spec = {.name = k->name,
                                 .private_key_file = k->private_key,
                                 .public_key_file = k->public_key,
                                 .cert_file = k->certificate,
                                 .sm2_id = k->sm2_id};
      rc = tb_key_kind_parse(k->kind, &spec.kind, err);
      if (rc == 0) rc = tb_keystore_add_key(ks->store, &spec, err);
      struct tb_key_info ki;
      if (rc == 0) rc = tb_keystore_key_info(ks->store, k->name, &ki, err);
      if (rc == 0) {
        memcpy(info->fingerprint, ki.fingerprint, sizeof info->fingerprint);
        info->not_after = ki.cert_not_after;
        snprintf(info->subject, sizeof info->subject, "%s", ki.cert_subject);
      }
    }
    ks->count = i + 1;
  }
  if (rc != 0) {
    tb_plugin_keys_free(ks);
    return rc;
  }
  *out = ks;
  return 0;
}

void tb_plugin_keys_free(struct tb_plugin_keys *keys) {
  if (keys == NULL) return;
  tb_keystore_free(keys->store);
  free(keys->keys);
  free(keys);
}

const struct tb_plugin_key *tb_plugin_keys_expired(const struct tb_plugin_keys *keys,
                                                   int64_t now_s) {
  for (size_t i = 0; keys != NULL && i < keys->count; i++)
    if (keys->keys[i].not_after != 0 && keys->keys[i].not_after < now_s) return &keys->keys[i];
  return NULL;
}

/* ---- TLS files ------------------------------------------------------------- */

/* A certificate (chain) file and its private key: both load, the key is
 * private (0600) and belongs to the first certificate. */
static int check_cert_and_key(const char *what, const char *cert_path, const char *key_path,
                              char *err) {
  STACK_OF(X509) *certs = NULL;
  EVP_PKEY *pk = NULL;
  int rc = load_certs(what, cert_path, &certs, err);
  if (rc == 0) rc = load_private_key(what, key_path, &pk, err);
  if (rc == 0 && X509_check_private_key(sk_X509_value(certs, 0), pk) != 1)
    rc = tb_errf(err, TB_ECONFIG, "%s: private key %s does not belong to certificate %s", what,
                 key_path, cert_path);
  ERR_clear_error();
  EVP_PKEY_free(pk);
  sk_X509_pop_free(certs, X509_free);
  return rc;
}

static int check_ca_file(const char *what, const char *path, char *err) {
  STACK_OF(X509) *certs = NULL;
  int rc = load_certs(what, path, &certs, err);
  sk_X509_pop_free(certs, X509_free);
  return rc;
}

static int check_tls_files(const struct tb_config *cfg, char *err) {
  int rc = 0;
  if (cfg->partner_api_set && cfg->partner_api_tls_certificate && cfg->partner_api_tls_private_key)
    rc = check_cert_and_key("partner_api.tls", cfg->partner_api_tls_certificate,
                            cfg->partner_api_tls_private_key, err);
  for (size_t i = 0; rc == 0 && i < cfg->partner_count; i++) {
    const struct tb_config_partner *p = &cfg->partners[i];
    char what[128];
    if (p->tls.ca) {
      snprintf(what, sizeof what, "partner \"%s\": tls.ca", p->name);
      rc = check_ca_file(what, p->tls.ca, err);
    }
    if (rc == 0 && p->tls.client_ca) {
      snprintf(what, sizeof what, "partner \"%s\": tls.client_ca", p->name);
      rc = check_ca_file(what, p->tls.client_ca, err);
    }
    if (rc == 0 && p->tls.client_certificate && p->tls.client_key) {
      snprintf(what, sizeof what, "partner \"%s\": tls.client_certificate/client_key", p->name);
      rc = check_cert_and_key(what, p->tls.client_certificate, p->tls.client_key, err);
    }
  }
  return rc;
}

/* ---- the registry ---------------------------------------------------------- */

static const struct tb_adapter_lib *find_lib(const struct tb_plugin_registry *reg,
                                             const char *name) {
  for (size_t i = 0; i < reg->lib_count; i++)
    if (strcmp(reg->libs[i].name, name) == 0) return &reg->libs[i];
  return NULL;
}

int tb_plugin_registry_load(const struct tb_config *cfg, const struct tb_keystore *keys,
                            struct tb_plugin_registry **out, char *err) {
  *out = NULL;
  int rc = check_tls_files(cfg, err);
  if (rc != 0) return rc;
  struct tb_plugin_registry *reg = calloc(1, sizeof *reg);
  if (reg == NULL) return tb_errf(err, TB_ENOMEM, "adapters: out of memory");
  reg->keys = keys;
  if (cfg->partner_count > 0) {
    /* Both arrays are sized once and never move: host tables point into
     * partners[], instances point into libs[]. */
    reg->libs = calloc(cfg->partner_count, sizeof *reg->libs);
    reg->partners = calloc(cfg->partner_count, sizeof *reg->partners);
    if (reg->libs == NULL || reg->partners == NULL) {
      tb_plugin_registry_free(reg);
      return tb_errf(err, TB_ENOMEM, "adapters: out of memory");
    }
  }
  /* Every library first, so a broken adapter is reported before any
   * partner's init runs. */
  for (size_t i = 0; i < cfg->partner_count; i++) {
    const char *name = cfg->partners[i].adapter;
    if (find_lib(reg, name) != NULL) continue;
    rc = tb_adapter_lib_open(cfg->adapters_dir, name, &reg->libs[reg->lib_count], err);
    if (rc != 0) {
      tb_plugin_registry_free(reg);
      return rc;
    }
    reg->lib_count++;
  }
  for (size_t i = 0; i < cfg->partner_count; i++) {
    const struct tb_config_partner *pc = &cfg->partners[i];
    struct tb_plugin_partner *p = &reg->partners[i];
    reg->partner_count = i + 1;
    p->cfg = pc;
    p->lib = find_lib(reg, pc->adapter);
    tb_plugin_host_init(&p->host, keys, pc->name, cfg->node_region);
    rc = tb_adapter_instance_init(&p->inst, p->lib, &p->host.table, pc->settings_json,
                                  strlen(pc->settings_json), err);
    if (rc != 0) {
      tb_plugin_registry_free(reg);
      return rc;
    }
    p->ready = 1;
  }
  *out = reg;
  return 0;
}

void tb_plugin_registry_free(struct tb_plugin_registry *reg) {
  if (reg == NULL) return;
  for (size_t i = reg->partner_count; i-- > 0;)
    if (reg->partners[i].ready) tb_adapter_instance_fini(&reg->partners[i].inst);
  for (size_t i = reg->lib_count; i-- > 0;) tb_adapter_lib_close(&reg->libs[i]);
  free(reg->partners);
  free(reg->libs);
  free(reg);
}

struct tb_plugin_partner *tb_plugin_registry_find_partner(const struct tb_plugin_registry *reg,
                                                          const char *name) {
  for (size_t i = 0; reg != NULL && name != NULL && i < reg->partner_count; i++)
    if (strcmp(reg->partners[i].cfg->name, name) == 0) return &reg->partners[i];
  return NULL;
}

size_t tb_plugin_registry_ready_count(const struct tb_plugin_registry *reg) {
  size_t n = 0;
  for (size_t i = 0; reg != NULL && i < reg->partner_count; i++) n += reg->partners[i].ready != 0;
  return n;
}
