/*
 * http/parser.c — llhttp glue: turns bytes into one tb_http_request at a
 * time, inside bounded per-connection buffers, and decides every answer the
 * protocol itself calls for (400, 411, 413, 431, 505, 100 Continue).
 *
 * llhttp runs strict (no lenient flags). Two callbacks pause it:
 * on_headers_complete, so that the exact size of the header section is known
 * and the length checks run before a single body byte is read; and
 * on_message_complete, so that the request can be handed to the handler
 * while any pipelined bytes after it stay unparsed (its header and body
 * storage is reused by the next request).
 *
 * Header storage: the request target, header names and values are copied,
 * each NUL-terminated, into c->hbuf, which grows by doubling up to
 * max_header_bytes + 2 * max_header_count + 8. Offsets are kept while it may
 * move; pointers are made when the headers are complete. The limit itself
 * counts raw bytes: request line plus header section including line ends
 * (and any empty lines before the request line), so whitespace padding
 * counts too.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "http/http_internal.h"

static struct tb__http_conn *conn_of(llhttp_t *p) { return p->data; }

__attribute__((format(printf, 4, 5))) static int reject(struct tb__http_conn *c, int status,
                                                        const char *slug, const char *fmt,
                                                        ...) {
  if (c->fail_status == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->fail_detail, sizeof c->fail_detail, fmt, ap);
    va_end(ap);
    c->fail_status = status;
    c->fail_slug = slug;
  }
  return HPE_USER;
}

static size_t hbuf_max(const struct tb__http_conn *c) {
  const struct tb_http_limits *lim = &c->srv->cfg.limits;
  return lim->max_header_bytes + 2 * lim->max_header_count + 8;
}

static int too_many_header_bytes(struct tb__http_conn *c) {
  return reject(c, 431, "headers-too-large", "the request line and headers exceed %zu bytes",
                c->srv->cfg.limits.max_header_bytes);
}

static int hb_append(struct tb__http_conn *c, const char *at, size_t len) {
  size_t need = c->hlen + len + 1; /* room for a NUL after it */
  if (need > hbuf_max(c)) return too_many_header_bytes(c);
  if (need > c->hcap) {
    size_t cap = c->hcap ? c->hcap : 1024;
    while (cap < need) cap *= 2;
    if (cap > hbuf_max(c)) cap = hbuf_max(c);
    char *p = realloc(c->hbuf, cap);
    if (p == NULL) return reject(c, 503, "overloaded", "out of memory for request headers");
    c->hbuf = p;
    c->hcap = cap;
  }
  memcpy(c->hbuf + c->hlen, at, len);
  c->hlen += len;
  return 0;
}

static int hb_nul(struct tb__http_conn *c) {
  int r = hb_append(c, "", 0);
  if (r == 0) c->hbuf[c->hlen++] = '\0';
  return r;
}

static int trailer_bytes(struct tb__http_conn *c, size_t len) {
  c->trailer_bytes += len;
  if (c->trailer_bytes > c->srv->cfg.limits.max_header_bytes) return too_many_header_bytes(c);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  return hb_append(conn_of(p), at, len);
}

static int on_url_complete(llhttp_t *p) {
  struct tb__http_conn *c = conn_of(p);
  c->url_len = c->hlen - c->url_off;
  return hb_nul(c) ? -1 : 0;
}

static int on_version_complete(llhttp_t *p) {
  struct tb__http_conn *c = conn_of(p);
  if (p->http_major != 1 || p->http_minor > 1) {
    reject(c, 505, "unsupported-http-version",
           "HTTP/%u.%u is not served; use HTTP/1.1 (or HTTP/1.0)", p->http_major,
           p->http_minor);
    return -1;
  }
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len) {
  struct tb__http_conn *c = conn_of(p);
  if (c->phase == TB__PH_BODY) return trailer_bytes(c, len);
  if (!c->in_field) {
    const struct tb_http_limits *lim = &c->srv->cfg.limits;
    if (c->nhdr >= lim->max_header_count)
      return reject(c, 431, "headers-too-large", "more than %zu header fields",
                    lim->max_header_count);
    if (c->nhdr == c->hdr_slots) {
      size_t n = c->hdr_slots ? c->hdr_slots * 2 : 16;
      if (n > lim->max_header_count) n = lim->max_header_count;
      struct tb__hdr_off *o = realloc(c->hoff, n * sizeof *o);
      if (o == NULL) return reject(c, 503, "overloaded", "out of memory for request headers");
      c->hoff = o;
      struct tb_http_header *h = realloc(c->hdrs, n * sizeof *h);
      if (h == NULL) return reject(c, 503, "overloaded", "out of memory for request headers");
      c->hdrs = h;
      c->hdr_slots = n;
    }
    c->in_field = 1;
    c->hoff[c->nhdr].name = (uint32_t)c->hlen;
  }
  return hb_append(c, at, len);
}

