/* Per-partner circuit breaker (see circuit.h). */
#include "delivery/circuit.h"

void tb_circuit_init(struct tb_circuit *c, uint32_t failure_threshold, int64_t open_ms,
                     int64_t max_open_ms) {
  c->state = TB_CIRCUIT_CLOSED;
  c->failure_threshold = failure_threshold ? failure_threshold : 1;
  c->base_open_ms = open_ms > 0 ? open_ms : 1;
  c->max_open_ms = max_open_ms > c->base_open_ms ? max_open_ms : c->base_open_ms;
  c->open_ms = c->base_open_ms;
  c->failures = 0;
  c->open_until_ms = 0;
  c->probe_in_flight = 0;
}

int tb_circuit_allow(struct tb_circuit *c, int64_t now_ms) {
  if (c->state == TB_CIRCUIT_OPEN && now_ms >= c->open_until_ms) {
    c->state = TB_CIRCUIT_HALF_OPEN;
    c->probe_in_flight = 0;
  }
  switch (c->state) {
  case TB_CIRCUIT_CLOSED: return 1;
  case TB_CIRCUIT_OPEN: return 0;
  case TB_CIRCUIT_HALF_OPEN:
    if (c->probe_in_flight) return 0;
    c->probe_in_flight = 1;
    return 1;
  }
  return 0;
}

int64_t tb_circuit_next_allowed_ms(const struct tb_circuit *c, int64_t now_ms) {
  if (c->state == TB_CIRCUIT_OPEN && c->open_until_ms > now_ms) return c->open_until_ms;
  return now_ms;
}

void tb_circuit_success(struct tb_circuit *c) {
  c->state = TB_CIRCUIT_CLOSED;
  c->failures = 0;
  c->open_ms = c->base_open_ms;
  c->probe_in_flight = 0;
}

int tb_circuit_failure(struct tb_circuit *c, int64_t now_ms) {
  if (c->state == TB_CIRCUIT_HALF_OPEN) {
    /* The probe failed: the partner is still not back. Wait longer. */
    c->open_ms = c->open_ms * 2 < c->max_open_ms ? c->open_ms * 2 : c->max_open_ms;
    c->state = TB_CIRCUIT_OPEN;
    c->open_until_ms = now_ms + c->open_ms;
    c->probe_in_flight = 0;
    return 1;
  }
  if (c->state == TB_CIRCUIT_OPEN) return 0; /* a straggler sent before it opened */
  if (++c->failures >= c->failure_threshold) {
    c->state = TB_CIRCUIT_OPEN;
    c->open_until_ms = now_ms + c->open_ms;
    return 1;
  }
  return 0;
}

int tb_circuit_trip(struct tb_circuit *c, int64_t now_ms) {
  /* An open period that has run out counts as half-open: this is the
   * failed trial, so the next period is longer. */
  if (c->state == TB_CIRCUIT_OPEN && now_ms >= c->open_until_ms) c->state = TB_CIRCUIT_HALF_OPEN;
  if (c->state == TB_CIRCUIT_HALF_OPEN) {
    tb_circuit_failure(c, now_ms);
    return 0;
  }
  int was_closed = c->state == TB_CIRCUIT_CLOSED;
  c->state = TB_CIRCUIT_OPEN;
  c->open_until_ms = now_ms + c->open_ms;
  c->probe_in_flight = 0;
  return was_closed;
}

void tb_circuit_release(struct tb_circuit *c) { c->probe_in_flight = 0; }

const char *tb_circuit_state_name(enum tb_circuit_state s) {
  switch (s) {
  case TB_CIRCUIT_CLOSED: return "closed";
  case TB_CIRCUIT_OPEN: return "open";
  case TB_CIRCUIT_HALF_OPEN: return "half-open";
  }
  return "unknown";
}
