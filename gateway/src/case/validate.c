/*
 * case/validate.c — the canonical case validator: a walker over one static
 * field table per object. Each table row names a field, its JSON type,
 * whether it is required, its text rules (blank, control characters, length
 * cap) and an optional check function for its format. The walker visits the
 * document's keys in order, reports unknown keys, applies the row's generic
 * rules and then its check, and finally runs the object's cross-field hook.
 * Material content is base64-decoded in fixed-size chunks on the stack and
 * hashed as it goes, so validation never allocates a buffer for it.
 */
#include "case/validate.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tbgw/error.h"

/* ---- limits -------------------------------------------------------------- */

void tb_case_limits_default(struct tb_case_limits *lim) {
  lim->max_materials_bytes = TB_CASE_DEFAULT_MAX_MATERIALS_BYTES;
  lim->max_materials = TB_CASE_DEFAULT_MAX_MATERIALS;
  lim->max_string_chars = TB_CASE_DEFAULT_MAX_STRING_CHARS;
}

/* ---- walker state and violations ------------------------------------------ */

struct walk {
  const struct tb_case_limits *lim;
  struct tb_case_violations *out;
  int64_t today;   /* days since 1970-01-01, China Standard Time */
  int err;         /* first internal failure, 0 if none */
  size_t plen;     /* strlen(path) */
  char path[sizeof(((struct tb_case_violation *)0)->path)];
  EVP_MD *sm3;     /* fetched on the first material with content */
  EVP_MD_CTX *md;
  struct {         /* what content_base64 of the current material decoded to */
    int decoded;   /* 1 if content was present and valid base64 */
    size_t len;
    unsigned char digest[32];
  } content;
};

static void violate(struct walk *w, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void violate(struct walk *w, const char *code, const char *fmt, ...) {
  struct tb_case_violations *out = w->out;
  if (out->count == TB_CASE_MAX_VIOLATIONS) {
    out->dropped++;
    return;
  }
  struct tb_case_violation *v = &out->items[out->count++];
  memcpy(v->path, w->path, w->plen + 1);
  snprintf(v->code, sizeof v->code, "%s", code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->message, sizeof v->message, fmt, ap);
  va_end(ap);
}

/* Appends s (n bytes) to the path, cutting at a UTF-8 boundary if it does
 * not fit. Returns the previous length for path_pop(). */
static size_t path_append(struct walk *w, const char *s, size_t n) {
  size_t old = w->plen, room = sizeof w->path - 1 - old;
  if (n > room) {
    n = room;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  }
  memcpy(w->path + old, s, n);
  w->plen = old + n;
  w->path[w->plen] = '\0';
  return old;
}

static size_t path_push_key(struct walk *w, const char *key) {
  size_t old = w->plen;
  if (old > 0) path_append(w, ".", 1);
  path_append(w, key, strlen(key));
  return old;
}

static size_t path_push_index(struct walk *w, size_t i) {
  char buf[32];
  int n = snprintf(buf, sizeof buf, "[%zu]", i);
  return path_append(w, buf, (size_t)n);
}

static void path_pop(struct walk *w, size_t old) {
  w->plen = old;
  w->path[old] = '\0';
}

/* ---- field tables -------------------------------------------------------- */

enum jtype { J_STRING, J_INTEGER, J_OBJECT, J_ARRAY, J_ANY };

#define F_REQUIRED 0x01u  /* must be present (and not null unless F_NULLABLE) */
#define F_NULLABLE 0x02u  /* null is a meaningful value (agent: none) */
#define F_NONBLANK 0x04u  /* string must contain a non-space character */
#define F_TEXT 0x08u      /* free text: no control characters, length cap */
#define F_MULTILINE 0x10u /* free text that may contain tab, CR and LF */

/* A check gets a value already known to have the row's type, and its parent
 * object (for rules that depend on a sibling). */
typedef void (*check_fn)(struct walk *w, const json_t *v, const json_t *parent);

struct field {
  const char *name;
  unsigned char type;       /* enum jtype */
  unsigned char flags;      /* F_* */
  unsigned short max_chars; /* F_TEXT cap, further capped by lim->max_string_chars;
                             * 0 means lim->max_string_chars alone */
  check_fn check;           /* format rules beyond type and text, may be NULL */
};

struct object_spec {
  const struct field *fields;
  size_t nfields;
  check_fn post; /* cross-field rules, after all keys; may be NULL */
};

static const char *type_name(const struct field *f) {
  static const char *const names[] = {"a string", "an integer", "an object", "an array", "any"};
  if (f->flags & F_NULLABLE) return f->type == J_OBJECT ? "an object or null" : "a value or null";
  return names[f->type];
}

static int has_type(const json_t *v, unsigned char type) {
  switch (type) {
  case J_STRING: return json_is_string(v);
  case J_INTEGER: return json_is_integer(v);
  case J_OBJECT: return json_is_object(v);
  case J_ARRAY: return json_is_array(v);
  default: return 1;
  }
}

/* ---- text rules ---------------------------------------------------------- */

static int is_blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (c == 0xE3 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
        (unsigned char)s[i + 2] == 0x80) { /* U+3000 IDEOGRAPHIC SPACE */
      i += 2;
      continue;
    }
    return 0;
  }
  return 1;
}

