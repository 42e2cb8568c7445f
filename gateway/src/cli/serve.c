/*
 * tbgw serve: the daemon. Start-up order is config → log → crypto → keys →
 * adapters (one library per adapter name, one instance per partner) →
 * store → audit trail → API → listener; any failure stops start-up with exit status 1, a
 * "gateway.start_failed" log line and the reason on stderr. Shutdown
 * (SIGTERM/SIGINT) runs it backwards: stop accepting, answer parked
 * long-polls, let in-flight requests finish (their store operations
 * complete), flush and close the store, then finish the adapter instances,
 * unload the libraries and free the keys. The audit trail (optional, section
 * "audit") is flushed by the store's commit hook (api.c) and by a 1 s timer,
 * and closed after the store, logging its last hash.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "audit/audit.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "crypto/crypto.h"
#include "delivery/engine.h"
#include "inbound/inbound.h"
#include "plugin/registry.h"
#include "tbgw/error.h"

struct daemon {
  uv_loop_t loop;
  struct tb_config cfg;
  struct tb_store *store;
  struct tb_http_server *server;
  struct tb_inbound *inbound;    /* partner listener; NULL without partner_api */
  int listeners_open;            /* the store closes when this reaches 0 */
  struct tb_delivery *delivery;  /* the delivery engine; counts as one "listener" at stop */
  struct tb_api api;
  struct tb_plugin_keys *keys;
  struct tb_plugin_registry *plugins;
  struct tb_audit *audit;        /* NULL: no "audit" section */
  uv_timer_t audit_timer;        /* flushes records no store commit carried */
  int audit_timer_on;
  int crypto_ready;
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
  if (d->audit_timer_on) uv_close((uv_handle_t *)&d->audit_timer, on_signal_closed);
  d->audit_timer_on = 0;
}

/* Both listeners drain their connections (their requests finish, store
 * operations included) before the store is closed. */
static void on_listener_closed(struct daemon *d) {
  if (--d->listeners_open == 0) tb_store_close(d->store, on_store_closed, d);
}

static void on_server_closed(void *ud) {
  struct daemon *d = ud;
  d->server = NULL;
  d->api.server = NULL;
  on_listener_closed(d);
}

/* The delivery engine finished or parked its in-flight messages (their
 * results are in the store's queue): it counts like a listener. */
static void on_delivery_stopped(void *ud) {
  struct daemon *d = ud;
  d->delivery = NULL;
  d->api.delivery = NULL;
  on_listener_closed(d);
}

static void on_inbound_closed(void *ud) {
  struct daemon *d = ud;
  d->inbound = NULL;
  on_listener_closed(d);
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
  d->listeners_open = 1 + (d->inbound != NULL) + (d->delivery != NULL);
  if (d->delivery) tb_delivery_stop(d->delivery, on_delivery_stopped, d);
  tb_http_server_close(d->server, on_server_closed, d);
  if (d->inbound) tb_inbound_close(d->inbound, on_inbound_closed, d);
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

static void start_failed(const char *err) {
  tb_log_msg(TB_LOG_ERROR, "gateway.start_failed", "%s", err);
  fprintf(stderr, "tbgw: %s\n", err);
}

static void format_utc(int64_t unix_s, char *out, size_t size) {
  time_t t = (time_t)unix_s;
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    snprintf(out, size, "?");
}

static void log_loaded(const struct daemon *d) {
  int64_t now = (int64_t)time(NULL);
  for (size_t i = 0; i < d->keys->count; i++) {
    const struct tb_plugin_key *k = &d->keys->keys[i];
    char until[32] = "";
    if (k->not_after) format_utc(k->not_after, until, sizeof until);
    struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "key.loaded");
    tb_log_str(l, "key", k->name);
    tb_log_str(l, "kind", k->kind);
    tb_log_str(l, "fingerprint", k->fingerprint);
    if (k->not_after) {
      tb_log_str(l, "not_after", until);
      tb_log_str(l, "subject", k->subject);
    }
    tb_log_end(l);
    /* An expired certificate does not stop start-up (partners may still
     * accept it, and the operator needs the gateway up to roll it), but
     * /readyz reports not-ready and this says why. */
    if (k->not_after && k->not_after < now)
      tb_log_msg(TB_LOG_ERROR, "key.expired", "key \"%s\": certificate expired at %s",
                 k->name, until);
    else if (k->not_after && k->not_after < now + 30 * 86400)
      tb_log_msg(TB_LOG_WARN, "key.expiring", "key \"%s\": certificate expires at %s",
                 k->name, until);
  }
  for (size_t i = 0; i < d->plugins->lib_count; i++) {
    const struct tb_adapter_lib *lib = &d->plugins->libs[i];
    char abi[32];
    snprintf(abi, sizeof abi, "%u.%u", lib->ops->abi_major, lib->ops->abi_minor);
    size_t users = 0;
    for (size_t j = 0; j < d->plugins->partner_count; j++)
      users += d->plugins->partners[j].lib == lib;
    struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "adapter.loaded");
    tb_log_str(l, "adapter", lib->name);
    tb_log_str(l, "version", lib->ops->version ? lib->ops->version : "");
    tb_log_str(l, "path", lib->path);
    tb_log_str(l, "abi", abi);
    tb_log_int(l, "partners", (int64_t)users);
    tb_log_end(l);
  }
}

