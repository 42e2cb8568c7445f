/*
 * test_http_server.c — the HTTP/1.1 server over real sockets.
 *
 * Each test starts a server on 127.0.0.1:0 whose uv loop runs in a second
 * thread; the test itself is a blocking client in the main thread (so
 * cmocka's asserts run where cmocka expects them). Handler, observer and
 * abort callbacks run on the loop thread and publish what they saw through
 * atomics or a mutex. Stopping: uv_async → tb_http_server_close → the loop
 * runs out of handles → join; uv_loop_close() must then succeed, which
 * proves every handle was closed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "http/problem.h"
#include "http/server.h"
#include "tbgw/error.h"

/* ---- server fixture (loop thread) -------------------------------------- */

struct fx {
  uv_loop_t loop;
  uv_async_t done;
  struct tb_http_server *srv;
  int port;
  pthread_t th;
  int server_closing; /* loop thread only */
  atomic_int closed;  /* on_closed ran */
  atomic_int handled;
  atomic_int holding; /* exchanges held by the async handler */
  atomic_int aborts;
  atomic_int answered_aborted;
  pthread_mutex_t mu;
  int statuses[128];
  char routes[128][16];
  int nobs;
};

struct pending {
  uv_timer_t t;
  struct tb_http_exchange *ex;
  struct fx *fx;
  char body[256];
  size_t len;
};

static void on_server_closed(void *ud) {
  struct fx *fx = ud;
  atomic_store(&fx->closed, 1);
}

static void on_pending_closed(uv_handle_t *h) { free(h->data); }

static void on_pending_timer(uv_timer_t *t) {
  struct pending *p = t->data;
  if (tb_http_exchange_aborted(p->ex)) atomic_fetch_add(&p->fx->answered_aborted, 1);
  atomic_fetch_sub(&p->fx->holding, 1);
  tb_http_respond(p->ex, 200, "text/plain", p->body, p->len, NULL);
  uv_close((uv_handle_t *)t, on_pending_closed);
}

static void on_abort(struct tb_http_exchange *ex, void *ud) {
  struct fx *fx = ud;
  (void)ex;
  atomic_fetch_add(&fx->aborts, 1);
}

static long query_num(const char *q, const char *key) {
  const char *s = strstr(q, key);
  return s ? strtol(s + strlen(key), NULL, 10) : 0;
}

/* /echo: answers the body. /close: starts a graceful close, then answers
 * like any other. Anything else: "METHOD path query body_len". ?delay=N
 * answers N ms later from a timer. */
static void handler(struct tb_http_exchange *ex, const struct tb_http_request *req, void *ud) {
  struct fx *fx = ud;
  atomic_fetch_add(&fx->handled, 1);
  tb_http_exchange_set_route(ex, "echo");
  if (strcmp(req->path, "/echo") == 0) {
    tb_http_respond(ex, 200, "application/octet-stream", req->body, req->body_len, NULL);
    return;
  }
  if (strcmp(req->path, "/conns") == 0) {
    char b[32];
    int n = snprintf(b, sizeof b, "%zu", tb_http_server_connections(fx->srv));
    tb_http_respond(ex, 200, "text/plain", b, (size_t)n, NULL);
    return;
  }
  if (strcmp(req->path, "/problem") == 0) {
    tb_http_respond_problem(ex, 404, "not-found", NULL, "no such thing", NULL);
    return;
  }
  if (strcmp(req->path, "/close") == 0 && !fx->server_closing) {
    fx->server_closing = 1;
    tb_http_server_close(fx->srv, on_server_closed, fx);
  }
  char body[256];
  int n = snprintf(body, sizeof body, "%s %s %s %zu", req->method_name, req->path, req->query,
                   req->body_len);
  long delay = query_num(req->query, "delay=");
  if (delay <= 0) {
    tb_http_respond(ex, 200, "text/plain", body, (size_t)n, NULL);
    return;
  }
  struct pending *p = calloc(1, sizeof *p);
  if (p == NULL) abort(); /* loop thread: no cmocka asserts here */
  p->ex = ex;
  p->fx = fx;
  memcpy(p->body, body, (size_t)n);
  p->len = (size_t)n;
  uv_timer_init(&fx->loop, &p->t);
  p->t.data = p;
  tb_http_exchange_on_abort(ex, on_abort, fx);
  atomic_fetch_add(&fx->holding, 1);
  uv_timer_start(&p->t, on_pending_timer, (uint64_t)delay, 0);
}

