/*
 * Unit tests for the store's delivery operations (schema 2): claiming the
 * outbound queue in order, finishing attempts, recovery after kill -9, dead
 * letters, queue statistics, listing cases, and the in-place upgrade of a
 * version 1 database. Real files in a temporary directory, a real libuv loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <setjmp.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "core/log.h"
#include "store/store.h"
#include "tbgw/error.h"

#define T0 1715000000000LL /* acceptance time of the test cases */

#include "store_fixture.h"

/* First column of the first row as text ("(null)" for NULL) into out. */
static char *db_str(const char *path, const char *sql, char *out, size_t size) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
    fail_msg("%s: %s", sql, sqlite3_errmsg(db));
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  const unsigned char *t = sqlite3_column_text(s, 0);
  snprintf(out, size, "%s", t ? (const char *)t : "(null)");
  sqlite3_finalize(s);
  sqlite3_close(db);
  return out;
}

static void db_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                   SQLITE_OK);
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("%s: %s", sql, msg);
  sqlite3_close(db);
}

/* ---- operations, run to completion ---------------------------------------- */

static void on_acc(int rc, enum tb_store_accept_outcome o, const char *a, int64_t seq,
                   const char *e, void *ud) {
  (void)a;
  (void)seq;
  (void)e;
  int *r = ud; /* r[0] calls, r[1] rc */
  r[0]++;
  r[1] = rc;
  assert_int_equal(o, TB_STORE_ACCEPT_NEW);
}

