'use strict';
// Minimal, strict ASN.1 DER codec: just what the mocks need to move SM2
// ciphertexts and signatures between the GM/T 0009 DER form that goes on the
// wire (yue-json.md "Body: digital envelope") and the raw C1C3C2 / r||s hex that
// sm-crypto uses, and to read SM2 keys out of PKCS#8 / SubjectPublicKeyInfo.
//
// Strict on purpose: a strict partner refuses BER leniencies (indefinite or
// non-minimal lengths, non-minimal or negative INTEGERs, trailing bytes), so a
// gateway that emits them must fail against this mock.

const TAG = { INTEGER: 0x02, BIT_STRING: 0x03, OCTET_STRING: 0x04, NULL: 0x05, OID: 0x06, SEQUENCE: 0x30 };

class DerError extends Error {}

// Reads one TLV at `off`. Returns { tag, value (Buffer view), end }.
function readTlv(buf, off) {
  if (off + 2 > buf.length) throw new DerError('truncated TLV header');
  const tag = buf[off];
  if ((tag & 0x1f) === 0x1f) throw new DerError('high-tag-number form not supported');
  let len = buf[off + 1];
  let p = off + 2;
  if (len === 0x80) throw new DerError('indefinite length is not DER');
  if (len > 0x80) {
    const n = len & 0x7f;
    if (n > 4) throw new DerError('length too large');
    if (p + n > buf.length) throw new DerError('truncated length');
    if (buf[p] === 0) throw new DerError('non-minimal length (leading zero)');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p + i];
    if (len < 0x80) throw new DerError('non-minimal length (long form for < 128)');
    p += n;
  }
  if (p + len > buf.length) throw new DerError('value runs past the end');
  return { tag, value: buf.subarray(p, p + len), end: p + len };
}

// Reads exactly one TLV that must span the whole buffer.
function readWhole(buf, expectTag) {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError('trailing bytes after DER value');
  if (expectTag !== undefined && t.tag !== expectTag) throw new DerError(`expected tag 0x${expectTag.toString(16)}, got 0x${t.tag.toString(16)}`);
  return t;
}

// Splits a constructed value into its children (all of it must be consumed).
function children(value) {
  const out = [];
  let off = 0;
  while (off < value.length) {
    const t = readTlv(value, off);
    out.push(t);
    off = t.end;
  }
  return out;
}

// DER INTEGER → unsigned magnitude bytes. Negative values are refused: every
// INTEGER we read (coordinates, r, s, versions) is non-negative.
function integerToUnsigned(value) {
  if (value.length === 0) throw new DerError('empty INTEGER');
  if (value.length > 1) {
    if (value[0] === 0x00 && (value[1] & 0x80) === 0) throw new DerError('non-minimal INTEGER (superfluous leading 0x00)');
    if (value[0] === 0xff && (value[1] & 0x80) !== 0) throw new DerError('non-minimal INTEGER (superfluous leading 0xff)');
  }
  if (value[0] & 0x80) throw new DerError('negative INTEGER');
  return value[0] === 0x00 && value.length > 1 ? value.subarray(1) : value;
}

function encodeLength(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  while (n > 0) { bytes.unshift(n & 0xff); n = Math.floor(n / 256); }
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag, value) {
  return Buffer.concat([Buffer.from([tag]), encodeLength(value.length), value]);
}

// Unsigned big-endian bytes → DER INTEGER: drop leading zeros (keep one
// byte), then add one 0x00 if the top bit is set so the value stays positive.
function encodeUnsignedInteger(bytes) {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  let v = Buffer.from(bytes.subarray(i));
  if (v.length === 0) v = Buffer.from([0]);
  if (v[0] & 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return tlv(TAG.INTEGER, v);
}

function sequence(...parts) { return tlv(TAG.SEQUENCE, Buffer.concat(parts)); }

function decodeOid(value) {
  if (value.length === 0) throw new DerError('empty OID');
  const arcs = [];
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    if (n === 0 && value[i] === 0x80) throw new DerError('non-minimal OID arc');
    n = n * 128 + (value[i] & 0x7f);
    if ((value[i] & 0x80) === 0) { arcs.push(n); n = 0; }
  }
  if (value[value.length - 1] & 0x80) throw new DerError('truncated OID');
  const first = arcs.shift();
  const a = first < 40 ? 0 : first < 80 ? 1 : 2;
  return [a, first - 40 * a, ...arcs].join('.');
}

