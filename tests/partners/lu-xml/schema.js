'use strict';
// lu-xml.md "Message" and "Acknowledgement", as a strict reader: every element
// in the namespace urn:sd:tongban:1.0, in the documented order, required
// unless marked optional, no undocumented elements or attributes, codes from
// the documented tables. Returns a canonical-ish JSON view of the message (the
// field names of the canonical case, SPEC §3, so a test can compare what
// arrived with what it submitted) or throws SchemaError("path: problem").
//
// Strict readings of points the document leaves open are listed in
// ../README.md ("Ambiguities").

const { elementChildren, leafText } = require('../lib/safe-xml');
const bj = require('../lib/beijing-time');
const form = require('../lib/form');
const gm = require('../lib/gm');
const { decodeBase64, UUID_LOWER_RE, SM3_HEX_RE, REGION_RE } = require('../lib/encoding');
const { idProblem, NATIONAL_ID_TYPES } = require('../lib/id-numbers');

const NS = 'urn:sd:tongban:1.0';
const DS = 'http://www.w3.org/2000/09/xmldsig#';

const MESSAGE_TYPES = { CASE_SUBMIT: 'Case', CASE_WITHDRAW: 'Withdraw', CASE_SUPPLEMENT: 'Supplement', STATUS_NOTIFY: 'Status' };
// lu-xml.md: "pdf jpg png ofd doc docx xls xlsx zip txt"
const GESHI = {
  pdf: 'application/pdf', jpg: 'image/jpeg', png: 'image/png', ofd: 'application/ofd', doc: 'application/msword',
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document', xls: 'application/vnd.ms-excel',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet', zip: 'application/zip', txt: 'text/plain',
};
const ZHUANGTAI = {
  '01': 'accepted', '02': 'rejected', '03': 'supplement_required', '04': 'in_progress',
  '05': 'approved', '06': 'denied', '07': 'withdrawn', '08': 'result_shipped',
};
const FANGSHI = { 1: 'mail', 2: 'pickup', 3: 'electronic' };
const ACK_CODES = ['0000', '0001', '1001', '1002', '1003', '1004', '1005', '5001', '5002'];

class SchemaError extends Error {}
const fail = (path, msg) => { throw new SchemaError(`${path}: ${msg}`); };

function checkAttrs(el, allowed, path) {
  for (let i = 0; i < el.attributes.length; i++) {
    const a = el.attributes[i];
    if (a.name === 'xmlns' || a.name.startsWith('xmlns:')) continue;
    if (!allowed.includes(a.name)) fail(path, `attribute ${a.name} is not in the message format`);
  }
}

// Matches the element children of `el` against `spec`, an ordered list of
// [name, min, max]. Returns { name: [elements] }.
function sequence(el, path, spec) {
  const { elements, strayText } = elementChildren(el);
  if (strayText !== null) fail(path, `unexpected text ${JSON.stringify(strayText.trim().slice(0, 40))}`);
  const out = {};
  let i = 0;
  for (const [name, min, max] of spec) {
    out[name] = [];
    while (i < elements.length && elements[i].namespaceURI === NS && elements[i].localName === name && out[name].length < max) {
      out[name].push(elements[i]);
      i++;
    }
    if (out[name].length < min) {
      const got = elements[i] ? `found ${describe(elements[i])}` : 'found nothing';
      fail(`${path}/${name}`, `required element missing (${got})`);
    }
  }
  if (i < elements.length) fail(path, `unexpected element ${describe(elements[i])} (wrong name, namespace, order or count)`);
  return out;
}

const describe = (e) => (e.namespaceURI === NS ? e.localName : `{${e.namespaceURI || 'no namespace'}}${e.localName}`);

// Text of a leaf (no element children, no attributes).
function text(el, path, { allowEmpty = false, attrs = [] } = {}) {
  checkAttrs(el, attrs, path);
  const t = leafText(el);
  if (t === null) fail(path, 'must contain text only');
  if (!allowEmpty && !/\S/.test(t)) fail(path, 'must not be empty');
  return t;
}
const one = (els, path, opts) => text(els[0], path, opts);
const opt = (els, path, opts) => (els.length ? text(els[0], path, opts) : undefined);
function match(re, t, path, what) { if (!re.test(t)) fail(path, `${JSON.stringify(t)} is not ${what}`); return t; }
function time(t, path) {
  const ms = bj.parse(t);
  if (ms === null) fail(path, `${JSON.stringify(t)} is not Beijing time yyyy-MM-dd HH:mm:ss`);
  return ms;
}

