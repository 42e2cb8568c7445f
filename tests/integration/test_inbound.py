"""The partner listener (gateway/src/inbound/, docs/inbound.md) against the
independent mock partners (tests/partners) as senders, over mutual TLS.

One gateway and the three demo mocks (laizhou, zhaoyuan: lu-xml; wujiang:
yue-json) serve the whole module; every test makes its own case ids, and
every refusal is checked to leave no state behind: the event feed has no new
event, the case keeps its status.

What is proved:
* a signed STATUS_NOTIFY for one of our cases is answered 0000 with an
  acknowledgement the mock verifies (XML-DSig / SM2 headers), the case takes
  the canonical status with opinion/supplement in its timeline, and the feed
  has the event; every status code of both documents' tables maps to the
  right canonical status;
* duplicate message id → 0001, no event; reused nonce → 4012; stale
  SendTime → 1005, stale timestamp → 4011; tampered, unsigned, badly signed
  → 1001 / 4010; undecryptable envelope → 4020; unknown case → 1002 / 4001;
* a partner's own CASE_SUBMIT → 0000 with our receipt number, readable at
  GET /v1/inbound/{id} in canonical form, an inbound.case event in the feed;
  POST /v1/inbound/{id}/status queues a STATUS_NOTIFY (and, once the
  delivery engine runs, the mock receives it);
* TLS: another partner's client certificate → 403, none → handshake
  refused, one from an unknown CA → refused; routes: 404 / 405;
* DTD and billion laughs → HTTP 400 fast, nothing expanded;
* tbgw_inbound_messages_total counts each result; the logs name reasons.
"""

import http.client
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import uuid

import pytest

import tbgw_harness as h
import mock_partners as mp

OUR_REGION = "430603"
RECEIPT_RE = re.compile(r"^%s-SL-\d{8}-\d{6,}$" % OUR_REGION)

LU_STATUS = {"01": "accepted", "02": "rejected", "03": "supplement_required",
             "04": "in_progress", "05": "approved", "06": "denied", "07": "withdrawn",
             "08": "result_shipped"}
YUE_STATUS = {"ACCEPT": "accepted", "REJECT": "rejected", "SUPPLEMENT": "supplement_required",
              "PROCESSING": "in_progress", "FINISH_PASS": "approved", "FINISH_FAIL": "denied",
              "WITHDRAW": "withdrawn", "EXPRESS": "result_shipped"}


# ---- fixtures ------------------------------------------------------------------------

class Env:
    def __init__(self, gw, mocks):
        self.gw = gw
        self.mocks = mocks
        self.partner_port = mocks.partner_port

    def mock(self, name):
        return self.mocks[name]


@pytest.fixture(scope="module")
def env():
    mocks = mp.start_partners()
    gw = h.Gateway(config=mocks.config(), name="inbound")
    try:
        gw.start()
        yield Env(gw, mocks)
        gw.stop()
    finally:
        gw.close()
        mocks.close()


# ---- helpers -------------------------------------------------------------------------

_n = [0]


def new_case_id(prefix=OUR_REGION):
    _n[0] += 1
    return "%s-%s-%06d" % (prefix, time.strftime("%Y%m%d"), (os.getpid() * 1000 + _n[0]) % 1000000)


def delivery_runs(env):
    return any(o.get("event") == "delivery.started" for o in env.gw.check_log())


def settled(env):
    """The status our cases rest in before a partner reports on them:
    delivered once the delivery engine has taken them to the mock, queued
    in a build without the engine."""
    return "delivered" if delivery_runs(env) else "queued"


def our_case(env, partner):
    """Posts one of our cases routed to partner and waits until it rests
    (settled()), so that the delivery's own events are behind us; returns
    its case_id."""
    region = mp.DEMO[partner][1]
    c = h.sample(0)
    c["case_id"] = new_case_id()
    c["target_region"] = region
    r = env.gw.post_case(c)
    assert r.status == 202, r
    want = settled(env)
    mp.wait_until(lambda: case_status(env, c["case_id"])["status"] == want, 30,
                  "case %s %s" % (c["case_id"], want))
    return c["case_id"]


