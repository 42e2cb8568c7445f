#!/usr/bin/env node
'use strict';
// Mock partner platform for yue-json.md (Shaoguan Wujiang 440203), written
// from that document only: the four endpoints under {base}/gateway/tongban/,
// X-GD-* SM2 header signatures both ways, the SM2/SM4 digital envelope, the
// business JSON, and signed JSON responses. Control API (plain HTTP,
// 127.0.0.1): see README.md.

const https = require('https');
const crypto = require('crypto');
const { parseArgs, usage } = require('./lib/args');
const { decodeUtf8 } = require('./lib/encoding');
const sm2keys = require('./lib/sm2-keys');
const bj = require('./lib/beijing-time');
const { FaultQueue, faultsFromBody } = require('./lib/faults');
const { startControl } = require('./lib/control');
const { post } = require('./lib/https-post');
const { readBody, mediaType, closeMidResponse, answerTwice } = require('./lib/http-util');
const common = require('./lib/mock-common');
const schema = require('./yue-json/schema');
const envelope = require('./yue-json/envelope');
const signing = require('./yue-json/signing');
const build = require('./yue-json/build');

const SPEC = {
  pki: { value: true, help: 'dev PKI directory (certs/make-dev-pki.sh OUT): fills every key/cert default' },
  partner: { value: true, default: 'wujiang', help: 'partner name: callback URL path segment, PKI sub-directory' },
  region: { value: true, help: 'region code(s) served, comma-separated (default from --partner)' },
  host: { value: true, default: '127.0.0.1', help: 'partner endpoint address' },
  port: { value: true, default: '0', help: 'partner endpoint port (0: any, printed on the ready line)' },
  'control-port': { value: true, default: '0', help: 'control API port on 127.0.0.1' },
  'base-path': { value: true, default: '', help: 'path prefix of the endpoints ({endpoint} in the document)' },
  cert: { value: true, help: 'TLS server certificate (PEM)' },
  key: { value: true, help: 'TLS server key' },
  ca: { value: true, help: 'CA of the gateway\'s TLS client certificates' },
  'client-auth': { value: true, default: 'optional', help: 'none | optional (a presented certificate must chain to --ca) | require' },
  'sign-key': { value: true, help: 'our SM2 key (PKCS#8 PEM): signs responses, opens envelopes' },
  'gateway-sm2-pub': { value: true, help: 'the gateway\'s SM2 public key (PEM): verifies its signatures, encrypts to it' },
  'app-id': { value: true, default: 'YY-YUNXI-001', help: 'the gateway\'s AppId (the only one accepted)' },
  'own-app-id': { value: true, default: 'GD-WJ-TB', help: 'our AppId' },
  'user-id': { value: true, default: '1234567812345678', help: 'SM2 signer ID' },
  'client-cert': { value: true, help: 'our TLS client certificate for sends to the gateway' },
  'client-key': { value: true, help: 'key of --client-cert' },
  'gateway-url': { value: true, help: 'gateway partner listener base URL, e.g. https://127.0.0.1:8443' },
  'gateway-ca': { value: true, help: 'CA of the gateway\'s TLS server certificate (default --ca)' },
  'known-items': { value: true, help: 'comma-separated matter codes; when set, others are answered 4030' },
  'clock-window-ms': { value: true, default: '300000', help: 'timestamp window' },
  'nonce-ttl-ms': { value: true, default: '600000', help: 'how long a nonce is remembered' },
  quiet: { value: false, help: 'no request log on stderr' },
};

const ENDPOINTS = {
  '/gateway/tongban/case/submit': 'CASE_SUBMIT',
  '/gateway/tongban/case/withdraw': 'CASE_WITHDRAW',
  '/gateway/tongban/case/supplement': 'CASE_SUPPLEMENT',
  '/gateway/tongban/status/notify': 'STATUS_NOTIFY',
};
const CODE_TEXT = {
  '0000': '成功', '0001': '重复请求，已接收', '4001': '参数错误', '4010': 'AppId未知或签名错误', '4011': '时间戳超出范围',
  '4012': '随机数重复', '4020': '解密失败', '4030': '事项不存在', '5000': '系统错误', '5030': '系统繁忙',
};
const JSON_TYPE = 'application/json;charset=UTF-8';

