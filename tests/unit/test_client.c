/*
 * test_client.c — the outbound HTTPS client (libcurl multi on libuv) against
 * a real TLS server over loopback.
 *
 * The client runs on a uv loop in the main thread (where cmocka's asserts
 * belong); the server (tests/support/https_peer.h) runs on its own threads
 * and counts TCP connections, handshakes and concurrent requests, which is
 * how connection reuse and the in-flight limit are proved from the outside.
 * Certificates come from certs/make-dev-pki.sh in a temporary directory:
 * the server is "laizhou" (its CA issued the server certificate), and we
 * present the gateway's client certificate. Every test ends with
 * tb_client_close and uv_loop_close() == 0, which proves every uv handle was
 * closed; ASan proves nothing leaked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/client.h"
#include "https_peer.h"
#include "tbgw/error.h"

/* ---- PKI (once per run) ------------------------------------------------- */

static char g_pki[512];
static char g_srv_cert[600], g_srv_key[600], g_srv_ca[600], g_other_ca[600];
static char g_gw_cert[600], g_gw_key[600], g_gw_ca[600];

static int group_setup(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  const char *tmp = getenv("TMPDIR");
  const char *root = getenv("TB_REPO_ROOT");
  snprintf(g_pki, sizeof g_pki, "%s/tbgw-client-XXXXXX", tmp ? tmp : "/tmp");
  if (mkdtemp(g_pki) == NULL) return -1;
  char cmd[1400];
  snprintf(cmd, sizeof cmd, "'%s/certs/make-dev-pki.sh' '%s' >/dev/null", root ? root : ".", g_pki);
  if (system(cmd) != 0) {
    fprintf(stderr, "test_client: make-dev-pki.sh failed (is TB_REPO_ROOT set?)\n");
    return -1;
  }
  snprintf(g_srv_cert, sizeof g_srv_cert, "%s/partners/laizhou/tls-server.pem", g_pki);
  snprintf(g_srv_key, sizeof g_srv_key, "%s/partners/laizhou/tls-server.key", g_pki);
  snprintf(g_srv_ca, sizeof g_srv_ca, "%s/partners/laizhou/ca.pem", g_pki);
  snprintf(g_other_ca, sizeof g_other_ca, "%s/partners/zhaoyuan/ca.pem", g_pki);
  snprintf(g_gw_cert, sizeof g_gw_cert, "%s/gateway/tls-client.pem", g_pki);
  snprintf(g_gw_key, sizeof g_gw_key, "%s/gateway/tls-client.key", g_pki);
  snprintf(g_gw_ca, sizeof g_gw_ca, "%s/gateway/ca.pem", g_pki);
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_pki);
  return system(cmd) == 0 ? 0 : -1;
}

/* ---- loop fixture ------------------------------------------------------- */

struct fx {
  uv_loop_t loop;
  struct tb_client *client;
  int closed;
  int client_closing;
  struct https_peer peer;
  int peer_on;
  char url[64];
};

static uv_loop_t *g_loop; /* the current test's loop */

/* Every callback that moves a counter run_until waits on calls this: the
 * loop then returns from its iteration instead of sleeping in poll until the
 * next timer (the event it waited for has already happened). */
static void wake(void) {
  if (g_loop != NULL) uv_stop(g_loop);
}

static void on_watchdog(uv_timer_t *t) { *(int *)t->data = 1; }

/* Runs the loop until *counter >= target or ms elapse; 1 if reached. */
static int run_until(uv_loop_t *loop, const int *counter, int target, uint64_t ms) {
  uv_timer_t wd;
  int expired = 0;
  uv_timer_init(loop, &wd);
  wd.data = &expired;
  uv_timer_start(&wd, on_watchdog, ms, 0);
  while (*counter < target && !expired) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&wd, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *counter >= target;
}

