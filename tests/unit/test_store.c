/*
 * Unit tests for store/: the SQLite backend behind the storage thread, driven
 * from a real libuv loop, on real files in a temporary directory. Includes a
 * kill -9 test (fork, SIGKILL mid-stream, reopen and check).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "core/log.h"
#include "store/store.h"
#include "tbgw/error.h"

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ---- fixture ------------------------------------------------------------ */

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
  snprintf(f->dir, sizeof f->dir, "%s/tbgw-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof f->path, "%s/tbgw.db", f->dir);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  *state = f;
  return 0;
}

static void rm_db(const char *path) {
  char p[400];
  unlink(path);
  snprintf(p, sizeof p, "%s-wal", path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", path);
  unlink(p);
}

static void on_closed_flag(void *ud) {
  (*(int *)ud)++;
}

static void close_store(struct fx *f) {
  int closed = 0;
  tb_store_close(f->st, on_closed_flag, &closed);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  f->st = NULL;
}

static int fx_teardown(void **state) {
  struct fx *f = *state;
  if (f->st) close_store(f);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  rm_db(f->path);
  rmdir(f->dir);
  free(f);
  return 0;
}

static void open_store(struct fx *f, enum tb_store_durability d) {
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  opt.path = f->path;
  opt.durability = d;
  char err[TB_ERRMSG_MAX] = "";
  int rc = tb_store_open(&f->loop, &opt, &f->st, err);
  if (rc != 0) fail_msg("tb_store_open: %s", err);
}

/* ---- case helpers ------------------------------------------------------- */

struct test_case {
  char case_id[64];
  char message_id[64];
  char body[512];
  char answer[160];
  unsigned char hash[32];
  struct tb_store_case_new c;
};

static void make_case(struct test_case *t, const char *case_id, const char *body_variant) {
  memset(t, 0, sizeof *t);
  snprintf(t->case_id, sizeof t->case_id, "%s", case_id);
  snprintf(t->message_id, sizeof t->message_id, "msg-%s", case_id);
  snprintf(t->body, sizeof t->body, "{\"case_id\":\"%s\",\"schema\":\"tongban.case/v1\",\"v\":\"%s\"}",
           case_id, body_variant);
  snprintf(t->answer, sizeof t->answer,
           "{\"case_id\":\"%s\",\"partner\":\"lu\",\"status\":\"queued\"}", case_id);
  SHA256((const unsigned char *)t->body, strlen(t->body), t->hash);
  t->c.case_id = t->case_id;
  t->c.partner = "lu";
  t->c.origin_region = "430603";
  t->c.target_region = "370683";
  t->c.message_id = t->message_id;
  t->c.body_hash = t->hash;
  t->c.body = t->body;
  t->c.body_len = strlen(t->body);
  t->c.answer = t->answer;
  t->c.now_ms = 1715000000000;
}

struct accept_res {
  int calls;
  int rc;
  enum tb_store_accept_outcome outcome;
  char answer[256];
  int64_t seq;
  char err[TB_ERRMSG_MAX];
  int order;   /* global callback order */
  int batch;   /* commit hook count when the callback ran */
};

static int g_cb_order;
static int g_commits;
static size_t g_committed_ops;
static int64_t g_hook_last_seq;

static void on_commit(int64_t last_seq, size_t ops, uint64_t ns, void *ud) {
  (void)ns;
  (void)ud;
  g_commits++;
  g_committed_ops += ops;
  assert_true(last_seq >= g_hook_last_seq);
  g_hook_last_seq = last_seq;
}

static void reset_counters(void) {
  g_cb_order = 0;
  g_commits = 0;
  g_committed_ops = 0;
  g_hook_last_seq = 0;
}

static void on_accept(int rc, enum tb_store_accept_outcome outcome, const char *answer, int64_t seq,
                      const char *errmsg, void *ud) {
  struct accept_res *r = ud;
  r->calls++;
  r->rc = rc;
  r->outcome = outcome;
  snprintf(r->answer, sizeof r->answer, "%s", answer ? answer : "(null)");
  r->seq = seq;
  snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : "");
  r->order = ++g_cb_order;
  r->batch = g_commits;
}

