"""Alertmanager matcher syntax: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

Where it sits: ``load`` compiles each rule's ``match`` list here once; ``classify`` (through
``index``) calls ``Matcher.matches`` on every alert's labels, on the event loop.

A missing label reads as the empty string, as in Alertmanager. Regexes are RE2, the engine
whose syntax Alertmanager's Go ``regexp`` implements, and they are anchored: the whole value
must match, as with Alertmanager's ``^(?:re)$``. RE2 matches in time linear in the label
value, so no label value (labels are untrusted) can make classification backtrack. What
Python's ``re`` has and RE2 has not (backreferences, lookarounds, atomic groups, possessive
quantifiers, ``\\Z``) is refused when the rules load, with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from remediator.core.regex import Regex

# Both run on rule-file text, never on label values, and neither backtracks more than
# linearly (the matcher's text is stripped first).
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*)", re.DOTALL)
_BARE_VALUE = re.compile(r'^[^"\s{}]*$')


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


_TYPES = {kind.value: kind for kind in MatchType}  # faster than MatchType(op), per rule


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    type: MatchType
    value: str
    pattern: Regex | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.pattern is not None:
            found = self.pattern.fullmatch(actual)
            return found if self.type is MatchType.REGEX else not found
        equal = actual == self.value
        return equal if self.type is MatchType.EQUAL else not equal

    def __str__(self) -> str:
        return f"{self.name}{self.type.value}{json.dumps(self.value)}"


def _unquote(raw: str) -> str:
    if raw.startswith('"'):
        inner = raw[1:-1]
        plain = len(raw) > 1 and raw.endswith('"') and inner.isprintable()
        if plain and '"' not in inner and "\\" not in inner:
            return inner  # nothing to unescape: what json.loads would give, faster
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
    found = _MATCHER.fullmatch(text.strip())
    if found is None:
        raise ValueError(
            'it is not of the form name="value", name!="value", name=~"re" or name!~"re"'
        )
    name, op, raw = found.groups()
    kind = _TYPES[op]
    value = _unquote(raw)
    if kind in (MatchType.REGEX, MatchType.NOT_REGEX):
        return Matcher(name, kind, value, Regex(value))
    return Matcher(name, kind, value)
