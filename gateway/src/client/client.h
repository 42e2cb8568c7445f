/*
 * client/client.h — outbound HTTPS to partners: libcurl's multi interface
 * driven by the libuv loop.
 *
 * One tb_client per gateway owns one CURLM (so one connection cache shared by
 * every partner), one uv_timer for curl's timeouts and one uv_poll per socket
 * curl asks us to watch (the docs/examples/multi-uv.c pattern). Each partner
 * gets a tb_client_pool: its base URL, the CA that must have issued the
 * partner's server certificate, our optional client certificate, timeouts
 * and limits. A pool starts at most min(max_in_flight, max_connections)
 * transfers at a time; further requests wait in the pool's FIFO, not in curl,
 * so no timeout clock runs while they wait. Connections are kept alive and
 * reused (a reused request costs a fraction of a full mTLS handshake): easy
 * handles are recycled with curl_easy_reset, and TLS sessions are shared
 * through one CURLSH so that a new connection can resume.
 *
 * A kept-alive connection on which the partner has sent anything unasked
 * (a partner that answers twice) is never reused: its next answer would be
 * that stale one. It is closed, and a request that was about to use it goes
 * out on a fresh connection instead, invisibly to the caller (see
 * connections_discarded and the "client.connection_discarded" log line).
 *
 * Only HTTPS, HTTP/1.1, TLS 1.2 or later, no proxies (the environment's
 * http_proxy is ignored), no redirects, no content decoding (partners sign
 * bytes). Response headers and body are capped; a partner that sends more
 * gets its transfer aborted (TB_CLIENT_ETOO_LARGE), not our memory.
 *
 * Threading: every function here must be called on the loop thread, and every
 * callback runs there. Nothing blocks: DNS goes through curl's threaded
 * resolver and there is no curl_easy_perform.
 */
#ifndef TB_CLIENT_CLIENT_H
#define TB_CLIENT_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/*
 * Transport error categories of a result (0 = the exchange completed: an HTTP
 * status was received and the whole body read). Positive, so that they never
 * mix with the TB_E* codes functions return. X(name, value, short name,
 * what happened).
 */
#define TB_CLIENT_ERRNO_MAP(X)                                                     \
  X(DNS,       1, "dns",       "the partner's host name could not be resolved")    \
  X(CONNECT,   2, "connect",   "no TCP connection to the partner")                 \
  X(TLS,       3, "tls",       "TLS handshake failed, the partner's certificate "  \
                               "did not verify, or the partner refused ours")      \
  X(TIMEOUT,   4, "timeout",   "the connect or total timeout expired")             \
  X(RESET,     5, "reset",     "the connection broke before the answer was "       \
                               "complete")                                         \
  X(TOO_LARGE, 6, "too_large", "the answer's headers or body exceeded the cap")    \
  X(CANCELLED, 7, "cancelled", "the pool or client was closed first")              \
  X(PROTOCOL,  8, "protocol",  "the partner's answer is not valid HTTP/1.1")       \
  X(LOCAL,     9, "local",     "a local failure (out of memory, libcurl setup)")

enum tb_client_errno {
#define TB__CLIENT_ERRNO_ENUM(name, value, s, msg) TB_CLIENT_E##name = (value),
  TB_CLIENT_ERRNO_MAP(TB__CLIENT_ERRNO_ENUM)
#undef TB__CLIENT_ERRNO_ENUM
};

/* "dns", "connect", ... ("ok" for 0, "unknown" otherwise); never NULL. */
const char *tb_client_error_name(int transport_error);

struct tb_client_header {
  const char *name;  /* NUL-terminated, as received */
  const char *value; /* NUL-terminated, surrounding whitespace removed */
  size_t name_len, value_len;
};

