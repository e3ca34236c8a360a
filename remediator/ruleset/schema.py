"""The rule-file format, as strict pydantic models: unknown keys are errors, and every
number has bounds.

Where it sits: ``read`` validates each file's YAML against ``RuleFileSpec``; ``load``
merges the files. One file may hold any of the sections; across files, rule, action and
escalation names are unique and ``policy``/``defaults`` appear at most once.

Every number is bounded where it is read, so nothing later can overflow: the longest
duration, 30 days, added to any clock time before December 9999 stays within ``datetime``,
and infinity and NaN are refused (``allow_inf_nan=False``). Each field's docstring gives
its bound and why; the action kinds bound their own parameters (``actions/``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from remediator.core.model import Severity
from remediator.ruleset.time_intervals import TimeIntervalSpec

NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"
KIND_PATTERN = r"^[A-Z][A-Za-z]*$"

HOUR_S = 3_600
DAY_S = 86_400
MAX_WINDOW_S = 30 * DAY_S
"""30 days: the longest window anything counts over, and the latest escalation tier."""
MAX_ACTIONS = 10_000
"""A count of actions per window: above 10 000 a limit limits nothing (and 1e6 is a typo)."""
MAX_COOLDOWN_S = 7 * DAY_S
"""A week between two actions on one target; rarer than that is a ``target_rate_limit``."""
MAX_INTERVAL_NAMES = 20
"""Time intervals one rule (or the policy) names; more is a calendar, not a window."""
IntervalNames = Annotated[list[str], Field(max_length=MAX_INTERVAL_NAMES)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LimitSpec(Strict):
    max_actions: int = Field(ge=1, le=MAX_ACTIONS)
    """Actions allowed per window, 1 to 10 000."""
    window_s: float = Field(gt=0, le=MAX_WINDOW_S)
    """Seconds, at most 30 days: claims are counted in the store over this window."""


class StormSpec(Strict):
    max_targets: int = Field(default=10, ge=1, le=10_000)
    """Distinct targets needing action within ``window_s`` before the brake engages, 1 to
    10 000 (that many targets needing action at once is an outage already)."""
    window_s: float = Field(default=60.0, gt=0, le=DAY_S)
    """Seconds, at most a day: a storm is minutes, and the SQLite store keeps the window's
    targets in memory."""


MAX_APPROVAL_WAIT_S = DAY_S
"""A day: an approval that waits longer is no longer about the alert that asked for it."""
APPROVER_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._@-]{0,126}[A-Za-z0-9])?$"
"""An approver's or a team's name, as the approvers file writes it."""


class ApprovalSpec(Strict):
    """A human's approval before the action runs (``approve/``): the claim is taken and
    held; the rule's escalation is paged with approve and deny; approvers answer through
    the API, the CLI or a Slack button; the guards are checked again before it runs."""

    required: bool = True
    """``false``: this rule asks no approval (refused where the policy requires one)."""
    timeout_s: float = Field(default=600.0, ge=5, le=MAX_APPROVAL_WAIT_S)
    """Seconds the claim waits for its approvals, 5 s (less leaves no human time to answer)
    to a day."""
    approvers: list[Annotated[str, Field(pattern=APPROVER_PATTERN)]] = Field(
        default_factory=list, max_length=50
    )
    """Names or teams of the approvers file who may answer; empty: any approver."""
    on_timeout: Literal["escalate", "act"] = "escalate"
    """No answer in time: ``escalate`` (no action, the incident goes on up its ladder) or
    ``act`` (the action runs, its guards checked again, audited as acting on the timeout)."""
    approvals: int = Field(default=1, ge=1, le=2)
    """Distinct approvers needed, 1 or 2 (four eyes on a destructive action); one deny ends it."""
    initiator_label: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """A label or annotation of the alert naming the person whose change raised it (who
    deployed, who ran the job): that person may not approve it."""


class PolicyApprovalSpec(Strict):
    """The policy's approvals: rules that match (every condition given) need ``approval``
    unless they ask one of their own."""

    severities: list[Severity] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    """Action kinds, e.g. ``kill_query``."""
    destructive: bool | None = None
    """``true``: only destructive actions (those the global budget counts)."""
    approval: ApprovalSpec

    @model_validator(mode="after")
    def _some_condition(self) -> PolicyApprovalSpec:
        if not (self.severities or self.kinds or self.destructive is not None):
            raise ValueError("give severities, kinds or destructive: which rules need approval")
        if not self.approval.required:
            raise ValueError("approval.required: false asks nothing here; leave the entry out")
        return self


class PolicySpec(Strict):
    namespaces: list[str] = Field(default_factory=list)
    """Namespaces actions may touch. Empty: no action runs anywhere (escalate only)."""
    storm: StormSpec = Field(default_factory=StormSpec)
    global_budget: LimitSpec = Field(
        default_factory=lambda: LimitSpec(max_actions=20, window_s=3600.0)
    )
    """Destructive actions allowed across all rules per window."""
    action_limits: dict[str, LimitSpec] = Field(default_factory=dict)
    """Per action kind, e.g. ``recycle_pod: {max_actions: 10, window_s: 3600}``."""
    max_concurrent_actions: int = Field(default=4, ge=1, le=64)
    """Actions running at once, 1 to 64: each holds Kubernetes API or database connections
    (and a running verification) for as long as it runs."""
    require_opt_in: bool = True
    """Act only on objects whose annotation remediator.io/allow names the action."""
    mute_time_intervals: IntervalNames = Field(default_factory=list)
    """Named ``time_intervals`` in which no rule acts (a change freeze): each rule's alerts
    are escalated as usual."""
    approvals: list[PolicyApprovalSpec] = Field(default_factory=list, max_length=20)
    """Which rules need a human's approval (by severity, action kind, destructive); the first
    entry that matches a rule applies, unless the rule asks an approval of its own."""


class ActionSpec(Strict):
    kind: str
    params: dict[str, Any] = Field(default_factory=dict)


class TargetSpec(Strict):
    kind: str = Field(pattern=KIND_PATTERN)
    namespace: str = ""
    name: str


class ResponderSpec(Strict):
    """Whom an Opsgenie or Jira Service Management alert notifies: a team, a user, an
    escalation or a schedule, by ``name`` (a user by ``username``) or by ``id``."""

    type: Literal["team", "user", "escalation", "schedule"]
    name: str = Field(default="", max_length=512)
    username: str = Field(default="", max_length=512)
    id: str = Field(default="", max_length=512)

    @model_validator(mode="after")
    def _one_identity(self) -> ResponderSpec:
        given = [k for k in ("name", "username", "id") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of name, username (a user) or id")
        if self.username and self.type != "user":
            raise ValueError("username names a user: use name or id for a " + self.type)
        if self.name and self.type == "user":
            raise ValueError("a user is named by username or id")
        return self

    def api(self) -> dict[str, str]:
        """As the Opsgenie and JSM alert APIs take it."""
        key = next(k for k in ("id", "username", "name") if getattr(self, k))
        return {"type": self.type, key: getattr(self, key)}


class EscalationTier(Strict):
    after_s: float = Field(ge=0, le=MAX_WINDOW_S)
    """Seconds after the escalation, at most 30 days; the tier is due at that time."""
    notify: list[str] = Field(min_length=1)
    responders: list[ResponderSpec] = Field(default_factory=list, max_length=50)
    """Whom this tier pages on the Opsgenie and JSM sinks it notifies (added to the open
    alert: each tier reaches someone new); the other sinks page their integration's own."""


