/*
 * luxml_decode.c — an inbound TongbanMessage (POST /tongban/v1/notify) →
 * canonical JSON, or a refusal with the lu-xml.md code.
 *
 * Order of checks (docs/adapter-lu-xml.md "Inbound"): request shape (HTTP
 * 404/405/413/415); a hardened parse — DOCTYPE, entities, bad UTF-8, non-XML
 * → HTTP 400, no acknowledgement (the document promises one only for
 * well-formed messages); the signature against keys.peer_ca → 1001; SendTime
 * outside the replay window → 1005 (before the schema, so that a stale
 * message is always retryable); lu-xml.xsd → 1002; rules beyond the schema
 * → 1002; ReceiverRegion / BanLiDi not ours → 1004. The host then applies
 * its own replay window and message-id store and asks answer() for the ack.
 *
 * Nothing here logs or returns values from the message except identifiers
 * (MessageId, ShenBanHao, HuiZhiHao, element names); names, ID numbers and
 * phones only ever reach the log through host->mask_*.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "luxml.h"

#define WHY_SIZE 256

struct dec {
  const struct luxml *lx;
  const struct tb_host *h;
  char why[WHY_SIZE]; /* set with code 1002 when building the canonical form fails */
};

static int refuse(struct tb_inbound_message *out, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct tb_inbound_message *out, const char *code, const char *fmt, ...) {
  out->kind = TB_INBOUND_REFUSED;
  snprintf(out->refuse_code, sizeof out->refuse_code, "%s", code);
  char text[sizeof out->refuse_text + 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  lx_strlcpy_utf8(out->refuse_text, sizeof out->refuse_text, text);
  return 0;
}

static int bad(struct dec *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct dec *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->why, sizeof d->why, fmt, ap);
  va_end(ap);
  return TB_EVALIDATE;
}

static const char *header_value(const struct tb_inbound_request *req, const char *name) {
  for (size_t i = 0; i < req->header_count; i++)
    if (req->headers[i].name && strcasecmp(req->headers[i].name, name) == 0)
      return req->headers[i].value;
  return NULL;
}

/* application/xml (or text/xml), charset UTF-8 if given. */
static int content_type_ok(const char *ct) {
  if (ct == NULL) return 1;
  while (*ct == ' ' || *ct == '\t') ct++;
  size_t n = strcspn(ct, ";");
  size_t m = n;
  while (m > 0 && (ct[m - 1] == ' ' || ct[m - 1] == '\t')) m--;
  if (!((m == 15 && strncasecmp(ct, "application/xml", 15) == 0) ||
        (m == 8 && strncasecmp(ct, "text/xml", 8) == 0)))
    return 0;
  for (const char *p = ct + n; *p == ';';) {
    p++;
    while (*p == ' ' || *p == '\t') p++;
    size_t pl = strcspn(p, ";");
    if (pl >= 8 && strncasecmp(p, "charset=", 8) == 0) {
      const char *v = p + 8;
      size_t vl = pl - 8;
      while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
      if (vl >= 2 && v[0] == '"' && v[vl - 1] == '"') v++, vl -= 2;
      if (!(vl == 5 && strncasecmp(v, "utf-8", 5) == 0)) return 0;
    }
    p += pl;
  }
  return 1;
}

/* ---- ID numbers (what the canonical case requires) ---- */

static int resident_id_ok(const char *s) {
  static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  if (strlen(s) != 18) return 0;
  int sum = 0;
  for (int i = 0; i < 17; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    sum += (s[i] - '0') * w[i];
  }
  return s[17] == "10X98765432"[sum % 11];
}

