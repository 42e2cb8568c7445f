/*
 * test_adapter_yuejson.c — the yue-json adapter (adapters/yue-json) against
 * shared/partners/yue-json.md, loaded through the real loader with the real
 * host services and the development PKI.
 *
 * The interoperability evidence: what the adapter sends is verified and
 * opened by tests/crypto/gm_tool.js (sm-crypto, pure JavaScript, shares no
 * code with OpenSSL) with the PARTNER's private key, and the business JSON
 * it finds equals the hand-checked mapping of the document in
 * tests/data/yue-json/; requests built entirely by gm_tool.js are accepted
 * by decode and give the expected canonical JSON; answers verify with
 * gm_tool.js. Then: canonical → wire → canonical round trips through a
 * second adapter instance playing the partner, every refusal code, the
 * classification table, hostile input (ASan) and masked logs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../crypto/testutil.h"
#include "adapter_fixture.h"
#include "core/log.h"

#define GW_APP "YY-YUNXI-001"
#define PEER_APP "GD-WJ-TB"
#define MSG_ID "5f0c1a8e-2b7d-4e39-a1c4-0d9e8f7a6b5c"
#define NOW_MS 1715045400123LL

static const char *const gw_settings =
    "{\"name\":\"wujiang\",\"adapter\":\"yue-json\",\"regions\":[\"440203\"],"
    "\"endpoint\":\"https://127.0.0.1:9543\",\"app_id\":\"" GW_APP "\",\"peer_app_id\":\"" PEER_APP
    "\",\"keys\":{\"sign\":\"gw-sm2\",\"decrypt\":\"gw-sm2\",\"peer\":\"wujiang-sm2-pub\"},"
    "\"replay_window_s\":300}";

/* The same adapter as the partner would run it: its AppId, its key pair,
 * our public key (gw-sm2 holds our pair; only its public half is used as
 * keys.peer). */
static const char *const partner_settings =
    "{\"app_id\":\"" PEER_APP "\",\"peer_app_id\":\"" GW_APP
    "\",\"keys\":{\"sign\":\"wujiang-sm2\",\"decrypt\":\"wujiang-sm2\",\"peer\":\"gw-sm2\"}}";

static const char *const samples[] = {
    "01-rebirth-registration-laizhou",
    "02-veteran-retirement-wujiang",
    "03-company-opening-zhaoyuan",
    "04-teacher-certificate-reissue-wujiang",
    "05-criminal-record-certificate-laizhou",
};
#define NSAMPLES (sizeof samples / sizeof samples[0])

static struct tb_adapter_fixture F;
static struct tb_plugin_host partner_host;
static struct tb_adapter_instance partner;
static int have_gm;
static char gw_pub[600], gw_key[600], wj_key[600], wj_pub[600];

static const struct tb_adapter *ops(void) { return F.lib.ops; }
static const struct tb_host *H(void) { return &F.host.table; }
static void *gw(void) { return F.inst.state; }
static void *pt(void) { return partner.state; }

#define REQUIRE_GM()      \
  do {                    \
    if (!have_gm) skip(); \
  } while (0)

/* ---- small helpers ------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
  char *p = (char *)tu_read(path, len);
  if (p == NULL) fail_msg("cannot read %s", path);
  return p;
}

static char *sample_text(const char *name, size_t *len) {
  char p[800];
  const char *dir = getenv("TB_SAMPLES_DIR");
  snprintf(p, sizeof p, "%s/%s.json", dir ? dir : "../shared/samples", name);
  return slurp(p, len);
}

static char *data_text(const char *name, size_t *len) {
  char p[800];
  snprintf(p, sizeof p, "%s/tests/data/yue-json/%s", tb_fixture_repo_root(), name);
  return slurp(p, len);
}

static json_t *parse(const void *text, size_t len) {
  json_error_t e;
  json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
  if (j == NULL)
    fail_msg("not JSON: %s (%.*s)", e.text, (int)(len > 200 ? 200 : len), (const char *)text);
  return j;
}

static void assert_json_equal_text(const void *got, size_t got_len, const void *want,
                                   size_t want_len) {
  json_t *a = parse(got, got_len), *b = parse(want, want_len);
  if (!json_equal(a, b)) {
    char *x = json_dumps(a, JSON_INDENT(1)), *y = json_dumps(b, JSON_INDENT(1));
    fprintf(stderr, "got:\n%s\nwant:\n%s\n", x, y);
    free(x);
    free(y);
  }
  assert_true(json_equal(a, b));
  json_decref(a);
  json_decref(b);
}

/* Headers of a request/answer ("Name: value\r\n" lines) as an array. */
struct hdrs {
  char *buf;
  struct tb_header h[16];
  size_t n;
};

static void hdrs_parse(struct hdrs *x, const char *lines) {
  memset(x, 0, sizeof *x);
  x->buf = strdup(lines ? lines : "");
  char *save = NULL;
  for (char *l = strtok_r(x->buf, "\r\n", &save); l && x->n < 16;
       l = strtok_r(NULL, "\r\n", &save)) {
    char *c = strstr(l, ": ");
    assert_non_null(c);
    *c = '\0';
    x->h[x->n].name = l;
    x->h[x->n].value = c + 2;
    x->n++;
  }
}

static const char *hdr(const struct hdrs *x, const char *name) {
  for (size_t i = 0; i < x->n; i++)
    if (strcasecmp(x->h[i].name, name) == 0) return x->h[i].value;
  return NULL;
}

static void hdr_set(struct hdrs *x, const char *name, const char *value) {
  for (size_t i = 0; i < x->n; i++)
    if (strcasecmp(x->h[i].name, name) == 0) {
      x->h[i].value = value;
      return;
    }
  x->h[x->n].name = name;
  x->h[x->n].value = value;
  x->n++;
}

static void hdr_del(struct hdrs *x, const char *name) {
  for (size_t i = 0; i < x->n; i++)
    if (strcasecmp(x->h[i].name, name) == 0) {
      x->h[i] = x->h[--x->n];
      return;
    }
}

static void free_request(struct tb_wire_request *r) {
  free(r->path);
  free(r->content_type);
  free(r->headers);
  free(r->body.data);
  memset(r, 0, sizeof *r);
}

static int encode_with(void *state, enum tb_msg_type type, const char *msg_id, const char *body,
                       size_t len, uint32_t attempt, struct tb_wire_request *out, char *err) {
  struct tb_outbound m = {.type = type,
                          .message_id = msg_id,
                          .case_id = "x",
                          .sender_region = "430603",
                          .receiver_region = "440203",
                          .body = body,
                          .body_len = len,
                          .attempt = attempt,
                          .now_ms = NOW_MS};
  return ops()->encode(state, &m, out, err);
}

/* An inbound request over the partner listener from raw headers and body. */
static struct tb_inbound_request inbound(const struct hdrs *h, const void *body, size_t len) {
  struct tb_inbound_request r = {.method = "POST",
                                 .path = "/gateway/tongban/callback",
                                 .headers = h->h,
                                 .header_count = h->n,
                                 .body = body,
                                 .body_len = len,
                                 .peer_subject = NULL,
                                 .now_ms = NOW_MS};
  return r;
}

static void free_message(struct tb_inbound_message *m) {
  ops()->release(gw(), m);
  free(m->canonical.data);
  memset(m, 0, sizeof *m);
}

/* Decodes with the gateway instance; returns the message (caller frees). */
static struct tb_inbound_message decode_gw(const struct hdrs *h, const void *body, size_t len) {
  struct tb_inbound_message m;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_inbound_request r = inbound(h, body, len);
  assert_int_equal(ops()->decode(gw(), &r, &m, err), 0);
  return m;
}

static void assert_refused(const struct hdrs *h, const void *body, size_t len, const char *code) {
  struct tb_inbound_message m = decode_gw(h, body, len);
  if (m.kind != TB_INBOUND_REFUSED || strcmp(m.refuse_code, code) != 0)
    fail_msg("want refusal %s, got kind %d code \"%s\" (%s)", code, (int)m.kind, m.refuse_code,
             m.refuse_text);
  assert_null(m.canonical.data);
  free_message(&m);
}

/* Signs like a partner, through the host's keys (OpenSSL): X-GD-Signature
 * over app\nts\nnonce\nsm3hex(body) with `key`. */
static char *sign_as(const char *key, const char *app, const char *ts, const char *nonce,
                     const void *body, size_t len) {
  unsigned char d[32];
  char hex[65], *s;
  assert_int_equal(H()->digest(TB_DIGEST_SM3, body, len, d), 0);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  size_t n = strlen(app) + strlen(ts) + strlen(nonce) + 70;
  s = malloc(n);
  snprintf(s, n, "%s\n%s\n%s\n%s", app, ts, nonce, hex);
  struct tb_bytes sig = {0}, b64 = {0};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(H()->sign(H()->ctx, key, s, strlen(s), &sig, err), 0);
  assert_int_equal(H()->base64_encode(sig.data, sig.len, &b64), 0);
  free(sig.data);
  free(s);
  return (char *)b64.data;
}

/* Headers for body as the partner would send them (fresh nonce). */
struct signed_hdrs {
  struct hdrs h;
  char ts[24], nonce[40];
  char *sig;
};

static void partner_headers(struct signed_hdrs *s, const char *key, const char *app,
                            const void *body, size_t len) {
  unsigned char r[16];
  assert_int_equal(H()->random_bytes(r, sizeof r), 0);
  for (int i = 0; i < 16; i++) snprintf(s->nonce + 2 * i, 3, "%02x", r[i]);
  snprintf(s->ts, sizeof s->ts, "%lld", (long long)NOW_MS);
  s->sig = sign_as(key, app, s->ts, s->nonce, body, len);
  hdrs_parse(&s->h, "");
  hdr_set(&s->h, "X-GD-AppId", app);
  hdr_set(&s->h, "X-GD-Timestamp", s->ts);
  hdr_set(&s->h, "X-GD-Nonce", s->nonce);
  hdr_set(&s->h, "X-GD-Signature", s->sig);
}

static void signed_hdrs_free(struct signed_hdrs *s) {
  free(s->h.buf);
  free(s->sig);
}

static char *b64(const void *p, size_t n) {
  struct tb_bytes o = {0};
  assert_int_equal(H()->base64_encode(p, n, &o), 0);
  return (char *)o.data;
}

/* An envelope built in the test through the host services (not the
 * adapter), so any business JSON or broken part can be sent. */
