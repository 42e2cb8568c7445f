"""The HTTP/1.1 server against real clients and hostile peers (SPEC §4, §10):
keep-alive, pipelining, Expect: 100-continue, chunked bodies, header and
body limits (431, 413, 411), garbage (400), slow clients (408) and idle
connections. After every abuse the daemon still answers /healthz, and at
teardown it must stop cleanly (exit 0) with a clean log."""

import json
import socket
import time

import pytest

from tbgw_harness import (TOKEN, assert_problem, body_of, case_with_id, request_bytes,
                          sample)

LIMITS = {
    "local_api": {"limits": {"max_header_bytes": 2048, "max_header_count": 20,
                             "max_body_bytes": 1100000}},
    # max_body_bytes must cover base64 materials + 1 MiB (config cross-check).
    "cases": {"max_materials_bytes": 1024},
}

TIMEOUTS = {"local_api": {"timeouts_ms": {"header": 500, "body": 500, "keepalive": 1000,
                                          "write": 2000}}}


@pytest.fixture
def lim(gateway_factory):
    return gateway_factory(LIMITS, name="limits")


@pytest.fixture
def slow(gateway_factory):
    return gateway_factory(TIMEOUTS, name="timeouts")


def assert_closed(c, timeout=3.0):
    assert c.wait_closed(timeout), "the server kept the connection open"


# ---- keep-alive and pipelining ------------------------------------------------

def test_keep_alive_serves_several_requests_on_one_socket(gw):
    c = gw.raw()
    case = sample(0)
    reqs = [
        (request_bytes("GET", "/healthz", token=None), 200),
        (request_bytes("POST", "/v1/cases", body=body_of(case)), 202),
        (request_bytes("GET", "/v1/cases/%s" % case["case_id"]), 200),
        (request_bytes("POST", "/v1/cases", body=body_of(case)), 200),
        (request_bytes("GET", "/v1/events?after=0"), 200),
        (request_bytes("GET", "/nope", token=None), 404),
        (request_bytes("GET", "/readyz", token=None), 200),
    ]
    for data, status in reqs:
        c.send(data)
        r = c.read_response()
        assert r.status == status, r
        assert (r.header("Connection") or "").lower() != "close", r
    # The client asks to close: the answer says so and the server closes.
    c.send(request_bytes("GET", "/healthz", token=None, headers={"Connection": "close"}))
    r = c.read_response()
    assert r.status == 200
    assert (r.header("Connection") or "").lower() == "close", r
    assert_closed(c)
    c.close()

    # http.client reuses its socket as well.
    conn = gw.conn()
    gw.request("GET", "/healthz", conn=conn)
    sock = conn.sock
    for _ in range(5):
        assert gw.request("GET", "/healthz", conn=conn).status == 200
        assert conn.sock is sock
    conn.close()


def test_http_1_0_is_answered_and_closed(gw):
    c = gw.raw()
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    r = c.read_response()
    assert r.status == 200, r
    assert_closed(c)
    c.close()


def test_pipelined_requests_are_answered_in_order(gw):
    case = sample(0)
    c = gw.raw()
    c.send(request_bytes("GET", "/healthz", token=None)
           + request_bytes("POST", "/v1/cases", body=body_of(case))
           + request_bytes("GET", "/v1/cases/%s" % case["case_id"]))
    r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
    assert r1.status == 200 and r1.json() == {"status": "ok"}, r1
    assert r2.status == 202 and r2.json()["case_id"] == case["case_id"], r2
    assert r3.status == 200, r3
    v = r3.json()
    assert v["case_id"] == case["case_id"] and v["status"] == "queued", v
    c.close()
    assert gw.healthy()


def test_pipelined_answers_stay_in_order_behind_a_long_poll(gw):
    c = gw.raw()
    cursor = gw.events(after=0).json()["next_after"]
    t0 = time.monotonic()
    c.send(request_bytes("GET", "/v1/events?after=%d&wait=1" % cursor)
           + request_bytes("GET", "/healthz", token=None)
           + request_bytes("GET", "/nope", token=None))
    r1 = c.read_response()
    elapsed = time.monotonic() - t0
    r2, r3 = c.read_response(), c.read_response()
    assert r1.status == 200 and r1.json() == {"events": [], "next_after": cursor}, r1
    assert elapsed >= 0.9, "the long-poll answered after %.2f s" % elapsed
    assert r2.status == 200 and r2.json() == {"status": "ok"}, r2
    assert r3.status == 404, r3
    c.close()


def test_many_pipelined_requests_in_one_write(gw):
    c = gw.raw()
    n = 40
    c.send(b"".join(request_bytes("GET", "/healthz?n=%d" % i, token=None) for i in range(n)))
    for i in range(n):
        r = c.read_response()
        assert r.status == 200, (i, r)
    c.close()


# ---- Expect, chunked --------------------------------------------------------------

