"""A rule file's ``time_intervals``, in Alertmanager's own syntax, as strict models that
read each entry into ``guards.windows`` values.

Where it sits: ``schema`` declares the section with ``TimeIntervalSpec``; ``load`` merges the
names across files and gives each rule the intervals its ``mute_time_intervals`` and
``active_time_intervals`` name (``TimeIntervalSpec.compiled``).

The block an Alertmanager configuration holds under ``time_intervals`` is taken as it is::

    time_intervals:
      - name: change-freeze
        time_intervals:
          - weekdays: ['saturday', 'sunday']
            location: Europe/Berlin
          - times: [{start_time: '22:00', end_time: '24:00'}]

Each value is read as Alertmanager reads it (``timeinterval``'s parsers: names in any case,
numbers as Go's ``strconv.Atoi`` takes them, ``HH:MM`` from ``00:00`` to ``24:00``, ranges
as ``a:b`` with ``a`` not after ``b``), and what Alertmanager 0.25 refuses is refused. A
few things it takes are refused here too, because each is a window that never holds or
holds by accident, and a maintenance window that never holds lets the robot act in the
change it was meant to stay out of: a month outside 1 to 12, a year outside 1 to 9999, an
empty list (Alertmanager reads ``weekdays: []`` as "no day"), a named interval with no
items, and ``location: Local`` (the machine's zone, which a container does not fix).
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remediator.guards.windows import Item, Range, TimeInterval

MAX_ENTRIES = 100
"""Entries in one field's list, and items in one named interval: a week has 7 days, a
day's minutes fit in a handful of ranges; past 100 a list is generated, not written."""
INTERVAL_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""A name is any text a route may name, but no control character (a message would break)."""
MAX_ZONE_CHARS = 128
"""Characters in a ``location`` (the longest tz database name has 32)."""

_TIME = re.compile(r"(([01][0-9]|2[0-3]):[0-5][0-9])|24:00")
"""Alertmanager's ``validTime``, matched against the whole value."""
_ATOI = re.compile(r"[+-]?[0-9]{1,18}")
"""What Go's ``strconv.Atoi`` takes (ASCII digits, an optional sign), up to 18 digits."""
_WEEKDAYS = {
    name: number
    for number, name in enumerate(
        ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
    )
}
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("january", "february", "march", "april", "may", "june", "july", "august",
         "september", "october", "november", "december"),
        start=1,
    )
}  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _members(text: str) -> list[str]:
    """``a:b`` → ``[a, b]``, ``a`` → ``[a, a]``, lowercased as Alertmanager does."""
    parts = text.lower().split(":") if ":" in text else [text.lower()] * 2
    if len(parts) != 2:
        raise ValueError(f"{text!r} is not a range: write one value or two joined by ':'")
    return parts


def _integer(text: str, what: str) -> int:
    if not _ATOI.fullmatch(text):
        raise ValueError(f"{text!r} is not a valid {what}")
    return int(text)


def _weekday(text: str) -> int:
    if text not in _WEEKDAYS:
        raise ValueError(f"{text!r} is not a valid weekday (sunday to saturday)")
    return _WEEKDAYS[text]


def _month(text: str) -> int:
    if text in _MONTHS:
        return _MONTHS[text]
    number = _integer(text, "month")
    if not 1 <= number <= 12:
        raise ValueError(f"{text!r} is not a month: months are 1 to 12 or january to december")
    return number


def _weekday_range(text: str) -> Range:
    begin, end = (_weekday(member) for member in _members(text))
    if begin > end:
        raise ValueError(
            f"{text!r} runs backwards: weeks start on sunday, so no range crosses from"
            " saturday to sunday (write the days as two entries, e.g. ['saturday', 'sunday'])"
        )
    return begin, end


def _day_of_month_range(text: str) -> Range:
    begin, end = (_integer(member, "day of the month") for member in _members(text))
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(f"{day} is not a day of the month: 1 to 31, or -1 to -31")
    if begin < 0 < end:
        raise ValueError(f"{text!r}: the end day must be negative when the start day is")
    # As Alertmanager checks it: negative days counted back from a 28-day month.
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(f"{text!r}: the end day is always before the start day")
    return begin, end


def _month_range(text: str) -> Range:
    begin, end = (_month(member) for member in _members(text))
    if begin > end:
        raise ValueError(f"{text!r}: the end month is before the start month")
    return begin, end


def _year_range(text: str) -> Range:
    begin, end = (_integer(member, "year") for member in _members(text))
    for year in (begin, end):
        if not 1 <= year <= 9999:
            raise ValueError(f"{year} is not a year remediator can reach: 1 to 9999")
    if begin > end:
        raise ValueError(f"{text!r}: the end year is before the start year")
    return begin, end


