/*
 * Enveloped XML-DSig for lu-xml through xmlsec1 (OpenSSL backend), and the
 * hardened XML parser every untrusted document goes through. The profile
 * check (profile_check) is ours and runs before xmlsec, so a refusal names
 * the exact rule; xmlsec is then restricted to the same algorithms and the
 * empty URI, so nothing slips past in case the two differ.
 *
 * Trust is ours too. xmlsec's OpenSSL X509 store (what a keys manager from
 * xmlSecCryptoAppDefaultKeysMngrInit holds) starts from
 * X509_STORE_set_default_paths(): it would trust every system root CA next
 * to the partner's, and it re-reads the system bundle on every call. So
 * verification uses no keys manager: we parse the KeyInfo certificates,
 * pick the signer, verify it against the named CA's own store (built once
 * at keystore load, nothing but the bundle) and hand xmlsec that
 * certificate's public key as the only key it may use.
 */
#include "crypto/xmldsig.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/SAX2.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <xmlsec/base64.h>
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/openssl/evp.h>
#include <xmlsec/openssl/x509.h>
#include <xmlsec/templates.h>
#include <xmlsec/xmldsig.h>
#include <xmlsec/xmlsec.h>

#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"

#define DSIG_NS "http://www.w3.org/2000/09/xmldsig#"
#define ALG_EXC_C14N "http://www.w3.org/2001/10/xml-exc-c14n#"
#define ALG_RSA_SHA256 "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
#define ALG_ENVELOPED "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
#define ALG_SHA256 "http://www.w3.org/2001/04/xmlenc#sha256"

/* ---- xmlsec error capture -------------------------------------------------
 * xmlsec reports through one process-wide callback. We keep the first
 * (innermost, most specific) message per thread since the last reset, so a
 * call can put the real cause ("certificate has expired") in its err. */

static _Thread_local char xmlsec_first[200];
static _Thread_local int xmlsec_have;

static void on_xmlsec_error(const char *file, int line, const char *func,
                            const char *object, const char *subject, int reason,
                            const char *msg) {
  (void)file, (void)line, (void)func, (void)object, (void)reason;
  if (xmlsec_have) return;
  snprintf(xmlsec_first, sizeof xmlsec_first, "%s%s%s", subject ? subject : "",
           subject ? ": " : "", msg ? msg : "unknown xmlsec error");
  xmlsec_have = 1;
}

static void xmlsec_reset(void) {
  xmlsec_have = 0;
  xmlsec_first[0] = '\0';
}

static const char *xmlsec_detail(void) {
  return xmlsec_have ? xmlsec_first : "no detail";
}

void tb__xmlsec_errors_install(void) {
  xmlSecErrorsSetCallback(on_xmlsec_error);
}

/* ---- safe parsing --------------------------------------------------------- */

struct parse_state {
  int doctype;
  int doctype_line;
};

/* The parser calls this on "<!DOCTYPE name ...", before reading the internal
 * subset: stopping here means no entity is ever declared, let alone
 * expanded, and no external subset is looked at. */
static void on_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id,
                       const xmlChar *system_id) {
  (void)name, (void)external_id, (void)system_id;
  xmlParserCtxtPtr ctxt = ctx;
  struct parse_state *st = ctxt->_private;
  st->doctype = 1;
  st->doctype_line = xmlSAX2GetLineNumber(ctxt);
  xmlStopParser(ctxt);
}

static void on_xml_error(void *user, xmlErrorPtr e) {
  (void)user, (void)e; /* kept in ctxt->lastError; never printed to stderr */
}

static int depth_ok(xmlNodePtr root, unsigned max) {
  unsigned d = 1;
  xmlNodePtr n = root;
  while (n != NULL) {
    if (n->type == XML_ELEMENT_NODE && d > max) return 0;
    if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
      n = n->children;
      d++;
      continue;
    }
    while (n != NULL && n != root && n->next == NULL) {
      n = n->parent;
      d--;
    }
    if (n == NULL || n == root) break;
    n = n->next;
  }
  return 1;
}

