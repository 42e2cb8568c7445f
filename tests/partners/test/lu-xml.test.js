'use strict';
// Self-tests of the lu-xml mock, independent of the gateway and of the mock's
// own signer: messages are written here by hand from lu-xml.md (the
// canonical → lu-xml mapping below is this file's own), signed with the
// xmlsec1 command line (the mock uses xml-crypto), and the mock's signed
// acknowledgements are checked with `xmlsec1 --verify --trusted-pem`.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const https = require('https');
const tls = require('tls');
const crypto = require('crypto');
const h = require('../harness/helpers');

const PKI = h.makePki();
const GW = path.join(PKI, 'gateway');
const LZ = path.join(PKI, 'partners', 'laizhou');
const WORK = h.tmpdir('tb-lu-test-');
const read = (f) => fs.readFileSync(f);
const TLS = { ca: read(`${LZ}/ca.pem`), cert: read(`${GW}/tls-client.pem`), key: read(`${GW}/tls-client.key`) };
const XML_TYPE = 'application/xml; charset=UTF-8';

// ---- independent message writer ------------------------------------------------

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const bjTime = (ms) => new Date(ms + 8 * 3600e3).toISOString().slice(0, 19).replace('T', ' ');

function person(p) {
  return `<LeiXing>${p.kind === 'person' ? 1 : 2}</LeiXing><XingMing>${esc(p.name)}</XingMing>` +
    `<ZhengJianLeiXing>${p.id_type}</ZhengJianLeiXing><ZhengJianHaoMa>${p.id_number}</ZhengJianHaoMa>` +
    `<LianXiDianHua>${p.phone}</LianXiDianHua>${p.address ? `<DiZhi>${esc(p.address)}</DiZhi>` : ''}`;
}
function formItems(v, prefix, out) {
  if (Array.isArray(v)) v.forEach((e, i) => formItems(e, `${prefix}[${i}]`, out));
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) formItems(v[k], prefix ? `${prefix}.${k}` : k, out);
  else {
    const t = v === null ? 'null' : typeof v;
    out.push(`<Xiang Ming="${esc(prefix)}" LeiXing="${t}">${v === null ? '' : esc(String(v))}</Xiang>`);
  }
  return out;
}
// Sample case (SPEC §3) → <Case>, as lu-xml.md's CASE_SUBMIT comments map it.
function caseBody(c, over = {}) {
  const accepted = bjTime(Date.parse(c.accepted_at));
  const mats = c.materials.map((m) => `<CaiLiao><MingCheng>${esc(m.name)}</MingCheng><GeShi>${over.geshi || 'pdf'}</GeShi>` +
    `<DaXiao>${m.size}</DaXiao><ZhaiYao SuanFa="SM3">${over.sm3 || m.sm3}</ZhaiYao><NeiRong>${m.content_base64}</NeiRong></CaiLiao>`).join('');
  const d = c.delivery;
  return `<Case><ShenBanHao>${c.case_id}</ShenBanHao><ShiXiangBianMa>${c.item.code}</ShiXiangBianMa>` +
    `<ShiXiangMingCheng>${esc(c.item.name)}</ShiXiangMingCheng><ShouLiDi>${c.origin_region}</ShouLiDi>` +
    `<BanLiDi>${over.banLiDi || c.target_region}</BanLiDi><ShouLiShiJian>${accepted}</ShouLiShiJian>` +
    (over.noApplicant ? '' : `<ShenQingRen>${person(c.applicant)}</ShenQingRen>`) +
    `<CaiLiaoList>${mats}</CaiLiaoList><BiaoDan>${over.form || formItems(c.form, '', []).join('')}</BiaoDan>` +
    `<SongDa><FangShi>${{ mail: 1, pickup: 2, electronic: 3 }[d.method]}</FangShi>` +
    `${d.recipient ? `<ShouJianRen>${esc(d.recipient)}</ShouJianRen>` : ''}${d.phone ? `<DianHua>${d.phone}</DianHua>` : ''}` +
    `${d.address ? `<DiZhi>${esc(d.address)}</DiZhi>` : ''}</SongDa><BeiZhu>${esc(c.remarks)}</BeiZhu></Case>`;
}