def last_seq(env):
    """The feed's last sequence number (its cursor after paging through)."""
    _, cursor = env.gw.all_events(after=0)
    return cursor


def case_status(env, case_id):
    r = env.gw.get_case(case_id)
    assert r.status == 200, r
    return r.json()


def code_of(out):
    """The partner answer code the mock read from our acknowledgement."""
    assert not out.get("error"), out
    if "ack" in out or "ack_error" in out:
        assert "ack" in out, out
        return out["ack"]["code"]
    assert "answer" in out, out
    return out["answer"]["code"]


def signed_ok(out):
    sig = out.get("signature") or {}
    return sig.get("ok") is True


def assert_signed_code(out, code):
    assert out.get("response", {}).get("http_status") == 200, out
    assert code_of(out) == code, out
    assert signed_ok(out), "our acknowledgement did not verify at the mock: %r" % out.get("signature")


def status_code_for(partner, canonical):
    table = LU_STATUS if mp.DEMO[partner][0] == "lu-xml" else YUE_STATUS
    return [k for k, v in table.items() if v == canonical][0]


def send_status(env, partner, case_id, code, **kw):
    kw.setdefault("receipt_no", "RCPT-%s" % case_id)
    if code in ("03", "SUPPLEMENT"):
        kw.setdefault("supplement", ["结婚证复印件"])
    return env.mock(partner).send_status(case_id, code, **kw)


def metric(env, result, partner):
    r = env.gw.request("GET", "/metrics", token=None)
    assert r.status == 200, r
    fams = h.parse_prometheus(r.body.decode("utf-8"))
    fam = fams.get("tbgw_inbound_messages_total")
    if fam is None:
        return 0.0
    for name, labels, value in fam["samples"]:
        if labels.get("partner") == partner and labels.get("result") == result:
            return value
    return 0.0


def pki(*parts):
    return os.path.join(h.ensure_pki(), *parts)


def tls_context(cert=None, key=None):
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pki("gateway", "ca.pem"))
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def partner_request(env, method, path, body=b"", cert=None, key=None, headers=None,
                    timeout=10):
    """One HTTPS request to the partner listener; returns h.Response."""
    c = http.client.HTTPSConnection("127.0.0.1", env.partner_port, timeout=timeout,
                                    context=tls_context(cert, key))
    try:
        hs = {"Content-Type": "application/xml; charset=UTF-8"}
        hs.update(headers or {})
        c.request(method, path, body=body, headers=hs)
        r = c.getresponse()
        return h.Response(r.status, r.reason, r.getheaders(), r.read())
    finally:
        c.close()


def client_cert(partner):
    return pki("partners", partner, "tls-client.pem"), pki("partners", partner, "tls-client.key")


# ---- status notifications ---------------------------------------------------------------

@pytest.mark.parametrize("partner", ["laizhou", "wujiang"])
def test_signed_status_is_acknowledged_and_recorded(env, partner):
    case_id = our_case(env, partner)
    before = last_seq(env)
    code = status_code_for(partner, "supplement_required")
    out = send_status(env, partner, case_id, code, opinion="请补充结婚证复印件",
                      supplement=["结婚证复印件", "户口簿"])
    assert_signed_code(out, "0000")
    c = case_status(env, case_id)
    assert c["status"] == "supplement_required", c
    last = c["timeline"][-1]
    assert last["status"] == "supplement_required", c
    assert last["detail"]["opinion"] == "请补充结婚证复印件", last
    assert last["detail"]["supplement"] == ["结婚证复印件", "户口簿"], last
    events, _ = env.gw.all_events(after=before)
    mine = [e for e in events if e["case_id"] == case_id]
    assert len(mine) == 1 and mine[0]["status"] == "supplement_required", events
    assert mine[0]["partner"] == partner
    logs = [o for o in env.gw.check_log() if o.get("event") == "inbound.accepted"
            and o.get("case_id") == case_id]
    assert logs and logs[-1]["partner"] == partner and logs[-1]["kind"] == "status", logs


