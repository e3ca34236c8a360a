"""``remediator replay STREAM``: a recorded stream of webhook bodies through the offline
engine (``simulate.replay``), compressed in time, then a summary: decisions by outcome,
the actions that would run and when, refusals by reason, pages by sink and tier, when the
storm brake engaged. ``--against DIR`` replays it again under other rules and prints the
decisions that differ. Exit status: 0; 2 when the stream or a rule set does not load.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from pathlib import Path

from remediator.actions.registry import default_registry
from remediator.cli import offline
from remediator.ruleset.load import load_rules
from remediator.simulate import replay as simulate


def replay(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    ruleset = load_rules(offline.rules_dir(args, environ), default_registry(), lambda _: None)
    other = None
    if args.against is not None:
        other = load_rules(Path(args.against), default_registry(), lambda _: None)
    entries = simulate.read(Path(args.stream))

    async def run() -> None:
        base = await simulate.replay(ruleset, entries)
        print(simulate.summary(base, args.stream))
        if other is not None:
            print(simulate.difference_report(base, await simulate.replay(other, entries)))

    asyncio.run(run())
    return 0
