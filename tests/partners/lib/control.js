'use strict';
// The mocks' control API: plain HTTP on 127.0.0.1 only (never exposed like
// the partner endpoint), JSON in and out, one handler per "METHOD /path".
// Handlers may be async; a thrown error becomes 400 {"error": message}.

const http = require('http');

const MAX_BODY = 64 * 1024 * 1024;

function startControl({ host = '127.0.0.1', port, routes, log }) {
  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > MAX_BODY) { req.destroy(); return; }
      chunks.push(c);
    });
    req.on('end', async () => {
      const url = new URL(req.url, 'http://control');
      const key = `${req.method} ${url.pathname}`;
      const send = (status, obj) => {
        const body = Buffer.from(JSON.stringify(obj, null, 1) + '\n');
        res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': body.length });
        res.end(body);
      };
      const handler = routes[key];
      if (!handler) {
        const known = Object.keys(routes).filter((k) => k.endsWith(` ${url.pathname}`));
        send(known.length ? 405 : 404, { error: `no control route ${key}`, routes: Object.keys(routes) });
        return;
      }
      let body = {};
      if (chunks.length) {
        try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) { send(400, { error: `control body is not JSON: ${e.message}` }); return; }
      }
      try {
        const out = await handler(body, url.searchParams);
        send(200, out === undefined ? { ok: true } : out);
      } catch (e) {
        if (log) log({ event: 'control.error', route: key, error: e.message });
        send(400, { error: e.message });
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

module.exports = { startControl };
