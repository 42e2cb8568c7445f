/*
 * The delivery engine (see engine.h and docs/delivery.md): per partner a
 * claim loop driven by one timer, per message the chain claim → encode
 * (worker) → POST (loop) → classify (worker) → finish (store), and an
 * orderly stop that lets in-flight transfers finish before closing.
 *
 * Invariants worth keeping in mind when changing this file:
 *  - a message is in d->msgs from its claim until its finish has been
 *    answered by the store; p->in_flight counts exactly those of p;
 *  - every path of a message ends in finish() exactly once, and finish()
 *    ends in msg_done() exactly once (even when the store refuses);
 *  - d->ops_out counts store claims/recover and connection probes whose
 *    callback has not run yet: the engine is freed only when both counts
 *    are 0 and the transport has closed.
 */
#include "delivery/engine.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit/audit.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/timefmt.h"
#include "delivery/backoff.h"
#include "delivery/circuit.h"
#include "plugin/registry.h"
#include "tbgw/error.h"

/* ---- types --------------------------------------------------------------- */

struct engine_metrics {
  struct tb_metric *delivered; /* tbgw_cases_delivered_total{partner} */
  struct tb_metric *failed;    /* tbgw_cases_failed_total{partner} */
  struct tb_metric *attempts;  /* tbgw_delivery_attempts_total{partner,outcome} */
  struct tb_metric *retries;   /* tbgw_delivery_retries_total{partner,reason} */
  struct tb_metric *latency;   /* tbgw_delivery_latency_seconds{partner} */
  struct tb_metric *circuit;   /* tbgw_circuit_state{partner} */
  struct tb_metric *requests;  /* tbgw_partner_requests_total{partner} */
  struct tb_metric *conns;     /* tbgw_partner_connections_opened_total{partner} */
};

struct tb_delivery;

struct dpartner {
  struct tb_delivery *d;
  struct tb_delivery_partner in;
  const char *name;
  uint32_t max_in_flight;
  uint32_t max_attempts;
  void *pool;
  struct tb_circuit circuit;
  struct tb_backoff_policy backoff;
  uv_timer_t timer;
  int64_t timer_at;  /* wall-clock ms the timer is armed for; 0: not armed */
  size_t in_flight;  /* claimed, not yet finished */
  int claiming;      /* a claim is at the store */
  int claim_probe;   /* ... and it is the half-open circuit's probe (max 1) */
  int claim_again;   /* something asked for a claim meanwhile */
  int need_probe;    /* check reachability (connection probe) before claiming */
  int probing;       /* a connection probe is out */
  int unreachable;   /* the last connection probe failed (for the log) */
  uint64_t seen_requests, seen_conns;
};

struct dmsg {
  struct dmsg *prev, *next;
  struct dpartner *p;
  int64_t outbox_id;
  enum tb_msg_type type;
  int inbound;
  uint32_t attempts;
  int64_t created_ms;
  char *case_id, *message_id, *origin, *target, *receipt;
  char *body;
  size_t body_len;
  char *fresh_body;  /* body with the receipt injected (jansson memory), or NULL */
  int is_probe;      /* the half-open circuit's probe message */
  int64_t start_ms;  /* encode time: the attempt's start */

  /* encode (worker) */
  struct tb_outbound ob;
  struct tb_wire_request req;
  int enc_rc;
  char err[TB_ERRMSG_MAX];

  /* the answer, copied from the transport's callback */
  int answered;        /* a complete HTTP answer arrived */
  int http_status;
  int transport_error;
  char terr[256];
  unsigned char *resp_body;
  size_t resp_len;
  struct tb_header *hdrs;
  size_t nhdrs;
  char *hdr_blob;
  char content_type[128];
  char *evidence;      /* the answer as an HTTP message (message/http), for the store */
  size_t evidence_len;
  uint64_t duration_ns;

  /* classify (worker) */
  struct tb_classification cls;
  int cls_rc;

  /* what finish recorded, for the log line after the commit */
  enum tb_store_verdict verdict;
  const char *outcome;  /* static string */
  const char *reason;   /* retry reason label, static; NULL if not a retry */
  int64_t next_at;
  char code[32];
  char text[TB_ERRMSG_MAX];
  char receipt_out[TB_STORE_RECEIPT_MAX];
};

struct tb_delivery {
  uv_loop_t *loop;
  struct tb_store *store;
  char node_region[8];
  struct dpartner *parts;
  size_t nparts;
  struct tb_delivery_transport tr;
  struct tb_workers *workers;
  int own_workers;
  struct tb_audit *audit;  /* borrowed; NULL: no audit trail */
  int64_t poll_ms, fresh_ms, grace_ms;
  uint64_t rng;
  struct engine_metrics m;

  struct dmsg *msgs;
  size_t in_flight;
  size_t ops_out;
  int recovered;
  int stopping, cancelling, transport_closing, transport_closed, finalizing;
  uv_timer_t grace;
  int handles_open;
  void (*on_stopped)(void *ud);
  void *stopped_ud;
};

static void claim(struct dpartner *p);
static void schedule(struct dpartner *p, int64_t at_ms);
static void maybe_done(struct tb_delivery *d);

/* ---- small helpers ----------------------------------------------------------- */

static int64_t now_ms(void) { return tb_time_now_ms(); }

/* xorshift64*: jitter only, never security. */
static double rand01(struct tb_delivery *d) {
  uint64_t x = d->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  d->rng = x;
  return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) * (1.0 / 9007199254740992.0);
}

static const char *type_name(enum tb_msg_type t) {
  const char *s = tb_store_msg_type_name(t);
  return s ? s : "UNKNOWN";
}

/* Copies src (NULL: "") into dst, cut to fit. */
static void set_text(char *dst, size_t size, const char *src) {
  size_t n = src ? strlen(src) : 0;
  if (n >= size) {
    n = size - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--; /* whole UTF-8 characters */
  }
  if (n) memcpy(dst, src, n);
  dst[n] = '\0';
}

static struct tb_log_line *msg_log(enum tb_log_level lv, const char *event, const struct dmsg *m) {
  struct tb_log_line *l = tb_log_begin(lv, event);
  tb_log_str(l, "case_id", m->case_id);
  tb_log_str(l, "partner", m->p->name);
  tb_log_str(l, "message_id", m->message_id);
  tb_log_str(l, "msg_type", type_name(m->type));
  tb_log_int(l, "attempt", m->attempts);
  return l;
}

static void circuit_metric(struct dpartner *p) {
  tb_metric_set(p->d->m.circuit, p->name, NULL, (double)p->circuit.state);
}

