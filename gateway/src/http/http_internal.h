/*
 * http/http_internal.h — what the files of the HTTP server share and nobody
 * else may touch: the server, connection and exchange structures and the
 * functions that move a connection through its phases.
 *
 * Files and their one job each:
 *   server.c    listener, accept, connection limit, graceful close, resume queue
 *   conn.c      connection lifecycle: bytes in/out (the TLS seam), timers,
 *               reading and backpressure, lingering close, freeing
 *   parser.c    llhttp glue: request assembly into bounded buffers, limits,
 *               100-continue, handing complete requests to the handler
 *   response.c  status lines, header serialisation, Date cache, respond API
 *   problem.c   RFC 9457 bodies
 *   tls.c       TLS listeners: SSL_CTX from the config, per-connection SSL on
 *               a BIO pair between the socket and the plaintext seam
 *
 * Invariants a reader can rely on:
 *   - A connection handles one request at a time (phase HANDLER parks the
 *     parser); bytes that arrive meanwhile wait in c->pend, capped.
 *   - The struct is freed only when both handles are closed, no write or
 *     shutdown request is outstanding and no exchange is held by a handler
 *     (tb__http_conn_maybe_free). So an exchange outlives its socket.
 *   - The server is freed only when the listener, the resume idle handle and
 *     every connection struct are gone.
 */
#ifndef TB_HTTP_INTERNAL_H
#define TB_HTTP_INTERNAL_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/server.h"

/* One shared read buffer per server: libuv calls alloc, read and our read
 * callback back to back on the loop thread, and every byte is either parsed
 * (and copied into request storage) or copied into c->pend before the
 * callback returns, so nothing refers to the slab afterwards. */
#define TB_HTTP_READ_SLAB (64u * 1024u)
/* Above this many queued-but-unwritten bytes a connection neither reads nor
 * parses (a peer that pipelines requests without reading answers). */
#define TB_HTTP_WRITE_HIGH (256u * 1024u)
/* Lingering close: after a final answer we half-close and discard what the
 * peer still sends, so the kernel does not reset the connection under an
 * answer the peer has not read yet. */
#define TB_HTTP_LINGER_MS 2000u
#define TB_HTTP_LINGER_BYTES (1024u * 1024u)
/* Connections over max_connections that are being answered 503 at once;
 * beyond this the socket is closed without an answer. */
#define TB_HTTP_MAX_REJECTING 64u
/* Body buffers larger than this are freed after the answer instead of being
 * kept for the next request on the connection. */
#define TB_HTTP_BODY_KEEP (64u * 1024u)
/* TLS: the BIO pair between a connection's SSL and its socket has a ring per
 * direction; they are the cap on buffered ciphertext (input is fed in slices
 * of at most TB_HTTP_TLS_RING_IN and decrypted before the next slice;
 * output is flushed to the socket whenever the ring fills). */
#define TB_HTTP_TLS_RING_IN (17u * 1024u)
#define TB_HTTP_TLS_RING_OUT (64u * 1024u)
/* One TLS record of plaintext: the most one read's worth of ciphertext can
 * yield beyond the bytes read (a record completed by this read). */
#define TB_HTTP_TLS_RECORD (16u * 1024u)
/* handshake_failed log lines per second and listener; the rest are counted. */
#define TB_HTTP_TLS_LOG_PER_SEC 10u

struct tb__list {
  struct tb__list *prev, *next;
};

static inline void tb__list_init(struct tb__list *l) { l->prev = l->next = l; }
static inline int tb__list_empty(const struct tb__list *l) { return l->next == l; }
static inline void tb__list_add_tail(struct tb__list *head, struct tb__list *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}
static inline void tb__list_del(struct tb__list *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

#define TB__CONTAINER_OF(ptr, type, member) \
  ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct tb_http_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_idle_t resume_idle; /* runs conns queued in `ready` (deferred parsing) */
  struct tb_http_server_config cfg;
  char name[64];
  char addr[80]; /* "127.0.0.1:8080" / "[::1]:8080" for logs */
  int port;
  size_t nconns;     /* admitted, socket open */
  size_t nrejecting; /* being answered 503, socket open */
  size_t nlive;      /* connection structs alive (incl. lingering exchanges) */
  struct tb__list conns;
  struct tb__list ready;
  int closing;
  int handles_open; /* listener + resume_idle */
  void (*on_closed)(void *ud);
  void *on_closed_ud;
  uint64_t reject_log_sec; /* rate-limits "http.conn.limit" to one a second */
  uint64_t reject_count;
  int64_t date_sec; /* Date header cache */
  char date[40];
  /* TLS listeners only (NULL/0 for plain HTTP). */
  SSL_CTX *tls_ctx;
  char *tls_plain;            /* TB_HTTP_READ_SLAB bytes: decrypted input, like slab */
  uint64_t tls_log_sec;       /* rate limit of http.tls.handshake_failed */
  unsigned tls_log_n;
  uint64_t tls_log_suppressed;
  char slab[TB_HTTP_READ_SLAB];
};

