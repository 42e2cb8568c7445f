'use strict';
// yue-json.md "Request signature": X-GD-AppId, X-GD-Timestamp (Unix ms),
// X-GD-Nonce (32 lowercase hex), X-GD-Signature (base64 of the DER SM2
// signature, SM3, signer ID 1234567812345678) over
//   AppId "\n" Timestamp "\n" Nonce "\n" sm3hex(body)
// for every request and every response, both directions.

const crypto = require('crypto');
const gm = require('../lib/gm');
const { decodeBase64 } = require('../lib/encoding');

const signedString = (appId, ts, nonce, body) => `${appId}\n${ts}\n${nonce}\n${gm.sm3hex(body)}`;

function makeHeaders(appId, key, body, { timestamp = Date.now(), nonce = crypto.randomBytes(16).toString('hex'), userId } = {}) {
  const sig = gm.sm2Sign(signedString(appId, timestamp, nonce, body), key, userId);
  return { 'X-GD-AppId': appId, 'X-GD-Timestamp': String(timestamp), 'X-GD-Nonce': nonce, 'X-GD-Signature': sig.toString('base64') };
}

// headers: Node's lower-cased header object. Checks in the document's order
// of refusals: AppId / signature (4010), timestamp (4011), nonce (4012).
// `nonces` is a NonceStore; the nonce is recorded only once the signature
// verified (an unauthenticated request must not burn nonces).
// Returns { ok: true, timestamp, nonce } or { ok: false, code, reason }.
function verifyHeaders(headers, body, { appId, publicKey, userId, windowMs, nonces, now = Date.now() }) {
  const h = (n) => headers[n.toLowerCase()];
  const bad = (code, reason) => ({ ok: false, code, reason });
  const [a, ts, nonce, sig] = ['X-GD-AppId', 'X-GD-Timestamp', 'X-GD-Nonce', 'X-GD-Signature'].map(h);
  if (a === undefined || ts === undefined || nonce === undefined || sig === undefined) return bad('4010', 'X-GD-AppId/Timestamp/Nonce/Signature header missing');
  if (a !== appId) return bad('4010', `unknown AppId ${JSON.stringify(a)}`);
  const der = decodeBase64(sig);
  if (!der) return bad('4010', 'X-GD-Signature is not base64');
  const v = gm.sm2Verify(signedString(a, ts, nonce, body), der, publicKey, userId);
  if (!v.ok) return bad('4010', v.reason);
  if (!/^\d{1,15}$/.test(ts) || Math.abs(now - Number(ts)) > windowMs) return bad('4011', `timestamp ${ts} is more than ${windowMs} ms from our clock ${now}`);
  if (!/^[0-9a-f]{32}$/.test(nonce)) return bad('4012', 'X-GD-Nonce must be 32 lowercase hex characters');
  if (!nonces.add(nonce, now)) return bad('4012', `nonce ${nonce} already seen in the last ${nonces.ttlMs} ms`);
  return { ok: true, timestamp: Number(ts), nonce };
}

// Nonces seen in the last ttlMs (yue-json.md: 10 minutes).
class NonceStore {
  constructor(ttlMs) { this.ttlMs = ttlMs; this.seen = new Map(); }
  add(nonce, now) {
    for (const [n, t] of this.seen) { if (now - t > this.ttlMs) this.seen.delete(n); else break; } // Map keeps insertion order
    if (this.seen.has(nonce)) return false;
    this.seen.set(nonce, now);
    return true;
  }
  clear() { this.seen.clear(); }
}

module.exports = { signedString, makeHeaders, verifyHeaders, NonceStore };
