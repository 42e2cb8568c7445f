/* The keystore (crypto/keystore.h): which key files it loads, which it
 * refuses and how it says so, and what it reports about a key — checked
 * against the openssl CLI. Keys are generated with `openssl` at start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../crypto/testutil.h"
#include "crypto/crypto.h"
#include "crypto/keystore.h"

static int setup_keys(void **state) {
  (void)state;
  if (tu_setup_dir("ks") != 0) return -1;
  int rc = 0;
  rc |= tu_run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s",
               tu_path("rsa.key"));
  rc |= tu_run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out %s",
               tu_path("rsa1024.key"));
  /* traditional (PKCS#1 "RSA PRIVATE KEY" PEM) form of the same key */
  rc |= tu_run("openssl pkey -in %s -traditional -out %s", tu_path("rsa.key"),
               tu_path("rsa-trad.key"));
  rc |= tu_run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s",
               tu_path("p256.key"));
  rc |= tu_run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out %s",
               tu_path("p384.key"));
  rc |= tu_run("openssl genpkey -algorithm ED25519 -out %s", tu_path("ed.key"));
  rc |= tu_run("openssl genpkey -algorithm SM2 -out %s", tu_path("sm2.key"));
  rc |= tu_run("openssl pkey -in %s -pubout -out %s", tu_path("sm2.key"), tu_path("sm2.pub"));
  rc |= tu_run("openssl pkey -in %s -pubout -out %s", tu_path("rsa.key"), tu_path("rsa.pub"));
  rc |= tu_run("openssl pkey -in %s -pubout -out %s", tu_path("p256.key"), tu_path("p256.pub"));
  rc |= tu_run("openssl req -x509 -new -key %s -sha256 -days 30 -subj '/O=tbgw test/CN=signer' "
               "-out %s", tu_path("rsa.key"), tu_path("rsa.pem"));
  rc |= tu_run("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s",
               tu_path("other.key"));
  rc |= tu_run("openssl req -x509 -new -key %s -sha256 -days 30 -subj '/CN=other' -out %s",
               tu_path("other.key"), tu_path("other.pem"));
  rc |= tu_run("openssl pkey -in %s -aes256 -passout pass:secret -out %s", tu_path("rsa.key"),
               tu_path("rsa-enc.key"));
  rc |= tu_run("cat %s %s > %s", tu_path("rsa.pem"), tu_path("other.pem"), tu_path("bundle.pem"));
  rc |= tu_run("chmod 600 %s/*.key", tu_dir);
  return rc == 0 ? 0 : -1;
}

static int teardown_keys(void **state) {
  (void)state;
  tu_cleanup_dir();
  return 0;
}

static int add(struct tb_keystore *ks, const char *name, enum tb_key_kind kind,
               const char *priv, const char *pub, const char *cert, char *err) {
  struct tb_key_spec s = {name, kind, priv, pub, cert, NULL};
  return tb_keystore_add_key(ks, &s, err);
}

static void test_refuses_group_readable_private_key_with_chmod_hint(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_keystore *ks;
  assert_int_equal(tb_keystore_new(&ks, err), 0);
  const char *p = tu_path("loose.key");
  assert_int_equal(tu_run("cp %s %s && chmod 644 %s", tu_path("rsa.key"), p, p), 0);
  assert_int_equal(add(ks, "k", TB_KEY_RSA, p, NULL, NULL, err), TB_ECONFIG);
  assert_non_null(strstr(err, p));
  assert_non_null(strstr(err, "0644"));
  assert_non_null(strstr(err, "chmod 600"));
  /* 0640: group-readable is refused too */
  assert_int_equal(tu_run("chmod 640 %s", p), 0);
  assert_int_equal(add(ks, "k", TB_KEY_RSA, p, NULL, NULL, err), TB_ECONFIG);
  assert_non_null(strstr(err, "0640"));
  /* and after the fix the same file loads */
  assert_int_equal(tu_run("chmod 600 %s", p), 0);
  assert_int_equal(add(ks, "k", TB_KEY_RSA, p, NULL, NULL, err), 0);
  assert_int_equal(tb_keystore_key_count(ks), 1);
  tb_keystore_free(ks);
}