// ShenBanHao: the document gives an example only; the canonical case_id rule
// (SPEC §3: 1–64 of [0-9A-Za-z_-]) is applied.
const CASE_ID_RE = /^[0-9A-Za-z_-]{1,64}$/;

function header(el, path) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [['MessageId', 1, 1], ['MessageType', 1, 1], ['SenderRegion', 1, 1], ['ReceiverRegion', 1, 1], ['SendTime', 1, 1]]);
  const h = {
    message_id: match(UUID_LOWER_RE, one(c.MessageId, `${path}/MessageId`), `${path}/MessageId`, 'a lowercase UUID'),
    message_type: one(c.MessageType, `${path}/MessageType`),
    sender_region: match(REGION_RE, one(c.SenderRegion, `${path}/SenderRegion`), `${path}/SenderRegion`, 'a 6-digit region code'),
    receiver_region: match(REGION_RE, one(c.ReceiverRegion, `${path}/ReceiverRegion`), `${path}/ReceiverRegion`, 'a 6-digit region code'),
    send_time: one(c.SendTime, `${path}/SendTime`),
  };
  if (!MESSAGE_TYPES[h.message_type]) fail(`${path}/MessageType`, `${JSON.stringify(h.message_type)} is not one of ${Object.keys(MESSAGE_TYPES).join(', ')}`);
  h.send_time_ms = time(h.send_time, `${path}/SendTime`);
  return h;
}

function party(el, path) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [['LeiXing', 1, 1], ['XingMing', 1, 1], ['ZhengJianLeiXing', 1, 1], ['ZhengJianHaoMa', 1, 1], ['LianXiDianHua', 1, 1], ['DiZhi', 0, 1]]);
  const kind = one(c.LeiXing, `${path}/LeiXing`);
  if (kind !== '1' && kind !== '2') fail(`${path}/LeiXing`, `${JSON.stringify(kind)} is not 1 (person) or 2 (org)`);
  const idType = one(c.ZhengJianLeiXing, `${path}/ZhengJianLeiXing`);
  if (!NATIONAL_ID_TYPES[idType]) fail(`${path}/ZhengJianLeiXing`, `${JSON.stringify(idType)} is not in the national table (${Object.keys(NATIONAL_ID_TYPES).join(', ')})`);
  if (kind === '1' && idType === '001') fail(`${path}/ZhengJianLeiXing`, 'a person (LeiXing 1) cannot hold a unified social credit code (001)');
  if (kind === '2' && idType !== '001') fail(`${path}/ZhengJianLeiXing`, 'an organisation (LeiXing 2) is identified by its unified social credit code (001)');
  const idNumber = one(c.ZhengJianHaoMa, `${path}/ZhengJianHaoMa`);
  const p = idProblem(idType, idNumber);
  if (p) fail(`${path}/ZhengJianHaoMa`, p);
  const out = {
    kind: kind === '1' ? 'person' : 'org',
    name: one(c.XingMing, `${path}/XingMing`),
    id_type: idType,
    id_number: idNumber,
    phone: one(c.LianXiDianHua, `${path}/LianXiDianHua`),
  };
  const addr = opt(c.DiZhi, `${path}/DiZhi`);
  if (addr !== undefined) out.address = addr;
  return out;
}

