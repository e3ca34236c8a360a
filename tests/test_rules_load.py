"""Rule loading: every broken rule directory fails with one exact sentence naming the file,
the rule (or section) and the field, and a bad directory never starts the service."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from remediator.actions.registry import default_registry
from remediator.app import init_app
from remediator.cli import main
from remediator.errors import RuleFileError
from remediator.ruleset.load import load_rules
from remediator.settings import Settings

POLICY = """\
defaults:
  escalation: {SEV-1: page, SEV-2: page, SEV-3: ticket}
escalations:
  page:
    tiers: [{after_s: 0, notify: [oncall]}]
  ticket:
    tiers: [{after_s: 0, notify: [ops]}]
"""

CATCH_ALL = """\
  - name: default
    match: []
    severity: SEV-3
"""


def rules(*bodies: str, catch_all: bool = True, head: str = "") -> str:
    """A rule file: ``head`` sections, then ``rules:`` with each body (a rule written at
    column 0) indented as a list item, then the catch-all."""
    items = [textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") for body in bodies]
    items = ["  - " + item[4:] + "\n" for item in items]
    return textwrap.dedent(head) + "rules:\n" + "".join(items) + (CATCH_ALL if catch_all else "")


CPU = """\
name: cpu
match: ['alertname="HighCPUUsage"']
severity: SEV-3
"""

SCALE_OUT = """\
action: {kind: log_only, params: {note: scale out}}
target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}
"""


def cpu(extra: str = "", *, base: str = CPU) -> str:
    return base + textwrap.dedent(extra)


BROKEN = [
    pytest.param(
        {"00-policy.yaml": POLICY + "rulez: []\n", "10-rules.yaml": rules()},
        '00-policy.yaml: section "rulez" is not a known section (did you mean "rules"?).',
        id="unknown top-level key",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY, "10-rules.yaml": rules(cpu("cooldwn_s: 60\n"))},
        '10-rules.yaml: rule "cpu": field "cooldwn_s" is not a known key'
        ' (did you mean "cooldown_s"?).',
        id="unknown key in a rule",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(base=CPU.replace("SEV-3", "SEV-4"))),
        },
        '10-rules.yaml: rule "cpu": field "severity" must be SEV-1, SEV-2 or SEV-3, not "SEV-4".',
        id="severity SEV-4",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY, "10-rules.yaml": rules(cpu(base=CPU.replace('="', '=="')))},
        '10-rules.yaml: rule "cpu": field "match[0]" holds alertname=="HighCPUUsage", which is'
        " not a valid matcher: an unquoted value may not contain spaces, quotes or braces;"
        " quote it.",
        id="matcher with a doubled operator",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(base=CPU.replace('alertname="', 'alertname "'))),
        },
        '10-rules.yaml: rule "cpu": field "match[0]" holds alertname "HighCPUUsage", which is'
        ' not a valid matcher: it is not of the form name="value", name!="value", name=~"re"'
        ' or name!~"re".',
        id="matcher without an operator",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(base=CPU.replace('="HighCPUUsage"', '=~"High(CPU"'))),
        },
        '10-rules.yaml: rule "cpu": field "match[0]" holds alertname=~"High(CPU", which is not'
        " a valid matcher: its regular expression does not compile (missing ), unterminated"
        " subpattern at position 4).",
        id="regex that does not compile",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(
                cpu(
                    """\
                    action: scale-out
                    target: {kind: Deployment, namespace: "{namespace}", name: "{deployment}"}
                    """
                ),
                head="actions:\n  recycle-pod: {kind: log_only}\n",
            ),
        },
        '10-rules.yaml: rule "cpu": field "action" names undefined action "scale-out"'
        " (declared: recycle-pod).",
        id="undefined named action",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(SCALE_OUT.replace("log_only", "reboot_node"))),
        },
        '10-rules.yaml: rule "cpu": field "action.kind" names unknown action kind "reboot_node"'
        " (known: kill_query, log_only, recycle_pod, scale_out).",
        id="unknown action kind inline",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY + "actions:\n  scale-out: {kind: reboot_node}\n",
            "10-rules.yaml": rules(),
        },
        '00-policy.yaml: action "scale-out": field "kind" names unknown action kind'
        ' "reboot_node" (known: kill_query, log_only, recycle_pod, scale_out).',
        id="unknown action kind in a declared action",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(SCALE_OUT.replace("note: scale out", "replicas: 2"))),
        },
        '10-rules.yaml: rule "cpu": field "action.params.replicas" is not a known key'
        " (known: note).",
        id="unknown param for log_only",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY
            + "actions:\n  scale-out: {kind: log_only, params: {note: [a, b]}}\n",
            "10-rules.yaml": rules(),
        },
        '00-policy.yaml: action "scale-out": field "params.note" must be a string, not a list.',
        id="log_only param of the wrong type",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu("action: {kind: log_only}\n")),
        },
        '10-rules.yaml: rule "cpu": field "target" is required because the rule has an "action".',
        id="action without target",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu("target: {kind: Pod, name: '{pod}'}\n")),
        },
        '10-rules.yaml: rule "cpu": field "target" is set, but the rule has no "action" to'
        " act on it.",
        id="target without action",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(SCALE_OUT.replace('"{deployment}"', '"{deployment"'))),
        },
        '10-rules.yaml: rule "cpu": field "target.name" is "{deployment", but braces may only'
        " enclose a label name, as in {namespace}.",
        id="template with a stray brace",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(SCALE_OUT.replace('"{deployment}"', '"API {deployment}"'))),
        },
        '10-rules.yaml: rule "cpu": field "target.name" is "API {deployment}", which can never'
        " give a valid object name (lowercase letters, digits, '-' and '.').",
        id="template that can never give an object name",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY, "10-rules.yaml": rules(cpu("escalation: pager\n"))},
        '10-rules.yaml: rule "cpu": field "escalation" names undefined escalation policy'
        ' "pager" (defined: page, ticket).',
        id="undefined escalation policy",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY.replace("SEV-1: page, ", ""),
            "10-rules.yaml": rules(cpu(base=CPU.replace("SEV-3", "SEV-1"))),
        },
        '10-rules.yaml: rule "cpu": field "escalation" is missing and defaults.escalation'
        " names no policy for SEV-1.",
        id="no escalation policy for a severity",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-platform.yaml": rules(CPU, catch_all=False),
            "20-team.yaml": rules(CPU),
        },
        '20-team.yaml: rule "cpu": field "name" is already used by a rule in 10-platform.yaml.',
        id="duplicate rule name across two files",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY, "10-rules.yaml": rules(cpu("severity: SEV-2\n"))},
        '10-rules.yaml: rule "cpu": field "severity" appears twice, on lines 4 and 5.',
        id="duplicate YAML key",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY + "policy: {namespaces: [llm-research]}\n",
            "10-rules.yaml": rules(head="policy: {namespaces: [payments]}\n"),
        },
        '10-rules.yaml: section "policy" is already defined in 00-policy.yaml.',
        id="policy defined in two files",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY + "actions:\n  recycle-pod: {kind: log_only}\n",
            "10-rules.yaml": rules(head="actions:\n  recycle-pod: {kind: log_only}\n"),
        },
        '10-rules.yaml: action "recycle-pod" is already declared in 00-policy.yaml.',
        id="action declared in two files",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY, "10-rules.yaml": rules(CPU, catch_all=False)},
        '10-rules.yaml: rule "cpu": field "match" is not empty, but the last rule must be a'
        ' catch-all with "match: []".',
        id="no catch-all",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": "rules:\n" + CATCH_ALL,
            "20-more.yaml": rules(CPU, catch_all=False),
        },
        '10-rules.yaml: rule "default": field "match" is empty, so the rule matches every'
        ' alert and rule "cpu" (20-more.yaml) after it can never match; put the catch-all'
        " last.",
        id="catch-all not last",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(base=CPU.replace("\"']", "\"'"))),
        },
        "10-rules.yaml is not valid YAML at line 4, column 5: expected ',' or ']', but got"
        " '<scalar>' (while parsing a flow sequence started on line 3).",
        id="YAML syntax error",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY
            + "sinks:\n  oncall: {type: webhook, url: 'http://127.0.0.1:1/hook'}\n",
            "10-rules.yaml": rules(),
        },
        '00-policy.yaml: escalation policy "ticket": field "tiers[0].notify[0]" names'
        ' undefined sink "ops" (defined: oncall).',
        id="escalation to an undefined sink",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY + "sinks:\n  oncall: {type: pager, url: x}\n",
            "10-rules.yaml": rules(),
        },
        '00-policy.yaml: section "sinks": field "oncall" has type "pager", which must be one'
        " of pagerduty, slack, opsgenie, webhook.",
        id="sink of an unknown type",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY, "10-rules.yaml": "- name: cpu\n"},
        "10-rules.yaml must be a mapping of sections (policy, defaults, actions, escalations,"
        " sinks, rules), not a list.",
        id="file that is a list",
    ),
    pytest.param(
        {"README.md": "# rules go here\n"},
        "rules directory <dir> holds no rule files (*.yaml or *.yml).",
        id="empty rules directory",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY},
        "rules directory <dir> has rule files but no rule; at least a catch-all rule with"
        ' "match: []" is needed.',
        id="rule files without a rule",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY, "10-rules.yaml": rules(cpu("cooldown_s: -5\n"))},
        '10-rules.yaml: rule "cpu": field "cooldown_s" must be greater than or equal to 0, not -5.',
        id="negative cooldown",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu("rate_limit: {max_actions: 0, window_s: 3600}\n")),
        },
        '10-rules.yaml: rule "cpu": field "rate_limit.max_actions" must be greater than or'
        " equal to 1, not 0.",
        id="rate limit of zero actions",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(base=CPU.replace("name: cpu", "name: High CPU!"))),
        },
        '10-rules.yaml: rule "High CPU!": field "name" must be 1 to 63 lowercase letters,'
        " digits, '.', '_' or '-', starting and ending with a letter or digit, not"
        ' "High CPU!".',
        id="rule name with invalid characters",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY, "10-rules.yaml": rules("match: []\nseverity: SEV-3\n")},
        '10-rules.yaml: rule #1: field "name" is required.',
        id="rule without a name",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY,
            "10-rules.yaml": rules(cpu(base=CPU.replace("['alertname=\"HighCPUUsage\"']", "x"))),
        },
        '10-rules.yaml: rule "cpu": field "match" must be a list, not a string.',
        id="match that is not a list",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY.replace("SEV-3: ticket", "SEV-4: ticket"), "10-r.yaml": rules()},
        '00-policy.yaml: defaults: field "escalation" has key "SEV-4", which must be SEV-1,'
        " SEV-2 or SEV-3.",
        id="defaults for an unknown severity",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY + "  pager: {tiers: []}\n", "10-rules.yaml": rules()},
        '00-policy.yaml: escalation policy "pager": field "tiers" must have at least 1 item.',
        id="escalation policy without tiers",
    ),
    pytest.param(
        {
            "00-policy.yaml": POLICY
            + "policy:\n  action_limits: {reboot_node: {max_actions: 1, window_s: 60}}\n",
            "10-rules.yaml": rules(),
        },
        '00-policy.yaml: policy: field "action_limits" names unknown action kind'
        ' "reboot_node" (known: kill_query, log_only, recycle_pod, scale_out).',
        id="policy limit for an unknown action kind",
    ),
    pytest.param(
        {"00-policy.yaml": POLICY + "policy: {namespace: [llm-research]}\n", "10-r.yaml": rules()},
        '00-policy.yaml: policy: field "namespace" is not a known key'
        ' (did you mean "namespaces"?).',
        id="unknown key in the policy",
    ),
]


def write_rules(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_the_base_of_the_broken_cases_loads(tmp_path: Path) -> None:
    directory = write_rules(
        tmp_path / "rules", {"00-policy.yaml": POLICY, "10-rules.yaml": rules(cpu(SCALE_OUT))}
    )
    ruleset = load_rules(directory, default_registry())
    assert [rule.name for rule in ruleset.rules] == ["cpu", "default"]


def test_there_are_enough_broken_cases() -> None:
    assert len(BROKEN) >= 14


@pytest.mark.parametrize(("files", "message"), BROKEN)
def test_a_broken_rule_directory_fails_with_one_exact_sentence(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    directory = write_rules(tmp_path / "rules", files)
    with pytest.raises(RuleFileError) as raised:
        load_rules(directory, default_registry())
    assert str(raised.value) == message.replace("<dir>", str(directory))


def test_a_missing_rules_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(RuleFileError) as raised:
        load_rules(tmp_path / "nowhere", default_registry())
    assert str(raised.value) == f"rules directory {tmp_path / 'nowhere'} does not exist."


def test_remediator_check_prints_the_error_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_rules(
        tmp_path / "rules", {"00-policy.yaml": POLICY, "10-rules.yaml": rules(cpu("foo: 1\n"))}
    )
    assert main(["check", "--rules", str(directory)]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        'remediator: 10-rules.yaml: rule "cpu": field "foo" is not a known key (known: name,'
        " description, match, severity, action, target, cooldown_s, rate_limit,"
        " target_rate_limit, verify_within_s, escalation).\n"
    )


def test_remediator_check_accepts_a_good_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_rules(
        tmp_path / "rules", {"00-policy.yaml": POLICY, "10-rules.yaml": rules(cpu(SCALE_OUT))}
    )
    assert main(["check", "--rules", str(directory)]) == 0
    assert capsys.readouterr().out.startswith("ok: 2 rules (1 with actions) in 2 files,")


def test_a_bad_rule_directory_never_starts_the_service(tmp_path: Path) -> None:
    directory = write_rules(
        tmp_path / "rules", {"00-policy.yaml": POLICY, "10-rules.yaml": rules(CPU, CPU)}
    )
    settings = Settings(rules_dir=directory, state_url=f"sqlite:///{tmp_path / 'state.db'}")
    with pytest.raises(RuleFileError, match=r'^10-rules\.yaml: rule "cpu": field "name" is'):
        init_app(settings)
    assert not (tmp_path / "state.db").exists()