static void observer(const char *route, int status, uint64_t dur, void *ud) {
  struct fx *fx = ud;
  (void)dur;
  pthread_mutex_lock(&fx->mu);
  if (fx->nobs < 128) {
    fx->statuses[fx->nobs] = status;
    snprintf(fx->routes[fx->nobs], sizeof fx->routes[0], "%s", route);
    fx->nobs++;
  }
  pthread_mutex_unlock(&fx->mu);
}

static void on_done(uv_async_t *a) {
  struct fx *fx = a->data;
  if (!fx->server_closing) {
    fx->server_closing = 1;
    tb_http_server_close(fx->srv, on_server_closed, fx);
  }
  uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *arg) {
  struct fx *fx = arg;
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  return NULL;
}

static struct fx *fx_start(const struct tb_http_limits *lim) {
  struct fx *fx = calloc(1, sizeof *fx);
  assert_non_null(fx);
  pthread_mutex_init(&fx->mu, NULL);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_async_init(&fx->loop, &fx->done, on_done);
  uv_unref((uv_handle_t *)&fx->done); /* the loop ends when the server is gone */
  fx->done.data = fx;
  struct tb_http_server_config cfg = {0};
  cfg.name = "test";
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  if (lim)
    cfg.limits = *lim;
  else
    tb_http_limits_default(&cfg.limits);
  cfg.handler = handler;
  cfg.handler_ud = fx;
  cfg.observer = observer;
  cfg.observer_ud = fx;
  char err[512] = "";
  int r = tb_http_server_start(&fx->loop, &cfg, &fx->srv, err);
  if (r != 0) fprintf(stderr, "start: %s\n", err);
  assert_int_equal(r, 0);
  fx->port = tb_http_server_port(fx->srv);
  assert_true(fx->port > 0);
  assert_int_equal(pthread_create(&fx->th, NULL, loop_main, fx), 0);
  return fx;
}

static void fx_stop(struct fx *fx) {
  uv_async_send(&fx->done);
  pthread_join(fx->th, NULL);
  assert_int_equal(atomic_load(&fx->closed), 1);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  pthread_mutex_destroy(&fx->mu);
  free(fx);
}

static struct tb_http_limits limits(void) {
  struct tb_http_limits l;
  tb_http_limits_default(&l);
  return l;
}

/* ---- blocking client (test thread) ------------------------------------- */

struct cli {
  int fd;
  char buf[1 << 19];
  size_t len;
};

struct resp {
  int status;
  char head[4096];
  char *body;
  size_t body_len;
};

static char *find(const char *hay, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++)
    if (memcmp(hay + i, needle, k) == 0) return (char *)hay + i;
  return NULL;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int cli_try_connect(struct cli *c, int port) {
  c->len = 0;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) return -1;
  struct timeval tv = {3, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(c->fd);
    c->fd = -1;
    return -1;
  }
  return 0;
}

static struct cli *cli_new(int port) {
  struct cli *c = calloc(1, sizeof *c);
  assert_non_null(c);
  assert_int_equal(cli_try_connect(c, port), 0);
  return c;
}

static void cli_free(struct cli *c) {
  if (c->fd >= 0) close(c->fd);
  free(c);
}

static void cli_send(struct cli *c, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    assert_true(w > 0);
    p += w;
    n -= (size_t)w;
  }
}

static void cli_sends(struct cli *c, const char *s) { cli_send(c, s, strlen(s)); }

/* Reads more into the buffer; returns bytes read, 0 on EOF, -1 on error or
 * timeout. */
static ssize_t cli_fill(struct cli *c) {
  if (c->len == sizeof c->buf) return -1;
  ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
  if (r > 0) c->len += (size_t)r;
  return r < 0 ? -1 : r;
}

