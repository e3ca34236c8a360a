"""``remediator approve ID``, ``remediator deny ID --reason R`` and ``remediator approvals``:
an approver answers, or anyone with a token reads, through a running service's approvals
API (``runtime/approvals.py``), so the answer is the service's: the replica that takes it
runs the claim, and the audit names the approver the token is. Exit status 0 when the
service took the answer (or listed), 1 when it refused it (its sentence on stderr), 2 when
it could not be asked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remediator.clients.approvals import call, read_token
from remediator.core.errors import ConfigError

DEFAULT_URL = "http://127.0.0.1:9095"
REFUSED = 1


def add_arguments(parser: argparse.ArgumentParser, *, vote: bool) -> None:
    if vote:
        parser.add_argument("id", type=int, metavar="ID", help="the approval's id (its claim's)")
        parser.add_argument("--reason", default="", help="why (a deny needs one)")
    else:
        states = "pending, approved, denied, timed_out, withdrawn or all"
        parser.add_argument("--state", default="pending", help=states)
        parser.add_argument("--json", action="store_true", help="the API's JSON as it is")
    parser.add_argument("--url", help=f"the service (env REMEDIATOR_URL; {DEFAULT_URL})")
    parser.add_argument(
        "--token-file",
        help="your approver token (env REMEDIATOR_APPROVER_TOKEN_FILE); a listing takes the"
        " service's bearer token too",
    )
    parser.add_argument(
        "--ca-file", help="PEM CAs the service's TLS certificate is checked against"
    )


def _where(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str, Path | None]:
    url = (args.url or environ.get("REMEDIATOR_URL") or DEFAULT_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url is {url!r}, not an http:// or https:// URL")
    path = args.token_file or environ.get("REMEDIATOR_APPROVER_TOKEN_FILE")
    if not path:
        raise ConfigError("give --token-file (or REMEDIATOR_APPROVER_TOKEN_FILE): your token")
    return url, read_token(Path(path)), Path(args.ca_file) if args.ca_file else None


def _refused(status: int, answer: Mapping[str, Any]) -> int:
    detail = answer.get("detail") or answer.get("error") or f"status {status}"
    print(f"remediator: refused ({status}): {detail}", file=sys.stderr)
    return REFUSED


def _said(answer: Mapping[str, Any]) -> str:
    votes = ", ".join(f"{v['vote']} by {v['by']}" for v in answer.get("votes", []))
    return (
        f"approval {answer['id']} ({answer['action']} on {answer['target']}, rule"
        f" {answer['rule']}): {answer['state']}; {votes or 'no answer yet'}; due {answer['due_at']}"
    )


def _vote(args: argparse.Namespace, environ: Mapping[str, str], decision: str) -> int:
    url, token, ca_file = _where(args, environ)
    body = {"decision": decision, "reason": args.reason, "via": "cli"}
    status, answer = asyncio.run(
        call("POST", f"{url}/api/v1/approvals/{args.id}", token, body, ca_file)
    )
    if status != 200:
        return _refused(status, answer)
    print(f"{answer['status']}: {_said(answer)}")
    return 0


def approve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    return _vote(args, environ, "approve")


def deny(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    if not args.reason.strip():
        raise ConfigError("a deny needs --reason: the audit and the incident say why")
    return _vote(args, environ, "deny")


def listing(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    url, token, ca_file = _where(args, environ)
    query = "" if args.state == "all" else f"?state={args.state}"
    status, answer = asyncio.run(
        call("GET", f"{url}/api/v1/approvals{query}", token, None, ca_file)
    )
    if status != 200:
        return _refused(status, answer)
    for approval in answer.get("approvals", []):
        print(json.dumps(approval, sort_keys=True) if args.json else _said(approval))
    return 0
