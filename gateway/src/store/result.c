/*
 * Result builder: rows → one heap block per result (see store/result.h).
 * Backend-agnostic, so that a PostgreSQL backend materialises its results the
 * same way.
 */
#include "store/result.h"

#include <stdlib.h>
#include <string.h>

#include "tbgw/error.h"

void tb__res_init(struct tb__res_builder *b) {
  memset(b, 0, sizeof *b);
}

void tb__res_fini(struct tb__res_builder *b) {
  free(b->ev);
  free(b->str);
  free(b->head);
  free(b->rows);
  memset(b, 0, sizeof *b);
}

void tb__res_reset(struct tb__res_builder *b) {
  b->nev = 0;
  b->str_len = 0;
  b->oom = 0;
  b->case_id = b->partner = b->origin_region = b->target_region = TB__RES_NULL;
  b->status = b->receipt_no = b->last_error = TB__RES_NULL;
  b->created_ms = b->updated_ms = 0;
  b->head_size = 0;
  b->row_size = 0;
  b->nrows = 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 64;
  while (n < need) {
    if (n > SIZE_MAX / 2 / elem) return -1;
    n *= 2;
  }
  void *np = realloc(*p, n * elem);
  if (np == NULL) return -1;
  *p = np;
  *cap = n;
  return 0;
}

size_t tb__res_str(struct tb__res_builder *b, const char *s, size_t len) {
  if (s == NULL || b->oom) return TB__RES_NULL;
  if (len > SIZE_MAX - b->str_len - 1 ||
      grow((void **)&b->str, &b->str_cap, b->str_len + len + 1, 1) != 0) {
    b->oom = 1;
    return TB__RES_NULL;
  }
  size_t off = b->str_len;
  if (len > 0) memcpy(b->str + off, s, len);
  b->str[off + len] = '\0';
  b->str_len += len + 1;
  return off;
}

void tb__res_event(struct tb__res_builder *b, const struct tb__res_event *e) {
  if (b->oom) return;
  if (grow((void **)&b->ev, &b->ev_cap, b->nev + 1, sizeof *b->ev) != 0) {
    b->oom = 1;
    return;
  }
  b->ev[b->nev++] = *e;
}

static const char *at(const char *base, size_t off) {
  return off == TB__RES_NULL ? NULL : base + off;
}

/* Copies the events and strings behind a header of head_size bytes. */
static void *finish(struct tb__res_builder *b, size_t head_size, struct tb_store_event **evs) {
  if (b->oom) return NULL;
  size_t ev_bytes = b->nev * sizeof(struct tb_store_event);
  void *blk = malloc(head_size + ev_bytes + b->str_len + 1);
  if (blk == NULL) {
    b->oom = 1;
    return NULL;
  }
  struct tb_store_event *ev = (struct tb_store_event *)((char *)blk + head_size);
  char *str = (char *)blk + head_size + ev_bytes;
  if (b->str_len > 0) memcpy(str, b->str, b->str_len);
  for (size_t i = 0; i < b->nev; i++) {
    const struct tb__res_event *r = &b->ev[i];
    ev[i].seq = r->seq;
    ev[i].at_ms = r->at_ms;
    ev[i].kind = at(str, r->kind);
    ev[i].case_id = at(str, r->case_id);
    ev[i].partner = at(str, r->partner);
    ev[i].status = at(str, r->status);
    ev[i].detail = at(str, r->detail);
  }
  *evs = ev;
  return blk;
}

int tb__res_events(struct tb__res_builder *b, struct tb_store_event **out, size_t *n) {
  *out = NULL;
  *n = 0;
  if (b->oom) return TB_ENOMEM;
  if (b->nev == 0) return 0;
  struct tb_store_event *ev;
  void *blk = finish(b, 0, &ev);
  if (blk == NULL) return TB_ENOMEM;
  *out = ev;
  *n = b->nev;
  return 0;
}

int tb__res_case_view(struct tb__res_builder *b, struct tb_store_case_view **out) {
  *out = NULL;
  /* The view struct holds pointers and int64s: its size keeps the event
   * array that follows it aligned. */
  _Static_assert(sizeof(struct tb_store_case_view) % _Alignof(struct tb_store_event) == 0,
                 "events after the view must stay aligned");
  struct tb_store_event *ev;
  struct tb_store_case_view *v = finish(b, sizeof *v, &ev);
  if (v == NULL) return TB_ENOMEM;
  const char *str = (const char *)(ev + b->nev);
  v->case_id = at(str, b->case_id);
  v->partner = at(str, b->partner);
  v->origin_region = at(str, b->origin_region);
  v->target_region = at(str, b->target_region);
  v->status = at(str, b->status);
  v->receipt_no = at(str, b->receipt_no);
  v->last_error = at(str, b->last_error);
  v->created_ms = b->created_ms;
  v->updated_ms = b->updated_ms;
  v->timeline = b->nev ? ev : NULL;
  v->timeline_len = b->nev;
  *out = v;
  return 0;
}

