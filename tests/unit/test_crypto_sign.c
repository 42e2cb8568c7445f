/* Signatures with named keys (crypto/crypto.h), every algorithm in both
 * directions against the openssl CLI: what we sign, `openssl` verifies;
 * what `openssl` signs, we verify; tampered data fails on both sides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../crypto/testutil.h"
#include "crypto/crypto.h"
#include "crypto/keystore.h"

static struct tb_keystore *ks;
static const char data[] = "AppId\n1714960800000\n0123456789abcdef0123456789abcdef\nbody";

/* One row per algorithm: key file stem, kind, and how the CLI signs and
 * verifies it (%1$s key, %2$s data, %3$s sig for sign; pub, data, sig for
 * verify). */
struct alg_case {
  const char *stem;
  enum tb_key_kind kind;
  enum tb_sig_alg alg;
  const char *gen;
  const char *cli_sign;
  const char *cli_verify;
};

#define DGST_SIGN(opts) "openssl dgst -sha256 " opts " -sign %1$s -out %3$s %2$s"
#define DGST_VERIFY(opts) "openssl dgst -sha256 " opts " -verify %1$s -signature %3$s %2$s"
#define PSS "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest -sigopt rsa_mgf1_md:sha256"
#define SM2OPT "-rawin -digest sm3 -pkeyopt distid:1234567812345678"

static const struct alg_case cases[] = {
    {"rsa", TB_KEY_RSA, TB_SIG_RSA_PKCS1_SHA256,
     "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s", DGST_SIGN(""),
     DGST_VERIFY("")},
    {"rsa", TB_KEY_RSA, TB_SIG_RSA_PSS_SHA256, NULL, DGST_SIGN(PSS), DGST_VERIFY(PSS)},
    {"p256", TB_KEY_EC_P256, TB_SIG_ECDSA_P256_SHA256,
     "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s", DGST_SIGN(""),
     DGST_VERIFY("")},
    {"ed", TB_KEY_ED25519, TB_SIG_ED25519, "openssl genpkey -algorithm ED25519 -out %s",
     "openssl pkeyutl -sign -inkey %1$s -rawin -in %2$s -out %3$s",
     "openssl pkeyutl -verify -pubin -inkey %1$s -rawin -in %2$s -sigfile %3$s"},
    {"sm2", TB_KEY_SM2, TB_SIG_SM2_SM3, "openssl genpkey -algorithm SM2 -out %s",
     "openssl pkeyutl -sign -inkey %1$s " SM2OPT " -in %2$s -out %3$s",
     "openssl pkeyutl -verify -pubin -inkey %1$s " SM2OPT " -in %2$s -sigfile %3$s"},
};
#define NCASES (sizeof cases / sizeof cases[0])

static int setup(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  if (tu_setup_dir("sign") != 0 || tb_keystore_new(&ks, err) != 0) return -1;
  for (size_t i = 0; i < NCASES; i++) {
    const struct alg_case *c = &cases[i];
    if (c->gen == NULL) continue;
    char key[512], pub[512];
    snprintf(key, sizeof key, "%s", tu_path("%s.key", c->stem));
    snprintf(pub, sizeof pub, "%s", tu_path("%s.pub", c->stem));
    if (tu_run(c->gen, key) != 0 || tu_run("chmod 600 %s", key) != 0 ||
        tu_run("openssl pkey -in %s -pubout -out %s", key, pub) != 0)
      return -1;
    struct tb_key_spec s = {c->stem, c->kind, key, NULL, NULL, NULL};
    if (tb_keystore_add_key(ks, &s, err) != 0) {
      fprintf(stderr, "%s\n", err);
      return -1;
    }
    char pubname[64];
    snprintf(pubname, sizeof pubname, "%s-pub", c->stem);
    struct tb_key_spec sp = {pubname, c->kind, NULL, pub, NULL, NULL};
    if (tb_keystore_add_key(ks, &sp, err) != 0) return -1;
  }
  if (tu_write(tu_path("data"), data, strlen(data)) != 0) return -1;
  if (tu_write(tu_path("tampered"), "X", 1) != 0) return -1;
  return tu_run("cp %s %s && printf x >> %s", tu_path("data"), tu_path("tampered"),
                tu_path("tampered"));
}

static int teardown(void **state) {
  (void)state;
  tb_keystore_free(ks);
  tu_cleanup_dir();
  return 0;
}

