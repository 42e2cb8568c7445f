/*
 * Unit tests for the delivery engine (delivery/engine.h): a real store in a
 * temporary directory, a real libuv loop and worker pool, a fake adapter
 * (encode/classify in this file) and a scripted fake transport that answers
 * through uv timers. Timings are scaled down (back-off from 10 ms, circuit
 * open 150 ms) so the suite runs in a few seconds.
 */
#include <fcntl.h>
#include <openssl/sha.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/timefmt.h"
#include "delivery/engine.h"
#include "store/store.h"
#include "tbgw/error.h"

/* ---- the fake adapter ------------------------------------------------------ */

#define MAX_REC 256

struct encode_rec {
  char message_id[64];
  char case_id[65];
  char body[512];
  char sender[8], receiver[8];
  enum tb_msg_type type;
  uint32_t attempt;
  int64_t now_ms;
};

static struct encode_rec encodes[MAX_REC];
static int n_encodes;
static uv_mutex_t enc_mu; /* encode runs on worker threads */

static int fake_encode(void *state, const struct tb_outbound *msg, struct tb_wire_request *out,
                       char *err) {
  (void)state;
  uv_mutex_lock(&enc_mu);
  if (n_encodes < MAX_REC) {
    struct encode_rec *r = &encodes[n_encodes++];
    snprintf(r->message_id, sizeof r->message_id, "%s", msg->message_id);
    snprintf(r->case_id, sizeof r->case_id, "%s", msg->case_id);
    snprintf(r->body, sizeof r->body, "%.*s", (int)msg->body_len, msg->body);
    snprintf(r->sender, sizeof r->sender, "%s", msg->sender_region);
    snprintf(r->receiver, sizeof r->receiver, "%s", msg->receiver_region);
    r->type = msg->type;
    r->attempt = msg->attempt;
    r->now_ms = msg->now_ms;
  }
  uv_mutex_unlock(&enc_mu);
  if (strstr(msg->case_id, "invalid") != NULL)
    return tb_errf(err, TB_EVALIDATE, "item code cannot be expressed in example/1");
  memset(out, 0, sizeof *out);
  out->path = strdup("/recv");
  out->content_type = strdup("text/plain");
  out->body.data = (unsigned char *)strdup(msg->message_id);
  out->body.len = strlen(msg->message_id);
  return 0;
}

static const char *hdr(const struct tb_header *h, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcasecmp(h[i].name, name) == 0) return h[i].value;
  return NULL;
}

/* Body "OK" success, "DUP" duplicate, "BAD" permanent, "FRESH" retry with
 * fresh headers, anything else (or no answer, or 5xx) retry. */
static int fake_classify(void *state, const struct tb_outbound *msg,
                         const struct tb_wire_response *resp, struct tb_classification *out,
                         char *err) {
  (void)state;
  (void)err;
  memset(out, 0, sizeof *out);
  out->retry_after_ms = -1;
  if (resp->http_status == 0) {
    out->verdict = TB_VERDICT_RETRY;
    snprintf(out->code, sizeof out->code, "transport");
    snprintf(out->text, sizeof out->text, "%s", resp->transport_error);
    return 0;
  }
  const char *ra = hdr(resp->headers, resp->header_count, "Retry-After-Ms");
  if (ra) out->retry_after_ms = atoll(ra);
  out->signature_valid = 1;
  if (resp->http_status != 200) {
    out->verdict = TB_VERDICT_RETRY;
    snprintf(out->code, sizeof out->code, "HTTP %d", resp->http_status);
    return 0;
  }
  const char *b = (const char *)resp->body;
  snprintf(out->code, sizeof out->code, "%.20s", b);
  if (strcmp(b, "OK") == 0 || strcmp(b, "DUP") == 0) {
    out->verdict = b[0] == 'O' ? TB_VERDICT_SUCCESS : TB_VERDICT_DUPLICATE;
    snprintf(out->receipt_no, sizeof out->receipt_no, "R-%.40s", msg->case_id);
  } else if (strcmp(b, "BAD") == 0) {
    out->verdict = TB_VERDICT_PERMANENT;
    snprintf(out->text, sizeof out->text, "unknown item code");
  } else if (strcmp(b, "FRESH") == 0) {
    out->verdict = TB_VERDICT_RETRY_FRESH;
    snprintf(out->text, sizeof out->text, "timestamp out of window");
  } else {
    out->verdict = TB_VERDICT_RETRY;
    snprintf(out->text, sizeof out->text, "busy");
  }
  return 0;
}

