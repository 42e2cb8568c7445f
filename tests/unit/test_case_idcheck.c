/*
 * Unit tests for case/idcheck, case/rfc3339 and case/media: known-answer
 * tests for the resident ID and USCC check characters (expected values were
 * computed independently, by a separate Python implementation of ISO 7064
 * MOD 11-2 and GB 32100), calendar rules, phones, division codes, RFC 3339
 * instants and the media-type table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "case/validate.h"
#include "tbgw/error.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* 2024-06-01 in China Standard Time, as days since 1970-01-01. */
static int64_t day_2024_06_01(void) { return tb_days_from_civil(2024, 6, 1); }

/* Every check character other than the right one must be rejected. */
static void assert_only_check_char_accepted(const char *id, const char *alphabet,
                                            int (*valid)(const char *, size_t)) {
  char buf[19];
  memcpy(buf, id, 18);
  buf[18] = '\0';
  assert_true(valid(buf, 18));
  for (const char *c = alphabet; *c; c++) {
    if (*c == id[17]) continue;
    buf[17] = *c;
    assert_false(valid(buf, 18));
  }
}

static void resident_id_known_answers(void **state) {
  (void)state;
  static const char *const valid[] = {
      "11010519491231002X", /* the GB 11643 textbook example */
      "430603199001011231", "430623197506203112", "430681198803152460", /* samples */
      "440304198002294533", /* born on a leap day */
      "370683196611182515", "530102190001010019", /* 1900-01-01, the earliest allowed */
      "150102198810101231", "810000199001011230", "820000200002290005", "710000199001011237",
      "430603200002291234", /* 2000 is a leap year */
  };
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    assert_int_equal(tb_resident_id_check(valid[i], 18, day_2024_06_01()), TB_IDCHECK_OK);
    assert_only_check_char_accepted(valid[i], "0123456789X", tb_resident_id_valid);
  }
  assert_int_equal(tb_resident_id_check(S("430603199001011232"), day_2024_06_01()),
                   TB_IDCHECK_CHECK_CHAR);
}

static void resident_id_rejects_bad_shapes(void **state) {
  (void)state;
  int64_t today = day_2024_06_01();
  assert_int_equal(tb_resident_id_check(S("11010519491231002x"), today), TB_IDCHECK_LOWER_X);
  assert_false(tb_resident_id_valid(S("11010519491231002x")));
  assert_int_equal(tb_resident_id_check(S("11010519491231002"), today), TB_IDCHECK_FORMAT);
  assert_int_equal(tb_resident_id_check(S("11010519491231002XX"), today), TB_IDCHECK_FORMAT);
  assert_int_equal(tb_resident_id_check(S("1101051949123100AX"), today), TB_IDCHECK_FORMAT);
  assert_int_equal(tb_resident_id_check(S("11010519491231002Y"), today), TB_IDCHECK_FORMAT);
  assert_int_equal(tb_resident_id_check(S(" 11010519491231002"), today), TB_IDCHECK_FORMAT);
  assert_int_equal(tb_resident_id_check(NULL, 0, today), TB_IDCHECK_FORMAT);
  /* province 99 does not exist (check character is right for the digits) */
  assert_int_equal(tb_resident_id_check(S("990603199001011230"), today), TB_IDCHECK_DIVISION);
  /* February 30, 1899-12-31, 1900-02-29 (1900 is not a leap year) */
  assert_int_equal(tb_resident_id_check(S("430603199002301230"), today), TB_IDCHECK_BIRTH_DATE);
  assert_int_equal(tb_resident_id_check(S("430603189912311236"), today), TB_IDCHECK_BIRTH_DATE);
  assert_int_equal(tb_resident_id_check(S("430603190002291238"), today), TB_IDCHECK_BIRTH_DATE);
  /* born "today" is fine, tomorrow is not */
  assert_int_equal(tb_resident_id_check(S("430603202406011234"), today), TB_IDCHECK_OK);
  assert_int_equal(tb_resident_id_check(S("43060320240602123X"), today), TB_IDCHECK_BIRTH_DATE);
  assert_int_equal(tb_resident_id_check(S("43060320240602123X"), today + 1), TB_IDCHECK_OK);
  /* with the real clock, 2099 is in the future */
  assert_false(tb_resident_id_valid(S("430603209901011233")));
}