enum tb__phase {
  TB__PH_IDLE,    /* between requests; keep-alive (or first-request) deadline */
  TB__PH_HEADERS, /* request line + headers; total deadline from first byte */
  TB__PH_BODY,    /* body; idle deadline refreshed by every read */
  TB__PH_HANDLER, /* complete request held by the handler; parser paused */
  TB__PH_DRAIN,   /* final answer queued: write it, linger, close */
  TB__PH_CLOSED   /* handles closing or closed */
};

struct tb_http_exchange {
  struct tb__http_conn *conn;
  const char *route;
  tb_http_abort_fn on_abort;
  void *abort_ud;
  int active;  /* handed to the handler, not yet answered */
  int aborted; /* the connection went away first */
  int is_head;
};

/* A TLS connection's state (tls.c). ssl reads from and writes to the
 * internal half of a BIO pair; `net` is the external half, fed with bytes
 * from the socket and drained into it. */
struct tb__http_tls {
  SSL *ssl;
  BIO *net;
  char *subject;      /* peer_subject, malloc'd; NULL without a verified client cert */
  uint64_t bytes_in;  /* ciphertext received (was a handshake attempted at all?) */
  int established;    /* handshake complete */
  int failed;         /* fatal TLS error: no close_notify, no more SSL calls */
  int shutdown_sent;  /* close_notify written */
};

struct tb__hdr_off {
  uint32_t name, value;
};

struct tb__http_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  struct tb_http_server *srv;
  struct tb__list link;  /* srv->conns */
  struct tb__list ready; /* srv->ready while queued for deferred parsing */
  llhttp_t parser;
  enum tb__phase phase;
  int handles_open;
  int writes;        /* uv_write requests outstanding */
  int admitted;      /* counted in srv->nconns (else: a 503 reject) */
  int scheduled;     /* on srv->ready */
  int reading;       /* uv_read_start active */
  int in_parse;      /* tb__http_parse is on the stack */
  int paused;        /* llhttp is paused (HPE_PAUSED) */
  int eof;           /* the peer half-closed */
  int lingering;     /* shutdown sent, discarding input until EOF/deadline */
  int shutdown_pending;
  int write_blocked; /* write queue over TB_HTTP_WRITE_HIGH */
  int hdrs_done;     /* on_headers_complete fired; handled after execute */
  int msg_done;      /* on_message_complete fired; dispatched after execute */
  uint64_t nreq;     /* requests answered on this connection */
  size_t linger_bytes;

  /* Deadlines in uv_now() milliseconds, 0 = none; one timer serves all. */
  uint64_t phase_deadline;
  uint64_t body_last; /* last body read (body idle timeout) */
  uint64_t write_deadline;
  uint64_t armed_at; /* when the timer is due, 0 = not armed */

  /* Input that arrived while the parser could not run; capped. */
  char *pend;
  size_t pend_len, pend_cap;

  /* The request being read. */
  uint64_t started_ns;
  size_t req_bytes;     /* bytes of this request fed to llhttp (error positions) */
  size_t hdr_raw;       /* raw bytes of request line + header section */
  size_t body_raw;      /* raw bytes of the body incl. chunk framing */
  size_t trailer_bytes; /* chunked trailers are counted, not stored */
  size_t trailer_count;
  size_t ext_bytes; /* chunk extensions are counted, not stored */
  int in_field;     /* a header name is being received */
  char *hbuf;       /* target, header names, values; each NUL-terminated */
  size_t hlen, hcap;
  size_t url_off, url_len;
  struct tb__hdr_off *hoff; /* offsets into hbuf while hbuf may still grow */
  struct tb_http_header *hdrs;
  size_t nhdr, hdr_slots;
  unsigned char *body;
  size_t body_len, body_cap;
  struct tb_http_request req;
  struct tb_http_exchange ex;

  /* Set by a parser callback that rejects the request (status != 0). */
  int fail_status;
  const char *fail_slug;
  char fail_detail[160];

  char peer[64];
  struct tb__http_tls *tls; /* NULL on a plain listener */
};

