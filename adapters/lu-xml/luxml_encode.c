/*
 * luxml_encode.c — canonical JSON (adapter.h) → one signed TongbanMessage,
 * POSTed to {endpoint}/tongban/v1/receive.
 *
 * The document is built with libxml2's tree API (every text escaped), in the
 * element order lu-xml.md shows, validated against lu-xml.xsd and only then
 * signed with keys.sign through the host. Whatever the partner's document
 * cannot express is refused here with TB_EVALIDATE and a message naming the
 * canonical field: the message would be refused by the partner forever
 * (code 1002), so it is a permanent failure, never silently altered.
 * See docs/adapter-lu-xml.md for the mapping tables.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "luxml.h"

struct enc {
  const struct luxml *lx;
  char *err;
};

/* A string member: 0 and *out (NULL when optional and absent/null), or
 * TB_EVALIDATE naming path.key. */
static int get_str(const json_t *o, const char *path, const char *key, int required,
                   const char **out, char *err) {
  *out = NULL;
  json_t *v = json_object_get(o, key);
  if (v == NULL || json_is_null(v)) {
    if (!required) return 0;
    return lx_errf(err, TB_EVALIDATE, "lu-xml: %s%s%s: missing", path, *path ? "." : "", key);
  }
  if (!json_is_string(v))
    return lx_errf(err, TB_EVALIDATE, "lu-xml: %s%s%s: expected a string", path, *path ? "." : "",
                   key);
  *out = json_string_value(v);
  return 0;
}

/* Adds <name> from o.key; optional members that are absent, null or ""
 * are left out (lu-xml: optional elements, when present, are not blank). */
static int add_member(xmlNodePtr parent, const char *name, const json_t *o, const char *path,
                      const char *key, int required, char *err) {
  const char *s;
  int rc = get_str(o, path, key, required, &s, err);
  if (rc != 0) return rc;
  if (s == NULL || (!required && *s == '\0')) return 0;
  char what[160];
  snprintf(what, sizeof what, "%s%s%s", path, *path ? "." : "", key);
  return lx_add(parent, name, s, what, err);
}

static int beijing_from_rfc3339(const struct tb_host *h, const char *s, char out[24],
                                const char *what, char *err) {
  int64_t ms;
  if (h->parse_rfc3339(s, strlen(s), &ms) != 0)
    return lx_errf(err, TB_EVALIDATE, "lu-xml: %s: not an RFC 3339 time with offset", what);
  if (h->format_beijing(ms, out, 24) != 0)
    return lx_errf(err, TB_EVALIDATE, "lu-xml: %s: out of the range of Beijing time", what);
  return 0;
}

