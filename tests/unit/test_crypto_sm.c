/* GM/T primitives and the yue-json envelope (crypto/crypto.h): SM3 and SM4
 * known answers, SM2 encryption both ways with the openssl CLI, DER ⇄ C1C3C2,
 * base64/uuid, and — the point — interop with an independent implementation
 * (sm-crypto, JavaScript, via tests/crypto/gm_tool.js) for SM2 encryption in
 * both ciphertext forms, SM2 signatures, SM4-CBC, SM3, the whole digital
 * envelope and the X-GD-Signature request signature, in both directions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../crypto/testutil.h"
#include "crypto/crypto.h"
#include "crypto/keystore.h"

static struct tb_keystore *ks;
static int have_gm;
static const char msg[] = "{\"applyNo\":\"430603-20240506-000123\",\"matterName\":\"再生育服务登记\"}";

static int setup(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  if (tu_setup_dir("sm") != 0 || tb_keystore_new(&ks, err) != 0) return -1;
  if (tu_run("openssl genpkey -algorithm SM2 -out %s && chmod 600 %s", tu_path("sm2.key"),
             tu_path("sm2.key")) != 0 ||
      tu_run("openssl pkey -in %s -pubout -out %s", tu_path("sm2.key"), tu_path("sm2.pub")) != 0 ||
      tu_run("openssl genpkey -algorithm SM2 -out %s && chmod 600 %s", tu_path("other.key"),
             tu_path("other.key")) != 0)
    return -1;
  struct tb_key_spec k = {"sm2", TB_KEY_SM2, tu_path("sm2.key"), NULL, NULL, NULL};
  struct tb_key_spec p = {"sm2-pub", TB_KEY_SM2, NULL, tu_path("sm2.pub"), NULL, NULL};
  struct tb_key_spec o = {"other", TB_KEY_SM2, tu_path("other.key"), NULL, NULL, NULL};
  if (tb_keystore_add_key(ks, &k, err) != 0 || tb_keystore_add_key(ks, &p, err) != 0 ||
      tb_keystore_add_key(ks, &o, err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  have_gm = tu_have_gm_tool();
  if (!have_gm && getenv("TB_REQUIRE_INTEROP") != NULL) {
    fprintf(stderr, "TB_REQUIRE_INTEROP is set but tests/crypto/gm_tool.js cannot run: "
                    "npm ci --prefix tests/crypto\n");
    return -1;
  }
  if (!have_gm)
    fprintf(stderr, "note: sm-crypto not installed (npm ci --prefix tests/crypto): "
                    "the independent-implementation tests are skipped\n");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tb_keystore_free(ks);
  tu_cleanup_dir();
  return 0;
}

#define NEED_GM()     \
  do {                \
    if (!have_gm) skip(); \
  } while (0)

/* ---- digests ------------------------------------------------------------ */

