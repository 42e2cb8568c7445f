/*
 * POST /v1/cases/{id}/withdraw, POST /v1/cases/{id}/supplement and
 * GET /v1/cases/{id}/evidence: the messages that follow a case to its
 * partner, and the partner's signed answers kept as evidence.
 *
 * A withdraw or supplement becomes one more message in the store's outbound
 * queue (tb_store_outbox_enqueue), with its own message id fixed now; the
 * 202 is sent after the commit, like a case's. The store's ordering rule
 * sends it only after every earlier message of the case is delivered (a
 * withdraw waits for its submit), and the engine fills in the partner's
 * receipt number at send time if it was not known yet. Each POST is one new
 * message: these requests are not idempotent (docs/openapi.yaml).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "case/validate.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "crypto/crypto.h"
#include "http/problem.h"
#include "tbgw/error.h"

#define REASON_MAX_CHARS 1000

struct msg_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
  const struct tb_http_request *req; /* valid until the exchange is answered */
  enum tb_msg_type type;
  char case_id[65];
  char partner[33];
  char message_id[TB_UUID_STR_LEN];
};

static void respond_case_not_found(struct tb_http_exchange *ex) {
  tb_http_respond_problem(ex, 404, "case-not-found", "Case not found",
                          "no case with this case_id was accepted here", NULL);
}

/* A 422 with one or more {path, code, message}. */
static void respond_invalid(struct tb_http_exchange *ex, const struct tb_case_violations *v,
                            const char *detail) {
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < v->count; i++)
    json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "path", v->items[i].path, "code",
                                         v->items[i].code, "message", v->items[i].message));
  char *errors = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
  json_decref(arr);
  size_t len = 0;
  char *body = tb_problem_build(422, "invalid-request", "The request body violates its schema",
                                detail, errors, &len);
  free(errors);
  if (body == NULL) {
    tb_http_respond(ex, 500, "text/plain", "out of memory\n", 14, NULL);
    return;
  }
  tb_http_respond_owned(ex, 422, TB_PROBLEM_CONTENT_TYPE, body, len, NULL);
}

static void one_violation(struct tb_case_violations *v, const char *path, const char *code,
                          const char *message) {
  if (v->count >= TB_CASE_MAX_VIOLATIONS) return;
  struct tb_case_violation *x = &v->items[v->count++];
  snprintf(x->path, sizeof x->path, "%s", path);
  snprintf(x->code, sizeof x->code, "%s", code);
  snprintf(x->message, sizeof x->message, "%s", message);
}

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* {"reason": string} → violations (none: 0). */
static void check_withdraw(const json_t *doc, struct tb_case_violations *v) {
  if (!json_is_object(doc)) {
    one_violation(v, "", "type", "the body must be a JSON object {\"reason\": string}");
    return;
  }
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)(uintptr_t)doc, key, val) {
    if (strcmp(key, "reason") != 0) {
      char path[160];
      snprintf(path, sizeof path, "%.150s", key);
      one_violation(v, path, "unknown-field",
                    "is not a field of a withdrawal (only \"reason\"); unknown fields are "
                    "rejected, not ignored");
    }
  }
  const json_t *r = json_object_get(doc, "reason");
  if (r == NULL) {
    one_violation(v, "reason", "required", "is required: why the applicant withdraws");
    return;
  }
  const char *s = json_string_value(r);
  if (s == NULL) {
    one_violation(v, "reason", "type", "must be a string");
    return;
  }
  int blank = 1;
  for (const char *p = s; *p; p++) {
    if ((unsigned char)*p < 0x20 && *p != '\n' && *p != '\t' && *p != '\r') {
      one_violation(v, "reason", "control-char", "must not contain control characters");
      return;
    }
    if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') blank = 0;
  }
  if (blank) one_violation(v, "reason", "empty", "must not be empty");
  else if (utf8_chars(s) > REASON_MAX_CHARS)
    one_violation(v, "reason", "too-long", "must be at most 1000 characters");
}

