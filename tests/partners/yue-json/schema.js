'use strict';
// yue-json.md "Body: digital envelope" and "Business JSON", as a strict
// reader. Every key shown in the document's examples is required (present),
// no other keys are allowed, and null is accepted only where the document
// shows or implies "nothing here" (see README.md "Ambiguities"). Returns a
// canonical-ish view (SPEC §3 field names) or throws ParamError("path: problem").

const gm = require('../lib/gm');
const bj = require('../lib/beijing-time');
const { decodeBase64, UUID_ANY_RE, SM3_HEX_RE, REGION_RE } = require('../lib/encoding');
const { idProblem } = require('../lib/id-numbers');

const MSG_TYPES = ['CASE_SUBMIT', 'CASE_WITHDRAW', 'CASE_SUPPLEMENT', 'STATUS_NOTIFY'];
// yue-json.md certType table → national table (SPEC §3).
const CERT_TYPES = { SFZ: '111', HZ: '414', GAT: '516', TW: '511', TYSHXYDM: '001' };
const STATUS = {
  ACCEPT: 'accepted', REJECT: 'rejected', SUPPLEMENT: 'supplement_required', PROCESSING: 'in_progress',
  FINISH_PASS: 'approved', FINISH_FAIL: 'denied', WITHDRAW: 'withdrawn', EXPRESS: 'result_shipped',
};
const MODES = { 1: 'mail', 2: 'pickup', 3: 'electronic' };

class ParamError extends Error {}
const fail = (path, msg) => { throw new ParamError(`${path}: ${msg}`); };
const kind = (v) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

// Exactly these keys.
function object(v, path, keys) {
  if (kind(v) !== 'object') fail(path, `must be an object, got ${kind(v)}`);
  for (const k of keys) if (!Object.prototype.hasOwnProperty.call(v, k)) fail(`${path}.${k}`, 'required key missing');
  for (const k of Object.keys(v)) if (!keys.includes(k)) fail(`${path}.${k}`, 'unknown key');
  return v;
}
function str(v, path, { nullable = false, allowEmpty = false } = {}) {
  if (v === null && nullable) return null;
  if (typeof v !== 'string') fail(path, `must be a string${nullable ? ' or null' : ''}, got ${kind(v)}`);
  if (!allowEmpty && !/\S/.test(v)) fail(path, 'must not be empty');
  return v;
}
function re(v, path, rx, what) { str(v, path); if (!rx.test(v)) fail(path, `${JSON.stringify(v)} is not ${what}`); return v; }
// Unix milliseconds: an integer between 2001-09-09 and 2286-11-20, which also
// catches seconds sent where milliseconds are required.
function millis(v, path) {
  if (!Number.isSafeInteger(v)) fail(path, `must be an integer (Unix milliseconds), got ${JSON.stringify(v)}`);
  if (v < 1e12 || v >= 1e13) fail(path, `${v} is not a plausible Unix time in milliseconds`);
  return v;
}

function envelope(v) {
  object(v, '$', ['msgId', 'msgType', 'encryptKey', 'iv', 'bizContent']);
  re(v.msgId, '$.msgId', UUID_ANY_RE, 'a UUID');
  if (!MSG_TYPES.includes(v.msgType)) fail('$.msgType', `${JSON.stringify(v.msgType)} is not one of ${MSG_TYPES.join(', ')}`);
  return v;
}

function party(v, path) {
  object(v, path, ['type', 'name', 'certType', 'certNo', 'mobile', 'address']);
  if (v.type !== 'P' && v.type !== 'E') fail(`${path}.type`, `${JSON.stringify(v.type)} is not P or E`);
  str(v.name, `${path}.name`);
  const national = CERT_TYPES[v.certType];
  if (!national) fail(`${path}.certType`, `${JSON.stringify(v.certType)} is not one of ${Object.keys(CERT_TYPES).join(', ')}`);
  if (v.type === 'P' && v.certType === 'TYSHXYDM') fail(`${path}.certType`, 'a person (P) cannot hold a unified social credit code');
  if (v.type === 'E' && v.certType !== 'TYSHXYDM') fail(`${path}.certType`, 'an enterprise/organisation (E) is identified by TYSHXYDM');
  str(v.certNo, `${path}.certNo`);
  const p = idProblem(national, v.certNo);
  if (p) fail(`${path}.certNo`, p);
  str(v.mobile, `${path}.mobile`);
  str(v.address, `${path}.address`, { nullable: true });
  const out = { kind: v.type === 'P' ? 'person' : 'org', name: v.name, id_type: national, cert_type: v.certType, id_number: v.certNo, phone: v.mobile };
  if (v.address !== null) out.address = v.address;
  return out;
}

function attachments(v, path, { atLeastOne = false } = {}) {
  if (!Array.isArray(v)) fail(path, `must be an array, got ${kind(v)}`);
  if (atLeastOne && v.length === 0) fail(path, 'must not be empty');
  return v.map((a, i) => {
    const p = `${path}[${i}]`;
    object(a, p, ['fileName', 'fileType', 'fileSize', 'sm3', 'fileData']);
    re(a.fileType, `${p}.fileType`, /^[a-z0-9]{1,10}$/, 'a lowercase file extension');
    str(a.fileName, `${p}.fileName`);
    const suffix = `.${a.fileType}`;
    if (!a.fileName.endsWith(suffix) || a.fileName.length === suffix.length) fail(`${p}.fileName`, `must be the material name + "${suffix}"`);
    if (!Number.isSafeInteger(a.fileSize) || a.fileSize < 0) fail(`${p}.fileSize`, 'must be a non-negative integer');
    re(a.sm3, `${p}.sm3`, SM3_HEX_RE, '64 lowercase hex characters');
    if (typeof a.fileData !== 'string') fail(`${p}.fileData`, 'must be a base64 string');
    const data = decodeBase64(a.fileData);
    if (!data) fail(`${p}.fileData`, 'is not canonical base64 (RFC 4648, padded, no whitespace)');
    if (data.length !== a.fileSize) fail(`${p}.fileSize`, `says ${a.fileSize} bytes, fileData has ${data.length}`);
    const actual = gm.sm3hex(data);
    if (actual !== a.sm3) fail(`${p}.sm3`, `SM3 of fileData is ${actual}, not ${a.sm3}`);
    return { name: a.fileName.slice(0, -suffix.length), file_name: a.fileName, file_type: a.fileType, size: data.length, sm3: a.sm3, content_base64: a.fileData };
  });
}

