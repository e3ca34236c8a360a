"""The Dockerfile: hadolint passes it with no ignores (and fails a known-bad variant); its
instructions keep the promises the chart relies on (two stages on one base pinned by
digest, numeric non-root user, exec-form ENTRYPOINT/CMD on 0.0.0.0, OCI labels, only the
virtualenv and the rules in the final stage, state and temp on volumes); and its build
steps work the way the image runs them.

No base image can be pulled here, so the image itself is not built. Instead its steps are
replayed on this machine: the wheel is built from exactly what the builder stage copies,
installed with its dependencies into a clean virtualenv without pip (the builder's pip
installs into it, as ``pip --python`` does in the image), and the image's own CMD is
started from that virtualenv as UID/GID 10001 (when the tests run as root; otherwise as the
non-root user running them), with only the image's environment, a working directory and
``HOME`` it cannot write, and the image's paths under a private root.

That root is a fresh ``tempfile`` directory, removed afterwards, and not ``tmp_path``:
pytest keeps ``tmp_path`` under a directory only its owner may enter, so UID 10001 could
not reach the virtualenv there. For the same reason the virtualenv's interpreter is the
first Python ≥ 3.11 that UID 10001 can run (this interpreter's base, or the system's).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from remediator.config import Settings
from tests.support.payloads import webhook_payload
from tests.support.ports import free_port
from tests.support.process import until_ready

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
HADOLINT = Path(sys.executable).parent / "hadolint"

SERVICE_UID = SERVICE_GID = 10001
VENV = "/opt/remediator"
STATE_DIR = "/var/lib/remediator"
RULES_DIR = "/etc/remediator/rules"
TOKEN_PATH = "/etc/remediator/webhook/token"
TOKEN = "docker-test-token-0123456789"
PINNED = re.compile(r"^[\w.\-/]+:[\w.\-]+@sha256:[0-9a-f]{64}$")
OCI_LABELS = ("title", "description", "licenses", "source", "version")
#: How long serve may take to drain and exit after SIGTERM: its configured grace.
GRACE_S = float(Settings.model_fields["shutdown_grace_s"].default)


# The Dockerfile, read the way Docker reads it.


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The instructions, with ``\\`` continuations joined and comment lines dropped (Docker
    drops them inside a continuation too)."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, args = " ".join(pending).partition(" ")
            found.append(Instruction(start, keyword.upper(), args.strip()))
            pending = []
    assert not pending, "the Dockerfile ends inside a continuation"
    return found


def stages(text: str) -> list[list[Instruction]]:
    """The build stages, each from its FROM (ARGs before the first FROM are dropped)."""
    split: list[list[Instruction]] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            split.append([])
        if split:
            split[-1].append(ins)
    return split


def of(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [ins for ins in stage if ins.keyword == keyword]


def key_values(args: str) -> dict[str, str]:
    """``ENV``/``LABEL``/``ARG`` pairs: ``k=v`` words, quotes as the shell reads them."""
    pairs: dict[str, str] = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        assert sep, f"{word!r} is not KEY=VALUE (the legacy 'KEY VALUE' form is not used)"
        pairs[key] = value
    return pairs


def copies(stage: list[Instruction]) -> list[tuple[str | None, list[str], str]]:
    """Each COPY of the stage: its ``--from`` stage (None: the build context), sources,
    destination."""
    found: list[tuple[str | None, list[str], str]] = []
    for ins in of(stage, "COPY"):
        words = shlex.split(ins.args)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        source_stage = next((f.partition("=")[2] for f in flags if f.startswith("--from=")), None)
        found.append((source_stage, paths[:-1], paths[-1]))
    return found


TEXT = DOCKERFILE.read_text()
BUILDER, FINAL = stages(TEXT)[0], stages(TEXT)[-1]


def exec_form(keyword: str) -> list[str]:
    (ins,) = of(FINAL, keyword)
    value = json.loads(ins.args)  # exec form is a JSON array; shell form does not parse
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), ins.args
    return value


def final_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in of(FINAL, "ENV"):
        env.update(key_values(ins.args))
    return env


# hadolint


def hadolint(dockerfile: Path, config_dir: Path) -> subprocess.CompletedProcess[str]:
    """hadolint at its strictest: an empty configuration (no ignores, whatever
    .hadolint.yaml says), inline ``# hadolint ignore=`` pragmas disabled, every level down
    to style failing, and the OCI labels required."""
    config = config_dir / "hadolint.yaml"
    config.write_text("{}\n")
    required = [f"--require-label=org.opencontainers.image.{name}:text" for name in OCI_LABELS]
    return subprocess.run(
        [str(HADOLINT), "--config", str(config), "--disable-ignore-pragma",
         "--failure-threshold", "style", "--format", "json", *required, str(dockerfile)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_hadolint_passes_the_dockerfile_with_no_ignores(tmp_path: Path) -> None:
    result = hadolint(DOCKERFILE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        (lambda text: re.sub(r"^FROM \S+", "FROM python:latest", text, flags=re.M), "DL3007"),
        (lambda text: re.sub(r"^FROM \S+@sha256:\w+", "FROM python", text, flags=re.M), "DL3006"),
        (lambda text: text.replace("USER 10001:10001", "USER root"), "DL3002"),
        (lambda text: text.replace('ENTRYPOINT ["remediator"]', "ENTRYPOINT remediator"), "DL3025"),
        (lambda text: text.replace("org.opencontainers.image.licenses=", "x.licenses="), "DL3049"),
    ],
    ids=["latest-tag", "untagged-base", "root-user", "shell-form", "missing-oci-label"],
)
def test_hadolint_fails_a_known_bad_variant_of_the_dockerfile(
    tmp_path: Path, change: Callable[[str], str], rule: str
) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(change(TEXT))
    assert bad.read_text() != TEXT
    result = hadolint(bad, tmp_path)
    assert result.returncode != 0
    assert rule in {finding["code"] for finding in json.loads(result.stdout)}


# The instructions


def test_the_dockerfile_parser_joins_continuations_and_drops_comments() -> None:
    parsed = instructions('FROM a\n# note\nRUN x \\\n  # inside\n    && y\nCMD ["z"]\n')
    assert [(i.line, i.keyword, i.args) for i in parsed] == [
        (1, "FROM", "a"), (3, "RUN", "x && y"), (6, "CMD", '["z"]'),
    ]  # fmt: skip


def test_there_are_two_stages_on_the_same_base_pinned_by_digest() -> None:
    froms = [ins.args.split() for ins in instructions(TEXT) if ins.keyword == "FROM"]
    assert len(froms) == 2
    assert froms[0][1:] == ["AS", "builder"] and len(froms[1]) == 1
    assert all(PINNED.match(words[0]) for words in froms), froms
    assert froms[0][0] == froms[1][0]
    assert froms[0][0].startswith("python:3.11-slim-bookworm@")


def test_the_final_stage_runs_as_the_numeric_user_10001() -> None:
    assert of(FINAL, "USER")[-1].args == f"{SERVICE_UID}:{SERVICE_GID}"
    created = " ".join(ins.args for ins in of(FINAL, "RUN"))
    assert f"groupadd --system --gid {SERVICE_GID} " in created
    assert f"useradd --system --uid {SERVICE_UID} --gid {SERVICE_GID} --no-create-home" in created


def test_entrypoint_and_cmd_are_exec_form_serving_on_all_interfaces() -> None:
    entrypoint, cmd = exec_form("ENTRYPOINT"), exec_form("CMD")
    assert entrypoint == ["remediator"]
    assert cmd[0] == "serve"
    flags = dict(zip(cmd[1::2], cmd[2::2], strict=True))
    assert flags["--listen"] == "0.0.0.0:9095"
    assert of(FINAL, "EXPOSE")[0].args == "9095"
    assert flags["--rules"] == RULES_DIR
    assert flags["--token-file"] == TOKEN_PATH  # serve refuses to start without a token
    assert flags["--state"] == f"sqlite:///{STATE_DIR}/remediator.db"


def test_no_instruction_uses_add() -> None:
    assert not [ins for ins in instructions(TEXT) if ins.keyword == "ADD"]


def test_the_image_carries_the_oci_labels_with_the_projects_version() -> None:
    labels: dict[str, str] = {}
    for ins in of(FINAL, "LABEL"):
        labels.update(key_values(ins.args))
    args: dict[str, str] = {}
    for ins in of(FINAL, "ARG"):
        args.update(key_values(ins.args))
    oci = {k.removeprefix("org.opencontainers.image."): v for k, v in labels.items()}
    assert set(OCI_LABELS) <= set(oci)
    assert oci["title"] == PYPROJECT["name"]
    assert oci["description"] == PYPROJECT["description"]
    assert oci["version"] == "${VERSION}" and args["VERSION"] == PYPROJECT["version"]
    assert oci["source"] == "${SOURCE_URL}"
    license_ = PYPROJECT.get("license", "NOASSERTION")  # SPDX: no license stated
    assert oci["licenses"] == (license_ if isinstance(license_, str) else license_["text"])


def test_the_final_stage_copies_only_the_virtualenv_and_the_rules() -> None:
    assert copies(FINAL) == [("builder", [VENV], VENV), (None, ["rules/"], RULES_DIR + "/")]
    assert not of(FINAL, "ADD")


def test_the_builder_copies_only_what_the_wheel_is_made_of() -> None:
    assert copies(BUILDER) == [
        (None, ["pyproject.toml", "README.md"], "./"),
        (None, ["remediator/"], "remediator/"),
    ]
    (run,) = of(BUILDER, "RUN")
    assert "--no-deps" in run.args and f"venv --without-pip {VENV}" in run.args
    assert "[dev]" not in run.args


def test_state_and_temporary_files_live_on_volumes() -> None:
    env = final_env()
    assert env["PATH"] == f"{VENV}/bin:$PATH"
    assert env["HOME"] == "/tmp"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    (volume,) = of(FINAL, "VOLUME")
    assert json.loads(volume.args) == [STATE_DIR, "/tmp"]
    assert of(FINAL, "WORKDIR")[-1].args == STATE_DIR
    run = " ".join(ins.args for ins in of(FINAL, "RUN"))
    assert f"install -d -o {SERVICE_UID} -g {SERVICE_GID} -m 0700 {STATE_DIR}" in run


def test_the_build_context_admits_only_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    admitted = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied = {
        source.rstrip("/")
        for stage in (BUILDER, FINAL)
        for from_stage, sources, _ in copies(stage)
        if from_stage is None
        for source in sources
    }
    assert admitted == copied
    assert {"**/__pycache__", "**/*.pyc"} <= set(patterns)


# The build steps, replayed


@dataclass(frozen=True)
class Image:
    """The image's filesystem, rooted at ``root``."""

    root: Path
    log: Path

    def at(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def rooted(self, arg: str) -> str:
        """A CMD argument with the image's paths moved under the root."""
        for path in (STATE_DIR, "/etc/remediator"):
            arg = arg.replace(path, str(self.at(path)))
        return arg


def _demoted() -> dict[str, Any]:
    """Subprocess arguments that run the child as the service's UID/GID, when we may."""
    if os.geteuid() != 0:
        return {}
    return {"user": SERVICE_UID, "group": SERVICE_GID, "extra_groups": []}


def _base_python() -> str:
    """The first Python ≥ 3.11 the service user can run: the virtualenv's interpreter."""
    base: str = getattr(sys, "_base_executable", sys.executable)
    candidates = [base, shutil.which("python3.11"), shutil.which("python3")]
    candidates += ["/usr/local/bin/python3", "/usr/bin/python3"]
    tried: list[str] = []
    for candidate in dict.fromkeys(c for c in candidates if c):
        check = "import sys; sys.exit(sys.version_info < (3, 11))"
        try:
            result = subprocess.run(
                [candidate, "-c", check], capture_output=True, timeout=30, check=False,
                env={"PATH": "/usr/bin:/bin"}, cwd="/", **_demoted(),
            )  # fmt: skip
        except OSError as exc:
            tried.append(f"{candidate}: {exc}")
            continue
        if result.returncode == 0:
            return candidate
        tried.append(f"{candidate}: exit {result.returncode}")
    raise AssertionError(f"no Python >= 3.11 that UID {SERVICE_UID} can run: {tried}")


def _run(*cmd: str | Path, cwd: Path | None = None) -> None:
    result = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=100, check=False, cwd=cwd
    )
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """The builder stage's steps, then the final stage's files, under a private root."""
    with tempfile.TemporaryDirectory(prefix="remediator-image-") as tmp:
        top = Path(tmp)
        top.chmod(0o711)  # others may pass through, not list
        root, build = top / "root", top / "build"
        context = build / "context"
        for _, sources, _ in copies(BUILDER):
            for source in sources:
                if (REPO / source).is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(REPO / source, context / source, ignore=ignore)
                else:
                    context.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / source, context / source)
        wheels = build / "wheels"
        # RUN python -m pip wheel --no-deps --wheel-dir /wheels .
        _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, ".",
             cwd=context)  # fmt: skip
        (wheel,) = wheels.glob("remediator-*.whl")
        venv = root / VENV.lstrip("/")
        # && python -m venv --without-pip /opt/remediator
        _run(_base_python(), "-m", "venv", "--without-pip", venv)
        # && python -m pip --python /opt/remediator/bin/python install /wheels/remediator-*.whl
        _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install",
             "--quiet", wheel)  # fmt: skip
        # COPY rules/ /etc/remediator/rules/
        shutil.copytree(REPO / "rules", root / RULES_DIR.lstrip("/"))
        for directory in [root, *root.rglob("*")]:
            if directory.is_dir():
                directory.chmod(0o755)  # root-owned and readable, as in the image
        # RUN ... install -d -o 10001 -g 10001 -m 0700 /var/lib/remediator
        state = root / STATE_DIR.lstrip("/")
        state.mkdir(parents=True)
        state.chmod(0o700)
        if os.geteuid() == 0:
            os.chown(state, SERVICE_UID, SERVICE_GID)
        # What the volumes and the chart provide: /tmp, and the token Secret.
        (root / "tmp").mkdir()
        (root / "tmp").chmod(0o1777)
        token = root / TOKEN_PATH.lstrip("/")
        token.parent.mkdir(parents=True)
        token.write_text(TOKEN + "\n")
        token.chmod(0o644)
        # Not in the image: a directory the service may not write, for its cwd and HOME.
        unwritable = root / "unwritable"
        unwritable.mkdir()
        unwritable.chmod(0o555)
        yield Image(root, top / "serve.log")


