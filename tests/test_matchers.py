"""Alertmanager matcher semantics: =, !=, =~, !~, anchored regexes, a missing label read as
"", quoted and unquoted values, and a reason for every matcher that does not parse."""

from __future__ import annotations

import re

import pytest

from remediator.ruleset.matchers import Matcher, MatchType, parse_matcher

MATCHING = [
    # (matcher, labels, matches)
    pytest.param('alertname="HighCPUUsage"', {"alertname": "HighCPUUsage"}, True, id="= equal"),
    pytest.param('alertname="HighCPUUsage"', {"alertname": "HighCPU"}, False, id="= other"),
    pytest.param('alertname="HighCPU"', {"alertname": "HighCPUUsage"}, False, id="= no prefix"),
    pytest.param('severity!="critical"', {"severity": "warning"}, True, id="!= other"),
    pytest.param('severity!="critical"', {"severity": "critical"}, False, id="!= equal"),
    pytest.param('severity!="critical"', {}, True, id="!= missing label"),
    pytest.param('severity=~"warning|critical"', {"severity": "critical"}, True, id="=~ alt"),
    pytest.param('severity=~"warning|critical"', {"severity": "info"}, False, id="=~ no alt"),
    pytest.param('alertname=~"foo"', {"alertname": "foobar"}, False, id="=~ anchored end"),
    pytest.param('alertname=~"bar"', {"alertname": "foobar"}, False, id="=~ anchored start"),
    pytest.param('alertname=~"foo"', {"alertname": "foo\n"}, False, id="=~ no newline"),
    pytest.param('alertname=~"a|b"', {"alertname": "ab"}, False, id="=~ alternation anchored"),
    pytest.param('alertname=~"Pod.*"', {"alertname": "PodCrashLooping"}, True, id="=~ prefix"),
    pytest.param('alertname=~"(?i)highcpu"', {"alertname": "HighCPU"}, True, id="=~ flags"),
    pytest.param('pod=~".+"', {"pod": "api-1"}, True, id="=~ present"),
    pytest.param('pod=~".+"', {}, False, id="=~ missing label is empty"),
    pytest.param('pod=~".*"', {}, True, id="=~ empty regex matches missing"),
    pytest.param('severity!~"warning|critical"', {"severity": "info"}, True, id="!~ other"),
    pytest.param('severity!~"warning|critical"', {"severity": "warning"}, False, id="!~ alt"),
    pytest.param('severity!~"warn"', {"severity": "warning"}, True, id="!~ anchored"),
    pytest.param('team=""', {}, True, id="empty = matches missing"),
    pytest.param('team=""', {"team": ""}, True, id="empty = matches empty"),
    pytest.param('team=""', {"team": "db"}, False, id="empty = refuses present"),
    pytest.param('team!=""', {}, False, id="not empty refuses missing"),
    pytest.param('team!=""', {"team": "db"}, True, id="not empty requires presence"),
    pytest.param("team=", {}, True, id="unquoted empty = matches missing"),
    pytest.param("alertname=HighCPUUsage", {"alertname": "HighCPUUsage"}, True, id="unquoted"),
    pytest.param('  alertname = "HighCPUUsage"  ', {"alertname": "HighCPUUsage"}, True, id="ws"),
    pytest.param('msg="say \\"hi\\""', {"msg": 'say "hi"'}, True, id="escaped quote"),
    pytest.param('path="C:\\\\tmp"', {"path": "C:\\tmp"}, True, id="escaped backslash"),
    pytest.param('msg="a\\nb"', {"msg": "a\nb"}, True, id="escaped newline"),
    pytest.param('msg="a, b = c"', {"msg": "a, b = c"}, True, id="quoted comma and equals"),
    pytest.param('dot=~"a\\\\.b"', {"dot": "a.b"}, True, id="escaped regex dot"),
    pytest.param('dot=~"a\\\\.b"', {"dot": "axb"}, False, id="escaped regex dot is literal"),
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHING)
def test_a_matcher_matches_as_alertmanager_does(
    text: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse_matcher(text).matches(labels) is expected


PARSED = [
    pytest.param('a="x"', Matcher("a", MatchType.EQUAL, "x"), id="="),
    pytest.param('a!="x"', Matcher("a", MatchType.NOT_EQUAL, "x"), id="!="),
    pytest.param("a=x", Matcher("a", MatchType.EQUAL, "x"), id="unquoted"),
    pytest.param('a = "x y"', Matcher("a", MatchType.EQUAL, "x y"), id="spaces"),
    pytest.param('_a1="\\u00e9"', Matcher("_a1", MatchType.EQUAL, "é"), id="unicode escape"),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_an_equality_matcher_parses_to_name_type_and_value(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ('a=~"x|y"', MatchType.REGEX, "x|y"),
        ('a!~"x.*"', MatchType.NOT_REGEX, "x.*"),
        ("a=~x.+", MatchType.REGEX, "x.+"),
    ],
    ids=["=~", "!~", "unquoted regex"],
)
def test_a_regex_matcher_is_compiled_once_when_parsed(
    text: str, kind: MatchType, value: str
) -> None:
    matcher = parse_matcher(text)
    assert (matcher.name, matcher.type, matcher.value) == ("a", kind, value)
    assert isinstance(matcher.pattern, re.Pattern)
    assert matcher.pattern.pattern == value


def test_a_matcher_prints_back_in_alertmanager_syntax() -> None:
    assert str(parse_matcher('msg =~ "say \\"hi\\""')) == 'msg=~"say \\"hi\\""'


NOT_OF_THE_FORM = 'it is not of the form name="value", name!="value", name=~"re" or name!~"re"'
BAD_QUOTES = (
    'its quoted value is not a valid double-quoted string (an inner " or \\ needs a backslash)'
)
BARE = "an unquoted value may not contain spaces, quotes or braces; quote it"

INVALID = [
    pytest.param("alertname", NOT_OF_THE_FORM, id="no operator"),
    pytest.param('="x"', NOT_OF_THE_FORM, id="no name"),
    pytest.param('1a="x"', NOT_OF_THE_FORM, id="name starting with a digit"),
    pytest.param('a-b="x"', NOT_OF_THE_FORM, id="name with a dash"),
    pytest.param('a=="x"', BARE, id="doubled operator"),
    pytest.param('a="x', BAD_QUOTES, id="unclosed quote"),
    pytest.param('a="x" "y"', BAD_QUOTES, id="two quoted values"),
    pytest.param('a="x"y', BAD_QUOTES, id="text after the quote"),
    pytest.param('a="\\q"', BAD_QUOTES, id="unknown escape"),
    pytest.param("a=x y", BARE, id="unquoted space"),
    pytest.param("a={x}", BARE, id="unquoted braces"),
    pytest.param(
        'a=~"x("',
        "its regular expression does not compile (missing ), unterminated subpattern at"
        " position 1)",
        id="regex that does not compile",
    ),
    pytest.param(
        'a=~"a)|(b"',
        "its regular expression does not compile (unbalanced parenthesis at position 1)",
        id="regex that only compiles when wrapped",
    ),
    pytest.param(
        'a!~"*"',
        "its regular expression does not compile (nothing to repeat at position 0)",
        id="negative regex that does not compile",
    ),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_an_invalid_matcher_raises_value_error_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        parse_matcher(text)
