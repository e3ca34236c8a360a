"""``remediator check``: its exact output for a corpus of rule directories (one per lint, one
per kind of load error, tests/fixtures/check/), the waiver comment, what the unreachable-rule
lint proves and what it leaves alone, the exit status (0 clean or warnings, 1 a lint failed,
2 the rules do not load), and the shipped rules passing with no finding."""

from __future__ import annotations

import random
from collections.abc import Collection
from pathlib import Path

import pytest

from remediator.actions.registry import default_registry
from remediator.cli.main import main
from remediator.ruleset.lint import LINTS, Source, _covers, lint
from remediator.ruleset.load import load_rules
from tests.support.service import REPO

CORPUS = Path(__file__).parent / "fixtures" / "check"
TAIL = "; list the tiers in the order they page, each due later than the one before."
UNRESOLVED = (
    "which none of the rule's matchers requires, so an alert without it leaves the target"
    " unresolved; match it"
)
REFUSED = "that is not in policy.namespaces (llm-research), so the action is always refused."
FIRST = "comes first and takes every alert it matches; put the narrower rule first."
OLD_KEY = (
    'rule "disk" uses "match", the old name of "matchers" (the key of Alertmanager\'s routes);'
    ' it loads the same, but rename it to "matchers".'
)

LINTED = {
    "unreachable-rule": (1, [
        'unreachable-rule/10-rules.yaml:5:5: error: rule "error-rate-above-5-percent" can never'
        f' match: rule "error-rate-above-1-percent" (10-rules.yaml:2) {FIRST}  [unreachable-rule]',
        'unreachable-rule/10-rules.yaml:11:5: error: rule "pod-not-ready" can never match: rule'
        f' "pod-failure" (10-rules.yaml:8) {FIRST}  [unreachable-rule]',
        'unreachable-rule/10-rules.yaml:17:5: error: rule "api-down" can never match: rule'
        f' "api-prefix" (10-rules.yaml:14) {FIRST}  [unreachable-rule]',
    ], "failed: 8 rules (0 with actions) in 2 files, rule-set hash {hash}; 3 errors"),
    "unguaranteed-label": (1, [
        'unguaranteed-label/10-rules.yaml:6:58: error: rule "high-cpu": field "target.name" takes'
        f' the label "deploymnt", {UNRESOLVED} (deploymnt=~".+") or correct the name.'
        "  [unguaranteed-label]",
        'unguaranteed-label/10-rules.yaml:11:51: error: rule "pod-crash": field "target.name"'
        f' takes the label "pod", {UNRESOLVED} (pod=~".+") or correct the name.'
        "  [unguaranteed-label]",
    ], "failed: 3 rules (2 with actions) in 2 files, rule-set hash {hash}; 2 errors"),
    "target-outside-namespaces": (1, [
        'target-outside-namespaces/10-rules.yaml:6:32: error: rule "coredns-latency": field'
        f' "target.namespace" is "kube-system"; {REFUSED}  [target-outside-namespaces]',
        'target-outside-namespaces/10-rules.yaml:11:25: error: rule "system-pod-crash": field'
        ' "target.namespace" is "{namespace}", which the rule\'s matchers make "kube-system";'
        f" {REFUSED}  [target-outside-namespaces]",
    ], "failed: 4 rules (3 with actions) in 2 files, rule-set hash {hash}; 2 errors"),
    "unbounded-action": (1, [
        'unbounded-action/10-rules.yaml:11:5: error: rule "pod-crash" runs recycle_pod with no'
        " cooldown and no rate limit: give it a cooldown_s above 0, a rate_limit or a"
        " target_rate_limit.  [unbounded-action]",
    ], "failed: 4 rules (3 with actions) in 2 files, rule-set hash {hash}; 1 error"),
    "escalation-order": (1, [
        'escalation-order/00-policy.yaml:10:10: error: escalation policy "sev1-ladder": field'
        f' "tiers[2].after_s" is 600, but tiers[1] is due at 1800{TAIL}  [escalation-order]',
        'escalation-order/00-policy.yaml:14:10: error: escalation policy "page": field'
        f' "tiers[1].after_s" is 0, but tiers[0] is due at 0{TAIL}  [escalation-order]',
    ], "failed: 1 rules (0 with actions) in 2 files, rule-set hash {hash}; 2 errors"),
    "missing-secret-file": (0, [
        'missing-secret-file/00-policy.yaml:9:29: warning: sink "oncall": field'
        ' "routing_key_file" names "/nonexistent/remediator/pagerduty-key", which does not exist'
        " here; serve does not start without it.  [missing-secret-file]",
    ], "ok: 1 rules (0 with actions) in 2 files, rule-set hash {hash}; 1 warning"),
    "old-key": (0, [
        f"old-key/10-rules.yaml:6:5: warning: {OLD_KEY}  [old-key]",
    ], "ok: 3 rules (0 with actions) in 2 files, rule-set hash {hash}; 1 warning"),
    "waived": (0, [], "ok: 5 rules (2 with actions) in 2 files, rule-set hash {hash}"),
    "clean": (0, [], "ok: 2 rules (1 with actions) in 2 files, rule-set hash {hash}"),
}  # fmt: skip

