/*
 * client/transfer.c — one transfer on one easy handle: the options every
 * request gets (the security and reuse policy lives here, in one place), the
 * header and body callbacks with their caps, and the translation of a
 * CURLcode into a transport error category.
 */
#include "client/client_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/log.h"
#include "tbgw/error.h"

#ifndef TB_VERSION
#define TB_VERSION "dev"
#endif

#if LIBCURL_VERSION_NUM < 0x075000
#error "libcurl 7.80 or later is needed (CURLOPT_PREREQFUNCTION)"
#endif

/* ---- request header lines ------------------------------------------------ */

int tb__client_check_header_lines(const char *lines, char *err) {
  const char *s = lines;
  while (*s) {
    const char *e = s;
    while (*e && *e != '\r' && *e != '\n') e++;
    size_t n = (size_t)(e - s);
    if (n > 0) {
      const char *colon = memchr(s, ':', n);
      if (colon == NULL || colon == s)
        return tb_errf(err, TB_EINVAL, "client: extra header line \"%.*s\" is not \"Name: value\"",
                       (int)(n > 80 ? 80 : n), s);
      for (const char *q = s; q < colon; q++) {
        unsigned char ch = (unsigned char)*q;
        /* RFC 9110 token characters */
        if (!(ch > 0x20 && ch < 0x7f) || strchr("\"(),/:;<=>?@[\\]{}", ch) != NULL)
          return tb_errf(err, TB_EINVAL, "client: extra header name \"%.*s\" is not a token",
                         (int)(colon - s > 80 ? 80 : colon - s), s);
      }
      for (const char *q = colon + 1; q < e; q++) {
        unsigned char ch = (unsigned char)*q;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
          return tb_errf(err, TB_EINVAL, "client: extra header \"%.*s\" holds a control character",
                         (int)(colon - s > 80 ? 80 : colon - s), s);
      }
    }
    if (*e == '\0') break;
    /* Only CRLF (or a lone LF) separates lines; a lone CR would let a value
     * smuggle a line break past some peers. */
    if (e[0] == '\r' && e[1] != '\n')
      return tb_errf(err, TB_EINVAL, "client: extra headers: a CR not followed by LF");
    s = e + (e[0] == '\r' ? 2 : 1);
  }
  return 0;
}

/* ---- response capture --------------------------------------------------- */

void tb__client_req_release_response(struct tb__client_req *r) {
  free(r->rbody);
  free(r->hbuf);
  free(r->harr);
  r->rbody = NULL;
  r->hbuf = NULL;
  r->harr = NULL;
  r->rlen = r->rcap = r->hlen = r->hcount = 0;
}

static size_t trim_len(const char *s, size_t n, const char **start) {
  while (n > 0 && (*s == ' ' || *s == '\t')) s++, n--;
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
    n--;
  *start = s;
  return n;
}

/*
 * CURLOPT_HEADERFUNCTION: one call per line, status lines included. A status
 * line starts a new block (1xx interim answers, or a retry on a fresh
 * connection), so only the final answer's headers are kept. Lines after the
 * final block's blank line are trailers and are dropped. Storage is capped;
 * returning a short count makes curl abort with CURLE_WRITE_ERROR.
 */