static int on_header_field_complete(llhttp_t *p) {
  struct tb__http_conn *c = conn_of(p);
  if (c->phase == TB__PH_BODY) {
    if (++c->trailer_count > c->srv->cfg.limits.max_header_count) {
      reject(c, 431, "headers-too-large", "more than %zu trailer fields",
             c->srv->cfg.limits.max_header_count);
      return -1;
    }
    return 0;
  }
  c->in_field = 0;
  c->hdrs[c->nhdr].name_len = c->hlen - c->hoff[c->nhdr].name;
  if (hb_nul(c)) return -1;
  c->hoff[c->nhdr].value = (uint32_t)c->hlen;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len) {
  struct tb__http_conn *c = conn_of(p);
  if (c->phase == TB__PH_BODY) return trailer_bytes(c, len);
  return hb_append(c, at, len);
}

static int on_header_value_complete(llhttp_t *p) {
  struct tb__http_conn *c = conn_of(p);
  if (c->phase == TB__PH_BODY) return 0;
  size_t s = c->hoff[c->nhdr].value, e = c->hlen;
  while (s < e && (c->hbuf[s] == ' ' || c->hbuf[s] == '\t')) s++;
  while (e > s && (c->hbuf[e - 1] == ' ' || c->hbuf[e - 1] == '\t')) e--;
  c->hlen = e;
  if (hb_nul(c)) return -1;
  c->hoff[c->nhdr].value = (uint32_t)s;
  c->hdrs[c->nhdr].value_len = e - s;
  c->nhdr++;
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  conn_of(p)->hdrs_done = 1;
  return HPE_PAUSED;
}

static int on_chunk_extension(llhttp_t *p, const char *at, size_t len) {
  struct tb__http_conn *c = conn_of(p);
  (void)at;
  c->ext_bytes += len;
  if (c->ext_bytes > c->srv->cfg.limits.max_header_bytes)
    return reject(c, 400, "malformed-request", "chunk extensions exceed %zu bytes",
                  c->srv->cfg.limits.max_header_bytes);
  return 0;
}

static int body_too_large(struct tb__http_conn *c) {
  return reject(c, 413, "body-too-large", "the request body exceeds the limit of %zu bytes",
                c->srv->cfg.limits.max_body_bytes);
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  struct tb__http_conn *c = conn_of(p);
  size_t max = c->srv->cfg.limits.max_body_bytes;
  if (len > max - c->body_len) return body_too_large(c);
  size_t need = c->body_len + len + 1; /* + NUL, not counted */
  if (need > c->body_cap) {
    size_t cap = c->body_cap ? c->body_cap : 4096;
    while (cap < need) cap *= 2;
    if (cap > max + 1) cap = max + 1;
    unsigned char *b = realloc(c->body, cap);
    if (b == NULL) return reject(c, 503, "overloaded", "out of memory for the request body");
    c->body = b;
    c->body_cap = cap;
  }
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  struct tb__http_conn *c = conn_of(p);
  /* Flags are reset after this callback: decide keep-alive now. An upgrade
   * or CONNECT is answered and then the connection closes (we do not switch
   * protocols). */
  c->req.keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  c->msg_done = 1;
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_chunk_extension_name = on_chunk_extension,
    .on_chunk_extension_value = on_chunk_extension,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_url_complete = on_url_complete,
    .on_version_complete = on_version_complete,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
};

void tb__http_parser_init(struct tb__http_conn *c) {
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
}

void tb__http_request_begin(struct tb__http_conn *c) {
  tb__http_conn_enter(c, TB__PH_HEADERS);
  c->started_ns = uv_hrtime();
  c->hlen = c->url_off = c->url_len = 0;
  c->nhdr = 0;
  c->in_field = 0;
  c->req_bytes = c->hdr_raw = c->body_raw = 0;
  c->trailer_bytes = c->trailer_count = c->ext_bytes = 0;
  c->body_len = 0;
  c->fail_status = 0;
  c->hdrs_done = c->msg_done = 0;
}

void tb__http_request_done(struct tb__http_conn *c) {
  if (c->body_cap > TB_HTTP_BODY_KEEP) {
    free(c->body);
    c->body = NULL;
    c->body_cap = 0;
  }
  c->body_len = 0;
}