int tb_xml_parse_safe(const void *xml, size_t len, const struct tb_xml_limits *limits,
                      xmlDocPtr *doc_out, char *err) {
  *doc_out = NULL;
  size_t max_bytes = limits && limits->max_bytes ? limits->max_bytes
                                                 : TB_XMLDSIG_DEFAULT_MAX_BYTES;
  unsigned max_depth = limits && limits->max_depth ? limits->max_depth
                                                   : TB_XMLDSIG_DEFAULT_MAX_DEPTH;
  if (xml == NULL || len == 0) return tb_errf(err, TB_EPARSE, "XML: empty document");
  if (len > max_bytes || len > INT_MAX)
    return tb_errf(err, TB_ELIMIT, "XML: document of %zu bytes exceeds the limit of %zu",
                   len, max_bytes);
  xmlParserCtxtPtr ctxt = xmlCreateMemoryParserCtxt(xml, (int)len);
  if (ctxt == NULL) return tb_errf(err, TB_ENOMEM, "XML: cannot create a parser");
  /* NONET: never fetch anything. No NOENT (entities are not substituted),
   * no DTDLOAD/DTDATTR/DTDVALID. HUGE only lifts the 10 MB text-node cap
   * that base64 attachments hit; the amplification it would otherwise allow
   * needs entity declarations, which the DOCTYPE refusal rules out, and the
   * total size is capped above. */
  xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_HUGE | XML_PARSE_NOERROR |
                              XML_PARSE_NOWARNING);
  struct parse_state st = {0, 0};
  ctxt->_private = &st;
  ctxt->sax->internalSubset = on_doctype;
  ctxt->sax->serror = on_xml_error;
  xmlParseDocument(ctxt);
  xmlDocPtr doc = ctxt->myDoc;
  int wf = ctxt->wellFormed;
  int rc = 0;
  if (st.doctype) {
    rc = tb_errf(err, TB_EPARSE,
                 "XML line %d: DOCTYPE declarations are not allowed (no DTDs, no entities)",
                 st.doctype_line);
  } else if (!wf || doc == NULL) {
    xmlErrorPtr e = xmlCtxtGetLastError(ctxt);
    char msg[200] = "not well-formed";
    if (e != NULL && e->message != NULL) {
      snprintf(msg, sizeof msg, "%s", e->message);
      size_t n = strlen(msg);
      while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
    }
    rc = tb_errf(err, TB_EPARSE, "XML line %d column %d: %s", e ? e->line : 0,
                 e ? e->int2 : 0, msg);
  } else if (doc->intSubset != NULL || doc->extSubset != NULL) {
    rc = tb_errf(err, TB_EPARSE, "XML: DOCTYPE declarations are not allowed");
  } else if (xmlDocGetRootElement(doc) == NULL) {
    rc = tb_errf(err, TB_EPARSE, "XML: no root element");
  } else if (!depth_ok(xmlDocGetRootElement(doc), max_depth)) {
    rc = tb_errf(err, TB_ELIMIT, "XML: elements nested deeper than %u", max_depth);
  }
  ctxt->myDoc = NULL;
  xmlFreeParserCtxt(ctxt);
  if (rc != 0) {
    xmlFreeDoc(doc);
    return rc;
  }
  *doc_out = doc;
  return 0;
}

/* ---- the profile ------------------------------------------------------- */

static int is_dsig(const xmlNode *n, const char *name) {
  return n != NULL && n->type == XML_ELEMENT_NODE && n->ns != NULL &&
         xmlStrEqual(n->ns->href, BAD_CAST DSIG_NS) &&
         (name == NULL || xmlStrEqual(n->name, BAD_CAST name));
}

static xmlNodePtr first_el(xmlNodePtr n) {
  while (n != NULL && n->type != XML_ELEMENT_NODE) n = n->next;
  return n;
}

static xmlNodePtr next_el(xmlNodePtr n) {
  return n ? first_el(n->next) : NULL;
}

