"""Replay a recorded stream offline (``remediator replay``): webhook bodies at their
receive times, through the ``engine``, compressed: the virtual clock jumps from one receive
time to the next, and the worker takes each body in chunks as ``serve`` does.

Where it sits: ``cli.replay`` reads the stream (``read``), replays it under one rule set
(``replay``) or two, and prints ``summary`` and ``differences``. The stream is JSON lines,
``{"received_at": "2024-05-01T12:00:00Z", "body": {…an Alertmanager webhook body…}}``.
Pages counted are those sent by the stream's last receive time.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from remediator.audit import archive
from remediator.core.errors import ConfigError
from remediator.ruleset.rules import RuleSet
from remediator.simulate import bodies
from remediator.simulate.decisions import FIELDS, Decision, by_alert
from remediator.simulate.engine import Engine, Page, settings

SHOWN = 20
"""Actions, and differences, listed one by one before the rest are counted."""


@dataclass(frozen=True, slots=True)
class Entry:
    received_at: datetime
    body: bytes
    alerts: int


@dataclass(frozen=True, slots=True)
class Replayed:
    ruleset: RuleSet
    entries: int
    alerts: int
    decisions: list[Decision]
    pages: list[Page]
    seconds: float


def _entry(path: Path, number: int, line: str) -> Entry:
    where = f"{path}:{number}"
    try:
        item = json.loads(line)
        received_at = datetime.fromisoformat(item["received_at"])
        body = item["body"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f'{where}: is not {{"received_at": RFC 3339 time, "body": {{…}}}} ({exc}).'
        ) from None
    if received_at.tzinfo is None or not isinstance(body, dict):
        raise ConfigError(f"{where}: received_at needs a time zone, and body must be an object.")
    data, alerts = bodies.encode(body, settings().payload_limits, where)
    return Entry(received_at, data, len(alerts))


def read(path: Path) -> list[Entry]:
    """The stream's entries, in file order (an archive directory: its journal, in row
    order); ``ConfigError`` naming the line that is wrong."""
    if path.is_dir():
        entries = _archived(path)
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot be read ({exc}).") from None
        entries = [_entry(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not entries:
        raise ConfigError(f"{path}: holds no entries.")
    return entries


def _archived(directory: Path) -> list[Entry]:
    """The journal of an archive (``remediator audit export``, or a copy of the bucket's
    prefix): each object checked against its manifest."""
    entries = []
    for n, (path, line) in enumerate(archive.lines(directory, "journal"), 1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: line {n} is not UTF-8 ({exc}).") from None
        entries.append(_entry(path, n, text))
    return entries


async def replay(ruleset: RuleSet, entries: Sequence[Entry]) -> Replayed:
    started = time.monotonic()
    async with Engine(ruleset, start=entries[0].received_at) as engine:
        for entry in entries:
            await engine.feed(entry.body, entry.received_at)
        decisions = list(by_alert(await engine.records()).values())
        pages = list(engine.pages)
    alerts = sum(e.alerts for e in entries)
    return Replayed(ruleset, len(entries), alerts, decisions, pages, time.monotonic() - started)


def _stamp(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _counted(title: str, counts: Counter[str]) -> list[str]:
    rows = [f"  {name or '-'}: {n}" for name, n in sorted(counts.items())]
    return [title, *(rows or ["  none"])]


def _actions(decisions: Sequence[Decision]) -> list[str]:
    would = [d for d in decisions if d.step == "dry_run"]
    rows = [f"  {_stamp(d.at)}  {d.action} on {d.target}  (rule {d.rule})" for d in would[:SHOWN]]
    if len(would) > SHOWN:
        rows.append(f"  … and {len(would) - SHOWN} more")
    return [f"actions that would run: {len(would)}", *rows]


def _storm(decisions: Sequence[Decision]) -> str:
    stormed = [d for d in decisions if d.reason == "storm"]
    if not stormed:
        return "storm brake: never engaged"
    return f"storm brake: engaged at {_stamp(stormed[0].at)}, {len(stormed)} decisions refused"


def summary(result: Replayed, stream: str) -> str:
    decisions = result.decisions
    pages = Counter(f"{p.sink} tier {p.tier} {p.event}" for p in result.pages)
    lines = [
        f"replayed {result.alerts} alerts in {result.entries} bodies from {stream} under rule"
        f" set {result.ruleset.hash} in {result.seconds:.1f} s",
        *_counted("decisions by outcome:", Counter(d.outcome for d in decisions)),
        *_actions(decisions),
        *_counted(
            "refusals by reason:", Counter(d.reason for d in decisions if d.outcome == "refused")
        ),
        *_counted("pages sent by sink and tier:", pages),
        _storm(decisions),
    ]
    return "\n".join(lines)


def _said(decision: Decision | None) -> dict[str, Any]:
    return {} if decision is None else {name: decision.value(name) for name in FIELDS}


def differences(base: Replayed, other: Replayed) -> list[str]:
    """Each alert decided otherwise under ``other``'s rules: what changed, field by field."""
    ours = {(d.journal_id, d.fingerprint): d for d in base.decisions}
    theirs = {(d.journal_id, d.fingerprint): d for d in other.decisions}
    changed: list[str] = []
    for key in sorted(ours.keys() | theirs.keys()):
        a, b = ours.get(key), theirs.get(key)
        before, after = _said(a), _said(b)
        if before == after:
            continue
        named = a or b
        assert named is not None
        fields = [f"{n} {before.get(n) or '-'} → {after.get(n) or '-'}" for n in FIELDS
                  if before.get(n) != after.get(n)]  # fmt: skip
        changed.append(
            f"  {_stamp(named.at)}  {named.alertname} ({named.fingerprint}): {', '.join(fields)}"
        )
    return changed


def difference_report(base: Replayed, other: Replayed) -> str:
    changed = differences(base, other)
    head = (
        f"decisions that differ under rule set {other.ruleset.hash}: {len(changed)} of"
        f" {len(base.decisions)}"
    )
    rows = changed[:SHOWN] + (
        [f"  … and {len(changed) - SHOWN} more"] if len(changed) > SHOWN else []
    )
    return "\n".join([head, *rows])
