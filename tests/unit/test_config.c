/*
 * Unit tests of core/config.c: the demo config loads and routes every
 * sample, documented defaults are applied, every class of mistake produces
 * its exact problem line (with the key path), all problems come out in one
 * run in document order, unknown keys are refused, relative paths resolve
 * against the config file's directory, and tb_config_free() releases
 * everything (run under ASan to prove it).
 *
 * Most cases start from one valid document (GOOD), change one key with
 * mutate() and check the answer, so each test shows exactly what it breaks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "tbgw/error.h"

static const char GOOD[] =
    "{"
    " \"node\": {\"region\": \"430603\", \"name\": \"云溪\"},"
    " \"local_api\": {\"listen\": \"127.0.0.1:8080\","
    "   \"tokens\": [{\"client\": \"hall-1\", \"token\": \"0123456789abcdef-one\"},"
    "              {\"client\": \"hall-2\", \"token\": \"0123456789abcdef-two\"}]},"
    " \"adapters\": {\"dir\": \"/usr/lib/tbgw/adapters\"},"
    " \"partners\": ["
    "   {\"name\": \"laizhou\", \"adapter\": \"lu-xml\", \"regions\": [\"370683\"],"
    "    \"endpoint\": \"https://127.0.0.1:9443\"},"
    "   {\"name\": \"zhaoyuan\", \"adapter\": \"lu-xml\", \"regions\": [\"370685\", \"370686\"],"
    "    \"endpoint\": \"https://127.0.0.1:9444/base/\"},"
    "   {\"name\": \"wujiang\", \"adapter\": \"yue-json\", \"regions\": [\"440203\"],"
    "    \"endpoint\": \"http://partner.example.cn:9543\"}"
    " ]"
    "}";

/* ---- helpers -------------------------------------------------------- */

/* Returns GOOD (or base) with the value at a dotted path ("partners.1.name")
 * replaced by the JSON text value, or removed when value is NULL. */
static char *mutate_from(const char *base, const char *path, const char *value) {
  json_error_t e;
  json_t *root = json_loads(base, 0, &e);
  assert_non_null(root);
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  json_t *parent = root;
  char *seg = buf, *dot;
  while ((dot = strchr(seg, '.')) != NULL) {
    *dot = '\0';
    json_t *next = json_is_array(parent) ? json_array_get(parent, (size_t)atoi(seg))
                                         : json_object_get(parent, seg);
    if (next == NULL) { /* create intermediate objects */
      next = json_object();
      json_object_set_new(parent, seg, next);
    }
    parent = next;
    seg = dot + 1;
  }
  if (value == NULL) {
    if (json_is_array(parent))
      json_array_remove(parent, (size_t)atoi(seg));
    else
      json_object_del(parent, seg);
  } else {
    json_t *v = json_loads(value, JSON_DECODE_ANY, &e);
    assert_non_null(v);
    if (json_is_array(parent))
      json_array_set_new(parent, (size_t)atoi(seg), v);
    else
      json_object_set_new(parent, seg, v);
  }
  char *out = json_dumps(root, JSON_PRESERVE_ORDER);
  json_decref(root);
  assert_non_null(out);
  return out;
}

static char *mutate(const char *path, const char *value) { return mutate_from(GOOD, path, value); }

/* Loads text expecting TB_ECONFIG; returns the problem text (caller frees). */
static char *problems_of(const char *text) {
  struct tb_config cfg;
  char *problems = NULL;
  int rc = tb_config_load_text(text, strlen(text), "/etc/tbgw", &cfg, &problems);
  if (rc != TB_ECONFIG) fprintf(stderr, "rc %d, problems: %s\n", rc, problems ? problems : "");
  assert_int_equal(rc, TB_ECONFIG);
  assert_non_null(problems);
  /* a failed load leaves nothing behind */
  assert_null(cfg.partners);
  assert_null(cfg.tokens);
  assert_null(cfg.node_region);
  return problems;
}

/* 1 if problems has exactly this line. */
static int has_line(const char *problems, const char *line) {
  size_t n = strlen(line);
  for (const char *p = problems; p && *p;) {
    const char *nl = strchr(p, '\n');
    size_t len = nl ? (size_t)(nl - p) : strlen(p);
    if (len == n && memcmp(p, line, n) == 0) return 1;
    p = nl ? nl + 1 : NULL;
  }
  return 0;
}

static void expect_line(const char *problems, const char *line) {
  if (!has_line(problems, line))
    fail_msg("expected line:\n  %s\ngot:\n%s", line, problems);
}

/* Exactly one problem, this one. */
static void expect_only(const char *text, const char *line) {
  char *p = problems_of(text);
  expect_line(p, line);
  size_t lines = 0;
  for (const char *s = p; *s; s++) lines += *s == '\n';
  if (lines != 1) fail_msg("expected only:\n  %s\ngot:\n%s", line, p);
  free(p);
}

static void expect_mutation(const char *path, const char *value, const char *line) {
  char *text = mutate(path, value);
  expect_only(text, line);
  free(text);
}

static void load_ok(const char *text, const char *base_dir, struct tb_config *cfg) {
  char *problems = NULL;
  int rc = tb_config_load_text(text, strlen(text), base_dir, cfg, &problems);
  if (rc != 0) fail_msg("rc %d:\n%s", rc, problems ? problems : "(none)");
  assert_null(problems);
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- the demo config ------------------------------------------------ */

static void test_example_config_loads_and_routes_every_sample(void **state) {
  (void)state;
  const char *root = getenv("TB_REPO_ROOT");
  if (root == NULL) fail_msg("TB_REPO_ROOT is not set (the repository root)");
  char path[4096];
  snprintf(path, sizeof path, "%s/examples/tbgw.json", root);

  struct tb_config cfg;
  char *problems = NULL;
  int rc = tb_config_load(path, &cfg, &problems);
  if (rc != 0) fail_msg("%s: rc %d:\n%s", path, rc, problems ? problems : "");
  assert_string_equal(cfg.node_region, "430603");
  assert_string_equal(cfg.node_name, "岳阳市云溪区政务服务中心");
  assert_string_equal(cfg.local_api_host, "127.0.0.1");
  assert_int_equal(cfg.local_api_port, 8080);
  assert_int_equal(cfg.token_count, 1);
  assert_true(strlen(cfg.tokens[0].token) >= 16);
  assert_int_equal(cfg.log_level, TB_LOG_INFO);
  assert_string_equal(cfg.log_file, "-");
  assert_true(cfg.path[0] == '/');
  assert_true(ends_with(cfg.path, "/examples/tbgw.json"));
  assert_true(cfg.store_path[0] == '/');
  assert_true(ends_with(cfg.store_path, "/examples/var/tbgw.db"));
  assert_ptr_equal(cfg.store.path, cfg.store_path);
  assert_non_null(cfg.adapters_dir);
  assert_true(ends_with(cfg.adapters_dir, "/examples/../build/release/adapters"));
  assert_int_equal(cfg.partner_count, 3);
  assert_string_equal(tb_config_route(&cfg, "370683")->name, "laizhou");
  assert_string_equal(tb_config_route(&cfg, "370685")->name, "zhaoyuan");
  assert_string_equal(tb_config_route(&cfg, "440203")->name, "wujiang");
  assert_string_equal(tb_config_route(&cfg, "440203")->adapter, "yue-json");
  assert_string_equal(tb_config_route(&cfg, "440203")->endpoint, "https://127.0.0.1:9543");

  /* Every sample case routes to the partner its file name says. */
  const char *samples = getenv("TB_SAMPLES_DIR");
  char dir[4096];
  if (samples == NULL) {
    snprintf(dir, sizeof dir, "%s/../shared/samples", root);
    samples = dir;
  }
  static const char *const files[] = {
      "01-rebirth-registration-laizhou.json",   "02-veteran-retirement-wujiang.json",
      "03-company-opening-zhaoyuan.json",       "04-teacher-certificate-reissue-wujiang.json",
      "05-criminal-record-certificate-laizhou.json",
  };
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
    char sp[8300];
    snprintf(sp, sizeof sp, "%s/%s", samples, files[i]);
    json_error_t e;
    json_t *doc = json_load_file(sp, 0, &e);
    if (doc == NULL) fail_msg("%s: %s", sp, e.text);
    const char *target = json_string_value(json_object_get(doc, "target_region"));
    assert_non_null(target);
    const struct tb_config_partner *p = tb_config_route(&cfg, target);
    if (p == NULL) fail_msg("%s: target_region %s has no partner", files[i], target);
    char want[64];
    snprintf(want, sizeof want, "-%s.json", p->name);
    if (!ends_with(files[i], want)) fail_msg("%s routed to %s", files[i], p->name);
    json_decref(doc);
  }
  tb_config_free(&cfg);
}

