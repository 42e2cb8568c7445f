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

#include "tbgw/adapter.h" /* enum tb_msg_type, enum tb_inbound_kind, enum tb_inbound_outcome */

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
  const char *kind;     /* "case.status", "case.message", "inbound.case", "inbound.message",
                           "inbound.status", "inbound.notify" (docs/store.md, "Events") */
  const char *case_id;
  const char *partner;
  const char *status;   /* canonical status the case moved to; NULL for kinds that are
                           not a status change (case.message, inbound.notify) */
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

/* ---- common to what follows ---------------------------------------------
 *
 * Every function below follows the rules at the top of this file: loop
 * thread only; inputs are copied when the call returns 0; a call that
 * returns an error (TB_ECLOSED, TB_ENOMEM, TB_EINVAL) never runs its
 * callback, one that returns 0 runs it exactly once, after the commit;
 * results are one block, borrowed for the callback's duration. Every status
 * change writes an event (strictly increasing seq) in the same savepoint,
 * and the commit hook reports it like an acceptance's.
 *
 * Message types are stored by name: CASE_SUBMIT, CASE_WITHDRAW,
 * CASE_SUPPLEMENT, STATUS_NOTIFY. */

/* "CASE_SUBMIT", ...; NULL for a value outside enum tb_msg_type. */
const char *tb_store_msg_type_name(enum tb_msg_type t);

/* Longest receipt number the store hands back in a fixed buffer, NUL
 * included; longer receipt numbers are refused with TB_EINVAL. */
#define TB_STORE_RECEIPT_MAX 128
/* Most messages one claim may return. */
#define TB_STORE_CLAIM_MAX 1024

/* Answers with a count (recover, dlq replay). */
typedef void (*tb_store_count_cb)(int rc, size_t count, const char *errmsg, void *ud);

/* ---- delivery: the outbound queue ----------------------------------------
 *
 * Each outbox message is in one state: queued → sending (claimed) →
 * delivered, or back to queued (retry), or failed (dead letter, until an
 * operator replays it). The message_id never changes, so the partner can
 * de-duplicate retries (SPEC §7).
 *
 * Ordering rule (what "drains in order of acceptance" means here): a claim
 * returns due messages (queued, next_attempt_ms <= now) of one partner in
 * acceptance order (outbox id), EXCEPT that a message is never claimed
 * while an earlier message of the same case (lower id; same case table) is
 * queued, sending or failed — only 'delivered' releases the next one. So a
 * case has at most one message in flight, its messages reach the partner in
 * the order they were queued (a withdraw waits for its submit, even through
 * the submit's retries), and a dead letter holds back the later messages of
 * its case until it is replayed and delivered. Messages of different cases
 * do not wait for each other: a message in back-off does not block the
 * cases behind it. */

/* At start-up, before the first claim: every message left 'sending' by a
 * crash goes back to 'queued' (same message_id, attempts kept, due at once).
 * count is the number of messages recovered. */
int tb_store_outbox_recover(struct tb_store *st, tb_store_count_cb cb, void *ud);

struct tb_store_claimed {
  int64_t outbox_id;
  const char *case_id;
  int inbound;               /* 1: case_id is a partner's case (tb_store_inbound_get);
                                0: one of ours (tb_store_case_get) */
  const char *partner;
  enum tb_msg_type msg_type;
  const char *message_id;    /* the same on every attempt */
  uint32_t attempts;         /* including this one: 1 on the first attempt */
  int64_t created_ms;        /* when the message was queued */
  const char *body;          /* canonical JSON to send: the case for CASE_SUBMIT, else the
                                message's payload */
  size_t body_len;
  const char *origin_region; /* the case's, as stored (for an inbound case the origin is the */
  const char *target_region; /*  partner's region and the target ours); NULL if unknown */
  const char *receipt_no;    /* known so far: the partner's for our case, ours for an
                                inbound case; NULL if none */
};

/* msgs is NULL when n == 0. next_due_ms is the earliest next_attempt_ms
 * after now_ms among the partner's queued messages (0 if none): when to
 * claim again if nothing else happens. n == max means more may be due. */
