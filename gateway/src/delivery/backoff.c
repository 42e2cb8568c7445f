/* Retry delays (see backoff.h). */
#include "delivery/backoff.h"

int64_t tb_backoff_delay_ms(const struct tb_backoff_policy *p, uint32_t attempt,
                            int64_t retry_after_ms, double random01) {
  int64_t cap = p->max_ms > p->initial_ms ? p->max_ms : p->initial_ms;
  int64_t base = p->initial_ms > 0 ? p->initial_ms : 1;
  /* Doubling stops at the cap, so no shift can overflow. */
  for (uint32_t i = 1; i < attempt && base < cap; i++) base *= 2;
  if (base > cap) base = cap;
  if (random01 < 0) random01 = 0;
  if (random01 >= 1) random01 = 0.999999;
  int64_t half = base / 2;
  int64_t delay = half + (int64_t)((double)(base - half) * random01);
  if (retry_after_ms >= 0) {
    int64_t floor = retry_after_ms < TB_BACKOFF_RETRY_AFTER_CAP_MS ? retry_after_ms
                                                                   : TB_BACKOFF_RETRY_AFTER_CAP_MS;
    if (delay < floor) delay = floor;
  }
  return delay;
}
