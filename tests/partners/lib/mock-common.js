'use strict';
// What both mock partners share beyond crypto and formats: dev-PKI default
// paths, JSON-lines logging to stderr, the "ready" line on stdout that test
// harnesses wait for, receipt counters, and the request record kept for
// GET /received.

const fs = require('fs');
const path = require('path');

// Regions the demo partners serve (SPEC §1 / the partner documents).
const PARTNER_REGIONS = { laizhou: '370683', zhaoyuan: '370685', wujiang: '440203' };

// With --pki DIR (make-dev-pki.sh's output) every key/cert flag gets a default
// from the documented layout; explicit flags win.
function pkiDefaults(opts, { sm2 = false } = {}) {
  const dir = opts.pki;
  const me = path.join(dir || '', 'partners', opts.partner || '');
  const gw = path.join(dir || '', 'gateway');
  const d = (k, v) => { if (opts[k] === undefined && dir) opts[k] = v; };
  d('cert', path.join(me, 'tls-server.pem'));
  d('key', path.join(me, 'tls-server.key'));
  d('client-cert', path.join(me, 'tls-client.pem'));
  d('client-key', path.join(me, 'tls-client.key'));
  d('ca', path.join(gw, 'ca.pem'));
  if (sm2) {
    d('sign-key', path.join(me, 'sign-sm2.key'));
    d('gateway-sm2-pub', path.join(gw, 'sign-sm2.pub.pem'));
  } else {
    d('sign-key', path.join(me, 'sign-rsa.key'));
    d('sign-cert', path.join(me, 'sign-rsa.pem'));
  }
  if (opts['peer-ca'] === undefined) opts['peer-ca'] = opts.ca;
  if (opts['gateway-ca'] === undefined) opts['gateway-ca'] = opts.ca;
  if (opts.region === undefined && PARTNER_REGIONS[opts.partner]) opts.region = PARTNER_REGIONS[opts.partner];
  return opts;
}

function readFile(opts, key, { required = true } = {}) {
  const f = opts[key];
  if (!f) {
    if (required) throw new Error(`--${key} is required (or --pki DIR)`);
    return undefined;
  }
  try { return fs.readFileSync(f); } catch (e) { throw new Error(`--${key} ${f}: ${e.message}`); }
}

function makeLogger(quiet) {
  return (obj) => { if (!quiet) process.stderr.write(JSON.stringify({ ts: new Date().toISOString(), ...obj }) + '\n'); };
}

// Daily counters for receipt numbers, keyed by the Beijing date.
class Counter {
  constructor() { this.days = new Map(); }
  next(day) { const n = (this.days.get(day) || 0) + 1; this.days.set(day, n); return n; }
  clear() { this.days.clear(); }
}

// A received request as GET /received shows it.
function newRecord(seq, req) {
  return {
    seq,
    received_at: new Date().toISOString(),
    remote: `${req.socket.remoteAddress}:${req.socket.remotePort}`,
    client_cert_subject: (() => {
      try { const c = req.socket.getPeerCertificate(); return c && c.subject ? Object.entries(c.subject).map(([k, v]) => `${k}=${v}`).join(', ') : null; } catch { return null; }
    })(),
    method: req.method,
    path: req.url,
    http_version: req.httpVersion,
    headers: req.headers,
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function serverListen(server, port, host) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(port), host, () => resolve(server.address().port));
  });
}

module.exports = { PARTNER_REGIONS, pkiDefaults, readFile, makeLogger, Counter, newRecord, sleep, serverListen };
