/*
 * tests/fuzz/fuzz_adapter.h — one real adapter per fuzzer process: the
 * development PKI, the keystore, the host services table and the adapter .so
 * loaded from TB_ADAPTERS_DIR through the real loader (tests/support/
 * adapter_fixture.h), set up once and torn down at exit. Header-only, for the
 * fuzz_luxml_* and fuzz_yuejson_* harnesses.
 *
 * Hostile input mostly dies at the signature check, so the harnesses also
 * have modes in which they sign the fuzzed bytes with the partner's key
 * (held by the fixture) before handing them over: the fuzzer then reaches
 * the parsing and mapping code behind the signature, which is where a
 * compromised or buggy partner could still reach us.
 */
#ifndef TB_TESTS_FUZZ_ADAPTER_H
#define TB_TESTS_FUZZ_ADAPTER_H

#include <jansson.h>
#include <string.h>

#include "adapter_fixture.h"
#include "fuzz.h"

static struct tb_adapter_fixture fuzz_fx;

static inline const struct tb_adapter *fuzz_ops(void) { return fuzz_fx.lib.ops; }
static inline void *fuzz_state(void) { return fuzz_fx.inst.state; }
static inline const struct tb_host *fuzz_host(void) { return &fuzz_fx.host.table; }

static inline void fuzz_adapter_teardown(void) { tb_fixture_teardown(&fuzz_fx); }

/* Loads adapter `name` for `partner`; aborts with a message on failure (a
 * harness that cannot start must not pass). */
static inline void fuzz_adapter_setup(const char *name, const char *partner,
                                      const char *settings) {
  tb_fuzz_quiet_logs();
  if (getenv("TB_ADAPTERS_DIR") == NULL || getenv("TB_REPO_ROOT") == NULL) {
    fprintf(stderr, "fuzz: set TB_ADAPTERS_DIR (build/adapters) and TB_REPO_ROOT\n");
    abort();
  }
  if (tb_fixture_setup_keys(&fuzz_fx) != 0 ||
      tb_fixture_load(&fuzz_fx, name, partner, settings) != 0) {
    fprintf(stderr, "fuzz: cannot load adapter %s (see above)\n", name);
    abort();
  }
  atexit(fuzz_adapter_teardown);
}

/* A malloc'd NUL-terminated copy of data with every "@NOW@" replaced by
 * `now` (seeds stay valid whatever the clock says). */
static inline char *fuzz_subst_now(const uint8_t *data, size_t size, const char *now,
                                   size_t *out_len) {
  static const char mark[] = "@NOW@";
  size_t ml = sizeof mark - 1, nl = strlen(now), count = 0;
  for (size_t i = 0; i + ml <= size; i++)
    if (memcmp(data + i, mark, ml) == 0) count++;
  size_t cap = size + count * (nl > ml ? nl - ml : 0) + 1;
  char *out = malloc(cap);
  if (out == NULL) abort();
  size_t o = 0;
  for (size_t i = 0; i < size;) {
    if (i + ml <= size && memcmp(data + i, mark, ml) == 0) {
      memcpy(out + o, now, nl);
      o += nl;
      i += ml;
    } else {
      out[o++] = (char)data[i++];
    }
  }
  out[o] = '\0';
  *out_len = o;
  return out;
}

/* The decode contract of tbgw/adapter.h, checked on every result. */
static inline void fuzz_check_decoded(int rc, const struct tb_inbound_message *m) {
  TB_FUZZ_CHECK(rc == 0 || rc == TB_ENOMEM);
  if (rc != 0) return;
  TB_FUZZ_CHECK(memchr(m->refuse_code, '\0', sizeof m->refuse_code) != NULL);
  TB_FUZZ_CHECK(memchr(m->refuse_text, '\0', sizeof m->refuse_text) != NULL);
  TB_FUZZ_CHECK(memchr(m->message_id, '\0', sizeof m->message_id) != NULL);
  TB_FUZZ_CHECK(memchr(m->nonce, '\0', sizeof m->nonce) != NULL);
  TB_FUZZ_CHECK(memchr(m->case_id, '\0', sizeof m->case_id) != NULL);
  TB_FUZZ_CHECK(memchr(m->receipt_no, '\0', sizeof m->receipt_no) != NULL);
  if (m->kind == TB_INBOUND_REFUSED) {
    TB_FUZZ_CHECK(m->refuse_code[0] != '\0');
    TB_FUZZ_CHECK(m->canonical.data == NULL);
  } else {
    TB_FUZZ_CHECK(m->kind == TB_INBOUND_STATUS || m->kind == TB_INBOUND_CASE ||
                  m->kind == TB_INBOUND_OTHER);
    /* What the host stores must be JSON. */
    TB_FUZZ_CHECK(m->canonical.data != NULL);
    json_t *j = json_loadb((const char *)m->canonical.data, m->canonical.len, 0, NULL);
    TB_FUZZ_CHECK(j != NULL);
    json_decref(j);
  }
}

/* Builds the answer for each outcome the host could reach, then releases
 * the message: answer() must cope with whatever decode produced. */
