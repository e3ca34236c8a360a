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


STORM_QUIET_S = 3600.0
"""A storm incident goes on while its alerts keep coming less than this far apart (the
store renames a new storm's pages to the incident still going on): a fleet-wide alert
pages once, however long, and a storm that crosses an hour opens no second incident."""

GROUP_PREFIX = f"{PREFIX}group-"


def storm(policy: str, at: datetime) -> str:
    """The incident a storm that begins at ``at`` opens, unless one is going on."""
    return f"{storm_prefix(policy)}{at:%Y%m%dT%H%M%SZ}"


def storm_prefix(policy_or_key: str) -> str:
    """What every storm incident of a policy starts with (from the policy or a key)."""
    if policy_or_key.startswith(STORM_PREFIX):
        return policy_or_key[: policy_or_key.rindex("-") + 1]
    return f"{STORM_PREFIX}{policy_or_key}-"


def group(journal_id: int | None, rule: str, reason: str) -> str:
    """The alerts of one notification that escalate by one rule for one reason: one page."""
    return f"{GROUP_PREFIX}{journal_id}-{rule}-{reason}"


def ineffective(target: str, action: str) -> str:
    return f"{INEFFECTIVE_PREFIX}{target}-{action}"


def unprocessable(journal_id: int | None) -> str:
    """A journal entry that could not be read has no episode."""
    return f"{UNPROCESSABLE_PREFIX}{journal_id}"


def episode(fingerprint: str, episode_id: int) -> str:
    return f"{PREFIX}{fingerprint}-{episode_id}"
