"""Turn PowerShell's CLIXML stderr into the plain text a person would have seen.

``powershell.exe`` whose stderr is not a console writes ``#< CLIXML`` and then ``<Objs>``
documents, one per record as it happens: error, warning, verbose... lines as ``<S
S="Error">`` strings with control characters escaped as ``_xHHHH_``, and progress records
as ``<Obj S="progress">``. Plain text written to the same stderr handle (``[Console]::
Error``, a native program) lands before, between and after those documents. Each
document is decoded where it stands (strings kept in order, progress dropped, as Ansible
does) and the plain text around it is kept as it is. A document that does not parse is
kept raw: losing an error message would be worse than an ugly one.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

MARKER = "#< CLIXML"
# The header (once, before the first document) or one document.
_PIECE = re.compile(r"#< CLIXML\r?\n?|<Objs\b.*?</Objs>", re.DOTALL)
_ESCAPED = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text)


def is_clixml(text: str) -> bool:
    return MARKER in text


def decode(text: str) -> str:
    """Plain text of a stderr that may contain CLIXML (see module docstring)."""
    if MARKER not in text:
        return text
    out: list[str] = []
    position = 0
    for piece in _PIECE.finditer(text):
        out.append(text[position : piece.start()])
        position = piece.end()
        if not piece.group(0).startswith(MARKER):
            out.append(_decode_document(piece.group(0)))
    out.append(text[position:])
    return "".join(out)


def _decode_document(document: str) -> str:
    try:
        # The document comes from the target we administer, over an authenticated
        # channel; expat does not fetch external entities.
        root = ET.fromstring(document)  # noqa: S314
    except ET.ParseError:
        return document
    return "".join(
        _unescape(node.text or "") for node in root if node.tag.rpartition("}")[2] == "S"
    )
