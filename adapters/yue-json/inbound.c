/*
 * inbound.c — the partner calls POST /partners/{partner}/gateway/tongban/callback
 * (yue-json.md "Transport"): decode checks the X-GD-* signature, hands the
 * timestamp and nonce to the host (which applies the 300 000 ms window and
 * the durable nonce store), opens the envelope and maps the business JSON to
 * canonical; answer writes the signed {"code","msg","data"} response.
 *
 * Check order (as the mock partner's reading 21 of the document): AppId and
 * signature (4010), timestamp format (4011), nonce format (4012), envelope
 * shape (4001), decryption (4020), business JSON (4001). A refusal's text
 * names the part that failed and never a value from the message.
 */
#include <stdio.h>
#include <string.h>

#include "yuejson.h"

static const struct {
  const char *code;
  const char *msg;
} meanings[] = {
    {"0000", "成功"},           {"0001", "重复消息，已接收"},
    {"4001", "参数不合法"},     {"4010", "AppId未知或签名错误"},
    {"4011", "时间戳超出窗口"}, {"4012", "随机数重复"},
    {"4020", "无法解密"},       {"4030", "事项未知"},
    {"5000", "系统错误"},       {"5030", "系统繁忙"},
};

static const char *meaning(const char *code) {
  for (size_t i = 0; i < sizeof meanings / sizeof meanings[0]; i++)
    if (strcmp(meanings[i].code, code) == 0) return meanings[i].msg;
  return "错误";
}

static int refuse(const struct yj_state *st, struct tb_inbound_message *out, const char *code,
                  const char *why) {
  const struct tb_host *h = st->host;
  out->kind = TB_INBOUND_REFUSED;
  snprintf(out->refuse_code, sizeof out->refuse_code, "%s", code);
  yj_copy_text(out->refuse_text, sizeof out->refuse_text, why, strlen(why));
  char line[400];
  snprintf(line, sizeof line, "refused with %s: %s", code, out->refuse_text);
  h->log(h->ctx, TB_SEV_WARN, "yuejson.refused", line);
  return 0;
}

