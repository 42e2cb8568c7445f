'use strict';
// Self-tests of the yue-json mock, independent of the gateway and of the
// mock's GM/T code: this file's client signs with `openssl pkeyutl -sign
// -rawin -digest sm3 -pkeyopt distid:1234567812345678`, encrypts the SM4 key
// with `openssl pkeyutl -encrypt` (OpenSSL writes GM/T 0009 DER for SM2 keys)
// and SM4-CBC with Node's OpenSSL-backed crypto, hashes with OpenSSL's SM3;
// the mock (sm-crypto, pure JS, own DER codec) must accept all of it, and its
// signed responses must verify with `openssl pkeyutl -verify`.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const https = require('https');
const crypto = require('crypto');
const h = require('../harness/helpers');

const PKI = h.makePki();
const GW = path.join(PKI, 'gateway');
const WJ = path.join(PKI, 'partners', 'wujiang');
const WORK = h.tmpdir('tb-yue-test-');
const read = (f) => fs.readFileSync(f);
const TLS = { ca: read(`${WJ}/ca.pem`), cert: read(`${GW}/tls-client.pem`), key: read(`${GW}/tls-client.key`) };
const APP_ID = 'YY-YUNXI-001';
const DISTID = 'distid:1234567812345678';

// ---- independent GM/T client (OpenSSL) -------------------------------------------

let nfile = 0;
const tmp = (data) => { const f = path.join(WORK, `f${++nfile}`); fs.writeFileSync(f, data); return f; };
const sm3hex = (b) => crypto.createHash('sm3').update(b).digest('hex');

function opensslSign(keyFile, data) {
  const out = path.join(WORK, `sig${++nfile}`);
  const r = h.run('openssl', ['pkeyutl', '-sign', '-rawin', '-digest', 'sm3', '-inkey', keyFile, '-pkeyopt', DISTID, '-in', tmp(data), '-out', out]);
  assert.equal(r.status, 0, r.stderr);
  return read(out);
}
function opensslVerify(pubFile, data, sig) {
  return h.run('openssl', ['pkeyutl', '-verify', '-rawin', '-digest', 'sm3', '-pubin', '-inkey', pubFile, '-pkeyopt', DISTID, '-in', tmp(data), '-sigfile', tmp(sig)]).status === 0;
}
function opensslEncrypt(pubFile, data) {
  const out = path.join(WORK, `enc${++nfile}`);
  const r = h.run('openssl', ['pkeyutl', '-encrypt', '-pubin', '-inkey', pubFile, '-in', tmp(data), '-out', out]);
  assert.equal(r.status, 0, r.stderr);
  return read(out);
}
function opensslDecrypt(keyFile, der) {
  const r = h.run('openssl', ['pkeyutl', '-decrypt', '-inkey', keyFile, '-in', tmp(der)], { encoding: 'buffer' });
  return r.status === 0 ? r.stdout : null;
}

function headers(body, { appId = APP_ID, ts = Date.now(), nonce = crypto.randomBytes(16).toString('hex'), keyFile = `${GW}/sign-sm2.key`, signAs } = {}) {
  const str = `${signAs || appId}\n${ts}\n${nonce}\n${sm3hex(body)}`;
  return {
    'content-type': 'application/json;charset=UTF-8',
    'X-GD-AppId': appId, 'X-GD-Timestamp': String(ts), 'X-GD-Nonce': nonce,
    'X-GD-Signature': opensslSign(keyFile, Buffer.from(str, 'utf8')).toString('base64'),
  };
}
function seal(msgId, msgType, biz, { pub = `${WJ}/sign-sm2.pub.pem`, iv = crypto.randomBytes(16) } = {}) {
  const key = crypto.randomBytes(16);
  const c = crypto.createCipheriv('sm4-cbc', key, iv);
  const text = typeof biz === 'string' ? biz : JSON.stringify(biz);
  return {
    msgId, msgType, encryptKey: opensslEncrypt(pub, key).toString('base64'), iv: iv.toString('base64'),
    bizContent: Buffer.concat([c.update(text, 'utf8'), c.final()]).toString('base64'),
  };
}