def _minutes(text: str) -> int:
    if not _TIME.fullmatch(text):
        raise ValueError(f"{text!r} is not a time of day: write HH:MM, from 00:00 to 24:00")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _listed(value: Any) -> Any:
    if isinstance(value, list) and not value:
        raise ValueError(
            "is an empty list, which Alertmanager reads as matching no time at all;"
            " leave the key out to mean any"
        )
    return value


def _texts(value: Any) -> Any:
    value = _listed(value)
    if isinstance(value, list) and not all(isinstance(v, str) for v in value):
        raise ValueError("must be a list of strings such as 'monday:friday' or '1:7'")
    return value


class TimeRangeSpec(_Strict):
    start_time: str
    end_time: str

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(
                f"is the number {value}: quote a time of day ('17:00'), as YAML 1.1 reads"
                " some unquoted ones as base-60 numbers"
            )
        return value

    @field_validator("start_time", "end_time")
    @classmethod
    def _time(cls, value: str) -> str:
        _minutes(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> TimeRangeSpec:
        start, end = self.minutes()
        if start >= end:
            raise ValueError(
                f"starts at {self.start_time}, not before its end_time {self.end_time}"
            )
        return self

    def minutes(self) -> Range:
        return _minutes(self.start_time), _minutes(self.end_time)


class ItemSpec(_Strict):
    """One entry of a named interval: every field given must hold (none given: always)."""

    times: list[TimeRangeSpec] | None = Field(default=None, max_length=MAX_ENTRIES)
    weekdays: list[str] | None = Field(default=None, max_length=MAX_ENTRIES)
    days_of_month: list[str] | None = Field(default=None, max_length=MAX_ENTRIES)
    months: list[str] | None = Field(default=None, max_length=MAX_ENTRIES)
    years: list[str] | None = Field(default=None, max_length=MAX_ENTRIES)
    location: str | None = Field(default=None, max_length=MAX_ZONE_CHARS)
    """A tz database name (``Europe/Berlin``); UTC without one, or when empty."""

    @field_validator("times", mode="before")
    @classmethod
    def _some_times(cls, value: Any) -> Any:
        return _listed(value)

    @field_validator("weekdays", "days_of_month", "months", "years", mode="before")
    @classmethod
    def _some_texts(cls, value: Any) -> Any:
        return _texts(value)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str] | None) -> list[str] | None:
        return _checked(value, _weekday_range)

    @field_validator("days_of_month")
    @classmethod
    def _days(cls, value: list[str] | None) -> list[str] | None:
        return _checked(value, _day_of_month_range)

    @field_validator("months")
    @classmethod
    def _months(cls, value: list[str] | None) -> list[str] | None:
        return _checked(value, _month_range)

    @field_validator("years")
    @classmethod
    def _years(cls, value: list[str] | None) -> list[str] | None:
        return _checked(value, _year_range)

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value:
            _zone(value)
        return value

    def compiled(self) -> Item:
        zone_name = self.location or "UTC"
        return Item(
            times=None if self.times is None else tuple(t.minutes() for t in self.times),
            weekdays=_ranges(self.weekdays, _weekday_range),
            days_of_month=_ranges(self.days_of_month, _day_of_month_range),
            months=_ranges(self.months, _month_range),
            years=_ranges(self.years, _year_range),
            location=_zone(zone_name),
            location_name=zone_name,
        )


def _checked(value: list[str] | None, read: Any) -> list[str] | None:
    for text in value or []:
        read(text)
    return value


def _ranges(value: list[str] | None, read: Any) -> tuple[Range, ...] | None:
    return None if value is None else tuple(read(text) for text in value)


def _zone(name: str) -> zoneinfo.ZoneInfo:
    if name == "Local":
        raise ValueError(
            "is 'Local', the machine's own zone, which a container does not fix: name the"
            " zone (Europe/Berlin) or leave location out for UTC"
        )
    try:
        return zoneinfo.ZoneInfo(name)
    except (ValueError, OSError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(
            f"{name!r} is not a zone of the tz database (names such as Europe/Berlin, UTC)"
        ) from None


class TimeIntervalSpec(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=INTERVAL_NAME_PATTERN)
    time_intervals: list[ItemSpec] = Field(min_length=1, max_length=MAX_ENTRIES)
    """Its items: an instant is in the interval when any one of them holds it."""

    def compiled(self) -> TimeInterval:
        return TimeInterval(self.name, tuple(item.compiled() for item in self.time_intervals))