static int all_digits(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

static int nonce_ok(const char *s) {
  if (strlen(s) != 32) return 0;
  for (int i = 0; i < 32; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

/* The envelope's five strings; anything else is 4001 (reading 20). */
static int envelope_fields(const json_t *env, const char *v[5], size_t len[5], char *why,
                           size_t why_size) {
  static const char *const keys[5] = {"msgId", "msgType", "encryptKey", "iv", "bizContent"};
  if (!json_is_object(env)) {
    snprintf(why, why_size, "the body is not a JSON object (the envelope)");
    return -1;
  }
  for (int i = 0; i < 5; i++) {
    const json_t *x = json_object_get(env, keys[i]);
    if (!json_is_string(x)) {
      snprintf(why, why_size, "envelope: %s %s", keys[i], x ? "must be a string" : "is missing");
      return -1;
    }
    v[i] = json_string_value(x);
    len[i] = json_string_length(x);
  }
  if (json_object_size(env) != 5) {
    snprintf(why, why_size, "envelope: keys other than msgId, msgType, encryptKey, iv, bizContent");
    return -1;
  }
  return 0;
}

int yj_decode(void *state, const struct tb_inbound_request *req, struct tb_inbound_message *out,
              char *err) {
  const struct yj_state *st = state;
  const struct tb_host *h = st->host;
  memset(out, 0, sizeof *out);
  out->kind = TB_INBOUND_REFUSED;
  if (req->method == NULL || strcmp(req->method, "POST") != 0 || req->path == NULL ||
      strcmp(req->path, YJ_CALLBACK_PATH) != 0)
    return refuse(st, out, "4001", "not POST " YJ_CALLBACK_PATH);
  if (req->body_len > YJ_BODY_MAX || (req->body == NULL && req->body_len > 0))
    return refuse(st, out, "4001", "body too large");
  const unsigned char *body = req->body ? req->body : (const unsigned char *)"";

  /* 1. Who sent it, and is it theirs (4010). */
  struct yj_sig_check sc;
  yj_verify_headers(st, req->headers, req->header_count, body, req->body_len, &sc);
  if (sc.result == YJ_SIG_NOMEM) return tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
  if (sc.result != YJ_SIG_OK) return refuse(st, out, "4010", sc.why);
  /* 2. Timestamp and nonce: their format here, the window and the replay
   * store in the host (STALE → 4011, NONCE_REUSED → 4012). A timestamp of 0
   * would mean "none" to the host, so it is refused here. */
  if (!all_digits(sc.timestamp, 18) || strspn(sc.timestamp, "0") == strlen(sc.timestamp))
    return refuse(st, out, "4011", "X-GD-Timestamp is not Unix milliseconds");
  if (!nonce_ok(sc.nonce)) return refuse(st, out, "4012", "X-GD-Nonce is not 32 lowercase hex");
  long long ts = 0;
  sscanf(sc.timestamp, "%lld", &ts);
  out->sent_ms = (int64_t)ts;
  snprintf(out->nonce, sizeof out->nonce, "%s", sc.nonce);

  /* 3. The envelope (4001 for its shape, 4020 for its cryptography). */
  json_error_t jerr;
  json_t *env = json_loadb((const char *)body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
  const char *v[5];
  size_t len[5];
  char why[256];
  if (envelope_fields(env, v, len, why, sizeof why) != 0) {
    json_decref(env);
    return refuse(st, out, "4001", why);
  }
  if (!yj_is_uuid(v[0])) {
    json_decref(env);
    return refuse(st, out, "4001", "envelope: msgId is not a UUID");
  }
  snprintf(out->message_id, sizeof out->message_id, "%s", v[0]);
  enum tb_msg_type type = yj_msg_type_parse(v[1]);
  if (type == 0 || strlen(v[1]) != len[1]) {
    json_decref(env);
    return refuse(st, out, "4001", "envelope: msgType is not one of the four");
  }
  out->type = type;
  struct tb_bytes plain = {NULL, 0};
  int rc = yj_envelope_open(st, v[2], len[2], v[3], len[3], v[4], len[4], &plain, why, sizeof why);
  json_decref(env);
  if (rc == TB_ENOMEM) return tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
  if (rc != 0) return refuse(st, out, "4020", why);

  /* 4. The business JSON: what decrypts to something that is not UTF-8 JSON
   * was not encrypted for us (4020); JSON of the wrong shape is 4001. */
  json_t *biz = NULL;
  if (yj_utf8_valid((const char *)plain.data, plain.len))
    biz = json_loadb((const char *)plain.data, plain.len, JSON_REJECT_DUPLICATES, &jerr);
  yj_wipe(plain.data, plain.len);
  h->free(plain.data);
  if (biz == NULL) return refuse(st, out, "4020", "bizContent does not decrypt to UTF-8 JSON");
  struct yj_buf canon;
  yj_buf_init(&canon, h);
  struct yj_inbound_fields f;
  rc = yj_canonical_from_biz(st, type, biz, &canon, &f, why, sizeof why);
  json_decref(biz);
  if (rc != 0) {
    yj_buf_free(&canon);
    if (rc == TB_ENOMEM) return tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
    return refuse(st, out, "4001", why);
  }
  out->canonical.data = (unsigned char *)yj_buf_take(&canon, &out->canonical.len);
  if (out->canonical.data == NULL) return tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
  snprintf(out->case_id, sizeof out->case_id, "%s", f.case_id);
  snprintf(out->receipt_no, sizeof out->receipt_no, "%s", f.receipt_no);
  out->kind = type == TB_MSG_STATUS_NOTIFY ? TB_INBOUND_STATUS
              : type == TB_MSG_CASE_SUBMIT ? TB_INBOUND_CASE
                                           : TB_INBOUND_OTHER;
  return 0;
}

int yj_answer(void *state, const struct tb_inbound_request *req,
              const struct tb_inbound_message *msg, enum tb_inbound_outcome outcome,
              const char *receipt_no, struct tb_wire_answer *out, char *err) {
  const struct yj_state *st = state;
  const struct tb_host *h = st->host;
  (void)req;
  memset(out, 0, sizeof *out);
  const char *code;
  const char *detail = NULL;
  int with_receipt = 0;
  switch (outcome) {
  /* "receiptNo is present for CASE_SUBMIT" (yue-json.md "Response"): only
   * there, and for a duplicate the first answer's. */
  case TB_INBOUND_ACCEPTED:
    code = "0000";
    with_receipt = msg && msg->type == TB_MSG_CASE_SUBMIT;
    break;
  case TB_INBOUND_DUPLICATE:
    code = "0001";
    with_receipt = msg && msg->type == TB_MSG_CASE_SUBMIT;
    break;
  case TB_INBOUND_STALE: code = "4011"; break;
  case TB_INBOUND_NONCE_REUSED: code = "4012"; break;
  case TB_INBOUND_REFUSE:
    code = msg && msg->refuse_code[0] ? msg->refuse_code : "4001";
    detail = msg && msg->refuse_text[0] ? msg->refuse_text : NULL;
    break;
  /* A status for a case we never sent: its applyNo/receiptNo identify
   * nothing here, a parameter error (4030 is about matters, not cases). */
  case TB_INBOUND_UNKNOWN_CASE:
    code = "4001";
    detail = "applyNo is not a case sent to you";
    break;
  case TB_INBOUND_FAILED: code = "5000"; break;
  default: code = "5000"; break;
  }
  struct yj_buf b;
  yj_buf_init(&b, h);
  yj_json_open(&b, '{');
  yj_json_key(&b, "code");
  yj_json_str(&b, code);
  yj_json_key(&b, "msg");
  if (detail) {
    struct yj_buf m;
    yj_buf_init(&m, h);
    yj_buf_printf(&m, "%s: %s", meaning(code), detail);
    if (m.failed)
      b.failed = 1;
    else
      yj_json_strn(&b, m.data, m.len);
    yj_buf_free(&m);
  } else {
    yj_json_str(&b, meaning(code));
  }
  yj_json_key(&b, "data");
  if (msg && msg->message_id[0]) {
    yj_json_open(&b, '{');
    yj_json_key(&b, "msgId");
    yj_json_str(&b, msg->message_id);
    if (with_receipt && receipt_no && receipt_no[0]) {
      yj_json_key(&b, "receiptNo");
      yj_json_str(&b, receipt_no);
    }
    yj_json_close(&b, '}');
  } else {
    yj_json_null(&b); /* no msgId could be read (reading 28) */
  }
  yj_json_close(&b, '}');
  out->body.data = (unsigned char *)yj_buf_take(&b, &out->body.len);
  if (out->body.data == NULL) return tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
  int rc = yj_sign_headers(st, out->body.data, out->body.len, h->now_ms(), &out->headers, err);
  if (rc == 0) {
    out->content_type = h->alloc(sizeof YJ_CONTENT_TYPE);
    if (out->content_type == NULL)
      rc = tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
    else
      memcpy(out->content_type, YJ_CONTENT_TYPE, sizeof YJ_CONTENT_TYPE);
  }
  if (rc != 0) {
    h->free(out->body.data);
    h->free(out->headers);
    h->free(out->content_type);
    memset(out, 0, sizeof *out);
    return rc;
  }
  out->http_status = 200;
  return 0;
}

void yj_release(void *state, struct tb_inbound_message *msg) {
  (void)state;
  /* decode keeps nothing of its own in adapter_data. */
  if (msg) msg->adapter_data = NULL;
}
