"""The local API (SPEC §4) over real sockets: case acceptance, routing,
idempotency, validation answers, authentication, the event feed (cursor,
long-poll, exactly-once) and /healthz, /readyz, /metrics."""

import json
import threading
import time

from tbgw_harness import (ROUTES, TOKEN, assert_problem, body_of, case_with_id,
                          id_check_char, load_samples, metric_value, parse_prometheus,
                          sample)


def reorder(o):
    """Same JSON value, keys in reverse order at every level."""
    if isinstance(o, dict):
        return {k: reorder(o[k]) for k in reversed(list(o.keys()))}
    if isinstance(o, list):
        return [reorder(x) for x in o]
    return o


def post_all_samples(gw):
    out = {}
    for name, case in load_samples():
        r = gw.post_case(case)
        out[case["case_id"]] = (case, r)
    return out


# ---- POST /v1/cases ---------------------------------------------------------

def test_each_sample_is_accepted_with_202_and_routed_to_its_partner(gw):
    for name, case in load_samples():
        r = gw.post_case(case)
        assert r.status == 202, (name, r)
        assert r.content_type == "application/json", r
        a = r.json()
        assert a == {"case_id": case["case_id"], "partner": ROUTES[case["target_region"]],
                     "status": "queued"}, (name, a)
        assert r.header("Location") == "/v1/cases/%s" % case["case_id"], r


def test_routing_table(gw):
    seen = {}
    for _, case in load_samples():
        seen[case["target_region"]] = gw.post_case(case).json()["partner"]
    assert seen == {"370683": "laizhou", "370685": "zhaoyuan", "440203": "wujiang"}


def test_same_body_again_answers_200_with_the_same_answer(gw):
    for _, case in load_samples():
        first = gw.post_case(case)
        assert first.status == 202, first
        again = gw.post_case(case)
        assert again.status == 200, again
        assert again.json() == first.json()
        assert again.header("Location") == first.header("Location")


