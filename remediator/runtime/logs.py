"""Logging set-up for every command: one format for the whole process, chosen at start.

Every layer logs through the standard library and attaches structured fields without
importing this module: ``log.info("decision", extra={"fields": {"episode": 7, ...}})``.
The formatters render the message, time, level and logger, plus every key of ``fields``:

- ``text``: ``2026-11-28T09:45:00.123Z INFO remediator.act.runner action result key=value …``
  for a terminal;
- ``json``: one JSON object per line, the fields as top-level keys;
- ``logfmt``: ``key=value`` pairs, values quoted when they need it.

Whatever a field or message holds (a newline, a quote, a label value an attacker chose),
one record is one line: JSON escapes it, logfmt and text quote and escape it, so no value
can forge a second record. A traceback, when there is one, goes in ``error`` (json, logfmt)
or on the lines after the record, each indented (text, for a person).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Literal

LogFormat = Literal["text", "json", "logfmt"]

#: Names the formatters write themselves; a field of the same name is written as ``field.X``.
RESERVED = frozenset({"time", "level", "logger", "msg", "error"})
#: A value longer than this is cut (marked with ``…``), so one record stays one bounded line.
MAX_VALUE_CHARS = 4096
#: A logfmt value without these characters needs no quotes.
_BARE = re.compile(r"[^\s\"=\\\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]+")
#: What ``_one_line`` escapes; most text has none of it, and is returned as it is.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def fields_of(record: logging.LogRecord) -> Mapping[str, object]:
    """The structured fields a call passed as ``extra={"fields": {...}}``."""
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


def _timestamp(record: logging.LogRecord) -> str:
    at = datetime.fromtimestamp(record.created, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + "…"


def _plain(value: object) -> object:
    """A field value as JSON can hold it: numbers, booleans and None stay, the rest is text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _bounded(value if isinstance(value, str) else str(value))


def _pairs(record: logging.LogRecord, formatter: logging.Formatter) -> Iterator[tuple[str, object]]:
    """Every key and value of a record, in the order all three formats write them."""
    yield "time", _timestamp(record)
    yield "level", record.levelname.lower()
    yield "logger", record.name
    yield "msg", _bounded(record.getMessage())
    for key, value in fields_of(record).items():
        name = str(key)
        yield (f"field.{name}" if name in RESERVED else name), _plain(value)
    if record.exc_info:
        yield "error", _bounded(formatter.formatException(record.exc_info))


def logfmt_value(value: object) -> str:
    """A value as logfmt writes it: bare when it can be, else quoted with escapes; control
    and line-separator characters become ``\\uXXXX``, so the value stays on one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if _BARE.fullmatch(text):
        return text
    return '"' + "".join(_escape(ch) for ch in text) + '"'


def _field_value(value: object) -> str:
    """``logfmt_value(_plain(value))``, with the common cases first: a decision line has
    eleven fields, mostly short strings and integers, and is written once per alert."""
    if isinstance(value, str) and len(value) <= MAX_VALUE_CHARS:
        return value if _BARE.fullmatch(value) else logfmt_value(value)
    if type(value) is int:  # not bool, which logfmt writes as a word
        return str(value)
    return logfmt_value(_plain(value))


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    return f"\\u{ord(ch):04x}" if _is_control(ch) else ch


def _is_control(ch: str) -> bool:
    """A character a terminal or a line splitter may take for the end of a line, or worse."""
    return ch < " " or "\x7f" <= ch <= "\x9f" or ch in "\u2028\u2029"


def _key(name: str) -> str:
    """``_safe_key(name)``, remembered: keys are few (the fields' names)."""
    known = _KEYS.get(name)
    if known is None:
        if len(_KEYS) >= 1024:
            _KEYS.clear()
        known = _KEYS[name] = _safe_key(name)
    return known


_KEYS: dict[str, str] = {}


def _safe_key(name: str) -> str:
    """A key as logfmt can hold it: no space, quote, ``=`` or control character."""
    if _BARE.fullmatch(name):
        return name
    return "".join(ch if _BARE.fullmatch(ch) else "_" for ch in name) or "_"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(dict(_pairs(record, self)), ensure_ascii=True, default=str)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{_key(k)}={_field_value(v)}" for k, v in _pairs(record, self))


class TextFormatter(logging.Formatter):
    """For a person: time, level, logger and message, then the fields as ``key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"{_timestamp(record)} {record.levelname} {record.name} "
        line = head + _one_line(_bounded(record.getMessage()))
        fields = [f"{_key(str(k))}={_field_value(v)}" for k, v in fields_of(record).items()]
        if fields:
            line += " " + " ".join(fields)
        if record.exc_info:  # indented: a record's own line never starts with a space
            trace = self.formatException(record.exc_info).splitlines()
            line += "".join(f"\n    {_one_line(part)}" for part in trace)
        return line


def _one_line(text: str) -> str:
    return _CONTROL.sub(lambda m: _escape(m.group()), text)


FORMATTERS: dict[str, type[logging.Formatter]] = {
    "text": TextFormatter,
    "json": JsonFormatter,
    "logfmt": LogfmtFormatter,
}


#: Libraries that log each retry, with a traceback, of an outage the store tells once
#: (``core/outage.py``); above debug, only their errors are shown.
QUIETED = {"asyncpg.pool": logging.ERROR}


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Send every record at ``level`` or above to stderr in ``log_format``."""
    handler = logging.StreamHandler()
    handler.setFormatter(FORMATTERS[log_format]())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name, quiet in QUIETED.items():
        logging.getLogger(name).setLevel(quiet if root.level > logging.DEBUG else logging.NOTSET)
    # Nothing reads these record attributes; collecting them is a third of a record's cost.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