function main() {
  let opts;
  try { opts = parseArgs(process.argv.slice(2), SPEC); } catch (e) { console.error(e.message); process.exit(2); }
  if (opts.help) { console.log(usage('yue-json-partner.js', SPEC)); return; }
  common.pkiDefaults(opts, { sm2: true });
  let cfg;
  try {
    if (!['none', 'optional', 'require'].includes(opts['client-auth'])) throw new Error('--client-auth is none, optional or require');
    cfg = {
      partner: opts.partner,
      regions: String(opts.region || '').split(',').filter(Boolean),
      basePath: opts['base-path'].replace(/\/+$/, ''),
      tlsCert: common.readFile(opts, 'cert'), tlsKey: common.readFile(opts, 'key'),
      tlsCa: common.readFile(opts, 'ca', { required: opts['client-auth'] !== 'none' }),
      clientAuth: opts['client-auth'],
      key: sm2keys.parsePrivateKeyPem(common.readFile(opts, 'sign-key').toString('utf8')),
      gatewayPub: sm2keys.parsePublicKeyPem(common.readFile(opts, 'gateway-sm2-pub').toString('utf8')),
      appId: opts['app-id'], ownAppId: opts['own-app-id'], userId: opts['user-id'],
      clientCert: common.readFile(opts, 'client-cert', { required: false }), clientKey: common.readFile(opts, 'client-key', { required: false }),
      gatewayCa: common.readFile(opts, 'gateway-ca', { required: false }),
      gatewayUrl: opts['gateway-url'],
      knownItems: opts['known-items'] ? new Set(opts['known-items'].split(',')) : null,
      windowMs: Number(opts['clock-window-ms']), nonceTtlMs: Number(opts['nonce-ttl-ms']),
    };
    if (!cfg.regions.length || !cfg.regions.every((r) => /^\d{6}$/.test(r))) throw new Error('--region must be 6-digit region code(s)');
  } catch (e) { console.error(`yue-json-partner: ${e.message}`); process.exit(2); }
  const mock = new YueJsonPartner(cfg, common.makeLogger(opts.quiet));
  // SIGTERM/SIGINT: exit 0 so that harnesses can tell a clean stop from a crash.
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
  mock.start(opts.host, opts.port, opts['control-port']).catch((e) => { console.error(`yue-json-partner: ${e.message}`); process.exit(1); });
}

class YueJsonPartner {
  constructor(cfg, log) {
    this.cfg = cfg;
    this.log = log;
    this.faults = new FaultQueue();
    this.nonces = new signing.NonceStore(cfg.nonceTtlMs);
    this.responseNonces = new signing.NonceStore(cfg.nonceTtlMs); // nonces of the gateway's answers to our sends
    this.reset();
  }

  reset() {
    this.received = [];
    this.seq = 0;
    this.seen = new Map(); // msgId (lower case) → { bizKey, receiptNo }
    this.cases = new Map(); // applyNo → { receipt_no, origin_region, msg_id, submits }
    this.counter = new common.Counter();
    this.sent = [];
    this.nonces.clear();
    this.responseNonces.clear();
    this.faults.clear();
  }

