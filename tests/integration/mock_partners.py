"""The independent mock partner platforms (tests/partners, Node.js) for the
integration tests, and a client for their control API.

`MockPartner` starts one mock (`lu-xml-partner.js` or `yue-json-partner.js`)
with the development PKI the harness makes (tbgw_harness.ensure_pki()), on a
free port (`--port 0`, read back from the JSON "ready" line on stdout), and
with the gateway's partner listener as `--gateway-url` when it is known.
After the first start the ports are fixed, so `stop()` / `kill()` then
`start()` brings the "same platform" back on the same address (a partner
outage). The mock's request log (stderr) goes to a file in its work
directory; `log_text()` reads it.

The control API (README.md of tests/partners) is wrapped one method per
route: `received()`, `cases()`, `script(...)`, `reset()`, `send_status()`,
`send_case()`, `send_message()`, `send_raw()`, `replay()`.

Helpers read what the mock received (`record_*`): the message id, type and
case id of a request, also for requests the mock did not process (scripted
`code` faults, transport faults): lu-xml's MessageId is read from the raw
XML, yue-json's msgId from the (unencrypted) envelope; a yue-json case id is
only known once the envelope was opened, so `attempts()` maps message ids to
case ids over the whole list.

`gateway_partners_config(mocks, ...)` builds the `partners` (and
`partner_api`) sections of a gateway configuration whose partners point at
the mocks: endpoint https://127.0.0.1:<port>, tls.ca = the partner's CA, our
client certificate, tls.client_ca for inbound, keys and app ids as in
examples/tbgw.json, and short delivery timeouts for tests.

Only the Python standard library is used.
"""

import atexit
import base64
import ctypes
import datetime
import http.client
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time

import tbgw_harness as h

PARTNERS_DIR = os.path.join(h.REPO_ROOT, "tests", "partners")
NODE = os.environ.get("TB_NODE") or shutil.which("node") or "node"

SCRIPTS = {"lu-xml": "lu-xml-partner.js", "yue-json": "yue-json-partner.js"}

# The demo partners: name → (adapter, region).
DEMO = {
    "laizhou": ("lu-xml", "370683"),
    "zhaoyuan": ("lu-xml", "370685"),
    "wujiang": ("yue-json", "440203"),
}

# Delivery settings for tests: short time-outs and back-off so that retry
# scenarios finish in seconds (docs/configuration.md, partners[].delivery).
TEST_DELIVERY = {
    "max_in_flight": 8,
    "connect_timeout_ms": 1000,
    "timeout_ms": 3000,
    "max_attempts": 40,
    "backoff_initial_ms": 100,
    "backoff_max_ms": 1000,
    "circuit_failures": 5,
    "circuit_open_ms": 500,
}

# Busy / stale / permanent codes of the two partner documents.
BUSY = {"lu-xml": "5001", "yue-json": "5030"}
OK_CODES = ("0000", "0001")


class ControlError(AssertionError):
    pass


