"""Dedup keys: the incident identity a sink sees, one place for how they are spelt.

``escalate.plan`` names each notification's incident with one of these; the store's resolve
statement tells episode incidents (resolved when their episode closes) from the incidents
that span episodes (a storm, a fix that does not help: a human resolves those) by prefix.
"""

from __future__ import annotations

from datetime import datetime

PREFIX = "remediator-"
STORM_PREFIX = f"{PREFIX}storm-"
INEFFECTIVE_PREFIX = f"{PREFIX}ineffective-"
UNPROCESSABLE_PREFIX = f"{PREFIX}unprocessable-journal-"

#: Incidents no episode's resolve may close.
SPANNING_PREFIXES = (STORM_PREFIX, INEFFECTIVE_PREFIX)


def storm(policy: str, at: datetime) -> str:
    """One incident per storm, policy and hour: a fleet-wide alert pages once."""
    return f"{STORM_PREFIX}{policy}-{at:%Y%m%d%H}"


def ineffective(target: str, action: str) -> str:
    return f"{INEFFECTIVE_PREFIX}{target}-{action}"


def unprocessable(journal_id: int | None) -> str:
    """A journal entry that could not be read has no episode."""
    return f"{UNPROCESSABLE_PREFIX}{journal_id}"


def episode(fingerprint: str, episode_id: int) -> str:
    return f"{PREFIX}{fingerprint}-{episode_id}"
