/*
 * wire.c — the cryptographic wire forms of yue-json.md: the X-GD-* header
 * signature (SM2 with SM3 and the key's signer ID, DER, base64) over
 * AppId\nTimestamp\nNonce\nsm3hex(body), and the digital envelope (a fresh
 * SM4 key encrypted to the receiver's SM2 key in GM/T 0009 DER, the business
 * JSON in SM4-CBC with PKCS#7 padding). All key operations go through the
 * host's named keys; the only secret the adapter ever holds is the
 * ephemeral SM4 key, wiped after use.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "yuejson.h"

void yj_wipe(void *p, size_t n) {
  volatile unsigned char *v = p;
  while (n--) *v++ = 0;
}

int yj_sm3_hex(const struct tb_host *h, const void *data, size_t len, char out[65]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char d[32];
  int rc = h->digest(TB_DIGEST_SM3, data, len, d);
  if (rc != 0) return rc;
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[64] = '\0';
  return 0;
}

/* app_id\nts\nnonce\nsm3hex(body) into b. */
static int signed_string(const struct tb_host *h, const char *app_id, const char *ts,
                         const char *nonce, const void *body, size_t len, struct yj_buf *b) {
  char hex[65];
  int rc = yj_sm3_hex(h, body, len, hex);
  if (rc != 0) return rc;
  yj_buf_printf(b, "%s\n%s\n%s\n%s", app_id, ts, nonce, hex);
  return b->failed ? TB_ENOMEM : 0;
}

int yj_sign_headers(const struct yj_state *st, const void *body, size_t len, int64_t ts_ms,
                    char **out, char *err) {
  const struct tb_host *h = st->host;
  static const char hex[] = "0123456789abcdef";
  unsigned char raw[16];
  char nonce[33], ts[24];
  *out = NULL;
  if (h->random_bytes(raw, sizeof raw) != 0)
    return tb_errf(err, TB_ECRYPTO, "yue-json: no random bytes for X-GD-Nonce");
  for (int i = 0; i < 16; i++) {
    nonce[2 * i] = hex[raw[i] >> 4];
    nonce[2 * i + 1] = hex[raw[i] & 15];
  }
  nonce[32] = '\0';
  snprintf(ts, sizeof ts, "%lld", (long long)ts_ms);

  struct yj_buf s;
  yj_buf_init(&s, h);
  int rc = signed_string(h, st->app_id, ts, nonce, body, len, &s);
  if (rc != 0) {
    yj_buf_free(&s);
    return tb_errf(err, rc, "yue-json: cannot build the signed string");
  }
  struct tb_bytes sig = {NULL, 0};
  char herr[TB_ERRMSG_MAX] = "";
  rc = h->sign(h->ctx, st->key_sign, s.data, s.len, &sig, herr);
  yj_buf_free(&s);
  if (rc != 0) return tb_errf(err, rc, "yue-json: keys.sign \"%s\": %s", st->key_sign, herr);
  struct tb_bytes b64 = {NULL, 0};
  rc = h->base64_encode(sig.data, sig.len, &b64);
  h->free(sig.data);
  if (rc != 0) return tb_errf(err, rc, "yue-json: cannot base64 the signature");

  struct yj_buf hd;
  yj_buf_init(&hd, h);
  yj_buf_printf(&hd, "X-GD-AppId: %s\r\nX-GD-Timestamp: %s\r\nX-GD-Nonce: %s\r\n", st->app_id, ts,
                nonce);
  yj_buf_puts(&hd, "X-GD-Signature: ");
  yj_buf_put(&hd, b64.data, b64.len);
  yj_buf_puts(&hd, "\r\n");
  h->free(b64.data);
  *out = yj_buf_take(&hd, NULL);
  return *out ? 0 : tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
}

const char *yj_header(const struct tb_header *headers, size_t count, const char *name, int *dup) {
  const char *found = NULL;
  *dup = 0;
  for (size_t i = 0; headers != NULL && i < count; i++) {
    if (headers[i].name == NULL || strcasecmp(headers[i].name, name) != 0) continue;
    if (found) *dup = 1;
    found = headers[i].value ? headers[i].value : "";
  }
  return found;
}

/* A header value that can go into the signed string: non-empty, at most
 * 128 bytes, printable ASCII (a newline would shift the fields). */
