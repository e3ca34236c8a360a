"""Flags that set a ``Settings`` field: declared once each, with the variable they stand for
and the model's default in their help. Parsing leaves a flag out of the namespace unless it
was given, so ``config.from_sources`` can let it beat the environment and the default.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

from remediator.config import (
    ENV_PREFIX,
    Settings,
    Sourced,
    databases_field,
    listen_fields,
)


@dataclass(frozen=True, slots=True)
class Option:
    """A flag, the field it sets and the ``REMEDIATOR_*`` variable that sets it too."""

    flag: str
    field: str
    variable: str | None
    help: str
    metavar: str | None = None
    switch: bool = False
    default: str | None = None
    """The default as the help shows it, when the model's own would not read well."""

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def shown_default(self) -> str:
        if self.default is not None:
            return self.default
        value = Settings.model_fields[self.field].default
        if isinstance(value, bool):
            return "on" if value else "off"
        return "none" if value is None else str(value)

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        where = f"${ENV_PREFIX}{self.variable}" if self.variable else "no variable"
        text = f"{self.help} (default: {self.shown_default()}; {where})"
        if self.switch:
            parser.add_argument(
                self.flag, action="store_true", default=argparse.SUPPRESS, help=text
            )
            return
        action = "append" if self.field in REPEATED else "store"
        parser.add_argument(
            self.flag, action=action, default=argparse.SUPPRESS, metavar=self.metavar, help=text
        )


REPEATED = ("databases", "alertmanager_urls")
"""Fields whose flag may be given more than once."""

