#!/usr/bin/env node
'use strict';
// Mock partner platform for lu-xml.md (Laizhou 370683, Zhaoyuan 370685),
// written from that document only. Partner side: POST /tongban/v1/receive over
// mutual TLS, answering every well-formed message with a signed TongbanAck.
// Control API (plain HTTP, 127.0.0.1): see README.md.

const https = require('https');
const crypto = require('crypto');
const { parseArgs, usage } = require('./lib/args');
const { parseUntrusted, XmlRefused } = require('./lib/safe-xml');
const xmldsig = require('./lib/xmldsig');
const bj = require('./lib/beijing-time');
const { FaultQueue, faultsFromBody } = require('./lib/faults');
const { startControl } = require('./lib/control');
const { post } = require('./lib/https-post');
const { readBody, mediaType, closeMidResponse, answerTwice, LU_MAX_BODY } = require('./lib/http-util');
const common = require('./lib/mock-common');
const schema = require('./lu-xml/schema');
const build = require('./lu-xml/build');

const SPEC = {
  pki: { value: true, help: 'dev PKI directory (certs/make-dev-pki.sh OUT): fills every key/cert default' },
  partner: { value: true, default: 'laizhou', help: 'partner name: notify URL path segment, PKI sub-directory' },
  region: { value: true, help: 'region code(s) served, comma-separated (default from --partner)' },
  host: { value: true, default: '127.0.0.1', help: 'partner endpoint address' },
  port: { value: true, default: '0', help: 'partner endpoint port (0: any, printed on the ready line)' },
  'control-port': { value: true, default: '0', help: 'control API port on 127.0.0.1' },
  cert: { value: true, help: 'TLS server certificate (PEM)' },
  key: { value: true, help: 'TLS server key' },
  ca: { value: true, help: 'CA that issued the gateway\'s TLS client certificates' },
  'peer-ca': { value: true, help: 'CA the gateway\'s XML-DSig certificates must chain to (default --ca)' },
  'sign-key': { value: true, help: 'our RSA signing key (acks and our own messages)' },
  'sign-cert': { value: true, help: 'our signing certificate, sent in KeyInfo' },
  'client-cert': { value: true, help: 'our TLS client certificate for sends to the gateway' },
  'client-key': { value: true, help: 'key of --client-cert' },
  'gateway-url': { value: true, help: 'gateway partner listener base URL, e.g. https://127.0.0.1:8443' },
  'gateway-ca': { value: true, help: 'CA of the gateway\'s TLS server certificate (default --ca)' },
  'gateway-region': { value: true, default: '430603', help: 'ReceiverRegion for our sends when the case does not tell' },
  'known-items': { value: true, help: 'comma-separated item codes; when set, others are answered 1003' },
  'clock-window': { value: true, default: '300', help: 'SendTime window in seconds' },
  quiet: { value: false, help: 'no request log on stderr' },
};

const CODE_TEXT = {
  '0000': '成功', '0001': '重复消息，已接收', '1001': '签名验证失败', '1002': '报文不符合规范', '1003': '事项编码未知',
  '1004': '非本平台服务地区', '1005': '发送时间超出允许范围', '5001': '系统繁忙', '5002': '系统维护',
};