/* ---- defaults and values -------------------------------------------- */

static void test_documented_defaults_are_applied(void **state) {
  (void)state;
  const char *text = "{\"node\": {\"region\": \"430603\"},"
                     " \"local_api\": {\"listen\": \"0.0.0.0:0\","
                     "   \"tokens\": [{\"client\": \"c\", \"token\": \"abcdefghijklmnop\"}]}}";
  struct tb_config cfg;
  load_ok(text, "/srv/tbgw", &cfg);
  assert_null(cfg.path);
  assert_string_equal(cfg.node_name, "430603"); /* name defaults to the region code */
  assert_string_equal(cfg.local_api_host, "0.0.0.0");
  assert_int_equal(cfg.local_api_port, 0);
  assert_int_equal(cfg.local_api_limits.max_header_bytes, 16384);
  assert_int_equal(cfg.local_api_limits.max_header_count, 100);
  assert_int_equal(cfg.local_api_limits.max_body_bytes, 33554432);
  assert_int_equal(cfg.local_api_limits.max_connections, 1024);
  assert_int_equal(cfg.local_api_limits.max_pipeline_bytes, 65536);
  assert_int_equal(cfg.local_api_limits.header_timeout_ms, 10000);
  assert_int_equal(cfg.local_api_limits.body_timeout_ms, 30000);
  assert_int_equal(cfg.local_api_limits.keepalive_timeout_ms, 75000);
  assert_int_equal(cfg.local_api_limits.write_timeout_ms, 30000);
  assert_int_equal(cfg.events_max_wait_s, 60);
  assert_int_equal(cfg.case_limits.max_materials_bytes, 20971520);
  assert_int_equal(cfg.case_limits.max_materials, 100);
  assert_int_equal(cfg.case_limits.max_string_chars, 2000);
  assert_string_equal(cfg.store_path, "/srv/tbgw/var/tbgw.db");
  assert_ptr_equal(cfg.store.path, cfg.store_path);
  assert_int_equal(cfg.store.durability, TB_STORE_DURABILITY_FSYNC);
  assert_int_equal(cfg.store.batch_max, 1024);
  assert_int_equal(cfg.store.checkpoint_wal_pages, 8192);
  assert_int_equal(cfg.log_level, TB_LOG_INFO);
  assert_string_equal(cfg.log_file, "-");
  assert_null(cfg.adapters_dir);
  assert_int_equal(cfg.partner_count, 0);
  assert_int_equal(cfg.key_count, 0);
  assert_null(cfg.keys);
  assert_int_equal(cfg.partner_api_set, 0);
  assert_null(cfg.partner_api_host);
  assert_null(tb_config_route(&cfg, "370683"));
  tb_config_free(&cfg);
}

static void test_every_key_is_stored(void **state) {
  (void)state;
  const char *text =
      "{\"node\": {\"region\": \"430681\", \"name\": \"汨罗\"},"
      " \"local_api\": {\"listen\": \"[::1]:65535\","
      "   \"tokens\": [{\"client\": \"a.b_c-d\", \"token\": \"!#$%&'()*+,-./09:;<=>?@~\"}],"
      "   \"limits\": {\"max_header_bytes\": 2048, \"max_header_count\": 7,"
      "     \"max_body_bytes\": 1073741824, \"max_connections\": 5, \"max_pipeline_bytes\": 4096},"
      "   \"timeouts_ms\": {\"header\": 100, \"body\": 200, \"keepalive\": 300, \"write\": 3600000},"
      "   \"events_max_wait_s\": 0},"
      " \"cases\": {\"max_materials_bytes\": 1024, \"max_materials\": 3, \"max_string_chars\": 64},"
      " \"store\": {\"path\": \"/var/lib/tbgw/db\", \"durability\": \"os\", \"batch_max\": 100000,"
      "   \"checkpoint_wal_pages\": 64},"
      " \"log\": {\"level\": \"debug\", \"file\": \"log/tbgw.log\"},"
      " \"adapters\": {\"dir\": \"/usr/lib/tbgw/adapters\"},"
      " \"partners\": [{\"name\": \"wujiang\", \"adapter\": \"yue-json\","
      "   \"regions\": [\"440203\"], \"endpoint\": \"https://[2001:db8::1]:8443/gw//\","
      "   \"sm2_key\": \"ours\", \"retry\": {\"max\": 5}}]}";
  struct tb_config cfg;
  load_ok(text, "/etc/tbgw/", &cfg);
  assert_string_equal(cfg.node_region, "430681");
  assert_string_equal(cfg.node_name, "汨罗");
  assert_string_equal(cfg.local_api_host, "::1");
  assert_int_equal(cfg.local_api_port, 65535);
  assert_string_equal(cfg.tokens[0].client, "a.b_c-d");
  assert_string_equal(cfg.tokens[0].token, "!#$%&'()*+,-./09:;<=>?@~");
  assert_int_equal(cfg.local_api_limits.max_header_bytes, 2048);
  assert_int_equal(cfg.local_api_limits.max_header_count, 7);
  assert_int_equal(cfg.local_api_limits.max_body_bytes, 1073741824);
  assert_int_equal(cfg.local_api_limits.max_connections, 5);
  assert_int_equal(cfg.local_api_limits.max_pipeline_bytes, 4096);
  assert_int_equal(cfg.local_api_limits.header_timeout_ms, 100);
  assert_int_equal(cfg.local_api_limits.body_timeout_ms, 200);
  assert_int_equal(cfg.local_api_limits.keepalive_timeout_ms, 300);
  assert_int_equal(cfg.local_api_limits.write_timeout_ms, 3600000);
  assert_int_equal(cfg.events_max_wait_s, 0);
  assert_int_equal(cfg.case_limits.max_materials_bytes, 1024);
  assert_int_equal(cfg.case_limits.max_materials, 3);
  assert_int_equal(cfg.case_limits.max_string_chars, 64);
  assert_string_equal(cfg.store_path, "/var/lib/tbgw/db");
  assert_int_equal(cfg.store.durability, TB_STORE_DURABILITY_OS);
  assert_int_equal(cfg.store.batch_max, 100000);
  assert_int_equal(cfg.store.checkpoint_wal_pages, 64);
  assert_int_equal(cfg.log_level, TB_LOG_DEBUG);
  assert_string_equal(cfg.log_file, "/etc/tbgw/log/tbgw.log");
  assert_string_equal(cfg.adapters_dir, "/usr/lib/tbgw/adapters");
  /* trailing slashes go: adapters append their request paths */
  assert_string_equal(cfg.partners[0].endpoint, "https://[2001:db8::1]:8443/gw");
  /* the adapter's own keys are kept verbatim, in order */
  json_error_t e;
  json_t *settings = json_loads(cfg.partners[0].settings_json, 0, &e);
  assert_non_null(settings);
  assert_string_equal(json_string_value(json_object_get(settings, "sm2_key")), "ours");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(settings, "retry"), "max")), 5);
  assert_string_equal(json_string_value(json_object_get(settings, "name")), "wujiang");
  json_decref(settings);
  tb_config_free(&cfg);
}