function materials(el, path, { atLeastOne = false } = {}) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [['CaiLiao', atLeastOne ? 1 : 0, Infinity]]);
  return c.CaiLiao.map((m, i) => {
    const p = `${path}/CaiLiao[${i + 1}]`;
    checkAttrs(m, [], p);
    const k = sequence(m, p, [['MingCheng', 1, 1], ['GeShi', 1, 1], ['DaXiao', 1, 1], ['ZhaiYao', 1, 1], ['NeiRong', 1, 1]]);
    const geshi = one(k.GeShi, `${p}/GeShi`);
    if (!GESHI[geshi]) fail(`${p}/GeShi`, `${JSON.stringify(geshi)} is not one of ${Object.keys(GESHI).join(' ')}`);
    const sizeText = one(k.DaXiao, `${p}/DaXiao`);
    match(/^(0|[1-9]\d{0,11})$/, sizeText, `${p}/DaXiao`, 'a byte count');
    const za = k.ZhaiYao[0];
    const digest = text(za, `${p}/ZhaiYao`, { attrs: ['SuanFa'] });
    if (za.getAttribute('SuanFa') !== 'SM3') fail(`${p}/ZhaiYao/@SuanFa`, `must be "SM3", got ${JSON.stringify(za.getAttribute('SuanFa'))}`);
    match(SM3_HEX_RE, digest, `${p}/ZhaiYao`, '64 lowercase hex characters');
    const b64 = text(k.NeiRong[0], `${p}/NeiRong`, { allowEmpty: true });
    const content = decodeBase64(b64);
    if (!content) fail(`${p}/NeiRong`, 'is not canonical base64 (RFC 4648, padded, no whitespace)');
    if (content.length !== Number(sizeText)) fail(`${p}/DaXiao`, `says ${sizeText} bytes, NeiRong has ${content.length}`);
    const actual = gm.sm3hex(content);
    if (actual !== digest) fail(`${p}/ZhaiYao`, `SM3 of NeiRong is ${actual}, not ${digest}`);
    return { name: one(k.MingCheng, `${p}/MingCheng`), format: geshi, media_type: GESHI[geshi], size: content.length, sm3: digest, content_base64: b64 };
  });
}

function biaoDan(el, path) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [['Xiang', 0, Infinity]]);
  const items = c.Xiang.map((x, i) => {
    const p = `${path}/Xiang[${i + 1}]`;
    if (!x.hasAttribute('Ming') || !x.hasAttribute('LeiXing')) fail(p, 'needs attributes Ming and LeiXing');
    return { name: x.getAttribute('Ming'), type: x.getAttribute('LeiXing'), text: text(x, p, { allowEmpty: true, attrs: ['Ming', 'LeiXing'] }) };
  });
  try { return form.unflatten(items); } catch (e) { return fail(path, e.message); }
}

function songDa(el, path) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [['FangShi', 1, 1], ['ShouJianRen', 0, 1], ['DianHua', 0, 1], ['DiZhi', 0, 1]]);
  const f = one(c.FangShi, `${path}/FangShi`);
  if (!FANGSHI[f]) fail(`${path}/FangShi`, `${JSON.stringify(f)} is not 1 (mail), 2 (pickup) or 3 (electronic)`);
  const out = { method: FANGSHI[f] };
  const r = opt(c.ShouJianRen, `${path}/ShouJianRen`); if (r !== undefined) out.recipient = r;
  const t = opt(c.DianHua, `${path}/DianHua`); if (t !== undefined) out.phone = t;
  const a = opt(c.DiZhi, `${path}/DiZhi`); if (a !== undefined) out.address = a;
  return out;
}

