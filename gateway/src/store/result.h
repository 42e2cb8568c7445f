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
 * Results of other shapes (claimed messages, dead letters, evidence, an
 * inbound case with its timeline, ...) use the generic form below: an
 * optional head record and an array of row records of one public struct
 * type, whose pointer members are filled with tb__res_set() and turned from
 * offsets into pointers by tb__res_finish():
 *
 *   [head, padded to 16][row x n][strings and byte strings...]
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
  /* generic results */
  unsigned char *head;
  size_t head_size, head_cap;
  unsigned char *rows;
  size_t row_size, nrows, rows_cap; /* rows_cap in bytes */
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

/* ---- generic results ---------------------------------------------------- */

#define TB__RES_NONE SIZE_MAX /* "no such member" in a shape */

/* Starts the head record: size bytes, zeroed (pointer members NULL).
 * Returns it, or NULL after an allocation failure. */
void *tb__res_head(struct tb__res_builder *b, size_t size);
/* Appends a zeroed row of size bytes (every row of a result has the same
 * size). The pointer stays valid until the next tb__res_row(). */
void *tb__res_row(struct tb__res_builder *b, size_t size);
/* Row i while building (i < b->nrows). */
void *tb__res_row_at(struct tb__res_builder *b, size_t i);
/* Sets the pointer member at byte offset member of rec (the head or a row
 * of b) to a copy of s: len bytes plus a NUL, so text and binary both work.
 * s NULL leaves the member NULL. */
void tb__res_set(struct tb__res_builder *b, void *rec, size_t member, const void *s, size_t len);
/* Reads a member set by tb__res_set back while building (NULL if unset). */
const char *tb__res_get(const struct tb__res_builder *b, const void *rec, size_t member);

/* Which members of the head and of each row are pointers set with
 * tb__res_set; head_rows/head_nrows are the offsets in the head of the
 * `const T *` that points at the rows and of the size_t that counts them
 * (TB__RES_NONE if the head has no such members). */
struct tb__res_shape {
  size_t head_size; /* 0: no head, the block starts with the rows */
  const size_t *head_ptrs;
  size_t n_head_ptrs;
  size_t head_rows, head_nrows;
  size_t row_size;
  const size_t *row_ptrs;
  size_t n_row_ptrs;
};

/* Finishes a generic result into one malloc'd block: *block is the head (or
 * the first row when there is no head), NULL for a headless empty result;
 * *nrows the number of rows. Returns TB_ENOMEM if any step failed, else 0. */
int tb__res_finish(struct tb__res_builder *b, const struct tb__res_shape *shape, void **block,
                   size_t *nrows);

#endif