static char *envelope_with(const char *msg_type, const char *msg_id, const void *biz, size_t len,
                           const char *to_key) {
  unsigned char key[16], iv[16];
  assert_int_equal(H()->random_bytes(key, 16), 0);
  assert_int_equal(H()->random_bytes(iv, 16), 0);
  struct tb_bytes ek = {0}, ct = {0};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(H()->pk_encrypt(H()->ctx, to_key, key, 16, &ek, err), 0);
  assert_int_equal(H()->sym_encrypt(TB_CIPHER_SM4_CBC_PKCS7, key, 16, iv, 16, biz, len, &ct, err),
                   0);
  char *ek64 = b64(ek.data, ek.len), *iv64 = b64(iv, 16), *ct64 = b64(ct.data, ct.len);
  json_t *env = json_pack("{s:s,s:s,s:s,s:s,s:s}", "msgId", msg_id, "msgType", msg_type,
                          "encryptKey", ek64, "iv", iv64, "bizContent", ct64);
  char *text = json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(env);
  free(ek.data);
  free(ct.data);
  free(ek64);
  free(iv64);
  free(ct64);
  return text;
}

/* Decodes a well-signed request carrying this envelope body. */
static struct tb_inbound_message decode_enveloped(const char *body) {
  struct signed_hdrs s;
  partner_headers(&s, "wujiang-sm2", PEER_APP, body, strlen(body));
  struct tb_inbound_message m = decode_gw(&s.h, body, strlen(body));
  signed_hdrs_free(&s);
  return m;
}

static void assert_biz_refused(const char *msg_type, const char *biz, const char *code) {
  char *body = envelope_with(msg_type, MSG_ID, biz, strlen(biz), "gw-sm2");
  struct tb_inbound_message m = decode_enveloped(body);
  if (m.kind != TB_INBOUND_REFUSED || strcmp(m.refuse_code, code) != 0)
    fail_msg("biz %.80s: want %s, got kind %d code \"%s\"", biz, code, (int)m.kind, m.refuse_code);
  free_message(&m);
  free(body);
}

/* ---- setup --------------------------------------------------------------------- */

static int setup(void **unused) {
  (void)unused;
  if (tu_setup_dir("yuejson") != 0) return -1;
  if (tb_fixture_setup_keys(&F) != 0 ||
      tb_fixture_load(&F, "yue-json", "wujiang", gw_settings) != 0)
    return -1;
  tb_plugin_host_init(&partner_host, F.keys, "yunxi", "440203");
  char err[TB_ERRMSG_MAX];
  if (tb_adapter_instance_init(&partner, &F.lib, &partner_host.table, partner_settings,
                               strlen(partner_settings), err) != 0) {
    fprintf(stderr, "partner instance: %s\n", err);
    return -1;
  }
  tb_fixture_path(&F, "gateway/sign-sm2.pub.pem", gw_pub, sizeof gw_pub);
  tb_fixture_path(&F, "gateway/sign-sm2.key", gw_key, sizeof gw_key);
  tb_fixture_path(&F, "partners/wujiang/sign-sm2.key", wj_key, sizeof wj_key);
  tb_fixture_path(&F, "partners/wujiang/sign-sm2.pub.pem", wj_pub, sizeof wj_pub);
  have_gm = tu_have_gm_tool();
  if (!have_gm && getenv("TB_REQUIRE_INTEROP") != NULL) {
    fprintf(stderr,
            "TB_REQUIRE_INTEROP is set but tests/crypto/gm_tool.js cannot run "
            "(npm ci --prefix tests/crypto)\n");
    return -1;
  }
  if (!have_gm) fprintf(stderr, "gm_tool.js not installed: interop tests skipped\n");
  return 0;
}

static int teardown(void **unused) {
  (void)unused;
  tb_adapter_instance_fini(&partner);
  tb_fixture_teardown(&F);
  tu_cleanup_dir();
  return 0;
}

/* ---- settings and routes ----------------------------------------------------------- */

static void expect_config_error(const char *settings, const char *needle) {
  void *st = NULL;
  char err[TB_ERRMSG_MAX] = "";
  int rc = ops()->init(H(), settings, strlen(settings), &st, err);
  if (rc != TB_ECONFIG || strstr(err, needle) == NULL)
    fail_msg("settings %s: want TB_ECONFIG naming \"%s\", got %d \"%s\"", settings, needle, rc,
             err);
  assert_null(st);
}

static void test_settings_refused_with_the_key_named(void **unused) {
  (void)unused;
  expect_config_error("[]", "settings");
  expect_config_error("{\"app_id\":", "settings");
  expect_config_error("{\"peer_app_id\":\"GD-WJ-TB\",\"keys\":{}}", "app_id");
  expect_config_error("{\"app_id\":\"A B\",\"peer_app_id\":\"P\"}", "app_id");
  expect_config_error("{\"app_id\":\"A\",\"peer_app_id\":7}", "peer_app_id");
  expect_config_error("{\"app_id\":\"A\",\"peer_app_id\":\"P\"}", "keys");
  expect_config_error(
      "{\"app_id\":\"A\",\"peer_app_id\":\"P\",\"keys\":{\"sign\":\"nope\","
      "\"decrypt\":\"gw-sm2\",\"peer\":\"wujiang-sm2-pub\"}}",
      "keys.sign");
  expect_config_error(
      "{\"app_id\":\"A\",\"peer_app_id\":\"P\",\"keys\":{\"sign\":\"wujiang-sm2-pub\","
      "\"decrypt\":\"gw-sm2\",\"peer\":\"wujiang-sm2-pub\"}}",
      "keys.sign");
  expect_config_error(
      "{\"app_id\":\"A\",\"peer_app_id\":\"P\",\"keys\":{\"sign\":\"gw-rsa\","
      "\"decrypt\":\"gw-sm2\",\"peer\":\"wujiang-sm2-pub\"}}",
      "keys.sign");
  expect_config_error(
      "{\"app_id\":\"A\",\"peer_app_id\":\"P\",\"keys\":{\"sign\":\"gw-sm2\","
      "\"decrypt\":\"wujiang-sm2-pub\",\"peer\":\"wujiang-sm2-pub\"}}",
      "keys.decrypt");
  expect_config_error(
      "{\"app_id\":\"A\",\"peer_app_id\":\"P\",\"keys\":{\"sign\":\"gw-sm2\","
      "\"decrypt\":\"gw-sm2\",\"peer\":\"gw-ca\"}}",
      "keys.peer");
  expect_config_error(
      "{\"app_id\":\"A\",\"peer_app_id\":\"P\",\"keys\":{\"sign\":\"gw-sm2\","
      "\"decrypt\":\"gw-sm2\"}}",
      "keys.peer");
  /* The gateway's own keys are ignored; the good settings load. */
  void *st = NULL;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(ops()->init(H(), gw_settings, strlen(gw_settings), &st, err), 0);
  ops()->fini(st);
}

static void test_routes_and_description(void **unused) {
  (void)unused;
  size_t n = 0;
  const struct tb_inbound_route *r = ops()->routes(gw(), &n);
  assert_int_equal(n, 1);
  assert_string_equal(r[0].method, "POST");
  assert_string_equal(r[0].path, "/gateway/tongban/callback");
  assert_string_equal(ops()->name, "yue-json");
  assert_int_equal(ops()->abi_major, TB_ADAPTER_ABI_MAJOR);
}

/* ---- outbound interop: gm_tool.js opens what we send ----------------------------------- */

static const char *path_of(enum tb_msg_type t) {
  switch (t) {
  case TB_MSG_CASE_SUBMIT: return "/gateway/tongban/case/submit";
  case TB_MSG_CASE_WITHDRAW: return "/gateway/tongban/case/withdraw";
  case TB_MSG_CASE_SUPPLEMENT: return "/gateway/tongban/case/supplement";
  default: return "/gateway/tongban/status/notify";
  }
}

static const char *type_name(enum tb_msg_type t) {
  switch (t) {
  case TB_MSG_CASE_SUBMIT: return "CASE_SUBMIT";
  case TB_MSG_CASE_WITHDRAW: return "CASE_WITHDRAW";
  case TB_MSG_CASE_SUPPLEMENT: return "CASE_SUPPLEMENT";
  default: return "STATUS_NOTIFY";
  }
}

static int is_lower_hex(const char *s, size_t n) {
  if (strlen(s) != n) return 0;
  for (size_t i = 0; i < n; i++)
    if (!strchr("0123456789abcdef", s[i])) return 0;
  return 1;
}

/* Encodes canonical `canon` as the gateway and proves with gm_tool.js,
 * holding the partner's private key, that the request is what the document
 * asks for and that the business JSON equals `want_biz`. */
static void check_encode_interop(enum tb_msg_type type, const char *canon, size_t canon_len,
                                 const char *want_biz, size_t want_len, const char *tag) {
  struct tb_wire_request w;
  char err[TB_ERRMSG_MAX] = "";
  int rc = encode_with(gw(), type, MSG_ID, canon, canon_len, 1, &w, err);
  if (rc != 0) fail_msg("%s: encode: %s", tag, err);
  assert_string_equal(w.path, path_of(type));
  assert_string_equal(w.content_type, "application/json;charset=UTF-8");
  struct hdrs h;
  hdrs_parse(&h, w.headers);
  assert_int_equal(h.n, 4);
  assert_string_equal(hdr(&h, "X-GD-AppId"), GW_APP);
  assert_string_equal(hdr(&h, "X-GD-Timestamp"), "1715045400123");
  assert_true(is_lower_hex(hdr(&h, "X-GD-Nonce"), 32));

  json_t *env = parse(w.body.data, w.body.len);
  assert_int_equal(json_object_size(env), 5);
  assert_string_equal(json_string_value(json_object_get(env, "msgId")), MSG_ID);
  assert_string_equal(json_string_value(json_object_get(env, "msgType")), type_name(type));
  json_decref(env);

  const char *body = tu_path("%s.env.json", tag), *biz = tu_path("%s.biz.out", tag);
  assert_int_equal(tu_write(body, w.body.data, w.body.len), 0);
  /* The signature, verified by sm-crypto with our public key. */
  assert_int_equal(
      tu_run("node '%s' yue-verify '%s' '%s' '%s' '%s' '%s' '%s'", tu_gm_tool, gw_pub, GW_APP,
             hdr(&h, "X-GD-Timestamp"), hdr(&h, "X-GD-Nonce"), body, hdr(&h, "X-GD-Signature")),
      0);
  /* ... and it fails for another AppId (the check can fail). */
  assert_int_equal(
      tu_run("node '%s' yue-verify '%s' 'YY-OTHER' '%s' '%s' '%s' '%s'", tu_gm_tool, gw_pub,
             hdr(&h, "X-GD-Timestamp"), hdr(&h, "X-GD-Nonce"), body, hdr(&h, "X-GD-Signature")),
      1);
  /* The envelope, opened by sm-crypto with the PARTNER's private key. */
  assert_int_equal(tu_run("node '%s' envelope-open '%s' '%s' '%s'", tu_gm_tool, wj_key, body, biz),
                   0);
  size_t n = 0;
  char *plain = slurp(biz, &n);
  assert_json_equal_text(plain, n, want_biz, want_len);
  free(plain);
  free(h.buf);
  free_request(&w);
}

