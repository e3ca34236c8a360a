"""``remediator.ingest.payload``: the recorded Alertmanager 0.25 bodies parse, fields newer
Alertmanagers add are tolerated, and a refusal's sentence never echoes the input."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from remediator.config import PayloadLimits
from remediator.core.errors import RequestRejected
from remediator.core.fingerprint import fingerprint, of_alert
from remediator.core.model import AlertStatus
from remediator.ingest.payload import check, decode_json, parse
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import fixture_bytes

MARKER = "ECHO_MARKER_7f3a"  # a valid label name, so only its value can be wrong


def alert(fingerprint: str = "aa01", **overrides: Any) -> dict[str, Any]:
    return webhook_alert(fingerprint, **overrides)


def payload(*alerts: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    return webhook_payload(*alerts, **overrides)


def rejection(body: bytes, limits: PayloadLimits | None = None) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        parse(body, limits or PayloadLimits())
    return caught.value


@pytest.mark.parametrize(
    ("name", "alerts", "truncated"),
    [
        ("firing-2-alerts.json", 2, 0),
        ("mixed-1002-alerts-one-resolved.json", 1002, 0),
        ("truncated-10-of-many.json", 10, 192),
    ],
    ids=["firing-2", "mixed-1002", "truncated-10"],
)
def test_each_recorded_alertmanager_body_parses(name: str, alerts: int, truncated: int) -> None:
    parsed = parse(fixture_bytes(name), PayloadLimits())
    assert len(parsed.alerts) == alerts
    assert parsed.truncated_alerts == truncated
    assert parsed.receiver == "hook"
    assert parsed.group_key == '{}:{alertname="HighCPUUsage"}'


def test_the_1002_alert_body_holds_1001_firing_and_one_resolved_alert() -> None:
    parsed = parse(fixture_bytes("mixed-1002-alerts-one-resolved.json"), PayloadLimits())
    assert Counter(a.status for a in parsed.alerts) == {
        AlertStatus.FIRING: 1001,
        AlertStatus.RESOLVED: 1,
    }
    (resolved,) = [a for a in parsed.alerts if a.status is AlertStatus.RESOLVED]
    assert resolved.ends_at == datetime(2026, 11, 28, 9, 45, 5, tzinfo=UTC)


def test_the_zero_ends_at_of_a_firing_alert_becomes_none() -> None:
    parsed = parse(fixture_bytes("firing-2-alerts.json"), PayloadLimits())
    assert [a.ends_at for a in parsed.alerts] == [None, None]
    assert parsed.alerts[0].starts_at == datetime(2026, 11, 28, 9, 44, 26, tzinfo=UTC)


def test_a_missing_ends_at_is_none() -> None:
    raw = alert()
    del raw["endsAt"]
    assert parse(json.dumps(payload(raw)).encode(), PayloadLimits()).alerts[0].ends_at is None


def test_alert_fields_are_carried_over_as_sent() -> None:
    first = parse(fixture_bytes("firing-2-alerts.json"), PayloadLimits()).alerts[0]
    assert first.fingerprint == "df82dde64a63646d"
    assert first.name == "HighCPUUsage"
    assert dict(first.labels)["deployment"] == "llm-research-api"
    assert dict(first.annotations) == {"summary": "CPU above 85%"}
    assert first.generator_url == "http://prometheus:9090/graph?g0.expr=x"


def test_unknown_fields_at_top_level_and_in_alerts_are_tolerated() -> None:
    newer = {"notification_reason": "resend", "routeLabels": {"team": "llm"}}
    data = payload(alert(**newer), **newer)
    parsed = parse(json.dumps(data).encode(), PayloadLimits())
    assert [a.sent_fingerprint for a in parsed.alerts] == ["aa01"]


def test_a_parse_error_names_the_field_with_label_keys_replaced() -> None:
    bad = alert(labels={MARKER: 7})
    exc = rejection(json.dumps(payload(bad)).encode())
    assert (exc.status, exc.code) == (422, "invalid_payload")
    assert exc.detail == "Field alerts[0].labels.<key>: Expected `str`, got `int`."
    assert MARKER not in str(exc)


def test_a_wrong_annotation_type_names_the_field_without_its_key() -> None:
    bad = alert("aa02", annotations={MARKER: [MARKER]})
    exc = rejection(json.dumps(payload(alert(), bad)).encode())
    assert exc.detail == "Field alerts[1].annotations.<key>: Expected `str`, got `array`."


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b'{"a": 1, "a": 2}', "duplicate_key"),
        (b'{"a": NaN}', "non_finite_number"),
        (b'{"a": -Infinity}', "non_finite_number"),
        (b'{"a": 1e400}', "non_finite_number"),
        (b'{"a": -1e400}', "non_finite_number"),
        (b'{"a": ' + b"9" * 5000 + b"}", "invalid_json"),
        (b"[" * 100_000, "too_deep"),
        (b'{"a": "\xff"}', "invalid_utf8"),
        (b'{"a": ', "invalid_json"),
    ],
    ids=[
        "duplicate-key",
        "nan",
        "minus-infinity",
        "float-overflowing-to-infinity",
        "float-overflowing-to-minus-infinity",
        "integer-of-5000-digits",
        "deep-nesting",
        "invalid-utf8",
        "truncated",
    ],
)
def test_decode_refuses_what_json_loads_would_let_through_or_crash_on(
    raw: bytes, code: str
) -> None:
    with pytest.raises(RequestRejected) as caught:
        decode_json(raw)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_ordinary_finite_numbers_still_decode() -> None:
    assert decode_json(b'{"a": 1.5e3, "b": -0.25, "c": 12}') == {"a": 1500.0, "b": -0.25, "c": 12}


def test_a_payload_exactly_at_every_limit_is_accepted() -> None:
    limits = PayloadLimits(
        max_alerts=2,
        max_labels=2,
        max_label_name_chars=9,
        max_label_value_chars=12,
        max_annotation_value_chars=13,
    )
    edge = alert(labels={"alertname": "HighCPUUsage", "namespace": "llm-research"})
    assert len(parse(json.dumps(payload(edge, edge)).encode(), limits).alerts) == 2


@pytest.mark.parametrize(
    ("limits", "code"),
    [
        (PayloadLimits(max_alerts=1), "too_many_alerts"),
        (PayloadLimits(max_labels=1), "too_many_labels"),
        (PayloadLimits(max_label_name_chars=8), "label_too_long"),
        (PayloadLimits(max_label_value_chars=11), "label_too_long"),
        (PayloadLimits(max_annotation_value_chars=12), "annotation_too_long"),
    ],
    ids=["alerts", "labels", "label-name", "label-value", "annotation"],
)
def test_one_over_a_limit_is_refused_without_echoing_the_input(
    limits: PayloadLimits, code: str
) -> None:
    edge = alert(labels={"alertname": "HighCPUUsage", "namespace": "llm-research"})
    exc = rejection(json.dumps(payload(edge, edge)).encode(), limits)
    assert exc.code == code
    assert "HighCPUUsage" not in exc.detail and "llm-research" not in exc.detail


@pytest.mark.parametrize(
    "spelled",
    [
        '"\\u006eull"',  # the text null, with an escaped n
        '"say \\u0022hi\\u0022"',  # quotes spelled as escapes
        '"back\\\\slash \\\\\\" and quote"',
        "123456789012345678901234567890",  # an integer wider than 64 bits
    ],
    ids=["escaped-null-text", "escaped-quotes", "escaped-backslashes", "wide-integer"],
)
def test_unusual_but_valid_json_in_an_unknown_field_is_accepted(spelled: str) -> None:
    text = json.dumps(payload()).replace('"receiver"', f'"extra": {spelled}, "receiver"', 1)
    labels = alert()["labels"]
    assert [a.fingerprint for a in parse(text.encode(), PayloadLimits()).alerts] == [
        fingerprint(labels)
    ]


def test_a_repeated_key_in_an_unknown_object_is_refused_too() -> None:
    text = json.dumps(payload()).replace(
        '"receiver"', '"routeLabels": {"a": 1, "a": 2}, "receiver"'
    )
    assert rejection(text.encode()).code == "duplicate_key"


def test_our_fingerprint_is_alertmanagers_for_every_recorded_alert() -> None:
    body = json.loads(fixture_bytes("mixed-1002-alerts-one-resolved.json"))
    pairs = [(a["fingerprint"], fingerprint(a["labels"])) for a in body["alerts"]]
    assert len(pairs) == 1002 and all(sent == ours for sent, ours in pairs)


def test_a_senders_fingerprint_that_disagrees_with_the_labels_is_kept_aside() -> None:
    (parsed,) = parse(json.dumps(payload(alert("aa01"))).encode(), PayloadLimits()).alerts
    assert parsed.fingerprint == fingerprint(alert()["labels"]) != "aa01"
    assert parsed.sent_fingerprint == "aa01"
    honest = alert(fingerprint(alert()["labels"]))
    (parsed,) = parse(json.dumps(payload(honest)).encode(), PayloadLimits()).alerts
    assert parsed.sent_fingerprint == ""


# --- duplicate keys: exact, whatever re-encoding changes -----------------------------------

NAMESPACE_TWICE = '"namespace": "kube-system", "namespace": "llm-research"'


def _twice(offsets: str = "Z", **replacements: str) -> bytes:
    """A body whose labels say ``namespace`` twice, its times written with ``offsets``."""
    text = json.dumps(payload(alert(startsAt=f"2026-11-28T09:44:26{offsets}")))
    text = text.replace('"namespace": "llm-research"', NAMESPACE_TWICE)
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text.encode()


@pytest.mark.parametrize(
    "raw",
    [
        _twice(),
        _twice("+0530"),  # re-encodes as +05:30: one colon more than the body
        _twice("-0800"),
        _twice("+05:30"),
        _twice("+00:00"),  # re-encodes as Z: one colon fewer
        _twice(summary='summ\\u0022: "ary'),  # a quote spelled as an escape, then a colon
        _twice(summary='summ\\": ary'),
        _twice(summary="summ\\u003aary"),
        _twice(summary="summ\\u003Aary"),
        _twice(**{'"summary"': '"summary" '}),  # a space between a key and its colon
        _twice(**{'"namespace": "kube-system"': '"namespace" : "kube-system"'}),
    ],
    ids=["plain", "offset-0530", "offset-0800", "offset-05-30", "offset-00-00",
         "escaped-quote-colon", "quote-colon", "escaped-colon", "escaped-colon-upper",
         "space-before-colon", "space-in-the-duplicate"],
)  # fmt: skip
def test_a_repeated_label_is_refused_however_the_body_is_spelled(raw: bytes) -> None:
    assert rejection(raw).code == "duplicate_key"


def test_every_offset_in_a_big_body_cannot_hide_as_many_repeated_keys() -> None:
    alerts = [alert(startsAt="2026-11-28T09:44:26+0530") for _ in range(50)]
    text = json.dumps(payload(*alerts))
    assert len(parse(text.encode(), PayloadLimits()).alerts) == 50
    hidden = text.replace('"namespace": "llm-research"', NAMESPACE_TWICE, 10)
    assert rejection(hidden.encode()).code == "duplicate_key"


def _exactly(body: bytes) -> str:
    """The verdict of the standard library's exact, slow decoding."""
    try:
        decode_json(body)
    except RequestRejected as exc:
        return exc.code
    return "ok"


