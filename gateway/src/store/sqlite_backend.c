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
#include <stddef.h>
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

/* Append-only. Index i brings the schema from user_version i to i+1; a step
 * is a few SQL texts run in order in one transaction (split only because C
 * compilers need not support string literals over 4095 bytes), the rest of
 * its row is NULL. */
#define TB__MIGRATION_PARTS 8
static const char *const migrations[][TB__MIGRATION_PARTS] = {
    {/* 1: cases, their event timeline, the outbound queue, a heartbeat row.
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
    "INSERT INTO health (id, beat_ms, beats) VALUES (1, 0, 0);"},

    {/* 2: delivery and inbound.
     *
     * outbox is rebuilt (SQLite's 12-step way: new table, copy, drop,
     * rename) because its v1 foreign key to cases cannot be dropped in place
     * and a message may now concern a partner's case (inbound = 1:
     * case_id names an inbound_cases row). The AUTOINCREMENT counter is
     * carried over so that ids keep growing. Nothing references outbox, so
     * dropping it with foreign_keys on is safe. */
    "CREATE TABLE outbox_v2 ("
    "  id               INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  case_id          TEXT NOT NULL,"
    "  inbound          INTEGER NOT NULL DEFAULT 0 CHECK (inbound IN (0, 1)),"
    "  partner          TEXT NOT NULL,"
    "  msg_type         TEXT NOT NULL,"      /* CASE_SUBMIT, CASE_WITHDRAW, CASE_SUPPLEMENT, STATUS_NOTIFY */
    "  message_id       TEXT NOT NULL UNIQUE,"
    "  state            TEXT NOT NULL,"      /* queued, sending, delivered, failed */
    "  attempts         INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_ms  INTEGER NOT NULL,"
    "  claimed_ms       INTEGER,"            /* last claim */
    "  last_code        TEXT,"               /* the partner's code of the last attempt */
    "  last_error       TEXT,"
    "  last_duration_ms INTEGER,"
    "  payload          TEXT,"               /* NULL: built from cases.body (CASE_SUBMIT) */
    "  created_ms       INTEGER NOT NULL,"
    "  updated_ms       INTEGER NOT NULL"    /* for a dead letter: when it failed */
    ");"
    "INSERT INTO outbox_v2 (id, case_id, inbound, partner, msg_type, message_id, state, attempts,"
    "  next_attempt_ms, last_error, payload, created_ms, updated_ms)"
    " SELECT id, case_id, 0, partner, msg_type, message_id, state, attempts, next_attempt_ms,"
    "  last_error, payload, created_ms, updated_ms FROM outbox ORDER BY id;"
    "INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_v2', 0"
    " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox_v2');"
    "UPDATE sqlite_sequence SET seq = (SELECT max(seq) FROM sqlite_sequence"
    " WHERE name IN ('outbox', 'outbox_v2')) WHERE name = 'outbox_v2';"
    "DROP TABLE outbox;"
    "ALTER TABLE outbox_v2 RENAME TO outbox;",
    /* Live messages only (delivered ones pile up forever and are never
     * looked at by the queue): claims scan it per partner in id order,
     * dead letters and the oldest queued message come from it too. Queries
     * must repeat "state <> 'delivered'" for SQLite to use it. */
    "CREATE INDEX outbox_live ON outbox (partner, state, id, next_attempt_ms)"
    " WHERE state <> 'delivered';"
    /* When the next queued message of a partner falls due. */
    "CREATE INDEX outbox_due ON outbox (partner, next_attempt_ms) WHERE state = 'queued';"
    /* A case's messages in order: the ordering rule, dead letters by case. */
    "CREATE INDEX outbox_case ON outbox (case_id, inbound, id);"
    /* Per partner and state counts, kept by triggers, so that queue metrics
     * cost O(partners) however deep the queue is. */
    "CREATE TABLE outbox_counts ("
    "  partner TEXT NOT NULL,"
    "  state   TEXT NOT NULL,"
    "  n       INTEGER NOT NULL,"
    "  PRIMARY KEY (partner, state)"
    ") WITHOUT ROWID;"
    "INSERT INTO outbox_counts (partner, state, n)"
    " SELECT partner, state, count(*) FROM outbox GROUP BY partner, state;",
    "CREATE TRIGGER outbox_count_insert AFTER INSERT ON outbox BEGIN"
    "  INSERT INTO outbox_counts (partner, state, n) VALUES (new.partner, new.state, 1)"
    "   ON CONFLICT (partner, state) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER outbox_count_update AFTER UPDATE OF partner, state ON outbox"
    " WHEN old.state IS NOT new.state OR old.partner IS NOT new.partner BEGIN"
    "  UPDATE outbox_counts SET n = n - 1 WHERE partner = old.partner AND state = old.state;"
    "  INSERT INTO outbox_counts (partner, state, n) VALUES (new.partner, new.state, 1)"
    "   ON CONFLICT (partner, state) DO UPDATE SET n = n + 1;"
    " END;"
    "CREATE TRIGGER outbox_count_delete AFTER DELETE ON outbox BEGIN"
    "  UPDATE outbox_counts SET n = n - 1 WHERE partner = old.partner AND state = old.state;"
    " END;",
    /* Listing cases for operators (tb_store_cases_list). */
    "CREATE INDEX cases_status ON cases (status, updated_ms);"
    "CREATE INDEX cases_partner ON cases (partner, updated_ms);"
    "CREATE INDEX cases_updated ON cases (updated_ms);"
    /* Cases partners send us. case_id alone is the key: GET /v1/inbound/{id}
     * names no partner, and case ids carry their origin's region. */
    "CREATE TABLE inbound_cases ("
    "  case_id       TEXT PRIMARY KEY NOT NULL,"
    "  partner       TEXT NOT NULL,"
    "  message_id    TEXT,"                  /* the CASE_SUBMIT that brought it */
    "  origin_region TEXT,"
    "  target_region TEXT,"
    "  receipt_no    TEXT NOT NULL,"         /* ours */
    "  status        TEXT NOT NULL,"         /* received, withdrawn, supplement_received, ... */
    "  body          TEXT NOT NULL,"         /* canonical case JSON */
    "  created_ms    INTEGER NOT NULL,"
    "  updated_ms    INTEGER NOT NULL"
    ");"
    /* Replay protection. Message ids answer duplicates with the first
     * receipt and are kept 30 days; nonces are kept until expires_ms (the
     * end of the window in which a copy could pass the timestamp check). */
    "CREATE TABLE inbound_messages ("
    "  partner    TEXT NOT NULL,"
    "  message_id TEXT NOT NULL,"
    "  case_id    TEXT,"
    "  receipt_no TEXT,"                     /* what the answer reported, for duplicates */
    "  at_ms      INTEGER NOT NULL,"
    "  PRIMARY KEY (partner, message_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX inbound_messages_at ON inbound_messages (at_ms);"
    "CREATE TABLE inbound_nonces ("
    "  partner    TEXT NOT NULL,"
    "  nonce      TEXT NOT NULL,"
    "  at_ms      INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (partner, nonce)"
    ") WITHOUT ROWID;"
    "CREATE INDEX inbound_nonces_expiry ON inbound_nonces (expires_ms);",
    /* Non-repudiation: the partner's signed answers to our messages ('out')
     * and the messages it sent us ('in'), byte for byte. Append-only. */
    "CREATE TABLE evidence ("
    "  id            INTEGER PRIMARY KEY,"
    "  case_id       TEXT,"
    "  inbound       INTEGER NOT NULL CHECK (inbound IN (0, 1)),"
    "  partner       TEXT NOT NULL,"
    "  direction     TEXT NOT NULL CHECK (direction IN ('in', 'out')),"
    "  msg_type      TEXT NOT NULL,"
    "  message_id    TEXT,"
    "  content_type  TEXT,"
    "  raw           BLOB NOT NULL,"
    "  verified      INTEGER NOT NULL CHECK (verified IN (0, 1)),"
    "  verify_detail TEXT,"
    "  code          TEXT,"
    "  attempt       INTEGER NOT NULL DEFAULT 0,"
    "  duration_ms   INTEGER NOT NULL DEFAULT 0,"
    "  at_ms         INTEGER NOT NULL"
    ");"
    "CREATE INDEX evidence_case ON evidence (case_id);"
    "CREATE TRIGGER evidence_no_update BEFORE UPDATE ON evidence BEGIN"
    "  SELECT RAISE(ABORT, 'evidence is append-only');"
    " END;"
    "CREATE TRIGGER evidence_no_delete BEFORE DELETE ON evidence BEGIN"
    "  SELECT RAISE(ABORT, 'evidence is append-only');"
    " END;"},
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
  X(PING, "UPDATE health SET beat_ms = ?1, beats = beats + 1 WHERE id = 1")               \
  /* ---- schema 2 ---- */                                                             \
  X(EV_ADD,                                                                             \
    "INSERT INTO events (kind, case_id, partner, status, detail, at_ms)"                \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)")                                                 \
  X(EV_DELIVERED,                                                                       \
    "INSERT INTO events (kind, case_id, partner, status, detail, at_ms)"                \
    " VALUES ('case.status', ?1, ?2, 'delivered',"                                      \
    " json_object('receipt_no', nullif(?3, ''), 'code', ?4), ?5)")                      \
  X(EV_FAILED,                                                                          \
    "INSERT INTO events (kind, case_id, partner, status, detail, at_ms)"                \
    " VALUES ('case.status', ?1, ?2, 'failed', json_object('code', ?3, 'text', ?4), ?5)") \
  /* json_patch onto {} drops the members whose value is null. */                     \
  X(EV_MESSAGE,                                                                         \
    "INSERT INTO events (kind, case_id, partner, status, detail, at_ms)"                \
    " VALUES (?1, ?2, ?3, NULL, json_patch('{}', json_object('msg_type', ?4,"           \
    " 'message_id', ?5, 'outcome', ?6, 'code', ?7, 'text', ?8)), ?9)")                  \
  X(EV_INBOUND_STATUS,                                                                  \
    "INSERT INTO events (kind, case_id, partner, status, detail, at_ms)"                \
    " VALUES ('case.status', ?1, ?2, ?3, json_object("                                  \
    " 'opinion', json_extract(?4, '$.opinion'),"                                        \
    " 'supplement', json_extract(?4, '$.supplement'),"                                  \
    " 'tracking_no', json_extract(?4, '$.tracking_no'),"                                \
    " 'licence_no', json_extract(?4, '$.licence_no'),"                                  \
    " 'receipt_no', coalesce(nullif(?5, ''), json_extract(?4, '$.receipt_no')),"        \
    " 'at', json_extract(?4, '$.at')), ?6)")                                            \
  X(EV_INBOUND_CASE,                                                                    \
    "INSERT INTO events (kind, case_id, partner, status, detail, at_ms)"                \
    " VALUES ('inbound.case', ?1, ?2, 'received', json_object('receipt_no', ?3), ?4)")  \
  /* Only for text that is known to be a JSON object; no row otherwise. */            \
  X(JSON_PEEK,                                                                          \
    "SELECT json_type(?1), json_extract(?1, '$.status'),"                               \
    " json_extract(?1, '$.origin_region'), json_extract(?1, '$.target_region')"         \
    " WHERE json_valid(?1)")                                                            \
  X(CASE_STATUS, "SELECT partner, status FROM cases WHERE case_id = ?1")                \
  X(CASE_SET,                                                                           \
    "UPDATE cases SET status = coalesce(?2, status),"                                   \
    " receipt_no = coalesce(nullif(?3, ''), receipt_no),"                               \
    " last_error = CASE WHEN ?5 THEN ?4 ELSE last_error END, updated_ms = ?6"           \
    " WHERE case_id = ?1")                                                              \
  X(CASE_TO_DELIVERING,                                                                 \
    "UPDATE cases SET status = 'delivering', updated_ms = ?2"                           \
    " WHERE case_id = ?1 AND status = 'queued'")                                        \
  X(OB_RECOVER,                                                                         \
    "UPDATE outbox SET state = 'queued', updated_ms = ?1"                               \
    " WHERE state = 'sending' AND state <> 'delivered'")                                \
  /* The ordering rule (store.h): due, and no earlier message of the same case        \
   * that is not yet delivered. */                                                    \
  X(OB_PICK,                                                                            \
    "SELECT o.id, o.case_id, o.inbound, o.partner, o.msg_type, o.message_id,"           \
    " o.attempts + 1, o.created_ms, coalesce(o.payload, c.body),"                       \
    " CASE o.inbound WHEN 0 THEN c.origin_region ELSE i.origin_region END,"             \
    " CASE o.inbound WHEN 0 THEN c.target_region ELSE i.target_region END,"             \
    " CASE o.inbound WHEN 0 THEN c.receipt_no ELSE i.receipt_no END"                    \
    " FROM outbox AS o INDEXED BY outbox_live"                                          \
    " LEFT JOIN cases AS c ON o.inbound = 0 AND c.case_id = o.case_id"                  \
    " LEFT JOIN inbound_cases AS i ON o.inbound = 1 AND i.case_id = o.case_id"          \
    " WHERE o.partner = ?1 AND o.state = 'queued' AND o.state <> 'delivered'"           \
    " AND o.next_attempt_ms <= ?2"                                                      \
    " AND NOT EXISTS (SELECT 1 FROM outbox AS e INDEXED BY outbox_case"                 \
    "  WHERE e.case_id = o.case_id AND e.inbound = o.inbound AND e.id < o.id"           \
    "  AND e.state <> 'delivered')"                                                     \
    " ORDER BY o.id LIMIT ?3")                                                          \
  X(OB_MARK,                                                                            \
    "UPDATE outbox SET state = 'sending', attempts = attempts + 1, claimed_ms = ?2,"    \
    " updated_ms = ?2 WHERE id = ?1")                                                   \
  X(OB_NEXT_DUE,                                                                        \
    "SELECT min(next_attempt_ms) FROM outbox INDEXED BY outbox_due"                     \
    " WHERE partner = ?1 AND state = 'queued' AND next_attempt_ms > ?2")                \
  X(OB_GET,                                                                             \
    "SELECT case_id, inbound, partner, msg_type, message_id, state, attempts"           \
    " FROM outbox WHERE id = ?1")                                                       \
  X(OB_SET,                                                                             \
    "UPDATE outbox SET state = ?2, next_attempt_ms = coalesce(?3, next_attempt_ms),"    \
    " last_code = ?4, last_error = ?5, last_duration_ms = ?6, updated_ms = ?7"          \
    " WHERE id = ?1")                                                                   \
  X(OB_ADD,                                                                             \
    "INSERT INTO outbox (case_id, inbound, partner, msg_type, message_id, state,"       \
    " next_attempt_ms, payload, created_ms, updated_ms)"                                \
    " VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?6, ?6)")                           \
  X(OB_REPLAY,                                                                          \
    "UPDATE outbox SET state = 'queued', attempts = 0, next_attempt_ms = ?2,"           \
    " updated_ms = ?2 WHERE id = ?1")                                                   \
  X(DLQ_LIST,                                                                           \
    "SELECT id, case_id, inbound, partner, msg_type, message_id, attempts, last_code,"  \
    " last_error, updated_ms FROM outbox INDEXED BY outbox_live"                        \
    " WHERE state = 'failed' AND state <> 'delivered' AND (?1 IS NULL OR partner = ?1)" \
    " ORDER BY id LIMIT ?2")                                                            \
  X(DLQ_PICK,                                                                           \
    "SELECT id, case_id, inbound, partner, msg_type, message_id"                        \
    " FROM outbox INDEXED BY outbox_live"                                               \
    " WHERE state = 'failed' AND state <> 'delivered'"                                  \
    " AND (?1 IS NULL OR case_id = ?1) AND (?2 IS NULL OR partner = ?2) ORDER BY id")   \
  X(QUEUE_STATS,                                                                        \
    "SELECT p.partner,"                                                                 \
    " coalesce((SELECT n FROM outbox_counts WHERE partner = p.partner"                  \
    "  AND state = 'queued'), 0),"                                                      \
    " coalesce((SELECT n FROM outbox_counts WHERE partner = p.partner"                  \
    "  AND state = 'sending'), 0),"                                                     \
    " coalesce((SELECT n FROM outbox_counts WHERE partner = p.partner"                  \
    "  AND state = 'failed'), 0),"                                                      \
    " coalesce((SELECT o.created_ms FROM outbox AS o INDEXED BY outbox_live"            \
    "  WHERE o.partner = p.partner AND o.state = 'queued' AND o.state <> 'delivered'"   \
    "  ORDER BY o.id LIMIT 1), 0)"                                                      \
    " FROM (SELECT DISTINCT partner FROM outbox_counts) AS p ORDER BY p.partner")       \
  X(IN_CASE_MIN, "SELECT partner, receipt_no, status FROM inbound_cases WHERE case_id = ?1") \
  X(IN_CASE_ADD,                                                                        \
    "INSERT INTO inbound_cases (case_id, partner, message_id, origin_region,"           \
    " target_region, receipt_no, status, body, created_ms, updated_ms)"                 \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'received', ?7, ?8, ?8)")                         \
  X(IN_CASE_STATUS,                                                                     \
    "UPDATE inbound_cases SET status = ?2, updated_ms = ?3 WHERE case_id = ?1")         \
  X(IN_CASE_GET,                                                                        \
    "SELECT case_id, partner, message_id, origin_region, target_region, receipt_no,"    \
    " status, body, created_ms, updated_ms FROM inbound_cases WHERE case_id = ?1")      \
  X(IN_CASE_EVENTS,                                                                     \
    "SELECT seq, kind, case_id, partner, status, detail, at_ms FROM events"             \
    " WHERE case_id = ?1 AND kind LIKE 'inbound.%' ORDER BY seq")                       \
  X(INMSG_GET,                                                                          \
    "SELECT receipt_no FROM inbound_messages WHERE partner = ?1 AND message_id = ?2")   \
  X(INMSG_PUT,                                                                          \
    "INSERT INTO inbound_messages (partner, message_id, case_id, receipt_no, at_ms)"    \
    " VALUES (?1, ?2, ?3, ?4, ?5)")                                                     \
  X(NONCE_GET,                                                                          \
    "SELECT expires_ms FROM inbound_nonces WHERE partner = ?1 AND nonce = ?2")          \
  X(NONCE_PUT,                                                                          \
    "INSERT OR REPLACE INTO inbound_nonces (partner, nonce, at_ms, expires_ms)"         \
    " VALUES (?1, ?2, ?3, ?4)")                                                         \
  X(PURGE_NONCES,                                                                       \
    "DELETE FROM inbound_nonces WHERE (partner, nonce) IN (SELECT partner, nonce"       \
    " FROM inbound_nonces INDEXED BY inbound_nonces_expiry WHERE expires_ms < ?1"       \
    " LIMIT ?2)")                                                                       \
  X(PURGE_MSGS,                                                                         \
    "DELETE FROM inbound_messages WHERE (partner, message_id) IN (SELECT partner,"      \
    " message_id FROM inbound_messages INDEXED BY inbound_messages_at WHERE at_ms < ?1" \
    " LIMIT ?2)")                                                                       \
  X(EVIDENCE_ADD,                                                                       \
    "INSERT INTO evidence (case_id, inbound, partner, direction, msg_type, message_id," \
    " content_type, raw, verified, verify_detail, code, attempt, duration_ms, at_ms)"   \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)")            \
  X(EVIDENCE_LIST,                                                                      \
    "SELECT id, case_id, inbound, partner, direction, msg_type, message_id,"            \
    " content_type, raw, verified, verify_detail, code, attempt, duration_ms, at_ms"    \
    " FROM evidence WHERE case_id = ?1 ORDER BY id")                                    \
  X(CASES_ANY,                                                                          \
    "SELECT case_id, partner, origin_region, target_region, status, receipt_no,"        \
    " last_error, created_ms, updated_ms FROM cases INDEXED BY cases_updated"           \
    " WHERE updated_ms >= ?3 ORDER BY updated_ms DESC LIMIT ?4")                        \
  X(CASES_BY_STATUS,                                                                    \
    "SELECT case_id, partner, origin_region, target_region, status, receipt_no,"        \
    " last_error, created_ms, updated_ms FROM cases INDEXED BY cases_status"            \
    " WHERE status = ?1 AND updated_ms >= ?3 AND (?2 IS NULL OR partner = ?2)"          \
    " ORDER BY updated_ms DESC LIMIT ?4")                                               \
  X(CASES_BY_PARTNER,                                                                   \
    "SELECT case_id, partner, origin_region, target_region, status, receipt_no,"        \
    " last_error, created_ms, updated_ms FROM cases INDEXED BY cases_partner"           \
    " WHERE partner = ?2 AND updated_ms >= ?3 ORDER BY updated_ms DESC LIMIT ?4")        \
  X(OB_CASE_LIST,                                                                       \
    "SELECT id, case_id, inbound, partner, msg_type, message_id, state, attempts,"      \
    " last_code, last_error, created_ms, updated_ms FROM outbox INDEXED BY outbox_case" \
    " WHERE case_id = ?1 AND inbound = ?2 ORDER BY id")                                 \
  /* Last success: the newest delivered message among the newest ?1 rows (a rowid   \
   * range, so the scan is bounded). Last failure: live rows only (outbox_live),     \
   * since delivery clears last_error; 'sending' is left out because its           \
   * updated_ms is the claim, not the failure. */                                    \
  X(PARTNER_ACTIVITY,                                                                   \
    "SELECT p.partner, coalesce(ok.updated_ms, 0), coalesce(f.updated_ms, 0),"          \
    " f.last_code, f.last_error"                                                        \
    " FROM (SELECT DISTINCT partner FROM outbox_counts) AS p"                           \
    " LEFT JOIN outbox AS ok ON ok.id = (SELECT o.id FROM outbox AS o"                  \
    "  WHERE o.partner = p.partner AND o.state = 'delivered'"                           \
    "  AND o.id > (SELECT coalesce(max(id), 0) FROM outbox) - ?1"                       \
    "  ORDER BY o.id DESC LIMIT 1)"                                                     \
    " LEFT JOIN outbox AS f ON f.id = (SELECT o.id FROM outbox AS o INDEXED BY outbox_live" \
    "  WHERE o.partner = p.partner AND o.state IN ('queued', 'failed')"                 \
    "  AND o.state <> 'delivered' AND o.last_error IS NOT NULL"                         \
    "  ORDER BY o.updated_ms DESC, o.id DESC LIMIT 1)"                                  \
    " ORDER BY p.partner")

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
  int64_t next_purge_ms;     /* replay-protection purge: not before this (inbound_record) */
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
    for (int part = 0; part < TB__MIGRATION_PARTS && migrations[i][part]; part++)
      if (exec(db, migrations[i][part], path, what, err) != 0) goto fail;
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

