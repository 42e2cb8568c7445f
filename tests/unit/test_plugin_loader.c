/*
 * Unit tests of plugin/loader.c with real shared objects: every deliberately
 * broken adapter of adapters/testing is refused with the right code and a
 * message that names the adapter and the exact defect, and a refused library
 * is no longer mapped (dlopen(RTLD_NOLOAD) finds nothing). The example
 * adapter (adapters/example) loads, initialises, encodes, classifies,
 * decodes and answers through the real host services and keystore
 * (tests/support/adapter_fixture.h), which is what docs/adapters.md
 * promises of it.
 *
 * TB_ADAPTERS_DIR names the directory of the built adapters (ctest sets it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter_fixture.h"
#include "plugin/host.h"
#include "plugin/loader.h"
#include "tbgw/adapter.h"

static const char *adapters_dir(void) {
  const char *d = getenv("TB_ADAPTERS_DIR");
  if (d == NULL) fail_msg("TB_ADAPTERS_DIR is not set (the directory of the built adapters)");
  return d;
}

static void assert_contains(const char *haystack, const char *needle) {
  if (strstr(haystack, needle) == NULL) fail_msg("expected \"%s\" in:\n  %s", needle, haystack);
}

/* 1 if the library at path is mapped in this process. */
static int is_loaded(const char *path) {
  void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (h == NULL) return 0;
  dlclose(h); /* drop the reference RTLD_NOLOAD just took */
  return 1;
}

/* Opens adapter name expecting failure code rc and every needle in the
 * message; then checks nothing of it stays loaded. */
static void expect_refused(const char *name, int rc, const char *const *needles) {
  struct tb_adapter_lib lib;
  char err[TB_ERRMSG_MAX] = "";
  int got = tb_adapter_lib_open(adapters_dir(), name, &lib, err);
  if (got != rc) fail_msg("%s: expected %s, got %s (%s)", name, tb_err_name(rc), tb_err_name(got), err);
  char quoted[80];
  snprintf(quoted, sizeof quoted, "adapter \"%s\"", name);
  assert_contains(err, quoted);
  for (size_t i = 0; needles[i] != NULL; i++) assert_contains(err, needles[i]);
  assert_null(lib.handle);
  assert_null(lib.ops);
  char path[4200];
  snprintf(path, sizeof path, "%s/%s.so", adapters_dir(), name);
  if (is_loaded(path)) fail_msg("%s is still loaded after being refused", path);
}

/* ---- broken adapters ---------------------------------------------------------- */

static void test_bad_major_is_refused(void **state) {
  (void)state;
  char want[128];
  snprintf(want, sizeof want, "built for ABI %u.%u, this gateway has ABI %u.%u",
           TB_ADAPTER_ABI_MAJOR + 1, TB_ADAPTER_ABI_MINOR, TB_ADAPTER_ABI_MAJOR,
           TB_ADAPTER_ABI_MINOR);
  const char *const needles[] = {want, "major versions must match", NULL};
  expect_refused("bad-major", TB_EABI, needles);
}

static void test_newer_minor_is_refused(void **state) {
  (void)state;
  char want[128];
  snprintf(want, sizeof want, "needs ABI %u.%u but this gateway has only %u.%u",
           TB_ADAPTER_ABI_MAJOR, TB_ADAPTER_ABI_MINOR + 1, TB_ADAPTER_ABI_MAJOR,
           TB_ADAPTER_ABI_MINOR);
  const char *const needles[] = {want, NULL};
  expect_refused("newer-minor", TB_EABI, needles);
}

static void test_missing_entry_symbol_is_refused(void **state) {
  (void)state;
  const char *const needles[] = {"no-entry.so does not export tbgw_adapter_entry()", NULL};
  expect_refused("no-entry", TB_EABI, needles);
}

static void test_missing_operation_is_refused(void **state) {
  (void)state;
  const char *const needles[] = {"operation classify is missing (NULL)", NULL};
  expect_refused("missing-op", TB_EABI, needles);
}

static void test_wrong_name_is_refused(void **state) {
  (void)state;
  const char *const needles[] = {"wrong-name.so calls itself \"somebody-else\"", NULL};
  expect_refused("wrong-name", TB_EABI, needles);
}