/* Crypto, keys and adapters: everything the partner side needs. */
static int load_partner_side(struct daemon *d, char *err) {
  int rc = tb_crypto_global_init(err);
  if (rc != 0) return rc;
  d->crypto_ready = 1;
  rc = tb_plugin_keys_load(&d->cfg, &d->keys, err);
  if (rc == 0) rc = tb_plugin_registry_load(&d->cfg, d->keys->store, &d->plugins, err);
  if (rc == 0) log_loaded(d);
  return rc;
}

static void unload_partner_side(struct daemon *d) {
  tb_plugin_registry_free(d->plugins);
  d->plugins = NULL;
  tb_plugin_keys_free(d->keys);
  d->keys = NULL;
  if (d->crypto_ready) tb_crypto_global_fini();
  d->crypto_ready = 0;
}

/* ---- audit trail --------------------------------------------------------- */

/* Records appended outside a store batch (after its commit hook ran, or with
 * no store operation at all) reach the disk within a second; a flush with
 * nothing buffered makes no system call. */
static void on_audit_timer(uv_timer_t *t) {
  struct daemon *d = t->data;
  char err[TB_ERRMSG_MAX] = "";
  if (tb_audit_flush(d->audit, err) != 0)
    tb_log_msg(TB_LOG_ERROR, "audit.flush_failed", "%s (the records stay buffered and are "
               "written at the next flush)", err);
}

static int open_audit(struct daemon *d, char *err) {
  if (d->cfg.audit_path == NULL) {
    tb_log_msg(TB_LOG_WARN, "audit.disabled",
               "no \"audit\" section in the configuration: security events are not recorded "
               "in a tamper-evident audit trail");
    return 0;
  }
  struct tb_audit_options ao = {.rotate_bytes = d->cfg.audit_rotate_bytes};
  char why[TB_ERRMSG_MAX] = "";
  int rc = tb_audit_open(d->cfg.audit_path, &ao, &d->audit, why);
  if (rc != 0)
    return tb_errf(err, rc, "audit.path %s: %s", d->cfg.audit_path, why[0] ? why : tb_strerror(rc));
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "audit.opened");
  tb_log_str(l, "path", d->cfg.audit_path);
  tb_log_int(l, "last_seq", tb_audit_last_seq(d->audit));
  tb_log_str(l, "last_hash", tb_audit_last_hash(d->audit));
  tb_log_int(l, "rotate_bytes", (int64_t)d->cfg.audit_rotate_bytes);
  tb_log_end(l);
  for (size_t i = 0; i < d->keys->count; i++) {
    const struct tb_plugin_key *k = &d->keys->keys[i];
    if (tb_audit_log_key_loaded(d->audit, k->name, k->kind, k->fingerprint, why) != 0)
      tb_audit_note_failure(TB_AUDIT_EV_KEY_LOADED, why);
  }
  if (tb_audit_flush(d->audit, why) != 0)
    tb_log_msg(TB_LOG_ERROR, "audit.flush_failed", "%s", why);
  return 0;
}

/* After the loop ended, i.e. after the store closed: the last flush, and the
 * chain head operators keep elsewhere to detect a truncation. */
