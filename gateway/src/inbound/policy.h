/*
 * inbound/policy.h — the small, pure decisions of the partner listener, kept
 * apart so that unit tests can prove them without sockets: which partner and
 * which adapter route a path names, whether a partner's timestamp is inside
 * the replay window, and the receipt numbers we hand out for partners' cases.
 *
 * Nothing here allocates, logs or touches the clock: every time is passed in.
 * Loop thread, or any thread with its own state.
 */
#ifndef TB_INBOUND_POLICY_H
#define TB_INBOUND_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "tbgw/adapter.h"

/* Longest partner name (core/config.h: [a-z0-9-]{1,32}), NUL excluded. */
#define TB_INBOUND_PARTNER_MAX 32

/*
 * Splits "/partners/{partner}/rest" into the partner name (copied into
 * partner, NUL-terminated) and the rest ("/rest", pointing into path; the
 * adapter's route namespace). Returns 0, or -1 when the path is not below
 * /partners/ or the name is empty, longer than TB_INBOUND_PARTNER_MAX or not
 * of [a-z0-9-] — such a path can name no configured partner (404). A path
 * that ends right after the name gives rest "" (no adapter route is empty).
 */
int tb_inbound_path_split(const char *path, char partner[TB_INBOUND_PARTNER_MAX + 1],
                          const char **rest);

enum tb_inbound_route_result {
  TB_INBOUND_ROUTE_NONE = 0,   /* no route has this path: 404 */
  TB_INBOUND_ROUTE_METHOD = 1, /* the path exists, not with this method: 405 */
  TB_INBOUND_ROUTE_OK = 2,
};

/*
 * Looks up method and rest (exact, case-sensitive path comparison; methods
 * compared exactly, as HTTP says) in an adapter's route table. For
 * TB_INBOUND_ROUTE_METHOD, allow receives the methods the path does serve,
 * ", "-separated (for the Allow header); methods that do not fit in
 * allow_size are left out whole.
 */
enum tb_inbound_route_result tb_inbound_route_find(const struct tb_inbound_route *routes,
                                                   size_t count, const char *method,
                                                   const char *rest, char *allow,
                                                   size_t allow_size);

/*
 * The replay window (SPEC §10): 1 if the partner's timestamp sent_ms is at
 * most window_s seconds from now_ms in either direction (exactly window_s
 * is inside), 0 if it is further (TB_INBOUND_STALE). sent_ms 0 means the
 * protocol carries no timestamp: the window cannot apply and the message-id
 * and nonce store are the only replay protection (1).
 */
int tb_inbound_window_ok(int64_t now_ms, int64_t sent_ms, uint32_t window_s);

/*
 * Receipt numbers for partners' cases: "<region>-SL-<yyyyMMdd>-<NNNNNN>",
 * e.g. "430603-SL-20240506-360012", where the date is Beijing's (UTC+8) and
 * NNNNNN (six digits, more only past 999999) is a per-day sequence derived
 * from the clock: the tenth of a second of the Beijing day at which the
 * number was made (0..863999), raised to one more than the last number made
 * that day whenever that would not be larger. Numbers are therefore strictly
 * increasing within a day and unique without storage, across restarts too,
 * as long as the wall clock does not step back and a restart does not fall
 * into the "borrowed" future of a burst of more than ten cases in one tenth
 * of a second (docs/inbound.md, "Receipt numbers").
 */
#define TB_INBOUND_RECEIPT_MAX 48

struct tb_inbound_receipts {
  char region[8];  /* our node region (6 digits) */
  int32_t day;     /* yyyymmdd (Beijing) of the last number; 0: none yet */
  uint32_t last;   /* its sequence */
};

void tb_inbound_receipts_init(struct tb_inbound_receipts *r, const char *region);

/* Writes the next receipt number for a case received at now_ms into out
 * (TB_INBOUND_RECEIPT_MAX bytes). Returns 0, or TB_EINVAL for a time before
 * 1970 or after 9999. */
int tb_inbound_receipt_next(struct tb_inbound_receipts *r, int64_t now_ms,
                            char out[TB_INBOUND_RECEIPT_MAX]);

/* Beijing civil date of a Unix time, as yyyymmdd, and the milliseconds since
 * that day's Beijing midnight. Returns 0 or TB_EINVAL (out of range). */
int tb_inbound_beijing_day(int64_t unix_ms, int32_t *yyyymmdd, int64_t *ms_of_day);

#endif