/* Applies F_NONBLANK / F_TEXT rules; returns 1 if the string passed. */
static int check_text(struct walk *w, const struct field *f, const json_t *v) {
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  if ((f->flags & F_NONBLANK) && is_blank(s, n)) {
    violate(w, "empty", "must not be empty or only spaces");
    return 0;
  }
  if (!(f->flags & F_TEXT)) return 1;
  size_t chars = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7F) {
      if ((f->flags & F_MULTILINE) && (c == '\t' || c == '\n' || c == '\r')) {
        chars++;
        continue;
      }
      violate(w, "control-char",
              (f->flags & F_MULTILINE)
                  ? "must not contain control characters other than tab, CR and LF "
                    "(partner XML formats cannot carry them)"
                  : "must be a single line without control characters "
                    "(partner XML formats cannot carry them)");
      return 0;
    }
    chars += (c & 0xC0) != 0x80; /* count UTF-8 lead bytes = code points */
  }
  size_t cap = w->lim->max_string_chars;
  if (f->max_chars != 0 && f->max_chars < cap) cap = f->max_chars;
  if (chars > cap) {
    violate(w, "too-long", "must be at most %zu characters, has %zu", cap, chars);
    return 0;
  }
  return 1;
}

/* ---- format checks ------------------------------------------------------- */

static int str_is(const json_t *v, const char *lit) {
  size_t n = strlen(lit);
  return json_is_string(v) && json_string_length(v) == n &&
         memcmp(json_string_value(v), lit, n) == 0;
}

/* Index of v among the NULL-terminated options, or -1. */
static int str_index(const json_t *v, const char *const *options) {
  for (int i = 0; options[i] != NULL; i++)
    if (str_is(v, options[i])) return i;
  return -1;
}

/* 1 if s[0..n) is non-empty and each character is a letter, a digit or in extra. */
static int token_ok(const char *s, size_t n, const char *extra) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) continue;
    if (c != '\0' && strchr(extra, c) != NULL) continue;
    return 0;
  }
  return 1;
}

static void check_schema(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (!str_is(v, TB_CASE_SCHEMA))
    violate(w, "const", "must be exactly \"" TB_CASE_SCHEMA "\" (this gateway speaks version 1)");
}

static void check_case_id(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  size_t n = json_string_length(v);
  if (n > 64)
    violate(w, "too-long", "must be at most 64 characters");
  else if (!token_ok(json_string_value(v), n, "_-"))
    violate(w, "pattern", "must be 1-64 characters of 0-9 A-Z a-z _ -");
}

static void check_item_code(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  size_t n = json_string_length(v);
  if (n > 64)
    violate(w, "too-long", "must be at most 64 characters");
  else if (!token_ok(json_string_value(v), n, ""))
    violate(w, "pattern", "must be 1-64 characters of 0-9 A-Z a-z (the matter's 实施编码)");
}

