"""``remediator explain NAME=VALUE…``: what serve would decide for one alert, offline.

Where it sits: beside ``serve``, on the same rule set. It runs serve's classifier and the
guards that need no state (``guards.plan``, ``guards.scope``, ``guards.windows`` at ``--at``,
by default now) and states as facts those whose
counts only a running store knows (cooldown, rate limits, budgets, the storm brake) and the
opt-in the live object must carry. Whether serve runs dry or live is serve's setting, so a
decision the guards let through is "planned", never "would run".

Exit status: 0; 1 when ``--expect`` differs from what the alert meets (as ``amtool config
routes test --verify.receivers``); 2 when a label or ``--expect`` argument is not
``name=value`` (one sentence on stderr, as every command).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from remediator.act.jobs import claim_request
from remediator.actions import opt_in
from remediator.cli import offline
from remediator.core.errors import ConfigError
from remediator.core.model import Alert, AlertStatus, Incident, Severity, Target, Verdict
from remediator.guards import plan, scope, windows
from remediator.guards.claim import ClaimRequest, Limit
from remediator.ruleset.read import one_line, shown
from remediator.ruleset.rules import Approval, Rule, RuleSet

MISMATCH = 1
#: Prometheus's label names (``model.LabelNameRE``).
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
EXPECT_KEYS = ("rule", "severity", "action")
NO_ACTION = "none"
#: Actions whose precheck reads the opt-in annotation (on the Deployment, or a pod's owner;
#: on the Certificate itself).
OPT_IN_KINDS = frozenset({"scale_out", "recycle_pod", "renew_certificate"})
#: Target kinds that carry their own opt-in (a Pod's is on the Deployment that owns it).
SELF_OPTING_KINDS = frozenset({"Deployment", "Certificate"})


def explain(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    labels = parse_labels(getattr(args, "labels", ()))  # absent when none given
    expected = parse_expect(item for group in args.expect or () for item in group)
    ruleset = offline.rules(args, environ)  # RuleFileError: exit 2
    check_expected(expected, ruleset)
    at = parse_at(getattr(args, "at", None))
    rule = ruleset.classify(labels)
    lines = why(ruleset, rule, labels) if args.why else []
    lines += describe(rule, labels, ruleset, at)
    matched = expected == _given(meets(rule), expected)
    if expected:
        lines += verify(expected, meets(rule))
    print("\n".join(lines))
    return 0 if matched else MISMATCH


# The arguments: refused with one sentence each, never read as no labels.


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    if not items:
        raise ConfigError("explain needs the alert's labels, as name=value, before any --expect.")
    labels: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            raise ConfigError(
                f"label argument '{shown(item)}' has no '=': give each label as name=value,"
                " as in alertname=HighCPUUsage."
            )
        if LABEL_NAME.fullmatch(name) is None:
            raise ConfigError(
                f"label argument '{shown(item)}' does not start with a label name"
                " ([a-zA-Z_][a-zA-Z0-9_]*): give each label as name=value, without braces"
                " or quotes."
            )
        _check_value(name, value)
        if name in labels:
            raise ConfigError(f"label '{name}' is given twice.")
        labels[name] = value
    return labels


def _check_value(name: str, value: str) -> None:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        raise ConfigError(
            f"label '{name}' has a quoted value: give it unquoted, as {name}={shown(value[1:-1])}."
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # bytes the locale could not decode
        raise ConfigError(f"label '{name}' has a value that is not valid UTF-8.") from None


def parse_at(text: str | None) -> datetime:
    """``--at``: an ISO 8601 time with its zone (``2026-12-05T10:00+01:00``, ``…Z``)."""
    return datetime.now(UTC) if text is None else offline.zoned_time("--at", text).astimezone(UTC)


def parse_expect(items: Iterable[str]) -> dict[str, str]:
    expected: dict[str, str] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if key not in EXPECT_KEYS or not equals or not value:
            raise ConfigError(
                f"--expect '{shown(item)}' is not rule=NAME, severity=SEV-N or action=NAME"
                " (labels go before --expect)."
            )
        if key in expected:
            raise ConfigError(f"--expect gives {key} twice.")
        expected[key] = value
    return expected


def check_expected(expected: Mapping[str, str], ruleset: RuleSet) -> None:
    """An expectation that no alert could meet is a typo: refused, not a mismatch."""
    rule, severity, action = (expected.get(key) for key in EXPECT_KEYS)
    if rule is not None and ruleset.rule(rule) is None:
        raise ConfigError(f"--expect rule '{shown(rule)}' names no rule of the rule set.")
    if severity is not None and severity not in {s.value for s in Severity}:
        raise ConfigError(f"--expect severity '{shown(severity)}' is not SEV-1, SEV-2 or SEV-3.")
    actions = {r.plan.name for r in ruleset.rules if r.plan is not None} | {NO_ACTION}
    if action is not None and action not in actions:
        raise ConfigError(
            f"--expect action '{shown(action)}' is no action of the rule set's rules, nor none."
        )


# What serve would decide, in the pipeline's order.


def why(ruleset: RuleSet, matched: Rule, labels: Mapping[str, str]) -> list[str]:
    """Each rule before ``matched`` and the first of its matchers the labels fail."""
    lines = []
    for rule in ruleset.rules:
        if rule is matched:
            break
        failed = next(m for m in rule.matchers if not m.matches(labels))  # first match wins
        given = f"{failed.name}={_json(labels.get(failed.name, ''))}"
        missing = "" if failed.name in labels else " (not given)"
        lines.append(
            f"skipped: {rule.name} ({rule.file}): {failed} does not match {given}{missing}"
        )
    return lines


def describe(rule: Rule, labels: Mapping[str, str], ruleset: RuleSet, at: datetime) -> list[str]:
    lines = [f"rule: {rule.name} ({rule.file})", f"severity: {rule.severity.value}"]
    if rule.plan is None:
        lines += ["action: none (escalate only)", _refused(plan.escalate_only(rule.name))]
    else:
        lines += [f"action: {rule.plan.name} ({rule.plan.kind})", f"params: {_params(rule)}"]
        lines += _guards(rule, labels, ruleset, at)
    return [*lines, _escalation(rule, ruleset)]


def _guards(rule: Rule, labels: Mapping[str, str], ruleset: RuleSet, at: datetime) -> list[str]:
    assert rule.plan is not None
    kind, policy = rule.plan.kind, ruleset.policy
    try:
        target = rule.plan.target.render(labels)
    except LookupError as exc:
        return ["target: unresolved", _refused(plan.unresolved(kind, exc))]
    verdict = scope.decide(target, policy.namespaces)
    lines = [f"target: {target.key}", _scope(target, verdict, policy.namespaces)]
    if not verdict.allowed:
        return [*lines, _refused(verdict)]
    if rule.mute_time_intervals or rule.active_time_intervals:
        verdict = windows.decide(rule.mute_time_intervals, rule.active_time_intervals, at)
        lines.append(_windows(rule, verdict, at))
        if not verdict.allowed:
            return [*lines, _refused(verdict)]
    storm = policy.storm
    lines.append(
        f"storm brake: at most {storm.max_targets} distinct targets needing action per"
        f" {_number(storm.window_s)} s; beyond that it escalates instead of acting."
    )
    lines += limits(claim_request(_incident(labels, target), rule, policy, dry_run=False))
    if kind in OPT_IN_KINDS:
        lines.append(_opt_in(kind, target, policy.require_opt_in))
    if kind == "scale_out":
        lines.append(_replica_owners(rule))
    if rule.approval is not None:
        lines.append(_approval(rule.approval))
    return [
        *lines,
        f"decision: planned (dry-run or live is serve's setting): {kind} on {target.key},"
        " if the guards above allow it when the alert arrives.",
    ]


def _windows(rule: Rule, verdict: Verdict, at: datetime) -> str:
    said = []
    if rule.mute_time_intervals:
        names = ", ".join(f"'{i.name}'" for i in rule.mute_time_intervals)
        said.append(f"no action inside {names}")
    if rule.active_time_intervals:
        names = ", ".join(f"'{i.name}'" for i in rule.active_time_intervals)
        said.append(f"action only inside {names}")
    verdict_words = "they let it act" if verdict.allowed else "they hold it back"
    return f"time intervals: {'; '.join(said)}; at {at:%Y-%m-%d %H:%M} UTC {verdict_words}."


def _scope(target: Target, verdict: Verdict, namespaces: Sequence[str]) -> str:
    if target.kind in scope.UNNAMESPACED_KINDS:
        return f"scope: {target.kind} targets are in scope: only those serve --database names."
    if verdict.allowed:
        return f"scope: namespace '{target.namespace}' is in policy.namespaces."
    allowed = ", ".join(namespaces) or "none: no action runs anywhere"
    return f"scope: namespace '{target.namespace}' is not in policy.namespaces ({allowed})."


def limits(request: ClaimRequest) -> list[str]:
    """The claim guards ``request`` is held to, as facts, in ``claim.decide``'s order."""
    target = request.target
    lines = [
        f"cooldown: {_number(request.cooldown_s)} s between two actions on {target}."
        if request.cooldown_s > 0
        else "cooldown: none."
    ]
    if request.repeat_limit is not None:
        lines.append(
            f"limit: at most {_per(request.repeat_limit, 'actions')} on {target}; more means the"
            " fix does not help, and it escalates instead."
        )
    facts = (
        (request.target_limit, "actions", f"on {target}"),
        (request.rule_limit, "actions", "for this rule"),
        (request.kind_limit, f"{request.action_kind} actions", "across all rules"),
        (
            request.global_budget if request.destructive else None,
            "destructive actions",
            "across all rules (the global budget)",
        ),
    )
    return lines + [
        f"limit: at most {_per(limit, noun)} {where}." for limit, noun, where in facts if limit
    ]


