"""The rule unit-test file (``remediator test``), in the shape of ``promtool test rules``:
strict YAML (``ruleset.strict_yaml``) validated by pydantic models that refuse unknown keys.

Where it sits: ``cases`` runs what ``load`` returns. A file names its rules
(``rule_files`` or ``rules_dir``, relative to the file) and its ``tests``; a case is
``input`` at times on the virtual clock (``at: 0s``, ``90s``, ``10m``, ``1h30m``) — short
``alerts``, an Alertmanager ``webhook`` body, a ``file`` holding one, or ``world`` facts
(Deployments, pods, HPAs and database sessions the actions' prechecks read, and how sinks
answer, ``simulate.world``) — and ``expect`` at times: the decision of each alert its
``alert`` labels select, and the notifications sent so far, with what came of each. A
file that does not load is one ``ConfigError`` sentence naming the file, the place
(``file:line:column``) and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from remediator.core.errors import ConfigError
from remediator.ruleset.read import field_path, one_line
from remediator.ruleset.strict_yaml import YamlError, parse, positions

MAX_TEST_FILE_BYTES = 4 << 20
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def seconds(value: Any) -> float:
    """``90s``, ``10m``, ``1h30m`` → seconds, as Prometheus writes durations."""
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or not value:
        raise ValueError(
            f"is {one_line(repr(value))}, which is not a duration like 90s, 10m or 1h30m"
        )
    hours, minutes, secs = (int(g or 0) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + secs)


Duration = Annotated[float, BeforeValidator(seconds)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertSpec(Strict):
    labels: dict[str, str] = Field(min_length=1)
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"


Name = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
"""A Kubernetes count (int32)."""


class ReplicasManagerFact(Strict):
    """A managedFields entry holding ``spec.replicas``: a field manager, how it wrote."""

    manager: str = Field(min_length=1, max_length=128)
    operation: Literal["Apply", "Update"] = "Apply"
    subresource: Literal["", "scale"] = ""


class DeploymentFact(Strict):
    """A Deployment as the API server would show it."""

    namespace: Name
    name: Name
    replicas: Count
    ready: Count | None = None
    """Ready replicas; as many as ``replicas`` when left out."""
    updated: Count | None = None
    """Replicas of the current template; as many as ``replicas`` when left out."""
    rolling_out: bool = False
    """A new generation the controller has not observed yet."""
    annotations: dict[str, str] = Field(default_factory=dict)
    selector: dict[str, str] | None = None
    """Its pods' labels; ``{app: <name>}`` when left out."""
    uid: Name | None = None
    replicas_managers: list[ReplicasManagerFact] = Field(default_factory=list, max_length=50)
    """The managedFields entries that hold ``spec.replicas`` (e.g. Argo CD's)."""


class ScaledObjectFact(Strict):
    """A KEDA ScaledObject that scales Deployment ``deployment``."""

    namespace: Name
    name: Name
    deployment: Name
    annotations: dict[str, str] = Field(default_factory=dict)


class OwnerFact(Strict):
    kind: Name
    name: Name


class PodFact(Strict):
    """A pod: of a Deployment (through its ReplicaSet), of another ``owner``, or bare."""

    namespace: Name
    name: Name
    deployment: Name | None = None
    owner: OwnerFact | None = None
    """A controller other than a Deployment's ReplicaSet (a DaemonSet, a StatefulSet…)."""
    ready: bool = True
    phase: Name = "Running"
    restarts: Count = 0
    age: Duration = 0.0
    """How long before the input's time it was created."""
    labels: dict[str, str] | None = None
    """``{app: <deployment>}`` when left out, so its Deployment's default selector finds it."""
    terminating: bool = False
    uid: Name | None = None

    @model_validator(mode="after")
    def _one_controller(self) -> PodFact:
        if self.deployment is not None and self.owner is not None:
            raise ValueError("needs at most one of deployment or owner")
        return self


class HpaFact(Strict):
    """A HorizontalPodAutoscaler that scales Deployment ``deployment``."""

    namespace: Name
    name: Name
    deployment: Name
    min_replicas: Count = 1
    max_replicas: Annotated[int, Field(ge=1, le=2**31 - 1)]

    @model_validator(mode="after")
    def _min_within_max(self) -> HpaFact:
        if self.min_replicas > self.max_replicas:
            raise ValueError("needs min_replicas at most max_replicas")
        return self