static void check_division(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  int digits = n == 6;
  for (size_t i = 0; digits && i < n; i++) digits = s[i] >= '0' && s[i] <= '9';
  if (!digits)
    violate(w, "pattern", "must be a 6-digit GB/T 2260 division code");
  else if (!tb_division_code_valid(s, n))
    violate(w, "division", "the first two digits are not a province-level division code");
}

static const char *const kinds[] = {"person", "org", NULL};
static const char *const id_types[] = {"111", "414", "516", "511", "001", NULL};
static const char *const methods[] = {"mail", "pickup", "electronic", NULL};

static void check_kind(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (str_index(v, kinds) < 0) violate(w, "enum", "must be \"person\" or \"org\"");
}

static void check_id_type(struct walk *w, const json_t *v, const json_t *parent) {
  int t = str_index(v, id_types);
  if (t < 0) {
    violate(w, "enum",
            "must be one of \"111\" (resident ID), \"414\" (passport), \"516\" (HK/Macao "
            "permit), \"511\" (Taiwan permit), \"001\" (unified social credit code)");
    return;
  }
  int kind = str_index(json_object_get(parent, "kind"), kinds);
  if (kind == 0 && t == 4)
    violate(w, "id-type-kind",
            "a person's id_type must be \"111\", \"414\", \"516\" or \"511\"; \"001\" is for "
            "kind \"org\"");
  else if (kind == 1 && t != 4)
    violate(w, "id-type-kind", "an organisation's id_type must be \"001\" (unified social "
                               "credit code)");
}

static void check_id_number(struct walk *w, const json_t *v, const json_t *parent) {
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  switch (str_index(json_object_get(parent, "id_type"), id_types)) {
  case 0:
    switch (tb_resident_id_check(s, n, w->today)) {
    case TB_IDCHECK_OK: break;
    case TB_IDCHECK_LOWER_X:
      violate(w, "pattern", "resident ID: the check character X must be upper case");
      break;
    case TB_IDCHECK_DIVISION:
      violate(w, "division",
              "resident ID: the first two digits are not a province-level division code");
      break;
    case TB_IDCHECK_BIRTH_DATE:
      violate(w, "birth-date", "resident ID: digits 7-14 must be a real birth date (YYYYMMDD) "
                               "from 1900-01-01 up to today");
      break;
    case TB_IDCHECK_CHECK_CHAR:
      violate(w, "check-character", "resident ID: the 18th character does not match the ISO "
                                    "7064 MOD 11-2 check of the first 17 digits (mistyped?)");
      break;
    default:
      violate(w, "pattern", "resident ID: must be 17 digits followed by a digit or X");
      break;
    }
    break;
  case 1:
    if (!tb_passport_number_valid(s, n))
      violate(w, "pattern", "passport number: must be 5-20 characters of A-Z and 0-9");
    break;
  case 2:
    if (!tb_hkmo_permit_valid(s, n))
      violate(w, "pattern", "HK/Macao permit number: must be H or M followed by 8 or 10 digits");
    break;
  case 3:
    if (!tb_tw_permit_valid(s, n))
      violate(w, "pattern", "Taiwan permit number: must be 8 or 10 digits");
    break;
  case 4:
    if (tb_uscc_check(s, n) == TB_IDCHECK_CHECK_CHAR)
      violate(w, "check-character", "unified social credit code: the 18th character does not "
                                    "match the GB 32100 check of the first 17 (mistyped?)");
    else if (!tb_uscc_valid(s, n))
      violate(w, "pattern", "unified social credit code: must be 18 characters of 0-9 and "
                            "A-H J-N P-R T U W-Y (no I, O, S, V, Z; upper case)");
    break;
  default:
    break; /* id_type is missing or invalid and reported there */
  }
}

static void check_phone(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (!tb_phone_valid(json_string_value(v), json_string_length(v)))
    violate(w, "pattern", "must be a mainland mobile number (1[3-9] and 9 digits) or a fixed "
                          "line (0, area code, optional '-', 7-8 digits), without spaces or +86");
}

