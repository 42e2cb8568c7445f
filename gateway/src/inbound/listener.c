/*
 * The partner-facing listener (inbound/inbound.h): one HTTPS server that
 * serves every partner's adapter routes below /partners/{partner}, and the
 * pipeline each request goes through:
 *
 *   loop:    route (404/405) → client certificate of THIS partner (403)
 *   worker:  adapter decode (signature, decryption, translation)
 *   loop:    refused? → replay window (STALE) → tb_store_inbound_record
 *            (message id / nonce store, evidence, case or status, event),
 *            durable before anything is answered
 *   worker:  adapter answer (signs the acknowledgement)
 *   loop:    the HTTP answer exactly as the adapter built it; release
 *
 * A request is always answered exactly once, also when its connection went
 * away meanwhile (the server then discards the answer): the HTTP server's
 * graceful close waits for that, and this file closes the worker pool only
 * after the server has closed, so no job is ever cancelled under a request.
 */
#include "inbound/inbound.h"

#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/timefmt.h"
#include "audit/audit.h"
#include "http/problem.h"
#include "inbound/policy.h"
#include "tbgw/error.h"

/* One configured partner as the listener sees it. */
struct slot {
  const struct tb_plugin_partner *p; /* borrowed from the registry */
  X509_STORE *ca;                    /* its tls.client_ca; NULL when it has none */
};

struct tb_inbound {
  uv_loop_t *loop;
  const struct tb_config *cfg;
  struct tb_store *store;
  struct tb_workers *workers;
  int own_workers;
  struct tb_audit *audit; /* borrowed; NULL: no audit trail */
  struct tb_http_server *server;
  struct slot *slots;
  size_t slot_count;
  struct tb_inbound_receipts receipts;
  struct tb_metric *messages; /* tbgw_inbound_messages_total{partner,result} */
  struct tb_metric *duration; /* tbgw_inbound_duration_seconds{partner} */
  void (*on_closed)(void *ud);
  void *closed_ud;
};

/* One request on its way through the pipeline. */
struct job {
  struct tb_inbound *ib;
  const struct slot *slot;
  struct tb_http_exchange *ex;
  const struct tb_http_request *hreq; /* valid until ex is answered */
  struct tb_header *headers;
  struct tb_inbound_request req;      /* what the adapter sees (borrows hreq) */
  struct tb_inbound_message msg;
  int decoded;                        /* decode ran and returned 0: release msg */
  int rc;                             /* decode's, then answer's return code */
  char err[TB_ERRMSG_MAX];
  enum tb_inbound_outcome outcome;
  char receipt[TB_STORE_RECEIPT_MAX]; /* receipt to report (ours for a case) */
  int64_t seq;                        /* event written, 0 if none */
  char reason[TB_ERRMSG_MAX];         /* why, for the log (refusals, failures) */
  const char *result;                 /* metrics label */
  struct tb_wire_answer ans;
  int answering;                      /* answer() was called (rc is answer's) */
};

static const struct tb_adapter *ops_of(const struct slot *s) { return s->p->lib->ops; }

/* Copies src into dst (size > 0), truncated if needed at a UTF-8 character
 * boundary: refusal texts end up in XML and JSON answers. */
