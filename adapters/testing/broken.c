/*
 * Deliberately broken adapters, one .so per defect, for the loader's tests
 * (tests/unit/test_plugin_loader.c, tests/integration/test_adapters_startup.py).
 * Each is built from this file with one BROKEN_* macro and ADAPTER_NAME set
 * by adapters/testing/CMakeLists.txt:
 *
 *   bad-major          abi_major is the host's + 1
 *   newer-minor        abi_minor is the host's + 1 (needs a newer gateway)
 *   no-entry           exports no tbgw_adapter_entry (a misspelt one instead)
 *   missing-op         classify is NULL
 *   failing-init       init refuses every partner: "keys.sign: no such key"
 *   wrong-name         its description calls it "somebody-else"
 *   unresolved-symbol  calls a function nothing defines: dlopen(RTLD_NOW) fails
 *
 * Apart from its one defect each is a working (if useless) adapter, so the
 * test proves the loader catches exactly that defect.
 */
#include <stdio.h>
#include <string.h>

#include "tbgw/adapter.h"

#ifndef ADAPTER_NAME
#error "ADAPTER_NAME must be defined by the build"
#endif

#ifdef BROKEN_UNRESOLVED_SYMBOL
/* Declared, never defined anywhere: the library links (undefined symbols
 * allowed for this one target) but cannot be loaded with RTLD_NOW. */
extern int tb_testing_symbol_that_does_not_exist(void);
#endif

static int broken_init(const struct tb_host *host, const char *settings_json, size_t settings_len,
                       void **state, char *err) {
  (void)host, (void)settings_json, (void)settings_len;
#ifdef BROKEN_FAILING_INIT
  (void)state;
  snprintf(err, TB_ERRMSG_MAX, "keys.sign: no such key");
  return TB_ECONFIG;
#else
  (void)err;
#ifdef BROKEN_UNRESOLVED_SYMBOL
  if (tb_testing_symbol_that_does_not_exist() != 0) return TB_EINTERNAL;
#endif
  *state = NULL;
  return 0;
#endif
}

static void broken_fini(void *state) { (void)state; }

static const struct tb_inbound_route *broken_routes(void *state, size_t *count) {
  (void)state;
  *count = 0;
  return NULL;
}

static int broken_encode(void *state, const struct tb_outbound *msg, struct tb_wire_request *out,
                         char *err) {
  (void)state, (void)msg, (void)out;
  snprintf(err, TB_ERRMSG_MAX, "this adapter is for tests only");
  return TB_EINVAL;
}

#ifndef BROKEN_MISSING_OP
static int broken_classify(void *state, const struct tb_outbound *msg,
                           const struct tb_wire_response *resp, struct tb_classification *out,
                           char *err) {
  (void)state, (void)msg, (void)resp, (void)err;
  memset(out, 0, sizeof *out);
  out->verdict = TB_VERDICT_RETRY;
  out->retry_after_ms = -1;
  return 0;
}
#endif

static int broken_decode(void *state, const struct tb_inbound_request *req,
                         struct tb_inbound_message *out, char *err) {
  (void)state, (void)req, (void)err;
  memset(out, 0, sizeof *out);
  out->kind = TB_INBOUND_REFUSED;
  return 0;
}

static int broken_answer(void *state, const struct tb_inbound_request *req,
                         const struct tb_inbound_message *msg, enum tb_inbound_outcome outcome,
                         const char *receipt_no, struct tb_wire_answer *out, char *err) {
  (void)state, (void)req, (void)msg, (void)outcome, (void)receipt_no, (void)out;
  snprintf(err, TB_ERRMSG_MAX, "this adapter is for tests only");
  return TB_EINVAL;
}

static void broken_release(void *state, struct tb_inbound_message *msg) {
  (void)state, (void)msg;
}

static const struct tb_adapter adapter = {
#ifdef BROKEN_BAD_MAJOR
    .abi_major = TB_ADAPTER_ABI_MAJOR + 1,
#else
    .abi_major = TB_ADAPTER_ABI_MAJOR,
#endif
#ifdef BROKEN_NEWER_MINOR
    .abi_minor = TB_ADAPTER_ABI_MINOR + 1,
#else
    .abi_minor = TB_ADAPTER_ABI_MINOR,
#endif
#ifdef BROKEN_WRONG_NAME
    .name = "somebody-else",
#else
    .name = ADAPTER_NAME,
#endif
    .version = "0.0.0-broken",
    .init = broken_init,
    .fini = broken_fini,
    .routes = broken_routes,
    .encode = broken_encode,
#ifdef BROKEN_MISSING_OP
    .classify = NULL,
#else
    .classify = broken_classify,
#endif
    .decode = broken_decode,
    .answer = broken_answer,
    .release = broken_release,
};

#ifdef BROKEN_NO_ENTRY
/* The entry point under a wrong name: the loader looks for exactly
 * tbgw_adapter_entry. */
TB_ADAPTER_EXPORT const struct tb_adapter *tbgw_adapter_entry_v1(void);
TB_ADAPTER_EXPORT const struct tb_adapter *tbgw_adapter_entry_v1(void) { return &adapter; }
#else
TB_ADAPTER_EXPORT const struct tb_adapter *tbgw_adapter_entry(void) { return &adapter; }
#endif
