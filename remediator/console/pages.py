"""Rendering the console's pages: Jinja2 templates (``templates/``) with autoescaping on
for every value, so a label, an annotation or a sentence is always text (``<script>`` shows
as ``<script>``); a template that names a value it was not given fails instead of
printing nothing.

Where it sits: ``runtime.console`` builds each page's values (``episodes``, ``brakes``, the
audit, the approvals) and calls ``render``; the static files (``static/``) are served as
they are.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2

STATIC_FILES = {"console.css": "text/css", "console.js": "text/javascript"}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("remediator.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def zulu(at: datetime | None) -> str:
    if at is None:
        return "-"
    return at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def age(seconds: float) -> str:
    """``90`` as ``1m30s``, ``7300`` as ``2h01m``: an age an engineer reads at a glance."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


_ENV.filters.update(zulu=zulu, age=age, pretty=pretty)


def render(template: str, **values: Any) -> str:
    return _ENV.get_template(template).render(**values)


def static(name: str) -> bytes | None:
    """A static file's bytes, or None for a name that is not one of ``STATIC_FILES``."""
    if name not in STATIC_FILES:
        return None
    return (resources.files("remediator.console") / "static" / name).read_bytes()
