"""Baseline for ``bench/ack_throughput.py``: the cheapest possible webhook receiver.

A bare aiohttp server whose ``POST /webhook`` reads the body, ``json.loads`` it and answers
``200 {}``; ``GET /readyz`` answers 200. No auth, no validation, no storage, no access log.
Its throughput is the ceiling an aiohttp-based receiver can reach on this machine; the
remediator is expected to reach at least 0.7 times its throughput.

Usage: ``python bench/bare_server.py --port 9000 [--host 127.0.0.1]``
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web

#: Same body ceiling as the remediator's default ``max_body_bytes`` (aiohttp's own is 1 MiB).
MAX_BODY_BYTES = 8 * 1024 * 1024
EMPTY_JSON = b"{}"


async def webhook(request: web.Request) -> web.Response:
    """Read and parse the body; answer ``{}``, or 400 if it is not JSON."""
    body = await request.read()
    try:
        json.loads(body)
    except ValueError:
        return web.Response(status=400, text="body is not JSON")
    return web.Response(body=EMPTY_JSON, content_type="application/json")


async def readyz(_request: web.Request) -> web.Response:
    """Always ready once the socket is bound."""
    return web.Response(text="ok")


def make_app() -> web.Application:
    """Build the two-route application."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/readyz", readyz)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``--host`` and ``--port``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, required=True, help="TCP port to bind")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM."""
    args = parse_args(argv)
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
