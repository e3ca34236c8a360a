"""Rule files on disk → a checked, compiled ``RuleSet``, or one ``RuleFileError`` sentence.

Every message is one sentence that names the file, the rule (or section) and the field, in
the manner of Alertmanager's ``undefined receiver "team-X" used in route``::

    10-platform.yaml: rule "cpu": field "cooldwn_s" is not a known key (did you mean
    "cooldown_s"?).
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import types
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from remediator.actions.base import Action
from remediator.errors import RuleFileError
from remediator.guards.claim import Limit
from remediator.ruleset.matchers import Matcher, parse_matcher
from remediator.ruleset.rules import PlannedAction, Rule, RuleSet, TargetTemplate
from remediator.ruleset.schema import (
    KIND_PATTERN,
    NAME_PATTERN,
    ActionSpec,
    DefaultsSpec,
    EscalationPolicySpec,
    LimitSpec,
    PolicySpec,
    RuleFileSpec,
    RuleSpec,
    TargetSpec,
)
from remediator.ruleset.template import Template

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


def _fail(where: str, field_path: str, predicate: str) -> RuleFileError:
    """``where: field "path" predicate.``, or ``where predicate.`` without a field."""
    predicate = predicate.rstrip(".")
    if field_path:
        return RuleFileError(f'{where}: field "{field_path}" {predicate}.')
    return RuleFileError(f"{where} {predicate}.")


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for item in loc:
        path += f"[{item}]" if isinstance(item, int) else (f".{item}" if path else str(item))
    return path


def _quoted(value: str) -> str:
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
        return _quoted(value)
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


def _schema_error(
    where: str, exc: ValidationError, model: type[BaseModel], prefix: str = "", skip: int = 0
) -> RuleFileError:
    """``exc`` (from validating ``model``) as one sentence about ``where``; the field path
    drops the first ``skip`` steps (those ``where`` names) and starts with ``prefix``."""
    error = exc.errors(include_url=False)[0]
    loc = tuple(error["loc"])[skip:]
    if loc and loc[-1] == "[key]":
        # A mapping key that is not allowed, e.g. "SEV-4" under defaults.escalation.
        predicate = _predicate({**error, "input": None}, model).removesuffix(", not empty")
        return _fail(
            where, prefix + _field_path(loc[:-2]), f'has key "{loc[-2]}", which {predicate}'
        )
    return _fail(where, prefix + _field_path(loc), _predicate(error, model))


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
        return _fail(file, "", f'has the key "{dup.key}" twice in one mapping, {lines}')
    raw = yaml.load(data, Loader=yaml.SafeLoader)  # duplicates allowed: only to name the rule
    where, rest = _section_where(file, raw if isinstance(raw, dict) else {}, (*loc, dup.key))
    if not rest:
        return _fail(where, "", f"appears twice, {lines}")
    return _fail(where, _field_path(rest), f"appears twice, {lines}")


def _read(path: Path) -> tuple[RuleFileSpec, bytes]:
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
        raise _fail(path.name, "", f"is not valid YAML at {at}: {exc.problem}{context}") from None
    except yaml.YAMLError as exc:
        raise _fail(path.name, "", f"is not valid YAML ({exc})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _fail(
            path.name,
            "",
            f"must be a mapping of sections ({', '.join(SECTIONS)}), not {_describe_type(raw)}",
        )
    for key in raw:
        if key not in SECTIONS:
            raise _fail(
                f'{path.name}: section "{key}"', "", _unknown_key(str(key), SECTIONS, "section")
            )
    try:
        return RuleFileSpec.model_validate(raw), data
    except ValidationError as exc:
        loc = tuple(exc.errors(include_url=False)[0]["loc"])
        where, rest = _section_where(path.name, raw, loc)
        raise _schema_error(where, exc, RuleFileSpec, skip=len(loc) - len(rest)) from None


@dataclass
class _Merged:
    policy: PolicySpec | None = None
    policy_file: str = ""
    defaults: DefaultsSpec | None = None
    defaults_file: str = ""
    actions: dict[str, tuple[str, ActionSpec]] = field(default_factory=dict)
    escalations: dict[str, tuple[str, EscalationPolicySpec]] = field(default_factory=dict)
    rules: list[tuple[str, RuleSpec]] = field(default_factory=list)


def _merge_named(
    kind: str, file: str, items: Mapping[str, Any], into: dict[str, tuple[str, Any]]
) -> None:
    for name, spec in items.items():
        if name in into:
            raise _fail(f'{file}: {kind} "{name}"', "", f"is already declared in {into[name][0]}")
        into[name] = (file, spec)


def _merge(files: Sequence[tuple[str, RuleFileSpec]]) -> _Merged:
    merged = _Merged()
    rule_files: dict[str, str] = {}
    for file, spec in files:
        if spec.policy is not None:
            if merged.policy is not None:
                raise _fail(
                    f'{file}: section "policy"', "", f"is already defined in {merged.policy_file}"
                )
            merged.policy, merged.policy_file = spec.policy, file
        if spec.defaults is not None:
            if merged.defaults is not None:
                raise _fail(
                    f'{file}: section "defaults"',
                    "",
                    f"is already defined in {merged.defaults_file}",
                )
            merged.defaults, merged.defaults_file = spec.defaults, file
        _merge_named("action", file, spec.actions, merged.actions)
        _merge_named("escalation policy", file, spec.escalations, merged.escalations)
        for rule in spec.rules:
            if rule.name in rule_files:
                raise _fail(
                    f'{file}: rule "{rule.name}"',
                    "name",
                    f"is already used by a rule in {rule_files[rule.name]}",
                )
            rule_files[rule.name] = file
            merged.rules.append((file, rule))
    return merged


def _known(names: Sequence[str]) -> str:
    return ", ".join(sorted(names)) or "none"


def _resolve_action(
    where: str, prefix: str, spec: ActionSpec, registry: Mapping[str, Action]
) -> tuple[Action, BaseModel]:
    """The action kind and its checked parameters; ``prefix`` leads the field paths."""
    action = registry.get(spec.kind)
    if action is None:
        raise _fail(
            where,
            f"{prefix}kind",
            f'names unknown action kind "{spec.kind}" (known: {_known(list(registry))})',
        )
    try:
        params: BaseModel = action.params_model.model_validate(spec.params)
    except ValidationError as exc:
        raise _schema_error(where, exc, action.params_model, f"{prefix}params.") from None
    return action, params


def _declared_actions(
    merged: _Merged, registry: Mapping[str, Action]
) -> dict[str, tuple[Action, BaseModel]]:
    """Each declared action, checked once where it is declared (used or not)."""
    return {
        name: _resolve_action(f'{file}: action "{name}"', "", spec, registry)
        for name, (file, spec) in merged.actions.items()
    }


def _template(where: str, field_path: str, text: str) -> Template:
    try:
        template = Template.parse(text)
    except ValueError as exc:
        raise _fail(where, field_path, f"is {_quoted(text)}, but {exc}") from None
    try:
        template.render(dict.fromkeys(template.labels, "x"))
    except LookupError:
        raise _fail(
            where,
            field_path,
            f"is {_quoted(text)}, which can never give a valid object name (lowercase letters,"
            " digits, '-' and '.')",
        ) from None
    return template


def _target(where: str, action_name: str, action: Action, target: TargetSpec) -> TargetTemplate:
    if action.target_kinds and target.kind not in action.target_kinds:
        raise _fail(
            where,
            "target.kind",
            f'is {target.kind}, but action "{action_name}" ({action.kind}) acts only on'
            f" {', '.join(sorted(action.target_kinds))}",
        )
    namespace = _template(where, "target.namespace", target.namespace) if target.namespace else None
    return TargetTemplate(
        target.kind, namespace or Template(""), _template(where, "target.name", target.name)
    )


def _plan(
    where: str,
    spec: RuleSpec,
    declared: Mapping[str, tuple[Action, BaseModel]],
    registry: Mapping[str, Action],
) -> PlannedAction | None:
    if spec.action is None:
        if spec.target is not None:
            raise _fail(where, "target", 'is set, but the rule has no "action" to act on it')
        return None
    if spec.target is None:
        raise _fail(where, "target", 'is required because the rule has an "action"')
    if isinstance(spec.action, str):
        if spec.action not in declared:
            raise _fail(
                where,
                "action",
                f'names undefined action "{spec.action}" (declared: {_known(list(declared))})',
            )
        name = spec.action
        action, params = declared[name]
    else:
        try:
            inline = ActionSpec.model_validate(spec.action)
        except ValidationError as exc:
            raise _schema_error(where, exc, ActionSpec, "action.") from None
        name = f"{spec.name}.{inline.kind}"
        action, params = _resolve_action(where, "action.", inline, registry)
    target = _target(where, name, action, spec.target)
    return PlannedAction(name=name, action=action, params=params, target=target)


def _matchers(where: str, spec: RuleSpec) -> tuple[Matcher, ...]:
    compiled = []
    for i, text in enumerate(spec.match):
        try:
            compiled.append(parse_matcher(text))
        except ValueError as exc:
            raise _fail(
                where, f"match[{i}]", f"holds {text}, which is not a valid matcher: {exc}"
            ) from None
    return tuple(compiled)


def _limit(spec: LimitSpec | None) -> Limit | None:
    return None if spec is None else Limit(spec.max_actions, spec.window_s)


def _escalation(where: str, spec: RuleSpec, merged: _Merged, defaults: DefaultsSpec) -> str:
    name = spec.escalation or defaults.escalation.get(spec.severity)
    if name is None:
        raise _fail(
            where,
            "escalation",
            f"is missing and defaults.escalation names no policy for {spec.severity.value}",
        )
    if name not in merged.escalations:
        source = "" if spec.escalation else f" (from defaults.escalation.{spec.severity.value})"
        raise _fail(
            where,
            "escalation",
            f'names undefined escalation policy "{name}"{source}'
            f" (defined: {_known(list(merged.escalations))})",
        )
    return name


def _compile_rule(
    position: int,
    file: str,
    spec: RuleSpec,
    merged: _Merged,
    declared: Mapping[str, tuple[Action, BaseModel]],
    registry: Mapping[str, Action],
) -> Rule:
    where = f'{file}: rule "{spec.name}"'
    defaults = merged.defaults or DefaultsSpec()
    return Rule(
        name=spec.name,
        file=file,
        position=position,
        matchers=_matchers(where, spec),
        severity=spec.severity,
        plan=_plan(where, spec, declared, registry),
        cooldown_s=defaults.cooldown_s if spec.cooldown_s is None else spec.cooldown_s,
        rate_limit=_limit(spec.rate_limit),
        verify_within_s=spec.verify_within_s or defaults.verify_within_s,
        escalation=_escalation(where, spec, merged, defaults),
        description=spec.description,
    )


def _check_catch_all(directory: Path, rules: Sequence[Rule]) -> None:
    if not rules:
        raise _fail(
            f"rules directory {directory}",
            "",
            'has rule files but no rule; at least a catch-all rule with "match: []" is needed',
        )
    for rule, after in itertools.pairwise(rules):
        if not rule.matchers:
            raise _fail(
                f'{rule.file}: rule "{rule.name}"',
                "match",
                f'is empty, so the rule matches every alert and rule "{after.name}"'
                f" ({after.file}) after it can never match; put the catch-all last",
            )
    last = rules[-1]
    if last.matchers:
        raise _fail(
            f'{last.file}: rule "{last.name}"',
            "match",
            'is not empty, but the last rule must be a catch-all with "match: []"',
        )


def _check_policy(file: str, policy: PolicySpec, registry: Mapping[str, Action]) -> None:
    for kind in policy.action_limits:
        if kind not in registry:
            raise _fail(
                f"{file}: policy",
                "action_limits",
                f'names unknown action kind "{kind}" (known: {_known(list(registry))})',
            )


def rule_files(directory: Path) -> list[Path]:
    where = f"rules directory {directory}"
    if not directory.exists():
        raise _fail(where, "", "does not exist")
    if not directory.is_dir():
        raise _fail(where, "", "is not a directory")
    files = sorted(p for p in directory.iterdir() if p.suffix in RULE_SUFFIXES and p.is_file())
    if not files:
        raise _fail(where, "", "holds no rule files (*.yaml or *.yml)")
    return files


def load_rules(directory: Path, registry: Mapping[str, Action]) -> RuleSet:
    digest = hashlib.sha256()
    parsed: list[tuple[str, RuleFileSpec]] = []
    for path in rule_files(directory):
        spec, data = _read(path)
        digest.update(path.name.encode() + b"\0" + data + b"\0")
        parsed.append((path.name, spec))
    merged = _merge(parsed)
    policy = merged.policy or PolicySpec()
    _check_policy(merged.policy_file, policy, registry)
    declared = _declared_actions(merged, registry)
    rules = [
        _compile_rule(position, file, spec, merged, declared, registry)
        for position, (file, spec) in enumerate(merged.rules)
    ]
    _check_catch_all(directory, rules)
    return RuleSet(
        rules=tuple(rules),
        policy=policy,
        escalations={name: spec for name, (_, spec) in merged.escalations.items()},
        hash=digest.hexdigest()[:12],
        files=tuple(name for name, _ in parsed),
    )
