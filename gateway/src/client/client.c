/*
 * client/client.c — the client's lifecycle and the bridge between libcurl's
 * multi interface and the libuv loop (after curl's docs/examples/multi-uv.c):
 * curl tells us through CURLMOPT_SOCKETFUNCTION which sockets to watch for
 * what (one uv_poll each) and through CURLMOPT_TIMERFUNCTION when it next
 * needs to be called (one uv_timer); we answer with
 * curl_multi_socket_action() and then collect finished transfers with
 * curl_multi_info_read(). Pools and requests live in pool.c.
 *
 * Teardown order matters and is driven by close callbacks, which libuv never
 * runs from inside another call of ours, so nothing here is freed while a
 * caller up the stack still uses it: pools close first (aborting their
 * transfers), then the timer; when both are done every remaining uv_poll is
 * closed, the multi, easy handles and share are cleaned up, and the client is
 * freed when the last uv_poll's close callback has run.
 */
#include "client/client_internal.h"

#include <arpa/inet.h>
#include <assert.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tbgw/error.h"

#define CONTAINER_OF(ptr, type, field) ((type *)(void *)((char *)(ptr)-offsetof(type, field)))

const char *tb_client_error_name(int transport_error) {
  switch (transport_error) {
  case 0: return "ok";
#define TB__CLIENT_ERRNO_NAME(name, value, s, msg) case TB_CLIENT_E##name: return s;
    TB_CLIENT_ERRNO_MAP(TB__CLIENT_ERRNO_NAME)
#undef TB__CLIENT_ERRNO_NAME
  default: return "unknown";
  }
}

/* ---- finished transfers ------------------------------------------------- */

static void check_multi_info(struct tb_client *c) {
  CURLMsg *m;
  int left;
  /* A callback run from tb__client_finish may add or remove handles, or
   * start closing: the multi itself stays valid until a close callback. */
  while ((m = curl_multi_info_read(c->multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL *easy = m->easy_handle;
    CURLcode code = m->data.result; /* m is invalid once the handle is removed */
    char *priv = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    assert(priv != NULL);
    tb__client_finish((struct tb__client_req *)(void *)priv, code);
  }
}

/* ---- sockets ------------------------------------------------------------ */

static void maybe_finish(struct tb_client *c);

static void on_sock_closed(uv_handle_t *h) {
  struct tb__client_sock *k = CONTAINER_OF(h, struct tb__client_sock, poll);
  struct tb_client *c = k->client;
  free(k);
  c->open_socks--;
  if (c->closing) maybe_finish(c);
}

static void sock_close(struct tb_client *c, struct tb__client_sock *k) {
  uv_poll_stop(&k->poll);
  if (k->prev) k->prev->next = k->next;
  else c->socks = k->next;
  if (k->next) k->next->prev = k->prev;
  k->prev = k->next = NULL;
  uv_close((uv_handle_t *)&k->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  struct tb__client_sock *k = CONTAINER_OF(h, struct tb__client_sock, poll);
  struct tb_client *c = k->client;
  curl_socket_t fd = k->fd;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  int running = 0;
  /* May run on_curl_socket(REMOVE) for this very socket: k is then closing
   * (freed later, in its close callback) and is not used below. */
  curl_multi_socket_action(c->multi, fd, flags, &running);
  check_multi_info(c);
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)easy;
  struct tb_client *c = userp;
  struct tb__client_sock *k = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (k != NULL) sock_close(c, k);
    return 0;
  }
  if (k == NULL) {
    k = calloc(1, sizeof *k);
    if (k == NULL) return -1; /* curl fails the transfers on this socket */
    if (uv_poll_init_socket(c->loop, &k->poll, s) != 0) {
      free(k);
      return -1;
    }
    k->fd = s;
    k->client = c;
    k->next = c->socks;
    if (c->socks) c->socks->prev = k;
    c->socks = k;
    c->open_socks++;
    curl_multi_assign(c->multi, s, k);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
  uv_poll_start(&k->poll, ev, on_poll);
  return 0;
}

/* ---- timer -------------------------------------------------------------- */

static void on_timeout(uv_timer_t *t) {
  struct tb_client *c = CONTAINER_OF(t, struct tb_client, timer);
  int running = 0;
  curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(c);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  struct tb_client *c = userp;
  if (c->closing) return 0; /* the timer is closed or closing */
  if (timeout_ms < 0) {
    uv_timer_stop(&c->timer);
  } else {
    /* 0 means "as soon as possible": the next loop iteration, never from
     * inside this callback (curl forbids re-entering socket_action here). */
    uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
  }
  return 0;
}

/* ---- the sockets curl has open ------------------------------------------ */

/* CURLOPT_OPENSOCKETFUNCTION: the socket curl would make (plus CLOEXEC), and
 * a note of it. Refused rather than left untracked when out of memory: an
 * untracked connection could not be checked before reuse. */
curl_socket_t tb__client_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr) {
  struct tb_client *c = ud;
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD; /* no proxies, no FTP here */
  if (c->nfds == c->fds_cap) {
    size_t cap = c->fds_cap ? c->fds_cap * 2 : 16;
    struct tb__client_fd *n = realloc(c->fds, cap * sizeof *n);
    if (n == NULL) return CURL_SOCKET_BAD;
    c->fds = n;
    c->fds_cap = cap;
  }
  curl_socket_t fd = socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
  if (fd == CURL_SOCKET_BAD) return fd;
  /* The kernel just handed out this number: an entry still holding it is
   * stale (a socket closed without our callback; should not happen). */
  for (size_t i = 0; i < c->nfds;) {
    if (c->fds[i].fd == fd) c->fds[i] = c->fds[--c->nfds];
    else i++;
  }
  struct tb__client_fd *e = &c->fds[c->nfds++];
  memset(e, 0, sizeof *e);
  e->fd = fd;
  return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: curl keeps it with the connection, so it also
 * runs for connections closed by curl_multi_cleanup (c is still valid). */
int tb__client_close_socket(void *ud, curl_socket_t fd) {
  struct tb_client *c = ud;
  for (size_t i = 0; i < c->nfds; i++) {
    if (c->fds[i].fd != fd) continue;
    c->fds[i] = c->fds[--c->nfds];
    break;
  }
  return close(fd);
}

static int sockaddr_text(const struct sockaddr_storage *a, char *ip, size_t size, int *port) {
  if (a->ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)a;
    *port = ntohs(v4->sin_port);
    return inet_ntop(AF_INET, &v4->sin_addr, ip, (socklen_t)size) != NULL ? 0 : -1;
  }
  if (a->ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)(const void *)a;
    *port = ntohs(v6->sin6_port);
    return inet_ntop(AF_INET6, &v6->sin6_addr, ip, (socklen_t)size) != NULL ? 0 : -1;
  }
  return -1;
}

