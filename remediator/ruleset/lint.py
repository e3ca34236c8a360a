"""Lints: what a rule set that loads may still get wrong, each one sentence placed at a line
and column of its file, and each waived by a comment ``# remediator: allow <lint>`` on its
rule's (or entry's) line or the line above it, or on the line it names or the line above.

Where it sits: ``check`` loads the rules (``load``), reads where each key of each file
starts (``strict_yaml.positions``, into a ``Source``), then calls ``lint`` here. Nothing
here reads the clock or the network; only ``missing-secret-file`` looks at the disk.

What each lint proves, and no more (a lint that is unsure says nothing):

- ``unreachable-rule``: an earlier rule takes every alert the rule matches, because each of
  the earlier rule's matchers is implied by one of the rule's own: the same matcher, an
  equality (or a regex of plain alternatives, ``"a|b"``) whose values the earlier matcher
  accepts, or ``=~".+"`` for ``=~".*"`` and ``!=""``.
- ``unguaranteed-label``: a target template takes a label that no matcher of the rule
  requires to be non-empty (only ``alertname`` is always there); the alert without it is
  refused as unresolved.
- ``target-outside-namespaces``: the target's namespace is literal (or fixed by the rule's
  matchers) and outside ``policy.namespaces``, so the action is always refused.
- ``unbounded-action``: an action that changes something with no cooldown and no rate
  limit. (Each kind's own bound, ``max_replicas``, ``min_healthy``, ``max_per_run``, is
  required by its parameters model, so a rule without it does not load.)
- ``escalation-order``: a tier due no later than the tier before it.
- ``missing-secret-file`` (a warning): a sink's secret file that is not there; ``serve``
  does not start without it, but CI seldom has the secrets.
- ``old-key`` (a warning, from ``load``): rules still under ``match``.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path as FilePath
from typing import Any

from remediator.core.regex import Regex, RegexSet
from remediator.ruleset.matchers import Matcher, MatchType
from remediator.ruleset.read import quoted
from remediator.ruleset.rules import Rule, RuleSet
from remediator.ruleset.strict_yaml import Path, Position, positions


class Level(StrEnum):
    ERROR = "error"
    WARNING = "warning"


LINTS: Mapping[str, Level] = {
    "unreachable-rule": Level.ERROR,
    "unguaranteed-label": Level.ERROR,
    "target-outside-namespaces": Level.ERROR,
    "unbounded-action": Level.ERROR,
    "escalation-order": Level.ERROR,
    "missing-secret-file": Level.WARNING,
    "old-key": Level.WARNING,
}
ALWAYS_PRESENT = frozenset({"alertname"})
"""Labels every alert has: Alertmanager keys alerts by ``alertname``; nothing else is sure."""
HARMLESS_KINDS = frozenset({"log_only"})
"""Action kinds that change nothing, so need no bound."""
MAX_RENDERINGS = 64
"""Namespaces a template's matcher-fixed labels are expanded to, at most, before giving up."""

_WAIVER = re.compile(r"#.*?\bremediator:\s*allow\s+([a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*)")
_WORDS = r"[A-Za-z0-9_:/ -]+(?:\|[A-Za-z0-9_:/ -]+)*"
"""Plain alternatives, ``a|b c``: characters RE2 takes as themselves outside a class."""
_ALTERNATIVES = re.compile(rf"\((?:\?:)?({_WORDS})\)|({_WORDS})")
_PROVEN = frozenset({
    (MatchType.REGEX, ".+", MatchType.REGEX, ".*"),
    (MatchType.REGEX, ".+", MatchType.NOT_EQUAL, ""),
    (MatchType.REGEX, ".+", MatchType.NOT_REGEX, ""),
    (MatchType.NOT_EQUAL, "", MatchType.NOT_REGEX, ""),
    (MatchType.NOT_REGEX, "", MatchType.NOT_EQUAL, ""),
})  # fmt: skip
"""(type, value) of a later matcher that implies an earlier one on the same label, beyond
equal matchers and finite values: ``.`` matches no newline in either regex."""


