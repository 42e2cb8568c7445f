/*
 * Worker pool (see workers.h). Two FIFOs under one mutex: jobs waiting for a
 * thread, and finished jobs waiting for the loop. Jobs are intrusive list
 * nodes allocated once per submit and freed after their done callback.
 */
#include "core/workers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tbgw/error.h"

struct job {
  struct job *next;
  tb_work_fn work;
  tb_work_done_fn done;
  void *ud;
  int cancelled;
};

struct fifo {
  struct job *head, *tail;
};

struct tb_workers {
  uv_loop_t *loop;
  uv_async_t async;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct fifo waiting, finished;
  pthread_t *threads;
  size_t nthreads;
  size_t pending; /* loop thread's count: submitted, done not yet run */
  int stopping;   /* under mu */
  void (*on_closed)(void *ud);
  void *closed_ud;
};

static void fifo_push(struct fifo *f, struct job *j) {
  j->next = NULL;
  if (f->tail) f->tail->next = j;
  else f->head = j;
  f->tail = j;
}

static struct job *fifo_pop(struct fifo *f) {
  struct job *j = f->head;
  if (j) {
    f->head = j->next;
    if (f->head == NULL) f->tail = NULL;
  }
  return j;
}

static void *worker_main(void *arg) {
  struct tb_workers *w = arg;
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (w->waiting.head == NULL && !w->stopping) pthread_cond_wait(&w->cv, &w->mu);
    struct job *j = fifo_pop(&w->waiting);
    if (j == NULL) break; /* stopping and nothing left for us */
    pthread_mutex_unlock(&w->mu);
    j->work(j->ud);
    pthread_mutex_lock(&w->mu);
    fifo_push(&w->finished, j);
    uv_async_send(&w->async);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

static void on_async(uv_async_t *a) {
  struct tb_workers *w = a->data;
  pthread_mutex_lock(&w->mu);
  struct fifo done = w->finished;
  w->finished.head = w->finished.tail = NULL;
  pthread_mutex_unlock(&w->mu);
  struct job *j;
  while ((j = fifo_pop(&done)) != NULL) {
    w->pending--;
    j->done(j->ud, j->cancelled);
    free(j);
  }
}

int tb_workers_start(uv_loop_t *loop, size_t threads, struct tb_workers **out, char *err) {
  if (threads == 0 || threads > 64)
    return tb_errf(err, TB_EINVAL, "workers: %zu threads asked for; 1 to 64 allowed", threads);
  struct tb_workers *w = calloc(1, sizeof *w);
  if (w == NULL || (w->threads = calloc(threads, sizeof *w->threads)) == NULL) {
    free(w);
    return tb_errf(err, TB_ENOMEM, "workers: out of memory");
  }
  w->loop = loop;
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  uv_async_init(loop, &w->async, on_async);
  w->async.data = w;
  for (; w->nthreads < threads; w->nthreads++) {
    int rc = pthread_create(&w->threads[w->nthreads], NULL, worker_main, w);
    if (rc != 0) {
      tb_errf(err, TB_EIO, "workers: cannot start thread %zu of %zu: %s", w->nthreads + 1, threads,
              strerror(rc));
      tb_workers_close(w, NULL, NULL);
      return TB_EIO;
    }
  }
  *out = w;
  return 0;
}

int tb_workers_submit(struct tb_workers *w, tb_work_fn work, tb_work_done_fn done, void *ud) {
  struct job *j = malloc(sizeof *j);
  if (j == NULL) return TB_ENOMEM;
  j->work = work;
  j->done = done;
  j->ud = ud;
  j->cancelled = 0;
  pthread_mutex_lock(&w->mu);
  if (w->stopping) {
    pthread_mutex_unlock(&w->mu);
    free(j);
    return TB_ECLOSED;
  }
  fifo_push(&w->waiting, j);
  w->pending++;
  pthread_cond_signal(&w->cv);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

size_t tb_workers_pending(const struct tb_workers *w) { return w->pending; }

static void on_async_closed(uv_handle_t *h) {
  struct tb_workers *w = h->data;
  void (*cb)(void *) = w->on_closed;
  void *ud = w->closed_ud;
  pthread_mutex_destroy(&w->mu);
  pthread_cond_destroy(&w->cv);
  free(w->threads);
  free(w);
  if (cb) cb(ud);
}

void tb_workers_close(struct tb_workers *w, void (*on_closed)(void *ud), void *ud) {
  pthread_mutex_lock(&w->mu);
  w->stopping = 1;
  /* Queued jobs never start: they go straight to the loop as cancelled. */
  struct job *j;
  while ((j = fifo_pop(&w->waiting)) != NULL) {
    j->cancelled = 1;
    fifo_push(&w->finished, j);
  }
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  for (size_t i = 0; i < w->nthreads; i++) pthread_join(w->threads[i], NULL);
  on_async(&w->async); /* every done callback runs before on_closed */
  w->on_closed = on_closed;
  w->closed_ud = ud;
  uv_close((uv_handle_t *)&w->async, on_async_closed);
}