static int add_party(xmlNodePtr parent, const char *elem, const json_t *p, const char *path,
                     char *err) {
  if (!json_is_object(p)) return lx_errf(err, TB_EVALIDATE, "lu-xml: %s: expected an object", path);
  xmlNodePtr n = xmlNewChild(parent, NULL, BAD_CAST elem, NULL);
  if (n == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  const char *kind;
  int rc = get_str(p, path, "kind", 1, &kind, err);
  if (rc != 0) return rc;
  const char *code = strcmp(kind, "person") == 0 ? "1" : strcmp(kind, "org") == 0 ? "2" : NULL;
  if (code == NULL)
    return lx_errf(err, TB_EVALIDATE, "lu-xml: %s.kind: expected \"person\" or \"org\"", path);
  if ((rc = lx_add(n, "LeiXing", code, "kind", err)) != 0 ||
      (rc = add_member(n, "XingMing", p, path, "name", 1, err)) != 0 ||
      (rc = add_member(n, "ZhengJianLeiXing", p, path, "id_type", 1, err)) != 0 ||
      (rc = add_member(n, "ZhengJianHaoMa", p, path, "id_number", 1, err)) != 0 ||
      (rc = add_member(n, "LianXiDianHua", p, path, "phone", 1, err)) != 0 ||
      (rc = add_member(n, "DiZhi", p, path, "address", 0, err)) != 0)
    return rc;
  return 0;
}

static int add_materials(const struct luxml *lx, xmlNodePtr parent, const json_t *arr,
                         const char *path, int at_least_one, char *err) {
  if (!json_is_array(arr)) return lx_errf(err, TB_EVALIDATE, "lu-xml: %s: expected an array", path);
  if (at_least_one && json_array_size(arr) == 0)
    return lx_errf(err, TB_EVALIDATE,
                   "lu-xml: %s: empty; a CASE_SUPPLEMENT carries at least one material", path);
  xmlNodePtr list = xmlNewChild(parent, NULL, BAD_CAST "CaiLiaoList", NULL);
  if (list == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  size_t i;
  json_t *m;
  json_array_foreach(arr, i, m) {
    char mp[64];
    snprintf(mp, sizeof mp, "%s[%zu]", path, i);
    if (!json_is_object(m)) return lx_errf(err, TB_EVALIDATE, "lu-xml: %s: expected an object", mp);
    xmlNodePtr c = xmlNewChild(list, NULL, BAD_CAST "CaiLiao", NULL);
    if (c == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
    const char *media, *sm3, *content;
    int rc = add_member(c, "MingCheng", m, mp, "name", 1, err);
    if (rc == 0) rc = get_str(m, mp, "media_type", 1, &media, err);
    if (rc != 0) return rc;
    const char *ext = lx->host->media_ext(media);
    if (ext == NULL)
      return lx_errf(err, TB_EVALIDATE,
                     "lu-xml: %s.media_type: \"%.100s\" has no GeShi (pdf jpg png ofd doc docx "
                     "xls xlsx zip txt)",
                     mp, media);
    if ((rc = lx_add(c, "GeShi", ext, "media_type", err)) != 0) return rc;
    json_t *size = json_object_get(m, "size");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
      return lx_errf(err, TB_EVALIDATE, "lu-xml: %s.size: expected an integer >= 0", mp);
    char num[32];
    snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(size));
    if ((rc = lx_add(c, "DaXiao", num, "size", err)) != 0) return rc;
    if ((rc = get_str(m, mp, "sm3", 1, &sm3, err)) != 0) return rc;
    char what[96];
    snprintf(what, sizeof what, "%s.sm3", mp);
    if ((rc = lx_add(c, "ZhaiYao", sm3, what, err)) != 0) return rc;
    if (xmlNewProp(xmlGetLastChild(c), BAD_CAST "SuanFa", BAD_CAST "SM3") == NULL)
      return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
    if ((rc = get_str(m, mp, "content_base64", 0, &content, err)) != 0) return rc;
    if (content == NULL) {
      /* NeiRong is required: lu-xml carries every file. Only an empty file
       * can be sent without content (empty NeiRong, DaXiao 0). */
      if (json_integer_value(size) != 0)
        return lx_errf(err, TB_EVALIDATE,
                       "lu-xml: %s.content_base64: missing; lu-xml requires every material's "
                       "content (NeiRong), so a material without content cannot be sent to "
                       "this partner",
                       mp);
      content = "";
    }
    snprintf(what, sizeof what, "%s.content_base64", mp);
    if ((rc = lx_add(c, "NeiRong", content, what, err)) != 0) return rc;
  }
  return 0;
}

static int body_case(const struct luxml *lx, xmlNodePtr body, const json_t *c, char *err) {
  const struct tb_host *h = lx->host;
  xmlNodePtr n = xmlNewChild(body, NULL, BAD_CAST "Case", NULL);
  if (n == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  const json_t *item = json_object_get(c, "item");
  if (!json_is_object(item)) return lx_errf(err, TB_EVALIDATE, "lu-xml: item: expected an object");
  int rc;
  if ((rc = add_member(n, "ShenBanHao", c, "", "case_id", 1, err)) != 0 ||
      (rc = add_member(n, "ShiXiangBianMa", item, "item", "code", 1, err)) != 0 ||
      (rc = add_member(n, "ShiXiangMingCheng", item, "item", "name", 1, err)) != 0 ||
      (rc = add_member(n, "ShouLiDi", c, "", "origin_region", 1, err)) != 0 ||
      (rc = add_member(n, "BanLiDi", c, "", "target_region", 1, err)) != 0)
    return rc;
  const char *acc;
  char bj[24];
  if ((rc = get_str(c, "", "accepted_at", 1, &acc, err)) != 0 ||
      (rc = beijing_from_rfc3339(h, acc, bj, "accepted_at", err)) != 0 ||
      (rc = lx_add(n, "ShouLiShiJian", bj, "accepted_at", err)) != 0)
    return rc;
  if ((rc = add_party(n, "ShenQingRen", json_object_get(c, "applicant"), "applicant", err)) != 0)
    return rc;
  const json_t *agent = json_object_get(c, "agent");
  if (agent != NULL && !json_is_null(agent) &&
      (rc = add_party(n, "DaiBanRen", agent, "agent", err)) != 0)
    return rc;
  if ((rc = add_materials(lx, n, json_object_get(c, "materials"), "materials", 0, err)) != 0)
    return rc;
  xmlNodePtr bd = xmlNewChild(n, NULL, BAD_CAST "BiaoDan", NULL);
  if (bd == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  if ((rc = lx_form_flatten(json_object_get(c, "form"), bd, err)) != 0) return rc;
  const json_t *d = json_object_get(c, "delivery");
  if (!json_is_object(d)) return lx_errf(err, TB_EVALIDATE, "lu-xml: delivery: expected an object");
  xmlNodePtr sd = xmlNewChild(n, NULL, BAD_CAST "SongDa", NULL);
  if (sd == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  const char *method;
  if ((rc = get_str(d, "delivery", "method", 1, &method, err)) != 0) return rc;
  const char *fs = strcmp(method, "mail") == 0         ? "1"
                   : strcmp(method, "pickup") == 0     ? "2"
                   : strcmp(method, "electronic") == 0 ? "3"
                                                       : NULL;
  if (fs == NULL)
    return lx_errf(err, TB_EVALIDATE,
                   "lu-xml: delivery.method: expected \"mail\", \"pickup\" or \"electronic\"");
  if ((rc = lx_add(sd, "FangShi", fs, "delivery.method", err)) != 0 ||
      (rc = add_member(sd, "ShouJianRen", d, "delivery", "recipient", 0, err)) != 0 ||
      (rc = add_member(sd, "DianHua", d, "delivery", "phone", 0, err)) != 0 ||
      (rc = add_member(sd, "DiZhi", d, "delivery", "address", 0, err)) != 0)
    return rc;
  const char *remarks;
  if ((rc = get_str(c, "", "remarks", 0, &remarks, err)) != 0) return rc;
  if (remarks != NULL && (rc = lx_add(n, "BeiZhu", remarks, "remarks", err)) != 0) return rc;
  return 0;
}

static int body_withdraw(xmlNodePtr body, const json_t *c, char *err) {
  xmlNodePtr n = xmlNewChild(body, NULL, BAD_CAST "Withdraw", NULL);
  if (n == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  int rc;
  if ((rc = add_member(n, "ShenBanHao", c, "", "case_id", 1, err)) != 0 ||
      (rc = add_member(n, "HuiZhiHao", c, "", "receipt_no", 1, err)) != 0 ||
      (rc = add_member(n, "YuanYin", c, "", "reason", 1, err)) != 0)
    return rc;
  return 0;
}

static int body_supplement(const struct luxml *lx, xmlNodePtr body, const json_t *c, char *err) {
  xmlNodePtr n = xmlNewChild(body, NULL, BAD_CAST "Supplement", NULL);
  if (n == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  int rc;
  if ((rc = add_member(n, "ShenBanHao", c, "", "case_id", 1, err)) != 0 ||
      (rc = add_member(n, "HuiZhiHao", c, "", "receipt_no", 1, err)) != 0 ||
      (rc = add_materials(lx, n, json_object_get(c, "materials"), "materials", 1, err)) != 0)
    return rc;
  return 0;
}

static int nonempty_str(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  return json_is_string(v) && json_string_length(v) > 0;
}

static int body_status(const struct luxml *lx, xmlNodePtr body, const json_t *c, char *err) {
  xmlNodePtr n = xmlNewChild(body, NULL, BAD_CAST "Status", NULL);
  if (n == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  const char *status, *at;
  int rc;
  if ((rc = add_member(n, "ShenBanHao", c, "", "case_id", 1, err)) != 0 ||
      (rc = add_member(n, "HuiZhiHao", c, "", "receipt_no", 1, err)) != 0 ||
      (rc = get_str(c, "", "status", 1, &status, err)) != 0)
    return rc;
  const char *code = lx_status_code(status);
  if (code == NULL)
    return lx_errf(err, TB_EVALIDATE, "lu-xml: status: \"%.60s\" is not a canonical status",
                   status);
  if ((rc = lx_add(n, "ZhuangTai", code, "status", err)) != 0 ||
      (rc = add_member(n, "ShuoMing", c, "", "opinion", 0, err)) != 0)
    return rc;
  const json_t *sup = json_object_get(c, "supplement");
  size_t nsup = json_is_array(sup) ? json_array_size(sup) : 0;
  if (sup != NULL && !json_is_null(sup) && !json_is_array(sup))
    return lx_errf(err, TB_EVALIDATE, "lu-xml: supplement: expected an array of material names");
  int is03 = strcmp(code, "03") == 0, is08 = strcmp(code, "08") == 0;
  if (is03 && nsup == 0)
    return lx_errf(err, TB_EVALIDATE,
                   "lu-xml: supplement: status supplement_required (03) needs at least one "
                   "material name (BuZhengCaiLiao)");
  if (!is03 && nsup > 0)
    return lx_errf(err, TB_EVALIDATE,
                   "lu-xml: supplement: only status supplement_required (03) carries "
                   "BuZhengCaiLiao, this status is %s",
                   status);
  for (size_t i = 0; i < nsup; i++) {
    const json_t *name = json_array_get(sup, i);
    if (!json_is_string(name))
      return lx_errf(err, TB_EVALIDATE, "lu-xml: supplement[%zu]: expected a string", i);
    xmlNodePtr b = xmlNewChild(n, NULL, BAD_CAST "BuZhengCaiLiao", NULL);
    if (b == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
    char what[48];
    snprintf(what, sizeof what, "supplement[%zu]", i);
    if ((rc = lx_add(b, "MingCheng", json_string_value(name), what, err)) != 0) return rc;
  }
  if (!is08 && (nonempty_str(c, "tracking_no") || nonempty_str(c, "licence_no")))
    return lx_errf(err, TB_EVALIDATE,
                   "lu-xml: tracking_no/licence_no: only status result_shipped (08) carries "
                   "KuaiDiDanHao/ZhengZhaoBianHao, this status is %s",
                   status);
  char bj[24];
  if ((rc = add_member(n, "KuaiDiDanHao", c, "", "tracking_no", 0, err)) != 0 ||
      (rc = add_member(n, "ZhengZhaoBianHao", c, "", "licence_no", 0, err)) != 0 ||
      (rc = get_str(c, "", "at", 1, &at, err)) != 0 ||
      (rc = beijing_from_rfc3339(lx->host, at, bj, "at", err)) != 0 ||
      (rc = lx_add(n, "ShiJian", bj, "at", err)) != 0)
    return rc;
  return 0;
}

/* Builds the unsigned document. */
static int build(const struct luxml *lx, const struct tb_outbound *msg, const json_t *c,
                 xmlDocPtr *doc_out, char *err) {
  const struct tb_host *h = lx->host;
  const char *type = lx_type_name(msg->type);
  if (type == NULL) return lx_errf(err, TB_EINVAL, "lu-xml: unknown message type %d", (int)msg->type);
  if (msg->message_id == NULL || strlen(msg->message_id) != 36)
    return lx_errf(err, TB_EINVAL, "lu-xml: message_id must be a UUID");
  char mid[37];
  for (int i = 0; i < 36; i++) mid[i] = (char)tolower((unsigned char)msg->message_id[i]);
  mid[36] = '\0';
  const char *sender = msg->sender_region ? msg->sender_region : h->node_region;
  if (sender == NULL || msg->receiver_region == NULL)
    return lx_errf(err, TB_EINVAL, "lu-xml: sender_region and receiver_region are required");
  char sent[24];
  if (h->format_beijing(msg->now_ms, sent, sizeof sent) != 0)
    return lx_errf(err, TB_EINVAL, "lu-xml: now_ms is out of range");

  xmlDocPtr doc = xmlNewDoc(BAD_CAST "1.0");
  xmlNodePtr root = doc ? xmlNewDocNode(doc, NULL, BAD_CAST "TongbanMessage", NULL) : NULL;
  xmlNsPtr ns = root ? xmlNewNs(root, BAD_CAST LX_NS, NULL) : NULL;
  if (ns == NULL) {
    if (root) xmlFreeNode(root);
    xmlFreeDoc(doc);
    return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  }
  xmlSetNs(root, ns);
  xmlDocSetRootElement(doc, root);
  int rc = 0;
  xmlNodePtr hd = NULL, body = NULL;
  if (xmlNewProp(root, BAD_CAST "version", BAD_CAST "1.0") == NULL ||
      (hd = xmlNewChild(root, NULL, BAD_CAST "Header", NULL)) == NULL) {
    rc = lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
    goto out;
  }
  if ((rc = lx_add(hd, "MessageId", mid, "message_id", err)) != 0 ||
      (rc = lx_add(hd, "MessageType", type, "type", err)) != 0 ||
      (rc = lx_add(hd, "SenderRegion", sender, "sender_region", err)) != 0 ||
      (rc = lx_add(hd, "ReceiverRegion", msg->receiver_region, "receiver_region", err)) != 0 ||
      (rc = lx_add(hd, "SendTime", sent, "now_ms", err)) != 0)
    goto out;
  if ((body = xmlNewChild(root, NULL, BAD_CAST "Body", NULL)) == NULL) {
    rc = lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
    goto out;
  }
  switch (msg->type) {
  case TB_MSG_CASE_SUBMIT: rc = body_case(lx, body, c, err); break;
  case TB_MSG_CASE_WITHDRAW: rc = body_withdraw(body, c, err); break;
  case TB_MSG_CASE_SUPPLEMENT: rc = body_supplement(lx, body, c, err); break;
  case TB_MSG_STATUS_NOTIFY: rc = body_status(lx, body, c, err); break;
  }
out:
  if (rc != 0) {
    xmlFreeDoc(doc);
    return rc;
  }
  *doc_out = doc;
  return 0;
}

int lx_encode(void *state, const struct tb_outbound *msg, struct tb_wire_request *out,
              char *err) {
  const struct luxml *lx = state;
  const struct tb_host *h = lx->host;
  memset(out, 0, sizeof *out);
  if (msg == NULL || msg->body == NULL)
    return lx_errf(err, TB_EINVAL, "lu-xml: encode without a message body");
  json_error_t je;
  json_t *c = json_loadb(msg->body, msg->body_len, JSON_REJECT_DUPLICATES, &je);
  if (c == NULL)
    return lx_errf(err, TB_EPARSE, "lu-xml: canonical body: line %d column %d: %s", je.line,
                   je.column, je.text);
  if (!json_is_object(c)) {
    json_decref(c);
    return lx_errf(err, TB_EVALIDATE, "lu-xml: canonical body: expected a JSON object");
  }
  xmlDocPtr doc = NULL;
  int rc = build(lx, msg, c, &doc, err);
  json_decref(c);
  if (rc != 0) return rc;

  char why[TB_ERRMSG_MAX - 64];
  rc = lx_validate(lx, doc, why, sizeof why);
  if (rc != 0) {
    xmlFreeDoc(doc);
    if (rc == TB_EVALIDATE)
      return lx_errf(err, TB_EVALIDATE, "lu-xml: the message would not match lu-xml.xsd: %s", why);
    return lx_errf(err, rc, "lu-xml: %s", why);
  }
  xmlChar *xml = NULL;
  int xml_len = 0;
  rc = lx_serialize(doc, &xml, &xml_len, err);
  xmlFreeDoc(doc);
  if (rc != 0) return rc;
  rc = lx_sign(lx, xml, (size_t)xml_len, &out->body, err);
  xmlFree(xml);
  if (rc != 0) return rc;
  out->path = lx_hstrdup(h, LX_RECEIVE_PATH);
  out->content_type = lx_hstrdup(h, LX_CONTENT_TYPE);
  out->headers = NULL;
  if (out->path == NULL || out->content_type == NULL) {
    h->free(out->path);
    h->free(out->content_type);
    h->free(out->body.data);
    memset(out, 0, sizeof *out);
    return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  }
  return 0;
}