static void accept_sync(struct fx *f, struct test_case *t, struct accept_res *r) {
  memset(r, 0, sizeof *r);
  assert_int_equal(tb_store_case_accept(f->st, &t->c, on_accept, r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r->calls, 1);
}

struct get_res {
  int calls;
  int rc;
  char err[TB_ERRMSG_MAX];
  char case_id[64], partner[32], origin[16], target[16], status[32];
  int receipt_null, last_error_null;
  int64_t created_ms;
  size_t timeline_len;
  int64_t ev_seq[8];
  char ev_kind[8][32], ev_status[8][32], ev_detail[8][32], ev_case[8][64];
};

static void on_get(int rc, const struct tb_store_case_view *v, const char *errmsg, void *ud) {
  struct get_res *r = ud;
  r->calls++;
  r->rc = rc;
  snprintf(r->err, sizeof r->err, "%s", errmsg ? errmsg : "");
  if (rc != 0) {
    assert_null(v);
    assert_non_null(errmsg);
    return;
  }
  assert_null(errmsg);
  snprintf(r->case_id, sizeof r->case_id, "%s", v->case_id);
  snprintf(r->partner, sizeof r->partner, "%s", v->partner);
  snprintf(r->origin, sizeof r->origin, "%s", v->origin_region);
  snprintf(r->target, sizeof r->target, "%s", v->target_region);
  snprintf(r->status, sizeof r->status, "%s", v->status);
  r->receipt_null = v->receipt_no == NULL;
  r->last_error_null = v->last_error == NULL;
  r->created_ms = v->created_ms;
  r->timeline_len = v->timeline_len;
  for (size_t i = 0; i < v->timeline_len && i < 8; i++) {
    r->ev_seq[i] = v->timeline[i].seq;
    snprintf(r->ev_kind[i], 32, "%s", v->timeline[i].kind);
    snprintf(r->ev_status[i], 32, "%s", v->timeline[i].status);
    snprintf(r->ev_detail[i], 32, "%s", v->timeline[i].detail);
    snprintf(r->ev_case[i], 64, "%s", v->timeline[i].case_id);
  }
}

static void get_sync(struct fx *f, const char *case_id, struct get_res *r) {
  memset(r, 0, sizeof *r);
  assert_int_equal(tb_store_case_get(f->st, case_id, on_get, r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r->calls, 1);
}

struct events_res {
  int calls;
  int rc;
  size_t n;
  int64_t last_seq;
  int64_t seq[2048];
  char case_id[2048][32];
};

static void on_events(int rc, const struct tb_store_event *ev, size_t n, int64_t last_seq,
                      const char *errmsg, void *ud) {
  struct events_res *r = ud;
  (void)errmsg;
  r->calls++;
  r->rc = rc;
  r->n = n;
  r->last_seq = last_seq;
  if (n == 0) assert_null(ev);
  for (size_t i = 0; i < n && i < 2048; i++) {
    r->seq[i] = ev[i].seq;
    snprintf(r->case_id[i], 32, "%s", ev[i].case_id);
    assert_string_equal(ev[i].kind, "case.status");
    assert_string_equal(ev[i].detail, "{}");
  }
}

static void events_sync(struct fx *f, int64_t after, size_t limit, struct events_res *r) {
  memset(r, 0, sizeof *r);
  assert_int_equal(tb_store_events_list(f->st, after, limit, on_events, r), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r->calls, 1);
  assert_int_equal(r->rc, 0);
}

static int64_t db_int(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return v;
}

static void db_exec(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) fail_msg("%s: %s", sql, sqlite3_errmsg(db));
  sqlite3_close(db);
}

/* ---- tests -------------------------------------------------------------- */

static void test_open_migrate_reopen_keeps_data(void **state) {
  struct fx *f = *state;
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  assert_int_equal(tb_store_last_seq(f->st), 0);
  struct test_case t;
  struct accept_res r;
  make_case(&t, "430603-20240506-000001", "a");
  accept_sync(f, &t, &r);
  assert_int_equal(r.rc, 0);
  close_store(f);

  struct stat sb;
  assert_int_equal(stat(f->path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), 2);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"), 1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM cases"), 1);

  open_store(f, TB_STORE_DURABILITY_FSYNC);
  assert_int_equal(tb_store_last_seq(f->st), r.seq);
  struct get_res g;
  get_sync(f, t.case_id, &g);
  assert_int_equal(g.rc, 0);
  assert_string_equal(g.case_id, t.case_id);
  close_store(f);
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), 2);
  /* A clean close leaves no WAL behind (TRUNCATE checkpoint, last close). */
  char wal[400];
  snprintf(wal, sizeof wal, "%s-wal", f->path);
  assert_true(stat(wal, &sb) != 0 || sb.st_size == 0);
}