static void check_method(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (str_index(v, methods) < 0)
    violate(w, "enum", "must be \"mail\", \"pickup\" or \"electronic\"");
}

static void check_accepted_at(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (tb_rfc3339_parse(json_string_value(v), json_string_length(v), NULL, NULL) != 0)
    violate(w, "date-time", "must be an RFC 3339 date-time with a real date and an offset, "
                            "e.g. 2024-05-06T10:00:00+08:00");
}

static void check_media_type(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (tb_case_media_extn(json_string_value(v), json_string_length(v)) == NULL)
    violate(w, "enum", "must be one of application/pdf, image/jpeg, image/png, "
                       "application/ofd, application/msword, application/vnd.ms-excel, the "
                       "OOXML word/spreadsheet types, application/zip, text/plain");
}

static void check_size(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (json_integer_value(v) < 0) violate(w, "range", "must be a byte count >= 0");
}

static int is_sm3_hex(const json_t *v) {
  const char *s = json_string_value(v);
  if (json_string_length(v) != 64) return 0;
  for (size_t i = 0; i < 64; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

static void check_sm3(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (!is_sm3_hex(v))
    violate(w, "pattern", "must be the SM3 digest of the material as 64 lower-case hex digits");
}

/* ---- material content ---------------------------------------------------- */

static const signed char b64_value[256] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
    -1,  0,  1,  2,  3,  4,  5,  6,  7,  8,  9, 10, 11, 12, 13, 14,
    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
    -1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

static int crypto_fail(struct walk *w, int code) {
  ERR_clear_error(); /* the code says enough; do not leave the queue to a later caller */
  if (w->err == 0) w->err = code;
  return code;
}

/*
 * Decodes strict RFC 4648 base64 (standard alphabet, '=' padding required,
 * no whitespace, unused bits of the last group zero) and hashes the bytes
 * with SM3 as it goes. Returns 0 with w->content filled, 1 if s is not such
 * base64, or a negative TB_E* code if SM3 is unavailable.
 */
static int decode_and_hash(struct walk *w, const char *s, size_t n) {
  if (n % 4 != 0) return 1;
  if (w->md == NULL) {
    if ((w->sm3 = EVP_MD_fetch(NULL, "SM3", NULL)) == NULL) return crypto_fail(w, TB_ECRYPTO);
    if ((w->md = EVP_MD_CTX_new()) == NULL) return crypto_fail(w, TB_ENOMEM);
  }
  if (!EVP_DigestInit_ex2(w->md, w->sm3, NULL)) return crypto_fail(w, TB_ECRYPTO);

  unsigned char buf[3 * 1024];
  size_t used = 0, total = 0;
  for (size_t i = 0; i < n; i += 4) {
    const unsigned char *q = (const unsigned char *)s + i;
    int a = b64_value[q[0]], b = b64_value[q[1]], c = b64_value[q[2]], d = b64_value[q[3]];
    int last = i + 4 == n;
    if (a < 0 || b < 0) return 1;
    unsigned v = (unsigned)a << 18 | (unsigned)b << 12;
    if (c < 0 || d < 0) { /* only a padded final group may have them */
      if (!last) return 1;
      if (q[2] == '=' && q[3] == '=') {
        if (b & 0x0F) return 1;
        buf[used++] = (unsigned char)(v >> 16);
      } else if (c >= 0 && q[3] == '=') {
        if (c & 0x03) return 1;
        v |= (unsigned)c << 6;
        buf[used++] = (unsigned char)(v >> 16);
        buf[used++] = (unsigned char)(v >> 8);
      } else {
        return 1;
      }
    } else {
      v |= (unsigned)c << 6 | (unsigned)d;
      buf[used++] = (unsigned char)(v >> 16);
      buf[used++] = (unsigned char)(v >> 8);
      buf[used++] = (unsigned char)v;
    }
    if (used > sizeof buf - 3 || last) {
      if (!EVP_DigestUpdate(w->md, buf, used)) return crypto_fail(w, TB_ECRYPTO);
      total += used;
      used = 0;
    }
  }
  unsigned int mdlen = 0;
  if (!EVP_DigestFinal_ex(w->md, w->content.digest, &mdlen) || mdlen != 32)
    return crypto_fail(w, TB_ECRYPTO);
  w->content.decoded = 1;
  w->content.len = total;
  return 0;
}

static void check_content(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  if (decode_and_hash(w, json_string_value(v), json_string_length(v)) == 1)
    violate(w, "base64", "must be standard base64 (RFC 4648: A-Z a-z 0-9 + /, '=' padding to "
                         "a multiple of 4, no line breaks or spaces)");
}

/* ---- the walker ---------------------------------------------------------- */

static void walk_object(struct walk *w, const json_t *obj, const struct object_spec *spec);

static void walk_value(struct walk *w, const struct field *f, const json_t *v, const json_t *parent) {
  if (json_is_null(v)) {
    if ((f->flags & (F_REQUIRED | F_NULLABLE)) == F_REQUIRED)
      violate(w, "required", "is required and must not be null");
    return; /* null in an optional field means absent */
  }
  if (!has_type(v, f->type)) {
    violate(w, "type", "must be %s%s", type_name(f),
            f->type == J_INTEGER && json_is_real(v) ? " (no fraction or exponent)" : "");
    return;
  }
  if (f->type == J_STRING && !check_text(w, f, v)) return;
  if (f->check != NULL) f->check(w, v, parent);
}

static void walk_object(struct walk *w, const json_t *obj, const struct object_spec *spec) {
  const char *key;
  const json_t *v;
  /* json_object_foreach wants a non-const object; it does not modify it. */
  json_t *o = (json_t *)(uintptr_t)obj;
  json_object_foreach(o, key, v) {
    const struct field *f = NULL;
    for (size_t i = 0; i < spec->nfields && f == NULL; i++)
      if (strcmp(spec->fields[i].name, key) == 0) f = &spec->fields[i];
    size_t mark = path_push_key(w, key);
    if (f == NULL)
      violate(w, "unknown-field", "is not a field of this object in " TB_CASE_SCHEMA
                                  " (misspelt? unknown fields are rejected, not ignored)");
    else
      walk_value(w, f, v, obj);
    path_pop(w, mark);
  }
  for (size_t i = 0; i < spec->nfields; i++) {
    const struct field *f = &spec->fields[i];
    if ((f->flags & F_REQUIRED) && json_object_get(obj, f->name) == NULL) {
      size_t mark = path_push_key(w, f->name);
      violate(w, "required", "is required");
      path_pop(w, mark);
    }
  }
  if (spec->post != NULL) spec->post(w, obj, NULL);
}

#define SPEC(fields, post) {fields, sizeof fields / sizeof fields[0], post}

static const struct field item_fields[] = {
    {"code", J_STRING, F_REQUIRED | F_NONBLANK, 0, check_item_code},
    {"name", J_STRING, F_REQUIRED | F_NONBLANK | F_TEXT, 200, NULL},
};
static const struct object_spec item_spec = SPEC(item_fields, NULL);

static const struct field party_fields[] = {
    {"kind", J_STRING, F_REQUIRED, 0, check_kind},
    {"name", J_STRING, F_REQUIRED | F_NONBLANK | F_TEXT, 200, NULL},
    {"id_type", J_STRING, F_REQUIRED, 0, check_id_type},
    {"id_number", J_STRING, F_REQUIRED | F_NONBLANK, 0, check_id_number},
    {"phone", J_STRING, F_REQUIRED, 0, check_phone},
    {"address", J_STRING, F_TEXT, 256, NULL},
};
static const struct object_spec party_spec = SPEC(party_fields, NULL);

/* A mail delivery cannot be shipped without whom, where and a phone for the
 * courier; those fields are optional for pickup and electronic delivery. */
static void delivery_post(struct walk *w, const json_t *obj, const json_t *unused) {
  static const char *const needed[] = {"recipient", "phone", "address"};
  (void)unused;
  if (!str_is(json_object_get(obj, "method"), "mail")) return;
  for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
    const json_t *v = json_object_get(obj, needed[i]);
    size_t mark = path_push_key(w, needed[i]);
    if (v == NULL || json_is_null(v))
      violate(w, "required", "is required when method is \"mail\"");
    else if (json_is_string(v) && is_blank(json_string_value(v), json_string_length(v)))
      violate(w, "empty", "must not be empty when method is \"mail\"");
    path_pop(w, mark);
  }
}

static const struct field delivery_fields[] = {
    {"method", J_STRING, F_REQUIRED, 0, check_method},
    {"recipient", J_STRING, F_TEXT, 100, NULL},
    {"phone", J_STRING, 0, 0, check_phone},
    {"address", J_STRING, F_TEXT, 256, NULL},
};
static const struct object_spec delivery_spec = SPEC(delivery_fields, delivery_post);

/* Size and digest against the decoded content, reported at size and sm3. */
static void material_post(struct walk *w, const json_t *obj, const json_t *unused) {
  (void)unused;
  if (!w->content.decoded) return;
  const json_t *size = json_object_get(obj, "size");
  if (json_is_integer(size) && json_integer_value(size) >= 0 &&
      (uint64_t)json_integer_value(size) != (uint64_t)w->content.len) {
    size_t mark = path_push_key(w, "size");
    violate(w, "size-mismatch", "is %lld but content_base64 decodes to %zu bytes",
            (long long)json_integer_value(size), w->content.len);
    path_pop(w, mark);
  }
  const json_t *sm3 = json_object_get(obj, "sm3");
  if (json_is_string(sm3) && is_sm3_hex(sm3)) {
    static const char hex[] = "0123456789abcdef";
    char got[64];
    for (size_t i = 0; i < 32; i++) {
      got[2 * i] = hex[w->content.digest[i] >> 4];
      got[2 * i + 1] = hex[w->content.digest[i] & 0x0F];
    }
    if (memcmp(got, json_string_value(sm3), 64) != 0) {
      size_t mark = path_push_key(w, "sm3");
      violate(w, "digest-mismatch", "does not match the SM3 digest of the decoded "
                                    "content_base64 (content corrupted, or digest of another file)");
      path_pop(w, mark);
    }
  }
}

static const struct field material_fields[] = {
    {"name", J_STRING, F_REQUIRED | F_NONBLANK | F_TEXT, 200, NULL},
    {"media_type", J_STRING, F_REQUIRED, 0, check_media_type},
    {"size", J_INTEGER, F_REQUIRED, 0, check_size},
    {"sm3", J_STRING, F_REQUIRED, 0, check_sm3},
    {"content_base64", J_STRING, 0, 0, check_content},
};
static const struct object_spec material_spec = SPEC(material_fields, material_post);

static void check_item(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  walk_object(w, v, &item_spec);
}

static void check_party(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  walk_object(w, v, &party_spec);
}

static void check_delivery(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  walk_object(w, v, &delivery_spec);
}

static void check_materials(struct walk *w, const json_t *v, const json_t *parent) {
  (void)parent;
  size_t n = json_array_size(v);
  if (n > w->lim->max_materials)
    violate(w, "too-many", "has %zu materials, at most %zu are allowed per case", n,
            w->lim->max_materials);
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    const json_t *size = json_object_get(json_array_get(v, i), "size");
    if (!json_is_integer(size) || json_integer_value(size) < 0) continue;
    uint64_t s = (uint64_t)json_integer_value(size);
    total = s > SIZE_MAX - total ? SIZE_MAX : total + (size_t)s; /* saturate */
  }
  if (total > w->lim->max_materials_bytes)
    violate(w, "too-large", "materials total more than %zu bytes; at most %zu are allowed per "
                            "case (send the rest with a supplement)",
            total == SIZE_MAX ? w->lim->max_materials_bytes : total, w->lim->max_materials_bytes);
  for (size_t i = 0; i < n; i++) {
    const json_t *m = json_array_get(v, i);
    size_t mark = path_push_index(w, i);
    if (!json_is_object(m)) {
      violate(w, "type", "must be an object");
    } else {
      w->content.decoded = 0;
      walk_object(w, m, &material_spec);
    }
    path_pop(w, mark);
  }
}

