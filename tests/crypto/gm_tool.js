#!/usr/bin/env node
// An INDEPENDENT GM/T implementation for the interop tests of
// tests/unit/test_crypto_sm.c: sm-crypto (pure JavaScript SM2/SM3/SM4, the
// library many partner front ends and Node services use), plus a DER reader
// and writer of our own here, so that nothing on this side goes through
// OpenSSL. Keys are read from the PEM files `openssl genpkey` writes.
//
// Install once: npm ci --prefix tests/crypto   (node_modules is not committed)
//
// Usage (binary files in and out; exit 0 on success, 1 on a failed
// verification/decryption, 2 on usage errors):
//   gm_tool.js sm3 IN                          prints lowercase hex
//   gm_tool.js sm2-encrypt     PUB.pem IN OUT  OUT = raw 04||C1||C3||C2
//   gm_tool.js sm2-decrypt     KEY.pem IN OUT  IN  = raw C1C3C2 (04 prefix optional)
//   gm_tool.js sm2-encrypt-der PUB.pem IN OUT  OUT = GM/T 0009 DER
//   gm_tool.js sm2-decrypt-der KEY.pem IN OUT  IN  = GM/T 0009 DER
//   gm_tool.js sm2-sign   KEY.pem IN SIG [ID]  SIG = DER SEQUENCE{r,s}, SM3, Z with ID
//   gm_tool.js sm2-verify PUB.pem IN SIG [ID]
//   gm_tool.js sm4-cbc-encrypt KEYHEX IVHEX IN OUT   PKCS#7
//   gm_tool.js sm4-cbc-decrypt KEYHEX IVHEX IN OUT
//   gm_tool.js envelope-seal PUB.pem BIZ.json ENV.json   yue-json body envelope
//   gm_tool.js envelope-open KEY.pem ENV.json BIZ.out
//   gm_tool.js yue-sign   KEY.pem APPID TS NONCE BODY     prints X-GD-Signature
//   gm_tool.js yue-verify PUB.pem APPID TS NONCE BODY SIGB64
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto'); // randomBytes only
const { sm2, sm3, sm4 } = require(path.join(__dirname, 'node_modules', 'sm-crypto'));

function die(msg, code) {
  process.stderr.write(`gm_tool: ${msg}\n`);
  process.exit(code);
}