const SIG_TEMPLATE = '<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>' +
  '<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>' +
  '<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>' +
  '<ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>' +
  '<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>' +
  '<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/></ds:Reference></ds:SignedInfo>' +
  '<ds:SignatureValue/><ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>';

function message({ id = crypto.randomUUID(), type = 'CASE_SUBMIT', receiver = '370683', sendTime = Date.now(), body, root = 'TongbanMessage' }) {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="urn:sd:tongban:1.0" version="1.0"><Header><MessageId>${id}</MessageId>` +
    `<MessageType>${type}</MessageType><SenderRegion>430603</SenderRegion><ReceiverRegion>${receiver}</ReceiverRegion>` +
    `<SendTime>${bjTime(sendTime)}</SendTime></Header><Body>${body}</Body>${SIG_TEMPLATE}</${root}>`;
}

let nfile = 0;
// Signs the template in `xml` with the xmlsec1 CLI.
function xmlsecSign(xml, keyDir = GW) {
  const src = path.join(WORK, `t${++nfile}.xml`), out = path.join(WORK, `s${nfile}.xml`);
  fs.writeFileSync(src, xml);
  const r = h.run('xmlsec1', ['--sign', '--privkey-pem', `${keyDir}/sign-rsa.key,${keyDir}/sign-rsa.pem`, '--output', out, src]);
  assert.equal(r.status, 0, `xmlsec1 --sign failed: ${r.stderr}`);
  return fs.readFileSync(out);
}
function xmlsecVerify(xml, caFile) {
  const f = path.join(WORK, `v${++nfile}.xml`);
  fs.writeFileSync(f, xml);
  return h.run('xmlsec1', ['--verify', '--trusted-pem', caFile, f]);
}

// ---- fixtures --------------------------------------------------------------------

let mock;
const sample = h.loadSample('01');
test.before(async () => { mock = await h.startMock('lu-xml-partner.js', ['--pki', PKI, '--partner', 'laizhou', '--quiet']); });
test.after(async () => { if (mock) await mock.stop(); });

const send = (body, headers = { 'content-type': XML_TYPE }, tls = TLS, method = 'POST', p = '/tongban/v1/receive') =>
  h.request(mock.port, { method, path: p, headers, body: Buffer.isBuffer(body) ? body : Buffer.from(body), tls });

// Parses an ack just enough to read its fields (regex: a test must not need the mock's parser).
function ackFields(buf) {
  const t = buf.toString('utf8');
  const f = (n) => { const m = new RegExp(`<${n}>([^<]*)</${n}>`).exec(t); return m ? m[1] : undefined; };
  return { text: t, root: /<TongbanAck xmlns="urn:sd:tongban:1.0">/.test(t), messageId: f('MessageId'), code: f('Code'), message: f('Message'), receiptNo: f('ReceiptNo'), receiveTime: f('ReceiveTime') };
}
async function expectCode(body, code, note) {
  const r = await send(body);
  assert.equal(r.status, 200, `${note}: HTTP ${r.status} ${r.body}`);
  const a = ackFields(r.body);
  assert.equal(a.code, code, `${note}: ${a.message}`);
  assert.equal(xmlsecVerify(r.body, `${LZ}/ca.pem`).status, 0, `${note}: ack signature does not verify with xmlsec1`);
  return a;
}

// ---- tests ---------------------------------------------------------------------

test('CASE_SUBMIT for sample 01 → 0000 with a ReceiptNo, signed ack verified by xmlsec1; again → 0001 same ReceiptNo', async () => {
  const id = crypto.randomUUID();
  const signed = xmlsecSign(message({ id, body: caseBody(sample) }));
  const r = await send(signed);
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^application\/xml; ?charset=utf-8$/i);
  const a = ackFields(r.body);
  assert.ok(a.root, a.text);
  assert.equal(a.code, '0000', a.message);
  assert.equal(a.messageId, id);
  assert.match(a.receiptNo, /^370683-SL-\d{8}-\d{4}$/);
  assert.match(a.receiveTime, /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/);
  const v = xmlsecVerify(r.body, `${LZ}/ca.pem`);
  assert.equal(v.status, 0, v.stderr);
  assert.notEqual(xmlsecVerify(r.body, `${GW}/ca.pem`).status, 0, 'ack must not verify against another CA');

  const again = await send(signed);
  const b = ackFields(again.body);
  assert.equal(b.code, '0001');
  assert.equal(b.receiptNo, a.receiptNo);
  // A retry carries the same MessageId with a fresh SendTime and signature.
  const resigned = xmlsecSign(message({ id, body: caseBody(sample), sendTime: Date.now() + 1000 }));
  const c = await expectCode(resigned, '0001', 'resigned retry');
  assert.equal(c.receiptNo, a.receiptNo);

  // What the mock recorded: the canonical-ish view, form un-flattened with types.
  const rec = (await h.control(mock.controlPort, 'GET', '/received')).body.find((x) => x.answer && x.answer.receipt_no === a.receiptNo && x.accepted);
  assert.ok(rec, 'recorded');
  const body = rec.message.body;
  assert.deepEqual(body.form, sample.form);
  assert.equal(body.case_id, sample.case_id);
  assert.equal(body.accepted_at, '2024-05-06T10:00:00+08:00');
  assert.deepEqual(body.applicant, sample.applicant);
  assert.deepEqual(body.delivery, sample.delivery);
  assert.deepEqual(body.materials.map((m) => [m.name, m.media_type, m.size, m.sm3, m.content_base64]),
    sample.materials.map((m) => [m.name, m.media_type, m.size, m.sm3, m.content_base64]));
  assert.ok(rec.raw.includes('<ds:SignatureValue>'));
});

test('same MessageId with a different body → 1002', async () => {
  const id = crypto.randomUUID();
  await expectCode(xmlsecSign(message({ id, body: caseBody({ ...sample, case_id: 'x-1' }) })), '0000', 'first');
  await expectCode(xmlsecSign(message({ id, body: caseBody({ ...sample, case_id: 'x-2' }) })), '1002', 'different body');
});

test('signature problems → 1001: tampered, unsigned, foreign signer, signer is not under the peer CA', async () => {
  const signed = xmlsecSign(message({ body: caseBody(sample) })).toString('utf8');
  await expectCode(signed.replace('<XingMing>张三</XingMing>', '<XingMing>张四</XingMing>'), '1001', 'tampered body');
  await expectCode(signed.replace(/<SenderRegion>430603</, '<SenderRegion>430604<'), '1001', 'tampered header');
  await expectCode(message({ body: caseBody(sample) }).replace(SIG_TEMPLATE, ''), '1001', 'unsigned');
  await expectCode(xmlsecSign(message({ body: caseBody(sample) }), LZ), '1001', 'signed by a key of another CA');
  // A valid signature whose reference is not URI="" (only part of the document signed) is refused.
  const partial = xmlsecSign(message({ body: caseBody(sample) }).replace('URI=""', 'URI="#h"').replace('<Header>', '<Header xml:id="h">'));
  await expectCode(partial, '1001', 'reference not URI=""');
  // SHA-1 digest instead of SHA-256.
  const sha1 = xmlsecSign(message({ body: caseBody(sample) }).replace('xmlenc#sha256', 'xmldsig#sha1').replace('http://www.w3.org/2001/04/xmldsig#sha1', 'http://www.w3.org/2000/09/xmldsig#sha1'));
  await expectCode(sha1, '1001', 'sha1 digest');
  // An element added after signing.
  const misplaced = xmlsecSign(message({ body: caseBody(sample) })).toString('utf8').replace(/<Body>/, '<Extra/><Body>');
  await expectCode(misplaced, '1001', 'document changed after signing');
});

test('SendTime outside ±300 s → 1005 (either direction); inside → accepted', async () => {
  await expectCode(xmlsecSign(message({ body: caseBody({ ...sample, case_id: 't-stale' }), sendTime: Date.now() - 310e3 })), '1005', 'stale');
  await expectCode(xmlsecSign(message({ body: caseBody({ ...sample, case_id: 't-future' }), sendTime: Date.now() + 310e3 })), '1005', 'future');
  await expectCode(xmlsecSign(message({ body: caseBody({ ...sample, case_id: 't-ok' }), sendTime: Date.now() - 250e3 })), '0000', 'inside the window');
});

test('region not served → 1004 (ReceiverRegion, BanLiDi)', async () => {
  await expectCode(xmlsecSign(message({ receiver: '370685', body: caseBody(sample) })), '1004', 'ReceiverRegion');
  await expectCode(xmlsecSign(message({ body: caseBody(sample, { banLiDi: '370685' }) })), '1004', 'BanLiDi');
});

test('schema violations → 1002', async () => {
  const bad = {
    'GeShi not in the list': caseBody(sample, { geshi: 'exe' }),
    'SM3 does not match NeiRong': caseBody(sample, { sm3: '0'.repeat(64) }),
    'SM3 not lowercase hex': caseBody(sample, { sm3: sample.materials[0].sm3.toUpperCase() }),
    'missing ShenQingRen': caseBody(sample, { noApplicant: true }),
    'bad number in BiaoDan': caseBody(sample, { form: '<Xiang Ming="a" LeiXing="number">2x</Xiang>' }),
    'unknown LeiXing': caseBody(sample, { form: '<Xiang Ming="a" LeiXing="date">2024</Xiang>' }),
    'sparse array in BiaoDan': caseBody(sample, { form: '<Xiang Ming="a[1]" LeiXing="string">x</Xiang>' }),
    'DaXiao wrong': caseBody(sample).replace('<DaXiao>30</DaXiao>', '<DaXiao>31</DaXiao>'),
    'FangShi 4': caseBody(sample).replace('<FangShi>1</FangShi>', '<FangShi>4</FangShi>'),
    'ZhengJianLeiXing not in table': caseBody(sample).replace('<ZhengJianLeiXing>111</ZhengJianLeiXing>', '<ZhengJianLeiXing>112</ZhengJianLeiXing>'),
    'resident ID check digit': caseBody(sample).replace('430603199001011231', '430603199001011232'),
    'ShouLiShiJian not Beijing time format': caseBody(sample).replace(/<ShouLiShiJian>[^<]*/, '<ShouLiShiJian>2024-05-06T10:00:00+08:00'),
    'unknown element': caseBody(sample).replace('<BeiZhu>', '<Extra>1</Extra><BeiZhu>'),
    'elements out of order': caseBody(sample).replace(/(<ShiXiangBianMa>[^<]*<\/ShiXiangBianMa>)(<ShiXiangMingCheng>[^<]*<\/ShiXiangMingCheng>)/, '$2$1'),
    'body does not match MessageType': '<Withdraw><ShenBanHao>a</ShenBanHao><HuiZhiHao>b</HuiZhiHao><YuanYin>c</YuanYin></Withdraw>',
  };
  for (const [what, body] of Object.entries(bad)) await expectCode(xmlsecSign(message({ body })), '1002', what);
  await expectCode(xmlsecSign(message({ body: caseBody(sample) }).replace('<MessageId>', '<MessageId>X')), '1002', 'MessageId not a lowercase UUID');
  await expectCode(xmlsecSign(message({ type: 'CASE_DELETE', body: caseBody(sample) })), '1002', 'unknown MessageType');
  await expectCode(xmlsecSign(message({ body: caseBody(sample) }).replace('xmlns="urn:sd:tongban:1.0"', 'xmlns="urn:sd:tongban:2.0"')), '1002', 'wrong namespace');
  await expectCode(xmlsecSign(message({ body: caseBody(sample) }).replace(' version="1.0">', ' version="1.1">')), '1002', 'version');
  // STATUS_NOTIFY / WITHDRAW shapes
  const st = (inner) => `<Status><ShenBanHao>430603-1</ShenBanHao><HuiZhiHao>R-1</HuiZhiHao>${inner}<ShiJian>2024-05-07 09:30:00</ShiJian></Status>`;
  await expectCode(xmlsecSign(message({ type: 'STATUS_NOTIFY', body: st('<ZhuangTai>03</ZhuangTai>') })), '1002', '03 without BuZhengCaiLiao');
  await expectCode(xmlsecSign(message({ type: 'STATUS_NOTIFY', body: st('<ZhuangTai>09</ZhuangTai>') })), '1002', 'ZhuangTai 09');
  await expectCode(xmlsecSign(message({ type: 'STATUS_NOTIFY', body: st('<ZhuangTai>03</ZhuangTai><BuZhengCaiLiao><MingCheng>结婚证</MingCheng></BuZhengCaiLiao>') })), '0000', 'valid 03');
  await expectCode(xmlsecSign(message({ type: 'CASE_WITHDRAW', body: '<Withdraw><ShenBanHao>430603-1</ShenBanHao><HuiZhiHao>R-1</HuiZhiHao><YuanYin>申请人撤回</YuanYin></Withdraw>' })), '0000', 'valid withdraw');
});

test('DTD, external entity, billion laughs → HTTP 400, nothing expanded', async () => {
  const id = crypto.randomUUID();
  const xxe = `<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE TongbanMessage [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n` +
    message({ id, body: caseBody({ ...sample, remarks: '&xxe;' }) }).replace(/^<\?xml[^>]*>\n/, '').replace('&amp;xxe;', '&xxe;');
  const laughs = '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">' +
    Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`).join('') + ']>\n<TongbanMessage xmlns="urn:sd:tongban:1.0">&lol9;</TongbanMessage>';
  const plainDoctype = '<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE TongbanMessage>\n' + message({ body: caseBody(sample) }).replace(/^<\?xml[^>]*>\n/, '');
  for (const [what, body] of [['xxe', xxe], ['billion laughs', laughs], ['plain DOCTYPE', plainDoctype]]) {
    const t0 = Date.now();
    const r = await send(body);
    assert.equal(r.status, 400, `${what}: ${r.status} ${r.body}`);
    assert.ok(!/root:|lollol/.test(r.body.toString()), `${what}: something was expanded`);
    assert.ok(Date.now() - t0 < 2000, `${what}: took too long`);
  }
});

