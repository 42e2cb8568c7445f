/*
 * audit/audit.h — the audit trail (SPEC §9): an append-only file with one
 * JSON record per security-relevant event, each carrying the SM3 hash of the
 * record before it, and the streaming verifier behind `tbgw audit verify`.
 * docs/audit.md describes the format for operators; this header is the
 * contract for code.
 *
 * Record (one line, UTF-8, '\n'-terminated; keys in this order, optional
 * ones omitted when absent):
 *
 *   {"seq":N,"ts":"RFC3339","event":"E","actor":..,"case_id":..,"partner":..,
 *    "message_id":..,"outcome":..,"detail":{..},"prev":"<64 hex>","hash":"<64 hex>"}
 *
 * Let BODY be the exact bytes of the line from '{' up to and including the
 * closing quote of the prev value (that is, the line minus the 76-byte
 * suffix `,"hash":"<64 hex>"}`). Then hash = lowercase hex SM3(BODY). prev
 * is the previous record's hash (64 '0's for the first record of a chain,
 * whose seq is 1), and seq is the previous seq + 1. Hashing the bytes as
 * written (not a re-serialisation) makes verification independent of any
 * JSON library; putting prev inside BODY chains every record to all the
 * records before it.
 *
 * Threads: a struct tb_audit belongs to the loop thread (nothing is locked);
 * the verifier is reentrant. Durability: tb_audit_append only buffers;
 * tb_audit_flush writes the whole batch with one write() and one
 * fdatasync(), and is meant to be called from the store's commit hook so the
 * audit trail rides the group commit instead of costing an fsync per event.
 */
#ifndef TB_AUDIT_AUDIT_H
#define TB_AUDIT_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/log.h"
#include "crypto/crypto.h"
#include "tbgw/error.h"

/* A record longer than this (newline included) is refused by the writer and
 * reported as malformed by the verifier: it bounds the verifier's memory. */
#define TB_AUDIT_RECORD_MAX (1024 * 1024)

/* prev of the first record of a chain. */
#define TB_AUDIT_GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* Event names the gateway writes (others are allowed: [a-z0-9_.]+). */
#define TB_AUDIT_EV_CASE_ACCEPTED "case.accepted"
#define TB_AUDIT_EV_MESSAGE_SENT "message.sent"
#define TB_AUDIT_EV_ACK_RECEIVED "ack.received"
#define TB_AUDIT_EV_INBOUND_ACCEPTED "inbound.accepted"
#define TB_AUDIT_EV_INBOUND_REFUSED "inbound.refused"
#define TB_AUDIT_EV_DLQ_REPLAY "dlq.replay"
#define TB_AUDIT_EV_CONFIG_RELOAD "config.reload"
#define TB_AUDIT_EV_KEY_LOADED "key.loaded"
#define TB_AUDIT_EV_ROTATED "audit.rotated"           /* first record of a rotated-to file */
#define TB_AUDIT_EV_TAIL_DISCARDED "audit.tail_discarded" /* open cut a partial last line */

/* ---- writer ------------------------------------------------------------- */

struct tb_audit;

struct tb_audit_options {
  /* After a flush leaves the file at or above this size, the file is renamed
   * to PATH.<last seq, 19 digits> and PATH starts again with an
   * "audit.rotated" record that continues the chain. 0: never rotate. */
  uint64_t rotate_bytes;
  /* Buffered bytes beyond which tb_audit_append flushes by itself (so a
   * missing commit hook costs fsyncs, not unbounded memory). 0: 4 MiB. */
  size_t max_pending_bytes;
};

/*
 * Opens (creating it 0640 if needed) the audit file at path and continues its
 * chain: the last record is found by reading backwards from the end, so
 * opening costs constant memory whatever the file's size; only that record is
 * checked (its own hash), not the whole chain — that is `tbgw audit verify`.
 * A partial last line (a write cut short by a crash) is cut off and an
 * "audit.tail_discarded" record saying how many bytes is queued. A rotation
 * interrupted by a crash is completed or rolled back. The file is locked
 * (flock) against a second writer.
 * opts may be NULL (defaults). *out is owned by the caller: tb_audit_close.
 * TB_EIO (open/read/lock failed, errno text in err), TB_EBUSY (another
 * process holds the lock), TB_EPARSE (the last complete line is not a valid
 * audit record: verify the file and move it aside), TB_ENOMEM.
 */
