"""An evidence bundle's key and size cap: the key depends on the claim alone (so an upload
again overwrites), by the UTC day the alert came; a bundle over the cap loses its largest
parts first, says which, and never exceeds the cap, whatever it holds."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from remediator.evidence import bundle
from remediator.evidence.bundle import Phase, Subject

AT = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)


def subject(received_at: datetime = AT, **alert: Any) -> Subject:
    return Subject(
        episode_id=42, claim_id=7, rule="cpu", action="scale-out-api", kind="scale_out",
        target="llm-research/Deployment/api", received_at=received_at,
        alert={"labels": {"alertname": "HighCPUUsage"}, **alert},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("prefix", "received_at", "phase", "expected"),
    [
        ("team-a/remediator", AT, Phase.BEFORE,
         "team-a/remediator/evidence/2026/12/02/42/7-before.json"),
        ("/team-a/remediator/", AT, Phase.AFTER,
         "team-a/remediator/evidence/2026/12/02/42/7-after.json"),
        ("", AT, Phase.REFUSED, "evidence/2026/12/02/42/7-refused.json"),
        # 23:30 UTC is the 3rd in Berlin: the day is UTC's, wherever the clock was set.
        ("p", AT.astimezone(timezone(timedelta(hours=1))), Phase.BEFORE,
         "p/evidence/2026/12/02/42/7-before.json"),
        ("p", datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), Phase.BEFORE,
         "p/evidence/2025/12/31/42/7-before.json"),
    ],
)  # fmt: skip
def test_the_key_is_the_claims_by_the_utc_day_the_alert_came(
    prefix: str, received_at: datetime, phase: Phase, expected: str
) -> None:
    assert bundle.key(prefix, subject(received_at), phase) == expected


def test_the_same_claim_and_phase_always_have_the_same_key() -> None:
    first = bundle.key("p", subject(), Phase.AFTER)
    assert bundle.key("p", subject(annotations={"summary": "other"}), Phase.AFTER) == first
    assert len({bundle.key("p", subject(), phase) for phase in Phase}) == 3


def test_a_refusal_before_any_claim_is_keyed_by_its_episode_alone() -> None:
    """An episode is decided once: its refusal before a claim has one key, beside (never
    over) the bundles of a claim of the same episode."""
    unclaimed = replace(subject(), claim_id=None)
    key = bundle.key("p", unclaimed, Phase.REFUSED)
    assert key == "p/evidence/2026/12/02/42/refused.json"
    assert key not in {bundle.key("p", subject(), phase) for phase in Phase}
    assert bundle.document(unclaimed, Phase.REFUSED, AT, {}, {})["claim"] is None


def document(**sections: Any) -> dict[str, Any]:
    return bundle.document(subject(), Phase.BEFORE, AT, sections, {})


def test_a_bundle_under_the_cap_is_kept_whole_and_encoded_as_ascii() -> None:
    doc = document(pod={"name": "api-0", "note": "caf\u00e9 \ud800"})
    body = bundle.fitted(json.loads(json.dumps(doc)), 1 << 20)
    assert body.isascii()
    assert json.loads(body) == doc
    assert "truncated" not in json.loads(body)


CAP = 16_384


@pytest.mark.parametrize(
    ("sections", "cut", "kept"),
    [
        # a long list keeps its newest half, halved again until it fits
        ({"events": [{"n": n, "pad": "x" * 100} for n in range(1000)], "pod": {"a": 1}},
         ["events"], "pod"),
        # a long text keeps its end: the newest log lines
        ({"logs": {"app": {"lines": ["y" * 50_000]}}, "pod": {"a": 1}}, ["logs"], "pod"),
        # only the largest part is cut; the small one stays
        ({"big": "z" * 100_000, "small": "keep me"}, ["big"], "small"),
        # a deep mapping is cut at its largest leaf
        ({"deployment": {"spec": {"template": "t" * 60_000}, "status": {"ok": True}}},
         ["deployment"], "deployment"),
        # a number or a structure that cannot be halved becomes a note of its size
        ({"blob": {"k" * 30_000: 1}, "pod": {}}, ["blob"], "pod"),
    ],
)  # fmt: skip
def test_a_bundle_over_the_cap_loses_its_largest_parts_first_and_says_which(
    sections: dict[str, Any], cut: list[str], kept: str
) -> None:
    body = bundle.fitted(document(**sections), CAP)
    assert len(body) <= CAP
    found = json.loads(body)
    assert found["truncated"] == cut
    assert kept in found["sections"]
    assert (found["claim"], found["target"]) == (7, "llm-research/Deployment/api")


def test_a_log_cut_keeps_its_newest_lines() -> None:
    lines = [f"line {n:05d}" for n in range(20_000)]
    found = json.loads(bundle.fitted(document(logs={"app": {"lines": lines}}), CAP))
    kept = found["sections"]["logs"]["app"]["lines"]
    assert kept == lines[-len(kept) :] and 0 < len(kept) < len(lines)


def test_a_huge_alert_is_cut_too() -> None:
    doc = bundle.document(
        subject(annotations={"description": "d" * 200_000}), Phase.REFUSED, AT, {}, {}
    )
    found = json.loads(bundle.fitted(doc, CAP))
    assert found["truncated"] == ["alert"]
    assert found["phase"] == "refused"


def test_a_frame_over_the_cap_on_its_own_keeps_only_what_says_whose_it_is() -> None:
    """Errors are not cut part by part: a bundle whose errors alone are over the cap keeps
    its frame (claim, target, phase) and says that it was over."""
    errors = {f"part {n}": "e" * 1000 for n in range(100)}
    doc = bundle.document(subject(), Phase.AFTER, AT, {"pod": {}}, errors)
    found = json.loads(bundle.fitted(doc, CAP))
    assert found["truncated"] == ["everything"]
    assert found["errors"] == {"bundle": found["errors"]["bundle"]}
    assert "over the cap" in found["errors"]["bundle"]
    assert (found["claim"], found["phase"]) == (7, "after")


@pytest.mark.parametrize("cap", [CAP, 20_000, 100_000])
def test_no_bundle_exceeds_its_cap_whatever_it_holds(cap: int) -> None:
    nested: Any = "leaf" * 10_000
    for _ in range(30):
        nested = {"child": nested, "pad": ["p" * 100] * 20}
    sections = {"nested": nested, "wide": {str(n): n for n in range(20_000)},
                "numbers": list(range(50_000)), "unicode": "\U0001f600" * 20_000}  # fmt: skip
    assert len(bundle.fitted(document(**sections), cap)) <= cap


def test_the_same_bundle_fits_to_the_same_bytes() -> None:
    sections = {"events": [{"n": n} for n in range(5000)], "logs": "l" * 40_000}
    assert bundle.fitted(document(**sections), CAP) == bundle.fitted(document(**sections), CAP)