// ---- minimal DER -----------------------------------------------------------
function derRead(buf, off) {
  const tag = buf[off];
  let len = buf[off + 1];
  let hdr = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[off + 2 + i];
    hdr = 2 + n;
  }
  return { tag, start: off + hdr, end: off + hdr + len };
}
function derChildren(buf, el) {
  const out = [];
  for (let off = el.start; off < el.end;) {
    const c = derRead(buf, off);
    out.push(c);
    off = c.end;
  }
  return out;
}
function derLen(n) {
  if (n < 0x80) return Buffer.from([n]);
  const b = [];
  while (n > 0) { b.unshift(n & 0xff); n >>= 8; }
  return Buffer.from([0x80 | b.length, ...b]);
}
function derTlv(tag, body) {
  return Buffer.concat([Buffer.from([tag]), derLen(body.length), body]);
}
function derUInt(b) { // unsigned big-endian → minimal INTEGER
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  if (b[0] & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return derTlv(0x02, b);
}
function pad32(b) {
  while (b.length > 32 && b[0] === 0) b = b.subarray(1);
  if (b.length > 32) die('integer too large', 1);
  return Buffer.concat([Buffer.alloc(32 - b.length), b]);
}

// ---- keys --------------------------------------------------------------------
function pemDer(file) {
  const t = fs.readFileSync(file, 'utf8');
  const m = t.match(/-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----/);
  if (!m) die(`${file}: no PEM block`, 2);
  return { label: m[1], der: Buffer.from(m[2].replace(/\s+/g, ''), 'base64') };
}
function privHex(file) { // PKCS#8 (PRIVATE KEY) or SEC1 (EC PRIVATE KEY) → d
  let { label, der } = pemDer(file);
  if (label === 'PRIVATE KEY') {
    const top = derChildren(der, derRead(der, 0));
    const oct = top[2];
    der = der.subarray(oct.start, oct.end);
  }
  const ec = derChildren(der, derRead(der, 0));
  return pad32(der.subarray(ec[1].start, ec[1].end)).toString('hex');
}
function pubHex(file) { // SubjectPublicKeyInfo → 04||x||y
  const { der } = pemDer(file);
  const top = derChildren(der, derRead(der, 0));
  const bits = der.subarray(top[1].start + 1, top[1].end); // skip unused-bits byte
  if (bits[0] !== 0x04 || bits.length !== 65) die(`${file}: not an uncompressed point`, 2);
  return bits.toString('hex');
}

// ---- SM2 ciphertext forms --------------------------------------------------
function rawToDer(raw) {
  if (raw[0] === 0x04) raw = raw.subarray(1);
  const x = raw.subarray(0, 32), y = raw.subarray(32, 64);
  const c3 = raw.subarray(64, 96), c2 = raw.subarray(96);
  return derTlv(0x30, Buffer.concat([derUInt(x), derUInt(y), derTlv(0x04, c3), derTlv(0x04, c2)]));
}
function derToRaw(der) {
  const seq = derRead(der, 0);
  if (seq.tag !== 0x30 || seq.end !== der.length) die('ciphertext: not one DER SEQUENCE', 1);
  const p = derChildren(der, seq);
  if (p.length !== 4 || p[0].tag !== 2 || p[1].tag !== 2 || p[2].tag !== 4 || p[3].tag !== 4)
    die('ciphertext: want SEQUENCE{INTEGER, INTEGER, OCTET STRING, OCTET STRING}', 1);
  const part = (e) => der.subarray(e.start, e.end);
  return Buffer.concat([Buffer.from([4]), pad32(part(p[0])), pad32(part(p[1])), part(p[2]), part(p[3])]);
}
function sm2Encrypt(pub, data) {
  return Buffer.from('04' + sm2.doEncrypt(Array.from(data), pub, 1), 'hex');
}
function sm2Decrypt(priv, raw) {
  let hex = raw.toString('hex');
  if (hex.startsWith('04') && raw.length >= 97) hex = hex.slice(2);
  const out = sm2.doDecrypt(hex, priv, 1, { output: 'array' });
  if (!out || out.length === 0) die('sm2 decryption failed (C3 mismatch)', 1);
  return Buffer.from(out);
}

function sm4cbc(enc, keyHex, ivHex, data) {
  try {
    const f = enc ? sm4.encrypt : sm4.decrypt;
    return Buffer.from(f(Array.from(data), keyHex, { mode: 'cbc', iv: ivHex, output: 'array' }));
  } catch (e) {
    die(`sm4: ${e.message}`, 1);
  }
}
const sm3hex = (buf) => sm3(Array.from(buf));

function yueString(appId, ts, nonce, body) {
  return Array.from(Buffer.from(`${appId}\n${ts}\n${nonce}\n${sm3hex(body)}`, 'utf8'));
}

const [cmd, ...a] = process.argv.slice(2);
const rd = (f) => fs.readFileSync(f);
switch (cmd) {
  case 'sm3':
    process.stdout.write(sm3hex(rd(a[0])) + '\n');
    break;
  case 'sm2-encrypt':
    fs.writeFileSync(a[2], sm2Encrypt(pubHex(a[0]), rd(a[1])));
    break;
  case 'sm2-decrypt':
    fs.writeFileSync(a[2], sm2Decrypt(privHex(a[0]), rd(a[1])));
    break;
  case 'sm2-encrypt-der':
    fs.writeFileSync(a[2], rawToDer(sm2Encrypt(pubHex(a[0]), rd(a[1]))));
    break;
  case 'sm2-decrypt-der':
    fs.writeFileSync(a[2], sm2Decrypt(privHex(a[0]), derToRaw(rd(a[1]))));
    break;
  case 'sm2-sign': {
    const priv = privHex(a[0]);
    const pub = sm2.getPublicKeyFromPrivateKey(priv);
    const sig = sm2.doSignature(Array.from(rd(a[1])), priv,
      { hash: true, der: true, publicKey: pub, userId: a[3] || '1234567812345678' });
    fs.writeFileSync(a[2], Buffer.from(sig, 'hex'));
    break;
  }
  case 'sm2-verify': {
    const ok = sm2.doVerifySignature(Array.from(rd(a[1])), rd(a[2]).toString('hex'), pubHex(a[0]),
      { hash: true, der: true, userId: a[3] || '1234567812345678' });
    if (!ok) die('sm2 signature does not verify', 1);
    break;
  }
  case 'sm4-cbc-encrypt':
    fs.writeFileSync(a[3], sm4cbc(true, a[0], a[1], rd(a[2])));
    break;
  case 'sm4-cbc-decrypt':
    fs.writeFileSync(a[3], sm4cbc(false, a[0], a[1], rd(a[2])));
    break;
  case 'envelope-seal': {
    const key = crypto.randomBytes(16), iv = crypto.randomBytes(16);
    const env = {
      msgId: crypto.randomUUID(),
      msgType: 'CASE_SUBMIT',
      encryptKey: rawToDer(sm2Encrypt(pubHex(a[0]), key)).toString('base64'),
      iv: iv.toString('base64'),
      bizContent: sm4cbc(true, key.toString('hex'), iv.toString('hex'), rd(a[1])).toString('base64'),
    };
    fs.writeFileSync(a[2], JSON.stringify(env));
    break;
  }
  case 'envelope-open': {
    const env = JSON.parse(fs.readFileSync(a[1], 'utf8'));
    const key = sm2Decrypt(privHex(a[0]), derToRaw(Buffer.from(env.encryptKey, 'base64')));
    if (key.length !== 16) die(`envelope: SM4 key of ${key.length} bytes`, 1);
    const iv = Buffer.from(env.iv, 'base64');
    fs.writeFileSync(a[2], sm4cbc(false, key.toString('hex'), iv.toString('hex'),
      Buffer.from(env.bizContent, 'base64')));
    break;
  }
  case 'yue-sign': {
    const priv = privHex(a[0]);
    const pub = sm2.getPublicKeyFromPrivateKey(priv);
    const sig = sm2.doSignature(yueString(a[1], a[2], a[3], rd(a[4])), priv,
      { hash: true, der: true, publicKey: pub });
    process.stdout.write(Buffer.from(sig, 'hex').toString('base64') + '\n');
    break;
  }
  case 'yue-verify': {
    const ok = sm2.doVerifySignature(yueString(a[1], a[2], a[3], rd(a[4])),
      Buffer.from(a[5], 'base64').toString('hex'), pubHex(a[0]), { hash: true, der: true });
    if (!ok) die('X-GD-Signature does not verify', 1);
    break;
  }
  default:
    die(`unknown command ${cmd}`, 2);
}