static void test_refuses_non_regular_and_missing_files(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_keystore *ks;
  assert_int_equal(tb_keystore_new(&ks, err), 0);
  const char *d = tu_path("adir");
  assert_int_equal(tu_run("mkdir -p %s && chmod 700 %s", d, d), 0);
  assert_int_equal(add(ks, "k", TB_KEY_RSA, d, NULL, NULL, err), TB_ECONFIG);
  assert_non_null(strstr(err, "not a regular file"));
  const char *m = tu_path("missing.key");
  assert_int_equal(add(ks, "k", TB_KEY_RSA, m, NULL, NULL, err), TB_ENOTFOUND);
  assert_non_null(strstr(err, m));
  assert_non_null(strstr(err, "No such file"));
  assert_int_equal(tb_keystore_add_ca(ks, "ca", m, err), TB_ENOTFOUND);
  assert_int_equal(tb_keystore_key_count(ks), 0);
  tb_keystore_free(ks);
}

static void test_loads_every_kind_and_refuses_wrong_kind(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_keystore *ks;
  assert_int_equal(tb_keystore_new(&ks, err), 0);
  assert_int_equal(add(ks, "rsa", TB_KEY_RSA, tu_path("rsa.key"), NULL, NULL, err), 0);
  assert_int_equal(add(ks, "rsa-trad", TB_KEY_RSA, tu_path("rsa-trad.key"), NULL, NULL, err), 0);
  assert_int_equal(add(ks, "p256", TB_KEY_EC_P256, tu_path("p256.key"), NULL, NULL, err), 0);
  assert_int_equal(add(ks, "ed", TB_KEY_ED25519, tu_path("ed.key"), NULL, NULL, err), 0);
  /* OpenSSL 3.0 must load `genpkey -algorithm SM2` output as an SM2 key,
   * not as a plain EC key (which would sign ECDSA). */
  assert_int_equal(add(ks, "sm2", TB_KEY_SM2, tu_path("sm2.key"), NULL, NULL, err), 0);
  assert_int_equal(add(ks, "sm2-pub", TB_KEY_SM2, NULL, tu_path("sm2.pub"), NULL, err), 0);

  assert_int_equal(add(ks, "x", TB_KEY_RSA, tu_path("p256.key"), NULL, NULL, err), TB_ECONFIG);
  assert_non_null(strstr(err, "\"ec-p256\" key but kind \"rsa\""));
  assert_int_equal(add(ks, "x", TB_KEY_EC_P256, tu_path("sm2.key"), NULL, NULL, err), TB_ECONFIG);
  assert_non_null(strstr(err, "\"sm2\" key"));
  assert_int_equal(add(ks, "x", TB_KEY_SM2, tu_path("p256.key"), NULL, NULL, err), TB_ECONFIG);
  assert_int_equal(add(ks, "x", TB_KEY_EC_P256, tu_path("p384.key"), NULL, NULL, err), TB_ECONFIG);
  assert_non_null(strstr(err, "secp384r1"));
  assert_int_equal(add(ks, "x", TB_KEY_RSA, tu_path("rsa1024.key"), NULL, NULL, err), TB_ECONFIG);
  assert_non_null(strstr(err, "2048"));
  assert_int_equal(add(ks, "x", TB_KEY_ED25519, NULL, tu_path("p256.pub"), NULL, err), TB_ECONFIG);
  /* a public key file is not a private key */
  assert_int_equal(add(ks, "x", TB_KEY_RSA, tu_path("rsa.pub"), NULL, NULL, err), TB_ECONFIG);
  assert_int_equal(tu_run("chmod 600 %s", tu_path("rsa.pub")), 0);
  assert_int_equal(add(ks, "x", TB_KEY_RSA, tu_path("rsa.pub"), NULL, NULL, err), TB_EPARSE);
  assert_int_equal(add(ks, "x", TB_KEY_RSA, tu_path("rsa-enc.key"), NULL, NULL, err), TB_EPARSE);
  assert_non_null(strstr(err, "encrypted"));
  assert_int_equal(add(ks, "rsa", TB_KEY_RSA, tu_path("rsa.key"), NULL, NULL, err), TB_EEXISTS);
  struct tb_key_spec bad_id = {"x", TB_KEY_RSA, tu_path("rsa.key"), NULL, NULL, "ALICE"};
  assert_int_equal(tb_keystore_add_key(ks, &bad_id, err), TB_ECONFIG);
  assert_int_equal(tb_keystore_key_count(ks), 6);

  struct tb_key_info in;
  assert_int_equal(tb_keystore_key_info(ks, "sm2", &in, err), 0);
  assert_int_equal(in.kind, TB_KEY_SM2);
  assert_int_equal(in.has_private, 1);
  assert_int_equal(tb_keystore_key_info(ks, "sm2-pub", &in, err), 0);
  assert_int_equal(in.has_private, 0);
  assert_int_equal(tb_keystore_key_info(ks, "nope", &in, err), TB_ENOTFOUND);
  assert_non_null(strstr(err, "nope"));
  tb_keystore_free(ks);
}

