"""Command line: ``serve | check | explain | rbac | decisions``. Argument parsing only; the work
is done by the modules each command calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from remediator.actions.registry import default_registry
from remediator.audit.api import record_json
from remediator.config import DEFAULT_STATE_URL, Settings
from remediator.core.errors import ConfigError, RuleFileError
from remediator.decide.classify import Classifier
from remediator.ingest.edge import listening
from remediator.ruleset.load import load_rules
from remediator.ruleset.rbac import manifests
from remediator.runtime.app import drain, init_app
from remediator.runtime.logs import configure_logging
from remediator.store import POSTGRES_SCHEMES, open_store
from remediator.store.contract import AuditQuery

log = logging.getLogger("remediator")
ENV = "REMEDIATOR_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV + name, default)


def _env_flag(name: str) -> bool:
    return (_env(name) or "").lower() in ("1", "true", "yes")


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise argparse.ArgumentTypeError(f"--listen {value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _database(value: str) -> tuple[str, str]:
    name, sep, source = value.partition("=")
    if not sep or not name or not source.startswith(("file:", "env:")):
        raise argparse.ArgumentTypeError(
            f"--database {value!r} is not NAME=file:PATH or NAME=env:VAR"
        )
    return name, source


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules", default=_env("RULES", "rules"), help="rule directory [REMEDIATOR_RULES]"
    )
    parser.add_argument(
        "--state",
        default=_env("STATE", DEFAULT_STATE_URL),
        help="state URL, sqlite:///rel/path or sqlite:////abs/path [REMEDIATOR_STATE]",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="remediator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="receive Alertmanager webhooks and act on them")
    _add_common(serve)
    serve.add_argument(
        "--listen",
        type=_listen,
        default=_env("LISTEN", "127.0.0.1:9095"),
        help="HOST:PORT [REMEDIATOR_LISTEN]",
    )
    serve.add_argument(
        "--token-file",
        default=_env("TOKEN_FILE"),
        help="bearer tokens, one per line [REMEDIATOR_TOKEN_FILE]",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=_env_flag("INSECURE_NO_AUTH"),
        help="accept webhooks without a token [REMEDIATOR_INSECURE_NO_AUTH]",
    )
    serve.add_argument(
        "--dry-run",
        action="store_true",
        default=_env_flag("DRY_RUN"),
        help="plan and audit actions, run none [REMEDIATOR_DRY_RUN]",
    )
    serve.add_argument(
        "--tls-cert", default=_env("TLS_CERT"), help="PEM certificate [REMEDIATOR_TLS_CERT]"
    )
    serve.add_argument("--tls-key", default=_env("TLS_KEY"), help="PEM key [REMEDIATOR_TLS_KEY]")
    serve.add_argument(
        "--tls-client-ca",
        default=_env("TLS_CLIENT_CA"),
        help="require client certificates signed by this CA [REMEDIATOR_TLS_CLIENT_CA]",
    )
    serve.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG") or os.environ.get("KUBECONFIG"),
        help="kubeconfig of the cluster to act on; none: in-cluster or dry-run"
        " [REMEDIATOR_KUBECONFIG, KUBECONFIG]",
    )
    serve.add_argument(
        "--kube-context",
        default=_env("KUBE_CONTEXT"),
        help="kubeconfig context [REMEDIATOR_KUBE_CONTEXT]",
    )
    serve.add_argument(
        "--database",
        action="append",
        type=_database,
        default=[_database(item) for item in (_env("DATABASES") or "").split(",") if item],
        metavar="NAME=file:PATH|env:VAR",
        help="a kill_query target and where its DSN is read from; repeatable"
        " [REMEDIATOR_DATABASES, comma-separated]",
    )
    serve.add_argument(
        "--instance-id",
        default=_env("INSTANCE_ID") or socket.gethostname(),
        help="this replica's name, for a shared PostgreSQL store [REMEDIATOR_INSTANCE_ID]",
    )
    serve.add_argument(
        "--journal-spool",
        default=_env("JOURNAL_SPOOL"),
        metavar="PATH",
        help="a local SQLite file that takes webhooks while the PostgreSQL state database is"
        " unreachable [REMEDIATOR_JOURNAL_SPOOL]",
    )
    serve.add_argument(
        "--lease-seconds",
        type=float,
        default=float(_env("LEASE_SECONDS", "30") or "30"),
        help="a replica silent this long has its unfinished work taken over by another"
        " [REMEDIATOR_LEASE_SECONDS]",
    )
    serve.add_argument(
        "--validation-workers",
        type=int,
        default=int(_env("VALIDATION_WORKERS", "2") or "2"),
        help="processes that validate webhook bodies; 0 validates inline"
        " [REMEDIATOR_VALIDATION_WORKERS]",
    )
    serve.add_argument(
        "--log-level", default=_env("LOG_LEVEL", "INFO"), help="[REMEDIATOR_LOG_LEVEL]"
    )

    check = commands.add_parser("check", help="load the rule files and report the first error")
    check.add_argument(
        "--rules", default=_env("RULES", "rules"), help="rule directory [REMEDIATOR_RULES]"
    )

    explain = commands.add_parser("explain", help="show how a label set is classified")
    explain.add_argument(
        "--rules", default=_env("RULES", "rules"), help="rule directory [REMEDIATOR_RULES]"
    )
    explain.add_argument("labels", nargs="+", metavar="NAME=VALUE")

    rbac = commands.add_parser("rbac", help="print the RBAC the rules' actions need, as YAML")
    rbac.add_argument(
        "--rules", default=_env("RULES", "rules"), help="rule directory [REMEDIATOR_RULES]"
    )
    rbac.add_argument("--service-account", default="remediator", help="ServiceAccount name")
    rbac.add_argument("--service-account-namespace", default="monitoring", help="its namespace")

    decisions = commands.add_parser("decisions", help="print audited decisions from the store")
    _add_common(decisions)
    decisions.add_argument("--episode", type=int)
    decisions.add_argument("--fingerprint")
    decisions.add_argument("--rule")
    decisions.add_argument("--limit", type=int, default=100)
    decisions.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    host, port = args.listen if isinstance(args.listen, tuple) else _listen(args.listen)
    return Settings(
        listen_host=host,
        listen_port=port,
        rules_dir=Path(args.rules),
        state_url=args.state,
        token_file=_path(args.token_file),
        insecure_no_auth=args.insecure_no_auth,
        dry_run=args.dry_run,
        tls_cert=_path(args.tls_cert),
        tls_key=_path(args.tls_key),
        tls_client_ca=_path(args.tls_client_ca),
        validation_workers=args.validation_workers,
        kubeconfig=_path(args.kubeconfig),
        kube_context=args.kube_context,
        databases=dict(args.database),
        instance_id=args.instance_id,
        lease_s=args.lease_seconds,
        journal_spool=_path(args.journal_spool),
    )


def _ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_client_ca is not None:
        context.load_verify_locations(settings.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _serve(settings: Settings) -> None:
    app = init_app(settings)  # rules load here: a rule error is then stderr's only line
    if settings.token_file is None:
        log.warning("INSECURE: accepting webhooks without authentication (--insecure-no-auth)")
    if settings.dry_run:
        log.warning("dry-run: actions are planned and audited, none is run")
    async with listening(app, settings, ssl_context=_ssl_context(settings)) as edge:
        log.info("listening on %s (rules %s)", edge.url, settings.rules_dir)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("stopping: answering 503 while the journal drains and running actions finish")
        await drain(app, settings.shutdown_grace_s)


def _cmd_serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    settings = _settings(args)
    if settings.token_file is None and not settings.insecure_no_auth:
        print(
            "remediator: --token-file is required (or --insecure-no-auth for local use)",
            file=sys.stderr,
        )
        return 2
    if settings.journal_spool is not None and not settings.state_url.startswith(POSTGRES_SCHEMES):
        print("remediator: --journal-spool needs a postgresql:// --state", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(settings))
    except (RuleFileError, ConfigError) as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        ruleset = load_rules(Path(args.rules), default_registry())
    except RuleFileError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2  # as serve: a rule set that does not load is a usage error
    actions = sum(1 for r in ruleset.rules if r.plan)
    print(
        f"ok: {len(ruleset.rules)} rules ({actions} with actions) in {len(ruleset.files)} files,"
        f" rule-set hash {ruleset.hash}"
    )
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    labels = dict(item.partition("=")[::2] for item in args.labels)
    try:
        ruleset = load_rules(Path(args.rules), default_registry())
    except RuleFileError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2  # as serve: a rule set that does not load is a usage error
    rule = Classifier(ruleset).classify(labels)
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


async def _decisions(args: argparse.Namespace) -> int:
    store = open_store(Settings(state_url=args.state))
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


def _cmd_rbac(args: argparse.Namespace) -> int:
    try:
        ruleset = load_rules(Path(args.rules), default_registry())
    except RuleFileError as exc:
        print(f"remediator: {exc}", file=sys.stderr)
        return 2  # as serve: a rule set that does not load is a usage error
    print(manifests(ruleset, args.service_account, args.service_account_namespace), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _cmd_serve(args)
    if args.command == "check":
        return _cmd_check(args)
    if args.command == "explain":
        return _cmd_explain(args)
    if args.command == "rbac":
        return _cmd_rbac(args)
    return asyncio.run(_decisions(args))
