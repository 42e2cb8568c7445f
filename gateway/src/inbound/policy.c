/*
 * The partner listener's pure decisions (inbound/policy.h): path → partner
 * and adapter route, the replay window, our receipt numbers.
 */
#include "inbound/policy.h"

#include <stdio.h>
#include <string.h>

#define PREFIX "/partners/"

int tb_inbound_path_split(const char *path, char partner[TB_INBOUND_PARTNER_MAX + 1],
                          const char **rest) {
  size_t pl = sizeof PREFIX - 1;
  partner[0] = '\0';
  *rest = NULL;
  if (path == NULL || strncmp(path, PREFIX, pl) != 0) return -1;
  const char *name = path + pl;
  size_t n = 0;
  while (name[n] != '\0' && name[n] != '/') {
    char c = name[n];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return -1;
    if (++n > TB_INBOUND_PARTNER_MAX) return -1;
  }
  if (n == 0) return -1;
  memcpy(partner, name, n);
  partner[n] = '\0';
  *rest = name + n;
  return 0;
}

static void allow_add(char *allow, size_t size, const char *method) {
  if (size == 0) return;
  size_t used = strlen(allow);
  /* Each method once, even if a table lists a path twice. */
  for (const char *p = allow; (p = strstr(p, method)) != NULL; p++) {
    size_t ml = strlen(method);
    if ((p == allow || p[-1] == ' ') && (p[ml] == ',' || p[ml] == '\0')) return;
  }
  /* Whole methods only: a truncated name would be a wrong Allow header. */
  size_t need = (used ? 2 : 0) + strlen(method);
  if (used + need >= size) return;
  snprintf(allow + used, size - used, "%s%s", used ? ", " : "", method);
}

enum tb_inbound_route_result tb_inbound_route_find(const struct tb_inbound_route *routes,
                                                   size_t count, const char *method,
                                                   const char *rest, char *allow,
                                                   size_t allow_size) {
  enum tb_inbound_route_result r = TB_INBOUND_ROUTE_NONE;
  if (allow_size) allow[0] = '\0';
  if (rest == NULL || method == NULL) return r;
  for (size_t i = 0; i < count; i++) {
    if (routes[i].path == NULL || routes[i].method == NULL) continue;
    if (strcmp(routes[i].path, rest) != 0) continue;
    if (strcmp(routes[i].method, method) == 0) return TB_INBOUND_ROUTE_OK;
    r = TB_INBOUND_ROUTE_METHOD;
    allow_add(allow, allow_size, routes[i].method);
  }
  return r;
}

int tb_inbound_window_ok(int64_t now_ms, int64_t sent_ms, uint32_t window_s) {
  if (sent_ms == 0) return 1;
  int64_t w = (int64_t)window_s * 1000;
  /* Compared without computing now - sent, which a hostile timestamp near
   * INT64_MIN would overflow. */
  if (sent_ms < now_ms) return now_ms - w <= sent_ms;
  return sent_ms - w <= now_ms;
}

/* Days since 1970-01-01 → civil date (Howard Hinnant's days_from_civil
 * inverse; proleptic Gregorian). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t yy = (int64_t)yoe + era * 400;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = yy + (*m <= 2);
}

int tb_inbound_beijing_day(int64_t unix_ms, int32_t *yyyymmdd, int64_t *ms_of_day) {
  /* 1970-01-01 .. 9999-12-31 */
  if (unix_ms < 0 || unix_ms > INT64_C(253402300799999)) return TB_EINVAL;
  int64_t bj = unix_ms + INT64_C(8) * 3600 * 1000;
  int64_t days = bj / 86400000;
  int64_t y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  if (y > 9999) return TB_EINVAL;
  *yyyymmdd = (int32_t)(y * 10000 + m * 100 + d);
  *ms_of_day = bj - days * 86400000;
  return 0;
}

void tb_inbound_receipts_init(struct tb_inbound_receipts *r, const char *region) {
  memset(r, 0, sizeof *r);
  snprintf(r->region, sizeof r->region, "%s", region ? region : "");
}

int tb_inbound_receipt_next(struct tb_inbound_receipts *r, int64_t now_ms,
                            char out[TB_INBOUND_RECEIPT_MAX]) {
  int32_t day;
  int64_t ms;
  out[0] = '\0';
  if (tb_inbound_beijing_day(now_ms, &day, &ms) != 0) return TB_EINVAL;
  uint32_t seq = (uint32_t)(ms / 100);
  /* A new day starts from the clock; the same (or, after the clock stepped
   * back, an earlier) day continues above the last number. */
  if (r->day != 0 && day <= r->day) {
    if (seq <= r->last) seq = r->last + 1;
    day = r->day;
  }
  r->day = day;
  r->last = seq;
  snprintf(out, TB_INBOUND_RECEIPT_MAX, "%s-SL-%08d-%06u", r->region, (int)day, (unsigned)seq);
  return 0;
}
