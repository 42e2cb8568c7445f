/*
 * yuejson.h — internals shared by the files of the yue-json adapter
 * (shared/partners/yue-json.md 2.1). Nothing here is exported: the adapter
 * is built with hidden visibility and exports only tbgw_adapter_entry.
 *
 *   adapter.c   entry point, settings (init/fini), routes
 *   jsonout.c   a byte buffer and a JSON writer with exact control over key
 *               order, null/absent and number text
 *   wire.c      X-GD-* request/response signatures, the SM2/SM4 envelope
 *   mapping.c   canonical JSON ⇄ business JSON, both directions
 *   outbound.c  encode and classify
 *   inbound.c   decode, answer and release
 *
 * State is read-only after init; every function may run on any thread.
 */
#ifndef TB_ADAPTER_YUEJSON_H
#define TB_ADAPTER_YUEJSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "tbgw/adapter.h"

#define YJ_APP_ID_MAX 64
#define YJ_KEY_NAME_MAX 128
/* The largest body we sign, verify or open: 20 MiB of materials (the
 * canonical default) is about 27 MiB of base64, about 36 MiB once SM4 and
 * base64 again wrap it. */
#define YJ_BODY_MAX ((size_t)64 << 20)

/* The partner document's paths and media type. */
#define YJ_CONTENT_TYPE "application/json;charset=UTF-8"
#define YJ_CALLBACK_PATH "/gateway/tongban/callback"

struct yj_state {
  const struct tb_host *host;
  char app_id[YJ_APP_ID_MAX + 1];      /* ours: X-GD-AppId of what we send */
  char peer_app_id[YJ_APP_ID_MAX + 1]; /* the partner's: required on what we receive */
  char key_sign[YJ_KEY_NAME_MAX];      /* SM2 private: our signatures */
  char key_decrypt[YJ_KEY_NAME_MAX];   /* SM2 private: opens envelopes sent to us */
  char key_peer[YJ_KEY_NAME_MAX];      /* SM2 public: verifies the partner, encrypts to it */
};

/* ---- message types -------------------------------------------------------- */

/* "CASE_SUBMIT" etc. for a type, NULL for an unknown one. */
const char *yj_msg_type_name(enum tb_msg_type type);
/* The inverse; 0 when the name is not one of the four. */
enum tb_msg_type yj_msg_type_parse(const char *name);
/* The partner endpoint path of a type, NULL for an unknown one. */
const char *yj_msg_type_path(enum tb_msg_type type);

/* ---- jsonout.c: buffer and JSON writer ------------------------------------- */

/* A growing byte buffer on the host allocator. An allocation failure is
 * sticky: later writes do nothing and `failed` stays 1, so writers check
 * once at the end. The data is NUL-terminated whenever len > 0. */
struct yj_buf {
  const struct tb_host *host;
  char *data;
  size_t len;
  size_t cap;
  int failed;
};

