/*
 * bench/limit.c — tbgw-bench-limit: per-core limits of the gateway's own
 * stage functions, run in a loop on one thread (no HTTP, no sockets).
 *
 * Accept path, per case (what POST /v1/cases does, gateway/src/api/cases.c):
 *   json_loadb(JSON_REJECT_DUPLICATES) + tb_case_validate + route lookup +
 *   json_dumps(COMPACT|SORT_KEYS) + SHA-256 + answer JSON + uuid v4,
 *   then optionally tb_store_case_accept through the real store (SQLite WAL,
 *   group commit, durability fsync on a temporary file) with a fixed number
 *   of acceptances in flight on a uv loop.
 *
 * Delivery path, per protocol: the real adapter .so (lu-xml, yue-json)
 * loaded through the real loader with the dev PKI (certs/make-dev-pki.sh in
 * a temporary directory), timing encode (translate + sign / encrypt) and
 * classify of a canned, correctly signed partner answer. The host table the
 * adapter sees is wrapped so the time spent in each host crypto service
 * (SM2 sign, SM2 encrypt, SM3, SM4, XML-DSig) is measured separately.
 *
 * Usage: tbgw-bench-limit --cases bench/out/cases.jsonl [--seconds S]
 *          [--out bench/out/limit.json] [--adapters DIR] [--repo ROOT]
 *          [--inflight 1,16,256] [--no-store] [--no-adapters]
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "adapter_fixture.h"
#include "case/validate.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "store/store.h"
#include "tbgw/error.h"

/* ---- small helpers --------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) { /* whole process: includes the store's threads */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
  fprintf(stderr, "tbgw-bench-limit: %s\n", what);
  exit(1);
}

struct text {
  char *p;
  size_t n;
};

static struct text *g_cases;
static size_t g_ncases;

static void load_cases(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) die("cannot open --cases file (run bench/gen_cases.py first)");
  size_t cap = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  while ((len = getline(&line, &lcap, f)) > 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    if (len == 0) continue;
    if (g_ncases == cap) {
      cap = cap ? cap * 2 : 1024;
      g_cases = realloc(g_cases, cap * sizeof *g_cases);
      if (g_cases == NULL) die("out of memory");
    }
    g_cases[g_ncases].p = strdup(line);
    g_cases[g_ncases].n = (size_t)len;
    g_ncases++;
  }
  free(line);
  fclose(f);
  if (g_ncases == 0) die("no cases in --cases file");
}

static void uuid_v4(char out[37]) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) abort();
  b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
           b[14], b[15]);
}

/* ---- accept path ----------------------------------------------------------- */

static struct tb_case_limits g_limits;
static struct tb_case_violations g_viol;

/* The CPU work of POST /v1/cases up to the store call. Fills *c (strings
 * owned by the caller through *doc_out / *canon_out / *answer_out) when
 * c != NULL; case_id replaced by id when id != NULL. 0 on success. */
struct prepared {
  json_t *doc;
  char *canon;
  char *answer;
  unsigned char hash[32];
  char message_id[37];
};

static int prepare(const struct text *t, const char *id, struct prepared *p) {
  json_error_t jerr;
  p->doc = json_loadb(t->p, t->n, JSON_REJECT_DUPLICATES, &jerr);
  if (p->doc == NULL) return -1;
  if (id) json_object_set_new(p->doc, "case_id", json_string(id));
  if (tb_case_validate(p->doc, &g_limits, &g_viol) != 0) {
    fprintf(stderr, "invalid case: %s %s\n", g_viol.count ? g_viol.items[0].path : "",
            g_viol.count ? g_viol.items[0].message : "");
    json_decref(p->doc);
    return -1;
  }
  const char *target = json_string_value(json_object_get(p->doc, "target_region"));
  const char *partner = target && strncmp(target, "44", 2) == 0 ? "wujiang" : "laizhou";
  p->canon = json_dumps(p->doc, JSON_COMPACT | JSON_SORT_KEYS);
  json_t *answer = json_pack("{s:s, s:s, s:s}", "case_id",
                             json_string_value(json_object_get(p->doc, "case_id")), "partner",
                             partner, "status", "queued");
  p->answer = json_dumps(answer, JSON_COMPACT);
  json_decref(answer);
  unsigned int hlen = 0;
  if (p->canon == NULL || p->answer == NULL ||
      EVP_Digest(p->canon, strlen(p->canon), p->hash, &hlen, EVP_sha256(), NULL) != 1)
    return -1;
  uuid_v4(p->message_id);
  return 0;
}

