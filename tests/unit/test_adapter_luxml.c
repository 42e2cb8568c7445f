/*
 * The lu-xml adapter (adapters/lu-xml, shared/partners/lu-xml.md) through
 * the real loader and host services, against independent tools: every
 * message and acknowledgement we sign verifies with the xmlsec1 command line
 * under our CA and validates with xmllint against schemas/lu-xml.xsd; every
 * message type survives encode → (re-signed by the partner's key) → decode
 * unchanged; a message signed by the xmlsec1 CLI with the partner's key is
 * accepted; and every refusal, classification and answer of the document's
 * tables is produced, including for hostile XML.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "adapter_fixture.h"

static struct tb_adapter_fixture F;
static const struct tb_adapter *A;
static void *S;
static const struct tb_host *H;
static char tmpdir[600];

#define SETTINGS                                                                              \
  "{\"name\":\"laizhou\",\"adapter\":\"lu-xml\",\"regions\":[\"370683\"],"                   \
  "\"endpoint\":\"https://127.0.0.1:9443\",\"retry\":{\"max\":5},"                            \
  "\"keys\":{\"sign\":\"gw-rsa\",\"peer_ca\":\"laizhou-ca\"},\"replay_window_s\":300,"        \
  "\"local_regions\":[\"370683\",\"370685\",\"440203\"]}"

/* ---- helpers ---------------------------------------------------------------- */

/* memmem without _GNU_SOURCE. */
static const void *mem_find(const void *hay, size_t hl, const void *needle, size_t nl) {
  const unsigned char *h = hay;
  if (nl == 0) return hay;
  for (size_t i = 0; hay != NULL && i + nl <= hl; i++)
    if (h[i] == *(const unsigned char *)needle && memcmp(h + i, needle, nl) == 0) return h + i;
  return NULL;
}

static const char *tmp(const char *name) {
  static char paths[8][700];
  static int next;
  char *p = paths[next++ % 8];
  snprintf(p, 700, "%s/%s", tmpdir, name);
  return p;
}