static void client_metrics(struct dpartner *p) {
  struct tb_delivery *d = p->d;
  /* Pools are freed with the transport: no stats once it is closing. */
  if (p->pool == NULL || d->tr.stats == NULL || d->transport_closing) return;
  struct tb_client_stats s;
  memset(&s, 0, sizeof s);
  d->tr.stats(p->pool, &s);
  if (s.requests > p->seen_requests)
    tb_metric_add(d->m.requests, p->name, NULL, (double)(s.requests - p->seen_requests));
  if (s.connections_opened > p->seen_conns)
    tb_metric_add(d->m.conns, p->name, NULL, (double)(s.connections_opened - p->seen_conns));
  p->seen_requests = s.requests;
  p->seen_conns = s.connections_opened;
}

static void log_circuit_open(struct dpartner *p, const char *why) {
  struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "delivery.circuit_open");
  tb_log_str(l, "partner", p->name);
  tb_log_str(l, "reason", why);
  tb_log_int(l, "open_ms", p->circuit.open_ms);
  tb_log_int(l, "failures", p->circuit.failures);
  tb_log_end(l);
}

static void log_circuit_closed(struct dpartner *p, const char *why) {
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "delivery.circuit_closed");
  tb_log_str(l, "partner", p->name);
  tb_log_str(l, "reason", why);
  tb_log_end(l);
}

/* ---- messages -------------------------------------------------------------- */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static void msg_free(struct dmsg *m) {
  const struct tb_host *h = m->p->in.host;
  if (h != NULL) {
    h->free(m->req.path);
    h->free(m->req.content_type);
    h->free(m->req.headers);
    h->free(m->req.body.data);
  }
  free(m->fresh_body);
  free(m->case_id);
  free(m->message_id);
  free(m->origin);
  free(m->target);
  free(m->receipt);
  free(m->body);
  free(m->resp_body);
  free(m->hdrs);
  free(m->hdr_blob);
  free(m->evidence);
  free(m);
}

static void free_request(struct dmsg *m) {
  const struct tb_host *h = m->p->in.host;
  if (h != NULL) {
    h->free(m->req.path);
    h->free(m->req.content_type);
    h->free(m->req.headers);
    h->free(m->req.body.data);
  }
  memset(&m->req, 0, sizeof m->req);
}

static struct dmsg *msg_new(struct dpartner *p, const struct tb_store_claimed *c) {
  struct dmsg *m = calloc(1, sizeof *m);
  if (m == NULL) return NULL;
  m->p = p;
  m->outbox_id = c->outbox_id;
  m->type = c->msg_type;
  m->inbound = c->inbound;
  m->attempts = c->attempts;
  m->created_ms = c->created_ms;
  m->case_id = dup_or_null(c->case_id);
  m->message_id = dup_or_null(c->message_id);
  m->origin = dup_or_null(c->origin_region);
  m->target = dup_or_null(c->target_region);
  m->receipt = dup_or_null(c->receipt_no);
  m->body = malloc(c->body_len + 1);
  if (m->body) {
    memcpy(m->body, c->body, c->body_len);
    m->body[c->body_len] = '\0';
  }
  m->body_len = c->body_len;
  if (!m->case_id || !m->message_id || !m->body || (c->origin_region && !m->origin) ||
      (c->target_region && !m->target) || (c->receipt_no && !m->receipt)) {
    msg_free(m);
    return NULL;
  }
  return m;
}

static void msg_link(struct tb_delivery *d, struct dmsg *m) {
  m->next = d->msgs;
  if (d->msgs) d->msgs->prev = m;
  d->msgs = m;
  d->in_flight++;
  m->p->in_flight++;
}

/* The end of a message's life in the engine. */
static void msg_done(struct dmsg *m) {
  struct dpartner *p = m->p;
  struct tb_delivery *d = p->d;
  if (m->prev) m->prev->next = m->next;
  else d->msgs = m->next;
  if (m->next) m->next->prev = m->prev;
  d->in_flight--;
  p->in_flight--;
  /* A probe message that ended without telling anything about the partner
   * (encode error, store refusal) gives its reservation back. */
  if (m->is_probe && p->circuit.state == TB_CIRCUIT_HALF_OPEN) tb_circuit_release(&p->circuit);
  msg_free(m);
  client_metrics(p);
  if (d->stopping) maybe_done(d);
  else schedule(p, now_ms());
}

/* ---- finishing an attempt ---------------------------------------------------- */

static void on_finished(int rc, int64_t seq, const char *errmsg, void *ud) {
  struct dmsg *m = ud;
  struct dpartner *p = m->p;
  struct tb_delivery *d = p->d;
  (void)seq;
  if (rc != 0) {
    /* The message stays 'sending' in the store: the next start's recover
     * puts it back to 'queued' (same id). */
    struct tb_log_line *l = msg_log(TB_LOG_ERROR, "delivery.finish_failed", m);
    tb_log_str(l, "outcome", m->outcome);
    tb_log_str(l, "error", errmsg ? errmsg : tb_strerror(rc));
    tb_log_str(l, "action", "the message is resent after a restart; check the store's disk");
    tb_log_end(l);
    msg_done(m);
    return;
  }
  int64_t now = now_ms();
  tb_metric_add(d->m.attempts, p->name, m->outcome, 1);
  struct tb_log_line *l = NULL;
  switch (m->verdict) {
  case TB_STORE_DELIVERED:
    if (m->type == TB_MSG_CASE_SUBMIT) {
      tb_metric_add(d->m.delivered, p->name, NULL, 1);
      tb_metric_observe(d->m.latency, p->name, (double)(now - m->created_ms) / 1000.0);
    }
    l = msg_log(TB_LOG_INFO, "delivery.delivered", m);
    tb_log_str(l, "outcome", m->outcome);
    tb_log_str(l, "code", m->code);
    if (m->receipt_out[0]) tb_log_str(l, "receipt_no", m->receipt_out);
    tb_log_int(l, "duration_ms", (int64_t)(m->duration_ns / 1000000u));
    tb_log_int(l, "latency_ms", now - m->created_ms);
    break;
  case TB_STORE_RETRY:
    tb_metric_add(d->m.retries, p->name, m->reason ? m->reason : "other", 1);
    l = msg_log(TB_LOG_WARN, "delivery.retry", m);
    tb_log_str(l, "outcome", m->outcome);
    tb_log_str(l, "reason", m->reason);
    if (m->code[0]) tb_log_str(l, "code", m->code);
    tb_log_str(l, "text", m->text);
    if (m->http_status) tb_log_int(l, "http_status", m->http_status);
    tb_log_int(l, "duration_ms", (int64_t)(m->duration_ns / 1000000u));
    tb_log_int(l, "next_attempt_in_ms", m->next_at > now ? m->next_at - now : 0);
    break;
  case TB_STORE_FAILED:
    if (m->type == TB_MSG_CASE_SUBMIT) tb_metric_add(d->m.failed, p->name, NULL, 1);
    l = msg_log(TB_LOG_ERROR, "delivery.failed", m);
    tb_log_str(l, "outcome", m->outcome);
    if (m->code[0]) tb_log_str(l, "code", m->code);
    tb_log_str(l, "text", m->text);
    tb_log_str(l, "action", "a dead letter: fix the cause, then 'tbgw dlq replay'");
    break;
  }
  tb_log_end(l);
  msg_done(m);
}