/* Splits the target into path and query in place. Absolute-form
 * ("http://host/p?q", which servers must accept) is reduced to its path. */
static void split_target(struct tb__http_conn *c) {
  char *u = c->hbuf + c->url_off;
  size_t n = c->url_len;
  struct tb_http_request *r = &c->req;
  size_t skip = 0;
  if (n >= 7 && strncasecmp(u, "http://", 7) == 0)
    skip = 7;
  else if (n >= 8 && strncasecmp(u, "https://", 8) == 0)
    skip = 8;
  if (skip) {
    size_t i = skip;
    while (i < n && u[i] != '/' && u[i] != '?') i++;
    u += i;
    n -= i;
  }
  char *q = memchr(u, '?', n);
  if (q) {
    *q = '\0';
    r->query = q + 1;
    r->query_len = n - (size_t)(q - u) - 1;
    n = (size_t)(q - u);
  } else {
    r->query = "";
    r->query_len = 0;
  }
  if (n == 0) {
    r->path = "/";
    r->path_len = 1;
  } else {
    r->path = u;
    r->path_len = n;
  }
}

static void send_continue(struct tb__http_conn *c) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  uv_buf_t b = uv_buf_init((char *)msg, sizeof msg - 1);
  tb__http_conn_send(c, &b, 1, NULL);
}

/* Runs with the parser paused right after the header section. */
static void headers_ready(struct tb__http_conn *c) {
  llhttp_t *p = &c->parser;
  const struct tb_http_limits *lim = &c->srv->cfg.limits;
  struct tb_http_request *r = &c->req;
  if (p->http_major != 1 || p->http_minor > 1) { /* HTTP/0.9 has no version callback */
    tb__http_conn_fail(c, 505, "unsupported-http-version",
                       "only HTTP/1.1 and HTTP/1.0 requests are served", NULL);
    return;
  }
  for (size_t i = 0; i < c->nhdr; i++) {
    c->hdrs[i].name = c->hbuf + c->hoff[i].name;
    c->hdrs[i].value = c->hbuf + c->hoff[i].value;
  }
  r->method = p->method;
  r->method_name = llhttp_method_name((llhttp_method_t)p->method);
  r->headers = c->hdrs;
  r->header_count = c->nhdr;
  r->started_ns = c->started_ns;
  r->peer = c->peer;
  r->peer_subject = c->tls != NULL ? c->tls->subject : NULL;
  split_target(c);

  if (p->http_minor == 1) { /* RFC 9112 §3.2: exactly one Host, or 400 */
    size_t hosts = 0;
    for (size_t i = 0; i < c->nhdr; i++)
      if (strcasecmp(c->hdrs[i].name, "host") == 0) hosts++;
    if (hosts != 1) {
      tb__http_conn_fail(c, 400, "malformed-request",
                         hosts ? "more than one Host header"
                               : "an HTTP/1.1 request needs a Host header",
                         NULL);
      return;
    }
  }
  int chunked = (p->flags & F_CHUNKED) != 0;
  int has_len = (p->flags & F_CONTENT_LENGTH) != 0;
  int has_te = (p->flags & F_TRANSFER_ENCODING) != 0;
  if (!has_len && !has_te &&
      (p->method == HTTP_POST || p->method == HTTP_PUT || p->method == HTTP_PATCH)) {
    char d[96];
    snprintf(d, sizeof d, "%s needs a Content-Length or Transfer-Encoding: chunked",
             r->method_name);
    tb__http_conn_fail(c, 411, "length-required", d, NULL);
    return;
  }
  if (has_len && !has_te && p->content_length > lim->max_body_bytes) {
    char d[128];
    snprintf(d, sizeof d, "a request body of %llu bytes exceeds the limit of %zu bytes",
             (unsigned long long)p->content_length, lim->max_body_bytes);
    tb__http_conn_fail(c, 413, "body-too-large", d, NULL);
    return;
  }
  int body_expected = chunked || (has_len && p->content_length > 0);
  if (has_len && !has_te && p->content_length > 0 && c->body_cap < p->content_length + 1) {
    /* Exactly once for a known length (bounded by the check above). */
    unsigned char *b = realloc(c->body, (size_t)p->content_length + 1);
    if (b == NULL) {
      tb__http_conn_fail(c, 503, "overloaded", "out of memory for the request body", NULL);
      return;
    }
    c->body = b;
    c->body_cap = (size_t)p->content_length + 1;
  }
  const char *expect = tb_http_request_header(r, "expect");
  if (expect && body_expected && p->http_minor == 1 && strcasecmp(expect, "100-continue") == 0)
    send_continue(c);
  if (c->phase != TB__PH_CLOSED) tb__http_conn_enter(c, TB__PH_BODY);
}