static void test_ours_verify_with_openssl_cli(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  for (size_t i = 0; i < NCASES; i++) {
    const struct alg_case *c = &cases[i];
    unsigned char sig[TB_CRYPTO_SIG_MAX];
    size_t n = sizeof sig;
    assert_int_equal(tb_crypto_sign(ks, c->stem, c->alg, data, strlen(data), sig, &n, err), 0);
    const char *sigf = tu_path("ours-%zu.sig", i);
    assert_int_equal(tu_write(sigf, sig, n), 0);
    char pub[512];
    snprintf(pub, sizeof pub, "%s", tu_path("%s.pub", c->stem));
    if (tu_run(c->cli_verify, pub, tu_path("data"), sigf) != 0)
      fail_msg("openssl rejects our %s signature", tb_sig_alg_name(c->alg));
    /* the same check fails on tampered data: the CLI check can fail */
    if (tu_run(c->cli_verify, pub, tu_path("tampered"), sigf) == 0)
      fail_msg("openssl accepts our %s signature on tampered data", tb_sig_alg_name(c->alg));
    /* and we verify our own, with the private and with the public-only entry */
    char pubname[64];
    snprintf(pubname, sizeof pubname, "%s-pub", c->stem);
    assert_int_equal(tb_crypto_verify(ks, c->stem, c->alg, data, strlen(data), sig, n, err), 0);
    assert_int_equal(tb_crypto_verify(ks, pubname, c->alg, data, strlen(data), sig, n, err), 0);
  }
}

static void test_openssl_cli_signatures_verify_with_ours(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  for (size_t i = 0; i < NCASES; i++) {
    const struct alg_case *c = &cases[i];
    const char *sigf = tu_path("cli-%zu.sig", i);
    char key[512];
    snprintf(key, sizeof key, "%s", tu_path("%s.key", c->stem));
    assert_int_equal(tu_run(c->cli_sign, key, tu_path("data"), sigf), 0);
    size_t n;
    unsigned char *sig = tu_read(sigf, &n);
    assert_non_null(sig);
    char pubname[64];
    snprintf(pubname, sizeof pubname, "%s-pub", c->stem);
    int rc = tb_crypto_verify(ks, pubname, c->alg, data, strlen(data), sig, n, err);
    if (rc != 0) fail_msg("%s: %s", tb_sig_alg_name(c->alg), err);
    /* tampered data, tampered signature */
    char bad[sizeof data];
    memcpy(bad, data, sizeof data);
    bad[0] ^= 1;
    assert_int_equal(tb_crypto_verify(ks, pubname, c->alg, bad, strlen(bad), sig, n, err),
                     TB_EAUTH);
    sig[n / 2] ^= 0x40;
    assert_int_equal(tb_crypto_verify(ks, pubname, c->alg, data, strlen(data), sig, n, err),
                     TB_EAUTH);
    free(sig);
  }
}

/* PKCS#1 v1.5 is deterministic: ours must equal the CLI's byte for byte. */
static void test_rsa_pkcs1_matches_cli_bytes(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  unsigned char sig[TB_CRYPTO_SIG_MAX];
  size_t n = sizeof sig;
  assert_int_equal(tb_crypto_sign(ks, "rsa", TB_SIG_RSA_PKCS1_SHA256, data, strlen(data), sig,
                                  &n, err), 0);
  assert_int_equal(tu_run(DGST_SIGN(""), tu_path("rsa.key"), tu_path("data"), tu_path("det.sig")),
                   0);
  size_t m;
  unsigned char *cli = tu_read(tu_path("det.sig"), &m);
  assert_non_null(cli);
  assert_int_equal(m, n);
  assert_memory_equal(cli, sig, n);
  free(cli);
}

static void test_sm2_signer_id_is_part_of_the_signature(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_key_spec s = {"sm2-alice", TB_KEY_SM2, tu_path("sm2.key"), NULL, NULL,
                          "ALICE123@YAHOO.COM"};
  struct tb_keystore *k2;
  assert_int_equal(tb_keystore_new(&k2, err), 0);
  assert_int_equal(tb_keystore_add_key(k2, &s, err), 0);
  unsigned char sig[TB_CRYPTO_SIG_MAX];
  size_t n = sizeof sig;
  assert_int_equal(tb_crypto_sign(k2, "sm2-alice", TB_SIG_SM2_SM3, data, strlen(data), sig, &n,
                                  err), 0);
  assert_int_equal(tu_write(tu_path("alice.sig"), sig, n), 0);
  assert_int_equal(tu_run("openssl pkeyutl -verify -pubin -inkey %s -rawin -digest sm3 "
                          "-pkeyopt distid:ALICE123@YAHOO.COM -in %s -sigfile %s",
                          tu_path("sm2.pub"), tu_path("data"), tu_path("alice.sig")), 0);
  /* with the default ID the same signature does not verify */
  assert_int_not_equal(tu_run(cases[4].cli_verify, tu_path("sm2.pub"), tu_path("data"),
                              tu_path("alice.sig")), 0);
  assert_int_equal(tb_crypto_verify(ks, "sm2-pub", TB_SIG_SM2_SM3, data, strlen(data), sig, n,
                                    err), TB_EAUTH);
  tb_keystore_free(k2);
}

