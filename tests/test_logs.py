"""Structured logs: every record is one line in the chosen format, carries the fields a call
passed as ``extra={"fields": ...}``, and no value, however hostile, forges a second record."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediator.core.fingerprint import fingerprint
from remediator.runtime.logs import (
    FORMATTERS,
    MAX_VALUE_CHARS,
    LogFormat,
    configure_logging,
    logfmt_value,
)
from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import EXAMPLE_RULES, fixture_json, serve, settings_for
from tests.support.sinks import WebhookStub

#: key=value, the value bare (no space, quote or "=") or quoted with backslash escapes.
PAIR = re.compile(r'([^\s="]+)=("(?:[^"\\]|\\.)*"|[^\s"=]*)(?: |$)')

HOSTILE = {
    "newline": 'a\nlevel=error msg="forged" logger=remediator',
    "carriage": "a\rtime=2026-01-01T00:00:00Z level=critical",
    "quote": 'say "hi" \\" and \\',
    "unicode": "Grüße, 日本語, emoji 🚨, nel\x85, ls\u2028ps\u2029, bell\x07, nul\x00",
    "equals": "a=b c=d",
    "empty": "",
    "huge": "x" * (3 * MAX_VALUE_CHARS),
}


def parse_logfmt(line: str) -> dict[str, str]:
    """A logfmt line as a dict: quoted values decoded, bare ones as they are."""
    pairs: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = PAIR.match(line, pos)
        assert match, f"not logfmt from {pos}: {line[pos : pos + 80]!r}"
        key, raw = match.groups()
        assert key not in pairs, f"{key} twice in {line!r}"
        pairs[key] = json.loads(raw) if raw.startswith('"') else raw
        pos = match.end()
    return pairs


def emit(log_format: LogFormat, message: str, fields: object, exc: bool = False) -> str:
    """What one record at info level writes in ``log_format``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FORMATTERS[log_format]())
    logger = logging.getLogger(f"remediator.test.{log_format}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        if exc:
            try:
                raise ValueError('broken\nlevel=info msg="forged"')
            except ValueError:
                logger.exception(message, extra={"fields": fields})
        else:
            logger.info(message, extra={"fields": fields})
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def one_line(output: str) -> str:
    """The output of one record: a single line, whatever a line splitter counts as one."""
    assert output.endswith("\n")
    lines = output[:-1].splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def bounded(value: str) -> str:
    return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "…"


FIELDS = {"action": "scale_out", "target": "llm-research/api", "episode": 7, "claim": None,
          "dry_run": False, "ratio": 0.5}  # fmt: skip


def test_json_lines_parse_and_carry_every_field_at_the_top_level() -> None:
    record = json.loads(one_line(emit("json", "action result", FIELDS)))
    assert record.pop("time").endswith("Z")
    assert record == {"level": "info", "logger": "remediator.test.json",
                      "msg": "action result", **FIELDS}  # fmt: skip


def test_logfmt_lines_parse_and_carry_every_field() -> None:
    pairs = parse_logfmt(one_line(emit("logfmt", "action result", FIELDS)))
    assert pairs.pop("time").endswith("Z")
    assert pairs == {"level": "info", "logger": "remediator.test.logfmt", "msg": "action result",
                     "action": "scale_out", "target": "llm-research/api", "episode": "7",
                     "claim": "null", "dry_run": "false", "ratio": "0.5"}  # fmt: skip


def test_text_lines_are_the_message_then_the_fields_as_key_value() -> None:
    line = one_line(emit("text", "action result", FIELDS))
    assert line.endswith(
        " INFO remediator.test.text action result action=scale_out target=llm-research/api"
        " episode=7 claim=null dry_run=false ratio=0.5"
    )


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("log_format", ["json", "logfmt"])
def test_a_hostile_field_value_stays_inside_its_own_record(
    log_format: LogFormat, name: str
) -> None:
    value = HOSTILE[name]
    line = one_line(emit(log_format, f"message with {value}", {"label": value, "after": "ok"}))
    parsed = json.loads(line) if log_format == "json" else parse_logfmt(line)
    assert parsed["label"] == bounded(value)
    assert parsed["msg"] == bounded(f"message with {value}")
    assert (parsed["level"], parsed["after"]) == ("info", "ok")
    assert len(line) < 3 * MAX_VALUE_CHARS


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_value_cannot_forge_a_text_line_either(name: str) -> None:
    value = HOSTILE[name]
    line = one_line(emit("text", value, {"label": value}))
    assert " INFO remediator.test.text " in line
    assert parse_logfmt(line[line.index(" label=") + 1 :]) == {"label": bounded(value)}


@pytest.mark.parametrize("log_format", ["json", "logfmt"])
def test_a_traceback_is_one_field_of_the_same_record(log_format: LogFormat) -> None:
    line = one_line(emit(log_format, "loop failed", {"loop": "aftercare"}, exc=True))
    parsed = json.loads(line) if log_format == "json" else parse_logfmt(line)
    assert parsed["level"] == "error" and parsed["loop"] == "aftercare"
    assert parsed["error"].startswith("Traceback (most recent call last):\n")
    assert parsed["error"].endswith('ValueError: broken\nlevel=info msg="forged"')


def test_a_traceback_in_text_is_indented_under_its_record() -> None:
    lines = emit("text", "loop failed", {"loop": "aftercare"}, exc=True).splitlines()
    assert lines[0].endswith(" ERROR remediator.test.text loop failed loop=aftercare")
    assert lines[1] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in lines[1:]), lines
    assert lines[-2:] == ["    ValueError: broken", '    level=info msg="forged"']


