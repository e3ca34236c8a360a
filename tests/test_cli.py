"""The command line: serve's refusal to run open by accident, check, explain, decisions, and
exit status 2 from every command that loads rules when they do not load."""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remediator import __version__
from remediator.cli.main import main
from tests.support.kubeconfig import write_kubeconfig
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
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
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("ok: 15 rules (9 with actions) in 2 files, rule-set hash ")


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
    # check places the error at file:line:column; the others say it as serve does.
    where = f"{tmp_path}/10-rules.yaml:2:1: " if command[0] == "check" else "10-rules.yaml "
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        f"remediator: {where}is not valid YAML at line 2, column 1: did not find"
        " expected node content (while parsing a flow node started on line 2).\n",
    )


def test_explain_shows_rule_severity_action_and_resolved_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    labels = ["alertname=HighCPUUsage", "namespace=llm-research", "deployment=llm-research-api"]
    assert main(["explain", "--rules", str(REPO / "rules"), *labels]) == 0
    lines = capsys.readouterr().out.splitlines()
    # The whole answer, guards and all, is pinned in tests/test_explain.py.
    assert [lines[i] for i in (0, 1, 2, 4, -1)] == [
        "rule: cpu-above-85-percent (10-platform.yaml)",
        "severity: SEV-3",
        "action: scale-out-api (scale_out)",
        "target: llm-research/Deployment/llm-research-api",
        "escalation: sev3-business-hours (ops-channel at 0 s, oncall-primary at 7200 s)",
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
    lines = result.stdout.splitlines()  # newest first
    assert len(lines) == 10
    assert " verified " in lines[0] and " received " in lines[-1]
    claimed = lines[-3]
    assert "claimed" in claimed and "Claimed scale-out-api on llm-research/Deployment/" in claimed


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


# Every configuration or start-up error: one sentence on stderr, exit 2, no traceback.

BARE_ENV = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}