static void test_verify_against_pem_text_and_certificate(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  unsigned char sig[TB_CRYPTO_SIG_MAX];
  size_t n = sizeof sig;
  assert_int_equal(tb_crypto_sign(ks, "p256", TB_SIG_ECDSA_P256_SHA256, data, strlen(data), sig,
                                  &n, err), 0);
  size_t plen;
  char *pem = (char *)tu_read(tu_path("p256.pub"), &plen);
  assert_non_null(pem);
  assert_int_equal(tb_crypto_verify_pem(pem, plen, NULL, TB_SIG_ECDSA_P256_SHA256, data,
                                        strlen(data), sig, n, err), 0);
  assert_int_equal(tb_crypto_verify_pem(pem, plen, NULL, TB_SIG_ECDSA_P256_SHA256, "x", 1, sig,
                                        n, err), TB_EAUTH);
  assert_int_equal(tb_crypto_verify_pem(pem, plen, NULL, TB_SIG_ED25519, data, strlen(data), sig,
                                        n, err), TB_EINVAL);
  assert_int_equal(tb_crypto_verify_pem("garbage", 7, NULL, TB_SIG_ED25519, data, strlen(data),
                                        sig, n, err), TB_EPARSE);
  free(pem);

  assert_int_equal(tu_run("openssl req -x509 -new -key %s -sha256 -days 2 -subj /CN=p256 -out %s",
                          tu_path("p256.key"), tu_path("p256.pem")), 0);
  pem = (char *)tu_read(tu_path("p256.pem"), &plen);
  assert_non_null(pem);
  assert_int_equal(tb_crypto_verify_pem(pem, plen, NULL, TB_SIG_ECDSA_P256_SHA256, data,
                                        strlen(data), sig, n, err), 0);
  free(pem);

  /* SM2 via PEM with the default ID */
  n = sizeof sig;
  assert_int_equal(tb_crypto_sign(ks, "sm2", TB_SIG_SM2_SM3, data, strlen(data), sig, &n, err), 0);
  pem = (char *)tu_read(tu_path("sm2.pub"), &plen);
  assert_non_null(pem);
  assert_int_equal(tb_crypto_verify_pem(pem, plen, NULL, TB_SIG_SM2_SM3, data, strlen(data), sig,
                                        n, err), 0);
  assert_int_equal(tb_crypto_verify_pem(pem, plen, "other-id", TB_SIG_SM2_SM3, data,
                                        strlen(data), sig, n, err), TB_EAUTH);
  free(pem);
}

static void test_misuse_is_refused(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  unsigned char sig[TB_CRYPTO_SIG_MAX];
  size_t n = sizeof sig;
  assert_int_equal(tb_crypto_sign(ks, "nope", TB_SIG_ED25519, data, 1, sig, &n, err),
                   TB_ENOTFOUND);
  assert_int_equal(tb_crypto_sign(ks, "rsa", TB_SIG_SM2_SM3, data, 1, sig, &n, err), TB_EINVAL);
  assert_non_null(strstr(err, "cannot do sm2-sm3"));
  assert_int_equal(tb_crypto_sign(ks, "sm2-pub", TB_SIG_SM2_SM3, data, 1, sig, &n, err),
                   TB_EINVAL);
  assert_non_null(strstr(err, "no private key"));
  n = 100; /* RSA-2048 needs 256 */
  assert_int_equal(tb_crypto_sign(ks, "rsa", TB_SIG_RSA_PSS_SHA256, data, 1, sig, &n, err),
                   TB_ELIMIT);
  /* a PKCS#1 signature is not a PSS signature */
  n = sizeof sig;
  assert_int_equal(tb_crypto_sign(ks, "rsa", TB_SIG_RSA_PKCS1_SHA256, data, 1, sig, &n, err), 0);
  assert_int_equal(tb_crypto_verify(ks, "rsa", TB_SIG_RSA_PSS_SHA256, data, 1, sig, n, err),
                   TB_EAUTH);
  assert_int_equal(tb_crypto_verify(ks, "sm2", TB_SIG_SM2_SM3, data, 1, sig, 0, err), TB_EAUTH);
}

/* Several threads sign and verify with the same keys at once (the keystore
 * is shared read-only); run under the sanitizers this catches shared state. */
static void *worker(void *arg) {
  const struct alg_case *c = arg;
  char err[TB_ERRMSG_MAX];
  for (int i = 0; i < 40; i++) {
    unsigned char sig[TB_CRYPTO_SIG_MAX];
    size_t n = sizeof sig;
    if (tb_crypto_sign(ks, c->stem, c->alg, data, strlen(data), sig, &n, err) != 0 ||
        tb_crypto_verify(ks, c->stem, c->alg, data, strlen(data), sig, n, err) != 0)
      return (void *)1;
  }
  return NULL;
}

static void test_concurrent_use_from_threads(void **state) {
  (void)state;
  pthread_t t[8];
  for (size_t i = 0; i < 8; i++)
    assert_int_equal(pthread_create(&t[i], NULL, worker, (void *)&cases[(i % 4) + 1]), 0);
  for (size_t i = 0; i < 8; i++) {
    void *r;
    assert_int_equal(pthread_join(t[i], &r), 0);
    assert_null(r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ours_verify_with_openssl_cli),
      cmocka_unit_test(test_openssl_cli_signatures_verify_with_ours),
      cmocka_unit_test(test_rsa_pkcs1_matches_cli_bytes),
      cmocka_unit_test(test_sm2_signer_id_is_part_of_the_signature),
      cmocka_unit_test(test_verify_against_pem_text_and_certificate),
      cmocka_unit_test(test_misuse_is_refused),
      cmocka_unit_test(test_concurrent_use_from_threads),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
