/*
 * case/rfc3339.h — strict RFC 3339 date-time parser (section 5.6 "date-time").
 *
 * Accepts exactly YYYY-MM-DD "T" hh:mm:ss [ "." 1-9 digits ] ( "Z" | ±hh:mm ),
 * where T and Z may also be lower case (RFC 3339 section 5.6, NOTE). The
 * offset is mandatory: a local time without one is ambiguous across the
 * partners' time zones. The date must exist in the Gregorian calendar (no
 * February 30, February 29 only in leap years). Rejected although some
 * readings of RFC 3339 allow them: a space instead of T, leap seconds
 * (ss = 60: POSIX time cannot represent them and no partner format carries
 * them), more than 9 fraction digits, offsets beyond ±23:59. "-00:00" is
 * accepted and means UTC.
 *
 * Pure, thread-safe, no allocation; s need not be NUL-terminated.
 */
#ifndef TB_CASE_RFC3339_H
#define TB_CASE_RFC3339_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parses s[0..len). On success returns 0 and stores, when the pointers are
 * not NULL, the instant as Unix milliseconds (fraction truncated to ms) and
 * the written offset in minutes east of UTC (+08:00 -> 480). Returns
 * TB_EPARSE for anything else, leaving the outputs untouched.
 */
int tb_rfc3339_parse(const char *s, size_t len, int64_t *unix_ms_out, int *offset_minutes_out);

#endif
