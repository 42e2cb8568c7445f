/*
 * audit/verify.c — the streaming chain check behind `tbgw audit verify`.
 *
 * One buffer of TB_AUDIT_RECORD_MAX bytes is allocated per call and nothing
 * per line, so memory stays flat whatever the file size. The first record
 * that fails is named; to tell a deletion from a reordering or an insertion
 * the reader keeps going (still streaming) looking for the seq that was
 * expected at the failure, then stops.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit_internal.h"

const char *tb_audit_fault_name(enum tb_audit_fault f) {
  switch (f) {
  case TB_AUDIT_OK: return "ok";
  case TB_AUDIT_EDITED: return "edited";
  case TB_AUDIT_DELETED: return "deleted";
  case TB_AUDIT_INSERTED: return "inserted";
  case TB_AUDIT_REORDERED: return "reordered";
  case TB_AUDIT_TRUNCATED: return "truncated";
  case TB_AUDIT_MALFORMED: return "not JSON";
  case TB_AUDIT_IO: return "read error";
  }
  return "unknown";
}

struct reader {
  FILE *f;
  char *buf;
  size_t start, end;
  int eof;
};

enum { LINE_OK = 1, LINE_EOF = 0, LINE_PARTIAL = -1, LINE_LONG = -2, LINE_IOERR = -3 };

/* Next line without its '\n'. PARTIAL: bytes at EOF without a newline. */
static int next_line(struct reader *r, const char **line, size_t *len) {
  size_t scanned = r->start;
  for (;;) {
    char *nl = memchr(r->buf + scanned, '\n', r->end - scanned);
    if (nl != NULL) {
      *line = r->buf + r->start;
      *len = (size_t)(nl - *line);
      r->start = (size_t)(nl - r->buf) + 1;
      return LINE_OK;
    }
    if (r->eof) {
      if (r->end == r->start) return LINE_EOF;
      *line = r->buf + r->start;
      *len = r->end - r->start;
      r->start = r->end;
      return LINE_PARTIAL;
    }
    if (r->end - r->start >= TB_AUDIT_RECORD_MAX) return LINE_LONG;
    memmove(r->buf, r->buf + r->start, r->end - r->start);
    r->end -= r->start;
    r->start = 0;
    scanned = r->end;
    size_t n = fread(r->buf + r->end, 1, TB_AUDIT_RECORD_MAX - r->end, r->f);
    r->end += n;
    if (n == 0) {
      if (ferror(r->f)) return LINE_IOERR;
      r->eof = 1;
    }
  }
}

