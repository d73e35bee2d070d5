"""PowerShell's CLIXML stderr, as ``powershell.exe -EncodedCommand`` writes it under WinRS.

Part of the WinRM *test double for a Windows machine* (see ``tests/winrm_server``).

When its stderr is not a console, Windows PowerShell serializes error records (and the
"Preparing modules for first use." progress record, unless progress is silenced) as one
``#< CLIXML`` header followed by an ``<Objs>`` document; each line of an error's display
text is an ``<S S="Error">`` element with CR/LF escaped as ``_x000D__x000A_``
(windows.md §3.1 and §4.4; pywinrm #245, Ansible #67964).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

_CRLF = "\r\n"
HEADER = "#< CLIXML" + _CRLF
_NS = "http://schemas.microsoft.com/powershell/2004/04"
_PROGRESS = (
    '<Obj S="progress" RefId="0"><TN RefId="0">'
    "<T>System.Management.Automation.PSCustomObject</T><T>System.Object</T></TN>"
    '<MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first use.</AV>'
    "<AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR>"
    "</MS></Obj>"
)
_NEEDS_ESCAPE = re.compile(r"[\x00-\x1f]|_(?=x[0-9A-Fa-f]{4}_)")


def _escape_char(match: re.Match[str]) -> str:
    return f"_x{ord(match.group(0)):04X}_"


def encode_string(text: str) -> str:
    """CLIXML string content: control characters and a literal ``_xHHHH_`` escaped."""
    return escape(_NEEDS_ESCAPE.sub(_escape_char, text))


@dataclass(frozen=True)
class ErrorRecord:
    """An error as PowerShell displays it: the message, then category and id lines."""

    statement: str
    message: str
    category: str
    fully_qualified_id: str

    def lines(self) -> list[str]:
        position = [
            "At line:1 char:1",
            f"+ {self.statement}",
            "+ " + "~" * max(len(self.statement), 1),
        ]
        return [
            self.message,
            *position,
            f"    + CategoryInfo          : {self.category}",
            f"    + FullyQualifiedErrorId : {self.fully_qualified_id}",
            " ",
        ]


def record_document(record: ErrorRecord) -> str:
    """One record as powershell.exe writes it when it happens: its own ``<Objs>``."""
    body = "".join(f'<S S="Error">{encode_string(line + _CRLF)}</S>' for line in record.lines())
    return f'<Objs Version="1.1.0.1" xmlns="{_NS}">{body}</Objs>'


def progress_document() -> str:
    return f'<Objs Version="1.1.0.1" xmlns="{_NS}">{_PROGRESS}</Objs>'


def document(errors: list[ErrorRecord], *, progress: bool) -> str:
    """The whole stderr text of a PowerShell process with these records."""
    body = _PROGRESS if progress else ""
    for record in errors:
        for line in record.lines():
            body += f'<S S="Error">{encode_string(line + _CRLF)}</S>'
    return f'{HEADER}<Objs Version="1.1.0.1" xmlns="{_NS}">{body}</Objs>'
