"""Rule files → one checked, compiled ``RuleSet``: merge the files (names unique across
them, ``policy`` and ``defaults`` at most once), resolve named actions and escalation
policies, compile matchers and target templates, and require a catch-all last.

Where it sits: ``serve`` (through ``app.init_app``), ``check``, ``explain`` and ``rbac``
call ``load_rules`` once, and a reload (``runtime/reload``) again; it reads the files
(``files``, ``read``), and the pipeline classifies with the ``RuleSet`` it returns.

Errors are ``RuleFileError`` sentences naming file, rule and field (see ``read``); a
warning (rules still under ``match``, the old name of ``matchers``) is one sentence per file,
given to ``warn`` (logged by ``serve``, printed by ``check``) once the rules have loaded.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from remediator.actions.base import AnyAction, Variants
from remediator.guards.claim import Limit
from remediator.guards.windows import TimeInterval
from remediator.ruleset.files import read_bounded, rule_files
from remediator.ruleset.matchers import Matcher, parse_matchers
from remediator.ruleset.read import fail, quoted, read_rule_file, schema_error, shown
from remediator.ruleset.rules import Approval, PlannedAction, Rule, RuleSet, TargetTemplate
from remediator.ruleset.schema import (
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

log = logging.getLogger(__name__)


@dataclass
class _Merged:
    policy: PolicySpec | None = None
    policy_file: str = ""
    defaults: DefaultsSpec | None = None
    defaults_file: str = ""
    actions: dict[str, tuple[str, ActionSpec]] = field(default_factory=dict)
    escalations: dict[str, tuple[str, EscalationPolicySpec]] = field(default_factory=dict)
    sinks: dict[str, tuple[str, Any]] = field(default_factory=dict)
    time_intervals: dict[str, tuple[str, TimeInterval]] = field(default_factory=dict)
    rules: list[tuple[str, RuleSpec]] = field(default_factory=list)


def _merge_named(
    kind: str, file: str, items: Mapping[str, Any], into: dict[str, tuple[str, Any]]
) -> None:
    for name, spec in items.items():
        if name in into:
            where = f"{file}: {kind} {quoted(name)}"
            raise fail(where, "", f"is already declared in {into[name][0]}")
        into[name] = (file, spec)


def _merge(files: Sequence[tuple[str, RuleFileSpec]]) -> _Merged:
    merged = _Merged()
    rule_files: dict[str, str] = {}
    for file, spec in files:
        if spec.policy is not None:
            if merged.policy is not None:
                raise fail(
                    f'{file}: section "policy"', "", f"is already defined in {merged.policy_file}"
                )
            merged.policy, merged.policy_file = spec.policy, file
        if spec.defaults is not None:
            if merged.defaults is not None:
                raise fail(
                    f'{file}: section "defaults"',
                    "",
                    f"is already defined in {merged.defaults_file}",
                )
            merged.defaults, merged.defaults_file = spec.defaults, file
        _merge_named("action", file, spec.actions, merged.actions)
        _merge_named("escalation policy", file, spec.escalations, merged.escalations)
        _merge_named("sink", file, spec.sinks, merged.sinks)
        for interval in spec.time_intervals:
            compiled = {interval.name: interval.compiled()}
            _merge_named("time interval", file, compiled, merged.time_intervals)
        for rule in spec.rules:
            if rule.name in rule_files:
                raise fail(
                    f'{file}: rule "{rule.name}"',
                    "name",
                    f"is already used by a rule in {rule_files[rule.name]}",
                )
            rule_files[rule.name] = file
            merged.rules.append((file, rule))
    return merged


def _known(names: Sequence[str], most: int = 10) -> str:
    """``a, b, c``, or ``none``; past ``most`` names, ``a, b and 90 more``."""
    first = sorted(names)[:most]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(shown(n) for n in first) + more or "none"


def _resolve_action(
    where: str, prefix: str, spec: ActionSpec, registry: Mapping[str, AnyAction]
) -> tuple[AnyAction, BaseModel]:
    """The action kind and its checked parameters; ``prefix`` leads the field paths."""
    action = registry.get(spec.kind)
    if action is None:
        raise fail(
            where,
            f"{prefix}kind",
            f"names unknown action kind {quoted(spec.kind)} (known: {_known(list(registry))})",
        )
    if isinstance(action, Variants):
        action = _variant(where, prefix, spec, action)
    try:
        params: BaseModel = action.params_model.model_validate(spec.params)
    except ValidationError as exc:
        raise schema_error(where, exc, action.params_model, f"{prefix}params.") from None
    return action, params


def _variant(where: str, prefix: str, spec: ActionSpec, action: Variants) -> AnyAction:
    """The action of ``action``'s variants that the rule's params name."""
    variants = action.variants()
    chosen = spec.params.get(action.variant_param, action.default_variant)
    if not isinstance(chosen, str) or chosen not in variants:
        shown_value = quoted(chosen) if isinstance(chosen, str) else json.dumps(chosen)[:64]
        raise fail(
            where,
            f"{prefix}params.{action.variant_param}",
            f"must be {' or '.join(variants)}, not {shown_value}",
        )
    return variants[chosen]


def _declared_actions(
    merged: _Merged, registry: Mapping[str, AnyAction]
) -> dict[str, tuple[AnyAction, BaseModel]]:
    """Each declared action, checked once where it is declared (used or not)."""
    return {
        name: _resolve_action(f"{file}: action {quoted(name)}", "", spec, registry)
        for name, (file, spec) in merged.actions.items()
    }


@dataclass
class _Compiler:
    """What compiling a rule needs, and what is compiled so far: rules share most matchers
    (``namespace=~"llm-.*"``), templates (``{namespace}``), inline actions and limits, and
    all of them are immutable."""

    merged: _Merged
    declared: Mapping[str, tuple[AnyAction, BaseModel]]
    registry: Mapping[str, AnyAction]
    defaults: DefaultsSpec
    ineffective_after: Limit | None = None
    freeze: tuple[TimeInterval, ...] = ()
    """The policy's ``mute_time_intervals``, which every rule's come after."""
    policy: PolicySpec = field(default_factory=PolicySpec)
    matchers: dict[str, tuple[Matcher, ...]] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)
    inline: dict[str, tuple[str, AnyAction, BaseModel]] = field(default_factory=dict)
    limits: dict[tuple[int, float], Limit] = field(default_factory=dict)

    def limit(self, spec: LimitSpec | None) -> Limit | None:
        if spec is None:
            return None
        key = (spec.max_actions, spec.window_s)
        return self.limits.get(key) or self.limits.setdefault(key, Limit(*key))


def _template(where: str, field_path: str, text: str, cache: dict[str, Template]) -> Template:
    if text in cache:
        return cache[text]
    try:
        template = Template.parse(text)
    except ValueError as exc:
        raise fail(where, field_path, f"is {quoted(text)}, but {exc}") from None
    try:
        template.render(dict.fromkeys(template.labels, "x"))
    except LookupError:
        raise fail(
            where,
            field_path,
            f"is {quoted(text)}, which can never give a valid object name (lowercase letters,"
            " digits, '-' and '.')",
        ) from None
    cache[text] = template
    return template


def _target(
    where: str, action_name: str, action: AnyAction, target: TargetSpec, cache: dict[str, Template]
) -> TargetTemplate:
    if action.target_kinds and target.kind not in action.target_kinds:
        raise fail(
            where,
            "target.kind",
            f"is {shown(target.kind)}, but action {quoted(action_name)} ({action.kind}) acts"
            f" only on {', '.join(sorted(action.target_kinds))}",
        )
    namespace = (
        _template(where, "target.namespace", target.namespace, cache) if target.namespace else None
    )
    name = _template(where, "target.name", target.name, cache)
    return TargetTemplate(target.kind, namespace or Template(""), name)


def _inline(
    where: str, raw: Mapping[str, Any], compiler: _Compiler
) -> tuple[str, AnyAction, BaseModel]:
    """An inline ``{kind, params}``, checked; the same text twice is checked once."""
    key = repr(raw)  # YAML's values (str, numbers, lists, dicts) print unambiguously
    if key not in compiler.inline:
        try:
            inline = ActionSpec.model_validate(raw)
        except ValidationError as exc:
            raise schema_error(where, exc, ActionSpec, "action.") from None
        action, params = _resolve_action(where, "action.", inline, compiler.registry)
        compiler.inline[key] = (inline.kind, action, params)
    return compiler.inline[key]


def _plan(where: str, spec: RuleSpec, compiler: _Compiler) -> PlannedAction | None:
    declared = compiler.declared
    if spec.action is None:
        if spec.target is not None:
            raise fail(where, "target", 'is set, but the rule has no "action" to act on it')
        return None
    if spec.target is None:
        raise fail(where, "target", 'is required because the rule has an "action"')
    if isinstance(spec.action, str):
        if spec.action not in declared:
            raise fail(
                where,
                "action",
                f"names undefined action {quoted(spec.action)}"
                f" (declared: {_known(list(declared))})",
            )
        name = spec.action
        action, params = declared[name]
    else:
        kind, action, params = _inline(where, spec.action, compiler)
        name = f"{spec.name}.{kind}"
    target = _target(where, name, action, spec.target, compiler.templates)
    return PlannedAction(name=name, action=action, params=params, target=target)


def _matchers(
    where: str, spec: RuleSpec, cache: dict[str, tuple[Matcher, ...]]
) -> tuple[Matcher, ...]:
    """Each item's matchers (an item may hold several, as in Alertmanager), in order."""
    compiled: list[Matcher] = []
    for i, text in enumerate(spec.matchers):
        try:
            matchers = cache[text] if text in cache else parse_matchers(text)
        except ValueError as exc:
            key = "match" if spec.uses_old_key else "matchers"
            raise fail(
                where, f"{key}[{i}]", f"holds {shown(text)}, which is not a valid matcher: {exc}"
            ) from None
        cache[text] = matchers
        compiled.extend(matchers)
    return tuple(compiled)


