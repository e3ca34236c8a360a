"""``remediator test --junit FILE``: the results as JUnit XML, the shape CI systems read
(``testsuites`` → one ``testsuite`` per test file → one ``testcase`` per case, with a
``failure`` holding the expected-against-got text when it failed)."""

from __future__ import annotations

from collections.abc import Sequence
from xml.etree import ElementTree as ET

from remediator.simulate.cases import FileResult


def document(results: Sequence[FileResult]) -> bytes:
    top = ET.Element("testsuites", name="remediator test")
    for result in results:
        failed = [c for c in result.cases if c.failures]
        suite = ET.SubElement(
            top, "testsuite", name=str(result.path), tests=str(len(result.cases)),
            failures=str(len(failed)), errors="0", skipped="0",
            time=f"{sum(c.seconds for c in result.cases):.3f}",
        )  # fmt: skip
        for case in result.cases:
            element = ET.SubElement(
                suite, "testcase", name=case.name, classname=str(result.path),
                time=f"{case.seconds:.3f}",
            )  # fmt: skip
            if case.failures:
                failure = ET.SubElement(element, "failure", message=case.failures[0].split("\n")[0])
                failure.text = "\n".join(case.failures)
    ET.indent(top)
    text: bytes = ET.tostring(top, encoding="utf-8", xml_declaration=True)
    return text + b"\n"
