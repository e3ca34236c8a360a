"""Run rule unit tests (``remediator test``): each case of a test file on a fresh engine.

Where it sits: ``cli.rule_tests`` loads the files (``prepare``: the test file, then its
rules through ``ruleset.load.load_rules``, as ``serve`` loads them, their Kubernetes
actions on one ``KubeHandle`` and kill_query on one ``DatabaseHandle``) and runs their
cases here; ``junit`` writes the results.
A case's inputs and expectations are taken in time order, an input before an expectation
at the same time. An expectation's ``decisions``
are about the alerts of the inputs at its own time; its ``notifications`` are every page
sent up to it, each with what came of it. A ``world`` input puts its facts in the case's
in-memory world (``simulate.world``) at its time, before what falls due then is delivered;
a case with Kubernetes facts runs its engine on that cluster, a case without on none; its
databases are the only ones kill_query finds, and its sinks answer as it says. A failure
says the case, the time, what was expected and what was got.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remediator.actions.base import AnyAction
from remediator.actions.registry import default_registry
from remediator.clients.k8s import KubeHandle
from remediator.clients.postgres import DatabaseHandle
from remediator.config import Settings
from remediator.core.errors import ConfigError, RuleFileError
from remediator.ruleset.load import load_rules
from remediator.ruleset.read import field_path
from remediator.ruleset.rules import RuleSet
from remediator.simulate import bodies
from remediator.simulate.decisions import FIELDS, Decision, by_alert
from remediator.simulate.engine import Engine, Page, settings
from remediator.simulate.testfile import (
    CaseSpec,
    DecisionSpec,
    ExpectSpec,
    InputSpec,
    TestFileSpec,
    load,
    place,
    webhook_file,
)
from remediator.simulate.world import Handles, World


@dataclass(frozen=True, slots=True)
class Prepared:
    path: Path
    spec: TestFileSpec
    ruleset: RuleSet
    kube: KubeHandle
    """The handle the rule set's Kubernetes actions hold: empty but while a case with
    Kubernetes ``world`` facts runs."""
    databases: DatabaseHandle
    """The handle kill_query holds: no target but while a case with ``world`` facts runs."""


@dataclass(slots=True)
class CaseResult:
    name: str
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    decisions: list[Decision] = field(default_factory=list)
    """Every decision of the case, once it has run, in the order first written."""


@dataclass(slots=True)
class FileResult:
    path: Path
    cases: list[CaseResult] = field(default_factory=list)


def shown_s(seconds: float) -> str:
    """Seconds as a test file writes them: ``0s``, ``90s``, ``10m``, ``1h30m``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")


def _rules(path: Path, spec: TestFileSpec, registry: Mapping[str, AnyAction]) -> RuleSet:
    base = path.parent
    try:
        if spec.rules_dir is not None:
            return load_rules(base / spec.rules_dir, registry, lambda _: None)
        assert spec.rule_files is not None
        with tempfile.TemporaryDirectory(prefix="remediator-rules-") as directory:
            for i, name in enumerate(spec.rule_files):
                source = base / name
                if not source.is_file():
                    raise ConfigError(f'{path}: field "rule_files[{i}]" names {name}, which is'
                                      " not a file.")  # fmt: skip
                shutil.copyfile(source, Path(directory) / source.name)
            return load_rules(Path(directory), registry, lambda _: None)
    except RuleFileError as exc:
        raise ConfigError(f"{path}: its rules do not load: {exc}") from None


def _check_sinks(path: Path, spec: TestFileSpec, ruleset: RuleSet) -> None:
    """Every sink a ``world`` input names is one the rules declare."""
    for i, case in enumerate(spec.tests):
        for j, item in enumerate(case.input):
            for name in item.world.sinks if item.world is not None else ():
                if name not in ruleset.sinks:
                    loc = ("tests", i, "input", j, "world", "sinks", name)
                    known = ", ".join(sorted(ruleset.sinks)) or "none"
                    raise ConfigError(
                        f'{place(path, loc)}: field "{field_path(loc)}" names a sink the'
                        f" rules do not declare (declared: {known})."
                    )


def prepare(path: Path) -> Prepared:
    """The test file at ``path`` and its rules, loaded; ``ConfigError`` when either fails."""
    spec, kube, databases = load(path), KubeHandle(), DatabaseHandle()
    ruleset = _rules(path, spec, default_registry(kube, databases))
    _check_sinks(path, spec, ruleset)
    return Prepared(path, spec, ruleset, kube, databases)


