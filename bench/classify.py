"""Classification and rule loading as the rule table grows: 10 → 10 000 realistic rules.

Where it sits: a scenario of ``bench/run.py`` (and a script of its own). In this process,
it writes rule tables of 10, 100, 1 000 and 10 000 rules the way SREs write them (equality
on ``alertname``, regexes on ``alertname``, negative matchers, rules keyed on another
label, rules whose only equality is a common label, a catch-all last), loads each with
``load_rules`` and classifies the same 20 000 alerts with ``RuleSet.classify``. The figure
is alerts/s at each size against 10 rules, measured in this same run (target: 10 000 rules
≥ 0.67 of the rate with 10 rules), and the seconds ``load_rules`` and ``remediator check`` take for
10 000 rules (target ≤ 1 s). Quick mode: 5 000 alerts; ``load_rules`` is the one load of the
classification pass (full: median of three more), and ``remediator check`` runs on the
1 000-rule table (a process: its start-up is most of it).

    .venv/bin/python bench/classify.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
for entry in (REPO_ROOT, REPO_ROOT / "bench"):  # run as a script: sys.path[0] is bench/
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from figures import Figure  # noqa: E402
from rules_load import POLICY  # noqa: E402

from remediator.actions.registry import default_registry  # noqa: E402
from remediator.ruleset.load import load_rules  # noqa: E402
from remediator.ruleset.rules import RuleSet  # noqa: E402

SIZES = (10, 100, 1_000, 10_000)
ALERTS = 20_000
#: One rule of each shape in turn; ``{i}`` is the rule's number.
SHAPES = (
    ['alertname="Alert{i}"', 'namespace="ns-{m}"'],
    ['alertname="Alert{i}"'],
    ['alertname="Alert{i}"', 'env!="staging"'],
    ['alertname=~"Kube{i}(Pod|Deployment)(Crash|NotReady)"', 'severity="critical"'],
    ['alertname=~"Team{i}.*"', 'namespace!~"kube-.*"'],
    ['service="svc-{i}"', 'severity="warning"'],
    ['alertname="Alert{i}"', 'cluster=~"prod-.*"'],
    ['job="job-{i}"'],
    ['alertname=~"Disk{i}(Usage|Pressure)High"'],
    ['alertname="Alert{i}"', 'namespace=~"ns-[0-9]+"'],
)
#: Labels of an alert the rule of each shape takes.
LABELS = (
    {"alertname": "Alert{i}", "namespace": "ns-{m}"},
    {"alertname": "Alert{i}"},
    {"alertname": "Alert{i}", "env": "prod"},
    {"alertname": "Kube{i}PodCrash", "severity": "critical"},
    {"alertname": "Team{i}Latency", "namespace": "web"},
    {"alertname": "Other", "service": "svc-{i}", "severity": "warning"},
    {"alertname": "Alert{i}", "cluster": "prod-eu"},
    {"alertname": "Up", "job": "job-{i}"},
    {"alertname": "Disk{i}UsageHigh"},
    {"alertname": "Alert{i}", "namespace": "ns-7"},
)
COMMON = {"instance": "node-1:9100", "severity": "warning", "prometheus": "monitoring/k8s"}


def rules_text(count: int) -> str:
    lines = ["rules:"]
    for i in range(count - 1):
        matchers = ", ".join(f"'{m.format(i=i, m=i % 50)}'" for m in SHAPES[i % len(SHAPES)])
        lines.append(f"  - {{name: rule-{i}, severity: SEV-3, matchers: [{matchers}]}}")
    lines.append("  - {name: default, severity: SEV-3, matchers: []}")
    return "\n".join(lines) + "\n"


def alerts(count: int, rules: int, seed: int = 7) -> list[dict[str, str]]:
    """Alerts for ``rules`` rules: four in five taken by a generated rule, the rest by none
    (the catch-all)."""
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        i = rng.randrange(max(rules - 1, 1))
        labels = {k: v.format(i=i, m=i % 50) for k, v in LABELS[i % len(LABELS)].items()}
        if rng.random() < 0.2:
            labels["alertname"] = f"Unruled{i}"
        made.append({**COMMON, **labels})
    return made


def write(directory: Path, count: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "00-policy.yaml").write_text(POLICY)
    (directory / "10-rules.yaml").write_text(rules_text(count))
    return directory


def rate(ruleset: RuleSet, labels: Sequence[dict[str, str]]) -> float:
    """Alerts classified per second (best of three passes: the machine is shared)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for one in labels:
            ruleset.classify(one)
        best = min(best, time.perf_counter() - started)
    return len(labels) / best


def load_seconds(directory: Path) -> float:
    started = time.perf_counter()
    load_rules(directory, default_registry())
    return time.perf_counter() - started


def check_seconds(directory: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "remediator", "check", "--rules", str(directory)],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _classification(root: Path, alerts_count: int) -> tuple[list[Figure], float]:
    """alerts/s per size (the rule tables written under ``root/SIZE``); the seconds the
    largest table took to load."""
    figures: list[Figure] = []
    base = loaded = 0.0
    for size in SIZES:
        directory = write(root / str(size), size)
        started = time.perf_counter()
        ruleset = load_rules(directory, default_registry())
        loaded = time.perf_counter() - started
        per_s = rate(ruleset, alerts(alerts_count, size))
        base = base or per_s
        last = size == SIZES[-1]
        figures.append(
            Figure(
                "classify",
                f"alerts/s with {size} rules",
                per_s,
                "alerts/s",
                reference=base,
                reference_name=f"{SIZES[0]} rules",
                target=0.67 if last else None,
                sense="min" if last else "info",
            )
        )
    return figures, loaded


async def measure(quick: bool) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-classify-") as tmp:
        figures, loaded = _classification(Path(tmp), ALERTS // 4 if quick else ALERTS)
        largest = Path(tmp) / str(SIZES[-1])
        loads = [loaded] if quick else sorted(load_seconds(largest) for _ in range(3))
        checked = SIZES[-2] if quick else SIZES[-1]
        figures.append(
            Figure(
                "classify",
                f"load_rules, {SIZES[-1]} rules",
                loads[len(loads) // 2],
                "s",
                target=1.0,
                sense="value_max",
            )
        )
        figures.append(
            Figure(
                "classify",
                f"remediator check, {checked} rules",
                check_seconds(Path(tmp) / str(checked)),
                "s",
                note="a process: imports included",
            )
        )
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.quick))
    for figure in figures:
        if args.json:
            print(json.dumps(figure.as_json()))
        else:
            ratio = f" ({figure.ratio:.2f} x {figure.reference_name})" if figure.ratio else ""
            print(f"{figure.name}: {figure.value:,.3f} {figure.unit}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