class EscalationPolicySpec(Strict):
    tiers: list[EscalationTier] = Field(min_length=1)


class DefaultsSpec(Strict):
    escalation: dict[Severity, str] = Field(default_factory=dict)
    cooldown_s: float = Field(default=900.0, ge=0, le=MAX_COOLDOWN_S)
    """Seconds between two actions on one target, at most 7 days (rarer than that is a
    ``target_rate_limit``, over up to 30 days)."""
    verify_within_s: float = Field(default=300.0, gt=0, le=HOUR_S)
    """Seconds the fix has to show (the action's own check), then as long again for the
    alert to resolve; at most an hour: the action verifies within its slot of
    ``max_concurrent_actions``."""
    ineffective_after: LimitSpec = Field(
        default_factory=lambda: LimitSpec(max_actions=3, window_s=3600.0)
    )
    """The same action on the same target this many times per window: stop, escalate."""


class RuleSpec(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    matchers: list[str] = Field(validation_alias=AliasChoices("matchers", "match"))
    """Alertmanager matchers, as in a route's ``matchers``; ``match`` is the old name."""
    severity: Severity
    action: str | dict[str, Any] | None = None
    """The name of a declared action, or an inline ``{kind, params}``."""
    target: TargetSpec | None = None
    cooldown_s: float | None = Field(default=None, ge=0, le=MAX_COOLDOWN_S)
    """Overrides ``defaults.cooldown_s``; the same bounds."""
    rate_limit: LimitSpec | None = None
    target_rate_limit: LimitSpec | None = None
    """At most this many actions on one target per window, whatever the episode."""
    verify_within_s: float | None = Field(default=None, gt=0, le=HOUR_S)
    """Overrides ``defaults.verify_within_s``; the same bounds."""
    escalation: str | None = None
    page: Literal["on_failure", "before_acting"] = "on_failure"
    """``before_acting``: page the escalation policy when the action is claimed, and update
    the incident as the action runs, verifies or fails (an SEV-1 whose response time a
    fix's verification must not eat); ``on_failure``: page only when no fix holds."""
    shadow: bool = False
    """Decide and audit as if live, but never claim, act or page: a new rule watched in
    production before it is trusted. The live rules decide every alert as without it."""
    on_silence_check_error: Literal["refuse", "act"] = "refuse"
    """With ``--alertmanager-url``: when whether a silence covers the alert is unknown
    (Alertmanager unreachable, a matcher that cannot be evaluated), refuse (and page) or act
    anyway."""

    mute_time_intervals: IntervalNames = Field(default_factory=list)
    """Named ``time_intervals`` in which the rule does not act (and escalates as usual), as
    a route's ``mute_time_intervals`` in Alertmanager; added to the policy's."""
    active_time_intervals: IntervalNames = Field(default_factory=list)
    """Named ``time_intervals`` outside which the rule does not act (and escalates)."""
    approval: ApprovalSpec | None = None
    """A human approves the action before it runs (``ApprovalSpec``)."""

    _old_key: bool = PrivateAttr(default=False)

    @model_validator(mode="wrap")
    @classmethod
    def _note_old_key(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        spec = handler(data)
        if isinstance(data, dict) and "match" in data and "matchers" not in data:
            spec._old_key = True
        return spec

    @property
    def uses_old_key(self) -> bool:
        """Its matchers are under ``match``, the key's old name (``load`` warns)."""
        return self._old_key

    @field_validator("action", mode="before")
    @classmethod
    def _action_shape(cls, value: Any) -> Any:
        # Checked before the union, whose errors would name its members ("action.str").
        if value is not None and not isinstance(value, str | dict):
            raise ValueError("must name a declared action or be a mapping with kind and params")
        return value


class PagerDutySpec(Strict):
    type: Literal["pagerduty"]
    routing_key_file: str
    """File holding the integration's routing key (never the key itself)."""
    url: str = "https://events.pagerduty.com/v2/enqueue"
    webhook_secret_file: str | None = None
    """File holding the secret of the v3 webhook subscription that reports acknowledgements
    and resolves (``POST /api/v1/acks/pagerduty/<sink>``); without it, none is accepted."""


class SlackSpec(Strict):
    """Either an incoming webhook (the simple form: one message per notification) or the
    Web API with a bot token and a channel (updates go in the incident's thread)."""

    type: Literal["slack"]
    webhook_url_file: str | None = None
    """File holding the incoming-webhook URL, which is a secret."""
    bot_token_file: str | None = None
    """File holding a bot token (``xoxb-…``) with ``chat:write``; needs ``channel``."""
    channel: str = Field(default="", max_length=80)
    url: str = "https://slack.com/api/"
    """The Web API's base URL."""
    signing_secret_file: str | None = None
    """File holding the Slack app's signing secret: with it, messages carry an Acknowledge
    button, and its clicks (``POST /api/v1/acks/slack/<sink>``) are verified with it."""

    @model_validator(mode="after")
    def _one_way_in(self) -> SlackSpec:
        if (self.webhook_url_file is None) == (self.bot_token_file is None):
            raise ValueError("give exactly one of webhook_url_file or bot_token_file")
        if self.bot_token_file is not None and not self.channel:
            raise ValueError("bot_token_file needs channel (its ID, e.g. C0123456789)")
        return self


class OpsgenieSpec(Strict):
    type: Literal["opsgenie"]
    api_key_file: str
    url: str = "https://api.opsgenie.com"


class JsmSpec(Strict):
    """Jira Service Management operations, the Opsgenie successor: an API integration's
    alert API (``/jsm/ops/integration/v2/alerts``)."""

    type: Literal["jsm"]
    api_key_file: str
    url: str = "https://api.atlassian.com"


class GrafanaIrmSpec(Strict):
    """Grafana IRM (OnCall) through its webhook integration."""

    type: Literal["grafana_irm"]
    url_file: str
    """File holding the integration's URL, which is a secret (its path is the token)."""


class TeamsSpec(Strict):
    """Microsoft Teams through a Workflows "post to a channel when a webhook request is
    received" flow: an Adaptive Card per notification."""

    type: Literal["teams"]
    url_file: str
    """File holding the workflow's URL, which is a secret (it carries its signature)."""


class WebhookSpec(Strict):
    type: Literal["webhook"]
    url: str
    secret_file: str | None = None
    """File holding the HMAC-SHA256 secret that signs each body."""
    format: Literal["remediator", "alertmanager"] = "remediator"
    """``alertmanager``: the body is Alertmanager's own webhook payload (version 4), so a
    receiver written for Alertmanager takes remediator's escalations as they are."""


SinkSpec = Annotated[
    PagerDutySpec | SlackSpec | OpsgenieSpec | JsmSpec | GrafanaIrmSpec | TeamsSpec | WebhookSpec,
    Field(discriminator="type"),
]


class RuleFileSpec(Strict):
    policy: PolicySpec | None = None
    defaults: DefaultsSpec | None = None
    actions: dict[str, ActionSpec] = Field(default_factory=dict)
    escalations: dict[str, EscalationPolicySpec] = Field(default_factory=dict)
    sinks: dict[str, SinkSpec] = Field(default_factory=dict)
    time_intervals: list[TimeIntervalSpec] = Field(default_factory=list)
    """Named time intervals in Alertmanager's syntax, for ``mute_time_intervals`` and
    ``active_time_intervals`` (``ruleset/time_intervals``)."""
    rules: list[RuleSpec] = Field(default_factory=list)