static void fx_init(struct fx *f, const struct https_peer_config *pc) {
  char err[TB_ERRMSG_MAX] = "";
  memset(f, 0, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  g_loop = &f->loop;
  int rc = tb_client_new(&f->loop, &f->client, err);
  if (rc != 0) fprintf(stderr, "tb_client_new: %s\n", err);
  assert_int_equal(rc, 0);
  if (pc != NULL) {
    assert_int_equal(https_peer_start(&f->peer, pc), 0);
    f->peer_on = 1;
    snprintf(f->url, sizeof f->url, "https://127.0.0.1:%d", f->peer.port);
  }
}

static void on_client_closed(void *ud) {
  ((struct fx *)ud)->closed++;
  wake();
}

static void fx_close_client(struct fx *f) {
  if (f->client_closing) return;
  f->client_closing = 1;
  tb_client_close(f->client, on_client_closed, f);
}

static void fx_fini(struct fx *f) {
  fx_close_client(f);
  assert_true(run_until(&f->loop, &f->closed, 1, 10000));
  assert_int_equal(f->closed, 1);
  /* Every handle of the client is closed: the loop closes cleanly. */
  assert_int_equal(uv_loop_close(&f->loop), 0);
  g_loop = NULL;
  if (f->peer_on) https_peer_stop(&f->peer);
}


static struct https_peer_config server_cfg(const char *client_ca, int tls12_only) {
  struct https_peer_config c = {.cert_file = g_srv_cert, .key_file = g_srv_key,
                                .client_ca_file = client_ca, .tls12_only = tls12_only};
  return c;
}

static struct tb_client_pool_config pool_cfg(const struct fx *f, int with_cert) {
  struct tb_client_pool_config pc = {.name = "laizhou", .base_url = f->url, .ca_file = g_srv_ca};
  if (with_cert) {
    pc.cert_file = g_gw_cert;
    pc.key_file = g_gw_key;
  }
  pc.connect_timeout_ms = 3000;
  pc.timeout_ms = 10000;
  return pc;
}

static struct tb_client_pool *add_pool(struct fx *f, const struct tb_client_pool_config *pc) {
  char err[TB_ERRMSG_MAX] = "";
  struct tb_client_pool *p = NULL;
  int rc = tb_client_pool_add(f->client, pc, &p, err);
  if (rc != 0) fprintf(stderr, "pool_add: %s\n", err);
  assert_int_equal(rc, 0);
  return p;
}

/* ---- result capture ------------------------------------------------------ */

static int g_done; /* callbacks run, over all requests of a test */

struct call {
  int calls;
  int status, terr, reused, sent;
  uint64_t duration_ns;
  char text[512];
  char headers[4096]; /* "name: value\n" lines */
  size_t header_count;
  unsigned char *body;
  size_t body_len;
  /* for close tests */
  struct tb_client_pool *pool;
  int post_in_cb_rc;
};

static void on_done(const struct tb_client_result *r, void *ud) {
  struct call *c = ud;
  c->calls++;
  g_done++;
  wake();
  c->status = r->http_status;
  c->terr = r->transport_error;
  c->reused = r->reused_connection;
  c->sent = r->request_sent;
  c->duration_ns = r->duration_ns;
  snprintf(c->text, sizeof c->text, "%s", r->error_text);
  c->headers[0] = '\0';
  c->header_count = r->header_count;
  for (size_t i = 0; i < r->header_count; i++) {
    size_t l = strlen(c->headers);
    snprintf(c->headers + l, sizeof c->headers - l, "%s: %s\n", r->headers[i].name,
             r->headers[i].value);
  }
  assert_non_null(r->body);
  assert_int_equal(r->body[r->body_len], 0); /* NUL-terminated for convenience */
  free(c->body);
  c->body = malloc(r->body_len + 1);
  memcpy(c->body, r->body, r->body_len);
  c->body_len = r->body_len;
  if (c->pool != NULL)
    c->post_in_cb_rc = tb_client_post(c->pool, "/echo", "text/plain", NULL, "x", 1, on_done, c, NULL);
}

static int has_header(const struct call *c, const char *line) {
  return strstr(c->headers, line) != NULL;
}

static void post_ok(struct tb_client_pool *p, const char *path, const void *body, size_t len,
                    struct call *c) {
  char err[TB_ERRMSG_MAX] = "";
  int rc = tb_client_post(p, path, "application/xml; charset=UTF-8", NULL, body, len, on_done, c,
                          err);
  if (rc != 0) fprintf(stderr, "post: %s\n", err);
  assert_int_equal(rc, 0);
}

/* ---- tests -------------------------------------------------------------- */

static void post_delivers_body_and_headers_both_ways(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 1);
  pc.base_url = NULL;
  char base[96];
  snprintf(base, sizeof base, "%s/", f.url); /* trailing slash is dropped */
  pc.base_url = base;
  struct tb_client_pool *p = add_pool(&f, &pc);
  g_done = 0;

  /* Binary body with NUL bytes, 5000 bytes. */
  unsigned char body[5000];
  for (size_t i = 0; i < sizeof body; i++) body[i] = (unsigned char)(i * 7);
  struct call c1 = {0}, c2 = {0}, c3 = {0};
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_client_post(p, "/echo", "application/xml; charset=UTF-8",
                                  "X-Test: hello world\r\nX-Other: 2\r\n", body, sizeof body,
                                  on_done, &c1, err),
                   0);
  assert_int_equal(c1.calls, 0); /* never before tb_client_post returns */
  assert_true(run_until(&f.loop, &g_done, 1, 10000));
  assert_int_equal(c1.calls, 1);
  assert_int_equal(c1.terr, 0);
  assert_int_equal(c1.status, 200);
  assert_int_equal(c1.body_len, sizeof body);
  assert_memory_equal(c1.body, body, sizeof body);
  assert_true(has_header(&c1, "X-Echo-Method: POST\n"));
  assert_true(has_header(&c1, "X-Echo-Content-Type: application/xml; charset=UTF-8\n"));
  assert_true(has_header(&c1, "X-Echo-Test: hello world\n"));
  assert_true(has_header(&c1, "X-Echo-Len: 5000\n"));
  assert_true(c1.sent);
  assert_string_equal(c1.text, "");
  pthread_mutex_lock(&f.peer.mu);
  assert_string_equal(f.peer.last_method, "POST");
  assert_string_equal(f.peer.last_path, "/echo");
  assert_string_equal(f.peer.last_x_test, "hello world");
  assert_int_equal(f.peer.last_body_len, sizeof body);
  assert_memory_equal(f.peer.last_body, body, sizeof body);
  pthread_mutex_unlock(&f.peer.mu);

  /* A 503 is an answer, not a transport error; its headers come through. */
  post_ok(p, "/status?code=503", "x", 1, &c2);
  /* Only the final answer's headers are kept after a 100 Continue block. */
  post_ok(p, "/continue", "x", 1, &c3);
  assert_true(run_until(&f.loop, &g_done, 3, 10000));
  assert_int_equal(c2.terr, 0);
  assert_int_equal(c2.status, 503);
  assert_true(has_header(&c2, "Retry-After: 7\n"));
  assert_memory_equal(c2.body, "nope\n", 5);
  assert_int_equal(c3.terr, 0);
  assert_int_equal(c3.status, 200);
  assert_true(has_header(&c3, "X-Final: yes\n"));
  assert_false(has_header(&c3, "X-Interim"));

  /* An empty body is fine too. */
  struct call c4 = {0};
  post_ok(p, "/echo", NULL, 0, &c4);
  assert_true(run_until(&f.loop, &g_done, 4, 10000));
  assert_int_equal(c4.status, 200);
  assert_int_equal(c4.body_len, 0);
  assert_true(has_header(&c4, "X-Echo-Len: 0\n"));
  free(c1.body), free(c2.body), free(c3.body), free(c4.body);
  fx_fini(&f);
}