static const struct field case_fields[] = {
    {"schema", J_STRING, F_REQUIRED, 0, check_schema},
    {"case_id", J_STRING, F_REQUIRED | F_NONBLANK, 0, check_case_id},
    {"item", J_OBJECT, F_REQUIRED, 0, check_item},
    {"origin_region", J_STRING, F_REQUIRED, 0, check_division},
    {"target_region", J_STRING, F_REQUIRED, 0, check_division},
    {"applicant", J_OBJECT, F_REQUIRED, 0, check_party},
    {"agent", J_OBJECT, F_REQUIRED | F_NULLABLE, 0, check_party},
    {"materials", J_ARRAY, F_REQUIRED, 0, check_materials},
    {"form", J_OBJECT, F_REQUIRED, 0, NULL}, /* free-form by design */
    {"accepted_at", J_STRING, F_REQUIRED, 0, check_accepted_at},
    {"delivery", J_OBJECT, F_REQUIRED, 0, check_delivery},
    {"remarks", J_STRING, F_TEXT | F_MULTILINE, 0, NULL},
};
static const struct object_spec case_spec = SPEC(case_fields, NULL);

/* ---- entry points -------------------------------------------------------- */

int tb_case_validate_at(const json_t *doc, const struct tb_case_limits *lim, int64_t now_unix_s,
                        struct tb_case_violations *out) {
  if (out == NULL) return TB_EINVAL;
  out->count = 0;
  out->dropped = 0;
  if (doc == NULL) return TB_EINVAL;

  struct tb_case_limits defaults;
  if (lim == NULL) {
    tb_case_limits_default(&defaults);
    lim = &defaults;
  }
  struct walk w;
  memset(&w, 0, sizeof w);
  w.lim = lim;
  w.out = out;
  w.today = tb_cst_today(now_unix_s);

  if (!json_is_object(doc))
    violate(&w, "type", "the case must be a JSON object");
  else
    walk_object(&w, doc, &case_spec);

  EVP_MD_CTX_free(w.md);
  EVP_MD_free(w.sm3);
  if (w.err != 0) return w.err;
  return out->count + out->dropped > 0 ? TB_EVALIDATE : 0;
}