/* ---- schema 2: delivery and inbound ---------------------------------------- */

#define TB__INBOUND_MSGID_KEEP_MS (30LL * 24 * 3600 * 1000) /* message ids: 30 days */
#define TB__PURGE_EVERY_MS 60000                            /* at most once a minute */
#define TB__PURGE_BATCH 1000                                /* rows per table per purge */
#define TB__ID_MAX 256 /* case ids (64), partner names, message ids read into fixed buffers */

static const char *const business_statuses[] = {
    "accepted", "rejected", "supplement_required", "in_progress",
    "approved", "denied",   "withdrawn",           "result_shipped",
};

static int is_business_status(const char *s) {
  for (size_t i = 0; s && i < sizeof business_statuses / sizeof business_statuses[0]; i++)
    if (strcmp(s, business_statuses[i]) == 0) return 1;
  return 0;
}

/* Transport states (set by the gateway); everything else was reported by
 * the partner and is never overwritten by a transport outcome. */
static int is_transport_status(const char *s) {
  return s && (strcmp(s, "queued") == 0 || strcmp(s, "delivering") == 0 ||
               strcmp(s, "delivered") == 0 || strcmp(s, "failed") == 0);
}

static int too_long(size_t n) {
  return n > (size_t)INT_MAX;
}

/* Copies a text column into out; returns -1 (out "") if it does not fit,
 * so that callers never act on a truncated id. NULL reads as "". */
