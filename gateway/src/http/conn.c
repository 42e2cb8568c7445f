/*
 * http/conn.c — one client connection from accept to free: reading into the
 * server's slab, the pipeline buffer, the write queue, the one timer that
 * serves every deadline, lingering close, and the rule for when the struct
 * may be freed.
 *
 * All bytes cross two functions, tb__http_conn_recv (plaintext in) and
 * tb__http_conn_send (plaintext out). On a TLS listener (c->tls, tls.c)
 * on_read hands ciphertext to tb__http_tls_read, which calls recv with what
 * SSL_read yields, and send goes through tb__http_tls_send, which encrypts
 * and writes the ciphertext with tb__http_conn_write_raw. The plain path
 * pays one branch for this. Nothing else here touches the socket's bytes.
 *
 * tb__http_conn_step() derives what the connection should do from its state
 * (read or not, close, linger, which deadline is next); every event handler
 * ends by calling it instead of deciding those things itself.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "http/http_internal.h"

struct out {
  uv_write_t req;
  char *owned;
  unsigned nbufs;
  uv_buf_t bufs[4];
  char data[]; /* copies of the borrowed bytes that were not written at once */
};

static void on_timer(uv_timer_t *t);

static void on_handle_closed(uv_handle_t *h) {
  struct tb__http_conn *c = h->data;
  c->handles_open--;
  tb__http_conn_maybe_free(c);
}

struct tb__http_conn *tb__http_conn_new(struct tb_http_server *srv) {
  struct tb__http_conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->srv = srv;
  if (uv_tcp_init(srv->loop, &c->tcp) != 0) {
    free(c);
    return NULL;
  }
  uv_timer_init(srv->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->handles_open = 2;
  c->ex.conn = c;
  tb__list_init(&c->ready);
  tb__list_add_tail(&srv->conns, &c->link);
  srv->nlive++;
  tb__http_parser_init(c);
  c->phase = TB__PH_IDLE;
  snprintf(c->peer, sizeof c->peer, "-");
  if (srv->tls_ctx != NULL && tb__http_tls_conn_init(c) != 0) {
    tb__http_conn_close(c); /* the struct goes in the handles' close callbacks */
    return NULL;
  }
  return c;
}

static void peer_name(struct tb__http_conn *c) {
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  char ip[INET6_ADDRSTRLEN] = "?";
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
    uv_ip6_name(a, ip, sizeof ip);
    snprintf(c->peer, sizeof c->peer, "[%s]:%d", ip, ntohs(a->sin6_port));
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    uv_ip4_name(a, ip, sizeof ip);
    snprintf(c->peer, sizeof c->peer, "%s:%d", ip, ntohs(a->sin_port));
  }
}

void tb__http_conn_start(struct tb__http_conn *c) {
  uv_tcp_nodelay(&c->tcp, 1);
  peer_name(c);
  tb__http_conn_enter(c, TB__PH_IDLE);
  tb__http_conn_step(c);
}

/* Deadlines belong to phases: entering a phase sets its deadline. */
void tb__http_conn_enter(struct tb__http_conn *c, enum tb__phase phase) {
  const struct tb_http_limits *lim = &c->srv->cfg.limits;
  uint64_t now = uv_now(c->srv->loop);
  c->phase = phase;
  switch (phase) {
  case TB__PH_IDLE:
    /* Before the first request the header timeout applies: a connection
     * that never says anything is as slow as one that says it slowly. */
    c->phase_deadline = now + (c->nreq ? lim->keepalive_timeout_ms : lim->header_timeout_ms);
    break;
  case TB__PH_HEADERS:
    c->phase_deadline = now + lim->header_timeout_ms; /* total, not reset by reads */
    break;
  case TB__PH_BODY:
    c->body_last = now;
    c->phase_deadline = now + lim->body_timeout_ms; /* idle: moved by reads */
    break;
  case TB__PH_HANDLER:
  case TB__PH_DRAIN:
  case TB__PH_CLOSED:
    c->phase_deadline = 0;
    break;
  }
}