static void accept_case(struct fx *f, const char *case_id, const char *partner) {
  char body[256], msg[96], answer[128];
  unsigned char hash[32];
  snprintf(body, sizeof body, "{\"case_id\":\"%s\",\"schema\":\"tongban.case/v1\"}", case_id);
  snprintf(msg, sizeof msg, "msg-%s", case_id);
  snprintf(answer, sizeof answer, "{\"case_id\":\"%s\"}", case_id);
  SHA256((const unsigned char *)body, strlen(body), hash);
  struct tb_store_case_new c = {.case_id = case_id, .partner = partner, .origin_region = "430603",
                                .target_region = "370683", .message_id = msg, .body_hash = hash,
                                .body = body, .body_len = strlen(body), .answer = answer,
                                .now_ms = T0};
  int r[2] = {0, -1};
  assert_int_equal(tb_store_case_accept(f->st, &c, on_acc, r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r[0], 1);
  assert_int_equal(r[1], 0);
}

enum { MAXC = 64 };

struct claim_res {
  int calls, rc;
  size_t n;
  int64_t next_due;
  int64_t id[MAXC];
  char case_id[MAXC][64], message_id[MAXC][96], body[MAXC][256], receipt[MAXC][64];
  char origin[MAXC][16], target[MAXC][16], partner[MAXC][32];
  enum tb_msg_type type[MAXC];
  uint32_t attempts[MAXC];
  int inbound[MAXC];
  int64_t created_ms[MAXC];
};

static void on_claim(int rc, const struct tb_store_claimed *m, size_t n, int64_t next_due,
                     const char *errmsg, void *ud) {
  struct claim_res *r = ud;
  r->calls++;
  r->rc = rc;
  r->n = n;
  r->next_due = next_due;
  if (rc) print_message("      claim: %s\n", errmsg);
  if (n == 0) assert_null(m);
  for (size_t i = 0; i < n && i < MAXC; i++) {
    r->id[i] = m[i].outbox_id;
    snprintf(r->case_id[i], 64, "%s", m[i].case_id);
    snprintf(r->message_id[i], 96, "%s", m[i].message_id);
    assert_int_equal(strlen(m[i].body), m[i].body_len);
    snprintf(r->body[i], 256, "%s", m[i].body);
    snprintf(r->receipt[i], 64, "%s", m[i].receipt_no ? m[i].receipt_no : "(null)");
    snprintf(r->origin[i], 16, "%s", m[i].origin_region ? m[i].origin_region : "(null)");
    snprintf(r->target[i], 16, "%s", m[i].target_region ? m[i].target_region : "(null)");
    snprintf(r->partner[i], 32, "%s", m[i].partner);
    r->type[i] = m[i].msg_type;
    r->attempts[i] = m[i].attempts;
    r->inbound[i] = m[i].inbound;
    r->created_ms[i] = m[i].created_ms;
  }
}

static struct claim_res *claim(struct fx *f, const char *partner, int64_t now, size_t max) {
  static struct claim_res r;
  memset(&r, 0, sizeof r);
  assert_int_equal(tb_store_outbox_claim(f->st, partner, now, max, on_claim, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, 0);
  return &r;
}

struct rc_res {
  int calls, rc;
  int64_t a, b;
  size_t count;
  char err[TB_ERRMSG_MAX];
};

static void on_finish(int rc, int64_t seq, const char *errmsg, void *ud) {
  struct rc_res *r = ud;
  r->calls++;
  r->rc = rc;
  r->a = seq;
  snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : "");
  if (rc == 0) assert_null(errmsg);
}

static struct rc_res finish(struct fx *f, const struct tb_store_delivery_result *d) {
  struct rc_res r;
  memset(&r, 0, sizeof r);
  assert_int_equal(tb_store_outbox_finish(f->st, d, on_finish, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  return r;
}

static void delivered(struct fx *f, int64_t id, const char *receipt, int64_t now) {
  struct tb_store_delivery_result d = {.outbox_id = id, .verdict = TB_STORE_DELIVERED,
                                       .code = "0000", .text = "ok", .receipt_no = receipt,
                                       .duration_ms = 12, .now_ms = now};
  struct rc_res r = finish(f, &d);
  if (r.rc != 0) fail_msg("finish: %s", r.err);
}

static void failed(struct fx *f, int64_t id, int64_t now) {
  struct tb_store_delivery_result d = {.outbox_id = id, .verdict = TB_STORE_FAILED,
                                       .code = "4011", .text = "bad signature",
                                       .duration_ms = 5, .now_ms = now};
  struct rc_res r = finish(f, &d);
  if (r.rc != 0) fail_msg("finish: %s", r.err);
}

static void retry(struct fx *f, int64_t id, int64_t next, int64_t now) {
  struct tb_store_delivery_result d = {.outbox_id = id, .verdict = TB_STORE_RETRY,
                                       .next_attempt_ms = next, .reason = "HTTP 503",
                                       .code = "HTTP 503", .duration_ms = 30, .now_ms = now};
  struct rc_res r = finish(f, &d);
  if (r.rc != 0) fail_msg("finish: %s", r.err);
}

static void on_enqueue(int rc, int64_t id, int64_t seq, const char *errmsg, void *ud) {
  struct rc_res *r = ud;
  r->calls++;
  r->rc = rc;
  r->a = id;
  r->b = seq;
  snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : "");
}

static struct rc_res enqueue_msg(struct fx *f, const char *case_id, const char *partner,
                                 enum tb_msg_type t, const char *message_id, const char *payload,
                                 int64_t now) {
  struct rc_res r;
  memset(&r, 0, sizeof r);
  assert_int_equal(
      tb_store_outbox_enqueue(f->st, case_id, partner, t, message_id, payload, now, on_enqueue, &r),
      0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  return r;
}

static void on_count(int rc, size_t count, const char *errmsg, void *ud) {
  struct rc_res *r = ud;
  r->calls++;
  r->rc = rc;
  r->count = count;
  snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : "");
}

static size_t recover(struct fx *f) {
  struct rc_res r;
  memset(&r, 0, sizeof r);
  assert_int_equal(tb_store_outbox_recover(f->st, on_count, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, 0);
  return r.count;
}

static size_t replay(struct fx *f, const char *case_id, const char *partner, int64_t now) {
  struct rc_res r;
  memset(&r, 0, sizeof r);
  assert_int_equal(tb_store_dlq_replay(f->st, case_id, partner, now, on_count, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, 0);
  return r.count;
}

struct case_res {
  int rc;
  char status[32], receipt[64], last_error[128];
  size_t n;
  char kind[16][32], ev_status[16][32], detail[16][256];
  int64_t seq[16];
};

static void on_case(int rc, const struct tb_store_case_view *v, const char *errmsg, void *ud) {
  (void)errmsg;
  struct case_res *r = ud;
  r->rc = rc;
  if (rc) return;
  snprintf(r->status, sizeof r->status, "%s", v->status);
  snprintf(r->receipt, sizeof r->receipt, "%s", v->receipt_no ? v->receipt_no : "(null)");
  snprintf(r->last_error, sizeof r->last_error, "%s", v->last_error ? v->last_error : "(null)");
  r->n = v->timeline_len;
  for (size_t i = 0; i < v->timeline_len && i < 16; i++) {
    snprintf(r->kind[i], 32, "%s", v->timeline[i].kind);
    snprintf(r->ev_status[i], 32, "%s", v->timeline[i].status ? v->timeline[i].status : "(null)");
    snprintf(r->detail[i], 256, "%s", v->timeline[i].detail);
    r->seq[i] = v->timeline[i].seq;
  }
}

static struct case_res *get_case(struct fx *f, const char *case_id) {
  static struct case_res r;
  memset(&r, 0, sizeof r);
  r.rc = 1;
  assert_int_equal(tb_store_case_get(f->st, case_id, on_case, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, 0);
  return &r;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_claim_order_across_and_within_cases(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "A", "lu");
  accept_case(f, "B", "lu");
  accept_case(f, "Y", "yue");
  accept_case(f, "C", "lu");
  /* A's withdraw is queued after C: it must wait for A's submit. */
  struct rc_res e = enqueue_msg(f, "A", "lu", TB_MSG_CASE_WITHDRAW, "msg-A-w",
                                "{\"case_id\":\"A\",\"reason\":\"applicant asked\"}", T0 + 5);
  assert_int_equal(e.rc, 0);
  assert_true(e.a > 0);
  assert_int_equal(e.b, 0); /* no event for queuing a withdraw of our case */

  struct claim_res *r = claim(f, "lu", T0 + 10, 10);
  assert_int_equal(r->n, 3);
  assert_string_equal(r->case_id[0], "A");
  assert_string_equal(r->case_id[1], "B");
  assert_string_equal(r->case_id[2], "C");
  assert_true(r->id[0] < r->id[1] && r->id[1] < r->id[2]);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(r->type[i], TB_MSG_CASE_SUBMIT);
    assert_int_equal(r->attempts[i], 1);
    assert_int_equal(r->inbound[i], 0);
    assert_string_equal(r->receipt[i], "(null)");
    assert_string_equal(r->origin[i], "430603");
    assert_string_equal(r->target[i], "370683");
    assert_int_equal(r->created_ms[i], T0);
  }
  assert_string_equal(r->message_id[0], "msg-A");
  assert_string_equal(r->body[1], "{\"case_id\":\"B\",\"schema\":\"tongban.case/v1\"}");
  assert_int_equal(r->next_due, 0); /* nothing queued for later (W is due, but blocked) */
  int64_t id_a = r->id[0];

  /* Claimed means sending: a second claim returns none of them. */
  r = claim(f, "lu", T0 + 10, 10);
  assert_int_equal(r->n, 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE state = 'sending'"), 3);
  struct case_res *c = get_case(f, "A");
  assert_string_equal(c->status, "delivering");
  assert_int_equal(c->n, 2);
  assert_string_equal(c->ev_status[1], "delivering");
  assert_true(c->seq[1] > c->seq[0]);

  /* The other partner's queue is independent. */
  r = claim(f, "yue", T0 + 10, 10);
  assert_int_equal(r->n, 1);
  assert_string_equal(r->case_id[0], "Y");

  /* A's submit delivered: now its withdraw comes, with the receipt. */
  delivered(f, id_a, "R-A", T0 + 20);
  r = claim(f, "lu", T0 + 20, 10);
  assert_int_equal(r->n, 1);
  assert_string_equal(r->case_id[0], "A");
  assert_int_equal(r->type[0], TB_MSG_CASE_WITHDRAW);
  assert_string_equal(r->message_id[0], "msg-A-w");
  assert_string_equal(r->body[0], "{\"case_id\":\"A\",\"reason\":\"applicant asked\"}");
  assert_string_equal(r->receipt[0], "R-A");
  assert_int_equal(r->attempts[0], 1);
  /* Claiming a withdraw does not touch the case's status. */
  c = get_case(f, "A");
  assert_string_equal(c->status, "delivered");
}

static void test_claim_due_time_and_max(void **state) {
  struct fx *f = *state;
  open_store(f);
  char id[16];
  for (int i = 0; i < 5; i++) {
    snprintf(id, sizeof id, "D%d", i);
    accept_case(f, id, "lu");
  }
  /* Not due before its acceptance time. */
  struct claim_res *r = claim(f, "lu", T0 - 1, 10);
  assert_int_equal(r->n, 0);
  assert_int_equal(r->next_due, T0);

  r = claim(f, "lu", T0, 2);
  assert_int_equal(r->n, 2);
  assert_string_equal(r->case_id[0], "D0");
  assert_string_equal(r->case_id[1], "D1");
  int64_t d0 = r->id[0];
  /* D0 backs off: later cases do not wait for it. */
  retry(f, d0, T0 + 1000, T0 + 1);
  r = claim(f, "lu", T0 + 2, 10);
  assert_int_equal(r->n, 3);
  assert_string_equal(r->case_id[0], "D2");
  assert_int_equal(r->next_due, T0 + 1000);
  r = claim(f, "lu", T0 + 1000, 10);
  assert_int_equal(r->n, 1);
  assert_string_equal(r->case_id[0], "D0");
  assert_int_equal(r->attempts[0], 2);
  assert_string_equal(r->message_id[0], "msg-D0"); /* same id on every attempt */

  /* Bad arguments never run the callback. */
  assert_int_equal(tb_store_outbox_claim(f->st, "lu", T0, 0, on_claim, NULL), TB_EINVAL);
  assert_int_equal(tb_store_outbox_claim(f->st, "lu", T0, TB_STORE_CLAIM_MAX + 1, on_claim, NULL),
                   TB_EINVAL);
  assert_int_equal(tb_store_outbox_claim(f->st, NULL, T0, 1, on_claim, NULL), TB_EINVAL);
}

static void test_withdraw_waits_for_submit_through_retry_and_dead_letter(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "W1", "lu");
  assert_int_equal(enqueue_msg(f, "W1", NULL, TB_MSG_CASE_WITHDRAW, "msg-W1-w",
                               "{\"case_id\":\"W1\"}", T0 + 1).rc,
                   0);
  struct claim_res *r = claim(f, "lu", T0 + 1, 10);
  assert_int_equal(r->n, 1);
  int64_t submit = r->id[0];
  retry(f, submit, T0 + 100, T0 + 2);
  /* The submit is not due and the withdraw is behind it. */
  r = claim(f, "lu", T0 + 50, 10);
  assert_int_equal(r->n, 0);
  assert_int_equal(r->next_due, T0 + 100);
  r = claim(f, "lu", T0 + 100, 10);
  assert_int_equal(r->n, 1);
  assert_int_equal(r->type[0], TB_MSG_CASE_SUBMIT);
  assert_int_equal(r->attempts[0], 2);
  failed(f, submit, T0 + 101);
  /* A dead letter holds back the rest of its case. */
  r = claim(f, "lu", T0 + 200, 10);
  assert_int_equal(r->n, 0);
  assert_int_equal(replay(f, "W1", NULL, T0 + 300), 1);
  r = claim(f, "lu", T0 + 300, 10);
  assert_int_equal(r->n, 1);
  assert_int_equal(r->type[0], TB_MSG_CASE_SUBMIT);
  assert_int_equal(r->attempts[0], 1); /* reset by the replay */
  delivered(f, submit, "R-W1", T0 + 301);
  r = claim(f, "lu", T0 + 302, 10);
  assert_int_equal(r->n, 1);
  assert_int_equal(r->type[0], TB_MSG_CASE_WITHDRAW);
  struct case_res *c = get_case(f, "W1");
  /* queued, delivering, failed, queued (replayed), delivering, delivered */
  assert_int_equal(c->n, 6);
  assert_string_equal(c->ev_status[2], "failed");
  assert_string_equal(c->ev_status[3], "queued");
  assert_string_equal(c->detail[3], "{\"replayed\":true}");
  assert_string_equal(c->ev_status[4], "delivering");
  assert_string_equal(c->ev_status[5], "delivered");
}

struct ev_res {
  size_t n;
  int64_t id[8];
  char direction[8][8], code[8][16], raw[8][64], ctype[8][48], detail[8][48], msg_id[8][64];
  int verified[8];
  uint32_t attempt[8];
  int64_t duration[8];
  enum tb_msg_type type[8];
};

static void on_evidence(int rc, const struct tb_store_evidence *ev, size_t n, const char *errmsg,
                        void *ud) {
  (void)errmsg;
  assert_int_equal(rc, 0);
  struct ev_res *r = ud;
  r->n = n;
  for (size_t i = 0; i < n && i < 8; i++) {
    r->id[i] = ev[i].id;
    snprintf(r->direction[i], 8, "%s", ev[i].direction);
    snprintf(r->code[i], 16, "%s", ev[i].code ? ev[i].code : "(null)");
    assert_true(ev[i].raw_len < 64);
    memcpy(r->raw[i], ev[i].raw, ev[i].raw_len);
    r->raw[i][ev[i].raw_len] = '\0';
    snprintf(r->ctype[i], 48, "%s", ev[i].content_type ? ev[i].content_type : "(null)");
    snprintf(r->detail[i], 48, "%s", ev[i].verify_detail ? ev[i].verify_detail : "(null)");
    snprintf(r->msg_id[i], 64, "%s", ev[i].message_id ? ev[i].message_id : "(null)");
    r->verified[i] = ev[i].verified;
    r->attempt[i] = ev[i].attempt;
    r->duration[i] = ev[i].duration_ms;
    r->type[i] = ev[i].msg_type;
  }
}

static void test_finish_verdicts_status_events_evidence(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "F-OK", "lu");
  accept_case(f, "F-BAD", "lu");
  struct claim_res *r = claim(f, "lu", T0, 10);
  assert_int_equal(r->n, 2);
  int64_t ok = r->id[0], bad = r->id[1];

  /* A retry that got an (unsigned) answer: evidence, no event. */
  static const char busy[] = "<busy/>";
  struct tb_store_delivery_result d = {
      .outbox_id = ok, .verdict = TB_STORE_RETRY, .next_attempt_ms = T0 + 10,
      .reason = "partner busy", .code = "9999", .text = "busy",
      .ack = (const unsigned char *)busy, .ack_len = strlen(busy),
      .ack_content_type = "application/xml", .ack_verified = 0,
      .ack_verify_detail = "no signature", .duration_ms = 40, .now_ms = T0 + 1};
  struct rc_res fr = finish(f, &d);
  assert_int_equal(fr.rc, 0);
  assert_int_equal(fr.a, 0);
  struct case_res *c = get_case(f, "F-OK");
  assert_string_equal(c->status, "delivering");
  assert_string_equal(c->last_error, "9999: partner busy");
  assert_int_equal(c->n, 2);
  char buf[128];
  assert_string_equal(db_str(f->path, "SELECT last_error FROM outbox WHERE message_id = 'msg-F-OK'",
                             buf, sizeof buf),
                      "partner busy");
  /* Finishing it again is refused: it is queued, not sending. */
  fr = finish(f, &d);
  assert_int_equal(fr.rc, TB_ECONFLICT);
  assert_non_null(strstr(fr.err, "not 'sending'"));
  d.outbox_id = 999999;
  fr = finish(f, &d);
  assert_int_equal(fr.rc, TB_ENOTFOUND);

  /* Delivered, with a signed receipt. */
  r = claim(f, "lu", T0 + 10, 10);
  assert_int_equal(r->n, 1);
  static const char receipt[] = "<ok code=\"0000\">R-1</ok>";
  struct tb_store_delivery_result d2 = {
      .outbox_id = ok, .verdict = TB_STORE_DELIVERED, .code = "0000", .text = "received",
      .receipt_no = "R-1", .ack = (const unsigned char *)receipt, .ack_len = strlen(receipt),
      .ack_content_type = "application/xml", .ack_verified = 1,
      .ack_verify_detail = "CN=laizhou", .duration_ms = 55, .now_ms = T0 + 11};
  fr = finish(f, &d2);
  assert_int_equal(fr.rc, 0);
  assert_true(fr.a > 0);
  c = get_case(f, "F-OK");
  assert_string_equal(c->status, "delivered");
  assert_string_equal(c->receipt, "R-1");
  assert_string_equal(c->last_error, "(null)");
  assert_int_equal(c->n, 3);
  assert_int_equal(c->seq[2], fr.a);
  assert_string_equal(c->kind[2], "case.status");
  assert_string_equal(c->detail[2], "{\"receipt_no\":\"R-1\",\"code\":\"0000\"}");
  assert_int_equal(tb_store_last_seq(f->st), fr.a);

  struct ev_res ev;
  memset(&ev, 0, sizeof ev);
  assert_int_equal(tb_store_evidence_list(f->st, "F-OK", on_evidence, &ev), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(ev.n, 2);
  assert_true(ev.id[0] < ev.id[1]);
  assert_string_equal(ev.direction[0], "out");
  assert_string_equal(ev.raw[0], busy);
  assert_int_equal(ev.verified[0], 0);
  assert_string_equal(ev.code[0], "9999");
  assert_int_equal(ev.attempt[0], 1);
  assert_int_equal(ev.duration[0], 40);
  assert_string_equal(ev.raw[1], receipt);
  assert_int_equal(ev.verified[1], 1);
  assert_string_equal(ev.detail[1], "CN=laizhou");
  assert_string_equal(ev.ctype[1], "application/xml");
  assert_string_equal(ev.msg_id[1], "msg-F-OK");
  assert_int_equal(ev.type[1], TB_MSG_CASE_SUBMIT);
  assert_int_equal(ev.attempt[1], 2);

  /* Failed: dead letter, case failed, evidence of the refusal. */
  static const char refusal[] = "<err code=\"4011\"/>";
  struct tb_store_delivery_result d3 = {
      .outbox_id = bad, .verdict = TB_STORE_FAILED, .code = "4011", .text = "bad signature",
      .ack = (const unsigned char *)refusal, .ack_len = strlen(refusal), .ack_verified = 1,
      .duration_ms = 7, .now_ms = T0 + 12};
  fr = finish(f, &d3);
  assert_int_equal(fr.rc, 0);
  c = get_case(f, "F-BAD");
  assert_string_equal(c->status, "failed");
  assert_string_equal(c->last_error, "4011: bad signature");
  assert_string_equal(c->detail[c->n - 1], "{\"code\":\"4011\",\"text\":\"bad signature\"}");
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE state = 'failed'"), 1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM evidence WHERE case_id = 'F-BAD'"), 1);

  /* A withdraw's outcome is a case.message event; a failed withdraw does
   * not make the delivered case 'failed'. */
  assert_int_equal(enqueue_msg(f, "F-OK", "lu", TB_MSG_CASE_WITHDRAW, "msg-F-OK-w1", "{}", T0 + 20).rc, 0);
  assert_int_equal(enqueue_msg(f, "F-OK", "lu", TB_MSG_CASE_WITHDRAW, "msg-F-OK-w2", "{}", T0 + 20).rc, 0);
  r = claim(f, "lu", T0 + 20, 10);
  assert_int_equal(r->n, 1);
  delivered(f, r->id[0], NULL, T0 + 21);
  r = claim(f, "lu", T0 + 21, 10);
  assert_int_equal(r->n, 1);
  assert_string_equal(r->message_id[0], "msg-F-OK-w2");
  failed(f, r->id[0], T0 + 22);
  c = get_case(f, "F-OK");
  assert_string_equal(c->status, "delivered");
  assert_string_equal(c->last_error, "4011: bad signature");
  assert_int_equal(c->n, 5);
  assert_string_equal(c->kind[3], "case.message");
  assert_string_equal(c->ev_status[3], "(null)");
  assert_string_equal(c->detail[3], "{\"msg_type\":\"CASE_WITHDRAW\",\"message_id\":\"msg-F-OK-w1\","
                                    "\"outcome\":\"delivered\",\"code\":\"0000\"}");
  assert_string_equal(c->detail[4], "{\"msg_type\":\"CASE_WITHDRAW\",\"message_id\":\"msg-F-OK-w2\","
                                    "\"outcome\":\"failed\",\"code\":\"4011\",\"text\":\"bad signature\"}");
}

/* A partner's status notification may land before the delivery's own
 * answer: the later 'delivered' must not overwrite 'accepted'. */
static void test_delivered_does_not_overwrite_business_status(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "RACE", "lu");
  struct claim_res *r = claim(f, "lu", T0, 1);
  int64_t id = r->id[0];
  close_store(f);
  db_exec(f->path, "UPDATE cases SET status = 'accepted' WHERE case_id = 'RACE'");
  open_store(f);
  delivered(f, id, "R-RACE", T0 + 1);
  struct case_res *c = get_case(f, "RACE");
  assert_string_equal(c->status, "accepted");
  assert_string_equal(c->receipt, "R-RACE");
  assert_string_equal(c->kind[c->n - 1], "case.message");
}

struct dlq_res {
  size_t n;
  char case_id[8][32], partner[8][16], message_id[8][48], last_error[8][64], last_code[8][16];
  uint32_t attempts[8];
  int64_t failed_ms[8];
  enum tb_msg_type type[8];
};

static void on_dlq(int rc, const struct tb_store_dead_letter *d, size_t n, const char *errmsg,
                   void *ud) {
  (void)errmsg;
  assert_int_equal(rc, 0);
  struct dlq_res *r = ud;
  r->n = n;
  for (size_t i = 0; i < n && i < 8; i++) {
    snprintf(r->case_id[i], 32, "%s", d[i].case_id);
    snprintf(r->partner[i], 16, "%s", d[i].partner);
    snprintf(r->message_id[i], 48, "%s", d[i].message_id);
    snprintf(r->last_error[i], 64, "%s", d[i].last_error ? d[i].last_error : "(null)");
    snprintf(r->last_code[i], 16, "%s", d[i].last_code ? d[i].last_code : "(null)");
    r->attempts[i] = d[i].attempts;
    r->failed_ms[i] = d[i].failed_ms;
    r->type[i] = d[i].msg_type;
  }
}

static struct dlq_res *dlq_list(struct fx *f, const char *partner, size_t limit) {
  static struct dlq_res r;
  memset(&r, 0, sizeof r);
  r.n = 99;
  assert_int_equal(tb_store_dlq_list(f->st, partner, limit, on_dlq, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return &r;
}

static void test_dlq_list_and_replay(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "L1", "lu");
  accept_case(f, "Y1", "yue");
  accept_case(f, "L2", "lu");
  accept_case(f, "L3", "lu"); /* delivered: never a dead letter */
  struct claim_res *r = claim(f, "lu", T0, 10);
  int64_t l1 = r->id[0], l2 = r->id[1], l3 = r->id[2];
  r = claim(f, "yue", T0, 10);
  int64_t y1 = r->id[0];
  failed(f, l1, T0 + 1);
  failed(f, y1, T0 + 2);
  failed(f, l2, T0 + 3);
  delivered(f, l3, "R3", T0 + 4);

  struct dlq_res *d = dlq_list(f, NULL, 100);
  assert_int_equal(d->n, 3);
  assert_string_equal(d->case_id[0], "L1");
  assert_string_equal(d->case_id[1], "Y1");
  assert_string_equal(d->case_id[2], "L2");
  assert_string_equal(d->partner[1], "yue");
  assert_string_equal(d->message_id[0], "msg-L1");
  assert_string_equal(d->last_error[0], "bad signature");
  assert_string_equal(d->last_code[0], "4011");
  assert_int_equal(d->attempts[0], 1);
  assert_int_equal(d->failed_ms[2], T0 + 3);
  assert_int_equal(d->type[0], TB_MSG_CASE_SUBMIT);
  d = dlq_list(f, "lu", 100);
  assert_int_equal(d->n, 2);
  d = dlq_list(f, NULL, 1);
  assert_int_equal(d->n, 1);
  d = dlq_list(f, "nobody", 10);
  assert_int_equal(d->n, 0);

  assert_int_equal(replay(f, "L2", NULL, T0 + 10), 1);
  assert_int_equal(replay(f, "L2", NULL, T0 + 10), 0); /* nothing left to replay */
  assert_int_equal(replay(f, NULL, "yue", T0 + 11), 1);
  assert_string_equal(get_case(f, "L2")->status, "queued");
  assert_string_equal(get_case(f, "Y1")->status, "queued");
  assert_string_equal(get_case(f, "L1")->status, "failed");
  struct case_res *c = get_case(f, "Y1");
  assert_string_equal(c->detail[c->n - 1], "{\"replayed\":true}");
  assert_int_equal(db_int(f->path, "SELECT attempts FROM outbox WHERE message_id = 'msg-L2'"), 0);
  assert_int_equal(db_int(f->path, "SELECT next_attempt_ms FROM outbox WHERE message_id = 'msg-L2'"),
                   T0 + 10);

  r = claim(f, "lu", T0 + 12, 10);
  assert_int_equal(r->n, 1);
  assert_string_equal(r->message_id[0], "msg-L2"); /* the same message id */
  assert_int_equal(replay(f, NULL, NULL, T0 + 13), 1); /* L1, the last one */
  assert_int_equal(dlq_list(f, NULL, 100)->n, 0);
}

struct stats_res {
  size_t n;
  char partner[4][16];
  uint64_t queued[4], sending[4], failed[4];
  int64_t oldest[4];
};

static void on_stats(int rc, const struct tb_store_queue_stat *s, size_t n, const char *errmsg,
                     void *ud) {
  (void)errmsg;
  assert_int_equal(rc, 0);
  struct stats_res *r = ud;
  r->n = n;
  for (size_t i = 0; i < n && i < 4; i++) {
    snprintf(r->partner[i], 16, "%s", s[i].partner);
    r->queued[i] = s[i].queued;
    r->sending[i] = s[i].sending;
    r->failed[i] = s[i].failed;
    r->oldest[i] = s[i].oldest_queued_ms;
  }
}

static struct stats_res *stats(struct fx *f) {
  static struct stats_res r;
  memset(&r, 0, sizeof r);
  assert_int_equal(tb_store_queue_stats(f->st, on_stats, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return &r;
}

static void test_queue_stats(void **state) {
  struct fx *f = *state;
  open_store(f);
  assert_int_equal(stats(f)->n, 0);
  char id[16];
  for (int i = 0; i < 6; i++) {
    snprintf(id, sizeof id, "S%d", i);
    accept_case(f, id, "lu");
  }
  accept_case(f, "SY", "yue");
  struct claim_res *r = claim(f, "lu", T0, 3);
  int64_t s0 = r->id[0], s1 = r->id[1];
  failed(f, s0, T0 + 1);
  delivered(f, s1, "R", T0 + 1);
  struct stats_res *st = stats(f);
  assert_int_equal(st->n, 2);
  assert_string_equal(st->partner[0], "lu");
  assert_int_equal(st->queued[0], 3);
  assert_int_equal(st->sending[0], 1);
  assert_int_equal(st->failed[0], 1);
  assert_int_equal(st->oldest[0], T0);
  assert_string_equal(st->partner[1], "yue");
  assert_int_equal(st->queued[1], 1);
  /* The counts kept by triggers agree with the table. */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE partner = 'lu' AND state = 'queued'"), 3);
  r = claim(f, "lu", T0 + 2, 10);
  r = claim(f, "yue", T0 + 2, 10);
  st = stats(f);
  assert_int_equal(st->queued[0], 0);
  assert_int_equal(st->sending[0], 4);
  assert_int_equal(st->oldest[0], 0);
  assert_int_equal(st->queued[1], 0);
  assert_int_equal(st->sending[1], 1);
}

static void test_enqueue_errors(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "E1", "lu");
  struct rc_res r = enqueue_msg(f, "NOPE", NULL, TB_MSG_CASE_WITHDRAW, "m1", "{}", T0);
  assert_int_equal(r.rc, TB_ENOTFOUND);
  assert_non_null(strstr(r.err, "NOPE"));
  r = enqueue_msg(f, "E1", "yue", TB_MSG_CASE_WITHDRAW, "m1", "{}", T0);
  assert_int_equal(r.rc, TB_ECONFLICT);
  r = enqueue_msg(f, "E1", "lu", TB_MSG_CASE_SUPPLEMENT, "msg-E1", "{}", T0);
  assert_int_equal(r.rc, TB_EEXISTS); /* the submit's message id */
  /* STATUS_NOTIFY concerns a partner's case; E1 is ours. */
  r = enqueue_msg(f, "E1", NULL, TB_MSG_STATUS_NOTIFY, "m2", "{\"status\":\"accepted\"}", T0);
  assert_int_equal(r.rc, TB_ENOTFOUND);
  assert_int_equal(tb_store_outbox_enqueue(f->st, "E1", NULL, TB_MSG_CASE_SUBMIT, "m3", "{}", T0,
                                           on_enqueue, NULL),
                   TB_EINVAL);
  assert_int_equal(tb_store_outbox_enqueue(f->st, "E1", NULL, (enum tb_msg_type)9, "m3", "{}", T0,
                                           on_enqueue, NULL),
                   TB_EINVAL);
  assert_int_equal(tb_store_outbox_enqueue(f->st, "E1", NULL, TB_MSG_CASE_WITHDRAW, "m3", NULL, T0,
                                           on_enqueue, NULL),
                   TB_EINVAL);
  close_store(f);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox"), 1);
}

/* Commit hook and last_seq follow events written by the new operations. */
static int64_t g_hook_seq;
static void on_commit(int64_t last_seq, size_t ops, uint64_t ns, void *ud) {
  (void)ops;
  (void)ns;
  (void)ud;
  assert_true(last_seq >= g_hook_seq);
  g_hook_seq = last_seq;
}

static void test_events_from_new_ops_reach_commit_hook(void **state) {
  struct fx *f = *state;
  open_store(f);
  g_hook_seq = 0;
  tb_store_on_commit(f->st, on_commit, NULL);
  accept_case(f, "H1", "lu");
  struct claim_res *r = claim(f, "lu", T0, 10);
  int64_t max_seq = db_int(f->path, "SELECT max(seq) FROM events");
  assert_int_equal(g_hook_seq, max_seq);
  assert_int_equal(tb_store_last_seq(f->st), max_seq);
  delivered(f, r->id[0], "R", T0 + 1);
  max_seq = db_int(f->path, "SELECT max(seq) FROM events");
  assert_int_equal(g_hook_seq, max_seq);
  assert_int_equal(tb_store_last_seq(f->st), max_seq);
  assert_int_equal(max_seq, 3);
}

struct list_res {
  size_t n;
  char case_id[16][16], status[16][16];
};

static void on_list(int rc, const struct tb_store_case_view *v, size_t n, const char *errmsg,
                    void *ud) {
  (void)errmsg;
  assert_int_equal(rc, 0);
  struct list_res *r = ud;
  r->n = n;
  for (size_t i = 0; i < n && i < 16; i++) {
    snprintf(r->case_id[i], 16, "%s", v[i].case_id);
    snprintf(r->status[i], 16, "%s", v[i].status);
    assert_null(v[i].timeline);
    assert_int_equal(v[i].timeline_len, 0);
  }
}

static struct list_res *list(struct fx *f, const char *status, const char *partner,
                             int64_t since, size_t limit) {
  static struct list_res r;
  memset(&r, 0, sizeof r);
  struct tb_store_case_filter flt = {status, partner, since, limit};
  assert_int_equal(tb_store_cases_list(f->st, &flt, on_list, &r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  return &r;
}

static void test_cases_list_filters(void **state) {
  struct fx *f = *state;
  open_store(f);
  accept_case(f, "K1", "lu");
  accept_case(f, "K2", "yue");
  accept_case(f, "K3", "lu");
  struct claim_res *r = claim(f, "lu", T0 + 5, 1); /* K1 → delivering at T0+5 */
  (void)r;
  struct list_res *l = list(f, NULL, NULL, 0, 0);
  assert_int_equal(l->n, 3);
  assert_string_equal(l->case_id[0], "K1"); /* most recently changed first */
  l = list(f, "queued", NULL, 0, 0);
  assert_int_equal(l->n, 2);
  l = list(f, "queued", "lu", 0, 0);
  assert_int_equal(l->n, 1);
  assert_string_equal(l->case_id[0], "K3");
  l = list(f, NULL, "lu", 0, 0);
  assert_int_equal(l->n, 2);
  l = list(f, NULL, NULL, T0 + 1, 0);
  assert_int_equal(l->n, 1);
  assert_string_equal(l->status[0], "delivering");
  l = list(f, NULL, NULL, 0, 2);
  assert_int_equal(l->n, 2);
  l = list(f, "approved", NULL, 0, 10);
  assert_int_equal(l->n, 0);
}

/* ---- crash: kill -9 with messages claimed ---------------------------------- */

enum { KILL_N = 20 };

static int g_pipe_fd;

static void child_on_claim(int rc, const struct tb_store_claimed *m, size_t n, int64_t next,
                           const char *errmsg, void *ud) {
  (void)m;
  (void)next;
  (void)errmsg;
  (void)ud;
  if (rc != 0 || n != KILL_N) _exit(3);
  if (write(g_pipe_fd, "claimed\n", 8) != 8) _exit(4);
  for (;;) pause(); /* "sending" forever, until SIGKILL */
}

static void run_child(const struct fx *parent, int fd) {
  g_pipe_fd = fd;
  /* A loop of its own: the parent's epoll instance is shared after fork. */
  static struct fx cf;
  cf = *parent;
  struct fx *f = &cf;
  if (uv_loop_init(&f->loop) != 0) _exit(6);
  open_store(f);
  for (int i = 0; i < KILL_N; i++) {
    char id[16];
    snprintf(id, sizeof id, "KC-%02d", i);
    accept_case(f, id, "lu");
  }
  if (tb_store_outbox_claim(f->st, "lu", T0, KILL_N, child_on_claim, NULL) != 0) _exit(5);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  _exit(7);
}

static void test_recover_after_kill9_while_sending(void **state) {
  struct fx *f = *state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    tb_log_setup(open("/dev/null", O_WRONLY), TB_LOG_ERROR);
    run_child(f, p[1]);
  }
  close(p[1]);
  char line[16] = "";
  ssize_t n = read(p[0], line, 8);
  close(p[0]);
  if (n != 8) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    fail_msg("child did not claim (read %zd)", n);
  }
  assert_int_equal(kill(pid, SIGKILL), 0);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  /* The claim was committed before its callback ran. */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE state = 'sending'"), KILL_N);

  open_store(f);
  /* Nothing can be claimed until recovered: those messages are 'sending'. */
  assert_int_equal(claim(f, "lu", T0 + 1, 100)->n, 0);
  assert_int_equal(recover(f), KILL_N);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE state = 'queued'"
                                   " AND attempts = 1 AND message_id = 'msg-' || case_id"),
                   KILL_N);
  assert_int_equal(recover(f), 0);
  struct claim_res *r = claim(f, "lu", T0 + 1, 100);
  assert_int_equal(r->n, KILL_N);
  assert_string_equal(r->case_id[0], "KC-00");
  assert_string_equal(r->message_id[0], "msg-KC-00");
  assert_int_equal(r->attempts[0], 2);
  /* Each case moved to delivering exactly once. */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM events WHERE status = 'delivering'"),
                   KILL_N);
}

