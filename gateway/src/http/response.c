/*
 * http/response.c — answers: the respond API for handlers, serialisation of
 * the status line and headers (Date cached per second), server-generated
 * problem answers, and the small request/exchange accessors.
 *
 * An answer is two iovecs, header block and body, handed to
 * tb__http_conn_send, which writes them straight from the caller's memory
 * when the socket takes them at once and copies only what is left otherwise.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/log.h"
#include "http/http_internal.h"
#include "http/problem.h"

const char *tb_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 203: return "Non-Authoritative Information";
  case 204: return "No Content";
  case 205: return "Reset Content";
  case 206: return "Partial Content";
  case 300: return "Multiple Choices";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 303: return "See Other";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 402: return "Payment Required";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 406: return "Not Acceptable";
  case 407: return "Proxy Authentication Required";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 410: return "Gone";
  case 411: return "Length Required";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 421: return "Misdirected Request";
  case 422: return "Unprocessable Content";
  case 425: return "Too Early";
  case 426: return "Upgrade Required";
  case 428: return "Precondition Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 451: return "Unavailable For Legal Reasons";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  case 505: return "HTTP Version Not Supported";
  case 507: return "Insufficient Storage";
  default: return "Unknown";
  }
}

/* "Date: Sun, 06 Nov 1994 08:49:37 GMT" without locale-dependent strftime. */
static const char *date_now(struct tb_http_server *srv) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t now = time(NULL);
  if ((int64_t)now != srv->date_sec) {
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(srv->date, sizeof srv->date, "%s, %02d %s %04d %02d:%02d:%02d GMT",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
             tm.tm_hour, tm.tm_min, tm.tm_sec);
    srv->date_sec = (int64_t)now;
  }
  return srv->date;
}

struct hb {
  char *p;
  size_t len, cap;
};