static void test_sm3_and_sha256_known_answers(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX], hex[TB_DIGEST_HEX_LEN];
  assert_int_equal(tb_crypto_sm3_hex("abc", 3, hex, err), 0);
  assert_string_equal(hex, "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
  /* GB/T 32905 example 2: "abcd" x 16 */
  const char *abcd = "abcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcdabcd";
  assert_int_equal(tb_crypto_sm3_hex(abcd, 64, hex, err), 0);
  assert_string_equal(hex, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732");
  assert_int_equal(tb_crypto_sha256_hex("abc", 3, hex, err), 0);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_int_equal(tb_crypto_sm3_hex(NULL, 0, hex, err), 0);
  assert_string_equal(hex, "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b");
}

/* ---- SM4 ---------------------------------------------------------------- */

static const char *k_hex = "0123456789abcdeffedcba9876543210";

static void test_sm4_known_answer_block(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  unsigned char key[16], pt[16], iv[16] = {0}, *ct;
  size_t n;
  tu_unhex(k_hex, key, 16);
  tu_unhex(k_hex, pt, 16);
  /* With a zero IV the first CBC block is the bare block cipher (GB/T 32907
   * example 1); the second block is the full PKCS#7 padding block. */
  assert_int_equal(tb_crypto_sm4_cbc_encrypt(key, iv, pt, 16, &ct, &n, err), 0);
  assert_int_equal(n, 32);
  char hex[65];
  tb_crypto_hex(ct, 16, hex);
  assert_string_equal(hex, "681edf34d206965e86b3e94f536e4246");
  unsigned char *back;
  size_t m;
  assert_int_equal(tb_crypto_sm4_cbc_decrypt(key, iv, ct, n, &back, &m, err), 0);
  assert_int_equal(m, 16);
  assert_memory_equal(back, pt, 16);
  free(back);
  free(ct);
}

static void test_sm4_cbc_matches_openssl_enc_both_ways(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  const char *iv_hex = "fedcba98765432100123456789abcdef";
  unsigned char key[16], iv[16], *ct, *pt;
  size_t n, m;
  tu_unhex(k_hex, key, 16);
  tu_unhex(iv_hex, iv, 16);
  for (size_t len = 0; len <= 48; len += 16) { /* 0, 16, 32, 48 and odd sizes below */
    for (size_t extra = 0; extra < 2; extra++) {
      size_t l = len + extra * 7;
      if (l > sizeof msg - 1) l = sizeof msg - 1;
      assert_int_equal(tu_write(tu_path("p"), msg, l), 0);
      assert_int_equal(tu_run("openssl enc -sm4-cbc -K %s -iv %s -in %s -out %s", k_hex, iv_hex,
                              tu_path("p"), tu_path("c")), 0);
      size_t cl;
      unsigned char *cli = tu_read(tu_path("c"), &cl);
      assert_non_null(cli);
      assert_int_equal(tb_crypto_sm4_cbc_encrypt(key, iv, msg, l, &ct, &n, err), 0);
      assert_int_equal(n, cl);
      assert_memory_equal(ct, cli, n);
      assert_int_equal(tb_crypto_sm4_cbc_decrypt(key, iv, cli, cl, &pt, &m, err), 0);
      assert_int_equal(m, l);
      assert_memory_equal(pt, msg, l);
      free(cli);
      free(ct);
      free(pt);
    }
  }
}

static void test_sm4_refuses_bad_padding_wrong_key_and_bad_length(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  unsigned char key[16], iv[16] = {0}, *ct, *pt = NULL;
  size_t n, m;
  tu_unhex(k_hex, key, 16);
  assert_int_equal(tb_crypto_sm4_cbc_encrypt(key, iv, msg, 37, &ct, &n, err), 0);
  unsigned char wrong[16];
  memcpy(wrong, key, 16);
  wrong[15] ^= 1;
  assert_int_equal(tb_crypto_sm4_cbc_decrypt(wrong, iv, ct, n, &pt, &m, err), TB_ECRYPTO);
  assert_non_null(strstr(err, "padding"));
  assert_null(pt);
  /* last byte of the next-to-last block flips the padding byte */
  ct[n - 17] ^= 0x5a;
  assert_int_equal(tb_crypto_sm4_cbc_decrypt(key, iv, ct, n, &pt, &m, err), TB_ECRYPTO);
  assert_int_equal(tb_crypto_sm4_cbc_decrypt(key, iv, ct, n - 1, &pt, &m, err), TB_ECRYPTO);
  assert_non_null(strstr(err, "multiple of 16"));
  assert_int_equal(tb_crypto_sm4_cbc_decrypt(key, iv, ct, 0, &pt, &m, err), TB_ECRYPTO);
  free(ct);
}

/* ---- SM2 encryption ------------------------------------------------------ */

static void test_sm2_decrypts_openssl_cli_ciphertext(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tu_write(tu_path("m"), msg, strlen(msg)), 0);
  assert_int_equal(tu_run("openssl pkeyutl -encrypt -pubin -inkey %s -in %s -out %s",
                          tu_path("sm2.pub"), tu_path("m"), tu_path("m.der")), 0);
  size_t dl, n;
  unsigned char *der = tu_read(tu_path("m.der"), &dl), *pt;
  assert_non_null(der);
  assert_int_equal(tb_crypto_sm2_decrypt(ks, "sm2", der, dl, &pt, &n, err), 0);
  assert_int_equal(n, strlen(msg));
  assert_memory_equal(pt, msg, n);
  free(pt);
  /* the other key cannot; a damaged C3 is refused */
  assert_int_equal(tb_crypto_sm2_decrypt(ks, "other", der, dl, &pt, &n, err), TB_ECRYPTO);
  der[dl - 1] ^= 1;
  assert_int_equal(tb_crypto_sm2_decrypt(ks, "sm2", der, dl, &pt, &n, err), TB_ECRYPTO);
  assert_int_equal(tb_crypto_sm2_decrypt(ks, "sm2-pub", der, dl, &pt, &n, err), TB_EINVAL);
  free(der);
}