// Sample 02 (SPEC §3 canonical) → yue-json CASE_SUBMIT, as yue-json.md maps it.
function sample02Biz(over = {}) {
  const c = h.loadSample('02');
  return {
    applyNo: c.case_id, matterCode: c.item.code, matterName: c.item.name, acceptAreaCode: c.origin_region, handleAreaCode: c.target_region,
    acceptTime: Date.parse(c.accepted_at),
    applicant: { type: 'P', name: c.applicant.name, certType: 'SFZ', certNo: c.applicant.id_number, mobile: c.applicant.phone, address: c.applicant.address },
    agent: null,
    attachments: c.materials.map((m) => ({ fileName: `${m.name}.pdf`, fileType: 'pdf', fileSize: m.size, sm3: m.sm3, fileData: m.content_base64 })),
    formData: c.form,
    delivery: { mode: 2, receiver: null, mobile: null, address: null },
    remark: c.remarks,
    ...over,
  };
}

// ---- fixtures --------------------------------------------------------------------

let mock;
test.before(async () => { mock = await h.startMock('yue-json-partner.js', ['--pki', PKI, '--partner', 'wujiang', '--quiet']); });
test.after(async () => { if (mock) await mock.stop(); });

const SUBMIT = '/gateway/tongban/case/submit';
async function post(p, body, hdrs, tls = TLS) {
  const buf = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body), 'utf8');
  const r = await h.request(mock.port, { path: p, headers: hdrs || headers(buf), body: buf, tls });
  if (r.error) return r;
  let json;
  try { json = JSON.parse(r.body.toString('utf8')); } catch { json = null; }
  return { ...r, json };
}
function responseVerifies(r) {
  const hd = r.headers;
  const str = `${hd['x-gd-appid']}\n${hd['x-gd-timestamp']}\n${hd['x-gd-nonce']}\n${sm3hex(r.body)}`;
  return hd['x-gd-appid'] === 'GD-WJ-TB' && /^[0-9a-f]{32}$/.test(hd['x-gd-nonce']) && Math.abs(Date.now() - Number(hd['x-gd-timestamp'])) < 60000 &&
    opensslVerify(`${WJ}/sign-sm2.pub.pem`, Buffer.from(str, 'utf8'), Buffer.from(hd['x-gd-signature'], 'base64'));
}
async function expectCode(p, body, hdrs, code, note) {
  const r = await post(p, body, hdrs);
  assert.equal(r.status, 200, `${note}: HTTP ${r.status} ${r.body}`);
  assert.equal(r.json.code, code, `${note}: ${r.json.msg}`);
  assert.ok(responseVerifies(r), `${note}: response signature does not verify with openssl`);
  return r.json;
}
const env02 = (over, msgId = crypto.randomUUID()) => seal(msgId, 'CASE_SUBMIT', sample02Biz(over));

// ---- tests ---------------------------------------------------------------------

test('CASE_SUBMIT for sample 02 → 0000 + receiptNo, response signed (openssl verifies); same msgId again → 0001 same receiptNo', async () => {
  const msgId = crypto.randomUUID();
  const r = await post(SUBMIT, seal(msgId, 'CASE_SUBMIT', sample02Biz()));
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^application\/json; ?charset=utf-8$/i);
  assert.equal(r.json.code, '0000', r.json.msg);
  assert.equal(r.json.msg, '成功');
  assert.equal(r.json.data.msgId, msgId);
  assert.match(r.json.data.receiptNo, /^WJ-TB-\d{8}-\d{5}$/);
  assert.ok(responseVerifies(r));

  // Retry: fresh headers, fresh SM4 key and iv, same msgId.
  const again = await expectCode(SUBMIT, seal(msgId, 'CASE_SUBMIT', sample02Biz()), undefined, '0001', 'duplicate');
  assert.equal(again.data.receiptNo, r.json.data.receiptNo);

  const rec = (await h.control(mock.controlPort, 'GET', '/received')).body.find((x) => x.accepted && x.message.msg_id === msgId);
  const s = h.loadSample('02');
  assert.deepEqual(rec.message.biz, sample02Biz());
  assert.deepEqual(rec.message.view.form, s.form);
  assert.equal(rec.message.view.accepted_at, '2024-05-06T10:00:00+08:00');
  assert.equal(rec.message.view.applicant.id_type, '111');
  assert.equal(rec.message.view.materials[0].name, '退役证');
  assert.deepEqual(rec.message.view.delivery, { method: 'pickup' });
});