static const struct tb_adapter fake_adapter = {
    .abi_major = TB_ADAPTER_ABI_MAJOR,
    .abi_minor = TB_ADAPTER_ABI_MINOR,
    .name = "fake",
    .encode = fake_encode,
    .classify = fake_classify,
};

static struct tb_host fake_host; /* only free() is used */

/* ---- the fake transport ------------------------------------------------------ */

struct script {
  int http_status;      /* 0: transport error */
  const char *body;
  int64_t retry_after;  /* ms, -1 none */
  int64_t delay_ms;     /* when the answer comes */
};

struct post_rec {
  char body[64]; /* the message id (fake encode's body) */
  int64_t at_ms;
};

struct pending {
  uv_timer_t timer;
  struct script s;
  tb_client_done_fn cb;
  void *ud;
  int probe;
  struct pending *next;
  struct fake_tr *tr;
};

struct fake_tr {
  uv_loop_t *loop;
  struct script scripts[64];
  int n_scripts, next_script;
  struct script dflt;
  int probe_failures; /* the next this many probes fail */
  int probes;
  struct post_rec posts[MAX_REC];
  int n_posts;
  struct pending *pend;
  int pools;
  int closed;
  uv_idle_t idle;
  void (*on_closed)(void *);
  void *closed_ud;
  uint64_t requests;
};

static struct fake_tr *TR;

static void pending_unlink(struct fake_tr *t, struct pending *p) {
  for (struct pending **pp = &t->pend; *pp; pp = &(*pp)->next)
    if (*pp == p) {
      *pp = p->next;
      return;
    }
}

static void pending_free(uv_handle_t *h) { free(h->data); }

static void deliver(struct pending *p, int cancelled) {
  struct tb_client_header h[1];
  char ra[32];
  size_t nh = 0;
  if (p->s.retry_after >= 0 && !cancelled) {
    snprintf(ra, sizeof ra, "%lld", (long long)p->s.retry_after);
    h[0] = (struct tb_client_header){"Retry-After-Ms", ra, 14, strlen(ra)};
    nh = 1;
  }
  const char *body = cancelled || p->probe ? "" : (p->s.body ? p->s.body : "");
  struct tb_client_result r = {
      .http_status = cancelled || p->probe ? 0 : p->s.http_status,
      .headers = h,
      .header_count = nh,
      .body = (const unsigned char *)body,
      .body_len = strlen(body),
      .transport_error = cancelled ? TB_CLIENT_ECANCELLED
                         : p->probe ? (p->s.http_status ? 0 : TB_CLIENT_ECONNECT)
                         : (p->s.http_status ? 0 : TB_CLIENT_ECONNECT),
      .error_text = cancelled ? "cancelled" : (p->s.http_status ? "" : "connection refused"),
      .duration_ns = 1000000,
      .request_sent = 1,
  };
  p->cb(&r, p->ud);
}

static void on_pending(uv_timer_t *t) {
  struct pending *p = t->data;
  pending_unlink(p->tr, p);
  deliver(p, 0);
  uv_close((uv_handle_t *)&p->timer, pending_free);
}

static void start_pending(struct fake_tr *t, struct script s, int probe, tb_client_done_fn cb,
                          void *ud) {
  struct pending *p = calloc(1, sizeof *p);
  assert_non_null(p);
  p->s = s;
  p->cb = cb;
  p->ud = ud;
  p->probe = probe;
  p->tr = t;
  p->next = t->pend;
  t->pend = p;
  uv_timer_init(t->loop, &p->timer);
  p->timer.data = p;
  uv_timer_start(&p->timer, on_pending, (uint64_t)(s.delay_ms > 0 ? s.delay_ms : 1), 0);
}

static int ft_pool_add(void *ctx, const struct tb_client_pool_config *pc, void **pool,
                       char *err) {
  struct fake_tr *t = ctx;
  if (strcmp(pc->base_url, "https://bad.example") == 0)
    return tb_errf(err, TB_ECONFIG, "ca_file: not a PEM file");
  t->pools++;
  *pool = t;
  return 0;
}

static int ft_post(void *pool, const char *path, const char *content_type, const char *headers,
                   const void *body, size_t len, tb_client_done_fn cb, void *ud, char *err) {
  struct fake_tr *t = pool;
  (void)path, (void)content_type, (void)headers, (void)err;
  if (t->closed) return TB_ECLOSED;
  struct script s = t->next_script < t->n_scripts ? t->scripts[t->next_script++] : t->dflt;
  if (t->n_posts < MAX_REC) {
    struct post_rec *r = &t->posts[t->n_posts++];
    snprintf(r->body, sizeof r->body, "%.*s", (int)len, (const char *)body);
    r->at_ms = tb_time_now_ms();
  }
  t->requests++;
  start_pending(t, s, 0, cb, ud);
  return 0;
}