function main() {
  let opts;
  try { opts = parseArgs(process.argv.slice(2), SPEC); } catch (e) { console.error(e.message); process.exit(2); }
  if (opts.help) { console.log(usage('lu-xml-partner.js', SPEC)); return; }
  common.pkiDefaults(opts);
  let cfg;
  try {
    cfg = {
      partner: opts.partner,
      regions: String(opts.region || '').split(',').filter(Boolean),
      tlsCert: common.readFile(opts, 'cert'), tlsKey: common.readFile(opts, 'key'), tlsCa: common.readFile(opts, 'ca'),
      peerCa: common.readFile(opts, 'peer-ca').toString('utf8'),
      signKey: common.readFile(opts, 'sign-key').toString('utf8'), signCert: common.readFile(opts, 'sign-cert').toString('utf8'),
      clientCert: common.readFile(opts, 'client-cert', { required: false }), clientKey: common.readFile(opts, 'client-key', { required: false }),
      gatewayCa: common.readFile(opts, 'gateway-ca', { required: false }),
      gatewayUrl: opts['gateway-url'], gatewayRegion: opts['gateway-region'],
      knownItems: opts['known-items'] ? new Set(opts['known-items'].split(',')) : null,
      windowMs: Number(opts['clock-window']) * 1000,
    };
    if (!cfg.regions.length || !cfg.regions.every((r) => /^\d{6}$/.test(r))) throw new Error('--region must be 6-digit region code(s)');
  } catch (e) { console.error(`lu-xml-partner: ${e.message}`); process.exit(2); }
  const mock = new LuXmlPartner(cfg, common.makeLogger(opts.quiet));
  // SIGTERM/SIGINT: exit 0 so that harnesses can tell a clean stop from a crash.
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
  mock.start(opts.host, opts.port, opts['control-port']).catch((e) => { console.error(`lu-xml-partner: ${e.message}`); process.exit(1); });
}

class LuXmlPartner {
  constructor(cfg, log) {
    this.cfg = cfg;
    this.log = log;
    this.faults = new FaultQueue();
    this.reset();
  }

  reset() {
    this.received = [];
    this.seq = 0;
    this.seen = new Map(); // MessageId → { bodyKey, receiptNo } of messages answered 0000
    this.cases = new Map(); // case_id → { receipt_no, sender_region, message_id, submits }
    this.receipts = new Set();
    this.counter = new common.Counter();
    this.sent = [];
    this.faults.clear();
  }

  async start(host, port, controlPort) {
    this.server = https.createServer({
      cert: this.cfg.tlsCert, key: this.cfg.tlsKey, ca: this.cfg.tlsCa,
      requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2',
    }, (req, res) => this.onRequest(req, res).catch((e) => {
      this.log({ event: 'internal.error', error: e.stack });
      if (!res.headersSent) { res.writeHead(500, { 'content-type': 'text/plain' }); res.end('mock internal error\n'); }
    }));
    this.server.on('tlsClientError', (e) => this.log({ event: 'tls.refused', error: e.message }));
    const p = await common.serverListen(this.server, port, host);
    this.control = await startControl({ port: Number(controlPort), routes: this.routes(), log: this.log });
    const ready = { event: 'ready', adapter: 'lu-xml', partner: this.cfg.partner, regions: this.cfg.regions, port: p, control_port: this.control.address().port };
    process.stdout.write(JSON.stringify(ready) + '\n');
    this.log(ready);
  }

  // ---- partner endpoint ------------------------------------------------------

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
    if (url.pathname !== '/tongban/v1/receive') return answerText(404, `no such endpoint ${url.pathname}`);
    if (req.method !== 'POST') return answerText(405, 'POST only', { allow: 'POST' });
    if (req.httpVersion !== '1.1') return answerText(505, 'HTTP/1.1 only');

    const fault = this.faults.take();
    rec.fault = fault;
    if (fault && fault.kind === 'delay') await common.sleep(fault.ms);
    const got = await readBody(req, LU_MAX_BODY);
    if (got.aborted) { rec.answer = { aborted: true }; return undefined; }
    if (got.tooLarge) return answerText(413, 'body over 32 MiB');
    rec.raw = got.body.toString('utf8');
    const mt = mediaType(req.headers['content-type']);
    if (mt.type !== 'application/xml' || mt.charset !== 'utf-8') {
      return answerText(415, `Content-Type must be application/xml; charset=UTF-8, got ${req.headers['content-type'] || '(none)'}`);
    }

    const transportFault = fault && ['http', 'close', 'garbage'].includes(fault.kind);
    let outcome;
    if (transportFault && !fault.process) outcome = { skipped: true };
    else if (fault && fault.kind === 'code') outcome = this.peekOnly(got.body, rec, fault.code);
    else outcome = this.evaluate(got.body, rec);

    if (outcome.httpStatus) return answerText(outcome.httpStatus, outcome.text);

