"""Delivery to partners (SPEC §4, §5, §7) end to end: the real tbgw with
its real adapters against the independent mock partner platforms
(tests/partners: lu-xml for Laizhou and Zhaoyuan, yue-json for Wujiang) over
mutual TLS on loopback.

What the mocks received is the evidence: they verify every signature with
their own code (xml-crypto, sm-crypto), open the SM2/SM4 envelope, check the
message against the partner's document, and record a canonical view of it
(GET /received). Faults are scripted on the mocks (POST /script): business
codes, HTTP statuses with Retry-After, bad / garbage / truncated / late
acknowledgements, and outages (the mock process stopped and started again on
the same port).

Every check polls with a deadline; delivery settings are short
(mock_partners.TEST_DELIVERY: back-off 100 ms .. 1 s, time-out 3 s).
"""

import datetime
import http.client
import json
import threading
import time

import pytest

import mock_partners as mp
import tbgw_harness as h
from mock_partners import (record_case_id, record_code, record_header, record_message_id,
                           record_message_type, record_receipt, record_send_time,
                           record_signature, record_time, record_view, wait_until)

# Sample index by partner (the samples' target regions).
SAMPLE_FOR = {"laizhou": (0, 4), "zhaoyuan": (2,), "wujiang": (1, 3)}
STALE = {"lu-xml": ("1005",), "yue-json": ("4011", "4012")}
TRANSPORT = ("queued", "delivering", "delivered", "failed")

CONN_ERRORS = (ConnectionError, http.client.HTTPException, OSError)


# ---- helpers ---------------------------------------------------------------------

def case_for(partner, case_id, variant=0):
    idx = SAMPLE_FOR[partner]
    return h.case_with_id(case_id, base_index=idx[variant % len(idx)])


def post_ok(gw, case, conn=None):
    r = gw.post_case(case, conn=conn)
    assert r.status in (200, 202), "POST %s: %r" % (case["case_id"], r)
    return r


def case_view(gw, case_id, conn=None):
    r = gw.get_case(case_id, conn=conn)
    assert r.status == 200, r
    return r.json()


def wait_status(gw, case_id, want, timeout=30.0):
    """Polls GET /v1/cases/{id} until its status is `want` (a string or a
    tuple); fails early if it reached another final transport state."""
    want = (want,) if isinstance(want, str) else tuple(want)
    last = {}

    def check():
        v = case_view(gw, case_id)
        last["v"] = v
        if v["status"] in want:
            return v
        bad = {"delivered", "failed"} - set(want)
        if v["status"] in bad:
            raise AssertionError("case %s is %s, expected %s: %r" % (case_id, v["status"], want, v))
        return None

    return wait_until(check, timeout, lambda: "case %s to be %s; last view %r" % (
        case_id, "/".join(want), last.get("v")), interval=0.1)


def wait_all_delivered(gw, case_ids, timeout):
    pending = set(case_ids)
    state = {}

    def check():
        conn = gw.conn()
        try:
            for cid in list(pending):
                v = case_view(gw, cid, conn=conn)
                state[cid] = (v["status"], v.get("last_error"))
                if v["status"] == "failed":
                    raise AssertionError("case %s failed: %r" % (cid, v))
                if v["status"] == "delivered":
                    pending.discard(cid)
        finally:
            conn.close()
        return not pending

    wait_until(check, timeout, lambda: "%d cases to be delivered, e.g. %r" % (
        len(pending), {c: state.get(c) for c in sorted(pending)[:5]}), interval=0.25)


def case_events(gw, case_id, feed=None):
    if feed is None:
        feed, _ = gw.all_events()
    return [e for e in feed if e.get("case_id") == case_id]


def transport_statuses(gw, case_id, feed=None):
    return [e["status"] for e in case_events(gw, case_id, feed)
            if e.get("type") == "case.status" and e.get("status") in TRANSPORT]


def metrics(gw):
    r = gw.request("GET", "/metrics", token=None)
    assert r.status == 200, r
    return h.parse_prometheus(r.body.decode("utf-8"))


def delivered_total(gw, partner):
    return h.metric_value(metrics(gw), "tbgw_cases_delivered_total", partner=partner)


def check_delivered_metric(gw, expected):
    """tbgw_cases_delivered_total{partner} equals the number of cases
    delivered to each partner (each case once, retries not counted)."""
    fams = metrics(gw)
    assert "tbgw_cases_delivered_total" in fams, "no tbgw_cases_delivered_total in /metrics"
    assert fams["tbgw_cases_delivered_total"]["type"] == "counter"
    for partner, n in expected.items():
        v = h.metric_value(fams, "tbgw_cases_delivered_total", partner=partner)
        assert v == n, "tbgw_cases_delivered_total{partner=%r} is %r, %d cases were delivered" % (
            partner, v, n)


