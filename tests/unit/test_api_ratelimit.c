/*
 * Unit tests of api/ratelimit.c: a full bucket allows its burst, refills at
 * the rate, Retry-After counts whole seconds until one token (>= 1), the
 * table never holds more than its capacity and evicts the least recently
 * used key, and a rate of 0 turns limiting off. Also the JSON depth
 * pre-scan used before parsing POST /v1/cases bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "api/ratelimit.h"

static struct tb_ratelimit *new_rl(uint32_t rate, uint32_t burst, size_t cap) {
  struct tb_ratelimit *rl = malloc(sizeof *rl);
  assert_non_null(rl);
  tb_ratelimit_init(rl, rate, burst, cap);
  return rl;
}

static void test_burst_then_refused(void **state) {
  (void)state;
  struct tb_ratelimit *rl = new_rl(5, 5, 0);
  for (int i = 0; i < 5; i++) assert_int_equal(tb_ratelimit_take(rl, "c:a", 1000), 0);
  assert_int_equal(tb_ratelimit_take(rl, "c:a", 1000), 1);
  /* another key has its own bucket */
  assert_int_equal(tb_ratelimit_take(rl, "c:b", 1000), 0);
  free(rl);
}

static void test_refill_at_rate_capped_at_burst(void **state) {
  (void)state;
  struct tb_ratelimit *rl = new_rl(10, 3, 0); /* one token per 100 ms */
  for (int i = 0; i < 3; i++) assert_int_equal(tb_ratelimit_take(rl, "k", 0), 0);
  assert_int_not_equal(tb_ratelimit_take(rl, "k", 0), 0);
  assert_int_not_equal(tb_ratelimit_take(rl, "k", 99), 0); /* 0.99 token */
  assert_int_equal(tb_ratelimit_take(rl, "k", 100), 0);
  assert_int_not_equal(tb_ratelimit_take(rl, "k", 150), 0);
  assert_int_equal(tb_ratelimit_take(rl, "k", 200), 0);
  /* a long pause refills to burst, not beyond */
  for (int i = 0; i < 3; i++) assert_int_equal(tb_ratelimit_take(rl, "k", 100000), 0);
  assert_int_not_equal(tb_ratelimit_take(rl, "k", 100000), 0);
  /* a clock going backwards refills nothing and does not crash */
  assert_int_not_equal(tb_ratelimit_take(rl, "k", 50), 0);
  free(rl);
}

static void test_retry_after_whole_seconds(void **state) {
  (void)state;
  /* Rates are whole tokens a second, so one token is never more than 1 s
   * away: Retry-After is the ceiling, and never 0. */
  struct tb_ratelimit *rl = new_rl(1, 1, 0);
  assert_int_equal(tb_ratelimit_take(rl, "k", 0), 0);
  assert_int_equal(tb_ratelimit_take(rl, "k", 0), 1);
  assert_int_equal(tb_ratelimit_take(rl, "k", 500), 1); /* 0.5 s left: rounds up to 1 */
  assert_int_equal(tb_ratelimit_take(rl, "k", 1000), 0);
  free(rl);
  /* fast rates still say at least 1 */
  rl = new_rl(1000, 1, 0);
  assert_int_equal(tb_ratelimit_take(rl, "k", 0), 0);
  assert_int_equal(tb_ratelimit_take(rl, "k", 0), 1);
  free(rl);
  /* rate 1, burst 3, all taken: 1 s for the next, still 1 at 1 ms left */
  rl = new_rl(1, 3, 0);
  for (int i = 0; i < 3; i++) assert_int_equal(tb_ratelimit_take(rl, "k", 7000), 0);
  assert_int_equal(tb_ratelimit_take(rl, "k", 7000), 1);
  assert_int_equal(tb_ratelimit_take(rl, "k", 7999), 1);
  assert_int_equal(tb_ratelimit_take(rl, "k", 8000), 0);
  free(rl);
}

