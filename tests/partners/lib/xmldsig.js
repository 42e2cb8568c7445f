'use strict';
// Enveloped XML-DSig exactly as lu-xml.md "Signature" prescribes, with
// xml-crypto (the self-tests check it against xmlsec1, an independent
// implementation):
//   * ds:Signature is the last element child of the root, and the only one;
//   * CanonicalizationMethod exc-c14n, SignatureMethod rsa-sha256;
//   * exactly one Reference, URI="", Transforms = enveloped-signature then
//     exc-c14n (nothing else, no parameters), DigestMethod sha256;
//   * KeyInfo/X509Data/X509Certificate holds the signer's certificate, which
//     must be issued by the CA configured for the peer (no intermediates are
//     carried, so "chains to" means "signed by"), be within its validity
//     period, not be a CA itself, and hold an RSA key of 2048 bits or more.
// Anything else (extra references, XPath transforms, HMAC, SHA-1, KeyValue
// instead of a certificate, Object elements ...) is refused, which also rules
// out signature-wrapping tricks.

const crypto = require('crypto');
const { SignedXml } = require('xml-crypto');
const { elementChildren, ELEMENT } = require('./safe-xml');
const { decodeBase64 } = require('./encoding');

const DS = 'http://www.w3.org/2000/09/xmldsig#';
const ALG = {
  EXC_C14N: 'http://www.w3.org/2001/10/xml-exc-c14n#',
  RSA_SHA256: 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256',
  ENVELOPED: 'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
  SHA256: 'http://www.w3.org/2001/04/xmlenc#sha256',
};

function sign(xml, { keyPem, certPem }) {
  const sig = new SignedXml({
    privateKey: keyPem,
    publicCert: certPem,
    canonicalizationAlgorithm: ALG.EXC_C14N,
    signatureAlgorithm: ALG.RSA_SHA256,
  });
  sig.addReference({ xpath: '/*', transforms: [ALG.ENVELOPED, ALG.EXC_C14N], digestAlgorithm: ALG.SHA256, isEmptyUri: true });
  sig.computeSignature(xml, { prefix: 'ds', location: { reference: '/*', action: 'append' } });
  return sig.getSignedXml();
}

class SigError extends Error {}

const isDs = (el, name) => el.namespaceURI === DS && el.localName === name;

// The element children of `el` must be exactly `names` (ds namespace), in order.
function expectChildren(el, names, where) {
  const { elements, strayText } = elementChildren(el);
  if (strayText !== null) throw new SigError(`${where}: unexpected text`);
  const got = elements.map((e) => (e.namespaceURI === DS ? e.localName : `{${e.namespaceURI}}${e.localName}`));
  if (got.length !== names.length || got.some((g, i) => g !== names[i])) {
    throw new SigError(`${where}: children must be ${names.join(', ') || '(none)'}, got ${got.join(', ') || '(none)'}`);
  }
  return elements;
}

function expectAlgorithm(el, alg, where) {
  const got = el.getAttribute('Algorithm');
  if (got !== alg) throw new SigError(`${where} Algorithm must be ${alg}, got ${got || '(none)'}`);
  expectChildren(el, [], where);
}

function checkAttributes(el, allowed, where) {
  for (let i = 0; i < el.attributes.length; i++) {
    const a = el.attributes[i];
    if (a.name === 'xmlns' || a.name.startsWith('xmlns:')) continue;
    if (!allowed.includes(a.name)) throw new SigError(`${where}: unexpected attribute ${a.name}`);
  }
}

