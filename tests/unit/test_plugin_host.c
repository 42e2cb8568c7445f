/*
 * Unit tests of plugin/host.c: the services table adapters call, used
 * exactly as an adapter does (through struct tb_host, with the real
 * keystore from tests/support/adapter_fixture.h). Beijing time both ways
 * with its edges (day, year and leap-day boundaries, before 1970, the
 * buffer size), RFC 3339, Retry-After as seconds and as an HTTP date,
 * strict base64, SM3/SHA-256 against published vectors, signatures with
 * every key kind (and refusals: tampered data, public-only keys, unknown
 * names, CAs), SM2 public-key encryption, SM4, XML-DSig.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adapter_fixture.h"
#include "plugin/host.h"
#include "tbgw/adapter.h"

static struct tb_adapter_fixture fx;
static const struct tb_host *H;

static int setup(void **state) {
  (void)state;
  if (tb_fixture_setup_keys(&fx) != 0) return -1;
  /* Keys of the two kinds the dev PKI does not make. */
  char cmd[1400];
  snprintf(cmd, sizeof cmd,
           "cd '%s' && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key "
           "2>/dev/null && openssl genpkey -algorithm ED25519 -out ed.key 2>/dev/null && "
           "openssl pkey -in ec.key -pubout -out ec.pub.pem 2>/dev/null && chmod 600 ec.key ed.key",
           fx.pki);
  if (system(cmd) != 0) return -1;
  if (tb_fixture_add_key(&fx, "t-ec", TB_KEY_EC_P256, "ec.key", NULL, NULL) != 0 ||
      tb_fixture_add_key(&fx, "t-ec-pub", TB_KEY_EC_P256, NULL, "ec.pub.pem", NULL) != 0 ||
      tb_fixture_add_key(&fx, "t-ed", TB_KEY_ED25519, "ed.key", NULL, NULL) != 0)
    return -1;
  tb_plugin_host_init(&fx.host, fx.keys, "laizhou", "430603");
  H = &fx.host.table;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tb_fixture_teardown(&fx);
  tb_crypto_global_fini();
  return 0;
}

/* ---- the table itself ------------------------------------------------------------ */

static void test_table_is_complete_and_bound_to_the_partner(void **state) {
  (void)state;
  assert_int_equal(H->abi_major, TB_ADAPTER_ABI_MAJOR);
  assert_int_equal(H->abi_minor, TB_ADAPTER_ABI_MINOR);
  assert_ptr_equal(H->ctx, &fx.host);
  assert_string_equal(H->partner, "laizhou");
  assert_string_equal(H->node_region, "430603");
  /* every service is there: an adapter never checks for NULL */
#define PRESENT(fn) {#fn, H->fn != NULL}
  const struct {
    const char *name;
    int present;
  } fns[] = {
      PRESENT(alloc), PRESENT(realloc), PRESENT(free),
      PRESENT(log), PRESENT(mask_id), PRESENT(mask_phone),
      PRESENT(mask_name), PRESENT(now_ms), PRESENT(format_beijing),
      PRESENT(parse_beijing), PRESENT(parse_rfc3339), PRESENT(format_rfc3339_beijing),
      PRESENT(base64_encode), PRESENT(base64_decode), PRESENT(uuid_v4),
      PRESENT(random_bytes), PRESENT(digest), PRESENT(key_info),
      PRESENT(sign), PRESENT(verify), PRESENT(pk_encrypt),
      PRESENT(pk_decrypt), PRESENT(sym_encrypt), PRESENT(sym_decrypt),
      PRESENT(xmldsig_sign), PRESENT(xmldsig_verify), PRESENT(media_ext),
      PRESENT(media_type_for_ext), PRESENT(retry_after_ms),
  };
#undef PRESENT
  for (size_t i = 0; i < sizeof fns / sizeof *fns; i++)
    if (!fns[i].present) fail_msg("service %s is NULL", fns[i].name);
  int64_t now = H->now_ms();
  assert_true(now > 1700000000000LL && llabs(now - (int64_t)time(NULL) * 1000) < 5000);
}

/* ---- time ------------------------------------------------------------------------- */

static void expect_beijing(int64_t ms, const char *want) {
  char out[20];
  assert_int_equal(H->format_beijing(ms, out, sizeof out), 0);
  assert_string_equal(out, want);
  int64_t back = 0;
  assert_int_equal(H->parse_beijing(out, strlen(out), &back), 0);
  assert_int_equal(back, ms - ((ms % 1000) + 1000) % 1000); /* whole seconds, floored */
}

