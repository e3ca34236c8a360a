"""ReDoS: no label value can make classification slower than linear. Regex matchers are
RE2, so the evil regexes of public ReDoS corpora classify a hostile 100 000-character value
in about ten times the time of a 10 000-character one, and a real ``serve`` process keeps
answering ``/healthz`` while it classifies the issue's ``(a+)+$`` case.

Corpus: OWASP's "Regular expression Denial of Service - ReDoS" page (its evil regexes and
its real-world examples from RegExLib), the Cloudflare outage of 2 July 2019 (``.*(?:.*=.*)``)
and the Stack Overflow outage of 20 July 2016 (whitespace trim).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from remediator.actions.registry import default_registry
from remediator.ruleset.load import load_rules
from remediator.ruleset.rules import RuleSet
from remediator.ruleset.template import Template
from tests.support.payloads import webhook_alert, webhook_payload
from tests.support.process import start_remediator
from tests.support.rule_texts import POLICY

SMALL, LARGE = 10_000, 100_000
LINEAR_FACTOR = 4
"""Generous: 10 times the characters may take up to 40 times the time (quadratic: 100)."""
SLACK_S = 0.005
"""Timer and scheduler noise on times well under a millisecond."""


def repeated(unit: str, tail: str = "!") -> Callable[[int], str]:
    """The classic attack: the unit ``n`` characters long, then a character that fails."""
    return lambda n: unit * (n // len(unit)) + tail


EVIL = {
    # OWASP's evil regexes, each against "aaaa…a!"
    "(a+)+": ("(a+)+$", repeated("a")),
    "([a-zA-Z]+)*": ("([a-zA-Z]+)*$", repeated("a")),
    "(a|aa)+": ("(a|aa)+$", repeated("a")),
    "(a|a?)+": ("(a|a?)+$", repeated("a")),
    "(.*a){12}": ("(.*a){12}", repeated("a")),
    # OWASP's real-world examples (RegExLib)
    "Java classname": ("^(([a-z])+.)+[A-Z]([a-z])+$", repeated("a")),
    "email validation": (
        r"^([a-zA-Z0-9])(([\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}"
        r"(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))$",
        repeated("a"),
    ),
    "person name": (r"^[a-zA-Z]+(([\'\,\.\-][a-zA-Z ])?[a-zA-Z]*)*$", repeated("a")),
    "multiple email address validation": (
        r"^[a-zA-Z]+(([\'\,\.\-][a-zA-Z ])?[a-zA-Z]*)*\s+<(\w[-._\w]*\w@\w[-._\w]*\w\.\w{2,3})>$"
        r"|^(\w[-._\w]*\w@\w[-._\w]*\w\.\w{2,3})$",
        repeated("a"),
    ),
    "decimal validator": (r"^\d*[0-9](|.\d*[0-9]|)*$", repeated("1")),
    "pattern matcher (host names)": (
        r"^([a-z0-9]+([\-a-z0-9]*[a-z0-9]+)?\.){0,}([a-z0-9]+([\-a-z0-9]*[a-z0-9]+)?){1,63}"
        r"(\.[a-z0-9]{2,7})+$",
        repeated("a"),
    ),
    # Outages
    "Cloudflare 2019 (.*(?:.*=.*))": (r".*(?:.*=.*);", repeated("x=", "")),
    "Stack Overflow 2016 (trim)": (r"^[\s\x{200c}]+|[\s\x{200c}]+$", repeated(" ", "x")),
    "words and spaces": (r"^(\w+\s?)*$", repeated("a")),
}


def classifier_for(tmp_path: Path, pattern: str, op: str = "=~") -> RuleSet:
    directory = tmp_path / "rules"
    directory.mkdir(exist_ok=True)
    (directory / "00-policy.yaml").write_text(POLICY)
    matcher = json.dumps(f"victim{op}{json.dumps(pattern)}")  # JSON is a YAML flow scalar
    (directory / "10-rules.yaml").write_text(
        textwrap.dedent(
            f"""\
            rules:
              - {{name: evil, match: [{matcher}], severity: SEV-2}}
              - {{name: default, match: [], severity: SEV-3}}
            """
        )
    )
    return load_rules(directory, default_registry())


def classify_time(classifier: RuleSet, value: str, rounds: int = 5) -> float:
    labels = {"alertname": "Probe", "victim": value}
    classifier.classify(labels)  # warm: RE2 builds its DFA lazily
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        classifier.classify(labels)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("op", ["=~", "!~"])
@pytest.mark.parametrize("name", list(EVIL))
def test_an_evil_regex_classifies_a_hostile_value_in_linear_time(
    tmp_path: Path, name: str, op: str
) -> None:
    pattern, hostile = EVIL[name]
    classifier = classifier_for(tmp_path, pattern, op)
    expected = "default" if op == "=~" else "evil"  # no hostile value matches
    assert classifier.classify({"victim": hostile(LARGE)}).name == expected
    small = classify_time(classifier, hostile(SMALL))
    large = classify_time(classifier, hostile(LARGE))
    assert large < LINEAR_FACTOR * (LARGE / SMALL) * small + SLACK_S, (small, large)
    assert large < 0.5


def test_a_hostile_label_value_in_a_target_template_is_refused_in_constant_time() -> None:
    template = Template.parse("{namespace}")
    timings = []
    for size in (SMALL, LARGE):
        value = "a-" * (size // 2) + "!"
        started = time.perf_counter()
        with pytest.raises(LookupError):
            template.render({"namespace": value})
        timings.append(time.perf_counter() - started)
    assert max(timings) < 0.01


async def test_serve_keeps_answering_healthz_while_it_classifies_the_issue_s_case(
    tmp_path: Path,
) -> None:
    classifier_for(tmp_path, "(a+)+$")  # writes tmp_path/rules
    service = await start_remediator(tmp_path / "serve", rules=tmp_path / "rules")
    labels = {"alertname": "Probe", "namespace": "llm-research", "victim": "a" * 40 + "!"}
    try:
        body = json.dumps(webhook_payload(webhook_alert("bad0", labels=labels))).encode()
        assert await service.post(body) == 200
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        timeout = aiohttp.ClientTimeout(total=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                async with session.get(f"{service.url}/healthz") as resp:
                    assert resp.status == 200
                classified = [d for d in await service.decisions() if d["step"] == "classified"]
                if classified or loop.time() > deadline:
                    break
                await asyncio.sleep(0.05)
        assert [d["rule"] for d in classified] == ["default"]
    finally:
        await service.stop()
