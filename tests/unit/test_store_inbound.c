/*
 * Unit tests for the store's inbound operations (schema 2): recording
 * partners' messages with replay protection (message ids, nonces), status
 * notifications for our cases, partners' own cases, their withdraw /
 * supplement messages, our notifications about their cases, evidence and
 * the purge of old replay-protection rows.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "core/log.h"
#include "store/store.h"
#include "tbgw/error.h"

#define T0 1715000000000LL
#define WINDOW 300000LL /* ±300 s */

#include "store_fixture.h"

/* Rows in every table an inbound message may write: proves "nothing
 * written" by comparing before and after. */
static int64_t rows_everywhere(struct fx *f) {
  return db_int(f->path, "SELECT (SELECT count(*) FROM events) * 1000000000"
                         " + (SELECT count(*) FROM evidence) * 1000000"
                         " + (SELECT count(*) FROM inbound_messages) * 10000"
                         " + (SELECT count(*) FROM inbound_nonces) * 100"
                         " + (SELECT count(*) FROM inbound_cases)"
                         " + (SELECT sum(updated_ms) FROM cases)");
}

/* ---- operations --------------------------------------------------------- */

static void on_acc(int rc, enum tb_store_accept_outcome o, const char *a, int64_t seq,
                   const char *e, void *ud) {
  (void)a;
  (void)seq;
  (void)e;
  int *r = ud;
  r[0]++;
  r[1] = rc;
  assert_int_equal(o, TB_STORE_ACCEPT_NEW);
}

static void accept_case(struct fx *f, const char *case_id, const char *partner) {
  char body[256], msg[96];
  unsigned char hash[32];
  snprintf(body, sizeof body, "{\"case_id\":\"%s\"}", case_id);
  snprintf(msg, sizeof msg, "msg-%s", case_id);
  SHA256((const unsigned char *)body, strlen(body), hash);
  struct tb_store_case_new c = {.case_id = case_id, .partner = partner, .origin_region = "430603",
                                .target_region = "370683", .message_id = msg, .body_hash = hash,
                                .body = body, .body_len = strlen(body), .answer = "{}",
                                .now_ms = T0};
  int r[2] = {0, -1};
  assert_int_equal(tb_store_case_accept(f->st, &c, on_acc, r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r[0], 1);
  assert_int_equal(r[1], 0);
}

struct in_res {
  int calls, rc;
  enum tb_inbound_outcome outcome;
  char receipt[TB_STORE_RECEIPT_MAX];
  int receipt_null;
  int64_t seq;
  char err[TB_ERRMSG_MAX];
};

static void on_inbound(int rc, enum tb_inbound_outcome outcome, const char *receipt, int64_t seq,
                       const char *errmsg, void *ud) {
  struct in_res *r = ud;
  r->calls++;
  r->rc = rc;
  r->outcome = outcome;
  r->receipt_null = receipt == NULL;
  snprintf(r->receipt, sizeof r->receipt, "%s", receipt ? receipt : "");
  r->seq = seq;
  snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : "");
}