test('replayed nonce → 4012; old or future timestamp → 4011', async () => {
  const body = Buffer.from(JSON.stringify(env02()));
  const hd = headers(body);
  assert.equal((await post(SUBMIT, body.toString(), hd)).json.code, '0000');
  await expectCode(SUBMIT, body.toString(), hd, '4012', 'exact replay');
  const other = Buffer.from(JSON.stringify(env02()));
  await expectCode(SUBMIT, other.toString(), headers(other, { nonce: hd['X-GD-Nonce'] }), '4012', 'new body, old nonce');
  const old = Buffer.from(JSON.stringify(env02()));
  await expectCode(SUBMIT, old.toString(), headers(old, { ts: Date.now() - 301000 }), '4011', 'old timestamp');
  await expectCode(SUBMIT, old.toString(), headers(old, { ts: Date.now() + 301000 }), '4011', 'future timestamp');
  await expectCode(SUBMIT, old.toString(), headers(old, { ts: Date.now() - 290000 }), '0000', 'inside the window');
});

test('bad signature, wrong AppId, missing headers → 4010', async () => {
  const body = Buffer.from(JSON.stringify(env02()));
  await expectCode(SUBMIT, body.toString(), headers(body, { keyFile: `${WJ}/sign-sm2.key` }), '4010', 'signed with another key');
  await expectCode(SUBMIT, body.toString(), headers(Buffer.from(body.toString() + ' ')), '4010', 'signature over other bytes');
  await expectCode(SUBMIT, body.toString(), headers(body, { appId: 'YY-OTHER-001' }), '4010', 'unknown AppId');
  await expectCode(SUBMIT, body.toString(), headers(body, { signAs: 'YY-OTHER-001' }), '4010', 'AppId not the one signed');
  const hd = headers(body);
  delete hd['X-GD-Signature'];
  await expectCode(SUBMIT, body.toString(), hd, '4010', 'no signature');
  await expectCode(SUBMIT, body.toString(), { ...headers(body), 'X-GD-Signature': 'not base64!' }, '4010', 'garbage signature');
});

test('envelope that cannot be decrypted → 4020', async () => {
  const good = env02();
  await expectCode(SUBMIT, { ...good, encryptKey: crypto.randomBytes(120).toString('base64') }, undefined, '4020', 'random encryptKey');
  await expectCode(SUBMIT, seal(crypto.randomUUID(), 'CASE_SUBMIT', sample02Biz(), { pub: `${GW}/sign-sm2.pub.pem` }), undefined, '4020', 'key encrypted to someone else');
  await expectCode(SUBMIT, { ...good, bizContent: crypto.randomBytes(48).toString('base64') }, undefined, '4020', 'bizContent under another key');
  await expectCode(SUBMIT, { ...good, iv: crypto.randomBytes(8).toString('base64') }, undefined, '4020', 'iv of 8 bytes');
  await expectCode(SUBMIT, { ...good, bizContent: 'AAAA' }, undefined, '4020', 'bizContent not a block multiple');
  await expectCode(SUBMIT, seal(crypto.randomUUID(), 'CASE_SUBMIT', 'not json'), undefined, '4020', 'plaintext is not JSON');
});

