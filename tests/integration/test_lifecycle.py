"""The daemon's life and the CLI (SPEC §7 graceful shutdown, §9 CLI and
configuration): SIGTERM with requests in flight or a parked long-poll,
check-config, serve with a bad configuration, version, --help, unknown
commands, and `tbgw send`."""

import json
import os
import signal
import socket
import threading
import time

from tbgw_harness import (REPO_ROOT, TOKEN, Gateway, body_of, case_with_id, default_config,
                          free_port, merge, request_bytes, run_cli, sample, sample_paths)


# ---- graceful shutdown -----------------------------------------------------------

def test_sigterm_answers_in_flight_posts_and_keeps_them(gateway_factory):
    gw = gateway_factory(name="term")
    whole = [case_with_id("term-whole-%d" % i, i % 5) for i in range(3)]
    partial = [case_with_id("term-part-%d" % i, i % 5) for i in range(3)]
    conns = []
    # Requests whose body is only half sent are certainly in progress when
    # the signal arrives; complete ones may be anywhere in their path.
    for c in partial:
        body = body_of(c)
        rc = gw.raw(timeout=15)
        data = request_bytes("POST", "/v1/cases", body=body)
        cut = len(data) - len(body) // 2
        rc.send(data[:cut])
        conns.append((c, rc, data[cut:]))
    time.sleep(0.3)
    whole_conns = []
    for c in whole:
        rc = gw.raw(timeout=15)
        rc.send(request_bytes("GET", "/healthz", token=None))  # accepted and served
        assert rc.read_response().status == 200
        whole_conns.append((c, rc))
    for c, rc in whole_conns:
        rc.send(request_bytes("POST", "/v1/cases", body=body_of(c)))
    gw.signal(signal.SIGTERM)
    time.sleep(0.3)
    # No new connections while the in-flight requests finish.
    assert gw.running(), "tbgw exited with requests still in progress"
    served = b""
    try:
        s = socket.create_connection(("127.0.0.1", gw.port), timeout=2)
        s.sendall(request_bytes("GET", "/healthz", token=None))
        s.settimeout(1)
        served = s.recv(100)
        s.close()
    except (ConnectionRefusedError, ConnectionResetError, BrokenPipeError, socket.timeout):
        pass
    assert not served, "a new connection was served after SIGTERM: %r" % served
    for c, rc, rest in conns:
        rc.send(rest)
    answers = {}
    for c, rc in whole_conns + [(c, rc) for c, rc, _ in conns]:
        try:
            answers[c["case_id"]] = rc.read_response()
        except (ConnectionError, socket.timeout) as e:
            answers[c["case_id"]] = e
        rc.close()
    # A complete request that arrived on an open connection just as the
    # signal came may meet the connection being closed as idle (the usual
    # keep-alive race: no answer, nothing kept); if answered, it is a 202.
    for c, _ in whole_conns:
        v = answers[c["case_id"]]
        assert isinstance(v, Exception) or v.status == 202, (c["case_id"], v)
    # A request whose headers were read before the signal is in flight: it
    # must be finished and accepted.
    bad = {c["case_id"]: answers[c["case_id"]] for c, _, _ in conns
           if not (hasattr(answers[c["case_id"]], "status")
                   and answers[c["case_id"]].status == 202)}
    assert not bad, "in-flight requests not accepted during graceful shutdown: %r" % bad
    for c, _, _ in conns:
        r = answers[c["case_id"]]
        assert (r.header("Connection") or "").lower() == "close", r
    rc_exit = gw.wait_exit(30)
    assert rc_exit == 0, gw.log_text()[-3000:]
    gw.check_log()
    assert gw.events_named("gateway.stopped"), "no gateway.stopped line"
    gw.start()
    for c in whole + partial:
        r = gw.get_case(c["case_id"])
        a = answers[c["case_id"]]
        if isinstance(a, Exception):
            assert r.status in (200, 404), (c["case_id"], r)
        else:
            assert r.status == 200, (c["case_id"], r)
            assert r.json()["status"] == "queued"
    gw.stop()