// Checks the certificate against the peer CA; returns the PEM.
function checkCertificate(certB64, caPem, now) {
  const der = decodeBase64(certB64, { allowWhitespace: true });
  if (!der) throw new SigError('X509Certificate is not base64');
  let cert, ca;
  try { cert = new crypto.X509Certificate(der); } catch (e) { throw new SigError(`X509Certificate does not parse: ${e.message}`); }
  try { ca = new crypto.X509Certificate(caPem); } catch (e) { throw new SigError(`configured peer CA does not parse: ${e.message}`); }
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) throw new SigError(`certificate "${cert.subject.replace(/\n/g, ', ')}" is not issued by the configured peer CA`);
  if (now < Date.parse(cert.validFrom) || now > Date.parse(cert.validTo)) throw new SigError('certificate is outside its validity period');
  if (cert.ca) throw new SigError('signer certificate is a CA certificate');
  const pk = cert.publicKey;
  if (pk.asymmetricKeyType !== 'rsa') throw new SigError(`signer key is ${pk.asymmetricKeyType}, rsa-sha256 needs RSA`);
  if (pk.asymmetricKeyDetails.modulusLength < 2048) throw new SigError(`RSA key is ${pk.asymmetricKeyDetails.modulusLength} bits, 2048 or more required`);
  return { pem: cert.toString(), subject: cert.subject.replace(/\n/g, ', ') };
}

// Verifies the signature of a parsed document. `text` is the exact document
// text (xml-crypto re-parses it). Returns { ok: true, subject } or
// { ok: false, reason }.
function verify(text, doc, { caPem, now = Date.now() }) {
  try {
    const root = doc.documentElement;
    const all = doc.getElementsByTagNameNS(DS, 'Signature');
    if (all.length === 0) throw new SigError('no ds:Signature');
    if (all.length > 1) throw new SigError(`${all.length} ds:Signature elements, exactly one allowed`);
    const sigEl = all[0];
    const { elements } = elementChildren(root);
    if (sigEl.parentNode !== root || elements[elements.length - 1] !== sigEl) throw new SigError('ds:Signature must be the last child element of the root');
    for (let n = sigEl.nextSibling; n; n = n.nextSibling) {
      if (n.nodeType === ELEMENT || (n.data !== undefined && !/^\s*$/.test(n.data))) throw new SigError('content after ds:Signature');
    }
    checkAttributes(sigEl, ['Id'], 'Signature');
    const [signedInfo, , keyInfo] = expectChildren(sigEl, ['SignedInfo', 'SignatureValue', 'KeyInfo'], 'Signature');
    checkAttributes(signedInfo, [], 'SignedInfo');
    const [c14n, sigMethod, ref] = expectChildren(signedInfo, ['CanonicalizationMethod', 'SignatureMethod', 'Reference'], 'SignedInfo');
    expectAlgorithm(c14n, ALG.EXC_C14N, 'CanonicalizationMethod');
    expectAlgorithm(sigMethod, ALG.RSA_SHA256, 'SignatureMethod');
    checkAttributes(ref, ['URI', 'Id'], 'Reference');
    if (!ref.hasAttribute('URI') || ref.getAttribute('URI') !== '') throw new SigError('Reference must have URI=""');
    const [transforms, digestMethod] = expectChildren(ref, ['Transforms', 'DigestMethod', 'DigestValue'], 'Reference');
    const tlist = expectChildren(transforms, ['Transform', 'Transform'], 'Transforms');
    expectAlgorithm(tlist[0], ALG.ENVELOPED, 'first Transform');
    expectAlgorithm(tlist[1], ALG.EXC_C14N, 'second Transform');
    expectAlgorithm(digestMethod, ALG.SHA256, 'DigestMethod');
    checkAttributes(keyInfo, ['Id'], 'KeyInfo');
    const [x509Data] = expectChildren(keyInfo, ['X509Data'], 'KeyInfo');
    const [certEl] = expectChildren(x509Data, ['X509Certificate'], 'X509Data');
    const cert = checkCertificate(certEl.textContent, caPem, now);

    const sx = new SignedXml({ publicCert: cert.pem, getCertFromKeyInfo: () => null });
    sx.loadSignature(sigEl);
    let ok;
    try { ok = sx.checkSignature(text); } catch (e) { throw new SigError(`signature check failed: ${e.message}`); }
    if (!ok) throw new SigError('signature or digest does not verify');
    if (sx.getSignedReferences().length !== 1) throw new SigError('expected exactly one signed reference');
    return { ok: true, subject: cert.subject };
  } catch (e) {
    if (e instanceof SigError) return { ok: false, reason: e.message };
    return { ok: false, reason: `signature check error: ${e.message}` };
  }
}

module.exports = { sign, verify, DS, ALG };
