"""Target templates: ``"{namespace}"`` takes the alert's ``namespace`` label. Nothing else runs.

Labels are untrusted input, so every value produced must be a valid Kubernetes object
name (RFC 1123 subdomain); anything else leaves the target unresolved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STRAY_BRACE = re.compile(r"[{}]")
# RFC 1123 subdomain: dot-separated labels of [a-z0-9-] that start and end alphanumeric,
# 253 characters at most. Always used with fullmatch: "$" would accept a trailing newline.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_OBJECT_NAME = re.compile(rf"(?=.{{1,253}}\Z){_DNS_LABEL}(\.{_DNS_LABEL})*")


@dataclass(frozen=True, slots=True)
class Template:
    text: str

    @classmethod
    def parse(cls, text: str) -> Template:
        if _STRAY_BRACE.search(_PLACEHOLDER.sub("", text)):
            raise ValueError("braces may only enclose a label name, as in {namespace}")
        return cls(text)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.text))

    def render(self, labels: Mapping[str, str]) -> str:
        """The filled-in value; ``LookupError`` naming the label that is missing or unsafe."""

        def fill(found: re.Match[str]) -> str:
            name = found.group(1)
            value = labels.get(name, "")
            if not _OBJECT_NAME.fullmatch(value):
                raise LookupError(f"label {name!r} is missing or not a valid object name")
            return value

        rendered = _PLACEHOLDER.sub(fill, self.text)
        if not _OBJECT_NAME.fullmatch(rendered):
            raise LookupError(f"template {self.text!r} does not give a valid object name")
        return rendered
