"""``remediator test FILE…``: rule unit tests, as ``promtool test rules`` runs Prometheus's.

Each file is loaded first, with its rules (``simulate.cases.prepare``); then each case runs
on a fresh offline engine (``simulate.engine``): the real pipeline, guards and claims on a
temporary SQLite store, actions in dry-run, notifications recorded, never sent. Output: a
line per file, ``PASS``/``FAIL`` per case with the expected-against-got text, and a
summary. Exit status: 0 every case passed, 1 one failed, 2 a file does not load.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from remediator.core.errors import ConfigError
from remediator.simulate import junit
from remediator.simulate.cases import FileResult, matching, prepare, run_file

CASE_FAILED = 1


def _report(result: FileResult) -> list[str]:
    lines = [f"Unit testing {result.path}"]
    for case in result.cases:
        lines.append(f"  {'FAIL' if case.failures else 'PASS'}  {case.name}")
        for failure in case.failures:
            lines.extend(f"        {line}" for line in failure.split("\n"))
    return lines


def _summary(results: Sequence[FileResult]) -> str:
    cases = [c for r in results for c in r.cases]
    failed = sum(1 for c in cases if c.failures)
    files = f"{len(results)} file{'' if len(results) == 1 else 's'}"
    if failed:
        return f"failed: {failed} of {len(cases)} cases in {files}"
    return f"ok: {len(cases)} case{'' if len(cases) == 1 else 's'} passed in {files}"


def run_tests(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    selected = matching(args.run_cases)
    prepared = [prepare(Path(name)) for name in args.files]  # all load before any runs

    async def run_all() -> list[FileResult]:
        return [await run_file(p, selected) for p in prepared]

    results = asyncio.run(run_all())
    for result in results:
        print("\n".join(_report(result)))
    print(_summary(results))
    if args.junit is not None:
        try:
            Path(args.junit).write_bytes(junit.document(results))
        except OSError as exc:
            raise ConfigError(
                f"--junit {args.junit}: cannot be written ({exc.strerror})."
            ) from None
    return CASE_FAILED if any(c.failures for r in results for c in r.cases) else 0
