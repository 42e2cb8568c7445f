/* The CPU worker pool: jobs run off the loop thread, results come back on
 * it, every done callback runs exactly once, close cancels what is queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <uv.h>

#include "core/workers.h"
#include "tbgw/error.h"

#define NJOBS 2000

struct job_state {
  pthread_t ran_on;
  int done_calls;
  int cancelled;
  unsigned long long result;
  unsigned input;
};

static pthread_t g_loop_thread;
static int g_done_total;

static void work_sum(void *ud) {
  struct job_state *s = ud;
  s->ran_on = pthread_self();
  unsigned long long acc = 0;
  for (unsigned i = 0; i <= s->input; i++) acc += i;
  s->result = acc;
}

static void on_done(void *ud, int cancelled) {
  struct job_state *s = ud;
  assert_true(pthread_equal(pthread_self(), g_loop_thread));
  s->done_calls++;
  s->cancelled = cancelled;
  g_done_total++;
}

static void test_jobs_run_on_workers_and_complete_on_loop(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  g_loop_thread = pthread_self();
  g_done_total = 0;
  struct tb_workers *w = NULL;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_workers_start(&loop, 2, &w, err), 0);
  struct job_state *jobs = calloc(NJOBS, sizeof *jobs);
  for (unsigned i = 0; i < NJOBS; i++) {
    jobs[i].input = i;
    assert_int_equal(tb_workers_submit(w, work_sum, on_done, &jobs[i]), 0);
  }
  while (g_done_total < NJOBS) uv_run(&loop, UV_RUN_ONCE);
  assert_int_equal(tb_workers_pending(w), 0);
  for (unsigned i = 0; i < NJOBS; i++) {
    assert_int_equal(jobs[i].done_calls, 1);
    assert_int_equal(jobs[i].cancelled, 0);
    assert_true(jobs[i].result == (unsigned long long)i * (i + 1) / 2);
    assert_false(pthread_equal(jobs[i].ran_on, g_loop_thread));
  }
  tb_workers_close(w, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(jobs);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void work_slow(void *ud) {
  (void)ud;
  sleep_ms(20);
}

static int g_closed;
static void on_closed(void *ud) {
  (void)ud;
  g_closed = 1;
  /* every done ran before this */
  assert_int_equal(g_done_total, 50);
}

static void test_close_cancels_queued_jobs_and_refuses_new_ones(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  g_loop_thread = pthread_self();
  g_done_total = 0;
  g_closed = 0;
  struct tb_workers *w = NULL;
  char err[TB_ERRMSG_MAX];
  assert_int_equal(tb_workers_start(&loop, 1, &w, err), 0);
  struct job_state jobs[50];
  memset(jobs, 0, sizeof jobs);
  for (int i = 0; i < 50; i++) assert_int_equal(tb_workers_submit(w, work_slow, on_done, &jobs[i]), 0);
  sleep_ms(30); /* let one or two start */
  tb_workers_close(w, on_closed, NULL);
  int cancelled = 0;
  for (int i = 0; i < 50; i++) {
    assert_int_equal(jobs[i].done_calls, 1);
    cancelled += jobs[i].cancelled;
  }
  assert_true(cancelled > 0 && cancelled < 50);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(g_closed, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_thread_count_is_checked(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  struct tb_workers *w = NULL;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(tb_workers_start(&loop, 0, &w, err), TB_EINVAL);
  assert_non_null(strstr(err, "1 to 64"));
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jobs_run_on_workers_and_complete_on_loop),
      cmocka_unit_test(test_close_cancels_queued_jobs_and_refuses_new_ones),
      cmocka_unit_test(test_thread_count_is_checked),
  };
  return cmocka_run_group_tests_name("core.workers", tests, NULL, NULL);
}