def _opt_in(kind: str, target: Target, required: bool) -> str:
    if not required:
        return "opt-in: not required (policy.require_opt_in is false)."
    owns = f"the Deployment that owns {target.key}"
    what = target.key if target.kind in SELF_OPTING_KINDS else owns
    return (
        f"opt-in: {what} must carry the annotation {opt_in.ANNOTATION} naming {kind}; the live"
        " object is read before acting."
    )


def _replica_owners(rule: Rule) -> str:
    assert rule.plan is not None
    params = rule.plan.params
    hpa = "raised through its minReplicas" if getattr(params, "hpa", "") == "raise_min" else "no"
    gitops = "yes (gitops: act)" if getattr(params, "gitops", "") == "act" else "no"
    return (
        f"owners: scaled under a KEDA ScaledObject: no; under an HPA: {hpa}; when Argo CD or"
        f" Flux owns spec.replicas: {gitops}; the live objects are read before acting."
    )


def _approval(approval: Approval) -> str:
    whom = ", ".join(approval.approvers) or "any approver"
    needed = "one approval" if approval.needed == 1 else f"{approval.needed} approvals"
    then = "it is escalated" if approval.on_timeout == "escalate" else "it runs anyway"
    return (
        f"approval: the claim waits for {needed} ({whom}) as {approval.source} asks, for"
        f" {_number(approval.timeout_s)} s; without them {then}; the guards are checked again"
        " when it comes."
    )


