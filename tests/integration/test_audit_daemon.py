"""The daemon's audit trail (docs/audit.md, config section `audit`): a real
`tbgw serve` with the mock partners writes one record per security event —
keys loaded, cases accepted, messages sent, acknowledgements received (with
the signature check and the verdict), inbound accepted/refused, dead-letter
replay — and `tbgw audit verify` accepts the file, refuses it after one
changed byte, and no sample's personal data is in it unmasked."""

import hashlib
import http.client
import json
import os
import ssl

import tbgw_harness as h
import mock_partners as mp

AUDIT_REL = "var/audit.log"


def audit_config():
    return {"audit": {"path": AUDIT_REL, "rotate_bytes": 268435456}}


def read_records(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data.endswith(b"\n"), "audit file does not end with a newline"
    return data, [json.loads(line) for line in data.decode("utf-8").splitlines()]


def verify(*paths):
    return h.run_cli(["audit", "verify", *paths])


def partner_request(port, path, partner_cert):
    pki = h.ensure_pki()
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                     cafile=os.path.join(pki, "gateway", "ca.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(os.path.join(pki, "partners", partner_cert, "tls-client.pem"),
                        os.path.join(pki, "partners", partner_cert, "tls-client.key"))
    c = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ctx)
    try:
        c.request("POST", path, body=b"<x/>", headers={"Content-Type": "application/xml"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def personal_data(samples):
    """(what, text) pairs that must never appear in the audit file."""
    out = []
    for _, case in samples:
        for role in ("applicant", "agent"):
            p = case.get(role)
            if not p:
                continue
            out.append(("%s id_number" % role, p["id_number"]))
            out.append(("%s phone" % role, p["phone"]))
            out.append(("%s name" % role, p["name"]))
            if p["kind"] == "person" and len(p["name"]) > 1:
                out.append(("%s given name" % role, p["name"][1:]))
    return out


def test_daemon_writes_a_verifiable_masked_audit_trail(partners, delivery_gateway):
    gw = delivery_gateway(config=audit_config(), name="audit", start=False)
    audit_path = os.path.join(gw.dir, AUDIT_REL)
    os.makedirs(os.path.dirname(audit_path))  # like the store's, the directory must exist
    gw.start()
    samples = h.load_samples()
    for _, c in samples:
        r = gw.post_case(c)
        assert r.status == 202, r

    # Delivery: every sample reaches its mock partner (signed answers).
    def all_delivered():
        for _, c in samples:
            v = gw.get_case(c["case_id"]).json()
            if v["status"] == "failed":
                raise AssertionError("case failed: %r" % v)
            if v["status"] != "delivered":
                return False
        return True
    mp.wait_until(all_delivered, 60, "every sample to be delivered")

    # Inbound: one accepted status, one refusal (laizhou's certificate on
    # zhaoyuan's path).
    zcase = [c for _, c in samples if c["target_region"] == "370685"][0]["case_id"]
    out = partners["zhaoyuan"].send_status(zcase, "01", receipt_no="RCPT-%s" % zcase)
    assert out, out
    assert partner_request(partners.partner_port, "/partners/zhaoyuan/x", "laizhou") == 403

    # Dead-letter replay through the admin API (nothing to replay: count 0).
    r = gw.request("POST", "/v1/admin/dead-letters/replay", body={"partner": "laizhou"})
    assert r.status == 200, r

    gw.stop()
    logs = gw.check_log()
    opened = [o for o in logs if o["event"] == "audit.opened"]
    closed = [o for o in logs if o["event"] == "audit.closed"]
    assert len(opened) == 1 and opened[0]["path"] == audit_path, opened
    assert opened[0]["last_seq"] == 0, opened
    assert len(closed) == 1, [o for o in logs if o["event"].startswith("audit.")]
    assert not [o for o in logs if o["event"] in ("audit.append_failed", "audit.flush_failed",
                                                  "audit.disabled")], logs

    # tbgw audit verify: good chain, head as logged at close.
    data, recs = read_records(audit_path)
    v = verify(audit_path)
    assert v.returncode == 0, v.stdout + v.stderr
    assert v.stdout.strip() == "ok: %d records, last seq %d, last hash %s" % (
        len(recs), recs[-1]["seq"], recs[-1]["hash"]), v.stdout
    assert closed[0]["last_seq"] == recs[-1]["seq"] and closed[0]["last_hash"] == recs[-1]["hash"]

    # The hash as docs/audit.md defines it, independently.
    prev = "0" * 64
    for line in data.split(b"\n")[:-1]:
        o = json.loads(line)
        assert o["prev"] == prev and hashlib.new("sm3", line[:-75]).hexdigest() == o["hash"], line
        prev = o["hash"]

    def of(event):
        return [o for o in recs if o["event"] == event]

    keys = sorted(o["detail"]["key"] for o in of("key.loaded"))
    assert keys == sorted(gw.config["keys"]), keys
    accepted = of("case.accepted")
    assert sorted(o["case_id"] for o in accepted) == sorted(c["case_id"] for _, c in samples)
    for o in accepted:
        assert o["actor"] == "api:%s" % h.CLIENT and o["outcome"] == "ok", o
        assert o["partner"] == h.ROUTES[[c for _, c in samples
                                         if c["case_id"] == o["case_id"]][0]["target_region"]]
    first = [o for o in accepted if o["case_id"] == "430603-20240506-000123"][0]
    assert first["detail"] == {"subject_id": "430603********1231", "subject_name": "张*"}, first
    sent = {o["case_id"] for o in of("message.sent")}
    assert sent >= {c["case_id"] for _, c in samples}, sent
    acks = [o for o in of("ack.received") if o["detail"]["verdict"] == "delivered"]
    assert {o["case_id"] for o in acks} >= {c["case_id"] for _, c in samples}, of("ack.received")
    for o in acks:
        assert o["outcome"] == "ok" and o["detail"]["signature_valid"] is True, o
        assert o["actor"] == "partner:%s" % o["partner"], o
    inb = of("inbound.accepted")
    assert len(inb) == 1 and inb[0]["partner"] == "zhaoyuan", inb
    ref = of("inbound.refused")
    assert len(ref) == 1 and ref[0]["outcome"] == "refused", ref
    assert "zhaoyuan" in ref[0]["detail"]["reason"], ref
    dlq = of("dlq.replay")
    assert len(dlq) == 1 and dlq[0]["detail"] == {"target": "partner:laizhou", "count": 0}, dlq
    assert dlq[0]["actor"] == "api:%s" % h.CLIENT, dlq

    # No personal data of the samples, unmasked, anywhere in the file.
    text = data.decode("utf-8")
    leaks = [(what, s) for what, s in personal_data(samples) if s in text]
    assert not leaks, leaks

    # One changed byte: verify exits 1 and names the edited record.
    tampered = os.path.join(gw.dir, "tampered.log")
    i = data.index(b'"case.accepted"') + 1
    with open(tampered, "wb") as f:
        f.write(data[:i] + b"C" + data[i + 1:])
    v = verify(tampered)
    assert v.returncode == 1, v.stdout + v.stderr
    assert "edited" in v.stdout + v.stderr, v.stdout + v.stderr

    # A restart continues the same chain.
    gw.start()
    r = gw.post_case(h.case_with_id("430603-20240506-009999"))
    assert r.status == 202, r
    gw.stop()
    reopened = [o for o in gw.check_log() if o["event"] == "audit.opened"]
    assert reopened[-1]["last_seq"] == recs[-1]["seq"], reopened
    assert reopened[-1]["last_hash"] == recs[-1]["hash"], reopened
    _, recs2 = read_records(audit_path)
    assert recs2[:len(recs)] == recs
    assert [o for o in recs2[len(recs):] if o["event"] == "case.accepted"]
    v = verify(audit_path)
    assert v.returncode == 0, v.stdout + v.stderr


def test_without_audit_section_the_daemon_says_so(gw):
    gw.stop()
    assert [o for o in gw.check_log() if o["event"] == "audit.disabled"]
    assert not [o for o in gw.check_log() if o["event"] == "audit.opened"]


def test_bad_audit_section_is_a_config_problem(tmp_path):
    cfg = h.merge(h.default_config(), {"audit": {"rotate_bytes": -1, "pth": "x"}})
    p = tmp_path / "tbgw.json"
    p.write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    r = h.run_cli(["check-config", "-c", str(p), "--no-load"])
    assert r.returncode != 0, r
    text = r.stdout + r.stderr
    assert "audit.pth: unknown key (allowed here: path, rotate_bytes)" in text, text
    assert "audit.rotate_bytes: -1 is out of range" in text, text
    assert "audit.path: missing" in text, text
