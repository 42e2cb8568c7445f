/*
 * core/config.c — reads the JSON configuration file and checks all of it.
 *
 * The file is parsed by jansson (duplicate keys are a parse error), then
 * walked once in document order: every object has a table of the keys it
 * accepts, each with a check that reports its own problems and stores the
 * value. Problems are collected, never returned early, so an operator sees
 * every mistake in one run; each is one line "key.path: what is wrong".
 * Checks that involve two elements (a name or token used twice, a region
 * claimed by two partners) run after the later element's own keys; the body
 * limit against the materials limit, then adapters.dir (required once a
 * partner exists), run after the whole file. Secrets (bearer tokens) are
 * never echoed in a problem. Files named here (keys, TLS material) are only
 * checked as paths; plugin/registry.c loads and checks their contents. Every key and range here is documented in docs/configuration.md:
 * change both together.
 */
#include "core/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"
#include "tbgw/error.h"

#define CONFIG_FILE_MAX ((size_t)4 << 20) /* a config is a few KiB; refuse a stray blob */
#define KEY_PATH_MAX 256                  /* "partners[12].regions[3]" and friends */
#define QUOTE_MAX 128                     /* a quoted value inside a problem line */
#define TOKEN_MIN 16
#define TOKEN_MAX 4096
#define ENDPOINT_MAX 2048
#define NODE_NAME_MAX 256
#define PATH_VALUE_MAX 4096

#define KiB ((long long)1024)
#define MiB (1024 * KiB)
#define GiB (1024 * MiB)

/* The walk's state. Problems accumulate in out (malloc'd, grown as needed);
 * an allocation failure sets oom and the load ends with TB_ENOMEM. */
struct ctx {
  struct tb_config *cfg;
  const char *base_dir;
  char *out;
  size_t len, cap;
  size_t count;
  int oom;
  char key[KEY_PATH_MAX]; /* path of the value being checked */
  size_t klen;
  struct tb_config_token *token;     /* the element of local_api.tokens being walked */
  struct tb_config_partner *partner; /* the element of partners being walked */
  struct tb_config_key *keyent;      /* the element of keys being walked */
  void *base;                        /* where the integer fields of the table being walked go */
  struct tb_http_limits *limits;     /* local_api_limits or partner_api_limits, being walked */
  int materials_bytes_set;           /* cases.max_materials_bytes: see accepted() */
  int body_bytes_set;                /* local_api.limits.max_body_bytes: see accepted() */
};

/* ---- problem text --------------------------------------------------- */

static void out_append(struct ctx *c, const char *s, size_t n) {
  if (c->oom) return;
  if (c->len + n + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 512;
    while (c->len + n + 1 > cap) cap *= 2;
    char *p = realloc(c->out, cap);
    if (p == NULL) {
      c->oom = 1;
      return;
    }
    c->out = p;
    c->cap = cap;
  }
  memcpy(c->out + c->len, s, n);
  c->len += n;
  c->out[c->len] = '\0';
}

__attribute__((format(printf, 2, 3)))
static void problem(struct ctx *c, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  const char *where = c->klen ? c->key : "(top level)";
  out_append(c, where, strlen(where));
  out_append(c, ": ", 2);
  out_append(c, msg, strlen(msg));
  out_append(c, "\n", 1);
  c->count++;
}

/* Writes s as a JSON-style quoted string into buf: quotes and backslashes
 * escaped, control characters as \uXXXX, cut (at a UTF-8 boundary, marked
 * with an ellipsis) when long, so a hostile or mistaken value cannot flood
 * the report. */
static const char *quote(char *buf, size_t size, const char *s) {
  size_t o = 0;
  const size_t limit = size - 12; /* room for one escape, the ellipsis, quote, NUL */
  buf[o++] = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char ch = *p;
    if ((ch & 0xC0) != 0x80 && o >= limit) {
      memcpy(buf + o, "\xE2\x80\xA6", 3); /* … */
      o += 3;
      break;
    }
    if (ch == '"' || ch == '\\') {
      buf[o++] = '\\';
      buf[o++] = (char)ch;
    } else if (ch < 0x20 || ch == 0x7F) {
      o += (size_t)snprintf(buf + o, 7, "\\u%04x", ch);
    } else {
      buf[o++] = (char)ch;
    }
  }
  buf[o++] = '"';
  buf[o] = '\0';
  return buf;
}

/* What a JSON value is, for "expected X, found Y" (with the value when it
 * is a short scalar). */
static void describe(char *buf, size_t size, const json_t *v) {
  char q[QUOTE_MAX];
  switch (json_typeof(v)) {
  case JSON_OBJECT: snprintf(buf, size, "an object"); break;
  case JSON_ARRAY: snprintf(buf, size, "an array"); break;
  case JSON_STRING: snprintf(buf, size, "a string (%s)", quote(q, sizeof q, json_string_value(v))); break;
  case JSON_INTEGER: snprintf(buf, size, "an integer (%lld)", (long long)json_integer_value(v)); break;
  case JSON_REAL: snprintf(buf, size, "a number with a fraction or exponent (%.15g)", json_real_value(v)); break;
  case JSON_TRUE: snprintf(buf, size, "a boolean (true)"); break;
  case JSON_FALSE: snprintf(buf, size, "a boolean (false)"); break;
  case JSON_NULL: snprintf(buf, size, "null"); break;
  }
}

/* The type alone, for values that must not be echoed (secrets). */
static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "an array";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number with a fraction or exponent";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  case JSON_NULL: return "null";
  }
  return "an unknown type";
}

static void expected(struct ctx *c, const char *want, const json_t *v) {
  char found[QUOTE_MAX + 64];
  describe(found, sizeof found, v);
  problem(c, "expected %s, found %s", want, found);
}

/* ---- key path ------------------------------------------------------- */

static void key_set_len(struct ctx *c, size_t n) {
  c->klen = n < sizeof c->key ? n : sizeof c->key - 1;
  c->key[c->klen] = '\0';
}

/* Appends an object key: ".name" for plain keys, ["odd key"] otherwise.
 * Returns the previous length for key_pop(). */
static size_t key_push(struct ctx *c, const char *name) {
  size_t saved = c->klen;
  size_t room = sizeof c->key - c->klen;
  int plain = name[0] != '\0';
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
          *p == '_' || *p == '-'))
      plain = 0;
  int n;
  if (plain) {
    n = snprintf(c->key + c->klen, room, "%s%s", c->klen ? "." : "", name);
  } else {
    char q[QUOTE_MAX];
    n = snprintf(c->key + c->klen, room, "[%s]", quote(q, sizeof q, name));
  }
  key_set_len(c, c->klen + (n > 0 ? (size_t)n : 0));
  return saved;
}

static size_t key_push_index(struct ctx *c, size_t i) {
  size_t saved = c->klen;
  int n = snprintf(c->key + c->klen, sizeof c->key - c->klen, "[%zu]", i);
  key_set_len(c, c->klen + (n > 0 ? (size_t)n : 0));
  return saved;
}

static void key_pop(struct ctx *c, size_t saved) { key_set_len(c, saved); }

/* ---- small helpers -------------------------------------------------- */

static char *dup_str(struct ctx *c, const char *s) {
  char *d = strdup(s);
  if (d == NULL) c->oom = 1;
  return d;
}

