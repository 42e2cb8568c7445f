/*
 * inbound/policy.h: the partner listener's routing table, the replay window
 * and our receipt numbers, without sockets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "inbound/policy.h"

/* 2024-05-06 10:00:00 Beijing = 02:00:00 UTC */
#define T_20240506_1000 INT64_C(1714960800000)

/* ---- paths and routes ---- */

static void path_split_names_the_partner_and_the_rest(void **state) {
  (void)state;
  char name[TB_INBOUND_PARTNER_MAX + 1];
  const char *rest;
  assert_int_equal(tb_inbound_path_split("/partners/laizhou/tongban/v1/notify", name, &rest), 0);
  assert_string_equal(name, "laizhou");
  assert_string_equal(rest, "/tongban/v1/notify");
  assert_int_equal(tb_inbound_path_split("/partners/wu-jiang2", name, &rest), 0);
  assert_string_equal(name, "wu-jiang2");
  assert_string_equal(rest, "");
}

static void path_split_refuses_what_names_no_partner(void **state) {
  (void)state;
  char name[TB_INBOUND_PARTNER_MAX + 1];
  const char *rest;
  const char *bad[] = {
      "/partners/",          "/partners//x",         "/partner/laizhou/x",
      "/v1/cases",           "/partners/LaiZhou/x",  "/partners/lai_zhou/x",
      "/partners/a%2fb/x",   "/partners/../x",       "partners/laizhou/x",
      "/partners/abcdefghijklmnopqrstuvwxyz0123456/x", /* 33 characters */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(tb_inbound_path_split(bad[i], name, &rest), -1);
    assert_null(rest);
  }
  /* exactly 32 characters is a valid name */
  assert_int_equal(tb_inbound_path_split("/partners/abcdefghijklmnopqrstuvwxyz012345/x", name,
                                         &rest),
                   0);
  assert_int_equal(strlen(name), 32);
  assert_int_equal(tb_inbound_path_split(NULL, name, &rest), -1);
}

static const struct tb_inbound_route routes[] = {
    {"POST", "/tongban/v1/notify"},
    {"POST", "/gateway/tongban/callback"},
    {"PUT", "/gateway/tongban/callback"},
    {"POST", "/gateway/tongban/callback"}, /* listed twice: Allow names it once */
};

static void route_find_matches_exactly(void **state) {
  (void)state;
  char allow[64];
  assert_int_equal(tb_inbound_route_find(routes, 4, "POST", "/tongban/v1/notify", allow,
                                         sizeof allow),
                   TB_INBOUND_ROUTE_OK);
  assert_int_equal(tb_inbound_route_find(routes, 4, "POST", "/tongban/v1/notify/", allow,
                                         sizeof allow),
                   TB_INBOUND_ROUTE_NONE);
  assert_int_equal(tb_inbound_route_find(routes, 4, "POST", "/TONGBAN/v1/notify", allow,
                                         sizeof allow),
                   TB_INBOUND_ROUTE_NONE);
  assert_int_equal(tb_inbound_route_find(routes, 4, "POST", "", allow, sizeof allow),
                   TB_INBOUND_ROUTE_NONE);
  assert_int_equal(tb_inbound_route_find(routes, 0, "POST", "/tongban/v1/notify", allow,
                                         sizeof allow),
                   TB_INBOUND_ROUTE_NONE);
  assert_int_equal(tb_inbound_route_find(routes, 4, "post", "/tongban/v1/notify", allow,
                                         sizeof allow),
                   TB_INBOUND_ROUTE_METHOD);
}