/* ack.received: the answer, its signature check and what the engine decided,
 * appended just before the store records the attempt, so the commit that
 * makes the outcome durable flushes it too. */
static void audit_ack(const struct dmsg *m) {
  struct tb_delivery *d = m->p->d;
  if (d->audit == NULL || !m->answered) return;
  int ok = m->cls.signature_valid;
  int classified = strcmp(m->outcome, "cancelled") != 0;
  const char *verdict = m->verdict == TB_STORE_DELIVERED ? "delivered"
                        : m->verdict == TB_STORE_RETRY   ? "retry"
                                                         : "failed";
  json_t *o = json_pack("{s:b, s:s, s:s, s:i, s:I}", "signature_valid", ok && classified,
                        "verdict", verdict, "outcome", m->outcome, "http_status", m->http_status,
                        "attempt", (json_int_t)m->attempts);
  if (o && !(ok && classified))
    json_object_set_new(o, "reason", json_string(classified
                                                     ? "the answer's signature is missing or invalid"
                                                     : "not verified: the gateway stopped first"));
  json_t *code = o && m->code[0] ? json_string(m->code) : NULL; /* NULL if not UTF-8 */
  if (code) json_object_set_new(o, "code", code);
  char *detail = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  json_decref(o);
  char actor[48], err[TB_ERRMSG_MAX] = "out of memory";
  snprintf(actor, sizeof actor, "partner:%s", m->p->name);
  struct tb_audit_event ev = {.event = TB_AUDIT_EV_ACK_RECEIVED, .actor = actor,
                              .case_id = m->case_id, .partner = m->p->name,
                              .message_id = m->message_id,
                              .outcome = ok && classified ? "ok" : "signature_invalid",
                              .detail_json = detail};
  if (detail == NULL || tb_audit_append(d->audit, &ev, err) != 0)
    tb_audit_note_failure(TB_AUDIT_EV_ACK_RECEIVED, err);
  free(detail);
}

/* Records the attempt. text/code are copied. */
static void finish(struct dmsg *m, enum tb_store_verdict verdict, const char *outcome,
                   const char *reason, int64_t next_at, const char *code, const char *text,
                   const char *receipt) {
  struct tb_delivery *d = m->p->d;
  int64_t now = now_ms();
  m->verdict = verdict;
  m->outcome = outcome;
  m->reason = reason;
  m->next_at = next_at;
  set_text(m->code, sizeof m->code, code);
  set_text(m->text, sizeof m->text, text);
  set_text(m->receipt_out, sizeof m->receipt_out, receipt);
  struct tb_store_delivery_result r = {
      .outbox_id = m->outbox_id,
      .verdict = verdict,
      .next_attempt_ms = next_at,
      .reason = verdict == TB_STORE_RETRY ? m->text : NULL,
      .code = m->code[0] ? m->code : NULL,
      .text = m->text[0] ? m->text : NULL,
      .receipt_no = m->receipt_out[0] ? m->receipt_out : NULL,
      .ack = m->answered ? (const unsigned char *)m->evidence : NULL,
      .ack_len = m->answered ? m->evidence_len : 0,
      .ack_content_type = m->answered ? "message/http" : NULL,
      .ack_verified = m->answered && m->cls.signature_valid,
      .ack_verify_detail = m->answered ? (m->cls.signature_valid
                                              ? "the answer's signature verified"
                                              : "the answer's signature is missing or invalid")
                                       : NULL,
      .duration_ms = m->start_ms ? now - m->start_ms : 0,
      .now_ms = now,
  };
  audit_ack(m);
  int rc = tb_store_outbox_finish(d->store, &r, on_finished, m);
  if (rc != 0) on_finished(rc, 0, "the store refused to record the attempt", m);
}

/* A retry verdict, or a dead letter when the attempts are used up. */
static void finish_retry(struct dmsg *m, const char *outcome, const char *reason, int64_t delay,
                         const char *code, const char *text) {
  struct dpartner *p = m->p;
  if (m->attempts >= p->max_attempts) {
    char why[TB_ERRMSG_MAX];
    snprintf(why, sizeof why, "retries exhausted after %u attempts: %s%s%.300s", m->attempts,
             code && *code ? code : "", code && *code ? " " : "", text ? text : "");
    finish(m, TB_STORE_FAILED, "exhausted", NULL, 0, code, why, NULL);
    return;
  }
  finish(m, TB_STORE_RETRY, outcome, reason, now_ms() + (delay > 0 ? delay : 0), code, text,
         NULL);
}

/* Shutdown: an attempt that did not happen (or whose answer we lost) goes
 * back to the queue, due at once; it does not dead-letter a message. */
static void finish_parked(struct dmsg *m, const char *why) {
  finish(m, TB_STORE_RETRY, "cancelled", "cancelled", now_ms(), "cancelled", why, NULL);
}

/* ---- classify ------------------------------------------------------------------ */

static void work_classify(void *ud) {
  struct dmsg *m = ud;
  struct dpartner *p = m->p;
  struct tb_wire_response resp = {
      .http_status = m->http_status,
      .headers = m->hdrs,
      .header_count = m->nhdrs,
      .body = m->resp_body ? m->resp_body : (const unsigned char *)"",
      .body_len = m->resp_len,
      .transport_error = m->transport_error ? m->terr : NULL,
  };
  memset(&m->cls, 0, sizeof m->cls);
  m->cls.retry_after_ms = -1;
  m->err[0] = '\0';
  m->cls_rc = p->in.ops->classify(p->in.state, &m->ob, &resp, &m->cls, m->err);
}

static const char *retry_reason(const struct dmsg *m) {
  if (m->transport_error) return "transport";
  if (m->http_status != 200) return "http";
  return "partner";
}

