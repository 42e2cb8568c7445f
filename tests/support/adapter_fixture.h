/*
 * tests/support/adapter_fixture.h — a real host for adapter tests.
 *
 * Makes the development PKI in a temporary directory (certs/make-dev-pki.sh),
 * loads the standard named keys into a keystore, builds the host services
 * table for a partner and loads an adapter .so from TB_ADAPTERS_DIR through
 * the real loader. Header-only: include it from one test_*.c file.
 *
 * Standard key names (the same as examples/tbgw.json):
 *   gw-rsa        our RSA signing key + certificate (lu-xml XML-DSig)
 *   gw-sm2        our SM2 key pair (yue-json signatures, envelope decryption)
 *   gw-ca         our CA (partners verify us with it)
 *   laizhou-ca, zhaoyuan-ca, wujiang-ca   each partner's CA
 *   laizhou-rsa, zhaoyuan-rsa             partner RSA signing keys (+cert), to forge partner messages in tests
 *   wujiang-sm2                           the partner's SM2 key pair (public half is what the gateway is configured with)
 *   wujiang-sm2-pub                       the partner's SM2 public key alone
 */
#ifndef TB_TESTS_ADAPTER_FIXTURE_H
#define TB_TESTS_ADAPTER_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "crypto/keystore.h"
#include "plugin/host.h"
#include "plugin/loader.h"

struct tb_adapter_fixture {
  char pki[512];                 /* the PKI directory */
  struct tb_keystore *keys;
  struct tb_plugin_host host;
  struct tb_adapter_lib lib;
  struct tb_adapter_instance inst;
};

static inline const char *tb_fixture_repo_root(void) {
  const char *r = getenv("TB_REPO_ROOT");
  return r ? r : ".";
}

static inline void tb_fixture_path(const struct tb_adapter_fixture *f, const char *rel, char *out,
                                   size_t size) {
  snprintf(out, size, "%s/%s", f->pki, rel);
}

static inline int tb_fixture_add_key(struct tb_adapter_fixture *f, const char *name,
                                     enum tb_key_kind kind, const char *priv, const char *pub,
                                     const char *cert) {
  char p1[600], p2[600], p3[600], err[TB_ERRMSG_MAX];
  if (priv) tb_fixture_path(f, priv, p1, sizeof p1);
  if (pub) tb_fixture_path(f, pub, p2, sizeof p2);
  if (cert) tb_fixture_path(f, cert, p3, sizeof p3);
  struct tb_key_spec spec = {.name = name, .kind = kind, .private_key_file = priv ? p1 : NULL,
                             .public_key_file = pub ? p2 : NULL, .cert_file = cert ? p3 : NULL,
                             .sm2_id = NULL};
  int rc = tb_keystore_add_key(f->keys, &spec, err);
  if (rc != 0) fprintf(stderr, "fixture: key %s: %s\n", name, err);
  return rc;
}

static inline int tb_fixture_add_ca(struct tb_adapter_fixture *f, const char *name,
                                    const char *rel) {
  char p[600], err[TB_ERRMSG_MAX];
  tb_fixture_path(f, rel, p, sizeof p);
  int rc = tb_keystore_add_ca(f->keys, name, p, err);
  if (rc != 0) fprintf(stderr, "fixture: ca %s: %s\n", name, err);
  return rc;
}

/* Makes the PKI (once per directory) and the keystore. 0 on success. */
static inline int tb_fixture_setup_keys(struct tb_adapter_fixture *f) {
  char err[TB_ERRMSG_MAX];
  memset(f, 0, sizeof *f);
  const char *tmp = getenv("TMPDIR");
  snprintf(f->pki, sizeof f->pki, "%s/tbgw-fixture-XXXXXX", tmp ? tmp : "/tmp");
  if (mkdtemp(f->pki) == NULL) return -1;
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "'%s/certs/make-dev-pki.sh' '%s' >/dev/null", tb_fixture_repo_root(),
           f->pki);
  if (system(cmd) != 0) return -1;
  if (tb_crypto_global_init(err) != 0 || tb_keystore_new(&f->keys, err) != 0) {
    fprintf(stderr, "fixture: %s\n", err);
    return -1;
  }
  int rc = 0;
  rc |= tb_fixture_add_key(f, "gw-rsa", TB_KEY_RSA, "gateway/sign-rsa.key", NULL,
                           "gateway/sign-rsa.pem");
  rc |= tb_fixture_add_key(f, "gw-sm2", TB_KEY_SM2, "gateway/sign-sm2.key", NULL, NULL);
  rc |= tb_fixture_add_ca(f, "gw-ca", "gateway/ca.pem");
  rc |= tb_fixture_add_ca(f, "laizhou-ca", "partners/laizhou/ca.pem");
  rc |= tb_fixture_add_ca(f, "zhaoyuan-ca", "partners/zhaoyuan/ca.pem");
  rc |= tb_fixture_add_ca(f, "wujiang-ca", "partners/wujiang/ca.pem");
  rc |= tb_fixture_add_key(f, "laizhou-rsa", TB_KEY_RSA, "partners/laizhou/sign-rsa.key", NULL,
                           "partners/laizhou/sign-rsa.pem");
  rc |= tb_fixture_add_key(f, "zhaoyuan-rsa", TB_KEY_RSA, "partners/zhaoyuan/sign-rsa.key", NULL,
                           "partners/zhaoyuan/sign-rsa.pem");
  rc |= tb_fixture_add_key(f, "wujiang-sm2", TB_KEY_SM2, "partners/wujiang/sign-sm2.key", NULL,
                           NULL);
  rc |= tb_fixture_add_key(f, "wujiang-sm2-pub", TB_KEY_SM2, NULL,
                           "partners/wujiang/sign-sm2.pub.pem", NULL);
  return rc;
}

/* Loads adapter `name` and initialises it for `partner` with settings. */
static inline int tb_fixture_load(struct tb_adapter_fixture *f, const char *name,
                                  const char *partner, const char *settings_json) {
  char err[TB_ERRMSG_MAX];
  const char *dir = getenv("TB_ADAPTERS_DIR");
  tb_plugin_host_init(&f->host, f->keys, partner, "430603");
  int rc = tb_adapter_lib_open(dir, name, &f->lib, err);
  if (rc == 0)
    rc = tb_adapter_instance_init(&f->inst, &f->lib, &f->host.table, settings_json,
                                  strlen(settings_json), err);
  if (rc != 0) fprintf(stderr, "fixture: %s\n", err);
  return rc;
}

static inline void tb_fixture_teardown(struct tb_adapter_fixture *f) {
  tb_adapter_instance_fini(&f->inst);
  tb_adapter_lib_close(&f->lib);
  tb_keystore_free(f->keys);
  f->keys = NULL;
  if (f->pki[0]) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->pki);
    if (system(cmd) != 0) fprintf(stderr, "fixture: could not remove %s\n", f->pki);
  }
}

#endif
