"""``renew_certificate``: have cert-manager re-issue a Certificate now, as ``cmctl renew`` does.

Where it sits: an action of the act stage (``act/runner``), on a cert-manager
``Certificate`` (``cert-manager.io/v1``). It deletes nothing: it sets the Certificate's
``Issuing`` condition to True (reason ``ManuallyTriggered``) on its status subresource,
written with the ``resourceVersion`` read, so a concurrent writer makes it read again and
decide again. cert-manager then does what it does for any issuance: a CertificateRequest for
revision ``status.revision + 1``, a new certificate in the Secret, ``Issuing`` removed.

Refused: a Certificate that does not exist or is not opted in, a cluster that does not serve
cert-manager's resource, a status that cannot be read, one never issued, an issuance already
in flight (``Issuing`` True: cert-manager creates a CertificateRequest only then, so a
pending one without it is a leftover it ignores), one not due (``notAfter`` further than
``renew_before_expiry_s``: a healthy certificate is never re-issued in a loop), and one issued,
or whose issuance failed, less than ``min_interval_s`` ago. Verified when the Certificate is
Ready with a later ``notAfter`` or a higher revision; an issuance that fails (``Issuing``
False, as cert-manager sets it) is ineffective at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from remediator.actions import opt_in
from remediator.actions.base import (
    Action,
    ActionRequest,
    ActionResult,
    Checked,
    Nothing,
    Permission,
    Reconciled,
    Stored,
    VerifyResult,
    problems,
    verified_within,
)
from remediator.clients.k8s import (
    CONFLICT_WAITS_S,
    Certificate,
    KubeClient,
    KubeHandle,
    conflict_attempts,
)
from remediator.core.errors import Conflict, NotFound, NotServed, PermanentActionError
from remediator.core.model import ALLOW, StopReason, Verdict, refuse

KIND = "renew_certificate"
ISSUING, READY = "Issuing", "Ready"
REASON = "ManuallyTriggered"
"""The reason ``cmctl renew`` gives the Issuing condition: cert-manager's own triggers give
others (``Renewing``, ``Expired``, ...), so a crash can tell this write apart."""
MESSAGE = "Certificate re-issuance manually triggered"
WRITE_ATTEMPTS = len(CONFLICT_WAITS_S)
MAX_RENEW_BEFORE_EXPIRY_S = 30 * 86_400
"""30 days: a third of a 90-day certificate, cert-manager's own default renewBefore. A wider
window would re-issue certificates cert-manager considers healthy."""
MAX_MIN_INTERVAL_S = 7 * 86_400
MAX_REVISION = 2**31 - 1
"""Far above any revision cert-manager counts to (one per issuance): beyond it, the status
is not one cert-manager wrote."""


class RenewCertificateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    renew_before_expiry_s: float = Field(ge=3600, le=MAX_RENEW_BEFORE_EXPIRY_S)
    """Only a Certificate whose ``notAfter`` is at most this far away (seconds, 1 hour to
    30 days) is re-issued. Required: the rule says how close to expiry is due."""
    min_interval_s: float = Field(default=3600.0, ge=300, le=MAX_MIN_INTERVAL_S)
    """No re-issue when the certificate was issued (``notBefore``), or its issuance failed
    (``lastFailureTime``), less than this ago (5 minutes to 7 days): cert-manager backs off
    an hour after a failure, and an issuer's rate limits count every attempt."""


class _Observed(BaseModel):
    """Read from the API server, strictly: another writer may have put anything there."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)


class Condition(_Observed):
    type: str = Field(min_length=1)
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""


class CertificateStatus(_Observed):
    """The parts of a Certificate's status this action reads."""

    revision: int | None = Field(default=None, ge=1, le=MAX_REVISION)
    not_after: AwareDatetime | None = Field(default=None, alias="notAfter")
    not_before: AwareDatetime | None = Field(default=None, alias="notBefore")
    renewal_time: AwareDatetime | None = Field(default=None, alias="renewalTime")
    last_failure_time: AwareDatetime | None = Field(default=None, alias="lastFailureTime")
    conditions: tuple[Condition, ...] = ()

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    def holds(self, kind: str, status: str = "True") -> bool:
        found = self.condition(kind)
        return found is not None and found.status == status


