"""Target templates: ``"{namespace}"`` takes the alert's ``namespace`` label. Nothing else runs.

Where it sits: ``load`` parses each rule's target templates once; ``pipeline`` renders them
with each alert's labels (``rules.TargetTemplate.render``).

Labels are untrusted input, so every value produced must be a valid Kubernetes object
name (RFC 1123 subdomain); anything else leaves the target unresolved. A value is checked
for length first, so the name regex only ever sees 253 characters or fewer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_STRAY_BRACE = re.compile(r"[{}]")
# RFC 1123 subdomain: dot-separated labels of [a-z0-9-] that start and end alphanumeric,
# 253 characters at most (checked first, by length). Always used with fullmatch: "$" would
# accept a trailing newline.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_OBJECT_NAME = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
MAX_OBJECT_NAME = 253


def is_object_name(value: str) -> bool:
    """An RFC 1123 subdomain. The length check comes first: label values are untrusted, and
    on at most 253 characters the regex's backtracking (linear per label) stays trivial."""
    return 0 < len(value) <= MAX_OBJECT_NAME and _OBJECT_NAME.fullmatch(value) is not None


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
            if not is_object_name(value):
                raise LookupError(f"label {name!r} is missing or not a valid object name")
            return value

        rendered = _PLACEHOLDER.sub(fill, self.text)
        if not is_object_name(rendered):
            raise LookupError(f"template {self.text!r} does not give a valid object name")
        return rendered
