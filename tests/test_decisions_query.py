"""Reading the audit back, newest first and filtered: ``GET /api/v1/decisions`` (its
``order``, ``before``, ``step``, ``alertname`` and ``reason``, and the hostile values of every
parameter) against a served app, and ``remediator decisions`` (the same filters, newest first
by default, ``--follow`` as a real child process, a ``--state`` file that does not exist)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from remediator.cli.main import main
from tests.support.service import REPO, TOKEN, ServiceUnderTest, fixture_json, serve, settings_for


async def recorded(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    """A state file holding the decisions of two firing alerts (the log-only rules), and
    those decisions, oldest first."""
    async with serve(settings_for(tmp_path)) as service:
        status, _ = await service.post(fixture_json("firing-2-alerts.json"))
        assert status == 200
        for _ in range(200):
            records = await service.decisions()
            if sum(r["step"] == "verified" for r in records) == 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"not decided: {[r['step'] for r in records]}")
    return tmp_path / "state.db", records


async def page(service: ServiceUnderTest, query: str) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with service.session.get(f"{service.url}/api/v1/decisions?{query}", headers=headers) as r:
        return r.status, await r.json()


async def test_the_api_reads_newest_first_page_by_page_and_filters_by_step_and_alertname(
    tmp_path: Path,
) -> None:
    _, oldest_first = await recorded(tmp_path)
    ids = [r["id"] for r in oldest_first]
    async with serve(settings_for(tmp_path)) as service:
        status, first = await page(service, "order=newest&limit=3")
        assert status == 200 and [r["id"] for r in first["decisions"]] == ids[::-1][:3]
        assert "next_after" not in first and first["next_before"] == ids[-3]
        _, second = await page(service, f"order=newest&limit=3&before={first['next_before']}")
        assert [r["id"] for r in second["decisions"]] == ids[::-1][3:6]
        _, verified = await page(service, "step=verified&order=newest")
        assert [r["step"] for r in verified["decisions"]] == ["verified", "verified"]
        assert verified["next_before"] is None
        name = oldest_first[0]["alertname"]
        _, named = await page(service, f"alertname={name}")
        assert named["decisions"] and {r["alertname"] for r in named["decisions"]} == {name}
        _, none = await page(service, "reason=storm")
        assert none == {"decisions": [], "next_after": None}


HOSTILE = {
    "step-unknown": ("step=nope", "Parameter step: must be one of"),
    "step-script": ("step=%3Cscript%3E", "Parameter step: must be one of"),
    "reason-unknown": ("reason=cooldown%00", "Parameter reason: must be one of"),
    "order-sideways": ("order=sideways", "Parameter order: must be one of newest, oldest."),
    "before-negative": ("before=-1", "Parameter before: must be a whole number."),
    "before-zero": ("before=0", "Parameter before: must be between 1 and"),
    "before-arabic-digit": ("before=%D9%A1", "Parameter before: must be a whole number."),
    "before-superscript": ("before=%C2%B2", "Parameter before: must be a whole number."),
    "after-huge": ("after=" + "9" * 40, "Parameter after: must be a whole number."),
    "after-past-int64": (f"after={2**63}", "Parameter after: must be between 0 and"),
    "episode-fullwidth": ("episode=%EF%BC%91", "Parameter episode: must be a whole number."),
    "unknown": ("sort=id", "Unknown parameter; known ones are"),
}


@pytest.mark.parametrize(("query", "said"), HOSTILE.values(), ids=HOSTILE)
async def test_a_bad_parameter_is_a_400_naming_it_and_the_service_goes_on(
    tmp_path: Path, query: str, said: str
) -> None:
    async with serve(settings_for(tmp_path)) as service:
        status, body = await page(service, query)
        assert (status, body["error"]) == (400, "invalid_query")
        assert body["detail"].startswith(said), body
        assert "<script>" not in body["detail"]
        assert (await page(service, "order=newest"))[0] == 200


async def test_the_largest_id_reads_as_an_id_on_sqlite(tmp_path: Path) -> None:
    async with serve(settings_for(tmp_path)) as service:
        status, body = await page(service, f"before={2**63 - 1}&order=newest")
        assert status == 200 and body["decisions"] == []


def lines_of(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["decisions", "--json", *args], environ={}) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_command_reads_newest_first_with_the_apis_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, oldest_first = asyncio.run(recorded(tmp_path))
    ids = [r["id"] for r in oldest_first]
    where = ("--state", f"sqlite:///{state}")
    assert [r["id"] for r in lines_of(capsys, *where)] == ids[::-1]
    assert [r["id"] for r in lines_of(capsys, *where, "--oldest-first")] == ids
    assert [r["id"] for r in lines_of(capsys, *where, "--limit", "2")] == ids[::-1][:2]
    verified = lines_of(capsys, *where, "--step", "verified", "--severity", "SEV-3")
    assert [r["step"] for r in verified] == ["verified", "verified"]
    name = oldest_first[0]["alertname"]
    assert {r["alertname"] for r in lines_of(capsys, *where, "--alertname", name)} == {name}
    assert lines_of(capsys, *where, "--reason", "storm") == []
    assert (
        lines_of(capsys, *where, "--outcome", "succeeded", "--limit", "1")
        == [r for r in oldest_first[::-1] if r["outcome"] == "succeeded"][:1]
    )
    later = oldest_first[-1]["at"]
    assert [r["id"] for r in lines_of(capsys, *where, "--since", later)] == [
        r["id"] for r in oldest_first[::-1] if r["at"] >= later
    ]
    assert lines_of(capsys, *where, "--until", oldest_first[0]["at"]) == []


REFUSED = {
    "missing-file": (["--state", "sqlite:///{tmp}/nope/typo.db"],
                     "remediator: there is no state file {tmp}/nope/typo.db: give the --state"
                     " a serve writes\n"),
    "since-without-zone": (["--since", "2026-12-01T09:00:00"],
                           "remediator: --since must be a time with its zone, such as"
                           " 2026-12-01T09:00:00Z, not '2026-12-01T09:00:00'\n"),
    "until-garbage": (["--until", "yesterday"],
                      "remediator: --until must be a time with its zone, such as"
                      " 2026-12-01T09:00:00Z, not 'yesterday'\n"),
}  # fmt: skip


@pytest.mark.parametrize(("args", "said"), REFUSED.values(), ids=REFUSED)
def test_a_missing_state_file_or_a_bad_time_is_one_sentence_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    given = [a.format(tmp=tmp_path) for a in args]
    if "--state" not in given:
        given += ["--state", f"sqlite:///{tmp_path}/state.db"]
    assert main(["decisions", *given], environ={}) == 2
    assert capsys.readouterr().err == said.format(tmp=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no directory, no file, no lock


@pytest.mark.parametrize(
    "value", ["0", "1001", "-5", "ten", "\u0661\u0660", "1e3", str(10**40)], ids=lambda v: repr(v)
)
def test_a_limit_outside_1_to_1000_is_refused(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["decisions", "--limit", value], environ={})
    assert exit_.value.code == 2
    assert "argument --limit: a whole number from 1 to 1000" in capsys.readouterr().err


async def test_follow_prints_the_newest_then_each_new_decision_until_interrupted(
    tmp_path: Path,
) -> None:
    state, first = await recorded(tmp_path)
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remediator", "decisions", "--follow", "--json", "--limit", "3",
        "--state", f"sqlite:///{state}", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert follower.stdout is not None
    try:

        async def line() -> dict[str, Any]:
            assert follower.stdout is not None
            got: dict[str, Any] = json.loads(await asyncio.wait_for(follower.stdout.readline(), 30))
            return got

        # The newest three, in the order they happened.
        assert [(await line())["id"] for _ in range(3)] == [r["id"] for r in first[-3:]]
        async with serve(settings_for(tmp_path)) as service:  # the same file, written on
            alert = fixture_json("firing-2-alerts.json")
            alert["groupKey"] = '{}:{alertname="Later"}'
            for a in alert["alerts"]:
                a["labels"]["alertname"] = "Later"
            assert (await service.post(alert))[0] == 200
            later = [await line() for _ in range(4)]
        assert {r["alertname"] for r in later} == {"Later"}
        assert all(r["id"] > first[-1]["id"] for r in later)
        assert [r["id"] for r in later] == sorted(r["id"] for r in later)
    finally:
        follower.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(follower.communicate(), 30)
    assert follower.returncode == 0 and err == b"", err
