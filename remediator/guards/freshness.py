"""Resolved and stale alerts: nothing to fix, or too old to trust."""

from __future__ import annotations

from datetime import datetime

from remediator.core.model import ALLOW, Verdict, refuse
from remediator.core.vocab import AlertStatus, StopReason


def decide(
    status: AlertStatus,
    episode_open: bool,
    received_at: datetime,
    now: datetime,
    stale_after_s: float,
) -> Verdict:
    if status is AlertStatus.RESOLVED or not episode_open:
        return refuse(StopReason.RESOLVED, "The alert has resolved; there is nothing to fix.")
    waited_s = (now - received_at).total_seconds()
    if waited_s > stale_after_s:
        return refuse(
            StopReason.STALE,
            f"The alert waited {waited_s:.0f} s before processing, more than the"
            f" {stale_after_s:.0f} s after which the world may have changed.",
        )
    return ALLOW
