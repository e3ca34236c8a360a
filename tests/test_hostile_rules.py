"""Hostile rule directories: each stops ``remediator check`` (and, for a representative
subset, ``remediator serve``) within 5 s (on a loaded machine, three times what a plain
directory's check took in the same run), with exit status 2 and exactly one line on
stderr, ``remediator: `` and a sentence naming the file. None hangs, none ends in a
traceback, none expands an alias or reads a file it should not.

Both commands run as real child processes, as an SRE's CI job and the service do: all of
them once per module, two at a time (one per core of the CI machine), each killed if it
runs a minute (a hang); each case's test then reads its outcome.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.rule_texts import POLICY
from tests.support.service import REPO

# One worker runs every case (``outcomes`` is per module, and each worker that ran one of
# its tests would run all the children again): the Makefile's ``--dist loadgroup``.
pytestmark = pytest.mark.xdist_group("hostile-rules")

DEADLINE_S = 5.0
"""On a quiet machine; a loaded one (the suite runs on several workers) gets up to
``SLOWER_THAN_PLAIN`` times what ``check`` of a plain rule directory took in the same run."""
SLOWER_THAN_PLAIN = 3.0
KILL_S = 60.0
"""A child still running then is killed: it hangs."""

CATCH_ALL = "  - {name: default, matchers: [], severity: SEV-3}\n"
KNOWN_KEYS = (
    "name, description, matchers, severity, action, target, cooldown_s, rate_limit,"
    " target_rate_limit, verify_within_s, escalation, page, shadow, on_silence_check_error,"
    " mute_time_intervals, active_time_intervals, approval"
)
NO_ANCHORS = "rule files may not use anchors, aliases or merge keys"
NAME_WORDS = (
    "must be 1 to 63 lowercase letters, digits, '.', '_' or '-', starting and ending with a"
    " letter or digit"
)


def rule(body: str) -> str:
    """A rule file: one rule (YAML lines at the list item's indentation), then a catch-all."""
    lines = body.strip("\n").splitlines()
    item = "  - " + lines[0] + "\n" + "".join(f"    {line}\n" for line in lines[1:])
    return "rules:\n" + item + CATCH_ALL


def cpu(extra: str = "") -> str:
    return rule("name: cpu\nmatchers: ['alertname=\"HighCPUUsage\"']\nseverity: SEV-3\n" + extra)


def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\nrules: *i\n"


Writer = Callable[[Path], None]


def text(name: str, content: str | bytes) -> Writer:
    def write(directory: Path) -> None:
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return write


def symlink(name: str, target: str) -> Writer:
    return lambda directory: (directory / name).symlink_to(target)


def fifo(name: str) -> Writer:
    return lambda directory: os.mkfifo(directory / name)


def mkdir(name: str) -> Writer:
    return lambda directory: (directory / name).mkdir()


def fifty_megabytes(name: str) -> Writer:
    def write(directory: Path) -> None:
        line = b"# " + b"x" * 1021 + b"\n"
        with (directory / name).open("wb") as file:
            for _ in range(50 * 1024):
                file.write(line)

    return write


@dataclass(frozen=True)
class Case:
    writers: tuple[Writer, ...]
    message: str
    """stderr without ``remediator: `` and the newline."""
    serve: bool = False
    """Also run ``serve`` on it (a representative subset: serve costs a second each)."""


def case(*writers: Writer, message: str, serve: bool = False) -> Case:
    return Case(writers, message, serve)


def rules_file(content: str | bytes) -> Writer:
    return text("10-rules.yaml", content)


CASES = {
    "billion laughs": case(
        rules_file(billion_laughs()),
        message=f'10-rules.yaml uses the anchor "&a" on line 1; {NO_ANCHORS}.',
        serve=True,
    ),
    "self-referencing alias": case(
        rules_file("rules: &loop [*loop]\n"),
        message=f'10-rules.yaml uses the anchor "&loop" on line 1; {NO_ANCHORS}.',
    ),
    "alias without an anchor": case(
        rules_file("rules: [*nowhere]\n"),
        message=f'10-rules.yaml uses the alias "*nowhere" on line 1; {NO_ANCHORS}.',
    ),
    "merge key": case(
        rules_file("rules:\n  - <<: {name: cpu, match: [], severity: SEV-3}\n"),
        message=f"10-rules.yaml uses a merge key (<<) on line 2; {NO_ANCHORS}.",
    ),
    "100 nested lists": case(
        rules_file("rules: " + "[" * 100 + "]" * 100 + "\n"),
        message="10-rules.yaml nests lists and mappings more than 64 deep at line 1, column 71.",
    ),
    "10 000 nested lists (libyaml stops at 1 000)": case(
        rules_file("rules: " + "[" * 10_000 + "]" * 10_000 + "\n"),
        message="10-rules.yaml is not valid YAML at line 1, column 1007: exceeded maximum"
        " nesting depth (while increasing flow level started on line 1).",
        serve=True,
    ),
    "10 000 nested flow mappings": case(
        rules_file("rules: [" + "{a: " * 10_000 + "1" + "}" * 10_000 + "]\n"),
        message="10-rules.yaml nests lists and mappings more than 64 deep at line 1, column 257.",
    ),
    "1 000 nested block mappings": case(
        rules_file("".join(" " * i + "a:\n" for i in range(1_000)) + " " * 1_000 + "b: 1\n"),
        message="10-rules.yaml nests lists and mappings more than 64 deep at line 65, column 65.",
    ),
    "a 50 MB file": case(
        fifty_megabytes("10-rules.yaml"),
        message="10-rules.yaml is 52428800 bytes; a rule file may be at most 1048576 bytes"
        " (1 MiB).",
        serve=True,
    ),
    "a dangling symbolic link": case(
        symlink("10-rules.yaml", "gone.yaml"),
        message='10-rules.yaml is a symbolic link to "gone.yaml", which does not exist.',
        serve=True,
    ),
    "a symbolic link loop": case(
        symlink("10-a.yaml", "10-b.yaml"),
        symlink("10-b.yaml", "10-a.yaml"),
        message="10-a.yaml is a symbolic link in a loop: it never reaches a file.",
    ),
    "a directory named x.yaml": case(
        mkdir("x.yaml"),
        message="x.yaml is a directory, not a rule file.",
    ),
    "a symbolic link to a directory": case(
        symlink("10-rules.yaml", "/tmp"),
        message="10-rules.yaml is a directory, not a rule file.",
    ),
    "a named pipe named x.yaml": case(
        fifo("x.yaml"),
        message="x.yaml is a named pipe, not a rule file.",
        serve=True,
    ),
    "a symbolic link to a device": case(
        symlink("10-rules.yaml", "/dev/zero"),
        message="10-rules.yaml is a character device, not a rule file.",
    ),
    "bytes that are not UTF-8": case(
        rules_file(b"rules:\n  - name: caf\xe9\n"),
        message="10-rules.yaml is not UTF-8: byte 0xe9 on line 2 is not valid.",
        serve=True,
    ),
    "a UTF-16 file with its BOM": case(
        rules_file(("rules:\n" + CATCH_ALL).encode("utf-16")),
        message="10-rules.yaml is not UTF-8: byte 0xff on line 1 is not valid.",
    ),
    "a BOM past the first character": case(
        rules_file("rules:\n\ufeff  - {name: default, match: [], severity: SEV-3}\n"),
        message="10-rules.yaml holds a byte order mark (U+FEFF) on line 2; only a file's"
        " first character may be one.",
    ),
    "a NUL byte": case(
        rules_file(b"rules:\n  - name: cpu\x00\n"),
        message="10-rules.yaml holds the character U+0000 on line 2, which YAML does not allow.",
    ),
    "an escape control character": case(
        rules_file("rules:\n  - name: \x1b[2Jcpu\n"),
        message="10-rules.yaml holds the character U+001B on line 2, which YAML does not allow.",
    ),
    "a tab as indentation": case(
        rules_file("rules:\n\t- name: cpu\n"),
        message="10-rules.yaml is not valid YAML at line 2, column 1: found character that"
        " cannot start any token (while scanning for the next token started on line 2).",
    ),
    "a Python object tag": case(
        rules_file("rules: !!python/object/apply:os.system ['echo pwned']\n"),
        message='10-rules.yaml uses the tag "!!python/object/apply:os.system" on line 1;'
        " rule files take no tags.",
    ),
    "two documents": case(
        rules_file("rules: []\n---\nrules: []\n"),
        message="10-rules.yaml holds a second YAML document, from line 2.",
    ),
    "a list as a key": case(
        rules_file("? [a, b]\n: c\n"),
        message="10-rules.yaml uses a list as a mapping key on line 1.",
    ),
    "1e400": case(
        rules_file(cpu("cooldown_s: 1.0e+400\n")),
        message='10-rules.yaml: rule "cpu": field "cooldown_s" must be a finite number, not inf.',
    ),
    "1e400 without a dot (text to YAML 1.1)": case(
        rules_file(cpu("cooldown_s: 1e400\n")),
        message='10-rules.yaml: rule "cpu": field "cooldown_s" must be a finite number,'
        ' not "1e400".',
    ),
    "10**5000 as an int literal": case(
        rules_file(cpu("rate_limit: {max_actions: 1" + "0" * 5000 + ", window_s: 60}\n")),
        message="10-rules.yaml holds a number of 5001 characters on line 5; a number in a"
        " rule file has at most 40.",
    ),
    "a sexagesimal literal of 200 000 parts": case(
        rules_file(cpu("cooldown_s: 1" + ":0" * 200_000 + "\n")),
        message="10-rules.yaml holds a number of 400001 characters on line 5; a number in a"
        " rule file has at most 40.",
    ),
    ".inf": case(
        text(
            "00-policy.yaml",
            POLICY.replace("after_s: 0, notify: [oncall]", "after_s: .inf, notify: [oncall]"),
        ),
        rules_file("rules:\n" + CATCH_ALL),
        message='00-policy.yaml: escalation policy "page": field "tiers[0].after_s" must be'
        " a finite number, not inf.",
    ),
    ".nan": case(
        rules_file(cpu("verify_within_s: .nan\n")),
        message='10-rules.yaml: rule "cpu": field "verify_within_s" must be a finite number,'
        " not nan.",
    ),
    "negative zero where more than zero is needed": case(
        rules_file(cpu("verify_within_s: -0.0\n")),
        message='10-rules.yaml: rule "cpu": field "verify_within_s" must be greater than 0,'
        " not -0.0.",
    ),
    "after_s: 1.0e+12": case(
        text(
            "00-policy.yaml",
            POLICY.replace("after_s: 0, notify: [oncall]", "after_s: 1.0e+12, notify: [oncall]"),
        ),
        rules_file("rules:\n" + CATCH_ALL),
        message='00-policy.yaml: escalation policy "page": field "tiers[0].after_s" must be'
        " at most 2592000, not 1000000000000.0.",
        serve=True,
    ),
    "a 100 000-character key": case(
        rules_file(cpu("? " + "x" * 100_000 + "\n: 1\n")),  # a simple key has 1024 at most
        message='10-rules.yaml: rule "cpu": field "' + "x" * 63 + '…" is not a known key'
        f" (known: {KNOWN_KEYS}).",
    ),
    "a newline in a rule name": case(
        rules_file(rule('name: "cpu\\nrm -rf /"\nmatch: []\nseverity: SEV-3')),
        message='10-rules.yaml: rule "cpu\\nrm -rf /": field "name" '
        f'{NAME_WORDS}, not "cpu\\nrm -rf /".',
    ),
    "a line separator in a rule name": case(
        rules_file(rule('name: "cpu\\u2028x"\nmatch: []\nseverity: SEV-3')),
        message=f'10-rules.yaml: rule "cpu\\u2028x": field "name" {NAME_WORDS}, not "cpu\\u2028x".',
    ),
    "a right-to-left override in a rule name": case(
        rules_file(rule('name: "cpu\\u202egnp.exe"\nmatch: []\nseverity: SEV-3')),
        message='10-rules.yaml: rule "cpu\\u202egnp.exe": field "name" '
        f'{NAME_WORDS}, not "cpu\\u202egnp.exe".',
    ),
    "fullwidth letters in a rule name": case(
        rules_file(rule('name: "\uff43\uff50\uff55"\nmatch: []\nseverity: SEV-3')),
        message='10-rules.yaml: rule "\uff43\uff50\uff55": field "name" '
        f'{NAME_WORDS}, not "\uff43\uff50\uff55".',
    ),
    "a regex RE2 does not compile (backreference)": case(
        rules_file(rule("name: cpu\nmatch: ['victim=~\"(a+)\\\\1\"']\nseverity: SEV-3")),
        message='10-rules.yaml: rule "cpu": field "match[0]" holds victim=~"(a+)\\\\1",'
        " which is not a valid matcher: it uses a backreference such as \\1, which RE2"
        " (Alertmanager's regex syntax) does not have.",
        serve=True,
    ),
    "a matcher with a newline in its value": case(
        rules_file(rule('name: cpu\nmatch: ["victim=~\\"(a\\n\\""]\nseverity: SEV-3')),
        message='10-rules.yaml: rule "cpu": field "match[0]" holds victim=~"(a\\n", which'
        " is not a valid matcher: its regular expression does not compile as RE2 (missing )"
        ' at "(a\\n").',
    ),
}


@dataclass(frozen=True)
class Finished:
    returncode: int | None
    """None: still running at the deadline, then killed."""
    stdout: str
    stderr: str
    elapsed_s: float


async def run(*args: str) -> Finished:
    """``python -m remediator ARGS``, killed at ``KILL_S``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remediator", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), KILL_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return Finished(None, "", "", time.monotonic() - started)
    elapsed = time.monotonic() - started
    return Finished(proc.returncode, out.decode(), err.decode(errors="replace"), elapsed)


def rules_dir(directory: Path, hostile: Case) -> Path:
    directory.mkdir(parents=True)
    (directory / "00-policy.yaml").write_text(POLICY)
    for write in hostile.writers:
        write(directory)
    return directory


def serve_args(workdir: Path, directory: Path) -> tuple[str, ...]:
    token = workdir / "token"
    token.write_text("a-token-for-the-test\n")
    return (
        "serve", "--listen", f"127.0.0.1:{free_port()}", "--rules", str(directory),
        "--state", f"sqlite:///{workdir / 'state.db'}", "--token-file", str(token),
    )  # fmt: skip


@dataclass(frozen=True)
class Outcomes:
    workdir: Path
    finished: dict[tuple[str, str], Finished]
    """By (case, command)."""
    plain_s: float
    """The slowest ``check`` of a plain rule directory, run among the cases."""

    @property
    def deadline_s(self) -> float:
        return max(DEADLINE_S, SLOWER_THAN_PLAIN * self.plain_s)


async def run_all(workdir: Path, at_once: int = 2) -> Outcomes:
    """Every case's ``check`` (and ``serve``), ``at_once`` children at a time."""
    slots = asyncio.Semaphore(at_once)
    commands: dict[tuple[str, str], tuple[str, ...]] = {}
    for number, (name, hostile) in enumerate(CASES.items()):
        home = workdir / f"case-{number}"
        directory = rules_dir(home / "rules", hostile)
        commands[name, "check"] = ("check", "--rules", str(directory))
        if hostile.serve:
            commands[name, "serve"] = serve_args(home, directory)

    async def one(args: tuple[str, ...]) -> Finished:
        async with slots:
            return await run(*args)

    plain = rules_dir(workdir / "plain" / "rules", case(rules_file(cpu()), message=""))
    baselines = [("check", "--rules", str(plain))] * 3  # first, among and after the cases
    runs = [baselines[0], *commands.values(), *baselines[1:]]
    finished = await asyncio.gather(*(one(args) for args in runs))
    plain_s = max(f.elapsed_s for f in (finished[0], *finished[-2:]))
    return Outcomes(workdir, dict(zip(commands, finished[1:-2], strict=True)), plain_s)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return asyncio.run(run_all(tmp_path_factory.mktemp("hostile")))


def test_the_corpus_covers_what_the_issue_names() -> None:
    assert len(CASES) >= 30
    assert sum(c.serve for c in CASES.values()) >= 8


@pytest.mark.timeout(300)  # the first to run waits for the module's children (``outcomes``)
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("command", ["check", "serve"])
def test_a_hostile_rule_directory_stops_the_command_with_one_line_within_5_s(
    outcomes: Outcomes, name: str, command: str
) -> None:
    if (name, command) not in outcomes.finished:
        return  # serve runs on the representative subset only; check on every case
    finished = outcomes.finished[name, command]
    assert finished.returncode is not None, f"still running after {KILL_S} s"
    assert (finished.returncode, finished.stdout) == (2, ""), finished.stderr
    said = f"remediator: {CASES[name].message}\n"
    if command == "check" and finished.stderr != said:
        assert placed(CASES[name].message).fullmatch(finished.stderr), finished.stderr
    else:
        assert finished.stderr == said
    assert finished.elapsed_s < outcomes.deadline_s, (finished.elapsed_s, outcomes.plain_s)


def placed(message: str) -> re.Pattern[str]:
    """``check``'s form of serve's sentence: the file's path, and the line and column of
    what the sentence names, before the rest of it (a file-level error has no place)."""
    found = re.fullmatch(r"([^ :]+)(?:: | )(.*)", message, re.S)
    assert found is not None, message
    file, rest = found.groups()
    return re.compile(rf"remediator: \S*/{re.escape(file)}:\d+:\d+: {re.escape(rest)}\n", re.S)


def test_serve_stops_before_it_opens_its_state(outcomes: Outcomes) -> None:
    served = [name for name, command in outcomes.finished if command == "serve"]
    assert len(served) >= 8
    assert not list(outcomes.workdir.glob("case-*/state.db*"))


async def test_a_utf8_bom_and_negative_zero_where_zero_is_allowed_load(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "rules"
    directory.mkdir()
    (directory / "00-policy.yaml").write_text("\ufeff" + POLICY, encoding="utf-8")
    (directory / "10-rules.yaml").write_text(cpu("cooldown_s: -0.0\n"))
    finished = await run("check", "--rules", str(directory))
    assert (finished.returncode, finished.stderr) == (0, "")
    assert finished.stdout.splitlines()[-1].startswith("ok: 2 rules (0 with actions) in 2 files,")