/* The socket of the connection curl reports by its addresses (the
 * CURLOPT_PREREQFUNCTION arguments). Linux may give two connections to
 * different destinations the same local port, hence the remote end too. */
curl_socket_t tb__client_find_fd(struct tb_client *c, const char *rip, int rport, int lport) {
  for (size_t i = 0; i < c->nfds; i++) {
    struct tb__client_fd *e = &c->fds[i];
    if (!e->known) {
      struct sockaddr_storage a;
      socklen_t al = sizeof a;
      char lip[64];
      if (getsockname(e->fd, (struct sockaddr *)&a, &al) != 0 ||
          sockaddr_text(&a, lip, sizeof lip, &e->lport) != 0 || e->lport == 0)
        continue;
      al = sizeof a;
      if (getpeername(e->fd, (struct sockaddr *)&a, &al) != 0 ||
          sockaddr_text(&a, e->rip, sizeof e->rip, &e->rport) != 0)
        continue; /* not connected (yet) */
      e->known = 1;
    }
    if (e->lport == lport && e->rport == rport && strcmp(e->rip, rip) == 0) return e->fd;
  }
  return CURL_SOCKET_BAD;
}

/* ---- easy handle recycling ---------------------------------------------- */

struct tb__client_easy *tb__client_easy_get(struct tb_client *c) {
  struct tb__client_easy *e = c->free_easy;
  if (e != NULL) {
    c->free_easy = e->next;
    e->next = NULL;
    return e;
  }
  e = calloc(1, sizeof *e);
  if (e == NULL) return NULL;
  e->easy = curl_easy_init();
  if (e->easy == NULL) {
    free(e);
    return NULL;
  }
  c->n.handles_created++;
  return e;
}

void tb__client_easy_put(struct tb_client *c, struct tb__client_easy *e) {
  /* Reset now, so an idle handle holds no pointer into a freed request. The
   * connection stays in the multi's cache; TLS sessions stay in the share. */
  curl_easy_reset(e->easy);
  e->next = c->free_easy;
  c->free_easy = e;
}

void tb__client_update_maxconnects(struct tb_client *c) {
  /* The idle cache must hold every pool's connections, or curl would close
   * one partner's warm connection to make room for another's. */
  long sum = 0;
  for (struct tb_client_pool *p = c->pools; p != NULL; p = p->next) {
    if (p->closing) continue;
    sum += p->max_connections > (size_t)(LONG_MAX / 2) ? LONG_MAX / 2 : (long)p->max_connections;
    if (sum > LONG_MAX / 2) sum = LONG_MAX / 2;
  }
  if (sum < 4) sum = 4;
  if (sum != c->maxconnects && c->multi != NULL) {
    c->maxconnects = sum;
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, sum);
  }
}