@dataclass(frozen=True, slots=True)
class Source:
    """One rule file as ``check`` reads it again: where its keys are, and its waivers."""

    name: str
    positions: Mapping[Path, Position]
    waivers: Mapping[int, frozenset[str]]

    @classmethod
    def read(cls, name: str, data: bytes) -> Source:
        lines = data.decode("utf-8", errors="replace").splitlines()
        waivers = {
            number: frozenset(re.split(r"\s*,\s*", found[1]))
            for number, line in enumerate(lines, start=1)
            if (found := _WAIVER.search(line))
        }
        return cls(name, positions(data), waivers)

    def at(self, path: Path) -> Position | None:
        """Where ``path`` starts, or its nearest enclosing key or item that the file has."""
        for end in range(len(path), 0, -1):
            if (found := self.positions.get(path[:end])) is not None:
                return found
        return None

    def waives(self, lint: str, lines: Iterable[int]) -> bool:
        return any(lint in self.waivers.get(line, ()) for line in lines)


@dataclass(frozen=True, slots=True, order=True)
class Finding:
    file: str
    line: int
    column: int
    lint: str
    sentence: str
    """One sentence, ending with a full stop; it names the rule (or entry) and field."""

    @property
    def level(self) -> Level:
        return LINTS[self.lint]


@dataclass
class _Places:
    """Findings placed in their files, and the waivers applied."""

    sources: Mapping[str, Source]
    rules: dict[str, Path] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @classmethod
    def of(cls, ruleset: RuleSet, sources: Mapping[str, Source]) -> _Places:
        places = cls(sources)
        counters: dict[str, Iterator[int]] = {}  # each file's rules are numbered from 0
        for rule in ruleset.rules:
            index = next(counters.setdefault(rule.file, itertools.count()))
            places.rules[rule.name] = ("rules", index)
        return places

    def add(self, lint: str, file: str, subject: Path, fields: Path, sentence: str) -> None:
        source = self.sources.get(file)
        if source is None:
            return
        line, column = source.at((*subject, *fields)) or (1, 1)
        top = source.at(subject) or (line, column)
        if not source.waives(lint, {line, line - 1, top[0], top[0] - 1}):
            self.findings.append(Finding(file, line, column, lint, sentence))

    def rule(self, lint: str, rule: Rule, fields: Path, sentence: str) -> None:
        self.add(lint, rule.file, self.rules[rule.name], fields, sentence)

    def entry(self, lint: str, subject: Path, fields: Path, sentence: str) -> None:
        """A finding about a named entry (an escalation policy, a sink): in its file."""
        for name, source in self.sources.items():
            if subject in source.positions:
                self.add(lint, name, subject, fields, sentence)
                return


def lint(
    ruleset: RuleSet,
    sources: Mapping[str, Source],
    load_warnings: Sequence[str] = (),
    present: frozenset[str] = ALWAYS_PRESENT,
) -> list[Finding]:
    """Every finding, in file order, then line and column; ``load_warnings`` are the
    sentences ``load_rules`` gave its ``warn``; ``present``: labels every alert carries."""
    places = _Places.of(ruleset, sources)
    _unreachable(ruleset.rules, places)
    for rule in ruleset.rules:
        _labels(rule, present, places)
        _namespace(rule, ruleset.policy.namespaces, places)
        _unbounded(rule, places)
    _escalation_order(ruleset, places)
    _secret_files(ruleset, places)
    _old_keys(load_warnings, places)
    order = {name: number for number, name in enumerate(sources)}
    return sorted(places.findings, key=lambda f: (order.get(f.file, 0), f.line, f.column, f.lint))


# -- unreachable-rule --------------------------------------------------------------------


def _values(matcher: Matcher) -> frozenset[str] | None:
    """Every value the label may have under ``matcher``, when they are few; else None."""
    if matcher.type is MatchType.EQUAL:
        return frozenset({matcher.value})
    if matcher.type is MatchType.REGEX and (found := _ALTERNATIVES.fullmatch(matcher.value)):
        return frozenset((found[1] or found[2]).split("|"))
    return None


def _implies(later: Matcher, earlier: Matcher) -> bool:
    """Whether every value ``later`` accepts, ``earlier`` (on the same label) accepts."""
    if (later.type, later.value) == (earlier.type, earlier.value):
        return True
    values = _values(later)
    if values is not None:
        return all(earlier.matches({earlier.name: value}) for value in values)
    return (later.type, later.value, earlier.type, earlier.value) in _PROVEN


def _covers(earlier: Rule, later: Rule) -> bool:
    """Whether ``earlier`` matches every alert ``later`` matches."""
    return all(
        any(n.name == m.name and _implies(n, m) for n in later.matchers) for m in earlier.matchers
    )