struct chain {
  struct tb_client_pool *p;
  int left, done, errors, reused;
};

static void on_chain(const struct tb_client_result *r, void *ud) {
  struct chain *ch = ud;
  ch->done++;
  wake();
  if (r->transport_error != 0 || r->http_status != 200 || r->body_len != 4000) ch->errors++;
  if (r->reused_connection) ch->reused++;
  if (--ch->left > 0) {
    static unsigned char body[4000];
    if (tb_client_post(ch->p, "/echo", "application/json;charset=UTF-8", NULL, body, sizeof body,
                       on_chain, ch, NULL) != 0)
      ch->errors++;
  }
}

static void connections_are_reused(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(g_gw_ca, 0); /* full mTLS, as with lu-xml */
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 1);
  pc.max_in_flight = 8;
  pc.max_connections = 4;
  struct tb_client_pool *p = add_pool(&f, &pc);

  /* 100 sequential requests, each posted from the previous one's callback. */
  struct chain ch = {.p = p, .left = 100};
  static unsigned char body[4000];
  assert_int_equal(tb_client_post(p, "/echo", "application/json;charset=UTF-8", NULL, body,
                                  sizeof body, on_chain, &ch, NULL),
                   0);
  assert_true(run_until(&f.loop, &ch.done, 100, 30000));
  assert_int_equal(ch.errors, 0);
  int seq_accepts = atomic_load(&f.peer.accepts);
  struct tb_client_stats st;
  tb_client_pool_stats(p, &st);
  fprintf(stderr, "  sequential: 100 requests, %d TCP connections accepted, %d reused, "
          "%llu connections opened (curl)\n",
          seq_accepts, ch.reused, (unsigned long long)st.connections_opened);
  assert_true(seq_accepts >= 1 && seq_accepts <= 4);
  assert_true(ch.reused >= 99);
  assert_int_equal(st.requests, 100);
  assert_int_equal(st.completed, 100);
  assert_int_equal(st.reused, (uint64_t)ch.reused);
  assert_int_equal(st.connections_opened, (uint64_t)seq_accepts);
  assert_int_equal(st.connections_discarded, 0); /* a healthy partner leaves nothing unread */

  /* 50 at once: at most max_connections connections, all reused after. */
  static struct call calls[50];
  memset(calls, 0, sizeof calls);
  g_done = 0;
  for (int i = 0; i < 50; i++) post_ok(p, "/echo", body, sizeof body, &calls[i]);
  tb_client_pool_stats(p, &st);
  assert_int_equal(st.in_flight, 4); /* min(max_in_flight 8, max_connections 4) */
  assert_int_equal(st.queued, 46);
  assert_true(run_until(&f.loop, &g_done, 50, 30000));
  int reused = 0;
  for (int i = 0; i < 50; i++) {
    if (calls[i].status != 200) fprintf(stderr, "  call %d: %s: %s\n", i, tb_client_error_name(calls[i].terr), calls[i].text);
    assert_int_equal(calls[i].calls, 1);
    assert_int_equal(calls[i].status, 200);
    reused += calls[i].reused;
    free(calls[i].body);
  }
  int accepts = atomic_load(&f.peer.accepts);
  tb_client_stats(f.client, &st);
  fprintf(stderr, "  concurrent: 50 requests, %d TCP connections in total (max 4), %d reused; "
          "client: %llu requests, %llu connections opened, %llu reused, %llu easy handles\n",
          accepts, reused, (unsigned long long)st.requests,
          (unsigned long long)st.connections_opened, (unsigned long long)st.reused,
          (unsigned long long)st.handles_created);
  assert_true(accepts <= 4);
  assert_int_equal(atomic_load(&f.peer.requests), 150);
  assert_true(atomic_load(&f.peer.max_active) <= 4);
  assert_int_equal(st.connections_opened, (uint64_t)accepts);
  assert_int_equal(st.requests, 150);
  assert_true(st.reused >= 150 - 4);
  assert_true(st.handles_created <= 4); /* easy handles are recycled */
  assert_int_equal(st.connections_discarded, 0);
  fx_fini(&f);
}

static void in_flight_limit_is_respected(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 0);
  pc.max_in_flight = 3;
  pc.max_connections = 8;
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call calls[12];
  memset(calls, 0, sizeof calls);
  g_done = 0;
  for (int i = 0; i < 12; i++) post_ok(p, "/delay?ms=150", "x", 1, &calls[i]);
  struct tb_client_stats st;
  tb_client_pool_stats(p, &st);
  assert_int_equal(st.in_flight, 3);
  assert_int_equal(st.queued, 9);
  assert_true(run_until(&f.loop, &g_done, 12, 20000));
  for (int i = 0; i < 12; i++) {
    assert_int_equal(calls[i].calls, 1);
    assert_int_equal(calls[i].status, 200);
    free(calls[i].body);
  }
  fprintf(stderr, "  max concurrent requests seen by the server: %d (limit 3)\n",
          atomic_load(&f.peer.max_active));
  assert_int_equal(atomic_load(&f.peer.max_active), 3);
  assert_true(atomic_load(&f.peer.accepts) <= 3);
  fx_fini(&f);
}