static void uscc_known_answers(void **state) {
  (void)state;
  static const char *const valid[] = {
      "91350100M000100Y43", /* the GB 32100 example */
      "91430603MA4L0QXR1K", /* sample 03 */
      "11100000000013127D", "52430600MJJ000000X", "92430603MA4PQ12345",
      "Y1430603000000000F", "91110108551385082Q",
      "91430603MA4L0Q0T10", /* weighted sum divisible by 31: check character 0 */
  };
  for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
    assert_int_equal(tb_uscc_check(valid[i], 18), TB_IDCHECK_OK);
    assert_only_check_char_accepted(valid[i], "0123456789ABCDEFGHJKLMNPQRTUWXY", tb_uscc_valid);
  }
  assert_int_equal(tb_uscc_check(S("91430603MA4L0QXR1J")), TB_IDCHECK_CHECK_CHAR);
}

static void uscc_rejects_forbidden_letters_and_shapes(void **state) {
  (void)state;
  static const char forbidden[] = "IOSVZ";
  char buf[19];
  for (const char *c = forbidden; *c; c++) {
    memcpy(buf, "91430603MA4L0QXR1K", 19);
    buf[9] = *c; /* the 'A' */
    assert_int_equal(tb_uscc_check(buf, 18), TB_IDCHECK_FORMAT);
    memcpy(buf, "91430603MA4L0QXR1K", 19);
    buf[17] = *c; /* as the check character */
    assert_int_equal(tb_uscc_check(buf, 18), TB_IDCHECK_FORMAT);
  }
  assert_int_equal(tb_uscc_check(S("91430603ma4l0qxr1k")), TB_IDCHECK_FORMAT);
  assert_int_equal(tb_uscc_check(S("91430603MA4L0QXR1")), TB_IDCHECK_FORMAT);
  assert_int_equal(tb_uscc_check(S("91430603MA4L0QXR1K0")), TB_IDCHECK_FORMAT);
  assert_int_equal(tb_uscc_check(S("91430603MA4L0QX-1K")), TB_IDCHECK_FORMAT);
  assert_false(tb_uscc_valid(NULL, 0));
}