def wait_until(pred, timeout, what, interval=0.05):
    """Polls pred() until it returns a true value (returned) or the deadline
    passes (AssertionError naming `what`; a callable is called for the
    message so that it can show the state at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (
                timeout, what() if callable(what) else what))
        time.sleep(interval)


_live = set()  # started mocks, killed at exit if a test run dies without its teardown


@atexit.register
def _kill_leftovers():
    for m in list(_live):
        m.kill()


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies (Linux
    PR_SET_PDEATHSIG), so that no mock outlives a killed test run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class MockPartner:
    """One mock partner platform process (see the module comment)."""

    def __init__(self, name, adapter=None, region=None, pki=None, gateway_url=None,
                 extra_args=(), workdir=None, quiet=False):
        if adapter is None:
            adapter = DEMO[name][0]
        if region is None and name in DEMO:
            region = DEMO[name][1]
        self.name = name
        self.adapter = adapter
        self.region = region
        self.pki = pki or h.ensure_pki()
        self.gateway_url = gateway_url
        self.extra_args = list(extra_args)
        self.quiet = quiet
        self.dir = workdir or tempfile.mkdtemp(prefix="tbgw-mock-%s-" % name)
        self._own_dir = workdir is None
        self.port = 0
        self.control_port = 0
        self.proc = None
        self.runs = 0
        self.stderr_paths = []

    # ---- process ---------------------------------------------------------------

    def args(self):
        a = [NODE, os.path.join(PARTNERS_DIR, SCRIPTS[self.adapter]),
             "--pki", self.pki, "--partner", self.name,
             "--port", str(self.port), "--control-port", str(self.control_port)]
        if self.region:
            a += ["--region", self.region]
        if self.gateway_url:
            a += ["--gateway-url", self.gateway_url]
        if self.quiet:
            a.append("--quiet")
        return a + self.extra_args

    def spawn(self):
        """Starts the process without waiting for it (see wait_ready)."""
        assert not self.running(), "mock %s already running" % self.name
        self.runs += 1
        path = os.path.join(self.dir, "stderr-%d.log" % self.runs)
        self.stderr_paths.append(path)
        err = open(path, "wb")
        try:
            self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=err, cwd=PARTNERS_DIR,
                                         preexec_fn=_die_with_parent)
        finally:
            err.close()
        _live.add(self)
        self._out = b""
        return self

    def wait_ready(self, timeout=30.0):
        """Reads stdout up to the JSON "ready" line; fixes the ports."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            for line in self._out.split(b"\n")[:-1]:
                try:
                    o = json.loads(line.decode("utf-8"))
                except ValueError:
                    continue
                if isinstance(o, dict) and o.get("event") == "ready":
                    self.port = int(o["port"])
                    self.control_port = int(o["control_port"])
                    self.ready_line = o
                    return self
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()
                raise AssertionError("mock %s (%s) not ready (exit %r):\nstdout %r\nstderr %s" % (
                    self.name, self.adapter, self.proc.returncode, self._out,
                    self.log_text()[-3000:]))
            r, _, _ = select.select([fd], [], [], min(remaining, 0.2))
            if r:
                chunk = os.read(fd, 65536)
                if chunk:
                    self._out += chunk

    def start(self, timeout=30.0):
        """Starts (or restarts on the same ports) and waits for "ready"."""
        self.spawn()
        return self.wait_ready(timeout)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        """SIGTERM; the mocks exit 0 on it."""
        if not self.running():
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("mock %s did not exit on SIGTERM" % self.name)
        self._close_stdout()
        _live.discard(self)
        return rc

    def kill(self):
        if self.running():
            self.proc.kill()
            self.proc.wait()
        self._close_stdout()
        _live.discard(self)

    def _close_stdout(self):
        if self.proc is not None and self.proc.stdout is not None:
            try:
                self.proc.stdout.close()
            except OSError:
                pass

    def close(self):
        self.kill()
        if self._own_dir and os.environ.get("TBGW_KEEP_DIRS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        out = []
        for p in self.stderr_paths:
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "".join(out)

    @property
    def endpoint(self):
        assert self.port, "mock %s has not been started" % self.name
        return "https://127.0.0.1:%d" % self.port

    # ---- control API -------------------------------------------------------------

    def control(self, method, path, body=None, timeout=60.0, expect=200):
        c = http.client.HTTPConnection("127.0.0.1", self.control_port, timeout=timeout)
        try:
            data = None
            headers = {}
            if body is not None:
                data = json.dumps(body, ensure_ascii=False).encode("utf-8")
                headers["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
        finally:
            c.close()
        try:
            out = json.loads(raw.decode("utf-8"))
        except ValueError:
            raise ControlError("mock %s %s %s: not JSON (%d): %r" % (
                self.name, method, path, r.status, raw[:300]))
        if expect is not None and r.status != expect:
            raise ControlError("mock %s %s %s: HTTP %d %r" % (self.name, method, path, r.status, out))
        return out

    def health(self):
        return self.control("GET", "/health")

    def received(self, since=None, accepted=None):
        q = []
        if since is not None:
            q.append("since=%d" % since)
        if accepted is not None:
            q.append("accepted=%d" % (1 if accepted else 0))
        return self.control("GET", "/received" + ("?" + "&".join(q) if q else ""))

    def cases(self):
        return self.control("GET", "/cases")

    def sent(self):
        return self.control("GET", "/sent")

    def script(self, *faults, replace=False):
        """Queues faults (each a dict: kind, count, ...) in order."""
        return self.control("POST", "/script", {"faults": list(faults), "replace": replace})

    def faults_left(self):
        return self.control("GET", "/script")

    def reset(self):
        return self.control("POST", "/reset", {})

    def send_status(self, case_id, status, **kw):
        b = dict(kw)
        b.update({"case_id": case_id, "status": status})
        return self.control("POST", "/send-status", b)

    def send_case(self, case, options=None):
        return self.control("POST", "/send-case", {"case": case, "options": options or {}})

    def send_message(self, **kw):
        return self.control("POST", "/send-message", kw)

    def send_raw(self, **kw):
        return self.control("POST", "/send-raw", kw)

    def replay(self, index=None):
        return self.control("POST", "/replay", {} if index is None else {"index": index})

    # ---- what was received ---------------------------------------------------------

    def attempts(self, case_id=None, msg_type=None, records=None):
        """Requests to the partner endpoint that carried a message (of this
        case / type), in arrival order."""
        recs = self.received() if records is None else records
        ids = message_case_map(recs)
        out = []
        for r in recs:
            mid = record_message_id(r)
            if mid is None:
                continue
            if msg_type is not None and record_message_type(r) != msg_type:
                continue
            if case_id is not None and (record_case_id(r) or ids.get(mid)) != case_id:
                continue
            out.append(r)
        return out


# ---- reading records of GET /received ------------------------------------------

_LU_ID = re.compile(r"<(?:\w+:)?MessageId>\s*([^<\s]*)\s*</(?:\w+:)?MessageId>")
_LU_TYPE = re.compile(r"<(?:\w+:)?MessageType>\s*([^<\s]*)\s*</(?:\w+:)?MessageType>")
_LU_CASE = re.compile(r"<(?:\w+:)?ShenBanHao>\s*([^<\s]*)\s*</(?:\w+:)?ShenBanHao>")
_LU_SENDTIME = re.compile(r"<(?:\w+:)?SendTime>\s*([^<]*?)\s*</(?:\w+:)?SendTime>")
_LU_SIGVAL = re.compile(r"<(?:\w+:)?SignatureValue[^>]*>([^<]*)</(?:\w+:)?SignatureValue>")


def _is_lu(rec):
    raw = rec.get("raw")
    return isinstance(raw, str) and raw.lstrip().startswith("<")


def _envelope(rec):
    raw = rec.get("raw")
    if not isinstance(raw, str):
        return None
    try:
        o = json.loads(raw)
    except ValueError:
        return None
    return o if isinstance(o, dict) else None


def record_message_id(rec):
    """MessageId / msgId of a received request (lower-cased), or None."""
    m = rec.get("message") or {}
    if isinstance(m.get("header"), dict) and m["header"].get("message_id"):
        return m["header"]["message_id"].lower()
    if m.get("msg_id"):
        return m["msg_id"].lower()
    if _is_lu(rec):
        x = _LU_ID.search(rec["raw"])
        return x.group(1).lower() if x and x.group(1) else None
    env = _envelope(rec)
    if env and isinstance(env.get("msgId"), str):
        return env["msgId"].lower()
    return None


def record_message_type(rec):
    m = rec.get("message") or {}
    if isinstance(m.get("header"), dict) and m["header"].get("message_type"):
        return m["header"]["message_type"]
    if m.get("msg_type"):
        return m["msg_type"]
    if _is_lu(rec):
        x = _LU_TYPE.search(rec["raw"])
        return x.group(1) if x else None
    env = _envelope(rec)
    if env and isinstance(env.get("msgType"), str):
        return env["msgType"]
    return None


def record_case_id(rec):
    """The case id if the mock could read it (yue-json: envelope opened)."""
    m = rec.get("message") or {}
    body = m.get("body") or m.get("view")
    if isinstance(body, dict) and body.get("case_id"):
        return body["case_id"]
    biz = m.get("biz")
    if isinstance(biz, dict) and isinstance(biz.get("applyNo"), str):
        return biz["applyNo"]
    if _is_lu(rec):
        x = _LU_CASE.search(rec["raw"])
        return x.group(1) if x else None
    return None


def record_view(rec):
    """The mock's canonical-ish view of the message body (lu-xml `body`,
    yue-json `view`), or None."""
    m = rec.get("message") or {}
    return m.get("body") or m.get("view")


def record_code(rec):
    a = rec.get("answer") or {}
    return a.get("code")


def record_receipt(rec):
    """The receipt number in the mock's answer (lu-xml ReceiptNo, yue-json
    data.receiptNo), or None."""
    a = rec.get("answer") or {}
    if a.get("receipt_no"):
        return a["receipt_no"]
    d = a.get("data")
    if isinstance(d, dict) and d.get("receiptNo"):
        return d["receiptNo"]
    return None


def record_http_status(rec):
    return (rec.get("answer") or {}).get("http_status")


def record_time(rec):
    """received_at as a Unix time (float seconds)."""
    s = rec["received_at"]
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def record_send_time(rec):
    """lu-xml: SendTime (Beijing, second resolution) as a Unix time."""
    x = _LU_SENDTIME.search(rec.get("raw") or "")
    if not x:
        return None
    t = datetime.datetime.strptime(x.group(1), "%Y-%m-%d %H:%M:%S")
    return t.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=8))).timestamp()