static void route_find_lists_allowed_methods(void **state) {
  (void)state;
  char allow[64];
  assert_int_equal(tb_inbound_route_find(routes, 4, "GET", "/tongban/v1/notify", allow,
                                         sizeof allow),
                   TB_INBOUND_ROUTE_METHOD);
  assert_string_equal(allow, "POST");
  assert_int_equal(tb_inbound_route_find(routes, 4, "DELETE", "/gateway/tongban/callback", allow,
                                         sizeof allow),
                   TB_INBOUND_ROUTE_METHOD);
  assert_string_equal(allow, "POST, PUT");
  char small[6];
  assert_int_equal(tb_inbound_route_find(routes, 4, "DELETE", "/gateway/tongban/callback", small,
                                         sizeof small),
                   TB_INBOUND_ROUTE_METHOD);
  assert_string_equal(small, "POST"); /* ", PUT" does not fit: left out whole */
}

/* ---- replay window ---- */

static void window_is_inclusive_both_ways(void **state) {
  (void)state;
  int64_t now = T_20240506_1000;
  assert_true(tb_inbound_window_ok(now, now, 300));
  assert_true(tb_inbound_window_ok(now, now - 300000, 300));
  assert_true(tb_inbound_window_ok(now, now + 300000, 300));
  assert_false(tb_inbound_window_ok(now, now - 300001, 300));
  assert_false(tb_inbound_window_ok(now, now + 300001, 300));
  assert_true(tb_inbound_window_ok(now, now - 9999, 10));
  assert_false(tb_inbound_window_ok(now, now - 10001, 10));
  assert_true(tb_inbound_window_ok(now, now - 3600000, 3600));
}

static void window_without_a_timestamp_does_not_apply(void **state) {
  (void)state;
  assert_true(tb_inbound_window_ok(T_20240506_1000, 0, 300));
}

static void window_survives_hostile_timestamps(void **state) {
  (void)state;
  int64_t now = T_20240506_1000;
  assert_false(tb_inbound_window_ok(now, INT64_MIN, 300));
  assert_false(tb_inbound_window_ok(now, INT64_MAX, 3600));
  assert_false(tb_inbound_window_ok(now, -1, 300));
  assert_false(tb_inbound_window_ok(now, 1, 300)); /* 1970 */
}

/* ---- receipt numbers ---- */

static void beijing_day_rolls_over_at_1600_utc(void **state) {
  (void)state;
  int32_t day;
  int64_t ms;
  assert_int_equal(tb_inbound_beijing_day(T_20240506_1000, &day, &ms), 0);
  assert_int_equal(day, 20240506);
  assert_int_equal(ms, INT64_C(36000000));
  /* 2024-05-06T15:59:59.999Z is 23:59:59.999 in Beijing; a ms later, May 7 */
  int64_t midnight = INT64_C(1715011200000);
  assert_int_equal(tb_inbound_beijing_day(midnight - 1, &day, &ms), 0);
  assert_int_equal(day, 20240506);
  assert_int_equal(ms, INT64_C(86399999));
  assert_int_equal(tb_inbound_beijing_day(midnight, &day, &ms), 0);
  assert_int_equal(day, 20240507);
  assert_int_equal(ms, 0);
  /* leap day, year end */
  assert_int_equal(tb_inbound_beijing_day(INT64_C(1709136000000), &day, &ms), 0); /* 2024-02-29T00:00+08 */
  assert_int_equal(day, 20240229);
  assert_int_equal(tb_inbound_beijing_day(INT64_C(1735660800000), &day, &ms), 0); /* 2025-01-01T00:00+08 */
  assert_int_equal(day, 20250101);
  assert_int_equal(tb_inbound_beijing_day(-1, &day, &ms), TB_EINVAL);
  assert_int_equal(tb_inbound_beijing_day(INT64_MAX, &day, &ms), TB_EINVAL);
}

static void receipt_has_the_documented_shape(void **state) {
  (void)state;
  struct tb_inbound_receipts r;
  tb_inbound_receipts_init(&r, "430603");
  char out[TB_INBOUND_RECEIPT_MAX];
  assert_int_equal(tb_inbound_receipt_next(&r, T_20240506_1000 + 1234, out), 0);
  /* 10:00:01.234 → tenth of a second 360012 of the day */
  assert_string_equal(out, "430603-SL-20240506-360012");
  tb_inbound_receipts_init(&r, "430603");
  assert_int_equal(tb_inbound_receipt_next(&r, INT64_C(1715011200000), out), 0); /* midnight */
  assert_string_equal(out, "430603-SL-20240507-000000");
}