static void division_codes(void **state) {
  (void)state;
  static const char *const good[] = {"110000", "150102", "210000", "230000", "310000",
                                     "370683", "410000", "430603", "460000", "500000",
                                     "540000", "610000", "650000", "710000", "810000",
                                     "820000", "440203"};
  static const char *const bad[] = {"100000", "160000", "200000", "240000", "300000",
                                    "380000", "400000", "470000", "490000", "550000",
                                    "600000", "660000", "700000", "720000", "800000",
                                    "830000", "990000", "000000"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    assert_true(tb_division_code_valid(good[i], 6));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(tb_division_code_valid(bad[i], 6));
  assert_false(tb_division_code_valid(S("43060")));
  assert_false(tb_division_code_valid(S("4306031")));
  assert_false(tb_division_code_valid(S("43O603")));
  assert_false(tb_division_code_valid(NULL, 6));
}

static void phones(void **state) {
  (void)state;
  static const char *const good[] = {"13800000000", "19912345678", "0730-8812345",
                                     "07308812345", "010-12345678", "01012345678",
                                     "0730-88123456", "021-1234567"};
  static const char *const bad[] = {"1380000000",    "138000000000",  "12800000000",
                                    "+8613800000000", "138 0000 0000", "0730-881234",
                                    "0730--8812345", "730-8812345",   "07-8812345",
                                    "07308-8812345", "0730-881234567", "0730-88a2345",
                                    "1380000000a",   "",              "0",
                                    "073088123",     "0730881234567", "0730-8812345-1"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
    assert_true(tb_phone_valid(good[i], strlen(good[i])));
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_false(tb_phone_valid(bad[i], strlen(bad[i])));
}

static void other_id_documents(void **state) {
  (void)state;
  assert_true(tb_passport_number_valid(S("E12345678")));
  assert_true(tb_passport_number_valid(S("EA1234567")));
  assert_true(tb_passport_number_valid(S("C01X00T47")));
  assert_false(tb_passport_number_valid(S("e12345678")));
  assert_false(tb_passport_number_valid(S("E123")));
  assert_false(tb_passport_number_valid(S("E1234-5678")));
  assert_false(tb_passport_number_valid(S("E12345678901234567890")));
  assert_true(tb_hkmo_permit_valid(S("H12345678")));
  assert_true(tb_hkmo_permit_valid(S("M1234567890")));
  assert_false(tb_hkmo_permit_valid(S("h12345678")));
  assert_false(tb_hkmo_permit_valid(S("A12345678")));
  assert_false(tb_hkmo_permit_valid(S("H123456789")));
  assert_true(tb_tw_permit_valid(S("12345678")));
  assert_true(tb_tw_permit_valid(S("1234567801")));
  assert_false(tb_tw_permit_valid(S("12345678(01)")));
  assert_false(tb_tw_permit_valid(S("123456789")));
  assert_false(tb_tw_permit_valid(S("T2345678")));
}

static void calendar(void **state) {
  (void)state;
  assert_int_equal(tb_days_from_civil(1970, 1, 1), 0);
  assert_int_equal(tb_days_from_civil(2000, 3, 1), 11017);
  assert_int_equal(tb_days_from_civil(1900, 1, 1), -25567);
  assert_true(tb_civil_date_valid(2024, 2, 29));
  assert_true(tb_civil_date_valid(2000, 2, 29));
  assert_false(tb_civil_date_valid(2023, 2, 29));
  assert_false(tb_civil_date_valid(1900, 2, 29));
  assert_false(tb_civil_date_valid(2024, 4, 31));
  assert_false(tb_civil_date_valid(2024, 13, 1));
  assert_false(tb_civil_date_valid(2024, 0, 1));
  assert_false(tb_civil_date_valid(2024, 1, 0));
  /* 2024-05-31T16:00:00Z is 2024-06-01 00:00 in Beijing */
  assert_int_equal(tb_cst_today(1717171200), tb_days_from_civil(2024, 6, 1));
  assert_int_equal(tb_cst_today(1717171199), tb_days_from_civil(2024, 5, 31));
  assert_int_equal(tb_cst_today(-8 * 3600 - 1), -1);
}

static void rfc3339_known_answers(void **state) {
  (void)state;
  static const struct {
    const char *s;
    int64_t ms;
    int off;
  } ok[] = {
      {"2024-05-06T10:00:00+08:00", 1714960800000LL, 480}, /* = yue-json acceptTime */
      {"1970-01-01T00:00:00Z", 0, 0},
      {"1970-01-01t00:00:00z", 0, 0},
      {"2024-02-29T23:59:59.999Z", 1709251199999LL, 0},
      {"2024-02-29T23:59:59.9999999Z", 1709251199999LL, 0},
      {"2024-02-29T23:59:59.5Z", 1709251199500LL, 0},
      {"1969-12-31T23:59:59Z", -1000, 0},
      {"2000-03-01T00:00:00-05:30", 951888600000LL, -330},
      {"9999-12-31T23:59:59+00:00", 253402300799000LL, 0},
      {"0001-01-01T00:00:00-00:00", -62135596800000LL, 0},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t ms = 42;
    int off = 42;
    assert_int_equal(tb_rfc3339_parse(ok[i].s, strlen(ok[i].s), &ms, &off), 0);
    assert_int_equal(ms, ok[i].ms);
    assert_int_equal(off, ok[i].off);
  }
  static const char *const bad[] = {
      "2024-05-06T10:00:00",        /* no offset */
      "2024-13-06T10:00:00+08:00",  /* month 13 */
      "2023-02-29T10:00:00Z",       /* not a leap year */
      "2024-04-31T10:00:00Z",       /* April has 30 days */
      "2024-00-10T10:00:00Z",       "2024-05-00T10:00:00Z",
      "2024-05-06 10:00:00+08:00",  /* space separator */
      "2024-05-06T10:00:00+0800",   /* offset without colon */
      "2024-05-06T10:00:00+08",     "2024-05-06T24:00:00Z",
      "2024-05-06T10:60:00Z",       "2024-05-06T23:59:60Z", /* leap second */
      "2024-05-06T10:00:00.Z",      "2024-05-06T10:00:00.1234567890Z",
      "2024-05-06T10:00:00+24:00",  "2024-05-06T10:00:00+08:60",
      "2024-05-06T10:00:00Z ",      " 2024-05-06T10:00:00Z",
      "2024-5-6T10:00:00Z",         "20240506T100000Z",
      "2024-05-06",                 "",
      "2024-05-06T10:00:00ZZ",      "2024-05-06T10:00:00+08:00:00",
      "+2024-05-06T10:00:00Z",      "2024-05-06T10:00Z",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t ms = 42;
    int off = 42;
    assert_int_equal(tb_rfc3339_parse(bad[i], strlen(bad[i]), &ms, &off), TB_EPARSE);
    assert_int_equal(ms, 42);
    assert_int_equal(off, 42);
  }
  /* a length shorter than the string stops the parser there */
  assert_int_equal(tb_rfc3339_parse("2024-05-06T10:00:00+08:00", 19, NULL, NULL), TB_EPARSE);
  assert_int_equal(tb_rfc3339_parse("2024-05-06T10:00:00Z+08:00", 20, NULL, NULL), 0);
  assert_int_equal(tb_rfc3339_parse(NULL, 0, NULL, NULL), TB_EPARSE);
}

static void media_table(void **state) {
  (void)state;
  static const char *const pairs[][2] = {
      {"application/pdf", "pdf"},
      {"image/jpeg", "jpg"},
      {"image/png", "png"},
      {"application/ofd", "ofd"},
      {"application/msword", "doc"},
      {"application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"},
      {"application/vnd.ms-excel", "xls"},
      {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"},
      {"application/zip", "zip"},
      {"text/plain", "txt"},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    assert_string_equal(tb_case_media_ext(pairs[i][0]), pairs[i][1]);
    assert_string_equal(tb_case_media_type_for_ext(pairs[i][1]), pairs[i][0]);
  }
  assert_null(tb_case_media_ext("image/gif"));
  assert_null(tb_case_media_ext("application/PDF"));
  assert_null(tb_case_media_ext("application/pdf; charset=binary"));
  assert_null(tb_case_media_ext("application/pd"));
  assert_null(tb_case_media_ext(""));
  assert_null(tb_case_media_ext(NULL));
  assert_null(tb_case_media_type_for_ext("jpeg"));
  assert_null(tb_case_media_type_for_ext("PDF"));
  assert_null(tb_case_media_type_for_ext(".pdf"));
  assert_null(tb_case_media_type_for_ext(NULL));
  assert_string_equal(tb_case_media_extn("text/plainXYZ", 10), "txt");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(resident_id_known_answers),
      cmocka_unit_test(resident_id_rejects_bad_shapes),
      cmocka_unit_test(uscc_known_answers),
      cmocka_unit_test(uscc_rejects_forbidden_letters_and_shapes),
      cmocka_unit_test(division_codes),
      cmocka_unit_test(phones),
      cmocka_unit_test(other_id_documents),
      cmocka_unit_test(calendar),
      cmocka_unit_test(rfc3339_known_answers),
      cmocka_unit_test(media_table),
  };
  return cmocka_run_group_tests_name("case_idcheck", tests, NULL, NULL);
}