static void copy_text(char *dst, size_t size, const char *src) {
  size_t n = strlen(src);
  if (n >= size) {
    n = size - 1;
    while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* ---- names for logs and metrics ------------------------------------------- */

static const char *kind_name(enum tb_inbound_kind k) {
  switch (k) {
  case TB_INBOUND_STATUS: return "status";
  case TB_INBOUND_CASE: return "case";
  case TB_INBOUND_OTHER: return "other";
  case TB_INBOUND_REFUSED: break;
  }
  return "refused";
}

static const char *outcome_name(enum tb_inbound_outcome o) {
  switch (o) {
  case TB_INBOUND_ACCEPTED: return "accepted";
  case TB_INBOUND_DUPLICATE: return "duplicate";
  case TB_INBOUND_STALE: return "stale";
  case TB_INBOUND_NONCE_REUSED: return "nonce_reused";
  case TB_INBOUND_REFUSE: return "refused";
  case TB_INBOUND_UNKNOWN_CASE: return "unknown_case";
  case TB_INBOUND_FAILED: break;
  }
  return "failed";
}

/*
 * The metric's result for an adapter's refusal. The ABI carries the partner
 * document's code, not its class, so the classes of the codes of the
 * protocols we ship are listed here; any other code (and any other
 * adapter) counts as refused_other. A later ABI minor could let the adapter
 * say the class itself.
 */
static const struct {
  const char *adapter, *code, *result;
} refuse_classes[] = {
    {"lu-xml", "1001", "refused_signature"},   {"lu-xml", "1005", "refused_stale"},
    {"yue-json", "4010", "refused_signature"}, {"yue-json", "4011", "refused_stale"},
    {"yue-json", "4012", "refused_replay"},
};

static const char *refuse_result(const struct slot *s, const char *code) {
  for (size_t i = 0; i < sizeof refuse_classes / sizeof refuse_classes[0]; i++)
    if (strcmp(refuse_classes[i].adapter, s->p->lib->name) == 0 &&
        strcmp(refuse_classes[i].code, code) == 0)
      return refuse_classes[i].result;
  return "refused_other";
}

static const char *result_of(const struct job *j) {
  switch (j->outcome) {
  case TB_INBOUND_ACCEPTED: return "accepted";
  case TB_INBOUND_DUPLICATE: return "duplicate";
  case TB_INBOUND_STALE: return "refused_stale";
  case TB_INBOUND_NONCE_REUSED: return "refused_replay";
  case TB_INBOUND_UNKNOWN_CASE: return "unknown_case";
  case TB_INBOUND_REFUSE:
    return j->msg.kind == TB_INBOUND_REFUSED ? refuse_result(j->slot, j->msg.refuse_code)
                                             : "refused_other";
  case TB_INBOUND_FAILED: break;
  }
  return "failed";
}

/* ---- answering ------------------------------------------------------------ */

static void job_free(struct job *j) {
  if (j->decoded) {
    const struct tb_host *h = j->slot->p->inst.host;
    ops_of(j->slot)->release(j->slot->p->inst.state, &j->msg);
    h->free(j->msg.canonical.data);
  }
  if (j->ans.content_type || j->ans.headers || j->ans.body.data) {
    const struct tb_host *h = j->slot->p->inst.host;
    h->free(j->ans.content_type);
    h->free(j->ans.headers);
    h->free(j->ans.body.data);
  }
  free(j->headers);
  free(j);
}

/* Called after the answer was queued: uses nothing of the exchange or its
 * request, which are gone by then (peer and aborted are copied before). */
static void log_job(const struct job *j, int http_status, double seconds, const char *peer,
                    int aborted) {
  enum tb_log_level lvl;
  const char *event;
  if (j->outcome == TB_INBOUND_ACCEPTED || j->outcome == TB_INBOUND_DUPLICATE) {
    lvl = TB_LOG_INFO;
    event = "inbound.accepted";
  } else if (j->outcome == TB_INBOUND_FAILED) {
    lvl = TB_LOG_ERROR;
    event = "inbound.failed";
  } else {
    lvl = TB_LOG_WARN;
    event = "inbound.refused";
  }
  struct tb_log_line *l = tb_log_begin(lvl, event);
  tb_log_str(l, "partner", j->slot->p->cfg->name);
  if (j->msg.message_id[0]) tb_log_str(l, "message_id", j->msg.message_id);
  if (j->msg.case_id[0]) tb_log_str(l, "case_id", j->msg.case_id);
  tb_log_str(l, "kind", kind_name(j->msg.kind));
  const char *type = tb_store_msg_type_name(j->msg.type);
  if (type) tb_log_str(l, "msg_type", type);
  tb_log_str(l, "outcome", outcome_name(j->outcome));
  tb_log_str(l, "result", j->result);
  if (j->outcome == TB_INBOUND_REFUSE && j->msg.refuse_code[0])
    tb_log_str(l, "code", j->msg.refuse_code);
  if (j->reason[0]) tb_log_str(l, "reason", j->reason);
  if (j->receipt[0]) tb_log_str(l, "receipt_no", j->receipt);
  if (j->seq) tb_log_int(l, "seq", j->seq);
  tb_log_int(l, "status", http_status);
  tb_log_double(l, "latency_ms", seconds * 1000.0);
  tb_log_str(l, "peer", peer);
  if (aborted) tb_log_str(l, "aborted", "the connection closed first");
  tb_log_end(l);
}

/* inbound.accepted / inbound.refused; a failure (the gateway could not take
 * the message) is a refusal too: the partner was not given an acceptance. */
static void audit_job(const struct job *j) {
  struct tb_audit *a = j->ib->audit;
  if (a == NULL) return;
  int accepted = j->outcome == TB_INBOUND_ACCEPTED || j->outcome == TB_INBOUND_DUPLICATE;
  char reason[TB_ERRMSG_MAX + 48], err[TB_ERRMSG_MAX] = "";
  snprintf(reason, sizeof reason, "%s%s%s", j->result, j->reason[0] ? ": " : "", j->reason);
  if (tb_audit_log_inbound(a, j->slot->p->cfg->name,
                           j->msg.message_id[0] ? j->msg.message_id : NULL, accepted,
                           accepted ? NULL : reason, err) != 0)
    tb_audit_note_failure(accepted ? TB_AUDIT_EV_INBOUND_ACCEPTED : TB_AUDIT_EV_INBOUND_REFUSED,
                          err);
}

static void finish(struct job *j) {
  struct tb_inbound *ib = j->ib;
  int status;
  j->result = result_of(j);
  /* The exchange and its request are invalid once answered. */
  char peer[64];
  snprintf(peer, sizeof peer, "%s", j->hreq->peer ? j->hreq->peer : "");
  int aborted = tb_http_exchange_aborted(j->ex);
  double seconds = (double)(uv_hrtime() - j->hreq->started_ns) / 1e9;
  if (j->rc != 0) {
    /* The adapter could not build an answer (out of memory, a signing key
     * that fails): the partner documents treat HTTP 5xx as "retry later". */
    status = 503;
    if (j->answering) {
      size_t n = strlen(j->reason);
      snprintf(j->reason + n, sizeof j->reason - n, "%sthe adapter could not build the answer: %s",
               n ? "; " : "", j->err);
    }
    if (j->outcome != TB_INBOUND_ACCEPTED && j->outcome != TB_INBOUND_DUPLICATE) {
      j->outcome = TB_INBOUND_FAILED;
      j->result = "failed";
    }
    static const char body[] = "the gateway could not answer this message; send it again\n";
    tb_http_respond(j->ex, status, "text/plain; charset=utf-8", body, sizeof body - 1,
                    "Retry-After: 5\r\n");
  } else {
    status = j->ans.http_status;
    tb_http_respond(j->ex, status, j->ans.content_type, j->ans.body.data, j->ans.body.len,
                    j->ans.headers);
  }
  j->ex = NULL;
  j->hreq = NULL;
  tb_metric_add(ib->messages, j->slot->p->cfg->name, j->result, 1);
  tb_metric_observe(ib->duration, j->slot->p->cfg->name, seconds);
  log_job(j, status, seconds, peer, aborted);
  audit_job(j);
  job_free(j);
}

static void work_answer(void *ud) {
  struct job *j = ud;
  const struct tb_plugin_partner *p = j->slot->p;
  const char *receipt = j->receipt[0] ? j->receipt : NULL;
  j->err[0] = '\0';
  j->rc = p->lib->ops->answer(p->inst.state, &j->req, &j->msg, j->outcome, receipt, &j->ans,
                              j->err);
}

static void on_answered(void *ud, int cancelled) {
  struct job *j = ud;
  if (cancelled) work_answer(j); /* cannot happen (see the top); never leave it unanswered */
  finish(j);
}

/* Answers on the pool: the adapter signs. Inline if the pool refuses. */
static void answer(struct job *j, enum tb_inbound_outcome outcome) {
  j->outcome = outcome;
  j->answering = 1;
  if (tb_workers_submit(j->ib->workers, work_answer, on_answered, j) != 0) {
    work_answer(j);
    finish(j);
  }
}

/* A refusal before the adapter saw the request (route, certificate): plain
 * problem JSON, since no partner document covers it. */
static void refuse_early(struct tb_inbound *ib, const struct slot *s, struct tb_http_exchange *ex,
                         const struct tb_http_request *req, const char *partner, int status,
                         const char *slug, const char *title, const char *detail,
                         const char *extra_headers) {
  if (s) tb_metric_add(ib->messages, s->p->cfg->name, "refused_other", 1);
  /* Logged before answering: req is invalid afterwards. */
  struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "inbound.refused");
  tb_log_str(l, "partner", partner);
  tb_log_str(l, "outcome", "refused");
  tb_log_str(l, "reason", detail);
  tb_log_int(l, "status", status);
  tb_log_str(l, "method", req->method_name);
  tb_log_str(l, "peer", req->peer);
  if (req->peer_subject) tb_log_str(l, "client", req->peer_subject);
  tb_log_end(l);
  if (ib->audit) {
    char err[TB_ERRMSG_MAX] = "";
    if (tb_audit_log_inbound(ib->audit, partner, NULL, 0, detail, err) != 0)
      tb_audit_note_failure(TB_AUDIT_EV_INBOUND_REFUSED, err);
  }
  tb_http_respond_problem(ex, status, slug, title, detail, extra_headers);
}

/* ---- recording ---------------------------------------------------------------- */

static void on_recorded(int rc, enum tb_inbound_outcome outcome, const char *receipt_no,
                        int64_t seq, const char *errmsg, void *ud) {
  struct job *j = ud;
  if (rc != 0) {
    snprintf(j->reason, sizeof j->reason, "%s", errmsg ? errmsg : tb_strerror(rc));
    if (rc == TB_ECONFLICT || rc == TB_EPARSE || rc == TB_EVALIDATE) {
      /* The message can never be stored as it is (a case id another partner
       * already sent us, a body the store cannot apply): a permanent
       * refusal. No code is set, so the adapter answers with its generic
       * "does not match" code (lu-xml 1002, yue-json 4001). */
      copy_text(j->msg.refuse_text, sizeof j->msg.refuse_text, j->reason);
      answer(j, TB_INBOUND_REFUSE);
      return;
    }
    j->receipt[0] = '\0';
    answer(j, TB_INBOUND_FAILED);
    return;
  }
  j->seq = seq;
  snprintf(j->receipt, sizeof j->receipt, "%s", receipt_no ? receipt_no : "");
  if (outcome == TB_INBOUND_UNKNOWN_CASE)
    snprintf(j->reason, sizeof j->reason, "case %s is not one %s may report on", j->msg.case_id,
             j->slot->p->cfg->name);
  else if (outcome == TB_INBOUND_NONCE_REUSED)
    snprintf(j->reason, sizeof j->reason, "nonce seen before within the replay window");
  answer(j, outcome);
}

static void record(struct job *j) {
  struct tb_inbound *ib = j->ib;
  const struct tb_config_partner *pc = j->slot->p->cfg;
  char ours[TB_INBOUND_RECEIPT_MAX] = "";
  if (j->msg.kind == TB_INBOUND_CASE &&
      tb_inbound_receipt_next(&ib->receipts, j->req.now_ms, ours) != 0) {
    snprintf(j->reason, sizeof j->reason, "cannot make a receipt number: clock out of range");
    answer(j, TB_INBOUND_FAILED);
    return;
  }
  if (j->msg.kind == TB_INBOUND_CASE) snprintf(j->receipt, sizeof j->receipt, "%s", ours);
  char detail[512];
  snprintf(detail, sizeof detail, "verified by adapter %s%s%s", j->slot->p->lib->name,
           j->hreq->peer_subject ? "; TLS client " : "",
           j->hreq->peer_subject ? j->hreq->peer_subject : "");
  struct tb_store_inbound_new m = {
      .partner = pc->name,
      .message_id = j->msg.message_id,
      .nonce = j->msg.nonce,
      .sent_ms = j->msg.sent_ms,
      .window_ms = (int64_t)pc->replay_window_s * 1000,
      .kind = j->msg.kind,
      .msg_type = j->msg.type,
      .case_id = j->msg.case_id,
      .receipt_no = j->msg.receipt_no[0] ? j->msg.receipt_no : NULL,
      .canonical = (const char *)j->msg.canonical.data,
      .canonical_len = j->msg.canonical.len,
      .raw = j->hreq->body ? j->hreq->body : (const unsigned char *)"",
      .raw_len = j->hreq->body_len,
      .content_type = tb_http_request_header(j->hreq, "content-type"),
      .verified = 1, /* decode accepts only what it verified */
      .verify_detail = detail,
      .our_receipt_no = j->msg.kind == TB_INBOUND_CASE ? ours : NULL,
      .now_ms = j->req.now_ms,
  };
  if (m.canonical == NULL) {
    snprintf(j->reason, sizeof j->reason, "adapter %s accepted a message without a canonical body",
             j->slot->p->lib->name);
    answer(j, TB_INBOUND_FAILED);
    return;
  }
  int rc = tb_store_inbound_record(ib->store, &m, on_recorded, j);
  if (rc != 0) {
    snprintf(j->reason, sizeof j->reason, "the store refused the message: %s", tb_strerror(rc));
    j->receipt[0] = '\0';
    answer(j, TB_INBOUND_FAILED);
  }
}

/* ---- decoding ------------------------------------------------------------------ */

static void work_decode(void *ud) {
  struct job *j = ud;
  const struct tb_plugin_partner *p = j->slot->p;
  j->rc = p->lib->ops->decode(p->inst.state, &j->req, &j->msg, j->err);
  j->decoded = j->rc == 0;
  if (j->rc != 0) {
    /* decode promises nothing on failure: free what it may have left. */
    p->inst.host->free(j->msg.canonical.data);
    j->msg.canonical.data = NULL;
    j->msg.canonical.len = 0;
  }
}

static void on_decoded(void *ud, int cancelled) {
  struct job *j = ud;
  if (cancelled) {
    j->rc = TB_ECLOSED;
    snprintf(j->err, sizeof j->err, "the gateway is stopping");
  }
  if (j->rc != 0) {
    memcpy(j->reason, "adapter decode failed: ", 23);
    copy_text(j->reason + 23, sizeof j->reason - 23, j->err);
    j->outcome = TB_INBOUND_FAILED;
    finish(j); /* rc != 0: a bare 503 */
    return;
  }
  if (j->msg.kind == TB_INBOUND_REFUSED) {
    snprintf(j->reason, sizeof j->reason, "%s", j->msg.refuse_text);
    answer(j, TB_INBOUND_REFUSE);
    return;
  }
  uint32_t window = j->slot->p->cfg->replay_window_s;
  if (!tb_inbound_window_ok(j->req.now_ms, j->msg.sent_ms, window)) {
    snprintf(j->reason, sizeof j->reason, "timestamp %lld ms from our clock (window %u s)",
             (long long)(j->req.now_ms - j->msg.sent_ms), (unsigned)window);
    answer(j, TB_INBOUND_STALE);
    return;
  }
  record(j);
}

/* ---- the handler ------------------------------------------------------------------ */

static const struct slot *slot_find(const struct tb_inbound *ib, const char *name) {
  for (size_t i = 0; i < ib->slot_count; i++)
    if (strcmp(ib->slots[i].p->cfg->name, name) == 0) return &ib->slots[i];
  return NULL;
}

static void handle(struct tb_http_exchange *ex, const struct tb_http_request *req, void *ud) {
  struct tb_inbound *ib = ud;
  char name[TB_INBOUND_PARTNER_MAX + 1];
  const char *rest = NULL;
  tb_http_exchange_set_route(ex, "/partners/{partner}");
  const struct slot *s = NULL;
  if (tb_inbound_path_split(req->path, name, &rest) == 0) s = slot_find(ib, name);
  if (s == NULL) {
    char detail[200];
    snprintf(detail, sizeof detail, "no partner at %.100s (paths are /partners/{partner}/...)",
             req->path);
    refuse_early(ib, NULL, ex, req, name[0] ? name : "-", 404, "not-found", "Not found", detail,
                 NULL);
    return;
  }
  if (s->ca == NULL || !tb_http_request_peer_issued_by(req, s->ca)) {
    char detail[200];
    if (s->ca == NULL)
      snprintf(detail, sizeof detail, "partner %s has no tls.client_ca configured", name);
    else
      snprintf(detail, sizeof detail, "client certificate not issued by %s's CA", name);
    refuse_early(ib, s, ex, req, name, 403, "forbidden", "Forbidden", detail, NULL);
    return;
  }
  char allow[64];
  switch (tb_inbound_route_find(s->p->inst.routes, s->p->inst.route_count, req->method_name, rest,
                                allow, sizeof allow)) {
  case TB_INBOUND_ROUTE_NONE: {
    char detail[200];
    snprintf(detail, sizeof detail, "partner %s has no resource at %.100s", name, rest);
    refuse_early(ib, s, ex, req, name, 404, "not-found", "Not found", detail, NULL);
    return;
  }
  case TB_INBOUND_ROUTE_METHOD: {
    char hdr[96], detail[160];
    snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
    snprintf(detail, sizeof detail, "%s is not allowed here; allowed: %s", req->method_name,
             allow);
    refuse_early(ib, s, ex, req, name, 405, "method-not-allowed", "Method not allowed", detail,
                 hdr);
    return;
  }
  case TB_INBOUND_ROUTE_OK: break;
  }

  struct job *j = calloc(1, sizeof *j);
  struct tb_header *hs = calloc(req->header_count ? req->header_count : 1, sizeof *hs);
  if (j == NULL || hs == NULL) {
    free(j);
    free(hs);
    tb_http_respond(ex, 503, "text/plain; charset=utf-8", "out of memory\n", 14,
                    "Retry-After: 5\r\n");
    return;
  }
  for (size_t i = 0; i < req->header_count; i++) {
    hs[i].name = req->headers[i].name;
    hs[i].value = req->headers[i].value;
  }
  j->ib = ib;
  j->slot = s;
  j->ex = ex;
  j->hreq = req;
  j->headers = hs;
  j->req.method = req->method_name;
  j->req.path = rest;
  j->req.headers = hs;
  j->req.header_count = req->header_count;
  j->req.body = req->body;
  j->req.body_len = req->body_len;
  j->req.peer_subject = req->peer_subject;
  j->req.now_ms = tb_time_now_ms();
  j->outcome = TB_INBOUND_FAILED;
  if (tb_workers_submit(ib->workers, work_decode, on_decoded, j) != 0) {
    work_decode(j); /* out of memory queueing: decode here rather than drop it */
    on_decoded(j, 0);
  }
}

/* ---- start and close ------------------------------------------------------------------ */

static void slots_free(struct tb_inbound *ib) {
  for (size_t i = 0; i < ib->slot_count; i++) X509_STORE_free(ib->slots[i].ca);
  free(ib->slots);
  ib->slots = NULL;
  ib->slot_count = 0;
}

static void on_workers_closed(void *ud) {
  struct tb_inbound *ib = ud;
  void (*cb)(void *) = ib->on_closed;
  void *cb_ud = ib->closed_ud;
  slots_free(ib);
  free(ib);
  if (cb) cb(cb_ud);
}

static void on_server_closed(void *ud) {
  struct tb_inbound *ib = ud;
  ib->server = NULL;
  if (ib->own_workers) {
    tb_workers_close(ib->workers, on_workers_closed, ib);
    return;
  }
  on_workers_closed(ib);
}

void tb_inbound_close(struct tb_inbound *ib, void (*on_closed)(void *ud), void *ud) {
  ib->on_closed = on_closed;
  ib->closed_ud = ud;
  tb_http_server_close(ib->server, on_server_closed, ib);
}

int tb_inbound_port(const struct tb_inbound *ib) { return tb_http_server_port(ib->server); }

size_t tb_inbound_connections(const struct tb_inbound *ib) {
  return ib->server ? tb_http_server_connections(ib->server) : 0;
}

static const double duration_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,   0.25,   0.5,   1,    2.5,   5, 10};

