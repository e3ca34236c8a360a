"""Alertmanager matcher syntax: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

A missing label reads as the empty string, as in Alertmanager. Regexes are anchored (the
whole value must match, as with Alertmanager's ``^(?:re)$``) and compiled once, when the
rules load. They are Python regexes; RE2's common syntax means the same here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)
_BARE_VALUE = re.compile(r'^[^"\s{}]*$')


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    pattern: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.pattern is not None:
            # fullmatch, not "^(?:re)$" with match(): "$" would also accept a trailing
            # newline, and wrapping changes the meaning of a regex such as "a)|(b".
            found = self.pattern.fullmatch(actual) is not None
            return found if self.type is MatchType.REGEX else not found
        equal = actual == self.value
        return equal if self.type is MatchType.EQUAL else not equal

    def __str__(self) -> str:
        return f"{self.name}{self.type.value}{json.dumps(self.value)}"


def _unquote(raw: str) -> str:
    if raw.startswith('"'):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(
                'its quoted value is not a valid double-quoted string (an inner " or \\'
                " needs a backslash)"
            ) from None
        if not isinstance(value, str):
            raise ValueError("its value is not a single double-quoted string")
        return value
    if not _BARE_VALUE.match(raw):
        raise ValueError("an unquoted value may not contain spaces, quotes or braces; quote it")
    return raw


def parse_matcher(text: str) -> Matcher:
    """``'severity=~"warning|critical"'`` → ``Matcher``; ``ValueError`` with a reason otherwise."""
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(
            'it is not of the form name="value", name!="value", name=~"re" or name!~"re"'
        )
    name, op, raw = found.groups()
    kind = MatchType(op)
    value = _unquote(raw)
    if kind in (MatchType.REGEX, MatchType.NOT_REGEX):
        try:
            return Matcher(name, kind, value, re.compile(value))
        except re.error as exc:
            raise ValueError(f"its regular expression does not compile ({exc})") from None
    return Matcher(name, kind, value)
