"""``remediator explain``: the rule an alert meets and, with ``--why``, each earlier rule and
its first failing matcher; the guards serve would apply (scope with serve's own sentence,
opt-in, cooldown, rate limits, budgets, the storm brake), "planned" and never "would run";
strict label arguments; ``--expect`` and its exit status. Every output is pinned whole."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.actions.registry import default_registry
from remediator.cli.explain import OPT_IN_KINDS
from remediator.cli.main import main
from tests.support.service import REPO

RULES = str(REPO / "rules")
LADDER3 = "escalation: sev3-business-hours (ops-channel at 0 s, oncall-primary at 7200 s)"
STORM = (
    "storm brake: at most 10 distinct targets needing action per 60 s; beyond that it"
    " escalates instead of acting."
)
SCALE_PARAMS = 'params: max_replicas=20 step=2 hpa="refuse" scale_in_after_s=1800'
RECYCLE_PARAMS = (
    'params: min_healthy="66%" pick="most_restarts" uid_label="uid" pdb_retry_s=30'
    " allow_daemonset=false allow_delete_fallback=false"
)


def ineffective(target: str, times: int = 3, window_s: str = "3600") -> str:
    return (
        f"limit: at most {times} actions per {window_s} s on {target}; more means the fix does"
        " not help, and it escalates instead."
    )


def planned(kind: str, target: str) -> str:
    return (
        f"decision: planned (dry-run or live is serve's setting): {kind} on {target}, if the"
        " guards above allow it when the alert arrives."
    )


def opted_in(what: str, kind: str) -> str:
    return (
        f"opt-in: {what} must carry the annotation remediator.io/allow naming {kind}; the live"
        " object is read before acting."
    )


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    status = main(["explain", "--rules", RULES, *args])
    out, err = capsys.readouterr()
    return status, out.splitlines(), err


CPU = "llm-research/Deployment/llm-research-api"
POD = "llm-research/Pod/api-7d9f-x2"
DATABASE = "/Database/primary"
EXAMPLES = {
    "a scale-out is planned under its rule's rate limit and the kind's limit": (
        ["alertname=HighCPUUsage", "namespace=llm-research", "deployment=llm-research-api"],
        [
            "rule: cpu-above-85-percent (10-platform.yaml)",
            "severity: SEV-3",
            "action: scale-out-api (scale_out)",
            SCALE_PARAMS,
            f"target: {CPU}",
            "scope: namespace 'llm-research' is in policy.namespaces.",
            STORM,
            f"cooldown: 900 s between two actions on {CPU}.",
            ineffective(CPU),
            "limit: at most 4 actions per 3600 s for this rule.",
            "limit: at most 10 scale_out actions per 3600 s across all rules.",
            opted_in(CPU, "scale_out"),
            "owners: scaled under a KEDA ScaledObject: no; under an HPA: no; when Argo CD or"
            " Flux owns spec.replicas: no; the live objects are read before acting.",
            planned("scale_out", CPU),
            LADDER3,
        ],
    ),
    "a pod recycle spends the global budget and needs its Deployment's opt-in": (
        ["alertname=PodCrashLooping", "namespace=llm-research", "pod=api-7d9f-x2"],
        [
            "rule: single-pod-failure (10-platform.yaml)",
            "severity: SEV-3",
            "action: recycle-pod (recycle_pod)",
            RECYCLE_PARAMS,
            f"target: {POD}",
            "scope: namespace 'llm-research' is in policy.namespaces.",
            STORM,
            f"cooldown: 900 s between two actions on {POD}.",
            ineffective(POD),
            "limit: at most 10 recycle_pod actions per 3600 s across all rules.",
            "limit: at most 20 destructive actions per 3600 s across all rules (the global"
            " budget).",
            opted_in(f"the Deployment that owns {POD}", "recycle_pod"),
            planned("recycle_pod", POD),
            LADDER3,
        ],
    ),
    "a query kill is in scope by configuration and limited per target": (
        ["alertname=LongRunningQuery"],
        [
            "rule: long-running-query (10-platform.yaml)",
            "severity: SEV-3",
            "action: cancel-long-queries (kill_query)",
            'params: engine="postgresql" min_duration_s=300 max_per_run=5 states=["active"]'
            " grace_s=10 terminate=true redact_literals=true",
            f"target: {DATABASE}",
            "scope: Database targets are in scope: only those serve --database names.",
            STORM,
            f"cooldown: 300 s between two actions on {DATABASE}.",
            ineffective(DATABASE),
            f"limit: at most 4 actions per 3600 s on {DATABASE}.",
            "limit: at most 10 kill_query actions per 3600 s across all rules.",
            "limit: at most 20 destructive actions per 3600 s across all rules (the global"
            " budget).",
            planned("kill_query", DATABASE),
            LADDER3,
        ],
    ),
    "a kube-system target is refused with serve's own sentence": (
        ["alertname=HighMemoryUsage", "namespace=kube-system", "pod=coredns-1"],
        [
            "rule: memory-above-90-percent-on-a-pod (10-platform.yaml)",
            "severity: SEV-3",
            "action: recycle-pod (recycle_pod)",
            RECYCLE_PARAMS,
            "target: kube-system/Pod/coredns-1",
            "scope: namespace 'kube-system' is not in policy.namespaces (llm-research).",
            "decision: refused (out_of_scope), escalated: Namespace 'kube-system' is not in the"
            " allow-list, so kube-system/Pod/coredns-1 is not touched.",
            LADDER3,
        ],
    ),
    "a target its labels cannot name is refused as serve refuses it": (
        ["alertname=HighLatency", "severity=critical", "namespace=llm-research"],
        [
            "rule: p95-latency-above-5s (10-platform.yaml)",
            "severity: SEV-2",
            "action: scale-out-api (scale_out)",
            SCALE_PARAMS,
            "target: unresolved",
            "decision: refused (target_unresolved), escalated: No target for scale_out: label"
            " 'deployment' is missing or not a valid object name.",
            "escalation: sev2-oncall (oncall-primary at 0 s)",
        ],
    ),
    "an escalate-only rule pages its whole ladder": (
        ["alertname=APIUnavailable"],
        [
            "rule: api-unavailable (10-platform.yaml)",
            "severity: SEV-1",
            "action: none (escalate only)",
            "decision: refused (escalate_only), escalated: Rule 'api-unavailable' calls for a"
            " human, not an action.",
            "escalation: sev1-ladder (oncall-primary at 0 s, platform-lead at 1800 s,"
            " engineering-manager at 3600 s, vp-engineering at 7200 s)",
        ],
    ),
}


@pytest.mark.parametrize(("labels", "lines"), EXAMPLES.values(), ids=EXAMPLES.keys())
def test_explain_says_the_rule_its_action_the_target_and_every_guard_serve_applies(
    capsys: pytest.CaptureFixture[str], labels: list[str], lines: list[str]
) -> None:
    assert explain(capsys, *labels) == (0, lines, "")


def test_why_names_each_earlier_rule_and_the_first_matcher_it_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, lines, _ = explain(capsys, "--why", "alertname=HighErrorRate", "severity=warning")
    assert (status, lines[:5]) == (
        0,
        [
            'skipped: api-unavailable (10-platform.yaml): alertname="APIUnavailable" does not'
            ' match alertname="HighErrorRate"',
            'skipped: database-primary-down (10-platform.yaml): alertname="DatabasePrimaryDown"'
            ' does not match alertname="HighErrorRate"',
            'skipped: error-rate-above-5-percent (10-platform.yaml): severity="critical" does'
            ' not match severity="warning"',
            'skipped: p95-latency-above-5s (10-platform.yaml): alertname="HighLatency" does'
            ' not match alertname="HighErrorRate"',
            "rule: error-rate-above-1-percent (10-platform.yaml)",
        ],
    )


def test_why_says_when_the_label_a_matcher_needs_was_not_given(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, lines, _ = explain(capsys, "--why", "alertname=HighMemoryUsage", "namespace=llm-research")
    skipped = [line for line in lines if line.startswith("skipped: memory")]
    assert skipped == [
        'skipped: memory-above-90-percent-on-a-pod (10-platform.yaml): pod=~".+" does not'
        ' match pod="" (not given)'
    ]
    assert "rule: memory-above-90-percent (10-platform.yaml)" in lines


def test_without_why_no_earlier_rule_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    _, lines, _ = explain(capsys, "alertname=HighErrorRate", "severity=warning")
    assert lines[0] == "rule: error-rate-above-1-percent (10-platform.yaml)"


REFUSED = {
    "a bare name": (
        ["alertname"],
        "label argument 'alertname' has no '=': give each label as name=value, as in"
        " alertname=HighCPUUsage.",
    ),
    "a matcher in braces": (
        ['{alertname="HighCPUUsage"}'],
        "label argument '{alertname=\"HighCPUUsage\"}' does not start with a label name"
        " ([a-zA-Z_][a-zA-Z0-9_]*): give each label as name=value, without braces or quotes.",
    ),
    "a name Prometheus does not allow": (
        ["alert-name=HighCPUUsage"],
        "label argument 'alert-name=HighCPUUsage' does not start with a label name"
        " ([a-zA-Z_][a-zA-Z0-9_]*): give each label as name=value, without braces or quotes.",
    ),
    "a quoted value": (
        ['alertname="HighCPUUsage"'],
        "label 'alertname' has a quoted value: give it unquoted, as alertname=HighCPUUsage.",
    ),
    "a repeated name": (
        ["alertname=HighCPUUsage", "alertname=HighLatency"],
        "label 'alertname' is given twice.",
    ),
    "no labels at all": (
        ["--expect", "rule=default", "alertname=HighCPUUsage"],
        "explain needs the alert's labels, as name=value, before any --expect.",
    ),
    "an --expect key it does not know": (
        ["alertname=X", "--expect", "receiver=pager"],
        "--expect 'receiver=pager' is not rule=NAME, severity=SEV-N or action=NAME (labels go"
        " before --expect).",
    ),
    "an --expect key given twice": (
        ["alertname=X", "--expect", "rule=default", "--expect", "rule=default"],
        "--expect gives rule twice.",
    ),
    "an --expect without a value": (
        ["alertname=X", "--expect", "rule="],
        "--expect 'rule=' is not rule=NAME, severity=SEV-N or action=NAME (labels go before"
        " --expect).",
    ),
    "an --expect rule that does not exist": (
        ["alertname=X", "--expect", "rule=cpu-above-58-percent"],
        "--expect rule 'cpu-above-58-percent' names no rule of the rule set.",
    ),
    "an --expect severity that does not exist": (
        ["alertname=X", "--expect", "severity=critical"],
        "--expect severity 'critical' is not SEV-1, SEV-2 or SEV-3.",
    ),
    "an --expect action that no rule names": (
        ["alertname=X", "--expect", "action=scale_out"],
        "--expect action 'scale_out' is no action of the rule set's rules, nor none.",
    ),
}


@pytest.mark.parametrize(("args", "sentence"), REFUSED.values(), ids=REFUSED.keys())
def test_an_argument_that_is_not_name_value_is_refused_with_one_sentence_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], sentence: str
) -> None:
    assert explain(capsys, *args) == (2, [], f"remediator: {sentence}\n")


EXPECTATIONS = {
    "all three as the alert meets them": (
        ["rule=p95-latency-above-2s", "severity=SEV-3", "action=scale-out-api"],
        0,
        ["expect: ok: rule=p95-latency-above-2s severity=SEV-3 action=scale-out-api"],
    ),
    "a subset, given in any order": (
        ["action=scale-out-api", "severity=SEV-3"],
        0,
        ["expect: ok: severity=SEV-3 action=scale-out-api"],
    ),
    "a rule and severity the alert does not meet": (
        ["rule=p95-latency-above-5s", "severity=SEV-2"],
        1,
        [
            "expect: FAILED",
            "  expected: rule=p95-latency-above-5s severity=SEV-2",
            "  got:      rule=p95-latency-above-2s severity=SEV-3",
        ],
    ),
    "no action where the rule has one": (
        ["action=none"],
        1,
        ["expect: FAILED", "  expected: action=none", "  got:      action=scale-out-api"],
    ),
}


@pytest.mark.parametrize(
    ("expect", "status", "tail"), EXPECTATIONS.values(), ids=EXPECTATIONS.keys()
)
def test_expect_exits_1_and_shows_expected_against_got_when_any_differs(
    capsys: pytest.CaptureFixture[str], expect: list[str], status: int, tail: list[str]
) -> None:
    labels = ["alertname=HighLatency", "namespace=llm-research", "deployment=api"]
    got, lines, err = explain(capsys, *labels, "--expect", *expect)
    assert (got, lines[-len(tail) :], err) == (status, tail, "")
    assert lines[0] == "rule: p95-latency-above-2s (10-platform.yaml)"


def test_expect_may_be_repeated_one_key_each(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["alertname=APIUnavailable", "--expect", "severity=SEV-1", "--expect", "action=none"]
    status, lines, _ = explain(capsys, *args)
    assert (status, lines[-1]) == (0, "expect: ok: severity=SEV-1 action=none")


def test_the_real_command_line_exits_1_on_a_mismatch() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "remediator", "explain", "--rules", RULES,
         "alertname=HighErrorRate", "severity=critical", "--expect", "severity=SEV-3"],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout.splitlines()[-3:], result.stderr) == (
        1,
        ["expect: FAILED", "  expected: severity=SEV-3", "  got:      severity=SEV-2"],
        "",
    )


RULE_FILE = """\
policy:
  namespaces: {namespaces}
  require_opt_in: false
  storm: {{max_targets: 3, window_s: 30}}
