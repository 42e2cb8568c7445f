/*
 * delivery/circuit.h — a per-partner circuit breaker.
 *
 * After `failure_threshold` consecutive failures that say "the partner is not
 * well" (transport errors, timeouts, 5xx, busy codes — not a permanent
 * refusal of one message, which says nothing about the partner's health) the
 * circuit opens: nothing is sent for `open_ms`. Then it is half-open: one
 * probe message may go; its success closes the circuit, its failure opens it
 * again for twice as long (up to max_open_ms). This stops a gateway from
 * hammering a partner that is down and lets it find out quickly, with one
 * message, when the partner is back.
 *
 * Pure state machine; time is passed in. Loop thread only.
 */
#ifndef TB_DELIVERY_CIRCUIT_H
#define TB_DELIVERY_CIRCUIT_H

#include <stdint.h>

enum tb_circuit_state { TB_CIRCUIT_CLOSED = 0, TB_CIRCUIT_OPEN = 1, TB_CIRCUIT_HALF_OPEN = 2 };

struct tb_circuit {
  enum tb_circuit_state state;
  uint32_t failure_threshold;
  int64_t base_open_ms;
  int64_t max_open_ms;
  int64_t open_ms;        /* current open period */
  uint32_t failures;      /* consecutive */
  int64_t open_until_ms;
  int probe_in_flight;
};

void tb_circuit_init(struct tb_circuit *c, uint32_t failure_threshold, int64_t open_ms,
                     int64_t max_open_ms);

/* May a message be sent now? In half-open state the first yes reserves the
 * probe; further calls say no until its outcome is recorded. */
int tb_circuit_allow(struct tb_circuit *c, int64_t now_ms);

/* When the circuit will next allow a send (now if it already does). */
int64_t tb_circuit_next_allowed_ms(const struct tb_circuit *c, int64_t now_ms);

void tb_circuit_success(struct tb_circuit *c);
/* A failure that reflects the partner's health. Returns 1 if this opened
 * the circuit (for logs and metrics). */
int tb_circuit_failure(struct tb_circuit *c, int64_t now_ms);

/* Opens the circuit now whatever its state (a connection probe found the
 * partner unreachable): from half-open, or open with its period run out, the
 * period doubles as after a failed probe message. Returns 1 if the circuit
 * was closed (it has just opened). */
int tb_circuit_trip(struct tb_circuit *c, int64_t now_ms);

/* Gives back a half-open probe reservation that was not used (nothing was
 * due to send as the probe). */
void tb_circuit_release(struct tb_circuit *c);

const char *tb_circuit_state_name(enum tb_circuit_state s);

#endif