static int col_copy(sqlite3_stmt *s, int i, char *out, size_t size, int *has) {
  out[0] = '\0';
  if (has) *has = 0;
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return 0;
  const char *t = (const char *)sqlite3_column_text(s, i);
  if (t == NULL || (size_t)sqlite3_column_bytes(s, i) >= size) return -1;
  memcpy(out, t, (size_t)sqlite3_column_bytes(s, i) + 1);
  if (has) *has = 1;
  return 0;
}

/* Steps an INSERT INTO events and raises *seq to its seq. */
static int event_done(struct tb__store_backend *b, int which, const char *id, int64_t *seq,
                      char *err) {
  if (step_done(b, which, "cannot write an event for case", id, err) != 0) return TB_ESTORE;
  int64_t ev = sqlite3_last_insert_rowid(b->db);
  if (ev > *seq) *seq = ev;
  return 0;
}

static int add_event(struct tb__store_backend *b, const char *kind, const char *case_id,
                     const char *partner, const char *status, const char *detail,
                     size_t detail_len, int64_t at_ms, int64_t *seq, char *err) {
  sqlite3_stmt *s = b->st[S_EV_ADD];
  sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, case_id, -1, SQLITE_STATIC);
  bind_text_or_null(s, 3, partner);
  bind_text_or_null(s, 4, status);
  sqlite3_bind_text(s, 5, detail, (int)detail_len, SQLITE_STATIC);
  sqlite3_bind_int64(s, 6, at_ms);
  return event_done(b, S_EV_ADD, case_id, seq, err);
}

/* case.message (our case) or inbound.notify (a partner's case) for an
 * outbound message other than the case itself. */
static int message_event(struct tb__store_backend *b, int inbound, const char *case_id,
                         const char *partner, const char *msg_type, const char *message_id,
                         const char *outcome, const char *code, const char *text, int64_t at_ms,
                         int64_t *seq, char *err) {
  sqlite3_stmt *s = b->st[S_EV_MESSAGE];
  sqlite3_bind_text(s, 1, inbound ? "inbound.notify" : "case.message", -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, case_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 3, partner, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 4, msg_type, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 5, message_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 6, outcome, -1, SQLITE_STATIC);
  bind_text_or_null(s, 7, code);
  bind_text_or_null(s, 8, text);
  sqlite3_bind_int64(s, 9, at_ms);
  return event_done(b, S_EV_MESSAGE, case_id, seq, err);
}

/* UPDATE cases: status NULL keeps it, receipt NULL/"" keeps it, last_error
 * only when set_error. */
static int case_set(struct tb__store_backend *b, const char *case_id, const char *status,
                    const char *receipt, int set_error, const char *last_error, int64_t now_ms,
                    char *err) {
  sqlite3_stmt *s = b->st[S_CASE_SET];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  bind_text_or_null(s, 2, status);
  bind_text_or_null(s, 3, receipt);
  bind_text_or_null(s, 4, last_error);
  sqlite3_bind_int(s, 5, set_error);
  sqlite3_bind_int64(s, 6, now_ms);
  return step_done(b, S_CASE_SET, "cannot update case", case_id, err);
}

/* Reads our case's partner and status into buffers; 0 found, 1 not found. */
static int case_status(struct tb__store_backend *b, const char *case_id, char *partner,
                       size_t partner_size, char *status, size_t status_size, char *err) {
  sqlite3_stmt *s = b->st[S_CASE_STATUS];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(s);
    return 1;
  }
  if (rc != SQLITE_ROW) return step_error(b, s, "cannot read case", case_id, err);
  int fit = col_copy(s, 0, partner, partner_size, NULL) |
            col_copy(s, 1, status, status_size, NULL);
  sqlite3_reset(s);
  if (fit != 0)
    return tb_errf(err, TB_ELIMIT, "store: case '%s': stored partner name too long", case_id);
  return 0;
}

/* Reads an inbound case's partner, receipt and status; 0 found, 1 not. */
static int inbound_case_min(struct tb__store_backend *b, const char *case_id, char *partner,
                            size_t partner_size, char *receipt, size_t receipt_size, char *err) {
  sqlite3_stmt *s = b->st[S_IN_CASE_MIN];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(s);
    return 1;
  }
  if (rc != SQLITE_ROW) return step_error(b, s, "cannot read inbound case", case_id, err);
  int fit = col_copy(s, 0, partner, partner_size, NULL);
  if (receipt) fit |= col_copy(s, 1, receipt, receipt_size, NULL);
  sqlite3_reset(s);
  if (fit != 0)
    return tb_errf(err, TB_ELIMIT, "store: inbound case '%s': stored partner or receipt too long",
                   case_id);
  return 0;
}

/* What a canonical body says about itself. */
struct json_peek {
  int object;                      /* valid JSON whose top level is an object */
  char status[32];                 /* "$.status" if a string (truncated ones never validate) */
  char origin[16], target[16];     /* "$.origin_region" / "$.target_region" if strings */
  int has_origin, has_target;
};


