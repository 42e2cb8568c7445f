"""Operator commands against the store of a running gateway: `tbgw cases
list|show`, `tbgw partners`, `tbgw partner ping` (docs/operations.md).

The default configuration's partners point at closed ports, so posted cases
stay queued (and collect failed attempts) while the CLI reads the live
daemon's store file; a second test delivers through the mock partners for
receipts, evidence, last success and a ping that works end to end.
"""

import json
import re
import time

import tbgw_harness as h

ROUTES = h.ROUTES


def cli(g, *args, rc=0):
    p = h.run_cli(list(args) + ["-c", g.config_path])
    assert p.returncode == rc, "tbgw %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s" % (
        " ".join(args), p.returncode, rc, p.stdout, p.stderr)
    return p


def cli_json(g, *args, rc=0):
    return json.loads(cli(g, *(list(args) + ["--json"]), rc=rc).stdout)


def personal_data(samples):
    """Every applicant / agent string worth hiding, from the samples."""
    out = set()
    for _, case in samples:
        for who in ("applicant", "agent"):
            for k in ("name", "id_number", "phone", "address"):
                v = (case.get(who) or {}).get(k)
                if isinstance(v, str) and len(v) >= 2:
                    out.add(v)
    assert len(out) >= 10
    return out


def assert_no_personal_data(text, secrets, what):
    decoded = text
    try:
        decoded = json.dumps(json.loads(text), ensure_ascii=False)
    except ValueError:
        pass
    for s in secrets:
        assert s not in text and s not in decoded, "%s shows personal data %r" % (what, s)
    # no 18-character ID number or 11-digit mobile number of any kind either
    assert not re.search(r"\b\d{17}[\dXx]\b", decoded), what
    assert not re.search(r"\b1\d{10}\b", decoded), what


def post_samples(g):
    samples = h.load_samples()
    for _, case in samples:
        r = g.post_case(case)
        assert r.status in (200, 201, 202), r
    return samples


