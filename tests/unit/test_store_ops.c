/*
 * Unit tests for the store's operator read-outs (tbgw cases show, tbgw
 * partners): the outbound messages of one case, and per-partner last
 * success / last failure. Real files in a temporary directory, a real loop.
 */
#include <openssl/sha.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "store/store.h"
#include "tbgw/error.h"

#define T0 1715000000000LL

struct fx {
  char dir[256];
  char path[300];
  uv_loop_t loop;
  struct tb_store *st;
};

static int fx_setup(void **state) {
  struct fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  const char *tmp = getenv("TMPDIR");
  snprintf(f->dir, sizeof f->dir, "%s/tbgw-ops-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof f->path, "%s/tbgw.db", f->dir);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  opt.path = f->path;
  opt.durability = TB_STORE_DURABILITY_OS;
  char err[TB_ERRMSG_MAX] = "";
  if (tb_store_open(&f->loop, &opt, &f->st, err) != 0) fail_msg("tb_store_open: %s", err);
  *state = f;
  return 0;
}

static void on_closed(void *ud) { (*(int *)ud)++; }

static int fx_teardown(void **state) {
  struct fx *f = *state;
  int closed = 0;
  tb_store_close(f->st, on_closed, &closed);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  char p[400];
  unlink(f->path);
  snprintf(p, sizeof p, "%s-wal", f->path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", f->path);
  unlink(p);
  rmdir(f->dir);
  free(f);
  return 0;
}

static void on_acc(int rc, enum tb_store_accept_outcome o, const char *a, int64_t seq,
                   const char *e, void *ud) {
  (void)a, (void)seq, (void)e, (void)o;
  *(int *)ud = rc;
}

static void accept_case(struct fx *f, const char *case_id, const char *partner) {
  char body[256], msg[96], answer[128];
  unsigned char hash[32];
  snprintf(body, sizeof body, "{\"case_id\":\"%s\"}", case_id);
  snprintf(msg, sizeof msg, "msg-%s", case_id);
  snprintf(answer, sizeof answer, "{\"case_id\":\"%s\"}", case_id);
  SHA256((const unsigned char *)body, strlen(body), hash);
  struct tb_store_case_new c = {.case_id = case_id, .partner = partner, .origin_region = "430603",
                                .target_region = "370683", .message_id = msg, .body_hash = hash,
                                .body = body, .body_len = strlen(body), .answer = answer,
                                .now_ms = T0};
  int rc = -1;
  assert_int_equal(tb_store_case_accept(f->st, &c, on_acc, &rc), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(rc, 0);
}

static void on_claim(int rc, const struct tb_store_claimed *m, size_t n, int64_t next_due,
                     const char *errmsg, void *ud) {
  (void)next_due, (void)errmsg;
  int64_t *id = ud;
  assert_int_equal(rc, 0);
  assert_int_equal(n, 1);
  *id = m[0].outbox_id;
}

/* Claims the partner's one due message; returns its outbox id. */
static int64_t claim_one(struct fx *f, const char *partner, int64_t now) {
  int64_t id = 0;
  assert_int_equal(tb_store_outbox_claim(f->st, partner, now, 1, on_claim, &id), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_true(id > 0);
  return id;
}

static void on_finish(int rc, int64_t seq, const char *errmsg, void *ud) {
  (void)seq;
  if (rc) print_message("finish: %s\n", errmsg);
  *(int *)ud = rc;
}

static void finish(struct fx *f, int64_t id, enum tb_store_verdict v, const char *code,
                   int64_t now) {
  struct tb_store_delivery_result d = {.outbox_id = id, .verdict = v, .code = code,
                                       .text = v == TB_STORE_DELIVERED ? "ok" : "refused",
                                       .reason = "HTTP 503", .receipt_no = "R-1",
                                       .next_attempt_ms = now + 1000, .duration_ms = 3,
                                       .now_ms = now};
  int rc = -1;
  assert_int_equal(tb_store_outbox_finish(f->st, &d, on_finish, &rc), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(rc, 0);
}

struct rows {
  int calls, rc;
  size_t n;
  char line[8][256];
};

static void on_rows(int rc, const struct tb_store_outbox_row *r, size_t n, const char *errmsg,
                    void *ud) {
  (void)errmsg;
  struct rows *o = ud;
  o->calls++;
  o->rc = rc;
  o->n = n;
  if (n == 0) assert_null(r);
  for (size_t i = 0; i < n && i < 8; i++)
    snprintf(o->line[i], sizeof o->line[i], "%s|%d|%s|%s|%s|%s|%u|%s|%s|%lld", r[i].case_id,
             r[i].inbound, r[i].partner, tb_store_msg_type_name(r[i].msg_type), r[i].message_id,
             r[i].state, r[i].attempts, r[i].last_code ? r[i].last_code : "-",
             r[i].last_error ? r[i].last_error : "-", (long long)(r[i].updated_ms - T0));
}

static struct rows *outbox_list(struct fx *f, const char *case_id) {
  static struct rows o;
  memset(&o, 0, sizeof o);
  assert_int_equal(tb_store_outbox_list(f->st, case_id, 0, on_rows, &o), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(o.calls, 1);
  assert_int_equal(o.rc, 0);
  return &o;
}

static void on_activity(int rc, const struct tb_store_partner_activity *a, size_t n,
                        const char *errmsg, void *ud) {
  (void)errmsg;
  struct rows *o = ud;
  o->calls++;
  o->rc = rc;
  o->n = n;
  for (size_t i = 0; i < n && i < 8; i++)
    snprintf(o->line[i], sizeof o->line[i], "%s|%lld|%lld|%s|%s", a[i].partner,
             (long long)(a[i].last_delivered_ms ? a[i].last_delivered_ms - T0 : -1),
             (long long)(a[i].last_failure_ms ? a[i].last_failure_ms - T0 : -1),
             a[i].last_failure_code ? a[i].last_failure_code : "-",
             a[i].last_failure_error ? a[i].last_failure_error : "-");
}

static struct rows *activity(struct fx *f) {
  static struct rows o;
  memset(&o, 0, sizeof o);
  assert_int_equal(tb_store_partner_activity(f->st, on_activity, &o), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(o.calls, 1);
  assert_int_equal(o.rc, 0);
  return &o;
}

static void test_outbox_list_shows_each_message_of_the_case_in_order(void **state) {
  struct fx *f = *state;
  assert_int_equal(outbox_list(f, "nope")->n, 0); /* unknown case: empty, not an error */
  accept_case(f, "C1", "wujiang");
  accept_case(f, "C2", "wujiang");
  struct rows *o = outbox_list(f, "C1");
  assert_int_equal(o->n, 1);
  assert_string_equal(o->line[0], "C1|0|wujiang|CASE_SUBMIT|msg-C1|queued|0|-|-|0");
  int64_t id = claim_one(f, "wujiang", T0 + 10);
  finish(f, id, TB_STORE_RETRY, "HTTP 503", T0 + 20);
  o = outbox_list(f, "C1");
  assert_string_equal(o->line[0], "C1|0|wujiang|CASE_SUBMIT|msg-C1|queued|1|HTTP 503|HTTP 503|20");
  id = claim_one(f, "wujiang", T0 + 2000);
  finish(f, id, TB_STORE_DELIVERED, "0000", T0 + 2010);
  o = outbox_list(f, "C1");
  assert_int_equal(o->n, 1);
  assert_string_equal(o->line[0], "C1|0|wujiang|CASE_SUBMIT|msg-C1|delivered|2|0000|-|2010");
  /* the other case is not mixed in; inbound = 1 names the other table */
  struct rows in;
  memset(&in, 0, sizeof in);
  assert_int_equal(tb_store_outbox_list(f->st, "C1", 1, on_rows, &in), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(in.n, 0);
  assert_int_equal(tb_store_outbox_list(f->st, NULL, 0, on_rows, &in), TB_EINVAL);
}

static void test_partner_activity_last_success_and_failure(void **state) {
  struct fx *f = *state;
  assert_int_equal(activity(f)->n, 0);
  accept_case(f, "A1", "laizhou");
  accept_case(f, "B1", "wujiang");
  accept_case(f, "B2", "wujiang");
  struct rows *o = activity(f);
  assert_int_equal(o->n, 2);
  assert_string_equal(o->line[0], "laizhou|-1|-1|-|-");
  assert_string_equal(o->line[1], "wujiang|-1|-1|-|-");

  finish(f, claim_one(f, "laizhou", T0 + 5), TB_STORE_DELIVERED, "0000", T0 + 7);
  finish(f, claim_one(f, "wujiang", T0 + 5), TB_STORE_RETRY, "HTTP 503", T0 + 9);
  o = activity(f);
  assert_string_equal(o->line[0], "laizhou|7|-1|-|-");
  assert_string_equal(o->line[1], "wujiang|-1|9|HTTP 503|HTTP 503");

  /* B2 is now due too (B1 is back-off until +1009): a dead letter later than
   * the retry becomes the last failure */
  finish(f, claim_one(f, "wujiang", T0 + 12), TB_STORE_FAILED, "4011", T0 + 15);
  o = activity(f);
  assert_string_equal(o->line[1], "wujiang|-1|15|4011|refused");
  /* B1 delivered: success recorded, B2's dead letter is still the last failure */
  finish(f, claim_one(f, "wujiang", T0 + 1500), TB_STORE_DELIVERED, "0000", T0 + 1600);
  o = activity(f);
  assert_string_equal(o->line[1], "wujiang|1600|15|4011|refused");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_outbox_list_shows_each_message_of_the_case_in_order,
                                      fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_partner_activity_last_success_and_failure, fx_setup,
                                      fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