NOT_LOADED = {
    "kill-query-state": 'kill-query-state/10-rules.yaml:7:7: action "cancel-long-queries": field'
    ' "params.states" holds "actve", which is not a state kill_query acts on (active, idle in'
    " transaction, idle in transaction (aborted), fastpath function call).",
    "unknown-key": 'unknown-key/10-rules.yaml:8:5: rule "cpu": field "cooldwn_s" is not a known'
    ' key (did you mean "cooldown_s"?).',
    "scale-out-unbounded": 'scale-out-unbounded/10-rules.yaml:7:7: rule "cpu": field'
    ' "action.params.max_replicas" is required.',
    "not-yaml": "not-yaml/10-rules.yaml:5:1: is not valid YAML at line 5, column 1: did not find"
    " expected ',' or ']' (while parsing a flow sequence started on line 3).",
    "anchor": 'anchor/10-rules.yaml:2:5: uses the anchor "&first" on line 2; rule files may not'
    " use anchors, aliases or merge keys.",
    "duplicate-key": 'duplicate-key/10-rules.yaml:5:5: rule "default": field "severity" appears'
    " twice, on lines 4 and 5.",
}


def check(
    rules: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, cwd: Path
) -> tuple[int, list[str], str]:
    monkeypatch.chdir(cwd)
    status = main(["check", "--rules", rules])
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def checking(directory: str, failed: Collection[str] = ()) -> list[str]:
    names = sorted(p.name for p in (CORPUS / directory).glob("*.yaml"))
    return [f"Checking {directory}/{n}  {'FAILED' if n in failed else 'SUCCESS'}" for n in names]


def rule_set_hash(directory: Path) -> str:
    return load_rules(directory, default_registry()).hash


