/*
 * core/workers.h — a small pool of CPU worker threads for the loop.
 *
 * Signing, encryption and message translation cost up to a millisecond per
 * message (SM2 in OpenSSL 3.0 has no optimised code on x86-64); run on the
 * loop they would stall every connection. The pool runs such jobs on its own
 * threads (not libuv's shared threadpool, which DNS and fs requests need) and
 * hands each result back to the loop thread through one uv_async_t.
 *
 * A job's work function runs on a worker thread and must touch only what the
 * job owns or what is immutable; its done function runs on the loop thread,
 * exactly once, after work — also when the pool is closing (then
 * `cancelled` is 1 and work did not run).
 */
#ifndef TB_CORE_WORKERS_H
#define TB_CORE_WORKERS_H

#include <stddef.h>
#include <uv.h>

struct tb_workers;

typedef void (*tb_work_fn)(void *ud);
typedef void (*tb_work_done_fn)(void *ud, int cancelled);

/* Starts `threads` workers (1..64). Errors: TB_EINVAL, TB_ENOMEM, TB_EIO with
 * err saying why a thread could not start. Loop thread only. */
int tb_workers_start(uv_loop_t *loop, size_t threads, struct tb_workers **out, char *err);

/* Queues a job; 0, or TB_ECLOSED after close began, or TB_ENOMEM (then done
 * never runs). Loop thread only. */
int tb_workers_submit(struct tb_workers *w, tb_work_fn work, tb_work_done_fn done, void *ud);

/* Jobs queued and not yet done. */
size_t tb_workers_pending(const struct tb_workers *w);

/* Lets running jobs finish, cancels queued ones (done with cancelled = 1),
 * joins the threads, closes the async handle and frees; on_closed (may be
 * NULL) runs on the loop thread at the end. */
void tb_workers_close(struct tb_workers *w, void (*on_closed)(void *ud), void *ud);

#endif
