/*
 * fuzz_http_request — bytes from a client, through the real HTTP server
 * code (http/conn.c, parser.c with llhttp, response.c, problem.c): one
 * in-process server, one connection per input over a socketpair.
 *
 * Why a socketpair and not a TCP client: a loopback connection per input
 * leaves a TIME_WAIT socket behind, which exhausts ephemeral ports within a
 * minute at fuzzing speed. The connection is made the way server.c's
 * on_connection makes it (tb__http_conn_new, admitted, tb__http_conn_start)
 * but on one end of an AF_UNIX socketpair (uv_tcp_open accepts any stream
 * socket); the only difference the server sees is an unnamed peer address.
 *
 * The harness writes the input (whole if its length is a multiple of 3,
 * else in slices of 1 + length % 61 bytes, so the fuzzer explores requests
 * split anywhere without a control byte that would make seeds unreadable),
 * then half-closes and reads every answer until the server closes. The
 * handler answers each request one loop turn later (so pipelined requests
 * wait in the connection's pend buffer), echoing its method, path and
 * header count; HEAD and 204 paths are exercised by the requests
 * themselves. Limits are small so the 413/431/pipeline caps are reached.
 *
 * Checks: the server answers with "HTTP/1.1 " or not at all, closes the
 * connection within 5 s of the client's EOF (timeouts are 10 s and more, so
 * a stall is a bug), and frees the connection (no leak, ASan).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "http/http_internal.h"
#include "http/server.h"

static uv_loop_t loop;
static struct tb_http_server *srv;
static struct tb_http_exchange *pending; /* answered one loop turn later */
static const struct tb_http_request *pending_req;

static void on_request(struct tb_http_exchange *ex, const struct tb_http_request *req,
                       void *ud) {
  (void)ud;
  TB_FUZZ_CHECK(pending == NULL); /* one request at a time per connection */
  TB_FUZZ_CHECK(req->path != NULL && strlen(req->path) == req->path_len);
  TB_FUZZ_CHECK(req->query != NULL && strlen(req->query) == req->query_len);
  for (size_t i = 0; i < req->header_count; i++) {
    TB_FUZZ_CHECK(strlen(req->headers[i].name) == req->headers[i].name_len);
    TB_FUZZ_CHECK(strlen(req->headers[i].value) == req->headers[i].value_len);
  }
  TB_FUZZ_CHECK(req->body_len == 0 || req->body != NULL);
  (void)tb_http_request_header(req, "content-type");
  tb_http_exchange_set_route(ex, "fuzz");
  pending = ex;
  pending_req = req;
}

static void answer_pending(void) {
  if (pending == NULL) return;
  struct tb_http_exchange *ex = pending;
  const struct tb_http_request *req = pending_req;
  pending = NULL;
  pending_req = NULL;
  if (tb_http_exchange_aborted(ex)) {
    tb_http_respond(ex, 500, NULL, NULL, 0, NULL);
    return;
  }
  char body[200];
  int n = snprintf(body, sizeof body, "{\"method\":\"%s\",\"path_len\":%zu,\"headers\":%zu}",
                   req->method_name ? req->method_name : "?", req->path_len, req->header_count);
  int status = req->path_len > 1 && req->path[1] == 'n' ? 204 : 200;
  tb_http_respond(ex, status, "application/json", body, status == 204 ? 0 : (size_t)n,
                  "X-Fuzz: 1\r\n");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  tb_fuzz_quiet_logs();
  if (uv_loop_init(&loop) != 0) abort();
  struct tb_http_server_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.name = "fuzz";
  cfg.host = "127.0.0.1";
  cfg.port = 0;
  tb_http_limits_default(&cfg.limits);
  cfg.limits.max_header_bytes = 2048;
  cfg.limits.max_header_count = 16;
  cfg.limits.max_body_bytes = 8192;
  cfg.limits.max_pipeline_bytes = 4096;
  cfg.handler = on_request;
  char err[512];
  if (tb_http_server_start(&loop, &cfg, &srv, err) != 0) {
    fprintf(stderr, "fuzz_http_request: %s\n", err);
    abort();
  }
  return 0;
}

/* One connection, as server.c's on_connection admits it. */
static void connect_pair(int *client) {
  int sv[2];
  TB_FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  struct tb__http_conn *c = tb__http_conn_new(srv);
  TB_FUZZ_CHECK(c != NULL);
  TB_FUZZ_CHECK(uv_tcp_open(&c->tcp, sv[0]) == 0);
  c->admitted = 1;
  srv->nconns++;
  tb__http_conn_start(c);
  int fl = fcntl(sv[1], F_GETFL);
  TB_FUZZ_CHECK(fl >= 0 && fcntl(sv[1], F_SETFL, fl | O_NONBLOCK) == 0);
  *client = sv[1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 64 * 1024) return 0; /* beyond every cap; keeps runs fast */
  size_t live_before = srv->nlive;
  int fd;
  connect_pair(&fd);
  size_t slice = size % 3 == 0 ? (size ? size : 1) : 1 + size % 61;
  size_t off = 0, got = 0;
  int shut = 0, eof = 0;
  char head[9];
  uint64_t start = uv_hrtime();
  while (!eof) {
    /* Client: write one slice, half-close when done, drain answers. */
    if (off < size) {
      size_t n = size - off < slice ? size - off : slice;
      ssize_t w = write(fd, data + off, n);
      if (w > 0) off += (size_t)w;
      else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) off = size; /* server closed */
    } else if (!shut) {
      (void)shutdown(fd, SHUT_WR);
      shut = 1;
    }
    char buf[16384];
    for (;;) {
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        for (ssize_t i = 0; i < r && got < sizeof head; i++) head[got++] = buf[i];
        continue;
      }
      if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) eof = 1;
      break;
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    answer_pending();
    uv_run(&loop, UV_RUN_NOWAIT);
    if (!eof) {
      struct pollfd p[2] = {{fd, POLLIN, 0}, {uv_backend_fd(&loop), POLLIN, 0}};
      (void)poll(p, 2, off < size ? 0 : 10);
    }
    if (uv_hrtime() - start > 5000000000ull) {
      fprintf(stderr, "fuzz_http_request: the server did not close the connection within 5 s "
                      "of the client's EOF\n");
      abort();
    }
  }
  if (got > 0) TB_FUZZ_CHECK(got < 9 || memcmp(head, "HTTP/1.1 ", 9) == 0);
  close(fd);
  /* Let the connection's handles close and the struct go. */
  while (srv->nlive > live_before || pending != NULL) {
    answer_pending();
    uv_run(&loop, UV_RUN_NOWAIT);
    if (uv_hrtime() - start > 6000000000ull) {
      fprintf(stderr, "fuzz_http_request: the connection was not freed\n");
      abort();
    }
  }
  return 0;
}
