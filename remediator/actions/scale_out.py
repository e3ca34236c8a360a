"""``scale_out``: raise a Deployment's replicas through the scale subresource, within bounds.

The new count is absolute, computed from the count read, never above ``max_replicas`` and
never more than max(+4 pods, +100 %) in one action (the HPA's default scale-up policy),
written with the resourceVersion read: a concurrent writer makes it re-read and decide
again. A Deployment another controller scales (a KEDA ScaledObject, an HPA, a GitOps
controller that owns ``spec.replicas``: ``ownership``) is refused: two controllers must not
fight. Verified when ``readyReplicas`` reaches the new count within the rule's window.

Its intent and its undo state each take one of two shapes: through the scale subresource
(``from``/``to``, ``restore_to``/``set_to``) or through the HPA's minReplicas (named by
``hpa``); the ``hpa`` key tells them apart, as it always has in the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    RootModel,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
    model_validator,
)

from remediator.actions import opt_in, ownership
from remediator.actions.base import (
    Action,
    ActionRequest,
    ActionResult,
    Checked,
    Permission,
    Reconciled,
    Stored,
    VerifyResult,
    verified_within,
)
from remediator.clients.k8s import CONFLICT_WAITS_S, KubeClient, KubeHandle, conflict_attempts
from remediator.core.errors import Conflict, NotFound
from remediator.core.model import ALLOW, StopReason, refuse

MAX_STEP_PODS = 4
"""Pods one action may add beyond doubling: max(+4 pods, +100 %), like the HPA default."""
WRITE_ATTEMPTS = len(CONFLICT_WAITS_S)
SCALE_IN_STEP_S = 60.0
"""Seconds between two scale-in steps, so each smaller count can show it holds."""


MAX_REPLICAS = 1_000
"""The most replicas a rule may scale to: beyond that, capacity is a human decision."""
MAX_SCALE_IN_AFTER_S = 7 * 86_400
"""A week: extra pods kept longer than that are a capacity change, not a remediation."""


class ScaleOutParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    max_replicas: int = Field(ge=1, le=MAX_REPLICAS)
    """Never scale above this, 1 to 1 000. Required: the seed's API runs 3 to 20 pods."""
    step: int | None = Field(default=None, ge=1, le=MAX_REPLICAS)
    """Pods to add, 1 to 1 000 (one action adds at most max(4 pods, +100 %) anyway)."""
    factor: float | None = Field(default=None, gt=1, le=10)
    """Or multiply the current count (rounded up), above 1 and at most 10; the step limit
    caps any factor above 5 (1 pod → 5)."""
    hpa: Literal["refuse", "raise_min"] = "refuse"
    """When an HPA scales the Deployment: refuse (two controllers must not fight), or raise
    the HPA's minReplicas to the new count instead and let the HPA scale."""
    gitops: Literal["refuse", "act"] = "refuse"
    """When Argo CD or Flux owns ``spec.replicas`` (``actions/ownership``): refuse, or scale
    anyway (its next sync puts the count back; an emergency where minutes matter). Left
    out of the stored parameters when ``refuse``, so a rule hashes as before the key."""
    scale_in_after_s: float | None = Field(default=None, ge=0, le=MAX_SCALE_IN_AFTER_S)
    """Once the episode has stayed resolved this long (seconds, at most 7 days), return to
    the count it started from, in bounded steps, unless someone else changed the replicas
    since. None: never."""

    @model_serializer(mode="wrap")
    def _without_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        if dumped.get("gitops") == "refuse":
            del dumped["gitops"]
        return dumped

    @model_validator(mode="after")
    def _one_way_to_grow(self) -> Self:
        if (self.step is None) == (self.factor is None):
            raise ValueError("give exactly one of step or factor")
        return self


INT32_MAX = 2**31 - 1
"""Kubernetes counts are int32: the most replicas an API server can report."""

WrittenReplicas = Annotated[int, Field(ge=0, le=MAX_REPLICAS)]
"""A count remediator writes or puts back: never above ``MAX_REPLICAS``."""
ObservedReplicas = Annotated[int, Field(ge=0, le=INT32_MAX)]
"""A count read from the API server, which someone else may have set."""