/*
 * What the callback receives. Everything it points to is borrowed for the
 * duration of the callback only: copy what you keep.
 *
 * transport_error == 0 means an HTTP answer was received completely (any
 * status, 500 included: classifying statuses is the caller's job). With a
 * transport error, http_status and headers may still describe a partial
 * answer (e.g. 200 then TB_CLIENT_ETOO_LARGE). request_sent says whether any
 * byte of the request reached the socket: when it is 0 the partner cannot
 * have acted on it, when it is 1 it may have (at-least-once: resend with the
 * same message id).
 */
struct tb_client_result {
  int http_status;                        /* 0 if no status line arrived */
  const struct tb_client_header *headers; /* the final response's headers only */
  size_t header_count;
  const unsigned char *body;              /* NUL-terminated (not counted); never NULL */
  size_t body_len;
  int transport_error;                    /* 0 or TB_CLIENT_E* */
  const char *error_text;                 /* curl's error buffer or ours; "" if none */
  uint64_t duration_ns;                   /* transfer start to completion */
  uint64_t queued_ns;                     /* time spent waiting in the pool's FIFO */
  int reused_connection;                  /* 1 if no new connection was opened */
  int request_sent;                       /* see above */
};

/* Runs exactly once per accepted request, on the loop thread. It may call
 * tb_client_post (also on the same pool), tb_client_pool_close and
 * tb_client_close. */
typedef void (*tb_client_done_fn)(const struct tb_client_result *res, void *ud);

/*
 * Per-partner settings. Strings are copied by tb_client_pool_add. A numeric
 * field left 0 takes its default.
 */
struct tb_client_pool_config {
  const char *name;            /* partner name, for messages; required */
  const char *base_url;        /* "https://host[:port][/prefix]"; a trailing '/' is dropped */
  const char *ca_file;         /* PEM; the ONLY trust anchors for the partner's server; required */
  const char *cert_file;       /* our client certificate (PEM) for mTLS; optional, needs key_file */
  const char *key_file;        /* its unencrypted private key; must not be readable by group/others */
  uint64_t connect_timeout_ms; /* TCP + TLS handshake; default 5000 */
  uint64_t timeout_ms;         /* whole transfer once started; default 30000 */
  uint64_t idle_timeout_ms;    /* a kept-alive connection idle longer is not reused; default 60000 */
  size_t max_in_flight;        /* transfers running at once; default 8 */
  size_t max_connections;      /* connections to the partner at once; default max_in_flight */
  size_t max_queued;           /* requests waiting in the FIFO; default 10000 (then TB_EBUSY) */
  size_t max_response_bytes;   /* response body cap; default 32 MiB (lu-xml's limit) */
  size_t max_header_bytes;     /* response header bytes (as stored); default 16384 */
  size_t max_header_count;     /* response header lines; default 100 */
  int no_tls_session_reuse;    /* 1: never resume TLS sessions, for a partner server that
                                * mishandles resumption (new connections then fail in the
                                * handshake); costs a full handshake per new connection */
};

/* Counters since the pool (or client) was made; in_flight and queued are
 * current values. A transfer is "reused" when it opened no connection. */
struct tb_client_stats {
  uint64_t requests;           /* transfers handed to curl */
  uint64_t completed;          /* results with transport_error == 0 */
  uint64_t failed;             /* results with a transport error (cancelled included) */
  uint64_t connections_opened; /* sum of CURLINFO_NUM_CONNECTS */
  uint64_t reused;             /* transfers that opened no connection */
  uint64_t handles_created;    /* curl easy handles made (client only; 0 for a pool) */
  uint64_t connections_discarded; /* kept-alive connections closed instead of reused because
                                   * the partner had sent bytes nobody asked for (e.g. a
                                   * second, unsolicited answer); the request that would have
                                   * used one went out on a fresh connection instead */
  size_t in_flight;
  size_t queued;
};

struct tb_client;
struct tb_client_pool;

/*
 * Makes a client on loop (borrowed; must outlive the client). Initialises
 * libcurl globally (reference-counted by libcurl). TB_ENOMEM, TB_EINTERNAL
 * (libcurl refused to set up), with a message in err (TB_ERRMSG_MAX bytes,
 * may be NULL).
 */
