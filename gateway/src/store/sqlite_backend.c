/*
 * The SQLite backend: one write connection in WAL mode, used only by the
 * storage thread, with every statement prepared once at open and reused.
 *
 * Schema changes are a table of migration steps applied in order; PRAGMA
 * user_version records how many have been applied. A step is applied in its
 * own IMMEDIATE transaction together with the user_version bump, so a crash
 * mid-migration leaves the previous version intact. Steps are append-only:
 * never edit a released step, add a new one (docs/store.md).
 *
 * Durability: synchronous=FULL (fsync of the WAL at every commit) or NORMAL
 * (WAL written at commit, fsync only at checkpoints); checkpoints run on a
 * thread of their own (sqlite_checkpoint.c), never on the commit path.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "store/backend.h"
#include "store/result.h"
#include "store/sqlite_internal.h"
#include "tbgw/error.h"

/* ---- schema ------------------------------------------------------------ */

/* Append-only. Index i brings the schema from user_version i to i+1. */
static const char *const migrations[] = {
    /* 1: cases, their event timeline, the outbound queue, a heartbeat row.
     * Later migrations add delivery, inbound messages (replay protection) and
     * evidence; columns that later work needs go in with ALTER TABLE ADD. */
    "CREATE TABLE cases ("
    "  case_id       TEXT PRIMARY KEY NOT NULL,"
    "  partner       TEXT NOT NULL,"
    "  origin_region TEXT,"
    "  target_region TEXT,"
    "  status        TEXT NOT NULL,"         /* SPEC §3 status model */
    "  receipt_no    TEXT,"                  /* partner's receipt, once acknowledged */
    "  last_error    TEXT,"
    "  body_hash     BLOB NOT NULL CHECK (length(body_hash) = 32)," /* SHA-256 of body */
    "  body          TEXT NOT NULL,"         /* canonical case JSON */
    "  answer        TEXT NOT NULL,"         /* answer given at acceptance (idempotent repeats) */
    "  created_ms    INTEGER NOT NULL,"
    "  updated_ms    INTEGER NOT NULL"
    ");"
    /* seq is the event feed's cursor: AUTOINCREMENT so that a seq is never
     * reused, even if the newest rows were ever deleted. No foreign key on
     * case_id: inbound cases (a later migration) have events too. */
    "CREATE TABLE events ("
    "  seq     INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  kind    TEXT NOT NULL,"               /* 'case.status', later 'inbound.case', ... */
    "  case_id TEXT,"
    "  partner TEXT,"
    "  status  TEXT,"
    "  detail  TEXT NOT NULL DEFAULT '{}',"  /* JSON object */
    "  at_ms   INTEGER NOT NULL"
    ");"
    /* Rowids (seq) are implicitly the last column of every index, so this
     * index also yields a case's timeline in seq order. */
    "CREATE INDEX events_case ON events (case_id);"
    /* One row per outbound message. message_id is fixed at acceptance and
     * reused on every retry so the partner can de-duplicate. payload NULL
     * means "built from cases.body" (CASE_SUBMIT); later message types
     * (withdraw, supplement) carry their own. */
    "CREATE TABLE outbox ("
    "  id              INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  case_id         TEXT NOT NULL REFERENCES cases (case_id),"
    "  partner         TEXT NOT NULL,"
    "  msg_type        TEXT NOT NULL,"       /* 'CASE_SUBMIT' */
    "  message_id      TEXT NOT NULL UNIQUE,"
    "  state           TEXT NOT NULL,"       /* 'queued' */
    "  attempts        INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_ms INTEGER NOT NULL,"
    "  last_error      TEXT,"
    "  payload         TEXT,"
    "  created_ms      INTEGER NOT NULL,"
    "  updated_ms      INTEGER NOT NULL"
    ");"
    /* Claiming work per partner in acceptance order. */
    "CREATE INDEX outbox_claim ON outbox (partner, state, id);"
    /* A single row that ping updates, so readiness proves a real write and
     * commit rather than a read. */
    "CREATE TABLE health ("
    "  id      INTEGER PRIMARY KEY CHECK (id = 1),"
    "  beat_ms INTEGER NOT NULL,"
    "  beats   INTEGER NOT NULL"
    ");"
    "INSERT INTO health (id, beat_ms, beats) VALUES (1, 0, 0);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- statements, prepared once ------------------------------------------ */

#define TB__SQLITE_STMTS(X)                                                             \
  X(BEGIN, "BEGIN IMMEDIATE")                                                           \
  X(COMMIT, "COMMIT")                                                                   \
  X(ROLLBACK, "ROLLBACK")                                                               \
  X(SAVEPOINT, "SAVEPOINT op")                                                          \
  X(RELEASE, "RELEASE op")                                                              \
  X(ROLLBACK_TO, "ROLLBACK TO op")                                                      \
  X(CASE_LOOKUP, "SELECT body_hash, answer FROM cases WHERE case_id = ?1")              \
  X(CASE_INSERT,                                                                        \
    "INSERT INTO cases (case_id, partner, origin_region, target_region, status,"        \
    " body_hash, body, answer, created_ms, updated_ms)"                                 \
    " VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?7, ?8, ?8)")                           \
  X(EVENT_INSERT,                                                                       \
    "INSERT INTO events (kind, case_id, partner, status, detail, at_ms)"                \
    " VALUES ('case.status', ?1, ?2, 'queued', '{}', ?3)")                              \
  X(OUTBOX_INSERT,                                                                      \
    "INSERT INTO outbox (case_id, partner, msg_type, message_id, state,"                \
    " next_attempt_ms, created_ms, updated_ms)"                                         \
    " VALUES (?1, ?2, 'CASE_SUBMIT', ?3, 'queued', ?4, ?4, ?4)")                        \
  X(CASE_GET,                                                                           \
    "SELECT case_id, partner, origin_region, target_region, status, receipt_no,"        \
    " last_error, created_ms, updated_ms FROM cases WHERE case_id = ?1")                \
  X(CASE_EVENTS,                                                                        \
    "SELECT seq, kind, case_id, partner, status, detail, at_ms FROM events"             \
    " WHERE case_id = ?1 ORDER BY seq")                                                 \
  X(EVENTS_AFTER,                                                                       \
    "SELECT seq, kind, case_id, partner, status, detail, at_ms FROM events"             \
    " WHERE seq > ?1 ORDER BY seq LIMIT ?2")                                            \
  X(EVENTS_MAX, "SELECT coalesce(max(seq), 0) FROM events")                             \
  X(PING, "UPDATE health SET beat_ms = ?1, beats = beats + 1 WHERE id = 1")

enum {
#define TB__STMT_ENUM(name, sql) S_##name,
  TB__SQLITE_STMTS(TB__STMT_ENUM)
#undef TB__STMT_ENUM
      S__COUNT
};

static const char *const stmt_sql[] = {
#define TB__STMT_SQL(name, sql) sql,
    TB__SQLITE_STMTS(TB__STMT_SQL)
#undef TB__STMT_SQL
};

struct tb__store_backend {
  sqlite3 *db;
  char *path;
  sqlite3_stmt *st[S__COUNT];
  struct tb__sqlite_ckpt *ckpt;
  struct tb__res_builder rb; /* scratch for read results, reused */
};

/* ---- helpers ------------------------------------------------------------ */

/* Steps a statement that returns no rows and resets it. The message is taken
 * before the reset. */
static int step_done(struct tb__store_backend *b, int which, const char *what, const char *id,
                     char *err) {
  sqlite3_stmt *s = b->st[which];
  int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
    sqlite3_reset(s);
    return 0;
  }
  if (id)
    tb_errf(err, TB_ESTORE, "store: %s '%s': %s", what, id, sqlite3_errmsg(b->db));
  else
    tb_errf(err, TB_ESTORE, "store: %s: %s", what, sqlite3_errmsg(b->db));
  sqlite3_reset(s);
  return TB_ESTORE;
}

