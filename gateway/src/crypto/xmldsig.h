/*
 * crypto/xmldsig.h — enveloped XML-DSig exactly as partners/lu-xml.md asks,
 * through libxmlsec1 (OpenSSL backend); no C14N or DSig code of our own.
 *
 * The one profile, both ways: CanonicalizationMethod exc-c14n, SignatureMethod
 * rsa-sha256, exactly one Reference URI="" with the transforms
 * enveloped-signature then exc-c14n, DigestMethod sha256,
 * KeyInfo/X509Data/X509Certificate carrying the signer's certificate, and
 * ds:Signature as the last child of the root element. Verification refuses
 * anything else (rsa-sha1, other URIs or transforms, several signatures, a
 * signature elsewhere) before xmlsec runs, and xmlsec itself is restricted to
 * the same algorithms.
 *
 * Parsing is defensive (SPEC §10): no network, no DTD loading, no entity
 * substitution, and any DOCTYPE is refused as soon as the parser meets it, so
 * an entity bomb is never expanded. Size and depth are capped.
 *
 * Threads: tb_crypto_global_init() must have run. After that any thread may
 * call these functions on its own documents (each call builds its own DSig
 * context; verification shares only the CA's read-only X509_STORE, built
 * when the keystore loaded it). A document must not be used by two threads
 * at once.
 */
#ifndef TB_CRYPTO_XMLDSIG_H
#define TB_CRYPTO_XMLDSIG_H

#include <stddef.h>
#include <stdint.h>

#include <libxml/tree.h>

#include "crypto/keystore.h"
#include "tbgw/error.h"

#define TB_XMLDSIG_DEFAULT_MAX_BYTES (32u * 1024u * 1024u) /* lu-xml limit */
#define TB_XMLDSIG_DEFAULT_MAX_DEPTH 64u

struct tb_xml_limits {
  size_t max_bytes;   /* 0: TB_XMLDSIG_DEFAULT_MAX_BYTES */
  unsigned max_depth; /* element nesting; 0: TB_XMLDSIG_DEFAULT_MAX_DEPTH */
};

/*
 * Parses untrusted XML as described above. *doc_out is the caller's: free it
 * with xmlFreeDoc(). TB_ELIMIT (too big, too deep), TB_EPARSE (not
 * well-formed, with line:column; any DOCTYPE). limits may be NULL.
 */
int tb_xml_parse_safe(const void *xml, size_t len,
                      const struct tb_xml_limits *limits, xmlDocPtr *doc_out,
                      char *err);

/*
 * Appends an enveloped signature, made with the RSA key named key_name and
 * its certificate, as the last child of doc's root element. The document is
 * modified in place and unchanged on error. TB_ENOTFOUND (no key),
 * TB_EINVAL (not an RSA private key with a certificate; no root; the root
 * already holds a ds:Signature), TB_ECRYPTO (xmlsec failure).
 */
int tb_xmldsig_sign_doc(const struct tb_keystore *ks, const char *key_name,
                        xmlDocPtr doc, char *err);

/* Parses xml (tb_xml_parse_safe, default limits), signs it as above and
 * serializes it (UTF-8, no reformatting). *out is malloc'd (free()) and
 * NUL-terminated; the NUL is not counted in *out_len. */
int tb_xmldsig_sign(const struct tb_keystore *ks, const char *key_name,
                    const void *xml, size_t len, unsigned char **out,
                    size_t *out_len, char *err);

struct tb_xmldsig_verify_opts {
  struct tb_xml_limits limits;
  int64_t at_time; /* Unix seconds for certificate validity; 0: now */
};

/* Who signed a verified document. */
struct tb_xmldsig_signer {
  char subject[256];     /* RFC 2253, UTF-8 */
  char issuer[256];
  char fingerprint[65];  /* lowercase hex SHA-256 of the certificate DER */
};

/*
 * Verifies a signed document against the CA bundle named ca_name (in the
 * keystore): the signer certificate in KeyInfo must chain to a certificate
 * of that bundle — and to nothing else: no system or default trust store is
 * ever consulted — with every certificate of the chain valid at
 * opts->at_time. KeyInfo may add intermediates but must hold exactly one
 * end-entity (signer) certificate, and the signature is checked with that
 * certificate's RSA key only. Returns 0 only if the one signature is valid
 * and covers the whole document. TB_EAUTH for every signature problem (missing,
 * misplaced, duplicated, wrong algorithms, untrusted or expired certificate,
 * digest or signature mismatch) — the adapter answers these with its
 * "signature invalid" code; err says which. TB_EPARSE / TB_ELIMIT for input
 * that is not acceptable XML at all, TB_ENOTFOUND for an unknown ca_name.
 *
 * opts, signer and doc_out may be NULL. On success *doc_out (if asked for)
 * is the verified document, so the caller reads exactly what was checked;
 * free it with xmlFreeDoc(). On error it is NULL.
 */
int tb_xmldsig_verify(const struct tb_keystore *ks, const char *ca_name,
                      const void *xml, size_t len,
                      const struct tb_xmldsig_verify_opts *opts,
                      struct tb_xmldsig_signer *signer, xmlDocPtr *doc_out,
                      char *err);

#endif