class ScaleOutFacts(BaseModel):
    """What precheck saw: the Deployment's UID (for its events), and whether an HPA scales
    it (then the rule's ``hpa: raise_min`` scales through the HPA)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    hpa_scales: bool


class ReplicasIntent(Stored):
    """The scale subresource goes from ``from`` to ``to`` replicas."""

    from_replicas: WrittenReplicas = Field(alias="from")
    to_replicas: WrittenReplicas = Field(alias="to")
    uid: str = ""
    """The Deployment's UID when precheck saw it; intents written without one read as ""."""


class HpaIntent(Stored):
    """HorizontalPodAutoscaler ``hpa`` gets minReplicas ``min_to`` instead of ``min_from``."""

    hpa_name: str = Field(alias="hpa", min_length=1)
    min_from_replicas: WrittenReplicas = Field(alias="min_from")
    min_to_replicas: WrittenReplicas = Field(alias="min_to")
    from_replicas: ObservedReplicas = Field(alias="from")
    """The Deployment's replicas when the raise was decided."""


class ReplicasUndo(Stored):
    """Scale back to ``restore_to`` if the count is still the ``set_to`` remediator wrote."""

    restore_to_replicas: WrittenReplicas = Field(alias="restore_to")
    set_to_replicas: WrittenReplicas = Field(alias="set_to")


class HpaUndo(Stored):
    """Put minReplicas of ``hpa`` back to ``restore_min`` if it still is ``set_min``."""

    hpa_name: str = Field(alias="hpa", min_length=1)
    restore_min_replicas: WrittenReplicas = Field(alias="restore_min")
    set_min_replicas: WrittenReplicas = Field(alias="set_min")


def _through(value: object) -> str:
    """Which shape a stored value has: the HPA's when it names one."""
    through_hpa = isinstance(value, HpaIntent | HpaUndo) or (
        isinstance(value, dict) and "hpa" in value
    )
    return "hpa" if through_hpa else "scale"


class ScaleOutIntent(
    RootModel[
        Annotated[
            Annotated[ReplicasIntent, Tag("scale")] | Annotated[HpaIntent, Tag("hpa")],
            Discriminator(_through),
        ]
    ]
):
    model_config = ConfigDict(frozen=True)


class ScaleOutUndo(
    RootModel[
        Annotated[
            Annotated[ReplicasUndo, Tag("scale")] | Annotated[HpaUndo, Tag("hpa")],
            Discriminator(_through),
        ]
    ]
):
    model_config = ConfigDict(frozen=True)


Request = ActionRequest[ScaleOutParams, ScaleOutIntent]
Result = ActionResult[ScaleOutUndo]