static int fail(struct tb_audit_verify_result *res, enum tb_audit_fault f, uint64_t line,
                int64_t seq, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static int fail(struct tb_audit_verify_result *res, enum tb_audit_fault f, uint64_t line,
                int64_t seq, const char *fmt, ...) {
  res->fault = f;
  res->bad_line = line;
  res->bad_seq = seq;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(res->reason, sizeof res->reason, fmt, ap);
  va_end(ap);
  return TB_EVALIDATE;
}

/* Reads the prev_file of an audit.rotated link (rare: a plain scan). */
static void link_file(const char *line, size_t len, char *out, size_t out_size) {
  static const char key[] = "\"prev_file\":\"";
  out[0] = '\0';
  for (size_t i = 0; i + sizeof key - 1 < len; i++) {
    if (memcmp(line + i, key, sizeof key - 1) != 0) continue;
    const char *s = line + i + sizeof key - 1, *e = memchr(s, '"', len - (size_t)(s - line));
    if (e == NULL) return;
    size_t n = (size_t)(e - s) < out_size - 1 ? (size_t)(e - s) : out_size - 1;
    memcpy(out, s, n);
    out[n] = '\0';
    return;
  }
}

/*
 * The record at line L (seq S, hash h_L) does not follow the anchor (seq E-1,
 * hash H). Classify by reading on for seq E:
 *   not found                       → deleted (E..S-1 are gone);
 *   found on the next line, chaining from H:
 *       and L chains from it        → reordered (two records swapped),
 *       otherwise                   → inserted (line L is foreign);
 *   found further on                → reordered.
 */
static int classify(struct reader *r, struct tb_audit_verify_result *res, uint64_t lineno,
                    const struct tb__audit_rec *bad, const char *bad_line_prev,
                    const struct tb_audit_anchor *anchor) {
  int64_t want = anchor->seq + 1, s = bad->seq;
  if (s < want)
    return fail(res, TB_AUDIT_INSERTED, lineno, s,
                "seq %lld comes after seq %lld: a record was duplicated or inserted here",
                (long long)s, (long long)anchor->seq);
  const char *line;
  size_t len;
  uint64_t n = lineno;
  int k;
  char why[TB_ERRMSG_MAX], h[TB_DIGEST_HEX_LEN];
  while ((k = next_line(r, &line, &len)) == LINE_OK || k == LINE_PARTIAL) {
    n++;
    struct tb__audit_rec rec;
    if (tb__audit_rec_parse(line, len, &rec, why) != 0 || rec.seq != want) continue;
    if (n == lineno + 1 && memcmp(rec.prev, anchor->hash, 64) == 0) {
      int chains = tb__audit_rec_hash_ok(line, &rec, h, why) == 1 && s == want + 1 &&
                   memcmp(bad_line_prev, h, 64) == 0;
      if (chains)
        return fail(res, TB_AUDIT_REORDERED, lineno, s,
                    "seq %lld is before seq %lld (line %llu): records were swapped",
                    (long long)s, (long long)want, (unsigned long long)n);
      return fail(res, TB_AUDIT_INSERTED, lineno, s,
                  "the record (seq %lld) does not belong to the chain, which continues with "
                  "seq %lld on line %llu: it was inserted",
                  (long long)s, (long long)want, (unsigned long long)n);
    }
    return fail(res, TB_AUDIT_REORDERED, lineno, s,
                "expected seq %lld here, found seq %lld; seq %lld appears later, at line %llu: "
                "records were reordered",
                (long long)want, (long long)s, (long long)want, (unsigned long long)n);
  }
  if (s == want + 1)
    return fail(res, TB_AUDIT_DELETED, lineno, s,
                "expected seq %lld, found seq %lld: record %lld was deleted", (long long)want,
                (long long)s, (long long)want);
  return fail(res, TB_AUDIT_DELETED, lineno, s,
              "expected seq %lld, found seq %lld: records %lld..%lld were deleted",
              (long long)want, (long long)s, (long long)want, (long long)(s - 1));
}

int tb_audit_verify_stream(FILE *f, const struct tb_audit_anchor *expect,
                           struct tb_audit_verify_result *res) {
  memset(res, 0, sizeof *res);
  res->bad_seq = -1;
  struct reader r = {.f = f, .buf = malloc(TB_AUDIT_RECORD_MAX)};
  if (r.buf == NULL) return TB_ENOMEM;
  /* have: the chain state is known (seq -1 in expect: hash known, seq not) */
  struct tb_audit_anchor anchor = {0};
  int have = expect != NULL;
  if (have) anchor = *expect;
  res->last = anchor;
  const char *line;
  size_t len;
  uint64_t lineno = 0;
  int rc = 0, k;
  char why[TB_ERRMSG_MAX], h[TB_DIGEST_HEX_LEN];
  while (rc == 0 && (k = next_line(&r, &line, &len)) != LINE_EOF) {
    lineno++;
    struct tb__audit_rec rec;
    if (k == LINE_IOERR) {
      rc = fail(res, TB_AUDIT_IO, lineno, -1, "read error after line %llu",
                (unsigned long long)(lineno - 1));
      break;
    }
    if (k == LINE_LONG) {
      rc = fail(res, TB_AUDIT_MALFORMED, lineno, -1, "line is longer than %d bytes",
                TB_AUDIT_RECORD_MAX);
      break;
    }
    if (k == LINE_PARTIAL) {
      (void)tb__audit_rec_parse(line, len, &rec, why); /* for its seq, if readable */
      rc = fail(res, TB_AUDIT_TRUNCATED, lineno, rec.seq,
                "the last line (%zu bytes) ends without a newline: a write was cut short", len);
      break;
    }
    if (tb__audit_rec_parse(line, len, &rec, why) != 0) {
      rc = fail(res, TB_AUDIT_MALFORMED, lineno, rec.seq, "%s", why);
      break;
    }
    int ok = tb__audit_rec_hash_ok(line, &rec, h, why);
    if (ok < 0) {
      rc = fail(res, TB_AUDIT_IO, lineno, rec.seq, "%s", why);
      break;
    }
    if (!ok) {
      rc = fail(res, TB_AUDIT_EDITED, lineno, rec.seq,
                "the record's content does not match its hash: it was edited");
      break;
    }
    if (!have) {
      int is_link = rec.event_len == strlen(TB_AUDIT_EV_ROTATED) &&
                    memcmp(rec.event, TB_AUDIT_EV_ROTATED, rec.event_len) == 0;
      if (is_link) {
        res->started_from_link = 1;
        link_file(line, len, res->link_file, sizeof res->link_file);
      } else if (rec.seq != 1 || memcmp(rec.prev, TB_AUDIT_GENESIS_HASH, 64) != 0) {
        rc = fail(res, TB_AUDIT_DELETED, lineno, rec.seq,
                  "the file does not start a chain (seq 1, prev 000...) nor continue one "
                  "(audit.rotated): the records before seq %lld were deleted",
                  (long long)rec.seq);
        break;
      }
    } else if (anchor.seq < 0) { /* only the hash is known: it fixes the seq */
      if (memcmp(rec.prev, anchor.hash, 64) != 0) {
        rc = fail(res, TB_AUDIT_DELETED, lineno, rec.seq,
                  "prev is not the expected hash %.64s: records before this one were deleted "
                  "or replaced",
                  anchor.hash);
        break;
      }
    } else if (rec.seq != anchor.seq + 1) {
      rc = classify(&r, res, lineno, &rec, rec.prev, &anchor);
      break;
    } else if (memcmp(rec.prev, anchor.hash, 64) != 0) {
      if (lineno == 1)
        rc = fail(res, TB_AUDIT_INSERTED, lineno, rec.seq,
                  "prev does not match the last hash of the previous file: the files do not "
                  "follow each other, or records were deleted or replaced");
      else
        rc = fail(res, TB_AUDIT_INSERTED, lineno, rec.seq,
                  "prev does not match the hash of line %llu: this record was inserted or "
                  "replaced",
                  (unsigned long long)(lineno - 1));
      break;
    }
    have = 1;
    anchor.seq = rec.seq;
    memcpy(anchor.hash, h, sizeof anchor.hash);
    res->last = anchor;
    res->records++;
  }
  free(r.buf);
  return rc;
}