static void test_sm2_ciphertext_is_der_that_openssl_cli_decrypts(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  unsigned char *der, *raw;
  size_t dl, rl;
  /* encrypting needs only the public entry */
  assert_int_equal(tb_crypto_sm2_encrypt(ks, "sm2-pub", msg, strlen(msg), &der, &dl, err), 0);
  assert_int_equal(der[0], 0x30); /* SEQUENCE */
  assert_int_equal(tu_write(tu_path("ours.der"), der, dl), 0);
  assert_int_equal(tu_run("openssl pkeyutl -decrypt -inkey %s -in %s -out %s",
                          tu_path("sm2.key"), tu_path("ours.der"), tu_path("ours.pt")), 0);
  size_t n;
  unsigned char *pt = tu_read(tu_path("ours.pt"), &n);
  assert_non_null(pt);
  assert_int_equal(n, strlen(msg));
  assert_memory_equal(pt, msg, n);
  free(pt);
  /* DER → C1C3C2 → DER is the identity, and the raw form has the layout */
  assert_int_equal(tb_crypto_sm2_der_to_c1c3c2(der, dl, &raw, &rl, err), 0);
  assert_int_equal(rl, 1 + 32 + 32 + 32 + strlen(msg));
  assert_int_equal(raw[0], 0x04);
  unsigned char *der2;
  size_t dl2;
  assert_int_equal(tb_crypto_sm2_c1c3c2_to_der(raw, rl, &der2, &dl2, err), 0);
  assert_int_equal(dl2, dl);
  assert_memory_equal(der2, der, dl);
  free(der2);
  free(raw);
  free(der);
  assert_int_equal(tb_crypto_sm2_encrypt(ks, "sm2", "", 0, &der, &dl, err), TB_EINVAL);
}

/* A hand-made vector: x has a leading zero byte (31-byte INTEGER), y has its
 * top bit set (33-byte INTEGER with a 00 sign byte). */
static const char *vec_der =
    "306a021f0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f02210080818283"
    "8485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f0420aaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa04026869";
static const char *vec_raw =
    "04000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f80818283848586878889"
    "8a8b8c8d8e8f909192939495969798999a9b9c9d9e9faaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaa6869";

