/*
 * tbgw/adapter.h — the adapter plugin ABI of tongban-gateway.
 *
 * An adapter is a shared object that translates between the gateway's
 * canonical JSON and one partner protocol. It includes this header (and
 * tbgw/error.h) and nothing else of the gateway's; it exports exactly one
 * symbol, TB_ADAPTER_ENTRY_SYMBOL, a function returning its description.
 * docs/adapters.md explains how to write one from this header alone.
 *
 * Versioning (Varnish VMOD style): the host refuses an adapter whose
 * abi_major differs from the host's, or whose abi_minor is greater than the
 * host's. Minor versions only ever add members at the END of struct
 * tb_adapter and struct tb_host; nothing is reordered or removed without a
 * major bump.
 *
 * ABI changelog
 *   1.0  2026-11  First version: init/fini, inbound routes, encode, classify,
 *                 decode, answer, release; host services for memory, logging
 *                 with masking, time, encodings, digests, named-key
 *                 signatures and encryption, SM4, XML-DSig.
 *
 * Memory: every buffer an adapter hands to the host (struct tb_bytes, the
 * char * members of struct tb_wire_request / struct tb_wire_answer, the
 * canonical JSON of a decoded message) is allocated with host->alloc; the host
 * frees it with host->free. A struct tb_bytes that a host service fills
 * (sign, base64, xmldsig_sign, pk_decrypt, ...) belongs to the adapter, which
 * frees it with host->free or hands it on to the host as one of its outputs.
 * Every other buffer the host hands to an adapter is borrowed for the
 * duration of the call.
 *
 * Threads: init, fini and routes run on the gateway's loop thread. encode,
 * classify, decode, answer and release may run on any thread, several at a
 * time, with the same state: after init the adapter's state must be
 * read-only (or protected by the adapter). Host services are thread-safe.
 *
 * Errors: functions return 0 or a negative TB_E* code from tbgw/error.h and
 * write a sentence for an operator into err (TB_ERRMSG_MAX bytes) that names
 * what was wrong. A partner's refusal is not an error: it is a result
 * (a classification, a refused inbound message).
 */
#ifndef TBGW_ADAPTER_H
#define TBGW_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "tbgw/error.h"

#define TB_ADAPTER_ABI_MAJOR 1u
#define TB_ADAPTER_ABI_MINOR 0u
#define TB_ADAPTER_ENTRY_SYMBOL "tbgw_adapter_entry"

/* Adapters are built with -fvisibility=hidden; this marks the one export:
 *   TB_ADAPTER_EXPORT const struct tb_adapter *tbgw_adapter_entry(void);  */
#define TB_ADAPTER_EXPORT __attribute__((visibility("default")))

