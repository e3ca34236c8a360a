"""The ack path's validation (``remediator.ingest.payload.check``) against the cheapest decoders,
side by side in one run: what exact duplicate-key detection, label-name checks and time
checks cost on Alertmanager's own bodies.

    .venv/bin/python bench/payload_check.py [--rounds 15] [--json]

For each body, every round times each contender once, interleaved, and the median round
is reported with its ratio to ``json.loads``. Exit 0 whatever the figures say.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from remediator.config import PayloadLimits  # noqa: E402
from remediator.ingest.payload import check  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "alertmanager-0.25" / "mixed-1002-alerts-one-resolved.json"


def _bodies() -> dict[str, bytes]:
    recorded = FIXTURE.read_bytes()
    document = json.loads(recorded)
    alerts = document["alerts"]
    big = dict(document, alerts=[a for _ in range(24) for a in alerts])  # ~24 000 alerts
    quoted = dict(document, alerts=[
        dict(a, annotations={"description": 'Pod "api-7d9f" in "llm-research": CPU at 93%'})
        for a in alerts
    ])  # fmt: skip
    return {
        "recorded 1002 alerts": recorded,
        "24 048 alerts": json.dumps(big, separators=(",", ":")).encode(),
        "1002 alerts, quoted annotations": json.dumps(quoted, separators=(",", ":")).encode(),
    }


def _contenders() -> dict[str, Callable[[bytes], Any]]:
    limits = PayloadLimits(max_alerts=30_000)
    untyped = msgspec.json.Decoder()
    return {
        "json.loads": json.loads,
        "msgspec untyped": untyped.decode,
        "payload.check": lambda body: check(body, limits),
    }


def measure(rounds: int) -> dict[str, dict[str, float]]:
    report: dict[str, dict[str, float]] = {}
    contenders = _contenders()
    for name, body in _bodies().items():
        samples: dict[str, list[float]] = {c: [] for c in contenders}
        for _ in range(rounds):
            for contender, fn in contenders.items():
                started = time.perf_counter()
                fn(body)
                samples[contender].append(time.perf_counter() - started)
        medians = {c: statistics.median(s) * 1000 for c, s in samples.items()}
        report[f"{name} ({len(body) / 1e6:.2f} MB)"] = medians
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.rounds)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for body, medians in report.items():
        base = medians["json.loads"]
        print(body)
        for contender, ms in medians.items():
            print(f"  {contender:<16} {ms:8.2f} ms   {ms / base:5.2f} x json.loads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