static int step_error(struct tb__store_backend *b, sqlite3_stmt *s, const char *what,
                      const char *id, char *err) {
  tb_errf(err, TB_ESTORE, "store: %s '%s': %s", what, id, sqlite3_errmsg(b->db));
  sqlite3_reset(s);
  return TB_ESTORE;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v) {
  if (v)
    sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(s, i);
}

static size_t col_str(struct tb__res_builder *rb, sqlite3_stmt *s, int i) {
  const unsigned char *t = sqlite3_column_text(s, i);
  if (t == NULL) return TB__RES_NULL;
  return tb__res_str(rb, (const char *)t, (size_t)sqlite3_column_bytes(s, i));
}

/* Runs one or more statements with no results and no parameters (start-up
 * only; the batch loop uses prepared statements). */
static int exec(sqlite3 *db, const char *sql, const char *path, const char *what, char *err) {
  char *msg = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
  tb_errf(err, TB_ESTORE, "store: %s: %s: %s", path, what, msg ? msg : sqlite3_errmsg(db));
  sqlite3_free(msg);
  return TB_ESTORE;
}

static int query_int(sqlite3 *db, const char *sql, int64_t *out, const char *path, char *err) {
  sqlite3_stmt *s = NULL;
  int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return 0;
  }
  tb_errf(err, TB_ESTORE, "store: cannot open %s: %s", path, sqlite3_errmsg(db));
  sqlite3_finalize(s);
  return TB_ESTORE;
}

