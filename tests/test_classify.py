"""Classification: the example rules encode the seed's alert table, first match wins across
files, the equality index tests only the rules an alert can match (and agrees with a linear
scan), and label values reach a target only when they are safe object names."""

from __future__ import annotations

import random
import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from remediator.actions.registry import default_registry
from remediator.core.model import Severity
from remediator.ruleset.index import RuleIndex
from remediator.ruleset.load import load_rules
from remediator.ruleset.matchers import parse_matcher
from remediator.ruleset.rules import Rule, RuleSet
from remediator.ruleset.schema import PolicySpec
from remediator.ruleset.template import Template
from tests.support.rule_texts import POLICY

EXAMPLE_RULES = Path(__file__).resolve().parents[1] / "rules"
NS = "llm-research"


def load(directory: Path) -> RuleSet:
    return load_rules(directory, default_registry())


def write_rules(directory: Path, files: Mapping[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.fixture(scope="module")
def example() -> RuleSet:
    return load(EXAMPLE_RULES)


# --- (a) the example rules: the seed's alert table and SEV definitions --------------------

SEED_ALERTS = [
    # (labels, rule, severity, runbook action or None (escalate only), target key or None)
    pytest.param(
        {"alertname": "APIUnavailable", "severity": "critical", "namespace": NS},
        "api-unavailable",
        Severity.SEV1,
        None,
        None,
        id="API unavailable is SEV-1, escalate only",
    ),
    pytest.param(
        {"alertname": "DatabasePrimaryDown", "severity": "critical", "database": "orders"},
        "database-primary-down",
        Severity.SEV1,
        None,
        None,
        id="database primary down is SEV-1, escalate only",
    ),
    pytest.param(
        {"alertname": "HighErrorRate", "severity": "critical", "namespace": NS},
        "error-rate-above-5-percent",
        Severity.SEV2,
        None,
        None,
        id="error rate above 5 percent is SEV-2, escalate only",
    ),
    pytest.param(
        {"alertname": "HighErrorRate", "severity": "warning", "namespace": NS},
        "error-rate-above-1-percent",
        Severity.SEV3,
        None,
        None,
        id="error rate above 1 percent is SEV-3, escalate only",
    ),
    pytest.param(
        {
            "alertname": "HighLatency",
            "severity": "critical",
            "namespace": NS,
            "deployment": "llm-research-api",
        },
        "p95-latency-above-5s",
        Severity.SEV2,
        "scale-out-api",
        f"{NS}/Deployment/llm-research-api",
        id="P95 latency above 5 s is SEV-2, scale out",
    ),
    pytest.param(
        {
            "alertname": "HighLatency",
            "severity": "warning",
            "namespace": NS,
            "deployment": "llm-research-api",
        },
        "p95-latency-above-2s",
        Severity.SEV3,
        "scale-out-api",
        f"{NS}/Deployment/llm-research-api",
        id="P95 latency above 2 s is SEV-3, scale out",
    ),
    pytest.param(
        {"alertname": "HighCPUUsage", "namespace": NS, "deployment": "llm-research-worker"},
        "cpu-above-85-percent",
        Severity.SEV3,
        "scale-out-api",
        f"{NS}/Deployment/llm-research-worker",
        id="CPU above 85 percent is SEV-3, scale out",
    ),
    pytest.param(
        {
            "alertname": "HighMemoryUsage",
            "namespace": NS,
            "deployment": "llm-research-api",
            "pod": "llm-research-api-7d9f8-x2k4q",
        },
        "memory-above-90-percent-on-a-pod",
        Severity.SEV3,
        "recycle-pod",
        f"{NS}/Pod/llm-research-api-7d9f8-x2k4q",
        id="memory above 90 percent on a pod is SEV-3, recycle the pod",
    ),
    pytest.param(
        {"alertname": "HighMemoryUsage", "namespace": NS, "deployment": "llm-research-api"},
        "memory-above-90-percent",
        Severity.SEV3,
        "scale-out-api",
        f"{NS}/Deployment/llm-research-api",
        id="memory above 90 percent without a pod is SEV-3, scale out",
    ),
    pytest.param(
        {"alertname": "DBConnectionsHigh", "database": "orders"},
        "db-connections-above-90",
        Severity.SEV3,
        "release-leaked-connections",
        "/Database/primary",
        id="DB connections above 90 is SEV-3, release leaked connections",
    ),
    pytest.param(
        {"alertname": "LongRunningQuery", "datname": "appdb"},
        "long-running-query",
        Severity.SEV3,
        "cancel-long-queries",
        "/Database/primary",
        id="a long-running query is SEV-3, cancel it",
    ),
    pytest.param(
        {"alertname": "DiskUsageHigh", "namespace": NS, "instance": "db-0"},
        "disk-above-80-percent",
        Severity.SEV3,
        None,
        None,
        id="disk above 80 percent is SEV-3, escalate only",
    ),
    pytest.param(
        {"alertname": "PodCrashLooping", "namespace": NS, "pod": "llm-research-api-abc12"},
        "single-pod-failure",
        Severity.SEV3,
        "recycle-pod",
        f"{NS}/Pod/llm-research-api-abc12",
        id="a crash-looping pod is SEV-3, recycle the pod",
    ),
    pytest.param(
        {"alertname": "PodNotReady", "namespace": NS, "pod": "llm-research-api-abc12"},
        "single-pod-failure",
        Severity.SEV3,
        "recycle-pod",
        f"{NS}/Pod/llm-research-api-abc12",
        id="a pod that is not ready is SEV-3, recycle the pod",
    ),
    pytest.param(
        {"alertname": "SomethingNobodyExpected", "namespace": NS},
        "default",
        Severity.SEV3,
        None,
        None,
        id="an unknown alert falls to the SEV-3 catch-all",
    ),
    pytest.param(
        {},
        "default",
        Severity.SEV3,
        None,
        None,
        id="an alert without labels falls to the catch-all",
    ),
]


@pytest.mark.parametrize(("labels", "rule", "severity", "action", "target"), SEED_ALERTS)
def test_a_seed_alert_gets_the_severity_and_runbook_action_the_seed_gives_it(
    example: RuleSet,
    labels: dict[str, str],
    rule: str,
    severity: Severity,
    action: str | None,
    target: str | None,
) -> None:
    matched = example.classify(labels)
    plan = matched.plan
    rendered = plan.target.render(labels).key if plan is not None else None
    assert (matched.name, matched.severity, plan and plan.name, rendered) == (
        rule,
        severity,
        action,
        target,
    )


def test_the_example_rules_load_with_a_catch_all_last_and_escalations_by_severity() -> None:
    ruleset = load(EXAMPLE_RULES)
    assert ruleset.files == ("00-policy.yaml", "10-platform.yaml")
    assert ruleset.rules[-1].name == "default"
    assert not ruleset.rules[-1].matchers
    assert {(r.severity, r.escalation) for r in ruleset.rules} == {
        (Severity.SEV1, "sev1-ladder"),
        (Severity.SEV2, "sev2-oncall"),
        (Severity.SEV3, "sev3-business-hours"),
    }
    assert set(ruleset.escalations) == {"sev1-ladder", "sev2-oncall", "sev3-business-hours"}


def test_example_runbook_actions_use_the_real_kubernetes_actions() -> None:
    plans = {r.plan.name: r.plan.kind for r in load(EXAMPLE_RULES).rules if r.plan is not None}
    assert plans == {
        "scale-out-api": "scale_out",
        "recycle-pod": "recycle_pod",
        "cancel-long-queries": "kill_query",
        "release-leaked-connections": "kill_query",
        "roll-back-release": "rollback",
    }


def test_example_rule_limits_and_cooldowns_come_from_the_rule_or_the_defaults() -> None:
    rules = {r.name: r for r in load(EXAMPLE_RULES).rules}
    assert rules["p95-latency-above-5s"].cooldown_s == 600
    assert rules["p95-latency-above-2s"].cooldown_s == 900
    assert rules["cpu-above-85-percent"].rate_limit is not None
    assert (
        rules["cpu-above-85-percent"].rate_limit.max_actions,
        rules["cpu-above-85-percent"].rate_limit.window_s,
    ) == (4, 3600)
    assert rules["default"].verify_within_s == 300


# --- (b) first match wins, across files in name order --------------------------------------


def test_the_first_matching_rule_wins_across_files_in_name_order(tmp_path: Path) -> None:
    later = "rules:\n  - {name: later, match: ['alertname=~\"Disk.*\"'], severity: SEV-1}\n"
    earlier = (
        "rules:\n  - {name: earlier, match: ['alertname=\"DiskUsageHigh\"'], severity: SEV-2}\n"
    )
    catch_all = "rules:\n  - {name: default, match: [], severity: SEV-3}\n"
    # Written out of order: the load order is the files' names, not their creation.
    directory = write_rules(tmp_path / "rules", {"99-default.yaml": catch_all})
    write_rules(directory, {"20-later.yaml": later, "10-earlier.yaml": earlier})
    write_rules(directory, {"00-policy.yaml": POLICY})
    ruleset = load(directory)
    assert ruleset.files == (
        "00-policy.yaml",
        "10-earlier.yaml",
        "20-later.yaml",
        "99-default.yaml",
    )
    assert ruleset.classify({"alertname": "DiskUsageHigh"}).name == "earlier"
    assert ruleset.classify({"alertname": "DiskFull"}).name == "later"
    assert ruleset.classify({"alertname": "Other"}).name == "default"


def test_an_earlier_regex_rule_beats_a_later_indexed_equality_rule(tmp_path: Path) -> None:
    rules = textwrap.dedent(
        """\
        rules:
          - {name: any-disk, match: ['alertname=~"Disk.+"'], severity: SEV-2}
          - {name: disk-high, match: ['alertname="DiskUsageHigh"'], severity: SEV-1}
          - {name: default, match: [], severity: SEV-3}
        """
    )
    directory = write_rules(tmp_path / "rules", {"00-policy.yaml": POLICY, "10-r.yaml": rules})
    assert load(directory).classify({"alertname": "DiskUsageHigh"}).name == "any-disk"


# --- (c) the index: 10 000 rules cost about what 10 do -----------------------------------


def rule(position: int, name: str, *matchers: str) -> Rule:
    return Rule(
        name=name,
        file="10-many.yaml",
        position=position,
        matchers=tuple(parse_matcher(m) for m in matchers),
        severity=Severity.SEV3,
        plan=None,
        cooldown_s=900.0,
        rate_limit=None,
        target_rate_limit=None,
        ineffective_after=None,
        verify_within_s=300.0,
        escalation="ticket",
    )


@pytest.fixture(scope="module")
def ten_thousand() -> RuleSet:
    """10 000 rules, each with its own alertname, then the catch-all. Built directly: the
    linear-scan test below goes through load_rules with a few hundred rules."""
    rules = [rule(i, f"a{i}", f'alertname="A{i}"') for i in range(10_000)]
    rules.append(rule(10_000, "default"))
    ruleset = RuleSet(
        rules=tuple(rules), policy=PolicySpec(), escalations={}, hash="test", files=()
    )
    return ruleset


@pytest.fixture
def rule_tests(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the rules ``Rule.matches`` is called on; the real method still runs."""
    tested: list[str] = []
    matches = Rule.matches

    def counting(rule: Rule, labels: Mapping[str, str]) -> bool:
        tested.append(rule.name)
        return matches(rule, labels)

    monkeypatch.setattr(Rule, "matches", counting)
    yield tested


def test_classifying_among_ten_thousand_rules_tests_only_the_indexed_candidates(
    ten_thousand: RuleSet, rule_tests: list[str]
) -> None:
    assert len(ten_thousand.rules) == 10_001
    index = RuleIndex(ten_thousand.rules)
    labels = {"alertname": "A7345", "namespace": NS, "severity": "warning"}
    assert index.candidates(labels) == [7345, 10_000]
    assert ten_thousand.classify(labels).name == "a7345"
    assert rule_tests == ["a7345"]


def test_an_unknown_alert_among_ten_thousand_rules_tests_only_the_catch_all(
    ten_thousand: RuleSet, rule_tests: list[str]
) -> None:
    labels = {"alertname": "NotInTheFile", "pod": "api-1"}
    assert len(RuleIndex(ten_thousand.rules).candidates(labels)) <= 2
    assert ten_thousand.classify(labels).name == "default"
    assert rule_tests == ["default"]


ALERTNAMES = ["HighCPUUsage", "HighLatency", "DiskUsageHigh", "PodCrashLooping", "X"]
SEVERITIES = ["critical", "warning", "info"]
TEAMS = ["db", "api", "web"]


def random_matcher(rng: random.Random) -> str:
    label = rng.choice(["alertname", "severity", "team", "pod"])
    values = {"alertname": ALERTNAMES, "severity": SEVERITIES, "team": TEAMS, "pod": ["p-1"]}
    value = rng.choice([*values[label], ""])
    choice = rng.random()
    if choice < 0.5:
        return f'{label}="{value}"'
    if choice < 0.65:
        return f'{label}!="{value}"'
    if choice < 0.85:
        return f'{label}=~"{value[:3]}.*"' if value else f'{label}=~".+"'
    return f'{label}!~"{value}|z.*"'


def random_labels(rng: random.Random) -> dict[str, str]:
    choices = {"alertname": ALERTNAMES, "severity": SEVERITIES, "team": TEAMS, "pod": ["p-1"]}
    labels = {name: rng.choice(values) for name, values in choices.items() if rng.random() < 0.8}
    if rng.random() < 0.1:
        labels["team"] = ""
    return labels


def test_the_index_agrees_with_a_linear_scan_for_random_rules_and_alerts(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    lines = ["rules:"]
    for i in range(300):
        matchers = [random_matcher(rng) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.7:  # as in real rule files, most rules name their alert
            matchers.insert(rng.randint(0, len(matchers)), f'alertname="{rng.choice(ALERTNAMES)}"')
        quoted = ", ".join(f"'{m}'" for m in matchers)
        lines.append(f"  - {{name: r{i}, match: [{quoted}], severity: SEV-3}}")
    lines.append("  - {name: default, match: [], severity: SEV-3}")
    directory = write_rules(
        tmp_path / "rules", {"00-policy.yaml": POLICY, "10-random.yaml": "\n".join(lines) + "\n"}
    )
    ruleset = load(directory)
    index = RuleIndex(ruleset.rules)
    tested = 0
    for _ in range(500):
        labels = random_labels(rng)
        matching = [r.position for r in ruleset.rules if r.matches(labels)]
        candidates = index.candidates(labels)
        assert set(matching) <= set(candidates), labels
        assert candidates == sorted(candidates)
        assert ruleset.classify(labels).position == matching[0], labels
        tested += len(candidates)
    # The agreement means something only if the index did prune, and by much.
    assert tested < 500 * len(ruleset.rules) / 2


@pytest.fixture(scope="module")
def regex_thousands() -> RuleSet:
    """3 000 rules whose only key is a regex on alertname (some also share an equality
    with a thousand others), 1 000 negative-only rules, then the catch-all."""
    rules = []
    for i in range(3_000):
        shared = ['severity="critical"'] if i % 2 else []
        rules.append(rule(i, f"re{i}", f'alertname=~"Kube{i}(Pod|Node)(Crash|Down)"', *shared))
    for i in range(3_000, 4_000):
        rules.append(rule(i, f"neg{i}", 'alertname!~".*"', f'team!="t{i}"'))
    rules.append(rule(4_000, "default"))
    return RuleSet(rules=tuple(rules), policy=PolicySpec(), escalations={}, hash="t", files=())


def test_regex_rules_are_tested_only_when_their_regex_matches_the_alert(
    regex_thousands: RuleSet, rule_tests: list[str]
) -> None:
    labels = {"alertname": "Kube2345NodeDown", "severity": "critical"}
    candidates = RuleIndex(regex_thousands.rules).candidates(labels)
    assert candidates == [2345, *range(3_000, 4_001)]
    assert regex_thousands.classify(labels).name == "re2345"
    assert rule_tests == ["re2345"]


def test_an_equality_many_rules_share_is_not_the_key_of_a_rule_with_a_regex(
    regex_thousands: RuleSet,
) -> None:
    labels = {"alertname": "Unknown", "severity": "critical"}
    candidates = RuleIndex(regex_thousands.rules).candidates(labels)
    assert candidates == list(range(3_000, 4_001))  # none of the 1 500 severity="critical"
    assert regex_thousands.classify(labels).name == "default"


#: Regexes whose meaning differs between engines or options, and values that try them.
TRICKY_REGEXES = [
    "[[:alpha:]]+", "\\p{Greek}+", "(?i)kube.*", "a.b", "x*", "", "é+", "(a|ab)(c|bcd)",
    "\\d{2,3}", "[^a]", ".*\\n.*", "a$", "^a", "\\Qa.b\\E",
]  # fmt: skip
TRICKY_VALUES = [
    "", "abc", "KUBE-x", "ΑΒΓ", "a\nb", "a\n", "aéé", "éé", "abcd", "12", "1234", "a.b",
    "axb", "\ud800", "\x00", "a" * 100_000, "é" * 5_000, "b", "\u212a",
]  # fmt: skip


def test_the_regex_index_agrees_with_each_regex_on_tricky_patterns_and_values() -> None:
    rules = [rule(i, f"r{i}", f'v=~"{text}"') for i, text in enumerate(TRICKY_REGEXES)]
    rules.append(rule(len(rules), "default"))
    index = RuleIndex(rules)
    for value in TRICKY_VALUES:
        labels = {"v": value}
        matching = [r.position for r in rules if r.matches(labels)]
        assert set(matching) <= set(index.candidates(labels)), value[:20]
    missing = [r.position for r in rules if r.matches({})]
    assert set(missing) <= set(index.candidates({})) and 5 in missing  # "x*" matches ""


# --- (d) targets: label values are untrusted ---------------------------------------------

UNSAFE = [
    pytest.param({"pod": "api;rm -rf /"}, id="shell metacharacters"),
    pytest.param({"pod": "../etc"}, id="path traversal"),
    pytest.param({"pod": "a/b"}, id="slash"),
    pytest.param({"pod": "API-1"}, id="uppercase"),
    pytest.param({"pod": ""}, id="empty"),
    pytest.param({}, id="missing"),
    pytest.param({"pod": "a" * 300}, id="300 characters"),
    pytest.param({"pod": "a" * 254}, id="254 characters"),
    pytest.param({"pod": "api-1\n"}, id="trailing newline"),
    pytest.param({"pod": "-api"}, id="leading dash"),
    pytest.param({"pod": "api."}, id="trailing dot"),
    pytest.param({"pod": "a..b"}, id="empty DNS label"),
    pytest.param({"pod": "{namespace}"}, id="a placeholder in the value"),
    pytest.param({"pod": "api 1"}, id="space"),
    pytest.param({"pod": "ap\u0131-1"}, id="non-ASCII"),
]


@pytest.mark.parametrize("labels", UNSAFE)
def test_an_unsafe_label_value_leaves_the_target_unresolved(labels: dict[str, str]) -> None:
    with pytest.raises(LookupError, match=r"^label 'pod' is missing or not a valid object name$"):
        Template.parse("{pod}").render(labels)


@pytest.mark.parametrize("labels", UNSAFE)
def test_an_example_rule_never_renders_an_unsafe_pod_label_into_its_target(
    example: RuleSet, labels: dict[str, str]
) -> None:
    alert = {"alertname": "PodCrashLooping", "namespace": NS, **labels}
    plan = example.classify(alert).plan
    assert plan is not None
    with pytest.raises(LookupError):
        plan.target.render(alert)


SAFE = [
    pytest.param("{pod}", {"pod": "api-1"}, "api-1", id="name"),
    pytest.param("{pod}", {"pod": "a.b-c.d"}, "a.b-c.d", id="dotted name"),
    pytest.param("{pod}", {"pod": "a" * 253}, "a" * 253, id="253 characters"),
    pytest.param("{pod}", {"pod": "7"}, "7", id="one digit"),
    pytest.param("{deployment}-canary", {"deployment": "api"}, "api-canary", id="suffix"),
    pytest.param("{app}-{env}", {"app": "api", "env": "prod"}, "api-prod", id="two labels"),
    pytest.param("fixed-name", {}, "fixed-name", id="no placeholder"),
]


@pytest.mark.parametrize(("text", "labels", "rendered"), SAFE)
def test_a_safe_label_value_renders_into_the_target(
    text: str, labels: dict[str, str], rendered: str
) -> None:
    assert Template.parse(text).render(labels) == rendered


def test_a_rendered_template_must_itself_be_a_valid_object_name() -> None:
    with pytest.raises(
        LookupError, match=r"^template '\{pod\}-' does not give a valid object name$"
    ):
        Template.parse("{pod}-").render({"pod": "api"})


@pytest.mark.parametrize(
    "text", ["{deployment", "deployment}", "{{deployment}}", "{ deployment }", "{1x}", "{}"]
)
def test_a_template_with_stray_braces_does_not_parse(text: str) -> None:
    with pytest.raises(
        ValueError, match=r"^braces may only enclose a label name, as in \{namespace\}$"
    ):
        Template.parse(text)
