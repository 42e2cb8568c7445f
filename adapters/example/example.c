/*
 * example — a complete, minimal adapter for a toy JSON protocol. It is the
 * adapter docs/adapters.md walks through; copy it to start a new one.
 *
 * The protocol ("example/1"):
 *
 *   Outbound, gateway → partner: POST {endpoint}/example/receive
 *     Content-Type: application/json; charset=UTF-8
 *     X-Example-Signature: base64(signature over the exact body bytes, made
 *                          with the named key settings.keys.sign)
 *     {"id": message id, "type": "CASE_SUBMIT" | "CASE_WITHDRAW" |
 *      "CASE_SUPPLEMENT" | "STATUS_NOTIFY", "sent_at": RFC 3339 (+08:00),
 *      "payload": the canonical body}
 *   The partner answers 200 with {"code": "OK" | "DUP" | "BAD" | "BUSY",
 *   "receipt": string, "message": string}: OK and DUP mean delivered, BAD
 *   is permanent, BUSY and anything unreadable mean "try again later".
 *
 *   Inbound, partner → gateway: POST /partners/{partner}/example/notify,
 *   the same envelope (type STATUS_NOTIFY or CASE_SUBMIT), signed by the
 *   partner with the key named settings.keys.verify. The gateway answers
 *   {"code": "OK" | "DUP" | "STALE" | "REPLAY" | "SIG" | "BAD" | "UNKNOWN" |
 *   "RETRY", "receipt": string|null, "message": string}.
 *
 * Settings (the partner's object in the gateway's config; keys we do not
 * know belong to the gateway and are ignored):
 *   "keys": {"sign": "<key name>", "verify": "<key name>"}   both required
 *
 * The adapter includes only tbgw/adapter.h (and jansson, which it links
 * itself), exports only tbgw_adapter_entry, and keeps no mutable state
 * after init, so every operation may run on any thread at once.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tbgw/adapter.h"

#define EXAMPLE_VERSION "1.0.0"
#define SIG_HEADER "X-Example-Signature"
#define KEY_NAME_MAX 65

/* ---- state ------------------------------------------------------------------ */

/* One per partner, made by init, read-only afterwards. */
struct example {
  const struct tb_host *host;
  char sign_key[KEY_NAME_MAX];   /* our key: signs what we send */
  char verify_key[KEY_NAME_MAX]; /* the partner's key: verifies what it sends */
};

static const struct tb_inbound_route routes[] = {
    {"POST", "/example/notify"},
};

/* Wire names of the four message types. */
static const char *type_name(enum tb_msg_type t) {
  switch (t) {
  case TB_MSG_CASE_SUBMIT: return "CASE_SUBMIT";
  case TB_MSG_CASE_WITHDRAW: return "CASE_WITHDRAW";
  case TB_MSG_CASE_SUPPLEMENT: return "CASE_SUPPLEMENT";
  case TB_MSG_STATUS_NOTIFY: return "STATUS_NOTIFY";
  }
  return NULL;
}

static int type_parse(const char *s, enum tb_msg_type *out) {
  static const enum tb_msg_type all[] = {TB_MSG_CASE_SUBMIT, TB_MSG_CASE_WITHDRAW,
                                         TB_MSG_CASE_SUPPLEMENT, TB_MSG_STATUS_NOTIFY};
  for (size_t i = 0; s != NULL && i < sizeof all / sizeof *all; i++)
    if (strcmp(s, type_name(all[i])) == 0) {
      *out = all[i];
      return 1;
    }
  return 0;
}

/* Writes an error message for the operator and returns code. */
__attribute__((format(printf, 3, 4)))
static int fail(char *err, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, TB_ERRMSG_MAX, fmt, ap);
  va_end(ap);
  return code;
}

/* A copy of text in host memory (the host frees what we hand it). */
static char *host_strdup(const struct tb_host *host, const char *text) {
  size_t n = strlen(text) + 1;
  char *p = host->alloc(n);
  if (p != NULL) memcpy(p, text, n);
  return p;
}

/* ---- init / fini / routes ------------------------------------------------------ */

