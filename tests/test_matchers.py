"""Alertmanager matcher semantics: =, !=, =~, !~, anchored RE2 regexes (where Python's
``re`` would differ, RE2 and Alertmanager agree), a missing label read as "", quoted and
unquoted values, and a reason for every matcher that does not parse."""

from __future__ import annotations

import re

import pytest

from remediator.ruleset.matchers import Matcher, MatchType, Regex, parse_matcher

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
    assert isinstance(matcher.pattern, Regex)
    assert matcher.pattern.text == value


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
        'its regular expression does not compile as RE2 (missing ) at "x(")',
        id="regex that does not compile",
    ),
    pytest.param(
        'a=~"a)|(b"',
        'its regular expression does not compile as RE2 (unexpected ) at "a)|(b")',
        id="regex that only compiles when wrapped",
    ),
    pytest.param(
        'a!~"*"',
        "its regular expression does not compile as RE2 (no argument for repetition operator"
        ' at "*")',
        id="negative regex that does not compile",
    ),
    pytest.param(
        'a=~"a{1001}"',
        'its regular expression does not compile as RE2 (invalid repetition size at "{1001}")',
        id="repetition over RE2's limit of 1000",
    ),
    pytest.param(
        'a=~"(a)\\\\1"',
        "it uses a backreference such as \\1, which RE2 (Alertmanager's regex syntax) does not"
        " have",
        id="backreference",
    ),
    pytest.param(
        'a=~"(?P<x>a)(?P=x)"',
        "it uses a named backreference (?P=name), which RE2 (Alertmanager's regex syntax) does"
        " not have",
        id="named backreference",
    ),
    pytest.param(
        'a=~"api(?!-canary)"',
        "it uses a lookahead or lookbehind, which RE2 (Alertmanager's regex syntax) does not have",
        id="negative lookahead",
    ),
    pytest.param(
        'a=~"(?<=db-)primary"',
        "it uses a lookahead or lookbehind, which RE2 (Alertmanager's regex syntax) does not have",
        id="lookbehind",
    ),
    pytest.param(
        'a=~"(?>a+)b"',
        "it uses an atomic group (?>...), which RE2 (Alertmanager's regex syntax) does not have",
        id="atomic group",
    ),
    pytest.param(
        'a=~"a++"',
        "it uses a possessive quantifier such as a++, which RE2 (Alertmanager's regex syntax)"
        " does not have",
        id="possessive quantifier",
    ),
    pytest.param(
        'a=~"(?(1)a|b)"',
        "it uses a conditional (?(1)...), which RE2 (Alertmanager's regex syntax) does not have",
        id="conditional",
    ),
    pytest.param(
        'a=~"api\\\\Z"',
        "it uses \\Z (write $ or \\z), which RE2 (Alertmanager's regex syntax) does not have",
        id="Python's end of string",
    ),
    pytest.param(
        'a=~"\\\\C+"',
        "it uses \\C (any byte), which Alertmanager's regex syntax does not have",
        id="RE2's any byte, which Go refuses",
    ),
]


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_an_invalid_matcher_raises_value_error_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        parse_matcher(text)


# Where Python's re and RE2 disagree, Alertmanager (Go's regexp, RE2 syntax) decides. Each
# row is (matcher, value, matches in Alertmanager); "re" says what Python's re would do.
RE2_NOT_PYTHON = [
    pytest.param('a=~"\\\\d+"', "\u0663", False, id="\\d is ASCII (re: Arabic-Indic digit)"),
    pytest.param('a=~"\\\\w+"', "caf\u00e9", False, id="\\w is ASCII (re: accented letter)"),
    pytest.param('a=~"a\\\\sb"', "a\u00a0b", False, id="\\s is ASCII (re: no-break space)"),
    pytest.param('a=~"a\\\\sb"', "a\\vb", False, id="\\s has no vertical tab (re: has)"),
    pytest.param('a=~"[[:digit:]]+"', "123", True, id="POSIX class (re: a set, warned)"),
    pytest.param('a=~"\\\\pL+"', "\u00e9t\u00e9", True, id="Unicode class (re: error)"),
    pytest.param('a=~"\\\\p{Greek}+"', "\u03b1\u03b2", True, id="Unicode script (re: error)"),
    pytest.param('a=~"a{,3}"', "a{,3}", True, id="{,n} is literal (re: 0 to 3 a's)"),
    pytest.param('a=~"a{,3}"', "aa", False, id="{,n} is not a count (re: matches)"),
    pytest.param('a=~"api\\\\z"', "api", True, id="\\z ends the text (re 3.11: error)"),
    pytest.param('a=~"(?U)a+"', "aaa", True, id="ungreedy flag (re: error)"),
    pytest.param('a=~"foo$"', "foo\n", False, id="$ is the end (re.match: before the newline)"),
    pytest.param('a=~"foo$\\\\n"', "foo\n", False, id="nothing follows $ (re: matches)"),
    pytest.param('a=~"(?m)foo$"', "foo\nbar", False, id="(?m) still matches the whole value"),
    pytest.param('a=~"."', "\n", False, id="dot is not a newline, as in re"),
    pytest.param('a=~"(?s)."', "\n", True, id="(?s) dot is a newline, as in re"),
    pytest.param('a=~"(?i)straße"', "STRASSE", False, id="no full case folding, as in re"),
]


@pytest.mark.parametrize(("text", "value", "expected"), RE2_NOT_PYTHON)
def test_a_regex_means_what_it_means_in_alertmanager_not_in_python(
    text: str, value: str, expected: bool
) -> None:
    assert parse_matcher(text).matches({"a": value}) is expected


def test_a_label_value_with_a_lone_surrogate_reads_as_go_reads_it() -> None:
    # json.loads keeps "\ud800" as a lone surrogate, which UTF-8 cannot hold; Go's JSON
    # decoder reads it as U+FFFD, so Alertmanager's regex sees U+FFFD.
    assert parse_matcher('a=~"x.y"').matches({"a": "x\ud800y"})
    assert parse_matcher('a=~"x\\ufffdy"').matches({"a": "x\ud800y"})
