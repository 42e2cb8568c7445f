"""`tbgw audit verify`: exit codes and messages on good and tampered audit
files. The files are written here by an independent implementation of the
format in docs/audit.md (hashlib's SM3), so the test also pins the format."""

import hashlib
import json
import os
import subprocess

import pytest

TBGW = os.environ.get("TBGW_BIN", "tbgw")
GENESIS = "0" * 64


def record(seq, prev, event="message.sent", case_id=None, detail=None):
    body = '{"seq":%d,"ts":"2024-05-06T10:00:00.000+08:00","event":%s' % (seq, json.dumps(event))
    if case_id is not None:
        body += ',"case_id":%s' % json.dumps(case_id, ensure_ascii=False)
    if detail is not None:
        body += ',"detail":%s' % json.dumps(detail, separators=(",", ":"), ensure_ascii=False)
    body += ',"prev":"%s"' % prev
    h = hashlib.new("sm3", body.encode()).hexdigest()
    return body + ',"hash":"%s"}\n' % h, h


def chain(n, first_seq=1, prev=GENESIS, link=None):
    lines = []
    seq = first_seq
    if link is not None:
        line, prev = record(seq, prev, "audit.rotated", detail={"prev_file": link})
        lines.append(line)
        seq += 1
    for _ in range(n):
        line, prev = record(seq, prev, case_id="case-%d" % seq)
        lines.append(line)
        seq += 1
    return lines, prev


def run(*args):
    p = subprocess.run([TBGW, "audit", *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return str(path)


def test_good_file_ok(tmp_path):
    lines, last = chain(10)
    rc, out, _ = run("verify", write(tmp_path / "a.log", lines))
    assert rc == 0
    assert out.strip() == "ok: 10 records, last seq 10, last hash %s" % last


def test_good_file_json(tmp_path):
    lines, last = chain(3)
    rc, out, _ = run("verify", "--json", write(tmp_path / "a.log", lines))
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] is True
    assert doc["records"] == 3 and doc["last_seq"] == 3 and doc["last_hash"] == last


@pytest.mark.parametrize("tamper, fault, line, seq", [
    ("edit", "edited", 4, 4),
    ("delete", "deleted", 4, 5),
    ("swap", "reordered", 4, 5),
    ("insert", "inserted", 4, 4),
    ("truncate", "truncated", 8, 8),
    ("garbage", "not JSON", 4, None),
])
def test_tampered_file_names_first_bad_record(tmp_path, tamper, fault, line, seq):
    lines, _ = chain(8)
    if tamper == "edit":
        lines[3] = lines[3].replace("case-4", "case-X")
    elif tamper == "delete":
        del lines[3]
    elif tamper == "swap":
        lines[3], lines[4] = lines[4], lines[3]
    elif tamper == "insert":
        forged, _ = record(4, "f" * 64, case_id="forged")
        lines.insert(3, forged)
    elif tamper == "truncate":
        lines[-1] = lines[-1][:50]
    elif tamper == "garbage":
        lines[3] = "not a record\n"
    path = write(tmp_path / "a.log", lines)
    rc, out, _ = run("verify", path)
    assert rc == 1
    want = "FAILED at line %d (seq %s) of %s: %s: " % (
        line, seq if seq is not None else "unreadable", path, fault)
    assert out.startswith(want), out
    rc, out, _ = run("verify", "--json", path)
    doc = json.loads(out)
    assert rc == 1 and doc["ok"] is False
    assert (doc["line"], doc["fault"], doc["file"]) == (line, fault, path)


def test_rotation_set_verifies_as_one_chain(tmp_path):
    first, h1 = chain(5)
    second, h2 = chain(4, first_seq=6, prev=h1, link="audit.log.0000000000000000005")
    a = write(tmp_path / "audit.log.0000000000000000005", first)
    b = write(tmp_path / "audit.log", second)
    rc, out, _ = run("verify", a, b)
    assert rc == 0
    assert out.strip() == "ok: 10 records, last seq 10, last hash %s" % h2
    # the live file alone: accepted from its link, with a note naming the file
    rc, out, err = run("verify", b)
    assert rc == 0 and "audit.log.0000000000000000005" in err
    # the link checked against the right hash, and against a wrong one
    assert run("verify", "--expect-prev", h1, b)[0] == 0
    rc, out, _ = run("verify", "--expect-prev", "e" * 64, b)
    assert rc == 1 and out.startswith("FAILED at line 1 (seq 6)")
    # files in the wrong order
    rc, out, _ = run("verify", b, a)
    assert rc == 1 and "FAILED at line 1 (seq 1) of %s" % a in out


def test_missing_first_file_is_detected(tmp_path):
    lines, _ = chain(6)
    rc, out, _ = run("verify", write(tmp_path / "a.log", lines[2:]))
    assert rc == 1 and out.startswith("FAILED at line 1 (seq 3)") and ": deleted: " in out


def test_usage_and_help(tmp_path):
    rc, out, _ = run("verify", "--help")
    assert rc == 0 and "usage: tbgw audit verify" in out
    assert run("--help")[0] == 0
    assert run("verify")[0] == 2
    assert run("frobnicate")[0] == 2
    assert run("verify", "--bogus", "x")[0] == 2
    assert run("verify", "--expect-prev", "xyz", "x")[0] == 2
    rc, _, err = run("verify", str(tmp_path / "missing.log"))
    assert rc == 1 and "missing.log" in err
