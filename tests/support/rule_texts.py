"""Rule-file texts the rule tests share."""

from __future__ import annotations

POLICY = """\
defaults:
  escalation: {SEV-1: page, SEV-2: page, SEV-3: ticket}
escalations:
  page:
    tiers: [{after_s: 0, notify: [oncall]}]
  ticket:
    tiers: [{after_s: 0, notify: [ops]}]
"""
"""Defaults and two escalation policies: what every rule set needs besides its rules."""