static void prepared_free(struct prepared *p) {
  free(p->canon);
  free(p->answer);
  json_decref(p->doc);
}

struct result_accept {
  double us_per_case, cases_per_s, cpu_us_per_case;
  size_t n;
};

static struct result_accept bench_prepare(double seconds) {
  struct result_accept r = {0};
  double t0 = now_s(), c0 = cpu_s(), t1;
  size_t n = 0;
  do {
    for (int k = 0; k < 64; k++) {
      struct prepared p;
      if (prepare(&g_cases[n % g_ncases], NULL, &p) != 0) die("a case does not validate");
      prepared_free(&p);
      n++;
    }
    t1 = now_s();
  } while (t1 - t0 < seconds);
  r.n = n;
  r.us_per_case = (t1 - t0) * 1e6 / (double)n;
  r.cases_per_s = (double)n / (t1 - t0);
  r.cpu_us_per_case = (cpu_s() - c0) * 1e6 / (double)n;
  return r;
}

/* json_loadb alone, to split the accept path's CPU between parsing and
 * validation (tb_case_validate decodes base64 and hashes every material). */
static double bench_parse_only(double seconds) {
  double t0 = now_s(), t1;
  size_t n = 0;
  do {
    for (int k = 0; k < 64; k++) {
      json_error_t e;
      json_t *d = json_loadb(g_cases[n % g_ncases].p, g_cases[n % g_ncases].n,
                             JSON_REJECT_DUPLICATES, &e);
      if (d == NULL) die("a case is not JSON");
      json_decref(d);
      n++;
    }
    t1 = now_s();
  } while (t1 - t0 < seconds);
  return (t1 - t0) * 1e6 / (double)n;
}

/* Store phase: `inflight` acceptances outstanding; each callback queues the
 * next until the deadline. */
struct store_run {
  uv_loop_t loop;
  struct tb_store *st;
  size_t inflight, outstanding, submitted, done, errors;
  size_t batches, batch_ops;
  uint64_t commit_ns;
  double deadline;
  unsigned run_no;
};

static void submit_one(struct store_run *s);

static void on_accept(int rc, enum tb_store_accept_outcome outcome, const char *answer,
                      int64_t seq, const char *errmsg, void *ud) {
  (void)answer;
  (void)seq;
  struct store_run *s = ud;
  s->outstanding--;
  s->done++;
  if (rc != 0 || outcome != TB_STORE_ACCEPT_NEW) {
    if (s->errors++ < 3) fprintf(stderr, "accept: rc %d outcome %d %s\n", rc, (int)outcome,
                                 errmsg ? errmsg : "");
  }
  if (now_s() < s->deadline) submit_one(s);
}

static void on_commit(int64_t last_seq, size_t batch_ops, uint64_t commit_ns, void *ud) {
  (void)last_seq;
  struct store_run *s = ud;
  s->batches++;
  s->batch_ops += batch_ops;
  s->commit_ns += commit_ns;
}

static void submit_one(struct store_run *s) {
  char id[65];
  snprintf(id, sizeof id, "430603-20240506-L%u-%09zu", s->run_no, s->submitted);
  struct prepared p;
  if (prepare(&g_cases[s->submitted % g_ncases], id, &p) != 0) die("a case does not validate");
  const char *target = json_string_value(json_object_get(p.doc, "target_region"));
  struct tb_store_case_new c = {
      .case_id = id,
      .partner = target && strncmp(target, "44", 2) == 0 ? "wujiang" : "laizhou",
      .origin_region = json_string_value(json_object_get(p.doc, "origin_region")),
      .target_region = target,
      .message_id = p.message_id,
      .body_hash = p.hash,
      .body = p.canon,
      .body_len = strlen(p.canon),
      .answer = p.answer,
      .now_ms = tb_time_now_ms(),
  };
  if (tb_store_case_accept(s->st, &c, on_accept, s) != 0) die("tb_store_case_accept refused");
  prepared_free(&p);
  s->submitted++;
  s->outstanding++;
}

