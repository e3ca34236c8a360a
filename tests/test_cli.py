"""The command line: serve's refusal to run open by accident, check, explain, decisions, and
exit status 2 from every command that loads rules when they do not load."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.cli.main import main
from tests.support.process import start_remediator
from tests.support.service import REPO, fixture_bytes


def test_serve_refuses_to_start_without_a_token_file_unless_told_to(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "remediator", "serve", "--state", f"sqlite:///{tmp_path}/s.db"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert result.returncode == 2
    assert "--token-file is required (or --insecure-no-auth for local use)" in result.stderr


def test_serve_refuses_a_journal_spool_beside_a_sqlite_state(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "remediator", "serve", "--insecure-no-auth",
         "--state", f"sqlite:///{tmp_path}/s.db", "--journal-spool", str(tmp_path / "spool")],
        cwd=REPO, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
        check=False,
    )  # fmt: skip
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        2,
        "remediator: --journal-spool needs a postgresql:// --state",
    )


def test_a_rule_error_is_the_only_line_on_stderr_even_insecure_and_dry_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "10-rules.yaml").write_text("rules: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "remediator", "serve", "--insecure-no-auth", "--dry-run",
         "--rules", str(tmp_path), "--state", f"sqlite:///{tmp_path}/s.db",
         "--listen", "127.0.0.1:0"],
        cwd=REPO, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin"},
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("remediator: 10-rules.yaml is not valid YAML")


def test_check_summarises_the_example_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--rules", str(REPO / "rules")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 14 rules (8 with actions) in 2 files, rule-set hash ")


@pytest.mark.parametrize(
    "command", [["check"], ["explain", "alertname=HighCPUUsage"], ["rbac"]], ids=lambda c: c[0]
)
def test_a_command_that_loads_rules_exits_2_as_serve_does_when_they_do_not_load(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "10-rules.yaml").write_text("rules: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "remediator", command[0], "--rules", str(tmp_path), *command[1:]],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "remediator: 10-rules.yaml is not valid YAML at line 2, column 1: did not find"
        " expected node content (while parsing a flow node started on line 2).\n",
    )


def test_explain_shows_rule_severity_action_and_resolved_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = ["alertname=HighCPUUsage", "namespace=llm-research", "deployment=llm-research-api"]
    assert main(["explain", "--rules", str(REPO / "rules"), *labels]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "rule: cpu-above-85-percent (10-platform.yaml)",
        "severity: SEV-3",
        "action: scale-out-api (scale_out)",
        "target: llm-research/Deployment/llm-research-api",
        "escalation: sev3-business-hours",
    ]


async def test_decisions_prints_what_the_service_recorded(tmp_path: Path) -> None:
    service = await start_remediator(tmp_path)
    try:
        assert await service.post(fixture_bytes("firing-2-alerts.json")) == 200
        for _ in range(100):
            if sum(d["step"] == "verified" for d in await service.decisions()) == 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await service.stop()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "remediator",
            "decisions",
            "--state",
            f"sqlite:///{tmp_path}/state.db",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 10
    assert "claimed" in lines[2] and "Claimed scale-out-api on llm-research/Deployment/" in lines[2]


def test_serve_stops_with_one_clear_line_when_the_kubeconfig_cannot_be_used(
    tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text("t\n")
    missing = tmp_path / "no-such-kubeconfig"
    result = subprocess.run(
        [sys.executable, "-m", "remediator", "serve", "--state", f"sqlite:///{tmp_path}/s.db",
         "--token-file", str(token), "--kubeconfig", str(missing), "--listen", "127.0.0.1:0"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"remediator: cannot use the cluster configuration from {missing}:" in result.stderr
    assert "Traceback" not in result.stderr
