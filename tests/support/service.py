"""A remediator app served over real HTTP on loopback, in the test's event loop, by the same
``http_edge.listening`` that ``remediator serve`` runs.

``ServiceUnderTest`` posts webhooks with the bearer token and reads decisions back through
the HTTP API, as Alertmanager and an SRE would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from remediator.config import Settings
from remediator.core.clock import Clock
from remediator.ingest.edge import Edge, listening
from remediator.ruleset.rules import RuleSet
from remediator.runtime.app import SERVICES, init_app

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_RULES = REPO / "rules"
LOG_ONLY_RULES = REPO / "tests" / "fixtures" / "rules"
SCALE_FLEET_RULES = REPO / "tests" / "fixtures" / "rules-scale-fleet"
"""The example rules with log_only actions: the pipeline runs end to end without a cluster."""
FIXTURES = REPO / "tests" / "fixtures" / "alertmanager-0.25"
TOKEN = "test-token-0123456789"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes(name))
    return data


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    base: dict[str, Any] = {
        "listen_port": 0,
        "rules_dir": LOG_ONLY_RULES,
        "state_url": f"sqlite:///{tmp_path / 'state.db'}",
        "token_file": token_file,
    }
    return Settings(**{**base, **overrides})  # validated, as the command line's are


@dataclass
class ServiceUnderTest:
    server: Edge
    session: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.server.url

    async def post(
        self, payload: Mapping[str, Any] | bytes, headers: Mapping[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        sent.update(headers or {})
        async with self.session.post(f"{self.url}/webhook", data=body, headers=sent) as resp:
            return resp.status, await resp.json()

    async def settle(self) -> None:
        """Wait until every accepted payload is processed and every queued action finished."""
        services = self.server.app[SERVICES]
        await asyncio.wait_for(services.worker.idle.wait(), 10)
        await services.runner.drain(10)

    async def decisions(self, **query: str | int) -> list[dict[str, Any]]:
        params = {k: str(v) for k, v in query.items()}
        params.setdefault("limit", "1000")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with self.session.get(
            f"{self.url}/api/v1/decisions", params=params, headers=headers
        ) as resp:
            assert resp.status == 200, await resp.text()
            page: dict[str, Any] = await resp.json()
        decisions: list[dict[str, Any]] = page["decisions"]
        return decisions

    async def metric_by_label(self, name: str) -> dict[str, float]:
        """The series of ``name`` with one label, by that label's value."""
        async with self.session.get(f"{self.url}/metrics") as resp:
            text = await resp.text()
        counts: dict[str, float] = {}
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            family, _, label = series.partition("{")
            if family == name and label.endswith('"}'):
                counts[label.partition('="')[2][:-2]] = float(value)
        return counts

    async def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        async with self.session.get(f"{self.url}/metrics") as resp:
            text = await resp.text()
        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        for line in text.splitlines():
            series, _, value = line.rpartition(" ")
            if series == wanted:
                return float(value)
        raise AssertionError(f"metric {wanted} not exported")


@asynccontextmanager
async def serve(
    settings: Settings, *, ruleset: RuleSet | None = None, clock: Clock | None = None
) -> AsyncIterator[ServiceUnderTest]:
    app = init_app(settings, ruleset=ruleset, clock=clock)
    loopback = settings.model_copy(update={"listen_host": "127.0.0.1", "listen_port": 0})
    async with listening(app, loopback) as server, aiohttp.ClientSession() as session:
        yield ServiceUnderTest(server, session)


PAGED_LADDERS = ("oncall-primary", "ops-channel", "platform-lead", "engineering-manager",
                 "vp-engineering")  # fmt: skip


def example_rules(directory: Path, **replacements: str) -> Path:
    """The example rules in ``directory``, each text of ``replacements`` replaced in them."""
    directory.mkdir()
    for source in EXAMPLE_RULES.glob("*.yaml"):
        text = source.read_text()
        for old, new in replacements.items():
            text = text.replace(old, new)
        (directory / source.name).write_text(text)
    return directory


def paging_example_rules(directory: Path, hook_url: str, **replacements: str) -> Path:
    """The example rules in ``directory``, every ladder paging a webhook sink at
    ``hook_url``/<sink>, each text of ``replacements`` replaced in them."""
    directory.mkdir()
    sinks = "".join(f'  {n}: {{type: webhook, url: "{hook_url}/{n}"}}\n' for n in PAGED_LADDERS)
    for source in EXAMPLE_RULES.glob("*.yaml"):
        text = source.read_text()
        if "\nescalations:" in text:
            text = text.replace("\nescalations:", f"\nsinks:\n{sinks}escalations:", 1)
        for old, new in replacements.items():
            text = text.replace(old, new)
        (directory / source.name).write_text(text)
    return directory
