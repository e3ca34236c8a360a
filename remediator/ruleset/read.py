"""Reading one rule file: YAML (no repeated keys) → ``RuleFileSpec``, or a ``RuleFileError``.

Every message is one sentence that names the file, the rule (or section) and the field, in
the manner of Alertmanager's ``undefined receiver "team-X" used in route``::

    10-platform.yaml: rule "cpu": field "cooldwn_s" is not a known key (did you mean
    "cooldown_s"?).
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from remediator.errors import RuleFileError
from remediator.ruleset.schema import KIND_PATTERN, NAME_PATTERN, RuleFileSpec

RULE_SUFFIXES = (".yaml", ".yml")
SECTIONS = tuple(RuleFileSpec.model_fields)

#: What a ``pattern`` means, in words, for the messages.
_PATTERN_WORDS = {
    NAME_PATTERN: "must be 1 to 63 lowercase letters, digits, '.', '_' or '-',"
    " starting and ending with a letter or digit",
    KIND_PATTERN: "must be a Kubernetes kind in CamelCase, such as Deployment or Pod",
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


class _DuplicateKey(Exception):
    def __init__(self, key: Any, node: yaml.MappingNode, key_node: yaml.Node) -> None:
        super().__init__(key)
        self.key = key
        self.node = node
        self.key_node = key_node


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; a rule file with two is a mistake."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, Hashable):
            break  # construct_mapping reports it, with its line
        if key in seen:
            raise _DuplicateKey(key, node, key_node)
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def fail(where: str, field_path: str, predicate: str) -> RuleFileError:
    """``where: field "path" predicate.``, or ``where predicate.`` without a field."""
    predicate = predicate.rstrip(".")
    if field_path:
        return RuleFileError(f'{where}: field "{field_path}" {predicate}.')
    return RuleFileError(f"{where} {predicate}.")


def field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for item in loc:
        path += f"[{item}]" if isinstance(item, int) else (f".{item}" if path else str(item))
    return path


def quoted(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


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
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
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
    """``file: rule "x"`` (or ``file: action "y"``, ``file: policy``) and the rest of ``loc``."""
    loc = tuple(loc)
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = raw.get("rules")
        item = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        name = item.get("name") if isinstance(item, dict) else None
        label = f'rule "{name}"' if isinstance(name, str) else f"rule #{loc[1] + 1}"
        return f"{file}: {label}", loc[2:]
    if len(loc) >= 2 and loc[0] in ("actions", "escalations"):
        kind = "action" if loc[0] == "actions" else "escalation policy"
        return f'{file}: {kind} "{loc[1]}"', loc[2:]
    if len(loc) >= 2 and loc[0] in ("policy", "defaults"):
        return f"{file}: {loc[0]}", loc[1:]
    return (f'{file}: section "{loc[0]}"', loc[1:]) if loc else (file, ())


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
        return fail(where, prefix + field_path(loc[:-2]), f'has key "{loc[-2]}", which {predicate}')
    return fail(where, prefix + field_path(loc), _predicate(error, model))


def _path_to(node: yaml.Node, target: yaml.MappingNode) -> tuple[int | str, ...] | None:
    """Where mapping ``target`` (of another parse) sits in the document under ``node``."""
    if isinstance(node, yaml.MappingNode) and node.start_mark.index == target.start_mark.index:
        return ()
    children: list[tuple[int | str, yaml.Node]] = []
    if isinstance(node, yaml.MappingNode):
        children = [(str(k.value), v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]
    elif isinstance(node, yaml.SequenceNode):
        children = list(enumerate(node.value))
    for step, child in children:
        found = _path_to(child, target)
        if found is not None:
            return (step, *found)
    return None


def _duplicate_key_error(file: str, data: bytes, dup: _DuplicateKey) -> RuleFileError:
    first = next(k for k, _ in dup.node.value if k.value == dup.key_node.value)
    first_line, line = first.start_mark.line + 1, dup.key_node.start_mark.line + 1
    lines = f"on line {line}" if first_line == line else f"on lines {first_line} and {line}"
    document = yaml.compose(data, Loader=yaml.SafeLoader)
    loc = _path_to(document, dup.node) if document is not None else None
    if loc is None:
        return fail(file, "", f'has the key "{dup.key}" twice in one mapping, {lines}')
    raw = yaml.load(data, Loader=yaml.SafeLoader)  # duplicates allowed: only to name the rule
    where, rest = _section_where(file, raw if isinstance(raw, dict) else {}, (*loc, dup.key))
    if not rest:
        return fail(where, "", f"appears twice, {lines}")
    return fail(where, field_path(rest), f"appears twice, {lines}")


def read_rule_file(path: Path) -> tuple[RuleFileSpec, bytes]:
    data = path.read_bytes()
    try:
        raw = yaml.load(data, Loader=_UniqueKeyLoader)
    except _DuplicateKey as dup:
        raise _duplicate_key_error(path.name, data, dup) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        context = ""
        if exc.context and exc.context_mark:
            context = f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise fail(path.name, "", f"is not valid YAML at {at}: {exc.problem}{context}") from None
    except yaml.YAMLError as exc:
        raise fail(path.name, "", f"is not valid YAML ({exc})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise fail(
            path.name,
            "",
            f"must be a mapping of sections ({', '.join(SECTIONS)}), not {_describe_type(raw)}",
        )
    for key in raw:
        if key not in SECTIONS:
            raise fail(
                f'{path.name}: section "{key}"', "", _unknown_key(str(key), SECTIONS, "section")
            )
    try:
        return RuleFileSpec.model_validate(raw), data
    except ValidationError as exc:
        loc = tuple(exc.errors(include_url=False)[0]["loc"])
        where, rest = _section_where(path.name, raw, loc)
        raise schema_error(where, exc, RuleFileSpec, skip=len(loc) - len(rest)) from None