function caseSubmit(v) {
  object(v, '$', ['applyNo', 'matterCode', 'matterName', 'acceptAreaCode', 'handleAreaCode', 'acceptTime', 'applicant', 'agent',
    'attachments', 'formData', 'delivery', 'remark']);
  str(v.applyNo, '$.applyNo');
  str(v.matterCode, '$.matterCode');
  str(v.matterName, '$.matterName');
  re(v.acceptAreaCode, '$.acceptAreaCode', REGION_RE, 'a 6-digit region code');
  re(v.handleAreaCode, '$.handleAreaCode', REGION_RE, 'a 6-digit region code');
  millis(v.acceptTime, '$.acceptTime');
  if (kind(v.formData) !== 'object') fail('$.formData', `must be a JSON object, got ${kind(v.formData)}`);
  object(v.delivery, '$.delivery', ['mode', 'receiver', 'mobile', 'address']);
  if (!MODES[v.delivery.mode] || typeof v.delivery.mode !== 'number') fail('$.delivery.mode', `${JSON.stringify(v.delivery.mode)} is not 1, 2 or 3 (a number)`);
  const delivery = { method: MODES[v.delivery.mode] };
  for (const [k, canon] of [['receiver', 'recipient'], ['mobile', 'phone'], ['address', 'address']]) {
    if (str(v.delivery[k], `$.delivery.${k}`, { nullable: true }) !== null) delivery[canon] = v.delivery[k];
  }
  const out = {
    case_id: v.applyNo,
    item: { code: v.matterCode, name: v.matterName },
    origin_region: v.acceptAreaCode,
    target_region: v.handleAreaCode,
    accepted_at: bj.toRfc3339(v.acceptTime),
    accept_time_ms: v.acceptTime,
    applicant: party(v.applicant, '$.applicant'),
    agent: v.agent === null ? null : party(v.agent, '$.agent'),
    materials: attachments(v.attachments, '$.attachments'),
    form: v.formData,
    delivery,
  };
  if (str(v.remark, '$.remark', { nullable: true, allowEmpty: true }) !== null) out.remarks = v.remark;
  return out;
}

function caseWithdraw(v) {
  object(v, '$', ['applyNo', 'receiptNo', 'reason']);
  return { case_id: str(v.applyNo, '$.applyNo'), receipt_no: str(v.receiptNo, '$.receiptNo'), reason: str(v.reason, '$.reason') };
}

function caseSupplement(v) {
  object(v, '$', ['applyNo', 'receiptNo', 'attachments']);
  return { case_id: str(v.applyNo, '$.applyNo'), receipt_no: str(v.receiptNo, '$.receiptNo'), materials: attachments(v.attachments, '$.attachments', { atLeastOne: true }) };
}

function statusNotify(v) {
  object(v, '$', ['applyNo', 'receiptNo', 'status', 'opinion', 'supplementList', 'expressNo', 'licenseNo', 'time']);
  if (!STATUS[v.status]) fail('$.status', `${JSON.stringify(v.status)} is not one of ${Object.keys(STATUS).join(', ')}`);
  const out = { case_id: str(v.applyNo, '$.applyNo'), receipt_no: str(v.receiptNo, '$.receiptNo'), code: v.status, status: STATUS[v.status] };
  if (str(v.opinion, '$.opinion', { nullable: true }) !== null) out.opinion = v.opinion;
  if (v.status === 'SUPPLEMENT') {
    if (!Array.isArray(v.supplementList) || v.supplementList.length === 0) fail('$.supplementList', 'SUPPLEMENT needs a non-empty list');
    out.supplement = v.supplementList.map((s, i) => str(object(s, `$.supplementList[${i}]`, ['materialName']).materialName, `$.supplementList[${i}].materialName`));
  } else if (!(v.supplementList === null || (Array.isArray(v.supplementList) && v.supplementList.length === 0))) {
    fail('$.supplementList', 'only for status SUPPLEMENT (else null or [])');
  }
  for (const [k, canon] of [['expressNo', 'tracking_no'], ['licenseNo', 'licence_no']]) {
    if (str(v[k], `$.${k}`, { nullable: true }) !== null) {
      if (v.status !== 'EXPRESS') fail(`$.${k}`, 'only for status EXPRESS (else null)');
      out[canon] = v[k];
    }
  }
  out.time = bj.toRfc3339(millis(v.time, '$.time'));
  return out;
}

const READERS = { CASE_SUBMIT: caseSubmit, CASE_WITHDRAW: caseWithdraw, CASE_SUPPLEMENT: caseSupplement, STATUS_NOTIFY: statusNotify };
function business(msgType, v) { return READERS[msgType](v); }

module.exports = { envelope, business, ParamError, CERT_TYPES, STATUS, MSG_TYPES };