static void on_enqueued(int rc, int64_t outbox_id, int64_t seq, const char *errmsg, void *ud) {
  struct msg_ctx *ctx = ud;
  struct tb_http_exchange *ex = ctx->ex;
  (void)outbox_id;
  (void)seq;
  const char *type = tb_store_msg_type_name(ctx->type);
  if (rc == TB_ENOTFOUND) {
    respond_case_not_found(ex);
  } else if (rc != 0) {
    struct tb_log_line *l = tb_log_begin(TB_LOG_ERROR, "case.message_store_failed");
    tb_log_str(l, "case_id", ctx->case_id);
    tb_log_str(l, "msg_type", type);
    tb_log_str(l, "error", errmsg ? errmsg : tb_strerror(rc));
    tb_log_end(l);
    tb__api_respond_unavailable(ex, rc);
  } else {
    struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "case.message_queued");
    tb_log_str(l, "case_id", ctx->case_id);
    tb_log_str(l, "partner", ctx->partner);
    tb_log_str(l, "msg_type", type);
    tb_log_str(l, "message_id", ctx->message_id);
    tb_log_end(l);
    tb__api_kick(ctx->api, ctx->partner);
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s}", "case_id", ctx->case_id, "partner",
                          ctx->partner, "msg_type", type, "message_id", ctx->message_id,
                          "status", "queued");
    if (o == NULL) {
      tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
    } else {
      char loc[96];
      snprintf(loc, sizeof loc, "Location: /v1/cases/%s\r\n", ctx->case_id);
      tb__api_respond_json(ex, 202, o, loc);
      json_decref(o);
    }
  }
  free(ctx);
}

/* The case exists: check its state and the body, then queue the message. */
static void on_case(int rc, const struct tb_store_case_view *v, const char *errmsg, void *ud) {
  struct msg_ctx *ctx = ud;
  struct tb_http_exchange *ex = ctx->ex;
  const struct tb_http_request *req = ctx->req;
  struct tb_api *api = ctx->api;
  const char *what = ctx->type == TB_MSG_CASE_WITHDRAW ? "withdraw" : "supplement";
  if (rc == TB_ENOTFOUND) {
    respond_case_not_found(ex);
    free(ctx);
    return;
  }
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "case.read_failed", "%s", errmsg ? errmsg : tb_strerror(rc));
    tb__api_respond_unavailable(ex, rc);
    free(ctx);
    return;
  }
  /* A failed case never reached the partner (its submit is a dead letter):
   * there is nothing to withdraw or supplement until it is replayed. A
   * withdrawn case is closed. */
  if (strcmp(v->status, "failed") == 0 || strcmp(v->status, "withdrawn") == 0) {
    char detail[256];
    snprintf(detail, sizeof detail,
             "the case is %s: a %s is not possible (%s)", v->status, what,
             strcmp(v->status, "failed") == 0
                 ? "its delivery failed; replay the dead letter first"
                 : "it was withdrawn already");
    tb_http_respond_problem(ex, 409, "case-state-conflict", "Not possible in the case's state",
                            detail, NULL);
    free(ctx);
    return;
  }
  snprintf(ctx->partner, sizeof ctx->partner, "%s", v->partner);
  if (!tb__api_is_json(tb_http_request_header(req, "content-type"))) {
    tb_http_respond_problem(ex, 415, "unsupported-media-type", "Unsupported media type",
                            "send the body as 'Content-Type: application/json'", NULL);
    free(ctx);
    return;
  }
  json_error_t jerr;
  json_t *doc =
      json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (doc == NULL) {
    char detail[320];
    snprintf(detail, sizeof detail, "invalid JSON at line %d, column %d (byte %d): %s",
             jerr.line, jerr.column, jerr.position, jerr.text);
    tb_http_respond_problem(ex, 400, "malformed-json", "Malformed JSON", detail, NULL);
    free(ctx);
    return;
  }
  struct tb_case_violations *viol = calloc(1, sizeof *viol);
  if (viol == NULL) {
    json_decref(doc);
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    free(ctx);
    return;
  }
  int vrc = 0;
  if (ctx->type == TB_MSG_CASE_WITHDRAW) {
    check_withdraw(doc, viol);
    vrc = viol->count ? TB_EVALIDATE : 0;
  } else {
    vrc = tb_case_validate_supplement(doc, &api->cfg->case_limits, viol);
  }
  if (vrc != 0) {
    if (vrc == TB_EVALIDATE)
      respond_invalid(ex, viol, "the body violates the rules of this request; see errors");
    else
      tb_http_respond_problem(ex, 500, "internal", "Internal error",
                              "the body could not be checked", NULL);
    free(viol);
    json_decref(doc);
    free(ctx);
    return;
  }
  free(viol);

  /* The canonical body of the message type (tbgw/adapter.h); receipt_no is
   * null until the partner gave one, and the engine fills it in then. */
  json_t *payload = json_pack("{s:s, s:o}", "case_id", v->case_id, "receipt_no",
                              v->receipt_no ? json_string(v->receipt_no) : json_null());
  if (payload != NULL) {
    if (ctx->type == TB_MSG_CASE_WITHDRAW)
      json_object_set(payload, "reason", json_object_get(doc, "reason"));
    else
      json_object_set(payload, "materials", json_object_get(doc, "materials"));
  }
  char *text = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
  json_decref(payload);
  json_decref(doc);
  char uerr[TB_ERRMSG_MAX];
  if (text == NULL || tb_crypto_uuid4(ctx->message_id, uerr) != 0) {
    free(text);
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    free(ctx);
    return;
  }
  rc = tb_store_outbox_enqueue(api->store, ctx->case_id, NULL, ctx->type, ctx->message_id, text,
                               tb_time_now_ms(), on_enqueued, ctx);
  free(text);
  if (rc != 0) {
    tb__api_respond_unavailable(ex, rc);
    free(ctx);
  }
}

