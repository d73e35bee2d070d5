"""``--junit FILE``: a run's steps as JUnit XML, the format every CI system shows as tests.

One ``<testsuite>`` per run, one ``<testcase>`` per planned step (``classname`` is the
phase, ``name`` the step). Verification is what a test is, so a failed step of a
``verify`` phase (or any phase whose name says so, like ``azure-verify``) is a
``<failure>``; a failed step elsewhere is an ``<error>``; a skipped step, or one the run
never reached, is ``<skipped>``. Built from result.json's data, which is already redacted.
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agent.records import is_verification_phase

__all__ = ["junit_xml", "write_junit"]

# Characters XML 1.0 cannot carry at all (terminal escapes, NULs in a step's output):
# ElementTree would write them and every JUnit reader would reject the file.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FAILED = frozenset({"failed", "timed_out", "disconnected", "unknown", "interrupted"})
_SKIPPED = frozenset({"skipped", "not_run"})


def junit_xml(result: Mapping[str, Any]) -> bytes:
    """The JUnit XML document for one run's result.json data."""
    steps = [s for s in result.get("steps", []) if isinstance(s, Mapping)]
    suite = ET.Element(
        "testsuite",
        name=f"imageprep {result.get('playbook', '')} {result.get('target', '')}".strip(),
        tests=str(len(steps)),
        failures=str(sum(_kind(s) == "failure" for s in steps)),
        errors=str(sum(_kind(s) == "error" for s in steps)),
        skipped=str(sum(_kind(s) == "skipped" for s in steps)),
        time=f"{sum(float(s.get('duration') or 0) for s in steps):.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for key in ("run_id", "profile", "playbook", "status", "exit_code"):
        if result.get(key) is not None:
            ET.SubElement(properties, "property", name=key, value=str(result[key]))
    for step in steps:
        _testcase(suite, step)
    ET.indent(suite)
    document: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_junit(path: Path, result: Mapping[str, Any]) -> None:
    """Write atomically, so a CI system never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(junit_xml(result))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _kind(step: Mapping[str, Any]) -> str:
    status = str(step.get("status"))
    if status in _SKIPPED:
        return "skipped"
    if status in _FAILED:
        return "failure" if is_verification_phase(str(step.get("phase"))) else "error"
    return "passed"


def _testcase(suite: ET.Element, step: Mapping[str, Any]) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        classname=str(step.get("phase")),
        name=str(step.get("name")),
        time=f"{float(step.get('duration') or 0):.3f}",
    )
    kind = _kind(step)
    message = _xml(str(step.get("message") or step.get("status")))
    if kind == "skipped":
        ET.SubElement(case, "skipped", message=message)
    elif kind in ("failure", "error"):
        detail = ET.SubElement(case, kind, message=message, type=str(step.get("status")))
        detail.text = _xml(_tails(step))
    else:
        out = str(step.get("stdout_tail") or "")
        if out:
            ET.SubElement(case, "system-out").text = _xml(out)


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _tails(step: Mapping[str, Any]) -> str:
    parts = [f"exit code: {step.get('exit_code')}"]
    for stream in ("stdout_tail", "stderr_tail"):
        text = str(step.get(stream) or "")
        if text:
            parts.append(f"{stream.removesuffix('_tail')}:\n{text}")
    return "\n".join(parts)
