/*
 * delivery/backoff.h — when to try a message again.
 *
 * Exponential back-off with "equal jitter": the n-th retry waits a random
 * time between half and all of min(max, initial * 2^(n-1)), so retries of
 * many messages after one outage spread out instead of arriving together,
 * and no retry comes almost at once. A partner's Retry-After is a floor: we
 * never come back earlier than it asked (capped at a day, so a typo in a
 * partner's header cannot park a message for years).
 */
#ifndef TB_DELIVERY_BACKOFF_H
#define TB_DELIVERY_BACKOFF_H

#include <stdint.h>

#define TB_BACKOFF_RETRY_AFTER_CAP_MS (24 * 3600 * 1000LL)

struct tb_backoff_policy {
  int64_t initial_ms; /* > 0 */
  int64_t max_ms;     /* >= initial_ms */
};

/* Delay before attempt `attempt + 1` after `attempt` failed attempts
 * (attempt >= 1). random01 is a uniform number in [0, 1) (injected so tests
 * are exact). retry_after_ms < 0 means none. */
int64_t tb_backoff_delay_ms(const struct tb_backoff_policy *p, uint32_t attempt,
                            int64_t retry_after_ms, double random01);

#endif