function caseBody(el, path) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [
    ['ShenBanHao', 1, 1], ['ShiXiangBianMa', 1, 1], ['ShiXiangMingCheng', 1, 1], ['ShouLiDi', 1, 1], ['BanLiDi', 1, 1],
    ['ShouLiShiJian', 1, 1], ['ShenQingRen', 1, 1], ['DaiBanRen', 0, 1], ['CaiLiaoList', 1, 1], ['BiaoDan', 1, 1],
    ['SongDa', 1, 1], ['BeiZhu', 0, 1]]);
  const accepted = one(c.ShouLiShiJian, `${path}/ShouLiShiJian`);
  const out = {
    case_id: match(CASE_ID_RE, one(c.ShenBanHao, `${path}/ShenBanHao`), `${path}/ShenBanHao`, 'a case number (1-64 of [0-9A-Za-z_-])'),
    item: { code: one(c.ShiXiangBianMa, `${path}/ShiXiangBianMa`), name: one(c.ShiXiangMingCheng, `${path}/ShiXiangMingCheng`) },
    origin_region: match(REGION_RE, one(c.ShouLiDi, `${path}/ShouLiDi`), `${path}/ShouLiDi`, 'a 6-digit region code'),
    target_region: match(REGION_RE, one(c.BanLiDi, `${path}/BanLiDi`), `${path}/BanLiDi`, 'a 6-digit region code'),
    accepted_at: bj.toRfc3339(time(accepted, `${path}/ShouLiShiJian`)),
    applicant: party(c.ShenQingRen[0], `${path}/ShenQingRen`),
    agent: c.DaiBanRen.length ? party(c.DaiBanRen[0], `${path}/DaiBanRen`) : null,
    materials: materials(c.CaiLiaoList[0], `${path}/CaiLiaoList`),
    form: biaoDan(c.BiaoDan[0], `${path}/BiaoDan`),
    delivery: songDa(c.SongDa[0], `${path}/SongDa`),
  };
  const remarks = opt(c.BeiZhu, `${path}/BeiZhu`, { allowEmpty: true });
  if (remarks !== undefined) out.remarks = remarks;
  return out;
}

function withdrawBody(el, path) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [['ShenBanHao', 1, 1], ['HuiZhiHao', 1, 1], ['YuanYin', 1, 1]]);
  return {
    case_id: match(CASE_ID_RE, one(c.ShenBanHao, `${path}/ShenBanHao`), `${path}/ShenBanHao`, 'a case number'),
    receipt_no: one(c.HuiZhiHao, `${path}/HuiZhiHao`),
    reason: one(c.YuanYin, `${path}/YuanYin`),
  };
}

function supplementBody(el, path) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [['ShenBanHao', 1, 1], ['HuiZhiHao', 1, 1], ['CaiLiaoList', 1, 1]]);
  return {
    case_id: match(CASE_ID_RE, one(c.ShenBanHao, `${path}/ShenBanHao`), `${path}/ShenBanHao`, 'a case number'),
    receipt_no: one(c.HuiZhiHao, `${path}/HuiZhiHao`),
    materials: materials(c.CaiLiaoList[0], `${path}/CaiLiaoList`, { atLeastOne: true }),
  };
}

function statusBody(el, path) {
  checkAttrs(el, [], path);
  const c = sequence(el, path, [['ShenBanHao', 1, 1], ['HuiZhiHao', 1, 1], ['ZhuangTai', 1, 1], ['ShuoMing', 0, 1],
    ['BuZhengCaiLiao', 0, Infinity], ['KuaiDiDanHao', 0, 1], ['ZhengZhaoBianHao', 0, 1], ['ShiJian', 1, 1]]);
  const zt = one(c.ZhuangTai, `${path}/ZhuangTai`);
  if (!ZHUANGTAI[zt]) fail(`${path}/ZhuangTai`, `${JSON.stringify(zt)} is not 01..08`);
  if (zt === '03' && c.BuZhengCaiLiao.length === 0) fail(`${path}/BuZhengCaiLiao`, 'ZhuangTai 03 (补正) needs at least one BuZhengCaiLiao');
  if (zt !== '03' && c.BuZhengCaiLiao.length) fail(`${path}/BuZhengCaiLiao`, 'only for ZhuangTai 03');
  if (zt !== '08' && (c.KuaiDiDanHao.length || c.ZhengZhaoBianHao.length)) fail(path, 'KuaiDiDanHao / ZhengZhaoBianHao only for ZhuangTai 08');
  const out = {
    case_id: match(CASE_ID_RE, one(c.ShenBanHao, `${path}/ShenBanHao`), `${path}/ShenBanHao`, 'a case number'),
    receipt_no: one(c.HuiZhiHao, `${path}/HuiZhiHao`),
    code: zt,
    status: ZHUANGTAI[zt],
    time: bj.toRfc3339(time(one(c.ShiJian, `${path}/ShiJian`), `${path}/ShiJian`)),
  };
  const o = opt(c.ShuoMing, `${path}/ShuoMing`); if (o !== undefined) out.opinion = o;
  if (zt === '03') {
    out.supplement = c.BuZhengCaiLiao.map((b, i) => {
      const p = `${path}/BuZhengCaiLiao[${i + 1}]`;
      checkAttrs(b, [], p);
      return one(sequence(b, p, [['MingCheng', 1, 1]]).MingCheng, `${p}/MingCheng`);
    });
  }
  const k = opt(c.KuaiDiDanHao, `${path}/KuaiDiDanHao`); if (k !== undefined) out.tracking_no = k;
  const z = opt(c.ZhengZhaoBianHao, `${path}/ZhengZhaoBianHao`); if (z !== undefined) out.licence_no = z;
  return out;
}