def wait_for(pred, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_cases_and_partners_read_a_running_gateways_store(gw):
    samples = post_samples(gw)
    ids = {c["case_id"]: c for _, c in samples}
    secrets = personal_data(samples)

    # list: all, with metadata only
    doc = cli_json(gw, "cases", "list")
    assert doc["count"] == len(samples)
    assert {c["case_id"] for c in doc["cases"]} == set(ids)
    for c in doc["cases"]:
        assert set(c) == {"case_id", "status", "partner", "origin_region", "target_region",
                          "receipt_no", "created_at", "updated_at"}
        assert c["partner"] == ROUTES[ids[c["case_id"]]["target_region"]]
        assert c["updated_at"].endswith("+08:00")
    table = cli(gw, "cases", "list").stdout
    head = table.splitlines()[0].split()
    assert head[:3] == ["CASE_ID", "STATUS", "PARTNER"], table
    for cid in ids:
        assert cid in table
    assert "%d case(s)" % len(samples) in table
    assert_no_personal_data(table, secrets, "cases list")
    assert_no_personal_data(json.dumps(doc), secrets, "cases list --json")

    # filters
    wujiang = {cid for cid, c in ids.items() if ROUTES[c["target_region"]] == "wujiang"}
    got = cli_json(gw, "cases", "list", "--partner", "wujiang")
    assert {c["case_id"] for c in got["cases"]} == wujiang and wujiang
    # the partners are down: every case is queued or being delivered (retrying)
    statuses = {c["status"] for c in doc["cases"]}
    assert statuses <= {"queued", "delivering"}, statuses
    for st in statuses:
        got = cli_json(gw, "cases", "list", "--status", st)
        assert {c["case_id"] for c in got["cases"]} == \
            {c["case_id"] for c in doc["cases"] if c["status"] == st}
    assert cli_json(gw, "cases", "list", "--status", "delivered")["count"] == 0
    assert cli_json(gw, "cases", "list", "--since", "1h")["count"] == len(samples)
    assert cli_json(gw, "cases", "list", "--since", "2000-01-01T00:00:00+08:00")["count"] == \
        len(samples)
    assert cli_json(gw, "cases", "list", "--since", "2999-01-01T00:00:00Z")["count"] == 0
    assert "no cases" in cli(gw, "cases", "list", "--since", "2999-01-01T00:00:00Z").stdout
    p = cli(gw, "cases", "list", "--since", "yesterday", rc=2)
    assert "RFC 3339" in p.stderr

    # show
    cid = samples[0][1]["case_id"]
    s = cli_json(gw, "cases", "show", cid)
    for k in ("case_id", "status", "partner", "origin_region", "target_region", "receipt_no",
              "created_at", "updated_at", "last_error", "timeline", "messages", "evidence"):
        assert k in s, k
    assert s["case_id"] == cid and s["partner"] == "laizhou"
    assert s["origin_region"] == samples[0][1]["origin_region"]
    assert s["timeline"][0]["status"] == "queued" and s["timeline"][0]["kind"] == "case.status"
    assert [m["msg_type"] for m in s["messages"]] == ["CASE_SUBMIT"]
    assert s["messages"][0]["state"] in ("queued", "sending")
    assert s["evidence"] == []  # no partner ever answered
    table = cli(gw, "cases", "show", cid).stdout
    for word in ("status", "timeline", "SEQ", "outbound messages", "CASE_SUBMIT", "evidence"):
        assert word in table, word
    for _, case in samples:
        out = cli(gw, "cases", "show", case["case_id"]).stdout
        out += cli(gw, "cases", "show", case["case_id"], "--json").stdout
        assert_no_personal_data(out, secrets, "cases show")
    p = cli(gw, "cases", "show", "430603-20990101-999999", rc=1)
    assert "no case" in p.stderr and "cases list" in p.stderr

    # partners: counts equal what was posted (every message is live; the
    # engine probes a dead partner before it claims, so nothing is sending)
    d = cli_json(gw, "partners")
    by = {p["name"]: p for p in d["partners"]}
    assert [p["name"] for p in d["partners"]] == ["laizhou", "zhaoyuan", "wujiang"]
    for name in by:
        want = sum(1 for c in ids.values() if ROUTES[c["target_region"]] == name)
        assert by[name]["queued"] + by[name]["sending"] == want and want, (name, by[name])
        assert by[name]["failed"] == 0
        assert by[name]["last_success_at"] is None
        assert by[name]["oldest_queued_age_s"] is not None
        assert by[name]["endpoint"].startswith("https://127.0.0.1:")
    assert by["wujiang"]["adapter"] == "yue-json"
    assert "tbgw_circuit_state" in d["circuit_state"]
    table = cli(gw, "partners").stdout
    assert table.splitlines()[0].split()[:3] == ["PARTNER", "ADAPTER", "ENDPOINT"]
    assert "tbgw_circuit_state" in table

    # ping a closed port: TCP fails, exit 1
    port = h.free_port()
    cfg = json.loads(json.dumps(gw.config))
    cfg["partners"][0]["endpoint"] = "https://127.0.0.1:%d" % port
    gw.write_config(cfg)
    doc = cli_json(gw, "partner", "ping", "laizhou", rc=1)
    stages = {s["stage"]: s for s in doc["stages"]}
    assert stages["dns"]["result"] == "ok"
    assert stages["tcp"]["result"] == "failed" and stages["tcp"]["detail"]
    assert stages["tls"]["result"] == "skipped"
    assert doc["ok"] is False
    out = cli(gw, "partner", "ping", "laizhou", rc=1).stdout
    assert re.search(r"tcp\s+failed", out) and "FAILED" in out
    cli(gw, "partner", "ping", "nosuch", rc=1)

    # usage and help
    for args in (["cases", "--help"], ["partners", "--help"], ["partner", "ping", "--help"]):
        p = h.run_cli(args)
        assert p.returncode == 0 and "usage:" in p.stdout, args
    assert h.run_cli(["cases", "list"]).returncode == 2  # no -c
    assert h.run_cli(["cases", "frob", "-c", gw.config_path]).returncode == 2
    assert h.run_cli(["cases", "show", "-c", gw.config_path]).returncode == 2
    assert h.run_cli(["partner", "ping", "-c", gw.config_path]).returncode == 2

    # the daemon was not disturbed
    assert gw.healthy()


def test_delivered_case_evidence_last_success_and_ping(delivery_gateway, partners):
    g = delivery_gateway()
    case = h.sample(0)  # laizhou
    assert g.post_case(case).status in (200, 201, 202)
    cid = case["case_id"]

    def delivered():
        s = cli_json(g, "cases", "show", cid)
        return s if s["status"] not in ("queued", "delivering") else None
    s = wait_for(delivered, what="delivery")
    assert s["status"] in ("delivered", "accepted"), s
    assert s["receipt_no"]
    assert s["messages"][0]["state"] == "delivered" and s["messages"][0]["attempts"] >= 1
    out_ev = [e for e in s["evidence"] if e["direction"] == "out"]
    assert out_ev and out_ev[0]["msg_type"] == "CASE_SUBMIT" and out_ev[0]["bytes"] > 0
    assert "raw_base64" not in out_ev[0]
    raw = cli_json(g, "cases", "show", cid, "--raw")
    assert raw["evidence"][0]["raw_base64"]
    table = cli(g, "cases", "show", cid, "--raw").stdout
    assert "--- evidence" in table

    d = cli_json(g, "partners")
    by = {p["name"]: p for p in d["partners"]}
    assert by["laizhou"]["last_success_at"], by["laizhou"]
    assert by["laizhou"]["queued"] == 0

    doc = cli_json(g, "partner", "ping", "laizhou")
    assert doc["ok"] is True
    assert all(s["result"] in ("ok", "not checked") for s in doc["stages"]), doc
    doc = cli_json(g, "partner", "ping", "laizhou", "--http")
    stages = {s["stage"]: s for s in doc["stages"]}
    assert stages["http"]["result"] == "ok" and stages["client_cert"]["result"] == "ok", doc
    assert g.healthy()