static void test_unresolved_symbol_is_refused(void **state) {
  (void)state;
  const char *const needles[] = {"cannot load", "unresolved-symbol.so",
                                 "tb_testing_symbol_that_does_not_exist", NULL};
  expect_refused("unresolved-symbol", TB_EIO, needles);
}

static void test_missing_library_is_refused(void **state) {
  (void)state;
  const char *const needles[] = {"no-such-adapter.so not found", "adapters.dir", NULL};
  expect_refused("no-such-adapter", TB_EIO, needles);
  struct tb_adapter_lib lib;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_adapter_lib_open(adapters_dir(), "../etc", &lib, err), TB_EINVAL);
  assert_int_equal(tb_adapter_lib_open(NULL, "example", &lib, err), TB_ECONFIG);
  assert_contains(err, "no adapters.dir configured");
}

static void test_failing_init_is_reported_with_the_adapters_reason(void **state) {
  (void)state;
  struct tb_adapter_lib lib;
  char err[TB_ERRMSG_MAX] = "";
  int rc = tb_adapter_lib_open(adapters_dir(), "failing-init", &lib, err);
  if (rc != 0) fail_msg("%s", err);
  struct tb_plugin_host host;
  tb_plugin_host_init(&host, NULL, "laizhou", "430603");
  struct tb_adapter_instance inst;
  rc = tb_adapter_instance_init(&inst, &lib, &host.table, "{}", 2, err);
  assert_int_equal(rc, TB_ECONFIG);
  assert_string_equal(err,
                      "adapter \"failing-init\" refused partner \"laizhou\": keys.sign: no such key");
  assert_null(inst.lib);
  tb_adapter_instance_fini(&inst); /* harmless on a failed init */
  char path[4200];
  snprintf(path, sizeof path, "%s", lib.path);
  assert_true(is_loaded(path));
  tb_adapter_lib_close(&lib);
  assert_false(is_loaded(path));
}

/* ---- the example adapter through the real host ------------------------------ */

static struct tb_adapter_fixture fx;

static const char SETTINGS[] =
    "{\"name\": \"laizhou\", \"adapter\": \"example\", \"regions\": [\"370683\"],"
    " \"endpoint\": \"https://127.0.0.1:9443\", \"keys\": {\"sign\": \"gw-rsa\","
    " \"verify\": \"laizhou-rsa\"}, \"delivery\": {\"max_in_flight\": 2}}";

static int setup_example(void **state) {
  (void)state;
  if (tb_fixture_setup_keys(&fx) != 0) return -1;
  return tb_fixture_load(&fx, "example", "laizhou", SETTINGS);
}

static int teardown_example(void **state) {
  (void)state;
  char path[4200];
  snprintf(path, sizeof path, "%s", fx.lib.path);
  tb_fixture_teardown(&fx);
  tb_crypto_global_fini();
  return is_loaded(path) ? -1 : 0; /* closing unloads */
}

static const struct tb_adapter *ops(void) { return fx.lib.ops; }
static const struct tb_host *host(void) { return &fx.host.table; }

static void test_example_loads_with_its_routes(void **state) {
  (void)state;
  assert_string_equal(ops()->name, "example");
  assert_string_equal(ops()->version, "1.0.0");
  assert_int_equal(fx.inst.route_count, 1);
  assert_string_equal(fx.inst.routes[0].method, "POST");
  assert_string_equal(fx.inst.routes[0].path, "/example/notify");
}

static const char CASE_BODY[] = "{\"case_id\":\"430603-20240506-000123\",\"item\":{\"code\":\"x\"}}";

static void free_request(struct tb_wire_request *r) {
  free(r->path);
  free(r->content_type);
  free(r->headers);
  free(r->body.data);
}

