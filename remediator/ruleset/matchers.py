"""Alertmanager matcher syntax: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``,
several to a list item (``'{a="b",c=~"d"}'``, ``'a="b",c="d"'``), parsed as Alertmanager's
``pkg/labels`` parser (``ParseMatchers``, ``ParseMatcher``) parses a route's ``matchers``.

Where it sits: ``load`` compiles each rule's ``matchers`` items here once; ``classify``
(through ``index``) calls ``Matcher.matches`` on every alert's labels, on the event loop.

What Alertmanager's parser does, and so this one: a leading ``{`` and a trailing ``}`` are
dropped; commas outside double quotes separate matchers, and a trailing one is dropped; the
name is ``[a-zA-Z_:][a-zA-Z0-9_:]*``; whitespace around each part is dropped; a value may be
unquoted (spaces and all); inside a value ``\\"``, ``\\n`` and ``\\\\`` are escapes and any
other backslash is itself. A missing label reads as the empty string. A regex is RE2 (the
syntax of Go's ``regexp``) compiled as ``^(?:re)$``, so the whole value must match; RE2
matches in time linear in the label value, so no label value (labels are untrusted) can make
classification backtrack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from remediator.core.regex import Regex

#: Go's ``\s`` (ASCII), which Alertmanager's matcher regex strips around each part.
_SPACE = "\t\n\f\r "
#: Go's ``unicode.IsSpace``, which ``strings.TrimSpace`` strips from the last matcher only.
_UNICODE_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501
# Runs on rule-file text, never on label values; the name is a prefix match, no backtracking.
_NAME_AND_OP = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)")
_UNESCAPED = {"n": "\n", '"': '"', "\\": "\\"}


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
            found = self.pattern.search(actual)  # anchored: ^(?:re)$
            return found if self.type is MatchType.REGEX else not found
        equal = actual == self.value
        return equal if self.type is MatchType.EQUAL else not equal

    def __str__(self) -> str:
        return f"{self.name}{self.type.value}{json.dumps(self.value, ensure_ascii=False)}"


def _split(text: str) -> list[str]:
    """``ParseMatchers``' split: at commas outside double quotes (``\\"`` is not a quote)."""
    text = text.removeprefix("{").removesuffix("}")
    if "," not in text:  # one matcher, the common case: nothing to split
        last = text.strip(_UNICODE_SPACE)
        return [last] if last else []
    parts: list[str] = []
    current: list[str] = []
    inside = escaped = False
    for char in text:
        if char == "," and not inside:
            parts.append("".join(current))
            current = []
            continue
        if char == '"':
            inside = inside if escaped else not inside
            escaped = False
        elif char == "\\":
            escaped = not escaped
        elif char != ",":
            escaped = False
        current.append(char)
    last = "".join(current).strip(_UNICODE_SPACE)
    return [*parts, last] if last else parts


def _unquote(raw: str) -> str:
    """``ParseMatcher``'s value: an optional pair of quotes, and its three escapes."""
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    if "\\" not in body and '"' not in body[:-1] and body.endswith('"') == quoted:
        return body[:-1] if quoted else body  # nothing to unescape: the common case
    value: list[str] = []
    escaped = False
    for i, char in enumerate(body):
        if escaped:
            escaped = False
            value.append(_UNESCAPED.get(char, "\\" + char))
        elif char == "\\":
            escaped = i < len(body) - 1
            if not escaped:
                value.append(char)  # a last backslash is itself
        elif char == '"':
            if not quoted or i < len(body) - 1:
                raise ValueError(
                    "its value holds a double quote that is neither its closing quote nor"
                    ' escaped (write \\")'
                )
            quoted = False
        else:
            value.append(char)
    if quoted:
        raise ValueError("its quoted value has no closing double quote")
    return "".join(value)


def _valid_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, from a "\ud800" escape in the YAML
        return False
    return True


def parse_matcher(text: str) -> Matcher:
    """``'severity=~"warning|critical"'`` → ``Matcher``; ``ValueError`` with a reason otherwise."""
    stripped = text.lstrip(_SPACE)
    found = _NAME_AND_OP.match(stripped)
    if found is None:
        raise ValueError(
            'it is not of the form name="value", name!="value", name=~"re" or name!~"re"'
        )
    name, op = found.groups()
    raw = stripped[found.end() :].strip(_SPACE)
    if not _valid_text(raw):
        raise ValueError("its value is not valid UTF-8")
    kind, value = _TYPES[op], _unquote(raw)
    if kind in (MatchType.REGEX, MatchType.NOT_REGEX):
        return Matcher(name, kind, value, Regex(value, anchored=True))
    return Matcher(name, kind, value)


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """One item of a rule's ``matchers``: ``'{a="b", c=~"d"}'`` → its matchers (none for
    ``""`` or ``"{}"``); ``ValueError`` with a reason naming the matcher otherwise."""
    matchers = []
    parts = _split(text)
    for part in parts:
        try:
            matchers.append(parse_matcher(part))
        except ValueError as exc:
            if len(parts) == 1:
                raise
            shown = json.dumps(part.strip(_SPACE), ensure_ascii=False)
            raise ValueError(f"its matcher {shown} is not valid: {exc}") from None
    return tuple(matchers)
