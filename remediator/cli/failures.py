"""Start-up failures as the sentence an operator reads: where, and why, with no traceback."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
from collections.abc import Iterator

from remediator.config import Settings
from remediator.core.errors import ConfigError, StoreUnavailable
from remediator.store.file_lock import FileInUse


@contextlib.contextmanager
def at_start(settings: Settings) -> Iterator[None]:
    """Translate what stops a start (the store, a file) into one ``ConfigError`` sentence."""
    try:
        yield
    except StoreUnavailable as exc:
        raise ConfigError(unreachable(settings, exc)) from None
    except FileInUse as exc:
        raise ConfigError(in_use(settings, exc)) from None
    except OSError as exc:
        if exc.filename is None:
            raise
        raise ConfigError(f"cannot use {exc.filename}: {why(exc)}") from None


def unreachable(settings: Settings, exc: StoreUnavailable) -> str:
    """A state store that did not answer at start: which one, and the driver's reason."""
    cause = exc.__context__  # the driver's error, kept by the store behind ``from None``
    if isinstance(cause, TimeoutError):
        reason = "no answer in time"
    elif isinstance(cause, OSError) and (cause.errno or cause.strerror):
        reason = why(cause)
    else:
        text = str(cause or exc).removeprefix("PostgreSQL state store: ")
        reason = text or type(cause).__name__
    if settings.state_url.startswith("sqlite"):
        return f"cannot open the state store {settings.sqlite_path}: {reason}"
    return f"cannot connect to the PostgreSQL state store at {settings.postgres_address}: {reason}"


def in_use(settings: Settings, exc: FileInUse) -> str:
    """A SQLite file another process writes: which file, whose, and the way out."""
    if exc.path == settings.journal_spool:
        what, flag = "journal spool", "--journal-spool"
    else:
        what, flag = "state file", "--state"
    holder = f"pid {exc.pid}" if exc.pid else "its pid not yet written"
    return (
        f"the {what} {exc.path} is in use by another remediator ({holder}); "
        f"one SQLite file has one writer: stop it, or use another {flag}"
    )


def why(exc: OSError) -> str:
    """The reason of an ``OSError`` (or ``ssl.SSLError``) in lower case, without the errno."""
    if isinstance(exc, socket.gaierror):
        return "the host name is not known"
    if isinstance(exc, ssl.SSLError):
        return _ssl_reason(exc)
    if exc.errno:
        return os.strerror(exc.errno).lower()  # asyncio's "Connect call failed (...)" is not
    return str(exc.strerror or exc).lower()


def _ssl_reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason without its source line: ``[SSL] PEM lib (_ssl.c:3905)`` → PEM lib."""
    text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", exc.strerror or str(exc))
    if text == "PEM lib":
        return "not a PEM certificate and key, or a key that does not match the certificate"
    return text