/* ---- each class of problem ------------------------------------------ */

static void test_listen_problems(void **state) {
  (void)state;
  expect_mutation("local_api.listen", "\"127.0.0.1:99999\"",
                  "local_api.listen: \"127.0.0.1:99999\" is not a valid port (1-65535)");
  expect_mutation("local_api.listen", "\"127.0.0.1:8o80\"",
                  "local_api.listen: \"127.0.0.1:8o80\" is not a valid port (1-65535)");
  expect_mutation("local_api.listen", "\"127.0.0.1:\"",
                  "local_api.listen: \"127.0.0.1:\" is not a valid port (1-65535)");
  expect_mutation("local_api.listen", "\"127.0.0.1\"",
                  "local_api.listen: \"127.0.0.1\" must be \"IPv4:port\" or \"[IPv6]:port\", "
                  "e.g. \"127.0.0.1:8080\"");
  expect_mutation("local_api.listen", "\"localhost:8080\"",
                  "local_api.listen: \"localhost:8080\": the host must be a numeric IPv4 "
                  "address (names are not resolved)");
  expect_mutation("local_api.listen", "\"::1:8080\"",
                  "local_api.listen: \"::1:8080\": an IPv6 address needs brackets, e.g. "
                  "\"[::1]:8080\"");
  expect_mutation("local_api.listen", "\"[::g]:8080\"",
                  "local_api.listen: \"[::g]:8080\": the host must be a numeric IPv6 address "
                  "(names are not resolved)");
  expect_mutation("local_api.listen", "8080",
                  "local_api.listen: expected a string, found an integer (8080)");
  expect_mutation("local_api.listen", NULL,
                  "local_api.listen: missing (address and port for local clients, e.g. "
                  "\"127.0.0.1:8080\")");
}

static void test_token_problems(void **state) {
  (void)state;
  expect_mutation("local_api.tokens", NULL,
                  "local_api.tokens: missing (at least one bearer token is needed for local "
                  "clients)");
  expect_mutation("local_api.tokens", "[]",
                  "local_api.tokens: empty (at least one bearer token is needed for local "
                  "clients)");
  expect_mutation("local_api.tokens.1.token", "\"0123456789abcdef-one\"",
                  "local_api.tokens[1].token: same token as local_api.tokens[0] (every client "
                  "needs its own token)");
  expect_mutation("local_api.tokens.1.client", "\"hall-1\"",
                  "local_api.tokens[1].client: \"hall-1\" is used by local_api.tokens[0] too");
  expect_mutation("local_api.tokens.0.token", "\"short-secret\"",
                  "local_api.tokens[0].token: too short (12 characters; at least 16 are "
                  "needed, e.g. from `openssl rand -hex 32`)");
  expect_mutation("local_api.tokens.0.token", "\"with a space 0123456789\"",
                  "local_api.tokens[0].token: character 5 is a space, a control character or "
                  "not ASCII (a token is printable ASCII without spaces)");
  expect_mutation("local_api.tokens.0.client", "\"hall 1\"",
                  "local_api.tokens[0].client: \"hall 1\" is not a valid client name (1-64 "
                  "characters of A-Z a-z 0-9 . _ -)");
  expect_mutation("local_api.tokens.0.token", NULL,
                  "local_api.tokens[0].token: missing (the bearer token, at least 16 "
                  "characters)");
  expect_mutation("local_api.tokens.0", "\"0123456789abcdef\"",
                  "local_api.tokens[0]: expected an object {\"client\", \"token\"}, found a "
                  "string (\"0123456789abcdef\")");
  /* a secret never appears in the report, whatever is wrong with it */
  char *text = mutate("local_api.tokens.1.token", "\"0123456789abcdef-one\"");
  char *p = problems_of(text);
  assert_null(strstr(p, "0123456789abcdef-one"));
  free(p);
  free(text);
  text = mutate("local_api.tokens.0.token", "\"sEcReT\"");
  p = problems_of(text);
  assert_null(strstr(p, "sEcReT"));
  free(p);
  free(text);
  text = mutate("local_api.tokens.0.token", "123456789012345678");
  p = problems_of(text);
  assert_null(strstr(p, "123456789012345678"));
  expect_line(p, "local_api.tokens[0].token: expected a string, found an integer");
  free(p);
  free(text);
}

static void test_type_and_range_problems(void **state) {
  (void)state;
  expect_mutation("local_api.limits.max_body_bytes", "\"32M\"",
                  "local_api.limits.max_body_bytes: expected an integer, found a string "
                  "(\"32M\")");
  expect_mutation("local_api.limits.max_body_bytes", "100",
                  "local_api.limits.max_body_bytes: 100 is out of range: allowed "
                  "1024..1073741824 (1 KiB..1 GiB)");
  expect_mutation("local_api.limits.max_header_count", "1.5",
                  "local_api.limits.max_header_count: expected an integer, found a number "
                  "with a fraction or exponent (1.5)");
  expect_mutation("local_api.timeouts_ms.header", "99",
                  "local_api.timeouts_ms.header: 99 is out of range: allowed 100..3600000 "
                  "(100 ms..1 h)");
  expect_mutation("local_api.timeouts_ms.write", "3600001",
                  "local_api.timeouts_ms.write: 3600001 is out of range: allowed 100..3600000 "
                  "(100 ms..1 h)");
  expect_mutation("local_api.events_max_wait_s", "-1",
                  "local_api.events_max_wait_s: -1 is out of range: allowed 0..3600 (0 s..1 h)");
  expect_mutation("store.batch_max", "0",
                  "store.batch_max: 0 is out of range: allowed 1..100000");
  expect_mutation("store.batch_max", "true",
                  "store.batch_max: expected an integer, found a boolean (true)");
  expect_mutation("store.durability", "\"sync\"",
                  "store.durability: \"sync\" is not one of \"fsync\", \"os\"");
  expect_mutation("log.level", "\"verbose\"",
                  "log.level: \"verbose\" is not one of \"debug\", \"info\", \"warn\", \"error\"");
  expect_mutation("store.path", "\"\"", "store.path: empty (a path is needed)");
  expect_mutation("local_api", "[]", "local_api: expected an object, found an array");
  expect_mutation("node.region", NULL,
                  "node.region: missing (the 6-digit division code of this gateway's own "
                  "region)");
  expect_mutation("node", NULL,
                  "node: missing (an object with at least \"region\", this gateway's "
                  "division code)");
  expect_mutation("node.region", "\"4306\"", "node.region: \"4306\" is not a 6-digit division code");
  expect_mutation("node.region", "\"990603\"",
                  "node.region: \"990603\" is not a division code: \"99\" is not a "
                  "province-level prefix (GB/T 2260)");
  expect_mutation("node.name", "null", "node.name: expected a string, found null");
  expect_only("[1, 2]", "(top level): expected an object, found an array");
}

