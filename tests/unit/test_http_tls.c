/*
 * test_http_tls.c — the HTTP server as an HTTPS listener with client
 * certificates (the partner-facing listener), over real sockets.
 *
 * The development PKI is made once per run with certs/make-dev-pki.sh in a
 * temporary directory. Like test_http_server.c, the server's loop runs in a
 * second thread and the test is a blocking client; here the client speaks
 * TLS with OpenSSL on a plain socket, and the same listener is also checked
 * with independent clients: `curl`, `openssl s_client` and Node's https
 * module (skipped when a tool is missing). The server's log goes to a file
 * so that tests can assert the lines an operator would see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "http/server.h"
#include "tbgw/error.h"

/* ---- PKI and log (made once per run) ------------------------------------- */

static char g_dir[256];   /* temporary directory: pki/, server.log */
static char g_log[300];
static int g_log_fd = -1;
static X509_STORE *g_laizhou_ca, *g_zhaoyuan_ca;

static const char *pki(const char *rel) {
  static char bufs[8][400];
  static int i;
  char *b = bufs[i++ % 8];
  snprintf(b, sizeof bufs[0], "%s/pki/%s", g_dir, rel);
  return b;
}

static int have_tool(const char *name) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
  return system(cmd) == 0;
}

static int group_setup(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN); /* the client writes to sockets the server closed */
  const char *root = getenv("TB_REPO_ROOT");
  if (root == NULL) root = ".";
  snprintf(g_dir, sizeof g_dir, "/tmp/tb-http-tls-XXXXXX");
  if (mkdtemp(g_dir) == NULL) return -1;
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s/certs/make-dev-pki.sh %s/pki >/dev/null", root, g_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "cannot make the dev PKI: %s\n", cmd);
    return -1;
  }
  snprintf(g_log, sizeof g_log, "%s/server.log", g_dir);
  g_log_fd = open(g_log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (g_log_fd < 0) return -1;
  tb_log_setup(g_log_fd, TB_LOG_DEBUG);
  char err[TB_ERRMSG_MAX];
  if (tb_http_tls_ca_store_new(pki("partners/laizhou/ca.pem"), &g_laizhou_ca, err) != 0 ||
      tb_http_tls_ca_store_new(pki("partners/zhaoyuan/ca.pem"), &g_zhaoyuan_ca, err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  X509_STORE_free(g_laizhou_ca);
  X509_STORE_free(g_zhaoyuan_ca);
  tb_log_setup(2, TB_LOG_INFO);
  if (g_log_fd >= 0) close(g_log_fd);
  if (getenv("TB_TEST_KEEP") != NULL) {
    fprintf(stderr, "kept %s\n", g_dir);
    return 0;
  }
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
  return system(cmd) == 0 ? 0 : -1;
}

static long log_size(void) {
  struct stat st;
  return stat(g_log, &st) == 0 ? (long)st.st_size : 0;
}

/* The log written since `from`, NUL-terminated, malloc'd. */
static char *log_since(long from) {
  FILE *f = fopen(g_log, "r");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long end = ftell(f);
  if (from > end) from = end;
  fseek(f, from, SEEK_SET);
  char *s = calloc(1, (size_t)(end - from) + 1);
  assert_non_null(s);
  size_t n = fread(s, 1, (size_t)(end - from), f);
  s[n] = '\0';
  fclose(f);
  return s;
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

/* Waits (up to 3 s) until a log line since `from` holds every needle. */
static int log_has(long from, const char *a, const char *b) {
  uint64_t until = now_ms() + 3000;
  for (;;) {
    char *s = log_since(from);
    int found = 0;
    for (char *line = strtok(s, "\n"); line && !found; line = strtok(NULL, "\n"))
      found = strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL);
    free(s);
    if (!found && now_ms() > until) {
      char *all = log_since(from);
      fprintf(stderr, "log lacks [%s][%s]:\n%s\n", a, b ? b : "", all);
      free(all);
    }
    if (found) return 1;
    if (now_ms() > until) return 0;
    sleep_ms(20);
  }
}

static int count_lines(long from, const char *needle) {
  char *s = log_since(from);
  int n = 0;
  for (const char *p = s; (p = strstr(p, needle)) != NULL; p++) n++;
  free(s);
  return n;
}

/* ---- server fixture (loop thread) ---------------------------------------- */

struct fx {
  uv_loop_t loop;
  uv_async_t done;
  struct tb_http_server *srv;
  int port;
  pthread_t th;
  int server_closing;
  atomic_int closed;
  atomic_int handled;
};

struct pending {
  uv_timer_t t;
  struct tb_http_exchange *ex;
};

static void on_server_closed(void *ud) { atomic_store(&((struct fx *)ud)->closed, 1); }
static void on_pending_closed(uv_handle_t *h) { free(h->data); }

static void on_pending_timer(uv_timer_t *t) {
  struct pending *p = t->data;
  tb_http_respond(p->ex, 200, "text/plain", "late", 4, NULL);
  uv_close((uv_handle_t *)t, on_pending_closed);
}

/* /whoami: the verified peer and which partner CA issued it.
 * /echo: the body back. ?delay=N: "late" after N ms. Else "METHOD path". */
static void handler(struct tb_http_exchange *ex, const struct tb_http_request *req, void *ud) {
  struct fx *fx = ud;
  atomic_fetch_add(&fx->handled, 1);
  if (strcmp(req->path, "/whoami") == 0) {
    char b[512];
    int n = snprintf(b, sizeof b, "subject=%s;laizhou=%d;zhaoyuan=%d",
                     req->peer_subject ? req->peer_subject : "-",
                     tb_http_request_peer_issued_by(req, g_laizhou_ca),
                     tb_http_request_peer_issued_by(req, g_zhaoyuan_ca));
    tb_http_respond(ex, 200, "text/plain", b, (size_t)n, NULL);
    return;
  }
  if (strcmp(req->path, "/echo") == 0) {
    tb_http_respond(ex, 200, "application/octet-stream", req->body, req->body_len, NULL);
    return;
  }
  const char *d = strstr(req->query, "delay=");
  if (d != NULL) {
    struct pending *p = calloc(1, sizeof *p);
    if (p == NULL) abort();
    p->ex = ex;
    uv_timer_init(&fx->loop, &p->t);
    p->t.data = p;
    uv_timer_start(&p->t, on_pending_timer, strtoull(d + 6, NULL, 10), 0);
    return;
  }
  char b[256];
  int n = snprintf(b, sizeof b, "%s %s", req->method_name, req->path);
  tb_http_respond(ex, 200, "text/plain", b, (size_t)n, NULL);
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

static const char *g_partner_cas[2];

/* The partner listener's shape: our server certificate, client
 * certificates per `verify`, trusting laizhou's and zhaoyuan's CAs. */
static struct tb_http_tls_config tls_config(enum tb_http_tls_verify verify) {
  g_partner_cas[0] = pki("partners/laizhou/ca.pem");
  g_partner_cas[1] = pki("partners/zhaoyuan/ca.pem");
  struct tb_http_tls_config t = {0};
  t.certificate_file = pki("gateway/tls-server.pem");
  t.private_key_file = pki("gateway/tls-server.key");
  t.verify = verify;
  t.client_ca_files = g_partner_cas;
  t.client_ca_count = 2;
  return t;
}

static struct fx *fx_start_lim(enum tb_http_tls_verify verify, const struct tb_http_limits *lim) {
  struct fx *fx = calloc(1, sizeof *fx);
  assert_non_null(fx);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  uv_async_init(&fx->loop, &fx->done, on_done);
  uv_unref((uv_handle_t *)&fx->done);
  fx->done.data = fx;
  struct tb_http_tls_config tls = tls_config(verify);
  struct tb_http_server_config cfg = {0};
  cfg.name = "partner_api";
  cfg.host = "127.0.0.1";
  cfg.limits = *lim;
  cfg.handler = handler;
  cfg.handler_ud = fx;
  cfg.tls = &tls;
  char err[TB_ERRMSG_MAX] = "";
  int r = tb_http_server_start(&fx->loop, &cfg, &fx->srv, err);
  if (r != 0) fprintf(stderr, "start: %s\n", err);
  assert_int_equal(r, 0);
  fx->port = tb_http_server_port(fx->srv);
  assert_int_equal(pthread_create(&fx->th, NULL, loop_main, fx), 0);
  return fx;
}

static struct fx *fx_start_with(enum tb_http_tls_verify verify, uint64_t header_timeout_ms) {
  struct tb_http_limits lim;
  tb_http_limits_default(&lim);
  lim.header_timeout_ms = header_timeout_ms;
  return fx_start_lim(verify, &lim);
}

static struct fx *fx_start(void) { return fx_start_with(TB_HTTP_TLS_VERIFY_REQUIRED, 5000); }

static void fx_request_close(struct fx *fx) { uv_async_send(&fx->done); }

static void fx_join(struct fx *fx) {
  pthread_join(fx->th, NULL);
  assert_int_equal(atomic_load(&fx->closed), 1);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  free(fx);
}

static void fx_stop(struct fx *fx) {
  fx_request_close(fx);
  fx_join(fx);
}

/* ---- TLS client (test thread, OpenSSL on a blocking socket) -------------- */

/* A client context that checks our server certificate (gateway CA, IP
 * 127.0.0.1) and presents `who`'s client certificate ("laizhou",
 * "wujiang", "gateway"; NULL: none). max_version 0: any. */
static SSL_CTX *client_ctx(const char *who, int max_version) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  assert_non_null(ctx);
  assert_int_equal(SSL_CTX_load_verify_locations(ctx, pki("gateway/ca.pem"), NULL), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (max_version) {
    if (max_version < TLS1_2_VERSION) {
      /* Debian's defaults forbid old protocols in the client too. */
      SSL_CTX_set_security_level(ctx, 0);
      SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
      assert_int_equal(SSL_CTX_set_cipher_list(ctx, "DEFAULT:@SECLEVEL=0"), 1);
    }
    SSL_CTX_set_max_proto_version(ctx, max_version);
  }
  if (who) {
    char cert[64], key[64];
    snprintf(cert, sizeof cert, "%s%s/tls-client.pem", strcmp(who, "gateway") ? "partners/" : "",
             who);
    snprintf(key, sizeof key, "%s%s/tls-client.key", strcmp(who, "gateway") ? "partners/" : "",
             who);
    assert_int_equal(SSL_CTX_use_certificate_file(ctx, pki(cert), SSL_FILETYPE_PEM), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, pki(key), SSL_FILETYPE_PEM), 1);
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
  return ctx;
}

struct cli {
  int fd;
  SSL *ssl;
  char *buf;
  size_t len, cap;
};

struct resp {
  int status;
  char head[2048];
  char *body;
  size_t body_len;
};

static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct timeval tv = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
  return fd;
}

/* Reads until the server closes; returns what arrived (or -1 on timeout). */
static ssize_t read_until_closed(int fd, char *buf, size_t cap, uint64_t *elapsed, uint64_t t0) {
  size_t len = 0;
  for (;;) {
    ssize_t r = recv(fd, buf + len, cap - len, 0);
    if (r == 0 || (r < 0 && errno == ECONNRESET)) break;
    if (r < 0) return -1;
    len += (size_t)r;
    if (len == cap) break;
  }
  *elapsed = now_ms() - t0;
  return (ssize_t)len;
}

/* Connects and handshakes; returns 1 if the client's handshake succeeded
 * (with TLS 1.3 a refused client certificate shows only on the first read). */
static int cli_open(struct cli *c, int port, SSL_CTX *ctx, SSL_SESSION *resume) {
  memset(c, 0, sizeof *c);
  c->fd = tcp_connect(port);
  c->ssl = SSL_new(ctx);
  assert_non_null(c->ssl);
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), "127.0.0.1");
  SSL_set_fd(c->ssl, c->fd);
  if (resume) SSL_set_session(c->ssl, resume);
  ERR_clear_error();
  int ok = SSL_connect(c->ssl) == 1;
  ERR_clear_error();
  return ok;
}

