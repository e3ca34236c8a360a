"""Alertmanager matcher semantics: =, !=, =~, !~, RE2 regexes anchored as ``^(?:re)$``
(where Python's ``re`` would differ, RE2 and Alertmanager agree), a missing label read as
"", quoted and unquoted values with Alertmanager's three escapes, several matchers to an
item, and a reason for every matcher that does not parse. ``test_amtool_differential``
checks the same against the real ``amtool``."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.actions.registry import default_registry
from remediator.core.errors import RuleFileError
from remediator.core.regex import Regex
from remediator.ruleset.load import load_rules
from remediator.ruleset.matchers import Matcher, MatchType, parse_matcher, parse_matchers
from tests.support.rule_texts import POLICY
from tests.support.service import REPO

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
    pytest.param('dot=~"a\\.b"', {"dot": "axb"}, False, id="a lone backslash is itself"),
    pytest.param("a=x y", {"a": "x y"}, True, id="unquoted value with a space"),
    pytest.param("a={x}", {"a": "{x}"}, True, id="braces in an unquoted value"),
    pytest.param('a="\\q"', {"a": "\\q"}, True, id="unknown escape is a backslash"),
    pytest.param('a="\\u00e9"', {"a": "\\u00e9"}, True, id="no unicode escapes"),
    pytest.param("a=\\", {"a": "\\"}, True, id="a last backslash is itself"),
    pytest.param('x:y="1"', {}, False, id="a name may hold a colon"),
    pytest.param('a=~"a)|(b"', {"a": "ax"}, True, id="wrapped: ^(?:a)|(b)$ starts with a"),
    pytest.param('a=~"a)|(b"', {"a": "xb"}, True, id="wrapped: ^(?:a)|(b)$ ends with b"),
    pytest.param('a=~"a)|(b"', {"a": "x"}, False, id="wrapped: ^(?:a)|(b)$ neither"),
    pytest.param('pod=~"[[:alpha:]]+"', {"pod": "api"}, True, id="POSIX class (issue 13)"),
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
    pytest.param('_a1="\\u00e9"', Matcher("_a1", MatchType.EQUAL, "\\u00e9"), id="no \\u"),
    pytest.param('_a1="é"', Matcher("_a1", MatchType.EQUAL, "é"), id="unicode"),
    pytest.param(':a:="x"', Matcher(":a:", MatchType.EQUAL, "x"), id="colons"),
    pytest.param('a="x\\\\"', Matcher("a", MatchType.EQUAL, "x\\"), id="escaped backslash"),
    pytest.param('a=x\\"y', Matcher("a", MatchType.EQUAL, 'x"y'), id="unquoted escape"),
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
STRAY_QUOTE = (
    'its value holds a double quote that is neither its closing quote nor escaped (write \\")'
)
UNCLOSED = "its quoted value has no closing double quote"

INVALID = [
    pytest.param("alertname", NOT_OF_THE_FORM, id="no operator"),
    pytest.param('="x"', NOT_OF_THE_FORM, id="no name"),
    pytest.param('1a="x"', NOT_OF_THE_FORM, id="name starting with a digit"),
    pytest.param('a-b="x"', NOT_OF_THE_FORM, id="name with a dash"),
    pytest.param("a.b=x", NOT_OF_THE_FORM, id="name with a dot"),
    pytest.param('é="x"', NOT_OF_THE_FORM, id="name that is not ASCII"),
    pytest.param('\u00a0a="x"', NOT_OF_THE_FORM, id="no-break space before the name"),
    pytest.param('a="x"\u00a0', STRAY_QUOTE, id="no-break space after the quote"),
    pytest.param('a=="x"', STRAY_QUOTE, id="doubled operator"),
    pytest.param('a="x', UNCLOSED, id="unclosed quote"),
    pytest.param('a="x\\"', UNCLOSED, id="closing quote escaped"),
    pytest.param('a="x" "y"', STRAY_QUOTE, id="two quoted values"),
    pytest.param('a="x"y', STRAY_QUOTE, id="text after the quote"),
    pytest.param('a=x"y', STRAY_QUOTE, id="quote inside an unquoted value"),
    pytest.param(
        'a=~"x("',
        'its regular expression does not compile as RE2 (missing ) at "x(")',
        id="regex that does not compile",
    ),
    pytest.param(
        'a=~"a)"',
        'its regular expression does not compile as RE2 (unexpected ) at "a)")',
        id="regex that does not compile wrapped either",
    ),
    pytest.param(
        'a=~"\\\\Qa.b"',
        'its regular expression does not compile as RE2 (missing ) at "^(?:\\\\Qa.b)$")',
        id="regex that compiles only bare: \\Q quotes the wrapper's )",
    ),
    pytest.param(
        'a=~"(?<x>a)"',
        "it names a group (?<name>...), which Alertmanager's regex syntax writes (?P<name>...)",
        id="Go 1.22's named group",
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
    assert parse_matcher('a=~"x\ufffdy"').matches({"a": "x\ud800y"})


ITEMS = [
    # (one item of a rule's matchers, the matchers it holds)
    pytest.param('{a="b",c=~"d"}', ['a="b"', 'c=~"d"'], id="braces"),
    pytest.param('a="b",c="d"', ['a="b"', 'c="d"'], id="bare list"),
    pytest.param('{a="b", c="d", }', ['a="b"', 'c="d"'], id="trailing comma and spaces"),
    pytest.param('a="x,y",b="z"', ['a="x,y"', 'b="z"'], id="comma inside quotes"),
    pytest.param('a="x\\",y"', ['a="x\\",y"'], id="escaped quote keeps the comma inside"),
    pytest.param('{a="}"}', ['a="}"'], id="only the outer braces are dropped"),
    pytest.param("a={x}", ['a="{x"'], id="the item's last brace is dropped"),
    pytest.param("a=b\u00a0", ['a="b"'], id="unicode space after the last matcher"),
    pytest.param('a="x"\u00a0', ['a="x"'], id="unicode space after the last quote"),
    pytest.param("a=b\u00a0,c=d", ['a="b\u00a0"', 'c="d"'], id="kept before a comma"),
    pytest.param("{}", [], id="empty braces"),
    pytest.param("", [], id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), ITEMS)
def test_an_item_holds_the_matchers_alertmanager_reads_in_it(
    text: str, expected: list[str]
) -> None:
    assert [str(m) for m in parse_matchers(text)] == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('a="b",,c="d"', 'its matcher "" is not valid: ' + NOT_OF_THE_FORM),
        ("a=x,y", 'its matcher "y" is not valid: ' + NOT_OF_THE_FORM),
        (' {a="b"}', NOT_OF_THE_FORM),
        ('a="b",c=~"("', 'its matcher "c=~\\"(\\"" is not valid: its regular expression does'
         ' not compile as RE2 (missing ) at "(")'),
    ],
    ids=["empty matcher between commas", "a comma in an unquoted value", "space before {",
         "one bad regex among two"],
)  # fmt: skip
def test_an_invalid_item_names_the_matcher_that_does_not_parse(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(reason)}$"):
        parse_matchers(text)


OLD_KEY_RULES = """\
rules:
  - {name: cpu, match: ['alertname="HighCPUUsage"'], severity: SEV-3}
  - {name: memory, match: ['{alertname="HighMemoryUsage", pod=~".+"}'], severity: SEV-3}
