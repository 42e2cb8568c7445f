/*
 * case/idcheck.c — check characters and formats of resident IDs, unified
 * social credit codes, division codes, permits, passports and phone numbers.
 * Plain byte loops: these run for every case on the hot path, and the formats
 * are simple enough that a regex engine would only add cost and a dependency.
 */
#include "case/idcheck.h"

#include <time.h>

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_upper(char c) { return c >= 'A' && c <= 'Z'; }

static int all_digits(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!is_digit(s[i])) return 0;
  return 1;
}

/* Two-digit number at s (both known to be digits). */
static int num2(const char *s) { return (s[0] - '0') * 10 + (s[1] - '0'); }

int64_t tb_days_from_civil(int64_t y, int m, int d) {
  /* Howard Hinnant's days_from_civil: exact for the proleptic Gregorian
   * calendar, no tables, no time zone database. */
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int tb_civil_date_valid(int64_t y, int m, int d) {
  static const unsigned char mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (m < 1 || m > 12 || d < 1) return 0;
  int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  int max = mdays[m - 1] + (m == 2 && leap);
  return d <= max;
}

int64_t tb_cst_today(int64_t unix_s) {
  int64_t t = unix_s + 8 * 3600;
  /* floor division: correct for times before 1970 too */
  return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

int tb_division_code_valid(const char *s, size_t len) {
  if (s == NULL || len != 6 || !all_digits(s, 6)) return 0;
  int p = num2(s);
  return (p >= 11 && p <= 15) || (p >= 21 && p <= 23) || (p >= 31 && p <= 37) ||
         (p >= 41 && p <= 46) || (p >= 50 && p <= 54) || (p >= 61 && p <= 65) ||
         p == 71 || p == 81 || p == 82;
}

enum tb_idcheck tb_resident_id_check(const char *s, size_t len, int64_t today_days) {
  static const unsigned char weight[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};
  static const char check[11] = {'1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'};

  if (s == NULL || len != 18 || !all_digits(s, 17)) return TB_IDCHECK_FORMAT;
  if (s[17] == 'x') return TB_IDCHECK_LOWER_X;
  if (!is_digit(s[17]) && s[17] != 'X') return TB_IDCHECK_FORMAT;
  if (!tb_division_code_valid(s, 6)) return TB_IDCHECK_DIVISION;

  int y = num2(s + 6) * 100 + num2(s + 8), m = num2(s + 10), d = num2(s + 12);
  if (y < 1900 || !tb_civil_date_valid(y, m, d) || tb_days_from_civil(y, m, d) > today_days)
    return TB_IDCHECK_BIRTH_DATE;

  unsigned sum = 0;
  for (int i = 0; i < 17; i++) sum += (unsigned)(s[i] - '0') * weight[i];
  return s[17] == check[sum % 11] ? TB_IDCHECK_OK : TB_IDCHECK_CHECK_CHAR;
}

int tb_resident_id_valid(const char *s, size_t len) {
  return tb_resident_id_check(s, len, tb_cst_today((int64_t)time(NULL))) == TB_IDCHECK_OK;
}

/* The GB 32100 charset; a character's index is its value in the checksum. */
static const char uscc_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";

/* Value of a USCC character (0..30), or -1 outside the GB 32100 charset. */
static int uscc_value(char c) {
  if (is_digit(c)) return c - '0';
  if (!is_upper(c)) return -1;
  for (int i = 10; i < 31; i++)
    if (uscc_alphabet[i] == c) return i;
  return -1; /* I O S V Z */
}

enum tb_idcheck tb_uscc_check(const char *s, size_t len) {
  static const unsigned char weight[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20,
                                           29, 25, 13, 8, 24, 10, 30, 28};
  if (s == NULL || len != 18) return TB_IDCHECK_FORMAT;
  unsigned sum = 0;
  for (int i = 0; i < 18; i++) {
    int v = uscc_value(s[i]);
    if (v < 0) return TB_IDCHECK_FORMAT;
    if (i < 17) sum += (unsigned)v * weight[i];
  }
  unsigned c = (31 - sum % 31) % 31;
  return s[17] == uscc_alphabet[c] ? TB_IDCHECK_OK : TB_IDCHECK_CHECK_CHAR;
}

int tb_uscc_valid(const char *s, size_t len) { return tb_uscc_check(s, len) == TB_IDCHECK_OK; }

int tb_passport_number_valid(const char *s, size_t len) {
  if (s == NULL || len < 5 || len > 20) return 0;
  for (size_t i = 0; i < len; i++)
    if (!is_digit(s[i]) && !is_upper(s[i])) return 0;
  return 1;
}

int tb_hkmo_permit_valid(const char *s, size_t len) {
  if (s == NULL || (len != 9 && len != 11)) return 0;
  return (s[0] == 'H' || s[0] == 'M') && all_digits(s + 1, len - 1);
}

int tb_tw_permit_valid(const char *s, size_t len) {
  if (s == NULL || (len != 8 && len != 10)) return 0;
  return all_digits(s, len);
}

int tb_phone_valid(const char *s, size_t len) {
  if (s == NULL || len < 2) return 0;
  if (s[0] == '1') /* mobile: 1[3-9]\d{9} */
    return len == 11 && s[1] >= '3' && s[1] <= '9' && all_digits(s, 11);
  if (s[0] != '0') return 0;
  /* fixed line: 0\d{2,3}-?\d{7,8}. Without the dash the split between area
   * code and subscriber number is ambiguous, so accept any split: the total
   * is 1 + (2..3) + (7..8) = 10..12 digits. With the dash, it must sit after
   * 3 or 4 characters and leave 7..8 digits. */
  const char *dash = NULL;
  for (size_t i = 0; i < len; i++)
    if (s[i] == '-') { dash = s + i; break; }
  if (dash == NULL) return len >= 10 && len <= 12 && all_digits(s, len);
  size_t area = (size_t)(dash - s), sub = len - area - 1;
  return (area == 3 || area == 4) && (sub == 7 || sub == 8) && all_digits(s, area) &&
         all_digits(dash + 1, sub);
}
