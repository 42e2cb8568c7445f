/*
 * The host services adapters call (tbgw/adapter.h), implemented on the
 * gateway's own modules: crypto/ for keys and algorithms, case/ for RFC 3339
 * and media types, core/ for logging and masking. Signature algorithms follow
 * from the named key's kind, so an adapter cannot ask for a weaker algorithm
 * than the key was configured for.
 */
#include "plugin/host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "case/media.h"
#include "case/rfc3339.h"
#include "core/log.h"
#include "core/mask.h"
#include "core/timefmt.h"
#include "crypto/crypto.h"
#include "crypto/xmldsig.h"

#define BEIJING_OFFSET_MS (8 * 3600 * 1000LL)

static struct tb_plugin_host *host_of(void *ctx) { return ctx; }

static void host_log(void *ctx, enum tb_log_severity sev, const char *event, const char *msg) {
  struct tb_plugin_host *h = host_of(ctx);
  enum tb_log_level level = sev <= TB_SEV_DEBUG ? TB_LOG_DEBUG
                            : sev == TB_SEV_INFO ? TB_LOG_INFO
                            : sev == TB_SEV_WARN ? TB_LOG_WARN
                                                 : TB_LOG_ERROR;
  struct tb_log_line *l = tb_log_begin(level, event ? event : "adapter.log");
  tb_log_str(l, "partner", h->partner);
  tb_log_str(l, "msg", msg);
  tb_log_end(l);
}

static int64_t host_now_ms(void) { return tb_time_now_ms(); }

static int host_format_beijing(int64_t unix_ms, char *out, size_t out_size) {
  if (out_size < 20) return TB_EINVAL;
  int64_t ms = unix_ms + BEIJING_OFFSET_MS;
  time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  struct tm tm;
  if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 > 9999 || tm.tm_year + 1900 < 1)
    return TB_EINVAL;
  /* Fields are range-checked by gmtime_r; a local buffer keeps the
   * compiler's truncation analysis (and any caller's) out of the way. */
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (strlen(buf) >= out_size) return TB_EINVAL;
  memcpy(out, buf, strlen(buf) + 1);
  return 0;
}

static int digits(const char *s, size_t n, int *out) {
  int v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return 1;
}

static int host_parse_beijing(const char *s, size_t len, int64_t *unix_ms_out) {
  /* yyyy-MM-dd HH:mm:ss, exactly 19 characters */
  int y, mo, d, h, mi, se;
  if (s == NULL || len != 19 || s[4] != '-' || s[7] != '-' || s[10] != ' ' || s[13] != ':' ||
      s[16] != ':')
    return TB_EPARSE;
  if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
      !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &se))
    return TB_EPARSE;
  /* Reuse the RFC 3339 parser's calendar checks with a +08:00 offset. */
  char rfc[32];
  snprintf(rfc, sizeof rfc, "%04d-%02d-%02dT%02d:%02d:%02d+08:00", y, mo, d, h, mi, se);
  int off = 0;
  return tb_rfc3339_parse(rfc, strlen(rfc), unix_ms_out, &off) == 0 ? 0 : TB_EPARSE;
}

static int host_parse_rfc3339(const char *s, size_t len, int64_t *unix_ms_out) {
  int off = 0;
  return tb_rfc3339_parse(s, len, unix_ms_out, &off) == 0 ? 0 : TB_EPARSE;
}

static int host_format_rfc3339_beijing(int64_t unix_ms, char *out, size_t out_size) {
  char day[24];
  if (out_size < 26 || host_format_beijing(unix_ms, day, sizeof day) != 0) return TB_EINVAL;
  day[10] = 'T';
  snprintf(out, out_size, "%s+08:00", day);
  return 0;
}

static int host_base64_encode(const void *data, size_t len, struct tb_bytes *out) {
  char *text = NULL;
  size_t n = 0;
  int rc = tb_crypto_base64_encode(data, len, &text, &n, NULL);
  if (rc != 0) return rc;
  out->data = (unsigned char *)text;
  out->len = n;
  return 0;
}

static int host_base64_decode(const char *text, size_t len, struct tb_bytes *out) {
  return tb_crypto_base64_decode(text, len, &out->data, &out->len, NULL);
}

static void host_uuid_v4(char out[37]) {
  if (tb_crypto_uuid4(out, NULL) != 0) abort(); /* no randomness: nothing is safe to send */
}

static int host_random_bytes(void *buf, size_t len) { return tb_crypto_random(buf, len, NULL); }

static int host_digest(enum tb_digest_alg alg, const void *data, size_t len,
                       unsigned char out[32]) {
  if (alg == TB_DIGEST_SM3) return tb_crypto_sm3(data, len, out, NULL);
  if (alg == TB_DIGEST_SHA256) return tb_crypto_sha256(data, len, out, NULL);
  return TB_EINVAL;
}