test('business JSON off the document → 4001', async () => {
  const s = sample02Biz();
  const bad = {
    'certType unknown': { applicant: { ...s.applicant, certType: 'XX' } },
    'type unknown': { applicant: { ...s.applicant, type: 'X' } },
    'person with TYSHXYDM': { applicant: { ...s.applicant, certType: 'TYSHXYDM' } },
    'resident ID check digit': { applicant: { ...s.applicant, certNo: '430623197506203113' } },
    'fileName is not name.fileType': { attachments: [{ ...s.attachments[0], fileName: '退役证.doc' }] },
    'sm3 does not match fileData': { attachments: [{ ...s.attachments[0], sm3: '0'.repeat(64) }] },
    'fileSize wrong': { attachments: [{ ...s.attachments[0], fileSize: 40 }] },
    'delivery.mode 4': { delivery: { ...s.delivery, mode: 4 } },
    'delivery.mode as string': { delivery: { ...s.delivery, mode: '2' } },
    'acceptTime in seconds': { acceptTime: 1714960800 },
    'acceptTime as a string': { acceptTime: '1714960800000' },
    'handleAreaCode not ours': { handleAreaCode: '440204' },
    'unknown key': { extra: 1 },
    'formData not an object': { formData: [1] },
  };
  for (const [what, over] of Object.entries(bad)) await expectCode(SUBMIT, env02(over), undefined, '4001', what);
  const missing = sample02Biz();
  delete missing.remark;
  await expectCode(SUBMIT, seal(crypto.randomUUID(), 'CASE_SUBMIT', missing), undefined, '4001', 'missing key');
  await expectCode('/gateway/tongban/case/withdraw', env02(), undefined, '4001', 'msgType on the wrong endpoint');
  await expectCode(SUBMIT, { ...env02(), msgId: 'not-a-uuid' }, undefined, '4001', 'msgId not a UUID');
  await expectCode(SUBMIT, '{"msgId":', undefined, '4001', 'body not JSON');
  // A msgId reused for different content.
  const id = crypto.randomUUID();
  await expectCode(SUBMIT, env02({}, id), undefined, '0000', 'first');
  await expectCode(SUBMIT, env02({ remark: 'changed' }, id), undefined, '4001', 'same msgId, other content');
  // The other message types.
  await expectCode('/gateway/tongban/case/withdraw', seal(crypto.randomUUID(), 'CASE_WITHDRAW', { applyNo: 'a', receiptNo: 'b', reason: 'c' }), undefined, '0000', 'withdraw');
  await expectCode('/gateway/tongban/status/notify', seal(crypto.randomUUID(), 'STATUS_NOTIFY', {
    applyNo: '440203-1', receiptNo: 'R1', status: 'SUPPLEMENT', opinion: '请补充', supplementList: [{ materialName: '结婚证' }], expressNo: null, licenseNo: null, time: Date.now(),
  }), undefined, '0000', 'status');
  await expectCode('/gateway/tongban/status/notify', seal(crypto.randomUUID(), 'STATUS_NOTIFY', {
    applyNo: '440203-1', receiptNo: 'R1', status: 'DONE', opinion: null, supplementList: [], expressNo: null, licenseNo: null, time: Date.now(),
  }), undefined, '4001', 'status not in the table');
});

test('transport rules: 404, 405, 415; optional client certificate must chain to the CA when presented', async () => {
  const body = Buffer.from(JSON.stringify(env02()));
  assert.equal((await h.request(mock.port, { path: '/gateway/tongban/case/other', headers: headers(body), body, tls: TLS })).status, 404);
  assert.equal((await h.request(mock.port, { method: 'GET', path: SUBMIT, tls: TLS })).status, 405);
  assert.equal((await h.request(mock.port, { path: SUBMIT, headers: { ...headers(body), 'content-type': 'application/xml' }, body, tls: TLS })).status, 415);
  const noCert = await h.request(mock.port, { path: SUBMIT, headers: headers(body), body, tls: { ca: TLS.ca } });
  assert.equal(noCert.status, 200);
  const foreign = await h.request(mock.port, { path: SUBMIT, headers: headers(body), body, tls: { ca: TLS.ca, cert: read(`${WJ}/tls-client.pem`), key: read(`${WJ}/tls-client.key`) } });
  assert.equal(foreign.status, 403);
});

test('scripted faults: code 5030, 429 + Retry-After, bad-signature and unsigned responses', async () => {
  const script = (f) => h.control(mock.controlPort, 'POST', '/script', f);
  await script({ faults: [{ kind: 'code', code: '5030' }, { kind: 'http', status: 429, retry_after: '3' }, { kind: 'bad-signature' }, { kind: 'unsigned' }] });
  assert.equal((await post(SUBMIT, env02())).json.code, '5030');
  const r = await post(SUBMIT, env02());
  assert.equal(r.status, 429);
  assert.equal(r.headers['retry-after'], '3');
  const b = await post(SUBMIT, env02());
  assert.equal(b.json.code, '0000');
  assert.equal(responseVerifies(b), false);
  const u = await post(SUBMIT, env02());
  assert.equal(u.json.code, '0000');
  assert.equal(u.headers['x-gd-signature'], undefined);
});