typedef void (*tb_store_claim_cb)(int rc, const struct tb_store_claimed *msgs, size_t n,
                                  int64_t next_due_ms, const char *errmsg, void *ud);

/* Claims up to max (1..TB_STORE_CLAIM_MAX) due messages of partner (see
 * the ordering rule above), marks them 'sending' and counts the attempt,
 * atomically. Claiming a CASE_SUBMIT whose case is 'queued' moves the case
 * to 'delivering' with a case.status event. A message stays 'sending' until
 * tb_store_outbox_finish (or tb_store_outbox_recover after a crash).
 * TB_EINVAL for a NULL partner or max out of range. */
int tb_store_outbox_claim(struct tb_store *st, const char *partner, int64_t now_ms, size_t max,
                          tb_store_claim_cb cb, void *ud);

enum tb_store_verdict {
  TB_STORE_DELIVERED = 0, /* the partner has it (success or duplicate) */
  TB_STORE_RETRY = 1,     /* back to queued, due at next_attempt_ms */
  TB_STORE_FAILED = 2,    /* dead letter */
};

struct tb_store_delivery_result {
  int64_t outbox_id;             /* from the claim; the message must be 'sending' */
  enum tb_store_verdict verdict;
  int64_t next_attempt_ms;       /* RETRY: when it is due again */
  const char *reason;            /* RETRY: why (kept as last_error; text is used if NULL) */
  const char *code;              /* the partner's code ("0000", "HTTP 503", "transport"), or NULL */
  const char *text;              /* the partner's message / why we decided so, or NULL */
  const char *receipt_no;        /* DELIVERED: the partner's receipt number, NULL or "" if none */
  /* The partner's raw acknowledgement, NULL when no answer arrived; when
   * present it is kept as evidence whatever the verdict. */
  const unsigned char *ack;
  size_t ack_len;
  const char *ack_content_type;  /* may be NULL */
  int ack_verified;              /* 1: the answer's signature verified */
  const char *ack_verify_detail; /* signer, or why it did not verify; may be NULL */
  int64_t duration_ms;           /* how long the attempt took */
  int64_t now_ms;
};

/* seq is the event written (0 if none: a retry writes none). */
typedef void (*tb_store_finish_cb)(int rc, int64_t seq, const char *errmsg, void *ud);

/* Records the end of one attempt (the struct and its buffers are copied):
 *  DELIVERED: the message becomes 'delivered'. CASE_SUBMIT: the case becomes
 *    'delivered' (receipt_no stored, last_error cleared) with a case.status
 *    event {receipt_no, code}; other types: a case.message event (for an
 *    inbound case: inbound.notify) {msg_type, message_id, outcome
 *    "delivered", code}.
 *  RETRY: the message goes back to 'queued' with next_attempt_ms, last_code
 *    and last_error (the case's last_error too); no event.
 *  FAILED: the message becomes a dead letter. CASE_SUBMIT: the case becomes
 *    'failed' with last_error and a case.status event {code, text}; other
 *    types: the case keeps its status (a refused withdraw does not undo a
 *    delivered case), last_error is set and a case.message / inbound.notify
 *    event {msg_type, message_id, outcome "failed", code, text} is written.
 * A transport outcome never overwrites a business status a partner already
 * reported (e.g. 'accepted' arriving before the delivery's own answer): the
 * case then keeps it and gets a case.message event instead.
 * Errors: TB_ENOTFOUND (no such message), TB_ECONFLICT (it is not
 * 'sending'); nothing is written then. */
int tb_store_outbox_finish(struct tb_store *st, const struct tb_store_delivery_result *r,
                           tb_store_finish_cb cb, void *ud);

/* outbox_id of the queued message; seq of the event written (0 if none). */
typedef void (*tb_store_enqueue_cb)(int rc, int64_t outbox_id, int64_t seq, const char *errmsg,
                                    void *ud);

