/*
 * Operator endpoints (same bearer tokens as the rest of /v1):
 *   GET  /v1/admin/dead-letters?partner=P&limit=N   dead letters, oldest first
 *   POST /v1/admin/dead-letters/replay {"case_id"} | {"partner"}
 * A replay puts the dead letters back in the queue (same message ids,
 * attempts reset) and wakes the delivery engine. `tbgw dlq` does the same
 * from the command line on the store file.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "audit/audit.h"
#include "core/log.h"
#include "core/timefmt.h"
#include "http/problem.h"
#include "tbgw/error.h"

#define DLQ_DEFAULT_LIMIT 1000
#define DLQ_MAX_LIMIT 10000

struct admin_ctx {
  struct tb_api *api;
  struct tb_http_exchange *ex;
  char case_id[65];
  char partner[33];
  char actor[80]; /* "api:<client>", for the audit trail */
};

static int name_ok(const char *s, size_t n, size_t max, int case_id) {
  if (n == 0 || n > max) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '-' ||
             (case_id && ((c >= 'A' && c <= 'Z') || c == '_'));
    if (!ok) return 0;
  }
  return 1;
}

/* Finds name=value in the query; 1 found (copied), 0 absent, -1 too long. */
static int query_get(const char *q, const char *name, char *out, size_t size) {
  size_t nl = strlen(name);
  for (const char *p = q; p && *p;) {
    const char *end = strchr(p, '&');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
      size_t vl = len - nl - 1;
      if (vl >= size) return -1;
      memcpy(out, p + nl + 1, vl);
      out[vl] = '\0';
      return 1;
    }
    p = end ? end + 1 : NULL;
  }
  return 0;
}

static void bad_query(struct tb_http_exchange *ex, const char *detail) {
  tb_http_respond_problem(ex, 400, "bad-query", "Bad query parameter", detail, NULL);
}

static void on_dlq(int rc, const struct tb_store_dead_letter *dl, size_t n, const char *errmsg,
                   void *ud) {
  struct admin_ctx *ctx = ud;
  struct tb_http_exchange *ex = ctx->ex;
  free(ctx);
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "dlq.read_failed", "%s", errmsg ? errmsg : tb_strerror(rc));
    tb__api_respond_unavailable(ex, rc);
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; arr && i < n; i++) {
    char at[TB_TIME_RFC3339_MAX];
    const char *type = tb_store_msg_type_name(dl[i].msg_type);
    json_t *o = json_pack("{s:s, s:b, s:s, s:s, s:s, s:I, s:s?, s:s?, s:s}", "case_id",
                          dl[i].case_id, "inbound", dl[i].inbound, "partner", dl[i].partner,
                          "msg_type", type ? type : "UNKNOWN", "message_id", dl[i].message_id,
                          "attempts", (json_int_t)dl[i].attempts, "last_code", dl[i].last_code,
                          "last_error", dl[i].last_error, "failed_at",
                          tb_time_format_bj(dl[i].failed_ms, at));
    if (o == NULL || json_array_append_new(arr, o) != 0) {
      json_decref(arr);
      arr = NULL;
    }
  }
  json_t *doc = arr ? json_pack("{s:o}", "dead_letters", arr) : NULL;
  if (doc == NULL) {
    tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
    return;
  }
  tb__api_respond_json(ex, 200, doc, NULL);
  json_decref(doc);
}

void tb__api_admin_dead_letters(struct tb_api *api, struct tb_http_exchange *ex,
                                const struct tb_http_request *req) {
  char partner[40] = "", limit_s[16] = "";
  int has_partner = query_get(req->query, "partner", partner, sizeof partner);
  int has_limit = query_get(req->query, "limit", limit_s, sizeof limit_s);
  if (has_partner < 0 || (has_partner && !name_ok(partner, strlen(partner), 32, 0))) {
    bad_query(ex, "partner must be a configured partner name ([a-z0-9-]{1,32})");
    return;
  }
  long limit = DLQ_DEFAULT_LIMIT;
  if (has_limit) {
    char *end = NULL;
    limit = strtol(limit_s, &end, 10);
    if (has_limit < 0 || end == limit_s || *end != '\0' || limit < 1 || limit > DLQ_MAX_LIMIT) {
      bad_query(ex, "limit must be an integer from 1 to 10000");
      return;
    }
  }
  struct admin_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    tb__api_respond_unavailable(ex, TB_ENOMEM);
    return;
  }
  ctx->api = api;
  ctx->ex = ex;
  int rc = tb_store_dlq_list(api->store, has_partner ? partner : NULL, (size_t)limit, on_dlq, ctx);
  if (rc != 0) {
    free(ctx);
    tb__api_respond_unavailable(ex, rc);
  }
}

