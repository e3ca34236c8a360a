"""Sinks from the rule files' ``sinks:`` specs, with their secrets read from files when the
service starts (never from the rule files themselves)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from remediator.core.errors import ConfigError
from remediator.escalate.sinks.base import Sink
from remediator.escalate.sinks.grafana_irm import GrafanaIrmSink
from remediator.escalate.sinks.jsm import JsmSink
from remediator.escalate.sinks.opsgenie import OpsgenieSink
from remediator.escalate.sinks.pagerduty import PagerDutySink
from remediator.escalate.sinks.slack import SlackSink
from remediator.escalate.sinks.teams import TeamsSink
from remediator.escalate.sinks.webhook import WebhookSink
from remediator.ruleset.schema import (
    GrafanaIrmSpec,
    JsmSpec,
    OpsgenieSpec,
    PagerDutySpec,
    SlackSpec,
    TeamsSpec,
    WebhookSpec,
)


def _secret(sink: str, path: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"sink {sink}: cannot read secret file {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"sink {sink}: secret file {path} is empty")
    return value


def _optional(sink: str, path: str | None) -> str:
    return _secret(sink, path) if path is not None else ""


def _pagerduty(name: str, spec: PagerDutySpec) -> Sink:
    return PagerDutySink(name, _secret(name, spec.routing_key_file), spec.url)


def _slack(name: str, spec: SlackSpec) -> Sink:
    return SlackSink(
        name,
        webhook_url=_optional(name, spec.webhook_url_file),
        bot_token=_optional(name, spec.bot_token_file),
        channel=spec.channel,
        api_url=spec.url,
        buttons=spec.signing_secret_file is not None,
    )


def _opsgenie(name: str, spec: OpsgenieSpec) -> Sink:
    return OpsgenieSink(name, _secret(name, spec.api_key_file), spec.url)


def _jsm(name: str, spec: JsmSpec) -> Sink:
    return JsmSink(name, _secret(name, spec.api_key_file), spec.url)


def _grafana_irm(name: str, spec: GrafanaIrmSpec) -> Sink:
    return GrafanaIrmSink(name, _secret(name, spec.url_file))


def _teams(name: str, spec: TeamsSpec) -> Sink:
    return TeamsSink(name, _secret(name, spec.url_file))


def _webhook(name: str, spec: WebhookSpec) -> Sink:
    secret = _secret(name, spec.secret_file).encode() if spec.secret_file else None
    return WebhookSink(name, spec.url, secret, spec.format)


_BUILDERS: dict[type[Any], Callable[[str, Any], Sink]] = {
    PagerDutySpec: _pagerduty,
    SlackSpec: _slack,
    OpsgenieSpec: _opsgenie,
    JsmSpec: _jsm,
    GrafanaIrmSpec: _grafana_irm,
    TeamsSpec: _teams,
    WebhookSpec: _webhook,
}


def build(name: str, spec: Any) -> Sink:
    builder = _BUILDERS.get(type(spec))
    if builder is None:
        raise ConfigError(f"sink {name}: unknown sink type {type(spec).__name__}")
    return builder(name, spec)


def build_sinks(specs: Mapping[str, Any]) -> dict[str, Sink]:
    return {name: build(name, spec) for name, spec in specs.items()}
