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

enum op_kind { OP_ACCEPT, OP_CASE_GET, OP_EVENTS_LIST, OP_PING };

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
  } cb;
  union {
    struct {
      struct tb_store_case_new c; /* strings point into this op's allocation */
      enum tb_store_accept_outcome outcome;
      int64_t seq;
    } accept;
    struct {
      const char *case_id;
    } get;
    struct {
      int64_t after;
      size_t limit;
      size_t n;
      int64_t last_seq;
    } events;
  } u;
  void *result; /* backend-made block (answer copy, view, events), or NULL */
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
    if (op->rc == 0 && op->kind == OP_ACCEPT && op->u.accept.seq > seq_max)
      seq_max = op->u.accept.seq;
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
