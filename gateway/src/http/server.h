/*
 * http/server.h — HTTP/1.1 server on libuv + llhttp.
 *
 * One server per listener. It owns sockets, parsing, limits, timeouts and the
 * order of responses; it knows nothing of routes. Every complete request is
 * handed to one handler as an exchange; the handler answers it exactly once
 * with tb_http_respond(), now or later (after a store commit, a long-poll).
 *
 * Pipelining: a connection handles one request at a time. While a response
 * is pending, the parser is paused and further bytes are buffered up to a
 * cap (then reading stops), so pipelined requests are answered in order and
 * memory per connection is bounded.
 *
 * Errors the server detects itself are answered as RFC 9457
 * application/problem+json and the connection is closed where the protocol
 * state requires it: 400 (malformed), 408 (header/body/keep-alive timeouts),
 * 411 (body without length), 413 (body over limit, before it is read),
 * 431 (header bytes or count over limit), 505 (not HTTP/1.x), 503 (over
 * max_connections: answered then closed).
 *
 * TLS (optional, per listener): with cfg.tls set the listener speaks only
 * HTTPS — TLS 1.2/1.3 on top of the same HTTP code through memory BIOs —
 * and can require client certificates; a request then names its verified
 * peer (peer_subject) and tb_http_request_peer_issued_by() tells which CA
 * issued it. See docs/http.md, "TLS".
 *
 * Threading: everything runs on the loop thread that started the server.
 */
#ifndef TB_HTTP_SERVER_H
#define TB_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/types.h>
#include <uv.h>

struct tb_http_limits {
  size_t max_header_bytes;        /* request line + headers; default 16384 */
  size_t max_header_count;        /* default 100 */
  size_t max_body_bytes;          /* default 32 MiB */
  size_t max_connections;         /* default 1024 */
  size_t max_pipeline_bytes;      /* buffered while a response is pending; default 65536 */
  uint64_t header_timeout_ms;     /* first byte of a request to end of headers; default 10000 */
  uint64_t body_timeout_ms;       /* idle time between body reads; default 30000 */
  uint64_t keepalive_timeout_ms;  /* idle between requests; default 75000 */
  uint64_t write_timeout_ms;      /* a response that cannot be written; default 30000 */
};
/* Fills the defaults above. tb_http_server_start also treats any field left
 * 0 as "default", so a config section may omit keys. */
void tb_http_limits_default(struct tb_http_limits *lim);

struct tb_http_header {
  const char *name;  /* NUL-terminated, as received */
  const char *value; /* NUL-terminated, leading/trailing whitespace removed */
  size_t name_len, value_len;
};

struct tb_http_request {
  int method;                 /* llhttp_method_t (HTTP_GET, HTTP_POST, ...) */
  const char *method_name;    /* "GET", ... */
  const char *path;           /* NUL-terminated path without query, not decoded */
  size_t path_len;
  const char *query;          /* NUL-terminated text after '?', "" if none */
  size_t query_len;
  const struct tb_http_header *headers;
  size_t header_count;
  const unsigned char *body;  /* NUL-terminated for convenience (not counted) */
  size_t body_len;
  int keep_alive;             /* the connection stays open after the answer */
  uint64_t started_ns;        /* uv_hrtime() when the first byte arrived */
  const char *peer;           /* "127.0.0.1:54321" */
  /* TLS listeners only: RFC 2253 subject of the client certificate that was
   * verified in the handshake ("CN=laizhou 370683 client,O=..."), NULL
   * without one (plain listener, client certificates not requested, or
   * optional and not sent). Which partner's CA issued it is a separate
   * question: tb_http_request_peer_issued_by(). */
  const char *peer_subject;
};

/* Case-insensitive header lookup; first match or NULL. */
const char *tb_http_request_header(const struct tb_http_request *req, const char *name);

/*
 * 1 if the request arrived over TLS with a client certificate that was
 * verified in the handshake AND that certificate, with the intermediates the
 * client sent, verifies now for client authentication against `trusted`
 * alone (e.g. one partner's CA, from tb_http_tls_ca_store_new()); else 0:
 * plain listener, no client certificate, issued by another CA, expired since
 * the handshake, or out of memory (fails closed). The listener's verification
 * only proves the certificate chains to *one of* its configured client CAs;
 * this proves it chains to *this* one. Costs one chain verification (a few
 * signature checks); no allocation survives the call. `trusted` is borrowed
 * and not modified. Loop thread only, while the exchange is unanswered.
 * On a resumed session only the leaf certificate is known (clients do not
 * resend their chain): keep intermediates in the store given here.
 */
int tb_http_request_peer_issued_by(const struct tb_http_request *req, X509_STORE *trusted);

struct tb_http_exchange; /* one request waiting for its answer */

/* Called once per complete request. req and its strings stay valid until the
 * exchange is answered. */
typedef void (*tb_http_handler_fn)(struct tb_http_exchange *ex,
                                   const struct tb_http_request *req, void *ud);

/* Called for every answer the server sends (handler's or its own), after it
 * is queued for writing: for request metrics. route is the label the handler
 * set (tb_http_exchange_set_route) or "-" for server-generated answers. */
typedef void (*tb_http_observer_fn)(const char *route, int status,
                                    uint64_t duration_ns, void *ud);

