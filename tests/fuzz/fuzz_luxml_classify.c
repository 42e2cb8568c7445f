/*
 * fuzz_luxml_classify — the partner's answer to one of our lu-xml messages,
 * through the real adapter's classify() (which must never fail: garbage is a
 * verdict).
 *
 * Input format: byte 0 chooses the HTTP status (200 for 0..127, else one of
 * a table of other statuses), byte 1 bit 0 asks to sign the body with the
 * partner's key (laizhou-rsa) after replacing "@NOW@" with the current
 * Beijing time, byte 1 bit 1 adds a Retry-After header whose value is the
 * body's first line; the rest is the body. Our message id is
 * 0b6f8c2e-3f0a-4c51-9d7e-5d3c1f0e9a42 (seeds echo it).
 * Checks: rc 0, a known verdict, NUL-terminated code/text/receipt_no.
 */
#include "fuzz_adapter.h"

#define SETTINGS                                                                            \
  "{\"name\":\"laizhou\",\"adapter\":\"lu-xml\",\"regions\":[\"370683\"],"                 \
  "\"endpoint\":\"https://127.0.0.1:9443\",\"retry\":{\"max\":5},"                          \
  "\"keys\":{\"sign\":\"gw-rsa\",\"peer_ca\":\"laizhou-ca\"},\"replay_window_s\":300,"      \
  "\"local_regions\":[\"370683\",\"370685\",\"440203\"]}"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  fuzz_adapter_setup("lu-xml", "laizhou", SETTINGS);
  return 0;
}

static const int other_status[] = {0,   100, 201, 202, 204, 301, 400, 401, 403, 404, 408,
                                   409, 413, 422, 429, 500, 502, 503, 504, 599, 600, -1};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const struct tb_host *h = fuzz_host();
  int status = data[0] < 128 ? 200 : other_status[data[0] % (sizeof other_status / sizeof other_status[0])];
  int sign = data[1] & 1, retry_after = data[1] & 2;
  char when[32];
  TB_FUZZ_CHECK(h->format_beijing(h->now_ms(), when, sizeof when) == 0);
  size_t len;
  char *body = fuzz_subst_now(data + 2, size - 2, when, &len);
  struct tb_bytes signed_body = {NULL, 0};
  const unsigned char *b = (const unsigned char *)body;
  char err[TB_ERRMSG_MAX] = "";
  if (sign && h->xmldsig_sign(h->ctx, "laizhou-rsa", body, len, &signed_body, err) == 0) {
    b = signed_body.data;
    len = signed_body.len;
  }
  char ra[64] = "";
  size_t i = 0;
  while (i + 1 < sizeof ra && body[i] != '\0' && body[i] != '\n') {
    ra[i] = body[i];
    i++;
  }
  struct tb_header hd[] = {{"Content-Type", "application/xml; charset=UTF-8"},
                           {"Retry-After", ra}};
  struct tb_wire_response resp = {.http_status = status, .headers = hd,
                                  .header_count = retry_after ? 2 : 1, .body = b,
                                  .body_len = len,
                                  .transport_error = status == 0 ? "connection reset" : NULL};
  static const enum tb_msg_type types[] = {TB_MSG_CASE_SUBMIT, TB_MSG_STATUS_NOTIFY};
  for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
    struct tb_outbound msg = {.type = types[t],
                              .message_id = "0b6f8c2e-3f0a-4c51-9d7e-5d3c1f0e9a42",
                              .case_id = "430603-20240506-000123",
                              .sender_region = "430603",
                              .receiver_region = "370683",
                              .body = "{}",
                              .body_len = 2,
                              .attempt = 1,
                              .now_ms = h->now_ms()};
    struct tb_classification c;
    int rc = fuzz_ops()->classify(fuzz_state(), &msg, &resp, &c, err);
    TB_FUZZ_CHECK(rc == 0);
    TB_FUZZ_CHECK(c.verdict >= TB_VERDICT_SUCCESS && c.verdict <= TB_VERDICT_RETRY_FRESH);
    TB_FUZZ_CHECK(memchr(c.code, '\0', sizeof c.code) != NULL && c.code[0] != '\0');
    TB_FUZZ_CHECK(memchr(c.text, '\0', sizeof c.text) != NULL);
    TB_FUZZ_CHECK(memchr(c.receipt_no, '\0', sizeof c.receipt_no) != NULL);
    /* Success must rest on a verified answer. */
    if (c.verdict == TB_VERDICT_SUCCESS || c.verdict == TB_VERDICT_DUPLICATE)
      TB_FUZZ_CHECK(c.signature_valid == 1);
  }
  h->free(signed_body.data);
  free(body);
  return 0;
}
