/*
 * audit/record.c — the record line itself: building it (escaping, hashing)
 * and taking it apart again by position, plus an allocation-free JSON syntax
 * check so the verifier reads gigabytes without touching the heap per line.
 */
#include <stdlib.h>
#include <string.h>

#include "audit/audit_internal.h"
#include "core/timefmt.h"

/* ---- buffer ------------------------------------------------------------- */

int tb__audit_buf_add(struct tb__audit_buf *b, const void *data, size_t len) {
  if (len > SIZE_MAX / 2 - b->len) return TB_ENOMEM;
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + len + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) return TB_ENOMEM;
    b->p = p;
    b->cap = cap;
  }
  if (len) memcpy(b->p + b->len, data, len);
  b->len += len;
  b->p[b->len] = '\0';
  return 0;
}

int tb__audit_buf_adds(struct tb__audit_buf *b, const char *s) {
  return tb__audit_buf_add(b, s, strlen(s));
}

void tb__audit_buf_free(struct tb__audit_buf *b) {
  free(b->p);
  b->p = NULL;
  b->len = b->cap = 0;
}

/* Length of the well-formed UTF-8 sequence at p (1..4), 0 if ill-formed
 * (overlong forms, surrogates and code points above U+10FFFF included). */
static size_t utf8_len(const unsigned char *p, const unsigned char *e) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  size_t n;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else
    return 0;
  if ((size_t)(e - p) < n) return 0;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return n;
}

int tb__audit_buf_add_jstr(struct tb__audit_buf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *e = p + strlen(s);
  int rc = tb__audit_buf_add(b, "\"", 1);
  while (rc == 0 && p < e) {
    const unsigned char *run = p;
    while (p < e && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
    if (p > run) rc = tb__audit_buf_add(b, run, (size_t)(p - run));
    if (rc != 0 || p == e) break;
    if (*p >= 0x80) {
      size_t n = utf8_len(p, e);
      if (n == 0) return TB_EINVAL;
      rc = tb__audit_buf_add(b, p, n);
      p += n;
    } else if (*p == '"' || *p == '\\') {
      char esc[2] = {'\\', (char)*p++};
      rc = tb__audit_buf_add(b, esc, 2);
    } else { /* control character: never a raw newline in a record */
      char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
      p++;
      rc = tb__audit_buf_add(b, esc, 6);
    }
  }
  return rc != 0 ? rc : tb__audit_buf_add(b, "\"", 1);
}

/* ---- JSON syntax check ---------------------------------------------------- */

struct jv {
  const unsigned char *p, *e;
  int depth;
};

static void ws(struct jv *j) {
  while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static int is_hex(unsigned c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int jstring(struct jv *j) {
  if (j->p >= j->e || *j->p != '"') return 0;
  j->p++;
  while (j->p < j->e) {
    unsigned c = *j->p;
    if (c == '"') {
      j->p++;
      return 1;
    }
    if (c < 0x20) return 0;
    if (c == '\\') {
      if (j->e - j->p < 2) return 0;
      unsigned x = j->p[1];
      if (x == 'u') {
        if (j->e - j->p < 6) return 0;
        for (int i = 2; i < 6; i++)
          if (!is_hex(j->p[i])) return 0;
        j->p += 6;
      } else if (strchr("\"\\/bfnrt", (int)x) != NULL && x != 0) {
        j->p += 2;
      } else
        return 0;
    } else if (c >= 0x80) {
      size_t n = utf8_len(j->p, j->e);
      if (n == 0) return 0;
      j->p += n;
    } else
      j->p++;
  }
  return 0;
}

static int digits(struct jv *j) {
  const unsigned char *s = j->p;
  while (j->p < j->e && *j->p >= '0' && *j->p <= '9') j->p++;
  return j->p > s;
}

static int jnumber(struct jv *j) {
  if (j->p < j->e && *j->p == '-') j->p++;
  if (j->p < j->e && *j->p == '0') j->p++;
  else if (!digits(j)) return 0;
  if (j->p < j->e && *j->p == '.') {
    j->p++;
    if (!digits(j)) return 0;
  }
  if (j->p < j->e && (*j->p == 'e' || *j->p == 'E')) {
    j->p++;
    if (j->p < j->e && (*j->p == '+' || *j->p == '-')) j->p++;
    if (!digits(j)) return 0;
  }
  return 1;
}

static int jlit(struct jv *j, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(j->e - j->p) < n || memcmp(j->p, lit, n) != 0) return 0;
  j->p += n;
  return 1;
}

static int jvalue(struct jv *j) {
  ws(j);
  if (j->p >= j->e) return 0;
  switch (*j->p) {
  case '"': return jstring(j);
  case 't': return jlit(j, "true");
  case 'f': return jlit(j, "false");
  case 'n': return jlit(j, "null");
  case '{':
  case '[': {
    unsigned char close = *j->p == '{' ? '}' : ']';
    int obj = close == '}';
    if (++j->depth > 32) return 0;
    j->p++;
    ws(j);
    if (j->p < j->e && *j->p == close) {
      j->p++;
      j->depth--;
      return 1;
    }
    for (;;) {
      if (obj) {
        ws(j);
        if (!jstring(j)) return 0;
        ws(j);
        if (j->p >= j->e || *j->p != ':') return 0;
        j->p++;
      }
      if (!jvalue(j)) return 0;
      ws(j);
      if (j->p >= j->e) return 0;
      if (*j->p == ',') {
        j->p++;
        continue;
      }
      if (*j->p != close) return 0;
      j->p++;
      j->depth--;
      return 1;
    }
  }
  default: return jnumber(j);
  }
}

int tb__audit_json_valid(const char *p, size_t len, int want_object) {
  struct jv j = {(const unsigned char *)p, (const unsigned char *)p + len, 0};
  ws(&j);
  if (want_object && (j.p >= j.e || *j.p != '{')) return 0;
  if (!jvalue(&j)) return 0;
  ws(&j);
  return j.p == j.e;
}

int tb__audit_event_name_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.')) return 0;
  }
  return n > 0 && n <= 64;
}

