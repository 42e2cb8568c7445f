'use strict';
// Strict decoders shared by both mocks: UTF-8 that refuses invalid bytes,
// canonical base64 (RFC 4648 §4 alphabet, padding required, no whitespace
// unless asked for, no non-zero trailing bits), UUID and hex shapes.

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// Buffer → string, or throws on invalid UTF-8.
function decodeUtf8(buf) { return utf8.decode(buf); }

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

// Returns a Buffer, or null if `text` is not canonical base64. With
// allowWhitespace, line breaks/spaces are removed first (XML-DSig base64
// values are commonly wrapped at 64/76 columns).
function decodeBase64(text, { allowWhitespace = false } = {}) {
  if (typeof text !== 'string') return null;
  const t = allowWhitespace ? text.replace(/[ \t\r\n]+/g, '') : text;
  if (!B64_RE.test(t)) return null;
  const buf = Buffer.from(t, 'base64');
  if (buf.toString('base64') !== t) return null; // non-zero pad bits
  return buf;
}

const UUID_LOWER_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const UUID_ANY_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const SM3_HEX_RE = /^[0-9a-f]{64}$/;
const REGION_RE = /^\d{6}$/;

module.exports = { decodeUtf8, decodeBase64, UUID_LOWER_RE, UUID_ANY_RE, SM3_HEX_RE, REGION_RE };
