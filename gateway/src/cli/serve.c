/*
 * tbgw serve: the daemon. Start-up order is config → log → store → API →
 * listener; shutdown (SIGTERM/SIGINT) runs it backwards: stop accepting,
 * answer parked long-polls, let in-flight requests finish (their store
 * operations complete), flush and close the store, exit 0.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "tbgw/error.h"

struct daemon {
  uv_loop_t loop;
  struct tb_config cfg;
  struct tb_store *store;
  struct tb_http_server *server;
  struct tb_api api;
  uv_signal_t sig_term, sig_int, sig_hup;
  int stopping;
  int log_fd;
};

static void on_signal_closed(uv_handle_t *h) { (void)h; }

static void on_store_closed(void *ud) {
  struct daemon *d = ud;
  d->store = NULL;
  tb_log_msg(TB_LOG_INFO, "gateway.stopped", "store flushed and closed; exiting");
  /* From here to exit nothing is left to finish: a repeated SIGTERM (systemd,
   * an impatient operator) must not turn a clean exit 0 into death by signal. */
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  uv_close((uv_handle_t *)&d->sig_term, on_signal_closed);
  uv_close((uv_handle_t *)&d->sig_int, on_signal_closed);
  uv_close((uv_handle_t *)&d->sig_hup, on_signal_closed);
}

static void on_server_closed(void *ud) {
  struct daemon *d = ud;
  d->server = NULL;
  d->api.server = NULL;
  tb_store_close(d->store, on_store_closed, d);
}

static void on_signal(uv_signal_t *s, int signum) {
  struct daemon *d = s->data;
  if (d->stopping) {
    tb_log_msg(TB_LOG_WARN, "gateway.stopping",
               "already stopping (signal %d ignored); in-flight work is being finished", signum);
    return;
  }
  d->stopping = 1;
  tb_log_msg(TB_LOG_INFO, "gateway.stopping",
             "signal %d: no new connections; finishing in-flight requests", signum);
  tb_api_shutdown(&d->api);
  tb_http_server_close(d->server, on_server_closed, d);
}

/* Reloading the configuration and adapters on SIGHUP is not built yet (the
 * operators issue); until it is, SIGHUP must not kill the daemon, so it is
 * caught and the running configuration kept. */
static void on_sighup(uv_signal_t *s, int signum) {
  (void)s;
  (void)signum;
  tb_log_msg(TB_LOG_WARN, "config.reload_unsupported",
             "SIGHUP received: configuration reload is not built yet; the running "
             "configuration is unchanged (restart the gateway to apply a new one)");
}

static int open_log(const struct tb_config *cfg) {
  if (cfg->log_file == NULL || strcmp(cfg->log_file, "-") == 0) return 2;
  int fd = open(cfg->log_file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0)
    fprintf(stderr, "tbgw: cannot open log.file %s: %s (logging to stderr instead)\n",
            cfg->log_file, strerror(errno));
  return fd < 0 ? 2 : fd;
}

static int run(struct daemon *d) {
  char err[TB_ERRMSG_MAX] = "";
  int rc = tb_store_open(&d->loop, &d->cfg.store, &d->store, err);
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "gateway.start_failed", "%s", err);
    fprintf(stderr, "tbgw: %s\n", err);
    uv_run(&d->loop, UV_RUN_DEFAULT); /* lets a half-opened store free its handles */
    return 1;
  }
  rc = tb_api_init(&d->api, &d->loop, &d->cfg, d->store, err);
  if (rc == 0) {
    struct tb_http_server_config sc = {
        .name = "local_api",
        .host = d->cfg.local_api_host,
        .port = d->cfg.local_api_port,
        .limits = d->cfg.local_api_limits,
        .handler = tb_api_handle,
        .handler_ud = &d->api,
        .observer = tb_api_observe,
        .observer_ud = &d->api,
    };
    rc = tb_http_server_start(&d->loop, &sc, &d->server, err);
  }
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "gateway.start_failed", "%s", err);
    fprintf(stderr, "tbgw: %s\n", err);
    tb_store_close(d->store, NULL, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    return 1;
  }
  d->api.server = d->server;

  uv_signal_init(&d->loop, &d->sig_term);
  uv_signal_init(&d->loop, &d->sig_int);
  uv_signal_init(&d->loop, &d->sig_hup);
  d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
  uv_signal_start(&d->sig_hup, on_sighup, SIGHUP);
  uv_signal_start(&d->sig_term, on_signal, SIGTERM);
  uv_signal_start(&d->sig_int, on_signal, SIGINT);

  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "gateway.started");
  tb_log_str(l, "version", TB_VERSION);
  tb_log_str(l, "listener", "local_api");
  tb_log_str(l, "host", d->cfg.local_api_host);
  tb_log_int(l, "port", tb_http_server_port(d->server));
  tb_log_str(l, "store", d->cfg.store_path);
  tb_log_int(l, "partners", (int64_t)d->cfg.partner_count);
  tb_log_int(l, "pid", (int64_t)getpid());
  tb_log_end(l);

  uv_run(&d->loop, UV_RUN_DEFAULT);
  return 0;
}

int tb_cli_serve(int argc, char **argv) {
  if (tb_cli_wants_help(argc, argv)) {
    puts("usage: tbgw serve -c FILE\n\n"
         "Runs the gateway with the configuration FILE (JSON; see docs/configuration.md).\n"
         "The file is checked completely first: every problem is listed and the\n"
         "gateway does not start. Logs are JSON lines (stderr or log.file).\n"
         "SIGTERM or SIGINT stops it gracefully: in-flight requests finish, the store\n"
         "is flushed, exit status 0.");
    return 0;
  }
  const char *path = tb_cli_config_arg(argc, argv);
  if (path == NULL) {
    fputs("tbgw serve: missing -c FILE (see --help)\n", stderr);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct daemon *d = calloc(1, sizeof *d);
  if (d == NULL) return 1;
  char *problems = NULL;
  int rc = tb_config_load(path, &d->cfg, &problems);
  if (rc != 0) {
    fprintf(stderr, "tbgw: %s: configuration is not valid:\n%s%s", path,
            problems ? problems : tb_strerror(rc), problems ? "" : "\n");
    free(problems);
    free(d);
    return 1;
  }
  d->log_fd = open_log(&d->cfg);
  tb_log_setup(d->log_fd, (enum tb_log_level)d->cfg.log_level);
  uv_loop_init(&d->loop);
  rc = run(d);
  if (uv_loop_close(&d->loop) != 0)
    tb_log_msg(TB_LOG_WARN, "gateway.unclean_exit", "handles were still open at exit");
  tb_metrics_reset();
  tb_config_free(&d->cfg);
  if (d->log_fd > 2) close(d->log_fd);
  free(d);
  return rc;
}