int tb_case_validate(const json_t *doc, const struct tb_case_limits *lim,
                     struct tb_case_violations *out) {
  return tb_case_validate_at(doc, lim, (int64_t)time(NULL), out);
}

/* ---- supplement ----------------------------------------------------------- */

static void check_supplement_materials(struct walk *w, const json_t *v, const json_t *parent) {
  if (json_array_size(v) == 0) {
    violate(w, "empty", "must list at least one material");
    return;
  }
  check_materials(w, v, parent);
}

static const struct field supplement_fields[] = {
    {"materials", J_ARRAY, F_REQUIRED, 0, check_supplement_materials},
};
static const struct object_spec supplement_spec = SPEC(supplement_fields, NULL);

int tb_case_validate_supplement(const json_t *doc, const struct tb_case_limits *lim,
                                struct tb_case_violations *out) {
  if (out == NULL) return TB_EINVAL;
  out->count = 0;
  out->dropped = 0;
  if (doc == NULL) return TB_EINVAL;
  struct tb_case_limits defaults;
  if (lim == NULL) {
    tb_case_limits_default(&defaults);
    lim = &defaults;
  }
  struct walk w;
  memset(&w, 0, sizeof w);
  w.lim = lim;
  w.out = out;
  w.today = tb_cst_today((int64_t)time(NULL));
  if (!json_is_object(doc))
    violate(&w, "type", "the body must be a JSON object {\"materials\": [...]}");
  else
    walk_object(&w, doc, &supplement_spec);
  EVP_MD_CTX_free(w.md);
  EVP_MD_free(w.sm3);
  if (w.err != 0) return w.err;
  return out->count + out->dropped > 0 ? TB_EVALIDATE : 0;
}
