/* XML-DSig for lu-xml (crypto/xmldsig.h) against the xmlsec1 command line:
 * what we sign, `xmlsec1 --verify --trusted-pem ca.pem` accepts; what
 * `xmlsec1 --sign` makes from a template of the same profile, we accept;
 * and every deviation from the profile, every trust failure and every
 * hostile-XML trick is refused. The PKI comes from certs/make-dev-pki.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../crypto/testutil.h"
#include "crypto/crypto.h"
#include "crypto/keystore.h"
#include "crypto/xmldsig.h"

static struct tb_keystore *ks;

static const char msg_xml[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<TongbanMessage xmlns=\"urn:sd:tongban:1.0\" version=\"1.0\">\n"
    "  <Header>\n"
    "    <MessageId>0b6f8c2e-3f0a-4c51-9d7e-5d3c1f0e9a42</MessageId>\n"
    "    <MessageType>STATUS_NOTIFY</MessageType>\n"
    "    <SenderRegion>370683</SenderRegion>\n"
    "    <ReceiverRegion>430603</ReceiverRegion>\n"
    "    <SendTime>2024-05-07 09:30:05</SendTime>\n"
    "  </Header>\n"
    "  <Body><Status><ShenBanHao>430603-20240506-000123</ShenBanHao>"
    "<HuiZhiHao>370683-SL-20240506-0001</HuiZhiHao><ZhuangTai>03</ZhuangTai>"
    "<ShuoMing>请补充结婚证复印件</ShuoMing><ShiJian>2024-05-07 09:30:00</ShiJian>"
    "</Status></Body>\n"
    "</TongbanMessage>\n";

/* An xmlsec1 template of the lu-xml profile (or a variant) for the root of
 * msg_xml: %s = SignatureMethod, %s = Reference URI, %s = DigestMethod. */
static const char tmpl_fmt[] =
    "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>"
    "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>"
    "<ds:SignatureMethod Algorithm=\"%s\"/>"
    "<ds:Reference URI=\"%s\"><ds:Transforms>"
    "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>"
    "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>"
    "</ds:Transforms><ds:DigestMethod Algorithm=\"%s\"/><ds:DigestValue/></ds:Reference>"
    "</ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate/>"
    "</ds:X509Data></ds:KeyInfo></ds:Signature>";
#define RSA_SHA256 "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
#define RSA_SHA1 "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
#define SHA256 "http://www.w3.org/2001/04/xmlenc#sha256"

static const char *pki(const char *rel) {
  return tu_path("pki/%s", rel);
}

