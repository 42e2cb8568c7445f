/*
 * Unit tests of plugin/registry.c: the configuration's "keys" become a
 * keystore with facts for logs and readiness (fingerprints, expiry); the
 * partners' adapters are loaded once per name and initialised once per
 * partner; every failure (a key file others can read, a missing file, a
 * broken adapter, an init refusal, bad partner TLS files) comes back as one
 * message naming what failed, with nothing left loaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapter_fixture.h"
#include "core/config.h"
#include "plugin/registry.h"

static struct tb_adapter_fixture fx; /* only for its PKI directory */

static int setup(void **state) {
  (void)state;
  return tb_fixture_setup_keys(&fx);
}

static int teardown(void **state) {
  (void)state;
  tb_fixture_teardown(&fx);
  tb_crypto_global_fini();
  return 0;
}

static const char KEYS[] =
    "\"keys\": {"
    " \"gw-rsa\": {\"kind\": \"rsa\", \"private_key\": \"gateway/sign-rsa.key\","
    "   \"certificate\": \"gateway/sign-rsa.pem\"},"
    " \"gw-sm2\": {\"kind\": \"sm2\", \"private_key\": \"gateway/sign-sm2.key\"},"
    " \"laizhou-rsa\": {\"kind\": \"rsa\", \"certificate\": \"partners/laizhou/sign-rsa.pem\","
    "   \"public_key\": \"partners/laizhou/sign-rsa.pub.pem\"},"
    " \"wujiang-sm2-pub\": {\"kind\": \"sm2\", \"public_key\": \"partners/wujiang/sign-sm2.pub.pem\"},"
    " \"laizhou-ca\": {\"kind\": \"ca\", \"certificate\": \"partners/laizhou/ca.pem\"}}";

/* A config whose relative paths resolve in the fixture's PKI. extra is
 * spliced in at the top level; partners is the partners array. */
static int load_config(struct tb_config *cfg, const char *keys, const char *partners,
                       const char *extra) {
  char text[8192];
  snprintf(text, sizeof text,
           "{\"node\": {\"region\": \"430603\"},"
           " \"local_api\": {\"listen\": \"127.0.0.1:0\","
           "   \"tokens\": [{\"client\": \"t\", \"token\": \"0123456789abcdef\"}]},"
           " \"adapters\": {\"dir\": \"%s\"}, %s%s \"partners\": %s}",
           getenv("TB_ADAPTERS_DIR"), keys, extra, partners);
  char *problems = NULL;
  int rc = tb_config_load_text(text, strlen(text), fx.pki, cfg, &problems);
  if (rc != 0) fprintf(stderr, "config: %s\n", problems ? problems : "?");
  free(problems);
  return rc;
}

static void make_pubkey(const char *rel_key, const char *rel_pub) {
  char cmd[1500];
  snprintf(cmd, sizeof cmd, "openssl pkey -in '%s/%s' -pubout -out '%s/%s' 2>/dev/null", fx.pki,
           rel_key, fx.pki, rel_pub);
  assert_int_equal(system(cmd), 0);
}

static void test_keys_load_with_their_facts(void **state) {
  (void)state;
  make_pubkey("partners/laizhou/sign-rsa.key", "partners/laizhou/sign-rsa.pub.pem");
  struct tb_config cfg;
  assert_int_equal(load_config(&cfg, KEYS, "[]", ","), 0);
  struct tb_plugin_keys *keys = NULL;
  char err[TB_ERRMSG_MAX] = "";
  int rc = tb_plugin_keys_load(&cfg, &keys, err);
  if (rc != 0) fail_msg("%s", err);
  assert_int_equal(keys->count, 5);
  const struct tb_plugin_key *k = &keys->keys[0];
  assert_string_equal(k->name, "gw-rsa");
  assert_string_equal(k->kind, "rsa");
  assert_int_equal(strlen(k->fingerprint), 64);
  assert_true(k->not_after > 1700000000); /* 825 days from when the PKI was made */
  assert_non_null(strstr(k->subject, "tbgw 430603 signer"));
  assert_int_equal(keys->keys[1].not_after, 0); /* no certificate */
  assert_string_equal(keys->keys[4].kind, "ca");
  assert_int_equal(strlen(keys->keys[4].fingerprint), 64);
  assert_true(keys->keys[4].not_after > k->not_after); /* the CA lives 10 years */
  /* The keystore has them under their names (a CA in its own namespace). */
  struct tb_key_info ki;
  assert_int_equal(tb_keystore_key_info(keys->store, "wujiang-sm2-pub", &ki, err), 0);
  assert_int_equal(ki.has_private, 0);
  assert_int_equal(tb_keystore_key_info(keys->store, "laizhou-ca", &ki, err), TB_ENOTFOUND);
  /* Expiry: nothing now, the signing certificate first as time goes on. */
  assert_null(tb_plugin_keys_expired(keys, 1700000000));
  const struct tb_plugin_key *e = tb_plugin_keys_expired(keys, k->not_after + 1);
  assert_non_null(e);
  assert_string_equal(e->name, "gw-rsa");
  tb_plugin_keys_free(keys);
  tb_plugin_keys_free(NULL);
  tb_config_free(&cfg);
}

