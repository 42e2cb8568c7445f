/*
 * luxml.c — the lu-xml adapter's entry point: the one exported symbol, the
 * partner settings (init/fini), the inbound route, and the tables shared by
 * encode and decode (message types, ZhuangTai codes).
 *
 * Settings read (the partner's whole config object; everything else belongs
 * to the gateway and is ignored, see docs/adapter-lu-xml.md):
 *   keys.sign        required  RSA key with private half and certificate: signs
 *                              our messages and acknowledgements (XML-DSig)
 *   keys.peer_ca     required  the partner's CA: its messages' and acks'
 *                              signing certificates must chain to it
 *   replay_window_s  optional  1..86400, default 300 (lu-xml.md code 1005)
 *   local_regions    optional  extra division codes we accept as
 *                              ReceiverRegion/BanLiDi besides host->node_region
 */
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>

#include "luxml.h"

#define LX_VERSION "1.0.0"

static const struct {
  const char *code, *name;
} status_table[] = {
    {"01", "accepted"}, {"02", "rejected"}, {"03", "supplement_required"}, {"04", "in_progress"},
    {"05", "approved"}, {"06", "denied"},   {"07", "withdrawn"},           {"08", "result_shipped"},
};

const char *lx_status_code(const char *canonical) {
  for (size_t i = 0; canonical && i < sizeof status_table / sizeof *status_table; i++)
    if (strcmp(status_table[i].name, canonical) == 0) return status_table[i].code;
  return NULL;
}

const char *lx_status_name(const char *code) {
  for (size_t i = 0; code && i < sizeof status_table / sizeof *status_table; i++)
    if (strcmp(status_table[i].code, code) == 0) return status_table[i].name;
  return NULL;
}

static const char *const type_names[] = {NULL, "CASE_SUBMIT", "CASE_WITHDRAW", "CASE_SUPPLEMENT",
                                         "STATUS_NOTIFY"};

const char *lx_type_name(enum tb_msg_type t) {
  return (int)t >= 1 && (int)t <= 4 ? type_names[t] : NULL;
}

int lx_type_from_name(const char *s, enum tb_msg_type *t) {
  for (int i = 1; i <= 4; i++)
    if (strcmp(s, type_names[i]) == 0) {
      *t = (enum tb_msg_type)i;
      return 0;
    }
  return TB_EPARSE;
}

/* ---- settings ------------------------------------------------------------ */

/* Keys of the partner object that the gateway itself reads (SPEC §5,
 * docs/configuration.md); anything else unknown is logged, not refused,
 * because the gateway may add keys of its own. */
static const char *const gateway_keys[] = {"name", "adapter", "regions", "endpoint", "tls",
                                           "retry", "concurrency", "circuit_breaker",
                                           "timeouts_ms", "timeout_ms", NULL};
static const char *const adapter_keys[] = {"keys", "replay_window_s", "local_regions", NULL};

static int in_list(const char *k, const char *const *list) {
  for (; *list; list++)
    if (strcmp(k, *list) == 0) return 1;
  return 0;
}

static int check_key(const struct tb_host *h, const json_t *keys, const char *which,
                     int want_ca, char *out, size_t out_size, char *err) {
  json_t *v = json_object_get(keys, which);
  if (v == NULL)
    return lx_errf(err, TB_ECONFIG, "keys.%s: missing (the name of %s)", which,
                   want_ca ? "the partner's CA that its XML-DSig certificates chain to"
                           : "our RSA signing key with its certificate");
  if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= out_size)
    return lx_errf(err, TB_ECONFIG, "keys.%s: expected a key name (a non-empty string)", which);
  const char *name = json_string_value(v);
  struct tb_host_key_info ki;
  char e[TB_ERRMSG_MAX] = "";
  int rc = h->key_info(h->ctx, name, &ki, e);
  if (rc != 0) return lx_errf(err, TB_ECONFIG, "keys.%s: no key named \"%s\" (%s)", which, name, e);
  if (want_ca && ki.kind != TB_HOST_KEY_CA)
    return lx_errf(err, TB_ECONFIG, "keys.%s: \"%s\" is not a CA (the partner's trust anchor)",
                   which, name);
  if (!want_ca && (ki.kind != TB_HOST_KEY_RSA || !ki.has_private || !ki.has_certificate))
    return lx_errf(err, TB_ECONFIG,
                   "keys.%s: \"%s\" must be an RSA key with its private key and certificate "
                   "(lu-xml.md: rsa-sha256 XML-DSig with X509Certificate)",
                   which, name);
  snprintf(out, out_size, "%s", name);
  return 0;
}

static int region_code_ok(const char *s) {
  if (strlen(s) != 6) return 0;
  for (int i = 0; i < 6; i++)
    if (s[i] < '0' || s[i] > '9') return 0;
  return 1;
}