def test_the_fast_path_agrees_with_the_exact_decoder_on_a_thousand_spellings() -> None:
    """Seeded: bodies with random offsets, escapes, spacing and, in half, one repeated key."""
    import random

    chooser = random.Random(20261201)
    pieces = ["a", ":", '\\"', "\\u0022", "\\u003a", " ", "\\\\", "é", "\\u00e9", "\\/"]
    for _ in range(1000):
        summary = "".join(chooser.choice(pieces) for _ in range(chooser.randint(0, 8)))
        offset = chooser.choice(["Z", "+0530", "+05:30", "-00:00", "+00:00", ".123Z"])
        text = json.dumps(payload(alert(startsAt=f"2026-11-28T09:44:26{offset}")))
        text = text.replace("CPU above 85%", summary)
        if chooser.random() < 0.5:
            text = text.replace('"namespace": "llm-research"', NAMESPACE_TWICE)
        if chooser.random() < 0.3:
            text = text.replace('": ', '" : ')
        raw = text.encode()
        expected = _exactly(raw)
        try:
            check(raw, PayloadLimits())
            got = "ok"
        except RequestRejected as exc:
            got = exc.code if exc.code in ("duplicate_key", "invalid_json") else "ok"
        assert got == (expected if expected in ("duplicate_key", "invalid_json") else "ok"), raw