// A fake gateway callback endpoint: openssl opens and verifies what the mock sends.
function fakeGateway(onMessage) {
  const server = https.createServer({ cert: read(`${GW}/tls-server.pem`), key: read(`${GW}/tls-server.key`), ca: read(`${WJ}/ca.pem`), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const { body, hdrs } = onMessage(req, Buffer.concat(chunks));
      res.writeHead(200, { 'content-type': 'application/json;charset=UTF-8', ...hdrs });
      res.end(body);
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

test('send-status / send-case: envelope opened and signature verified with openssl; the gateway\'s signed answer is checked', async () => {
  const seen = [];
  let signAnswer = true;
  const gw = await fakeGateway((req, body) => {
    const hd = req.headers;
    const str = `${hd['x-gd-appid']}\n${hd['x-gd-timestamp']}\n${hd['x-gd-nonce']}\n${sm3hex(body)}`;
    const verified = opensslVerify(`${WJ}/sign-sm2.pub.pem`, Buffer.from(str), Buffer.from(hd['x-gd-signature'] || '', 'base64'));
    const env = JSON.parse(body);
    const key = opensslDecrypt(`${GW}/sign-sm2.key`, Buffer.from(env.encryptKey, 'base64'));
    const d = crypto.createDecipheriv('sm4-cbc', key, Buffer.from(env.iv, 'base64'));
    const biz = JSON.parse(Buffer.concat([d.update(Buffer.from(env.bizContent, 'base64')), d.final()]).toString('utf8'));
    seen.push({ path: req.url, appId: hd['x-gd-appid'], verified, env, biz });
    const answer = Buffer.from(JSON.stringify({ code: '0000', msg: '成功', data: { msgId: env.msgId } }));
    return { body: answer, hdrs: signAnswer ? headers(answer) : {} };
  });
  const m2 = await h.startMock('yue-json-partner.js', ['--pki', PKI, '--partner', 'wujiang', '--quiet', '--gateway-url', `https://127.0.0.1:${gw.address().port}`]);
  try {
    const r = (await h.control(m2.controlPort, 'POST', '/send-status', {
      case_id: '430603-20240507-000045', receipt_no: 'WJ-TB-20240506-00017', status: '03', opinion: '请补充结婚证复印件', supplement: ['结婚证复印件'],
    })).body;
    assert.equal(r.response.http_status, 200, JSON.stringify(r));
    assert.equal(r.signature.ok, true, JSON.stringify(r.signature));
    assert.equal(r.answer.code, '0000');
    const got = seen.at(-1);
    assert.equal(got.path, '/partners/wujiang/gateway/tongban/callback');
    assert.equal(got.appId, 'GD-WJ-TB');
    assert.equal(got.verified, true, 'openssl verifies the request signature');
    assert.equal(got.env.msgType, 'STATUS_NOTIFY');
    assert.deepEqual(got.biz.supplementList, [{ materialName: '结婚证复印件' }]);
    assert.equal(got.biz.status, 'SUPPLEMENT');
    assert.equal(got.biz.expressNo, null);

    const own = { ...h.loadSample('04'), case_id: '440203-20240601-000001', origin_region: '440203', target_region: '430603' };
    const c = (await h.control(m2.controlPort, 'POST', '/send-case', own)).body;
    assert.equal(c.signature.ok, true);
    assert.equal(seen.at(-1).biz.applicant.certType, 'SFZ');
    assert.equal(seen.at(-1).biz.attachments[0].fileName, '遗失声明.txt');
    assert.equal(seen.at(-1).biz.delivery.mode, 1);

    const rep = (await h.control(m2.controlPort, 'POST', '/replay', {})).body;
    assert.equal(rep.request.headers['X-GD-Nonce'], c.request.headers['X-GD-Nonce'], 'replay reuses the nonce');

    signAnswer = false;
    const u = (await h.control(m2.controlPort, 'POST', '/send-status', { case_id: 'a', receipt_no: 'b', status: '04' })).body;
    assert.equal(u.signature.ok, false);
  } finally {
    await m2.stop();
    gw.close();
  }
});
