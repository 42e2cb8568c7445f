"""Harness for integration tests that run the real `tbgw` binary.

A `Gateway` owns one temporary directory: it writes the configuration there,
starts `tbgw serve -c <dir>/tbgw.json` with stderr going to a file in the same
directory, reads the bound port back from the `gateway.started` log line
(the configuration listens on port 0), and offers request helpers:
http.client for ordinary requests, raw sockets (`RawConn`) for pipelining,
slow clients and limits. `stop()` sends SIGTERM and insists on exit status 0;
`kill9()` simulates a crash; `start()` again restarts on the same directory
(same store). `check_log()` asserts that every stderr line of every run is a
JSON object with ts/level/event and that no sanitizer report is present.

Only the Python standard library is used. Paths come from the environment
that ctest sets (TBGW_BIN, TB_SAMPLES_DIR, TB_REPO_ROOT) with fallbacks
relative to this file, never absolute paths.

The default configuration is a complete one: named keys from the development
PKI (certs/make-dev-pki.sh, made once into certs/out or TB_PKI_DIR), the
adapters built beside TBGW_BIN (or TB_ADAPTERS_DIR), and each partner with
its adapter's settings, so that every test starts the real adapters.
"""

import copy
import fcntl
import glob
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.environ.get("TB_REPO_ROOT") or os.path.normpath(os.path.join(HERE, "..", ".."))
SAMPLES_DIR = os.environ.get("TB_SAMPLES_DIR") or os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "samples"))
TBGW_BIN = os.environ.get("TBGW_BIN") or os.path.join(REPO_ROOT, "build", "gateway", "tbgw")
# The build puts adapters in <build>/adapters and tbgw in <build>/gateway/.
ADAPTERS_DIR = os.environ.get("TB_ADAPTERS_DIR") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(TBGW_BIN))), "adapters")
PKI_DIR = os.environ.get("TB_PKI_DIR") or os.path.join(REPO_ROOT, "certs", "out")

TOKEN = "test-token-0123456789abcdef"
CLIENT = "hall-test"

# Region → partner, as configured by default_config().
ROUTES = {"370683": "laizhou", "370685": "zhaoyuan", "440203": "wujiang"}

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehaviorSanitizer")

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
LEVELS = ("debug", "info", "warn", "error")


# ---- samples ------------------------------------------------------------

def sample_paths():
    paths = sorted(glob.glob(os.path.join(SAMPLES_DIR, "*.json")))
    assert len(paths) == 5, "expected the 5 canonical samples in %s, found %d" % (
        SAMPLES_DIR, len(paths))
    return paths


def load_samples():
    """[(file name, parsed case)] in file order."""
    out = []
    for p in sample_paths():
        with open(p, "rb") as f:
            out.append((os.path.basename(p), json.loads(f.read().decode("utf-8"))))
    return out


def sample(index=0):
    return copy.deepcopy(load_samples()[index][1])


def case_with_id(case_id, base_index=0):
    """A valid case: sample base_index with another case_id, nothing else changed."""
    c = sample(base_index)
    c["case_id"] = case_id
    return c


def body_of(case):
    return json.dumps(case, ensure_ascii=False).encode("utf-8")


def id_check_char(first17):
    """ISO 7064 MOD 11-2 check character of a resident ID number."""
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    s = sum(int(d) * w for d, w in zip(first17, weights))
    return "10X98765432"[s % 11]


# ---- configuration --------------------------------------------------------

_pki_made = []


def ensure_pki():
    """The development PKI's directory, made on first use. make-dev-pki.sh
    does nothing when the directory is complete; a lock keeps parallel test
    processes from making it at the same time."""
    if not _pki_made:
        lock = os.path.join(tempfile.gettempdir(), "tbgw-pki-%s.lock" % hashlib.sha256(
            os.path.abspath(PKI_DIR).encode()).hexdigest()[:16])
        with open(lock, "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            subprocess.run([os.path.join(REPO_ROOT, "certs", "make-dev-pki.sh"), PKI_DIR],
                           check=True, stdout=subprocess.DEVNULL, timeout=300)
        _pki_made.append(PKI_DIR)
    return PKI_DIR


# Made at import: examples/tbgw.json, which test_lifecycle checks with
# `tbgw check-config` (keys included), reads its keys from certs/out too.
ensure_pki()