static void test_body_limit_must_carry_materials(void **state) {
  (void)state;
  char *text = mutate("cases.max_materials_bytes", "31457280");
  expect_only(text,
              "local_api.limits.max_body_bytes: 33554432 (the default) is too small for "
              "cases.max_materials_bytes 31457280: materials travel as base64 (4/3 larger) "
              "plus up to 1 MiB for the rest of the case, so at least 42991616 is needed; "
              "raise local_api.limits.max_body_bytes or lower cases.max_materials_bytes");
  /* exactly the boundary is enough, one byte less is not */
  char *t2 = mutate_from(text, "local_api.limits.max_body_bytes", "42991616");
  struct tb_config cfg;
  load_ok(t2, "/", &cfg);
  tb_config_free(&cfg);
  free(t2);
  t2 = mutate_from(text, "local_api.limits.max_body_bytes", "42991615");
  char *p = problems_of(t2);
  assert_non_null(strstr(p, "local_api.limits.max_body_bytes: 42991615 is too small for "
                            "cases.max_materials_bytes 31457280:"));
  free(p);
  free(t2);
  free(text);
  /* a refused value is reported once, not again by the cross-check */
  text = mutate("local_api.limits.max_body_bytes", "\"big\"");
  t2 = mutate_from(text, "cases.max_materials_bytes", "31457280");
  p = problems_of(t2);
  assert_null(strstr(p, "too small"));
  free(p);
  free(t2);
  free(text);
}

static void test_partner_problems(void **state) {
  (void)state;
  expect_mutation("partners.1.regions.0", "\"37068\"",
                  "partners[1].regions[0]: \"37068\" is not a 6-digit division code");
  expect_mutation("partners.2.name", "\"laizhou\"",
                  "partners[2].name: \"laizhou\" is used by partners[0] too");
  expect_mutation("partners.2.regions.0", "\"370683\"",
                  "partners[2].regions[0]: \"370683\" is served by both \"laizhou\" "
                  "(partners[0]) and \"wujiang\" (partners[2]); a region can have only one "
                  "partner");
  expect_mutation("partners.1.regions.1", "\"370685\"",
                  "partners[1].regions[1]: \"370685\" is listed twice (also at [0])");
  expect_mutation("partners.1.regions", "[]",
                  "partners[1].regions: empty (a partner serves at least one region)");
  expect_mutation("partners.1.regions", "\"370685\"",
                  "partners[1].regions: expected an array of 6-digit division codes, found a "
                  "string (\"370685\")");
  expect_mutation("partners.0.name", "\"Lai Zhou\"",
                  "partners[0].name: \"Lai Zhou\" is not a valid partner name (1-32 "
                  "characters of a-z 0-9 -)");
  expect_mutation("partners.0.adapter", "\"lu_xml\"",
                  "partners[0].adapter: \"lu_xml\" is not a valid adapter name (1-32 "
                  "characters of a-z 0-9 -)");
  expect_mutation("partners.0.adapter", NULL,
                  "partners[0].adapter: missing (the adapter plugin that speaks this "
                  "partner's protocol, e.g. \"lu-xml\")");
  expect_mutation("partners.1.endpoint", "\"htp://x\"",
                  "partners[1].endpoint: \"htp://x\" is not an http(s) URL");
  expect_mutation("partners.1.endpoint", "\"https://\"",
                  "partners[1].endpoint: \"https://\" has no host");
  expect_mutation("partners.1.endpoint", "\"https://:443/x\"",
                  "partners[1].endpoint: \"https://:443/x\" has no host");
  expect_mutation("partners.1.endpoint", "\"https://h:0\"",
                  "partners[1].endpoint: \"https://h:0\" is not a valid port (1-65535)");
  expect_mutation("partners.1.endpoint", "\"https://u:p@h/\"",
                  "partners[1].endpoint: \"https://u:p@h/\" must not carry credentials "
                  "(user:password@)");
  expect_mutation("partners.1.endpoint", "\"https://h/a?b=c\"",
                  "partners[1].endpoint: \"https://h/a?b=c\" must not have a query or "
                  "fragment (request paths are appended to it)");
  expect_mutation("partners.1.endpoint", "\"https://h a/\"",
                  "partners[1].endpoint: \"https://h a/\" contains a space, a control or a "
                  "non-ASCII character (percent-encode it)");
  expect_mutation("partners.1.endpoint", "\"https://h..x/\"",
                  "partners[1].endpoint: \"https://h..x/\" has an invalid host name");
  expect_mutation("partners.1", "7", "partners[1]: expected an object, found an integer (7)");
  expect_mutation("partners", "{}",
                  "partners: expected an array of partner objects, found an object");
}

static void test_unknown_keys_are_refused(void **state) {
  (void)state;
  expect_mutation("loglevel", "\"info\"",
                  "loglevel: unknown key (allowed here: node, local_api, partner_api, cases, "
                  "store, log, keys, adapters, partners, audit)");
  expect_mutation("local_api.limits.max_body", "1",
                  "local_api.limits.max_body: unknown key (allowed here: max_header_bytes, "
                  "max_header_count, max_body_bytes, max_connections, max_pipeline_bytes)");
  expect_mutation("local_api.tokens.0.name", "\"x\"",
                  "local_api.tokens[0].name: unknown key (allowed here: client, token)");
  expect_mutation("store.max batch", "1",
                  "store[\"max batch\"]: unknown key (allowed here: path, durability, "
                  "batch_max, checkpoint_wal_pages)");
  /* but a partner's object belongs to its adapter */
  char *text = mutate("partners.0.signing_key", "\"keys/laizhou.pem\"");
  struct tb_config cfg;
  load_ok(text, "/", &cfg);
  assert_non_null(strstr(cfg.partners[0].settings_json, "\"signing_key\":\"keys/laizhou.pem\""));
  tb_config_free(&cfg);
  free(text);
}

