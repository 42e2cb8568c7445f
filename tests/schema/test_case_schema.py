"""Tests for schemas/case.v1.json, the published JSON Schema of the canonical case.

The schema must be a valid JSON Schema 2020-12 document, accept every shared
sample, and reject mutated samples at the same field paths the gateway's
validator reports (dotted paths: "applicant.id_number", "materials[1].sm3").
Rules that only the gateway can check (check characters, digests, birth dates)
are shown to pass the schema, so that the split stays deliberate.

Run: /usr/bin/python3 -m pytest tests/schema. Samples come from $TB_SAMPLES_DIR,
else from <repo>/../shared/samples.
"""

import copy
import datetime
import json
import os
import pathlib
import re

import pytest
from jsonschema import Draft202012Validator, FormatChecker

REPO = pathlib.Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "schemas" / "case.v1.json"
SAMPLES_DIR = pathlib.Path(os.environ.get("TB_SAMPLES_DIR") or REPO.parent / "shared" / "samples")
SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))

_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-]([0-9]{2}):([0-9]{2}))$"
)


def _format_checker():
    """A format checker that really checks date-time.

    Debian's python3-jsonschema ships without rfc3339-validator, and then the
    library silently skips "date-time". Register an RFC 3339 check (real
    calendar date, offset required) only when the library has none.
    """
    checker = FormatChecker()
    if "date-time" not in checker.checkers:

        @checker.checks("date-time", raises=ValueError)
        def _date_time(value):
            if not isinstance(value, str):
                return True
            m = _RFC3339.match(value)
            if not m:
                return False
            y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
            datetime.datetime(y, mo, d, h, mi, s)  # ValueError on 2023-02-29
            return True

    return checker


@pytest.fixture(scope="module")
def schema():
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def validator(schema):
    return Draft202012Validator(schema, format_checker=_format_checker())


def load(name_prefix):
    for p in SAMPLES:
        if p.name.startswith(name_prefix):
            with open(p, encoding="utf-8") as f:
                return json.load(f)
    raise AssertionError(f"sample {name_prefix}* not found in {SAMPLES_DIR}")


def dotted(path):
    """jsonschema's deque path -> the gateway's dotted path."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out


def violation_paths(validator, doc):
    """Field paths of all errors, named the way the gateway names them.

    jsonschema reports a missing property and an unknown one at the object;
    the gateway reports them at the property itself. Map both.
    """
    paths = set()
    for err in validator.iter_errors(doc):
        base = dotted(err.absolute_path)
        join = (lambda k: f"{base}.{k}") if base else (lambda k: k)
        if err.validator == "required":
            paths.update(join(k) for k in err.validator_value if k not in err.instance)
        elif err.validator == "additionalProperties":
            known = err.schema.get("properties", {})
            paths.update(join(k) for k in err.instance if k not in known)
        else:
            paths.add(base)
    return paths


def test_schema_is_valid_2020_12(schema):
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/schemas/case.v1.json")


def test_date_time_format_is_really_checked(validator):
    # Without this the date-time tests below would pass vacuously.
    assert not validator.format_checker.conforms("2023-02-29T10:00:00+08:00", "date-time")
    assert validator.format_checker.conforms("2024-02-29T10:00:00+08:00", "date-time")


def test_there_are_five_samples():
    assert len(SAMPLES) == 5, f"expected the 5 shared samples in {SAMPLES_DIR}"


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sample_is_valid(validator, path):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    errors = [f"{dotted(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]
    assert errors == []


def _set(doc, dotted_path, value):
    """Sets (or, with value DELETE, removes) a field by dotted path."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", dotted_path)
    node = doc
    for p in parts[:-1]:
        node = node[int(p[1:-1])] if p.startswith("[") else node[p]
    last = parts[-1]
    key = int(last[1:-1]) if last.startswith("[") else last
    if value is DELETE:
        del node[key]
    else:
        node[key] = value


DELETE = object()