static void cli_consume(struct cli *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

/* Reads one response (Content-Length framed). Returns 0 or -1 (EOF/timeout
 * before a complete response). r->body points into a malloc'd copy. */
static int cli_read(struct cli *c, struct resp *r) {
  memset(r, 0, sizeof *r);
  char *end;
  for (;;) {
    end = find(c->buf, c->len, "\r\n\r\n");
    if (end) break;
    if (cli_fill(c) <= 0) return -1;
  }
  size_t hlen = (size_t)(end - c->buf) + 4;
  assert_true(hlen < sizeof r->head);
  memcpy(r->head, c->buf, hlen);
  r->head[hlen] = '\0';
  if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) return -1;
  size_t clen = 0;
  const char *cl = strstr(r->head, "Content-Length: ");
  if (cl && r->status != 100) clen = strtoul(cl + 16, NULL, 10);
  while (c->len < hlen + clen)
    if (cli_fill(c) <= 0) return -1;
  r->body = malloc(clen + 1);
  memcpy(r->body, c->buf + hlen, clen);
  r->body[clen] = '\0';
  r->body_len = clen;
  cli_consume(c, hlen + clen);
  return 0;
}

static void resp_free(struct resp *r) {
  free(r->body);
  r->body = NULL;
}

/* 1 if the peer closed (EOF or reset) with nothing more to read. */
static int cli_eof(struct cli *c) {
  if (c->len) return 0;
  char b[64];
  ssize_t r = recv(c->fd, b, sizeof b, 0);
  return r == 0 || (r < 0 && errno == ECONNRESET);
}

/* Waits up to ms for readable data or EOF; 1 if readable. */
static int cli_wait(struct cli *c, int ms) {
  struct pollfd p = {c->fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

static void expect_simple(struct cli *c, int status, const char *body) {
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, status);
  if (body) assert_string_equal(r.body, body);
  resp_free(&r);
}

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- tests --------------------------------------------------------------- */

static void test_get_answered_with_standard_headers(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, GET("/hello?x=1"));
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.head, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(r.head, "\r\nServer: tbgw\r\n"));
  assert_non_null(strstr(r.head, "\r\nDate: "));
  assert_non_null(strstr(r.head, " GMT\r\n"));
  assert_non_null(strstr(r.head, "\r\nContent-Type: text/plain\r\n"));
  assert_non_null(strstr(r.head, "\r\nContent-Length: 16\r\n"));
  assert_non_null(strstr(r.head, "\r\nConnection: keep-alive\r\n"));
  assert_string_equal(r.body, "GET /hello x=1 0");
  resp_free(&r);
  cli_free(c);
  fx_stop(fx);
}

static void test_keepalive_serves_two_requests_on_one_connection(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, GET("/one"));
  expect_simple(c, 200, "GET /one  0");
  cli_sends(c, GET("/two"));
  expect_simple(c, 200, "GET /two  0");
  cli_sends(c, GET("/conns"));
  expect_simple(c, 200, "1");
  cli_free(c);
  fx_stop(fx);
}

static void test_pipelined_requests_answered_in_order(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  /* The first is ready last, the second first: order must still hold. */
  cli_sends(c, GET("/p1?delay=150") GET("/p2?delay=10") GET("/p3?delay=60") GET("/p4"));
  expect_simple(c, 200, "GET /p1 delay=150 0");
  expect_simple(c, 200, "GET /p2 delay=10 0");
  expect_simple(c, 200, "GET /p3 delay=60 0");
  expect_simple(c, 200, "GET /p4  0");
  cli_free(c);
  fx_stop(fx);
}

static void test_pipeline_over_buffer_cap_still_answered_in_order(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.max_pipeline_bytes = 512; /* forces read stop / resume */
  struct fx *fx = fx_start(&l);
  struct cli *c = cli_new(fx->port);
  char all[8192];
  size_t n = 0;
  for (int i = 0; i < 60; i++)
    n += (size_t)snprintf(all + n, sizeof all - n,
                          "GET /q%d?delay=%d HTTP/1.1\r\nHost: t\r\n\r\n", i, i % 3 == 0 ? 2 : 0);
  cli_send(c, all, n);
  for (int i = 0; i < 60; i++) {
    char want[64];
    snprintf(want, sizeof want, "GET /q%d delay=%d 0", i, i % 3 == 0 ? 2 : 0);
    expect_simple(c, 200, want);
  }
  cli_free(c);
  fx_stop(fx);
}

