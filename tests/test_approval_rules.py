"""Approvals in the rule files: a rule's own ``approval``, the policy's ``approvals`` (by
severity, kind, destructive: a floor no rule lowers), their bounds and errors, the digest,
``explain``, and who may answer (``approve.approvers.refusal``)."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from remediator.actions.registry import default_registry
from remediator.approve.approvers import Approver, read_approvers, refusal
from remediator.cli.main import main
from remediator.core.errors import RuleFileError
from remediator.ruleset.load import load_rules
from remediator.ruleset.rules import RuleSet
from remediator.store.contract import PendingApproval

README = Path(__file__).parents[1] / "README.md"

BASE = """\
policy:
  namespaces: [shop]
{policy}
defaults:
  escalation: {{SEV-1: ops, SEV-2: ops, SEV-3: ops}}
escalations:
  ops: {{tiers: [{{after_s: 0, notify: [log]}}]}}
actions:
  scale: {{kind: scale_out, params: {{step: 2, max_replicas: 20}}}}
  kill: {{kind: kill_query, params: {{min_duration_s: 60, max_per_run: 5}}}}
rules:
  - name: scale-sev1
    matchers: ['alertname="A"']
    severity: SEV-1
    action: scale
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
{scale_extra}
  - name: kill-sev2
    matchers: ['alertname="B"']
    severity: SEV-2
    action: kill
    target: {{kind: Database, name: primary}}
{kill_extra}
  - name: page-only
    matchers: ['alertname="C"']
    severity: SEV-1
{page_extra}
  - name: default
    matchers: []
    severity: SEV-3