  async start(host, port, controlPort) {
    const tlsOpts = { cert: this.cfg.tlsCert, key: this.cfg.tlsKey, minVersion: 'TLSv1.2' };
    if (this.cfg.clientAuth !== 'none') Object.assign(tlsOpts, { ca: this.cfg.tlsCa, requestCert: true, rejectUnauthorized: this.cfg.clientAuth === 'require' });
    this.server = https.createServer(tlsOpts, (req, res) => this.onRequest(req, res).catch((e) => {
      this.log({ event: 'internal.error', error: e.stack });
      if (!res.headersSent) { res.writeHead(500, { 'content-type': 'text/plain' }); res.end('mock internal error\n'); }
    }));
    this.server.on('tlsClientError', (e) => this.log({ event: 'tls.refused', error: e.message }));
    const p = await common.serverListen(this.server, port, host);
    this.control = await startControl({ port: Number(controlPort), routes: this.routes(), log: this.log });
    const ready = { event: 'ready', adapter: 'yue-json', partner: this.cfg.partner, regions: this.cfg.regions, port: p, control_port: this.control.address().port };
    process.stdout.write(JSON.stringify(ready) + '\n');
    this.log(ready);
  }

  // A signed JSON response (yue-json.md "Response").
  respond(res, obj, fault) {
    const body = Buffer.from(JSON.stringify(obj), 'utf8');
    let headers = signing.makeHeaders(this.cfg.ownAppId, this.cfg.key, body, { userId: this.cfg.userId });
    if (fault && fault.kind === 'bad-signature') {
      // A well-formed DER signature over other bytes: parses, does not verify.
      const other = signing.makeHeaders(this.cfg.ownAppId, this.cfg.key, Buffer.concat([body, Buffer.from(' ')]), { userId: this.cfg.userId, timestamp: headers['X-GD-Timestamp'], nonce: headers['X-GD-Nonce'] });
      headers['X-GD-Signature'] = other['X-GD-Signature'];
    }
    if (fault && fault.kind === 'unsigned') headers = {};
    return { body, headers: { 'content-type': JSON_TYPE, ...headers } };
  }