static void test_post_content_length_body_delivered_intact(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  size_t n = 200000;
  char *body = malloc(n);
  for (size_t i = 0; i < n; i++) body[i] = (char)(i * 7 + (i >> 8));
  char head[128];
  snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", n);
  cli_sends(c, head);
  cli_send(c, body, n);
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.body_len, n);
  assert_memory_equal(r.body, body, n);
  resp_free(&r);
  free(body);
  cli_free(c);
  fx_stop(fx);
}

static void test_chunked_body_delivered(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
  sleep_ms(20);
  cli_sends(c, "lo\r\n6\r\n world\r\n");
  sleep_ms(20);
  cli_sends(c, "0\r\nX-Trailer: yes\r\n\r\n");
  expect_simple(c, 200, "hello world");
  cli_free(c);
  fx_stop(fx);
}

static void test_expect_100_continue_gets_100_then_answer(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
               "Expect: 100-continue\r\n\r\n");
  assert_true(cli_wait(c, 2000)); /* before we send the body */
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, 100);
  assert_string_equal(r.head, "HTTP/1.1 100 Continue\r\n\r\n");
  resp_free(&r);
  cli_sends(c, "hello world");
  expect_simple(c, 200, "hello world");
  cli_free(c);
  fx_stop(fx);
}

static void expect_problem_and_close(struct cli *c, int status, const char *slug) {
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, status);
  assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));
  assert_non_null(strstr(r.head, "\r\nContent-Type: application/problem+json\r\n"));
  char type[96];
  snprintf(type, sizeof type, "\"type\":\"urn:tbgw:problem:%s\"", slug);
  if (strstr(r.body, type) == NULL) fprintf(stderr, "body: %s\n", r.body);
  assert_non_null(strstr(r.body, type));
  char st[32];
  snprintf(st, sizeof st, "\"status\":%d", status);
  assert_non_null(strstr(r.body, st));
  resp_free(&r);
  assert_true(cli_eof(c));
}

static void test_413_for_content_length_over_limit_before_body(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.max_body_bytes = 1024;
  struct fx *fx = fx_start(&l);
  struct cli *c = cli_new(fx->port);
  /* The body is never sent: the answer must come from the headers alone. */
  cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n"
               "Expect: 100-continue\r\n\r\n");
  expect_problem_and_close(c, 413, "body-too-large");
  assert_int_equal(atomic_load(&fx->handled), 0);
  cli_free(c);
  /* Exactly at the limit is fine. */
  c = cli_new(fx->port);
  char body[1024];
  memset(body, 'a', sizeof body);
  cli_sends(c, "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n");
  cli_send(c, body, sizeof body);
  expect_simple(c, 200, "POST /x  1024");
  cli_free(c);
  fx_stop(fx);
}

static void test_413_for_chunked_body_over_limit(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.max_body_bytes = 1024;
  struct fx *fx = fx_start(&l);
  struct cli *c = cli_new(fx->port);
  char chunk[700];
  memset(chunk, 'b', sizeof chunk);
  cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 2; i++) {
    cli_sends(c, "2bc\r\n");
    cli_send(c, chunk, sizeof chunk);
    cli_sends(c, "\r\n");
  }
  expect_problem_and_close(c, 413, "body-too-large");
  cli_free(c);
  fx_stop(fx);
}

static void test_411_for_post_without_length(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\n\r\n");
  expect_problem_and_close(c, 411, "length-required");
  cli_free(c);
  fx_stop(fx);
}

static void test_431_for_too_many_headers(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.max_header_count = 10;
  struct fx *fx = fx_start(&l);
  struct cli *c = cli_new(fx->port);
  char req[1024];
  size_t n = (size_t)snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: t\r\n");
  for (int i = 0; i < 10; i++) n += (size_t)snprintf(req + n, sizeof req - n, "X-%d: v\r\n", i);
  snprintf(req + n, sizeof req - n, "\r\n");
  cli_sends(c, req);
  expect_problem_and_close(c, 431, "headers-too-large");
  cli_free(c);
  /* Ten in all (Host + 9) is accepted. */
  c = cli_new(fx->port);
  n = (size_t)snprintf(req, sizeof req, "GET /ok HTTP/1.1\r\nHost: t\r\n");
  for (int i = 0; i < 9; i++) n += (size_t)snprintf(req + n, sizeof req - n, "X-%d: v\r\n", i);
  snprintf(req + n, sizeof req - n, "\r\n");
  cli_sends(c, req);
  expect_simple(c, 200, "GET /ok  0");
  cli_free(c);
  fx_stop(fx);
}

