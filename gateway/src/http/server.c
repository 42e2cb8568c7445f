/*
 * http/server.c — the listener: binding, accepting, the connection limit,
 * the queue of connections whose parsing was deferred, and graceful close.
 *
 * Over max_connections a new connection is still accepted, answered
 * "503 overloaded" (problem+json, Retry-After: 1, Connection: close) and
 * closed; at most TB_HTTP_MAX_REJECTING such answers are in flight, beyond
 * that sockets are closed without a word so that a connection flood cannot
 * buy memory. Rejected connections are not counted in
 * tb_http_server_connections(). A TLS listener closes them without a word:
 * an answer would first cost a handshake, which is what it cannot afford.
 */
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/http_internal.h"
#include "tbgw/error.h"

void tb_http_limits_default(struct tb_http_limits *lim) {
  lim->max_header_bytes = 16384;
  lim->max_header_count = 100;
  lim->max_body_bytes = 32u * 1024u * 1024u;
  lim->max_connections = 1024;
  lim->max_pipeline_bytes = 65536;
  lim->header_timeout_ms = 10000;
  lim->body_timeout_ms = 30000;
  lim->keepalive_timeout_ms = 75000;
  lim->write_timeout_ms = 30000;
}

/* Zero limits mean "default" so that a config section may omit any key. */
static void limits_fill(struct tb_http_limits *lim) {
  struct tb_http_limits d;
  tb_http_limits_default(&d);
  if (lim->max_header_bytes == 0) lim->max_header_bytes = d.max_header_bytes;
  if (lim->max_header_count == 0) lim->max_header_count = d.max_header_count;
  if (lim->max_body_bytes == 0) lim->max_body_bytes = d.max_body_bytes;
  if (lim->max_connections == 0) lim->max_connections = d.max_connections;
  if (lim->max_pipeline_bytes == 0) lim->max_pipeline_bytes = d.max_pipeline_bytes;
  if (lim->header_timeout_ms == 0) lim->header_timeout_ms = d.header_timeout_ms;
  if (lim->body_timeout_ms == 0) lim->body_timeout_ms = d.body_timeout_ms;
  if (lim->keepalive_timeout_ms == 0) lim->keepalive_timeout_ms = d.keepalive_timeout_ms;
  if (lim->write_timeout_ms == 0) lim->write_timeout_ms = d.write_timeout_ms;
  /* Offsets into the header buffer are 32-bit. */
  if (lim->max_header_bytes > (1u << 30)) lim->max_header_bytes = 1u << 30;
  if (lim->max_body_bytes > SIZE_MAX / 4) lim->max_body_bytes = SIZE_MAX / 4;
}

static void server_maybe_finish(struct tb_http_server *srv);

static void on_handle_closed(uv_handle_t *h) {
  struct tb_http_server *srv = h->data;
  srv->handles_open--;
  if (srv->handles_open == 0) {
    void (*cb)(void *) = srv->on_closed;
    void *ud = srv->on_closed_ud;
    tb_log_msg(TB_LOG_INFO, "http.closed", "%s: listener on %s closed", srv->name, srv->addr);
    SSL_CTX_free(srv->tls_ctx); /* connections hold their own references */
    free(srv->tls_plain);
    free(srv);
    if (cb) cb(ud);
  }
}

/* Frees the server once it is closing and the last connection struct is
 * gone (handles close first; the struct goes in their close callback). */
static void server_maybe_finish(struct tb_http_server *srv) {
  if (!srv->closing || srv->nlive > 0 || uv_is_closing((uv_handle_t *)&srv->resume_idle))
    return;
  if (!uv_is_closing((uv_handle_t *)&srv->listener))
    uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
  uv_close((uv_handle_t *)&srv->resume_idle, on_handle_closed);
}

void tb__http_server_conn_gone(struct tb_http_server *srv) {
  srv->nlive--;
  server_maybe_finish(srv);
}

void tb__http_server_observe(struct tb_http_server *srv, const char *route, int status,
                             uint64_t started_ns) {
  if (srv->cfg.observer == NULL) return;
  uint64_t now = uv_hrtime();
  uint64_t dur = started_ns != 0 && now > started_ns ? now - started_ns : 0;
  srv->cfg.observer(route ? route : "-", status, dur, srv->cfg.observer_ud);
}

