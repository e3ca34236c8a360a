"""Rule-file YAML → plain values, in time and memory linear in the file's size.

Where it sits: ``read`` checks a file's size and encoding, then calls ``parse`` here, then
validates the result against ``schema``. ``parse`` builds dicts, lists, strings, numbers,
booleans and None from libyaml's parse events (PyYAML's C parser; PyYAML's own parser when
libyaml is missing), with an explicit stack instead of recursion, and refuses what rule
files do not need and what makes YAML costly or surprising:

- anchors and aliases (``&a``, ``*a``): a billion-laughs file stops at its first anchor,
  before anything is expanded, and a self-referencing alias never becomes a cycle;
- merge keys (``<<``) and explicit tags (``!!python/object``, ``!custom``);
- nesting deeper than ``MAX_DEPTH``;
- a number written with more than ``MAX_NUMBER_CHARS`` characters (``int()`` refuses 5 000
  digits, and a long sexagesimal literal such as ``1:0:0:…`` costs quadratic time);
- more than one document, a list or mapping used as a key, a key twice in one mapping.

Plain scalars resolve as in PyYAML's ``SafeLoader`` (YAML 1.1: ``yes`` is true, ``010`` is
8, ``1:30`` is 90, ``.inf`` is infinity), except timestamps, which stay text: no rule-file
field is a date.

Errors are ``YamlError``, whose ``problem`` is the end of a sentence about the file
(``uses the anchor "&a" on line 3; …``) and whose ``mark`` is where (line, column); ``read``
puts the file name in front.

``positions`` is the other reading, for ``check``: where each key and list item of a file
starts, by its path (``("rules", 3, "target", "name")`` → ``(41, 7)``), 1-based. It walks the
events again rather than slowing ``parse``, which ``serve`` runs on every rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _EventSource
except ImportError:  # PyYAML built without libyaml: the same events, slower
    from yaml import SafeLoader as _EventSource  # type: ignore[assignment]

MAX_DEPTH = 64
"""Nested lists and mappings, at most. The rule format needs 6 (file → rules → rule →
action → params → a list in the params); 64 leaves room for any params. (libyaml itself
stops flow nesting at 1 000, before any event for it arrives.)"""
MAX_NUMBER_CHARS = 40
"""Characters in one number. Every bound in the schema has 7 digits or fewer."""

_NO_ANCHORS = "rule files may not use anchors, aliases or merge keys"
_STR_TAGS = frozenset({"!", "tag:yaml.org,2002:str"})
_COLLECTION_TAGS = frozenset({"!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_WORDS: dict[str, Any] = {
    **dict.fromkeys(("", "~", "null", "Null", "NULL")),
    **dict.fromkeys(("yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
    **dict.fromkeys(("no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False),
}
"""YAML 1.1's null and boolean words, as PyYAML's resolver has them."""
_NUMBER_START = frozenset("+-.0123456789")


def _implicit(tag: str) -> re.Pattern[str]:
    """PyYAML's own regex for an implicit tag, so numbers resolve exactly as it does."""
    for resolvers in yaml.resolver.Resolver.yaml_implicit_resolvers.values():
        for found, regexp in resolvers:
            if found == tag:
                pattern: re.Pattern[str] = regexp
                return pattern
    raise LookupError(tag)


_INT = _implicit("tag:yaml.org,2002:int")
_FLOAT = _implicit("tag:yaml.org,2002:float")
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_SCALAR, _ALIAS = yaml.ScalarEvent, yaml.AliasEvent
_MAPPING_START, _MAPPING_END = yaml.MappingStartEvent, yaml.MappingEndEvent
_SEQUENCE_START, _SEQUENCE_END = yaml.SequenceStartEvent, yaml.SequenceEndEvent
_DOCUMENT_START, _STREAM_END = yaml.DocumentStartEvent, yaml.StreamEndEvent


Path = tuple[int | str, ...]
"""Keys and indices from the document down to a value: ``("rules", 3, "target", "name")``."""
Position = tuple[int, int]
"""A line and a column, both 1-based."""