static void queue_cap_refuses_with_ebusy(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 0);
  pc.max_in_flight = 1;
  pc.max_queued = 2;
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call calls[3];
  memset(calls, 0, sizeof calls);
  g_done = 0;
  for (int i = 0; i < 3; i++) post_ok(p, "/echo", "x", 1, &calls[i]);
  char err[TB_ERRMSG_MAX] = "";
  struct call extra = {0};
  assert_int_equal(tb_client_post(p, "/echo", "text/plain", NULL, "x", 1, on_done, &extra, err),
                   TB_EBUSY);
  assert_non_null(strstr(err, "queued"));
  assert_true(run_until(&f.loop, &g_done, 3, 10000));
  assert_int_equal(extra.calls, 0);
  for (int i = 0; i < 3; i++) free(calls[i].body);
  fx_fini(&f);
}

static void mutual_tls(void **state) {
  (void)state;
  for (int tls12 = 0; tls12 <= 1; tls12++) {
    struct fx f;
    struct https_peer_config sc = server_cfg(g_gw_ca, tls12);
    fx_init(&f, &sc);
    struct tb_client_pool_config with = pool_cfg(&f, 1);
    struct tb_client_pool_config without = pool_cfg(&f, 0);
    without.name = "laizhou-nocert";
    struct tb_client_pool *pw = add_pool(&f, &with);
    struct tb_client_pool *po = add_pool(&f, &without);
    struct call a = {0}, b = {0};
    g_done = 0;
    post_ok(pw, "/echo", "<a/>", 4, &a);
    post_ok(po, "/echo", "<a/>", 4, &b);
    assert_true(run_until(&f.loop, &g_done, 2, 10000));
    assert_int_equal(a.terr, 0);
    assert_int_equal(a.status, 200);
    fprintf(stderr, "  %s, no client certificate: %s: %s\n", tls12 ? "TLS 1.2" : "TLS 1.3",
            tb_client_error_name(b.terr), b.text);
    assert_int_equal(b.terr, TB_CLIENT_ETLS);
    assert_int_equal(b.status, 0);
    /* The server counts its failed handshake just after sending the alert. */
    for (int i = 0; i < 200 && atomic_load(&f.peer.handshake_failures) < 1; i++) nanosleep(&(struct timespec){0, 5000000L}, NULL);
    assert_true(atomic_load(&f.peer.handshake_failures) >= 1);
    assert_int_equal(atomic_load(&f.peer.requests), 1); /* only the one with a certificate */
    free(a.body), free(b.body);
    fx_fini(&f);
  }
}

static void server_certificate_from_another_ca_is_refused(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 1);
  pc.ca_file = g_other_ca; /* zhaoyuan's CA did not issue laizhou's certificate */
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call c = {0};
  g_done = 0;
  post_ok(p, "/echo", "x", 1, &c);
  assert_true(run_until(&f.loop, &g_done, 1, 10000));
  fprintf(stderr, "  wrong CA: %s: %s\n", tb_client_error_name(c.terr), c.text);
  assert_int_equal(c.terr, TB_CLIENT_ETLS);
  assert_int_equal(c.status, 0);
  assert_int_equal(c.sent, 0);
  assert_int_equal(atomic_load(&f.peer.requests), 0);
  free(c.body);
  fx_fini(&f);
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  bind(fd, (struct sockaddr *)&a, sizeof a);
  getsockname(fd, (struct sockaddr *)&a, &al);
  close(fd);
  return ntohs(a.sin_port);
}

static void connection_refused_fails_fast(void **state) {
  (void)state;
  struct fx f;
  fx_init(&f, NULL);
  snprintf(f.url, sizeof f.url, "https://127.0.0.1:%d", free_port());
  struct tb_client_pool_config pc = pool_cfg(&f, 1);
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call c = {0};
  g_done = 0;
  uint64_t t0 = uv_hrtime();
  post_ok(p, "/echo", "x", 1, &c);
  assert_true(run_until(&f.loop, &g_done, 1, 10000));
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  fprintf(stderr, "  refused after %llu ms: %s: %s\n", (unsigned long long)ms,
          tb_client_error_name(c.terr), c.text);
  assert_int_equal(c.terr, TB_CLIENT_ECONNECT);
  assert_int_equal(c.sent, 0);
  assert_int_equal(c.reused, 0);
  struct tb_client_stats st;
  tb_client_pool_stats(p, &st);
  assert_int_equal(st.failed, 1);
  assert_int_equal(st.reused, 0);
  assert_int_equal(st.connections_opened, 0);
  assert_true(ms < 1000);
  free(c.body);
  fx_fini(&f);
}

static void slow_server_times_out_at_the_total_timeout(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 0);
  pc.timeout_ms = 400;
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call c = {0};
  g_done = 0;
  post_ok(p, "/delay?ms=5000", "x", 1, &c);
  assert_true(run_until(&f.loop, &g_done, 1, 10000));
  uint64_t ms = c.duration_ns / 1000000;
  fprintf(stderr, "  timeout after %llu ms: %s\n", (unsigned long long)ms, c.text);
  assert_int_equal(c.terr, TB_CLIENT_ETIMEOUT);
  assert_int_equal(c.sent, 1); /* the partner may have acted on it */
  assert_true(ms >= 390 && ms < 2000);
  free(c.body);
  fx_fini(&f);
}

static void connection_cut_mid_answer_is_a_reset(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 0);
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call c = {0}, d = {0};
  g_done = 0;
  post_ok(p, "/cut", "x", 1, &c);
  assert_true(run_until(&f.loop, &g_done, 1, 10000));
  fprintf(stderr, "  cut: %s: %s (status %d, %zu body bytes)\n", tb_client_error_name(c.terr),
          c.text, c.status, c.body_len);
  assert_int_equal(c.terr, TB_CLIENT_ERESET);
  assert_int_equal(c.status, 200); /* the partial answer's status is reported */
  /* The pool recovers: the next request opens a new connection. */
  post_ok(p, "/echo", "y", 1, &d);
  assert_true(run_until(&f.loop, &g_done, 2, 10000));
  assert_int_equal(d.terr, 0);
  assert_int_equal(d.reused, 0);
  free(c.body), free(d.body);
  fx_fini(&f);
}