  async onRequest(req, res) {
    const rec = common.newRecord(++this.seq, req);
    this.received.push(rec);
    const answerText = (status, text, headers = {}) => {
      rec.answer = { http_status: status, text };
      res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers });
      res.end(text + '\n');
      this.log({ event: 'receive', seq: rec.seq, http_status: status, reason: text });
    };
    const url = new URL(req.url, 'https://partner');
    const rel = url.pathname.startsWith(this.cfg.basePath + '/') ? url.pathname.slice(this.cfg.basePath.length) : null;
    const endpointType = rel && ENDPOINTS[rel];
    if (!endpointType) return answerText(404, `no such endpoint ${url.pathname}`);
    if (req.method !== 'POST') return answerText(405, 'POST only', { allow: 'POST' });
    if (req.httpVersion !== '1.1') return answerText(505, 'HTTP/1.1 only');
    if (this.cfg.clientAuth === 'optional' && req.socket.getPeerCertificate() && req.socket.getPeerCertificate().subject && !req.socket.authorized) {
      return answerText(403, `client certificate refused: ${req.socket.authorizationError}`);
    }

    const fault = this.faults.take();
    rec.fault = fault;
    if (fault && fault.kind === 'delay') await common.sleep(fault.ms);
    const got = await readBody(req, 32 * 1024 * 1024);
    if (got.aborted) { rec.answer = { aborted: true }; return undefined; }
    if (got.tooLarge) return answerText(413, 'body over 32 MiB');
    rec.raw = got.body.toString('utf8');
    const mt = mediaType(req.headers['content-type']);
    if (mt.type !== 'application/json' || mt.charset !== 'utf-8') {
      return answerText(415, `Content-Type must be application/json;charset=UTF-8, got ${req.headers['content-type'] || '(none)'}`);
    }

    const transportFault = fault && ['http', 'close', 'garbage'].includes(fault.kind);
    let outcome;
    if (transportFault && !fault.process) outcome = { skipped: true };
    else if (fault && fault.kind === 'code') outcome = { code: fault.code, msgId: peekMsgId(got.body), detail: 'scripted' };
    else outcome = this.evaluate(endpointType, req.headers, got.body, rec);

    let resp;
    if (!outcome.skipped) {
      const msg = CODE_TEXT[outcome.code] ? CODE_TEXT[outcome.code] + (outcome.detail ? `: ${outcome.detail}` : '') : (outcome.detail || '');
      const data = outcome.msgId ? { msgId: outcome.msgId } : null;
      if (data && outcome.receiptNo) data.receiptNo = outcome.receiptNo;
      const obj = { code: outcome.code, msg, data };
      resp = this.respond(res, obj, fault);
      rec.answer = { http_status: 200, ...obj, headers: resp.headers };
    }
    this.log({ event: 'receive', seq: rec.seq, endpoint: endpointType, code: outcome.code, msg_id: outcome.msgId, detail: outcome.detail, fault: fault && fault.kind });

    if (fault && fault.kind === 'http') {
      const h = { 'content-type': 'text/plain; charset=utf-8' };
      if (fault.retry_after !== undefined) h['retry-after'] = String(fault.retry_after);
      rec.answer = { ...(rec.answer || {}), http_status: fault.status || 503, fault: 'http' };
      res.writeHead(fault.status || 503, h);
      res.end(fault.body !== undefined ? String(fault.body) : 'service unavailable\n');
      return undefined;
    }
    if (fault && fault.kind === 'close') {
      rec.answer = { ...(rec.answer || {}), fault: `close-${fault.when || 'mid'}` };
      if (fault.when === 'before') { req.socket.destroy(); return undefined; }
      const r = resp || this.respond(res, { code: '0000', msg: CODE_TEXT['0000'], data: null });
      closeMidResponse(res, 200, r.headers, r.body);
      return undefined;
    }
    if (fault && fault.kind === 'garbage') {
      // Correctly signed, but not a response object: the sender must not take it as one.
      const body = Buffer.from('<html>502 upstream garbage</html>\n');
      rec.answer = { ...(rec.answer || {}), http_status: 200, fault: 'garbage' };
      res.writeHead(200, { 'content-type': JSON_TYPE, ...signing.makeHeaders(this.cfg.ownAppId, this.cfg.key, body, { userId: this.cfg.userId }) });
      res.end(body);
      return undefined;
    }
    if (fault && fault.kind === 'twice') {
      const second = this.respond(res, { code: '0000', msg: CODE_TEXT['0000'], data: { msgId: outcome.msgId || null, receiptNo: 'UNSOLICITED' } });
      answerTwice(res, JSON_TYPE, second.body);
    }
    res.writeHead(200, { ...resp.headers, 'content-length': resp.body.length });
    res.end(resp.body);
    return undefined;
  }

  // The receiver's checks, in order; returns { code, msgId?, receiptNo?, detail? }.
  evaluate(endpointType, headers, body, rec) {
    let msgId = null;
    const reject = (code, detail) => { rec.error = detail; return { code, msgId, detail }; };

    // 4010 / 4011 / 4012: the X-GD-* headers.
    const h = signing.verifyHeaders(headers, body, {
      appId: this.cfg.appId, publicKey: this.cfg.gatewayPub, userId: this.cfg.userId, windowMs: this.cfg.windowMs, nonces: this.nonces,
    });
    rec.signature = h.ok ? { ok: true } : { ok: false, reason: h.reason };
    if (!h.ok) { msgId = peekMsgId(body); return reject(h.code, h.reason); }

    // 4001: the envelope itself.
    let env;
    try { env = JSON.parse(decodeUtf8(body)); } catch (e) { return reject('4001', `body is not UTF-8 JSON: ${e.message}`); }
    msgId = env && typeof env.msgId === 'string' ? env.msgId : null;
    try { schema.envelope(env); } catch (e) { return reject('4001', e.message); }
    if (env.msgType !== endpointType) return reject('4001', `msgType ${env.msgType} does not belong on the ${endpointType} endpoint`);

    // 4020: cannot be decrypted.
    let biz;
    try { biz = envelope.open(env, this.cfg.key.privateKey); } catch (e) {
      if (e instanceof envelope.DecryptError) return reject('4020', e.message);
      throw e;
    }
    rec.message = { msg_id: env.msgId, msg_type: env.msgType, biz: biz.value };

    // 4001 / 4030: the business JSON.
    let view;
    try { view = schema.business(env.msgType, biz.value); } catch (e) {
      if (e instanceof schema.ParamError) return reject('4001', e.message);
      throw e;
    }
    rec.message.view = view;
    if (env.msgType === 'CASE_SUBMIT') {
      if (!this.cfg.regions.includes(view.target_region)) return reject('4001', `$.handleAreaCode: ${view.target_region} is not served here (${this.cfg.regions.join(',')})`);
      if (this.cfg.knownItems && !this.cfg.knownItems.has(view.item.code)) return reject('4030', `matter ${view.item.code} is not in our catalogue`);
    }

    // 0001: duplicate msgId, same receiptNo.
    const key = env.msgId.toLowerCase();
    const bizKey = env.msgType + JSON.stringify(biz.value);
    const prev = this.seen.get(key);
    if (prev) {
      if (prev.bizKey !== bizKey) return reject('4001', `msgId ${env.msgId} was already used for a different message`);
      rec.duplicate = true;
      return { code: '0001', msgId, receiptNo: prev.receiptNo };
    }
    let receiptNo;
    if (env.msgType === 'CASE_SUBMIT') {
      const day = bj.ymd(Date.now());
      receiptNo = `WJ-TB-${day}-${String(this.counter.next(day)).padStart(5, '0')}`;
      const known = this.cases.get(view.case_id);
      if (known) rec.second_submit_for_case = known.receipt_no; // SPEC §7: never a second case for one case_id
      this.cases.set(view.case_id, { receipt_no: receiptNo, origin_region: view.origin_region, msg_id: env.msgId, submits: known ? known.submits + 1 : 1 });
    } else if (env.msgType !== 'STATUS_NOTIFY') {
      const known = this.cases.get(view.case_id);
      rec.known_receipt = !!known && known.receipt_no === view.receipt_no;
    }
    this.seen.set(key, { bizKey, receiptNo });
    rec.accepted = true;
    return { code: '0000', msgId, receiptNo };
  }

  // ---- our own sends -----------------------------------------------------------

  // Sends exact body bytes with exact headers; verifies the signed answer.
  async sendRaw(body, headers, meta) {
    if (!this.cfg.gatewayUrl) throw new Error('--gateway-url is not configured');
    const url = `${this.cfg.gatewayUrl.replace(/\/+$/, '')}/partners/${this.cfg.partner}/gateway/tongban/callback`;
    const r = await post(url, {
      body, headers: { 'content-type': JSON_TYPE, ...headers },
      ca: this.cfg.gatewayCa || this.cfg.tlsCa, cert: this.cfg.clientCert, key: this.cfg.clientKey,
    });
    this.sent.push({ url, body, headers, meta });
    const out = { request: { url, ...meta, headers, body: body.toString('utf8') } };
    if (r.error) { out.error = r.error; return out; }
    out.response = { http_status: r.status, headers: r.headers, body: r.body.toString('utf8') };
    const v = signing.verifyHeaders(r.headers, r.body, {
      appId: this.cfg.appId, publicKey: this.cfg.gatewayPub, userId: this.cfg.userId, windowMs: this.cfg.windowMs, nonces: this.responseNonces,
    });
    out.signature = v.ok ? { ok: true } : { ok: false, code: v.code, reason: v.reason };
    try { out.answer = JSON.parse(r.body.toString('utf8')); } catch (e) { out.answer_error = `response body is not JSON: ${e.message}`; }
    this.log({ event: 'send', url, msg_id: meta.msg_id, http_status: r.status, code: out.answer && out.answer.code, signature_ok: v.ok });
    return out;
  }

  // Seals, signs and sends one business message; `o` damages it on request.
  async sendBusiness(msgType, bizObj, o = {}) {
    const msgId = o.msg_id || crypto.randomUUID();
    const bizText = o.biz_raw !== undefined ? String(o.biz_raw) : JSON.stringify(bizObj);
    let env;
    if (o.garbage_envelope) {
      env = { msgId, msgType, encryptKey: crypto.randomBytes(120).toString('base64'), iv: crypto.randomBytes(16).toString('base64'), bizContent: crypto.randomBytes(48).toString('base64') };
    } else {
      const to = o.encrypt_to_self ? this.cfg.key.publicKey : this.cfg.gatewayPub;
      env = { msgId, msgType, ...envelope.seal(bizText, to) };
    }
    const body = Buffer.from(JSON.stringify(env), 'utf8');
    let headers = signing.makeHeaders(o.app_id || this.cfg.ownAppId, this.cfg.key, body, {
      userId: this.cfg.userId, timestamp: Date.now() + (o.timestamp_offset_ms || 0), nonce: o.nonce,
    });
    if (o.unsigned) headers = {};
    if (o.bad_signature) headers['X-GD-Signature'] = signing.makeHeaders('x', this.cfg.key, body, { userId: this.cfg.userId })['X-GD-Signature'];
    const sentBody = o.tamper ? Buffer.from(JSON.stringify({ ...env, msgId: crypto.randomUUID() }), 'utf8') : body;
    return this.sendRaw(sentBody, headers, { msg_id: msgId, msg_type: msgType, biz: bizText, options: o });
  }

  routes() {
    return {
      'GET /health': () => ({ ok: true, adapter: 'yue-json', partner: this.cfg.partner, regions: this.cfg.regions }),
      'GET /received': (_b, q) => {
        const since = Number(q.get('since') || 0);
        return this.received.filter((r) => r.seq > since && (q.get('accepted') === null || !!r.accepted === (q.get('accepted') === '1')));
      },
      'GET /cases': () => Object.fromEntries(this.cases),
      'GET /sent': () => this.sent.map((s, i) => ({ index: i, url: s.url, ...s.meta, headers: s.headers, body: s.body.toString('utf8') })),
      'GET /script': () => this.faults.list(),
      'POST /script': (b) => {
        const { list, replace } = faultsFromBody(b);
        if (replace) this.faults.clear();
        return { queued: this.faults.add(list) };
      },
      'POST /reset': () => { this.reset(); return { ok: true }; },
      'POST /send-status': (b) => {
        const known = this.cases.get(b.case_id);
        const biz = build.statusNotify({ ...b, receipt_no: b.receipt_no || (known && known.receipt_no) });
        if (!schema.STATUS[biz.status]) throw new Error(`status must be "01".."08" or one of ${Object.keys(schema.STATUS).join(', ')}`);
        return this.sendBusiness('STATUS_NOTIFY', biz, b.options);
      },
      'POST /send-case': (b) => this.sendBusiness('CASE_SUBMIT', build.caseSubmit(b.case || b), b.options),
      // Any message type with a hand-written business JSON object.
      'POST /send-message': (b) => this.sendBusiness(b.msg_type, b.biz, b.options),
      // Exactly this body; signed with fresh headers unless "headers" are given.
      'POST /send-raw': (b) => {
        if (typeof b.body !== 'string') throw new Error('"body" (string) required');
        const body = Buffer.from(b.body, 'utf8');
        const headers = b.headers || (b.sign === false ? {} : signing.makeHeaders(this.cfg.ownAppId, this.cfg.key, body, { userId: this.cfg.userId }));
        return this.sendRaw(body, headers, { raw: true });
      },
      // An earlier send again, same bytes and same headers (nonce included).
      'POST /replay': (b) => {
        const i = b.index === undefined ? this.sent.length - 1 : b.index;
        const s = this.sent[i < 0 ? this.sent.length + i : i];
        if (!s) throw new Error(`nothing sent at index ${i}`);
        return this.sendRaw(s.body, s.headers, { ...s.meta, replay_of: i });
      },
    };
  }
}

function peekMsgId(body) {
  try { const v = JSON.parse(body.toString('utf8')); return v && typeof v.msgId === 'string' ? v.msgId : null; } catch { return null; }
}

if (require.main === module) main();
module.exports = { YueJsonPartner };