static void receipts_are_strictly_increasing_within_a_day(void **state) {
  (void)state;
  struct tb_inbound_receipts r;
  tb_inbound_receipts_init(&r, "430603");
  char a[TB_INBOUND_RECEIPT_MAX], b[TB_INBOUND_RECEIPT_MAX];
  /* a burst within one tenth of a second borrows the next numbers ... */
  assert_int_equal(tb_inbound_receipt_next(&r, T_20240506_1000, a), 0);
  for (int i = 1; i <= 25; i++) {
    assert_int_equal(tb_inbound_receipt_next(&r, T_20240506_1000 + 10, b), 0);
    assert_true(strcmp(b, a) > 0);
    memcpy(a, b, sizeof a);
  }
  assert_string_equal(a, "430603-SL-20240506-360025");
  /* ... the clock catches up ... */
  assert_int_equal(tb_inbound_receipt_next(&r, T_20240506_1000 + 5000, b), 0);
  assert_string_equal(b, "430603-SL-20240506-360050");
  /* ... and a clock stepping back never repeats a number */
  assert_int_equal(tb_inbound_receipt_next(&r, T_20240506_1000 - 60000, b), 0);
  assert_string_equal(b, "430603-SL-20240506-360051");
  /* even across midnight backwards */
  assert_int_equal(tb_inbound_receipt_next(&r, T_20240506_1000 - INT64_C(86400000), b), 0);
  assert_string_equal(b, "430603-SL-20240506-360052");
}

static void receipts_of_a_new_day_restart_from_the_clock(void **state) {
  (void)state;
  struct tb_inbound_receipts r;
  tb_inbound_receipts_init(&r, "430603");
  char out[TB_INBOUND_RECEIPT_MAX];
  int64_t late = INT64_C(1715011200000) - 1; /* 23:59:59.999 */
  assert_int_equal(tb_inbound_receipt_next(&r, late, out), 0);
  assert_string_equal(out, "430603-SL-20240506-863999");
  assert_int_equal(tb_inbound_receipt_next(&r, late, out), 0);
  assert_string_equal(out, "430603-SL-20240506-864000"); /* borrowed, still that day */
  assert_int_equal(tb_inbound_receipt_next(&r, late + 1, out), 0);
  assert_string_equal(out, "430603-SL-20240507-000000");
}

static void receipt_out_of_range_time_is_refused(void **state) {
  (void)state;
  struct tb_inbound_receipts r;
  tb_inbound_receipts_init(&r, "430603");
  char out[TB_INBOUND_RECEIPT_MAX];
  assert_int_equal(tb_inbound_receipt_next(&r, -5, out), TB_EINVAL);
  assert_string_equal(out, "");
  assert_int_equal(r.day, 0); /* nothing consumed */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(path_split_names_the_partner_and_the_rest),
      cmocka_unit_test(path_split_refuses_what_names_no_partner),
      cmocka_unit_test(route_find_matches_exactly),
      cmocka_unit_test(route_find_lists_allowed_methods),
      cmocka_unit_test(window_is_inclusive_both_ways),
      cmocka_unit_test(window_without_a_timestamp_does_not_apply),
      cmocka_unit_test(window_survives_hostile_timestamps),
      cmocka_unit_test(beijing_day_rolls_over_at_1600_utc),
      cmocka_unit_test(receipt_has_the_documented_shape),
      cmocka_unit_test(receipts_are_strictly_increasing_within_a_day),
      cmocka_unit_test(receipts_of_a_new_day_restart_from_the_clock),
      cmocka_unit_test(receipt_out_of_range_time_is_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
