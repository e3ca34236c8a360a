"""An evidence bundle's format: what a reviewer of one action needs, as one JSON document
per phase of its claim, under a key the claim fixes. Pure: ``capture`` builds bundles,
``uploader`` ships them.

Layout under the archive's prefix, by the UTC day the alert was received::

    <prefix>/evidence/2026/12/02/<episode>/<claim>-before.json    before the write
    <prefix>/evidence/2026/12/02/<episode>/<claim>-after.json     once it is judged
    <prefix>/evidence/2026/12/02/<episode>/<claim>-refused.json   a refusal that pages
    <prefix>/evidence/2026/12/02/<episode>/refused.json           one before any claim

A guard that refuses before a claim (cooldown, a budget, the storm brake…) decides its
episode once, so the episode alone names that bundle. The key depends on the claim alone: a
bundle captured again (a claim resumed after a crash) or uploaded again (a crash after the
upload) overwrites the same object. A bundle holds at most ``max_bytes``: past it the
largest part is cut (a list to its newest items, a text to its end, anything else to a note
of its size) until it fits, and ``truncated`` names each part cut.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

FORMAT = "remediator-evidence/1"
CONTENT_TYPE = "application/json"
MAX_PASSES = 20
"""Cuts at most before every part is dropped; each aims at what is over, so few are made."""
SHORT_TEXT = 1024
"""A text this long or shorter is dropped whole rather than cut."""
NOTE_BYTES = len(json.dumps({"omitted": "18446744073709551616 bytes, cut to fit the bundle's cap"}))
"""What a dropped part's note takes: a part this small is not cut."""
OMITTED = "…omitted"
"""The key of a cut mapping's note of the entries it dropped."""
SLACK_BYTES = 64
"""Aimed under the cap by this much: a cut text's ellipsis, the ``truncated`` list."""


class Phase(StrEnum):
    BEFORE = "before"
    AFTER = "after"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose evidence: the claim (None for a refusal before one), and what the pages about
    it show."""

    episode_id: int
    claim_id: int | None
    rule: str
    action: str
    kind: str
    target: str
    received_at: datetime
    alert: Mapping[str, Any]


def key(prefix: str, subject: Subject, phase: Phase) -> str:
    day = subject.received_at.astimezone(UTC)
    head = [prefix.strip("/")] if prefix.strip("/") else []
    parts = [*head, "evidence", f"{day:%Y/%m/%d}", str(subject.episode_id)]
    claim = "" if subject.claim_id is None else f"{subject.claim_id}-"
    return "/".join([*parts, f"{claim}{phase.value}.json"])


def document(
    subject: Subject,
    phase: Phase,
    captured_at: datetime,
    sections: Mapping[str, Any],
    errors: Mapping[str, str],
    outcome: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The bundle, before redaction and the size cap. ``sections``: what was read, by name;
    ``errors``: what could not be, and why; ``outcome``: the action's sentence and details
    (after it ran) or the refusal (refused)."""
    return {
        "format": FORMAT,
        "phase": phase.value,
        "captured_at": captured_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "episode": subject.episode_id,
        "claim": subject.claim_id,
        "rule": subject.rule,
        "action": subject.action,
        "kind": subject.kind,
        "target": subject.target,
        "alert": dict(subject.alert),
        "outcome": dict(outcome or {}),
        "sections": dict(sections),
        "errors": dict(errors),
    }


def encode(value: Any) -> bytes:
    """Compact JSON, non-ASCII escaped (what an API answered may hold lone surrogates)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


def fitted(bundle: dict[str, Any], max_bytes: int) -> bytes:
    """``bundle`` encoded in at most ``max_bytes``, its largest parts cut until it fits.
    Each cut aims at the bytes over the cap, so a few passes do (each encodes the bundle
    once): a bundle of megabytes costs milliseconds, not a cut per halving."""
    body = encode(bundle)
    cuts: list[str] = []
    for _ in range(MAX_PASSES):
        if len(body) <= max_bytes:
            break
        parts = {**bundle["sections"], "alert": bundle["alert"], "outcome": bundle["outcome"]}
        name, size = max(((n, len(encode(v))) for n, v in parts.items()), key=lambda p: p[1])
        if size <= NOTE_BYTES:
            break  # nothing left to cut: only the frame is over
        where = bundle["sections"] if name in bundle["sections"] else bundle
        over = len(body) - max_bytes + len(encode(sorted({*cuts, name}))) + SLACK_BYTES
        where[name] = _cut(where[name], size, max(0, size - over))
        cuts.append(name)
        bundle["truncated"] = sorted(set(cuts))
        body = encode(bundle)
    if len(body) > max_bytes:  # the frame alone: the errors, say, are what is too long
        bundle["sections"], bundle["errors"] = {}, {"bundle": f"{len(body)} bytes, over the cap"}
        bundle["alert"], bundle["outcome"], bundle["truncated"] = {}, {}, ["everything"]
        body = encode(bundle)
    return body


def _cut(value: Any, size: int, target: int) -> Any:
    """``value`` in about ``target`` bytes encoded: a list keeps its newest items, a mapping
    its largest entries cut or dropped, a long text its end; anything else becomes a note of
    its size."""
    if target < NOTE_BYTES:
        return _dropped(size)
    if isinstance(value, list) and value:
        sizes = [len(encode(item)) + 1 for item in value]
        kept, used = 0, 2
        while kept < len(value) and used + sizes[-1 - kept] <= target:
            used += sizes[-1 - kept]
            kept += 1
        if kept == 0:
            return [_cut(value[-1], sizes[-1], target - 2)]
        return value[len(value) - kept :]
    if isinstance(value, dict) and value:
        return _cut_mapping(value, size - target)
    if isinstance(value, str) and len(value) > SHORT_TEXT:
        keep = max(0, len(value) * (target - 8) // max(size, 1))
        return "…" + value[len(value) - keep :] if keep else _dropped(size)
    return _dropped(size)


def _cut_mapping(value: dict[str, Any], over: int) -> dict[str, Any]:
    """``value`` about ``over`` bytes shorter: its largest entry cut, or dropped (and the
    next largest then) when cutting it is not enough; a note says how many were dropped."""
    sizes = {k: len(encode(k)) + len(encode(v)) + 2 for k, v in value.items()}
    cut, dropped = dict(value), 0
    for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
        if over <= 0:
            break
        inner = sizes[key] - len(encode(key)) - 2
        if inner - over >= NOTE_BYTES:
            cut[key] = _cut(value[key], inner, inner - over)
            over -= inner - len(encode(cut[key]))
        else:
            del cut[key]
            dropped += 1
            over -= sizes[key]
    if dropped:
        cut[OMITTED] = f"{dropped} of {len(value)} entries, cut to fit the bundle's cap"
    return cut


def _dropped(size: int) -> dict[str, str]:
    return {"omitted": f"{size} bytes, cut to fit the bundle's cap"}