static struct in_res record(struct fx *f, const struct tb_store_inbound_new *m) {
  struct in_res r;
  memset(&r, 0, sizeof r);
  assert_int_equal(tb_store_inbound_record(f->st, m, on_inbound, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  return r;
}

static const char status_json[] =
    "{\"case_id\":\"OUR-1\",\"receipt_no\":\"LZ-0001\",\"status\":\"accepted\","
    "\"opinion\":\"材料齐全\",\"supplement\":[],\"tracking_no\":null,\"licence_no\":null,"
    "\"at\":\"2024-05-06T11:00:00+08:00\"}";
static const char status_raw[] = "<notify><status>01</status></notify>";

static struct tb_store_inbound_new status_msg(const char *message_id, const char *nonce) {
  struct tb_store_inbound_new m = {
      .partner = "lu", .message_id = message_id, .nonce = nonce, .sent_ms = T0 + 1000,
      .window_ms = WINDOW, .kind = TB_INBOUND_STATUS, .msg_type = TB_MSG_STATUS_NOTIFY,
      .case_id = "OUR-1", .receipt_no = "LZ-0001", .canonical = status_json,
      .canonical_len = strlen(status_json), .raw = (const unsigned char *)status_raw,
      .raw_len = strlen(status_raw), .content_type = "application/xml", .verified = 1,
      .verify_detail = "CN=laizhou", .now_ms = T0 + 1000};
  return m;
}

static const char case_json[] =
    "{\"schema\":\"tongban.case/v1\",\"case_id\":\"370683-20240506-000007\","
    "\"origin_region\":\"370683\",\"target_region\":\"430603\",\"item\":{\"code\":\"X\"}}";
static const char case_raw[] = "<case id=\"370683-20240506-000007\"/>";

static struct tb_store_inbound_new case_msg(const char *partner, const char *message_id,
                                            const char *receipt) {
  struct tb_store_inbound_new m = {
      .partner = partner, .message_id = message_id, .nonce = "", .sent_ms = T0,
      .window_ms = WINDOW, .kind = TB_INBOUND_CASE, .msg_type = TB_MSG_CASE_SUBMIT,
      .case_id = "370683-20240506-000007", .canonical = case_json,
      .canonical_len = strlen(case_json), .raw = (const unsigned char *)case_raw,
      .raw_len = strlen(case_raw), .content_type = "application/xml", .verified = 1,
      .our_receipt_no = receipt, .now_ms = T0 + 10};
  return m;
}

struct view_res {
  int rc;
  char case_id[64], partner[16], message_id[64], origin[16], target[16], receipt[64], status[32];
  char body[512];
  size_t n;
  char kind[8][32], ev_status[8][32], detail[8][512];
};

static void on_view(int rc, const struct tb_store_inbound_view *v, const char *errmsg, void *ud) {
  (void)errmsg;
  struct view_res *r = ud;
  r->rc = rc;
  if (rc) {
    assert_null(v);
    return;
  }
  snprintf(r->case_id, sizeof r->case_id, "%s", v->case_id);
  snprintf(r->partner, sizeof r->partner, "%s", v->partner);
  snprintf(r->message_id, sizeof r->message_id, "%s", v->message_id ? v->message_id : "(null)");
  snprintf(r->origin, sizeof r->origin, "%s", v->origin_region ? v->origin_region : "(null)");
  snprintf(r->target, sizeof r->target, "%s", v->target_region ? v->target_region : "(null)");
  snprintf(r->receipt, sizeof r->receipt, "%s", v->receipt_no);
  snprintf(r->status, sizeof r->status, "%s", v->status);
  assert_int_equal(strlen(v->body), v->body_len);
  snprintf(r->body, sizeof r->body, "%s", v->body);
  r->n = v->timeline_len;
  if (r->n == 0) assert_null(v->timeline);
  for (size_t i = 0; i < r->n && i < 8; i++) {
    snprintf(r->kind[i], 32, "%s", v->timeline[i].kind);
    snprintf(r->ev_status[i], 32, "%s", v->timeline[i].status ? v->timeline[i].status : "(null)");
    snprintf(r->detail[i], 512, "%s", v->timeline[i].detail);
    if (i > 0) assert_true(v->timeline[i].seq > v->timeline[i - 1].seq);
  }
}

static struct view_res *inbound_get(struct fx *f, const char *case_id) {
  static struct view_res r;
  memset(&r, 0, sizeof r);
  r.rc = 1;
  assert_int_equal(tb_store_inbound_get(f->st, case_id, on_view, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return &r;
}

struct case_res {
  int rc;
  char status[32], receipt[64];
  size_t n;
  char kind[8][32], ev_status[8][32], detail[8][512];
};

static void on_case(int rc, const struct tb_store_case_view *v, const char *errmsg, void *ud) {
  (void)errmsg;
  struct case_res *r = ud;
  r->rc = rc;
  if (rc) return;
  snprintf(r->status, sizeof r->status, "%s", v->status);
  snprintf(r->receipt, sizeof r->receipt, "%s", v->receipt_no ? v->receipt_no : "(null)");
  r->n = v->timeline_len;
  for (size_t i = 0; i < r->n && i < 8; i++) {
    snprintf(r->kind[i], 32, "%s", v->timeline[i].kind);
    snprintf(r->ev_status[i], 32, "%s", v->timeline[i].status ? v->timeline[i].status : "(null)");
    snprintf(r->detail[i], 512, "%s", v->timeline[i].detail);
  }
}

static struct case_res *get_case(struct fx *f, const char *case_id) {
  static struct case_res r;
  memset(&r, 0, sizeof r);
  assert_int_equal(tb_store_case_get(f->st, case_id, on_case, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, 0);
  return &r;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_status_accepted_updates_case_and_event(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "OUR-1", "lu");
  struct tb_store_inbound_new m = status_msg("lu-msg-1", "n-1");
  struct in_res r = record(f, &m);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_INBOUND_ACCEPTED);
  assert_true(r.receipt_null);
  assert_true(r.seq > 0);
  assert_int_equal(tb_store_last_seq(f->st), r.seq);
  struct case_res *c = get_case(f, "OUR-1");
  assert_string_equal(c->status, "accepted");
  assert_string_equal(c->receipt, "LZ-0001");
  assert_int_equal(c->n, 2);
  assert_string_equal(c->kind[1], "case.status");
  assert_string_equal(c->ev_status[1], "accepted");
  assert_string_equal(c->detail[1],
                      "{\"opinion\":\"材料齐全\",\"supplement\":[],\"tracking_no\":null,"
                      "\"licence_no\":null,\"receipt_no\":\"LZ-0001\","
                      "\"at\":\"2024-05-06T11:00:00+08:00\"}");
  close_store(f);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM evidence WHERE direction = 'in'"
                                   " AND case_id = 'OUR-1' AND msg_type = 'STATUS_NOTIFY'"
                                   " AND message_id = 'lu-msg-1' AND verified = 1 AND inbound = 0"),
                   1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM inbound_messages"), 1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM inbound_nonces"), 1);
}

static void test_duplicate_message_id_changes_nothing(void **state) {
  struct fx *f = *state;
  open_store(f);
  struct tb_store_inbound_new m = case_msg("lu", "lu-msg-7", "GW-R-1");
  struct in_res r = record(f, &m);
  assert_int_equal(r.outcome, TB_INBOUND_ACCEPTED);
  assert_string_equal(r.receipt, "GW-R-1");
  close_store(f);
  int64_t before = rows_everywhere(f);
  open_store(f);

  /* The partner retries with the same message id: first receipt, nothing
   * new, whatever else the retry says. */
  m = case_msg("lu", "lu-msg-7", "GW-R-2");
  m.now_ms = T0 + 5000;
  r = record(f, &m);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_INBOUND_DUPLICATE);
  assert_string_equal(r.receipt, "GW-R-1");
  assert_int_equal(r.seq, 0);
  /* A status notification repeated: its message id wins over a new nonce. */
  accept_case(f, "OUR-1", "lu");
  struct tb_store_inbound_new s = status_msg("lu-msg-8", "n-8");
  assert_int_equal(record(f, &s).outcome, TB_INBOUND_ACCEPTED);
  close_store(f);
  int64_t mid = rows_everywhere(f);
  assert_true(mid > before);
  open_store(f);
  s.nonce = "n-9";
  s.now_ms += 10;
  r = record(f, &s);
  assert_int_equal(r.outcome, TB_INBOUND_DUPLICATE);
  assert_true(r.receipt_null);
  close_store(f);
  assert_int_equal(rows_everywhere(f), mid);

