/*
 * luxml_ack.c — the TongbanAck, both ways: classify() reads the partner's
 * acknowledgement of what we sent (lu-xml.md "Acknowledgement"), answer()
 * writes ours for what the partner sent.
 *
 * An acknowledgement only counts when it is a well-formed TongbanAck, signed
 * by a certificate under keys.peer_ca, valid against lu-xml.xsd, and echoing
 * our MessageId; anything else is a transport failure (retry), as the
 * document says for unsigned or badly signed acknowledgements.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "luxml.h"

static const struct {
  const char *code;
  enum tb_verdict verdict;
  const char *message; /* our ack's Message for this code */
} code_table[] = {
    {"0000", TB_VERDICT_SUCCESS, "成功"},
    {"0001", TB_VERDICT_DUPLICATE, "重复消息，已接收"},
    {"1001", TB_VERDICT_PERMANENT, "签名无效"},
    {"1002", TB_VERDICT_PERMANENT, "报文不符合规范"},
    {"1003", TB_VERDICT_PERMANENT, "事项编码未知"},
    {"1004", TB_VERDICT_PERMANENT, "非本地区办理"},
    {"1005", TB_VERDICT_RETRY_FRESH, "发送时间与接收方时钟相差超过300秒"},
    {"5001", TB_VERDICT_RETRY, "系统繁忙，请稍后重试"},
    {"5002", TB_VERDICT_RETRY, "系统维护，请稍后重试"},
};

static int code_index(const char *code) {
  for (size_t i = 0; i < sizeof code_table / sizeof *code_table; i++)
    if (strcmp(code_table[i].code, code) == 0) return (int)i;
  return -1;
}

/* ---- classify ------------------------------------------------------------- */

static void verdict(struct tb_classification *out, enum tb_verdict v, const char *code,
                    const char *text) {
  out->verdict = v;
  snprintf(out->code, sizeof out->code, "%s", code);
  lx_strlcpy_utf8(out->text, sizeof out->text, text);
}

static const char *resp_header(const struct tb_wire_response *r, const char *name) {
  for (size_t i = 0; r->headers && i < r->header_count; i++)
    if (r->headers[i].name && strcasecmp(r->headers[i].name, name) == 0) return r->headers[i].value;
  return NULL;
}

static void classify_ack(const struct luxml *lx, const struct tb_outbound *msg,
                         const struct tb_wire_response *resp, struct tb_classification *out) {
  const struct tb_host *h = lx->host;
  char why[300], text[600];
  xmlDocPtr doc = NULL;
  if (lx_parse(resp->body, resp->body_len, &doc, why, sizeof why) != 0) {
    snprintf(text, sizeof text, "acknowledgement unusable, treated as a transport failure: %s",
             why);
    verdict(out, TB_VERDICT_RETRY, "transport", text);
    return;
  }
  char e[TB_ERRMSG_MAX] = "", signer[256] = "";
  if (h->xmldsig_verify(h->ctx, lx->peer_ca, resp->body, resp->body_len, signer, sizeof signer,
                        e) != 0) {
    char code[8] = "";
    lx_copy_text(xmlDocGetRootElement(doc), "Code", code, sizeof code);
    snprintf(text, sizeof text,
             "acknowledgement%s%s not validly signed, treated as a transport failure: %s",
             code[0] ? " with Code " : "", code, e);
    verdict(out, TB_VERDICT_RETRY, "transport", text);
    xmlFreeDoc(doc);
    return;
  }
  out->signature_valid = 1;
  xmlNodePtr root = xmlDocGetRootElement(doc);
  if (!lx_is(root, "TongbanAck")) {
    verdict(out, TB_VERDICT_RETRY, "transport",
            "answer is signed but not a TongbanAck, treated as a transport failure");
    xmlFreeDoc(doc);
    return;
  }
  if (lx_validate(lx, doc, why, sizeof why) != 0) {
    snprintf(text, sizeof text,
             "acknowledgement does not match lu-xml.xsd, treated as a transport failure: %s", why);
    verdict(out, TB_VERDICT_RETRY, "transport", text);
    xmlFreeDoc(doc);
    return;
  }
  char mid[128] = "", code[8] = "";
  lx_copy_text(root, "MessageId", mid, sizeof mid);
  lx_copy_text(root, "Code", code, sizeof code);
  if (msg == NULL || msg->message_id == NULL || strcasecmp(mid, msg->message_id) != 0) {
    snprintf(text, sizeof text,
             "acknowledgement echoes MessageId \"%.40s\", not ours \"%.40s\": treated as a "
             "transport failure",
             mid, msg && msg->message_id ? msg->message_id : "");
    verdict(out, TB_VERDICT_RETRY, "transport", text);
    xmlFreeDoc(doc);
    return;
  }
  if (lx_child(root, "ReceiptNo") &&
      !lx_copy_text(root, "ReceiptNo", out->receipt_no, sizeof out->receipt_no)) {
    verdict(out, TB_VERDICT_RETRY, "transport",
            "acknowledgement ReceiptNo is longer than 127 bytes, treated as a transport failure");
    xmlFreeDoc(doc);
    return;
  }
  struct lx_text m;
  lx_text_get(lx_child(root, "Message"), &m);
  int i = code_index(code); /* the schema admits only the table's codes */
  verdict(out, i >= 0 ? code_table[i].verdict : TB_VERDICT_RETRY, code,
          m.len ? m.s : (i >= 0 ? code_table[i].message : "unknown code"));
  lx_text_free(&m);
  if (out->verdict == TB_VERDICT_SUCCESS && msg->type == TB_MSG_CASE_SUBMIT && !out->receipt_no[0])
    h->log(h->ctx, TB_SEV_WARN, "adapter.classify",
           "partner acknowledged a CASE_SUBMIT with 0000 but without ReceiptNo");
  xmlFreeDoc(doc);
}