/* Joins dir and rel ("./" prefixes dropped); absolute rel is kept as is. */
static char *path_join(const char *dir, const char *rel) {
  if (rel[0] == '/') return strdup(rel);
  while (rel[0] == '.' && rel[1] == '/') {
    rel += 2;
    while (rel[0] == '/') rel++;
  }
  if (strcmp(rel, ".") == 0) rel = "";
  size_t dl = strlen(dir), rl = strlen(rel);
  while (dl > 1 && dir[dl - 1] == '/') dl--;
  char *p = malloc(dl + 1 + rl + 1);
  if (p == NULL) return NULL;
  memcpy(p, dir, dl);
  size_t o = dl;
  if (rl > 0 && !(dl == 1 && dir[0] == '/')) p[o++] = '/';
  memcpy(p + o, rel, rl);
  p[o + rl] = '\0';
  return p;
}

static char *resolve(struct ctx *c, const char *rel) {
  char *p = path_join(c->base_dir, rel);
  if (p == NULL) c->oom = 1;
  return p;
}

static const char *get_string(struct ctx *c, const json_t *v) {
  if (!json_is_string(v)) {
    expected(c, "a string", v);
    return NULL;
  }
  return json_string_value(v);
}

static int get_int(struct ctx *c, const json_t *v, long long min, long long max,
                   const char *human, long long *out) {
  if (!json_is_integer(v)) {
    expected(c, "an integer", v);
    return 0;
  }
  long long x = (long long)json_integer_value(v);
  if (x < min || x > max) {
    problem(c, "%lld is out of range: allowed %lld..%lld%s%s%s", x, min, max,
            human ? " (" : "", human ? human : "", human ? ")" : "");
    return 0;
  }
  *out = x;
  return 1;
}

/* 1 if s matches ^[a-z0-9-]{1,32}$ (partner and adapter names). */
static int name_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '-'))
      return 0;
  return n >= 1 && n <= 32;
}

/* Reports a division code problem, or returns 1 if s is valid. */
static int division_ok(struct ctx *c, const char *s) {
  char q[QUOTE_MAX];
  size_t n = strlen(s);
  if (tb_division_code_valid(s, n)) return 1;
  int digits = n == 6;
  for (size_t i = 0; digits && i < n; i++)
    if (s[i] < '0' || s[i] > '9') digits = 0;
  if (!digits)
    problem(c, "%s is not a 6-digit division code", quote(q, sizeof q, s));
  else
    problem(c, "%s is not a division code: \"%.2s\" is not a province-level prefix (GB/T 2260)",
            quote(q, sizeof q, s), s);
  return 0;
}

/* ---- tables --------------------------------------------------------- */

enum num_type { NUM_NONE = 0, NUM_SIZE, NUM_U64, NUM_U32 };

struct field {
  const char *name;
  void (*check)(struct ctx *c, json_t *v, const struct field *f);
  const char *missing; /* NULL when optional; else why it is needed */
  long long min, max;  /* integers: allowed range */
  const char *human;   /* integers: the range in words, or NULL */
  size_t off;          /* integers: offset of the value in c->base (the struct the table fills) */
  enum num_type type;
};

#define NFIELDS(t) (sizeof(t) / sizeof((t)[0]))

/* Walks obj's keys in document order: known keys run their check, unknown
 * ones are problems unless open (a partner's object carries its adapter's
 * settings). Required keys not seen are reported after the object's own. */
static void walk_object(struct ctx *c, json_t *obj, const struct field *fields, size_t n,
                        int open) {
  unsigned long seen = 0;
  const char *k;
  json_t *v;
  json_object_foreach(obj, k, v) {
    size_t i = 0;
    while (i < n && strcmp(fields[i].name, k) != 0) i++;
    size_t saved = key_push(c, k);
    if (i < n) {
      seen |= 1UL << i;
      fields[i].check(c, v, &fields[i]);
    } else if (!open) {
      char known[512];
      size_t o = 0;
      known[0] = '\0';
      for (size_t j = 0; j < n && o < sizeof known; j++) {
        int w = snprintf(known + o, sizeof known - o, "%s%s", j ? ", " : "", fields[j].name);
        if (w > 0) o += (size_t)w;
      }
      problem(c, "unknown key (allowed here: %s)", known);
    }
    key_pop(c, saved);
  }
  for (size_t i = 0; i < n; i++) {
    if (fields[i].missing == NULL || (seen & (1UL << i))) continue;
    size_t saved = key_push(c, fields[i].name);
    problem(c, "missing (%s)", fields[i].missing);
    key_pop(c, saved);
  }
}

static void check_int(struct ctx *c, json_t *v, const struct field *f) {
  long long x;
  if (!get_int(c, v, f->min, f->max, f->human, &x)) return;
  char *at = (char *)c->base + f->off;
  switch (f->type) {
  case NUM_SIZE: *(size_t *)(void *)at = (size_t)x; break;
  case NUM_U64: *(uint64_t *)(void *)at = (uint64_t)x; break;
  case NUM_U32: *(uint32_t *)(void *)at = (uint32_t)x; break;
  case NUM_NONE: break;
  }
}

/* For cross-checks: 0 if obj has no key, 1 if its value was accepted (the
 * stored value is the file's), -1 if it was refused (already reported; the
 * stored value is the default, which is always in range, so it cannot equal
 * a refused value). */
static int accepted(const json_t *obj, const char *key, size_t stored) {
  const json_t *v = json_object_get(obj, key);
  if (v == NULL) return 0;
  return json_is_integer(v) && json_integer_value(v) >= 0 &&
                 (size_t)json_integer_value(v) == stored
             ? 1
             : -1;
}

#define INT_FIELD_IN(st, key, member, type, lo, hi, words)                                  \
  { key, check_int, NULL, lo, hi, words, offsetof(st, member), type }
#define INT_FIELD(key, member, type, lo, hi, words)                                         \
  INT_FIELD_IN(struct tb_config, key, member, type, lo, hi, words)

/* ---- node ----------------------------------------------------------- */

static void check_node_region(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s != NULL && division_ok(c, s)) c->cfg->node_region = dup_str(c, s);
}

static void check_node_name(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  if (strlen(s) > NODE_NAME_MAX) {
    problem(c, "too long (%zu bytes; at most %d)", strlen(s), NODE_NAME_MAX);
    return;
  }
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p == 0x7F) {
      problem(c, "contains a control character");
      return;
    }
  c->cfg->node_name = dup_str(c, s);
}

static const struct field node_fields[] = {
    {"region", check_node_region, "the 6-digit division code of this gateway's own region", 0, 0, NULL, 0, NUM_NONE},
    {"name", check_node_name, NULL, 0, 0, NULL, 0, NUM_NONE},
};

static void check_node(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  walk_object(c, v, node_fields, NFIELDS(node_fields), 0);
}

/* ---- local_api ------------------------------------------------------ */