void yj_buf_init(struct yj_buf *b, const struct tb_host *host);
void yj_buf_free(struct yj_buf *b);
void yj_buf_put(struct yj_buf *b, const void *s, size_t n);
void yj_buf_puts(struct yj_buf *b, const char *s);
void yj_buf_printf(struct yj_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the data to the caller (host-allocated, NUL-terminated, never NULL
 * unless the buffer failed) and resets the buffer. */
char *yj_buf_take(struct yj_buf *b, size_t *len);

/* JSON writer. Separators are automatic: yj_json_key and yj_json_elem write
 * a comma unless the previous byte opened the object or array. */
void yj_json_open(struct yj_buf *b, char bracket);  /* '{' or '[' */
void yj_json_close(struct yj_buf *b, char bracket); /* '}' or ']' */
void yj_json_key(struct yj_buf *b, const char *key);
void yj_json_elem(struct yj_buf *b);
void yj_json_strn(struct yj_buf *b, const char *s, size_t n); /* a JSON string */
void yj_json_str(struct yj_buf *b, const char *s);            /* NULL → null */
void yj_json_null(struct yj_buf *b);
void yj_json_int(struct yj_buf *b, int64_t v);
/* Any jansson value, keys in their order, reals in the shortest text that
 * reads back as the same double (0.6 stays "0.6", 1.0 stays "1.0"). */
void yj_json_value(struct yj_buf *b, const json_t *v);

/* 1 if s (NUL-terminated) is exactly len bytes of UTF-8 without NUL. */
int yj_utf8_valid(const char *s, size_t len);
/* Copies src into dst (size >= 1), cutting at a UTF-8 character boundary. */
void yj_copy_text(char *dst, size_t size, const char *src, size_t len);

/* ---- wire.c: signatures and envelope --------------------------------------- */

/* Lowercase hex SM3 of data. */
int yj_sm3_hex(const struct tb_host *h, const void *data, size_t len, char out[65]);

/* The four X-GD-* header lines ("Name: value\r\n"), signed with keys.sign
 * over app_id\nts\nnonce\nsm3hex(body) with a fresh nonce. *out is
 * host-allocated. */
int yj_sign_headers(const struct yj_state *st, const void *body, size_t len, int64_t ts_ms,
                    char **out, char *err);

/* Result of checking the X-GD-* headers of something the partner sent. */
enum yj_sig_result {
  YJ_SIG_OK = 0,
  YJ_SIG_MISSING = 1,     /* a header is missing, repeated or empty */
  YJ_SIG_WRONG_APPID = 2, /* X-GD-AppId is not peer_app_id */
  YJ_SIG_MALFORMED = 3,   /* the signature is not base64 */
  YJ_SIG_INVALID = 4,     /* it does not verify with keys.peer */
  YJ_SIG_NOMEM = 5,
};

struct yj_sig_check {
  enum yj_sig_result result;
  const char *timestamp; /* borrowed from the headers; NULL if missing */
  const char *nonce;     /* idem */
  char why[200];         /* for logs and refusals; never contains personal data */
};

void yj_verify_headers(const struct yj_state *st, const struct tb_header *headers, size_t count,
                       const void *body, size_t len, struct yj_sig_check *out);

/* The value of header `name` (case-insensitive); NULL if absent. *dup is
 * set to 1 when it occurs more than once. */
const char *yj_header(const struct tb_header *headers, size_t count, const char *name, int *dup);

/* Seals biz into an envelope body for keys.peer: fresh SM4 key and IV. */
int yj_envelope_seal(const struct yj_state *st, const char *msg_id, const char *msg_type,
                     const void *biz, size_t biz_len, struct yj_buf *out, char *err);

/* Opens an envelope's encryptKey/iv/bizContent with keys.decrypt. Returns 0
 * with the plaintext (host-allocated), TB_ECRYPTO when it cannot be opened
 * (why says which part, for 4020), TB_ENOMEM. */
int yj_envelope_open(const struct yj_state *st, const char *encrypt_key, size_t ek_len,
                     const char *iv, size_t iv_len, const char *biz, size_t biz_len,
                     struct tb_bytes *plain, char *why, size_t why_size);

/* Overwrites a secret so that the compiler cannot drop the write. */
void yj_wipe(void *p, size_t n);

/* ---- mapping.c: canonical ⇄ business JSON ---------------------------------- */

/* canonical (the ABI's body of `type`) → business JSON text. TB_EVALIDATE
 * with err naming the canonical path when it cannot be expressed. */
int yj_biz_from_canonical(const struct yj_state *st, enum tb_msg_type type, const json_t *canon,
                          struct yj_buf *out, char *err);

/* What came out of a partner's business JSON. */
struct yj_inbound_fields {
  char case_id[65];
  char receipt_no[128];
};

/* business JSON → canonical JSON text of `type`. TB_EVALIDATE (→ 4001) with
 * why naming the business JSON path (never a value), TB_ENOMEM. */
int yj_canonical_from_biz(const struct yj_state *st, enum tb_msg_type type, const json_t *biz,
                          struct yj_buf *out, struct yj_inbound_fields *fields, char *why,
                          size_t why_size);

/* 1 if s is a UUID (8-4-4-4-12 hex digits, either case). */
int yj_is_uuid(const char *s);

/* ---- the operations (outbound.c, inbound.c) -------------------------------- */

int yj_encode(void *state, const struct tb_outbound *msg, struct tb_wire_request *out, char *err);
int yj_classify(void *state, const struct tb_outbound *msg, const struct tb_wire_response *resp,
                struct tb_classification *out, char *err);
int yj_decode(void *state, const struct tb_inbound_request *req, struct tb_inbound_message *out,
              char *err);
int yj_answer(void *state, const struct tb_inbound_request *req,
              const struct tb_inbound_message *msg, enum tb_inbound_outcome outcome,
              const char *receipt_no, struct tb_wire_answer *out, char *err);
void yj_release(void *state, struct tb_inbound_message *msg);


#endif
