/*
 * mapping.c — canonical JSON ⇄ yue-json business JSON (yue-json.md
 * "Business JSON"), both directions. docs/adapter-yue-json.md has the tables.
 *
 * Outbound (canonical → business): the canonical body has been validated by
 * the gateway, but this side still checks every value it maps so that no
 * input can make it write something the document does not allow; what cannot
 * be expressed is TB_EVALIDATE with the canonical path.
 *
 * Inbound (business → canonical): the partner's JSON must have exactly the
 * keys of the document's examples, with the types shown, values from the
 * code tables, and values the canonical rules accept (a case that reaches
 * local software must be a valid tongban.case/v1). Anything else is
 * TB_EVALIDATE, answered 4001, with a JSONPath that never quotes a value
 * (values are personal data).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "yuejson.h"

/* ---- code tables -------------------------------------------------------------- */

struct pair {
  const char *canonical;
  const char *wire;
};

static const struct pair cert_types[] = {
    {"111", "SFZ"}, {"414", "HZ"}, {"516", "GAT"}, {"511", "TW"}, {"001", "TYSHXYDM"},
};

static const struct pair statuses[] = {
    {"accepted", "ACCEPT"},
    {"rejected", "REJECT"},
    {"supplement_required", "SUPPLEMENT"},
    {"in_progress", "PROCESSING"},
    {"approved", "FINISH_PASS"},
    {"denied", "FINISH_FAIL"},
    {"withdrawn", "WITHDRAW"},
    {"result_shipped", "EXPRESS"},
};

static const struct pair delivery_modes[] = {
    {"mail", "1"},
    {"pickup", "2"},
    {"electronic", "3"},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *to_wire(const struct pair *t, size_t n, const char *canonical) {
  for (size_t i = 0; canonical && i < n; i++)
    if (strcmp(t[i].canonical, canonical) == 0) return t[i].wire;
  return NULL;
}

static const char *to_canonical(const struct pair *t, size_t n, const char *wire) {
  for (size_t i = 0; wire && i < n; i++)
    if (strcmp(t[i].wire, wire) == 0) return t[i].canonical;
  return NULL;
}

/* ---- value checks shared by both directions ------------------------------------ */

static int all_in(const char *s, size_t n, const char *set) {
  for (size_t i = 0; i < n; i++)
    if (s[i] == '\0' || strchr(set, s[i]) == NULL) return 0;
  return 1;
}

#define DIGITS "0123456789"
#define ALNUM DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

static int case_id_ok(const char *s) {
  size_t n = strlen(s);
  return n >= 1 && n <= 64 && all_in(s, n, ALNUM "_-");
}

static int division_ok(const char *s) {
  static const char *const provinces[] = {"11", "12", "13", "14", "15", "21", "22", "23", "31",
                                          "32", "33", "34", "35", "36", "37", "41", "42", "43",
                                          "44", "45", "46", "50", "51", "52", "53", "54", "61",
                                          "62", "63", "64", "65", "71", "81", "82"};
  if (strlen(s) != 6 || !all_in(s, 6, DIGITS)) return 0;
  for (size_t i = 0; i < COUNT(provinces); i++)
    if (strncmp(s, provinces[i], 2) == 0) return 1;
  return 0;
}

static int phone_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 11 && s[0] == '1' && s[1] >= '3' && s[1] <= '9' && all_in(s, n, DIGITS)) return 1;
  if (n < 2 || s[0] != '0') return 0;
  for (size_t area = 2; area <= 3; area++) {
    if (n < 1 + area || !all_in(s + 1, area, DIGITS)) continue;
    const char *rest = s + 1 + area;
    if (*rest == '-') rest++;
    size_t r = strlen(rest);
    if (r >= 7 && r <= 8 && all_in(rest, r, DIGITS)) return 1;
  }
  return 0;
}

static int real_date(int y, int m, int d) {
  static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1900 || m < 1 || m > 12 || d < 1) return 0;
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= mdays[m - 1] + (m == 2 && leap);
}

