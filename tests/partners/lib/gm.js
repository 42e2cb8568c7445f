'use strict';
// GM/T primitives for the yue-json mock, on top of sm-crypto (pure JS, an
// implementation independent of the gateway's OpenSSL), with the wire forms of
// yue-json.md: SM2 signatures as DER SEQUENCE{r,s}, SM2 ciphertext as GM/T 0009
// DER, SM4-CBC with PKCS#7 padding. sm-crypto is lenient in places (no range
// check on r/s, no on-curve check of C1, lax PKCS#7 unpadding), so those
// checks are done here.

const { sm2, sm3, sm4 } = require('sm-crypto');
const der = require('./der');

const DEFAULT_USER_ID = '1234567812345678';

const bytes = (b) => Array.from(Buffer.isBuffer(b) ? b : Buffer.from(b, 'utf8'));

// Lowercase hex SM3 of bytes (Buffer) or a UTF-8 string.
function sm3hex(data) { return sm3(bytes(data)); }

// SM2-with-SM3 signature (Z computed with userId) → DER Buffer.
function sm2Sign(msg, key, userId = DEFAULT_USER_ID) {
  const rs = sm2.doSignature(bytes(msg), key.privateKey, { hash: true, der: false, publicKey: key.publicKey, userId });
  return der.sm2SigRsToDer(rs);
}

// Verifies a DER signature; returns { ok, reason }.
function sm2Verify(msg, sigDer, publicKeyHex, userId = DEFAULT_USER_ID) {
  let rs;
  try { rs = der.sm2SigDerToRs(sigDer); } catch (e) { return { ok: false, reason: `signature DER: ${e.message}` }; }
  let ok = false;
  try { ok = sm2.doVerifySignature(bytes(msg), rs, publicKeyHex, { hash: true, der: false, userId }); } catch (e) { return { ok: false, reason: `verify: ${e.message}` }; }
  return ok ? { ok: true } : { ok: false, reason: 'SM2 signature does not verify' };
}

// SM2 public-key encryption → GM/T 0009 DER Buffer.
function sm2Encrypt(plain, publicKeyHex) {
  const c1c3c2 = sm2.doEncrypt(bytes(plain), publicKeyHex, 1);
  return der.sm2CipherC1C3C2ToDer(c1c3c2);
}

// GM/T 0009 DER → plaintext Buffer; throws with a reason on any failure.
function sm2Decrypt(cipherDer, privateKeyHex) {
  const hex = der.sm2CipherDerToC1C3C2(cipherDer);
  if (!sm2.verifyPublicKey('04' + hex.slice(0, 128))) throw new Error('C1 is not a point on the SM2 curve');
  const out = sm2.doDecrypt(hex, privateKeyHex, 1, { output: 'array' });
  if (!out || out.length === 0) throw new Error('C3 (SM3 check value) does not match: wrong key or corrupted ciphertext');
  return Buffer.from(out);
}

function sm4CbcEncrypt(plain, key, iv) {
  return Buffer.from(sm4.encrypt(bytes(plain), bytes(key), { mode: 'cbc', iv: bytes(iv), padding: 'pkcs#7', output: 'array' }));
}

// Strict PKCS#7: pad length 1..16 and every pad byte equal to it.
function sm4CbcDecrypt(cipher, key, iv) {
  if (key.length !== 16) throw new Error(`SM4 key is ${key.length} bytes, want 16`);
  if (iv.length !== 16) throw new Error(`iv is ${iv.length} bytes, want 16`);
  if (cipher.length === 0 || cipher.length % 16 !== 0) throw new Error(`ciphertext length ${cipher.length} is not a positive multiple of 16`);
  const out = Buffer.from(sm4.decrypt(bytes(cipher), bytes(key), { mode: 'cbc', iv: bytes(iv), padding: 'none', output: 'array' }));
  const pad = out[out.length - 1];
  if (pad < 1 || pad > 16) throw new Error('bad PKCS#7 padding');
  for (let i = 1; i <= pad; i++) if (out[out.length - i] !== pad) throw new Error('bad PKCS#7 padding');
  return out.subarray(0, out.length - pad);
}

module.exports = { DEFAULT_USER_ID, sm3hex, sm2Sign, sm2Verify, sm2Encrypt, sm2Decrypt, sm4CbcEncrypt, sm4CbcDecrypt };
