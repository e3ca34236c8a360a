"""The Grafana dashboard (charts/remediator/files/dashboard.json) and the metric names the
dashboard and the self-alerts (files/alerts.yaml) query.

Every metric they name is a sample name of a running service's ``/metrics`` (names as the
exposition writes them: ``_total``, ``_bucket``, ``_count``, ``_sum``), every label they filter
or group by is a label of that metric (or one Prometheus gives every scraped series), and
every label value they match literally is one the service exports (all are pre-created at
zero). The dashboard is valid JSON with the panels the issue names, each with a query; the
chart ships it in a ConfigMap for Grafana's sidecar. The checker itself is unit-tested: a
made-up name, label or value is caught.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.chart import render
from tests.support.service import EXAMPLE_RULES, serve, settings_for

REPO = Path(__file__).resolve().parents[1]
FILES = REPO / "charts" / "remediator" / "files"
DASHBOARD = FILES / "dashboard.json"
ALERTS = FILES / "alerts.yaml"

#: Labels Prometheus gives every series it scrapes through the chart's ServiceMonitor.
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
)
#: Series Prometheus makes itself, not the service: name -> its labels.
SYNTHETIC = {"up": TARGET_LABELS}
#: The example ladder's sink names, so the escalation series exist.
SINKS = ("oncall-primary", "platform-lead", "engineering-manager", "vp-engineering", "ops-channel")
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"bool", "offset", "inf", "nan"}
)
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^{}]*)\}")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LITERAL_ALTERNATIVES = re.compile(r"[A-Za-z0-9_.-]+(\|[A-Za-z0-9_.-]+)*")
WEBHOOK_BUCKETS = "remediator_webhook_duration_seconds_bucket"
LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$")


# --- the exposition ------------------------------------------------------------------


@dataclass(frozen=True)
class Exposition:
    """Sample name -> label name -> the values it takes."""

    samples: dict[str, dict[str, set[str]]]

    @classmethod
    def parse(cls, text: str) -> Exposition:
        samples: dict[str, dict[str, set[str]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = samples.setdefault(sample.name, {})
                for name, value in sample.labels.items():
                    labels.setdefault(name, set()).add(value)
        return cls(samples)


async def scrape(tmp_path: Path) -> Exposition:
    """``/metrics`` of a service on the example rules (every action kind) with sinks."""
    rules = tmp_path / "rules"
    shutil.copytree(EXAMPLE_RULES, rules)
    policy = rules / "00-policy.yaml"
    sinks = "".join(
        f"  {name}: {{type: webhook, url: 'http://127.0.0.1:1/hook'}}\n" for name in SINKS
    )
    policy.write_text(policy.read_text() + "\nsinks:\n" + sinks)
    async with (
        serve(settings_for(tmp_path, rules_dir=rules)) as service,
        service.session.get(f"{service.url}/metrics") as response,
    ):
        assert response.status == 200
        return Exposition.parse(await response.text())


# --- the checker ---------------------------------------------------------------------


@dataclass
class Query:
    """What a PromQL expression selects: each metric with the labels it matches, and each
    grouping clause with the metrics it applies to."""

    metrics: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    groupings: list[tuple[str, list[str], set[str]]] = field(default_factory=list)
    unnamed_selectors: int = 0


def _balanced(text: str, start: int, step: int) -> int:
    """The index of the parenthesis matching the one at ``start`` (scanning by ``step``)."""
    depth = 0
    index = start
    opening, closing = ("(", ")") if step > 0 else (")", "(")
    while 0 <= index < len(text):
        if text[index] == opening:
            depth += 1
        elif text[index] == closing:
            depth -= 1
            if depth == 0:
                return index
        index += step
    raise ValueError(f"unbalanced parentheses in {text!r}")


def _selected(text: str) -> Iterator[tuple[str, list[tuple[str, str, str]]]]:
    """(metric, matchers) of every selector in ``text`` (strings blanked elsewhere)."""
    blank = STRING.sub(lambda m: '"' + "_" * (len(m.group()) - 2) + '"', text)
    covered: list[tuple[int, int]] = []
    for match in SELECTOR.finditer(blank):
        body = text[match.start(2) : match.end(2)]
        matchers = [(m.group(1), m.group(2), m.group(3)) for m in MATCHER.finditer(body)]
        if "".join(m.group() for m in MATCHER.finditer(body)).strip() != body.strip():
            raise ValueError(f"cannot read the matchers {body!r}")
        covered.append((match.start(), match.end()))
        yield match.group(1) or "", matchers
    # bare names: every identifier outside strings, selectors, ranges and grouping clauses
    rest = list(blank)
    for start, end in covered:
        rest[start:end] = " " * (end - start)
    bare = "".join(rest)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    bare = GROUPING.sub(" ", bare)
    for match in IDENTIFIER.finditer(bare):
        name = match.group()
        following = bare[match.end() :].lstrip()
        before = bare[: match.start()]
        if following.startswith("(") or name.lower() in KEYWORDS:
            continue  # a function or aggregation, or a keyword
        if re.search(r"[0-9.]$", before) or re.search(r"\$\{?$", before):
            continue  # part of a number (1e3) or a template variable
        yield name, []


def parse(expr: str) -> Query:
    label_values = LABEL_VALUES.match(expr)
    if label_values:  # a Grafana variable query: label_values(selector, label)
        query = parse(label_values.group(1))
        query.groupings.append(("label_values", [label_values.group(2)], set(query.metrics)))
        return query
    query = Query()
    for name, matchers in _selected(expr):
        if not name:
            query.unnamed_selectors += 1
            continue
        query.metrics.setdefault(name, []).extend(matchers)
    blank = STRING.sub(lambda m: '"' + "_" * (len(m.group()) - 2) + '"', expr)
    for match in GROUPING.finditer(blank):
        keyword, labels = (
            match.group(1),
            [x.strip() for x in match.group(2).split(",") if x.strip()],
        )
        after = blank[match.end() :].lstrip()
        if keyword in {"by", "without"}:
            if after.startswith("("):  # sum by (x) (argument)
                start = match.end() + (len(blank[match.end() :]) - len(after))
                argument = expr[start : _balanced(blank, start, +1) + 1]
            else:  # sum (argument) by (x)
                end = len(blank[: match.start()].rstrip()) - 1
                argument = expr[_balanced(blank, end, -1) : end + 1]
        else:
            argument = expr  # on/ignoring/group_*: both sides of the operation
        names = {name for name, _ in _selected(argument) if name}
        query.groupings.append((keyword, labels, names))
    return query


def problems(expr: str, exposition: Exposition) -> list[str]:
    """What in ``expr`` the service does not export (empty when everything exists)."""
    found: list[str] = []
    query = parse(expr)
    if query.unnamed_selectors:
        found.append(f"{expr}: a selector without a metric name cannot be checked")
    known = {name: set(labels) for name, labels in exposition.samples.items()}
    known.update({name: set(labels) for name, labels in SYNTHETIC.items()})

    def labels_of(metric: str) -> set[str]:
        return known[metric] | TARGET_LABELS

    for metric, matchers in query.metrics.items():
        if metric not in known:
            found.append(f"{metric}: no such sample on /metrics")
            continue
        for label, op, value in matchers:
            if label not in labels_of(metric):
                found.append(f"{metric}: no label {label}")
                continue
            if label in TARGET_LABELS or "$" in value or not value:
                continue
            literal = op in {"=", "!="} or LITERAL_ALTERNATIVES.fullmatch(value)
            values = [value] if op in {"=", "!="} else value.split("|")
            exported = exposition.samples[metric].get(label, set())
            for one in values if literal else []:
                if one not in exported:
                    found.append(f"{metric}: {label} never takes the value {one!r}")
    for keyword, labels, metrics in query.groupings:
        for metric in metrics & set(known):
            for label in labels:
                if label not in labels_of(metric):
                    found.append(f"{metric}: {keyword} ({label}), a label it does not have")
    return found


# --- what the dashboard and the alerts query -----------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for panel in board["panels"]:
        flat.append(panel)
        flat.extend(panel.get("panels", []))  # collapsed rows
    return [p for p in flat if p["type"] != "row"]


def dashboard_queries() -> list[str]:
    board = dashboard()
    exprs = [target["expr"] for panel in panels(board) for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def alert_queries() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


async def test_every_metric_label_and_value_the_self_alerts_query_exists_on_metrics(
    tmp_path: Path,
) -> None:
    exposition = await scrape(tmp_path)
    exprs = alert_queries()
    assert len(exprs) >= 14
    assert [p for expr in exprs for p in problems(expr, exposition)] == []
    named = {metric for expr in exprs for metric in parse(expr).metrics}
    assert "up" in named
    assert len(named - {"up"}) >= 8, named


async def test_every_metric_label_and_value_the_dashboard_queries_exists_on_metrics(
    tmp_path: Path,
) -> None:
    exposition = await scrape(tmp_path)
    exprs = dashboard_queries()
    assert [p for expr in exprs for p in problems(expr, exposition)] == []
    named = {metric for expr in exprs for metric in parse(expr).metrics}
    assert len(named) >= 12, named


# --- the checker can fail ------------------------------------------------------------


@pytest.fixture
def exposition() -> Exposition:
    return Exposition.parse(
        "# TYPE remediator_actions counter\n"
        'remediator_actions_total{kind="scale_out",result="failed"} 0.0\n'
        'remediator_actions_total{kind="scale_out",result="succeeded"} 0.0\n'
        "# TYPE remediator_webhook_duration_seconds histogram\n"
        'remediator_webhook_duration_seconds_bucket{le="0.1"} 0.0\n'
        'remediator_webhook_duration_seconds_bucket{le="+Inf"} 0.0\n'
        "remediator_webhook_duration_seconds_count 0.0\n"
        "remediator_webhook_duration_seconds_sum 0.0\n"
        "# TYPE remediator_journal_backlog gauge\n"
        "remediator_journal_backlog 0.0\n"
    )


@pytest.mark.parametrize(
    "expr",
    [
        'sum by (kind, result) (rate(remediator_actions_total{result=~"failed|succeeded"}[5m]))',
        "sum(rate(remediator_actions_total[$__rate_interval])) by (kind)",
        f"histogram_quantile(0.99, sum by (le) (rate({WEBHOOK_BUCKETS}[5m]))) > 1",
        'remediator_journal_backlog{job=~"$job"} > 1e3'
        " and deriv(remediator_journal_backlog[15m]) > 0",
        'absent(up{job="remediator"})',
        "label_values(remediator_actions_total, kind)",
        'sum without (result) (rate(remediator_actions_total{result=~".+"}[5m]))',
    ],
)
def test_the_checker_accepts_what_the_service_exports(expr: str, exposition: Exposition) -> None:
    assert problems(expr, exposition) == []


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(remediator_made_up_total[5m])", "remediator_made_up_total: no such sample"),
        ("rate(remediator_actions[5m])", "remediator_actions: no such sample"),
        ("remediator_actions_created", "remediator_actions_created: no such sample"),
        ("remediator_webhook_duration_seconds", "remediator_webhook_duration_seconds: no such"),
        ('remediator_actions_total{sink="x"}', "remediator_actions_total: no label sink"),
        ('remediator_actions_total{result="faild"}', "never takes the value 'faild'"),
        ('remediator_actions_total{result=~"failed|dropped"}', "never takes the value 'dropped'"),
        ("sum by (reason) (remediator_actions_total)", "by (reason), a label it does not have"),
        ("sum(remediator_actions_total) by (reason)", "by (reason), a label it does not have"),
        (
            "sum by (le) (remediator_webhook_duration_seconds_count)",
            "by (le), a label it does not have",
        ),
        ('{__name__="remediator_actions_total"}', "a selector without a metric name"),
        ("process_cpu_seconds_total", "process_cpu_seconds_total: no such sample"),
        ("label_values(remediator_journal_backlog, kind)", "label_values (kind)"),
        ("remediator_journal_backlog + remediator_made_up", "remediator_made_up: no such"),
    ],
)
def test_the_checker_catches_a_metric_label_or_value_the_service_does_not_export(
    expr: str, problem: str, exposition: Exposition
) -> None:
    found = problems(expr, exposition)
    assert any(problem in p for p in found), found


# --- the dashboard itself ------------------------------------------------------------


def test_the_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["uid"] == "remediator"
    assert board["title"] == "remediator"
    assert board["schemaVersion"] == 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}", variable["name"]


def test_every_panel_has_a_unique_id_a_place_of_its_own_and_a_query_on_the_datasource() -> None:
    board = dashboard()
    every = panels(board)
    assert len(every) >= 9
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells: set[tuple[int, int]] = set()
    for panel in every:
        title = panel["title"]
        assert title and panel.get("description"), panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], f"{title}: no query"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: refIds repeat"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{title}: an empty query"
            assert target["datasource"]["uid"] == "${datasource}", title
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, title
        mine = {
            (grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])
        }
        assert not cells & mine, f"{title} overlaps another panel"
        cells |= mine
    titles = [p["title"] for p in every]
    assert len(titles) == len(set(titles)), "panel titles repeat"


def grouped_by(exprs: list[str]) -> set[tuple[str, frozenset[str]]]:
    """(metric, by-labels) of every ``by`` aggregation in ``exprs``."""
    return {
        (metric, frozenset(labels))
        for expr in exprs
        for keyword, labels, metrics in parse(expr).groupings
        if keyword == "by"
        for metric in metrics
    }


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = dashboard_queries()
    groups = grouped_by(exprs)
    for metric, labels in [
        ("remediator_decisions_total", {"severity", "outcome"}),
        ("remediator_actions_total", {"kind", "result"}),
        ("remediator_guard_refusals_total", {"reason"}),
        ("remediator_escalations_total", {"sink", "result"}),
        ("remediator_loop_failures_total", {"loop"}),
        ("remediator_webhook_duration_seconds_bucket", {"le"}),
    ]:
        assert (metric, frozenset(labels)) in groups, f"no panel shows {metric} by {labels}"
    joined = "\n".join(exprs)
    for quantile in ("0.5", "0.99"):
        latency = f"histogram_quantile({quantile}, sum by (le) (rate({WEBHOOK_BUCKETS}"
        assert latency in joined, f"no ack latency p{quantile}"
    for metric in ("remediator_journal_backlog", "remediator_dependency_up"):
        assert any(metric in parse(e).metrics for e in exprs), f"no panel shows {metric}"
    # No metric tells the budget left: the budget's refusals stand in for it.
    assert 'remediator_guard_refusals_total{reason="global_budget"' in joined


# --- the chart's ConfigMap -----------------------------------------------------------


def test_the_chart_ships_the_dashboard_in_a_configmap_for_grafanas_sidecar() -> None:
    rendered = render(
        {"dashboard": {"labels": {"grafana_dashboard": "1", "team": "sre"}}}, name="prod"
    )
    config_map = rendered.one("ConfigMap", "prod-remediator-dashboard")
    labels = config_map["metadata"]["labels"]
    assert labels["grafana_dashboard"] == "1"
    assert labels["team"] == "sre"
    assert labels["app.kubernetes.io/instance"] == "prod"
    assert labels["helm.sh/chart"] == "remediator-0.1.0"
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["data"] == {"remediator.json": DASHBOARD.read_text()}


def test_the_chart_s_default_dashboard_carries_the_sidecar_label() -> None:
    config_map = render({}).one("ConfigMap", "remediator-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["remediator.json"])["uid"] == "remediator"


def test_the_chart_renders_no_dashboard_when_it_is_disabled() -> None:
    names = [
        m["metadata"]["name"]
        for m in render({"dashboard": {"enabled": False}}).of_kind("ConfigMap")
    ]
    assert not [name for name in names if name.endswith("-dashboard")], names