/* ---- migration ----------------------------------------------------------- */

/* Version 1 exactly as released (sqlite_backend.c, migrations[0]). */
static const char v1_schema[] =
    "CREATE TABLE cases (case_id TEXT PRIMARY KEY NOT NULL, partner TEXT NOT NULL,"
    " origin_region TEXT, target_region TEXT, status TEXT NOT NULL, receipt_no TEXT,"
    " last_error TEXT, body_hash BLOB NOT NULL CHECK (length(body_hash) = 32),"
    " body TEXT NOT NULL, answer TEXT NOT NULL, created_ms INTEGER NOT NULL,"
    " updated_ms INTEGER NOT NULL);"
    "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
    " case_id TEXT, partner TEXT, status TEXT, detail TEXT NOT NULL DEFAULT '{}',"
    " at_ms INTEGER NOT NULL);"
    "CREATE INDEX events_case ON events (case_id);"
    "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " case_id TEXT NOT NULL REFERENCES cases (case_id), partner TEXT NOT NULL,"
    " msg_type TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE, state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_ms INTEGER NOT NULL, last_error TEXT,"
    " payload TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
    "CREATE INDEX outbox_claim ON outbox (partner, state, id);"
    "CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1), beat_ms INTEGER NOT NULL,"
    " beats INTEGER NOT NULL);"
    "INSERT INTO health (id, beat_ms, beats) VALUES (1, 0, 0);"
    "PRAGMA user_version = 1;";