/* GB 11643: province prefix, real birth date, ISO 7064 MOD 11-2. */
static int resident_id_ok(const char *s) {
  static const int w[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static const char check[] = "10X98765432";
  if (strlen(s) != 18 || !all_in(s, 17, DIGITS) || !(all_in(s + 17, 1, DIGITS) || s[17] == 'X'))
    return 0;
  char region[7];
  memcpy(region, s, 6);
  region[6] = '\0';
  memcpy(region + 2, "0000", 4);
  if (!division_ok(region)) return 0;
  int y = 0, m = 0, d = 0;
  for (int i = 6; i < 10; i++) y = y * 10 + (s[i] - '0');
  m = (s[10] - '0') * 10 + (s[11] - '0');
  d = (s[12] - '0') * 10 + (s[13] - '0');
  if (!real_date(y, m, d)) return 0;
  int sum = 0;
  for (int i = 0; i < 17; i++) sum += (s[i] - '0') * w[i];
  return check[sum % 11] == s[17];
}

/* GB 32100-2015: alphabet and MOD 31 check character. */
static int uscc_ok(const char *s) {
  static const char alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
  static const int w[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28};
  if (strlen(s) != 18 || !all_in(s, 18, alphabet)) return 0;
  int sum = 0;
  for (int i = 0; i < 17; i++) sum += (int)(strchr(alphabet, s[i]) - alphabet) * w[i];
  return alphabet[(31 - sum % 31) % 31] == s[17];
}

static int id_number_ok(const char *id_type, const char *s) {
  size_t n = strlen(s);
  if (strcmp(id_type, "111") == 0) return resident_id_ok(s);
  if (strcmp(id_type, "001") == 0) return uscc_ok(s);
  if (strcmp(id_type, "414") == 0)
    return n >= 5 && n <= 20 && all_in(s, n, DIGITS "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
  if (strcmp(id_type, "516") == 0)
    return (n == 9 || n == 11) && (s[0] == 'H' || s[0] == 'M') && all_in(s + 1, n - 1, DIGITS);
  if (strcmp(id_type, "511") == 0) return (n == 8 || n == 10) && all_in(s, n, DIGITS);
  return 0;
}

/* Text as the canonical rules allow it: UTF-8 (jansson checked that), at
 * most max code points, no control characters (tab, CR, LF only when
 * multiline), and not blank when required. */
static int text_ok(const char *s, size_t len, size_t max, int multiline, int nonblank) {
  size_t chars = 0;
  int blank = 1;
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < len; i++) {
    unsigned c = p[i];
    if ((c & 0xc0) != 0x80) chars++;
    if (c < 0x20 || c == 0x7f) {
      if (!multiline || (c != '\t' && c != '\r' && c != '\n')) return 0;
      continue;
    }
    if (c == ' ') continue;
    if (c == 0xe3 && i + 2 < len && p[i + 1] == 0x80 && p[i + 2] == 0x80) { /* U+3000 */
      i += 2;
      continue;
    }
    if ((c & 0xc0) != 0x80) blank = 0;
  }
  return chars <= max && !(nonblank && blank);
}

static int sm3_hex_ok(const char *s) {
  return strlen(s) == 64 && all_in(s, 64, "0123456789abcdef");
}

/* ---- outbound: canonical → business JSON -------------------------------------- */

struct enc {
  const struct yj_state *st;
  struct yj_buf *out;
  char *err;
};

static int bad(char *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *err, const char *path, const char *fmt, ...) {
  char what[300];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  return tb_errf(err, TB_EVALIDATE, "yue-json: canonical %s: %s", path, what);
}

/* A required string member. */
static int c_str(const json_t *o, const char *path, const char *key, const char **out, char *err) {
  const json_t *v = json_object_get(o, key);
  *out = NULL; /* defined on every path, also for the optimiser's flow analysis */
  if (!json_is_string(v)) return bad(err, path, "%s must be a string", key);
  *out = json_string_value(v);
  return 0;
}

/* An optional string member: absent or null gives NULL. */
static int c_opt_str(const json_t *o, const char *path, const char *key, const char **out,
                     char *err) {
  const json_t *v = json_object_get(o, key);
  *out = NULL;
  if (v == NULL || json_is_null(v)) return 0;
  if (!json_is_string(v)) return bad(err, path, "%s must be a string or null", key);
  *out = json_string_value(v);
  return 0;
}

static int enc_party(struct enc *e, const json_t *p, const char *path) {
  const char *kind = NULL, *name = NULL, *id_type = NULL, *id_number = NULL, *phone = NULL, *address = NULL;
  int rc;
  if (!json_is_object(p)) return bad(e->err, path, "must be an object");
  if ((rc = c_str(p, path, "kind", &kind, e->err)) ||
      (rc = c_str(p, path, "name", &name, e->err)) ||
      (rc = c_str(p, path, "id_type", &id_type, e->err)) ||
      (rc = c_str(p, path, "id_number", &id_number, e->err)) ||
      (rc = c_str(p, path, "phone", &phone, e->err)) ||
      (rc = c_opt_str(p, path, "address", &address, e->err)))
    return rc;
  const char *type = strcmp(kind, "person") == 0 ? "P" : strcmp(kind, "org") == 0 ? "E" : NULL;
  if (type == NULL) return bad(e->err, path, "kind is neither person nor org");
  const char *cert = to_wire(cert_types, COUNT(cert_types), id_type);
  if (cert == NULL) return bad(e->err, path, "id_type is not in the national table");
  if ((type[0] == 'E') != (strcmp(id_type, "001") == 0))
    return bad(e->err, path, "id_type does not fit kind (persons 111/414/516/511, orgs 001)");
  struct yj_buf *b = e->out;
  yj_json_open(b, '{');
  yj_json_key(b, "type");
  yj_json_str(b, type);
  yj_json_key(b, "name");
  yj_json_str(b, name);
  yj_json_key(b, "certType");
  yj_json_str(b, cert);
  yj_json_key(b, "certNo");
  yj_json_str(b, id_number);
  yj_json_key(b, "mobile");
  yj_json_str(b, phone);
  yj_json_key(b, "address");
  yj_json_str(b, address); /* null when the case has none */
  yj_json_close(b, '}');
  return 0;
}

static int enc_attachments(struct enc *e, const json_t *materials, const char *path) {
  if (!json_is_array(materials)) return bad(e->err, path, "must be an array");
  struct yj_buf *b = e->out;
  yj_json_open(b, '[');
  for (size_t i = 0; i < json_array_size(materials); i++) {
    char p[64];
    snprintf(p, sizeof p, "%s[%zu]", path, i);
    const json_t *m = json_array_get(materials, i);
    const char *name = NULL, *media = NULL, *sm3 = NULL, *content = NULL;
    int rc;
    if (!json_is_object(m)) return bad(e->err, p, "must be an object");
    if ((rc = c_str(m, p, "name", &name, e->err)) ||
        (rc = c_str(m, p, "media_type", &media, e->err)) ||
        (rc = c_str(m, p, "sm3", &sm3, e->err)) ||
        (rc = c_opt_str(m, p, "content_base64", &content, e->err)))
      return rc;
    const json_t *size = json_object_get(m, "size");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
      return bad(e->err, p, "size must be an integer >= 0");
    const char *ext = e->st->host->media_ext(media);
    if (ext == NULL)
      return bad(e->err, p, "media_type has no file extension in the gateway's table");
    /* The document's attachment always carries fileData: a material known
     * by its metadata only cannot be sent to this partner. */
    if (content == NULL)
      return bad(e->err, p,
                 "content_base64 is required: yue-json attachments carry the file (fileData)");
    yj_json_elem(b);
    yj_json_open(b, '{');
    yj_json_key(b, "fileName");
    { /* name + "." + ext as one escaped string */
      struct yj_buf fn;
      yj_buf_init(&fn, e->st->host);
      yj_buf_puts(&fn, name);
      yj_buf_puts(&fn, ".");
      yj_buf_puts(&fn, ext);
      if (fn.failed) {
        yj_buf_free(&fn);
        return tb_errf(e->err, TB_ENOMEM, "yue-json: out of memory");
      }
      yj_json_strn(b, fn.data, fn.len);
      yj_buf_free(&fn);
    }
    yj_json_key(b, "fileType");
    yj_json_str(b, ext);
    yj_json_key(b, "fileSize");
    yj_json_int(b, (int64_t)json_integer_value(size));
    yj_json_key(b, "sm3");
    yj_json_str(b, sm3);
    yj_json_key(b, "fileData");
    yj_json_str(b, content);
    yj_json_close(b, '}');
  }
  yj_json_close(b, ']');
  return 0;
}

static int enc_time(struct enc *e, const char *path, const char *text, int64_t *ms) {
  if (e->st->host->parse_rfc3339(text, strlen(text), ms) != 0)
    return bad(e->err, path, "is not an RFC 3339 date-time with offset");
  return 0;
}

static int enc_case(struct enc *e, const json_t *c) {
  const char *case_id, *code, *name, *origin, *target, *accepted_at, *method, *recipient, *phone,
      *address, *remarks;
  int rc;
  const json_t *item = json_object_get(c, "item");
  const json_t *delivery = json_object_get(c, "delivery");
  const json_t *agent = json_object_get(c, "agent");
  const json_t *form = json_object_get(c, "form");
  if ((rc = c_str(c, "case", "case_id", &case_id, e->err))) return rc;
  if (!json_is_object(item)) return bad(e->err, "item", "must be an object");
  if ((rc = c_str(item, "item", "code", &code, e->err)) ||
      (rc = c_str(item, "item", "name", &name, e->err)) ||
      (rc = c_str(c, "case", "origin_region", &origin, e->err)) ||
      (rc = c_str(c, "case", "target_region", &target, e->err)) ||
      (rc = c_str(c, "case", "accepted_at", &accepted_at, e->err)) ||
      (rc = c_opt_str(c, "case", "remarks", &remarks, e->err)))
    return rc;
  if (!json_is_object(delivery)) return bad(e->err, "delivery", "must be an object");
  if ((rc = c_str(delivery, "delivery", "method", &method, e->err)) ||
      (rc = c_opt_str(delivery, "delivery", "recipient", &recipient, e->err)) ||
      (rc = c_opt_str(delivery, "delivery", "phone", &phone, e->err)) ||
      (rc = c_opt_str(delivery, "delivery", "address", &address, e->err)))
    return rc;
  const char *mode = to_wire(delivery_modes, COUNT(delivery_modes), method);
  if (mode == NULL) return bad(e->err, "delivery.method", "is not mail, pickup or electronic");
  if (!json_is_object(form)) return bad(e->err, "form", "must be an object");
  if (agent != NULL && !json_is_null(agent) && !json_is_object(agent))
    return bad(e->err, "agent", "must be an object or null");
  int64_t accept_ms = 0;
  if ((rc = enc_time(e, "accepted_at", accepted_at, &accept_ms))) return rc;

  struct yj_buf *b = e->out;
  yj_json_open(b, '{');
  yj_json_key(b, "applyNo");
  yj_json_str(b, case_id);
  yj_json_key(b, "matterCode");
  yj_json_str(b, code);
  yj_json_key(b, "matterName");
  yj_json_str(b, name);
  yj_json_key(b, "acceptAreaCode");
  yj_json_str(b, origin);
  yj_json_key(b, "handleAreaCode");
  yj_json_str(b, target);
  yj_json_key(b, "acceptTime");
  yj_json_int(b, accept_ms);
  yj_json_key(b, "applicant");
  if ((rc = enc_party(e, json_object_get(c, "applicant"), "applicant"))) return rc;
  yj_json_key(b, "agent");
  if (agent == NULL || json_is_null(agent))
    yj_json_null(b);
  else if ((rc = enc_party(e, agent, "agent")))
    return rc;
  yj_json_key(b, "attachments");
  if ((rc = enc_attachments(e, json_object_get(c, "materials"), "materials"))) return rc;
  yj_json_key(b, "formData");
  yj_json_value(b, form);
  yj_json_key(b, "delivery");
  yj_json_open(b, '{');
  yj_json_key(b, "mode");
  yj_buf_puts(b, mode);
  yj_json_key(b, "receiver");
  yj_json_str(b, recipient);
  yj_json_key(b, "mobile");
  yj_json_str(b, phone);
  yj_json_key(b, "address");
  yj_json_str(b, address);
  yj_json_close(b, '}');
  yj_json_key(b, "remark");
  yj_json_str(b, remarks ? remarks : ""); /* the document shows a string: "" for none */
  yj_json_close(b, '}');
  return 0;
}

static int enc_withdraw(struct enc *e, const json_t *c) {
  const char *case_id = NULL, *receipt = NULL, *reason = NULL;
  int rc;
  if ((rc = c_str(c, "withdraw", "case_id", &case_id, e->err)) ||
      (rc = c_str(c, "withdraw", "receipt_no", &receipt, e->err)) ||
      (rc = c_opt_str(c, "withdraw", "reason", &reason, e->err)))
    return rc;
  struct yj_buf *b = e->out;
  yj_json_open(b, '{');
  yj_json_key(b, "applyNo");
  yj_json_str(b, case_id);
  yj_json_key(b, "receiptNo");
  yj_json_str(b, receipt);
  yj_json_key(b, "reason");
  yj_json_str(b, reason ? reason : "");
  yj_json_close(b, '}');
  return 0;
}

static int enc_supplement(struct enc *e, const json_t *c) {
  const char *case_id = NULL, *receipt = NULL;
  int rc;
  if ((rc = c_str(c, "supplement", "case_id", &case_id, e->err)) ||
      (rc = c_str(c, "supplement", "receipt_no", &receipt, e->err)))
    return rc;
  struct yj_buf *b = e->out;
  yj_json_open(b, '{');
  yj_json_key(b, "applyNo");
  yj_json_str(b, case_id);
  yj_json_key(b, "receiptNo");
  yj_json_str(b, receipt);
  yj_json_key(b, "attachments");
  if ((rc = enc_attachments(e, json_object_get(c, "materials"), "materials"))) return rc;
  yj_json_close(b, '}');
  return 0;
}

static int enc_status(struct enc *e, const json_t *c) {
  const char *case_id = NULL, *receipt = NULL, *status = NULL, *opinion = NULL, *tracking = NULL, *licence = NULL, *at = NULL;
  int rc;
  if ((rc = c_str(c, "status", "case_id", &case_id, e->err)) ||
      (rc = c_str(c, "status", "receipt_no", &receipt, e->err)) ||
      (rc = c_str(c, "status", "status", &status, e->err)) ||
      (rc = c_opt_str(c, "status", "opinion", &opinion, e->err)) ||
      (rc = c_opt_str(c, "status", "tracking_no", &tracking, e->err)) ||
      (rc = c_opt_str(c, "status", "licence_no", &licence, e->err)) ||
      (rc = c_str(c, "status", "at", &at, e->err)))
    return rc;
  const char *wire = to_wire(statuses, COUNT(statuses), status);
  if (wire == NULL) return bad(e->err, "status", "is not a canonical business status");
  const json_t *supp = json_object_get(c, "supplement");
  if (supp != NULL && !json_is_null(supp) && !json_is_array(supp))
    return bad(e->err, "supplement", "must be an array of material names");
  size_t nsupp = json_array_size(supp);
  for (size_t i = 0; i < nsupp; i++)
    if (!json_is_string(json_array_get(supp, i)) ||
        json_string_length(json_array_get(supp, i)) == 0)
      return bad(e->err, "supplement", "must hold non-empty material names");
  int is_supp = strcmp(wire, "SUPPLEMENT") == 0, is_express = strcmp(wire, "EXPRESS") == 0;
  /* The partner accepts supplementList only for SUPPLEMENT (and needs it
   * there), expressNo/licenseNo only for EXPRESS: refuse here, with the
   * reason, rather than have the partner answer 4001. */
  if (is_supp && nsupp == 0)
    return bad(e->err, "supplement", "supplement_required needs at least one material name");
  if (!is_supp && nsupp > 0)
    return bad(e->err, "supplement", "is only sent with status supplement_required");
  if (!is_express && (tracking || licence))
    return bad(e->err, tracking ? "tracking_no" : "licence_no",
               "is only sent with status result_shipped");
  int64_t at_ms = 0;
  if ((rc = enc_time(e, "at", at, &at_ms))) return rc;

  struct yj_buf *b = e->out;
  yj_json_open(b, '{');
  yj_json_key(b, "applyNo");
  yj_json_str(b, case_id);
  yj_json_key(b, "receiptNo");
  yj_json_str(b, receipt);
  yj_json_key(b, "status");
  yj_json_str(b, wire);
  yj_json_key(b, "opinion");
  yj_json_str(b, opinion);
  yj_json_key(b, "supplementList");
  if (!is_supp) {
    yj_json_null(b);
  } else {
    yj_json_open(b, '[');
    for (size_t i = 0; i < nsupp; i++) {
      yj_json_elem(b);
      yj_json_open(b, '{');
      yj_json_key(b, "materialName");
      yj_json_value(b, json_array_get(supp, i));
      yj_json_close(b, '}');
    }
    yj_json_close(b, ']');
  }
  yj_json_key(b, "expressNo");
  yj_json_str(b, tracking);
  yj_json_key(b, "licenseNo");
  yj_json_str(b, licence);
  yj_json_key(b, "time");
  yj_json_int(b, at_ms);
  yj_json_close(b, '}');
  return 0;
}

int yj_biz_from_canonical(const struct yj_state *st, enum tb_msg_type type, const json_t *canon,
                          struct yj_buf *out, char *err) {
  struct enc e = {st, out, err};
  if (!json_is_object(canon)) return bad(err, "body", "must be a JSON object");
  int rc;
  switch (type) {
  case TB_MSG_CASE_SUBMIT: rc = enc_case(&e, canon); break;
  case TB_MSG_CASE_WITHDRAW: rc = enc_withdraw(&e, canon); break;
  case TB_MSG_CASE_SUPPLEMENT: rc = enc_supplement(&e, canon); break;
  case TB_MSG_STATUS_NOTIFY: rc = enc_status(&e, canon); break;
  default: return tb_errf(err, TB_EINVAL, "yue-json: unknown message type %d", (int)type);
  }
  if (rc == 0 && out->failed) rc = tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
  return rc;
}

/* ---- inbound: business JSON → canonical ---------------------------------------- */

struct dec {
  const struct yj_state *st;
  struct yj_buf *out;
  char *why;
  size_t why_size;
  int nomem;
};

static int refuse(struct dec *d, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct dec *d, const char *path, const char *fmt, ...) {
  char what[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(d->why, d->why_size, "%s: %s", path, what);
  return TB_EVALIDATE;
}

/* Exactly these keys (the document's example), no others. */
static int exact_keys(struct dec *d, const json_t *o, const char *path, const char *const *keys,
                      size_t n) {
  if (!json_is_object(o)) return refuse(d, path, "must be an object");
  for (size_t i = 0; i < n; i++)
    if (json_object_get(o, keys[i]) == NULL) return refuse(d, path, "%s is missing", keys[i]);
  if (json_object_size(o) != n) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)(uintptr_t)o, key, v) {
      size_t i = 0;
      while (i < n && strcmp(keys[i], key) != 0) i++;
      if (i == n) {
        /* The key is the partner's field name, not a value: safe to name,
         * but cut it short. */
        char k[40];
        yj_copy_text(k, sizeof k, key, strlen(key));
        return refuse(d, path, "unknown key \"%s\"", k);
      }
    }
  }
  return 0;
}