static void test_accept_new_same_conflict(void **state) {
  struct fx *f = *state;
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  struct test_case t, t2;
  struct accept_res r;
  make_case(&t, "C-1", "a");
  accept_sync(f, &t, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_STORE_ACCEPT_NEW);
  assert_string_equal(r.answer, t.answer);
  assert_true(r.seq > 0);
  assert_int_equal(tb_store_last_seq(f->st), r.seq);

  /* Same body, a different answer text offered: the first answer comes back. */
  make_case(&t2, "C-1", "a");
  snprintf(t2.answer, sizeof t2.answer, "{\"different\":true}");
  accept_sync(f, &t2, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_STORE_ACCEPT_SAME);
  assert_string_equal(r.answer, t.answer);

  make_case(&t2, "C-1", "b");
  accept_sync(f, &t2, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_STORE_ACCEPT_CONFLICT);
  close_store(f);

  /* Nothing was written by SAME or CONFLICT. */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM cases"), 1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox"), 1);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox WHERE msg_type = 'CASE_SUBMIT' "
                                   "AND state = 'queued' AND attempts = 0 AND "
                                   "next_attempt_ms = 1715000000000 AND message_id = 'msg-C-1'"),
                   1);
}

static void ping_cb_count(int rc, const char *errmsg, void *ud) {
  assert_int_equal(rc, 0);
  assert_null(errmsg);
  (*(int *)ud)++;
}

/* Holds the database's write lock from outside, so that everything queued
 * meanwhile lands in one batch. */
static sqlite3 *hold_write_lock(const char *path) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  return db;
}

static void release_write_lock(sqlite3 *db) {
  assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
}

static void test_two_accepts_of_one_case_in_one_batch(void **state) {
  struct fx *f = *state;
  reset_counters();
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  tb_store_on_commit(f->st, on_commit, NULL);
  sqlite3 *lock = hold_write_lock(f->path);
  int pings = 0;
  assert_int_equal(tb_store_ping(f->st, ping_cb_count, &pings), 0);
  sleep_ms(50); /* the storage thread takes the ping and waits for the lock */

  struct test_case a1, a2, b1, b2;
  struct accept_res ra1, ra2, rb1, rb2;
  memset(&ra1, 0, sizeof ra1);
  memset(&ra2, 0, sizeof ra2);
  memset(&rb1, 0, sizeof rb1);
  memset(&rb2, 0, sizeof rb2);
  make_case(&a1, "DUP-A", "x");
  make_case(&a2, "DUP-A", "x");
  make_case(&b1, "DUP-B", "x");
  make_case(&b2, "DUP-B", "y");
  snprintf(b2.message_id, sizeof b2.message_id, "msg-DUP-B-2");
  assert_int_equal(tb_store_case_accept(f->st, &a1.c, on_accept, &ra1), 0);
  assert_int_equal(tb_store_case_accept(f->st, &a2.c, on_accept, &ra2), 0);
  assert_int_equal(tb_store_case_accept(f->st, &b1.c, on_accept, &rb1), 0);
  assert_int_equal(tb_store_case_accept(f->st, &b2.c, on_accept, &rb2), 0);
  release_write_lock(lock);
  uv_run(&f->loop, UV_RUN_DEFAULT);

  assert_int_equal(pings, 1);
  assert_int_equal(ra1.calls + ra2.calls + rb1.calls + rb2.calls, 4);
  /* All four were in one batch (one commit hook before all of them). */
  assert_int_equal(ra1.batch, rb2.batch);
  assert_int_equal(ra1.rc, 0);
  assert_int_equal(ra1.outcome, TB_STORE_ACCEPT_NEW);
  assert_int_equal(ra2.rc, 0);
  assert_int_equal(ra2.outcome, TB_STORE_ACCEPT_SAME);
  assert_string_equal(ra2.answer, a1.answer);
  assert_int_equal(rb1.outcome, TB_STORE_ACCEPT_NEW);
  assert_int_equal(rb2.rc, 0);
  assert_int_equal(rb2.outcome, TB_STORE_ACCEPT_CONFLICT);
  assert_true(ra1.order < ra2.order && ra2.order < rb1.order && rb1.order < rb2.order);
  close_store(f);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM cases"), 2);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), 2);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox"), 2);
}

