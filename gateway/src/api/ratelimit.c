/*
 * Per-client token buckets: a fixed table with a hash index and an LRU list.
 */
#include "api/ratelimit.h"

#include <math.h>
#include <string.h>

#define NBUCKETS (2 * TB_RATELIMIT_MAX_ENTRIES)

static uint32_t hash_key(const char *s) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 16777619u;
  }
  return h % NBUCKETS;
}

void tb_ratelimit_init(struct tb_ratelimit *rl, uint32_t rate_per_s, uint32_t burst,
                       size_t capacity) {
  rl->rate_per_s = rate_per_s;
  rl->burst = burst ? burst : 1;
  rl->capacity =
      capacity == 0 || capacity > TB_RATELIMIT_MAX_ENTRIES ? TB_RATELIMIT_MAX_ENTRIES : capacity;
  rl->count = 0;
  rl->lru_head = rl->lru_tail = -1;
  for (size_t i = 0; i < NBUCKETS; i++) rl->buckets[i] = -1;
}

static void copy_key(char dst[TB_RATELIMIT_KEY_MAX], const char *key) {
  size_t n = strlen(key);
  if (n >= TB_RATELIMIT_KEY_MAX) n = TB_RATELIMIT_KEY_MAX - 1;
  memcpy(dst, key, n);
  dst[n] = '\0';
}

static int32_t find(const struct tb_ratelimit *rl, const char *k) {
  for (int32_t i = rl->buckets[hash_key(k)]; i >= 0; i = rl->entries[i].hash_next)
    if (strcmp(rl->entries[i].key, k) == 0) return i;
  return -1;
}

static void lru_unlink(struct tb_ratelimit *rl, int32_t i) {
  struct tb_ratelimit_entry *e = &rl->entries[i];
  if (e->lru_prev >= 0) rl->entries[e->lru_prev].lru_next = e->lru_next;
  else rl->lru_head = e->lru_next;
  if (e->lru_next >= 0) rl->entries[e->lru_next].lru_prev = e->lru_prev;
  else rl->lru_tail = e->lru_prev;
  e->lru_prev = e->lru_next = -1;
}

static void lru_push_front(struct tb_ratelimit *rl, int32_t i) {
  struct tb_ratelimit_entry *e = &rl->entries[i];
  e->lru_prev = -1;
  e->lru_next = rl->lru_head;
  if (rl->lru_head >= 0) rl->entries[rl->lru_head].lru_prev = i;
  rl->lru_head = i;
  if (rl->lru_tail < 0) rl->lru_tail = i;
}

static void hash_remove(struct tb_ratelimit *rl, int32_t i) {
  int32_t *p = &rl->buckets[hash_key(rl->entries[i].key)];
  while (*p >= 0 && *p != i) p = &rl->entries[*p].hash_next;
  if (*p == i) *p = rl->entries[i].hash_next;
  rl->entries[i].hash_next = -1;
}

/* A slot for a new key: a free one, else the least recently used one. */
static int32_t claim(struct tb_ratelimit *rl, const char *k, uint64_t now_ms) {
  int32_t i;
  if (rl->count < rl->capacity) {
    i = (int32_t)rl->count++;
  } else {
    i = rl->lru_tail;
    lru_unlink(rl, i);
    hash_remove(rl, i);
  }
  struct tb_ratelimit_entry *e = &rl->entries[i];
  memcpy(e->key, k, sizeof e->key);
  e->tokens = (double)rl->burst;
  e->last_ms = now_ms;
  uint32_t b = hash_key(e->key);
  e->hash_next = rl->buckets[b];
  rl->buckets[b] = i;
  lru_push_front(rl, i);
  return i;
}

uint32_t tb_ratelimit_take(struct tb_ratelimit *rl, const char *key, uint64_t now_ms) {
  if (rl->rate_per_s == 0) return 0;
  char k[TB_RATELIMIT_KEY_MAX];
  copy_key(k, key);
  int32_t i = find(rl, k);
  if (i < 0) {
    i = claim(rl, k, now_ms);
  } else {
    lru_unlink(rl, i);
    lru_push_front(rl, i);
  }
  struct tb_ratelimit_entry *e = &rl->entries[i];
  if (now_ms > e->last_ms) {
    e->tokens += (double)(now_ms - e->last_ms) * (double)rl->rate_per_s / 1000.0;
    if (e->tokens > (double)rl->burst) e->tokens = (double)rl->burst;
  }
  /* A clock that went backwards (it should not) refills nothing. */
  if (now_ms > e->last_ms) e->last_ms = now_ms;
  if (e->tokens >= 1.0) {
    e->tokens -= 1.0;
    return 0;
  }
  double wait_s = ceil((1.0 - e->tokens) / (double)rl->rate_per_s);
  return wait_s < 1.0 ? 1u : (uint32_t)wait_s;
}

int tb_ratelimit_has(const struct tb_ratelimit *rl, const char *key) {
  char k[TB_RATELIMIT_KEY_MAX];
  copy_key(k, key);
  return find(rl, k) >= 0;
}
