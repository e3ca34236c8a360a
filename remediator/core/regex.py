"""RE2 regular expressions for what SREs write and attackers feed: linear time, always.

Where it sits: rule matchers (``ruleset.matchers``) and ``kill_query``'s ``query_pattern``
compile through ``Regex`` when the rules load, and match label values and query texts,
which are untrusted, on the event loop. RE2 is the engine whose syntax Alertmanager's Go
``regexp`` implements; it never backtracks. What Python's ``re`` has and RE2 has not
(backreferences, lookarounds, atomic groups, possessive quantifiers, ``\\Z``) is refused
with the reason, and so is what C++ RE2 has and Go's ``regexp`` (as Alertmanager 0.25 is
built) has not: ``\\C`` and ``(?<name>...)``. A matcher's regex is ``anchored``: compiled as
Alertmanager compiles it, ``^(?:text)$``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import re2

T = TypeVar("T")
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would also print each error to stderr
# RE2's default budget per regex (program and DFA cache), written out: a pattern that needs
# more does not compile, and a match that fills the cache goes on, still linear, without it.
_OPTIONS.max_mem = 8 << 20

#: What Python's ``re`` has and RE2 has not: (RE2's error, or text of the regex) → our words.
_PYTHON_ONLY = (
    (re.compile(r"^invalid escape sequence: \\[1-9]"), "a backreference such as \\1"),
    (re.compile(r"\(\?P="), "a named backreference (?P=name)"),
    (re.compile(r"^invalid perl operator: \(\?<?[=!]"), "a lookahead or lookbehind"),
    (re.compile(r"^invalid perl operator: \(\?>"), "an atomic group (?>...)"),
    (re.compile(r"^invalid perl operator: \(\?\("), "a conditional (?(1)...)"),
    (re.compile(r"^bad repetition operator: [*+?]\+"), "a possessive quantifier such as a++"),
    (re.compile(r"^invalid escape sequence: \\Z"), "\\Z (write $ or \\z)"),
)


def _rejected(exc: Exception, text: str) -> str:
    """RE2's error (bytes in its argument) as the end of our sentence."""
    raw = exc.args[0] if exc.args else ""
    reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    for pattern, feature in _PYTHON_ONLY:
        if pattern.search(reason) or pattern.search(text):
            return f"it uses {feature}, which RE2 (Alertmanager's regex syntax) does not have"
    problem, _, fragment = reason.partition(": ")
    at = f" at {json.dumps(fragment, ensure_ascii=False)}" if fragment else ""
    return f"its regular expression does not compile as RE2 ({problem}{at})"


def _not_in_go(text: str) -> str | None:
    """What C++ RE2 accepts and Go's ``regexp`` refuses: ``\\C`` (one byte, even inside a
    UTF-8 character), and ``(?<name>`` (Go 1.22 and later only; Alertmanager 0.25 is Go 1.19)."""
    escaped = False
    for i, char in enumerate(text):
        if escaped and char == "C":
            return "it uses \\C (any byte), which Alertmanager's regex syntax does not have"
        if not escaped and text.startswith("(?<", i) and text[i + 3 : i + 4] not in ("=", "!"):
            return (
                "it names a group (?<name>...), which Alertmanager's regex syntax writes"
                " (?P<name>...)"
            )
        escaped = not escaped and char == "\\"
    return None


def _encoded(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a JSON "\ud800" escape) reads as U+FFFD, as in Go.
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode()


def _reason(text: str, exc: Exception) -> str:
    """Why ``text`` does not compile: in its own words when it does not compile bare either
    (``missing ) at "x("``, not at ``"^(?:x()$"``)."""
    try:
        re2.compile(text, _OPTIONS)
    except re2.error as bare:
        return _rejected(bare, text)
    return _rejected(exc, text)


class Regex:
    """An RE2 regex, compiled once; ``ValueError`` with the reason when it does not.
    ``anchored``: compiled as ``^(?:text)$``, as Alertmanager compiles a matcher's regex."""

    __slots__ = ("_compiled", "anchored", "text")

    def __init__(self, text: str, *, anchored: bool = False) -> None:
        refused = _not_in_go(text)
        if refused is not None:
            raise ValueError(refused)
        try:
            self._compiled: Any = re2.compile(f"^(?:{text})$" if anchored else text, _OPTIONS)
        except re2.error as exc:
            raise ValueError(_reason(text, exc)) from None
        self.text = text
        self.anchored = anchored

    def fullmatch(self, value: str) -> bool:
        # Anchored at both ends: "$" is the end of the value, never before a trailing
        # newline, and a regex such as "a)|(b" is refused rather than wrapped.
        return self._compiled.fullmatch(_encoded(value)) is not None

    def search(self, value: str) -> bool:
        """Found anywhere in ``value`` (for an ``anchored`` regex: the whole value matches)."""
        return self._compiled.search(_encoded(value)) is not None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Regex) and other.text == self.text and other.anchored == self.anchored
        )

    def __hash__(self) -> int:
        return hash((self.text, self.anchored))

    def __repr__(self) -> str:
        return f"Regex({self.text!r}, anchored=True)" if self.anchored else f"Regex({self.text!r})"


#: A set's budget: RE2 gives a set no NFA to fall back on, so it gets room to keep its DFA.
SET_MAX_MEM = 256 << 20


class RegexSet(Generic[T]):
    """Several ``Regex``, each filed with an item, matched in one pass: ``matching(value)``
    → the items of those that ``search`` would find in ``value``, in filing order.
    ``ValueError`` when RE2 cannot build the set within ``SET_MAX_MEM`` (the caller then
    tests the regexes one by one).

    Why a negative answer can be trusted: RE2 builds a set only after its DFA has searched a
    text within the budget (``Compiler::CompileSet``), and a set's DFA (``kManyMatch``) never
    gives up for being slow, it resets its cache and goes on (``DFA::InlinedSearchLoop``),
    so a match cannot be missed for a hostile value. The ``re2`` binding would not say if
    one were: each position it reports is still only a candidate, which the caller tests
    with the regex itself.
    """

    __slots__ = ("_items", "_set")

    def __init__(self, filed: Sequence[tuple[Regex, T]]) -> None:
        options = re2.Options()
        options.log_errors = False
        options.max_mem = SET_MAX_MEM
        self._set: Any = re2.Set.SearchSet(options)
        for regex, _ in filed:
            self._set.Add(f"^(?:{regex.text})$" if regex.anchored else regex.text)
        try:
            self._set.Compile()
        except re2.error as exc:
            raise ValueError(f"the {len(filed)} regexes do not fit one RE2 set") from exc
        self._items = [item for _, item in filed]

    def matching(self, value: str) -> list[T]:
        return [self._items[i] for i in sorted(self._set.Match(_encoded(value)) or ())]