enum nullness { NOT_NULL = 0, NULLABLE = 1 };

/* A string member; NULL (and 0) when null is allowed and given. */
static int d_str(struct dec *d, const json_t *o, const char *path, const char *key,
                 enum nullness nl, const char **out, size_t *len) {
  const json_t *v = json_object_get(o, key);
  *out = NULL;
  if (len) *len = 0;
  if (nl == NULLABLE && json_is_null(v)) return 0;
  if (!json_is_string(v))
    return refuse(d, path, "%s must be a string%s", key, nl == NULLABLE ? " or null" : "");
  *out = json_string_value(v);
  if (len) *len = json_string_length(v);
  if (strlen(*out) != json_string_length(v)) return refuse(d, path, "%s contains NUL", key);
  return 0;
}

/* Unix milliseconds (yue-json.md: "every time ... Unix milliseconds"): an
 * integer from 10^12 (2001) below 10^13 (2286); seconds are refused. */
static int d_time(struct dec *d, const json_t *o, const char *path, const char *key, int64_t *ms) {
  const json_t *v = json_object_get(o, key);
  if (!json_is_integer(v)) return refuse(d, path, "%s must be an integer (Unix ms)", key);
  json_int_t t = json_integer_value(v);
  if (t < 1000000000000LL || t >= 10000000000000LL)
    return refuse(d, path, "%s is not a plausible Unix time in milliseconds", key);
  *ms = (int64_t)t;
  return 0;
}

