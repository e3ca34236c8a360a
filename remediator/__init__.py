"""remediator: Alertmanager webhooks in, bounded remediations and escalations out.

The flow, one module per stage:
``webhook`` (auth → limits → ``payload`` → journal → 2xx) → ``worker`` (episodes) →
``pipeline`` (``classify`` → ``guards`` → ``act``) with ``audit`` at every step.
"""

__version__ = "0.1.0"
