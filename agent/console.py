"""Every line imageprep prints, through the same redaction as the logs and the report.

The run folder is redacted where it is written (``agent.report``, ``agent.journal``,
``agent.logging``); what goes to the terminal (progress lines, the summary, the one-line
error) is built from the same messages, so it passes the same :class:`Redactor`, which
knows every secret the run read, in every encoding (``agent.redaction``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from agent.redaction import Redactor

# One redactor: it compiles its patterns once per set of known secrets. Made when the
# first secret is known: until then there is nothing to remove, and an offline command
# (plan, validate, the lists), which reads no secret, does not import the redaction's
# encoders (about 1.5 ms of its start-up).
_REDACTOR: Redactor | None = None


def clean(text: str) -> str:
    """``text`` without any secret the process knows."""
    global _REDACTOR
    if _REDACTOR is None:
        # Every secret is read through agent.secrets (into its REGISTRY): not loaded, none.
        secrets = sys.modules.get("agent.secrets")
        if secrets is None or not secrets.REGISTRY.values():
            return text
        from agent.redaction import Redactor

        _REDACTOR = Redactor()
    return _REDACTOR.redact_text(text)


def write(text: str, stream: TextIO | None = None) -> None:
    """Write redacted ``text`` to ``stream`` (stdout by default, looked up at call time)."""
    out = stream or sys.stdout
    out.write(clean(text))
    out.flush()