    // The acknowledgement (lu-xml.md "Acknowledgement").
    let ackXml;
    if (!outcome.skipped) {
      const message = CODE_TEXT[outcome.code] + (outcome.detail ? `: ${outcome.detail}` : '');
      const plain = build.ack({ messageId: outcome.messageId, code: outcome.code, message, receiptNo: outcome.receiptNo });
      ackXml = fault && fault.kind === 'unsigned' ? plain : xmldsig.sign(plain, { keyPem: this.cfg.signKey, certPem: this.cfg.signCert });
      if (fault && fault.kind === 'bad-signature') ackXml = ackXml.replace('</Message>', ' </Message>'); // digest no longer matches
      rec.answer = { http_status: 200, code: outcome.code, message, receipt_no: outcome.receiptNo, ack: ackXml };
    }
    this.log({ event: 'receive', seq: rec.seq, code: outcome.code, message_id: outcome.messageId, detail: outcome.detail, fault: fault && fault.kind });

    const ctype = 'application/xml; charset=UTF-8';
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
      const body = Buffer.from(ackXml || build.ack({ messageId: '', code: '0000', message: CODE_TEXT['0000'] }));
      closeMidResponse(res, 200, { 'content-type': ctype }, body);
      return undefined;
    }
    if (fault && fault.kind === 'garbage') {
      rec.answer = { ...(rec.answer || {}), http_status: 200, fault: 'garbage' };
      res.writeHead(200, { 'content-type': ctype });
      res.end('<<<this is not an acknowledgement>>> \u0000\n');
      return undefined;
    }
    const body = Buffer.from(ackXml, 'utf8');
    if (fault && fault.kind === 'twice') {
      const second = xmldsig.sign(build.ack({ messageId: outcome.messageId, code: '0000', message: CODE_TEXT['0000'], receiptNo: 'UNSOLICITED' }),
        { keyPem: this.cfg.signKey, certPem: this.cfg.signCert });
      answerTwice(res, ctype, Buffer.from(second));
    }
    res.writeHead(200, { 'content-type': ctype, 'content-length': body.length });
    res.end(body);
    return undefined;
  }

  // For a "code" fault: answer `code` without processing, echoing what MessageId can be read.
  peekOnly(buf, rec, code) {
    try {
      const { doc } = parseUntrusted(buf);
      return { code, messageId: schema.peekMessageId(doc), detail: 'scripted' };
    } catch (e) {
      return { code, messageId: '', detail: `scripted (${e.message})` };
    }
  }

  // The receiver's checks, in order; returns { code, messageId, receiptNo?, detail? }
  // or { httpStatus, text } for bodies that get no acknowledgement.
  evaluate(buf, rec) {
    let text, doc;
    try { ({ text, doc } = parseUntrusted(buf)); } catch (e) {
      if (e instanceof XmlRefused) { rec.refused = e.kind; return { httpStatus: 400, text: e.message }; }
      throw e;
    }
    const messageId = schema.peekMessageId(doc);
    const reject = (code, detail) => { rec.error = detail; return { code, messageId, detail }; };

    // 1001: signature (lu-xml.md "Signature"). The root must be a TongbanMessage first.
    const root = doc.documentElement;
    if (root.namespaceURI !== schema.NS || root.localName !== 'TongbanMessage') {
      return reject('1002', `root element must be {${schema.NS}}TongbanMessage`);
    }
    const sig = xmldsig.verify(text, doc, { caPem: this.cfg.peerCa });
    rec.signature = sig;
    if (!sig.ok) return reject('1001', sig.reason);

    // 1002 for the header, then 1005 for SendTime (retryable: the body is
    // checked only once the time is right, so a stale message is never
    // answered with a permanent code it would not get when fresh).
    let header, bodyEl;
    try { ({ header, bodyEl } = schema.readHeader(doc)); } catch (e) {
      if (e instanceof schema.SchemaError) return reject('1002', e.message);
      throw e;
    }
    rec.message = { header: { ...header } };
    delete rec.message.header.send_time_ms;
    const skew = Date.now() - header.send_time_ms;
    if (Math.abs(skew) > this.cfg.windowMs) {
      return reject('1005', `SendTime ${header.send_time} is ${Math.round(skew / 1000)} s from our clock ${bj.format(Date.now())} (window ±${this.cfg.windowMs / 1000} s)`);
    }
    let body;
    try { body = schema.readBody(bodyEl, header.message_type); } catch (e) {
      if (e instanceof schema.SchemaError) return reject('1002', e.message);
      throw e;
    }
    rec.message.body = body;

    // 1004: region (ReceiverRegion, and BanLiDi of a case).
    if (!this.cfg.regions.includes(header.receiver_region)) return reject('1004', `ReceiverRegion ${header.receiver_region} is not served here (${this.cfg.regions.join(',')})`);
    if (header.message_type === 'CASE_SUBMIT' && !this.cfg.regions.includes(body.target_region)) {
      return reject('1004', `BanLiDi ${body.target_region} is not served here (${this.cfg.regions.join(',')})`);
    }
    // 1003: item code, only when a catalogue is configured.
    if (header.message_type === 'CASE_SUBMIT' && this.cfg.knownItems && !this.cfg.knownItems.has(body.item.code)) {
      return reject('1003', `item ${body.item.code} is not in our catalogue`);
    }

    // 0001: duplicate MessageId, same ReceiptNo as the first time.
    const bodyKey = header.message_type + JSON.stringify(body);
    const prev = this.seen.get(header.message_id);
    if (prev) {
      if (prev.bodyKey !== bodyKey) return reject('1002', `MessageId ${header.message_id} was already used for a different message`);
      rec.duplicate = true;
      return { code: '0001', messageId, receiptNo: prev.receiptNo };
    }

    let receiptNo;
    if (header.message_type === 'CASE_SUBMIT') {
      const day = bj.ymd(Date.now());
      receiptNo = `${body.target_region}-SL-${day}-${String(this.counter.next(day)).padStart(4, '0')}`;
      const known = this.cases.get(body.case_id);
      if (known) rec.second_submit_for_case = known.receipt_no; // SPEC §7: never a second case for one case_id
      this.cases.set(body.case_id, { receipt_no: receiptNo, sender_region: header.sender_region, origin_region: body.origin_region, message_id: header.message_id, submits: known ? known.submits + 1 : 1 });
      this.receipts.add(receiptNo);
    } else if (header.message_type !== 'STATUS_NOTIFY') {
      const known = this.cases.get(body.case_id);
      rec.known_receipt = !!known && known.receipt_no === body.receipt_no;
    }
    this.seen.set(header.message_id, { bodyKey, receiptNo });
    rec.accepted = true;
    return { code: '0000', messageId, receiptNo };
  }

  // ---- our own sends -----------------------------------------------------------

  async send(xmlBuf, meta) {
    if (!this.cfg.gatewayUrl) throw new Error('--gateway-url is not configured');
    if (!this.cfg.clientCert || !this.cfg.clientKey) throw new Error('--client-cert/--client-key are not configured');
    const url = `${this.cfg.gatewayUrl.replace(/\/+$/, '')}/partners/${this.cfg.partner}/tongban/v1/notify`;
    const r = await post(url, {
      body: xmlBuf, headers: { 'content-type': 'application/xml; charset=UTF-8' },
      ca: this.cfg.gatewayCa || this.cfg.tlsCa, cert: this.cfg.clientCert, key: this.cfg.clientKey,
    });
    const out = { request: { url, ...meta, xml: xmlBuf.toString('utf8') } };
    this.sent.push({ url, body: xmlBuf, meta });
    if (r.error) { out.error = r.error; return out; }
    out.response = { http_status: r.status, headers: r.headers, body: r.body.toString('utf8') };
    if (r.status === 200) {
      try {
        const { text, doc } = parseUntrusted(r.body);
        out.signature = xmldsig.verify(text, doc, { caPem: this.cfg.peerCa });
        try { out.ack = schema.readAck(doc); } catch (e) { out.ack_error = e.message; }
        if (out.ack && meta.message_id && out.ack.message_id !== meta.message_id) out.ack_error = `ack echoes MessageId ${out.ack.message_id}, sent ${meta.message_id}`;
      } catch (e) {
        out.signature = { ok: false, reason: `ack is not acceptable XML: ${e.message}` };
      }
    }
    this.log({ event: 'send', url, message_id: meta.message_id, http_status: r.status, code: out.ack && out.ack.code, signature_ok: out.signature && out.signature.ok });
    return out;
  }

  // Builds, signs (unless told otherwise), optionally damages, and sends.
  async sendMessage(type, bodyXml, receiver, o = {}) {
    const messageId = o.message_id || crypto.randomUUID();
    let xml = build.message({
      messageId, type, sender: o.sender_region || this.cfg.regions[0], receiver: o.receiver_region || receiver,
      sendTimeMs: Date.now() + (o.send_time_offset_s || 0) * 1000, bodyXml,
    });
    if (!o.unsigned) xml = xmldsig.sign(xml, { keyPem: o.sign_key_pem || this.cfg.signKey, certPem: o.sign_cert_pem || this.cfg.signCert });
    if (o.tamper) xml = xml.replace(/(<Body><\w+><\w+>)([^<]*)/, (m, a, b) => `${a}${b}X`); // after signing: digest breaks
    return this.send(Buffer.from(xml, 'utf8'), { message_id: messageId, type, options: o });
  }

  routes() {
    return {
      'GET /health': () => ({ ok: true, adapter: 'lu-xml', partner: this.cfg.partner, regions: this.cfg.regions }),
      'GET /received': (_b, q) => {
        const since = Number(q.get('since') || 0);
        return this.received.filter((r) => r.seq > since && (q.get('accepted') === null || !!r.accepted === (q.get('accepted') === '1')));
      },
      'GET /cases': () => Object.fromEntries(this.cases),
      'GET /sent': () => this.sent.map((s, i) => ({ index: i, url: s.url, ...s.meta, xml: s.body.toString('utf8') })),
      'GET /script': () => this.faults.list(),
      'POST /script': (b) => {
        const { list, replace } = faultsFromBody(b);
        if (replace) this.faults.clear();
        return { queued: this.faults.add(list) };
      },
      'POST /reset': () => { this.reset(); return { ok: true }; },
      'POST /send-status': (b) => {
        if (!/^0[1-8]$/.test(String(b.status || ''))) throw new Error('status must be "01".."08"');
        const known = this.cases.get(b.case_id);
        const bodyXml = build.statusXml({
          case_id: b.case_id, receipt_no: b.receipt_no || (known && known.receipt_no), status: b.status, opinion: b.opinion,
          supplement: b.supplement, express_no: b.express_no, licence_no: b.licence_no, time_ms: b.time_ms,
        });
        return this.sendMessage('STATUS_NOTIFY', bodyXml, (known && known.sender_region) || this.cfg.gatewayRegion, b.options);
      },
      'POST /send-case': (b) => {
        const c = b.case || b;
        return this.sendMessage('CASE_SUBMIT', build.caseXml(c), c.target_region, b.options);
      },
      // Any message type with a hand-written <Body> content.
      'POST /send-message': (b) => this.sendMessage(b.type, b.body_xml, b.receiver_region || this.cfg.gatewayRegion, b.options),
      // Exactly these bytes (optionally signed first).
      'POST /send-raw': (b) => {
        if (typeof b.xml !== 'string') throw new Error('"xml" (string) required');
        const xml = b.sign ? xmldsig.sign(b.xml, { keyPem: this.cfg.signKey, certPem: this.cfg.signCert }) : b.xml;
        return this.send(Buffer.from(xml, 'utf8'), { raw: true });
      },
      // The bytes of an earlier send again (default: the last one).
      'POST /replay': (b) => {
        const i = b.index === undefined ? this.sent.length - 1 : b.index;
        const s = this.sent[i < 0 ? this.sent.length + i : i];
        if (!s) throw new Error(`nothing sent at index ${i}`);
        return this.send(s.body, { ...s.meta, replay_of: i });
      },
    };
  }
}

if (require.main === module) main();
module.exports = { LuXmlPartner };