static void test_encode_every_sample_opens_with_sm_crypto(void **unused) {
  (void)unused;
  REQUIRE_GM();
  for (size_t i = 0; i < NSAMPLES; i++) {
    char name[128];
    size_t cl, bl;
    char *canon = sample_text(samples[i], &cl);
    snprintf(name, sizeof name, "%s.submit.biz.json", samples[i]);
    char *want = data_text(name, &bl);
    check_encode_interop(TB_MSG_CASE_SUBMIT, canon, cl, want, bl, samples[i]);
    free(canon);
    free(want);
  }
  /* Nobody but the partner opens it: not our own key. */
  size_t cl;
  char *canon = sample_text(samples[1], &cl);
  struct tb_wire_request w;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(encode_with(gw(), TB_MSG_CASE_SUBMIT, MSG_ID, canon, cl, 1, &w, err), 0);
  const char *body = tu_path("own.env.json");
  assert_int_equal(tu_write(body, w.body.data, w.body.len), 0);
  assert_int_equal(tu_run("node '%s' envelope-open '%s' '%s' '%s'", tu_gm_tool, gw_key, body,
                          tu_path("own.out")),
                   1);
  free_request(&w);
  free(canon);
}

static void test_encode_other_types_open_with_sm_crypto(void **unused) {
  (void)unused;
  REQUIRE_GM();
  static const struct {
    enum tb_msg_type type;
    const char *name;
  } cases[] = {
      {TB_MSG_CASE_WITHDRAW, "withdraw"},          {TB_MSG_CASE_SUPPLEMENT, "supplement"},
      {TB_MSG_STATUS_NOTIFY, "status-supplement"}, {TB_MSG_STATUS_NOTIFY, "status-express"},
      {TB_MSG_STATUS_NOTIFY, "status-approved"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char a[128], b[128];
    size_t cl, bl;
    snprintf(a, sizeof a, "%s.canonical.json", cases[i].name);
    snprintf(b, sizeof b, "%s.biz.json", cases[i].name);
    char *canon = data_text(a, &cl), *want = data_text(b, &bl);
    check_encode_interop(cases[i].type, canon, cl, want, bl, cases[i].name);
    free(canon);
    free(want);
  }
}

/* formData goes out unchanged: 0.6 stays "0.6", key order stays. */
static void test_form_numbers_and_order_unchanged(void **unused) {
  (void)unused;
  const char *canon_text = NULL;
  size_t cl;
  char *canon = sample_text(samples[2], &cl);
  canon_text = canon;
  struct tb_wire_request w;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(encode_with(gw(), TB_MSG_CASE_SUBMIT, MSG_ID, canon_text, cl, 1, &w, err), 0);
  /* Decode with the partner instance and look at the raw text. */
  struct hdrs h;
  hdrs_parse(&h, w.headers);
  struct tb_inbound_message m;
  struct tb_inbound_request r = inbound(&h, w.body.data, w.body.len);
  /* The partner's instance checks OUR AppId and key: the same adapter
   * reads what it writes. */
  assert_int_equal(ops()->decode(pt(), &r, &m, err), 0);
  assert_int_equal(m.kind, TB_INBOUND_CASE);
  const char *t = (const char *)m.canonical.data;
  assert_non_null(strstr(t, "\"ratio\":0.6}"));
  assert_non_null(strstr(t, "\"ratio\":0.4}"));
  assert_null(strstr(t, "0.5999"));
  assert_non_null(strstr(t, "{\"registered_capital\":5000000,\"business_scope\""));
  ops()->release(pt(), &m);
  free(m.canonical.data);
  free(h.buf);
  free_request(&w);
  free(canon);
}

static void test_every_attempt_is_sealed_afresh(void **unused) {
  (void)unused;
  size_t cl;
  char *canon = sample_text(samples[1], &cl);
  struct tb_wire_request a, b;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(encode_with(gw(), TB_MSG_CASE_SUBMIT, MSG_ID, canon, cl, 1, &a, err), 0);
  assert_int_equal(encode_with(gw(), TB_MSG_CASE_SUBMIT, MSG_ID, canon, cl, 2, &b, err), 0);
  json_t *ea = parse(a.body.data, a.body.len), *eb = parse(b.body.data, b.body.len);
  assert_string_equal(json_string_value(json_object_get(ea, "msgId")),
                      json_string_value(json_object_get(eb, "msgId")));
  const char *k[] = {"encryptKey", "iv", "bizContent"};
  for (int i = 0; i < 3; i++)
    assert_string_not_equal(json_string_value(json_object_get(ea, k[i])),
                            json_string_value(json_object_get(eb, k[i])));
  struct hdrs ha, hb;
  hdrs_parse(&ha, a.headers);
  hdrs_parse(&hb, b.headers);
  assert_string_not_equal(hdr(&ha, "X-GD-Nonce"), hdr(&hb, "X-GD-Nonce"));
  assert_string_not_equal(hdr(&ha, "X-GD-Signature"), hdr(&hb, "X-GD-Signature"));
  json_decref(ea);
  json_decref(eb);
  free(ha.buf);
  free(hb.buf);
  free_request(&a);
  free_request(&b);
  free(canon);
}

static void expect_encode_error(enum tb_msg_type type, const char *msg_id, const char *canon,
                                int want, const char *needle) {
  struct tb_wire_request w;
  char err[TB_ERRMSG_MAX] = "";
  int rc = encode_with(gw(), type, msg_id, canon, strlen(canon), 1, &w, err);
  if (rc != want || strstr(err, needle) == NULL)
    fail_msg("want %d naming \"%s\", got %d \"%s\"", want, needle, rc, err);
  assert_null(w.body.data);
  assert_null(w.headers);
}

static void test_encode_refuses_what_the_document_cannot_carry(void **unused) {
  (void)unused;
  size_t cl;
  char *canon = sample_text(samples[1], &cl);
  json_t *c = parse(canon, cl);
  json_object_del(json_array_get(json_object_get(c, "materials"), 0), "content_base64");
  char *meta_only = json_dumps(c, 0);
  expect_encode_error(TB_MSG_CASE_SUBMIT, MSG_ID, meta_only, TB_EVALIDATE, "content_base64");
  json_object_set_new(json_object_get(c, "applicant"), "id_type", json_string("999"));
  char *bad_id = json_dumps(c, 0);
  expect_encode_error(TB_MSG_CASE_SUBMIT, MSG_ID, bad_id, TB_EVALIDATE, "applicant");
  expect_encode_error(TB_MSG_CASE_SUBMIT, MSG_ID, "{\"case_id\":", TB_EPARSE, "canonical");
  expect_encode_error(TB_MSG_CASE_SUBMIT, "not-a-uuid", canon, TB_EINVAL, "message_id");
  expect_encode_error((enum tb_msg_type)9, MSG_ID, canon, TB_EINVAL, "type");
  expect_encode_error(TB_MSG_STATUS_NOTIFY, MSG_ID,
                      "{\"case_id\":\"a\",\"receipt_no\":\"r\",\"status\":\"approved\","
                      "\"opinion\":null,\"supplement\":[\"x\"],\"tracking_no\":null,"
                      "\"licence_no\":null,\"at\":\"2024-05-07T09:30:00+08:00\"}",
                      TB_EVALIDATE, "supplement");
  expect_encode_error(TB_MSG_STATUS_NOTIFY, MSG_ID,
                      "{\"case_id\":\"a\",\"receipt_no\":\"r\",\"status\":\"supplement_required\","
                      "\"opinion\":null,\"supplement\":[],\"at\":\"2024-05-07T09:30:00+08:00\"}",
                      TB_EVALIDATE, "supplement");
  expect_encode_error(TB_MSG_STATUS_NOTIFY, MSG_ID,
                      "{\"case_id\":\"a\",\"receipt_no\":\"r\",\"status\":\"approved\","
                      "\"tracking_no\":\"SF1\",\"at\":\"2024-05-07T09:30:00+08:00\"}",
                      TB_EVALIDATE, "tracking_no");
  expect_encode_error(TB_MSG_STATUS_NOTIFY, MSG_ID,
                      "{\"case_id\":\"a\",\"receipt_no\":\"r\",\"status\":\"done\","
                      "\"at\":\"2024-05-07T09:30:00+08:00\"}",
                      TB_EVALIDATE, "status");
  expect_encode_error(TB_MSG_STATUS_NOTIFY, MSG_ID,
                      "{\"case_id\":\"a\",\"receipt_no\":\"r\",\"status\":\"accepted\","
                      "\"at\":\"2024-05-07 09:30:00\"}",
                      TB_EVALIDATE, "at");
  expect_encode_error(TB_MSG_CASE_WITHDRAW, MSG_ID, "{\"case_id\":\"a\"}", TB_EVALIDATE,
                      "receipt_no");
  free(meta_only);
  free(bad_id);
  json_decref(c);
  free(canon);
}

/* Opens an envelope the gateway sealed for the partner, through the host
 * (OpenSSL), to look at the business JSON text itself. */
static json_t *open_as_partner(const struct tb_wire_request *w) {
  json_t *env = parse(w->body.data, w->body.len);
  const char *ek64 = json_string_value(json_object_get(env, "encryptKey"));
  const char *iv64 = json_string_value(json_object_get(env, "iv"));
  const char *ct64 = json_string_value(json_object_get(env, "bizContent"));
  struct tb_bytes ek = {0}, key = {0}, iv = {0}, ct = {0}, plain = {0};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(H()->base64_decode(ek64, strlen(ek64), &ek), 0);
  assert_int_equal(H()->base64_decode(iv64, strlen(iv64), &iv), 0);
  assert_int_equal(H()->base64_decode(ct64, strlen(ct64), &ct), 0);
  assert_int_equal(H()->pk_decrypt(H()->ctx, "wujiang-sm2", ek.data, ek.len, &key, err), 0);
  assert_int_equal(H()->sym_decrypt(TB_CIPHER_SM4_CBC_PKCS7, key.data, key.len, iv.data, iv.len,
                                    ct.data, ct.len, &plain, err),
                   0);
  json_t *biz = parse(plain.data, plain.len);
  free(ek.data);
  free(key.data);
  free(iv.data);
  free(ct.data);
  free(plain.data);
  json_decref(env);
  return biz;
}

/* What the canonical case leaves out is sent the way the document's
 * examples show "nothing": agent null, address/receiver/mobile null,
 * remark "" (a string in the example), every key present. */
static void test_absent_values_follow_the_examples(void **unused) {
  (void)unused;
  size_t cl;
  char *canon = sample_text(samples[1], &cl); /* pickup, no agent */
  json_t *c = parse(canon, cl);
  json_object_del(c, "remarks");
  json_object_del(json_object_get(c, "applicant"), "address");
  char *text = json_dumps(c, 0);
  struct tb_wire_request w;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(encode_with(gw(), TB_MSG_CASE_SUBMIT, MSG_ID, text, strlen(text), 1, &w, err),
                   0);
  json_t *biz = open_as_partner(&w);
  assert_int_equal(json_object_size(biz), 12);
  assert_string_equal(json_string_value(json_object_get(biz, "remark")), "");
  assert_true(json_is_null(json_object_get(biz, "agent")));
  json_t *app = json_object_get(biz, "applicant");
  assert_int_equal(json_object_size(app), 6);
  assert_true(json_is_null(json_object_get(app, "address")));
  json_t *d = json_object_get(biz, "delivery");
  assert_int_equal(json_object_size(d), 4);
  assert_int_equal(json_integer_value(json_object_get(d, "mode")), 2);
  assert_true(json_is_null(json_object_get(d, "receiver")));
  assert_true(json_is_null(json_object_get(d, "mobile")));
  assert_true(json_is_null(json_object_get(d, "address")));
  json_decref(biz);
  free_request(&w);
  /* withdraw without a reason: "" ; status without opinion: null, and
   * supplementList null outside SUPPLEMENT */
  const char *wd = "{\"case_id\":\"a\",\"receipt_no\":\"r\"}";
  assert_int_equal(encode_with(gw(), TB_MSG_CASE_WITHDRAW, MSG_ID, wd, strlen(wd), 1, &w, err), 0);
  biz = open_as_partner(&w);
  assert_string_equal(json_string_value(json_object_get(biz, "reason")), "");
  json_decref(biz);
  free_request(&w);
  const char *st =
      "{\"case_id\":\"a\",\"receipt_no\":\"r\",\"status\":\"accepted\","
      "\"at\":\"2024-05-07T09:30:00+08:00\"}";
  assert_int_equal(encode_with(gw(), TB_MSG_STATUS_NOTIFY, MSG_ID, st, strlen(st), 1, &w, err), 0);
  biz = open_as_partner(&w);
  assert_int_equal(json_object_size(biz), 8);
  assert_string_equal(json_string_value(json_object_get(biz, "status")), "ACCEPT");
  assert_true(json_is_null(json_object_get(biz, "opinion")));
  assert_true(json_is_null(json_object_get(biz, "supplementList")));
  assert_true(json_is_null(json_object_get(biz, "expressNo")));
  assert_true(json_is_null(json_object_get(biz, "licenseNo")));
  assert_int_equal(json_integer_value(json_object_get(biz, "time")), 1715045400000LL);
  json_decref(biz);
  free_request(&w);
  free(text);
  json_decref(c);
  free(canon);
}

/* A time with any offset becomes the same instant in ms. */
static void test_accept_time_from_any_offset(void **unused) {
  (void)unused;
  size_t cl;
  char *canon = sample_text(samples[1], &cl);
  json_t *c = parse(canon, cl);
  json_object_set_new(c, "accepted_at", json_string("2024-05-06T02:00:00.250Z"));
  char *text = json_dumps(c, 0);
  struct tb_wire_request w;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(encode_with(gw(), TB_MSG_CASE_SUBMIT, MSG_ID, text, strlen(text), 1, &w, err),
                   0);
  struct hdrs h;
  hdrs_parse(&h, w.headers);
  struct tb_inbound_message m;
  struct tb_inbound_request r = inbound(&h, w.body.data, w.body.len);
  assert_int_equal(ops()->decode(pt(), &r, &m, err), 0);
  assert_int_equal(m.kind, TB_INBOUND_CASE);
  json_t *back = parse(m.canonical.data, m.canonical.len);
  /* 1714960800250 ms, shown in Beijing time with its milliseconds */
  assert_string_equal(json_string_value(json_object_get(back, "accepted_at")),
                      "2024-05-06T10:00:00.250+08:00");
  json_decref(back);
  ops()->release(pt(), &m);
  free(m.canonical.data);
  free(h.buf);
  free_request(&w);
  free(text);
  json_decref(c);
  free(canon);
}

/* ---- inbound interop: requests built by gm_tool.js --------------------------------------- */

/* A request built entirely with gm_tool.js: the envelope for the gateway's
 * public key (envelope-seal for CASE_SUBMIT; sm2-encrypt-der + sm4-cbc-
 * encrypt for the other types) and X-GD-Signature by the partner's key
 * (yue-sign). The body file is written to *body_path. */
static char *gm_request(const char *msg_type, const char *biz_file, struct signed_hdrs *s,
                        char *msg_id_out) {
  const char *env = tu_path("gm-%s.env.json", msg_type);
  if (strcmp(msg_type, "CASE_SUBMIT") == 0) {
    assert_int_equal(
        tu_run("node '%s' envelope-seal '%s' '%s' '%s'", tu_gm_tool, gw_pub, biz_file, env), 0);
  } else {
    unsigned char key[16], iv[16];
    char kh[33], ih[33];
    assert_int_equal(H()->random_bytes(key, 16), 0);
    assert_int_equal(H()->random_bytes(iv, 16), 0);
    for (int i = 0; i < 16; i++) {
      snprintf(kh + 2 * i, 3, "%02x", key[i]);
      snprintf(ih + 2 * i, 3, "%02x", iv[i]);
    }
    const char *kf = tu_path("gm.key.bin"), *ekf = tu_path("gm.ek.der"),
               *ctf = tu_path("gm.ct.bin");
    assert_int_equal(tu_write(kf, key, 16), 0);
    assert_int_equal(
        tu_run("node '%s' sm2-encrypt-der '%s' '%s' '%s'", tu_gm_tool, gw_pub, kf, ekf), 0);
    assert_int_equal(
        tu_run("node '%s' sm4-cbc-encrypt %s %s '%s' '%s'", tu_gm_tool, kh, ih, biz_file, ctf), 0);
    size_t ekl, ctl;
    unsigned char *ek = tu_read(ekf, &ekl), *ct = tu_read(ctf, &ctl);
    char *ek64 = b64(ek, ekl), *iv64 = b64(iv, 16), *ct64 = b64(ct, ctl);
    char id[37];
    H()->uuid_v4(id);
    json_t *e = json_pack("{s:s,s:s,s:s,s:s,s:s}", "msgId", id, "msgType", msg_type, "encryptKey",
                          ek64, "iv", iv64, "bizContent", ct64);
    char *text = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
    assert_int_equal(tu_write(env, text, strlen(text)), 0);
    free(text);
    json_decref(e);
    free(ek);
    free(ct);
    free(ek64);
    free(iv64);
    free(ct64);
  }
  size_t n;
  char *body = slurp(env, &n);
  json_t *e = parse(body, n);
  snprintf(msg_id_out, 64, "%s", json_string_value(json_object_get(e, "msgId")));
  json_decref(e);
  unsigned char r[16];
  assert_int_equal(H()->random_bytes(r, sizeof r), 0);
  for (int i = 0; i < 16; i++) snprintf(s->nonce + 2 * i, 3, "%02x", r[i]);
  snprintf(s->ts, sizeof s->ts, "%lld", (long long)NOW_MS);
  char sig[256];
  assert_int_equal(tu_run_capture(sig, sizeof sig, "node '%s' yue-sign '%s' '%s' '%s' '%s' '%s'",
                                  tu_gm_tool, wj_key, PEER_APP, s->ts, s->nonce, env),
                   0);
  s->sig = strdup(sig);
  hdrs_parse(&s->h, "");
  hdr_set(&s->h, "X-GD-AppId", PEER_APP);
  hdr_set(&s->h, "X-GD-Timestamp", s->ts);
  hdr_set(&s->h, "X-GD-Nonce", s->nonce);
  hdr_set(&s->h, "X-GD-Signature", s->sig);
  return body;
}

static void check_gm_request(const char *msg_type, const char *biz_name, const char *want_text,
                             size_t want_len, enum tb_inbound_kind kind, const char *case_id,
                             const char *receipt_no) {
  char biz_file[800], msg_id[64];
  snprintf(biz_file, sizeof biz_file, "%s/tests/data/yue-json/%s", tb_fixture_repo_root(),
           biz_name);
  struct signed_hdrs s;
  char *body = gm_request(msg_type, biz_file, &s, msg_id);
  struct tb_inbound_message m = decode_gw(&s.h, body, strlen(body));
  if (m.kind != kind)
    fail_msg("%s: kind %d (%s %s)", biz_name, (int)m.kind, m.refuse_code, m.refuse_text);
  assert_string_equal(m.message_id, msg_id);
  assert_string_equal(m.nonce, s.nonce);
  assert_int_equal(m.sent_ms, NOW_MS);
  assert_string_equal(m.case_id, case_id);
  assert_string_equal(m.receipt_no, receipt_no);
  assert_json_equal_text(m.canonical.data, m.canonical.len, want_text, want_len);
  /* The same bytes with one body byte changed no longer verify. */
  body[strlen(body) - 3] ^= 1;
  assert_refused(&s.h, body, strlen(body), "4010");
  free_message(&m);
  signed_hdrs_free(&s);
  free(body);
}

static void test_decode_accepts_cases_built_by_sm_crypto(void **unused) {
  (void)unused;
  REQUIRE_GM();
  for (size_t i = 0; i < NSAMPLES; i++) {
    char biz[128];
    size_t n;
    snprintf(biz, sizeof biz, "%s.submit.biz.json", samples[i]);
    char *want = sample_text(samples[i], &n);
    json_t *c = parse(want, n);
    check_gm_request("CASE_SUBMIT", biz, want, n, TB_INBOUND_CASE,
                     json_string_value(json_object_get(c, "case_id")), "");
    json_decref(c);
    free(want);
  }
}

static void test_decode_accepts_other_types_built_by_sm_crypto(void **unused) {
  (void)unused;
  REQUIRE_GM();
  static const struct {
    const char *type, *name;
    enum tb_inbound_kind kind;
  } cases[] = {
      {"STATUS_NOTIFY", "status-supplement", TB_INBOUND_STATUS},
      {"STATUS_NOTIFY", "status-express", TB_INBOUND_STATUS},
      {"STATUS_NOTIFY", "status-approved", TB_INBOUND_STATUS},
      {"CASE_WITHDRAW", "withdraw", TB_INBOUND_OTHER},
      {"CASE_SUPPLEMENT", "supplement", TB_INBOUND_OTHER},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char a[128], b[128];
    size_t n;
    snprintf(a, sizeof a, "%s.canonical.json", cases[i].name);
    snprintf(b, sizeof b, "%s.biz.json", cases[i].name);
    char *want = data_text(a, &n);
    json_t *c = parse(want, n);
    check_gm_request(cases[i].type, b, want, n, cases[i].kind,
                     json_string_value(json_object_get(c, "case_id")),
                     json_string_value(json_object_get(c, "receipt_no")));
    json_decref(c);
    free(want);
  }
}

/* ---- round trips through the adapter playing the partner ------------------------------------ */

static void roundtrip(void *from, void *to, enum tb_msg_type type, const char *canon, size_t len,
                      enum tb_inbound_kind kind) {
  struct tb_wire_request w;
  char err[TB_ERRMSG_MAX] = "";
  if (encode_with(from, type, MSG_ID, canon, len, 1, &w, err) != 0) fail_msg("encode: %s", err);
  struct hdrs h;
  hdrs_parse(&h, w.headers);
  struct tb_inbound_message m;
  struct tb_inbound_request r = inbound(&h, w.body.data, w.body.len);
  assert_int_equal(ops()->decode(to, &r, &m, err), 0);
  if (m.kind != kind) fail_msg("kind %d: %s %s", (int)m.kind, m.refuse_code, m.refuse_text);
  assert_int_equal(m.type, type);
  assert_string_equal(m.message_id, MSG_ID);
  assert_int_equal(m.sent_ms, NOW_MS);
  assert_string_equal(m.nonce, hdr(&h, "X-GD-Nonce"));
  assert_json_equal_text(m.canonical.data, m.canonical.len, canon, len);
  ops()->release(to, &m);
  free(m.canonical.data);
  free(h.buf);
  free_request(&w);
}

static void test_roundtrip_every_sample_and_type(void **unused) {
  (void)unused;
  for (size_t i = 0; i < NSAMPLES; i++) {
    size_t n;
    char *canon = sample_text(samples[i], &n);
    /* The partner sends its case to us ... */
    roundtrip(pt(), gw(), TB_MSG_CASE_SUBMIT, canon, n, TB_INBOUND_CASE);
    /* ... and we send ours to it. */
    roundtrip(gw(), pt(), TB_MSG_CASE_SUBMIT, canon, n, TB_INBOUND_CASE);
    free(canon);
  }
  static const struct {
    enum tb_msg_type type;
    const char *name;
    enum tb_inbound_kind kind;
  } other[] = {
      {TB_MSG_STATUS_NOTIFY, "status-supplement.canonical.json", TB_INBOUND_STATUS},
      {TB_MSG_STATUS_NOTIFY, "status-express.canonical.json", TB_INBOUND_STATUS},
      {TB_MSG_STATUS_NOTIFY, "status-approved.canonical.json", TB_INBOUND_STATUS},
      {TB_MSG_CASE_WITHDRAW, "withdraw.canonical.json", TB_INBOUND_OTHER},
      {TB_MSG_CASE_SUPPLEMENT, "supplement.canonical.json", TB_INBOUND_OTHER},
  };
  for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
    size_t n;
    char *canon = data_text(other[i].name, &n);
    roundtrip(pt(), gw(), other[i].type, canon, n, other[i].kind);
    roundtrip(gw(), pt(), other[i].type, canon, n, other[i].kind);
    free(canon);
  }
  /* Every status of the table, both ways. */
  static const char *const st[] = {"accepted", "rejected", "in_progress",
                                   "approved", "denied",   "withdrawn"};
  for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
    char c[400];
    snprintf(c, sizeof c,
             "{\"case_id\":\"430603-20240506-000123\",\"receipt_no\":\"WJ-TB-20240506-00017\","
             "\"status\":\"%s\",\"opinion\":\"意见\",\"supplement\":[],\"tracking_no\":null,"
             "\"licence_no\":null,\"at\":\"2024-05-07T09:30:00.120+08:00\"}",
             st[i]);
    roundtrip(pt(), gw(), TB_MSG_STATUS_NOTIFY, c, strlen(c), TB_INBOUND_STATUS);
  }
}