// Left-pads unsigned bytes to `size` (refusing longer values).
function leftPad(bytes, size, what) {
  if (bytes.length > size) throw new DerError(`${what} longer than ${size} bytes`);
  return Buffer.concat([Buffer.alloc(size - bytes.length), bytes]);
}

// ---- SM2 (GM/T 0009) ---------------------------------------------------------

// SM2 curve order n and field prime p (GB/T 32918.5).
const SM2_P = BigInt('0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF');
const SM2_N = BigInt('0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123');
const big = (b) => BigInt('0x' + (b.length ? b.toString('hex') : '0'));

// SEQUENCE { x INTEGER, y INTEGER, hash OCTET STRING, ciphertext OCTET STRING }
// → sm-crypto C1C3C2 hex (C1 = x||y without the 04 prefix, 64 bytes).
function sm2CipherDerToC1C3C2(der) {
  const seq = readWhole(der, TAG.SEQUENCE);
  const kids = children(seq.value);
  if (kids.length !== 4) throw new DerError(`SM2 ciphertext SEQUENCE has ${kids.length} elements, want 4`);
  const [xi, yi, hi, ci] = kids;
  if (xi.tag !== TAG.INTEGER || yi.tag !== TAG.INTEGER) throw new DerError('SM2 ciphertext x/y must be INTEGERs');
  if (hi.tag !== TAG.OCTET_STRING || ci.tag !== TAG.OCTET_STRING) throw new DerError('SM2 ciphertext hash/ciphertext must be OCTET STRINGs');
  const x = integerToUnsigned(xi.value);
  const y = integerToUnsigned(yi.value);
  if (big(x) >= SM2_P || big(y) >= SM2_P) throw new DerError('SM2 C1 coordinate not below p');
  if (hi.value.length !== 32) throw new DerError(`SM2 hash is ${hi.value.length} bytes, want 32 (SM3)`);
  if (ci.value.length === 0) throw new DerError('empty SM2 ciphertext');
  return Buffer.concat([leftPad(x, 32, 'x'), leftPad(y, 32, 'y'), hi.value, ci.value]).toString('hex');
}

// sm-crypto C1C3C2 hex (no 04 prefix, as sm-crypto emits it) → GM/T 0009 DER.
function sm2CipherC1C3C2ToDer(hex) {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(hex)) throw new DerError('C1C3C2 is not hex');
  const b = Buffer.from(hex, 'hex');
  if (b.length < 64 + 32 + 1) throw new DerError('C1C3C2 too short');
  const x = b.subarray(0, 32), y = b.subarray(32, 64), c3 = b.subarray(64, 96), c2 = b.subarray(96);
  return sequence(encodeUnsignedInteger(x), encodeUnsignedInteger(y),
    tlv(TAG.OCTET_STRING, c3), tlv(TAG.OCTET_STRING, c2));
}

// SEQUENCE { r INTEGER, s INTEGER } → r||s hex (64 bytes), 1 <= r,s < n.
function sm2SigDerToRs(der) {
  const seq = readWhole(der, TAG.SEQUENCE);
  const kids = children(seq.value);
  if (kids.length !== 2 || kids[0].tag !== TAG.INTEGER || kids[1].tag !== TAG.INTEGER) throw new DerError('signature is not SEQUENCE { r INTEGER, s INTEGER }');
  const r = integerToUnsigned(kids[0].value), s = integerToUnsigned(kids[1].value);
  for (const [v, name] of [[r, 'r'], [s, 's']]) {
    const n = big(v);
    if (n < 1n || n >= SM2_N) throw new DerError(`signature ${name} out of range [1, n-1]`);
  }
  return leftPad(r, 32, 'r').toString('hex') + leftPad(s, 32, 's').toString('hex');
}

function sm2SigRsToDer(hex) {
  if (!/^[0-9a-fA-F]{128}$/.test(hex)) throw new DerError('r||s must be 128 hex characters');
  const b = Buffer.from(hex, 'hex');
  return sequence(encodeUnsignedInteger(b.subarray(0, 32)), encodeUnsignedInteger(b.subarray(32)));
}

module.exports = {
  TAG, DerError, readTlv, readWhole, children, integerToUnsigned, encodeUnsignedInteger,
  encodeLength, tlv, sequence, decodeOid,
  sm2CipherDerToC1C3C2, sm2CipherC1C3C2ToDer, sm2SigDerToRs, sm2SigRsToDer,
  SM2_P, SM2_N,
};