static inline void fuzz_answer_and_release(const struct tb_inbound_request *req,
                                           struct tb_inbound_message *m) {
  const struct tb_adapter *a = fuzz_ops();
  const struct tb_host *h = fuzz_host();
  static const enum tb_inbound_outcome refused[] = {TB_INBOUND_REFUSE};
  static const enum tb_inbound_outcome decoded[] = {
      TB_INBOUND_ACCEPTED, TB_INBOUND_DUPLICATE, TB_INBOUND_STALE, TB_INBOUND_NONCE_REUSED,
      TB_INBOUND_UNKNOWN_CASE, TB_INBOUND_FAILED};
  const enum tb_inbound_outcome *list = m->kind == TB_INBOUND_REFUSED ? refused : decoded;
  size_t n = m->kind == TB_INBOUND_REFUSED ? 1 : sizeof decoded / sizeof decoded[0];
  for (size_t i = 0; i < n; i++) {
    struct tb_wire_answer ans;
    memset(&ans, 0, sizeof ans);
    char err[TB_ERRMSG_MAX] = "";
    int rc = a->answer(fuzz_state(), req, m, list[i], "370683-SL-20240506-0001", &ans, err);
    if (rc == 0) TB_FUZZ_CHECK(ans.http_status >= 200 && ans.http_status < 600);
    h->free(ans.content_type);
    h->free(ans.headers);
    h->free(ans.body.data);
  }
  a->release(fuzz_state(), m);
  h->free(m->canonical.data);
  memset(m, 0, sizeof *m);
}

/* ---- yue-json helpers ---------------------------------------------------- */

#define FUZZ_YJ_GW_APP "YY-YUNXI-001"
#define FUZZ_YJ_PEER_APP "GD-WJ-TB"

/* Headers parsed from fuzzed text: "Name: value" lines ('\r' ignored) up to
 * an empty line; the rest is the body. Names and values point into buf. */
struct fuzz_hdrs {
  char *buf;
  struct tb_header h[32];
  size_t n;
  const unsigned char *body;
  size_t body_len;
};

static inline void fuzz_hdrs_parse(struct fuzz_hdrs *x, const uint8_t *data, size_t size) {
  memset(x, 0, sizeof *x);
  x->buf = malloc(size + 1);
  if (x->buf == NULL) abort();
  memcpy(x->buf, data, size);
  x->buf[size] = '\0';
  size_t i = 0;
  while (i < size) {
    size_t e = i;
    while (e < size && x->buf[e] != '\n') e++;
    size_t le = e;
    if (le > i && x->buf[le - 1] == '\r') le--;
    if (le == i) { /* empty line: the body follows */
      i = e < size ? e + 1 : size;
      break;
    }
    x->buf[le] = '\0';
    char *colon = memchr(x->buf + i, ':', le - i);
    if (colon != NULL && x->n < sizeof x->h / sizeof x->h[0]) {
      *colon = '\0';
      char *v = colon + 1;
      while (*v == ' ') v++;
      x->h[x->n].name = x->buf + i;
      x->h[x->n].value = v;
      x->n++;
    }
    i = e < size ? e + 1 : size;
  }
  x->body = (const unsigned char *)x->buf + i;
  x->body_len = size - i;
}

/* The X-GD-* headers for body as `app` would send them, signed with `key`
 * through the host (SM2 over app\nts\nnonce\nsm3hex(body)). Strings in s. */
struct fuzz_yj_signed {
  char ts[24], nonce[40];
  char *sig; /* host memory */
  struct tb_header h[5];
  size_t n;
};

static inline void fuzz_yj_sign(struct fuzz_yj_signed *s, const char *key, const char *app,
                                int64_t now_ms, const void *body, size_t len) {
  const struct tb_host *h = fuzz_host();
  unsigned char d[32];
  char hex[65], text[256];
  memset(s, 0, sizeof *s);
  snprintf(s->ts, sizeof s->ts, "%lld", (long long)now_ms);
  /* A fixed nonce: the adapter checks only its form (the host the reuse). */
  snprintf(s->nonce, sizeof s->nonce, "0123456789abcdef0123456789abcdef");
  TB_FUZZ_CHECK(h->digest(TB_DIGEST_SM3, body, len, d) == 0);
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  snprintf(text, sizeof text, "%s\n%s\n%s\n%s", app, s->ts, s->nonce, hex);
  struct tb_bytes sig = {NULL, 0}, b64 = {NULL, 0};
  char err[TB_ERRMSG_MAX];
  TB_FUZZ_CHECK(h->sign(h->ctx, key, text, strlen(text), &sig, err) == 0);
  TB_FUZZ_CHECK(h->base64_encode(sig.data, sig.len, &b64) == 0);
  h->free(sig.data);
  s->sig = (char *)b64.data;
  s->h[0] = (struct tb_header){"Content-Type", "application/json; charset=UTF-8"};
  s->h[1] = (struct tb_header){"X-GD-AppId", app};
  s->h[2] = (struct tb_header){"X-GD-Timestamp", s->ts};
  s->h[3] = (struct tb_header){"X-GD-Nonce", s->nonce};
  s->h[4] = (struct tb_header){"X-GD-Signature", s->sig};
  s->n = 5;
}

#endif
