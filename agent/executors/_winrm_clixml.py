"""Turn PowerShell's CLIXML stderr into the plain text a person would have seen.

``powershell.exe`` whose stderr is not a console writes ``#< CLIXML`` and then ``<Objs>``
documents: error, warning, verbose... lines as ``<S S="Error">`` strings with control
characters escaped as ``_xHHHH_``, and progress records as ``<Obj S="progress">``. Here
the strings are kept (in order) and progress records dropped, as Ansible does. Text
before the marker (a native program's own stderr) is kept as it is. If the XML does not
parse, the raw text is returned: losing an error message would be worse than an ugly one.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

MARKER = "#< CLIXML"
_DOCUMENT = re.compile(r"<Objs\b.*?</Objs>", re.DOTALL)
_ESCAPED = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text)


def is_clixml(text: str) -> bool:
    return MARKER in text


def decode(text: str) -> str:
    """Plain text of a stderr that may contain CLIXML (see module docstring)."""
    before, marker, rest = text.partition(MARKER)
    if not marker:
        return text
    strings: list[str] = [before]
    documents = _DOCUMENT.findall(rest)
    if not documents:
        return text
    for document in documents:
        try:
            # The document comes from the target we administer, over an authenticated
            # channel; expat does not fetch external entities.
            root = ET.fromstring(document)  # noqa: S314
        except ET.ParseError:
            return text
        strings.extend(
            _unescape(node.text or "") for node in root if node.tag.rpartition("}")[2] == "S"
        )
    return "".join(strings)