def demo_keys(pki=None):
    """The named keys of examples/tbgw.json, with absolute paths into pki."""
    pki = pki or ensure_pki()

    def p(rel):
        return os.path.join(pki, rel)

    return {
        "gw-rsa": {"kind": "rsa", "private_key": p("gateway/sign-rsa.key"),
                   "certificate": p("gateway/sign-rsa.pem")},
        "gw-sm2": {"kind": "sm2", "private_key": p("gateway/sign-sm2.key"),
                   "public_key": p("gateway/sign-sm2.pub.pem")},
        "gw-ca": {"kind": "ca", "certificate": p("gateway/ca.pem")},
        "laizhou-ca": {"kind": "ca", "certificate": p("partners/laizhou/ca.pem")},
        "zhaoyuan-ca": {"kind": "ca", "certificate": p("partners/zhaoyuan/ca.pem")},
        "wujiang-ca": {"kind": "ca", "certificate": p("partners/wujiang/ca.pem")},
        "wujiang-sm2-pub": {"kind": "sm2", "public_key": p("partners/wujiang/sign-sm2.pub.pem")},
    }


def partner_tls(partner, pki=None):
    """A partner's TLS block: its CA both ways, our client certificate."""
    pki = pki or ensure_pki()
    return {"ca": os.path.join(pki, "partners", partner, "ca.pem"),
            "client_certificate": os.path.join(pki, "gateway", "tls-client.pem"),
            "client_key": os.path.join(pki, "gateway", "tls-client.key"),
            "client_ca": os.path.join(pki, "partners", partner, "ca.pem")}


def default_config():
    return {
        "node": {"region": "430603", "name": "integration-test"},
        "local_api": {
            "listen": "127.0.0.1:0",
            "tokens": [{"client": CLIENT, "token": TOKEN}],
            "limits": {},
            "timeouts_ms": {"header": 5000, "body": 5000, "keepalive": 10000, "write": 5000},
            "events_max_wait_s": 60,
        },
        "cases": {},
        "store": {"path": "tbgw.db", "durability": "fsync"},
        "log": {"level": "info", "file": "-"},
        "keys": demo_keys(),
        "adapters": {"dir": ADAPTERS_DIR},
        "partners": [
            {"name": "laizhou", "adapter": "lu-xml", "regions": ["370683"],
             "endpoint": "https://127.0.0.1:9443", "tls": partner_tls("laizhou"),
             "keys": {"sign": "gw-rsa", "peer_ca": "laizhou-ca"}},
            {"name": "zhaoyuan", "adapter": "lu-xml", "regions": ["370685"],
             "endpoint": "https://127.0.0.1:9444", "tls": partner_tls("zhaoyuan"),
             "keys": {"sign": "gw-rsa", "peer_ca": "zhaoyuan-ca"}},
            {"name": "wujiang", "adapter": "yue-json", "regions": ["440203"],
             "endpoint": "https://127.0.0.1:9543", "tls": partner_tls("wujiang"),
             "app_id": "YY-YUNXI-001", "peer_app_id": "GD-WJ-TB",
             "keys": {"sign": "gw-sm2", "decrypt": "gw-sm2", "peer": "wujiang-sm2-pub"}},
        ],
    }