/* ---- parse ---------------------------------------------------------------- */

static int all_hex(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
  return 1;
}

int tb__audit_rec_parse(const char *line, size_t len, struct tb__audit_rec *r, char *why) {
  static const char pre[] = "{\"seq\":";
  static const char ts[] = ",\"ts\":\"";
  static const char ev[] = ",\"event\":\"";
  static const char prev[] = ",\"prev\":\"";
  static const char hash[] = "\",\"hash\":\"";
  /* {"seq":1,"ts":"x","event":"e","prev":"<64>","hash":"<64>"} at least */
  const size_t tail = (sizeof prev - 1) + 64 + (sizeof hash - 1) + 64 + 2;
  memset(r, 0, sizeof *r);
  r->seq = -1;
  if (len < sizeof pre - 1 || memcmp(line, pre, sizeof pre - 1) != 0)
    return tb_errf(why, TB_EPARSE, "not an audit record (does not start with {\"seq\":)");
  const char *p = line + sizeof pre - 1, *e = line + len;
  int64_t seq = 0;
  const char *d = p;
  while (p < e && *p >= '0' && *p <= '9') {
    if (seq > (INT64_MAX - 9) / 10) return tb_errf(why, TB_EPARSE, "seq out of range");
    seq = seq * 10 + (*p++ - '0');
  }
  if (p == d || (p - d > 1 && *d == '0') || seq < 1)
    return tb_errf(why, TB_EPARSE, "seq is not a positive integer");
  r->seq = seq;
  if ((size_t)(e - p) < sizeof ts - 1 || memcmp(p, ts, sizeof ts - 1) != 0)
    return tb_errf(why, TB_EPARSE, "\"ts\" does not follow \"seq\"");
  p += sizeof ts - 1;
  const char *q = memchr(p, '"', (size_t)(e - p));
  if (q == NULL) return tb_errf(why, TB_EPARSE, "\"ts\" is not terminated");
  p = q;
  if ((size_t)(e - p) < sizeof ev || *p != '"' || memcmp(p + 1, ev, sizeof ev - 1) != 0)
    return tb_errf(why, TB_EPARSE, "\"event\" does not follow \"ts\"");
  p += sizeof ev; /* past `","event":"` */
  q = memchr(p, '"', (size_t)(e - p));
  if (q == NULL || q == p) return tb_errf(why, TB_EPARSE, "\"event\" is empty or unterminated");
  r->event = p;
  r->event_len = (size_t)(q - p);
  if (len < tail + (size_t)(q - line) || e[-1] != '}' || e[-2] != '"')
    return tb_errf(why, TB_EPARSE, "the record does not end with \"prev\" and \"hash\"");
  const char *t = e - tail;
  if (memcmp(t, prev, sizeof prev - 1) != 0 || !all_hex(t + sizeof prev - 1, 64) ||
      memcmp(t + sizeof prev - 1 + 64, hash, sizeof hash - 1) != 0 ||
      !all_hex(t + sizeof prev - 1 + 64 + sizeof hash - 1, 64))
    return tb_errf(why, TB_EPARSE, "the record does not end with \"prev\" and \"hash\" (64 hex)");
  r->prev = t + sizeof prev - 1;
  r->hash = r->prev + 64 + sizeof hash - 1;
  r->body_len = len - TB__AUDIT_HASH_SUFFIX_LEN;
  if (!tb__audit_json_valid(line, len, 1))
    return tb_errf(why, TB_EPARSE, "the line is not a JSON object");
  return 0;
}

