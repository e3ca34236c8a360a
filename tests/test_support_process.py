"""The test harness's own start of ``remediator serve``: a port taken between choosing it and
the child binding it (another test's server, a client's ephemeral port) costs a retry on
another port, not the test; a port the caller named is not retried."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import process
from tests.support.ports import free_port


@pytest.fixture
def taken() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def test_a_port_taken_before_the_child_binds_it_is_retried_on_another(
    tmp_path: Path, taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    ports = iter([taken, free_port()])
    monkeypatch.setattr(process, "free_port", lambda: next(ports))
    service = await process.start_remediator(tmp_path)
    try:
        assert not service.url.endswith(f":{taken}")
        assert "address already in use" in service.log_path.read_text()
    finally:
        assert await service.stop() == 0


async def test_a_port_the_caller_named_is_its_own_and_not_retried(
    tmp_path: Path, taken: int
) -> None:
    with pytest.raises(RuntimeError, match="address already in use"):
        await process.start_remediator(tmp_path, port=taken)