struct result_store {
  size_t inflight, n;
  double cases_per_s, cpu_us_per_case, mean_batch, mean_commit_ms;
};

static void on_closed(void *ud) { *(int *)ud = 1; }

static struct result_store bench_store(const char *dir, size_t inflight, double seconds,
                                       unsigned run_no) {
  struct store_run s;
  memset(&s, 0, sizeof s);
  s.inflight = inflight;
  s.run_no = run_no;
  char path[600], err[TB_ERRMSG_MAX];
  snprintf(path, sizeof path, "%s/limit-%u.db", dir, run_no);
  if (uv_loop_init(&s.loop) != 0) die("uv_loop_init");
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  opt.path = path;
  opt.durability = TB_STORE_DURABILITY_FSYNC;
  if (tb_store_open(&s.loop, &opt, &s.st, err) != 0) die(err);
  tb_store_on_commit(s.st, on_commit, &s);
  double t0 = now_s(), c0 = cpu_s();
  s.deadline = t0 + seconds;
  for (size_t i = 0; i < inflight; i++) submit_one(&s);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  double t1 = now_s(), c1 = cpu_s();
  int closed = 0;
  tb_store_close(s.st, on_closed, &closed);
  uv_run(&s.loop, UV_RUN_DEFAULT);
  uv_loop_close(&s.loop);
  if (s.errors) fprintf(stderr, "store run %u: %zu errors\n", run_no, s.errors);
  struct result_store r = {.inflight = inflight, .n = s.done};
  r.cases_per_s = (double)s.done / (t1 - t0);
  r.cpu_us_per_case = (c1 - c0) * 1e6 / (double)s.done;
  r.mean_batch = s.batches ? (double)s.batch_ops / (double)s.batches : 0;
  r.mean_commit_ms = s.batches ? (double)s.commit_ns / (double)s.batches / 1e6 : 0;
  return r;
}

/* ---- delivery path: adapters with a timed host table ----------------------- */

enum { S_SIGN, S_VERIFY, S_PKENC, S_SYMENC, S_DIGEST, S_XSIGN, S_XVERIFY, S_COUNT };
static const char *const svc_names[S_COUNT] = {"sign", "verify", "pk_encrypt", "sym_encrypt",
                                               "digest", "xmldsig_sign", "xmldsig_verify"};
static double g_svc_s[S_COUNT];
static size_t g_svc_n[S_COUNT];
static struct tb_host g_orig; /* the real table, called by the wrappers */

#define TIMED(idx, call)            \
  do {                              \
    double t_ = now_s();            \
    int rc_ = (call);               \
    g_svc_s[idx] += now_s() - t_;   \
    g_svc_n[idx]++;                 \
    return rc_;                     \
  } while (0)

