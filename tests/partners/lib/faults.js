'use strict';
// Scripted faults for the mocks' partner endpoints (POST /script on the
// control port). Faults queue in order; each applies to the next `count`
// requests (default 1) and is then dropped. Kinds:
//   code           answer with business code `code` (signed, HTTP 200); the
//                  message is not processed
//   http           answer HTTP `status` (default 503) with optional
//                  `retry_after` header value and `body`
//   delay          wait `ms` before answering normally
//   close          destroy the connection: `when` "before" (no response at
//                  all) or "mid" (default: status line, headers and half the
//                  body written, then closed)
//   bad-signature  answer normally, but with a signature that does not verify
//   unsigned       answer normally, without any signature
//   garbage        HTTP 200 with a body that is not an acknowledgement
//   twice          answer normally, then write a second, unsolicited HTTP
//                  response on the same connection
// `process: true` on http / close / garbage processes (records, de-duplicates,
// numbers) the message first, as if the platform took it and the answer got
// lost: a retry then gets the duplicate answer with the same receipt number.

const KINDS = new Set(['code', 'http', 'delay', 'close', 'bad-signature', 'unsigned', 'garbage', 'twice']);

class FaultQueue {
  constructor() { this.queue = []; }

  // Validates and appends faults; returns the queue.
  add(list) {
    for (const f of list) {
      if (!f || !KINDS.has(f.kind)) throw new Error(`fault kind must be one of ${[...KINDS].join(', ')}`);
      const count = f.count === undefined ? 1 : f.count;
      if (!Number.isInteger(count) || count < 1) throw new Error('count must be a positive integer');
      if (f.kind === 'code' && !/^\d{4}$/.test(String(f.code || ''))) throw new Error('code fault needs a 4-digit "code"');
      if (f.kind === 'http' && f.status !== undefined && !(Number.isInteger(f.status) && f.status >= 100 && f.status <= 599)) throw new Error('http fault status must be 100..599');
      if (f.kind === 'delay' && !(Number.isInteger(f.ms) && f.ms >= 0 && f.ms <= 600000)) throw new Error('delay fault needs "ms" 0..600000');
      if (f.kind === 'close' && f.when !== undefined && !['before', 'mid'].includes(f.when)) throw new Error('close fault "when" is before|mid');
      this.queue.push({ ...f, count, code: f.code === undefined ? undefined : String(f.code) });
    }
    return this.list();
  }

  // Takes the fault for the next request (or null).
  take() {
    const f = this.queue[0];
    if (!f) return null;
    f.count -= 1;
    if (f.count === 0) this.queue.shift();
    const { count, ...rest } = f; // eslint-disable-line no-unused-vars
    return rest;
  }

  list() { return this.queue.map((f) => ({ ...f })); }
  clear() { this.queue = []; }
}

// Accepts {faults:[...], replace?} or a single fault object.
function faultsFromBody(body) {
  if (Array.isArray(body && body.faults)) return { list: body.faults, replace: !!body.replace };
  return { list: [body], replace: !!(body && body.replace) };
}

module.exports = { FaultQueue, faultsFromBody, KINDS };