def test_expect_100_continue(gw):
    case = sample(1)
    body = body_of(case)
    c = gw.raw()
    head = request_bytes("POST", "/v1/cases", body=body, headers={"Expect": "100-continue"})
    c.send(head[:-len(body)])
    r = c.read_response(timeout=3)
    assert r.status == 100, "expected 100 Continue before the body, got %r" % r
    c.send(body)
    r = c.read_response()
    assert r.status == 202, r
    assert r.json()["case_id"] == case["case_id"]
    c.close()


def test_expect_100_continue_over_the_limit_gets_413_and_no_100(lim):
    c = lim.raw()
    c.send("POST /v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: application/json\r\nContent-Length: 5000000\r\n"
           "Expect: 100-continue\r\n\r\n" % TOKEN)
    r = c.read_response(timeout=3)
    assert_problem(r, 413)
    c.close()
    assert lim.healthy()


def test_chunked_post_is_accepted(gw):
    case = sample(2)
    body = body_of(case)
    chunks = [body[i:i + 100] for i in range(0, len(body), 100)]
    wire = b"".join(b"%x\r\n%s\r\n" % (len(ch), ch) for ch in chunks) + b"0\r\n\r\n"
    c = gw.raw()
    c.send("POST /v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % TOKEN)
    for i in range(0, len(wire), 300):
        c.send(wire[i:i + 300])
        time.sleep(0.01)
    r = c.read_response()
    assert r.status == 202, r
    assert r.json()["case_id"] == case["case_id"]
    # Still usable afterwards.
    c.send(request_bytes("GET", "/v1/cases/%s" % case["case_id"]))
    assert c.read_response().status == 200
    c.close()


# ---- limits -------------------------------------------------------------------------

def test_oversized_header_is_431(lim):
    c = lim.raw()
    c.send(request_bytes("GET", "/healthz", token=None, headers={"X-Fill": "a" * 4000}))
    assert_problem(c.read_response(), 431)
    assert_closed(c)
    c.close()
    # A long request line counts too.
    c = lim.raw()
    c.send(request_bytes("GET", "/healthz?" + "q" * 3000, token=None))
    assert_problem(c.read_response(), 431)
    c.close()
    assert lim.healthy()


def test_too_many_headers_is_431(lim):
    c = lim.raw()
    c.send(request_bytes("GET", "/healthz", token=None,
                         headers={"X-H%d" % i: "v" for i in range(30)}))
    assert_problem(c.read_response(), 431)
    assert_closed(c)
    c.close()
    # Just under the count is fine.
    c = lim.raw()
    c.send(request_bytes("GET", "/healthz", token=None,
                         headers={"X-H%d" % i: "v" for i in range(15)}))
    assert c.read_response().status == 200
    c.close()
    assert lim.healthy()


def test_content_length_over_the_limit_is_413_before_the_body_is_sent(lim):
    c = lim.raw()
    t0 = time.monotonic()
    c.send("POST /v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n" % TOKEN)
    r = c.read_response(timeout=3)
    assert_problem(r, 413)
    assert time.monotonic() - t0 < 3
    assert_closed(c)
    c.close()
    assert lim.healthy()


def test_body_just_under_the_limit_is_read(lim):
    # A body of 1 MiB + a bit (under max_body_bytes) is read and judged (422:
    # remarks too long), not refused as too large.
    case = sample(0)
    case["remarks"] = "x" * 1050000
    r = lim.post_case(case)
    assert r.status == 422, r


def test_post_without_content_length_is_411(gw):
    c = gw.raw()
    c.send("POST /v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: application/json\r\n\r\n" % TOKEN)
    r = c.read_response(timeout=5)
    assert_problem(r, 411)
    c.close()
    assert gw.healthy()


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    b"HELLO THERE\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST /v1/cases HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /he\x00lthz HTTP/1.1\r\n\r\n",
    b"POST /v1/cases HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/cases HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
])
def test_garbage_is_400_and_closed(gw, garbage):
    c = gw.raw()
    c.send(garbage)
    r = c.read_response(timeout=5)
    assert_problem(r, 400)
    assert_closed(c)
    c.close()
    assert gw.healthy()


