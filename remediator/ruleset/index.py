"""Classification index: an alert is tested only against the rules that can match it, so
10 000 rules cost about what 10 do.

Where it sits: ``RuleSet`` builds one when the rules load; ``classify`` asks it, for each
alert, which rules to test, in rule order, and tests them in turn (first match wins).

Each rule is filed under exactly one of its matchers, so no rule is ever left out:

- an equality (``alertname="X"``): a dict lookup of the alert's value. The rule's most
  selective one (fewest rules share it), ``alertname`` first among equals;
- else, or when that equality is one many rules share (``severity="critical"``), a regex
  (``alertname=~"Kube.*"``): all regexes on one label are matched at once by one RE2 set,
  which names the rules whose regex the alert's value matches;
- else (only negative matchers, or none: the catch-all) the rule is tested for every alert.

A candidate is then tested with all its matchers, so the index may name too many rules,
never too few. The candidate lists are merged by rule position, so "first match wins"
holds.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from remediator.core.regex import Regex, RegexSet
from remediator.ruleset.matchers import Matcher, MatchType

if TYPE_CHECKING:  # rules.py builds the index of its RuleSet
    from remediator.ruleset.rules import Rule

PREFERRED_LABEL = "alertname"
#: An equality shared by more rules than this is a poor key when the rule has a regex.
SHARED_KEY = 16


def _equalities(rule: Rule) -> list[Matcher]:
    return [m for m in rule.matchers if m.type is MatchType.EQUAL and m.value]


def _regexes(rule: Rule) -> list[Matcher]:
    found = [m for m in rule.matchers if m.type is MatchType.REGEX and m.pattern is not None]
    return sorted(found, key=lambda m: m.name != PREFERRED_LABEL)


def _key(rule: Rule, shared: Counter[tuple[str, str]]) -> Matcher | None:
    """The matcher ``rule`` is filed under (see the module); None: tested for every alert."""
    equals = sorted(
        _equalities(rule), key=lambda m: (shared[m.name, m.value], m.name != PREFERRED_LABEL)
    )
    regexes = _regexes(rule)
    if equals and (not regexes or shared[equals[0].name, equals[0].value] <= SHARED_KEY):
        return equals[0]
    return regexes[0] if regexes else None


class RuleIndex:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self._rules = rules
        shared = Counter((m.name, m.value) for rule in rules for m in _equalities(rule))
        by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
        by_regex: dict[str, list[tuple[Regex, int]]] = defaultdict(list)
        self._unindexed: list[int] = []
        for position, rule in enumerate(rules):
            key = _key(rule, shared)
            if key is None:
                self._unindexed.append(position)
            elif key.pattern is not None:
                by_regex[key.name].append((key.pattern, position))
            else:
                by_key[key.name, key.value].append(position)
        self._by_key = dict(by_key)
        self._labels = sorted({label for label, _ in by_key})
        #: Per label, the positions of the rules filed under a regex on it, by one RE2 set.
        self._regexes: list[tuple[str, RegexSet[int]]] = []
        for label, filed in sorted(by_regex.items()):
            self._file_regexes(label, filed)

    def _file_regexes(self, label: str, filed: list[tuple[Regex, int]]) -> None:
        try:
            self._regexes.append((label, RegexSet(filed)))
        except ValueError:  # too big for one RE2 set: tested one by one, as unfiled rules
            self._unindexed = sorted(self._unindexed + [position for _, position in filed])

    def candidates(self, labels: Mapping[str, str]) -> list[int]:
        """Positions of the rules ``first_match`` tests for ``labels``, in rule order (it
        stops at the first that matches)."""
        lists = [self._unindexed] if self._unindexed else []
        for label in self._labels:
            value = labels.get(label)
            if value is not None:
                found = self._by_key.get((label, value))
                if found:
                    lists.append(found)
        for label, regexes in self._regexes:
            found = regexes.matching(labels.get(label, ""))
            if found:
                lists.append(found)
        if len(lists) == 1:
            return lists[0]
        return sorted(itertools.chain.from_iterable(lists))

    def first_match(self, labels: Mapping[str, str]) -> Rule | None:
        for position in self.candidates(labels):
            rule = self._rules[position]
            if rule.matches(labels):
                return rule
        return None