int lx_classify(void *state, const struct tb_outbound *msg, const struct tb_wire_response *resp,
                struct tb_classification *out, char *err) {
  (void)err; /* classify never fails: garbage is a verdict */
  const struct luxml *lx = state;
  memset(out, 0, sizeof *out);
  out->retry_after_ms = -1;
  char text[300];
  if (resp == NULL || resp->transport_error != NULL || resp->http_status == 0) {
    snprintf(text, sizeof text, "transport failure: %s",
             resp && resp->transport_error ? resp->transport_error : "no HTTP answer");
    verdict(out, TB_VERDICT_RETRY, "transport", text);
    return 0;
  }
  const char *ra = resp_header(resp, "Retry-After");
  if (ra != NULL) out->retry_after_ms = lx->host->retry_after_ms(ra);
  int st = resp->http_status;
  char code[32];
  snprintf(code, sizeof code, "HTTP %d", st);
  if (st >= 500 || st == 408 || st == 429) {
    snprintf(text, sizeof text, "HTTP %d: retry later (lu-xml.md: 5xx, 408, 429)", st);
    verdict(out, TB_VERDICT_RETRY, code, text);
  } else if (st >= 400) {
    snprintf(text, sizeof text, "HTTP %d: permanent failure (lu-xml.md: any other 4xx)", st);
    verdict(out, TB_VERDICT_PERMANENT, code, text);
  } else if (st != 200) {
    snprintf(text, sizeof text,
             "HTTP %d: not the HTTP 200 acknowledgement lu-xml.md promises; retry", st);
    verdict(out, TB_VERDICT_RETRY, code, text);
  } else {
    classify_ack(lx, msg, resp, out);
  }
  return 0;
}

/* ---- answer ----------------------------------------------------------------- */

static int plain(const struct tb_host *h, int status, const char *reason, const char *text,
                 struct tb_wire_answer *out, char *err) {
  char body[400];
  int n = snprintf(body, sizeof body, "%d %s: %s\n", status, reason, text);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof body) n = (int)sizeof body - 1;
  out->http_status = status;
  out->content_type = lx_hstrdup(h, "text/plain; charset=UTF-8");
  out->body.data = (unsigned char *)lx_hstrndup(h, body, (size_t)n);
  out->body.len = (size_t)n;
  if (out->content_type == NULL || out->body.data == NULL) {
    h->free(out->content_type);
    h->free(out->body.data);
    memset(out, 0, sizeof *out);
    return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  }
  return 0;
}

