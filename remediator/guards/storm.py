"""Storm brake: many distinct targets at once, or a truncated payload, means escalate-only.

When a whole fleet alerts together the cause is rarely in the fleet, and acting on every
member multiplies risk; a human decides. The distinct targets of the window are counted
by the store (``Store.storm_add``): in this process's ``TargetWindow`` for the one-replica
SQLite store, in a shared table for PostgreSQL, so replicas brake together.
"""

from __future__ import annotations

from collections import OrderedDict

from remediator.core.model import ALLOW, Verdict, refuse
from remediator.core.vocab import StopReason


def decide(distinct_targets: int, max_targets: int, truncated_alerts: int) -> Verdict:
    if truncated_alerts > 0:
        return refuse(
            StopReason.STORM,
            f"Alertmanager truncated {truncated_alerts} alerts from this notification; a storm"
            " is under way, so remediator escalates instead of acting.",
        )
    if distinct_targets > max_targets:
        return refuse(
            StopReason.STORM,
            f"{distinct_targets} distinct targets needed action within the window, more than"
            f" the {max_targets} allowed; escalating instead of acting.",
        )
    return ALLOW


class TargetWindow:
    """Distinct target keys seen in the last ``window_s`` seconds (of whichever clock the
    caller keeps to)."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._last_seen: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str, now_s: float) -> int:
        """Record ``key`` at ``now_s``; return how many distinct keys the window holds."""
        self._last_seen.pop(key, None)
        self._last_seen[key] = now_s
        self._forget_before(now_s - self._window_s)
        return len(self._last_seen)

    def peek(self, key: str, now_s: float) -> int:
        """What ``add`` would return, recording nothing (only what fell out of the window
        is let go, as the next ``add`` would)."""
        self._forget_before(now_s - self._window_s)
        return len(self._last_seen) + (key not in self._last_seen)

    def _forget_before(self, horizon: float) -> None:
        while self._last_seen and next(iter(self._last_seen.values())) < horizon:
            self._last_seen.popitem(last=False)