static void test_example_encode_wraps_and_signs(void **state) {
  (void)state;
  struct tb_outbound msg = {.type = TB_MSG_CASE_SUBMIT,
                            .message_id = "7d0e6f5c-3c1b-4a55-9d59-0d3c6c0f2a11",
                            .case_id = "430603-20240506-000123",
                            .sender_region = "430603",
                            .receiver_region = "370683",
                            .body = CASE_BODY,
                            .body_len = strlen(CASE_BODY),
                            .attempt = 1,
                            .now_ms = 1714960800000LL}; /* 2024-05-06T10:00:00+08:00 */
  struct tb_wire_request req;
  char err[TB_ERRMSG_MAX] = "";
  int rc = ops()->encode(fx.inst.state, &msg, &req, err);
  if (rc != 0) fail_msg("encode: %s", err);
  assert_string_equal(req.path, "/example/receive");
  assert_string_equal(req.content_type, "application/json; charset=UTF-8");
  const char *prefix = "X-Example-Signature: ";
  assert_memory_equal(req.headers, prefix, strlen(prefix));
  size_t hl = strlen(req.headers);
  assert_true(hl > strlen(prefix) + 2 && strcmp(req.headers + hl - 2, "\r\n") == 0);

  json_t *env = json_loadb((const char *)req.body.data, req.body.len, 0, NULL);
  assert_non_null(env);
  assert_string_equal(json_string_value(json_object_get(env, "id")), msg.message_id);
  assert_string_equal(json_string_value(json_object_get(env, "type")), "CASE_SUBMIT");
  assert_string_equal(json_string_value(json_object_get(env, "sent_at")),
                      "2024-05-06T10:00:00+08:00");
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(env, "payload"), "case_id")),
      "430603-20240506-000123");
  json_decref(env);

  /* The signature is over the exact body, with our RSA key. */
  const char *b64 = req.headers + strlen(prefix);
  struct tb_bytes sig = {0};
  assert_int_equal(host()->base64_decode(b64, hl - strlen(prefix) - 2, &sig), 0);
  assert_int_equal(sig.len, 256); /* RSA-2048 */
  assert_int_equal(host()->verify(host()->ctx, "gw-rsa", req.body.data, req.body.len, sig.data,
                                  sig.len, err),
                   0);
  req.body.data[req.body.len - 2] ^= 1;
  assert_int_equal(host()->verify(host()->ctx, "gw-rsa", req.body.data, req.body.len, sig.data,
                                  sig.len, err),
                   TB_ECRYPTO);
  free(sig.data);
  free_request(&req);

  /* A canonical body that is not JSON is an error, not a request. */
  msg.body = "{oops";
  msg.body_len = 5;
  assert_int_equal(ops()->encode(fx.inst.state, &msg, &req, err), TB_EINVAL);
  assert_contains(err, "canonical body is not JSON");
}

static void classify(int status, const char *body, const struct tb_header *headers, size_t n,
                     struct tb_classification *out) {
  struct tb_wire_response resp = {.http_status = status,
                                  .headers = headers,
                                  .header_count = n,
                                  .body = (const unsigned char *)body,
                                  .body_len = body ? strlen(body) : 0,
                                  .transport_error = status == 0 ? "connection refused" : NULL};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(ops()->classify(fx.inst.state, NULL, &resp, out, err), 0);
}

static void test_example_classify_follows_the_code_table(void **state) {
  (void)state;
  struct tb_classification c;
  classify(200, "{\"code\":\"OK\",\"receipt\":\"LZ-2024-1\",\"message\":\"received\"}", NULL, 0,
           &c);
  assert_int_equal(c.verdict, TB_VERDICT_SUCCESS);
  assert_string_equal(c.code, "OK");
  assert_string_equal(c.receipt_no, "LZ-2024-1");
  assert_string_equal(c.text, "received");
  assert_int_equal(c.retry_after_ms, -1);
  assert_int_equal(c.signature_valid, 0);

  classify(200, "{\"code\":\"DUP\",\"receipt\":\"LZ-2024-1\"}", NULL, 0, &c);
  assert_int_equal(c.verdict, TB_VERDICT_DUPLICATE);
  assert_string_equal(c.receipt_no, "LZ-2024-1");
  classify(200, "{\"code\":\"BAD\",\"message\":\"item unknown\"}", NULL, 0, &c);
  assert_int_equal(c.verdict, TB_VERDICT_PERMANENT);
  assert_string_equal(c.text, "item unknown");
  classify(200, "{\"code\":\"BUSY\"}", NULL, 0, &c);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  classify(200, "<html>proxy error</html>", NULL, 0, &c);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_string_equal(c.code, "unreadable");
  classify(200, NULL, NULL, 0, &c);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);

  const struct tb_header ra[] = {{"retry-after", "7"}};
  classify(503, "", ra, 1, &c);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_string_equal(c.code, "HTTP 503");
  assert_int_equal(c.retry_after_ms, 7000);
  classify(429, "", NULL, 0, &c);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  classify(400, "", NULL, 0, &c);
  assert_int_equal(c.verdict, TB_VERDICT_PERMANENT);
  classify(0, NULL, NULL, 0, &c);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_string_equal(c.code, "transport");
  assert_string_equal(c.text, "connection refused");

  /* An answer signed by the partner's key is marked so. */
  const char *body = "{\"code\":\"OK\",\"receipt\":\"LZ-2\"}";
  struct tb_bytes sig = {0}, b64 = {0};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(host()->sign(host()->ctx, "laizhou-rsa", body, strlen(body), &sig, err), 0);
  assert_int_equal(host()->base64_encode(sig.data, sig.len, &b64), 0);
  const struct tb_header signed_h[] = {{"X-Example-Signature", (const char *)b64.data}};
  classify(200, body, signed_h, 1, &c);
  assert_int_equal(c.signature_valid, 1);
  free(sig.data);
  free(b64.data);
}

