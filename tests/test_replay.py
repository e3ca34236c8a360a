"""``remediator replay``: a recorded stream gives a known summary (decisions by outcome,
actions that would run and when, refusals by reason, pages, the storm brake); ``--against``
lists the decisions another rule set takes otherwise; a 20 000-alert storm replays in
seconds; a stream line that is not an entry exits 2 naming the line. ``journal export``
writes what serve journaled as such a stream."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from remediator.cli.main import main
from remediator.simulate.bodies import build
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import LOG_ONLY_RULES, serve, settings_for

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _latency(deployment: str, status: str = "firing") -> tuple[dict[str, str], dict[str, str], str]:
    labels = {"alertname": "HighLatency", "namespace": "llm-research", "deployment": deployment}
    return labels, {}, status


def _write(
    path: Path, bodies: Sequence[tuple[float, list[tuple[dict[str, str], dict[str, str], str]]]]
) -> Path:
    with path.open("w") as stream:
        for offset_s, alerts in bodies:
            at = T0 + timedelta(seconds=offset_s)
            stream.write(
                json.dumps({"received_at": at.isoformat(), "body": build(alerts, at)}) + "\n"
            )
    return path


def _recorded(tmp_path: Path) -> Path:
    """Twelve targets at once (the brake holds two), a page-only SEV-1, a cooldown."""
    return _write(tmp_path / "stream.jsonl", [
        (0, [_latency(f"api-{i:02}") for i in range(1, 13)]),
        (10, [({"alertname": "APIUnavailable"}, {}, "firing")]),
        (120, [_latency("api-01", "resolved")]),
        (600, [_latency("api-01")]),
    ])  # fmt: skip


def _timeless(out: str) -> str:
    out = re.sub(r"rule set [0-9a-f]{12} in \d+\.\d s\n", "rule set H in N s\n", out)
    return out


def test_a_recorded_stream_replays_to_a_known_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = _recorded(tmp_path)
    assert main(["replay", str(stream), "--rules", str(REPO / "rules")]) == 0
    actions = "".join(
        f"  2024-05-01T12:00:00Z  scale-out-api on llm-research/Deployment/api-{i:02}"
        "  (rule p95-latency-above-2s)\n"
        for i in range(1, 11)
    )
    assert _timeless(capsys.readouterr().out) == (
        f"replayed 15 alerts in 4 bodies from {stream} under rule set H in N s\n"
        "decisions by outcome:\n  dry_run: 10\n  refused: 4\n  resolved: 1\n"
        f"actions that would run: 10\n{actions}"
        "refusals by reason:\n  cooldown: 1\n  escalate_only: 1\n  storm: 2\n"
        "pages sent by sink and tier:\n  none\n"
        "storm brake: engaged at 2024-05-01T12:00:00Z, 2 decisions refused\n"
    )


def test_against_other_rules_lists_the_decisions_that_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = _recorded(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(REPO / "rules", other, ignore=shutil.ignore_patterns("tests"))
    policy = other / "00-policy.yaml"
    policy.write_text(policy.read_text().replace("max_targets: 10", "max_targets: 8"))
    assert (
        main(["replay", str(stream), "--rules", str(REPO / "rules"), "--against", str(other)]) == 0
    )
    out = capsys.readouterr().out
    head, *changed = out.split("decisions that differ under rule set ")[1].splitlines()
    assert re.fullmatch(r"[0-9a-f]{12}: 2 of 15", head)
    assert [re.sub(r"\([0-9a-f]{16}\)", "(F)", line) for line in changed] == [
        "  2024-05-01T12:00:00Z  HighLatency (F): step dry_run → refused, outcome dry_run"
        " → refused, reason dry_run → storm, escalated - → sev3-business-hours"
    ] * 2


def test_a_storm_of_20000_alerts_replays_in_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = [(3.0 * b, [_latency(f"api-{b * 100 + i}") for i in range(100)]) for b in range(200)]
    stream = _write(tmp_path / "storm.jsonl", bodies)
    started = time.monotonic()
    assert main(["replay", str(stream), "--rules", str(REPO / "rules")]) == 0
    took_s = time.monotonic() - started
    out = capsys.readouterr().out
    assert "replayed 20000 alerts in 200 bodies" in out
    assert "decisions by outcome:\n  dry_run: 10\n  refused: 19990\n" in out
    assert "storm brake: engaged at 2024-05-01T12:00:00Z, 19990 decisions refused" in out
    assert took_s < 60, f"20 000 alerts took {took_s:.1f} s"


def test_a_stream_line_that_is_not_an_entry_exits_2_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = _recorded(tmp_path)
    stream.write_text(stream.read_text() + '{"received_at": "2024-05-01T12:30:00Z"}\n')
    assert main(["replay", str(stream), "--rules", str(REPO / "rules")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'remediator: {stream}:5: is not {{"received_at": RFC 3339 time,')


# --------------------------------------------------------------------------- journal export


async def test_what_serve_journaled_exports_as_the_stream_replay_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """serve's own journal, exported, replays to the decisions serve made: the same alerts,
    the same actions planned on the same targets."""
    settings = settings_for(tmp_path, dry_run=True)
    sent = [
        webhook_payload(webhook_alert(labels=_latency(d)[0]), groupKey=f"{{}}:{{d={d}}}")
        for d in ("api-1", "api-2")
    ] + [webhook_payload(webhook_alert(labels={"alertname": "DiskUsageHigh", "node": "n1"}))]
    async with serve(settings) as service:
        for payload in sent:
            assert (await service.post(payload))[0] == 200
        await service.settle()
        served = await service.decisions()
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["journal", "export", "--state", settings.state_url]) == 0
    exported = capsys.readouterr().out
    lines = [json.loads(line) for line in exported.splitlines()]
    assert [line["body"] for line in lines] == sent  # the bodies as they were received
    assert all(datetime.fromisoformat(line["received_at"]).tzinfo for line in lines)
    stream = tmp_path / "exported.jsonl"
    stream.write_text(exported)

    assert (
        await asyncio.to_thread(main, ["replay", str(stream), "--rules", str(LOG_ONLY_RULES)]) == 0
    )
    summary = capsys.readouterr().out
    assert "replayed 3 alerts in 3 bodies" in summary
    planned = sorted(d["target"] for d in served if d["step"] == "dry_run")
    assert planned == ["llm-research/Deployment/api-1", "llm-research/Deployment/api-2"]
    assert "actions that would run: 2\n" in summary
    assert all(f"on {target}  (rule" in summary for target in planned)


async def test_an_export_since_a_time_keeps_the_entries_received_then_or_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(tmp_path)
    async with serve(settings) as service:
        assert (await service.post(webhook_payload(webhook_alert())))[0] == 200
        await service.settle()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    capsys.readouterr()
    assert (
        await asyncio.to_thread(
            main, ["journal", "export", "--state", settings.state_url, "--since", later]
        )
        == 0
    )
    assert capsys.readouterr().out == ""
    assert (
        await asyncio.to_thread(
            main, ["journal", "export", "--state", settings.state_url, "--since", "yesterday"]
        )
        == 2
    )
    assert capsys.readouterr().err == (
        "remediator: --since must be a time with its zone, such as 2026-12-01T09:00:00Z,"
        " not 'yesterday'\n"
    )