def _venv_python(image: Image) -> str:
    return str(image.at(VENV) / "bin" / "python")


def test_the_virtualenv_holds_the_installed_package_not_the_source_tree(image: Image) -> None:
    where = subprocess.run(
        [_venv_python(image), "-c", "import remediator; print(remediator.__file__)"],
        capture_output=True, text=True, timeout=30, check=True, cwd=image.at("/unwritable"),
        env={"PATH": "/usr/bin:/bin"}, **_demoted(),
    ).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(image.at(VENV)), where
    assert not Path(where).is_relative_to(REPO)
    # The console's templates and static files are package data: installed, not left behind.
    console = (
        "from remediator.console import pages; print(pages.static('console.js') is not None,"
        " 'Sign in' in pages.render('login.html', session=None, dry_run=False, notice='',"
        " title='Sign in', page='login', next='/ui/'))"
    )
    shown = subprocess.run(
        [_venv_python(image), "-c", console], capture_output=True, text=True, timeout=30,
        check=True, cwd=image.at("/unwritable"), env={"PATH": "/usr/bin:/bin"}, **_demoted(),
    ).stdout.split()  # fmt: skip
    assert shown == ["True", "True"]
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", _venv_python(image), "list",
         "--format=json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    names = {p["name"].lower() for p in json.loads(listed)}
    assert {"remediator", "aiohttp", "pydantic"} <= names
    assert not names & {"pip", "pytest", "mypy", "ruff", "setuptools"}  # no installer, no dev


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