def test_unsupported_http_version_is_rejected(gw):
    c = gw.raw()
    c.send(b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
    r = c.read_response(timeout=5)
    assert r.status in (400, 505), r
    assert_problem(r, r.status)
    c.close()
    assert gw.healthy()


# ---- slow and idle clients ---------------------------------------------------------

def test_slowloris_headers_get_408_and_the_socket_is_closed(slow):
    c = slow.raw()
    data = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    t0 = time.monotonic()
    got_answer = False
    for i in range(len(data)):
        try:
            c.send(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        if c.readable_within(0.2):
            got_answer = True
            break
        assert time.monotonic() - t0 < 5, "no answer to a slowloris client after 5 s"
    assert got_answer, "the server read a whole slow header block without timing out"
    r = c.read_response(timeout=2)
    elapsed = time.monotonic() - t0
    assert_problem(r, 408)
    assert 0.4 <= elapsed < 1.6, "408 after %.2f s (header timeout 0.5 s)" % elapsed
    assert_closed(c)
    c.close()
    assert slow.healthy()


def test_stalled_body_gets_408(slow):
    c = slow.raw()
    c.send("POST /v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"schema\":" % TOKEN)
    t0 = time.monotonic()
    r = c.read_response(timeout=5)
    elapsed = time.monotonic() - t0
    assert_problem(r, 408)
    assert 0.4 <= elapsed < 2.0, "408 after %.2f s (body timeout 0.5 s)" % elapsed
    assert_closed(c)
    c.close()
    assert slow.healthy()


def test_idle_keep_alive_connection_is_closed(slow):
    c = slow.raw()
    c.send(request_bytes("GET", "/healthz", token=None))
    assert c.read_response().status == 200
    t0 = time.monotonic()
    assert not c.readable_within(0.4), "closed or answered long before the keep-alive timeout"
    assert c.wait_closed(3.0), "an idle keep-alive connection stayed open"
    elapsed = time.monotonic() - t0
    assert elapsed < 2.5, elapsed
    if c.buf:  # a server may say 408 before closing an idle connection
        assert c.buf.startswith(b"HTTP/1.1 408 "), c.buf[:200]
    c.close()
    assert slow.healthy()


def test_a_long_poll_outlives_short_connection_timeouts(slow):
    cursor = slow.events(after=0).json()["next_after"]
    c = slow.raw()
    t0 = time.monotonic()
    c.send(request_bytes("GET", "/v1/events?after=%d&wait=2" % cursor))
    r = c.read_response(timeout=5)
    elapsed = time.monotonic() - t0
    assert r.status == 200, r
    assert r.json() == {"events": [], "next_after": cursor}
    assert elapsed >= 1.9, elapsed
    c.send(request_bytes("GET", "/healthz", token=None))
    assert c.read_response().status == 200
    c.close()


def test_slow_but_steady_body_is_not_cut_off(slow):
    # Each read resets the body timer: a body trickling in every 200 ms with
    # a 500 ms body timeout completes (and takes longer than the timeout).
    case = sample(4)
    body = body_of(case)
    c = slow.raw()
    head = request_bytes("POST", "/v1/cases", body=body)
    c.send(head[:-len(body)])
    step = max(1, len(body) // 5)
    for i in range(0, len(body), step):
        c.send(body[i:i + step])
        time.sleep(0.2)
    r = c.read_response(timeout=5)
    assert r.status == 202, r
    c.close()


def test_abuse_does_not_disturb_a_parallel_client(slow):
    # One slowloris socket and one stalled body are open while a normal
    # client keeps being served promptly.
    a = slow.raw()
    a.send(b"GET /healthz HTTP/1.1\r\n")
    b = slow.raw()
    b.send("POST /v1/cases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{" % TOKEN)
    for i in range(5):
        t0 = time.monotonic()
        assert slow.post_case(case_with_id("parallel-%d" % i)).status == 202
        assert time.monotonic() - t0 < 1.0
    a.close()
    b.close()
    assert slow.healthy()


def test_connections_over_max_connections_get_503(gateway_factory):
    gw = gateway_factory({"local_api": {"limits": {"max_connections": 3}}}, name="maxconn")
    held = [gw.raw() for _ in range(3)]
    for c in held:  # make sure all three are accepted and served
        c.send(request_bytes("GET", "/healthz", token=None))
        assert c.read_response().status == 200
    extra = gw.raw()
    extra.send(request_bytes("GET", "/healthz", token=None))
    r = extra.read_response(timeout=5)
    assert_problem(r, 503)
    assert_closed(extra)
    extra.close()
    held.pop().close()
    time.sleep(0.2)
    assert gw.healthy()
    for c in held:
        c.close()


def test_a_client_that_never_reads_is_cut_off_by_the_write_timeout(slow):
    # A small receive buffer and many pipelined /metrics requests: the
    # server's writes stall; after the write timeout (2 s) it drops the
    # connection instead of buffering answers without bound.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", slow.port))
    req = request_bytes("GET", "/metrics", token=None)
    sent = 0
    s.setblocking(False)
    deadline = time.monotonic() + 3
    while sent < 3000 and time.monotonic() < deadline:
        try:
            s.send(req)
            sent += 1
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break
    time.sleep(3.5)
    assert slow.healthy()
    s.setblocking(True)
    s.settimeout(5)
    got = b""
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    answered = got.count(b"HTTP/1.1 200 ")
    print("write-timeout: sent", sent, "answered", answered)
    assert answered < sent, "all %d answers were kept for a client that did not read" % sent
    assert slow.healthy()
