'use strict';
// Unit tests of the mocks' helpers against independent references: the DER
// codec and sm-crypto wrappers against OpenSSL (both directions, enough rounds
// that coordinates and r/s with the top bit set — an INTEGER with a leading
// 0x00 — occur), INTEGER minimality rules on hand-made encodings, the SM2 key
// reader against `openssl pkey -text`, the BiaoDan form codec, Beijing time.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const h = require('../harness/helpers');
const der = require('../lib/der');
const gm = require('../lib/gm');
const sm2keys = require('../lib/sm2-keys');
const form = require('../lib/form');
const bj = require('../lib/beijing-time');
const { decodeBase64 } = require('../lib/encoding');

const PKI = h.makePki();
const WJ = path.join(PKI, 'partners', 'wujiang');
const WORK = h.tmpdir('tb-lib-test-');
let n = 0;
const tmp = (data) => { const f = path.join(WORK, `f${++n}`); fs.writeFileSync(f, data); return f; };
const key = sm2keys.loadPrivateKey(`${WJ}/sign-sm2.key`);
const pub = sm2keys.loadPublicKey(`${WJ}/sign-sm2.pub.pem`);

test('SM2 keys: private scalar and public point match what openssl reads from the PEM files', () => {
  const text = h.run('openssl', ['pkey', '-in', `${WJ}/sign-sm2.key`, '-text', '-noout']).stdout;
  const hex = (label) => new RegExp(`${label}:\\s*\\n([\\s0-9a-f:]+)`).exec(text)[1].replace(/[\s:]/g, '');
  assert.equal(key.privateKey, hex('priv').replace(/^00(?=[0-9a-f]{64}$)/, '').padStart(64, '0'));
  assert.equal(key.publicKey, hex('pub'));
  assert.equal(pub, key.publicKey);
  assert.throws(() => sm2keys.loadPrivateKey(path.join(PKI, 'gateway', 'sign-rsa.key')), /not an SM2 key|bad PKCS#8/);
});

test('DER INTEGER rules: minimal, positive, one leading 0x00 only when the top bit is set', () => {
  const enc = (hex) => der.encodeUnsignedInteger(Buffer.from(hex, 'hex')).toString('hex');
  assert.equal(enc('80'), '02020080');
  assert.equal(enc('0080'), '02020080');
  assert.equal(enc('00007f'), '02017f');
  assert.equal(enc('00'), '020100');
  assert.equal(enc('0000'), '020100');
  assert.equal(enc('ff'.repeat(32)), '022100' + 'ff'.repeat(32));
  const dec = (hex) => der.integerToUnsigned(Buffer.from(hex, 'hex')).toString('hex');
  assert.equal(dec('0080'), '80');
  assert.equal(dec('7f'), '7f');
  assert.throws(() => dec('007f'), /non-minimal/);
  assert.throws(() => dec('80'), /negative/);
  assert.throws(() => dec('ff80'), /non-minimal|negative/);
  assert.throws(() => dec(''), /empty/);
  // Lengths: long form only from 128, no leading zero, no indefinite form, no trailing bytes.
  assert.throws(() => der.readWhole(Buffer.from('30810100', 'hex')), /non-minimal length/);
  assert.throws(() => der.readWhole(Buffer.from('3082000100', 'hex')), /non-minimal length/);
  assert.throws(() => der.readWhole(Buffer.from('30800000', 'hex')), /indefinite/);
  assert.throws(() => der.readWhole(Buffer.from('300000', 'hex')), /trailing/);
  assert.equal(der.encodeLength(200).toString('hex'), '81c8');
  assert.equal(der.encodeLength(300).toString('hex'), '82012c');
});

test('SM2 ciphertext DER ⇄ C1C3C2: short coordinates, top-bit coordinates, strict reading', () => {
  const x = '00' + '3c'.repeat(31), y = '8' + '0'.repeat(63), c3 = '11'.repeat(32), c2 = '2233';
  const d = der.sm2CipherC1C3C2ToDer(x + y + c3 + c2);
  const kids = der.children(der.readWhole(d, 0x30).value);
  assert.equal(kids[0].value.length, 31, 'x with a leading zero byte is encoded minimally');
  assert.equal(kids[1].value.length, 33, 'y with the top bit set gets one 0x00');
  assert.equal(der.sm2CipherDerToC1C3C2(d), x + y + c3 + c2);
  const bad = Buffer.from(d); bad[1] += 1;
  assert.throws(() => der.sm2CipherDerToC1C3C2(bad));
  assert.throws(() => der.sm2CipherDerToC1C3C2(Buffer.concat([d, Buffer.from([0])])), /trailing/);
  const big = der.sequence(der.encodeUnsignedInteger(Buffer.from('ff'.repeat(32), 'hex')), der.encodeUnsignedInteger(Buffer.from(y, 'hex')), der.tlv(4, Buffer.from(c3, 'hex')), der.tlv(4, Buffer.from(c2, 'hex')));
  assert.throws(() => der.sm2CipherDerToC1C3C2(big), /below p/);
  // hash must be 32 bytes
  const shortHash = der.sequence(der.encodeUnsignedInteger(Buffer.from(x, 'hex')), der.encodeUnsignedInteger(Buffer.from(y, 'hex')),
    der.tlv(4, Buffer.alloc(31)), der.tlv(4, Buffer.from(c2, 'hex')));
  assert.throws(() => der.sm2CipherDerToC1C3C2(shortHash), /32/);
});

test('SM2 encryption interoperates with OpenSSL both ways (GM/T 0009 DER)', () => {
  let topBit = 0;
  for (let i = 0; i < 12; i++) {
    const msg = crypto.randomBytes(16);
    // OpenSSL encrypts, the mock's code decrypts.
    const out = path.join(WORK, `e${++n}`);
    assert.equal(h.run('openssl', ['pkeyutl', '-encrypt', '-pubin', '-inkey', `${WJ}/sign-sm2.pub.pem`, '-in', tmp(msg), '-out', out]).status, 0);
    const c = fs.readFileSync(out);
    const kids = der.children(der.readWhole(c, 0x30).value);
    if (kids[0].value.length === 33 || kids[1].value.length === 33) topBit++;
    assert.deepEqual(gm.sm2Decrypt(c, key.privateKey), msg);
    // The mock's code encrypts, OpenSSL decrypts.
    const mine = gm.sm2Encrypt(msg, pub);
    const r = h.run('openssl', ['pkeyutl', '-decrypt', '-inkey', `${WJ}/sign-sm2.key`, '-in', tmp(mine)], { encoding: 'buffer' });
    assert.equal(r.status, 0, String(r.stderr));
    assert.deepEqual(r.stdout, msg);
  }
  assert.ok(topBit > 0, 'at least one coordinate needed a leading 0x00 (probability of none: 2^-24)');
  // Flipping a ciphertext bit fails the C3 check.
  const c = gm.sm2Encrypt(Buffer.alloc(16, 7), pub);
  c[c.length - 1] ^= 1;
  assert.throws(() => gm.sm2Decrypt(c, key.privateKey), /C3/);
});

test('SM2 signatures with ID 1234567812345678 interoperate with OpenSSL both ways', () => {
  for (let i = 0; i < 8; i++) {
    const msg = Buffer.from(`YY-YUNXI-001\n${Date.now()}\n${crypto.randomBytes(16).toString('hex')}\n${'a'.repeat(64)}`);
    const out = path.join(WORK, `s${++n}`);
    assert.equal(h.run('openssl', ['pkeyutl', '-sign', '-rawin', '-digest', 'sm3', '-inkey', `${WJ}/sign-sm2.key`, '-pkeyopt', 'distid:1234567812345678', '-in', tmp(msg), '-out', out]).status, 0);
    assert.deepEqual(gm.sm2Verify(msg, fs.readFileSync(out), pub), { ok: true });
    assert.equal(gm.sm2Verify(msg, fs.readFileSync(out), pub, '1234567812345679').ok, false, 'another signer ID must fail');
    const sig = gm.sm2Sign(msg, key);
    const v = h.run('openssl', ['pkeyutl', '-verify', '-rawin', '-digest', 'sm3', '-pubin', '-inkey', `${WJ}/sign-sm2.pub.pem`, '-pkeyopt', 'distid:1234567812345678', '-in', tmp(msg), '-sigfile', tmp(sig)]);
    assert.equal(v.status, 0, v.stderr);
  }
  // r = 0 / s >= n are refused before any arithmetic.
  const zero = der.sequence(der.encodeUnsignedInteger(Buffer.from([0])), der.encodeUnsignedInteger(Buffer.from([1])));
  assert.equal(gm.sm2Verify(Buffer.from('x'), zero, pub).ok, false);
});

test('SM4-CBC/PKCS#7 and SM3 agree with OpenSSL; bad padding is refused', () => {
  const k = crypto.randomBytes(16), iv = crypto.randomBytes(16);
  for (const len of [0, 1, 15, 16, 17, 100]) {
    const p = crypto.randomBytes(len);
    const c = crypto.createCipheriv('sm4-cbc', k, iv);
    const ct = Buffer.concat([c.update(p), c.final()]);
    assert.deepEqual(gm.sm4CbcEncrypt(p, k, iv), ct);
    assert.deepEqual(gm.sm4CbcDecrypt(ct, k, iv), p);
    assert.equal(gm.sm3hex(p), crypto.createHash('sm3').update(p).digest('hex'));
  }
  const c = crypto.createCipheriv('sm4-cbc', k, iv);
  c.setAutoPadding(false);
  const badPad = Buffer.concat([c.update(Buffer.concat([Buffer.alloc(15, 1), Buffer.from([0])])), c.final()]);
  assert.throws(() => gm.sm4CbcDecrypt(badPad, k, iv), /padding/);
});

test('base64 is read strictly', () => {
  assert.deepEqual(decodeBase64('YWJj'), Buffer.from('abc'));
  assert.equal(decodeBase64('YWJ'), null);
  assert.equal(decodeBase64('YW Jj'), null);
  assert.equal(decodeBase64('YR=='), null, 'non-zero pad bits');
  assert.deepEqual(decodeBase64('YW\nJj', { allowWhitespace: true }), Buffer.from('abc'));
});

test('BiaoDan form: every sample form survives flatten → unflatten with its types', () => {
  for (const f of fs.readdirSync(h.SAMPLES_DIR)) {
    const c = JSON.parse(fs.readFileSync(path.join(h.SAMPLES_DIR, f), 'utf8'));
    assert.deepEqual(form.unflatten(form.flatten(c.form)), c.form, f);
  }
  const nested = { owners: [{ name: 'a', share: 0.5, tags: ['x', 'y'] }, { name: 'b', share: 0.5, tags: ['z'] }], m: [[1, 2], [3]], n: null, t: true, e: '' };
  assert.deepEqual(form.unflatten(form.flatten(nested)), nested);
  assert.deepEqual(form.flatten({ owners: [{ name: 'a' }] }), [{ name: 'owners[0].name', type: 'string', text: 'a' }]);
  assert.throws(() => form.flatten({ a: {} }), /empty objects/);
  assert.throws(() => form.flatten({ a: [] }), /empty arrays/);
  assert.throws(() => form.flatten({ 'a.b': 1 }), /cannot be expressed/);
  assert.throws(() => form.unflatten([{ name: 'a', type: 'string', text: '' }, { name: 'a', type: 'string', text: '' }]), /twice/);
  assert.throws(() => form.unflatten([{ name: 'a', type: 'boolean', text: 'TRUE' }]), /boolean/);
  assert.throws(() => form.unflatten([{ name: 'a[01]', type: 'string', text: '' }]), /syntax/);
});

test('Beijing time: format, parse, and refusal of impossible dates', () => {
  const t = Date.parse('2024-05-06T10:00:05+08:00');
  assert.equal(bj.format(t), '2024-05-06 10:00:05');
  assert.equal(bj.parse('2024-05-06 10:00:05'), t);
  assert.equal(bj.format(Date.parse('2024-05-06T20:00:00Z')), '2024-05-07 04:00:00');
  assert.equal(bj.ymd(Date.parse('2024-05-06T16:30:00Z')), '20240507');
  for (const bad of ['2024-02-30 10:00:00', '2024-05-06 24:00:00', '2024-5-6 10:00:00', '2024-05-06T10:00:05', '2024-05-06 10:00:05+08:00']) assert.equal(bj.parse(bad), null, bad);
  assert.equal(bj.toRfc3339(t), '2024-05-06T10:00:05+08:00');
  assert.equal(bj.parseRfc3339('2024-05-06T02:00:05Z'), t);
});
