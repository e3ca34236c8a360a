"""``remediator.payload``: the recorded Alertmanager 0.25 bodies parse, fields newer
Alertmanagers add are tolerated, and a refusal's sentence never echoes the input."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from remediator.errors import RequestRejected
from remediator.model import AlertStatus
from remediator.payload import PayloadLimits, decode_json, parse
from tests.support.payloads import fingerprint, webhook_alert, webhook_payload
from tests.support.service import fixture_bytes

MARKER = "ECHO-MARKER-7f3a"


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
    assert [a.fingerprint for a in parsed.alerts] == ["aa01"]


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
    assert [a.fingerprint for a in parse(text.encode(), PayloadLimits()).alerts] == ["aa01"]


def test_a_repeated_key_in_an_unknown_object_is_refused_too() -> None:
    text = json.dumps(payload()).replace(
        '"receiver"', '"routeLabels": {"a": 1, "a": 2}, "receiver"'
    )
    assert rejection(text.encode()).code == "duplicate_key"


def test_the_test_fingerprint_helper_gives_alertmanagers_fingerprints() -> None:
    body = json.loads(fixture_bytes("mixed-1002-alerts-one-resolved.json"))
    pairs = [(a["fingerprint"], fingerprint(a["labels"])) for a in body["alerts"]]
    assert len(pairs) == 1002 and all(sent == ours for sent, ours in pairs)