static void close_audit(struct daemon *d) {
  if (d->audit == NULL) return;
  char err[TB_ERRMSG_MAX] = "", hash[TB_DIGEST_HEX_LEN];
  int64_t seq = tb_audit_last_seq(d->audit);
  snprintf(hash, sizeof hash, "%s", tb_audit_last_hash(d->audit));
  int rc = tb_audit_close(d->audit, err);
  d->audit = NULL;
  struct tb_log_line *l = tb_log_begin(rc == 0 ? TB_LOG_INFO : TB_LOG_ERROR,
                                       rc == 0 ? "audit.closed" : "audit.close_failed");
  tb_log_str(l, "path", d->cfg.audit_path);
  tb_log_int(l, "last_seq", seq);
  tb_log_str(l, "last_hash", hash);
  if (rc != 0) tb_log_str(l, "error", err);
  tb_log_str(l, "action", rc == 0 ? "keep last_seq/last_hash off this machine: they detect a "
                                    "truncated audit trail ('tbgw audit verify --expect-prev')"
                                  : "the last records may be missing; run 'tbgw audit verify'");
  tb_log_end(l);
}

static int run(struct daemon *d) {
  char err[TB_ERRMSG_MAX] = "";
  int rc = load_partner_side(d, err);
  if (rc != 0) {
    start_failed(err);
    return 1;
  }
  rc = tb_store_open(&d->loop, &d->cfg.store, &d->store, err);
  if (rc != 0) {
    start_failed(err);
    uv_run(&d->loop, UV_RUN_DEFAULT); /* lets a half-opened store free its handles */
    return 1;
  }
  rc = open_audit(d, err);
  if (rc == 0) rc = tb_api_init(&d->api, &d->loop, &d->cfg, d->store, err);
  d->api.audit = d->audit;
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
    start_failed(err);
    tb_store_close(d->store, NULL, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    return 1;
  }
  d->api.server = d->server;
  d->api.keys = d->keys;
  d->api.plugins = d->plugins;

  /* The partner listener (inbound/), after the local API. */
  if (d->cfg.partner_api_set) {
    struct tb_inbound_options io = {
        .loop = &d->loop, .cfg = &d->cfg, .store = d->store, .plugins = d->plugins,
        .workers = NULL, /* its own pool; share the delivery engine's once both exist */
        .audit = d->audit,
    };
    rc = tb_inbound_start(&io, &d->inbound, err);
    if (rc != 0) {
      start_failed(err);
      tb_http_server_close(d->server, NULL, NULL);
      tb_store_close(d->store, NULL, NULL);
      uv_run(&d->loop, UV_RUN_DEFAULT);
      return 1;
    }
  }

  /* The delivery engine last: it recovers, then claims what is due. */
  rc = tb_delivery_start_registry(&d->loop, d->store, &d->cfg, d->plugins, d->audit,
                                  &d->delivery, err);
  if (rc != 0) {
    start_failed(err);
    tb_http_server_close(d->server, NULL, NULL);
    if (d->inbound) tb_inbound_close(d->inbound, NULL, NULL);
    tb_store_close(d->store, NULL, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    return 1;
  }
  d->api.delivery = d->delivery;

  uv_signal_init(&d->loop, &d->sig_term);
  uv_signal_init(&d->loop, &d->sig_int);
  uv_signal_init(&d->loop, &d->sig_hup);
  d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
  uv_signal_start(&d->sig_hup, on_sighup, SIGHUP);
  uv_signal_start(&d->sig_term, on_signal, SIGTERM);
  uv_signal_start(&d->sig_int, on_signal, SIGINT);
  if (d->audit) {
    uv_timer_init(&d->loop, &d->audit_timer);
    d->audit_timer.data = d;
    uv_timer_start(&d->audit_timer, on_audit_timer, 1000, 1000);
    d->audit_timer_on = 1;
  }

  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "gateway.started");
  tb_log_str(l, "version", TB_VERSION);
  tb_log_str(l, "listener", "local_api");
  tb_log_str(l, "host", d->cfg.local_api_host);
  tb_log_int(l, "port", tb_http_server_port(d->server));
  tb_log_str(l, "store", d->cfg.store_path);
  tb_log_int(l, "partners", (int64_t)d->cfg.partner_count);
  tb_log_int(l, "keys", (int64_t)d->cfg.key_count);
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
         "gateway does not start. Then every key, the partner TLS files and every\n"
         "partner's adapter are loaded; the first failure is named on stderr and\n"
         "the exit status is 1. Logs are JSON lines (stderr or log.file).\n"
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
  close_audit(d); /* every path of run() ends after the store closed */
  if (uv_loop_close(&d->loop) != 0)
    tb_log_msg(TB_LOG_WARN, "gateway.unclean_exit", "handles were still open at exit");
  /* After the loop: nothing can reach an adapter or a key any more. */
  unload_partner_side(d);
  tb_metrics_reset();
  tb_config_free(&d->cfg);
  if (d->log_fd > 2) close(d->log_fd);
  free(d);
  return rc;
}
