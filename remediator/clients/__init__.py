"""Clients of the outside world. Only this package imports third-party API clients; it
returns our own plain values and raises our own errors (``remediator.core.errors``)."""