"""
NEW_KEY_RULES = OLD_KEY_RULES.replace("match:", "matchers:")
LAST_RULES = "rules:\n  - {name: default, match: [], severity: SEV-3}\n"
OLD_KEY_WARNINGS = [
    '10-rules.yaml: 2 rules (cpu, memory) use "match", the old name of "matchers" (the key'
    ' of Alertmanager\'s routes); it loads the same, but rename it to "matchers".',
    '20-last.yaml: rule "default" uses "match", the old name of "matchers" (the key of'
    ' Alertmanager\'s routes); it loads the same, but rename it to "matchers".',
]


def rules_dir(path: Path, rules: str, last: str = LAST_RULES) -> Path:
    path.mkdir()
    (path / "00-policy.yaml").write_text(POLICY)
    (path / "10-rules.yaml").write_text(rules)
    (path / "20-last.yaml").write_text(last)
    return path


def test_match_the_old_key_loads_the_same_rules_with_one_warning_per_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="remediator.ruleset.load"):
        old = load_rules(rules_dir(tmp_path / "old", OLD_KEY_RULES), default_registry())
    assert [r.getMessage() for r in caplog.records] == OLD_KEY_WARNINGS
    caplog.clear()
    new_last = LAST_RULES.replace("match:", "matchers:")
    new = load_rules(rules_dir(tmp_path / "new", NEW_KEY_RULES, new_last), default_registry())
    assert caplog.records == []
    assert [(r.name, r.matchers, r.digest) for r in old.rules] == [
        (r.name, r.matchers, r.digest) for r in new.rules
    ]
    assert [str(m) for m in new.rules[1].matchers] == ['alertname="HighMemoryUsage"', 'pod=~".+"']


def test_remediator_check_shows_the_old_key_warning_and_still_passes(tmp_path: Path) -> None:
    directory = rules_dir(tmp_path / "r", OLD_KEY_RULES)
    result = subprocess.run(
        [sys.executable, "-m", "remediator", "check", "--rules", str(directory)],
        capture_output=True, text=True, timeout=30, check=False, cwd=REPO,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    warnings = [line for line in result.stdout.splitlines() if ": warning: " in line]
    assert [w.split(": warning: ", 1)[1] for w in warnings] == [
        f"{w.split(': ', 1)[1]}  [old-key]" for w in OLD_KEY_WARNINGS
    ]
    files = [w.split(": ", 1)[0] for w in OLD_KEY_WARNINGS]
    assert [w.split(":", 1)[0] for w in warnings] == [f"{directory}/{f}" for f in files]
    assert result.stdout.splitlines()[-1].startswith("ok: 3 rules")


def test_a_rule_with_both_keys_is_refused_with_a_sentence_naming_matchers(
    tmp_path: Path,
) -> None:
    both = "rules:\n  - {name: cpu, matchers: ['a=\"b\"'], match: ['a=\"c\"'], severity: SEV-3}\n"
    with pytest.raises(RuleFileError) as raised:
        load_rules(rules_dir(tmp_path / "r", both), default_registry())
    assert str(raised.value) == (
        '10-rules.yaml: rule "cpu": field "match" is not a known key (did you mean "matchers"?).'
    )