/* RFC 3339 in Beijing time, with milliseconds only when there are some. */
static void put_time(struct dec *d, int64_t ms) {
  char t[40];
  if (d->st->host->format_rfc3339_beijing(ms, t, sizeof t) != 0 || strlen(t) != 25) {
    yj_json_null(d->out); /* unreachable for the range d_time admits */
    return;
  }
  if (ms % 1000 != 0) {
    char frac[8];
    snprintf(frac, sizeof frac, ".%03d", (int)(ms % 1000));
    memmove(t + 23, t + 19, 7); /* "+08:00\0" */
    memcpy(t + 19, frac, 4);
  }
  yj_json_str(d->out, t);
}

static int dec_party(struct dec *d, const json_t *p, const char *path) {
  static const char *const keys[] = {"type", "name", "certType", "certNo", "mobile", "address"};
  const char *type = NULL, *name = NULL, *cert = NULL, *no = NULL, *mobile = NULL, *address = NULL;
  size_t name_len, addr_len;
  int rc;
  if ((rc = exact_keys(d, p, path, keys, COUNT(keys))) ||
      (rc = d_str(d, p, path, "type", NOT_NULL, &type, NULL)) ||
      (rc = d_str(d, p, path, "name", NOT_NULL, &name, &name_len)) ||
      (rc = d_str(d, p, path, "certType", NOT_NULL, &cert, NULL)) ||
      (rc = d_str(d, p, path, "certNo", NOT_NULL, &no, NULL)) ||
      (rc = d_str(d, p, path, "mobile", NOT_NULL, &mobile, NULL)) ||
      (rc = d_str(d, p, path, "address", NULLABLE, &address, &addr_len)))
    return rc;
  const char *kind = strcmp(type, "P") == 0 ? "person" : strcmp(type, "E") == 0 ? "org" : NULL;
  if (kind == NULL) return refuse(d, path, "type must be P or E");
  if (!text_ok(name, name_len, 200, 0, 1))
    return refuse(d, path, "name must be 1-200 characters on one line");
  const char *id_type = to_canonical(cert_types, COUNT(cert_types), cert);
  if (id_type == NULL) return refuse(d, path, "certType is not SFZ, HZ, GAT, TW or TYSHXYDM");
  if ((kind[0] == 'o') != (strcmp(id_type, "001") == 0))
    return refuse(d, path, "certType does not fit type (P: SFZ/HZ/GAT/TW, E: TYSHXYDM)");
  if (!id_number_ok(id_type, no))
    return refuse(d, path, "certNo is not a valid number of its certType");
  if (!phone_ok(mobile)) return refuse(d, path, "mobile is not a mainland mobile or fixed line");
  if (address && !text_ok(address, addr_len, 256, 0, 0))
    return refuse(d, path, "address must be at most 256 characters on one line");
  struct yj_buf *b = d->out;
  yj_json_open(b, '{');
  yj_json_key(b, "kind");
  yj_json_str(b, kind);
  yj_json_key(b, "name");
  yj_json_str(b, name);
  yj_json_key(b, "id_type");
  yj_json_str(b, id_type);
  yj_json_key(b, "id_number");
  yj_json_str(b, no);
  yj_json_key(b, "phone");
  yj_json_str(b, mobile);
  if (address) {
    yj_json_key(b, "address");
    yj_json_str(b, address);
  }
  yj_json_close(b, '}');
  return 0;
}