def _key(rule: Rule) -> tuple[str, str] | None:
    """An equality the rule requires: a rule that covers another has the other's too."""
    return next(((m.name, m.value) for m in rule.matchers if m.type is MatchType.EQUAL), None)


def _fixed(rule: Rule) -> Iterator[tuple[str, str]]:
    """The (label, value) pairs the rule's matchers fix to one value."""
    for matcher in rule.matchers:
        values = _values(matcher)
        if values is not None and len(values) == 1:
            yield matcher.name, next(iter(values))


class _Unkeyed:
    """The rules with no equality, as candidates to cover a later rule. One with a regex
    covers a later rule only if a matcher of the later one on that label implies the regex:
    the same matcher, a proven pair, or values the regex matches (found by one RE2 set per
    label, not by testing every such rule). The others (negative matchers only, the
    catch-all) are few and always candidates."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._plain: list[Rule] = []
        self._same: dict[tuple[str, MatchType, str], list[Rule]] = defaultdict(list)
        filed: dict[str, list[tuple[Regex, Rule]]] = defaultdict(list)
        for rule in rules:
            if _key(rule) is not None:
                continue
            regex = next((m for m in rule.matchers if m.type is MatchType.REGEX), None)
            if regex is None or regex.pattern is None:
                self._plain.append(rule)
                continue
            self._same[regex.name, regex.type, regex.value].append(rule)
            filed[regex.name].append((regex.pattern, rule))
        self._sets: dict[str, RegexSet[Rule]] = {}
        for label, group in filed.items():
            try:
                self._sets[label] = RegexSet(group)
            except ValueError:  # too big for one RE2 set: always candidates, as the plain
                self._plain = sorted([*self._plain, *(r for _, r in group)], key=_position)

    def candidates(self, later: Rule) -> Iterator[Rule]:
        """Rules before ``later`` that may cover it (``_covers`` decides)."""
        yield from (r for r in self._plain if r.position < later.position)
        for n in later.matchers:
            sides = [(n.type, n.value)] + [
                (e, v) for (t, w, e, v) in _PROVEN if (t, w) == (n.type, n.value)
            ]
            for kind, value in sides:
                yield from (
                    r
                    for r in self._same.get((n.name, kind, value), ())
                    if r.position < later.position
                )
            values = _values(n)
            group = self._sets.get(n.name)
            if values and group is not None:
                matched = group.matching(next(iter(values)))
                yield from (r for r in matched if r.position < later.position)


def _position(rule: Rule) -> int:
    return rule.position


def _unreachable(rules: Sequence[Rule], places: _Places) -> None:
    """Each rule against the earlier rules that could cover it, found by their key (an
    equality), or among those without one (``_Unkeyed``). A shadow rule takes no alert from
    a live one (``RuleSet.classify``), so it covers only the shadow rules after it."""
    keyed: dict[tuple[str, str], list[Rule]] = {}
    unkeyed = _Unkeyed(rules)
    for rule in rules:
        candidates = [
            *unkeyed.candidates(rule),
            *(r for pair in _fixed(rule) for r in keyed.get(pair, ())),
        ]
        earlier = min(
            (r for r in candidates if (rule.shadow or not r.shadow) and _covers(r, rule)),
            key=lambda r: r.position,
            default=None,
        )
        if earlier is not None:
            line, _ = places.sources[earlier.file].at(places.rules[earlier.name]) or (0, 0)
            places.rule(
                "unreachable-rule", rule, (),
                f"rule {quoted(rule.name)} can never match: rule {quoted(earlier.name)}"
                f" ({earlier.file}:{line}) comes first and takes every alert it matches;"
                " put the narrower rule first.",
            )  # fmt: skip
        key = _key(rule)
        if key is not None:
            keyed.setdefault(key, []).append(rule)


# -- target labels and namespaces --------------------------------------------------------


def _guaranteed(rule: Rule, label: str, present: frozenset[str]) -> bool:
    """A matcher that a missing (or empty) label fails makes the label sure to be there."""
    return label in present or any(m.name == label and not m.matches({}) for m in rule.matchers)


def _labels(rule: Rule, present: frozenset[str], places: _Places) -> None:
    if rule.plan is None:
        return
    target = rule.plan.target
    for part, template in (("namespace", target.namespace), ("name", target.name)):
        for label in dict.fromkeys(template.labels):
            if not _guaranteed(rule, label, present):
                places.rule(
                    "unguaranteed-label", rule, ("target", part),
                    f'rule {quoted(rule.name)}: field "target.{part}" takes the label'
                    f" {quoted(label)}, which none of the rule's matchers requires, so an"
                    " alert without it leaves the target unresolved; match it"
                    f' ({label}=~".+") or correct the name.',
                )  # fmt: skip


def _renderings(rule: Rule, text: str, labels: Sequence[str]) -> list[str] | None:
    """What a template can give under the rule's matchers, when they fix its labels."""
    choices: list[list[tuple[str, str]]] = []
    for label in dict.fromkeys(labels):
        values = [v for m in rule.matchers if m.name == label and (v := _values(m)) is not None]
        if not values:
            return None
        choices.append([(label, value) for value in sorted(frozenset.intersection(*values))])
    rendered: list[str] = []
    for combination in itertools.islice(itertools.product(*choices), MAX_RENDERINGS + 1):
        out = text
        for label, value in combination:
            out = out.replace(f"{{{label}}}", value)
        rendered.append(out)
    return rendered if len(rendered) <= MAX_RENDERINGS else None