static void test_431_for_too_many_header_bytes(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.max_header_bytes = 1024;
  struct fx *fx = fx_start(&l);
  /* One long value. */
  struct cli *c = cli_new(fx->port);
  char big[3000];
  memset(big, 'v', sizeof big);
  cli_sends(c, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: ");
  cli_send(c, big, sizeof big);
  cli_sends(c, "\r\n\r\n");
  expect_problem_and_close(c, 431, "headers-too-large");
  cli_free(c);
  /* Whitespace padding that is not stored still counts. */
  c = cli_new(fx->port);
  cli_sends(c, "GET / HTTP/1.1\r\nHost: t\r\nX-Pad:");
  memset(big, ' ', sizeof big);
  cli_send(c, big, sizeof big);
  cli_sends(c, "x\r\n\r\n");
  expect_problem_and_close(c, 431, "headers-too-large");
  cli_free(c);
  fx_stop(fx);
}

static void test_400_for_garbage_with_problem_body(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, "GARBAGE\x01\x02 / HTTP/1.1\r\n\r\n");
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, 400);
  assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));
  assert_non_null(strstr(r.body, "\"type\":\"urn:tbgw:problem:malformed-request\""));
  assert_non_null(strstr(r.body, "\"title\":\"Bad Request\""));
  assert_non_null(strstr(r.body, "HPE_")); /* llhttp's reason and code */
  assert_non_null(strstr(r.body, "at byte "));
  resp_free(&r);
  assert_true(cli_eof(c));
  cli_free(c);
  /* An HTTP/1.1 request without Host is malformed too. */
  c = cli_new(fx->port);
  cli_sends(c, "GET / HTTP/1.1\r\n\r\n");
  expect_problem_and_close(c, 400, "malformed-request");
  cli_free(c);
  fx_stop(fx);
}

static void test_505_for_http2_preface_and_other_versions(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  expect_problem_and_close(c, 505, "unsupported-http-version");
  cli_free(c);
  c = cli_new(fx->port);
  cli_sends(c, "GET / HTTP/1.2\r\nHost: t\r\n\r\n");
  expect_problem_and_close(c, 505, "unsupported-http-version");
  cli_free(c);
  fx_stop(fx);
}

static void test_408_header_timeout_for_slowloris(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.header_timeout_ms = 300;
  struct fx *fx = fx_start(&l);
  struct cli *c = cli_new(fx->port);
  uint64_t t0 = now_ms();
  cli_sends(c, "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
  /* One byte every 50 ms: an idle timer would never fire. */
  int answered = 0;
  for (int i = 0; i < 60 && !answered; i++) {
    if (send(c->fd, "a", 1, MSG_NOSIGNAL) != 1) break;
    answered = cli_wait(c, 50);
  }
  uint64_t dt = now_ms() - t0;
  assert_true(dt >= 250);
  assert_true(dt < 1500);
  expect_problem_and_close(c, 408, "request-timeout");
  cli_free(c);
  fx_stop(fx);
}

static void test_408_body_idle_timeout(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.body_timeout_ms = 200;
  struct fx *fx = fx_start(&l);
  struct cli *c = cli_new(fx->port);
  uint64_t t0 = now_ms();
  cli_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
  assert_true(cli_wait(c, 2000));
  assert_true(now_ms() - t0 >= 150);
  expect_problem_and_close(c, 408, "request-timeout");
  cli_free(c);
  fx_stop(fx);
}

static void test_keepalive_idle_timeout_answers_408_and_closes(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.keepalive_timeout_ms = 200;
  struct fx *fx = fx_start(&l);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, GET("/a"));
  expect_simple(c, 200, "GET /a  0");
  uint64_t t0 = now_ms();
  expect_problem_and_close(c, 408, "request-timeout");
  assert_true(now_ms() - t0 >= 150);
  cli_free(c);
  fx_stop(fx);
}

