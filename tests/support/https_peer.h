/*
 * tests/support/https_peer.h — a small HTTPS/1.1 server for client tests.
 *
 * Blocking sockets and OpenSSL, one thread per connection, on 127.0.0.1:0;
 * independent of the gateway's code. It counts what a client test needs to
 * prove: TCP connections accepted, failed handshakes, requests, and the
 * highest number of requests being handled at once. It keeps the last
 * request for inspection. Header-only: include it from one test file.
 *
 * Behaviour by path (query arguments are integers):
 *   /echo               200, body = request body; X-Echo-Content-Type, X-Echo-Test
 *                       (the request's X-Test), X-Echo-Len, X-Echo-Method
 *   /status?code=N      status N with Retry-After: 7 and a short body
 *   /delay?ms=N         waits N ms, then 200 "ok"
 *   /cut                announces 100000 bytes, sends 1000, drops the connection
 *   /big?n=N            N bytes with Content-Length
 *   /chunked?n=N        N bytes, chunked, no Content-Length
 *   /headers?n=N        200 with N extra header lines
 *   /continue           a 100 Continue block (X-Interim) then 200 (X-Final)
 *   /twice              a partner that answers twice: the /echo answer, then an
 *                       unsolicited second one (200, X-Echo-Test: unsolicited, body
 *                       "stale") on the same connection, which stays open. How:
 *                       default: two TLS records in one TCP segment (TCP_CORK);
 *                       ?same=1: both answers in one TLS record; ?ms=N: the second
 *                       N ms later, when the client holds the connection idle
 *   /close              the /echo answer without "Connection: close", then a TLS
 *                       close_notify and the end of the connection (a partner
 *                       closing a kept-alive connection); ?hdr=1: with the header
 * Anything else: 404.
 *
 * Every request's X-Test value is logged in arrival order (seen[], nseen), so a
 * test can prove that each request reached the server exactly once.
 *
 * The caller should ignore SIGPIPE: a client that gives up makes writes fail.
 */
#ifndef TB_TESTS_HTTPS_PEER_H
#define TB_TESTS_HTTPS_PEER_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define HTTPS_PEER_MAX_CONNS 512
#define HTTPS_PEER_SEEN_MAX 256

struct https_peer_config {
  const char *cert_file, *key_file; /* the server's certificate chain and key */
  const char *client_ca_file;       /* non-NULL: require a client certificate from this CA */
  int tls12_only;                   /* cap the server at TLS 1.2 */
  int no_session_id_context;        /* misconfigured like a bare OpenSSL server: with client
                                     * certificates on, every resumption attempt fails */
};

struct https_peer_conn {
  struct https_peer *peer;
  pthread_t th;
  int fd; /* -1 once closed; guarded by peer->mu */
};

struct https_peer {
  SSL_CTX *ctx;
  int lfd;
  int port;
  pthread_t acceptor;
  atomic_int stop;
  atomic_int accepts, handshake_failures, requests, active, max_active;
  pthread_mutex_t mu;
  struct https_peer_conn *conns[HTTPS_PEER_MAX_CONNS];
  int nconns;
  /* last request (under mu) */
  char last_method[16], last_path[512], last_content_type[256], last_x_test[256];
  unsigned char *last_body;
  size_t last_body_len;
  char seen[HTTPS_PEER_SEEN_MAX][48]; /* X-Test of every request, in order (under mu) */
  int nseen;
};

/* How many requests carried X-Test: id. */
static inline int https_peer_seen(struct https_peer *s, const char *id) {
  int n = 0;
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < s->nseen; i++) n += strcmp(s->seen[i], id) == 0;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static inline void https_peer_sleep_ms(struct https_peer *s, long ms) {
  while (ms > 0 && !atomic_load(&s->stop)) {
    long step = ms < 10 ? ms : 10;
    struct timespec ts = {0, step * 1000000L};
    nanosleep(&ts, NULL);
    ms -= step;
  }
}

static inline char *https_peer_find_crlf2(char *buf, size_t len) {
  for (size_t i = 0; i + 4 <= len; i++)
    if (memcmp(buf + i, "\r\n\r\n", 4) == 0) return buf + i;
  return NULL;
}

