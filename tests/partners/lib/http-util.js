'use strict';
// Small pieces both partner endpoints share: reading a capped request body,
// checking the media type, and the transport-level faults (close mid-response,
// unsolicited second response) that need the raw socket.

const LU_MAX_BODY = 32 * 1024 * 1024; // lu-xml.md "Bodies are at most 32 MiB"

function readBody(req, max) {
  return new Promise((resolve) => {
    const chunks = [];
    let size = 0, over = false;
    req.on('data', (c) => {
      if (over) return;
      size += c.length;
      if (size > max) { over = true; chunks.length = 0; return; }
      chunks.push(c);
    });
    req.on('end', () => resolve(over ? { tooLarge: true } : { body: Buffer.concat(chunks) }));
    req.on('error', () => resolve({ aborted: true }));
  });
}

// "application/xml; charset=UTF-8" → { type: 'application/xml', charset: 'utf-8' }
function mediaType(header) {
  if (!header) return { type: '', charset: '' };
  const [type, ...params] = header.split(';');
  let charset = '';
  for (const p of params) {
    const m = /^\s*charset\s*=\s*"?([^";\s]+)"?\s*$/i.exec(p);
    if (m) charset = m[1].toLowerCase();
  }
  return { type: type.trim().toLowerCase(), charset };
}

// Writes the status line, headers and the first half of `body`, then destroys
// the socket: the client sees a truncated response.
function closeMidResponse(res, status, headers, body) {
  res.writeHead(status, { ...headers, 'content-length': body.length });
  res.write(body.subarray(0, Math.floor(body.length / 2)), () => setTimeout(() => res.socket && res.socket.destroy(), 20));
}

// After a normal response, writes a second complete HTTP response that no
// request asked for.
function answerTwice(res, contentType, body) {
  const extra = Buffer.concat([
    Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: ${contentType}\r\ncontent-length: ${body.length}\r\n\r\n`), body]);
  const sock = res.socket; // detached from `res` once the response finishes
  res.on('finish', () => { if (sock && !sock.destroyed) sock.write(extra); });
}

module.exports = { readBody, mediaType, closeMidResponse, answerTwice, LU_MAX_BODY };