static void expect_keys_fail(const char *keys_json, int code, const char *needle) {
  struct tb_config cfg;
  assert_int_equal(load_config(&cfg, keys_json, "[]", ","), 0);
  struct tb_plugin_keys *keys = (struct tb_plugin_keys *)1;
  char err[TB_ERRMSG_MAX] = "";
  int rc = tb_plugin_keys_load(&cfg, &keys, err);
  if (rc != code) fail_msg("expected %s, got %s: %s", tb_err_name(code), tb_err_name(rc), err);
  assert_null(keys);
  if (strstr(err, needle) == NULL) fail_msg("expected \"%s\" in: %s", needle, err);
  tb_config_free(&cfg);
}

static void test_key_failures_name_the_key_and_the_fix(void **state) {
  (void)state;
  char path[700], want[1600];
  tb_fixture_path(&fx, "gateway/sign-sm2.key", path, sizeof path);
  assert_int_equal(chmod(path, 0644), 0);
  snprintf(want, sizeof want,
           "key \"gw-sm2\": private key file %s has mode 0644 and is readable by group/others; "
           "run: chmod 600 %s",
           path, path);
  expect_keys_fail(KEYS, TB_ECONFIG, want);
  assert_int_equal(chmod(path, 0600), 0);
  expect_keys_fail("\"keys\": {\"gw-x\": {\"kind\": \"rsa\", \"private_key\": \"nope.key\"}}",
                   TB_ENOTFOUND, "key \"gw-x\": cannot open ");
  expect_keys_fail("\"keys\": {\"gw-x\": {\"kind\": \"ec-p256\", \"private_key\": "
                   "\"gateway/sign-rsa.key\"}}",
                   TB_ECONFIG, "is a \"rsa\" key but kind \"ec-p256\" was configured");
  expect_keys_fail("\"keys\": {\"x-ca\": {\"kind\": \"ca\", \"certificate\": \"gateway/sign-sm2.key\"}}",
                   TB_EPARSE, "CA \"x-ca\"");
}

static const char PARTNERS[] =
    "[{\"name\": \"laizhou\", \"adapter\": \"example\", \"regions\": [\"370683\"],"
    "  \"endpoint\": \"https://127.0.0.1:9443\", \"keys\": {\"sign\": \"gw-rsa\", \"verify\": "
    "\"laizhou-rsa\"}, \"tls\": {\"ca\": \"partners/laizhou/ca.pem\", \"client_certificate\": "
    "\"gateway/tls-client.pem\", \"client_key\": \"gateway/tls-client.key\", \"client_ca\": "
    "\"partners/laizhou/ca.pem\"}},"
    " {\"name\": \"zhaoyuan\", \"adapter\": \"example\", \"regions\": [\"370685\"],"
    "  \"endpoint\": \"https://127.0.0.1:9444\", \"keys\": {\"sign\": \"gw-rsa\", \"verify\": "
    "\"gw-rsa\"}}]";

static void test_registry_loads_each_adapter_once_and_every_partner(void **state) {
  (void)state;
  struct tb_config cfg;
  assert_int_equal(load_config(&cfg, KEYS, PARTNERS,
                               ", \"partner_api\": {\"listen\": \"127.0.0.1:0\", \"tls\": "
                               "{\"certificate\": \"gateway/tls-server.pem\", \"private_key\": "
                               "\"gateway/tls-server.key\"}},"),
                   0);
  struct tb_plugin_keys *keys = NULL;
  struct tb_plugin_registry *reg = NULL;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(tb_plugin_keys_load(&cfg, &keys, err), 0);
  int rc = tb_plugin_registry_load(&cfg, keys->store, &reg, err);
  if (rc != 0) fail_msg("%s", err);
  assert_int_equal(reg->lib_count, 1);
  assert_string_equal(reg->libs[0].name, "example");
  assert_int_equal(reg->partner_count, 2);
  assert_int_equal(tb_plugin_registry_ready_count(reg), 2);
  struct tb_plugin_partner *p = tb_plugin_registry_find_partner(reg, "zhaoyuan");
  assert_ptr_equal(p, &reg->partners[1]);
  assert_ptr_equal(p->cfg, &cfg.partners[1]);
  assert_ptr_equal(p->lib, &reg->libs[0]);
  assert_string_equal(p->host.table.partner, "zhaoyuan");
  assert_string_equal(p->host.table.node_region, "430603");
  assert_int_equal(p->inst.route_count, 1);
  assert_null(tb_plugin_registry_find_partner(reg, "wujiang"));
  assert_null(tb_plugin_registry_find_partner(NULL, "laizhou"));
  char path[4200];
  snprintf(path, sizeof path, "%s", reg->libs[0].path);
  tb_plugin_registry_free(reg);
  void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  assert_null(h); /* freeing the registry unloads the library */
  tb_plugin_registry_free(NULL);
  tb_plugin_keys_free(keys);
  tb_config_free(&cfg);
}

