"""Plan: a rule that names no action, or whose target the alert's labels cannot name, stops
the decision before any other guard (``received → classify → fresh? → plan? → target``).

Pure sentences shared by the pipeline and ``remediator explain``, so what explain says a
decision would be is word for word what serve records.
"""

from __future__ import annotations

from remediator.core.model import Verdict, refuse
from remediator.core.vocab import StopReason


def escalate_only(rule: str) -> Verdict:
    return refuse(StopReason.ESCALATE_ONLY, f"Rule {rule!r} calls for a human, not an action.")


def unresolved(action_kind: str, problem: LookupError) -> Verdict:
    """``problem`` is what ``TargetTemplate.render`` raised (it names the label)."""
    return refuse(StopReason.TARGET_UNRESOLVED, f"No target for {action_kind}: {problem}.")