/* Algorithm="want"? On mismatch writes the algorithm found into got. */
static int alg_is(xmlNodePtr n, const char *want, char *got, size_t cap) {
  xmlChar *a = xmlGetNoNsProp(n, BAD_CAST "Algorithm");
  int ok = a != NULL && xmlStrEqual(a, BAD_CAST want);
  snprintf(got, cap, "%s", a ? (const char *)a : "(none)");
  xmlFree(a);
  return ok;
}

/* Every ds:Signature in the document (counts past 1 are enough to refuse). */
static int count_signatures(xmlNodePtr root, xmlNodePtr *first) {
  int count = 0;
  xmlNodePtr n = root;
  *first = NULL;
  while (n != NULL) {
    if (is_dsig(n, "Signature") && count++ == 0) *first = n;
    if (n->type == XML_ELEMENT_NODE && n->children != NULL) {
      n = n->children;
      continue;
    }
    while (n != NULL && n != root && n->next == NULL) n = n->parent;
    if (n == NULL || n == root) break;
    n = n->next;
  }
  return count;
}

#define REFUSE(...) return tb_errf(err, TB_EAUTH, "XML-DSig: " __VA_ARGS__)

/*
 * Exactly the lu-xml profile: one ds:Signature, the last child of the root
 * (only whitespace may follow); SignedInfo = exc-c14n, rsa-sha256, one
 * Reference URI="" with transforms [enveloped, exc-c14n] and sha256;
 * SignatureValue; KeyInfo with an X509Data/X509Certificate; no ds:Object.
 */
static int profile_check(xmlDocPtr doc, xmlNodePtr *sig_out, char *err) {
  char got[160];
  xmlNodePtr root = xmlDocGetRootElement(doc), sig;
  *sig_out = NULL;
  int n = count_signatures(root, &sig);
  if (n == 0) REFUSE("the document is not signed (no ds:Signature)");
  if (n > 1) REFUSE("%d ds:Signature elements; exactly one is allowed", n);
  if (sig->parent != root) REFUSE("ds:Signature must be a child of the root element");
  for (xmlNodePtr t = sig->next; t != NULL; t = t->next)
    if (t->type != XML_TEXT_NODE || !xmlIsBlankNode(t))
      REFUSE("ds:Signature must be the last child of the root element");

  xmlNodePtr si = first_el(sig->children);
  xmlNodePtr sv = next_el(si), ki = next_el(sv);
  if (!is_dsig(si, "SignedInfo") || !is_dsig(sv, "SignatureValue"))
    REFUSE("ds:Signature must start with SignedInfo and SignatureValue");
  if (!is_dsig(ki, "KeyInfo")) REFUSE("ds:KeyInfo with the signer's certificate is missing");
  if (next_el(ki) != NULL) REFUSE("unexpected element after ds:KeyInfo (ds:Object is not allowed)");

  xmlNodePtr c14n = first_el(si->children), sm = next_el(c14n), ref = next_el(sm);
  if (!is_dsig(c14n, "CanonicalizationMethod") || !is_dsig(sm, "SignatureMethod"))
    REFUSE("SignedInfo must hold CanonicalizationMethod and SignatureMethod");
  if (!alg_is(c14n, ALG_EXC_C14N, got, sizeof got))
    REFUSE("CanonicalizationMethod %s is not allowed (want %s)", got, ALG_EXC_C14N);
  if (!alg_is(sm, ALG_RSA_SHA256, got, sizeof got))
    REFUSE("SignatureMethod %s is not allowed (want %s)", got, ALG_RSA_SHA256);
  if (!is_dsig(ref, "Reference")) REFUSE("SignedInfo holds no Reference");
  if (next_el(ref) != NULL) REFUSE("exactly one Reference is allowed");
  xmlChar *uri = xmlGetNoNsProp(ref, BAD_CAST "URI");
  int uri_ok = uri != NULL && uri[0] == '\0';
  snprintf(got, sizeof got, "%s", uri ? (const char *)uri : "(none)");
  xmlFree(uri);
  if (!uri_ok) REFUSE("Reference URI=\"%s\" is not allowed: it must be \"\" (the whole document)", got);

  xmlNodePtr tr = first_el(ref->children), dm = next_el(tr), dv = next_el(dm);
  if (!is_dsig(tr, "Transforms")) REFUSE("Reference must have Transforms");
  xmlNodePtr t1 = first_el(tr->children), t2 = next_el(t1);
  if (!is_dsig(t1, "Transform") || !is_dsig(t2, "Transform") || next_el(t2) != NULL)
    REFUSE("Reference must have exactly two transforms");
  if (!alg_is(t1, ALG_ENVELOPED, got, sizeof got))
    REFUSE("first transform %s is not allowed (want %s)", got, ALG_ENVELOPED);
  if (!alg_is(t2, ALG_EXC_C14N, got, sizeof got))
    REFUSE("second transform %s is not allowed (want %s)", got, ALG_EXC_C14N);
  if (!is_dsig(dm, "DigestMethod") || !is_dsig(dv, "DigestValue") || next_el(dv) != NULL)
    REFUSE("Reference must end with DigestMethod and DigestValue");
  if (!alg_is(dm, ALG_SHA256, got, sizeof got))
    REFUSE("DigestMethod %s is not allowed (want %s)", got, ALG_SHA256);

  int certs = 0;
  for (xmlNodePtr x = first_el(ki->children); x != NULL; x = next_el(x)) {
    if (!is_dsig(x, "X509Data"))
      REFUSE("KeyInfo may only hold X509Data (found %s)", (const char *)x->name);
    for (xmlNodePtr c = first_el(x->children); c != NULL; c = next_el(c))
      if (is_dsig(c, "X509Certificate")) certs++;
  }
  if (certs == 0) REFUSE("KeyInfo/X509Data/X509Certificate is missing");
  *sig_out = sig;
  return 0;
}