static void test_sm2_der_vector_converts_with_padding(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  unsigned char der[256], want[256], *raw, *back;
  size_t dl = tu_unhex(vec_der, der, sizeof der), wl = tu_unhex(vec_raw, want, sizeof want);
  size_t rl, bl;
  assert_int_equal(tb_crypto_sm2_der_to_c1c3c2(der, dl, &raw, &rl, err), 0);
  assert_int_equal(rl, wl);
  assert_memory_equal(raw, want, wl);
  assert_int_equal(tb_crypto_sm2_c1c3c2_to_der(want, wl, &back, &bl, err), 0);
  assert_int_equal(bl, dl);
  assert_memory_equal(back, der, dl);
  free(raw);
  free(back);

  /* refused: trailing byte, non-minimal INTEGER, negative INTEGER, short hash,
   * raw without the 04 prefix */
  der[dl] = 0;
  assert_int_equal(tb_crypto_sm2_der_to_c1c3c2(der, dl + 1, &raw, &rl, err), TB_EPARSE);
  unsigned char bad[256];
  size_t bn = tu_unhex("306b0220000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e"
                       "1f02210080818283848586878889"
                       "8a8b8c8d8e8f909192939495969798999a9b9c9d9e9f0420aaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa04026869", bad, sizeof bad);
  assert_int_equal(tb_crypto_sm2_der_to_c1c3c2(bad, bn, &raw, &rl, err), TB_EPARSE);
  bn = tu_unhex("302b020180020101" "0420aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                "040168", bad, sizeof bad);
  assert_int_equal(tb_crypto_sm2_der_to_c1c3c2(bad, bn, &raw, &rl, err), TB_EPARSE);
  bn = tu_unhex("300d02010102010104016804026869", bad, sizeof bad);
  assert_int_equal(tb_crypto_sm2_der_to_c1c3c2(bad, bn, &raw, &rl, err), TB_EPARSE);
  assert_int_equal(tb_crypto_sm2_c1c3c2_to_der(want + 1, wl - 1, &back, &bl, err), TB_EPARSE);
  assert_int_equal(tb_crypto_sm2_c1c3c2_to_der(want, 97, &back, &bl, err), TB_EPARSE);
  assert_null(back);
}

/* ---- encodings ---------------------------------------------------------- */

static void test_base64_rfc4648_vectors_and_cli(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX], *s;
  size_t n;
  const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (size_t i = 0; i < 7; i++) {
    assert_int_equal(tb_crypto_base64_encode(in[i], strlen(in[i]), &s, &n, err), 0);
    assert_string_equal(s, out[i]);
    assert_int_equal(n, strlen(out[i]));
    free(s);
    unsigned char *d;
    assert_int_equal(tb_crypto_base64_decode(out[i], strlen(out[i]), &d, &n, err), 0);
    assert_int_equal(n, strlen(in[i]));
    assert_memory_equal(d, in[i], n);
    free(d);
  }
  unsigned char rnd[1000];
  assert_int_equal(tb_crypto_random(rnd, sizeof rnd, err), 0);
  assert_int_equal(tu_write(tu_path("rnd"), rnd, sizeof rnd), 0);
  char cli[1400];
  assert_int_equal(tu_run_capture(cli, sizeof cli, "base64 -w0 %s", tu_path("rnd")), 0);
  assert_int_equal(tb_crypto_base64_encode(rnd, sizeof rnd, &s, &n, err), 0);
  assert_string_equal(s, cli);
  free(s);
}

static void test_base64_decoder_is_strict(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  unsigned char *d = NULL;
  size_t n;
  const char *bad[] = {"Zg=",  "Zg",       "Zm9v\n",   "Zm 9v",  "Zm9v====", "Zh==",
                       "Zm9=", "Z===",     "-_8=",     "Zg==Zg==", "=Zm9", "Zm9v\r\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (tb_crypto_base64_decode(bad[i], strlen(bad[i]), &d, &n, err) != TB_EPARSE)
      fail_msg("accepted bad base64 \"%s\"", bad[i]);
    assert_null(d);
  }
  assert_int_equal(tb_crypto_base64_decode("Zm9v YmFy", 9, &d, &n, err), TB_EPARSE);
  assert_int_equal(tb_crypto_base64_decode("Zm9v\nYmE=", 9, &d, &n, err), TB_EPARSE);
  assert_int_equal(tb_crypto_base64_decode("Zm9vYm!=", 8, &d, &n, err), TB_EPARSE);
  assert_non_null(strstr(err, "offset 6"));
}

static void test_uuid4_format(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX], a[TB_UUID_STR_LEN], b[TB_UUID_STR_LEN];
  assert_int_equal(tb_crypto_uuid4(a, err), 0);
  assert_int_equal(tb_crypto_uuid4(b, err), 0);
  assert_int_equal(strlen(a), 36);
  assert_string_not_equal(a, b);
  for (size_t i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      assert_int_equal(a[i], '-');
    } else {
      assert_non_null(strchr("0123456789abcdef", a[i]));
    }
  }
  assert_int_equal(a[14], '4');
  assert_non_null(strchr("89ab", a[19]));
}