/* Reads settings.keys.<role> and checks that the host has that key. */
static int read_key(const struct tb_host *host, json_t *keys, const char *role, int need_private,
                    char *out, char *err) {
  const char *name = json_string_value(json_object_get(keys, role));
  char path[32];
  snprintf(path, sizeof path, "keys.%s", role);
  if (name == NULL)
    return fail(err, TB_ECONFIG, "%s: missing (the name of a key in the gateway's \"keys\")",
                path);
  if (strlen(name) >= KEY_NAME_MAX) return fail(err, TB_ECONFIG, "%s: key name too long", path);
  struct tb_host_key_info info;
  char why[TB_ERRMSG_MAX];
  if (host->key_info(host->ctx, name, &info, why) != 0)
    return fail(err, TB_ECONFIG, "%s: no key named \"%s\" in the gateway's keys", path, name);
  if (info.kind == TB_HOST_KEY_CA)
    return fail(err, TB_ECONFIG, "%s: \"%s\" is a CA, not a key (it cannot sign or verify)",
                path, name);
  if (need_private && !info.has_private)
    return fail(err, TB_ECONFIG, "%s: key \"%s\" cannot sign (it has no private key)", path,
                name);
  snprintf(out, KEY_NAME_MAX, "%s", name);
  return 0;
}

static void example_fini(void *state);

static int example_init(const struct tb_host *host, const char *settings_json,
                        size_t settings_len, void **state, char *err) {
  json_error_t jerr;
  json_t *settings = json_loadb(settings_json, settings_len, 0, &jerr);
  if (settings == NULL) return fail(err, TB_ECONFIG, "settings are not JSON: %s", jerr.text);
  struct example *ex = host->alloc(sizeof *ex);
  if (ex == NULL) {
    json_decref(settings);
    return fail(err, TB_ENOMEM, "out of memory");
  }
  memset(ex, 0, sizeof *ex);
  ex->host = host;
  json_t *keys = json_object_get(settings, "keys");
  int rc;
  if (!json_is_object(keys))
    rc = fail(err, TB_ECONFIG,
              "keys: missing (an object {\"sign\": \"<our key>\", \"verify\": \"<partner's "
              "key>\"})");
  else if ((rc = read_key(host, keys, "sign", 1, ex->sign_key, err)) == 0)
    rc = read_key(host, keys, "verify", 0, ex->verify_key, err);
  json_decref(settings);
  if (rc != 0) {
    example_fini(ex);
    return rc;
  }
  *state = ex;
  return 0;
}

static void example_fini(void *state) {
  struct example *ex = state;
  if (ex != NULL) ex->host->free(ex);
}

static const struct tb_inbound_route *example_routes(void *state, size_t *count) {
  (void)state;
  *count = sizeof routes / sizeof *routes;
  return routes;
}

/* ---- outbound ------------------------------------------------------------------- */