static int ft_probe(void *pool, tb_client_done_fn cb, void *ud, char *err) {
  struct fake_tr *t = pool;
  (void)err;
  if (t->closed) return TB_ECLOSED;
  t->probes++;
  struct script s = {.http_status = t->probe_failures > 0 ? 0 : 200, .retry_after = -1,
                     .delay_ms = 1};
  if (t->probe_failures > 0) t->probe_failures--;
  start_pending(t, s, 1, cb, ud);
  return 0;
}

static void ft_stats(const void *pool, struct tb_client_stats *out) {
  const struct fake_tr *t = pool;
  memset(out, 0, sizeof *out);
  out->requests = t->requests;
  out->connections_opened = t->requests ? 1 : 0;
}

static void ft_idle(uv_idle_t *h) {
  struct fake_tr *t = h->data;
  uv_idle_stop(h);
  uv_close((uv_handle_t *)h, NULL);
  t->on_closed(t->closed_ud);
}

static void ft_close(void *ctx, void (*on_closed)(void *), void *ud) {
  struct fake_tr *t = ctx;
  t->closed = 1;
  /* Cancel what is in flight, after this returns (like tb_client_close). */
  while (t->pend) {
    struct pending *p = t->pend;
    t->pend = p->next;
    uv_timer_stop(&p->timer);
    p->s.delay_ms = 0;
    deliver(p, 1);
    uv_close((uv_handle_t *)&p->timer, pending_free);
  }
  t->on_closed = on_closed;
  t->closed_ud = ud;
  uv_idle_init(t->loop, &t->idle);
  t->idle.data = t;
  uv_idle_start(&t->idle, ft_idle);
}

/* ---- fixture -------------------------------------------------------------------- */

struct fx {
  char dir[256], path[300];
  uv_loop_t loop;
  struct tb_store *st;
  struct fake_tr tr;
  struct tb_delivery_transport transport;
  struct tb_config_partner pcfg[2];
  struct tb_delivery_partner parts[2];
  struct tb_delivery *eng;
  int stopped;
  int64_t grace_ms;
};

static int fx_setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%s/tbgw-engine-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof f->path, "%s/tbgw.db", f->dir);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  opt.path = f->path;
  opt.durability = TB_STORE_DURABILITY_OS;
  char err[TB_ERRMSG_MAX] = "";
  if (tb_store_open(&f->loop, &opt, &f->st, err) != 0) fail_msg("tb_store_open: %s", err);
  f->tr.loop = &f->loop;
  f->tr.dflt = (struct script){200, "OK", -1, 2};
  TR = &f->tr;
  f->transport = (struct tb_delivery_transport){&f->tr, ft_pool_add, ft_post, ft_probe, ft_stats,
                                                ft_close};
  static char *regions[] = {"370683"};
  const char *names[] = {"alpha", "beta"};
  for (int i = 0; i < 2; i++) {
    struct tb_config_partner *p = &f->pcfg[i];
    p->name = (char *)names[i];
    p->adapter = (char *)"fake";
    p->endpoint = (char *)"https://127.0.0.1:1";
    p->regions = regions;
    p->region_count = 1;
    tb_config_delivery_default(&p->delivery);
    p->delivery.backoff_initial_ms = 10;
    p->delivery.backoff_max_ms = 40;
    p->delivery.circuit_open_ms = 150;
    p->delivery.circuit_failures = 100;
    f->parts[i] = (struct tb_delivery_partner){p, &fake_adapter, NULL, &fake_host};
  }
  n_encodes = 0;
  f->grace_ms = 2000;
  *state = f;
  return 0;
}

static void on_flag(void *ud) { (*(int *)ud)++; }

/* Runs the loop until *flag is set or ms pass; returns 1 if it was set. */
static int run_until_flag(struct fx *f, int *flag, int64_t ms) {
  int64_t end = tb_time_now_ms() + ms;
  while (!*flag && tb_time_now_ms() < end) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (!*flag) uv_sleep(1);
  }
  return *flag != 0;
}

static void run_for(struct fx *f, int64_t ms) {
  int never = 0;
  run_until_flag(f, &never, ms);
}

