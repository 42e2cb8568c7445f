'use strict';
// The lu-xml BiaoDan form (lu-xml.md "Form (BiaoDan)"): a JSON object is sent
// as flat <Xiang Ming="path" LeiXing="type">text</Xiang> items, nested objects
// joined with ".", array elements as "[i]" ("owners[0].name"); LeiXing is
// string | number | boolean | null. "A case sent and read back must give the
// same form, types included", so unflatten() refuses anything that would not
// read back unambiguously: duplicate paths, a path used both as a value and as
// a container, sparse arrays, bad number/boolean literals, text under null.
//
// Things the document cannot express (empty objects/arrays, keys containing
// ".", "[" or "]", an empty key) are refused by flatten() rather than guessed.

const KEY_RE = /^[^.[\]]+$/;
// JSON number grammar (RFC 8259 §6), the only number spelling accepted.
const NUMBER_RE = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

class FormError extends Error {}

function flatten(form) {
  if (form === null || typeof form !== 'object' || Array.isArray(form)) throw new FormError('form must be a JSON object');
  const out = [];
  const walk = (v, path) => {
    if (v === null) { out.push({ name: path, type: 'null', text: '' }); return; }
    if (typeof v === 'string') { out.push({ name: path, type: 'string', text: v }); return; }
    if (typeof v === 'boolean') { out.push({ name: path, type: 'boolean', text: String(v) }); return; }
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new FormError(`${path}: non-finite number`);
      out.push({ name: path, type: 'number', text: JSON.stringify(v) });
      return;
    }
    if (Array.isArray(v)) {
      if (v.length === 0) throw new FormError(`${path}: empty arrays cannot be expressed in BiaoDan`);
      v.forEach((e, i) => walk(e, `${path}[${i}]`));
      return;
    }
    if (typeof v === 'object') {
      const keys = Object.keys(v);
      if (keys.length === 0 && path) throw new FormError(`${path}: empty objects cannot be expressed in BiaoDan`);
      for (const k of keys) {
        if (!KEY_RE.test(k)) throw new FormError(`${path || '(form)'}: key ${JSON.stringify(k)} cannot be expressed in BiaoDan`);
        walk(v[k], path ? `${path}.${k}` : k);
      }
      return;
    }
    throw new FormError(`${path}: unsupported value type ${typeof v}`);
  };
  walk(form, '');
  return out;
}

// "a.b[0].c" → ['a', 'b', 0, 'c'] or throws.
function parsePath(name) {
  const segs = [];
  const re = /([^.[\]]+)|\[(0|[1-9]\d*)\]|(\.)/g;
  let pos = 0, expectKey = true, m;
  while (pos < name.length) {
    re.lastIndex = pos;
    m = re.exec(name);
    if (!m || m.index !== pos) throw new FormError(`Ming ${JSON.stringify(name)}: bad path syntax at ${pos}`);
    if (m[1] !== undefined) {
      if (!expectKey) throw new FormError(`Ming ${JSON.stringify(name)}: missing "." before key at ${pos}`);
      segs.push(m[1]); expectKey = false;
    } else if (m[2] !== undefined) {
      if (segs.length === 0) throw new FormError(`Ming ${JSON.stringify(name)}: the form is an object, a path cannot start with [i]`);
      if (expectKey) throw new FormError(`Ming ${JSON.stringify(name)}: index after "."`);
      segs.push(Number(m[2]));
    } else {
      if (expectKey) throw new FormError(`Ming ${JSON.stringify(name)}: empty key at ${pos}`);
      expectKey = true;
    }
    pos = re.lastIndex;
  }
  if (segs.length === 0 || expectKey) throw new FormError(`Ming ${JSON.stringify(name)}: empty or ends with "."`);
  if (segs.some((s) => typeof s === 'number' && s > 100000)) throw new FormError(`Ming ${JSON.stringify(name)}: array index too large`);
  return segs;
}

function typedValue(type, text, name) {
  switch (type) {
    case 'string': return text;
    case 'number':
      if (!NUMBER_RE.test(text)) throw new FormError(`Xiang ${name}: ${JSON.stringify(text)} is not a number literal`);
      if (!Number.isFinite(Number(text))) throw new FormError(`Xiang ${name}: number out of range`);
      return Number(text);
    case 'boolean':
      if (text !== 'true' && text !== 'false') throw new FormError(`Xiang ${name}: boolean must be "true" or "false", got ${JSON.stringify(text)}`);
      return text === 'true';
    case 'null':
      if (text !== '') throw new FormError(`Xiang ${name}: LeiXing null must have empty content`);
      return null;
    default: throw new FormError(`Xiang ${name}: LeiXing ${JSON.stringify(type)} is not string|number|boolean|null`);
  }
}

const LEAF = Symbol('leaf');
const set = (obj, k, v) => Object.defineProperty(obj, k, { value: v, enumerable: true, writable: true, configurable: true });

// items: [{name, type, text}] → the form object (insertion order kept).
function unflatten(items) {
  const root = {};
  const kinds = new Map(); // path prefix → 'object' | 'array' | LEAF
  for (const { name, type, text } of items) {
    const segs = parsePath(name);
    const value = typedValue(type, text, name);
    let node = root, prefix = '';
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i];
      prefix += typeof seg === 'number' ? `[${seg}]` : (i ? '.' : '') + seg;
      const last = i === segs.length - 1;
      const want = last ? LEAF : typeof segs[i + 1] === 'number' ? 'array' : 'object';
      const have = kinds.get(prefix);
      if (have !== undefined) {
        if (have === LEAF || last) throw new FormError(`Ming ${JSON.stringify(name)}: ${prefix} given twice or used both as a value and as a container`);
        if (have !== want) throw new FormError(`Ming ${JSON.stringify(name)}: ${prefix} used both as an object and as an array`);
        node = node[seg];
        continue;
      }
      kinds.set(prefix, want);
      const child = last ? value : want === 'array' ? [] : {};
      if (Array.isArray(node)) node[seg] = child; else set(node, seg, child);
      node = child;
    }
  }
  // Arrays must be dense: [0]..[n-1] all present.
  const checkDense = (v, path) => {
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        if (!(i in v)) throw new FormError(`${path}[${i}] missing: array indices must run from 0 without gaps`);
        checkDense(v[i], `${path}[${i}]`);
      }
    } else if (v && typeof v === 'object') {
      for (const k of Object.keys(v)) checkDense(v[k], path ? `${path}.${k}` : k);
    }
  };
  checkDense(root, '');
  return root;
}

module.exports = { flatten, unflatten, parsePath, FormError, NUMBER_RE };
