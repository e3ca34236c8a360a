"""Who may approve: the approvers file (``--approvers-file``), each person's name, teams,
token and Slack user IDs, read again when the file changes (the last good reading is kept
when a change does not read: a half-written file never locks the approvers out).

A token is kept as its SHA-256 only: the file may give ``token`` (read from a Secret) or
``token_sha256`` (so the file itself holds no secret), and an offered token is hashed and
compared in constant time with every approver's. The file is strict YAML (no repeated key,
no alias) against a strict schema: a name, a token or a Slack ID twice is an error.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from remediator.core.errors import ConfigError, RequestRejected
from remediator.ruleset.rules import RuleSet
from remediator.ruleset.schema import APPROVER_PATTERN
from remediator.ruleset.strict_yaml import YamlError, parse
from remediator.store.contract import PendingApproval

log = logging.getLogger(__name__)
#: An approvers file is a team's list, not a directory: past this it is a mistake.
MAX_FILE_BYTES = 1_000_000
Name = Annotated[str, Field(pattern=APPROVER_PATTERN)]


class ApproverSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    teams: list[Name] = Field(default_factory=list, max_length=50)
    token: str | None = Field(default=None, min_length=16, max_length=512)
    """The approver's own bearer token; at least 16 characters."""
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The token's SHA-256, in lowercase hex: the file then holds no secret."""
    slack_user_ids: list[Annotated[str, Field(pattern=r"^[UW][A-Z0-9]{2,20}$")]] = Field(
        default_factory=list, max_length=10
    )
    """The approver's Slack user IDs (``U…``): a click on Approve or Deny by one of them is
    this approver's."""

    @model_validator(mode="after")
    def _one_token(self) -> ApproverSpec:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token or token_sha256")
        return self

    def digest(self) -> str:
        if self.token_sha256 is not None:
            return self.token_sha256
        assert self.token is not None
        return hashlib.sha256(self.token.encode("utf-8")).hexdigest()


class ApproversFileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    approvers: list[ApproverSpec] = Field(min_length=1, max_length=1_000)

    @model_validator(mode="after")
    def _unique(self) -> ApproversFileSpec:
        for what, values in (
            ("name", [a.name for a in self.approvers]),
            ("token", [a.digest() for a in self.approvers]),
            ("Slack user ID", [u for a in self.approvers for u in a.slack_user_ids]),
        ):
            if len(set(values)) != len(values):
                raise ValueError(f"two approvers have the same {what}")
        return self


@dataclass(frozen=True, slots=True)
class Approver:
    name: str
    teams: tuple[str, ...]
    digest: str
    slack_user_ids: tuple[str, ...]


def read_approvers(path: Path) -> tuple[Approver, ...]:
    """The approvers ``path`` lists; ``ConfigError`` (one sentence) when it does not read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"the approvers file {path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"the approvers file {path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        raw = parse(data)
        spec = ApproversFileSpec.model_validate(raw)
    except YamlError as exc:
        raise ConfigError(f"the approvers file {path} {exc.problem}") from None
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise ConfigError(f"the approvers file {path}: {where}: {first['msg']}") from None
    return tuple(
        Approver(a.name, tuple(a.teams), a.digest(), tuple(a.slack_user_ids))
        for a in spec.approvers
    )


class Approvers:
    """The approvers file, as of its last good reading."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._approvers = read_approvers(path)  # a sentence when it does not read
        self._mtime_ns = os.stat(path).st_mtime_ns

    def _refresh(self) -> None:
        try:
            mtime_ns = os.stat(self._path).st_mtime_ns
            if mtime_ns != self._mtime_ns:
                self._approvers = read_approvers(self._path)
                self._mtime_ns = mtime_ns
        except (OSError, ConfigError) as exc:
            log.error("the approvers file did not read; the last good one is used: %s", exc)

    def by_token(self, offered: bytes) -> Approver:
        """The approver whose token ``offered`` is; ``RequestRejected`` (401) for none."""
        self._refresh()
        digest = hashlib.sha256(offered).hexdigest().encode()
        found = None
        for approver in self._approvers:  # every one compared: the time tells nothing
            if hmac.compare_digest(digest, approver.digest.encode()):
                found = approver
        if found is None:
            raise RequestRejected(401, "unauthorized", "The token is no approver's.")
        return found

    def by_name(self, name: str) -> Approver | None:
        """The approver of that name in the file as it reads now (a console session of one
        taken out of the file answers nothing)."""
        self._refresh()
        return next((a for a in self._approvers if a.name == name), None)

    def by_slack_user(self, user_id: str) -> Approver | None:
        self._refresh()
        return next((a for a in self._approvers if user_id in a.slack_user_ids), None)


def check_approvers(ruleset: RuleSet, approvers_file: Path | None) -> None:
    """``ConfigError`` when a rule asks an approval and no approvers file says who may give
    one: its claims could only wait for their timeout."""
    if approvers_file is not None:
        return
    for rule in ruleset.rules:
        if rule.approval is not None and not rule.shadow:
            raise ConfigError(
                f"rule {rule.name!r} asks for an approval ({rule.approval.source}), but no"
                " --approvers-file says who may give one"
            )


def refusal(approver: Approver, approval: PendingApproval) -> tuple[str, str] | None:
    """Why ``approver`` may not answer ``approval`` (a code and one sentence), or None when
    they may: the rule names them or a team of theirs (or names none), and they are not the
    person whose change raised the alert (four eyes)."""
    named: Sequence[str] = approval.approvers
    if named and approver.name not in named and not set(approver.teams) & set(named):
        sentence = f"{approver.name} is not among the approvers of approval {approval.claim_id}."
        return "not_an_approver", sentence
    initiator = approval.initiator.strip().casefold()
    if initiator and initiator == approver.name.casefold():
        sentence = (
            f"{approver.name} raised the alert this approval is about: another approver must"
            " answer it."
        )
        return "four_eyes", sentence
    return None