/* ---- refusals ------------------------------------------------------------------------- */

/* A correct request from the partner instance, as headers + body. */
static void partner_request(const char *sample, struct tb_wire_request *w, struct hdrs *h) {
  size_t n;
  char *canon = sample_text(sample, &n);
  char err[TB_ERRMSG_MAX];
  assert_int_equal(encode_with(pt(), TB_MSG_CASE_SUBMIT, MSG_ID, canon, n, 1, w, err), 0);
  hdrs_parse(h, w->headers);
  free(canon);
}

static void test_refusals_of_signature_headers(void **unused) {
  (void)unused;
  struct tb_wire_request w;
  struct hdrs h;
  partner_request(samples[1], &w, &h);
  /* accepted as sent */
  struct tb_inbound_message ok = decode_gw(&h, w.body.data, w.body.len);
  assert_int_equal(ok.kind, TB_INBOUND_CASE);
  free_message(&ok);

  /* tampered body → 4010 */
  unsigned char *copy = malloc(w.body.len);
  memcpy(copy, w.body.data, w.body.len);
  copy[w.body.len / 2] ^= 0x20;
  assert_refused(&h, copy, w.body.len, "4010");
  free(copy);
  /* wrong AppId (the signature covers it too) → 4010 */
  const char *app = hdr(&h, "X-GD-AppId");
  hdr_set(&h, "X-GD-AppId", "GD-XX-TB");
  assert_refused(&h, w.body.data, w.body.len, "4010");
  hdr_set(&h, "X-GD-AppId", app);
  /* our own AppId, correctly signed with our own key → 4010 (unknown AppId) */
  struct signed_hdrs s;
  partner_headers(&s, "gw-sm2", GW_APP, w.body.data, w.body.len);
  assert_refused(&s.h, w.body.data, w.body.len, "4010");
  signed_hdrs_free(&s);
  /* the partner's AppId signed with another key → 4010 */
  partner_headers(&s, "gw-sm2", PEER_APP, w.body.data, w.body.len);
  assert_refused(&s.h, w.body.data, w.body.len, "4010");
  signed_hdrs_free(&s);
  /* a signature over another string, not base64, empty, missing */
  const char *sig = hdr(&h, "X-GD-Signature");
  char *other = sign_as("wujiang-sm2", PEER_APP, "1", "2", "x", 1);
  hdr_set(&h, "X-GD-Signature", other);
  assert_refused(&h, w.body.data, w.body.len, "4010");
  hdr_set(&h, "X-GD-Signature", "!!notbase64!!");
  assert_refused(&h, w.body.data, w.body.len, "4010");
  hdr_set(&h, "X-GD-Signature", "");
  assert_refused(&h, w.body.data, w.body.len, "4010");
  hdr_set(&h, "X-GD-Signature", "AAAA");
  assert_refused(&h, w.body.data, w.body.len, "4010");
  hdr_set(&h, "X-GD-Signature", sig);
  free(other);
  /* a header given twice → 4010 */
  struct hdrs twice = h;
  twice.h[twice.n].name = "x-gd-nonce";
  twice.h[twice.n].value = "00000000000000000000000000000000";
  twice.n++;
  assert_refused(&twice, w.body.data, w.body.len, "4010");
  /* each header missing → 4010 */
  static const char *const names[] = {"X-GD-AppId", "X-GD-Timestamp", "X-GD-Nonce",
                                      "X-GD-Signature"};
  for (int i = 0; i < 4; i++) {
    struct hdrs less = h;
    hdr_del(&less, names[i]);
    assert_refused(&less, w.body.data, w.body.len, "4010");
  }
  free(h.buf);
  free_request(&w);

  /* Correctly signed, but a timestamp that is not Unix ms → 4011, a nonce
   * that is not 32 lowercase hex → 4012 (the host's window and store give
   * STALE/NONCE_REUSED for well-formed ones). */
  char *body = envelope_with("STATUS_NOTIFY", MSG_ID, "{}", 2, "gw-sm2");
  static const struct {
    const char *ts, *nonce, *code;
  } bad[] = {
      {"17150454001x3", "0123456789abcdef0123456789abcdef", "4011"},
      {"-1715045400123", "0123456789abcdef0123456789abcdef", "4011"},
      {"0", "0123456789abcdef0123456789abcdef", "4011"},
      {"1715045400123", "0123456789ABCDEF0123456789ABCDEF", "4012"},
      {"1715045400123", "0123456789abcdef", "4012"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *sg = sign_as("wujiang-sm2", PEER_APP, bad[i].ts, bad[i].nonce, body, strlen(body));
    struct hdrs x;
    hdrs_parse(&x, "");
    hdr_set(&x, "X-GD-AppId", PEER_APP);
    hdr_set(&x, "X-GD-Timestamp", bad[i].ts);
    hdr_set(&x, "X-GD-Nonce", bad[i].nonce);
    hdr_set(&x, "X-GD-Signature", sg);
    assert_refused(&x, body, strlen(body), bad[i].code);
    free(x.buf);
    free(sg);
  }
  free(body);
}

static void test_refusals_of_the_envelope(void **unused) {
  (void)unused;
  size_t bl;
  char *biz = data_text("status-approved.biz.json", &bl);
  struct tb_inbound_message m;
  /* sanity: the test's own envelope is accepted */
  char *good = envelope_with("STATUS_NOTIFY", MSG_ID, biz, bl, "gw-sm2");
  m = decode_enveloped(good);
  assert_int_equal(m.kind, TB_INBOUND_STATUS);
  free_message(&m);

  /* encrypted for someone else (the partner's own key) → 4020 */
  char *elsewhere = envelope_with("STATUS_NOTIFY", MSG_ID, biz, bl, "wujiang-sm2");
  m = decode_enveloped(elsewhere);
  assert_int_equal(m.kind, TB_INBOUND_REFUSED);
  assert_string_equal(m.refuse_code, "4020");
  assert_string_equal(m.message_id, MSG_ID); /* echoed in the answer */
  free_message(&m);
  free(elsewhere);

  /* Replace one member of the good envelope at a time. */
  json_t *env = parse(good, strlen(good));
  unsigned char junk[160];
  assert_int_equal(H()->random_bytes(junk, sizeof junk), 0);
  char *junk64 = b64(junk, sizeof junk), *junk8 = b64(junk, 8), *junk15 = b64(junk, 15);
  static const char *const codes_note = "member, value, code";
  (void)codes_note;
  const struct {
    const char *member;
    json_t *value;
    const char *code;
  } cases[] = {
      {"encryptKey", json_string(junk64), "4020"},
      {"encryptKey", json_string("not base64!"), "4020"},
      {"encryptKey", json_string(""), "4020"},
      {"iv", json_string(junk8), "4020"},
      {"bizContent", json_string(junk64), "4020"},
      {"bizContent", json_string(junk15), "4020"},
      {"bizContent", json_string(""), "4020"},
      {"msgId", json_string("12345"), "4001"},
      {"msgType", json_string("CASE_DELETE"), "4001"},
      {"msgType", json_integer(1), "4001"},
      {"extra", json_string("x"), "4001"},
      {"iv", NULL, "4001"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    json_t *e = json_deep_copy(env);
    if (cases[i].value)
      json_object_set_new(e, cases[i].member, cases[i].value);
    else
      json_object_del(e, cases[i].member);
    char *text = json_dumps(e, JSON_COMPACT);
    m = decode_enveloped(text);
    if (m.kind != TB_INBOUND_REFUSED || strcmp(m.refuse_code, cases[i].code) != 0)
      fail_msg("envelope case %zu (%s): want %s, got %d %s", i, cases[i].member, cases[i].code,
               (int)m.kind, m.refuse_code);
    free_message(&m);
    free(text);
    json_decref(e);
  }
  /* not JSON, not an object → 4001 */
  m = decode_enveloped("not json at all");
  assert_string_equal(m.refuse_code, "4001");
  free_message(&m);
  m = decode_enveloped("[1,2,3]");
  assert_string_equal(m.refuse_code, "4001");
  free_message(&m);
  json_decref(env);
  free(junk64);
  free(junk8);
  free(junk15);
  free(good);
  free(biz);
}

static void test_refusals_of_business_json(void **unused) {
  (void)unused;
  /* decrypts, but not to UTF-8 JSON → 4020 (what a wrong key gives) */
  assert_biz_refused("STATUS_NOTIFY", "hello", "4020");
  assert_biz_refused("STATUS_NOTIFY", "{\"a\":\"\xff\"}", "4020");
  /* JSON of the wrong shape → 4001 */
  assert_biz_refused("STATUS_NOTIFY", "{}", "4001");
  assert_biz_refused("STATUS_NOTIFY", "[]", "4001");
  size_t bl;
  char *biz = data_text("status-supplement.biz.json", &bl);
  json_t *good = parse(biz, bl);
  const struct {
    const char *key;
    json_t *value;
  } st[] = {
      {"status", json_string("DONE")},
      {"time", json_integer(1715045400)}, /* seconds, not ms */
      {"time", json_string("1715045400000")},
      {"time", json_real(1715045400000.5)},
      {"applyNo", json_string("has space")},
      {"receiptNo", json_null()},
      {"supplementList", json_string("x")},
      {"supplementList", json_pack("[{s:s,s:i}]", "materialName", "a", "extra", 1)},
      {"opinion", json_integer(3)},
      {"unknownKey", json_string("x")},
      {"expressNo", NULL},
  };
  for (size_t i = 0; i < sizeof st / sizeof st[0]; i++) {
    json_t *b = json_deep_copy(good);
    if (st[i].value)
      json_object_set_new(b, st[i].key, st[i].value);
    else
      json_object_del(b, st[i].key);
    char *text = json_dumps(b, JSON_COMPACT);
    assert_biz_refused("STATUS_NOTIFY", text, "4001");
    free(text);
    json_decref(b);
  }
  json_decref(good);
  free(biz);

  /* CASE_SUBMIT: one wrong value at a time */
  char *cb = data_text("02-veteran-retirement-wujiang.submit.biz.json", &bl);
  json_t *c = parse(cb, bl);
  const struct {
    const char *obj, *key;
    json_t *value;
  } cs[] = {
      {NULL, "acceptTime", json_integer(1714960800)},
      {NULL, "handleAreaCode", json_string("990203")},
      {NULL, "formData", json_string("x")},
      {NULL, "agent", json_string("x")},
      {NULL, "matterName", json_string("")},
      {"applicant", "type", json_string("X")},
      {"applicant", "certType", json_string("TYSHXYDM")}, /* a person with an org code */
      {"applicant", "certType", json_string("ID")},
      {"applicant", "certNo", json_string("430623197506203113")}, /* check character */
      {"applicant", "mobile", json_string("12345")},
      {"applicant", "mobile", json_null()},
      {"delivery", "mode", json_string("2")},
      {"delivery", "mode", json_integer(4)},
      {"delivery", "extra", json_null()},
  };
  for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
    json_t *b = json_deep_copy(c);
    json_t *o = cs[i].obj ? json_object_get(b, cs[i].obj) : b;
    json_object_set_new(o, cs[i].key, cs[i].value);
    char *text = json_dumps(b, JSON_COMPACT);
    assert_biz_refused("CASE_SUBMIT", text, "4001");
    free(text);
    json_decref(b);
  }
  /* attachments: size, digest, name, type */
  const struct {
    const char *key;
    json_t *value;
  } as[] = {
      {"fileSize", json_integer(40)},
      {"sm3", json_string("dd61b3c8a553cdd0c821dacf18e274d6e514c1f7fcd4fa8f05316fa7e9f697a1")},
      {"sm3", json_string("DD61B3C8A553CDD0C821DACF18E274D6E514C1F7FCD4FA8F05316FA7E9F697A0")},
      {"fileName", json_string("退役证.doc")},
      {"fileName", json_string(".pdf")},
      {"fileType", json_string("exe")},
      {"fileType", json_string("PDF")},
      {"fileData", json_string("JVBERi0xLjQK===")},
  };
  for (size_t i = 0; i < sizeof as / sizeof as[0]; i++) {
    json_t *b = json_deep_copy(c);
    json_object_set_new(json_array_get(json_object_get(b, "attachments"), 0), as[i].key,
                        as[i].value);
    char *text = json_dumps(b, JSON_COMPACT);
    assert_biz_refused("CASE_SUBMIT", text, "4001");
    free(text);
    json_decref(b);
  }
  /* the same business JSON under another msgType → 4001 */
  assert_biz_refused("STATUS_NOTIFY", cb, "4001");
  json_decref(c);
  free(cb);
}

/* ---- classify ---------------------------------------------------------------------- */

struct response {
  struct signed_hdrs s;
  char *body;
  struct tb_wire_response r;
};

static void response_make(struct response *x, int status, const char *body, const char *key,
                          const char *app) {
  memset(x, 0, sizeof *x);
  x->body = strdup(body);
  if (key) {
    partner_headers(&x->s, key, app, x->body, strlen(x->body));
  } else {
    hdrs_parse(&x->s.h, "");
  }
  x->r.http_status = status;
  x->r.headers = x->s.h.h;
  x->r.header_count = x->s.h.n;
  x->r.body = (const unsigned char *)x->body;
  x->r.body_len = strlen(x->body);
}

static void response_free(struct response *x) {
  free(x->body);
  signed_hdrs_free(&x->s);
}

static struct tb_classification classify(const struct tb_wire_response *r, enum tb_msg_type type) {
  struct tb_outbound m = {.type = type, .message_id = MSG_ID, .now_ms = NOW_MS};
  struct tb_classification c;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(ops()->classify(gw(), &m, r, &c, err), 0);
  return c;
}

static void test_classify_every_code(void **unused) {
  (void)unused;
  static const struct {
    const char *code;
    enum tb_verdict v;
  } table[] = {
      {"0000", TB_VERDICT_SUCCESS},     {"0001", TB_VERDICT_DUPLICATE},
      {"4001", TB_VERDICT_PERMANENT},   {"4010", TB_VERDICT_PERMANENT},
      {"4011", TB_VERDICT_RETRY_FRESH}, {"4012", TB_VERDICT_RETRY_FRESH},
      {"4020", TB_VERDICT_PERMANENT},   {"4030", TB_VERDICT_PERMANENT},
      {"5000", TB_VERDICT_RETRY},       {"5030", TB_VERDICT_RETRY},
      {"4999", TB_VERDICT_RETRY},       {"0", TB_VERDICT_RETRY},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    char body[300];
    snprintf(body, sizeof body,
             "{\"code\":\"%s\",\"msg\":\"成功\",\"data\":{\"msgId\":\"%s\",\"receiptNo\":"
             "\"WJ-TB-20240506-00017\"}}",
             table[i].code, MSG_ID);
    struct response x;
    response_make(&x, 200, body, "wujiang-sm2", PEER_APP);
    struct tb_classification c = classify(&x.r, TB_MSG_CASE_SUBMIT);
    if (c.verdict != table[i].v) fail_msg("code %s: verdict %d", table[i].code, (int)c.verdict);
    assert_int_equal(c.signature_valid, 1);
    assert_int_equal(c.retry_after_ms, -1);
    if (table[i].v == TB_VERDICT_SUCCESS || table[i].v == TB_VERDICT_DUPLICATE) {
      assert_string_equal(c.receipt_no, "WJ-TB-20240506-00017");
      assert_string_equal(c.code, table[i].code);
    } else {
      assert_string_equal(c.receipt_no, "");
    }
    response_free(&x);
  }
  /* data null on an error code is fine (no msgId could be read) */
  struct response x;
  response_make(&x, 200, "{\"code\":\"4001\",\"msg\":\"参数不合法\",\"data\":null}", "wujiang-sm2",
                PEER_APP);
  assert_int_equal(classify(&x.r, TB_MSG_CASE_SUBMIT).verdict, TB_VERDICT_PERMANENT);
  response_free(&x);
  /* an uppercase echo of our msgId is still ours */
  char up[200];
  snprintf(up, sizeof up, "{\"code\":\"0000\",\"msg\":\"成功\",\"data\":{\"msgId\":\"%s\"}}",
           "5F0C1A8E-2B7D-4E39-A1C4-0D9E8F7A6B5C");
  response_make(&x, 200, up, "wujiang-sm2", PEER_APP);
  struct tb_classification c = classify(&x.r, TB_MSG_STATUS_NOTIFY);
  assert_int_equal(c.verdict, TB_VERDICT_SUCCESS);
  assert_string_equal(c.receipt_no, "");
  response_free(&x);
}

static void test_classify_refuses_what_is_not_a_signed_answer_to_us(void **unused) {
  (void)unused;
  char ok[300];
  snprintf(ok, sizeof ok,
           "{\"code\":\"0000\",\"msg\":\"成功\",\"data\":{\"msgId\":\"%s\",\"receiptNo\":\"R1\"}}",
           MSG_ID);
  struct response x;
  struct tb_classification c;
  /* unsigned */
  response_make(&x, 200, ok, NULL, NULL);
  c = classify(&x.r, TB_MSG_CASE_SUBMIT);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.signature_valid, 0);
  assert_string_equal(c.code, "transport");
  assert_non_null(strstr(c.text, "transport failure"));
  response_free(&x);
  /* signed by the wrong key */
  response_make(&x, 200, ok, "gw-sm2", PEER_APP);
  c = classify(&x.r, TB_MSG_CASE_SUBMIT);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.signature_valid, 0);
  response_free(&x);
  /* signed by the partner but with another AppId */
  response_make(&x, 200, ok, "wujiang-sm2", "GD-OTHER");
  c = classify(&x.r, TB_MSG_CASE_SUBMIT);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.signature_valid, 0);
  response_free(&x);
  /* body changed after signing */
  response_make(&x, 200, ok, "wujiang-sm2", PEER_APP);
  x.body[strlen(x.body) - 4] = 'X';
  c = classify(&x.r, TB_MSG_CASE_SUBMIT);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.signature_valid, 0);
  response_free(&x);
  /* signed, but another msgId; or none on success */
  const char *bodies[] = {
      "{\"code\":\"0000\",\"msg\":\"成功\",\"data\":{\"msgId\":\"00000000-0000-4000-8000-"
      "000000000000\","
      "\"receiptNo\":\"R1\"}}",
      "{\"code\":\"0000\",\"msg\":\"成功\",\"data\":null}",
      "{\"code\":\"0001\",\"msg\":\"x\"}",
      "{\"code\":\"4001\",\"msg\":\"x\",\"data\":{\"msgId\":\"00000000-0000-4000-8000-"
      "000000000000\"}}",
      "{\"code\":0,\"msg\":\"成功\"}",
      "not json",
      "",
      "[]",
      "{\"code\":\"0000\",\"msg\":\"成功\",\"data\":\"x\"}",
  };
  for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
    response_make(&x, 200, bodies[i], "wujiang-sm2", PEER_APP);
    c = classify(&x.r, TB_MSG_CASE_SUBMIT);
    if (c.verdict != TB_VERDICT_RETRY) fail_msg("body %zu: verdict %d", i, (int)c.verdict);
    assert_int_equal(c.signature_valid, 1);
    assert_string_equal(c.receipt_no, "");
    response_free(&x);
  }
}

