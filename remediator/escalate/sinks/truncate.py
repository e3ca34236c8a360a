"""Each sink's size limits: text cut to fit with a visible marker, a tree of details shrunk
until its body fits, an identifier too long for a sink replaced by a stable shorter one.
The sinks call these last, on text that ``escape`` already made safe.

Lengths are UTF-16 code units (``units``): never fewer than code points, so a limit holds
whether the sink counts code points (Python, Go runes) or UTF-16 units (Java, JavaScript
``length``). A cut never splits a character, a combining sequence (a base and its marks,
variation selectors, emoji modifiers, tag characters, Hangul jamo), an emoji joined by
ZERO WIDTH JOINER or a regional-indicator flag: it moves back to the cluster's start.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

#: What ends a cut text: visible to whoever reads the page, so no one trusts it as whole.
MARKER = "… [truncated]"

_ZWJ = "\u200d"
_EXTEND_RANGES = (
    (0x1160, 0x11FF),  # Hangul vowel and final jamo
    (0xD7B0, 0xD7FF),  # Hangul jamo extended-B
    (0xFE00, 0xFE0F),  # variation selectors
    (0x1F3FB, 0x1F3FF),  # emoji skin-tone modifiers
    (0xE0020, 0xE007F),  # tag characters (subdivision flags)
    (0xE0100, 0xE01EF),  # variation selectors supplement
)
_MARKS = ("Mn", "Mc", "Me")

Path = tuple[Any, ...]


def units(text: str) -> int:
    """``text``'s length in UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def fit(text: str, limit: int, *, partial: re.Pattern[str] | None = None) -> str:
    """``text`` if it fits in ``limit`` units; else its longest whole-cluster head that fits
    with ``MARKER`` after it. ``partial`` matches a token cut short at the end of the head
    (a Slack entity, say), which is dropped too."""
    if units(text) <= limit:
        return text
    cut = _boundary(text, _index(text, max(limit - units(MARKER), 0)))
    head = text[:cut]
    if partial is not None:
        head = partial.sub("", head)
    return head + MARKER


def _index(text: str, budget: int) -> int:
    """The largest ``i`` with ``units(text[:i]) <= budget``."""
    used = 0
    for i, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > budget:
            return i
    return len(text)


def _boundary(text: str, i: int) -> int:
    """``i``, moved back until no grapheme cluster spans it."""
    while 0 < i < len(text) and (_extends(text[i]) or text[i - 1] == _ZWJ or _inside_flag(text, i)):
        i -= 1
    return i


def _extends(ch: str) -> bool:
    """True when ``ch`` belongs to the cluster before it."""
    code = ord(ch)
    if ch == _ZWJ or unicodedata.category(ch) in _MARKS:
        return True
    return any(low <= code <= high for low, high in _EXTEND_RANGES)


def _regional(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _inside_flag(text: str, i: int) -> bool:
    """True when ``i`` falls between the two regional indicators of one flag."""
    if not (_regional(text[i]) and _regional(text[i - 1])):
        return False
    run = 0
    while i - run - 1 >= 0 and _regional(text[i - run - 1]):
        run += 1
    return run % 2 == 1


def bounded_key(key: str, limit: int) -> str:
    """``key`` when it fits ``limit`` units; else a head of it and the SHA-256 of the whole,
    so two long keys stay two incidents and the same key is always spelt the same."""
    if units(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return key[: _index(key, limit - len(digest) - 1)] + "-" + digest


def fit_tree(tree: dict[str, Any], size: Callable[[dict[str, Any]], int], limit: int) -> bool:
    """Shrink the longest strings in ``tree`` (in place) until ``size(tree) <= limit``, each
    cut with ``MARKER`` (down to the marker alone when that is what it takes). False when
    it cannot: no string left longer than the marker."""
    while (excess := size(tree) - limit) > 0:
        path, longest = max(_strings(tree), key=lambda leaf: units(leaf[1]), default=((), ""))
        if not path or units(longest) <= units(MARKER):
            return False
        target = units(longest) - excess - len(MARKER.encode())
        _put(tree, path, fit(longest, max(target, units(MARKER))))
    return True


def _strings(node: Any, path: Path = ()) -> Iterator[tuple[Path, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, (*path, index))
    elif isinstance(node, str):
        yield path, node


def _put(tree: Any, path: Path, value: str) -> None:
    for step in path[:-1]:
        tree = tree[step]
    tree[path[-1]] = value