static void cli_close(struct cli *c) {
  if (c->ssl) {
    /* A session freed without close_notify is not resumable. */
    ERR_clear_error();
    if (SSL_is_init_finished(c->ssl)) (void)SSL_shutdown(c->ssl);
    ERR_clear_error();
    SSL_free(c->ssl);
  }
  if (c->fd >= 0) close(c->fd);
  free(c->buf);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

static int cli_send(struct cli *c, const void *data, size_t n) {
  ERR_clear_error();
  size_t w = 0;
  int ok = n == 0 || (SSL_write_ex(c->ssl, data, n, &w) == 1 && w == n);
  ERR_clear_error();
  return ok ? 0 : -1;
}

/* >0 bytes read, 0 close_notify, -1 error/EOF without close_notify/timeout. */
static int cli_fill(struct cli *c) {
  if (c->cap - c->len < 65536) {
    c->cap = c->cap ? c->cap * 2 : 262144;
    c->buf = realloc(c->buf, c->cap);
    assert_non_null(c->buf);
  }
  size_t got = 0;
  ERR_clear_error();
  if (SSL_read_ex(c->ssl, c->buf + c->len, c->cap - c->len - 1, &got) == 1) {
    c->len += got;
    return (int)got;
  }
  int e = SSL_get_error(c->ssl, 0);
  ERR_clear_error();
  return e == SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

static char *find(const char *hay, size_t n, const char *needle) {
  size_t k = strlen(needle);
  for (size_t i = 0; i + k <= n; i++)
    if (memcmp(hay + i, needle, k) == 0) return (char *)hay + i;
  return NULL;
}

/* One Content-Length framed response; 0 or -1. */
static int cli_read(struct cli *c, struct resp *r) {
  memset(r, 0, sizeof *r);
  char *end;
  while ((end = find(c->buf, c->len, "\r\n\r\n")) == NULL)
    if (cli_fill(c) <= 0) return -1;
  size_t hlen = (size_t)(end - c->buf) + 4;
  assert_true(hlen < sizeof r->head);
  memcpy(r->head, c->buf, hlen);
  r->head[hlen] = '\0';
  if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) return -1;
  const char *cl = strstr(r->head, "Content-Length: ");
  size_t clen = cl ? strtoul(cl + 16, NULL, 10) : 0;
  while (c->len < hlen + clen)
    if (cli_fill(c) <= 0) return -1;
  r->body = malloc(clen + 1);
  assert_non_null(r->body);
  memcpy(r->body, c->buf + hlen, clen);
  r->body[clen] = '\0';
  r->body_len = clen;
  memmove(c->buf, c->buf + hlen + clen, c->len - hlen - clen);
  c->len -= hlen + clen;
  return 0;
}

static int cli_get(struct cli *c, const char *path, struct resp *r) {
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
  if (cli_send(c, req, (size_t)n) != 0) return -1;
  return cli_read(c, r);
}

/* A refused handshake: no answer ever comes, the connection ends. */
static void assert_refused(int port, SSL_CTX *ctx) {
  struct cli c;
  int hs = cli_open(&c, port, ctx, NULL);
  if (hs) {
    struct resp r;
    (void)cli_send(&c, "GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n", 33);
    assert_int_equal(cli_read(&c, &r), -1);
    free(r.body);
  }
  cli_close(&c);
}

/* ---- tests ---------------------------------------------------------------- */

static void test_mtls_request_carries_verified_peer_and_issuing_partner(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  for (int v = 0; v < 2; v++) { /* TLS 1.3, then TLS 1.2 */
    SSL_CTX *ctx = client_ctx("laizhou", v ? TLS1_2_VERSION : 0);
    struct cli c;
    assert_true(cli_open(&c, fx->port, ctx, NULL));
    assert_string_equal(SSL_get_version(c.ssl), v ? "TLSv1.2" : "TLSv1.3");
    if (v) assert_string_equal(SSL_get_cipher_name(c.ssl), "ECDHE-RSA-AES128-GCM-SHA256");
    struct resp r;
    assert_int_equal(cli_get(&c, "/whoami", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body,
                        "subject=CN=laizhou 370683 client,O=tongban-gateway dev;laizhou=1;"
                        "zhaoyuan=0");
    free(r.body);
    cli_close(&c);
    SSL_CTX_free(ctx);
  }
  /* zhaoyuan's certificate: the other answer. */
  SSL_CTX *ctx = client_ctx("zhaoyuan", 0);
  struct cli c;
  assert_true(cli_open(&c, fx->port, ctx, NULL));
  struct resp r;
  assert_int_equal(cli_get(&c, "/whoami", &r), 0);
  assert_non_null(strstr(r.body, "laizhou=0;zhaoyuan=1"));
  free(r.body);
  cli_close(&c);
  SSL_CTX_free(ctx);
  fx_stop(fx);
}

static void test_missing_client_cert_refused_and_logged(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  for (int v = 0; v < 2; v++) {
    long from = log_size();
    SSL_CTX *ctx = client_ctx(NULL, v ? TLS1_2_VERSION : 0);
    assert_refused(fx->port, ctx);
    SSL_CTX_free(ctx);
    assert_true(log_has(from, "\"http.tls.handshake_failed\"", "peer did not return a certificate"));
    assert_true(log_has(from, "\"http.tls.handshake_failed\"", "\"peer\":\"127.0.0.1:"));
  }
  assert_int_equal(atomic_load(&fx->handled), 0);
  fx_stop(fx);
}

static void test_client_cert_from_unknown_ca_refused(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  /* wujiang's CA is not configured; the gateway's own client certificate
   * comes with its root (the client has it in its store), which the
   * listener does not trust either. */
  const char *who[] = {"wujiang", "gateway"};
  const char *why[] = {"unable to get local issuer certificate",
                       "self-signed certificate in certificate chain"};
  for (int i = 0; i < 2; i++) {
    long from = log_size();
    SSL_CTX *ctx = client_ctx(who[i], 0);
    assert_refused(fx->port, ctx);
    SSL_CTX_free(ctx);
    assert_true(log_has(from, "certificate verify failed", why[i]));
  }
  assert_int_equal(atomic_load(&fx->handled), 0);
  fx_stop(fx);
}

static void test_tls11_and_weak_ciphers_refused(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  long from = log_size();
  SSL_CTX *ctx = client_ctx("laizhou", TLS1_1_VERSION);
  struct cli c;
  assert_false(cli_open(&c, fx->port, ctx, NULL));
  cli_close(&c);
  SSL_CTX_free(ctx);
  assert_true(log_has(from, "http.tls.handshake_failed", "unsupported protocol"));
  /* TLS 1.2 offering only RSA key exchange or only CBC: no shared cipher. */
  const char *weak[] = {"AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384"};
  for (int i = 0; i < 2; i++) {
    from = log_size();
    ctx = client_ctx("laizhou", TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_set_cipher_list(ctx, weak[i]), 1);
    assert_false(cli_open(&c, fx->port, ctx, NULL));
    cli_close(&c);
    SSL_CTX_free(ctx);
    assert_true(log_has(from, "http.tls.handshake_failed", "no shared cipher"));
  }
  if (have_tool("openssl")) { /* an independent TLS 1.1 client */
    from = log_size();
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl s_client -connect 127.0.0.1:%d -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' "
             "-cert %s -key %s -CAfile %s </dev/null >/dev/null 2>&1",
             fx->port, pki("partners/laizhou/tls-client.pem"),
             pki("partners/laizhou/tls-client.key"), pki("gateway/ca.pem"));
    assert_int_not_equal(system(cmd), 0);
    assert_true(log_has(from, "http.tls.handshake_failed", "unsupported protocol"));
  }
  assert_int_equal(atomic_load(&fx->handled), 0);
  fx_stop(fx);
}

static void test_optional_and_none_modes(void **state) {
  (void)state;
  struct fx *fx = fx_start_with(TB_HTTP_TLS_VERIFY_OPTIONAL, 5000);
  const char *who[] = {NULL, "laizhou"};
  const char *want[] = {"subject=-;laizhou=0;zhaoyuan=0",
                        "subject=CN=laizhou 370683 client,O=tongban-gateway dev;laizhou=1;"
                        "zhaoyuan=0"};
  for (int i = 0; i < 2; i++) {
    SSL_CTX *ctx = client_ctx(who[i], 0);
    struct cli c;
    assert_true(cli_open(&c, fx->port, ctx, NULL));
    struct resp r;
    assert_int_equal(cli_get(&c, "/whoami", &r), 0);
    assert_string_equal(r.body, want[i]);
    free(r.body);
    cli_close(&c);
    SSL_CTX_free(ctx);
  }
  /* Optional still refuses a certificate that does not verify. */
  SSL_CTX *ctx = client_ctx("wujiang", 0);
  assert_refused(fx->port, ctx);
  SSL_CTX_free(ctx);
  fx_stop(fx);

  fx = fx_start_with(TB_HTTP_TLS_VERIFY_NONE, 5000);
  ctx = client_ctx("laizhou", 0); /* not asked for: not sent */
  struct cli c;
  assert_true(cli_open(&c, fx->port, ctx, NULL));
  struct resp r;
  assert_int_equal(cli_get(&c, "/whoami", &r), 0);
  assert_string_equal(r.body, "subject=-;laizhou=0;zhaoyuan=0");
  free(r.body);
  cli_close(&c);
  SSL_CTX_free(ctx);
  fx_stop(fx);
}

static void test_keepalive_pipelining_and_100_requests(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  SSL_CTX *ctx = client_ctx("laizhou", 0);
  struct cli c;
  assert_true(cli_open(&c, fx->port, ctx, NULL));
  /* Three requests in one write (one TLS record), answered in order. */
  const char *three = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                      "GET /c HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(cli_send(&c, three, strlen(three)), 0);
  const char *want[] = {"GET /a", "hello", "GET /c"};
  for (int i = 0; i < 3; i++) {
    struct resp r;
    assert_int_equal(cli_read(&c, &r), 0);
    assert_string_equal(r.body, want[i]);
    assert_non_null(strstr(r.head, "Connection: keep-alive"));
    free(r.body);
  }
  /* 100 more on the same connection. */
  for (int i = 0; i < 100; i++) {
    char path[32];
    snprintf(path, sizeof path, "/n%d", i);
    struct resp r;
    assert_int_equal(cli_get(&c, path, &r), 0);
    char want1[40];
    snprintf(want1, sizeof want1, "GET %s", path);
    assert_string_equal(r.body, want1);
    free(r.body);
  }
  assert_int_equal(atomic_load(&fx->handled), 103);
  cli_close(&c);
  SSL_CTX_free(ctx);
  fx_stop(fx);
}

/* A peer that pipelines far more than the pipeline buffer and the write
 * high-water mark without reading: the server stops reading, and every
 * answer still arrives, in order, once the peer reads. */
static void test_pipeline_flood_over_tls_answered_in_order(void **state) {
  (void)state;
  struct tb_http_limits lim;
  tb_http_limits_default(&lim);
  lim.max_pipeline_bytes = 16384;
  struct fx *fx = fx_start_lim(TB_HTTP_TLS_VERIFY_REQUIRED, &lim);
  SSL_CTX *ctx = client_ctx("laizhou", 0);
  struct cli c;
  assert_true(cli_open(&c, fx->port, ctx, NULL));
  enum { N = 3000 };
  size_t cap = (size_t)N * 40, len = 0;
  char *reqs = malloc(cap);
  assert_non_null(reqs);
  for (int i = 0; i < N; i++)
    len += (size_t)snprintf(reqs + len, cap - len, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
  assert_int_equal(cli_send(&c, reqs, len), 0);
  free(reqs);
  for (int i = 0; i < N; i++) {
    struct resp r;
    assert_int_equal(cli_read(&c, &r), 0);
    char want[32];
    snprintf(want, sizeof want, "GET /p%d", i);
    assert_string_equal(r.body, want);
    free(r.body);
  }
  cli_close(&c);
  SSL_CTX_free(ctx);
  fx_stop(fx);
}

/* Over max_connections a TLS listener closes without a word: a 503 would
 * first cost a handshake. */
static void test_over_max_connections_closed_without_handshake(void **state) {
  (void)state;
  struct tb_http_limits lim;
  tb_http_limits_default(&lim);
  lim.max_connections = 1;
  struct fx *fx = fx_start_lim(TB_HTTP_TLS_VERIFY_REQUIRED, &lim);
  long from = log_size();
  SSL_CTX *ctx = client_ctx("laizhou", 0);
  struct cli c;
  assert_true(cli_open(&c, fx->port, ctx, NULL));
  struct resp r;
  assert_int_equal(cli_get(&c, "/x", &r), 0);
  free(r.body);
  int fd = tcp_connect(fx->port);
  char buf[64];
  uint64_t e;
  assert_int_equal(read_until_closed(fd, buf, sizeof buf, &e, now_ms()), 0);
  close(fd);
  assert_true(log_has(from, "http.conn.limit", "\"action\":\"closed\""));
  assert_int_equal(cli_get(&c, "/y", &r), 0); /* the admitted one is unaffected */
  free(r.body);
  cli_close(&c);
  SSL_CTX_free(ctx);
  fx_stop(fx);
}

static void test_large_body_both_ways(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  SSL_CTX *ctx = client_ctx("laizhou", 0);
  struct cli c;
  assert_true(cli_open(&c, fx->port, ctx, NULL));
  size_t n = 1u << 20;
  char *body = malloc(n);
  assert_non_null(body);
  for (size_t i = 0; i < n; i++) body[i] = (char)('a' + (i * 7919u) % 26u);
  for (int round = 0; round < 2; round++) { /* twice: the connection stays usable */
    char head[128];
    int hn = snprintf(head, sizeof head,
                      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", n);
    assert_int_equal(cli_send(&c, head, (size_t)hn), 0);
    assert_int_equal(cli_send(&c, body, n), 0);
    struct resp r;
    assert_int_equal(cli_read(&c, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, n);
    assert_memory_equal(r.body, body, n);
    free(r.body);
  }
  free(body);
  cli_close(&c);
  SSL_CTX_free(ctx);
  fx_stop(fx);
}

static void test_sessions_resume(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  for (int v = 0; v < 2; v++) {
    SSL_CTX *ctx = client_ctx("laizhou", v ? TLS1_2_VERSION : 0);
    struct cli c;
    assert_true(cli_open(&c, fx->port, ctx, NULL));
    struct resp r;
    assert_int_equal(cli_get(&c, "/whoami", &r), 0); /* TLS 1.3 tickets arrive with data */
    free(r.body);
    SSL_SESSION *sess = SSL_get1_session(c.ssl);
    assert_non_null(sess);
    cli_close(&c);
    assert_true(cli_open(&c, fx->port, ctx, sess));
    assert_int_equal(SSL_session_reused(c.ssl), 1);
    /* The resumed session still names the verified client and its CA. */
    assert_int_equal(cli_get(&c, "/whoami", &r), 0);
    assert_string_equal(r.body,
                        "subject=CN=laizhou 370683 client,O=tongban-gateway dev;laizhou=1;"
                        "zhaoyuan=0");
    free(r.body);
    cli_close(&c);
    SSL_SESSION_free(sess);
    SSL_CTX_free(ctx);
  }
  fx_stop(fx);
}

/* Bytes of a real ClientHello, made with a memory BIO. */
static size_t client_hello(unsigned char *out, size_t cap) {
  SSL_CTX *ctx = client_ctx("laizhou", 0);
  SSL *ssl = SSL_new(ctx);
  BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rb, wb);
  assert_int_equal(SSL_connect(ssl), -1); /* wants the ServerHello */
  char *p = NULL;
  long n = BIO_get_mem_data(wb, &p);
  assert_true(n > 100 && (size_t)n <= cap);
  memcpy(out, p, (size_t)n);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ERR_clear_error();
  return (size_t)n;
}

static void test_stalled_handshake_closed_by_header_timeout(void **state) {
  (void)state;
  struct fx *fx = fx_start_with(TB_HTTP_TLS_VERIFY_REQUIRED, 1500);
  unsigned char hello[4096];
  size_t hn = client_hello(hello, sizeof hello);
  for (int half = 0; half < 2; half++) {
    long from = log_size();
    uint64_t t0 = now_ms();
    int fd = tcp_connect(fx->port);
    if (half) assert_int_equal(send(fd, hello, hn / 2, MSG_NOSIGNAL), (ssize_t)(hn / 2));
    char buf[512];
    uint64_t elapsed = 0;
    assert_int_equal(read_until_closed(fd, buf, sizeof buf, &elapsed, t0), 0);
    assert_true(elapsed >= 1400 && elapsed < 4000);
    close(fd);
    assert_true(log_has(from, "\"http.timeout\"", "\"kind\":\"tls_handshake\""));
  }
  /* The handshake's time counts: a slow but complete handshake leaves
   * the rest of the window for the first request, and the server works. */
  SSL_CTX *ctx = client_ctx("laizhou", 0);
  struct cli c;
  assert_true(cli_open(&c, fx->port, ctx, NULL));
  struct resp r;
  assert_int_equal(cli_get(&c, "/x", &r), 0);
  free(r.body);
  cli_close(&c);
  SSL_CTX_free(ctx);
  fx_stop(fx);
}

static void test_plain_http_and_garbage_to_tls_port_closed_and_logged(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
  /* A handshake record header, then nonsense. */
  static const char junk[] = "\x16\x03\x01\x00\x05garbage-garbage-garbage";
  const char *inputs[] = {http, junk};
  size_t lens[] = {sizeof http - 1, sizeof junk - 1};
  const char *reasons[] = {"http request", "\"reason\":\""};
  for (int i = 0; i < 2; i++) {
    long from = log_size();
    uint64_t t0 = now_ms();
    int fd = tcp_connect(fx->port);
    assert_true(send(fd, inputs[i], lens[i], MSG_NOSIGNAL) > 0);
    char buf[512];
    uint64_t elapsed = 0;
    ssize_t n = read_until_closed(fd, buf, sizeof buf - 1, &elapsed, t0);
    assert_true(n >= 0);
    buf[n] = '\0';
    assert_null(strstr(buf, "HTTP/1.1")); /* no plaintext answer */
    assert_true(elapsed < 2500);
    close(fd);
    assert_true(log_has(from, "\"http.tls.handshake_failed\"", reasons[i]));
  }
  /* Many failures in a burst are rate-limited, and the next line says how
   * many were left out. */
  long from = log_size();
  for (int i = 0; i < 25; i++) {
    int fd = tcp_connect(fx->port);
    (void)send(fd, "hello\r\n\r\n", 9, MSG_NOSIGNAL);
    char buf[64];
    uint64_t e;
    (void)read_until_closed(fd, buf, sizeof buf, &e, now_ms());
    close(fd);
  }
  sleep_ms(100);
  assert_true(count_lines(from, "http.tls.handshake_failed") <= 12);
  sleep_ms(1100);
  int fd = tcp_connect(fx->port);
  (void)send(fd, "hello\r\n\r\n", 9, MSG_NOSIGNAL);
  char buf[64];
  uint64_t e;
  (void)read_until_closed(fd, buf, sizeof buf, &e, now_ms());
  close(fd);
  assert_true(log_has(from, "http.tls.handshake_failed", "\"suppressed\":"));
  assert_int_equal(atomic_load(&fx->handled), 0);
  fx_stop(fx);
}

static void test_graceful_close_with_tls_connections_open(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  SSL_CTX *ctx = client_ctx("laizhou", 0);
  struct cli idle, busy;
  assert_true(cli_open(&idle, fx->port, ctx, NULL));
  struct resp r;
  assert_int_equal(cli_get(&idle, "/x", &r), 0); /* now an idle keep-alive connection */
  free(r.body);
  assert_true(cli_open(&busy, fx->port, ctx, NULL));
  assert_int_equal(cli_send(&busy, "GET /slow?delay=300 HTTP/1.1\r\nHost: x\r\n\r\n", 41), 0);
  sleep_ms(100);
  fx_request_close(fx);
  /* In flight: answered with Connection: close, then close_notify. */
  assert_int_equal(cli_read(&busy, &r), 0);
  assert_string_equal(r.body, "late");
  assert_non_null(strstr(r.head, "Connection: close"));
  free(r.body);
  assert_int_equal(cli_fill(&busy), 0);
  /* Idle: closed at once, with close_notify. */
  assert_int_equal(cli_fill(&idle), 0);
  cli_close(&idle);
  cli_close(&busy);
  SSL_CTX_free(ctx);
  fx_join(fx);
}

static void test_client_close_notify_ends_connection_cleanly(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  SSL_CTX *ctx = client_ctx("laizhou", 0);
  struct cli c;
  assert_true(cli_open(&c, fx->port, ctx, NULL));
  /* A request followed by close_notify in the same breath is still answered. */
  assert_int_equal(cli_send(&c, "GET /last HTTP/1.1\r\nHost: x\r\n\r\n", 31), 0);
  assert_int_equal(SSL_shutdown(c.ssl), 0);
  struct resp r;
  assert_int_equal(cli_read(&c, &r), 0);
  assert_string_equal(r.body, "GET /last");
  free(r.body);
  assert_int_equal(cli_fill(&c), 0); /* and the server says close_notify too */
  cli_close(&c);
  SSL_CTX_free(ctx);
  fx_stop(fx);
}

/* ---- independent clients --------------------------------------------------- */

static int run_capture(const char *cmd, char *out, size_t cap) {
  FILE *p = popen(cmd, "r");
  assert_non_null(p);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_curl_openssl_and_node_clients(void **state) {
  (void)state;
  struct fx *fx = fx_start();
  char cmd[2048], out[4096];
  const char *want = "subject=CN=laizhou 370683 client,O=tongban-gateway dev;laizhou=1;zhaoyuan=0";
  if (have_tool("curl")) {
    const char *versions[] = {"", "--tlsv1.2 --tls-max 1.2"};
    for (int v = 0; v < 2; v++) {
      /* Two URLs: the second request reuses the connection. */
      snprintf(cmd, sizeof cmd,
               "curl -sS --max-time 10 %s --cacert %s --cert %s --key %s "
               "https://127.0.0.1:%d/whoami https://127.0.0.1:%d/whoami 2>&1",
               versions[v], pki("gateway/ca.pem"), pki("partners/laizhou/tls-client.pem"),
               pki("partners/laizhou/tls-client.key"), fx->port, fx->port);
      assert_int_equal(run_capture(cmd, out, sizeof out), 0);
      char both[512];
      snprintf(both, sizeof both, "%s%s", want, want);
      assert_string_equal(out, both);
    }
    /* Without a client certificate curl gets no answer. */
    snprintf(cmd, sizeof cmd,
             "curl -sS --max-time 10 --cacert %s https://localhost:%d/whoami 2>&1",
             pki("gateway/ca.pem"), fx->port);
    assert_int_not_equal(run_capture(cmd, out, sizeof out), 0);
    assert_null(strstr(out, "subject="));
  }
  if (have_tool("openssl")) {
    snprintf(cmd, sizeof cmd,
             "printf 'GET /whoami HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | "
             "openssl s_client -quiet -verify_return_error -connect 127.0.0.1:%d "
             "-cert %s -key %s -CAfile %s 2>/dev/null",
             fx->port, pki("partners/zhaoyuan/tls-client.pem"),
             pki("partners/zhaoyuan/tls-client.key"), pki("gateway/ca.pem"));
    assert_int_equal(run_capture(cmd, out, sizeof out), 0);
    assert_non_null(strstr(out, "HTTP/1.1 200 OK"));
    assert_non_null(strstr(out, "laizhou=0;zhaoyuan=1"));
  }
  if (have_tool("node")) {
    for (int v = 0; v < 2; v++) {
      snprintf(cmd, sizeof cmd,
               "node -e '"
               "const fs=require(\"fs\"),https=require(\"https\");"
               "const o={host:\"127.0.0.1\",port:%d,path:\"/whoami\",%s"
               "ca:fs.readFileSync(\"%s\"),cert:fs.readFileSync(\"%s\"),key:fs.readFileSync(\"%s\")};"
               "https.get(o,r=>{let b=\"\",p=r.socket.getProtocol();r.on(\"data\",d=>b+=d);"
               "r.on(\"end\",()=>{process.stdout.write(p+\" \"+b)})})"
               ".on(\"error\",e=>{console.log(String(e));process.exit(1)})' 2>&1",
               fx->port, v ? "maxVersion:\"TLSv1.2\"," : "", pki("gateway/ca.pem"),
               pki("partners/laizhou/tls-client.pem"), pki("partners/laizhou/tls-client.key"));
      int st = run_capture(cmd, out, sizeof out);
      if (st != 0) fprintf(stderr, "node: %s\n", out);
      assert_int_equal(st, 0);
      char exp[512];
      snprintf(exp, sizeof exp, "%s %s", v ? "TLSv1.2" : "TLSv1.3", want);
      assert_string_equal(out, exp);
    }
  }
  fx_stop(fx);
}

/* ---- configuration errors ------------------------------------------------ */

static int start_err(struct tb_http_tls_config *tls, char *err) {
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  struct tb_http_server_config cfg = {0};
  cfg.name = "partner_api";
  cfg.host = "127.0.0.1";
  cfg.handler = handler;
  cfg.tls = tls;
  struct tb_http_server *srv = NULL;
  err[0] = '\0';
  int r = tb_http_server_start(&loop, &cfg, &srv, err);
  assert_int_not_equal(r, 0);
  assert_null(srv);
  assert_int_equal(uv_loop_close(&loop), 0);
  return r;
}

static void test_config_errors_name_file_and_fix(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  char key[400];
  snprintf(key, sizeof key, "%s/loose.key", g_dir);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cp %s %s && chmod 644 %s", pki("gateway/tls-server.key"), key, key);
  assert_int_equal(system(cmd), 0);

  struct tb_http_tls_config t = tls_config(TB_HTTP_TLS_VERIFY_REQUIRED);
  t.private_key_file = key;
  assert_int_equal(start_err(&t, err), TB_ECONFIG);
  assert_non_null(strstr(err, "chmod 600"));
  assert_non_null(strstr(err, key));

  t = tls_config(TB_HTTP_TLS_VERIFY_REQUIRED);
  t.certificate_file = "/nonexistent/cert.pem";
  assert_int_equal(start_err(&t, err), TB_ENOTFOUND);
  assert_non_null(strstr(err, "/nonexistent/cert.pem"));

  t = tls_config(TB_HTTP_TLS_VERIFY_REQUIRED);
  t.private_key_file = pki("partners/laizhou/tls-client.key");
  assert_int_equal(start_err(&t, err), TB_ECONFIG);
  assert_non_null(strstr(err, "does not belong"));

  t = tls_config(TB_HTTP_TLS_VERIFY_REQUIRED);
  t.client_ca_count = 0;
  assert_int_equal(start_err(&t, err), TB_ECONFIG);
  assert_non_null(strstr(err, "no client CA"));

  t = tls_config(TB_HTTP_TLS_VERIFY_REQUIRED);
  const char *bad_cas[] = {pki("partners/laizhou/ca.pem"), pki("gateway/tls-server.key")};
  t.client_ca_files = bad_cas;
  assert_int_equal(start_err(&t, err), TB_EPARSE);
  assert_non_null(strstr(err, "client CA file [1]"));

  t = tls_config(TB_HTTP_TLS_VERIFY_REQUIRED);
  t.ciphers = "NO-SUCH-CIPHER";
  assert_int_equal(start_err(&t, err), TB_ECONFIG);
  assert_non_null(strstr(err, "NO-SUCH-CIPHER"));

  t = tls_config(TB_HTTP_TLS_VERIFY_REQUIRED);
  t.certificate_file = pki("gateway/tls-server.key"); /* no certificate in it */
  assert_int_equal(start_err(&t, err), TB_EPARSE);

  X509_STORE *st = NULL;
  assert_int_equal(tb_http_tls_ca_store_new("/nonexistent/ca.pem", &st, err), TB_ENOTFOUND);
  assert_null(st);
  assert_int_equal(ERR_peek_error(), 0); /* nothing left in OpenSSL's queue */
}

/* A request over plain HTTP never has a TLS peer. */
static void test_plain_listener_has_no_peer(void **state) {
  (void)state;
  struct tb_http_request req;
  memset(&req, 0, sizeof req);
  assert_int_equal(tb_http_request_peer_issued_by(&req, g_laizhou_ca), 0);
  assert_int_equal(tb_http_request_peer_issued_by(NULL, g_laizhou_ca), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mtls_request_carries_verified_peer_and_issuing_partner),
      cmocka_unit_test(test_missing_client_cert_refused_and_logged),
      cmocka_unit_test(test_client_cert_from_unknown_ca_refused),
      cmocka_unit_test(test_tls11_and_weak_ciphers_refused),
      cmocka_unit_test(test_optional_and_none_modes),
      cmocka_unit_test(test_keepalive_pipelining_and_100_requests),
      cmocka_unit_test(test_pipeline_flood_over_tls_answered_in_order),
      cmocka_unit_test(test_over_max_connections_closed_without_handshake),
      cmocka_unit_test(test_large_body_both_ways),
      cmocka_unit_test(test_sessions_resume),
      cmocka_unit_test(test_stalled_handshake_closed_by_header_timeout),
      cmocka_unit_test(test_plain_http_and_garbage_to_tls_port_closed_and_logged),
      cmocka_unit_test(test_graceful_close_with_tls_connections_open),
      cmocka_unit_test(test_client_close_notify_ends_connection_cleanly),
      cmocka_unit_test(test_curl_openssl_and_node_clients),
      cmocka_unit_test(test_config_errors_name_file_and_fix),
      cmocka_unit_test(test_plain_listener_has_no_peer),
  };
  if (getenv("TB_TEST_FILTER") != NULL) cmocka_set_test_filter(getenv("TB_TEST_FILTER"));
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
