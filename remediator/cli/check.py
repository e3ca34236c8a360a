"""``remediator check``: load the rules as ``serve`` does, then lint them, and report as
``amtool check-config`` does: a line per file (``Checking rules/10-platform.yaml  SUCCESS``
or ``FAILED``), then each finding as ``file:line:column: level: sentence  [lint]``, then
the summary (``ok: 14 rules (8 with actions) in 2 files, rule-set hash …``, or ``failed:``).

Exit status: 0 when no lint fails (warnings allowed), 1 when one does, 2 when the rules do
not load: one sentence on stderr, placed at ``file:line:column`` when the field it names is
found in the file, as every error of ``main`` is.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

from remediator.actions.registry import default_registry
from remediator.cli import offline
from remediator.core.errors import RuleFileError
from remediator.ruleset.files import read_bounded, rule_files
from remediator.ruleset.lint import Finding, Level, Source, lint
from remediator.ruleset.load import load_rules
from remediator.ruleset.read import error_path
from remediator.ruleset.rules import RuleSet
from remediator.ruleset.strict_yaml import Position, YamlError, parse, positions

LINT_FAILED = 1


def check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    directory = offline.rules_dir(args, environ)
    warnings: list[str] = []
    try:
        ruleset = load_rules(directory, default_registry(), warnings.append)
    except RuleFileError as exc:
        raise RuleFileError(placed(directory, str(exc))) from None
    sources = {name: Source.read(name, read_bounded(directory / name)) for name in ruleset.files}
    findings = lint(ruleset, sources, warnings)
    print(report(directory, ruleset, findings))
    return LINT_FAILED if any(f.level is Level.ERROR for f in findings) else 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def report(directory: Path, ruleset: RuleSet, findings: Sequence[Finding]) -> str:
    """What ``check`` prints: a line per file, the findings, and the summary last."""
    failed = {f.file for f in findings if f.level is Level.ERROR}
    lines = [
        f"Checking {directory / name}  {'FAILED' if name in failed else 'SUCCESS'}"
        for name in ruleset.files
    ]
    lines += [
        f"{directory / f.file}:{f.line}:{f.column}: {f.level.value}: {f.sentence}  [{f.lint}]"
        for f in findings
    ]
    actions = sum(1 for rule in ruleset.rules if rule.plan)
    summary = (
        f"{len(ruleset.rules)} rules ({actions} with actions) in {len(ruleset.files)} files,"
        f" rule-set hash {ruleset.hash}"
    )
    errors = sum(1 for f in findings if f.level is Level.ERROR)
    counts = [_plural(errors, "error")] if errors else []
    if warned := len(findings) - errors:
        counts.append(_plural(warned, "warning"))
    tail = f"; {', '.join(counts)}" if counts else ""
    lines.append(f"{'failed' if errors else 'ok'}: {summary}{tail}")
    return "\n".join(lines)


def placed(directory: Path, sentence: str) -> str:
    """A load error with ``directory/file:line:column: `` in place of its ``file``, when
    the file and the field it names are found; the sentence as it is otherwise."""
    try:
        names = [path.name for path in rule_files(directory)]
    except RuleFileError:
        return sentence
    named = [n for n in names if sentence.startswith((f"{n}: ", f"{n} "))]
    if not named:
        return sentence
    name = max(named, key=len)
    try:
        data = read_bounded(directory / name)
    except RuleFileError:
        return sentence  # the file itself is the error: it has no lines to name
    rest = sentence[len(name) :].removeprefix(":").lstrip()
    where = _position(data, rest)
    return sentence if where is None else f"{directory / name}:{where[0]}:{where[1]}: {rest}"


def _position(data: bytes, rest: str) -> Position | None:
    """Where in ``data`` the error ``rest`` (its file's name cut off) is."""
    try:
        raw = parse(data)
    except YamlError as exc:
        return exc.mark
    path = error_path(rest, raw)
    if path is None:
        return None
    found = positions(data)
    return next((found[path[:end]] for end in range(len(path), 0, -1) if path[:end] in found), None)
