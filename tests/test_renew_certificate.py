"""renew_certificate end to end: a webhook into the service, which triggers a re-issue of a
cert-manager Certificate as ``cmctl renew`` does (Issuing on its status subresource) through
kubernetes-asyncio over real HTTP on the Kubernetes API test server with cert-manager's
controller, and the audit; its refusals, a write raced by another writer, verification of
an issuer that issues, fails or hangs, hostile statuses, and reconcile after a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.actions.base import ActionRequest, VerifyResult
from remediator.actions.renew_certificate import (
    RenewCertificate,
    RenewCertificateIntent,
    RenewCertificateParams,
)
from remediator.cli.main import main
from remediator.clients.k8s import KubeClient, KubeHandle
from remediator.core.fingerprint import fingerprint
from remediator.core.model import StopReason, Target
from tests.support.cert_manager import CertManager
from tests.support.kube_api import KubeApiServer, Rbac
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.service import ServiceUnderTest, example_rules, serve, settings_for

NS = "llm-research"
OPTED_IN = {"remediator.io/allow": "renew_certificate"}
DAY_S = 86_400
RENEW_ACTION = """\
  renew-certificate:
    kind: renew_certificate
    # Within 21 days of expiry (cert-manager's own default renews 30 days before for a 90-day
    # certificate: an alert at 21 days means that renewal did not happen).
    params: {renew_before_expiry_s: 1814400, min_interval_s: 3600}
"""
RENEW_RULE = """\
  - name: certificate-expires-soon
    description: A cert-manager Certificate expires within 21 days. Re-issue it.
    matchers: ['alertname="CertManagerCertExpirySoon"', 'namespace=~".+"', 'name=~".+"']
    severity: SEV-3
    action: renew-certificate
    target: {kind: Certificate, namespace: "{namespace}", name: "{name}"}
    verify_within_s: VERIFY_WITHIN_S
"""


CATCH_ALL = "  # Everything else reaches a human.\n"


def certificate_rules(directory: Path, verify_within_s: float = 3) -> Path:
    """The example rules with a renew_certificate rule before the catch-all."""
    rule = RENEW_RULE.replace("VERIFY_WITHIN_S", f"{verify_within_s:g}")
    return example_rules(
        directory,
        **{
            "\nactions:\n": f"\nactions:\n{RENEW_ACTION}",
            CATCH_ALL: f"{rule}\n{CATCH_ALL}",
        },
    )


def expiring(name: str = "api-tls") -> dict[str, str]:
    return {"alertname": "CertManagerCertExpirySoon", "namespace": NS, "name": name}


def quick(kube: KubeApiServer) -> CertManager:
    """cert-manager installed, issuing within a fraction of a second."""
    manager = kube.install_cert_manager()
    manager.request_lag_s, manager.issue_lag_s = (0.02, 0.1), (0.05, 0.2)
    return manager


@pytest.fixture
async def kube() -> AsyncIterator[KubeApiServer]:
    async with KubeApiServer(seed=5) as server:
        yield server


@dataclass
class Harness:
    service: ServiceUnderTest
    kube: KubeApiServer
    rules: Path

    async def fire(self, **labels: str) -> list[dict[str, Any]]:
        status, _ = await self.service.post(webhook_payload(webhook_alert(labels=labels)))
        assert status == 200
        await self.service.settle()
        return await self.service.decisions(fingerprint=fingerprint(labels))

    def status_writes(self) -> list[Any]:
        return [r for r in self.kube.requests if r.method == "PATCH" and r.path.endswith("/status")]

    def writes(self) -> list[str]:
        return [
            f"{r.method} {r.path}"
            for r in self.kube.requests
            if r.method in ("PATCH", "PUT", "POST", "DELETE") and not r.path.endswith("/events")
        ]


@pytest.fixture
async def harness(tmp_path: Path, kube: KubeApiServer) -> AsyncIterator[Harness]:
    """The service on the example rules and the renew rule, its ServiceAccount bound by
    exactly what ``remediator rbac`` prints for them."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    rules = certificate_rules(tmp_path / "rules")
    kube.bind_rbac_of(rules)
    settings = settings_for(tmp_path, kubeconfig=kubeconfig, rules_dir=rules)
    async with serve(settings) as service:
        yield Harness(service, kube, rules)