/* ---- signing ------------------------------------------------------------ */

static xmlSecKeyPtr make_sign_key(const struct tb_key *k, char *err) {
  /* xmlsec gets its own copies: the keystore's objects are shared between
   * threads and must never be touched by a library that may cache in them. */
  EVP_PKEY *pk = EVP_PKEY_dup(k->pkey);
  xmlSecKeyDataPtr val = pk ? xmlSecOpenSSLEvpKeyAdopt(pk) : NULL;
  xmlSecKeyPtr key = NULL;
  if (val == NULL) {
    EVP_PKEY_free(pk);
    goto fail;
  }
  key = xmlSecKeyCreate();
  if (key == NULL || xmlSecKeySetValue(key, val) < 0) {
    xmlSecKeyDataDestroy(val);
    goto fail;
  }
  xmlSecKeyDataPtr x509 = xmlSecKeyEnsureData(key, xmlSecOpenSSLKeyDataX509Id);
  X509 *c1 = X509_dup(k->cert), *c2 = X509_dup(k->cert);
  /* AdoptKeyCert names the key's own certificate; AdoptCert puts it in the
   * list that is written out as X509Certificate. */
  int ok = x509 != NULL && c1 != NULL && c2 != NULL &&
           xmlSecOpenSSLKeyDataX509AdoptKeyCert(x509, c1) >= 0;
  if (!ok) {
    X509_free(c1);
    X509_free(c2);
    goto fail;
  }
  if (xmlSecOpenSSLKeyDataX509AdoptCert(x509, c2) < 0) {
    X509_free(c2);
    goto fail;
  }
  return key;
fail:
  if (key != NULL) xmlSecKeyDestroy(key);
  tb_errf(err, TB_ECRYPTO, "XML-DSig: cannot prepare key \"%s\": %s", k->name,
          xmlsec_detail());
  return NULL;
}