/* "IPv4:port" or "[IPv6]:port" into *host_out / *port_out. */
static void parse_listen(struct ctx *c, json_t *v, char **host_out, int *port_out) {
  const char *s = get_string(c, v);
  if (s == NULL) return;
  char q[QUOTE_MAX];
  quote(q, sizeof q, s);
  const char *host, *port;
  size_t hlen;
  int v6 = s[0] == '[';
  if (v6) {
    const char *close = strchr(s, ']');
    if (close == NULL || close[1] != ':') {
      problem(c, "%s must be \"IPv4:port\" or \"[IPv6]:port\", e.g. \"127.0.0.1:8080\"", q);
      return;
    }
    host = s + 1;
    hlen = (size_t)(close - host);
    port = close + 2;
  } else {
    const char *colon = strrchr(s, ':');
    if (colon == NULL) {
      problem(c, "%s must be \"IPv4:port\" or \"[IPv6]:port\", e.g. \"127.0.0.1:8080\"", q);
      return;
    }
    if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
      problem(c, "%s: an IPv6 address needs brackets, e.g. \"[::1]:8080\"", q);
      return;
    }
    host = s;
    hlen = (size_t)(colon - s);
    port = colon + 1;
  }
  char hbuf[INET6_ADDRSTRLEN + 1];
  unsigned char addr[sizeof(struct in6_addr)];
  int host_ok = hlen > 0 && hlen < sizeof hbuf;
  if (host_ok) {
    memcpy(hbuf, host, hlen);
    hbuf[hlen] = '\0';
    host_ok = inet_pton(v6 ? AF_INET6 : AF_INET, hbuf, addr) == 1;
  }
  if (!host_ok) {
    problem(c, "%s: the host must be a numeric %s address (names are not resolved)", q,
            v6 ? "IPv6" : "IPv4");
    return;
  }
  long pv = 0;
  size_t pl = strlen(port);
  int port_ok = pl >= 1 && pl <= 5;
  for (size_t i = 0; port_ok && i < pl; i++) {
    if (port[i] < '0' || port[i] > '9') port_ok = 0;
    else pv = pv * 10 + (port[i] - '0');
  }
  if (!port_ok || pv > 65535) {
    problem(c, "%s is not a valid port (1-65535)", q);
    return;
  }
  /* Port 0 (any free port) is accepted on purpose: tests read the bound
   * port back with tb_http_server_port(). */
  free(*host_out);
  *host_out = dup_str(c, hbuf);
  *port_out = (int)pv;
}

static void check_listen(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  parse_listen(c, v, &c->cfg->local_api_host, &c->cfg->local_api_port);
}

static int client_name_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
          (s[n] >= '0' && s[n] <= '9') || s[n] == '-' || s[n] == '_' || s[n] == '.'))
      return 0;
  return n >= 1 && n <= 64;
}

static void check_token_client(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  if (!client_name_ok(s)) {
    char q[QUOTE_MAX];
    problem(c, "%s is not a valid client name (1-64 characters of A-Z a-z 0-9 . _ -)",
            quote(q, sizeof q, s));
    return;
  }
  c->token->client = dup_str(c, s);
}

/* The token itself is a secret: problems describe it, never show it. */
static void check_token_token(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_string(v)) {
    problem(c, "expected a string, found %s", type_name(v));
    return;
  }
  const char *s = json_string_value(v);
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= 0x20 || ch >= 0x7F) {
      problem(c, "character %zu is a space, a control character or not ASCII (a token is "
                 "printable ASCII without spaces)", i + 1);
      return;
    }
  }
  if (n < TOKEN_MIN) {
    problem(c, "too short (%zu characters; at least %d are needed, e.g. from "
               "`openssl rand -hex 32`)", n, TOKEN_MIN);
    return;
  }
  if (n > TOKEN_MAX) {
    problem(c, "too long (%zu characters; at most %d)", n, TOKEN_MAX);
    return;
  }
  c->token->token = dup_str(c, s);
}

static const struct field token_fields[] = {
    {"client", check_token_client, "a name for the local client, used in logs", 0, 0, NULL, 0, NUM_NONE},
    {"token", check_token_token, "the bearer token, at least 16 characters", 0, 0, NULL, 0, NUM_NONE},
};

static void check_tokens(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_array(v)) {
    expected(c, "an array of {\"client\", \"token\"} objects", v);
    return;
  }
  size_t n = json_array_size(v);
  if (n == 0) {
    problem(c, "empty (at least one bearer token is needed for local clients)");
    return;
  }
  struct tb_config *cfg = c->cfg;
  cfg->tokens = calloc(n, sizeof *cfg->tokens);
  if (cfg->tokens == NULL) {
    c->oom = 1;
    return;
  }
  cfg->token_count = n;
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(v, i);
    size_t saved = key_push_index(c, i);
    if (!json_is_object(e)) {
      expected(c, "an object {\"client\", \"token\"}", e);
      key_pop(c, saved);
      continue;
    }
    struct tb_config_token *t = &cfg->tokens[i];
    c->token = t;
    walk_object(c, e, token_fields, NFIELDS(token_fields), 0);
    c->token = NULL;
    for (size_t j = 0; j < i; j++) {
      const struct tb_config_token *o = &cfg->tokens[j];
      if (t->client && o->client && strcmp(t->client, o->client) == 0) {
        size_t s2 = key_push(c, "client");
        char q[QUOTE_MAX];
        problem(c, "%s is used by local_api.tokens[%zu] too", quote(q, sizeof q, t->client), j);
        key_pop(c, s2);
      }
      if (t->token && o->token && strcmp(t->token, o->token) == 0) {
        size_t s2 = key_push(c, "token");
        problem(c, "same token as local_api.tokens[%zu] (every client needs its own token)", j);
        key_pop(c, s2);
      }
    }
    key_pop(c, saved);
  }
}

/* limits and timeouts_ms of an HTTP listener (local_api, partner_api): the
 * tables fill c->limits. */
#define LIMIT_FIELD(key, member, lo, hi, words)                                             \
  INT_FIELD_IN(struct tb_http_limits, key, member, NUM_SIZE, lo, hi, words)

static const struct field limits_fields[] = {
    LIMIT_FIELD("max_header_bytes", max_header_bytes, KiB, MiB, "1 KiB..1 MiB"),
    LIMIT_FIELD("max_header_count", max_header_count, 1, 10000, NULL),
    LIMIT_FIELD("max_body_bytes", max_body_bytes, KiB, GiB, "1 KiB..1 GiB"),
    LIMIT_FIELD("max_connections", max_connections, 1, 100000, NULL),
    LIMIT_FIELD("max_pipeline_bytes", max_pipeline_bytes, KiB, 16 * MiB, "1 KiB..16 MiB"),
};

/* Walks a nested object whose integer fields fill base. */
static void walk_into(struct ctx *c, json_t *v, const struct field *fields, size_t n,
                      void *base) {
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  void *saved = c->base;
  c->base = base;
  walk_object(c, v, fields, n, 0);
  c->base = saved;
}

static void check_limits(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  walk_into(c, v, limits_fields, NFIELDS(limits_fields), c->limits);
  if (json_is_object(v) && c->limits == &c->cfg->local_api_limits)
    c->body_bytes_set = accepted(v, "max_body_bytes", c->cfg->local_api_limits.max_body_bytes);
}

#define TIMEOUT_FIELD(key, member)                                                          \
  INT_FIELD_IN(struct tb_http_limits, key, member, NUM_U64, 100, 3600000, "100 ms..1 h")

static const struct field timeout_fields[] = {
    TIMEOUT_FIELD("header", header_timeout_ms),
    TIMEOUT_FIELD("body", body_timeout_ms),
    TIMEOUT_FIELD("keepalive", keepalive_timeout_ms),
    TIMEOUT_FIELD("write", write_timeout_ms),
};

static void check_timeouts(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  walk_into(c, v, timeout_fields, NFIELDS(timeout_fields), c->limits);
}

static const struct field rate_limit_fields[] = {
    INT_FIELD("requests_per_s", rate_limit_per_s, NUM_U32, 0, 1000000, "0 (off)..1000000"),
    INT_FIELD("burst", rate_limit_burst, NUM_U32, 0, 1000000, "0 (off)..1000000"),
};

static void check_rate_limit(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  walk_into(c, v, rate_limit_fields, NFIELDS(rate_limit_fields), c->cfg);
}