static void test_v1_database_upgrades_in_place(void **state) {
  struct fx *f = *state;
  int fd = open(f->path, O_RDWR | O_CREAT, 0600); /* as tbgw v1 created it */
  assert_true(fd >= 0);
  close(fd);
  db_exec(f->path, "PRAGMA journal_mode = WAL");
  db_exec(f->path, v1_schema);
  /* Two cases from the v1 days; the outbox counter has moved past the rows
   * (ids are never reused, even if rows went away). */
  db_exec(f->path,
          "INSERT INTO cases VALUES ('V1-A', 'lu', '430603', '370683', 'queued', NULL, NULL,"
          " zeroblob(32), '{\"case_id\":\"V1-A\"}', '{\"a\":1}', 1, 1);"
          "INSERT INTO cases VALUES ('V1-B', 'yue', '430603', '440203', 'queued', NULL, NULL,"
          " zeroblob(32), '{\"case_id\":\"V1-B\"}', '{\"b\":1}', 2, 2);"
          "INSERT INTO events (kind, case_id, partner, status, at_ms) VALUES"
          " ('case.status', 'V1-A', 'lu', 'queued', 1), ('case.status', 'V1-B', 'yue', 'queued', 2);"
          "INSERT INTO outbox (id, case_id, partner, msg_type, message_id, state,"
          " next_attempt_ms, created_ms, updated_ms) VALUES"
          " (5, 'V1-A', 'lu', 'CASE_SUBMIT', 'msg-V1-A', 'queued', 1, 1, 1),"
          " (9, 'V1-B', 'yue', 'CASE_SUBMIT', 'msg-V1-B', 'queued', 2, 2, 2);"
          "UPDATE sqlite_sequence SET seq = 41 WHERE name = 'outbox';");
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), 1);

  open_store(f);
  assert_int_equal(tb_store_last_seq(f->st), 2);
  struct case_res *c = get_case(f, "V1-A");
  assert_string_equal(c->status, "queued");
  assert_int_equal(c->n, 1);
  struct claim_res *r = claim(f, "lu", 10, 10);
  assert_int_equal(r->n, 1);
  assert_int_equal(r->id[0], 5);
  assert_string_equal(r->message_id[0], "msg-V1-A");
  assert_string_equal(r->body[0], "{\"case_id\":\"V1-A\"}");
  assert_string_equal(get_case(f, "V1-A")->status, "delivering");
  struct stats_res *st = stats(f);
  assert_int_equal(st->n, 2);
  assert_int_equal(st->sending[0], 1);
  assert_int_equal(st->queued[1], 1);
  /* New rows continue after the carried-over counter. */
  struct rc_res e = enqueue_msg(f, "V1-B", "yue", TB_MSG_CASE_WITHDRAW, "msg-V1-B-w", "{}", 3);
  assert_int_equal(e.rc, 0);
  assert_int_equal(e.a, 42);
  accept_case(f, "V2-C", "lu");
  close_store(f);

  assert_int_equal(db_int(f->path, "PRAGMA user_version"), 2);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM cases"), 3);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox"), 4);
  assert_int_equal(db_int(f->path, "SELECT max(id) FROM outbox"), 43);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_foreign_key_list('outbox')"), 0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM sqlite_schema WHERE name = 'outbox_v2'"
                                   " OR name = 'outbox_claim'"),
                   0);
  char buf[32];
  assert_string_equal(db_str(f->path, "PRAGMA integrity_check", buf, sizeof buf), "ok");
  /* And it opens again as version 2 without migrating twice. */
  open_store(f);
  close_store(f);
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), 2);
}

