"""``remediator serve``: settings from flags and the environment, then the service until
SIGINT or SIGTERM (SIGHUP reloads the rules, ``runtime/reload``). Start-up order: settings
(validated) → logging → rules (``init_app``) → TLS files → token file → the port → store,
reconcile and the loops (the app's start) → serving.

Whatever stops the start is one sentence on stderr and exit 2: a ``ConfigError`` from here
or below, or a store, file or TLS error translated here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager

from remediator.cli import failures, options
from remediator.clients.postgres import checked_dsns
from remediator.config import Settings, from_sources
from remediator.core.errors import ConfigError
from remediator.ingest.auth import read_tokens
from remediator.ingest.edge import Edge, listening
from remediator.runtime import heap
from remediator.runtime.app import RELOADER, SERVICES, drain, init_app
from remediator.runtime.logs import configure_logging
from remediator.runtime.objects import redactor
from remediator.runtime.reload import Reloaded, Reloader

log = logging.getLogger("remediator")


def run(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    flags = options.given(args, (options.RULES, options.STATE, *options.SERVE))
    settings = from_sources(flags, environ)
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    hangups = _Hangups()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangups.received)
    app = init_app(settings)  # rules load here: a rule error is then stderr's only line
    hangups.reloader = app[RELOADER]
    context = ssl_context(settings)
    check_tokens(settings)
    checked_dsns(settings.databases)  # before the start's own warnings: stderr's only line
    redactor(settings.evidence_redact_file)  # likewise: a pattern that does not compile
    if settings.token_file is None:
        log.warning("INSECURE: accepting webhooks without authentication (--insecure-no-auth)")
    if settings.dry_run:
        log.warning("dry-run: actions are planned and audited, none is run")
    heap.settle()  # modules and rules, out of the collector's sight before the first request
    async with contextlib.AsyncExitStack() as stack:
        edge = await _start(stack, settings, listening(app, settings, ssl_context=context))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        # After the handlers: a stop sent on reading this line drains, as any other stop.
        log.info("listening on %s (rules %s)", edge.url, settings.rules_dir)
        await stop.wait()
        started = loop.time()
        services = app[SERVICES]
        deadline = services.runner.stop_by(settings.shutdown_grace_s)  # every stage ends by it
        services.worker.stop_by(deadline)
        log.info("stopping: answering 503 while %d journal entries are processed and %d"
                 " actions finish, within %g s", services.worker.backlog,
                 services.runner.active, settings.shutdown_grace_s)  # fmt: skip
        await drain(app, settings.shutdown_grace_s)
    log.info("stopped %.1f s after the signal", loop.time() - started)


async def _start(
    stack: contextlib.AsyncExitStack, settings: Settings, edge: AbstractAsyncContextManager[Edge]
) -> Edge:
    """Take the port, then start the app (store, reconcile, loops): what fails here is a
    start-up error, one sentence; what fails later is the running service's to report."""
    with failures.at_start(settings):
        return await stack.enter_async_context(edge)


class _Hangups:
    """SIGHUP, from the first moment on: a reload (a hangup before the rules are read is
    one they answer already). The tasks are kept until they end."""

    def __init__(self) -> None:
        self.reloader: Reloader | None = None
        self._tasks: set[asyncio.Task[Reloaded]] = set()

    def received(self) -> None:
        if self.reloader is None:
            return
        task = self.reloader.request("SIGHUP")
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def check_tokens(settings: Settings) -> None:
    """Read the token file once before anything starts, so a missing or empty one is the
    only line on stderr (the app reads it again, and on every change)."""
    if settings.token_file is None:
        return
    try:
        read_tokens(settings.token_file)
    except OSError as exc:
        raise ConfigError(f"cannot read --token-file {exc.filename}: {failures.why(exc)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--token-file {settings.token_file} is not UTF-8 text") from None
    except ValueError:
        raise ConfigError(f"--token-file {settings.token_file} holds no token") from None


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP; a file that will not load is a
    ``ConfigError`` naming it."""
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
        if settings.tls_client_ca is not None:
            context.load_verify_locations(settings.tls_client_ca)
    except OSError as exc:  # ssl.SSLError is one too
        files = (settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        named = ", ".join(str(path) for path in files if path is not None)
        raise ConfigError(f"cannot use the TLS files {named}: {failures.why(exc)}") from None
    if settings.tls_client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
    return context