static int host_key_info(void *ctx, const char *key, struct tb_host_key_info *out, char *err) {
  struct tb_key_info ki;
  const struct tb_keystore *ks = host_of(ctx)->keys;
  int rc = tb_keystore_key_info(ks, key, &ki, err);
  if (rc == TB_ENOTFOUND && tb_keystore_has_ca(ks, key)) {
    /* A trust anchor: named like a key, good for nothing but verifying
     * certificate chains (xmldsig_verify). */
    memset(out, 0, sizeof *out);
    out->kind = TB_HOST_KEY_CA;
    out->has_certificate = 1;
    return 0;
  }
  if (rc != 0) return rc;
  memset(out, 0, sizeof *out);
  switch (ki.kind) {
  case TB_KEY_RSA: out->kind = TB_HOST_KEY_RSA; break;
  case TB_KEY_EC_P256: out->kind = TB_HOST_KEY_EC_P256; break;
  case TB_KEY_ED25519: out->kind = TB_HOST_KEY_ED25519; break;
  case TB_KEY_SM2: out->kind = TB_HOST_KEY_SM2; break;
  default: out->kind = TB_HOST_KEY_CA; break;
  }
  out->has_private = ki.has_private;
  out->has_certificate = ki.has_cert;
  return 0;
}

/* The one signature algorithm each key kind is used with (see adapter.h). */
static int alg_for_key(const struct tb_keystore *ks, const char *key, enum tb_sig_alg *alg,
                       char *err) {
  struct tb_key_info ki;
  int rc = tb_keystore_key_info(ks, key, &ki, err);
  if (rc != 0) return rc;
  switch (ki.kind) {
  case TB_KEY_RSA: *alg = TB_SIG_RSA_PKCS1_SHA256; return 0;
  case TB_KEY_EC_P256: *alg = TB_SIG_ECDSA_P256_SHA256; return 0;
  case TB_KEY_ED25519: *alg = TB_SIG_ED25519; return 0;
  case TB_KEY_SM2: *alg = TB_SIG_SM2_SM3; return 0;
  }
  return tb_errf(err, TB_EINVAL, "key \"%s\" cannot sign or verify", key);
}

static int host_sign(void *ctx, const char *key, const void *data, size_t len,
                     struct tb_bytes *sig, char *err) {
  const struct tb_keystore *ks = host_of(ctx)->keys;
  enum tb_sig_alg alg = TB_SIG_RSA_PKCS1_SHA256; /* set by alg_for_key */
  int rc = alg_for_key(ks, key, &alg, err);
  if (rc != 0) return rc;
  unsigned char buf[TB_CRYPTO_SIG_MAX];
  size_t n = sizeof buf;
  rc = tb_crypto_sign(ks, key, alg, data, len, buf, &n, err);
  if (rc != 0) return rc;
  sig->data = malloc(n);
  if (sig->data == NULL) return tb_errf(err, TB_ENOMEM, "out of memory");
  memcpy(sig->data, buf, n);
  sig->len = n;
  return 0;
}

static int host_verify(void *ctx, const char *key, const void *data, size_t len,
                       const void *sig, size_t sig_len, char *err) {
  const struct tb_keystore *ks = host_of(ctx)->keys;
  enum tb_sig_alg alg = TB_SIG_RSA_PKCS1_SHA256; /* set by alg_for_key */
  int rc = alg_for_key(ks, key, &alg, err);
  if (rc != 0) return rc;
  rc = tb_crypto_verify(ks, key, alg, data, len, sig, sig_len, err);
  return rc == TB_EAUTH ? TB_ECRYPTO : rc;
}

static int host_pk_encrypt(void *ctx, const char *key, const void *data, size_t len,
                           struct tb_bytes *out, char *err) {
  return tb_crypto_sm2_encrypt(host_of(ctx)->keys, key, data, len, &out->data, &out->len, err);
}

static int host_pk_decrypt(void *ctx, const char *key, const void *data, size_t len,
                           struct tb_bytes *out, char *err) {
  return tb_crypto_sm2_decrypt(host_of(ctx)->keys, key, data, len, &out->data, &out->len, err);
}

static int sym_check(enum tb_cipher cipher, size_t key_len, size_t iv_len, char *err) {
  if (cipher != TB_CIPHER_SM4_CBC_PKCS7)
    return tb_errf(err, TB_EINVAL, "unknown cipher %d", (int)cipher);
  if (key_len != TB_SM4_KEY_LEN || iv_len != TB_SM4_IV_LEN)
    return tb_errf(err, TB_EINVAL, "SM4-CBC needs a 16-byte key and a 16-byte IV (got %zu and %zu)",
                   key_len, iv_len);
  return 0;
}

static int host_sym_encrypt(enum tb_cipher cipher, const unsigned char *key, size_t key_len,
                            const unsigned char *iv, size_t iv_len, const void *data, size_t len,
                            struct tb_bytes *out, char *err) {
  int rc = sym_check(cipher, key_len, iv_len, err);
  return rc ? rc : tb_crypto_sm4_cbc_encrypt(key, iv, data, len, &out->data, &out->len, err);
}