static void answers_over_the_caps_are_too_large(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 0);
  pc.max_response_bytes = 65536;
  pc.max_header_count = 20;
  pc.max_in_flight = 1;
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call exact = {0}, big = {0}, chunked = {0}, chunked_ok = {0}, hdrs = {0}, hdrs_ok = {0};
  g_done = 0;
  post_ok(p, "/big?n=65536", "x", 1, &exact);
  post_ok(p, "/big?n=200000", "x", 1, &big);
  post_ok(p, "/chunked?n=200000", "x", 1, &chunked);
  post_ok(p, "/chunked?n=60000", "x", 1, &chunked_ok);
  post_ok(p, "/headers?n=50", "x", 1, &hdrs);
  post_ok(p, "/headers?n=10", "x", 1, &hdrs_ok);
  assert_true(run_until(&f.loop, &g_done, 6, 20000));
  assert_int_equal(exact.terr, 0);
  assert_int_equal(exact.body_len, 65536);
  fprintf(stderr, "  content-length over cap: %s\n  chunked over cap: %s\n  headers: %s\n",
          big.text, chunked.text, hdrs.text);
  assert_int_equal(big.terr, TB_CLIENT_ETOO_LARGE);
  assert_int_equal(chunked.terr, TB_CLIENT_ETOO_LARGE);
  assert_true(chunked.body_len <= 65536);
  assert_int_equal(chunked_ok.terr, 0);
  assert_int_equal(chunked_ok.body_len, 60000);
  assert_int_equal(hdrs.terr, TB_CLIENT_ETOO_LARGE);
  assert_int_equal(hdrs_ok.terr, 0);
  assert_int_equal(hdrs_ok.header_count, 11);
  assert_true(has_header(&hdrs_ok, "X-H-9: value 9\n"));
  free(exact.body), free(big.body), free(chunked.body), free(chunked_ok.body);
  free(hdrs.body), free(hdrs_ok.body);
  fx_fini(&f);
}

/* ---- a partner that answers twice ---------------------------------------- */

/* Posts request k (X-Test: id-k, body "body-k") and runs until it is done. */
static void post_id_and_wait(struct fx *f, struct tb_client_pool *p, const char *path, int k,
                             struct call *c) {
  char hdr[64], body[32], err[TB_ERRMSG_MAX] = "";
  snprintf(hdr, sizeof hdr, "X-Test: id-%d", k);
  snprintf(body, sizeof body, "body-%d", k);
  int before = g_done;
  int rc = tb_client_post(p, path, "text/plain", hdr, body, strlen(body), on_done, c, err);
  if (rc != 0) fprintf(stderr, "post: %s\n", err);
  assert_int_equal(rc, 0);
  assert_true(run_until(&f->loop, &g_done, before + 1, 10000));
}

/* The answer in c is the answer to request k, and request k reached the
 * server exactly once. */
static void assert_answer_is(struct fx *f, const struct call *c, int k) {
  char line[64], body[32];
  snprintf(line, sizeof line, "X-Echo-Test: id-%d\n", k);
  snprintf(body, sizeof body, "body-%d", k);
  if (c->terr != 0 || !has_header(c, line))
    fprintf(stderr, "  request %d: %s %s; status %d; headers:\n%s", k,
            tb_client_error_name(c->terr), c->text, c->status, c->headers);
  assert_int_equal(c->calls, 1);
  assert_int_equal(c->terr, 0);
  assert_int_equal(c->status, 200);
  assert_true(has_header(c, line));
  assert_int_equal(c->body_len, strlen(body));
  assert_memory_equal(c->body, body, strlen(body));
  snprintf(line, sizeof line, "id-%d", k);
  assert_int_equal(https_peer_seen(&f->peer, line), 1);
}

static void partner_answering_twice_does_not_shift_answers(void **state) {
  (void)state;
  /* Where the unsolicited answer waits: in the socket with the real answer
   * (found when the answer completes), in the same TLS record as the real
   * answer (curl reads it into its own buffer), or arriving later on the
   * idle connection (found just before the next request is sent). */
  static const char *const modes[] = {"/twice", "/twice?same=1", "/twice?ms=30"};
  for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
    struct fx f;
    struct https_peer_config sc = server_cfg(g_gw_ca, 0);
    fx_init(&f, &sc);
    struct tb_client_pool_config pc = pool_cfg(&f, 1);
    pc.max_in_flight = 1;
    struct tb_client_pool *p = add_pool(&f, &pc);
    struct call c[11];
    memset(c, 0, sizeof c);
    g_done = 0;
    post_id_and_wait(&f, p, modes[m], 1, &c[1]);
    if (m == 2) {
      /* Let the late answer arrive while the connection sits in the cache. */
      uv_sleep(300);
    }
    for (int k = 2; k <= 10; k++) post_id_and_wait(&f, p, "/echo", k, &c[k]);
    for (int k = 1; k <= 10; k++) {
      assert_answer_is(&f, &c[k], k);
      free(c[k].body);
    }
    struct tb_client_stats st, cst;
    tb_client_pool_stats(p, &st);
    tb_client_stats(f.client, &cst);
    fprintf(stderr, "  %s: 10 answers right; %d TCP connections, %d requests seen, "
            "%llu discarded, %llu reused\n",
            modes[m], atomic_load(&f.peer.accepts), atomic_load(&f.peer.requests),
            (unsigned long long)st.connections_discarded, (unsigned long long)st.reused);
    assert_int_equal(atomic_load(&f.peer.requests), 10); /* nothing was sent twice */
    assert_int_equal(st.requests, 10);
    assert_int_equal(st.completed, 10);
    assert_int_equal(st.failed, 0);
    assert_int_equal(cst.connections_discarded, st.connections_discarded);
    if (m != 1) assert_true(st.connections_discarded >= 1);
    /* Only the poisoned connection was replaced: 2..10 share a new one. (With
     * both answers in one TLS record, curl reads the stale one into its own
     * buffer with the real one; 7.88 then does not keep the connection.) */
    if (m == 1) assert_true(atomic_load(&f.peer.accepts) <= 2);
    else assert_int_equal(atomic_load(&f.peer.accepts), 2);
    assert_true(st.reused >= 8);
    fx_fini(&f);
  }
}