static void test_case_get_with_timeline(void **state) {
  struct fx *f = *state;
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  struct test_case t, other;
  struct accept_res r, r2;
  make_case(&other, "OTHER", "a");
  accept_sync(f, &other, &r2);
  make_case(&t, "430603-20240506-000123", "a");
  accept_sync(f, &t, &r);
  struct get_res g;
  get_sync(f, t.case_id, &g);
  assert_int_equal(g.rc, 0);
  assert_string_equal(g.case_id, t.case_id);
  assert_string_equal(g.partner, "lu");
  assert_string_equal(g.origin, "430603");
  assert_string_equal(g.target, "370683");
  assert_string_equal(g.status, "queued");
  assert_true(g.receipt_null);
  assert_true(g.last_error_null);
  assert_int_equal(g.created_ms, 1715000000000);
  assert_int_equal(g.timeline_len, 1); /* not OTHER's event */
  assert_int_equal(g.ev_seq[0], r.seq);
  assert_string_equal(g.ev_kind[0], "case.status");
  assert_string_equal(g.ev_status[0], "queued");
  assert_string_equal(g.ev_detail[0], "{}");
  assert_string_equal(g.ev_case[0], t.case_id);

  /* A later status change (written by hand here; delivery writes it later)
   * shows up in order. */
  close_store(f);
  db_exec(f->path, "INSERT INTO events (kind, case_id, partner, status, at_ms) VALUES "
                   "('case.status', '430603-20240506-000123', 'lu', 'delivering', 1)");
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  get_sync(f, t.case_id, &g);
  assert_int_equal(g.timeline_len, 2);
  assert_true(g.ev_seq[0] < g.ev_seq[1]);
  assert_string_equal(g.ev_status[1], "delivering");
}

static void test_case_get_not_found(void **state) {
  struct fx *f = *state;
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  struct get_res g;
  get_sync(f, "NOPE-1", &g);
  assert_int_equal(g.rc, TB_ENOTFOUND);
  assert_non_null(strstr(g.err, "NOPE-1"));
}

static void test_events_list_after_limit_last_seq(void **state) {
  struct fx *f = *state;
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  struct test_case t[10];
  struct accept_res r[10];
  memset(r, 0, sizeof r);
  for (int i = 0; i < 10; i++) {
    char id[32];
    snprintf(id, sizeof id, "EV-%02d", i);
    make_case(&t[i], id, "a");
    assert_int_equal(tb_store_case_accept(f->st, &t[i].c, on_accept, &r[i]), 0);
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(tb_store_last_seq(f->st), r[9].seq);

  struct events_res *e = malloc(sizeof *e);
  assert_non_null(e);
  events_sync(f, 0, 3, e);
  assert_int_equal(e->n, 3);
  assert_int_equal(e->last_seq, r[9].seq);
  assert_int_equal(e->seq[0], r[0].seq);
  assert_int_equal(e->seq[2], r[2].seq);
  assert_string_equal(e->case_id[0], "EV-00");

  events_sync(f, r[7].seq, 100, e);
  assert_int_equal(e->n, 2);
  assert_int_equal(e->seq[0], r[8].seq);
  assert_string_equal(e->case_id[1], "EV-09");

  events_sync(f, r[9].seq, 100, e);
  assert_int_equal(e->n, 0);
  assert_int_equal(e->last_seq, r[9].seq);

  events_sync(f, 0, 0, e);
  assert_int_equal(e->n, 0);
  free(e);
}

static void test_seq_strictly_increasing(void **state) {
  struct fx *f = *state;
  enum { N = 1000 };
  open_store(f, TB_STORE_DURABILITY_OS);
  struct test_case *t = malloc(N * sizeof *t);
  struct accept_res *r = calloc(N, sizeof *r);
  assert_non_null(t);
  assert_non_null(r);
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof id, "SEQ-%04d", i);
    make_case(&t[i], id, "a");
    assert_int_equal(tb_store_case_accept(f->st, &t[i].c, on_accept, &r[i]), 0);
    if (i % 97 == 0) uv_run(&f->loop, UV_RUN_NOWAIT);
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].outcome, TB_STORE_ACCEPT_NEW);
    if (i > 0) {
      assert_true(r[i].seq > r[i - 1].seq);
      assert_true(r[i].order > r[i - 1].order);
    }
  }
  struct events_res *e = malloc(sizeof *e);
  assert_non_null(e);
  events_sync(f, 0, 2048, e);
  assert_int_equal(e->n, N);
  for (size_t i = 1; i < e->n; i++) assert_true(e->seq[i] > e->seq[i - 1]);
  assert_int_equal(e->last_seq, r[N - 1].seq);
  free(e);
  free(t);
  free(r);
}