static void case_message(struct tb_api *api, struct tb_http_exchange *ex,
                         const struct tb_http_request *req, const char *case_id,
                         enum tb_msg_type type) {
  struct msg_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  ctx->api = api;
  ctx->ex = ex;
  ctx->req = req;
  ctx->type = type;
  snprintf(ctx->case_id, sizeof ctx->case_id, "%s", case_id);
  int rc = tb_store_case_get(api->store, case_id, on_case, ctx);
  if (rc != 0) {
    free(ctx);
    tb__api_respond_unavailable(ex, rc);
  }
}

void tb__api_cases_withdraw(struct tb_api *api, struct tb_http_exchange *ex,
                            const struct tb_http_request *req, const char *case_id) {
  case_message(api, ex, req, case_id, TB_MSG_CASE_WITHDRAW);
}

void tb__api_cases_supplement(struct tb_api *api, struct tb_http_exchange *ex,
                              const struct tb_http_request *req, const char *case_id) {
  case_message(api, ex, req, case_id, TB_MSG_CASE_SUPPLEMENT);
}

/* ---- GET /v1/cases/{id}/evidence ---------------------------------------------- */

struct ev_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
  char case_id[65];
};

/* Sets o[key] to bytes as a JSON string when they are UTF-8 text without
 * NUL, else to their base64, and o[enc_key] to "utf-8" or "base64". */
static int bytes_json(const unsigned char *raw, size_t len, json_t *o, const char *key,
                      const char *enc_key) {
  json_t *s = NULL;
  if (memchr(raw, 0, len) == NULL) s = json_stringn((const char *)raw, len); /* NULL: not UTF-8 */
  if (s != NULL) {
    json_object_set_new(o, enc_key, json_string("utf-8"));
    return json_object_set_new(o, key, s);
  }
  char *b64 = NULL;
  size_t b64_len = 0;
  if (tb_crypto_base64_encode(raw, len, &b64, &b64_len, NULL) != 0) return -1;
  json_object_set_new(o, enc_key, json_string("base64"));
  int rc = json_object_set_new(o, key, json_stringn(b64, b64_len));
  free(b64);
  return rc;
}

/* An answer to our message is stored as the whole HTTP response
 * (message/http: a partner may sign in headers); the parts are given too:
 * http_status, headers [[name, value], ...], body (+ body_encoding). */
static int http_parts_json(const unsigned char *raw, size_t len, json_t *o) {
  const char *t = (const char *)raw;
  const char *end = NULL;
  for (size_t i = 0; i + 3 < len; i++)
    if (memcmp(t + i, "\r\n\r\n", 4) == 0) {
      end = t + i;
      break;
    }
  if (end == NULL || len < 12 || memcmp(t, "HTTP/1.1 ", 9) != 0) return 0;
  json_object_set_new(o, "http_status", json_integer(atoi(t + 9)));
  json_t *hs = json_array();
  const char *line = memchr(t, '\n', (size_t)(end - t));
  while (hs && line && line < end) {
    line++;
    const char *eol = line;
    while (eol < end && *eol != '\r') eol++;
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (colon) {
      const char *v = colon + 1;
      while (v < eol && *v == ' ') v++;
      json_t *pair = json_pack("[s#, s#]", line, (int)(colon - line), v, (int)(eol - v));
      if (pair) json_array_append_new(hs, pair); /* NULL: not UTF-8, left out */
    }
    line = eol < end ? eol + 1 : NULL;
  }
  if (hs) json_object_set_new(o, "headers", hs);
  const unsigned char *body = (const unsigned char *)end + 4;
  return bytes_json(body, len - (size_t)(body - raw), o, "body", "body_encoding");
}