/* The claim, the queue statistics and the purges use their indexes (the
 * statements pin them with INDEXED BY; this checks the plans stay cheap). */
static void test_query_plans_use_indexes(void **state) {
  struct fx *f = *state;
  open_store(f);
  close_store(f);
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  static const char *const checks[][2] = {
      {"SELECT case_id FROM cases WHERE status = 'failed' ORDER BY updated_ms DESC", "cases_status"},
      {"SELECT 1 FROM events WHERE case_id = 'x' AND kind LIKE 'inbound.%' ORDER BY seq",
       "events_case"},
      {"SELECT id FROM evidence WHERE case_id = 'x' ORDER BY id", "evidence_case"},
  };
  for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
    char sql[600];
    snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", checks[i][0]);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
      fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int found = 0;
    while (sqlite3_step(s) == SQLITE_ROW)
      if (strstr((const char *)sqlite3_column_text(s, 3), checks[i][1])) found = 1;
    sqlite3_finalize(s);
    if (!found) fail_msg("plan of \"%s\" does not use %s", checks[i][0], checks[i][1]);
  }
  /* The claim (a copy of OB_PICK) walks outbox_live in id order: no sort,
   * so a deep queue costs only the rows it returns plus those it skips. */
  static const char pick[] =
      "EXPLAIN QUERY PLAN SELECT o.id, coalesce(o.payload, c.body)"
      " FROM outbox AS o INDEXED BY outbox_live"
      " LEFT JOIN cases AS c ON o.inbound = 0 AND c.case_id = o.case_id"
      " LEFT JOIN inbound_cases AS i ON o.inbound = 1 AND i.case_id = o.case_id"
      " WHERE o.partner = 'lu' AND o.state = 'queued' AND o.state <> 'delivered'"
      " AND o.next_attempt_ms <= 5"
      " AND NOT EXISTS (SELECT 1 FROM outbox AS e INDEXED BY outbox_case"
      "  WHERE e.case_id = o.case_id AND e.inbound = o.inbound AND e.id < o.id"
      "  AND e.state <> 'delivered')"
      " ORDER BY o.id LIMIT 10";
  sqlite3_stmt *s = NULL;
  assert_int_equal(sqlite3_prepare_v2(db, pick, -1, &s, NULL), SQLITE_OK);
  while (sqlite3_step(s) == SQLITE_ROW) {
    const char *d = (const char *)sqlite3_column_text(s, 3);
    print_message("      claim plan: %s\n", d);
    if (strstr(d, "TEMP B-TREE")) fail_msg("the claim sorts: %s", d);
    if (strstr(d, "SCAN") && !strstr(d, "INDEX")) fail_msg("the claim scans a table: %s", d);
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
}

int main(void) {
  const char *lvl = getenv("TB_TEST_LOG");
  int level = lvl ? tb_log_level_parse(lvl) : -1;
  tb_log_setup(2, level >= 0 ? (enum tb_log_level)level : TB_LOG_WARN);
  const char *filter = getenv("TB_TEST_FILTER");
  if (filter) cmocka_set_test_filter(filter);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_claim_order_across_and_within_cases, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_claim_due_time_and_max, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_withdraw_waits_for_submit_through_retry_and_dead_letter,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_finish_verdicts_status_events_evidence, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_delivered_does_not_overwrite_business_status, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_dlq_list_and_replay, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_queue_stats, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_enqueue_errors, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_events_from_new_ops_reach_commit_hook, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_cases_list_filters, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_recover_after_kill9_while_sending, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_v1_database_upgrades_in_place, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_query_plans_use_indexes, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
