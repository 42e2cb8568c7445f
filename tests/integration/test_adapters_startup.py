"""Start-up with keys and adapters, against the real tbgw binary (SPEC §5, §6).

A broken adapter (wrong ABI major or minor, no entry point, a missing
operation, an unresolvable symbol, a wrong name, an init that refuses its
partner), a private key others can read and a missing key file each stop
`tbgw serve` with exit status 1, a `gateway.start_failed` log line and a
message on stderr that names the adapter/partner/key and the reason, before
the store or a listener is opened; `tbgw check-config` reports the same
(and `--no-load` skips loading). With the example adapter the gateway starts,
logs `adapter.loaded` and `key.loaded`, and /readyz reports adapters and keys
ok; an expired certificate makes it not ready, naming the key.

Configurations are written here from the harness's default (its keys, its
adapters directory) with the partners replaced, so each test shows exactly
what it breaks.
"""

import json
import os
import shutil
import subprocess

import pytest

import tbgw_harness as h
from tbgw_harness import run_cli

EXAMPLE_KEYS = {"sign": "gw-rsa", "verify": "gw-rsa"}


def partner(adapter, name="laizhou", region="370683", **extra):
    p = {"name": name, "adapter": adapter, "regions": [region],
         "endpoint": "https://127.0.0.1:9443"}
    p.update(extra)
    return p


def config_with(partners, keys=None, **top):
    c = h.default_config()
    c["local_api"]["listen"] = "127.0.0.1:%d" % h.free_port()
    c["partners"] = partners
    if keys is not None:
        c["keys"] = keys
    c.update(top)
    return c


def write(tmp_path, config, name="tbgw.json"):
    path = tmp_path / name
    path.write_text(json.dumps(config, ensure_ascii=False, indent=2))
    return str(path)


def start_fails(tmp_path, config, *needles):
    """serve exits 1 naming every needle on stderr, logs gateway.start_failed,
    and leaves no store behind; check-config fails the same way."""
    path = write(tmp_path, config)
    p = run_cli(["serve", "-c", path], timeout=60, cwd=str(tmp_path))
    assert p.returncode == 1, p
    plain = [line for line in p.stderr.splitlines() if line.startswith("tbgw: ")]
    assert len(plain) == 1, p.stderr
    for n in needles:
        assert n in plain[0], "%r not in %r" % (n, plain[0])
    events = [json.loads(line) for line in p.stderr.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "gateway.start_failed"]
    assert len(failed) == 1 and failed[0]["level"] == "error", events
    for n in needles:
        assert n in failed[0]["msg"], failed[0]
    assert not any(e["event"] == "gateway.started" for e in events), events
    assert not (tmp_path / "tbgw.db").exists(), "a refused start created the store"

    c = run_cli(["check-config", "-c", path])
    assert c.returncode == 1, c
    for n in needles:
        assert n in c.stderr, c
    c = run_cli(["check-config", "-c", path, "--no-load"])
    assert c.returncode == 0, c
    assert "keys and adapters not loaded" in c.stdout, c
    return plain[0]



BROKEN = [
    ("bad-major", ["adapter \"bad-major\": built for ABI 2.0, this gateway has ABI 1.0",
                   "major versions must match"]),
    ("newer-minor", ["adapter \"newer-minor\": needs ABI 1.1 but this gateway has only 1.0"]),
    ("no-entry", ["adapter \"no-entry\":", "no-entry.so does not export tbgw_adapter_entry()"]),
    ("missing-op", ["adapter \"missing-op\": operation classify is missing (NULL)"]),
    ("wrong-name", ["adapter \"wrong-name\":", "wrong-name.so calls itself \"somebody-else\""]),
    ("unresolved-symbol", ["adapter \"unresolved-symbol\": cannot load",
                           "undefined symbol: tb_testing_symbol_that_does_not_exist"]),
    ("failing-init", ["adapter \"failing-init\" refused partner \"zhaoyuan\": "
                      "keys.sign: no such key"]),
    ("not-built", ["adapter \"not-built\":", "not-built.so not found"]),
]