class RenewCertificateFacts(BaseModel):
    """What precheck saw: the Certificate's UID, its revision and its ``notAfter``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    revision: int
    not_after: datetime
    last_failure_time: datetime | None


class RenewCertificateIntent(Stored):
    """Certificate ``uid``, at ``revision`` and expiring at ``not_after``, is about to get
    the Issuing condition."""

    uid: str = Field(min_length=1)
    revision: int = Field(ge=1, le=MAX_REVISION)
    not_after: str = Field(min_length=1, max_length=64)
    """RFC 3339, as read."""
    last_failure_time: str | None = Field(default=None, max_length=64)


Request = ActionRequest[RenewCertificateParams, RenewCertificateIntent]
Result = ActionResult[Nothing]


def read_status(certificate: Certificate, key: str) -> CertificateStatus | Verdict:
    """The Certificate's status, or a refusal saying what in it cannot be read."""
    if certificate.status is None:
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{key} has no status: cert-manager has never issued it, so there is nothing to renew.",
        )
    try:
        return CertificateStatus.model_validate_json(json.dumps(certificate.status))
    except ValidationError as exc:
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{key} has a status remediator cannot read ({problems(exc)}); nothing was written.",
        )


def span(seconds: float) -> str:
    """A duration as an SRE reads it: seconds, hours or days."""
    if abs(seconds) >= 86_400:
        return f"{seconds / 86_400:.1f} days"
    if abs(seconds) >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decide(
    certificate: Certificate,
    status: CertificateStatus,
    params: RenewCertificateParams,
    now: datetime,
    key: str,
    require_opt_in: bool,
) -> Verdict:
    """Whether to trigger a re-issue of ``certificate`` now: opted in first (whatever its
    state), then not in flight, issued, due, and not issued or failed within the interval."""
    opted = opt_in.decide(certificate.annotations, KIND, key, require_opt_in)
    if not opted.allowed:
        return opted
    issuing = status.condition(ISSUING)
    if issuing is not None and issuing.status == "True":
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{key} is being issued already (Issuing is True, reason {issuing.reason or 'none'}):"
            " cert-manager has a request in flight; no second one.",
        )
    if status.revision is None or status.not_after is None:
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{key} has never been issued (no status.revision or status.notAfter): cert-manager"
            " is issuing it or failing to, and a re-issue would not help.",
        )
    left_s = (status.not_after - now).total_seconds()
    if left_s > params.renew_before_expiry_s:
        renews = f" at {stamp(status.renewal_time)}" if status.renewal_time else ""
        return refuse(
            StopReason.PRECHECK_FAILED,
            f"{key} is not due: it expires at {stamp(status.not_after)}, in {span(left_s)}, more"
            f" than renew_before_expiry_s ({span(params.renew_before_expiry_s)}) away;"
            f" cert-manager renews it itself{renews}.",
        )
    for moment, what in (
        (status.last_failure_time, "its last issuance failed"),
        (status.not_before, "it was issued"),
    ):
        if moment is not None and (now - moment).total_seconds() < params.min_interval_s:
            return refuse(
                StopReason.COOLDOWN,
                f"{key}: {what} at {stamp(moment)}, {span((now - moment).total_seconds())} ago,"
                f" within min_interval_s ({span(params.min_interval_s)}); not re-issued again"
                " so soon (cert-manager retries a failure on its own backoff).",
            )
    return ALLOW


def with_issuing(raw_status: Any, generation: int, now: datetime, message: str) -> list[Any]:
    """The status's conditions as read, with Issuing set True as ``cmctl renew`` sets it (a
    merge patch replaces the whole list, so every other condition goes back as it was)."""
    conditions = raw_status.get("conditions") or [] if isinstance(raw_status, Mapping) else []
    kept = [c for c in conditions if not (isinstance(c, Mapping) and c.get("type") == ISSUING)]
    issuing = {
        "type": ISSUING, "status": "True", "reason": REASON, "message": message,
        "lastTransitionTime": stamp(now), "observedGeneration": generation,
    }  # fmt: skip
    return [*kept, issuing]