/* ---- the independent implementation (sm-crypto) ------------------------- */

static int gm(const char *fmt_args) {
  return tu_run("node %s %s", tu_gm_tool, fmt_args);
}

static void expect_file(const char *path, const void *want, size_t len) {
  size_t n;
  unsigned char *got = tu_read(path, &n);
  assert_non_null(got);
  assert_int_equal(n, len);
  assert_memory_equal(got, want, len);
  free(got);
}

static void test_interop_sm2_encryption_both_forms_both_ways(void **state) {
  (void)state;
  NEED_GM();
  char err[TB_ERRMSG_MAX], args[2048];
  unsigned char *der, *raw, *pt;
  size_t dl, rl, n;
  /* ours (DER) → sm-crypto, which parses the DER with its own reader */
  assert_int_equal(tb_crypto_sm2_encrypt(ks, "sm2-pub", msg, strlen(msg), &der, &dl, err), 0);
  assert_int_equal(tu_write(tu_path("o.der"), der, dl), 0);
  snprintf(args, sizeof args, "sm2-decrypt-der %s %s %s", tu_path("sm2.key"), tu_path("o.der"),
           tu_path("o.pt"));
  assert_int_equal(gm(args), 0);
  expect_file(tu_path("o.pt"), msg, strlen(msg));
  /* ours converted to raw C1C3C2 → sm-crypto's native form */
  assert_int_equal(tb_crypto_sm2_der_to_c1c3c2(der, dl, &raw, &rl, err), 0);
  assert_int_equal(tu_write(tu_path("o.raw"), raw, rl), 0);
  snprintf(args, sizeof args, "sm2-decrypt %s %s %s", tu_path("sm2.key"), tu_path("o.raw"),
           tu_path("o.pt2"));
  assert_int_equal(gm(args), 0);
  expect_file(tu_path("o.pt2"), msg, strlen(msg));
  /* negative control: sm-crypto refuses a damaged C3 */
  raw[70] ^= 1;
  assert_int_equal(tu_write(tu_path("o.bad"), raw, rl), 0);
  snprintf(args, sizeof args, "sm2-decrypt %s %s %s", tu_path("sm2.key"), tu_path("o.bad"),
           tu_path("o.pt3"));
  assert_int_not_equal(gm(args), 0);
  free(raw);
  free(der);

  /* sm-crypto DER → ours */
  assert_int_equal(tu_write(tu_path("m"), msg, strlen(msg)), 0);
  snprintf(args, sizeof args, "sm2-encrypt-der %s %s %s", tu_path("sm2.pub"), tu_path("m"),
           tu_path("j.der"));
  assert_int_equal(gm(args), 0);
  der = tu_read(tu_path("j.der"), &dl);
  assert_non_null(der);
  assert_int_equal(tb_crypto_sm2_decrypt(ks, "sm2", der, dl, &pt, &n, err), 0);
  assert_int_equal(n, strlen(msg));
  assert_memory_equal(pt, msg, n);
  free(pt);
  free(der);
  /* sm-crypto raw C1C3C2 → our converter → ours */
  snprintf(args, sizeof args, "sm2-encrypt %s %s %s", tu_path("sm2.pub"), tu_path("m"),
           tu_path("j.raw"));
  assert_int_equal(gm(args), 0);
  raw = tu_read(tu_path("j.raw"), &rl);
  assert_non_null(raw);
  assert_int_equal(tb_crypto_sm2_c1c3c2_to_der(raw, rl, &der, &dl, err), 0);
  assert_int_equal(tb_crypto_sm2_decrypt(ks, "sm2", der, dl, &pt, &n, err), 0);
  assert_int_equal(n, strlen(msg));
  assert_memory_equal(pt, msg, n);
  free(pt);
  free(der);
  free(raw);
}

