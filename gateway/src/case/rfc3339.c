/* case/rfc3339.c — strict RFC 3339 date-time parsing (see rfc3339.h). */
#include "case/rfc3339.h"

#include "case/idcheck.h"
#include "tbgw/error.h"

/* Reads n digits at s into *v; 0 if any is not a digit. */
static int digits(const char *s, int n, int *v) {
  int x = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    x = x * 10 + (s[i] - '0');
  }
  *v = x;
  return 1;
}

int tb_rfc3339_parse(const char *s, size_t len, int64_t *unix_ms_out, int *offset_minutes_out) {
  int y, mo, d, h, mi, sec, ms = 0, off = 0;
  /* "YYYY-MM-DDThh:mm:ss" is 19 characters, the shortest offset "Z" one. */
  if (s == NULL || len < 20) return TB_EPARSE;
  if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
      !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2, &h) ||
      s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
    return TB_EPARSE;
  if (!tb_civil_date_valid(y, mo, d) || h > 23 || mi > 59 || sec > 59) return TB_EPARSE;

  size_t i = 19;
  if (s[i] == '.') {
    size_t start = ++i;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
      if (i - start < 3) ms = ms * 10 + (s[i] - '0');
      i++;
    }
    size_t n = i - start;
    if (n == 0 || n > 9) return TB_EPARSE;
    for (; n < 3; n++) ms *= 10;
  }
  if (i >= len) return TB_EPARSE; /* the offset is mandatory */
  if (s[i] == 'Z' || s[i] == 'z') {
    i++;
  } else if (s[i] == '+' || s[i] == '-') {
    int oh, om;
    if (len - i < 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
        !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
      return TB_EPARSE;
    off = (oh * 60 + om) * (s[i] == '-' ? -1 : 1);
    i += 6;
  } else {
    return TB_EPARSE;
  }
  if (i != len) return TB_EPARSE;

  int64_t secs = tb_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off * 60;
  if (unix_ms_out != NULL) *unix_ms_out = secs * 1000 + ms;
  if (offset_minutes_out != NULL) *offset_minutes_out = off;
  return 0;
}
