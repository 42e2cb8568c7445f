/*
 * fuzz_luxml_decode — a partner's POST to the lu-xml notify route, through
 * the real adapter (adapters/lu-xml) and host: decode, then answer() for
 * every outcome the host could reach, then release.
 *
 * Input format:
 *   anything        the request body as received (unsigned or signed by
 *                   whoever made the file): the parse, size, depth, DOCTYPE
 *                   and signature checks
 *   'S' + XML       "@NOW@" replaced by the current Beijing time, then
 *                   signed with the partner's key (laizhou-rsa, trusted under
 *                   keys.peer_ca) before decode: the header, schema and
 *                   mapping code behind the signature
 * Checks: the decode contract of tbgw/adapter.h (never fails but for
 * memory; a refusal has a code and no canonical JSON; anything accepted is
 * JSON), answer() on every outcome, no leaks.
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

static void decode(const void *body, size_t len, int64_t now_ms) {
  struct tb_header hd[] = {{"Content-Type", "application/xml; charset=UTF-8"}};
  struct tb_inbound_request req = {.method = "POST", .path = "/tongban/v1/notify",
                                   .headers = hd, .header_count = 1,
                                   .body = body, .body_len = len,
                                   .peer_subject = "CN=laizhou", .now_ms = now_ms};
  struct tb_inbound_message m;
  memset(&m, 0, sizeof m);
  char err[TB_ERRMSG_MAX] = "";
  int rc = fuzz_ops()->decode(fuzz_state(), &req, &m, err);
  fuzz_check_decoded(rc, &m);
  if (rc == 0) fuzz_answer_and_release(&req, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const struct tb_host *h = fuzz_host();
  int64_t now = h->now_ms();
  if (size == 0 || data[0] != 'S') {
    decode(data, size, now);
    return 0;
  }
  char when[32];
  TB_FUZZ_CHECK(h->format_beijing(now, when, sizeof when) == 0);
  size_t len;
  char *xml = fuzz_subst_now(data + 1, size - 1, when, &len);
  struct tb_bytes signed_xml = {NULL, 0};
  char err[TB_ERRMSG_MAX] = "";
  if (h->xmldsig_sign(h->ctx, "laizhou-rsa", xml, len, &signed_xml, err) == 0) {
    decode(signed_xml.data, signed_xml.len, now);
    h->free(signed_xml.data);
  } else {
    decode(xml, len, now); /* not signable (not XML): still a body */
  }
  free(xml);
  return 0;
}