/* A partner's notification, signed with the partner's key (the fixture has
 * its private half, to play the partner). */
static char *partner_notify(const char *id, char **sig_b64) {
  json_t *o = json_pack("{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:n, s:[], s:n, s:n, s:s}}", "id", id,
                        "type", "STATUS_NOTIFY", "sent_at", "2024-05-06T10:00:00+08:00",
                        "payload", "case_id", "430603-20240506-000123", "receipt_no", "LZ-2024-1",
                        "status", "accepted", "opinion", "supplement", "tracking_no",
                        "licence_no", "at", "2024-05-06T10:00:00+08:00");
  assert_non_null(o);
  char *body = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  struct tb_bytes sig = {0}, b64 = {0};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(host()->sign(host()->ctx, "laizhou-rsa", body, strlen(body), &sig, err), 0);
  assert_int_equal(host()->base64_encode(sig.data, sig.len, &b64), 0);
  free(sig.data);
  *sig_b64 = (char *)b64.data;
  return body;
}

/* The answer's body as a string (bodies are bytes, not NUL-terminated). */
static const char *body_text(const struct tb_wire_answer *a) {
  static char text[1024];
  assert_true(a->body.len < sizeof text);
  memcpy(text, a->body.data, a->body.len);
  text[a->body.len] = '\0';
  return text;
}

static void free_answer(struct tb_wire_answer *a) {
  free(a->content_type);
  free(a->headers);
  free(a->body.data);
}

static void test_example_decodes_and_answers_a_notification(void **state) {
  (void)state;
  char *sig = NULL;
  char *body = partner_notify("LZ-MSG-1", &sig);
  struct tb_header h[] = {{"Content-Type", "application/json"}, {"X-Example-Signature", sig}};
  struct tb_inbound_request req = {.method = "POST",
                                    .path = "/example/notify",
                                    .headers = h,
                                    .header_count = 2,
                                    .body = (const unsigned char *)body,
                                    .body_len = strlen(body),
                                    .now_ms = 1714960800000LL};
  struct tb_inbound_message msg;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(ops()->decode(fx.inst.state, &req, &msg, err), 0);
  assert_int_equal(msg.kind, TB_INBOUND_STATUS);
  assert_int_equal(msg.type, TB_MSG_STATUS_NOTIFY);
  assert_string_equal(msg.message_id, "LZ-MSG-1");
  assert_string_equal(msg.case_id, "430603-20240506-000123");
  assert_string_equal(msg.receipt_no, "LZ-2024-1");
  assert_int_equal(msg.sent_ms, 1714960800000LL);
  json_t *canon = json_loadb((const char *)msg.canonical.data, msg.canonical.len, 0, NULL);
  assert_non_null(canon);
  assert_string_equal(json_string_value(json_object_get(canon, "status")), "accepted");
  json_decref(canon);

  struct tb_wire_answer a;
  assert_int_equal(
      ops()->answer(fx.inst.state, &req, &msg, TB_INBOUND_ACCEPTED, "GW-1", &a, err), 0);
  assert_int_equal(a.http_status, 200);
  assert_string_equal(a.content_type, "application/json; charset=UTF-8");
  assert_int_equal(a.body.len, strlen("{\"code\":\"OK\",\"receipt\":\"GW-1\",\"message\":\"accepted\"}"));
  assert_memory_equal(a.body.data, "{\"code\":\"OK\",\"receipt\":\"GW-1\",\"message\":\"accepted\"}",
                      a.body.len);
  free_answer(&a);
  assert_int_equal(ops()->answer(fx.inst.state, &req, &msg, TB_INBOUND_STALE, NULL, &a, err), 0);
  assert_int_equal(a.http_status, 400);
  assert_non_null(strstr(body_text(&a), "\"code\":\"STALE\""));
  assert_non_null(strstr(body_text(&a), "\"receipt\":null"));
  free_answer(&a);
  ops()->release(fx.inst.state, &msg);
  free(msg.canonical.data);

  /* One flipped byte: refused with the protocol's SIG code, answered 400. */
  body[10] ^= 1;
  assert_int_equal(ops()->decode(fx.inst.state, &req, &msg, err), 0);
  assert_int_equal(msg.kind, TB_INBOUND_REFUSED);
  assert_string_equal(msg.refuse_code, "SIG");
  assert_null(msg.canonical.data);
  assert_int_equal(ops()->answer(fx.inst.state, &req, &msg, TB_INBOUND_REFUSE, NULL, &a, err), 0);
  assert_int_equal(a.http_status, 400);
  assert_non_null(strstr(body_text(&a), "\"code\":\"SIG\""));
  free_answer(&a);
  ops()->release(fx.inst.state, &msg);

  /* No signature at all, and garbage: refused, never an error. */
  req.header_count = 1;
  assert_int_equal(ops()->decode(fx.inst.state, &req, &msg, err), 0);
  assert_int_equal(msg.kind, TB_INBOUND_REFUSED);
  req.body = (const unsigned char *)"\xff\xfe";
  req.body_len = 2;
  req.header_count = 2;
  assert_int_equal(ops()->decode(fx.inst.state, &req, &msg, err), 0);
  assert_int_equal(msg.kind, TB_INBOUND_REFUSED);
  free(body);
  free(sig);
}