static size_t on_header(char *buf, size_t size, size_t nitems, void *ud) {
  struct tb__client_req *r = ud;
  struct tb_client_pool *p = r->pool;
  size_t total = size * nitems;
  if (total >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
    r->hlen = 0;
    r->hcount = 0;
    r->headers_done = 0;
    return total;
  }
  const char *line;
  size_t n = trim_len(buf, total, &line);
  if (n == 0) {
    if (total > 0 && (buf[0] == '\r' || buf[0] == '\n')) r->headers_done = 1;
    return total;
  }
  if (r->headers_done) return total;
  if (r->hbuf == NULL) {
    r->hbuf = malloc(p->max_header_bytes);
    r->harr = calloc(p->max_header_count, sizeof *r->harr);
    if (r->hbuf == NULL || r->harr == NULL) {
      r->oom = 1;
      return 0;
    }
  }
  if (buf[0] == ' ' || buf[0] == '\t') {
    /* obs-fold continuation: append to the previous value with one space.
     * The previous value is the last thing in hbuf, so it grows in place. */
    if (r->hcount == 0) return total;
    if (r->hlen + n + 1 > p->max_header_bytes) {
      r->too_large = TB__TOO_LARGE_HEADERS;
      return 0;
    }
    struct tb_client_header *h = &r->harr[r->hcount - 1];
    char *end = r->hbuf + r->hlen - 1; /* the value's NUL */
    *end = ' ';
    memcpy(end + 1, line, n);
    end[1 + n] = '\0';
    r->hlen += n + 1;
    h->value_len += n + 1;
    return total;
  }
  const char *colon = memchr(line, ':', n);
  if (colon == NULL || colon == line) return total; /* not a header: ignore, as curl does */
  const char *name = line, *value;
  size_t name_len = (size_t)(colon - line);
  while (name_len > 0 && (name[name_len - 1] == ' ' || name[name_len - 1] == '\t')) name_len--;
  size_t value_len = trim_len(colon + 1, (size_t)(line + n - (colon + 1)), &value);
  size_t need = name_len + 1 + value_len + 1;
  if (r->hcount >= p->max_header_count || need > p->max_header_bytes - r->hlen) {
    r->too_large = TB__TOO_LARGE_HEADERS;
    return 0;
  }
  char *d = r->hbuf + r->hlen;
  memcpy(d, name, name_len);
  d[name_len] = '\0';
  memcpy(d + name_len + 1, value, value_len);
  d[name_len + 1 + value_len] = '\0';
  struct tb_client_header *h = &r->harr[r->hcount++];
  h->name = d;
  h->name_len = name_len;
  h->value = d + name_len + 1;
  h->value_len = value_len;
  r->hlen += need;
  return total;
}

/* CURLOPT_WRITEFUNCTION: the body, capped at max_response_bytes. */
static size_t on_body(char *buf, size_t size, size_t nitems, void *ud) {
  struct tb__client_req *r = ud;
  size_t max = r->pool->max_response_bytes;
  size_t n = size * nitems;
  if (n > max - r->rlen) {
    r->too_large = TB__TOO_LARGE_BODY;
    return 0;
  }
  if (r->rlen + n + 1 > r->rcap) {
    size_t want = r->rcap ? r->rcap * 2 : 16384;
    if (r->rcap == 0 && r->slot != NULL) {
      /* Size the buffer once when the partner announced the length. */
      curl_off_t cl = -1;
      if (curl_easy_getinfo(r->slot->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK &&
          cl > 0 && (uint64_t)cl <= (uint64_t)max)
        want = (size_t)cl + 1;
    }
    if (want < r->rlen + n + 1) want = r->rlen + n + 1;
    if (want > max + 1) want = max + 1;
    unsigned char *nb = realloc(r->rbody, want);
    if (nb == NULL) {
      r->oom = 1;
      return 0;
    }
    r->rbody = nb;
    r->rcap = want;
  }
  memcpy(r->rbody + r->rlen, buf, n);
  r->rlen += n;
  r->rbody[r->rlen] = '\0';
  return n;
}

/* ---- connection hygiene ------------------------------------------------- */

/*
 * HTTP/1.1 has no way to tell which request an answer belongs to but the
 * order. A partner that answers twice (or sends anything unasked) leaves
 * bytes on the kept-alive connection, and libcurl 7.88 reuses it anyway (its
 * liveness check counts "readable" as alive): the next request would read the
 * stale answer as its own, and every later one would be off by one. A healthy
 * idle HTTP/1.1 connection has nothing to read, so bytes waiting in the
 * kernel's socket buffer are evidence enough (TLS records included: curl
 * reads a record at a time and drains each into its own buffer, which dies
 * with the transfer). Two checks:
 *
 *  - before a request is sent on a reused connection (CURLOPT_PREREQFUNCTION):
 *    anything to read, or a close by the partner, and the connection is shut
 *    down and the attempt aborted (curl then closes it); pool.c sends the
 *    request again on a fresh connection, once, without telling the caller;
 *  - after an answer, on the connection curl keeps: unread bytes and it is
 *    shut down at once, so that it is never picked again.
 */

#ifndef POLLRDHUP
#ifdef __linux__
#define POLLRDHUP 0x2000 /* <poll.h> hides it without _GNU_SOURCE */
#else
#define POLLRDHUP 0
#endif
#endif

int tb__client_sock_state(curl_socket_t fd) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN | POLLRDHUP};
  int n;
  do n = poll(&pfd, 1, 0);
  while (n < 0 && errno == EINTR);
  if (n <= 0 || pfd.revents == 0) return TB__SOCK_CLEAN;
  /* The partner's FIN (after a close_notify, or after a stale answer): the
   * connection is over whatever is in front of it. Also our own shutdown. */
  if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return TB__SOCK_CLOSED;
  char b;
  ssize_t k = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (k > 0) return TB__SOCK_UNREAD;
  if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return TB__SOCK_CLEAN;
  return TB__SOCK_CLOSED;
}