static int dec_attachments(struct dec *d, const json_t *a, const char *path) {
  static const char *const keys[] = {"fileName", "fileType", "fileSize", "sm3", "fileData"};
  const struct tb_host *h = d->st->host;
  if (!json_is_array(a)) return refuse(d, path, "must be an array");
  if (json_array_size(a) > 100) return refuse(d, path, "more than 100 attachments");
  struct yj_buf *b = d->out;
  yj_json_open(b, '[');
  for (size_t i = 0; i < json_array_size(a); i++) {
    char p[64];
    snprintf(p, sizeof p, "%s[%zu]", path, i);
    const json_t *m = json_array_get(a, i);
    const char *file_name = NULL, *file_type = NULL, *sm3 = NULL, *data = NULL;
    size_t fn_len, data_len;
    int rc;
    if ((rc = exact_keys(d, m, p, keys, COUNT(keys))) ||
        (rc = d_str(d, m, p, "fileName", NOT_NULL, &file_name, &fn_len)) ||
        (rc = d_str(d, m, p, "fileType", NOT_NULL, &file_type, NULL)) ||
        (rc = d_str(d, m, p, "sm3", NOT_NULL, &sm3, NULL)) ||
        (rc = d_str(d, m, p, "fileData", NOT_NULL, &data, &data_len)))
      return rc;
    size_t tl = strlen(file_type);
    if (tl == 0 || tl > 10 || !all_in(file_type, tl, "abcdefghijklmnopqrstuvwxyz0123456789"))
      return refuse(d, p, "fileType must be 1-10 lowercase letters or digits");
    const char *media = h->media_type_for_ext(file_type);
    if (media == NULL) return refuse(d, p, "fileType has no media type in the gateway's table");
    if (fn_len < tl + 2 || file_name[fn_len - tl - 1] != '.' ||
        strcmp(file_name + fn_len - tl, file_type) != 0)
      return refuse(d, p, "fileName must be a name, \".\" and fileType");
    size_t name_len = fn_len - tl - 1;
    if (!text_ok(file_name, name_len, 200, 0, 1))
      return refuse(d, p, "fileName's name must be 1-200 characters on one line");
    const json_t *size = json_object_get(m, "fileSize");
    if (!json_is_integer(size) || json_integer_value(size) < 0)
      return refuse(d, p, "fileSize must be an integer >= 0");
    if (!sm3_hex_ok(sm3)) return refuse(d, p, "sm3 must be 64 lowercase hex digits");
    struct tb_bytes raw = {NULL, 0};
    int r = h->base64_decode(data, data_len, &raw);
    if (r == TB_ENOMEM) {
      d->nomem = 1;
      return TB_ENOMEM;
    }
    if (r != 0) return refuse(d, p, "fileData is not canonical base64");
    char hex[65];
    r = yj_sm3_hex(h, raw.data, raw.len, hex);
    size_t raw_len = raw.len;
    h->free(raw.data);
    if (r != 0) {
      d->nomem = 1;
      return TB_ENOMEM;
    }
    if ((json_int_t)raw_len != json_integer_value(size))
      return refuse(d, p, "fileSize is not the size of fileData");
    if (strcmp(hex, sm3) != 0) return refuse(d, p, "sm3 is not the SM3 digest of fileData");
    yj_json_elem(b);
    yj_json_open(b, '{');
    yj_json_key(b, "name");
    yj_json_strn(b, file_name, name_len);
    yj_json_key(b, "media_type");
    yj_json_str(b, media);
    yj_json_key(b, "size");
    yj_json_int(b, (int64_t)raw_len);
    yj_json_key(b, "sm3");
    yj_json_str(b, sm3);
    yj_json_key(b, "content_base64");
    yj_json_strn(b, data, data_len);
    yj_json_close(b, '}');
  }
  yj_json_close(b, ']');
  return 0;
}