static void on_resume_idle(uv_idle_t *idle) {
  struct tb_http_server *srv = idle->data;
  /* Take the current batch: a connection re-queued while we run waits for
   * the next loop iteration, so one busy peer cannot starve the loop. */
  struct tb__list batch;
  tb__list_init(&batch);
  if (!tb__list_empty(&srv->ready)) {
    batch.next = srv->ready.next;
    batch.prev = srv->ready.prev;
    batch.next->prev = &batch;
    batch.prev->next = &batch;
    tb__list_init(&srv->ready);
  }
  while (!tb__list_empty(&batch)) {
    struct tb__http_conn *c = TB__CONTAINER_OF(batch.next, struct tb__http_conn, ready);
    tb__list_del(&c->ready);
    c->scheduled = 0;
    tb__http_conn_resume(c);
  }
  if (tb__list_empty(&srv->ready)) uv_idle_stop(&srv->resume_idle);
}

void tb__http_server_schedule(struct tb_http_server *srv, struct tb__http_conn *c) {
  if (c->scheduled) return;
  c->scheduled = 1;
  tb__list_add_tail(&srv->ready, &c->ready);
  uv_idle_start(&srv->resume_idle, on_resume_idle);
}

static void log_reject(struct tb_http_server *srv, const char *how) {
  srv->reject_count++;
  uint64_t sec = uv_now(srv->loop) / 1000;
  if (srv->reject_log_sec == sec + 1) return;
  srv->reject_log_sec = sec + 1;
  struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "http.conn.limit");
  tb_log_str(l, "listener", srv->name);
  tb_log_int(l, "max_connections", (int64_t)srv->cfg.limits.max_connections);
  tb_log_int(l, "rejected_total", (int64_t)srv->reject_count);
  tb_log_str(l, "action", how);
  tb_log_end(l);
}

static void on_reject_closed(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status) {
  struct tb_http_server *srv = server->data;
  if (status < 0) {
    tb_log_msg(TB_LOG_ERROR, "http.accept.error", "%s: accept failed: %s", srv->name,
               uv_strerror(status));
    return;
  }
  if (srv->closing) return;
  int over = srv->nconns >= srv->cfg.limits.max_connections;
  if (over && (srv->nrejecting >= TB_HTTP_MAX_REJECTING || srv->tls_ctx != NULL)) {
    /* Take the socket off the backlog and drop it. */
    uv_tcp_t *t = malloc(sizeof *t);
    if (t == NULL || uv_tcp_init(srv->loop, t) != 0) {
      free(t);
      return;
    }
    (void)uv_accept(server, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_reject_closed);
    log_reject(srv, "closed");
    return;
  }
  struct tb__http_conn *c = tb__http_conn_new(srv);
  if (c == NULL) {
    tb_log_msg(TB_LOG_ERROR, "http.accept.error", "%s: out of memory for a connection",
               srv->name);
    /* Still take the socket off the backlog: libuv stops watching the
     * listener while an accepted socket waits for uv_accept. */
    uv_tcp_t *t = malloc(sizeof *t);
    if (t != NULL && uv_tcp_init(srv->loop, t) == 0) {
      (void)uv_accept(server, (uv_stream_t *)t);
      uv_close((uv_handle_t *)t, on_reject_closed);
    } else {
      free(t);
    }
    return;
  }
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    tb__http_conn_close(c);
    return;
  }
  if (over) {
    c->admitted = 2;
    srv->nrejecting++;
    log_reject(srv, "503");
    tb__http_conn_start(c);
    tb__http_conn_fail(c, 503, "overloaded",
                       "the gateway is at its connection limit; retry shortly",
                       "Retry-After: 1\r\n");
    tb__http_conn_step(c);
    return;
  }
  c->admitted = 1;
  srv->nconns++;
  tb__http_conn_start(c);
}

static int parse_addr(const char *host, int port, struct sockaddr_storage *ss) {
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 4;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 6;
  return 0;
}

