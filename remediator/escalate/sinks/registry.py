"""Sinks from the rule files' ``sinks:`` specs, with their secrets read from files when the
service starts (never from the rule files themselves)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remediator.core.errors import ConfigError
from remediator.escalate.sinks.base import Sink
from remediator.escalate.sinks.opsgenie import OpsgenieSink
from remediator.escalate.sinks.pagerduty import PagerDutySink
from remediator.escalate.sinks.slack import SlackSink
from remediator.escalate.sinks.webhook import WebhookSink
from remediator.ruleset.schema import OpsgenieSpec, PagerDutySpec, SlackSpec, WebhookSpec


def _secret(sink: str, path: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"sink {sink}: cannot read secret file {path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(f"sink {sink}: secret file {path} is empty")
    return value


def build(name: str, spec: Any) -> Sink:
    if isinstance(spec, PagerDutySpec):
        return PagerDutySink(name, _secret(name, spec.routing_key_file), spec.url)
    if isinstance(spec, SlackSpec):
        return SlackSink(name, _secret(name, spec.webhook_url_file))
    if isinstance(spec, OpsgenieSpec):
        return OpsgenieSink(name, _secret(name, spec.api_key_file), spec.url)
    if isinstance(spec, WebhookSpec):
        secret = _secret(name, spec.secret_file).encode() if spec.secret_file else None
        return WebhookSink(name, spec.url, secret)
    raise ConfigError(f"sink {name}: unknown sink type {type(spec).__name__}")


def build_sinks(specs: Mapping[str, Any]) -> dict[str, Sink]:
    return {name: build(name, spec) for name, spec in specs.items()}