const BODIES = { Case: caseBody, Withdraw: withdrawBody, Supplement: supplementBody, Status: statusBody };

// Root element checks shared by messages and acks; the Signature is checked by
// xmldsig.js, here it only has to be present as the last child.
function rootChildren(root, name, spec) {
  const path = `/${name}`;
  if (root.namespaceURI !== NS || root.localName !== name) fail('/', `root element must be {${NS}}${name}, got ${describe(root)}`);
  const { elements, strayText } = elementChildren(root);
  if (strayText !== null) fail(path, 'unexpected text');
  const last = elements[elements.length - 1];
  if (!last || last.namespaceURI !== DS || last.localName !== 'Signature') fail(`${path}/ds:Signature`, 'required as the last child');
  const tmp = root.ownerDocument.createElementNS(NS, 'tmp');
  for (const e of elements.slice(0, -1)) tmp.appendChild(e.cloneNode(true));
  return sequence(tmp, path, spec);
}

// Header only (what the receiver checks before the body, for the 1005 answer).
function readHeader(doc) {
  const root = doc.documentElement;
  checkAttrs(root, ['version'], '/TongbanMessage');
  const c = rootChildren(root, 'TongbanMessage', [['Header', 1, 1], ['Body', 1, 1]]);
  if (root.getAttribute('version') !== '1.0') fail('/TongbanMessage/@version', `must be "1.0", got ${JSON.stringify(root.getAttribute('version'))}`);
  return { header: header(c.Header[0], '/TongbanMessage/Header'), bodyEl: c.Body[0] };
}

function readBody(bodyEl, messageType) {
  const path = '/TongbanMessage/Body';
  checkAttrs(bodyEl, [], path);
  const want = MESSAGE_TYPES[messageType];
  const c = sequence(bodyEl, path, [[want, 1, 1]]);
  return BODIES[want](c[want][0], `${path}/${want}`);
}

// Best effort, for echoing in an ack to a message that fails checks.
function peekMessageId(doc) {
  try {
    const ids = doc.getElementsByTagNameNS(NS, 'MessageId');
    const t = ids.length ? leafText(ids[0]) : null;
    return t && UUID_LOWER_RE.test(t) ? t : (t || '');
  } catch { return ''; }
}

function readAck(doc) {
  const root = doc.documentElement;
  checkAttrs(root, [], '/TongbanAck');
  const c = rootChildren(root, 'TongbanAck', [['MessageId', 1, 1], ['Code', 1, 1], ['Message', 1, 1], ['ReceiptNo', 0, 1], ['ReceiveTime', 1, 1]]);
  const p = '/TongbanAck';
  const code = one(c.Code, `${p}/Code`);
  if (!ACK_CODES.includes(code)) fail(`${p}/Code`, `${JSON.stringify(code)} is not a documented code`);
  const out = {
    message_id: one(c.MessageId, `${p}/MessageId`, { allowEmpty: true }),
    code,
    message: one(c.Message, `${p}/Message`, { allowEmpty: true }),
    receive_time: one(c.ReceiveTime, `${p}/ReceiveTime`),
  };
  time(out.receive_time, `${p}/ReceiveTime`);
  const r = opt(c.ReceiptNo, `${p}/ReceiptNo`); if (r !== undefined) out.receipt_no = r;
  return out;
}

module.exports = { readHeader, readBody, readAck, peekMessageId, SchemaError, NS, MESSAGE_TYPES, GESHI, ZHUANGTAI, FANGSHI };
