"""Rule loading time: ``load_rules`` on a generated directory of many rules.

Writes ``--rules`` rules (each with an equality and a regex matcher, a named or an inline
action, a target template, a cooldown and a rate limit; every tenth escalates only) spread
over files of ``--per-file`` rules, plus a policy file, into a temporary directory, then
loads it ``--rounds`` times in this process and prints the fastest and the median round.
With ``--profile``, prints the 25 most expensive functions of one more round (cProfile).

Exit status: 0 whatever the figures (a measurement, not a test); 1 when the generated
rules do not load; 2 for bad arguments.

Usage: ``python bench/rules_load.py [--rules 20000] [--per-file 2000] [--rounds 5]
[--profile]``
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: sys.path[0] is bench/
    sys.path.insert(0, str(REPO_ROOT))

from remediator.actions.registry import default_registry  # noqa: E402
from remediator.core.errors import RuleFileError  # noqa: E402
from remediator.ruleset.load import load_rules  # noqa: E402

POLICY = """\
policy:
  namespaces: [llm-research]
  storm: {max_targets: 10, window_s: 60}
  global_budget: {max_actions: 20, window_s: 3600}
  max_concurrent_actions: 4
defaults:
  cooldown_s: 900
  verify_within_s: 300
  escalation: {SEV-1: page, SEV-2: page, SEV-3: ticket}
escalations:
  page:
    tiers:
      - {after_s: 0, notify: [oncall-primary]}
      - {after_s: 1800, notify: [platform-lead]}
  ticket:
    tiers: [{after_s: 0, notify: [ops-channel]}]
actions:
  scale-out-api:
    kind: scale_out
    params: {step: 2, max_replicas: 20, scale_in_after_s: 1800}
"""

ACTED = """\
  - name: rule-{i}
    description: Generated rule {i} for the load benchmark.
    match: ['alertname="Alert{i}"', 'namespace=~"llm-.*"']
    severity: SEV-3
    action: {action}
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    cooldown_s: 600
    rate_limit: {{max_actions: 4, window_s: 3600}}
"""

ESCALATE_ONLY = """\
  - name: rule-{i}
    description: Generated rule {i}, escalate only.
    match: ['alertname="Alert{i}"', 'severity!="info"']
    severity: SEV-2
"""

CATCH_ALL = """\
  - name: default
    match: []
    severity: SEV-3
"""

INLINE = "{kind: log_only, params: {note: runbook step}}"


def _rule(i: int) -> str:
    if i % 10 == 9:
        return ESCALATE_ONLY.format(i=i)
    return ACTED.format(i=i, action=INLINE if i % 2 else "scale-out-api")


def write_rules(directory: Path, count: int, per_file: int) -> list[Path]:
    """``count`` rules in files of ``per_file``, the catch-all last; the files written."""
    files = [directory / "00-policy.yaml"]
    files[0].write_text(POLICY)
    for start in range(0, count, per_file):
        body = "".join(_rule(i) for i in range(start, min(start + per_file, count)))
        last = start + per_file >= count
        path = directory / f"{10 + start // per_file:04d}-rules.yaml"
        path.write_text("rules:\n" + body + (CATCH_ALL if last else ""))
        files.append(path)
    return files


def _round(directory: Path) -> float:
    registry = default_registry()
    started = time.perf_counter()
    ruleset = load_rules(directory, registry)
    elapsed = time.perf_counter() - started
    del ruleset  # freed after the clock stops: freeing 20 000 rules is not loading them
    return elapsed


def _profile(directory: Path) -> None:
    registry = default_registry()
    profiler = cProfile.Profile()
    profiler.runcall(load_rules, directory, registry)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=_positive, default=20_000, help="rules to generate")
    parser.add_argument("--per-file", type=_positive, default=2_000, help="rules per file")
    parser.add_argument("--rounds", type=_positive, default=5, help="loads to time")
    parser.add_argument("--profile", action="store_true", help="cProfile one more load")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rules-load-") as tmp:
        directory = Path(tmp)
        files = write_rules(directory, args.rules, args.per_file)
        size = sum(p.stat().st_size for p in files)
        print(
            f"{args.rules + 1} rules in {len(files)} files ({size / 2**20:.1f} MiB,"
            f" largest {max(p.stat().st_size for p in files) / 2**10:.0f} KiB)"
        )
        try:
            times = [_round(directory) for _ in range(args.rounds)]
        except RuleFileError as exc:
            print(f"rules_load: the generated rules do not load: {exc}", file=sys.stderr)
            return 1
        print(
            f"load_rules: first {times[0]:.3f} s, fastest {min(times):.3f} s,"
            f" median {statistics.median(times):.3f} s over {args.rounds} rounds"
        )
        if args.profile:
            _profile(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