void tb__client_log_discard(struct tb_client_pool *p, int discard, const char *where) {
  struct tb_client *c = p->client;
  /* A partner closing an idle connection is routine: debug only. */
  enum tb_log_level level = discard == TB__DISCARD_UNREAD ? TB_LOG_WARN : TB_LOG_DEBUG;
  if (!tb_log_enabled(level)) return;
  uint64_t sec = uv_now(c->loop) / 1000 + 1;
  if (c->discard_log_sec != sec) {
    c->discard_log_sec = sec;
    c->discard_log_n = 0;
  }
  if (c->discard_log_n >= TB__DISCARD_LOG_PER_SEC) {
    c->discard_log_suppressed++;
    return;
  }
  c->discard_log_n++;
  struct tb_log_line *l = tb_log_begin(level, "client.connection_discarded");
  tb_log_str(l, "partner", p->name);
  tb_log_str(l, "reason", discard == TB__DISCARD_UNREAD ? "unsolicited_data" : "closed_by_partner");
  tb_log_str(l, "when", where);
  if (c->discard_log_suppressed > 0) {
    tb_log_int(l, "suppressed", (int64_t)c->discard_log_suppressed);
    c->discard_log_suppressed = 0;
  }
  tb_log_end(l);
}

/* CURLOPT_PREREQFUNCTION: the connection is ready (new or reused) and
 * nothing of the request has been sent. */
static int on_prereq(void *ud, char *remote_ip, char *local_ip, int remote_port, int local_port) {
  struct tb__client_req *r = ud;
  struct tb_client *c = r->pool->client;
  (void)local_ip;
  r->conn_fd = tb__client_find_fd(c, remote_ip != NULL ? remote_ip : "", remote_port, local_port);
  long connects = 0;
  curl_easy_getinfo(r->slot->easy, CURLINFO_NUM_CONNECTS, &connects);
  /* A new connection has nothing stale on it (and may hold TLS 1.3 session
   * tickets that curl has not read yet, which are not a reason to drop it). */
  if (connects > 0 || r->conn_fd == CURL_SOCKET_BAD) return CURL_PREREQFUNC_OK;
  int st = tb__client_sock_state(r->conn_fd);
  if (st == TB__SOCK_CLEAN) return CURL_PREREQFUNC_OK;
  r->discard = st == TB__SOCK_UNREAD ? TB__DISCARD_UNREAD : TB__DISCARD_CLOSED;
  /* curl closes a connection whose transfer a callback aborted; the shutdown
   * makes sure that nothing can ever be read from or sent on it again. */
  shutdown(r->conn_fd, SHUT_RDWR);
  r->conn_fd = CURL_SOCKET_BAD;
  return CURL_PREREQFUNC_ABORT;
}

