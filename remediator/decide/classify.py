"""Classify: an alert's labels → the first matching rule (its severity, plan and policy)."""

from __future__ import annotations

from collections.abc import Mapping

from remediator.ruleset.index import RuleIndex
from remediator.ruleset.rules import Rule, RuleSet


class Classifier:
    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset
        self._index = RuleIndex(ruleset.rules)

    def classify(self, labels: Mapping[str, str]) -> Rule:
        rule = self._index.first_match(labels)
        # load_rules guarantees a catch-all, so a miss is a bug, not an input problem.
        assert rule is not None, "rule set without a catch-all"
        return rule