static void test_group_commit_batches(void **state) {
  struct fx *f = *state;
  enum { N = 500 };
  reset_counters();
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  tb_store_on_commit(f->st, on_commit, NULL);
  struct test_case *t = malloc(N * sizeof *t);
  struct accept_res *r = calloc(N, sizeof *r);
  assert_non_null(t);
  assert_non_null(r);
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof id, "GC-%04d", i);
    make_case(&t[i], id, "a");
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(tb_store_case_accept(f->st, &t[i].c, on_accept, &r[i]), 0);
  assert_int_equal(tb_store_pending(f->st), N);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(tb_store_pending(f->st), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].calls, 1);
    assert_int_equal(r[i].rc, 0);
    assert_int_equal(r[i].outcome, TB_STORE_ACCEPT_NEW);
    assert_true(r[i].batch >= 1); /* the hook ran before the callback */
  }
  assert_int_equal(g_committed_ops, N);
  print_message("      500 accepts in %d commits\n", g_commits);
  assert_true(g_commits >= 1);
  assert_true(g_commits <= 50);
  assert_int_equal(g_hook_last_seq, r[N - 1].seq);
  assert_int_equal(tb_store_last_seq(f->st), r[N - 1].seq);
  free(t);
  free(r);
}

static void test_durability_os(void **state) {
  struct fx *f = *state;
  open_store(f, TB_STORE_DURABILITY_OS);
  struct test_case t;
  struct accept_res r;
  make_case(&t, "OS-1", "a");
  accept_sync(f, &t, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_STORE_ACCEPT_NEW);
  close_store(f);
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  struct get_res g;
  get_sync(f, "OS-1", &g);
  assert_int_equal(g.rc, 0);
}

static void test_newer_schema_refused(void **state) {
  struct fx *f = *state;
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  close_store(f);
  db_exec(f->path, "PRAGMA user_version = 99");
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  opt.path = f->path;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_store *st = (struct tb_store *)&opt; /* must be reset to NULL */
  assert_int_equal(tb_store_open(&f->loop, &opt, &st, err), TB_ESTORE);
  assert_null(st);
  print_message("      %s\n", err);
  assert_non_null(strstr(err, f->path));
  assert_non_null(strstr(err, "99"));
  assert_non_null(strstr(err, "0 to 2"));
  assert_int_equal(db_int(f->path, "PRAGMA user_version"), 99); /* untouched */
}

static void test_unwritable_path_message(void **state) {
  struct fx *f = *state;
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  char path[400];
  snprintf(path, sizeof path, "%s/no-such-dir/tbgw.db", f->dir);
  opt.path = path;
  char err[TB_ERRMSG_MAX] = "";
  struct tb_store *st = NULL;
  assert_int_equal(tb_store_open(&f->loop, &opt, &st, err), TB_ESTORE);
  assert_null(st);
  print_message("      %s\n", err);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "check the directory exists and is writable"));

  /* A file that is not a database says so. */
  int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0);
  char junk[4096];
  memset(junk, 'z', sizeof junk);
  assert_int_equal(write(fd, junk, sizeof junk), (ssize_t)sizeof junk);
  close(fd);
  opt.path = f->path;
  assert_int_equal(tb_store_open(&f->loop, &opt, &st, err), TB_ESTORE);
  print_message("      %s\n", err);
  assert_non_null(strstr(err, f->path));
  assert_non_null(strstr(err, "not a database"));

  opt.path = NULL;
  assert_int_equal(tb_store_open(&f->loop, &opt, &st, err), TB_EINVAL);
}