static int plain_value(const char *v) {
  size_t n = strlen(v);
  if (n == 0 || n > 128) return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e) return 0;
  return 1;
}

void yj_verify_headers(const struct yj_state *st, const struct tb_header *headers, size_t count,
                       const void *body, size_t len, struct yj_sig_check *out) {
  const struct tb_host *h = st->host;
  static const char *const names[4] = {"X-GD-AppId", "X-GD-Timestamp", "X-GD-Nonce",
                                       "X-GD-Signature"};
  const char *v[4];
  memset(out, 0, sizeof *out);
  for (int i = 0; i < 4; i++) {
    int dup = 0;
    v[i] = yj_header(headers, count, names[i], &dup);
    if (v[i] == NULL || dup || (i < 3 && !plain_value(v[i])) || v[i][0] == '\0') {
      out->result = YJ_SIG_MISSING;
      snprintf(out->why, sizeof out->why, "%s is %s", names[i],
               v[i] == NULL ? "missing"
               : dup        ? "repeated"
                            : "empty or not printable ASCII");
      return;
    }
  }
  out->timestamp = v[1];
  out->nonce = v[2];
  if (strcmp(v[0], st->peer_app_id) != 0) {
    out->result = YJ_SIG_WRONG_APPID;
    snprintf(out->why, sizeof out->why, "X-GD-AppId is not the partner's (%s)", st->peer_app_id);
    return;
  }
  struct tb_bytes sig = {NULL, 0};
  if (strlen(v[3]) > 512 || h->base64_decode(v[3], strlen(v[3]), &sig) != 0) {
    out->result = YJ_SIG_MALFORMED;
    snprintf(out->why, sizeof out->why, "X-GD-Signature is not base64");
    return;
  }
  struct yj_buf s;
  yj_buf_init(&s, h);
  int rc = signed_string(h, v[0], v[1], v[2], body, len, &s);
  if (rc != 0) {
    h->free(sig.data);
    yj_buf_free(&s);
    out->result = YJ_SIG_NOMEM;
    snprintf(out->why, sizeof out->why, "out of memory");
    return;
  }
  char herr[TB_ERRMSG_MAX] = "";
  rc = sig.len == 0 ? TB_ECRYPTO
                    : h->verify(h->ctx, st->key_peer, s.data, s.len, sig.data, sig.len, herr);
  h->free(sig.data);
  yj_buf_free(&s);
  if (rc != 0) {
    out->result = YJ_SIG_INVALID;
    snprintf(out->why, sizeof out->why, "X-GD-Signature does not verify with keys.peer");
    return;
  }
  out->result = YJ_SIG_OK;
}

/* ---- envelope ----------------------------------------------------------------- */

static int b64(const struct tb_host *h, const void *data, size_t len, struct tb_bytes *out) {
  out->data = NULL;
  out->len = 0;
  return h->base64_encode(data, len, out);
}

int yj_envelope_seal(const struct yj_state *st, const char *msg_id, const char *msg_type,
                     const void *biz, size_t biz_len, struct yj_buf *out, char *err) {
  const struct tb_host *h = st->host;
  unsigned char key[16], iv[16];
  struct tb_bytes ek = {NULL, 0}, ct = {NULL, 0}, ek64 = {NULL, 0}, iv64 = {NULL, 0},
                  ct64 = {NULL, 0};
  char herr[TB_ERRMSG_MAX] = "";
  int rc;
  /* A fresh key and IV for every attempt: an SM4 key is never reused. */
  if (h->random_bytes(key, sizeof key) != 0 || h->random_bytes(iv, sizeof iv) != 0) {
    rc = tb_errf(err, TB_ECRYPTO, "yue-json: no random bytes for the envelope");
    goto done;
  }
  if ((rc = h->pk_encrypt(h->ctx, st->key_peer, key, sizeof key, &ek, herr)) != 0) {
    rc = tb_errf(err, rc, "yue-json: keys.peer \"%s\": cannot encrypt the SM4 key: %s",
                 st->key_peer, herr);
    goto done;
  }
  if ((rc = h->sym_encrypt(TB_CIPHER_SM4_CBC_PKCS7, key, sizeof key, iv, sizeof iv, biz, biz_len,
                           &ct, herr)) != 0) {
    rc = tb_errf(err, rc, "yue-json: SM4-CBC: %s", herr);
    goto done;
  }
  if ((rc = b64(h, ek.data, ek.len, &ek64)) != 0 || (rc = b64(h, iv, sizeof iv, &iv64)) != 0 ||
      (rc = b64(h, ct.data, ct.len, &ct64)) != 0) {
    rc = tb_errf(err, rc, "yue-json: cannot base64 the envelope");
    goto done;
  }
  yj_json_open(out, '{');
  yj_json_key(out, "msgId");
  yj_json_str(out, msg_id);
  yj_json_key(out, "msgType");
  yj_json_str(out, msg_type);
  yj_json_key(out, "encryptKey");
  yj_json_strn(out, (const char *)ek64.data, ek64.len);
  yj_json_key(out, "iv");
  yj_json_strn(out, (const char *)iv64.data, iv64.len);
  yj_json_key(out, "bizContent");
  yj_json_strn(out, (const char *)ct64.data, ct64.len);
  yj_json_close(out, '}');
  rc = out->failed ? tb_errf(err, TB_ENOMEM, "yue-json: out of memory") : 0;
done:
  yj_wipe(key, sizeof key);
  h->free(ek.data);
  h->free(ct.data);
  h->free(ek64.data);
  h->free(iv64.data);
  h->free(ct64.data);
  return rc;
}