static void stop_engine(struct fx *f) {
  if (f->eng == NULL) return;
  f->stopped = 0;
  tb_delivery_stop(f->eng, on_flag, &f->stopped);
  assert_true(run_until_flag(f, &f->stopped, 20000));
  f->eng = NULL;
}

static int fx_teardown(void **state) {
  struct fx *f = *state;
  stop_engine(f);
  int closed = 0;
  tb_store_close(f->st, on_flag, &closed);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  tb_metrics_reset();
  char p[400];
  unlink(f->path);
  snprintf(p, sizeof p, "%s-wal", f->path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", f->path);
  unlink(p);
  rmdir(f->dir);
  free(f);
  return 0;
}

static void start_engine(struct fx *f, size_t nparts) {
  struct tb_delivery_options o = {
      .loop = &f->loop,
      .store = f->st,
      .node_region = "430603",
      .partners = f->parts,
      .partner_count = nparts,
      .transport = &f->transport,
      .worker_threads = 2,
      .poll_ms = 50,
      .fresh_retry_ms = 20,
      .stop_grace_ms = f->grace_ms,
      .seed = 42,
  };
  char err[TB_ERRMSG_MAX] = "";
  if (tb_delivery_start(&o, &f->eng, err) != 0) fail_msg("tb_delivery_start: %s", err);
}

/* ---- store helpers, run to completion -------------------------------------------------- */

static void on_acc(int rc, enum tb_store_accept_outcome o, const char *a, int64_t seq,
                   const char *e, void *ud) {
  (void)o, (void)a, (void)seq, (void)e;
  int *r = ud;
  r[1] = rc;
  r[0] = 1;
}

static void accept_case(struct fx *f, const char *case_id, const char *partner) {
  char body[256], msg[96], answer[128];
  unsigned char hash[32];
  snprintf(body, sizeof body, "{\"case_id\":\"%s\",\"schema\":\"tongban.case/v1\"}", case_id);
  snprintf(msg, sizeof msg, "msg-%s", case_id);
  snprintf(answer, sizeof answer, "{\"case_id\":\"%s\"}", case_id);
  SHA256((const unsigned char *)body, strlen(body), hash);
  struct tb_store_case_new c = {.case_id = case_id, .partner = partner, .origin_region = "430603",
                                .target_region = "370683", .message_id = msg, .body_hash = hash,
                                .body = body, .body_len = strlen(body), .answer = answer,
                                .now_ms = tb_time_now_ms()};
  int r[2] = {0, -1};
  assert_int_equal(tb_store_case_accept(f->st, &c, on_acc, r), 0);
  assert_true(run_until_flag(f, &r[0], 5000));
  assert_int_equal(r[1], 0);
  tb_delivery_kick(f->eng, partner);
}

struct case_state {
  int done, rc;
  char status[32], receipt[128], last_error[512];
};

static void on_case(int rc, const struct tb_store_case_view *v, const char *e, void *ud) {
  (void)e;
  struct case_state *s = ud;
  s->done = 1;
  s->rc = rc;
  if (rc == 0) {
    snprintf(s->status, sizeof s->status, "%s", v->status);
    snprintf(s->receipt, sizeof s->receipt, "%s", v->receipt_no ? v->receipt_no : "");
    snprintf(s->last_error, sizeof s->last_error, "%s", v->last_error ? v->last_error : "");
  }
}

static struct case_state get_case(struct fx *f, const char *case_id) {
  struct case_state s;
  memset(&s, 0, sizeof s);
  assert_int_equal(tb_store_case_get(f->st, case_id, on_case, &s), 0);
  assert_true(run_until_flag(f, &s.done, 5000));
  return s;
}

/* Runs until the case has the status (or fails after ms). */
static struct case_state wait_status(struct fx *f, const char *case_id, const char *status,
                                     int64_t ms) {
  int64_t end = tb_time_now_ms() + ms;
  struct case_state s;
  for (;;) {
    s = get_case(f, case_id);
    if (strcmp(s.status, status) == 0 || tb_time_now_ms() > end) break;
    run_for(f, 5);
  }
  if (strcmp(s.status, status) != 0)
    fail_msg("case %s: status %s, want %s (last_error %s)", case_id, s.status, status,
             s.last_error);
  return s;
}

struct ev_state {
  int done;
  size_t n;
  int verified;
  char code[32];
};

static void on_ev(int rc, const struct tb_store_evidence *ev, size_t n, const char *e, void *ud) {
  (void)e;
  struct ev_state *s = ud;
  s->done = 1;
  assert_int_equal(rc, 0);
  s->n = n;
  if (n) {
    s->verified = ev[n - 1].verified;
    snprintf(s->code, sizeof s->code, "%s", ev[n - 1].code ? ev[n - 1].code : "");
  }
}

struct dlq_state {
  int done;
  size_t n;
  char code[32], error[512];
  uint32_t attempts;
};

static void on_dlq(int rc, const struct tb_store_dead_letter *dl, size_t n, const char *e,
                   void *ud) {
  (void)e;
  struct dlq_state *s = ud;
  s->done = 1;
  assert_int_equal(rc, 0);
  s->n = n;
  if (n) {
    snprintf(s->code, sizeof s->code, "%s", dl[0].last_code ? dl[0].last_code : "");
    snprintf(s->error, sizeof s->error, "%s", dl[0].last_error ? dl[0].last_error : "");
    s->attempts = dl[0].attempts;
  }
}

static struct dlq_state dlq(struct fx *f) {
  struct dlq_state s;
  memset(&s, 0, sizeof s);
  assert_int_equal(tb_store_dlq_list(f->st, NULL, 100, on_dlq, &s), 0);
  assert_true(run_until_flag(f, &s.done, 5000));
  return s;
}

static void script(struct fx *f, int status, const char *body, int64_t retry_after,
                   int64_t delay) {
  assert_true(f->tr.n_scripts < 64);
  f->tr.scripts[f->tr.n_scripts++] = (struct script){status, body, retry_after, delay};
}

static double metric(const char *series) {
  size_t len = 0;
  char *text = tb_metrics_render(&len);
  assert_non_null(text);
  double v = -1;
  char *p = strstr(text, series);
  if (p) v = strtod(p + strlen(series), NULL);
  free(text);
  return v;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_cases_are_delivered_in_acceptance_order_with_receipt_and_evidence(void **state) {
  struct fx *f = *state;
  f->pcfg[0].delivery.max_in_flight = 1;
  char ids[5][32];
  for (int i = 0; i < 5; i++) snprintf(ids[i], sizeof ids[i], "order-%d", i);
  /* Accepted before the engine starts: it finds them at start-up. */
  for (int i = 0; i < 5; i++) accept_case(f, ids[i], "alpha");
  start_engine(f, 1);
  for (int i = 0; i < 5; i++) {
    struct case_state s = wait_status(f, ids[i], "delivered", 5000);
    char want[200];
    snprintf(want, sizeof want, "R-%s", ids[i]);
    assert_string_equal(s.receipt, want);
  }
  assert_int_equal(f->tr.n_posts, 5);
  for (int i = 0; i < 5; i++) {
    char want[200];
    snprintf(want, sizeof want, "msg-%s", ids[i]);
    assert_string_equal(f->tr.posts[i].body, want); /* order and the stored message id */
  }
  assert_int_equal(f->tr.probes, 1); /* one reachability check before the first claim */
  assert_string_equal(encodes[0].sender, "430603");
  assert_string_equal(encodes[0].receiver, "370683");
  assert_int_equal(encodes[0].attempt, 1);
  struct ev_state ev = {0};
  assert_int_equal(tb_store_evidence_list(f->st, ids[0], on_ev, &ev), 0);
  assert_true(run_until_flag(f, &ev.done, 5000));
  assert_int_equal(ev.n, 1);
  assert_int_equal(ev.verified, 1);
  assert_string_equal(ev.code, "OK");
  assert_true(metric("tbgw_cases_delivered_total{partner=\"alpha\"} ") == 5);
  assert_true(metric("tbgw_delivery_attempts_total{partner=\"alpha\",outcome=\"delivered\"} ") ==
              5);
  assert_true(metric("tbgw_partner_requests_total{partner=\"alpha\"} ") == 5);
}

static void test_retry_honours_backoff_and_retry_after_with_the_same_message_id(void **state) {
  struct fx *f = *state;
  script(f, 503, "", 150, 2);   /* Retry-After 150 ms beats the 10 ms back-off */
  script(f, 200, "BUSY", -1, 2); /* then back-off only: 10..20 ms (attempt 2: 20 → 10..20) */
  start_engine(f, 1);
  accept_case(f, "retry-1", "alpha");
  wait_status(f, "retry-1", "delivered", 5000);
  assert_int_equal(f->tr.n_posts, 3);
  assert_string_equal(f->tr.posts[0].body, "msg-retry-1");
  assert_string_equal(f->tr.posts[1].body, "msg-retry-1");
  assert_string_equal(f->tr.posts[2].body, "msg-retry-1");
  int64_t gap1 = f->tr.posts[1].at_ms - f->tr.posts[0].at_ms;
  int64_t gap2 = f->tr.posts[2].at_ms - f->tr.posts[1].at_ms;
  assert_true(gap1 >= 150);
  assert_true(gap2 >= 10 && gap2 < 150);
  assert_int_equal(encodes[2].attempt, 3);
  assert_true(metric("tbgw_delivery_retries_total{partner=\"alpha\",reason=\"http\"} ") == 1);
  assert_true(metric("tbgw_delivery_retries_total{partner=\"alpha\",reason=\"partner\"} ") == 1);
}

static void test_retry_fresh_re_encodes_with_a_new_attempt_and_time_same_id(void **state) {
  struct fx *f = *state;
  script(f, 200, "FRESH", -1, 2);
  start_engine(f, 1);
  accept_case(f, "fresh-1", "alpha");
  wait_status(f, "fresh-1", "delivered", 5000);
  assert_int_equal(n_encodes, 2);
  assert_string_equal(encodes[0].message_id, encodes[1].message_id);
  assert_int_equal(encodes[0].attempt, 1);
  assert_int_equal(encodes[1].attempt, 2);
  assert_true(encodes[1].now_ms >= encodes[0].now_ms + 20); /* fresh delay 20..40 ms */
  assert_true(f->tr.posts[1].at_ms - f->tr.posts[0].at_ms < 500);
  assert_true(metric("tbgw_delivery_retries_total{partner=\"alpha\",reason=\"fresh\"} ") == 1);
}

static void test_permanent_refusal_is_a_dead_letter_with_the_partners_code(void **state) {
  struct fx *f = *state;
  script(f, 200, "BAD", -1, 2);
  start_engine(f, 1);
  accept_case(f, "perm-1", "alpha");
  struct case_state s = wait_status(f, "perm-1", "failed", 5000);
  assert_non_null(strstr(s.last_error, "unknown item code"));
  assert_int_equal(f->tr.n_posts, 1);
  struct dlq_state d = dlq(f);
  assert_int_equal(d.n, 1);
  assert_string_equal(d.code, "BAD");
  assert_true(metric("tbgw_cases_failed_total{partner=\"alpha\"} ") == 1);
}

static void test_retries_exhausted_after_max_attempts(void **state) {
  struct fx *f = *state;
  f->pcfg[0].delivery.max_attempts = 3;
  f->tr.dflt = (struct script){200, "BUSY", -1, 1};
  start_engine(f, 1);
  accept_case(f, "exhaust-1", "alpha");
  wait_status(f, "exhaust-1", "failed", 5000);
  assert_int_equal(f->tr.n_posts, 3);
  struct dlq_state d = dlq(f);
  assert_int_equal(d.n, 1);
  assert_int_equal(d.attempts, 3);
  assert_non_null(strstr(d.error, "retries exhausted after 3 attempts"));
}

static void test_encode_validation_error_fails_at_once_without_sending(void **state) {
  struct fx *f = *state;
  start_engine(f, 1);
  accept_case(f, "invalid-1", "alpha");
  struct case_state s = wait_status(f, "invalid-1", "failed", 5000);
  assert_non_null(strstr(s.last_error, "cannot be expressed"));
  assert_int_equal(f->tr.n_posts, 0);
}

static void test_circuit_opens_waits_probes_and_closes(void **state) {
  struct fx *f = *state;
  f->pcfg[0].delivery.circuit_failures = 2;
  f->pcfg[0].delivery.max_in_flight = 1;
  f->pcfg[0].delivery.backoff_initial_ms = 10;
  f->pcfg[0].delivery.backoff_max_ms = 10;
  script(f, 0, "", -1, 2); /* two transport failures open the circuit */
  script(f, 0, "", -1, 2);
  start_engine(f, 1);
  accept_case(f, "circ-1", "alpha");
  accept_case(f, "circ-2", "alpha");
  int64_t t0 = tb_time_now_ms();
  while (f->tr.n_posts < 2 && tb_time_now_ms() - t0 < 5000) run_for(f, 2);
  assert_int_equal(f->tr.n_posts, 2);
  run_for(f, 20);
  assert_true(metric("tbgw_circuit_state{partner=\"alpha\"} ") == 1);
  int probes_before = f->tr.probes;
  run_for(f, 80); /* still open (150 ms): nothing is sent though retries are due */
  assert_int_equal(f->tr.n_posts, 2);
  wait_status(f, "circ-1", "delivered", 5000);
  wait_status(f, "circ-2", "delivered", 5000);
  assert_int_equal(f->tr.probes, probes_before + 1); /* a reachability check first */
  assert_true(f->tr.posts[2].at_ms - f->tr.posts[1].at_ms >= 140);
  /* The probe message went alone: the next one only after its success. */
  assert_true(f->tr.posts[3].at_ms >= f->tr.posts[2].at_ms);
  assert_true(metric("tbgw_circuit_state{partner=\"alpha\"} ") == 0);
}

static void test_unreachable_partner_keeps_cases_queued_until_it_answers(void **state) {
  struct fx *f = *state;
  f->tr.probe_failures = 2;
  accept_case(f, "down-1", "alpha");
  start_engine(f, 1);
  run_for(f, 60);
  struct case_state s = get_case(f, "down-1");
  assert_string_equal(s.status, "queued"); /* nothing claimed, no attempt spent */
  assert_int_equal(f->tr.n_posts, 0);
  assert_true(metric("tbgw_circuit_state{partner=\"alpha\"} ") == 1);
  wait_status(f, "down-1", "delivered", 5000); /* open 150 ms, then 300 ms, then reachable */
  assert_int_equal(f->tr.probes, 3);
  assert_int_equal(encodes[0].attempt, 1);
}

static void test_stop_cancels_a_stalled_transfer_after_the_grace_and_requeues_it(void **state) {
  struct fx *f = *state;
  f->grace_ms = 100;
  script(f, 200, "OK", -1, 60000); /* never answers in time */
  start_engine(f, 1);
  accept_case(f, "stop-1", "alpha");
  int64_t t0 = tb_time_now_ms();
  while (f->tr.n_posts < 1 && tb_time_now_ms() - t0 < 5000) run_for(f, 2);
  assert_int_equal(f->tr.n_posts, 1);
  int64_t t1 = tb_time_now_ms();
  stop_engine(f);
  assert_true(tb_time_now_ms() - t1 < 2000);
  /* Back in the queue, due now, same id: a new engine delivers it. */
  struct case_state s = get_case(f, "stop-1");
  assert_string_equal(s.status, "delivering");
  memset(&f->tr, 0, sizeof f->tr);
  f->tr.loop = &f->loop;
  f->tr.dflt = (struct script){200, "DUP", -1, 2};
  f->grace_ms = 2000;
  start_engine(f, 1);
  wait_status(f, "stop-1", "delivered", 5000);
  assert_string_equal(f->tr.posts[0].body, "msg-stop-1");
}

static void test_stop_waits_for_in_flight_answers_within_the_grace(void **state) {
  struct fx *f = *state;
  script(f, 200, "OK", -1, 80);
  start_engine(f, 1);
  accept_case(f, "stop-2", "alpha");
  int64_t t0 = tb_time_now_ms();
  while (f->tr.n_posts < 1 && tb_time_now_ms() - t0 < 5000) run_for(f, 1);
  stop_engine(f);
  struct case_state s = get_case(f, "stop-2");
  assert_string_equal(s.status, "delivered");
}

static void on_claim_only(int rc, const struct tb_store_claimed *m, size_t n, int64_t due,
                          const char *e, void *ud) {
  (void)m, (void)due, (void)e;
  int *r = ud;
  r[0] = 1;
  r[1] = rc;
  r[2] = (int)n;
}

static void test_a_message_left_sending_by_a_crash_is_resent_with_its_id(void **state) {
  struct fx *f = *state;
  accept_case(f, "crash-1", "alpha");
  int r[3] = {0, -1, 0};
  assert_int_equal(tb_store_outbox_claim(f->st, "alpha", tb_time_now_ms(), 8, on_claim_only, r),
                   0);
  assert_true(run_until_flag(f, &r[0], 5000));
  assert_int_equal(r[2], 1); /* 'sending', as a crash would leave it */
  f->tr.dflt = (struct script){200, "DUP", -1, 2};
  start_engine(f, 1);
  wait_status(f, "crash-1", "delivered", 5000);
  assert_string_equal(f->tr.posts[0].body, "msg-crash-1");
  assert_int_equal(encodes[0].attempt, 2);
}

static void on_enq(int rc, int64_t id, int64_t seq, const char *e, void *ud) {
  (void)id, (void)seq, (void)e;
  int *r = ud;
  r[0] = 1;
  r[1] = rc;
}

static void test_withdraw_waits_for_its_submit_and_gets_the_receipt(void **state) {
  struct fx *f = *state;
  script(f, 200, "BUSY", -1, 2); /* the submit needs a retry first */
  start_engine(f, 1);
  accept_case(f, "wd-1", "alpha");
  int r[2] = {0, -1};
  assert_int_equal(tb_store_outbox_enqueue(f->st, "wd-1", NULL, TB_MSG_CASE_WITHDRAW, "wd-msg-1",
                                           "{\"case_id\":\"wd-1\",\"receipt_no\":null,"
                                           "\"reason\":\"moved\"}",
                                           tb_time_now_ms(), on_enq, r),
                   0);
  assert_true(run_until_flag(f, &r[0], 5000));
  assert_int_equal(r[1], 0);
  tb_delivery_kick(f->eng, "alpha");
  int64_t t0 = tb_time_now_ms();
  while (f->tr.n_posts < 3 && tb_time_now_ms() - t0 < 5000) run_for(f, 2);
  run_for(f, 30);
  assert_int_equal(f->tr.n_posts, 3);
  assert_string_equal(f->tr.posts[0].body, "msg-wd-1");
  assert_string_equal(f->tr.posts[1].body, "msg-wd-1");
  assert_string_equal(f->tr.posts[2].body, "wd-msg-1");
  assert_int_equal(encodes[2].type, TB_MSG_CASE_WITHDRAW);
  assert_non_null(strstr(encodes[2].body, "\"receipt_no\":\"R-wd-1\""));
  assert_non_null(strstr(encodes[2].body, "\"reason\":\"moved\""));
}

static void test_partners_do_not_wait_for_each_other(void **state) {
  struct fx *f = *state;
  f->tr.dflt = (struct script){200, "OK", -1, 2};
  start_engine(f, 2);
  accept_case(f, "pa-1", "alpha");
  accept_case(f, "pb-1", "beta");
  wait_status(f, "pa-1", "delivered", 5000);
  wait_status(f, "pb-1", "delivered", 5000);
  assert_int_equal(f->tr.pools, 2);
}

static void test_a_bad_pool_refuses_the_start_naming_the_partner(void **state) {
  struct fx *f = *state;
  f->pcfg[1].endpoint = (char *)"https://bad.example";
  struct tb_delivery_options o = {.loop = &f->loop, .store = f->st, .node_region = "430603",
                                  .partners = f->parts, .partner_count = 2,
                                  .transport = &f->transport};
  char err[TB_ERRMSG_MAX] = "";
  struct tb_delivery *d = NULL;
  assert_int_equal(tb_delivery_start(&o, &d, err), TB_ECONFIG);
  assert_null(d);
  assert_non_null(strstr(err, "partner \"beta\""));
  run_for(f, 30); /* the transport and workers close */
  tb_metrics_reset();
}

int main(void) {
  const char *lvl = getenv("TB_TEST_LOG");
  int level = lvl ? tb_log_level_parse(lvl) : -1;
  if (level >= 0) tb_log_setup(2, (enum tb_log_level)level);
  else tb_log_setup(open("/dev/null", O_WRONLY | O_CLOEXEC), TB_LOG_ERROR);
  uv_mutex_init(&enc_mu);
  fake_host.alloc = malloc;
  fake_host.free = free;
#define T(name) cmocka_unit_test_setup_teardown(name, fx_setup, fx_teardown)
  const struct CMUnitTest tests[] = {
      T(test_cases_are_delivered_in_acceptance_order_with_receipt_and_evidence),
      T(test_retry_honours_backoff_and_retry_after_with_the_same_message_id),
      T(test_retry_fresh_re_encodes_with_a_new_attempt_and_time_same_id),
      T(test_permanent_refusal_is_a_dead_letter_with_the_partners_code),
      T(test_retries_exhausted_after_max_attempts),
      T(test_encode_validation_error_fails_at_once_without_sending),
      T(test_circuit_opens_waits_probes_and_closes),
      T(test_unreachable_partner_keeps_cases_queued_until_it_answers),
      T(test_stop_cancels_a_stalled_transfer_after_the_grace_and_requeues_it),
      T(test_stop_waits_for_in_flight_answers_within_the_grace),
      T(test_a_message_left_sending_by_a_crash_is_resent_with_its_id),
      T(test_withdraw_waits_for_its_submit_and_gets_the_receipt),
      T(test_partners_do_not_wait_for_each_other),
      T(test_a_bad_pool_refuses_the_start_naming_the_partner),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
