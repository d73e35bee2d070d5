"""Offline commands load no transport and no cloud SDK, so they start fast and work on a
machine without them; `--version` does not even load the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.hostile_peers import closed_port

_TRANSPORTS_AND_SDKS = ("paramiko", "fabric", "invoke", "winrm", "requests", "azure", "libvirt")
_PROBE = """
import sys
sys.argv = ["imageprep", *{args!r}]
from agent.__main__ import main
try:
    main()
except SystemExit:
    pass
print("LOADED:" + " ".join(sorted(sys.modules)))
"""


def _loaded_by(*args: str) -> set[str]:
    """The top-level packages the command ``imageprep ARGS`` imported."""
    return {m.split(".")[0] for m in _modules_loaded_by(*args)}


def _modules_loaded_by(*args: str) -> set[str]:
    """Every module (dotted name) the command ``imageprep ARGS`` imported."""
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


# What each offline command must not import: the other commands' modules (the group loads
# a command's module when it runs, agent/cli/app.py COMMANDS), and the redaction's
# encoders while no secret is known (agent/console.py).
_NOT_FOR_PLAN = {
    "agent.cli.runs",
    "agent.cli.run_options",
    "agent.cli.connection",
    "agent.cli.catalog",
    "agent.cli.images",
    "agent.redaction",
    "agent.targets",
}
_NOT_FOR_THE_CATALOG = {
    "agent.cli.runs",
    "agent.cli.plans",
    "agent.cli.run_options",
    "agent.cli.connection",
    "agent.cli.fleets",
    "agent.cli.images",
    "agent.redaction",
    "agent.targets",
}


@pytest.mark.parametrize(
    ("args", "unwanted"),
    [
        (("plan", "--profile", "debian"), _NOT_FOR_PLAN),
        (("profiles", "list"), _NOT_FOR_THE_CATALOG),
        (("playbooks", "list"), _NOT_FOR_THE_CATALOG),
        (("validate",), _NOT_FOR_THE_CATALOG - {"agent.targets"}),  # it checks Windows ties
    ],
    ids=lambda a: " ".join(a) if isinstance(a, tuple) else "",
)
def test_offline_command_loads_only_its_own_command_module(
    args: tuple[str, ...], unwanted: set[str]
) -> None:
    """An offline command imports neither other commands' modules nor the redaction."""
    _loaded_by(*args)  # fills the catalog cache
    assert _modules_loaded_by(*args).isdisjoint(unwanted)


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


def test_the_garbage_collector_is_back_on_when_a_command_runs() -> None:
    """Start-up turns the collector off only while it imports; the command runs with it on."""
    probe = (
        "import gc, sys\n"
        "import agent.planning\n"
        "seen = []\n"
        "real = agent.planning.show_plan\n"
        "def show_plan(**kwargs):\n"
        "    seen.append(gc.isenabled())\n"
        "    return real(**kwargs)\n"
        "agent.planning.show_plan = show_plan\n"
        "sys.argv = ['imageprep', 'plan', '--profile', 'debian']\n"
        "from agent.__main__ import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('ENABLED:', seen)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert "ENABLED: [True]" in completed.stdout


def test_a_linux_run_loads_no_windows_module(tmp_path: Path) -> None:
    """An ssh:// run imports none of the Windows-only modules (agent/windows_run.py).

    The target is a loopback port nothing listens on: the run ends at once with a
    connect error, after the runner and the SSH executor were imported.
    """
    loaded = _modules_loaded_by(
        "run",
        "--target",
        f"ssh://azureuser@127.0.0.1:{closed_port()}",
        "--no-backup",
        "--reason",
        "test",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert "agent.runner" in loaded
    assert loaded.isdisjoint(
        {
            "agent.windows_run",
            "agent.facts_windows",
            "agent.windows_logs",
            "agent.windows_power",
            "agent.windows_oobe",
            "winrm",
        }
    )
