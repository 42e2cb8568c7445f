'use strict';
// Shared plumbing for the self-tests (kept out of test/ so that `node --test`
// does not count it as a test file): a throw-away dev PKI made by the
// project's own script, starting a mock as a child process (its ready line
// gives the ports), the control API, raw HTTPS requests, and running the
// independent tools (xmlsec1, openssl). Nothing here uses the mocks' lib/.

const { spawn, spawnSync, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const https = require('https');

const PARTNERS_DIR = path.resolve(__dirname, '..');
const REPO_ROOT = path.resolve(PARTNERS_DIR, '..', '..');
const SAMPLES_DIR = process.env.TB_SAMPLES_DIR || path.resolve(REPO_ROOT, '..', 'shared', 'samples');

// Temporary directories (PKI, signed files) are removed when the test process exits.
const tmpdirs = [];
process.on('exit', () => { for (const d of tmpdirs) fs.rmSync(d, { recursive: true, force: true }); });
function tmpdir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpdirs.push(d);
  return d;
}

// TB_PKI_DIR reuses an existing PKI (faster local runs); else a fresh one.
function makePki() {
  if (process.env.TB_PKI_DIR) return process.env.TB_PKI_DIR;
  const dir = path.join(tmpdir('tb-partners-pki-'), 'pki');
  execFileSync(path.join(REPO_ROOT, 'certs', 'make-dev-pki.sh'), [dir], { stdio: 'ignore' });
  return dir;
}

function loadSample(prefix) {
  const f = fs.readdirSync(SAMPLES_DIR).find((n) => n.startsWith(prefix));
  return JSON.parse(fs.readFileSync(path.join(SAMPLES_DIR, f), 'utf8'));
}

// Starts `script` with args; resolves { port, controlPort, stop(), stderr() }.
function startMock(script, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(PARTNERS_DIR, script), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    const timer = setTimeout(() => { child.kill(); reject(new Error(`${script} not ready: ${err}`)); }, 15000);
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.includes('"ready"'));
      if (line) {
        clearTimeout(timer);
        const r = JSON.parse(line);
        resolve({
          port: r.port, controlPort: r.control_port, child,
          stderr: () => err,
          stop: async () => {
            // TB_MOCK_DUMP=1: print every request's answer and reason (to check that each refusal has the intended cause).
            if (process.env.TB_MOCK_DUMP) {
              const rec = (await control(r.control_port, 'GET', '/received')).body;
              for (const x of rec) {
                const a = x.answer || {};
                process.stderr.write(`${script} #${x.seq} ${a.code || a.http_status || '-'} ${x.error || a.text || ''}\n`);
              }
            }
            await new Promise((res) => { child.once('exit', res); child.kill(); });
          },
        });
      }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${script} exited ${code}: ${err}`)); });
  });
}

function control(port, method, p, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const req = http.request({ host: '127.0.0.1', port, method, path: p, headers: data ? { 'content-type': 'application/json', 'content-length': data.length } : {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try { resolve({ status: res.statusCode, body: JSON.parse(text) }); } catch { resolve({ status: res.statusCode, body: text }); }
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

// Raw HTTPS request; resolves { status, headers, body: Buffer } or { error }.
function request(port, { method = 'POST', path: p, headers = {}, body = Buffer.alloc(0), tls = {} }) {
  return new Promise((resolve) => {
    const req = https.request({
      host: '127.0.0.1', port, method, path: p, agent: false,
      headers: { ...headers, 'content-length': body.length }, ...tls,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('error', (e) => resolve({ error: e.message }));
    req.end(body);
  });
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { encoding: opts.encoding === undefined ? 'utf8' : opts.encoding, input: opts.input });
}

module.exports = { PARTNERS_DIR, REPO_ROOT, SAMPLES_DIR, tmpdir, makePki, loadSample, startMock, control, request, run };