static int w_sign(void *ctx, const char *key, const void *data, size_t len, struct tb_bytes *sig,
                  char *err) {
  TIMED(S_SIGN, g_orig.sign(ctx, key, data, len, sig, err));
}
static int w_verify(void *ctx, const char *key, const void *data, size_t len, const void *sig,
                    size_t sig_len, char *err) {
  TIMED(S_VERIFY, g_orig.verify(ctx, key, data, len, sig, sig_len, err));
}
static int w_pk_encrypt(void *ctx, const char *key, const void *data, size_t len,
                        struct tb_bytes *out, char *err) {
  TIMED(S_PKENC, g_orig.pk_encrypt(ctx, key, data, len, out, err));
}
static int w_sym_encrypt(enum tb_cipher c, const unsigned char *key, size_t key_len,
                         const unsigned char *iv, size_t iv_len, const void *data, size_t len,
                         struct tb_bytes *out, char *err) {
  TIMED(S_SYMENC, g_orig.sym_encrypt(c, key, key_len, iv, iv_len, data, len, out, err));
}
static int w_digest(enum tb_digest_alg alg, const void *data, size_t len, unsigned char out[32]) {
  TIMED(S_DIGEST, g_orig.digest(alg, data, len, out));
}
static int w_xmldsig_sign(void *ctx, const char *key, const void *xml, size_t len,
                          struct tb_bytes *signed_xml, char *err) {
  TIMED(S_XSIGN, g_orig.xmldsig_sign(ctx, key, xml, len, signed_xml, err));
}
static int w_xmldsig_verify(void *ctx, const char *trusted_ca, const void *xml, size_t len,
                            char *signer, size_t signer_size, char *err) {
  TIMED(S_XVERIFY, g_orig.xmldsig_verify(ctx, trusted_ca, xml, len, signer, signer_size, err));
}

static void svc_reset(void) {
  memset(g_svc_s, 0, sizeof g_svc_s);
  memset(g_svc_n, 0, sizeof g_svc_n);
}

struct result_proto {
  const char *name;
  size_t n_encode, n_classify;
  double encode_us, classify_us, per_case_us, cases_per_s;
  double svc_us[S_COUNT]; /* per encode (encode phase) */
  double svc_classify_us[S_COUNT];
  double sm2_share; /* (sign + pk_encrypt) / encode, yue-json */
  double body_bytes;
  int classify_ok;
};

static void wire_free(const struct tb_host *h, struct tb_wire_request *w) {
  h->free(w->path);
  h->free(w->content_type);
  h->free(w->headers);
  h->free(w->body.data);
  memset(w, 0, sizeof *w);
}

/* Canonical bodies of the cases whose target region starts with prefix. */
static size_t pick_bodies(const char *prefix, char **out, size_t max) {
  size_t n = 0;
  for (size_t i = 0; i < g_ncases && n < max; i++) {
    json_error_t e;
    json_t *d = json_loadb(g_cases[i].p, g_cases[i].n, 0, &e);
    const char *t = d ? json_string_value(json_object_get(d, "target_region")) : NULL;
    if (t && strncmp(t, prefix, strlen(prefix)) == 0)
      out[n++] = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(d);
  }
  return n;
}

/* A partner answer for classify, signed as the partner would sign it. */
struct canned {
  char *body;
  size_t body_len;
  struct tb_header hdr[4];
  char ts[24], nonce[40];
  char *sig;
};

static int canned_luxml(struct tb_adapter_fixture *f, const char *mid, struct canned *c) {
  char when[24], x[1200], err[TB_ERRMSG_MAX];
  memset(c, 0, sizeof *c);
  g_orig.format_beijing(g_orig.now_ms(), when, sizeof when);
  snprintf(x, sizeof x,
           "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<TongbanAck xmlns=\"urn:sd:tongban:1.0\">"
           "<MessageId>%s</MessageId><Code>0000</Code><Message>成功</Message>"
           "<ReceiptNo>370683-SL-20240506-0001</ReceiptNo><ReceiveTime>%s</ReceiveTime>"
           "</TongbanAck>\n",
           mid, when);
  struct tb_bytes out = {NULL, 0};
  if (g_orig.xmldsig_sign(f->host.table.ctx, "laizhou-rsa", x, strlen(x), &out, err) != 0) {
    fprintf(stderr, "canned lu-xml ack: %s\n", err);
    return -1;
  }
  c->body = (char *)out.data;
  c->body_len = out.len;
  return 0;
}