static int example_encode(void *state, const struct tb_outbound *msg,
                          struct tb_wire_request *out, char *err) {
  struct example *ex = state;
  const struct tb_host *host = ex->host;
  const char *type = type_name(msg->type);
  if (type == NULL) return fail(err, TB_EINVAL, "unknown message type");

  /* The canonical body becomes the payload, unchanged. */
  json_error_t jerr;
  json_t *payload = json_loadb(msg->body, msg->body_len, 0, &jerr);
  if (payload == NULL) return fail(err, TB_EINVAL, "canonical body is not JSON: %s", jerr.text);
  char sent_at[32];
  if (host->format_rfc3339_beijing(msg->now_ms, sent_at, sizeof sent_at) != 0) {
    json_decref(payload);
    return fail(err, TB_EINVAL, "time out of range");
  }
  json_t *envelope = json_pack("{s:s, s:s, s:s, s:o}", "id", msg->message_id, "type", type,
                               "sent_at", sent_at, "payload", payload);
  char *text = envelope ? json_dumps(envelope, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(envelope);
  if (text == NULL) return fail(err, TB_ENOMEM, "out of memory");
  size_t len = strlen(text);

  /* Sign the exact bytes we send; the algorithm follows from the key. */
  struct tb_bytes sig = {0}, sig64 = {0};
  int rc = host->sign(host->ctx, ex->sign_key, text, len, &sig, err);
  if (rc == 0) rc = host->base64_encode(sig.data, sig.len, &sig64);
  host->free(sig.data);
  if (rc != 0) {
    free(text); /* jansson's memory, not the host's */
    host->free(sig64.data);
    return rc;
  }

  memset(out, 0, sizeof *out);
  char header[1024];
  snprintf(header, sizeof header, "%s: %s\r\n", SIG_HEADER, (const char *)sig64.data);
  host->free(sig64.data);
  out->path = host_strdup(host, "/example/receive");
  out->content_type = host_strdup(host, "application/json; charset=UTF-8");
  out->headers = host_strdup(host, header);
  out->body.data = host->alloc(len);
  if (out->body.data) memcpy(out->body.data, text, len);
  out->body.len = len;
  free(text);
  if (!out->path || !out->content_type || !out->headers || !out->body.data) {
    host->free(out->path);
    host->free(out->content_type);
    host->free(out->headers);
    host->free(out->body.data);
    memset(out, 0, sizeof *out);
    return fail(err, TB_ENOMEM, "out of memory");
  }
  return 0;
}

static const char *header_value(const struct tb_header *h, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (h[i].name != NULL && strcasecmp(h[i].name, name) == 0) return h[i].value;
  return NULL;
}

static void set_text(char *dst, size_t size, const char *src) {
  snprintf(dst, size, "%s", src ? src : "");
}

/* 1 if the body carries a valid signature header by the named key. */
static int signature_ok(const struct example *ex, const struct tb_header *headers, size_t count,
                        const unsigned char *body, size_t len) {
  const struct tb_host *host = ex->host;
  const char *b64 = header_value(headers, count, SIG_HEADER);
  struct tb_bytes sig = {0};
  char why[TB_ERRMSG_MAX];
  if (b64 == NULL || host->base64_decode(b64, strlen(b64), &sig) != 0) return 0;
  int ok = host->verify(host->ctx, ex->verify_key, body, len, sig.data, sig.len, why) == 0;
  host->free(sig.data);
  return ok;
}

static int example_classify(void *state, const struct tb_outbound *msg,
                            const struct tb_wire_response *resp, struct tb_classification *out,
                            char *err) {
  struct example *ex = state;
  (void)msg, (void)err;
  memset(out, 0, sizeof *out);
  out->retry_after_ms = -1;
  if (resp->http_status == 0) { /* no answer at all: connection refused, timeout, TLS */
    out->verdict = TB_VERDICT_RETRY;
    set_text(out->code, sizeof out->code, "transport");
    set_text(out->text, sizeof out->text, resp->transport_error);
    return 0;
  }
  const char *ra = header_value(resp->headers, resp->header_count, "Retry-After");
  out->retry_after_ms = ex->host->retry_after_ms(ra);
  out->signature_valid =
      signature_ok(ex, resp->headers, resp->header_count, resp->body, resp->body_len);
  if (resp->http_status != 200) {
    /* 429 and 5xx are temporary; any other status means the request itself is wrong. */
    int temporary = resp->http_status == 429 || resp->http_status >= 500;
    out->verdict = temporary ? TB_VERDICT_RETRY : TB_VERDICT_PERMANENT;
    snprintf(out->code, sizeof out->code, "HTTP %d", resp->http_status);
    set_text(out->text, sizeof out->text, temporary ? "partner busy or failing" : "refused");
    return 0;
  }
  json_t *answer = json_loadb((const char *)resp->body, resp->body_len, 0, NULL);
  const char *code = json_string_value(json_object_get(answer, "code"));
  set_text(out->code, sizeof out->code, code ? code : "unreadable");
  set_text(out->text, sizeof out->text, json_string_value(json_object_get(answer, "message")));
  set_text(out->receipt_no, sizeof out->receipt_no,
           json_string_value(json_object_get(answer, "receipt")));
  if (code != NULL && strcmp(code, "OK") == 0)
    out->verdict = TB_VERDICT_SUCCESS;
  else if (code != NULL && strcmp(code, "DUP") == 0)
    out->verdict = TB_VERDICT_DUPLICATE;
  else if (code != NULL && strcmp(code, "BAD") == 0)
    out->verdict = TB_VERDICT_PERMANENT;
  else /* BUSY, an unknown code, or not our JSON at all: never lose the message */
    out->verdict = TB_VERDICT_RETRY;
  if (code == NULL) set_text(out->text, sizeof out->text, "answer is not {\"code\": ...}");
  json_decref(answer);
  return 0;
}

/* ---- inbound -------------------------------------------------------------------- */

static int refuse(struct tb_inbound_message *out, const char *code, const char *text) {
  out->kind = TB_INBOUND_REFUSED;
  set_text(out->refuse_code, sizeof out->refuse_code, code);
  set_text(out->refuse_text, sizeof out->refuse_text, text);
  return 0;
}

static int example_decode(void *state, const struct tb_inbound_request *req,
                          struct tb_inbound_message *out, char *err) {
  struct example *ex = state;
  const struct tb_host *host = ex->host;
  memset(out, 0, sizeof *out);
  if (!signature_ok(ex, req->headers, req->header_count, req->body, req->body_len))
    return refuse(out, "SIG", "missing or invalid " SIG_HEADER);
  json_t *env = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, NULL);
  const char *id = json_string_value(json_object_get(env, "id"));
  const char *type = json_string_value(json_object_get(env, "type"));
  const char *sent_at = json_string_value(json_object_get(env, "sent_at"));
  json_t *payload = json_object_get(env, "payload");
  const char *case_id = json_string_value(json_object_get(payload, "case_id"));
  const char *receipt = json_string_value(json_object_get(payload, "receipt_no"));
  if (id == NULL || sent_at == NULL || !json_is_object(payload) || case_id == NULL ||
      strlen(id) >= sizeof out->message_id || strlen(case_id) >= sizeof out->case_id ||
      !type_parse(type, &out->type) ||
      host->parse_rfc3339(sent_at, strlen(sent_at), &out->sent_ms) != 0) {
    json_decref(env);
    return refuse(out, "BAD", "not an example/1 envelope with id, type, sent_at, payload.case_id");
  }
  out->kind = out->type == TB_MSG_STATUS_NOTIFY ? TB_INBOUND_STATUS
              : out->type == TB_MSG_CASE_SUBMIT ? TB_INBOUND_CASE
                                                : TB_INBOUND_OTHER;
  set_text(out->message_id, sizeof out->message_id, id);
  set_text(out->case_id, sizeof out->case_id, case_id);
  set_text(out->receipt_no, sizeof out->receipt_no, receipt);
  /* The payload is already canonical in this protocol: hand it on as text. */
  char *text = json_dumps(payload, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(env);
  if (text == NULL) return fail(err, TB_ENOMEM, "out of memory");
  size_t len = strlen(text);
  out->canonical.data = host->alloc(len + 1);
  if (out->canonical.data == NULL) {
    free(text);
    return fail(err, TB_ENOMEM, "out of memory");
  }
  memcpy(out->canonical.data, text, len + 1);
  out->canonical.len = len;
  free(text);
  return 0;
}

static int example_answer(void *state, const struct tb_inbound_request *req,
                          const struct tb_inbound_message *msg, enum tb_inbound_outcome outcome,
                          const char *receipt_no, struct tb_wire_answer *out, char *err) {
  struct example *ex = state;
  const struct tb_host *host = ex->host;
  (void)req;
  int status = 200;
  const char *code = "OK", *text = "accepted";
  switch (outcome) {
  case TB_INBOUND_ACCEPTED: break;
  case TB_INBOUND_DUPLICATE: code = "DUP", text = "already received"; break;
  case TB_INBOUND_STALE: status = 400, code = "STALE", text = "sent_at outside the window"; break;
  case TB_INBOUND_NONCE_REUSED: status = 400, code = "REPLAY", text = "replayed"; break;
  case TB_INBOUND_REFUSE: status = 400, code = msg->refuse_code, text = msg->refuse_text; break;
  case TB_INBOUND_UNKNOWN_CASE: status = 404, code = "UNKNOWN", text = "no such case"; break;
  case TB_INBOUND_FAILED: status = 503, code = "RETRY", text = "try again later"; break;
  }
  json_t *o = json_pack("{s:s, s:s?, s:s}", "code", code, "receipt", receipt_no, "message", text);
  char *body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  if (body == NULL) return fail(err, TB_ENOMEM, "out of memory");
  memset(out, 0, sizeof *out);
  out->http_status = status;
  out->content_type = host_strdup(host, "application/json; charset=UTF-8");
  out->body.len = strlen(body);
  out->body.data = host->alloc(out->body.len);
  if (out->body.data) memcpy(out->body.data, body, out->body.len);
  free(body);
  if (out->content_type == NULL || out->body.data == NULL) {
    host->free(out->content_type);
    host->free(out->body.data);
    memset(out, 0, sizeof *out);
    return fail(err, TB_ENOMEM, "out of memory");
  }
  return 0;
}

static void example_release(void *state, struct tb_inbound_message *msg) {
  (void)state;
  msg->adapter_data = NULL; /* this adapter keeps nothing per message */
}

/* ---- the one export ------------------------------------------------------------- */

static const struct tb_adapter example_adapter = {
    .abi_major = TB_ADAPTER_ABI_MAJOR,
    .abi_minor = TB_ADAPTER_ABI_MINOR,
    .name = "example",
    .version = EXAMPLE_VERSION,
    .init = example_init,
    .fini = example_fini,
    .routes = example_routes,
    .encode = example_encode,
    .classify = example_classify,
    .decode = example_decode,
    .answer = example_answer,
    .release = example_release,
};

TB_ADAPTER_EXPORT const struct tb_adapter *tbgw_adapter_entry(void) { return &example_adapter; }