test('transport rules: not XML → 400, wrong Content-Type → 415, GET → 405, unknown path → 404, over 32 MiB → 413', async () => {
  assert.equal((await send('<TongbanMessage><Header>')).status, 400);
  assert.equal((await send(Buffer.from([0x3c, 0x61, 0xff, 0x3e]))).status, 400); // invalid UTF-8
  assert.equal((await send(xmlsecSign(message({ body: caseBody(sample) })), { 'content-type': 'application/json' })).status, 415);
  assert.equal((await send(xmlsecSign(message({ body: caseBody(sample) })), { 'content-type': 'application/xml; charset=GBK' })).status, 415);
  assert.equal((await send('', {}, TLS, 'GET')).status, 405);
  assert.equal((await send('<a/>', { 'content-type': XML_TYPE }, TLS, 'POST', '/tongban/v1/other')).status, 404);
  assert.equal((await send(Buffer.alloc(32 * 1024 * 1024 + 1, 0x20))).status, 413);
});

test('mutual TLS: no client certificate, or one from another CA, is refused in the handshake', async () => {
  const none = await send('<a/>', { 'content-type': XML_TYPE }, { ca: TLS.ca });
  assert.ok(none.error || none.status >= 400, 'no client cert must fail');
  const foreign = await send('<a/>', { 'content-type': XML_TYPE }, { ca: TLS.ca, cert: read(`${LZ}/tls-client.pem`), key: read(`${LZ}/tls-client.key`) });
  assert.ok(foreign.error, `foreign client cert must fail, got ${foreign.status}`);
});