static int canned_yuejson(struct tb_adapter_fixture *f, const char *mid, struct canned *c) {
  char err[TB_ERRMSG_MAX];
  memset(c, 0, sizeof *c);
  char body[400];
  snprintf(body, sizeof body,
           "{\"code\":\"0000\",\"msg\":\"成功\",\"data\":{\"msgId\":\"%s\",\"receiptNo\":"
           "\"WJ-TB-20240506-00017\"}}",
           mid);
  c->body = strdup(body);
  c->body_len = strlen(body);
  unsigned char r[16], d[32];
  g_orig.random_bytes(r, sizeof r);
  for (int i = 0; i < 16; i++) snprintf(c->nonce + 2 * i, 3, "%02x", r[i]);
  snprintf(c->ts, sizeof c->ts, "%lld", (long long)g_orig.now_ms());
  g_orig.digest(TB_DIGEST_SM3, c->body, c->body_len, d);
  char hex[65], s[300];
  for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
  snprintf(s, sizeof s, "%s\n%s\n%s\n%s", "GD-WJ-TB", c->ts, c->nonce, hex);
  struct tb_bytes sig = {0}, b64 = {0};
  if (g_orig.sign(f->host.table.ctx, "wujiang-sm2", s, strlen(s), &sig, err) != 0) {
    fprintf(stderr, "canned yue-json answer: %s\n", err);
    return -1;
  }
  g_orig.base64_encode(sig.data, sig.len, &b64);
  g_orig.free(sig.data);
  c->sig = (char *)b64.data;
  c->hdr[0] = (struct tb_header){"X-GD-AppId", "GD-WJ-TB"};
  c->hdr[1] = (struct tb_header){"X-GD-Timestamp", c->ts};
  c->hdr[2] = (struct tb_header){"X-GD-Nonce", c->nonce};
  c->hdr[3] = (struct tb_header){"X-GD-Signature", c->sig};
  return 0;
}

