"""A command's imports run without garbage collections (agent/startup.py).

Each test runs the real entry point in a fresh interpreter against a loopback port that
nothing listens on, so the run stops at its connect, after every import it needs. A
``gc.callbacks`` hook records the module being imported whenever a collection starts.
The catalog cache is warm, as on every run but the first after a change of the YAML
(a miss imports pydantic while the catalog loads, which is not start-up's to pause).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from tests.unit.hostile_peers import closed_port

_PROBE = """
import gc, sys
importing = []
def watch(phase, info):
    frame = sys._getframe(1) if phase == "start" else None
    while frame is not None:
        if frame.f_code.co_name == "<module>":
            if frame.f_code.co_filename != "<string>":  # not this probe's own code
                importing.append(frame.f_code.co_filename)
            break
        frame = frame.f_back
gc.callbacks.append(watch)
sys.argv = ["imageprep", *{args!r}]
from agent.__main__ import main
try:
    main()
except SystemExit:
    pass
gc.callbacks.remove(watch)
print("ENABLED:", gc.isenabled())
print("IMPORTING:", importing)
print("CONNECTED:", "agent.executors.ssh.executor" in sys.modules)
"""


def _collections_while_importing(cache: Path, *args: str) -> list[str]:
    """The modules being imported when a collection started, in ``imageprep ARGS``."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    env.pop("IMAGEPREP_NO_CACHE", None)
    warm = [sys.executable, "-m", "agent", "plan", "--profile", "debian"]
    subprocess.run(warm, env=env, capture_output=True, timeout=120, check=True)
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE.format(args=list(args))],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = completed.stdout.splitlines()
    (importing,) = [x.removeprefix("IMPORTING: ") for x in lines if x.startswith("IMPORTING:")]
    # The command got as far as its connect: else there would be nothing to check.
    assert "CONNECTED: True" in lines, completed.stderr
    # And the collector is back on: with it left off, no collection would ever start.
    assert "ENABLED: True" in lines
    return list(ast.literal_eval(importing))


def test_a_run_imports_its_runner_and_transport_without_collections(tmp_path: Path) -> None:
    """Without imports_kept, about 80 collections walked paramiko, fabric and the runner."""
    target = f"ssh://u@127.0.0.1:{closed_port()}"
    importing = _collections_while_importing(
        tmp_path / "cache",
        "run",
        "--target",
        target,
        "--no-backup",
        "--reason",
        "t",
        "--run-dir",
        str(tmp_path / "run"),
    )
    assert importing == []


def test_a_fleet_run_imports_without_collections(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"vm1 ansible_host=127.0.0.1 ansible_port={closed_port()} ansible_user=u\n"
    )
    importing = _collections_while_importing(
        tmp_path / "cache",
        "run",
        "--inventory",
        str(inventory),
        "--no-backup",
        "--reason",
        "t",
        "--run-dir",
        str(tmp_path / "fleet"),
    )
    assert importing == []


def test_every_scheme_imports_the_module_its_executor_lives_in() -> None:
    """import_transport's map covers every target scheme, naming its executor's module."""
    # create_executor branches on the same schemes; a scheme missing here would only lose
    # the collector pause, silently, so this test is what keeps the two in step.
    from agent.executors import _EXECUTOR_MODULES
    from agent.executors.ssh import SshExecutor
    from agent.executors.winrm import WinRmExecutor
    from agent.targets import DEFAULT_PORTS

    executor_class = {"ssh": SshExecutor, "winrm": WinRmExecutor, "winrm+https": WinRmExecutor}
    assert set(_EXECUTOR_MODULES) == set(DEFAULT_PORTS)
    assert {scheme: cls.__module__ for scheme, cls in executor_class.items()} == _EXECUTOR_MODULES