int yj_envelope_open(const struct yj_state *st, const char *encrypt_key, size_t ek_len,
                     const char *iv, size_t iv_len, const char *biz, size_t biz_len,
                     struct tb_bytes *plain, char *why, size_t why_size) {
  const struct tb_host *h = st->host;
  struct tb_bytes ek = {NULL, 0}, key = {NULL, 0}, ivb = {NULL, 0}, ct = {NULL, 0};
  char herr[TB_ERRMSG_MAX] = "";
  int rc = TB_ECRYPTO;
  plain->data = NULL;
  plain->len = 0;
  int r;
  /* Every failure below is 4020 for the partner, except running out of
   * memory, which is ours (decode then returns TB_ENOMEM). */
#define YJ_FAIL(call, ...)                      \
  if ((r = (call)) != 0) {                      \
    if (r == TB_ENOMEM) {                       \
      rc = TB_ENOMEM;                           \
      snprintf(why, why_size, "out of memory"); \
    } else {                                    \
      snprintf(why, why_size, __VA_ARGS__);     \
    }                                           \
    goto done;                                  \
  }
  if (ek_len > 4096) {
    snprintf(why, why_size, "encryptKey is too long for an SM2 ciphertext of a 16-byte key");
    goto done;
  }
  YJ_FAIL(h->base64_decode(encrypt_key, ek_len, &ek), "encryptKey is not base64")
  YJ_FAIL(h->pk_decrypt(h->ctx, st->key_decrypt, ek.data, ek.len, &key, herr),
          "encryptKey does not decrypt with keys.decrypt")
  if (key.len != 16) {
    snprintf(why, why_size, "encryptKey holds %zu bytes, not a 16-byte SM4 key", key.len);
    goto done;
  }
  YJ_FAIL(iv_len > 64 ? TB_EPARSE : h->base64_decode(iv, iv_len, &ivb), "iv is not base64")
  if (ivb.len != 16) {
    snprintf(why, why_size, "iv holds %zu bytes, not 16", ivb.len);
    goto done;
  }
  YJ_FAIL(h->base64_decode(biz, biz_len, &ct), "bizContent is not base64")
  if (ct.len == 0 || ct.len % 16 != 0) {
    snprintf(why, why_size, "bizContent is not a whole number of SM4 blocks");
    goto done;
  }
  YJ_FAIL(h->sym_decrypt(TB_CIPHER_SM4_CBC_PKCS7, key.data, key.len, ivb.data, ivb.len, ct.data,
                         ct.len, plain, herr),
          "bizContent does not decrypt (wrong key or bad padding)")
#undef YJ_FAIL
  rc = 0;
done:
  if (rc != 0 && plain->data) { /* never hand out half a result */
    h->free(plain->data);
    plain->data = NULL;
    plain->len = 0;
  }
  if (key.data) yj_wipe(key.data, key.len);
  h->free(ek.data);
  h->free(key.data);
  h->free(ivb.data);
  h->free(ct.data);
  return rc;
}
