'use strict';
// Beijing time (UTC+8, no DST) in lu-xml.md's "yyyy-MM-dd HH:mm:ss" form (no
// offset on the wire), plus the RFC 3339 form the canonical case uses. Done by
// shifting epoch milliseconds by 8 h and reading UTC fields, so the machine's
// own time zone never matters.

const OFFSET_MS = 8 * 3600 * 1000;
const p2 = (n) => String(n).padStart(2, '0');

function fields(ms) {
  const d = new Date(ms + OFFSET_MS);
  return { y: d.getUTCFullYear(), mo: d.getUTCMonth() + 1, d: d.getUTCDate(), h: d.getUTCHours(), mi: d.getUTCMinutes(), s: d.getUTCSeconds() };
}

// epoch ms → "2024-05-06 10:00:05"
function format(ms) {
  const f = fields(ms);
  return `${String(f.y).padStart(4, '0')}-${p2(f.mo)}-${p2(f.d)} ${p2(f.h)}:${p2(f.mi)}:${p2(f.s)}`;
}

// epoch ms → "20240506" (Beijing calendar date, used in receipt numbers)
function ymd(ms) {
  const f = fields(ms);
  return `${String(f.y).padStart(4, '0')}${p2(f.mo)}${p2(f.d)}`;
}

// epoch ms → "2024-05-06T10:00:05+08:00"
function toRfc3339(ms) { return format(ms).replace(' ', 'T') + '+08:00'; }

// Builds epoch ms from Beijing wall-clock fields, or null when the fields are
// not a real calendar date/time (2024-02-30, 24:00:00, ...).
function fromFields(y, mo, d, h, mi, s) {
  const t = Date.UTC(y, mo - 1, d, h, mi, s);
  const back = new Date(t);
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d ||
      back.getUTCHours() !== h || back.getUTCMinutes() !== mi || back.getUTCSeconds() !== s) return null;
  return t - OFFSET_MS;
}

// "2024-05-06 10:00:05" → epoch ms, or null if not exactly that form.
function parse(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(text);
  if (!m) return null;
  return fromFields(...m.slice(1).map(Number));
}

// RFC 3339 with a mandatory offset ("Z" or ±hh:mm), optional fraction → epoch ms or null.
function parseRfc3339(text) {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.exec(text);
  if (!m) return null;
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const base = Date.UTC(y, mo - 1, d, h, mi, s);
  const check = new Date(base);
  if (check.getUTCDate() !== d || check.getUTCHours() !== h || check.getUTCMonth() !== mo - 1) return null;
  let off = 0;
  if (!/^[Zz]$/.test(m[8])) {
    const sign = m[8][0] === '-' ? -1 : 1;
    off = sign * (Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4, 6))) * 60000;
  }
  return base - off + (m[7] ? Math.floor(Number(m[7]) * 1000) : 0);
}

module.exports = { format, ymd, toRfc3339, parse, parseRfc3339 };