def _namespace(rule: Rule, allowed: Sequence[str], places: _Places) -> None:
    if rule.plan is None or not rule.plan.target.namespace.text:
        return
    template = rule.plan.target.namespace
    rendered = _renderings(rule, template.text, template.labels)
    outside = [n for n in rendered or () if n not in allowed]
    if not outside:
        return
    names = ", ".join(allowed) or "none"
    gives = "" if not template.labels else f", which the rule's matchers make {quoted(outside[0])}"
    places.rule(
        "target-outside-namespaces", rule, ("target", "namespace"),
        f'rule {quoted(rule.name)}: field "target.namespace" is {quoted(template.text)}{gives};'
        f" that is not in policy.namespaces ({names}), so the action is always refused.",
    )  # fmt: skip


# -- bounds, escalations, secrets --------------------------------------------------------


def _unbounded(rule: Rule, places: _Places) -> None:
    if rule.plan is None or rule.plan.kind in HARMLESS_KINDS:
        return
    if rule.cooldown_s > 0 or rule.rate_limit is not None or rule.target_rate_limit is not None:
        return
    places.rule(
        "unbounded-action", rule, ("cooldown_s",),
        f"rule {quoted(rule.name)} runs {rule.plan.kind} with no cooldown and no rate limit:"
        " give it a cooldown_s above 0, a rate_limit or a target_rate_limit.",
    )  # fmt: skip


def _seconds(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


def _escalation_order(ruleset: RuleSet, places: _Places) -> None:
    for name, policy in ruleset.escalations.items():
        for index, (before, tier) in enumerate(itertools.pairwise(policy.tiers), start=1):
            if tier.after_s <= before.after_s:
                places.entry(
                    "escalation-order", ("escalations", name), ("tiers", index, "after_s"),
                    f'escalation policy {quoted(name)}: field "tiers[{index}].after_s" is'
                    f" {_seconds(tier.after_s)}, but tiers[{index - 1}] is due at"
                    f" {_seconds(before.after_s)}; list the tiers in the order they page,"
                    " each due later than the one before.",
                )  # fmt: skip


def _secret_files(ruleset: RuleSet, places: _Places) -> None:
    for name, spec in ruleset.sinks.items():
        for key in type(spec).model_fields:
            value: Any = getattr(spec, key)
            if key.endswith("_file") and isinstance(value, str) and not FilePath(value).exists():
                places.entry(
                    "missing-secret-file", ("sinks", name), (key,),
                    f'sink {quoted(name)}: field "{key}" names {quoted(value)}, which does not'
                    " exist here; serve does not start without it.",
                )  # fmt: skip


def _old_keys(warnings: Sequence[str], places: _Places) -> None:
    """``load``'s warnings, one per file, placed at that file's first rule under ``match``."""
    for warning in warnings:
        for name, source in places.sources.items():
            if warning.startswith(f"{name}: "):
                first = min(
                    (p for p in source.positions if len(p) == 3 and p[2] == "match"),
                    key=lambda p: source.positions[p], default=("rules",),
                )  # fmt: skip
                places.add("old-key", name, first[:2], first[2:], warning.removeprefix(f"{name}: "))
