'use strict';
// One outbound HTTPS POST for the mocks' own sends (STATUS_NOTIFY, their own
// CASE_SUBMIT, raw/tampered messages) to the gateway: mutual TLS with the
// partner's client certificate, the gateway's server certificate checked
// against the gateway CA, TLS 1.2+, a fresh connection per send. Resolves with
// { status, headers, body (Buffer) } or { error } for transport failures — a
// test wants to see those, not an exception.

const https = require('https');

function post(urlText, { body, headers = {}, ca, cert, key, timeoutMs = 15000 }) {
  return new Promise((resolve) => {
    let url;
    try { url = new URL(urlText); } catch (e) { resolve({ error: `bad URL ${urlText}: ${e.message}` }); return; }
    const req = https.request({
      method: 'POST',
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || 443,
      path: url.pathname + url.search,
      headers: { ...headers, 'content-length': body.length },
      ca, cert, key,
      minVersion: 'TLSv1.2',
      rejectUnauthorized: true,
      agent: false,
      timeout: timeoutMs,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ error: e.message }));
    req.end(body);
  });
}

module.exports = { post };