static void test_example_refuses_bad_settings_by_key(void **state) {
  (void)state;
  struct tb_adapter_instance inst;
  char err[TB_ERRMSG_MAX];
  static const struct {
    const char *settings;
    const char *message;
  } cases[] = {
      {"{}", "adapter \"example\" refused partner \"laizhou\": keys: missing"},
      {"{\"keys\": {\"verify\": \"laizhou-rsa\"}}",
       "adapter \"example\" refused partner \"laizhou\": keys.sign: missing"},
      {"{\"keys\": {\"sign\": \"gw-nope\", \"verify\": \"laizhou-rsa\"}}",
       "adapter \"example\" refused partner \"laizhou\": keys.sign: no key named \"gw-nope\""},
      {"{\"keys\": {\"sign\": \"wujiang-sm2-pub\", \"verify\": \"laizhou-rsa\"}}",
       "keys.sign: key \"wujiang-sm2-pub\" cannot sign (it has no private key)"},
      {"{\"keys\": {\"sign\": \"gw-rsa\", \"verify\": \"laizhou-ca\"}}",
       "keys.verify: \"laizhou-ca\" is a CA, not a key"},
      {"[1", "settings are not JSON"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int rc = tb_adapter_instance_init(&inst, &fx.lib, host(), cases[i].settings,
                                      strlen(cases[i].settings), err);
    assert_int_equal(rc, TB_ECONFIG);
    assert_contains(err, cases[i].message);
  }
}

int main(void) {
  const struct CMUnitTest broken[] = {
      cmocka_unit_test(test_bad_major_is_refused),
      cmocka_unit_test(test_newer_minor_is_refused),
      cmocka_unit_test(test_missing_entry_symbol_is_refused),
      cmocka_unit_test(test_missing_operation_is_refused),
      cmocka_unit_test(test_wrong_name_is_refused),
      cmocka_unit_test(test_unresolved_symbol_is_refused),
      cmocka_unit_test(test_missing_library_is_refused),
      cmocka_unit_test(test_failing_init_is_reported_with_the_adapters_reason),
  };
  const struct CMUnitTest example[] = {
      cmocka_unit_test(test_example_loads_with_its_routes),
      cmocka_unit_test(test_example_encode_wraps_and_signs),
      cmocka_unit_test(test_example_classify_follows_the_code_table),
      cmocka_unit_test(test_example_decodes_and_answers_a_notification),
      cmocka_unit_test(test_example_refuses_bad_settings_by_key),
  };
  int failed = cmocka_run_group_tests_name("broken adapters", broken, NULL, NULL);
  failed += cmocka_run_group_tests_name("example adapter", example, setup_example,
                                        teardown_example);
  return failed;
}
