"""Offline commands load no transport and no cloud SDK, so they start fast and work on a
machine without them; `--version` does not even load the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest

_TRANSPORTS_AND_SDKS = ("paramiko", "fabric", "invoke", "winrm", "requests", "azure", "libvirt")
_PROBE = """
import sys
sys.argv = ["imageprep", *{args!r}]
from agent.__main__ import main
try:
    main()
except SystemExit:
    pass
loaded = sorted({{m.split(".")[0] for m in sys.modules}})
print("LOADED:" + " ".join(loaded))
"""


def _loaded_by(*args: str) -> set[str]:
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE.format(args=list(args))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (line,) = [x for x in completed.stdout.splitlines() if x.startswith("LOADED:")]
    return set(line.removeprefix("LOADED:").split())


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--profile", "debian"),
        ("plan", "--profile", "windows-server"),
        ("validate",),
        ("profiles", "list"),
        ("profiles", "show", "rhel-9"),
        ("playbooks", "list"),
        ("schema", "result"),
    ],
    ids=lambda a: " ".join(a),
)
def test_offline_command_loads_no_transport(args: tuple[str, ...]) -> None:
    """No SSH, WinRM, HTTP or cloud SDK module is imported by an offline command."""
    assert _loaded_by(*args).isdisjoint(_TRANSPORTS_AND_SDKS)


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "--profile", "debian"),
        ("profiles", "list"),
        ("playbooks", "list"),
        ("validate",),
    ],
    ids=lambda a: " ".join(a),
)
def test_warm_offline_command_parses_and_validates_nothing(args: tuple[str, ...]) -> None:
    """With the catalog cached, neither PyYAML nor pydantic (nor structlog) is imported."""
    _loaded_by(*args)  # fills the catalog cache (the tests' own, see conftest)
    assert _loaded_by(*args).isdisjoint({"pydantic", "pydantic_core", "yaml", "structlog"})


def test_version_loads_neither_click_nor_the_cli() -> None:
    """--version is answered before click, pydantic or structlog are imported."""
    loaded = _loaded_by("--version")
    assert loaded.isdisjoint({"click", "pydantic", "structlog", "yaml"})


@pytest.mark.parametrize(
    "statement",
    [
        "from agent.executors.ssh import SshOptions, JumpHost",
        "from agent.executors.winrm import WinRmOptions",
        "import agent.executors",
    ],
)
def test_transport_options_load_no_transport(statement: str) -> None:
    """The options of a transport (and its package) import without its library."""
    probe = f"{statement}\nimport sys\nprint('LOADED:' + ' '.join(sorted(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    (line,) = [x for x in completed.stdout.splitlines() if x.startswith("LOADED:")]
    loaded = {m.split(".")[0] for m in line.removeprefix("LOADED:").split()}
    assert loaded.isdisjoint(_TRANSPORTS_AND_SDKS)