RULES = Option("--rules", "rules_dir", "RULES", "directory of *.yaml rule files", "DIR")
STATE = Option(
    "--state",
    "state_url",
    "STATE",
    "state URL: sqlite:///relative/path, sqlite:////absolute/path or"
    " postgresql://user@host:port/database",
    "URL",
)
SERVE: tuple[Option, ...] = (
    Option("--listen", "listen_port", "LISTEN", "address to listen on", "HOST:PORT",
           default="127.0.0.1:9095"),
    Option("--token-file", "token_file", "TOKEN_FILE",
           "bearer tokens Alertmanager may send, one per line (current and next)", "PATH"),
    Option("--insecure-no-auth", "insecure_no_auth", "INSECURE_NO_AUTH",
           "accept webhooks without a token: only on a laptop", switch=True),
    Option("--dry-run", "dry_run", "DRY_RUN", "plan and audit every action, run none",
           switch=True),
    Option("--tls-cert", "tls_cert", "TLS_CERT", "PEM certificate chain: serve HTTPS", "PATH"),
    Option("--tls-key", "tls_key", "TLS_KEY", "PEM private key of --tls-cert", "PATH"),
    Option("--tls-client-ca", "tls_client_ca", "TLS_CLIENT_CA",
           "require client certificates signed by this CA (mTLS)", "PATH"),
    Option("--kubeconfig", "kubeconfig", "KUBECONFIG",
           "kubeconfig of the cluster to act on (also $KUBECONFIG); none: in-cluster in a pod,"
           " else Kubernetes actions are dry-run", "PATH"),
    Option("--kube-context", "kube_context", "KUBE_CONTEXT",
           "kubeconfig context; none: its current context", "NAME"),
    Option("--database", "databases", "DATABASES",
           "a kill_query target and where its DSN is read from; repeatable (the variable:"
           " comma-separated)", "NAME=file:PATH|env:VAR"),
    Option("--instance-id", "instance_id", "INSTANCE_ID",
           "this replica's name, for a shared PostgreSQL store", "NAME", default="the host name"),
    Option("--journal-spool", "journal_spool", "JOURNAL_SPOOL",
           "a local SQLite file that takes webhooks while the PostgreSQL state store is"
           " unreachable", "PATH"),
    Option("--lease-seconds", "lease_s", "LEASE_SECONDS",
           "a replica silent this long has its unfinished work taken over by another", "S"),
    Option("--external-url", "external_url", "EXTERNAL_URL",
           "how people reach this service; pages link to the episode under it", "URL"),
    Option("--rules-watch-seconds", "rules_watch_s", "RULES_WATCH_SECONDS",
           "look at the rule files this often and reload them when they change; 0: never"
           " (SIGHUP and POST /-/reload reload them too)", "S"),
    Option("--shutdown-grace-seconds", "shutdown_grace_s", "SHUTDOWN_GRACE_SECONDS",
           "running actions get this long to reach an outcome when serve stops (keep it"
           " below the pod's terminationGracePeriodSeconds)", "S"),
    Option("--validation-workers", "validation_workers", "VALIDATION_WORKERS",
           "processes that validate webhook bodies; 0 validates inline", "N"),
    Option("--max-backlog-alerts", "max_backlog_alerts", "MAX_BACKLOG_ALERTS",
           "alerts accepted and not yet decided beyond which webhooks get 503 and"
           " Retry-After (Alertmanager retries)", "N"),
    Option("--s3-bucket", "s3_bucket", "S3_BUCKET",
           "archive the journal and every decision to this bucket; none: no archive", "NAME"),
    Option("--s3-prefix", "s3_prefix", "S3_PREFIX", "the archive's key prefix", "PREFIX"),
    Option("--s3-region", "s3_region", "S3_REGION",
           "the bucket's region; none: the AWS chain's", "REGION"),
    Option("--s3-endpoint-url", "s3_endpoint_url", "S3_ENDPOINT_URL",
           "an S3-compatible store (MinIO, Ceph); none: AWS", "URL"),
    Option("--s3-sse", "s3_sse", "S3_SSE",
           "server-side encryption: AES256 or aws:kms; none: the bucket's default", "MODE"),
    Option("--s3-kms-key-id", "s3_kms_key_id", "S3_KMS_KEY_ID",
           "the KMS key for --s3-sse aws:kms", "KEY"),
    Option("--s3-retry-mode", "s3_retry_mode", "S3_RETRY_MODE",
           "botocore's retry mode: standard, adaptive or legacy", "MODE"),
    Option("--s3-max-attempts", "s3_max_attempts", "S3_MAX_ATTEMPTS",
           "tries of one S3 call", "N"),
    Option("--archive-every-seconds", "archive_every_s", "ARCHIVE_EVERY_SECONDS",
           "seconds between archive rounds", "S"),
    Option("--archive-settle-seconds", "archive_settle_s", "ARCHIVE_SETTLE_SECONDS",
           "rows younger than this wait for the next round", "S"),
    Option("--archive-batch-rows", "archive_batch_rows", "ARCHIVE_BATCH_ROWS",
           "rows at most in one archive object", "N"),
    Option("--audit-retention-seconds", "audit_retention_s", "AUDIT_RETENTION_SECONDS",
           "delete archived decisions older than this from the store; 0: keep them", "S"),
    Option("--evidence-every-seconds", "evidence_every_s", "EVIDENCE_EVERY_SECONDS",
           "seconds between uploads of the evidence queue", "S"),
    Option("--evidence-timeout-seconds", "evidence_timeout_s", "EVIDENCE_TIMEOUT_SECONDS",
           "seconds one evidence capture may delay its action", "S"),
    Option("--evidence-max-bytes", "evidence_max_bytes", "EVIDENCE_MAX_BYTES",
           "bytes at most of one evidence bundle", "N"),
    Option("--evidence-log-lines", "evidence_log_lines", "EVIDENCE_LOG_LINES",
           "log lines per container in a recycle's evidence; 0: none", "N"),
    Option("--evidence-redact-file", "evidence_redact_file", "EVIDENCE_REDACT_FILE",
           "extra RE2 patterns (one per line) redacted from evidence", "FILE"),
    Option("--evidence-presign-seconds", "evidence_presign_s", "EVIDENCE_PRESIGN_SECONDS",
           "link each evidence bundle with a URL signed this long; 0: keys only", "S"),
    Option("--alertmanager-url", "alertmanager_urls", "ALERTMANAGER_URLS",
           "an Alertmanager whose silences hold actions back; repeatable, for an HA pair"
           " (the variable: comma-separated)", "URL", default="none"),
    Option("--alertmanager-token-file", "alertmanager_token_file", "ALERTMANAGER_TOKEN_FILE",
           "a bearer token for --alertmanager-url, read at each request", "PATH"),
    Option("--alertmanager-ca-file", "alertmanager_ca_file", "ALERTMANAGER_CA_FILE",
           "PEM CAs that --alertmanager-url's TLS certificate is checked against", "PATH"),
    Option("--silence-refresh-seconds", "silence_refresh_s", "SILENCE_REFRESH_SECONDS",
           "read the silences this often", "S"),
    Option("--silence-max-age-seconds", "silence_max_age_s", "SILENCE_MAX_AGE_SECONDS",
           "silences read longer ago are not trusted: the rule's on_silence_check_error"
           " decides", "S"),
    Option("--approvers-file", "approvers_file", "APPROVERS_FILE",
           "who may approve the claims a rule holds for approval (YAML: names, teams, tokens,"
           " Slack user IDs)", "PATH"),
    Option("--approvals-poll-seconds", "approvals_poll_s", "APPROVALS_POLL_SECONDS",
           "look at the pending approvals (timeouts, resolves) this often", "S"),
    Option("--log-level", "log_level", "LOG_LEVEL",
           "DEBUG, INFO, WARNING, ERROR or CRITICAL", "LEVEL"),
    Option("--log-format", "log_format", "LOG_FORMAT", "text, json or logfmt", "FORMAT"),
)  # fmt: skip


USAGE_ERROR = 2


def refuse(sentence: str) -> int:
    """The one way a command stops on an error: one line on stderr; its exit status."""
    print(f"remediator: {sentence}", file=sys.stderr)
    return USAGE_ERROR


def fail(sentence: str) -> NoReturn:
    """``refuse`` from inside argparse, which can only stop by raising."""
    raise SystemExit(refuse(sentence))


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2, like any other error."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def parent(*options: Option) -> Parser:
    """A parent parser holding ``options``, for every command that takes them."""
    parser = Parser(add_help=False)
    for option in options:
        option.add_to(parser)
    return parser


def given(args: argparse.Namespace, options: Iterable[Option]) -> Sourced:
    """The flags given on the command line, each under its field, with the flag's name."""
    sourced: Sourced = {}
    for option in options:
        if not hasattr(args, option.dest):
            continue
        value = getattr(args, option.dest)
        if option.flag == "--listen":
            sourced.update(listen_fields(value, option.flag))
        elif option.field == "databases":
            sourced.update(databases_field(value, option.flag))
        elif option.field == "alertmanager_urls":
            sourced[option.field] = (option.flag, tuple(value))
        else:
            sourced[option.field] = (option.flag, value)
    return sourced
