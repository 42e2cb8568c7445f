/*
 * client/client_internal.h — the structures shared by client.c (the libuv ⇄
 * curl multi bridge, lifecycle), pool.c (configuration, FIFO, start and
 * finish of requests) and transfer.c (one easy handle: options, header and
 * body capture, error classification). Not for use outside client/.
 */
#ifndef TB_CLIENT_INTERNAL_H
#define TB_CLIENT_INTERNAL_H

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "client/client.h"

/* One socket curl asked us to watch. Freed in its close callback. */
struct tb__client_sock {
  uv_poll_t poll;
  curl_socket_t fd;
  struct tb_client *client;
  struct tb__client_sock *prev, *next; /* client->socks */
};

/* A socket curl opened through CURLOPT_OPENSOCKETFUNCTION (until its
 * CURLOPT_CLOSESOCKETFUNCTION): curl does not say which socket a reused
 * connection has before the request is sent, so we find it by its addresses.
 * The addresses are filled in on first use after the connect. */
struct tb__client_fd {
  curl_socket_t fd;
  int known;                          /* lport, rport and rip are filled in */
  int lport, rport;
  char rip[64];
};

/* A recycled easy handle (kept across requests; curl_easy_reset between). */
struct tb__client_easy {
  CURL *easy;
  struct tb__client_easy *next;
};

enum { TB__REQ_POST = 0, TB__REQ_PROBE = 1 };
enum { TB__TOO_LARGE_NONE = 0, TB__TOO_LARGE_BODY, TB__TOO_LARGE_HEADERS };

/* What a look at an idle connection's socket found (tb__client_sock_state). */
enum {
  TB__SOCK_CLEAN = 0, /* nothing to read: safe to send a request on it */
  TB__SOCK_UNREAD,    /* bytes nobody asked for (an unsolicited answer) */
  TB__SOCK_CLOSED     /* the partner closed it (FIN, maybe after a close_notify), or an error */
};
enum { TB__DISCARD_NONE = 0, TB__DISCARD_UNREAD, TB__DISCARD_CLOSED };

/*
 * One request from tb_client_post to its callback. The request line data
 * (URL, body copy) live in the same allocation, after the struct.
 */
struct tb__client_req {
  struct tb_client_pool *pool;
  struct tb__client_req *prev, *next; /* pool FIFO or pool in-flight list */
  int kind;
  char *url;                          /* inside this allocation */
  unsigned char *body;                /* inside this allocation */
  size_t body_len;
  struct curl_slist *headers;         /* request headers (owned) */
  tb_client_done_fn cb;
  void *ud;
  uint64_t queued_at, started_at;     /* uv_hrtime() */
  struct tb__client_easy *slot;       /* while in flight */

  /* Response capture (transfer.c). Header storage is allocated at the first
   * header at its full cap, so the pointers in harr stay valid. */
  unsigned char *rbody;
  size_t rlen, rcap;
  char *hbuf;
  size_t hlen;
  struct tb_client_header *harr;
  size_t hcount;
  int headers_done;                   /* blank line after a final status: later lines are trailers */
  int too_large;                      /* TB__TOO_LARGE_* */
  int oom;

  /* Connection hygiene (transfer.c). conn_fd is the socket of the
   * connection this transfer was sent on, found by CURLOPT_PREREQFUNCTION
   * (CURL_SOCKET_BAD until then): a completed transfer's connection is only
   * inspected when no running transfer has been sent on it since. */
  curl_socket_t conn_fd;
  int discard;                        /* TB__DISCARD_*: the prereq check aborted this attempt */
  int reissued;                       /* the one transparent retry on a fresh connection */
  char errbuf[CURL_ERROR_SIZE];
};

struct tb__client_counters {
  uint64_t requests, completed, failed, connections_opened, reused, handles_created;
  uint64_t connections_discarded;
};

struct tb_client_pool {
  struct tb_client *client;
  struct tb_client_pool *prev, *next; /* client->pools */
  uv_timer_t closer;                  /* only its close callback is used: deferred teardown */
  int closing;
  void (*on_closed)(void *ud);
  void *on_closed_ud;

  /* Copied configuration (strings inside this allocation). */
  char *name, *base_url, *ca_file, *cert_file, *key_file;
  long connect_timeout_ms, timeout_ms, idle_timeout_s;
  size_t max_in_flight, max_connections, max_queued;
  size_t max_response_bytes, max_header_bytes, max_header_count;
  size_t start_limit;                 /* min(max_in_flight, max_connections) */
  int no_tls_session_reuse;

  struct tb__client_req *q_head, *q_tail; /* FIFO */
  size_t queued;
  struct tb__client_req *running;     /* in-flight list */
  size_t in_flight;
  struct tb__client_counters n;
};

struct tb_client {
  uv_loop_t *loop;
  CURLM *multi;
  CURLSH *share;
  uv_timer_t timer;
  struct tb__client_sock *socks;
  size_t open_socks;                  /* uv_poll handles not yet closed */
  struct tb_client_pool *pools;
  struct tb__client_easy *free_easy;
  struct tb__client_fd *fds;          /* every socket curl has open */
  size_t nfds, fds_cap;
  long maxconnects;
  int closing, timer_closed, multi_gone, curl_inited;
  void (*on_closed)(void *ud);
  void *on_closed_ud;
  struct tb__client_counters n;       /* totals over every pool */
  /* "client.connection_discarded" rate limit (TB__DISCARD_LOG_PER_SEC) */
  uint64_t discard_log_sec, discard_log_suppressed;
  unsigned discard_log_n;
};

#define TB__DISCARD_LOG_PER_SEC 5

/* client.c */
void tb__client_update_maxconnects(struct tb_client *c);
void tb__client_pool_gone(struct tb_client *c); /* a pool finished closing */
struct tb__client_easy *tb__client_easy_get(struct tb_client *c);
void tb__client_easy_put(struct tb_client *c, struct tb__client_easy *e);
curl_socket_t tb__client_find_fd(struct tb_client *c, const char *rip, int rport, int lport);
curl_socket_t tb__client_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *addr);
int tb__client_close_socket(void *ud, curl_socket_t fd);

/* pool.c */
void tb__client_finish(struct tb__client_req *r, CURLcode code);

/* transfer.c */
int tb__client_req_setup(struct tb__client_req *r, CURL *easy, char *err);
int tb__client_sock_state(curl_socket_t fd);
void tb__client_after_transfer(struct tb__client_req *r, CURLcode code);
void tb__client_log_discard(struct tb_client_pool *p, int discard, const char *where);
int tb__client_classify(const struct tb__client_req *r, CURLcode code);
int tb__client_check_header_lines(const char *lines, char *err);
void tb__client_req_release_response(struct tb__client_req *r);

#endif
