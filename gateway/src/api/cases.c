/*
 * POST /v1/cases and GET /v1/cases/{id}: parse, validate, route, commit.
 *
 * Acceptance is answered only from the store's callback, i.e. after the
 * group commit that contains the case is durable: a 202 is a promise that
 * survives kill -9 and power loss. Idempotency is decided inside the same
 * transaction as the insert, so two concurrent submissions of one case_id
 * cannot both create it.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "audit/audit.h"
#include "case/validate.h"
#include "core/log.h"
#include "core/mask.h"
#include "core/metrics.h"
#include "core/timefmt.h"
#include "http/problem.h"
#include "tbgw/error.h"

/* Beyond this many store operations waiting, new cases are turned away with
 * 503 + Retry-After instead of growing memory without bound. */
#define TB_API_MAX_PENDING_ACCEPTS 20000

struct accept_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
  char case_id[65];
  char partner[33];
  /* for the audit record (masked there); empty without an audit trail */
  char actor[80];
  char subject_id[72];
  char subject_name[256];
};

static void refuse(struct tb_api *api, const char *reason) {
  tb_metric_add(api->metrics.cases_refused, reason, NULL, 1);
}

/* Violations → the problem's "errors" array text. */
static char *violations_json(const struct tb_case_violations *v) {
  json_t *arr = json_array();
  if (arr == NULL) return NULL;
  for (size_t i = 0; i < v->count; i++) {
    json_t *e = json_pack("{s:s, s:s, s:s}", "path", v->items[i].path, "code", v->items[i].code,
                          "message", v->items[i].message);
    if (e == NULL || json_array_append_new(arr, e) != 0) {
      json_decref(arr);
      return NULL;
    }
  }
  char *s = json_dumps(arr, JSON_COMPACT);
  json_decref(arr);
  return s;
}

static void respond_problem_errors(struct tb_http_exchange *ex, int status, const char *slug,
                                   const char *title, const char *detail, const char *errors) {
  size_t len = 0;
  char *body = tb_problem_build(status, slug, title, detail, errors, &len);
  if (body == NULL) {
    tb_http_respond(ex, 500, "text/plain", "out of memory\n", 14, NULL);
    return;
  }
  tb_http_respond_owned(ex, status, TB_PROBLEM_CONTENT_TYPE, body, len, NULL);
}

static void uuid_v4(char out[37]) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) {
    /* OpenSSL's DRBG does not fail once seeded; if it ever does, a message id
     * that might repeat is worse than stopping. */
    abort();
  }
  b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
           b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
           b[14], b[15]);
}

static void on_accepted(int rc, enum tb_store_accept_outcome outcome, const char *answer,
                        int64_t seq, const char *errmsg, void *ud) {
  struct accept_ctx *ctx = ud;
  struct tb_http_exchange *ex = ctx->ex;
  if (rc != 0) {
    struct tb_log_line *l = tb_log_begin(TB_LOG_ERROR, "case.store_failed");
    tb_log_str(l, "case_id", ctx->case_id);
    tb_log_str(l, "error", errmsg);
    tb_log_str(l, "action", "check the store's disk (space, permissions); the client may retry");
    tb_log_end(l);
    refuse(ctx->api, "store");
    if (rc == TB_ECLOSED)
      tb_http_respond_problem(ex, 503, "shutting-down", "Shutting down",
                              "the gateway is stopping; retry shortly", "Retry-After: 5\r\n");
    else
      tb_http_respond_problem(ex, 503, "store-unavailable", "Store unavailable",
                              "the case could not be stored durably; nothing was kept, retry",
                              "Retry-After: 5\r\n");
    free(ctx);
    return;
  }
  if (outcome == TB_STORE_ACCEPT_CONFLICT) {
    refuse(ctx->api, "conflict");
    struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "case.conflict");
    tb_log_str(l, "case_id", ctx->case_id);
    tb_log_end(l);
    tb_http_respond_problem(ex, 409, "case-id-conflict", "case_id already used",
                            "a different case was already accepted under this case_id; "
                            "case_id must be unique per origin gateway",
                            NULL);
    free(ctx);
    return;
  }
  char location[96];
  snprintf(location, sizeof location, "Location: /v1/cases/%s\r\n", ctx->case_id);
  if (outcome == TB_STORE_ACCEPT_NEW) {
    tb_metric_add(ctx->api->metrics.cases_accepted, ctx->partner, NULL, 1);
    struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "case.accepted");
    tb_log_str(l, "case_id", ctx->case_id);
    tb_log_str(l, "partner", ctx->partner);
    tb_log_int(l, "seq", seq);
    tb_log_end(l);
    /* Appended after this batch's commit hook ran: the next commit (or the
     * daemon's 1 s audit timer) writes it. */
    if (ctx->api->audit) {
      char aerr[TB_ERRMSG_MAX] = "";
      if (tb_audit_log_case_accepted(ctx->api->audit, ctx->actor, ctx->case_id, ctx->partner,
                                     ctx->subject_id[0] ? ctx->subject_id : NULL,
                                     ctx->subject_name[0] ? ctx->subject_name : NULL, aerr) != 0)
        tb_audit_note_failure(TB_AUDIT_EV_CASE_ACCEPTED, aerr);
    }
    tb__api_kick(ctx->api, ctx->partner); /* committed: the engine may claim it now */
  } else {
    struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "case.repeated");
    tb_log_str(l, "case_id", ctx->case_id);
    tb_log_end(l);
  }
  tb_http_respond(ex, outcome == TB_STORE_ACCEPT_NEW ? 202 : 200, "application/json", answer,
                  strlen(answer), location);
  free(ctx);
}