static void partner_closing_after_answer_is_not_dirty(void **state) {
  (void)state;
  /* A partner that answers and then ends the connection, with "Connection:
   * close" or with just a close_notify on a kept-alive connection (what a
   * server does when its idle timeout fires): normal, not a discard. */
  struct fx f;
  struct https_peer_config sc = server_cfg(g_gw_ca, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 1);
  pc.max_in_flight = 1;
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call c[11];
  memset(c, 0, sizeof c);
  g_done = 0;
  for (int k = 1; k <= 10; k++) {
    post_id_and_wait(&f, p, k % 3 == 0 ? "/echo" : k % 3 == 1 ? "/close" : "/close?hdr=1", k,
                     &c[k]);
    uv_sleep(50); /* the close reaches us before the next request */
  }
  for (int k = 1; k <= 10; k++) {
    assert_answer_is(&f, &c[k], k);
    free(c[k].body);
  }
  struct tb_client_stats st;
  tb_client_pool_stats(p, &st);
  fprintf(stderr, "  10 requests, %d TCP connections, %llu discarded\n",
          atomic_load(&f.peer.accepts), (unsigned long long)st.connections_discarded);
  assert_int_equal(st.connections_discarded, 0);
  assert_int_equal(st.completed, 10);
  assert_int_equal(atomic_load(&f.peer.requests), 10);
  fx_fini(&f);
}

static void on_close_timer(uv_timer_t *t) {
  struct fx *f = t->data;
  fx_close_client(f);
  uv_close((uv_handle_t *)t, NULL);
}

static void close_cancels_queued_and_in_flight_exactly_once(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 1);
  pc.max_in_flight = 2;
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call calls[10];
  memset(calls, 0, sizeof calls);
  g_done = 0;
  for (int i = 0; i < 10; i++) {
    calls[i].pool = p; /* each callback tries to post again: must get TB_ECLOSED */
    post_ok(p, "/delay?ms=3000", "x", 1, &calls[i]);
  }
  uv_timer_t t;
  uv_timer_init(&f.loop, &t);
  t.data = &f;
  uv_timer_start(&t, on_close_timer, 300, 0);
  assert_true(run_until(&f.loop, &f.closed, 1, 10000));
  int sent = 0;
  for (int i = 0; i < 10; i++) {
    assert_int_equal(calls[i].calls, 1);
    assert_int_equal(calls[i].terr, TB_CLIENT_ECANCELLED);
    assert_int_equal(calls[i].post_in_cb_rc, TB_ECLOSED);
    sent += calls[i].sent;
    free(calls[i].body);
  }
  assert_int_equal(g_done, 10);
  assert_int_equal(sent, 2); /* the two in flight reached the partner; the queued ones did not */
  fx_fini(&f);
}

static struct fx *g_close_fx; /* closed from inside a callback */

static void on_done_then_close(const struct tb_client_result *r, void *ud) {
  on_done(r, ud);
  fx_close_client(g_close_fx);
}

static void close_from_inside_a_callback(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(NULL, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 0);
  pc.max_in_flight = 2;
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call first = {0}, rest[4];
  memset(rest, 0, sizeof rest);
  g_done = 0;
  g_close_fx = &f;
  assert_int_equal(tb_client_post(p, "/echo", "text/plain", NULL, "x", 1, on_done_then_close,
                                  &first, NULL),
                   0);
  for (int i = 0; i < 4; i++) post_ok(p, "/delay?ms=3000", "x", 1, &rest[i]);
  assert_true(run_until(&f.loop, &f.closed, 1, 10000));
  assert_int_equal(first.calls, 1);
  assert_int_equal(first.status, 200);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(rest[i].calls, 1);
    assert_int_equal(rest[i].terr, TB_CLIENT_ECANCELLED);
    free(rest[i].body);
  }
  assert_int_equal(g_done, 5);
  free(first.body);
  fx_fini(&f);
}

static void tls_session_reuse_can_be_turned_off(void **state) {
  (void)state;
  /* A server that verifies client certificates without a session id
   * context (a bare OpenSSL server) fails every resumed handshake. */
  for (int off = 0; off <= 1; off++) {
    struct fx f;
    struct https_peer_config sc = server_cfg(g_gw_ca, 0);
    sc.no_session_id_context = 1;
    fx_init(&f, &sc);
    struct tb_client_pool_config pc = pool_cfg(&f, 1);
    pc.max_in_flight = 4;
    pc.no_tls_session_reuse = off;
    struct tb_client_pool *p = add_pool(&f, &pc);
    struct call c[5];
    memset(c, 0, sizeof c);
    g_done = 0;
    post_ok(p, "/echo", "x", 1, &c[0]); /* its connection brings the session ticket */
    assert_true(run_until(&f.loop, &g_done, 1, 10000));
    for (int i = 1; i < 5; i++) post_ok(p, "/delay?ms=50", "x", 1, &c[i]);
    assert_true(run_until(&f.loop, &g_done, 5, 10000));
    int failed = 0;
    for (int i = 0; i < 5; i++) {
      failed += c[i].terr != 0;
      free(c[i].body);
    }
    fprintf(stderr, "  session reuse %s: %d of 5 failed\n", off ? "off" : "on", failed);
    if (off) assert_int_equal(failed, 0);
    else assert_true(failed >= 1); /* proves the test server is that broken */
    fx_fini(&f);
  }
}

