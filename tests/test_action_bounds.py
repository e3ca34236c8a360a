"""The pure parts of the Kubernetes actions, as tables: bounds, picks, opt-in, errors, RBAC."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from kubernetes_asyncio.client import ApiException
from pydantic import ValidationError

from remediator.actions import opt_in
from remediator.actions.base import Permission, VerifyResult, verified_within
from remediator.actions.healthy import required_ready
from remediator.actions.recycle_pod import RecyclePodParams, choose
from remediator.actions.scale_out import ScaleOutParams, target_replicas
from remediator.clients.k8s import Pod, translate
from remediator.core.errors import (
    Conflict,
    DisruptionBlocked,
    Forbidden,
    NotFound,
    NotServed,
    Throttled,
    Transient,
)
from remediator.core.model import StopReason
from remediator.ruleset.rbac import merged_rules


@pytest.mark.parametrize(
    ("current", "params", "expected"),
    [
        (3, {"step": 2, "max_replicas": 20}, 5),
        (19, {"step": 2, "max_replicas": 20}, 20),
        (20, {"step": 2, "max_replicas": 20}, 20),
        (25, {"step": 2, "max_replicas": 20}, 20),
        (3, {"step": 50, "max_replicas": 100}, 7),  # +4 pods is the most from 3
        (10, {"step": 50, "max_replicas": 100}, 20),  # +100 % is the most from 10
        (4, {"factor": 1.5, "max_replicas": 20}, 6),
        (5, {"factor": 1.5, "max_replicas": 20}, 8),  # rounded up
        (1, {"factor": 10, "max_replicas": 20}, 5),
    ],
    ids=["step", "capped", "at-max", "above-max", "step-limit-4", "step-limit-100pct",
         "factor", "factor-rounds-up", "factor-step-limit"],
)  # fmt: skip
def test_scale_out_targets_stay_within_max_replicas_and_the_step_limit(
    current: int, params: dict[str, float], expected: int
) -> None:
    assert target_replicas(current, ScaleOutParams.model_validate(params)) == expected


@pytest.mark.parametrize(
    "params",
    [{"max_replicas": 5}, {"step": 1, "factor": 2, "max_replicas": 5},
     {"step": 0, "max_replicas": 5}, {"factor": 1.0, "max_replicas": 5}, {"step": 1}],
    ids=["neither", "both", "zero-step", "factor-one", "no-max"],
)  # fmt: skip
def test_scale_out_parameters_need_one_way_to_grow_and_a_maximum(params: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        ScaleOutParams.model_validate(params)


@pytest.mark.parametrize(
    ("min_healthy", "desired", "expected"),
    [(2, 3, 2), ("66%", 3, 2), ("67%", 3, 3), ("100%", 5, 5), ("0%", 5, 0)],
)
def test_min_healthy_is_a_count_or_a_share_rounded_up(
    min_healthy: int | str, desired: int, expected: int
) -> None:
    assert (
        required_ready(RecyclePodParams(min_healthy=min_healthy).min_healthy, desired) == expected
    )


@pytest.mark.parametrize("bad", ["66", "-1%", "101%", "half", -1])
def test_min_healthy_refuses_what_is_not_a_count_or_percentage(bad: int | str) -> None:
    with pytest.raises(ValidationError):
        RecyclePodParams(min_healthy=bad)


def pod(
    name: str, restarts: int = 0, ready: bool = True, phase: str = "Running", day: int = 1
) -> Pod:
    created = datetime(2026, 11, day, tzinfo=UTC)
    return Pod("ns", name, f"uid-{name}", phase, ready, restarts, created, None)


PODS = [pod("a", 1, day=3), pod("b", 7, day=2), pod("c", 0, ready=False, day=4),
        pod("d", 99, phase="Succeeded", day=1)]  # fmt: skip


@pytest.mark.parametrize(
    ("pick", "expected"), [("most_restarts", "b"), ("oldest", "b"), ("not_ready", "c")]
)
def test_a_deployment_target_picks_one_live_pod(pick: str, expected: str) -> None:
    chosen = choose(PODS, pick)
    assert chosen is not None and chosen.name == expected


@pytest.mark.parametrize(
    ("annotation", "required", "allowed"),
    [
        ("scale_out,recycle_pod", True, True),
        (" recycle_pod , scale_out ", True, True),
        ("recycle_pod", True, False),
        ("scale_out_please", True, False),
        (None, True, False),
        (None, False, True),
    ],
)
def test_the_opt_in_annotation_must_name_the_action(
    annotation: str | None, required: bool, allowed: bool
) -> None:
    annotations = {} if annotation is None else {opt_in.ANNOTATION: annotation}
    verdict = opt_in.decide(annotations, "scale_out", "ns/Deployment/api", required)
    assert verdict.allowed is allowed
    assert verdict.allowed or verdict.reason is StopReason.NOT_OPTED_IN


def api_exception(status: int, message: str, retry_after: str | None = None) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.body = json.dumps({"kind": "Status", "message": message, "code": status})
    exc.headers = {"Retry-After": retry_after} if retry_after else {}
    return exc


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (404, 'pods "x" not found', NotFound),
        (409, "the object has been modified", Conflict),
        (403, "forbidden", Forbidden),
        (401, "Unauthorized", Forbidden),
        (429, "Cannot evict pod as it would violate the pod's disruption budget.",
         DisruptionBlocked),
        (429, "too many requests", Throttled),
        (500, "etcd is down", Transient),
        (503, "unavailable", Transient),
    ],
)  # fmt: skip
def test_api_errors_are_translated_to_ours_with_the_server_message(
    status: int, message: str, expected: type[Exception]
) -> None:
    translated = translate(api_exception(status, message, retry_after="3"))
    assert type(translated) is expected
    assert str(translated) == message
    if isinstance(translated, Throttled):
        assert translated.retry_after_s == 3.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("404 page not found\n", NotServed),  # a group the API server does not serve
        (json.dumps({"kind": "Status", "reason": "NotFound", "details": {},
                     "message": "the server could not find the requested resource"}), NotServed),
        (json.dumps({"kind": "Status", "reason": "NotFound", "message":
                     'certificates.cert-manager.io "api-tls" not found',
                     "details": {"name": "api-tls", "group": "cert-manager.io",
                                 "kind": "certificates"}}), NotFound),
    ],
    ids=["page-not-found", "resource-not-found", "object-not-found"],
)  # fmt: skip
def test_a_404_for_a_path_not_served_is_told_from_a_missing_object(
    body: str, expected: type[Exception]
) -> None:
    exc = ApiException(status=404, reason="Not Found")
    exc.body = body
    assert type(translate(exc)) is expected


def test_rbac_rules_unite_verbs_per_resource_and_group_equal_verb_sets() -> None:
    rules = merged_rules(
        [
            Permission("", ("pods",), ("get", "list")),
            Permission("", ("pods",), ("delete",)),
            Permission("", ("pods/eviction", "events"), ("create",)),
            Permission("apps", ("deployments",), ("get",)),
        ]
    )
    assert rules == [
        {"apiGroups": [""], "resources": ["events", "pods/eviction"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "get", "list"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
    ]


async def test_verification_looks_soon_then_less_often_and_last_at_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    looked_at: list[float] = []

    async def holds_after_1_s() -> bool:
        looked_at.append(loop.time() - started)
        return looked_at[-1] >= 1.0

    assert await verified_within(60, holds_after_1_s) is VerifyResult.VERIFIED
    # 0, 0.25, 0.75, then 1.75 s: seen within a second of holding, in four reads.
    assert len(looked_at) == 4 and 1.7 <= looked_at[-1] < 2.5

    looked_at.clear()
    started = loop.time()

    async def never() -> bool:
        looked_at.append(loop.time() - started)
        return False

    assert await verified_within(1.0, never) is VerifyResult.INEFFECTIVE
    # 0, 0.25, 0.75 and the last look at the deadline itself, not given up early.
    assert len(looked_at) == 4 and 1.0 <= looked_at[-1] < 1.5