static void test_certificate_must_match_key(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_keystore *ks;
  assert_int_equal(tb_keystore_new(&ks, err), 0);
  assert_int_equal(add(ks, "k", TB_KEY_RSA, tu_path("rsa.key"), NULL, tu_path("other.pem"), err),
                   TB_ECONFIG);
  assert_non_null(strstr(err, "is not for the key"));
  assert_int_equal(add(ks, "k", TB_KEY_RSA, tu_path("rsa.key"), tu_path("rsa.pub"),
                       tu_path("rsa.pem"), err), 0);
  assert_int_equal(add(ks, "c", TB_KEY_RSA, NULL, NULL, tu_path("other.pem"), err), 0);
  tb_keystore_free(ks);
}

/* Fingerprint = SHA-256 of the DER SPKI, notAfter = the certificate's, both
 * as the openssl CLI computes them. */
static void test_info_matches_openssl(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "", want[128];
  struct tb_keystore *ks;
  assert_int_equal(tb_keystore_new(&ks, err), 0);
  assert_int_equal(add(ks, "k", TB_KEY_RSA, tu_path("rsa.key"), NULL, tu_path("rsa.pem"), err), 0);
  struct tb_key_info in;
  assert_int_equal(tb_keystore_key_info(ks, "k", &in, err), 0);
  assert_int_equal(tu_run_capture(want, sizeof want,
                                  "openssl pkey -in %s -pubout -outform DER | sha256sum | cut -c1-64",
                                  tu_path("rsa.key")), 0);
  assert_string_equal(in.fingerprint, want);
  assert_int_equal(tu_run_capture(want, sizeof want,
                                  "date -u -d \"$(openssl x509 -in %s -noout -enddate | cut -d= -f2)\" +%%s",
                                  tu_path("rsa.pem")), 0);
  assert_int_equal(in.cert_not_after, strtoll(want, NULL, 10));
  assert_int_equal(in.has_cert, 1);
  assert_non_null(strstr(in.cert_subject, "CN=signer"));
  assert_string_equal(tb_keystore_key_name(ks, 0), "k");
  assert_null(tb_keystore_key_name(ks, 1));
  tb_keystore_free(ks);
}

static void test_ca_bundle_loads_all_certificates(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_keystore *ks;
  assert_int_equal(tb_keystore_new(&ks, err), 0);
  assert_int_equal(tb_keystore_add_ca(ks, "peer", tu_path("bundle.pem"), err), 0);
  assert_int_equal(tb_keystore_add_ca(ks, "peer", tu_path("bundle.pem"), err), TB_EEXISTS);
  assert_int_equal(tb_keystore_add_ca(ks, "bad", tu_path("rsa.pub"), err), TB_EPARSE);
  tb_keystore_free(ks);
}

static void test_kind_and_alg_names_round_trip(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  enum tb_key_kind k;
  assert_int_equal(tb_key_kind_parse("ec-p256", &k, err), 0);
  assert_int_equal(k, TB_KEY_EC_P256);
  assert_string_equal(tb_key_kind_name(TB_KEY_SM2), "sm2");
  assert_int_equal(tb_key_kind_parse("ecdsa", &k, err), TB_EINVAL);
  assert_non_null(strstr(err, "rsa, ec-p256, ed25519, sm2"));
  enum tb_sig_alg a;
  assert_int_equal(tb_sig_alg_parse("sm2-sm3", &a, err), 0);
  assert_int_equal(a, TB_SIG_SM2_SM3);
  assert_int_equal(tb_sig_alg_parse("rsa-sha1", &a, err), TB_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_refuses_group_readable_private_key_with_chmod_hint),
      cmocka_unit_test(test_refuses_non_regular_and_missing_files),
      cmocka_unit_test(test_loads_every_kind_and_refuses_wrong_kind),
      cmocka_unit_test(test_certificate_must_match_key),
      cmocka_unit_test(test_info_matches_openssl),
      cmocka_unit_test(test_ca_bundle_loads_all_certificates),
      cmocka_unit_test(test_kind_and_alg_names_round_trip),
  };
  return cmocka_run_group_tests(tests, setup_keys, teardown_keys);
}