PID = Annotated[int, Field(ge=1, le=2**31 - 1)]
"""A PostgreSQL backend pid (int4)."""
SESSION_STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)
"""The states ``pg_stat_activity`` shows."""
SINK_ANSWERS = ("ok", "unavailable", "rejected")


def one_of(choices: tuple[str, ...], what: str) -> Callable[[Any], Any]:
    """A validator refusing a value not in ``choices``, with a sentence naming them."""

    def check(value: Any) -> Any:
        if value not in choices:
            shown = one_line(json.dumps(value, ensure_ascii=False, default=str)[:64])
            raise ValueError(f"is {shown}, which is not {what} ({', '.join(choices)})")
        return value

    return check


class SessionFact(Strict):
    """A client backend's row of ``pg_stat_activity``."""

    pid: PID
    state: Annotated[str, BeforeValidator(one_of(SESSION_STATES, "a state pg_stat_activity shows"))]
    duration_s: Annotated[float, Field(ge=0, le=365 * 86_400, allow_inf_nan=False)]
    """Seconds, at the input's time, since its query started or, idle in a transaction,
    since it went idle; it grows as the case's clock moves."""
    query: str
    user: Name = "app"
    database: Name = "app"
    application: str = ""
    superuser: bool = False
    """A superuser's session, which no rule may signal."""


class DatabaseFact(Strict):
    """A database target (``serve --database NAME=…``) and the sessions it shows."""

    sessions: list[SessionFact] = Field(default_factory=list)
    problems: list[Name] = Field(default_factory=list)
    """What the role's privilege check finds wrong, e.g. ``the role is not a member of
    pg_signal_backend``; kill_query refuses a target with any."""

    @model_validator(mode="after")
    def _one_session_per_pid(self) -> DatabaseFact:
        pids = [s.pid for s in self.sessions]
        twice = sorted({pid for pid in pids if pids.count(pid) > 1})
        if twice:
            raise ValueError(f"holds pid {twice[0]} more than once")
        return self


class SinkFact(Strict):
    """How a sink answers what it is sent."""

    answer: Annotated[str, BeforeValidator(one_of(SINK_ANSWERS, "a sink's answer"))] = "ok"
    """``unavailable``: as a 429/5xx or a timeout (``SinkUnavailable``: retried);
    ``rejected``: as another 4xx (``SinkRejected``: dropped)."""
    retry_after_s: float | None = Field(default=None, ge=0, le=3600, allow_inf_nan=False)
    """The ``Retry-After`` an unavailable sink asks for, seconds; the backoff when left out."""

    @model_validator(mode="after")
    def _retry_after_when_unavailable(self) -> SinkFact:
        if self.retry_after_s is not None and self.answer != "unavailable":
            raise ValueError("takes retry_after_s only with answer unavailable")
        return self


class WorldSpec(Strict):
    """Objects the cluster holds from the input's time on; an object named again (same
    kind, namespace and name) is replaced. So are a database's sessions, and a sink's
    answer."""

    deployments: list[DeploymentFact] = Field(default_factory=list)
    pods: list[PodFact] = Field(default_factory=list)
    hpas: list[HpaFact] = Field(default_factory=list)
    scaled_objects: list[ScaledObjectFact] = Field(default_factory=list)
    databases: dict[Name, DatabaseFact] = Field(default_factory=dict)
    sinks: dict[Name, SinkFact] = Field(default_factory=dict)

    @property
    def has_cluster(self) -> bool:
        """Whether it holds Kubernetes objects."""
        return bool(self.deployments or self.pods or self.hpas or self.scaled_objects)

    @model_validator(mode="after")
    def _not_empty(self) -> WorldSpec:
        if not (self.has_cluster or self.databases or self.sinks):
            raise ValueError(
                "needs at least one of deployments, pods, hpas, scaled_objects, databases or sinks"
            )
        return self


class InputSpec(Strict):
    at: Duration
    alerts: list[AlertSpec] | None = None
    webhook: dict[str, Any] | None = None
    file: str | None = None
    """An Alertmanager webhook body in a JSON file, relative to the test file."""
    world: WorldSpec | None = None
    """Kubernetes objects and database sessions the actions' prechecks read, and sinks'
    answers (``simulate.world``)."""
    truncated_alerts: int = Field(default=0, ge=0)
    """The ``truncatedAlerts`` of the body built from ``alerts``."""

    @model_validator(mode="after")
    def _one_source(self) -> InputSpec:
        given = [self.alerts, self.webhook, self.file, self.world]
        if sum(value is not None for value in given) != 1:
            raise ValueError("needs exactly one of alerts, webhook, file or world")
        return self


