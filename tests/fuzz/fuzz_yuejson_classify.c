/*
 * fuzz_yuejson_classify — the partner's answer to one of our yue-json
 * requests, through the real adapter's classify() (which must never fail:
 * garbage is a verdict).
 *
 * Input format: byte 0 chooses the HTTP status (200 for 0..127, else one of
 * a table of other statuses); byte 1 bit 0 asks for valid X-GD-* headers
 * (signed with the partner's key over the body), otherwise the rest starts
 * with "Name: value" header lines and an empty line as in
 * fuzz_yuejson_decode; then the body {"code","msg","data"}. Our message id
 * is 5f0c1a8e-2b7d-4e39-a1c4-0d9e8f7a6b5c (seeds echo it).
 * Checks: rc 0, a known verdict, NUL-terminated code/text/receipt_no, a
 * success only with a verified signature.
 */
#include "fuzz_adapter.h"

#define SETTINGS                                                                            \
  "{\"name\":\"wujiang\",\"adapter\":\"yue-json\",\"regions\":[\"440203\"],"               \
  "\"endpoint\":\"https://127.0.0.1:9543\",\"app_id\":\"" FUZZ_YJ_GW_APP                    \
  "\",\"peer_app_id\":\"" FUZZ_YJ_PEER_APP                                                  \
  "\",\"keys\":{\"sign\":\"gw-sm2\",\"decrypt\":\"gw-sm2\",\"peer\":\"wujiang-sm2-pub\"},"  \
  "\"replay_window_s\":300}"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_adapter_setup("yue-json", "wujiang", SETTINGS);
  return 0;
}

static const int other_status[] = {0,   100, 201, 202, 204, 301, 400, 401, 403, 404, 408,
                                   409, 413, 422, 429, 500, 502, 503, 504, 599, 600, -1};

static void classify(int status, const struct tb_header *hd, size_t nh, const void *body,
                     size_t len) {
  const struct tb_host *h = fuzz_host();
  static const enum tb_msg_type types[] = {TB_MSG_CASE_SUBMIT, TB_MSG_STATUS_NOTIFY};
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
    struct tb_outbound msg = {.type = types[t],
                              .message_id = "5f0c1a8e-2b7d-4e39-a1c4-0d9e8f7a6b5c",
                              .case_id = "430603-20240506-000123",
                              .sender_region = "430603",
                              .receiver_region = "440203",
                              .body = "{}",
                              .body_len = 2,
                              .attempt = 1,
                              .now_ms = h->now_ms()};
    struct tb_wire_response resp = {.http_status = status, .headers = hd, .header_count = nh,
                                    .body = body, .body_len = len,
                                    .transport_error = status == 0 ? "connection reset" : NULL};
    struct tb_classification c;
    char err[TB_ERRMSG_MAX] = "";
    int rc = fuzz_ops()->classify(fuzz_state(), &msg, &resp, &c, err);
    TB_FUZZ_CHECK(rc == 0);
    TB_FUZZ_CHECK(c.verdict >= TB_VERDICT_SUCCESS && c.verdict <= TB_VERDICT_RETRY_FRESH);
    TB_FUZZ_CHECK(memchr(c.code, '\0', sizeof c.code) != NULL && c.code[0] != '\0');
    TB_FUZZ_CHECK(memchr(c.text, '\0', sizeof c.text) != NULL);
    TB_FUZZ_CHECK(memchr(c.receipt_no, '\0', sizeof c.receipt_no) != NULL);
    if (c.verdict == TB_VERDICT_SUCCESS || c.verdict == TB_VERDICT_DUPLICATE)
      TB_FUZZ_CHECK(c.signature_valid == 1);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int status = data[0] < 128 ? 200
                             : other_status[data[0] % (sizeof other_status / sizeof other_status[0])];
  if (data[1] & 1) {
    struct fuzz_yj_signed s;
    fuzz_yj_sign(&s, "wujiang-sm2", FUZZ_YJ_PEER_APP, fuzz_host()->now_ms(), data + 2, size - 2);
    classify(status, s.h, s.n, data + 2, size - 2);
    fuzz_host()->free(s.sig);
  } else {
    struct fuzz_hdrs x;
    fuzz_hdrs_parse(&x, data + 2, size - 2);
    classify(status, x.h, x.n, x.body, x.body_len);
    free(x.buf);
  }
  return 0;
}