def dead_letters(gw):
    """Every object with a case_id in GET /v1/admin/dead-letters."""
    r = gw.request("GET", "/v1/admin/dead-letters")
    assert r.status == 200, r
    out = []

    def walk(v):
        if isinstance(v, dict):
            if "case_id" in v:
                out.append(v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(r.json())
    return out


def first_receipt_order(records, case_ids):
    """Case ids in the order of their first request at the mock."""
    ids = mp.message_case_map(records)
    seen = []
    wanted = set(case_ids)
    for r in records:
        if record_message_type(r) not in (None, "CASE_SUBMIT"):
            continue
        cid = record_case_id(r) or ids.get(record_message_id(r) or "")
        if cid in wanted and cid not in seen:
            seen.append(cid)
    return seen


def check_exactly_once(mock, case_ids, records=None):
    """At the mock: every case arrived, under exactly one message id, was
    accepted (0000) exactly once, and no second CASE_SUBMIT for a known case
    (a new message id) was ever flagged. Returns {case_id: receipt_no}."""
    recs = mock.received() if records is None else records
    ids = mp.message_case_map(recs)
    per_case = {}
    accepted = {}
    for r in recs:
        if record_message_type(r) != "CASE_SUBMIT":
            continue
        assert not r.get("second_submit_for_case"), \
            "mock %s got a second CASE_SUBMIT for a case it had (new message id): %r" % (
                mock.name, {k: r.get(k) for k in ("seq", "second_submit_for_case", "message")})
        mid = record_message_id(r)
        cid = record_case_id(r) or ids.get(mid)
        if cid is None:
            continue
        per_case.setdefault(cid, set()).add(mid)
        if r.get("accepted"):
            accepted.setdefault(cid, []).append(r)
    two = {c: sorted(m) for c, m in per_case.items() if len(m) > 1}
    assert not two, "cases that reached %s under two message ids: %r" % (mock.name, two)
    missing = sorted(set(case_ids) - set(accepted))
    assert not missing, "%d cases never accepted by %s: %r" % (len(missing), mock.name, missing[:10])
    twice = {c: len(v) for c, v in accepted.items() if len(v) != 1}
    assert not twice, "cases accepted (0000) more than once by %s: %r" % (mock.name, twice)
    extra = sorted(set(accepted) - set(case_ids))
    assert not extra, "mock %s accepted cases nobody sent: %r" % (mock.name, extra)
    return {c: record_receipt(v[0]) for c, v in accepted.items()}


def check_receipts(gw, receipts):
    conn = gw.conn()
    try:
        for cid, rn in receipts.items():
            v = case_view(gw, cid, conn=conn)
            assert v["status"] == "delivered", v
            assert v["receipt_no"] == rn, "case %s: receipt %r, the partner issued %r" % (
                cid, v["receipt_no"], rn)
    finally:
        conn.close()


def typed_diff(a, b, path="$"):
    """First difference between two JSON values, types included (a string
    is not a number, a boolean not a number, null only null); numbers by
    value. None if equal."""
    if isinstance(a, bool) or isinstance(b, bool):
        return None if (type(a) is type(b) and a == b) else "%s: %r != %r" % (path, a, b)
    if a is None or b is None:
        return None if a is b else "%s: %r != %r" % (path, a, b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return None if a == b else "%s: %r != %r" % (path, a, b)
    if type(a) is not type(b):
        return "%s: %r (%s) != %r (%s)" % (path, a, type(a).__name__, b, type(b).__name__)
    if isinstance(a, dict):
        if set(a) != set(b):
            return "%s: keys %r != %r" % (path, sorted(a), sorted(b))
        for k in a:
            d = typed_diff(a[k], b[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return "%s: %d elements != %d" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = typed_diff(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    return None if a == b else "%s: %r != %r" % (path, a, b)


def instant(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


EXT = {"application/pdf": "pdf", "text/plain": "txt", "image/jpeg": "jpg", "image/png": "png"}


def check_materials(got, want, adapter, where):
    assert len(got) == len(want), "%s: %d materials, sent %d" % (where, len(got), len(want))
    for i, (g, w) in enumerate(zip(got, want)):
        for k in ("name", "size", "sm3", "content_base64"):
            assert g.get(k) == w[k], "%s materials[%d].%s: %r != %r" % (where, i, k, g.get(k), w[k])
        if adapter == "lu-xml":
            assert g.get("media_type") == w["media_type"], (where, i, g, w["media_type"])
        else:
            assert g.get("file_type") == EXT[w["media_type"]], (where, i, g, w["media_type"])


def check_party(got, want, where):
    if want is None:
        assert got is None, "%s: %r, sent null" % (where, got)
        return
    assert isinstance(got, dict), "%s: %r" % (where, got)
    for k in ("kind", "name", "id_type", "id_number", "phone"):
        assert got.get(k) == want[k], "%s.%s: %r != %r" % (where, k, got.get(k), want[k])
    if want.get("address"):
        assert got.get("address") == want["address"], (where, got, want)


def check_case_view(view, case, adapter):
    """The mock's canonical view of a CASE_SUBMIT equals the case we posted."""
    cid = case["case_id"]
    w = "case %s at the %s mock" % (cid, adapter)
    assert view is not None, "%s: no parsed view" % w
    assert view["case_id"] == cid, (w, view["case_id"])
    assert view["item"] == case["item"], (w, view["item"], case["item"])
    assert view["origin_region"] == case["origin_region"], (w, view["origin_region"])
    assert view["target_region"] == case["target_region"], (w, view["target_region"])
    assert instant(view["accepted_at"]) == instant(case["accepted_at"]), (
        w, view["accepted_at"], case["accepted_at"])
    check_party(view["applicant"], case["applicant"], w + " applicant")
    check_party(view.get("agent"), case.get("agent"), w + " agent")
    check_materials(view["materials"], case["materials"], adapter, w)
    d = typed_diff(view["form"], case["form"], "form")
    assert d is None, "%s: form differs: %s" % (w, d)
    want_delivery = {k: v for k, v in case["delivery"].items() if v not in (None, "")}
    assert view["delivery"] == want_delivery, (w, view["delivery"], want_delivery)
    assert (view.get("remarks") or "") == (case.get("remarks") or ""), (
        w, view.get("remarks"), case.get("remarks"))


def ack_evidence_parts(mock, rec):
    """What of the partner's signed acknowledgement must be in the evidence:
    lu-xml the TongbanAck document (with its ds:Signature); yue-json the
    response body and its X-GD-Signature header."""
    a = rec["answer"]
    if mock.adapter == "lu-xml":
        assert "SignatureValue" in a["ack"]
        return [a["ack"]]
    body = json.dumps({"code": a["code"], "msg": a["msg"], "data": a["data"]},
                      ensure_ascii=False, separators=(",", ":"))
    sig = {k.lower(): v for k, v in a["headers"].items()}["x-gd-signature"]
    return [body, sig]


def events_with_detail(gw, case_id, **kv):
    out = []
    for e in case_events(gw, case_id):
        d = e.get("detail") or {}
        if all(str(d.get(k)) == str(v) for k, v in kv.items()):
            out.append(e)
    return out


# ---- tests -----------------------------------------------------------------------

def test_every_sample_delivered_once_signed_and_faithful(partners, delivery_gateway):
    gw = delivery_gateway()
    samples = [c for _, c in h.load_samples()]
    for c in samples:
        r = post_ok(gw, c)
        assert r.status == 202, r
    wait_all_delivered(gw, [c["case_id"] for c in samples], 60)

    feed, _ = gw.all_events()
    counts = {}
    evidence_problems = []
    for c in samples:
        cid = c["case_id"]
        mock = partners.for_case(c)
        counts[mock.name] = counts.get(mock.name, 0) + 1
        recs = mock.attempts(cid, "CASE_SUBMIT")
        assert len(recs) == 1, "case %s: %d CASE_SUBMIT requests at %s (no fault was scripted)" % (
            cid, len(recs), mock.name)
        rec = recs[0]
        assert rec["signature"]["ok"], "%s: the mock did not verify the signature: %r" % (
            cid, rec["signature"])
        assert rec.get("accepted") and record_code(rec) == "0000", (cid, rec.get("error"), rec["answer"])
        check_case_view(record_view(rec), c, mock.adapter)
        if mock.adapter == "lu-xml":
            hdr = rec["message"]["header"]
            assert hdr["receiver_region"] == c["target_region"], hdr
            assert hdr["sender_region"] in ("430603", c["origin_region"]), hdr
        else:
            assert record_header(rec, "x-gd-appid") == "YY-YUNXI-001"

        v = case_view(gw, cid)
        assert v["status"] == "delivered" and v["partner"] == mock.name, v
        assert v["receipt_no"] == record_receipt(rec), (v, rec["answer"])
        assert not v.get("last_error"), v

        assert transport_statuses(gw, cid, feed) == ["queued", "delivering", "delivered"], \
            case_events(gw, cid, feed)
        seqs = [e["seq"] for e in case_events(gw, cid, feed)]
        assert seqs == sorted(seqs), seqs
        done = [e for e in case_events(gw, cid, feed) if e.get("status") == "delivered"]
        assert done[0]["detail"].get("receipt_no") == record_receipt(rec), done

        ev = gw.request("GET", "/v1/cases/%s/evidence" % cid)
        assert ev.status == 200, ev
        texts = mp.texts_in(ev.json())
        for part in ack_evidence_parts(mock, rec):
            if not any(part in t for t in texts):
                evidence_problems.append(
                    "case %s (%s): the partner's signed acknowledgement is not in the evidence "
                    "(missing %r); evidence: %s" % (cid, mock.adapter, part[:120],
                                                    ev.body[:1200].decode("utf-8", "replace")))

    # the same cases again: idempotent (200), and nothing is sent again
    for c in samples:
        r = gw.post_case(c)
        assert r.status == 200, r
    time.sleep(0.5)
    for mock in partners.values():
        check_exactly_once(mock, [c["case_id"] for c in samples if partners.for_case(c) is mock])
    for c in samples:
        n = len(partners.for_case(c).attempts(c["case_id"], "CASE_SUBMIT"))
        assert n == 1, "re-posting delivered case %s sent it again (%d requests)" % (c["case_id"], n)
    check_delivered_metric(gw, counts)
    assert not evidence_problems, "\n".join(evidence_problems)


def test_withdraw_and_supplement_reach_the_partner(partners, delivery_gateway):
    gw = delivery_gateway()
    extra = h.sample(3)["materials"][0]  # a valid material (text/plain) to supplement
    cases = {}
    for p in ("laizhou", "wujiang"):
        for what in ("wd", "sp"):
            c = case_for(p, "dlv-%s-%s" % (what, p))
            cases[(p, what)] = c
            post_ok(gw, c)
    wait_all_delivered(gw, [c["case_id"] for c in cases.values()], 30)

    for (p, what), c in cases.items():
        cid = c["case_id"]
        if what == "wd":
            r = gw.request("POST", "/v1/cases/%s/withdraw" % cid, body={"reason": "申请人主动撤回"})
        else:
            r = gw.request("POST", "/v1/cases/%s/supplement" % cid, body={"materials": [extra]})
        assert r.status in (200, 202), r

    for (p, what), c in cases.items():
        cid = c["case_id"]
        mock = partners[p]
        mtype = "CASE_WITHDRAW" if what == "wd" else "CASE_SUPPLEMENT"
        recs = wait_until(lambda: [r for r in mock.attempts(cid, mtype) if r.get("accepted")], 30,
                          "%s of %s accepted by %s" % (mtype, cid, p))
        assert len(recs) == 1, recs
        rec = recs[0]
        assert rec["signature"]["ok"], rec["signature"]
        body = record_view(rec)
        receipt = case_view(gw, cid)["receipt_no"]
        assert body["case_id"] == cid and body["receipt_no"] == receipt, (body, receipt)
        assert rec.get("known_receipt") is True, rec
        if what == "wd":
            assert body["reason"] == "申请人主动撤回", body
        else:
            check_materials(body["materials"], [extra], mock.adapter, "supplement of %s" % cid)
        # a message id of its own, not the submit's
        sub = mock.attempts(cid, "CASE_SUBMIT")
        assert record_message_id(rec) != record_message_id(sub[0])
        wait_until(lambda: events_with_detail(gw, cid, msg_type=mtype, outcome="delivered"), 15,
                   "a %s delivered event for %s in the feed" % (mtype, cid))


def test_withdraw_posted_before_delivery_waits_for_the_submit(partners, delivery_gateway):
    gw = delivery_gateway()
    ids = {}
    for p in ("laizhou", "wujiang"):
        mock = partners[p]
        mock.script({"kind": "code", "code": mp.BUSY[mock.adapter], "count": 3})
        c = case_for(p, "dlv-early-wd-%s" % p)
        ids[p] = c["case_id"]
        post_ok(gw, c)
        r = gw.request("POST", "/v1/cases/%s/withdraw" % c["case_id"], body={"reason": "撤回"})
        assert r.status in (200, 202), "withdraw of a case not delivered yet: %r" % r
    for p, cid in ids.items():
        mock = partners[p]
        wait_until(lambda: [r for r in mock.attempts(cid, "CASE_WITHDRAW") if r.get("accepted")],
                   30, "the withdraw of %s at %s" % (cid, p))
        recs = mock.attempts(cid)
        kinds = [(record_message_type(r), record_code(r)) for r in recs]
        first_wd = next(i for i, r in enumerate(recs) if record_message_type(r) == "CASE_WITHDRAW")
        acc_sub = [i for i, r in enumerate(recs)
                   if record_message_type(r) == "CASE_SUBMIT" and r.get("accepted")]
        assert acc_sub and acc_sub[0] < first_wd, \
            "%s: the withdraw reached %s before its submit was accepted: %r" % (cid, p, kinds)
        assert all(record_message_type(r) == "CASE_SUBMIT" for r in recs[:first_wd]), kinds
        wd = [r for r in recs if record_message_type(r) == "CASE_WITHDRAW" and r.get("accepted")][0]
        assert record_view(wd)["receipt_no"] == record_receipt(recs[acc_sub[0]]), kinds
        assert wd.get("known_receipt") is True


@pytest.mark.parametrize("partner", ["laizhou", "wujiang"])
def test_busy_twice_then_success_same_message_id(partners, delivery_gateway, partner):
    initial = 400
    gw = delivery_gateway(per_partner={partner: {"backoff_initial_ms": initial,
                                                 "backoff_max_ms": 4000}})
    mock = partners[partner]
    busy = mp.BUSY[mock.adapter]
    mock.script({"kind": "code", "code": busy, "count": 2})
    c = case_for(partner, "dlv-busy-%s" % partner)
    post_ok(gw, c)
    v = wait_status(gw, c["case_id"], "delivered", 30)

    recs = mock.attempts(c["case_id"], "CASE_SUBMIT")
    codes = [record_code(r) for r in recs]
    assert codes == [busy, busy, "0000"], codes
    mids = {record_message_id(r) for r in recs}
    assert len(mids) == 1 and None not in mids, "message ids of the attempts: %r" % mids
    assert v["receipt_no"] == record_receipt(recs[2]), v
    t = [record_time(r) for r in recs]
    # equal jitter: retry n waits between half and all of initial * 2^(n-1)
    for n, gap in enumerate((t[1] - t[0], t[2] - t[1]), 1):
        floor = initial * 2 ** (n - 1) / 2000.0
        assert gap >= floor - 0.02, "retry %d came %.3f s after the busy answer; " \
            "back-off is at least %.3f s" % (n, gap, floor)
        assert gap <= initial * 2 ** (n - 1) / 1000.0 + 2.0, "retry %d waited %.3f s" % (n, gap)
    if mock.adapter == "yue-json":
        nonces = [record_header(r, "x-gd-nonce") for r in recs]
        assert len(set(nonces)) == 3, "a nonce was reused across attempts: %r" % nonces
    assert transport_statuses(gw, c["case_id"]) == ["queued", "delivering", "delivered"]
    check_delivered_metric(gw, {partner: 1})


def test_http_503_retry_after_is_honoured(partners, delivery_gateway):
    gw = delivery_gateway()
    ids = {}
    for p in ("zhaoyuan", "wujiang"):
        partners[p].script({"kind": "http", "status": 503, "retry_after": "2", "count": 1})
        c = case_for(p, "dlv-retry-after-%s" % p)
        ids[p] = c["case_id"]
        post_ok(gw, c)
    wait_all_delivered(gw, ids.values(), 30)
    for p, cid in ids.items():
        recs = partners[p].attempts(cid, "CASE_SUBMIT")
        assert [h_ for h_ in (r["answer"]["http_status"] for r in recs)] == [503, 200], \
            [r["answer"] for r in recs]
        gap = record_time(recs[1]) - record_time(recs[0])
        assert gap >= 1.98, "%s: retried %.3f s after 503 with Retry-After: 2" % (p, gap)
        assert gap <= 6.0, "%s: retried only %.3f s after Retry-After: 2" % (p, gap)
        assert record_message_id(recs[0]) == record_message_id(recs[1])
    check_exactly_once(partners["zhaoyuan"], [ids["zhaoyuan"]])
    check_exactly_once(partners["wujiang"], [ids["wujiang"]])


def test_permanent_errors_dead_letter_and_replay(partners, delivery_gateway):
    gw = delivery_gateway()
    lz, zy, wj = partners["laizhou"], partners["zhaoyuan"], partners["wujiang"]

    def fail_one(mock, fault, case_id, code, text):
        # One case at a time per mock: every request after `since` is this
        # case's (a yue-json mock answering a scripted code does not open the
        # envelope, so it cannot tell the case id).
        before = mock.received()
        since = before[-1]["seq"] if before else 0
        mock.script(fault)
        c = case_for(mock.name, case_id)
        post_ok(gw, c)
        v = wait_status(gw, case_id, "failed", 30)
        time.sleep(0.3)  # a (wrong) retry would come within the 100 ms back-off
        recs = [r for r in mock.received(since=since) if record_message_type(r) == "CASE_SUBMIT"]
        assert len(recs) == 1, "%s: a permanent error (%s) was retried: %d attempts" % (
            case_id, code, len(recs))
        le = v.get("last_error") or ""
        assert code in le, "case %s: last_error %r does not name %s" % (case_id, le, code)
        if text:
            assert text in le, "case %s: last_error %r does not carry the partner's text %r" % (
                case_id, le, text)
        evs = [e for e in case_events(gw, case_id) if e.get("status") == "failed"]
        assert len(evs) == 1, case_events(gw, case_id)
        d = evs[0].get("detail") or {}
        assert code in str(d.get("code")) or code in json.dumps(d, ensure_ascii=False), d
        if text:
            assert text in json.dumps(d, ensure_ascii=False), d
        return record_message_id(recs[0])

    mids = {
        "dlv-perm-1002": fail_one(lz, {"kind": "code", "code": "1002"}, "dlv-perm-1002", "1002",
                                  "报文不符合规范"),
        "dlv-perm-4001": fail_one(wj, {"kind": "code", "code": "4001"}, "dlv-perm-4001", "4001",
                                  "参数错误"),
        "dlv-perm-4020": fail_one(wj, {"kind": "code", "code": "4020"}, "dlv-perm-4020", "4020",
                                  "解密失败"),
        "dlv-perm-http400": fail_one(zy, {"kind": "http", "status": 400,
                                          "body": "malformed request (test)"},
                                     "dlv-perm-http400", "400", None),
    }
    owner = {"dlv-perm-1002": lz, "dlv-perm-4001": wj, "dlv-perm-4020": wj, "dlv-perm-http400": zy}

    dl = dead_letters(gw)
    listed = {d["case_id"]: d for d in dl}
    for cid, mid in mids.items():
        assert cid in listed, "dead letter %s not in GET /v1/admin/dead-letters: %r" % (cid, dl)
        if "message_id" in listed[cid]:
            assert listed[cid]["message_id"].lower() == mid, (listed[cid], mid)
    out = h.run_cli(["dlq", "list", "-c", gw.config_path])
    assert out.returncode == 0, out
    for cid in mids:
        assert cid in out.stdout, "tbgw dlq list does not show %s:\n%s" % (cid, out.stdout)

    # Replays, the faults being gone (each was for one request).
    r = gw.request("POST", "/v1/admin/dead-letters/replay", body={"case_id": "dlv-perm-1002"})
    assert r.status in (200, 202), r
    r = gw.request("POST", "/v1/admin/dead-letters/replay", body={"case_id": "dlv-perm-4001"})
    assert r.status in (200, 202), r
    wait_status(gw, "dlv-perm-1002", "delivered", 30)
    wait_status(gw, "dlv-perm-4001", "delivered", 30)
    assert case_view(gw, "dlv-perm-4020")["status"] == "failed", "a replay by case replayed another"
    r = gw.request("POST", "/v1/admin/dead-letters/replay", body={"partner": "wujiang"})
    assert r.status in (200, 202), r
    wait_status(gw, "dlv-perm-4020", "delivered", 30)
    out = h.run_cli(["dlq", "replay", "-c", gw.config_path, "dlv-perm-http400"])
    assert out.returncode == 0, out
    wait_status(gw, "dlv-perm-http400", "delivered", 30)

    for cid, mid in mids.items():
        mock = owner[cid]
        recs = mock.attempts(cid, "CASE_SUBMIT")
        assert len(recs) == 2, (cid, [record_code(r) for r in recs])
        assert {record_message_id(r) for r in recs} == {mid}, \
            "%s was replayed under another message id" % cid
        assert recs[1].get("accepted"), recs[1].get("error")
        assert case_view(gw, cid)["receipt_no"] == record_receipt(recs[1])
        assert "replayed" in json.dumps([e.get("detail") for e in case_events(gw, cid)])
    left = {d["case_id"] for d in dead_letters(gw)}
    assert not (left & set(mids)), "replayed and delivered, still dead letters: %r" % left
    check_delivered_metric(gw, {"laizhou": 1, "zhaoyuan": 1, "wujiang": 2})


def test_retries_exhausted_become_a_dead_letter(partners, delivery_gateway):
    gw = delivery_gateway(per_partner={"zhaoyuan": {"max_attempts": 3}})
    zy = partners["zhaoyuan"]
    zy.script({"kind": "code", "code": "5002", "count": 3})
    c = case_for("zhaoyuan", "dlv-exhausted")
    post_ok(gw, c)
    v = wait_status(gw, c["case_id"], "failed", 30)
    time.sleep(0.5)
    recs = zy.attempts(c["case_id"], "CASE_SUBMIT")
    assert [record_code(r) for r in recs] == ["5002"] * 3, \
        "max_attempts 3: %r" % [record_code(r) for r in recs]
    assert "5002" in (v.get("last_error") or ""), v
    assert c["case_id"] in {d["case_id"] for d in dead_letters(gw)}
    r = gw.request("POST", "/v1/admin/dead-letters/replay", body={"case_id": c["case_id"]})
    assert r.status in (200, 202), r
    v = wait_status(gw, c["case_id"], "delivered", 30)
    recs = zy.attempts(c["case_id"], "CASE_SUBMIT")
    assert len({record_message_id(r) for r in recs}) == 1 and recs[-1].get("accepted")
    assert v["receipt_no"] == record_receipt(recs[-1])


def test_concurrency_limit_per_partner(partners, delivery_gateway):
    """max_in_flight 2 and a partner that takes 400 ms per answer: any three
    consecutive requests span at least 400 ms."""
    gw = delivery_gateway(per_partner={"laizhou": {"max_in_flight": 2}})
    lz = partners["laizhou"]
    lz.script({"kind": "delay", "ms": 400, "count": 1000})
    ids = []
    conn = gw.conn()
    try:
        for i in range(8):
            c = case_for("laizhou", "dlv-limit-%d" % i, variant=i)
            ids.append(c["case_id"])
            post_ok(gw, c, conn=conn)
    finally:
        conn.close()
    wait_all_delivered(gw, ids, 30)
    t = sorted(record_time(r) for r in lz.received())
    for a, b in zip(t, t[2:]):
        assert b - a >= 0.39, "three requests to a partner limited to 2 in flight within " \
            "%.3f s (each takes 400 ms): arrivals %r" % (b - a, [round(x - t[0], 3) for x in t])
    check_exactly_once(lz, ids)


def test_stale_timestamp_codes_retry_with_fresh_signature(partners, delivery_gateway):
    gw = delivery_gateway()
    lz, wj = partners["laizhou"], partners["wujiang"]
    # laizhou: five busy answers first (>= 1.25 s of back-off), then 1005: the
    # message after 1005 must carry a SendTime from after the 1005 answer.
    lz.script({"kind": "code", "code": "5001", "count": 5}, {"kind": "code", "code": "1005"})
    wj.script({"kind": "code", "code": "4011"}, {"kind": "code", "code": "4012"})
    cl = case_for("laizhou", "dlv-stale-lz")
    cw = case_for("wujiang", "dlv-stale-wj")
    post_ok(gw, cl)
    post_ok(gw, cw)
    wait_all_delivered(gw, [cl["case_id"], cw["case_id"]], 40)

    recs = lz.attempts(cl["case_id"], "CASE_SUBMIT")
    assert [record_code(r) for r in recs] == ["5001"] * 5 + ["1005", "0000"], \
        [record_code(r) for r in recs]
    assert len({record_message_id(r) for r in recs}) == 1
    stale, fresh = recs[5], recs[6]
    st = record_send_time(fresh)
    assert st >= int(record_time(stale)), \
        "after 1005 the retry's SendTime %s is older than the 1005 answer (%s): not re-signed" % (
            st, stale["received_at"])
    assert st > record_send_time(recs[0]), "SendTime never refreshed"
    assert record_signature(fresh) != record_signature(recs[0])

    recs = wj.attempts(cw["case_id"], "CASE_SUBMIT")
    assert [record_code(r) for r in recs] == ["4011", "4012", "0000"], \
        [record_code(r) for r in recs]
    assert len({record_message_id(r) for r in recs}) == 1
    for prev, nxt in zip(recs, recs[1:]):
        ts = int(record_header(nxt, "x-gd-timestamp"))
        assert ts >= int(record_time(prev) * 1000) - 5, \
            "retry after %s carries timestamp %d from before that answer (%s)" % (
                record_code(prev), ts, prev["received_at"])
        assert record_header(nxt, "x-gd-nonce") != record_header(prev, "x-gd-nonce")
        assert record_signature(nxt) != record_signature(prev)
    assert len({record_header(r, "x-gd-nonce") for r in recs}) == 3
    check_exactly_once(lz, [cl["case_id"]])
    check_exactly_once(wj, [cw["case_id"]])


# Faults on the acknowledgement, one case each.
ACK_FAULTS = [
    ("badsig", {"kind": "bad-signature"}),
    ("unsigned", {"kind": "unsigned"}),
    ("garbage", {"kind": "garbage", "process": True}),
    ("closemid", {"kind": "close", "when": "mid", "process": True}),
    ("closebefore", {"kind": "close", "when": "before"}),
    ("slow", {"kind": "delay", "ms": 4500}),  # timeout_ms is 3000
]


def test_bad_acknowledgements_are_retried_and_delivered_once(partners, delivery_gateway):
    gw = delivery_gateway()
    mocks = [partners["laizhou"], partners["wujiang"]]
    all_ids = {m.name: [] for m in mocks}
    for tag, fault in ACK_FAULTS:
        ids = {}
        since = {}
        for m in mocks:
            # one case in flight per mock: every request after `since` is its
            # (a request the gateway gave up on during a delay fault has no body)
            before = m.received()
            since[m.name] = before[-1]["seq"] if before else 0
            if fault:
                m.script(fault)
            c = case_for(m.name, "dlv-ack-%s-%s" % (tag, m.name))
            ids[m.name] = c["case_id"]
            all_ids[m.name].append(c["case_id"])
            post_ok(gw, c)
        wait_all_delivered(gw, ids.values(), 40)
        for m in mocks:
            cid = ids[m.name]
            recs = m.received(since=since[m.name])
            if fault:
                assert recs and recs[0].get("fault") and recs[0]["fault"]["kind"] == fault["kind"], \
                    "%s: first attempt did not get the fault: %r" % (cid, [r.get("fault") for r in recs])
            if fault:
                assert len(recs) >= 2, "%s (%s at %s) was taken as delivered without a valid " \
                    "acknowledgement: %d attempt(s)" % (cid, tag, m.name, len(recs))
            assert len({record_message_id(r) for r in recs} - {None}) == 1, (cid, recs)
            v = case_view(gw, cid)
            assert v["receipt_no"] != "UNSOLICITED", "%s took the unsolicited answer: %r" % (cid, v)
            assert v["receipt_no"] == m.cases()[cid]["receipt_no"], (v, m.cases()[cid])
            assert m.cases()[cid]["submits"] == 1
    for m in mocks:
        check_exactly_once(m, all_ids[m.name])
    check_delivered_metric(gw, {m.name: len(all_ids[m.name]) for m in mocks})


def test_unsolicited_second_answer_does_not_poison_the_connection(partners, delivery_gateway):
    """A partner writes a second, unsolicited HTTP response after its
    acknowledgement (mock fault `twice`). That answer must not be taken for
    the next message's, and the connection it came on must not be used
    again: the messages that follow are each delivered on their first
    attempt, with their own receipt."""
    gw = delivery_gateway()
    mocks = [partners["laizhou"], partners["wujiang"]]
    for m in mocks:
        m.script({"kind": "twice"})
    first = {m.name: case_for(m.name, "dlv-twice-%s" % m.name) for m in mocks}
    for c in first.values():
        post_ok(gw, c)
    wait_all_delivered(gw, [c["case_id"] for c in first.values()], 30)
    time.sleep(0.3)  # the unsolicited answer is on the wire now
    after = {m.name: [] for m in mocks}
    for i in range(3):
        batch = []
        for m in mocks:
            c = case_for(m.name, "dlv-after-twice-%s-%d" % (m.name, i))
            after[m.name].append(c["case_id"])
            batch.append(c["case_id"])
            post_ok(gw, c)
        wait_all_delivered(gw, batch, 30)
    problems = []
    for m in mocks:
        cid = first[m.name]["case_id"]
        assert case_view(gw, cid)["receipt_no"] == m.cases()[cid]["receipt_no"]
        for cid in after[m.name]:
            v = case_view(gw, cid)
            assert v["receipt_no"] != "UNSOLICITED", v
            assert v["receipt_no"] == m.cases()[cid]["receipt_no"], (v, m.cases()[cid])
            recs = m.attempts(cid, "CASE_SUBMIT")
            if len(recs) != 1:
                problems.append("%s: %s needed %d attempts after the unsolicited answer (%s)" % (
                    m.name, cid, len(recs), [record_code(r) for r in recs]))
        check_exactly_once(m, [first[m.name]["case_id"]] + after[m.name])
    assert not problems, "the connection that carried the unsolicited answer was reused, " \
        "every later answer read is the previous request's:\n" + "\n".join(problems)


def _circuit_opened(gw, partner):
    fams = metrics(gw)
    fam = fams.get("tbgw_circuit_state")
    if fam:
        for _n, labels, value in fam["samples"]:
            if labels.get("partner") != partner:
                continue
            if "state" in labels:
                if labels["state"] == "open" and value == 1:
                    return True
            elif value == 1:  # 0 closed, 1 open, 2 half-open
                return True
    for o in gw.check_log():
        if o.get("event") == "delivery.circuit_open" and o.get("partner") == partner:
            return True
    return False


def test_partner_outage_queues_then_drains_in_acceptance_order(partners, delivery_gateway):
    down = ("laizhou", "zhaoyuan", "wujiang")
    # laizhou and wujiang: one request at a time, so that the order of arrival
    # is the order of sending; zhaoyuan keeps 8 in flight: no case may arrive
    # more than 7 places before its turn.
    per = {p: {"max_in_flight": 1, "circuit_failures": 3, "circuit_open_ms": 500}
           for p in ("laizhou", "wujiang")}
    per["zhaoyuan"] = {"max_in_flight": 8, "circuit_failures": 3, "circuit_open_ms": 500}
    gw = delivery_gateway(per_partner=per)
    for p in down:
        assert partners[p].stop() == 0
    order = {p: [] for p in down}
    plan = [("laizhou", 20), ("wujiang", 10), ("zhaoyuan", 16)]
    conn = gw.conn()
    try:
        for i in range(max(n for _, n in plan)):
            for p, n in plan:
                if i < n:
                    c = case_for(p, "dlv-outage-%s-%02d" % (p, i), variant=i)
                    r = post_ok(gw, c, conn=conn)
                    assert r.status == 202, r
                    order[p].append(c["case_id"])
    finally:
        conn.close()

    opened = {}

    def circuits():
        for p in down:
            if p not in opened and _circuit_opened(gw, p):
                opened[p] = time.monotonic()
        return len(opened) == len(down)

    wait_until(circuits, 20, lambda: "the circuit to open for %r (tbgw_circuit_state or "
               "delivery.circuit_open); opened: %r" % (down, opened), interval=0.2)
    time.sleep(1.5)  # the outage goes on for a while: retries back off, the circuit re-opens
    for p in down:
        v = case_view(gw, order[p][0])
        assert v["status"] in ("queued", "delivering"), v
        partners[p].start()
        assert partners[p].port == partners[p].ready_line["port"]

    wait_all_delivered(gw, [cid for p in down for cid in order[p]], 90)
    for p in down:
        recs = partners[p].received()
        got = first_receipt_order(recs, order[p])
        assert sorted(got) == sorted(order[p]), (p, got)
        if per[p]["max_in_flight"] == 1:
            assert got == order[p], "after the outage %s received the cases in this order:\n" \
                "%r\naccepted in this order:\n%r" % (p, got, order[p])
        else:
            late = [(cid, i, got.index(cid)) for i, cid in enumerate(order[p])
                    if i - got.index(cid) >= per[p]["max_in_flight"]]
            assert not late, "after the outage %s got cases far ahead of their turn " \
                "(case, accepted as, arrived as): %r\narrival order %r" % (p, late, got)
        receipts = check_exactly_once(partners[p], order[p], recs)
        check_receipts(gw, receipts)
    assert not dead_letters(gw)


def _post_many(gw, cases, threads=8, stop=None):
    """Posts from several keep-alive clients; returns {case_id: status |
    "no-answer" | "not-sent"}."""
    outcome = {c["case_id"]: "not-sent" for c in cases}
    lock = threading.Lock()

    def client(chunk):
        conn = gw.conn(timeout=30)
        try:
            for c in chunk:
                if stop is not None and stop.is_set():
                    return
                with lock:
                    outcome[c["case_id"]] = "no-answer"
                try:
                    r = gw.post_case(c, conn=conn)
                except CONN_ERRORS:
                    return
                with lock:
                    outcome[c["case_id"]] = r.status
        finally:
            conn.close()

    ts = [threading.Thread(target=client, args=(cases[i::threads],)) for i in range(threads)]
    for t in ts:
        t.start()
    return ts, outcome


def _mixed_cases(prefix, n):
    """n cases over the three partners: about 45% laizhou, 40% zhaoyuan,
    15% wujiang (the yue-json mock's pure-JS SM2 is the slow one)."""
    out = []
    for i in range(n):
        k = i % 20
        p = "wujiang" if k in (3, 10, 17) else ("zhaoyuan" if k % 2 else "laizhou")
        out.append(case_for(p, "%s-%03d" % (prefix, i), variant=i))
    return out


def _submits_seen(partners, prefix):
    """Cases with this id prefix the mocks have accepted so far (GET /cases:
    light enough to poll)."""
    return sum(1 for m in partners.values() for cid in m.cases() if cid.startswith(prefix))


def _final_checks(gw, partners, cases):
    by_partner = {}
    for c in cases:
        by_partner.setdefault(partners.for_case(c).name, []).append(c["case_id"])
    for name, ids in by_partner.items():
        receipts = check_exactly_once(partners[name], ids)
        check_receipts(gw, receipts)


def test_kill9_during_delivery_loses_nothing_and_never_duplicates(partners, delivery_gateway):
    gw = delivery_gateway()
    for m in partners.values():
        m.script({"kind": "delay", "ms": 40 if m.adapter == "lu-xml" else 15, "count": 100000})
    every = []
    for rnd in range(3):
        prefix = "dlv-k9-r%d" % rnd
        cases = _mixed_cases(prefix, 100)
        every.extend(cases)
        stop = threading.Event()
        ts, outcome = _post_many(gw, cases, stop=stop)
        kill_at = 10 + 12 * rnd
        wait_until(lambda: _submits_seen(partners, prefix) >= kill_at, 60,
                   "%d deliveries of round %d under way" % (kill_at, rnd), interval=0.02)
        gw.kill9()
        stop.set()
        for t in ts:
            t.join(60)
            assert not t.is_alive(), "a client hung after the daemon was killed"
        gw.start()
        # cases whose answer was lost (or never sent) are sent again: present → 200, else 202
        conn = gw.conn()
        try:
            for c in cases:
                if outcome[c["case_id"]] not in (200, 202):
                    r = gw.post_case(c, conn=conn)
                    assert r.status in (200, 202), "re-post of %s after kill -9: %r" % (
                        c["case_id"], r)
        finally:
            conn.close()
    wait_all_delivered(gw, [c["case_id"] for c in every], 120)
    _final_checks(gw, partners, every)
    # the kills did hit messages in flight (else this test tested nothing)
    dup = sum(1 for m in partners.values() for r in m.received() if r.get("duplicate"))
    recovered = sum(o.get("messages", 0) for o in gw.check_log()
                    if o.get("event") == "delivery.recovered")
    assert dup or recovered, "no kill caught a delivery in flight"


def test_sigterm_during_delivery_exits_0_and_loses_nothing(partners, delivery_gateway):
    # Slow answers and few in flight, so that deliveries are still under way
    # when SIGTERM arrives however long posting took on a loaded machine.
    gw = delivery_gateway(delivery={"max_in_flight": 2})
    for m in partners.values():
        m.script({"kind": "delay", "ms": 1000, "count": 100000})
    cases = _mixed_cases("dlv-term", 40)
    ts, outcome = _post_many(gw, cases, threads=4)
    for t in ts:
        t.join(60)
    assert all(o in (200, 202) for o in outcome.values()), outcome
    wait_until(lambda: _submits_seen(partners, "dlv-term") >= 5, 30, "deliveries under way")
    pending = [c["case_id"] for c in cases if case_view(gw, c["case_id"])["status"] != "delivered"]
    assert pending, "everything was delivered before SIGTERM; the test did not test shutdown"
    t0 = time.monotonic()
    gw.stop(timeout=30)  # asserts exit status 0 and a clean log
    took = time.monotonic() - t0
    assert took < 20, "graceful shutdown took %.1f s" % took
    gw.start()
    wait_all_delivered(gw, [c["case_id"] for c in cases], 90)
    _final_checks(gw, partners, cases)