static int setup(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX];
  if (tu_setup_dir("xmldsig") != 0) return -1;
  const char *root = getenv("TB_REPO_ROOT");
  if (tu_run("bash %s/certs/make-dev-pki.sh %s", root ? root : ".", pki("")) != 0) return -1;
  /* An unrelated "public" CA that this machine trusts the way a distribution
   * trusts its root store, and a signing certificate from it that claims to
   * be laizhou's signer. OpenSSL's default verify paths
   * (X509_STORE_set_default_paths) honour SSL_CERT_FILE / SSL_CERT_DIR, so
   * they are pointed at this CA for the whole run, before the first verify. */
  const char *r = pki("rogue");
  if (tu_run("mkdir -p %s && cd %s && "
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key && "
             "openssl req -x509 -new -key ca.key -sha256 -days 3650 "
             "-subj '/O=Public Trust Services/CN=Public Root CA R1' "
             "-addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign,cRLSign -out ca.pem && "
             "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sign-rsa.key && "
             "openssl req -new -key sign-rsa.key -subj '/O=tongban-gateway dev/CN=laizhou 370683 "
             "signer' -out sign-rsa.csr && "
             "printf 'basicConstraints=CA:FALSE\\nkeyUsage=critical,digitalSignature\\n' >ext && "
             "openssl x509 -req -in sign-rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-days 365 -sha256 -extfile ext -out sign-rsa.pem && "
             "mkdir -p sysdir && cp ca.pem sysdir/ && openssl rehash sysdir",
             r, r) != 0)
    return -1;
  if (setenv("SSL_CERT_FILE", pki("rogue/ca.pem"), 1) != 0 ||
      setenv("SSL_CERT_DIR", pki("rogue/sysdir"), 1) != 0)
    return -1;
  if (tb_crypto_global_init(err) != 0 || tb_keystore_new(&ks, err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  struct tb_key_spec gw = {"gw-sign", TB_KEY_RSA, pki("gateway/sign-rsa.key"), NULL,
                           pki("gateway/sign-rsa.pem"), NULL};
  struct tb_key_spec lz = {"lz-sign", TB_KEY_RSA, pki("partners/laizhou/sign-rsa.key"), NULL,
                           pki("partners/laizhou/sign-rsa.pem"), NULL};
  struct tb_key_spec nocert = {"gw-nocert", TB_KEY_RSA, pki("gateway/sign-rsa.key"), NULL, NULL,
                               NULL};
  if (tb_keystore_add_key(ks, &gw, err) != 0 || tb_keystore_add_key(ks, &lz, err) != 0 ||
      tb_keystore_add_key(ks, &nocert, err) != 0 ||
      tb_keystore_add_ca(ks, "gw-ca", pki("gateway/ca.pem"), err) != 0 ||
      tb_keystore_add_ca(ks, "lz-ca", pki("partners/laizhou/ca.pem"), err) != 0 ||
      tb_keystore_add_ca(ks, "zy-ca", pki("partners/zhaoyuan/ca.pem"), err) != 0) {
    fprintf(stderr, "%s\n", err);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tb_keystore_free(ks);
  tb_crypto_global_fini();
  tu_cleanup_dir();
  return 0;
}

static unsigned char *sign_msg(const char *key, size_t *len) {
  char err[TB_ERRMSG_MAX] = "";
  unsigned char *out[1] = {NULL}; /* an array: dodges a GCC 12 -O3 -Wdangling-pointer false positive */
  int rc = tb_xmldsig_sign(ks, key, msg_xml, strlen(msg_xml), out, len, err);
  if (rc != 0) fail_msg("sign: %s", err);
  return out[0];
}

static int verify(const char *ca, const void *xml, size_t len, char *err) {
  return tb_xmldsig_verify(ks, ca, xml, len, NULL, NULL, NULL, err);
}

/* Replaces the first occurrence of from by to in a malloc'd copy. */
static char *replace(const char *s, size_t len, const char *from, const char *to) {
  const char *p = strstr(s, from);
  if (p == NULL) fail_msg("\"%s\" not found", from);
  size_t fl = strlen(from), tl = strlen(to);
  char *o = malloc(len - fl + tl + 1);
  assert_non_null(o);
  size_t pre = (size_t)(p - s);
  memcpy(o, s, pre);
  memcpy(o + pre, to, tl);
  memcpy(o + pre + tl, p + fl, len - pre - fl);
  o[len - fl + tl] = '\0';
  return o;
}

static void test_our_signature_verifies_with_xmlsec1_cli(void **state) {
  (void)state;
  size_t n;
  unsigned char *signed_xml = sign_msg("gw-sign", &n);
  char *s = (char *)signed_xml;
  /* the profile, literally */
  assert_non_null(strstr(s, "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">"));
  assert_non_null(strstr(s, "Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\""));
  assert_non_null(strstr(s, "Algorithm=\"" RSA_SHA256 "\""));
  assert_non_null(strstr(s, "<ds:Reference URI=\"\">"));
  assert_non_null(strstr(s, "Algorithm=\"" SHA256 "\""));
  assert_non_null(strstr(s, "<ds:X509Certificate>"));
  assert_null(strstr(strstr(s, "<ds:X509Certificate>") + 1, "<ds:X509Certificate>"));
  /* last child of the root */
  const char *end = strstr(s, "</ds:Signature>");
  assert_non_null(end);
  assert_int_equal(strncmp(end, "</ds:Signature></TongbanMessage>", 32), 0);

  assert_int_equal(tu_write(tu_path("ours.xml"), signed_xml, n), 0);
  assert_int_equal(tu_run("xmlsec1 --verify --trusted-pem %s %s", pki("gateway/ca.pem"),
                          tu_path("ours.xml")), 0);
  /* negative controls for the CLI check: other CA; changed text */
  assert_int_not_equal(tu_run("xmlsec1 --verify --trusted-pem %s %s",
                              pki("partners/laizhou/ca.pem"), tu_path("ours.xml")), 0);
  char *t = replace(s, n, "<ZhuangTai>03<", "<ZhuangTai>05<");
  assert_int_equal(tu_write(tu_path("ours-t.xml"), t, strlen(t)), 0);
  assert_int_not_equal(tu_run("xmlsec1 --verify --trusted-pem %s %s", pki("gateway/ca.pem"),
                              tu_path("ours-t.xml")), 0);

  /* and we agree with both verdicts */
  char err[TB_ERRMSG_MAX] = "";
  struct tb_xmldsig_signer who;
  xmlDocPtr doc = NULL;
  int rc = tb_xmldsig_verify(ks, "gw-ca", signed_xml, n, NULL, &who, &doc, err);
  if (rc != 0) fail_msg("%s", err);
  assert_non_null(doc);
  assert_non_null(strstr(who.subject, "CN=tbgw 430603 signer"));
  assert_non_null(strstr(who.issuer, "CN=tbgw 430603 CA"));
  assert_int_equal(strlen(who.fingerprint), 64);
  xmlFreeDoc(doc);
  assert_int_equal(verify("lz-ca", signed_xml, n, err), TB_EAUTH);
  assert_int_equal(verify("gw-ca", t, strlen(t), err), TB_EAUTH);
  free(t);
  free(signed_xml);
}

/* Signs msg_xml with the xmlsec1 CLI from a template; returns the file. */
static unsigned char *cli_sign(const char *sig_alg, const char *uri, const char *key_dir,
                               const char *tag, size_t *len) {
  char tmpl[2048];
  snprintf(tmpl, sizeof tmpl, tmpl_fmt, sig_alg, uri, SHA256);
  char *doc = replace(msg_xml, strlen(msg_xml), "</TongbanMessage>", "");
  size_t dl = strlen(doc);
  char *full = malloc(dl + strlen(tmpl) + 32);
  assert_non_null(full);
  /* whitespace after the signature: allowed by the profile */
  sprintf(full, "%s%s\n</TongbanMessage>\n", doc, tmpl);
  assert_int_equal(tu_write(tu_path("%s.tmpl.xml", tag), full, strlen(full)), 0);
  free(full);
  free(doc);
  char key[512], cert[512];
  snprintf(key, sizeof key, "%s", pki(key_dir));
  snprintf(cert, sizeof cert, "%s", key);
  strcpy(strrchr(key, '/'), "/sign-rsa.key");
  strcpy(strrchr(cert, '/'), "/sign-rsa.pem");
  if (tu_run("xmlsec1 --sign --privkey-pem %s,%s --output %s %s", key, cert,
             tu_path("%s.signed.xml", tag), tu_path("%s.tmpl.xml", tag)) != 0)
    fail_msg("xmlsec1 --sign failed (see tools.log)");
  unsigned char *out = tu_read(tu_path("%s.signed.xml", tag), len);
  assert_non_null(out);
  return out;
}

static void test_xmlsec1_cli_signature_verifies_with_ours(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  size_t n;
  unsigned char *x = cli_sign(RSA_SHA256, "", "partners/laizhou/x", "lz", &n);
  struct tb_xmldsig_signer who;
  int rc = tb_xmldsig_verify(ks, "lz-ca", x, n, NULL, &who, NULL, err);
  if (rc != 0) fail_msg("%s", err);
  assert_non_null(strstr(who.subject, "CN=laizhou 370683 signer"));
  /* another partner's CA does not vouch for it */
  assert_int_equal(verify("zy-ca", x, n, err), TB_EAUTH);
  assert_int_equal(verify("gw-ca", x, n, err), TB_EAUTH);
  assert_int_equal(verify("no-such-ca", x, n, err), TB_ENOTFOUND);
  /* tampered text, tampered attribute, added element */
  char *t = replace((char *)x, n, "请补充结婚证复印件", "请补充户口本复印件");
  assert_int_equal(verify("lz-ca", t, strlen(t), err), TB_EAUTH);
  free(t);
  t = replace((char *)x, n, "version=\"1.0\">", "version=\"1.1\">");
  assert_int_equal(verify("lz-ca", t, strlen(t), err), TB_EAUTH);
  free(t);
  t = replace((char *)x, n, "</Header>", "<Extra/></Header>");
  assert_int_equal(verify("lz-ca", t, strlen(t), err), TB_EAUTH);
  free(t);
  free(x);
}

static void test_refuses_other_algorithms_and_references(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  size_t n;
  /* rsa-sha1: a valid signature, still refused */
  unsigned char *x = cli_sign(RSA_SHA1, "", "partners/laizhou/x", "sha1", &n);
  assert_int_equal(verify("lz-ca", x, n, err), TB_EAUTH);
  assert_non_null(strstr(err, "rsa-sha1"));
  free(x);
  /* a Reference to an ID instead of "" (covers part of the document) */
  x = cli_sign(RSA_SHA256, "#xpointer(/)", "partners/laizhou/x", "xp", &n);
  assert_int_equal(verify("lz-ca", x, n, err), TB_EAUTH);
  assert_non_null(strstr(err, "URI"));
  free(x);
  /* the Reference's transforms and digest must be exactly the profile */
  x = cli_sign(RSA_SHA256, "", "partners/laizhou/x", "ok", &n);
  char *t = replace((char *)x, n, "<ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
                    "");
  assert_int_equal(verify("lz-ca", t, strlen(t), err), TB_EAUTH);
  assert_non_null(strstr(err, "two transforms"));
  free(t);
  t = replace((char *)x, n, SHA256, "http://www.w3.org/2000/09/xmldsig#sha1");
  assert_int_equal(verify("lz-ca", t, strlen(t), err), TB_EAUTH);
  free(t);
  free(x);
}

static void test_signature_must_be_single_and_last(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  size_t n;
  unsigned char *x = sign_msg("gw-sign", &n);
  assert_int_equal(verify("gw-ca", x, n, err), 0);
  /* an element after the signature */
  char *t = replace((char *)x, n, "</ds:Signature>", "</ds:Signature><Late/>");
  assert_int_equal(verify("gw-ca", t, strlen(t), err), TB_EAUTH);
  assert_non_null(strstr(err, "last child"));
  free(t);
  /* whitespace may follow it (the xmlsec1-signed documents have some), but
   * it is content covered by the signature: adding some breaks it */
  t = replace((char *)x, n, "</ds:Signature>", "</ds:Signature>\n  ");
  assert_int_equal(verify("gw-ca", t, strlen(t), err), TB_EAUTH);
  assert_non_null(strstr(err, "does not verify"));
  free(t);
  /* a second signature (wrapping attack shape) */
  const char *b = strstr((char *)x, "<ds:Signature"), *e = strstr((char *)x, "</ds:Signature>");
  size_t sl = (size_t)(e - b) + strlen("</ds:Signature>");
  char *sig = strndup(b, sl);
  char *with = malloc(sl + 16);
  sprintf(with, "<Header>%s", sig);
  t = replace((char *)x, n, "<Header>", with);
  assert_int_equal(verify("gw-ca", t, strlen(t), err), TB_EAUTH);
  assert_non_null(strstr(err, "exactly one"));
  free(t), free(with), free(sig);
  /* no signature at all */
  assert_int_equal(verify("gw-ca", msg_xml, strlen(msg_xml), err), TB_EAUTH);
  assert_non_null(strstr(err, "not signed"));
  free(x);
}

static void test_certificate_must_chain_and_be_current(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  size_t n;
  unsigned char *x = sign_msg("gw-sign", &n);
  struct tb_xmldsig_verify_opts o = {{0, 0}, 0};
  o.at_time = (int64_t)time(NULL) + 5L * 365 * 86400; /* after the 825-day validity */
  assert_int_equal(tb_xmldsig_verify(ks, "gw-ca", x, n, &o, NULL, NULL, err), TB_EAUTH);
  assert_non_null(strstr(err, "expired"));
  o.at_time = (int64_t)time(NULL) + 86400;
  assert_int_equal(tb_xmldsig_verify(ks, "gw-ca", x, n, &o, NULL, NULL, err), 0);

  /* a self-signed certificate for the same key, swapped into KeyInfo */
  assert_int_equal(tu_run("openssl req -x509 -new -key %s -sha256 -days 30 -subj '/CN=mallory' "
                          "-outform DER -out %s", pki("gateway/sign-rsa.key"), tu_path("self.der")),
                   0);
  size_t dl;
  unsigned char *der = tu_read(tu_path("self.der"), &dl);
  char *b64, *cert_start, *cert_end;
  size_t bl;
  assert_int_equal(tb_crypto_base64_encode(der, dl, &b64, &bl, err), 0);
  cert_start = strstr((char *)x, "<ds:X509Certificate>") + strlen("<ds:X509Certificate>");
  cert_end = strstr(cert_start, "</ds:X509Certificate>");
  char *old = strndup(cert_start, (size_t)(cert_end - cert_start));
  char *t = replace((char *)x, n, old, b64);
  assert_int_equal(verify("gw-ca", t, strlen(t), err), TB_EAUTH);
  free(t), free(old), free(b64), free(der);
  free(x);
}

/* A certificate that chains to a CA the SYSTEM trusts (see setup) but not to
 * the partner's CA must not verify: only the named bundle is trusted. */
static void test_system_trusted_ca_is_not_trusted(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  size_t n;
  /* control: a default-paths store (what xmlsec's X509 store starts from)
   * does trust the rogue signer here */
  X509_STORE *sys = X509_STORE_new();
  assert_non_null(sys);
  assert_int_equal(X509_STORE_set_default_paths(sys), 1);
  FILE *f = fopen(pki("rogue/sign-rsa.pem"), "r");
  assert_non_null(f);
  X509 *leaf = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  assert_non_null(leaf);
  X509_STORE_CTX *sc = X509_STORE_CTX_new();
  assert_non_null(sc);
  assert_int_equal(X509_STORE_CTX_init(sc, sys, leaf, NULL), 1);
  assert_int_equal(X509_verify_cert(sc), 1);
  X509_STORE_CTX_free(sc);
  X509_free(leaf);
  X509_STORE_free(sys);

  unsigned char *x = cli_sign(RSA_SHA256, "", "rogue/x", "rogue", &n);
  /* control: xmlsec1 with its default keys manager (system trust) accepts it */
  assert_int_equal(tu_run("xmlsec1 --verify %s", tu_path("rogue.signed.xml")), 0);
  /* we do not, whichever CA is named */
  assert_int_equal(verify("lz-ca", x, n, err), TB_EAUTH);
  assert_non_null(strstr(err, "certificate"));
  assert_int_equal(verify("gw-ca", x, n, err), TB_EAUTH);
  assert_int_equal(verify("zy-ca", x, n, err), TB_EAUTH);
  free(x);
}

/* KeyInfo may carry intermediates next to the signer, but exactly one
 * end-entity certificate: the signer is never ambiguous. */
static void test_keyinfo_extra_certificates(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  size_t n, pl;
  unsigned char *x = cli_sign(RSA_SHA256, "", "partners/laizhou/x", "extra", &n);
  static const char *const extra[] = {"partners/laizhou/ca.pem", "rogue/ca.pem"};
  for (int i = 0; i < 2; i++) {
    char *pem = (char *)tu_read(pki(extra[i]), &pl);
    assert_non_null(pem);
    char *b = strstr(pem, "-----\n") + 6, *e = strstr(b, "-----END");
    char add[4096];
    snprintf(add, sizeof add, "</ds:X509Certificate><ds:X509Certificate>%.*s</ds:X509Certificate>",
             (int)(e - b), b);
    char *t = replace((char *)x, n, "</ds:X509Certificate>", add);
    int rc = verify("lz-ca", t, strlen(t), err);
    if (i == 0 && rc != 0) fail_msg("with the CA certificate: %s", err);
    if (i == 1) {
      assert_int_equal(rc, TB_EAUTH);
      assert_non_null(strstr(err, "end-entity"));
    }
    free(t);
    free(pem);
  }
  free(x);
}

/* Cost of one verification (printed; nothing asserted about time). Runs
 * with the real system trust store, as production does. */
static void test_verify_cost(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "", file[512], dir[512];
  size_t n;
  unsigned char *x = sign_msg("gw-sign", &n);
  snprintf(file, sizeof file, "%s", getenv("SSL_CERT_FILE"));
  snprintf(dir, sizeof dir, "%s", getenv("SSL_CERT_DIR"));
  unsetenv("SSL_CERT_FILE");
  unsetenv("SSL_CERT_DIR");
  enum { N = 100 };
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  for (int i = 0; i < N; i++)
    if (verify("gw-ca", x, n, err) != 0) fail_msg("%s", err);
  clock_gettime(CLOCK_MONOTONIC, &b);
  double us = ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) / N;
  printf("xmldsig: %.0f us per verify (%d runs, %zu-byte document)\n", us, N, n);
  setenv("SSL_CERT_FILE", file, 1);
  setenv("SSL_CERT_DIR", dir, 1);
  free(x);
}

static void test_sign_refuses_unsuitable_keys_and_documents(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  unsigned char *out = NULL;
  size_t n;
  assert_int_equal(tb_xmldsig_sign(ks, "gw-nocert", msg_xml, strlen(msg_xml), &out, &n, err),
                   TB_EINVAL);
  assert_non_null(strstr(err, "certificate"));
  assert_int_equal(tb_xmldsig_sign(ks, "nope", msg_xml, strlen(msg_xml), &out, &n, err),
                   TB_ENOTFOUND);
  unsigned char *x = sign_msg("gw-sign", &n);
  assert_int_equal(tb_xmldsig_sign(ks, "gw-sign", x, n, &out, &n, err), TB_EINVAL);
  assert_non_null(strstr(err, "already"));
  assert_null(out);
  free(x);
  /* sign_doc leaves the document unchanged on failure */
  xmlDocPtr doc;
  assert_int_equal(tb_xml_parse_safe(msg_xml, strlen(msg_xml), NULL, &doc, err), 0);
  assert_int_equal(tb_xmldsig_sign_doc(ks, "gw-nocert", doc, err), TB_EINVAL);
  assert_int_equal(tb_xmldsig_sign_doc(ks, "gw-sign", doc, err), 0);
  xmlFreeDoc(doc);
}

/* Hostile XML: refused at the parser, before anything is expanded or fetched. */
static void test_refuses_doctype_entities_and_bombs(void **state) {
  (void)state;
  char err[TB_ERRMSG_MAX] = "";
  size_t n;
  unsigned char *x = sign_msg("gw-sign", &n);
  const char *after_decl = strchr((char *)x, '\n') + 1;
  size_t head = (size_t)(after_decl - (char *)x);
  static const char *const prologs[] = {
      /* external entity */
      "<!DOCTYPE TongbanMessage [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n",
      /* billion laughs */
      "<!DOCTYPE TongbanMessage [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;"
      "&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\"><!ENTITY d \"&c;&c;&c;&c;&c;&c;"
      "&c;&c;&c;&c;\"><!ENTITY e \"&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;\"><!ENTITY f \"&e;&e;&e;&e;"
      "&e;&e;&e;&e;&e;&e;\"><!ENTITY g \"&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;\"><!ENTITY h \"&g;&g;"
      "&g;&g;&g;&g;&g;&g;&g;&g;\"><!ENTITY i \"&h;&h;&h;&h;&h;&h;&h;&h;&h;&h;\">]>\n",
      /* external DTD */
      "<!DOCTYPE TongbanMessage SYSTEM \"http://127.0.0.1:9/evil.dtd\">\n",
      /* a harmless-looking empty DOCTYPE is refused as well */
      "<!DOCTYPE TongbanMessage>\n",
  };
  for (size_t i = 0; i < sizeof prologs / sizeof prologs[0]; i++) {
    size_t pl = strlen(prologs[i]);
    char *doc = malloc(n + pl + 64);
    memcpy(doc, x, head);
    memcpy(doc + head, prologs[i], pl);
    memcpy(doc + head + pl, after_decl, n - head);
    size_t dl = n + pl;
    if (i < 2) { /* use the entity in the signed text */
      doc[dl] = '\0';
      char *t = replace(doc, dl, "<ZhuangTai>03</ZhuangTai>",
                        i == 0 ? "<ZhuangTai>&xxe;</ZhuangTai>" : "<ZhuangTai>&i;</ZhuangTai>");
      free(doc);
      doc = t;
      dl = strlen(t);
    }
    clock_t t0 = clock();
    int rc = verify("gw-ca", doc, dl, err);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    if (rc != TB_EPARSE) fail_msg("prolog %zu: rc %d (%s)", i, rc, err);
    assert_non_null(strstr(err, "DOCTYPE"));
    assert_true(secs < 1.0); /* nothing was expanded */
    xmlDocPtr d = NULL;
    assert_int_equal(tb_xml_parse_safe(doc, dl, NULL, &d, err), TB_EPARSE);
    assert_null(d);
    free(doc);
  }
  free(x);

  /* undeclared entity, malformed, too deep, too big */
  const char *undeclared = "<a>&xxe;</a>";
  xmlDocPtr d = NULL;
  assert_int_equal(tb_xml_parse_safe(undeclared, strlen(undeclared), NULL, &d, err), TB_EPARSE);
  const char *broken = "<a><b></a>";
  assert_int_equal(tb_xml_parse_safe(broken, strlen(broken), NULL, &d, err), TB_EPARSE);
  assert_non_null(strstr(err, "line 1"));
  char deep[2000] = "";
  for (int i = 0; i < 70; i++) strcat(deep, "<a>");
  for (int i = 0; i < 70; i++) strcat(deep, "</a>");
  assert_int_equal(tb_xml_parse_safe(deep, strlen(deep), NULL, &d, err), TB_ELIMIT);
  struct tb_xml_limits lim = {100, 0};
  assert_int_equal(tb_xml_parse_safe(deep, strlen(deep), &lim, &d, err), TB_ELIMIT);
  lim.max_bytes = 0;
  lim.max_depth = 80;
  assert_int_equal(tb_xml_parse_safe(deep, strlen(deep), &lim, &d, err), 0);
  xmlFreeDoc(d);
}

static void *verify_worker(void *arg) {
  const unsigned char *x = arg;
  char err[TB_ERRMSG_MAX];
  for (int i = 0; i < 8; i++) {
    size_t n;
    unsigned char *s = NULL;
    if (tb_xmldsig_sign(ks, "gw-sign", msg_xml, strlen(msg_xml), &s, &n, err) != 0 ||
        verify("gw-ca", s, n, err) != 0 || verify("lz-ca", x, strlen((const char *)x), err) != 0 ||
        verify("gw-ca", x, strlen((const char *)x), err) != TB_EAUTH) {
      free(s);
      return (void *)1;
    }
    free(s);
  }
  return NULL;
}

static void test_concurrent_sign_and_verify(void **state) {
  (void)state;
  size_t n;
  unsigned char *x = cli_sign(RSA_SHA256, "", "partners/laizhou/x", "mt", &n);
  pthread_t t[4];
  for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&t[i], NULL, verify_worker, x), 0);
  for (int i = 0; i < 4; i++) {
    void *r;
    assert_int_equal(pthread_join(t[i], &r), 0);
    assert_null(r);
  }
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_our_signature_verifies_with_xmlsec1_cli),
      cmocka_unit_test(test_xmlsec1_cli_signature_verifies_with_ours),
      cmocka_unit_test(test_refuses_other_algorithms_and_references),
      cmocka_unit_test(test_signature_must_be_single_and_last),
      cmocka_unit_test(test_certificate_must_chain_and_be_current),
      cmocka_unit_test(test_system_trusted_ca_is_not_trusted),
      cmocka_unit_test(test_keyinfo_extra_certificates),
      cmocka_unit_test(test_verify_cost),
      cmocka_unit_test(test_sign_refuses_unsuitable_keys_and_documents),
      cmocka_unit_test(test_refuses_doctype_entities_and_bombs),
      cmocka_unit_test(test_concurrent_sign_and_verify),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
