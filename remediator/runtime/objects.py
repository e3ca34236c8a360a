"""The object store's part of a serving remediator, when ``--s3-bucket`` names a bucket:
one S3 client, one outage (``object_store``) shared by what writes through it, the
evidence capture the runner is given (``evidence/capture.py``), the archive and evidence
loops (``audit/shipper.py``, ``evidence/uploader.py``), and the signed links of the pages
and the decisions API (``--evidence-presign-seconds``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediator.audit.shipper import Shipper
from remediator.clients.k8s import KubeHandle
from remediator.clients.postgres import DatabaseHandle
from remediator.clients.s3 import ObjectStore, S3Settings
from remediator.config import Settings
from remediator.core.clock import Clock
from remediator.core.errors import ConfigError, ObjectStoreError
from remediator.core.metrics import Metrics
from remediator.core.outage import Outage
from remediator.escalate.delivery import Sign
from remediator.evidence.capture import Capture
from remediator.evidence.database import DatabaseEvidence
from remediator.evidence.kube import KubeEvidence
from remediator.evidence.redact import Redactor
from remediator.evidence.uploader import Uploader
from remediator.runtime.tasks import Loops
from remediator.store.contract import Store

log = logging.getLogger(__name__)


def s3_settings(settings: Settings) -> S3Settings:
    return S3Settings(
        bucket=settings.s3_bucket, region=settings.s3_region,
        endpoint_url=settings.s3_endpoint_url, encryption=settings.s3_sse,
        kms_key_id=settings.s3_kms_key_id, retry_mode=settings.s3_retry_mode,
        max_attempts=settings.s3_max_attempts,
    )  # fmt: skip


def redactor(path: Path | None) -> Redactor:
    """The built-in redactions and those of ``--evidence-redact-file`` (one RE2 pattern a
    line, ``#`` comments); a pattern that does not compile is a ``ConfigError`` naming it."""
    if path is None:
        return Redactor()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--evidence-redact-file {path}: {exc}") from exc
    patterns = [line.strip() for line in lines]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    try:
        return Redactor(patterns)
    except ValueError as exc:
        raise ConfigError(f"--evidence-redact-file {path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Objects:
    """The opened object store and the outage every writer through it reports to."""

    store: ObjectStore
    outage: Outage
    presign_s: int

    def capture(
        self,
        state: Store,
        kube: KubeHandle,
        databases: DatabaseHandle,
        clock: Clock,
        metrics: Metrics,
        settings: Settings,
    ) -> Capture:
        sources = (KubeEvidence(kube, settings.evidence_log_lines), DatabaseEvidence(databases))
        return Capture(
            state, sources, redactor(settings.evidence_redact_file), clock, metrics,
            prefix=settings.s3_prefix, timeout_s=settings.evidence_timeout_s,
            max_bytes=settings.evidence_max_bytes,
        )  # fmt: skip

    def loops(
        self, loops: Loops, state: Store, clock: Clock, metrics: Metrics, settings: Settings
    ) -> None:
        """The archive's loop and the evidence's, each off the decision path."""
        shipper = Shipper(state, self.store, clock, metrics, settings, self.outage)
        loops.every("archive", shipper.round, settings.archive_every_s, required=False)
        uploader = Uploader(
            state, self.store, clock, metrics, self.outage, settings.evidence_every_s
        )
        loops.every("evidence", uploader.round, settings.evidence_every_s, required=False)

    @property
    def sign(self) -> Sign | None:
        """Links to evidence, signed for ``presign_s``; None when links are not signed."""
        if not self.presign_s:
            return None
        store, presign_s = self.store, self.presign_s

        async def sign(key: str) -> str:
            return await store.presign(key, presign_s)

        return sign

    async def linked(self, decisions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Decisions as the API shows them, each with evidence also given signed links
        (``evidence_urls``, by phase) when links are signed."""
        shown = [dict(d) for d in decisions]
        if self.sign is None:
            return shown
        for decision in shown:
            evidence = (decision.get("details") or {}).get("evidence")
            if not isinstance(evidence, Mapping):
                continue
            urls: dict[str, str] = {}
            for phase, note in evidence.items():
                if isinstance(note, Mapping) and isinstance(note.get("key"), str):
                    try:
                        urls[phase] = await self.store.presign(note["key"], self.presign_s)
                    except ObjectStoreError as exc:
                        log.warning("no evidence link in the decisions API: %s", exc)
            decision["evidence_urls"] = urls
        return shown
