/*
 * fuzz_yuejson_decode — a partner's POST to the yue-json callback route,
 * through the real adapter (adapters/yue-json) and host: decode, then
 * answer() for every outcome the host could reach, then release.
 *
 * Input format (first byte):
 *   'E' TYPE '\n' BIZ   BIZ is the business JSON of msgType TYPE: the
 *                       harness seals it in a digital envelope to our key
 *                       (SM4-CBC under a fixed key, the key SM2-encrypted to
 *                       gw-sm2), signs the X-GD-* headers with the partner's
 *                       key: the mapping code behind crypto
 *   'B' BODY            BODY is the envelope JSON, sent with valid X-GD-*
 *                       headers: the envelope and decryption checks
 *   anything else       "Name: value" header lines, an empty line, the body,
 *                       all as given (nothing signed): the header checks
 * Checks: the decode contract of tbgw/adapter.h, answer() on every outcome,
 * no leaks.
 */
#include <jansson.h>

#include "fuzz_adapter.h"

#define SETTINGS                                                                            \
  "{\"name\":\"wujiang\",\"adapter\":\"yue-json\",\"regions\":[\"440203\"],"               \
  "\"endpoint\":\"https://127.0.0.1:9543\",\"app_id\":\"" FUZZ_YJ_GW_APP                    \
  "\",\"peer_app_id\":\"" FUZZ_YJ_PEER_APP                                                  \
  "\",\"keys\":{\"sign\":\"gw-sm2\",\"decrypt\":\"gw-sm2\",\"peer\":\"wujiang-sm2-pub\"},"  \
  "\"replay_window_s\":300}"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_adapter_setup("yue-json", "wujiang", SETTINGS);
  return 0;
}

static void decode(const struct tb_header *hd, size_t nh, const void *body, size_t len,
                   int64_t now_ms) {
  struct tb_inbound_request req = {.method = "POST", .path = "/gateway/tongban/callback",
                                   .headers = hd, .header_count = nh,
                                   .body = body, .body_len = len,
                                   .peer_subject = NULL, .now_ms = now_ms};
  struct tb_inbound_message m;
  memset(&m, 0, sizeof m);
  char err[TB_ERRMSG_MAX] = "";
  int rc = fuzz_ops()->decode(fuzz_state(), &req, &m, err);
  fuzz_check_decoded(rc, &m);
  if (rc == 0) fuzz_answer_and_release(&req, &m);
}

static void decode_signed(const void *body, size_t len, int64_t now) {
  struct fuzz_yj_signed s;
  fuzz_yj_sign(&s, "wujiang-sm2", FUZZ_YJ_PEER_APP, now, body, len);
  decode(s.h, s.n, body, len, now);
  fuzz_host()->free(s.sig);
}

static char *b64(const void *p, size_t n) {
  struct tb_bytes o = {NULL, 0};
  TB_FUZZ_CHECK(fuzz_host()->base64_encode(p, n, &o) == 0);
  return (char *)o.data;
}

/* The envelope around biz, as the partner would build it. */
static void decode_enveloped(const char *type, size_t type_len, const uint8_t *biz, size_t len,
                             int64_t now) {
  const struct tb_host *h = fuzz_host();
  static const unsigned char key[16] = {0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
                                        0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00};
  static const unsigned char iv[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  struct tb_bytes ek = {NULL, 0}, ct = {NULL, 0};
  char err[TB_ERRMSG_MAX];
  TB_FUZZ_CHECK(h->pk_encrypt(h->ctx, "gw-sm2", key, 16, &ek, err) == 0);
  TB_FUZZ_CHECK(h->sym_encrypt(TB_CIPHER_SM4_CBC_PKCS7, key, 16, iv, 16, biz, len, &ct, err) ==
                0);
  char *ek64 = b64(ek.data, ek.len), *iv64 = b64(iv, 16), *ct64 = b64(ct.data, ct.len);
  json_t *env = json_object();
  json_object_set_new(env, "msgId", json_string("5f0c1a8e-2b7d-4e39-a1c4-0d9e8f7a6b5c"));
  json_object_set_new(env, "msgType", json_stringn_nocheck(type, type_len));
  json_object_set_new(env, "encryptKey", json_string(ek64));
  json_object_set_new(env, "iv", json_string(iv64));
  json_object_set_new(env, "bizContent", json_string(ct64));
  char *text = json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(env);
  if (text != NULL) decode_signed(text, strlen(text), now);
  free(text);
  h->free(ek.data);
  h->free(ct.data);
  h->free(ek64);
  h->free(iv64);
  h->free(ct64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int64_t now = fuzz_host()->now_ms();
  if (size > 0 && data[0] == 'E') {
    const uint8_t *nl = memchr(data + 1, '\n', size - 1);
    if (nl == NULL) return 0;
    size_t tl = (size_t)(nl - (data + 1));
    decode_enveloped((const char *)data + 1, tl, nl + 1, size - 1 - tl - 1, now);
  } else if (size > 0 && data[0] == 'B') {
    decode_signed(data + 1, size - 1, now);
  } else {
    struct fuzz_hdrs x;
    fuzz_hdrs_parse(&x, data, size);
    decode(x.h, x.n, x.body, x.body_len, now);
    free(x.buf);
  }
  return 0;
}