/* Runs when curl reports the transfer done, before it leaves the multi. */
void tb__client_after_transfer(struct tb__client_req *r, CURLcode code) {
  struct tb_client_pool *p = r->pool;
  struct tb_client *c = p->client;
  if (code != CURLE_OK || r->kind != TB__REQ_POST) return; /* curl closed the connection */
  curl_socket_t fd = CURL_SOCKET_BAD;
  if (curl_easy_getinfo(r->slot->easy, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
      fd == CURL_SOCKET_BAD)
    return; /* not kept (Connection: close, or curl's own doubts) */
  /* In the same curl_multi_socket_action call another transfer may already
   * have taken the connection and sent its request: its answer is not
   * stale. Such a transfer has been through on_prereq, which noted the fd. */
  for (const struct tb_client_pool *q = c->pools; q != NULL; q = q->next)
    for (const struct tb__client_req *o = q->running; o != NULL; o = o->next)
      if (o != r && o->conn_fd == fd) return;
  if (tb__client_sock_state(fd) != TB__SOCK_UNREAD) return;
  /* The connection stays in curl's cache, dead: curl's liveness check or
   * our on_prereq (which then sees our own shutdown) drops it. */
  shutdown(fd, SHUT_RDWR);
  p->n.connections_discarded++;
  c->n.connections_discarded++;
  tb__client_log_discard(p, TB__DISCARD_UNREAD, "after_answer");
}

/* ---- options ------------------------------------------------------------ */

#define SETOPT(opt, val)                                                  \
  do {                                                                    \
    CURLcode c_ = curl_easy_setopt(easy, opt, val);                       \
    if (c_ != CURLE_OK) {                                                 \
      bad = #opt;                                                         \
      code = c_;                                                          \
      goto fail;                                                          \
    }                                                                     \
  } while (0)

int tb__client_req_setup(struct tb__client_req *r, CURL *easy, char *err) {
  struct tb_client_pool *p = r->pool;
  struct tb_client *c = p->client;
  const char *bad = NULL;
  CURLcode code = CURLE_OK;
  r->errbuf[0] = '\0';
  r->conn_fd = CURL_SOCKET_BAD;
  /* The easy handle was reset when it was put back (or is new). */
  SETOPT(CURLOPT_PRIVATE, (void *)r);
  SETOPT(CURLOPT_ERRORBUFFER, r->errbuf);
  SETOPT(CURLOPT_SHARE, c->share);
  SETOPT(CURLOPT_URL, r->url);
  SETOPT(CURLOPT_NOSIGNAL, 1L);
  /* Policy: https only, no proxy (also none from http_proxy/https_proxy in
   * the environment), no redirects, HTTP/1.1, TLS >= 1.2 against the
   * partner's CA alone (not the system store, not the compiled-in CA path). */
#if LIBCURL_VERSION_NUM >= 0x075500
  SETOPT(CURLOPT_PROTOCOLS_STR, "https");
  SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
  SETOPT(CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTPS);
  SETOPT(CURLOPT_REDIR_PROTOCOLS, (long)CURLPROTO_HTTPS);
#endif
  SETOPT(CURLOPT_PROXY, "");
  SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
  SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
  SETOPT(CURLOPT_SSL_VERIFYPEER, 1L);
  SETOPT(CURLOPT_SSL_VERIFYHOST, 2L);
  SETOPT(CURLOPT_CAINFO, p->ca_file);
  SETOPT(CURLOPT_CAPATH, (char *)NULL);
#if LIBCURL_VERSION_NUM >= 0x075700
  /* No CA store cache across connections: it is keyed by file name only, so
   * a CA file replaced before a reload would be ignored for up to a day. A
   * small CA file is parsed in microseconds, once per new connection. */
  SETOPT(CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
  if (p->cert_file != NULL) {
    SETOPT(CURLOPT_SSLCERT, p->cert_file);
    SETOPT(CURLOPT_SSLCERTTYPE, "PEM");
    SETOPT(CURLOPT_SSLKEY, p->key_file);
    SETOPT(CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (p->no_tls_session_reuse) SETOPT(CURLOPT_SSL_SESSIONID_CACHE, 0L);
  SETOPT(CURLOPT_CONNECTTIMEOUT_MS, p->connect_timeout_ms);
  SETOPT(CURLOPT_TIMEOUT_MS, p->timeout_ms);
  SETOPT(CURLOPT_MAXAGE_CONN, p->idle_timeout_s);
  SETOPT(CURLOPT_TCP_KEEPALIVE, 1L);
  SETOPT(CURLOPT_TCP_NODELAY, 1L);
  /* Every socket is noted (client.c), so that on_prereq can look at it. */
  SETOPT(CURLOPT_OPENSOCKETFUNCTION, tb__client_open_socket);
  SETOPT(CURLOPT_OPENSOCKETDATA, (void *)c);
  SETOPT(CURLOPT_CLOSESOCKETFUNCTION, tb__client_close_socket);
  SETOPT(CURLOPT_CLOSESOCKETDATA, (void *)c);
  if (r->kind == TB__REQ_PROBE) {
    /* A fresh connection that proves DNS, TCP and TLS, then is dropped. */
    SETOPT(CURLOPT_CONNECT_ONLY, 1L);
    SETOPT(CURLOPT_FRESH_CONNECT, 1L);
    SETOPT(CURLOPT_FORBID_REUSE, 1L);
    return 0;
  }
  SETOPT(CURLOPT_USERAGENT, "tongban-gateway/" TB_VERSION);
  SETOPT(CURLOPT_HTTPHEADER, r->headers);
  SETOPT(CURLOPT_POST, 1L);
  SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
  SETOPT(CURLOPT_POSTFIELDS, (void *)r->body);
  /* Refuse an announced Content-Length over the cap before reading it; a
   * chunked body is stopped by on_body. */
  SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)p->max_response_bytes);
  SETOPT(CURLOPT_HEADERFUNCTION, on_header);
  SETOPT(CURLOPT_HEADERDATA, (void *)r);
  SETOPT(CURLOPT_WRITEFUNCTION, on_body);
  SETOPT(CURLOPT_WRITEDATA, (void *)r);
  SETOPT(CURLOPT_PREREQFUNCTION, on_prereq);
  SETOPT(CURLOPT_PREREQDATA, (void *)r);
  return 0;
fail:
  return tb_errf(err, code == CURLE_OUT_OF_MEMORY ? TB_ENOMEM : TB_EINTERNAL,
                 "client: partner %s: libcurl refused %s: %s", p->name, bad,
                 curl_easy_strerror(code));
}

/* ---- classification ----------------------------------------------------- */

int tb__client_classify(const struct tb__client_req *r, CURLcode code) {
  if (r->too_large) return TB_CLIENT_ETOO_LARGE;
  if (r->oom) return TB_CLIENT_ELOCAL;
  switch (code) {
  case CURLE_OK: return 0;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return TB_CLIENT_EDNS;
  case CURLE_COULDNT_CONNECT: return TB_CLIENT_ECONNECT;
  case CURLE_OPERATION_TIMEDOUT: return TB_CLIENT_ETIMEOUT;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_USE_SSL_FAILED:
  case CURLE_SSL_CLIENTCERT: return TB_CLIENT_ETLS;
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
    /* Under TLS 1.3 a server refuses our certificate (or its absence) with
     * an alert that arrives after the handshake, on the first read: OpenSSL
     * reports it as "... alert certificate required" etc. A plain EOF or
     * ECONNRESET has no "alert" in its text. */
    if (strstr(r->errbuf, "alert") != NULL) return TB_CLIENT_ETLS;
    return TB_CLIENT_ERESET;
  case CURLE_PARTIAL_FILE:
  case CURLE_GOT_NOTHING: return TB_CLIENT_ERESET;
  case CURLE_FILESIZE_EXCEEDED: return TB_CLIENT_ETOO_LARGE;
  case CURLE_WEIRD_SERVER_REPLY:
  case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
  case CURLE_BAD_CONTENT_ENCODING:
  case CURLE_TOO_MANY_REDIRECTS: return TB_CLIENT_EPROTOCOL;
  case CURLE_OUT_OF_MEMORY:
  case CURLE_FAILED_INIT:
  case CURLE_BAD_FUNCTION_ARGUMENT:
  case CURLE_UNKNOWN_OPTION:
  case CURLE_NOT_BUILT_IN:
  case CURLE_ABORTED_BY_CALLBACK: return TB_CLIENT_ELOCAL;
  default: return TB_CLIENT_ERESET;
  }
}