static void test_interop_sm2_signatures_both_ways(void **state) {
  (void)state;
  NEED_GM();
  char err[TB_ERRMSG_MAX], args[2048];
  unsigned char sig[TB_CRYPTO_SIG_MAX];
  size_t n = sizeof sig;
  assert_int_equal(tu_write(tu_path("m"), msg, strlen(msg)), 0);
  assert_int_equal(tb_crypto_sign(ks, "sm2", TB_SIG_SM2_SM3, msg, strlen(msg), sig, &n, err), 0);
  assert_int_equal(tu_write(tu_path("o.sig"), sig, n), 0);
  snprintf(args, sizeof args, "sm2-verify %s %s %s", tu_path("sm2.pub"), tu_path("m"),
           tu_path("o.sig"));
  assert_int_equal(gm(args), 0);
  /* negative control: another signer ID makes sm-crypto refuse it */
  snprintf(args, sizeof args, "sm2-verify %s %s %s ALICE123@YAHOO.COM", tu_path("sm2.pub"),
           tu_path("m"), tu_path("o.sig"));
  assert_int_not_equal(gm(args), 0);

  snprintf(args, sizeof args, "sm2-sign %s %s %s", tu_path("sm2.key"), tu_path("m"),
           tu_path("j.sig"));
  assert_int_equal(gm(args), 0);
  size_t sl;
  unsigned char *js = tu_read(tu_path("j.sig"), &sl);
  assert_non_null(js);
  assert_int_equal(tb_crypto_verify(ks, "sm2-pub", TB_SIG_SM2_SM3, msg, strlen(msg), js, sl,
                                    err), 0);
  assert_int_equal(tb_crypto_verify(ks, "sm2-pub", TB_SIG_SM2_SM3, msg, strlen(msg) - 1, js, sl,
                                    err), TB_EAUTH);
  free(js);
}

static void test_interop_sm4_and_sm3(void **state) {
  (void)state;
  NEED_GM();
  char err[TB_ERRMSG_MAX], args[2048];
  const char *iv_hex = "00112233445566778899aabbccddeeff";
  unsigned char key[16], iv[16], *ct, *pt;
  size_t n, m;
  tu_unhex(k_hex, key, 16);
  tu_unhex(iv_hex, iv, 16);
  assert_int_equal(tb_crypto_sm4_cbc_encrypt(key, iv, msg, strlen(msg), &ct, &n, err), 0);
  assert_int_equal(tu_write(tu_path("o.sm4"), ct, n), 0);
  snprintf(args, sizeof args, "sm4-cbc-decrypt %s %s %s %s", k_hex, iv_hex, tu_path("o.sm4"),
           tu_path("o.sm4pt"));
  assert_int_equal(gm(args), 0);
  expect_file(tu_path("o.sm4pt"), msg, strlen(msg));
  free(ct);
  assert_int_equal(tu_write(tu_path("m"), msg, strlen(msg)), 0);
  snprintf(args, sizeof args, "sm4-cbc-encrypt %s %s %s %s", k_hex, iv_hex, tu_path("m"),
           tu_path("j.sm4"));
  assert_int_equal(gm(args), 0);
  ct = tu_read(tu_path("j.sm4"), &n);
  assert_non_null(ct);
  assert_int_equal(tb_crypto_sm4_cbc_decrypt(key, iv, ct, n, &pt, &m, err), 0);
  assert_int_equal(m, strlen(msg));
  assert_memory_equal(pt, msg, m);
  free(pt);
  free(ct);

  char ours[TB_DIGEST_HEX_LEN], theirs[128], cmd[1024];
  assert_int_equal(tb_crypto_sm3_hex(msg, strlen(msg), ours, err), 0);
  snprintf(cmd, sizeof cmd, "node %s sm3 %s", tu_gm_tool, tu_path("m"));
  assert_int_equal(tu_run_capture(theirs, sizeof theirs, "%s", cmd), 0);
  assert_string_equal(ours, theirs);
}