@pytest.mark.parametrize("partner", ["laizhou", "wujiang"])
def test_every_status_code_maps_to_its_canonical_status(env, partner):
    table = LU_STATUS if partner == "laizhou" else YUE_STATUS
    case_id = our_case(env, partner)
    for code, canonical in table.items():
        kw = {}
        if canonical == "result_shipped":
            kw["express_no"] = "SF1234567890"
        out = send_status(env, partner, case_id, code, **kw)
        assert_signed_code(out, "0000")
        c = case_status(env, case_id)
        assert c["status"] == canonical, (code, c)
        if canonical == "result_shipped":
            assert c["timeline"][-1]["detail"]["tracking_no"] == "SF1234567890", c


def test_receipt_number_in_a_status_is_kept(env):
    case_id = our_case(env, "zhaoyuan")
    out = send_status(env, "zhaoyuan", case_id, "01", receipt_no="370685-SL-20240506-0042")
    assert_signed_code(out, "0000")
    assert case_status(env, case_id)["receipt_no"] == "370685-SL-20240506-0042"


@pytest.mark.parametrize("partner,opt", [("laizhou", "message_id"), ("wujiang", "msg_id")])
def test_duplicate_message_id_is_answered_0001_without_a_new_event(env, partner, opt):
    case_id = our_case(env, partner)
    mid = str(uuid.uuid4())
    code = status_code_for(partner, "accepted")
    assert_signed_code(send_status(env, partner, case_id, code, options={opt: mid}), "0000")
    before = last_seq(env)
    ok_before = metric(env, "duplicate", partner)
    # A retry: same message id, fresh time and signature (and for yue-json a fresh nonce).
    code2 = status_code_for(partner, "in_progress")
    out = send_status(env, partner, case_id, code2, options={opt: mid})
    assert_signed_code(out, "0001")
    assert last_seq(env) == before
    assert case_status(env, case_id)["status"] == "accepted"
    assert metric(env, "duplicate", partner) == ok_before + 1


def test_reused_nonce_is_4012_without_state_change(env):
    case_id = our_case(env, "wujiang")
    nonce = uuid.uuid4().hex
    assert_signed_code(send_status(env, "wujiang", case_id, "ACCEPT", options={"nonce": nonce}),
                       "0000")
    before = last_seq(env)
    replays = metric(env, "refused_replay", "wujiang")
    out = send_status(env, "wujiang", case_id, "PROCESSING", options={"nonce": nonce})
    assert_signed_code(out, "4012")
    assert last_seq(env) == before
    assert case_status(env, case_id)["status"] == "accepted"
    assert metric(env, "refused_replay", "wujiang") == replays + 1


def test_exact_replay_changes_nothing(env):
    """The same bytes and headers again (yue-json): the message id is known,
    so the store answers it as a duplicate before it looks at the nonce;
    either way nothing changes."""
    case_id = our_case(env, "wujiang")
    m = env.mock("wujiang")
    assert_signed_code(send_status(env, "wujiang", case_id, "ACCEPT"), "0000")
    before = last_seq(env)
    out = m.replay()
    assert code_of(out) in ("0001", "4012"), out
    assert signed_ok(out), out
    assert last_seq(env) == before


