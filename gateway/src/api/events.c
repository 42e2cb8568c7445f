/*
 * GET /v1/events?after=SEQ&limit=N&wait=S — the event feed.
 *
 * A reader keeps the cursor it is given (next_after) and asks again with it;
 * events are never reordered or renumbered, so a reader that keeps its cursor
 * sees every event exactly once. With wait>0 and nothing newer than `after`,
 * the request parks as a waiter until a store commit brings a newer event or
 * the wait runs out (then an empty page answers with the same cursor).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/log.h"
#include "http/problem.h"
#include "tbgw/error.h"

#define TB_EVENTS_DEFAULT_LIMIT 100
#define TB_EVENTS_MAX_LIMIT 1000

json_t *tb__api_event_json(const struct tb_store_event *e, int with_case);

struct tb_api_waiter {
  struct tb_api_waiter *prev, *next; /* in api->waiters while parked */
  struct tb_api *api;
  struct tb_http_exchange *ex;
  uv_timer_t timer;
  int64_t after;
  size_t limit;
  int parked;
};

static void waiter_unlink(struct tb_api_waiter *w) {
  if (!w->parked) return;
  if (w->prev) w->prev->next = w->next;
  else w->api->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  w->prev = w->next = NULL;
  w->parked = 0;
}

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

static void waiter_free(struct tb_api_waiter *w) {
  waiter_unlink(w);
  uv_close((uv_handle_t *)&w->timer, on_timer_closed);
}

static void respond_page(struct tb_http_exchange *ex, const struct tb_store_event *events,
                         size_t n, int64_t after) {
  json_t *arr = json_array();
  int64_t next = after;
  for (size_t i = 0; arr && i < n; i++) {
    json_array_append_new(arr, tb__api_event_json(&events[i], 1));
    next = events[i].seq;
  }
  json_t *o = arr ? json_pack("{s:o, s:I}", "events", arr, "next_after", (json_int_t)next) : NULL;
  if (o == NULL) {
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
    return;
  }
  tb__api_respond_json(ex, 200, o, NULL);
  json_decref(o);
}

static void on_events(int rc, const struct tb_store_event *events, size_t n, int64_t last_seq,
                      const char *errmsg, void *ud) {
  struct tb_api_waiter *w = ud;
  (void)last_seq;
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "events.read_failed", "%s", errmsg);
    tb_http_respond_problem(w->ex, 503, "store-unavailable", "Store unavailable",
                            "the event feed could not be read; retry", "Retry-After: 1\r\n");
  } else {
    respond_page(w->ex, events, n, w->after);
  }
  waiter_free(w);
}

static void fetch(struct tb_api_waiter *w) {
  waiter_unlink(w);
  uv_timer_stop(&w->timer);
  if (tb_store_events_list(w->api->store, w->after, w->limit, on_events, w) != 0) {
    tb_http_respond_problem(w->ex, 503, "shutting-down", "Shutting down",
                            "the store is not accepting work; retry shortly",
                            "Retry-After: 5\r\n");
    waiter_free(w);
  }
}

static void on_wait_expired(uv_timer_t *t) {
  struct tb_api_waiter *w = t->data;
  waiter_unlink(w);
  respond_page(w->ex, NULL, 0, w->after);
  waiter_free(w);
}

static void on_abort(struct tb_http_exchange *ex, void *ud) {
  struct tb_api_waiter *w = ud;
  if (!w->parked) return; /* a read is in flight; its callback answers and frees */
  waiter_unlink(w);
  uv_timer_stop(&w->timer);
  tb_http_respond(ex, 499, "text/plain", "", 0, NULL); /* discarded: the peer is gone */
  waiter_free(w);
}

void tb__api_events_on_commit(struct tb_api *api, int64_t last_seq) {
  struct tb_api_waiter *w = api->waiters;
  while (w) {
    struct tb_api_waiter *next = w->next;
    if (last_seq > w->after) fetch(w);
    w = next;
  }
}

void tb_api_shutdown(struct tb_api *api) {
  api->shutting_down = 1;
  while (api->waiters) {
    struct tb_api_waiter *w = api->waiters;
    waiter_unlink(w);
    uv_timer_stop(&w->timer);
    respond_page(w->ex, NULL, 0, w->after);
    waiter_free(w);
  }
}

/* Parses a non-negative decimal query parameter; returns 0 if absent, 1 if
 * valid, -1 if malformed. */
static int query_int(const char *query, const char *name, int64_t *out) {
  size_t nl = strlen(name);
  for (const char *p = query; p && *p;) {
    if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
      const char *v = p + nl + 1;
      int64_t x = 0;
      size_t digits = 0;
      while (*v >= '0' && *v <= '9') {
        if (x > (INT64_MAX - 9) / 10) return -1;
        x = x * 10 + (*v++ - '0');
        digits++;
      }
      if (digits == 0 || (*v != '&' && *v != '\0')) return -1;
      *out = x;
      return 1;
    }
    p = strchr(p, '&');
    if (p) p++;
  }
  return 0;
}

void tb__api_events_get(struct tb_api *api, struct tb_http_exchange *ex,
                        const struct tb_http_request *req) {
  int64_t after = 0, limit = TB_EVENTS_DEFAULT_LIMIT, wait = 0;
  const char *bad = NULL;
  if (query_int(req->query, "after", &after) < 0) bad = "after";
  else if (query_int(req->query, "limit", &limit) < 0 || limit < 1 || limit > TB_EVENTS_MAX_LIMIT)
    bad = "limit";
  else if (query_int(req->query, "wait", &wait) < 0 || wait > api->cfg->events_max_wait_s)
    bad = "wait";
  if (bad) {
    char detail[200];
    snprintf(detail, sizeof detail,
             "query parameter '%s' is invalid: after is an event sequence number (>= 0), "
             "limit 1..%d, wait 0..%u seconds",
             bad, TB_EVENTS_MAX_LIMIT, api->cfg->events_max_wait_s);
    tb_http_respond_problem(ex, 400, "invalid-query", "Invalid query parameter", detail, NULL);
    return;
  }
  struct tb_api_waiter *w = calloc(1, sizeof *w);
  if (w == NULL) {
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  w->api = api;
  w->ex = ex;
  w->after = after;
  w->limit = (size_t)limit;
  uv_timer_init(api->loop, &w->timer);
  w->timer.data = w;
  tb_http_exchange_on_abort(ex, on_abort, w);
  if (wait == 0 || api->shutting_down || tb_store_last_seq(api->store) > after) {
    fetch(w);
    return;
  }
  w->parked = 1;
  w->next = api->waiters;
  if (api->waiters) api->waiters->prev = w;
  api->waiters = w;
  uv_timer_start(&w->timer, on_wait_expired, (uint64_t)wait * 1000, 0);
}
