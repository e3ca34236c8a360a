"""Reading one rule file: its bytes (from ``files``) → YAML (``strict_yaml``) →
``RuleFileSpec``, or a ``RuleFileError``; and the sentences every rule-file error is.

Where it sits: ``load`` reads each selected file with ``files.read_bounded``, calls
``read_rule_file`` on it, then merges and compiles the specs.

Every message is one sentence on one line that names the file, the rule (or section) and
the field, in the manner of Alertmanager's ``undefined receiver "team-X" used in route``::

    10-platform.yaml: rule "cpu": field "cooldwn_s" is not a known key (did you mean
    "cooldown_s"?).

What the file holds is quoted with escapes (a newline reads as ``\\n``) and cut short, so
no rule file can make a message span lines or run on.

``error_path`` reads such a sentence back: the path of the field it names, which ``check``
turns into a line and column with ``strict_yaml.positions``.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from remediator.core.errors import RuleFileError
from remediator.ruleset.schema import KIND_PATTERN, NAME_PATTERN, RuleFileSpec
from remediator.ruleset.strict_yaml import DuplicateKey, Path, YamlError, parse
from remediator.ruleset.time_intervals import INTERVAL_NAME_PATTERN

SECTIONS = tuple(RuleFileSpec.model_fields)
SHOWN_CHARS = 64
"""Characters of a value, key or name quoted in a message; longer ones are cut, with "…"."""

#: What a ``pattern`` means, in words, for the messages.
_PATTERN_WORDS = {
    NAME_PATTERN: "must be 1 to 63 lowercase letters, digits, '.', '_' or '-',"
    " starting and ending with a letter or digit",
    KIND_PATTERN: "must be a Kubernetes kind in CamelCase, such as Deployment or Pod",
    INTERVAL_NAME_PATTERN: "must be text without control characters",
}
#: Pydantic's bound errors → (the bound's name in the error's context, our words).
_BOUND_WORDS = {
    "greater_than_equal": ("ge", "at least"),
    "less_than_equal": ("le", "at most"),
    "greater_than": ("gt", "greater than"),
    "less_than": ("lt", "less than"),
}
_TYPE_WORDS = {
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "string_type": "a string",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def one_line(text: str) -> str:
    """``text`` with every character that does not print (line breaks, U+2028, bidi
    controls, tabs) written as an escape."""
    if text.isprintable():
        return text
    escapes = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return "".join(c if c.isprintable() else escapes.get(c) or _escape(c) for c in text)


def shown(text: object) -> str:
    """A key or name from the file, for a message: on one line, at most ``SHOWN_CHARS``."""
    text = str(text)
    cut = text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"
    return one_line(cut)


def fail(where: str, field_path: str, predicate: str) -> RuleFileError:
    """``where: field "path" predicate.``, or ``where predicate.`` without a field."""
    predicate = predicate.rstrip(".")
    if field_path:
        return RuleFileError(one_line(f'{where}: field "{field_path}" {predicate}.'))
    return RuleFileError(one_line(f"{where} {predicate}."))


def field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for item in loc:
        step = shown(item)
        path += f"[{item}]" if isinstance(item, int) else (f".{step}" if path else step)
    return path


def quoted(value: str) -> str:
    """``value`` in double quotes with JSON's escapes, cut at ``SHOWN_CHARS``."""
    cut = value if len(value) <= SHOWN_CHARS else value[: SHOWN_CHARS - 1] + "…"
    return one_line(json.dumps(cut, ensure_ascii=False))


def _describe_type(value: Any) -> str:
    """What sort of value the file holds, for ``must be a list, not a string``."""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "something else"


def _bound(value: Any) -> str:
    """A bound as written in the schema: 2592000, not 2592000.0 (pydantic's float)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _describe(value: Any) -> str:
    """A value the file holds, for ``must be at least 0, not -5``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and len(value) <= 40:
        return quoted(value)
    return _describe_type(value)


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → ``X``; a union of several kinds stays as it is."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return annotation


