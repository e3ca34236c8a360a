"""The README tells the truth: its rule examples pass ``remediator check`` as a reader would
run it, its metric list is exactly what a running service exposes on ``/metrics``, its module
table is the package tree, and the files it names exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from remediator.ruleset.schema import RuleFileSpec
from tests.support.service import LOG_ONLY_RULES, REPO, serve, settings_for

README = REPO / "README.md"
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)
METRIC_ITEM = re.compile(r"- `(remediator_[a-z_]+(?:\{[a-z_,]+\})?)`")


def is_rule_file(block: str) -> bool:
    document = yaml.safe_load(block)
    return isinstance(document, dict) and document.keys() <= RuleFileSpec.model_fields.keys()


def rule_blocks() -> list[str]:
    """The README's YAML blocks that are rule files: every top-level key a rule-file section
    (the others show Alertmanager's or Kubernetes' YAML)."""
    return [block for block in YAML_BLOCK.findall(README.read_text()) if is_rule_file(block)]


def check(directory: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "remediator", "check", "--rules", str(directory)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO)


def write_blocks(directory: Path, blocks: list[str]) -> Path:
    directory.mkdir()
    for number, block in enumerate(blocks):
        (directory / f"{number:02d}-readme.yaml").write_text(block)
    return directory


def test_the_readme_shows_a_whole_rule_file_and_the_sinks_section() -> None:
    tops = [set(yaml.safe_load(block)) for block in rule_blocks()]
    assert {"policy", "escalations", "rules"} <= tops[0]
    assert {"sinks"} in tops


def test_every_complete_rule_block_passes_check_on_its_own(tmp_path: Path) -> None:
    complete = [block for block in rule_blocks() if "rules" in yaml.safe_load(block)]
    assert complete
    for number, block in enumerate(complete):
        result = check(write_blocks(tmp_path / f"alone-{number}", [block]))
        assert result.returncode == 0, f"{result.stdout}in this README block:\n{block}"
        assert result.stdout.splitlines()[-1].startswith("ok: ")


def test_the_rule_blocks_together_pass_check_as_one_rules_directory(tmp_path: Path) -> None:
    result = check(write_blocks(tmp_path / "rules", rule_blocks()))
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1].startswith("ok: ")


def readme_metrics() -> list[str]:
    """The README's metric list: the bullets after the ``Metrics:`` line."""
    after = README.read_text().split("\nMetrics:\n", 1)[1]
    items = after.strip("\n").split("\n\n", 1)[0].splitlines()
    return [m.group(1) for item in items if (m := METRIC_ITEM.match(item))]


def exposed(text: str) -> list[str]:
    """Each metric family of a scrape as the README writes it: ``name_total{label,…}``."""
    names = []
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = next((list(s.labels) for s in family.samples if "le" not in s.labels), [])
        names.append(name + ("{" + ",".join(labels) + "}" if labels else ""))
    return names


def label_set(metric: str) -> tuple[str, frozenset[str]]:
    """``name{b,a}`` as its name and label set: a scrape sorts labels, the README need not."""
    name, _, labels = metric.partition("{")
    return name, frozenset(labels.rstrip("}").split(",")) - {""}


def rules_with_sinks(tmp_path: Path) -> Path:
    """The log-only fixture rules with every sink their ladders name declared, so the
    per-sink series exist (nothing is sent: no alert arrives)."""
    directory = tmp_path / "rules"
    shutil.copytree(LOG_ONLY_RULES, directory)
    ladders = yaml.safe_load((directory / "00-policy.yaml").read_text())["escalations"]
    names = {n for ladder in ladders.values() for tier in ladder["tiers"] for n in tier["notify"]}
    sinks = {name: {"type": "webhook", "url": "http://127.0.0.1:9/unused"} for name in names}
    (directory / "90-sinks.yaml").write_text(yaml.safe_dump({"sinks": sinks}))
    return directory


async def test_the_readme_lists_exactly_the_metrics_the_service_exposes(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, rules_dir=rules_with_sinks(tmp_path))
    async with serve(settings) as service, service.session.get(f"{service.url}/metrics") as resp:
        scraped = exposed(await resp.text())
    listed = readme_metrics()
    missing = sorted(m for m in scraped if label_set(m) not in {label_set(n) for n in listed})
    extra = sorted(n for n in listed if label_set(n) not in {label_set(m) for m in scraped})
    assert not missing and not extra, (
        f"README.md's metric list is out of date: add {missing}, remove {extra}"
    )
    assert len(listed) == len(set(listed))


PACKAGE = REPO / "remediator"
TABLE_HEAD = "| package | stage | modules |\n|---|---|---|\n"


def module_table() -> dict[str, set[str]]:
    """The README's module table: each row's package (``ingest/``, ``config.py``) and the
    modules it names (``edge``, ``sinks/``)."""
    rows = README.read_text().split(TABLE_HEAD, 1)[1].split("\n\n", 1)[0].splitlines()
    table = {}
    for row in rows:
        package, _, modules = row.strip("|").split(" | ")
        table[package.strip(" `")] = set(re.findall(r"`([a-z_0-9]+/?)`", modules))
    return table


def tree() -> dict[str, set[str]]:
    """The package as the table shows it: each child package with its modules and
    subpackages, each top-level module alone."""
    shown: dict[str, set[str]] = {}
    for child in sorted(PACKAGE.iterdir()):
        if (child / "__init__.py").is_file():
            modules = {p.stem for p in child.glob("*.py") if p.stem != "__init__"}
            packages = {f"{p.name}/" for p in child.iterdir() if (p / "__init__.py").is_file()}
            shown[f"{child.name}/"] = modules | packages
        elif child.suffix == ".py" and child.stem not in ("__init__", "__main__"):
            shown[child.name] = set()
    return shown


def test_the_module_table_shows_every_package_and_module_of_the_tree() -> None:
    assert module_table() == tree()


def test_every_file_the_readme_and_architecture_name_exists() -> None:
    named = {
        path
        for doc in (README, REPO / "ARCHITECTURE.md")
        for path in re.findall(r"`((?:remediator|tests|bench)/[\w/]+\.py)`", doc.read_text())
    }
    assert named
    assert sorted(path for path in named if not (REPO / path).is_file()) == []
