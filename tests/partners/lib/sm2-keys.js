'use strict';
// Reads the dev PKI's SM2 keys (PEM: PKCS#8 "PRIVATE KEY", SEC1 "EC PRIVATE
// KEY", SubjectPublicKeyInfo "PUBLIC KEY", curve OID 1.2.156.10197.1.301) into
// the raw hex that sm-crypto wants. Node's crypto cannot be relied on for SM2
// keys (on Node 20 createPrivateKey accepts the PEM but reports no key type),
// so the ASN.1 is read by hand with der.js.

const fs = require('fs');
const { sm2 } = require('sm-crypto');
const der = require('./der');

const OID_EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const OID_SM2 = '1.2.156.10197.1.301';

function pemBody(pem, label) {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`);
  const m = re.exec(pem);
  return m ? Buffer.from(m[1].replace(/\s+/g, ''), 'base64') : null;
}

// AlgorithmIdentifier must say "EC key on the SM2 curve" (or the SM2 OID itself,
// as some GM/T toolkits write it).
function checkAlgorithm(algTlv) {
  const kids = der.children(algTlv.value);
  const oids = kids.filter((k) => k.tag === der.TAG.OID).map((k) => der.decodeOid(k.value));
  const ok = (oids[0] === OID_EC_PUBLIC_KEY && oids[1] === OID_SM2) || oids[0] === OID_SM2;
  if (!ok) throw new Error(`not an SM2 key (algorithm OIDs ${oids.join(', ')})`);
}

// ECPrivateKey ::= SEQUENCE { version 1, privateKey OCTET STRING, [0] params, [1] publicKey }
function fromEcPrivateKey(buf) {
  const seq = der.readWhole(buf, der.TAG.SEQUENCE);
  const kids = der.children(seq.value);
  if (kids.length < 2 || kids[0].tag !== der.TAG.INTEGER || kids[1].tag !== der.TAG.OCTET_STRING) throw new Error('bad ECPrivateKey');
  const d = kids[1].value;
  if (d.length !== 32) throw new Error(`SM2 private scalar is ${d.length} bytes, want 32`);
  const privateKey = d.toString('hex');
  const publicKey = sm2.getPublicKeyFromPrivateKey(privateKey);
  const pubTlv = kids.find((k) => k.tag === 0xa1);
  if (pubTlv) {
    const bits = der.readWhole(pubTlv.value, der.TAG.BIT_STRING).value;
    if (bits.subarray(1).toString('hex') !== publicKey) throw new Error('embedded public key does not match the private scalar');
  }
  return { privateKey, publicKey };
}

function parsePrivateKeyPem(pem) {
  let b = pemBody(pem, 'PRIVATE KEY');
  if (b) {
    const kids = der.children(der.readWhole(b, der.TAG.SEQUENCE).value);
    if (kids.length < 3 || kids[1].tag !== der.TAG.SEQUENCE || kids[2].tag !== der.TAG.OCTET_STRING) throw new Error('bad PKCS#8');
    checkAlgorithm(kids[1]);
    return fromEcPrivateKey(kids[2].value);
  }
  b = pemBody(pem, 'EC PRIVATE KEY');
  if (b) return fromEcPrivateKey(b);
  throw new Error('no PRIVATE KEY / EC PRIVATE KEY PEM block');
}

// Returns the uncompressed point as hex "04" + x + y.
function parsePublicKeyPem(pem) {
  const b = pemBody(pem, 'PUBLIC KEY');
  if (!b) throw new Error('no PUBLIC KEY PEM block');
  const kids = der.children(der.readWhole(b, der.TAG.SEQUENCE).value);
  if (kids.length !== 2 || kids[0].tag !== der.TAG.SEQUENCE || kids[1].tag !== der.TAG.BIT_STRING) throw new Error('bad SubjectPublicKeyInfo');
  checkAlgorithm(kids[0]);
  const bits = kids[1].value;
  if (bits[0] !== 0 || bits.length !== 66 || bits[1] !== 0x04) throw new Error('SM2 public key must be an uncompressed point');
  const hex = bits.subarray(1).toString('hex');
  if (!sm2.verifyPublicKey(hex)) throw new Error('SM2 public key is not on the curve');
  return hex;
}

function loadPrivateKey(file) { return parsePrivateKeyPem(fs.readFileSync(file, 'utf8')); }
function loadPublicKey(file) { return parsePublicKeyPem(fs.readFileSync(file, 'utf8')); }

module.exports = { parsePrivateKeyPem, parsePublicKeyPem, loadPrivateKey, loadPublicKey };