/* Loads the registry expecting code and needle; nothing stays loaded. */
static void expect_registry_fail(const char *partners, const char *extra, int code,
                                 const char *needle) {
  struct tb_config cfg;
  assert_int_equal(load_config(&cfg, KEYS, partners, extra), 0);
  struct tb_plugin_keys *keys = NULL;
  struct tb_plugin_registry *reg = (struct tb_plugin_registry *)1;
  char err[TB_ERRMSG_MAX] = "";
  assert_int_equal(tb_plugin_keys_load(&cfg, &keys, err), 0);
  int rc = tb_plugin_registry_load(&cfg, keys->store, &reg, err);
  if (rc != code) fail_msg("expected %s, got %s: %s", tb_err_name(code), tb_err_name(rc), err);
  assert_null(reg);
  if (strstr(err, needle) == NULL) fail_msg("expected \"%s\" in: %s", needle, err);
  char path[4200];
  snprintf(path, sizeof path, "%s/example.so", getenv("TB_ADAPTERS_DIR"));
  void *h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (h != NULL) {
    dlclose(h);
    fail_msg("example.so stayed loaded after: %s", err);
  }
  tb_plugin_keys_free(keys);
  tb_config_free(&cfg);
}

static void test_registry_failures_unwind_everything(void **state) {
  (void)state;
  /* The second partner's adapter is broken: the first's library goes too. */
  expect_registry_fail(
      "[{\"name\": \"laizhou\", \"adapter\": \"example\", \"regions\": [\"370683\"],"
      "  \"endpoint\": \"https://h\", \"keys\": {\"sign\": \"gw-rsa\", \"verify\": \"gw-rsa\"}},"
      " {\"name\": \"zhaoyuan\", \"adapter\": \"bad-major\", \"regions\": [\"370685\"],"
      "  \"endpoint\": \"https://h\"}]",
      ",", TB_EABI, "adapter \"bad-major\": built for ABI 2.0");
  /* The second partner's init fails: the first instance is finished. */
  expect_registry_fail(
      "[{\"name\": \"laizhou\", \"adapter\": \"example\", \"regions\": [\"370683\"],"
      "  \"endpoint\": \"https://h\", \"keys\": {\"sign\": \"gw-rsa\", \"verify\": \"gw-rsa\"}},"
      " {\"name\": \"zhaoyuan\", \"adapter\": \"example\", \"regions\": [\"370685\"],"
      "  \"endpoint\": \"https://h\", \"keys\": {\"sign\": \"gw-none\", \"verify\": \"gw-rsa\"}}]",
      ",", TB_ECONFIG,
      "adapter \"example\" refused partner \"zhaoyuan\": keys.sign: no key named \"gw-none\"");
  expect_registry_fail("[{\"name\": \"laizhou\", \"adapter\": \"no-such\", \"regions\": "
                       "[\"370683\"], \"endpoint\": \"https://h\"}]",
                       ",", TB_EIO, "adapter \"no-such\": ");
  /* Partner TLS files. */
  expect_registry_fail("[{\"name\": \"laizhou\", \"adapter\": \"example\", \"regions\": "
                       "[\"370683\"], \"endpoint\": \"https://h\", \"tls\": {\"ca\": \"nope.pem\"}}]",
                       ",", TB_ENOTFOUND, "partner \"laizhou\": tls.ca: cannot open ");
  expect_registry_fail("[{\"name\": \"laizhou\", \"adapter\": \"example\", \"regions\": "
                       "[\"370683\"], \"endpoint\": \"https://h\", \"tls\": {\"client_certificate\":"
                       " \"gateway/tls-client.pem\", \"client_key\": \"gateway/tls-server.key\"}}]",
                       ",", TB_ECONFIG, "does not belong to certificate");
  char path[700], want[1600];
  tb_fixture_path(&fx, "gateway/tls-server.key", path, sizeof path);
  assert_int_equal(chmod(path, 0640), 0);
  snprintf(want, sizeof want, "partner_api.tls: private key file %s has mode 0640", path);
  expect_registry_fail("[]",
                       ", \"partner_api\": {\"listen\": \"127.0.0.1:0\", \"tls\": {\"certificate\":"
                       " \"gateway/tls-server.pem\", \"private_key\": \"gateway/tls-server.key\"}},",
                       TB_ECONFIG, want);
  assert_int_equal(chmod(path, 0600), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keys_load_with_their_facts),
      cmocka_unit_test(test_key_failures_name_the_key_and_the_fix),
      cmocka_unit_test(test_registry_loads_each_adapter_once_and_every_partner),
      cmocka_unit_test(test_registry_failures_unwind_everything),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
