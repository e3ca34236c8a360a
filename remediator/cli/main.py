"""The command line: one table of commands, each a function of the parsed flags and the
environment. Exit status: 0 done; 1 output cut short (a closed pipe), or a finding: a lint
that failed (``check``), a case that failed (``test``), an ``explain --expect`` mismatch;
2 a usage, configuration, rule or start-up error, always one sentence on stderr and never
a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from remediator import __version__
from remediator.cli import (
    approve,
    audit,
    check,
    decisions,
    explain,
    offline,
    options,
    replay,
    rule_tests,
    serve,
)
from remediator.core.errors import ConfigError, RuleFileError

Run = Callable[[argparse.Namespace, Mapping[str, str]], int]
PIPE_CLOSED = 1

DESCRIPTION = """\
Receives Prometheus Alertmanager webhooks, classifies each alert with YAML rules, runs a
bounded remediation when a rule names one (scale a Deployment out, recycle a pod, cancel a
PostgreSQL query), escalates to a human when it does not or when the fix did not help, and
audits every decision.

Where to start:
  remediator check --rules rules           load and lint the rule files (exit 1 on a failed lint)
  remediator explain alertname=X ...       which rule an alert meets, and what it would do
  remediator test rules/tests/*.test.yaml  run the rules' unit tests on a virtual clock
  remediator replay stream.jsonl           decide a recorded stream offline, and summarise it
  remediator serve --dry-run ...           run it, planning and auditing actions without doing them
  remediator decisions --follow            read back what it decided and why, as it decides
  remediator approve ID                    approve a claim held for a human (deny ID --reason)

Every serve flag has a REMEDIATOR_* variable (shown in `remediator serve --help`); a flag beats
its variable, which beats the default."""


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    run: Run
    parents: tuple[options.Parser, ...]
    extra: Callable[[argparse.ArgumentParser], None] | None = None


def _explain_args(parser: argparse.ArgumentParser) -> None:
    # "*" and not "+": explain itself refuses no labels, with a sentence that says where.
    parser.add_argument(
        "labels", nargs="*", default=argparse.SUPPRESS, metavar="NAME=VALUE",
        help="the alert's labels, each name=value",
    )  # fmt: skip
    parser.add_argument(
        "--why", action="store_true", help="each earlier rule and the first matcher it fails"
    )
    parser.add_argument(
        "--expect", action="append", nargs="+", metavar="KEY=VALUE",
        help="rule=NAME, severity=SEV-N and/or action=NAME (or none), after the labels:"
        " exit 1 unless the alert meets them",
    )  # fmt: skip
    parser.add_argument(
        "--at", metavar="TIME",
        help="decide the time intervals at TIME (ISO 8601 with its offset) instead of now",
    )  # fmt: skip


def _rbac_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service-account", default="remediator", help="ServiceAccount name")
    parser.add_argument("--service-account-namespace", default="monitoring", help="its namespace")
    parser.add_argument("--name", default="remediator", help="the Roles' and bindings' name")
    parser.add_argument(
        "--cluster-role",
        action="store_true",
        help="one ClusterRole bound in each namespace, instead of a Role in each",
    )


def _journal_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["export"], help="export: the bodies as JSON lines")
    since = "only entries received then or later (e.g. 2026-12-01T09:00:00Z)"
    parser.add_argument("--since", metavar="TIME", help=since)


def _audit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["export"], help="export: as the S3 archive holds it")
    parser.add_argument("--out", metavar="DIR", required=True, help="the directory to write")


def _test_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="rule test files (YAML)")
    parser.add_argument(
        "--run", dest="run_cases", metavar="REGEX", help="only the cases whose name it finds"
    )
    parser.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")


def _replay_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "stream", metavar="STREAM", help='JSON lines: {"received_at": RFC 3339, "body": {...}}'
    )
    parser.add_argument(
        "--against", metavar="DIR", help="also replay under these rules; print what differs"
    )


def commands() -> tuple[Command, ...]:
    rules, state = options.parent(options.RULES), options.parent(options.STATE)
    return (
        Command("serve", "receive Alertmanager webhooks and act on them", serve.run,
                (rules, state, options.parent(*options.SERVE))),
        Command("check", "load the rule files, report the first error, then lint them",
                check.check, (rules,)),
        Command("explain", "show how a label set is classified and what would be done",
                explain.explain, (rules,), _explain_args),
        Command("rbac", "print the RBAC the rules' actions need, as YAML", offline.rbac,
                (rules,), _rbac_args),
        Command("decisions", "print audited decisions from the store, newest first",
                decisions.decisions, (state,), decisions.add_arguments),
        Command("journal", "export the journal's webhook bodies, the stream replay reads",
                offline.journal, (state,), _journal_args),
        Command("audit", "export the archive (journal bodies and decisions) to a directory",
                audit.export, (state,), _audit_args),
        Command("test", "run rule unit tests: alerts at times, the decisions expected",
                rule_tests.run_tests, (), _test_args),
        Command("replay", "replay recorded webhook bodies offline and summarise the decisions",
                replay.replay, (rules,), _replay_args),
        Command("approve", "approve a claim held for approval, as the approver your token is",
                approve.approve, (), lambda p: approve.add_arguments(p, vote=True)),
        Command("deny", "deny a claim held for approval, with --reason",
                approve.deny, (), lambda p: approve.add_arguments(p, vote=True)),
        Command("approvals", "list the approvals of a running service (pending by default)",
                approve.listing, (), lambda p: approve.add_arguments(p, vote=False)),
    )  # fmt: skip


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every option's help, and the description's own line breaks."""


def parser() -> argparse.ArgumentParser:
    top = options.Parser(prog="remediator", description=DESCRIPTION, formatter_class=_HelpFormatter)
    top.add_argument("--version", action="version", version=f"remediator {__version__}")
    table = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands():
        sub = table.add_parser(
            command.name, help=command.help, description=command.help,
            parents=list(command.parents), formatter_class=_HelpFormatter,
        )  # fmt: skip
        if command.extra is not None:
            command.extra(sub)
        sub.set_defaults(run=command.run)
    return top


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Run = args.run
    try:
        status = run(args, os.environ if environ is None else environ)
        sys.stdout.flush()  # a closed pipe is found here, not at interpreter exit
    except (ConfigError, RuleFileError) as exc:
        return options.refuse(str(exc))
    except BrokenPipeError:
        # Python's recipe (library/signal, "Note on SIGPIPE"): the reader left; say nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return PIPE_CLOSED
    return status