def remediator(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remediator", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, env={**BARE_ENV, **(env or {})}, check=False,
    )  # fmt: skip


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused start wrote to stderr, once it is proven to be the only one."""
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    return line


def state(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/s.db"


def test_a_malformed_number_in_the_environment_is_one_sentence(tmp_path: Path) -> None:
    result = remediator("serve", "--insecure-no-auth", "--state", state(tmp_path),
                        env={"REMEDIATOR_LEASE_SECONDS": "30s"})  # fmt: skip
    assert refused(result) == "remediator: REMEDIATOR_LEASE_SECONDS '30s' is not a number"


def test_the_same_number_on_the_command_line_names_the_flag(tmp_path: Path) -> None:
    result = remediator("serve", "--insecure-no-auth", "--state", state(tmp_path),
                        "--lease-seconds", "30s")  # fmt: skip
    assert refused(result) == "remediator: --lease-seconds '30s' is not a number"


@pytest.mark.parametrize("command", [["check"], ["rbac"], ["explain", "alertname=HighCPUUsage"]],
                         ids=lambda c: c[0])  # fmt: skip
def test_a_command_that_reads_only_rules_ignores_serves_settings(command: list[str]) -> None:
    result = remediator(*command, "--rules", str(REPO / "rules"),
                        env={"REMEDIATOR_LEASE_SECONDS": "30s"})  # fmt: skip
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("patterns", "complaint"),
    [
        (None, "[Errno 2] No such file or directory"),
        ("# card numbers\n\\b\\d{16}\\b\n(unclosed\n",
         'redaction pattern 2 "(unclosed" is not usable'),
        (b"\xff\xfe", "codec can't decode"),
    ],
)  # fmt: skip
def test_an_evidence_redact_file_that_is_missing_or_does_not_compile_is_one_sentence(
    tmp_path: Path, patterns: str | bytes | None, complaint: str
) -> None:
    path = tmp_path / "redact.txt"
    if isinstance(patterns, str):
        path.write_text(patterns)
    elif isinstance(patterns, bytes):
        path.write_bytes(patterns)
    result = remediator("serve", "--insecure-no-auth", "--state", state(tmp_path),
                        "--evidence-redact-file", str(path))  # fmt: skip
    line = refused(result)
    assert line.startswith(f"remediator: --evidence-redact-file {path}: "), line
    assert complaint in line


def test_a_missing_token_file_is_one_sentence(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    result = remediator("serve", "--state", state(tmp_path), "--token-file", str(missing))
    assert refused(result) == (
        f"remediator: cannot read --token-file {missing}: no such file or directory"
    )


def test_a_token_file_without_a_token_is_one_sentence(tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("# rotated out\n\n")
    result = remediator("serve", "--state", state(tmp_path), "--token-file", str(empty))
    assert refused(result) == f"remediator: --token-file {empty} holds no token"


def test_a_port_in_use_is_refused_before_the_store_is_opened(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = remediator("serve", "--insecure-no-auth", "--state", state(tmp_path),
                            "--listen", f"127.0.0.1:{port}")  # fmt: skip
    assert result.stderr.splitlines()[-1] == (
        f"remediator: cannot listen on 127.0.0.1:{port}: address already in use"
    )
    assert "Traceback" not in result.stderr and result.returncode == 2
    assert not (tmp_path / "s.db").exists()  # no store opened, so nothing reconciled


UNKNOWN_LEVEL = (
    "remediator: --log-level 'verbose' is not one of 'DEBUG', 'INFO', 'WARNING', 'ERROR',"
    " 'CRITICAL'"
)
NOT_A_STATE_URL = (
    "remediator: --state '/tmp/x.db' is not a state URL: use sqlite:///relative/path,"
    " sqlite:////absolute/path or postgresql://user@host:port/database"
)
REFUSALS = {
    "log-level": (["serve", "--insecure-no-auth", "--log-level", "verbose"], {}, UNKNOWN_LEVEL),
    "log-format": (["serve", "--insecure-no-auth"], {"REMEDIATOR_LOG_FORMAT": "xml"},
                   "remediator: REMEDIATOR_LOG_FORMAT 'xml' is not one of 'text', 'json',"
                   " 'logfmt'"),
    "state-path-serve": (["serve", "--insecure-no-auth", "--state", "/tmp/x.db"], {},
                         NOT_A_STATE_URL),
    "state-path-decisions": (["decisions", "--state", "/tmp/x.db"], {}, NOT_A_STATE_URL),
    "dry-run-maybe": (["serve", "--insecure-no-auth"], {"REMEDIATOR_DRY_RUN": "maybe"},
                      "remediator: REMEDIATOR_DRY_RUN 'maybe' is not a boolean: use 1, true,"
                      " yes, on or 0, false, no, off"),
    "misspelt-variable": (["check"], {"REMEDIATOR_DRYRUN": "1"},
                          "remediator: REMEDIATOR_DRYRUN is not a setting; did you mean"
                          " REMEDIATOR_DRY_RUN?"),
    "listen": (["serve", "--insecure-no-auth", "--listen", "9095"], {},
               "remediator: --listen '9095' is not HOST:PORT"),
    "port": (["serve", "--insecure-no-auth", "--listen", "127.0.0.1:70000"], {},
             "remediator: --listen port '70000' must be at most 65535"),
    "unknown-flag": (["serve", "--dry-rum"], {},
                     "remediator: unrecognized arguments: --dry-rum (see remediator --help)"),
    "flag-value": (["decisions", "--limit", "ten"], {},
                   "remediator: argument --limit: a whole number from 1 to 1000"
                   " (see remediator decisions --help)"),
    "no-command": ([], {}, "remediator: the following arguments are required: COMMAND"
                   " (see remediator --help)"),
    "spool-beside-sqlite": (["serve", "--insecure-no-auth", "--journal-spool", "spool"], {},
                            "remediator: --journal-spool needs a postgresql:// --state"),
    "key-without-cert": (["serve", "--insecure-no-auth", "--tls-key", "k.pem"], {},
                         "remediator: --tls-key and --tls-client-ca need --tls-cert"),
    "bad-bucket": (["serve", "--insecure-no-auth", "--s3-bucket", "My_Bucket"], {},
                   "remediator: --s3-bucket 'My_Bucket' is not an S3 bucket name: 3 to 63"
                   " lowercase letters, digits, dots and hyphens, starting and ending with a"
                   " letter or digit"),
    "bad-sse": (["serve", "--insecure-no-auth", "--s3-bucket", "b-1", "--s3-sse", "kms"], {},
                "remediator: --s3-sse 'kms' is not one of '', 'AES256', 'aws:kms'"),
    "kms-key-without-kms": (["serve", "--insecure-no-auth", "--s3-bucket", "b-1",
                             "--s3-kms-key-id", "alias/k"], {},
                            "remediator: --s3-kms-key-id needs --s3-sse aws:kms"),
    "retention-without-archive": (["serve", "--insecure-no-auth"],
                                  {"REMEDIATOR_AUDIT_RETENTION_SECONDS": "86400"},
                                  "remediator: --audit-retention-seconds needs --s3-bucket: only"
                                  " archived decisions are deleted"),
    "attempts-zero": (["serve", "--insecure-no-auth", "--s3-max-attempts", "0"], {},
                      "remediator: --s3-max-attempts '0' must be at least 1"),
    "rules-not-a-directory": (["check", "--rules", "README.md"], {},
                              "remediator: rules directory README.md is not a directory."),
}  # fmt: skip


@pytest.mark.parametrize(("args", "env", "sentence"), REFUSALS.values(), ids=REFUSALS)
def test_a_configuration_error_is_one_sentence_and_exit_2(
    args: list[str], env: dict[str, str], sentence: str
) -> None:
    assert refused(remediator(*args, env=env)) == sentence


def test_a_tls_file_that_is_not_pem_is_one_sentence(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("not a certificate\n")
    result = remediator("serve", "--insecure-no-auth", "--state", state(tmp_path),
                        "--tls-cert", str(cert), "--listen", "127.0.0.1:0")  # fmt: skip
    assert refused(result) == (
        f"remediator: cannot use the TLS files {cert}: not a PEM certificate and key, or a key"
        " that does not match the certificate"
    )


@pytest.mark.parametrize("command", ["serve", "decisions"])
def test_an_unreachable_postgresql_is_one_sentence_naming_host_and_port(command: str) -> None:
    port = free_port()  # nothing listens there
    flags = ["--insecure-no-auth", "--listen", "127.0.0.1:0"] if command == "serve" else []
    result = remediator(command, "--state", f"postgresql://remediator@127.0.0.1:{port}/state",
                        *flags)  # fmt: skip
    assert "Traceback" not in result.stderr and result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"remediator: cannot connect to the PostgreSQL state store at 127.0.0.1:{port}:"
        " connection refused"
    )


async def test_a_refused_login_to_a_real_postgresql_is_one_sentence(
    pg: PostgresServer, tmp_path: Path
) -> None:
    dsn = (await pg.create_state_database()).replace("state-secret", "wrong-secret")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remediator", "serve", "--insecure-no-auth", "--state", dsn,
        "--listen", "127.0.0.1:0", cwd=REPO, env=BARE_ENV, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert b"Traceback" not in stderr and proc.returncode == 2
    assert stderr.decode().splitlines()[-1] == (
        f"remediator: cannot connect to the PostgreSQL state store at {pg.host}:{pg.port}:"
        ' password authentication failed for user "state"'
    )


def test_version_prints_the_package_version() -> None:
    result = remediator("--version")
    assert (result.returncode, result.stdout) == (0, f"remediator {__version__}\n")


def test_help_shows_each_settings_default_and_variable() -> None:
    result = remediator("serve", "--help")
    assert result.returncode == 0
    assert "(default: 127.0.0.1:9095; $REMEDIATOR_LISTEN)" in result.stdout
    assert "(default: 30.0; $REMEDIATOR_LEASE_SECONDS)" in result.stdout
    assert "(default: off; $REMEDIATOR_DRY_RUN)" in result.stdout
    assert "(default: text; $REMEDIATOR_LOG_FORMAT)" in result.stdout
    assert "(default: 100)" in remediator("decisions", "--help").stdout


def test_top_level_help_says_what_it_does_and_where_to_start() -> None:
    out = remediator("--help").stdout
    assert "Receives Prometheus Alertmanager webhooks" in out
    assert "Where to start:" in out
    for command in ("serve", "check", "explain", "rbac", "decisions"):
        assert f"\n    {command}" in out


def test_a_flag_beats_its_variable_on_the_real_command_line() -> None:
    env = {"REMEDIATOR_RULES": "/no/such/rules"}
    checked = remediator("check", "--rules", "rules", env=env).stdout.splitlines()
    assert checked[-1].startswith("ok: 15 rules")
    assert refused(remediator("check", env=env)) == (
        "remediator: rules directory /no/such/rules does not exist."
    )


# Output into a closed pipe, and the dry-run promises.


async def test_decisions_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    service = await start_remediator(tmp_path)
    try:
        assert await service.post(fixture_bytes("firing-2-alerts.json")) == 200
        for _ in range(100):
            if len(await service.decisions()) >= 10:
                break
            await asyncio.sleep(0.05)
    finally:
        await service.stop()
    command = [sys.executable, "-m", "remediator", "decisions", "--json",
               "--state", f"sqlite:///{tmp_path}/state.db"]  # fmt: skip
    piped = subprocess.run(
        " ".join(shlex.quote(part) for part in command) + " | head -3", shell=True,
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (len(piped.stdout.splitlines()), piped.stderr) == (3, "")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    reader_gone = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, stdout=write_end, stderr=asyncio.subprocess.PIPE
    )
    os.close(write_end)
    _, stderr = await asyncio.wait_for(reader_gone.communicate(), 60)
    assert (reader_gone.returncode, stderr) == (1, b"")


def serve_until_listening(command: list[str], env: dict[str, str], timeout_s: float = 60) -> str:
    """Start ``command``, wait for its "listening on" log line, stop it; its stderr."""
    proc = subprocess.Popen(command, cwd=REPO, env={**BARE_ENV, **env}, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        for line in proc.stderr:
            lines.append(line)
            if " listening on " in line or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    return "".join(lines) + rest


def test_dry_run_on_in_the_environment_starts_dry_run(tmp_path: Path) -> None:
    stderr = serve_until_listening(
        [sys.executable, "-m", "remediator", "serve", "--insecure-no-auth",
         "--state", state(tmp_path), "--listen", "127.0.0.1:0"],
        {"REMEDIATOR_DRY_RUN": "on"},
    )  # fmt: skip
    assert "dry-run: actions are planned and audited, none is run" in stderr


def test_make_run_stays_dry_run_with_a_kubeconfig_exported(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}", "t")
    env = {"KUBECONFIG": str(kubeconfig), "RUN_STATE_DIR": str(tmp_path / "state"),
           "REMEDIATOR_LISTEN": f"127.0.0.1:{free_port()}"}  # fmt: skip
    stderr = serve_until_listening([str(REPO / "scripts" / "run-local")], env)
    assert "dry-run: actions are planned and audited, none is run" in stderr
    assert "no cluster configured" not in stderr  # the kubeconfig was read, and still dry-run