int tb_audit_open(const char *path, const struct tb_audit_options *opts, struct tb_audit **out,
                  char *err);

/*
 * One event. Strings are borrowed for the call, must be valid UTF-8 and are
 * JSON-escaped; NULL fields are omitted. Personal data must already be
 * masked (the tb_audit_log_* helpers below do it); detail_json, if not NULL,
 * is a compact JSON object text written as is after a syntax check.
 */
struct tb_audit_event {
  const char *event;       /* required, [a-z0-9_.]+, e.g. TB_AUDIT_EV_* */
  const char *actor;       /* who caused it: "api", "partner:ID", "cli", "system" */
  const char *case_id;
  const char *partner;
  const char *message_id;
  const char *outcome;     /* "ok", "refused", "failed", ... */
  const char *detail_json; /* "{...}" or NULL */
};

/* Formats the record (seq, ts, prev filled in) and buffers it; the chain
 * head advances now, the bytes reach the disk at the next flush.
 * TB_EINVAL (bad event name, invalid UTF-8, detail not a JSON object),
 * TB_ELIMIT (record longer than TB_AUDIT_RECORD_MAX), TB_ENOMEM, or a flush
 * error when max_pending_bytes forced a flush (the record stays buffered). */
int tb_audit_append(struct tb_audit *a, const struct tb_audit_event *ev, char *err);

/* Writes every buffered record with one write() and one fdatasync(), then
 * rotates if the file reached rotate_bytes. Nothing buffered: no syscalls.
 * On TB_EIO the file is cut back to its previous end and the records stay
 * buffered for the next flush. */
int tb_audit_flush(struct tb_audit *a, char *err);

/* A tb_store_commit_fn (store/store.h) that flushes ud (a struct tb_audit *)
 * and reports a failure on the log: register it, or call tb_audit_flush
 * from the existing commit hook. */
void tb_audit_on_store_commit(int64_t last_seq, size_t batch_ops, uint64_t commit_ns, void *ud);

/* Flushes (best effort, the error is returned), unlocks, closes and frees.
 * NULL is a no-op returning 0. */
int tb_audit_close(struct tb_audit *a, char *err);

/* The chain head: seq and hash of the last record appended (buffered ones
 * included). Log it at shutdown or ship it elsewhere: it is the anchor that
 * makes a truncation at a record boundary detectable. */
int64_t tb_audit_last_seq(const struct tb_audit *a);
const char *tb_audit_last_hash(const struct tb_audit *a);

struct tb_audit_stats {
  uint64_t records;   /* appended since open */
  uint64_t writes;    /* write() calls made by flushes */
  uint64_t syncs;     /* fdatasync() calls */
  uint64_t rotations;
  size_t pending_bytes;
};
void tb_audit_get_stats(const struct tb_audit *a, struct tb_audit_stats *out);

/* ---- typed events (mask personal data, build detail) -------------------- */

/* case.accepted. subject_id / subject_name: the person's ID number and name
 * as received (masked here with core/mask.h); either may be NULL. */
int tb_audit_log_case_accepted(struct tb_audit *a, const char *actor, const char *case_id,
                               const char *partner, const char *subject_id,
                               const char *subject_name, char *err);
/* message.sent: attempt counts from 1. */
int tb_audit_log_message_sent(struct tb_audit *a, const char *case_id, const char *partner,
                              const char *message_id, int attempt, char *err);
/* ack.received with the acknowledgement's signature verification result:
 * sig_ok 1/0, reason NULL or why it failed. */