@pytest.mark.parametrize("partner,options,code,result", [
    ("laizhou", {"send_time_offset_s": -400}, "1005", "refused_stale"),
    ("laizhou", {"send_time_offset_s": 400}, "1005", "refused_stale"),
    ("wujiang", {"timestamp_offset_ms": -400000}, "4011", "refused_stale"),
    ("wujiang", {"timestamp_offset_ms": 400000}, "4011", "refused_stale"),
    ("laizhou", {"tamper": True}, "1001", "refused_signature"),
    ("laizhou", {"unsigned": True}, "1001", "refused_signature"),
    ("wujiang", {"tamper": True}, "4010", "refused_signature"),
    ("wujiang", {"unsigned": True}, "4010", "refused_signature"),
    ("wujiang", {"bad_signature": True}, "4010", "refused_signature"),
    ("wujiang", {"app_id": "SOMEONE-ELSE"}, "4010", "refused_signature"),
    ("wujiang", {"garbage_envelope": True}, "4020", "refused_other"),
    ("wujiang", {"encrypt_to_self": True}, "4020", "refused_other"),
])
def test_refusals_are_answered_as_the_document_says_and_change_nothing(env, partner, options,
                                                                       code, result):
    case_id = our_case(env, partner)
    before = last_seq(env)
    counted = metric(env, result, partner)
    status = status_code_for(partner, "approved")
    out = send_status(env, partner, case_id, status, options=options)
    assert_signed_code(out, code)
    assert last_seq(env) == before
    assert case_status(env, case_id)["status"] == settled(env)
    assert metric(env, result, partner) == counted + 1
    refused = [o for o in env.gw.check_log() if o.get("event") == "inbound.refused"
               and o.get("partner") == partner]
    assert refused and refused[-1].get("reason"), refused[-1:]


@pytest.mark.parametrize("partner,code", [("laizhou", "1002"), ("wujiang", "4001")])
def test_status_for_an_unknown_case_is_refused_without_state_change(env, partner, code):
    before = last_seq(env)
    counted = metric(env, "unknown_case", partner)
    out = send_status(env, partner, new_case_id("999999"), status_code_for(partner, "accepted"))
    assert_signed_code(out, code)
    assert last_seq(env) == before
    assert metric(env, "unknown_case", partner) == counted + 1


def test_status_for_another_partners_case_is_unknown(env):
    case_id = our_case(env, "laizhou")  # routed to laizhou, zhaoyuan reports on it
    before = last_seq(env)
    out = send_status(env, "zhaoyuan", case_id, "05")
    assert_signed_code(out, "1002")
    assert last_seq(env) == before
    assert case_status(env, case_id)["status"] == settled(env)


# ---- partners' own cases ----------------------------------------------------------------

def partner_case(partner, sample_index):
    c = h.sample(sample_index)
    region = mp.DEMO[partner][1]
    c["case_id"] = new_case_id(region)
    c["origin_region"] = region
    c["target_region"] = OUR_REGION
    return c


@pytest.mark.parametrize("partner,sample_index", [("laizhou", 0), ("wujiang", 1)])
def test_partners_case_is_accepted_with_our_receipt_and_readable(env, partner, sample_index):
    case = partner_case(partner, sample_index)
    before = last_seq(env)
    out = env.mock(partner).send_case(case)
    assert_signed_code(out, "0000")
    receipt = out["ack"].get("receipt_no") if "ack" in out else out["answer"]["data"]["receiptNo"]
    assert receipt and RECEIPT_RE.match(receipt), out

    r = env.gw.request("GET", "/v1/inbound/%s" % case["case_id"])
    assert r.status == 200, r
    v = r.json()
    assert v["case_id"] == case["case_id"] and v["partner"] == partner, v
    assert v["receipt_no"] == receipt and v["status"] == "received", v
    got = v["case"]
    for k in ("schema", "case_id", "item", "origin_region", "target_region", "form",
              "delivery"):
        assert got[k] == case[k], (k, got[k], case[k])
    assert got["applicant"]["id_number"] == case["applicant"]["id_number"]
    assert [m["sm3"] for m in got["materials"]] == [m["sm3"] for m in case["materials"]]
    assert [e["type"] for e in v["timeline"]] == ["inbound.case"], v["timeline"]

    events, _ = env.gw.all_events(after=before)
    mine = [e for e in events if e["case_id"] == case["case_id"]]
    assert [e["type"] for e in mine] == ["inbound.case"], events
    assert mine[0]["detail"]["receipt_no"] == receipt

    # The same case again under a new message id: the first answer's receipt, nothing new.
    before = last_seq(env)
    again = env.mock(partner).send_case(case)
    assert_signed_code(again, "0001")
    r2 = again["ack"].get("receipt_no") if "ack" in again else again["answer"]["data"]["receiptNo"]
    assert r2 == receipt
    assert last_seq(env) == before


