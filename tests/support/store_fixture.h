/*
 * tests/support/store_fixture.h — a real store in a temporary directory on a
 * real libuv loop, for the store's cmocka tests. Header-only: include it from
 * one test_*.c after cmocka.h. fx_setup/fx_teardown are the group's per-test
 * setup and teardown; open_store/close_store run the store's real lifecycle;
 * db_int reads one integer with a separate SQLite connection, the way an
 * outside reader (the operator CLI) would see the file.
 */
#ifndef TB_TESTS_STORE_FIXTURE_H
#define TB_TESTS_STORE_FIXTURE_H

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "store/store.h"
#include "tbgw/error.h"

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

static void open_store(struct fx *f) {
  struct tb_store_options opt;
  tb_store_options_default(&opt);
  opt.path = f->path;
  opt.durability = TB_STORE_DURABILITY_OS;
  char err[TB_ERRMSG_MAX] = "";
  if (tb_store_open(&f->loop, &opt, &f->st, err) != 0) fail_msg("tb_store_open: %s", err);
}

static int64_t db_int(const char *path, const char *sql) {
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
  sqlite3_stmt *s = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
    fail_msg("%s: %s", sql, sqlite3_errmsg(db));
  assert_int_equal(sqlite3_step(s), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return v;
}

#endif