static int host_sym_decrypt(enum tb_cipher cipher, const unsigned char *key, size_t key_len,
                            const unsigned char *iv, size_t iv_len, const void *data, size_t len,
                            struct tb_bytes *out, char *err) {
  int rc = sym_check(cipher, key_len, iv_len, err);
  return rc ? rc : tb_crypto_sm4_cbc_decrypt(key, iv, data, len, &out->data, &out->len, err);
}

static int host_xmldsig_sign(void *ctx, const char *key, const void *xml, size_t len,
                             struct tb_bytes *signed_xml, char *err) {
  return tb_xmldsig_sign(host_of(ctx)->keys, key, xml, len, &signed_xml->data, &signed_xml->len,
                         err);
}

static int host_xmldsig_verify(void *ctx, const char *trusted_ca, const void *xml, size_t len,
                               char *signer, size_t signer_size, char *err) {
  struct tb_xmldsig_signer who;
  memset(&who, 0, sizeof who);
  int rc = tb_xmldsig_verify(host_of(ctx)->keys, trusted_ca, xml, len, NULL, &who, NULL, err);
  if (signer && signer_size) snprintf(signer, signer_size, "%s", rc == 0 ? who.subject : "");
  return rc == TB_EAUTH ? TB_ECRYPTO : rc;
}

static const char *host_media_ext(const char *media_type) { return tb_case_media_ext(media_type); }

static const char *host_media_type_for_ext(const char *ext) {
  return tb_case_media_type_for_ext(ext);
}

/* RFC 9110 §10.2.3: delay-seconds or an HTTP-date. */
static int64_t host_retry_after_ms(const char *value) {
  if (value == NULL) return -1;
  while (*value == ' ' || *value == '\t') value++;
  if (*value >= '0' && *value <= '9') {
    int64_t s = 0;
    for (; *value >= '0' && *value <= '9'; value++) {
      if (s > 10 * 365 * 86400LL) return -1;
      s = s * 10 + (*value - '0');
    }
    while (*value == ' ' || *value == '\t') value++;
    return *value == '\0' ? s * 1000 : -1;
  }
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  /* IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT" (the obsolete RFC 850 and
   * asctime forms are not sent by anything we talk to). */
  char wday[4], mon[4];
  int d, y, h, mi, se, end = -1;
  if (sscanf(value, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", wday, &d, mon, &y, &h, &mi,
             &se, &end) != 7 || end < 0)
    return -1;
  while (value[end] == ' ' || value[end] == '\t') end++;
  if (value[end] != '\0') return -1;
  int m = -1;
  for (int i = 0; i < 12; i++)
    if (strcmp(mon, months[i]) == 0) m = i;
  if (m < 0) return -1;
  char rfc[40];
  snprintf(rfc, sizeof rfc, "%04d-%02d-%02dT%02d:%02d:%02dZ", y, m + 1, d, h, mi, se);
  int64_t at = 0;
  int off = 0;
  if (tb_rfc3339_parse(rfc, strlen(rfc), &at, &off) != 0) return -1;
  int64_t delta = at - tb_time_now_ms();
  return delta > 0 ? delta : 0;
}

void tb_plugin_host_init(struct tb_plugin_host *h, const struct tb_keystore *keys,
                         const char *partner, const char *node_region) {
  memset(h, 0, sizeof *h);
  h->keys = keys;
  snprintf(h->partner, sizeof h->partner, "%s", partner ? partner : "");
  snprintf(h->node_region, sizeof h->node_region, "%s", node_region ? node_region : "");
  struct tb_host *t = &h->table;
  t->abi_major = TB_ADAPTER_ABI_MAJOR;
  t->abi_minor = TB_ADAPTER_ABI_MINOR;
  t->ctx = h;
  t->partner = h->partner;
  t->node_region = h->node_region;
  t->alloc = malloc;
  t->realloc = realloc;
  t->free = free;
  t->log = host_log;
  t->mask_id = tb_mask_id;
  t->mask_phone = tb_mask_phone;
  t->mask_name = tb_mask_name;
  t->now_ms = host_now_ms;
  t->format_beijing = host_format_beijing;
  t->parse_beijing = host_parse_beijing;
  t->parse_rfc3339 = host_parse_rfc3339;
  t->format_rfc3339_beijing = host_format_rfc3339_beijing;
  t->base64_encode = host_base64_encode;
  t->base64_decode = host_base64_decode;
  t->uuid_v4 = host_uuid_v4;
  t->random_bytes = host_random_bytes;
  t->digest = host_digest;
  t->key_info = host_key_info;
  t->sign = host_sign;
  t->verify = host_verify;
  t->pk_encrypt = host_pk_encrypt;
  t->pk_decrypt = host_pk_decrypt;
  t->sym_encrypt = host_sym_encrypt;
  t->sym_decrypt = host_sym_decrypt;
  t->xmldsig_sign = host_xmldsig_sign;
  t->xmldsig_verify = host_xmldsig_verify;
  t->media_ext = host_media_ext;
  t->media_type_for_ext = host_media_type_for_ext;
  t->retry_after_ms = host_retry_after_ms;
}