def steps(decisions: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(d["step"], d["reason"]) for d in decisions]


# --- the happy path ---------------------------------------------------------------------


async def test_an_expiring_certificate_is_re_issued_through_its_status_never_deleted(
    harness: Harness,
) -> None:
    manager = quick(harness.kube)
    manager.add_certificate(NS, "api-tls", annotations=OPTED_IN, expires_in_s=10 * DAY_S)
    before = manager.certificate(NS, "api-tls")
    decisions = await harness.fire(**expiring())
    assert steps(decisions)[:5] == [
        ("received", None), ("classified", None), ("claimed", None), ("acted", None),
        ("verified", None),
    ]  # fmt: skip
    assert decisions[3]["sentence"].startswith(
        f"Triggered a re-issue of {NS}/Certificate/api-tls (revision 1, expiring at "
    )
    assert decisions[4]["details"]["verification"] == "verified"
    [write] = harness.status_writes()
    assert write.path == f"/apis/cert-manager.io/v1/namespaces/{NS}/certificates/api-tls/status"
    assert write.content_type == "application/merge-patch+json"
    assert write.body["metadata"] == {"resourceVersion": before["metadata"]["resourceVersion"]}
    [issuing] = [c for c in write.body["status"]["conditions"] if c["type"] == "Issuing"]
    assert (issuing["status"], issuing["reason"]) == ("True", "ManuallyTriggered")
    assert issuing["message"].startswith("Certificate re-issuance manually triggered")
    # The Ready condition went back as it was: a merge patch replaces the whole list.
    assert [c for c in write.body["status"]["conditions"] if c["type"] == "Ready"] == [
        c for c in before["status"]["conditions"] if c["type"] == "Ready"
    ]
    after = manager.certificate(NS, "api-tls")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]  # not deleted and recreated
    assert after["status"]["revision"] == 2
    assert after["status"]["notAfter"] > before["status"]["notAfter"]
    assert [c["type"] for c in after["status"]["conditions"]] == ["Ready"]
    [request] = manager.certificate_requests(NS)
    assert request["metadata"]["annotations"]["cert-manager.io/certificate-revision"] == "2"
    assert harness.writes() == [f"PATCH {write.path}"]
    reasons = [e["reason"] for e in harness.kube.events(NS)]
    assert "RemediatorRenewTriggered" in reasons and "Issuing" in reasons


# --- refusals ---------------------------------------------------------------------------


def _with_status(manager: CertManager, **changes: Any) -> None:
    """An issued Certificate whose status another writer then changed."""
    created = manager.add_certificate(NS, "api-tls", annotations=OPTED_IN)
    stored = manager._server._store["certificates"][(NS, "api-tls")]
    stored["status"] = {**created["status"], **changes}


ISSUING_TRUE = {"type": "Issuing", "status": "True", "reason": "Renewing",
                "message": "Renewing certificate as renewal was scheduled"}  # fmt: skip