static int dec_apply_no(struct dec *d, const json_t *o, struct yj_inbound_fields *f) {
  const char *s;
  int rc = d_str(d, o, "$", "applyNo", NOT_NULL, &s, NULL);
  if (rc) return rc;
  if (!case_id_ok(s)) return refuse(d, "$", "applyNo must be 1-64 of 0-9 A-Z a-z _ -");
  snprintf(f->case_id, sizeof f->case_id, "%s", s);
  return 0;
}

static int dec_receipt_no(struct dec *d, const json_t *o, struct yj_inbound_fields *f) {
  const char *s;
  size_t n;
  int rc = d_str(d, o, "$", "receiptNo", NOT_NULL, &s, &n);
  if (rc) return rc;
  if (n == 0 || n >= sizeof f->receipt_no || !text_ok(s, n, n, 0, 1))
    return refuse(d, "$", "receiptNo must be 1-127 bytes of text on one line");
  snprintf(f->receipt_no, sizeof f->receipt_no, "%s", s);
  return 0;
}

static int dec_case(struct dec *d, const json_t *o, struct yj_inbound_fields *f) {
  static const char *const keys[] = {"applyNo",        "matterCode", "matterName", "acceptAreaCode",
                                     "handleAreaCode", "acceptTime", "applicant",  "agent",
                                     "attachments",    "formData",   "delivery",   "remark"};
  static const char *const dkeys[] = {"mode", "receiver", "mobile", "address"};
  const char *code = NULL, *name = NULL, *accept_area = NULL, *handle_area = NULL, *remark = NULL, *receiver = NULL, *mobile = NULL, *address = NULL;
  size_t name_len, remark_len, recv_len, addr_len;
  int64_t accept_ms = 0;
  int rc;
  if ((rc = exact_keys(d, o, "$", keys, COUNT(keys))) || (rc = dec_apply_no(d, o, f)) ||
      (rc = d_str(d, o, "$", "matterCode", NOT_NULL, &code, NULL)) ||
      (rc = d_str(d, o, "$", "matterName", NOT_NULL, &name, &name_len)) ||
      (rc = d_str(d, o, "$", "acceptAreaCode", NOT_NULL, &accept_area, NULL)) ||
      (rc = d_str(d, o, "$", "handleAreaCode", NOT_NULL, &handle_area, NULL)) ||
      (rc = d_time(d, o, "$", "acceptTime", &accept_ms)) ||
      (rc = d_str(d, o, "$", "remark", NULLABLE, &remark, &remark_len)))
    return rc;
  size_t cl = strlen(code);
  if (cl == 0 || cl > 64 || !all_in(code, cl, ALNUM))
    return refuse(d, "$", "matterCode must be 1-64 of 0-9 A-Z a-z");
  if (!text_ok(name, name_len, 200, 0, 1))
    return refuse(d, "$", "matterName must be 1-200 characters on one line");
  if (!division_ok(accept_area)) return refuse(d, "$", "acceptAreaCode is not a division code");
  if (!division_ok(handle_area)) return refuse(d, "$", "handleAreaCode is not a division code");
  if (remark && !text_ok(remark, remark_len, 2000, 1, 0))
    return refuse(d, "$", "remark must be at most 2000 characters without control characters");
  const json_t *form = json_object_get(o, "formData");
  if (!json_is_object(form)) return refuse(d, "$", "formData must be an object");
  const json_t *dl = json_object_get(o, "delivery");
  if ((rc = exact_keys(d, dl, "$.delivery", dkeys, COUNT(dkeys))) ||
      (rc = d_str(d, dl, "$.delivery", "receiver", NULLABLE, &receiver, &recv_len)) ||
      (rc = d_str(d, dl, "$.delivery", "mobile", NULLABLE, &mobile, NULL)) ||
      (rc = d_str(d, dl, "$.delivery", "address", NULLABLE, &address, &addr_len)))
    return rc;
  const json_t *mode = json_object_get(dl, "mode");
  json_int_t mv = json_is_integer(mode) ? json_integer_value(mode) : 0;
  if (mv < 1 || mv > 3) return refuse(d, "$.delivery", "mode must be the number 1, 2 or 3");
  const char *method = delivery_modes[mv - 1].canonical;
  /* "" means nothing, like null: canonical has no empty phone. */
  if (receiver && receiver[0] == '\0') receiver = NULL;
  if (mobile && mobile[0] == '\0') mobile = NULL;
  if (address && address[0] == '\0') address = NULL;
  if (receiver && !text_ok(receiver, recv_len, 100, 0, 0))
    return refuse(d, "$.delivery", "receiver must be at most 100 characters on one line");
  if (mobile && !phone_ok(mobile))
    return refuse(d, "$.delivery", "mobile is not a mainland mobile or fixed line");
  if (address && !text_ok(address, addr_len, 256, 0, 0))
    return refuse(d, "$.delivery", "address must be at most 256 characters on one line");
  if (mv == 1 && (!receiver || !mobile || !address || !text_ok(receiver, recv_len, 100, 0, 1) ||
                  !text_ok(address, addr_len, 256, 0, 1)))
    return refuse(d, "$.delivery", "mode 1 (mail) needs receiver, mobile and address");

  struct yj_buf *b = d->out;
  yj_json_open(b, '{');
  yj_json_key(b, "schema");
  yj_json_str(b, "tongban.case/v1");
  yj_json_key(b, "case_id");
  yj_json_str(b, f->case_id);
  yj_json_key(b, "item");
  yj_json_open(b, '{');
  yj_json_key(b, "code");
  yj_json_str(b, code);
  yj_json_key(b, "name");
  yj_json_str(b, name);
  yj_json_close(b, '}');
  yj_json_key(b, "origin_region");
  yj_json_str(b, accept_area);
  yj_json_key(b, "target_region");
  yj_json_str(b, handle_area);
  yj_json_key(b, "applicant");
  if ((rc = dec_party(d, json_object_get(o, "applicant"), "$.applicant"))) return rc;
  yj_json_key(b, "agent");
  const json_t *agent = json_object_get(o, "agent");
  if (json_is_null(agent))
    yj_json_null(b);
  else if ((rc = dec_party(d, agent, "$.agent")))
    return rc;
  yj_json_key(b, "materials");
  if ((rc = dec_attachments(d, json_object_get(o, "attachments"), "$.attachments"))) return rc;
  yj_json_key(b, "form");
  yj_json_value(b, form);
  yj_json_key(b, "accepted_at");
  put_time(d, accept_ms);
  yj_json_key(b, "delivery");
  yj_json_open(b, '{');
  yj_json_key(b, "method");
  yj_json_str(b, method);
  if (receiver) {
    yj_json_key(b, "recipient");
    yj_json_str(b, receiver);
  }
  if (mobile) {
    yj_json_key(b, "phone");
    yj_json_str(b, mobile);
  }
  if (address) {
    yj_json_key(b, "address");
    yj_json_str(b, address);
  }
  yj_json_close(b, '}');
  if (remark) {
    yj_json_key(b, "remarks");
    yj_json_str(b, remark);
  }
  yj_json_close(b, '}');
  return 0;
}