int tb_client_new(uv_loop_t *loop, struct tb_client **out, char *err);

/*
 * Adds a partner's pool. Checks now, so that the gateway refuses to start
 * rather than failing every delivery: base_url is an https URL without
 * query/fragment/user info; ca_file holds at least one PEM certificate;
 * cert_file and key_file come together, parse, and match; key_file is a
 * regular file with no group/other permission bits (message with the chmod
 * command). TB_EINVAL (NULL arguments), TB_ECONFIG, TB_ENOTFOUND, TB_EIO,
 * TB_EPARSE, TB_ENOMEM, TB_ECLOSED (client closing). The pool belongs to the
 * client: it is freed by tb_client_pool_close or tb_client_close.
 */
int tb_client_pool_add(struct tb_client *c, const struct tb_client_pool_config *pc,
                       struct tb_client_pool **out, char *err);

/*
 * POSTs body to base_url + path. path starts with '/' and has no spaces or
 * control characters. content_type is required. extra_headers is NULL or
 * "Name: value\r\n" lines (each line is checked: a name, a colon, no control
 * characters; the last CRLF may be omitted). The body, path and headers are
 * copied before returning. On success the request is started now or queued,
 * and cb runs exactly once, later (never before tb_client_post returns).
 * On failure cb never runs: TB_EINVAL (bad arguments, header injection),
 * TB_EBUSY (the FIFO holds max_queued requests), TB_ECLOSED (pool or client
 * closing), TB_ENOMEM, TB_EINTERNAL (libcurl refused an option). The reason
 * goes to err (TB_ERRMSG_MAX bytes, may be NULL).
 */
int tb_client_post(struct tb_client_pool *p, const char *path, const char *content_type,
                   const char *extra_headers, const void *body, size_t len,
                   tb_client_done_fn cb, void *ud, char *err);

/*
 * "Partner ping": a fresh TCP + TLS connection to the base URL's host (with
 * our client certificate), no HTTP request. The result's transport_error
 * names the stage that failed (dns, connect, tls, timeout) or is 0. A
 * client certificate the partner refuses shows up here under TLS 1.2 (the
 * refusal is part of the handshake); under TLS 1.3 the server sends that
 * alert after the handshake, so only a real request sees it. The probe never
 * reuses a connection and is not kept alive. Queued and limited like a
 * request; errors as tb_client_post.
 */
int tb_client_probe(struct tb_client_pool *p, tb_client_done_fn cb, void *ud, char *err);

/* Counters of one pool / of the whole client (every pool, closed ones too). */
void tb_client_pool_stats(const struct tb_client_pool *p, struct tb_client_stats *out);
void tb_client_stats(const struct tb_client *c, struct tb_client_stats *out);

/*
 * Closes one pool (e.g. a partner removed on reload). Queued requests and
 * transfers still in flight get their callback with TB_CLIENT_ECANCELLED
 * (in-flight ones are aborted: request_sent tells whether the partner may
 * have seen them), from the loop, after this returns. Then the pool is freed
 * and on_closed(ud) runs (may be NULL). The pool's idle connections stay in
 * the client's cache, so a pool re-added with the same settings reuses them.
 * To finish in-flight work instead, stop posting and wait until
 * tb_client_pool_stats says in_flight == 0 before closing.
 */
void tb_client_pool_close(struct tb_client_pool *p, void (*on_closed)(void *ud), void *ud);

/*
 * Closes the client: every pool as tb_client_pool_close does, then curl's
 * connections, every uv handle (freed in their close callbacks), libcurl.
 * on_closed(ud) runs last, from the loop, after this returns; then the loop
 * has no handle of ours left. Call once; the client is gone afterwards.
 */
void tb_client_close(struct tb_client *c, void (*on_closed)(void *ud), void *ud);

#endif