static void test_beijing_time_format_and_parse(void **state) {
  (void)state;
  expect_beijing(0, "1970-01-01 08:00:00");
  expect_beijing(1714960800000LL, "2024-05-06 10:00:00");  /* 02:00Z */
  expect_beijing(1714960800999LL, "2024-05-06 10:00:00");  /* milliseconds dropped */
  expect_beijing(1703952000000LL, "2023-12-31 00:00:00");  /* 2023-12-30T16:00Z */
  expect_beijing(1704038400000LL, "2024-01-01 00:00:00");  /* new year in Beijing, 16:00Z */
  expect_beijing(1704038399000LL, "2023-12-31 23:59:59");
  expect_beijing(1709222399000LL, "2024-02-29 23:59:59");  /* leap day */
  expect_beijing(-1, "1970-01-01 07:59:59");               /* before the epoch: floored */
  expect_beijing(-28800000LL, "1970-01-01 00:00:00");
  expect_beijing(253402271999000LL, "9999-12-31 23:59:59"); /* the last representable */

  char small[19];
  assert_int_equal(H->format_beijing(0, small, sizeof small), TB_EINVAL);
  char out[20];
  assert_int_equal(H->format_beijing(253402272000000LL, out, sizeof out), TB_EINVAL); /* year 10000 */

  int64_t ms = 0;
  static const char *const bad[] = {
      "2024-05-06T10:00:00", "2024-05-06 10:00",    "2024-05-06 10:00:00Z", " 2024-05-06 10:00:0",
      "2023-02-29 00:00:00", "2024-02-30 00:00:00", "2024-13-01 00:00:00",  "2024-05-06 24:00:00",
      "2024-05-06 10:60:00", "2024/05/06 10:00:00", "2024-05-06 1a:00:00",  "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (H->parse_beijing(bad[i], strlen(bad[i]), &ms) != TB_EPARSE)
      fail_msg("parse_beijing accepted \"%s\"", bad[i]);
  /* the length is the caller's: a valid prefix of a longer buffer parses */
  assert_int_equal(H->parse_beijing("2024-05-06 10:00:00 and more", 19, &ms), 0);
  assert_int_equal(ms, 1714960800000LL);
  assert_int_equal(H->parse_beijing(NULL, 19, &ms), TB_EPARSE);
}

static void test_rfc3339_both_ways(void **state) {
  (void)state;
  int64_t ms = 0;
  assert_int_equal(H->parse_rfc3339("2024-05-06T02:00:00Z", 20, &ms), 0);
  assert_int_equal(ms, 1714960800000LL);
  assert_int_equal(H->parse_rfc3339("2024-05-06T10:00:00+08:00", 25, &ms), 0);
  assert_int_equal(ms, 1714960800000LL);
  assert_int_equal(H->parse_rfc3339("2024-05-06 10:00:00", 19, &ms), TB_EPARSE);
  assert_int_equal(H->parse_rfc3339("2024-05-06T10:00:00", 19, &ms), TB_EPARSE); /* no offset */
  char out[26];
  assert_int_equal(H->format_rfc3339_beijing(1714960800000LL, out, sizeof out), 0);
  assert_string_equal(out, "2024-05-06T10:00:00+08:00");
  assert_int_equal(H->format_rfc3339_beijing(1704038400000LL, out, sizeof out), 0);
  assert_string_equal(out, "2024-01-01T00:00:00+08:00");
  char small[25];
  assert_int_equal(H->format_rfc3339_beijing(0, small, sizeof small), TB_EINVAL);
}

static void test_retry_after_seconds_and_http_date(void **state) {
  (void)state;
  assert_int_equal(H->retry_after_ms("120"), 120000);
  assert_int_equal(H->retry_after_ms("0"), 0);
  assert_int_equal(H->retry_after_ms(" 5 "), 5000);
  assert_int_equal(H->retry_after_ms(NULL), -1);
  assert_int_equal(H->retry_after_ms(""), -1);
  assert_int_equal(H->retry_after_ms("-1"), -1);
  assert_int_equal(H->retry_after_ms("1.5"), -1);
  assert_int_equal(H->retry_after_ms("12abc"), -1);
  assert_int_equal(H->retry_after_ms("99999999999999999999"), -1); /* no overflow */
  assert_int_equal(H->retry_after_ms("soon"), -1);
  /* An HTTP date in the past means "now". */
  assert_int_equal(H->retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT"), 0);
  assert_int_equal(H->retry_after_ms("Sun, 06 Xyz 1994 08:49:37 GMT"), -1);
  assert_int_equal(H->retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT junk"), -1);
  assert_int_equal(H->retry_after_ms("Sun 06 Nov 1994 08:49:37"), -1);
  assert_int_equal(H->retry_after_ms("Sun, 31 Feb 2094 08:49:37 GMT"), -1);
  /* One an hour from now: about 3600 s (the clock moves while we test). */
  static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t t = time(NULL) + 3600;
  struct tm tm;
  gmtime_r(&t, &tm);
  char date[64];
  snprintf(date, sizeof date, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
           months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  int64_t ms = H->retry_after_ms(date);
  if (ms < 3590000 || ms > 3600000) fail_msg("%s → %lld ms", date, (long long)ms);
}

/* ---- encodings, digests, randomness --------------------------------------------- */

static void test_base64_is_strict(void **state) {
  (void)state;
  struct tb_bytes b = {0};
  assert_int_equal(H->base64_encode("hello", 5, &b), 0);
  assert_int_equal(b.len, 8);
  assert_string_equal((const char *)b.data, "aGVsbG8="); /* NUL-terminated too */
  H->free(b.data);
  assert_int_equal(H->base64_decode("aGVsbG8=", 8, &b), 0);
  assert_int_equal(b.len, 5);
  assert_memory_equal(b.data, "hello", 5);
  H->free(b.data);
  static const char *const bad[] = {"aGVsbG8", "aGVs bG8=", "aGVsbG8=\n", "aGV$bG8=", "aGVsbG9=",
                                    "a===", "aGVsbG8-"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    b.data = NULL;
    if (H->base64_decode(bad[i], strlen(bad[i]), &b) == 0) fail_msg("accepted \"%s\"", bad[i]);
    H->free(b.data);
  }
  assert_int_equal(H->base64_decode("", 0, &b), 0);
  assert_int_equal(b.len, 0);
  H->free(b.data);
}

static void hexs(const unsigned char *p, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

static void test_digests_match_published_vectors(void **state) {
  (void)state;
  unsigned char md[32];
  char hx[65];
  assert_int_equal(H->digest(TB_DIGEST_SHA256, "abc", 3, md), 0);
  hexs(md, 32, hx);
  assert_string_equal(hx, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_int_equal(H->digest(TB_DIGEST_SM3, "abc", 3, md), 0); /* GB/T 32905 example 1 */
  hexs(md, 32, hx);
  assert_string_equal(hx, "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0");
  assert_int_equal(H->digest((enum tb_digest_alg)99, "abc", 3, md), TB_EINVAL);
}

static void test_uuid_random_media(void **state) {
  (void)state;
  char a[37], b[37];
  H->uuid_v4(a);
  H->uuid_v4(b);
  assert_int_equal(strlen(a), 36);
  assert_true(a[14] == '4' && strchr("89ab", a[19]) != NULL);
  assert_string_not_equal(a, b);
  for (const char *p = a; *p; p++) assert_true((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || *p == '-');
  unsigned char r1[16] = {0}, r2[16] = {0};
  assert_int_equal(H->random_bytes(r1, sizeof r1), 0);
  assert_int_equal(H->random_bytes(r2, sizeof r2), 0);
  assert_memory_not_equal(r1, r2, sizeof r1);
  assert_string_equal(H->media_ext("application/pdf"), "pdf");
  assert_string_equal(H->media_type_for_ext("pdf"), "application/pdf");
  assert_null(H->media_ext("application/x-nothing"));
  char m[64];
  assert_string_equal(H->mask_phone("13812345678", m, sizeof m), "138****5678");
}

/* ---- named keys -------------------------------------------------------------------- */

static void expect_kind(const char *key, enum tb_host_key_kind kind, int priv, int cert) {
  struct tb_host_key_info ki;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(H->key_info(H->ctx, key, &ki, err), 0);
  assert_int_equal(ki.kind, kind);
  assert_int_equal(ki.has_private, priv);
  assert_int_equal(ki.has_certificate, cert);
}

static void test_key_info_per_kind(void **state) {
  (void)state;
  expect_kind("gw-rsa", TB_HOST_KEY_RSA, 1, 1);
  expect_kind("gw-sm2", TB_HOST_KEY_SM2, 1, 0);
  expect_kind("wujiang-sm2-pub", TB_HOST_KEY_SM2, 0, 0);
  expect_kind("t-ec", TB_HOST_KEY_EC_P256, 1, 0);
  expect_kind("t-ed", TB_HOST_KEY_ED25519, 1, 0);
  struct tb_host_key_info ki;
  char err[TB_ERRMSG_MAX];
  /* CAs are described too (lu-xml checks its peer_ca is one) */
  assert_int_equal(H->key_info(H->ctx, "laizhou-ca", &ki, err), 0);
  assert_int_equal(ki.kind, TB_HOST_KEY_CA);
  assert_int_equal(ki.has_private, 0);
  assert_int_equal(ki.has_certificate, 1);
  assert_int_equal(H->key_info(H->ctx, "nope", &ki, err), TB_ENOTFOUND);
  assert_non_null(strstr(err, "nope"));
}

/* Signs with signer, verifies with verifier; the tampered data fails. */
static void sign_verify(const char *signer, const char *verifier, size_t want_len) {
  static const char data[] = "{\"case_id\":\"430603-20240506-000123\"}";
  struct tb_bytes sig = {0};
  char err[TB_ERRMSG_MAX] = "";
  int rc = H->sign(H->ctx, signer, data, sizeof data - 1, &sig, err);
  if (rc != 0) fail_msg("sign with %s: %s", signer, err);
  if (want_len) assert_int_equal(sig.len, want_len);
  rc = H->verify(H->ctx, verifier, data, sizeof data - 1, sig.data, sig.len, err);
  if (rc != 0) fail_msg("verify %s with %s: %s", signer, verifier, err);
  assert_int_equal(H->verify(H->ctx, verifier, data, sizeof data - 2, sig.data, sig.len, err),
                   TB_ECRYPTO);
  sig.data[sig.len / 2] ^= 0x40;
  assert_int_equal(H->verify(H->ctx, verifier, data, sizeof data - 1, sig.data, sig.len, err),
                   TB_ECRYPTO);
  H->free(sig.data);
}

static void test_sign_and_verify_with_every_kind(void **state) {
  (void)state;
  sign_verify("gw-rsa", "gw-rsa", 256);
  sign_verify("gw-sm2", "gw-sm2", 0);              /* DER: 70-72 bytes */
  sign_verify("wujiang-sm2", "wujiang-sm2-pub", 0); /* a peer's public key verifies */
  sign_verify("t-ec", "t-ec-pub", 0);
  sign_verify("t-ed", "t-ed", 64);

  /* The wrong key of the same kind does not verify. */
  struct tb_bytes sig = {0};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(H->sign(H->ctx, "gw-sm2", "x", 1, &sig, err), 0);
  assert_int_equal(H->verify(H->ctx, "wujiang-sm2-pub", "x", 1, sig.data, sig.len, err),
                   TB_ECRYPTO);
  /* garbage as a signature is "invalid", not a crash */
  assert_int_equal(H->verify(H->ctx, "gw-sm2", "x", 1, (const unsigned char *)"zz", 2, err),
                   TB_ECRYPTO);
  H->free(sig.data);
  /* A public-only key cannot sign; unknown names and CAs are not keys. */
  sig.data = NULL;
  assert_true(H->sign(H->ctx, "wujiang-sm2-pub", "x", 1, &sig, err) < 0);
  assert_null(sig.data);
  assert_int_equal(H->sign(H->ctx, "gw-nope", "x", 1, &sig, err), TB_ENOTFOUND);
  assert_int_equal(H->sign(H->ctx, "laizhou-ca", "x", 1, &sig, err), TB_ENOTFOUND);
  assert_int_equal(H->verify(H->ctx, "gw-nope", "x", 1, (const unsigned char *)"zz", 2, err),
                   TB_ENOTFOUND);
}

static void test_sm2_public_key_encryption(void **state) {
  (void)state;
  static const unsigned char sm4_key[16] = "0123456789abcdef";
  struct tb_bytes ct = {0}, pt = {0};
  char err[TB_ERRMSG_MAX] = "";
  /* To the partner's public key... */
  assert_int_equal(H->pk_encrypt(H->ctx, "wujiang-sm2-pub", sm4_key, 16, &ct, err), 0);
  assert_true(ct.len > 16 + 32 + 64);
  /* ...which only its private half opens. */
  assert_int_equal(H->pk_decrypt(H->ctx, "wujiang-sm2", ct.data, ct.len, &pt, err), 0);
  assert_int_equal(pt.len, 16);
  assert_memory_equal(pt.data, sm4_key, 16);
  H->free(pt.data);
  pt.data = NULL;
  assert_true(H->pk_decrypt(H->ctx, "gw-sm2", ct.data, ct.len, &pt, err) < 0);
  assert_null(pt.data);
  assert_true(H->pk_decrypt(H->ctx, "wujiang-sm2-pub", ct.data, ct.len, &pt, err) < 0);
  H->free(ct.data);
  ct.data = NULL;
  assert_int_equal(H->pk_encrypt(H->ctx, "gw-rsa", sm4_key, 16, &ct, err), TB_EINVAL);
  assert_int_equal(H->pk_encrypt(H->ctx, "gw-nope", sm4_key, 16, &ct, err), TB_ENOTFOUND);
}

static void test_sm4_cbc(void **state) {
  (void)state;
  static const unsigned char key[16] = "fedcba9876543210", iv[16] = "0000000000000000";
  static const char msg[] = "办件数据 case data, not a multiple of 16";
  struct tb_bytes ct = {0}, pt = {0};
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(H->sym_encrypt(TB_CIPHER_SM4_CBC_PKCS7, key, 16, iv, 16, msg, sizeof msg - 1,
                                  &ct, err),
                   0);
  assert_int_equal(ct.len % 16, 0);
  assert_true(ct.len > sizeof msg - 1);
  assert_int_equal(H->sym_decrypt(TB_CIPHER_SM4_CBC_PKCS7, key, 16, iv, 16, ct.data, ct.len, &pt,
                                  err),
                   0);
  assert_int_equal(pt.len, sizeof msg - 1);
  assert_memory_equal(pt.data, msg, pt.len);
  H->free(pt.data);
  H->free(ct.data);
  assert_int_equal(H->sym_encrypt(TB_CIPHER_SM4_CBC_PKCS7, key, 15, iv, 16, msg, 3, &ct, err),
                   TB_EINVAL);
  assert_non_null(strstr(err, "16-byte key"));
  assert_int_equal(H->sym_encrypt((enum tb_cipher)7, key, 16, iv, 16, msg, 3, &ct, err), TB_EINVAL);
  /* a ciphertext that is not whole blocks is refused */
  pt.data = NULL;
  assert_true(H->sym_decrypt(TB_CIPHER_SM4_CBC_PKCS7, key, 16, iv, 16, msg, 17, &pt, err) < 0);
  assert_null(pt.data);
}

static void test_xmldsig_through_the_host(void **state) {
  (void)state;
  static const char xml[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                            "<Package><Head><MsgId>1</MsgId></Head><Body>办件</Body></Package>";
  struct tb_bytes signed_xml = {0};
  char err[TB_ERRMSG_MAX] = "", signer[256] = "";
  int rc = H->xmldsig_sign(H->ctx, "laizhou-rsa", xml, sizeof xml - 1, &signed_xml, err);
  if (rc != 0) fail_msg("xmldsig_sign: %s", err);
  assert_non_null(strstr((const char *)signed_xml.data, "SignatureValue"));
  rc = H->xmldsig_verify(H->ctx, "laizhou-ca", signed_xml.data, signed_xml.len, signer,
                         sizeof signer, err);
  if (rc != 0) fail_msg("xmldsig_verify: %s", err);
  assert_non_null(strstr(signer, "laizhou 370683 signer"));
  /* another partner's CA does not vouch for it */
  assert_int_equal(H->xmldsig_verify(H->ctx, "zhaoyuan-ca", signed_xml.data, signed_xml.len,
                                     signer, sizeof signer, err),
                   TB_ECRYPTO);
  assert_string_equal(signer, "");
  /* one changed character of the body */
  char *p = strstr((char *)signed_xml.data, "<MsgId>1<");
  assert_non_null(p);
  p[7] = '2';
  assert_int_equal(H->xmldsig_verify(H->ctx, "laizhou-ca", signed_xml.data, signed_xml.len,
                                     signer, sizeof signer, err),
                   TB_ECRYPTO);
  H->free(signed_xml.data);
  /* a DTD is refused before anything else */
  static const char dtd[] = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>";
  assert_true(H->xmldsig_verify(H->ctx, "laizhou-ca", dtd, sizeof dtd - 1, signer, sizeof signer,
                                err) < 0);
  /* signing needs an RSA key with a certificate */
  signed_xml.data = NULL;
  assert_true(H->xmldsig_sign(H->ctx, "gw-sm2", xml, sizeof xml - 1, &signed_xml, err) < 0);
  assert_null(signed_xml.data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_is_complete_and_bound_to_the_partner),
      cmocka_unit_test(test_beijing_time_format_and_parse),
      cmocka_unit_test(test_rfc3339_both_ways),
      cmocka_unit_test(test_retry_after_seconds_and_http_date),
      cmocka_unit_test(test_base64_is_strict),
      cmocka_unit_test(test_digests_match_published_vectors),
      cmocka_unit_test(test_uuid_random_media),
      cmocka_unit_test(test_key_info_per_kind),
      cmocka_unit_test(test_sign_and_verify_with_every_kind),
      cmocka_unit_test(test_sm2_public_key_encryption),
      cmocka_unit_test(test_sm4_cbc),
      cmocka_unit_test(test_xmldsig_through_the_host),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
