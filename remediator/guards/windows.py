"""Maintenance windows: Alertmanager's time intervals, and whether now is inside one.

Where it sits: ``ruleset/time_intervals`` reads a rule file's ``time_intervals`` (in
Alertmanager's own syntax) into the ``TimeInterval`` values here; ``load`` hands each rule
those its ``mute_time_intervals`` and ``active_time_intervals`` name (the policy's mute
intervals first); the pipeline asks ``decide`` between scope and the silences, and the
runner again just before an action's precheck.

The semantics are Alertmanager's (``timeinterval.ContainsTime``): an instant is in a named
interval when one of its items holds it, and an item holds it when each field given holds
it, read on the wall clock of the item's ``location`` (UTC without one): ``times`` as
minutes of the day, start included and end excluded; ``weekdays`` with Sunday as day 0 (so
no range crosses Saturday to Sunday); negative ``days_of_month`` counted back from the
month's last day, clamped to the month; ``months`` and ``years`` as inclusive ranges. The
length of a month is its calendar length, as in Alertmanager since it stopped counting a
spring-forward month's 743 hours as 30 days.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from remediator.core.model import ALLOW, Verdict, refuse
from remediator.core.vocab import StopReason

Range = tuple[int, int]
"""An inclusive range of integers (weekdays, days of the month, months, years)."""


@dataclass(frozen=True, slots=True)
class Item:
    """One entry of a named interval's list: the fields given (None: any), as ranges."""

    times: tuple[Range, ...] | None = None
    """Minutes of the day, the end excluded: ``09:00`` to ``17:00`` is ``(540, 1020)``."""
    weekdays: tuple[Range, ...] | None = None
    """0 is Sunday."""
    days_of_month: tuple[Range, ...] | None = None
    """1 to 31, or -1 (the last day) to -31."""
    months: tuple[Range, ...] | None = None
    years: tuple[Range, ...] | None = None
    location: tzinfo = UTC
    location_name: str = "UTC"

    def contains(self, instant: datetime) -> bool:
        local = instant.astimezone(self.location)
        if self.times is not None:
            minute = local.hour * 60 + local.minute
            if not any(start <= minute < end for start, end in self.times):
                return False
        if self.days_of_month is not None and not self._day_of_month(local):
            return False
        if self.months is not None and not _within(local.month, self.months):
            return False
        if self.weekdays is not None and not _within(local.isoweekday() % 7, self.weekdays):
            return False
        return self.years is None or _within(local.year, self.years)

    def _day_of_month(self, local: datetime) -> bool:
        assert self.days_of_month is not None
        days = calendar.monthrange(local.year, local.month)[1]
        for begin, end in self.days_of_month:
            first = days + begin + 1 if begin < 0 else begin
            last = days + end + 1 if end < 0 else end
            if first > days:  # "31" in a month of 30 days: not in this month at all
                continue
            first, last = _clamp(first, -days, days), _clamp(last, -days, days)
            if first <= local.day <= last:
                return True
        return False


def _within(value: int, ranges: Sequence[Range]) -> bool:
    return any(begin <= value <= end for begin, end in ranges)


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """A named time interval (``time_intervals[].name``) and its items."""

    name: str
    items: tuple[Item, ...]

    def contains(self, instant: datetime) -> bool:
        return any(item.contains(instant) for item in self.items)


def decide(mute: Sequence[TimeInterval], active: Sequence[TimeInterval], now: datetime) -> Verdict:
    """Refused inside any of ``mute`` (the policy's and the rule's mute intervals), or,
    when the rule names ``active`` intervals, outside all of them."""
    for interval in mute:
        if interval.contains(now):
            return refuse(
                StopReason.MUTED,
                f"Mute time interval {interval.name!r} holds {_when(now, interval)}; no action"
                " is taken in it, so a human is paged as usual.",
            )
    if active and not any(interval.contains(now) for interval in active):
        names = ", ".join(repr(interval.name) for interval in active)
        return refuse(
            StopReason.OUTSIDE_ACTIVE_TIME,
            f"The rule acts only inside its active time intervals ({names}), and"
            f" {_when(now, active[0])} is outside them; a human is paged instead.",
        )
    return ALLOW


def _when(now: datetime, interval: TimeInterval) -> str:
    """``now`` on the wall clock the interval is read on (its first item's location)."""
    item = interval.items[0]
    local = now.astimezone(item.location)
    return f"{local:%A %Y-%m-%d %H:%M} {item.location_name}"