static const struct field local_api_fields[] = {
    {"listen", check_listen, "address and port for local clients, e.g. \"127.0.0.1:8080\"", 0, 0, NULL, 0, NUM_NONE},
    {"tokens", check_tokens, "at least one bearer token is needed for local clients", 0, 0, NULL, 0, NUM_NONE},
    {"limits", check_limits, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"timeouts_ms", check_timeouts, NULL, 0, 0, NULL, 0, NUM_NONE},
    INT_FIELD("events_max_wait_s", events_max_wait_s, NUM_U32, 0, 3600, "0 s..1 h"),
    {"rate_limit", check_rate_limit, NULL, 0, 0, NULL, 0, NUM_NONE},
};

static void check_local_api(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  c->limits = &c->cfg->local_api_limits;
  walk_object(c, v, local_api_fields, NFIELDS(local_api_fields), 0);
  c->limits = NULL;
}

/* ---- partner_api ---------------------------------------------------- */

/* The paths below are checked like every path (non-empty, bounded) and
 * resolved; whether the files exist and hold what they should is checked
 * when they are loaded (tb_plugin_*_load at start and by check-config). */
static char *get_path(struct ctx *c, const json_t *v);

static void set_path(struct ctx *c, json_t *v, char **dst) {
  char *p = get_path(c, v);
  if (p != NULL) {
    free(*dst);
    *dst = p;
  }
}

static void check_papi_listen(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  parse_listen(c, v, &c->cfg->partner_api_host, &c->cfg->partner_api_port);
}

static void check_papi_tls_cert(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->cfg->partner_api_tls_certificate);
}

static void check_papi_tls_key(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->cfg->partner_api_tls_private_key);
}

static const struct field papi_tls_fields[] = {
    {"certificate", check_papi_tls_cert, "the listener's PEM certificate (chain), e.g. certs/out/gateway/tls-server.pem", 0, 0, NULL, 0, NUM_NONE},
    {"private_key", check_papi_tls_key, "the PEM private key of that certificate, mode 0600", 0, 0, NULL, 0, NUM_NONE},
};

static void check_papi_tls(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  walk_into(c, v, papi_tls_fields, NFIELDS(papi_tls_fields), c->base);
}

static const struct field partner_api_fields[] = {
    {"listen", check_papi_listen, "address and port for partner platforms, e.g. \"0.0.0.0:8443\"", 0, 0, NULL, 0, NUM_NONE},
    {"tls", check_papi_tls, "an object with \"certificate\" and \"private_key\": partners are served over HTTPS only", 0, 0, NULL, 0, NUM_NONE},
    {"limits", check_limits, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"timeouts_ms", check_timeouts, NULL, 0, 0, NULL, 0, NUM_NONE},
};

static void check_partner_api(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  c->cfg->partner_api_set = 1;
  c->limits = &c->cfg->partner_api_limits;
  walk_object(c, v, partner_api_fields, NFIELDS(partner_api_fields), 0);
  c->limits = NULL;
  /* Two listeners cannot share one address (port 0, "any free port", can). */
  struct tb_config *cfg = c->cfg;
  if (cfg->partner_api_host && cfg->local_api_host && cfg->partner_api_port != 0 &&
      cfg->partner_api_port == cfg->local_api_port &&
      strcmp(cfg->partner_api_host, cfg->local_api_host) == 0) {
    size_t saved = key_push(c, "listen");
    problem(c, "%s:%d is local_api.listen too; the partner listener needs an address of its own",
            cfg->partner_api_host, cfg->partner_api_port);
    key_pop(c, saved);
  }
}

/* ---- cases ---------------------------------------------------------- */

static const struct field cases_fields[] = {
    INT_FIELD("max_materials_bytes", case_limits.max_materials_bytes, NUM_SIZE, KiB, 768 * MiB, "1 KiB..768 MiB"),
    INT_FIELD("max_materials", case_limits.max_materials, NUM_SIZE, 1, 10000, NULL),
    INT_FIELD("max_string_chars", case_limits.max_string_chars, NUM_SIZE, 64, 1000000, NULL),
    INT_FIELD("max_json_depth", cases_max_json_depth, NUM_U32, 4, 512, NULL),
};

static void check_cases(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  walk_object(c, v, cases_fields, NFIELDS(cases_fields), 0);
  c->materials_bytes_set =
      accepted(v, "max_materials_bytes", c->cfg->case_limits.max_materials_bytes);
}

/* ---- store, log, adapters: paths and enums --------------------------- */

/* A file or directory path: non-empty, bounded; resolved against the config
 * file's directory. Returns the resolved copy or NULL (problem reported). */
static char *get_path(struct ctx *c, const json_t *v) {
  const char *s = get_string(c, v);
  if (s == NULL) return NULL;
  if (s[0] == '\0') {
    problem(c, "empty (a path is needed)");
    return NULL;
  }
  if (strlen(s) > PATH_VALUE_MAX) {
    problem(c, "too long (%zu bytes; at most %d)", strlen(s), PATH_VALUE_MAX);
    return NULL;
  }
  return resolve(c, s);
}

static void check_store_path(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  c->cfg->store_path = get_path(c, v);
}

static void check_durability(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  if (strcmp(s, "fsync") == 0) {
    c->cfg->store.durability = TB_STORE_DURABILITY_FSYNC;
  } else if (strcmp(s, "os") == 0) {
    c->cfg->store.durability = TB_STORE_DURABILITY_OS;
  } else {
    char q[QUOTE_MAX];
    problem(c, "%s is not one of \"fsync\", \"os\"", quote(q, sizeof q, s));
  }
}

static const struct field store_fields[] = {
    {"path", check_store_path, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"durability", check_durability, NULL, 0, 0, NULL, 0, NUM_NONE},
    INT_FIELD("batch_max", store.batch_max, NUM_SIZE, 1, 100000, NULL),
    INT_FIELD("checkpoint_wal_pages", store.checkpoint_wal_pages, NUM_U32, 64, 1048576, NULL),
};

static void check_store(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  walk_object(c, v, store_fields, NFIELDS(store_fields), 0);
}

static void check_log_level(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  int lv = tb_log_level_parse(s);
  if (lv < 0) {
    char q[QUOTE_MAX];
    problem(c, "%s is not one of \"debug\", \"info\", \"warn\", \"error\"", quote(q, sizeof q, s));
    return;
  }
  c->cfg->log_level = lv;
}

static void check_log_file(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  if (strcmp(s, "-") == 0)
    c->cfg->log_file = dup_str(c, "-");
  else
    c->cfg->log_file = get_path(c, v);
}

static const struct field log_fields[] = {
    {"level", check_log_level, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"file", check_log_file, NULL, 0, 0, NULL, 0, NUM_NONE},
};

static void check_log(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  walk_object(c, v, log_fields, NFIELDS(log_fields), 0);
}

static void check_adapters_dir(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  c->cfg->adapters_dir = get_path(c, v);
}

static const struct field adapters_fields[] = {
    {"dir", check_adapters_dir, NULL, 0, 0, NULL, 0, NUM_NONE},
};

static void check_adapters(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  walk_object(c, v, adapters_fields, NFIELDS(adapters_fields), 0);
}

/* ---- audit ----------------------------------------------------------- */

static void check_audit_path(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  c->cfg->audit_path = get_path(c, v);
}

static const struct field audit_fields[] = {
    {"path", check_audit_path, "the audit trail file, e.g. \"var/audit.log\"", 0, 0, NULL, 0, NUM_NONE},
    INT_FIELD("rotate_bytes", audit_rotate_bytes, NUM_U64, 0, 1024 * GiB, "0 (never) .. 1 TiB"),
};