escalations:
  human: {{tiers: [{{after_s: 0, notify: [pager, chat]}}, {{after_s: 90.5, notify: [lead]}}]}}
defaults:
  cooldown_s: 0
  ineffective_after: {{max_actions: 5, window_s: 600}}
  escalation: {{SEV-1: human, SEV-2: human, SEV-3: human}}
rules:
  - name: note-it
    matchers: ['{{alertname="Noted", team=~"a|b"}}']
    severity: SEV-2
    action: {{kind: log_only, params: {{note: "see runbook 7"}}}}
    target: {{kind: Deployment, namespace: "{{namespace}}", name: "{{deployment}}"}}
    rate_limit: {{max_actions: 2, window_s: 0.5}}
  - name: catch-all
    matchers: []
    severity: SEV-3
"""


def rules_in(tmp_path: Path, namespaces: str) -> str:
    (tmp_path / "10-rules.yaml").write_text(RULE_FILE.format(namespaces=namespaces))
    return str(tmp_path)


def test_a_rule_set_of_its_own_shows_its_limits_and_no_opt_in_needed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    labels = ["alertname=Noted", "team=b", "namespace=ns", "deployment=web"]
    assert main(["explain", "--rules", rules_in(tmp_path, "[ns]"), *labels]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "rule: note-it (10-rules.yaml)",
        "severity: SEV-2",
        "action: note-it.log_only (log_only)",
        'params: note="see runbook 7"',
        "target: ns/Deployment/web",
        "scope: namespace 'ns' is in policy.namespaces.",
        "storm brake: at most 3 distinct targets needing action per 30 s; beyond that it"
        " escalates instead of acting.",
        "cooldown: none.",
        ineffective("ns/Deployment/web", times=5, window_s="600"),
        "limit: at most 2 actions per 0.5 s for this rule.",
        planned("log_only", "ns/Deployment/web"),
        "escalation: human (pager and chat at 0 s, lead at 90.5 s)",
    ]


def test_an_empty_namespace_list_is_said_to_allow_no_action_anywhere(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    labels = ["alertname=Noted", "team=a", "namespace=ns", "deployment=web"]
    assert main(["explain", "--rules", rules_in(tmp_path, "[]"), "--why", *labels]) == 0
    assert capsys.readouterr().out.splitlines()[4:7] == [
        "target: ns/Deployment/web",
        "scope: namespace 'ns' is not in policy.namespaces (none: no action runs anywhere).",
        "decision: refused (out_of_scope), escalated: Namespace 'ns' is not in the allow-list,"
        " so ns/Deployment/web is not touched.",
    ]


def test_why_shows_a_matcher_of_a_braced_item_as_the_one_that_failed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["--why", "alertname=Noted", "team=c"]
    assert main(["explain", "--rules", rules_in(tmp_path, "[ns]"), *args]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        'skipped: note-it (10-rules.yaml): team=~"a|b" does not match team="c"',
        "rule: catch-all (10-rules.yaml)",
    ]


def test_explain_names_the_opt_in_for_exactly_the_actions_whose_precheck_reads_it() -> None:
    reads = {
        kind
        for kind, action in default_registry().items()
        if "opt_in.decide(" in inspect.getsource(sys.modules[type(action).__module__])
    }
    assert reads == OPT_IN_KINDS