int tb_xmldsig_sign_doc(const struct tb_keystore *ks, const char *key_name, xmlDocPtr doc,
                        char *err) {
  if (!tb__crypto_initialised())
    return tb_errf(err, TB_EINVAL, "XML-DSig: tb_crypto_global_init() was not called");
  const struct tb_key *k;
  int rc = tb__keystore_find_key(ks, key_name, &k, err);
  if (rc != 0) return rc;
  if (k->kind != TB_KEY_RSA || !k->has_private || k->cert == NULL)
    return tb_errf(err, TB_EINVAL,
                   "XML-DSig: key \"%s\" must be an RSA private key with a certificate",
                   key_name);
  xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL, existing;
  if (root == NULL) return tb_errf(err, TB_EINVAL, "XML-DSig: the document has no root element");
  if (count_signatures(root, &existing) != 0)
    return tb_errf(err, TB_EINVAL, "XML-DSig: the document already holds a ds:Signature");

  xmlsec_reset();
  xmlSecDSigCtxPtr dsig = NULL;
  xmlNodePtr sig = xmlSecTmplSignatureCreateNsPref(doc, xmlSecTransformExclC14NId,
                                                   xmlSecTransformRsaSha256Id, NULL,
                                                   BAD_CAST "ds");
  if (sig == NULL) goto fail;
  if (xmlAddChild(root, sig) == NULL) {
    xmlFreeNode(sig);
    sig = NULL;
    goto fail;
  }
  xmlNodePtr ref = xmlSecTmplSignatureAddReference(sig, xmlSecTransformSha256Id, NULL,
                                                   BAD_CAST "", NULL);
  xmlNodePtr ki = xmlSecTmplSignatureEnsureKeyInfo(sig, NULL);
  xmlNodePtr x509 = ki ? xmlSecTmplKeyInfoAddX509Data(ki) : NULL;
  if (ref == NULL || xmlSecTmplReferenceAddTransform(ref, xmlSecTransformEnvelopedId) == NULL ||
      xmlSecTmplReferenceAddTransform(ref, xmlSecTransformExclC14NId) == NULL ||
      x509 == NULL || xmlSecTmplX509DataAddCertificate(x509) == NULL)
    goto fail;
  dsig = xmlSecDSigCtxCreate(NULL);
  if (dsig == NULL) goto fail;
  dsig->signKey = make_sign_key(k, err);
  if (dsig->signKey == NULL) {
    rc = TB_ECRYPTO; /* err already says why */
    goto undo;
  }
  if (xmlSecDSigCtxSign(dsig, sig) < 0) goto fail;
  xmlSecDSigCtxDestroy(dsig);
  ERR_clear_error();
  return 0;
fail:
  rc = tb_errf(err, TB_ECRYPTO, "XML-DSig: signing with key \"%s\" failed: %s", key_name,
               xmlsec_detail());
undo:
  if (dsig != NULL) xmlSecDSigCtxDestroy(dsig);
  if (sig != NULL) {
    xmlUnlinkNode(sig);
    xmlFreeNode(sig);
  }
  ERR_clear_error();
  return rc;
}

int tb_xmldsig_sign(const struct tb_keystore *ks, const char *key_name, const void *xml,
                    size_t len, unsigned char **out, size_t *out_len, char *err) {
  *out = NULL;
  *out_len = 0;
  xmlDocPtr doc;
  int rc = tb_xml_parse_safe(xml, len, NULL, &doc, err);
  if (rc != 0) return rc;
  if ((rc = tb_xmldsig_sign_doc(ks, key_name, doc, err)) == 0) {
    xmlChar *mem = NULL;
    int size = 0;
    xmlDocDumpMemoryEnc(doc, &mem, &size, "UTF-8");
    if (mem == NULL || size <= 0 || (*out = malloc((size_t)size + 1)) == NULL) {
      rc = tb_errf(err, TB_ENOMEM, "XML-DSig: cannot serialize the signed document");
    } else {
      memcpy(*out, mem, (size_t)size);
      (*out)[size] = '\0';
      *out_len = (size_t)size;
    }
    xmlFree(mem);
  }
  xmlFreeDoc(doc);
  return rc;
}

/* ---- verification ------------------------------------------------------- */

