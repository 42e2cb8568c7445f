'use strict';
// Parsing untrusted XML for the lu-xml mock. Refuses, before any parser sees
// the text: invalid UTF-8, an XML declaration naming another encoding or
// version, and any DTD (<!DOCTYPE / <!ENTITY) — so external entities, entity
// expansion ("billion laughs") and DTD-driven defaults can never happen. Then
// parses with @xmldom/xmldom, treating every parser warning or error as fatal
// (xmldom would otherwise recover from malformed input), and checks that the
// document has exactly one root element and nothing but whitespace, comments
// and processing instructions around it.

const { DOMParser } = require('@xmldom/xmldom');
const { decodeUtf8 } = require('./encoding');

class XmlRefused extends Error {
  constructor(kind, message) { super(message); this.kind = kind; } // kind: 'encoding' | 'dtd' | 'malformed'
}

const ELEMENT = 1, TEXT = 3, CDATA = 4, PI = 7, COMMENT = 8;

// buf (Buffer) → { text, doc }. Throws XmlRefused.
function parseUntrusted(buf) {
  let text;
  try { text = decodeUtf8(buf); } catch { throw new XmlRefused('encoding', 'body is not valid UTF-8'); }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // a UTF-8 BOM is allowed by XML 1.0 §4.3.3
  if (/<!DOCTYPE/i.test(text) || /<!ENTITY/i.test(text)) throw new XmlRefused('dtd', 'DTDs and entity declarations are refused');
  const decl = /^<\?xml\s([^?]*)\?>/.exec(text);
  if (decl) {
    const enc = /encoding\s*=\s*["']([^"']*)["']/.exec(decl[1]);
    if (enc && enc[1].toUpperCase() !== 'UTF-8') throw new XmlRefused('encoding', `XML declaration names encoding ${enc[1]}, only UTF-8 is accepted`);
    const ver = /version\s*=\s*["']([^"']*)["']/.exec(decl[1]);
    if (!ver || ver[1] !== '1.0') throw new XmlRefused('malformed', 'XML declaration must say version="1.0"');
  } else if (/^\s*<\?xml[\s?]/.test(text)) {
    throw new XmlRefused('malformed', 'XML declaration not at the very start of the document');
  }
  // Characters XML 1.0 does not allow at all (controls other than tab/CR/LF).
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]/.test(text)) throw new XmlRefused('malformed', 'character not allowed in XML 1.0');

  // The same for characters written as references (&#0; &#x1F; ...).
  for (const m of text.matchAll(/&#(?:x([0-9a-fA-F]+)|([0-9]+));/g)) {
    const cp = m[1] !== undefined ? parseInt(m[1], 16) : parseInt(m[2], 10);
    const ok = cp === 0x9 || cp === 0xa || cp === 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
      (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
    if (!ok) throw new XmlRefused('malformed', `character reference ${m[0]} is not an XML 1.0 character`);
  }

  const problems = [];
  const note = (level) => (msg) => problems.push(`${level}: ${String(msg).split('\n')[0]}`);
  const doc = new DOMParser({
    locator: {},
    errorHandler: { warning: note('warning'), error: note('error'), fatalError: note('fatal') },
  }).parseFromString(text, 'application/xml');
  if (problems.length) throw new XmlRefused('malformed', `not well-formed XML: ${problems[0]}`);
  const roots = [];
  for (let n = doc.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === ELEMENT) roots.push(n);
    else if (n.nodeType === TEXT && /^\s*$/.test(n.data)) continue;
    else if (n.nodeType === PI || n.nodeType === COMMENT) continue;
    else throw new XmlRefused('malformed', 'content outside the root element');
  }
  if (roots.length !== 1) throw new XmlRefused('malformed', `document must have exactly one root element, has ${roots.length}`);
  return { text, doc };
}

// Element children of `el`, plus the first non-whitespace text found between
// them (`strayText`, else null) for the caller to refuse.
function elementChildren(el) {
  const out = [];
  let strayText = null;
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === ELEMENT) out.push(n);
    else if ((n.nodeType === TEXT || n.nodeType === CDATA) && !/^\s*$/.test(n.data)) strayText = n.data;
  }
  return { elements: out, strayText };
}

// Text content of a leaf element, or null when it has element children.
function leafText(el) {
  let s = '';
  for (let n = el.firstChild; n; n = n.nextSibling) {
    if (n.nodeType === ELEMENT) return null;
    if (n.nodeType === TEXT || n.nodeType === CDATA) s += n.data;
  }
  return s;
}

// Escapes text for element content / attribute values.
function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/\r/g, '&#13;');
}

module.exports = { parseUntrusted, elementChildren, leafText, esc, XmlRefused, ELEMENT, TEXT, CDATA, COMMENT, PI };