@dataclass(slots=True)
class _Run:
    """One case under way: the alerts fed at each time, the failures so far."""

    engine: Engine
    base: Path
    case: CaseSpec
    world: World | None
    fed: dict[float, list[tuple[int, bodies.Fed]]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    async def input(self, n: int, item: InputSpec) -> None:
        at = self.engine.clock.at(item.at)
        if item.world is not None:
            assert self.world is not None, "a case with world facts runs on a world"
            await self.engine.advance_to_just_before(at)
            self.world.apply(item.world, at)
            return
        what = f'case "{self.case.name}": input[{n}]'
        data, alerts = bodies.encode(self._body(item, at), self.engine.settings.payload_limits,
                                     what)  # fmt: skip
        journal_id = await self.engine.feed(data, at)
        self.fed.setdefault(item.at, []).extend((journal_id, a) for a in alerts)

    def _body(self, item: InputSpec, at: Any) -> Mapping[str, Any]:
        if item.alerts is not None:
            alerts = [(a.labels, a.annotations, a.status) for a in item.alerts]
            return bodies.build(alerts, at, item.truncated_alerts)
        if item.file is not None:
            return webhook_file(self.base, item.file)
        assert item.webhook is not None
        return item.webhook

    async def expect(self, item: ExpectSpec) -> None:
        await self.engine.advance(self.engine.clock.at(item.at))
        decided = by_alert(await self.engine.records())
        for spec in item.decisions:
            self.failures.extend(self._decision(item.at, spec, decided))
        if item.notifications is not None:
            self.failures.extend(_pages(item, self.engine))

    def _decision(
        self, at_s: float, spec: DecisionSpec, decided: Mapping[tuple[int, str], Decision]
    ) -> list[str]:
        selected = [
            decided.get((jid, fed.fingerprint))
            or Decision(
                jid, fed.fingerprint, fed.labels.get("alertname", ""), self.engine.clock.now()
            )
            for jid, fed in self.fed.get(at_s, [])
            if spec.alert.items() <= fed.labels.items()
        ]
        where = f"at {shown_s(at_s)}, alert {_labels(spec.alert)}"
        if not selected or (spec.count is not None and len(selected) != spec.count):
            expected = spec.count if spec.count is not None else "at least 1"
            return [f"{where}:\n  expected: {expected} alerts\n  got:      {len(selected)}"]
        return [f for d in selected if (f := _compare(where, spec, d))]


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _compare(where: str, spec: DecisionSpec, got: Decision) -> str:
    wanted = {name: getattr(spec, name) for name in FIELDS if getattr(spec, name) is not None}
    wrong = [name for name, value in wanted.items() if got.value(name) != value]
    params_wrong = spec.params is not None and any(
        got.params.get(k) != v for k, v in spec.params.items()
    )
    if not wrong and not params_wrong:
        return ""
    names = wrong or list(wanted)
    expected = " ".join(f"{n}={wanted[n]}" for n in names)
    seen = " ".join(f"{n}={got.value(n)}" for n in names)
    if params_wrong:
        expected += f" params={spec.params}"
        seen += f" params={dict(got.params)}"
    return (
        f"{where}:\n  expected: {expected}\n  got:      {seen}\n  ({got.sentence or 'no decision'})"
    )


def _page(sink: str, tier: int, event: str, result: str | None, at: str | None) -> str:
    shown = f"{sink} tier {tier} {event}" + (f" {result}" if result is not None else "")
    return shown + (f" at {at}" if at is not None else "")


def _pages(item: ExpectSpec, engine: Engine) -> list[str]:
    """Expected against sent; ``at`` and ``result`` shown where the expectation gives them
    (both for sends beyond those it lists)."""
    assert item.notifications is not None
    timed = [p.at is not None for p in item.notifications]
    resulted = [p.result is not None for p in item.notifications]

    def got(i: int, page: Page) -> str:
        offset = (page.at - engine.clock.start).total_seconds()
        with_at, with_result = (timed[i], resulted[i]) if i < len(timed) else (True, True)
        return _page(page.sink, page.tier, page.event, page.result if with_result else None,
                     shown_s(offset) if with_at else None)  # fmt: skip

    expected = [
        _page(p.sink, p.tier, p.event, p.result, shown_s(p.at) if p.at is not None else None)
        for p in item.notifications
    ]
    seen = [got(i, page) for i, page in enumerate(engine.pages)]
    if expected == seen:
        return []
    return [f"at {shown_s(item.at)}, notifications sent:\n  expected: {_lines(expected)}\n"
            f"  got:      {_lines(seen)}"]  # fmt: skip


def _lines(pages: Sequence[str]) -> str:
    return "\n            ".join(pages) if pages else "none"


async def run_case(
    prepared: Prepared, case: CaseSpec, config: Settings | None = None
) -> CaseResult:
    started = time.monotonic()
    timeline: list[tuple[float, int, int, InputSpec | ExpectSpec]] = [
        *((item.at, 0, n, item) for n, item in enumerate(case.input)),
        *((item.at, 1, n, item) for n, item in enumerate(case.expect)),
    ]
    world = World() if case.has_world else None
    handles = Handles(prepared.kube if case.has_cluster else None, prepared.databases)
    connected = (handles, world) if world is not None else None
    async with Engine(prepared.ruleset, config=config or settings(), world=connected) as engine:
        run = _Run(engine, prepared.path.parent, case, world)
        for _, _, n, item in sorted(timeline, key=lambda t: t[:3]):
            if isinstance(item, InputSpec):
                await run.input(n, item)
            else:
                await run.expect(item)
        decided = list(by_alert(await engine.records()).values())
    return CaseResult(case.name, run.failures, time.monotonic() - started, decided)


async def run_file(prepared: Prepared, selected: Callable[[str], bool]) -> FileResult:
    result = FileResult(prepared.path)
    for case in prepared.spec.tests:
        if selected(case.name):
            result.cases.append(await run_case(prepared, case))
    return result


def matching(pattern: str | None) -> Callable[[str], bool]:
    """``--run REGEX``: the cases whose name it finds (all without one)."""
    if pattern is None:
        return lambda _: True
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--run {pattern!r} is not a regular expression: {exc}.") from None
    return lambda name: compiled.search(name) is not None