/* Queues one more outbound message for an existing case; payload_json is its
 * canonical body (tbgw/adapter.h). Which case table msg_type refers to:
 *  CASE_WITHDRAW, CASE_SUPPLEMENT: one of our cases (tb_store_case_accept);
 *  STATUS_NOTIFY: a partner's case (tb_store_inbound_record); the payload's
 *    "status" (a business status, SPEC §3) also becomes the inbound case's
 *    status, with an inbound.status event whose detail is the payload.
 * partner may be NULL (the case's partner); if given it must be the case's.
 * Due at once (next_attempt_ms = now_ms); claimed after the case's earlier
 * messages (ordering rule above).
 * Errors: TB_EINVAL at call time (NULL case_id/message_id/payload,
 * CASE_SUBMIT, unknown msg_type); in the callback TB_ENOTFOUND (no such
 * case), TB_ECONFLICT (the case belongs to another partner), TB_EEXISTS
 * (message_id already used), TB_EPARSE / TB_EVALIDATE (a STATUS_NOTIFY
 * payload that is not JSON or has no valid status). */
int tb_store_outbox_enqueue(struct tb_store *st, const char *case_id, const char *partner,
                            enum tb_msg_type msg_type, const char *message_id,
                            const char *payload_json, int64_t now_ms, tb_store_enqueue_cb cb,
                            void *ud);

struct tb_store_dead_letter {
  int64_t outbox_id;
  const char *case_id;
  int inbound;               /* as in struct tb_store_claimed */
  const char *partner;
  enum tb_msg_type msg_type;
  const char *message_id;
  uint32_t attempts;
  const char *last_code;     /* NULL if none */
  const char *last_error;    /* NULL if none */
  int64_t failed_ms;
};

/* dl is NULL when n == 0. */
typedef void (*tb_store_dlq_cb)(int rc, const struct tb_store_dead_letter *dl, size_t n,
                                const char *errmsg, void *ud);

/* Dead letters (failed messages), of one partner or all (partner NULL), in
 * acceptance order, at most limit. */
int tb_store_dlq_list(struct tb_store *st, const char *partner, size_t limit, tb_store_dlq_cb cb,
                      void *ud);

/* Replays dead letters: of one case (case_id, either case table) and/or one
 * partner; both NULL replays every one. Each goes back to 'queued', due at
 * now_ms, same message_id, attempts reset to 0. A replayed CASE_SUBMIT puts
 * its case back to 'queued' with a case.status event {replayed: true};
 * other types get a case.message / inbound.notify event {msg_type,
 * message_id, outcome "replayed"}. count is the number replayed. */
int tb_store_dlq_replay(struct tb_store *st, const char *case_id, const char *partner,
                        int64_t now_ms, tb_store_count_cb cb, void *ud);

struct tb_store_queue_stat {
  const char *partner;
  uint64_t queued, sending, failed;
  int64_t oldest_queued_ms; /* created_ms of the earliest-accepted queued message; 0 if none */
};

/* One row per partner that ever had a message, by partner name. Cheap:
 * counts are kept by triggers, the oldest is one index probe per partner. */
typedef void (*tb_store_queue_stats_cb)(int rc, const struct tb_store_queue_stat *stats,
                                        size_t n, const char *errmsg, void *ud);
int tb_store_queue_stats(struct tb_store *st, tb_store_queue_stats_cb cb, void *ud);

/* ---- inbound: messages from partners -------------------------------------- */

struct tb_store_inbound_new {
  const char *partner;
  const char *message_id;     /* the partner's message id; "" or NULL: none (no de-duplication) */
  const char *nonce;          /* "" or NULL if the protocol has none */
  int64_t sent_ms;            /* the partner's timestamp, 0 if none */
  int64_t window_ms;          /* the replay window (SPEC §10: 300 s) */
  enum tb_inbound_kind kind;  /* STATUS, CASE or OTHER */
  enum tb_msg_type msg_type;  /* 0: STATUS_NOTIFY for STATUS, CASE_SUBMIT for CASE */
  const char *case_id;
  const char *receipt_no;     /* the receipt number the message carries, or NULL */
  const char *canonical;      /* canonical JSON of the type (tbgw/adapter.h) */
  size_t canonical_len;
  const unsigned char *raw;   /* the message as received, kept as evidence */
  size_t raw_len;
  const char *content_type;
  int verified;               /* 1: its signature verified */
  const char *verify_detail;  /* signer or why not; may be NULL */
  const char *our_receipt_no; /* CASE: the receipt number we assign (the caller makes it) */
  int64_t now_ms;
};

