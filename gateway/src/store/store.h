/*
 * store/store.h — the durable store, backend-agnostic.
 *
 * All storage work runs on one dedicated storage thread (never the libuv loop,
 * never the shared libuv threadpool). Callers on the loop thread queue
 * operations; the storage thread takes every queued operation, runs them in
 * one transaction (each operation inside its own savepoint, so one failing
 * operation does not undo the others), commits once (group commit: one fsync
 * for the whole batch), and only then hands each result back to the loop
 * thread through a uv_async_t, where the callback runs. A callback therefore
 * never reports data that is not yet durable.
 *
 * Backends implement store/backend.h; SQLite (WAL) is the embedded default,
 * a PostgreSQL backend can slot in behind the same interface.
 *
 * Threading: every tb_store_* function below is called on the loop thread that
 * opened the store, and every callback runs on that thread.
 *
 * Callbacks follow libuv's rule: a call that returns an error never runs its
 * callback; one that returns 0 runs it exactly once, in queue order. A
 * callback's errmsg is NULL when rc == 0, else a sentence naming the case or
 * the path. Operations are seen in queue order: a read sees every write
 * queued before it (reads go through the same queue; they never block the
 * loop).
 *
 * The store's uv_async_t only keeps the loop alive while operations are
 * pending (and from tb_store_close until on_closed), so uv_run(UV_RUN_DEFAULT)
 * returns once the store has nothing left to answer. See docs/store.md.
 */
#ifndef TB_STORE_STORE_H
#define TB_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

enum tb_store_durability {
  TB_STORE_DURABILITY_FSYNC = 0, /* commit = on disk (SQLite synchronous=FULL) */
  TB_STORE_DURABILITY_OS = 1,    /* commit = handed to the OS (synchronous=NORMAL) */
};

struct tb_store_options {
  const char *path;                    /* database file; created if missing */
  enum tb_store_durability durability;
  size_t batch_max;                    /* max operations per transaction; default 1024 (0 = default) */
  uint32_t checkpoint_wal_pages;       /* WAL size that triggers a background checkpoint; default 8192 */
};
/* Defaults for everything; path is NULL and must be set. */
void tb_store_options_default(struct tb_store_options *opt);

struct tb_store;

/* Opens (creating the file with mode 0600 and migrating the schema with PRAGMA
 * user_version), starts the storage and checkpoint threads. Synchronous: call
 * at start-up. *out is NULL on error. Errors: TB_EINVAL (no path); TB_ESTORE
 * with the path and SQLite's message; TB_ESTORE if the file's schema version
 * is newer than this binary knows (the message names both versions). */
int tb_store_open(uv_loop_t *loop, const struct tb_store_options *opt, struct tb_store **out,
                  char *err);

/* Completes every queued operation (their callbacks run), checkpoints, stops
 * the threads, closes the database and frees the store; on_closed (may be
 * NULL) runs on the loop thread afterwards, once the loop has run. From this
 * call on, tb_store_* calls that queue work return TB_ECLOSED (st stays
 * valid until on_closed); calling it twice is a programmer error. */
void tb_store_close(struct tb_store *st, void (*on_closed)(void *ud), void *ud);

/* ---- cases ---------------------------------------------------------- */

struct tb_store_case_new {
  const char *case_id;
  const char *partner;          /* routed partner name */
  const char *origin_region;
  const char *target_region;
  const char *message_id;       /* outbound message id for CASE_SUBMIT, fixed now so every retry reuses it */
  const unsigned char *body_hash; /* 32 bytes: SHA-256 of the canonical JSON (keys sorted, compact) */
  const char *body;             /* the canonical case JSON to deliver */
  size_t body_len;
  const char *answer;           /* the JSON answer given to the client, kept for idempotent repeats */
  int64_t now_ms;
};

enum tb_store_accept_outcome {
  TB_STORE_ACCEPT_NEW = 0,      /* inserted: case (status queued), event, outbox message */
  TB_STORE_ACCEPT_SAME = 1,     /* case_id exists with the same body_hash: nothing written */
  TB_STORE_ACCEPT_CONFLICT = 2, /* case_id exists with another body_hash: nothing written */
};