# (sample, [(path, new value or DELETE)], expected violation paths)
MUTATIONS = [
    ("01", [("remark", "typo")], {"remark"}),
    ("01", [("applicant.phon", "13800000000"), ("applicant.phone", DELETE)],
     {"applicant.phon", "applicant.phone"}),
    ("01", [("form", DELETE)], {"form"}),
    ("01", [("agent", DELETE)], {"agent"}),
    ("01", [("agent", "none")], {"agent"}),
    ("01", [("schema", "tongban.case/v2")], {"schema"}),
    ("01", [("case_id", "bad id!")], {"case_id"}),
    ("01", [("case_id", "")], {"case_id"}),
    ("01", [("item.code", "1137-0683")], {"item.code"}),
    ("01", [("item.extra", 1)], {"item.extra"}),
    ("01", [("target_region", "990000")], {"target_region"}),
    ("01", [("origin_region", "37068")], {"origin_region"}),
    ("01", [("applicant.phone", "12800000000")], {"applicant.phone"}),
    ("01", [("applicant.phone", "+8613800000000")], {"applicant.phone"}),
    ("01", [("applicant.name", "")], {"applicant.name"}),
    ("01", [("applicant.name", "张\n三")], {"applicant.name"}),
    ("01", [("applicant.name", "\u3000 ")], {"applicant.name"}),
    ("01", [("applicant.id_number", "11010519491231002x")], {"applicant.id_number"}),
    ("01", [("applicant.id_number", "990603199001011230")], {"applicant.id_number"}),
    # A resident ID fits the USCC charset: only the gateway sees its wrong check character.
    ("01", [("applicant.id_type", "001")], {"applicant.id_type"}),
    ("01", [("applicant.id_type", "112")], {"applicant.id_type"}),
    ("01", [("applicant.kind", "human")], {"applicant.kind"}),
    ("03", [("applicant.id_type", "111")], {"applicant.id_type", "applicant.id_number"}),
    ("03", [("applicant.id_number", "91430603MA4L0QIR1K")], {"applicant.id_number"}),
    ("03", [("agent.id_type", "414"), ("agent.id_number", "e12345678")], {"agent.id_number"}),
    ("01", [("materials[0].sm3", "4011110F987776784EC0758891651E39C016ECE66398573BD2D98DA638711689")],
     {"materials[0].sm3"}),
    ("01", [("materials[1].content_base64", "JVBERi0xLjQKJSBtYXJyaWFnZSBjZXJ0aWZpY2F0ZQolJUVPRgo")],
     {"materials[1].content_base64"}),
    ("01", [("materials[0].content_base64", "QR==")], {"materials[0].content_base64"}),
    ("01", [("materials[0].content_base64", "QUJD\nQUJD")], {"materials[0].content_base64"}),
    ("01", [("materials[0].media_type", "image/gif")], {"materials[0].media_type"}),
    ("01", [("materials[0].size", -1)], {"materials[0].size"}),
    ("01", [("materials[0].size", "30")], {"materials[0].size"}),
    ("01", [("materials[1].sm3", DELETE)], {"materials[1].sm3"}),
    ("01", [("accepted_at", "2024-05-06T10:00:00")], {"accepted_at"}),
    ("01", [("accepted_at", "2024-13-06T10:00:00+08:00")], {"accepted_at"}),
    ("01", [("accepted_at", "2023-02-29T10:00:00+08:00")], {"accepted_at"}),
    ("01", [("delivery.address", DELETE)], {"delivery.address"}),
    ("01", [("delivery.recipient", " ")], {"delivery.recipient"}),
    ("01", [("delivery.method", "courier")], {"delivery.method"}),
    ("02", [("delivery.method", "mail")], {"delivery.recipient", "delivery.phone", "delivery.address"}),
    ("02", [("delivery.phone", "0730-881234")], {"delivery.phone"}),
    ("01", [("remarks", "x" * 2001)], {"remarks"}),
    ("01", [("remarks", "bell\a")], {"remarks"}),
    (
        "01",
        [("case_id", "bad id!"), ("materials[1].sm3", "XYZ"), ("delivery.address", DELETE), ("extra", True)],
        {"case_id", "materials[1].sm3", "delivery.address", "extra"},
    ),
]


@pytest.mark.parametrize("sample,changes,expected", MUTATIONS,
                         ids=[";".join(c[0] for c in m[1]) for m in MUTATIONS])
def test_mutated_sample_fails_at_path(validator, sample, changes, expected):
    doc = copy.deepcopy(load(sample))
    for path, value in changes:
        _set(doc, path, value)
    assert violation_paths(validator, doc) == expected


def test_too_many_materials(validator):
    doc = load("01")
    doc["materials"] = [doc["materials"][0]] * 101
    assert violation_paths(validator, doc) == {"materials"}
    doc["materials"] = doc["materials"][:100]
    assert violation_paths(validator, doc) == set()


def test_root_must_be_object(validator):
    assert violation_paths(validator, []) == {""}


@pytest.mark.parametrize(
    "changes",
    [
        [("remarks", DELETE)],
        [("remarks", None)],
        [("remarks", "第一行\r\n第二行\t完")],
        [("applicant.address", "")],
        [("applicant.address", None)],
        [("applicant.phone", "0730-8812345")],
        [("applicant.phone", "07308812345")],
        [("applicant.id_type", "516"), ("applicant.id_number", "H12345678")],
        [("applicant.id_type", "511"), ("applicant.id_number", "1234567801")],
        [("materials[0].content_base64", DELETE)],
        [("accepted_at", "2024-02-29T02:00:00.123Z")],
        [("delivery.method", "pickup"), ("delivery.address", DELETE)],
        [("form", {"anything": [1, {"nested": None}]})],
    ],
    ids=lambda c: ";".join(p for p, _ in c),
)
def test_valid_variants(validator, changes):
    doc = copy.deepcopy(load("01"))
    for path, value in changes:
        _set(doc, path, value)
    assert violation_paths(validator, doc) == set()


@pytest.mark.parametrize(
    "changes",
    [
        [("applicant.id_number", "430603199001011232")],  # wrong check character
        [("applicant.id_number", "430603199002301230")],  # February 30
        [("materials[0].size", 31)],  # content is 30 bytes
        [("materials[1].sm3", "0" * 64)],  # not the content's digest
    ],
    ids=["check-character", "birth-date", "size-mismatch", "digest-mismatch"],
)
def test_gateway_only_rules_pass_the_schema(validator, changes):
    """These are 422s from the gateway, but JSON Schema cannot see them."""
    doc = copy.deepcopy(load("01"))
    for path, value in changes:
        _set(doc, path, value)
    assert violation_paths(validator, doc) == set()