/* Called on the loop thread when the connection went away while an answer
 * is pending (long-polls use it to stop waiting): a reset or read error, a
 * failed or timed-out write, or the server closing it. A peer's half-close
 * (EOF) is not an abort: requests already read are still answered. The
 * handler must still call tb_http_respond() exactly once; that answer is then
 * discarded, and the exchange stays valid until then. */
typedef void (*tb_http_abort_fn)(struct tb_http_exchange *ex, void *ud);

/* Client certificates on a TLS listener. */
enum tb_http_tls_verify {
  TB_HTTP_TLS_VERIFY_NONE = 0, /* not requested */
  TB_HTTP_TLS_VERIFY_OPTIONAL, /* requested; if sent it must verify, else the handshake fails */
  TB_HTTP_TLS_VERIFY_REQUIRED  /* a handshake without a verified certificate fails */
};

/*
 * A TLS listener (borrowed for tb_http_server_start, which loads every file;
 * nothing here is kept). Protocols: TLS 1.2 and 1.3 only. Defaults: TLS 1.2
 * ECDHE with AES-GCM or ChaCha20-Poly1305 (no RSA key exchange, no CBC), the
 * OpenSSL TLS 1.3 suites, server preference, no renegotiation, session cache
 * and session tickets on (resumed handshakes are cheap).
 */
struct tb_http_tls_config {
  const char *certificate_file; /* PEM: our certificate, then intermediates */
  const char *private_key_file; /* PEM, unencrypted, not readable by group/others */
  enum tb_http_tls_verify verify;
  /* PEM files of trusted client CAs (one per partner, each may hold several
   * certificates); required unless verify is NONE (then ignored). All are
   * trusted for the handshake and named in the CertificateRequest. */
  const char *const *client_ca_files;
  size_t client_ca_count;
  const char *ciphers;        /* TLS 1.2 cipher list; NULL: the default above */
  const char *ciphersuites;   /* TLS 1.3 suites; NULL: OpenSSL's default */
  uint32_t session_timeout_s; /* lifetime of cached sessions and tickets; 0: 300 */
};

/*
 * Loads a PEM bundle of CA certificates into a new X509_STORE for
 * tb_http_request_peer_issued_by() (free it with X509_STORE_free). Returns 0,
 * TB_ENOTFOUND / TB_EIO (file), TB_EPARSE (no certificate in it) or TB_ENOMEM,
 * with err (TB_ERRMSG_MAX bytes) naming the file. Any thread.
 */
int tb_http_tls_ca_store_new(const char *pem_file, X509_STORE **out, char *err);

struct tb_http_server_config {
  const char *name;            /* listener name for logs and metrics: "local_api" */
  const char *host;            /* numeric IPv4/IPv6 address */
  int port;                    /* 0: any free port (see tb_http_server_port) */
  struct tb_http_limits limits;
  tb_http_handler_fn handler;
  void *handler_ud;
  tb_http_observer_fn observer; /* may be NULL */
  void *observer_ud;
  const struct tb_http_tls_config *tls; /* NULL: plain HTTP */
};

struct tb_http_server;

/* Binds and listens. Returns 0, or TB_EIO with err naming the address and
 * the system's reason ("local_api: cannot listen on 127.0.0.1:8080: address
 * already in use"). cfg is copied. With cfg->tls, every file is loaded and
 * checked first: TB_ENOTFOUND / TB_EIO (unreadable file), TB_ECONFIG (key
 * readable by group/others — the message says "chmod 600 FILE" —, key not
 * matching the certificate, client certificates requested without a CA,
 * cipher list that selects nothing), TB_EPARSE (not PEM, encrypted key),
 * each naming the listener, the file and OpenSSL's reason. */
int tb_http_server_start(uv_loop_t *loop, const struct tb_http_server_config *cfg,
                         struct tb_http_server **out, char *err);

/* The bound port (useful after port 0). */
int tb_http_server_port(const struct tb_http_server *srv);

/* Number of open connections (for metrics and tests). */
size_t tb_http_server_connections(const struct tb_http_server *srv);

/* Graceful close: stop accepting, close idle connections, let connections
 * with a pending or in-progress request finish that answer (sent with
 * Connection: close) and then close; on_closed runs when every connection
 * and the listener are closed and the server is freed. */
void tb_http_server_close(struct tb_http_server *srv, void (*on_closed)(void *ud), void *ud);

/* Answers the exchange: copies headers and body, queues them for writing in
 * request order. extra_headers is NULL or preformatted "Name: value\r\n"
 * lines. Must be called exactly once, on the loop thread; ex and its request
 * are invalid afterwards. Content-Length, Date, Connection and Server are
 * added by the server. */
void tb_http_respond(struct tb_http_exchange *ex, int status, const char *content_type,
                     const void *body, size_t body_len, const char *extra_headers);

/* Same, taking ownership of a malloc'd body (no copy). */
void tb_http_respond_owned(struct tb_http_exchange *ex, int status, const char *content_type,
                           char *body, size_t body_len, const char *extra_headers);

void tb_http_exchange_set_route(struct tb_http_exchange *ex, const char *route /* static */);
void tb_http_exchange_on_abort(struct tb_http_exchange *ex, tb_http_abort_fn fn, void *ud);
int tb_http_exchange_aborted(const struct tb_http_exchange *ex);

/* Status line reason phrase ("Not Found"); "Unknown" if not known. */
const char *tb_http_reason(int status);

#endif