static void check_audit(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object", v);
    return;
  }
  walk_object(c, v, audit_fields, NFIELDS(audit_fields), 0);
}

/* ---- keys ------------------------------------------------------------ */

static const char *const key_kinds[] = {"rsa", "ec-p256", "ed25519", "sm2", "ca"};

/* 1 if s matches ^[a-z0-9-]{1,64}$ (key names). */
static int key_name_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '-'))
      return 0;
  return n >= 1 && n <= 64;
}

static void check_key_kind(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  for (size_t i = 0; i < sizeof key_kinds / sizeof *key_kinds; i++)
    if (strcmp(s, key_kinds[i]) == 0) {
      c->keyent->kind = dup_str(c, s);
      return;
    }
  char q[QUOTE_MAX];
  problem(c, "%s is not one of \"rsa\", \"ec-p256\", \"ed25519\", \"sm2\", \"ca\"",
          quote(q, sizeof q, s));
}

static void check_key_private(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->keyent->private_key);
}

static void check_key_public(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->keyent->public_key);
}

static void check_key_cert(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->keyent->certificate);
}

static void check_key_sm2_id(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  size_t n = strlen(s);
  if (n == 0 || n > 1024) {
    problem(c, "must be 1 to 1024 bytes (the default is \"%s\")", TB_CONFIG_SM2_DEFAULT_ID);
    return;
  }
  c->keyent->sm2_id = dup_str(c, s);
}

static const struct field key_fields[] = {
    {"kind", check_key_kind, "one of \"rsa\", \"ec-p256\", \"ed25519\", \"sm2\", \"ca\"", 0, 0, NULL, 0, NUM_NONE},
    {"private_key", check_key_private, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"public_key", check_key_public, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"certificate", check_key_cert, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"sm2_id", check_key_sm2_id, NULL, 0, 0, NULL, 0, NUM_NONE},
};

/* What a kind allows, once the entry's own keys are checked (the kind may
 * come after the files in the object). */
static void cross_check_key(struct ctx *c, json_t *obj) {
  struct tb_config_key *k = c->keyent;
  if (k->kind == NULL) return; /* missing or refused: already reported */
  if (strcmp(k->kind, "ca") == 0) {
    static const char *const not_for_ca[] = {"private_key", "public_key", "sm2_id"};
    for (size_t i = 0; i < sizeof not_for_ca / sizeof *not_for_ca; i++) {
      if (json_object_get(obj, not_for_ca[i]) == NULL) continue;
      size_t saved = key_push(c, not_for_ca[i]);
      problem(c, "not allowed for kind \"ca\" (a CA takes only \"certificate\": the trusted "
                 "PEM certificate bundle)");
      key_pop(c, saved);
    }
    if (json_object_get(obj, "certificate") == NULL) {
      size_t saved = key_push(c, "certificate");
      problem(c, "missing (kind \"ca\" needs the trusted PEM certificate bundle)");
      key_pop(c, saved);
    }
    return;
  }
  if (json_object_get(obj, "private_key") == NULL && json_object_get(obj, "public_key") == NULL)
    problem(c, "needs \"private_key\" (to sign and decrypt) or \"public_key\" (a peer's key, "
               "to verify and encrypt)");
  if (json_object_get(obj, "sm2_id") != NULL && strcmp(k->kind, "sm2") != 0) {
    size_t saved = key_push(c, "sm2_id");
    problem(c, "only for kind \"sm2\" (this key is \"%s\")", k->kind);
    key_pop(c, saved);
  }
  if (strcmp(k->kind, "sm2") == 0 && k->sm2_id == NULL && json_object_get(obj, "sm2_id") == NULL)
    k->sm2_id = dup_str(c, TB_CONFIG_SM2_DEFAULT_ID);
}

static void check_keys(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_object(v)) {
    expected(c, "an object of named keys, {\"<name>\": {\"kind\": ..., ...}}", v);
    return;
  }
  size_t n = json_object_size(v);
  if (n == 0) return;
  struct tb_config *cfg = c->cfg;
  cfg->keys = calloc(n, sizeof *cfg->keys);
  if (cfg->keys == NULL) {
    c->oom = 1;
    return;
  }
  const char *name;
  json_t *e;
  json_object_foreach(v, name, e) {
    size_t saved = key_push(c, name);
    struct tb_config_key *k = &cfg->keys[cfg->key_count++];
    if (!key_name_ok(name)) {
      char q[QUOTE_MAX];
      problem(c, "%s is not a valid key name (1-64 characters of a-z 0-9 -)",
              quote(q, sizeof q, name));
    } else {
      k->name = dup_str(c, name);
    }
    if (!json_is_object(e)) {
      expected(c, "an object {\"kind\", \"private_key\" | \"public_key\" | \"certificate\"}", e);
    } else {
      c->keyent = k;
      walk_object(c, e, key_fields, NFIELDS(key_fields), 0);
      cross_check_key(c, e);
      c->keyent = NULL;
    }
    key_pop(c, saved);
  }
}

/* ---- partners ------------------------------------------------------- */

static void check_partner_name(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  if (!name_ok(s)) {
    char q[QUOTE_MAX];
    problem(c, "%s is not a valid partner name (1-32 characters of a-z 0-9 -)", quote(q, sizeof q, s));
    return;
  }
  c->partner->name = dup_str(c, s);
}

static void check_partner_adapter(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  if (!name_ok(s)) {
    char q[QUOTE_MAX];
    problem(c, "%s is not a valid adapter name (1-32 characters of a-z 0-9 -)", quote(q, sizeof q, s));
    return;
  }
  c->partner->adapter = dup_str(c, s);
}

static void check_partner_regions(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_array(v)) {
    expected(c, "an array of 6-digit division codes", v);
    return;
  }
  size_t n = json_array_size(v);
  if (n == 0) {
    problem(c, "empty (a partner serves at least one region)");
    return;
  }
  struct tb_config_partner *p = c->partner;
  p->regions = calloc(n, sizeof *p->regions);
  if (p->regions == NULL) {
    c->oom = 1;
    return;
  }
  p->region_count = n;
  for (size_t i = 0; i < n; i++) {
    size_t saved = key_push_index(c, i);
    const char *s = get_string(c, json_array_get(v, i));
    if (s != NULL && division_ok(c, s)) {
      size_t j = 0;
      while (j < i && !(p->regions[j] && strcmp(p->regions[j], s) == 0)) j++;
      if (j < i) {
        char q[QUOTE_MAX];
        problem(c, "%s is listed twice (also at [%zu])", quote(q, sizeof q, s), j);
      } else {
        p->regions[i] = dup_str(c, s);
      }
    }
    key_pop(c, saved);
  }
}

/* Accepts http(s)://host[:port][/path] with host a DNS name, an IPv4
 * address or a bracketed IPv6 address. No credentials (they would end up in
 * logs), no query or fragment (adapters append request paths). */
