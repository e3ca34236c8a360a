"""``log_only``: records what it was asked to do and touches nothing.

It lets a rule exercise the whole pipeline (claim, guards, audit) before a real action is
trusted with the target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from remediator.actions.base import (
    ActionRequest,
    ActionResult,
    Checked,
    Permission,
    Reconciled,
    VerifyResult,
)
from remediator.core.model import ALLOW


class LogOnlyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    note: str = ""
    """Free text copied into the audit record, e.g. the runbook step a human would take."""


class LogOnly:
    kind: ClassVar[str] = "log_only"
    params_model: ClassVar[type[BaseModel]] = LogOnlyParams
    target_kinds: ClassVar[frozenset[str]] = frozenset()
    destructive: ClassVar[bool] = False

    def available(self) -> bool:
        return True

    def permissions(self) -> Sequence[Permission]:
        return ()

    async def precheck(self, request: ActionRequest) -> Checked:
        return Checked(ALLOW)

    async def run(self, request: ActionRequest, facts: Mapping[str, Any]) -> ActionResult:
        assert isinstance(request.params, LogOnlyParams)
        note = f" ({request.params.note})" if request.params.note else ""
        return ActionResult(
            succeeded=True,
            sentence=f"log_only recorded the request for {request.target.key}{note}; nothing"
            " was changed.",
            details={"note": request.params.note},
        )

    async def verify(self, request: ActionRequest, result: ActionResult) -> VerifyResult:
        return VerifyResult.UNKNOWN

    async def undo(self, request: ActionRequest, state: Mapping[str, Any]) -> ActionResult:
        return ActionResult(True, f"{self.kind} leaves nothing to undo.")

    async def reconcile(self, request: ActionRequest, intent: Mapping[str, Any]) -> Reconciled:
        return Reconciled(True, "log_only changes nothing.", ActionResult(True, "Recorded."))