def _limit(spec: LimitSpec | None) -> Limit | None:
    return None if spec is None else Limit(spec.max_actions, spec.window_s)


def _escalation(where: str, spec: RuleSpec, merged: _Merged, defaults: DefaultsSpec) -> str:
    name = spec.escalation or defaults.escalation.get(spec.severity)
    if name is None:
        raise fail(
            where,
            "escalation",
            f"is missing and defaults.escalation names no policy for {spec.severity.value}",
        )
    if name not in merged.escalations:
        source = "" if spec.escalation else f" (from defaults.escalation.{spec.severity.value})"
        raise fail(
            where,
            "escalation",
            f"names undefined escalation policy {quoted(name)}{source}"
            f" (defined: {_known(list(merged.escalations))})",
        )
    return name


def _intervals(
    where: str, key: str, names: Sequence[str], merged: _Merged
) -> tuple[TimeInterval, ...]:
    """The time intervals ``names`` (a rule's or the policy's ``key``) name, in order."""
    found = []
    for i, name in enumerate(names):
        if name not in merged.time_intervals:
            raise fail(
                where,
                f"{key}[{i}]",
                f"names undefined time interval {quoted(name)}"
                f" (defined: {_known(list(merged.time_intervals))})",
            )
        found.append(merged.time_intervals[name][1])
    return tuple(found)