/* ---- generic results ---------------------------------------------------- */

/* While building, a pointer member holds (string offset + 1) as a uintptr_t,
 * 0 meaning NULL, so that a zeroed record has every pointer NULL. memcpy
 * keeps this free of aliasing tricks. */
_Static_assert(sizeof(uintptr_t) == sizeof(const char *), "offsets are stored in pointer slots");

#define HEAD_ALIGN 16 /* rows start here; >= the alignment of any result struct */

void *tb__res_head(struct tb__res_builder *b, size_t size) {
  if (b->oom) return NULL;
  if (grow((void **)&b->head, &b->head_cap, size, 1) != 0) {
    b->oom = 1;
    return NULL;
  }
  memset(b->head, 0, size);
  b->head_size = size;
  return b->head;
}

void *tb__res_row(struct tb__res_builder *b, size_t size) {
  if (b->oom) return NULL;
  if (b->nrows > 0 && size != b->row_size) {
    b->oom = 1; /* a programmer error; fail the result rather than corrupt it */
    return NULL;
  }
  size_t used = b->nrows * size;
  if (grow((void **)&b->rows, &b->rows_cap, used + size, 1) != 0) {
    b->oom = 1;
    return NULL;
  }
  b->row_size = size;
  b->nrows++;
  memset(b->rows + used, 0, size);
  return b->rows + used;
}

void *tb__res_row_at(struct tb__res_builder *b, size_t i) {
  return b->rows + i * b->row_size;
}

void tb__res_set(struct tb__res_builder *b, void *rec, size_t member, const void *s, size_t len) {
  if (rec == NULL || s == NULL || b->oom) return;
  size_t off = tb__res_str(b, s, len);
  if (off == TB__RES_NULL) return;
  uintptr_t v = (uintptr_t)off + 1;
  memcpy((char *)rec + member, &v, sizeof v);
}

const char *tb__res_get(const struct tb__res_builder *b, const void *rec, size_t member) {
  uintptr_t v;
  memcpy(&v, (const char *)rec + member, sizeof v);
  return v == 0 ? NULL : b->str + (v - 1);
}

static void fix_ptrs(unsigned char *rec, const size_t *members, size_t n, const char *str) {
  for (size_t i = 0; i < n; i++) {
    uintptr_t v;
    memcpy(&v, rec + members[i], sizeof v);
    const char *p = v == 0 ? NULL : str + (v - 1);
    memcpy(rec + members[i], &p, sizeof p);
  }
}

int tb__res_finish(struct tb__res_builder *b, const struct tb__res_shape *sh, void **block,
                   size_t *nrows) {
  *block = NULL;
  *nrows = 0;
  if (b->oom) return TB_ENOMEM;
  size_t n = b->nrows;
  if (sh->head_size == 0 && n == 0) return 0;
  size_t hsz = (sh->head_size + HEAD_ALIGN - 1) / HEAD_ALIGN * HEAD_ALIGN;
  size_t rsz = n * sh->row_size;
  unsigned char *blk = malloc(hsz + rsz + b->str_len + 1);
  if (blk == NULL) {
    b->oom = 1;
    return TB_ENOMEM;
  }
  unsigned char *rows = blk + hsz;
  char *str = (char *)rows + rsz;
  if (b->str_len > 0) memcpy(str, b->str, b->str_len);
  str[b->str_len] = '\0';
  if (rsz > 0) memcpy(rows, b->rows, rsz);
  for (size_t i = 0; i < n; i++)
    fix_ptrs(rows + i * sh->row_size, sh->row_ptrs, sh->n_row_ptrs, str);
  if (sh->head_size > 0) {
    if (b->head_size == sh->head_size)
      memcpy(blk, b->head, sh->head_size);
    else
      memset(blk, 0, sh->head_size); /* no tb__res_head(): every member 0/NULL */
    fix_ptrs(blk, sh->head_ptrs, sh->n_head_ptrs, str);
    if (sh->head_rows != TB__RES_NONE) {
      const void *p = n ? (const void *)rows : NULL;
      memcpy(blk + sh->head_rows, &p, sizeof p);
    }
    if (sh->head_nrows != TB__RES_NONE) memcpy(blk + sh->head_nrows, &n, sizeof n);
  }
  *block = blk;
  *nrows = n;
  return 0;
}