def test_fields_named_like_the_records_own_keys_do_not_overwrite_them() -> None:
    fields = {"level": "critical", "time": "never", "msg": "forged", "logger": "x"}
    record = json.loads(one_line(emit("json", "real", fields)))
    assert (record["level"], record["msg"], record["logger"]) == (
        "info", "real", "remediator.test.json"
    )  # fmt: skip
    assert record["field.level"] == "critical" and record["field.msg"] == "forged"


def test_a_key_with_spaces_or_equals_is_still_one_logfmt_pair() -> None:
    pairs = parse_logfmt(one_line(emit("logfmt", "m", {'bad key="x"=1': "v"})))
    assert pairs["bad_key__x__1"] == "v"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("plain", "plain"),
        ("two words", '"two words"'),
        ("", '""'),
        ('q"uote', '"q\\"uote"'),
        ("back\\slash", '"back\\\\slash"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("tab\there", '"tab\\there"'),
        ("ls\u2028", '"ls\\u2028"'),
        ("a=b", '"a=b"'),
        ("Grüße", "Grüße"),
        (None, "null"),
        (True, "true"),
        (3, "3"),
    ],
)
def test_logfmt_quotes_a_value_only_when_it_must(value: object, written: str) -> None:
    assert logfmt_value(value) == written


@pytest.fixture
def root_logging() -> Iterator[None]:
    """``configure_logging`` sets the root logger up; each test leaves it as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_writes_the_chosen_format_to_stderr_at_the_chosen_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("warning", "json")
    log = logging.getLogger("remediator.act.runner")
    log.info("not written", extra={"fields": {"x": 1}})
    log.warning("action failed", extra={"fields": {"action": "recycle_pod"}})
    print("", end="", file=sys.stderr)
    record = json.loads(one_line(capsys.readouterr().err))
    assert (record["msg"], record["level"], record["action"]) == (
        "action failed", "warning", "recycle_pod"
    )  # fmt: skip


# --- what the service logs ------------------------------------------------------------------

RULES_WITH_A_HOOK = """
policy:
  namespaces: [llm-research]
defaults:
  escalation: {{SEV-1: page, SEV-2: page, SEV-3: page}}
escalations:
  page:
    tiers: [{{after_s: 0, notify: [hook]}}]
sinks:
  hook: {{type: webhook, url: "{url}/remediator"}}
rules:
  - name: api-down
    match: ['alertname="APIUnavailable"']
    severity: SEV-1
  - name: default
    match: []
    severity: SEV-3
"""


def fields_logged(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, object]]:
    return [dict(r.__dict__["fields"]) for r in caplog.records if r.name == logger]


async def test_each_action_result_is_one_line_naming_action_target_outcome_episode_and_claim(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serve(settings_for(tmp_path)) as service:
        assert (await service.post(fixture_json("firing-2-alerts.json")))[0] == 200
        await service.settle()
    results = fields_logged(caplog, "remediator.act.runner")
    assert sorted(str(r["target"]) for r in results) == [
        "llm-research/Deployment/llm-research-api",
        "llm-research/Deployment/llm-research-worker",
    ]
    for result in results:
        assert result.keys() >= {"action", "kind", "target", "outcome", "episode", "claim"}
        assert (result["action"], result["kind"], result["outcome"]) == (
            "scale-out-api", "log_only", "succeeded"
        )  # fmt: skip


async def test_each_notification_sent_is_one_line_naming_sink_event_tier_and_dedup_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with WebhookStub() as hook:
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "rules.yaml").write_text(RULES_WITH_A_HOOK.format(url=hook.url))
        settings = settings_for(tmp_path, rules_dir=rules, delivery_poll_s=0.01)
        async with serve(settings) as service:
            down = {"alertname": "APIUnavailable", "namespace": "llm-research"}
            payload = webhook_payload(webhook_alert(fingerprint(down), "firing", labels=down))
            assert (await service.post(payload))[0] == 200
            for _ in range(500):
                if fields_logged(caplog, "remediator.escalate.delivery"):
                    break
                await asyncio.sleep(0.01)
    [sent] = fields_logged(caplog, "remediator.escalate.delivery")
    assert len(hook.received) == 1
    assert (sent["sink"], sent["event"], sent["tier"], sent["outcome"]) == (
        "hook", "trigger", 0, "delivered"
    )  # fmt: skip
    assert isinstance(sent["dedup_key"], str) and sent["dedup_key"]


async def test_a_failing_kubernetes_call_is_logged_once_at_warning_with_the_servers_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not only audited: the operator reading the log sees which call failed and why."""
    api = {"alertname": "HighCPUUsage", "namespace": "llm-research", "deployment": "api"}
    async with KubeApiServer(seed=7) as kube:
        kube.add_deployment(
            "llm-research", "api", replicas=3, annotations={"remediator.io/allow": "scale_out"}
        )
        kube.inject_fault(r"/deployments/api$", method="GET", status=403, times=None)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=EXAMPLE_RULES)
        async with serve(settings) as service:
            alert = webhook_alert(fingerprint(api), "firing", labels=api)
            assert (await service.post(webhook_payload(alert)))[0] == 200
            await service.settle()
    failed = [r for r in caplog.records if r.name == "remediator.clients.k8s"]
    assert [(r.levelno, r.getMessage().split(": ")[1]) for r in failed] == [
        (logging.WARNING, "read deployment llm-research/api failed")
    ]
    fields = failed[0].__dict__["fields"]
    assert (fields["kind"], fields["status"]) == ("Forbidden", 403)
    assert 'deployments.apps "api" is forbidden' in str(fields["error"])