  /* The same message id from another partner is another message. */
  open_store(f);
  m = case_msg("zy", "lu-msg-7", "GW-R-3");
  r = record(f, &m);
  assert_int_equal(r.rc, TB_ECONFLICT); /* but lu already sent us that case */
  assert_non_null(strstr(r.err, "370683-20240506-000007"));
}

static void test_second_case_submit_under_new_message_id_is_duplicate(void **state) {
  struct fx *f = *state;
  open_store(f);
  struct tb_store_inbound_new m = case_msg("lu", "lu-msg-1", "GW-R-1");
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_ACCEPTED);
  close_store(f);
  int64_t before = rows_everywhere(f);
  open_store(f);
  m = case_msg("lu", "lu-msg-2", "GW-R-2");
  struct in_res r = record(f, &m);
  assert_int_equal(r.outcome, TB_INBOUND_DUPLICATE);
  assert_string_equal(r.receipt, "GW-R-1");
  close_store(f);
  assert_int_equal(rows_everywhere(f), before);
}

static void test_nonce_reuse_within_window_then_after(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "OUR-1", "lu");
  struct tb_store_inbound_new m = status_msg("m-1", "nonce-A");
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_ACCEPTED);
  close_store(f);
  int64_t before = rows_everywhere(f);
  open_store(f);

  /* The exact same request again (same message id AND nonce): the signed
   * headers are a replay, which the receiver sees before the body. */
  m = status_msg("m-1", "nonce-A");
  m.now_ms = T0 + 2000;
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_NONCE_REUSED);

  /* A new message id with the same nonce, inside the window: replay. */
  m = status_msg("m-2", "nonce-A");
  m.now_ms = T0 + 1000 + WINDOW - 1;
  struct in_res r = record(f, &m);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_INBOUND_NONCE_REUSED);
  close_store(f);
  assert_int_equal(rows_everywhere(f), before);
  open_store(f);

  /* Once the window has passed, a copy could not pass the timestamp check
   * any more, so the nonce is free again. */
  m.now_ms = T0 + 1000 + WINDOW;
  m.sent_ms = m.now_ms;
  r = record(f, &m);
  assert_int_equal(r.outcome, TB_INBOUND_ACCEPTED);
  /* ... and remembered again from this sighting. */
  m = status_msg("m-3", "nonce-A");
  m.now_ms = T0 + 1000 + WINDOW + 10;
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_NONCE_REUSED);
  /* Nonces are per partner. */
  accept_case(f, "OUR-2", "zy");
  m = status_msg("zy-1", "nonce-A");
  m.partner = "zy";
  m.case_id = "OUR-2";
  m.now_ms = T0 + 1000 + WINDOW + 20;
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_ACCEPTED);
}

