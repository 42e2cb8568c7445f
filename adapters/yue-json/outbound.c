/*
 * outbound.c — canonical message → one signed, enveloped POST (encode), and
 * the partner's answer → a verdict (classify), per yue-json.md "Request
 * signature", "Body: digital envelope" and "Response".
 *
 * Every attempt is sealed afresh: a new SM4 key and IV, a new nonce, the
 * attempt's timestamp; only msgId stays the same across retries so that the
 * partner can answer 0001.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "yuejson.h"

static char *host_strdup(const struct tb_host *h, const char *s) {
  size_t n = strlen(s) + 1;
  char *p = h->alloc(n);
  if (p) memcpy(p, s, n);
  return p;
}

static void free_request(const struct tb_host *h, struct tb_wire_request *out) {
  h->free(out->path);
  h->free(out->content_type);
  h->free(out->headers);
  h->free(out->body.data);
  memset(out, 0, sizeof *out);
}

/* One debug line per encoded case, personal data masked (SPEC §9). */
static void log_encoded(const struct yj_state *st, const struct tb_outbound *msg,
                        const json_t *canon) {
  const struct tb_host *h = st->host;
  char line[512], name[128] = "", id[128] = "";
  const json_t *app = json_object_get(canon, "applicant");
  const char *n = json_string_value(json_object_get(app, "name"));
  const char *i = json_string_value(json_object_get(app, "id_number"));
  if (n) h->mask_name(n, name, sizeof name);
  if (i) h->mask_id(i, id, sizeof id);
  if (msg->type == TB_MSG_CASE_SUBMIT)
    snprintf(line, sizeof line, "CASE_SUBMIT msgId %s attempt %u sealed for %s (applicant %s, %s)",
             msg->message_id, (unsigned)msg->attempt, st->key_peer, name, id);
  else
    snprintf(line, sizeof line, "%s msgId %s attempt %u sealed for %s", yj_msg_type_name(msg->type),
             msg->message_id, (unsigned)msg->attempt, st->key_peer);
  h->log(h->ctx, TB_SEV_DEBUG, "yuejson.encoded", line);
}

