/*
 * GET /v1/inbound/{case_id} and POST /v1/inbound/{case_id}/status: the cases
 * partners sent us (SPEC §4), as the partner listener stored them
 * (inbound/), and local software's progress reports on them.
 *
 * A status report becomes an outbound STATUS_NOTIFY in the store's queue
 * (tb_store_outbox_enqueue), so it reaches the partner with the same
 * guarantees as a case we send: committed before the 202, delivered at least
 * once under one message id, retried, dead-lettered if refused. The body is
 * the canonical STATUS_NOTIFY of tbgw/adapter.h; the partner's adapter
 * translates it.
 */
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/api.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "http/problem.h"
#include "tbgw/error.h"

/* Defined in cases.c: one event of a timeline or of the feed as JSON. */
json_t *tb__api_event_json(const struct tb_store_event *e, int with_case);

/* Longest opinion, supplement name, tracking or licence number we pass on
 * (characters): partner platforms store them in fixed columns. */
#define TB_INBOUND_TEXT_MAX 2000
#define TB_INBOUND_SUPPLEMENT_MAX 100

static const char *const business_statuses[] = {
    "accepted", "rejected", "supplement_required", "in_progress",
    "approved", "denied",   "withdrawn",           "result_shipped",
};

static void respond_not_found(struct tb_http_exchange *ex) {
  tb_http_respond_problem(ex, 404, "inbound-case-not-found", "Inbound case not found",
                          "no partner sent a case with this case_id", NULL);
}

/* ---- GET /v1/inbound/{case_id} ------------------------------------------- */

struct get_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
};

static void on_inbound(int rc, const struct tb_store_inbound_view *v, const char *errmsg,
                       void *ud) {
  struct get_ctx *ctx = ud;
  struct tb_http_exchange *ex = ctx->ex;
  free(ctx);
  if (rc == TB_ENOTFOUND) {
    respond_not_found(ex);
    return;
  }
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "inbound.read_failed", "%s", errmsg ? errmsg : tb_strerror(rc));
    tb__api_respond_unavailable(ex, rc);
    return;
  }
  json_error_t jerr;
  json_t *body = json_loadb(v->body, v->body_len, 0, &jerr);
  if (body == NULL) body = json_null(); /* stored by the store only as a JSON object */
  json_t *timeline = json_array();
  for (size_t i = 0; timeline && i < v->timeline_len; i++)
    json_array_append_new(timeline, tb__api_event_json(&v->timeline[i], 0));
  char created[TB_TIME_RFC3339_MAX], updated[TB_TIME_RFC3339_MAX];
  json_t *o = json_pack("{s:s, s:s, s:s?, s:s, s:s?, s:s?, s:s?, s:s, s:s, s:o, s:o*}",
                        "case_id", v->case_id, "partner", v->partner, "receipt_no",
                        v->receipt_no, "status", v->status, "message_id", v->message_id,
                        "origin_region", v->origin_region, "target_region", v->target_region,
                        "created_at", tb_time_format_bj(v->created_ms, created), "updated_at",
                        tb_time_format_bj(v->updated_ms, updated), "case", body, "timeline",
                        timeline);
  if (o == NULL) {
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
    return;
  }
  tb__api_respond_json(ex, 200, o, NULL);
  json_decref(o);
}

void tb__api_inbound_get(struct tb_api *api, struct tb_http_exchange *ex, const char *case_id) {
  struct get_ctx *ctx = malloc(sizeof *ctx);
  if (ctx == NULL) {
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  ctx->api = api;
  ctx->ex = ex;
  int rc = tb_store_inbound_get(api->store, case_id, on_inbound, ctx);
  if (rc != 0) {
    free(ctx);
    tb__api_respond_unavailable(ex, rc);
  }
}

/* ---- POST /v1/inbound/{case_id}/status ---------------------------------------- */

struct status_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
  json_t *doc;         /* the request body, checked once the case is known to exist */
  json_t *payload;     /* the STATUS_NOTIFY body; case_id, receipt_no and at come later */
  char case_id[65];
  char partner[64];
  char message_id[37];
};