static void test_unknown_case_writes_nothing(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "OUR-1", "lu");
  close_store(f);
  int64_t before = rows_everywhere(f);
  open_store(f);
  struct tb_store_inbound_new m = status_msg("u-1", "un-1");
  m.case_id = "NOT-OURS";
  struct in_res r = record(f, &m);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_INBOUND_UNKNOWN_CASE);
  /* A case routed to another partner is unknown to this one. */
  m = status_msg("u-2", "un-2");
  m.partner = "zy";
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_UNKNOWN_CASE);
  /* A withdraw for an inbound case we do not have. */
  m = status_msg("u-3", "");
  m.kind = TB_INBOUND_OTHER;
  m.msg_type = TB_MSG_CASE_WITHDRAW;
  m.canonical = "{\"case_id\":\"OUR-1\"}";
  m.canonical_len = strlen(m.canonical);
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_UNKNOWN_CASE);
  close_store(f);
  assert_int_equal(rows_everywhere(f), before);
  /* The unknown message's id was not remembered: a later, valid use of
   * it is not a duplicate. */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM inbound_messages"), 0);
}

static void test_invalid_bodies_refused_without_writing(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "OUR-1", "lu");
  close_store(f);
  int64_t before = rows_everywhere(f);
  open_store(f);
  struct tb_store_inbound_new m = status_msg("b-1", "bn-1");
  m.canonical = "{\"case_id\":\"OUR-1\",\"status\":\"delivered\"}"; /* not a business status */
  m.canonical_len = strlen(m.canonical);
  struct in_res r = record(f, &m);
  assert_int_equal(r.rc, TB_EVALIDATE);
  assert_non_null(strstr(r.err, "OUR-1"));
  m.canonical = "{\"case_id\":";
  m.canonical_len = strlen(m.canonical);
  assert_int_equal(record(f, &m).rc, TB_EPARSE);
  m.canonical = "[1,2]";
  m.canonical_len = strlen(m.canonical);
  assert_int_equal(record(f, &m).rc, TB_EPARSE);
  close_store(f);
  assert_int_equal(rows_everywhere(f), before);
  open_store(f);

  /* Refused at the call: the callback never runs. */
  m = case_msg("lu", "x", NULL);
  assert_int_equal(tb_store_inbound_record(f->st, &m, on_inbound, NULL), TB_EINVAL);
  char longr[TB_STORE_RECEIPT_MAX + 1];
  memset(longr, 'r', sizeof longr - 1);
  longr[sizeof longr - 1] = '\0';
  m = case_msg("lu", "x", longr);
  assert_int_equal(tb_store_inbound_record(f->st, &m, on_inbound, NULL), TB_EINVAL);
  m = case_msg("lu", "x", "R");
  m.kind = TB_INBOUND_REFUSED;
  assert_int_equal(tb_store_inbound_record(f->st, &m, on_inbound, NULL), TB_EINVAL);
  m = case_msg("lu", "x", "R");
  m.kind = TB_INBOUND_OTHER;
  m.msg_type = (enum tb_msg_type)0;
  assert_int_equal(tb_store_inbound_record(f->st, &m, on_inbound, NULL), TB_EINVAL);
}