def test_receipt_numbers_are_unique_and_increasing(env):
    receipts = []
    for _ in range(4):
        out = env.mock("laizhou").send_case(partner_case("laizhou", 0))
        assert_signed_code(out, "0000")
        receipts.append(out["ack"]["receipt_no"])
    assert len(set(receipts)) == 4, receipts
    seqs = [int(r.rsplit("-", 1)[1]) for r in receipts if r.split("-")[2] == receipts[0].split("-")[2]]
    assert seqs == sorted(seqs), receipts


def test_inbound_get_unknown_is_404(env):
    r = env.gw.request("GET", "/v1/inbound/%s" % new_case_id("999999"))
    h.assert_problem(r, 404, "inbound-case-not-found")
    r = env.gw.request("GET", "/v1/inbound/x", token=None)
    h.assert_problem(r, 401)


def test_status_report_is_queued_for_the_partner(env):
    case = partner_case("laizhou", 0)
    assert_signed_code(env.mock("laizhou").send_case(case), "0000")
    before = last_seq(env)
    since = max([x["seq"] for x in env.mock("laizhou").received()] or [0])
    r = env.gw.request("POST", "/v1/inbound/%s/status" % case["case_id"],
                       body={"status": "supplement_required", "opinion": "请补充材料",
                             "supplement": ["结婚证复印件"]})
    assert r.status == 202, r
    a = r.json()
    assert a["case_id"] == case["case_id"] and a["status"] == "queued", a
    assert re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
                    a["message_id"]), a
    v = env.gw.request("GET", "/v1/inbound/%s" % case["case_id"]).json()
    assert v["status"] == "supplement_required", v
    st = [e for e in v["timeline"] if e["type"] == "inbound.status"]
    assert st and st[-1]["detail"]["supplement"] == ["结婚证复印件"], v["timeline"]
    assert st[-1]["detail"]["receipt_no"] == v["receipt_no"]
    events, _ = env.gw.all_events(after=before)
    types = [e["type"] for e in events if e["case_id"] == case["case_id"]]
    assert types[:1] == ["inbound.status"], events
    assert set(types) <= {"inbound.status", "inbound.notify"}, events

    if not delivery_runs(env):
        pytest.skip("queued; the delivery engine is not in this build, so nothing sends it yet")
    got = mp.wait_until(lambda: [x for x in env.mock("laizhou").received(since=since)
                                 if mp.record_message_type(x) == "STATUS_NOTIFY"
                                 and mp.record_case_id(x) == case["case_id"]], 30,
                        "the STATUS_NOTIFY at the mock")
    rec = got[-1]
    assert rec["accepted"] and mp.record_code(rec) == "0000", rec
    assert mp.record_message_id(rec) == a["message_id"], rec
    view = mp.record_view(rec)
    assert view["status"] == "supplement_required" and view["receipt_no"] == v["receipt_no"], view
    assert view["supplement"] == ["结婚证复印件"], view
    mp.wait_until(lambda: [e for e in env.gw.request("GET", "/v1/inbound/%s" % case["case_id"])
                           .json()["timeline"] if e["type"] == "inbound.notify"
                           and e["detail"].get("outcome") == "delivered"], 30,
                  "the inbound.notify delivered event")


@pytest.mark.parametrize("body,path", [
    ({"status": "finished"}, "status"),
    ({}, "status"),
    ({"status": "approved", "supplement": ["x"]}, "supplement"),
    ({"status": "supplement_required"}, "supplement"),
    ({"status": "supplement_required", "supplement": [""]}, "supplement[0]"),
    ({"status": "approved", "tracking_no": "SF1"}, "tracking_no"),
    ({"status": "accepted", "licence_no": "L1"}, "licence_no"),
    ({"status": "accepted", "opinion": 5}, "opinion"),
    ({"status": "accepted", "remark": "typo"}, "remark"),
])
def test_status_report_validation(env, body, path):
    case = partner_case("wujiang", 1)
    assert_signed_code(env.mock("wujiang").send_case(case), "0000")
    before = last_seq(env)
    r = env.gw.request("POST", "/v1/inbound/%s/status" % case["case_id"], body=body)
    p = h.assert_problem(r, 422, "invalid-status")
    assert path in [e["path"] for e in p["errors"]], p
    assert last_seq(env) == before


