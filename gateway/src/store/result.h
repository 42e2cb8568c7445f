/*
 * store/result.h — builds a read result (a case view with its timeline, or a
 * page of events) into one heap block, so that the loop thread frees a result
 * with a single free() after the callback. Internal to store/.
 *
 * A backend appends rows while it steps its query; strings are copied into a
 * scratch area that the builder keeps (and reuses, already grown, for the next
 * result), and records hold offsets. tb__res_events()/tb__res_case_view() then
 * size the final block exactly, copy, and turn offsets into pointers:
 *
 *   [struct tb_store_case_view][struct tb_store_event x n][strings...]
 *
 * Used on the storage thread only. After an allocation failure every later
 * call is a no-op and the finishing call returns NULL (TB_ENOMEM).
 */
#ifndef TB_STORE_RESULT_H
#define TB_STORE_RESULT_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define TB__RES_NULL SIZE_MAX /* offset of a NULL string */

struct tb__res_event {
  int64_t seq, at_ms;
  size_t kind, case_id, partner, status, detail; /* offsets into str */
};

struct tb__res_builder {
  struct tb__res_event *ev;
  size_t nev, ev_cap;
  char *str;
  size_t str_len, str_cap;
  int oom;
  /* case header, filled by tb__res_case() */
  size_t case_id, partner, origin_region, target_region, status, receipt_no, last_error;
  int64_t created_ms, updated_ms;
};

void tb__res_init(struct tb__res_builder *b);
void tb__res_fini(struct tb__res_builder *b);
/* Starts a new result; keeps the scratch memory. */
void tb__res_reset(struct tb__res_builder *b);
/* Copies s (len bytes, NUL added); returns its offset, TB__RES_NULL for NULL. */
size_t tb__res_str(struct tb__res_builder *b, const char *s, size_t len);
/* Appends an event record; the string arguments are offsets from tb__res_str. */
void tb__res_event(struct tb__res_builder *b, const struct tb__res_event *e);

/* Finishes the page of events: one malloc'd block (NULL and *n = 0 for an
 * empty page). Returns TB_ENOMEM if any step failed, else 0. */
int tb__res_events(struct tb__res_builder *b, struct tb_store_event **out, size_t *n);
/* Finishes a case view whose header fields were set in b and whose events
 * are the timeline. */
int tb__res_case_view(struct tb__res_builder *b, struct tb_store_case_view **out);

#endif