static void test_classify_http_statuses_and_retry_after(void **unused) {
  (void)unused;
  static const struct {
    int status;
    const char *retry_after;
    enum tb_verdict v;
    int64_t ra;
  } table[] = {
      {503, "7", TB_VERDICT_RETRY, 7000},    {500, NULL, TB_VERDICT_RETRY, -1},
      {502, "x", TB_VERDICT_RETRY, -1},      {429, "120", TB_VERDICT_RETRY, 120000},
      {408, NULL, TB_VERDICT_RETRY, -1},     {400, NULL, TB_VERDICT_PERMANENT, -1},
      {404, NULL, TB_VERDICT_PERMANENT, -1}, {415, NULL, TB_VERDICT_PERMANENT, -1},
      {403, NULL, TB_VERDICT_PERMANENT, -1}, {302, NULL, TB_VERDICT_RETRY, -1},
      {204, NULL, TB_VERDICT_RETRY, -1},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    struct response x;
    response_make(&x, table[i].status, "<html>busy</html>", NULL, NULL);
    if (table[i].retry_after) hdr_set(&x.s.h, "Retry-After", table[i].retry_after);
    x.r.header_count = x.s.h.n;
    struct tb_classification c = classify(&x.r, TB_MSG_CASE_SUBMIT);
    if (c.verdict != table[i].v || c.retry_after_ms != table[i].ra)
      fail_msg("HTTP %d: verdict %d retry_after %lld", table[i].status, (int)c.verdict,
               (long long)c.retry_after_ms);
    char want[32];
    snprintf(want, sizeof want, "HTTP %d", table[i].status);
    assert_string_equal(c.code, want);
    response_free(&x);
  }
  /* 5000/5030 with Retry-After: the header is honoured too */
  char body[200];
  snprintf(body, sizeof body, "{\"code\":\"5030\",\"msg\":\"忙\",\"data\":{\"msgId\":\"%s\"}}",
           MSG_ID);
  struct response x;
  response_make(&x, 200, body, "wujiang-sm2", PEER_APP);
  hdr_set(&x.s.h, "Retry-After", "3");
  x.r.header_count = x.s.h.n;
  struct tb_classification c = classify(&x.r, TB_MSG_CASE_SUBMIT);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_int_equal(c.retry_after_ms, 3000);
  response_free(&x);
  /* no HTTP answer */
  struct tb_wire_response t = {.http_status = 0, .transport_error = "connection refused"};
  c = classify(&t, TB_MSG_CASE_SUBMIT);
  assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  assert_string_equal(c.code, "transport");
  assert_non_null(strstr(c.text, "connection refused"));
}