static void on_pool_closed(void *ud) {
  (*(int *)ud)++;
  wake();
}

static void pool_close_keeps_connections_for_a_replacement(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(g_gw_ca, 0);
  fx_init(&f, &sc);
  struct tb_client_pool_config pc = pool_cfg(&f, 1);
  pc.max_in_flight = 1;

  /* Closing a pool cancels its in-flight and queued requests; another pool
   * of the same client carries on; on_closed runs. */
  struct tb_client_pool *doomed = add_pool(&f, &pc);
  struct tb_client_pool *other = add_pool(&f, &pc);
  struct call q[3], o = {0};
  memset(q, 0, sizeof q);
  g_done = 0;
  for (int i = 0; i < 3; i++) post_ok(doomed, "/delay?ms=2000", "x", 1, &q[i]);
  post_ok(other, "/echo", "x", 1, &o);
  int pool_closed = 0;
  tb_client_pool_close(doomed, on_pool_closed, &pool_closed);
  char err[TB_ERRMSG_MAX];
  struct call never = {0};
  assert_int_equal(tb_client_post(doomed, "/echo", "text/plain", NULL, "x", 1, on_done, &never,
                                  err),
                   TB_ECLOSED);
  assert_true(run_until(&f.loop, &pool_closed, 1, 10000));
  for (int i = 0; i < 3; i++) {
    assert_int_equal(q[i].calls, 1);
    assert_int_equal(q[i].terr, TB_CLIENT_ECANCELLED);
    free(q[i].body);
  }
  assert_true(run_until(&f.loop, &g_done, 4, 10000));
  assert_int_equal(o.status, 200);
  assert_int_equal(never.calls, 0);

  /* A partner's pool closed and re-added with the same settings (a reload):
   * the warm connection in the client's cache is reused. */
  struct tb_client_pool *p = add_pool(&f, &pc);
  struct call a = {0}, b = {0};
  post_ok(p, "/echo", "x", 1, &a);
  assert_true(run_until(&f.loop, &g_done, 5, 10000));
  assert_int_equal(a.status, 200);
  pool_closed = 0;
  tb_client_pool_close(p, on_pool_closed, &pool_closed);
  assert_true(run_until(&f.loop, &pool_closed, 1, 10000));
  int before = atomic_load(&f.peer.accepts);
  struct tb_client_pool *p2 = add_pool(&f, &pc);
  post_ok(p2, "/echo", "x", 1, &b);
  assert_true(run_until(&f.loop, &g_done, 6, 10000));
  assert_int_equal(b.status, 200);
  assert_int_equal(b.reused, 1);
  assert_int_equal(atomic_load(&f.peer.accepts), before);
  free(o.body), free(a.body), free(b.body);
  fx_fini(&f);
}

static void probe_reports_the_failing_stage(void **state) {
  (void)state;
  struct fx f;
  struct https_peer_config sc = server_cfg(g_gw_ca, 1); /* TLS 1.2: cert refusal is in the handshake */
  fx_init(&f, &sc);
  struct tb_client_pool_config with = pool_cfg(&f, 1);
  struct tb_client_pool_config without = pool_cfg(&f, 0);
  without.name = "nocert";
  struct tb_client_pool_config wrongca = pool_cfg(&f, 1);
  wrongca.name = "wrongca";
  wrongca.ca_file = g_other_ca;
  char dead_url[64];
  snprintf(dead_url, sizeof dead_url, "https://127.0.0.1:%d", free_port());
  struct tb_client_pool_config dead = pool_cfg(&f, 1);
  dead.name = "dead";
  dead.base_url = dead_url;
  struct tb_client_pool_config nodns = pool_cfg(&f, 1);
  nodns.name = "nodns";
  nodns.base_url = "https://no-such-host.invalid";
  struct tb_client_pool *pools[5] = {add_pool(&f, &with), add_pool(&f, &without),
                                     add_pool(&f, &wrongca), add_pool(&f, &dead),
                                     add_pool(&f, &nodns)};
  int expect[5] = {0, TB_CLIENT_ETLS, TB_CLIENT_ETLS, TB_CLIENT_ECONNECT, TB_CLIENT_EDNS};
  struct call c[5];
  memset(c, 0, sizeof c);
  g_done = 0;
  for (int i = 0; i < 5; i++) assert_int_equal(tb_client_probe(pools[i], on_done, &c[i], NULL), 0);
  assert_true(run_until(&f.loop, &g_done, 5, 15000));
  for (int i = 0; i < 5; i++) {
    fprintf(stderr, "  probe %d: %s %s\n", i, tb_client_error_name(c[i].terr), c[i].text);
    assert_int_equal(c[i].terr, expect[i]);
    assert_int_equal(c[i].sent, 0);
    free(c[i].body);
  }
  assert_int_equal(atomic_load(&f.peer.requests), 0); /* no HTTP request was made */
  fx_fini(&f);
}