void tb__api_cases_post(struct tb_api *api, struct tb_http_exchange *ex,
                        const struct tb_http_request *req) {
  if (!tb__api_is_json(tb_http_request_header(req, "content-type"))) {
    refuse(api, "media-type");
    tb_http_respond_problem(ex, 415, "unsupported-media-type", "Unsupported media type",
                            "send the case as 'Content-Type: application/json'", NULL);
    return;
  }
  /* During shutdown the listener accepts no new connections, but a request
   * already being read is still accepted: the store stays open until the
   * server has closed. */
  if (tb_store_pending(api->store) > TB_API_MAX_PENDING_ACCEPTS) {
    refuse(api, "overloaded");
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded",
                            "too many cases are waiting to be stored; retry shortly",
                            "Retry-After: 1\r\n");
    return;
  }

  /* Nesting is bounded before parsing: jansson recurses per level (its own
   * cap is 2048), and no valid case is nearly this deep. */
  unsigned max_depth = api->cfg->cases_max_json_depth;
  if (tb__api_json_depth((const char *)req->body, req->body_len, max_depth) > max_depth) {
    refuse(api, "json-too-deep");
    char detail[160];
    snprintf(detail, sizeof detail,
             "the JSON nests arrays/objects more than %u levels deep (cases.max_json_depth)",
             max_depth);
    tb_http_respond_problem(ex, 400, "json-too-deep", "JSON nested too deeply", detail, NULL);
    return;
  }

  json_error_t jerr;
  json_t *doc = json_loadb((const char *)req->body, req->body_len,
                           JSON_REJECT_DUPLICATES, &jerr);
  if (doc == NULL) {
    refuse(api, "malformed-json");
    char detail[320];
    snprintf(detail, sizeof detail, "invalid JSON at line %d, column %d (byte %d): %s",
             jerr.line, jerr.column, jerr.position, jerr.text);
    tb_http_respond_problem(ex, 400, "malformed-json", "Malformed JSON", detail, NULL);
    return;
  }

  struct tb_case_violations *v = malloc(sizeof *v);
  if (v == NULL) {
    json_decref(doc);
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  int rc = tb_case_validate(doc, &api->cfg->case_limits, v);
  const struct tb_config_partner *partner = NULL;
  if (rc == 0) {
    const char *target = json_string_value(json_object_get(doc, "target_region"));
    partner = tb_config_route(api->cfg, target);
    if (partner == NULL) {
      v->count = 1;
      v->dropped = 0;
      snprintf(v->items[0].path, sizeof v->items[0].path, "target_region");
      snprintf(v->items[0].code, sizeof v->items[0].code, "no-route");
      snprintf(v->items[0].message, sizeof v->items[0].message,
               "no configured partner serves region %s", target);
      char *errors = violations_json(v);
      refuse(api, "no-route");
      respond_problem_errors(ex, 422, "no-route", "No route to the target region",
                             "the target region is not served by any configured partner",
                             errors);
      free(errors);
      free(v);
      json_decref(doc);
      return;
    }
  }
  if (rc != 0) {
    char detail[128];
    if (rc == TB_EVALIDATE)
      snprintf(detail, sizeof detail, "%zu rule(s) violated%s", v->count + v->dropped,
               v->dropped ? " (only the first ones are listed)" : "");
    else
      snprintf(detail, sizeof detail, "the case could not be checked: %s", tb_strerror(rc));
    char *errors = rc == TB_EVALIDATE ? violations_json(v) : NULL;
    refuse(api, "invalid");
    respond_problem_errors(ex, rc == TB_EVALIDATE ? 422 : 500,
                           rc == TB_EVALIDATE ? "invalid-case" : "internal",
                           rc == TB_EVALIDATE ? "The case violates the canonical schema"
                                              : "Internal error",
                           detail, errors);
    free(errors);
    free(v);
    json_decref(doc);
    return;
  }
  free(v);

  /* The stored form is the compact, key-sorted serialisation: it is what we
   * deliver, and hashing it makes "the same body" mean the same case, not
   * the same whitespace. */
  char *canon = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
  const char *case_id = json_string_value(json_object_get(doc, "case_id"));
  struct accept_ctx *ctx = calloc(1, sizeof *ctx);
  json_t *answer = json_pack("{s:s, s:s, s:s}", "case_id", case_id, "partner", partner->name,
                             "status", "queued");
  char *answer_text = answer ? json_dumps(answer, JSON_COMPACT) : NULL;
  json_decref(answer);
  unsigned char hash[32];
  unsigned int hlen = 0;
  if (canon == NULL || ctx == NULL || answer_text == NULL ||
      EVP_Digest(canon, strlen(canon), hash, &hlen, EVP_sha256(), NULL) != 1) {
    free(canon);
    free(ctx);
    free(answer_text);
    json_decref(doc);
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  char message_id[37];
  uuid_v4(message_id);
  ctx->api = api;
  ctx->ex = ex;
  snprintf(ctx->case_id, sizeof ctx->case_id, "%s", case_id);
  snprintf(ctx->partner, sizeof ctx->partner, "%s", partner->name);
  if (api->audit) {
    const char *client = tb__api_authenticate(api, req);
    const json_t *app = json_object_get(doc, "applicant");
    const char *sid = json_string_value(json_object_get(app, "id_number"));
    const char *sname = json_string_value(json_object_get(app, "name"));
    snprintf(ctx->actor, sizeof ctx->actor, "api:%.70s", client ? client : "?");
    snprintf(ctx->subject_id, sizeof ctx->subject_id, "%s", sid ? sid : "");
    snprintf(ctx->subject_name, sizeof ctx->subject_name, "%s", sname ? sname : "");
  }
  struct tb_store_case_new c = {
      .case_id = case_id,
      .partner = partner->name,
      .origin_region = json_string_value(json_object_get(doc, "origin_region")),
      .target_region = json_string_value(json_object_get(doc, "target_region")),
      .message_id = message_id,
      .body_hash = hash,
      .body = canon,
      .body_len = strlen(canon),
      .answer = answer_text,
      .now_ms = tb_time_now_ms(),
  };
  rc = tb_store_case_accept(api->store, &c, on_accepted, ctx);
  free(canon);
  free(answer_text);
  json_decref(doc);
  if (rc != 0) {
    free(ctx);
    refuse(api, "store");
    tb_http_respond_problem(ex, 503, "shutting-down", "Shutting down",
                            "the store is not accepting work; retry shortly",
                            "Retry-After: 5\r\n");
  }
}

/* ---- GET /v1/cases/{id} ---------------------------------------------- */

json_t *tb__api_event_json(const struct tb_store_event *e, int with_case);
json_t *tb__api_event_json(const struct tb_store_event *e, int with_case) {
  char at[TB_TIME_RFC3339_MAX];
  json_error_t jerr;
  json_t *detail = json_loads(e->detail ? e->detail : "{}", 0, &jerr);
  if (detail == NULL) detail = json_object();
  json_t *o = json_pack("{s:I, s:s, s:s?, s:s, s:o}", "seq", (json_int_t)e->seq, "type", e->kind,
                        "status", e->status, "at", tb_time_format_bj(e->at_ms, at), "detail",
                        detail);
  if (o && with_case) {
    json_object_set_new(o, "case_id", json_string(e->case_id ? e->case_id : ""));
    json_object_set_new(o, "partner", e->partner ? json_string(e->partner) : json_null());
  }
  return o;
}

struct get_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
};