static void wait_for(atomic_int *v, int want) {
  for (int i = 0; i < 400 && atomic_load(v) != want; i++) sleep_ms(5);
  assert_int_equal(atomic_load(v), want);
}

static void test_client_reset_with_pending_async_answer(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  /* Reset (RST): the abort callback fires; the handler answers 50 ms later
   * on the aborted exchange, which must be safe (ASan watches). */
  struct cli *c = cli_new(fx->port);
  cli_sends(c, GET("/hold?delay=50"));
  wait_for(&fx->holding, 1);
  struct linger lg = {1, 0};
  setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  cli_free(c);
  wait_for(&fx->aborts, 1);
  wait_for(&fx->holding, 0);
  assert_int_equal(atomic_load(&fx->answered_aborted), 1);
  /* Plain close (FIN): treated as a half-close; the answer is still
   * attempted and whatever happens to it, nothing leaks or crashes. */
  c = cli_new(fx->port);
  cli_sends(c, GET("/hold?delay=50"));
  wait_for(&fx->holding, 1);
  cli_free(c);
  wait_for(&fx->holding, 0);
  /* The server still works. */
  c = cli_new(fx->port);
  cli_sends(c, GET("/after"));
  expect_simple(c, 200, "GET /after  0");
  cli_free(c);
  fx_stop(fx);
}

static void test_graceful_close_finishes_inflight_then_closes(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *idle = cli_new(fx->port);
  cli_sends(idle, GET("/idle"));
  expect_simple(idle, 200, "GET /idle  0");
  struct cli *c = cli_new(fx->port);
  /* The handler starts the close and answers 200 ms later. */
  cli_sends(c, GET("/close?delay=200"));
  /* The idle keep-alive connection is closed without an answer. */
  assert_true(cli_eof(idle));
  cli_free(idle);
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "GET /close delay=200 0");
  assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));
  resp_free(&r);
  assert_true(cli_eof(c));
  cli_free(c);
  pthread_join(fx->th, NULL); /* the loop ends by itself: everything closed */
  assert_int_equal(atomic_load(&fx->closed), 1);
  struct cli *late = calloc(1, sizeof *late);
  assert_int_equal(cli_try_connect(late, fx->port), -1);
  free(late);
  uv_close((uv_handle_t *)&fx->done, NULL);
  uv_run(&fx->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  pthread_mutex_destroy(&fx->mu);
  free(fx);
}

static void test_max_connections_enforced_with_503(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.max_connections = 2;
  struct fx *fx = fx_start(&l);
  struct cli *a = cli_new(fx->port), *b = cli_new(fx->port);
  cli_sends(a, GET("/a"));
  expect_simple(a, 200, NULL);
  cli_sends(b, GET("/conns"));
  expect_simple(b, 200, "2");
  struct cli *c = cli_new(fx->port);
  cli_sends(c, GET("/c"));
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, 503);
  assert_non_null(strstr(r.head, "\r\nRetry-After: 1\r\n"));
  assert_non_null(strstr(r.body, "urn:tbgw:problem:overloaded"));
  resp_free(&r);
  assert_true(cli_eof(c));
  cli_free(c);
  /* A slot frees when a connection goes. */
  cli_free(a);
  int ok = 0;
  for (int i = 0; i < 100 && !ok; i++) {
    c = cli_new(fx->port);
    cli_sends(c, GET("/conns"));
    struct resp r2;
    if (cli_read(c, &r2) == 0) {
      ok = r2.status == 200;
      resp_free(&r2);
    }
    cli_free(c);
    if (!ok) sleep_ms(10);
  }
  assert_true(ok);
  cli_free(b);
  fx_stop(fx);
}

