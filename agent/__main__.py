"""The `imageprep` command (and `python -m agent`).

``--version`` is answered here, before click and the rest of the CLI are imported: a
pipeline that records the tool's version should not pay for the whole start-up.

Start-up runs without the garbage collector, and what it imported is then frozen
(agent/startup.py says why): here the CLI and the command's module; a `run` imports the
runner and its transport later, the same way (agent/cli/runs.py).

Every command ends with ``gc.freeze()``. The interpreter's last act is a full garbage
collection over every object the process ever made, most of them the imported modules'
(pydantic's schemas, paramiko, click): measured, it took about 0.15 s on an idle machine
and 0.6 s on a busy one, the longest single wait after a run's last step. Frozen objects
are skipped. Nothing is lost: ``atexit`` handlers (logging's flush and close) run before
that collection and are not affected, and our files are written and closed explicitly.
"""

from __future__ import annotations

import gc
import importlib
import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from agent import __version__

        sys.stdout.write(f"imageprep, version {__version__}\n")
        return
    gc.disable()  # from here: agent.startup's own imports are start-up too
    from agent.startup import imports_kept

    with imports_kept():
        from agent.cli import main as cli_main
        from agent.cli.app import COMMANDS

        given = sys.argv[1] if len(sys.argv) > 1 else None
        if given in COMMANDS:  # the module the group would import to run it
            importlib.import_module(COMMANDS[given].partition(":")[0])
    try:
        cli_main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