static int uscc_ok(const char *s) {
  static const char alpha[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
  static const int w[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28};
  if (strlen(s) != 18) return 0;
  int sum = 0;
  for (int i = 0; i < 18; i++) {
    const char *p = s[i] ? strchr(alpha, s[i]) : NULL;
    if (p == NULL) return 0;
    if (i < 17) sum += (int)(p - alpha) * w[i];
  }
  return s[17] == alpha[(31 - sum % 31) % 31];
}

/* ---- canonical builders ---- */

static int set_text(json_t *o, const char *key, xmlNodePtr parent, const char *elem) {
  struct lx_text t;
  lx_text_get(lx_child(parent, elem), &t);
  int rc = json_object_set_new(o, key, json_stringn(t.s, t.len));
  lx_text_free(&t);
  return rc == 0 ? 0 : TB_ENOMEM;
}

/* Sets key only when the optional element is present. */
static int set_opt_text(json_t *o, const char *key, xmlNodePtr parent, const char *elem,
                        int null_if_absent) {
  if (lx_child(parent, elem) == NULL)
    return null_if_absent ? (json_object_set_new(o, key, json_null()) == 0 ? 0 : TB_ENOMEM) : 0;
  return set_text(o, key, parent, elem);
}

static int beijing_to_rfc3339(struct dec *d, xmlNodePtr parent, const char *elem, json_t *o,
                              const char *key) {
  char s[24], r[32];
  int64_t ms;
  if (!lx_copy_text(parent, elem, s, sizeof s) || d->h->parse_beijing(s, strlen(s), &ms) != 0 ||
      d->h->format_rfc3339_beijing(ms, r, sizeof r) != 0)
    return bad(d, "%s is not a real Beijing time yyyy-MM-dd HH:mm:ss", elem);
  return json_object_set_new(o, key, json_string(r)) == 0 ? 0 : TB_ENOMEM;
}

static int party(struct dec *d, xmlNodePtr p, const char *elem, json_t **out) {
  char kind[4] = "", idt[8] = "";
  lx_copy_text(p, "LeiXing", kind, sizeof kind);
  lx_copy_text(p, "ZhengJianLeiXing", idt, sizeof idt);
  int person = strcmp(kind, "1") == 0;
  int org_type = strcmp(idt, "001") == 0;
  if (person == org_type)
    return bad(d, "%s: ZhengJianLeiXing %s does not fit LeiXing %s (person: 111/414/516/511, "
                  "org: 001)",
               elem, idt, kind);
  struct lx_text num;
  lx_text_get(lx_child(p, "ZhengJianHaoMa"), &num);
  int ok = strlen(num.s) == num.len &&
           (strcmp(idt, "111") == 0 ? resident_id_ok(num.s) : org_type ? uscc_ok(num.s) : 1);
  lx_text_free(&num);
  if (!ok)
    return bad(d, "%s/ZhengJianHaoMa: not a valid %s number (check character)", elem,
               org_type ? "unified social credit code" : "resident ID");
  json_t *o = json_object();
  if (o == NULL) return TB_ENOMEM;
  int rc = json_object_set_new(o, "kind", json_string(person ? "person" : "org")) ? TB_ENOMEM : 0;
  if (rc == 0) rc = set_text(o, "name", p, "XingMing");
  if (rc == 0) rc = set_text(o, "id_type", p, "ZhengJianLeiXing");
  if (rc == 0) rc = set_text(o, "id_number", p, "ZhengJianHaoMa");
  if (rc == 0) rc = set_text(o, "phone", p, "LianXiDianHua");
  if (rc == 0) rc = set_opt_text(o, "address", p, "DiZhi", 0);
  if (rc != 0) {
    json_decref(o);
    return rc;
  }
  *out = o;
  return 0;
}

static int materials(struct dec *d, xmlNodePtr list, json_t **out) {
  static const unsigned char empty_sm3[32] = {
      0x1a, 0xb2, 0x1d, 0x83, 0x55, 0xcf, 0xa1, 0x7f, 0x8e, 0x61, 0x19,
      0x48, 0x31, 0xe8, 0x1a, 0x8f, 0x22, 0xbe, 0xc8, 0xc7, 0x28, 0xfe,
      0xfb, 0x74, 0x7e, 0xd0, 0x35, 0xeb, 0x50, 0x82, 0xaa, 0x2b};
  json_t *arr = json_array();
  if (arr == NULL) return TB_ENOMEM;
  int rc = 0, i = 0;
  for (xmlNodePtr c = lx_child(list, "CaiLiao"); c != NULL && rc == 0;
       c = lx_next(c, "CaiLiao"), i++) {
    json_t *m = json_object();
    if (m == NULL || json_array_append_new(arr, m) != 0) {
      rc = TB_ENOMEM;
      break;
    }
    char ext[8] = "", size_s[24] = "", hex[72] = "";
    lx_copy_text(c, "GeShi", ext, sizeof ext);
    lx_copy_text(c, "DaXiao", size_s, sizeof size_s);
    lx_copy_text(c, "ZhaiYao", hex, sizeof hex);
    const char *media = d->h->media_type_for_ext(ext);
    if (media == NULL) {
      rc = bad(d, "CaiLiao %d: GeShi has no media type", i + 1);
      break;
    }
    long long size = strtoll(size_s, NULL, 10);
    struct lx_text nr;
    lx_text_get(lx_child(c, "NeiRong"), &nr);
    /* NeiRong: canonical base64 (strict: no whitespace, padding, zero pad
     * bits) whose bytes are DaXiao long and hash to ZhaiYao. */
    unsigned char dg[32];
    int ok = 1;
    if (nr.len == 0) {
      ok = size == 0;
      memcpy(dg, empty_sm3, 32);
    } else {
      struct tb_bytes raw = {NULL, 0};
      if (d->h->base64_decode(nr.s, nr.len, &raw) != 0) {
        ok = -1;
      } else {
        ok = raw.len == (size_t)size;
        if (ok && d->h->digest(TB_DIGEST_SM3, raw.data, raw.len, dg) != 0) ok = -2;
        d->h->free(raw.data);
      }
    }
    char dhex[65];
    for (int k = 0; k < 32; k++) snprintf(dhex + 2 * k, 3, "%02x", dg[k]);
    if (ok == 1 && strcmp(dhex, hex) != 0) ok = -3;
    if (ok != 1) {
      lx_text_free(&nr);
      rc = ok == -2 ? TB_ENOMEM
                    : bad(d, "CaiLiao %d: %s", i + 1,
                          ok == -1   ? "NeiRong is not canonical base64 (RFC 4648, padded, no "
                                       "line breaks)"
                          : ok == -3 ? "ZhaiYao is not the SM3 digest of NeiRong"
                                     : "DaXiao is not the length of NeiRong");
      break;
    }
    if (set_text(m, "name", c, "MingCheng") != 0 ||
        json_object_set_new(m, "media_type", json_string(media)) != 0 ||
        json_object_set_new(m, "size", json_integer(size)) != 0 ||
        json_object_set_new(m, "sm3", json_string(hex)) != 0 ||
        json_object_set_new(m, "content_base64", json_stringn(nr.s, nr.len)) != 0)
      rc = TB_ENOMEM;
    lx_text_free(&nr);
  }
  if (rc != 0) {
    json_decref(arr);
    return rc;
  }
  *out = arr;
  return 0;
}

static int decode_case(struct dec *d, xmlNodePtr c, json_t *o) {
  xmlNodePtr sd = lx_child(c, "SongDa");
  json_t *item = json_object(), *app = NULL, *agent = NULL, *mats = NULL, *form = NULL,
         *del = json_object();
  int rc = (item && del) ? 0 : TB_ENOMEM;
  if (rc == 0) rc = json_object_set_new(o, "schema", json_string("tongban.case/v1")) ? TB_ENOMEM : 0;
  if (rc == 0) rc = set_text(o, "case_id", c, "ShenBanHao");
  if (rc == 0) rc = set_text(item, "code", c, "ShiXiangBianMa");
  if (rc == 0) rc = set_text(item, "name", c, "ShiXiangMingCheng");
  if (rc == 0) rc = json_object_set(o, "item", item) ? TB_ENOMEM : 0;
  if (rc == 0) rc = set_text(o, "origin_region", c, "ShouLiDi");
  if (rc == 0) rc = set_text(o, "target_region", c, "BanLiDi");
  if (rc == 0) rc = party(d, lx_child(c, "ShenQingRen"), "ShenQingRen", &app);
  if (rc == 0) rc = json_object_set_new(o, "applicant", app) ? TB_ENOMEM : 0;
  if (rc == 0 && lx_child(c, "DaiBanRen") != NULL)
    rc = party(d, lx_child(c, "DaiBanRen"), "DaiBanRen", &agent);
  if (rc == 0) rc = json_object_set_new(o, "agent", agent ? agent : json_null()) ? TB_ENOMEM : 0;
  if (rc == 0) rc = materials(d, lx_child(c, "CaiLiaoList"), &mats);
  if (rc == 0) rc = json_object_set_new(o, "materials", mats) ? TB_ENOMEM : 0;
  if (rc == 0) {
    rc = lx_form_unflatten(lx_child(c, "BiaoDan"), &form, d->why, sizeof d->why);
    if (rc == 0) rc = json_object_set_new(o, "form", form) ? TB_ENOMEM : 0;
  }
  if (rc == 0) rc = beijing_to_rfc3339(d, c, "ShouLiShiJian", o, "accepted_at");
  if (rc == 0) {
    char fs[4] = "";
    lx_copy_text(sd, "FangShi", fs, sizeof fs);
    const char *m = strcmp(fs, "1") == 0 ? "mail" : strcmp(fs, "2") == 0 ? "pickup" : "electronic";
    rc = json_object_set_new(del, "method", json_string(m)) ? TB_ENOMEM : 0;
  }
  if (rc == 0) rc = set_opt_text(del, "recipient", sd, "ShouJianRen", 0);
  if (rc == 0) rc = set_opt_text(del, "phone", sd, "DianHua", 0);
  if (rc == 0) rc = set_opt_text(del, "address", sd, "DiZhi", 0);
  if (rc == 0) rc = json_object_set(o, "delivery", del) ? TB_ENOMEM : 0;
  if (rc == 0) rc = set_opt_text(o, "remarks", c, "BeiZhu", 0);
  json_decref(item);
  json_decref(del);
  return rc;
}

static int decode_status(struct dec *d, xmlNodePtr s, json_t *o) {
  char code[4] = "";
  lx_copy_text(s, "ZhuangTai", code, sizeof code);
  const char *status = lx_status_name(code);
  if (status == NULL) return bad(d, "ZhuangTai is not 01..08");
  json_t *sup = json_array();
  if (sup == NULL) return TB_ENOMEM;
  int rc = 0;
  for (xmlNodePtr b = lx_child(s, "BuZhengCaiLiao"); b && rc == 0; b = lx_next(b, "BuZhengCaiLiao")) {
    struct lx_text t;
    lx_text_get(lx_child(b, "MingCheng"), &t);
    rc = json_array_append_new(sup, json_stringn(t.s, t.len)) ? TB_ENOMEM : 0;
    lx_text_free(&t);
  }
  if (rc == 0) rc = set_text(o, "case_id", s, "ShenBanHao");
  if (rc == 0) rc = set_text(o, "receipt_no", s, "HuiZhiHao");
  if (rc == 0) rc = json_object_set_new(o, "status", json_string(status)) ? TB_ENOMEM : 0;
  if (rc == 0) rc = set_opt_text(o, "opinion", s, "ShuoMing", 1);
  if (rc == 0) rc = json_object_set(o, "supplement", sup) ? TB_ENOMEM : 0;
  if (rc == 0) rc = set_opt_text(o, "tracking_no", s, "KuaiDiDanHao", 1);
  if (rc == 0) rc = set_opt_text(o, "licence_no", s, "ZhengZhaoBianHao", 1);
  if (rc == 0) rc = beijing_to_rfc3339(d, s, "ShiJian", o, "at");
  json_decref(sup);
  return rc;
}

static int decode_withdraw(struct dec *d, xmlNodePtr w, json_t *o) {
  (void)d;
  int rc = set_text(o, "case_id", w, "ShenBanHao");
  if (rc == 0) rc = set_text(o, "receipt_no", w, "HuiZhiHao");
  if (rc == 0) rc = set_text(o, "reason", w, "YuanYin");
  return rc;
}

static int decode_supplement(struct dec *d, xmlNodePtr s, json_t *o) {
  json_t *mats = NULL;
  int rc = set_text(o, "case_id", s, "ShenBanHao");
  if (rc == 0) rc = set_text(o, "receipt_no", s, "HuiZhiHao");
  if (rc == 0) rc = materials(d, lx_child(s, "CaiLiaoList"), &mats);
  if (rc == 0) rc = json_object_set_new(o, "materials", mats) ? TB_ENOMEM : 0;
  return rc;
}

/* ---- the decode entry ---- */

static int decode_doc(struct dec *d, const struct tb_inbound_request *req, xmlDocPtr doc,
                      struct tb_inbound_message *out, char *err) {
  const struct tb_host *h = d->h;
  const struct luxml *lx = d->lx;
  xmlNodePtr root = xmlDocGetRootElement(doc);
  xmlNodePtr hdr = lx_is(root, "TongbanMessage") ? lx_child(root, "Header") : NULL;

  /* What we can tell before trusting anything: for the ack's echo and logs. */
  char type_s[24] = "";
  if (!lx_copy_text(hdr, "MessageId", out->message_id, sizeof out->message_id))
    out->message_id[0] = '\0';
  lx_copy_text(hdr, "MessageType", type_s, sizeof type_s);
  enum tb_msg_type type;
  int type_known = lx_type_from_name(type_s, &type) == 0;
  if (type_known) out->type = type;

  char e[TB_ERRMSG_MAX] = "", signer[256] = "";
  int rc = h->xmldsig_verify(h->ctx, lx->peer_ca, req->body, req->body_len, signer, sizeof signer,
                             e);
  if (rc == TB_ENOMEM) return lx_errf(err, rc, "lu-xml: out of memory verifying a signature");
  if (rc != 0) return refuse(out, "1001", "signature invalid: %s", e);

  char sent_s[24] = "";
  int64_t sent = 0;
  if (lx_copy_text(hdr, "SendTime", sent_s, sizeof sent_s) &&
      h->parse_beijing(sent_s, strlen(sent_s), &sent) == 0) {
    out->sent_ms = sent;
    int64_t skew = req->now_ms - sent;
    if (skew > lx->window_ms || -skew > lx->window_ms)
      return refuse(out, "1005", "SendTime %s is %lld s from our clock (more than %lld s)", sent_s,
                    (long long)(skew / 1000), (long long)(lx->window_ms / 1000));
  }

  char why[WHY_SIZE];
  rc = lx_validate(lx, doc, why, sizeof why);
  if (rc == TB_ENOMEM) return lx_errf(err, rc, "lu-xml: %s", why);
  if (rc != 0) return refuse(out, "1002", "does not match the schema: %s", why);

  /* Rules beyond the schema. */
  if (out->sent_ms == 0) return refuse(out, "1002", "SendTime is not a real date and time");
  xmlNodePtr body = lx_child(root, "Body");
  xmlNodePtr b = body->children;
  while (b != NULL && b->type != XML_ELEMENT_NODE) b = b->next;
  static const char *const body_of[] = {NULL, "Case", "Withdraw", "Supplement", "Status"};
  if (!type_known || !lx_is(b, body_of[type]))
    return refuse(out, "1002", "MessageType %s does not match the Body element %s", type_s,
                  b ? (const char *)b->name : "(none)");
  if (strlen(out->message_id) != 36)
    return refuse(out, "1002", "MessageId is not a UUID");
  /* Limits of our own records (the ABI's fixed fields). */
  char receipt[128] = "";
  if (lx_child(b, "HuiZhiHao") && !lx_copy_text(b, "HuiZhiHao", receipt, sizeof receipt))
    return refuse(out, "1002", "HuiZhiHao is longer than 127 bytes");
  lx_copy_text(b, "ShenBanHao", out->case_id, sizeof out->case_id);
  snprintf(out->receipt_no, sizeof out->receipt_no, "%s", receipt);

  json_t *canon = json_object();
  if (canon == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  d->why[0] = '\0';
  switch (type) {
  case TB_MSG_CASE_SUBMIT: rc = decode_case(d, b, canon); break;
  case TB_MSG_CASE_WITHDRAW: rc = decode_withdraw(d, b, canon); break;
  case TB_MSG_CASE_SUPPLEMENT: rc = decode_supplement(d, b, canon); break;
  case TB_MSG_STATUS_NOTIFY: rc = decode_status(d, b, canon); break;
  }
  if (rc != 0) {
    json_decref(canon);
    if (rc == TB_EVALIDATE) return refuse(out, "1002", "%s", d->why);
    return lx_errf(err, rc, "lu-xml: out of memory decoding a message");
  }

  /* Region last (lu-xml.md order: a message that is wrong everywhere gets
   * the schema code, and 1004 means "well-formed, just not for us"). */
  char region[8] = "";
  lx_copy_text(hdr, "ReceiverRegion", region, sizeof region);
  if (!lx_region_is_local(lx, region)) {
    json_decref(canon);
    return refuse(out, "1004", "ReceiverRegion %s is not served here", region);
  }
  if (type == TB_MSG_CASE_SUBMIT) {
    lx_copy_text(b, "BanLiDi", region, sizeof region);
    if (!lx_region_is_local(lx, region)) {
      json_decref(canon);
      return refuse(out, "1004", "BanLiDi %s is not served here", region);
    }
    char name[128], masked[128];
    const json_t *app = json_object_get(canon, "applicant");
    lx_strlcpy_utf8(name, sizeof name, json_string_value(json_object_get(app, "name")));
    h->mask_name(name, masked, sizeof masked);
    char m[800];
    snprintf(m, sizeof m, "inbound case %s (applicant %s) from %s, signed by %s", out->case_id,
             masked, h->partner ? h->partner : "?", signer);
    h->log(h->ctx, TB_SEV_DEBUG, "adapter.decode", m);
  }

  rc = lx_json_to_bytes(h, canon, &out->canonical, err);
  json_decref(canon);
  if (rc != 0) return rc;
  out->kind = type == TB_MSG_CASE_SUBMIT     ? TB_INBOUND_CASE
              : type == TB_MSG_STATUS_NOTIFY ? TB_INBOUND_STATUS
                                             : TB_INBOUND_OTHER;
  return 0;
}

int lx_decode(void *state, const struct tb_inbound_request *req, struct tb_inbound_message *out,
              char *err) {
  const struct luxml *lx = state;
  memset(out, 0, sizeof *out);
  out->kind = TB_INBOUND_REFUSED;
  if (req == NULL) return lx_errf(err, TB_EINVAL, "lu-xml: decode without a request");
  if (req->method == NULL || strcmp(req->method, "POST") != 0)
    return refuse(out, LX_HTTP_405, "only POST is served");
  if (req->path == NULL || strcmp(req->path, LX_NOTIFY_PATH) != 0)
    return refuse(out, LX_HTTP_404, "no such path (the partner posts to " LX_NOTIFY_PATH ")");
  if (!content_type_ok(header_value(req, "Content-Type")))
    return refuse(out, LX_HTTP_415, "Content-Type must be application/xml; charset=UTF-8");
  if (req->body_len > LX_MAX_BODY)
    return refuse(out, LX_HTTP_413, "body of %zu bytes exceeds 32 MiB", req->body_len);

  char why[WHY_SIZE];
  xmlDocPtr doc = NULL;
  int rc = lx_parse(req->body, req->body_len, &doc, why, sizeof why);
  if (rc == TB_ENOMEM) return lx_errf(err, rc, "lu-xml: %s", why);
  if (rc != 0) return refuse(out, LX_HTTP_400, "%s", why);

  struct dec d = {lx, lx->host, ""};
  rc = decode_doc(&d, req, doc, out, err);
  xmlFreeDoc(doc);
  if (rc != 0) {
    lx->host->free(out->canonical.data);
    out->canonical.data = NULL;
    out->canonical.len = 0;
    return rc;
  }
  if (out->kind == TB_INBOUND_REFUSED) {
    char m[600];
    snprintf(m, sizeof m, "refused message %s: %s %s", out->message_id[0] ? out->message_id : "?",
             out->refuse_code, out->refuse_text);
    lx->host->log(lx->host->ctx, TB_SEV_INFO, "adapter.refuse", m);
  }
  return 0;
}
