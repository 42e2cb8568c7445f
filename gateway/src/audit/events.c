/*
 * audit/events.c — one function per security-relevant event, so the call
 * sites (api, delivery, inbound, serve) stay one line each and personal data
 * is masked here, in one place, with the same rules as the logs (core/mask.h).
 */
#include <stdio.h>
#include <string.h>

#include "audit/audit_internal.h"
#include "core/mask.h"

/* detail = {"k1":v1,...}: NULL values are left out. */
struct kv {
  const char *key;
  const char *str; /* JSON string value, or NULL */
  const char *raw; /* raw JSON (number, boolean), used when str is NULL */
};

static int append_with(struct tb_audit *a, struct tb_audit_event *ev, const struct kv *kv,
                       size_t n, char *err) {
  struct tb__audit_buf d = {0};
  int rc = tb__audit_buf_adds(&d, "{");
  int first = 1;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (kv[i].str == NULL && kv[i].raw == NULL) continue;
    if (!first) rc = tb__audit_buf_adds(&d, ",");
    first = 0;
    if (rc == 0) rc = tb__audit_buf_add_jstr(&d, kv[i].key);
    if (rc == 0) rc = tb__audit_buf_adds(&d, ":");
    if (rc == 0)
      rc = kv[i].str ? tb__audit_buf_add_jstr(&d, kv[i].str) : tb__audit_buf_adds(&d, kv[i].raw);
  }
  if (rc == 0) rc = tb__audit_buf_adds(&d, "}");
  if (rc == 0) {
    ev->detail_json = first ? NULL : d.p;
    rc = tb_audit_append(a, ev, err);
  } else {
    rc = tb_errf(err, rc, "audit: %s: %s", ev->event,
                 rc == TB_EINVAL ? "a field is not valid UTF-8" : "out of memory");
  }
  tb__audit_buf_free(&d);
  return rc;
}

#define N(kv) (sizeof(kv) / sizeof *(kv))

int tb_audit_log_case_accepted(struct tb_audit *a, const char *actor, const char *case_id,
                               const char *partner, const char *subject_id,
                               const char *subject_name, char *err) {
  char id[TB_MASK_MAX], name[TB_MASK_MAX];
  struct tb_audit_event ev = {.event = TB_AUDIT_EV_CASE_ACCEPTED, .actor = actor,
                              .case_id = case_id, .partner = partner, .outcome = "ok"};
  struct kv kv[] = {
      {"subject_id", subject_id ? tb_mask_id(subject_id, id, sizeof id) : NULL, NULL},
      {"subject_name", subject_name ? tb_mask_name(subject_name, name, sizeof name) : NULL, NULL},
  };
  return append_with(a, &ev, kv, N(kv), err);
}

int tb_audit_log_message_sent(struct tb_audit *a, const char *case_id, const char *partner,
                              const char *message_id, int attempt, char *err) {
  char n[24];
  snprintf(n, sizeof n, "%d", attempt);
  struct tb_audit_event ev = {.event = TB_AUDIT_EV_MESSAGE_SENT, .actor = "system",
                              .case_id = case_id, .partner = partner,
                              .message_id = message_id, .outcome = "ok"};
  struct kv kv[] = {{"attempt", NULL, n}};
  return append_with(a, &ev, kv, N(kv), err);
}

int tb_audit_log_ack_received(struct tb_audit *a, const char *case_id, const char *partner,
                              const char *message_id, int sig_ok, const char *reason,
                              char *err) {
  struct tb_audit_event ev = {.event = TB_AUDIT_EV_ACK_RECEIVED, .case_id = case_id,
                              .partner = partner, .message_id = message_id,
                              .outcome = sig_ok ? "ok" : "signature_invalid"};
  char actor[160];
  snprintf(actor, sizeof actor, "partner:%s", partner ? partner : "?");
  ev.actor = actor;
  struct kv kv[] = {{"signature_valid", NULL, sig_ok ? "true" : "false"},
                    {"reason", reason, NULL}};
  return append_with(a, &ev, kv, N(kv), err);
}

int tb_audit_log_inbound(struct tb_audit *a, const char *partner, const char *message_id,
                         int accepted, const char *reason, char *err) {
  if (!accepted && reason == NULL)
    return tb_errf(err, TB_EINVAL, "audit: inbound.refused needs a reason");
  char actor[160];
  snprintf(actor, sizeof actor, "partner:%s", partner ? partner : "?");
  struct tb_audit_event ev = {
      .event = accepted ? TB_AUDIT_EV_INBOUND_ACCEPTED : TB_AUDIT_EV_INBOUND_REFUSED,
      .actor = actor, .partner = partner, .message_id = message_id,
      .outcome = accepted ? "ok" : "refused"};
  struct kv kv[] = {{"reason", reason, NULL}};
  return append_with(a, &ev, kv, N(kv), err);
}

int tb_audit_log_dlq_replay(struct tb_audit *a, const char *actor, const char *target,
                            long long count, char *err) {
  char n[24];
  snprintf(n, sizeof n, "%lld", count);
  struct tb_audit_event ev = {.event = TB_AUDIT_EV_DLQ_REPLAY, .actor = actor, .outcome = "ok"};
  struct kv kv[] = {{"target", target, NULL}, {"count", NULL, n}};
  return append_with(a, &ev, kv, N(kv), err);
}

int tb_audit_log_config_reload(struct tb_audit *a, const char *actor, const char *config_path,
                               int ok, const char *reason, char *err) {
  struct tb_audit_event ev = {.event = TB_AUDIT_EV_CONFIG_RELOAD, .actor = actor,
                              .outcome = ok ? "ok" : "failed"};
  struct kv kv[] = {{"config", config_path, NULL}, {"reason", reason, NULL}};
  return append_with(a, &ev, kv, N(kv), err);
}

int tb_audit_log_key_loaded(struct tb_audit *a, const char *key_name, const char *alg,
                            const char *fingerprint, char *err) {
  struct tb_audit_event ev = {.event = TB_AUDIT_EV_KEY_LOADED, .actor = "system",
                              .outcome = "ok"};
  struct kv kv[] = {{"key", key_name, NULL}, {"alg", alg, NULL},
                    {"fingerprint", fingerprint, NULL}};
  return append_with(a, &ev, kv, N(kv), err);
}
