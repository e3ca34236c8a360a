"""``remediator decisions``: the audit read back from the store, newest first (what is
happening now), with the HTTP API's filters; ``--follow`` prints the newest in the order
they happened, then each new record as it is written, until interrupted.

Where it sits: an offline command of ``cli.main``; it opens the store as ``serve`` names it
(``--state``), only to read, beside a running ``serve``. A SQLite file that does not exist
is refused, not created.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import replace

from remediator.audit.api import MAX_PAGE, record_json
from remediator.cli import failures
from remediator.cli.offline import state_settings, zoned_time
from remediator.core.model import AuditRecord, Outcome, Severity, Step, StopReason
from remediator.store import open_store
from remediator.store.contract import AuditQuery, Store

FOLLOW_POLL_S = 1.0
"""How often ``--follow`` looks for new records."""
MAX_LIMIT = MAX_PAGE
"""The HTTP API's largest page, the command's too."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episode", type=int, help="only this episode's decisions")
    parser.add_argument("--fingerprint", help="only this alert's decisions")
    parser.add_argument("--rule", help="only this rule's decisions")
    parser.add_argument("--alertname", help="only this alert name's decisions")
    parser.add_argument("--severity", choices=[s.value for s in Severity], help="only these")
    parser.add_argument("--outcome", choices=[o.value for o in Outcome], metavar="OUTCOME",
                        help="only this outcome (as the HTTP API's outcome filter)")  # fmt: skip
    parser.add_argument("--step", choices=[s.value for s in Step], metavar="STEP",
                        help="only this step (received, refused, acted, ...)")  # fmt: skip
    parser.add_argument("--reason", choices=[r.value for r in StopReason], metavar="REASON",
                        help="only this reason (cooldown, storm, dry_run, ...)")  # fmt: skip
    parser.add_argument("--since", metavar="TIME", help="only those at TIME or later (ISO 8601)")
    parser.add_argument("--until", metavar="TIME", help="only those before TIME (ISO 8601)")
    parser.add_argument("--limit", type=_limit, default=100, help="at most this many (1-1000)")
    parser.add_argument("--oldest-first", action="store_true", help="oldest first instead")
    parser.add_argument(
        "--follow", action="store_true",
        help="print the newest in the order they happened, then each new one (Ctrl-C stops)",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def query_of(args: argparse.Namespace) -> AuditQuery:
    """The audit query the flags ask for; ``ConfigError`` for a time without its zone."""
    return AuditQuery(
        episode_id=args.episode, fingerprint=args.fingerprint, rule=args.rule,
        severity=args.severity, outcome=args.outcome, step=args.step, alertname=args.alertname,
        reason=args.reason, limit=args.limit,
        since=zoned_time("--since", args.since) if args.since else None,
        until=zoned_time("--until", args.until) if args.until else None,
        newest_first=not args.oldest_first,
    )  # fmt: skip


def decisions(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    query = query_of(args)
    settings = state_settings(args, environ, {"state_url"})
    with failures.at_start(settings):
        store = open_store(settings, reads_only=True)  # a running serve keeps its file
        return asyncio.run(_read(store, query, args))


async def _read(store: Store, query: AuditQuery, args: argparse.Namespace) -> int:
    show = _json_line if args.json else _text_line
    await store.open()
    try:
        if not args.follow:
            for record in await store.decisions(query):
                print(show(record))
            return 0
        return await follow(store, query, show)
    finally:
        await store.close()


async def follow(
    store: Store,
    query: AuditQuery,
    show: Callable[[AuditRecord], str],
    poll_s: float = FOLLOW_POLL_S,
) -> int:
    """The newest ``query.limit`` records, oldest of them first, then every newer one, in
    the order written, until cancelled (Ctrl-C: exit 0)."""
    newest = await store.decisions(replace(query, newest_first=True))
    for record in reversed(newest):
        print(show(record), flush=True)
    last = (newest[0].id or 0) if newest else 0
    later = replace(query, newest_first=False, before_id=None, limit=MAX_LIMIT)
    try:
        while True:
            page = await store.decisions(replace(later, after_id=last))
            for record in page:
                print(show(record), flush=True)
                last = record.id or last
            if len(page) < MAX_LIMIT:
                await asyncio.sleep(poll_s)
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0


def _json_line(record: AuditRecord) -> str:
    return json.dumps(record_json(record), sort_keys=True)


def _text_line(record: AuditRecord) -> str:
    at = record.at.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{at}  ep={record.episode_id}  {record.step:<10} {record.outcome.value:<10}"
        f" {record.severity or '-':<5}  {record.sentence}"
    )