test('scripted faults: code, 503 + Retry-After, close, bad-signature, unsigned, garbage, lost ack then 0001', async () => {
  const script = (f) => h.control(mock.controlPort, 'POST', '/script', f);
  const fresh = (n) => xmlsecSign(message({ body: caseBody({ ...sample, case_id: `fault-${n}` }) }));

  await script({ kind: 'code', code: '5001', count: 2 });
  assert.equal(ackFields((await send(fresh(1))).body).code, '5001');
  assert.equal(ackFields((await send(fresh(1))).body).code, '5001');
  assert.equal(ackFields((await send(fresh(1))).body).code, '0000');

  await script({ kind: 'http', status: 503, retry_after: '2' });
  let r = await send(fresh(2));
  assert.equal(r.status, 503);
  assert.equal(r.headers['retry-after'], '2');

  await script({ kind: 'close', when: 'before' });
  r = await send(fresh(3));
  assert.ok(r.error, 'connection closed without an answer');
  await script({ kind: 'close' });
  r = await send(fresh(3));
  assert.ok(r.error || r.body.length < 200, 'truncated answer');

  await script({ kind: 'bad-signature' });
  r = await send(fresh(4));
  assert.equal(ackFields(r.body).code, '0000');
  assert.notEqual(xmlsecVerify(r.body, `${LZ}/ca.pem`).status, 0, 'bad-signature ack must not verify');

  await script({ kind: 'unsigned' });
  r = await send(fresh(5));
  assert.ok(!r.body.toString().includes('Signature'));

  await script({ kind: 'garbage' });
  r = await send(fresh(6));
  assert.equal(r.status, 200);
  assert.ok(!r.body.toString().includes('TongbanAck'));

  // The platform takes the message but the answer is lost: the retry gets 0001 with the receipt.
  const lost = fresh(7);
  await script({ kind: 'http', status: 502, process: true });
  assert.equal((await send(lost)).status, 502);
  const a = ackFields((await send(lost)).body);
  assert.equal(a.code, '0001');
  assert.match(a.receiptNo, /^370683-SL-/);

  // "twice": a second, unsolicited response follows the real one on the same connection.
  await script({ kind: 'twice' });
  const raw = await new Promise((resolve) => {
    const body = fresh(9);
    const s = tls.connect({ port: mock.port, host: '127.0.0.1', servername: 'localhost', ...TLS }, () => {
      s.write(`POST /tongban/v1/receive HTTP/1.1\r\nHost: partner\r\nContent-Type: ${XML_TYPE}\r\nContent-Length: ${body.length}\r\n\r\n`);
      s.write(body);
    });
    let out = '';
    s.on('data', (d) => { out += d; if ((out.match(/<\/TongbanAck>/g) || []).length === 2) { s.destroy(); resolve(out); } });
    setTimeout(() => { s.destroy(); resolve(out); }, 3000);
  });
  assert.equal((raw.match(/HTTP\/1\.1 200/g) || []).length, 2, raw);

  await script({ kind: 'delay', ms: 300 });
  const t0 = Date.now();
  assert.equal(ackFields((await send(fresh(8))).body).code, '0000');
  assert.ok(Date.now() - t0 >= 300);
  assert.deepEqual((await h.control(mock.controlPort, 'GET', '/script')).body, []);
});

