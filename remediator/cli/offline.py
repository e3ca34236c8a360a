"""The commands that serve nothing: ``rbac`` (reads the rules) and ``journal export``
(writes the journal's webhook bodies as the stream ``replay`` reads); ``check``,
``explain``, ``decisions``, ``test`` and ``replay`` have modules of their own. Each reads
only the settings it needs, with the same precedence and the same error sentences as
``serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path

from remediator.actions.registry import default_registry
from remediator.audit.archive import journal_row
from remediator.cli import failures, options
from remediator.config import Settings, from_sources
from remediator.core.errors import ConfigError
from remediator.ruleset.load import load_rules
from remediator.ruleset.rbac import manifests
from remediator.ruleset.rules import RuleSet
from remediator.store import open_store


def state_settings(
    args: argparse.Namespace, environ: Mapping[str, str], fields: Collection[str]
) -> Settings:
    flags = options.given(args, (options.RULES, options.STATE))
    # Nothing is served here, so there is no webhook token to require.
    flags["insecure_no_auth"] = ("", True)
    return from_sources(flags, environ, only={*fields, "insecure_no_auth"})


def rules_dir(args: argparse.Namespace, environ: Mapping[str, str]) -> Path:
    """The rules directory, from ``--rules`` or ``REMEDIATOR_RULES``, as ``serve`` reads it."""
    return state_settings(args, environ, {"rules_dir"}).rules_dir


def rules(args: argparse.Namespace, environ: Mapping[str, str]) -> RuleSet:
    """The rule set, loaded as ``serve`` loads it; warnings go to stderr."""
    return load_rules(rules_dir(args, environ), default_registry(), _warn)  # RuleFileError: 2


def _warn(sentence: str) -> None:
    print(f"remediator: warning: {sentence}", file=sys.stderr)


def rbac(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    ruleset = rules(args, environ)
    text = manifests(
        ruleset,
        args.service_account,
        args.service_account_namespace,
        name=args.name,
        cluster_role=args.cluster_role,
    )
    print(text, end="")
    return 0


EXPORT_BATCH = 500
"""Journal entries read per query: the bodies of one batch are in memory at once."""


def journal(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``journal export``: each entry received since ``--since``, one JSON line
    ``{"received_at": …, "body": …}`` (the body as it was received), oldest first."""
    since = _since(args.since)
    settings = state_settings(args, environ, {"state_url"})
    with failures.at_start(settings):
        return asyncio.run(_export(settings, since))


def _since(text: str | None) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) if text is None else zoned_time("--since", text)


def zoned_time(flag: str, text: str) -> datetime:
    """``flag``'s ISO 8601 time, which must name its zone (``Z``, ``+01:00``)."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise ConfigError(
            f"{flag} must be a time with its zone, such as 2026-12-01T09:00:00Z, not {text!r}"
        )
    return at


async def _export(settings: Settings, since: datetime) -> int:
    store = open_store(settings, reads_only=True)  # a running serve keeps its file
    await store.open()
    try:
        after = 0
        while entries := await store.journal_since(since, after, EXPORT_BATCH):
            for entry in entries:  # the archive's journal lines, one per entry
                sys.stdout.write(journal_row(entry).line.decode("utf-8") + "\n")
            after = entries[-1].id
    finally:
        await store.close()
    return 0