@pytest.mark.parametrize("adapter,needles", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_adapter_stops_start_up(tmp_path, adapter, needles):
    # A good partner first: the broken one is found anyway, and the good
    # one's adapter is unloaded again (ASan would report what leaks).
    config = config_with([partner("example", keys=EXAMPLE_KEYS),
                          partner(adapter, name="zhaoyuan", region="370685")])
    start_fails(tmp_path, config, *needles)


def test_a_private_key_others_can_read_stops_start_up(tmp_path):
    key = tmp_path / "sign-rsa.key"
    shutil.copyfile(os.path.join(h.ensure_pki(), "gateway", "sign-rsa.key"), key)
    os.chmod(key, 0o644)
    keys = h.demo_keys()
    keys["gw-rsa"]["private_key"] = str(key)
    config = config_with([partner("example", keys=EXAMPLE_KEYS)], keys=keys)
    start_fails(tmp_path, config, "key \"gw-rsa\"", "private key file %s has mode 0644" % key,
                "chmod 600 %s" % key)
    os.chmod(key, 0o600)  # the fix the message gives works
    p = run_cli(["check-config", "-c", str(tmp_path / "tbgw.json")])
    assert p.returncode == 0, p


def test_a_missing_key_file_stops_start_up(tmp_path):
    keys = h.demo_keys()
    keys["gw-sm2"]["private_key"] = str(tmp_path / "nowhere" / "sign-sm2.key")
    config = config_with([partner("example", keys=EXAMPLE_KEYS)], keys=keys)
    start_fails(tmp_path, config, "key \"gw-sm2\": cannot open %s" % keys["gw-sm2"]["private_key"],
                "No such file or directory")


def test_a_key_the_adapter_names_but_nobody_configured_stops_start_up(tmp_path):
    config = config_with([partner("example", keys={"sign": "gw-gone", "verify": "gw-rsa"})])
    start_fails(tmp_path, config,
                "adapter \"example\" refused partner \"laizhou\": keys.sign: no key named "
                "\"gw-gone\"")


def test_bad_partner_tls_files_stop_start_up(tmp_path):
    tls = h.partner_tls("laizhou")
    tls["client_key"] = os.path.join(h.ensure_pki(), "gateway", "tls-server.key")
    config = config_with([partner("example", keys=EXAMPLE_KEYS, tls=tls)])
    start_fails(tmp_path, config, "partner \"laizhou\": tls.client_certificate/client_key",
                "does not belong to certificate")


def test_starts_with_the_example_adapter_and_is_ready(gateway_factory):
    g = gateway_factory({"partners": [partner("example", keys=EXAMPLE_KEYS,
                                              tls=h.partner_tls("laizhou"))]})
    r = g.request("GET", "/readyz", token=None)
    assert r.status == 200, r
    v = r.json()
    assert v["status"] == "ready", v
    assert v["checks"]["adapters"] == "ok (1 partner)", v
    assert v["checks"]["keys"] == "ok (%d keys)" % len(h.demo_keys()), v
    assert v["checks"]["store"] == "ok", v

    loaded = g.events_named("adapter.loaded")
    assert len(loaded) == 1, loaded
    a = loaded[0]
    assert a["adapter"] == "example" and a["version"] == "1.0.0" and a["abi"] == "1.0", a
    assert a["path"] == os.path.join(h.ADAPTERS_DIR, "example.so"), a
    assert a["partners"] == 1, a
    keys = {k["key"]: k for k in g.events_named("key.loaded")}
    assert set(keys) == set(h.demo_keys()), keys
    assert keys["gw-rsa"]["kind"] == "rsa" and len(keys["gw-rsa"]["fingerprint"]) == 64, keys
    assert keys["gw-rsa"]["not_after"].endswith("Z"), keys
    assert "not_after" not in keys["gw-sm2"], keys  # no certificate
    assert keys["laizhou-ca"]["kind"] == "ca", keys
    # nothing of the key material itself is logged
    text = g.log_text()
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    g.stop()


def test_the_default_test_configuration_loads_the_real_adapters(gw):
    r = gw.request("GET", "/readyz", token=None)
    assert r.status == 200, r
    v = r.json()
    assert v["checks"]["adapters"] == "ok (3 partners)", v
    names = sorted(e["adapter"] for e in gw.events_named("adapter.loaded"))
    assert names == ["lu-xml", "yue-json"], names


def make_expired_cert(tmp_path, key):
    """A self-signed certificate for key, valid in 2020 only."""
    d = tmp_path / "expired-ca"
    d.mkdir()
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    (d / "ca.cnf").write_text(
        "[ca]\ndefault_ca = d\n[d]\ndir = .\ndatabase = ./index.txt\nnew_certs_dir = .\n"
        "serial = ./serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n")
    run = dict(cwd=str(d), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=expired signer",
                    "-out", "x.csr"], **run)
    subprocess.run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", key,
                    "-in", "x.csr", "-startdate", "20200101000000Z", "-enddate",
                    "20210101000000Z", "-out", "x.pem"], **run)
    return str(d / "x.pem")


def test_an_expired_certificate_makes_the_gateway_not_ready(gateway_factory, tmp_path):
    pki = h.ensure_pki()
    key = os.path.join(pki, "partners", "zhaoyuan", "sign-rsa.key")
    keys = h.demo_keys()
    keys["old-signer"] = {"kind": "rsa", "private_key": key,
                          "certificate": make_expired_cert(tmp_path, key)}
    g = gateway_factory({"keys": keys,
                         "partners": [partner("example", keys=EXAMPLE_KEYS)]})
    r = g.request("GET", "/readyz", token=None)
    assert r.status == 503, r
    assert r.header("retry-after") == "5", r
    v = r.json()
    assert v["status"] == "not-ready", v
    assert v["checks"]["keys"] == \
        "key \"old-signer\": certificate expired at 2021-01-01T00:00:00Z", v
    assert v["checks"]["adapters"] == "ok (1 partner)", v
    expired = g.events_named("key.expired")
    assert len(expired) == 1 and "old-signer" in expired[0]["msg"], expired
    # /healthz is liveness only: the loop answers
    assert g.healthy()
    g.stop()
