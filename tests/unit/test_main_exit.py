"""The `imageprep` entry point leaves the interpreter's last full collection out."""

from __future__ import annotations

import subprocess
import sys

# atexit handlers run before the interpreter's final collection: by then main() must
# have frozen every object, so that the collection has nothing left to walk.
_PROBE = """
import atexit, gc, sys
atexit.register(lambda: sys.stderr.write(f"frozen={gc.get_freeze_count()}\\n"))
sys.argv = ["imageprep", *sys.argv[1:]]
from agent.__main__ import main
main()
"""


def _frozen_at_exit(*args: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, check=False
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("frozen="))
    return int(line.removeprefix("frozen="))


def test_a_command_ends_with_its_objects_frozen() -> None:
    """After `plan`, every object is frozen: exit skips a full collection (~0.25 s)."""
    assert _frozen_at_exit("plan", "--profile", "debian", "--format", "json") > 10_000


def test_a_failing_command_ends_with_its_objects_frozen() -> None:
    """A command that exits with an error (SystemExit from click) freezes them too."""
    assert _frozen_at_exit("plan", "--profile", "no-such-profile") > 10_000