READY_TRUE = {"type": "Ready", "status": "True", "reason": "Ready"}
TEN_MINUTES_AGO = (datetime.now(UTC) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")


REFUSALS: dict[str, tuple[Any, str, str]] = {
    "not-found": (
        lambda m: None, "target_gone", f"{NS}/Certificate/api-tls does not exist.",
    ),
    "not-opted-in": (
        lambda m: m.add_certificate(NS, "api-tls", annotations={"remediator.io/allow": "x"}),
        "not_opted_in",
        f"{NS}/Certificate/api-tls does not opt in to renew_certificate: its annotation"
        " remediator.io/allow does not list it.",
    ),
    "in-flight": (
        lambda m: _with_status(m, conditions=[READY_TRUE, ISSUING_TRUE]), "precheck_failed",
        f"{NS}/Certificate/api-tls is being issued already (Issuing is True, reason Renewing):"
        " cert-manager has a request in flight; no second one.",
    ),
    "not-due": (
        lambda m: m.add_certificate(NS, "api-tls", annotations=OPTED_IN, expires_in_s=60 * DAY_S),
        "precheck_failed", "is not due: it expires at ",
    ),
    "issued-just-now": (
        lambda m: m.add_certificate(
            NS, "api-tls", annotations=OPTED_IN, expires_in_s=5 * DAY_S, duration_s=5 * DAY_S + 60
        ),
        "cooldown", "it was issued at ",
    ),
    "failed-recently": (
        lambda m: _with_status(m, lastFailureTime=TEN_MINUTES_AGO),
        "cooldown", f"{NS}/Certificate/api-tls: its last issuance failed at {TEN_MINUTES_AGO},",
    ),
    "never-issued": (
        lambda m: m.add_certificate(NS, "api-tls", annotations=OPTED_IN, status=None),
        "precheck_failed",
        f"{NS}/Certificate/api-tls has no status: cert-manager has never issued it, so there"
        " is nothing to renew.",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_certificate_that_must_not_be_renewed_is_refused_with_a_sentence(
    harness: Harness, case: str
) -> None:
    seed, reason, sentence = REFUSALS[case]
    seed(quick(harness.kube))
    decisions = await harness.fire(**expiring())
    assert steps(decisions)[3:] == [("refused", reason), ("escalated", reason)]
    assert sentence in decisions[3]["sentence"]
    assert harness.writes() == []


async def test_a_cluster_without_cert_manager_is_refused_as_such(harness: Harness) -> None:
    decisions = await harness.fire(**expiring())
    assert steps(decisions)[3:] == [
        ("refused", "precheck_failed"), ("escalated", "precheck_failed"),
    ]  # fmt: skip
    assert decisions[3]["sentence"] == (
        "This cluster does not serve cert-manager's certificates.cert-manager.io/v1"
        f" (cert-manager is not installed): {NS}/Certificate/api-tls cannot be renewed."
    )
    assert harness.writes() == []


async def test_a_role_without_patch_on_the_status_is_refused_with_the_api_servers_words(
    harness: Harness,
) -> None:
    printed = [d for d in yaml.safe_load_all(harness.kube.bind_rbac_of(harness.rules)) if d]
    for document in printed:
        for rule in document.get("rules", []):
            rule["resources"] = [r for r in rule["resources"] if r != "certificates/status"]
    harness.kube.rbac = Rbac()
    harness.kube.load_rbac(printed)
    quick(harness.kube).add_certificate(NS, "api-tls", annotations=OPTED_IN)
    decisions = await harness.fire(**expiring())
    assert steps(decisions)[3:] == [("refused", "api_error"), ("escalated", "api_error")]
    assert decisions[3]["sentence"] == (
        f"The API refused renew_certificate on {NS}/Certificate/api-tls:"
        ' certificates.cert-manager.io "api-tls" is forbidden: User'
        ' "system:serviceaccount:remediator:remediator" cannot patch resource'
        f' "certificates/status" in API group "cert-manager.io" in the namespace "{NS}"'
    )
    assert [r.status for r in harness.status_writes()] == [403]
    assert manager_revision(harness.kube) == 1


def manager_revision(kube: KubeApiServer) -> int:
    assert kube.cert_manager is not None
    revision: int = kube.cert_manager.certificate(NS, "api-tls")["status"]["revision"]
    return revision


# --- a write raced, an issuer that fails ------------------------------------------------


async def test_another_writer_between_read_and_write_makes_it_read_and_decide_again(
    harness: Harness,
) -> None:
    manager = quick(harness.kube)
    manager.add_certificate(NS, "api-tls", annotations=OPTED_IN)
    manager.interleave_writes = 1  # kubectl labels it between remediator's read and write
    decisions = await harness.fire(**expiring())
    assert decisions[3]["outcome"] == "succeeded"
    assert [r.status for r in harness.status_writes()] == [409, 200]
    first, second = (r.body["metadata"]["resourceVersion"] for r in harness.status_writes())
    assert first != second  # the second write carries what was read again
    assert manager_revision(harness.kube) == 2
    assert manager.certificate(NS, "api-tls")["metadata"]["labels"] == {"touched": "1"}


async def test_an_issuer_that_fails_makes_the_renewal_ineffective_and_escalated(
    harness: Harness,
) -> None:
    manager = quick(harness.kube)
    manager.outcome = "fail"
    manager.add_certificate(NS, "api-tls", annotations=OPTED_IN)
    decisions = await harness.fire(**expiring())
    assert steps(decisions)[3] == ("acted", None)
    assert decisions[4]["details"]["verification"] == "ineffective"
    assert steps(decisions)[-1][0] == "escalated"
    status = manager.certificate(NS, "api-tls")["status"]
    assert status["revision"] == 1 and status["failedIssuanceAttempts"] == 1
    assert len(harness.status_writes()) == 1


# --- the action against the API server: verify, hostile statuses, reconcile ---------------


@pytest.fixture
async def client(tmp_path: Path, kube: KubeApiServer) -> AsyncIterator[KubeHandle]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
    handle = KubeHandle()
    handle.client = await KubeClient.connect(kubeconfig, None)
    try:
        yield handle
    finally:
        await handle.client.close()


PARAMS = RenewCertificateParams(renew_before_expiry_s=21 * DAY_S)
TARGET = Target("Certificate", NS, "api-tls")


def request(within_s: float = 1.0) -> ActionRequest[RenewCertificateParams, Any]:
    return ActionRequest(TARGET, PARAMS, "rule", 1, {}, verify_within_s=within_s)


async def test_an_issuer_that_hangs_is_ineffective_once_the_window_ends(
    kube: KubeApiServer, client: KubeHandle
) -> None:
    manager = quick(kube)
    manager.outcome = "hang"
    manager.add_certificate(NS, "api-tls", annotations=OPTED_IN)
    action = RenewCertificate(client)
    checked = await action.precheck(request())
    assert checked.verdict.allowed and checked.facts is not None
    result = await action.run(request(), checked.facts)
    assert result.succeeded, result.sentence
    assert await action.verify(request(0.5), result) is VerifyResult.INEFFECTIVE
    [pending] = manager.certificate_requests(NS)
    assert [c["reason"] for c in pending["status"]["conditions"]] == ["cert-manager.io", "Pending"]


VALID = {"revision": 1, "notAfter": "2026-01-01T00:00:00Z", "conditions": []}
HOSTILE: dict[str, tuple[Any, str]] = {
    "status-a-list": ([VALID], "the value: Input should be an object"),
    "not-after-not-a-time": ({**VALID, "notAfter": "soon"}, "notAfter: Input should be a valid"),
    "not-after-a-number": ({**VALID, "notAfter": 1767225600}, "notAfter: Input should be a valid"),
    "not-after-without-zone": (
        {**VALID, "notAfter": "2026-01-01T00:00:00"}, "notAfter: Input should have timezone info",
    ),
    "conditions-not-a-list": (
        {**VALID, "conditions": {"type": "Ready"}}, "conditions: Input should be a valid",
    ),
    "condition-status-odd": (
        {**VALID, "conditions": [{"type": "Ready", "status": "Yes"}]}, "conditions.0.status",
    ),
    "condition-type-missing": ({**VALID, "conditions": [{"status": "True"}]}, "conditions.0.type"),
    "revision-huge": ({**VALID, "revision": 10**30}, "revision: Input should be less than"),
    "revision-text": ({**VALID, "revision": "2"}, "revision: Input should be a valid integer"),
    "revision-negative": ({**VALID, "revision": -1}, "revision: Input should be greater than"),
    "bidi-in-type": (
        {**VALID, "conditions": [{"type": "Issuing\u202e", "status": 1}]}, "conditions.0.status",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_a_status_that_cannot_be_read_is_refused_and_nothing_is_written(
    kube: KubeApiServer, client: KubeHandle, case: str
) -> None:
    status, problem = HOSTILE[case]
    quick(kube).add_certificate(NS, "api-tls", annotations=OPTED_IN, status=status)
    checked = await RenewCertificate(client).precheck(request())
    assert checked.verdict.reason is StopReason.PRECHECK_FAILED
    assert checked.verdict.sentence.startswith(
        f"{NS}/Certificate/api-tls has a status remediator cannot read ("
    )
    assert problem in checked.verdict.sentence
    assert checked.verdict.sentence.endswith("); nothing was written.")
    assert len(checked.verdict.sentence) < 1000
    assert [r for r in kube.requests if r.method != "GET"] == []


def intent(certificate: dict[str, Any], **changes: Any) -> RenewCertificateIntent:
    status = certificate["status"]
    fields = {"uid": certificate["metadata"]["uid"], "revision": status["revision"],
              "not_after": status["notAfter"], **changes}  # fmt: skip
    return RenewCertificateIntent.model_validate(fields)


async def _triggered(kube: KubeApiServer, client: KubeHandle) -> None:
    action = RenewCertificate(client)
    checked = await action.precheck(request())
    assert checked.facts is not None
    assert (await action.run(request(), checked.facts)).succeeded


async def _until(kube: KubeApiServer, done: Any) -> None:
    assert kube.cert_manager is not None
    for _ in range(200):
        if done(kube.cert_manager.certificate(NS, "api-tls")["status"]):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("cert-manager never got there")


async def _issued(kube: KubeApiServer, client: KubeHandle) -> None:
    await _triggered(kube, client)
    await _until(kube, lambda status: status["revision"] == 2)


async def _failed(kube: KubeApiServer, client: KubeHandle) -> None:
    assert kube.cert_manager is not None
    kube.cert_manager.outcome = "fail"
    await _triggered(kube, client)
    await _until(kube, lambda status: "lastFailureTime" in status)


async def _replaced(kube: KubeApiServer, client: KubeHandle) -> None:
    kube._store["certificates"].pop((NS, "api-tls"))
    assert kube.cert_manager is not None
    kube.cert_manager.add_certificate(NS, "api-tls", annotations=OPTED_IN)


async def _gone(kube: KubeApiServer, client: KubeHandle) -> None:
    kube._store["certificates"].pop((NS, "api-tls"))


async def _untouched(kube: KubeApiServer, client: KubeHandle) -> None:
    pass


async def _hanging(kube: KubeApiServer, client: KubeHandle) -> None:
    assert kube.cert_manager is not None
    kube.cert_manager.outcome = "hang"
    await _triggered(kube, client)


RECONCILED = {
    "untouched": (_untouched, False),
    "in-flight": (_hanging, True),
    "issued": (_issued, True),
    "failed-since": (_failed, None),
    "replaced": (_replaced, None),
    "gone": (_gone, None),
}


@pytest.mark.parametrize("case", list(RECONCILED))
async def test_reconcile_observes_whether_the_trigger_took_effect_and_writes_nothing(
    kube: KubeApiServer, client: KubeHandle, case: str
) -> None:
    world, applied = RECONCILED[case]
    manager = quick(kube)
    before = manager.add_certificate(NS, "api-tls", annotations=OPTED_IN)
    await world(kube, client)
    written = len([r for r in kube.requests if r.method != "GET"])
    seen = await RenewCertificate(client).reconcile(request(), intent(before))
    assert seen.applied is applied, seen.sentence
    if applied:
        assert seen.result is not None and seen.result.details["triggered"] is True
    assert len([r for r in kube.requests if r.method != "GET"]) == written


async def test_a_lost_answer_to_the_trigger_is_not_a_second_trigger(
    kube: KubeApiServer, client: KubeHandle
) -> None:
    manager = quick(kube)
    manager.outcome = "hang"  # Issuing stays True: the retry meets 409 and reads it
    manager.add_certificate(NS, "api-tls", annotations=OPTED_IN)
    kube.inject_fault(r"/status$", method="PATCH", drop=True, served=True, times=1)
    action = RenewCertificate(client)
    checked = await action.precheck(request())
    assert checked.facts is not None
    result = await action.run(request(), checked.facts)
    assert result.succeeded and result.details["triggered"] is True, result.sentence
    assert "the write landed though its answer was lost" in result.sentence
    patches = [r.status for r in kube.requests if r.method == "PATCH"]
    assert patches == [None, 409]
    assert len(manager.certificate_requests(NS)) == 1


def test_explain_says_the_certificate_itself_must_opt_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = certificate_rules(tmp_path / "rules")
    labels = [f"{k}={v}" for k, v in expiring().items()]
    assert main(["explain", "--rules", str(rules), *labels]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "action: renew-certificate (renew_certificate)" in out
    assert (
        f"opt-in: {NS}/Certificate/api-tls must carry the annotation remediator.io/allow naming"
        " renew_certificate; the live object is read before acting."
    ) in out