async def test_the_images_cmd_serves_as_uid_10001_from_an_unwritable_home(image: Image) -> None:
    port = free_port()
    cmd = [image.rooted(arg) for arg in exec_form("CMD")]
    cmd[cmd.index("--listen") + 1] = f"127.0.0.1:{port}"
    env = final_env()
    env.update(
        PATH=env["PATH"].replace(VENV, str(image.at(VENV))).replace("$PATH", "/usr/bin:/bin"),
        HOME=str(image.at("/unwritable")),
        TMPDIR=str(image.at("/tmp")),
    )
    (entrypoint,) = exec_form("ENTRYPOINT")
    url = f"http://127.0.0.1:{port}"
    with image.log.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            entrypoint, *cmd, env=env, cwd=image.at("/unwritable"),
            stdout=log, stderr=log, **_demoted(),
        )  # fmt: skip
    try:
        await until_ready(url, proc, image.log)
        assert _uid_of(proc.pid) != 0
        if os.geteuid() == 0:
            assert _uid_of(proc.pid) == SERVICE_UID
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/webhook", json=webhook_payload(), headers=headers) as resp,
        ):
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["status"] == "accepted"
        assert (image.at(STATE_DIR) / "remediator.db").is_file()
        assert list(image.at("/unwritable").iterdir()) == []
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), GRACE_S) == 0, image.log.read_text()[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
