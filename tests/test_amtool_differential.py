"""Rule matchers against the real ``amtool`` (Debian's Alertmanager 0.25): for every matcher
string of the corpus below (RE2 classes, anchors, escapes, unicode, list forms, invalid
ones), ``amtool check-config`` and ``load_rules`` accept or refuse it alike, and for every
label set, ``amtool config routes test`` and the rules agree on which match.

How: one Alertmanager config per string for ``check-config`` (a refusal is the config's);
then one config holding a route per string ``amtool`` accepts, each with ``continue: true``
and its own receiver, so one ``routes test`` per label set names every route that matches,
in order; and one rule set holding the same strings as rules, in the same order. Each route
and rule also carries ``guard="on"`` (every label set has it), so an item holding no matcher
(``""``, ``"{}"``) does not make a catch-all in the middle of the rules. The strings are
written into both files as the same YAML double-quoted scalar.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from remediator.actions.registry import default_registry
from remediator.core.errors import RuleFileError
from remediator.ruleset.load import load_rules
from remediator.ruleset.rules import RuleSet
from tests.support.rule_texts import POLICY

AMTOOL = shutil.which("amtool")
GUARD = 'guard="on"'
WORKERS = 8

# What a rule file says, as YAML gives it to the parser (Python escapes, not YAML's).
EQUALITY = [
    'a="b"', 'a!="b"', "a=b", "a!=b", 'a=""', 'a!=""', "a=", "a!=", '  a = "b"  ', "a = b",
    'a="b" ', '\ta="b"', 'a=\t"b"', 'alertname="HighCPU"', 'pod!="api-1"', 'A="b"',
    '_a="b"', 'a1="b"', 'x:y="b"', ':a=""', 'a:="b"', "a=x y", 'a=" b "', "a==b", "a=!b",
    "a =", 'a="a=b"', 'a="{x}"', "a={x}", 'a="}"', 'a="{"', "a=~x",
]  # fmt: skip
ESCAPES = [
    'a="say \\"hi\\""', 'a="C:\\\\tmp"', 'a="a\\nb"', 'a="\\u00e9"', 'a="\\q"', 'a="\\t"',
    'a="x\\\\"', "a=\\", 'a=x\\"y', 'a="a\tb"', 'a="a\nb"', 'a="\\\\n"', 'a="\\\\u00e9"',
    'a="é"', 'a="日本"', 'a="😀"', 'a="a,b"', "a=C:\\tmp", 'a="\\\\"', 'a=\\"',
]  # fmt: skip
LISTS = [
    '{a="b",c=~"d"}', 'a="b",c="d"', '{a="b", c="d", }', 'a="b",', "{}", "{ }", "",
    'a="b" , c="d"', 'a="x,y",b="z"', 'a="x\\",y"', '{a="b"', 'a="b"}', 'a="b",a="c"',
    'a=~"x,y"', 'a=~"b|c",a!="c"', '{a=~"[a-z]+", a!~"abc"}', 'a="b",\tc="d"',
    'a="b",c="d",e="f",g="h"', '{a="x",}', '{a="}"}', 'a="b\\\\",c="d"',
    'a=b\u00a0', 'a=b\u00a0,c=d', '\u00a0a=b', 'a=b\u2003', 'a="b"\u3000', '\va="b"',
    'a="b",\vc="d"', 'alertname=~"High.*",pod!~"api-2"', '{pod=~"api-.*"}', "a=b,c=d",
]  # fmt: skip
RE2_CLASSES = [
    'a=~"[[:alpha:]]+"', 'pod=~"[[:alpha:]]+"', 'a=~"[[:digit:]]+"', 'a=~"[[:^alpha:]]+"',
    'a=~"[[:word:]]+"', 'a=~"[[:space:]]"', 'a=~"[[:upper:]]+"', 'a=~"[[:lower:]]+"',
    'a=~"[[:alnum:]]+"', 'a=~"[[:punct:]]+"', 'a=~"[[:xdigit:]]+"', 'a=~"\\\\d+"', 'a=~"\\d+"',
    'a=~"\\\\D+"', 'a=~"\\\\w+"', 'a=~"\\w+"', 'a=~"\\\\s"', 'a=~"a\\\\sb"', 'a=~"\\\\pL+"',
    'a=~"\\\\p{L}+"', 'a=~"\\\\p{Greek}+"', 'a=~"\\\\p{Han}+"', 'a=~"\\\\PL+"',
    'a=~"\\\\p{^Greek}+"', 'a=~"\\\\pN"', 'a=~"\\\\p{Nd}"', 'a=~"\\\\p{Lu}+"',
    'a=~"[\\\\d\\\\s]+"', 'a=~"[^a]+"', 'a=~"[a-c]+"', 'a=~"[]a]+"', 'a=~"\\\\x{e9}"',
    'a=~"\\\\x41"', 'a=~"\\\\Q.*\\\\E"', 'a=~"\\\\bfoo\\\\b"', 'a=~"\\\\Bo"', 'a=~"\\\\0"',
    'a=~"a\\\\12b"', 'a=~"[[:alpha:][:digit:]]+"', "a=~[[:alpha:]]+",
]  # fmt: skip
ANCHORS = [
    'a=~"foo"', 'a=~"foo.*"', 'a=~".*bar"', 'a=~"^foo$"', 'a=~"^foo"', 'a=~"foo$"',
    'a=~"a|b"', 'a=~"a)|(b"', 'a=~"a)(b"', 'a=~")("', 'a=~"\\\\Afoo\\\\z"', 'a=~"foo\\\\z"',
    'a=~"(?m)foo$"', 'a=~"(?s).+"', 'a=~".+"', 'a=~".*"', 'a=~""', 'a!~""', 'a!~".+"',
    'a=~"(?i)FOO"', 'a=~"(?i)straße"', 'a=~"(?U)a+"', 'a=~"(?i:a)b"', 'a=~"foo$\\\\n"',
    'a=~"(?m)^b$"', 'a=~"$"', 'a=~"^"', "a=~b.*", "a=~a|b", 'a=~"(?s:.)"',
]  # fmt: skip
REPETITION = [
    'a=~"a{2}"', 'a=~"a{,3}"', 'a=~"a{2,}"', 'a=~"a{1000}"', 'a=~"a*?"', 'a=~"(a{10}){100}"',
    'a=~"(?:a|b)+"', 'a=~"(a|b)*c"', 'a=~"(?P<x>a)"', 'a=~"a{2}b{0,1}"',
    'a=~"(?P<x>a)(?P<x>b)"',
]  # fmt: skip
UNICODE = [
    'a=~"é+"', 'a=~"(?i)É"', 'a=~"日.*"', 'a=~"."', 'a=~".."', 'a=~"[\u03b1-\u03c9]+"',
    'a=~"(?i)k"', 'a=~"\\\\x{1F600}"', 'a=~"[^\\\\x00-\\\\x7F]+"', 'a!~"\\\\p{Greek}"',
    'a="\u212a"',
    'a=~"(?i)ǆ"', 'a=~"\\\\p{Cyrillic}+"', 'a=~"[😀-😂]"', 'a!~"[[:alpha:]]+"',
]  # fmt: skip
INVALID = [
    '1a="b"', 'a-b="b"', 'é="b"', '="b"', 'a.b="b"', 'a=="b"', "a!b", 'a~="b"', 'a! ="b"',
    'a<>"b"', "a", 'a="\\"', 'a="x', 'a=x"', 'a="x" "y"', 'a="x"y', 'a="x\\"',
    ' {a="b"}', '{a="b"} ', 'a="b",,c="d"', ',a="b"', "a=x,y", 'a="b",c', '{{a="b"}}',
    'a="b\\\\\\",c="d"', '\u00a0a=b,c=d', '\va="b",c="d"', 'a=~"[[:foo:]]"',
    'a=~"\\\\p{Foo}"', 'a=~"[c-a]"', 'a=~"[a"', 'a=~"\\\\x{110000}"', 'a=~"\\\\Qa.b"',
    'a=~"\\\\C"', 'a=~"(a"', 'a=~"a)"', 'a=~"foo\\\\Z"', 'a=~"(?x)a"', 'a=~"a{1001}"',
    'a=~"a{2,1}"', 'a=~"a**"', 'a=~"a++"', 'a=~"*"', 'a=~"(a{2}){501}"',
    'a=~"((a{10}){10}){11}"', 'a=~"(a)\\\\1"', 'a=~"(?P<x>a)(?P=x)"', 'a=~"(?<x>a)"',
    'a=~"(?=a)"', 'a=~"(?!a)"', 'a=~"(?<=a)b"', 'a=~"(?<!a)b"', 'a=~"(?>a)"',
    'a=~"(?(1)a|b)"', 'a=~"\\\\8"', 'a!~"(a"', 'a=~"x("',
    'a={a="b"}', 'a="b",c=~"("',
]  # fmt: skip
CORPUS = [*EQUALITY, *ESCAPES, *LISTS, *RE2_CLASSES, *ANCHORS, *REPETITION, *UNICODE, *INVALID]

VALUES = [
    "", "b", "abc", "ABC", "a1", "123", "foo", "foobar", "foo\n", "barfoo", "x y", " b ",
    'say "hi"', "C:\\tmp", "a\nb", "a\\nb", "é", "été", "\\u00e9", "日本", "αβ", "\u0663",
    "café", "a\u00a0b", "a\tb", "a\\tb", "😀", "\u212a", "k", "K", "straße", "STRASSE", "a,b",
    "{x}", "{x", "}", "{", "a=b", "=b", "!b", "~x", "x", "\\", "x\\", "ab", "ba", "aa", "a{,3}",
    "a", "c", "d", "x,y", 'x",y', "Ǆ", "ǆ", "привет", "b\u00a0", "b\u2003", "\\q", "\\t",
    "c:\\tmp", 'x"y', "\\d", "\n", "aaaaaaaaaa" * 100, "a)", "HighCPU", "api-1", "-",
]  # fmt: skip
LABEL_SETS: list[dict[str, str]] = [
    *({"a": value} for value in VALUES),
    {},
    {"a": "b", "c": "d"},
    {"a": "b", "c": "e"},
    {"a": "b", "c": "d", "e": "f", "g": "h"},
    {"a": "x,y", "b": "z"},
    {"a": "x y", "c": "d"},
    {"a": "b\u00a0", "c": "d"},
    {"alertname": "HighCPU", "pod": "api-1"},
    {"alertname": "HighCPUUsage", "pod": "api-2"},
    {"alertname": "Low", "pod": "db"},
    {"pod": "api"},
    {"A": "b", "_a": "b", "a1": "b"},
]


def yaml_string(text: str) -> str:
    """``text`` as a YAML double-quoted scalar that PyYAML and Go's yaml read alike."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def amtool_label(name: str, value: str) -> str:
    """A label for ``routes test``, which parses each as one matcher (with its escapes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


def alertmanager_config(items: Sequence[tuple[int, str]]) -> str:
    routes = "".join(
        f"    - receiver: r{i}\n      continue: true\n"
        f"      matchers: [{yaml_string(GUARD)}, {yaml_string(text)}]\n"
        for i, text in items
    )
    receivers = "".join(f"  - name: r{i}\n" for i, _ in items)
    return (
        "route:\n  receiver: default\n  routes:\n"
        + routes
        + "receivers:\n  - name: default\n"
        + receivers
    )


def rules_file(items: Sequence[tuple[int, str]]) -> str:
    rules = "".join(
        f"  - name: r{i}\n    matchers: [{yaml_string(GUARD)}, {yaml_string(text)}]\n"
        "    severity: SEV-3\n"
        for i, text in items
    )
    return "rules:\n" + rules + "  - {name: default, matchers: [], severity: SEV-3}\n"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None, "amtool is missing: run scripts/install-system-deps"
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=30, check=False)


def amtool_accepts(directory: Path, i: int, text: str) -> bool:
    path = directory / f"check-{i}.yml"
    path.write_text(alertmanager_config([(i, text)]), encoding="utf-8")
    return amtool("check-config", str(path)).returncode == 0


def amtool_routes(config: Path, labels: Mapping[str, str]) -> list[str]:
    args = [amtool_label(name, value) for name, value in {"guard": "on", **labels}.items()]
    result = amtool("config", "routes", "test", f"--config.file={config}", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(",")


def load(directory: Path, items: Sequence[tuple[int, str]]) -> RuleSet:
    directory.mkdir()
    (directory / "00-policy.yaml").write_text(POLICY)
    (directory / "10-rules.yaml").write_text(rules_file(items), encoding="utf-8")
    return load_rules(directory, default_registry())


def remediator_refusal(directory: Path, i: int, text: str) -> str | None:
    """``None`` if the rules load with ``text`` as a rule's item; the sentence otherwise."""
    try:
        load(directory / f"rules-{i}", [(i, text)])
    except RuleFileError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Verdicts:
    amtool_accepts: dict[int, bool]
    remediator_refusals: dict[int, str | None]
    amtool_routes: list[list[str]]
    ruleset: RuleSet


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdicts]:
    directory = tmp_path_factory.mktemp("amtool")
    corpus = list(enumerate(CORPUS))
    with ThreadPoolExecutor(WORKERS) as pool:
        accepted = pool.map(lambda item: amtool_accepts(directory, *item), corpus)
        accepts = dict(enumerate(accepted))
        refusals = {i: remediator_refusal(directory, i, text) for i, text in corpus}
        both = [(i, text) for i, text in corpus if accepts[i] and refusals[i] is None]
        config = directory / "routes.yml"
        config.write_text(alertmanager_config(both), encoding="utf-8")
        routes = list(pool.map(lambda labels: amtool_routes(config, labels), LABEL_SETS))
    yield Verdicts(accepts, refusals, routes, load(directory / "rules", both))