/* ---- lifecycle ---------------------------------------------------------- */

static void client_free_curl(struct tb_client *c) {
  if (c->multi != NULL) curl_multi_cleanup(c->multi);
  c->multi = NULL;
  while (c->free_easy != NULL) {
    struct tb__client_easy *e = c->free_easy;
    c->free_easy = e->next;
    curl_easy_cleanup(e->easy);
    free(e);
  }
  if (c->share != NULL) curl_share_cleanup(c->share);
  c->share = NULL;
  free(c->fds); /* curl_multi_cleanup closed every connection */
  c->fds = NULL;
  c->nfds = c->fds_cap = 0;
  if (c->curl_inited) curl_global_cleanup();
  c->curl_inited = 0;
}

int tb_client_new(uv_loop_t *loop, struct tb_client **out, char *err) {
  if (loop == NULL || out == NULL) return tb_errf(err, TB_EINVAL, "client: loop and out are required");
  *out = NULL;
  struct tb_client *c = calloc(1, sizeof *c);
  if (c == NULL) return tb_errf(err, TB_ENOMEM, "client: out of memory");
  c->loop = loop;
  CURLcode gc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (gc != CURLE_OK) {
    free(c);
    return tb_errf(err, TB_EINTERNAL, "client: curl_global_init: %s", curl_easy_strerror(gc));
  }
  c->curl_inited = 1;
  c->multi = curl_multi_init();
  c->share = curl_share_init();
  if (c->multi == NULL || c->share == NULL) {
    client_free_curl(c);
    free(c);
    return tb_errf(err, TB_ENOMEM, "client: out of memory (libcurl multi/share)");
  }
  CURLMcode mc = CURLM_OK;
  if (mc == CURLM_OK) mc = curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
  if (mc == CURLM_OK) mc = curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  if (mc == CURLM_OK) mc = curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  if (mc == CURLM_OK) mc = curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  /* HTTP/1.1 only: one request per connection at a time, never multiplexed. */
  if (mc == CURLM_OK) mc = curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
  CURLSHcode sc = curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  if (mc != CURLM_OK || sc != CURLSHE_OK) {
    client_free_curl(c);
    free(c);
    return tb_errf(err, TB_EINTERNAL, "client: libcurl setup failed: %s",
                   mc != CURLM_OK ? curl_multi_strerror(mc) : curl_share_strerror(sc));
  }
  tb__client_update_maxconnects(c);
  uv_timer_init(loop, &c->timer); /* cannot fail for a timer */
  *out = c;
  return 0;
}

static void client_final(struct tb_client *c) {
  void (*cb)(void *) = c->on_closed;
  void *ud = c->on_closed_ud;
  free(c);
  if (cb != NULL) cb(ud);
}

static void maybe_finish(struct tb_client *c) {
  if (!c->closing || !c->timer_closed || c->pools != NULL) return;
  if (!c->multi_gone) {
    c->multi_gone = 1;
    /* Close our polls before curl closes the sockets, and detach them so a
     * CURL_POLL_REMOVE during curl_multi_cleanup finds nothing to close. */
    while (c->socks != NULL) {
      struct tb__client_sock *k = c->socks;
      curl_multi_assign(c->multi, k->fd, NULL);
      sock_close(c, k);
    }
    client_free_curl(c);
  }
  if (c->open_socks == 0) client_final(c);
}

void tb__client_pool_gone(struct tb_client *c) {
  tb__client_update_maxconnects(c);
  if (c->closing) maybe_finish(c);
}

static void on_timer_closed(uv_handle_t *h) {
  struct tb_client *c = CONTAINER_OF(h, struct tb_client, timer);
  c->timer_closed = 1;
  maybe_finish(c);
}

void tb_client_close(struct tb_client *c, void (*on_closed)(void *ud), void *ud) {
  assert(c != NULL && !c->closing);
  c->closing = 1;
  c->on_closed = on_closed;
  c->on_closed_ud = ud;
  for (struct tb_client_pool *p = c->pools; p != NULL; p = p->next)
    if (!p->closing) tb_client_pool_close(p, NULL, NULL);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

void tb_client_stats(const struct tb_client *c, struct tb_client_stats *out) {
  memset(out, 0, sizeof *out);
  out->requests = c->n.requests;
  out->completed = c->n.completed;
  out->failed = c->n.failed;
  out->connections_opened = c->n.connections_opened;
  out->reused = c->n.reused;
  out->handles_created = c->n.handles_created;
  out->connections_discarded = c->n.connections_discarded;
  for (const struct tb_client_pool *p = c->pools; p != NULL; p = p->next) {
    out->in_flight += p->in_flight;
    out->queued += p->queued;
  }
}