def record_signature(rec):
    """The signature value of the request: lu-xml SignatureValue, yue-json
    X-GD-Signature."""
    if _is_lu(rec):
        x = _LU_SIGVAL.search(rec.get("raw") or "")
        return re.sub(r"\s+", "", x.group(1)) if x else None
    return (rec.get("headers") or {}).get("x-gd-signature")


def record_header(rec, name):
    return (rec.get("headers") or {}).get(name.lower())


def message_case_map(records):
    """message id → case id, from every record whose case id is known."""
    out = {}
    for r in records:
        mid = record_message_id(r)
        cid = record_case_id(r)
        if mid and cid:
            out.setdefault(mid, cid)
    return out


def accepted_submits(records):
    return [r for r in records if r.get("accepted") and record_message_type(r) == "CASE_SUBMIT"]


# ---- gateway configuration --------------------------------------------------------

def partner_entry(mock, pki=None, delivery=None):
    """One element of the gateway's `partners` pointing at `mock`."""
    pki = pki or mock.pki
    d = dict(TEST_DELIVERY)
    d.update(delivery or {})
    e = {"name": mock.name, "adapter": mock.adapter, "regions": [mock.region],
         "endpoint": mock.endpoint, "tls": h.partner_tls(mock.name, pki), "delivery": d}
    if mock.adapter == "lu-xml":
        e["keys"] = {"sign": "gw-rsa", "peer_ca": "%s-ca" % mock.name}
    else:
        e["app_id"] = "YY-YUNXI-001"
        e["peer_app_id"] = "GD-WJ-TB"
        e["keys"] = {"sign": "gw-sm2", "decrypt": "gw-sm2", "peer": "%s-sm2-pub" % mock.name}
    return e


