"""The silence watch: does an Alertmanager silence cover this alert now? An engineer who
silences an alert is saying "I am on it": remediator does not act behind their back.

Where it sits: the decide stage asks ``verdict`` between scope and the storm brake (a
silenced alert never counts towards a storm), and the act stage asks again just before an
action's precheck (a claim queued, or resumed, while the engineer silenced it). No decision
waits on Alertmanager: a loop (``refresh``, every ``--silence-refresh-seconds``) reads the
silences of every ``--alertmanager-url`` at once, and ``verdict`` matches the alert's labels
against the last answer with Alertmanager's own matcher semantics (``ruleset.matchers``:
RE2, anchored; an absent label is the empty string).

An HA pair gossips its silences, so the answers are merged by id (the latest update wins),
and one peer answering is enough. What cannot be known is said so, never guessed: no answer
for ``max_age_s``, or a silence whose matcher this process cannot evaluate (a regex Go
accepts and RE2 here does not) that might cover the alert, is ``unknown``; the rule then
says whether to act anyway (``on_silence_check_error: act``) or not (``refuse``, the default:
a page says why).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from remediator.core.clock import Clock
from remediator.core.errors import AlertmanagerUnavailable
from remediator.core.metrics import Metrics
from remediator.core.model import ALLOW, StopReason, Verdict, refuse
from remediator.core.regex import Regex
from remediator.ruleset.matchers import Matcher, MatchType

log = logging.getLogger(__name__)

OnError = Literal["refuse", "act"]
COMMENT_CHARS = 200


class Source(Protocol):
    async def silences(self, url: str) -> Any: ...


class _MatcherIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    value: str
    isRegex: StrictBool
    isEqual: StrictBool = True


class _SilenceIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: StrictStr = Field(min_length=1)
    matchers: list[_MatcherIn] = Field(min_length=1)
    startsAt: AwareDatetime  # a time without its zone would be another instant's
    endsAt: AwareDatetime
    updatedAt: AwareDatetime | None = None
    createdBy: str = ""
    comment: str = ""


_ANSWER = TypeAdapter(list[_SilenceIn])


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    updated_at: datetime | None
    created_by: str
    comment: str
    undecidable: str = ""
    """Why one of its matchers cannot be evaluated here (it then may cover any alert its
    other matchers match)."""

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def covers(self, labels: Mapping[str, str]) -> bool | None:
        """True, False, or None: its matchers that can be evaluated match, and one cannot."""
        if not all(m.matches(labels) for m in self.matchers):
            return False
        return None if self.undecidable else True


def parse(answer: Any) -> list[Silence]:
    """Alertmanager's ``GET /api/v2/silences`` answer; ``ValueError`` naming what is wrong
    when it is not that (the whole answer: a peer that sends one broken silence is not to be
    trusted for the others)."""
    try:
        found = _ANSWER.validate_python(answer)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"not a list of silences ({where}: {first['msg']})") from None
    return [_silence(item) for item in found]


def _silence(item: _SilenceIn) -> Silence:
    matchers: list[Matcher] = []
    undecidable = ""
    for m in item.matchers:
        kinds = {(False, True): MatchType.EQUAL, (False, False): MatchType.NOT_EQUAL,
                 (True, True): MatchType.REGEX, (True, False): MatchType.NOT_REGEX}  # fmt: skip
        kind = kinds[m.isRegex, m.isEqual]
        if not m.isRegex:
            matchers.append(Matcher(m.name, kind, m.value))
            continue
        try:
            matchers.append(Matcher(m.name, kind, m.value, Regex(m.value, anchored=True)))
        except ValueError as exc:
            undecidable = f"matcher {m.name}{kind.value}{m.value!r}: {exc}"
    return Silence(
        id=item.id, matchers=tuple(matchers), starts_at=item.startsAt, ends_at=item.endsAt,
        updated_at=item.updatedAt, created_by=item.createdBy,
        comment=item.comment[:COMMENT_CHARS], undecidable=undecidable,
    )  # fmt: skip


def merged(answers: Sequence[Sequence[Silence]]) -> list[Silence]:
    """The silences of every peer that answered, one per id: the most recently updated."""
    by_id: dict[str, Silence] = {}
    for answer in answers:
        for silence in answer:
            known = by_id.get(silence.id)
            if known is None or _updated(silence) > _updated(known):
                by_id[silence.id] = silence
    return list(by_id.values())


def _updated(silence: Silence) -> datetime:
    return silence.updated_at or datetime.min.replace(tzinfo=UTC)


class SilenceWatch:
    """The last silences read from Alertmanager, and the verdicts they give. Without URLs
    it allows everything (no Alertmanager to ask)."""

    def __init__(
        self,
        source: Source | None,
        urls: Sequence[str],
        clock: Clock,
        metrics: Metrics,
        max_age_s: float,
    ) -> None:
        self._source = source
        self._urls = tuple(urls)
        self._clock = clock
        self._metrics = metrics
        self._max_age_s = max_age_s
        self._silences: list[Silence] = []
        self._read_at: datetime | None = None
        self._why = ""
        """What the last read's failures were (none: every peer answered)."""

    @property
    def enabled(self) -> bool:
        return self._source is not None and bool(self._urls)

    async def refresh(self) -> None:
        """Read every peer at once; the silences change only when one of them answered."""
        if not self.enabled:
            return
        results = await asyncio.gather(*(self._read(url) for url in self._urls))
        answers = [r for r in results if not isinstance(r, str)]
        failures = [r for r in results if isinstance(r, str)]
        if answers:
            self._silences = merged(answers)
            self._read_at = self._clock.now()
            self._metrics.silences.set(sum(s.active(self._read_at) for s in self._silences))
        self._why = "; ".join(failures)

    async def _read(self, url: str) -> list[Silence] | str:
        assert self._source is not None
        try:
            silences = parse(await self._source.silences(url))
        except (AlertmanagerUnavailable, ValueError) as exc:
            self._metrics.silence_reads.labels("failed").inc()
            log.warning("the silences of %s were not read: %s", url, exc)
            return str(exc)
        self._metrics.silence_reads.labels("ok").inc()
        return silences

    def verdict(self, labels: Mapping[str, str], on_error: OnError) -> Verdict:
        """Whether an action on the alert of ``labels`` may go on, as far as silences go."""
        if not self.enabled:
            return ALLOW
        now = self._clock.now()
        age_s = None if self._read_at is None else (now - self._read_at).total_seconds()
        if age_s is None or age_s > self._max_age_s:
            since = "never" if age_s is None else f"{age_s:.0f} s ago"
            why = f" ({self._why})" if self._why else ""
            return self._unknown(f"Alertmanager last answered {since}{why}", on_error)
        doubt: Silence | None = None
        for silence in self._silences:
            if not silence.active(now):
                continue
            covers = silence.covers(labels)
            if covers:
                return refuse(StopReason.SILENCED, _silenced(silence))
            if covers is None and doubt is None:
                doubt = silence
        if doubt is not None:
            why = f"silence {doubt.id} may cover it: its {doubt.undecidable}"
            return self._unknown(why, on_error)
        return ALLOW

    @staticmethod
    def _unknown(why: str, on_error: OnError) -> Verdict:
        if on_error == "act":
            return ALLOW
        return refuse(
            StopReason.SILENCE_UNKNOWN,
            f"Whether the alert is silenced is unknown: {why}. The rule acts only when it"
            " knows (on_silence_check_error: refuse); nothing was done.",
        )


def _silenced(silence: Silence) -> str:
    by = silence.created_by or "someone"
    until = silence.ends_at.isoformat().replace("+00:00", "Z")
    said = f": {silence.comment!r}" if silence.comment else ""
    return (
        f"Silenced in Alertmanager by {by} until {until} (silence {silence.id}){said};"
        " a human is on it, so nothing was done."
    )