static void put(struct hb *b, const char *s, size_t n) {
  if (b->len + n > b->cap) n = b->cap - b->len; /* cannot happen: sized beforehand */
  memcpy(b->p + b->len, s, n);
  b->len += n;
}
static void puts_(struct hb *b, const char *s) { put(b, s, strlen(s)); }
static void putu(struct hb *b, uint64_t v) {
  char t[24];
  size_t i = sizeof t;
  do {
    t[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  put(b, t + i, sizeof t - i);
}

void tb__http_conn_answer(struct tb__http_conn *c, int status, const char *content_type,
                          const void *body, size_t body_len, char *owned,
                          const char *extra_headers, int keep_alive, int head_only,
                          const char *route) {
  struct tb_http_server *srv = c->srv;
  /* 1xx, 204 and 304 have no body; 204 and 1xx no Content-Length either,
   * and a 304's would have to describe the representation, so none. */
  int bodyless = status < 200 || status == 204 || status == 304;
  size_t ct_len = content_type ? strlen(content_type) : 0;
  size_t extra_len = extra_headers ? strlen(extra_headers) : 0;
  char stack[768];
  struct hb b = {stack, 0, sizeof stack};
  size_t need = 200 + ct_len + extra_len;
  if (need > sizeof stack) {
    b.p = malloc(need);
    b.cap = need;
    if (b.p == NULL) {
      free(owned);
      tb__http_conn_close(c);
      return;
    }
  }
  puts_(&b, "HTTP/1.1 ");
  putu(&b, (uint64_t)status);
  put(&b, " ", 1);
  puts_(&b, tb_http_reason(status));
  puts_(&b, "\r\nDate: ");
  puts_(&b, date_now(srv));
  puts_(&b, "\r\nServer: tbgw\r\n");
  if (content_type) {
    puts_(&b, "Content-Type: ");
    put(&b, content_type, ct_len);
    put(&b, "\r\n", 2);
  }
  if (!bodyless) {
    puts_(&b, "Content-Length: ");
    putu(&b, body_len);
    put(&b, "\r\n", 2);
  }
  puts_(&b, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
  if (extra_headers) put(&b, extra_headers, extra_len);
  put(&b, "\r\n", 2);

  uv_buf_t bufs[2];
  unsigned n = 0;
  bufs[n++] = uv_buf_init(b.p, (unsigned)b.len);
  if (!bodyless && !head_only && body_len > 0)
    bufs[n++] = uv_buf_init((char *)body, (unsigned)body_len);
  else {
    free(owned);
    owned = NULL;
  }
  uint64_t started = c->started_ns;
  tb__http_conn_send(c, bufs, n, owned);
  if (b.p != stack) free(b.p);
  tb__http_server_observe(srv, route, status, started);
}

void tb__http_conn_fail(struct tb__http_conn *c, int status, const char *slug,
                        const char *detail, const char *extra_headers) {
  if (c->phase == TB__PH_CLOSED || c->phase == TB__PH_DRAIN) return;
  /* Timeouts of an idle connection belong to no request. */
  if (c->phase == TB__PH_IDLE) c->started_ns = 0;
  const char *title = tb_http_reason(status);
  size_t len = 0;
  char *json = tb_problem_build(status, slug, title, detail, NULL, &len);
  struct tb_log_line *l = tb_log_begin(status >= 500 ? TB_LOG_WARN : TB_LOG_INFO, "http.reject");
  tb_log_str(l, "listener", c->srv->name);
  tb_log_str(l, "peer", c->peer);
  tb_log_int(l, "status", status);
  tb_log_str(l, "type", slug);
  tb_log_str(l, "detail", detail);
  tb_log_end(l);
  tb__http_conn_enter(c, TB__PH_DRAIN);
  tb__http_conn_answer(c, status, json ? TB_PROBLEM_CONTENT_TYPE : NULL, json, json ? len : 0,
                       json, extra_headers, 0, 0, "-");
}

static void respond(struct tb_http_exchange *ex, int status, const char *content_type,
                    const void *body, size_t body_len, char *owned, const char *extra_headers) {
  struct tb__http_conn *c = ex->conn;
  if (!ex->active) {
    tb_log_msg(TB_LOG_ERROR, "http.respond.misuse",
               "tb_http_respond called on an exchange that is not waiting for an answer");
    free(owned);
    return;
  }
  ex->active = 0;
  if (ex->aborted || c->phase == TB__PH_CLOSED) {
    free(owned); /* the peer is gone: nothing to send */
    tb__http_conn_maybe_free(c);
    return;
  }
  if (status < 200 || status > 599) {
    tb_log_msg(TB_LOG_ERROR, "http.respond.misuse", "handler answered status %d; sent 500",
               status);
    status = 500;
  }
  int ka = c->req.keep_alive && !c->srv->closing && !(c->eof && c->pend_len == 0);
  c->nreq++;
  /* The phase changes before the write: a failed write closes the connection
   * and that must not be overwritten. */
  tb__http_conn_enter(c, ka ? TB__PH_IDLE : TB__PH_DRAIN);
  tb__http_conn_answer(c, status, content_type, body, body_len, owned, extra_headers, ka,
                       ex->is_head, ex->route ? ex->route : "-");
  tb__http_request_done(c);
  tb__http_conn_step(c);
}

void tb_http_respond(struct tb_http_exchange *ex, int status, const char *content_type,
                     const void *body, size_t body_len, const char *extra_headers) {
  respond(ex, status, content_type, body, body_len, NULL, extra_headers);
}

void tb_http_respond_owned(struct tb_http_exchange *ex, int status, const char *content_type,
                           char *body, size_t body_len, const char *extra_headers) {
  respond(ex, status, content_type, body, body_len, body, extra_headers);
}

void tb_http_exchange_set_route(struct tb_http_exchange *ex, const char *route) {
  ex->route = route;
}

void tb_http_exchange_on_abort(struct tb_http_exchange *ex, tb_http_abort_fn fn, void *ud) {
  ex->on_abort = fn;
  ex->abort_ud = ud;
}

int tb_http_exchange_aborted(const struct tb_http_exchange *ex) { return ex->aborted; }

const char *tb_http_request_header(const struct tb_http_request *req, const char *name) {
  for (size_t i = 0; i < req->header_count; i++)
    if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
  return NULL;
}
