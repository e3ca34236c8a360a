"""Stopping under work: on SIGTERM ``remediator serve`` drains within one deadline, the
``--shutdown-grace-seconds`` it was given, however many stages wait on the actions. An
action's verification that is still waiting when the grace runs out is not left hanging: it
is settled as interrupted by shutdown (audited, escalated), and a restart on the same state
neither runs nor observes that claim again."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from tests.support.kube_api import KubeApiServer
from tests.support.kubeconfig import write_kubeconfig
from tests.support.payloads import fleet_notifications
from tests.support.process import RemediatorProcess, start_remediator
from tests.support.replicas import NS, scale_writes
from tests.support.service import SCALE_FLEET_RULES

GRACE_S = 4.0
"""The stop's grace: verifications are interrupted half of it in (``runner.SETTLE_S``)."""
MARGIN_S = 3.0
"""Beyond the grace, for the interpreter to exit once the drain is over."""


def never_verified_rules(tmp_path: Path) -> Path:
    """The fleet rules with a verification window far longer than the grace."""
    rules = tmp_path / "rules"
    rules.mkdir()
    text = (SCALE_FLEET_RULES / "rules.yaml").read_text()
    assert "verify_within_s: 30\n" in text
    (rules / "rules.yaml").write_text(
        text.replace("verify_within_s: 30\n", "verify_within_s: 600\n")
    )
    return rules


async def until_scaled(kube: KubeApiServer, replica: RemediatorProcess) -> None:
    for _ in range(200):
        if scale_writes(kube):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"d0 was not scaled:\n{replica.log_tail()}")


async def test_sigterm_during_a_verification_that_cannot_pass_exits_within_the_grace_and_settles_it(
    tmp_path: Path,
) -> None:
    rules = never_verified_rules(tmp_path)
    async with KubeApiServer(seed=16) as kube:
        kube.kubelet = False  # the new pod never becomes Ready: the verification waits
        kube.add_deployment(NS, "d0", replicas=1, annotations={"remediator.io/allow": "scale_out"})
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url, kube.token or "")
        args = ("--kubeconfig", str(kubeconfig), "--shutdown-grace-seconds", str(GRACE_S))
        replica = await start_remediator(tmp_path / "replica", rules=rules, extra_args=args)
        try:
            [body] = fleet_notifications(1)
            assert await replica.post(body) == 200
            await until_scaled(kube, replica)
            await asyncio.sleep(0.5)  # the scale write answered: verifying now
            signalled = time.monotonic()
            replica.proc.send_signal(signal.SIGTERM)
            code = await replica.wait_exit(GRACE_S + MARGIN_S)
            stopped_in_s = time.monotonic() - signalled
        finally:
            await replica.stop()
        log = replica.log_tail(200)
        again = await start_remediator(tmp_path / "replica", rules=rules, extra_args=args)
        try:
            decisions = await again.decisions()
        finally:
            assert await again.stop() == 0
    assert code == 0, log
    assert GRACE_S / 2 - 0.5 <= stopped_in_s <= GRACE_S + MARGIN_S, log
    settled = [(d["step"], d["outcome"], d["reason"]) for d in decisions if d["target"]]
    assert settled == [
        ("claimed", "claimed", None),
        ("acted", "succeeded", None),
        ("verified", "unknown", "shutting_down"),
        ("escalated", "escalated", "shutting_down"),
    ]
    [verified] = [d for d in decisions if d["step"] == "verified"]
    assert verified["sentence"].startswith(
        "Verifying scale_out on llm-research/Deployment/d0 was interrupted by shutdown after"
    )
    assert verified["sentence"].endswith("of its 600 s; whether the fix holds is unknown.")
    assert len(scale_writes(kube)) == 1  # the restart did not run it again
    assert "stopping: answering 503 while 0 journal entries are processed and 1 actions" in log