static int dec_withdraw(struct dec *d, const json_t *o, struct yj_inbound_fields *f) {
  static const char *const keys[] = {"applyNo", "receiptNo", "reason"};
  const char *reason = NULL;
  size_t len;
  int rc;
  if ((rc = exact_keys(d, o, "$", keys, COUNT(keys))) || (rc = dec_apply_no(d, o, f)) ||
      (rc = dec_receipt_no(d, o, f)) || (rc = d_str(d, o, "$", "reason", NULLABLE, &reason, &len)))
    return rc;
  if (reason && !text_ok(reason, len, 2000, 1, 0))
    return refuse(d, "$", "reason must be at most 2000 characters without control characters");
  struct yj_buf *b = d->out;
  yj_json_open(b, '{');
  yj_json_key(b, "case_id");
  yj_json_str(b, f->case_id);
  yj_json_key(b, "receipt_no");
  yj_json_str(b, f->receipt_no);
  yj_json_key(b, "reason");
  yj_json_str(b, reason);
  yj_json_close(b, '}');
  return 0;
}

static int dec_supplement(struct dec *d, const json_t *o, struct yj_inbound_fields *f) {
  static const char *const keys[] = {"applyNo", "receiptNo", "attachments"};
  int rc;
  if ((rc = exact_keys(d, o, "$", keys, COUNT(keys))) || (rc = dec_apply_no(d, o, f)) ||
      (rc = dec_receipt_no(d, o, f)))
    return rc;
  struct yj_buf *b = d->out;
  yj_json_open(b, '{');
  yj_json_key(b, "case_id");
  yj_json_str(b, f->case_id);
  yj_json_key(b, "receipt_no");
  yj_json_str(b, f->receipt_no);
  yj_json_key(b, "materials");
  if ((rc = dec_attachments(d, json_object_get(o, "attachments"), "$.attachments"))) return rc;
  yj_json_close(b, '}');
  return 0;
}

