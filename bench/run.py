"""The benchmark harness: every scenario, one table, ``bench/results.json``.

Each scenario is a module of this directory with ``async def measure(quick) -> list[Figure]``
that starts what it measures itself. They run one after another (never side by side: they
would share the CPU), each imported only when its turn comes, so one that is missing or
broken is reported as a single ``nan`` figure naming the error and the others still run.

The table has one row per figure: its value, the reference measured in the same run, their
ratio, the target and PASS, FAIL or ``—`` (context only). ``bench/results.json`` holds the
figures (``Figure.as_json()``, NaN written as null) and the machine: CPU count, load average
before and after, Python, the git commit, quick or not, start time.

Usage: ``python bench/run.py [--quick] [--only SCENARIO ...] [--json]``. Exit status 0
whatever the figures say, 1 when the harness itself broke, 130 when interrupted.
A scenario module run as a script (``python bench/ingest.py [--quick] [--json]``) prints
its own figures through :func:`script_main`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib
import json
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from figures import Figure

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results.json"
SCENARIOS = (
    "ingest",
    "ack_latency",
    "process_split",
    "decision_rate",
    "backlog",
    "classify",
    "storm",
    "kube_latency",
)
Measure = Callable[[bool], Coroutine[Any, Any, list[Figure]]]
NOT_JUDGED = "—"


def failed(scenario: str, exc: BaseException) -> Figure:
    """A scenario that could not be imported or raised: one ``nan`` figure naming why."""
    return Figure(scenario, "scenario ran", math.nan, "", note=f"{type(exc).__name__}: {exc}")


async def run_scenario(name: str, quick: bool) -> list[Figure]:
    """Import scenario ``name`` and await its ``measure(quick)``; a failure is a figure."""
    try:
        module = importlib.import_module(name)
        measure: Measure = module.measure
        return list(await measure(quick))
    except (Exception, SystemExit) as exc:
        return [failed(name, exc)]


def number(value: float | None) -> str:
    """A figure's number with three significant digits (more for big integers)."""
    if value is None:
        return ""
    if math.isnan(value):
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def target_text(fig: Figure) -> str:
    """The target as the comparison it makes: ``ratio >= 0.7``, ``<= 2 s``."""
    if fig.target is None or fig.sense == "info":
        return ""
    op = ">=" if fig.sense in ("min", "value_min") else "<="
    if fig.sense in ("min", "max"):
        return f"ratio {op} {number(fig.target)}"
    return f"{op} {number(fig.target)} {fig.unit}".rstrip()


def verdict(fig: Figure) -> str:
    passed = fig.passed
    return NOT_JUDGED if passed is None else ("PASS" if passed else "FAIL")


def row(fig: Figure) -> list[str]:
    reference = "" if fig.reference is None else f"{number(fig.reference)} ({fig.reference_name})"
    ratio = fig.ratio
    return [
        fig.scenario,
        fig.name,
        f"{number(fig.value)} {fig.unit}".rstrip(),
        reference,
        "" if ratio is None else f"{ratio:.2f}",
        target_text(fig),
        verdict(fig),
    ]


def render(figures: Sequence[Figure]) -> str:
    """One table of all figures, then their notes, numbered."""
    head = ["scenario", "figure", "value", "reference", "ratio", "target", "verdict"]
    rows = [row(fig) for fig in figures]
    notes: list[str] = []
    for cells, fig in zip(rows, figures, strict=True):
        if fig.note:
            notes.append(f"[{len(notes) + 1}] {fig.scenario} / {fig.name}: {fig.note}")
            cells[1] += f" [{len(notes)}]"
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    header = "  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()
    return "\n".join([header, "-" * len(header), *lines, "", *notes])


def finite(value: Any) -> Any:
    """NaN and infinities as null: ``results.json`` stays strict JSON."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def as_json(fig: Figure) -> dict[str, Any]:
    return {key: finite(value) for key, value in fig.as_json().items()}


def git_commit() -> str | None:
    """The checked-out commit, read from ``.git`` (None when not a plain checkout)."""
    git = REPO_ROOT / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        common = git / "commondir"
        root = (git / common.read_text().strip()).resolve() if common.exists() else git
        for base in (git, root):
            if (base / ref).exists():
                return (base / ref).read_text().strip()
        for line in (root / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except (OSError, IndexError):
        return None
    return None


def machine(quick: bool, started: float, load_before: tuple[float, ...]) -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "quick": quick,
        "started_at": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
        "seconds": round(time.time() - started, 1),
    }


async def run_all(names: Sequence[str], quick: bool) -> list[Figure]:
    figures: list[Figure] = []
    for name in names:
        began = time.perf_counter()
        progress(f"{name} ...")
        figures += await run_scenario(name, quick)
        progress(f"{name}: {time.perf_counter() - began:.1f} s")
    return figures


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short runs: all under about 60 s")
    p.add_argument("--only", nargs="+", choices=SCENARIOS, metavar="SCENARIO")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind: stop what runs
    names = [name for name in SCENARIOS if not args.only or name in args.only]
    started, load_before = time.time(), os.getloadavg()
    try:
        figures = asyncio.run(run_all(names, args.quick))
        info = machine(args.quick, started, load_before)
        report = {"machine": info, "figures": [as_json(f) for f in figures]}
        RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(json.dumps(report, indent=2) if args.json else render(figures))
        if not args.json:
            print(
                f"\n{info['cpu_count']} CPUs, load {load_before[0]:.2f} before,"
                f" {info['load_average_after'][0]:.2f} after; Python {info['python']};"
                f" commit {info['git_commit']}; {'quick' if args.quick else 'full'} run,"
                f" {info['seconds']} s; written to {RESULTS.relative_to(REPO_ROOT)}"
            )
    except KeyboardInterrupt:
        progress("interrupted; systems under test were stopped")
        return 130
    except Exception as exc:  # the harness itself broke
        progress(f"harness broken: {type(exc).__name__}: {exc}")
        return 1
    return 0


def script_main(measure: Measure, doc: str | None, argv: Sequence[str] | None = None) -> int:
    """``python bench/<scenario>.py [--quick] [--json]``: run one scenario, print it."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the short run of the harness")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        figures = asyncio.run(measure(args.quick))
    except KeyboardInterrupt:
        progress("interrupted; systems under test were stopped")
        return 130
    print(json.dumps([as_json(f) for f in figures], indent=2) if args.json else render(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
