/*
 * The backend-agnostic half of the store: the operation queue, the storage
 * thread with its group-commit loop, and the completion queue back to the
 * loop thread.
 *
 *   loop thread                      storage thread
 *   -----------                      --------------
 *   tb_store_*() ── op FIFO ───────▶ wake, take ≤ batch_max ops
 *     (mutex + condvar)              BEGIN IMMEDIATE
 *                                    per op: SAVEPOINT; run; RELEASE
 *                                            (ROLLBACK TO + RELEASE on error)
 *                                    COMMIT (the one fsync of the batch)
 *   on_async(): commit hook,  ◀───── completion FIFO + uv_async_send
 *     then callbacks in order
 *
 * While one COMMIT is waiting for its fsync, new operations pile up in the
 * op FIFO and become the next batch: under load batches grow by themselves,
 * with no timer and no added latency when idle.
 *
 * An operation is one malloc holding the op, a copy of its inputs and room
 * for its error text; data results (views, event pages, a repeated answer)
 * are one more malloc made by the backend. Both are freed on the loop thread
 * right after the callback returns.
 *
 * The uv_async_t is unref'd while nothing is pending, so the store alone does
 * not keep a loop alive; it is ref'd from tb_store_close until on_closed.
 */
#include "store/store.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "store/backend.h"
#include "tbgw/error.h"

enum op_kind {
  OP_ACCEPT,
  OP_CASE_GET,
  OP_EVENTS_LIST,
  OP_PING,
  OP_RECOVER,
  OP_CLAIM,
  OP_FINISH,
  OP_ENQUEUE,
  OP_DLQ_LIST,
  OP_DLQ_REPLAY,
  OP_QUEUE_STATS,
  OP_INBOUND_RECORD,
  OP_INBOUND_GET,
  OP_EVIDENCE_LIST,
  OP_CASES_LIST,
  OP_OUTBOX_LIST,
  OP_PARTNER_ACTIVITY,
};

struct tb__store_op {
  struct tb__store_op *next;
  enum op_kind kind;
  int rc;
  void *ud;
  union {
    tb_store_accept_cb accept;
    tb_store_case_cb case_get;
    tb_store_events_cb events;
    tb_store_ping_cb ping;
    tb_store_count_cb count;
    tb_store_claim_cb claim;
    tb_store_finish_cb finish;
    tb_store_enqueue_cb enqueue;
    tb_store_dlq_cb dlq;
    tb_store_queue_stats_cb stats;
    tb_store_inbound_cb inbound;
    tb_store_inbound_view_cb inbound_get;
    tb_store_evidence_cb evidence;
    tb_store_cases_cb cases;
    tb_store_outbox_rows_cb outbox_rows;
    tb_store_activity_cb activity;
  } cb;
  union {
    struct {
      struct tb_store_case_new c; /* strings point into this op's allocation */
      enum tb_store_accept_outcome outcome;
      int64_t seq;
    } accept;
    struct {
      const char *case_id;
      int inbound; /* outbox_list */
    } get;
    struct {
      int64_t after;
      size_t limit;
      size_t n;
      int64_t last_seq;
    } events;
    struct {
      const char *partner;
      int64_t now_ms;
      size_t max;
      int64_t next_due_ms;
    } claim;
    struct tb_store_delivery_result finish;
    struct {
      struct tb__store_enqueue e;
      int64_t outbox_id;
    } enqueue;
    struct {
      const char *case_id; /* replay */
      const char *partner; /* list, replay */
      size_t limit;        /* list */
      int64_t now_ms;      /* replay, recover */
    } dlq;
    struct {
      struct tb_store_inbound_new m;
      enum tb_inbound_outcome outcome;
      char *receipt; /* TB_STORE_RECEIPT_MAX bytes in this op's allocation */
    } inbound;
    struct tb_store_case_filter cases;
  } u;
  /* Results common to several kinds: the highest event seq the op wrote
   * (reported through the commit hook), and a row count. */
  int64_t seq;
  size_t n;
  void *result; /* backend-made block (answer copy, view, events, rows), or NULL */
  /* Set on the first op of a committed batch, so that the loop thread runs
   * the commit hook before that batch's callbacks (no per-batch malloc). */
  size_t batch_ops;
  int64_t batch_last_seq;
  uint64_t batch_commit_ns;
  char errmsg[TB_ERRMSG_MAX];
  /* copied inputs follow */
};

struct tb_store {
  uv_loop_t *loop;
  uv_async_t async;
  pthread_t thread;
  const struct tb__store_backend_vtable *be;
  struct tb__store_backend *b; /* storage thread only (after open) */
  size_t batch_max;