static void test_lru_bound_and_eviction(void **state) {
  (void)state;
  struct tb_ratelimit *rl = new_rl(1, 1, 4);
  char key[32];
  for (int i = 0; i < 4; i++) {
    snprintf(key, sizeof key, "ip:10.0.0.%d", i);
    assert_int_equal(tb_ratelimit_take(rl, key, 0), 0);
  }
  assert_int_equal(rl->count, 4);
  /* touch .0 so .1 is the least recently used */
  assert_int_equal(tb_ratelimit_take(rl, "ip:10.0.0.0", 0), 1);
  assert_int_equal(tb_ratelimit_take(rl, "ip:10.0.0.9", 0), 0);
  assert_int_equal(rl->count, 4);
  assert_false(tb_ratelimit_has(rl, "ip:10.0.0.1"));
  assert_true(tb_ratelimit_has(rl, "ip:10.0.0.0"));
  assert_true(tb_ratelimit_has(rl, "ip:10.0.0.2"));
  assert_true(tb_ratelimit_has(rl, "ip:10.0.0.3"));
  assert_true(tb_ratelimit_has(rl, "ip:10.0.0.9"));
  /* .0 kept its empty bucket */
  assert_int_equal(tb_ratelimit_take(rl, "ip:10.0.0.0", 0), 1);
  free(rl);

  /* the default capacity holds at most TB_RATELIMIT_MAX_ENTRIES keys, with
   * many keys churning through it */
  rl = new_rl(100, 10, 0);
  for (int i = 0; i < 5 * TB_RATELIMIT_MAX_ENTRIES; i++) {
    snprintf(key, sizeof key, "ip:k%d", i);
    assert_int_equal(tb_ratelimit_take(rl, key, (uint64_t)i), 0);
    assert_true(rl->count <= TB_RATELIMIT_MAX_ENTRIES);
  }
  assert_int_equal(rl->count, TB_RATELIMIT_MAX_ENTRIES);
  snprintf(key, sizeof key, "ip:k%d", 5 * TB_RATELIMIT_MAX_ENTRIES - 1);
  assert_true(tb_ratelimit_has(rl, key));
  snprintf(key, sizeof key, "ip:k%d", 4 * TB_RATELIMIT_MAX_ENTRIES - 1);
  assert_false(tb_ratelimit_has(rl, key));
  free(rl);
}

static void test_off_when_rate_is_zero(void **state) {
  (void)state;
  struct tb_ratelimit *rl = new_rl(0, 1, 0);
  for (int i = 0; i < 10000; i++) assert_int_equal(tb_ratelimit_take(rl, "k", 0), 0);
  assert_int_equal(rl->count, 0);
  free(rl);
}

static void test_long_keys_are_truncated_consistently(void **state) {
  (void)state;
  struct tb_ratelimit *rl = new_rl(1, 1, 0);
  char longkey[200];
  memset(longkey, 'x', sizeof longkey - 1);
  longkey[sizeof longkey - 1] = '\0';
  assert_int_equal(tb_ratelimit_take(rl, longkey, 0), 0);
  assert_int_equal(tb_ratelimit_take(rl, longkey, 0), 1);
  assert_true(tb_ratelimit_has(rl, longkey));
  free(rl);
}

static unsigned depth(const char *s, unsigned limit) {
  return tb__api_json_depth(s, strlen(s), limit);
}

static void test_json_depth_prescan(void **state) {
  (void)state;
  assert_int_equal(depth("", 32), 0);
  assert_int_equal(depth("1", 32), 0);
  assert_int_equal(depth("{}", 32), 1);
  assert_int_equal(depth("{\"a\": [1, {\"b\": []}], \"c\": {}}", 32), 4);
  /* brackets inside strings, escaped quotes and backslashes do not count */
  assert_int_equal(depth("{\"a\": \"[[[{{{\"}", 32), 1);
  assert_int_equal(depth("{\"a\": \"x\\\"[[[\"}", 32), 1);
  assert_int_equal(depth("{\"a\": \"x\\\\\", \"b\": [[]]}", 32), 3);
  /* stops once over the limit */
  char deep[4001];
  memset(deep, '[', 4000);
  deep[4000] = '\0';
  assert_int_equal(depth(deep, 32), 33);
  assert_int_equal(depth(deep, 5000), 4000);
  /* stray closers do not go negative */
  assert_int_equal(depth("]]]][", 32), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst_then_refused),
      cmocka_unit_test(test_refill_at_rate_capped_at_burst),
      cmocka_unit_test(test_retry_after_whole_seconds),
      cmocka_unit_test(test_lru_bound_and_eviction),
      cmocka_unit_test(test_off_when_rate_is_zero),
      cmocka_unit_test(test_long_keys_are_truncated_consistently),
      cmocka_unit_test(test_json_depth_prescan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