static void on_replayed(int rc, size_t count, const char *errmsg, void *ud) {
  struct admin_ctx *ctx = ud;
  struct tb_http_exchange *ex = ctx->ex;
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "dlq.replay_failed", "%s", errmsg ? errmsg : tb_strerror(rc));
    tb__api_respond_unavailable(ex, rc);
    free(ctx);
    return;
  }
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "dlq.replayed");
  if (ctx->case_id[0]) tb_log_str(l, "case_id", ctx->case_id);
  if (ctx->partner[0]) tb_log_str(l, "partner", ctx->partner);
  tb_log_int(l, "messages", (int64_t)count);
  tb_log_str(l, "via", "api");
  tb_log_end(l);
  if (ctx->api->audit) {
    /* target: the case id, "partner:P", or both joined by a comma */
    char target[112], err[TB_ERRMSG_MAX] = "";
    snprintf(target, sizeof target, "%s%s%s%s", ctx->case_id,
             ctx->case_id[0] && ctx->partner[0] ? "," : "", ctx->partner[0] ? "partner:" : "",
             ctx->partner);
    if (tb_audit_log_dlq_replay(ctx->api->audit, ctx->actor, target, (long long)count, err) != 0)
      tb_audit_note_failure(TB_AUDIT_EV_DLQ_REPLAY, err);
  }
  /* A case's dead letters may belong to any partner: wake them all. */
  if (count > 0) tb__api_kick(ctx->api, ctx->partner[0] ? ctx->partner : NULL);
  json_t *o = json_pack("{s:I}", "replayed", (json_int_t)count);
  if (o) tb__api_respond_json(ex, 200, o, NULL);
  else tb_http_respond_problem(ex, 500, "internal", "Internal error", "out of memory", NULL);
  json_decref(o);
  free(ctx);
}

void tb__api_admin_replay(struct tb_api *api, struct tb_http_exchange *ex,
                          const struct tb_http_request *req) {
  const char *ct = tb_http_request_header(req, "content-type");
  if (ct == NULL || strncasecmp(ct, "application/json", 16) != 0) {
    tb_http_respond_problem(ex, 415, "unsupported-media-type", "Unsupported media type",
                            "send the body as 'Content-Type: application/json'", NULL);
    return;
  }
  json_error_t jerr;
  json_t *doc = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
  if (doc == NULL) {
    char detail[320];
    snprintf(detail, sizeof detail, "invalid JSON at line %d, column %d (byte %d): %s",
             jerr.line, jerr.column, jerr.position, jerr.text);
    tb_http_respond_problem(ex, 400, "malformed-json", "Malformed JSON", detail, NULL);
    return;
  }
  const json_t *cid = json_object_get(doc, "case_id");
  const json_t *pn = json_object_get(doc, "partner");
  size_t known = (cid != NULL) + (pn != NULL);
  const char *cs = json_string_value(cid), *ps = json_string_value(pn);
  const char *why = NULL;
  if (!json_is_object(doc) || known == 0 || json_object_size(doc) != known)
    why = "the body must be {\"case_id\": \"...\"} or {\"partner\": \"...\"} (or both)";
  else if (cid && (cs == NULL || !name_ok(cs, strlen(cs), 64, 1)))
    why = "case_id must be 1-64 characters of [0-9A-Za-z_-]";
  else if (pn && (ps == NULL || !name_ok(ps, strlen(ps), 32, 0)))
    why = "partner must be a partner name ([a-z0-9-]{1,32})";
  if (why) {
    json_decref(doc);
    tb_http_respond_problem(ex, 422, "invalid-request", "Invalid replay request", why, NULL);
    return;
  }
  struct admin_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) {
    json_decref(doc);
    tb__api_respond_unavailable(ex, TB_ENOMEM);
    return;
  }
  ctx->api = api;
  ctx->ex = ex;
  const char *client = tb__api_authenticate(api, req);
  snprintf(ctx->actor, sizeof ctx->actor, "api:%.70s", client ? client : "?");
  if (cs) snprintf(ctx->case_id, sizeof ctx->case_id, "%s", cs);
  if (ps) snprintf(ctx->partner, sizeof ctx->partner, "%s", ps);
  json_decref(doc);
  int rc = tb_store_dlq_replay(api->store, ctx->case_id[0] ? ctx->case_id : NULL,
                               ctx->partner[0] ? ctx->partner : NULL, tb_time_now_ms(),
                               on_replayed, ctx);
  if (rc != 0) {
    free(ctx);
    tb__api_respond_unavailable(ex, rc);
  }
}
