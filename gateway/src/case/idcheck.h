/*
 * case/idcheck.h — check characters and formats of the identifiers a
 * canonical case carries: GB 11643 resident ID numbers (ISO 7064 MOD 11-2),
 * GB 32100-2015 unified social credit codes, GB/T 2260 division codes and the
 * document numbers of the other national ID types (passport, HK/Macao and
 * Taiwan travel permits).
 *
 * Everything here is pure: no allocation, no global state, safe from any
 * thread. Inputs are borrowed (pointer + length, no NUL needed) and never
 * copied or logged. The *_valid() functions are predicates: they return 1 if
 * the identifier is valid and 0 if not (they cannot fail otherwise). The
 * *_check() functions say why an identifier is invalid, for the validator's
 * violation codes.
 */
#ifndef TB_CASE_IDCHECK_H
#define TB_CASE_IDCHECK_H

#include <stddef.h>
#include <stdint.h>

/* Why an identifier is invalid; TB_IDCHECK_OK (0) when it is valid. */
enum tb_idcheck {
  TB_IDCHECK_OK = 0,
  TB_IDCHECK_FORMAT,      /* wrong length or a character outside the charset */
  TB_IDCHECK_LOWER_X,     /* resident ID ends in 'x': the X must be upper case */
  TB_IDCHECK_DIVISION,    /* first 6 digits are not a known province prefix */
  TB_IDCHECK_BIRTH_DATE,  /* not a real date, before 1900-01-01 or after today */
  TB_IDCHECK_CHECK_CHAR   /* the check character does not match */
};

/*
 * Resident ID number (GB 11643-1999, id_type 111): exactly 18 characters,
 * 17 digits and a check character 0-9 or upper-case X (ISO 7064 MOD 11-2,
 * weights 7,9,10,5,8,4,2,1,6,3,7,9,10,5,8,4,2). A lower-case x is rejected:
 * partner platforms compare ID numbers byte for byte and several reject it.
 * Positions 1-2 must be a province-level prefix (tb_division_code_valid);
 * positions 7-14 a real Gregorian date from 1900-01-01 up to and including
 * "today" in China Standard Time (UTC+8).
 *
 * tb_resident_id_check() takes "today" explicitly as the number of days since
 * 1970-01-01 (see tb_cst_today()), so that tests and replays are
 * deterministic; tb_resident_id_valid() uses the current clock.
 */
enum tb_idcheck tb_resident_id_check(const char *s, size_t len, int64_t today_days);
int tb_resident_id_valid(const char *s, size_t len);

/*
 * Unified social credit code (GB 32100-2015, id_type 001): exactly 18
 * characters from 0-9 A-H J-N P-R T U W-Y (no I O S V Z, upper case only),
 * the 18th being the MOD 31 check character over the first 17 with weights
 * 1,3,9,27,19,26,16,17,20,29,25,13,8,24,10,30,28. The registration-authority,
 * organisation-type and embedded GB 11714 code are deliberately not checked:
 * codes issued to individual businesses do not always follow GB 11714, and
 * the check character already catches typos.
 */
enum tb_idcheck tb_uscc_check(const char *s, size_t len);
int tb_uscc_valid(const char *s, size_t len);

/*
 * Division code (GB/T 2260): exactly 6 ASCII digits whose first two are a
 * province-level code: 11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81, 82.
 * Prefecture and county digits are not checked against the (yearly changing)
 * code list.
 */
int tb_division_code_valid(const char *s, size_t len);

/* Passport number (id_type 414), any issuing state: 5-20 characters of
 * upper-case A-Z and 0-9 (ICAO 9303 document numbers, including the long
 * forms some states use). */
int tb_passport_number_valid(const char *s, size_t len);

/* Mainland Travel Permit for Hong Kong and Macao Residents (id_type 516):
 * H or M followed by 8 digits (card, since 2013) or 10 digits (booklet). */
int tb_hkmo_permit_valid(const char *s, size_t len);

/* Mainland Travel Permit for Taiwan Residents (id_type 511): 8 digits (card,
 * since 2015) or 10 digits (booklet number with its 2-digit issue count,
 * written without parentheses). */
int tb_tw_permit_valid(const char *s, size_t len);

/*
 * Mainland phone number: mobile 1[3-9] followed by 9 digits (11 digits), or
 * fixed line 0 + 2-3 digit area code, an optional single '-', and a 7-8 digit
 * subscriber number. No spaces, no +86, no extension.
 */
int tb_phone_valid(const char *s, size_t len);

/* Today's date in China Standard Time (UTC+8), as days since 1970-01-01, for
 * a Unix time in seconds. */
int64_t tb_cst_today(int64_t unix_s);

/* Days since 1970-01-01 of a proleptic Gregorian date (any year, month 1-12,
 * day 1-31; no range check), and whether a date exists in the calendar. */
int64_t tb_days_from_civil(int64_t y, int m, int d);
int tb_civil_date_valid(int64_t y, int m, int d);

#endif