/* outcome (meaningful when rc == 0):
 *  TB_INBOUND_ACCEPTED: stored; receipt_no is ours for a CASE, our receipt
 *    of the inbound case for OTHER, NULL for STATUS; seq the event.
 *  TB_INBOUND_DUPLICATE: the message id was seen before from this partner
 *    (or, for a CASE, the partner's case_id is already here under another
 *    message id); receipt_no is the first answer's; nothing was written.
 *  TB_INBOUND_NONCE_REUSED, TB_INBOUND_UNKNOWN_CASE: nothing was written.
 * receipt_no is borrowed for the callback's duration. */
typedef void (*tb_store_inbound_cb)(int rc, enum tb_inbound_outcome outcome,
                                    const char *receipt_no, int64_t seq, const char *errmsg,
                                    void *ud);

/* Records one decoded, signature-checked message from a partner, in one
 * savepoint (the struct and its buffers are copied):
 *  (a) message_id seen before from this partner → DUPLICATE;
 *  (b) nonce seen from this partner and still within its window → NONCE_REUSED
 *      (a nonce is remembered until max(sent_ms, now_ms) + window_ms);
 *  (c) STATUS for a case we do not have or that is routed to another partner,
 *      OTHER for an inbound case we do not have or that came from another
 *      partner → UNKNOWN_CASE;
 *  (d) otherwise ACCEPTED: the message id and nonce are remembered, the raw
 *      message is kept as evidence ("in") and
 *      STATUS: our case takes the canonical "status" (a business status,
 *        SPEC §3), its receipt_no the message's if given, with a case.status
 *        event {opinion, supplement, tracking_no, licence_no, receipt_no, at};
 *      CASE: a new inbound case (status 'received', our_receipt_no) with an
 *        inbound.case event {receipt_no};
 *      OTHER: an inbound.message event whose detail is the canonical body;
 *        CASE_WITHDRAW makes the inbound case 'withdrawn', CASE_SUPPLEMENT
 *        'supplement_received'.
 * The staleness of sent_ms is the caller's check (TB_INBOUND_STALE never
 * comes from here). Message ids are remembered 30 days, nonces until their
 * window has passed; both are purged in small batches, at most once a
 * minute, by later calls.
 * Errors: TB_EINVAL at call time (NULL partner/case_id/canonical/raw, a
 * CASE without our_receipt_no, a receipt number of TB_STORE_RECEIPT_MAX
 * bytes or more, an unknown kind); in the callback TB_EPARSE (canonical is
 * not a JSON object), TB_EVALIDATE (a STATUS without a valid business
 * status), TB_ECONFLICT (a CASE whose case_id another partner already sent
 * us); nothing is written then. */
int tb_store_inbound_record(struct tb_store *st, const struct tb_store_inbound_new *m,
                            tb_store_inbound_cb cb, void *ud);

struct tb_store_inbound_view {
  const char *case_id;
  const char *partner;
  const char *message_id;       /* the CASE_SUBMIT that brought it */
  const char *origin_region;    /* from the canonical case (the partner's side); NULL if absent */
  const char *target_region;
  const char *receipt_no;       /* ours */
  const char *status;           /* received, withdrawn, supplement_received, or what local
                                   software reported through STATUS_NOTIFY */
  const char *body;             /* canonical case JSON as received */
  size_t body_len;
  int64_t created_ms;
  int64_t updated_ms;
  const struct tb_store_event *timeline; /* its inbound.* events, oldest first */
  size_t timeline_len;
};

/* TB_ENOTFOUND when there is no such inbound case; view NULL unless rc == 0. */
typedef void (*tb_store_inbound_view_cb)(int rc, const struct tb_store_inbound_view *view,
                                         const char *errmsg, void *ud);
int tb_store_inbound_get(struct tb_store *st, const char *case_id, tb_store_inbound_view_cb cb,
                         void *ud);

/* ---- evidence ----------------------------------------------------------------- */

