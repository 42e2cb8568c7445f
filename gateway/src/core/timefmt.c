/* Wall-clock helpers (see timefmt.h). */
#include "core/timefmt.h"

#include <stdio.h>
#include <time.h>

int64_t tb_time_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *tb_time_format_bj(int64_t unix_ms, char *out) {
  /* Beijing has no daylight saving time: a fixed +8 h is exact. */
  int64_t ms = unix_ms + 8 * 3600 * 1000LL;
  time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
  int frac = (int)(ms - (int64_t)secs * 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  snprintf(out, TB_TIME_RFC3339_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03d+08:00",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return out;
}