static void test_observer_sees_every_answer(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, GET("/a"));
  expect_simple(c, 200, NULL);
  cli_sends(c, GET("/problem"));
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, 404);
  assert_non_null(strstr(r.head, "\r\nContent-Type: application/problem+json\r\n"));
  assert_non_null(strstr(r.body, "\"type\":\"urn:tbgw:problem:not-found\""));
  assert_non_null(strstr(r.body, "\"title\":\"Not Found\""));
  resp_free(&r);
  cli_sends(c, "BAD\r\n\r\n");
  expect_problem_and_close(c, 400, "malformed-request");
  cli_free(c);
  uv_async_send(&fx->done);
  pthread_join(fx->th, NULL); /* the loop thread is done: records are final */
  assert_int_equal(fx->nobs, 3);
  assert_int_equal(fx->statuses[0], 200);
  assert_string_equal(fx->routes[0], "echo");
  assert_int_equal(fx->statuses[1], 404);
  assert_string_equal(fx->routes[1], "echo");
  assert_int_equal(fx->statuses[2], 400);
  assert_string_equal(fx->routes[2], "-");
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  pthread_mutex_destroy(&fx->mu);
  free(fx);
}

static void test_http10_closes_after_answer_unless_keepalive(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, "GET /old HTTP/1.0\r\n\r\n");
  struct resp r;
  assert_int_equal(cli_read(c, &r), 0);
  assert_int_equal(r.status, 200);
  assert_non_null(strstr(r.head, "\r\nConnection: close\r\n"));
  resp_free(&r);
  assert_true(cli_eof(c));
  cli_free(c);
  c = cli_new(fx->port);
  cli_sends(c, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assert_int_equal(cli_read(c, &r), 0);
  assert_non_null(strstr(r.head, "\r\nConnection: keep-alive\r\n"));
  resp_free(&r);
  cli_sends(c, "GET /again HTTP/1.0\r\n\r\n");
  expect_simple(c, 200, "GET /again  0");
  assert_true(cli_eof(c));
  cli_free(c);
  fx_stop(fx);
}

static void test_head_answered_without_body(void **state) {
  (void)state;
  struct fx *fx = fx_start(NULL);
  struct cli *c = cli_new(fx->port);
  cli_sends(c, "HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n" GET("/g"));
  /* The HEAD answer announces the 10 bytes of "HEAD /h  0" but sends none:
   * the next bytes on the wire are the GET's status line. */
  char *end;
  while ((end = find(c->buf, c->len, "\r\n\r\n")) == NULL) assert_true(cli_fill(c) > 0);
  assert_memory_equal(c->buf, "HTTP/1.1 200 OK", 15);
  char *cl = find(c->buf, c->len, "Content-Length: 10\r\n");
  assert_true(cl != NULL && cl < end);
  cli_consume(c, (size_t)(end - c->buf) + 4);
  expect_simple(c, 200, "GET /g  0");
  cli_free(c);
  fx_stop(fx);
}

static void test_problem_build_shape(void **state) {
  (void)state;
  size_t len = 0;
  char *s = tb_problem_build(422, "validation", "Validation failed", "2 errors",
                             "[{\"path\":\"/a\",\"message\":\"required\"}]", &len);
  assert_non_null(s);
  assert_int_equal(len, strlen(s));
  assert_string_equal(s, "{\"type\":\"urn:tbgw:problem:validation\",\"title\":\"Validation "
                         "failed\",\"status\":422,\"detail\":\"2 errors\",\"errors\":[{\"path\":"
                         "\"/a\",\"message\":\"required\"}]}");
  free(s);
  s = tb_problem_build(400, "malformed-request", NULL, "bad \xff byte", NULL, &len);
  assert_non_null(s);
  assert_non_null(strstr(s, "\"title\":\"Bad Request\""));
  assert_non_null(strstr(s, "bad ? byte"));
  free(s);
  assert_string_equal(tb_http_reason(431), "Request Header Fields Too Large");
  assert_string_equal(tb_http_reason(799), "Unknown");
}

static void test_start_reports_bad_address_and_busy_port(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct tb_http_server_config cfg = {0};
  cfg.name = "local_api";
  cfg.host = "localhost"; /* not numeric */
  cfg.handler = handler;
  tb_http_limits_default(&cfg.limits);
  struct tb_http_server *srv = NULL;
  char err[512];
  assert_int_not_equal(tb_http_server_start(&loop, &cfg, &srv, err), 0);
  assert_non_null(strstr(err, "localhost"));
  struct fx *fx = fx_start(NULL);
  cfg.host = "127.0.0.1";
  cfg.port = fx->port;
  assert_int_equal(tb_http_server_start(&loop, &cfg, &srv, err), TB_EIO);
  assert_non_null(strstr(err, "local_api: cannot listen on 127.0.0.1:"));
  uv_run(&loop, UV_RUN_DEFAULT); /* frees the failed server */
  assert_int_equal(uv_loop_close(&loop), 0);
  fx_stop(fx);
}