/* A response signed by sm-crypto is accepted (both directions of the
 * response signature are interoperable). */
static void test_classify_accepts_a_response_signed_by_sm_crypto(void **unused) {
  (void)unused;
  REQUIRE_GM();
  char body[300], sig[256];
  snprintf(body, sizeof body,
           "{\"code\":\"0000\",\"msg\":\"成功\",\"data\":{\"msgId\":\"%s\",\"receiptNo\":"
           "\"WJ-TB-20240506-00017\"}}",
           MSG_ID);
  const char *f = tu_path("resp.json");
  assert_int_equal(tu_write(f, body, strlen(body)), 0);
  const char *nonce = "00112233445566778899aabbccddeeff";
  assert_int_equal(
      tu_run_capture(sig, sizeof sig, "node '%s' yue-sign '%s' '%s' 1715045400999 '%s' '%s'",
                     tu_gm_tool, wj_key, PEER_APP, nonce, f),
      0);
  struct hdrs h;
  hdrs_parse(&h, "");
  hdr_set(&h, "X-GD-AppId", PEER_APP);
  hdr_set(&h, "X-GD-Timestamp", "1715045400999");
  hdr_set(&h, "X-GD-Nonce", nonce);
  hdr_set(&h, "X-GD-Signature", sig);
  struct tb_wire_response r = {.http_status = 200,
                               .headers = h.h,
                               .header_count = h.n,
                               .body = (const unsigned char *)body,
                               .body_len = strlen(body)};
  struct tb_classification c = classify(&r, TB_MSG_CASE_SUBMIT);
  assert_int_equal(c.verdict, TB_VERDICT_SUCCESS);
  assert_int_equal(c.signature_valid, 1);
  assert_string_equal(c.receipt_no, "WJ-TB-20240506-00017");
  free(h.buf);
}

