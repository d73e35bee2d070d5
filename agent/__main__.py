"""The `imageprep` command (and `python -m agent`).

``--version`` is answered here, before click and the rest of the CLI are imported: a
pipeline that records the tool's version should not pay for the whole start-up.

Start-up runs without the garbage collector: importing click and the command's module
makes tens of thousands of objects (classes, the methods dataclasses generate) and no
garbage, and the collector's passes over them were about 3 % of an offline command's
instructions (`plan --profile debian`, counted with callgrind). What was imported is then
frozen (below) and the collector back on before the command runs.

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
    gc.disable()
    try:
        from agent.cli import main as cli_main
        from agent.cli.app import COMMANDS

        given = sys.argv[1] if len(sys.argv) > 1 else None
        if given in COMMANDS:  # the module the group would import to run it
            importlib.import_module(COMMANDS[given].partition(":")[0])
    finally:
        gc.freeze()  # imported to stay: later collections need not walk it
        gc.enable()
    try:
        cli_main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    main()