static void check_partner_endpoint(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  const char *s = get_string(c, v);
  if (s == NULL) return;
  char q[QUOTE_MAX];
  quote(q, sizeof q, s);
  size_t n = strlen(s);
  if (n > ENDPOINT_MAX) {
    problem(c, "too long (%zu bytes; at most %d)", n, ENDPOINT_MAX);
    return;
  }
  const char *rest;
  if (strncasecmp(s, "https://", 8) == 0) rest = s + 8;
  else if (strncasecmp(s, "http://", 7) == 0) rest = s + 7;
  else {
    problem(c, "%s is not an http(s) URL", q);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= 0x20 || ch >= 0x7F) {
      problem(c, "%s contains a space, a control or a non-ASCII character (percent-encode it)", q);
      return;
    }
  }
  size_t alen = strcspn(rest, "/?#");
  const char *tail = rest + alen;
  if (memchr(rest, '@', alen) != NULL) {
    problem(c, "%s must not carry credentials (user:password@)", q);
    return;
  }
  if (tail[strcspn(tail, "?#")] != '\0') {
    problem(c, "%s must not have a query or fragment (request paths are appended to it)", q);
    return;
  }
  const char *host = rest, *port = NULL;
  if (alen > 0 && rest[0] == '[') {
    const char *close = memchr(rest, ']', alen);
    char h6[INET6_ADDRSTRLEN + 1];
    unsigned char addr[sizeof(struct in6_addr)];
    size_t l6 = close ? (size_t)(close - rest - 1) : 0;
    if (close == NULL || l6 == 0 || l6 >= sizeof h6) {
      problem(c, "%s has an invalid IPv6 host", q);
      return;
    }
    memcpy(h6, rest + 1, l6);
    h6[l6] = '\0';
    if (inet_pton(AF_INET6, h6, addr) != 1) {
      problem(c, "%s has an invalid IPv6 host", q);
      return;
    }
    const char *after = close + 1;
    if (after < rest + alen) {
      if (*after != ':') {
        problem(c, "%s has an invalid IPv6 host", q);
        return;
      }
      port = after + 1;
    }
  } else {
    const char *colon = memchr(rest, ':', alen);
    size_t hlen = colon ? (size_t)(colon - rest) : alen;
    if (colon) port = colon + 1;
    int ok = hlen > 0 && host[0] != '.' && host[0] != '-';
    for (size_t i = 0; ok && i < hlen; i++) {
      char ch = host[i];
      if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.'))
        ok = 0;
      if (ch == '.' && i + 1 < hlen && host[i + 1] == '.') ok = 0;
    }
    if (hlen == 0) {
      problem(c, "%s has no host", q);
      return;
    }
    if (!ok) {
      problem(c, "%s has an invalid host name", q);
      return;
    }
  }
  if (port != NULL) {
    size_t pl = (size_t)(rest + alen - port);
    long pv = 0;
    int ok = pl >= 1 && pl <= 5;
    for (size_t i = 0; ok && i < pl; i++) {
      if (port[i] < '0' || port[i] > '9') ok = 0;
      else pv = pv * 10 + (port[i] - '0');
    }
    if (!ok || pv < 1 || pv > 65535) {
      problem(c, "%s is not a valid port (1-65535)", q);
      return;
    }
  }
  /* Adapters append "/tongban/v1/receive" and the like: a trailing slash
   * would double it. */
  char *e = dup_str(c, s);
  if (e == NULL) return;
  size_t el = strlen(e), path_at = (size_t)(tail - s);
  while (el > path_at && e[el - 1] == '/') e[--el] = '\0';
  c->partner->endpoint = e;
}

static void check_ptls_ca(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->partner->tls.ca);
}

static void check_ptls_cert(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->partner->tls.client_certificate);
}

static void check_ptls_key(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->partner->tls.client_key);
}

static void check_ptls_client_ca(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  set_path(c, v, &c->partner->tls.client_ca);
}

static const struct field partner_tls_fields[] = {
    {"ca", check_ptls_ca, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"client_certificate", check_ptls_cert, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"client_key", check_ptls_key, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"client_ca", check_ptls_client_ca, NULL, 0, 0, NULL, 0, NUM_NONE},
};

static void check_partner_tls(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  walk_into(c, v, partner_tls_fields, NFIELDS(partner_tls_fields), c->base);
  if (!json_is_object(v)) return;
  /* mTLS needs both halves; name the one that is missing. */
  int has_cert = json_object_get(v, "client_certificate") != NULL;
  int has_key = json_object_get(v, "client_key") != NULL;
  if (has_cert != has_key) {
    size_t saved = key_push(c, has_cert ? "client_key" : "client_certificate");
    problem(c, "missing (%s is set: a client certificate for mTLS needs %s too)",
            has_cert ? "client_certificate" : "client_key",
            has_cert ? "its private key" : "its certificate");
    key_pop(c, saved);
  }
}

#define DELIVERY_FIELD(key, member, type, lo, hi, words)                                    \
  INT_FIELD_IN(struct tb_config_delivery, key, member, type, lo, hi, words)

static const struct field delivery_fields[] = {
    DELIVERY_FIELD("max_in_flight", max_in_flight, NUM_U32, 1, 1024, NULL),
    DELIVERY_FIELD("connect_timeout_ms", connect_timeout_ms, NUM_U64, 100, 300000, "100 ms..5 min"),
    DELIVERY_FIELD("timeout_ms", timeout_ms, NUM_U64, 100, 3600000, "100 ms..1 h"),
    DELIVERY_FIELD("max_attempts", max_attempts, NUM_U32, 1, 10000, NULL),
    DELIVERY_FIELD("backoff_initial_ms", backoff_initial_ms, NUM_U64, 10, 3600000, "10 ms..1 h"),
    DELIVERY_FIELD("backoff_max_ms", backoff_max_ms, NUM_U64, 100, 86400000, "100 ms..1 day"),
    DELIVERY_FIELD("circuit_failures", circuit_failures, NUM_U32, 1, 10000, NULL),
    DELIVERY_FIELD("circuit_open_ms", circuit_open_ms, NUM_U64, 100, 86400000, "100 ms..1 day"),
};

static void check_partner_delivery(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  struct tb_config_delivery *d = &c->partner->delivery;
  walk_into(c, v, delivery_fields, NFIELDS(delivery_fields), d);
  if (!json_is_object(v)) return;
  /* Pairs, checked only when both values were accepted (a refused value
   * left the default in place and is reported already). */
  if (accepted(v, "backoff_initial_ms", (size_t)d->backoff_initial_ms) >= 0 &&
      accepted(v, "backoff_max_ms", (size_t)d->backoff_max_ms) >= 0 &&
      d->backoff_initial_ms > d->backoff_max_ms) {
    size_t saved = key_push(c, "backoff_max_ms");
    problem(c, "%llu is less than backoff_initial_ms %llu (the cap must be at least the first "
               "delay)",
            (unsigned long long)d->backoff_max_ms, (unsigned long long)d->backoff_initial_ms);
    key_pop(c, saved);
  }
  if (accepted(v, "connect_timeout_ms", (size_t)d->connect_timeout_ms) >= 0 &&
      accepted(v, "timeout_ms", (size_t)d->timeout_ms) >= 0 &&
      d->connect_timeout_ms > d->timeout_ms) {
    size_t saved = key_push(c, "connect_timeout_ms");
    problem(c, "%llu is more than timeout_ms %llu (the whole request includes connecting)",
            (unsigned long long)d->connect_timeout_ms, (unsigned long long)d->timeout_ms);
    key_pop(c, saved);
  }
}