def test_status_report_for_unknown_case_and_bad_bodies(env):
    r = env.gw.request("POST", "/v1/inbound/%s/status" % new_case_id("999999"),
                       body={"status": "accepted"})
    h.assert_problem(r, 404, "inbound-case-not-found")
    r = env.gw.request("POST", "/v1/inbound/x/status", body="{", content_type="application/json")
    h.assert_problem(r, 400, "malformed-json")
    r = env.gw.request("POST", "/v1/inbound/x/status", body="{}", content_type="text/plain")
    h.assert_problem(r, 415)
    r = env.gw.request("GET", "/v1/inbound/x/status")
    h.assert_problem(r, 405)


def test_result_shipped_report_carries_tracking_number(env):
    case = partner_case("wujiang", 1)
    assert_signed_code(env.mock("wujiang").send_case(case), "0000")
    r = env.gw.request("POST", "/v1/inbound/%s/status" % case["case_id"],
                       body={"status": "result_shipped", "tracking_no": "SF1234567890"})
    assert r.status == 202, r
    v = env.gw.request("GET", "/v1/inbound/%s" % case["case_id"]).json()
    d = v["timeline"][-1]["detail"]
    assert d["status"] == "result_shipped" and d["tracking_no"] == "SF1234567890", d
    assert d["licence_no"] is None and d["supplement"] == [], d
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$", d["at"]), d


# ---- TLS and routes -----------------------------------------------------------------------

def test_client_certificate_of_another_partner_is_403(env):
    before = last_seq(env)
    cert, key = client_cert("laizhou")
    r = partner_request(env, "POST", "/partners/wujiang/gateway/tongban/callback", b"{}", cert,
                        key, headers={"Content-Type": "application/json;charset=UTF-8"})
    h.assert_problem(r, 403)
    assert last_seq(env) == before
    refused = [o for o in env.gw.check_log() if o.get("event") == "inbound.refused"
               and o.get("partner") == "wujiang"]
    assert refused[-1]["reason"] == "client certificate not issued by wujiang's CA", refused[-1]
    # and the right one passes the check (the adapter then refuses the empty body)
    cert, key = client_cert("wujiang")
    r = partner_request(env, "POST", "/partners/wujiang/gateway/tongban/callback", b"{}", cert,
                        key, headers={"Content-Type": "application/json;charset=UTF-8"})
    assert r.status == 200 and r.json()["code"] == "4010", r


def handshake_refused(env, cert=None, key=None):
    """True if no HTTP answer can be had: the handshake fails, or (TLS 1.3:
    the client finishes first) the first read gets the server's alert."""
    ctx = tls_context(cert, key)
    s = socket.create_connection(("127.0.0.1", env.partner_port), timeout=10)
    try:
        t = ctx.wrap_socket(s)
        t.sendall(b"POST /partners/laizhou/tongban/v1/notify HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/xml\r\nContent-Length: 0\r\n\r\n")
        data = t.recv(4096)
        return data == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.close()


def test_no_client_certificate_is_refused_in_the_handshake(env):
    assert handshake_refused(env)
    assert not handshake_refused(env, *client_cert("laizhou"))  # the probe can tell