static void signer_info(X509 *cert, struct tb_xmldsig_signer *s) {
  tb__x509_name_text(X509_get_subject_name(cert), s->subject, sizeof s->subject);
  tb__x509_name_text(X509_get_issuer_name(cert), s->issuer, sizeof s->issuer);
  unsigned char md[32];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) == 1 && n == sizeof md)
    tb_crypto_hex(md, sizeof md, s->fingerprint);
  ERR_clear_error();
}

#define MAX_KEYINFO_CERTS 8

/* Every KeyInfo/X509Data/X509Certificate, parsed (base64 with whitespace,
 * then DER that must be exactly one certificate). */
static int keyinfo_certs(xmlNodePtr sig, STACK_OF(X509) **out, char *err) {
  xmlNodePtr ki = next_el(next_el(first_el(sig->children))); /* profile_check */
  STACK_OF(X509) *certs = sk_X509_new_null();
  if (certs == NULL) return tb_errf(err, TB_ENOMEM, "XML-DSig: out of memory");
  int rc = 0;
  for (xmlNodePtr x = first_el(ki->children); rc == 0 && x != NULL; x = next_el(x)) {
    for (xmlNodePtr c = first_el(x->children); rc == 0 && c != NULL; c = next_el(c)) {
      if (!is_dsig(c, "X509Certificate")) continue;
      if (sk_X509_num(certs) == MAX_KEYINFO_CERTS) {
        rc = tb_errf(err, TB_EAUTH, "XML-DSig: more than %d certificates in KeyInfo",
                     MAX_KEYINFO_CERTS);
        break;
      }
      xmlChar *b64 = xmlNodeGetContent(c);
      xmlSecSize dl = 0;
      X509 *cert = NULL;
      if (b64 != NULL && xmlSecBase64DecodeInPlace(b64, &dl) == 0 && dl > 0) {
        const unsigned char *p = b64;
        cert = d2i_X509(NULL, &p, (long)dl);
        if (cert != NULL && p != b64 + dl) { /* trailing bytes */
          X509_free(cert);
          cert = NULL;
        }
      }
      xmlFree(b64);
      if (cert == NULL) {
        rc = tb_errf(err, TB_EAUTH, "XML-DSig: KeyInfo X509Certificate %d is not a certificate",
                     sk_X509_num(certs) + 1);
      } else if (sk_X509_push(certs, cert) <= 0) {
        X509_free(cert);
        rc = tb_errf(err, TB_ENOMEM, "XML-DSig: out of memory");
      }
    }
  }
  if (rc == 0 && sk_X509_num(certs) == 0)
    rc = tb_errf(err, TB_EAUTH, "XML-DSig: KeyInfo/X509Data/X509Certificate is missing");
  if (rc != 0) {
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
    return rc;
  }
  *out = certs;
  return 0;
}

/* The signer: the one certificate in KeyInfo that issued none of the others
 * (the rest may be intermediates). Several end-entity certificates would
 * make the signer ambiguous: refused. */
static int pick_signer(STACK_OF(X509) *certs, X509 **signer, char *err) {
  int n = sk_X509_num(certs), leaves = 0;
  *signer = NULL;
  for (int i = 0; i < n; i++) {
    X509 *c = sk_X509_value(certs, i);
    int issuer = 0;
    for (int j = 0; j < n && !issuer; j++)
      issuer = j != i && X509_check_issued(c, sk_X509_value(certs, j)) == X509_V_OK;
    if (!issuer) {
      leaves++;
      *signer = c;
    }
  }
  ERR_clear_error();
  if (leaves != 1) {
    *signer = NULL;
    return tb_errf(err, TB_EAUTH,
                   "XML-DSig: KeyInfo holds %d end-entity certificates; exactly one (the "
                   "signer's) is allowed", leaves);
  }
  return 0;
}

/*
 * The trust decision, entirely ours: the signer certificate must chain to a
 * certificate of the named bundle — the bundle's prebuilt store, which
 * holds nothing else and never reads default paths — with the other KeyInfo
 * certificates as untrusted intermediates, every certificate of the chain
 * valid at `at` (0: now). Any bundle certificate is a trust anchor
 * (PARTIAL_CHAIN), so a bundle holding only the partner's issuing
 * intermediate works. No purpose/EKU restriction (purpose "any").
 */