def test_sigterm_answers_a_parked_long_poll_and_exits_0(gateway_factory):
    gw = gateway_factory(name="term-poll")
    assert gw.post_case(sample(0)).status == 202
    cursor = gw.events(after=0).json()["next_after"]
    c = gw.raw(timeout=30)
    c.send(request_bytes("GET", "/v1/events?after=%d&wait=30" % cursor))
    assert not c.readable_within(0.5), "the long-poll answered at once"
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    r = c.read_response(timeout=10)
    assert time.monotonic() - t0 < 5
    assert r.status == 200, r
    assert r.json() == {"events": [], "next_after": cursor}
    assert c.wait_closed(5)
    c.close()
    assert gw.wait_exit(15) == 0
    gw.check_log()


def test_sigterm_on_an_idle_daemon_exits_0_quickly(gateway_factory):
    gw = gateway_factory(name="term-idle")
    idle = gw.raw()  # an idle keep-alive connection must not hold up shutdown
    idle.send(request_bytes("GET", "/healthz", token=None))
    assert idle.read_response().status == 200
    t0 = time.monotonic()
    gw.stop(timeout=15)
    assert time.monotonic() - t0 < 5
    idle.close()


def test_sigint_stops_like_sigterm(gateway_factory):
    gw = gateway_factory(name="int")
    assert gw.post_case(sample(3)).status == 202
    gw.signal(signal.SIGINT)
    assert gw.wait_exit(15) == 0
    gw.check_log()
    gw.start()
    assert gw.get_case(sample(3)["case_id"]).status == 200
    gw.stop()


# ---- check-config and serve with bad configuration ----------------------------------

def test_check_config_accepts_the_example():
    path = os.path.join(REPO_ROOT, "examples", "tbgw.json")
    assert os.path.isfile(path), path
    p = run_cli(["check-config", "-c", path])
    assert p.returncode == 0, p
    assert "ok" in p.stdout, p


def test_check_config_accepts_the_test_config(tmp_path):
    cfg = tmp_path / "tbgw.json"
    cfg.write_text(json.dumps(default_config()))
    p = run_cli(["check-config", "-c", str(cfg)])
    assert p.returncode == 0, p


def bad_config():
    c = default_config()
    c["local_api"]["listen"] = "127.0.0.1:99999"
    c["store"]["durability"] = "sometimes"
    c["partners"][2]["name"] = "laizhou"
    return c


def test_check_config_lists_every_problem_with_its_key_path(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(bad_config()))
    p = run_cli(["check-config", "-c", str(cfg)])
    assert p.returncode == 1, p
    err = p.stderr
    assert "local_api.listen" in err and "99999" in err, err
    assert "store.durability" in err and "sometimes" in err, err
    assert "partners[2].name" in err and "laizhou" in err, err
    assert TOKEN not in err + p.stdout, "a secret was echoed"


def test_check_config_names_unknown_keys_and_bad_json(tmp_path):
    c = default_config()
    c["local_api"]["limits"] = {"max_header_bytez": 4096}
    cfg = tmp_path / "typo.json"
    cfg.write_text(json.dumps(c))
    p = run_cli(["check-config", "-c", str(cfg)])
    assert p.returncode == 1, p
    assert "max_header_bytez" in p.stderr, p
    cfg.write_text('{"node": {"region": "430603"},\n "local_api": }')
    p = run_cli(["check-config", "-c", str(cfg)])
    assert p.returncode == 1, p
    assert "line 2" in p.stderr, p
    p = run_cli(["check-config", "-c", str(tmp_path / "missing.json")])
    assert p.returncode == 1, p
    p = run_cli(["check-config"])
    assert p.returncode == 2, p


def test_serve_with_an_invalid_config_exits_1_without_listening(tmp_path):
    port = free_port()
    c = bad_config()
    c["local_api"]["listen"] = "127.0.0.1:%d" % port
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps(c))
    p = run_cli(["serve", "-c", str(cfg)], timeout=30)
    assert p.returncode == 1, p
    assert "store.durability" in p.stderr and "partners[2].name" in p.stderr, p
    s = socket.socket()
    try:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "something listens on %d" % port
    finally:
        s.close()
    assert not os.path.exists(tmp_path / "tbgw.db"), "a store was created for a bad config"