static void pool_config_is_checked(void **state) {
  (void)state;
  struct fx f;
  fx_init(&f, NULL);
  snprintf(f.url, sizeof f.url, "https://127.0.0.1:1");
  char err[TB_ERRMSG_MAX];
  struct tb_client_pool *p = NULL;
  struct tb_client_pool_config pc;

  /* A private key readable by others is refused, with the fix. */
  char loose[700];
  snprintf(loose, sizeof loose, "%s/loose.key", g_pki);
  char cmd[2200];
  snprintf(cmd, sizeof cmd, "cp '%s' '%s' && chmod 644 '%s'", g_gw_key, loose, loose);
  assert_int_equal(system(cmd), 0);
  pc = pool_cfg(&f, 1);
  pc.key_file = loose;
  assert_int_equal(tb_client_pool_add(f.client, &pc, &p, err), TB_ECONFIG);
  assert_non_null(strstr(err, "chmod 600"));
  assert_null(p);

  pc = pool_cfg(&f, 1);
  pc.key_file = g_srv_key; /* 0600, but not the certificate's key */
  assert_int_equal(tb_client_pool_add(f.client, &pc, &p, err), TB_ECONFIG);
  assert_non_null(strstr(err, "not the private key"));

  pc = pool_cfg(&f, 1);
  pc.key_file = NULL;
  assert_int_equal(tb_client_pool_add(f.client, &pc, &p, err), TB_ECONFIG);
  assert_non_null(strstr(err, "go together"));

  pc = pool_cfg(&f, 0);
  pc.ca_file = "/nonexistent/ca.pem";
  assert_int_equal(tb_client_pool_add(f.client, &pc, &p, err), TB_ENOTFOUND);
  assert_non_null(strstr(err, "/nonexistent/ca.pem"));

  pc = pool_cfg(&f, 0);
  pc.ca_file = g_gw_key; /* not a certificate */
  assert_int_equal(tb_client_pool_add(f.client, &pc, &p, err), TB_EPARSE);

  const char *bad_urls[] = {"http://127.0.0.1:1", "htp://x", "https://", "https://u:p@host/",
                            "https://host/?q=1", "https://host/a b", "not a url"};
  for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
    pc = pool_cfg(&f, 0);
    pc.base_url = bad_urls[i];
    int rc = tb_client_pool_add(f.client, &pc, &p, err);
    if (rc != TB_ECONFIG) fprintf(stderr, "url %s: rc %d %s\n", bad_urls[i], rc, err);
    assert_int_equal(rc, TB_ECONFIG);
  }
  pc = pool_cfg(&f, 0);
  pc.name = NULL;
  assert_int_equal(tb_client_pool_add(f.client, &pc, &p, err), TB_ECONFIG);

  /* Requests: bad paths and header injection are refused, nothing runs. */
  pc = pool_cfg(&f, 1);
  p = add_pool(&f, &pc);
  struct call c = {0};
  assert_int_equal(tb_client_post(p, "echo", "text/plain", NULL, "x", 1, on_done, &c, err),
                   TB_EINVAL);
  assert_int_equal(tb_client_post(p, "/a b", "text/plain", NULL, "x", 1, on_done, &c, err),
                   TB_EINVAL);
  assert_int_equal(tb_client_post(p, "/a", "text/plain\r\nX-Evil: 1", NULL, "x", 1, on_done, &c,
                                  err),
                   TB_EINVAL);
  assert_int_equal(tb_client_post(p, "/a", "text/plain", "X-Ok: 1\r\nNoColon\r\n", "x", 1,
                                  on_done, &c, err),
                   TB_EINVAL);
  assert_int_equal(tb_client_post(p, "/a", "text/plain", "X-A: 1\rX-B: 2", "x", 1, on_done, &c,
                                  err),
                   TB_EINVAL);
  assert_int_equal(tb_client_post(p, "/a", "text/plain", "Bad Name: 1", "x", 1, on_done, &c, err),
                   TB_EINVAL);
  assert_int_equal(tb_client_post(p, "/a", "text/plain", NULL, NULL, 5, on_done, &c, err),
                   TB_EINVAL);
  assert_int_equal(tb_client_post(p, "/a", "text/plain", NULL, "x", 1, NULL, &c, err), TB_EINVAL);
  assert_string_equal(tb_client_error_name(TB_CLIENT_ETOO_LARGE), "too_large");
  assert_string_equal(tb_client_error_name(0), "ok");
  fx_fini(&f);
  assert_int_equal(c.calls, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(post_delivers_body_and_headers_both_ways),
      cmocka_unit_test(connections_are_reused),
      cmocka_unit_test(in_flight_limit_is_respected),
      cmocka_unit_test(queue_cap_refuses_with_ebusy),
      cmocka_unit_test(mutual_tls),
      cmocka_unit_test(server_certificate_from_another_ca_is_refused),
      cmocka_unit_test(connection_refused_fails_fast),
      cmocka_unit_test(slow_server_times_out_at_the_total_timeout),
      cmocka_unit_test(connection_cut_mid_answer_is_a_reset),
      cmocka_unit_test(answers_over_the_caps_are_too_large),
      cmocka_unit_test(partner_answering_twice_does_not_shift_answers),
      cmocka_unit_test(partner_closing_after_answer_is_not_dirty),
      cmocka_unit_test(close_cancels_queued_and_in_flight_exactly_once),
      cmocka_unit_test(close_from_inside_a_callback),
      cmocka_unit_test(pool_close_keeps_connections_for_a_replacement),
      cmocka_unit_test(tls_session_reuse_can_be_turned_off),
      cmocka_unit_test(probe_reports_the_failing_stage),
      cmocka_unit_test(pool_config_is_checked),
  };
  return cmocka_run_group_tests_name("client", tests, group_setup, group_teardown);
}
