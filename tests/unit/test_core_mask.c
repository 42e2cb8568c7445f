/* Masking of personal data (SPEC §9): what reaches logs keeps only the
 * allowed characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "core/mask.h"

static void test_id_keeps_first6_last4(void **state) {
  (void)state;
  char out[TB_MASK_MAX];
  assert_string_equal(tb_mask_id("430603199001011231", out, sizeof out), "430603********1231");
  assert_string_equal(tb_mask_id("91430603MA4L0QXR1K", out, sizeof out), "914306********XR1K");
}

static void test_short_values_fully_masked(void **state) {
  (void)state;
  char out[TB_MASK_MAX];
  /* 8 chars <= 6 + 4: nothing may be kept */
  assert_string_equal(tb_mask_id("E1234567", out, sizeof out), "********");
  assert_string_equal(tb_mask_phone("12345", out, sizeof out), "*****");
  assert_string_equal(tb_mask_id("", out, sizeof out), "");
  assert_string_equal(tb_mask_id(NULL, out, sizeof out), "");
}

static void test_phone_keeps_first3_last4(void **state) {
  (void)state;
  char out[TB_MASK_MAX];
  assert_string_equal(tb_mask_phone("13800000000", out, sizeof out), "138****0000");
  assert_string_equal(tb_mask_phone("0730-8812345", out, sizeof out), "073*****2345");
}

static void test_name_keeps_family_name(void **state) {
  (void)state;
  char out[TB_MASK_MAX];
  assert_string_equal(tb_mask_name("张三", out, sizeof out), "张*");
  assert_string_equal(tb_mask_name("王建国", out, sizeof out), "王**");
  assert_string_equal(tb_mask_name("欧阳娜娜", out, sizeof out), "欧阳**");
  /* Two characters starting like a compound surname: 1-char family name. */
  assert_string_equal(tb_mask_name("欧阳", out, sizeof out), "欧*");
  assert_string_equal(tb_mask_name("李", out, sizeof out), "*");
}

static void test_truncation_never_splits_utf8(void **state) {
  (void)state;
  char out[5];
  tb_mask_name("张三丰", out, sizeof out); /* "张" is 3 bytes, then '*' */
  assert_string_equal(out, "张*");
  char tiny[3];
  tb_mask_name("张三", tiny, sizeof tiny); /* cannot hold "张": empty, not half */
  assert_string_equal(tiny, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id_keeps_first6_last4),
      cmocka_unit_test(test_short_values_fully_masked),
      cmocka_unit_test(test_phone_keeps_first3_last4),
      cmocka_unit_test(test_name_keeps_family_name),
      cmocka_unit_test(test_truncation_never_splits_utf8),
  };
  return cmocka_run_group_tests_name("core.mask", tests, NULL, NULL);
}