struct close_ctx {
  int accepts, gets, lists, pings, closed;
  int order_ok;
};

static void close_accept_cb(int rc, enum tb_store_accept_outcome o, const char *a, int64_t seq,
                            const char *e, void *ud) {
  (void)a;
  (void)seq;
  (void)e;
  struct close_ctx *c = ud;
  assert_int_equal(rc, 0);
  assert_int_equal(o, TB_STORE_ACCEPT_NEW);
  if (c->closed) c->order_ok = 0;
  c->accepts++;
}

static void close_get_cb(int rc, const struct tb_store_case_view *v, const char *e, void *ud) {
  (void)e;
  struct close_ctx *c = ud;
  assert_int_equal(rc, 0);
  assert_string_equal(v->case_id, "CL-0000");
  c->gets++;
}

static void close_list_cb(int rc, const struct tb_store_event *ev, size_t n, int64_t last,
                          const char *e, void *ud) {
  (void)ev;
  (void)e;
  struct close_ctx *c = ud;
  assert_int_equal(rc, 0);
  assert_int_equal(n, 200); /* sees every earlier write */
  assert_int_equal(last, 200);
  c->lists++;
}

static void close_ping_cb(int rc, const char *e, void *ud) {
  (void)e;
  struct close_ctx *c = ud;
  assert_int_equal(rc, 0);
  c->pings++;
}

static void close_done(void *ud) {
  struct close_ctx *c = ud;
  c->closed++;
}

static void test_close_completes_queued_ops(void **state) {
  struct fx *f = *state;
  enum { N = 200 };
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  struct close_ctx c = {.order_ok = 1};
  struct test_case *t = malloc(N * sizeof *t);
  assert_non_null(t);
  for (int i = 0; i < N; i++) {
    char id[32];
    snprintf(id, sizeof id, "CL-%04d", i);
    make_case(&t[i], id, "a");
    assert_int_equal(tb_store_case_accept(f->st, &t[i].c, close_accept_cb, &c), 0);
  }
  assert_int_equal(tb_store_case_get(f->st, "CL-0000", close_get_cb, &c), 0);
  assert_int_equal(tb_store_events_list(f->st, 0, 1000, close_list_cb, &c), 0);
  assert_int_equal(tb_store_ping(f->st, close_ping_cb, &c), 0);
  tb_store_close(f->st, close_done, &c);
  /* Refused after close, and the callback never runs. */
  assert_int_equal(tb_store_case_accept(f->st, &t[0].c, close_accept_cb, &c), TB_ECLOSED);
  assert_int_equal(tb_store_ping(f->st, close_ping_cb, &c), TB_ECLOSED);
  assert_int_equal(tb_store_case_get(f->st, "x", close_get_cb, &c), TB_ECLOSED);
  assert_int_equal(tb_store_events_list(f->st, 0, 1, close_list_cb, &c), TB_ECLOSED);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  f->st = NULL;
  assert_int_equal(c.accepts, N);
  assert_int_equal(c.gets, 1);
  assert_int_equal(c.lists, 1);
  assert_int_equal(c.pings, 1);
  assert_int_equal(c.closed, 1);
  assert_true(c.order_ok);
  free(t);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM cases"), N);
}