static int run(const char *fmt, ...) {
  char cmd[4096], full[4800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  snprintf(full, sizeof full, "(%s) >>'%s/tools.log' 2>&1", cmd, tmpdir);
  int st = system(full);
  return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static void write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = '\0';
  fclose(f);
  if (len) *len = (size_t)n;
  return b;
}

static const char *pki(const char *rel) {
  static char paths[4][700];
  static int next;
  char *p = paths[next++ % 4];
  snprintf(p, 700, "%s/%s", F.pki, rel);
  return p;
}

static const char *samples_dir(void) {
  const char *d = getenv("TB_SAMPLES_DIR");
  return d ? d : "../shared/samples";
}

static json_t *load_json_file(const char *path) {
  json_error_t je;
  json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
  if (j == NULL) fail_msg("%s: %s", path, je.text);
  return j;
}

static json_t *sample(const char *name) {
  char p[1200];
  snprintf(p, sizeof p, "%s/%s", samples_dir(), name);
  return load_json_file(p);
}

/* Replaces the first occurrence of from by to; returns a malloc'd string. */
static char *replace(const char *s, const char *from, const char *to) {
  const char *p = strstr(s, from);
  if (p == NULL) fail_msg("\"%s\" not found", from);
  size_t fl = strlen(from), tl = strlen(to), len = strlen(s);
  char *o = malloc(len - fl + tl + 1);
  assert_non_null(o);
  size_t pre = (size_t)(p - s);
  memcpy(o, s, pre);
  memcpy(o + pre, to, tl);
  memcpy(o + pre + tl, p + fl, len - pre - fl + 1);
  return o;
}

static void assert_json_equal(const char *got_text, size_t got_len, const json_t *want) {
  json_error_t je;
  json_t *got = json_loadb(got_text, got_len, JSON_REJECT_DUPLICATES, &je);
  if (got == NULL) fail_msg("canonical is not JSON: %s", je.text);
  if (!json_equal(got, want)) {
    char *a = json_dumps(got, JSON_SORT_KEYS), *b = json_dumps(want, JSON_SORT_KEYS);
    fprintf(stderr, "got:  %.3000s\nwant: %.3000s\n", a, b);
    free(a);
    free(b);
    json_decref(got);
    fail_msg("canonical JSON differs");
  }
  json_decref(got);
}

/* Encodes canonical JSON; returns the wire request (host memory). */
static int encode(enum tb_msg_type type, const json_t *body, const char *receiver,
                  struct tb_wire_request *req, char *err) {
  char *text = json_dumps(body, JSON_COMPACT);
  struct tb_outbound m = {.type = type,
                          .message_id = "0B6F8C2E-3F0A-4C51-9D7E-5D3C1F0E9A42",
                          .case_id = json_string_value(json_object_get(body, "case_id")),
                          .sender_region = "430603",
                          .receiver_region = receiver,
                          .body = text,
                          .body_len = strlen(text),
                          .attempt = 1,
                          .now_ms = H->now_ms()};
  int rc = A->encode(S, &m, req, err);
  free(text);
  return rc;
}

static void free_request(struct tb_wire_request *r) {
  H->free(r->path);
  H->free(r->content_type);
  H->free(r->headers);
  H->free(r->body.data);
  memset(r, 0, sizeof *r);
}

static void free_answer(struct tb_wire_answer *a) {
  H->free(a->content_type);
  H->free(a->headers);
  H->free(a->body.data);
  memset(a, 0, sizeof *a);
}

/* The document checked by the independent tools: xmlsec1 under our CA
 * (and not under the partner's), xmllint against the published schema. */
static void assert_tools_accept(const void *xml, size_t len, const char *tag) {
  char name[64];
  snprintf(name, sizeof name, "%s.xml", tag);
  const char *f = tmp(name);
  write_file(f, xml, len);
  if (run("xmlsec1 --verify --trusted-pem '%s' '%s'", pki("gateway/ca.pem"), f) != 0)
    fail_msg("xmlsec1 does not verify %s (see %s/tools.log)", f, tmpdir);
  assert_int_not_equal(run("xmlsec1 --verify --trusted-pem '%s' '%s'",
                           pki("partners/laizhou/ca.pem"), f),
                       0);
  if (run("xmllint --noout --schema '%s/schemas/lu-xml.xsd' '%s'", tb_fixture_repo_root(), f) != 0)
    fail_msg("xmllint refuses %s (see %s/tools.log)", f, tmpdir);
}

/* Removes our signature and signs again with another named key (the
 * partner's, to forge what the partner would send). Host memory. */
static struct tb_bytes resign(const unsigned char *xml, size_t len, const char *key) {
  char *s = malloc(len + 1);
  assert_non_null(s);
  memcpy(s, xml, len);
  s[len] = '\0';
  char *a = strstr(s, "<ds:Signature"), *b = strstr(s, "</ds:Signature>");
  assert_non_null(a);
  assert_non_null(b);
  memmove(a, b + strlen("</ds:Signature>"), strlen(b + strlen("</ds:Signature>")) + 1);
  struct tb_bytes out = {NULL, 0};
  char err[TB_ERRMSG_MAX] = "";
  if (key == NULL) {
    out.data = (unsigned char *)strdup(s);
    out.len = strlen(s);
  } else if (H->xmldsig_sign(H->ctx, key, s, strlen(s), &out, err) != 0) {
    fail_msg("re-sign with %s: %s", key, err);
  }
  free(s);
  return out;
}

static void decode_bytes(const void *xml, size_t len, struct tb_inbound_message *msg) {
  struct tb_header hd[] = {{"Content-Type", "application/xml; charset=UTF-8"}};
  struct tb_inbound_request req = {.method = "POST", .path = "/tongban/v1/notify",
                                   .headers = hd, .header_count = 1,
                                   .body = xml, .body_len = len,
                                   .peer_subject = "CN=laizhou", .now_ms = H->now_ms()};
  char err[TB_ERRMSG_MAX] = "";
  int rc = A->decode(S, &req, msg, err);
  if (rc != 0) fail_msg("decode failed: %s", err);
}

static void release(struct tb_inbound_message *m) {
  A->release(S, m);
  H->free(m->canonical.data);
  memset(m, 0, sizeof *m);
}

static void assert_refused(const void *xml, size_t len, const char *code) {
  struct tb_inbound_message m;
  decode_bytes(xml, len, &m);
  if (m.kind != TB_INBOUND_REFUSED || strcmp(m.refuse_code, code) != 0)
    fail_msg("expected refusal %s, got kind %d code \"%s\" (%s)", code, (int)m.kind,
             m.refuse_code, m.refuse_text);
  assert_null(m.canonical.data);
  release(&m);
}

/* A partner message from a Body fragment, signed with key (NULL: unsigned). */
static struct tb_bytes partner_msg(const char *type, const char *body, const char *receiver,
                                   int64_t offset_s, const char *key) {
  char when[24];
  assert_int_equal(H->format_beijing(H->now_ms() + offset_s * 1000, when, sizeof when), 0);
  size_t n = strlen(body) + 1024;
  char *x = malloc(n);
  assert_non_null(x);
  snprintf(x, n,
           "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
           "<TongbanMessage xmlns=\"urn:sd:tongban:1.0\" version=\"1.0\">\n"
           "  <Header>\n"
           "    <MessageId>7d9f3a52-1c2b-4e8a-9f10-2b3c4d5e6f70</MessageId>\n"
           "    <MessageType>%s</MessageType>\n"
           "    <SenderRegion>370683</SenderRegion>\n"
           "    <ReceiverRegion>%s</ReceiverRegion>\n"
           "    <SendTime>%s</SendTime>\n"
           "  </Header>\n"
           "  <Body>%s</Body>\n"
           "</TongbanMessage>\n",
           type, receiver, when, body);
  struct tb_bytes out = {NULL, 0};
  char err[TB_ERRMSG_MAX] = "";
  if (key == NULL) {
    out.data = (unsigned char *)x;
    out.len = strlen(x);
    return out;
  }
  if (H->xmldsig_sign(H->ctx, key, x, strlen(x), &out, err) != 0) fail_msg("sign: %s", err);
  free(x);
  return out;
}

static const char status_body[] =
    "<Status><ShenBanHao>430603-20240506-000123</ShenBanHao>"
    "<HuiZhiHao>370683-SL-20240506-0001</HuiZhiHao><ZhuangTai>03</ZhuangTai>"
    "<ShuoMing>请补充结婚证复印件</ShuoMing>"
    "<BuZhengCaiLiao><MingCheng>结婚证复印件</MingCheng></BuZhengCaiLiao>"
    "<ShiJian>2024-05-07 09:30:00</ShiJian></Status>";

/* ---- setup ---------------------------------------------------------------------- */

static int group_setup(void **state) {
  (void)state;
  if (tb_fixture_setup_keys(&F) != 0) return -1;
  if (tb_fixture_load(&F, "lu-xml", "laizhou", SETTINGS) != 0) return -1;
  A = F.lib.ops;
  S = F.inst.state;
  H = &F.host.table;
  snprintf(tmpdir, sizeof tmpdir, "%s/luxml-test", F.pki);
  char cmd[800];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  if (getenv("TB_TEST_KEEP")) {
    fprintf(stderr, "kept %s\n", F.pki);
    F.pki[0] = '\0';
  }
  tb_fixture_teardown(&F);
  return 0;
}

/* ---- init, routes, schema ---------------------------------------------------------- */

static void expect_config_error(const char *settings, const char *needle) {
  void *st = NULL;
  char err[TB_ERRMSG_MAX] = "";
  int rc = A->init(H, settings, strlen(settings), &st, err);
  if (rc != TB_ECONFIG || strstr(err, needle) == NULL)
    fail_msg("settings %s: rc %d, err \"%s\" (wanted TB_ECONFIG naming %s)", settings, rc, err,
             needle);
  assert_null(st);
}

static void test_init_refuses_bad_settings_naming_the_key(void **state) {
  (void)state;
  expect_config_error("{\"name\":\"laizhou\"}", "keys");
  expect_config_error("{\"keys\":[]}", "keys");
  expect_config_error("{\"keys\":{\"peer_ca\":\"laizhou-ca\"}}", "keys.sign");
  expect_config_error("{\"keys\":{\"sign\":\"nope\",\"peer_ca\":\"laizhou-ca\"}}", "keys.sign");
  expect_config_error("{\"keys\":{\"sign\":\"gw-ca\",\"peer_ca\":\"laizhou-ca\"}}", "keys.sign");
  expect_config_error("{\"keys\":{\"sign\":\"gw-sm2\",\"peer_ca\":\"laizhou-ca\"}}", "keys.sign");
  expect_config_error("{\"keys\":{\"sign\":\"gw-rsa\"}}", "keys.peer_ca");
  expect_config_error("{\"keys\":{\"sign\":\"gw-rsa\",\"peer_ca\":\"laizhou-rsa\"}}",
                      "keys.peer_ca");
  expect_config_error("{\"keys\":{\"sign\":\"gw-rsa\",\"peer_ca\":\"laizhou-ca\"},"
                      "\"replay_window_s\":0}",
                      "replay_window_s");
  expect_config_error("{\"keys\":{\"sign\":\"gw-rsa\",\"peer_ca\":\"laizhou-ca\"},"
                      "\"local_regions\":[\"3706\"]}",
                      "local_regions[0]");
  expect_config_error("not json", "settings");
  /* the gateway's own keys are ignored */
  void *st = NULL;
  char err[TB_ERRMSG_MAX] = "";
  const char *ok = "{\"name\":\"x\",\"tls\":{},\"keys\":{\"sign\":\"gw-rsa\",\"peer_ca\":\"gw-ca\"}}";
  assert_int_equal(A->init(H, ok, strlen(ok), &st, err), 0);
  A->fini(st);
}

static void test_routes_serve_notify(void **state) {
  (void)state;
  size_t n = 0;
  const struct tb_inbound_route *r = A->routes(S, &n);
  assert_int_equal(n, 1);
  assert_string_equal(r[0].method, "POST");
  assert_string_equal(r[0].path, "/tongban/v1/notify");
  assert_string_equal(A->name, "lu-xml");
}

static void test_embedded_schema_is_the_published_file(void **state) {
  (void)state;
  char p[1200];
  snprintf(p, sizeof p, "%s/schemas/lu-xml.xsd", tb_fixture_repo_root());
  size_t xl, sl;
  char *xsd = read_file(p, &xl);
  assert_non_null(xsd);
  char *so = read_file(F.lib.path, &sl);
  assert_non_null(so);
  assert_non_null(mem_find(so, sl, xsd, xl));
  /* and the copy is followed by its terminator, not by more schema text */
  const char *at = mem_find(so, sl, xsd, xl);
  assert_int_equal(at[xl], '\0');
  free(xsd);
  free(so);
}

/* ---- CASE_SUBMIT: every sample both ways ---------------------------------------------- */

static void roundtrip_case(const json_t *c, const json_t *want, const char *tag) {
  struct tb_wire_request req;
  char err[TB_ERRMSG_MAX] = "";
  const char *target = json_string_value(json_object_get(c, "target_region"));
  if (encode(TB_MSG_CASE_SUBMIT, c, target, &req, err) != 0) fail_msg("%s: encode: %s", tag, err);
  assert_string_equal(req.path, "/tongban/v1/receive");
  assert_string_equal(req.content_type, "application/xml; charset=UTF-8");
  assert_tools_accept(req.body.data, req.body.len, tag);
  assert_non_null(mem_find(req.body.data, req.body.len,
                         "<MessageId>0b6f8c2e-3f0a-4c51-9d7e-5d3c1f0e9a42</MessageId>", 57));
  struct tb_bytes p = resign(req.body.data, req.body.len, "laizhou-rsa");
  struct tb_inbound_message m;
  decode_bytes(p.data, p.len, &m);
  if (m.kind != TB_INBOUND_CASE)
    fail_msg("%s: decode: kind %d %s %s", tag, (int)m.kind, m.refuse_code, m.refuse_text);
  assert_int_equal(m.type, TB_MSG_CASE_SUBMIT);
  assert_string_equal(m.message_id, "0b6f8c2e-3f0a-4c51-9d7e-5d3c1f0e9a42");
  assert_string_equal(m.case_id, json_string_value(json_object_get(c, "case_id")));
  assert_true(m.sent_ms > 0);
  assert_json_equal((const char *)m.canonical.data, m.canonical.len, want);
  release(&m);
  H->free(p.data);
  free_request(&req);
}

static void test_every_sample_roundtrips_and_tools_accept_it(void **state) {
  (void)state;
  DIR *d = opendir(samples_dir());
  assert_non_null(d);
  struct dirent *e;
  int count = 0;
  while ((e = readdir(d)) != NULL) {
    size_t l = strlen(e->d_name);
    if (l < 6 || strcmp(e->d_name + l - 5, ".json") != 0) continue;
    json_t *c = sample(e->d_name);
    roundtrip_case(c, c, e->d_name);
    json_decref(c);
    count++;
  }
  closedir(d);
  assert_true(count >= 5);
}

static void test_accepted_at_any_offset_becomes_beijing_time(void **state) {
  (void)state;
  static const struct {
    const char *in, *xml, *back;
  } cases[] = {
      {"2024-05-06T02:00:00Z", "2024-05-06 10:00:00", "2024-05-06T10:00:00+08:00"},
      {"2024-05-05T21:30:00-05:00", "2024-05-06 10:30:00", "2024-05-06T10:30:00+08:00"},
      {"2024-05-06T23:59:59.999+09:00", "2024-05-06 22:59:59", "2024-05-06T22:59:59+08:00"},
      {"2023-12-31T20:00:00z", "2024-01-01 04:00:00", "2024-01-01T04:00:00+08:00"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    json_t *c = sample("01-rebirth-registration-laizhou.json");
    json_object_set_new(c, "accepted_at", json_string(cases[i].in));
    struct tb_wire_request req;
    char err[TB_ERRMSG_MAX] = "";
    assert_int_equal(encode(TB_MSG_CASE_SUBMIT, c, "370683", &req, err), 0);
    char want[80];
    snprintf(want, sizeof want, "<ShouLiShiJian>%s</ShouLiShiJian>", cases[i].xml);
    if (mem_find(req.body.data, req.body.len, want, strlen(want)) == NULL)
      fail_msg("%s: %s not in the message", cases[i].in, want);
    free_request(&req);
    json_t *w = json_deep_copy(c);
    json_object_set_new(w, "accepted_at", json_string(cases[i].back));
    roundtrip_case(c, w, "offset");
    json_decref(w);
    json_decref(c);
  }
}

static void test_form_types_and_text_survive_exactly(void **state) {
  (void)state;
  json_t *c = sample("01-rebirth-registration-laizhou.json");
  json_error_t je;
  json_t *form = json_loads(
      "{\"int\": 2, \"real\": 0.6, \"real_whole\": 2.0, \"big\": 1e20, \"neg\": -7,"
      " \"tiny\": 5e-324, \"max\": 9223372036854775807, \"pi\": 3.141592653589793,"
      " \"t\": true, \"f\": false, \"n\": null, \"empty\": \"\","
      " \"text\": \"a & b < c > d \\\" ' \\r\\n\\ttab 张三 😀\","
      " \"m\": [[1, 2.5], [{\"k\": \"v\"}, null]],"
      " \"owners\": [{\"name\": \"李梅\", \"ratio\": 0.6}, {\"name\": \"王\", \"ratio\": 0.4}],"
      " \"deep\": {\"a\": {\"b\": {\"c\": [true]}}}, \"空格 key\": \"x\"}",
      0, &je);
  assert_non_null(form);
  json_object_set_new(c, "form", form);
  json_object_set_new(c, "remarks", json_string("line 1\r\nline 2\ttab & <tag>"));
  struct tb_wire_request req;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(encode(TB_MSG_CASE_SUBMIT, c, "370683", &req, err), 0);
  static const char *const want[] = {
      "<Xiang Ming=\"int\" LeiXing=\"number\">2</Xiang>",
      "<Xiang Ming=\"real\" LeiXing=\"number\">0.6</Xiang>",
      "<Xiang Ming=\"real_whole\" LeiXing=\"number\">2.0</Xiang>",
      "<Xiang Ming=\"big\" LeiXing=\"number\">1e+20</Xiang>",
      "<Xiang Ming=\"n\" LeiXing=\"null\"></Xiang>",
      "<Xiang Ming=\"t\" LeiXing=\"boolean\">true</Xiang>",
      "<Xiang Ming=\"m[0][1]\" LeiXing=\"number\">2.5</Xiang>",
      "<Xiang Ming=\"m[1][0].k\" LeiXing=\"string\">v</Xiang>",
      "<Xiang Ming=\"owners[1].ratio\" LeiXing=\"number\">0.4</Xiang>",
      "<Xiang Ming=\"deep.a.b.c[0]\" LeiXing=\"boolean\">true</Xiang>",
  };
  for (size_t i = 0; i < sizeof want / sizeof *want; i++)
    if (mem_find(req.body.data, req.body.len, want[i], strlen(want[i])) == NULL &&
        /* libxml2 may write an empty element as <x/> */
        strstr(want[i], "></Xiang>") == NULL)
      fail_msg("not in the message: %s", want[i]);
  assert_tools_accept(req.body.data, req.body.len, "form");
  free_request(&req);
  roundtrip_case(c, c, "form");
  /* integer and real stay apart after the trip */
  json_decref(c);
}

static void expect_encode_refused(enum tb_msg_type type, const json_t *body, const char *needle) {
  struct tb_wire_request req;
  char err[TB_ERRMSG_MAX] = "";
  int rc = encode(type, body, "370683", &req, err);
  if (rc != TB_EVALIDATE || strstr(err, needle) == NULL)
    fail_msg("expected TB_EVALIDATE naming \"%s\", got %d \"%s\"", needle, rc, err);
  assert_null(req.body.data);
  assert_null(req.path);
}

static void test_form_that_cannot_roundtrip_is_refused_at_encode(void **state) {
  (void)state;
  static const struct {
    const char *form, *needle;
  } cases[] = {
      {"{\"a\": {}}", "form.a is an empty object"},
      {"{\"a\": {\"b\": []}}", "form.a.b is an empty array"},
      {"{\"a.b\": 1}", "contains '.', '[' or ']'"},
      {"{\"x\": {\"a[0]\": 1}}", "form.x: key"},
      {"{\"a]\": 1}", "contains '.', '[' or ']'"},
      {"{\"\": 1}", "is empty"},
      {"{\"a\": [\"ok\", \"bad \\u0001\"]}", "form.a[1]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    json_t *c = sample("01-rebirth-registration-laizhou.json");
    json_error_t je;
    json_t *f = json_loads(cases[i].form, 0, &je);
    assert_non_null(f);
    json_object_set_new(c, "form", f);
    expect_encode_refused(TB_MSG_CASE_SUBMIT, c, cases[i].needle);
    json_decref(c);
  }
  /* an empty top-level form is fine: an empty BiaoDan */
  json_t *c = sample("01-rebirth-registration-laizhou.json");
  json_object_set_new(c, "form", json_object());
  roundtrip_case(c, c, "emptyform");
  json_decref(c);
}

static void test_material_without_content_is_refused_unless_empty(void **state) {
  (void)state;
  json_t *c = sample("01-rebirth-registration-laizhou.json");
  json_t *m0 = json_array_get(json_object_get(c, "materials"), 0);
  json_object_del(m0, "content_base64");
  expect_encode_refused(TB_MSG_CASE_SUBMIT, c, "materials[0].content_base64: missing");
  /* an empty file travels as an empty NeiRong and comes back as "" */
  json_object_set_new(m0, "size", json_integer(0));
  json_object_set_new(m0, "sm3", json_string("1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"));
  json_t *w = json_deep_copy(c);
  json_object_set_new(json_array_get(json_object_get(w, "materials"), 0), "content_base64",
                      json_string(""));
  roundtrip_case(c, w, "emptyfile");
  json_decref(w);
  /* a media type without a GeShi */
  json_object_set_new(m0, "media_type", json_string("image/gif"));
  expect_encode_refused(TB_MSG_CASE_SUBMIT, c, "materials[0].media_type");
  json_decref(c);
}

static void test_optional_blank_values_are_left_out(void **state) {
  (void)state;
  json_t *c = sample("02-veteran-retirement-wujiang.json");
  json_object_set_new(json_object_get(c, "applicant"), "address", json_string(""));
  json_object_del(c, "remarks");
  struct tb_wire_request req;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(encode(TB_MSG_CASE_SUBMIT, c, "440203", &req, err), 0);
  assert_null(mem_find(req.body.data, req.body.len, "<DiZhi", 6));
  assert_null(mem_find(req.body.data, req.body.len, "<BeiZhu", 7));
  assert_tools_accept(req.body.data, req.body.len, "blank");
  free_request(&req);
  json_t *w = json_deep_copy(c);
  json_object_del(json_object_get(w, "applicant"), "address");
  roundtrip_case(c, w, "blank");
  json_decref(w);
  /* a blank required name is refused with the schema's reason */
  json_object_set_new(json_object_get(c, "applicant"), "name", json_string("  "));
  expect_encode_refused(TB_MSG_CASE_SUBMIT, c, "XingMing");
  json_decref(c);
}

/* ---- the other three types both ways ---------------------------------------------------- */

static void roundtrip_other(enum tb_msg_type type, const char *json_text, const char *want_text,
                            enum tb_inbound_kind kind, const char *tag) {
  json_error_t je;
  json_t *b = json_loads(json_text, 0, &je);
  if (b == NULL) fail_msg("%s: %s", tag, je.text);
  json_t *w = want_text ? json_loads(want_text, 0, &je) : json_incref(b);
  assert_non_null(w);
  struct tb_wire_request req;
  char err[TB_ERRMSG_MAX] = "";
  if (encode(type, b, "370683", &req, err) != 0) fail_msg("%s: encode: %s", tag, err);
  assert_tools_accept(req.body.data, req.body.len, tag);
  struct tb_bytes p = resign(req.body.data, req.body.len, "laizhou-rsa");
  struct tb_inbound_message m;
  decode_bytes(p.data, p.len, &m);
  if (m.kind != kind) fail_msg("%s: kind %d %s %s", tag, (int)m.kind, m.refuse_code, m.refuse_text);
  assert_int_equal(m.type, type);
  assert_string_equal(m.case_id, json_string_value(json_object_get(b, "case_id")));
  assert_string_equal(m.receipt_no, json_string_value(json_object_get(b, "receipt_no")));
  assert_json_equal((const char *)m.canonical.data, m.canonical.len, w);
  release(&m);
  H->free(p.data);
  free_request(&req);
  json_decref(b);
  json_decref(w);
}

static void test_withdraw_supplement_status_roundtrip(void **state) {
  (void)state;
  roundtrip_other(TB_MSG_CASE_WITHDRAW,
                  "{\"case_id\":\"430603-20240506-000123\",\"receipt_no\":\"370683-SL-20240506-0001\","
                  "\"reason\":\"申请人主动撤回\"}",
                  NULL, TB_INBOUND_OTHER, "withdraw");
  roundtrip_other(TB_MSG_CASE_SUPPLEMENT,
                  "{\"case_id\":\"430603-20240506-000123\",\"receipt_no\":\"370683-SL-20240506-0001\","
                  "\"materials\":[{\"name\":\"结婚证复印件\",\"media_type\":\"application/pdf\","
                  "\"size\":38,\"sm3\":\"e42311e4808223995c2de9580699233dfd903ddce1dd42752e00f8b9f7924ba5\","
                  "\"content_base64\":\"JVBERi0xLjQKJSBtYXJyaWFnZSBjZXJ0aWZpY2F0ZQolJUVPRgo=\"}]}",
                  NULL, TB_INBOUND_OTHER, "supplement");
  roundtrip_other(TB_MSG_STATUS_NOTIFY,
                  "{\"case_id\":\"430603-20240506-000123\",\"receipt_no\":\"370683-SL-20240506-0001\","
                  "\"status\":\"supplement_required\",\"opinion\":\"请补充结婚证复印件\","
                  "\"supplement\":[\"结婚证复印件\",\"户口簿\"],\"tracking_no\":null,"
                  "\"licence_no\":null,\"at\":\"2024-05-07T09:30:00+08:00\"}",
                  NULL, TB_INBOUND_STATUS, "status03");
  roundtrip_other(TB_MSG_STATUS_NOTIFY,
                  "{\"case_id\":\"430603-20240506-000123\",\"receipt_no\":\"370683-SL-20240506-0001\","
                  "\"status\":\"result_shipped\",\"opinion\":null,\"supplement\":[],"
                  "\"tracking_no\":\"SF1234567890\",\"licence_no\":\"LIC-1\","
                  "\"at\":\"2024-05-07T01:30:00Z\"}",
                  "{\"case_id\":\"430603-20240506-000123\",\"receipt_no\":\"370683-SL-20240506-0001\","
                  "\"status\":\"result_shipped\",\"opinion\":null,\"supplement\":[],"
                  "\"tracking_no\":\"SF1234567890\",\"licence_no\":\"LIC-1\","
                  "\"at\":\"2024-05-07T09:30:00+08:00\"}",
                  TB_INBOUND_STATUS, "status08");
  static const char *const names[] = {"accepted", "rejected", "in_progress", "approved",
                                      "denied", "withdrawn"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    char j[600];
    snprintf(j, sizeof j,
             "{\"case_id\":\"C-1\",\"receipt_no\":\"R 1\",\"status\":\"%s\",\"opinion\":\"意见\","
             "\"supplement\":[],\"tracking_no\":null,\"licence_no\":null,"
             "\"at\":\"2024-05-07T09:30:00+08:00\"}",
             names[i]);
    roundtrip_other(TB_MSG_STATUS_NOTIFY, j, NULL, TB_INBOUND_STATUS, names[i]);
  }
}

static void test_status_codes_on_the_wire(void **state) {
  (void)state;
  static const char *const names[] = {"accepted", "rejected",  "supplement_required",
                                      "in_progress", "approved", "denied", "withdrawn",
                                      "result_shipped"};
  for (int i = 0; i < 8; i++) {
    char j[600];
    snprintf(j, sizeof j,
             "{\"case_id\":\"C-1\",\"receipt_no\":\"R1\",\"status\":\"%s\",\"opinion\":null,"
             "\"supplement\":%s,\"at\":\"2024-05-07T09:30:00+08:00\"}",
             names[i], i == 2 ? "[\"x\"]" : "[]");
    json_error_t je;
    json_t *b = json_loads(j, 0, &je);
    struct tb_wire_request req;
    char err[TB_ERRMSG_MAX] = "";
    assert_int_equal(encode(TB_MSG_STATUS_NOTIFY, b, "370683", &req, err), 0);
    char want[40];
    snprintf(want, sizeof want, "<ZhuangTai>%02d</ZhuangTai>", i + 1);
    assert_non_null(mem_find(req.body.data, req.body.len, want, strlen(want)));
    free_request(&req);
    json_decref(b);
  }
}

static void test_status_rules_are_enforced_at_encode(void **state) {
  (void)state;
  static const struct {
    const char *json, *needle;
  } cases[] = {
      {"{\"case_id\":\"C\",\"receipt_no\":\"R\",\"status\":\"supplement_required\",\"supplement\":[],"
       "\"at\":\"2024-05-07T09:30:00+08:00\"}",
       "needs at least one"},
      {"{\"case_id\":\"C\",\"receipt_no\":\"R\",\"status\":\"accepted\",\"supplement\":[\"x\"],"
       "\"at\":\"2024-05-07T09:30:00+08:00\"}",
       "only status supplement_required"},
      {"{\"case_id\":\"C\",\"receipt_no\":\"R\",\"status\":\"approved\",\"tracking_no\":\"SF1\","
       "\"at\":\"2024-05-07T09:30:00+08:00\"}",
       "only status result_shipped"},
      {"{\"case_id\":\"C\",\"receipt_no\":\"R\",\"status\":\"done\",\"at\":\"2024-05-07T09:30:00+08:00\"}",
       "not a canonical status"},
      {"{\"case_id\":\"C\",\"receipt_no\":\"R\",\"status\":\"accepted\",\"at\":\"2024-05-07 09:30:00\"}",
       "at: not an RFC 3339"},
      {"{\"case_id\":\"C\",\"status\":\"accepted\",\"at\":\"2024-05-07T09:30:00+08:00\"}",
       "receipt_no: missing"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    json_error_t je;
    json_t *b = json_loads(cases[i].json, 0, &je);
    assert_non_null(b);
    expect_encode_refused(TB_MSG_STATUS_NOTIFY, b, cases[i].needle);
    json_decref(b);
  }
  json_error_t je;
  json_t *b = json_loads("{\"case_id\":\"C\",\"receipt_no\":\"R\",\"materials\":[]}", 0, &je);
  expect_encode_refused(TB_MSG_CASE_SUPPLEMENT, b, "at least one material");
  json_decref(b);
  b = json_loads("{\"case_id\":\"C\",\"receipt_no\":\"R\",\"reason\":\"\"}", 0, &je);
  expect_encode_refused(TB_MSG_CASE_WITHDRAW, b, "YuanYin");
  json_decref(b);
}

/* ---- decode: signatures ------------------------------------------------------------------ */

static const char sig_template[] =
    "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>"
    "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>"
    "<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>"
    "<ds:Reference URI=\"\"><ds:Transforms>"
    "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>"
    "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>"
    "</ds:Transforms><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>"
    "<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo>"
    "<ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>";

static void test_message_signed_by_xmlsec1_cli_is_accepted(void **state) {
  (void)state;
  struct tb_bytes u = partner_msg("STATUS_NOTIFY", status_body, "430603", 0, NULL);
  char *t = replace((char *)u.data, "</TongbanMessage>", "");
  size_t n = strlen(t) + sizeof sig_template + 32;
  char *full = malloc(n);
  assert_non_null(full);
  snprintf(full, n, "%s%s\n</TongbanMessage>\n", t, sig_template);
  write_file(tmp("cli.tmpl.xml"), full, strlen(full));
  free(full);
  free(t);
  free(u.data);
  assert_int_equal(run("xmlsec1 --sign --privkey-pem '%s,%s' --output '%s' '%s'",
                       pki("partners/laizhou/sign-rsa.key"), pki("partners/laizhou/sign-rsa.pem"),
                       tmp("cli.signed.xml"), tmp("cli.tmpl.xml")),
                   0);
  size_t len;
  char *x = read_file(tmp("cli.signed.xml"), &len);
  assert_non_null(x);
  struct tb_inbound_message m;
  decode_bytes(x, len, &m);
  if (m.kind != TB_INBOUND_STATUS) fail_msg("kind %d %s %s", (int)m.kind, m.refuse_code, m.refuse_text);
  assert_string_equal(m.case_id, "430603-20240506-000123");
  assert_string_equal(m.receipt_no, "370683-SL-20240506-0001");
  assert_string_equal(m.message_id, "7d9f3a52-1c2b-4e8a-9f10-2b3c4d5e6f70");
  json_error_t je;
  json_t *w = json_loads(
      "{\"case_id\":\"430603-20240506-000123\",\"receipt_no\":\"370683-SL-20240506-0001\","
      "\"status\":\"supplement_required\",\"opinion\":\"请补充结婚证复印件\","
      "\"supplement\":[\"结婚证复印件\"],\"tracking_no\":null,\"licence_no\":null,"
      "\"at\":\"2024-05-07T09:30:00+08:00\"}",
      0, &je);
  assert_json_equal((const char *)m.canonical.data, m.canonical.len, w);
  json_decref(w);
  release(&m);
  /* tampered after signing */
  char *tam = replace(x, "请补充结婚证复印件", "请补充户口簿");
  assert_refused(tam, strlen(tam), "1001");
  free(tam);
  free(x);
}

static void test_bad_signatures_are_refused_1001(void **state) {
  (void)state;
  struct tb_bytes ok = partner_msg("STATUS_NOTIFY", status_body, "430603", 0, "laizhou-rsa");
  struct tb_inbound_message m;
  decode_bytes(ok.data, ok.len, &m);
  assert_int_equal(m.kind, TB_INBOUND_STATUS);
  release(&m);
  /* tampered body and header */
  char *t = replace((char *)ok.data, "<ZhuangTai>03</ZhuangTai>", "<ZhuangTai>05</ZhuangTai>");
  assert_refused(t, strlen(t), "1001");
  free(t);
  t = replace((char *)ok.data, "<ReceiverRegion>430603", "<ReceiverRegion>370685");
  assert_refused(t, strlen(t), "1001");
  free(t);
  H->free(ok.data);
  /* unsigned */
  struct tb_bytes u = partner_msg("STATUS_NOTIFY", status_body, "430603", 0, NULL);
  assert_refused(u.data, u.len, "1001");
  free(u.data);
  /* another partner's CA, and our own key */
  struct tb_bytes z = partner_msg("STATUS_NOTIFY", status_body, "430603", 0, "zhaoyuan-rsa");
  assert_refused(z.data, z.len, "1001");
  H->free(z.data);
  struct tb_bytes g = partner_msg("STATUS_NOTIFY", status_body, "430603", 0, "gw-rsa");
  assert_refused(g.data, g.len, "1001");
  H->free(g.data);
}

/* ---- decode: schema, time, region --------------------------------------------------------- */

static void refused_body(const char *type, const char *body, const char *code) {
  struct tb_bytes b = partner_msg(type, body, "430603", 0, "laizhou-rsa");
  assert_refused(b.data, b.len, code);
  H->free(b.data);
}

static char *case_body(const char *from, const char *to) {
  /* a valid partner case (sample 01 addressed to us), optionally mutated */
  static const char base[] =
      "<Case><ShenBanHao>370683-20240506-000001</ShenBanHao>"
      "<ShiXiangBianMa>11430603MB1528351X4000201004000</ShiXiangBianMa>"
      "<ShiXiangMingCheng>再生育服务登记</ShiXiangMingCheng>"
      "<ShouLiDi>370683</ShouLiDi><BanLiDi>430603</BanLiDi>"
      "<ShouLiShiJian>2024-05-06 10:00:00</ShouLiShiJian>"
      "<ShenQingRen><LeiXing>1</LeiXing><XingMing>张三</XingMing>"
      "<ZhengJianLeiXing>111</ZhengJianLeiXing><ZhengJianHaoMa>430603199001011231</ZhengJianHaoMa>"
      "<LianXiDianHua>13800000000</LianXiDianHua></ShenQingRen>"
      "<CaiLiaoList><CaiLiao><MingCheng>身份证复印件</MingCheng><GeShi>pdf</GeShi><DaXiao>30</DaXiao>"
      "<ZhaiYao SuanFa=\"SM3\">4011110f987776784ec0758891651e39c016ece66398573bd2d98da638711689</ZhaiYao>"
      "<NeiRong>JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0YK</NeiRong></CaiLiao></CaiLiaoList>"
      "<BiaoDan><Xiang Ming=\"children.count\" LeiXing=\"number\">2</Xiang>"
      "<Xiang Ming=\"children.names[0]\" LeiXing=\"string\">张小一</Xiang>"
      "<Xiang Ming=\"urgent\" LeiXing=\"boolean\">false</Xiang></BiaoDan>"
      "<SongDa><FangShi>2</FangShi></SongDa><BeiZhu></BeiZhu></Case>";
  return from ? replace(base, from, to) : strdup(base);
}

static void test_partner_case_decodes_to_canonical(void **state) {
  (void)state;
  char *b = case_body(NULL, NULL);
  struct tb_bytes x = partner_msg("CASE_SUBMIT", b, "430603", 0, "laizhou-rsa");
  struct tb_inbound_message m;
  decode_bytes(x.data, x.len, &m);
  if (m.kind != TB_INBOUND_CASE) fail_msg("%s %s", m.refuse_code, m.refuse_text);
  json_error_t je;
  json_t *w = json_loads(
      "{\"schema\":\"tongban.case/v1\",\"case_id\":\"370683-20240506-000001\","
      "\"item\":{\"code\":\"11430603MB1528351X4000201004000\",\"name\":\"再生育服务登记\"},"
      "\"origin_region\":\"370683\",\"target_region\":\"430603\","
      "\"applicant\":{\"kind\":\"person\",\"name\":\"张三\",\"id_type\":\"111\","
      "\"id_number\":\"430603199001011231\",\"phone\":\"13800000000\"},\"agent\":null,"
      "\"materials\":[{\"name\":\"身份证复印件\",\"media_type\":\"application/pdf\",\"size\":30,"
      "\"sm3\":\"4011110f987776784ec0758891651e39c016ece66398573bd2d98da638711689\","
      "\"content_base64\":\"JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0YK\"}],"
      "\"form\":{\"children\":{\"count\":2,\"names\":[\"张小一\"]},\"urgent\":false},"
      "\"accepted_at\":\"2024-05-06T10:00:00+08:00\",\"delivery\":{\"method\":\"pickup\"},"
      "\"remarks\":\"\"}",
      0, &je);
  assert_non_null(w);
  assert_json_equal((const char *)m.canonical.data, m.canonical.len, w);
  /* the canonical text keeps the document's key order */
  assert_non_null(strstr((const char *)m.canonical.data, "{\"schema\":\"tongban.case/v1\",\"case_id\""));
  json_decref(w);
  release(&m);
  H->free(x.data);
  free(b);
}

static void test_schema_violations_are_refused_1002(void **state) {
  (void)state;
  static const struct {
    const char *from, *to;
  } cases[] = {
      {"<BeiZhu></BeiZhu>", "<BeiZhu></BeiZhu><Extra/>"},                       /* unknown element */
      {"<ShouLiDi>370683</ShouLiDi><BanLiDi>430603</BanLiDi>",
       "<BanLiDi>430603</BanLiDi><ShouLiDi>370683</ShouLiDi>"},                 /* order */
      {"<ShiXiangMingCheng>再生育服务登记</ShiXiangMingCheng>", ""},            /* missing */
      {"<XingMing>张三</XingMing>", "<XingMing>  </XingMing>"},                 /* blank */
      {"<ZhengJianLeiXing>111", "<ZhengJianLeiXing>999"},                       /* code table */
      {"<ZhengJianLeiXing>111", "<ZhengJianLeiXing>001"},                       /* type vs LeiXing */
      {"430603199001011231", "430603199001011232"},                             /* check char */
      {"<FangShi>2</FangShi>", "<FangShi>4</FangShi>"},
      {"<GeShi>pdf</GeShi>", "<GeShi>exe</GeShi>"},
      {"<DaXiao>30</DaXiao>", "<DaXiao>31</DaXiao>"},                           /* size */
      {"4011110f98", "5011110f98"},                                             /* digest */
      {"SuanFa=\"SM3\"", "SuanFa=\"MD5\""},
      {"<ShouLiShiJian>2024-05-06 10:00:00", "<ShouLiShiJian>2024-02-30 10:00:00"},
      {"<ShouLiShiJian>2024-05-06 10:00:00", "<ShouLiShiJian>2024-05-06T10:00:00"},
      {"LeiXing=\"number\">2<", "LeiXing=\"number\">02<"},                     /* JSON number */
      {"LeiXing=\"number\">2<", "LeiXing=\"number\">two<"},
      {"LeiXing=\"boolean\">false<", "LeiXing=\"boolean\">0<"},
      {"children.names[0]", "children.names[1]"},                               /* gap */
      {"children.names[0]", "children.count.x"},                                /* conflict */
      {"children.names[0]", "children..x"},                                     /* grammar */
      {"<ShenBanHao>370683-20240506-000001", "<ShenBanHao>370683/20240506"},    /* case_id rule */
      {"JVBERi0xLjQKJSBpZCBjYXJkIGNvcHkKJSVFT0YK", "JVBERi0xLjQKJSBpZCBjYXJk\nIGNvcHkKJSVFT0YK"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *b = case_body(cases[i].from, cases[i].to);
    struct tb_bytes x = partner_msg("CASE_SUBMIT", b, "430603", 0, "laizhou-rsa");
    struct tb_inbound_message m;
    decode_bytes(x.data, x.len, &m);
    if (m.kind != TB_INBOUND_REFUSED || strcmp(m.refuse_code, "1002") != 0)
      fail_msg("case %zu (%s): kind %d code %s", i, cases[i].to, (int)m.kind, m.refuse_code);
    /* the refusal never repeats the ID number or the phone */
    assert_null(strstr(m.refuse_text, "43060319900101123"));
    assert_null(strstr(m.refuse_text, "13800000000"));
    release(&m);
    H->free(x.data);
    free(b);
  }
  /* MessageType that does not match the Body */
  refused_body("CASE_WITHDRAW", status_body, "1002");
  /* header: version, namespace */
  struct tb_bytes x = partner_msg("STATUS_NOTIFY", status_body, "430603", 0, NULL);
  char *v = replace((char *)x.data, "1.0\" version=\"1.0\"", "1.0\" version=\"2.0\"");
  struct tb_bytes s = {NULL, 0};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(H->xmldsig_sign(H->ctx, "laizhou-rsa", v, strlen(v), &s, err), 0);
  assert_refused(s.data, s.len, "1002");
  H->free(s.data);
  free(v);
  free(x.data);
}

static void test_wrong_region_is_refused_1004(void **state) {
  (void)state;
  struct tb_bytes x = partner_msg("STATUS_NOTIFY", status_body, "110101", 0, "laizhou-rsa");
  assert_refused(x.data, x.len, "1004");
  H->free(x.data);
  char *b = case_body("<BanLiDi>430603</BanLiDi>", "<BanLiDi>110101</BanLiDi>");
  refused_body("CASE_SUBMIT", b, "1004");
  free(b);
}

static void test_send_time_outside_the_window_is_refused_1005(void **state) {
  (void)state;
  struct tb_bytes x = partner_msg("STATUS_NOTIFY", status_body, "430603", -310, "laizhou-rsa");
  assert_refused(x.data, x.len, "1005");
  H->free(x.data);
  x = partner_msg("STATUS_NOTIFY", status_body, "430603", 310, "laizhou-rsa");
  assert_refused(x.data, x.len, "1005");
  H->free(x.data);
  /* a stale message with a bad body still gets the retryable 1005 */
  char *b = case_body("<FangShi>2</FangShi>", "<FangShi>9</FangShi>");
  x = partner_msg("CASE_SUBMIT", b, "430603", -400, "laizhou-rsa");
  assert_refused(x.data, x.len, "1005");
  H->free(x.data);
  free(b);
  /* -250 s is inside; sent_ms is reported for the host's own window */
  x = partner_msg("STATUS_NOTIFY", status_body, "430603", -250, "laizhou-rsa");
  struct tb_inbound_message m;
  decode_bytes(x.data, x.len, &m);
  assert_int_equal(m.kind, TB_INBOUND_STATUS);
  int64_t d = H->now_ms() - m.sent_ms;
  assert_true(d > 248000 && d < 253000);
  release(&m);
  H->free(x.data);
}

/* ---- decode: hostile input ------------------------------------------------------------------ */

static void expect_http(const void *body, size_t len, const char *ct, const char *method,
                        const char *path, int status) {
  struct tb_header hd[] = {{"Content-Type", ct}};
  struct tb_inbound_request req = {.method = method, .path = path, .headers = hd,
                                   .header_count = ct ? 1 : 0, .body = body, .body_len = len,
                                   .now_ms = H->now_ms()};
  struct tb_inbound_message m;
  char err[TB_ERRMSG_MAX] = "";
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(A->decode(S, &req, &m, err), 0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  assert_true(secs < 1.0);
  char want[16];
  snprintf(want, sizeof want, "HTTP %d", status);
  if (m.kind != TB_INBOUND_REFUSED || strcmp(m.refuse_code, want) != 0)
    fail_msg("expected %s, got kind %d \"%s\" (%s)", want, (int)m.kind, m.refuse_code,
             m.refuse_text);
  struct tb_wire_answer a;
  assert_int_equal(A->answer(S, &req, &m, TB_INBOUND_REFUSE, NULL, &a, err), 0);
  assert_int_equal(a.http_status, status);
  assert_non_null(strstr(a.content_type, "text/plain"));
  /* nothing was expanded into the answer */
  assert_null(mem_find(a.body.data, a.body.len, "root:", 5));
  assert_null(mem_find(a.body.data, a.body.len, "lollollol", 9));
  free_answer(&a);
  release(&m);
}

static void test_hostile_xml_is_refused_fast_with_http_400(void **state) {
  (void)state;
  static const char *const docs[] = {
      /* external entity */
      "<?xml version=\"1.0\"?><!DOCTYPE TongbanMessage [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
      "<TongbanMessage xmlns=\"urn:sd:tongban:1.0\" version=\"1.0\">&x;</TongbanMessage>",
      /* billion laughs */
      "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">"
      "<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
      "<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
      "<!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">"
      "<!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">"
      "<!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">"
      "<!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">"
      "<!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">"
      "<!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">]>"
      "<lolz>&lol9;</lolz>",
      /* external DTD */
      "<?xml version=\"1.0\"?><!DOCTYPE TongbanMessage SYSTEM \"http://127.0.0.1:1/x.dtd\">"
      "<TongbanMessage/>",
      /* a plain DOCTYPE */
      "<!DOCTYPE TongbanMessage><TongbanMessage/>",
      /* not XML, truncated, undefined entity, bad UTF-8, not UTF-8 */
      "{\"json\": true}",
      "<TongbanMessage xmlns=\"urn:sd:tongban:1.0\"><Header>",
      "<TongbanMessage>&undefined;</TongbanMessage>",
      "<TongbanMessage>\xff\xfe</TongbanMessage>",
      "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><TongbanMessage>\xe9</TongbanMessage>",
      "",
  };
  for (size_t i = 0; i < sizeof docs / sizeof *docs; i++)
    expect_http(docs[i], strlen(docs[i]), "application/xml; charset=UTF-8", "POST",
                "/tongban/v1/notify", 400);
  /* nesting beyond 64 levels */
  char deep[4096] = "";
  for (int i = 0; i < 100; i++) strcat(deep, "<a>");
  for (int i = 0; i < 100; i++) strcat(deep, "</a>");
  expect_http(deep, strlen(deep), "application/xml", "POST", "/tongban/v1/notify", 400);
  /* more than 32 MiB */
  size_t big = 32u * 1024u * 1024u + 1u;
  char *b = malloc(big);
  assert_non_null(b);
  memset(b, ' ', big);
  expect_http(b, big, "application/xml; charset=UTF-8", "POST", "/tongban/v1/notify", 413);
  free(b);
  expect_http("<x/>", 4, "application/json", "POST", "/tongban/v1/notify", 415);
  expect_http("<x/>", 4, "application/xml; charset=GBK", "POST", "/tongban/v1/notify", 415);
  expect_http("<x/>", 4, "application/xml", "GET", "/tongban/v1/notify", 405);
  expect_http("<x/>", 4, "application/xml", "POST", "/tongban/v1/other", 404);
}

/* ---- classify ---------------------------------------------------------------------------- */

#define OUR_ID "0b6f8c2e-3f0a-4c51-9d7e-5d3c1f0e9a42"

static struct tb_bytes make_ack(const char *mid, const char *code, const char *receipt,
                                const char *key) {
  char when[24], x[1200], rn[200] = "";
  assert_int_equal(H->format_beijing(H->now_ms(), when, sizeof when), 0);
  if (receipt) snprintf(rn, sizeof rn, "<ReceiptNo>%s</ReceiptNo>", receipt);
  snprintf(x, sizeof x,
           "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TongbanAck xmlns=\"urn:sd:tongban:1.0\">"
           "<MessageId>%s</MessageId><Code>%s</Code><Message>消息</Message>%s"
           "<ReceiveTime>%s</ReceiveTime></TongbanAck>\n",
           mid, code, rn, when);
  struct tb_bytes out = {NULL, 0};
  char err[TB_ERRMSG_MAX];
  if (key == NULL) {
    out.data = (unsigned char *)strdup(x);
    out.len = strlen(x);
    return out;
  }
  if (H->xmldsig_sign(H->ctx, key, x, strlen(x), &out, err) != 0) fail_msg("%s", err);
  return out;
}

static struct tb_classification classify(int status, const void *body, size_t len,
                                         const char *retry_after, const char *transport) {
  struct tb_header hd[] = {{"retry-after", retry_after}};
  struct tb_wire_response r = {.http_status = status, .headers = hd,
                               .header_count = retry_after ? 1 : 0, .body = body,
                               .body_len = len, .transport_error = transport};
  struct tb_outbound m = {.type = TB_MSG_CASE_SUBMIT, .message_id = OUR_ID, .attempt = 1};
  struct tb_classification c;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(A->classify(S, &m, &r, &c, err), 0);
  return c;
}

static void test_classify_follows_the_code_table(void **state) {
  (void)state;
  static const struct {
    const char *code;
    enum tb_verdict v;
  } table[] = {
      {"0000", TB_VERDICT_SUCCESS},   {"0001", TB_VERDICT_DUPLICATE}, {"1001", TB_VERDICT_PERMANENT},
      {"1002", TB_VERDICT_PERMANENT}, {"1003", TB_VERDICT_PERMANENT}, {"1004", TB_VERDICT_PERMANENT},
      {"1005", TB_VERDICT_RETRY_FRESH}, {"5001", TB_VERDICT_RETRY},   {"5002", TB_VERDICT_RETRY},
  };
  for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
    int with_receipt = i < 2;
    struct tb_bytes a = make_ack(OUR_ID, table[i].code,
                                 with_receipt ? "370683-SL-20240506-0001" : NULL, "laizhou-rsa");
    struct tb_classification c = classify(200, a.data, a.len, i == 7 ? "3" : NULL, NULL);
    if (c.verdict != table[i].v) fail_msg("%s: verdict %d (%s)", table[i].code, (int)c.verdict, c.text);
    assert_string_equal(c.code, table[i].code);
    assert_string_equal(c.receipt_no, with_receipt ? "370683-SL-20240506-0001" : "");
    assert_int_equal(c.signature_valid, 1);
    assert_string_equal(c.text, "消息");
    assert_int_equal(c.retry_after_ms, i == 7 ? 3000 : -1);
    H->free(a.data);
  }
}

static void test_classify_http_and_transport(void **state) {
  (void)state;
  struct tb_classification c = classify(503, "busy", 4, "7", NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_string_equal(c.code, "HTTP 503");
  assert_int_equal(c.retry_after_ms, 7000);
  c = classify(500, NULL, 0, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.retry_after_ms, -1);
  c = classify(408, NULL, 0, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  c = classify(429, NULL, 0, "Wed, 21 Oct 2015 07:28:00 GMT", NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.retry_after_ms, 0); /* a date in the past: now */
  c = classify(400, NULL, 0, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_PERMANENT);
  assert_string_equal(c.code, "HTTP 400");
  c = classify(404, NULL, 0, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_PERMANENT);
  c = classify(415, NULL, 0, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_PERMANENT);
  c = classify(0, NULL, 0, NULL, "connection refused");
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_string_equal(c.code, "transport");
  assert_non_null(strstr(c.text, "connection refused"));
  c = classify(302, NULL, 0, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
}

static void test_classify_unusable_acks_are_transport_failures(void **state) {
  (void)state;
  /* unsigned */
  struct tb_bytes a = make_ack(OUR_ID, "0000", "R1", NULL);
  struct tb_classification c = classify(200, a.data, a.len, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.signature_valid, 0);
  assert_non_null(strstr(c.text, "not validly signed"));
  free(a.data);
  /* signed by someone the partner's CA did not certify */
  a = make_ack(OUR_ID, "0000", "R1", "zhaoyuan-rsa");
  c = classify(200, a.data, a.len, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.signature_valid, 0);
  H->free(a.data);
  /* altered after signing */
  a = make_ack(OUR_ID, "1002", NULL, "laizhou-rsa");
  char *t = replace((char *)a.data, "<Code>1002", "<Code>0000");
  c = classify(200, t, strlen(t), NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.signature_valid, 0);
  free(t);
  H->free(a.data);
  /* another message's ack */
  a = make_ack("11111111-2222-4333-8444-555555555555", "0000", "R1", "laizhou-rsa");
  c = classify(200, a.data, a.len, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.signature_valid, 1);
  assert_non_null(strstr(c.text, "not ours"));
  H->free(a.data);
  /* signed, but not an ack of the schema (unknown code) */
  a = make_ack(OUR_ID, "9999", NULL, "laizhou-rsa");
  c = classify(200, a.data, a.len, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  H->free(a.data);
  /* garbage, empty, a DOCTYPE */
  c = classify(200, "<html>oops", 10, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  c = classify(200, "", 0, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  const char *dt = "<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>";
  c = classify(200, dt, strlen(dt), NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  /* a message instead of an ack, correctly signed */
  struct tb_bytes msg = partner_msg("STATUS_NOTIFY", status_body, "430603", 0, "laizhou-rsa");
  c = classify(200, msg.data, msg.len, NULL, NULL);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  H->free(msg.data);
}

/* ---- answer ---------------------------------------------------------------------------------- */

static void test_answers_are_signed_acks_for_every_outcome(void **state) {
  (void)state;
  struct tb_bytes x = partner_msg("CASE_SUBMIT", "X", "430603", 0, NULL);
  free(x.data);
  char *b = case_body(NULL, NULL);
  x = partner_msg("CASE_SUBMIT", b, "430603", 0, "laizhou-rsa");
  free(b);
  struct tb_header hd[] = {{"Content-Type", "application/xml; charset=UTF-8"}};
  struct tb_inbound_request req = {.method = "POST", .path = "/tongban/v1/notify", .headers = hd,
                                   .header_count = 1, .body = x.data, .body_len = x.len,
                                   .now_ms = H->now_ms()};
  struct tb_inbound_message m;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(A->decode(S, &req, &m, err), 0);
  assert_int_equal(m.kind, TB_INBOUND_CASE);
  static const struct {
    enum tb_inbound_outcome o;
    const char *code;
    int receipt;
  } table[] = {
      {TB_INBOUND_ACCEPTED, "0000", 1}, {TB_INBOUND_DUPLICATE, "0001", 1},
      {TB_INBOUND_STALE, "1005", 0},    {TB_INBOUND_UNKNOWN_CASE, "1002", 0},
      {TB_INBOUND_FAILED, "5001", 0},   {TB_INBOUND_NONCE_REUSED, "1005", 0},
  };
  for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
    struct tb_wire_answer a;
    assert_int_equal(A->answer(S, &req, &m, table[i].o, "430603-SL-20240506-0007", &a, err), 0);
    assert_int_equal(a.http_status, 200);
    assert_string_equal(a.content_type, "application/xml; charset=UTF-8");
    char tag[32];
    snprintf(tag, sizeof tag, "answer%zu", i);
    assert_tools_accept(a.body.data, a.body.len, tag);
    char want[64];
    snprintf(want, sizeof want, "<Code>%s</Code>", table[i].code);
    assert_non_null(mem_find(a.body.data, a.body.len, want, strlen(want)));
    assert_non_null(mem_find(a.body.data, a.body.len,
                           "<MessageId>7d9f3a52-1c2b-4e8a-9f10-2b3c4d5e6f70</MessageId>", 57));
    const void *rn = mem_find(a.body.data, a.body.len, "<ReceiptNo>430603-SL-20240506-0007</ReceiptNo>", 46);
    if (table[i].receipt)
      assert_non_null(rn);
    else
      assert_null(rn);
    free_answer(&a);
  }
  release(&m);
  H->free(x.data);
  /* refusals: the refuse code, with the reason */
  struct tb_bytes u = partner_msg("STATUS_NOTIFY", status_body, "430603", 0, NULL);
  req.body = u.data;
  req.body_len = u.len;
  assert_int_equal(A->decode(S, &req, &m, err), 0);
  assert_string_equal(m.refuse_code, "1001");
  struct tb_wire_answer a;
  assert_int_equal(A->answer(S, &req, &m, TB_INBOUND_REFUSE, NULL, &a, err), 0);
  assert_int_equal(a.http_status, 200);
  assert_tools_accept(a.body.data, a.body.len, "refuse1001");
  assert_non_null(mem_find(a.body.data, a.body.len, "<Code>1001</Code>", 17));
  assert_non_null(mem_find(a.body.data, a.body.len, "<MessageId>7d9f3a52", 19));
  free_answer(&a);
  release(&m);
  free(u.data);
}

/* The same adapter configured as the partner (signing with laizhou-rsa,
 * trusting our CA) accepts our acknowledgements: the two directions agree. */
static void test_our_ack_classifies_on_the_partner_side(void **state) {
  (void)state;
  const char *peer = "{\"keys\":{\"sign\":\"laizhou-rsa\",\"peer_ca\":\"gw-ca\"}}";
  void *ps = NULL;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(A->init(H, peer, strlen(peer), &ps, err), 0);
  json_error_t je;
  json_t *st = json_loads("{\"case_id\":\"430603-20240506-000123\",\"receipt_no\":\"R-9\","
                          "\"status\":\"accepted\",\"at\":\"2024-05-07T09:30:00+08:00\"}",
                          0, &je);
  char *text = json_dumps(st, 0);
  struct tb_outbound o = {.type = TB_MSG_STATUS_NOTIFY, .message_id = "5a0c1e2d-3b4a-4c5d-8e6f-708192a3b4c5",
                          .case_id = "430603-20240506-000123", .sender_region = "370683",
                          .receiver_region = "430603", .body = text, .body_len = strlen(text),
                          .attempt = 1, .now_ms = H->now_ms()};
  struct tb_wire_request wr;
  assert_int_equal(A->encode(ps, &o, &wr, err), 0); /* the "partner" sends */
  struct tb_inbound_message m;
  decode_bytes(wr.body.data, wr.body.len, &m); /* we receive */
  assert_int_equal(m.kind, TB_INBOUND_STATUS);
  struct tb_inbound_request req = {.method = "POST", .path = "/tongban/v1/notify",
                                   .body = wr.body.data, .body_len = wr.body.len,
                                   .now_ms = H->now_ms()};
  struct tb_wire_answer a;
  assert_int_equal(A->answer(S, &req, &m, TB_INBOUND_ACCEPTED, NULL, &a, err), 0);
  struct tb_wire_response r = {.http_status = 200, .body = a.body.data, .body_len = a.body.len};
  struct tb_classification c;
  assert_int_equal(A->classify(ps, &o, &r, &c, err), 0); /* the "partner" reads our ack */
  assert_int_equal(c.verdict, TB_VERDICT_SUCCESS);
  assert_int_equal(c.signature_valid, 1);
  assert_string_equal(c.code, "0000");
  free_answer(&a);
  release(&m);
  free_request(&wr);
  free(text);
  json_decref(st);
  A->fini(ps);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_refuses_bad_settings_naming_the_key),
      cmocka_unit_test(test_routes_serve_notify),
      cmocka_unit_test(test_embedded_schema_is_the_published_file),
      cmocka_unit_test(test_every_sample_roundtrips_and_tools_accept_it),
      cmocka_unit_test(test_accepted_at_any_offset_becomes_beijing_time),
      cmocka_unit_test(test_form_types_and_text_survive_exactly),
      cmocka_unit_test(test_form_that_cannot_roundtrip_is_refused_at_encode),
      cmocka_unit_test(test_material_without_content_is_refused_unless_empty),
      cmocka_unit_test(test_optional_blank_values_are_left_out),
      cmocka_unit_test(test_withdraw_supplement_status_roundtrip),
      cmocka_unit_test(test_status_codes_on_the_wire),
      cmocka_unit_test(test_status_rules_are_enforced_at_encode),
      cmocka_unit_test(test_message_signed_by_xmlsec1_cli_is_accepted),
      cmocka_unit_test(test_bad_signatures_are_refused_1001),
      cmocka_unit_test(test_partner_case_decodes_to_canonical),
      cmocka_unit_test(test_schema_violations_are_refused_1002),
      cmocka_unit_test(test_wrong_region_is_refused_1004),
      cmocka_unit_test(test_send_time_outside_the_window_is_refused_1005),
      cmocka_unit_test(test_hostile_xml_is_refused_fast_with_http_400),
      cmocka_unit_test(test_classify_follows_the_code_table),
      cmocka_unit_test(test_classify_http_and_transport),
      cmocka_unit_test(test_classify_unusable_acks_are_transport_failures),
      cmocka_unit_test(test_answers_are_signed_acks_for_every_outcome),
      cmocka_unit_test(test_our_ack_classifies_on_the_partner_side),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
