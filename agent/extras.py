"""Loading the module behind an optional scheme (``--backup``, ``--platform``).

Providers whose SDK is an optional extra are imported only when their scheme is used; a
missing extra then is a usage error that names the ``pip install`` to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from agent.errors import UsageError

__all__ = ["import_for_scheme"]


def import_for_scheme(option: str, scheme: str, module: str, extra: str | None) -> ModuleType:
    """Import ``module`` for ``option scheme:``; a missing extra is a UsageError naming it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if extra is None:
            raise
        missing = f" ({exc.name} is missing)" if exc.name else ""
        raise UsageError(
            f"{option} {scheme}: needs optional dependencies{missing}: "
            f"pip install 'imageprep-agent[{extra}]'"
        ) from exc