static struct result_proto bench_proto(struct tb_adapter_fixture *f, const char *adapter,
                                       const char *partner, const char *settings,
                                       const char *region_prefix, double seconds) {
  struct result_proto r;
  memset(&r, 0, sizeof r);
  r.name = adapter;
  char err[TB_ERRMSG_MAX];
  const char *dir = getenv("TB_ADAPTERS_DIR");
  tb_plugin_host_init(&f->host, f->keys, partner, "430603");
  g_orig = f->host.table;
  static struct tb_host wrapped;
  wrapped = f->host.table;
  wrapped.sign = w_sign;
  wrapped.verify = w_verify;
  wrapped.pk_encrypt = w_pk_encrypt;
  wrapped.sym_encrypt = w_sym_encrypt;
  wrapped.digest = w_digest;
  wrapped.xmldsig_sign = w_xmldsig_sign;
  wrapped.xmldsig_verify = w_xmldsig_verify;
  if (tb_adapter_lib_open(dir, adapter, &f->lib, err) != 0 ||
      tb_adapter_instance_init(&f->inst, &f->lib, &wrapped, settings, strlen(settings), err) != 0) {
    fprintf(stderr, "%s: %s\n", adapter, err);
    die("cannot load adapter (set --adapters to the build's adapters directory)");
  }
  const struct tb_adapter *ops = f->lib.ops;
  char *bodies[64];
  size_t nb = pick_bodies(region_prefix, bodies, 64);
  if (nb == 0) die("no case routes to this adapter's region");
  for (size_t i = 0; i < nb; i++) r.body_bytes += (double)strlen(bodies[i]) / (double)nb;

  /* encode */
  svc_reset();
  double t0 = now_s(), t1;
  size_t n = 0;
  do {
    for (int k = 0; k < 16; k++) {
      char mid[37];
      uuid_v4(mid);
      const char *b = bodies[n % nb];
      struct tb_outbound m = {.type = TB_MSG_CASE_SUBMIT, .message_id = mid,
                              .case_id = "430603-20240506-000123", .sender_region = "430603",
                              .receiver_region = region_prefix[1] == '4' ? "440203" : "370683",
                              .body = b, .body_len = strlen(b), .attempt = 1,
                              .now_ms = tb_time_now_ms()};
      struct tb_wire_request w;
      memset(&w, 0, sizeof w);
      if (ops->encode(f->inst.state, &m, &w, err) != 0) {
        fprintf(stderr, "%s encode: %s\n", adapter, err);
        die("encode failed");
      }
      wire_free(&g_orig, &w);
      n++;
    }
    t1 = now_s();
  } while (t1 - t0 < seconds);
  r.n_encode = n;
  r.encode_us = (t1 - t0) * 1e6 / (double)n;
  for (int i = 0; i < S_COUNT; i++) r.svc_us[i] = g_svc_s[i] * 1e6 / (double)n;
  r.sm2_share = strcmp(adapter, "yue-json") == 0
                    ? (g_svc_s[S_SIGN] + g_svc_s[S_PKENC]) / (t1 - t0)
                    : g_svc_s[S_XSIGN] / (t1 - t0);

  /* classify a canned valid answer (same answer each time: the adapter's
   * classify keeps no nonce state for answers) */
  char mid[37];
  uuid_v4(mid);
  struct canned c;
  int ok = strcmp(adapter, "yue-json") == 0 ? canned_yuejson(f, mid, &c) : canned_luxml(f, mid, &c);
  if (ok == 0) {
    struct tb_wire_response resp = {.http_status = 200,
                                    .headers = c.hdr,
                                    .header_count = c.sig ? 4 : 0,
                                    .body = (const unsigned char *)c.body,
                                    .body_len = c.body_len};
    struct tb_outbound m = {.type = TB_MSG_CASE_SUBMIT, .message_id = mid, .attempt = 1,
                            .case_id = "430603-20240506-000123", .sender_region = "430603",
                            .receiver_region = region_prefix[1] == '4' ? "440203" : "370683",
                            .now_ms = tb_time_now_ms()};
    struct tb_classification cl;
    if (ops->classify(f->inst.state, &m, &resp, &cl, err) == 0 &&
        (cl.verdict == TB_VERDICT_SUCCESS) && cl.signature_valid) {
      r.classify_ok = 1;
      svc_reset();
      t0 = now_s();
      n = 0;
      do {
        for (int k = 0; k < 16; k++) {
          ops->classify(f->inst.state, &m, &resp, &cl, err);
          n++;
        }
        t1 = now_s();
      } while (t1 - t0 < seconds / 2);
      r.n_classify = n;
      r.classify_us = (t1 - t0) * 1e6 / (double)n;
      for (int i = 0; i < S_COUNT; i++) r.svc_classify_us[i] = g_svc_s[i] * 1e6 / (double)n;
    } else {
      fprintf(stderr, "%s: canned answer classified as verdict %d (%s %s); classify not timed\n",
              adapter, (int)cl.verdict, cl.code, cl.text);
    }
    free(c.body);
    free(c.sig);
  }
  r.per_case_us = r.encode_us + r.classify_us;
  r.cases_per_s = 1e6 / r.per_case_us;
  for (size_t i = 0; i < nb; i++) free(bodies[i]);
  tb_adapter_instance_fini(&f->inst);
  tb_adapter_lib_close(&f->lib);
  return r;
}

/* ---- main ------------------------------------------------------------------- */

static const char *const luxml_settings =
    "{\"name\":\"laizhou\",\"adapter\":\"lu-xml\",\"regions\":[\"370683\"],"
    "\"endpoint\":\"https://127.0.0.1:9443\","
    "\"keys\":{\"sign\":\"gw-rsa\",\"peer_ca\":\"laizhou-ca\"},\"replay_window_s\":300,"
    "\"local_regions\":[\"370683\",\"370685\",\"440203\"]}";
static const char *const yuejson_settings =
    "{\"name\":\"wujiang\",\"adapter\":\"yue-json\",\"regions\":[\"440203\"],"
    "\"endpoint\":\"https://127.0.0.1:9543\",\"app_id\":\"YY-YUNXI-001\",\"peer_app_id\":"
    "\"GD-WJ-TB\",\"keys\":{\"sign\":\"gw-sm2\",\"decrypt\":\"gw-sm2\",\"peer\":\"wujiang-sm2-pub\"},"
    "\"replay_window_s\":300}";

