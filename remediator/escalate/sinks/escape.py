"""What an alert's own words may become in a sink's message: text, never markup, mentions
or control characters. Every sink passes the values it interpolates through here before it
builds a body (``truncate`` then bounds the result).

* ``plain``: any value as text a person can read. A lone UTF-16 surrogate (which JSON can
  spell and UTF-8 cannot hold) becomes U+FFFD; C0 and C1 control characters, DEL and the
  bidirectional embedding, override and isolate controls (U+202A..U+202E, U+2066..U+2069,
  which can reorder the rest of the line) become U+FFFD too, so a page shows that something
  was there. Newlines (and U+2028/U+2029, CR LF) survive as ``\\n`` only where the field
  holds several lines; elsewhere they are spaces. A tab is a space.
* ``slack``: ``plain``, then Slack's three control characters ``&``, ``<``, ``>`` as
  ``&amp;``, ``&lt;``, ``&gt;`` (the only entities Slack decodes), so no ``<!channel>``,
  ``<!here>``, ``<!subteam^…>``, ``<@U…>``, ``<#C…>`` or ``<url|text>`` can come from a
  value; and a WORD JOINER (U+2060) after the ``@`` of ``@channel``, ``@here`` and
  ``@everyone``, which Slack turns into mentions when ``link_names`` is set. Slack has no
  escape for ``@`` (``&#64;`` would show as typed), so an invisible character is the only
  way to keep the word readable; the word joiner is the one Unicode meant for that, where a
  zero-width joiner means "join these glyphs" and is part of emoji sequences.
* ``slack_link``: a ``<url|text>`` link whose URL cannot close the link early.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

#: What a removed character reads as: the Unicode replacement character.
REPLACEMENT = "\ufffd"

#: Placed after the ``@`` of a broadcast word so that it is no longer that word.
WORD_JOINER = "\u2060"

_NEWLINES = re.compile("\r\n|[\n\r\u2028\u2029\x85]")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_BROADCAST = re.compile(r"@(channel|here|everyone)\b", re.IGNORECASE)
_SLACK_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def text(value: str) -> str:
    """``value`` as text UTF-8 can hold: lone surrogates as U+FFFD, all else as it was."""
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def plain(value: object, *, lines: bool = False) -> str:
    """``value`` as text with no control character; newlines kept only when ``lines``."""
    flat = _NEWLINES.sub("\n" if lines else " ", text(str(value))).replace("\t", " ")
    return _CONTROLS.sub(REPLACEMENT, flat)


def slack(value: object, *, lines: bool = False) -> str:
    """``value`` as Slack mrkdwn that shows it as typed and can ping, link or mention no one."""
    escaped = plain(value, lines=lines).translate(_SLACK_ENTITIES)
    return _BROADCAST.sub(lambda m: f"@{WORD_JOINER}{m.group(1)}", escaped)


def slack_link(url: str, label: object) -> str:
    """A Slack link to ``url`` showing ``label``: ``<``, ``>``, ``|``, spaces and controls in
    the URL are percent-encoded, so the link ends where this function ends it."""
    href = quote(plain(url), safe="!#$%&'()*+,-./:;=?@[]^_`{}~")
    return f"<{href.replace('&', '&amp;')}|{slack(label)}>"


def plain_tree(value: Mapping[str, Any], *, lines: bool = True) -> dict[str, Any]:
    """Every string (keys too) in a JSON-like ``value`` through ``plain``."""
    return dict(_tree(value, lambda leaf: plain(leaf, lines=lines)))


def text_tree(value: Mapping[str, Any]) -> dict[str, Any]:
    """Every string in a JSON-like ``value`` as text UTF-8 can hold (lone surrogates as
    U+FFFD) and nothing else changed: for a sink whose receiver reads the JSON as data."""
    return dict(_tree(value, text))


def _tree(value: object, leaf: Callable[[str], str]) -> Any:
    """``value`` with ``leaf`` applied to every string in it; numbers JSON cannot spell
    (NaN, infinities) and other objects as their ``str``."""
    if isinstance(value, Mapping):
        return {leaf(str(k)): _tree(v, leaf) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_tree(v, leaf) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return leaf(str(value))


#: CommonMark's punctuation that can start or end markup in a Teams card's text: emphasis,
#: code, strikethrough, links and images, headings, quotes, tables, entities and HTML.
_MARKDOWN_SPECIALS = re.compile(r"([\\`*_~\[\]()#>|<!&])")
_LIST_MARKER = re.compile(r"^(\s*\d*)([-+=.)])", re.MULTILINE)
_MARKDOWN_LINK = re.compile(r"\](?=[(\[:])")


def markdown(value: object, *, lines: bool = False) -> str:
    """``value`` as Markdown (a Teams Adaptive Card's ``TextBlock``, CommonMark) that shows
    it as typed: every character that could open emphasis, code, a link, an image, a
    heading, a quote, an entity or HTML is backslash-escaped, and so is what could make a
    line a list item, a rule or a heading underline (any escaped ASCII punctuation shows
    as itself, so escaping more than needed costs nothing)."""
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", plain(value, lines=lines))
    return _LIST_MARKER.sub(r"\1\\\2", escaped)


def oncall(value: object, *, lines: bool = False) -> str:
    """``value`` for a receiver that renders one text as Slack mrkdwn, Markdown and HTML
    (Grafana IRM shows a message in Slack, its web UI and Telegram): ``slack`` (whose
    entities all three decode), and a WORD JOINER after any ``]`` before ``(``, ``[`` or
    ``:``, so no Markdown link or image can form, where a backslash would show in Slack."""
    return _MARKDOWN_LINK.sub(f"]{WORD_JOINER}", slack(value, lines=lines))