/* ---- answers ------------------------------------------------------------------------- */

static void test_answers_are_signed_and_verify_with_sm_crypto(void **unused) {
  (void)unused;
  static const struct {
    enum tb_inbound_outcome outcome;
    const char *receipt;
    const char *code;
    int has_receipt;
  } table[] = {
      {TB_INBOUND_ACCEPTED, "YX-430603-20240601-0002", "0000", 1},
      {TB_INBOUND_ACCEPTED, NULL, "0000", 0},
      {TB_INBOUND_DUPLICATE, "YX-430603-20240601-0002", "0001", 1},
      {TB_INBOUND_STALE, NULL, "4011", 0},
      {TB_INBOUND_NONCE_REUSED, NULL, "4012", 0},
      {TB_INBOUND_REFUSE, NULL, "4020", 0},
      {TB_INBOUND_UNKNOWN_CASE, NULL, "4001", 0},
      {TB_INBOUND_FAILED, NULL, "5000", 0},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    struct tb_inbound_message m;
    memset(&m, 0, sizeof m);
    m.kind = table[i].outcome == TB_INBOUND_REFUSE ? TB_INBOUND_REFUSED : TB_INBOUND_CASE;
    m.type = TB_MSG_CASE_SUBMIT;
    snprintf(m.message_id, sizeof m.message_id, "%s", MSG_ID);
    if (table[i].outcome == TB_INBOUND_REFUSE) {
      snprintf(m.refuse_code, sizeof m.refuse_code, "4020");
      snprintf(m.refuse_text, sizeof m.refuse_text, "encryptKey does not decrypt");
    }
    struct hdrs empty;
    hdrs_parse(&empty, "");
    struct tb_inbound_request req = inbound(&empty, "", 0);
    struct tb_wire_answer a;
    char err[TB_ERRMSG_MAX] = "";
    assert_int_equal(ops()->answer(gw(), &req, &m, table[i].outcome, table[i].receipt, &a, err), 0);
    assert_int_equal(a.http_status, 200);
    assert_string_equal(a.content_type, "application/json;charset=UTF-8");
    json_t *b = parse(a.body.data, a.body.len);
    assert_string_equal(json_string_value(json_object_get(b, "code")), table[i].code);
    assert_true(json_is_string(json_object_get(b, "msg")));
    json_t *data = json_object_get(b, "data");
    assert_string_equal(json_string_value(json_object_get(data, "msgId")), MSG_ID);
    if (table[i].has_receipt)
      assert_string_equal(json_string_value(json_object_get(data, "receiptNo")), table[i].receipt);
    else
      assert_null(json_object_get(data, "receiptNo"));
    json_decref(b);
    struct hdrs h;
    hdrs_parse(&h, a.headers);
    assert_string_equal(hdr(&h, "X-GD-AppId"), GW_APP);
    assert_true(is_lower_hex(hdr(&h, "X-GD-Nonce"), 32));
    /* The partner's view: the partner instance classifies our answer. */
    struct tb_wire_response r = {.http_status = 200,
                                 .headers = h.h,
                                 .header_count = h.n,
                                 .body = a.body.data,
                                 .body_len = a.body.len};
    struct tb_outbound om = {.type = TB_MSG_CASE_SUBMIT, .message_id = MSG_ID};
    struct tb_classification c;
    assert_int_equal(ops()->classify(pt(), &om, &r, &c, err), 0);
    assert_int_equal(c.signature_valid, 1);
    assert_string_equal(c.code, table[i].code);
    /* ... and sm-crypto verifies the signature with our public key. */
    if (have_gm) {
      const char *f = tu_path("answer%zu.json", i);
      assert_int_equal(tu_write(f, a.body.data, a.body.len), 0);
      assert_int_equal(
          tu_run("node '%s' yue-verify '%s' '%s' '%s' '%s' '%s' '%s'", tu_gm_tool, gw_pub, GW_APP,
                 hdr(&h, "X-GD-Timestamp"), hdr(&h, "X-GD-Nonce"), f, hdr(&h, "X-GD-Signature")),
          0);
      /* not with the partner's key: the check can fail */
      if (i == 0)
        assert_int_equal(
            tu_run("node '%s' yue-verify '%s' '%s' '%s' '%s' '%s' '%s'", tu_gm_tool, wj_pub, GW_APP,
                   hdr(&h, "X-GD-Timestamp"), hdr(&h, "X-GD-Nonce"), f, hdr(&h, "X-GD-Signature")),
            1);
    }
    free(h.buf);
    free(empty.buf);
    free(a.content_type);
    free(a.headers);
    free(a.body.data);
  }
  /* A status notification's answer has no receiptNo, even if one is given. */
  {
    struct tb_inbound_message m;
    memset(&m, 0, sizeof m);
    m.kind = TB_INBOUND_STATUS;
    m.type = TB_MSG_STATUS_NOTIFY;
    snprintf(m.message_id, sizeof m.message_id, "%s", MSG_ID);
    struct hdrs empty;
    hdrs_parse(&empty, "");
    struct tb_inbound_request req = inbound(&empty, "", 0);
    struct tb_wire_answer a;
    char err[TB_ERRMSG_MAX];
    assert_int_equal(ops()->answer(gw(), &req, &m, TB_INBOUND_ACCEPTED, "R-1", &a, err), 0);
    json_t *b = parse(a.body.data, a.body.len);
    assert_string_equal(json_string_value(json_object_get(b, "code")), "0000");
    assert_null(json_object_get(json_object_get(b, "data"), "receiptNo"));
    json_decref(b);
    free(empty.buf);
    free(a.content_type);
    free(a.headers);
    free(a.body.data);
  }
  /* A refusal before the msgId could be read answers data: null. */
  struct tb_inbound_message m;
  memset(&m, 0, sizeof m);
  snprintf(m.refuse_code, sizeof m.refuse_code, "4010");
  struct hdrs empty;
  hdrs_parse(&empty, "");
  struct tb_inbound_request req = inbound(&empty, "", 0);
  struct tb_wire_answer a;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(ops()->answer(gw(), &req, &m, TB_INBOUND_REFUSE, NULL, &a, err), 0);
  json_t *b = parse(a.body.data, a.body.len);
  assert_string_equal(json_string_value(json_object_get(b, "code")), "4010");
  assert_true(json_is_null(json_object_get(b, "data")));
  json_decref(b);
  free(empty.buf);
  free(a.content_type);
  free(a.headers);
  free(a.body.data);
}