# --- label names and strings ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", "1abc", "a-b", "a.b", "ä", "alertname\n", " a", "a b", "\u00a0"]
)
def test_a_label_name_prometheus_forbids_is_refused(name: str) -> None:
    raw = json.dumps(payload(alert(labels={"alertname": "HighCPUUsage", name: "x"}))).encode()
    exc = rejection(raw)
    assert (exc.status, exc.code) == (422, "invalid_label_name")


@pytest.mark.parametrize("name", ["a", "_", "__name__", "A_1", "x" * 256])
def test_a_label_name_prometheus_allows_is_accepted(name: str) -> None:
    raw = json.dumps(payload(alert(labels={"alertname": "HighCPUUsage", name: "x"}))).encode()
    assert len(parse(raw, PayloadLimits()).alerts) == 1


@pytest.mark.parametrize(
    "escape", [r"\ud800", r"\udc00", r"\udbff\u0041", r"\u0000", r"\ud800\ud800"]
)
@pytest.mark.parametrize("where", ['"HighCPUUsage"', '"summary"', '"aa01"', '"hook"'])
def test_a_lone_surrogate_or_nul_anywhere_is_refused(escape: str, where: str) -> None:
    text = json.dumps(payload(alert(), receiver="hook"))
    raw = text.replace(where, where[:-1] + escape + '"').encode()
    exc = rejection(raw)
    assert (exc.status, exc.code) == (422, "invalid_string")
    assert escape not in exc.detail


def test_a_fingerprint_proven_once_still_cannot_carry_other_labels() -> None:
    labels = {"alertname": "HighLatency", "namespace": "llm-research"}
    proven = fingerprint(labels)
    assert of_alert(proven, dict(labels)) == proven  # proven, and remembered
    assert of_alert(proven, dict(labels)) == proven  # the remembered path
    forged = {"alertname": "APIUnavailable", "namespace": "llm-research"}
    assert of_alert(proven, forged) == fingerprint(forged) != proven
    assert of_alert("aa01", labels) == proven
