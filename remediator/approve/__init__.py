"""Approve: claims a rule holds for a human's approval, and the humans who may give it.

Where it sits: ``decide`` takes the claim and holds it (``pending``); the page asks the
approvers; ``runtime`` hands their answers (the API, the CLI through it, a Slack button) to
``approvals``, which keeps each vote and, when one decides, runs or refuses the claim
through ``act``; ``approvals`` also times out what waits too long and withdraws what resolved.
"""
