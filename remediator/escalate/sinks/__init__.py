"""Escalation sinks: one module per integration (PagerDuty, Slack, Opsgenie, a webhook)."""