static void test_all_problems_reported_in_document_order(void **state) {
  (void)state;
  const char *text =
      "{\"node\": {\"region\": \"43060\", \"nmae\": \"x\"},\n"
      " \"local_api\": {\"listen\": \"127.0.0.1:99999\"},\n"
      " \"store\": {\"durability\": \"sync\", \"batch_max\": 0},\n"
      " \"partners\": [\n"
      "   {\"name\": \"laizhou\", \"adapter\": \"lu-xml\", \"regions\": [\"370683\"],"
      "    \"endpoint\": \"https://a\"},\n"
      "   {\"name\": \"x\", \"adapter\": \"lu-xml\", \"regions\": [\"37068\"],"
      "    \"endpoint\": \"ftp://b\"},\n"
      "   {\"name\": \"laizhou\", \"adapter\": \"yue-json\", \"regions\": [\"370683\"],"
      "    \"endpoint\": \"https://c\"}\n"
      " ],\n"
      " \"extra\": 1}\n";
  char *p = problems_of(text);
  static const char *const want[] = {
      "node.region: \"43060\" is not a 6-digit division code",
      "node.nmae: unknown key (allowed here: region, name)",
      "local_api.listen: \"127.0.0.1:99999\" is not a valid port (1-65535)",
      "local_api.tokens: missing (at least one bearer token is needed for local clients)",
      "store.durability: \"sync\" is not one of \"fsync\", \"os\"",
      "store.batch_max: 0 is out of range: allowed 1..100000",
      "partners[1].regions[0]: \"37068\" is not a 6-digit division code",
      "partners[1].endpoint: \"ftp://b\" is not an http(s) URL",
      "partners[2].name: \"laizhou\" is used by partners[0] too",
      "partners[2].regions[0]: \"370683\" is served by both \"laizhou\" (partners[0]) and "
      "\"laizhou\" (partners[2]); a region can have only one partner",
      "extra: unknown key (allowed here: node, local_api, partner_api, cases, store, log, "
      "keys, adapters, partners, audit)",
      "adapters.dir: missing (3 partner(s) are configured: their adapters are loaded from this "
      "directory, e.g. \"../build/release/adapters\")",
  };
  const char *at = p;
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    size_t n = strlen(want[i]);
    if (strncmp(at, want[i], n) != 0 || at[n] != '\n')
      fail_msg("line %zu: expected\n  %s\ngot (from there):\n%s", i + 1, want[i], at);
    at += n + 1;
  }
  assert_string_equal(at, "");
  free(p);
}

static void test_invalid_json_names_line_and_column(void **state) {
  (void)state;
  char *p = problems_of("{\n  \"node\": {\"region\": \"430603\",}\n}");
  if (strncmp(p, "line 2, column ", 15) != 0 || strstr(p, "invalid JSON: ") == NULL)
    fail_msg("got: %s", p);
  free(p);
  p = problems_of("{\"node\": {}, \"node\": {}}");
  if (strstr(p, "line 1, column ") != p || strstr(p, "duplicate object key") == NULL)
    fail_msg("got: %s", p);
  free(p);
  p = problems_of("");
  assert_non_null(strstr(p, "invalid JSON: "));
  free(p);
}

static void test_unreadable_file_is_an_io_error(void **state) {
  (void)state;
  struct tb_config cfg;
  char *problems = NULL;
  int rc = tb_config_load("/nonexistent/dir/tbgw.json", &cfg, &problems);
  assert_int_equal(rc, TB_EIO);
  assert_non_null(problems);
  char want[256];
  snprintf(want, sizeof want, "cannot read /nonexistent/dir/tbgw.json: %s\n", strerror(ENOENT));
  assert_string_equal(problems, want);
  free(problems);
  tb_config_free(&cfg); /* harmless on a failed load */

  rc = tb_config_load("/", &cfg, &problems); /* a directory */
  assert_int_equal(rc, TB_EIO);
  assert_non_null(strstr(problems, "cannot read /: "));
  free(problems);
}

/* ---- routing, paths, files, memory ---------------------------------- */

static void test_route_lookup(void **state) {
  (void)state;
  struct tb_config cfg;
  load_ok(GOOD, "/", &cfg);
  assert_string_equal(tb_config_route(&cfg, "370683")->name, "laizhou");
  assert_string_equal(tb_config_route(&cfg, "370685")->name, "zhaoyuan");
  assert_string_equal(tb_config_route(&cfg, "370686")->name, "zhaoyuan");
  assert_string_equal(tb_config_route(&cfg, "440203")->name, "wujiang");
  assert_null(tb_config_route(&cfg, "430603"));
  assert_null(tb_config_route(&cfg, "37068"));
  assert_null(tb_config_route(&cfg, ""));
  assert_null(tb_config_route(&cfg, NULL));
  assert_null(tb_config_route(NULL, "370683"));
  assert_string_equal(cfg.partners[1].endpoint, "https://127.0.0.1:9444/base");
  assert_string_equal(cfg.partners[2].endpoint, "http://partner.example.cn:9543");
  tb_config_free(&cfg);
}

static void test_relative_paths_resolve_against_config_dir(void **state) {
  (void)state;
  struct tb_config cfg;
  char *t1 = mutate("store.path", "\"./data/./x.db\"");
  char *t2 = mutate_from(t1, "log.file", "\"logs/tbgw.log\"");
  char *t3 = mutate_from(t2, "adapters.dir", "\"../adapters\"");
  load_ok(t3, "/etc/tbgw", &cfg);
  assert_string_equal(cfg.store_path, "/etc/tbgw/data/./x.db");
  assert_string_equal(cfg.log_file, "/etc/tbgw/logs/tbgw.log");
  assert_string_equal(cfg.adapters_dir, "/etc/tbgw/../adapters");
  tb_config_free(&cfg);
  free(t1);
  free(t2);
  free(t3);

  t1 = mutate("store.path", "\"/abs/x.db\"");
  load_ok(t1, "/etc/tbgw", &cfg);
  assert_string_equal(cfg.store_path, "/abs/x.db");
  assert_string_equal(cfg.log_file, "-");
  tb_config_free(&cfg);
  free(t1);

  /* From a file given by a relative name: paths follow the file, not the
   * current directory, and cfg.path is absolute. */
  char tmpl[] = "/tmp/tbgw-config-XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  char sub[512], file[600], cwd[4096];
  snprintf(sub, sizeof sub, "%s/etc", tmpl);
  assert_int_equal(mkdir(sub, 0700), 0);
  snprintf(file, sizeof file, "%s/tbgw.json", sub);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fputs(GOOD, f);
  fclose(f);
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(tmpl), 0);
  char *problems = NULL;
  int rc = tb_config_load("./etc/tbgw.json", &cfg, &problems);
  assert_int_equal(chdir(cwd), 0);
  if (rc != 0) fail_msg("rc %d: %s", rc, problems ? problems : "");
  char want[700];
  snprintf(want, sizeof want, "%s/etc/tbgw.json", tmpl);
  assert_string_equal(cfg.path, want);
  snprintf(want, sizeof want, "%s/etc/var/tbgw.db", tmpl);
  assert_string_equal(cfg.store_path, want);
  tb_config_free(&cfg);
  unlink(file);
  rmdir(sub);
  rmdir(tmpl);
}

static void test_utf8_bom_is_accepted(void **state) {
  (void)state;
  size_t n = strlen(GOOD);
  char *text = malloc(n + 4);
  assert_non_null(text);
  memcpy(text, "\xEF\xBB\xBF", 3);
  memcpy(text + 3, GOOD, n + 1);
  struct tb_config cfg;
  load_ok(text, "/", &cfg);
  assert_int_equal(cfg.partner_count, 3);
  tb_config_free(&cfg);
  free(text);
}