static void test_ping_writes(void **state) {
  struct fx *f = *state;
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  int pings = 0;
  assert_int_equal(tb_store_ping(f->st, ping_cb_count, &pings), 0);
  assert_int_equal(tb_store_ping(f->st, ping_cb_count, &pings), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(pings, 2);
  close_store(f);
  assert_int_equal(db_int(f->path, "SELECT beats FROM health WHERE id = 1"), 2);
  assert_true(db_int(f->path, "SELECT beat_ms FROM health WHERE id = 1") > 1600000000000);
}

/* Many commits with a tiny checkpoint threshold: the background checkpoint
 * must move pages into the database file and keep the WAL from growing
 * with the data. */
static void test_background_checkpoint_bounds_wal(void **state) {
  struct fx *f = *state;
  enum { N = 3000 };
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  opt.path = f->path;
  opt.durability = TB_STORE_DURABILITY_OS;
  opt.checkpoint_wal_pages = 32;
  opt.batch_max = 16;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_store_open(&f->loop, &opt, &f->st, err), 0);
  struct tb_store_case_new *c = calloc(N, sizeof *c);
  char(*ids)[32] = calloc(N, 32);
  char *body = malloc(3000);
  assert_non_null(c);
  assert_non_null(ids);
  assert_non_null(body);
  memset(body, 'b', 2999);
  body[2999] = '\0';
  unsigned char hash[32] = {1};
  struct accept_res r;
  memset(&r, 0, sizeof r);
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], 32, "CK-%05d", i);
    c[i] = (struct tb_store_case_new){.case_id = ids[i], .partner = "lu", .message_id = ids[i],
                                      .body_hash = hash, .body = body, .body_len = 2999,
                                      .answer = "{}", .now_ms = 1};
    assert_int_equal(tb_store_case_accept(f->st, &c[i], on_accept, &r), 0);
    if (i % 50 == 0) uv_run(&f->loop, UV_RUN_NOWAIT);
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, N);
  char wal[400];
  snprintf(wal, sizeof wal, "%s-wal", f->path);
  struct stat db_st, wal_st;
  /* The last checkpoint may still be running: allow it a moment. */
  for (int tries = 0; tries < 100; tries++) {
    assert_int_equal(stat(f->path, &db_st), 0);
    assert_int_equal(stat(wal, &wal_st), 0);
    if (db_st.st_size > 8 * 1024 * 1024 && wal_st.st_size < db_st.st_size / 2) break;
    sleep_ms(20);
  }
  print_message("      db %lld bytes, wal %lld bytes\n", (long long)db_st.st_size,
                (long long)wal_st.st_size);
  free(c);
  free(ids);
  free(body);
  assert_true(db_st.st_size > 8 * 1024 * 1024); /* ~9 MB of cases reached the db file */
  assert_true(wal_st.st_size < db_st.st_size / 2);
}

/* ---- crash safety ------------------------------------------------------- */

struct child_ctx {
  struct tb_store *st;
  int fd;
  int next;
  struct test_case *cases; /* ring: a case's inputs are copied at accept, so reuse is safe */
};

enum { CHILD_RING = 256, CHILD_INFLIGHT = 64, CHILD_MAX = 100000 };

static struct child_ctx *g_child;

static void child_on_accept(int rc, enum tb_store_accept_outcome o, const char *answer,
                             int64_t seq, const char *errmsg, void *ud) {
  (void)answer;
  (void)seq;
  (void)errmsg;
  struct test_case *t = ud;
  if (rc != 0 || o != TB_STORE_ACCEPT_NEW) _exit(3);
  char line[80];
  int n = snprintf(line, sizeof line, "%s\n", t->case_id);
  if (write(g_child->fd, line, (size_t)n) != n) _exit(4);
  if (g_child->next >= CHILD_MAX) return;
  struct test_case *nt = &g_child->cases[g_child->next % CHILD_RING];
  char id[32];
  snprintf(id, sizeof id, "KILL-%06d", g_child->next);
  make_case(nt, id, "a");
  g_child->next++;
  if (tb_store_case_accept(g_child->st, &nt->c, child_on_accept, nt) != 0) _exit(5);
}

static void run_child(const char *path, int fd) {
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) _exit(6);
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  opt.path = path;
  char err[TB_ERRMSG_MAX];
  struct child_ctx cx = {.fd = fd};
  cx.cases = calloc(CHILD_RING, sizeof *cx.cases);
  if (cx.cases == NULL || tb_store_open(&loop, &opt, &cx.st, err) != 0) _exit(7);
  g_child = &cx;
  for (int i = 0; i < CHILD_INFLIGHT; i++) {
    struct test_case *t = &cx.cases[cx.next % CHILD_RING];
    char id[32];
    snprintf(id, sizeof id, "KILL-%06d", cx.next);
    make_case(t, id, "a");
    cx.next++;
    if (tb_store_case_accept(cx.st, &t->c, child_on_accept, t) != 0) _exit(5);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  _exit(0);
}