def scale_in_step(current: int, restore_to: int) -> int:
    """One bounded step back down: at most max(4 pods, half) at a time, never below."""
    return max(restore_to, current - max(MAX_STEP_PODS, current // 2))


def target_replicas(current: int, params: ScaleOutParams) -> int:
    """The absolute count to write: wanted, bounded by the step limit and max_replicas."""
    wanted = current + params.step if params.step else math.ceil(current * (params.factor or 1))
    return min(wanted, current + max(MAX_STEP_PODS, current), params.max_replicas)


class ScaleOut(Action[ScaleOutParams, ScaleOutFacts, ScaleOutIntent, ScaleOutUndo]):
    kind: ClassVar[str] = "scale_out"
    params_model: ClassVar[type[ScaleOutParams]] = ScaleOutParams
    intent_model: ClassVar[type[ScaleOutIntent]] = ScaleOutIntent
    undo_model: ClassVar[type[ScaleOutUndo]] = ScaleOutUndo
    target_kinds: ClassVar[frozenset[str]] = frozenset({"Deployment"})
    destructive: ClassVar[bool] = False

    def __init__(self, handle: KubeHandle) -> None:
        self._handle = handle

    def available(self) -> bool:
        return self._handle.client is not None

    def permissions(self, params: ScaleOutParams) -> Sequence[Permission]:
        """Raising and lowering an HPA's ``minReplicas`` is a ``patch`` on it, granted only
        where a rule says ``hpa: raise_min``; every rule lists HPAs and KEDA's
        ScaledObjects, to refuse under one."""
        hpa_verbs = ("list", "patch") if params.hpa == "raise_min" else ("list",)
        return (
            Permission("apps", ("deployments",), ("get",)),
            Permission("apps", ("deployments/scale",), ("get", "patch")),
            Permission("autoscaling", ("horizontalpodautoscalers",), hpa_verbs),
            Permission("keda.sh", ("scaledobjects",), ("list",)),
            Permission("", ("events",), ("create",)),
        )

    def _kube(self) -> KubeClient:
        assert self._handle.client is not None, "scale_out run without a cluster"
        return self._handle.client

    async def precheck(self, request: Request) -> Checked[ScaleOutFacts]:
        target, kube = request.target, self._kube()
        try:
            deployment = await kube.deployment(target.namespace, target.name)
        except NotFound:
            return Checked(refuse(StopReason.TARGET_GONE, f"{target.key} does not exist."))
        verdict = opt_in.decide(
            deployment.annotations, self.kind, target.key, request.require_opt_in
        )
        if not verdict.allowed:
            return Checked(verdict)
        scaled_objects = await kube.scaled_objects_for(target.namespace, target.name)
        hpas = await kube.hpas_for(target.namespace, target.name)
        params = request.params
        verdict = ownership.decide(
            deployment, scaled_objects, hpas, hpa=params.hpa, gitops=params.gitops
        )
        if not verdict.allowed:
            return Checked(verdict)
        return Checked(ALLOW, ScaleOutFacts(uid=deployment.uid, hpa_scales=bool(hpas)))

    async def run(self, request: Request, facts: ScaleOutFacts) -> Result:
        target, kube = request.target, self._kube()
        if facts.hpa_scales:
            return await self._raise_hpa_min(request)
        # The target is fixed from the first read: a write that landed but whose answer was
        # lost (a timeout, then a retry that meets 409) must not grow the count again.
        scale = await kube.scale(target.namespace, target.name)
        start, wanted = scale.replicas, target_replicas(scale.replicas, request.params)
        if wanted > start:
            intent = ReplicasIntent(from_replicas=start, to_replicas=wanted, uid=facts.uid)
            await request.intend(ScaleOutIntent(intent), None)
        async for attempt in conflict_attempts():
            if attempt:
                # After a 409 someone (perhaps our own lost write) wrote: read again, decide again.
                scale = await kube.scale(target.namespace, target.name)
            if scale.replicas == wanted != start:
                # After a 409: exactly the count remediator wrote, so its lost write landed.
                return _scaled(
                    request.params,
                    f"Scaled {target.key} from {start} to {wanted} replicas; the write landed"
                    " though its answer was lost.",
                    start,
                    wanted,
                    scale.resource_version,
                )
            if wanted <= scale.replicas:
                return ActionResult(
                    True,
                    f"{target.key} already runs {scale.replicas} replicas, at or above the"
                    f" target of {wanted}; nothing changed.",
                    {"from": start, "to": scale.replicas, "changed": False},
                )
            try:
                written = await kube.set_replicas(
                    target.namespace, target.name, wanted, scale.resource_version
                )
            except Conflict:
                continue
            await kube.record_event(
                target.namespace, "Deployment", target.name, facts.uid,
                "RemediatorScaledOut", f"remediator scaled from {start} to {wanted}"
                f" replicas (rule {request.rule}, episode {request.episode_id}).",
            )  # fmt: skip
            return _scaled(
                request.params,
                f"Scaled {target.key} from {start} to {wanted} replicas"
                f" (at most {request.params.max_replicas}).",
                start,
                wanted,
                written.resource_version,
            )
        return ActionResult(
            False,
            f"{target.key} changed under remediator {WRITE_ATTEMPTS} times in a row; not scaled.",
        )

    async def _raise_hpa_min(self, request: Request) -> Result:
        """Scale through the HPA: raise its minReplicas, within both its max and ours."""
        target, kube = request.target, self._kube()
        scale = await kube.scale(target.namespace, target.name)
        wanted = target_replicas(scale.replicas, request.params)  # fixed, as in run()
        intended = False
        async for _ in conflict_attempts():
            [hpa] = await kube.hpas_for(target.namespace, target.name)
            wanted = min(wanted, hpa.max_replicas)
            if not intended and wanted > hpa.min_replicas:
                intent = HpaIntent(
                    hpa_name=hpa.name,
                    min_from_replicas=hpa.min_replicas,
                    min_to_replicas=wanted,
                    from_replicas=scale.replicas,
                )
                await request.intend(ScaleOutIntent(intent), None)
                intended = True
            if wanted <= hpa.min_replicas:
                return ActionResult(
                    True,
                    f"HorizontalPodAutoscaler {hpa.name} already keeps {target.key} at"
                    f" {hpa.min_replicas} replicas or more; nothing changed.",
                    {"from": scale.replicas, "to": scale.replicas, "changed": False},
                )
            try:
                await kube.set_hpa_min(hpa, wanted)
            except Conflict:
                continue
            await kube.record_event(
                target.namespace, "HorizontalPodAutoscaler", hpa.name, hpa.uid,
                "RemediatorRaisedMin", f"remediator raised minReplicas from {hpa.min_replicas}"
                f" to {wanted} (rule {request.rule}, episode {request.episode_id}).",
            )  # fmt: skip
            return _hpa_raised(
                request.params,
                f"Raised minReplicas of HorizontalPodAutoscaler {hpa.name} from"
                f" {hpa.min_replicas} to {wanted}, so it scales {target.key} out.",
                hpa.name, hpa.min_replicas, wanted, scale.replicas,
            )  # fmt: skip
        return ActionResult(
            False, f"The HPA of {target.key} changed under remediator {WRITE_ATTEMPTS} times."
        )

    async def _lower_hpa_min(self, request: Request, state: HpaUndo) -> Result:
        """Put the HPA's minReplicas back; the HPA scales down at its own pace."""
        target, kube = request.target, self._kube()
        name = state.hpa_name
        hpas = [h for h in await kube.hpas_for(target.namespace, target.name) if h.name == name]
        if not hpas or hpas[0].min_replicas != state.set_min_replicas:
            return ActionResult(
                True,
                f"HorizontalPodAutoscaler {name} changed since remediator raised it;"
                " its minReplicas is left as it is.",
            )
        await kube.set_hpa_min(hpas[0], state.restore_min_replicas)
        await kube.record_event(
            target.namespace, "HorizontalPodAutoscaler", name, hpas[0].uid,
            "RemediatorLoweredMin", f"remediator lowered minReplicas back from"
            f" {state.set_min_replicas} to {state.restore_min_replicas} (rule {request.rule}).",
        )  # fmt: skip
        return ActionResult(
            True,
            f"Lowered minReplicas of HorizontalPodAutoscaler {name} back to"
            f" {state.restore_min_replicas}.",
        )

    async def verify(self, request: Request, result: Result) -> VerifyResult:
        wanted = int(result.details.get("to", 0))
        target, kube = request.target, self._kube()

        async def ready() -> bool:
            deployment = await kube.deployment(target.namespace, target.name)
            return deployment.ready_replicas >= wanted

        return await verified_within(request.verify_within_s, ready)

    async def reconcile(self, request: Request, intent: ScaleOutIntent) -> Reconciled[ScaleOutUndo]:
        """The write is absolute: at or above the intended count, it landed; still at the
        count read before, it did not; anything else, someone else moved it."""
        if isinstance(intent.root, HpaIntent):
            return await self._reconcile_hpa(request, intent.root)
        params, target, kube = request.params, request.target, self._kube()
        start, wanted = intent.root.from_replicas, intent.root.to_replicas
        try:
            scale = await kube.scale(target.namespace, target.name)
        except NotFound:
            return Reconciled(None, f"{target.key} no longer exists.")
        seen = f"{target.key} runs {scale.replicas} replicas (intended {start} → {wanted})"
        return _judged(
            scale.replicas, start, wanted, seen, "the scale-out",
            lambda sentence: _scaled(params, sentence, start, wanted, scale.resource_version),
        )  # fmt: skip

    async def _reconcile_hpa(self, request: Request, intent: HpaIntent) -> Reconciled[ScaleOutUndo]:
        params, target, kube = request.params, request.target, self._kube()
        name, before, wanted = intent.hpa_name, intent.min_from_replicas, intent.min_to_replicas
        hpas = [h for h in await kube.hpas_for(target.namespace, target.name) if h.name == name]
        if not hpas:
            return Reconciled(None, f"HorizontalPodAutoscaler {name} no longer exists.")
        seen = (
            f"HorizontalPodAutoscaler {name} keeps minReplicas {hpas[0].min_replicas}"
            f" (intended {before} → {wanted})"
        )
        return _judged(
            hpas[0].min_replicas, before, wanted, seen, "the raise",
            lambda sentence: _hpa_raised(
                params, sentence, name, before, wanted, intent.from_replicas
            ),
        )  # fmt: skip

    async def undo(self, request: Request, state: ScaleOutUndo) -> Result:
        """Scale back in one bounded step, if the replicas are still what remediator set."""
        if isinstance(state.root, HpaUndo):
            return await self._lower_hpa_min(request, state.root)
        target, kube = request.target, self._kube()
        restore_to, set_to = state.root.restore_to_replicas, state.root.set_to_replicas
        async for _ in conflict_attempts():
            scale = await kube.scale(target.namespace, target.name)
            if scale.replicas != set_to:
                return ActionResult(
                    True,
                    f"{target.key} now runs {scale.replicas} replicas, not the {set_to}"
                    " remediator set: someone else changed it, so it is not scaled back.",
                    {"replicas": scale.replicas},
                )
            step = scale_in_step(scale.replicas, restore_to)
            try:
                await kube.set_replicas(target.namespace, target.name, step, scale.resource_version)
                break
            except Conflict:
                # The deployment controller's own status writes bump the resourceVersion
                # between a read and a write: a 409 is the normal path. The replica count
                # read again tells that apart from someone else scaling it.
                continue
        else:
            return ActionResult(
                False,
                f"{target.key} kept changing while remediator scaled it back"
                f" ({WRITE_ATTEMPTS} conflicts); it still runs {set_to} replicas.",
                {"to": set_to},
            )
        deployment = await kube.deployment(target.namespace, target.name)
        await kube.record_event(
            target.namespace, "Deployment", target.name, deployment.uid,
            "RemediatorScaledIn", f"remediator scaled back in from {scale.replicas} to {step}"
            f" replicas (rule {request.rule}, episode {request.episode_id}).",
        )  # fmt: skip
        more = ReplicasUndo(restore_to_replicas=restore_to, set_to_replicas=step)
        return ActionResult(
            True,
            f"Scaled {target.key} back in from {scale.replicas} to {step} replicas"
            f" (started from {restore_to}).",
            {"from": scale.replicas, "to": step},
            undo=ScaleOutUndo(more) if step > restore_to else None,
            undo_after_s=SCALE_IN_STEP_S,
        )


def _scaled(
    params: ScaleOutParams, sentence: str, start: int, wanted: int, resource_version: str
) -> Result:
    after = params.scale_in_after_s
    back = ReplicasUndo(restore_to_replicas=start, set_to_replicas=wanted)
    return ActionResult(
        True,
        sentence,
        {"from": start, "to": wanted, "changed": True, "resource_version": resource_version},
        undo=None if after is None else ScaleOutUndo(back),
        undo_after_s=after or 0.0,
    )


def _hpa_raised(
    params: ScaleOutParams, sentence: str, hpa: str, min_before: int, wanted: int, replicas: int
) -> Result:
    after = params.scale_in_after_s
    back = HpaUndo(hpa_name=hpa, restore_min_replicas=min_before, set_min_replicas=wanted)
    return ActionResult(
        True,
        sentence,
        {"hpa": hpa, "from": replicas, "to": wanted, "changed": True,
         "hpa_min_before": min_before},
        undo=None if after is None else ScaleOutUndo(back),
        undo_after_s=after or 0.0,
    )  # fmt: skip


def _judged(
    current: int,
    before: int,
    wanted: int,
    seen: str,
    effect: str,
    applied: Callable[[str], Result],
) -> Reconciled[ScaleOutUndo]:
    """An absolute write of ``wanted`` over ``before``, judged by the ``current`` value:
    at or above it, it landed; still ``before``, it did not; else someone else moved it."""
    if current >= wanted:
        sentence = f"{seen}: {effect} took effect."
        return Reconciled(True, sentence, applied(sentence))
    if current == before:
        return Reconciled(False, f"{seen}: {effect} did not take effect.")
    return Reconciled(None, f"{seen}: someone else changed it.")