/* One timer for all deadlines. It is restarted only when a deadline moves
 * earlier; a deadline that moved later (body reads) is found when the timer
 * fires early and re-arms, so a busy upload does not restart a timer per read. */
static void arm_timer(struct tb__http_conn *c) {
  uint64_t next = c->phase_deadline;
  if (c->write_deadline && (next == 0 || c->write_deadline < next)) next = c->write_deadline;
  if (next == 0) {
    if (c->armed_at) uv_timer_stop(&c->timer);
    c->armed_at = 0;
    return;
  }
  if (c->armed_at != 0 && c->armed_at <= next) return;
  uint64_t now = uv_now(c->srv->loop);
  uv_timer_start(&c->timer, on_timer, next > now ? next - now : 0, 0);
  c->armed_at = next;
}

static void log_timeout(struct tb__http_conn *c, const char *kind, uint64_t ms) {
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "http.timeout");
  tb_log_str(l, "listener", c->srv->name);
  tb_log_str(l, "peer", c->peer);
  tb_log_str(l, "kind", kind);
  tb_log_int(l, "timeout_ms", (int64_t)ms);
  tb_log_end(l);
}

static void on_timer(uv_timer_t *t) {
  struct tb__http_conn *c = t->data;
  const struct tb_http_limits *lim = &c->srv->cfg.limits;
  uint64_t now = uv_now(c->srv->loop);
  c->armed_at = 0;
  if (c->phase == TB__PH_CLOSED) return;
  if (c->write_deadline && now >= c->write_deadline) {
    log_timeout(c, "write", lim->write_timeout_ms);
    tb__http_conn_close(c);
    return;
  }
  if (c->phase == TB__PH_BODY) c->phase_deadline = c->body_last + lim->body_timeout_ms;
  if (c->phase_deadline && now >= c->phase_deadline) {
    char detail[128];
    switch (c->phase) {
    case TB__PH_IDLE:
      if (c->tls != NULL && !c->tls->established) {
        /* No HTTP answer is possible before the handshake completes. */
        log_timeout(c, "tls_handshake", lim->header_timeout_ms);
        tb__http_conn_close(c);
        return;
      }
      if (c->nreq == 0) {
        log_timeout(c, "header", lim->header_timeout_ms);
        snprintf(detail, sizeof detail, "no request within %llu ms",
                 (unsigned long long)lim->header_timeout_ms);
      } else {
        log_timeout(c, "keepalive", lim->keepalive_timeout_ms);
        snprintf(detail, sizeof detail, "connection idle for %llu ms",
                 (unsigned long long)lim->keepalive_timeout_ms);
      }
      tb__http_conn_fail(c, 408, "request-timeout", detail, NULL);
      break;
    case TB__PH_HEADERS:
      log_timeout(c, "header", lim->header_timeout_ms);
      snprintf(detail, sizeof detail, "request headers not complete within %llu ms",
               (unsigned long long)lim->header_timeout_ms);
      tb__http_conn_fail(c, 408, "request-timeout", detail, NULL);
      break;
    case TB__PH_BODY:
      log_timeout(c, "body", lim->body_timeout_ms);
      snprintf(detail, sizeof detail, "no request body data for %llu ms",
               (unsigned long long)lim->body_timeout_ms);
      tb__http_conn_fail(c, 408, "request-timeout", detail, NULL);
      break;
    case TB__PH_DRAIN: /* lingering close is over */
      tb__http_conn_close(c);
      return;
    case TB__PH_HANDLER:
    case TB__PH_CLOSED:
      break;
    }
  }
  tb__http_conn_step(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  struct tb__http_conn *c = h->data;
  (void)suggested;
  *buf = uv_buf_init(c->srv->slab, sizeof c->srv->slab);
}

/* Keeps bytes the parser cannot take now. Reading stops at
 * max_pipeline_bytes (see step), so the buffer never exceeds that plus one
 * read (plus one TLS record under TLS). */
static int pend_append(struct tb__http_conn *c, const char *data, size_t len) {
  size_t max = c->srv->cfg.limits.max_pipeline_bytes + TB_HTTP_READ_SLAB;
  if (c->tls != NULL) max += TB_HTTP_TLS_RECORD; /* a record completed by this read */
  size_t need = c->pend_len + len;
  if (need > max) return -1;
  if (need > c->pend_cap) {
    size_t cap = c->pend_cap ? c->pend_cap * 2 : 4096;
    while (cap < need) cap *= 2;
    if (cap > max) cap = max;
    char *p = realloc(c->pend, cap);
    if (p == NULL) return -1;
    c->pend = p;
    c->pend_cap = cap;
  }
  memcpy(c->pend + c->pend_len, data, len);
  c->pend_len = need;
  return 0;
}

static int can_parse(const struct tb__http_conn *c) {
  return (c->phase == TB__PH_IDLE || c->phase == TB__PH_HEADERS || c->phase == TB__PH_BODY) &&
         !c->write_blocked;
}

void tb__http_conn_recv(struct tb__http_conn *c, const char *data, size_t len) {
  if (c->phase == TB__PH_DRAIN || c->phase == TB__PH_CLOSED || len == 0) return;
  if (c->phase == TB__PH_BODY) c->body_last = uv_now(c->srv->loop);
  size_t used = 0;
  if (c->pend_len == 0 && !c->scheduled && !c->in_parse && can_parse(c))
    used = tb__http_parse(c, data, len); /* the common case: straight from the slab */
  if (used < len && c->phase != TB__PH_DRAIN && c->phase != TB__PH_CLOSED) {
    if (pend_append(c, data + used, len - used) != 0) {
      tb_log_msg(TB_LOG_ERROR, "http.conn.buffer", "%s: %s: pipeline buffer full or no memory",
                 c->srv->name, c->peer);
      tb__http_conn_close(c);
      return;
    }
  }
  tb__http_conn_step(c);
}

/* Parses what waited in the pipeline buffer (run from the server's idle
 * handle, never from inside a handler or tb_http_respond). */
void tb__http_conn_resume(struct tb__http_conn *c) {
  if (c->phase == TB__PH_CLOSED) return;
  if (c->pend_len > 0 && can_parse(c) && !c->in_parse) {
    size_t used = tb__http_parse(c, c->pend, c->pend_len);
    if (c->phase == TB__PH_DRAIN || c->phase == TB__PH_CLOSED) used = c->pend_len;
    memmove(c->pend, c->pend + used, c->pend_len - used);
    c->pend_len -= used;
  }
  tb__http_conn_step(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  struct tb__http_conn *c = s->data;
  if (nread > 0) {
    if (c->phase == TB__PH_DRAIN) {
      c->linger_bytes += (size_t)nread;
      if (c->linger_bytes > TB_HTTP_LINGER_BYTES && c->writes == 0) tb__http_conn_close(c);
      return;
    }
    if (c->tls != NULL) {
      tb__http_tls_read(c, buf->base, (size_t)nread);
      return;
    }
    tb__http_conn_recv(c, buf->base, (size_t)nread);
    return;
  }
  if (nread == 0) return;
  if (nread == UV_EOF) {
    /* A half-close ends the peer's input, not its interest in answers:
     * requests already read are answered, then the connection closes. */
    c->eof = 1;
    if (c->tls != NULL) tb__http_tls_eof(c);
    if (c->phase == TB__PH_DRAIN && c->writes == 0) {
      tb__http_conn_close(c);
      return;
    }
    tb__http_conn_step(c);
    return;
  }
  struct tb_log_line *l = tb_log_begin(TB_LOG_DEBUG, "http.conn.read_error");
  tb_log_str(l, "peer", c->peer);
  tb_log_str(l, "error", uv_strerror((int)nread));
  tb_log_end(l);
  tb__http_conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  struct out *o = TB__CONTAINER_OF(req, struct out, req);
  struct tb__http_conn *c = req->handle->data;
  c->writes--;
  free(o->owned);
  free(o);
  if (c->phase == TB__PH_CLOSED) {
    tb__http_conn_maybe_free(c);
    return;
  }
  if (status < 0) {
    struct tb_log_line *l = tb_log_begin(TB_LOG_DEBUG, "http.conn.write_error");
    tb_log_str(l, "peer", c->peer);
    tb_log_str(l, "error", uv_strerror(status));
    tb_log_end(l);
    tb__http_conn_close(c);
    return;
  }
  /* Progress made: the write deadline restarts for what is still queued. */
  c->write_deadline =
      c->writes ? uv_now(c->srv->loop) + c->srv->cfg.limits.write_timeout_ms : 0;
  tb__http_conn_step(c);
}

int tb__http_conn_send(struct tb__http_conn *c, const uv_buf_t *bufs, unsigned nbufs,
                       char *owned) {
  if (c->tls != NULL) return tb__http_tls_send(c, bufs, nbufs, owned);
  return tb__http_conn_write_raw(c, bufs, nbufs, owned);
}

int tb__http_conn_write_raw(struct tb__http_conn *c, const uv_buf_t *bufs, unsigned nbufs,
                            char *owned) {
  if (c->phase == TB__PH_CLOSED || nbufs > 4) {
    free(owned);
    return UV_ECANCELED;
  }
  size_t total = 0;
  for (unsigned i = 0; i < nbufs; i++) total += bufs[i].len;
  size_t done = 0;
  if (c->writes == 0) {
    /* Usually the whole answer fits the socket buffer: no copy, no
     * allocation, no callback. */
    int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
    if (r >= 0) {
      done = (size_t)r;
    } else if (r != UV_EAGAIN) {
      free(owned);
      tb__http_conn_close(c);
      return r;
    }
    if (done == total) {
      free(owned);
      return 0;
    }
  }
  /* Copy what is left of the borrowed buffers; the owned one is referenced. */
  size_t copy = 0, skip = done;
  for (unsigned i = 0; i < nbufs; i++) {
    size_t n = bufs[i].len;
    size_t s = skip < n ? skip : n;
    skip -= s;
    if (bufs[i].base != owned) copy += n - s;
  }
  struct out *o = malloc(sizeof *o + copy);
  if (o == NULL) {
    free(owned);
    tb__http_conn_close(c);
    return UV_ENOMEM;
  }
  o->owned = owned;
  o->nbufs = 0;
  char *d = o->data;
  skip = done;
  for (unsigned i = 0; i < nbufs; i++) {
    size_t n = bufs[i].len;
    size_t s = skip < n ? skip : n;
    skip -= s;
    if (n - s == 0) continue;
    if (bufs[i].base == owned) {
      o->bufs[o->nbufs++] = uv_buf_init(bufs[i].base + s, (unsigned)(n - s));
    } else {
      memcpy(d, bufs[i].base + s, n - s);
      o->bufs[o->nbufs++] = uv_buf_init(d, (unsigned)(n - s));
      d += n - s;
    }
  }
  int r = uv_write(&o->req, (uv_stream_t *)&c->tcp, o->bufs, o->nbufs, on_write);
  if (r != 0) {
    free(o->owned);
    free(o);
    tb__http_conn_close(c);
    return r;
  }
  c->writes++;
  if (c->write_deadline == 0)
    c->write_deadline = uv_now(c->srv->loop) + c->srv->cfg.limits.write_timeout_ms;
  c->write_blocked = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > TB_HTTP_WRITE_HIGH;
  return 0;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  struct tb__http_conn *c = req->handle->data;
  (void)status;
  c->shutdown_pending = 0;
  if (c->phase == TB__PH_CLOSED) tb__http_conn_maybe_free(c);
}

static void set_reading(struct tb__http_conn *c, int want) {
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
      tb__http_conn_close(c);
      return;
    }
    c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

void tb__http_conn_step(struct tb__http_conn *c) {
  if (c->phase == TB__PH_CLOSED) return;
  struct tb_http_server *srv = c->srv;
  /* Inside the parser (a handler answered synchronously) only the timer is
   * updated; the parse loop's caller steps again when it returns. */
  if (c->in_parse) {
    arm_timer(c);
    return;
  }
  c->write_blocked = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > TB_HTTP_WRITE_HIGH;
  if (c->phase == TB__PH_DRAIN) {
    /* TLS: close_notify goes after the answer and before our FIN. */
    if (c->tls != NULL && c->writes == 0 && !c->lingering) {
      tb__http_tls_close_notify(c, 1);
      if (c->phase == TB__PH_CLOSED) return;
    }
    if (c->writes == 0) {
      if (c->eof) {
        tb__http_conn_close(c);
        return;
      }
      if (!c->lingering) {
        c->lingering = 1;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
          tb__http_conn_close(c);
          return;
        }
        c->shutdown_pending = 1;
        c->phase_deadline = uv_now(srv->loop) + TB_HTTP_LINGER_MS;
      }
    }
    set_reading(c, c->lingering && !c->eof);
    if (c->phase != TB__PH_CLOSED) arm_timer(c);
    return;
  }
  int idle = c->phase == TB__PH_IDLE && c->pend_len == 0 && !c->scheduled;
  if (srv->closing && idle && c->writes == 0) {
    tb__http_conn_close(c); /* graceful close: idle keep-alive connections go now */
    return;
  }
  if (c->eof && c->pend_len == 0 && !c->scheduled && c->phase != TB__PH_HANDLER) {
    /* Nothing more can arrive; a partial request can never complete. */
    if (c->writes == 0) {
      tb__http_conn_close(c);
      return;
    }
    tb__http_conn_enter(c, TB__PH_DRAIN);
  }
  if (c->pend_len > 0 && can_parse(c)) tb__http_server_schedule(srv, c);
  int want = c->phase != TB__PH_DRAIN && !c->eof && !c->write_blocked &&
             c->pend_len < srv->cfg.limits.max_pipeline_bytes;
  set_reading(c, want);
  if (c->phase != TB__PH_CLOSED) arm_timer(c);
}

void tb__http_conn_close(struct tb__http_conn *c) {
  if (c->phase == TB__PH_CLOSED) return;
  struct tb_http_server *srv = c->srv;
  c->phase = TB__PH_CLOSED;
  c->phase_deadline = c->write_deadline = 0;
  if (c->scheduled) {
    tb__list_del(&c->ready);
    c->scheduled = 0;
  }
  if (c->admitted == 1) srv->nconns--;
  if (c->admitted == 2) srv->nrejecting--;
  c->admitted = 0;
  if (c->tls != NULL) tb__http_tls_close_notify(c, 0); /* best effort: idle, EOF, timeouts */
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
  if (c->ex.active && !c->ex.aborted) {
    c->ex.aborted = 1;
    struct tb_log_line *l = tb_log_begin(TB_LOG_DEBUG, "http.abort");
    tb_log_str(l, "peer", c->peer);
    tb_log_str(l, "route", c->ex.route ? c->ex.route : "-");
    tb_log_end(l);
    if (c->ex.on_abort) c->ex.on_abort(&c->ex, c->ex.abort_ud);
  }
}

void tb__http_conn_maybe_free(struct tb__http_conn *c) {
  if (c->phase != TB__PH_CLOSED || c->handles_open > 0 || c->writes > 0 ||
      c->shutdown_pending || c->ex.active)
    return;
  struct tb_http_server *srv = c->srv;
  tb__list_del(&c->link);
  if (c->tls != NULL) tb__http_tls_free(c);
  free(c->pend);
  free(c->hbuf);
  free(c->hoff);
  free(c->hdrs);
  free(c->body);
  free(c);
  tb__http_server_conn_gone(srv);
}