// A fake gateway (xmlsec1 verifies what the mock sends, xmlsec1 signs the ack)
// for the mock's outbound sends.
function fakeGateway(onMessage) {
  const server = https.createServer({
    cert: read(`${GW}/tls-server.pem`), key: read(`${GW}/tls-server.key`), ca: read(`${LZ}/ca.pem`), requestCert: true, rejectUnauthorized: true,
  }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const { status, body } = onMessage(req, Buffer.concat(chunks));
      res.writeHead(status, { 'content-type': XML_TYPE });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
function gatewayAck(id, code = '0000', sign = true) {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<TongbanAck xmlns="urn:sd:tongban:1.0"><MessageId>${id}</MessageId><Code>${code}</Code>` +
    `<Message>ok</Message><ReceiveTime>${bjTime(Date.now())}</ReceiveTime>${sign ? SIG_TEMPLATE : ''}</TongbanAck>`;
  return sign ? xmlsecSign(xml) : Buffer.from(xml);
}

test('send-status and send-case: signed messages that xmlsec1 verifies, gateway acks verified', async () => {
  const seen = [];
  let signAck = true;
  const gw = await fakeGateway((req, body) => {
    const v = xmlsecVerify(body, `${LZ}/ca.pem`);
    const id = /<MessageId>([^<]*)</.exec(body.toString())[1];
    seen.push({ path: req.url, xml: body.toString(), verified: v.status === 0, ctype: req.headers['content-type'] });
    return { status: 200, body: gatewayAck(id, '0000', signAck) };
  });
  const port = gw.address().port;
  const m2 = await h.startMock('lu-xml-partner.js', ['--pki', PKI, '--partner', 'laizhou', '--quiet', '--gateway-url', `https://127.0.0.1:${port}`]);
  try {
    // Receive a case first so that the status can default ReceiverRegion and receipt.
    const signed = xmlsecSign(message({ body: caseBody(sample) }));
    const ack = ackFields((await h.request(m2.port, { path: '/tongban/v1/receive', headers: { 'content-type': XML_TYPE }, body: signed, tls: TLS })).body);
    assert.equal(ack.code, '0000');
    const r = (await h.control(m2.controlPort, 'POST', '/send-status', {
      case_id: sample.case_id, status: '03', opinion: '请补充结婚证复印件', supplement: ['结婚证复印件'],
    })).body;
    assert.equal(r.response.http_status, 200, JSON.stringify(r));
    assert.equal(r.signature.ok, true, JSON.stringify(r.signature));
    assert.equal(r.ack.code, '0000');
    const got = seen.at(-1);
    assert.equal(got.path, '/partners/laizhou/tongban/v1/notify');
    assert.equal(got.verified, true, 'xmlsec1 verifies the STATUS_NOTIFY');
    assert.match(got.ctype, /^application\/xml; ?charset=UTF-8$/i);
    assert.ok(got.xml.includes(`<HuiZhiHao>${ack.receiptNo}</HuiZhiHao>`));
    assert.ok(got.xml.includes('<ZhuangTai>03</ZhuangTai>') && got.xml.includes('<BuZhengCaiLiao><MingCheng>结婚证复印件</MingCheng></BuZhengCaiLiao>'));
    assert.ok(got.xml.includes('<ReceiverRegion>430603</ReceiverRegion>'));

    const own = { ...h.loadSample('05'), case_id: '370683-20240601-000001', origin_region: '370683', target_region: '430603' };
    const c = (await h.control(m2.controlPort, 'POST', '/send-case', own)).body;
    assert.equal(c.signature.ok, true);
    assert.equal(seen.at(-1).verified, true);
    assert.ok(seen.at(-1).xml.includes('<BanLiDi>430603</BanLiDi>'));
    assert.ok(seen.at(-1).xml.includes('<Xiang Ming="period.from" LeiXing="string">2000-01-01</Xiang>'));

    const t = (await h.control(m2.controlPort, 'POST', '/send-status', { case_id: sample.case_id, status: '04', options: { tamper: true } })).body;
    assert.equal(seen.at(-1).verified, false, 'tampered send must not verify');
    assert.equal(t.response.http_status, 200);
    await h.control(m2.controlPort, 'POST', '/send-status', { case_id: sample.case_id, status: '04', options: { send_time_offset_s: -3600 } });
    assert.ok(seen.at(-1).xml.includes('<SendTime>'));
    const rep = (await h.control(m2.controlPort, 'POST', '/replay', {})).body;
    assert.equal(rep.request.xml, seen.at(-2).xml, 'replay sends the same bytes');

    signAck = false;
    const u = (await h.control(m2.controlPort, 'POST', '/send-status', { case_id: sample.case_id, status: '01' })).body;
    assert.equal(u.signature.ok, false, 'an unsigned gateway ack is reported');
  } finally {
    await m2.stop();
    gw.close();
  }
});