int tb__audit_rec_hash_ok(const char *line, const struct tb__audit_rec *r,
                          char out[TB_DIGEST_HEX_LEN], char *why) {
  if (tb_crypto_sm3_hex(line, r->body_len, out, why) != 0) return -1;
  return memcmp(out, r->hash, 64) == 0;
}

/* ---- format --------------------------------------------------------------- */

static int field(struct tb__audit_buf *b, const char *key, const char *val) {
  if (val == NULL) return 0;
  int rc = tb__audit_buf_adds(b, ",\"");
  if (rc == 0) rc = tb__audit_buf_adds(b, key);
  if (rc == 0) rc = tb__audit_buf_adds(b, "\":");
  if (rc == 0) rc = tb__audit_buf_add_jstr(b, val);
  return rc;
}

int tb__audit_format(struct tb__audit_buf *b, int64_t seq, const char *prev,
                     const struct tb_audit_event *ev, char hash_out[TB_DIGEST_HEX_LEN],
                     char *err) {
  if (ev == NULL || ev->event == NULL || !tb__audit_event_name_ok(ev->event))
    return tb_errf(err, TB_EINVAL, "audit: event name must be [a-z0-9_.]+ (at most 64)");
  if (ev->detail_json != NULL &&
      (memchr(ev->detail_json, '\n', strlen(ev->detail_json)) != NULL ||
       memchr(ev->detail_json, '\r', strlen(ev->detail_json)) != NULL ||
       !tb__audit_json_valid(ev->detail_json, strlen(ev->detail_json), 1)))
    return tb_errf(err, TB_EINVAL, "audit: %s: detail is not a one-line JSON object", ev->event);
  size_t start = b->len;
  char num[32], ts[TB_TIME_RFC3339_MAX];
  snprintf(num, sizeof num, "%lld", (long long)seq);
  tb_time_format_bj(tb_time_now_ms(), ts);
  int rc = tb__audit_buf_adds(b, "{\"seq\":");
  if (rc == 0) rc = tb__audit_buf_adds(b, num);
  if (rc == 0) rc = field(b, "ts", ts);
  if (rc == 0) rc = field(b, "event", ev->event);
  if (rc == 0) rc = field(b, "actor", ev->actor);
  if (rc == 0) rc = field(b, "case_id", ev->case_id);
  if (rc == 0) rc = field(b, "partner", ev->partner);
  if (rc == 0) rc = field(b, "message_id", ev->message_id);
  if (rc == 0) rc = field(b, "outcome", ev->outcome);
  if (rc == 0 && ev->detail_json != NULL) {
    rc = tb__audit_buf_adds(b, ",\"detail\":");
    if (rc == 0) rc = tb__audit_buf_adds(b, ev->detail_json);
  }
  if (rc == 0) rc = tb__audit_buf_adds(b, ",\"prev\":\"");
  if (rc == 0) rc = tb__audit_buf_add(b, prev, 64);
  if (rc == 0) rc = tb__audit_buf_adds(b, "\"");
  if (rc == 0 && b->len - start + TB__AUDIT_HASH_SUFFIX_LEN + 1 > TB_AUDIT_RECORD_MAX)
    rc = tb_errf(err, TB_ELIMIT, "audit: %s: record longer than %d bytes", ev->event,
                 TB_AUDIT_RECORD_MAX);
  if (rc == 0) rc = tb_crypto_sm3_hex(b->p + start, b->len - start, hash_out, err);
  if (rc == 0) rc = tb__audit_buf_adds(b, ",\"hash\":\"");
  if (rc == 0) rc = tb__audit_buf_add(b, hash_out, 64);
  if (rc == 0) rc = tb__audit_buf_adds(b, "\"}\n");
  if (rc != 0) {
    b->len = start; /* leave the buffer as it was */
    if (b->p) b->p[start] = '\0';
    if (rc == TB_EINVAL) tb_errf(err, rc, "audit: %s: a field is not valid UTF-8", ev->event);
    else if (rc == TB_ENOMEM) tb_errf(err, rc, "audit: out of memory");
  }
  return rc;
}
