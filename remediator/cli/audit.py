"""``remediator audit export --out DIR``: the archive, written from the store to a directory
in the layout and format the S3 archive has (``audit/archive.py``): the journal's bodies and
every decision, gzipped JSON lines, one manifest per object. ``remediator replay DIR`` reads
it back, as it reads a copy of the bucket's prefix (``aws s3 sync s3://BUCKET/PREFIX DIR``).

Each file is written whole or not at all (a temporary name, then a rename); exporting into a
directory that holds an earlier export overwrites the same objects with the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from remediator.audit.archive import STREAMS, Batch
from remediator.audit.shipper import Rows
from remediator.cli import failures, offline
from remediator.config import Settings
from remediator.store import open_store


def export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    settings = offline.state_settings(args, environ, {"state_url", "archive_batch_rows"})
    with failures.at_start(settings):
        return asyncio.run(_export(settings, Path(args.out)))


async def _export(settings: Settings, out: Path) -> int:
    store = open_store(settings, reads_only=True)  # a running serve keeps its file
    await store.open()
    try:
        rows = Rows(store, settings.archive_batch_rows)
        counts = {}
        for stream in STREAMS:
            counts[stream] = after = 0
            while found := await rows.batch_after(stream, after):
                batch = Batch(stream, found)
                body = batch.body()
                _write(out / batch.key(""), body)
                _write(out / batch.manifest_key(""), batch.manifest("", body))
                counts[stream] += len(found)
                after = batch.last_id
    finally:
        await store.close()
    print(f"exported {counts['journal']} journal entries and {counts['decisions']} decisions"
          f" to {out}", file=sys.stderr)  # fmt: skip
    return 0


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
