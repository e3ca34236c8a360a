"""Classify: an alert's labels → the first matching rule (its severity, plan and policy).
The index lives with the rule set (``RuleSet.classify``), so a reload swaps both at once."""

from __future__ import annotations

from collections.abc import Mapping

from remediator.ruleset.rules import Rule, RuleSet


class Classifier:
    def __init__(self, ruleset: RuleSet) -> None:
        self.ruleset = ruleset

    def classify(self, labels: Mapping[str, str]) -> Rule:
        return self.ruleset.classify(labels)