static void done_classify(void *ud, int cancelled) {
  struct dmsg *m = ud;
  struct dpartner *p = m->p;
  struct tb_delivery *d = p->d;
  int64_t now = now_ms();
  if (cancelled) {
    finish_parked(m, "the answer could not be classified: gateway stopping");
    return;
  }
  if (m->cls_rc != 0) {
    /* classify must not fail; if an adapter does, never lose the message. */
    m->cls.verdict = TB_VERDICT_RETRY;
    set_text(m->cls.code, sizeof m->cls.code, "classify");
    set_text(m->cls.text, sizeof m->cls.text, m->err);
  }
  m->cls.code[sizeof m->cls.code - 1] = '\0';
  m->cls.text[sizeof m->cls.text - 1] = '\0';
  m->cls.receipt_no[sizeof m->cls.receipt_no - 1] = '\0';
  enum tb_circuit_state before = p->circuit.state;
  switch (m->cls.verdict) {
  case TB_VERDICT_SUCCESS:
  case TB_VERDICT_DUPLICATE:
    tb_circuit_success(&p->circuit);
    if (before != TB_CIRCUIT_CLOSED) log_circuit_closed(p, "a message was delivered");
    circuit_metric(p);
    finish(m, TB_STORE_DELIVERED,
           m->cls.verdict == TB_VERDICT_SUCCESS ? "delivered" : "duplicate", NULL, 0,
           m->cls.code, m->cls.text, m->cls.receipt_no);
    return;
  case TB_VERDICT_PERMANENT:
    /* A refusal of this message says nothing bad about the partner's
     * health; as the probe it proves the partner answers. */
    if (m->is_probe) {
      tb_circuit_success(&p->circuit);
      if (before != TB_CIRCUIT_CLOSED) log_circuit_closed(p, "the partner answered the probe");
      circuit_metric(p);
    }
    finish(m, TB_STORE_FAILED, "permanent", NULL, 0, m->cls.code, m->cls.text, NULL);
    return;
  case TB_VERDICT_RETRY_FRESH: {
    if (m->is_probe) {
      tb_circuit_success(&p->circuit);
      if (before != TB_CIRCUIT_CLOSED) log_circuit_closed(p, "the partner answered the probe");
      circuit_metric(p);
    }
    int64_t delay = d->fresh_ms + (int64_t)((double)d->fresh_ms * rand01(d));
    finish_retry(m, "retry_fresh", "fresh", delay, m->cls.code, m->cls.text);
    return;
  }
  case TB_VERDICT_RETRY:
  default: {
    int health = m->transport_error != TB_CLIENT_ELOCAL && m->cls_rc == 0;
    if (health && tb_circuit_failure(&p->circuit, now)) {
      p->need_probe = 1;
      if (before == TB_CIRCUIT_CLOSED) log_circuit_open(p, m->cls.code);
      else {
        struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "delivery.probe_failed");
        tb_log_str(l, "partner", p->name);
        tb_log_str(l, "message_id", m->message_id);
        tb_log_str(l, "code", m->cls.code);
        tb_log_int(l, "open_ms", p->circuit.open_ms);
        tb_log_end(l);
      }
    }
    circuit_metric(p);
    int64_t delay =
        tb_backoff_delay_ms(&p->backoff, m->attempts, m->cls.retry_after_ms, rand01(d));
    finish_retry(m, "retry", m->cls_rc ? "classify" : retry_reason(m), delay, m->cls.code,
                 m->cls.text);
    return;
  }
  }
}

/* ---- POST ---------------------------------------------------------------------- */

static void copy_answer(struct dmsg *m, const struct tb_client_result *res) {
  m->http_status = res->http_status;
  m->transport_error = res->transport_error;
  m->duration_ns = res->duration_ns;
  m->answered = res->transport_error == 0 && res->http_status != 0;
  if (res->transport_error)
    snprintf(m->terr, sizeof m->terr, "%s: %.200s", tb_client_error_name(res->transport_error),
             res->error_text ? res->error_text : "");
  m->resp_body = malloc(res->body_len + 1);
  if (m->resp_body) {
    if (res->body_len) memcpy(m->resp_body, res->body, res->body_len);
    m->resp_body[res->body_len] = '\0';
    m->resp_len = res->body_len;
  } else {
    m->answered = 0; /* out of memory: classify sees no body; the verdict will be a retry */
  }
  size_t blob = 0;
  for (size_t i = 0; i < res->header_count; i++)
    blob += res->headers[i].name_len + res->headers[i].value_len + 2;
  if (res->header_count) {
    m->hdrs = calloc(res->header_count, sizeof *m->hdrs);
    m->hdr_blob = malloc(blob ? blob : 1);
    if (m->hdrs && m->hdr_blob) {
      char *w = m->hdr_blob;
      for (size_t i = 0; i < res->header_count; i++) {
        const struct tb_client_header *h = &res->headers[i];
        memcpy(w, h->name, h->name_len);
        w[h->name_len] = '\0';
        m->hdrs[i].name = w;
        w += h->name_len + 1;
        memcpy(w, h->value, h->value_len);
        w[h->value_len] = '\0';
        m->hdrs[i].value = w;
        w += h->value_len + 1;
        if (strcasecmp(h->name, "content-type") == 0)
          set_text(m->content_type, sizeof m->content_type, h->value);
      }
      m->nhdrs = res->header_count;
    }
  }
}

/* The evidence of an answer is the whole HTTP response: a partner may sign
 * in headers (yue-json's X-GD-Signature over its body), so the body alone
 * would not prove anything. Status line, the final headers as received, an
 * empty line, the body bytes: media type message/http (RFC 9112). */
static void build_evidence(struct dmsg *m) {
  size_t size = 32 + m->resp_len;
  for (size_t i = 0; i < m->nhdrs; i++)
    size += strlen(m->hdrs[i].name) + strlen(m->hdrs[i].value) + 4;
  m->evidence = malloc(size);
  if (m->evidence == NULL) {
    m->answered = 0; /* no evidence without memory; the verdict still counts */
    return;
  }
  size_t n = (size_t)snprintf(m->evidence, size, "HTTP/1.1 %d\r\n", m->http_status);
  for (size_t i = 0; i < m->nhdrs; i++)
    n += (size_t)snprintf(m->evidence + n, size - n, "%s: %s\r\n", m->hdrs[i].name,
                          m->hdrs[i].value);
  memcpy(m->evidence + n, "\r\n", 2);
  n += 2;
  if (m->resp_len) memcpy(m->evidence + n, m->resp_body, m->resp_len);
  m->evidence_len = n + m->resp_len;
}

static void on_response(const struct tb_client_result *res, void *ud) {
  struct dmsg *m = ud;
  struct tb_delivery *d = m->p->d;
  copy_answer(m, res);
  if (m->answered) build_evidence(m);
  if (res->transport_error == TB_CLIENT_ECANCELLED) {
    finish_parked(m, res->request_sent ? "cancelled at shutdown after the request was sent"
                                       : "cancelled at shutdown before the request was sent");
    return;
  }
  if (tb_workers_submit(d->workers, work_classify, done_classify, m) != 0) {
    /* Out of memory or closing: record a retry without classifying. */
    m->answered = 0;
    finish_parked(m, "the answer could not be classified (worker pool unavailable)");
  }
}

/* ---- encode -------------------------------------------------------------------- */