def test_the_corpus_holds_at_least_200_matcher_strings_of_every_kind() -> None:
    assert len(set(CORPUS)) == len(CORPUS) >= 200
    assert len(INVALID) >= 50 and len(LISTS) >= 30 and len(RE2_CLASSES) >= 30


def test_remediator_accepts_exactly_the_matchers_amtool_check_config_accepts(
    verdicts: Verdicts,
) -> None:
    disagreements = [
        f"{text!r}: amtool {'accepts' if verdicts.amtool_accepts[i] else 'refuses'},"
        f" remediator {refusal or 'accepts'}"
        for i, text in enumerate(CORPUS)
        if verdicts.amtool_accepts[i] != ((refusal := verdicts.remediator_refusals[i]) is None)
    ]
    assert disagreements == []
    assert sum(verdicts.amtool_accepts.values()) >= 130  # the rest is the invalid list
    assert not any(verdicts.amtool_accepts[CORPUS.index(text)] for text in INVALID)


def test_every_refusal_is_one_sentence_naming_the_file_rule_and_item(
    verdicts: Verdicts,
) -> None:
    for i, refusal in verdicts.remediator_refusals.items():
        if refusal is not None:
            assert refusal.startswith(f'10-rules.yaml: rule "r{i}": field "matchers[1]" holds ')
            assert ", which is not a valid matcher: " in refusal
            assert refusal.endswith(".") and refusal.isprintable(), refusal


def test_every_label_set_matches_the_rules_whose_routes_amtool_routes_it_to(
    verdicts: Verdicts,
) -> None:
    rules = verdicts.ruleset.rules[:-1]
    disagreements = [
        f"{CORPUS[int(rule.name[1:])]!r} on {labels!r}: amtool {'matches' if routed else 'not'}"
        for labels, routes in zip(LABEL_SETS, verdicts.amtool_routes, strict=True)
        for rule in rules
        if (routed := rule.name in routes) != rule.matches({"guard": "on", **labels})
    ]
    assert disagreements == []
    assert len(rules) * len(LABEL_SETS) >= 10_000  # (matcher, label set) pairs compared


def test_classify_picks_the_rule_of_amtool_s_first_route(verdicts: Verdicts) -> None:
    picked = [verdicts.ruleset.classify({"guard": "on", **labels}).name for labels in LABEL_SETS]
    assert picked == [routed[0] for routed in verdicts.amtool_routes]