/* ---- open / migrate / close --------------------------------------------- */

static int migrate(sqlite3 *db, const char *path, char *err) {
  int64_t v;
  if (query_int(db, "PRAGMA user_version", &v, path, err) != 0) return TB_ESTORE;
  if (v > SCHEMA_VERSION || v < 0)
    return tb_errf(err, TB_ESTORE,
                   "store: %s has schema version %lld but this tbgw knows versions 0 to %d: "
                   "it was written by a newer tbgw; run that version or restore a backup",
                   path, (long long)v, SCHEMA_VERSION);
  for (int i = (int)v; i < SCHEMA_VERSION; i++) {
    if (exec(db, "BEGIN IMMEDIATE", path, "migration", err) != 0) return TB_ESTORE;
    /* Another process may have migrated between our read and our lock. */
    int64_t now_v;
    if (query_int(db, "PRAGMA user_version", &now_v, path, err) != 0) goto fail;
    if (now_v > i) {
      exec(db, "COMMIT", path, "migration", err);
      i = (int)now_v - 1;
      continue;
    }
    char what[64], bump[64];
    snprintf(what, sizeof what, "migration to schema version %d failed", i + 1);
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", i + 1);
    if (exec(db, migrations[i], path, what, err) != 0) goto fail;
    if (exec(db, bump, path, what, err) != 0) goto fail;
    if (exec(db, "COMMIT", path, what, err) != 0) goto fail;
    tb_log_msg(TB_LOG_INFO, "store.migrate", "%s: schema migrated to version %d", path, i + 1);
    continue;
  fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return TB_ESTORE;
  }
  return 0;
}

static void sqlite_close(struct tb__store_backend *b) {
  if (b == NULL) return;
  tb__sqlite_ckpt_stop(b->ckpt);
  for (int i = 0; i < S__COUNT; i++) sqlite3_finalize(b->st[i]);
  /* The last connection to close checkpoints what is left and removes the
   * WAL; a failure here loses nothing (the WAL is replayed at next open). */
  if (sqlite3_close(b->db) != SQLITE_OK)
    tb_log_msg(TB_LOG_WARN, "store.close.failed", "%s: %s", b->path, sqlite3_errmsg(b->db));
  tb__res_fini(&b->rb);
  free(b->path);
  free(b);
}

