"""``remediator serve`` leaves no process behind: the validation pool's forkserver, the
multiprocessing resource tracker and the validation workers go when serve goes, whether it
stops cleanly (SIGTERM) or is killed (``kill -9``)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.support.process import RemediatorProcess, start_remediator
from tests.support.service import fixture_bytes

#: How long serve's whole tree may outlive it.
GONE_WITHIN_S = 1.0
#: Validation workers started: with the forkserver and the resource tracker, 4 processes.
WORKERS = 2

#: A process as /proc knows it: its pid and its start time (a reused pid has another).
Identity = tuple[int, int]


def _stat(pid: int) -> tuple[str, int, int] | None:
    """State, parent pid and start time of ``pid``; None when there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def descendants(root: int) -> set[Identity]:
    """Every process under ``root``: children, their children, and so on."""
    children: dict[int, list[Identity]] = {}
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None:
            children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found: set[Identity] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


def alive(process: Identity) -> bool:
    """Still running: a zombie waiting for its reaper has already exited."""
    stat = _stat(process[0])
    return stat is not None and stat[2] == process[1] and stat[0] != "Z"


async def survivors(tree: set[Identity], within_s: float) -> set[Identity]:
    """The processes of ``tree`` still alive after ``within_s``; empty as soon as none is."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        left = {process for process in tree if alive(process)}
        if not left or loop.time() >= deadline:
            return left
        await asyncio.sleep(0.01)


async def serving_with_workers(workdir: Path) -> tuple[RemediatorProcess, set[Identity]]:
    """A serve that has validated a webhook, and its tree (forkserver, tracker, workers)."""
    service = await start_remediator(workdir, extra_args=("--validation-workers", str(WORKERS)))
    try:
        assert await service.post(fixture_bytes("firing-2-alerts.json")) == 200
        tree = descendants(service.proc.pid)
        assert len(tree) >= WORKERS + 2, tree
    except BaseException:
        await service.stop()
        raise
    return service, tree


async def test_a_killed_serve_leaves_no_process_of_its_tree_behind(tmp_path: Path) -> None:
    service, tree = await serving_with_workers(tmp_path)
    try:
        os.kill(service.proc.pid, signal.SIGKILL)
        left = await survivors(tree, GONE_WITHIN_S)
        assert await service.wait_exit() == -signal.SIGKILL
    finally:
        await service.stop()
    assert not left, f"{len(left)} of {len(tree)} processes outlived serve: {sorted(left)}"


async def test_a_stopped_serve_leaves_no_process_of_its_tree_behind(tmp_path: Path) -> None:
    service, tree = await serving_with_workers(tmp_path)
    try:
        assert await service.stop() == 0
        left = await survivors(tree, GONE_WITHIN_S)
    finally:
        await service.stop()
    assert not left, f"{len(left)} of {len(tree)} processes outlived serve: {sorted(left)}"