int yj_encode(void *state, const struct tb_outbound *msg, struct tb_wire_request *out, char *err) {
  const struct yj_state *st = state;
  const struct tb_host *h = st->host;
  memset(out, 0, sizeof *out);
  const char *type_name = yj_msg_type_name(msg->type);
  const char *path = yj_msg_type_path(msg->type);
  if (type_name == NULL || path == NULL)
    return tb_errf(err, TB_EINVAL, "yue-json: unknown message type %d", (int)msg->type);
  if (msg->message_id == NULL || !yj_is_uuid(msg->message_id))
    return tb_errf(err, TB_EINVAL, "yue-json: message_id must be a UUID (msgId)");
  if (msg->body == NULL || msg->body_len > YJ_BODY_MAX)
    return tb_errf(err, TB_ELIMIT, "yue-json: canonical body missing or over %zu bytes",
                   YJ_BODY_MAX);

  json_error_t jerr;
  json_t *canon = json_loadb(msg->body, msg->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (canon == NULL)
    return tb_errf(err, TB_EPARSE, "yue-json: canonical body: line %d column %d: %s", jerr.line,
                   jerr.column, jerr.text);
  struct yj_buf biz, body;
  yj_buf_init(&biz, h);
  yj_buf_init(&body, h);
  int rc = yj_biz_from_canonical(st, msg->type, canon, &biz, err);
  if (rc == 0) rc = yj_envelope_seal(st, msg->message_id, type_name, biz.data, biz.len, &body, err);
  if (rc == 0) log_encoded(st, msg, canon);
  json_decref(canon);
  /* The business JSON is personal data in clear: do not leave it in freed
   * memory. */
  if (biz.data) yj_wipe(biz.data, biz.len);
  yj_buf_free(&biz);
  if (rc != 0) {
    yj_buf_free(&body);
    return rc;
  }
  out->body.data = (unsigned char *)yj_buf_take(&body, &out->body.len);
  if (out->body.data == NULL) return tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
  rc = yj_sign_headers(st, out->body.data, out->body.len, msg->now_ms, &out->headers, err);
  if (rc == 0) {
    out->path = host_strdup(h, path);
    out->content_type = host_strdup(h, YJ_CONTENT_TYPE);
    if (out->path == NULL || out->content_type == NULL)
      rc = tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
  }
  if (rc != 0) free_request(h, out);
  return rc;
}

/* ---- classify ------------------------------------------------------------------ */

static void verdict(struct tb_classification *out, enum tb_verdict v, const char *code,
                    const char *text) {
  out->verdict = v;
  snprintf(out->code, sizeof out->code, "%s", code);
  yj_copy_text(out->text, sizeof out->text, text, strlen(text));
}

static const struct {
  const char *code;
  enum tb_verdict verdict;
  const char *meaning;
} codes[] = {
    {"0000", TB_VERDICT_SUCCESS, "received"},
    {"0001", TB_VERDICT_DUPLICATE, "duplicate msgId, already received"},
    {"4001", TB_VERDICT_PERMANENT, "parameter invalid"},
    {"4010", TB_VERDICT_PERMANENT, "unknown AppId or bad signature"},
    {"4011", TB_VERDICT_RETRY_FRESH, "timestamp out of window"},
    {"4012", TB_VERDICT_RETRY_FRESH, "nonce reused"},
    {"4020", TB_VERDICT_PERMANENT, "cannot decrypt"},
    {"4030", TB_VERDICT_PERMANENT, "matter unknown"},
    {"5000", TB_VERDICT_RETRY, "system error"},
    {"5030", TB_VERDICT_RETRY, "busy"},
};

static void classify_body(const struct yj_state *st, const struct tb_outbound *msg,
                          const struct tb_wire_response *resp, struct tb_classification *out) {
  json_error_t jerr;
  json_t *root =
      json_loadb((const char *)resp->body, resp->body_len, JSON_REJECT_DUPLICATES, &jerr);
  const json_t *code = json_object_get(root, "code");
  const json_t *text = json_object_get(root, "msg");
  const json_t *data = json_object_get(root, "data");
  char why[256];
  if (!json_is_object(root) || !json_is_string(code) ||
      (text != NULL && !json_is_string(text) && !json_is_null(text)) ||
      (data != NULL && !json_is_object(data) && !json_is_null(data))) {
    verdict(out, TB_VERDICT_RETRY, "garbage",
            "the answer is not {\"code\",\"msg\",\"data\"} JSON (retrying)");
    json_decref(root);
    return;
  }
  const char *c = json_string_value(code);
  size_t k = 0;
  while (k < sizeof codes / sizeof codes[0] && strcmp(codes[k].code, c) != 0) k++;
  if (k == sizeof codes / sizeof codes[0]) {
    char shown[16];
    yj_copy_text(shown, sizeof shown, c, strlen(c));
    snprintf(why, sizeof why, "code \"%s\" is not in yue-json.md's table (retrying)", shown);
    verdict(out, TB_VERDICT_RETRY, "garbage", why);
    json_decref(root);
    return;
  }
  /* data.msgId, when the partner gives it, must be ours: an answer about
   * another message proves nothing about this one. Success must give it. */
  const json_t *msg_id = json_object_get(data, "msgId");
  int success = codes[k].verdict == TB_VERDICT_SUCCESS || codes[k].verdict == TB_VERDICT_DUPLICATE;
  if ((msg_id != NULL && !json_is_null(msg_id) &&
       (!json_is_string(msg_id) || strcasecmp(json_string_value(msg_id), msg->message_id) != 0)) ||
      (success && !json_is_string(msg_id))) {
    snprintf(why, sizeof why, "code %s but data.msgId is not ours (%s): retrying", c,
             msg->message_id);
    verdict(out, TB_VERDICT_RETRY, c, why);
    json_decref(root);
    return;
  }
  const json_t *receipt = json_object_get(data, "receiptNo");
  if (receipt != NULL && !json_is_null(receipt)) {
    const char *r = json_string_value(receipt);
    if (r == NULL || strlen(r) >= sizeof out->receipt_no ||
        strlen(r) != json_string_length(receipt)) {
      verdict(out, TB_VERDICT_RETRY, c, "data.receiptNo is not a string of at most 127 bytes");
      json_decref(root);
      return;
    }
    if (success) snprintf(out->receipt_no, sizeof out->receipt_no, "%s", r);
  }
  const char *t = json_string_value(text);
  if (t && *t) {
    snprintf(why, sizeof why, "%s", t);
  } else {
    snprintf(why, sizeof why, "%s", codes[k].meaning);
  }
  verdict(out, codes[k].verdict, c, why);
  if (success && msg->type == TB_MSG_CASE_SUBMIT && out->receipt_no[0] == '\0') {
    /* The document promises receiptNo for CASE_SUBMIT. The partner has the
     * case (a signed 0000/0001): retrying could never change that, so it is
     * delivered, and the operator is told. */
    const struct tb_host *h = st->host;
    char line[200];
    snprintf(line, sizeof line, "msgId %s: code %s without data.receiptNo", msg->message_id, c);
    h->log(h->ctx, TB_SEV_WARN, "yuejson.no_receipt", line);
  }
  json_decref(root);
}

int yj_classify(void *state, const struct tb_outbound *msg, const struct tb_wire_response *resp,
                struct tb_classification *out, char *err) {
  const struct yj_state *st = state;
  const struct tb_host *h = st->host;
  (void)err;
  memset(out, 0, sizeof *out);
  out->retry_after_ms = -1;
  char text[256];
  if (resp == NULL || resp->http_status == 0 || resp->transport_error != NULL) {
    snprintf(text, sizeof text, "transport failure: %s",
             resp && resp->transport_error ? resp->transport_error : "no HTTP answer");
    verdict(out, TB_VERDICT_RETRY, "transport", text);
    return 0;
  }
  int dup = 0;
  const char *ra = yj_header(resp->headers, resp->header_count, "Retry-After", &dup);
  if (ra != NULL && !dup) out->retry_after_ms = h->retry_after_ms(ra);
  char code[32];
  int s = resp->http_status;
  snprintf(code, sizeof code, "HTTP %d", s);
  if (s >= 500 || s == 408 || s == 429) {
    verdict(out, TB_VERDICT_RETRY, code, "the partner is unavailable (retry later)");
    return 0;
  }
  if (s >= 400 && s < 500) {
    verdict(out, TB_VERDICT_PERMANENT, code, "HTTP 4xx: the partner refuses the request");
    return 0;
  }
  if (s != 200) {
    verdict(out, TB_VERDICT_RETRY, code, "not HTTP 200: not an answer of yue-json.md (retrying)");
    return 0;
  }
  if (resp->body == NULL || resp->body_len > YJ_BODY_MAX) {
    verdict(out, TB_VERDICT_RETRY, "garbage", "HTTP 200 without a usable body (retrying)");
    return 0;
  }
  struct yj_sig_check sc;
  yj_verify_headers(st, resp->headers, resp->header_count, resp->body, resp->body_len, &sc);
  if (sc.result != YJ_SIG_OK) {
    /* yue-json.md: "A response whose signature headers are missing or do
     * not verify is treated as a transport failure (retry)." */
    snprintf(text, sizeof text, "transport failure: the answer's signature: %s", sc.why);
    verdict(out, TB_VERDICT_RETRY, "transport", text);
    out->signature_valid = 0;
    return 0;
  }
  out->signature_valid = 1;
  classify_body(st, msg, resp, out);
  return 0;
}