static int sqlite_open(const struct tb_store_options *opt, struct tb__store_backend **out,
                       int64_t *last_seq, char *err) {
  *out = NULL;
  struct tb__store_backend *b = calloc(1, sizeof *b);
  if (b == NULL) return tb_errf(err, TB_ENOMEM, "store: out of memory");
  tb__res_init(&b->rb);
  b->path = strdup(opt->path);
  if (b->path == NULL) {
    free(b);
    return tb_errf(err, TB_ENOMEM, "store: out of memory");
  }
  const char *path = b->path;

  /* Create the file ourselves so that it (and the -wal/-shm files, which
   * SQLite creates with the database file's mode) is 0600: it holds personal
   * data. An existing file keeps its mode. */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    int e = errno;
    tb_errf(err, TB_ESTORE, "store: cannot open %s: %s (check the directory exists and is writable)",
            path, strerror(e));
    goto fail;
  }
  struct stat sb;
  if (fstat(fd, &sb) == 0 && (sb.st_mode & 077) != 0)
    tb_log_msg(TB_LOG_WARN, "store.permissions",
               "%s is readable by group or others (mode %03o): it holds personal data; "
               "chmod 600 it", path, (unsigned)(sb.st_mode & 0777));
  close(fd);

  int rc = sqlite3_open_v2(path, &b->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    tb_errf(err, TB_ESTORE, "store: cannot open %s: %s (check the directory exists and is writable)",
            path, b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_extended_result_codes(b->db, 1);
  sqlite3_busy_timeout(b->db, TB__SQLITE_BUSY_TIMEOUT_MS);

  /* journal_mode answers with the mode in effect: a file that cannot do WAL
   * (e.g. on a network file system) says so here rather than later. */
  {
    sqlite3_stmt *s = NULL;
    rc = sqlite3_prepare_v2(b->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
      tb_errf(err, TB_ESTORE, "store: cannot open %s: %s", path, sqlite3_errmsg(b->db));
      sqlite3_finalize(s);
      goto fail;
    }
    const char *mode = (const char *)sqlite3_column_text(s, 0);
    if (mode == NULL || strcmp(mode, "wal") != 0) {
      tb_errf(err, TB_ESTORE,
              "store: %s: cannot switch to WAL journal mode (got \"%s\"); put the database on a "
              "local file system",
              path, mode ? mode : "?");
      sqlite3_finalize(s);
      goto fail;
    }
    sqlite3_finalize(s);
  }
  const char *sync = opt->durability == TB_STORE_DURABILITY_OS ? "PRAGMA synchronous = NORMAL"
                                                               : "PRAGMA synchronous = FULL";
  if (exec(b->db, sync, path, "cannot set synchronous", err) != 0) goto fail;
  if (exec(b->db, "PRAGMA foreign_keys = ON", path, "cannot enable foreign keys", err) != 0)
    goto fail;
  /* Checkpoints run on their own thread. NB: this replaces the WAL hook, so
   * it must come before tb__sqlite_ckpt_start installs ours. */
  sqlite3_wal_autocheckpoint(b->db, 0);

  if (migrate(b->db, path, err) != 0) goto fail;

  for (int i = 0; i < S__COUNT; i++) {
    rc = sqlite3_prepare_v3(b->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &b->st[i], NULL);
    if (rc != SQLITE_OK) {
      tb_errf(err, TB_ESTORE, "store: %s: cannot prepare \"%s\": %s", path, stmt_sql[i],
              sqlite3_errmsg(b->db));
      goto fail;
    }
  }
  if (query_int(b->db, "SELECT coalesce(max(seq), 0) FROM events", last_seq, path, err) != 0)
    goto fail;

  if (tb__sqlite_ckpt_start(path, b->db, opt->checkpoint_wal_pages, &b->ckpt, err) != 0) goto fail;

  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "store.open");
  tb_log_str(l, "backend", "sqlite");
  tb_log_str(l, "path", path);
  tb_log_int(l, "schema_version", SCHEMA_VERSION);
  tb_log_str(l, "durability", opt->durability == TB_STORE_DURABILITY_OS ? "os" : "fsync");
  tb_log_int(l, "last_seq", *last_seq);
  tb_log_end(l);
  *out = b;
  return 0;

fail:
  sqlite_close(b);
  return TB_ESTORE;
}

/* ---- transactions ------------------------------------------------------- */