int main(int argc, char **argv) {
  const char *cases = "bench/out/cases.jsonl", *out = "bench/out/limit.json";
  const char *inflight_list = "1,16,256";
  double seconds = 3.0;
  int do_store = 1, do_adapters = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--cases") == 0 && v) cases = argv[++i];
    else if (strcmp(a, "--out") == 0 && v) out = argv[++i];
    else if (strcmp(a, "--seconds") == 0 && v) seconds = atof(argv[++i]);
    else if (strcmp(a, "--inflight") == 0 && v) inflight_list = argv[++i];
    else if (strcmp(a, "--adapters") == 0 && v) setenv("TB_ADAPTERS_DIR", argv[++i], 1);
    else if (strcmp(a, "--repo") == 0 && v) setenv("TB_REPO_ROOT", argv[++i], 1);
    else if (strcmp(a, "--no-store") == 0) do_store = 0;
    else if (strcmp(a, "--no-adapters") == 0) do_adapters = 0;
    else {
      fprintf(stderr,
              "usage: %s [--cases FILE] [--out FILE] [--seconds S] [--inflight 1,16,256]\n"
              "          [--adapters DIR] [--repo ROOT] [--no-store] [--no-adapters]\n",
              argv[0]);
      return 2;
    }
  }
  load_cases(cases);
  tb_log_setup(2, TB_LOG_WARN); /* the store logs migrations and checkpoints at info */
  tb_case_limits_default(&g_limits);
  char err[TB_ERRMSG_MAX];
  if (tb_crypto_global_init(err) != 0) die(err);

  json_t *J = json_object();
  json_object_set_new(J, "cases", json_integer((json_int_t)g_ncases));
  json_object_set_new(J, "avg_case_bytes",
                      json_integer((json_int_t)(g_cases[0].n + g_cases[g_ncases - 1].n) / 2));
  json_object_set_new(J, "seconds_per_phase", json_real(seconds));

  printf("tbgw-bench-limit: one thread, %zu distinct cases (~%zu bytes), %.1f s per phase\n\n",
         g_ncases, g_cases[0].n, seconds);
  printf("%-46s %12s %12s %14s\n", "accept path (stage functions)", "us/case", "cases/s",
         "cpu us/case");

  struct result_accept pa = bench_prepare(seconds);
  printf("%-46s %12.1f %12.0f %14.1f\n", "parse+validate+canon+sha256", pa.us_per_case,
         pa.cases_per_s, pa.cpu_us_per_case);
  double parse_us = bench_parse_only(seconds / 2);
  printf("%-46s %12.1f %12.0f %14s\n", "  of which json_loadb alone", parse_us, 1e6 / parse_us, "");
  json_object_set_new(J, "accept_parse_only_us", json_real(parse_us));
  json_object_set_new(J, "accept_prepare",
                      json_pack("{s:f, s:f, s:f, s:I}", "us_per_case", pa.us_per_case,
                                "cases_per_s", pa.cases_per_s, "cpu_us_per_case",
                                pa.cpu_us_per_case, "n", (json_int_t)pa.n));

  if (do_store) {
    char dir[] = "/var/tmp/tbgw-bench-limit-XXXXXX"; /* real disk, not tmpfs */
    if (mkdtemp(dir) == NULL) die("mkdtemp");
    json_t *arr = json_array();
    char list[128];
    snprintf(list, sizeof list, "%s", inflight_list);
    unsigned run = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
      size_t inflight = (size_t)strtoul(tok, NULL, 10);
      if (inflight == 0) continue;
      struct result_store rs = bench_store(dir, inflight, seconds, run++);
      char label[80];
      snprintf(label, sizeof label, "+ store fsync, %zu in flight (batch %.1f, %.2f ms)",
               inflight, rs.mean_batch, rs.mean_commit_ms);
      printf("%-46s %12.1f %12.0f %14.1f\n", label, 1e6 / rs.cases_per_s, rs.cases_per_s,
             rs.cpu_us_per_case);
      json_array_append_new(
          arr, json_pack("{s:I, s:f, s:f, s:f, s:f, s:I}", "inflight", (json_int_t)inflight,
                         "cases_per_s", rs.cases_per_s, "cpu_us_per_case", rs.cpu_us_per_case,
                         "mean_batch_ops", rs.mean_batch, "mean_commit_ms", rs.mean_commit_ms,
                         "n", (json_int_t)rs.n));
    }
    json_object_set_new(J, "accept_store", arr);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  }

  if (do_adapters) {
    struct tb_adapter_fixture f;
    if (tb_fixture_setup_keys(&f) != 0) die("dev PKI / keystore setup failed (--repo ROOT?)");
    struct result_proto rp[2];
    rp[0] = bench_proto(&f, "lu-xml", "laizhou", luxml_settings, "37", seconds);
    rp[1] = bench_proto(&f, "yue-json", "wujiang", yuejson_settings, "44", seconds);
    /* teardown without the instance (already closed) */
    tb_keystore_free(f.keys);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f.pki);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", f.pki);

    printf("\n%-12s %10s %12s %12s %12s %12s\n", "delivery", "body B", "encode us",
           "classify us", "us/case", "cases/s");
    json_t *jp = json_object();
    for (int i = 0; i < 2; i++) {
      printf("%-12s %10.0f %12.1f %12.1f %12.1f %12.0f\n", rp[i].name, rp[i].body_bytes,
             rp[i].encode_us, rp[i].classify_us, rp[i].per_case_us, rp[i].cases_per_s);
      json_t *svc = json_object(), *svcc = json_object();
      for (int k = 0; k < S_COUNT; k++) {
        if (rp[i].svc_us[k] > 0) json_object_set_new(svc, svc_names[k], json_real(rp[i].svc_us[k]));
        if (rp[i].svc_classify_us[k] > 0)
          json_object_set_new(svcc, svc_names[k], json_real(rp[i].svc_classify_us[k]));
      }
      json_object_set_new(
          jp, rp[i].name,
          json_pack("{s:f, s:f, s:f, s:f, s:f, s:o, s:o, s:f, s:b}", "body_bytes",
                    rp[i].body_bytes, "encode_us", rp[i].encode_us, "classify_us",
                    rp[i].classify_us, "us_per_case", rp[i].per_case_us, "cases_per_s",
                    rp[i].cases_per_s, "encode_host_us", svc, "classify_host_us", svcc,
                    "crypto_share_of_encode", rp[i].sm2_share, "classify_timed",
                    rp[i].classify_ok));
    }
    json_object_set_new(J, "delivery", jp);
    printf("\nhost crypto inside encode (us per message):\n");
    for (int i = 0; i < 2; i++) {
      printf("  %-10s", rp[i].name);
      for (int k = 0; k < S_COUNT; k++)
        if (rp[i].svc_us[k] > 0) printf(" %s %.1f", svc_names[k], rp[i].svc_us[k]);
      printf("\n");
    }
    printf("  yue-json: SM2 (sign + pk_encrypt) = %.0f%% of encode; + classify verify: SM2 = "
           "%.0f%% of encode+classify\n",
           rp[1].sm2_share * 100,
           (rp[1].svc_us[S_SIGN] + rp[1].svc_us[S_PKENC] + rp[1].svc_classify_us[S_VERIFY]) /
               rp[1].per_case_us * 100);
    printf("  lu-xml:   XML-DSig sign = %.0f%% of encode\n", rp[0].sm2_share * 100);
  }

  FILE *fo = fopen(out, "w");
  if (fo == NULL || json_dumpf(J, fo, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
    fprintf(stderr, "cannot write %s\n", out);
  } else {
    fputc('\n', fo);
    printf("\nwrote %s\n", out);
  }
  if (fo) fclose(fo);
  json_decref(J);
  for (size_t i = 0; i < g_ncases; i++) free(g_cases[i].p);
  free(g_cases);
  return 0;
}