/* server.c */
void tb__http_server_schedule(struct tb_http_server *srv, struct tb__http_conn *c);
void tb__http_server_conn_gone(struct tb_http_server *srv);
void tb__http_server_observe(struct tb_http_server *srv, const char *route, int status,
                             uint64_t started_ns);

/* conn.c */
struct tb__http_conn *tb__http_conn_new(struct tb_http_server *srv);
void tb__http_conn_start(struct tb__http_conn *c);
/* The TLS seam. recv: plaintext bytes from the peer, borrowed for the call.
 * send: plaintext bytes to the peer in order; bufs are borrowed (copied if
 * they cannot be written at once) except `owned`, which is one of the bufs'
 * bases (or NULL) and is freed by the connection when written or dropped. */
void tb__http_conn_recv(struct tb__http_conn *c, const char *data, size_t len);
int tb__http_conn_send(struct tb__http_conn *c, const uv_buf_t *bufs, unsigned nbufs,
                       char *owned);
void tb__http_conn_step(struct tb__http_conn *c);
void tb__http_conn_resume(struct tb__http_conn *c);
void tb__http_conn_close(struct tb__http_conn *c);
void tb__http_conn_maybe_free(struct tb__http_conn *c);
void tb__http_conn_enter(struct tb__http_conn *c, enum tb__phase phase);
/* Bytes to the socket as they are (plaintext on a plain listener, ciphertext
 * under TLS); arguments as tb__http_conn_send. */
int tb__http_conn_write_raw(struct tb__http_conn *c, const uv_buf_t *bufs, unsigned nbufs,
                            char *owned);

/* parser.c */
void tb__http_parser_init(struct tb__http_conn *c);
size_t tb__http_parse(struct tb__http_conn *c, const char *data, size_t len);
void tb__http_request_begin(struct tb__http_conn *c);
void tb__http_request_done(struct tb__http_conn *c);

/* tls.c */
/* Builds the listener's SSL_CTX from cfg; errors as tb_http_server_start. */
int tb__http_tls_ctx_new(const struct tb_http_tls_config *cfg, const char *name,
                         SSL_CTX **out, char *err);
/* Gives a new connection its SSL (server side, handshake pending). -1: no memory. */
int tb__http_tls_conn_init(struct tb__http_conn *c);
/* Ciphertext from the socket (borrowed): drives the handshake, hands
 * plaintext to tb__http_conn_recv, flushes what TLS has to say. */
void tb__http_tls_read(struct tb__http_conn *c, const char *data, size_t len);
/* The plaintext side of tb__http_conn_send under TLS. */
int tb__http_tls_send(struct tb__http_conn *c, const uv_buf_t *bufs, unsigned nbufs,
                      char *owned);
/* The peer's TCP FIN arrived (logs a handshake cut short). */
void tb__http_tls_eof(struct tb__http_conn *c);
/* Queues close_notify once (only on an established, healthy session).
 * queue=0: only what the socket takes at once (the handle closes next). */
void tb__http_tls_close_notify(struct tb__http_conn *c, int queue);
void tb__http_tls_free(struct tb__http_conn *c);

/* response.c */
/* Serialises and queues an answer; the observer sees it. `owned` as in
 * tb__http_conn_send (body or NULL). */
void tb__http_conn_answer(struct tb__http_conn *c, int status, const char *content_type,
                          const void *body, size_t body_len, char *owned,
                          const char *extra_headers, int keep_alive, int head_only,
                          const char *route);
/* A server-generated error: problem+json, Connection: close, phase DRAIN. */
void tb__http_conn_fail(struct tb__http_conn *c, int status, const char *slug,
                        const char *detail, const char *extra_headers);

#endif
