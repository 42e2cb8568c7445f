/*
 * case/validate.h — validation of a canonical case (SPEC §3, schema
 * "tongban.case/v1") before the gateway accepts it.
 *
 * The validator walks a parsed jansson document once, with one table per
 * object, and collects every violation it finds (not just the first) with a
 * dotted field path, a stable machine code and a message a hall-software
 * developer can act on. Messages never contain values from the case (ID
 * numbers, phones, names, addresses): they may be logged and returned over
 * HTTP as they are. docs/canonical-case.md lists every field, rule and code;
 * schemas/case.v1.json publishes the same rules as JSON Schema.
 *
 * This header also gives the whole public surface of the case module: the
 * identifier checks (case/idcheck.h), the RFC 3339 parser (case/rfc3339.h)
 * and the media-type table (case/media.h).
 */
#ifndef TB_CASE_VALIDATE_H
#define TB_CASE_VALIDATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "case/idcheck.h"
#include "case/media.h"
#include "case/rfc3339.h"

#define TB_CASE_SCHEMA "tongban.case/v1"

/* Configurable limits (config: "cases" section, see docs/canonical-case.md). */
struct tb_case_limits {
  size_t max_materials_bytes; /* sum of materials[].size per case; default 20 MiB */
  size_t max_materials;       /* max number of materials; default 100 */
  size_t max_string_chars;    /* cap, in Unicode characters, on remarks; also an upper
                               * bound on every other free-text field's own cap
                               * (names 200, addresses 256, ...); default 2000 */
};

#define TB_CASE_DEFAULT_MAX_MATERIALS_BYTES ((size_t)20 * 1024 * 1024)
#define TB_CASE_DEFAULT_MAX_MATERIALS ((size_t)100)
#define TB_CASE_DEFAULT_MAX_STRING_CHARS ((size_t)2000)

/* Fills lim with the defaults above. */
void tb_case_limits_default(struct tb_case_limits *lim);

#define TB_CASE_MAX_VIOLATIONS 64

/*
 * One violation. Codes (stable, documented in docs/canonical-case.md):
 * required, type, unknown-field, const, enum, empty, pattern, too-long,
 * control-char, division, check-character, birth-date, id-type-kind, range,
 * base64, size-mismatch, digest-mismatch, too-large, too-many, date-time.
 */
struct tb_case_violation {
  char path[160];    /* "applicant.id_number", "materials[1].sm3", "" for the root;
                      * truncated (at a UTF-8 boundary) if a key is absurdly long */
  char code[32];     /* stable machine code, see above */
  char message[256]; /* English, actionable, never echoes personal data */
};

struct tb_case_violations {
  size_t count;   /* number stored in items */
  size_t dropped; /* violations beyond TB_CASE_MAX_VIOLATIONS, counted not stored */
  struct tb_case_violation items[TB_CASE_MAX_VIOLATIONS];
};

/*
 * Validates a parsed canonical case against every SPEC §3 rule except
 * routing (whether target_region is served by a partner is the API's
 * no-route check). Collects all violations in document order: the keys of
 * each object are visited in the order they appear in the document (jansson
 * keeps insertion order); after an object's own keys come the checks that
 * involve several of its fields (missing required fields, mail delivery
 * requirements, a material's size and digest against its content).
 *
 * doc and lim are borrowed; lim may be NULL for the defaults. out is always
 * reset first. Returns 0 if the case is valid, TB_EVALIDATE if out holds
 * violations, TB_EINVAL if doc or out is NULL, TB_ENOMEM / TB_ECRYPTO if SM3
 * could not be computed (out then holds what was found so far). No global
 * state; thread-safe; allocates only an OpenSSL digest context, and only
 * when a material carries content. "Today" for birth dates is the current
 * clock in China Standard Time.
 */
int tb_case_validate(const json_t *doc, const struct tb_case_limits *lim,
                     struct tb_case_violations *out);

/* The body of a supplement (补正), {"materials": [...]}: at least one
 * material, each checked by exactly the rules of a case's materials[] (paths
 * "materials[0].sm3", ...), the same count and size limits; no other field.
 * Returns as tb_case_validate. */
int tb_case_validate_supplement(const json_t *doc, const struct tb_case_limits *lim,
                                struct tb_case_violations *out);

/* Same, with "now" given as Unix seconds (tests, replays of stored cases). */
int tb_case_validate_at(const json_t *doc, const struct tb_case_limits *lim, int64_t now_unix_s,
                        struct tb_case_violations *out);

#endif