static void on_case(int rc, const struct tb_store_case_view *v, const char *errmsg, void *ud) {
  struct get_ctx *ctx = ud;
  struct tb_http_exchange *ex = ctx->ex;
  free(ctx);
  if (rc == TB_ENOTFOUND) {
    tb_http_respond_problem(ex, 404, "case-not-found", "Case not found",
                            "no case with this case_id was accepted here", NULL);
    return;
  }
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "case.read_failed", "%s", errmsg);
    tb_http_respond_problem(ex, 503, "store-unavailable", "Store unavailable",
                            "the case could not be read; retry", "Retry-After: 1\r\n");
    return;
  }
  char created[TB_TIME_RFC3339_MAX], updated[TB_TIME_RFC3339_MAX];
  json_t *timeline = json_array();
  for (size_t i = 0; timeline && i < v->timeline_len; i++)
    json_array_append_new(timeline, tb__api_event_json(&v->timeline[i], 0));
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s, s:s, s:o}", "case_id",
                        v->case_id, "partner", v->partner, "status", v->status, "origin_region",
                        v->origin_region ? v->origin_region : "", "target_region",
                        v->target_region ? v->target_region : "", "receipt_no", v->receipt_no,
                        "last_error", v->last_error, "created_at",
                        tb_time_format_bj(v->created_ms, created), "updated_at",
                        tb_time_format_bj(v->updated_ms, updated), "timeline", timeline);
  if (o == NULL) {
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
    return;
  }
  tb__api_respond_json(ex, 200, o, NULL);
  json_decref(o);
}

void tb__api_cases_get(struct tb_api *api, struct tb_http_exchange *ex, const char *case_id) {
  struct get_ctx *ctx = malloc(sizeof *ctx);
  if (ctx == NULL) {
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  ctx->api = api;
  ctx->ex = ex;
  if (tb_store_case_get(api->store, case_id, on_case, ctx) != 0) {
    free(ctx);
    tb_http_respond_problem(ex, 503, "shutting-down", "Shutting down",
                            "the store is not accepting work; retry shortly",
                            "Retry-After: 5\r\n");
  }
}