def gateway_partners_config(mocks, partner_port=None, delivery=None, per_partner=None, pki=None):
    """Config overrides for tbgw_harness.Gateway: `partners` pointing at the
    mocks (in the order given) and, with partner_port, a `partner_api`
    listener on 127.0.0.1:partner_port with the gateway's TLS server
    certificate. `delivery` overrides TEST_DELIVERY for every partner,
    `per_partner` {name: {delivery keys}} for one."""
    pki = pki or h.ensure_pki()
    parts = []
    for m in mocks:
        d = dict(delivery or {})
        d.update((per_partner or {}).get(m.name, {}))
        parts.append(partner_entry(m, pki, d))
    # These scenarios poll the API in tight loops while the daemon is slowed
    # by ASan; the per-client rate limit (tested in test_limits.py) would turn
    # polling into 429s, so it is off here.
    cfg = {"partners": parts, "local_api": {"rate_limit": {"requests_per_s": 0}}}
    if partner_port:
        cfg["partner_api"] = {
            "listen": "127.0.0.1:%d" % partner_port,
            "tls": {"certificate": os.path.join(pki, "gateway", "tls-server.pem"),
                    "private_key": os.path.join(pki, "gateway", "tls-server.key")},
        }
    return cfg


class PartnerSet(dict):
    """name → MockPartner, plus the partner listener port the gateway is
    configured with (so that the mocks' --gateway-url is right)."""

    def __init__(self, partner_port, pki):
        super().__init__()
        self.partner_port = partner_port
        self.pki = pki

    @property
    def gateway_url(self):
        return "https://127.0.0.1:%d" % self.partner_port

    def config(self, delivery=None, per_partner=None, extra=None):
        cfg = gateway_partners_config(list(self.values()), self.partner_port, delivery,
                                      per_partner, self.pki)
        return h.merge(cfg, extra or {})

    def by_region(self, region):
        for m in self.values():
            if m.region == region:
                return m
        raise KeyError(region)

    def for_case(self, case):
        return self.by_region(case["target_region"])

    def close(self):
        for m in self.values():
            m.close()


def start_partners(names=("laizhou", "zhaoyuan", "wujiang"), partner_port=None, pki=None):
    """Starts the named demo mocks in parallel; returns a PartnerSet."""
    pki = pki or h.ensure_pki()
    ps = PartnerSet(partner_port or h.free_port(), pki)
    try:
        for n in names:
            ps[n] = MockPartner(n, pki=pki, gateway_url=ps.gateway_url).spawn()
        for m in ps.values():
            m.wait_ready()
    except BaseException:
        ps.close()
        raise
    return ps


# ---- evidence ----------------------------------------------------------------------

def texts_in(obj):
    """Every string inside a JSON value, and the UTF-8 text of every string
    that is canonical base64 (evidence may carry raw bytes base64-encoded)."""
    out = []

    def walk(v):
        if isinstance(v, str):
            out.append(v)
            if len(v) >= 8 and len(v) % 4 == 0 and re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", v):
                try:
                    out.append(base64.b64decode(v, validate=True).decode("utf-8", "replace"))
                except ValueError:
                    pass
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(obj)
    return out
