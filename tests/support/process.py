"""``remediator serve`` as a real child process, the way it runs in production.

Used where the test needs what only a process has: a port Alertmanager posts to, a crash
(failpoints, ``kill -9``) and a restart on the same state.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from remediator.core.failpoints import EXIT_CODE as FAILPOINT_EXIT_CODE
from tests.support.ports import free_port
from tests.support.service import LOG_ONLY_RULES, REPO, TOKEN

READY_TIMEOUT_S = 20.0


@dataclass
class RemediatorProcess:
    proc: asyncio.subprocess.Process
    url: str
    log_path: Path

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/webhook"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def decisions(self, **query: str) -> list[dict[str, Any]]:
        params = {"limit": "1000", **query}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.url}/api/v1/decisions", params=params, headers=headers) as resp,
        ):
            assert resp.status == 200, await resp.text()
            page: dict[str, Any] = await resp.json()
        decisions: list[dict[str, Any]] = page["decisions"]
        return decisions

    async def post(self, body: bytes) -> int | None:
        """POST a webhook body; the status, or None when the connection broke."""
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(self.webhook_url, data=body, headers=headers) as resp,
            ):
                return resp.status
        except aiohttp.ClientError:
            return None

    async def wait_exit(self, timeout_s: float = 10.0) -> int:
        """The exit code; a process still running after ``timeout_s`` fails the test with
        its log's tail (what it was doing instead of exiting)."""
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            raise AssertionError(f"still running after {timeout_s} s:\n{self.log_tail()}") from None

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode


async def until_ready(url: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
    """Until ``url``'s ``/readyz`` answers 200; raises with the log's tail if ``proc`` exits
    or ``READY_TIMEOUT_S`` passes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    # Each look is bounded: the port may be someone else's, who never answers.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while loop.time() < deadline:
            if proc.returncode is not None:
                break
            try:
                async with session.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"remediator did not become ready (exit {proc.returncode}):\n{tail}")


#: A port ``free_port`` chose may be taken before the child binds it (by another test's
#: server or a client's ephemeral port): the start is tried again on another, this often.
BIND_ATTEMPTS = 3
ADDRESS_IN_USE = "address already in use"


async def start_remediator(
    workdir: Path,
    *,
    port: int | None = None,
    rules: Path = LOG_ONLY_RULES,
    failpoints: str = "",
    extra_args: tuple[str, ...] = (),
    wait_ready: bool = True,
    env: Mapping[str, str] | None = None,
) -> RemediatorProcess:
    """``remediator serve`` in ``workdir``, ready unless ``wait_ready`` is false; on a port
    of its own unless ``port`` names one (then a taken port is the caller's failure);
    ``env`` adds to (or overrides) the test's environment."""
    start = functools.partial(
        _start, workdir, rules=rules, failpoints=failpoints, extra_args=extra_args,
        wait_ready=wait_ready, env=env or {},
    )  # fmt: skip
    log_path = workdir / "remediator.log"
    for _ in range(BIND_ATTEMPTS - 1 if port is None else 0):
        logged = log_path.stat().st_size if log_path.exists() else 0
        try:
            return await start(free_port())
        except RuntimeError:
            if ADDRESS_IN_USE not in log_path.read_bytes()[logged:].decode(errors="replace"):
                raise
    return await start(port or free_port())


async def _start(
    workdir: Path,
    port: int,
    *,
    rules: Path,
    failpoints: str,
    extra_args: tuple[str, ...],
    wait_ready: bool,
    env: Mapping[str, str],
) -> RemediatorProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "token"
    token_file.write_text(TOKEN + "\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    environ.update(env)
    if failpoints:
        environ["REMEDIATOR_FAILPOINTS"] = failpoints
    log_path = workdir / "remediator.log"
    with log_path.open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "remediator", "serve",
            "--listen", f"127.0.0.1:{port}",
            "--rules", str(rules),
            "--state", f"sqlite:///{workdir / 'state.db'}",
            "--token-file", str(token_file),
            *extra_args,
            cwd=REPO, env=environ, stdout=log, stderr=log,
        )  # fmt: skip
    service = RemediatorProcess(proc, f"http://127.0.0.1:{port}", log_path)
    if wait_ready:
        try:
            await until_ready(service.url, proc, log_path)
        except BaseException:
            await service.stop()
            raise
    return service


async def crash_after_claim(
    workdir: Path, *, rules: Path, extra_args: tuple[str, ...], payload: bytes
) -> None:
    """``payload`` posted to a service that dies right after its first claim (failpoint
    ``after_claim``): the claim and its job are in the state, nothing was run."""
    crashing = await start_remediator(
        workdir, rules=rules, failpoints="after_claim", extra_args=extra_args
    )
    try:
        assert await crashing.post(payload) == 200
        assert await crashing.wait_exit(20) == FAILPOINT_EXIT_CODE
    finally:
        await crashing.stop()