static int sqlite_begin(struct tb__store_backend *b, char *err) {
  tb__sqlite_ckpt_gate(b->ckpt);
  return step_done(b, S_BEGIN, "cannot begin a transaction", NULL, err);
}

static int sqlite_commit(struct tb__store_backend *b, char *err) {
  return step_done(b, S_COMMIT, "commit failed", NULL, err);
}

static void sqlite_rollback(struct tb__store_backend *b) {
  if (!sqlite3_get_autocommit(b->db)) step_done(b, S_ROLLBACK, "rollback", NULL, NULL);
}

static int sqlite_savepoint(struct tb__store_backend *b, char *err) {
  return step_done(b, S_SAVEPOINT, "savepoint failed", NULL, err);
}

static int sqlite_release(struct tb__store_backend *b, char *err) {
  return step_done(b, S_RELEASE, "release failed", NULL, err);
}

static int sqlite_rollback_to(struct tb__store_backend *b, char *err) {
  return step_done(b, S_ROLLBACK_TO, "rollback to savepoint failed", NULL, err);
}

static int sqlite_in_transaction(struct tb__store_backend *b) {
  return !sqlite3_get_autocommit(b->db);
}

/* ---- operations --------------------------------------------------------- */

static int sqlite_case_accept(struct tb__store_backend *b, const struct tb_store_case_new *c,
                              enum tb_store_accept_outcome *outcome, int64_t *seq,
                              char **answer_copy, char *err) {
  *seq = 0;
  *answer_copy = NULL;
  if (c->body_len > INT_MAX)
    return tb_errf(err, TB_ELIMIT, "store: case '%s': body of %zu bytes is too large",
                   c->case_id, c->body_len);

  /* Existing case? Runs inside the batch's transaction, so an acceptance
   * earlier in the same batch is seen here. */
  sqlite3_stmt *s = b->st[S_CASE_LOOKUP];
  sqlite3_bind_text(s, 1, c->case_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    const void *h = sqlite3_column_blob(s, 0);
    int same = sqlite3_column_bytes(s, 0) == 32 && h && memcmp(h, c->body_hash, 32) == 0;
    if (same) {
      const char *a = (const char *)sqlite3_column_text(s, 1);
      size_t n = (size_t)sqlite3_column_bytes(s, 1);
      *answer_copy = malloc(n + 1);
      if (*answer_copy == NULL) {
        sqlite3_reset(s);
        return tb_errf(err, TB_ENOMEM, "store: case '%s': out of memory", c->case_id);
      }
      if (n) memcpy(*answer_copy, a, n);
      (*answer_copy)[n] = '\0';
    }
    sqlite3_reset(s);
    *outcome = same ? TB_STORE_ACCEPT_SAME : TB_STORE_ACCEPT_CONFLICT;
    return 0;
  }
  if (rc != SQLITE_DONE) return step_error(b, s, "cannot look up case", c->case_id, err);
  sqlite3_reset(s);

  s = b->st[S_CASE_INSERT];
  sqlite3_bind_text(s, 1, c->case_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, c->partner, -1, SQLITE_STATIC);
  bind_text_or_null(s, 3, c->origin_region);
  bind_text_or_null(s, 4, c->target_region);
  sqlite3_bind_blob(s, 5, c->body_hash, 32, SQLITE_STATIC);
  sqlite3_bind_text(s, 6, c->body, (int)c->body_len, SQLITE_STATIC);
  sqlite3_bind_text(s, 7, c->answer, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 8, c->now_ms);
  if (step_done(b, S_CASE_INSERT, "cannot insert case", c->case_id, err) != 0) return TB_ESTORE;

  s = b->st[S_EVENT_INSERT];
  sqlite3_bind_text(s, 1, c->case_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, c->partner, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, c->now_ms);
  if (step_done(b, S_EVENT_INSERT, "cannot insert event for case", c->case_id, err) != 0)
    return TB_ESTORE;
  int64_t ev_seq = sqlite3_last_insert_rowid(b->db);

  s = b->st[S_OUTBOX_INSERT];
  sqlite3_bind_text(s, 1, c->case_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, c->partner, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 3, c->message_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 4, c->now_ms);
  if (step_done(b, S_OUTBOX_INSERT, "cannot queue the outbound message for case", c->case_id,
                err) != 0)
    return TB_ESTORE;

  *seq = ev_seq;
  *outcome = TB_STORE_ACCEPT_NEW;
  return 0;
}