def reissued(status: CertificateStatus, revision: int, not_after: datetime) -> bool:
    """A certificate issued since: a higher revision, or a later notAfter."""
    later = status.not_after is not None and status.not_after > not_after
    return (status.revision or 0) > revision or later


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class RenewCertificate(
    Action[RenewCertificateParams, RenewCertificateFacts, RenewCertificateIntent, Nothing]
):
    kind: ClassVar[str] = KIND
    params_model: ClassVar[type[RenewCertificateParams]] = RenewCertificateParams
    intent_model: ClassVar[type[RenewCertificateIntent]] = RenewCertificateIntent
    undo_model: ClassVar[type[Nothing]] = Nothing
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Certificate"})
    destructive: ClassVar[bool] = False

    def __init__(
        self, handle: KubeHandle, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._handle = handle
        self._now = now

    def available(self) -> bool:
        return self._handle.client is not None

    def permissions(self, params: RenewCertificateParams) -> Sequence[Permission]:
        """Read the Certificate, write its status subresource only (the spec, the Secret and
        the CertificateRequests stay cert-manager's), and record an Event."""
        return (
            Permission("cert-manager.io", ("certificates",), ("get",)),
            Permission("cert-manager.io", ("certificates/status",), ("patch",)),
            Permission("", ("events",), ("create",)),
        )

    def _kube(self) -> KubeClient:
        assert self._handle.client is not None, "renew_certificate run without a cluster"
        return self._handle.client

    async def _read(self, request: Request) -> tuple[Certificate, CertificateStatus] | Verdict:
        target = request.target
        try:
            certificate = await self._kube().certificate(target.namespace, target.name)
        except NotServed:
            return refuse(
                StopReason.PRECHECK_FAILED,
                f"This cluster does not serve cert-manager's certificates.cert-manager.io/v1"
                f" (cert-manager is not installed): {target.key} cannot be renewed.",
            )
        except NotFound:
            return refuse(StopReason.TARGET_GONE, f"{target.key} does not exist.")
        status = read_status(certificate, target.key)
        if isinstance(status, Verdict):
            return status
        return certificate, status

    async def precheck(self, request: Request) -> Checked[RenewCertificateFacts]:
        read = await self._read(request)
        if isinstance(read, Verdict):
            return Checked(read)
        certificate, status = read
        verdict = decide(
            certificate, status, request.params, self._now(), request.target.key,
            request.require_opt_in,
        )  # fmt: skip
        if not verdict.allowed:
            return Checked(verdict)
        assert status.revision is not None and status.not_after is not None  # decide saw them
        facts = RenewCertificateFacts(
            uid=certificate.uid, revision=status.revision, not_after=status.not_after,
            last_failure_time=status.last_failure_time,
        )  # fmt: skip
        return Checked(ALLOW, facts)

    async def run(self, request: Request, facts: RenewCertificateFacts) -> Result:
        """Set Issuing on the status subresource, guarded by the resourceVersion read; after
        a 409, read again and decide again (the lost answer of our own write included)."""
        target, kube = request.target, self._kube()
        key = target.key
        details: dict[str, Any] = {
            "uid": facts.uid, "revision_before": facts.revision,
            "not_after_before": stamp(facts.not_after), "triggered": False,
        }  # fmt: skip
        intended = False
        async for attempt in conflict_attempts():
            read = await self._read(request)
            if isinstance(read, Verdict):
                return ActionResult(False, f"{read.sentence} Nothing was written.", details)
            certificate, status = read
            if certificate.uid != facts.uid:
                return ActionResult(
                    False, f"{key} was replaced since its precheck; nothing was written.", details
                )
            issuing = status.condition(ISSUING)
            if intended and attempt and issuing is not None and issuing.reason == REASON:
                return ActionResult(
                    True,
                    f"Triggered a re-issue of {key}; the write landed though its answer was lost.",
                    {**details, "triggered": True},
                )
            if reissued(status, facts.revision, facts.not_after) or status.holds(ISSUING):
                return ActionResult(
                    True,
                    f"{key} is being or was re-issued meanwhile (revision {status.revision});"
                    " nothing written.",
                    details,
                )
            verdict = decide(
                certificate, status, request.params, self._now(), key, request.require_opt_in
            )
            if not verdict.allowed:
                return ActionResult(False, f"{key} changed before the write: {verdict.sentence}")
            if not intended:
                intent = RenewCertificateIntent(
                    uid=facts.uid,
                    revision=facts.revision,
                    not_after=stamp(facts.not_after),
                    last_failure_time=(
                        stamp(facts.last_failure_time) if facts.last_failure_time else None
                    ),
                )
                await request.intend(intent, None)
                intended = True
            message = f"{MESSAGE} (remediator, rule {request.rule}, episode {request.episode_id})"
            conditions = with_issuing(
                certificate.status, certificate.generation, self._now(), message
            )
            try:
                await kube.set_certificate_status(certificate, {"conditions": conditions})
            except Conflict:
                continue
            await kube.record_event(
                target.namespace, "Certificate", target.name, facts.uid,
                "RemediatorRenewTriggered", f"remediator triggered a re-issue of revision"
                f" {facts.revision} (rule {request.rule}, episode {request.episode_id}).",
            )  # fmt: skip
            return ActionResult(
                True,
                f"Triggered a re-issue of {key} (revision {facts.revision}, expiring at"
                f" {stamp(facts.not_after)}): cert-manager issues revision {facts.revision + 1}.",
                {**details, "triggered": True},
            )
        return ActionResult(
            False,
            f"{key} changed under remediator {WRITE_ATTEMPTS} times in a row; no re-issue"
            " triggered.",
            details,
        )

    async def verify(self, request: Request, result: Result) -> VerifyResult:
        """Ready with a certificate issued since; ineffective at once when cert-manager marks
        the issuance failed (Issuing False: it retries only after its backoff)."""
        revision, not_after = (
            result.details.get("revision_before"),
            result.details.get("not_after_before"),
        )
        if not isinstance(revision, int) or not isinstance(not_after, str):
            return VerifyResult.UNKNOWN
        before = _time(not_after)
        uid = result.details.get("uid")
        failed = False

        async def settled() -> bool:
            nonlocal failed
            read = await self._read(request)
            if isinstance(read, Verdict):
                raise PermanentActionError(read.sentence)
            certificate, status = read
            if certificate.uid != uid:
                raise PermanentActionError(f"{request.target.key} was replaced meanwhile.")
            if status.holds(READY) and reissued(status, revision, before):
                return True
            failed = status.holds(ISSUING, "False")
            return failed

        verified = await verified_within(request.verify_within_s, settled)
        return VerifyResult.INEFFECTIVE if failed else verified

    async def undo(self, request: Request, state: Nothing) -> Result:
        return ActionResult(True, f"{self.kind} leaves nothing to undo.")

    async def reconcile(
        self, request: Request, intent: RenewCertificateIntent
    ) -> Reconciled[Nothing]:
        """Issuing True with our reason, or a certificate issued since: the trigger landed.
        Unchanged with no issuance under way: it did not. Gone, replaced, or a failure since
        (ours or cert-manager's own attempt): the world cannot tell."""
        key = request.target.key
        read = await self._read(request)
        if isinstance(read, Verdict):
            return Reconciled(None, f"{key} cannot be observed: {read.sentence}")
        certificate, status = read
        if certificate.uid != intent.uid:
            return Reconciled(None, f"{key} was replaced (UID {intent.uid} is gone).")
        details = {
            "uid": intent.uid, "revision_before": intent.revision,
            "not_after_before": intent.not_after, "triggered": True,
        }  # fmt: skip
        issuing = status.condition(ISSUING)
        if reissued(status, intent.revision, _time(intent.not_after)) or (
            issuing is not None and issuing.status == "True" and issuing.reason == REASON
        ):
            sentence = (
                f"{key} is at revision {status.revision} (intended from {intent.revision}),"
                f" Issuing {issuing.status if issuing else 'absent'}: the trigger took effect."
            )
            return Reconciled(True, sentence, ActionResult(True, sentence, details))
        failure = stamp(status.last_failure_time) if status.last_failure_time else None
        if failure != intent.last_failure_time:
            return Reconciled(
                None,
                f"{key}'s issuance failed at {failure} since the intent: whether remediator's"
                " trigger or cert-manager's own led to it cannot be told.",
            )
        return Reconciled(
            False,
            f"{key} is still at revision {intent.revision} with no issuance of remediator's"
            " under way: the trigger did not take effect.",
        )