def _approval(
    where: str, spec: RuleSpec, plan: PlannedAction | None, policy: PolicySpec
) -> Approval | None:
    """The approval the rule's action waits for: its own when it asks one, else the first
    entry of ``policy.approvals`` that matches it; a rule may not turn a policy's down."""
    own = spec.approval
    if plan is None:
        if own is not None and own.required:
            raise fail(where, "approval", 'asks an approval, but the rule has no "action"')
        return None
    if own is not None and own.required:
        return Approval.of(own, "the rule")
    for i, entry in enumerate(policy.approvals):
        if entry.severities and spec.severity not in entry.severities:
            continue
        if entry.kinds and plan.kind not in entry.kinds:
            continue
        if entry.destructive is not None and entry.destructive != plan.action.destructive:
            continue
        if own is not None:
            raise fail(
                where,
                "approval.required",
                f"is false, but policy.approvals[{i}] requires an approval of this rule; the"
                " policy's approvals are a floor no rule lowers",
            )
        return Approval.of(entry.approval, f"policy.approvals[{i}]")
    return None


def _compile_rule(position: int, file: str, spec: RuleSpec, compiler: _Compiler) -> Rule:
    where = f'{file}: rule "{spec.name}"'
    defaults = compiler.defaults
    matchers = _matchers(where, spec, compiler.matchers)  # its errors first, as written
    plan = _plan(where, spec, compiler)
    fields: dict[str, Any] = {
        "cooldown_s": defaults.cooldown_s if spec.cooldown_s is None else spec.cooldown_s,
        "rate_limit": compiler.limit(spec.rate_limit),
        "target_rate_limit": compiler.limit(spec.target_rate_limit),
        "ineffective_after": compiler.ineffective_after,
        "verify_within_s": spec.verify_within_s or defaults.verify_within_s,
        "escalation": _escalation(where, spec, compiler.merged, defaults),
        "approval": _approval(where, spec, plan, compiler.policy),
    }
    return Rule(
        name=spec.name,
        file=file,
        position=position,
        matchers=matchers,
        severity=spec.severity,
        plan=plan,
        description=spec.description,
        shadow=spec.shadow,
        page_before_acting=spec.page == "before_acting",
        on_silence_check_error=spec.on_silence_check_error,
        mute_time_intervals=compiler.freeze
        + _intervals(where, "mute_time_intervals", spec.mute_time_intervals, compiler.merged),
        active_time_intervals=_intervals(
            where, "active_time_intervals", spec.active_time_intervals, compiler.merged
        ),
        digest=_digest(spec, plan, fields),
        **fields,
    )