def test_serve_refuses_a_port_in_use(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        c = default_config()
        c["local_api"]["listen"] = "127.0.0.1:%d" % port
        cfg = tmp_path / "tbgw.json"
        cfg.write_text(json.dumps(c))
        p = run_cli(["serve", "-c", str(cfg)], timeout=30)
        assert p.returncode == 1, p
        assert str(port) in p.stderr, p
    finally:
        s.close()


# ---- other subcommands ----------------------------------------------------------------

def test_version_prints_our_and_library_versions():
    p = run_cli(["version"])
    assert p.returncode == 0, p
    first = p.stdout.splitlines()[0]
    assert first.startswith("tbgw ") and any(ch.isdigit() for ch in first), p.stdout
    for lib in ("libuv", "llhttp", "openssl", "sqlite", "jansson", "libcurl"):
        assert lib in p.stdout.lower(), (lib, p.stdout)
    q = run_cli(["--version"])
    assert q.returncode == 0 and q.stdout.splitlines()[0] == first, q


def test_help_works_on_every_subcommand():
    p = run_cli(["--help"])
    assert p.returncode == 0 and "usage" in p.stdout.lower(), p
    for cmd in ("serve", "check-config", "send", "version"):
        assert cmd in p.stdout, (cmd, p.stdout)
        for flag in ("--help", "-h"):
            q = run_cli([cmd, flag])
            assert q.returncode == 0, (cmd, q)
            assert "usage" in q.stdout.lower() and cmd in q.stdout, (cmd, q)


def test_unknown_command_exits_2():
    p = run_cli(["frobnicate"])
    assert p.returncode == 2, p
    assert "frobnicate" in p.stderr, p
    p = run_cli([])
    assert p.returncode == 2, p


def test_send_posts_a_sample_and_prints_202(tmp_path):
    port = free_port()
    gw = Gateway(config={"local_api": {"listen": "127.0.0.1:%d" % port}}, name="send")
    try:
        gw.start()
        assert gw.port == port
        first = sample_paths()[0]
        p = run_cli(["send", "-c", gw.config_path, first])
        assert p.returncode == 0, p
        assert " 202 " in p.stdout, p
        assert sample(0)["case_id"] in p.stdout, p
        # Again: 200, still success. All samples: exit 0.
        p = run_cli(["send", "-c", gw.config_path] + sample_paths())
        assert p.returncode == 0, p
        assert p.stdout.count(" 202 ") == 4 and p.stdout.count(" 200 ") == 1, p.stdout
        # An invalid case file: printed with its status, exit 1.
        bad = tmp_path / "bad.json"
        c = sample(1)
        c["case_id"] = "bad id with spaces"
        bad.write_text(json.dumps(c, ensure_ascii=False))
        p = run_cli(["send", "-c", gw.config_path, str(bad)])
        assert p.returncode == 1 and " 422 " in p.stdout, p
        # A wrong token from the command line: 401, exit 1.
        p = run_cli(["send", "-c", gw.config_path, "--token", "nope-nope-nope-nope", first])
        assert p.returncode == 1 and " 401 " in p.stdout, p
        gw.stop()
    finally:
        gw.close()


def test_send_to_no_gateway_fails_cleanly(tmp_path):
    port = free_port()
    p = run_cli(["send", "--url", "http://127.0.0.1:%d/v1/cases" % port, "--token", TOKEN,
                 sample_paths()[0]])
    assert p.returncode == 1, p
    assert p.stderr.strip(), p


def test_sighup_does_not_kill_the_daemon(gateway_factory):
    # SPEC §9: SIGHUP reloads partners and adapters without dropping
    # connections. Whatever the reload does, the daemon and its open
    # connections survive it.
    gw = gateway_factory(name="hup")
    c = gw.raw()
    c.send(request_bytes("GET", "/healthz", token=None))
    assert c.read_response().status == 200
    gw.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert gw.running(), "SIGHUP killed tbgw (exit %r)" % gw.proc.returncode
    c.send(request_bytes("GET", "/healthz", token=None))
    assert c.read_response().status == 200
    c.close()
    assert gw.post_case(sample(0)).status == 202


def test_serve_with_an_unusable_store_exits_1_with_the_path(tmp_path):
    c = default_config()
    c["store"]["path"] = "no/such/dir/tbgw.db"
    cfg = tmp_path / "tbgw.json"
    cfg.write_text(json.dumps(c))
    p = run_cli(["serve", "-c", str(cfg)], timeout=30)
    assert p.returncode == 1, p
    assert "no/such/dir" in p.stderr, p
    # A file that is not a database.
    (tmp_path / "junk.db").write_bytes(b"this is not an SQLite database\n" * 200)
    c["store"]["path"] = "junk.db"
    cfg.write_text(json.dumps(c))
    p = run_cli(["serve", "-c", str(cfg)], timeout=30)
    assert p.returncode == 1, p
    assert "junk.db" in p.stderr, p
