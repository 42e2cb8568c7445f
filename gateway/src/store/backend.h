/*
 * store/backend.h — what a storage backend implements (internal to store/).
 *
 * store.c owns the threads, the queues and the group-commit loop; a backend
 * owns one write connection and knows how to run each kind of operation on
 * it. Every function here except open runs on the storage thread only, so a
 * backend needs no locking of its own. The order of calls for one batch is
 * always:
 *
 *   begin; { savepoint; <one operation>; release | rollback_to+release }*; commit
 *
 * and rollback when commit fails or in_transaction() says the database threw
 * the transaction away under us (SQLite does that on SQLITE_FULL, IOERR, ...).
 *
 * Results that carry data are materialised by the backend into ONE heap block
 * per result (see store/result.h), which store.c frees with free() after the
 * callback has run on the loop thread. Error text goes into err
 * (TB_ERRMSG_MAX bytes) and names the case or the path involved.
 *
 * A PostgreSQL backend would implement the same table with one libpq
 * connection: BEGIN / COMMIT, SAVEPOINT op / RELEASE SAVEPOINT op, the
 * operations as prepared statements (PQprepare once, PQexecPrepared per op,
 * or pipelined). Claiming delivery work (outbox_claim) would use SELECT ...
 * FOR UPDATE SKIP LOCKED there; see docs/store.md.
 *
 * The table only grows at the end, like SQLite's extension table.
 */
#ifndef TB_STORE_BACKEND_H
#define TB_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct tb__store_backend; /* the backend's connection state, opaque to store.c */

/* Inputs of an outbox enqueue (strings owned by the op). */
struct tb__store_enqueue {
  const char *case_id;
  const char *partner; /* NULL: the case's */
  enum tb_msg_type msg_type;
  const char *message_id;
  const char *payload;
  size_t payload_len;
  int64_t now_ms;
};

/* msg_type names <-> enum (store.c); 0 for an unknown name. */
enum tb_msg_type tb__store_msg_type_parse(const char *name);

struct tb__store_backend_vtable {
  const char *name; /* "sqlite" */

  /* Opens (creating and migrating the schema) and returns the highest
   * committed event seq in *last_seq. Called on the loop thread before the
   * storage thread exists; the storage thread uses the connection afterwards.
   * Errors: TB_EINVAL, TB_ENOMEM, TB_ESTORE (err names the path). */
  int (*open)(const struct tb_store_options *opt, struct tb__store_backend **out,
              int64_t *last_seq, char *err);
  /* Final checkpoint, closes every connection, frees. Storage thread. */
  void (*close)(struct tb__store_backend *b);

  /* Transaction control. Errors are TB_ESTORE with the database's message. */
  int (*begin)(struct tb__store_backend *b, char *err);
  int (*commit)(struct tb__store_backend *b, char *err);
  void (*rollback)(struct tb__store_backend *b);
  int (*savepoint)(struct tb__store_backend *b, char *err);
  int (*release)(struct tb__store_backend *b, char *err);
  int (*rollback_to)(struct tb__store_backend *b, char *err);
  /* 1 while a transaction is open. */
  int (*in_transaction)(struct tb__store_backend *b);

  /* One function per operation kind; each runs inside the caller's savepoint.
   * *seq is the case.status event's seq for NEW (0 otherwise). *answer_copy is
   * a malloc'd copy of the stored answer for SAME, NULL otherwise. */
  int (*case_accept)(struct tb__store_backend *b, const struct tb_store_case_new *c,
                     enum tb_store_accept_outcome *outcome, int64_t *seq, char **answer_copy,
                     char *err);
  /* *view is one malloc'd block (view, timeline, strings). TB_ENOTFOUND. */
  int (*case_get)(struct tb__store_backend *b, const char *case_id,
                  struct tb_store_case_view **view, char *err);
  /* *events is one malloc'd block (NULL when *n == 0). */
  int (*events_list)(struct tb__store_backend *b, int64_t after, size_t limit,
                     struct tb_store_event **events, size_t *n, int64_t *last_seq, char *err);
  /* A real write (heartbeat row) that the batch's commit makes durable. */
  int (*ping)(struct tb__store_backend *b, int64_t now_ms, char *err);

  /* Schema 2: delivery and inbound. Every operation that writes events
   * returns the highest seq it wrote in *seq (0 if none), so that store.c
   * can report it through the commit hook. Results are one malloc'd block
   * each (NULL when empty), as above. */
  int (*outbox_recover)(struct tb__store_backend *b, int64_t now_ms, size_t *count, char *err);
  int (*outbox_claim)(struct tb__store_backend *b, const char *partner, int64_t now_ms, size_t max,
                      struct tb_store_claimed **out, size_t *n, int64_t *next_due_ms,
                      int64_t *seq, char *err);
  int (*outbox_finish)(struct tb__store_backend *b, const struct tb_store_delivery_result *r,
                       int64_t *seq, char *err);
  int (*outbox_enqueue)(struct tb__store_backend *b, const struct tb__store_enqueue *e,
                        int64_t *outbox_id, int64_t *seq, char *err);
  int (*dlq_list)(struct tb__store_backend *b, const char *partner, size_t limit,
                  struct tb_store_dead_letter **out, size_t *n, char *err);
  int (*dlq_replay)(struct tb__store_backend *b, const char *case_id, const char *partner,
                    int64_t now_ms, size_t *count, int64_t *seq, char *err);
  int (*queue_stats)(struct tb__store_backend *b, struct tb_store_queue_stat **out, size_t *n,
                     char *err);
  /* receipt: TB_STORE_RECEIPT_MAX bytes, "" when there is none to report. */
  int (*inbound_record)(struct tb__store_backend *b, const struct tb_store_inbound_new *m,
                        enum tb_inbound_outcome *outcome, char *receipt, int64_t *seq, char *err);
  int (*inbound_get)(struct tb__store_backend *b, const char *case_id,
                     struct tb_store_inbound_view **out, char *err);
  int (*evidence_list)(struct tb__store_backend *b, const char *case_id,
                       struct tb_store_evidence **out, size_t *n, char *err);
  int (*cases_list)(struct tb__store_backend *b, const struct tb_store_case_filter *f,
                    struct tb_store_case_view **out, size_t *n, char *err);
  /* Operator read-outs (store.h); one malloc'd block each, NULL when empty. */
  int (*outbox_list)(struct tb__store_backend *b, const char *case_id, int inbound,
                     struct tb_store_outbox_row **out, size_t *n, char *err);
  int (*partner_activity)(struct tb__store_backend *b, struct tb_store_partner_activity **out,
                          size_t *n, char *err);
};

extern const struct tb__store_backend_vtable tb__store_sqlite;

#endif