static inline long https_peer_qint(const char *path, const char *key, long dflt) {
  const char *q = strchr(path, '?');
  if (q == NULL) return dflt;
  size_t kl = strlen(key);
  for (const char *p = q + 1; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
    if (strncmp(p, key, kl) == 0 && p[kl] == '=') return strtol(p + kl + 1, NULL, 10);
  return dflt;
}

static inline int https_peer_write(SSL *ssl, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    int n = SSL_write(ssl, p, (int)(len > 65536 ? 65536 : len));
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static inline int https_peer_printf(SSL *ssl, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline int https_peer_printf(SSL *ssl, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof buf) return -1;
  return https_peer_write(ssl, buf, (size_t)n);
}

/* Finds a header's value in the raw header block; copies it into out. */
static inline void https_peer_header(const char *hdrs, const char *name, char *out, size_t size) {
  out[0] = '\0';
  size_t nl = strlen(name);
  for (const char *p = hdrs; p && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : NULL) {
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ') v++;
      const char *e = strstr(v, "\r\n");
      size_t n = e ? (size_t)(e - v) : strlen(v);
      if (n >= size) n = size - 1;
      memcpy(out, v, n);
      out[n] = '\0';
      return;
    }
  }
}

#define HTTPS_PEER_STALE                                                                   \
  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nX-Echo-Test: unsolicited\r\n" \
  "Content-Length: 5\r\n\r\nstale"

/* Answers one request; returns 0 to keep the connection, -1 to drop it, 1 to
 * close it with a TLS close_notify. */
static inline int https_peer_answer(struct https_peer *s, SSL *ssl, int fd, const char *path,
                                    const char *ct, const char *xt, const unsigned char *body,
                                    size_t blen) {
  if (strncmp(path, "/twice", 6) == 0) {
    long ms = https_peer_qint(path, "ms", 0);
    char buf[8192];
    int n = snprintf(buf, sizeof buf,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "X-Echo-Test: %s\r\nContent-Length: %zu\r\n\r\n",
                     xt, blen);
    if (n < 0 || (size_t)n + blen + sizeof HTTPS_PEER_STALE > sizeof buf) return -1;
    memcpy(buf + n, body, blen);
    size_t len = (size_t)n + blen;
    if (https_peer_qint(path, "same", 0)) {
      memcpy(buf + len, HTTPS_PEER_STALE, sizeof HTTPS_PEER_STALE - 1);
      return https_peer_write(ssl, buf, len + sizeof HTTPS_PEER_STALE - 1);
    }
    int one = 1, zero = 0;
    if (ms == 0) setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
    int rc = https_peer_write(ssl, buf, len);
    if (rc == 0 && ms > 0) https_peer_sleep_ms(s, ms);
    if (rc == 0) rc = https_peer_printf(ssl, "%s", HTTPS_PEER_STALE);
    if (ms == 0) setsockopt(fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
    return rc;
  }
  if (strncmp(path, "/close", 6) == 0) {
    int hdr = https_peer_qint(path, "hdr", 0) != 0;
    if (https_peer_printf(ssl, "HTTP/1.1 200 OK\r\nX-Echo-Test: %s\r\n%sContent-Length: %zu\r\n\r\n",
                          xt, hdr ? "Connection: close\r\n" : "", blen) != 0 ||
        https_peer_write(ssl, body, blen) != 0)
      return -1;
    return 1;
  }
  if (strncmp(path, "/echo", 5) == 0) {
    if (https_peer_printf(ssl,
                          "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          "X-Echo-Method: POST\r\nX-Echo-Content-Type: %s\r\nX-Echo-Test: %s\r\n"
                          "X-Echo-Len: %zu\r\nContent-Length: %zu\r\n\r\n",
                          ct, xt, blen, blen) != 0)
      return -1;
    return https_peer_write(ssl, body, blen);
  }
  if (strncmp(path, "/status", 7) == 0) {
    long code = https_peer_qint(path, "code", 500);
    return https_peer_printf(ssl,
                             "HTTP/1.1 %ld Whatever\r\nRetry-After: 7\r\nContent-Length: 5\r\n\r\n"
                             "nope\n",
                             code);
  }
  if (strncmp(path, "/delay", 6) == 0) {
    https_peer_sleep_ms(s, https_peer_qint(path, "ms", 100));
    return https_peer_printf(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  }
  if (strncmp(path, "/cut", 4) == 0) {
    char chunk[1000];
    memset(chunk, 'c', sizeof chunk);
    https_peer_printf(ssl, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    https_peer_write(ssl, chunk, sizeof chunk);
    https_peer_sleep_ms(s, 50);
    return -1;
  }
  if (strncmp(path, "/big", 4) == 0 || strncmp(path, "/chunked", 8) == 0) {
    int chunked = path[1] == 'c';
    long n = https_peer_qint(path, "n", 1000);
    static const char x[16384] = {0};
    if (chunked) {
      if (https_peer_printf(ssl, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") != 0)
        return -1;
    } else if (https_peer_printf(ssl, "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n\r\n", n) != 0) {
      return -1;
    }
    while (n > 0) {
      size_t k = n > (long)sizeof x ? sizeof x : (size_t)n;
      if (chunked && https_peer_printf(ssl, "%zx\r\n", k) != 0) return -1;
      if (https_peer_write(ssl, x, k) != 0) return -1;
      if (chunked && https_peer_write(ssl, "\r\n", 2) != 0) return -1;
      n -= (long)k;
    }
    if (chunked) return https_peer_write(ssl, "0\r\n\r\n", 5);
    return 0;
  }
  if (strncmp(path, "/headers", 8) == 0) {
    long n = https_peer_qint(path, "n", 10);
    if (https_peer_printf(ssl, "HTTP/1.1 200 OK\r\n") != 0) return -1;
    for (long i = 0; i < n; i++)
      if (https_peer_printf(ssl, "X-H-%ld: value %ld\r\n", i, i) != 0) return -1;
    return https_peer_printf(ssl, "Content-Length: 2\r\n\r\nok");
  }
  if (strncmp(path, "/continue", 9) == 0) {
    return https_peer_printf(ssl,
                             "HTTP/1.1 100 Continue\r\nX-Interim: yes\r\n\r\n"
                             "HTTP/1.1 200 OK\r\nX-Final: yes\r\nContent-Length: 2\r\n\r\nok");
  }
  return https_peer_printf(ssl, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
}

static inline void https_peer_conn_close(struct https_peer_conn *c) {
  pthread_mutex_lock(&c->peer->mu);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  pthread_mutex_unlock(&c->peer->mu);
}

static inline void *https_peer_conn_main(void *arg) {
  struct https_peer_conn *c = arg;
  struct https_peer *s = c->peer;
  SSL *ssl = SSL_new(s->ctx);
  char *buf = malloc(65536);
  size_t have = 0;
  if (ssl == NULL || buf == NULL) goto out;
  SSL_set_fd(ssl, c->fd);
  if (SSL_accept(ssl) != 1) {
    atomic_fetch_add(&s->handshake_failures, 1);
    /* Half-close and drain so the client reads our alert instead of a RST. */
    shutdown(c->fd, SHUT_WR);
    char tmp[4096];
    struct timeval tv = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (read(c->fd, tmp, sizeof tmp) > 0) {
    }
    goto out;
  }
  for (;;) {
    /* headers */
    char *end = NULL;
    while ((end = have ? https_peer_find_crlf2(buf, have) : NULL) == NULL) {
      if (have >= 65535) goto out;
      int n = SSL_read(ssl, buf + have, (int)(65535 - have));
      if (n <= 0) goto out;
      have += (size_t)n;
    }
    size_t hlen = (size_t)(end - buf) + 4;
    char hdrs[16384];
    if (hlen >= sizeof hdrs) goto out;
    memcpy(hdrs, buf, hlen);
    hdrs[hlen] = '\0';
    char method[16] = "", path[512] = "", cl[32], ct[256], xt[256], conn[64];
    if (sscanf(hdrs, "%15s %511s", method, path) != 2) goto out;
    const char *hstart = strstr(hdrs, "\r\n") + 2;
    https_peer_header(hstart, "Content-Length", cl, sizeof cl);
    https_peer_header(hstart, "Content-Type", ct, sizeof ct);
    https_peer_header(hstart, "X-Test", xt, sizeof xt);
    https_peer_header(hstart, "Connection", conn, sizeof conn);
    size_t blen = cl[0] ? (size_t)strtoul(cl, NULL, 10) : 0;
    if (blen > 64u * 1024 * 1024) goto out;
    unsigned char *body = malloc(blen + 1);
    if (body == NULL) goto out;
    size_t got = have - hlen < blen ? have - hlen : blen;
    memcpy(body, buf + hlen, got);
    size_t rest = have - hlen - got;
    memmove(buf, buf + hlen + got, rest);
    have = rest;
    while (got < blen) {
      int n = SSL_read(ssl, body + got, (int)(blen - got > 65536 ? 65536 : blen - got));
      if (n <= 0) {
        free(body);
        goto out;
      }
      got += (size_t)n;
    }
    pthread_mutex_lock(&s->mu);
    snprintf(s->last_method, sizeof s->last_method, "%s", method);
    snprintf(s->last_path, sizeof s->last_path, "%s", path);
    snprintf(s->last_content_type, sizeof s->last_content_type, "%s", ct);
    snprintf(s->last_x_test, sizeof s->last_x_test, "%s", xt);
    if (s->nseen < HTTPS_PEER_SEEN_MAX) {
      /* test ids are short; keep what fits */
      size_t n = strnlen(xt, sizeof s->seen[0] - 1);
      memcpy(s->seen[s->nseen], xt, n);
      s->seen[s->nseen++][n] = '\0';
    }
    free(s->last_body);
    s->last_body = malloc(blen + 1);
    if (s->last_body) memcpy(s->last_body, body, blen);
    s->last_body_len = blen;
    pthread_mutex_unlock(&s->mu);

    atomic_fetch_add(&s->requests, 1);
    int now = atomic_fetch_add(&s->active, 1) + 1;
    int prev = atomic_load(&s->max_active);
    while (now > prev && !atomic_compare_exchange_weak(&s->max_active, &prev, now)) {
    }
    int rc = https_peer_answer(s, ssl, c->fd, path, ct, xt, body, blen);
    atomic_fetch_sub(&s->active, 1);
    free(body);
    if (rc == 1) {
      SSL_shutdown(ssl); /* close_notify; we do not wait for the client's */
      goto out;
    }
    if (rc != 0 || strcasecmp(conn, "close") == 0) goto out;
  }
out:
  free(buf);
  if (ssl) SSL_free(ssl); /* no close_notify: /cut wants an abrupt end */
  https_peer_conn_close(c);
  return NULL;
}

static inline void *https_peer_accept_main(void *arg) {
  struct https_peer *s = arg;
  for (;;) {
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      break; /* listener shut down */
    }
    if (atomic_load(&s->stop)) {
      close(fd);
      break;
    }
    atomic_fetch_add(&s->accepts, 1);
    int one = 1; /* a response is written in pieces: no Nagle stalls */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct https_peer_conn *c = calloc(1, sizeof *c);
    pthread_mutex_lock(&s->mu);
    int full = s->nconns >= HTTPS_PEER_MAX_CONNS;
    if (c && !full) s->conns[s->nconns++] = c;
    pthread_mutex_unlock(&s->mu);
    if (c == NULL || full) {
      free(c);
      close(fd);
      continue;
    }
    c->peer = s;
    c->fd = fd;
    pthread_create(&c->th, NULL, https_peer_conn_main, c);
  }
  return NULL;
}

/* 0 on success; s->port is then the listening port. */
static inline int https_peer_start(struct https_peer *s, const struct https_peer_config *cfg) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  s->ctx = SSL_CTX_new(TLS_server_method());
  if (s->ctx == NULL) return -1;
  SSL_CTX_set_min_proto_version(s->ctx, TLS1_2_VERSION);
  if (cfg->tls12_only) SSL_CTX_set_max_proto_version(s->ctx, TLS1_2_VERSION);
  if (SSL_CTX_use_certificate_chain_file(s->ctx, cfg->cert_file) != 1 ||
      SSL_CTX_use_PrivateKey_file(s->ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(s->ctx);
    return -1;
  }
  if (cfg->client_ca_file != NULL) {
    if (SSL_CTX_load_verify_locations(s->ctx, cfg->client_ca_file, NULL) != 1) {
      SSL_CTX_free(s->ctx);
      return -1;
    }
    SSL_CTX_set_client_CA_list(s->ctx, SSL_load_client_CA_file(cfg->client_ca_file));
    SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  }
  if (!cfg->no_session_id_context)
    SSL_CTX_set_session_id_context(s->ctx, (const unsigned char *)"https_peer", 10);
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 128) != 0 ||
      getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0) {
    close(s->lfd);
    SSL_CTX_free(s->ctx);
    return -1;
  }
  s->port = ntohs(a.sin_port);
  if (pthread_create(&s->acceptor, NULL, https_peer_accept_main, s) != 0) return -1;
  return 0;
}

/* Stops accepting, drops every connection, joins every thread, frees. */
static inline void https_peer_stop(struct https_peer *s) {
  atomic_store(&s->stop, 1);
  shutdown(s->lfd, SHUT_RDWR);
  pthread_join(s->acceptor, NULL);
  close(s->lfd);
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < s->nconns; i++)
    if (s->conns[i]->fd >= 0) shutdown(s->conns[i]->fd, SHUT_RDWR);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->nconns; i++) {
    pthread_join(s->conns[i]->th, NULL);
    free(s->conns[i]);
  }
  s->nconns = 0;
  free(s->last_body);
  s->last_body = NULL;
  SSL_CTX_free(s->ctx);
  pthread_mutex_destroy(&s->mu);
}

#endif