@pytest.mark.parametrize("case", list(LINTED))
def test_check_prints_each_file_each_finding_at_its_line_and_the_summary(
    case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    expected_status, findings, summary = LINTED[case]
    failed = {line.split(":")[0].split("/")[1] for line in findings if ": error: " in line}
    status, out, err = check(case, capsys, monkeypatch, CORPUS)
    assert (status, err) == (expected_status, "")
    assert out == [
        *checking(case, failed),
        *findings,
        summary.format(hash=rule_set_hash(CORPUS / case)),
    ]


@pytest.mark.parametrize("case", list(NOT_LOADED))
def test_a_rule_set_that_does_not_load_is_one_sentence_at_its_line_and_exit_2(
    case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert check(case, capsys, monkeypatch, CORPUS) == (2, [], f"remediator: {NOT_LOADED[case]}\n")


def test_the_corpus_has_a_directory_for_every_lint() -> None:
    named = {
        line.rsplit("[", 1)[1].rstrip("]") for _, lines, _ in LINTED.values() for line in lines
    }
    assert named == set(LINTS)
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted([*LINTED, *NOT_LOADED])


def test_the_same_rules_without_their_waivers_fail_each_lint_the_comments_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in (CORPUS / "waived").glob("*.yaml"):
        text = path.read_text()
        assert text.count("remediator: allow") == (3 if path.name == "10-rules.yaml" else 0)
        (bare / path.name).write_text(text.replace("remediator: allow", "remediator: allows"))
    status, out, _ = check("bare", capsys, monkeypatch, tmp_path)
    assert status == 1
    assert [line.rsplit("  ", 1)[1] for line in out if ": error: " in line] == [
        "[unreachable-rule]", "[target-outside-namespaces]", "[unguaranteed-label]"
    ]  # fmt: skip


def test_a_waiver_names_the_lint_it_waives_and_no_other(tmp_path: Path) -> None:
    text = (CORPUS / "unreachable-rule" / "10-rules.yaml").read_text()
    directory = tmp_path / "r"
    directory.mkdir()
    (directory / "00-policy.yaml").write_bytes((CORPUS / "clean" / "00-policy.yaml").read_bytes())
    waived = text.replace(
        "  - name: pod-not-ready", "  - name: pod-not-ready  # remediator: allow unguaranteed-label"
    )
    (directory / "10-rules.yaml").write_text(waived)
    ruleset = load_rules(directory, default_registry())
    sources = {n: Source.read(n, (directory / n).read_bytes()) for n in ruleset.files}
    assert [f.line for f in lint(ruleset, sources)] == [5, 11, 17]


RULES = """\
policy: {{namespaces: [llm-research]}}
escalations: {{page: {{tiers: [{{after_s: 0, notify: [oncall]}}]}}}}
defaults: {{escalation: {{SEV-1: page, SEV-2: page, SEV-3: page}}}}
rules:
  - {{name: earlier, matchers: {earlier}, severity: SEV-3}}
  - {{name: later, matchers: {later}, severity: SEV-2}}
  - {{name: default, matchers: [], severity: SEV-3}}
"""
REACHABILITY = [
    pytest.param(['a="x"'], ['a="x"', 'b="y"'], True, id="an equal subset"),
    pytest.param(['{b="y", a="x"}'], ['a="x"', 'b="y"'], True, id="the same set, reordered"),
    pytest.param(['a="x"', 'b="y"'], ['a="x"'], False, id="a superset"),
    pytest.param(['a=~".*"'], ['a=~".+"'], True, id=".+ within .*"),
    pytest.param(['a!=""'], ['a=~".+"'], True, id=".+ is never empty"),
    pytest.param(['a=~".+"'], ['a!=""'], False, id="a value with a newline is not .+"),
    pytest.param(['a=~"x|y"'], ['a="y"'], True, id="an equality the regex takes"),
    pytest.param(['a=~"x|y"'], ['a=~"(y|x)"'], True, id="the same alternatives"),
    pytest.param(['a=~"x|y"'], ['a=~"x|z"'], False, id="an alternative the regex refuses"),
    pytest.param(['a!="z"'], ['a="x"'], True, id="an equality the inequality takes"),
    pytest.param(['a!="x"'], ['a="x"'], False, id="an equality the inequality refuses"),
    pytest.param(['a=~"x.*"'], ['a=~"xy.*"'], False, id="two open regexes: unsure, so silent"),
    pytest.param(['a=~".*"'], ['b="x"'], False, id="another label: a may hold a newline"),
]


@pytest.mark.parametrize(("earlier", "later", "unreachable"), REACHABILITY)
def test_unreachable_rule_is_claimed_only_when_proven(
    tmp_path: Path, earlier: list[str], later: list[str], unreachable: bool
) -> None:
    (tmp_path / "10-rules.yaml").write_text(RULES.format(earlier=earlier, later=later))
    ruleset = load_rules(tmp_path, default_registry())
    sources = {
        "10-rules.yaml": Source.read("10-rules.yaml", (tmp_path / "10-rules.yaml").read_bytes())
    }
    found = [(f.lint, f.line) for f in lint(ruleset, sources)]
    assert found == ([("unreachable-rule", 6)] if unreachable else [])


def test_a_secret_file_that_exists_is_no_warning(tmp_path: Path) -> None:
    key = tmp_path / "pagerduty-key"
    key.write_text("routing-key\n")
    text = (CORPUS / "missing-secret-file" / "00-policy.yaml").read_text()
    (tmp_path / "00-policy.yaml").write_text(
        text.replace("/nonexistent/remediator/pagerduty-key", str(key))
    )
    (tmp_path / "10-rules.yaml").write_bytes(
        (CORPUS / "missing-secret-file" / "10-rules.yaml").read_bytes()
    )
    ruleset = load_rules(tmp_path, default_registry())
    sources = {n: Source.read(n, (tmp_path / n).read_bytes()) for n in ruleset.files}
    assert lint(ruleset, sources) == []


def test_the_shipped_rules_pass_with_no_finding(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = check("rules", capsys, monkeypatch, REPO)
    assert (status, err) == (0, "")
    assert out == [
        "Checking rules/00-policy.yaml  SUCCESS",
        "Checking rules/10-platform.yaml  SUCCESS",
        f"ok: 15 rules (9 with actions) in 2 files, rule-set hash {rule_set_hash(REPO / 'rules')}",
    ]


@pytest.mark.parametrize(
    ("earlier_shadow", "later_shadow", "unreachable"),
    [(True, False, False), (False, True, True), (True, True, True), (False, False, True)],
    ids=["a shadow takes nothing from a live rule", "a live rule hides a later shadow",
         "a shadow hides a later shadow", "both live"],
)  # fmt: skip
def test_a_shadow_rule_covers_only_the_shadow_rules_after_it(
    tmp_path: Path, earlier_shadow: bool, later_shadow: bool, unreachable: bool
) -> None:
    text = RULES.format(earlier=['a="x"'], later=['a="x"'])
    text = text.replace("name: earlier,", f"name: earlier, shadow: {str(earlier_shadow).lower()},")
    text = text.replace("name: later,", f"name: later, shadow: {str(later_shadow).lower()},")
    (tmp_path / "10-rules.yaml").write_text(text)
    ruleset = load_rules(tmp_path, default_registry())
    sources = {"10-rules.yaml": Source.read("10-rules.yaml", text.encode())}
    found = [f.lint for f in lint(ruleset, sources)]
    assert found == (["unreachable-rule"] if unreachable else [])


def _random_matcher(rng: random.Random) -> str:
    label = rng.choice(["alertname", "team", "env"])
    value = rng.choice(["x", "y", "xy", ""])
    return rng.choice([
        f'{label}="{value}"', f'{label}!="{value}"', f'{label}=~"{value}.*"',
        f'{label}=~"x|y"', f'{label}=~"(y|x)"', f'{label}=~".+"', f'{label}=~".*"',
        f'{label}!~"{value}"',
    ])  # fmt: skip


def test_the_unreachable_lint_finds_what_comparing_every_pair_of_rules_finds(
    tmp_path: Path,
) -> None:
    """Its candidates come from indexes (equalities, RE2 sets of regexes): on 400 random
    rules it names the same first covering rule as testing every earlier rule."""
    rng = random.Random(20261202)
    lines = ["rules:"]
    for i in range(400):
        matchers = ", ".join(f"'{_random_matcher(rng)}'" for _ in range(rng.randint(1, 2)))
        lines.append(f"  - {{name: r{i}, matchers: [{matchers}], severity: SEV-3}}")
    lines.append("  - {name: default, matchers: [], severity: SEV-3}")
    text = RULES.split("rules:")[0].format() + "\n".join(lines) + "\n"
    (tmp_path / "10-rules.yaml").write_text(text)
    ruleset = load_rules(tmp_path, default_registry())
    sources = {"10-rules.yaml": Source.read("10-rules.yaml", text.encode())}
    found = {f.sentence.split('"')[1]: f.sentence.split('"')[3] for f in lint(ruleset, sources)
             if f.lint == "unreachable-rule"}  # fmt: skip
    expected = {}
    for later in ruleset.rules:
        earlier = [r for r in ruleset.rules[: later.position] if _covers(r, later)]
        if earlier:
            expected[later.name] = earlier[0].name
    assert len(expected) > 50  # the comparison means something only with many findings
    assert found == expected