/* The whole yue-json body envelope, as the gateway will build and open it. */
static void test_interop_envelope_both_ways(void **state) {
  (void)state;
  NEED_GM();
  char err[TB_ERRMSG_MAX], args[2048];
  /* seal with ours */
  unsigned char key[16], iv[16], *ek, *body;
  size_t ekl, bl;
  assert_int_equal(tb_crypto_random(key, 16, err), 0);
  assert_int_equal(tb_crypto_random(iv, 16, err), 0);
  assert_int_equal(tb_crypto_sm2_encrypt(ks, "sm2-pub", key, 16, &ek, &ekl, err), 0);
  assert_int_equal(tb_crypto_sm4_cbc_encrypt(key, iv, msg, strlen(msg), &body, &bl, err), 0);
  char *ek64, *iv64, *body64, uuid[TB_UUID_STR_LEN];
  size_t l;
  assert_int_equal(tb_crypto_base64_encode(ek, ekl, &ek64, &l, err), 0);
  assert_int_equal(tb_crypto_base64_encode(iv, 16, &iv64, &l, err), 0);
  assert_int_equal(tb_crypto_base64_encode(body, bl, &body64, &l, err), 0);
  assert_int_equal(tb_crypto_uuid4(uuid, err), 0);
  json_t *env = json_pack("{s:s, s:s, s:s, s:s, s:s}", "msgId", uuid, "msgType", "CASE_SUBMIT",
                          "encryptKey", ek64, "iv", iv64, "bizContent", body64);
  assert_non_null(env);
  assert_int_equal(json_dump_file(env, tu_path("o.env.json"), 0), 0);
  json_decref(env);
  free(ek64), free(iv64), free(body64), free(ek), free(body);
  snprintf(args, sizeof args, "envelope-open %s %s %s", tu_path("sm2.key"),
           tu_path("o.env.json"), tu_path("o.biz"));
  assert_int_equal(gm(args), 0);
  expect_file(tu_path("o.biz"), msg, strlen(msg));

  /* open what sm-crypto sealed */
  assert_int_equal(tu_write(tu_path("m"), msg, strlen(msg)), 0);
  snprintf(args, sizeof args, "envelope-seal %s %s %s", tu_path("sm2.pub"), tu_path("m"),
           tu_path("j.env.json"));
  assert_int_equal(gm(args), 0);
  json_error_t je;
  env = json_load_file(tu_path("j.env.json"), 0, &je);
  assert_non_null(env);
  const char *f_ek = json_string_value(json_object_get(env, "encryptKey"));
  const char *f_iv = json_string_value(json_object_get(env, "iv"));
  const char *f_body = json_string_value(json_object_get(env, "bizContent"));
  assert_non_null(f_ek), assert_non_null(f_iv), assert_non_null(f_body);
  unsigned char *der, *ivb, *ct, *k2, *pt;
  size_t dl, ivl, ctl, kl, ptl;
  assert_int_equal(tb_crypto_base64_decode(f_ek, strlen(f_ek), &der, &dl, err), 0);
  assert_int_equal(tb_crypto_base64_decode(f_iv, strlen(f_iv), &ivb, &ivl, err), 0);
  assert_int_equal(tb_crypto_base64_decode(f_body, strlen(f_body), &ct, &ctl, err), 0);
  assert_int_equal(ivl, 16);
  assert_int_equal(tb_crypto_sm2_decrypt(ks, "sm2", der, dl, &k2, &kl, err), 0);
  assert_int_equal(kl, 16);
  assert_int_equal(tb_crypto_sm4_cbc_decrypt(k2, ivb, ct, ctl, &pt, &ptl, err), 0);
  assert_int_equal(ptl, strlen(msg));
  assert_memory_equal(pt, msg, ptl);
  /* the wrong recipient cannot open it */
  unsigned char *x = NULL;
  size_t xl;
  assert_int_equal(tb_crypto_sm2_decrypt(ks, "other", der, dl, &x, &xl, err), TB_ECRYPTO);
  free(der), free(ivb), free(ct), free(k2), free(pt);
  json_decref(env);
}