static int json_peek(struct tb__store_backend *b, const char *json, size_t len, const char *id,
                     struct json_peek *pk, char *err) {
  memset(pk, 0, sizeof *pk);
  sqlite3_stmt *s = b->st[S_JSON_PEEK];
  sqlite3_bind_text(s, 1, json, (int)len, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_ROW) {
    const char *type = (const char *)sqlite3_column_text(s, 0);
    pk->object = type && strcmp(type, "object") == 0;
    /* Only strings count; a value too long for its buffer is no valid
     * status or region code anyway. */
    if (sqlite3_column_type(s, 1) == SQLITE_TEXT)
      (void)col_copy(s, 1, pk->status, sizeof pk->status, NULL);
    if (sqlite3_column_type(s, 2) == SQLITE_TEXT)
      (void)col_copy(s, 2, pk->origin, sizeof pk->origin, &pk->has_origin);
    if (sqlite3_column_type(s, 3) == SQLITE_TEXT)
      (void)col_copy(s, 3, pk->target, sizeof pk->target, &pk->has_target);
  } else if (rc != SQLITE_DONE) {
    return step_error(b, s, "cannot read the canonical body of case", id, err);
  }
  sqlite3_reset(s);
  if (!pk->object)
    return tb_errf(err, TB_EPARSE, "store: case '%s': the canonical body is not a JSON object",
                   id);
  return 0;
}

static int sqlite_outbox_recover(struct tb__store_backend *b, int64_t now_ms, size_t *count,
                                 char *err) {
  *count = 0;
  sqlite3_bind_int64(b->st[S_OB_RECOVER], 1, now_ms);
  if (step_done(b, S_OB_RECOVER, "cannot recover the messages being sent", NULL, err) != 0)
    return TB_ESTORE;
  *count = (size_t)sqlite3_changes(b->db);
  return 0;
}

static const size_t claimed_ptrs[] = {
    offsetof(struct tb_store_claimed, case_id),       offsetof(struct tb_store_claimed, partner),
    offsetof(struct tb_store_claimed, message_id),    offsetof(struct tb_store_claimed, body),
    offsetof(struct tb_store_claimed, origin_region), offsetof(struct tb_store_claimed, target_region),
    offsetof(struct tb_store_claimed, receipt_no),
};

/* Copies text column i into the pointer member of rec; returns its length. */
static size_t set_col(struct tb__res_builder *rb, void *rec, size_t member, sqlite3_stmt *s,
                      int i) {
  const void *t = sqlite3_column_type(s, i) == SQLITE_BLOB ? sqlite3_column_blob(s, i)
                                                           : (const void *)sqlite3_column_text(s, i);
  size_t n = (size_t)sqlite3_column_bytes(s, i);
  if (t == NULL && sqlite3_column_type(s, i) != SQLITE_NULL) t = ""; /* empty blob */
  tb__res_set(rb, rec, member, t, n);
  return t ? n : 0;
}

static int sqlite_outbox_claim(struct tb__store_backend *b, const char *partner, int64_t now_ms,
                               size_t max, struct tb_store_claimed **out, size_t *n,
                               int64_t *next_due_ms, int64_t *seq, char *err) {
  *out = NULL;
  *n = 0;
  *next_due_ms = 0;
  *seq = 0;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);

  /* Pick first, update after: never modify rows under a running scan. */
  sqlite3_stmt *s = b->st[S_OB_PICK];
  sqlite3_bind_text(s, 1, partner, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, now_ms);
  sqlite3_bind_int64(s, 3, (int64_t)max);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_claimed *c = tb__res_row(rb, sizeof *c);
    if (c == NULL) break;
    c->outbox_id = sqlite3_column_int64(s, 0);
    set_col(rb, c, offsetof(struct tb_store_claimed, case_id), s, 1);
    c->inbound = sqlite3_column_int(s, 2);
    set_col(rb, c, offsetof(struct tb_store_claimed, partner), s, 3);
    c->msg_type = tb__store_msg_type_parse((const char *)sqlite3_column_text(s, 4));
    set_col(rb, c, offsetof(struct tb_store_claimed, message_id), s, 5);
    c->attempts = (uint32_t)sqlite3_column_int64(s, 6);
    c->created_ms = sqlite3_column_int64(s, 7);
    c->body_len = set_col(rb, c, offsetof(struct tb_store_claimed, body), s, 8);
    set_col(rb, c, offsetof(struct tb_store_claimed, origin_region), s, 9);
    set_col(rb, c, offsetof(struct tb_store_claimed, target_region), s, 10);
    set_col(rb, c, offsetof(struct tb_store_claimed, receipt_no), s, 11);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot claim messages of partner", partner, err);
  sqlite3_reset(s);
  if (rb->oom) return tb_errf(err, TB_ENOMEM, "store: partner '%s': out of memory", partner);

  for (size_t i = 0; i < rb->nrows; i++) {
    struct tb_store_claimed *c = tb__res_row_at(rb, i);
    const char *case_id = tb__res_get(rb, c, offsetof(struct tb_store_claimed, case_id));
    s = b->st[S_OB_MARK];
    sqlite3_bind_int64(s, 1, c->outbox_id);
    sqlite3_bind_int64(s, 2, now_ms);
    if (step_done(b, S_OB_MARK, "cannot claim a message of case", case_id, err) != 0)
      return TB_ESTORE;
    if (c->msg_type != TB_MSG_CASE_SUBMIT || c->inbound) continue;
    /* The case's first attempt (or first after a replay): queued → delivering. */
    s = b->st[S_CASE_TO_DELIVERING];
    sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, now_ms);
    if (step_done(b, S_CASE_TO_DELIVERING, "cannot update case", case_id, err) != 0)
      return TB_ESTORE;
    if (sqlite3_changes(b->db) == 1 &&
        add_event(b, "case.status", case_id, partner, "delivering", "{}", 2, now_ms, seq, err) != 0)
      return TB_ESTORE;
  }

  s = b->st[S_OB_NEXT_DUE];
  sqlite3_bind_text(s, 1, partner, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 2, now_ms);
  if (sqlite3_step(s) != SQLITE_ROW)
    return step_error(b, s, "cannot read the queue of partner", partner, err);
  *next_due_ms = sqlite3_column_int64(s, 0); /* NULL (none) reads as 0 */
  sqlite3_reset(s);

  static const struct tb__res_shape shape = {
      .head_size = 0,
      .head_rows = TB__RES_NONE,
      .head_nrows = TB__RES_NONE,
      .row_size = sizeof(struct tb_store_claimed),
      .row_ptrs = claimed_ptrs,
      .n_row_ptrs = sizeof claimed_ptrs / sizeof claimed_ptrs[0],
  };
  void *blk;
  if (tb__res_finish(rb, &shape, &blk, n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: partner '%s': out of memory", partner);
  *out = blk;
  return 0;
}

static int add_evidence(struct tb__store_backend *b, const char *case_id, int inbound,
                        const char *partner, const char *direction, const char *msg_type,
                        const char *message_id, const char *content_type,
                        const unsigned char *raw, size_t raw_len, int verified,
                        const char *verify_detail, const char *code, int64_t attempt,
                        int64_t duration_ms, int64_t at_ms, char *err) {
  if (too_long(raw_len))
    return tb_errf(err, TB_ELIMIT, "store: case '%s': evidence of %zu bytes is too large",
                   case_id, raw_len);
  sqlite3_stmt *s = b->st[S_EVIDENCE_ADD];
  bind_text_or_null(s, 1, case_id);
  sqlite3_bind_int(s, 2, inbound);
  sqlite3_bind_text(s, 3, partner, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 4, direction, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 5, msg_type, -1, SQLITE_STATIC);
  bind_text_or_null(s, 6, message_id && message_id[0] ? message_id : NULL);
  bind_text_or_null(s, 7, content_type);
  sqlite3_bind_blob(s, 8, raw ? (const void *)raw : (const void *)"", (int)raw_len,
                    SQLITE_STATIC);
  sqlite3_bind_int(s, 9, verified ? 1 : 0);
  bind_text_or_null(s, 10, verify_detail);
  bind_text_or_null(s, 11, code);
  sqlite3_bind_int64(s, 12, attempt);
  sqlite3_bind_int64(s, 13, duration_ms);
  sqlite3_bind_int64(s, 14, at_ms);
  return step_done(b, S_EVIDENCE_ADD, "cannot store evidence for case", case_id, err);
}

/* "code: text", or whichever of the two there is, into buf. */
static const char *error_text(const char *code, const char *text, char *buf, size_t size) {
  int has_code = code && code[0], has_text = text && text[0];
  if (has_code && has_text)
    snprintf(buf, size, "%s: %s", code, text);
  else if (has_code || has_text)
    snprintf(buf, size, "%s", has_code ? code : text);
  else
    return NULL;
  return buf;
}

static int sqlite_outbox_finish(struct tb__store_backend *b, const struct tb_store_delivery_result *r,
                                int64_t *seq, char *err) {
  *seq = 0;
  char id[32];
  snprintf(id, sizeof id, "%lld", (long long)r->outbox_id);

  /* The message, copied out before other statements run. */
  char case_id[TB__ID_MAX], partner[TB__ID_MAX], msg_type[32], message_id[TB__ID_MAX],
      state[16];
  int inbound;
  int64_t attempts;
  sqlite3_stmt *s = b->st[S_OB_GET];
  sqlite3_bind_int64(s, 1, r->outbox_id);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(s);
    return tb_errf(err, TB_ENOTFOUND, "store: no outbound message %s", id);
  }
  if (rc != SQLITE_ROW) return step_error(b, s, "cannot read outbound message", id, err);
  int fit = col_copy(s, 0, case_id, sizeof case_id, NULL) |
            col_copy(s, 2, partner, sizeof partner, NULL) | col_copy(s, 3, msg_type, sizeof msg_type, NULL) |
            col_copy(s, 4, message_id, sizeof message_id, NULL) |
            col_copy(s, 5, state, sizeof state, NULL);
  inbound = sqlite3_column_int(s, 1);
  attempts = sqlite3_column_int64(s, 6);
  sqlite3_reset(s);
  if (fit != 0)
    return tb_errf(err, TB_ELIMIT,
                   "store: outbound message %s: its case id, partner or message id is longer "
                   "than the store handles here (%zu bytes)",
                   id, sizeof case_id - 1);
  if (strcmp(state, "sending") != 0)
    return tb_errf(err, TB_ECONFLICT,
                   "store: outbound message %s of case '%s' is '%s', not 'sending': it was not "
                   "claimed, or was already finished",
                   id, case_id, state);

  /* Whatever the verdict, an answer that arrived is evidence. */
  if (r->ack &&
      add_evidence(b, case_id, inbound, partner, "out", msg_type, message_id, r->ack_content_type,
                   r->ack, r->ack_len, r->ack_verified, r->ack_verify_detail, r->code, attempts,
                   r->duration_ms, r->now_ms, err) != 0)
    return TB_ESTORE;

  const char *new_state = r->verdict == TB_STORE_DELIVERED ? "delivered"
                          : r->verdict == TB_STORE_RETRY   ? "queued"
                                                           : "failed";
  const char *last_error = r->verdict == TB_STORE_DELIVERED ? NULL
                           : r->verdict == TB_STORE_RETRY && r->reason ? r->reason
                                                                       : r->text;
  s = b->st[S_OB_SET];
  sqlite3_bind_int64(s, 1, r->outbox_id);
  sqlite3_bind_text(s, 2, new_state, -1, SQLITE_STATIC);
  if (r->verdict == TB_STORE_RETRY)
    sqlite3_bind_int64(s, 3, r->next_attempt_ms);
  else
    sqlite3_bind_null(s, 3);
  bind_text_or_null(s, 4, r->code);
  bind_text_or_null(s, 5, last_error);
  sqlite3_bind_int64(s, 6, r->duration_ms);
  sqlite3_bind_int64(s, 7, r->now_ms);
  if (step_done(b, S_OB_SET, "cannot update the outbound message of case", case_id, err) != 0)
    return TB_ESTORE;

  char case_partner[TB__ID_MAX], case_st[64], ebuf[512];
  const char *case_error = error_text(r->code, last_error, ebuf, sizeof ebuf);
  int submit = strcmp(msg_type, "CASE_SUBMIT") == 0 && !inbound;

  if (inbound) {
    /* Our notification about a partner's case: its own status is what local
     * software reported and stays; the timeline shows the outcome. */
    if (r->verdict == TB_STORE_RETRY) return 0;
    return message_event(b, 1, case_id, partner, msg_type, message_id,
                         r->verdict == TB_STORE_DELIVERED ? "delivered" : "failed", r->code,
                         r->verdict == TB_STORE_DELIVERED ? NULL : r->text, r->now_ms, seq, err);
  }

  rc = case_status(b, case_id, case_partner, sizeof case_partner, case_st, sizeof case_st, err);
  if (rc < 0) return rc;
  if (rc == 1) return 0; /* cannot happen (accept writes both); nothing to update */
  int transport = is_transport_status(case_st);

  switch (r->verdict) {
  case TB_STORE_RETRY:
    return case_set(b, case_id, NULL, NULL, 1, case_error, r->now_ms, err);
  case TB_STORE_DELIVERED:
    if (submit && transport) {
      if (case_set(b, case_id, "delivered", r->receipt_no, 1, NULL, r->now_ms, err) != 0)
        return TB_ESTORE;
      s = b->st[S_EV_DELIVERED];
      sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
      sqlite3_bind_text(s, 2, partner, -1, SQLITE_STATIC);
      bind_text_or_null(s, 3, r->receipt_no);
      bind_text_or_null(s, 4, r->code);
      sqlite3_bind_int64(s, 5, r->now_ms);
      return event_done(b, S_EV_DELIVERED, case_id, seq, err);
    }
    if (submit && case_set(b, case_id, NULL, r->receipt_no, 0, NULL, r->now_ms, err) != 0)
      return TB_ESTORE;
    return message_event(b, 0, case_id, partner, msg_type, message_id, "delivered", r->code, NULL,
                         r->now_ms, seq, err);
  case TB_STORE_FAILED:
    if (submit && transport) {
      if (case_set(b, case_id, "failed", NULL, 1, case_error, r->now_ms, err) != 0)
        return TB_ESTORE;
      s = b->st[S_EV_FAILED];
      sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
      sqlite3_bind_text(s, 2, partner, -1, SQLITE_STATIC);
      bind_text_or_null(s, 3, r->code);
      bind_text_or_null(s, 4, r->text);
      sqlite3_bind_int64(s, 5, r->now_ms);
      return event_done(b, S_EV_FAILED, case_id, seq, err);
    }
    if (case_set(b, case_id, NULL, NULL, 1, case_error, r->now_ms, err) != 0) return TB_ESTORE;
    return message_event(b, 0, case_id, partner, msg_type, message_id, "failed", r->code, r->text,
                         r->now_ms, seq, err);
  }
  return tb_errf(err, TB_EINVAL, "store: outbound message %s: unknown verdict %d", id,
                 (int)r->verdict);
}

