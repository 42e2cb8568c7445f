/*
 * api/ratelimit.h — per-client token buckets for the local API (SPEC §10).
 *
 * One bucket per key (an authenticated client name, or the peer IP of an
 * unauthenticated request), refilled at rate_per_s tokens a second up to
 * burst. The table is bounded: it holds at most `capacity` keys (at most
 * TB_RATELIMIT_MAX_ENTRIES) and evicts the least recently used one when a new
 * key arrives at a full table (the evicted key starts again with a full
 * bucket). All storage is inside the struct: no allocation, nothing to free.
 *
 * Time is passed in (milliseconds from a monotonic clock, e.g. uv_now()), so
 * tests drive it. Not thread-safe: the loop thread only.
 */
#ifndef TB_API_RATELIMIT_H
#define TB_API_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#define TB_RATELIMIT_MAX_ENTRIES 1024
#define TB_RATELIMIT_KEY_MAX 80 /* bytes with the '\0'; longer keys are truncated */

struct tb_ratelimit_entry {
  char key[TB_RATELIMIT_KEY_MAX];
  double tokens;      /* tokens left at last_ms */
  uint64_t last_ms;   /* when tokens was last brought up to date */
  int32_t lru_prev;   /* toward most recently used; -1: none */
  int32_t lru_next;   /* toward least recently used; -1: none */
  int32_t hash_next;  /* next entry in the same hash bucket; -1: none */
};

struct tb_ratelimit {
  uint32_t rate_per_s;  /* 0: off (every take is allowed, nothing stored) */
  uint32_t burst;       /* bucket size (>= 1 when on) */
  size_t capacity;      /* keys kept at most (1..TB_RATELIMIT_MAX_ENTRIES) */
  size_t count;         /* keys held now */
  int32_t lru_head;     /* most recently used; -1: empty */
  int32_t lru_tail;     /* least recently used; -1: empty */
  int32_t buckets[2 * TB_RATELIMIT_MAX_ENTRIES]; /* hash → first entry; -1: none */
  struct tb_ratelimit_entry entries[TB_RATELIMIT_MAX_ENTRIES];
};

/* Sets up rl. rate_per_s 0 turns limiting off. burst 0 is taken as 1;
 * capacity 0 or above TB_RATELIMIT_MAX_ENTRIES is taken as the maximum. */
void tb_ratelimit_init(struct tb_ratelimit *rl, uint32_t rate_per_s, uint32_t burst,
                       size_t capacity);

/* Takes one token from key's bucket at now_ms. Returns 0 when the request is
 * allowed, else the whole seconds (>= 1) until one token is available again,
 * for Retry-After. A refused request takes nothing. */
uint32_t tb_ratelimit_take(struct tb_ratelimit *rl, const char *key, uint64_t now_ms);

/* Whether key currently has a bucket (for tests). */
int tb_ratelimit_has(const struct tb_ratelimit *rl, const char *key);

#endif