def _refused(verdict: Verdict) -> str:
    assert verdict.reason is not None
    return f"decision: refused ({verdict.reason.value}), escalated: {verdict.sentence}"


def _escalation(rule: Rule, ruleset: RuleSet) -> str:
    tiers = ruleset.escalations[rule.escalation].tiers
    shown_tiers = ", ".join(
        f"{' and '.join(tier.notify)} at {_number(tier.after_s)} s" for tier in tiers
    )
    return f"escalation: {rule.escalation} ({shown_tiers})"


# --expect


def meets(rule: Rule) -> dict[str, str]:
    action = NO_ACTION if rule.plan is None else rule.plan.name
    return {"rule": rule.name, "severity": rule.severity.value, "action": action}


def _given(values: Mapping[str, str], expected: Mapping[str, str]) -> dict[str, str]:
    """``values`` of the keys ``expected`` names, in ``EXPECT_KEYS`` order."""
    return {key: values[key] for key in EXPECT_KEYS if key in expected}


def verify(expected: Mapping[str, str], got: Mapping[str, str]) -> list[str]:
    wanted, found = _given(expected, expected), _given(got, expected)
    if wanted == found:
        return [f"expect: ok: {_pairs(found)}"]
    return ["expect: FAILED", f"  expected: {_pairs(wanted)}", f"  got:      {_pairs(found)}"]


# Formatting


def _pairs(values: Mapping[str, str]) -> str:
    return " ".join(f"{key}={value}" for key, value in values.items())


def _params(rule: Rule) -> str:
    """The action's parameters with the defaults applied; unset and empty ones left out."""
    assert rule.plan is not None
    dumped = rule.plan.params.model_dump(mode="json")
    pairs = [f"{k}={_json(v)}" for k, v in dumped.items() if v not in (None, "", [], {})]
    return " ".join(pairs) or "none"


def _json(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return one_line(json.dumps(value, ensure_ascii=False))


def _number(seconds: float) -> str:
    return f"{seconds:.0f}" if seconds.is_integer() else f"{seconds}"


def _per(limit: Limit, noun: str) -> str:
    return f"{limit.max_actions} {noun} per {_number(limit.window_s)} s"


def _incident(labels: Mapping[str, str], target: Target) -> Incident:
    """An alert of these labels with its target resolved: what ``claim_request`` reads."""
    never = datetime.fromtimestamp(0, UTC)  # no guard that reads the time runs here
    alert = Alert("", AlertStatus.FIRING, labels, {}, never, None)
    return Incident(alert, episode_id=0, journal_id=0, received_at=never, target=target)