/* ---- hostile input ---------------------------------------------------------------------- */

/* Every value of the business JSON replaced by every JSON type, behind a
 * valid signature and envelope: decode answers (accepts or refuses with
 * 4001), never crashes or leaks (ASan). */
static void mutate_all(const char *msg_type, json_t *root, json_t *node) {
  static json_t *(*const makers[])(void) = {json_null, json_true, json_object, json_array};
  const char *key;
  json_t *val;
  void *tmp;
  if (json_is_array(node)) {
    for (size_t i = 0; i < json_array_size(node); i++)
      mutate_all(msg_type, root, json_array_get(node, i));
    return;
  }
  if (!json_is_object(node)) return;
  json_object_foreach_safe(node, tmp, key, val) {
    json_incref(val);
    for (size_t k = 0; k < 6; k++) {
      json_t *nv = k < 4 ? makers[k]() : k == 4 ? json_integer(-1) : json_string("\xe4\xb8\x80");
      json_object_set_new(node, key, nv);
      char *text = json_dumps(root, JSON_COMPACT);
      char *body = envelope_with(msg_type, MSG_ID, text, strlen(text), "gw-sm2");
      struct tb_inbound_message m = decode_enveloped(body);
      assert_true(m.kind == TB_INBOUND_REFUSED ? strcmp(m.refuse_code, "4001") == 0
                                               : m.canonical.data != NULL);
      free_message(&m);
      free(body);
      free(text);
    }
    json_object_set_new(node, key, val);
    mutate_all(msg_type, root, val);
  }
}

static void test_hostile_business_json(void **unused) {
  (void)unused;
  size_t n;
  char *t = data_text("03-company-opening-zhaoyuan.submit.biz.json", &n);
  json_t *root = parse(t, n);
  /* keep formData small: every value inside it is legitimately free-form */
  json_object_set_new(root, "formData", json_pack("{s:i}", "a", 1));
  mutate_all("CASE_SUBMIT", root, root);
  json_decref(root);
  free(t);
  t = data_text("status-supplement.biz.json", &n);
  root = parse(t, n);
  mutate_all("STATUS_NOTIFY", root, root);
  json_decref(root);
  free(t);
}

static void test_hostile_wire_input(void **unused) {
  (void)unused;
  struct tb_wire_request w;
  struct hdrs h;
  partner_request(samples[0], &w, &h);
  /* Truncations and bit flips of a valid request: refused, not crashed. */
  for (size_t len = 0; len < w.body.len; len += 1 + len / 3) {
    struct tb_inbound_message m = decode_gw(&h, w.body.data, len);
    assert_int_equal(m.kind, TB_INBOUND_REFUSED);
    free_message(&m);
  }
  unsigned char *copy = malloc(w.body.len);
  for (int i = 0; i < 64; i++) {
    memcpy(copy, w.body.data, w.body.len);
    uint32_t r;
    H()->random_bytes(&r, sizeof r);
    copy[r % w.body.len] ^= (unsigned char)(1u << (r >> 29));
    struct tb_inbound_message m = decode_gw(&h, copy, w.body.len);
    assert_int_equal(m.kind, TB_INBOUND_REFUSED);
    free_message(&m);
  }
  free(copy);
  /* Headers: enormous, NUL-less garbage, no headers at all, odd requests. */
  char *big = malloc(100000);
  memset(big, 'A', 99999);
  big[99999] = '\0';
  struct hdrs x = h;
  hdr_set(&x, "X-GD-Signature", big);
  assert_refused(&x, w.body.data, w.body.len, "4010");
  x = h;
  hdr_set(&x, "X-GD-AppId", big);
  assert_refused(&x, w.body.data, w.body.len, "4010");
  x = h;
  hdr_set(&x, "X-GD-Nonce", "a\nb");
  assert_refused(&x, w.body.data, w.body.len, "4010");
  free(big);
  struct tb_inbound_request r = inbound(&h, NULL, 0);
  r.headers = NULL;
  r.header_count = 0;
  struct tb_inbound_message m;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(ops()->decode(gw(), &r, &m, err), 0);
  assert_string_equal(m.refuse_code, "4010");
  free_message(&m);
  r = inbound(&h, w.body.data, w.body.len);
  r.method = "GET";
  assert_int_equal(ops()->decode(gw(), &r, &m, err), 0);
  assert_int_equal(m.kind, TB_INBOUND_REFUSED);
  free_message(&m);
  /* Classify: random bodies and headers. */
  for (int i = 0; i < 50; i++) {
    unsigned char junk[300];
    H()->random_bytes(junk, sizeof junk);
    struct tb_wire_response resp = {.http_status = 200,
                                    .headers = h.h,
                                    .header_count = h.n,
                                    .body = junk,
                                    .body_len = (size_t)(junk[0]) + 1};
    struct tb_classification c = classify(&resp, TB_MSG_CASE_SUBMIT);
    assert_int_equal(c.verdict, TB_VERDICT_RETRY);
  }
  free(h.buf);
  free_request(&w);
}

/* ---- logs ----------------------------------------------------------------------------- */

static void test_logs_never_show_personal_data(void **unused) {
  (void)unused;
  const char *logf = tu_path("adapter.log");
  int fd = open(logf, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  assert_true(fd >= 0);
  tb_log_setup(fd, TB_LOG_DEBUG);
  /* encode (debug line with the applicant masked), decode, refusals */
  size_t n;
  char *canon = sample_text(samples[0], &n);
  struct tb_wire_request w;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(encode_with(gw(), TB_MSG_CASE_SUBMIT, MSG_ID, canon, n, 1, &w, err), 0);
  free_request(&w);
  struct hdrs h;
  partner_request(samples[0], &w, &h);
  struct tb_inbound_message m = decode_gw(&h, w.body.data, w.body.len);
  assert_int_equal(m.kind, TB_INBOUND_CASE);
  free_message(&m);
  w.body.data[10] ^= 1;
  assert_refused(&h, w.body.data, w.body.len, "4010");
  assert_biz_refused("CASE_SUBMIT", "{\"applyNo\":\"430603199001011231\"}", "4001");
  free(h.buf);
  free_request(&w);
  free(canon);
  tb_log_setup(2, TB_LOG_INFO);
  close(fd);
  size_t ln;
  char *log = slurp(logf, &ln);
  assert_non_null(strstr(log, "yuejson.encoded"));
  assert_non_null(strstr(log, "yuejson.refused"));
  assert_non_null(strstr(log, "430603********1231")); /* masked, as SPEC §9 says */
  static const char *const secrets[] = {"430603199001011231", "张三", "13800000000", "云溪大道"};
  for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
    if (strstr(log, secrets[i])) fail_msg("log shows \"%s\":\n%s", secrets[i], log);
  free(log);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_settings_refused_with_the_key_named),
      cmocka_unit_test(test_routes_and_description),
      cmocka_unit_test(test_encode_every_sample_opens_with_sm_crypto),
      cmocka_unit_test(test_encode_other_types_open_with_sm_crypto),
      cmocka_unit_test(test_form_numbers_and_order_unchanged),
      cmocka_unit_test(test_every_attempt_is_sealed_afresh),
      cmocka_unit_test(test_encode_refuses_what_the_document_cannot_carry),
      cmocka_unit_test(test_absent_values_follow_the_examples),
      cmocka_unit_test(test_accept_time_from_any_offset),
      cmocka_unit_test(test_decode_accepts_cases_built_by_sm_crypto),
      cmocka_unit_test(test_decode_accepts_other_types_built_by_sm_crypto),
      cmocka_unit_test(test_roundtrip_every_sample_and_type),
      cmocka_unit_test(test_refusals_of_signature_headers),
      cmocka_unit_test(test_refusals_of_the_envelope),
      cmocka_unit_test(test_refusals_of_business_json),
      cmocka_unit_test(test_classify_every_code),
      cmocka_unit_test(test_classify_refuses_what_is_not_a_signed_answer_to_us),
      cmocka_unit_test(test_classify_http_statuses_and_retry_after),
      cmocka_unit_test(test_classify_accepts_a_response_signed_by_sm_crypto),
      cmocka_unit_test(test_answers_are_signed_and_verify_with_sm_crypto),
      cmocka_unit_test(test_hostile_business_json),
      cmocka_unit_test(test_hostile_wire_input),
      cmocka_unit_test(test_logs_never_show_personal_data),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