int tb_audit_log_ack_received(struct tb_audit *a, const char *case_id, const char *partner,
                              const char *message_id, int sig_ok, const char *reason,
                              char *err);
/* inbound.accepted (accepted 1) or inbound.refused (reason required). */
int tb_audit_log_inbound(struct tb_audit *a, const char *partner, const char *message_id,
                         int accepted, const char *reason, char *err);
/* dlq.replay: target is a case id, "partner:P" or "all"; count replayed. */
int tb_audit_log_dlq_replay(struct tb_audit *a, const char *actor, const char *target,
                            long long count, char *err);
/* config.reload: ok 1/0, reason NULL or the error. */
int tb_audit_log_config_reload(struct tb_audit *a, const char *actor, const char *config_path,
                               int ok, const char *reason, char *err);
/* key.loaded: key name, algorithm name, fingerprint (hex, may be NULL). */
int tb_audit_log_key_loaded(struct tb_audit *a, const char *key_name, const char *alg,
                            const char *fingerprint, char *err);

/* For the daemon's call sites: an event that could not be appended is logged
 * ("audit.append_failed", level error) and the work it describes goes on —
 * the gateway prefers availability to audit completeness (docs/audit.md). */
static inline void tb_audit_note_failure(const char *event, const char *err) {
  struct tb_log_line *l = tb_log_begin(TB_LOG_ERROR, "audit.append_failed");
  tb_log_str(l, "audit_event", event);
  tb_log_str(l, "error", err && *err ? err : "unknown error");
  tb_log_str(l, "action", "the event is missing from the audit trail; check the audit "
                          "file's disk, then 'tbgw audit verify'");
  tb_log_end(l);
}

/* ---- verifier ----------------------------------------------------------- */

enum tb_audit_fault {
  TB_AUDIT_OK = 0,
  TB_AUDIT_EDITED,     /* the record's bytes do not match its hash */
  TB_AUDIT_DELETED,    /* seq gap, or the file does not start the chain */
  TB_AUDIT_INSERTED,   /* valid-looking record that does not chain (prev/seq) */
  TB_AUDIT_REORDERED,  /* the missing seq appears later in the file */
  TB_AUDIT_TRUNCATED,  /* last line has no newline: a write cut short */
  TB_AUDIT_MALFORMED,  /* not JSON, not an audit record, or too long */
  TB_AUDIT_IO,         /* read error */
};
/* "edited", "deleted", "inserted", "reordered", "truncated", "not JSON", ... */
const char *tb_audit_fault_name(enum tb_audit_fault f);

/* Where a chain stands: what the next record must carry as prev and seq-1. */
struct tb_audit_anchor {
  int64_t seq;
  char hash[TB_DIGEST_HEX_LEN];
};

struct tb_audit_verify_result {
  uint64_t records;                 /* good records before the first bad one */
  struct tb_audit_anchor last;      /* head after the last good record */
  enum tb_audit_fault fault;
  uint64_t bad_line;                /* 1-based line of the first bad record */
  int64_t bad_seq;                  /* its seq, -1 if unreadable */
  char reason[TB_ERRMSG_MAX];       /* one sentence for a person */
  /* The file began with an audit.rotated record and no anchor was given:
   * the chain was taken on trust from that link, which names its file. */
  int started_from_link;
  char link_file[256];
};

/*
 * Reads f to its end, line by line with a buffer of TB_AUDIT_RECORD_MAX
 * bytes (constant memory, any file size), and checks each record's hash,
 * seq and prev. expect: where the chain stands before this file (the
 * previous file's res.last when verifying a rotation set in order); NULL
 * means the file must begin a chain (seq 1, genesis prev) or begin with an
 * audit.rotated link, which is then trusted. Returns 0 when the whole file
 * is good (res->fault TB_AUDIT_OK), TB_EVALIDATE when a record is bad
 * (res names the first one and why), TB_ENOMEM.
 */
int tb_audit_verify_stream(FILE *f, const struct tb_audit_anchor *expect,
                           struct tb_audit_verify_result *res);

#endif