def merge(base, over):
    """Deep merge of dicts; a value None in `over` deletes the key."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def child_env():
    env = dict(os.environ)
    asan = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = ":".join(x for x in (asan, "detect_leaks=1") if x)
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return env


def run_cli(args, timeout=60, env=None, cwd=None):
    """Runs `tbgw args...`; returns CompletedProcess with text stdout/stderr and
    asserts no sanitizer report appeared."""
    p = subprocess.run([TBGW_BIN] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env or child_env(), cwd=cwd)
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    for m in SANITIZER_MARKERS:
        assert m not in err, "sanitizer report from tbgw %s:\n%s" % (" ".join(args), err)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# ---- responses --------------------------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    @property
    def content_type(self):
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers, self.body[:400])


def assert_problem(resp, status, type_suffix=None):
    """The answer is an RFC 9457 problem with the given status; returns it."""
    assert resp.status == status, resp
    assert resp.content_type == "application/problem+json", resp
    p = resp.json()
    for k in ("type", "title", "status", "detail"):
        assert k in p, "problem without %r: %r" % (k, p)
    assert isinstance(p["type"], str) and p["type"], p
    assert isinstance(p["title"], str) and p["title"], p
    assert isinstance(p["detail"], str) and p["detail"], p
    assert p["status"] == status, p
    if type_suffix is not None:
        assert p["type"].endswith(type_suffix), p
    return p


class RawConn:
    """A raw TCP connection with an HTTP/1.1 response reader."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no data before the deadline")
        self.sock.settimeout(remaining)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self.buf += chunk

    def read_response(self, timeout=None, head=False):
        """Reads one response (status, headers, Content-Length or chunked body)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3}) ?(.*)$", lines[0])
        assert m, "bad status line %r" % lines[0]
        status = int(m.group(1))
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        resp = Response(status, m.group(2), headers, b"")
        if head or status in (100, 204, 304) or 100 <= status < 200:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill(deadline)
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill(deadline)
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
            resp.body = body
            return resp
        cl = resp.header("content-length")
        assert cl is not None, "response without Content-Length or chunked: %r" % resp
        n = int(cl)
        while len(self.buf) < n:
            self._fill(deadline)
        resp.body, self.buf = self.buf[:n], self.buf[n:]
        return resp

    def wait_closed(self, timeout):
        """True if the server closes (EOF or reset) within timeout, discarding
        any bytes it sends before that."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            r, _, _ = select.select([self.sock], [], [], remaining)
            if not r:
                return False
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True
            self.buf += chunk

    def readable_within(self, timeout):
        if self.buf:
            return True
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def request_bytes(method, path, body=None, headers=None, token=TOKEN, content_type=None,
                  host="127.0.0.1"):
    """The bytes of one HTTP/1.1 request (Content-Length set for a body)."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    if token is not None:
        lines.append("Authorization: Bearer %s" % token)
    if body is not None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        lines.append("Content-Type: %s" % (content_type or "application/json"))
        lines.append("Content-Length: %d" % len(body))
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# ---- the gateway ----------------------------------------------------------------

class Gateway:
    """One tbgw daemon on a temporary directory (see the module comment)."""

    def __init__(self, config=None, workdir=None, name="gw"):
        self.dir = workdir or tempfile.mkdtemp(prefix="tbgw-it-%s-" % name)
        self._own_dir = workdir is None
        self.config = merge(default_config(), config or {})
        self.config_path = os.path.join(self.dir, "tbgw.json")
        self.proc = None
        self.port = None
        self.stopping = False
        self.runs = 0
        self.stderr_paths = []
        self.exit_codes = []
        self.write_config()

    # configuration

    def write_config(self, config=None):
        if config is not None:
            self.config = config
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(self.config, f, ensure_ascii=False, indent=2)

    # process lifecycle

    def start(self, timeout=15.0):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.runs += 1
        self.stopping = False
        path = os.path.join(self.dir, "stderr-%d.log" % self.runs)
        self.stderr_paths.append(path)
        self._err = open(path, "wb")
        lf = self.log_file()
        offset = os.path.getsize(lf) if lf and os.path.exists(lf) else 0
        self.proc = subprocess.Popen([TBGW_BIN, "serve", "-c", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._err,
                                     stderr=self._err, env=child_env(), cwd=self.dir)
        self._err.close()
        self.port = self._wait_started(lf or path, offset if lf else 0, timeout)
        return self

    def log_file(self):
        """The configured log.file resolved against the config's directory,
        or None when the log goes to stderr."""
        f = self.config.get("log", {}).get("file", "-")
        if f == "-":
            return None
        return f if os.path.isabs(f) else os.path.join(self.dir, f)

    def log_sources(self):
        out = list(self.stderr_paths)
        lf = self.log_file()
        if lf and os.path.exists(lf):
            out.append(lf)
        return out

    def _wait_started(self, path, seen, timeout):
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            if os.path.exists(path):
                with open(path, "rb") as f:
                    f.seek(seen)  # a log file shared by several runs: only this run's lines
                    text = f.read().decode("utf-8", "replace")
            for line in text.splitlines():
                try:
                    o = json.loads(line)
                except ValueError:
                    continue
                if isinstance(o, dict) and o.get("event") == "gateway.started":
                    port = o.get("port")
                    assert isinstance(port, int) and 0 < port < 65536, line
                    return port
            if self.proc.poll() is not None:
                raise AssertionError("tbgw exited with %d before gateway.started:\n%s\n%s"
                                     % (self.proc.returncode, text, self.log_text()[-4000:]))
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        raise AssertionError("no gateway.started line within %.0f s:\n%s" % (timeout, text))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT):
            self.stopping = True
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=30.0):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("tbgw did not exit within %.0f s" % timeout)
        self.exit_codes.append(rc)
        return rc

    def stop(self, timeout=30.0, expect_rc=0):
        """SIGTERM, wait, assert the exit status; then check the log. A
        daemon already told to stop is only waited for: a second SIGTERM
        while it exits is not what this checks."""
        if not self.stopping:
            self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        self.check_log()
        if expect_rc is not None:
            assert rc == expect_rc, "tbgw exited with %d after SIGTERM:\n%s" % (
                rc, self.log_text()[-4000:])
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.exit_codes.append(self.proc.returncode)

    def restart(self):
        if self.running():
            self.stop()
        return self.start()

    def close(self):
        """Teardown: kill if still running, remove the directory unless asked
        to keep it (TBGW_KEEP_DIRS=1)."""
        if self.running():
            self.proc.kill()
            self.proc.wait()
        if self._own_dir and os.environ.get("TBGW_KEEP_DIRS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    # logs

    def log_text(self):
        parts = []
        for p in self.log_sources():
            with open(p, "rb") as f:
                parts.append(f.read().decode("utf-8", "replace"))
        return "".join(parts)

    def check_log(self):
        """Every stderr line of every run is a JSON object with ts/level/event,
        and no sanitizer report is present. Returns the parsed lines."""
        text = self.log_text()
        for m in SANITIZER_MARKERS:
            assert m not in text, "sanitizer report in tbgw's stderr:\n%s" % text[-8000:]
        out = []
        for raw in self.log_sources():
            with open(raw, "rb") as f:
                data = f.read()
            lines = data.split(b"\n")
            for i, line in enumerate(lines):
                if line == b"" and i == len(lines) - 1:
                    continue
                try:
                    o = json.loads(line.decode("utf-8"))
                except (ValueError, UnicodeDecodeError) as e:
                    raise AssertionError("stderr line %d of %s is not JSON (%s): %r"
                                         % (i + 1, os.path.basename(raw), e, line[:300]))
                assert isinstance(o, dict), line
                for k in ("ts", "level", "event"):
                    assert k in o, "log line without %r: %r" % (k, line)
                assert isinstance(o["ts"], str) and TS_RE.match(o["ts"]), o
                assert o["level"] in LEVELS, o
                assert isinstance(o["event"], str) and o["event"], o
                out.append(o)
        return out

    def events_named(self, name):
        return [o for o in self.check_log() if o.get("event") == name]

    # requests

    def conn(self, timeout=30.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, token=TOKEN, timeout=30.0,
                conn=None, content_type="application/json"):
        """One request with http.client; a new connection unless conn is given."""
        h = {}
        if token is not None:
            h["Authorization"] = "Bearer %s" % token
        if body is not None:
            if isinstance(body, (dict, list)):
                body = body_of(body)
            elif isinstance(body, str):
                body = body.encode("utf-8")
            if content_type is not None:
                h["Content-Type"] = content_type
        h.update(headers or {})
        own = conn is None
        c = conn or self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return Response(r.status, r.reason, r.getheaders(), data)
        finally:
            if own:
                c.close()

    def post_case(self, case, **kw):
        return self.request("POST", "/v1/cases", body=case, **kw)

    def get_case(self, case_id, **kw):
        return self.request("GET", "/v1/cases/%s" % case_id, **kw)

    def events(self, after=0, limit=None, wait=None, **kw):
        q = "after=%d" % after
        if limit is not None:
            q += "&limit=%d" % limit
        if wait is not None:
            q += "&wait=%d" % wait
        return self.request("GET", "/v1/events?" + q, **kw)

    def all_events(self, after=0):
        """Pages through the feed; returns (events, final cursor)."""
        out = []
        while True:
            r = self.events(after=after, limit=1000)
            assert r.status == 200, r
            page = r.json()
            out.extend(page["events"])
            if not page["events"]:
                return out, page["next_after"]
            after = page["next_after"]

    def raw(self, timeout=10.0):
        return RawConn(self.port, timeout)

    def healthy(self):
        r = self.request("GET", "/healthz", token=None, timeout=10)
        return r.status == 200


# ---- Prometheus text exposition -------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE_RE = re.compile(r"^(%s)(\{(.*)\})? (\S+)( -?\d+)?$" % _NAME)
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')


def _parse_value(s):
    if s in ("+Inf", "Inf"):
        return float("inf")
    if s == "-Inf":
        return float("-inf")
    if s == "NaN":
        return float("nan")
    assert re.match(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$", s), "bad sample value %r" % s
    return float(s)


def _parse_labels(s):
    labels = {}
    pos = 0
    while pos < len(s):
        m = _LABEL_RE.match(s, pos)
        assert m, "bad label set {%s}" % s
        name, val = m.group(1), m.group(2)
        assert name not in labels, "label %s twice in {%s}" % (name, s)
        labels[name] = re.sub(r"\\(.)", lambda x: {"n": "\n"}.get(x.group(1), x.group(1)), val)
        pos = m.end()
        if m.group(3) == "":
            break
    return labels


def parse_prometheus(text):
    """Strict parser of the text exposition format (0.0.4). Returns
    {family: {"type", "help", "samples": [(name, labels dict, value)]}} and
    asserts: every line is a comment or a sample; HELP/TYPE of a family come
    before its samples and at most once; a family's samples are contiguous;
    no series twice; counters are >= 0; histograms have monotonic cumulative
    buckets, a +Inf bucket equal to _count, and a _sum."""
    assert text.endswith("\n"), "exposition must end with a newline"
    families = {}
    finished = set()
    current = None
    seen_series = set()

    def family_of(name):
        if name in families:
            return name
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and name[:-len(suf)] in families:
                base = name[:-len(suf)]
                if families[base]["type"] in ("histogram", "summary"):
                    return base
        return None

    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        assert line != "", "empty line %d" % lineno
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                assert len(parts) >= 3 and re.match("^%s$" % _NAME, parts[2]), line
                name = parts[2]
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                assert name not in finished, "%s declared again after its samples" % name
                assert not fam["samples"], "%s %s after its samples" % (parts[1], name)
                if parts[1] == "HELP":
                    assert fam["help"] is None, "HELP %s twice" % name
                    fam["help"] = parts[3] if len(parts) > 3 else ""
                else:
                    assert fam["type"] is None, "TYPE %s twice" % name
                    assert len(parts) == 4 and parts[3] in (
                        "counter", "gauge", "histogram", "summary", "untyped"), line
                    fam["type"] = parts[3]
                if current is not None and current != name:
                    finished.add(current)
                current = name
            continue
        m = _SAMPLE_RE.match(line)
        assert m, "line %d is neither a comment nor a sample: %r" % (lineno, line)
        name, labels = m.group(1), _parse_labels(m.group(3) or "")
        value = _parse_value(m.group(4))
        fam = family_of(name)
        assert fam is not None, "sample %s before its # TYPE line" % name
        assert families[fam]["type"] is not None, "sample %s before its # TYPE line" % name
        assert fam not in finished, "samples of %s are not contiguous" % fam
        if current is not None and current != fam:
            finished.add(current)
        current = fam
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen_series, "series %s%r twice" % (name, labels)
        seen_series.add(key)
        families[fam]["samples"].append((name, labels, value))

    for fname, fam in families.items():
        assert fam["type"] is not None, "%s has HELP but no TYPE" % fname
        if fam["type"] == "counter":
            for n, l, v in fam["samples"]:
                assert v >= 0, "counter %s%r is negative" % (n, l)
        if fam["type"] == "histogram":
            groups = {}
            for n, l, v in fam["samples"]:
                rest = tuple(sorted((k, x) for k, x in l.items() if k != "le"))
                g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
                if n == fname + "_bucket":
                    assert "le" in l, "bucket without le: %s%r" % (n, l)
                    g["buckets"].append((_parse_value(l["le"]), v))
                elif n == fname + "_sum":
                    g["sum"] = v
                elif n == fname + "_count":
                    g["count"] = v
                else:
                    raise AssertionError("unexpected sample %s in histogram %s" % (n, fname))
            for rest, g in groups.items():
                b = g["buckets"]
                assert b, "histogram %s%r has no buckets" % (fname, rest)
                les = [x[0] for x in b]
                assert les == sorted(les) and len(set(les)) == len(les), \
                    "buckets of %s%r not in increasing le order" % (fname, rest)
                assert les[-1] == float("inf"), "histogram %s%r has no +Inf bucket" % (fname, rest)
                counts = [x[1] for x in b]
                assert all(a <= c for a, c in zip(counts, counts[1:])), \
                    "buckets of %s%r are not cumulative: %r" % (fname, rest, counts)
                assert g["count"] is not None and g["sum"] is not None, \
                    "histogram %s%r lacks _count or _sum" % (fname, rest)
                assert g["count"] == counts[-1], \
                    "%s_count %r != +Inf bucket %r" % (fname, g["count"], counts[-1])
    return families


def metric_value(families, name, **labels):
    """The value of sample `name` with exactly these labels, or None."""
    for fam in families.values():
        for n, l, v in fam["samples"]:
            if n == name and l == labels:
                return v
    return None