static void test_free_releases_everything_and_is_idempotent(void **state) {
  (void)state;
  /* ASan's leak checker proves the release; a second free must be safe. */
  for (int i = 0; i < 3; i++) {
    struct tb_config cfg;
    load_ok(GOOD, "/etc/tbgw", &cfg);
    tb_config_free(&cfg);
    assert_null(cfg.partners);
    assert_int_equal(cfg.partner_count, 0);
    tb_config_free(&cfg);
  }
  tb_config_free(NULL);
  /* failed loads (with partial state built) leak nothing either */
  char *text = mutate("partners.2.regions.0", "\"370683\"");
  free(problems_of(text));
  free(text);
}

/* ---- keys, partner_api, partner TLS and delivery ---------------------------- */

static const char KEYS[] =
    "{\"gw-rsa\": {\"kind\": \"rsa\", \"private_key\": \"pki/gateway/sign-rsa.key\","
    "   \"certificate\": \"/abs/sign-rsa.pem\"},"
    " \"gw-sm2\": {\"kind\": \"sm2\", \"private_key\": \"pki/gateway/sign-sm2.key\"},"
    " \"wujiang-sm2-pub\": {\"sm2_id\": \"GD-WJ-TB\", \"public_key\": \"./pki/wj.pub.pem\","
    "   \"kind\": \"sm2\"},"
    " \"peer-ec\": {\"kind\": \"ec-p256\", \"public_key\": \"ec.pem\"},"
    " \"peer-ed\": {\"kind\": \"ed25519\", \"public_key\": \"ed.pem\"},"
    " \"laizhou-ca\": {\"kind\": \"ca\", \"certificate\": \"pki/laizhou/ca.pem\"}}";

static void test_keys_are_stored_in_file_order(void **state) {
  (void)state;
  char *text = mutate("keys", KEYS);
  struct tb_config cfg;
  load_ok(text, "/etc/tbgw", &cfg);
  assert_int_equal(cfg.key_count, 6);
  const struct tb_config_key *k = &cfg.keys[0];
  assert_string_equal(k->name, "gw-rsa");
  assert_string_equal(k->kind, "rsa");
  assert_string_equal(k->private_key, "/etc/tbgw/pki/gateway/sign-rsa.key");
  assert_string_equal(k->certificate, "/abs/sign-rsa.pem");
  assert_null(k->public_key);
  assert_null(k->sm2_id); /* only SM2 keys have a signer ID */
  k = tb_config_key_find(&cfg, "gw-sm2");
  assert_ptr_equal(k, &cfg.keys[1]);
  assert_string_equal(k->sm2_id, "1234567812345678"); /* the GB/T 32918 default */
  k = tb_config_key_find(&cfg, "wujiang-sm2-pub");
  assert_string_equal(k->sm2_id, "GD-WJ-TB");
  assert_string_equal(k->public_key, "/etc/tbgw/pki/wj.pub.pem");
  assert_null(k->private_key);
  assert_string_equal(cfg.keys[3].kind, "ec-p256");
  assert_string_equal(cfg.keys[4].kind, "ed25519");
  k = tb_config_key_find(&cfg, "laizhou-ca");
  assert_string_equal(k->kind, "ca");
  assert_string_equal(k->certificate, "/etc/tbgw/pki/laizhou/ca.pem");
  assert_null(tb_config_key_find(&cfg, "nope"));
  assert_null(tb_config_key_find(&cfg, NULL));
  tb_config_free(&cfg);
  free(text);
}

static void test_key_problems(void **state) {
  (void)state;
  expect_mutation("keys", "[]",
                  "keys: expected an object of named keys, {\"<name>\": {\"kind\": ..., ...}}, "
                  "found an array");
  expect_mutation("keys", "{\"GW RSA\": {\"kind\": \"rsa\", \"private_key\": \"k\"}}",
                  "keys[\"GW RSA\"]: \"GW RSA\" is not a valid key name (1-64 characters of "
                  "a-z 0-9 -)");
  expect_mutation("keys", "{\"k\": \"file.pem\"}",
                  "keys.k: expected an object {\"kind\", \"private_key\" | \"public_key\" | "
                  "\"certificate\"}, found a string (\"file.pem\")");
  expect_mutation("keys", "{\"k\": {\"private_key\": \"k.pem\"}}",
                  "keys.k.kind: missing (one of \"rsa\", \"ec-p256\", \"ed25519\", \"sm2\", "
                  "\"ca\")");
  expect_mutation("keys", "{\"k\": {\"kind\": \"dsa\", \"private_key\": \"k.pem\"}}",
                  "keys.k.kind: \"dsa\" is not one of \"rsa\", \"ec-p256\", \"ed25519\", "
                  "\"sm2\", \"ca\"");
  expect_mutation("keys", "{\"k\": {\"kind\": \"rsa\", \"certificate\": \"c.pem\"}}",
                  "keys.k: needs \"private_key\" (to sign and decrypt) or \"public_key\" (a "
                  "peer's key, to verify and encrypt)");
  expect_mutation("keys", "{\"k\": {\"kind\": \"rsa\", \"private_key\": \"k\", \"sm2_id\": \"x\"}}",
                  "keys.k.sm2_id: only for kind \"sm2\" (this key is \"rsa\")");
  expect_mutation("keys", "{\"k\": {\"kind\": \"sm2\", \"private_key\": \"k\", \"sm2_id\": \"\"}}",
                  "keys.k.sm2_id: must be 1 to 1024 bytes (the default is \"1234567812345678\")");
  expect_mutation("keys", "{\"k\": {\"kind\": \"ca\", \"certificate\": \"c\", \"private_key\": \"k\"}}",
                  "keys.k.private_key: not allowed for kind \"ca\" (a CA takes only "
                  "\"certificate\": the trusted PEM certificate bundle)");
  expect_mutation("keys", "{\"k\": {\"kind\": \"ca\"}}",
                  "keys.k.certificate: missing (kind \"ca\" needs the trusted PEM certificate "
                  "bundle)");
  expect_mutation("keys", "{\"k\": {\"kind\": \"rsa\", \"private_key\": \"\"}}",
                  "keys.k.private_key: empty (a path is needed)");
  expect_mutation("keys", "{\"k\": {\"kind\": \"rsa\", \"private_key\": \"k\", \"password\": \"x\"}}",
                  "keys.k.password: unknown key (allowed here: kind, private_key, public_key, "
                  "certificate, sm2_id)");
  /* 64 characters are fine, 65 are not */
  char name[66], text[256];
  memset(name, 'a', 65);
  name[64] = '\0';
  snprintf(text, sizeof text, "{\"%s\": {\"kind\": \"ed25519\", \"public_key\": \"p\"}}", name);
  char *t = mutate("keys", text);
  struct tb_config cfg;
  load_ok(t, "/", &cfg);
  tb_config_free(&cfg);
  free(t);
  name[64] = 'a';
  name[65] = '\0';
  snprintf(text, sizeof text, "{\"%s\": {\"kind\": \"ed25519\", \"public_key\": \"p\"}}", name);
  t = mutate("keys", text);
  char *p = problems_of(t);
  assert_non_null(strstr(p, "is not a valid key name"));
  free(p);
  free(t);
}