static const struct field partner_fields[] = {
    {"name", check_partner_name, "a unique name, 1-32 characters of a-z 0-9 -", 0, 0, NULL, 0, NUM_NONE},
    {"adapter", check_partner_adapter, "the adapter plugin that speaks this partner's protocol, e.g. \"lu-xml\"", 0, 0, NULL, 0, NUM_NONE},
    {"regions", check_partner_regions, "the division codes this partner serves", 0, 0, NULL, 0, NUM_NONE},
    {"endpoint", check_partner_endpoint, "the partner platform's http(s) base URL", 0, 0, NULL, 0, NUM_NONE},
    {"tls", check_partner_tls, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"delivery", check_partner_delivery, NULL, 0, 0, NULL, 0, NUM_NONE},
    INT_FIELD_IN(struct tb_config_partner, "replay_window_s", replay_window_s, NUM_U32, 10, 3600, "10 s..1 h"),
};

static const char *partner_label(const struct tb_config_partner *p) {
  return p->name ? p->name : "(unnamed)";
}

/* Problems between partner i and the ones before it: names and regions
 * must be unique across the file. */
static void cross_check_partner(struct ctx *c, size_t i) {
  struct tb_config_partner *all = c->cfg->partners, *p = &all[i];
  char q[QUOTE_MAX];
  for (size_t j = 0; j < i && p->name; j++) {
    if (all[j].name && strcmp(all[j].name, p->name) == 0) {
      size_t saved = key_push(c, "name");
      problem(c, "%s is used by partners[%zu] too", quote(q, sizeof q, p->name), j);
      key_pop(c, saved);
      break;
    }
  }
  for (size_t k = 0; k < p->region_count; k++) {
    if (p->regions[k] == NULL) continue;
    for (size_t j = 0; j < i; j++) {
      size_t m = 0;
      while (m < all[j].region_count &&
             !(all[j].regions[m] && strcmp(all[j].regions[m], p->regions[k]) == 0))
        m++;
      if (m == all[j].region_count) continue;
      size_t s1 = key_push(c, "regions");
      size_t s2 = key_push_index(c, k);
      problem(c, "%s is served by both \"%s\" (partners[%zu]) and \"%s\" (partners[%zu]); a "
                 "region can have only one partner",
              quote(q, sizeof q, p->regions[k]), partner_label(&all[j]), j, partner_label(p), i);
      key_pop(c, s2);
      key_pop(c, s1);
      break;
    }
  }
}

static void check_partners(struct ctx *c, json_t *v, const struct field *f) {
  (void)f;
  if (!json_is_array(v)) {
    expected(c, "an array of partner objects", v);
    return;
  }
  size_t n = json_array_size(v);
  if (n == 0) return;
  struct tb_config *cfg = c->cfg;
  cfg->partners = calloc(n, sizeof *cfg->partners);
  if (cfg->partners == NULL) {
    c->oom = 1;
    return;
  }
  cfg->partner_count = n;
  for (size_t i = 0; i < n; i++) {
    json_t *e = json_array_get(v, i);
    size_t saved = key_push_index(c, i);
    if (!json_is_object(e)) {
      expected(c, "an object", e);
      key_pop(c, saved);
      continue;
    }
    c->partner = &cfg->partners[i];
    tb_config_delivery_default(&c->partner->delivery);
    c->partner->replay_window_s = 300;
    /* Open: keys other than the gateway's own above belong to the adapter. */
    void *saved_base = c->base;
    c->base = c->partner;
    walk_object(c, e, partner_fields, NFIELDS(partner_fields), 1);
    c->base = saved_base;
    cross_check_partner(c, i);
    c->partner->settings_json = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (c->partner->settings_json == NULL) c->oom = 1;
    c->partner = NULL;
    key_pop(c, saved);
  }
}

/* ---- top level ------------------------------------------------------ */

static const struct field root_fields[] = {
    {"node", check_node, "an object with at least \"region\", this gateway's division code", 0, 0, NULL, 0, NUM_NONE},
    {"local_api", check_local_api, "an object with at least \"listen\" and \"tokens\"", 0, 0, NULL, 0, NUM_NONE},
    {"partner_api", check_partner_api, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"cases", check_cases, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"store", check_store, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"log", check_log, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"keys", check_keys, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"adapters", check_adapters, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"partners", check_partners, NULL, 0, 0, NULL, 0, NUM_NONE},
    {"audit", check_audit, NULL, 0, 0, NULL, 0, NUM_NONE},
};

/* Base64 makes materials 4/3 larger; 1 MiB covers the rest of a case (its
 * strings are capped far below that). */
static size_t body_needed(size_t materials_bytes) {
  return (materials_bytes + 2) / 3 * 4 + (size_t)MiB;
}

static void cross_check_limits(struct ctx *c) {
  struct tb_config *cfg = c->cfg;
  size_t mat = cfg->case_limits.max_materials_bytes;
  size_t body = cfg->local_api_limits.max_body_bytes;
  size_t need = body_needed(mat);
  if (body >= need || c->body_bytes_set < 0 || c->materials_bytes_set < 0) return;
  size_t saved = c->klen;
  key_set_len(c, 0);
  key_push(c, "local_api");
  key_push(c, "limits");
  key_push(c, "max_body_bytes");
  problem(c, "%zu%s is too small for cases.max_materials_bytes %zu%s: materials travel as "
             "base64 (4/3 larger) plus up to 1 MiB for the rest of the case, so at least %zu "
             "is needed; raise local_api.limits.max_body_bytes or lower "
             "cases.max_materials_bytes",
          body, c->body_bytes_set > 0 ? "" : " (the default)", mat,
          c->materials_bytes_set > 0 ? "" : " (the default)", need);
  key_set_len(c, saved);
}

/* Partners are served by adapters, which are loaded from adapters.dir. */
static void cross_check_adapters_dir(struct ctx *c, const json_t *root) {
  if (c->cfg->partner_count == 0) return;
  const json_t *a = json_object_get(root, "adapters");
  if (a != NULL && (!json_is_object(a) || json_object_get(a, "dir") != NULL)) return;
  size_t saved = c->klen;
  key_set_len(c, 0);
  key_push(c, "adapters");
  key_push(c, "dir");
  problem(c, "missing (%zu partner(s) are configured: their adapters are loaded from this "
             "directory, e.g. \"../build/release/adapters\")",
          c->cfg->partner_count);
  key_set_len(c, saved);
}

static void set_defaults(struct tb_config *cfg) {
  tb_http_limits_default(&cfg->local_api_limits);
  tb_case_limits_default(&cfg->case_limits);
  tb_store_options_default(&cfg->store);
  cfg->store.path = NULL;
  cfg->events_max_wait_s = 60;
  cfg->rate_limit_per_s = 500;
  cfg->rate_limit_burst = 1000;
  cfg->cases_max_json_depth = 32;
  cfg->log_level = TB_LOG_INFO;
  tb_http_limits_default(&cfg->partner_api_limits);
  cfg->audit_rotate_bytes = 256 * (uint64_t)MiB;
}

/* Defaults that are strings are filled in after the walk, once we know the
 * file did not set them. */
static void set_string_defaults(struct ctx *c) {
  struct tb_config *cfg = c->cfg;
  if (cfg->node_name == NULL && cfg->node_region != NULL)
    cfg->node_name = dup_str(c, cfg->node_region);
  if (cfg->store_path == NULL) cfg->store_path = resolve(c, "var/tbgw.db");
  if (cfg->log_file == NULL) cfg->log_file = dup_str(c, "-");
  cfg->store.path = cfg->store_path;
}

static char *strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *strdup_printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return NULL;
  char *s = malloc((size_t)n + 1);
  if (s == NULL) return NULL;
  va_start(ap, fmt);
  vsnprintf(s, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return s;
}

