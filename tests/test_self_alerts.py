"""The alerts about remediator itself (charts/remediator/files/alerts.yaml) and the chart's
PrometheusRule that carries them: ``promtool check rules`` accepts them, the ``promtool test
rules`` unit tests (files/alerts-test.yaml) prove every alert fires on a synthetic series and
stays quiet on a healthy one, and those unit tests catch a broken alert.

promtool comes from Debian's ``prometheus`` package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.chart import render

REPO = Path(__file__).resolve().parents[1]
FILES = REPO / "charts" / "remediator" / "files"
ALERTS = FILES / "alerts.yaml"
ALERTS_TEST = FILES / "alerts-test.yaml"
SEVERITIES = {"critical", "warning"}
DEAD_MANS_JOB = 'job="remediator"'


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is not on PATH: install Debian's prometheus package"
    return subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def alert_rules(text: str) -> list[dict[str, Any]]:
    groups = yaml.safe_load(text)["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def unit_cases() -> list[tuple[str, list[Any]]]:
    """(alertname, exp_alerts) of every alert_rule_test in alerts-test.yaml."""
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    return [
        (case["alertname"], case["exp_alerts"])
        for test in tests
        for case in test.get("alert_rule_test", [])
    ]


def copy_files(tmp_path: Path, alerts: str, alerts_test: str) -> Path:
    (tmp_path / "alerts.yaml").write_text(alerts)
    (tmp_path / "alerts-test.yaml").write_text(alerts_test)
    return tmp_path


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is not in the text exactly once"
    return text.replace(old, new)


# --- promtool check rules ------------------------------------------------------------


def test_promtool_check_rules_accepts_the_self_alerts() -> None:
    result = promtool("check", "rules", ALERTS.name, cwd=FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules(ALERTS.read_text()))} rules found" in result.stdout


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # an instant vector where rate() needs a range
        (
            "rate(remediator_spooled_payloads_total[5m])",
            "rate(remediator_spooled_payloads_total)",
        ),
        # not a duration
        ("for: 5m", "for: soon"),
    ],
    ids=["a_bad_expression", "a_bad_duration"],
)
def test_promtool_check_rules_refuses_a_broken_copy_of_the_self_alerts(
    tmp_path: Path, old: str, new: str
) -> None:
    text = ALERTS.read_text()
    broken = text.replace(old, new, 1)
    assert broken != text
    (tmp_path / "alerts.yaml").write_text(broken)
    result = promtool("check", "rules", "alerts.yaml", cwd=tmp_path)
    assert result.returncode != 0, result.stdout


# --- promtool test rules -------------------------------------------------------------


def test_the_self_alerts_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", ALERTS_TEST.name, cwd=FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("old", "new", "failing_case"),
    [
        (  # RemediatorDown waits an hour
            'expr: up{job="remediator"} == 0\n        for: 5m',
            'expr: up{job="remediator"} == 0\n        for: 1h',
            "a target that stops answering its scrape fires RemediatorDown",
        ),
        (  # 503 overloaded is no longer counted
            'reason=~"internal_error|overloaded|validation_unavailable"',
            'reason=~"internal_error|validation_unavailable"',
            "webhooks answered 503 overloaded for 10 minutes fire RemediatorWebhookServerErrors",
        ),
        (  # a drain's 503s count as client errors
            '|validation_unavailable|shutting_down"',
            '|validation_unavailable"',
            "no 4xx, and 503s while draining, keep RemediatorWebhookClientErrors quiet",
        ),
        (  # an action failing now and then raises the alert
            "> 0.25\n",
            "> 0.01\n",
            "a rare failure among successes, or no action at all, keeps RemediatorActionsFailing"
            " quiet",
        ),
        (  # an annotation names a label the alert does not have
            "summary: remediator's {{ $labels.dependency }} is down",
            "summary: remediator's {{ $labels.sink }} is down",
            "a state store away for 5 minutes fires RemediatorDependencyDown",
        ),
    ],
    ids=[
        "down_too_slow",
        "overloaded_ignored",
        "drain_counted",
        "threshold_too_low",
        "wrong_annotation",
    ],
)
def test_the_promtool_unit_tests_catch_a_broken_alert_in_the_case_it_breaks(
    tmp_path: Path, old: str, new: str, failing_case: str
) -> None:
    broken = replace_once(ALERTS.read_text(), old, new)
    copy_files(tmp_path, broken, ALERTS_TEST.read_text())
    result = promtool("test", "rules", "alerts-test.yaml", cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    failed = re.findall(r"^\s*name: (.*),$", output, re.MULTILINE)
    assert failed == [failing_case], output


def test_every_self_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = {rule["alert"] for rule in alert_rules(ALERTS.read_text())}
    cases = unit_cases()
    firing = {name for name, expected in cases if expected}
    quiet = {name for name, expected in cases if expected == []}
    assert {name for name, _ in cases} <= alerts, "a unit test names an alert that does not exist"
    assert alerts - firing == set(), "alerts without a case that makes them fire"
    assert alerts - quiet == set(), "alerts without a case that keeps them quiet"


def test_every_self_alert_fires_with_its_severity_and_all_its_annotations_in_its_unit_test() -> (
    None
):
    rules = {rule["alert"]: rule for rule in alert_rules(ALERTS.read_text())}
    for name, expected in unit_cases():
        for alert in expected:
            assert alert["exp_labels"]["severity"] == rules[name]["labels"]["severity"], name
            assert set(alert["exp_annotations"]) == set(rules[name]["annotations"]), name


def test_every_self_alert_has_a_severity_a_summary_a_description_and_a_runbook() -> None:
    rules = alert_rules(ALERTS.read_text())
    assert len(rules) >= 14
    assert len({rule["alert"] for rule in rules}) == len(rules), "alert names repeat"
    for rule in rules:
        assert rule["alert"].startswith("Remediator"), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        assert annotations["description"].strip(), rule["alert"]
        assert annotations["runbook_url"] == "README.md#self-alerts", rule["alert"]


def test_only_the_dead_mans_switch_names_a_job_and_every_other_alert_selects_by_metric_name() -> (
    None
):
    for rule in alert_rules(ALERTS.read_text()):
        if rule["alert"] in {"RemediatorDown", "RemediatorAbsent"}:
            assert DEAD_MANS_JOB in rule["expr"], rule["alert"]
        else:
            assert "job" not in rule["expr"], rule["alert"]
            assert "remediator_" in rule["expr"], rule["alert"]


# --- the chart's PrometheusRule ------------------------------------------------------


def test_the_chart_s_prometheus_rule_carries_the_self_alerts_with_the_release_s_job() -> None:
    rendered = render(
        {"prometheusRule": {"labels": {"release": "kube-prometheus-stack"}}}, name="prod"
    )
    rule = rendered.one("PrometheusRule")
    service = rendered.one("Service")
    monitor = rendered.one("ServiceMonitor")
    job = service["metadata"]["name"]
    assert job == "prod-remediator"
    assert "jobLabel" not in monitor["spec"], "the job label must stay the Service's name"
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == "prod-remediator"
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "prod"
    expected = yaml.safe_load(ALERTS.read_text().replace(DEAD_MANS_JOB, f'job="{job}"'))
    assert rule["spec"]["groups"] == expected["groups"]
    exprs = {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
    assert exprs["RemediatorAbsent"] == 'absent(up{job="prod-remediator"})'


def test_the_rendered_prometheus_rule_passes_promtool_and_its_unit_tests(tmp_path: Path) -> None:
    rule = render({}, name="prod").one("PrometheusRule")
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = ALERTS_TEST.read_text()
    tests = tests.replace(DEAD_MANS_JOB, 'job="prod-remediator"')
    tests = tests.replace("job: remediator\n", "job: prod-remediator\n")
    (tmp_path / "alerts-test.yaml").write_text(tests)
    checked = promtool("check", "rules", "alerts.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts-test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_chart_renders_no_prometheus_rule_when_it_is_disabled() -> None:
    rendered = render({"prometheusRule": {"enabled": False}})
    assert rendered.of_kind("PrometheusRule") == []