class YamlError(Exception):
    """The file is not YAML a rule file may hold; ``problem`` ends the sentence, ``mark`` is
    where the problem starts (None when libyaml did not say)."""

    def __init__(self, problem: str, mark: Position | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.mark = mark


class DuplicateKey(YamlError):
    """``key`` twice in the mapping at ``path``; ``root`` is the document up to there."""

    def __init__(
        self, path: Path, key: Any, lines: tuple[int, int], root: Any, mark: Position | None
    ) -> None:
        first, second = lines
        where = f"on line {first}" if first == second else f"on lines {first} and {second}"
        super().__init__(f'has the key "{key}" twice in one mapping, {where}', mark)
        self.path, self.key, self.where, self.root = path, key, where, root


def _line(event: yaml.Event) -> int:
    mark = event.start_mark
    return int(mark.line) + 1 if mark is not None else 0


def _mark(event: yaml.Event) -> Position | None:
    mark = event.start_mark
    return (int(mark.line) + 1, int(mark.column) + 1) if mark is not None else None


def _at(event: yaml.Event) -> str:
    mark = event.start_mark
    return f"line {_line(event)}, column {int(mark.column) + 1 if mark is not None else 0}"


def _tag_error(event: yaml.NodeEvent) -> YamlError:
    tag = str(getattr(event, "tag", "")).replace("tag:yaml.org,2002:", "!!")
    return YamlError(
        f'uses the tag "{tag}" on line {_line(event)}; rule files take no tags', _mark(event)
    )


def _number(text: str, tag: str, event: yaml.Event) -> Any:
    if len(text) > MAX_NUMBER_CHARS:
        raise YamlError(
            f"holds a number of {len(text)} characters on line {_line(event)}; a number in a"
            f" rule file has at most {MAX_NUMBER_CHARS}",
            _mark(event),
        )
    node = yaml.ScalarNode(tag, text)
    try:
        if tag.endswith(":int"):
            return _CONSTRUCTOR.construct_yaml_int(node)
        return _CONSTRUCTOR.construct_yaml_float(node)
    except ValueError:  # "0x_": PyYAML's regex takes it, int() does not
        raise YamlError(
            f"holds {text} on line {_line(event)}, which is not a number", _mark(event)
        ) from None


def _numeric(text: str, event: yaml.ScalarEvent) -> Any:
    """A plain scalar that starts like a number: the number, or the text."""
    decimal = text.isdigit() and text.isascii() and (text[0] != "0" or text == "0")
    if decimal and len(text) <= MAX_NUMBER_CHARS:
        return int(text)  # the common case: decimal digits, not octal (010 is 8)
    if _INT.match(text):
        return _number(text, "tag:yaml.org,2002:int", event)
    if _FLOAT.match(text):
        return _number(text, "tag:yaml.org,2002:float", event)
    return text


def _anchor_error(event: yaml.NodeEvent) -> YamlError:
    problem = f'uses the anchor "&{event.anchor}" on line {_line(event)}; {_NO_ANCHORS}'
    return YamlError(problem, _mark(event))


def _tagged(event: yaml.ScalarEvent) -> str:
    """A scalar with an anchor or a tag: refused, unless the tag only says "text"."""
    if event.anchor is not None:
        raise _anchor_error(event)
    if event.tag not in _STR_TAGS:
        raise _tag_error(event)
    return str(event.value)


def _check_collection(event: yaml.CollectionStartEvent, depth: int) -> None:
    if event.anchor is not None:
        raise _anchor_error(event)
    if event.tag is not None and event.tag not in _COLLECTION_TAGS:
        raise _tag_error(event)
    if depth >= MAX_DEPTH:
        raise YamlError(
            f"nests lists and mappings more than {MAX_DEPTH} deep at {_at(event)}", _mark(event)
        )


_NO_KEY: Any = object()
_Frame = tuple[Any, Any, dict[Any, yaml.Event]]
"""An open container's parent, the key it sits under there, and the parent's key events."""


def _path(stack: list[_Frame]) -> Path:
    """Indices and keys from the document down to the innermost open container."""
    steps: list[int | str] = []
    for parent, key, _ in stack[1:]:
        steps.append(len(parent) - 1 if isinstance(parent, list) else str(key))
    return tuple(steps)


def _key_error(
    top: dict[Any, Any], key: Any, event: yaml.ScalarEvent, marks: dict[Any, yaml.Event],
    stack: list[_Frame], root: Any,
) -> YamlError:  # fmt: skip
    if key in top:
        lines = (_line(marks[key]), _line(event))
        return DuplicateKey(_path(stack), key, lines, root, _mark(event))
    return YamlError(f"uses a merge key (<<) on line {_line(event)}; {_NO_ANCHORS}", _mark(event))


def _build(next_event: Callable[[], Any]) -> Any:
    """The values of the event stream. One flat loop, for speed: a first version with a
    method call per event took about 40 % longer to parse 20 000 rules."""
    root: Any = None
    stack: list[_Frame] = []  # the open containers' parents, outermost first
    top: Any = None  # the innermost open container; None at document level
    key: Any = _NO_KEY  # when ``top`` is a mapping: the key waiting for its value
    marks: dict[Any, yaml.Event] = {}  # when ``top`` is a mapping: each key's event
    documents = 0
    while True:
        event = next_event()
        kind = type(event)
        if kind is _SCALAR:
            if event.anchor is not None or event.tag is not None:
                value: Any = _tagged(event)
            else:
                value = event.value
                if event.implicit[0]:  # plain: resolve as YAML 1.1 does
                    if value in _WORDS:
                        value = _WORDS[value]
                    elif value[0] in _NUMBER_START:
                        value = _numeric(value, event)
            if type(top) is list:
                top.append(value)
            elif top is None:
                root = value
            elif key is not _NO_KEY:
                top[key] = value
                key = _NO_KEY
            elif value in top or (value == "<<" and event.implicit[0]):
                raise _key_error(top, value, event, marks, stack, root)
            else:
                top[value] = None  # holds the key's place (and order) until its value comes
                marks[value] = event
                key = value
        elif kind is _MAPPING_START or kind is _SEQUENCE_START:
            if event.anchor is not None or event.tag is not None or len(stack) >= MAX_DEPTH:
                _check_collection(event, len(stack))
            container: Any = {} if kind is _MAPPING_START else []
            if type(top) is list:
                top.append(container)
            elif top is None:
                root = container
            elif key is _NO_KEY:
                what = "mapping" if kind is _MAPPING_START else "list"
                raise YamlError(
                    f"uses a {what} as a mapping key on line {_line(event)}", _mark(event)
                )
            else:
                top[key] = container
            stack.append((top, key, marks))
            top, key, marks = container, _NO_KEY, {} if kind is _MAPPING_START else marks
        elif kind is _MAPPING_END or kind is _SEQUENCE_END:
            top, key, marks = stack.pop()
            key = _NO_KEY
        elif kind is _ALIAS:
            alias = f'"*{event.anchor}"'
            problem = f"uses the alias {alias} on line {_line(event)}; {_NO_ANCHORS}"
            raise YamlError(problem, _mark(event))
        elif kind is _DOCUMENT_START:
            documents += 1
            if documents > 1:
                raise YamlError(
                    f"holds a second YAML document, from line {_line(event)}", _mark(event)
                )
        elif kind is _STREAM_END:
            return root


def _syntax_error(exc: yaml.YAMLError) -> YamlError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "its end"
        context = ""
        if exc.context and exc.context_mark:
            context = f" ({exc.context} started on line {exc.context_mark.line + 1})"
        where = (mark.line + 1, mark.column + 1) if mark else None
        return YamlError(f"is not valid YAML at {at}: {exc.problem}{context}", where)
    if isinstance(exc, yaml.reader.ReaderError):
        return YamlError(f"is not valid YAML at byte {exc.position}: {exc.reason}")
    return YamlError("is not valid YAML")


def parse(data: bytes, parser: type[yaml.SafeLoader] | None = None) -> Any:
    """The one document ``data`` (UTF-8) holds, as plain values; ``YamlError`` otherwise.
    ``parser``: libyaml's when PyYAML has it (the default), else PyYAML's own."""
    source = (parser or _EventSource)(data)
    try:
        return _build(source.get_event)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None
    finally:
        source.dispose()


def positions(data: bytes) -> dict[Path, Position]:
    """Where each key (its key's text) and each list item starts, by path, 1-based. On YAML
    ``parse`` refuses it stops where the refusal is and keeps what it found before."""
    found: dict[Path, Position] = {}
    source = _EventSource(data)
    try:
        _walk(source.get_event, found)
    except yaml.YAMLError:
        pass  # the error ``parse`` reports; what came before it is placed all the same
    finally:
        source.dispose()
    return found


class _Open:
    """An open list or mapping while ``positions`` walks: its path and what comes next."""

    def __init__(self, path: Path, mapping: bool) -> None:
        self.path, self.mapping = path, mapping
        self.index = 0
        self.key: Any = _NO_KEY

    def place(self, event: yaml.Event, found: dict[Path, Position]) -> Path | None:
        """The path of the value ``event`` starts, or None when it is a mapping's key."""
        if self.mapping and self.key is _NO_KEY:
            if not isinstance(event, _SCALAR):
                raise yaml.YAMLError("a list or mapping as a key")  # parse refuses it too
            self.key = str(event.value)
            found.setdefault((*self.path, self.key), _mark(event) or (0, 0))
            return None
        if self.mapping:
            here: Path = (*self.path, self.key)
            self.key = _NO_KEY
        else:
            here = (*self.path, self.index)
            found.setdefault(here, _mark(event) or (0, 0))
            self.index += 1
        return here


def _walk(next_event: Callable[[], Any], found: dict[Path, Position]) -> None:
    stack: list[_Open] = []
    while not isinstance(event := next_event(), _STREAM_END):
        if isinstance(event, _MAPPING_END | _SEQUENCE_END):
            stack.pop()
            continue
        here = stack[-1].place(event, found) if stack else ()
        if here is not None and isinstance(event, _MAPPING_START | _SEQUENCE_START):
            stack.append(_Open(here, isinstance(event, _MAPPING_START)))