/* Appends the rows of an events query (seq, kind, case_id, partner, status,
 * detail, at_ms) to the builder. */
static int read_events(struct tb__store_backend *b, sqlite3_stmt *s, const char *what,
                       const char *id, char *err) {
  struct tb__res_builder *rb = &b->rb;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb__res_event e;
    e.seq = sqlite3_column_int64(s, 0);
    e.kind = col_str(rb, s, 1);
    e.case_id = col_str(rb, s, 2);
    e.partner = col_str(rb, s, 3);
    e.status = col_str(rb, s, 4);
    e.detail = col_str(rb, s, 5);
    e.at_ms = sqlite3_column_int64(s, 6);
    tb__res_event(rb, &e);
  }
  if (rc != SQLITE_DONE) return step_error(b, s, what, id, err);
  sqlite3_reset(s);
  return 0;
}

static int sqlite_case_get(struct tb__store_backend *b, const char *case_id,
                           struct tb_store_case_view **view, char *err) {
  *view = NULL;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_CASE_GET];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(s);
    return tb_errf(err, TB_ENOTFOUND, "store: no case '%s'", case_id);
  }
  if (rc != SQLITE_ROW) return step_error(b, s, "cannot read case", case_id, err);
  rb->case_id = col_str(rb, s, 0);
  rb->partner = col_str(rb, s, 1);
  rb->origin_region = col_str(rb, s, 2);
  rb->target_region = col_str(rb, s, 3);
  rb->status = col_str(rb, s, 4);
  rb->receipt_no = col_str(rb, s, 5);
  rb->last_error = col_str(rb, s, 6);
  rb->created_ms = sqlite3_column_int64(s, 7);
  rb->updated_ms = sqlite3_column_int64(s, 8);
  sqlite3_reset(s);

  s = b->st[S_CASE_EVENTS];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  if (read_events(b, s, "cannot read the timeline of case", case_id, err) != 0) return TB_ESTORE;
  if (tb__res_case_view(rb, view) != 0)
    return tb_errf(err, TB_ENOMEM, "store: case '%s': out of memory", case_id);
  return 0;
}

static int sqlite_events_list(struct tb__store_backend *b, int64_t after, size_t limit,
                              struct tb_store_event **events, size_t *n, int64_t *last_seq,
                              char *err) {
  *events = NULL;
  *n = 0;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_EVENTS_MAX];
  if (sqlite3_step(s) != SQLITE_ROW) return step_error(b, s, "cannot read", "events", err);
  *last_seq = sqlite3_column_int64(s, 0);
  sqlite3_reset(s);

  s = b->st[S_EVENTS_AFTER];
  sqlite3_bind_int64(s, 1, after);
  sqlite3_bind_int64(s, 2, limit > (size_t)INT64_MAX ? INT64_MAX : (int64_t)limit);
  if (read_events(b, s, "cannot read", "events", err) != 0) return TB_ESTORE;
  if (tb__res_events(rb, events, n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: events: out of memory");
  return 0;
}

static int sqlite_ping(struct tb__store_backend *b, int64_t now_ms, char *err) {
  sqlite3_bind_int64(b->st[S_PING], 1, now_ms);
  return step_done(b, S_PING, "heartbeat write failed", NULL, err);
}

const struct tb__store_backend_vtable tb__store_sqlite = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .savepoint = sqlite_savepoint,
    .release = sqlite_release,
    .rollback_to = sqlite_rollback_to,
    .in_transaction = sqlite_in_transaction,
    .case_accept = sqlite_case_accept,
    .case_get = sqlite_case_get,
    .events_list = sqlite_events_list,
    .ping = sqlite_ping,
};