static void status_ctx_free(struct status_ctx *c) {
  json_decref(c->doc);
  json_decref(c->payload);
  free(c);
}

static void uuid_v4(char out[37]) {
  unsigned char b[16];
  /* OpenSSL's DRBG does not fail once seeded; a message id that might
   * repeat would be worse than stopping. */
  if (RAND_bytes(b, sizeof b) != 1) abort();
  b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
           b[14], b[15]);
}

/* "2024-05-07T09:30:00+08:00": whole seconds, which every adapter's
 * parse_rfc3339 and every partner time format can carry. */
static void format_at(int64_t unix_ms, char out[32]) {
  time_t t = (time_t)(unix_ms / 1000 + 8 * 3600);
  struct tm tm;
  if (gmtime_r(&t, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%S+08:00", &tm) == 0)
    snprintf(out, 32, "1970-01-01T08:00:00+08:00");
}

/* Collects violations as the problem's "errors" array. */
struct violations {
  json_t *errors;
};

static void violation(struct violations *v, const char *path, const char *code,
                      const char *message) {
  json_t *e = json_pack("{s:s, s:s, s:s}", "path", path, "code", code, "message", message);
  if (e) json_array_append_new(v->errors, e);
}

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* A string, or null/absent; "" counts as absent. Returns the string or NULL
 * (and records a violation for anything else). */
static const char *opt_text(struct violations *v, const json_t *doc, const char *key) {
  const json_t *x = json_object_get(doc, key);
  if (x == NULL || json_is_null(x)) return NULL;
  if (!json_is_string(x)) {
    violation(v, key, "type", "must be a string or null");
    return NULL;
  }
  const char *s = json_string_value(x);
  if (strlen(s) != json_string_length(x)) {
    violation(v, key, "format", "must not contain NUL characters");
    return NULL;
  }
  if (utf8_chars(s) > TB_INBOUND_TEXT_MAX) {
    char m[96];
    snprintf(m, sizeof m, "longer than %d characters", TB_INBOUND_TEXT_MAX);
    violation(v, key, "too-long", m);
    return NULL;
  }
  return s[0] ? s : NULL;
}

/* Checks the request body and builds the payload without case_id,
 * receipt_no and at. Returns NULL with violations (or NULL with none: out
 * of memory). */
static json_t *status_payload(const json_t *doc, struct violations *v) {
  static const char *const keys[] = {"status", "opinion", "supplement", "tracking_no",
                                     "licence_no"};
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)doc, key, val) {
    int known = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) known |= strcmp(key, keys[i]) == 0;
    if (!known) {
      char path[80];
      snprintf(path, sizeof path, "%.64s", key);
      violation(v, path, "unknown-field",
                "unknown field (allowed: status, opinion, supplement, tracking_no, licence_no)");
    }
  }
  const json_t *st = json_object_get(doc, "status");
  const char *status = NULL;
  if (st == NULL) {
    violation(v, "status", "required", "is required");
  } else if (!json_is_string(st)) {
    violation(v, "status", "type", "must be a string");
  } else {
    for (size_t i = 0; i < sizeof business_statuses / sizeof business_statuses[0]; i++)
      if (strcmp(json_string_value(st), business_statuses[i]) == 0) status = business_statuses[i];
    if (status == NULL)
      violation(v, "status", "enum",
                "must be one of accepted, rejected, supplement_required, in_progress, approved, "
                "denied, withdrawn, result_shipped");
  }
  const char *opinion = opt_text(v, doc, "opinion");
  const char *tracking = opt_text(v, doc, "tracking_no");
  const char *licence = opt_text(v, doc, "licence_no");

  json_t *names = json_array();
  size_t errors_before = json_array_size(v->errors);
  const json_t *sup = json_object_get(doc, "supplement");
  if (sup != NULL && !json_is_null(sup)) {
    if (!json_is_array(sup)) {
      violation(v, "supplement", "type", "must be an array of material names");
    } else if (json_array_size(sup) > TB_INBOUND_SUPPLEMENT_MAX) {
      violation(v, "supplement", "too-long", "more than 100 material names");
    } else {
      size_t i;
      const json_t *x;
      json_array_foreach(sup, i, x) {
        char path[48];
        snprintf(path, sizeof path, "supplement[%zu]", i);
        const char *s = json_string_value(x);
        if (s == NULL || s[0] == '\0' || strlen(s) != json_string_length(x))
          violation(v, path, "type", "must be a non-empty material name");
        else if (utf8_chars(s) > TB_INBOUND_TEXT_MAX)
          violation(v, path, "too-long", "longer than 2000 characters");
        else if (names)
          json_array_append_new(names, json_string(s));
      }
    }
  }
  int sup_bad = json_array_size(v->errors) > errors_before;
  if (status) {
    int supplement = strcmp(status, "supplement_required") == 0;
    int shipped = strcmp(status, "result_shipped") == 0;
    if (supplement && json_array_size(names) == 0 && !sup_bad)
      violation(v, "supplement", "required",
                "supplement_required needs the names of the missing materials");
    if (!supplement && json_array_size(names) > 0)
      violation(v, "supplement", "not-allowed", "material names only with supplement_required");
    if (!shipped && tracking)
      violation(v, "tracking_no", "not-allowed", "only with result_shipped");
    if (!shipped && licence)
      violation(v, "licence_no", "not-allowed", "only with result_shipped");
  }
  if (json_array_size(v->errors) > 0 || names == NULL) {
    json_decref(names);
    return NULL;
  }
  return json_pack("{s:s, s:s?, s:o, s:s?, s:s?}", "status", status, "opinion", opinion,
                   "supplement", names, "tracking_no", tracking, "licence_no", licence);
}

