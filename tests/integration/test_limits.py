"""Hostile-input limits of the local API (SPEC §10): the per-client request
rate (local_api.rate_limit → 429 rate-limited with Retry-After; /healthz,
/readyz and /metrics are never limited) and the nesting depth of case bodies
(cases.max_json_depth → 400 json-too-deep, checked before parsing)."""

import json
import time

from tbgw_harness import TOKEN, assert_problem, body_of, sample

RATE = {"local_api": {"rate_limit": {"requests_per_s": 5, "burst": 5}}}


def burst_until_limited(gw, n=40, **kw):
    """Sends up to n requests back to back; returns (answers before the 429,
    the 429 response or None)."""
    before = []
    for _ in range(n):
        r = gw.request("GET", "/v1/cases/no-such-case", **kw)
        if r.status == 429:
            return before, r
        before.append(r)
    return before, None


def check_429(r):
    p = assert_problem(r, 429, "rate-limited")
    ra = r.header("Retry-After")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, r
    return p, int(ra)


def test_burst_over_the_limit_is_refused_then_allowed_again(gateway_factory):
    gw = gateway_factory(RATE, name="rate")
    before, limited = burst_until_limited(gw, token=TOKEN)
    assert limited is not None, "40 requests in a burst were never limited"
    # the whole burst went through first (refill during it can add a few)
    assert len(before) >= 5, before
    assert all(r.status == 404 for r in before), before
    _, retry = check_429(limited)
    # probes and scrapes are exempt, even while the client is limited
    for _ in range(30):
        assert gw.request("GET", "/healthz", token=None).status == 200
    assert gw.request("GET", "/readyz", token=None).status in (200, 503)
    assert gw.request("GET", "/metrics", token=None).status == 200
    time.sleep(retry + 0.2)
    r = gw.request("GET", "/v1/cases/no-such-case")
    assert r.status == 404, r


def test_unauthenticated_floods_are_limited_per_address(gateway_factory):
    gw = gateway_factory(RATE, name="rate-anon")
    before, limited = burst_until_limited(gw, token=None)
    assert limited is not None
    assert len(before) >= 5 and all(r.status == 401 for r in before), before
    check_429(limited)


def test_healthz_is_never_limited(gateway_factory):
    gw = gateway_factory(RATE, name="rate-health")
    for _ in range(60):
        r = gw.request("GET", "/healthz", token=None)
        assert r.status == 200, r
    # and health probes took nothing from the API budget
    assert gw.request("GET", "/v1/cases/no-such-case").status == 404


def nested(depth):
    v = 1
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


def test_case_nested_too_deep_is_refused_before_parsing(gateway_factory):
    gw = gateway_factory({"cases": {"max_json_depth": 8}}, name="depth")
    case = sample(0)
    case["extra"] = nested(20)  # 21 levels with the case object
    r = gw.post_case(case)
    p = assert_problem(r, 400, "json-too-deep")
    assert "8" in p["detail"], p
    # deeper than jansson's own cap: still our answer, not a parser error
    r = gw.request("POST", "/v1/cases", body=b"[" * 5000 + b"]" * 5000)
    assert_problem(r, 400, "json-too-deep")
    # brackets inside strings do not count
    case = sample(0)
    case["extra"] = "[[[[[[[[[[{{{{{{{{{{\\\"[[[["
    r = gw.post_case(case)
    if r.status == 400:
        assert not r.json()["type"].endswith("json-too-deep"), r


def test_case_within_the_depth_limit_is_not_refused_for_depth(gateway_factory):
    gw = gateway_factory({"cases": {"max_json_depth": 8}}, name="depth-ok")
    case = sample(0)
    case["extra"] = nested(5)  # 6 levels with the case object
    r = gw.post_case(case)
    if r.status == 400:
        assert not r.json()["type"].endswith("json-too-deep"), r
    # the unchanged sample is accepted
    r = gw.post_case(sample(0))
    assert r.status in (200, 202), r


def test_default_depth_limit_applies(gw):
    case = sample(0)
    case["extra"] = nested(40)
    p = assert_problem(gw.post_case(case), 400, "json-too-deep")
    assert "32" in p["detail"], p
    body = json.loads(body_of(sample(1)))
    assert gw.post_case(body).status in (200, 202)