/* Builds, validates and signs a TongbanAck. */
static int signed_ack(const struct luxml *lx, const char *message_id, const char *code,
                      const char *message, const char *receipt_no, int64_t now_ms,
                      struct tb_wire_answer *out, char *err) {
  const struct tb_host *h = lx->host;
  char when[24];
  if (h->format_beijing(now_ms, when, sizeof when) != 0)
    return lx_errf(err, TB_EINVAL, "lu-xml: answer time out of range");
  xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
  xmlNodePtr root = doc ? xmlNewDocNode(doc, NULL, BAD_CAST "TongbanAck", NULL) : NULL;
  xmlNsPtr ns = root ? xmlNewNs(root, BAD_CAST LX_NS, NULL) : NULL;
  if (ns == NULL) {
    if (root) xmlFreeNode(root);
    xmlFreeDoc(doc);
    return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  }
  xmlSetNs(root, ns);
  xmlDocSetRootElement(doc, root);
  int rc;
  if ((rc = lx_add(root, "MessageId", message_id, "MessageId", err)) != 0 ||
      (rc = lx_add(root, "Code", code, "Code", err)) != 0 ||
      (rc = lx_add(root, "Message", message, "Message", err)) != 0 ||
      (receipt_no && (rc = lx_add(root, "ReceiptNo", receipt_no, "receipt_no", err)) != 0) ||
      (rc = lx_add(root, "ReceiveTime", when, "ReceiveTime", err)) != 0) {
    xmlFreeDoc(doc);
    return rc;
  }
  char why[300];
  rc = lx_validate(lx, doc, why, sizeof why);
  if (rc != 0) {
    xmlFreeDoc(doc);
    return lx_errf(err, rc == TB_ENOMEM ? rc : TB_EINTERNAL,
                   "lu-xml: our acknowledgement does not match lu-xml.xsd: %s", why);
  }
  xmlChar *xml = NULL;
  int len = 0;
  rc = lx_serialize(doc, &xml, &len, err);
  xmlFreeDoc(doc);
  if (rc != 0) return rc;
  rc = lx_sign(lx, xml, (size_t)len, &out->body, err);
  xmlFree(xml);
  if (rc != 0) return rc;
  out->http_status = 200;
  out->content_type = lx_hstrdup(h, LX_CONTENT_TYPE);
  if (out->content_type == NULL) {
    h->free(out->body.data);
    memset(out, 0, sizeof *out);
    return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  }
  return 0;
}

int lx_answer(void *state, const struct tb_inbound_request *req,
              const struct tb_inbound_message *msg, enum tb_inbound_outcome outcome,
              const char *receipt_no, struct tb_wire_answer *out, char *err) {
  const struct luxml *lx = state;
  const struct tb_host *h = lx->host;
  memset(out, 0, sizeof *out);
  if (msg == NULL) return lx_errf(err, TB_EINVAL, "lu-xml: answer without a message");
  int64_t now = req && req->now_ms ? req->now_ms : h->now_ms();

  /* Refusals before a well-formed message: a bare HTTP status, no ack. */
  if (outcome == TB_INBOUND_REFUSE && strncmp(msg->refuse_code, "HTTP ", 5) == 0) {
    int st = 0;
    for (const char *p = msg->refuse_code + 5; *p >= '0' && *p <= '9'; p++) st = st * 10 + (*p - '0');
    const char *reason = st == 404   ? "Not Found"
                         : st == 405 ? "Method Not Allowed"
                         : st == 413 ? "Content Too Large"
                         : st == 415 ? "Unsupported Media Type"
                                     : "Bad Request";
    if (st < 400 || st > 499) st = 400;
    return plain(h, st, reason, msg->refuse_text, out, err);
  }

  const char *code;
  const char *detail = NULL;
  char detail_buf[300];
  switch (outcome) {
  case TB_INBOUND_ACCEPTED: code = "0000"; break;
  case TB_INBOUND_DUPLICATE: code = "0001"; break;
  case TB_INBOUND_STALE: code = "1005"; break;
  case TB_INBOUND_NONCE_REUSED:
    /* lu-xml has no nonce, so the host cannot report this; answered like a
     * stale message: the sender retries with a fresh SendTime and the same
     * MessageId, which the message-id store then recognises. */
    code = "1005";
    break;
  case TB_INBOUND_REFUSE:
    code = code_index(msg->refuse_code) >= 0 ? msg->refuse_code : "1002";
    detail = msg->refuse_text;
    break;
  case TB_INBOUND_UNKNOWN_CASE:
    /* No code in the table fits exactly; 1002 ("message does not match")
     * is permanent for the sender, as it must be: a retry cannot help. */
    code = "1002";
    snprintf(detail_buf, sizeof detail_buf, "unknown case: ShenBanHao %s was not sent by us",
             msg->case_id);
    detail = detail_buf;
    break;
  case TB_INBOUND_FAILED:
  default: code = "5001"; break;
  }
  const char *text = code_table[code_index(code)].message;
  char message[600];
  if (detail && *detail)
    snprintf(message, sizeof message, "%s: %s", text, detail);
  else
    snprintf(message, sizeof message, "%s", text);
  char safe[300];
  lx_strlcpy_utf8(safe, sizeof safe, message);

  /* ReceiptNo: for CASE_SUBMIT (lu-xml.md), on 0000 and on 0001 with the
   * first answer's number. */
  const char *receipt = NULL;
  if ((outcome == TB_INBOUND_ACCEPTED || outcome == TB_INBOUND_DUPLICATE) &&
      msg->type == TB_MSG_CASE_SUBMIT && receipt_no != NULL && *receipt_no)
    receipt = receipt_no;
  return signed_ack(lx, msg->message_id, code, safe, receipt, now, out, err);
}