static int check_chain(const struct tb_ca *ca, X509 *signer, STACK_OF(X509) *certs, int64_t at,
                       char *err) {
  X509_STORE_CTX *xsc = X509_STORE_CTX_new();
  if (xsc == NULL || X509_STORE_CTX_init(xsc, ca->store, signer, certs) != 1 ||
      X509_STORE_CTX_set_purpose(xsc, X509_PURPOSE_ANY) != 1) {
    X509_STORE_CTX_free(xsc);
    return tb__ossl_err(err, TB_ECRYPTO, "XML-DSig: cannot set up certificate verification");
  }
  X509_VERIFY_PARAM *vp = X509_STORE_CTX_get0_param(xsc);
  X509_VERIFY_PARAM_set_flags(vp, X509_V_FLAG_PARTIAL_CHAIN);
  X509_VERIFY_PARAM_set_depth(vp, 9);
  if (at != 0) X509_STORE_CTX_set_time(xsc, 0, (time_t)at);
  int rc = 0;
  if (X509_verify_cert(xsc) != 1) {
    int e = X509_STORE_CTX_get_error(xsc);
    char subject[256];
    X509 *bad = X509_STORE_CTX_get_current_cert(xsc);
    tb__x509_name_text(X509_get_subject_name(bad ? bad : signer), subject, sizeof subject);
    rc = tb_errf(err, TB_EAUTH,
                 "XML-DSig: signer certificate not trusted by CA \"%s\": %s (depth %d, %s)",
                 ca->name, X509_verify_cert_error_string(e),
                 X509_STORE_CTX_get_error_depth(xsc), subject);
  }
  X509_STORE_CTX_free(xsc);
  ERR_clear_error();
  return rc;
}

/* xmlsec's verification key: the signer certificate's public key, nothing
 * else (no keys manager, so KeyInfo is never resolved by xmlsec). */
static int make_verify_key(X509 *signer, xmlSecKeyPtr *out, char *err) {
  *out = NULL;
  EVP_PKEY *pub = X509_get_pubkey(signer);
  if (pub == NULL || EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA) {
    EVP_PKEY_free(pub);
    ERR_clear_error();
    return tb_errf(err, TB_EAUTH, "XML-DSig: the signer certificate does not hold an RSA key");
  }
  xmlSecKeyDataPtr val = xmlSecOpenSSLEvpKeyAdopt(pub);
  if (val == NULL) {
    EVP_PKEY_free(pub);
    goto fail;
  }
  xmlSecKeyPtr key = xmlSecKeyCreate();
  if (key == NULL || xmlSecKeySetValue(key, val) < 0) {
    if (key != NULL) xmlSecKeyDestroy(key);
    xmlSecKeyDataDestroy(val);
    goto fail;
  }
  *out = key;
  return 0;
fail:
  return tb_errf(err, TB_ECRYPTO, "XML-DSig: cannot prepare the verification key: %s",
                 xmlsec_detail());
}

