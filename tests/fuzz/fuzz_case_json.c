/*
 * fuzz_case_json — a case body as POST /v1/cases receives it: jansson with
 * JSON_REJECT_DUPLICATES (as api/cases.c), then tb_case_validate_at with the
 * default limits and with tiny ones (so the count, size and length caps are
 * reached), and the same document as a supplement body. Checks: the result
 * is 0 or TB_EVALIDATE (TB_ENOMEM / TB_ECRYPTO only with violations kept so
 * far), valid means no violations, and every stored path, code and message
 * is NUL-terminated within its array.
 */
#include <jansson.h>
#include <string.h>

#include "case/validate.h"
#include "crypto/crypto.h"
#include "fuzz.h"
#include "tbgw/error.h"

/* 2024-05-07T00:00:00+08:00: a fixed "today" keeps runs reproducible. */
#define FUZZ_NOW 1715011200

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  char err[TB_ERRMSG_MAX];
  tb_fuzz_quiet_logs();
  if (tb_crypto_global_init(err) != 0) {
    fprintf(stderr, "fuzz_case_json: %s\n", err);
    abort();
  }
  return 0;
}

static void check(int rc, const struct tb_case_violations *v) {
  TB_FUZZ_CHECK(rc == 0 || rc == TB_EVALIDATE || rc == TB_ENOMEM || rc == TB_ECRYPTO);
  TB_FUZZ_CHECK(v->count <= TB_CASE_MAX_VIOLATIONS);
  TB_FUZZ_CHECK(rc != 0 || (v->count == 0 && v->dropped == 0));
  TB_FUZZ_CHECK(rc != TB_EVALIDATE || v->count > 0);
  for (size_t i = 0; i < v->count; i++) {
    TB_FUZZ_CHECK(memchr(v->items[i].path, '\0', sizeof v->items[i].path) != NULL);
    TB_FUZZ_CHECK(memchr(v->items[i].code, '\0', sizeof v->items[i].code) != NULL);
    TB_FUZZ_CHECK(memchr(v->items[i].message, '\0', sizeof v->items[i].message) != NULL);
    TB_FUZZ_CHECK(v->items[i].code[0] != '\0');
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  json_error_t jerr;
  json_t *doc = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
  if (doc == NULL) return 0;
  static struct tb_case_violations v; /* 30 KB: not on the stack */
  struct tb_case_limits tiny = {.max_materials_bytes = 64, .max_materials = 2,
                                .max_string_chars = 8};
  check(tb_case_validate_at(doc, NULL, FUZZ_NOW, &v), &v);
  check(tb_case_validate_at(doc, &tiny, FUZZ_NOW, &v), &v);
  check(tb_case_validate_supplement(doc, NULL, &v), &v);
  json_decref(doc);
  return 0;
}
