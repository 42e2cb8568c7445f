'use strict';
// The yue-json digital envelope (yue-json.md "Body: digital envelope"): a
// fresh 16-byte SM4 key encrypted with the receiver's SM2 public key (GM/T
// 0009 DER, base64), the business JSON SM4-CBC/PKCS#7 encrypted with that key
// and a 16-byte iv (base64). open() fails with a reason for every way a
// message "cannot be decrypted" (→ 4020).

const crypto = require('crypto');
const gm = require('../lib/gm');
const { decodeBase64, decodeUtf8 } = require('../lib/encoding');

class DecryptError extends Error {}

// env: the parsed envelope; returns the business JSON value.
function open(env, privateKeyHex) {
  const fail = (m) => { throw new DecryptError(m); };
  for (const k of ['encryptKey', 'iv', 'bizContent']) if (typeof env[k] !== 'string') fail(`${k} must be a base64 string`);
  const keyDer = decodeBase64(env.encryptKey);
  if (!keyDer) fail('encryptKey is not canonical base64');
  let key;
  try { key = gm.sm2Decrypt(keyDer, privateKeyHex); } catch (e) { fail(`encryptKey: ${e.message}`); }
  if (key.length !== 16) fail(`encryptKey holds ${key.length} bytes, an SM4 key is 16`);
  const iv = decodeBase64(env.iv);
  if (!iv || iv.length !== 16) fail('iv must be base64 of 16 bytes');
  const ct = decodeBase64(env.bizContent);
  if (!ct) fail('bizContent is not canonical base64');
  let plain;
  try { plain = gm.sm4CbcDecrypt(ct, key, iv); } catch (e) { fail(`bizContent: ${e.message}`); }
  let text;
  try { text = decodeUtf8(plain); } catch { fail('decrypted bizContent is not UTF-8'); }
  let value;
  try { value = JSON.parse(text); } catch (e) { fail(`decrypted bizContent is not JSON: ${e.message}`); }
  return { value, text };
}

// bizText: the exact business JSON text to send.
function seal(bizText, publicKeyHex, { key = crypto.randomBytes(16), iv = crypto.randomBytes(16) } = {}) {
  return {
    encryptKey: gm.sm2Encrypt(key, publicKeyHex).toString('base64'),
    iv: iv.toString('base64'),
    bizContent: gm.sm4CbcEncrypt(Buffer.from(bizText, 'utf8'), key, iv).toString('base64'),
  };
}

module.exports = { open, seal, DecryptError };