  pthread_mutex_t mu; /* guards everything in this block */
  pthread_cond_t cv;
  struct tb__store_op *q_head, *q_tail;       /* loop → storage */
  struct tb__store_op *done_head, *done_tail; /* storage → loop */
  int stop;                                   /* storage thread: drain, then exit */
  int exited;                                 /* storage thread: backend closed, about to return */

  int64_t seq_storage; /* storage thread only: highest committed seq */

  /* loop thread only */
  int64_t last_seq;
  size_t pending;
  int closing;
  int joined;
  tb_store_commit_fn commit_fn;
  void *commit_ud;
  void (*on_closed)(void *ud);
  void *closed_ud;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tb_store_options_default(struct tb_store_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->path = NULL;
  opt->durability = TB_STORE_DURABILITY_FSYNC;
  opt->batch_max = 1024;
  opt->checkpoint_wal_pages = 8192;
}

/* ---- storage thread ----------------------------------------------------- */

static void op_fail(struct tb__store_op *op, int rc, const char *msg) {
  free(op->result);
  op->result = NULL;
  op->rc = rc;
  if (msg != op->errmsg) snprintf(op->errmsg, sizeof op->errmsg, "%s", msg);
}

/* The whole batch is lost (BEGIN or COMMIT failed, or the database rolled
 * the transaction back on its own): every op reports the same error. */
static void batch_fail(struct tb_store *st, struct tb__store_op *head, size_t n, const char *err) {
  struct tb_log_line *l = tb_log_begin(TB_LOG_ERROR, "store.commit.failed");
  tb_log_int(l, "batch_ops", (int64_t)n);
  tb_log_str(l, "error", err);
  tb_log_end(l);
  st->be->rollback(st->b);
  char msg[TB_ERRMSG_MAX];
  snprintf(msg, sizeof msg, "%s", err); /* err may be an op's own errmsg */
  for (struct tb__store_op *op = head; op; op = op->next) op_fail(op, TB_ESTORE, msg);
}

static int run_op(struct tb_store *st, struct tb__store_op *op) {
  const struct tb__store_backend_vtable *be = st->be;
  switch (op->kind) {
  case OP_ACCEPT: {
    char *answer = NULL;
    int rc = be->case_accept(st->b, &op->u.accept.c, &op->u.accept.outcome, &op->u.accept.seq,
                             &answer, op->errmsg);
    op->result = answer;
    return rc;
  }
  case OP_CASE_GET: {
    struct tb_store_case_view *v = NULL;
    int rc = be->case_get(st->b, op->u.get.case_id, &v, op->errmsg);
    op->result = v;
    return rc;
  }
  case OP_EVENTS_LIST: {
    struct tb_store_event *ev = NULL;
    int rc = be->events_list(st->b, op->u.events.after, op->u.events.limit, &ev, &op->u.events.n,
                             &op->u.events.last_seq, op->errmsg);
    op->result = ev;
    return rc;
  }
  case OP_PING:
    return be->ping(st->b, wall_ms(), op->errmsg);
  case OP_RECOVER:
    return be->outbox_recover(st->b, wall_ms(), &op->n, op->errmsg);
  case OP_CLAIM: {
    struct tb_store_claimed *c = NULL;
    int rc = be->outbox_claim(st->b, op->u.claim.partner, op->u.claim.now_ms, op->u.claim.max, &c,
                              &op->n, &op->u.claim.next_due_ms, &op->seq, op->errmsg);
    op->result = c;
    return rc;
  }
  case OP_FINISH:
    return be->outbox_finish(st->b, &op->u.finish, &op->seq, op->errmsg);
  case OP_ENQUEUE:
    return be->outbox_enqueue(st->b, &op->u.enqueue.e, &op->u.enqueue.outbox_id, &op->seq,
                              op->errmsg);
  case OP_DLQ_LIST: {
    struct tb_store_dead_letter *d = NULL;
    int rc = be->dlq_list(st->b, op->u.dlq.partner, op->u.dlq.limit, &d, &op->n, op->errmsg);
    op->result = d;
    return rc;
  }
  case OP_DLQ_REPLAY:
    return be->dlq_replay(st->b, op->u.dlq.case_id, op->u.dlq.partner, op->u.dlq.now_ms, &op->n,
                          &op->seq, op->errmsg);
  case OP_QUEUE_STATS: {
    struct tb_store_queue_stat *q = NULL;
    int rc = be->queue_stats(st->b, &q, &op->n, op->errmsg);
    op->result = q;
    return rc;
  }
  case OP_INBOUND_RECORD:
    return be->inbound_record(st->b, &op->u.inbound.m, &op->u.inbound.outcome,
                              op->u.inbound.receipt, &op->seq, op->errmsg);
  case OP_INBOUND_GET: {
    struct tb_store_inbound_view *v = NULL;
    int rc = be->inbound_get(st->b, op->u.get.case_id, &v, op->errmsg);
    op->result = v;
    return rc;
  }
  case OP_EVIDENCE_LIST: {
    struct tb_store_evidence *e = NULL;
    int rc = be->evidence_list(st->b, op->u.get.case_id, &e, &op->n, op->errmsg);
    op->result = e;
    return rc;
  }
  case OP_CASES_LIST: {
    struct tb_store_case_view *c = NULL;
    int rc = be->cases_list(st->b, &op->u.cases, &c, &op->n, op->errmsg);
    op->result = c;
    return rc;
  }
  case OP_OUTBOX_LIST: {
    struct tb_store_outbox_row *r = NULL;
    int rc = be->outbox_list(st->b, op->u.get.case_id, op->u.get.inbound, &r, &op->n,
                             op->errmsg);
    op->result = r;
    return rc;
  }
  case OP_PARTNER_ACTIVITY: {
    struct tb_store_partner_activity *a = NULL;
    int rc = be->partner_activity(st->b, &a, &op->n, op->errmsg);
    op->result = a;
    return rc;
  }
  }
  return tb_errf(op->errmsg, TB_EINTERNAL, "store: unknown operation kind %d", (int)op->kind);
}

/* One transaction for n ops, each in its own savepoint. */
static void run_batch(struct tb_store *st, struct tb__store_op *head, size_t n) {
  const struct tb__store_backend_vtable *be = st->be;
  char err[TB_ERRMSG_MAX];
  int64_t seq_max = st->seq_storage;

  if (be->begin(st->b, err) != 0) {
    batch_fail(st, head, n, err);
    return;
  }
  for (struct tb__store_op *op = head; op; op = op->next) {
    if (be->savepoint(st->b, err) != 0) {
      batch_fail(st, head, n, err);
      return;
    }
    op->rc = run_op(st, op);
    if (op->rc == 0 && op->kind == OP_ACCEPT) op->seq = op->u.accept.seq;
    if (op->rc == 0 && op->seq > seq_max) seq_max = op->seq;
    if (op->rc != 0) {
      free(op->result);
      op->result = NULL;
      /* A failed ROLLBACK TO would let RELEASE keep half of this op: give
       * up on the batch instead. */
      if (!be->in_transaction(st->b) || be->rollback_to(st->b, err) != 0) {
        if (!be->in_transaction(st->b))
          tb_errf(err, TB_ESTORE, "store: the database rolled the batch back: %s", op->errmsg);
        batch_fail(st, head, n, err);
        return;
      }
    }
    if (be->release(st->b, err) != 0) {
      batch_fail(st, head, n, err);
      return;
    }
  }
  uint64_t t0 = now_ns();
  if (be->commit(st->b, err) != 0) {
    batch_fail(st, head, n, err);
    return;
  }
  st->seq_storage = seq_max;
  head->batch_ops = n;
  head->batch_last_seq = seq_max;
  head->batch_commit_ns = now_ns() - t0;
}

static void *storage_main(void *arg) {
  struct tb_store *st = arg;
  pthread_mutex_lock(&st->mu);
  for (;;) {
    while (st->q_head == NULL && !st->stop) pthread_cond_wait(&st->cv, &st->mu);
    if (st->q_head == NULL) break; /* stopping and drained */
    struct tb__store_op *head = st->q_head, *tail = head;
    size_t n = 1;
    while (tail->next && n < st->batch_max) {
      tail = tail->next;
      n++;
    }
    st->q_head = tail->next;
    if (st->q_head == NULL) st->q_tail = NULL;
    tail->next = NULL;
    pthread_mutex_unlock(&st->mu);

    run_batch(st, head, n);

    pthread_mutex_lock(&st->mu);
    if (st->done_tail)
      st->done_tail->next = head;
    else
      st->done_head = head;
    st->done_tail = tail;
    pthread_mutex_unlock(&st->mu);
    uv_async_send(&st->async);
    pthread_mutex_lock(&st->mu);
  }
  pthread_mutex_unlock(&st->mu);

  st->be->close(st->b); /* final checkpoint, connections closed */
  st->b = NULL;
  pthread_mutex_lock(&st->mu);
  st->exited = 1;
  pthread_mutex_unlock(&st->mu);
  uv_async_send(&st->async);
  return NULL;
}

/* ---- loop thread -------------------------------------------------------- */

static void store_free(struct tb_store *st) {
  pthread_cond_destroy(&st->cv);
  pthread_mutex_destroy(&st->mu);
  free(st);
}

static void on_async_closed(uv_handle_t *h) {
  struct tb_store *st = h->data;
  void (*on_closed)(void *) = st->on_closed;
  void *ud = st->closed_ud;
  store_free(st);
  if (on_closed) on_closed(ud);
}

static void complete(struct tb_store *st, struct tb__store_op *op) {
  const char *msg = op->rc ? op->errmsg : NULL;
  switch (op->kind) {
  case OP_ACCEPT: {
    const char *answer = NULL;
    if (op->rc == 0 && op->u.accept.outcome == TB_STORE_ACCEPT_NEW)
      answer = op->u.accept.c.answer;
    else if (op->rc == 0 && op->u.accept.outcome == TB_STORE_ACCEPT_SAME)
      answer = op->result;
    op->cb.accept(op->rc, op->rc ? TB_STORE_ACCEPT_NEW : op->u.accept.outcome, answer,
                  op->rc ? 0 : op->u.accept.seq, msg, op->ud);
    break;
  }
  case OP_CASE_GET:
    op->cb.case_get(op->rc, op->rc ? NULL : op->result, msg, op->ud);
    break;
  case OP_EVENTS_LIST:
    if (op->rc)
      op->cb.events(op->rc, NULL, 0, 0, msg, op->ud);
    else
      op->cb.events(0, op->result, op->u.events.n, op->u.events.last_seq, NULL, op->ud);
    break;
  case OP_PING:
    op->cb.ping(op->rc, msg, op->ud);
    break;
  case OP_RECOVER:
  case OP_DLQ_REPLAY:
    op->cb.count(op->rc, op->rc ? 0 : op->n, msg, op->ud);
    break;
  case OP_CLAIM:
    if (op->rc)
      op->cb.claim(op->rc, NULL, 0, 0, msg, op->ud);
    else
      op->cb.claim(0, op->result, op->n, op->u.claim.next_due_ms, NULL, op->ud);
    break;
  case OP_FINISH:
    op->cb.finish(op->rc, op->rc ? 0 : op->seq, msg, op->ud);
    break;
  case OP_ENQUEUE:
    op->cb.enqueue(op->rc, op->rc ? 0 : op->u.enqueue.outbox_id, op->rc ? 0 : op->seq, msg,
                   op->ud);
    break;
  case OP_DLQ_LIST:
    op->cb.dlq(op->rc, op->rc ? NULL : op->result, op->rc ? 0 : op->n, msg, op->ud);
    break;
  case OP_QUEUE_STATS:
    op->cb.stats(op->rc, op->rc ? NULL : op->result, op->rc ? 0 : op->n, msg, op->ud);
    break;
  case OP_INBOUND_RECORD: {
    const char *receipt = op->rc == 0 && op->u.inbound.receipt[0] ? op->u.inbound.receipt : NULL;
    op->cb.inbound(op->rc, op->rc ? TB_INBOUND_FAILED : op->u.inbound.outcome, receipt,
                   op->rc ? 0 : op->seq, msg, op->ud);
    break;
  }
  case OP_INBOUND_GET:
    op->cb.inbound_get(op->rc, op->rc ? NULL : op->result, msg, op->ud);
    break;
  case OP_EVIDENCE_LIST:
    op->cb.evidence(op->rc, op->rc ? NULL : op->result, op->rc ? 0 : op->n, msg, op->ud);
    break;
  case OP_CASES_LIST:
    op->cb.cases(op->rc, op->rc ? NULL : op->result, op->rc ? 0 : op->n, msg, op->ud);
    break;
  case OP_OUTBOX_LIST:
    op->cb.outbox_rows(op->rc, op->rc ? NULL : op->result, op->rc ? 0 : op->n, msg, op->ud);
    break;
  case OP_PARTNER_ACTIVITY:
    op->cb.activity(op->rc, op->rc ? NULL : op->result, op->rc ? 0 : op->n, msg, op->ud);
    break;
  }
  (void)st;
}

static void on_async(uv_async_t *h) {
  struct tb_store *st = h->data;
  pthread_mutex_lock(&st->mu);
  struct tb__store_op *op = st->done_head;
  st->done_head = st->done_tail = NULL;
  int exited = st->exited;
  pthread_mutex_unlock(&st->mu);

  while (op) {
    struct tb__store_op *next = op->next;
    if (op->batch_ops) {
      if (op->batch_last_seq > st->last_seq) st->last_seq = op->batch_last_seq;
      if (st->commit_fn)
        st->commit_fn(st->last_seq, op->batch_ops, op->batch_commit_ns, st->commit_ud);
    }
    complete(st, op);
    free(op->result);
    free(op);
    st->pending--;
    op = next;
  }
  if (st->pending == 0 && !st->closing) uv_unref((uv_handle_t *)&st->async);

  if (exited && !st->joined) {
    /* Every op was completed before the thread set exited. */
    st->joined = 1;
    pthread_join(st->thread, NULL);
    uv_close((uv_handle_t *)&st->async, on_async_closed);
  }
}

static void on_open_failed_closed(uv_handle_t *h) {
  store_free(h->data);
}

int tb_store_open(uv_loop_t *loop, const struct tb_store_options *opt, struct tb_store **out,
                  char *err) {
  *out = NULL;
  if (loop == NULL || opt == NULL || opt->path == NULL || opt->path[0] == '\0')
    return tb_errf(err, TB_EINVAL, "store: no database path configured");
  struct tb_store *st = calloc(1, sizeof *st);
  if (st == NULL) return tb_errf(err, TB_ENOMEM, "store: out of memory");
  st->loop = loop;
  st->be = &tb__store_sqlite;
  st->batch_max = opt->batch_max ? opt->batch_max : 1024;
  if (pthread_mutex_init(&st->mu, NULL) != 0) {
    free(st);
    return tb_errf(err, TB_ENOMEM, "store: cannot create a mutex");
  }
  if (pthread_cond_init(&st->cv, NULL) != 0) {
    pthread_mutex_destroy(&st->mu);
    free(st);
    return tb_errf(err, TB_ENOMEM, "store: cannot create a condition variable");
  }
  int rc = st->be->open(opt, &st->b, &st->seq_storage, err);
  if (rc != 0) {
    store_free(st);
    return rc;
  }
  st->last_seq = st->seq_storage;
  int uvrc = uv_async_init(loop, &st->async, on_async);
  if (uvrc != 0) {
    st->be->close(st->b);
    store_free(st);
    return tb_errf(err, TB_ESTORE, "store: cannot create the completion handle: %s",
                   uv_strerror(uvrc));
  }
  st->async.data = st;
  uv_unref((uv_handle_t *)&st->async);
  if (pthread_create(&st->thread, NULL, storage_main, st) != 0) {
    st->be->close(st->b);
    /* The handle's memory may only go in its close callback. */
    uv_close((uv_handle_t *)&st->async, on_open_failed_closed);
    return tb_errf(err, TB_ESTORE, "store: cannot start the storage thread");
  }
  *out = st;
  return 0;
}

void tb_store_close(struct tb_store *st, void (*on_closed)(void *ud), void *ud) {
  assert(!st->closing && "tb_store_close called twice");
  st->closing = 1;
  st->on_closed = on_closed;
  st->closed_ud = ud;
  uv_ref((uv_handle_t *)&st->async);
  pthread_mutex_lock(&st->mu);
  st->stop = 1;
  pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

/* Allocates an op with extra bytes for its copied inputs. */
static struct tb__store_op *op_new(enum op_kind kind, size_t extra, void *ud) {
  struct tb__store_op *op = malloc(sizeof *op + extra);
  if (op == NULL) return NULL;
  op->next = NULL;
  op->kind = kind;
  op->rc = 0;
  op->ud = ud;
  op->result = NULL;
  op->batch_ops = 0;
  op->batch_last_seq = 0;
  op->batch_commit_ns = 0;
  op->seq = 0;
  op->n = 0;
  op->errmsg[0] = '\0';
  return op;
}

static void enqueue(struct tb_store *st, struct tb__store_op *op) {
  if (st->pending++ == 0) uv_ref((uv_handle_t *)&st->async);
  pthread_mutex_lock(&st->mu);
  int was_empty = st->q_head == NULL;
  if (st->q_tail)
    st->q_tail->next = op;
  else
    st->q_head = op;
  st->q_tail = op;
  /* The storage thread only sleeps on an empty queue. */
  if (was_empty) pthread_cond_signal(&st->cv);
  pthread_mutex_unlock(&st->mu);
}

static char *copy_str(char **p, const char *s, size_t n) {
  char *d = *p;
  memcpy(d, s, n);
  d[n] = '\0';
  *p += n + 1;
  return d;
}

/* Bytes an optional string takes in an op's allocation (with its NUL). */
static size_t opt_len(const char *s) {
  return s ? strlen(s) + 1 : 0;
}

static const char *copy_opt(char **p, const char *s) {
  return s ? copy_str(p, s, strlen(s)) : NULL;
}

/* Binary buffers get a NUL too, so that text payloads can be used as C
 * strings; NULL stays NULL. */
static const unsigned char *copy_bytes(char **p, const unsigned char *s, size_t n) {
  if (s == NULL) return NULL;
  return (const unsigned char *)copy_str(p, (const char *)s, n);
}

int tb_store_case_accept(struct tb_store *st, const struct tb_store_case_new *c,
                         tb_store_accept_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (c == NULL || cb == NULL || c->case_id == NULL || c->partner == NULL ||
      c->message_id == NULL || c->body_hash == NULL || c->body == NULL || c->answer == NULL)
    return TB_EINVAL;
  size_t l_id = strlen(c->case_id), l_partner = strlen(c->partner);
  size_t l_origin = c->origin_region ? strlen(c->origin_region) : 0;
  size_t l_target = c->target_region ? strlen(c->target_region) : 0;
  size_t l_msg = strlen(c->message_id), l_answer = strlen(c->answer);
  size_t extra = 32 + l_id + l_partner + l_origin + l_target + l_msg + l_answer + c->body_len + 7;
  struct tb__store_op *op = op_new(OP_ACCEPT, extra, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.accept = cb;
  struct tb_store_case_new *d = &op->u.accept.c;
  unsigned char *hash = (unsigned char *)(op + 1);
  memcpy(hash, c->body_hash, 32);
  char *p = (char *)hash + 32;
  d->body_hash = hash;
  d->case_id = copy_str(&p, c->case_id, l_id);
  d->partner = copy_str(&p, c->partner, l_partner);
  d->origin_region = c->origin_region ? copy_str(&p, c->origin_region, l_origin) : NULL;
  d->target_region = c->target_region ? copy_str(&p, c->target_region, l_target) : NULL;
  d->message_id = copy_str(&p, c->message_id, l_msg);
  d->answer = copy_str(&p, c->answer, l_answer);
  d->body = copy_str(&p, c->body, c->body_len);
  d->body_len = c->body_len;
  d->now_ms = c->now_ms;
  op->u.accept.outcome = TB_STORE_ACCEPT_NEW;
  op->u.accept.seq = 0;
  enqueue(st, op);
  return 0;
}

int tb_store_case_get(struct tb_store *st, const char *case_id, tb_store_case_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (case_id == NULL || cb == NULL) return TB_EINVAL;
  size_t n = strlen(case_id);
  struct tb__store_op *op = op_new(OP_CASE_GET, n + 1, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.case_get = cb;
  char *p = (char *)(op + 1);
  op->u.get.case_id = copy_str(&p, case_id, n);
  enqueue(st, op);
  return 0;
}

int tb_store_events_list(struct tb_store *st, int64_t after, size_t limit, tb_store_events_cb cb,
                         void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op = op_new(OP_EVENTS_LIST, 0, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.events = cb;
  op->u.events.after = after;
  op->u.events.limit = limit;
  op->u.events.n = 0;
  op->u.events.last_seq = 0;
  enqueue(st, op);
  return 0;
}

int tb_store_ping(struct tb_store *st, tb_store_ping_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op = op_new(OP_PING, 0, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.ping = cb;
  enqueue(st, op);
  return 0;
}

/* ---- schema 2: delivery and inbound ------------------------------------- */

static const char *const msg_type_names[] = {
    [TB_MSG_CASE_SUBMIT] = "CASE_SUBMIT",
    [TB_MSG_CASE_WITHDRAW] = "CASE_WITHDRAW",
    [TB_MSG_CASE_SUPPLEMENT] = "CASE_SUPPLEMENT",
    [TB_MSG_STATUS_NOTIFY] = "STATUS_NOTIFY",
};

const char *tb_store_msg_type_name(enum tb_msg_type t) {
  if ((int)t <= 0 || (size_t)t >= sizeof msg_type_names / sizeof msg_type_names[0]) return NULL;
  return msg_type_names[t];
}

enum tb_msg_type tb__store_msg_type_parse(const char *name) {
  for (size_t i = 1; name && i < sizeof msg_type_names / sizeof msg_type_names[0]; i++)
    if (strcmp(name, msg_type_names[i]) == 0) return (enum tb_msg_type)i;
  return (enum tb_msg_type)0;
}

int tb_store_outbox_recover(struct tb_store *st, tb_store_count_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op = op_new(OP_RECOVER, 0, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.count = cb;
  enqueue(st, op);
  return 0;
}

int tb_store_outbox_claim(struct tb_store *st, const char *partner, int64_t now_ms, size_t max,
                          tb_store_claim_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL || partner == NULL || max == 0 || max > TB_STORE_CLAIM_MAX) return TB_EINVAL;
  size_t n = strlen(partner);
  struct tb__store_op *op = op_new(OP_CLAIM, n + 1, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.claim = cb;
  char *p = (char *)(op + 1);
  op->u.claim.partner = copy_str(&p, partner, n);
  op->u.claim.now_ms = now_ms;
  op->u.claim.max = max;
  op->u.claim.next_due_ms = 0;
  enqueue(st, op);
  return 0;
}

int tb_store_outbox_finish(struct tb_store *st, const struct tb_store_delivery_result *r,
                           tb_store_finish_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL || r == NULL || (unsigned)r->verdict > (unsigned)TB_STORE_FAILED) return TB_EINVAL;
  size_t extra = opt_len(r->reason) + opt_len(r->code) + opt_len(r->text) +
                 opt_len(r->receipt_no) + opt_len(r->ack_content_type) +
                 opt_len(r->ack_verify_detail) + (r->ack ? r->ack_len + 1 : 0);
  struct tb__store_op *op = op_new(OP_FINISH, extra, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.finish = cb;
  char *p = (char *)(op + 1);
  struct tb_store_delivery_result *d = &op->u.finish;
  *d = *r;
  d->reason = copy_opt(&p, r->reason);
  d->code = copy_opt(&p, r->code);
  d->text = copy_opt(&p, r->text);
  d->receipt_no = copy_opt(&p, r->receipt_no);
  d->ack_content_type = copy_opt(&p, r->ack_content_type);
  d->ack_verify_detail = copy_opt(&p, r->ack_verify_detail);
  d->ack = copy_bytes(&p, r->ack, r->ack_len);
  if (d->ack == NULL) d->ack_len = 0;
  enqueue(st, op);
  return 0;
}

int tb_store_outbox_enqueue(struct tb_store *st, const char *case_id, const char *partner,
                            enum tb_msg_type msg_type, const char *message_id,
                            const char *payload_json, int64_t now_ms, tb_store_enqueue_cb cb,
                            void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL || case_id == NULL || message_id == NULL || payload_json == NULL ||
      tb_store_msg_type_name(msg_type) == NULL || msg_type == TB_MSG_CASE_SUBMIT)
    return TB_EINVAL;
  size_t l_payload = strlen(payload_json);
  size_t extra = opt_len(case_id) + opt_len(partner) + opt_len(message_id) + l_payload + 1;
  struct tb__store_op *op = op_new(OP_ENQUEUE, extra, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.enqueue = cb;
  char *p = (char *)(op + 1);
  struct tb__store_enqueue *e = &op->u.enqueue.e;
  e->case_id = copy_opt(&p, case_id);
  e->partner = copy_opt(&p, partner);
  e->msg_type = msg_type;
  e->message_id = copy_opt(&p, message_id);
  e->payload = copy_str(&p, payload_json, l_payload);
  e->payload_len = l_payload;
  e->now_ms = now_ms;
  op->u.enqueue.outbox_id = 0;
  enqueue(st, op);
  return 0;
}

int tb_store_dlq_list(struct tb_store *st, const char *partner, size_t limit, tb_store_dlq_cb cb,
                      void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op = op_new(OP_DLQ_LIST, opt_len(partner), ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.dlq = cb;
  char *p = (char *)(op + 1);
  op->u.dlq.case_id = NULL;
  op->u.dlq.partner = copy_opt(&p, partner);
  op->u.dlq.limit = limit;
  op->u.dlq.now_ms = 0;
  enqueue(st, op);
  return 0;
}

int tb_store_dlq_replay(struct tb_store *st, const char *case_id, const char *partner,
                        int64_t now_ms, tb_store_count_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op = op_new(OP_DLQ_REPLAY, opt_len(case_id) + opt_len(partner), ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.count = cb;
  char *p = (char *)(op + 1);
  op->u.dlq.case_id = copy_opt(&p, case_id);
  op->u.dlq.partner = copy_opt(&p, partner);
  op->u.dlq.limit = 0;
  op->u.dlq.now_ms = now_ms;
  enqueue(st, op);
  return 0;
}

int tb_store_queue_stats(struct tb_store *st, tb_store_queue_stats_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op = op_new(OP_QUEUE_STATS, 0, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.stats = cb;
  enqueue(st, op);
  return 0;
}

static int receipt_ok(const char *r) {
  return r == NULL || strlen(r) < TB_STORE_RECEIPT_MAX;
}

int tb_store_inbound_record(struct tb_store *st, const struct tb_store_inbound_new *m,
                            tb_store_inbound_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL || m == NULL || m->partner == NULL || m->case_id == NULL ||
      m->canonical == NULL || m->raw == NULL || !receipt_ok(m->receipt_no) ||
      !receipt_ok(m->our_receipt_no))
    return TB_EINVAL;
  if (m->kind != TB_INBOUND_STATUS && m->kind != TB_INBOUND_CASE && m->kind != TB_INBOUND_OTHER)
    return TB_EINVAL;
  if (m->kind == TB_INBOUND_CASE && (m->our_receipt_no == NULL || m->our_receipt_no[0] == '\0'))
    return TB_EINVAL;
  enum tb_msg_type type = m->msg_type;
  if ((int)type == 0)
    type = m->kind == TB_INBOUND_STATUS ? TB_MSG_STATUS_NOTIFY
           : m->kind == TB_INBOUND_CASE ? TB_MSG_CASE_SUBMIT
                                        : (enum tb_msg_type)0;
  if (tb_store_msg_type_name(type) == NULL) return TB_EINVAL;
  size_t extra = TB_STORE_RECEIPT_MAX + opt_len(m->partner) + opt_len(m->message_id) +
                 opt_len(m->nonce) + opt_len(m->case_id) + opt_len(m->receipt_no) +
                 m->canonical_len + 1 + m->raw_len + 1 + opt_len(m->content_type) +
                 opt_len(m->verify_detail) + opt_len(m->our_receipt_no);
  struct tb__store_op *op = op_new(OP_INBOUND_RECORD, extra, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.inbound = cb;
  char *p = (char *)(op + 1);
  op->u.inbound.receipt = p;
  p[0] = '\0';
  p += TB_STORE_RECEIPT_MAX;
  struct tb_store_inbound_new *d = &op->u.inbound.m;
  *d = *m;
  d->msg_type = type;
  d->partner = copy_opt(&p, m->partner);
  d->message_id = copy_opt(&p, m->message_id);
  d->nonce = copy_opt(&p, m->nonce);
  d->case_id = copy_opt(&p, m->case_id);
  d->receipt_no = copy_opt(&p, m->receipt_no);
  d->canonical = copy_str(&p, m->canonical, m->canonical_len);
  d->raw = copy_bytes(&p, m->raw, m->raw_len);
  d->content_type = copy_opt(&p, m->content_type);
  d->verify_detail = copy_opt(&p, m->verify_detail);
  d->our_receipt_no = copy_opt(&p, m->our_receipt_no);
  op->u.inbound.outcome = TB_INBOUND_FAILED;
  enqueue(st, op);
  return 0;
}

/* The reads keyed by one case id share OP_CASE_GET's input. */
static int queue_case_read(enum op_kind kind, const char *case_id, struct tb__store_op **out,
                           void *ud) {
  if (case_id == NULL) return TB_EINVAL;
  size_t n = strlen(case_id);
  struct tb__store_op *op = op_new(kind, n + 1, ud);
  if (op == NULL) return TB_ENOMEM;
  char *p = (char *)(op + 1);
  op->u.get.case_id = copy_str(&p, case_id, n);
  *out = op;
  return 0;
}

int tb_store_inbound_get(struct tb_store *st, const char *case_id, tb_store_inbound_view_cb cb,
                         void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op;
  int rc = queue_case_read(OP_INBOUND_GET, case_id, &op, ud);
  if (rc != 0) return rc;
  op->cb.inbound_get = cb;
  enqueue(st, op);
  return 0;
}

int tb_store_evidence_list(struct tb_store *st, const char *case_id, tb_store_evidence_cb cb,
                           void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op;
  int rc = queue_case_read(OP_EVIDENCE_LIST, case_id, &op, ud);
  if (rc != 0) return rc;
  op->cb.evidence = cb;
  enqueue(st, op);
  return 0;
}

int tb_store_cases_list(struct tb_store *st, const struct tb_store_case_filter *f,
                        tb_store_cases_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL || f == NULL) return TB_EINVAL;
  struct tb__store_op *op = op_new(OP_CASES_LIST, opt_len(f->status) + opt_len(f->partner), ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.cases = cb;
  char *p = (char *)(op + 1);
  op->u.cases = *f;
  op->u.cases.status = copy_opt(&p, f->status);
  op->u.cases.partner = copy_opt(&p, f->partner);
  enqueue(st, op);
  return 0;
}

int64_t tb_store_last_seq(const struct tb_store *st) {
  return st->last_seq;
}

void tb_store_on_commit(struct tb_store *st, tb_store_commit_fn fn, void *ud) {
  st->commit_fn = fn;
  st->commit_ud = ud;
}

size_t tb_store_pending(const struct tb_store *st) {
  return st->pending;
}

int tb_store_outbox_list(struct tb_store *st, const char *case_id, int inbound,
                         tb_store_outbox_rows_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op;
  int rc = queue_case_read(OP_OUTBOX_LIST, case_id, &op, ud);
  if (rc != 0) return rc;
  op->u.get.inbound = inbound ? 1 : 0;
  op->cb.outbox_rows = cb;
  enqueue(st, op);
  return 0;
}

int tb_store_partner_activity(struct tb_store *st, tb_store_activity_cb cb, void *ud) {
  if (st->closing) return TB_ECLOSED;
  if (cb == NULL) return TB_EINVAL;
  struct tb__store_op *op = op_new(OP_PARTNER_ACTIVITY, 0, ud);
  if (op == NULL) return TB_ENOMEM;
  op->cb.activity = cb;
  enqueue(st, op);
  return 0;
}
