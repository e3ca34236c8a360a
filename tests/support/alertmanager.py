"""Start Debian's ``prometheus-alertmanager`` (``/usr/bin/prometheus-alertmanager``) for tests.

Each instance gets its own config file, storage directory and log file under ``workdir``,
listens on a free loopback port and runs with clustering disabled
(``--cluster.listen-address=``), so two instances are independent "split-brain" peers.

Typical use::

    async with alertmanager(tmp_path / "am", "http://127.0.0.1:8080/webhook",
                            credentials_file=token_file) as am:
        await am.post_alerts([{"labels": {"alertname": "X"}}])
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

import aiohttp

from tests.support.ports import free_port

ALERTMANAGER_BINARY = pathlib.Path("/usr/bin/prometheus-alertmanager")
ZERO_TIME = "0001-01-01T00:00:00Z"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
LOG_FILE_NAME = "alertmanager.log"
CONFIG_FILE_NAME = "alertmanager.yml"
RECEIVER_NAME = "test-webhook"


class AlertmanagerError(RuntimeError):
    """Alertmanager failed to start or rejected a request."""


@dataclasses.dataclass
class AlertmanagerProcess:
    """A running Alertmanager started by :func:`start_alertmanager`."""

    api_url: str
    proc: asyncio.subprocess.Process
    workdir: pathlib.Path
    log_path: pathlib.Path
    _log_file: IO[bytes] = dataclasses.field(repr=False)

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST ``alerts`` (API v2 form) to ``/api/v2/alerts``; raise on a non-2xx answer."""
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(f"{self.api_url}/api/v2/alerts", json=alerts) as resp,
        ):
            if not 200 <= resp.status < 300:
                body = await resp.text()
                raise AlertmanagerError(
                    f"POST /api/v2/alerts answered {resp.status}: {body.strip()}"
                )

    async def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after a timeout) and close its log."""
        try:
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.terminate()
                try:
                    await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT_S)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    await self.proc.wait()
        finally:
            self._log_file.close()

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the Alertmanager log."""
        return _tail(self.log_path, lines)


def to_api_alert(webhook_alert: dict[str, Any]) -> dict[str, Any]:
    """Convert an alert from a webhook payload to the API v2 ``POST /api/v2/alerts`` form.

    Keeps labels, annotations, startsAt, endsAt and generatorURL; drops status and
    fingerprint, and drops a firing alert's zero ``endsAt`` (``0001-01-01T00:00:00Z``).
    """
    out: dict[str, Any] = {
        "labels": dict(webhook_alert.get("labels") or {}),
        "annotations": dict(webhook_alert.get("annotations") or {}),
    }
    for key in ("startsAt", "endsAt", "generatorURL"):
        value = webhook_alert.get(key)
        if value and not (key == "endsAt" and value == ZERO_TIME):
            out[key] = value
    return out


def _tail(path: pathlib.Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _write_config(
    workdir: pathlib.Path,
    webhook_url: str,
    *,
    credentials_file: pathlib.Path | None,
    group_wait: str,
    group_interval: str,
    repeat_interval: str,
    group_by: list[str],
    send_resolved: bool,
    max_alerts: int,
    resolve_timeout: str,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> pathlib.Path:
    webhook: dict[str, Any] = {
        "url": webhook_url,
        "send_resolved": send_resolved,
        "max_alerts": max_alerts,
    }
    if credentials_file is not None:
        webhook["http_config"] = {
            "authorization": {"type": "Bearer", "credentials_file": str(credentials_file)}
        }
    config = {
        "global": {"resolve_timeout": resolve_timeout},
        "route": {
            "receiver": RECEIVER_NAME,
            "group_by": group_by,
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        },
        "receivers": [{"name": RECEIVER_NAME, "webhook_configs": [webhook]}],
    }
    if edit is not None:
        edit(config)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    path = workdir / CONFIG_FILE_NAME
    # JSON is valid YAML; avoids depending on the YAML emitter's quoting choices.
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


async def _wait_ready(am: AlertmanagerProcess, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    client_timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        while True:
            if am.proc.returncode is not None:
                raise AlertmanagerError(
                    f"alertmanager exited with code {am.proc.returncode} before becoming "
                    f"ready; log tail:\n{am.log_tail()}"
                )
            try:
                async with session.get(f"{am.api_url}/-/ready") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() >= deadline:
                raise AlertmanagerError(
                    f"alertmanager at {am.api_url} not ready after {timeout_s:.0f}s; "
                    f"log tail:\n{am.log_tail()}"
                )
            await asyncio.sleep(0.1)


async def start_alertmanager(
    workdir: pathlib.Path,
    webhook_url: str,
    *,
    credentials_file: pathlib.Path | None,
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
    group_by: list[str] | None = None,
    send_resolved: bool = True,
    max_alerts: int = 0,
    resolve_timeout: str = "5m",
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> AlertmanagerProcess:
    """Write ``workdir/alertmanager.yml``, start Alertmanager and wait until it is ready.

    All alerts go to one webhook receiver at ``webhook_url`` (Bearer token read from
    ``credentials_file`` if given); ``edit`` may change the configuration (as a dict)
    before it is written, to add routes, receivers or time intervals. Output goes to
    ``workdir/alertmanager.log``. Raises :class:`AlertmanagerError` (with the log tail) if
    it exits or is not ready within ~15 s.
    """
    config_path = _write_config(
        workdir,
        webhook_url,
        credentials_file=credentials_file,
        group_wait=group_wait,
        group_interval=group_interval,
        repeat_interval=repeat_interval,
        group_by=["alertname"] if group_by is None else list(group_by),
        send_resolved=send_resolved,
        max_alerts=max_alerts,
        resolve_timeout=resolve_timeout,
        edit=edit,
    )
    port = free_port()
    log_path = workdir / LOG_FILE_NAME
    log_file = log_path.open("ab")
    try:
        proc = await asyncio.create_subprocess_exec(
            str(ALERTMANAGER_BINARY),
            f"--config.file={config_path}",
            f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(workdir),
        )
    except BaseException:
        log_file.close()
        raise
    am = AlertmanagerProcess(
        api_url=f"http://127.0.0.1:{port}",
        proc=proc,
        workdir=workdir,
        log_path=log_path,
        _log_file=log_file,
    )
    try:
        await _wait_ready(am, READY_TIMEOUT_S)
    except BaseException:
        await am.stop()
        raise
    return am


@contextlib.asynccontextmanager
async def alertmanager(
    workdir: pathlib.Path,
    webhook_url: str,
    *,
    credentials_file: pathlib.Path | None,
    group_wait: str = "1s",
    group_interval: str = "2s",
    repeat_interval: str = "1h",
    group_by: list[str] | None = None,
    send_resolved: bool = True,
    max_alerts: int = 0,
    resolve_timeout: str = "5m",
) -> AsyncIterator[AlertmanagerProcess]:
    """Async context manager around :func:`start_alertmanager` that always stops it."""
    am = await start_alertmanager(
        workdir,
        webhook_url,
        credentials_file=credentials_file,
        group_wait=group_wait,
        group_interval=group_interval,
        repeat_interval=repeat_interval,
        group_by=group_by,
        send_resolved=send_resolved,
        max_alerts=max_alerts,
        resolve_timeout=resolve_timeout,
    )
    try:
        yield am
    finally:
        await am.stop()