/* Withdraw, supplement and status notify payloads carry the receipt number;
 * it may not have been known when the message was queued (a withdraw queued
 * behind its submit), so the one known at claim time is filled in. */
static void inject_receipt(struct dmsg *m) {
  if (m->type == TB_MSG_CASE_SUBMIT || m->receipt == NULL || m->receipt[0] == '\0') return;
  json_t *doc = json_loadb(m->body, m->body_len, 0, NULL);
  if (!json_is_object(doc)) {
    json_decref(doc);
    return;
  }
  const char *have = json_string_value(json_object_get(doc, "receipt_no"));
  if (have == NULL || have[0] == '\0') {
    json_object_set_new(doc, "receipt_no", json_string(m->receipt));
    m->fresh_body = json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
  }
  json_decref(doc);
}

static void work_encode(void *ud) {
  struct dmsg *m = ud;
  struct dpartner *p = m->p;
  struct tb_delivery *d = p->d;
  free(m->fresh_body);
  m->fresh_body = NULL;
  inject_receipt(m);
  m->ob.type = m->type;
  m->ob.message_id = m->message_id;
  m->ob.case_id = m->case_id;
  if (m->inbound) {
    m->ob.sender_region = d->node_region;
    m->ob.receiver_region = m->origin ? m->origin : "";
  } else {
    m->ob.sender_region = m->origin ? m->origin : d->node_region;
    m->ob.receiver_region = m->target ? m->target : "";
  }
  m->ob.body = m->fresh_body ? m->fresh_body : m->body;
  m->ob.body_len = strlen(m->ob.body);
  m->ob.attempt = m->attempts;
  m->ob.now_ms = now_ms();
  memset(&m->req, 0, sizeof m->req);
  m->err[0] = '\0';
  m->enc_rc = p->in.ops->encode(p->in.state, &m->ob, &m->req, m->err);
}

static void done_encode(void *ud, int cancelled) {
  struct dmsg *m = ud;
  struct dpartner *p = m->p;
  struct tb_delivery *d = p->d;
  if (cancelled) {
    finish_parked(m, "not sent: gateway stopping");
    return;
  }
  if (m->enc_rc == TB_EVALIDATE) {
    free_request(m);
    finish(m, TB_STORE_FAILED, "invalid", NULL, 0, "encode", m->err[0] ? m->err : "the adapter "
           "cannot express this message in the partner's protocol", NULL);
    return;
  }
  if (m->enc_rc != 0) {
    free_request(m);
    char text[TB_ERRMSG_MAX];
    snprintf(text, sizeof text, "encode failed: %.400s", m->err[0] ? m->err : tb_strerror(m->enc_rc));
    finish_retry(m, "encode_error", "encode",
                 tb_backoff_delay_ms(&p->backoff, m->attempts, -1, rand01(d)), "encode", text);
    return;
  }
  if (d->cancelling) {
    free_request(m);
    finish_parked(m, "not sent: gateway stopping");
    return;
  }
  char err[TB_ERRMSG_MAX] = "";
  int rc = d->tr.post(p->pool, m->req.path ? m->req.path : "/",
                      m->req.content_type ? m->req.content_type : "application/octet-stream",
                      m->req.headers, m->req.body.data, m->req.body.len, on_response, m, err);
  free_request(m);
  if (rc == TB_ECLOSED) {
    finish_parked(m, "not sent: gateway stopping");
    return;
  }
  if (rc != 0) {
    char text[TB_ERRMSG_MAX];
    snprintf(text, sizeof text, "could not send: %.400s", err[0] ? err : tb_strerror(rc));
    finish_retry(m, "error", "local",
                 tb_backoff_delay_ms(&p->backoff, m->attempts, -1, rand01(d)), "local", text);
    return;
  }
  struct tb_log_line *l = msg_log(TB_LOG_INFO, "delivery.sent", m);
  if (m->is_probe) tb_log_str(l, "circuit", "probe");
  tb_log_end(l);
  if (d->audit) {
    char aerr[TB_ERRMSG_MAX] = "";
    if (tb_audit_log_message_sent(d->audit, m->case_id, p->name, m->message_id,
                                  (int)m->attempts, aerr) != 0)
      tb_audit_note_failure(TB_AUDIT_EV_MESSAGE_SENT, aerr);
  }
}

static void msg_start(struct dmsg *m) {
  struct tb_delivery *d = m->p->d;
  m->start_ms = now_ms();
  if (d->stopping && d->cancelling) {
    finish_parked(m, "not sent: gateway stopping");
    return;
  }
  if (tb_workers_submit(d->workers, work_encode, done_encode, m) != 0)
    finish_parked(m, "not sent: worker pool unavailable");
}

/* ---- claiming -------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t) {
  struct dpartner *p = t->data;
  p->timer_at = 0;
  claim(p);
}

/* Arms the partner's timer for at_ms unless it is armed earlier already. */
static void schedule(struct dpartner *p, int64_t at_ms) {
  struct tb_delivery *d = p->d;
  if (d->stopping) return;
  int64_t now = now_ms();
  if (at_ms < now) at_ms = now;
  if (p->timer_at != 0 && p->timer_at <= at_ms) return;
  p->timer_at = at_ms;
  uv_timer_start(&p->timer, on_timer, (uint64_t)(at_ms - now), 0);
}

static void on_claimed(int rc, const struct tb_store_claimed *msgs, size_t n, int64_t next_due_ms,
                       const char *errmsg, void *ud) {
  struct dpartner *p = ud;
  struct tb_delivery *d = p->d;
  d->ops_out--;
  p->claiming = 0;
  int probe = p->claim_probe;
  p->claim_probe = 0;
  int64_t now = now_ms();
  if (rc != 0) {
    if (probe) tb_circuit_release(&p->circuit);
    struct tb_log_line *l = tb_log_begin(TB_LOG_ERROR, "delivery.claim_failed");
    tb_log_str(l, "partner", p->name);
    tb_log_str(l, "error", errmsg ? errmsg : tb_strerror(rc));
    tb_log_end(l);
    if (d->stopping) maybe_done(d);
    else schedule(p, now + d->poll_ms);
    return;
  }
  if (probe && n == 0) {
    /* The partner accepts connections and there is nothing to try it with:
     * no reason to keep the circuit open. */
    enum tb_circuit_state before = p->circuit.state;
    tb_circuit_success(&p->circuit);
    if (before != TB_CIRCUIT_CLOSED) log_circuit_closed(p, "the partner is reachable again");
    circuit_metric(p);
  }
  for (size_t i = 0; i < n; i++) {
    struct dmsg *m = msg_new(p, &msgs[i]);
    if (m == NULL) {
      /* Stays 'sending' until the next start's recover: log it loudly. */
      tb_log_msg(TB_LOG_ERROR, "delivery.claim_failed",
                 "out of memory for claimed message %s of partner %s; it is resent after a "
                 "restart", msgs[i].message_id, p->name);
      continue;
    }
    m->is_probe = probe;
    msg_link(d, m);
    if (d->stopping) finish_parked(m, "not sent: gateway stopping");
    else msg_start(m);
  }
  if (d->stopping) {
    maybe_done(d);
    return;
  }
  int64_t at = now + d->poll_ms;
  if (next_due_ms > 0 && next_due_ms < at) at = next_due_ms;
  if (p->claim_again) {
    p->claim_again = 0;
    at = now;
  }
  schedule(p, at);
}