static void test_partner_tls_delivery_and_replay_window(void **state) {
  (void)state;
  char *t1 = mutate("partners.0.tls",
                    "{\"ca\": \"pki/laizhou/ca.pem\", \"client_certificate\": \"pki/gw/c.pem\","
                    " \"client_key\": \"/k/c.key\", \"client_ca\": \"pki/laizhou/ca.pem\"}");
  char *t2 = mutate_from(t1, "partners.0.delivery",
                         "{\"max_in_flight\": 2, \"connect_timeout_ms\": 1000, \"timeout_ms\": 2000,"
                         " \"max_attempts\": 3, \"backoff_initial_ms\": 10, \"backoff_max_ms\": 100,"
                         " \"circuit_failures\": 1, \"circuit_open_ms\": 86400000}");
  char *t3 = mutate_from(t2, "partners.0.replay_window_s", "60");
  char *text = mutate_from(t3, "partners.0.keys", "{\"sign\": \"gw-rsa\"}");
  struct tb_config cfg;
  load_ok(text, "/etc/tbgw", &cfg);
  const struct tb_config_partner *p = tb_config_partner_find(&cfg, "laizhou");
  assert_ptr_equal(p, &cfg.partners[0]);
  assert_string_equal(p->tls.ca, "/etc/tbgw/pki/laizhou/ca.pem");
  assert_string_equal(p->tls.client_certificate, "/etc/tbgw/pki/gw/c.pem");
  assert_string_equal(p->tls.client_key, "/k/c.key");
  assert_string_equal(p->tls.client_ca, "/etc/tbgw/pki/laizhou/ca.pem");
  assert_int_equal(p->delivery.max_in_flight, 2);
  assert_int_equal(p->delivery.connect_timeout_ms, 1000);
  assert_int_equal(p->delivery.timeout_ms, 2000);
  assert_int_equal(p->delivery.max_attempts, 3);
  assert_int_equal(p->delivery.backoff_initial_ms, 10);
  assert_int_equal(p->delivery.backoff_max_ms, 100);
  assert_int_equal(p->delivery.circuit_failures, 1);
  assert_int_equal(p->delivery.circuit_open_ms, 86400000);
  assert_int_equal(p->replay_window_s, 60);
  /* the adapter still gets the whole object, gateway keys included */
  json_t *settings = json_loads(p->settings_json, 0, NULL);
  assert_non_null(settings);
  assert_string_equal(
      json_string_value(json_object_get(json_object_get(settings, "keys"), "sign")), "gw-rsa");
  assert_int_equal(json_integer_value(json_object_get(json_object_get(settings, "delivery"),
                                                      "max_attempts")),
                   3);
  json_decref(settings);
  /* a partner without them has the documented defaults */
  p = tb_config_partner_find(&cfg, "wujiang");
  assert_null(p->tls.ca);
  assert_null(p->tls.client_key);
  assert_int_equal(p->delivery.max_in_flight, 8);
  assert_int_equal(p->delivery.connect_timeout_ms, 5000);
  assert_int_equal(p->delivery.timeout_ms, 15000);
  assert_int_equal(p->delivery.max_attempts, 20);
  assert_int_equal(p->delivery.backoff_initial_ms, 1000);
  assert_int_equal(p->delivery.backoff_max_ms, 300000);
  assert_int_equal(p->delivery.circuit_failures, 5);
  assert_int_equal(p->delivery.circuit_open_ms, 30000);
  assert_int_equal(p->replay_window_s, 300);
  assert_null(tb_config_partner_find(&cfg, "nope"));
  tb_config_free(&cfg);
  free(t1);
  free(t2);
  free(t3);
  free(text);
}

static void test_partner_tls_and_delivery_problems(void **state) {
  (void)state;
  expect_mutation("partners.0.tls", "{\"client_certificate\": \"c.pem\"}",
                  "partners[0].tls.client_key: missing (client_certificate is set: a client "
                  "certificate for mTLS needs its private key too)");
  expect_mutation("partners.0.tls", "{\"client_key\": \"c.key\"}",
                  "partners[0].tls.client_certificate: missing (client_key is set: a client "
                  "certificate for mTLS needs its certificate too)");
  expect_mutation("partners.0.tls", "{\"cafile\": \"c.pem\"}",
                  "partners[0].tls.cafile: unknown key (allowed here: ca, client_certificate, "
                  "client_key, client_ca)");
  expect_mutation("partners.0.tls", "\"c.pem\"",
                  "partners[0].tls: expected an object, found a string (\"c.pem\")");
  expect_mutation("partners.0.tls.ca", "\"\"", "partners[0].tls.ca: empty (a path is needed)");
  expect_mutation("partners.0.delivery.max_in_flight", "0",
                  "partners[0].delivery.max_in_flight: 0 is out of range: allowed 1..1024");
  expect_mutation("partners.0.delivery.timeout_ms", "\"15s\"",
                  "partners[0].delivery.timeout_ms: expected an integer, found a string "
                  "(\"15s\")");
  expect_mutation("partners.0.delivery.max_retries", "3",
                  "partners[0].delivery.max_retries: unknown key (allowed here: max_in_flight, "
                  "connect_timeout_ms, timeout_ms, max_attempts, backoff_initial_ms, "
                  "backoff_max_ms, circuit_failures, circuit_open_ms)");
  expect_mutation("partners.0.delivery.backoff_initial_ms", "600000",
                  "partners[0].delivery.backoff_max_ms: 300000 is less than backoff_initial_ms "
                  "600000 (the cap must be at least the first delay)");
  expect_mutation("partners.0.delivery.connect_timeout_ms", "20000",
                  "partners[0].delivery.connect_timeout_ms: 20000 is more than timeout_ms 15000 "
                  "(the whole request includes connecting)");
  expect_mutation("partners.0.replay_window_s", "5",
                  "partners[0].replay_window_s: 5 is out of range: allowed 10..3600 (10 s..1 h)");
  /* a refused value is not cross-checked again */
  char *text = mutate("partners.0.delivery", "{\"backoff_initial_ms\": 1, \"backoff_max_ms\": 0}");
  char *p = problems_of(text);
  assert_null(strstr(p, "is less than"));
  free(p);
  free(text);
}

static void test_adapters_dir_is_required_with_partners(void **state) {
  (void)state;
  expect_mutation("adapters", NULL,
                  "adapters.dir: missing (3 partner(s) are configured: their adapters are "
                  "loaded from this directory, e.g. \"../build/release/adapters\")");
  expect_mutation("adapters", "{}",
                  "adapters.dir: missing (3 partner(s) are configured: their adapters are "
                  "loaded from this directory, e.g. \"../build/release/adapters\")");
  /* reported once when the value itself is wrong */
  expect_mutation("adapters.dir", "7", "adapters.dir: expected a string, found an integer (7)");
  /* without partners it stays optional */
  char *t1 = mutate("adapters", NULL);
  char *t2 = mutate_from(t1, "partners", "[]");
  struct tb_config cfg;
  load_ok(t2, "/", &cfg);
  assert_null(cfg.adapters_dir);
  tb_config_free(&cfg);
  free(t1);
  free(t2);
}

static const char PARTNER_API[] =
    "{\"listen\": \"0.0.0.0:8443\", \"tls\": {\"certificate\": \"pki/tls-server.pem\","
    " \"private_key\": \"/k/tls-server.key\"}, \"limits\": {\"max_body_bytes\": 2048,"
    " \"max_connections\": 64}, \"timeouts_ms\": {\"header\": 500}}";