class DecisionSpec(Strict):
    alert: dict[str, str] = Field(min_length=1)
    """Labels the alert has (others may be there too); every alert of the inputs at the
    same time that has them is expected to meet the rest."""
    count: int | None = Field(default=None, ge=0)
    rule: str | None = None
    severity: str | None = None
    step: str | None = None
    outcome: str | None = None
    reason: str | None = None
    action: str | None = None
    target: str | None = None
    escalated: str | None = None
    """The escalation policy; ``""`` for none."""
    params: dict[str, Any] | None = None


class PageSpec(Strict):
    sink: str
    tier: int = Field(default=0, ge=0)
    event: Literal["trigger", "update", "resolve"] = "trigger"
    at: Duration | None = None
    """When it was sent; unchecked when left out."""
    result: Literal["delivered", "retried", "dropped"] | None = None
    """What came of this send: the sink took it, ``Delivery`` will try again, or gave it
    up (audited as a failed notification); unchecked when left out."""


class ExpectSpec(Strict):
    at: Duration
    decisions: list[DecisionSpec] = Field(default_factory=list)
    notifications: list[PageSpec] | None = None
    """Every notification sent up to ``at``, in the order sent; unchecked when left out."""


class CaseSpec(Strict):
    name: str = Field(min_length=1)
    input: list[InputSpec] = Field(min_length=1)
    expect: list[ExpectSpec] = Field(min_length=1)

    @property
    def has_world(self) -> bool:
        """Whether the case gives world facts: then its engine runs on a ``World``."""
        return any(item.world is not None for item in self.input)

    @property
    def has_cluster(self) -> bool:
        """Whether the case describes a cluster: then its Kubernetes prechecks read it."""
        return any(item.world is not None and item.world.has_cluster for item in self.input)


class TestFileSpec(Strict):
    rule_files: list[str] | None = Field(default=None, min_length=1)
    rules_dir: str | None = None
    tests: list[CaseSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_rules_source(self) -> TestFileSpec:
        if (self.rule_files is None) == (self.rules_dir is None):
            raise ValueError("needs exactly one of rule_files or rules_dir")
        return self


def place(path: Path, loc: tuple[Any, ...]) -> str:
    """``file:line:column`` of the deepest part of ``loc`` the file at ``path`` holds (read
    again), else ``file``."""
    try:
        data = path.read_bytes()[: MAX_TEST_FILE_BYTES + 1]
    except OSError:
        return str(path)
    return _place(path, data, loc)


def _place(path: Path, data: bytes, loc: tuple[Any, ...]) -> str:
    """``file:line:column`` of the deepest part of ``loc`` the file holds, else ``file``."""
    try:
        found = positions(data)
    except YamlError:
        return str(path)
    for end in range(len(loc), 0, -1):
        if tuple(loc[:end]) in found:
            line, column = found[tuple(loc[:end])]
            return f"{path}:{line}:{column}"
    return str(path)


def _schema_error(path: Path, data: bytes, exc: ValidationError) -> ConfigError:
    errors = exc.errors(include_url=False)
    # A misspelt key explains the key it leaves missing: say the misspelling.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and "[" in p))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "is not a known key"
    elif error["type"] == "missing":
        message = "is required"
    where = f'field "{field_path(loc)}" ' if loc else ""
    return ConfigError(f"{_place(path, data, loc)}: {where}{message}.".replace("..", "."))


def load(path: Path) -> TestFileSpec:
    """The test file at ``path``, checked; ``ConfigError`` naming file, place and field."""
    try:
        data = path.read_bytes()[: MAX_TEST_FILE_BYTES + 1]
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc}).") from None
    if len(data) > MAX_TEST_FILE_BYTES:
        raise ConfigError(f"{path}: is larger than {MAX_TEST_FILE_BYTES >> 20} MiB.")
    try:
        raw = parse(data)
    except YamlError as exc:
        raise ConfigError(f"{path}: {exc.problem}.".replace("..", ".")) from None
    try:
        return TestFileSpec.model_validate(raw)
    except ValidationError as exc:
        raise _schema_error(path, data, exc) from None


def webhook_file(base: Path, name: str) -> dict[str, Any]:
    """The webhook body in JSON file ``name`` (relative to ``base``)."""
    path = base / name
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: is not a readable JSON webhook body ({exc}).") from None
    if not isinstance(body, dict):
        raise ConfigError(f"{path}: must hold a JSON object, an Alertmanager webhook body.")
    return body