static void on_probe(const struct tb_client_result *res, void *ud) {
  struct dpartner *p = ud;
  struct tb_delivery *d = p->d;
  d->ops_out--;
  p->probing = 0;
  client_metrics(p);
  if (d->stopping || res->transport_error == TB_CLIENT_ECANCELLED) {
    maybe_done(d);
    return;
  }
  int64_t now = now_ms();
  if (res->transport_error == 0) {
    p->need_probe = 0;
    if (p->unreachable) {
      struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "delivery.partner_reachable");
      tb_log_str(l, "partner", p->name);
      tb_log_end(l);
    }
    p->unreachable = 0;
    schedule(p, now);
    return;
  }
  int opened = tb_circuit_trip(&p->circuit, now);
  circuit_metric(p);
  char why[320];
  snprintf(why, sizeof why, "partner unreachable: %s: %.200s",
           tb_client_error_name(res->transport_error), res->error_text ? res->error_text : "");
  if (opened) {
    log_circuit_open(p, why);
  } else {
    struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "delivery.probe_failed");
    tb_log_str(l, "partner", p->name);
    tb_log_str(l, "reason", why);
    tb_log_int(l, "open_ms", p->circuit.open_ms);
    tb_log_end(l);
  }
  p->unreachable = 1;
  schedule(p, tb_circuit_next_allowed_ms(&p->circuit, now));
}

static void start_probe(struct dpartner *p) {
  struct tb_delivery *d = p->d;
  char err[TB_ERRMSG_MAX] = "";
  int rc = d->tr.probe ? d->tr.probe(p->pool, on_probe, p, err) : TB_EINVAL;
  if (rc == TB_EINVAL && d->tr.probe == NULL) {
    p->need_probe = 0; /* a transport without probes: claim directly */
    schedule(p, now_ms());
    return;
  }
  if (rc != 0) {
    tb_log_msg(TB_LOG_WARN, "delivery.probe_failed", "partner %s: could not start a probe: %s",
               p->name, err[0] ? err : tb_strerror(rc));
    schedule(p, now_ms() + d->poll_ms);
    return;
  }
  p->probing = 1;
  d->ops_out++;
}

static void claim(struct dpartner *p) {
  struct tb_delivery *d = p->d;
  if (d->stopping || !d->recovered) return;
  if (p->claiming || p->probing) {
    p->claim_again = 1;
    return;
  }
  int64_t now = now_ms();
  if (p->circuit.state == TB_CIRCUIT_OPEN && now < p->circuit.open_until_ms) {
    schedule(p, p->circuit.open_until_ms);
    return;
  }
  if (p->need_probe) {
    start_probe(p);
    return;
  }
  if (p->in_flight >= p->max_in_flight) return; /* a finishing message claims again */
  size_t max = p->max_in_flight - p->in_flight;
  int probe = 0;
  if (p->circuit.state != TB_CIRCUIT_CLOSED) {
    if (!tb_circuit_allow(&p->circuit, now)) return; /* the probe's answer decides */
    circuit_metric(p);
    max = 1;
    probe = 1;
  }
  if (max > TB_STORE_CLAIM_MAX) max = TB_STORE_CLAIM_MAX;
  int rc = tb_store_outbox_claim(d->store, p->name, now, max, on_claimed, p);
  if (rc != 0) {
    if (probe) tb_circuit_release(&p->circuit);
    if (rc != TB_ECLOSED)
      tb_log_msg(TB_LOG_ERROR, "delivery.claim_failed", "partner %s: %s", p->name,
                 tb_strerror(rc));
    schedule(p, now + d->poll_ms);
    return;
  }
  p->claiming = 1;
  p->claim_probe = probe;
  d->ops_out++;
}

void tb_delivery_kick(struct tb_delivery *d, const char *partner) {
  if (d == NULL || d->stopping) return;
  int64_t now = now_ms();
  for (size_t i = 0; i < d->nparts; i++) {
    struct dpartner *p = &d->parts[i];
    if (partner != NULL && strcmp(partner, p->name) != 0) continue;
    if (p->claiming || p->probing) p->claim_again = 1;
    else schedule(p, now);
  }
}

static void on_recovered(int rc, size_t count, const char *errmsg, void *ud) {
  struct tb_delivery *d = ud;
  d->ops_out--;
  if (rc != 0) {
    tb_log_msg(TB_LOG_ERROR, "delivery.recover_failed",
               "messages left 'sending' by a crash could not be requeued: %s",
               errmsg ? errmsg : tb_strerror(rc));
  } else if (count > 0) {
    struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "delivery.recovered");
    tb_log_int(l, "messages", (int64_t)count);
    tb_log_str(l, "msg", "messages interrupted by a crash are queued again with their ids");
    tb_log_end(l);
  }
  d->recovered = 1;
  if (d->stopping) {
    maybe_done(d);
    return;
  }
  for (size_t i = 0; i < d->nparts; i++) schedule(&d->parts[i], now_ms());
}

/* ---- stop -------------------------------------------------------------------------- */

static void on_workers_closed(void *ud) {
  struct tb_delivery *d = ud;
  void (*cb)(void *) = d->on_stopped;
  void *cb_ud = d->stopped_ud;
  tb_log_msg(TB_LOG_INFO, "delivery.stopped", "delivery engine stopped");
  free(d->parts);
  free(d);
  if (cb) cb(cb_ud);
}

static void on_handle_closed(uv_handle_t *h) {
  struct tb_delivery *d = h->data;
  if (--d->handles_open > 0) return;
  if (d->own_workers) tb_workers_close(d->workers, on_workers_closed, d);
  else on_workers_closed(d);
}

static void close_handles(struct tb_delivery *d) {
  d->handles_open = (int)d->nparts + 1;
  for (size_t i = 0; i < d->nparts; i++) {
    d->parts[i].timer.data = d;
    uv_close((uv_handle_t *)&d->parts[i].timer, on_handle_closed);
  }
  d->grace.data = d;
  uv_close((uv_handle_t *)&d->grace, on_handle_closed);
}

static void on_transport_closed(void *ud) {
  struct tb_delivery *d = ud;
  d->transport_closed = 1;
  maybe_done(d);
}