/* rc is 0 or a TB_E* code (errmsg then says why; TB_ESTORE when the batch's
 * commit failed: nothing of this case was written). answer is the stored
 * answer (for SAME, the answer of the first acceptance; for NEW, the one
 * given; NULL for CONFLICT and on error); borrowed for the callback's
 * duration. seq is the queued event's sequence number for NEW, 0 otherwise.
 * On error outcome is TB_STORE_ACCEPT_NEW and means nothing. */
typedef void (*tb_store_accept_cb)(int rc, enum tb_store_accept_outcome outcome,
                                   const char *answer, int64_t seq, const char *errmsg,
                                   void *ud);

/* Queues the acceptance of a new case; the struct and its strings are copied.
 * case_id, partner, message_id, body_hash, body and answer are required
 * (origin/target_region may be NULL). Returns 0 (cb will run exactly once)
 * or TB_ECLOSED/TB_ENOMEM/TB_EINVAL (cb never runs). Two acceptances of one
 * case_id in flight at once are answered in queue order: the second sees the
 * first (SAME or CONFLICT). */
int tb_store_case_accept(struct tb_store *st, const struct tb_store_case_new *c,
                         tb_store_accept_cb cb, void *ud);

struct tb_store_event {
  int64_t seq;          /* strictly increasing over the whole store */
  const char *kind;     /* "case.status" (later also "inbound.case", ...) */
  const char *case_id;
  const char *partner;
  const char *status;   /* canonical status the case moved to */
  const char *detail;   /* JSON object text with extra data, "{}" if none */
  int64_t at_ms;
};

struct tb_store_case_view {
  const char *case_id;
  const char *partner;
  const char *origin_region;
  const char *target_region;
  const char *status;
  const char *receipt_no;   /* NULL until the partner acknowledges */
  const char *last_error;   /* NULL if none */
  int64_t created_ms;
  int64_t updated_ms;
  const struct tb_store_event *timeline; /* oldest first */
  size_t timeline_len;
};

/* rc TB_ENOTFOUND when there is no such case; view is NULL unless rc == 0.
 * Everything is borrowed for the callback's duration. */
typedef void (*tb_store_case_cb)(int rc, const struct tb_store_case_view *view,
                                 const char *errmsg, void *ud);
int tb_store_case_get(struct tb_store *st, const char *case_id, tb_store_case_cb cb, void *ud);

/* ---- event feed ----------------------------------------------------- */

/* Events with seq > after, oldest first, at most limit (events is NULL when
 * n == 0). last_seq is the highest seq in the store at the time of the read.
 * Everything is borrowed for the callback's duration. */
typedef void (*tb_store_events_cb)(int rc, const struct tb_store_event *events, size_t n,
                                   int64_t last_seq, const char *errmsg, void *ud);
int tb_store_events_list(struct tb_store *st, int64_t after, size_t limit,
                         tb_store_events_cb cb, void *ud);

/* Highest event seq committed so far, as known on the loop thread. */
int64_t tb_store_last_seq(const struct tb_store *st);

/* Called on the loop thread after every committed batch (before the batch's
 * callbacks run): long-poll waiters and metrics hang off this. batch_ops
 * counts every operation of the batch, reads included; commit_ns is the time
 * COMMIT took (with its fsync). Not called for a batch whose commit failed.
 * One hook per store; fn NULL removes it. */
typedef void (*tb_store_commit_fn)(int64_t last_seq, size_t batch_ops, uint64_t commit_ns,
                                   void *ud);
void tb_store_on_commit(struct tb_store *st, tb_store_commit_fn fn, void *ud);

/* ---- health --------------------------------------------------------- */

/* Readiness probe: proves the store can write and commit right now (it
 * updates a heartbeat row in the batch's transaction). */
typedef void (*tb_store_ping_cb)(int rc, const char *errmsg, void *ud);
int tb_store_ping(struct tb_store *st, tb_store_ping_cb cb, void *ud);

/* Operations queued and not yet answered (metrics, back-pressure). */
size_t tb_store_pending(const struct tb_store *st);

#endif
