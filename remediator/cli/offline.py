"""The commands that serve nothing: ``check``, ``explain``, ``rbac`` (read the rules) and
``decisions`` (reads the audit from the store). Each reads only the settings it needs, with
the same precedence and the same error sentences as ``serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Collection, Mapping

from remediator.actions.registry import default_registry
from remediator.audit.api import record_json
from remediator.cli import failures, options
from remediator.config import Settings, from_sources
from remediator.decide.classify import Classifier
from remediator.ruleset.load import load_rules
from remediator.ruleset.rbac import manifests
from remediator.ruleset.rules import RuleSet
from remediator.store import open_store
from remediator.store.contract import AuditQuery


def _settings(
    args: argparse.Namespace, environ: Mapping[str, str], fields: Collection[str]
) -> Settings:
    flags = options.given(args, (options.RULES, options.STATE))
    # Nothing is served here, so there is no webhook token to require.
    flags["insecure_no_auth"] = ("", True)
    return from_sources(flags, environ, only={*fields, "insecure_no_auth"})


def _rules(args: argparse.Namespace, environ: Mapping[str, str]) -> RuleSet:
    settings = _settings(args, environ, {"rules_dir"})
    return load_rules(settings.rules_dir, default_registry(), _warn)  # RuleFileError: exit 2


def _warn(sentence: str) -> None:
    print(f"remediator: warning: {sentence}", file=sys.stderr)


def check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    ruleset = _rules(args, environ)
    actions = sum(1 for r in ruleset.rules if r.plan)
    print(
        f"ok: {len(ruleset.rules)} rules ({actions} with actions) in {len(ruleset.files)} files,"
        f" rule-set hash {ruleset.hash}"
    )
    return 0


def explain(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    labels = dict(item.partition("=")[::2] for item in args.labels)
    rule = Classifier(_rules(args, environ)).classify(labels)
    print(f"rule: {rule.name} ({rule.file})\nseverity: {rule.severity.value}")
    if rule.plan is None:
        print("action: none (escalate only)")
    else:
        try:
            target = rule.plan.target.render(labels).key
        except LookupError as exc:
            target = f"unresolved ({exc})"
        print(f"action: {rule.plan.name} ({rule.plan.kind})\ntarget: {target}")
    print(f"escalation: {rule.escalation}")
    return 0


def rbac(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    ruleset = _rules(args, environ)
    text = manifests(
        ruleset,
        args.service_account,
        args.service_account_namespace,
        name=args.name,
        cluster_role=args.cluster_role,
    )
    print(text, end="")
    return 0


def decisions(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    settings = _settings(args, environ, {"state_url"})
    with failures.at_start(settings):
        return asyncio.run(_decisions(settings, args))


async def _decisions(settings: Settings, args: argparse.Namespace) -> int:
    store = open_store(settings, reads_only=True)  # a running serve keeps its file
    await store.open()
    try:
        query = AuditQuery(
            episode_id=args.episode, fingerprint=args.fingerprint, rule=args.rule, limit=args.limit
        )
        for record in await store.decisions(query):
            if args.json:
                print(json.dumps(record_json(record), sort_keys=True))
            else:
                at = record.at.strftime("%Y-%m-%d %H:%M:%S")
                print(
                    f"{at}  ep={record.episode_id}  {record.step:<10} {record.outcome.value:<10}"
                    f" {record.severity or '-':<5}  {record.sentence}"
                )
    finally:
        await store.close()
    return 0