int tb_http_server_start(uv_loop_t *loop, const struct tb_http_server_config *cfg,
                         struct tb_http_server **out, char *err) {
  *out = NULL;
  const char *name = cfg->name ? cfg->name : "http";
  if (cfg->handler == NULL) return tb_errf(err, TB_EINVAL, "%s: no request handler", name);
  if (cfg->host == NULL || cfg->port < 0 || cfg->port > 65535)
    return tb_errf(err, TB_EINVAL, "%s: listen address needs a host and a port 0..65535",
                   name);
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  int family = parse_addr(cfg->host, cfg->port, &ss);
  if (family == 0)
    return tb_errf(err, TB_EINVAL, "%s: \"%s\" is not a numeric IPv4 or IPv6 address", name,
                   cfg->host);

  SSL_CTX *tls_ctx = NULL;
  char *tls_plain = NULL;
  if (cfg->tls != NULL) {
    int rc = tb__http_tls_ctx_new(cfg->tls, name, &tls_ctx, err);
    if (rc != 0) return rc;
    tls_plain = malloc(TB_HTTP_READ_SLAB);
    if (tls_plain == NULL) {
      SSL_CTX_free(tls_ctx);
      return tb_errf(err, TB_ENOMEM, "%s: out of memory", name);
    }
  }
  struct tb_http_server *srv = calloc(1, sizeof *srv);
  if (srv == NULL) {
    SSL_CTX_free(tls_ctx);
    free(tls_plain);
    return tb_errf(err, TB_ENOMEM, "%s: out of memory", name);
  }
  srv->loop = loop;
  srv->cfg = *cfg;
  srv->cfg.tls = NULL; /* borrowed; what it said lives in tls_ctx */
  srv->tls_ctx = tls_ctx;
  srv->tls_plain = tls_plain;
  snprintf(srv->name, sizeof srv->name, "%s", name);
  srv->cfg.name = srv->name;
  srv->cfg.host = NULL; /* borrowed from the caller; not kept */
  limits_fill(&srv->cfg.limits);
  snprintf(srv->addr, sizeof srv->addr, family == 6 ? "[%s]:%d" : "%s:%d", cfg->host,
           cfg->port);
  tb__list_init(&srv->conns);
  tb__list_init(&srv->ready);
  srv->date_sec = -1;

  int r = uv_tcp_init(loop, &srv->listener);
  if (r != 0) {
    SSL_CTX_free(srv->tls_ctx);
    free(srv->tls_plain);
    free(srv);
    return tb_errf(err, TB_EIO, "%s: cannot create a socket: %s", name, uv_strerror(r));
  }
  srv->listener.data = srv;
  uv_idle_init(loop, &srv->resume_idle);
  srv->resume_idle.data = srv;
  srv->handles_open = 2;
  /* libuv sets SO_REUSEADDR on TCP binds on Unix. */
  r = uv_tcp_bind(&srv->listener, (const struct sockaddr *)&ss, 0);
  if (r == 0) r = uv_listen((uv_stream_t *)&srv->listener, 511, on_connection);
  if (r != 0) {
    tb_errf(err, TB_EIO, "%s: cannot listen on %s: %s", name, srv->addr, uv_strerror(r));
    srv->closing = 1;
    srv->on_closed = NULL;
    server_maybe_finish(srv); /* frees srv from the close callbacks */
    return TB_EIO;
  }
  struct sockaddr_storage bound;
  int blen = (int)sizeof bound;
  if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen) == 0)
    srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
  snprintf(srv->addr, sizeof srv->addr, family == 6 ? "[%s]:%d" : "%s:%d", cfg->host,
           srv->port);
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "http.listen");
  tb_log_str(l, "listener", srv->name);
  tb_log_str(l, "address", srv->addr);
  tb_log_str(l, "scheme", srv->tls_ctx != NULL ? "https" : "http");
  tb_log_end(l);
  *out = srv;
  return 0;
}

int tb_http_server_port(const struct tb_http_server *srv) { return srv->port; }

size_t tb_http_server_connections(const struct tb_http_server *srv) { return srv->nconns; }

void tb_http_server_close(struct tb_http_server *srv, void (*on_closed)(void *ud), void *ud) {
  if (srv->closing) return; /* a second close is a programmer error; keep the first */
  srv->closing = 1;
  srv->on_closed = on_closed;
  srv->on_closed_ud = ud;
  uv_close((uv_handle_t *)&srv->listener, on_handle_closed);
  /* Step every connection: idle ones close now, the others finish their
   * request (answered with Connection: close) and close after. A struct is
   * never freed synchronously, so walking the list while stepping is safe. */
  struct tb__list *it = srv->conns.next;
  while (it != &srv->conns) {
    struct tb__http_conn *c = TB__CONTAINER_OF(it, struct tb__http_conn, link);
    it = it->next;
    tb__http_conn_step(c);
  }
  server_maybe_finish(srv);
}
