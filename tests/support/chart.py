"""Render charts/remediator with Helm's own engine (helm-python-sdk), offline."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "remediator"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """One release's output: the manifests, each with the template it came from, and
    NOTES.txt."""

    manifests: list[Manifest]
    sources: list[str]
    notes: str

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> Manifest:
        found = [m for m in self.of_kind(kind) if name is None or m["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} named {name!r} rendered"
        return found[0]


@functools.cache
def chart() -> helm_python.Chart:
    """The chart, loaded once per process (charts are immutable and thread-safe)."""
    return helm_python.Chart.load(CHART_DIR)


def validate_values(values: dict[str, Any]) -> None:
    """Check ``values`` against values.schema.json; raises helm_python.HelmValuesError."""
    chart().validate_schema(values)


def render(
    values: dict[str, Any] | None = None,
    *,
    name: str = "remediator",
    namespace: str = "monitoring",
) -> Rendered:
    """Render the chart as ``helm template`` would for an install: values checked against
    the schema first, then every template, split into its YAML documents."""
    given = values or {}
    validate_values(given)
    output = chart().render(given, name=name, namespace=namespace, is_install=True)
    manifests: list[Manifest] = []
    sources: list[str] = []
    notes = ""
    for path, text in sorted(output.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for document in yaml.safe_load_all(text):
            if document is None:
                continue
            assert isinstance(document, dict), f"{path}: a document that is not a mapping"
            manifests.append(document)
            sources.append(path)
    return Rendered(manifests, sources, notes)
