'use strict';
// Business JSON for the yue-json mock's own sends: its own CASE_SUBMIT (from a
// canonical case, SPEC §3, mapped as yue-json.md's CASE_SUBMIT example and
// tables say) and STATUS_NOTIFY for our cases.

const bj = require('../lib/beijing-time');
const { CERT_TYPES, STATUS } = require('./schema');

const NATIONAL_TO_CERT = Object.fromEntries(Object.entries(CERT_TYPES).map(([k, v]) => [v, k]));
const MODE = { mail: 1, pickup: 2, electronic: 3 };
// Lu-style codes "01".."08" are accepted too, in the order of the document's table.
const CODE_TO_STATUS = Object.fromEntries(Object.keys(STATUS).map((s, i) => [`0${i + 1}`, s]));
const EXT = { 'application/pdf': 'pdf', 'image/jpeg': 'jpg', 'image/png': 'png', 'application/ofd': 'ofd', 'text/plain': 'txt', 'application/zip': 'zip' };

const party = (p) => p && ({
  type: p.kind === 'org' ? 'E' : 'P', name: p.name, certType: NATIONAL_TO_CERT[p.id_type] || p.id_type,
  certNo: p.id_number, mobile: p.phone, address: p.address === undefined ? null : p.address,
});

function attachments(list) {
  return (list || []).map((m) => {
    const type = m.file_type || EXT[m.media_type] || 'bin';
    const data = m.content_base64 || '';
    return { fileName: `${m.name}.${type}`, fileType: type, fileSize: m.size === undefined ? Buffer.from(data, 'base64').length : m.size, sm3: m.sm3, fileData: data };
  });
}

function caseSubmit(c) {
  const t = bj.parseRfc3339(c.accepted_at);
  if (t === null) throw new Error(`accepted_at ${JSON.stringify(c.accepted_at)} is not RFC 3339 with an offset`);
  const d = c.delivery || {};
  return {
    applyNo: c.case_id, matterCode: c.item.code, matterName: c.item.name, acceptAreaCode: c.origin_region, handleAreaCode: c.target_region,
    acceptTime: t, applicant: party(c.applicant), agent: c.agent ? party(c.agent) : null, attachments: attachments(c.materials),
    formData: c.form || {},
    delivery: { mode: MODE[d.method] || d.method, receiver: d.recipient === undefined ? null : d.recipient, mobile: d.phone === undefined ? null : d.phone, address: d.address === undefined ? null : d.address },
    remark: c.remarks === undefined ? '' : c.remarks,
  };
}

function statusNotify(s) {
  const status = CODE_TO_STATUS[s.status] || s.status;
  return {
    applyNo: s.case_id, receiptNo: s.receipt_no, status, opinion: s.opinion === undefined ? null : s.opinion,
    supplementList: status === 'SUPPLEMENT' ? (s.supplement || []).map((n) => ({ materialName: n })) : [],
    expressNo: s.express_no === undefined ? null : s.express_no, licenseNo: s.licence_no === undefined ? null : s.licence_no,
    time: s.time_ms === undefined ? Date.now() : s.time_ms,
  };
}

module.exports = { caseSubmit, statusNotify, CODE_TO_STATUS };