def _keys_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys the model accepts at ``loc`` (a mapping inside ``model``), for hints."""
    current: Any = model
    for item in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(item))
            if info is None:
                return []
            current = info.annotation
        elif get_origin(current) is list and isinstance(item, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unknown_key(key: str, known: Sequence[str], noun: str = "key") -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6) if len(key) <= 100 else []
    if close:
        return f'is not a known {noun} (did you mean "{close[0]}"?)'
    if known:
        return f"is not a known {noun} (known: {', '.join(known)})"
    return f"is not a known {noun}"


def _predicate(error: ErrorDetails, model: type[BaseModel]) -> str:
    """Pydantic's first error as the end of our sentence: ``must be ..., not ...``."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error["input"]
    loc = tuple(error["loc"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return _unknown_key(str(loc[-1]), _keys_at(model, loc[:-1]))
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx["discriminator"]).strip("'")
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        if kind == "union_tag_not_found":
            return f"needs a {key}"
        return f"has {key} {_describe(ctx['tag'])}, which must be one of {expected}"
    if kind == "enum":
        expected = str(ctx["expected"]).replace("'", "")  # 'SEV-1', 'SEV-2' or 'SEV-3'
        return f"must be {expected}, not {_describe(value)}"
    if kind == "string_pattern_mismatch":
        words = _PATTERN_WORDS.get(str(ctx["pattern"]), f"must match {ctx['pattern']}")
        return f"{words}, not {_describe(value)}"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, not {_describe_type(value)}"
    if kind in _BOUND_WORDS:
        name, words = _BOUND_WORDS[kind]
        return f"must be {words} {_bound(ctx[name])}, not {_describe(value)}"
    if kind in ("string_too_short", "string_too_long"):
        bound, word = (
            ("min_length", "at least") if kind == "string_too_short" else ("max_length", "at most")
        )
        count = int(ctx[bound])
        return (
            f"must be {word} {count} character{'' if count == 1 else 's'}, not {_describe(value)}"
        )
    if kind in ("too_short", "too_long"):
        bound, word = (
            ("min_length", "at least") if kind == "too_short" else ("max_length", "at most")
        )
        count = int(ctx[bound])
        noun = "item" if isinstance(value, list | dict) else "character"
        return f"must have {word} {count} {noun}{'' if count == 1 else 's'}"
    message = str(error["msg"])
    for prefix in ("Input should be ", "Value should be "):
        if message.startswith(prefix):
            return f"must be {message.removeprefix(prefix)}, not {_describe(value)}"
    return message[:1].lower() + message[1:]


def _section_where(
    file: str, raw: Mapping[str, Any], loc: Sequence[int | str]
) -> tuple[str, tuple[int | str, ...]]:
    """``file: rule "x"`` (or ``file: action "y"``, ``file: time interval "z"``, ``file:
    policy``) and the rest of ``loc``."""
    loc = tuple(loc)
    listed = {"rules": "rule", "time_intervals": "time interval"}
    if len(loc) >= 2 and loc[0] in listed and isinstance(loc[1], int):
        items = raw.get(str(loc[0]))
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        kind = listed[str(loc[0])]
        label = f"{kind} {quoted(name)}" if isinstance(name, str) else f"{kind} #{loc[1] + 1}"
        return f"{file}: {label}", loc[2:]
    if len(loc) >= 2 and loc[0] in ("actions", "escalations"):
        kind = "action" if loc[0] == "actions" else "escalation policy"
        return f"{file}: {kind} {quoted(str(loc[1]))}", loc[2:]
    if len(loc) >= 2 and loc[0] in ("policy", "defaults"):
        return f"{file}: {loc[0]}", loc[1:]
    return (f"{file}: section {quoted(str(loc[0]))}", loc[1:]) if loc else (file, ())


def schema_error(
    where: str, exc: ValidationError, model: type[BaseModel], prefix: str = "", skip: int = 0
) -> RuleFileError:
    """``exc`` (from validating ``model``) as one sentence about ``where``; the field path
    drops the first ``skip`` steps (those ``where`` names) and starts with ``prefix``."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])[skip:]
    if loc and loc[-1] == "[key]":
        # A mapping key that is not allowed, e.g. "SEV-4" under defaults.escalation.
        predicate = _predicate({**error, "input": None}, model).removesuffix(", not empty")
        key = quoted(str(loc[-2]))
        return fail(where, prefix + field_path(loc[:-2]), f"has key {key}, which {predicate}")
    return fail(where, prefix + field_path(loc), _predicate(error, model))


def _duplicate_key_error(file: str, dup: DuplicateKey) -> RuleFileError:
    root = dup.root if isinstance(dup.root, dict) else {}
    key = dup.key if isinstance(dup.key, str) else str(dup.key)
    where, rest = _section_where(file, root, (*dup.path, key))
    return fail(where, field_path(rest), f"appears twice, {dup.where}")


def _yaml(file: str, data: bytes) -> Any:
    try:
        return parse(data)
    except DuplicateKey as dup:
        raise _duplicate_key_error(file, dup) from None
    except YamlError as exc:
        raise fail(file, "", exc.problem) from None


def read_rule_file(file: str, data: bytes) -> RuleFileSpec:
    """The spec rule file ``file`` holds (``data``, read by ``files``), or a sentence."""
    raw = _yaml(file, data)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise fail(
            file,
            "",
            f"must be a mapping of sections ({', '.join(SECTIONS)}), not {_describe_type(raw)}",
        )
    for key in raw:
        if key not in SECTIONS:
            raise fail(
                f"{file}: section {quoted(str(key))}",
                "",
                _unknown_key(str(key), SECTIONS, "section"),
            )
    try:
        return RuleFileSpec.model_validate(raw)
    except ValidationError as exc:
        loc = tuple(exc.errors(include_url=False)[0]["loc"])
        where, rest = _section_where(file, raw, loc)
        raise schema_error(where, exc, RuleFileSpec, skip=len(loc) - len(rest)) from None


_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_SUBJECT = re.compile(
    rf"(?P<kind>rule|action|escalation policy|sink|section) (?:{_QUOTED}|#(?P<number>\d+))"
    rf"|(?P<part>policy|defaults)"
)
_FIELD = re.compile(rf": field {_QUOTED}")
_STEP = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_SECTIONS = {"action": "actions", "escalation policy": "escalations", "sink": "sinks"}


def _unquote(text: str) -> str:
    try:
        value = json.loads(f'"{text}"')
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _rule_index(name: str, raw: Any, last: bool) -> int | None:
    rules = raw.get("rules") if isinstance(raw, dict) else None
    if not isinstance(rules, list):
        return None
    found = [i for i, r in enumerate(rules) if isinstance(r, dict) and r.get("name") == name]
    return (found[-1] if last else found[0]) if found else None


def _subject_path(subject: re.Match[str], raw: Any, rest: str) -> Path | None:
    """The section (and rule or entry) a sentence is about, as a path."""
    if subject["part"]:
        return (subject["part"],)
    kind = subject["kind"]
    if kind == "rule" and subject["number"]:
        return ("rules", int(subject["number"]) - 1)
    name = _unquote(subject[2])
    if kind == "rule":
        index = _rule_index(name, raw, "is already used by a rule in" in rest)
        return None if index is None else ("rules", index)
    return (name,) if kind == "section" else (_SECTIONS[kind], name)


def error_path(sentence: str, raw: Any) -> Path | None:
    """The path of what ``sentence`` (a rule-file error with its ``file: `` cut off) names:
    ``rule "cpu": field "target.name" …`` → ``("rules", 3, "target", "name")``; None when it
    names no section of ``raw`` (the file's values)."""
    subject = _SUBJECT.match(sentence)
    if subject is None:
        return None
    path = _subject_path(subject, raw, sentence)
    if path is None:
        return None
    named = _FIELD.match(sentence, subject.end())
    if named is None:
        return path
    steps = _STEP.findall(_unquote(named[1]))
    return (*path, *(int(index) if index else key for index, key in steps))