def test_same_case_with_other_whitespace_and_key_order_is_the_same_case(gw):
    case = sample(0)
    first = gw.post_case(case)
    assert first.status == 202, first
    pretty = json.dumps(reorder(case), ensure_ascii=False, indent=4).encode("utf-8")
    assert pretty != body_of(case)
    again = gw.post_case(pretty)
    assert again.status == 200, again
    assert again.json() == first.json()
    # \u escapes decode to the same string: still the same case.
    escaped = json.dumps(case, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    r = gw.post_case(escaped)
    assert r.status == 200, r


def test_different_body_under_an_existing_case_id_is_409(gw):
    case = sample(0)
    assert gw.post_case(case).status == 202
    other = sample(0)
    other["remarks"] = "changed after acceptance"
    r = gw.post_case(other)
    p = assert_problem(r, 409)
    assert "case_id" in p["detail"] or "case_id" in p["title"], p
    # The first body still answers 200 and the case is unchanged.
    assert gw.post_case(case).status == 200
    v = gw.get_case(case["case_id"]).json()
    assert len(v["timeline"]) == 1, v


def test_get_case_shows_queued_status_partner_and_a_one_event_timeline(gw):
    accepted = post_all_samples(gw)
    feed, _ = gw.all_events()
    seq_of = {e["case_id"]: e["seq"] for e in feed}
    for case_id, (case, r) in accepted.items():
        assert r.status == 202, r
        g = gw.get_case(case_id)
        assert g.status == 200, g
        assert g.content_type == "application/json", g
        v = g.json()
        assert v["case_id"] == case_id
        assert v["status"] == "queued", v
        assert v["partner"] == ROUTES[case["target_region"]], v
        assert v["origin_region"] == case["origin_region"], v
        assert v["target_region"] == case["target_region"], v
        assert isinstance(v["timeline"], list) and len(v["timeline"]) == 1, v
        ev = v["timeline"][0]
        assert ev["status"] == "queued", ev
        assert isinstance(ev["seq"], int) and ev["seq"] > 0, ev
        assert ev["seq"] == seq_of[case_id], (ev, seq_of)
        assert "at" in ev, ev


def test_get_unknown_case_is_404_problem(gw):
    r = gw.get_case("no-such-case-000")
    assert_problem(r, 404)


# ---- validation ---------------------------------------------------------------

def errors_of(r):
    p = assert_problem(r, 422)
    assert isinstance(p.get("errors"), list) and p["errors"], p
    for e in p["errors"]:
        assert set(("path", "code", "message")) <= set(e.keys()), e
        assert isinstance(e["message"], str) and e["message"], e
    return p, p["errors"]


def bad_id_number(case):
    good = case["applicant"]["id_number"]
    right = id_check_char(good[:17])
    assert right == good[17], "sample ID number should be valid"
    wrong = "0" if right != "0" else "1"
    return good[:17] + wrong


def test_wrong_id_check_character_is_422_at_applicant_id_number(gw):
    case = sample(0)
    case["applicant"]["id_number"] = bad_id_number(case)
    p, errs = errors_of(gw.post_case(case))
    assert [e["path"] for e in errs] == ["applicant.id_number"], errs
    assert errs[0]["code"] == "check-character", errs
    assert gw.get_case(case["case_id"]).status == 404  # nothing kept


def test_wrong_sm3_is_422_digest_mismatch_at_materials_0_sm3(gw):
    case = sample(0)
    case["materials"][0]["sm3"] = "0" * 64
    p, errs = errors_of(gw.post_case(case))
    assert {"path": "materials[0].sm3", "code": "digest-mismatch"} in [
        {"path": e["path"], "code": e["code"]} for e in errs], errs
    assert len(errs) == 1, errs


def test_unknown_top_level_field_is_rejected(gw):
    case = sample(1)
    case["remark"] = "typo of remarks"
    p, errs = errors_of(gw.post_case(case))
    assert [(e["path"], e["code"]) for e in errs] == [("remark", "unknown-field")], errs


def test_several_violations_are_all_listed(gw):
    case = sample(0)
    case["applicant"]["id_number"] = bad_id_number(case)
    case["materials"][0]["sm3"] = "0" * 64
    case["delivery"]["method"] = "pigeon"
    case["accepted_at"] = "2024-05-06 10:00:00"
    case["colour"] = "blue"
    del case["item"]
    p, errs = errors_of(gw.post_case(case))
    paths = [e["path"] for e in errs]
    for want in ("applicant.id_number", "materials[0].sm3", "delivery.method", "accepted_at",
                 "colour", "item"):
        assert want in paths, (want, errs)
    assert str(len(errs)) in p["detail"], p


def test_unrouted_target_region_is_422_no_route(gw):
    case = sample(0)
    case["target_region"] = "110101"
    r = gw.post_case(case)
    p = assert_problem(r, 422, "no-route")
    assert [e["path"] for e in p["errors"]] == ["target_region"], p
    assert gw.get_case(case["case_id"]).status == 404


def test_malformed_json_is_400_with_line_and_column(gw):
    body = b'{\n  "schema": "tongban.case/v1",\n  "case_id": oops\n}'
    p = assert_problem(gw.post_case(body), 400)
    assert "line" in p["detail"] and "column" in p["detail"], p
    assert "3" in p["detail"], p  # the error is on line 3
    p = assert_problem(gw.post_case(b""), 400)
    p = assert_problem(gw.post_case(b'{"a":1,"a":2}'), 400)  # duplicate keys


def test_wrong_content_type_is_415(gw):
    r = gw.post_case(body_of(sample(0)), content_type="text/plain")
    assert_problem(r, 415)
    r = gw.post_case(body_of(sample(0)), content_type=None)
    assert_problem(r, 415)
    assert gw.get_case(sample(0)["case_id"]).status == 404


def test_missing_or_bad_token_is_401_with_www_authenticate(gw):
    for token in (None, "wrong-token-0123456789abcdef", TOKEN[:-1], TOKEN + "x", ""):
        for method, path, body in (("POST", "/v1/cases", sample(0)),
                                   ("GET", "/v1/cases/x", None),
                                   ("GET", "/v1/events?after=0", None)):
            r = gw.request(method, path, body=body, token=token)
            assert_problem(r, 401)
            assert (r.header("WWW-Authenticate") or "").lower().startswith("bearer"), r
    r = gw.request("GET", "/v1/events", headers={"Authorization": "Basic " + TOKEN}, token=None)
    assert_problem(r, 401)
    assert gw.get_case(sample(0)["case_id"]).status == 404


def test_unknown_path_is_404(gw):
    assert_problem(gw.request("GET", "/v1/nothing-here/at/all"), 404)
    assert_problem(gw.request("GET", "/nothing", token=None), 404)
    assert_problem(gw.request("GET", "/v1/cases/a/b/c"), 404)


def test_wrong_method_is_405_with_allow(gw):
    r = gw.request("DELETE", "/v1/cases")
    assert_problem(r, 405)
    allow = [m.strip() for m in (r.header("Allow") or "").split(",")]
    assert "POST" in allow and "DELETE" not in allow, r
    r = gw.request("GET", "/v1/cases")
    assert_problem(r, 405)
    r = gw.request("POST", "/healthz", body=b"{}", token=None)
    assert_problem(r, 405)
    assert "GET" in (r.header("Allow") or ""), r


# ---- health and metrics --------------------------------------------------------

def test_healthz_and_readyz(gw):
    r = gw.request("GET", "/healthz", token=None)
    assert r.status == 200, r
    r = gw.request("GET", "/readyz", token=None)
    assert r.status == 200, r
    v = r.json()
    assert v["checks"]["store"] == "ok", v


def test_metrics_are_valid_prometheus_text_with_exact_counts(gw):
    post_all_samples(gw)
    gw.post_case(sample(0))                       # 200 (same again)
    bad = sample(0)
    bad["remark"] = "x"
    gw.post_case(bad)                             # 422
    gw.post_case(b"{", content_type="application/json")  # 400
    gw.get_case("no-such-case")                   # 404
    r = gw.request("GET", "/metrics", token=None)
    assert r.status == 200, r
    assert r.content_type == "text/plain", r
    fams = parse_prometheus(r.body.decode("utf-8"))

    def val(name, **labels):
        v = metric_value(fams, name, **labels)
        assert v is not None, "no sample %s%r in:\n%s" % (name, labels, r.body.decode())
        return v

    assert fams["tbgw_http_requests_total"]["type"] == "counter"
    assert val("tbgw_http_requests_total", route="/v1/cases", status="202") == 5
    assert val("tbgw_http_requests_total", route="/v1/cases", status="200") == 1
    assert val("tbgw_http_requests_total", route="/v1/cases", status="422") == 1
    assert val("tbgw_http_requests_total", route="/v1/cases", status="400") == 1
    assert val("tbgw_http_requests_total", route="/v1/cases/{id}", status="404") == 1
    assert val("tbgw_cases_accepted_total", partner="laizhou") == 2
    assert val("tbgw_cases_accepted_total", partner="zhaoyuan") == 1
    assert val("tbgw_cases_accepted_total", partner="wujiang") == 2
    assert fams["tbgw_store_commit_duration_seconds"]["type"] == "histogram"
    assert val("tbgw_store_commit_duration_seconds_count") > 0
    assert fams["tbgw_http_request_duration_seconds"]["type"] == "histogram"
    assert val("tbgw_http_request_duration_seconds_count", route="/v1/cases") == 8

    # Queue gauges read from the store at scrape time: the test partners are
    # unreachable, so every accepted case is still waiting for its partner.
    assert fams["tbgw_queue_messages"]["type"] == "gauge"
    for partner, n in (("laizhou", 2), ("zhaoyuan", 1), ("wujiang", 2)):
        waiting = (val("tbgw_queue_messages", partner=partner, state="queued")
                   + val("tbgw_queue_messages", partner=partner, state="sending"))
        assert waiting == n, (partner, waiting)
        assert val("tbgw_queue_messages", partner=partner, state="failed") == 0
        assert 0 <= val("tbgw_queue_oldest_age_seconds", partner=partner) < 300
    # Every configured key with a certificate reports its time to expiry.
    expiry = [s for s in fams["tbgw_certificate_expiry_seconds"]["samples"]]
    assert expiry, "no certificate expiry gauges"
    assert all(v > 86400 for (_name, _labels, v) in expiry), expiry

    # Counters only grow, and a second scrape sees this scrape counted.
    r2 = gw.request("GET", "/metrics", token=None)
    fams2 = parse_prometheus(r2.body.decode("utf-8"))
    assert metric_value(fams2, "tbgw_http_requests_total", route="/metrics", status="200") >= 1
    assert metric_value(fams2, "tbgw_cases_accepted_total", partner="laizhou") == 2


def test_problem_bodies_always_carry_type_title_status_detail(gw):
    cases = [
        (gw.request("GET", "/v1/cases/x", token=None), 401),
        (gw.request("GET", "/nope", token=None), 404),
        (gw.request("PUT", "/v1/cases", body=b"{}"), 405),
        (gw.post_case(b"[", content_type="application/json"), 400),
        (gw.post_case(b"{}", content_type="text/xml"), 415),
        (gw.post_case({"schema": "tongban.case/v2"}), 422),
        (gw.request("GET", "/v1/events?after=x"), 400),
    ]
    for r, status in cases:
        assert_problem(r, status)


# ---- the event feed -----------------------------------------------------------

def test_event_feed_lists_queued_events_in_order_with_a_cursor(gw):
    accepted = post_all_samples(gw)
    r = gw.events(after=0)
    assert r.status == 200, r
    page = r.json()
    evs = page["events"]
    assert len(evs) == 5, page
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5, seqs
    assert page["next_after"] == seqs[-1], page
    assert [e["case_id"] for e in evs] == list(accepted.keys())
    for e in evs:
        assert e["status"] == "queued", e
        assert e["partner"] == ROUTES[accepted[e["case_id"]][0]["target_region"]], e
        assert e["type"] == "case.status", e
    # after=next_after: nothing newer; then only what is newer.
    cursor = page["next_after"]
    r = gw.events(after=cursor)
    assert r.json() == {"events": [], "next_after": cursor}
    new = case_with_id("cursor-test-0001")
    assert gw.post_case(new).status == 202
    page = gw.events(after=cursor).json()
    assert [e["case_id"] for e in page["events"]] == ["cursor-test-0001"], page
    assert page["next_after"] > cursor
    # A cursor in the middle returns exactly the tail.
    page = gw.events(after=seqs[2]).json()
    assert [e["seq"] for e in page["events"]] == seqs[3:] + [page["next_after"]], page


def test_event_feed_limit(gw):
    post_all_samples(gw)
    page = gw.events(after=0, limit=2).json()
    assert len(page["events"]) == 2, page
    assert page["next_after"] == page["events"][1]["seq"]
    rest = gw.events(after=page["next_after"], limit=1000).json()
    assert len(rest["events"]) == 3, rest
    assert rest["events"][0]["seq"] > page["next_after"]
    one = gw.events(after=0, limit=1).json()
    assert len(one["events"]) == 1


def test_event_feed_bad_parameters_are_400(gw):
    for q in ("after=-1", "after=abc", "after=", "limit=0", "limit=1001", "limit=x",
              "wait=61", "wait=-1", "wait=1.5", "after=99999999999999999999999"):
        r = gw.request("GET", "/v1/events?" + q)
        p = assert_problem(r, 400)
        name = q.split("=")[0]
        assert name in p["detail"], (q, p)


def test_long_poll_is_woken_by_a_new_case(gw):
    post_all_samples(gw)
    cursor = gw.events(after=0).json()["next_after"]
    result = {}

    def poll():
        t0 = time.monotonic()
        r = gw.events(after=cursor, wait=5)
        result["elapsed"] = time.monotonic() - t0
        result["answered_at"] = time.monotonic()
        result["r"] = r

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.8)
    assert "r" not in result, "the long-poll answered before any new event: %r" % result
    posted_at = time.monotonic()
    assert gw.post_case(case_with_id("long-poll-0001")).status == 202
    th.join(10)
    assert not th.is_alive()
    r = result["r"]
    assert r.status == 200, r
    page = r.json()
    assert [e["case_id"] for e in page["events"]] == ["long-poll-0001"], page
    assert page["next_after"] == page["events"][0]["seq"] > cursor
    assert result["answered_at"] >= posted_at
    assert result["elapsed"] < 4.5, "woken only after %.2f s" % result["elapsed"]