static int load_text(const char *text, size_t len, const char *base_dir, const char *abs_path,
                     struct tb_config *out, char **problems) {
  /* Notepad and some Windows editors start UTF-8 files with a BOM. */
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
    text += 3;
    len -= 3;
  }
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    if (json_error_code(&jerr) == json_error_out_of_memory) return TB_ENOMEM;
    *problems = strdup_printf("line %d, column %d: invalid JSON: %s\n", jerr.line, jerr.column,
                              jerr.text);
    return *problems ? TB_ECONFIG : TB_ENOMEM;
  }

  struct ctx c;
  memset(&c, 0, sizeof c);
  c.cfg = out;
  c.base = out;
  c.base_dir = base_dir;
  set_defaults(out);
  if (abs_path != NULL) out->path = dup_str(&c, abs_path);

  if (!json_is_object(root)) {
    expected(&c, "an object", root);
  } else {
    walk_object(&c, root, root_fields, NFIELDS(root_fields), 0);
  }

  if (!c.oom) cross_check_limits(&c);
  if (!c.oom && json_is_object(root)) cross_check_adapters_dir(&c, root);
  json_decref(root);
  if (!c.oom && c.count == 0) set_string_defaults(&c);

  if (c.oom) {
    free(c.out);
    tb_config_free(out);
    return TB_ENOMEM;
  }
  if (c.count > 0) {
    *problems = c.out;
    tb_config_free(out);
    return TB_ECONFIG;
  }
  free(c.out);
  return 0;
}

int tb_config_load_text(const char *text, size_t len, const char *base_dir,
                        struct tb_config *out, char **problems) {
  *problems = NULL;
  memset(out, 0, sizeof *out);
  char cwd[4096];
  if (base_dir == NULL) {
    if (getcwd(cwd, sizeof cwd) == NULL) {
      *problems = strdup_printf("cannot determine the current directory: %s\n", strerror(errno));
      return *problems ? TB_EIO : TB_ENOMEM;
    }
    base_dir = cwd;
  }
  return load_text(text, len, base_dir, NULL, out, problems);
}

/* Reads at most CONFIG_FILE_MAX bytes; returns 0, TB_EIO (errno set),
 * TB_ECONFIG (too large) or TB_ENOMEM. */
static int read_file(const char *path, char **text, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return TB_EIO;
  size_t cap = 8192, n = 0;
  char *buf = malloc(cap);
  int rc = 0;
  if (buf == NULL) rc = TB_ENOMEM;
  while (rc == 0) {
    if (n == cap) {
      if (cap > CONFIG_FILE_MAX) {
        rc = TB_ECONFIG;
        break;
      }
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        rc = TB_ENOMEM;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) rc = TB_EIO;
      break;
    }
  }
  int saved_errno = errno;
  fclose(f);
  errno = saved_errno;
  if (rc == 0 && n > CONFIG_FILE_MAX) rc = TB_ECONFIG;
  if (rc != 0) {
    free(buf);
    return rc;
  }
  *text = buf;
  *len = n;
  return 0;
}

int tb_config_load(const char *path, struct tb_config *out, char **problems) {
  *problems = NULL;
  memset(out, 0, sizeof *out);
  char *text = NULL;
  size_t len = 0;
  int rc = read_file(path, &text, &len);
  if (rc == TB_EIO) {
    *problems = strdup_printf("cannot read %s: %s\n", path, strerror(errno));
    return *problems ? TB_EIO : TB_ENOMEM;
  }
  if (rc == TB_ECONFIG) {
    *problems = strdup_printf("%s: larger than %zu MiB, not a configuration file\n", path,
                              CONFIG_FILE_MAX >> 20);
    return *problems ? TB_ECONFIG : TB_ENOMEM;
  }
  if (rc != 0) return rc;

  /* The file's absolute path and directory: relative paths inside it are
   * relative to where it lives, not to wherever tbgw was started. */
  /* Joined lexically, not realpath(): symlinked config directories keep
   * the name the operator used. */
  char cwd[4096];
  char *abs;
  if (path[0] == '/' || getcwd(cwd, sizeof cwd) == NULL)
    abs = strdup(path);
  else
    abs = path_join(cwd, path);
  char *dir = abs ? strdup(abs) : NULL;
  if (dir == NULL) {
    free(abs);
    free(text);
    return TB_ENOMEM;
  }
  char *slash = strrchr(dir, '/');
  if (slash == NULL) strcpy(dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';

  rc = load_text(text, len, dir, abs, out, problems);
  free(dir);
  free(abs);
  free(text);
  return rc;
}

void tb_config_free(struct tb_config *cfg) {
  if (cfg == NULL) return;
  free(cfg->path);
  free(cfg->node_region);
  free(cfg->node_name);
  free(cfg->local_api_host);
  for (size_t i = 0; i < cfg->token_count; i++) {
    free(cfg->tokens[i].client);
    free(cfg->tokens[i].token);
  }
  free(cfg->tokens);
  free(cfg->store_path);
  free(cfg->log_file);
  free(cfg->adapters_dir);
  free(cfg->audit_path);
  for (size_t i = 0; i < cfg->key_count; i++) {
    struct tb_config_key *k = &cfg->keys[i];
    free(k->name);
    free(k->kind);
    free(k->private_key);
    free(k->public_key);
    free(k->certificate);
    free(k->sm2_id);
  }
  free(cfg->keys);
  free(cfg->partner_api_host);
  free(cfg->partner_api_tls_certificate);
  free(cfg->partner_api_tls_private_key);
  for (size_t i = 0; i < cfg->partner_count; i++) {
    struct tb_config_partner *p = &cfg->partners[i];
    free(p->name);
    free(p->adapter);
    free(p->endpoint);
    free(p->tls.ca);
    free(p->tls.client_certificate);
    free(p->tls.client_key);
    free(p->tls.client_ca);
    for (size_t k = 0; k < p->region_count; k++) free(p->regions[k]);
    free(p->regions);
    free(p->settings_json);
  }
  free(cfg->partners);
  memset(cfg, 0, sizeof *cfg);
}

const struct tb_config_partner *tb_config_route(const struct tb_config *cfg,
                                                const char *target_region) {
  if (cfg == NULL || target_region == NULL) return NULL;
  for (size_t i = 0; i < cfg->partner_count; i++) {
    const struct tb_config_partner *p = &cfg->partners[i];
    for (size_t k = 0; k < p->region_count; k++)
      if (p->regions[k] != NULL && strcmp(p->regions[k], target_region) == 0) return p;
  }
  return NULL;
}

const struct tb_config_partner *tb_config_partner_find(const struct tb_config *cfg,
                                                       const char *name) {
  if (cfg == NULL || name == NULL) return NULL;
  for (size_t i = 0; i < cfg->partner_count; i++)
    if (cfg->partners[i].name != NULL && strcmp(cfg->partners[i].name, name) == 0)
      return &cfg->partners[i];
  return NULL;
}

const struct tb_config_key *tb_config_key_find(const struct tb_config *cfg, const char *name) {
  if (cfg == NULL || name == NULL) return NULL;
  for (size_t i = 0; i < cfg->key_count; i++)
    if (cfg->keys[i].name != NULL && strcmp(cfg->keys[i].name, name) == 0) return &cfg->keys[i];
  return NULL;
}

void tb_config_delivery_default(struct tb_config_delivery *d) {
  d->max_in_flight = 8;
  d->connect_timeout_ms = 5000;
  d->timeout_ms = 15000;
  d->max_attempts = 20;
  d->backoff_initial_ms = 1000;
  d->backoff_max_ms = 300000;
  d->circuit_failures = 5;
  d->circuit_open_ms = 30000;
}