int tb_xmldsig_verify(const struct tb_keystore *ks, const char *ca_name, const void *xml,
                      size_t len, const struct tb_xmldsig_verify_opts *opts,
                      struct tb_xmldsig_signer *signer, xmlDocPtr *doc_out, char *err) {
  if (doc_out != NULL) *doc_out = NULL;
  if (signer != NULL) memset(signer, 0, sizeof *signer);
  if (!tb__crypto_initialised())
    return tb_errf(err, TB_EINVAL, "XML-DSig: tb_crypto_global_init() was not called");
  const struct tb_ca *ca;
  int rc = tb__keystore_find_ca(ks, ca_name, &ca, err);
  if (rc != 0) return rc;
  xmlDocPtr doc;
  if ((rc = tb_xml_parse_safe(xml, len, opts ? &opts->limits : NULL, &doc, err)) != 0)
    return rc;
  xmlNodePtr sig = NULL;
  if ((rc = profile_check(doc, &sig, err)) != 0) {
    xmlFreeDoc(doc);
    return rc;
  }

  /* 1. Trust: which certificate signed, and does the named CA vouch for it.
   * Nothing but ca->store is consulted: no system roots, no default paths. */
  STACK_OF(X509) *certs = NULL;
  X509 *cert = NULL;
  xmlSecDSigCtxPtr dsig = NULL;
  xmlSecKeyPtr key = NULL;
  if ((rc = keyinfo_certs(sig, &certs, err)) != 0 || (rc = pick_signer(certs, &cert, err)) != 0 ||
      (rc = check_chain(ca, cert, certs, opts ? opts->at_time : 0, err)) != 0)
    goto done;

  /* 2. The signature, by xmlsec, with exactly that certificate's key. */
  xmlsec_reset();
  if ((rc = make_verify_key(cert, &key, err)) != 0) goto done;
  dsig = xmlSecDSigCtxCreate(NULL); /* no keys manager: no X509 store at all */
  if (dsig == NULL) {
    xmlSecKeyDestroy(key);
    rc = tb_errf(err, TB_ENOMEM, "XML-DSig: cannot create a context");
    goto done;
  }
  dsig->signKey = key; /* owned by dsig from here; KeyInfo is not resolved */
  /* Belt and braces behind profile_check: xmlsec itself accepts nothing else. */
  dsig->enabledReferenceUris = xmlSecTransformUriTypeEmpty;
  if (xmlSecDSigCtxEnableSignatureTransform(dsig, xmlSecTransformExclC14NId) < 0 ||
      xmlSecDSigCtxEnableSignatureTransform(dsig, xmlSecTransformRsaSha256Id) < 0 ||
      xmlSecDSigCtxEnableReferenceTransform(dsig, xmlSecTransformEnvelopedId) < 0 ||
      xmlSecDSigCtxEnableReferenceTransform(dsig, xmlSecTransformExclC14NId) < 0 ||
      xmlSecDSigCtxEnableReferenceTransform(dsig, xmlSecTransformSha256Id) < 0) {
    rc = tb_errf(err, TB_ECRYPTO, "XML-DSig: cannot restrict the context: %s",
                 xmlsec_detail());
    goto done;
  }
  if (xmlSecDSigCtxVerify(dsig, sig) < 0) {
    rc = tb_errf(err, TB_EAUTH, "XML-DSig: verification failed: %s", xmlsec_detail());
    goto done;
  }
  if (dsig->status != xmlSecDSigStatusSucceeded) {
    rc = tb_errf(err, TB_EAUTH,
                 "XML-DSig: signature does not verify (document changed after signing, "
                 "or wrong key)%s%s", xmlsec_have ? ": " : "", xmlsec_have ? xmlsec_first : "");
    goto done;
  }
  /* 3. The key xmlsec verified with is the one we gave it, and it is the
   * checked certificate's public key (cheap; guards against any future
   * xmlsec behaviour that would resolve KeyInfo on its own). */
  xmlSecKeyDataPtr val = dsig->signKey == key ? xmlSecKeyGetValue(dsig->signKey) : NULL;
  EVP_PKEY *used = val ? xmlSecOpenSSLEvpKeyDataGetEvp(val) : NULL;
  if (used == NULL || EVP_PKEY_eq(used, X509_get0_pubkey(cert)) != 1) {
    rc = tb_errf(err, TB_EAUTH,
                 "XML-DSig: the signature was not verified with the signer certificate's key");
    goto done;
  }
  if (signer != NULL) signer_info(cert, signer);
done:
  if (dsig != NULL) xmlSecDSigCtxDestroy(dsig);
  sk_X509_pop_free(certs, X509_free);
  ERR_clear_error();
  if (rc == 0 && doc_out != NULL) {
    *doc_out = doc;
  } else {
    xmlFreeDoc(doc);
  }
  return rc;
}