def test_client_certificate_from_an_unknown_ca_is_refused(env, tmp_path):
    d = str(tmp_path)
    run = lambda *a: subprocess.run(a, check=True, cwd=d, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "2", "-subj", "/CN=rogue CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "c.key", "-out", "c.csr",
        "-subj", "/CN=laizhou 370683 client")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    run("openssl", "x509", "-req", "-in", "c.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "c.pem", "-days", "2", "-extfile", "ext")
    assert handshake_refused(env, os.path.join(d, "c.pem"), os.path.join(d, "c.key"))


def test_routes_unknown_partner_path_and_method(env):
    cert, key = client_cert("laizhou")
    r = partner_request(env, "POST", "/partners/nobody/tongban/v1/notify", b"<x/>", cert, key)
    h.assert_problem(r, 404)
    r = partner_request(env, "POST", "/partners/laizhou/tongban/v1/other", b"<x/>", cert, key)
    h.assert_problem(r, 404)
    r = partner_request(env, "POST", "/v1/cases", b"<x/>", cert, key)
    h.assert_problem(r, 404)
    r = partner_request(env, "GET", "/partners/laizhou/tongban/v1/notify", None, cert, key)
    h.assert_problem(r, 405)
    assert r.header("allow") == "POST", r


# ---- hostile XML ----------------------------------------------------------------------------

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<TongbanMessage xmlns="urn:sd:tongban:1.0" version="1.0"><Header><MessageId>&lol9;</MessageId></Header></TongbanMessage>
"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<TongbanMessage xmlns="urn:sd:tongban:1.0" version="1.0"><Header><MessageId>&x;</MessageId></Header></TongbanMessage>
"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
def test_dtds_are_refused_fast(env, xml):
    before = last_seq(env)
    t0 = time.monotonic()
    out = env.mock("laizhou").send_raw(xml=xml, sign=False)
    took = time.monotonic() - t0
    assert out.get("response", {}).get("http_status") == 400, out
    assert "root:" not in out["response"]["body"], out
    assert took < 2.0, took
    assert last_seq(env) == before


# ---- metrics and logs -----------------------------------------------------------------------

def test_metrics_and_logs(env):
    # runs last in file order: every result above has been counted at least once
    for result in ("accepted", "duplicate", "refused_signature", "refused_stale",
                   "unknown_case"):
        assert metric(env, result, "laizhou") >= 1, result
    assert metric(env, "refused_replay", "wujiang") >= 1
    assert metric(env, "refused_other", "wujiang") >= 1
    logs = env.gw.check_log()
    acc = [o for o in logs if o.get("event") == "inbound.accepted"]
    assert acc and all(k in acc[0] for k in ("partner", "message_id", "case_id", "kind",
                                             "outcome")), acc[:1]
    # no personal data of the samples in any inbound log line
    names = {h.sample(i)["applicant"]["name"] for i in range(5)}
    ids = {h.sample(i)["applicant"]["id_number"] for i in range(5)}
    for o in logs:
        if o.get("event", "").startswith("inbound."):
            line = json.dumps(o, ensure_ascii=False)
            for s in names | ids:
                assert s not in line, line


def test_a_connection_reset_while_the_adapter_works_is_harmless(env):
    """The peer resets the connection right after sending: the pipeline
    still runs to its end (the answer is discarded) and nothing leaks or is
    touched after it is gone (the ASan build checks)."""
    cert, key = client_cert("laizhou")
    filler = "<!-- %s -->" % ("x" * (2 << 20))
    body = ('<?xml version="1.0" encoding="UTF-8"?><TongbanMessage xmlns="urn:sd:tongban:1.0" '
            'version="1.0">%s<Header/></TongbanMessage>' % filler).encode()
    n_before = len([o for o in env.gw.check_log() if o.get("event") == "inbound.refused"])
    # A reset too early drops the request before it is complete (nothing to
    # handle); the later ones land while or after the adapter works.
    for delay in (0.005, 0.02, 0.05, 0.3):
        s = socket.create_connection(("127.0.0.1", env.partner_port), timeout=10)
        t = tls_context(cert, key).wrap_socket(s)
        t.sendall(b"POST /partners/laizhou/tongban/v1/notify HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/xml; charset=UTF-8\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(delay)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.close()  # RST
    mp.wait_until(lambda: len([o for o in env.gw.check_log()
                               if o.get("event") == "inbound.refused"]) > n_before, 20,
                  "the refusals logged")
    assert env.gw.healthy()