static void on_enqueued(int rc, int64_t outbox_id, int64_t seq, const char *errmsg, void *ud) {
  struct status_ctx *c = ud;
  struct tb_http_exchange *ex = c->ex;
  (void)outbox_id;
  if (rc != 0) {
    struct tb_log_line *l = tb_log_begin(rc == TB_ENOTFOUND ? TB_LOG_WARN : TB_LOG_ERROR,
                                         "inbound.status_failed");
    tb_log_str(l, "case_id", c->case_id);
    tb_log_str(l, "partner", c->partner);
    tb_log_str(l, "error", errmsg ? errmsg : tb_strerror(rc));
    tb_log_end(l);
    if (rc == TB_ENOTFOUND)
      respond_not_found(ex);
    else if (rc == TB_EVALIDATE || rc == TB_EPARSE || rc == TB_EEXISTS || rc == TB_ECONFLICT)
      tb_http_respond_problem(ex, 409, "status-not-queued", "Status not queued",
                              errmsg ? errmsg : tb_strerror(rc), NULL);
    else
      tb__api_respond_unavailable(ex, rc);
    status_ctx_free(c);
    return;
  }
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "inbound.status_queued");
  tb_log_str(l, "case_id", c->case_id);
  tb_log_str(l, "partner", c->partner);
  tb_log_str(l, "message_id", c->message_id);
  tb_log_str(l, "status", json_string_value(json_object_get(c->payload, "status")));
  tb_log_int(l, "seq", seq);
  tb_log_end(l);
  tb__api_kick(c->api, c->partner); /* committed: the engine may claim it now */
  json_t *o = json_pack("{s:s, s:s, s:s}", "case_id", c->case_id, "message_id", c->message_id,
                        "status", "queued");
  if (o == NULL) {
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
  } else {
    char location[112];
    snprintf(location, sizeof location, "Location: /v1/inbound/%s\r\n", c->case_id);
    tb__api_respond_json(ex, 202, o, location);
    json_decref(o);
  }
  status_ctx_free(c);
}