static void close_transport(struct tb_delivery *d) {
  if (d->transport_closing) return;
  d->transport_closing = 1;
  if (d->tr.close) d->tr.close(d->tr.ctx, on_transport_closed, d);
  else on_transport_closed(d);
}

static void maybe_done(struct tb_delivery *d) {
  if (!d->stopping || d->finalizing) return;
  if (d->in_flight > 0 || d->ops_out > 0) return;
  if (!d->transport_closing) {
    close_transport(d);
    return;
  }
  if (!d->transport_closed) return;
  d->finalizing = 1;
  uv_timer_stop(&d->grace);
  close_handles(d);
}

static void on_grace(uv_timer_t *t) {
  struct tb_delivery *d = t->data;
  struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "delivery.stop_deadline");
  tb_log_int(l, "in_flight", (int64_t)d->in_flight);
  tb_log_str(l, "msg", "in-flight transfers did not finish in time; they are cancelled and "
                       "queued again with their ids");
  tb_log_end(l);
  d->cancelling = 1;
  close_transport(d);
}

void tb_delivery_stop(struct tb_delivery *d, void (*on_stopped)(void *ud), void *ud) {
  d->stopping = 1;
  d->on_stopped = on_stopped;
  d->stopped_ud = ud;
  for (size_t i = 0; i < d->nparts; i++) {
    uv_timer_stop(&d->parts[i].timer);
    d->parts[i].timer_at = 0;
  }
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "delivery.stopping");
  tb_log_int(l, "in_flight", (int64_t)d->in_flight);
  tb_log_end(l);
  d->grace.data = d;
  uv_timer_start(&d->grace, on_grace, (uint64_t)d->grace_ms, 0);
  maybe_done(d);
}

size_t tb_delivery_in_flight(const struct tb_delivery *d) { return d ? d->in_flight : 0; }

/* ---- start --------------------------------------------------------------------------- */

static const double latency_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,    2.5,
                                        5,    10,    30,   60,  300, 900, 3600, 14400};

static int register_metrics(struct engine_metrics *m) {
  m->delivered = tb_metric_counter("tbgw_cases_delivered_total",
                                   "Cases the partner acknowledged (CASE_SUBMIT delivered), by "
                                   "partner.", "partner", NULL);
  m->failed = tb_metric_counter("tbgw_cases_failed_total",
                                "Cases that became dead letters (CASE_SUBMIT failed), by partner.",
                                "partner", NULL);
  m->attempts = tb_metric_counter("tbgw_delivery_attempts_total",
                                  "Delivery attempts of every message type, by partner and "
                                  "outcome.", "partner", "outcome");
  m->retries = tb_metric_counter("tbgw_delivery_retries_total",
                                 "Attempts that will be retried, by partner and reason.",
                                 "partner", "reason");
  m->latency = tb_metric_histogram("tbgw_delivery_latency_seconds",
                                   "Time from a case's acceptance to the partner's "
                                   "acknowledgement, by partner.", "partner", latency_bounds,
                                   sizeof latency_bounds / sizeof *latency_bounds);
  m->circuit = tb_metric_gauge("tbgw_circuit_state",
                               "Circuit breaker per partner: 0 closed, 1 open, 2 half-open.",
                               "partner", NULL);
  m->requests = tb_metric_counter("tbgw_partner_requests_total",
                                  "HTTP requests started towards the partner (probes included).",
                                  "partner", NULL);
  m->conns = tb_metric_counter("tbgw_partner_connections_opened_total",
                               "Connections opened to the partner (TCP + TLS handshakes).",
                               "partner", NULL);
  return m->delivered && m->failed && m->attempts && m->retries && m->latency && m->circuit &&
                 m->requests && m->conns
             ? 0
             : TB_ENOMEM;
}

/* Undoes a start that failed after the transport and workers were made. */
struct abort_ctx {
  int pending;
  struct tb_workers *workers;
  int own_workers;
};

static void abort_done(void *ud) { free(ud); }

static void abort_transport_closed(void *ud) {
  struct abort_ctx *a = ud;
  if (a->own_workers && a->workers) tb_workers_close(a->workers, abort_done, a);
  else free(a);
}