def test_long_poll_expiry_returns_an_empty_page_with_the_same_cursor(gw):
    post_all_samples(gw)
    cursor = gw.events(after=0).json()["next_after"]
    t0 = time.monotonic()
    r = gw.events(after=cursor, wait=1)
    elapsed = time.monotonic() - t0
    assert r.status == 200, r
    assert r.json() == {"events": [], "next_after": cursor}
    assert 0.9 <= elapsed < 4, elapsed


def test_long_poll_with_older_events_answers_at_once(gw):
    post_all_samples(gw)
    t0 = time.monotonic()
    r = gw.events(after=0, wait=5)
    assert time.monotonic() - t0 < 2
    assert len(r.json()["events"]) == 5


def test_feed_reader_sees_each_of_50_concurrent_cases_exactly_once(gw):
    # Two events exist before the reader starts.
    post_all_samples(gw)
    cursor0 = gw.events(after=0).json()["next_after"]
    ids = ["eo-%04d" % i for i in range(50)]
    seen = []
    seqs = []
    stop = threading.Event()
    errors = []

    def reader():
        cursor = cursor0
        conn = gw.conn(timeout=30)
        try:
            while not stop.is_set():
                r = gw.events(after=cursor, wait=2, limit=7, conn=conn)
                if r.status != 200:
                    errors.append(r)
                    return
                page = r.json()
                for e in page["events"]:
                    seen.append(e["case_id"])
                    seqs.append(e["seq"])
                if page["events"]:
                    assert page["next_after"] == page["events"][-1]["seq"]
                else:
                    assert page["next_after"] == cursor
                cursor = page["next_after"]
                if len(set(seen) & set(ids)) == len(ids):
                    # one more round to catch duplicates that would follow
                    r = gw.events(after=cursor, wait=1, conn=conn)
                    for e in r.json()["events"]:
                        seen.append(e["case_id"])
                        seqs.append(e["seq"])
                    return
        except Exception as e:  # surfaced below
            errors.append(e)
        finally:
            conn.close()

    rt = threading.Thread(target=reader)
    rt.start()
    answers = {}
    lock = threading.Lock()

    def poster(chunk):
        conn = gw.conn()
        try:
            for cid in chunk:
                r = gw.post_case(case_with_id(cid, base_index=int(cid[3:]) % 5), conn=conn)
                with lock:
                    answers[cid] = r.status
        finally:
            conn.close()

    posters = [threading.Thread(target=poster, args=(ids[i::8],)) for i in range(8)]
    for t in posters:
        t.start()
    for t in posters:
        t.join(60)
    rt.join(60)
    stop.set()
    assert not errors, errors
    assert all(s == 202 for s in answers.values()) and len(answers) == 50, answers
    assert sorted(seen) == sorted(ids), "seen %d events: %r" % (len(seen), sorted(seen))
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs


# ---- more edges ------------------------------------------------------------------

def test_content_type_parameters_and_near_misses(gw):
    r = gw.post_case(body_of(sample(0)), content_type="application/json; charset=utf-8")
    assert r.status == 202, r
    r = gw.post_case(body_of(sample(1)), content_type="Application/JSON")
    assert r.status == 202, r
    for ct in ("application/jsonx", "application/json-patch+json", "text/json"):
        assert_problem(gw.post_case(body_of(sample(2)), content_type=ct), 415)
    assert gw.get_case(sample(2)["case_id"]).status == 404


def test_hostile_json_is_400_not_a_crash(gw):
    deep = b'{"form":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert_problem(gw.post_case(deep), 400)
    bad_utf8 = body_of(sample(0)).replace("张三".encode(), b"\xff\xfe", 1)
    assert_problem(gw.post_case(bad_utf8), 400)
    assert_problem(gw.post_case(b'{"case_id": "x"} trailing'), 400)
    assert_problem(gw.post_case(b'\x00{}'), 400)
    nul = body_of(sample(0)).replace(b'"remarks": ""', b'"remarks": "a\\u0000b"')
    assert nul != body_of(sample(0))
    r = gw.post_case(nul)
    assert r.status in (400, 422), r
    assert_problem(r, r.status)
    assert gw.healthy()