struct tb_store_evidence {
  int64_t id;
  const char *case_id;
  int inbound;                /* as in struct tb_store_claimed */
  const char *partner;
  const char *direction;      /* "out": the partner's answer to a message we sent (msg_type
                                 and message_id are ours); "in": a message the partner sent */
  enum tb_msg_type msg_type;
  const char *message_id;     /* NULL if none */
  const char *content_type;   /* NULL if none */
  const unsigned char *raw;   /* exactly as received (NUL-terminated for convenience) */
  size_t raw_len;
  int verified;
  const char *verify_detail;  /* NULL if none */
  const char *code;           /* "out": the partner's answer code; NULL otherwise */
  uint32_t attempt;           /* "out": the attempt it answered; 0 for "in" */
  int64_t duration_ms;        /* "out": that attempt's duration; 0 for "in" */
  int64_t at_ms;
};

/* Every evidence row of case_id (ours or a partner's), oldest first; ev is
 * NULL when n == 0 (an unknown case is simply n == 0). Evidence is
 * append-only (triggers refuse UPDATE and DELETE). */
typedef void (*tb_store_evidence_cb)(int rc, const struct tb_store_evidence *ev, size_t n,
                                     const char *errmsg, void *ud);
int tb_store_evidence_list(struct tb_store *st, const char *case_id, tb_store_evidence_cb cb,
                           void *ud);

/* ---- listing cases (operator CLI) ------------------------------------------------ */

struct tb_store_case_filter {
  const char *status;  /* NULL: any */
  const char *partner; /* NULL: any */
  int64_t since_ms;    /* only cases changed (updated_ms) at or after this; 0: any */
  size_t limit;        /* at most this many (0: none) */
};

/* Our cases, most recently changed first; each view has no timeline
 * (timeline NULL, timeline_len 0). cases is NULL when n == 0. Served by
 * indexes on (status, updated_ms), (partner, updated_ms) and (updated_ms). */
typedef void (*tb_store_cases_cb)(int rc, const struct tb_store_case_view *cases, size_t n,
                                  const char *errmsg, void *ud);
int tb_store_cases_list(struct tb_store *st, const struct tb_store_case_filter *f,
                        tb_store_cases_cb cb, void *ud);

/* ---- operator read-outs (tbgw cases show, tbgw partners) -------------------- */

struct tb_store_outbox_row {
  int64_t outbox_id;
  const char *case_id;
  int inbound;               /* as in struct tb_store_claimed */
  const char *partner;
  enum tb_msg_type msg_type;
  const char *message_id;
  const char *state;         /* "queued", "sending", "delivered", "failed" */
  uint32_t attempts;
  const char *last_code;     /* NULL if none */
  const char *last_error;    /* NULL if none (cleared on delivery) */
  int64_t created_ms;
  int64_t updated_ms;        /* delivered: when; failed: when it failed */
};

/* Every outbound message of one of our cases (inbound = 0) or of a partner's
 * case (inbound = 1), in queue order; rows is NULL when n == 0 (an unknown
 * case is simply n == 0). One probe of the outbox_case index. */
typedef void (*tb_store_outbox_rows_cb)(int rc, const struct tb_store_outbox_row *rows, size_t n,
                                        const char *errmsg, void *ud);
int tb_store_outbox_list(struct tb_store *st, const char *case_id, int inbound,
                         tb_store_outbox_rows_cb cb, void *ud);

/* How far back tb_store_partner_activity looks for a delivered message:
 * the newest this many outbox rows (a bounded scan: the reader briefly
 * holds the write lock, and a running gateway must not wait on it). */
#define TB_STORE_ACTIVITY_WINDOW 100000

struct tb_store_partner_activity {
  const char *partner;
  int64_t last_delivered_ms; /* delivery time of the newest delivered message among the
                                newest TB_STORE_ACTIVITY_WINDOW messages; 0 if none */
  int64_t last_failure_ms;   /* most recent failed attempt of a message still queued or
                                dead-lettered (delivery clears it); 0 if none */
  const char *last_failure_code;  /* that attempt's code; NULL if none */
  const char *last_failure_error; /* and its text; NULL if none */
};

/* One row per partner that ever had a message, by partner name. */
typedef void (*tb_store_activity_cb)(int rc, const struct tb_store_partner_activity *rows,
                                     size_t n, const char *errmsg, void *ud);
int tb_store_partner_activity(struct tb_store *st, tb_store_activity_cb cb, void *ud);

#endif
