/*
 * adapter.c — the yue-json adapter's entry point: its description for the
 * host (tbgw/adapter.h), the partner settings it reads, and the inbound
 * route. The settings keys it reads are app_id, peer_app_id and keys.sign /
 * keys.decrypt / keys.peer; everything else in the partner object belongs
 * to the gateway and is ignored here (docs/adapter-yue-json.md).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "yuejson.h"

#define YJ_VERSION "1.0.0"

static const struct {
  enum tb_msg_type type;
  const char *name;
  const char *path;
} msg_types[] = {
    {TB_MSG_CASE_SUBMIT, "CASE_SUBMIT", "/gateway/tongban/case/submit"},
    {TB_MSG_CASE_WITHDRAW, "CASE_WITHDRAW", "/gateway/tongban/case/withdraw"},
    {TB_MSG_CASE_SUPPLEMENT, "CASE_SUPPLEMENT", "/gateway/tongban/case/supplement"},
    {TB_MSG_STATUS_NOTIFY, "STATUS_NOTIFY", "/gateway/tongban/status/notify"},
};

const char *yj_msg_type_name(enum tb_msg_type type) {
  for (size_t i = 0; i < sizeof msg_types / sizeof msg_types[0]; i++)
    if (msg_types[i].type == type) return msg_types[i].name;
  return NULL;
}

enum tb_msg_type yj_msg_type_parse(const char *name) {
  for (size_t i = 0; name && i < sizeof msg_types / sizeof msg_types[0]; i++)
    if (strcmp(msg_types[i].name, name) == 0) return msg_types[i].type;
  return (enum tb_msg_type)0;
}

const char *yj_msg_type_path(enum tb_msg_type type) {
  for (size_t i = 0; i < sizeof msg_types / sizeof msg_types[0]; i++)
    if (msg_types[i].type == type) return msg_types[i].path;
  return NULL;
}

/* ---- settings ----------------------------------------------------------------- */

/* An AppId goes into a header and, between newlines, into the signed string:
 * 1-64 printable ASCII characters, no spaces. */
static int app_id_setting(const json_t *root, const char *key, char *out, char *err) {
  const json_t *v = json_object_get(root, key);
  if (v == NULL) return tb_errf(err, TB_ECONFIG, "%s: missing (the yue-json AppId)", key);
  if (!json_is_string(v)) return tb_errf(err, TB_ECONFIG, "%s: must be a string", key);
  const char *s = json_string_value(v);
  size_t n = json_string_length(v);
  if (n == 0 || n > YJ_APP_ID_MAX)
    return tb_errf(err, TB_ECONFIG, "%s: must be 1-%d characters", key, YJ_APP_ID_MAX);
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
      return tb_errf(err, TB_ECONFIG, "%s: must be printable ASCII without spaces", key);
  memcpy(out, s, n + 1);
  return 0;
}

/* keys.<role>: the name of an SM2 key the host holds; `need_private` for
 * signing and decryption. */
static int key_setting(const struct tb_host *host, const json_t *keys, const char *role,
                       int need_private, char *out, char *err) {
  const json_t *v = json_object_get(keys, role);
  if (v == NULL) return tb_errf(err, TB_ECONFIG, "keys.%s: missing", role);
  if (!json_is_string(v) || json_string_length(v) == 0 ||
      json_string_length(v) >= YJ_KEY_NAME_MAX ||
      strlen(json_string_value(v)) != json_string_length(v))
    return tb_errf(err, TB_ECONFIG, "keys.%s: must be the name of a configured key", role);
  const char *name = json_string_value(v);
  struct tb_host_key_info ki;
  char herr[TB_ERRMSG_MAX] = "";
  memset(&ki, 0, sizeof ki);
  if (host->key_info(host->ctx, name, &ki, herr) != 0)
    return tb_errf(err, TB_ECONFIG, "keys.%s: no key named \"%s\" (%s)", role, name, herr);
  if (ki.kind != TB_HOST_KEY_SM2)
    return tb_errf(err, TB_ECONFIG, "keys.%s: key \"%s\" is not an SM2 key (yue-json is GM/T only)",
                   role, name);
  if (need_private && !ki.has_private)
    return tb_errf(err, TB_ECONFIG, "keys.%s: key \"%s\" has no private key (needed to %s)", role,
                   name, strcmp(role, "sign") == 0 ? "sign" : "open envelopes");
  snprintf(out, YJ_KEY_NAME_MAX, "%s", name);
  return 0;
}

static int yj_init(const struct tb_host *host, const char *settings_json, size_t settings_len,
                   void **state, char *err) {
  *state = NULL;
  if (host == NULL || host->alloc == NULL)
    return tb_errf(err, TB_EINVAL, "yue-json: no host services");
  json_error_t jerr;
  json_t *root = json_loadb(settings_json, settings_len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL)
    return tb_errf(err, TB_ECONFIG, "settings: not JSON (line %d column %d: %s)", jerr.line,
                   jerr.column, jerr.text);
  struct yj_state *st = host->alloc(sizeof *st);
  if (st == NULL) {
    json_decref(root);
    return tb_errf(err, TB_ENOMEM, "yue-json: out of memory");
  }
  memset(st, 0, sizeof *st);
  st->host = host;
  const json_t *keys = json_object_get(root, "keys");
  int rc;
  if (!json_is_object(root))
    rc = tb_errf(err, TB_ECONFIG, "settings: must be a JSON object");
  else if ((rc = app_id_setting(root, "app_id", st->app_id, err)) == 0 &&
           (rc = app_id_setting(root, "peer_app_id", st->peer_app_id, err)) == 0) {
    if (!json_is_object(keys))
      rc = tb_errf(err, TB_ECONFIG,
                   "keys: missing or not an object (yue-json needs keys.sign, keys.decrypt, "
                   "keys.peer)");
    else if ((rc = key_setting(host, keys, "sign", 1, st->key_sign, err)) == 0 &&
             (rc = key_setting(host, keys, "decrypt", 1, st->key_decrypt, err)) == 0)
      rc = key_setting(host, keys, "peer", 0, st->key_peer, err);
  }
  json_decref(root);
  if (rc != 0) {
    host->free(st);
    return rc;
  }
  *state = st;
  return 0;
}

static void yj_fini(void *state) {
  struct yj_state *st = state;
  if (st) st->host->free(st);
}

static const struct tb_inbound_route routes[] = {{"POST", YJ_CALLBACK_PATH}};

static const struct tb_inbound_route *yj_routes(void *state, size_t *count) {
  (void)state;
  *count = sizeof routes / sizeof routes[0];
  return routes;
}

static const struct tb_adapter adapter = {
    .abi_major = TB_ADAPTER_ABI_MAJOR,
    .abi_minor = TB_ADAPTER_ABI_MINOR,
    .name = "yue-json",
    .version = YJ_VERSION,
    .init = yj_init,
    .fini = yj_fini,
    .routes = yj_routes,
    .encode = yj_encode,
    .classify = yj_classify,
    .decode = yj_decode,
    .answer = yj_answer,
    .release = yj_release,
};

TB_ADAPTER_EXPORT const struct tb_adapter *tbgw_adapter_entry(void) { return &adapter; }