struct feed_res {
  size_t n;
  char kind[32];
};

static void on_feed(int rc, const struct tb_store_event *ev, size_t n, int64_t last,
                    const char *e, void *ud) {
  (void)last;
  (void)e;
  assert_int_equal(rc, 0);
  struct feed_res *feed = ud;
  feed->n = n;
  if (n) snprintf(feed->kind, sizeof feed->kind, "%s", ev[n - 1].kind);
}

static void test_inbound_case_insert_get_event(void **state) {
  struct fx *f = *state;
  open_store(f);
  struct view_res *v = inbound_get(f, "370683-20240506-000007");
  assert_int_equal(v->rc, TB_ENOTFOUND);
  struct tb_store_inbound_new m = case_msg("lu", "lu-msg-1", "GW-R-1");
  struct in_res r = record(f, &m);
  assert_int_equal(r.outcome, TB_INBOUND_ACCEPTED);
  assert_string_equal(r.receipt, "GW-R-1");
  assert_true(r.seq > 0);
  v = inbound_get(f, "370683-20240506-000007");
  assert_int_equal(v->rc, 0);
  assert_string_equal(v->partner, "lu");
  assert_string_equal(v->message_id, "lu-msg-1");
  assert_string_equal(v->origin, "370683");
  assert_string_equal(v->target, "430603");
  assert_string_equal(v->receipt, "GW-R-1");
  assert_string_equal(v->status, "received");
  assert_string_equal(v->body, case_json);
  assert_int_equal(v->n, 1);
  assert_string_equal(v->kind[0], "inbound.case");
  assert_string_equal(v->ev_status[0], "received");
  assert_string_equal(v->detail[0], "{\"receipt_no\":\"GW-R-1\"}");

  /* It reaches the feed. */
  struct feed_res feed = {0, ""};
  assert_int_equal(tb_store_events_list(f->st, 0, 10, on_feed, &feed), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(feed.n, 1);
  assert_string_equal(feed.kind, "inbound.case");

  /* The partner withdraws it. */
  static const char wd[] = "{\"case_id\":\"370683-20240506-000007\",\"receipt_no\":\"GW-R-1\","
                           "\"reason\":\"申请人撤回\"}";
  struct tb_store_inbound_new w = case_msg("lu", "lu-msg-2", NULL);
  w.kind = TB_INBOUND_OTHER;
  w.msg_type = TB_MSG_CASE_WITHDRAW;
  w.canonical = wd;
  w.canonical_len = strlen(wd);
  w.now_ms = T0 + 20;
  r = record(f, &w);
  assert_int_equal(r.outcome, TB_INBOUND_ACCEPTED);
  assert_string_equal(r.receipt, "GW-R-1");
  v = inbound_get(f, "370683-20240506-000007");
  assert_string_equal(v->status, "withdrawn");
  assert_int_equal(v->n, 2);
  assert_string_equal(v->kind[1], "inbound.message");
  assert_string_equal(v->ev_status[1], "withdrawn");
  assert_string_equal(v->detail[1], wd);
}

struct claim_res {
  size_t n;
  int64_t id;
  int inbound;
  char body[256], receipt[64], origin[16], target[16];
  enum tb_msg_type type;
};

static void on_claim(int rc, const struct tb_store_claimed *m, size_t n, int64_t next,
                     const char *errmsg, void *ud) {
  (void)next;
  (void)errmsg;
  assert_int_equal(rc, 0);
  struct claim_res *r = ud;
  r->n = n;
  if (n == 0) return;
  r->id = m[0].outbox_id;
  r->inbound = m[0].inbound;
  r->type = m[0].msg_type;
  snprintf(r->body, sizeof r->body, "%s", m[0].body);
  snprintf(r->receipt, sizeof r->receipt, "%s", m[0].receipt_no ? m[0].receipt_no : "(null)");
  snprintf(r->origin, sizeof r->origin, "%s", m[0].origin_region ? m[0].origin_region : "(null)");
  snprintf(r->target, sizeof r->target, "%s", m[0].target_region ? m[0].target_region : "(null)");
}

static void on_enqueue(int rc, int64_t id, int64_t seq, const char *errmsg, void *ud) {
  int64_t *r = ud;
  r[0] = rc;
  r[1] = id;
  r[2] = seq;
  if (rc) print_message("      enqueue: %s\n", errmsg);
}

static void on_finish(int rc, int64_t seq, const char *errmsg, void *ud) {
  (void)errmsg;
  int64_t *r = ud;
  r[0] = rc;
  r[1] = seq;
}

/* Local software reports progress on a partner's case: the notification is
 * queued like any outbound message and shows in the inbound timeline. */
static void test_our_status_notification_for_inbound_case(void **state) {
  struct fx *f = *state;
  open_store(f);
  struct tb_store_inbound_new m = case_msg("lu", "lu-msg-1", "GW-R-1");
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_ACCEPTED);
  const char *cid = "370683-20240506-000007";
  static const char note[] = "{\"case_id\":\"370683-20240506-000007\",\"receipt_no\":\"GW-R-1\","
                             "\"status\":\"accepted\",\"opinion\":null,\"supplement\":[],"
                             "\"tracking_no\":null,\"licence_no\":null,"
                             "\"at\":\"2024-05-06T12:00:00+08:00\"}";
  int64_t e[3] = {1, 0, 0};
  assert_int_equal(tb_store_outbox_enqueue(f->st, cid, "lu", TB_MSG_STATUS_NOTIFY, "gw-note-1",
                                           note, T0 + 30, on_enqueue, e),
                   0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(e[0], 0);
  assert_true(e[1] > 0 && e[2] > 0);
  /* A bad status is refused. */
  int64_t bad[3] = {1, 0, 0};
  assert_int_equal(tb_store_outbox_enqueue(f->st, cid, NULL, TB_MSG_STATUS_NOTIFY, "gw-note-x",
                                           "{\"status\":\"queued\"}", T0 + 30, on_enqueue, bad),
                   0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(bad[0], TB_EVALIDATE);

  struct claim_res c;
  memset(&c, 0, sizeof c);
  assert_int_equal(tb_store_outbox_claim(f->st, "lu", T0 + 31, 10, on_claim, &c), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(c.n, 1);
  assert_int_equal(c.inbound, 1);
  assert_int_equal(c.type, TB_MSG_STATUS_NOTIFY);
  assert_string_equal(c.body, note);
  assert_string_equal(c.receipt, "GW-R-1");
  assert_string_equal(c.origin, "370683");
  assert_string_equal(c.target, "430603");

  static const char ack[] = "{\"code\":\"0000\"}";
  struct tb_store_delivery_result d = {
      .outbox_id = c.id, .verdict = TB_STORE_DELIVERED, .code = "0000",
      .ack = (const unsigned char *)ack, .ack_len = strlen(ack), .ack_verified = 1,
      .duration_ms = 3, .now_ms = T0 + 32};
  int64_t fr[2] = {1, 0};
  assert_int_equal(tb_store_outbox_finish(f->st, &d, on_finish, fr), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(fr[0], 0);
  assert_true(fr[1] > e[2]);

  struct view_res *v = inbound_get(f, cid);
  assert_string_equal(v->status, "accepted");
  assert_int_equal(v->n, 3);
  assert_string_equal(v->kind[1], "inbound.status");
  assert_string_equal(v->ev_status[1], "accepted");
  assert_string_equal(v->detail[1], note);
  assert_string_equal(v->kind[2], "inbound.notify");
  assert_string_equal(v->detail[2], "{\"msg_type\":\"STATUS_NOTIFY\",\"message_id\":\"gw-note-1\","
                                    "\"outcome\":\"delivered\",\"code\":\"0000\"}");
}

struct ev_res {
  size_t n;
  char direction[8][8], message_id[8][32];
  unsigned char raw[8][64];
  size_t raw_len[8];
  int verified[8], inbound[8];
  enum tb_msg_type type[8];
  int64_t at[8];
};

static void on_evidence(int rc, const struct tb_store_evidence *ev, size_t n, const char *errmsg,
                        void *ud) {
  (void)errmsg;
  assert_int_equal(rc, 0);
  struct ev_res *r = ud;
  r->n = n;
  if (n == 0) assert_null(ev);
  for (size_t i = 0; i < n && i < 8; i++) {
    snprintf(r->direction[i], 8, "%s", ev[i].direction);
    snprintf(r->message_id[i], 32, "%s", ev[i].message_id ? ev[i].message_id : "(null)");
    assert_true(ev[i].raw_len <= 64);
    memcpy(r->raw[i], ev[i].raw, ev[i].raw_len);
    r->raw_len[i] = ev[i].raw_len;
    r->verified[i] = ev[i].verified;
    r->inbound[i] = ev[i].inbound;
    r->type[i] = ev[i].msg_type;
    r->at[i] = ev[i].at_ms;
  }
}

static void test_evidence_list_oldest_first_bytes_exact(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "OUR-1", "lu");
  /* Our submit, answered with a binary (enveloped) receipt. */
  struct claim_res c;
  memset(&c, 0, sizeof c);
  assert_int_equal(tb_store_outbox_claim(f->st, "lu", T0, 10, on_claim, &c), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  static const unsigned char bin[] = {0x30, 0x82, 0x00, 0x01, 0xff, 0x00, 0x7f};
  struct tb_store_delivery_result d = {.outbox_id = c.id, .verdict = TB_STORE_DELIVERED,
                                       .code = "0000", .receipt_no = "LZ-0001", .ack = bin,
                                       .ack_len = sizeof bin,
                                       .ack_content_type = "application/octet-stream",
                                       .ack_verified = 1, .duration_ms = 9, .now_ms = T0 + 500};
  int64_t fr[2] = {1, 0};
  assert_int_equal(tb_store_outbox_finish(f->st, &d, on_finish, fr), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(fr[0], 0);
  /* Then the partner's notification, unsigned. */
  struct tb_store_inbound_new m = status_msg("lu-msg-1", "");
  m.verified = 0;
  m.verify_detail = "signature missing";
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_ACCEPTED);

  struct ev_res ev;
  memset(&ev, 0, sizeof ev);
  assert_int_equal(tb_store_evidence_list(f->st, "OUR-1", on_evidence, &ev), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(ev.n, 2);
  assert_string_equal(ev.direction[0], "out");
  assert_int_equal(ev.type[0], TB_MSG_CASE_SUBMIT);
  assert_string_equal(ev.message_id[0], "msg-OUR-1");
  assert_int_equal(ev.raw_len[0], sizeof bin);
  assert_memory_equal(ev.raw[0], bin, sizeof bin);
  assert_int_equal(ev.verified[0], 1);
  assert_int_equal(ev.at[0], T0 + 500);
  assert_string_equal(ev.direction[1], "in");
  assert_int_equal(ev.type[1], TB_MSG_STATUS_NOTIFY);
  assert_string_equal(ev.message_id[1], "lu-msg-1");
  assert_int_equal(ev.raw_len[1], strlen(status_raw));
  assert_memory_equal(ev.raw[1], status_raw, strlen(status_raw));
  assert_int_equal(ev.verified[1], 0);
  assert_int_equal(ev.inbound[1], 0);

  memset(&ev, 0, sizeof ev);
  ev.n = 99;
  assert_int_equal(tb_store_evidence_list(f->st, "NOBODY", on_evidence, &ev), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(ev.n, 0);
  close_store(f);

  /* Append-only, even for someone with the file. */
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_not_equal(sqlite3_exec(db, "UPDATE evidence SET verified = 1", NULL, NULL, NULL),
                       SQLITE_OK);
  assert_int_not_equal(sqlite3_exec(db, "DELETE FROM evidence", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM evidence"), 2);
}

/* Old nonces and message ids go, in later calls, without any timer. */
static void test_purge_of_old_nonces_and_message_ids(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "OUR-1", "lu");
  char id[32], nonce[32];
  for (int i = 0; i < 5; i++) {
    snprintf(id, sizeof id, "old-%d", i);
    snprintf(nonce, sizeof nonce, "old-n-%d", i);
    struct tb_store_inbound_new m = status_msg(id, nonce);
    assert_int_equal(record(f, &m).outcome, TB_INBOUND_ACCEPTED);
  }
  close_store(f);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM inbound_nonces"), 5);
  open_store(f);
  /* Two windows later (and more than a minute): the nonces are gone, the
   * message ids (30 days) stay and still answer duplicates. */
  struct tb_store_inbound_new m = status_msg("new-1", "new-n-1");
  m.now_ms = T0 + 1000 + 2 * WINDOW + 61000;
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_ACCEPTED);
  close_store(f);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM inbound_nonces"), 1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM inbound_messages"), 6);
  open_store(f);
  m = status_msg("old-0", "");
  m.now_ms = T0 + 1000 + 2 * WINDOW + 62000;
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_DUPLICATE);
  /* 30 days on, the message ids go too. */
  m = status_msg("new-2", "");
  m.now_ms = T0 + 31LL * 24 * 3600 * 1000;
  assert_int_equal(record(f, &m).outcome, TB_INBOUND_ACCEPTED);
  close_store(f);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM inbound_messages"), 1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM inbound_nonces"), 0);
}

int main(void) {
  const char *lvl = getenv("TB_TEST_LOG");
  int level = lvl ? tb_log_level_parse(lvl) : -1;
  tb_log_setup(2, level >= 0 ? (enum tb_log_level)level : TB_LOG_WARN);
  const char *filter = getenv("TB_TEST_FILTER");
  if (filter) cmocka_set_test_filter(filter);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_status_accepted_updates_case_and_event, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_duplicate_message_id_changes_nothing, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_second_case_submit_under_new_message_id_is_duplicate,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_nonce_reuse_within_window_then_after, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_unknown_case_writes_nothing, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_invalid_bodies_refused_without_writing, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_inbound_case_insert_get_event, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_our_status_notification_for_inbound_case, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_evidence_list_oldest_first_bytes_exact, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_purge_of_old_nonces_and_message_ids, fx_setup,
                                      fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