def test_concurrent_identical_posts_create_one_case(gw):
    case = sample(0)
    statuses = []
    lock = threading.Lock()
    barrier = threading.Barrier(10)

    def post():
        conn = gw.conn()
        conn.connect()
        barrier.wait()
        r = gw.post_case(case, conn=conn)
        conn.close()
        with lock:
            statuses.append(r.status)

    ts = [threading.Thread(target=post) for _ in range(10)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert sorted(statuses) == [200] * 9 + [202], statuses
    feed, _ = gw.all_events()
    assert [e["case_id"] for e in feed] == [case["case_id"]]


def test_concurrent_different_bodies_under_one_case_id_create_one_case(gw):
    statuses = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def post(i):
        c = sample(0)
        c["remarks"] = "variant %d" % i
        conn = gw.conn()
        conn.connect()
        barrier.wait()
        r = gw.post_case(c, conn=conn)
        conn.close()
        with lock:
            statuses.append(r.status)

    ts = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert sorted(statuses) == [202] + [409] * 7, statuses
    assert len(gw.all_events()[0]) == 1


def test_long_poll_client_that_goes_away_does_not_hurt(gw):
    cursor = gw.events(after=0).json()["next_after"]
    socks = []
    for _ in range(5):
        c = gw.raw()
        c.send(("GET /v1/events?after=%d&wait=5 HTTP/1.1\r\nHost: x\r\n"
                "Authorization: Bearer %s\r\n\r\n" % (cursor, TOKEN)).encode())
        socks.append(c)
    time.sleep(0.3)
    for c in socks[:3]:
        c.close()  # gone while parked
    time.sleep(0.2)
    assert gw.post_case(sample(0)).status == 202
    for c in socks[3:]:
        r = c.read_response(timeout=5)
        assert r.status == 200 and len(r.json()["events"]) == 1, r
        c.close()
    # Gone after being woken, before reading the answer.
    c = gw.raw()
    c.send(("GET /v1/events?after=0&wait=5 HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer %s\r\n\r\n" % TOKEN).encode())
    c.close()
    assert gw.healthy()
    assert gw.post_case(sample(1)).status == 202


def test_many_parked_long_polls_are_all_woken_by_one_case(gw):
    cursor = gw.events(after=0).json()["next_after"]
    results = []
    lock = threading.Lock()

    def poll():
        r = gw.events(after=cursor, wait=10)
        with lock:
            results.append(r)

    ts = [threading.Thread(target=poll) for _ in range(20)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    assert gw.post_case(sample(2)).status == 202
    for t in ts:
        t.join(15)
    assert time.monotonic() - t0 < 5
    assert len(results) == 20
    for r in results:
        assert r.status == 200, r
        assert [e["case_id"] for e in r.json()["events"]] == [sample(2)["case_id"]]


def test_head_requests_get_headers_only(gw):
    c = gw.raw()
    c.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.read_response(head=True)
    assert r.status == 200, r
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # no stray body bytes before this
    r = c.read_response()
    assert r.status == 200 and r.json() == {"status": "ok"}, r
    c.close()


def test_routes_not_built_yet_answer_a_problem(gw):
    for method, path in (("POST", "/v1/cases/x/withdraw"), ("POST", "/v1/cases/x/supplement"),
                         ("GET", "/v1/cases/x/evidence"), ("GET", "/v1/inbound/x"),
                         ("POST", "/v1/inbound/x/status")):
        r = gw.request(method, path, body=b"{}" if method == "POST" else None)
        p = assert_problem(r, r.status)
        assert r.status in (404, 501), r