static int read_settings(struct luxml *lx, const char *json, size_t len, char *err) {
  const struct tb_host *h = lx->host;
  json_error_t je;
  json_t *cfg = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
  if (cfg == NULL)
    return lx_errf(err, TB_ECONFIG, "settings: line %d column %d: %s", je.line, je.column,
                   je.text);
  int rc = 0;
  if (!json_is_object(cfg)) {
    rc = lx_errf(err, TB_ECONFIG, "settings: expected a JSON object");
    goto out;
  }
  json_t *keys = json_object_get(cfg, "keys");
  if (keys == NULL) {
    rc = lx_errf(err, TB_ECONFIG,
                 "keys: missing (lu-xml needs {\"sign\": our RSA key, \"peer_ca\": the partner's "
                 "CA})");
    goto out;
  }
  if (!json_is_object(keys)) {
    rc = lx_errf(err, TB_ECONFIG, "keys: expected an object {\"sign\", \"peer_ca\"}");
    goto out;
  }
  if ((rc = check_key(h, keys, "sign", 0, lx->sign_key, sizeof lx->sign_key, err)) != 0 ||
      (rc = check_key(h, keys, "peer_ca", 1, lx->peer_ca, sizeof lx->peer_ca, err)) != 0)
    goto out;

  lx->window_ms = 300 * 1000;
  json_t *w = json_object_get(cfg, "replay_window_s");
  if (w != NULL) {
    if (!json_is_integer(w) || json_integer_value(w) < 1 || json_integer_value(w) > 86400) {
      rc = lx_errf(err, TB_ECONFIG, "replay_window_s: expected an integer 1..86400 (seconds)");
      goto out;
    }
    lx->window_ms = (int64_t)json_integer_value(w) * 1000;
  }

  json_t *lr = json_object_get(cfg, "local_regions");
  if (lr != NULL) {
    if (!json_is_array(lr) || json_array_size(lr) > LX_MAX_LOCAL_REGIONS) {
      rc = lx_errf(err, TB_ECONFIG, "local_regions: expected an array of at most %d division codes",
                   LX_MAX_LOCAL_REGIONS);
      goto out;
    }
    size_t i;
    json_t *r;
    json_array_foreach(lr, i, r) {
      if (!json_is_string(r) || !region_code_ok(json_string_value(r))) {
        rc = lx_errf(err, TB_ECONFIG, "local_regions[%zu]: expected a 6-digit division code", i);
        goto out;
      }
      snprintf(lx->local_regions[i], sizeof lx->local_regions[i], "%s", json_string_value(r));
    }
    lx->n_local_regions = json_array_size(lr);
  }

  const char *k;
  json_t *v;
  json_object_foreach(cfg, k, v) {
    if (!in_list(k, gateway_keys) && !in_list(k, adapter_keys)) {
      char m[300];
      snprintf(m, sizeof m, "settings: key \"%.200s\" is not read by the lu-xml adapter", k);
      h->log(h->ctx, TB_SEV_WARN, "adapter.config", m);
    }
  }
  json_object_foreach(keys, k, v) {
    if (strcmp(k, "sign") != 0 && strcmp(k, "peer_ca") != 0) {
      char m[300];
      snprintf(m, sizeof m, "settings: keys.%.200s is not read by the lu-xml adapter", k);
      h->log(h->ctx, TB_SEV_WARN, "adapter.config", m);
    }
  }
out:
  json_decref(cfg);
  return rc;
}

/* ---- lifecycle ------------------------------------------------------------ */

static int lx_init(const struct tb_host *host, const char *settings_json, size_t settings_len,
                   void **state, char *err) {
  *state = NULL;
  if (host == NULL || settings_json == NULL)
    return lx_errf(err, TB_EINVAL, "lu-xml: init without host or settings");
  struct luxml *lx = host->alloc(sizeof *lx);
  if (lx == NULL) return lx_errf(err, TB_ENOMEM, "lu-xml: out of memory");
  memset(lx, 0, sizeof *lx);
  lx->host = host;
  lx->route.method = "POST";
  lx->route.path = LX_NOTIFY_PATH;
  xmlInitParser(); /* idempotent; the host has normally done it */
  int rc = read_settings(lx, settings_json, settings_len, err);
  if (rc == 0) rc = lx_schema_load(&lx->schema, err);
  if (rc != 0) {
    host->free(lx);
    return rc;
  }
  *state = lx;
  return 0;
}

static void lx_fini(void *state) {
  struct luxml *lx = state;
  if (lx == NULL) return;
  if (lx->schema) xmlSchemaFree(lx->schema);
  lx->host->free(lx);
}

static const struct tb_inbound_route *lx_routes(void *state, size_t *count) {
  struct luxml *lx = state;
  *count = 1;
  return &lx->route;
}

static void lx_release(void *state, struct tb_inbound_message *msg) {
  (void)state;
  msg->adapter_data = NULL; /* decode keeps nothing there */
}

static const struct tb_adapter luxml_adapter = {
    .abi_major = TB_ADAPTER_ABI_MAJOR,
    .abi_minor = TB_ADAPTER_ABI_MINOR,
    .name = "lu-xml",
    .version = LX_VERSION,
    .init = lx_init,
    .fini = lx_fini,
    .routes = lx_routes,
    .encode = lx_encode,
    .classify = lx_classify,
    .decode = lx_decode,
    .answer = lx_answer,
    .release = lx_release,
};

TB_ADAPTER_EXPORT const struct tb_adapter *tbgw_adapter_entry(void) { return &luxml_adapter; }