static void test_kill9_loses_no_acknowledged_case(void **state) {
  struct fx *f = *state;
  int p[2];
  assert_int_equal(pipe(p), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(p[0]);
    tb_log_setup(open("/dev/null", O_WRONLY), TB_LOG_ERROR);
    run_child(f->path, p[1]);
  }
  close(p[1]);

  /* Read acknowledgements until a few hundred arrived, then kill -9. */
  size_t cap = 1 << 20, len = 0;
  char *buf = malloc(cap);
  assert_non_null(buf);
  int lines = 0;
  while (lines < 400) {
    ssize_t n = read(p[0], buf + len, cap - len - 1);
    if (n <= 0) fail_msg("child stopped early (read %zd, errno %d)", n, errno);
    for (ssize_t i = 0; i < n; i++)
      if (buf[len + (size_t)i] == '\n') lines++;
    len += (size_t)n;
  }
  assert_int_equal(kill(pid, SIGKILL), 0);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  /* Whatever the child wrote before dying was acknowledged, hence committed. */
  for (;;) {
    ssize_t n = read(p[0], buf + len, cap - len - 1);
    if (n <= 0) break;
    len += (size_t)n;
  }
  close(p[0]);
  buf[len] = '\0';
  /* A partial last line (killed mid-write) is ignored. */
  char *end = strrchr(buf, '\n');
  assert_non_null(end);
  end[1] = '\0';

  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  sqlite3_stmt *s = NULL;
  assert_int_equal(sqlite3_prepare_v2(db,
                                      "SELECT (SELECT count(*) FROM cases WHERE case_id = ?1),"
                                      " (SELECT count(*) FROM events WHERE case_id = ?1 AND"
                                      "  kind = 'case.status' AND status = 'queued'),"
                                      " (SELECT count(*) FROM outbox WHERE case_id = ?1 AND"
                                      "  msg_type = 'CASE_SUBMIT')",
                                      -1, &s, NULL),
                   SQLITE_OK);
  int acked = 0;
  for (char *line = buf, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
    *nl = '\0';
    sqlite3_bind_text(s, 1, line, -1, SQLITE_TRANSIENT);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    if (sqlite3_column_int(s, 0) != 1 || sqlite3_column_int(s, 1) != 1 ||
        sqlite3_column_int(s, 2) != 1)
      fail_msg("acknowledged case %s is missing after kill -9", line);
    sqlite3_reset(s);
    acked++;
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  free(buf);
  assert_true(acked >= 400);

  int64_t total = db_int(f->path, "SELECT count(*) FROM cases");
  print_message("      %d acknowledged, %lld cases on disk after kill -9\n", acked,
                (long long)total);
  assert_true(total >= acked);
  /* No half-written case: every case has its event and its outbox row. */
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM cases c WHERE"
                                   " NOT EXISTS (SELECT 1 FROM events e WHERE e.case_id = c.case_id)"
                                   " OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.case_id = c.case_id)"),
                   0);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM events"), total);
  assert_int_equal(db_int(f->path, "SELECT count(*) FROM outbox"), total);

  /* And the store opens on the recovered file and carries on. */
  open_store(f, TB_STORE_DURABILITY_FSYNC);
  assert_int_equal(tb_store_last_seq(f->st), db_int(f->path, "SELECT max(seq) FROM events"));
  struct test_case t;
  struct accept_res r;
  make_case(&t, "AFTER-KILL", "a");
  accept_sync(f, &t, &r);
  assert_int_equal(r.rc, 0);
  assert_int_equal(r.outcome, TB_STORE_ACCEPT_NEW);
}

int main(void) {
  /* TB_TEST_LOG=debug shows the store's own log lines. */
  const char *lvl = getenv("TB_TEST_LOG");
  int level = lvl ? tb_log_level_parse(lvl) : -1;
  tb_log_setup(2, level >= 0 ? (enum tb_log_level)level : TB_LOG_WARN);
  const char *filter = getenv("TB_TEST_FILTER");
  if (filter) cmocka_set_test_filter(filter);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_open_migrate_reopen_keeps_data, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_accept_new_same_conflict, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_two_accepts_of_one_case_in_one_batch, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_case_get_with_timeline, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_case_get_not_found, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_events_list_after_limit_last_seq, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_seq_strictly_increasing, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_group_commit_batches, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_durability_os, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_newer_schema_refused, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_unwritable_path_message, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_close_completes_queued_ops, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_ping_writes, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(test_background_checkpoint_bounds_wal, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(test_kill9_loses_no_acknowledged_case, fx_setup,
                                      fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
