"""Operators' logs (SPEC §9): one JSON object per line with ts/level/event,
and personal data never in full: ID numbers, phone numbers and given names
from the cases must not appear in any line, whatever the clients sent
(valid cases, invalid ones, malformed JSON, repeats and conflicts)."""

import json
import subprocess
import time

from tbgw_harness import (TBGW_BIN, TOKEN, child_env, id_check_char, load_samples, sample)


def personal_data():
    """Strings from the samples that must never be logged in full."""
    ids, phones, names = set(), set(), set()

    def person(o):
        if not isinstance(o, dict):
            return
        if o.get("kind", "person") == "person":
            if o.get("id_number"):
                ids.add(o["id_number"])
            if o.get("name"):
                names.add(o["name"])
        if o.get("phone"):
            phones.add(o["phone"])

    def form_names(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("name", "names"):
                    for n in (v if isinstance(v, list) else [v]):
                        if isinstance(n, str) and n:
                            names.add(n)
                else:
                    form_names(v)
        elif isinstance(o, list):
            for x in o:
                form_names(x)

    for _, c in load_samples():
        person(c["applicant"])
        person(c.get("agent"))
        d = c.get("delivery") or {}
        if d.get("recipient"):
            names.add(d["recipient"])
        if d.get("phone"):
            phones.add(d["phone"])
        form_names(c.get("form"))
    # Given names (the family name, one character, may stay).
    given = {n[1:] for n in names if len(n) >= 3}
    return ids, phones, names | given


def scenario(gw):
    """Valid, repeated, conflicting, invalid and malformed submissions that
    all carry personal data."""
    for _, c in load_samples():
        assert gw.post_case(c).status == 202
    for _, c in load_samples():
        assert gw.post_case(c).status == 200
    c = sample(0)
    c["remarks"] = "conflict"
    assert gw.post_case(c).status == 409
    # Invalid: a wrong check character (the number is still personal data).
    c = sample(3)
    c["case_id"] = "logs-bad-id"
    good = c["applicant"]["id_number"]
    c["applicant"]["id_number"] = good[:17] + ("0" if id_check_char(good[:17]) != "0" else "1")
    assert gw.post_case(c).status == 422
    # Invalid: a bad phone, a bad agent, unknown fields named after data.
    c = sample(2)
    c["case_id"] = "logs-bad-phone"
    c["applicant"]["phone"] = c["applicant"]["phone"] + "9"
    c["agent"]["id_number"] = c["agent"]["id_number"][:-1] + "Y"
    c["applicant_name"] = sample(0)["applicant"]["name"]
    assert gw.post_case(c).status == 422
    # Unrouted.
    c = sample(1)
    c["case_id"] = "logs-no-route"
    c["target_region"] = "110101"
    assert gw.post_case(c).status == 422
    # Malformed JSON with personal data right at the error position.
    s = sample(0)
    bad = ('{"applicant": {"name": "%s", "id_number": %s, "phone": %s}}'
           % (s["applicant"]["name"], s["applicant"]["id_number"],
              s["applicant"]["phone"] + "x")).encode("utf-8")
    assert gw.post_case(bad).status == 400
    bad2 = ('{"name": %s}' % s["applicant"]["name"]).encode("utf-8")
    assert gw.post_case(bad2).status == 400
    # Refused requests of other kinds.
    assert gw.request("GET", "/v1/cases/no-such-case").status == 404
    assert gw.request("GET", "/v1/events?after=x").status == 400
    assert gw.request("GET", "/v1/cases/x", token="wrong-token-0123456789").status == 401
    c = gw.raw()
    c.send(b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n")
    assert c.read_response().status == 400
    c.close()
    # Reads.
    for _, c in load_samples():
        assert gw.get_case(c["case_id"]).status == 200
    assert gw.events(after=0).status == 200


def scan(lines_text, lines):
    ids, phones, names = personal_data()
    assert ids and phones and names
    leaks = []
    for raw in lines_text.splitlines():
        for what, values in (("ID number", ids), ("phone", phones), ("name", names)):
            for v in values:
                if v in raw:
                    leaks.append("%s %r in: %s" % (what, v, raw[:300]))
        # JSON escapes (\uXXXX) must not hide a name either.
    for o in lines:
        text = json.dumps(o, ensure_ascii=False)
        for v in names | ids | phones:
            if v in text and v not in lines_text:
                leaks.append("escaped %r in %s" % (v, text[:300]))
    assert not leaks, "personal data in the log:\n" + "\n".join(leaks)


def test_log_lines_are_json_and_carry_no_personal_data(gw):
    scenario(gw)
    gw.stop()
    lines = gw.check_log()  # every line JSON with ts/level/event, no sanitizer report
    text = gw.log_text()
    scan(text, lines)
    events = [o["event"] for o in lines]
    assert "gateway.started" in events, events[:10]
    assert events[-1] == "gateway.stopped", events[-3:]
    accepted = [o for o in lines if o["event"] == "case.accepted"]
    assert sorted(o["case_id"] for o in accepted) == sorted(c["case_id"] for _, c in load_samples())
    for o in accepted:
        assert o["level"] == "info" and o.get("partner") in ("laizhou", "zhaoyuan", "wujiang"), o
    assert TOKEN not in text, "the bearer token is in the log"


def test_log_file_option_writes_json_lines_to_the_file(gateway_factory):
    gw = gateway_factory({"log": {"file": "logs-tbgw.log", "level": "debug"}}, name="logfile")
    assert gw.post_case(sample(4)).status == 202
    gw.stop()
    path = gw.log_file()
    with open(path, "rb") as f:
        data = f.read().decode("utf-8")
    lines = [json.loads(x) for x in data.splitlines()]
    assert any(o["event"] == "gateway.started" for o in lines)
    assert any(o["event"] == "case.accepted" for o in lines)
    # Nothing of the log went to stderr.
    for p in gw.stderr_paths:
        with open(p, "rb") as f:
            assert f.read().strip() == b"", "log lines on stderr despite log.file"
    gw.check_log()
    scan(data, lines)


def test_log_level_warn_drops_info_lines(gateway_factory):
    # The harness needs gateway.started (info) to find the port, so check
    # the level through a log file read after the fact instead.
    gw = gateway_factory({"log": {"file": "lv.log", "level": "info"}}, name="level")
    gw.stop()
    gw.config["log"]["level"] = "warn"
    gw.write_config()
    with open(gw.log_file(), "rb") as f:
        before = f.read()
    p = subprocess.Popen([TBGW_BIN, "serve", "-c", gw.config_path], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=child_env())
    time.sleep(1.5)
    p.terminate()
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert b"Sanitizer" not in err and b"runtime error:" not in err, err
    with open(gw.log_file(), "rb") as f:
        after = f.read()[len(before):].decode("utf-8")
    for line in after.splitlines():
        o = json.loads(line)
        assert o["level"] in ("warn", "error"), o
