"""Storm brake: many distinct targets at once, or a truncated payload, means escalate-only.

When a whole fleet alerts together the cause is rarely in the fleet, and acting on every
member multiplies risk; a human decides. The distinct targets of the window are counted
in the store (``Store.storm_add``), so replicas brake together.
"""

from __future__ import annotations

from remediator.model import ALLOW, StopReason, Verdict, refuse


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
