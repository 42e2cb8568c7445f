/* Retry back-off and the circuit breaker: the two policies that decide when
 * the delivery engine may talk to a partner again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "delivery/backoff.h"
#include "delivery/circuit.h"

static void test_backoff_doubles_with_equal_jitter_up_to_the_cap(void **state) {
  (void)state;
  struct tb_backoff_policy p = {.initial_ms = 1000, .max_ms = 60000};
  /* random 0 → exactly half the base; random → 1 → (almost) the base */
  assert_int_equal(tb_backoff_delay_ms(&p, 1, -1, 0.0), 500);
  assert_int_equal(tb_backoff_delay_ms(&p, 2, -1, 0.0), 1000);
  assert_int_equal(tb_backoff_delay_ms(&p, 3, -1, 0.0), 2000);
  assert_int_equal(tb_backoff_delay_ms(&p, 3, -1, 0.5), 3000);
  assert_true(tb_backoff_delay_ms(&p, 3, -1, 0.999999) <= 4000);
  /* capped: 2^20 s would be far beyond 60 s */
  assert_int_equal(tb_backoff_delay_ms(&p, 21, -1, 0.0), 30000);
  assert_true(tb_backoff_delay_ms(&p, 4000000000u, -1, 0.999) <= 60000);
}

static void test_backoff_never_earlier_than_retry_after(void **state) {
  (void)state;
  struct tb_backoff_policy p = {.initial_ms = 1000, .max_ms = 60000};
  assert_int_equal(tb_backoff_delay_ms(&p, 1, 7000, 0.0), 7000);
  /* Retry-After shorter than the back-off does not shorten it */
  assert_int_equal(tb_backoff_delay_ms(&p, 3, 100, 0.0), 2000);
  /* beyond max_ms the partner's word still counts ... */
  assert_int_equal(tb_backoff_delay_ms(&p, 1, 120000, 0.0), 120000);
  /* ... up to a day */
  assert_int_equal(tb_backoff_delay_ms(&p, 1, 10LL * 24 * 3600 * 1000, 0.0),
                   TB_BACKOFF_RETRY_AFTER_CAP_MS);
}

static void test_circuit_opens_after_consecutive_failures(void **state) {
  (void)state;
  struct tb_circuit c;
  tb_circuit_init(&c, 3, 1000, 8000);
  assert_true(tb_circuit_allow(&c, 0));
  assert_int_equal(tb_circuit_failure(&c, 0), 0);
  tb_circuit_success(&c); /* a success in between resets the count */
  assert_int_equal(tb_circuit_failure(&c, 0), 0);
  assert_int_equal(tb_circuit_failure(&c, 0), 0);
  assert_int_equal(tb_circuit_failure(&c, 10), 1);
  assert_int_equal(c.state, TB_CIRCUIT_OPEN);
  assert_false(tb_circuit_allow(&c, 500));
  assert_int_equal(tb_circuit_next_allowed_ms(&c, 500), 1010);
}

static void test_circuit_half_open_allows_one_probe(void **state) {
  (void)state;
  struct tb_circuit c;
  tb_circuit_init(&c, 1, 1000, 8000);
  tb_circuit_failure(&c, 0);
  assert_true(tb_circuit_allow(&c, 1000)); /* the probe */
  assert_int_equal(c.state, TB_CIRCUIT_HALF_OPEN);
  assert_false(tb_circuit_allow(&c, 1001)); /* only one */
  tb_circuit_success(&c);
  assert_int_equal(c.state, TB_CIRCUIT_CLOSED);
  assert_true(tb_circuit_allow(&c, 1002));
  assert_true(tb_circuit_allow(&c, 1003));
}

static void test_circuit_failed_probe_waits_longer_up_to_max(void **state) {
  (void)state;
  struct tb_circuit c;
  tb_circuit_init(&c, 1, 1000, 3000);
  tb_circuit_failure(&c, 0);                 /* open until 1000 */
  assert_true(tb_circuit_allow(&c, 1000));   /* probe */
  assert_int_equal(tb_circuit_failure(&c, 1000), 1);
  assert_int_equal(c.open_until_ms, 3000);   /* 2 s */
  assert_true(tb_circuit_allow(&c, 3000));
  tb_circuit_failure(&c, 3000);
  assert_int_equal(c.open_until_ms, 6000);   /* capped at 3 s */
  assert_false(tb_circuit_allow(&c, 5999));
  /* a straggler failing while open changes nothing */
  assert_int_equal(tb_circuit_failure(&c, 5000), 0);
  assert_int_equal(c.open_until_ms, 6000);
  assert_string_equal(tb_circuit_state_name(c.state), "open");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_backoff_doubles_with_equal_jitter_up_to_the_cap),
      cmocka_unit_test(test_backoff_never_earlier_than_retry_after),
      cmocka_unit_test(test_circuit_opens_after_consecutive_failures),
      cmocka_unit_test(test_circuit_half_open_allows_one_probe),
      cmocka_unit_test(test_circuit_failed_probe_waits_longer_up_to_max),
  };
  return cmocka_run_group_tests_name("delivery.policy", tests, NULL, NULL);
}