def _digest(spec: RuleSpec, plan: PlannedAction | None, fields: Mapping[str, Any]) -> str:
    """The rule as written and as its defaults complete it; not its file or position."""
    written = spec.model_dump(mode="json")
    # Hashed under the key's old name: renaming "match" to "matchers" changes no digest.
    written["match"] = written.pop("matchers")
    if not written["shadow"]:  # a live rule hashes as it did before the key existed
        del written["shadow"]
    if written["page"] == "on_failure":  # so does a rule that pages as before
        del written["page"]
    if written["on_silence_check_error"] == "refuse":  # and one that says nothing of silences
        del written["on_silence_check_error"]
    for key in ("mute_time_intervals", "active_time_intervals"):  # or of time intervals
        if not written[key]:
            del written[key]
    said = {
        "spec": written,
        "cooldown_s": fields["cooldown_s"],
        "limits": [repr(fields["rate_limit"]), repr(fields["target_rate_limit"]),
                   repr(fields["ineffective_after"])],
        "verify_within_s": fields["verify_within_s"],
        "escalation": fields["escalation"],
        "params": None if plan is None else plan.params.model_dump(mode="json"),
    }  # fmt: skip
    if written["approval"] is None:  # a rule that asks no approval hashes as before
        del written["approval"]
    if fields["approval"] is not None:  # the policy's, too: an approval changed is a rule changed
        said["approval"] = fields["approval"].said()
    text = json.dumps(said, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_catch_all(directory: Path, rules: Sequence[Rule]) -> None:
    if not rules:
        raise fail(
            f"rules directory {directory}",
            "",
            'has rule files but no rule; at least a catch-all rule with "matchers: []" is needed',
        )
    for rule, after in itertools.pairwise(rules):
        if not rule.matchers:
            raise fail(
                f'{rule.file}: rule "{rule.name}"',
                "matchers",
                f'is empty, so the rule matches every alert and rule "{after.name}"'
                f" ({after.file}) after it can never match; put the catch-all last",
            )
    last = rules[-1]
    if last.matchers:
        raise fail(
            f'{last.file}: rule "{last.name}"',
            "matchers",
            'is not empty, but the last rule must be a catch-all with "matchers: []"',
        )
    if last.shadow:
        raise fail(
            f'{last.file}: rule "{last.name}"',
            "shadow",
            "must be false on the catch-all: the last rule decides every alert no other rule"
            " takes, live",
        )


def _check_policy(file: str, policy: PolicySpec, registry: Mapping[str, AnyAction]) -> None:
    for kind in policy.action_limits:
        if kind not in registry:
            raise fail(
                f"{file}: policy",
                "action_limits",
                f"names unknown action kind {quoted(kind)} (known: {_known(list(registry))})",
            )
    for i, entry in enumerate(policy.approvals):
        for k, kind in enumerate(entry.kinds):
            if kind not in registry:
                raise fail(
                    f"{file}: policy",
                    f"approvals[{i}].kinds[{k}]",
                    f"names unknown action kind {quoted(kind)} (known: {_known(list(registry))})",
                )


def _check_sinks(merged: _Merged) -> None:
    """With sinks declared, every tier must notify declared sinks. Without any, escalations
    are recorded but not delivered (the service warns at start)."""
    if not merged.sinks:
        return
    for name, (file, policy) in merged.escalations.items():
        for t, tier in enumerate(policy.tiers):
            for n, sink in enumerate(tier.notify):
                if sink not in merged.sinks:
                    raise fail(
                        f"{file}: escalation policy {quoted(name)}",
                        f"tiers[{t}].notify[{n}]",
                        f"names undefined sink {quoted(sink)}"
                        f" (defined: {_known(list(merged.sinks))})",
                    )


@contextlib.contextmanager
def _without_cyclic_gc() -> Iterator[None]:
    """A load creates hundreds of thousands of lists, dicts and models and builds no
    cycles; the collector's passes over them were a third of a 20 000-rule load."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _old_key_warning(file: str, spec: RuleFileSpec) -> str | None:
    """One sentence per file whose rules still say ``match``."""
    names = [rule.name for rule in spec.rules if rule.uses_old_key]
    if not names:
        return None
    if len(names) == 1:
        which = f"rule {quoted(names[0])} uses"
    else:
        which = f"{len(names)} rules ({_known(names, 3)}) use"
    return (
        f'{file}: {which} "match", the old name of "matchers" (the key of Alertmanager\'s'
        ' routes); it loads the same, but rename it to "matchers".'
    )


def load_rules(
    directory: Path,
    registry: Mapping[str, AnyAction],
    warn: Callable[[str], None] = log.warning,
) -> RuleSet:
    """The rules in ``directory``; ``warn`` gets each warning (one sentence per file), once
    the rules have loaded."""
    with _without_cyclic_gc():
        ruleset, warnings = _load(directory, registry)
    for warning in warnings:
        warn(warning)
    return ruleset


def _load(directory: Path, registry: Mapping[str, AnyAction]) -> tuple[RuleSet, list[str]]:
    digest = hashlib.sha256()
    parsed: list[tuple[str, RuleFileSpec]] = []
    for path in rule_files(directory):
        data = read_bounded(path)
        spec = read_rule_file(path.name, data)
        digest.update(path.name.encode() + b"\0" + data + b"\0")
        parsed.append((path.name, spec))
    merged = _merge(parsed)
    policy = merged.policy or PolicySpec()
    _check_policy(merged.policy_file, policy, registry)
    defaults = merged.defaults or DefaultsSpec()
    declared = _declared_actions(merged, registry)
    freeze = _intervals(
        f"{merged.policy_file}: policy", "mute_time_intervals", policy.mute_time_intervals, merged
    )
    compiler = _Compiler(
        merged, declared, registry, defaults, _limit(defaults.ineffective_after), freeze, policy
    )
    rules = [
        _compile_rule(position, file, spec, compiler)
        for position, (file, spec) in enumerate(merged.rules)
    ]
    _check_catch_all(directory, rules)
    _check_sinks(merged)
    warnings = [w for file, spec in parsed if (w := _old_key_warning(file, spec)) is not None]
    return RuleSet(
        rules=tuple(rules),
        policy=policy,
        escalations={name: spec for name, (_, spec) in merged.escalations.items()},
        sinks={name: spec for name, (_, spec) in merged.sinks.items()},
        hash=digest.hexdigest()[:12],
        files=tuple(name for name, _ in parsed),
    ), warnings