#ifdef __cplusplus
extern "C" {
#endif

/* ---- shared types ------------------------------------------------------ */

/* A byte buffer allocated with host->alloc (see "Memory" above). */
struct tb_bytes {
  unsigned char *data;
  size_t len;
};

/* One HTTP header, borrowed, NUL-terminated. */
struct tb_header {
  const char *name;
  const char *value;
};

/* The four message types both partner protocols carry, in both directions. */
enum tb_msg_type {
  TB_MSG_CASE_SUBMIT = 1,
  TB_MSG_CASE_WITHDRAW = 2,
  TB_MSG_CASE_SUPPLEMENT = 3,
  TB_MSG_STATUS_NOTIFY = 4,
};

/*
 * Canonical bodies (UTF-8 JSON text) of each message type, in both
 * directions:
 *
 *   CASE_SUBMIT      the canonical case, schemas/case.v1.json
 *   CASE_WITHDRAW    {"case_id", "receipt_no", "reason"}
 *   CASE_SUPPLEMENT  {"case_id", "receipt_no", "materials": [canonical materials]}
 *   STATUS_NOTIFY    {"case_id", "receipt_no", "status": canonical status
 *                     (accepted, rejected, supplement_required, in_progress,
 *                     approved, denied, withdrawn, result_shipped),
 *                     "opinion": string|null, "supplement": [material names],
 *                     "tracking_no": string|null, "licence_no": string|null,
 *                     "at": RFC 3339 time}
 */

enum tb_log_severity { TB_SEV_DEBUG = 0, TB_SEV_INFO = 1, TB_SEV_WARN = 2, TB_SEV_ERROR = 3 };

enum tb_digest_alg { TB_DIGEST_SM3 = 1, TB_DIGEST_SHA256 = 2 };

enum tb_cipher { TB_CIPHER_SM4_CBC_PKCS7 = 1 };

/* Kinds of named keys (the signature algorithm follows from the kind:
 * rsa → RSA PKCS#1 v1.5 with SHA-256, ec-p256 → ECDSA with SHA-256 (DER),
 * ed25519 → Ed25519, sm2 → SM2 with SM3 and the key's signer ID (DER);
 * ca → a trust anchor for verifying certificates, no key operations). */
enum tb_host_key_kind {
  TB_HOST_KEY_RSA = 1,
  TB_HOST_KEY_EC_P256 = 2,
  TB_HOST_KEY_ED25519 = 3,
  TB_HOST_KEY_SM2 = 4,
  TB_HOST_KEY_CA = 5,
};

struct tb_host_key_info {
  enum tb_host_key_kind kind;
  int has_private;     /* sign / decrypt possible */
  int has_certificate; /* an X.509 certificate is configured with the key */
};

/* ---- host services ------------------------------------------------------ */

/*
 * The table of services the host hands to an adapter at init. ctx is the
 * host's per-partner context: pass it back as the first argument where a
 * service takes one. Keys are named: the adapter learns the names from its
 * settings (e.g. {"keys": {"sign": "gw-rsa"}}) and never sees key material.
 */
struct tb_host {
  uint32_t abi_major;
  uint32_t abi_minor;
  void *ctx;
  const char *partner;      /* the partner this adapter instance serves */
  const char *node_region;  /* our own division code */

  /* memory */
  void *(*alloc)(size_t n);
  void *(*realloc)(void *p, size_t n);
  void (*free)(void *p);

  /* logging: one JSON line with "event", "partner" and "msg". Personal data
   * must be masked first with the mask_* services. */
  void (*log)(void *ctx, enum tb_log_severity sev, const char *event, const char *msg);
  char *(*mask_id)(const char *id, char *out, size_t out_size);
  char *(*mask_phone)(const char *phone, char *out, size_t out_size);
  char *(*mask_name)(const char *name, char *out, size_t out_size);

  /* time */
  int64_t (*now_ms)(void); /* Unix milliseconds, wall clock */
  /* "yyyy-MM-dd HH:mm:ss" in Beijing time (UTC+8, no DST); out >= 20 bytes */
  int (*format_beijing)(int64_t unix_ms, char *out, size_t out_size);
  /* Inverse of format_beijing; TB_EPARSE unless exactly that shape and a real time */
  int (*parse_beijing)(const char *s, size_t len, int64_t *unix_ms_out);
  /* RFC 3339 with offset (Z or ±hh:mm) → Unix ms; TB_EPARSE otherwise */
  int (*parse_rfc3339)(const char *s, size_t len, int64_t *unix_ms_out);
  /* Unix ms → "2024-05-06T10:00:00+08:00" (whole seconds, Beijing time); out >= 26 bytes */
  int (*format_rfc3339_beijing)(int64_t unix_ms, char *out, size_t out_size);

  /* encodings and randomness */
  int (*base64_encode)(const void *data, size_t len, struct tb_bytes *out); /* NUL-terminated too */
  int (*base64_decode)(const char *text, size_t len, struct tb_bytes *out); /* strict RFC 4648 */
  void (*uuid_v4)(char out[37]);                                             /* lowercase */
  int (*random_bytes)(void *buf, size_t len);
  /* out must hold 32 bytes (both algorithms give 32) */
  int (*digest)(enum tb_digest_alg alg, const void *data, size_t len, unsigned char out[32]);

  /* named keys */
  int (*key_info)(void *ctx, const char *key, struct tb_host_key_info *out, char *err);
  int (*sign)(void *ctx, const char *key, const void *data, size_t len, struct tb_bytes *sig,
              char *err);
  /* 0 if the signature is valid, TB_ECRYPTO if not (err says why) */
  int (*verify)(void *ctx, const char *key, const void *data, size_t len, const void *sig,
                size_t sig_len, char *err);
  /* SM2 public-key encryption to a named key; ciphertext in GM/T 0009 DER */
  int (*pk_encrypt)(void *ctx, const char *key, const void *data, size_t len,
                    struct tb_bytes *out, char *err);
  int (*pk_decrypt)(void *ctx, const char *key, const void *data, size_t len,
                    struct tb_bytes *out, char *err);
  /* symmetric encryption with an ephemeral key the adapter holds (e.g. the
   * fresh SM4 key of a digital envelope) */
  int (*sym_encrypt)(enum tb_cipher cipher, const unsigned char *key, size_t key_len,
                     const unsigned char *iv, size_t iv_len, const void *data, size_t len,
                     struct tb_bytes *out, char *err);
  int (*sym_decrypt)(enum tb_cipher cipher, const unsigned char *key, size_t key_len,
                     const unsigned char *iv, size_t iv_len, const void *data, size_t len,
                     struct tb_bytes *out, char *err);
  /* Enveloped XML-DSig (exc-c14n, rsa-sha256, one Reference URI="", sha256,
   * X509Certificate), appended as the last child of the root element, with
   * a named RSA key that has a certificate. */
  int (*xmldsig_sign)(void *ctx, const char *key, const void *xml, size_t len,
                      struct tb_bytes *signed_xml, char *err);
  /* Verifies an enveloped signature of exactly that profile whose
   * certificate chains to the named CA; writes the signer's subject. 0 if
   * valid, TB_ECRYPTO if not. DTDs and entities are refused. */
  int (*xmldsig_verify)(void *ctx, const char *trusted_ca, const void *xml, size_t len,
                        char *signer, size_t signer_size, char *err);

  /* canonical helpers */
  const char *(*media_ext)(const char *media_type);   /* "application/pdf" → "pdf"; NULL if unknown */
  const char *(*media_type_for_ext)(const char *ext); /* inverse */
  /* Retry-After header value (seconds or HTTP date) → ms from now; -1 if absent/invalid */
  int64_t (*retry_after_ms)(const char *value);
};

/* ---- outbound: canonical → partner ------------------------------------- */

struct tb_outbound {
  enum tb_msg_type type;
  const char *message_id;      /* lowercase UUID; the same on every attempt */
  const char *case_id;
  const char *sender_region;   /* the case's origin (ours) */
  const char *receiver_region; /* the partner's region for this case */
  const char *body;            /* canonical JSON of the type (see above) */
  size_t body_len;
  uint32_t attempt;            /* 1 on the first attempt */
  int64_t now_ms;              /* time to put in the message's timestamp */
};

/* What encode produces: one HTTP POST. All members host-allocated. */
struct tb_wire_request {
  char *path;          /* appended to the partner's endpoint, e.g. "/tongban/v1/receive" */
  char *content_type;  /* e.g. "application/xml; charset=UTF-8" */
  char *headers;       /* extra "Name: value\r\n" lines, or NULL */
  struct tb_bytes body;
};

/* The partner's answer, as received (borrowed). */
struct tb_wire_response {
  int http_status;              /* 0: no HTTP answer (see transport_error) */
  const struct tb_header *headers;
  size_t header_count;
  const unsigned char *body;
  size_t body_len;
  const char *transport_error;  /* NULL when an HTTP answer arrived */
};

enum tb_verdict {
  TB_VERDICT_SUCCESS = 0,     /* delivered */
  TB_VERDICT_DUPLICATE = 1,   /* the partner already had it: delivered */
  TB_VERDICT_PERMANENT = 2,   /* will never succeed as sent: dead letter */
  TB_VERDICT_RETRY = 3,       /* try again later (same message, same id) */
  TB_VERDICT_RETRY_FRESH = 4, /* try again with a fresh timestamp / nonce / signature */
};

struct tb_classification {
  enum tb_verdict verdict;
  char code[32];          /* the partner's code ("0000", "4011") or "HTTP 503", "transport" */
  char text[256];         /* the partner's message, or why we decided so */
  char receipt_no[128];   /* the partner's receipt number, "" if none */
  int64_t retry_after_ms; /* the partner's Retry-After, -1 if none */
  int signature_valid;    /* 1 the answer's signature verified, 0 missing or invalid */
};

/* ---- inbound: partner → canonical ---------------------------------------- */

/* A path the adapter serves below /partners/{partner} on the partner-facing
 * listener, e.g. {"POST", "/tongban/v1/notify"}. */
struct tb_inbound_route {
  const char *method;
  const char *path;
};

struct tb_inbound_request {
  const char *method;
  const char *path;             /* below /partners/{partner} */
  const struct tb_header *headers;
  size_t header_count;
  const unsigned char *body;
  size_t body_len;
  const char *peer_subject;     /* verified TLS client certificate subject, or NULL */
  int64_t now_ms;
};

enum tb_inbound_kind {
  TB_INBOUND_REFUSED = 0, /* not acceptable: answer with refuse_code */
  TB_INBOUND_STATUS = 1,  /* a status notification for one of our cases */
  TB_INBOUND_CASE = 2,    /* a partner's own case for us to handle */
  TB_INBOUND_OTHER = 3,   /* withdraw / supplement of a partner's case */
};

/* What decode found. The adapter verifies signatures and decrypts here; the
 * host then applies the replay window and the durable message-id / nonce
 * store, stores the message, and asks the adapter for the answer. */
struct tb_inbound_message {
  enum tb_inbound_kind kind;
  enum tb_msg_type type;        /* the wire message type, when known */
  char message_id[128];         /* the partner's message id ("" if unknown) */
  char nonce[128];              /* request nonce, "" if the protocol has none */
  int64_t sent_ms;              /* the partner's timestamp; 0 if none */
  char case_id[65];
  char receipt_no[128];
  struct tb_bytes canonical;    /* canonical JSON of the type (host-allocated) */
  char refuse_code[32];         /* for REFUSED: the partner document's code, or
                                   "HTTP nnn" when the document prescribes no
                                   answer body (not well-formed, too large, ...):
                                   answer() then builds a bare HTTP nnn */
  char refuse_text[256];        /*              and why, for logs and the answer */
  void *adapter_data;           /* the adapter's own, freed by release */
};

/* What the host decided about a decoded message. */
enum tb_inbound_outcome {
  TB_INBOUND_ACCEPTED = 0,      /* stored durably; answer success */
  TB_INBOUND_DUPLICATE = 1,     /* message id seen before; answer as the document says */
  TB_INBOUND_STALE = 2,         /* timestamp outside the replay window */
  TB_INBOUND_NONCE_REUSED = 3,  /* nonce seen within the window */
  TB_INBOUND_REFUSE = 4,        /* the adapter refused it in decode */
  TB_INBOUND_UNKNOWN_CASE = 5,  /* a status for a case we never sent */
  TB_INBOUND_FAILED = 6,        /* we could not store it: ask the partner to retry */
};

/* The synchronous answer; members host-allocated. */
struct tb_wire_answer {
  int http_status;
  char *content_type;
  char *headers;       /* extra "Name: value\r\n" lines, or NULL */
  struct tb_bytes body;
};

/* ---- the adapter ----------------------------------------------------------- */

struct tb_adapter {
  uint32_t abi_major;       /* TB_ADAPTER_ABI_MAJOR the adapter was built with */
  uint32_t abi_minor;       /* TB_ADAPTER_ABI_MINOR the adapter was built with */
  const char *name;         /* protocol name, e.g. "lu-xml"; the .so is lib<name>.so or <name>.so */
  const char *version;      /* the adapter's own version */

  /* Checks the partner's settings (its whole object from the config, as
   * JSON) and prepares state. Called once per partner using this adapter.
   * host stays valid until fini. Refuse bad settings with TB_ECONFIG and a
   * message naming the key ("keys.sign: no key named \"gw-rsa\""). */
  int (*init)(const struct tb_host *host, const char *settings_json, size_t settings_len,
              void **state, char *err);
  void (*fini)(void *state);

  /* The inbound paths served; the array stays valid until fini. */
  const struct tb_inbound_route *(*routes)(void *state, size_t *count);

  /* Canonical → one signed (and, if required, encrypted) HTTP request.
   * TB_EVALIDATE means the message can never be expressed in this protocol
   * (the host dead-letters it at once, with err as the reason); any other
   * error is taken as transient and the message is tried again later. */
  int (*encode)(void *state, const struct tb_outbound *msg, struct tb_wire_request *out,
                char *err);

  /* The partner's answer → a verdict, following the partner document's code
   * table. Must not fail for any input: garbage is a verdict (RETRY). */
  int (*classify)(void *state, const struct tb_outbound *msg,
                  const struct tb_wire_response *resp, struct tb_classification *out,
                  char *err);

  /* An inbound request → a decoded message or a refusal. Must not fail for
   * any input: anything unacceptable is kind TB_INBOUND_REFUSED with the
   * partner document's code. Returns an error only for internal failures
   * (TB_ENOMEM). */
  int (*decode)(void *state, const struct tb_inbound_request *req,
                struct tb_inbound_message *out, char *err);

  /* Builds the synchronous answer for a decoded message and the host's
   * outcome. receipt_no is the receipt to report (ours for an accepted
   * case, the first answer's for a duplicate), or NULL. */
  int (*answer)(void *state, const struct tb_inbound_request *req,
                const struct tb_inbound_message *msg, enum tb_inbound_outcome outcome,
                const char *receipt_no, struct tb_wire_answer *out, char *err);

  /* Frees msg->adapter_data (the host frees msg->canonical). */
  void (*release)(void *state, struct tb_inbound_message *msg);
};

/* The one exported symbol: returns a pointer to a static description. */
typedef const struct tb_adapter *(*tb_adapter_entry_fn)(void);
TB_ADAPTER_EXPORT const struct tb_adapter *tbgw_adapter_entry(void);

#ifdef __cplusplus
}
#endif

#endif