/* X-GD-Signature over AppId\nTimestamp\nNonce\nsm3hex(body), both ways. */
static void test_interop_yue_request_signature(void **state) {
  (void)state;
  NEED_GM();
  char err[TB_ERRMSG_MAX], cmd[2048], hex[TB_DIGEST_HEX_LEN], signed_str[512];
  unsigned char nonce[16];
  char nonce_hex[33];
  assert_int_equal(tb_crypto_random(nonce, sizeof nonce, err), 0);
  tb_crypto_hex(nonce, sizeof nonce, nonce_hex);
  assert_int_equal(tu_write(tu_path("body"), msg, strlen(msg)), 0);
  assert_int_equal(tb_crypto_sm3_hex(msg, strlen(msg), hex, err), 0);
  snprintf(signed_str, sizeof signed_str, "YY-YUNXI-001\n1714960800000\n%s\n%s", nonce_hex, hex);
  unsigned char sig[TB_CRYPTO_SIG_MAX];
  size_t n = sizeof sig, l;
  assert_int_equal(tb_crypto_sign(ks, "sm2", TB_SIG_SM2_SM3, signed_str, strlen(signed_str), sig,
                                  &n, err), 0);
  char *b64;
  assert_int_equal(tb_crypto_base64_encode(sig, n, &b64, &l, err), 0);
  snprintf(cmd, sizeof cmd, "yue-verify %s YY-YUNXI-001 1714960800000 %s %s %s",
           tu_path("sm2.pub"), nonce_hex, tu_path("body"), b64);
  assert_int_equal(gm(cmd), 0);
  snprintf(cmd, sizeof cmd, "yue-verify %s YY-YUNXI-001 1714960800001 %s %s %s",
           tu_path("sm2.pub"), nonce_hex, tu_path("body"), b64);
  assert_int_not_equal(gm(cmd), 0); /* another timestamp: refused */
  free(b64);

  char theirs[256];
  snprintf(cmd, sizeof cmd, "node %s yue-sign %s GD-WJ-TB 1714960800000 %s %s", tu_gm_tool,
           tu_path("sm2.key"), nonce_hex, tu_path("body"));
  assert_int_equal(tu_run_capture(theirs, sizeof theirs, "%s", cmd), 0);
  unsigned char *js;
  size_t jl;
  assert_int_equal(tb_crypto_base64_decode(theirs, strlen(theirs), &js, &jl, err), 0);
  snprintf(signed_str, sizeof signed_str, "GD-WJ-TB\n1714960800000\n%s\n%s", nonce_hex, hex);
  assert_int_equal(tb_crypto_verify(ks, "sm2-pub", TB_SIG_SM2_SM3, signed_str,
                                    strlen(signed_str), js, jl, err), 0);
  free(js);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sm3_and_sha256_known_answers),
      cmocka_unit_test(test_sm4_known_answer_block),
      cmocka_unit_test(test_sm4_cbc_matches_openssl_enc_both_ways),
      cmocka_unit_test(test_sm4_refuses_bad_padding_wrong_key_and_bad_length),
      cmocka_unit_test(test_sm2_decrypts_openssl_cli_ciphertext),
      cmocka_unit_test(test_sm2_ciphertext_is_der_that_openssl_cli_decrypts),
      cmocka_unit_test(test_sm2_der_vector_converts_with_padding),
      cmocka_unit_test(test_base64_rfc4648_vectors_and_cli),
      cmocka_unit_test(test_base64_decoder_is_strict),
      cmocka_unit_test(test_uuid4_format),
      cmocka_unit_test(test_interop_sm2_encryption_both_forms_both_ways),
      cmocka_unit_test(test_interop_sm2_signatures_both_ways),
      cmocka_unit_test(test_interop_sm4_and_sm3),
      cmocka_unit_test(test_interop_envelope_both_ways),
      cmocka_unit_test(test_interop_yue_request_signature),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
