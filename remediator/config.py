"""Frozen service settings, built from ``remediator serve`` flags and ``REMEDIATOR_*`` variables.

Every field names its unit, its default and why the default is what it is.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from remediator.ingest.payload import PayloadLimits

DEFAULT_STATE_URL = "sqlite:///.state/remediator.db"


@dataclass(frozen=True, slots=True)
class Settings:
    listen_host: str = "127.0.0.1"
    """Address to bind. Loopback by default: exposing the receiver is a deliberate choice."""

    listen_port: int = 9095
    """TCP port. 9095 sits beside Alertmanager's 9093/9094."""

    rules_dir: Path = Path("rules")
    """Directory of ``*.yaml`` rule files, loaded in name order. A bad file stops start-up."""

    state_url: str = DEFAULT_STATE_URL
    """Where journal, episodes, claims and audit live. ``sqlite:///rel`` or ``sqlite:////abs``."""

    instance_id: str = field(default_factory=socket.gethostname)
    """This replica's name; with a shared PostgreSQL store, each replica processes the journal
    entries it accepted. Default: the host name (a pod's name in Kubernetes)."""

    journal_spool: Path | None = None
    """A local SQLite file that takes webhook payloads while a shared state database is
    unreachable, so acks stay fast; moved into the state journal once it answers again."""

    journal_timeout_s: float = 1.0
    """With a spool: a state journal write slower than this goes to the spool instead."""

    lease_s: float = 30.0
    """With a shared PostgreSQL store, a replica renews its lease every third of this; a
    replica silent for this long has its unprocessed journal entries and unfinished claims
    taken over by a live one (a pod that never comes back under the same name)."""

    token_file: Path | None = None
    """Bearer tokens, one per line (current and next, for rotation). Required unless insecure."""

    insecure_no_auth: bool = False
    """Accept webhooks without a token. Only for a laptop; warned about at every start."""

    kubeconfig: Path | None = None
    """Kubeconfig file for the cluster. None: in-cluster if running in a pod, else no cluster
    (Kubernetes actions are then planned and audited as dry-run)."""

    kube_context: str | None = None
    """Context of ``kubeconfig`` to use; None: its current context."""

    databases: Mapping[str, str] = field(default_factory=dict)
    """Database targets for kill_query: name → ``file:/path/to/dsn`` or ``env:VARIABLE``.
    DSNs never appear in rule files or on the command line."""

    dry_run: bool = False
    """Plan and audit every action, run none. Also forced when no action backend is configured."""

    tls_cert: Path | None = None
    """PEM certificate chain; with ``tls_key`` the receiver speaks HTTPS."""

    tls_key: Path | None = None
    """PEM private key for ``tls_cert``."""

    tls_client_ca: Path | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed (mTLS)."""

    max_body_bytes: int = 8 * 1024 * 1024
    """Largest webhook body, bytes. 8 MiB holds ~25 000 alerts of Alertmanager's usual size."""

    payload_limits: PayloadLimits = field(default_factory=PayloadLimits)
    """Per-payload limits on alerts, labels and their lengths."""

    read_timeout_s: float = 10.0
    """Seconds to receive a whole body once headers are in. aiohttp has no body timeout."""

    keepalive_timeout_s: float = 75.0
    """Seconds an idle keep-alive connection stays open. ``header_timeout_s`` is shorter and
    closes an idle connection first; this stays as aiohttp's own backstop."""

    header_timeout_s: float = 10.0
    """Seconds a connection may go without a complete request head, counted from the connect
    and from each response. An idle or trickling (slowloris) connection is closed at this
    bound. Alertmanager writes a head in one send; 10 s covers a slow network many times."""

    max_request_line_bytes: int = 4096
    """Longest request line (method, path with query, version), bytes; beyond it 431. Our
    longest legitimate line is a ``/api/v1/decisions`` query of a few hundred bytes."""

    max_header_bytes: int = 8190
    """Longest header field (name and value), bytes; beyond it 431. aiohttp's and nginx's
    per-line size: room for a long bearer token or a JWT."""

    max_headers: int = 64
    """Most header fields in one request; beyond it 431. Alertmanager sends 6; proxies and
    meshes add a few more each."""

    max_in_flight: int = 64
    """Webhook requests handled at once; beyond it the answer is 503 with Retry-After."""

    validation_workers: int = 2
    """Processes that validate webhook bodies, so the event loop keeps only HTTP and the
    journal. 0 validates inline. Two keep a 2-core host's acks ahead of the baseline."""

    worker_chunk_alerts: int = 256
    """Alerts the journal worker handles between two looks at the webhook queue."""

    worker_yield_s: float = 0.05
    """Longest wait, seconds, for no webhook in flight before the next chunk: acks go first,
    and decisions still progress at worker_chunk_alerts per worker_yield_s under load."""

    aftercare_poll_s: float = 5.0
    """How often, seconds, the store is asked for undos (scale back in) that fell due."""

    delivery_poll_s: float = 1.0
    """How often, seconds, the outbox is asked for notifications that are due."""

    delivery_max_age_s: float = 86_400.0
    """How long, seconds, a notification is retried before it is dropped (and audited)."""

    journal_retention_s: float = 86_400.0
    """How long a processed payload stays in the journal, seconds, for forensics."""

    stale_after_s: float = 900.0
    """An alert that waited longer than this (seconds) before processing is not acted on."""

    episode_grace_s: float = 300.0
    """A firing within this many seconds of its resolve reopens the same episode (flapping)."""

    shutdown_grace_s: float = 30.0
    """Seconds running actions get to reach an outcome when the service stops."""

    @property
    def sqlite_path(self) -> Path:
        """The database file of a ``sqlite:///`` state URL."""
        prefix = "sqlite:///"
        if not self.state_url.startswith(prefix):
            raise ValueError(f"state URL {self.state_url!r} is not a sqlite:/// URL")
        return Path(self.state_url[len(prefix) :])