static int dec_status(struct dec *d, const json_t *o, struct yj_inbound_fields *f) {
  static const char *const keys[] = {"applyNo",        "receiptNo", "status",    "opinion",
                                     "supplementList", "expressNo", "licenseNo", "time"};
  const char *status = NULL, *opinion = NULL, *express = NULL, *license = NULL;
  size_t op_len, ex_len, li_len;
  int64_t at_ms = 0;
  int rc;
  if ((rc = exact_keys(d, o, "$", keys, COUNT(keys))) || (rc = dec_apply_no(d, o, f)) ||
      (rc = dec_receipt_no(d, o, f)) ||
      (rc = d_str(d, o, "$", "status", NOT_NULL, &status, NULL)) ||
      (rc = d_str(d, o, "$", "opinion", NULLABLE, &opinion, &op_len)) ||
      (rc = d_str(d, o, "$", "expressNo", NULLABLE, &express, &ex_len)) ||
      (rc = d_str(d, o, "$", "licenseNo", NULLABLE, &license, &li_len)) ||
      (rc = d_time(d, o, "$", "time", &at_ms)))
    return rc;
  const char *canonical = to_canonical(statuses, COUNT(statuses), status);
  if (canonical == NULL) return refuse(d, "$", "status is not in the document's table");
  if (opinion && !text_ok(opinion, op_len, 2000, 1, 0))
    return refuse(d, "$", "opinion must be at most 2000 characters without control characters");
  if (express && !text_ok(express, ex_len, 128, 0, 0))
    return refuse(d, "$", "expressNo must be at most 128 characters on one line");
  if (license && !text_ok(license, li_len, 128, 0, 0))
    return refuse(d, "$", "licenseNo must be at most 128 characters on one line");
  const json_t *list = json_object_get(o, "supplementList");
  if (!json_is_null(list) && !json_is_array(list))
    return refuse(d, "$", "supplementList must be an array or null");
  for (size_t i = 0; i < json_array_size(list); i++) {
    static const char *const skeys[] = {"materialName"};
    char p[64];
    const char *mn;
    size_t mn_len;
    snprintf(p, sizeof p, "$.supplementList[%zu]", i);
    const json_t *e = json_array_get(list, i);
    if ((rc = exact_keys(d, e, p, skeys, 1)) ||
        (rc = d_str(d, e, p, "materialName", NOT_NULL, &mn, &mn_len)))
      return rc;
    if (!text_ok(mn, mn_len, 200, 0, 1))
      return refuse(d, p, "materialName must be 1-200 characters on one line");
  }
  struct yj_buf *b = d->out;
  yj_json_open(b, '{');
  yj_json_key(b, "case_id");
  yj_json_str(b, f->case_id);
  yj_json_key(b, "receipt_no");
  yj_json_str(b, f->receipt_no);
  yj_json_key(b, "status");
  yj_json_str(b, canonical);
  yj_json_key(b, "opinion");
  yj_json_str(b, opinion);
  yj_json_key(b, "supplement");
  yj_json_open(b, '[');
  for (size_t i = 0; i < json_array_size(list); i++) {
    yj_json_elem(b);
    yj_json_value(b, json_object_get(json_array_get(list, i), "materialName"));
  }
  yj_json_close(b, ']');
  yj_json_key(b, "tracking_no");
  yj_json_str(b, express);
  yj_json_key(b, "licence_no");
  yj_json_str(b, license);
  yj_json_key(b, "at");
  put_time(d, at_ms);
  yj_json_close(b, '}');
  return 0;
}

int yj_canonical_from_biz(const struct yj_state *st, enum tb_msg_type type, const json_t *biz,
                          struct yj_buf *out, struct yj_inbound_fields *fields, char *why,
                          size_t why_size) {
  struct dec d = {st, out, why, why_size, 0};
  memset(fields, 0, sizeof *fields);
  int rc;
  if (!json_is_object(biz)) return refuse(&d, "$", "must be an object");
  switch (type) {
  case TB_MSG_CASE_SUBMIT: rc = dec_case(&d, biz, fields); break;
  case TB_MSG_CASE_WITHDRAW: rc = dec_withdraw(&d, biz, fields); break;
  case TB_MSG_CASE_SUPPLEMENT: rc = dec_supplement(&d, biz, fields); break;
  case TB_MSG_STATUS_NOTIFY: rc = dec_status(&d, biz, fields); break;
  default: return refuse(&d, "msgType", "unknown");
  }
  if (d.nomem || (rc == 0 && out->failed)) {
    snprintf(why, why_size, "out of memory");
    return TB_ENOMEM;
  }
  return rc;
}

int yj_is_uuid(const char *s) {
  if (strlen(s) != 36) return 0;
  for (int i = 0; i < 36; i++) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return 0;
    } else if (!all_in(s + i, 1, "0123456789abcdefABCDEF")) {
      return 0;
    }
  }
  return 1;
}