static void test_partner_api_is_stored(void **state) {
  (void)state;
  char *text = mutate("partner_api", PARTNER_API);
  struct tb_config cfg;
  load_ok(text, "/etc/tbgw", &cfg);
  assert_int_equal(cfg.partner_api_set, 1);
  assert_string_equal(cfg.partner_api_host, "0.0.0.0");
  assert_int_equal(cfg.partner_api_port, 8443);
  assert_string_equal(cfg.partner_api_tls_certificate, "/etc/tbgw/pki/tls-server.pem");
  assert_string_equal(cfg.partner_api_tls_private_key, "/k/tls-server.key");
  assert_int_equal(cfg.partner_api_limits.max_body_bytes, 2048);
  assert_int_equal(cfg.partner_api_limits.max_connections, 64);
  assert_int_equal(cfg.partner_api_limits.header_timeout_ms, 500);
  assert_int_equal(cfg.partner_api_limits.max_header_count, 100);     /* default */
  assert_int_equal(cfg.partner_api_limits.body_timeout_ms, 30000);    /* default */
  /* the local API keeps its own limits */
  assert_int_equal(cfg.local_api_limits.max_body_bytes, 33554432);
  assert_int_equal(cfg.local_api_limits.header_timeout_ms, 10000);
  tb_config_free(&cfg);
  free(text);
}

static void test_partner_api_problems(void **state) {
  (void)state;
  expect_mutation("partner_api", "{\"listen\": \"0.0.0.0:8443\"}",
                  "partner_api.tls: missing (an object with \"certificate\" and \"private_key\": "
                  "partners are served over HTTPS only)");
  expect_mutation("partner_api", "{\"tls\": {\"certificate\": \"c\", \"private_key\": \"k\"}}",
                  "partner_api.listen: missing (address and port for partner platforms, e.g. "
                  "\"0.0.0.0:8443\")");
  expect_mutation("partner_api",
                  "{\"listen\": \"0.0.0.0:8443\", \"tls\": {\"certificate\": \"c\"}}",
                  "partner_api.tls.private_key: missing (the PEM private key of that "
                  "certificate, mode 0600)");
  expect_mutation("partner_api",
                  "{\"listen\": \"127.0.0.1:8080\", \"tls\": {\"certificate\": \"c\", "
                  "\"private_key\": \"k\"}}",
                  "partner_api.listen: 127.0.0.1:8080 is local_api.listen too; the partner "
                  "listener needs an address of its own");
  expect_mutation("partner_api",
                  "{\"listen\": \"host:8443\", \"tls\": {\"certificate\": \"c\", "
                  "\"private_key\": \"k\"}}",
                  "partner_api.listen: \"host:8443\": the host must be a numeric IPv4 address "
                  "(names are not resolved)");
  /* the limits are checked against the partner listener's path, and the
   * local body-size cross-check is not applied to them */
  expect_mutation("partner_api",
                  "{\"listen\": \"0.0.0.0:8443\", \"tls\": {\"certificate\": \"c\", "
                  "\"private_key\": \"k\"}, \"limits\": {\"max_body_bytes\": 10}}",
                  "partner_api.limits.max_body_bytes: 10 is out of range: allowed "
                  "1024..1073741824 (1 KiB..1 GiB)");
  expect_mutation("partner_api",
                  "{\"listen\": \"0.0.0.0:8443\", \"tls\": {\"certificate\": \"c\", "
                  "\"private_key\": \"k\"}, \"tokens\": []}",
                  "partner_api.tokens: unknown key (allowed here: listen, tls, limits, "
                  "timeouts_ms)");
  expect_mutation("partner_api", "true", "partner_api: expected an object, found a boolean (true)");
}

/* ---- local_api.rate_limit and cases.max_json_depth -------------------- */

static void test_rate_limit_and_json_depth(void **state) {
  (void)state;
  /* defaults */
  struct tb_config cfg;
  load_ok(GOOD, "/", &cfg);
  assert_int_equal(cfg.rate_limit_per_s, 500);
  assert_int_equal(cfg.rate_limit_burst, 1000);
  assert_int_equal(cfg.cases_max_json_depth, 32);
  tb_config_free(&cfg);
  /* values are stored; 0 (off) is allowed */
  char *t = mutate("local_api.rate_limit", "{\"requests_per_s\": 0, \"burst\": 7}");
  char *t2 = mutate_from(t, "cases.max_json_depth", "4");
  load_ok(t2, "/", &cfg);
  assert_int_equal(cfg.rate_limit_per_s, 0);
  assert_int_equal(cfg.rate_limit_burst, 7);
  assert_int_equal(cfg.cases_max_json_depth, 4);
  tb_config_free(&cfg);
  free(t);
  free(t2);
  /* ranges and shapes */
  expect_mutation("local_api.rate_limit.requests_per_s", "1000001",
                  "local_api.rate_limit.requests_per_s: 1000001 is out of range: allowed "
                  "0..1000000 (0 (off)..1000000)");
  expect_mutation("local_api.rate_limit.burst", "-1",
                  "local_api.rate_limit.burst: -1 is out of range: allowed 0..1000000 "
                  "(0 (off)..1000000)");
  expect_mutation("local_api.rate_limit", "5",
                  "local_api.rate_limit: expected an object, found an integer (5)");
  expect_mutation("local_api.rate_limit.rps", "5",
                  "local_api.rate_limit.rps: unknown key (allowed here: requests_per_s, burst)");
  expect_mutation("cases.max_json_depth", "3",
                  "cases.max_json_depth: 3 is out of range: allowed 4..512");
  expect_mutation("cases.max_json_depth", "513",
                  "cases.max_json_depth: 513 is out of range: allowed 4..512");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_example_config_loads_and_routes_every_sample),
      cmocka_unit_test(test_documented_defaults_are_applied),
      cmocka_unit_test(test_every_key_is_stored),
      cmocka_unit_test(test_listen_problems),
      cmocka_unit_test(test_token_problems),
      cmocka_unit_test(test_type_and_range_problems),
      cmocka_unit_test(test_body_limit_must_carry_materials),
      cmocka_unit_test(test_partner_problems),
      cmocka_unit_test(test_unknown_keys_are_refused),
      cmocka_unit_test(test_all_problems_reported_in_document_order),
      cmocka_unit_test(test_invalid_json_names_line_and_column),
      cmocka_unit_test(test_unreadable_file_is_an_io_error),
      cmocka_unit_test(test_route_lookup),
      cmocka_unit_test(test_rate_limit_and_json_depth),
      cmocka_unit_test(test_relative_paths_resolve_against_config_dir),
      cmocka_unit_test(test_utf8_bom_is_accepted),
      cmocka_unit_test(test_free_releases_everything_and_is_idempotent),
      cmocka_unit_test(test_keys_are_stored_in_file_order),
      cmocka_unit_test(test_key_problems),
      cmocka_unit_test(test_partner_tls_delivery_and_replay_window),
      cmocka_unit_test(test_partner_tls_and_delivery_problems),
      cmocka_unit_test(test_adapters_dir_is_required_with_partners),
      cmocka_unit_test(test_partner_api_is_stored),
      cmocka_unit_test(test_partner_api_problems),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