static void dispatch(struct tb__http_conn *c) {
  struct tb_http_server *srv = c->srv;
  struct tb_http_request *r = &c->req;
  if (c->body) c->body[c->body_len] = '\0';
  r->body = c->body ? c->body : (const unsigned char *)"";
  r->body_len = c->body_len;
  if (srv->closing) r->keep_alive = 0;
  c->ex.route = NULL;
  c->ex.on_abort = NULL;
  c->ex.abort_ud = NULL;
  c->ex.aborted = 0;
  c->ex.active = 1;
  c->ex.is_head = r->method == HTTP_HEAD;
  tb__http_conn_enter(c, TB__PH_HANDLER);
  srv->cfg.handler(&c->ex, r, srv->cfg.handler_ud);
}

static void parse_error(struct tb__http_conn *c, llhttp_errno_t e) {
  if (c->fail_status) {
    tb__http_conn_fail(c, c->fail_status, c->fail_slug, c->fail_detail, NULL);
    return;
  }
  char d[200];
  if (e == HPE_INVALID_VERSION || e == HPE_PAUSED_H2_UPGRADE) {
    snprintf(d, sizeof d, "%s (%s); only HTTP/1.1 and HTTP/1.0 are served",
             llhttp_get_error_reason(&c->parser), llhttp_errno_name(e));
    tb__http_conn_fail(c, 505, "unsupported-http-version", d, NULL);
    return;
  }
  snprintf(d, sizeof d, "%s (%s) at byte %zu of the request",
           llhttp_get_error_reason(&c->parser), llhttp_errno_name(e), c->req_bytes);
  tb__http_conn_fail(c, 400, "malformed-request", d, NULL);
}

size_t tb__http_parse(struct tb__http_conn *c, const char *data, size_t len) {
  const struct tb_http_limits *lim = &c->srv->cfg.limits;
  /* Chunk framing may add overhead, but not without bound. */
  size_t raw_body_max = lim->max_body_bytes + lim->max_body_bytes / 2 + 65536;
  size_t off = 0;
  int again = 0; /* run llhttp once more even without bytes (see below) */
  c->in_parse++;
  while (off < len || again) {
    again = 0;
    if (c->write_blocked) break; /* a peer not reading its answers gets no more parsed */
    if (c->phase == TB__PH_IDLE)
      tb__http_request_begin(c);
    else if (c->phase != TB__PH_HEADERS && c->phase != TB__PH_BODY)
      break;
    if (c->paused) {
      llhttp_resume(&c->parser);
      c->paused = 0;
    }
    const char *p = data + off;
    size_t n = len - off;
    llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
    size_t used = n;
    if (e != HPE_OK) {
      const char *ep = llhttp_get_error_pos(&c->parser);
      if (ep != NULL && ep >= p && ep <= p + n) used = (size_t)(ep - p);
    }
    off += used;
    c->req_bytes += used;
    if (c->phase == TB__PH_HEADERS) {
      c->hdr_raw += used;
      if (c->hdr_raw > lim->max_header_bytes && (e == HPE_OK || c->hdrs_done)) {
        too_many_header_bytes(c);
        parse_error(c, e);
        break;
      }
    } else if (c->phase == TB__PH_BODY) {
      c->body_raw += used;
      if (c->body_raw > raw_body_max) {
        body_too_large(c);
        parse_error(c, e);
        break;
      }
    }
    if (e == HPE_OK) continue;
    if (e == HPE_PAUSED) {
      c->paused = 1;
      if (c->hdrs_done) {
        c->hdrs_done = 0;
        headers_ready(c);
        /* A request without a body completes without consuming a byte:
         * llhttp must run again to reach on_message_complete even if the
         * headers ended exactly at the end of this read. */
        again = c->phase == TB__PH_BODY;
      } else if (c->msg_done) {
        c->msg_done = 0;
        dispatch(c); /* the handler may answer now; the loop re-checks the phase */
      }
      continue;
    }
    if (e == HPE_PAUSED_UPGRADE) { /* unreachable: upgrades are answered with close */
      off = len;
      break;
    }
    parse_error(c, e);
    break;
  }
  c->in_parse--;
  return off;
}