static int raw_json(const unsigned char *raw, size_t len, const char *content_type, json_t *o) {
  if (bytes_json(raw, len, o, "raw", "encoding") != 0) return -1;
  if (content_type && strcmp(content_type, "message/http") == 0)
    return http_parts_json(raw, len, o);
  return 0;
}

static void on_case_exists(int rc, const struct tb_store_case_view *v, const char *errmsg,
                           void *ud) {
  struct ev_ctx *ctx = ud;
  (void)v;
  if (rc == TB_ENOTFOUND) {
    respond_case_not_found(ctx->ex);
  } else if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "case.read_failed", "%s", errmsg ? errmsg : tb_strerror(rc));
    tb__api_respond_unavailable(ctx->ex, rc);
  } else {
    json_t *o = json_pack("{s:s, s:[]}", "case_id", ctx->case_id, "evidence");
    if (o) tb__api_respond_json(ctx->ex, 200, o, NULL);
    else tb_http_respond_problem(ctx->ex, 500, "internal", "Internal error", "out of memory", NULL);
    json_decref(o);
  }
  free(ctx);
}

static void on_evidence(int rc, const struct tb_store_evidence *ev, size_t n, const char *errmsg,
                        void *ud) {
  struct ev_ctx *ctx = ud;
  struct tb_http_exchange *ex = ctx->ex;
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "case.read_failed", "%s", errmsg ? errmsg : tb_strerror(rc));
    tb__api_respond_unavailable(ex, rc);
    free(ctx);
    return;
  }
  if (n == 0) {
    /* Unknown case, or a case without evidence yet (not answered so far). */
    if ((rc = tb_store_case_get(ctx->api->store, ctx->case_id, on_case_exists, ctx)) != 0) {
      tb__api_respond_unavailable(ex, rc);
      free(ctx);
    }
    return;
  }
  json_t *arr = json_array();
  int bad = arr == NULL;
  for (size_t i = 0; !bad && i < n; i++) {
    const struct tb_store_evidence *e = &ev[i];
    char at[TB_TIME_RFC3339_MAX];
    json_t *o = json_pack("{s:I, s:s, s:s, s:b, s:s?, s:s?, s:s?, s:s?, s:s, s:b}", "id",
                          (json_int_t)e->id, "direction", e->direction, "msg_type",
                          tb_store_msg_type_name(e->msg_type) ? tb_store_msg_type_name(e->msg_type)
                                                              : "UNKNOWN",
                          "verified", e->verified, "verify_detail", e->verify_detail, "code",
                          e->code, "message_id", e->message_id, "content_type", e->content_type,
                          "at", tb_time_format_bj(e->at_ms, at), "inbound", e->inbound);
    if (o == NULL) {
      bad = 1;
      break;
    }
    json_object_set_new(o, "partner", e->partner ? json_string(e->partner) : json_null());
    if (strcmp(e->direction, "out") == 0) {
      json_object_set_new(o, "attempt", json_integer(e->attempt));
      json_object_set_new(o, "duration_ms", json_integer(e->duration_ms));
    }
    json_object_set_new(o, "size", json_integer((json_int_t)e->raw_len));
    if (raw_json(e->raw, e->raw_len, e->content_type, o) != 0 || json_array_append_new(arr, o) != 0) bad = 1;
  }
  json_t *doc = bad ? NULL : json_pack("{s:s, s:o}", "case_id", ctx->case_id, "evidence", arr);
  if (doc == NULL) {
    if (bad) json_decref(arr);
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
  } else {
    tb__api_respond_json(ex, 200, doc, NULL);
    json_decref(doc);
  }
  free(ctx);
}

void tb__api_cases_evidence(struct tb_api *api, struct tb_http_exchange *ex, const char *case_id) {
  struct ev_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    tb_http_respond_problem(ex, 503, "overloaded", "Overloaded", "out of memory",
                            "Retry-After: 1\r\n");
    return;
  }
  ctx->api = api;
  ctx->ex = ex;
  snprintf(ctx->case_id, sizeof ctx->case_id, "%s", case_id);
  int rc = tb_store_evidence_list(api->store, case_id, on_evidence, ctx);
  if (rc != 0) {
    free(ctx);
    tb__api_respond_unavailable(ex, rc);
  }
}
