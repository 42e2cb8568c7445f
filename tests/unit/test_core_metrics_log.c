/* Metrics exposition format and JSON-lines logging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"

static void test_counter_series_and_escaping(void **state) {
  (void)state;
  struct tb_metric *c = tb_metric_counter("t_requests_total", "Requests.", "route", "status");
  assert_non_null(c);
  tb_metric_add(c, "/v1/cases", "202", 1);
  tb_metric_add(c, "/v1/cases", "202", 2);
  tb_metric_add(c, "a\"b\\c\nd", "400", 1);
  assert_true(tb_metric_value(c, "/v1/cases", "202") == 3);
  size_t len = 0;
  char *text = tb_metrics_render(&len);
  assert_non_null(text);
  assert_int_equal(len, strlen(text));
  assert_non_null(strstr(text, "# HELP t_requests_total Requests.\n# TYPE t_requests_total counter\n"));
  assert_non_null(strstr(text, "t_requests_total{route=\"/v1/cases\",status=\"202\"} 3\n"));
  assert_non_null(strstr(text, "t_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"400\"} 1\n"));
  free(text);
  tb_metrics_reset();
}

static void test_histogram_cumulative_buckets(void **state) {
  (void)state;
  static const double b[] = {0.1, 1, 10};
  struct tb_metric *h = tb_metric_histogram("t_latency_seconds", "Latency.", NULL, b, 3);
  tb_metric_observe(h, NULL, 0.05);
  tb_metric_observe(h, NULL, 0.5);
  tb_metric_observe(h, NULL, 5);
  tb_metric_observe(h, NULL, 50);
  char *text = tb_metrics_render(NULL);
  assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"0.1\"} 1\n"));
  assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"1\"} 2\n"));
  assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"10\"} 3\n"));
  assert_non_null(strstr(text, "t_latency_seconds_bucket{le=\"+Inf\"} 4\n"));
  assert_non_null(strstr(text, "t_latency_seconds_sum 55.55\n"));
  assert_non_null(strstr(text, "t_latency_seconds_count 4\n"));
  free(text);
  tb_metrics_reset();
}

static void test_series_cap_bounds_memory(void **state) {
  (void)state;
  struct tb_metric *c = tb_metric_counter("t_capped_total", "Capped.", "k", NULL);
  int refused = 0;
  for (int i = 0; i < 2000; i++) {
    char k[16];
    snprintf(k, sizeof k, "%d", i);
    if (tb_metric_add(c, k, NULL, 1) != 0) refused++;
  }
  assert_true(refused > 0);
  assert_true(refused < 2000);
  tb_metrics_reset();
}

/* Captures log output through a pipe. */
static char *capture(void (*emit)(void)) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  tb_log_setup(fds[1], TB_LOG_DEBUG);
  emit();
  tb_log_setup(2, TB_LOG_INFO);
  close(fds[1]);
  static char buf[65536];
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  buf[n > 0 ? n : 0] = '\0';
  return buf;
}

static void emit_fields(void) {
  struct tb_log_line *l = tb_log_begin(TB_LOG_INFO, "case.accepted");
  tb_log_str(l, "case_id", "430603-20240506-000123");
  tb_log_str(l, "quote", "a\"b\\c\n\x01");
  tb_log_strn(l, "bad_utf8", "ok\xff\xfe", 4);
  tb_log_int(l, "seq", 42);
  tb_log_str(l, "nothing", NULL);
  tb_log_end(l);
}

static void test_log_line_is_valid_json(void **state) {
  (void)state;
  char *out = capture(emit_fields);
  size_t n = strlen(out);
  assert_true(n > 0 && out[n - 1] == '\n');
  json_error_t err;
  json_t *o = json_loads(out, 0, &err);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "event")), "case.accepted");
  assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
  assert_non_null(json_object_get(o, "ts"));
  assert_string_equal(json_string_value(json_object_get(o, "quote")), "a\"b\\c\n\x01");
  assert_string_equal(json_string_value(json_object_get(o, "bad_utf8")), "ok\xEF\xBF\xBD\xEF\xBF\xBD");
  assert_int_equal(json_integer_value(json_object_get(o, "seq")), 42);
  assert_true(json_is_null(json_object_get(o, "nothing")));
  json_decref(o);
}

static void emit_huge(void) {
  static char big[20000];
  memset(big, 'x', sizeof big - 1);
  struct tb_log_line *l = tb_log_begin(TB_LOG_WARN, "huge");
  tb_log_str(l, "a", "short");
  tb_log_str(l, "b", big);
  tb_log_end(l);
}

static void test_oversized_line_truncated_but_valid(void **state) {
  (void)state;
  char *out = capture(emit_huge);
  json_error_t err;
  json_t *o = json_loads(out, 0, &err);
  assert_non_null(o);
  assert_true(json_is_true(json_object_get(o, "truncated")));
  assert_string_equal(json_string_value(json_object_get(o, "a")), "short");
  json_decref(o);
}

static void emit_filtered(void) {
  tb_log_setup(1, TB_LOG_WARN); /* redirected away: nothing below warn goes anywhere */
  assert_null(tb_log_begin(TB_LOG_INFO, "dropped"));
  tb_log_msg(TB_LOG_DEBUG, "dropped", "x");
}

static void test_level_filter(void **state) {
  (void)state;
  assert_int_equal(tb_log_level_parse("warn"), TB_LOG_WARN);
  assert_int_equal(tb_log_level_parse("verbose"), -1);
  char *out = capture(emit_filtered);
  assert_string_equal(out, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_series_and_escaping),
      cmocka_unit_test(test_histogram_cumulative_buckets),
      cmocka_unit_test(test_series_cap_bounds_memory),
      cmocka_unit_test(test_log_line_is_valid_json),
      cmocka_unit_test(test_oversized_line_truncated_but_valid),
      cmocka_unit_test(test_level_filter),
  };
  return cmocka_run_group_tests_name("core.metrics_log", tests, NULL, NULL);
}