"""


def load(
    tmp_path: Path, policy: str = "", scale: str = "", kill: str = "", page: str = ""
) -> RuleSet:
    def indent(text: str, by: str) -> str:
        return textwrap.indent(textwrap.dedent(text).strip("\n"), by)

    directory = tmp_path / "rules"
    directory.mkdir(parents=True, exist_ok=True)
    extras = {"scale_extra": scale, "kill_extra": kill, "page_extra": page}
    text = BASE.format(policy=indent(policy, "  "),
                       **{key: indent(value, "    ") for key, value in extras.items()})  # fmt: skip
    (directory / "rules.yaml").write_text(text)
    return load_rules(directory, default_registry())


def approvals(ruleset: RuleSet) -> dict[str, str | None]:
    return {r.name: r.approval.source if r.approval else None for r in ruleset.rules}


def test_a_rule_s_own_approval_and_the_policy_s_first_matching_entry(tmp_path: Path) -> None:
    ruleset = load(
        tmp_path,
        policy="""
        approvals:
          - {severities: [SEV-1], kinds: [scale_out], approval: {timeout_s: 300}}
          - {destructive: true, approval: {approvals: 2, approvers: [dba]}}
        """,
        page="approval: {required: false}",
    )
    assert approvals(ruleset) == {"scale-sev1": "policy.approvals[0]",
                                  "kill-sev2": "policy.approvals[1]", "page-only": None,
                                  "default": None}  # fmt: skip
    kill = ruleset.rule("kill-sev2")
    assert kill is not None and kill.approval is not None
    assert (kill.approval.needed, kill.approval.approvers, kill.approval.timeout_s) == (
        2, ("dba",), 600.0
    )  # fmt: skip
    own = load(tmp_path / "x", scale="approval: {timeout_s: 60, on_timeout: act}")
    scale = own.rule("scale-sev1")
    assert scale is not None and scale.approval is not None
    assert (scale.approval.source, scale.approval.on_timeout) == ("the rule", "act")


def test_a_rule_cannot_turn_down_the_policy_s_approval(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError) as failed:
        load(
            tmp_path,
            policy="approvals: [{severities: [SEV-2], approval: {}}]",
            kill="approval: {required: false}",
        )
    assert str(failed.value).endswith(
        'rule "kill-sev2": field "approval.required" is false, but policy.approvals[0] requires'
        " an approval of this rule; the policy's approvals are a floor no rule lowers."
    )


BAD = {
    "an approval without an action": (
        {"page": "approval: {}"}, 'field "approval" asks an approval, but the rule has no "action"'
    ),
    "a timeout too short": ({"scale": "approval: {timeout_s: 4}"}, "approval.timeout_s"),
    "a timeout past a day": ({"scale": "approval: {timeout_s: 86401}"}, "approval.timeout_s"),
    "three approvers": ({"scale": "approval: {approvals: 3}"}, "approval.approvals"),
    "no approver needed": ({"scale": "approval: {approvals: 0}"}, "approval.approvals"),
    "a strange on_timeout": ({"scale": "approval: {on_timeout: retry}"}, "approval.on_timeout"),
    "an approver with a space": ({"scale": "approval: {approvers: ['a b']}"}, "approval.approvers"),
    "an unknown key": ({"scale": "approval: {who: me}"}, "approval"),
    "a policy entry that names no rule": (
        {"policy": "approvals: [{approval: {}}]"}, "give severities, kinds or destructive"
    ),
    "a policy entry that asks nothing": (
        {"policy": "approvals: [{severities: [SEV-1], approval: {required: false}}]"},
        "approval.required: false asks nothing here",
    ),
    "a policy entry of an unknown kind": (
        {"policy": "approvals: [{kinds: [scale_up], approval: {}}]"},
        'field "approvals[0].kinds[0]" names unknown action kind "scale_up"',
    ),
    "an initiator label that is no label": (
        {"scale": "approval: {initiator_label: 'deployed by'}"}, "approval.initiator_label"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD))
def test_an_approval_that_cannot_hold_is_refused_with_a_sentence(tmp_path: Path, name: str) -> None:
    parts, said = BAD[name]
    with pytest.raises(RuleFileError) as failed:
        load(tmp_path, **parts)
    assert said in str(failed.value)


def test_a_rule_that_asks_no_approval_hashes_as_before_approvals_existed(tmp_path: Path) -> None:
    """Claims stored before an upgrade run after it: the example rules' digests are the ones
    they had before the ``approval`` key existed (measured on the code before it)."""
    ruleset = load_rules(Path(__file__).parents[1] / "rules", default_registry())
    digests = {r.name: r.digest for r in ruleset.rules if r.plan and r.approval is None}
    assert digests == {
        "p95-latency-above-5s": "e0a4da2fd9064caf", "p95-latency-above-2s": "7afc4c107f69591b",
        "cpu-above-85-percent": "5fe119ab8b1d8e8e",
        "memory-above-90-percent-on-a-pod": "29e1915e87d2c6b4",
        "memory-above-90-percent": "367961eb4882be51",
        "db-connections-above-90": "d714beac913bf2b7",
        "long-running-query": "fd4246c128e6a233", "single-pod-failure": "a63e791b1f66ead8",
    }  # fmt: skip
    policy = "approvals: [{severities: [SEV-1], approval: {}}]"
    made = [load(tmp_path / "a"), load(tmp_path / "b", scale="approval: {}"),
            load(tmp_path / "c", policy=policy)]  # fmt: skip
    rules = [ruleset.rule("scale-sev1") for ruleset in made]
    # Asked or not, and by whom: each is another rule for a claim made under it.
    assert len({rule.digest for rule in rules if rule is not None}) == 3


def test_explain_says_what_the_claim_waits_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(tmp_path, scale="approval: {approvers: [sre, alice], timeout_s: 300}")
    labels = ["alertname=A", "namespace=shop", "deployment=api"]
    assert main(["explain", "--rules", str(tmp_path / "rules"), *labels]) == 0
    assert (
        "approval: the claim waits for one approval (sre, alice) as the rule asks, for 300 s;"
        " without them it is escalated; the guards are checked again when it comes."
    ) in capsys.readouterr().out


def pending(approvers: tuple[str, ...] = (), initiator: str = "") -> PendingApproval:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    return PendingApproval(7, 1, "fp", "A", "r", "scale", "shop/Deployment/api", at, at, 1,
                           approvers, initiator, "escalate", "pending", None, "", True)  # fmt: skip


ALICE = Approver("alice", ("sre", "db"), "0" * 64, ())


@pytest.mark.parametrize(
    ("approvers", "initiator", "code"),
    [
        ((), "", None),
        (("sre",), "", None),
        (("alice",), "", None),
        (("dba", "ops"), "", "not_an_approver"),
        (("sre",), "alice", "four_eyes"),
        ((), " ALICE ", "four_eyes"),  # as a person would write it in a label
        ((), "alicia", None),
        (("Alice",), "", "not_an_approver"),  # names are exact: the file is the identity
    ],
)
def test_who_may_answer(approvers: tuple[str, ...], initiator: str, code: str | None) -> None:
    refused = refusal(ALICE, pending(approvers, initiator))
    assert (refused[0] if refused else None) == code


def test_the_readme_s_approval_examples_load(tmp_path: Path) -> None:
    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(), re.S | re.M)
    [policy] = [b for b in blocks if b.startswith("# policy.approvals")]
    [rule] = [b for b in blocks if b.startswith("# a rule of its own")]
    [approvers] = [b for b in blocks if b.startswith("approvers:")]
    text = (
        "policy:\n  namespaces: [shop]\n" + textwrap.indent(policy, "  ")
        + "defaults: {escalation: {SEV-1: ops, SEV-2: ops, SEV-3: ops}}\n"
        + "escalations: {ops: {tiers: [{after_s: 0, notify: [log]}]}}\n"
        + "actions: {recycle-pod: {kind: recycle_pod, params: {min_healthy: '66%'}}}\n"
        + "rules:\n" + textwrap.indent(rule, "  ")
        + "  - {name: default, matchers: [], severity: SEV-3}\n"
    )  # fmt: skip
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(text)
    ruleset = load_rules(tmp_path / "rules", default_registry())
    leak = ruleset.rule("memory-leak-on-a-pod")
    assert leak is not None and leak.approval is not None
    assert (leak.approval.source, leak.approval.initiator_label) == ("the rule", "deployed_by")
    written = tmp_path / "approvers.yaml"
    written.write_text(approvers.replace("5e88…", "5e88" + "0" * 60).replace('"…"', "x" * 16))
    assert [a.name for a in read_approvers(written)] == ["alice", "bob"]