int tb_delivery_start(const struct tb_delivery_options *opt, struct tb_delivery **out, char *err) {
  *out = NULL;
  if (opt == NULL || opt->loop == NULL || opt->store == NULL ||
      (opt->partner_count > 0 && opt->partners == NULL))
    return tb_errf(err, TB_EINVAL, "delivery: loop, store and partners are required");
  for (size_t i = 0; i < opt->partner_count; i++) {
    const struct tb_delivery_partner *in = &opt->partners[i];
    if (in->cfg == NULL || in->ops == NULL || in->host == NULL || in->cfg->name == NULL)
      return tb_errf(err, TB_EINVAL, "delivery: partner %zu has no configuration or adapter", i);
  }
  struct tb_delivery *d = calloc(1, sizeof *d);
  if (d == NULL) return tb_errf(err, TB_ENOMEM, "delivery: out of memory");
  d->parts = calloc(opt->partner_count ? opt->partner_count : 1, sizeof *d->parts);
  if (d->parts == NULL) {
    free(d);
    return tb_errf(err, TB_ENOMEM, "delivery: out of memory");
  }
  d->loop = opt->loop;
  d->store = opt->store;
  d->audit = opt->audit;
  set_text(d->node_region, sizeof d->node_region, opt->node_region);
  d->nparts = opt->partner_count;
  d->poll_ms = opt->poll_ms > 0 ? opt->poll_ms : 1000;
  d->fresh_ms = opt->fresh_retry_ms > 0 ? opt->fresh_retry_ms : 200;
  d->grace_ms = opt->stop_grace_ms > 0 ? opt->stop_grace_ms : 10000;
  d->rng = opt->seed;
  while (d->rng == 0)
    if (RAND_bytes((unsigned char *)&d->rng, sizeof d->rng) != 1) d->rng = (uint64_t)now_ms();

  int rc = register_metrics(&d->m);
  if (rc != 0) {
    free(d->parts);
    free(d);
    return tb_errf(err, rc, "delivery: cannot register metrics: out of memory");
  }

  if (opt->transport != NULL) {
    d->tr = *opt->transport;
  } else {
    struct tb_delivery_transport *t = NULL;
    rc = tb_delivery_transport_client(opt->loop, &t, err);
    if (rc != 0) {
      free(d->parts);
      free(d);
      return rc;
    }
    d->tr = *t; /* t itself is freed by its close */
  }
  if (opt->workers != NULL) {
    d->workers = opt->workers;
  } else {
    rc = tb_workers_start(opt->loop, opt->worker_threads ? opt->worker_threads : 2, &d->workers,
                          err);
    d->own_workers = 1;
  }

  for (size_t i = 0; rc == 0 && i < d->nparts; i++) {
    struct dpartner *p = &d->parts[i];
    const struct tb_config_partner *pc = opt->partners[i].cfg;
    const struct tb_config_delivery *dc = &pc->delivery;
    p->d = d;
    p->in = opt->partners[i];
    p->name = pc->name;
    p->max_in_flight = dc->max_in_flight ? dc->max_in_flight : 8;
    p->max_attempts = dc->max_attempts ? dc->max_attempts : 20;
    p->backoff.initial_ms = dc->backoff_initial_ms ? (int64_t)dc->backoff_initial_ms : 1000;
    p->backoff.max_ms = dc->backoff_max_ms ? (int64_t)dc->backoff_max_ms : 300000;
    int64_t open_ms = dc->circuit_open_ms ? (int64_t)dc->circuit_open_ms : 30000;
    int64_t max_open = opt->circuit_max_open_ms;
    if (max_open <= 0) max_open = 10 * open_ms > 300000 ? 10 * open_ms : 300000;
    tb_circuit_init(&p->circuit, dc->circuit_failures ? dc->circuit_failures : 5, open_ms,
                    max_open);
    p->need_probe = 1;
    struct tb_client_pool_config cc = {
        .name = pc->name,
        .base_url = pc->endpoint,
        /* No tls.ca configured means the system's trust store
         * (docs/configuration.md); the client wants a file. */
        .ca_file = pc->tls.ca ? pc->tls.ca : X509_get_default_cert_file(),
        .cert_file = pc->tls.client_certificate,
        .key_file = pc->tls.client_key,
        .connect_timeout_ms = dc->connect_timeout_ms,
        .timeout_ms = dc->timeout_ms,
        .max_in_flight = p->max_in_flight,
    };
    char why[TB_ERRMSG_MAX] = "";
    rc = d->tr.pool_add(d->tr.ctx, &cc, &p->pool, why);
    if (rc != 0)
      tb_errf(err, rc, "partner \"%s\": cannot set up its HTTPS client: %s", pc->name,
              why[0] ? why : tb_strerror(rc));
  }
  if (rc != 0) {
    struct abort_ctx *a = calloc(1, sizeof *a);
    if (a != NULL) {
      a->workers = d->workers;
      a->own_workers = d->own_workers;
      d->tr.close(d->tr.ctx, abort_transport_closed, a);
    }
    free(d->parts);
    free(d);
    return rc;
  }
  uv_timer_init(d->loop, &d->grace);
  d->grace.data = d;
  for (size_t i = 0; i < d->nparts; i++) {
    struct dpartner *p = &d->parts[i];
    uv_timer_init(d->loop, &p->timer);
    p->timer.data = p;
    tb_metric_set(d->m.circuit, p->name, NULL, 0);
    tb_metric_add(d->m.delivered, p->name, NULL, 0);
    tb_metric_add(d->m.failed, p->name, NULL, 0);
  }
  rc = tb_store_outbox_recover(d->store, on_recovered, d);
  if (rc == 0) {
    d->ops_out++;
  } else {
    /* The store is closing: nothing to deliver; start anyway so stop works. */
    d->recovered = 1;
  }
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "delivery.started");
  tb_log_int(l, "partners", (int64_t)d->nparts);
  tb_log_end(l);
  *out = d;
  return 0;
}

/* ---- the real transport: tb_client ----------------------------------------------- */

struct client_transport {
  struct tb_delivery_transport t;
  struct tb_client *client;
  void (*on_closed)(void *ud);
  void *ud;
};

static int ct_pool_add(void *ctx, const struct tb_client_pool_config *pc, void **pool,
                       char *err) {
  struct client_transport *ct = ctx;
  struct tb_client_pool *p = NULL;
  int rc = tb_client_pool_add(ct->client, pc, &p, err);
  *pool = p;
  return rc;
}

static int ct_post(void *pool, const char *path, const char *content_type, const char *headers,
                   const void *body, size_t len, tb_client_done_fn cb, void *ud, char *err) {
  return tb_client_post(pool, path, content_type, headers, body, len, cb, ud, err);
}

static int ct_probe(void *pool, tb_client_done_fn cb, void *ud, char *err) {
  return tb_client_probe(pool, cb, ud, err);
}

static void ct_stats(const void *pool, struct tb_client_stats *out) {
  tb_client_pool_stats(pool, out);
}

static void ct_closed(void *ud) {
  struct client_transport *ct = ud;
  void (*cb)(void *) = ct->on_closed;
  void *cb_ud = ct->ud;
  free(ct);
  if (cb) cb(cb_ud);
}

static void ct_close(void *ctx, void (*on_closed)(void *ud), void *ud) {
  struct client_transport *ct = ctx;
  ct->on_closed = on_closed;
  ct->ud = ud;
  tb_client_close(ct->client, ct_closed, ct);
}

int tb_delivery_transport_client(uv_loop_t *loop, struct tb_delivery_transport **out, char *err) {
  *out = NULL;
  struct client_transport *ct = calloc(1, sizeof *ct);
  if (ct == NULL) return tb_errf(err, TB_ENOMEM, "delivery: out of memory");
  int rc = tb_client_new(loop, &ct->client, err);
  if (rc != 0) {
    free(ct);
    return rc;
  }
  ct->t.ctx = ct;
  ct->t.pool_add = ct_pool_add;
  ct->t.post = ct_post;
  ct->t.probe = ct_probe;
  ct->t.stats = ct_stats;
  ct->t.close = ct_close;
  *out = &ct->t;
  return 0;
}

/* ---- the daemon's start-up ------------------------------------------------------ */

int tb_delivery_start_registry(uv_loop_t *loop, struct tb_store *store,
                               const struct tb_config *cfg, const struct tb_plugin_registry *reg,
                               struct tb_audit *audit, struct tb_delivery **out, char *err) {
  *out = NULL;
  size_t n = reg ? reg->partner_count : 0;
  struct tb_delivery_partner *parts = calloc(n ? n : 1, sizeof *parts);
  if (parts == NULL) return tb_errf(err, TB_ENOMEM, "delivery: out of memory");
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const struct tb_plugin_partner *pp = &reg->partners[i];
    if (!pp->ready || pp->lib == NULL) continue;
    parts[k].cfg = pp->cfg;
    parts[k].ops = pp->lib->ops;
    parts[k].state = pp->inst.state;
    parts[k].host = &pp->host.table;
    k++;
  }
  struct tb_delivery_options opt = {
      .loop = loop,
      .store = store,
      .node_region = cfg->node_region,
      .partners = parts,
      .partner_count = k,
      .audit = audit,
  };
  int rc = tb_delivery_start(&opt, out, err);
  free(parts);
  return rc;
}
