"""Episodes: one firing period of a fingerprint. The state machine as a pure function.

A firing sighting opens an episode, or joins the open one; a resolved sighting closes
it. A firing within ``grace_s`` of the close reopens the same episode (flapping), so a
flapping alert is decided once. The store applies what this decides, in one transaction.
"""

from __future__ import annotations

from remediator.core.model import AlertStatus, Episode, EpisodeEvent


def next_event(
    latest: Episode | None, status: AlertStatus, now_s: float, grace_s: float
) -> EpisodeEvent:
    """What a sighting does, given the fingerprint's latest episode (None: never seen)."""
    if status is AlertStatus.FIRING:
        if latest is None:
            return EpisodeEvent.OPENED
        if latest.closed_at_s is None:
            return EpisodeEvent.JOINED
        if latest.closed_at_s >= now_s - grace_s:
            return EpisodeEvent.REOPENED
        return EpisodeEvent.OPENED
    if latest is None:
        return EpisodeEvent.RESOLVED_UNSEEN
    if latest.closed_at_s is None:
        return EpisodeEvent.CLOSED
    return EpisodeEvent.ALREADY_CLOSED
