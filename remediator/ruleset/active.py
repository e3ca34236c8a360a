"""The active rule set: the one holder every stage reads its rules from, swapped whole.

Where it sits: ``init_app`` puts the set ``load`` built here; a reload (``runtime/reload``)
swaps in a new set only once it is fully loaded and checked. A decision reads ``current``
once and decides under that snapshot to the end, so none sees two sets. The sets swapped
out are kept (the last ``KEPT``) by hash: a notification planned for a decision made under
an older set uses that set's escalation policy, so a reload that renames a policy cannot
lose the page of a decision made before it.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from remediator.ruleset.rules import RuleSet
from remediator.ruleset.schema import EscalationPolicySpec

KEPT = 16
"""Rule sets kept by hash after they were swapped out."""


class ActiveRules:
    def __init__(self, ruleset: RuleSet, loaded_at: datetime) -> None:
        self._current = ruleset
        self.loaded_at = loaded_at
        self._by_hash: OrderedDict[str, RuleSet] = OrderedDict({ruleset.hash: ruleset})

    @property
    def current(self) -> RuleSet:
        return self._current

    def swap(self, ruleset: RuleSet, loaded_at: datetime) -> None:
        """Make ``ruleset`` the one decisions are made under, from the next read on."""
        self._current = ruleset
        self.loaded_at = loaded_at
        self._by_hash[ruleset.hash] = ruleset
        self._by_hash.move_to_end(ruleset.hash)
        while len(self._by_hash) > KEPT:
            self._by_hash.popitem(last=False)

    def by_hash(self, hash_: str) -> RuleSet:
        """The set with ``hash_`` if still kept, else the current one."""
        return self._by_hash.get(hash_, self._current)

    def escalation(self, name: str, hash_: str) -> EscalationPolicySpec | None:
        """Escalation policy ``name`` as the set with ``hash_`` had it; as the current set has
        it when that set is gone or never had it; None when no kept set has it."""
        for ruleset in (self.by_hash(hash_), self._current, *reversed(self._by_hash.values())):
            policy = ruleset.escalations.get(name)
            if policy is not None:
                return policy
        return None