/* Answers the violations as a 422 problem with "errors". */
static void respond_violations(struct tb_http_exchange *ex, json_t *errors_arr) {
  size_t n = json_array_size(errors_arr);
  char *errors = n ? json_dumps(errors_arr, JSON_COMPACT) : NULL;
  if (n == 0 || errors == NULL) {
    free(errors);
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  char detail[96];
  snprintf(detail, sizeof detail, "%zu rule(s) violated", n);
  size_t len = 0;
  char *body = tb_problem_build(422, "invalid-status", "The status report is not valid", detail,
                                errors, &len);
  free(errors);
  if (body == NULL)
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
  else
    tb_http_respond_owned(ex, 422, TB_PROBLEM_CONTENT_TYPE, body, len, NULL);
}

/* Step 2: the case exists (else 404, whatever the body); the body is checked
 * (422), and the partner and our receipt number complete the notification,
 * which is queued in one store operation. */
static void on_status_case(int rc, const struct tb_store_inbound_view *v, const char *errmsg,
                           void *ud) {
  struct status_ctx *c = ud;
  struct tb_http_exchange *ex = c->ex;
  if (rc != 0) {
    if (rc == TB_ENOTFOUND) {
      respond_not_found(ex);
    } else {
      tb_log_msg(TB_LOG_ERROR, "inbound.read_failed", "%s", errmsg ? errmsg : tb_strerror(rc));
      tb__api_respond_unavailable(ex, rc);
    }
    status_ctx_free(c);
    return;
  }
  struct violations vs = {json_array()};
  json_t *payload = vs.errors ? status_payload(c->doc, &vs) : NULL;
  if (payload == NULL) {
    respond_violations(ex, vs.errors);
    json_decref(vs.errors);
    status_ctx_free(c);
    return;
  }
  json_decref(vs.errors);
  c->payload = payload;
  snprintf(c->partner, sizeof c->partner, "%s", v->partner);
  int64_t now = tb_time_now_ms();
  char at[32];
  format_at(now, at);
  json_object_set_new(c->payload, "case_id", json_string(c->case_id));
  json_object_set_new(c->payload, "receipt_no",
                      v->receipt_no ? json_string(v->receipt_no) : json_null());
  json_object_set_new(c->payload, "at", json_string(at));
  char *text = json_dumps(c->payload, JSON_COMPACT | JSON_SORT_KEYS);
  uuid_v4(c->message_id);
  rc = text ? tb_store_outbox_enqueue(c->api->store, c->case_id, c->partner,
                                      TB_MSG_STATUS_NOTIFY, c->message_id, text, now,
                                      on_enqueued, c)
            : TB_ENOMEM;
  free(text);
  if (rc != 0) {
    tb__api_respond_unavailable(ex, rc);
    status_ctx_free(c);
  }
}

void tb__api_inbound_status(struct tb_api *api, struct tb_http_exchange *ex,
                            const struct tb_http_request *req, const char *case_id) {
  if (!tb__api_is_json(tb_http_request_header(req, "content-type"))) {
    tb_http_respond_problem(ex, 415, "unsupported-media-type", "Unsupported media type",
                            "send the status as 'Content-Type: application/json'", NULL);
    return;
  }
  json_error_t jerr;
  json_t *doc = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (doc == NULL || !json_is_object(doc)) {
    char detail[320];
    if (doc == NULL)
      snprintf(detail, sizeof detail, "invalid JSON at line %d, column %d (byte %d): %s",
               jerr.line, jerr.column, jerr.position, jerr.text);
    else
      snprintf(detail, sizeof detail, "the body must be a JSON object");
    json_decref(doc);
    tb_http_respond_problem(ex, 400, "malformed-json", "Malformed JSON", detail, NULL);
    return;
  }
  struct status_ctx *c = calloc(1, sizeof *c);
  if (c == NULL) {
    json_decref(doc);
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  c->api = api;
  c->ex = ex;
  c->doc = doc;
  snprintf(c->case_id, sizeof c->case_id, "%s", case_id);
  int rc = tb_store_inbound_get(api->store, case_id, on_status_case, c);
  if (rc != 0) {
    status_ctx_free(c);
    tb__api_respond_unavailable(ex, rc);
  }
}