static int sqlite_outbox_enqueue(struct tb__store_backend *b, const struct tb__store_enqueue *e,
                                 int64_t *outbox_id, int64_t *seq, char *err) {
  *outbox_id = 0;
  *seq = 0;
  const char *type = tb_store_msg_type_name(e->msg_type);
  int inbound = e->msg_type == TB_MSG_STATUS_NOTIFY;
  if (too_long(e->payload_len))
    return tb_errf(err, TB_ELIMIT, "store: case '%s': payload of %zu bytes is too large",
                   e->case_id, e->payload_len);
  char partner[TB__ID_MAX], status[64];
  int rc = inbound ? inbound_case_min(b, e->case_id, partner, sizeof partner, NULL, 0, err)
                   : case_status(b, e->case_id, partner, sizeof partner, status, sizeof status,
                                 err);
  if (rc < 0) return rc;
  if (rc == 1)
    return tb_errf(err, TB_ENOTFOUND, "store: no %s '%s' to send %s for",
                   inbound ? "inbound case" : "case", e->case_id, type);
  if (e->partner && strcmp(e->partner, partner) != 0)
    return tb_errf(err, TB_ECONFLICT, "store: case '%s' belongs to partner '%s', not '%s'",
                   e->case_id, partner, e->partner);

  struct json_peek pk;
  if (inbound) {
    if (json_peek(b, e->payload, e->payload_len, e->case_id, &pk, err) != 0) return TB_EPARSE;
    if (!is_business_status(pk.status))
      return tb_errf(err, TB_EVALIDATE,
                     "store: inbound case '%s': status notification without a valid \"status\" "
                     "(accepted, rejected, supplement_required, in_progress, approved, denied, "
                     "withdrawn or result_shipped)",
                     e->case_id);
  }

  sqlite3_stmt *s = b->st[S_OB_ADD];
  sqlite3_bind_text(s, 1, e->case_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(s, 2, inbound);
  sqlite3_bind_text(s, 3, partner, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 4, type, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 5, e->message_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 6, e->now_ms);
  sqlite3_bind_text(s, 7, e->payload, (int)e->payload_len, SQLITE_STATIC);
  rc = sqlite3_step(s);
  if (rc == SQLITE_CONSTRAINT_UNIQUE) {
    sqlite3_reset(s);
    return tb_errf(err, TB_EEXISTS, "store: case '%s': message id '%s' is already used",
                   e->case_id, e->message_id);
  }
  if (rc != SQLITE_DONE) return step_error(b, s, "cannot queue a message for case", e->case_id, err);
  sqlite3_reset(s);
  *outbox_id = sqlite3_last_insert_rowid(b->db);

  if (!inbound) return 0;
  s = b->st[S_IN_CASE_STATUS];
  sqlite3_bind_text(s, 1, e->case_id, -1, SQLITE_STATIC);
  sqlite3_bind_text(s, 2, pk.status, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s, 3, e->now_ms);
  if (step_done(b, S_IN_CASE_STATUS, "cannot update inbound case", e->case_id, err) != 0)
    return TB_ESTORE;
  return add_event(b, "inbound.status", e->case_id, partner, pk.status, e->payload,
                   e->payload_len, e->now_ms, seq, err);
}

static const size_t dead_ptrs[] = {
    offsetof(struct tb_store_dead_letter, case_id),
    offsetof(struct tb_store_dead_letter, partner),
    offsetof(struct tb_store_dead_letter, message_id),
    offsetof(struct tb_store_dead_letter, last_code),
    offsetof(struct tb_store_dead_letter, last_error),
};

static int sqlite_dlq_list(struct tb__store_backend *b, const char *partner, size_t limit,
                           struct tb_store_dead_letter **out, size_t *n, char *err) {
  *out = NULL;
  *n = 0;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_DLQ_LIST];
  bind_text_or_null(s, 1, partner);
  sqlite3_bind_int64(s, 2, limit > (size_t)INT64_MAX ? INT64_MAX : (int64_t)limit);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_dead_letter *d = tb__res_row(rb, sizeof *d);
    if (d == NULL) break;
    d->outbox_id = sqlite3_column_int64(s, 0);
    set_col(rb, d, offsetof(struct tb_store_dead_letter, case_id), s, 1);
    d->inbound = sqlite3_column_int(s, 2);
    set_col(rb, d, offsetof(struct tb_store_dead_letter, partner), s, 3);
    d->msg_type = tb__store_msg_type_parse((const char *)sqlite3_column_text(s, 4));
    set_col(rb, d, offsetof(struct tb_store_dead_letter, message_id), s, 5);
    d->attempts = (uint32_t)sqlite3_column_int64(s, 6);
    set_col(rb, d, offsetof(struct tb_store_dead_letter, last_code), s, 7);
    set_col(rb, d, offsetof(struct tb_store_dead_letter, last_error), s, 8);
    d->failed_ms = sqlite3_column_int64(s, 9);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot read", "dead letters", err);
  sqlite3_reset(s);
  static const struct tb__res_shape shape = {
      .head_rows = TB__RES_NONE,
      .head_nrows = TB__RES_NONE,
      .row_size = sizeof(struct tb_store_dead_letter),
      .row_ptrs = dead_ptrs,
      .n_row_ptrs = sizeof dead_ptrs / sizeof dead_ptrs[0],
  };
  void *blk;
  if (tb__res_finish(rb, &shape, &blk, n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: dead letters: out of memory");
  *out = blk;
  return 0;
}

static int sqlite_dlq_replay(struct tb__store_backend *b, const char *case_id, const char *partner,
                             int64_t now_ms, size_t *count, int64_t *seq, char *err) {
  *count = 0;
  *seq = 0;
  /* The dead letters to replay go into the scratch builder first (as
   * struct tb_store_dead_letter rows; no result is made from them). */
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_DLQ_PICK];
  bind_text_or_null(s, 1, case_id);
  bind_text_or_null(s, 2, partner);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_dead_letter *d = tb__res_row(rb, sizeof *d);
    if (d == NULL) break;
    d->outbox_id = sqlite3_column_int64(s, 0);
    set_col(rb, d, offsetof(struct tb_store_dead_letter, case_id), s, 1);
    d->inbound = sqlite3_column_int(s, 2);
    set_col(rb, d, offsetof(struct tb_store_dead_letter, partner), s, 3);
    d->msg_type = tb__store_msg_type_parse((const char *)sqlite3_column_text(s, 4));
    set_col(rb, d, offsetof(struct tb_store_dead_letter, message_id), s, 5);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot read", "dead letters", err);
  sqlite3_reset(s);
  if (rb->oom) return tb_errf(err, TB_ENOMEM, "store: dead letters: out of memory");

  for (size_t i = 0; i < rb->nrows; i++) {
    const struct tb_store_dead_letter *d = tb__res_row_at(rb, i);
    const char *cid = tb__res_get(rb, d, offsetof(struct tb_store_dead_letter, case_id));
    const char *pid = tb__res_get(rb, d, offsetof(struct tb_store_dead_letter, partner));
    const char *mid = tb__res_get(rb, d, offsetof(struct tb_store_dead_letter, message_id));
    const char *type = tb_store_msg_type_name(d->msg_type);
    s = b->st[S_OB_REPLAY];
    sqlite3_bind_int64(s, 1, d->outbox_id);
    sqlite3_bind_int64(s, 2, now_ms);
    if (step_done(b, S_OB_REPLAY, "cannot replay a message of case", cid, err) != 0)
      return TB_ESTORE;
    if (d->msg_type == TB_MSG_CASE_SUBMIT && !d->inbound) {
      char cp[TB__ID_MAX], cst[64];
      rc = case_status(b, cid, cp, sizeof cp, cst, sizeof cst, err);
      if (rc < 0) return rc;
      if (rc == 0 && is_transport_status(cst)) {
        if (case_set(b, cid, "queued", NULL, 0, NULL, now_ms, err) != 0) return TB_ESTORE;
        static const char replayed[] = "{\"replayed\":true}";
        if (add_event(b, "case.status", cid, pid, "queued", replayed, sizeof replayed - 1, now_ms,
                      seq, err) != 0)
          return TB_ESTORE;
        continue;
      }
    }
    if (message_event(b, d->inbound, cid, pid, type ? type : "?", mid, "replayed", NULL, NULL,
                      now_ms, seq, err) != 0)
      return TB_ESTORE;
  }
  *count = rb->nrows;
  return 0;
}

static const size_t stat_ptrs[] = {offsetof(struct tb_store_queue_stat, partner)};

static int sqlite_queue_stats(struct tb__store_backend *b, struct tb_store_queue_stat **out,
                              size_t *n, char *err) {
  *out = NULL;
  *n = 0;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_QUEUE_STATS];
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_queue_stat *q = tb__res_row(rb, sizeof *q);
    if (q == NULL) break;
    set_col(rb, q, offsetof(struct tb_store_queue_stat, partner), s, 0);
    q->queued = (uint64_t)sqlite3_column_int64(s, 1);
    q->sending = (uint64_t)sqlite3_column_int64(s, 2);
    q->failed = (uint64_t)sqlite3_column_int64(s, 3);
    q->oldest_queued_ms = sqlite3_column_int64(s, 4);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot read", "queue statistics", err);
  sqlite3_reset(s);
  static const struct tb__res_shape shape = {
      .head_rows = TB__RES_NONE,
      .head_nrows = TB__RES_NONE,
      .row_size = sizeof(struct tb_store_queue_stat),
      .row_ptrs = stat_ptrs,
      .n_row_ptrs = 1,
  };
  void *blk;
  if (tb__res_finish(rb, &shape, &blk, n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: queue statistics: out of memory");
  *out = blk;
  return 0;
}

/* Deletes expired nonces and old message ids, a bounded batch at a time, at
 * most once a minute (sooner while a batch came back full). Runs inside an
 * inbound_record's savepoint; a failure only delays it. */
static void maybe_purge(struct tb__store_backend *b, int64_t now_ms) {
  if (now_ms < b->next_purge_ms && b->next_purge_ms - now_ms <= TB__PURGE_EVERY_MS) return;
  int full = 0;
  int64_t removed[2] = {0, 0};
  struct {
    int which;
    int64_t before;
  } jobs[2] = {{S_PURGE_NONCES, now_ms}, {S_PURGE_MSGS, now_ms - TB__INBOUND_MSGID_KEEP_MS}};
  for (int i = 0; i < 2; i++) {
    sqlite3_stmt *s = b->st[jobs[i].which];
    sqlite3_bind_int64(s, 1, jobs[i].before);
    sqlite3_bind_int(s, 2, TB__PURGE_BATCH);
    char err[TB_ERRMSG_MAX];
    if (step_done(b, jobs[i].which, "replay-protection purge failed", NULL, err) != 0) {
      tb_log_msg(TB_LOG_WARN, "store.purge.failed", "%s", err);
      break;
    }
    removed[i] = sqlite3_changes(b->db);
    if (removed[i] >= TB__PURGE_BATCH) full = 1;
  }
  b->next_purge_ms = full ? now_ms : now_ms + TB__PURGE_EVERY_MS;
  if (removed[0] || removed[1]) {
    struct tb_log_line *l = tb_log_begin(TB_LOG_DEBUG, "store.purge");
    tb_log_int(l, "nonces", removed[0]);
    tb_log_int(l, "message_ids", removed[1]);
    tb_log_end(l);
  }
}

static int sqlite_inbound_record(struct tb__store_backend *b, const struct tb_store_inbound_new *m,
                                 enum tb_inbound_outcome *outcome, char *receipt, int64_t *seq,
                                 char *err) {
  *seq = 0;
  *outcome = TB_INBOUND_FAILED;
  receipt[0] = '\0';
  const char *cid = m->case_id;
  const char *type = tb_store_msg_type_name(m->msg_type);
  int has_msgid = m->message_id && m->message_id[0];
  int has_nonce = m->nonce && m->nonce[0];
  if (too_long(m->canonical_len) || too_long(m->raw_len))
    return tb_errf(err, TB_ELIMIT, "store: case '%s': message too large", cid);

  maybe_purge(b, m->now_ms);

  /* The body first: a message we could not apply is an error, not a
   * remembered message id. */
  struct json_peek pk;
  if (json_peek(b, m->canonical, m->canonical_len, cid, &pk, err) != 0) return TB_EPARSE;
  if (m->kind == TB_INBOUND_STATUS && !is_business_status(pk.status))
    return tb_errf(err, TB_EVALIDATE,
                   "store: case '%s': status notification from partner '%s' without a valid "
                   "\"status\" (accepted, rejected, supplement_required, in_progress, approved, "
                   "denied, withdrawn or result_shipped)",
                   cid, m->partner);

  sqlite3_stmt *s;
  int rc;
  /* (a) a nonce still within its window. Checked before the message id:
   * the nonce belongs to the request's signed headers, which a receiver
   * checks before it looks at the body, so an exact replay of a request is
   * a replay (yue-json 4012), while a partner's genuine retry (same message
   * id, fresh nonce) is a duplicate (0001). */
  if (has_nonce) {
    s = b->st[S_NONCE_GET];
    sqlite3_bind_text(s, 1, m->partner, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, m->nonce, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      int64_t expires = sqlite3_column_int64(s, 0);
      sqlite3_reset(s);
      if (expires > m->now_ms) {
        *outcome = TB_INBOUND_NONCE_REUSED;
        return 0;
      }
    } else if (rc != SQLITE_DONE) {
      return step_error(b, s, "cannot check the nonce for case", cid, err);
    } else {
      sqlite3_reset(s);
    }
  }

  /* (b) a message id seen before */
  if (has_msgid) {
    s = b->st[S_INMSG_GET];
    sqlite3_bind_text(s, 1, m->partner, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, m->message_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      (void)col_copy(s, 0, receipt, TB_STORE_RECEIPT_MAX, NULL); /* written by us: fits */
      sqlite3_reset(s);
      *outcome = TB_INBOUND_DUPLICATE;
      return 0;
    }
    if (rc != SQLITE_DONE) return step_error(b, s, "cannot check the message id for case", cid, err);
    sqlite3_reset(s);
  }

  /* (c) the case it is about */
  char partner[TB__ID_MAX], status[64], in_receipt[TB_STORE_RECEIPT_MAX];
  if (m->kind == TB_INBOUND_STATUS) {
    rc = case_status(b, cid, partner, sizeof partner, status, sizeof status, err);
    if (rc < 0) return rc;
    if (rc == 1 || strcmp(partner, m->partner) != 0) {
      *outcome = TB_INBOUND_UNKNOWN_CASE;
      return 0;
    }
  } else {
    rc = inbound_case_min(b, cid, partner, sizeof partner, in_receipt, sizeof in_receipt, err);
    if (rc < 0) return rc;
    if (m->kind == TB_INBOUND_OTHER && (rc == 1 || strcmp(partner, m->partner) != 0)) {
      *outcome = TB_INBOUND_UNKNOWN_CASE;
      return 0;
    }
    if (m->kind == TB_INBOUND_CASE && rc == 0) {
      if (strcmp(partner, m->partner) != 0)
        return tb_errf(err, TB_ECONFLICT,
                       "store: partner '%s' sent case '%s', which partner '%s' already sent us",
                       m->partner, cid, partner);
      /* The same case under a new message id: answer as the first time. */
      snprintf(receipt, TB_STORE_RECEIPT_MAX, "%s", in_receipt);
      *outcome = TB_INBOUND_DUPLICATE;
      return 0;
    }
  }

  /* (d) accepted */
  const char *answer_receipt = m->kind == TB_INBOUND_CASE    ? m->our_receipt_no
                               : m->kind == TB_INBOUND_OTHER ? in_receipt
                                                             : NULL;
  if (answer_receipt) snprintf(receipt, TB_STORE_RECEIPT_MAX, "%s", answer_receipt);
  if (has_msgid) {
    s = b->st[S_INMSG_PUT];
    sqlite3_bind_text(s, 1, m->partner, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, m->message_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, cid, -1, SQLITE_STATIC);
    bind_text_or_null(s, 4, receipt[0] ? receipt : NULL);
    sqlite3_bind_int64(s, 5, m->now_ms);
    if (step_done(b, S_INMSG_PUT, "cannot remember the message id for case", cid, err) != 0)
      return TB_ESTORE;
  }
  if (has_nonce) {
    /* A copy of this message passes the timestamp check until its sent
     * time plus the window; without a sent time, count from now. */
    int64_t from = m->sent_ms > m->now_ms ? m->sent_ms : m->now_ms;
    s = b->st[S_NONCE_PUT];
    sqlite3_bind_text(s, 1, m->partner, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, m->nonce, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, m->now_ms);
    sqlite3_bind_int64(s, 4, from + (m->window_ms > 0 ? m->window_ms : 0));
    if (step_done(b, S_NONCE_PUT, "cannot remember the nonce for case", cid, err) != 0)
      return TB_ESTORE;
  }
  if (add_evidence(b, cid, m->kind != TB_INBOUND_STATUS, m->partner, "in", type, m->message_id,
                   m->content_type, m->raw, m->raw_len, m->verified, m->verify_detail, NULL, 0, 0,
                   m->now_ms, err) != 0)
    return TB_ESTORE;

  switch (m->kind) {
  case TB_INBOUND_STATUS: {
    if (case_set(b, cid, pk.status, m->receipt_no, 0, NULL, m->now_ms, err) != 0)
      return TB_ESTORE;
    s = b->st[S_EV_INBOUND_STATUS];
    sqlite3_bind_text(s, 1, cid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, m->partner, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, pk.status, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, m->canonical, (int)m->canonical_len, SQLITE_STATIC);
    bind_text_or_null(s, 5, m->receipt_no);
    sqlite3_bind_int64(s, 6, m->now_ms);
    rc = event_done(b, S_EV_INBOUND_STATUS, cid, seq, err);
    break;
  }
  case TB_INBOUND_CASE:
    s = b->st[S_IN_CASE_ADD];
    sqlite3_bind_text(s, 1, cid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, m->partner, -1, SQLITE_STATIC);
    bind_text_or_null(s, 3, has_msgid ? m->message_id : NULL);
    bind_text_or_null(s, 4, pk.has_origin ? pk.origin : NULL);
    bind_text_or_null(s, 5, pk.has_target ? pk.target : NULL);
    sqlite3_bind_text(s, 6, m->our_receipt_no, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 7, m->canonical, (int)m->canonical_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 8, m->now_ms);
    if (step_done(b, S_IN_CASE_ADD, "cannot store inbound case", cid, err) != 0) return TB_ESTORE;
    s = b->st[S_EV_INBOUND_CASE];
    sqlite3_bind_text(s, 1, cid, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, m->partner, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, m->our_receipt_no, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 4, m->now_ms);
    rc = event_done(b, S_EV_INBOUND_CASE, cid, seq, err);
    break;
  default: { /* OTHER */
    const char *to = m->msg_type == TB_MSG_CASE_WITHDRAW     ? "withdrawn"
                     : m->msg_type == TB_MSG_CASE_SUPPLEMENT ? "supplement_received"
                                                             : NULL;
    if (to) {
      s = b->st[S_IN_CASE_STATUS];
      sqlite3_bind_text(s, 1, cid, -1, SQLITE_STATIC);
      sqlite3_bind_text(s, 2, to, -1, SQLITE_STATIC);
      sqlite3_bind_int64(s, 3, m->now_ms);
      if (step_done(b, S_IN_CASE_STATUS, "cannot update inbound case", cid, err) != 0)
        return TB_ESTORE;
    }
    rc = add_event(b, "inbound.message", cid, m->partner, to, m->canonical, m->canonical_len,
                   m->now_ms, seq, err);
    break;
  }
  }
  if (rc != 0) return rc;
  *outcome = TB_INBOUND_ACCEPTED;
  return 0;
}

static const size_t event_ptrs[] = {
    offsetof(struct tb_store_event, kind),   offsetof(struct tb_store_event, case_id),
    offsetof(struct tb_store_event, partner), offsetof(struct tb_store_event, status),
    offsetof(struct tb_store_event, detail),
};

static const size_t inbound_view_ptrs[] = {
    offsetof(struct tb_store_inbound_view, case_id),
    offsetof(struct tb_store_inbound_view, partner),
    offsetof(struct tb_store_inbound_view, message_id),
    offsetof(struct tb_store_inbound_view, origin_region),
    offsetof(struct tb_store_inbound_view, target_region),
    offsetof(struct tb_store_inbound_view, receipt_no),
    offsetof(struct tb_store_inbound_view, status),
    offsetof(struct tb_store_inbound_view, body),
};

static int sqlite_inbound_get(struct tb__store_backend *b, const char *case_id,
                              struct tb_store_inbound_view **out, char *err) {
  *out = NULL;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_IN_CASE_GET];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(s);
    return tb_errf(err, TB_ENOTFOUND, "store: no inbound case '%s'", case_id);
  }
  if (rc != SQLITE_ROW) return step_error(b, s, "cannot read inbound case", case_id, err);
  struct tb_store_inbound_view *v = tb__res_head(rb, sizeof *v);
  if (v != NULL) {
    set_col(rb, v, offsetof(struct tb_store_inbound_view, case_id), s, 0);
    set_col(rb, v, offsetof(struct tb_store_inbound_view, partner), s, 1);
    set_col(rb, v, offsetof(struct tb_store_inbound_view, message_id), s, 2);
    set_col(rb, v, offsetof(struct tb_store_inbound_view, origin_region), s, 3);
    set_col(rb, v, offsetof(struct tb_store_inbound_view, target_region), s, 4);
    set_col(rb, v, offsetof(struct tb_store_inbound_view, receipt_no), s, 5);
    set_col(rb, v, offsetof(struct tb_store_inbound_view, status), s, 6);
    v->body_len = set_col(rb, v, offsetof(struct tb_store_inbound_view, body), s, 7);
    v->created_ms = sqlite3_column_int64(s, 8);
    v->updated_ms = sqlite3_column_int64(s, 9);
  }
  sqlite3_reset(s);

  s = b->st[S_IN_CASE_EVENTS];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_event *e = tb__res_row(rb, sizeof *e);
    if (e == NULL) break;
    e->seq = sqlite3_column_int64(s, 0);
    set_col(rb, e, offsetof(struct tb_store_event, kind), s, 1);
    set_col(rb, e, offsetof(struct tb_store_event, case_id), s, 2);
    set_col(rb, e, offsetof(struct tb_store_event, partner), s, 3);
    set_col(rb, e, offsetof(struct tb_store_event, status), s, 4);
    set_col(rb, e, offsetof(struct tb_store_event, detail), s, 5);
    e->at_ms = sqlite3_column_int64(s, 6);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot read the timeline of inbound case", case_id, err);
  sqlite3_reset(s);
  static const struct tb__res_shape shape = {
      .head_size = sizeof(struct tb_store_inbound_view),
      .head_ptrs = inbound_view_ptrs,
      .n_head_ptrs = sizeof inbound_view_ptrs / sizeof inbound_view_ptrs[0],
      .head_rows = offsetof(struct tb_store_inbound_view, timeline),
      .head_nrows = offsetof(struct tb_store_inbound_view, timeline_len),
      .row_size = sizeof(struct tb_store_event),
      .row_ptrs = event_ptrs,
      .n_row_ptrs = sizeof event_ptrs / sizeof event_ptrs[0],
  };
  void *blk;
  size_t n;
  if (tb__res_finish(rb, &shape, &blk, &n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: inbound case '%s': out of memory", case_id);
  *out = blk;
  return 0;
}

static const size_t evidence_ptrs[] = {
    offsetof(struct tb_store_evidence, case_id),
    offsetof(struct tb_store_evidence, partner),
    offsetof(struct tb_store_evidence, direction),
    offsetof(struct tb_store_evidence, message_id),
    offsetof(struct tb_store_evidence, content_type),
    offsetof(struct tb_store_evidence, raw),
    offsetof(struct tb_store_evidence, verify_detail),
    offsetof(struct tb_store_evidence, code),
};

static int sqlite_evidence_list(struct tb__store_backend *b, const char *case_id,
                                struct tb_store_evidence **out, size_t *n, char *err) {
  *out = NULL;
  *n = 0;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_EVIDENCE_LIST];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_evidence *e = tb__res_row(rb, sizeof *e);
    if (e == NULL) break;
    e->id = sqlite3_column_int64(s, 0);
    set_col(rb, e, offsetof(struct tb_store_evidence, case_id), s, 1);
    e->inbound = sqlite3_column_int(s, 2);
    set_col(rb, e, offsetof(struct tb_store_evidence, partner), s, 3);
    set_col(rb, e, offsetof(struct tb_store_evidence, direction), s, 4);
    e->msg_type = tb__store_msg_type_parse((const char *)sqlite3_column_text(s, 5));
    set_col(rb, e, offsetof(struct tb_store_evidence, message_id), s, 6);
    set_col(rb, e, offsetof(struct tb_store_evidence, content_type), s, 7);
    e->raw_len = set_col(rb, e, offsetof(struct tb_store_evidence, raw), s, 8);
    e->verified = sqlite3_column_int(s, 9);
    set_col(rb, e, offsetof(struct tb_store_evidence, verify_detail), s, 10);
    set_col(rb, e, offsetof(struct tb_store_evidence, code), s, 11);
    e->attempt = (uint32_t)sqlite3_column_int64(s, 12);
    e->duration_ms = sqlite3_column_int64(s, 13);
    e->at_ms = sqlite3_column_int64(s, 14);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot read the evidence of case", case_id, err);
  sqlite3_reset(s);
  static const struct tb__res_shape shape = {
      .head_rows = TB__RES_NONE,
      .head_nrows = TB__RES_NONE,
      .row_size = sizeof(struct tb_store_evidence),
      .row_ptrs = evidence_ptrs,
      .n_row_ptrs = sizeof evidence_ptrs / sizeof evidence_ptrs[0],
  };
  void *blk;
  if (tb__res_finish(rb, &shape, &blk, n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: evidence of case '%s': out of memory", case_id);
  *out = blk;
  return 0;
}

static const size_t case_view_ptrs[] = {
    offsetof(struct tb_store_case_view, case_id),       offsetof(struct tb_store_case_view, partner),
    offsetof(struct tb_store_case_view, origin_region), offsetof(struct tb_store_case_view, target_region),
    offsetof(struct tb_store_case_view, status),        offsetof(struct tb_store_case_view, receipt_no),
    offsetof(struct tb_store_case_view, last_error),
};

static int sqlite_cases_list(struct tb__store_backend *b, const struct tb_store_case_filter *f,
                             struct tb_store_case_view **out, size_t *n, char *err) {
  *out = NULL;
  *n = 0;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  /* One statement per filter shape, each pinned to its index. */
  int which = f->status ? S_CASES_BY_STATUS : f->partner ? S_CASES_BY_PARTNER : S_CASES_ANY;
  sqlite3_stmt *s = b->st[which];
  bind_text_or_null(s, 1, f->status);
  bind_text_or_null(s, 2, f->partner);
  sqlite3_bind_int64(s, 3, f->since_ms);
  sqlite3_bind_int64(s, 4, f->limit == 0 || f->limit > (size_t)INT64_MAX ? -1 : (int64_t)f->limit);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_case_view *v = tb__res_row(rb, sizeof *v);
    if (v == NULL) break;
    set_col(rb, v, offsetof(struct tb_store_case_view, case_id), s, 0);
    set_col(rb, v, offsetof(struct tb_store_case_view, partner), s, 1);
    set_col(rb, v, offsetof(struct tb_store_case_view, origin_region), s, 2);
    set_col(rb, v, offsetof(struct tb_store_case_view, target_region), s, 3);
    set_col(rb, v, offsetof(struct tb_store_case_view, status), s, 4);
    set_col(rb, v, offsetof(struct tb_store_case_view, receipt_no), s, 5);
    set_col(rb, v, offsetof(struct tb_store_case_view, last_error), s, 6);
    v->created_ms = sqlite3_column_int64(s, 7);
    v->updated_ms = sqlite3_column_int64(s, 8);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot list", "cases", err);
  sqlite3_reset(s);
  static const struct tb__res_shape shape = {
      .head_rows = TB__RES_NONE,
      .head_nrows = TB__RES_NONE,
      .row_size = sizeof(struct tb_store_case_view),
      .row_ptrs = case_view_ptrs,
      .n_row_ptrs = sizeof case_view_ptrs / sizeof case_view_ptrs[0],
  };
  void *blk;
  if (tb__res_finish(rb, &shape, &blk, n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: cases: out of memory");
  *out = blk;
  return 0;
}

static const size_t outbox_row_ptrs[] = {
    offsetof(struct tb_store_outbox_row, case_id),
    offsetof(struct tb_store_outbox_row, partner),
    offsetof(struct tb_store_outbox_row, message_id),
    offsetof(struct tb_store_outbox_row, state),
    offsetof(struct tb_store_outbox_row, last_code),
    offsetof(struct tb_store_outbox_row, last_error),
};

static int sqlite_outbox_list(struct tb__store_backend *b, const char *case_id, int inbound,
                              struct tb_store_outbox_row **out, size_t *n, char *err) {
  *out = NULL;
  *n = 0;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_OB_CASE_LIST];
  sqlite3_bind_text(s, 1, case_id, -1, SQLITE_STATIC);
  sqlite3_bind_int(s, 2, inbound ? 1 : 0);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_outbox_row *r = tb__res_row(rb, sizeof *r);
    if (r == NULL) break;
    r->outbox_id = sqlite3_column_int64(s, 0);
    set_col(rb, r, offsetof(struct tb_store_outbox_row, case_id), s, 1);
    r->inbound = sqlite3_column_int(s, 2);
    set_col(rb, r, offsetof(struct tb_store_outbox_row, partner), s, 3);
    r->msg_type = tb__store_msg_type_parse((const char *)sqlite3_column_text(s, 4));
    set_col(rb, r, offsetof(struct tb_store_outbox_row, message_id), s, 5);
    set_col(rb, r, offsetof(struct tb_store_outbox_row, state), s, 6);
    r->attempts = (uint32_t)sqlite3_column_int64(s, 7);
    set_col(rb, r, offsetof(struct tb_store_outbox_row, last_code), s, 8);
    set_col(rb, r, offsetof(struct tb_store_outbox_row, last_error), s, 9);
    r->created_ms = sqlite3_column_int64(s, 10);
    r->updated_ms = sqlite3_column_int64(s, 11);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot read the messages of case", case_id, err);
  sqlite3_reset(s);
  static const struct tb__res_shape shape = {
      .head_rows = TB__RES_NONE,
      .head_nrows = TB__RES_NONE,
      .row_size = sizeof(struct tb_store_outbox_row),
      .row_ptrs = outbox_row_ptrs,
      .n_row_ptrs = sizeof outbox_row_ptrs / sizeof outbox_row_ptrs[0],
  };
  void *blk;
  if (tb__res_finish(rb, &shape, &blk, n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: messages of case '%s': out of memory", case_id);
  *out = blk;
  return 0;
}

static const size_t activity_ptrs[] = {
    offsetof(struct tb_store_partner_activity, partner),
    offsetof(struct tb_store_partner_activity, last_failure_code),
    offsetof(struct tb_store_partner_activity, last_failure_error),
};

static int sqlite_partner_activity(struct tb__store_backend *b,
                                   struct tb_store_partner_activity **out, size_t *n,
                                   char *err) {
  *out = NULL;
  *n = 0;
  struct tb__res_builder *rb = &b->rb;
  tb__res_reset(rb);
  sqlite3_stmt *s = b->st[S_PARTNER_ACTIVITY];
  sqlite3_bind_int64(s, 1, TB_STORE_ACTIVITY_WINDOW);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    struct tb_store_partner_activity *a = tb__res_row(rb, sizeof *a);
    if (a == NULL) break;
    set_col(rb, a, offsetof(struct tb_store_partner_activity, partner), s, 0);
    a->last_delivered_ms = sqlite3_column_int64(s, 1);
    a->last_failure_ms = sqlite3_column_int64(s, 2);
    set_col(rb, a, offsetof(struct tb_store_partner_activity, last_failure_code), s, 3);
    set_col(rb, a, offsetof(struct tb_store_partner_activity, last_failure_error), s, 4);
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return step_error(b, s, "cannot read", "partner activity", err);
  sqlite3_reset(s);
  static const struct tb__res_shape shape = {
      .head_rows = TB__RES_NONE,
      .head_nrows = TB__RES_NONE,
      .row_size = sizeof(struct tb_store_partner_activity),
      .row_ptrs = activity_ptrs,
      .n_row_ptrs = sizeof activity_ptrs / sizeof activity_ptrs[0],
  };
  void *blk;
  if (tb__res_finish(rb, &shape, &blk, n) != 0)
    return tb_errf(err, TB_ENOMEM, "store: partner activity: out of memory");
  *out = blk;
  return 0;
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
    .outbox_recover = sqlite_outbox_recover,
    .outbox_claim = sqlite_outbox_claim,
    .outbox_finish = sqlite_outbox_finish,
    .outbox_enqueue = sqlite_outbox_enqueue,
    .dlq_list = sqlite_dlq_list,
    .dlq_replay = sqlite_dlq_replay,
    .queue_stats = sqlite_queue_stats,
    .inbound_record = sqlite_inbound_record,
    .inbound_get = sqlite_inbound_get,
    .evidence_list = sqlite_evidence_list,
    .cases_list = sqlite_cases_list,
    .outbox_list = sqlite_outbox_list,
    .partner_activity = sqlite_partner_activity,
};
