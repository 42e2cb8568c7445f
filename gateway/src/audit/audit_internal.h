/*
 * audit/audit_internal.h — what the writer, the verifier and the typed
 * events share: a growable byte buffer, JSON string escaping and syntax
 * checking without allocation, and the positional parse of one record line.
 */
#ifndef TB_AUDIT_AUDIT_INTERNAL_H
#define TB_AUDIT_AUDIT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "audit/audit.h"

/* `,"hash":"` + 64 hex + `"}` — what follows BODY on every line. */
#define TB__AUDIT_HASH_SUFFIX_LEN (9 + 64 + 2)

struct tb__audit_buf {
  char *p;
  size_t len, cap;
};
int tb__audit_buf_add(struct tb__audit_buf *b, const void *data, size_t len);
int tb__audit_buf_adds(struct tb__audit_buf *b, const char *s);
/* Appends s as a JSON string (quotes included). TB_EINVAL if s is not
 * valid UTF-8. */
int tb__audit_buf_add_jstr(struct tb__audit_buf *b, const char *s);
void tb__audit_buf_free(struct tb__audit_buf *b);

/* 1 if [p, p+len) is exactly one JSON value (surrounding whitespace allowed)
 * and, when want_object, that value is an object. Nesting is capped at 32.
 * Allocates nothing. */
int tb__audit_json_valid(const char *p, size_t len, int want_object);

/* 1 if s is [a-z0-9_.]+ and at most 64 bytes. */
int tb__audit_event_name_ok(const char *s);

/* One line (without its '\n') taken apart by position. */
struct tb__audit_rec {
  int64_t seq;
  const char *event; /* not NUL-terminated */
  size_t event_len;
  const char *prev;  /* 64 hex, not NUL-terminated */
  const char *hash;  /* 64 hex, not NUL-terminated */
  size_t body_len;   /* bytes hashed: line[0, body_len) */
};

/* Checks the layout (`{"seq":N,"ts":"..","event":"..",...,"prev":"H","hash":"H"}`)
 * and the JSON syntax of the whole line, fills r. 0 or TB_EPARSE with a
 * sentence in why (TB_ERRMSG_MAX). Does not check the hash. */
int tb__audit_rec_parse(const char *line, size_t len, struct tb__audit_rec *r, char *why);

/* SM3 hex of line[0, r->body_len) into out; 1 if it equals r->hash.
 * Returns -1 (and why) if SM3 itself failed. */
int tb__audit_rec_hash_ok(const char *line, const struct tb__audit_rec *r,
                          char out[TB_DIGEST_HEX_LEN], char *why);

/* Formats one complete record line ('\n' included) into b (appended):
 * seq, ts, the event's fields, prev, hash. *hash_out receives its hash.
 * TB_EINVAL, TB_ELIMIT, TB_ENOMEM, TB_ECRYPTO. */
int tb__audit_format(struct tb__audit_buf *b, int64_t seq, const char *prev,
                     const struct tb_audit_event *ev, char hash_out[TB_DIGEST_HEX_LEN],
                     char *err);

#endif
