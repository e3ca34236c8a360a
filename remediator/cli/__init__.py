"""The ``remediator`` command: ``serve`` and the offline commands."""
