"""Settings: one frozen, validated model of everything ``remediator serve`` is configured with.

The lowest layer beside ``core``: every other package reads a ``Settings`` and none writes one.
Constructing ``Settings(...)`` reads nothing but its arguments (tests stay hermetic); the
command line builds one with ``from_sources``, where flags beat ``REMEDIATOR_*`` variables and
those beat the defaults here. Every number is bounded, booleans are strict, and the rules that
tie fields together are checked by the model itself, so no caller can skip them. Every field
names its unit, its default and why the default is what it is.
"""

from __future__ import annotations

import difflib
import re
import socket
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from remediator.core.errors import ConfigError

ENV_PREFIX = "REMEDIATOR_"
DEFAULT_STATE_URL = "sqlite:///.state/remediator.db"
SQLITE_SCHEME = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
LogFormat = Literal["text", "json", "logfmt"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
DAY_S = 86_400.0
S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MIB = 1024 * 1024


def _flag(value: object) -> object:
    """``1/true/yes/on`` and ``0/false/no/off`` (any case); anything else is an error, never
    "off": a typo in ``REMEDIATOR_DRY_RUN`` must not start a live service."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE or word in FALSE:
            return word in TRUE
    if isinstance(value, bool):
        return value
    raise ValueError(f"is not a boolean: use {', '.join(TRUE)} or {', '.join(FALSE)}")


def _upper(value: object) -> object:
    return value.strip().upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


Flag = Annotated[bool, BeforeValidator(_flag)]


def seconds(default: float, *, at_most: float, at_least: float | None = None) -> Any:
    """A duration field: finite, above zero (or at least ``at_least``), at most ``at_most``."""
    if at_least is None:
        return Field(default, gt=0, le=at_most, allow_inf_nan=False)
    return Field(default, ge=at_least, le=at_most, allow_inf_nan=False)


def count(default: int, *, at_least: int, at_most: int) -> Any:
    """A bounded whole number: a size, a count or a number of workers."""
    return Field(default, ge=at_least, le=at_most)


@dataclass(frozen=True, slots=True, config=ConfigDict(extra="forbid"))
class PayloadLimits:
    """Per-payload limits the webhook enforces before anything is journaled."""

    max_alerts: int = count(10_000, at_least=1, at_most=1_000_000)
    """Alerts in one payload. Alertmanager batches by group; 10 000 is far above a storm's."""

    max_labels: int = count(64, at_least=1, at_most=10_000)
    """Labels on one alert. Prometheus's own default limit is unlimited; 64 is generous."""

    max_label_name_chars: int = count(256, at_least=1, at_most=1_000_000)
    """Characters in a label name."""

    max_label_value_chars: int = count(2_048, at_least=1, at_most=1_000_000)
    """Characters in a label value."""

    max_annotation_value_chars: int = count(16_384, at_least=1, at_most=10_000_000)
    """Characters in an annotation value (a runbook URL, a description)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        validate_default=True,
        use_attribute_docstrings=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the arguments: the environment is read by ``from_sources``, once, at start.
        return (init_settings,)

    listen_host: str = Field("127.0.0.1", min_length=1)
    """Address to bind. Loopback by default: exposing the receiver is a deliberate choice."""

    listen_port: int = Field(9095, ge=0, le=65535)
    """TCP port. 9095 sits beside Alertmanager's 9093/9094; 0 picks a free one (tests)."""

    rules_dir: Path = Path("rules")
    """Directory of ``*.yaml`` rule files, loaded in name order. A bad file stops start-up;
    a bad file at a reload (SIGHUP, ``POST /-/reload``, the watch) leaves the rules loaded
    before it deciding."""

    external_url: str = Field(default="", max_length=2048, pattern=r"^(https?://[^\s?#]+)?$")
    """How people reach this service (``https://remediator.example.com``): pages link to
    the episode's decisions under it. Empty (the default): pages carry no such link, rather
    than one that cannot work."""

    rules_watch_s: float = seconds(0.0, at_least=0.0, at_most=3_600.0)
    """Seconds between looks at the rule files for a change, which reloads them; 0 (the
    default) looks never. For a ConfigMap mount: the kubelet swaps the files in at once
    (a symlink), about a minute after the ConfigMap changed."""

    state_url: str = DEFAULT_STATE_URL
    """Where journal, episodes, claims and audit live: ``sqlite:///relative/path``,
    ``sqlite:////absolute/path`` (one replica) or ``postgresql://user@host:port/database``
    (several replicas sharing one truth). Default: a SQLite file under ``.state/``."""

    instance_id: str = Field(default_factory=socket.gethostname, min_length=1, max_length=253)
    """This replica's name; with a shared PostgreSQL store, each replica processes the journal
    entries it accepted. Default: the host name (a pod's name in Kubernetes)."""

    journal_spool: Path | None = None
    """A local SQLite file that takes webhook payloads while a shared state database is
    unreachable, so acks stay fast; moved into the state journal once it answers again.
    Default: none (a PostgreSQL outage then answers 503 and Alertmanager retries)."""

    journal_timeout_s: float = seconds(1.0, at_most=60.0)
    """With a spool: a state journal write slower than this (seconds) goes to the spool
    instead. 1 s keeps acks well inside Alertmanager's 10 s webhook timeout."""

    lease_s: float = seconds(30.0, at_least=1.0, at_most=3_600.0)
    """Seconds. With a shared PostgreSQL store, a replica renews its lease every third of
    this; a replica silent for this long has its unprocessed journal entries and unfinished
    claims taken over by a live one (a pod that never comes back under the same name)."""

    token_file: Path | None = None
    """Bearer tokens, one per line (current and next, for rotation). Required unless insecure."""

    insecure_no_auth: Flag = False
    """Accept webhooks without a token. Only for a laptop; warned about at every start."""

    kubeconfig: Path | None = None
    """Kubeconfig file for the cluster. None: in-cluster if running in a pod, else no cluster
    (Kubernetes actions are then planned and audited as dry-run)."""

    kube_context: str | None = Field(None, min_length=1)
    """Context of ``kubeconfig`` to use; None: its current context."""

    databases: Mapping[str, str] = Field(default_factory=dict)
    """Database targets for kill_query: name → ``file:/path/to/dsn`` or ``env:VARIABLE``.
    DSNs never appear in rule files or on the command line."""

    dry_run: Flag = False
    """Plan and audit every action, run none. Also forced when no action backend is configured."""

    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = "INFO"
    """Least severe log record written to stderr. INFO: one line per start, stop and action."""

    log_format: Annotated[LogFormat, BeforeValidator(_lower)] = "text"
    """``text`` for a terminal, ``json`` or ``logfmt`` for a log pipeline."""

    tls_cert: Path | None = None
    """PEM certificate chain (its key too, unless ``tls_key``); set, the receiver speaks HTTPS."""

    tls_key: Path | None = None
    """PEM private key for ``tls_cert``."""

    tls_client_ca: Path | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed (mTLS)."""

    max_body_bytes: int = count(8 * MIB, at_least=1024, at_most=1024 * MIB)
    """Largest webhook body, bytes. 8 MiB holds ~25 000 alerts of Alertmanager's usual size."""

    payload_limits: PayloadLimits = Field(default_factory=PayloadLimits)
    """Per-payload limits on alerts, labels and their lengths."""

    read_timeout_s: float = seconds(10.0, at_most=600.0)
    """Seconds to receive a whole body once headers are in. aiohttp has no body timeout."""

    keepalive_timeout_s: float = seconds(75.0, at_most=3_600.0)
    """Seconds an idle keep-alive connection stays open. ``header_timeout_s`` is shorter and
    closes an idle connection first; this stays as aiohttp's own backstop."""

    header_timeout_s: float = seconds(10.0, at_most=600.0)
    """Seconds a connection may go without a complete request head, counted from the connect
    and from each response. An idle or trickling (slowloris) connection is closed at this
    bound. Alertmanager writes a head in one send; 10 s covers a slow network many times."""

    max_request_line_bytes: int = count(4096, at_least=256, at_most=65_536)
    """Longest request line (method, path with query, version), bytes; beyond it 431. Our
    longest legitimate line is a ``/api/v1/decisions`` query of a few hundred bytes."""

    max_header_bytes: int = count(8190, at_least=256, at_most=65_536)
    """Longest header field (name and value), bytes; beyond it 431. aiohttp's and nginx's
    per-line size: room for a long bearer token or a JWT."""

    max_headers: int = count(64, at_least=8, at_most=1024)
    """Most header fields in one request; beyond it 431. Alertmanager sends 6; proxies and
    meshes add a few more each."""

    max_in_flight: int = count(64, at_least=1, at_most=100_000)
    """Webhook requests handled at once; beyond it the answer is 503 with Retry-After."""

    max_backlog_alerts: int = count(50_000, at_least=1, at_most=100_000_000)
    """Alerts accepted and not yet decided beyond which a webhook is answered 503 with
    Retry-After: Alertmanager retries, so decisions catch up instead of falling minutes
    behind, and what waits stays in the journal."""

    validation_workers: int = count(2, at_least=0, at_most=64)
    """Processes that validate webhook bodies, so the event loop keeps only HTTP and the
    journal. 0 validates inline. Two keep a 2-core host's acks ahead of the baseline."""

    worker_chunk_alerts: int = count(256, at_least=1, at_most=100_000)
    """Alerts the journal worker handles between two looks at the webhook queue."""

    worker_yield_s: float = seconds(0.05, at_most=10.0)
    """Longest wait, seconds, for no webhook in flight before the next chunk: acks go first,
    and decisions still progress at worker_chunk_alerts per worker_yield_s under load."""

    aftercare_poll_s: float = seconds(5.0, at_most=3_600.0)
    """How often, seconds, the store is asked for undos (scale back in) that fell due."""

    delivery_poll_s: float = seconds(1.0, at_most=3_600.0)
    """How often, seconds, the outbox is asked for notifications that are due."""

    delivery_max_age_s: float = seconds(DAY_S, at_most=30 * DAY_S)
    """How long, seconds, a notification is retried before it is dropped (and audited)."""

    journal_retention_s: float = seconds(DAY_S, at_most=365 * DAY_S)
    """How long a processed payload stays in the journal, seconds, for forensics."""

    s3_bucket: str = ""
    """The bucket the archive goes to (the journal's bodies and every decision, see
    ``audit/archive.py``). Empty (the default): nothing is archived, and the store keeps
    what it keeps (``journal_retention_s``; decisions for ever)."""

    s3_prefix: str = Field("remediator", max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")
    """Where in the bucket: ``<prefix>/journal/…`` and ``<prefix>/decisions/…``. One per
    remediator installation; empty writes at the bucket's root."""

    s3_region: str = Field("", max_length=64, pattern=r"^[a-z0-9-]*$")
    """The bucket's region; empty: the AWS chain's (``AWS_REGION``, the shared config)."""

    s3_endpoint_url: str = Field("", max_length=2048, pattern=r"^(https?://[^\s?#]+)?$")
    """An S3-compatible store (MinIO, Ceph), addressed path-style; empty: AWS's S3."""

    s3_sse: Literal["", "AES256", "aws:kms"] = ""
    """Server-side encryption asked for each object: AES256 (SSE-S3) or aws:kms (SSE-KMS);
    empty: the bucket's default encryption."""

    s3_kms_key_id: str = Field("", max_length=2048)
    """The KMS key of ``s3_sse`` aws:kms; empty: the account's AWS-managed key."""

    s3_retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    """botocore's retry mode for each call (its ``standard`` backs off with jitter)."""

    s3_max_attempts: int = count(5, at_least=1, at_most=20)
    """Tries of one call, botocore counting; past them the archive waits a round."""

    archive_every_s: float = seconds(60.0, at_most=DAY_S)
    """Seconds between archive rounds; each ships every row old enough."""

    archive_settle_s: float = seconds(30.0, at_least=0.0, at_most=3_600.0)
    """Rows younger than this (seconds) wait for the next round: on a shared PostgreSQL a
    row can commit after one with a higher id, and the cursor must not pass it by."""

    archive_batch_rows: int = count(5_000, at_least=1, at_most=1_000_000)
    """Rows at most in one archive object (also at most 64 MiB of lines)."""

    audit_retention_s: float = seconds(0.0, at_least=0.0, at_most=10 * 365 * DAY_S)
    """With an archive: decisions older than this (seconds) are deleted from the store once
    archived. 0 (the default): kept for ever."""

    evidence_every_s: float = seconds(5.0, at_most=3_600.0)
    """With a bucket: seconds between looks at the evidence queue (``evidence``)."""

    evidence_timeout_s: float = seconds(3.0, at_least=0.1, at_most=60.0)
    """Seconds one capture may take before what it has is kept: the action waits at most
    this long for its evidence before it acts."""

    evidence_max_bytes: int = count(1_048_576, at_least=16_384, at_most=64 * 1024 * 1024)
    """Bytes at most of one evidence bundle: past it the longest parts are cut, and say so."""

    evidence_log_lines: int = count(200, at_least=0, at_most=10_000)
    """Lines of each container's log kept in a recycle's bundle (0: no logs are read)."""

    evidence_redact_file: Path | None = None
    """Extra RE2 patterns, one per line (``#`` comments), whose matches are redacted from
    every bundle besides the built-in table."""

    evidence_presign_s: int = count(0, at_least=0, at_most=604_800)
    """With a value: notifications and the decisions API carry links to each bundle, signed
    for this many seconds (S3 allows a week at most). 0: the keys only."""

    alertmanager_urls: tuple[str, ...] = ()
    """Alertmanagers (each of an HA pair) whose silences are read: an alert a silence covers
    is not acted on. Empty (the default): no silence is looked for."""

    alertmanager_token_file: Path | None = None
    """A bearer token for those Alertmanagers, read at each request (a URL's own user and
    password, basic auth, are used instead where given)."""

    alertmanager_ca_file: Path | None = None
    """PEM CA certificates that the Alertmanagers' TLS certificates are checked against;
    none: the system's."""

    silence_refresh_s: float = seconds(5.0, at_least=0.1, at_most=300.0)
    """Seconds between reads of the silences: a silence made now holds back actions at most
    this much later."""

    approvers_file: Path | None = None
    """Who may approve the claims a rule holds for approval (``approve.approvers``): names,
    teams, tokens and Slack user IDs; read again when it changes. Without it, no rule may
    ask for an approval (the service refuses to start)."""

    approvals_poll_s: float = seconds(5.0, at_least=0.1, at_most=300.0)
    """Seconds between two looks at the pending approvals: a timeout or a resolve ends one
    at most this much later."""

    silence_max_age_s: float = seconds(30.0, at_least=1.0, at_most=3_600.0)
    """Silences last read longer ago than this (seconds) are not trusted: whether an alert
    is silenced is then unknown, and the rule's ``on_silence_check_error`` decides."""

    stale_after_s: float = seconds(900.0, at_most=7 * DAY_S)
    """An alert that waited longer than this (seconds) before processing is not acted on."""

    episode_grace_s: float = seconds(300.0, at_least=0.0, at_most=DAY_S)
    """A firing within this many seconds of its resolve reopens the same episode (flapping)."""

    shutdown_grace_s: float = seconds(30.0, at_least=0.0, at_most=3_600.0)
    """Seconds running actions get to reach an outcome when the service stops. Kubernetes
    waits 30 s (``terminationGracePeriodSeconds``) before it kills the pod."""

    @field_validator("alertmanager_urls")
    @classmethod
    def _alertmanager_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{url!r} is not an http(s) URL of an Alertmanager")
            if parts.query or parts.fragment:
                raise ValueError(f"{url!r}: give the Alertmanager's base URL, no query")
        return urls

    @field_validator("state_url")
    @classmethod
    def _state_url(cls, url: str) -> str:
        if url.startswith(SQLITE_SCHEME) and len(url) > len(SQLITE_SCHEME):
            return url
        if url.startswith(POSTGRES_SCHEMES):
            try:
                urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise ValueError("has a port that is not a number") from None
            return url
        raise ValueError(
            "is not a state URL: use sqlite:///relative/path, sqlite:////absolute/path"
            " or postgresql://user@host:port/database"
        )

    @field_validator("s3_bucket")
    @classmethod
    def _s3_bucket(cls, bucket: str) -> str:
        if bucket and not S3_BUCKET.fullmatch(bucket):
            raise ValueError(
                "is not an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens,"
                " starting and ending with a letter or digit"
            )
        return bucket

    @field_validator("databases")
    @classmethod
    def _databases(cls, databases: Mapping[str, str]) -> Mapping[str, str]:
        for name, source in databases.items():
            if not name or not source.startswith(("file:", "env:")):
                raise ValueError(f"names {name}={source}, not NAME=file:PATH or NAME=env:VAR")
        return databases

    @model_validator(mode="after")
    def _together(self) -> Self:
        """The rules that tie fields together: one sentence each, naming the flags."""
        if self.token_file is None and not self.insecure_no_auth:
            raise ValueError("--token-file is required (or --insecure-no-auth for local use)")
        if self.journal_spool is not None and not self.state_url.startswith(POSTGRES_SCHEMES):
            raise ValueError("--journal-spool needs a postgresql:// --state")
        if self.tls_cert is None and (self.tls_key or self.tls_client_ca) is not None:
            raise ValueError("--tls-key and --tls-client-ca need --tls-cert")
        if self.s3_kms_key_id and self.s3_sse != "aws:kms":
            raise ValueError("--s3-kms-key-id needs --s3-sse aws:kms")
        if self.evidence_presign_s and not self.s3_bucket:
            raise ValueError("--evidence-presign-seconds needs --s3-bucket")
        if self.audit_retention_s and not self.s3_bucket:
            raise ValueError("--audit-retention-seconds needs --s3-bucket: only archived"
                             " decisions are deleted")  # fmt: skip
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` applied, validated as a new ``Settings`` is (pydantic's own
        copy validates nothing, which would let a copy skip every rule here)."""
        if not update:
            return super().model_copy(deep=deep)
        return self.model_validate({**self.model_dump(), **update})

    @property
    def sqlite_path(self) -> Path:
        """The database file of a ``sqlite:///`` state URL."""
        if not self.state_url.startswith(SQLITE_SCHEME):
            raise ValueError(f"state URL {self.state_url!r} is not a sqlite:/// URL")
        return Path(self.state_url[len(SQLITE_SCHEME) :])

    @property
    def postgres_address(self) -> str:
        """``host:port`` of a ``postgresql://`` state URL, for messages (never the password)."""
        parts = urlsplit(self.state_url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


# Sources: flags and variables, each a name a person typed, so an error can quote it.

#: Variable (after ``REMEDIATOR_``) → field. ``LISTEN`` and ``DATABASES`` are parsed first.
VARIABLES: Mapping[str, str] = {
    "RULES": "rules_dir",
    "RULES_WATCH_SECONDS": "rules_watch_s",
    "EXTERNAL_URL": "external_url",
    "STATE": "state_url",
    "TOKEN_FILE": "token_file",
    "INSECURE_NO_AUTH": "insecure_no_auth",
    "DRY_RUN": "dry_run",
    "TLS_CERT": "tls_cert",
    "TLS_KEY": "tls_key",
    "TLS_CLIENT_CA": "tls_client_ca",
    "KUBECONFIG": "kubeconfig",
    "KUBE_CONTEXT": "kube_context",
    "INSTANCE_ID": "instance_id",
    "JOURNAL_SPOOL": "journal_spool",
    "LEASE_SECONDS": "lease_s",
    "SHUTDOWN_GRACE_SECONDS": "shutdown_grace_s",
    "VALIDATION_WORKERS": "validation_workers",
    "MAX_BACKLOG_ALERTS": "max_backlog_alerts",
    "S3_BUCKET": "s3_bucket",
    "S3_PREFIX": "s3_prefix",
    "S3_REGION": "s3_region",
    "S3_ENDPOINT_URL": "s3_endpoint_url",
    "S3_SSE": "s3_sse",
    "S3_KMS_KEY_ID": "s3_kms_key_id",
    "S3_RETRY_MODE": "s3_retry_mode",
    "S3_MAX_ATTEMPTS": "s3_max_attempts",
    "ARCHIVE_EVERY_SECONDS": "archive_every_s",
    "ARCHIVE_SETTLE_SECONDS": "archive_settle_s",
    "ARCHIVE_BATCH_ROWS": "archive_batch_rows",
    "AUDIT_RETENTION_SECONDS": "audit_retention_s",
    "EVIDENCE_EVERY_SECONDS": "evidence_every_s",
    "EVIDENCE_TIMEOUT_SECONDS": "evidence_timeout_s",
    "EVIDENCE_MAX_BYTES": "evidence_max_bytes",
    "EVIDENCE_LOG_LINES": "evidence_log_lines",
    "EVIDENCE_REDACT_FILE": "evidence_redact_file",
    "EVIDENCE_PRESIGN_SECONDS": "evidence_presign_s",
    "ALERTMANAGER_TOKEN_FILE": "alertmanager_token_file",
    "ALERTMANAGER_CA_FILE": "alertmanager_ca_file",
    "SILENCE_REFRESH_SECONDS": "silence_refresh_s",
    "SILENCE_MAX_AGE_SECONDS": "silence_max_age_s",
    "APPROVERS_FILE": "approvers_file",
    "APPROVALS_POLL_SECONDS": "approvals_poll_s",
    "LOG_LEVEL": "log_level",
    "LOG_FORMAT": "log_format",
}
#: Variables with their own parser, and variables read elsewhere (fault injection in tests).
COMPOSITE = ("LISTEN", "DATABASES", "ALERTMANAGER_URLS")
READ_ELSEWHERE = ("FAILPOINTS",)

Sourced = dict[str, tuple[str, object]]
"""field → (the flag or variable it came from, its value as given)."""


def split_listen(value: str, origin: str) -> tuple[str, str]:
    """``HOST:PORT`` (``[::1]:9095`` for IPv6) → host and port, the port still text."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port:
        raise ConfigError(f"{origin} {value!r} is not HOST:PORT")
    return host.strip("[]"), port


def split_database(value: str, origin: str) -> tuple[str, str]:
    """``NAME=file:PATH`` or ``NAME=env:VAR`` → name and source."""
    name, sep, source = value.partition("=")
    if not sep or not name or not source.startswith(("file:", "env:")):
        raise ConfigError(f"{origin} {value!r} is not NAME=file:PATH or NAME=env:VAR")
    return name, source


def from_environment(environ: Mapping[str, str]) -> Sourced:
    """The ``REMEDIATOR_*`` variables, each under its field (an empty one counts as unset),
    then kubectl's ``KUBECONFIG``. An unknown ``REMEDIATOR_`` name is an error: a misspelt
    ``REMEDIATOR_DRYRUN`` must not be silently ignored."""
    sourced: Sourced = {}
    for name, value in sorted(environ.items()):
        suffix = name.removeprefix(ENV_PREFIX)
        if suffix == name or suffix in READ_ELSEWHERE or not value:
            continue
        if suffix in VARIABLES:
            sourced[VARIABLES[suffix]] = (name, value)
        elif suffix == "LISTEN":
            sourced.update(listen_fields(value, name))
        elif suffix == "DATABASES":
            sourced.update(databases_field([item for item in value.split(",") if item], name))
        elif suffix == "ALERTMANAGER_URLS":
            urls = tuple(item.strip() for item in value.split(",") if item.strip())
            sourced["alertmanager_urls"] = (name, urls)
        else:
            raise ConfigError(_unknown_variable(name))
    if "kubeconfig" not in sourced and environ.get("KUBECONFIG"):
        sourced["kubeconfig"] = ("KUBECONFIG", environ["KUBECONFIG"])
    return sourced


def listen_fields(value: str, origin: str) -> Sourced:
    host, port = split_listen(value, origin)
    return {"listen_host": (origin, host), "listen_port": (f"{origin} port", port)}


def databases_field(values: Sequence[str], origin: str) -> Sourced:
    """``NAME=SOURCE`` items (``--database`` flags or ``REMEDIATOR_DATABASES``) → the field."""
    return {"databases": (origin, dict(split_database(value, origin) for value in values))}


def _unknown_variable(name: str) -> str:
    known = [ENV_PREFIX + v for v in (*VARIABLES, *COMPOSITE, *READ_ELSEWHERE)]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"{name} is not a setting{hint}"


def from_sources(
    flags: Sourced, environ: Mapping[str, str], *, only: Collection[str] | None = None
) -> Settings:
    """Flags beat ``REMEDIATOR_*`` variables, which beat the defaults. ``only``: the fields a
    command reads (the others keep their defaults). Any error becomes one ``ConfigError``
    sentence quoting the flag or variable and the value it was given."""
    sourced = {**from_environment(environ), **flags}
    if only is not None:
        sourced = {field: given for field, given in sourced.items() if field in only}
    try:
        return Settings.model_validate({field: value for field, (_, value) in sourced.items()})
    except ValidationError as exc:
        raise ConfigError(explain(exc, sourced)) from None


def explain(exc: ValidationError, sourced: Sourced) -> str:
    """The first problem of ``exc`` as one sentence, naming where the bad value came from."""
    error = exc.errors(include_url=False)[0]
    reason = _reason(error)
    if not error["loc"]:
        return reason  # a rule between fields: its sentence names the flags
    field = str(error["loc"][0])
    origin, value = sourced.get(field, (field, error.get("input")))
    return f"{origin} {value!r} {reason}"


def _reason(error: Any) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    reasons = {
        "float_parsing": "is not a number",
        "int_parsing": "is not a whole number",
        "int_from_float": "is not a whole number",
        "finite_number": "is not a finite number",
        "greater_than": f"must be greater than {ctx.get('gt')}",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "string_too_short": "must not be empty",
        "literal_error": f"is not one of {ctx.get('expected', '').replace(' or ', ', ')}",
    }
    if kind in reasons:
        return reasons[kind]
    message = str(error["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:] if kind != "value_error" else message
