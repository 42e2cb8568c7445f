'use strict';
// Writes lu-xml messages and acknowledgements (unsigned; xmldsig.sign appends
// the signature). The canonical → lu-xml case mapping follows the comments in
// lu-xml.md's CASE_SUBMIT example (case_id → ShenBanHao, origin_region →
// ShouLiDi, ...); it is used only by the mock's own sends (POST /send-case).

const crypto = require('crypto');
const { esc } = require('../lib/safe-xml');
const bj = require('../lib/beijing-time');
const form = require('../lib/form');
const { NS, GESHI } = require('./schema');

const KIND = { person: '1', org: '2' };
const METHOD = { mail: '1', pickup: '2', electronic: '3' };
const MEDIA_TO_GESHI = Object.fromEntries(Object.entries(GESHI).map(([k, v]) => [v, k]));
MEDIA_TO_GESHI['image/jpg'] = 'jpg';

const el = (name, value) => `<${name}>${esc(value)}</${name}>`;
const optEl = (name, value) => (value === undefined || value === null ? '' : el(name, value));

function message({ messageId = crypto.randomUUID(), type, sender, receiver, sendTimeMs = Date.now(), bodyXml }) {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<TongbanMessage xmlns="${NS}" version="1.0">` +
    `<Header>${el('MessageId', messageId)}${el('MessageType', type)}${el('SenderRegion', sender)}` +
    `${el('ReceiverRegion', receiver)}${el('SendTime', bj.format(sendTimeMs))}</Header>` +
    `<Body>${bodyXml}</Body></TongbanMessage>`;
}

function ack({ messageId, code, message, receiptNo, receiveTimeMs = Date.now() }) {
  return '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<TongbanAck xmlns="${NS}">${el('MessageId', messageId || '')}${el('Code', code)}${el('Message', message)}` +
    `${optEl('ReceiptNo', receiptNo)}${el('ReceiveTime', bj.format(receiveTimeMs))}</TongbanAck>`;
}

function party(p) {
  return el('LeiXing', KIND[p.kind] || p.kind) + el('XingMing', p.name) + el('ZhengJianLeiXing', p.id_type) +
    el('ZhengJianHaoMa', p.id_number) + el('LianXiDianHua', p.phone) + optEl('DiZhi', p.address);
}

function materials(list) {
  return (list || []).map((m) => {
    const content = Buffer.from(m.content_base64 || '', 'base64');
    const geshi = m.format || MEDIA_TO_GESHI[m.media_type] || m.media_type;
    return `<CaiLiao>${el('MingCheng', m.name)}${el('GeShi', geshi)}${el('DaXiao', m.size === undefined ? content.length : m.size)}` +
      `<ZhaiYao SuanFa="SM3">${esc(m.sm3)}</ZhaiYao>${el('NeiRong', m.content_base64 || '')}</CaiLiao>`;
  }).join('');
}

// Canonical case (SPEC §3 shape) → <Case>.
function caseXml(c) {
  const accepted = bj.parseRfc3339(c.accepted_at);
  if (accepted === null) throw new Error(`accepted_at ${JSON.stringify(c.accepted_at)} is not RFC 3339 with an offset`);
  const items = form.flatten(c.form || {});
  const d = c.delivery || {};
  return '<Case>' + el('ShenBanHao', c.case_id) + el('ShiXiangBianMa', c.item.code) + el('ShiXiangMingCheng', c.item.name) +
    el('ShouLiDi', c.origin_region) + el('BanLiDi', c.target_region) + el('ShouLiShiJian', bj.format(accepted)) +
    `<ShenQingRen>${party(c.applicant)}</ShenQingRen>` + (c.agent ? `<DaiBanRen>${party(c.agent)}</DaiBanRen>` : '') +
    `<CaiLiaoList>${materials(c.materials)}</CaiLiaoList>` +
    `<BiaoDan>${items.map((i) => `<Xiang Ming="${esc(i.name)}" LeiXing="${i.type}">${esc(i.text)}</Xiang>`).join('')}</BiaoDan>` +
    `<SongDa>${el('FangShi', METHOD[d.method] || d.method)}${optEl('ShouJianRen', d.recipient)}${optEl('DianHua', d.phone)}${optEl('DiZhi', d.address)}</SongDa>` +
    (c.remarks === undefined || c.remarks === null ? '' : el('BeiZhu', c.remarks)) + '</Case>';
}

// {case_id, receipt_no, status "01".."08", opinion, supplement [names], express_no, licence_no, time_ms}
function statusXml(s) {
  return '<Status>' + el('ShenBanHao', s.case_id) + el('HuiZhiHao', s.receipt_no) + el('ZhuangTai', s.status) +
    optEl('ShuoMing', s.opinion) +
    (s.supplement || []).map((n) => `<BuZhengCaiLiao>${el('MingCheng', n)}</BuZhengCaiLiao>`).join('') +
    optEl('KuaiDiDanHao', s.express_no) + optEl('ZhengZhaoBianHao', s.licence_no) +
    el('ShiJian', bj.format(s.time_ms === undefined ? Date.now() : s.time_ms)) + '</Status>';
}

module.exports = { message, ack, caseXml, statusXml };
