"""Start-up without garbage collection: a command's imports are kept, not collected.

Importing makes long-lived objects (modules, classes, the functions dataclasses generate)
and next to no garbage, so every pass the collector makes over them finds nothing. A
`run` imports most of its code after click has parsed the command line: the runner, and
once the target is known its transport (paramiko, cryptography, fabric, invoke). With
the collector on, those imports cost about 80 collections, 17-24 ms of every run that
freed nothing (counted with ``gc.callbacks`` on a Debian 12 target).

So the CLI imports in :func:`imports_kept`: no collection while it runs, and what was
imported is frozen after (``gc.freeze``), so later collections, and the interpreter's
last one at exit, do not walk it again. Only the CLI does this, because it owns the
process; code that embeds the runner keeps its collector as it set it.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def imports_kept() -> Iterator[None]:
    """Import in the block with the collector off; freeze the result and turn it on."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