/* Used when start fails after the pool was started. */
static void on_failed_workers_closed(void *ud) { (void)ud; }

int tb_inbound_start(const struct tb_inbound_options *opt, struct tb_inbound **out, char *err) {
  *out = NULL;
  const struct tb_config *cfg = opt->cfg;
  if (!cfg->partner_api_set)
    return tb_errf(err, TB_ECONFIG, "partner_api: not configured; the partner listener has "
                                    "nothing to listen on");
  struct tb_inbound *ib = calloc(1, sizeof *ib);
  const char **cas = calloc(cfg->partner_count ? cfg->partner_count : 1, sizeof *cas);
  if (ib == NULL || cas == NULL) {
    free(ib);
    free(cas);
    return tb_errf(err, TB_ENOMEM, "partner_api: out of memory");
  }
  ib->loop = opt->loop;
  ib->cfg = cfg;
  ib->store = opt->store;
  ib->audit = opt->audit;
  tb_inbound_receipts_init(&ib->receipts, cfg->node_region);

  /* One slot per partner, each with the CA its client certificates must
   * chain to. The listener trusts all of them for the handshake; the
   * per-request check makes sure a partner's path is used by that partner. */
  int rc = 0;
  size_t nca = 0;
  ib->slots = calloc(opt->plugins->partner_count ? opt->plugins->partner_count : 1,
                     sizeof *ib->slots);
  if (ib->slots == NULL) rc = tb_errf(err, TB_ENOMEM, "partner_api: out of memory");
  for (size_t i = 0; rc == 0 && i < opt->plugins->partner_count; i++) {
    const struct tb_plugin_partner *p = &opt->plugins->partners[i];
    struct slot *s = &ib->slots[ib->slot_count++];
    s->p = p;
    if (p->cfg->tls.client_ca == NULL) continue;
    char e[TB_ERRMSG_MAX];
    rc = tb_http_tls_ca_store_new(p->cfg->tls.client_ca, &s->ca, e);
    if (rc != 0) {
      tb_errf(err, rc, "partners[%zu] (%s).tls.client_ca: %s", i, p->cfg->name, e);
      break;
    }
    cas[nca++] = p->cfg->tls.client_ca;
  }
  if (rc == 0 && nca == 0)
    rc = tb_errf(err, TB_ECONFIG,
                 "partner_api: no partner has tls.client_ca, so no partner could present a "
                 "client certificate; set partners[].tls.client_ca or remove partner_api");

  if (rc == 0) {
    ib->messages = tb_metric_counter(
        "tbgw_inbound_messages_total",
        "Messages partners sent to the partner listener, by partner and result.", "partner",
        "result");
    ib->duration = tb_metric_histogram(
        "tbgw_inbound_duration_seconds",
        "Time from a partner request's first byte to its answer, by partner.", "partner",
        duration_bounds, sizeof duration_bounds / sizeof duration_bounds[0]);
    if (ib->messages == NULL || ib->duration == NULL)
      rc = tb_errf(err, TB_ENOMEM, "partner_api: cannot register metrics: out of memory");
  }

  if (rc == 0) {
    ib->workers = opt->workers;
    if (ib->workers == NULL) {
      unsigned n = uv_available_parallelism();
      rc = tb_workers_start(opt->loop, n < 1 ? 1 : n > 8 ? 8 : n, &ib->workers, err);
      ib->own_workers = rc == 0;
    }
  }
  if (rc == 0) {
    struct tb_http_tls_config tls = {
        .certificate_file = cfg->partner_api_tls_certificate,
        .private_key_file = cfg->partner_api_tls_private_key,
        .verify = TB_HTTP_TLS_VERIFY_REQUIRED,
        .client_ca_files = cas,
        .client_ca_count = nca,
    };
    struct tb_http_server_config sc = {
        .name = "partner_api",
        .host = cfg->partner_api_host,
        .port = cfg->partner_api_port,
        .limits = cfg->partner_api_limits,
        .handler = handle,
        .handler_ud = ib,
        .tls = &tls,
    };
    rc = tb_http_server_start(opt->loop, &sc, &ib->server, err);
    if (rc != 0 && ib->own_workers) tb_workers_close(ib->workers, on_failed_workers_closed, NULL);
  }
  free(cas);
  if (rc != 0) {
    slots_free(ib);
    free(ib);
    return rc;
  }
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "inbound.started");
  tb_log_str(l, "listener", "partner_api");
  tb_log_str(l, "host", cfg->partner_api_host);
  tb_log_int(l, "port", tb_http_server_port(ib->server));
  tb_log_int(l, "partners", (int64_t)ib->slot_count);
  tb_log_int(l, "client_cas", (int64_t)nca);
  tb_log_end(l);
  *out = ib;
  return 0;
}