/* Mutated requests and raw noise, each followed by a half-close: every one
 * gets either a complete answer or a clean close, and the server survives. */
static void test_hostile_bytes_never_hang_or_crash(void **state) {
  (void)state;
  struct tb_http_limits l = limits();
  l.header_timeout_ms = 150;
  l.body_timeout_ms = 150;
  struct fx *fx = fx_start(&l);
  static const char *seeds[] = {
      "GET / HTTP/1.1\r\nHost: t\r\n\r\n",
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
      "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
      "GET /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
      "GET /\x00 HTTP/1.1\r\n\r\n",
      "\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
  };
  unsigned seed = 12345;
  for (int i = 0; i < 70; i++) {
    char buf[512];
    const char *s = seeds[i % 7];
    size_t n = strlen(s);
    memcpy(buf, s, n);
    if (i >= 7) /* flip a few bytes */
      for (int k = 0; k < 1 + i % 4; k++) {
        seed = seed * 1103515245u + 12345u;
        buf[(seed >> 8) % n] = (char)(seed >> 16);
      }
    struct cli *c = cli_new(fx->port);
    cli_send(c, buf, n);
    shutdown(c->fd, SHUT_WR);
    for (;;) { /* read to EOF; a reply, if any, must be well-formed */
      ssize_t r = cli_fill(c);
      assert_true(r >= 0);
      if (r == 0) break;
    }
    if (c->len > 0) assert_memory_equal(c->buf, "HTTP/1.1 ", 9);
    if (i < 3) /* intact requests + half-close are still answered */
      assert_memory_equal(c->buf, "HTTP/1.1 200 ", 13);
    cli_free(c);
  }
  struct cli *c = cli_new(fx->port);
  cli_sends(c, GET("/still"));
  expect_simple(c, 200, "GET /still  0");
  cli_free(c);
  fx_stop(fx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_answered_with_standard_headers),
      cmocka_unit_test(test_keepalive_serves_two_requests_on_one_connection),
      cmocka_unit_test(test_pipelined_requests_answered_in_order),
      cmocka_unit_test(test_pipeline_over_buffer_cap_still_answered_in_order),
      cmocka_unit_test(test_post_content_length_body_delivered_intact),
      cmocka_unit_test(test_chunked_body_delivered),
      cmocka_unit_test(test_expect_100_continue_gets_100_then_answer),
      cmocka_unit_test(test_413_for_content_length_over_limit_before_body),
      cmocka_unit_test(test_413_for_chunked_body_over_limit),
      cmocka_unit_test(test_411_for_post_without_length),
      cmocka_unit_test(test_431_for_too_many_headers),
      cmocka_unit_test(test_431_for_too_many_header_bytes),
      cmocka_unit_test(test_400_for_garbage_with_problem_body),
      cmocka_unit_test(test_505_for_http2_preface_and_other_versions),
      cmocka_unit_test(test_408_header_timeout_for_slowloris),
      cmocka_unit_test(test_408_body_idle_timeout),
      cmocka_unit_test(test_keepalive_idle_timeout_answers_408_and_closes),
      cmocka_unit_test(test_client_reset_with_pending_async_answer),
      cmocka_unit_test(test_graceful_close_finishes_inflight_then_closes),
      cmocka_unit_test(test_max_connections_enforced_with_503),
      cmocka_unit_test(test_observer_sees_every_answer),
      cmocka_unit_test(test_http10_closes_after_answer_unless_keepalive),
      cmocka_unit_test(test_head_answered_without_body),
      cmocka_unit_test(test_problem_build_shape),
      cmocka_unit_test(test_start_reports_bad_address_and_busy_port),
      cmocka_unit_test(test_hostile_bytes_never_hang_or_crash),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
