/*
 * Enveloped XML-DSig for lu-xml through xmlsec1 (OpenSSL backend), and the
 * hardened XML parser every untrusted document goes through. The profile
 * check (profile_check) is ours and runs before xmlsec, so a refusal names
 * the exact rule; xmlsec is then restricted to the same algorithms, the
 * empty URI and X509 key data, so nothing slips past in case the two differ.
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
#include <xmlsec/crypto.h>
#include <xmlsec/errors.h>
#include <xmlsec/keysmngr.h>
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

static xmlSecKeysMngrPtr trust_mngr(const struct tb_ca *ca, char *err) {
  xmlSecKeysMngrPtr mngr = xmlSecKeysMngrCreate();
  if (mngr == NULL || xmlSecCryptoAppDefaultKeysMngrInit(mngr) < 0) goto fail;
  xmlSecKeyDataStorePtr store = xmlSecKeysMngrGetDataStore(mngr, xmlSecOpenSSLX509StoreId);
  if (store == NULL) goto fail;
  for (int i = 0; i < sk_X509_num(ca->certs); i++) {
    X509 *c = X509_dup(sk_X509_value(ca->certs, i));
    if (c == NULL || xmlSecOpenSSLX509StoreAdoptCert(store, c, xmlSecKeyDataTypeTrusted) < 0) {
      X509_free(c);
      goto fail;
    }
  }
  return mngr;
fail:
  if (mngr != NULL) xmlSecKeysMngrDestroy(mngr);
  tb_errf(err, TB_ECRYPTO, "XML-DSig: cannot set up CA \"%s\": %s", ca->name,
          xmlsec_detail());
  return NULL;
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

  xmlsec_reset();
  xmlSecDSigCtxPtr dsig = NULL;
  xmlSecKeysMngrPtr mngr = trust_mngr(ca, err);
  if (mngr == NULL) {
    rc = TB_ECRYPTO;
    goto done;
  }
  dsig = xmlSecDSigCtxCreate(mngr);
  if (dsig == NULL) {
    rc = tb_errf(err, TB_ENOMEM, "XML-DSig: cannot create a context");
    goto done;
  }
  /* Belt and braces behind profile_check: xmlsec itself accepts nothing else. */
  dsig->enabledReferenceUris = xmlSecTransformUriTypeEmpty;
  if (xmlSecDSigCtxEnableSignatureTransform(dsig, xmlSecTransformExclC14NId) < 0 ||
      xmlSecDSigCtxEnableSignatureTransform(dsig, xmlSecTransformRsaSha256Id) < 0 ||
      xmlSecDSigCtxEnableReferenceTransform(dsig, xmlSecTransformEnvelopedId) < 0 ||
      xmlSecDSigCtxEnableReferenceTransform(dsig, xmlSecTransformExclC14NId) < 0 ||
      xmlSecDSigCtxEnableReferenceTransform(dsig, xmlSecTransformSha256Id) < 0 ||
      xmlSecPtrListAdd(&dsig->keyInfoReadCtx.enabledKeyData,
                       (xmlSecPtr)xmlSecOpenSSLKeyDataX509Id) < 0) {
    rc = tb_errf(err, TB_ECRYPTO, "XML-DSig: cannot restrict the context: %s",
                 xmlsec_detail());
    goto done;
  }
  /* The key can only come from a certificate that chains to the CA (the
   * manager holds no keys), checked at this time. */
  dsig->keyInfoReadCtx.flags |= XMLSEC_KEYINFO_FLAGS_X509DATA_STOP_ON_INVALID_CERT;
  dsig->keyInfoReadCtx.certsVerificationTime = opts && opts->at_time ? (time_t)opts->at_time : 0;

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
  xmlSecKeyDataPtr x509 = dsig->signKey ? xmlSecKeyGetData(dsig->signKey,
                                                           xmlSecOpenSSLKeyDataX509Id)
                                        : NULL;
  X509 *cert = x509 ? xmlSecOpenSSLKeyDataX509GetKeyCert(x509) : NULL;
  if (cert == NULL) {
    rc = tb_errf(err, TB_EAUTH, "XML-DSig: the key did not come from a verified certificate");
    goto done;
  }
  if (signer != NULL) signer_info(cert, signer);
done:
  if (dsig != NULL) xmlSecDSigCtxDestroy(dsig);
  if (mngr != NULL) xmlSecKeysMngrDestroy(mngr);
  ERR_clear_error();
  if (rc == 0 && doc_out != NULL) {
    *doc_out = doc;
  } else {
    xmlFreeDoc(doc);
  }
  return rc;
}
